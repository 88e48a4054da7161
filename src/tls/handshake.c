/*
 * The device side of a handshake, shared by every listener protocol: drive it, then derive
 * the identity, and say in one log line why a device was refused.
 */
#include <stdio.h>

#include "core/log.h"
#include "tls/tls.h"

int moat_tls_device_handshake(struct moat_sock *s, struct moat_tls_conn *t,
                              struct moat_identity *id, const struct moat_peer *peer, int *resumed)
{
	int r = moat_sock_handshake(s);
	const char *reason = NULL;
	char buf[160];

	if (r == MOAT_EAGAIN)
		return MOAT_EAGAIN;
	if (r != MOAT_OK) {
		reason = moat_tls_handshake_error(s->ssl, t, s->ssl_err, buf, sizeof(buf));
		moat_log_warn("tls handshake refused: listener=%s remote=%s:%u sni=%s tenant=%s "
		              "reason=\"%s\"",
		              peer->listener, peer->ip, peer->port, t->sni[0] ? t->sni : "-",
		              t->tenant ? t->tenant->cfg->name : "-", reason);
		return MOAT_EIO;
	}
	*resumed = SSL_session_reused(s->ssl) ? 1 : 0;
	if (moat_tls_identity(s->ssl, t->tenant, id, &reason) != MOAT_OK) {
		moat_log_warn("tls handshake refused: listener=%s remote=%s:%u sni=%s tenant=%s "
		              "reason=\"%s\"%s",
		              peer->listener, peer->ip, peer->port, t->sni[0] ? t->sni : "-",
		              t->tenant->cfg->name, reason ? reason : "identity",
		              *resumed ? " (resumed session)" : "");
		return MOAT_EIO;
	}
	moat_log_debug("device connected: listener=%s tenant=%s device=%s remote=%s:%u %s%s",
	               peer->listener, t->tenant->cfg->name, id->device_id[0] ? id->device_id : "-",
	               peer->ip, peer->port, SSL_get_version(s->ssl), *resumed ? " resumed" : "");
	return MOAT_OK;
}
