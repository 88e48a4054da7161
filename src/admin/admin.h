/*
 * The admin API (docs/api.md): JSON over HTTP/1.1 on the control thread's loop.
 *
 * Two layers: moat_admin_ctx handles one complete request (authentication, routing, the
 * handlers, the store) and knows nothing of sockets, so unit tests and the fuzz driver call it
 * directly; moat_admin_server accepts connections on the admin address, reads requests with
 * bounds and timeouts, and writes the answers.
 */
#ifndef MOAT_ADMIN_ADMIN_H
#define MOAT_ADMIN_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/common.h"
#include "core/stats.h"
#include "store/store.h"

#define MOAT_ADMIN_MAX_BODY (1024 * 1024)

/* What changed in a tenant, for moat_admin_env.tenant_changed. */
#define MOAT_ADMIN_CHANGED_RULES 1u
#define MOAT_ADMIN_CHANGED_DEVICES 2u

/* What the API needs from moatd. */
struct moat_admin_env {
	struct moat_store *store;
	const char *data_dir; /* keys/ and edge-ca.* live here */
	struct moat_stats *stats; /* NULL: statistics answer zeros */
	/* called after every committed change: publish a new generation soon (may be NULL) */
	void (*changed)(void *arg);
	/* called before `changed` when a tenant's rules or devices changed, so the next
	 * generation rebuilds only those (may be NULL) */
	void (*tenant_changed)(void *arg, const char *tenant, unsigned what);
	/* called before `changed` when one device changed (enrolled, updated, quarantined,
	 * revoked, renewed, deleted), so the next generation updates just that entry of the
	 * registry; NULL: tenant_changed(MOAT_ADMIN_CHANGED_DEVICES) is called instead */
	void (*device_changed)(void *arg, const char *tenant, const char *device);
	void *arg;
	int64_t started_at; /* Unix seconds, for health */
	const char *version;
};

/* One request, complete. Strings are NUL-terminated; body may hold any bytes. */
struct moat_admin_req {
	const char *method;
	const char *target; /* path and query, as sent: "/v1/tenants/acme/devices?limit=10" */
	const char *authorization; /* the header's value, NULL if absent */
	const char *content_type; /* NULL if absent */
	int has_length; /* a Content-Length was given (0 with a body: 411) */
	const char *body;
	size_t body_len;
	const char *source; /* client address, for the audit log and the failure limit */
	int64_t now_ms; /* Unix milliseconds */
};

struct moat_admin_resp {
	int status;
	char *body; /* JSON text (moat_malloc'd), NULL for no body (204) */
	size_t body_len;
	char allow[64]; /* 405: the Allow header's value */
	unsigned retry_after; /* 429: seconds, for Retry-After */
};

struct moat_admin_ctx;

/* env is copied; the store and stats stay the caller's. NULL when out of memory. */
struct moat_admin_ctx *moat_admin_ctx_new(const struct moat_admin_env *env);
void moat_admin_ctx_free(struct moat_admin_ctx *ctx);

/* Answers one request. Never fails: every problem is an HTTP status in resp. Free resp with
 * moat_admin_resp_clear. */
void moat_admin_handle(struct moat_admin_ctx *ctx, const struct moat_admin_req *req,
                       struct moat_admin_resp *resp);
void moat_admin_resp_clear(struct moat_admin_resp *resp);

/*
 * First start: if the store has no operator token, creates one, writes it to
 * data_dir/operator.token (0600) and returns it in *token (caller frees), else *token = NULL.
 */
int moat_admin_bootstrap(struct moat_admin_ctx *ctx, char **token) MOAT_WUR;

/* ---- the server -------------------------------------------------------------------------- */

struct moat_admin_server;

/*
 * Listens on `listen` ("127.0.0.1:9900", "[::1]:9900") on `loop`; TLS with cert and key (PEM
 * files) if both are given. Requests are answered by ctx. On failure *err says why (a
 * per-thread buffer, valid until the next start on the same thread).
 */
int moat_admin_server_start(uv_loop_t *loop, struct moat_admin_ctx *ctx, const char *listen,
                            const char *cert, const char *key, const char **err,
                            struct moat_admin_server **out) MOAT_WUR;

/* Stops listening and closes every connection; frees the server once libuv is done. */
void moat_admin_server_stop(struct moat_admin_server *s);

#endif
