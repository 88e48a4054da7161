/*
 * Internal to the device index (devices.c, registry.c): the block allocator that holds a
 * registry's strings, so a million devices cost a few large allocations, not millions.
 */
#ifndef MOAT_CORE_REGISTRY_H
#define MOAT_CORE_REGISTRY_H

#include "core/devices.h"

void moat_devices_arena_free(struct moat_devices_arena *a);

#endif
