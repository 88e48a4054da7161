/*
 * Tests for src/core/stats.c: counters found again at the same address however the table
 * grows, keys that must not collide, and the walk over one tenant's devices.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/stats.h"

#define MANY 20000

static void test_stable_addresses(void **state)
{
	struct moat_stats *s = moat_stats_new();
	struct moat_counters *first, *t;
	char id[32];

	assert_non_null(s);
	first = moat_stats_device(s, "acme", "cam-0");
	t = moat_stats_tenant(s, "acme");
	assert_non_null(first);
	assert_non_null(t);
	assert_ptr_not_equal(first, t);
	moat_count(&first->requests, 3);
	for (int i = 1; i < MANY; i++) { /* the table doubles several times */
		snprintf(id, sizeof(id), "cam-%d", i);
		assert_non_null(moat_stats_device(s, "acme", id));
	}
	assert_ptr_equal(moat_stats_device(s, "acme", "cam-0"), first);
	assert_ptr_equal(moat_stats_find_device(s, "acme", "cam-0"), first);
	assert_ptr_equal(moat_stats_find_tenant(s, "acme"), t);
	assert_int_equal(atomic_load(&first->requests), 3);
	for (int i = 0; i < MANY; i += 997) {
		snprintf(id, sizeof(id), "cam-%d", i);
		assert_ptr_equal(moat_stats_find_device(s, "acme", id),
		                 moat_stats_device(s, "acme", id));
	}
	moat_stats_free(s);
}

static void test_distinct_keys(void **state)
{
	struct moat_stats *s = moat_stats_new();
	struct moat_counters *ab_c = moat_stats_device(s, "ab", "c");
	struct moat_counters *a_bc = moat_stats_device(s, "a", "bc");
	struct moat_counters *x = moat_stats_tenant(s, "x");
	struct moat_counters *x_dev = moat_stats_device(s, "x", "x");
	struct moat_counters *y_dev = moat_stats_device(s, "y", "x");

	assert_ptr_not_equal(ab_c, a_bc);
	assert_ptr_not_equal(x, x_dev);
	assert_ptr_not_equal(x_dev, y_dev);
	assert_null(moat_stats_find_device(s, "ab", "bc"));
	assert_null(moat_stats_find_tenant(s, "nobody"));
	assert_null(moat_stats_find_device(s, "x", NULL));
	assert_null(moat_stats_device(s, "x", NULL));
	assert_null(moat_stats_tenant(NULL, "x"));
	assert_null(moat_stats_find_tenant(NULL, "x"));
	moat_stats_free(s);
	moat_stats_free(NULL);
}

struct seen {
	int n;
	int other;
	uint64_t requests;
};

static void count_device(void *arg, const char *device, const struct moat_counters *c)
{
	struct seen *seen = arg;

	seen->n++;
	if (strncmp(device, "cam-", 4) != 0)
		seen->other++;
	seen->requests += atomic_load(&c->requests);
}

static void test_each_device(void **state)
{
	struct moat_stats *s = moat_stats_new();
	struct seen seen = {0, 0, 0};
	char id[32];

	for (int i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "cam-%d", i);
		moat_count(&moat_stats_device(s, "acme", id)->requests, 1);
		snprintf(id, sizeof(id), "other-%d", i);
		moat_count(&moat_stats_device(s, "beta", id)->requests, 5);
	}
	moat_count(&moat_stats_tenant(s, "acme")->requests, 1000);
	moat_stats_each_device(s, "acme", count_device, &seen);
	assert_int_equal(seen.n, 100);
	assert_int_equal(seen.other, 0);
	assert_int_equal(seen.requests, 100);
	moat_stats_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_stable_addresses),
	        cmocka_unit_test(test_distinct_keys),
	        cmocka_unit_test(test_each_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
