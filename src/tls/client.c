/*
 * TLS towards origins: the client side of https:// and tls:// origins.
 */
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

static int is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *moat_tls_client_new(SSL_CTX *ctx, int fd, const char *host)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		goto fail;
	if (SSL_set_fd(ssl, fd) != 1)
		goto fail;
	SSL_set_connect_state(ssl);
	/* The origin's certificate must name the origin we were configured with: an address
	 * literal is checked against IP SANs, a name against DNS SANs (and sent as SNI). */
	if (is_ip_literal(host)) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
			goto fail;
	} else if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
		goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	ERR_clear_error();
	return NULL;
}

const char *moat_tls_client_error(SSL *ssl, unsigned long err)
{
	long vr = SSL_get_verify_result(ssl);
	const char *why;

	if (vr != X509_V_OK)
		return X509_verify_cert_error_string(vr);
	why = err ? ERR_reason_error_string(err) : NULL;
	return why ? why : "handshake failed";
}
