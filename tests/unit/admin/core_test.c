/*
 * Tests for src/admin/core.c, json.c, auth.c, tokens.c and tenants.c, through
 * moat_admin_handle with a real store in a temporary data directory: routing, authentication
 * and its failure limit, body checks, tenants and their CAs, tokens, tenant tokens' view, the
 * audit log, and store failures leaving nothing written.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <sqlite3.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/gen.h"

#include "fixture.h"

/* ---- fixture: a data dir, a store, the operator token from the first start --------------- */

static int setup(void **state)
{
	char *token = NULL;

	(void)state;
	if (fixture_open("coretest", "9.9.9", time(NULL) - 5, 0) != 0 ||
	    moat_admin_bootstrap(F.ctx, &token) != MOAT_OK || token == NULL)
		return -1;
	snprintf(F.op, sizeof(F.op), "%s", token);
	moat_free(token);
	return 0;
}

/* ---- requests ------------------------------------------------------------------------------ */

/* Sends r; returns the status, the parsed answer in *out (if out), the response in *keep (if
 * keep; the caller clears it). */
static int send_req(const struct moat_admin_req *r, json_t **out, struct moat_admin_resp *keep)
{
	struct moat_admin_resp rs;
	json_error_t e;
	int status;

	json_t *j;

	moat_admin_handle(F.ctx, r, &rs);
	status = rs.status;
	j = rs.body != NULL ? json_loadb(rs.body, rs.body_len, 0, &e) : NULL;
	if ((status == 204) != (rs.body == NULL) || (rs.body != NULL && !json_is_object(j)))
		fail_msg("%s %s: answer %d is not a JSON object", r->method, r->target, status);
	if (out != NULL)
		*out = j;
	else
		json_decref(j);
	if (keep != NULL)
		*keep = rs;
	else
		moat_admin_resp_clear(&rs);
	return status;
}

/* One request with a token (NULL: none) and a JSON text body (NULL: none). Unlike the
 * fixture's call(), it can go without a token, runs at the fixed F.now_ms, and wants every
 * answer to be a JSON object. */
static int request(const char *method, const char *target, const char *token, const char *body,
                   json_t **out)
{
	char auth[200];
	struct moat_admin_req r;

	snprintf(auth, sizeof(auth), "Bearer %s", token != NULL ? token : "");
	r = req(method, target, token != NULL ? auth : NULL, body);
	if (out != NULL)
		*out = NULL;
	return send_req(&r, out, NULL);
}

/* The "error" of an answer, and the status. */
static void expect_error(const char *method, const char *target, const char *token,
                         const char *body, int status, const char *error)
{
	json_t *o = NULL;

	assert_int_equal(request(method, target, token, body, &o), status);
	assert_non_null(o);
	assert_string_equal(str(o, "error"), error);
	assert_non_null(str(o, "detail"));
	json_decref(o);
}

static const char acme_body[] = "{\"name\":\"acme\",\"hosts\":[\"acme.devices.local\"],"
                                "\"origin\":\"http://127.0.0.1:8080\","
                                "\"quarantine_allow\":[\"/firmware/\"]}";
static const char beta_body[] = "{\"name\":\"beta\",\"hosts\":[\"beta.devices.local\","
                                "\"*.beta.example\"],\"tcp_origin\":\"tcp://127.0.0.1:1883\"}";

static json_t *create_tenant(const char *body)
{
	json_t *o = NULL;

	assert_int_equal(request("POST", "/v1/tenants", F.op, body, &o), 201);
	return o;
}

/* A token made through the API; its text goes to out. */
static void make_token(const char *name, const char *tenant, char *out, size_t cap)
{
	char body[200];
	json_t *o = NULL;

	if (tenant != NULL)
		snprintf(body, sizeof(body), "{\"name\":\"%s\",\"tenant\":\"%s\"}", name, tenant);
	else
		snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	assert_int_equal(request("POST", "/v1/tokens", F.op, body, &o), 201);
	snprintf(out, cap, "%s", str(o, "token"));
	json_decref(o);
}

static int file_mode(const char *rel)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", F.dir, rel);
	if (stat(path, &st) != 0)
		return -1;
	return (int)(st.st_mode & 0777);
}

/* ---- first start, health, version ---------------------------------------------------------- */

static void test_bootstrap(void **state)
{
	char path[128], buf[200] = {0};
	char *token = (char *)"x";
	FILE *f;

	(void)state;
	assert_int_equal(strlen(F.op), 65);
	assert_memory_equal(F.op, "moat_", 5);
	assert_int_equal(file_mode("operator.token"), 0600);
	snprintf(path, sizeof(path), "%s/operator.token", F.dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_int_equal(strlen(buf), 66);
	assert_memory_equal(buf, F.op, 65);
	assert_int_equal(buf[65], '\n');
	/* a second start keeps the token */
	assert_int_equal(moat_admin_bootstrap(F.ctx, &token), MOAT_OK);
	assert_null(token);
}

static void test_health_version(void **state)
{
	json_t *o = NULL;

	(void)state;
	assert_int_equal(request("GET", "/v1/health", NULL, NULL, &o), 200);
	assert_string_equal(str(o, "status"), "ok");
	assert_string_equal(str(o, "store"), "ok");
	assert_true(json_integer_value(json_object_get(o, "uptime_s")) >= 5);
	json_decref(o);
	assert_int_equal(request("GET", "/v1/version", NULL, NULL, &o), 200);
	assert_string_equal(str(o, "version"), "9.9.9");
	assert_string_equal(str(o, "api"), "v1");
	assert_int_equal(json_integer_value(json_object_get(o, "schema")), 1);
	json_decref(o);
	moat_store_fail(F.store, 1);
	assert_int_equal(request("GET", "/v1/health", NULL, NULL, &o), 503);
	assert_string_equal(str(o, "status"), "degraded");
	json_decref(o);
	moat_store_fail(F.store, 0);
}

/* ---- routing ------------------------------------------------------------------------------ */

static void test_routing(void **state)
{
	static const struct {
		const char *method, *target, *allow;
	} not_allowed[] = {
	        {"PUT", "/v1/tenants", "GET, POST"},
	        {"DELETE", "/v1/tokens", "GET, POST"},
	        {"GET", "/v1/tokens/0123456789abcdef", "DELETE"},
	        {"POST", "/v1/tenants/acme", "GET, PATCH, DELETE"},
	        {"POST", "/v1/tenants/acme/devices/cam/stats", "GET"},
	        {"GET", "/v1/tenants/acme/devices/cam/revoke", "POST"},
	        {"POST", "/v1/health", "GET"},
	        {"POST", "/v1/tenants/acme/rules/r1", "GET, PATCH, DELETE"},
	        {"DELETE", "/v1/tenants/acme/cas", "GET, POST"},
	};
	static const char *const unknown[] = {
	        "/",
	        "/v1",
	        "/v2/tenants",
	        "/v1/tenants/",
	        "/v1//tenants",
	        "/v1/tenants/acme/x",
	        "/v1/tenants/acme/devices/cam/stats/x",
	        "tenants",
	        "/v1/audit/1",
	        "/v1/tenant%",
	        "/v1/tenants/a%00b",
	};
	struct moat_admin_resp rs;
	struct moat_admin_req r;
	char auth[200];
	json_t *o = NULL;
	size_t i;

	(void)state;
	snprintf(auth, sizeof(auth), "Bearer %s", F.op);
	for (i = 0; i < MOAT_ARRAY_LEN(not_allowed); i++) {
		r = req(not_allowed[i].method, not_allowed[i].target, auth, NULL);
		assert_int_equal(send_req(&r, &o, &rs), 405);
		assert_string_equal(str(o, "error"), "method_not_allowed");
		assert_string_equal(rs.allow, not_allowed[i].allow);
		json_decref(o);
		moat_admin_resp_clear(&rs);
	}
	for (i = 0; i < MOAT_ARRAY_LEN(unknown); i++)
		expect_error("GET", unknown[i], F.op, NULL, 404, "not_found");
	/* the query is not part of the path; escapes in the path are decoded */
	assert_int_equal(request("GET", "/v1/tenants?x=1", F.op, NULL, NULL), 200);
	json_decref(create_tenant(acme_body));
	assert_int_equal(request("GET", "/v1/tenants/ac%6De", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "name"), "acme");
	json_decref(o);
	/* POST .../rules/validate is its own route; the same path with GET is the rule */
	assert_int_not_equal(request("POST", "/v1/tenants/acme/rules/validate", F.op,
	                             "{\"expr\":\"true\"}", NULL),
	                     405);
}

/* ---- authentication ------------------------------------------------------------------------ */

static void test_auth(void **state)
{
	char wrong[160], auth[200];
	struct moat_admin_req r;
	json_t *o = NULL;

	(void)state;
	expect_error("GET", "/v1/tenants", NULL, NULL, 401, "unauthorized");
	expect_error("GET", "/v1/tenants", "nonsense", NULL, 401, "unauthorized");
	/* the right id with another secret */
	snprintf(wrong, sizeof(wrong), "%s", F.op);
	wrong[30] = wrong[30] == 'A' ? 'B' : 'A';
	expect_error("GET", "/v1/tenants", wrong, NULL, 401, "unauthorized");
	/* an id that does not exist */
	snprintf(wrong, sizeof(wrong), "%s", F.op);
	wrong[5] = wrong[5] == 'a' ? 'b' : 'a';
	expect_error("GET", "/v1/tenants", wrong, NULL, 401, "unauthorized");
	/* the syntax is strict: uppercase hex, a short secret, trailing junk */
	snprintf(wrong, sizeof(wrong), "%s", F.op);
	wrong[5] = 'A';
	expect_error("GET", "/v1/tenants", wrong, NULL, 401, "unauthorized");
	snprintf(wrong, sizeof(wrong), "%.64s", F.op);
	expect_error("GET", "/v1/tenants", wrong, NULL, 401, "unauthorized");
	snprintf(wrong, sizeof(wrong), "%s=", F.op);
	expect_error("GET", "/v1/tenants", wrong, NULL, 401, "unauthorized");
	/* another scheme */
	snprintf(auth, sizeof(auth), "Basic %s", F.op);
	r = req("GET", "/v1/tenants", auth, NULL);
	assert_int_equal(send_req(&r, NULL, NULL), 401);
	/* the scheme in any case, blanks around the token */
	snprintf(auth, sizeof(auth), "bEARER   %s  ", F.op);
	r = req("GET", "/v1/tenants", auth, NULL);
	assert_int_equal(send_req(&r, &o, NULL), 200);
	assert_non_null(json_object_get(o, "items"));
	json_decref(o);
	assert_int_equal(request("GET", "/v1/tenants", F.op, NULL, NULL), 200);
}

static int from(const char *source, const char *token, int64_t now_ms, unsigned *retry_after)
{
	struct moat_admin_resp rs;
	struct moat_admin_req r;
	char auth[200];
	int status;

	snprintf(auth, sizeof(auth), "Bearer %s", token);
	r = req("GET", "/v1/tenants", auth, NULL);
	r.source = source;
	r.now_ms = now_ms;
	status = send_req(&r, NULL, &rs);
	if (retry_after != NULL)
		*retry_after = rs.retry_after;
	moat_admin_resp_clear(&rs);
	return status;
}

static void test_auth_limit(void **state)
{
	int64_t t0 = F.now_ms;
	unsigned retry = 0;
	struct moat_admin_req r;
	int i;

	(void)state;
	for (i = 0; i < 10; i++)
		assert_int_equal(from("10.0.0.1", "bad", t0 + i * 1000, NULL), 401);
	/* blocked now, even with the right token and for open routes */
	assert_int_equal(from("10.0.0.1", F.op, t0 + 10000, &retry), 429);
	assert_true(retry >= 50 && retry <= 60);
	r = req("GET", "/v1/health", NULL, NULL);
	r.source = "10.0.0.1";
	r.now_ms = t0 + 10000;
	assert_int_equal(send_req(&r, NULL, NULL), 429);
	/* other addresses are not */
	assert_int_equal(from("10.0.0.2", F.op, t0 + 10000, NULL), 200);
	/* a minute after the last failure, the address is free again */
	assert_int_equal(from("10.0.0.1", F.op, t0 + 9000 + 59000, NULL), 429);
	assert_int_equal(from("10.0.0.1", F.op, t0 + 9000 + 60000, NULL), 200);

	/* failures spread over more than a minute do not block */
	for (i = 0; i < 20; i++)
		assert_int_equal(from("10.0.0.3", "bad", t0 + i * 7000, NULL), 401);
	assert_int_equal(from("10.0.0.3", F.op, t0 + 20 * 7000, NULL), 200);
}

/* ---- bodies -------------------------------------------------------------------------------- */

static void test_body(void **state)
{
	struct moat_admin_req r;
	char auth[200], *big;
	json_t *o = NULL;

	(void)state;
	snprintf(auth, sizeof(auth), "Bearer %s", F.op);
	/* a body without a length */
	r = req("POST", "/v1/tenants", auth, acme_body);
	r.has_length = 0;
	assert_int_equal(send_req(&r, &o, NULL), 411);
	assert_string_equal(str(o, "error"), "length_required");
	json_decref(o);
	/* too large */
	big = malloc(MOAT_ADMIN_MAX_BODY + 2);
	assert_non_null(big);
	memset(big, ' ', MOAT_ADMIN_MAX_BODY + 1);
	big[0] = '{';
	big[MOAT_ADMIN_MAX_BODY] = '}';
	big[MOAT_ADMIN_MAX_BODY + 1] = '\0';
	r = req("POST", "/v1/tenants", auth, big);
	assert_int_equal(send_req(&r, &o, NULL), 413);
	assert_string_equal(str(o, "error"), "payload_too_large");
	json_decref(o);
	free(big);
	/* not JSON, or no media type */
	r = req("POST", "/v1/tenants", auth, acme_body);
	r.content_type = "text/plain";
	assert_int_equal(send_req(&r, &o, NULL), 415);
	assert_string_equal(str(o, "error"), "unsupported_media_type");
	json_decref(o);
	r.content_type = NULL;
	assert_int_equal(send_req(&r, NULL, NULL), 415);
	r.content_type = "application/jsonx";
	assert_int_equal(send_req(&r, NULL, NULL), 415);
	/* parameters are fine */
	r.content_type = "Application/JSON; charset=utf-8";
	assert_int_equal(send_req(&r, NULL, NULL), 201);

	expect_error("POST", "/v1/tokens", F.op, "{\"name\":", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "[1]", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "\"x\"", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"a\",\"name\":\"b\"}", 400,
	             "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"a\",\"colour\":1}", 400,
	             "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":5}", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"a\\u0000b\"}", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"a\\nb\"}", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"\xff\"}", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, "{}", 400, "bad_request");
	expect_error("POST", "/v1/tokens", F.op, NULL, 400, "bad_request");
	expect_error(
	        "POST", "/v1/tokens", F.op,
	        "{\"name\":\"a\",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]"
	        "]]]]]]]]]]]]]]]]]]]]]]]}",
	        400, "bad_request");
	/* a body on a route without one is only parsed */
	assert_int_equal(request("GET", "/v1/tenants", F.op, "{\"ignored\":1}", NULL), 200);
	expect_error("GET", "/v1/tenants", F.op, "{", 400, "bad_request");
}

/* ---- tenants ------------------------------------------------------------------------------- */

static void check_tenant_shape(const json_t *o)
{
	static const char *const keys[] = {"name",       "hosts",      "origin",
	                                   "tcp_origin", "origin_ca",  "quarantine_allow",
	                                   "source",     "created_at", "updated_at"};
	size_t i;

	for (i = 0; i < MOAT_ARRAY_LEN(keys); i++) {
		if (json_object_get(o, keys[i]) == NULL)
			fail_msg("tenant without \"%s\"", keys[i]);
	}
	assert_null(json_object_get(o, "server_key"));
	assert_null(json_object_get(o, "server_key_file"));
}

static void test_tenant_create(void **state)
{
	struct moat_store_tenant t;
	json_t *o, *cas, *ca;
	unsigned changed = F.changed;
	char rel[256];

	(void)state;
	o = create_tenant(acme_body);
	check_tenant_shape(o);
	assert_string_equal(str(o, "name"), "acme");
	assert_string_equal(str(o, "source"), "api");
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "hosts"), 0)),
	                    "acme.devices.local");
	assert_string_equal(str(o, "origin"), "http://127.0.0.1:8080");
	assert_true(json_is_null(json_object_get(o, "tcp_origin")));
	assert_non_null(strstr(str(o, "server_ca"), "BEGIN CERTIFICATE"));
	cas = json_object_get(o, "device_cas");
	assert_int_equal(json_array_size(cas), 1);
	ca = json_array_get(cas, 0);
	assert_string_equal(str(ca, "subject"), "CN=acme device CA");
	assert_true(json_is_true(json_object_get(ca, "generated")));
	assert_true(json_is_true(json_object_get(ca, "has_key")));
	assert_null(json_object_get(ca, "key"));
	assert_int_equal(strlen(str(ca, "fingerprint")), 64);
	json_decref(o);
	assert_true(F.changed > changed);

	/* the edge CA and the keys are on disk with the right modes */
	assert_int_equal(file_mode("edge-ca.crt"), 0644);
	assert_int_equal(file_mode("keys/edge-ca.key"), 0600);
	assert_int_equal(moat_store_tenant_get(F.store, "acme", &t), MOAT_OK);
	assert_true(t.server_cert_generated);
	assert_non_null(t.server_key_file);
	assert_memory_equal(t.server_key_file, "keys/acme/", 10);
	assert_int_equal(file_mode(t.server_key_file), 0600);
	moat_store_tenant_clear(&t);

	o = create_tenant(beta_body);
	assert_string_equal(str(o, "tcp_origin"), "tcp://127.0.0.1:1883");
	assert_int_equal(json_array_size(json_object_get(o, "hosts")), 2);
	json_decref(o);

	/* conflicts: a name, a host (in any case) */
	expect_error("POST", "/v1/tenants", F.op, acme_body, 409, "conflict");
	expect_error("POST", "/v1/tenants", F.op,
	             "{\"name\":\"gamma\",\"hosts\":[\"x.local\",\"ACME.devices.local\"],"
	             "\"origin\":\"http://127.0.0.1:1\"}",
	             409, "conflict");
	expect_error("POST", "/v1/tenants", F.op,
	             "{\"name\":\"gamma\",\"hosts\":[\"*.beta.example\"],"
	             "\"origin\":\"http://127.0.0.1:1\"}",
	             409, "conflict");
	/* a failed creation leaves no key directory */
	snprintf(rel, sizeof(rel), "keys/gamma");
	assert_int_equal(file_mode(rel), -1);
}

static void test_tenant_bad_values(void **state)
{
	static const char *const bodies[] = {
	        "{\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"Acme\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"-acme\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":[],\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":\"a.local\",\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a..local\"],\"origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\",\"A.local\"],\"origin\":\"http://"
	        "1.2.3.4\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"]}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"ftp://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"tcp://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"tcp_origin\":\"http://127.0.0.1:1\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1/x\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"quarantine_allow\":[\"firmware\"]}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"origin_ca\":\"not a certificate\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"server_cert\":\"x\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"server_cert\":\"x\",\"server_key\":\"y\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"ca\":{\"generate\":false}}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"ca\":{\"generate\":true,\"days\":0}}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"ca\":{\"generate\":true,\"colour\":1}}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"ca\":\"generate\"}",
	        "{\"name\":\"a\",\"hosts\":[\"a.local\"],\"origin\":\"http://127.0.0.1:1\","
	        "\"ca\":{\"cert\":\"not a certificate\"}}",
	};
	json_t *o = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bodies); i++) {
		if (request("POST", "/v1/tenants", F.op, bodies[i], &o) != 400)
			fail_msg("not refused: %s", bodies[i]);
		assert_string_equal(str(o, "error"), "bad_request");
		json_decref(o);
	}
	assert_int_equal(request("GET", "/v1/tenants", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
	json_decref(o);
	assert_int_equal(file_mode("keys/a"), -1);
}

static void test_tenant_get_list(void **state)
{
	json_t *o, *items;

	(void)state;
	json_decref(create_tenant(beta_body));
	json_decref(create_tenant(acme_body));
	assert_int_equal(request("GET", "/v1/tenants", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_int_equal(json_array_size(items), 2);
	assert_string_equal(str(json_array_get(items, 0), "name"), "acme");
	assert_string_equal(str(json_array_get(items, 1), "name"), "beta");
	check_tenant_shape(json_array_get(items, 0));
	json_decref(o);

	assert_int_equal(request("GET", "/v1/tenants/acme", F.op, NULL, &o), 200);
	check_tenant_shape(o);
	assert_int_equal(json_array_size(json_object_get(o, "device_cas")), 1);
	assert_non_null(strstr(str(o, "server_ca"), "BEGIN CERTIFICATE"));
	assert_string_equal(
	        json_string_value(json_array_get(json_object_get(o, "quarantine_allow"), 0)),
	        "/firmware/");
	json_decref(o);
	expect_error("GET", "/v1/tenants/nope", F.op, NULL, 404, "not_found");
}

static void test_tenant_update(void **state)
{
	struct moat_store_tenant before, after;
	json_t *o;

	(void)state;
	json_decref(create_tenant(acme_body));
	json_decref(create_tenant(beta_body));
	assert_int_equal(moat_store_tenant_get(F.store, "acme", &before), MOAT_OK);

	/* origins change without a new certificate */
	assert_int_equal(
	        request("PATCH", "/v1/tenants/acme", F.op,
	                "{\"origin\":\"https://127.0.0.1:8443\","
	                "\"tcp_origin\":\"tls://127.0.0.1:8883\",\"quarantine_allow\":null}",
	                &o),
	        200);
	assert_string_equal(str(o, "origin"), "https://127.0.0.1:8443");
	assert_string_equal(str(o, "tcp_origin"), "tls://127.0.0.1:8883");
	assert_int_equal(json_array_size(json_object_get(o, "quarantine_allow")), 0);
	assert_int_equal(json_array_size(json_object_get(o, "device_cas")), 1);
	json_decref(o);
	assert_int_equal(moat_store_tenant_get(F.store, "acme", &after), MOAT_OK);
	assert_string_equal(after.server_key_file, before.server_key_file);
	moat_store_tenant_clear(&after);

	/* new hosts: a new certificate, the old key removed */
	assert_int_equal(request("PATCH", "/v1/tenants/acme", F.op,
	                         "{\"hosts\":[\"acme.devices.local\",\"new.acme.local\"]}", &o),
	                 200);
	assert_int_equal(json_array_size(json_object_get(o, "hosts")), 2);
	json_decref(o);
	assert_int_equal(moat_store_tenant_get(F.store, "acme", &after), MOAT_OK);
	assert_string_not_equal(after.server_key_file, before.server_key_file);
	assert_string_not_equal(after.server_cert, before.server_cert);
	assert_int_equal(file_mode(after.server_key_file), 0600);
	assert_int_equal(file_mode(before.server_key_file), -1);
	moat_store_tenant_clear(&after);
	moat_store_tenant_clear(&before);

	/* refused: a host of beta, no origin left, a bad value, unknown fields, the name */
	expect_error("PATCH", "/v1/tenants/acme", F.op, "{\"hosts\":[\"beta.devices.local\"]}", 409,
	             "conflict");
	expect_error("PATCH", "/v1/tenants/acme", F.op, "{\"origin\":null,\"tcp_origin\":null}",
	             400, "bad_request");
	expect_error("PATCH", "/v1/tenants/acme", F.op, "{\"origin\":\"http://\"}", 400,
	             "bad_request");
	expect_error("PATCH", "/v1/tenants/acme", F.op, "{\"name\":\"other\"}", 400, "bad_request");
	expect_error("PATCH", "/v1/tenants/nope", F.op, "{\"origin\":null}", 404, "not_found");
	assert_int_equal(request("GET", "/v1/tenants/acme", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "origin"), "https://127.0.0.1:8443");
	json_decref(o);
}

/* A self-signed CA, PEMs allocated (free with moat_free / moat_ca_free_secret). */
static void make_ca(const char *cn, char **cert, char **key)
{
	struct moat_cert_info info;
	struct moat_ca_err err;

	assert_int_equal(moat_ca_generate(cn, 30, cert, key, &info, &err), MOAT_OK);
}

static void test_tenant_server_cert_import(void **state)
{
	const char *hosts[] = {"acme.devices.local"};
	char *ca_cert, *ca_key, *cert, *key;
	struct moat_ca_err err;
	json_t *body, *o;
	char *text;

	(void)state;
	make_ca("other CA", &ca_cert, &ca_key);
	assert_int_equal(moat_ca_issue_server(ca_cert, ca_key, hosts, 1, 30, &cert, &key, &err),
	                 MOAT_OK);
	body = json_pack("{s:s, s:[s], s:s, s:s, s:s}", "name", "acme", "hosts",
	                 "acme.devices.local", "origin", "http://127.0.0.1:8080", "server_cert",
	                 cert, "server_key", key);
	text = json_dumps(body, 0);
	assert_int_equal(request("POST", "/v1/tenants", F.op, text, &o), 201);
	assert_true(json_is_null(json_object_get(o, "server_ca")));
	json_decref(o);
	free(text);
	json_decref(body);
	/* an imported certificate stays when the hosts change */
	assert_int_equal(request("PATCH", "/v1/tenants/acme", F.op,
	                         "{\"hosts\":[\"acme.devices.local\",\"b.local\"]}", &o),
	                 200);
	assert_true(json_is_null(json_object_get(o, "server_ca")));
	json_decref(o);
	/* a key that does not match */
	body = json_pack("{s:s, s:s}", "server_cert", cert, "server_key", ca_key);
	text = json_dumps(body, 0);
	expect_error("PATCH", "/v1/tenants/acme", F.op, text, 400, "bad_request");
	free(text);
	json_decref(body);
	moat_free(ca_cert);
	moat_free(cert);
	moat_ca_free_secret(ca_key);
	moat_ca_free_secret(key);
}

static void test_tenant_delete(void **state)
{
	unsigned changed;

	(void)state;
	json_decref(create_tenant(acme_body));
	assert_int_equal(file_mode("keys/acme"), 0700);
	changed = F.changed;
	assert_int_equal(request("DELETE", "/v1/tenants/acme", F.op, NULL, NULL), 204);
	assert_true(F.changed > changed);
	assert_int_equal(file_mode("keys/acme"), -1);
	expect_error("GET", "/v1/tenants/acme", F.op, NULL, 404, "not_found");
	expect_error("DELETE", "/v1/tenants/acme", F.op, NULL, 404, "not_found");
	/* the name and the hosts are free again */
	json_decref(create_tenant(acme_body));
}

/* ---- device CAs ---------------------------------------------------------------------------- */

static int64_t ca_create(const char *body, int status)
{
	json_t *o = NULL;
	int64_t id;

	assert_int_equal(request("POST", "/v1/tenants/acme/cas", F.op, body, &o), status);
	id = json_integer_value(json_object_get(o, "id"));
	json_decref(o);
	return id;
}

static void test_cas(void **state)
{
	char *cert, *key, *text, target[64];
	json_t *o, *items, *body;
	int64_t first, gen, imp, bare;

	(void)state;
	json_decref(create_tenant(acme_body));
	assert_int_equal(request("GET", "/v1/tenants/acme/cas", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_int_equal(json_array_size(items), 1);
	first = json_integer_value(json_object_get(json_array_get(items, 0), "id"));
	json_decref(o);

	/* generated, with a name and a validity */
	assert_int_equal(request("POST", "/v1/tenants/acme/cas", F.op,
	                         "{\"generate\":true,\"cn\":\"fleet 2\",\"days\":10}", &o),
	                 201);
	assert_string_equal(str(o, "subject"), "CN=fleet 2");
	assert_true(json_is_true(json_object_get(o, "has_key")));
	gen = json_integer_value(json_object_get(o, "id"));
	assert_true(gen > first);
	json_decref(o);

	/* imported with its key, then again (409), then one without its key */
	make_ca("imported CA", &cert, &key);
	body = json_pack("{s:s, s:s}", "cert", cert, "key", key);
	text = json_dumps(body, 0);
	assert_int_equal(request("POST", "/v1/tenants/acme/cas", F.op, text, &o), 201);
	assert_true(json_is_false(json_object_get(o, "generated")));
	assert_true(json_is_true(json_object_get(o, "has_key")));
	imp = json_integer_value(json_object_get(o, "id"));
	json_decref(o);
	expect_error("POST", "/v1/tenants/acme/cas", F.op, text, 409, "conflict");
	free(text);
	json_decref(body);
	moat_free(cert);
	moat_ca_free_secret(key);
	make_ca("bare CA", &cert, &key);
	body = json_pack("{s:s}", "cert", cert);
	text = json_dumps(body, 0);
	assert_int_equal(request("POST", "/v1/tenants/acme/cas", F.op, text, &o), 201);
	assert_true(json_is_false(json_object_get(o, "has_key")));
	bare = json_integer_value(json_object_get(o, "id"));
	json_decref(o);
	free(text);
	json_decref(body);
	moat_free(cert);
	moat_ca_free_secret(key);

	/* refused: a key without its certificate, a bad cn, both kinds at once */
	ca_create("{\"key\":\"x\"}", 400);
	ca_create("{\"generate\":true,\"cn\":\"\"}", 400);
	ca_create("{\"generate\":true,\"cert\":\"x\"}", 400);
	ca_create("{\"generate\":1}", 400);
	/* no body generates */
	assert_true(ca_create(NULL, 201) > bare);

	assert_int_equal(request("GET", "/v1/tenants/acme/cas", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 5);
	json_decref(o);

	/* deletion, down to the last one */
	expect_error("DELETE", "/v1/tenants/acme/cas/999", F.op, NULL, 404, "not_found");
	expect_error("DELETE", "/v1/tenants/acme/cas/x1", F.op, NULL, 404, "not_found");
	expect_error("DELETE", "/v1/tenants/nope/cas/1", F.op, NULL, 404, "not_found");
	assert_int_equal(request("GET", "/v1/tenants/acme/cas", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	while (json_array_size(items) > 1) {
		snprintf(target, sizeof(target), "/v1/tenants/acme/cas/%lld",
		         (long long)json_integer_value(
		                 json_object_get(json_array_get(items, 0), "id")));
		assert_int_equal(request("DELETE", target, F.op, NULL, NULL), 204);
		json_array_remove(items, 0);
	}
	snprintf(target, sizeof(target), "/v1/tenants/acme/cas/%lld",
	         (long long)json_integer_value(json_object_get(json_array_get(items, 0), "id")));
	json_decref(o);
	expect_error("DELETE", target, F.op, NULL, 409, "conflict");
	(void)imp;
}

static void test_signing_ca(void **state)
{
	struct moat_admin_call c;
	struct moat_admin_resp rs;
	struct moat_admin_req r = req("GET", "/", NULL, NULL);
	const struct moat_ca_signer *signer = NULL;
	char *cert = NULL, *ca_cert, *ca_key, *text;
	json_t *body, *o;

	(void)state;
	json_decref(create_tenant(acme_body));
	memset(&c, 0, sizeof(c));
	memset(&rs, 0, sizeof(rs));
	c.ctx = F.ctx;
	c.req = &r;
	c.resp = &rs;
	c.token_id = "";
	assert_int_equal(admin_signing_ca(&c, "acme", &signer, &cert), MOAT_OK);
	assert_non_null(strstr(cert, "BEGIN CERTIFICATE"));
	assert_non_null(signer);
	moat_free(cert);
	/* a newer CA without its key does not sign; a newer one with its key does */
	make_ca("bare", &ca_cert, &ca_key);
	body = json_pack("{s:s}", "cert", ca_cert);
	text = json_dumps(body, 0);
	assert_int_equal(request("POST", "/v1/tenants/acme/cas", F.op, text, &o), 201);
	json_decref(o);
	free(text);
	json_decref(body);
	assert_int_equal(admin_signing_ca(&c, "acme", &signer, &cert), MOAT_OK);
	assert_string_not_equal(cert, ca_cert);
	moat_free(cert);
	assert_int_equal(request("POST", "/v1/tenants/acme/cas", F.op, "{\"cn\":\"newest\"}", &o),
	                 201);
	json_decref(o);
	assert_int_equal(admin_signing_ca(&c, "acme", &signer, &cert), MOAT_OK);
	assert_non_null(cert);
	moat_free(cert);
	assert_int_equal(admin_signing_ca(&c, "nope", &signer, &cert), MOAT_ENOTFOUND);
	assert_null(signer);
	assert_null(cert);
	moat_free(ca_cert);
	moat_ca_free_secret(ca_key);
	moat_admin_resp_clear(&rs);
}

/* ---- tokens and tenant tokens --------------------------------------------------------------- */

static void test_tokens(void **state)
{
	char ci[128], target[64];
	json_t *o, *items;
	size_t i;
	int found = 0;

	(void)state;
	json_decref(create_tenant(acme_body));
	assert_int_equal(request("POST", "/v1/tokens", F.op, "{\"name\":\"ci\"}", &o), 201);
	assert_int_equal(strlen(str(o, "id")), 16);
	assert_true(json_is_null(json_object_get(o, "tenant")));
	snprintf(ci, sizeof(ci), "%s", str(o, "token"));
	assert_int_equal(strlen(ci), 65);
	assert_memory_equal(ci + 5, str(o, "id"), 16);
	json_decref(o);
	assert_int_equal(request("GET", "/v1/tokens", ci, NULL, NULL), 200);
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"x\",\"tenant\":\"nope\"}", 404,
	             "not_found");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"x\",\"tenant\":\"Bad\"}", 400,
	             "bad_request");

	assert_int_equal(request("GET", "/v1/tokens", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_int_equal(json_array_size(items), 2);
	for (i = 0; i < json_array_size(items); i++) {
		json_t *t = json_array_get(items, i);

		assert_null(json_object_get(t, "token"));
		assert_null(json_object_get(t, "hash"));
		assert_non_null(json_object_get(t, "last_used_at"));
		found += strcmp(str(t, "name"), "ci") == 0;
	}
	assert_int_equal(found, 1);
	json_decref(o);

	/* the ci token deleted: it no longer works */
	snprintf(target, sizeof(target), "/v1/tokens/%.16s", ci + 5);
	assert_int_equal(request("DELETE", target, F.op, NULL, NULL), 204);
	expect_error("GET", "/v1/tenants", ci, NULL, 401, "unauthorized");
	expect_error("DELETE", target, F.op, NULL, 404, "not_found");
	/* the last operator token cannot go */
	snprintf(target, sizeof(target), "/v1/tokens/%.16s", F.op + 5);
	expect_error("DELETE", target, F.op, NULL, 409, "conflict");
	assert_int_equal(request("GET", "/v1/tenants", F.op, NULL, NULL), 200);
}

static void test_tenant_token(void **state)
{
	static const struct {
		const char *method, *target, *body;
		int status;
	} calls[] = {
	        {"GET", "/v1/tenants/beta", NULL, 404},
	        {"PATCH", "/v1/tenants/beta", "{\"origin\":null}", 404},
	        {"GET", "/v1/tenants/beta/cas", NULL, 404},
	        {"POST", "/v1/tenants/beta/cas", "{}", 404},
	        {"DELETE", "/v1/tenants/beta/cas/1", NULL, 404},
	        {"POST", "/v1/tenants", "{\"name\":\"x\"}", 403},
	        {"DELETE", "/v1/tenants/acme", NULL, 403},
	        {"DELETE", "/v1/tenants/beta", NULL, 403},
	        {"PATCH", "/v1/tenants/acme", "{\"hosts\":[\"other.local\"]}", 403},
	        {"GET", "/v1/tokens", NULL, 403},
	        {"POST", "/v1/tokens", "{\"name\":\"x\",\"tenant\":\"acme\"}", 403},
	        {"DELETE", "/v1/tokens/0123456789abcdef", NULL, 403},
	};
	char tok[128];
	json_t *o, *items;
	size_t i;

	(void)state;
	json_decref(create_tenant(acme_body));
	json_decref(create_tenant(beta_body));
	make_token("acme ops", "acme", tok, sizeof(tok));

	assert_int_equal(request("GET", "/v1/tenants", tok, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_int_equal(json_array_size(items), 1);
	assert_string_equal(str(json_array_get(items, 0), "name"), "acme");
	json_decref(o);
	assert_int_equal(request("GET", "/v1/tenants/acme", tok, NULL, NULL), 200);
	assert_int_equal(request("GET", "/v1/tenants/acme/cas", tok, NULL, NULL), 200);
	assert_int_equal(request("PATCH", "/v1/tenants/acme", tok,
	                         "{\"origin\":\"http://127.0.0.1:9000\"}", &o),
	                 200);
	assert_string_equal(str(o, "origin"), "http://127.0.0.1:9000");
	json_decref(o);
	assert_int_equal(request("POST", "/v1/tenants/acme/cas", tok, "{}", NULL), 201);
	for (i = 0; i < MOAT_ARRAY_LEN(calls); i++) {
		int status = request(calls[i].method, calls[i].target, tok, calls[i].body, &o);

		if (status != calls[i].status)
			fail_msg("%s %s: %d, not %d", calls[i].method, calls[i].target, status,
			         calls[i].status);
		json_decref(o);
	}
	assert_int_equal(request("GET", "/v1/tenants/beta", F.op, NULL, &o), 200);
	assert_true(json_is_null(json_object_get(o, "origin")));
	json_decref(o);

	/* deleting the tenant deletes its tokens */
	assert_int_equal(request("DELETE", "/v1/tenants/acme", F.op, NULL, NULL), 204);
	expect_error("GET", "/v1/tenants", tok, NULL, 401, "unauthorized");
}

/* ---- the audit log ------------------------------------------------------------------------- */

static int has_action(const json_t *items, const char *action, const char *object)
{
	size_t i;

	for (i = 0; i < json_array_size(items); i++) {
		const json_t *a = json_array_get(items, i);

		if (strcmp(str(a, "action"), action) == 0 && strcmp(str(a, "object"), object) == 0)
			return 1;
	}
	return 0;
}

static void test_audit(void **state)
{
	char tok[128], target[64], id[17];
	json_t *o, *items, *first;
	int64_t next;
	size_t i;

	(void)state;
	json_decref(create_tenant(acme_body));
	json_decref(create_tenant(beta_body));
	make_token("acme ops", "acme", tok, sizeof(tok));
	assert_int_equal(
	        request("PATCH", "/v1/tenants/acme", tok, "{\"origin\":\"http://[::1]:80\"}", NULL),
	        200);
	assert_int_equal(request("DELETE", "/v1/tenants/beta", F.op, NULL, NULL), 204);

	assert_int_equal(request("GET", "/v1/audit", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_true(json_is_null(json_object_get(o, "next")));
	assert_true(has_action(items, "tenant.create", "acme"));
	assert_true(has_action(items, "tenant.create", "beta"));
	assert_true(has_action(items, "tenant.update", "acme"));
	assert_true(has_action(items, "tenant.delete", "beta"));
	snprintf(id, sizeof(id), "%.16s", tok + 5);
	assert_true(has_action(items, "token.create", id));
	first = json_array_get(items, 0);
	/* newest first: the delete, by the operator, from 127.0.0.1 */
	assert_string_equal(str(first, "action"), "tenant.delete");
	assert_memory_equal(str(first, "actor"), F.op + 5, 16);
	assert_string_equal(str(first, "source"), "127.0.0.1");
	assert_string_equal(str(first, "tenant"), "beta");
	assert_non_null(str(first, "at"));
	for (i = 1; i < json_array_size(items); i++)
		assert_true(
		        json_integer_value(json_object_get(json_array_get(items, i), "seq")) <
		        json_integer_value(json_object_get(json_array_get(items, i - 1), "seq")));
	/* the update by the tenant token names its fields */
	for (i = 0; i < json_array_size(items); i++) {
		json_t *a = json_array_get(items, i);

		if (strcmp(str(a, "action"), "tenant.update") == 0) {
			assert_memory_equal(str(a, "actor"), tok + 5, 16);
			assert_string_equal(
			        json_string_value(json_array_get(
			                json_object_get(json_object_get(a, "detail"), "fields"),
			                0)),
			        "origin");
		}
	}
	json_decref(o);

	/* pages */
	assert_int_equal(request("GET", "/v1/audit?limit=2", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
	next = json_integer_value(json_object_get(o, "next"));
	assert_int_equal(next, json_integer_value(json_object_get(
	                               json_array_get(json_object_get(o, "items"), 1), "seq")));
	json_decref(o);
	snprintf(target, sizeof(target), "/v1/audit?before=%lld&limit=1", (long long)next);
	assert_int_equal(request("GET", target, F.op, NULL, &o), 200);
	assert_true(json_integer_value(json_object_get(
	                    json_array_get(json_object_get(o, "items"), 0), "seq")) < next);
	json_decref(o);
	expect_error("GET", "/v1/audit?limit=0", F.op, NULL, 400, "bad_request");
	expect_error("GET", "/v1/audit?limit=1001", F.op, NULL, 400, "bad_request");
	expect_error("GET", "/v1/audit?limit=x", F.op, NULL, 400, "bad_request");
	expect_error("GET", "/v1/audit?before=-1", F.op, NULL, 400, "bad_request");
	expect_error("GET", "/v1/audit?limit=%zz", F.op, NULL, 400, "bad_request");

	/* a tenant token sees its tenant's entries only */
	assert_int_equal(request("GET", "/v1/audit", tok, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_true(json_array_size(items) >= 2);
	for (i = 0; i < json_array_size(items); i++)
		assert_string_equal(str(json_array_get(items, i), "tenant"), "acme");
	json_decref(o);
}

/* ---- tenants of the config file ------------------------------------------------------------ */

static void write_file(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", F.dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	fclose(f);
}

static void report(void *arg, const char *file, unsigned line, const char *msg)
{
	(void)arg;
	fail_msg("%s:%u: %s", file, line, msg);
}

/* Publishes a generation whose config file declares tenant "demo" with two device CAs. */
static void publish_config_tenant(void)
{
	char *ca1, *key1, *ca2, *key2, text[8192], path[256];
	struct moat_config *cfg = NULL;
	struct moat_gen *g;

	make_ca("demo CA 1", &ca1, &key1);
	make_ca("demo CA 2", &ca2, &key2);
	snprintf(text, sizeof(text), "%s%s", ca1, ca2);
	write_file("demo-ca.pem", text);
	write_file("demo.pem", ca1);
	write_file("demo.key", key1);
	snprintf(text, sizeof(text),
	         "[moat]\ndata_dir = %s\n"
	         "[listener devices]\nbind = 127.0.0.1:8443\n"
	         "[tenant demo]\nhosts = demo.example.com\ncert = %s/demo.pem\n"
	         "key = %s/demo.key\ndevice_ca = %s/demo-ca.pem\norigin = http://127.0.0.1:8080\n",
	         F.dir, F.dir, F.dir, F.dir);
	write_file("moat.conf", text);
	snprintf(path, sizeof(path), "%s/moat.conf", F.dir);
	assert_int_equal(moat_config_load(path, report, NULL, &cfg), MOAT_OK);
	/* enough of a generation for the API: the config, no built tenants */
	g = moat_calloc(1, sizeof(*g));
	assert_non_null(g);
	atomic_init(&g->refs, 1);
	g->cfg = cfg;
	moat_gen_publish(g);
	moat_free(ca1);
	moat_free(ca2);
	moat_ca_free_secret(key1);
	moat_ca_free_secret(key2);
}

static void test_config_tenant(void **state)
{
	json_t *o, *items;
	int status;

	(void)state;
	publish_config_tenant();
	json_decref(create_tenant(acme_body));
	assert_int_equal(request("GET", "/v1/tenants", F.op, NULL, &o), 200);
	items = json_object_get(o, "items");
	assert_int_equal(json_array_size(items), 2);
	assert_string_equal(str(json_array_get(items, 1), "name"), "demo");
	assert_string_equal(str(json_array_get(items, 1), "source"), "config");
	check_tenant_shape(json_array_get(items, 1));
	json_decref(o);

	assert_int_equal(request("GET", "/v1/tenants/demo", F.op, NULL, &o), 200);
	assert_string_equal(str(o, "source"), "config");
	assert_string_equal(str(o, "origin"), "http://127.0.0.1:8080");
	assert_true(json_is_null(json_object_get(o, "server_ca")));
	items = json_object_get(o, "device_cas");
	assert_int_equal(json_array_size(items), 2);
	assert_string_equal(str(json_array_get(items, 0), "subject"), "CN=demo CA 1");
	assert_string_equal(str(json_array_get(items, 1), "subject"), "CN=demo CA 2");
	assert_true(json_is_false(json_object_get(json_array_get(items, 1), "has_key")));
	json_decref(o);
	assert_int_equal(request("GET", "/v1/tenants/demo/cas", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
	json_decref(o);

	/* read-only */
	expect_error("PATCH", "/v1/tenants/demo", F.op, "{\"origin\":null}", 409, "conflict");
	expect_error("DELETE", "/v1/tenants/demo", F.op, NULL, 409, "conflict");
	expect_error("POST", "/v1/tenants/demo/cas", F.op, "{}", 409, "conflict");
	expect_error("DELETE", "/v1/tenants/demo/cas/1", F.op, NULL, 409, "conflict");
	/* its name and hosts are taken */
	expect_error(
	        "POST", "/v1/tenants", F.op,
	        "{\"name\":\"demo\",\"hosts\":[\"x.local\"],\"origin\":\"http://127.0.0.1:1\"}",
	        409, "conflict");
	expect_error("POST", "/v1/tenants", F.op,
	             "{\"name\":\"x\",\"hosts\":[\"DEMO.example.com\"],"
	             "\"origin\":\"http://127.0.0.1:1\"}",
	             409, "conflict");
	expect_error("PATCH", "/v1/tenants/acme", F.op, "{\"hosts\":[\"demo.example.com\"]}", 409,
	             "conflict");
	/* a token for it: made, or refused as a conflict, never a store failure */
	status = request("POST", "/v1/tokens", F.op, "{\"name\":\"d\",\"tenant\":\"demo\"}", NULL);
	assert_true(status == 201 || status == 409);
	moat_gen_unpublish();
}

/* ---- store failures -------------------------------------------------------------------------- */

static int count_tenants(void)
{
	struct moat_store_tenant *v = NULL;
	size_t n = 0;

	assert_int_equal(moat_store_tenant_list(F.store, &v, &n), MOAT_OK);
	moat_store_tenants_free(v, n);
	return (int)n;
}

static int count_files(const char *rel)
{
	char path[256];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", F.dir, rel);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Makes every insert into the audit log fail, through SQLite itself: a change then fails
 * after its other writes, which must be rolled back. */
static void audit_trigger(int on)
{
	char path[128];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/moat.db", F.dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db,
	                              on ? "CREATE TRIGGER fail_audit BEFORE INSERT ON audit "
	                                   "BEGIN SELECT RAISE(ABORT, 'injected'); END"
	                                 : "DROP TRIGGER fail_audit",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
}

static void test_store_failure(void **state)
{
	struct moat_admin_call c;
	struct moat_admin_resp rs;
	struct moat_admin_req r = req("POST", "/v1/tenants", NULL, acme_body);
	json_error_t e;
	json_t *o = NULL;
	unsigned changed;

	(void)state;
	/* the store fails for everything: the token cannot even be checked */
	moat_store_fail(F.store, 1);
	expect_error("POST", "/v1/tenants", F.op, acme_body, 500, "internal");
	expect_error("GET", "/v1/tenants", F.op, NULL, 500, "internal");
	/* a handler meeting a failing store */
	memset(&c, 0, sizeof(c));
	memset(&rs, 0, sizeof(rs));
	c.ctx = F.ctx;
	c.req = &r;
	c.resp = &rs;
	c.token_id = "0123456789abcdef";
	c.body = json_loads(acme_body, 0, &e);
	admin_tenant_create(&c);
	assert_int_equal(rs.status, 500);
	assert_non_null(strstr(rs.body, "\"internal\""));
	assert_null(strstr(rs.body, "SELECT"));
	assert_null(strstr(rs.body, "INSERT"));
	moat_admin_resp_clear(&rs);
	json_decref(c.body);
	moat_store_fail(F.store, 0);
	assert_int_equal(count_tenants(), 0);

	/* a failure in the middle of the transaction: nothing written, no key left behind */
	changed = F.changed;
	audit_trigger(1);
	expect_error("POST", "/v1/tenants", F.op, acme_body, 500, "internal");
	audit_trigger(0);
	assert_int_equal(count_tenants(), 0);
	assert_int_equal(file_mode("keys/acme"), -1);
	assert_int_equal(F.changed, changed);

	/* the same for a change to an existing tenant, a CA, a token */
	json_decref(create_tenant(acme_body));
	audit_trigger(1);
	expect_error("PATCH", "/v1/tenants/acme", F.op, "{\"hosts\":[\"z.local\"]}", 500,
	             "internal");
	expect_error("POST", "/v1/tenants/acme/cas", F.op, "{}", 500, "internal");
	expect_error("DELETE", "/v1/tenants/acme", F.op, NULL, 500, "internal");
	expect_error("POST", "/v1/tokens", F.op, "{\"name\":\"x\"}", 500, "internal");
	audit_trigger(0);
	assert_int_equal(request("GET", "/v1/tenants/acme", F.op, NULL, &o), 200);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "hosts"), 0)),
	                    "acme.devices.local");
	assert_int_equal(json_array_size(json_object_get(o, "device_cas")), 1);
	json_decref(o);
	assert_int_equal(request("GET", "/v1/tokens", F.op, NULL, &o), 200);
	assert_int_equal(json_array_size(json_object_get(o, "items")), 1);
	json_decref(o);
	/* the server key and the CA key, no key of a change that did not happen */
	assert_int_equal(count_files("keys/acme"), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_bootstrap, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_health_version, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_routing, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_auth, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_auth_limit, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_body, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_create, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_bad_values, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_get_list, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_update, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_server_cert_import, setup,
	                                        fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_delete, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_cas, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_signing_ca, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tokens, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_token, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_audit, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_config_tenant, setup, fixture_teardown),
	        cmocka_unit_test_setup_teardown(test_store_failure, setup, fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
