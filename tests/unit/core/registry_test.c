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

/* The same devices, facts and revocations in both. */
static void assert_same(const struct moat_devices *a, const struct moat_devices *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_string_equal(a->v[i].id, b->v[i].id);
		assert_int_equal(a->v[i].state, b->v[i].state);
		assert_string_equal(a->v[i].model, b->v[i].model);
		assert_int_equal(a->v[i].ntags, b->v[i].ntags);
		assert_ptr_equal(a->v[i].counters, b->v[i].counters); /* one object per device */
	}
	assert_int_equal(a->nrevoked, b->nrevoked);
	assert_memory_equal(a->revoked, b->revoked, a->nrevoked * 32);
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
	assert_int_equal(patched->n, 3);
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

static void test_patches_end_in_a_full_read(void **state)
{
	struct moat_devices *d, *next;
	const char *ids[] = {"b"};
	int i;

	(void)state;
	assert_int_equal(moat_devices_from_store(st, "acme", stats, &d), MOAT_OK);
	for (i = 0; i < 1000; i++) {
		int rc = moat_devices_patch(d, st, "acme", stats, ids, 1, &next);

		if (rc == MOAT_ETOOBIG)
			break; /* the chain of arenas is long enough: the caller reads whole */
		assert_int_equal(rc, MOAT_OK);
		moat_devices_free(d);
		d = next;
	}
	assert_true(i > 10 && i < 1000);
	moat_devices_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_patch_equals_full_read),
	        cmocka_unit_test(test_patches_end_in_a_full_read),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
