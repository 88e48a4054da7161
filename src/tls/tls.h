/*
 * TLS for device connections: one accepting context per listener whose ClientHello callback
 * selects the tenant by SNI before anything else is negotiated, per-tenant contexts that carry
 * the certificate and verification policy, and session tickets bound to their tenant.
 */
#ifndef MOAT_TLS_TLS_H
#define MOAT_TLS_TLS_H

#include <openssl/ssl.h>

#include "core/common.h"
#include "core/gen.h"
#include "core/sock.h"

enum moat_cert_status { MOAT_CERT_NONE = 0, MOAT_CERT_SUCCESS, MOAT_CERT_FAILED };

/* Per-connection TLS facts, reachable from the SSL object through ex_data. */
struct moat_tls_conn {
	struct moat_listener *listener;
	struct moat_tenant *tenant; /* chosen from SNI, or the listener's default */
	char sni[256]; /* empty if none was sent */
	const char *refusal; /* why the handshake was refused, for the log */
	char refusal_buf[160];
};

/* Device identity, computed once per connection after the handshake. */
struct moat_identity {
	enum moat_cert_status status;
	const char *fail_reason; /* MOAT_CERT_FAILED: the verification error */
	char device_id[257]; /* empty without a verified certificate */
	char fingerprint[65]; /* lowercase hex SHA-256 of the DER */
	char serial[130]; /* uppercase hex, two digits per byte */
	int has_cert;
};

/* Process-wide setup: ex_data indices. Call once before building contexts. */
int moat_tls_init(void) MOAT_WUR;

/* Builds the tenant's server context. Reports errors against the config lines. */
int moat_tls_tenant_ctx(struct moat_tenant *t, const char *file, moat_config_report_fn report,
                        void *arg) MOAT_WUR;

/* Builds the client context towards an https origin. */
int moat_tls_origin_ctx(struct moat_tenant *t, const char *file, moat_config_report_fn report,
                        void *arg) MOAT_WUR;

/* Builds a listener's accepting context. */
int moat_tls_listener_ctx(struct moat_listener *l) MOAT_WUR;

/* Attaches the per-connection state to a new SSL object. */
void moat_tls_conn_attach(SSL *ssl, struct moat_tls_conn *t);

/*
 * After a completed handshake: fills `id` from the peer certificate under the tenant's policy
 * and rechecks revocation (a resumed session skips certificate verification, so a device
 * revoked since its full handshake is caught here). Returns MOAT_OK, or MOAT_EINVAL with
 * *reason when the connection must be closed.
 */
int moat_tls_identity(SSL *ssl, const struct moat_tenant *t, struct moat_identity *id,
                      const char **reason) MOAT_WUR;

/* Who is on the other end, for log lines. */
struct moat_peer {
	const char *listener;
	const char *ip;
	unsigned port;
};

/*
 * Advances a device's handshake on s. When it completes, fills `id` (moat_tls_identity) and
 * *resumed. Returns MOAT_OK, MOAT_EAGAIN, or MOAT_EIO when the device is refused — the reason
 * has then been logged, and the caller only closes.
 */
int moat_tls_device_handshake(struct moat_sock *s, struct moat_tls_conn *t,
                              struct moat_identity *id, const struct moat_peer *peer,
                              int *resumed) MOAT_WUR;

/* A client SSL object on fd towards an origin named `host` (name or address literal): sends
 * SNI for names and verifies the certificate names the host. NULL on failure. */
SSL *moat_tls_client_new(SSL_CTX *ctx, int fd, const char *host);

/* Why a handshake with an origin failed. */
const char *moat_tls_client_error(SSL *ssl, unsigned long err);

/* A short reason for a failed handshake, for the one log line that says why. */
const char *moat_tls_handshake_error(SSL *ssl, struct moat_tls_conn *t, unsigned long err,
                                     char *buf, size_t cap);

#endif
