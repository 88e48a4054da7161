/*
 * The store: tenants, device CAs, devices and their certificates, rules, API tokens and the
 * audit log. One narrow interface; the embedded backend is SQLite in the data directory
 * (src/store/sqlite.c). A PostgreSQL backend can implement the same functions over the same
 * schema (src/store/schema.sql is the reference).
 *
 * Only the control thread uses the store (the admin API, and building generations); the hot
 * path never does. Calls are synchronous. Every write either commits whole or leaves nothing:
 * a call is its own transaction unless the caller opened one with moat_store_begin, in which
 * case nothing is visible to readers before moat_store_commit.
 *
 * Results: MOAT_OK; MOAT_ENOTFOUND (no such object); MOAT_EEXIST (a duplicate key);
 * MOAT_EIO (the store failed: the reason is in moat_store_error); MOAT_ENOMEM.
 *
 * Strings in the records are NUL-terminated UTF-8. A record filled by a get/list call owns
 * its strings; free it with the matching _clear function. Times are Unix seconds.
 */
#ifndef MOAT_STORE_STORE_H
#define MOAT_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define MOAT_EEXIST (-9)

/* The schema version this binary writes. A store with a newer one is refused at open. */
#define MOAT_STORE_SCHEMA_VERSION 1

struct moat_store;

/* A list of strings (hosts, tags, paths). */
struct moat_strv {
	char **v;
	size_t n;
};

struct moat_store_tenant {
	char *name; /* [a-z0-9][a-z0-9-]{0,62} */
	struct moat_strv hosts; /* lower-cased SNI names; "*.x" for one-label wildcards */
	char *origin; /* "http://host:port" | "https://host:port" | NULL */
	char *tcp_origin; /* "tcp://host:port" | "tls://host:port" | NULL */
	char *origin_ca; /* PEM to verify a TLS origin; NULL: the system store */
	struct moat_strv quarantine_allow; /* path prefixes a quarantined device may still use */
	char *server_cert; /* PEM chain presented to devices */
	char *server_key_file; /* path of the 0600 PEM key, relative to the data dir */
	int server_cert_generated; /* 1: issued by the node's edge CA for `hosts` */
	int64_t created_at, updated_at;
};

struct moat_store_ca {
	int64_t id; /* assigned by the store */
	char *tenant;
	char *cert; /* PEM */
	char *key_file; /* relative to the data dir; NULL for a CA imported without its key */
	char *subject; /* one line, RFC 2253 */
	char *fingerprint; /* lowercase hex SHA-256 of the DER */
	int64_t not_after;
	int generated; /* 1: generated here, 0: imported */
	int64_t created_at;
};

enum moat_device_state {
	MOAT_DEVICE_ACTIVE = 0,
	MOAT_DEVICE_QUARANTINED,
	MOAT_DEVICE_REVOKED,
};

struct moat_store_device {
	char *tenant;
	char *id; /* [A-Za-z0-9._:-]{1,128}: the certificate's CN */
	char *model; /* NULL if unknown */
	char *firmware; /* NULL if unknown */
	struct moat_strv tags;
	char *owner; /* owner contact (e-mail, phone, URL), NULL if none */
	enum moat_device_state state;
	int64_t created_at, updated_at;
};

struct moat_store_cert {
	char *fingerprint; /* lowercase hex SHA-256 of the DER: the primary key */
	char *tenant;
	char *device;
	char *serial; /* uppercase hex */
	int64_t not_after;
	int64_t issued_at;
	int64_t revoked_at; /* 0 if not revoked */
};

struct moat_store_rule {
	char *tenant;
	char *id; /* [A-Za-z0-9_.:-]{1,64} */
	int64_t position; /* rules run in ascending position */
	char *name;
	char *expr;
	char *action; /* "block" | "log" | "allow" | "close" */
	char *mode; /* "enforce" | "dry-run" */
	char *scope; /* "http" | "tcp" */
	int status; /* block: HTTP status; 0 for the default (403) */
	char *body; /* block: response body; NULL for the default JSON */
	char *description, *reference; /* NULL if none */
	int enabled;
	int64_t created_at, updated_at;
};

struct moat_store_token {
	char *id; /* public part of the token: 16 lowercase hex digits */
	char *name;
	char *tenant; /* NULL: an operator token with every right */
	unsigned char hash[32]; /* SHA-256 of the secret part */
	int64_t created_at, last_used_at;
};

struct moat_store_audit {
	int64_t seq; /* assigned by the store, increasing */
	int64_t at;
	char *actor; /* token id, or "moatd" */
	char *source; /* client address */
	char *tenant; /* NULL if not tenant-scoped */
	char *action; /* "tenant.create", "device.revoke", ... */
	char *object; /* what was acted on: "acme", "acme/cam-0001", ... */
	char *detail; /* JSON text or NULL */
};

/* Filters and pagination for device lists. NULL / 0 fields do not filter. Devices come in id
 * order; `after` continues a previous page (the last id it returned). */
struct moat_store_device_filter {
	int state; /* -1: any; otherwise an enum moat_device_state */
	const char *model;
	const char *firmware;
	const char *tag;
	const char *after;
	unsigned limit; /* 1..1000 */
};

/* ---- the store itself ------------------------------------------------------------------- */

/*
 * Opens (creating it if needed, 0600) the store at `path` and applies the schema migrations
 * this binary knows, in one transaction. A store written by a newer binary is refused with
 * MOAT_EINVAL. On failure *err points to a static or store-owned message (valid until the next
 * call) and *out is NULL.
 */
int moat_store_open(const char *path, const char **err, struct moat_store **out) MOAT_WUR;
void moat_store_close(struct moat_store *s);

/* The last failure's message (never NULL). */
const char *moat_store_error(const struct moat_store *s);

/* The schema version of the open store. */
int moat_store_schema_version(struct moat_store *s);

/* Explicit transactions (not nested): everything between begin and commit is atomic. */
int moat_store_begin(struct moat_store *s) MOAT_WUR;
int moat_store_commit(struct moat_store *s) MOAT_WUR;
void moat_store_rollback(struct moat_store *s);

/* A counter that grows with every committed change: unchanged means nothing to rebuild. */
uint64_t moat_store_changes(struct moat_store *s);

/* Test hook: makes every later call fail with MOAT_EIO (1) or work again (0). */
void moat_store_fail(struct moat_store *s, int fail);

/* ---- records ------------------------------------------------------------------------------ */

void moat_strv_clear(struct moat_strv *v);
void moat_store_tenant_clear(struct moat_store_tenant *t);
void moat_store_ca_clear(struct moat_store_ca *c);
void moat_store_device_clear(struct moat_store_device *d);
void moat_store_cert_clear(struct moat_store_cert *c);
void moat_store_rule_clear(struct moat_store_rule *r);
void moat_store_token_clear(struct moat_store_token *t);
void moat_store_audit_clear(struct moat_store_audit *a);

const char *moat_device_state_name(enum moat_device_state s); /* "active", ... */
int moat_device_state_parse(const char *s); /* the enum, or -1 */

/* ---- tenants ------------------------------------------------------------------------------ */

/* created_at/updated_at are set by the store. MOAT_EEXIST if the name is taken. */
int moat_store_tenant_insert(struct moat_store *s, const struct moat_store_tenant *t) MOAT_WUR;
/* Replaces every field but name and created_at. */
int moat_store_tenant_update(struct moat_store *s, const struct moat_store_tenant *t) MOAT_WUR;
/* Deletes the tenant and everything it owns (CAs, devices, certificates, rules, tokens). */
int moat_store_tenant_delete(struct moat_store *s, const char *name) MOAT_WUR;
int moat_store_tenant_get(struct moat_store *s, const char *name,
                          struct moat_store_tenant *out) MOAT_WUR;
/* Every tenant in name order; free with moat_store_tenants_free. */
int moat_store_tenant_list(struct moat_store *s, struct moat_store_tenant **out,
                           size_t *n) MOAT_WUR;
void moat_store_tenants_free(struct moat_store_tenant *v, size_t n);

/* ---- device CAs --------------------------------------------------------------------------- */

/* Sets ca->id and created_at. MOAT_EEXIST if the tenant already has this fingerprint. */
int moat_store_ca_insert(struct moat_store *s, struct moat_store_ca *ca) MOAT_WUR;
int moat_store_ca_delete(struct moat_store *s, const char *tenant, int64_t id) MOAT_WUR;
/* A tenant's CAs, oldest first. */
int moat_store_ca_list(struct moat_store *s, const char *tenant, struct moat_store_ca **out,
                       size_t *n) MOAT_WUR;
void moat_store_cas_free(struct moat_store_ca *v, size_t n);

/* ---- devices and certificates ------------------------------------------------------------ */

int moat_store_device_insert(struct moat_store *s, const struct moat_store_device *d) MOAT_WUR;
/* Replaces model, firmware, tags, owner and state. */
int moat_store_device_update(struct moat_store *s, const struct moat_store_device *d) MOAT_WUR;
int moat_store_device_delete(struct moat_store *s, const char *tenant, const char *id) MOAT_WUR;
int moat_store_device_get(struct moat_store *s, const char *tenant, const char *id,
                          struct moat_store_device *out) MOAT_WUR;
/* One page of a tenant's devices; *more is 1 if devices follow the page. */
int moat_store_device_list(struct moat_store *s, const char *tenant,
                           const struct moat_store_device_filter *f, struct moat_store_device **out,
                           size_t *n, int *more) MOAT_WUR;
void moat_store_devices_free(struct moat_store_device *v, size_t n);
int moat_store_device_count(struct moat_store *s, const char *tenant, uint64_t *n) MOAT_WUR;

/* Every device of a tenant in id order, streamed (building a generation): fn returns 0 to go
 * on, anything else stops the walk and is returned. The record is valid during the call. */
typedef int (*moat_store_device_fn)(void *arg, const struct moat_store_device *d);
int moat_store_device_each(struct moat_store *s, const char *tenant, moat_store_device_fn fn,
                           void *arg) MOAT_WUR;

int moat_store_cert_insert(struct moat_store *s, const struct moat_store_cert *c) MOAT_WUR;
/* A device's certificates, newest first. */
int moat_store_cert_list(struct moat_store *s, const char *tenant, const char *device,
                         struct moat_store_cert **out, size_t *n) MOAT_WUR;
void moat_store_certs_free(struct moat_store_cert *v, size_t n);
/* Marks every unrevoked certificate of the device revoked at `at`. */
int moat_store_cert_revoke_device(struct moat_store *s, const char *tenant, const char *device,
                                  int64_t at) MOAT_WUR;
/* Every revoked certificate of a tenant, streamed, fingerprint order. */
typedef int (*moat_store_cert_fn)(void *arg, const struct moat_store_cert *c);
int moat_store_cert_each_revoked(struct moat_store *s, const char *tenant, moat_store_cert_fn fn,
                                 void *arg) MOAT_WUR;

/* ---- rules -------------------------------------------------------------------------------- */

/* If r->position is 0 the rule goes last (largest position + 10). MOAT_EEXIST on a taken id. */
int moat_store_rule_insert(struct moat_store *s, const struct moat_store_rule *r) MOAT_WUR;
/* Replaces every field but tenant, id and created_at. */
int moat_store_rule_update(struct moat_store *s, const struct moat_store_rule *r) MOAT_WUR;
int moat_store_rule_delete(struct moat_store *s, const char *tenant, const char *id) MOAT_WUR;
int moat_store_rule_get(struct moat_store *s, const char *tenant, const char *id,
                        struct moat_store_rule *out) MOAT_WUR;
/* A tenant's rules in position order (then id). */
int moat_store_rule_list(struct moat_store *s, const char *tenant, struct moat_store_rule **out,
                         size_t *n) MOAT_WUR;
void moat_store_rules_free(struct moat_store_rule *v, size_t n);

/* ---- API tokens --------------------------------------------------------------------------- */

int moat_store_token_insert(struct moat_store *s, const struct moat_store_token *t) MOAT_WUR;
int moat_store_token_delete(struct moat_store *s, const char *id) MOAT_WUR;
int moat_store_token_get(struct moat_store *s, const char *id,
                         struct moat_store_token *out) MOAT_WUR;
/* Every token (tenant NULL) or a tenant's tokens, by creation. */
int moat_store_token_list(struct moat_store *s, const char *tenant, struct moat_store_token **out,
                          size_t *n) MOAT_WUR;
void moat_store_tokens_free(struct moat_store_token *v, size_t n);
int moat_store_token_touch(struct moat_store *s, const char *id, int64_t at) MOAT_WUR;
/* The number of operator tokens (first start creates one when there is none). */
int moat_store_token_count_operator(struct moat_store *s, uint64_t *n) MOAT_WUR;

/* ---- audit log ---------------------------------------------------------------------------- */

/* Sets a->seq. */
int moat_store_audit_add(struct moat_store *s, struct moat_store_audit *a) MOAT_WUR;
/* Newest first; tenant NULL: every entry; before 0: from the newest, else seq < before.
 * limit 1..1001 (a page of at most 1000, and one more to tell whether another follows). */
int moat_store_audit_list(struct moat_store *s, const char *tenant, int64_t before, unsigned limit,
                          struct moat_store_audit **out, size_t *n) MOAT_WUR;
void moat_store_audits_free(struct moat_store_audit *v, size_t n);

#endif
