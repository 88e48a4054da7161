/*
 * Traffic counters per tenant and per device, for the admin API's statistics.
 *
 * The counter objects live as long as the process: generations come and go, but a tenant's
 * or device's counters stay at one address, so a worker counting on a connection made under
 * an older generation counts into the same place the API reads. The table that finds them is
 * the control thread's alone (creation and lookup); workers only touch the counters, through
 * pointers the generation hands them, with relaxed atomics.
 */
#ifndef MOAT_CORE_STATS_H
#define MOAT_CORE_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct moat_counters {
	atomic_uint_fast64_t requests; /* HTTP requests, and TCP connections */
	atomic_uint_fast64_t blocked; /* refused by a rule or a quarantine */
	atomic_uint_fast64_t bytes_in; /* from the device */
	atomic_uint_fast64_t bytes_out; /* to the device */
	atomic_int_fast64_t connected; /* connections open now */
	atomic_int_fast64_t last_seen_ms; /* Unix milliseconds of the last request; 0 never */
};

struct moat_stats;

struct moat_stats *moat_stats_new(void);
void moat_stats_free(struct moat_stats *s);

/* The counters of a tenant / a device, created on first use (control thread). NULL only when
 * out of memory. */
struct moat_counters *moat_stats_tenant(struct moat_stats *s, const char *tenant);
struct moat_counters *moat_stats_device(struct moat_stats *s, const char *tenant,
                                        const char *device);

/* Lookups that never create (control thread): NULL if never created. */
const struct moat_counters *moat_stats_find_tenant(const struct moat_stats *s, const char *tenant);
const struct moat_counters *moat_stats_find_device(const struct moat_stats *s, const char *tenant,
                                                   const char *device);

/* Calls fn for every device counter of a tenant (control thread). */
void moat_stats_each_device(const struct moat_stats *s, const char *tenant,
                            void (*fn)(void *arg, const char *device,
                                       const struct moat_counters *c),
                            void *arg);

/* Worker helpers: relaxed adds; c may be NULL. */
static inline void moat_count(atomic_uint_fast64_t *v, uint64_t n)
{
	atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

#endif
