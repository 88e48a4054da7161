/*
 * Inside the admin API: the call being handled, the helpers every handler uses, and the
 * handlers the router dispatches to. One file per group of endpoints: tenants.c (tenants,
 * CAs), devices.c, rules.c, stats.c, tokens.c (tokens, audit), and core.c (routing,
 * authentication, errors, JSON helpers, health, version).
 */
#ifndef MOAT_ADMIN_INTERNAL_H
#define MOAT_ADMIN_INTERNAL_H

#include <jansson.h>

#include "admin/admin.h"
#include "tls/ca.h"

#define MOAT_ADMIN_MAX_PARAMS 3

struct moat_admin_ctx {
	struct moat_admin_env env;
	struct admin_failures *failures; /* failed authentications per address (core.c) */
	struct admin_signers *signers; /* the tenants' signing CAs, parsed (signers.c) */
};

/* One request being answered. */
struct moat_admin_call {
	struct moat_admin_ctx *ctx;
	const struct moat_admin_req *req;
	struct moat_admin_resp *resp;
	const char *token_id; /* the authenticated token's id ("" for unauthenticated routes) */
	const char *scope; /* NULL: operator; else the tenant a tenant token is limited to */
	const char *params[MOAT_ADMIN_MAX_PARAMS]; /* path parameters, in order ({t}, {id}) */
	json_t *body; /* the parsed body: a JSON object, or NULL when the request had none */
	const char *query; /* after '?', NULL if none */
};

typedef void (*moat_admin_handler)(struct moat_admin_call *c);

/* ---- answers (core.c) ------------------------------------------------------------------- */

/* An error answer: {"error": error, "detail": <printf>}. */
void admin_error(struct moat_admin_call *c, int status, const char *error, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* A JSON answer (takes the reference to obj). */
void admin_reply(struct moat_admin_call *c, int status, json_t *obj);
/* 204 No Content. */
void admin_no_content(struct moat_admin_call *c);
/* 500: the store failed (the reason goes to the error log, not to the client). */
void admin_store_error(struct moat_admin_call *c, int rc);

/* ---- the request body and query (core.c) --------------------------------------------------- */

/* Requires a JSON object body (c->body != NULL) whose keys are all in `allowed` (NULL-ended):
 * else answers 400 and returns -1. A missing body is accepted as {} when empty_ok. */
int admin_body_check(struct moat_admin_call *c, const char *const *allowed, int empty_ok);

/*
 * Typed body fields. Each returns 1 if present and valid, 0 if absent (or JSON null when
 * null_ok: *out NULL / unchanged), -1 after answering 400 for a wrong type or value.
 * Strings: at most maxlen bytes, no NUL, and (if pattern is not NULL) every byte in the
 * pattern's set — one of the ADMIN_SYNTAX_* names below.
 */
int admin_body_string(struct moat_admin_call *c, const char *key, size_t maxlen, int syntax,
                      int null_ok, const char **out);
int admin_body_int(struct moat_admin_call *c, const char *key, int64_t min, int64_t max,
                   int64_t *out);
int admin_body_bool(struct moat_admin_call *c, const char *key, int *out);
/* An array of strings, each as admin_body_string; at most maxn. Fills *out (caller clears). */
int admin_body_strv(struct moat_admin_call *c, const char *key, size_t maxn, size_t maxlen,
                    int syntax, struct moat_strv *out);

enum {
	ADMIN_SYNTAX_TEXT = 0, /* any printable UTF-8 (no control characters but \n \t in PEM) */
	ADMIN_SYNTAX_TENANT, /* [a-z0-9][a-z0-9-]{0,62} */
	ADMIN_SYNTAX_DEVICE_ID, /* [A-Za-z0-9._:-]{1,128} */
	ADMIN_SYNTAX_RULE_ID, /* [A-Za-z0-9_.:-]{1,64} */
	ADMIN_SYNTAX_TAG, /* [A-Za-z0-9._:-]{1,64} */
	ADMIN_SYNTAX_HOST, /* DNS name, optional leading "*." */
	ADMIN_SYNTAX_PEM, /* text with newlines */
};

/* 1 if s matches the syntax. */
int admin_syntax_ok(int syntax, const char *s);

/* A query parameter's value (percent-decoded into buf), NULL if absent. */
const char *admin_query(struct moat_admin_call *c, const char *name, char *buf, size_t cap);

/* ---- tenants and access (core.c) ---------------------------------------------------------- */

/*
 * The tenant named by the path, checked for the caller: exists (in the store, or the config
 * file: then *read_only = 1), and the token may see it. Otherwise answers 404 and returns -1.
 * With `write` set, a config tenant answers 409 {"error":"conflict","detail":"... read-only"}.
 * out may be NULL; else it is filled for store tenants (clear it).
 */
int admin_tenant(struct moat_admin_call *c, const char *name, int write,
                 struct moat_store_tenant *out, int *read_only);

/* 1 if a tenant of the config file has this name (the current generation's). */
int admin_config_tenant(const char *name);

/* Answers 403 and returns -1 unless the caller is an operator. */
int admin_operator_only(struct moat_admin_call *c);

/* Records a change in the audit log (in the caller's transaction). detail may be NULL
 * (stolen). Returns the store's result. */
int admin_audit(struct moat_admin_call *c, const char *action, const char *tenant,
                const char *object, json_t *detail);

/* After a commit: asks moatd for a new generation. */
void admin_changed(struct moat_admin_call *c);

/* After a commit that changed a tenant's rules or devices (MOAT_ADMIN_CHANGED_*): call it
 * before admin_changed, or the next generation keeps the previous rules / registry. */
void admin_tenant_changed(struct moat_admin_call *c, const char *tenant, unsigned what);

/* After a commit that changed one device: its entry is updated in the next generation. */
void admin_device_changed(struct moat_admin_call *c, const char *tenant, const char *device);

/* RFC 3339 UTC ("2026-11-23T18:04:00Z") of a Unix time; json null for 0. */
json_t *admin_time(int64_t t);

/* The edge CA (data_dir/edge-ca.crt and keys/edge-ca.key), created on first use. */
int admin_edge_ca(struct moat_admin_call *c, char **cert_pem, char **key_pem);

/* Key files: data_dir-relative path for a new key, "keys/<tenant>/<what>-<random>.key". */
void admin_key_path(struct moat_admin_call *c, const char *tenant, const char *what, char *rel,
                    size_t cap);
/* Room for a path under the data dir. */
#define ADMIN_PATH_CAP 4096

/* The absolute path of a data_dir-relative one. */
void admin_abs_path(struct moat_admin_call *c, const char *rel, char *abs, size_t cap);

/* ---- handlers ------------------------------------------------------------------------------ */

/* core.c */
void admin_health(struct moat_admin_call *c);
void admin_version(struct moat_admin_call *c);
/* tenants.c */
void admin_tenant_create(struct moat_admin_call *c);
void admin_tenant_list(struct moat_admin_call *c);
void admin_tenant_get(struct moat_admin_call *c);
void admin_tenant_update(struct moat_admin_call *c);
void admin_tenant_delete(struct moat_admin_call *c);
void admin_ca_list(struct moat_admin_call *c);
void admin_ca_create(struct moat_admin_call *c);
void admin_ca_delete(struct moat_admin_call *c);
/*
 * signers.c, for devices.c: the tenant's signing CA (the newest unexpired CA with a key), kept
 * parsed; cert_pem is allocated, the signer belongs to the context. Answers nothing:
 * MOAT_ENOTFOUND (no such CA: the caller answers 409), MOAT_EIO or MOAT_ENOMEM (500).
 */
int admin_signing_ca(struct moat_admin_call *c, const char *tenant,
                     const struct moat_ca_signer **signer, char **cert_pem);
/* Forgets the tenant's kept signers (a CA or the tenant deleted). */
void admin_signers_forget(struct admin_signers *s, const char *tenant);
struct admin_signers *admin_signers_new(void);
void admin_signers_free(struct admin_signers *s);
/* devices.c */
void admin_device_enroll(struct moat_admin_call *c);
void admin_device_list(struct moat_admin_call *c);
void admin_device_get(struct moat_admin_call *c);
void admin_device_update(struct moat_admin_call *c);
void admin_device_delete(struct moat_admin_call *c);
void admin_device_quarantine(struct moat_admin_call *c);
void admin_device_release(struct moat_admin_call *c);
void admin_device_revoke(struct moat_admin_call *c);
void admin_device_renew(struct moat_admin_call *c);
/* rules.c */
void admin_rule_create(struct moat_admin_call *c);
void admin_rule_list(struct moat_admin_call *c);
void admin_rule_get(struct moat_admin_call *c);
void admin_rule_update(struct moat_admin_call *c);
void admin_rule_delete(struct moat_admin_call *c);
void admin_rule_enable(struct moat_admin_call *c);
void admin_rule_disable(struct moat_admin_call *c);
void admin_rule_validate(struct moat_admin_call *c);
/* stats.c */
void admin_stats_tenant(struct moat_admin_call *c);
void admin_stats_device(struct moat_admin_call *c);
void admin_stats_rule(struct moat_admin_call *c);
/* tokens.c */
void admin_token_create(struct moat_admin_call *c);
void admin_token_list(struct moat_admin_call *c);
void admin_token_delete(struct moat_admin_call *c);
void admin_audit_list(struct moat_admin_call *c);
/* tokens.c, for core.c: checks "Bearer moat_<id>_<secret>"; fills the token on success.
 * Returns MOAT_OK, MOAT_ENOTFOUND (not a valid token), MOAT_EIO (store). */
int admin_token_verify(struct moat_admin_ctx *ctx, const char *authorization,
                       struct moat_store_token *out);
/* tokens.c: makes a token: fills rec (id, hash) and the full secret text to show once. */
int admin_token_make(struct moat_store_token *rec, char *text, size_t cap);

#endif
