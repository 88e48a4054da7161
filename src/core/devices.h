/*
 * Per-device facts declared in a tenant's devices file — model, firmware version, tags — which
 * the rules see as device.model, device.firmware and device.tags. (The device registry of the
 * control plane will supply the same facts; until then they come from this file.)
 *
 * Format (INI): one section per device id.
 *
 *   [cam-0001]
 *   model = cam-x
 *   firmware = 2.3.1
 *   tags = outdoor, batch-7
 */
#ifndef MOAT_CORE_DEVICES_H
#define MOAT_CORE_DEVICES_H

#include <stddef.h>

#include "core/common.h"
#include "core/config.h"
#include "rules/rules.h"

struct moat_device_entry {
	char *id;
	char *model, *firmware;
	char **tags;
	size_t ntags;
	struct moat_device_info info; /* points into the fields above */
};

struct moat_devices {
	struct moat_device_entry *v; /* sorted by id */
	size_t n;
};

/* Loads a devices file. Errors go through report with file and line. */
int moat_devices_load(const char *path, moat_config_report_fn report, void *arg,
                      struct moat_devices **out) MOAT_WUR;

void moat_devices_free(struct moat_devices *d);

/* The facts of one device, NULL if the file does not name it. */
const struct moat_device_info *moat_devices_find(const struct moat_devices *d, const char *id);

#endif
