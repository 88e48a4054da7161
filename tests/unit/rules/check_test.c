/*
 * Tests for src/rules/check.c: every refusal of the checker, each with its message and its
 * exact column, plus the compile-time refusals that depend on it (regular expressions, limits,
 * scope), and a list of expressions that must be accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

static void test_names(void **state)
{
	(void)state;
	h_refused("http.request.uri.pth == \"/\"", 1,
	          "unknown field http.request.uri.pth (did you mean http.request.uri.path?)");
	h_refused("true and zzzzzzzzzzzzzzzz", 10, "unknown field zzzzzzzzzzzzzzzz");
	h_refused("lowr(http.host) == \"a\"", 1, "unknown function lowr() (did you mean lower()?)");
	h_refused("frobnicate(http.host)", 1, "unknown function frobnicate()");
	h_refused("http.request.headers == \"x\"", 1,
	          "http.request.headers needs a key, as in http.request.headers[\"name\"]");
	h_refused("http.request.uri.args contains \"x\"", 1, "needs a key");
	h_refused("http.request.uri.path[\"x\"] == \"a\"", 23,
	          "http.request.uri.path takes no [key]");
	h_refused("http.request.headers[\"\"] == \"a\"", 22, "empty key");
	h_refused("lower(http.host, http.host) == \"a\"", 1, "lower() takes 1 argument, not 2");
	h_refused("starts_with(http.host)", 1, "starts_with() takes 2 arguments, not 1");
	h_refused("any()", 1, "any() takes 1 argument, not 0");
}

static void test_scope(void **state)
{
	(void)state;
	h_refused_scope("http.request.uri.path contains \"/cgi-bin/\"", MOAT_RULES_TCP, 1,
	                "field http.request.uri.path needs an HTTP listener");
	h_refused_scope("ip.src in {10.0.0.0/8} and http.user_agent == \"x\"", MOAT_RULES_TCP, 28,
	                "field http.user_agent needs an HTTP listener");
	h_refused_scope("any(http.request.headers[\"a\"] == \"b\")", MOAT_RULES_TCP, 5,
	                "needs an HTTP listener");
	h_err_reset();
	assert_int_equal(moat_rules_check_expr("ip.src in {10.0.0.0/8} and tls.client.verified and "
	                                       "device.firmware < \"2.0\" and "
	                                       "any(device.tags == \"lab\") and tenant == \"a\"",
	                                       MOAT_RULES_TCP, NULL, h_report, NULL),
	                 MOAT_OK);
}

static void test_types(void **state)
{
	(void)state;
	h_refused("http.request.uri.path == 1", 26,
	          "http.request.uri.path is a string: compare it with a string, not a number");
	h_refused("http.request.body.size == \"1\"", 27,
	          "http.request.body.size is an int: compare it with a number, not a string");
	h_refused("ip.src == \"10.0.0.1\"", 11, "compare it with an IP address or CIDR");
	h_refused("tls.client.verified == 1", 24, "compare it with true or false, not a number");
	h_refused("device.firmware < 2", 19, "a version compares with a version string");
	h_refused("device.firmware < \"2.x\"", 19, "bad version \"2.x\"");
	h_refused("device.firmware in {\"1.0\" \"1.0.0-\"}", 27, "bad version \"1.0.0-\"");
	h_refused("http.request.method in {\"GET\" 1}", 31,
	          "compare it with a string, not a number");
	h_refused("ip.src in {10.0.0.0/8 \"x\"}", 23, "an IP address or CIDR, not a string");
	h_refused("len(http.host) in {1 \"2\"}", 22, "not a string");
	h_refused("tls.client.verified < true", 21, "'<' does not apply to tls.client.verified");
	h_refused("len(http.host) contains \"1\"", 16, "'contains' does not apply to len(...)");
	h_refused("ip.src > 10.0.0.1", 8, "an IP address has ==, != and in");
	h_refused("ip.src matches \"1\"", 8, "'matches' does not apply to ip.src");
	h_refused("tls.client.verified in {1}", 21, "'in' does not apply");
	h_refused("\"a\" == http.host", 1, "the left side of '==' must be a field or a function");
	h_refused("http.host == http.request.method", 14,
	          "the right side of '==' must be a literal");
	h_refused("http.host contains lower(http.host)", 20, "must be a literal");
	h_refused("starts_with(http.host, \"a\") == true", 29,
	          "'==' compares a value, and starts_with() is a condition");
	h_refused("(http.host == \"a\") == true", 20, "'==' compares a value, not a condition");
	h_refused("lower(starts_with(http.host, \"a\")) == \"a\"", 7,
	          "starts_with() is a condition, not a value to compare");
	h_refused("len(ip.src) > 1", 5, "len() takes a string, and ip.src is an ip");
	h_refused("lower(len(http.host)) == \"1\"", 7,
	          "lower() takes a string, and len(...) is an int");
	h_refused("lower(\"ABC\") == \"abc\"", 7,
	          "lower() takes a field or a function of one, not a string");
	h_refused("count(http.host) > 1", 7,
	          "count() takes a list field, and http.host has one value");
	h_refused("count(1) > 1", 7, "count() takes a field or a function of one, not a number");
	h_refused("starts_with(http.host, http.host)", 24,
	          "the second argument of starts_with() must be a string literal");
	h_refused("ends_with(len(http.host), \"1\")", 11, "ends_with() takes a string");
	h_refused("ends_with(\"x\", \"1\")", 11, "ends_with() takes a field or a function of one");
}

static void test_conditions(void **state)
{
	(void)state;
	h_refused("http.host", 1, "http.host is a string, not a condition");
	h_refused("lower(http.request.headers[\"a\"])", 1,
	          "lower(...) is a list of string, not a condition");
	h_refused("len(http.host)", 1, "len(...) is an int, not a condition");
	h_refused("\"GET\"", 1, "a string is not a condition");
	h_refused("1 and true", 1, "a number is not a condition");
	h_refused("ip.src", 1, "ip.src is an ip, not a condition");
	h_refused("http.host == \"a\" and ip.src", 22, "not a condition");
}

static void test_case(void **state)
{
	(void)state;
	h_refused("lower(http.user_agent) contains \"ZGrab\"", 33,
	          "lower() never produces this literal: write it in lower case");
	h_refused("upper(http.request.method) == \"get\"", 31, "write it in upper case");
	h_refused("lower(http.host) in {\"a\" \"B\"}", 26, "write it in lower case");
	h_refused("starts_with(lower(http.host), \"A\")", 31, "write it in lower case");
	/* only the immediate function counts: url_decode can produce any case */
	h_accepted("url_decode(lower(http.host)) contains \"%41\"");
	h_accepted("lower(http.user_agent) matches \"(?i)ZGrab\"");
	h_accepted("lower(http.user_agent) contains \"zgrab/1.0 (+x)\"");
}

static void test_quantifiers(void **state)
{
	(void)state;
	h_refused("any(any(http.request.headers[\"a\"] == \"b\"))", 5,
	          "any() and all() do not nest");
	h_refused("any(http.request.headers[\"a\"] == \"b\" and http.request.headers[\"c\"] == "
	          "\"d\")",
	          42,
	          "iterate over one list; this one differs from the first "
	          "(http.request.headers[\"a\"])");
	h_refused("all(http.request.uri.args[\"a\"] == \"b\" or device.tags == \"c\")", 42,
	          "differs from the first");
	h_refused("any(http.host == \"a\")", 1, "any() needs a list in its condition");
	h_refused("all(true)", 1, "all() needs a list");
	h_refused("any(http.request.headers[\"a\"])", 5, "not a condition");
	/* the same list twice, keys compared as the field compares names */
	h_accepted("any(http.request.headers[\"X-A\"] contains \"a\" and "
	           "not http.request.headers[\"x-a\"] contains \"b\")");
	h_accepted("all(lower(http.request.uri.args[\"q\"]) contains \"a\" or "
	           "len(http.request.uri.args[\"q\"]) < 3)");
	h_accepted("any(starts_with(device.tags, \"l\") and http.host == \"x\")");
	h_accepted("any(count(device.tags) > 1 and device.tags == \"lab\")");
}

static void test_compile_refusals(void **state)
{
	char big[9000];
	struct moat_rules_limits lim;

	(void)state;
	h_refused("http.host matches \"(\"", 21,
	          "bad regular expression: missing closing parenthesis");
	/* a raw pattern lets the error point into it */
	h_refused("http.host matches r\"ab[c\"", 25, "bad regular expression");
	h_refused("http.host matches r\"a{2,1}\"", 26, "bad regular expression");
	h_refused("http.host matches \"a\\\\\"", 19, "bad regular expression");

	memset(big, 'a', sizeof(big));
	memcpy(big, "http.host matches \"", 19);
	big[19 + 4097] = '"';
	big[19 + 4098] = '\0';
	h_refused(big, 19, "regular expression longer than 4096 bytes");

	memset(&lim, 0, sizeof(lim));
	lim.max_expr_len = 20;
	h_err_reset();
	assert_int_equal(moat_rules_check_expr("http.host == \"0123456789\"", MOAT_RULES_HTTP, &lim,
	                                       h_report, NULL),
	                 MOAT_EINVAL);
	assert_non_null(strstr(h_err.msg, "expression longer than 20 bytes"));
	assert_int_equal(h_err.col, 1);

	lim.max_expr_len = 0;
	lim.max_regex_len = 3;
	h_err_reset();
	assert_int_equal(moat_rules_check_expr("http.host matches \"abcd\"", MOAT_RULES_HTTP, &lim,
	                                       h_report, NULL),
	                 MOAT_EINVAL);
	assert_non_null(strstr(h_err.msg, "longer than 3 bytes"));

	lim.max_regex_len = 0;
	lim.max_depth = 2;
	h_err_reset();
	assert_int_equal(moat_rules_check_expr("not (not (http.host == \"a\"))", MOAT_RULES_HTTP,
	                                       &lim, h_report, NULL),
	                 MOAT_EINVAL);
	assert_non_null(strstr(h_err.msg, "nested deeper than 2 levels"));
}

static void test_multiline_positions(void **state)
{
	(void)state;
	/* positions in a multi-line expression are lines and columns of that text */
	h_err_reset();
	assert_int_equal(moat_rules_check_expr("http.host == \"a\"\n  and\n    bogus.field",
	                                       MOAT_RULES_HTTP, NULL, h_report, NULL),
	                 MOAT_EINVAL);
	assert_int_equal(h_err.line, 3);
	assert_int_equal(h_err.col, 5);
	assert_string_equal(h_err.source, "    bogus.field");
	assert_non_null(strstr(h_err.msg, "unknown field bogus.field"));
}

static void test_several_errors(void **state)
{
	(void)state;
	/* type errors in different operands are all reported */
	h_err_reset();
	assert_int_equal(moat_rules_check_expr("a.b == 1 or c.d == 2 or http.host == 3",
	                                       MOAT_RULES_HTTP, NULL, h_report, NULL),
	                 MOAT_EINVAL);
	assert_int_equal(h_err.count, 3);
}

static void test_accepted(void **state)
{
	static const char *const ok[] = {
	        "true",
	        "not false",
	        "tls.client.verified",
	        "tls.client.verified == false",
	        "http.request.uri.path contains \"/cgi-bin/\" and "
	        "any(http.request.uri.args[\"cmd\"] contains \";\")",
	        "http.request.method in {\"PUT\" \"POST\"}",
	        "http.request.method eq \"GET\" && http.host ne \"x\"",
	        "ip.src in {10.0.0.0/8, 2001:db8::/32, 192.0.2.1} or ip.src == 198.51.100.0/24",
	        "ip.src != ::1",
	        "device.firmware >= \"v2.10.0-rc.1\" and device.firmware in {\"1.0\" \"1.1\"}",
	        "device.firmware contains \"beta\" or device.firmware matches \"^2\\\\.\"",
	        "len(http.request.uri.query) > 1024 or http.request.body.size ge 1048576",
	        "count(http.request.headers[\"content-length\"]) > 1",
	        "len(http.request.headers[\"x\"]) in {0 1 2}",
	        "http.request.body contains \"<?php\"",
	        "url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"../\"",
	        "upper(http.request.method) == \"GET\"",
	        "ends_with(http.request.uri.path, \".php\") xor starts_with(http.host, \"api.\")",
	        "http.request.uri.args.names contains \"debug\" or "
	        "http.request.headers.names == \"x-forwarded-host\"",
	        "all(http.request.uri.args.values matches r\"^[0-9]+$\")",
	        "tls.version == \"TLSv1.2\" and tls.sni == \"\" and tls.client.fingerprint != "
	        "\"ab\"",
	        "tls.client.serial == \"01\" and tenant == \"t\" and device.id == \"d\" and "
	        "device.model == \"m\"",
	        "http.request.uri == \"/\" and http.request.uri.query == \"\" and "
	        "http.user_agent == \"x\" and http.host == \"h\"",
	        "http.request.uri.path < \"/b\" and http.request.uri.path >= \"/a\"",
	        "http.request.headers.values contains \"${jndi:\"",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(ok); i++)
		h_accepted(ok[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_scope),
	        cmocka_unit_test(test_types),
	        cmocka_unit_test(test_conditions),
	        cmocka_unit_test(test_case),
	        cmocka_unit_test(test_quantifiers),
	        cmocka_unit_test(test_compile_refusals),
	        cmocka_unit_test(test_multiline_positions),
	        cmocka_unit_test(test_several_errors),
	        cmocka_unit_test(test_accepted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
