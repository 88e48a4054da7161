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

#include <stdatomic.h>
#include <stddef.h>

#include "core/common.h"
#include "core/config.h"
#include "core/stats.h"
#include "rules/rules.h"
#include "store/store.h"

struct moat_device_entry {
	char *id;
	char *model, *firmware;
	char **tags;
	size_t ntags;
	struct moat_device_info info; /* points into the fields above */
	enum moat_device_state state; /* always active for a devices file */
	struct moat_counters *counters; /* NULL if not counted */
	int gone; /* in an overlay: the device was deleted (hides the base's entry) */
};

struct moat_devices_arena;

struct moat_devices {
	struct moat_device_entry *v; /* sorted by id */
	size_t n;
	/* Built from the store (the registry of a tenant made through the admin API): only the
	 * devices listed may connect, and certificates are checked against `revoked`. */
	int registry;
	unsigned char (*revoked)[32]; /* SHA-256 of revoked certificates, sorted */
	size_t nrevoked;
	struct moat_devices_arena *arena; /* registry strings; NULL for a devices file */
	unsigned patches; /* merges of overlays since the last full read */
	atomic_uint refs; /* an overlay holds its base */
	/* An overlay: v holds only the devices changed since `base` (a full registry) was made;
	 * a lookup tries v, then the base. A device change then costs the overlay, not a copy of
	 * a million entries. NULL for a full registry and a devices file. */
	struct moat_devices *base;
};

/* Loads a devices file. Errors go through report with file and line. */
int moat_devices_load(const char *path, moat_config_report_fn report, void *arg,
                      struct moat_devices **out) MOAT_WUR;

void moat_devices_free(struct moat_devices *d);

/* The facts of one device, NULL if the file does not name it. */
const struct moat_device_info *moat_devices_find(const struct moat_devices *d, const char *id);

/* The whole entry of one device, NULL if none. */
const struct moat_device_entry *moat_devices_entry(const struct moat_devices *d, const char *id);

/*
 * The registry of a store tenant: every device (id order, with state and counters from
 * `stats`, which may be NULL) and the fingerprints of every revoked certificate.
 */
int moat_devices_from_store(struct moat_store *s, const char *tenant, struct moat_stats *stats,
                            struct moat_devices **out) MOAT_WUR;

/*
 * A registry like `old` with the devices named in `ids` read again from the store (added,
 * changed, or gone if the store no longer has them) and their revoked certificates added:
 * what a device change costs, instead of reading a million devices again. The result is an
 * overlay on old's full registry (merged into a new full one when the overlay grows past a
 * few thousand devices). `old` stays valid and unchanged. MOAT_ETOOBIG when a full read is
 * due instead (after many merges).
 */
int moat_devices_patch(const struct moat_devices *old, struct moat_store *s, const char *tenant,
                       struct moat_stats *stats, const char *const *ids, size_t nids,
                       struct moat_devices **out) MOAT_WUR;

/* 1 if the certificate with this SHA-256 is revoked in the registry. */
int moat_devices_cert_revoked(const struct moat_devices *d, const unsigned char fp[32]);

/*
 * Whether a device may be connected now: NULL if it may, else the reason ("unknown device",
 * "device revoked"). Only registries refuse; a devices file only adds facts.
 */
const char *moat_devices_refusal(const struct moat_devices *d, const char *id);

#endif
