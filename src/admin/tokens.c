/*
 * API tokens, the audit log, and the first operator token.
 *
 * A token is "moat_<id>_<secret>": 8 random bytes of id as 16 lowercase hex digits (public:
 * it names the token in lists and the audit log) and 32 random bytes of secret as 43
 * characters of unpadded base64url. The store keeps only SHA-256 of the secret's text, so a
 * copy of the database lets nobody in; the hash is compared in constant time.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/log.h"

#define ID_BYTES 8
#define ID_LEN (2 * ID_BYTES)
#define SECRET_BYTES 32
#define SECRET_LEN 43 /* unpadded base64url of 32 bytes */
#define PREFIX "moat_"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define TOKEN_LEN (PREFIX_LEN + ID_LEN + 1 + SECRET_LEN)
/* last_used_at is written at most this often per token: reads should not all become writes */
#define TOUCH_EVERY_S 60
#define NAME_MAX_LEN 128
#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX 1000

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url of in[0..n) into out (4 * n / 3 rounded up, plus NUL). */
static void base64url(const unsigned char *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = b64url[v >> 18 & 63];
		out[o++] = b64url[v >> 12 & 63];
		out[o++] = b64url[v >> 6 & 63];
	}
	out[o] = '\0';
}

static void secret_hash(const char *secret, unsigned char hash[32])
{
	SHA256((const unsigned char *)secret, SECRET_LEN, hash);
}

int admin_token_make(struct moat_store_token *rec, char *text, size_t cap)
{
	unsigned char id[ID_BYTES], secret[SECRET_BYTES];
	char id_hex[ID_LEN + 1], secret_text[SECRET_LEN + 1];
	size_t i;
	int rc = MOAT_OK;

	if (cap < TOKEN_LEN + 1)
		return MOAT_EINVAL;
	if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1) {
		rc = MOAT_EIO;
		goto out;
	}
	for (i = 0; i < ID_BYTES; i++)
		snprintf(id_hex + 2 * i, 3, "%02x", id[i]);
	base64url(secret, sizeof(secret), secret_text);
	rec->id = moat_strdup(id_hex);
	if (rec->id == NULL) {
		rc = MOAT_ENOMEM;
		goto out;
	}
	secret_hash(secret_text, rec->hash);
	snprintf(text, cap, PREFIX "%s_%s", id_hex, secret_text);
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(secret_text, sizeof(secret_text));
	return rc;
}

static int is_hex_lower(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

static int is_b64url(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '_';
}

/* The token of an Authorization value ("Bearer <token>", the scheme in any case), checked for
 * the exact token syntax; NULL if it is not one. */
static const char *bearer_token(const char *auth)
{
	static const char scheme[] = "Bearer";
	const char *tok;
	size_t n, i;

	while (*auth == ' ' || *auth == '\t')
		auth++;
	if (strncasecmp(auth, scheme, sizeof(scheme) - 1) != 0)
		return NULL;
	auth += sizeof(scheme) - 1;
	if (*auth != ' ' && *auth != '\t')
		return NULL;
	while (*auth == ' ' || *auth == '\t')
		auth++;
	tok = auth;
	n = strlen(tok);
	while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		n--;
	if (n != TOKEN_LEN || memcmp(tok, PREFIX, PREFIX_LEN) != 0 ||
	    tok[PREFIX_LEN + ID_LEN] != '_')
		return NULL;
	for (i = 0; i < ID_LEN; i++) {
		if (!is_hex_lower(tok[PREFIX_LEN + i]))
			return NULL;
	}
	for (i = 0; i < SECRET_LEN; i++) {
		if (!is_b64url(tok[PREFIX_LEN + ID_LEN + 1 + i]))
			return NULL;
	}
	return tok;
}

int admin_token_verify(struct moat_admin_ctx *ctx, const char *authorization,
                       struct moat_store_token *out)
{
	unsigned char hash[32];
	char id[ID_LEN + 1];
	const char *tok;
	int64_t now;
	int rc;

	memset(out, 0, sizeof(*out));
	tok = authorization != NULL ? bearer_token(authorization) : NULL;
	if (tok == NULL)
		return MOAT_ENOTFOUND;
	memcpy(id, tok + PREFIX_LEN, ID_LEN);
	id[ID_LEN] = '\0';
	rc = moat_store_token_get(ctx->env.store, id, out);
	if (rc != MOAT_OK)
		return rc;
	secret_hash(tok + PREFIX_LEN + ID_LEN + 1, hash);
	if (CRYPTO_memcmp(hash, out->hash, sizeof(hash)) != 0) {
		moat_store_token_clear(out);
		return MOAT_ENOTFOUND;
	}
	now = (int64_t)time(NULL);
	if (now - out->last_used_at >= TOUCH_EVERY_S) {
		if (moat_store_token_touch(ctx->env.store, out->id, now) == MOAT_OK)
			out->last_used_at = now;
		else
			moat_log_warn("admin: recording the use of token %s: %s", out->id,
			              moat_store_error(ctx->env.store));
	}
	return MOAT_OK;
}

/* ---- the token endpoints ------------------------------------------------------------------- */

static json_t *token_json(const struct moat_store_token *t)
{
	return json_pack("{s:s, s:s, s:s?, s:o, s:o}", "id", t->id, "name", t->name, "tenant",
	                 t->tenant, "created_at", admin_time(t->created_at), "last_used_at",
	                 admin_time(t->last_used_at));
}

/* Inserts the token and its audit entry in one transaction. */
static int token_save(struct moat_admin_call *c, const struct moat_store_token *t)
{
	struct moat_store *s = c->ctx->env.store;
	int rc = moat_store_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_token_insert(s, t);
	if (rc == MOAT_OK)
		rc = admin_audit(c, "token.create", t->tenant, t->id,
		                 json_pack("{s:s}", "name", t->name));
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	return rc;
}

void admin_token_create(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"name", "tenant", NULL};
	struct moat_store_token t;
	const char *name = NULL, *tenant = NULL;
	char text[TOKEN_LEN + 1];
	json_t *obj;
	int rc;

	memset(&t, 0, sizeof(t));
	if (admin_operator_only(c) != 0 || admin_body_check(c, allowed, 0) != 0)
		return;
	rc = admin_body_string(c, "name", NAME_MAX_LEN, ADMIN_SYNTAX_TEXT, 0, &name);
	if (rc < 0)
		return;
	if (rc == 0 || name[0] == '\0') {
		admin_error(c, 400, "bad_request", "\"name\" is required");
		return;
	}
	if (admin_body_string(c, "tenant", 63, ADMIN_SYNTAX_TENANT, 1, &tenant) < 0)
		return;
	if (tenant != NULL && admin_tenant(c, tenant, 0, NULL, NULL) != 0)
		return;
	rc = admin_token_make(&t, text, sizeof(text));
	if (rc == MOAT_OK) {
		t.name = moat_strdup(name);
		t.tenant = tenant != NULL ? moat_strdup(tenant) : NULL;
		t.created_at = c->req->now_ms / 1000;
		if (t.name == NULL || (tenant != NULL && t.tenant == NULL))
			rc = MOAT_ENOMEM;
	}
	if (rc == MOAT_OK)
		rc = token_save(c, &t);
	if (rc == MOAT_ENOTFOUND) {
		/* the store ties a token to one of its own tenants */
		admin_error(c, 409, "conflict",
		            "tenant %s comes from the config file: the store cannot keep tokens "
		            "for it",
		            tenant != NULL ? tenant : "");
		goto out;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	obj = token_json(&t);
	if (obj != NULL)
		json_object_set_new(obj, "token", json_string(text));
	admin_reply(c, 201, obj);
out:
	OPENSSL_cleanse(text, sizeof(text));
	moat_store_token_clear(&t);
}

void admin_token_list(struct moat_admin_call *c)
{
	struct moat_store_token *v = NULL;
	json_t *items;
	size_t n = 0, i;
	int rc;

	if (admin_operator_only(c) != 0)
		return;
	rc = moat_store_token_list(c->ctx->env.store, NULL, &v, &n);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return;
	}
	items = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(items, token_json(&v[i]));
	moat_store_tokens_free(v, n);
	admin_reply(c, 200, json_pack("{s:o}", "items", items));
}

/* 1 if deleting t would leave no operator token (the caller is then that token). */
static int last_operator(struct moat_admin_call *c, const struct moat_store_token *t, int *rc)
{
	uint64_t n = 0;

	*rc = MOAT_OK;
	if (t->tenant != NULL)
		return 0;
	*rc = moat_store_token_count_operator(c->ctx->env.store, &n);
	return *rc == MOAT_OK && n <= 1;
}

void admin_token_delete(struct moat_admin_call *c)
{
	struct moat_store *s = c->ctx->env.store;
	struct moat_store_token t;
	const char *id = c->params[0];
	int rc;

	memset(&t, 0, sizeof(t));
	if (admin_operator_only(c) != 0)
		return;
	rc = moat_store_token_get(s, id, &t);
	if (rc == MOAT_ENOTFOUND) {
		admin_error(c, 404, "not_found", "no token %.64s", id);
		return;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return;
	}
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	if (last_operator(c, &t, &rc)) {
		moat_store_rollback(s);
		admin_error(c, 409, "conflict", "token %s is the last operator token", t.id);
		goto out;
	}
	if (rc == MOAT_OK)
		rc = moat_store_token_delete(s, t.id);
	if (rc == MOAT_OK)
		rc = admin_audit(c, "token.delete", t.tenant, t.id, NULL);
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK) {
		moat_store_rollback(s);
		if (rc == MOAT_ENOTFOUND)
			admin_error(c, 404, "not_found", "no token %.64s", id);
		else
			admin_store_error(c, rc);
		goto out;
	}
	admin_no_content(c);
out:
	moat_store_token_clear(&t);
}

/* ---- the audit log ------------------------------------------------------------------------- */

/* The detail's JSON text, moat_malloc'd; NULL when out of memory. */
static char *detail_text(const json_t *detail)
{
	size_t n = json_dumpb(detail, NULL, 0, JSON_COMPACT);
	char *s = n > 0 ? moat_malloc(n + 1) : NULL;

	if (s == NULL)
		return NULL;
	if (json_dumpb(detail, s, n, JSON_COMPACT) != n) {
		moat_free(s);
		return NULL;
	}
	s[n] = '\0';
	return s;
}

int admin_audit(struct moat_admin_call *c, const char *action, const char *tenant,
                const char *object, json_t *detail)
{
	struct moat_store_audit a;
	int rc;

	memset(&a, 0, sizeof(a));
	a.at = c->req->now_ms / 1000;
	a.actor = (char *)(c->token_id != NULL && c->token_id[0] != '\0' ? c->token_id : "moatd");
	a.source = (char *)(c->req->source != NULL ? c->req->source : "");
	a.tenant = (char *)tenant;
	a.action = (char *)action;
	a.object = (char *)object;
	if (detail != NULL) {
		a.detail = detail_text(detail);
		json_decref(detail);
		if (a.detail == NULL)
			return MOAT_ENOMEM;
	}
	rc = moat_store_audit_add(c->ctx->env.store, &a);
	moat_free(a.detail);
	return rc;
}

/* A decimal integer in [min, max]; -1 for anything else. */
static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (max - (*s - '0')) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

static json_t *audit_json(const struct moat_store_audit *a)
{
	json_t *detail = NULL;

	if (a->detail != NULL) {
		detail = json_loads(a->detail, 0, NULL);
		if (detail == NULL)
			detail = json_string(a->detail);
	}
	return json_pack("{s:I, s:o, s:s, s:s, s:s?, s:s, s:s, s:o}", "seq", (json_int_t)a->seq,
	                 "at", admin_time(a->at), "actor", a->actor, "source", a->source, "tenant",
	                 a->tenant, "action", a->action, "object", a->object, "detail",
	                 detail != NULL ? detail : json_null());
}

void admin_audit_list(struct moat_admin_call *c)
{
	struct moat_store_audit *v = NULL;
	int64_t limit = AUDIT_LIMIT_DEFAULT, before = 0;
	const char *q;
	char buf[32];
	json_t *items, *next;
	size_t n = 0, i;
	int rc;

	q = admin_query(c, "limit", buf, sizeof(buf));
	if (q != NULL && parse_int(q, 1, AUDIT_LIMIT_MAX, &limit) != 0) {
		admin_error(c, 400, "bad_request", "limit: expected 1 to %d", AUDIT_LIMIT_MAX);
		return;
	}
	q = admin_query(c, "before", buf, sizeof(buf));
	if (q != NULL && parse_int(q, 1, INT64_MAX, &before) != 0) {
		admin_error(c, 400, "bad_request", "before: expected a sequence number");
		return;
	}
	/* one more than asked tells whether a next page exists */
	rc = moat_store_audit_list(c->ctx->env.store, c->scope, before, (unsigned)limit + 1, &v,
	                           &n);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return;
	}
	items = json_array();
	for (i = 0; i < n && i < (size_t)limit; i++)
		json_array_append_new(items, audit_json(&v[i]));
	next = n > (size_t)limit ? json_integer((json_int_t)v[limit - 1].seq) : json_null();
	moat_store_audits_free(v, n);
	admin_reply(c, 200, json_pack("{s:o, s:o}", "items", items, "next", next));
}

/* ---- first start ------------------------------------------------------------------------- */

/* Writes the operator token where `make run` and moatctl find it; a file left from an earlier
 * store is replaced. */
static int write_token_file(const char *data_dir, const char *text)
{
	char path[4096], line[160];

	snprintf(path, sizeof(path), "%s/operator.token", data_dir);
	snprintf(line, sizeof(line), "%s\n", text);
	if (unlink(path) != 0 && access(path, F_OK) == 0)
		return MOAT_EIO;
	return moat_secret_write(path, line);
}

int moat_admin_bootstrap(struct moat_admin_ctx *ctx, char **token)
{
	struct moat_store *s = ctx->env.store;
	struct moat_store_token rec;
	struct moat_store_audit a;
	char text[128], path[4096];
	uint64_t n = 0;
	int rc;

	*token = NULL;
	memset(&rec, 0, sizeof(rec));
	rc = moat_store_token_count_operator(s, &n);
	if (rc != MOAT_OK || n > 0)
		return rc;
	rc = admin_token_make(&rec, text, sizeof(text));
	if (rc != MOAT_OK)
		return rc;
	rec.name = moat_strdup("operator");
	if (rec.name == NULL) {
		rc = MOAT_ENOMEM;
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a.at = (int64_t)time(NULL);
	a.actor = (char *)"moatd";
	a.source = (char *)"local";
	a.action = (char *)"token.create";
	a.object = rec.id;
	rc = moat_store_begin(s);
	if (rc != MOAT_OK)
		goto out;
	rc = moat_store_token_insert(s, &rec);
	if (rc == MOAT_OK)
		rc = moat_store_audit_add(s, &a);
	if (rc == MOAT_OK)
		rc = write_token_file(ctx->env.data_dir, text);
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK) {
		moat_store_rollback(s);
		snprintf(path, sizeof(path), "%s/operator.token", ctx->env.data_dir);
		unlink(path);
		goto out;
	}
	*token = moat_strdup(text);
	if (*token == NULL)
		rc = MOAT_ENOMEM;
out:
	OPENSSL_cleanse(text, sizeof(text));
	moat_store_token_clear(&rec);
	return rc;
}
