/*
 * Tests for src/rules/fields.c: the field table, and the value of every field for a request:
 * query arguments (splitting, decoding, empty parts), headers (case, repetition, names), the
 * first User-Agent, the host, the target, connection fields from the input, IPv6 sources.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

static void test_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_F_COUNT; i++) {
		const struct moat_rules_field *f = &moat_rules_fields[i];

		assert_int_equal(f->id, i);
		assert_ptr_equal(moat_rules_field_find(f->name, strlen(f->name)), f);
		/* http.* fields and only those need an HTTP listener */
		assert_int_equal(f->http, strncmp(f->name, "http.", 5) == 0);
		assert_true(!f->map || f->list);
	}
	assert_null(moat_rules_field_find("http.request", 12));
	assert_null(moat_rules_field_find("ip.src.x", 8));
	assert_null(moat_rules_field_find("ip.sr", 5));
	assert_int_equal(moat_rules_field_find("device.firmware", 15)->type, MOAT_RT_VER);
	assert_int_equal(moat_rules_field_find("device.tags", 11)->list, 1);
	assert_int_equal(moat_rules_field_find("http.request.body", 17)->body, 1);
}

static void test_args(void **state)
{
	(void)state;
	h_set_request("GET /p?a=1&&b=%3d%26&a=2&c&=v&d=x=y&e=%zz&f=a+b%2B&%61=enc HTTP/1.1\r\n"
	              "Host: h\r\n");
	assert_true_expr("count(http.request.uri.args.names) == 9");
	assert_true_expr("count(http.request.uri.args[\"a\"]) == 3");
	assert_true_expr("http.request.uri.args[\"a\"] == \"enc\"");
	assert_true_expr("http.request.uri.args[\"b\"] == \"=&\"");
	assert_true_expr("http.request.uri.args[\"c\"] == \"\"");
	assert_true_expr("http.request.uri.args.names == \"\"");
	assert_true_expr("http.request.uri.args.values == \"v\"");
	assert_true_expr("http.request.uri.args[\"d\"] == \"x=y\"");
	assert_true_expr("http.request.uri.args[\"e\"] == \"%zz\"");
	assert_true_expr("http.request.uri.args[\"f\"] == \"a b+\"");
	assert_true_expr("http.request.uri.args.values == \"2\"");
	assert_true_expr("http.request.uri.query == \"a=1&&b=%3d%26&a=2&c&=v&d=x=y&e=%zz&f=a+b%2B&"
	                 "%61=enc\"");
	/* keys are case-sensitive and not decoded */
	assert_false_expr("http.request.uri.args[\"A\"] == \"1\"");
	assert_false_expr("http.request.uri.args[\"%61\"] == \"enc\"");
	/* no query */
	h_set_request("GET /p HTTP/1.1\r\nHost: h\r\n");
	assert_true_expr("count(http.request.uri.args.names) == 0");
	assert_true_expr("http.request.uri.query == \"\"");
	assert_false_expr("any(http.request.uri.args.values == \"\")");
	h_set_request("GET /p? HTTP/1.1\r\nHost: h\r\n");
	assert_true_expr("count(http.request.uri.args.names) == 0");
	h_set_request("GET /p?& HTTP/1.1\r\nHost: h\r\n");
	assert_true_expr("count(http.request.uri.args.names) == 0");
}

static void test_headers(void **state)
{
	(void)state;
	h_set_request(
	        "POST /up HTTP/1.1\r\nHost: cam.example.com\r\nUser-Agent: first/1\r\n"
	        "X-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\nuser-agent: second\r\n"
	        "Content-Length: 0\r\nX-Empty:\r\n");
	assert_true_expr("http.user_agent == \"first/1\"");
	assert_true_expr("count(http.request.headers[\"User-Agent\"]) == 2");
	assert_true_expr("http.request.headers[\"USER-AGENT\"] == \"second\"");
	assert_true_expr("count(http.request.headers[\"x-forwarded-for\"]) == 2");
	assert_true_expr("http.request.headers[\"x-empty\"] == \"\"");
	assert_true_expr("count(http.request.headers.names) == 7");
	assert_true_expr("http.request.headers.names == \"x-forwarded-for\"");
	assert_true_expr("http.request.headers.values == \"5.6.7.8\"");
	assert_true_expr("http.host == \"cam.example.com\"");
	assert_true_expr("http.request.headers[\"host\"] == \"cam.example.com\"");
	assert_true_expr("http.request.method == \"POST\"");
	assert_true_expr("http.request.uri == \"/up\"");
	assert_true_expr("http.request.uri.path == \"/up\"");
	/* a header name is not a substring match */
	assert_true_expr("count(http.request.headers[\"x-forwarded\"]) == 0");
	assert_true_expr("count(http.request.headers[\"x-forwarded-for-\"]) == 0");
}

/* The per-request filter of header names may say "maybe" for an absent name, never "no" for
 * a present one: every one of many names is found, in any case, and absent ones are not. */
static void test_header_filter(void **state)
{
	char head[8192], expr[256];
	size_t n = 0;
	int i;

	(void)state;
	n += (size_t)snprintf(head + n, sizeof(head) - n, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (i = 0; i < 90; i++)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "X-%s-%d: v%d\r\n",
		                      i % 2 ? "Hdr" : "hDR", i, i);
	h_set_request(head);
	for (i = 0; i < 120; i++) {
		snprintf(expr, sizeof(expr), "http.request.headers[\"x-hdr-%d\"] == \"v%d\"", i, i);
		if (h_eval(expr) != (i < 90))
			fail_msg("%s: wrong", expr);
		snprintf(expr, sizeof(expr), "count(http.request.headers[\"X-HDR-%d\"]) == %d", i,
		         i < 90);
		if (!h_eval(expr))
			fail_msg("%s: wrong", expr);
	}
}

static void test_connection(void **state)
{
	struct moat_rules_input in;

	(void)state;
	h_set_request("GET / HTTP/1.1\r\nHost: h\r\n");
	h_set_src("2001:db8::42");
	in = h_input();
	assert_true(h_eval_in("ip.src == 2001:db8::42 and ip.src in {2001:db8::/64}", &in));
	h_set_src("::ffff:198.51.100.7");
	in = h_input();
	assert_true(h_eval_in("ip.src == 198.51.100.7 and ip.src in {198.51.100.0/24}", &in));
	h_set_src("192.0.2.10");
	in = h_input();
	in.tls_version = "TLSv1.2";
	in.sni = "";
	in.fingerprint = "";
	in.serial = "";
	in.device_id = "";
	in.tenant = "other";
	assert_true(h_eval_in("tls.version == \"TLSv1.2\" and tls.sni == \"\" and "
	                      "tls.client.fingerprint == \"\" and tls.client.serial == \"\" and "
	                      "device.id == \"\" and tenant == \"other\"",
	                      &in));
	in.tenant = NULL;
	assert_false(h_eval_in("tenant == \"other\" or tenant != \"other\"", &in));
	in = h_input();
	h_dev.ntags = 0;
	assert_true(h_eval_in("count(device.tags) == 0", &in));
	assert_false(h_eval_in("device.tags == \"lab\"", &in));
	h_dev.ntags = 3;
	assert_true(h_eval_in("count(device.tags) == 3", &in));
}

static void test_tcp_input(void **state)
{
	const char *text = "[rule a]\nname = a\naction = close\n"
	                   "expr = ip.src in {192.0.2.0/24} and not tls.client.verified\n";
	struct moat_ruleset *rs = NULL;
	struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
	struct moat_rules_verdict v;
	struct moat_rules_input in;

	(void)state;
	assert_int_equal(moat_rules_load_buffer("tcp", text, strlen(text), MOAT_RULES_TCP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	h_set_src("192.0.2.99");
	in = h_input();
	in.req = NULL;
	in.tls_version = NULL;
	in.client_verified = 0;
	in.device = NULL;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	assert_int_equal(v.action, MOAT_RULE_CLOSE);
	in.client_verified = 1;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	assert_int_equal(v.action, MOAT_RULE_LOG);
	assert_null(v.rule);
	moat_ruleset_free(rs);
	h_set_src("192.0.2.10");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_table),      cmocka_unit_test(test_args),
	        cmocka_unit_test(test_headers),    cmocka_unit_test(test_header_filter),
	        cmocka_unit_test(test_connection), cmocka_unit_test(test_tcp_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
