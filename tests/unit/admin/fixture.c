/*
 * The fixture of the admin API's unit tests that run on a real store: see fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>
#include <cmocka.h>

#include <jansson.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/stats.h"

#include "fixture.h"

struct admin_fixture F;

static void on_changed(void *arg)
{
	(void)arg;
	F.changed++;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int fixture_open(const char *name, const char *version, time_t started_at, int with_stats)
{
	struct moat_admin_env env;
	const char *err = NULL;
	char path[128];

	memset(&F, 0, sizeof(F));
	snprintf(F.dir, sizeof(F.dir), "/tmp/moat-%s-XXXXXX", name);
	if (mkdtemp(F.dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/moat.db", F.dir);
	if (moat_store_open(path, &err, &F.store) != MOAT_OK)
		return -1;
	F.stats = with_stats ? moat_stats_new() : NULL;
	memset(&env, 0, sizeof(env));
	env.store = F.store;
	env.data_dir = F.dir;
	env.stats = F.stats;
	env.changed = on_changed;
	env.started_at = started_at;
	env.version = version;
	F.ctx = moat_admin_ctx_new(&env);
	if (F.ctx == NULL)
		return -1;
	F.now_ms = (int64_t)time(NULL) * 1000;
	return 0;
}

/* A token inserted straight into the store (the API would need a token to make one). */
static void make_token(const char *name, const char *tenant, char *out, size_t cap)
{
	struct moat_store_token t;

	memset(&t, 0, sizeof(t));
	assert_int_equal(admin_token_make(&t, out, cap), MOAT_OK);
	t.name = moat_strdup(name);
	t.tenant = tenant != NULL ? moat_strdup(tenant) : NULL;
	t.created_at = time(NULL);
	assert_int_equal(moat_store_token_insert(F.store, &t), MOAT_OK);
	moat_store_token_clear(&t);
}

int fixture_open_tenants(const char *name, int with_stats)
{
	if (fixture_open(name, "test", time(NULL), with_stats) != 0)
		return -1;
	make_token("op", NULL, F.op, sizeof(F.op));
	if (call_s("POST", "/v1/tenants", F.op,
	           "{\"name\":\"acme\",\"hosts\":[\"acme.devices.local\"],"
	           "\"origin\":\"http://127.0.0.1:8080\"}") != 201 ||
	    call_s("POST", "/v1/tenants", F.op,
	           "{\"name\":\"beta\",\"hosts\":[\"beta.devices.local\"],"
	           "\"origin\":\"http://127.0.0.1:8081\"}") != 201)
		return -1;
	make_token("b", "beta", F.beta, sizeof(F.beta));
	return 0;
}

int fixture_teardown(void **state)
{
	(void)state;
	moat_admin_ctx_free(F.ctx);
	moat_store_close(F.store);
	moat_stats_free(F.stats);
	nftw(F.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

struct moat_admin_req req(const char *method, const char *target, const char *auth,
                          const char *body)
{
	struct moat_admin_req r;

	memset(&r, 0, sizeof(r));
	r.method = method;
	r.target = target;
	r.authorization = auth;
	r.content_type = body != NULL ? "application/json" : NULL;
	r.has_length = body != NULL;
	r.body = body != NULL ? body : "";
	r.body_len = body != NULL ? strlen(body) : 0;
	r.source = "127.0.0.1";
	r.now_ms = F.now_ms;
	return r;
}

int call(const char *method, const char *target, const char *token, json_t *body, json_t **out)
{
	struct moat_admin_req rq;
	struct moat_admin_resp rs;
	char auth[200];
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	int status;

	json_decref(body);
	memset(&rs, 0, sizeof(rs));
	snprintf(auth, sizeof(auth), "Bearer %s", token);
	rq = req(method, target, auth, text);
	rq.now_ms = (int64_t)time(NULL) * 1000;
	moat_admin_handle(F.ctx, &rq, &rs);
	free(text);
	status = rs.status;
	if (out != NULL) {
		json_error_t e;

		*out = rs.body != NULL ? json_loadb(rs.body, rs.body_len, 0, &e) : NULL;
		if (rs.body != NULL && *out == NULL)
			fail_msg("answer is not JSON: %.*s", (int)rs.body_len, rs.body);
	}
	moat_admin_resp_clear(&rs);
	return status;
}

int call_s(const char *method, const char *target, const char *token, const char *body)
{
	json_error_t e;
	json_t *j = body != NULL ? json_loads(body, 0, &e) : NULL;

	if (body != NULL && j == NULL)
		fail_msg("bad test JSON: %s", body);
	return call(method, target, token, j, NULL);
}

const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}
