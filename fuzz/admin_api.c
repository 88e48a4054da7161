/*
 * Fuzz driver for the admin API: moat_admin_handle (src/admin/) over a real store
 * (src/store/) in a temporary data directory, from a populated start: the operator token of
 * the first start, tenants "acme" and "beta" made through the API, a token of acme, a device
 * and a rule in each tenant.
 *
 * An input is a small program of up to 8 requests separated by "\n---\n". In each request the
 * first byte chooses the method (bits 0-2), the Authorization (bits 3-5) and the client address
 * (bits 6-7); the rest is TARGET "\n" CONTENT-TYPE "\n" BODY, a missing part being absent. A
 * content type of "J" stands for application/json. "@OP@" and "@TT@" in the target or the body
 * become the ids of the operator token and of acme's token, which are random. Targets are cut
 * to what the HTTP parser lets through (visible ASCII but '#'): the server never passes more.
 *
 * The driver aborts when an answer breaks the contract of docs/api.md:
 * - a status outside 100..599, a 5xx (the store is never made to fail), a 429 (no address
 *   fails 10 times in one input and the clock moves 61 s between inputs);
 * - a body that is not a JSON object (204: no body), an error without string "error" and
 *   "detail" or whose "error" does not name its status;
 * - a request without a valid token that gets more than health or version, a valid token
 *   refused with 401, an operator refused with 403, a tenant token shown another tenant;
 * - a token's secret in an answer; a private key the node keeps (data_dir/keys) in an answer;
 *   an enrollment or renewal whose new key does not match its mode or is a key the node keeps;
 * - a token from POST /v1/tokens that does not have the token syntax;
 * - a change (201, 204) without a new audit entry, or a refused request (4xx) with one.
 *
 * State stays bounded: every 5,000 inputs, or when the database passes 50 MB, the store, the
 * context and the data directory are made anew and seeded again; the seeded objects are also
 * restored when an input deleted one of them.
 *
 * ADMIN_API_TRACE=1 prints every request and its answer. The corpus's finding* inputs are the
 * bugs this driver found (answers that were not JSON, a 500 for a page of 1,000): fixed, kept
 * as regressions.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/admin.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/stats.h"
#include "store/store.h"
#include "tls/ca.h"

#define CHECK(c, call)                                                                             \
	do {                                                                                       \
		if (!(c))                                                                          \
			check_failed(__LINE__, #c, (call));                                        \
	} while (0)

#define MAX_REQUESTS 8
#define RESET_EVERY 5000
#define DB_MAX_BYTES (50L * 1024 * 1024)
#define STEP_MS 61000 /* more than the failure window of core.c: no input inherits a block */
#define TOKEN_LEN 65 /* "moat_" + 16 hex + "_" + 43 base64url */
#define SECRET_LEN 43
#define ID_LEN 16
#define DIR_PREFIX "moat-fuzz-admin-"
#define MAX_KEYS 4096

static const char separator[] = "\n---\n";

enum auth_kind {
	AUTH_NONE,
	AUTH_OPERATOR,
	AUTH_TENANT,
	AUTH_GARBAGE,
	AUTH_TRUNCATED,
	AUTH_OPERATOR_ODD, /* the operator token, scheme in odd case, odd blanks: valid */
	AUTH_WRONG_SECRET, /* the operator's id with another secret: the syntax is right */
	AUTH_EMPTY,
};

static const char *const methods[] = {"GET",    "PUT",  "POST", "PATCH",
                                      "DELETE", "HEAD", "get",  "POST"};
#define METHOD_NO_LENGTH 7 /* a POST whose body came without Content-Length */

static const char *const sources[] = {"127.0.0.1", "::1", "10.1.2.3", "2001:db8::9"};

/* One request as sent, and what the checks need to know about it. */
struct call {
	const char *method;
	const char *target;
	const char *authorization;
	enum auth_kind auth;
	const char *body;
	size_t body_len;
	const struct moat_admin_resp *resp;
};

static struct {
	char dir[256];
	struct moat_store *store;
	struct moat_stats *stats;
	struct moat_admin_ctx *ctx;
	char op[TOKEN_LEN + 1], op_id[ID_LEN + 1]; /* the operator token of the first start */
	char tt[TOKEN_LEN + 1], tt_id[ID_LEN + 1]; /* acme's token */
	char auth[8][TOKEN_LEN + 32];
	int op_alive, tt_alive; /* an input may delete the tokens (DELETE a token, a tenant) */
	int deleted; /* a request of this input answered 204: something may be gone */
	int64_t now_ms;
	unsigned long inputs;
	/* the first base64 line of every key under data_dir/keys, read again after changes */
	char *keys[MAX_KEYS];
	size_t nkeys;
	uint64_t keys_changes;
	int keys_valid;
	int trace; /* ADMIN_API_TRACE=1: every request and answer on stderr */
} S;

/* ---- failures ------------------------------------------------------------------------------ */

static void check_failed(int line, const char *what, const struct call *c)
{
	fprintf(stderr, "admin_api: invariant failed at line %d: %s\n", line, what);
	if (c != NULL) {
		fprintf(stderr, "  request: %s %s (auth %d), body %zu bytes: %.*s\n", c->method,
		        c->target, (int)c->auth, c->body_len,
		        (int)(c->body_len > 2000 ? 2000 : c->body_len), c->body);
		if (c->resp != NULL)
			fprintf(stderr, "  answer: %d %.*s\n", c->resp->status,
			        (int)(c->resp->body_len > 2000 ? 2000 : c->resp->body_len),
			        c->resp->body != NULL ? c->resp->body : "(none)");
	}
	abort();
}

/* ---- the data directory ------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_base(void)
{
	struct stat st;

	return stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
}

/* Directories of earlier runs that crashed (a crash skips every cleanup): removed when the
 * process named in the directory's name is gone. */
static void remove_stale_dirs(const char *base)
{
	DIR *d = opendir(base);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[768], *end;
		long pid;

		if (strncmp(e->d_name, DIR_PREFIX, sizeof(DIR_PREFIX) - 1) != 0)
			continue;
		pid = strtol(e->d_name + sizeof(DIR_PREFIX) - 1, &end, 10);
		if (pid <= 0 || *end != '-' || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		rm_tree(path);
	}
	closedir(d);
}

static void dir_make(void)
{
	snprintf(S.dir, sizeof(S.dir), "%s/" DIR_PREFIX "%ld-XXXXXX", tmp_base(), (long)getpid());
	if (mkdtemp(S.dir) == NULL) {
		perror("admin_api: mkdtemp");
		abort();
	}
}

/* ---- requests ------------------------------------------------------------------------------- */

static void handle(const char *method, const char *target, const char *auth, const char *ctype,
                   const char *body, size_t body_len, int has_length, const char *source,
                   struct moat_admin_resp *resp)
{
	struct moat_admin_req req;

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.target = target;
	req.authorization = auth;
	req.content_type = ctype;
	req.has_length = has_length;
	req.body = body != NULL ? body : "";
	req.body_len = body != NULL ? body_len : 0;
	req.source = source;
	req.now_ms = S.now_ms;
	moat_admin_handle(S.ctx, &req, resp);
}

/* A seeding request as operator; aborts unless it answers `want`. The parsed answer goes to
 * *out if out is not NULL. */
static void seed_call(const char *method, const char *target, const char *body, int want,
                      json_t **out)
{
	struct moat_admin_resp resp;
	char auth[TOKEN_LEN + 16];
	json_t *j;

	snprintf(auth, sizeof(auth), "Bearer %s", S.op);
	handle(method, target, auth, "application/json", body, strlen(body), 1, "127.0.0.1", &resp);
	if (resp.status != want) {
		fprintf(stderr, "admin_api: seeding %s %s: %d %s\n", method, target, resp.status,
		        resp.body != NULL ? resp.body : "");
		abort();
	}
	j = resp.body != NULL ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
	if (out != NULL)
		*out = j;
	else
		json_decref(j);
	moat_admin_resp_clear(&resp);
}

static void token_id(const char *token, char *id)
{
	memcpy(id, token + 5, ID_LEN);
	id[ID_LEN] = '\0';
}

static void seed_tenant(const char *name)
{
	char body[512], target[128];

	snprintf(body, sizeof(body),
	         "{\"name\":\"%s\",\"hosts\":[\"%s.devices.local\",\"*.%s.example\"],"
	         "\"origin\":\"http://127.0.0.1:8080\",\"quarantine_allow\":[\"/firmware/\"]}",
	         name, name, name);
	seed_call("POST", "/v1/tenants", body, 201, NULL);
	snprintf(target, sizeof(target), "/v1/tenants/%s/devices", name);
	snprintf(body, sizeof(body),
	         "{\"id\":\"%s-cam-1\",\"model\":\"cam-x\",\"firmware\":\"1.2.0\","
	         "\"tags\":[\"outdoor\"],\"owner\":\"ops@%s.example\"}",
	         name, name);
	seed_call("POST", target, body, 201, NULL);
	snprintf(target, sizeof(target), "/v1/tenants/%s/rules", name);
	snprintf(body, sizeof(body),
	         "{\"id\":\"%s-rule-1\",\"name\":\"cgi\",\"expr\":\"http.request.uri.path "
	         "contains \\\"/cgi-bin/\\\"\",\"mode\":\"dry-run\"}",
	         name);
	seed_call("POST", target, body, 201, NULL);
}

/* The authorization values the first byte of a request chooses from. */
static void auth_values(void)
{
	char wrong[TOKEN_LEN + 1];

	snprintf(wrong, sizeof(wrong), "%s", S.op);
	wrong[TOKEN_LEN - 1] = wrong[TOKEN_LEN - 1] == 'A' ? 'B' : 'A';
	S.auth[AUTH_NONE][0] = '\0';
	snprintf(S.auth[AUTH_OPERATOR], sizeof(S.auth[0]), "Bearer %s", S.op);
	snprintf(S.auth[AUTH_TENANT], sizeof(S.auth[0]), "Bearer %s", S.tt);
	snprintf(S.auth[AUTH_GARBAGE], sizeof(S.auth[0]), "Bearer moat_zz_%s", "not-a-token");
	snprintf(S.auth[AUTH_TRUNCATED], sizeof(S.auth[0]), "Bearer %.*s", TOKEN_LEN - 1, S.op);
	snprintf(S.auth[AUTH_OPERATOR_ODD], sizeof(S.auth[0]), " \tbEaReR \t%s\t ", S.op);
	snprintf(S.auth[AUTH_WRONG_SECRET], sizeof(S.auth[0]), "Bearer %s", wrong);
	S.auth[AUTH_EMPTY][0] = '\0';
}

static void seed(void)
{
	json_t *j = NULL;
	const char *tok;

	seed_tenant("acme");
	seed_tenant("beta");
	seed_call("POST", "/v1/tokens", "{\"name\":\"t\",\"tenant\":\"acme\"}", 201, &j);
	S.op_alive = S.tt_alive = 1;
	tok = json_string_value(json_object_get(j, "token"));
	if (tok == NULL || strlen(tok) != TOKEN_LEN)
		abort();
	snprintf(S.tt, sizeof(S.tt), "%s", tok);
	token_id(S.tt, S.tt_id);
	json_decref(j);
	auth_values();
}

/* ---- the state ------------------------------------------------------------------------------ */

static void keys_forget(void)
{
	for (size_t i = 0; i < S.nkeys; i++)
		moat_free(S.keys[i]);
	S.nkeys = 0;
	S.keys_valid = 0;
}

static void state_close(void)
{
	keys_forget();
	if (S.ctx != NULL)
		moat_admin_ctx_free(S.ctx);
	if (S.store != NULL)
		moat_store_close(S.store);
	if (S.stats != NULL)
		moat_stats_free(S.stats);
	S.ctx = NULL;
	S.store = NULL;
	S.stats = NULL;
	if (S.dir[0] != '\0')
		rm_tree(S.dir);
	S.dir[0] = '\0';
}

static void state_open(void)
{
	struct moat_admin_env env;
	const char *err = NULL;
	char path[512], *token = NULL;

	dir_make();
	snprintf(path, sizeof(path), "%s/moat.db", S.dir);
	if (moat_store_open(path, &err, &S.store) != MOAT_OK) {
		fprintf(stderr, "admin_api: %s\n", err);
		abort();
	}
	S.stats = moat_stats_new();
	memset(&env, 0, sizeof(env));
	env.store = S.store;
	env.data_dir = S.dir;
	env.stats = S.stats;
	env.changed = NULL;
	env.started_at = (int64_t)time(NULL);
	env.version = "0.1.0";
	S.ctx = moat_admin_ctx_new(&env);
	if (S.stats == NULL || S.ctx == NULL || moat_admin_bootstrap(S.ctx, &token) != MOAT_OK ||
	    token == NULL || strlen(token) != TOKEN_LEN)
		abort();
	snprintf(S.op, sizeof(S.op), "%s", token);
	token_id(S.op, S.op_id);
	moat_free(token);
	S.now_ms = (int64_t)time(NULL) * 1000;
	seed();
}

static void state_reset(void)
{
	state_close();
	state_open();
}

static void at_exit(void)
{
	state_close();
}

static int token_alive(const char *id)
{
	struct moat_store_token t;

	if (moat_store_token_get(S.store, id, &t) != MOAT_OK)
		return 0;
	moat_store_token_clear(&t);
	return 1;
}

static void tokens_alive(void)
{
	S.op_alive = token_alive(S.op_id);
	S.tt_alive = token_alive(S.tt_id);
}

/* 1 while everything seed() made is still there (an input may delete any of it). */
static int seeded_intact(void)
{
	static const char *const tenants[] = {"acme", "beta"};
	struct moat_store_device d;
	struct moat_store_rule r;
	char id[64];
	int ok = 1;

	tokens_alive();
	if (!S.op_alive || !S.tt_alive)
		return 0;
	for (size_t i = 0; ok && i < MOAT_ARRAY_LEN(tenants); i++) {
		snprintf(id, sizeof(id), "%s-cam-1", tenants[i]);
		ok = moat_store_device_get(S.store, tenants[i], id, &d) == MOAT_OK;
		if (ok)
			moat_store_device_clear(&d);
		snprintf(id, sizeof(id), "%s-rule-1", tenants[i]);
		ok = ok && moat_store_rule_get(S.store, tenants[i], id, &r) == MOAT_OK;
		if (ok)
			moat_store_rule_clear(&r);
	}
	return ok;
}

static int db_too_big(void)
{
	char path[512];
	struct stat st;
	off_t total = 0;

	snprintf(path, sizeof(path), "%s/moat.db", S.dir);
	if (stat(path, &st) == 0)
		total += st.st_size;
	snprintf(path, sizeof(path), "%s/moat.db-wal", S.dir);
	if (stat(path, &st) == 0)
		total += st.st_size;
	return total > DB_MAX_BYTES;
}

/* Between inputs: time moves on; a worn or damaged state is made anew. */
static void state_next(void)
{
	S.now_ms += STEP_MS;
	S.inputs++;
	if (S.inputs % RESET_EVERY == 0 || (S.inputs % 500 == 0 && db_too_big()) ||
	    (S.deleted && !seeded_intact()))
		state_reset();
	S.deleted = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *err = NULL;

	(void)argc;
	(void)argv;
	S.trace = getenv("ADMIN_API_TRACE") != NULL;
	if (moat_log_open(NULL, NULL, MOAT_LOG_ERROR, &err) != MOAT_OK)
		fprintf(stderr, "admin_api: log: %s\n", err);
	remove_stale_dirs(tmp_base());
	state_open();
	atexit(at_exit);
	return 0;
}

/* ---- private keys the node keeps ------------------------------------------------------------ */

static int key_collect(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	char *pem = NULL, *line, *end;

	(void)st;
	(void)ftw;
	if (flag != FTW_F || S.nkeys == MAX_KEYS || moat_secret_read(path, &pem) != MOAT_OK)
		return 0;
	line = strstr(pem, "PRIVATE KEY-----\n");
	if (line != NULL) {
		line += strlen("PRIVATE KEY-----\n");
		end = strchr(line, '\n');
		if (end != NULL && end - line >= 32)
			S.keys[S.nkeys++] = moat_strndup(line, (size_t)(end - line));
	}
	moat_ca_free_secret(pem);
	return 0;
}

/* Reads the keys again when the store changed since they were read. */
static void keys_load(void)
{
	char dir[512];
	uint64_t changes = moat_store_changes(S.store);

	if (S.keys_valid && changes == S.keys_changes)
		return;
	keys_forget();
	snprintf(dir, sizeof(dir), "%s/keys", S.dir);
	nftw(dir, key_collect, 16, FTW_PHYS);
	S.keys_changes = changes;
	S.keys_valid = 1;
}

/* 1 if text holds one of the keys the node keeps. */
static int holds_kept_key(const char *text)
{
	keys_load();
	for (size_t i = 0; i < S.nkeys; i++) {
		if (S.keys[i] != NULL && strstr(text, S.keys[i]) != NULL)
			return 1;
	}
	return 0;
}

/* ---- checks --------------------------------------------------------------------------------- */

/* The percent-decoded segments of the target's path: "v1", "tenants", "acme"... */
struct segments {
	char buf[1024];
	const char *v[8];
	size_t n;
};

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static void segments_of(const char *target, struct segments *s)
{
	size_t o = 0;

	s->n = 0;
	for (const char *p = target; *p != '\0' && *p != '?' && o + 2 < sizeof(s->buf); p++) {
		if (*p == '/') {
			if (s->n > 0)
				s->buf[o++] = '\0';
			if (s->n == MOAT_ARRAY_LEN(s->v))
				return;
			s->v[s->n++] = s->buf + o;
		} else if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
			s->buf[o++] = (char)(hexval(p[1]) * 16 + hexval(p[2]));
			p += 2;
		} else {
			s->buf[o++] = *p;
		}
	}
	s->buf[o] = '\0';
}

/* POST .../devices (enroll) or POST .../devices/{id}/renew: the answers that carry a key. */
static int issues_key(const struct call *c)
{
	struct segments s;

	if (strcmp(c->method, "POST") != 0)
		return 0;
	segments_of(c->target, &s);
	if (s.n < 4 || strcmp(s.v[0], "v1") != 0 || strcmp(s.v[1], "tenants") != 0 ||
	    strcmp(s.v[3], "devices") != 0)
		return 0;
	return s.n == 4 || (s.n == 6 && strcmp(s.v[5], "renew") == 0);
}

static const char *error_name(int status)
{
	switch (status) {
	case 400:
		return "bad_request";
	case 401:
		return "unauthorized";
	case 403:
		return "forbidden";
	case 404:
		return "not_found";
	case 405:
		return "method_not_allowed";
	case 409:
		return "conflict";
	case 411:
		return "length_required";
	case 413:
		return "payload_too_large";
	case 415:
		return "unsupported_media_type";
	case 422:
		return "invalid_rule";
	case 429:
		return "too_many_requests";
	default:
		return NULL;
	}
}

static void check_error(const struct call *c, json_t *j)
{
	const char *want = error_name(c->resp->status);

	CHECK(json_is_string(json_object_get(j, "error")), c);
	CHECK(json_is_string(json_object_get(j, "detail")), c);
	CHECK(want != NULL, c);
	CHECK(strcmp(json_string_value(json_object_get(j, "error")), want) == 0, c);
	if (c->resp->status == 405)
		CHECK(c->resp->allow[0] != '\0', c);
}

/* A tenant token sees acme only: every "tenant" field, and the name of every tenant object. */
static void check_scope(const struct call *c, json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_array(j)) {
		json_array_foreach (j, i, v)
			check_scope(c, v);
		return;
	}
	if (!json_is_object(j))
		return;
	v = json_object_get(j, "tenant");
	if (json_is_string(v))
		CHECK(strcmp(json_string_value(v), "acme") == 0, c);
	if (json_object_get(j, "hosts") != NULL && json_object_get(j, "source") != NULL)
		CHECK(json_is_string(json_object_get(j, "name")) &&
		              strcmp(json_string_value(json_object_get(j, "name")), "acme") == 0,
		      c);
	json_object_foreach (j, key, v)
		check_scope(c, v);
}

/* What a token may and may not get. */
static void check_access(const struct call *c, json_t *j)
{
	int status = c->resp->status;

	switch (c->auth) {
	case AUTH_OPERATOR:
	case AUTH_OPERATOR_ODD:
		CHECK(!S.op_alive || (status != 401 && status != 403), c);
		break;
	case AUTH_TENANT:
		CHECK(!S.tt_alive || status != 401, c);
		check_scope(c, j);
		break;
	default:
		/* only health and version answer without a token; their bodies are parsed after
		 * the route is found, so 400 and 415 come from them too */
		CHECK(status != 403 && status != 409 && status != 422, c);
		if (status < 300)
			CHECK(json_object_get(j, "uptime_s") != NULL ||
			              json_object_get(j, "api") != NULL,
			      c);
		break;
	}
}

/* Enroll and renew: a new key exactly in factory mode (no csr), never one the node keeps. */
static void check_issued(const struct call *c, json_t *j)
{
	json_t *req = json_loadb(c->body, c->body_len, 0, NULL);
	json_t *csr = json_object_get(req, "csr");
	int factory = csr == NULL || json_is_null(csr);
	json_t *key = json_object_get(j, "key");

	json_decref(req);
	CHECK(json_is_string(json_object_get(j, "certificate")), c);
	CHECK(factory == (key != NULL), c);
	if (key != NULL) {
		CHECK(json_is_string(key) &&
		              strstr(json_string_value(key), "PRIVATE KEY-----") != NULL,
		      c);
		CHECK(!holds_kept_key(json_string_value(key)), c);
	}
}

/* POST /v1/tokens: "moat_<id>_<secret>" with the answer's id. */
static void check_new_token(const struct call *c, json_t *j)
{
	const char *tok = json_string_value(json_object_get(j, "token"));
	const char *id = json_string_value(json_object_get(j, "id"));

	CHECK(tok != NULL && id != NULL, c);
	CHECK(strlen(tok) == TOKEN_LEN && strncmp(tok, "moat_", 5) == 0 && tok[5 + ID_LEN] == '_',
	      c);
	CHECK(strlen(id) == ID_LEN && strncmp(tok + 5, id, ID_LEN) == 0, c);
	CHECK(strspn(tok + 6 + ID_LEN, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                               "0123456789-_") == SECRET_LEN,
	      c);
}

static void check_secrets(const struct call *c)
{
	const char *body = c->resp->body;

	CHECK(strstr(body, S.op + TOKEN_LEN - SECRET_LEN) == NULL, c);
	CHECK(strstr(body, S.tt + TOKEN_LEN - SECRET_LEN) == NULL, c);
	if (strstr(body, "PRIVATE KEY") != NULL && !issues_key(c))
		CHECK(!holds_kept_key(body), c);
}

/* The newest audit entry's sequence number (0: none). */
static int64_t audit_newest(void)
{
	struct moat_store_audit *v = NULL;
	size_t n = 0;
	int64_t seq = 0;

	if (moat_store_audit_list(S.store, NULL, 0, 1, &v, &n) != MOAT_OK)
		abort();
	if (n > 0)
		seq = v[0].seq;
	moat_store_audits_free(v, n);
	return seq;
}

/* Every change is audited (201 and 204 are changes); a refused call writes nothing. */
static void check_audit(const struct call *c, int64_t before)
{
	int64_t after = audit_newest();

	if (c->resp->status >= 400)
		CHECK(after == before, c);
	if (c->resp->status == 201 || c->resp->status == 204)
		CHECK(after > before, c);
}

static void check_answer(const struct call *c)
{
	const struct moat_admin_resp *r = c->resp;
	json_error_t e;
	json_t *j;

	CHECK(r->status >= 100 && r->status <= 599, c);
	CHECK(r->status < 500, c);
	CHECK(r->status != 429, c);
	if (r->status == 204) {
		CHECK(r->body == NULL && r->body_len == 0, c);
		return;
	}
	CHECK(r->body != NULL && r->body_len > 0 && strlen(r->body) == r->body_len, c);
	j = json_loadb(r->body, r->body_len, 0, &e);
	CHECK(j != NULL && json_is_object(j), c);
	if (r->status >= 400)
		check_error(c, j);
	check_access(c, j);
	check_secrets(c);
	if (r->status < 300 && issues_key(c))
		check_issued(c, j);
	if (r->status == 201 && strcmp(c->method, "POST") == 0 &&
	    json_object_get(j, "token") != NULL)
		check_new_token(c, j);
	json_decref(j);
}

/* ---- one input ------------------------------------------------------------------------------ */

/* Copies s[0..n) with the token placeholders replaced; visible_only keeps only what a request
 * target may hold. NUL-terminated; *len gets the length. */
static char *expand(const uint8_t *s, size_t n, int visible_only, size_t *len)
{
	char *out = moat_malloc(n * 4 + 1);
	size_t o = 0;

	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (n - i >= 4 &&
		    (memcmp(s + i, "@OP@", 4) == 0 || memcmp(s + i, "@TT@", 4) == 0)) {
			memcpy(out + o, s[i + 1] == 'O' ? S.op_id : S.tt_id, ID_LEN);
			o += ID_LEN;
			i += 3;
		} else if (!visible_only || (s[i] > 0x20 && s[i] < 0x7f && s[i] != '#')) {
			out[o++] = (char)s[i];
		}
	}
	out[o] = '\0';
	*len = o;
	return out;
}

static const uint8_t *line_end(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));

	return nl != NULL ? nl : end;
}

static void run_request(const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n, *t_end, *ct_end;
	struct moat_admin_resp resp;
	struct call c;
	int64_t audit_before;
	char *target, *ctype = NULL, *body = NULL;
	size_t target_len, ct_len, body_len = 0;
	uint8_t sel;

	if (n == 0)
		return;
	sel = *p++;
	memset(&c, 0, sizeof(c));
	c.method = methods[sel & 7];
	c.auth = (enum auth_kind)((sel >> 3) & 7);
	c.authorization = c.auth == AUTH_NONE ? NULL : S.auth[c.auth];
	t_end = line_end(p, end);
	target = expand(p, (size_t)(t_end - p), 1, &target_len);
	if (t_end < end) {
		ct_end = line_end(t_end + 1, end);
		ctype = expand(t_end + 1, (size_t)(ct_end - t_end - 1), 0, &ct_len);
		if (ct_end < end)
			body = expand(ct_end + 1, (size_t)(end - ct_end - 1), 0, &body_len);
	}
	c.target = target;
	c.body = body != NULL ? body : "";
	c.body_len = body_len;
	audit_before = audit_newest();
	handle(c.method, target, c.authorization,
	       ctype != NULL && strcmp(ctype, "J") == 0 ? "application/json" : ctype, body,
	       body_len, (sel & 7) != METHOD_NO_LENGTH, sources[sel >> 6], &resp);
	c.resp = &resp;
	if (S.trace)
		fprintf(stderr, "> %s %s [auth %d] %.*s\n< %d %.300s\n", c.method, target,
		        (int)c.auth, (int)(body_len > 300 ? 300 : body_len), c.body, resp.status,
		        resp.body != NULL ? resp.body : "");
	check_answer(&c);
	check_audit(&c, audit_before);
	if (resp.status == 204) {
		tokens_alive(); /* a token or a tenant may be gone */
		S.deleted = 1;
	}
	moat_admin_resp_clear(&resp);
	moat_free(target);
	moat_free(ctype);
	moat_free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;

	for (int i = 0; i < MAX_REQUESTS && p < end; i++) {
		const uint8_t *sep = memmem(p, (size_t)(end - p), separator, sizeof(separator) - 1);
		const uint8_t *stop = sep != NULL ? sep : end;

		run_request(p, (size_t)(stop - p));
		p = sep != NULL ? sep + sizeof(separator) - 1 : end;
	}
	state_next();
	return 0;
}
