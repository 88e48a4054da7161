/*
 * Tests for src/admin/rules.c and the rule half of src/admin/stats.c, through
 * moat_admin_handle with a real store in a temporary data directory: compile errors with their
 * positions (nothing saved), ids made from names, defaults and field checks, the whole rule
 * set compiled on every write, enable/disable, validation, TCP scope, statistics, store
 * failures, and tenant isolation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <jansson.h>

#include "admin/internal.h"
#include "core/alloc.h"

#include "fixture.h"

/* ---- fixture: a data dir, a store, an operator token, tenants acme and beta ---------------- */

static int setup(void **state)
{
	(void)state;
	return fixture_open_tenants("ruletest", 0);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static json_t *get_rule(const char *tenant, const char *id, int expect)
{
	char target[200];
	json_t *o = NULL;

	snprintf(target, sizeof(target), "/v1/tenants/%s/rules/%s", tenant, id);
	assert_int_equal(call("GET", target, F.op, NULL, &o), expect);
	return o;
}

static size_t rule_count(const char *tenant)
{
	char target[160];
	json_t *o = NULL;
	size_t n;

	snprintf(target, sizeof(target), "/v1/tenants/%s/rules", tenant);
	assert_int_equal(call("GET", target, F.op, NULL, &o), 200);
	n = json_array_size(json_object_get(o, "items"));
	json_decref(o);
	return n;
}

/* Creates a rule from a JSON text; returns the answer (status checked). */
static json_t *create(const char *body, int expect)
{
	json_error_t e;
	json_t *j = json_loads(body, 0, &e), *o = NULL;

	assert_non_null(j);
	assert_int_equal(call("POST", "/v1/tenants/acme/rules", F.op, j, &o), expect);
	return o;
}

static json_int_t num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

#define GOOD_EXPR "http.request.uri.path contains \\\"/cgi-bin/\\\""

/* ---- creating ---------------------------------------------------------------------------- */

static void test_create_defaults(void **state)
{
	json_t *o, *hits;
	unsigned changed = F.changed;

	(void)state;
	o = create("{\"name\":\"CVE-2026-0001 cgi injection\",\"expr\":\"" GOOD_EXPR "\","
	           "\"reference\":\"CVE-2026-0001\",\"mode\":\"dry-run\"}",
	           201);
	assert_string_equal(str(o, "id"), "cve-2026-0001-cgi-injection");
	assert_string_equal(str(o, "name"), "CVE-2026-0001 cgi injection");
	assert_string_equal(str(o, "expr"), "http.request.uri.path contains \"/cgi-bin/\"");
	assert_string_equal(str(o, "action"), "block");
	assert_string_equal(str(o, "mode"), "dry-run");
	assert_string_equal(str(o, "scope"), "http");
	assert_int_equal(num(o, "status"), 403);
	assert_true(json_is_null(json_object_get(o, "body")));
	assert_true(json_is_null(json_object_get(o, "description")));
	assert_string_equal(str(o, "reference"), "CVE-2026-0001");
	assert_true(json_is_true(json_object_get(o, "enabled")));
	assert_true(num(o, "position") >= 1);
	hits = json_object_get(o, "hits");
	assert_int_equal(num(hits, "enforce"), 0);
	assert_int_equal(num(hits, "dry_run"), 0);
	assert_true(json_is_string(json_object_get(o, "created_at")));
	assert_true(F.changed > changed);
	json_decref(o);
	o = get_rule("acme", "cve-2026-0001-cgi-injection", 200);
	assert_string_equal(str(o, "mode"), "dry-run");
	json_decref(o);
}

static void test_create_bad_expr(void **state)
{
	const char *expr = "http.request.uri.path == \"/\" and http.request.pth == 1";
	json_t *o = NULL, *err;
	unsigned changed = F.changed;
	size_t col = (size_t)(strstr(expr, "http.request.pth") - expr) + 1;
	char want[160], caret[200];

	(void)state;
	assert_int_equal(call("POST", "/v1/tenants/acme/rules", F.op,
	                      json_pack("{s:s, s:s}", "name", "bad", "expr", expr), &o),
	                 422);
	assert_string_equal(str(o, "error"), "invalid_rule");
	err = json_array_get(json_object_get(o, "errors"), 0);
	assert_non_null(err);
	assert_int_equal(num(err, "line"), 1);
	assert_int_equal(num(err, "col"), col);
	assert_non_null(strstr(str(err, "message"), "http.request.pth"));
	snprintf(caret, sizeof(caret), "%s\n%*s^", expr, (int)(col - 1), "");
	assert_string_equal(str(err, "caret"), caret);
	snprintf(want, sizeof(want), "1:%zu: %s", col, str(err, "message"));
	assert_string_equal(str(o, "detail"), want);
	json_decref(o);
	assert_int_equal(rule_count("acme"), 0); /* nothing saved */
	assert_int_equal(F.changed, changed);

	/* an error on a later line of a multi-line expression */
	assert_int_equal(call("POST", "/v1/tenants/acme/rules", F.op,
	                      json_pack("{s:s, s:s}", "name", "two lines", "expr",
	                                "http.host == \"a\"\n  and nope == 1"),
	                      &o),
	                 422);
	err = json_array_get(json_object_get(o, "errors"), 0);
	assert_int_equal(num(err, "line"), 2);
	assert_int_equal(num(err, "col"), 7);
	assert_string_equal(str(err, "caret"), "  and nope == 1\n      ^");
	json_decref(o);
	assert_int_equal(rule_count("acme"), 0);
}

static void test_ids(void **state)
{
	json_t *o;
	char name[300], body[400];

	(void)state;
	o = create("{\"name\":\"Block cgi\",\"expr\":\"" GOOD_EXPR "\"}", 201);
	assert_string_equal(str(o, "id"), "block-cgi");
	json_decref(o);
	o = create("{\"name\":\"block  CGI!\",\"expr\":\"" GOOD_EXPR "\"}", 201);
	assert_string_equal(str(o, "id"), "block-cgi-2");
	json_decref(o);
	o = create("{\"name\":\"--Block / cgi--\",\"expr\":\"" GOOD_EXPR "\"}", 201);
	assert_string_equal(str(o, "id"), "block-cgi-3");
	json_decref(o);
	o = create("{\"name\":\"H\\u00e9llo w\\u00f6rld v1.2:x_y\",\"expr\":\"" GOOD_EXPR "\"}",
	           201);
	assert_string_equal(str(o, "id"), "h-llo-w-rld-v1.2:x_y");
	json_decref(o);
	o = create("{\"name\":\"!!!\",\"expr\":\"" GOOD_EXPR "\"}", 201);
	assert_string_equal(str(o, "id"), "rule");
	json_decref(o);

	/* long names are cut to 64, and the suffix fits inside the 64 */
	memset(name, 'n', 100);
	name[100] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"%s\",\"expr\":\"" GOOD_EXPR "\"}", name);
	o = create(body, 201);
	assert_int_equal(strlen(str(o, "id")), 64);
	json_decref(o);
	o = create(body, 201);
	assert_int_equal(strlen(str(o, "id")), 64);
	assert_string_equal(str(o, "id") + 62, "-2");
	json_decref(o);

	/* given ids: kept as given, unique, of the id syntax; the name defaults to the id */
	o = create("{\"id\":\"My.Rule:1\",\"expr\":\"" GOOD_EXPR "\"}", 201);
	assert_string_equal(str(o, "id"), "My.Rule:1");
	assert_string_equal(str(o, "name"), "My.Rule:1");
	json_decref(o);
	json_decref(
	        create("{\"id\":\"My.Rule:1\",\"name\":\"x\",\"expr\":\"" GOOD_EXPR "\"}", 409));
	json_decref(
	        create("{\"id\":\"block-cgi\",\"name\":\"x\",\"expr\":\"" GOOD_EXPR "\"}", 409));
	json_decref(create("{\"id\":\"a b\",\"name\":\"x\",\"expr\":\"" GOOD_EXPR "\"}", 400));
	json_decref(create("{\"expr\":\"" GOOD_EXPR "\"}", 400));
}

static void test_fields(void **state)
{
	char big[9000], body[9200];
	json_t *o;

	(void)state;
	json_decref(create("{\"name\":\"a\"}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"\"}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"action\":\"drop\"}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"mode\":\"on\"}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"scope\":\"mqtt\"}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"status\":99}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"status\":600}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"action\":\"log\","
	                   "\"status\":404}",
	                   400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"action\":\"allow\","
	                   "\"body\":\"no\"}",
	                   400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"position\":0}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"enabled\":1}", 400));
	json_decref(create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"hits\":1}", 400));
	json_decref(
	        create("{\"name\":\"a\",\"expr\":\"" GOOD_EXPR "\",\"reference\":\"a\\nb\"}", 400));
	memset(big, 'x', 201);
	big[201] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"%s\",\"expr\":\"" GOOD_EXPR "\"}", big);
	json_decref(create(body, 400));
	big[200] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"%s\",\"expr\":\"" GOOD_EXPR "\"}", big);
	json_decref(create(body, 201));
	memset(big, 'd', 4097);
	big[4097] = '\0';
	snprintf(body, sizeof(body),
	         "{\"name\":\"d\",\"expr\":\"" GOOD_EXPR "\",\"description\":\"%s\"}", big);
	json_decref(create(body, 400));
	memset(big, 'r', 129);
	big[129] = '\0';
	snprintf(body, sizeof(body),
	         "{\"name\":\"r\",\"expr\":\"" GOOD_EXPR "\",\"reference\":\"%s\"}", big);
	json_decref(create(body, 400));
	memset(big, 'b', 8193);
	big[8193] = '\0';
	snprintf(body, sizeof(body), "{\"name\":\"b\",\"expr\":\"" GOOD_EXPR "\",\"body\":\"%s\"}",
	         big);
	json_decref(create(body, 400));
	assert_int_equal(rule_count("acme"), 1);

	o = create("{\"name\":\"teapot\",\"expr\":\"" GOOD_EXPR "\",\"status\":418,"
	           "\"body\":\"short\\nand stout\",\"description\":\"line one\\nline two\","
	           "\"action\":\"block\",\"enabled\":false,\"position\":3}",
	           201);
	assert_int_equal(num(o, "status"), 418);
	assert_string_equal(str(o, "body"), "short\nand stout");
	assert_true(json_is_false(json_object_get(o, "enabled")));
	assert_int_equal(num(o, "position"), 3);
	json_decref(o);
	o = create("{\"name\":\"logger\",\"expr\":\"" GOOD_EXPR "\",\"action\":\"log\"}", 201);
	assert_true(json_is_null(json_object_get(o, "status")));
	json_decref(o);
}

static void test_order(void **state)
{
	json_t *o = NULL, *items;

	(void)state;
	json_decref(create("{\"name\":\"one\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	json_decref(create("{\"name\":\"two\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	json_decref(create("{\"name\":\"zero\",\"expr\":\"" GOOD_EXPR "\",\"position\":1}", 201));
	assert_int_equal(call("GET", "/v1/tenants/acme/rules", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_int_equal(json_array_size(items), 3);
	assert_string_equal(str(json_array_get(items, 0), "id"), "zero");
	assert_string_equal(str(json_array_get(items, 1), "id"), "one");
	assert_string_equal(str(json_array_get(items, 2), "id"), "two");
	assert_true(num(json_array_get(items, 2), "position") >
	            num(json_array_get(items, 1), "position"));
	json_decref(o);
}

/* ---- the whole set, and scopes ----------------------------------------------------------- */

static void test_tcp_scope(void **state)
{
	json_t *o = NULL;

	(void)state;
	o = create("{\"name\":\"web in tcp\",\"scope\":\"tcp\",\"expr\":\"" GOOD_EXPR "\"}", 422);
	assert_string_equal(str(o, "error"), "invalid_rule");
	assert_int_equal(num(json_array_get(json_object_get(o, "errors"), 0), "col"), 1);
	json_decref(o);
	assert_int_equal(rule_count("acme"), 0);
	o = create("{\"name\":\"lab net\",\"scope\":\"tcp\",\"action\":\"close\","
	           "\"expr\":\"ip.src == 10.0.0.0/8 and tls.sni != \\\"x\\\"\"}",
	           201);
	assert_string_equal(str(o, "scope"), "tcp");
	json_decref(o);
	/* moving an HTTP rule into the TCP scope compiles it there */
	json_decref(create("{\"name\":\"web\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/web", F.op, "{\"scope\":\"tcp\"}"),
	                 422);
	o = get_rule("acme", "web", 200);
	assert_string_equal(str(o, "scope"), "http");
	json_decref(o);
}

/* A stored rule that does not compile (written behind the API's back) stops every write of
 * its scope, and the answer names it. */
static void test_whole_set(void **state)
{
	struct moat_store_rule r;
	json_t *o = NULL, *err;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.tenant = "acme";
	r.id = "broken";
	r.position = 1;
	r.name = "broken";
	r.expr = "http.nothing == 1";
	r.action = "block";
	r.mode = "enforce";
	r.scope = "http";
	r.enabled = 1;
	assert_int_equal(moat_store_rule_insert(F.store, &r), MOAT_OK);
	o = create("{\"name\":\"fine\",\"expr\":\"" GOOD_EXPR "\"}", 422);
	err = json_array_get(json_object_get(o, "errors"), 0);
	assert_string_equal(str(err, "rule"), "broken");
	assert_non_null(strstr(str(o, "detail"), "broken"));
	json_decref(o);
	/* the other scope is another set */
	json_decref(create("{\"name\":\"fine\",\"scope\":\"tcp\",\"expr\":\"tenant == \\\"a\\\"\"}",
	                   201));
	/* and the broken rule itself can be repaired or deleted */
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/broken", F.op,
	                        "{\"expr\":\"http.host == \\\"x\\\"\"}"),
	                 200);
	assert_int_equal(call_s("DELETE", "/v1/tenants/acme/rules/broken", F.op, NULL), 204);
}

/* ---- changing ---------------------------------------------------------------------------- */

static void test_patch(void **state)
{
	json_t *o = NULL;

	(void)state;
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\","
	                   "\"status\":451,\"body\":\"gone\",\"description\":\"d\"}",
	                   201));
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/r1", F.op,
	                        "{\"expr\":\"http.request.pth == 1\"}"),
	                 422);
	o = get_rule("acme", "r1", 200);
	assert_string_equal(str(o, "expr"), "http.request.uri.path contains \"/cgi-bin/\"");
	json_decref(o);

	assert_int_equal(call("PATCH", "/v1/tenants/acme/rules/r1", F.op,
	                      json_pack("{s:s, s:n, s:s}", "name", "renamed", "description", "mode",
	                                "dry-run"),
	                      &o),
	                 200);
	assert_string_equal(str(o, "name"), "renamed");
	assert_true(json_is_null(json_object_get(o, "description")));
	assert_string_equal(str(o, "mode"), "dry-run");
	assert_int_equal(num(o, "status"), 451); /* untouched */
	assert_string_equal(str(o, "body"), "gone");
	json_decref(o);

	/* status and body belong to block: a change of action drops them, giving them is refused */
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/r1", F.op,
	                        "{\"action\":\"log\",\"status\":403}"),
	                 400);
	assert_int_equal(call("PATCH", "/v1/tenants/acme/rules/r1", F.op,
	                      json_pack("{s:s}", "action", "log"), &o),
	                 200);
	assert_true(json_is_null(json_object_get(o, "status")));
	assert_true(json_is_null(json_object_get(o, "body")));
	json_decref(o);

	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/r1", F.op, "{\"id\":\"r2\"}"),
	                 400);
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/r1", F.op, "{\"name\":null}"),
	                 400);
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/r1", F.op, "{\"position\":-1}"),
	                 400);
	assert_int_equal(call_s("PATCH", "/v1/tenants/acme/rules/nope", F.op, "{\"name\":\"x\"}"),
	                 404);
	json_decref(get_rule("acme", "r2", 404));
}

static void test_enable_disable(void **state)
{
	json_t *o = NULL;

	(void)state;
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	assert_int_equal(call("POST", "/v1/tenants/acme/rules/r1/disable", F.op, NULL, &o), 200);
	assert_true(json_is_false(json_object_get(o, "enabled")));
	json_decref(o);
	o = get_rule("acme", "r1", 200);
	assert_true(json_is_false(json_object_get(o, "enabled")));
	json_decref(o);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/rules/r1/disable", F.op, NULL), 200);
	assert_int_equal(call("POST", "/v1/tenants/acme/rules/r1/enable", F.op, NULL, &o), 200);
	assert_true(json_is_true(json_object_get(o, "enabled")));
	json_decref(o);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/rules/nope/enable", F.op, NULL), 404);
}

static void test_delete(void **state)
{
	struct moat_store_audit *a = NULL;
	size_t n = 0;

	(void)state;
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	assert_int_equal(call_s("DELETE", "/v1/tenants/acme/rules/r1", F.op, NULL), 204);
	json_decref(get_rule("acme", "r1", 404));
	assert_int_equal(call_s("DELETE", "/v1/tenants/acme/rules/r1", F.op, NULL), 404);
	assert_int_equal(moat_store_audit_list(F.store, "acme", 0, 10, &a, &n), MOAT_OK);
	assert_true(n >= 2);
	assert_string_equal(a[0].action, "rule.delete");
	assert_string_equal(a[0].object, "acme/r1");
	assert_string_equal(a[1].action, "rule.create");
	moat_store_audits_free(a, n);
	/* the id is free again */
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\"}", 201));
}

static void test_validate(void **state)
{
	json_t *o = NULL, *err;

	(void)state;
	assert_int_equal(call("POST", "/v1/tenants/acme/rules/validate", F.op,
	                      json_pack("{s:s}", "expr", "http.request.method == \"POST\""), &o),
	                 200);
	assert_true(json_is_true(json_object_get(o, "valid")));
	json_decref(o);
	assert_int_equal(call("POST", "/v1/tenants/acme/rules/validate", F.op,
	                      json_pack("{s:s}", "expr", "http.request.method = \"POST\""), &o),
	                 422);
	assert_string_equal(str(o, "error"), "invalid_rule");
	err = json_array_get(json_object_get(o, "errors"), 0);
	assert_int_equal(num(err, "line"), 1);
	assert_true(num(err, "col") >= 1);
	assert_null(json_object_get(err, "rule"));
	json_decref(o);
	assert_int_equal(call("POST", "/v1/tenants/acme/rules/validate", F.op,
	                      json_pack("{s:s, s:s}", "expr", "http.host == \"a\"", "scope", "tcp"),
	                      &o),
	                 422);
	json_decref(o);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/rules/validate", F.op,
	                        "{\"expr\":\"tenant == \\\"a\\\"\",\"scope\":\"tcp\"}"),
	                 200);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/rules/validate", F.op, "{}"), 400);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/rules/validate", F.op,
	                        "{\"expr\":\"tenant == \\\"a\\\"\",\"scope\":\"udp\"}"),
	                 400);
	assert_int_equal(rule_count("acme"), 0); /* validation saves nothing */
}

/* ---- statistics, failures, access -------------------------------------------------------- */

static void test_rule_stats(void **state)
{
	json_t *o = NULL, *rules;

	(void)state;
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	assert_int_equal(call("GET", "/v1/tenants/acme/rules/r1/stats", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "rule"), "r1");
	assert_int_equal(num(json_object_get(o, "hits"), "enforce"), 0);
	assert_int_equal(num(json_object_get(o, "hits"), "dry_run"), 0);
	json_decref(o);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/rules/nope/stats", F.op, NULL), 404);
	assert_int_equal(call("GET", "/v1/tenants/acme/stats", F.op, NULL, &o), 200);
	rules = json_object_get(o, "rules");
	assert_int_equal(json_array_size(rules), 1);
	assert_string_equal(str(json_array_get(rules, 0), "id"), "r1");
	json_decref(o);
}

static void test_store_failure(void **state)
{
	unsigned changed;
	json_t *o;

	(void)state;
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	changed = F.changed;
	moat_store_fail(F.store, 1);
	json_decref(create("{\"id\":\"r2\",\"name\":\"r2\",\"expr\":\"" GOOD_EXPR "\"}", 500));
	assert_int_equal(call_s("GET", "/v1/tenants/acme/rules", F.op, NULL), 500);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/rules/r1", F.op, NULL), 500);
	assert_int_equal(call_s("POST", "/v1/tenants/acme/rules/r1/disable", F.op, NULL), 500);
	assert_int_equal(call_s("DELETE", "/v1/tenants/acme/rules/r1", F.op, NULL), 500);
	assert_int_equal(call_s("GET", "/v1/tenants/acme/rules/r1/stats", F.op, NULL), 500);
	moat_store_fail(F.store, 0);
	assert_int_equal(F.changed, changed);
	assert_int_equal(rule_count("acme"), 1);
	o = get_rule("acme", "r1", 200);
	assert_true(json_is_true(json_object_get(o, "enabled")));
	json_decref(o);
}

static void test_isolation(void **state)
{
	static const struct {
		const char *method, *target, *body;
	} calls[] = {
	        {"GET", "/v1/tenants/acme/rules", NULL},
	        {"POST", "/v1/tenants/acme/rules",
	         "{\"name\":\"x\",\"expr\":\"tenant == \\\"a\\\"\"}"},
	        {"GET", "/v1/tenants/acme/rules/r1", NULL},
	        {"PATCH", "/v1/tenants/acme/rules/r1", "{\"name\":\"x\"}"},
	        {"DELETE", "/v1/tenants/acme/rules/r1", NULL},
	        {"POST", "/v1/tenants/acme/rules/r1/enable", NULL},
	        {"POST", "/v1/tenants/acme/rules/r1/disable", NULL},
	        {"GET", "/v1/tenants/acme/rules/r1/stats", NULL},
	        {"POST", "/v1/tenants/acme/rules/validate", "{\"expr\":\"tenant == \\\"a\\\"\"}"},
	};
	json_t *o;

	(void)state;
	json_decref(create("{\"id\":\"r1\",\"name\":\"r1\",\"expr\":\"" GOOD_EXPR "\"}", 201));
	for (size_t i = 0; i < MOAT_ARRAY_LEN(calls); i++)
		assert_int_equal(call_s(calls[i].method, calls[i].target, F.beta, calls[i].body),
		                 404);
	o = get_rule("acme", "r1", 200);
	assert_string_equal(str(o, "name"), "r1");
	assert_true(json_is_true(json_object_get(o, "enabled")));
	json_decref(o);
	assert_int_equal(rule_count("acme"), 1);
	/* a tenant token manages its own tenant's rules */
	assert_int_equal(
	        call_s("POST", "/v1/tenants/beta/rules", F.beta,
	               "{\"id\":\"r1\",\"name\":\"b\",\"expr\":\"tenant == \\\"beta\\\"\"}"),
	        201);
	assert_int_equal(call_s("POST", "/v1/tenants/beta/rules/r1/disable", F.beta, NULL), 200);
	assert_int_equal(call_s("DELETE", "/v1/tenants/beta/rules/r1", F.beta, NULL), 204);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_create_defaults, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_create_bad_expr, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_ids, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_fields, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_order, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tcp_scope, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_whole_set, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_patch, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_enable_disable, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_delete, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_validate, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_rule_stats, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_store_failure, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_isolation, setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
