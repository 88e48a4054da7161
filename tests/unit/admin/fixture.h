/*
 * The fixture of the admin API's unit tests that run on a real store (core_test.c,
 * devices_test.c, rules_test.c): a temporary data directory holding the store, an admin
 * context on them, and requests handed straight to moat_admin_handle.
 *
 * One fixture at a time lives in F; cmocka runs the tests of a binary one after the other.
 */
#ifndef MOAT_TEST_ADMIN_FIXTURE_H
#define MOAT_TEST_ADMIN_FIXTURE_H

#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "admin/admin.h"

struct admin_fixture {
	char dir[64]; /* the data directory */
	struct moat_store *store;
	struct moat_stats *stats; /* NULL: statistics answer zeros */
	struct moat_admin_ctx *ctx;
	char op[128]; /* an operator token (65 characters) */
	char beta[128]; /* a token limited to tenant beta (fixture_open_tenants) */
	unsigned changed; /* how many times the context said it changed something */
	int64_t now_ms; /* when fixture_open ran, for tests that pin the clock */
};

extern struct admin_fixture F;

/*
 * Fills F: a new data directory /tmp/moat-<name>-XXXXXX, a store in it, statistics if
 * with_stats, and an admin context on them reporting version and started_at. No token is
 * made. Returns 0, or -1 (what a cmocka setup returns when it fails).
 */
int fixture_open(const char *name, const char *version, time_t started_at, int with_stats);

/*
 * fixture_open (version "test", started now) with an operator token in F.op, tenants acme and
 * beta made through the API, and a token of tenant beta in F.beta. Returns 0 or -1.
 */
int fixture_open_tenants(const char *name, int with_stats);

/* Frees what fixture_open made and removes the data directory: a cmocka teardown. */
int fixture_teardown(void **state);

/* A request with defaults: a JSON text body (NULL: none) with its length, from 127.0.0.1, at
 * F.now_ms. auth is the Authorization header (NULL: none). */
struct moat_admin_req req(const char *method, const char *target, const char *auth,
                          const char *body);

/*
 * One request as token (sent as "Bearer <token>") at the current time, with a JSON body (NULL:
 * none) that is stolen. Returns the status and, if out is not NULL, the parsed answer in *out
 * (NULL if none; the caller decrefs it). Fails the test if the answer is not JSON.
 */
int call(const char *method, const char *target, const char *token, json_t *body, json_t **out);

/* call with a JSON text body (NULL: none) whose answer is not needed. */
int call_s(const char *method, const char *target, const char *token, const char *body);

/* The string member key of o, NULL if it is missing or not a string. */
const char *str(const json_t *o, const char *key);

#endif
