/*
 * Process-wide connection limits: in all, and per source address. Consulted once per accepted
 * connection, before any TLS work, so a flood from one address costs others nothing.
 */
#ifndef MOAT_CORE_LIMITS_H
#define MOAT_CORE_LIMITS_H

#include <sys/socket.h>

#include "core/common.h"

/* Takes a slot for a new connection from addr. MOAT_ETOOBIG (and nothing taken) when
 * max_total or max_per_ip (0 = none) would be exceeded. */
int moat_limits_acquire(const struct sockaddr_storage *addr, unsigned max_total,
                        unsigned max_per_ip) MOAT_WUR;

/* Returns the slot taken by moat_limits_acquire. */
void moat_limits_release(const struct sockaddr_storage *addr);

/* Connections open now. */
unsigned moat_limits_total(void);

#endif
