/*
 * The registry of a store tenant: read whole from the store, and patched with the devices
 * that changed, which must give exactly what a whole read gives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/devices.h"
#include "core/stats.h"
#include "store/store.h"

static char dir[] = "/tmp/moat-registry-XXXXXX";
static struct moat_store *st;
static struct moat_stats *stats;

static int setup(void **state)
{
	char path[256];
	const char *err = NULL;
	struct moat_store_tenant t;
	char *hosts[] = {"acme.test"};

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	if (moat_store_open(path, &err, &st) != MOAT_OK)
		return -1;
	stats = moat_stats_new();
	memset(&t, 0, sizeof(t));
	t.name = "acme";
	t.hosts.v = hosts;
	t.hosts.n = 1;
	t.origin = "http://127.0.0.1:8080";
	t.server_cert = "x";
	t.server_key_file = "k";
	return moat_store_tenant_insert(st, &t) == MOAT_OK && stats != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	moat_store_close(st);
	moat_stats_free(stats);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void add_device(const char *id, const char *model, const char *fp)
{
	struct moat_store_device d;
	struct moat_store_cert c;
	char *tags[] = {"lab", "outdoor"};

	memset(&d, 0, sizeof(d));
	d.tenant = "acme";
	d.id = (char *)id;
	d.model = (char *)model;
	d.firmware = "1.0.0";
	d.tags.v = tags;
	d.tags.n = 2;
	assert_int_equal(moat_store_device_insert(st, &d), MOAT_OK);
	memset(&c, 0, sizeof(c));
	c.fingerprint = (char *)fp;
	c.tenant = "acme";
	c.device = (char *)id;
	c.serial = "01";
	c.not_after = 2000000000;
	assert_int_equal(moat_store_cert_insert(st, &c), MOAT_OK);
}

static void set_state(const char *id, enum moat_device_state state)
{
	struct moat_store_device d;

	assert_int_equal(moat_store_device_get(st, "acme", id, &d), MOAT_OK);
	d.state = state;
	assert_int_equal(moat_store_device_update(st, &d), MOAT_OK);
	moat_store_device_clear(&d);
}

/* Every id a registry shows (a full one, or an overlay on its base). */
static size_t visible(const struct moat_devices *d)
{
	size_t n = 0;

	for (size_t i = 0; i < d->n; i++)
		n += moat_devices_entry(d, d->v[i].id) == &d->v[i];
	if (d->base != NULL)
		for (size_t i = 0; i < d->base->n; i++)
			n += moat_devices_entry(d, d->base->v[i].id) == &d->base->v[i];
	return n;
}

/* `got` shows the same devices, facts and revocations as `full`, a registry read whole. */
static void assert_same(const struct moat_devices *got, const struct moat_devices *full)
{
	assert_null(full->base);
	assert_int_equal(visible(got), full->n);
	for (size_t i = 0; i < full->n; i++) {
		const struct moat_device_entry *e = moat_devices_entry(got, full->v[i].id);

		assert_non_null(e);
		assert_int_equal(e->state, full->v[i].state);
		assert_string_equal(e->model, full->v[i].model);
		assert_string_equal(e->firmware, full->v[i].firmware);
		assert_int_equal(e->ntags, full->v[i].ntags);
		for (size_t t = 0; t < e->ntags; t++)
			assert_string_equal(e->tags[t], full->v[i].tags[t]);
		assert_ptr_equal(e->counters, full->v[i].counters); /* one object per device */
	}
	assert_int_equal(got->nrevoked, full->nrevoked);
	assert_memory_equal(got->revoked, full->revoked, got->nrevoked * 32);
}

static const char FP_B[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char FP_C[] = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
static const char FP_D[] = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

static void test_patch_equals_full_read(void **state)
{
	struct moat_devices *base, *patched, *full, *again;
	const char *ids[] = {"d-new", "b", "c", "b", "e"};
	unsigned char fp[32];

	(void)state;
	add_device("b", "cam-x", FP_B);
	add_device("c", "cam-y", FP_C);
	add_device("d", "cam-z", FP_D);
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &base), MOAT_OK);
	assert_int_equal(base->n, 3);
	assert_int_equal(base->nrevoked, 0);
	assert_string_equal(moat_devices_refusal(base, "zz"), "unknown device");

	/* b quarantined, c revoked then deleted, d untouched, d-new enrolled, e never existed */
	set_state("b", MOAT_DEVICE_QUARANTINED);
	set_state("c", MOAT_DEVICE_REVOKED);
	assert_int_equal(moat_store_cert_revoke_device(st, "acme", "c", 1700000000), MOAT_OK);
	assert_int_equal(moat_store_device_delete(st, "acme", "c"), MOAT_OK);
	add_device("d-new", "cam-x",
	           "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");

	assert_int_equal(moat_devices_patch(base, st, "acme", stats, ids, 5, &patched), MOAT_OK);
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &full), MOAT_OK);
	assert_same(patched, full);
	assert_non_null(patched->base); /* an overlay: four entries, not a copy of them all */
	assert_int_equal(moat_devices_entry(patched, "b")->state, MOAT_DEVICE_QUARANTINED);
	assert_null(moat_devices_entry(patched, "c"));
	assert_string_equal(moat_devices_refusal(patched, "c"), "unknown device");
	memset(fp, 0xcc, sizeof(fp));
	assert_true(moat_devices_cert_revoked(patched, fp));
	assert_false(moat_devices_cert_revoked(base, fp)); /* the old one is untouched */
	assert_int_equal(moat_devices_entry(base, "b")->state, MOAT_DEVICE_ACTIVE);

	/* freeing the base first: the patched one keeps the strings it shares */
	moat_devices_free(base);
	assert_string_equal(moat_devices_entry(patched, "d")->model, "cam-z");
	set_state("d", MOAT_DEVICE_REVOKED);
	assert_int_equal(
	        moat_devices_patch(patched, st, "acme", stats, (const char *[]){"d"}, 1, &again),
	        MOAT_OK);
	assert_string_equal(moat_devices_refusal(again, "d"), "device revoked");
	moat_devices_free(patched);
	moat_devices_free(full);
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &full), MOAT_OK);
	assert_same(again, full);
	moat_devices_free(again);
	moat_devices_free(full);
}

/* More changed devices than an overlay keeps: merged into a new full registry. */
static void test_big_overlay_is_merged(void **state)
{
	struct moat_devices *base, *merged, *full;
	static char ids_buf[5000][16];
	const char *ids[5000];

	(void)state;
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &base), MOAT_OK);
	assert_int_equal(moat_store_begin(st), MOAT_OK);
	for (int i = 0; i < 5000; i++) {
		char fp[65];

		snprintf(ids_buf[i], sizeof(ids_buf[i]), "m%04d", i);
		snprintf(fp, sizeof(fp), "%064x", i + 1);
		add_device(ids_buf[i], "cam-m", fp);
		ids[i] = ids_buf[i];
	}
	assert_int_equal(moat_store_commit(st), MOAT_OK);
	assert_int_equal(moat_devices_patch(base, st, "acme", stats, ids, 5000, &merged), MOAT_OK);
	assert_null(merged->base);
	moat_devices_free(base); /* the merged one keeps the strings it shares */
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &full), MOAT_OK);
	assert_same(merged, full);
	moat_devices_free(merged);
	moat_devices_free(full);
}

/* A device changed again and again: the overlay holds it once, over the same base. */
static void test_overlay_stays_small(void **state)
{
	struct moat_devices *base, *d, *next;
	const char *ids[] = {"b"};

	(void)state;
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &base), MOAT_OK);
	d = base;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(moat_devices_patch(d, st, "acme", stats, ids, 1, &next), MOAT_OK);
		if (d != base)
			moat_devices_free(d);
		d = next;
		assert_int_equal(d->n, 1);
		assert_ptr_equal(d->base, base);
	}
	moat_devices_free(base);
	assert_non_null(moat_devices_entry(d, "d")); /* the base lives on in the overlay */
	moat_devices_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_patch_equals_full_read),
	        cmocka_unit_test(test_big_overlay_is_merged),
	        cmocka_unit_test(test_overlay_stays_small),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
