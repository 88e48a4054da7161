/*
 * Tests for src/rules/version.c: the grammar (accepted and malformed versions) and the order,
 * with the edge cases of pre-releases, numeric identifiers, missing parts, "v" prefixes,
 * leading zeros and build metadata.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rules/internal.h"

static int cmp(const char *a, const char *b)
{
	return moat_rules_version_cmp(a, strlen(a), b, strlen(b));
}

static void lt(const char *a, const char *b)
{
	if (cmp(a, b) != -1 || cmp(b, a) != 1)
		fail_msg("want %s < %s: got %d and %d", a, b, cmp(a, b), cmp(b, a));
}

static void eq(const char *a, const char *b)
{
	if (cmp(a, b) != 0 || cmp(b, a) != 0)
		fail_msg("want %s == %s: got %d", a, b, cmp(a, b));
}

static void test_numbers(void **state)
{
	(void)state;
	lt("2.9.1", "2.10.0");
	lt("1.0.0", "1.0.1");
	lt("1.9", "1.10");
	lt("0.9.9", "1");
	lt("1.2.3", "1.2.3.1");
	lt("1.2.3.4.5.6.7.8", "1.2.3.4.5.6.7.9");
	lt("999999999999999998", "999999999999999999");
	eq("1.0", "1.0.0");
	eq("1", "1.0.0.0");
	eq("1.02", "1.2");
	eq("01.002.0003", "1.2.3");
	eq("v1.2.3", "1.2.3");
	eq("V1.2.3", "v1.2.3");
	eq("0", "0.0");
	eq("2.10.0", "2.10.0");
}

static void test_prerelease(void **state)
{
	(void)state;
	/* SemVer 2.0.0, section 11 */
	lt("1.0.0-alpha", "1.0.0-alpha.1");
	lt("1.0.0-alpha.1", "1.0.0-alpha.beta");
	lt("1.0.0-alpha.beta", "1.0.0-beta");
	lt("1.0.0-beta", "1.0.0-beta.2");
	lt("1.0.0-beta.2", "1.0.0-beta.11");
	lt("1.0.0-beta.11", "1.0.0-rc.1");
	lt("1.0.0-rc.1", "1.0.0");
	/* a pre-release sorts after the previous release */
	lt("0.9.9", "1.0.0-rc.1");
	lt("1.0.0-rc.1", "1.0.1-alpha");
	/* "1.0-rc.1" is a pre-release of 1.0 == 1.0.0 */
	lt("1.0-rc.1", "1.0.0");
	eq("1.0-rc.1", "1.0.0-rc.1");
	/* numeric identifiers as numbers, of any length, and below alphanumeric ones */
	lt("1.0.0-2", "1.0.0-10");
	lt("1.0.0-99999999999999999999998", "1.0.0-99999999999999999999999");
	eq("1.0.0-007", "1.0.0-7");
	lt("1.0.0-9", "1.0.0-a");
	lt("1.0.0-1", "1.0.0-1a");
	/* alphanumeric ones in ASCII order, hyphens included */
	lt("1.0.0-Z", "1.0.0-a");
	lt("1.0.0-a.b", "1.0.0-a-b"); /* "a" < "a-b": a prefix sorts first */
	lt("1.0.0-ab", "1.0.0-abc");
	eq("1.0.0-rc.1", "1.0.0-rc.1");
	lt("1.0.0-rc.1", "1.0.0-rc.1.0");
}

static void test_build(void **state)
{
	(void)state;
	eq("1.0.0+build.1", "1.0.0+build.2");
	eq("1.0.0+001", "1.0.0");
	eq("1.0.0-rc.1+exp.sha.5114f85", "1.0.0-rc.1");
	lt("1.0.0-rc.1+zzz", "1.0.0+aaa");
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
	        "",
	        "v",
	        "V",
	        "a",
	        ".1",
	        "1.",
	        "1..2",
	        "1.2.",
	        "-1",
	        "1.2.3-",
	        "1.2.3+",
	        "1.2.3-a..b",
	        "1.2.3-a.",
	        "1.2.3-a_b",
	        "1.2.3+a+b",
	        "1.2.3 ",
	        " 1.2.3",
	        "1.2.3x",
	        "1.2.3b",
	        "1.0.0-rc.1+",
	        "vv1",
	        "1.2.3.4.5.6.7.8.9",
	        "1234567890123456789",
	        "1.2,3",
	        "1.2.3-\xc3\xa9",
	        "2.0.9 (build 5)",
	        "1_2",
	};
	char longv[200];
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		if (cmp(bad[i], "1") != MOAT_EINVAL || cmp("1", bad[i]) != MOAT_EINVAL)
			fail_msg("\"%s\" accepted", bad[i]);
	}
	assert_int_equal(moat_rules_version_cmp(NULL, 0, "1", 1), MOAT_EINVAL);
	/* at most 128 bytes */
	memset(longv, '0', sizeof(longv));
	longv[0] = '1';
	longv[1] = '-';
	assert_int_equal(moat_rules_version_cmp(longv, 128, "1", 1), -1);
	assert_int_equal(moat_rules_version_cmp(longv, 129, "1", 1), MOAT_EINVAL);
	/* the longest number */
	assert_int_equal(cmp("999999999999999999", "1"), 1);
}

static void test_parse(void **state)
{
	struct moat_rules_version v;

	(void)state;
	assert_int_equal(moat_rules_version_parse("v2.10.0-rc.1+b", 14, &v), MOAT_OK);
	assert_int_equal(v.nnum, 3);
	assert_true(v.num[0] == 2 && v.num[1] == 10 && v.num[2] == 0 && v.num[3] == 0);
	assert_int_equal(v.prelen, 4);
	assert_memory_equal(v.pre, "rc.1", 4);
	assert_int_equal(moat_rules_version_parse("3", 1, &v), MOAT_OK);
	assert_int_equal(v.prelen, 0);
	/* a slice, not a C string */
	assert_int_equal(moat_rules_version_parse("1.2.3garbage", 5, &v), MOAT_OK);
	assert_int_equal(v.nnum, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_numbers), cmocka_unit_test(test_prerelease),
	        cmocka_unit_test(test_build),   cmocka_unit_test(test_malformed),
	        cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
