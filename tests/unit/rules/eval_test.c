/*
 * Tests for src/rules/eval.c: every operator and function on every type, lists with and
 * without any()/all(), missing fields, CIDR matching (IPv4, IPv6, IPv4-mapped), versions
 * through device.firmware, and the verdict: rule order, actions, modes, counters, hits, and
 * what happens when the scratch is too small. Every expression is evaluated with and without
 * the prefilter (helpers.h), which must agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

#define REQ                                                                                        \
	"GET /cgi-bin/diag.cgi?cmd=ping%3Bid&cmd=x&Debug=1&empty=&flag&q=a+b HTTP/1.1\r\n"         \
	"Host: cam.example.com\r\n"                                                                \
	"User-Agent: ZGrab/0.x\r\n"                                                                \
	"User-Agent: second\r\n"                                                                   \
	"X-Multi: a\r\n"                                                                           \
	"x-multi: B\r\n"                                                                           \
	"Accept: */*\r\n"

static int setup(void **state)
{
	(void)state;
	h_set_request(REQ);
	h_set_src("192.0.2.10");
	h_dev.model = "CAM-1";
	h_dev.firmware = "2.0.9";
	h_dev.ntags = 3;
	return 0;
}

static void test_strings(void **state)
{
	(void)state;
	assert_true_expr("http.request.method == \"GET\"");
	assert_true_expr("http.request.method eq \"GET\"");
	assert_false_expr("http.request.method == \"get\"");
	assert_false_expr("http.request.method == \"GE\"");
	assert_false_expr("http.request.method == \"GETX\"");
	assert_true_expr("http.request.method != \"POST\"");
	assert_true_expr("http.request.method ne \"POST\"");
	assert_false_expr("http.request.method != \"GET\"");
	/* byte order, shorter first */
	assert_true_expr("http.request.method < \"H\"");
	assert_true_expr("http.request.method lt \"GETA\"");
	assert_true_expr("http.request.method > \"GE\"");
	assert_true_expr("http.request.method gt \"A\"");
	assert_true_expr("http.request.method <= \"GET\" and http.request.method >= \"GET\"");
	assert_true_expr("http.request.method le \"GET\" and http.request.method ge \"GET\"");
	assert_false_expr("http.request.method < \"GET\" or http.request.method > \"GET\"");

	assert_true_expr("http.request.uri.path contains \"/cgi-bin/\"");
	assert_true_expr("http.request.uri.path contains \"\"");
	assert_false_expr("http.request.uri.path contains \"/CGI-BIN/\"");
	assert_true_expr("lower(http.user_agent) contains \"zgrab\"");
	assert_true_expr("upper(http.user_agent) contains \"ZGRAB/0.X\"");
	assert_true_expr("http.user_agent matches \"^ZGrab/[0-9]\"");
	assert_false_expr("http.user_agent matches \"^zgrab\"");
	assert_true_expr("http.user_agent matches \"(?i)^zgrab\"");
	assert_true_expr("http.request.uri.path matches r\"\\.cgi$\"");

	assert_true_expr("http.request.method in {\"PUT\" \"GET\" \"POST\"}");
	assert_false_expr("http.request.method in {\"PUT\" \"POST\" \"get\"}");
	assert_true_expr("lower(http.host) in {\"cam.example.com\" \"x\"}");

	assert_true_expr("starts_with(http.request.uri.path, \"/cgi-bin\")");
	assert_true_expr("starts_with(http.request.uri.path, \"\")");
	assert_false_expr("starts_with(http.request.uri.path, \"cgi-bin\")");
	assert_true_expr("ends_with(http.request.uri.path, \".cgi\")");
	assert_false_expr("ends_with(http.request.uri.path, \".cgi/\")");
	assert_true_expr("ends_with(http.request.uri.path, \"\")");
	assert_true_expr("starts_with(lower(http.user_agent), \"zgrab/\")");
	assert_true_expr("ends_with(upper(http.host), \".COM\")");

	assert_true_expr("url_decode(http.request.uri.query) contains \"ping;id\"");
	assert_true_expr("url_decode(http.request.uri.query) contains \"q=a b\"");
	assert_true_expr("len(http.request.method) == 3");
	assert_true_expr("len(http.request.uri.path) > 10 and len(http.request.uri.path) < 100");
	assert_true_expr("len(http.request.method) in {1 2 3}");
	assert_false_expr("len(http.request.method) in {4 5}");
	assert_true_expr("upper(lower(http.request.method)) == \"GET\"");
}

static void test_bools_and_logic(void **state)
{
	struct moat_rules_input in;

	(void)state;
	assert_true_expr("true");
	assert_false_expr("false");
	assert_true_expr("not false");
	assert_true_expr("tls.client.verified");
	assert_true_expr("tls.client.verified == true");
	assert_false_expr("tls.client.verified == false");
	assert_true_expr("tls.client.verified != false");
	assert_false_expr("not tls.client.verified");
	in = h_input();
	in.client_verified = 0;
	assert_true(h_eval_in("not tls.client.verified", &in));
	assert_true(h_eval_in("tls.client.verified == false", &in));

	assert_true_expr("true and true and true");
	assert_false_expr("true and false and true");
	assert_true_expr("false or false or true");
	assert_false_expr("false or false");
	assert_true_expr("true xor false");
	assert_false_expr("true xor true");
	assert_true_expr("true xor true xor true");
	assert_true_expr("true ^^ false && !false || false");
	assert_true_expr("not (true and false)");
	assert_true_expr("(false or true) and (true xor false)");
}

static void test_ints(void **state)
{
	struct moat_rules_input in = h_input();

	(void)state;
	in.body_size = 1234;
	assert_true(h_eval_in("http.request.body.size == 1234", &in));
	assert_true(
	        h_eval_in("http.request.body.size > 1000 and http.request.body.size <= 1234", &in));
	assert_true(h_eval_in("http.request.body.size ge 1234 and http.request.body.size lt 1235",
	                      &in));
	assert_true(h_eval_in("http.request.body.size != 0", &in));
	assert_true(h_eval_in("http.request.body.size in {1 1234 99}", &in));
	assert_true(h_eval_in("http.request.body.size > -1", &in));
	in.body_size = UINT64_MAX; /* beyond int64: saturates */
	assert_true(h_eval_in("http.request.body.size == 9223372036854775807", &in));
	assert_true_expr("count(http.request.headers[\"user-agent\"]) == 2");
	assert_true_expr("count(http.request.headers[\"x-none\"]) == 0");
	assert_true_expr("count(http.request.uri.args[\"cmd\"]) == 2");
	assert_true_expr("count(device.tags) == 3");
	assert_true_expr("count(http.request.headers.names) == 6");
}

static void test_lists(void **state)
{
	(void)state;
	/* headers: case-insensitive names, one value per line, in order */
	assert_true_expr("http.request.headers[\"X-MULTI\"] == \"a\"");
	assert_true_expr("http.request.headers[\"x-multi\"] == \"B\"");
	assert_false_expr("http.request.headers[\"x-multi\"] == \"b\"");
	assert_true_expr("lower(http.request.headers[\"x-multi\"]) == \"b\"");
	/* without any()/all(): some element */
	assert_true_expr("http.request.headers[\"x-multi\"] != \"a\"");
	assert_true_expr("http.request.headers[\"user-agent\"] contains \"second\"");
	assert_true_expr("any(http.request.headers[\"x-multi\"] == \"a\")");
	assert_false_expr("all(http.request.headers[\"x-multi\"] == \"a\")");
	assert_true_expr("all(lower(http.request.headers[\"x-multi\"]) in {\"a\" \"b\"})");
	assert_true_expr("all(len(http.request.headers[\"x-multi\"]) == 1)");
	assert_true_expr("len(http.request.headers[\"user-agent\"]) == 6");
	/* one element satisfies the whole condition */
	assert_true_expr("any(http.request.headers[\"user-agent\"] contains \"Grab\" and "
	                 "http.request.headers[\"user-agent\"] contains \"0.x\")");
	assert_false_expr("any(http.request.headers[\"user-agent\"] contains \"Grab\" and "
	                  "http.request.headers[\"user-agent\"] contains \"second\")");
	/* whereas separate comparisons may each find their own element */
	assert_true_expr("http.request.headers[\"user-agent\"] contains \"Grab\" and "
	                 "http.request.headers[\"user-agent\"] contains \"second\"");
	assert_true_expr("all(http.request.headers[\"user-agent\"] matches \"^[A-Za-z]\" or "
	                 "http.host == \"nothing\")");
	assert_true_expr("any(not http.request.headers[\"x-multi\"] == \"a\")");
	/* empty and missing lists: any() and all() are false, and so is a comparison */
	assert_false_expr("any(http.request.headers[\"x-none\"] == \"a\")");
	assert_false_expr("all(http.request.headers[\"x-none\"] == \"a\")");
	assert_false_expr("http.request.headers[\"x-none\"] != \"a\"");
	assert_true_expr("not http.request.headers[\"x-none\"] == \"a\"");
	/* names are lowered, values as sent */
	assert_true_expr("http.request.headers.names == \"user-agent\"");
	assert_false_expr("http.request.headers.names == \"User-Agent\"");
	assert_true_expr("http.request.headers.values == \"*/*\"");
	assert_true_expr("all(http.request.headers.names matches \"^[a-z-]+$\")");
	/* query arguments: decoded, in order, case-sensitive names */
	assert_true_expr("http.request.uri.args[\"cmd\"] == \"ping;id\"");
	assert_true_expr("http.request.uri.args[\"cmd\"] == \"x\"");
	assert_true_expr("any(http.request.uri.args[\"cmd\"] contains \";\")");
	assert_false_expr("all(http.request.uri.args[\"cmd\"] contains \";\")");
	assert_false_expr("http.request.uri.args[\"debug\"] == \"1\"");
	assert_true_expr("http.request.uri.args[\"Debug\"] == \"1\"");
	assert_true_expr("http.request.uri.args[\"empty\"] == \"\"");
	assert_true_expr("http.request.uri.args[\"flag\"] == \"\"");
	assert_true_expr("http.request.uri.args[\"q\"] == \"a b\"");
	assert_true_expr("http.request.uri.args.names == \"flag\"");
	assert_true_expr("http.request.uri.args.values == \"ping;id\"");
	assert_true_expr("count(http.request.uri.args.names) == 6");
	assert_true_expr("any(url_decode(http.request.uri.args[\"cmd\"]) == \"ping;id\")");
	/* device tags */
	assert_true_expr("device.tags == \"beta\"");
	assert_true_expr("lower(device.tags) == \"outdoor\"");
	assert_true_expr("any(starts_with(device.tags, \"Out\"))");
	assert_true_expr("all(len(device.tags) >= 3)");
	assert_false_expr("device.tags in {\"prod\" \"field\"}");
	assert_true_expr("any(device.tags == \"lab\" and http.request.method == \"GET\")");
}

static void test_missing(void **state)
{
	struct moat_rules_input in = h_input();

	(void)state;
	/* no device entry: every comparison with a device field is false, even != */
	in.device = NULL;
	assert_false(h_eval_in("device.model == \"CAM-1\"", &in));
	assert_false(h_eval_in("device.model != \"CAM-1\"", &in));
	assert_true(h_eval_in("not device.model == \"CAM-1\"", &in));
	assert_false(h_eval_in("device.firmware < \"9.0\"", &in));
	assert_false(h_eval_in("device.firmware != \"9.0\"", &in));
	assert_false(h_eval_in("device.tags == \"lab\"", &in));
	assert_false(h_eval_in("count(device.tags) == 0", &in));
	assert_false(h_eval_in("len(device.model) > 0", &in));
	assert_true(h_eval_in("not len(device.model) > 0", &in));
	assert_false(h_eval_in("any(device.tags != \"x\")", &in));
	assert_false(h_eval_in("lower(device.model) contains \"\"", &in));
	/* a device without a model or firmware */
	in = h_input();
	h_dev.model = NULL;
	h_dev.firmware = NULL;
	assert_false(h_eval_in("device.model == \"CAM-1\" or device.model != \"CAM-1\"", &in));
	assert_false(h_eval_in("device.firmware >= \"0\"", &in));
	h_dev.model = "CAM-1";
	h_dev.firmware = "2.0.9";
	/* no request (a TCP connection evaluated with HTTP fields): all missing */
	in = h_input();
	in.req = NULL;
	assert_false(h_eval_in("http.request.method == \"GET\"", &in));
	assert_false(h_eval_in("http.request.method != \"GET\"", &in));
	assert_false(h_eval_in("http.request.headers[\"host\"] contains \"\"", &in));
	assert_false(h_eval_in("count(http.request.headers.names) >= 0", &in));
	assert_false(h_eval_in("http.request.uri.args.names == \"a\"", &in));
	assert_false(h_eval_in("http.request.body.size >= 0", &in));
	/* missing strings in the input */
	in = h_input();
	in.tls_version = NULL;
	in.src = NULL;
	assert_false(h_eval_in("tls.version == \"TLSv1.3\"", &in));
	assert_false(h_eval_in("tls.version != \"TLSv1.3\"", &in));
	assert_false(h_eval_in("ip.src in {::/0}", &in));
	assert_false(h_eval_in("ip.src != 10.0.0.1", &in));
	/* an empty string is a value, not a missing field */
	in = h_input();
	in.sni = "";
	assert_true(h_eval_in("tls.sni == \"\"", &in));
	assert_true(h_eval_in("len(tls.sni) == 0", &in));
	/* no User-Agent: missing, unlike an empty header list */
	h_set_request("GET / HTTP/1.1\r\nHost: a\r\n");
	assert_false_expr("http.user_agent != \"x\"");
	assert_false_expr("len(http.user_agent) >= 0");
	assert_true_expr("count(http.request.headers[\"user-agent\"]) == 0");
	/* no body read: missing; body.size is still known */
	in = h_input();
	assert_false(h_eval_in("http.request.body contains \"\"", &in));
	assert_true(h_eval_in("http.request.body.size == 0", &in));
	h_set_request(REQ);
}

static void test_body(void **state)
{
	struct moat_rules_input in = h_input();
	struct moat_ruleset *rs;

	(void)state;
	in.body = "{\"cmd\":\"$(reboot)\"}";
	in.body_len = strlen(in.body);
	in.body_size = in.body_len;
	assert_true(h_eval_in("http.request.body contains \"$(\"", &in));
	assert_true(h_eval_in("http.request.body matches r\"\\$\\([a-z]+\\)\"", &in));
	assert_true(h_eval_in("len(http.request.body) == 19", &in));
	/* only the first body_limit bytes are visible */
	rs = NULL;
	{
		struct moat_rules_limits lim;
		const char *text =
		        "[rule b]\nname = b\nexpr = http.request.body contains \"reboot\"\n"
		        "[rule c]\nname = c\nexpr = len(http.request.body) == 8\n";

		memset(&lim, 0, sizeof(lim));
		lim.body_limit = 8;
		assert_int_equal(moat_rules_load_buffer("b", text, strlen(text), MOAT_RULES_HTTP,
		                                        &lim, NULL, NULL, &rs),
		                 MOAT_OK);
	}
	assert_int_equal(moat_ruleset_needs_body(rs), 1);
	assert_false(h_eval_rule(rs, 0, &in));
	assert_true(h_eval_rule(rs, 1, &in));
	moat_ruleset_free(rs);
	rs = h_compile("http.request.body.size > 10", MOAT_RULES_HTTP);
	assert_int_equal(moat_ruleset_needs_body(rs), 1);
	moat_ruleset_free(rs);
	rs = h_compile("http.request.uri.path == \"/\"", MOAT_RULES_HTTP);
	assert_int_equal(moat_ruleset_needs_body(rs), 0);
	moat_ruleset_free(rs);
}

static int ip_in(const char *addr, const char *expr)
{
	h_set_src(addr);
	return h_eval(expr);
}

static void test_cidr(void **state)
{
	(void)state;
	/* IPv4 */
	assert_true(ip_in("10.1.2.3", "ip.src in {10.0.0.0/8}"));
	assert_true(ip_in("10.0.0.0", "ip.src in {10.0.0.0/8}"));
	assert_true(ip_in("10.255.255.255", "ip.src in {10.0.0.0/8}"));
	assert_false(ip_in("11.0.0.0", "ip.src in {10.0.0.0/8}"));
	assert_false(ip_in("9.255.255.255", "ip.src in {10.0.0.0/8}"));
	assert_true(ip_in("192.0.2.7", "ip.src == 192.0.2.7"));
	assert_false(ip_in("192.0.2.8", "ip.src == 192.0.2.7"));
	assert_true(ip_in("192.0.2.8", "ip.src != 192.0.2.7"));
	assert_true(ip_in("192.0.2.200", "ip.src == 192.0.2.128/25"));
	assert_false(ip_in("192.0.2.127", "ip.src == 192.0.2.128/25"));
	assert_true(ip_in("192.0.2.127", "ip.src != 192.0.2.128/25"));
	assert_true(ip_in("255.255.255.255", "ip.src in {255.255.255.255/32}"));
	assert_true(ip_in("0.0.0.0", "ip.src in {0.0.0.0/0}"));
	assert_true(ip_in("203.0.113.9", "ip.src in {0.0.0.0/0}"));
	/* IPv4 ranges do not match native IPv6 addresses */
	assert_false(ip_in("2001:db8::1", "ip.src in {0.0.0.0/0}"));
	/* IPv4-mapped IPv6 peers match IPv4 ranges */
	assert_true(ip_in("::ffff:10.1.2.3", "ip.src in {10.0.0.0/8}"));
	assert_true(ip_in("::ffff:192.0.2.7", "ip.src == 192.0.2.7"));
	assert_false(ip_in("::ffff:11.0.0.1", "ip.src in {10.0.0.0/8}"));
	assert_true(ip_in("10.1.2.3", "ip.src == ::ffff:10.1.2.3"));
	assert_true(ip_in("10.1.2.3", "ip.src in {::ffff:10.0.0.0/104}"));
	/* but not IPv4-compatible or NAT64 forms */
	assert_false(ip_in("::10.1.2.3", "ip.src in {10.0.0.0/8}"));
	assert_false(ip_in("64:ff9b::10.1.2.3", "ip.src in {10.0.0.0/8}"));
	/* IPv6 */
	assert_true(ip_in("2001:db8::1", "ip.src in {2001:db8::/32}"));
	assert_true(ip_in("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "ip.src in {2001:db8::/32}"));
	assert_false(ip_in("2001:db9::", "ip.src in {2001:db8::/32}"));
	assert_false(ip_in("2001:db7:ffff::1", "ip.src in {2001:db8::/32}"));
	assert_true(ip_in("::1", "ip.src == ::1"));
	assert_false(ip_in("::2", "ip.src == ::1"));
	assert_true(ip_in("fe80::1", "ip.src in {fe80::/10}"));
	assert_true(ip_in("febf::1", "ip.src in {fe80::/10}"));
	assert_false(ip_in("fec0::1", "ip.src in {fe80::/10}"));
	assert_true(ip_in("2001:db8::1", "ip.src in {2001:db8::/127}"));
	assert_false(ip_in("2001:db8::2", "ip.src in {2001:db8::/127}"));
	/* ::/0 is every address, IPv4 ones included (they are mapped) */
	assert_true(ip_in("2001:db8::1", "ip.src in {::/0}"));
	assert_true(ip_in("192.0.2.1", "ip.src in {::/0}"));
	/* overlapping and adjacent ranges in one set */
	assert_true(ip_in("10.127.255.255", "ip.src in {10.0.0.0/9 10.128.0.0/9 192.0.2.0/24}"));
	assert_true(ip_in("10.128.0.0", "ip.src in {10.0.0.0/9 10.128.0.0/9 192.0.2.0/24}"));
	assert_false(ip_in("11.0.0.0", "ip.src in {10.0.0.0/9 10.128.0.0/9 192.0.2.0/24}"));
	assert_true(ip_in("10.5.0.1", "ip.src in {10.5.0.0/16 10.0.0.0/8 10.5.0.1}"));
	assert_false(ip_in("192.0.3.0", "ip.src in {192.0.2.0/24, 192.0.2.5, 10.0.0.0/8}"));
	assert_true(ip_in("192.0.2.255", "ip.src in {192.0.2.0/24, 192.0.2.5, 10.0.0.0/8}"));
	assert_true(ip_in("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ip.src in {::/1 8000::/1}"));
	assert_true(ip_in("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ip.src in {::/1 8000::/1}"));
	/* not an IP socket: missing */
	memset(&h_src, 0, sizeof(h_src));
	h_src.ss_family = AF_UNIX;
	assert_false_expr("ip.src in {::/0}");
	assert_false_expr("ip.src != 10.0.0.1");
	h_set_src("192.0.2.10");
}

static int fw(const char *version, const char *expr)
{
	struct moat_rules_input in = h_input();
	int r;

	h_dev.firmware = version;
	r = h_eval_in(expr, &in);
	h_dev.firmware = "2.0.9";
	return r;
}

static void test_firmware(void **state)
{
	(void)state;
	assert_true(fw("2.10.0", "device.firmware > \"2.9.1\""));
	assert_true(fw("2.9.1", "device.firmware < \"2.10.0\""));
	assert_true(fw("1.0", "device.firmware == \"1.0.0\""));
	assert_true(fw("v1.2.3", "device.firmware == \"1.2.3\""));
	assert_true(fw("1.0.0-rc.1", "device.firmware < \"1.0.0\""));
	assert_true(fw("1.0.0-rc.1", "device.firmware >= \"1.0.0-beta.11\""));
	assert_true(fw("1.0.0+build.7", "device.firmware == \"1.0.0\""));
	assert_true(fw("2.0.9", "device.firmware in {\"2.0.8\" \"2.0.9\" \"v3\"}"));
	assert_true(fw("3.0", "device.firmware in {\"2.0.8\" \"2.0.9\" \"v3\"}"));
	assert_false(fw("2.0.10", "device.firmware in {\"2.0.8\" \"2.0.9\" \"v3\"}"));
	assert_true(fw("2.0.9", "device.firmware ge \"2.0.9\" and device.firmware le \"2.0.9\""));
	assert_true(fw("2.0.9", "device.firmware != \"2.0.10\""));
	/* a malformed version is missing for version comparisons, even != */
	assert_false(fw("2.0.9b", "device.firmware < \"9\""));
	assert_false(fw("2.0.9b", "device.firmware != \"9\""));
	assert_false(fw("2.0.9b", "device.firmware in {\"2.0.9\"}"));
	assert_true(fw("2.0.9b", "not device.firmware >= \"0\""));
	assert_false(fw("", "device.firmware >= \"0\""));
	/* ... but its text is there for the string operators */
	assert_true(fw("2.0.9b", "device.firmware contains \"9b\""));
	assert_true(fw("2.0.9b", "ends_with(device.firmware, \"b\")"));
	assert_true(fw("2.0.9b", "device.firmware matches \"[a-z]$\""));
	assert_true(fw("2.0.9b", "lower(device.firmware) == \"2.0.9b\""));
	assert_true(fw("2.0.9b", "len(device.firmware) == 6"));
}

static void test_connection_fields(void **state)
{
	(void)state;
	assert_true_expr("tls.version == \"TLSv1.3\"");
	assert_true_expr("tls.sni == \"gw.example.com\"");
	assert_true_expr("tls.client.fingerprint == \"ab12cd\"");
	assert_true_expr("tls.client.serial == \"01F2\"");
	assert_true_expr("tenant == \"acme\"");
	assert_true_expr("device.id == \"dev-0001\"");
	assert_true_expr("device.model == \"CAM-1\"");
	assert_true_expr("http.host == \"cam.example.com\"");
	assert_true_expr("http.request.uri == \"/cgi-bin/diag.cgi?cmd=ping%3Bid&cmd=x&Debug=1&"
	                 "empty=&flag&q=a+b\"");
	assert_true_expr("starts_with(http.request.uri.query, \"cmd=\")");
	assert_true_expr("http.user_agent == \"ZGrab/0.x\"");
}

/* ---- verdicts ------------------------------------------------------------------------------ */

static char hits[256];

static void on_hit(void *arg, const struct moat_rule *r)
{
	size_t n = strlen(hits);

	(void)arg;
	snprintf(hits + n, sizeof(hits) - n, "%s%s", n ? "," : "", r->id);
}

static const struct moat_rule *run(const struct moat_ruleset *rs, enum moat_rule_action *action)
{
	struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
	struct moat_rules_input in = h_input();
	struct moat_rules_verdict v;

	hits[0] = '\0';
	memset(&v, 0xff, sizeof(v));
	moat_rules_eval(rs, &in, &sc, on_hit, NULL, &v);
	*action = v.action;
	return v.rule;
}

static void test_verdicts(void **state)
{
	const char *text =
	        "[rule logged]\nname = a\naction = log\nexpr = true\n"
	        "[rule dry]\nname = b\nmode = dry-run\nexpr = http.request.method == \"GET\"\n"
	        "[rule off]\nname = c\nenabled = false\nexpr = true\n"
	        "[rule nomatch]\nname = d\nexpr = http.request.method == \"POST\"\n"
	        "[rule blocker]\nname = e\nstatus = 451\nexpr = http.request.uri.path "
	        "contains \"cgi\"\n"
	        "[rule later]\nname = f\nexpr = true\n";
	struct moat_ruleset *rs = NULL;
	const struct moat_rule *r;
	enum moat_rule_action action;

	(void)state;
	assert_int_equal(moat_rules_load_buffer("v", text, strlen(text), MOAT_RULES_HTTP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	assert_int_equal(moat_ruleset_count(rs), 6);
	r = run(rs, &action);
	assert_non_null(r);
	assert_string_equal(r->id, "blocker");
	assert_int_equal(r->status, 451);
	assert_int_equal(action, MOAT_RULE_BLOCK);
	/* every hit reported in order, dry-run included, and nothing after the decision */
	assert_string_equal(hits, "logged,dry,blocker");
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 0)->hits_enforce), 1);
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 1)->hits_dry_run), 1);
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 1)->hits_enforce), 0);
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 2)->hits_enforce), 0);
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 4)->hits_enforce), 1);
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 5)->hits_enforce), 0);
	run(rs, &action);
	assert_int_equal(atomic_load(&moat_ruleset_rule(rs, 4)->hits_enforce), 2);
	assert_null(moat_ruleset_rule(rs, 6));
	moat_ruleset_free(rs);

	/* dry-run block never decides; allow stops with ALLOW; close */
	text = "[rule a]\nname = a\nmode = dry-run\nexpr = true\n"
	       "[rule b]\nname = b\naction = allow\nexpr = http.host == \"cam.example.com\"\n"
	       "[rule c]\nname = c\nexpr = true\n";
	assert_int_equal(moat_rules_load_buffer("v", text, strlen(text), MOAT_RULES_HTTP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	r = run(rs, &action);
	assert_int_equal(action, MOAT_RULE_ALLOW);
	assert_string_equal(r->id, "b");
	assert_string_equal(hits, "a,b");
	moat_ruleset_free(rs);

	text = "[rule a]\nname = a\naction = close\nexpr = true\n";
	assert_int_equal(moat_rules_load_buffer("v", text, strlen(text), MOAT_RULES_TCP, NULL, NULL,
	                                        NULL, &rs),
	                 MOAT_OK);
	r = run(rs, &action);
	assert_int_equal(action, MOAT_RULE_CLOSE);
	assert_string_equal(r->id, "a");
	moat_ruleset_free(rs);

	/* nothing matches: LOG and no rule */
	text = "[rule a]\nname = a\nexpr = false\n[rule b]\nname = b\naction = log\nexpr = true\n";
	assert_int_equal(moat_rules_load_buffer("v", text, strlen(text), MOAT_RULES_HTTP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	r = run(rs, &action);
	assert_int_equal(action, MOAT_RULE_LOG);
	assert_null(r);
	assert_string_equal(hits, "b");
	moat_ruleset_free(rs);

	/* an empty ruleset and NULL arguments */
	assert_int_equal(moat_rules_load_buffer("v", "", 0, MOAT_RULES_HTTP, NULL, NULL, NULL, &rs),
	                 MOAT_OK);
	assert_int_equal(moat_ruleset_count(rs), 0);
	r = run(rs, &action);
	assert_null(r);
	assert_int_equal(action, MOAT_RULE_LOG);
	moat_ruleset_free(rs);
	r = run(NULL, &action);
	assert_null(r);
	assert_int_equal(moat_ruleset_count(NULL), 0);
	assert_int_equal(moat_ruleset_needs_body(NULL), 0);
	moat_ruleset_free(NULL);
}

static void test_scratch(void **state)
{
	struct moat_ruleset *rs = h_compile("http.request.uri.path contains \"/cgi-bin/\" or "
	                                    "lower(http.user_agent) contains \"zgrab\"",
	                                    MOAT_RULES_HTTP);
	struct moat_rules_input in = h_input();
	struct moat_rules_verdict v;
	struct moat_rules_stats st;
	struct moat_rules_scratch sc;
	size_t need = moat_ruleset_scratch_size(rs), fixed = rs->scratch_fixed;

	(void)state;
	assert_true(need >= fixed + 16 + MOAT_RULES_SCRATCH_ARENA);
	/* enough: blocks */
	sc.mem = h_mem + 1; /* any alignment */
	sc.cap = need;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	assert_non_null(v.rule);
	/* too small for the fixed part: nothing evaluated, counted */
	sc.cap = fixed / 2;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	assert_null(v.rule);
	moat_ruleset_stats(rs, &st);
	assert_int_equal(st.scratch_overflows, 1);
	sc.mem = NULL;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	assert_null(v.rule);
	/* room for the table but not for the values: the fields that need memory (the
	 * normalised path, a lowered copy, prefilter rows) are missing, counted */
	sc.mem = h_mem;
	sc.cap = fixed;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	assert_null(v.rule);
	moat_ruleset_stats(rs, &st);
	assert_true(st.scratch_overflows >= 3);
	assert_true(st.values >= 2);
	moat_ruleset_free(rs);
}

/*
 * A request at the HTTP limits, crafted to need as much scratch as possible (the longest
 * request line, the largest head, every value copied several times), must not push any value
 * out of a scratch of moat_ruleset_scratch_size(): otherwise a rule on it would fail open.
 */
static void test_scratch_bound(void **state)
{
	static _Alignas(16) char mem[1 << 20];
	static char head[40000];
	static const char *const text =
	        "[rule up]\nname = u\naction = log\n"
	        "expr = any(upper(url_decode(http.request.headers.values)) contains \"NOPE\")\n"
	        "[rule names]\nname = n\naction = log\n"
	        "expr = any(upper(http.request.headers.names) == \"X\") or "
	        "len(lower(url_decode(http.request.uri.path.raw))) < 0 or "
	        "any(lower(http.request.uri.args.values) == \"x\") or "
	        "any(url_decode(http.request.uri.args[\"a\"]) == \"x\") or "
	        "lower(http.request.uri) == \"x\" or lower(http.request.uri.path) == \"x\" or "
	        "all(len(lower(http.request.headers[\"x-pad\"])) > 100000)\n"
	        "[rule jndi]\nname = j\n"
	        "expr = any(lower(url_decode(http.request.headers.values)) contains \"${jndi:\")\n";
	struct moat_ruleset *rs = NULL;
	struct moat_rules_input in;
	struct moat_rules_verdict v;
	struct moat_rules_stats st;
	struct moat_rules_scratch sc;
	size_t n = 0, need;
	int i;

	(void)state;
	assert_int_equal(moat_rules_load_buffer("b", text, strlen(text), MOAT_RULES_HTTP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	/* a request line near 8 KiB of "a&a&...": the most query arguments */
	n += (size_t)snprintf(head + n, sizeof(head) - n, "GET /p?");
	while (n < 8100)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "a&");
	n += (size_t)snprintf(head + n, sizeof(head) - n, "a HTTP/1.1\r\nHost: h\r\n");
	/* 98 header lines up to 32 KiB, the payload at the very end */
	for (i = 0; i < 97; i++) {
		n += (size_t)snprintf(head + n, sizeof(head) - n, "X-Pad: ");
		while (n % 240 != 0)
			head[n++] = '%';
		n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\n");
	}
	n += (size_t)snprintf(head + n, sizeof(head) - n, "X-Last: ${JNDI:ldap://x}\r\n\r\n");
	assert_true(n < 32768);
	h_set_request(head);
	in = h_input();
	need = moat_ruleset_scratch_size(rs);
	assert_true(need < sizeof(mem));
	sc.mem = mem;
	sc.cap = need;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	moat_ruleset_stats(rs, &st);
	assert_int_equal(st.scratch_overflows, 0);
	assert_non_null(v.rule);
	assert_string_equal(v.rule->id, "jndi");
	/* also when every value is computed and tested directly (the path taken when a value
	 * cannot be scanned), which needs the most memory */
	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v, MOAT_RULES_EVAL_NO_PREFILTER);
	moat_ruleset_stats(rs, &st);
	assert_int_equal(st.scratch_overflows, 0);
	assert_non_null(v.rule);
	assert_string_equal(v.rule->id, "jndi");
	/* with a fixed 64 KiB arena the same request would have slipped through */
	sc.cap = rs->scratch_fixed + 16 + MOAT_RULES_SCRATCH_ARENA;
	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v, MOAT_RULES_EVAL_NO_PREFILTER);
	moat_ruleset_stats(rs, &st);
	assert_true(st.scratch_overflows > 0);
	assert_null(v.rule);
	/* larger limits, a larger bound */
	{
		struct moat_http_limits big = {16384, 65536, 128};

		assert_true(moat_ruleset_scratch_size_for(rs, &big) > need);
	}
	moat_ruleset_free(rs);
	h_set_request(REQ);
}

static void test_value_sharing(void **state)
{
	/* the same value in many rules is computed once: a scratch that holds the normalised path
	 * once is enough for a hundred rules reading it */
	char text[16384];
	size_t n = 0, i;
	struct moat_ruleset *rs = NULL;
	struct moat_rules_stats st;

	(void)state;
	for (i = 0; i < 100; i++)
		n += (size_t)snprintf(
		        text + n, sizeof(text) - n,
		        "[rule r%zu]\nname = r\nexpr = http.request.uri.path == \"/x%zu\" "
		        "or lower(http.request.uri.path) contains \"/y%zu\"\n",
		        i, i, i);
	assert_int_equal(
	        moat_rules_load_buffer("s", text, n, MOAT_RULES_HTTP, NULL, NULL, NULL, &rs),
	        MOAT_OK);
	moat_ruleset_stats(rs, &st);
	assert_int_equal(st.values, 2); /* path, lower(path) */
	moat_ruleset_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_strings, setup),
	        cmocka_unit_test_setup(test_bools_and_logic, setup),
	        cmocka_unit_test_setup(test_ints, setup),
	        cmocka_unit_test_setup(test_lists, setup),
	        cmocka_unit_test_setup(test_missing, setup),
	        cmocka_unit_test_setup(test_body, setup),
	        cmocka_unit_test_setup(test_cidr, setup),
	        cmocka_unit_test_setup(test_firmware, setup),
	        cmocka_unit_test_setup(test_connection_fields, setup),
	        cmocka_unit_test_setup(test_verdicts, setup),
	        cmocka_unit_test_setup(test_scratch, setup),
	        cmocka_unit_test_setup(test_scratch_bound, setup),
	        cmocka_unit_test_setup(test_value_sharing, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
