/*
 * The admin API's core: one complete request in, one answer out. Routing, authentication and
 * its failure limit, the request body, health and version. Answers and body fields are in
 * json.c, access checks in auth.c, tokens and the audit log in tokens.c.
 *
 * How a handler that changes something is written (tenants.c, tokens.c, devices.c, rules.c):
 *
 *   1. Check everything first — the body (admin_body_*), access (admin_operator_only,
 *      admin_tenant with write = 1), conflicts — and answer 4xx before touching the store.
 *      Slow work that may fail (generating keys, signing) is done here too.
 *   2. Files a change needs (private keys) are written before the transaction, under new
 *      names from admin_key_path, and removed again if the transaction does not commit.
 *   3. moat_store_begin; every store write; admin_audit for the change; moat_store_commit.
 *      On any failure: moat_store_rollback, remove the files of step 2, admin_store_error (or
 *      the 4xx the failure means, e.g. MOAT_EEXIST -> 409), return. Nothing is half-written:
 *      a failed call leaves the store as it was, as docs/api.md promises for 500.
 *   4. Only after the commit: admin_tenant_changed if a tenant's rules or devices changed,
 *      then admin_changed (moatd publishes a new generation); remove files the change made
 *      obsolete (old keys); answer. Nothing after the commit may fail: what the answer needs
 *      from the store is read before it.
 *
 * A handler that leaves no answer is a bug; moat_admin_handle answers 500 for it.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/gen.h"
#include "core/log.h"

/* ---- failed authentications ---------------------------------------------------------------- */

#define FAIL_LIMIT 10 /* failures within FAIL_WINDOW_MS that block an address */
#define FAIL_WINDOW_MS 60000
#define FAIL_TABLE_MAX 4096 /* addresses remembered; the least recently failing goes first */
#define FAIL_ADDR_MAX 64

struct failure {
	char addr[FAIL_ADDR_MAX];
	int64_t times[FAIL_LIMIT]; /* the latest failures, a ring */
	unsigned count; /* failures in the ring */
	unsigned next; /* the ring slot the next failure goes to */
	int blocked; /* FAIL_LIMIT failures came within FAIL_WINDOW_MS */
	int64_t last_ms; /* the latest failure */
};

/* A small table scanned linearly: the admin API sees few requests and fewer addresses, and a
 * scan of a few thousand short strings costs microseconds. */
struct admin_failures {
	struct failure *v;
	size_t n, cap;
};

static struct failure *failure_find(struct admin_failures *f, const char *addr)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		if (strcmp(f->v[i].addr, addr) == 0)
			return &f->v[i];
	}
	return NULL;
}

static void failure_forget(struct admin_failures *f, struct failure *e)
{
	*e = f->v[--f->n];
}

/* Time since the latest failure; a clock that went back counts as no time. */
static int64_t since_last(const struct failure *e, int64_t now_ms)
{
	return now_ms > e->last_ms ? now_ms - e->last_ms : 0;
}

/* 1 (and the seconds to wait) if the address is blocked. */
static int failures_blocked(struct admin_failures *f, const char *addr, int64_t now_ms,
                            unsigned *retry_after)
{
	struct failure *e = failure_find(f, addr);
	int64_t quiet;

	if (e == NULL)
		return 0;
	quiet = since_last(e, now_ms);
	if (quiet >= FAIL_WINDOW_MS) {
		failure_forget(f, e);
		return 0;
	}
	if (!e->blocked)
		return 0;
	*retry_after = (unsigned)((FAIL_WINDOW_MS - quiet + 999) / 1000);
	return 1;
}

static struct failure *failure_add(struct admin_failures *f, const char *addr)
{
	struct failure *e;

	if (f->n == FAIL_TABLE_MAX) {
		size_t i, oldest = 0;

		for (i = 1; i < f->n; i++) {
			if (f->v[i].last_ms < f->v[oldest].last_ms)
				oldest = i;
		}
		failure_forget(f, &f->v[oldest]);
	}
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		struct failure *v = moat_realloc(f->v, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		f->v = v;
		f->cap = cap;
	}
	e = &f->v[f->n++];
	memset(e, 0, sizeof(*e));
	snprintf(e->addr, sizeof(e->addr), "%s", addr);
	return e;
}

static void failures_record(struct admin_failures *f, const char *addr, int64_t now_ms)
{
	struct failure *e = failure_find(f, addr);

	if (e == NULL) {
		e = failure_add(f, addr);
		if (e == NULL)
			return; /* out of memory: this failure goes uncounted */
	} else if (since_last(e, now_ms) >= FAIL_WINDOW_MS) {
		memset(e->times, 0, sizeof(e->times));
		e->count = e->next = 0;
		e->blocked = 0;
	}
	e->times[e->next] = now_ms;
	e->next = (e->next + 1) % FAIL_LIMIT;
	if (e->count < FAIL_LIMIT)
		e->count++;
	/* with a full ring, slot `next` holds the oldest of the last FAIL_LIMIT failures */
	if (e->count == FAIL_LIMIT && now_ms - e->times[e->next] < FAIL_WINDOW_MS)
		e->blocked = 1;
	e->last_ms = now_ms;
}

/* ---- routing ------------------------------------------------------------------------------ */

#define MAX_SEGMENTS 8
#define MAX_PATH 1024

struct route {
	const char *method;
	const char *pattern; /* "*" is a path parameter */
	moat_admin_handler fn;
	int open; /* answered without a token */
};

/* The first route matching path and method wins: literal routes come before the parameter
 * routes they overlap (POST .../rules/validate before .../rules/{id}). */
static const struct route routes[] = {
        {"GET", "/v1/health", admin_health, 1},
        {"GET", "/v1/version", admin_version, 1},
        {"GET", "/v1/tenants", admin_tenant_list, 0},
        {"POST", "/v1/tenants", admin_tenant_create, 0},
        {"GET", "/v1/tenants/*", admin_tenant_get, 0},
        {"PATCH", "/v1/tenants/*", admin_tenant_update, 0},
        {"DELETE", "/v1/tenants/*", admin_tenant_delete, 0},
        {"GET", "/v1/tenants/*/stats", admin_stats_tenant, 0},
        {"GET", "/v1/tenants/*/cas", admin_ca_list, 0},
        {"POST", "/v1/tenants/*/cas", admin_ca_create, 0},
        {"DELETE", "/v1/tenants/*/cas/*", admin_ca_delete, 0},
        {"GET", "/v1/tenants/*/devices", admin_device_list, 0},
        {"POST", "/v1/tenants/*/devices", admin_device_enroll, 0},
        {"GET", "/v1/tenants/*/devices/*", admin_device_get, 0},
        {"PATCH", "/v1/tenants/*/devices/*", admin_device_update, 0},
        {"DELETE", "/v1/tenants/*/devices/*", admin_device_delete, 0},
        {"POST", "/v1/tenants/*/devices/*/quarantine", admin_device_quarantine, 0},
        {"POST", "/v1/tenants/*/devices/*/release", admin_device_release, 0},
        {"POST", "/v1/tenants/*/devices/*/revoke", admin_device_revoke, 0},
        {"POST", "/v1/tenants/*/devices/*/renew", admin_device_renew, 0},
        {"GET", "/v1/tenants/*/devices/*/stats", admin_stats_device, 0},
        {"POST", "/v1/tenants/*/rules/validate", admin_rule_validate, 0},
        {"GET", "/v1/tenants/*/rules", admin_rule_list, 0},
        {"POST", "/v1/tenants/*/rules", admin_rule_create, 0},
        {"GET", "/v1/tenants/*/rules/*", admin_rule_get, 0},
        {"PATCH", "/v1/tenants/*/rules/*", admin_rule_update, 0},
        {"DELETE", "/v1/tenants/*/rules/*", admin_rule_delete, 0},
        {"POST", "/v1/tenants/*/rules/*/enable", admin_rule_enable, 0},
        {"POST", "/v1/tenants/*/rules/*/disable", admin_rule_disable, 0},
        {"GET", "/v1/tenants/*/rules/*/stats", admin_stats_rule, 0},
        {"GET", "/v1/tokens", admin_token_list, 0},
        {"POST", "/v1/tokens", admin_token_create, 0},
        {"DELETE", "/v1/tokens/*", admin_token_delete, 0},
        {"GET", "/v1/audit", admin_audit_list, 0},
};

/* The Allow header lists methods in this order. */
static const char *const methods[] = {"GET", "POST", "PATCH", "DELETE"};

/* The path of a request target, split into percent-decoded segments. */
struct path {
	char buf[MAX_PATH];
	const char *seg[MAX_SEGMENTS];
	size_t nseg;
};

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Splits target into path segments and the query (after '?', NULL if none). -1 for anything
 * no route can match: no leading '/', an empty segment, a bad escape or NUL, too long.
 */
static int path_split(const char *target, struct path *p, const char **query)
{
	const char *s = target, *q = strchr(target, '?');
	const char *end = q != NULL ? q : target + strlen(target);
	size_t o = 0;

	*query = q != NULL ? q + 1 : NULL;
	p->nseg = 0;
	if (*s != '/')
		return -1;
	while (s < end) {
		s++; /* the '/' */
		if (p->nseg == MAX_SEGMENTS || s == end || *s == '/')
			return -1;
		p->seg[p->nseg++] = p->buf + o;
		for (; s < end && *s != '/'; s++) {
			int ch = (unsigned char)*s;

			if (ch == '%') {
				int hi = end - s >= 3 ? hex_digit(s[1]) : -1;
				int lo = end - s >= 3 ? hex_digit(s[2]) : -1;

				if (hi < 0 || lo < 0)
					return -1;
				ch = hi * 16 + lo;
				s += 2;
			}
			if (ch == 0 || o + 2 > sizeof(p->buf))
				return -1;
			p->buf[o++] = (char)ch;
		}
		p->buf[o++] = '\0';
	}
	return 0;
}

/* 1 if the path matches the pattern; its parameters are stored in params. */
static int route_match(const char *pattern, const struct path *p, const char **params)
{
	const char *s = pattern;
	size_t i = 0, np = 0;

	while (*s == '/') {
		const char *seg = s + 1, *e = strchr(seg, '/');
		size_t len;

		if (e == NULL)
			e = seg + strlen(seg);
		len = (size_t)(e - seg);
		if (i == p->nseg)
			return 0;
		if (len == 1 && *seg == '*') {
			if (np < MOAT_ADMIN_MAX_PARAMS)
				params[np++] = p->seg[i];
		} else if (strlen(p->seg[i]) != len || memcmp(p->seg[i], seg, len) != 0) {
			return 0;
		}
		i++;
		s = e;
	}
	return i == p->nseg;
}

/* The route for path and method, or NULL with `allow` listing the methods the path has ("" if
 * the path is unknown). */
static const struct route *route_find(const struct path *p, const char *method, const char **params,
                                      char *allow, size_t cap)
{
	unsigned has = 0;
	size_t i, m, o = 0;

	for (i = 0; i < MOAT_ARRAY_LEN(routes); i++) {
		const char *tmp[MOAT_ADMIN_MAX_PARAMS] = {NULL};

		if (!route_match(routes[i].pattern, p, tmp))
			continue;
		if (strcmp(routes[i].method, method) == 0) {
			memcpy(params, tmp, sizeof(tmp));
			return &routes[i];
		}
		for (m = 0; m < MOAT_ARRAY_LEN(methods); m++) {
			if (strcmp(routes[i].method, methods[m]) == 0)
				has |= 1u << m;
		}
	}
	allow[0] = '\0';
	for (m = 0; m < MOAT_ARRAY_LEN(methods); m++) {
		if (has & (1u << m))
			o += (size_t)snprintf(allow + o, cap - o, "%s%s", o ? ", " : "",
			                      methods[m]);
	}
	return NULL;
}

/* ---- the request body -------------------------------------------------------------------- */

#define MAX_JSON_DEPTH 32

/* "application/json", any case, optionally followed by parameters (charset). */
static int content_type_json(const char *ct)
{
	static const char want[] = "application/json";

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return 0;
	ct += sizeof(want) - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* 1 if arrays and objects nest deeper than max: refused before jansson recurses into them. */
static int json_too_deep(const char *p, size_t n, unsigned max)
{
	unsigned depth = 0;
	int in_string = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		char ch = p[i];

		if (in_string) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = 0;
		} else if (ch == '"') {
			in_string = 1;
		} else if (ch == '[' || ch == '{') {
			if (++depth > max)
				return 1;
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

/* Parses the body into c->body (NULL for none). -1 after answering 400 or 415. */
static int body_parse(struct moat_admin_call *c)
{
	const struct moat_admin_req *r = c->req;
	json_error_t e;
	json_t *j;

	if (r->body_len == 0)
		return 0;
	if (!content_type_json(r->content_type)) {
		admin_error(c, 415, "unsupported_media_type", "the body must be application/json");
		return -1;
	}
	if (json_too_deep(r->body, r->body_len, MAX_JSON_DEPTH)) {
		admin_error(c, 400, "bad_request", "malformed JSON: nested deeper than %d levels",
		            MAX_JSON_DEPTH);
		return -1;
	}
	j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &e);
	if (j == NULL) {
		admin_error(c, 400, "bad_request", "malformed JSON: %s (line %d, column %d)",
		            e.text, e.line, e.column);
		return -1;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		admin_error(c, 400, "bad_request", "the body must be a JSON object");
		return -1;
	}
	c->body = j;
	return 0;
}

/* ---- changes, times, key paths ------------------------------------------------------ */

void admin_changed(struct moat_admin_call *c)
{
	if (c->ctx->env.changed != NULL)
		c->ctx->env.changed(c->ctx->env.arg);
}

json_t *admin_time(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		return json_null();
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

void admin_key_path(struct moat_admin_call *c, const char *tenant, const char *what, char *rel,
                    size_t cap)
{
	static uint64_t fallback;
	unsigned char r[8];
	char hex[17];
	size_t i;

	/* the name only has to be new; without randomness a counter and the clock do */
	if (RAND_bytes(r, sizeof(r)) != 1) {
		uint64_t v = (uint64_t)c->req->now_ms * 1000 + ++fallback;

		for (i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(v >> (8 * i));
	}
	for (i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	snprintf(rel, cap, "keys/%s/%s-%s.key", tenant, what, hex);
}

void admin_abs_path(struct moat_admin_call *c, const char *rel, char *abs, size_t cap)
{
	snprintf(abs, cap, "%s/%s", c->ctx->env.data_dir, rel);
}

/* ---- health and version ------------------------------------------------------------------ */

void admin_health(struct moat_admin_call *c)
{
	struct moat_gen *g = moat_gen_acquire_current();
	uint64_t generation = g != NULL ? g->id : 0, operators;
	int64_t uptime = c->req->now_ms / 1000 - c->ctx->env.started_at;
	int ok = moat_store_token_count_operator(c->ctx->env.store, &operators) == MOAT_OK;

	moat_gen_release(g);
	if (!ok)
		moat_log_error("admin: health: store: %s", moat_store_error(c->ctx->env.store));
	admin_reply(c, ok ? 200 : 503,
	            json_pack("{s:s, s:I, s:I, s:s}", "status", ok ? "ok" : "degraded",
	                      "generation", (json_int_t)generation, "uptime_s",
	                      (json_int_t)(uptime > 0 ? uptime : 0), "store", ok ? "ok" : "error"));
}

void admin_version(struct moat_admin_call *c)
{
	const char *v = c->ctx->env.version != NULL ? c->ctx->env.version : "0.1.0";

	admin_reply(c, 200,
	            json_pack("{s:s, s:s, s:i}", "version", v, "api", "v1", "schema",
	                      moat_store_schema_version(c->ctx->env.store)));
}

/* ---- the context and one request ----------------------------------------------------------- */

struct moat_admin_ctx *moat_admin_ctx_new(const struct moat_admin_env *env)
{
	struct moat_admin_ctx *ctx = moat_calloc(1, sizeof(*ctx));

	if (ctx == NULL)
		return NULL;
	ctx->env = *env;
	/* the strings are kept: the caller's may not live as long as the context */
	ctx->env.data_dir = moat_strdup(env->data_dir != NULL ? env->data_dir : ".");
	ctx->env.version = env->version != NULL ? moat_strdup(env->version) : NULL;
	ctx->failures = moat_calloc(1, sizeof(*ctx->failures));
	ctx->signers = admin_signers_new();
	if (ctx->env.data_dir == NULL || (env->version != NULL && ctx->env.version == NULL) ||
	    ctx->failures == NULL || ctx->signers == NULL) {
		moat_admin_ctx_free(ctx);
		return NULL;
	}
	return ctx;
}

void moat_admin_ctx_free(struct moat_admin_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->failures != NULL)
		moat_free(ctx->failures->v);
	moat_free(ctx->failures);
	admin_signers_free(ctx->signers);
	moat_free((char *)ctx->env.data_dir);
	moat_free((char *)ctx->env.version);
	moat_free(ctx);
}

/* Authenticates the call: fills the token, c->token_id and c->scope, or answers (401, 500). */
static int authenticate(struct moat_admin_call *c, const char *source, struct moat_store_token *tok)
{
	int rc = admin_token_verify(c->ctx, c->req->authorization, tok);

	if (rc == MOAT_ENOTFOUND) {
		failures_record(c->ctx->failures, source, c->req->now_ms);
		admin_error(c, 401, "unauthorized",
		            c->req->authorization == NULL ? "a bearer token is required"
		                                          : "the token is not valid");
		return -1;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return -1;
	}
	c->token_id = tok->id;
	c->scope = tok->tenant;
	return 0;
}

/* Everything before the handler: limit, route, size, token, body. 0 if the handler may run. */
static int prepare(struct moat_admin_call *c, struct path *p, const struct route **r,
                   struct moat_store_token *tok)
{
	const struct moat_admin_req *req = c->req;
	const char *source = req->source != NULL ? req->source : "";
	unsigned retry = 0;

	if (failures_blocked(c->ctx->failures, source, req->now_ms, &retry)) {
		c->resp->retry_after = retry;
		admin_error(c, 429, "too_many_requests",
		            "too many failed authentications from this address; retry in %u s",
		            retry);
		return -1;
	}
	*r = NULL;
	if (req->method != NULL && req->target != NULL &&
	    path_split(req->target, p, &c->query) == 0)
		*r = route_find(p, req->method, c->params, c->resp->allow, sizeof(c->resp->allow));
	if (*r == NULL && c->resp->allow[0] != '\0') {
		admin_error(c, 405, "method_not_allowed", "%.16s is not allowed here (allowed: %s)",
		            req->method, c->resp->allow);
		return -1;
	}
	if (*r == NULL) {
		admin_error(c, 404, "not_found", "no such path");
		return -1;
	}
	if (req->body_len > 0 && !req->has_length) {
		admin_error(c, 411, "length_required", "a body needs a Content-Length");
		return -1;
	}
	if (req->body_len > MOAT_ADMIN_MAX_BODY) {
		admin_error(c, 413, "payload_too_large", "the body is larger than %d bytes",
		            MOAT_ADMIN_MAX_BODY);
		return -1;
	}
	if (!(*r)->open && authenticate(c, source, tok) != 0)
		return -1;
	return body_parse(c);
}

void moat_admin_handle(struct moat_admin_ctx *ctx, const struct moat_admin_req *req,
                       struct moat_admin_resp *resp)
{
	struct moat_admin_call c;
	struct moat_store_token tok;
	struct path *p = moat_malloc(sizeof(*p));
	const struct route *r = NULL;

	memset(resp, 0, sizeof(*resp));
	memset(&c, 0, sizeof(c));
	memset(&tok, 0, sizeof(tok));
	c.ctx = ctx;
	c.req = req;
	c.resp = resp;
	c.token_id = "";
	if (p == NULL) {
		admin_store_error(&c, MOAT_ENOMEM);
		return;
	}
	if (prepare(&c, p, &r, &tok) == 0) {
		r->fn(&c);
		if (resp->status == 0) {
			moat_log_error("admin: %s %s left no answer", req->method, req->target);
			admin_error(&c, 500, "internal", "no answer");
		}
	}
	json_decref(c.body);
	moat_store_token_clear(&tok);
	moat_free(p);
}
