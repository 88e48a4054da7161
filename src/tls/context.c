/*
 * TLS contexts for device connections.
 *
 * Tenant selection happens in the ClientHello callback, the first thing OpenSSL runs on a new
 * handshake, before session tickets or PSKs are looked at: the SSL object is moved to the
 * tenant's context (certificate, CAs, verification mode, session id context) so that every later
 * step, resumption included, is judged under that tenant. Session tickets are encrypted with
 * per-tenant keys and carry the tenant name; a ticket from another tenant fails to decrypt and,
 * should it ever decrypt, is still ignored. This is the defence against cross-tenant session
 * resumption (the class of nginx's CVE-2025-23419).
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "tls/tls.h"

static int conn_idx = -1;
static int listener_idx = -1;

int moat_tls_init(void)
{
	conn_idx = SSL_get_ex_new_index(0, "moat conn", NULL, NULL, NULL);
	listener_idx = SSL_CTX_get_ex_new_index(0, "moat listener", NULL, NULL, NULL);
	return conn_idx >= 0 && listener_idx >= 0 ? MOAT_OK : MOAT_ENOMEM;
}

void moat_tls_conn_attach(SSL *ssl, struct moat_tls_conn *t)
{
	SSL_set_ex_data(ssl, conn_idx, t);
}

static struct moat_tls_conn *conn_of(SSL *ssl)
{
	return SSL_get_ex_data(ssl, conn_idx);
}

static void report_ssl(moat_config_report_fn report, void *arg, const char *file, unsigned line,
                       const char *what, const char *path)
{
	char msg[512];
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	snprintf(msg, sizeof(msg), "%s: cannot load %s: %s", what, path,
	         why ? why : "invalid or empty file");
	ERR_clear_error();
	report(arg, file, line, msg);
}

/* Verification: in optional mode a failed certificate does not end the handshake; the result
 * stays in the session (SSL_get_verify_result) and reaches the origin as FAILED:<reason>. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct moat_tls_conn *t = ssl ? conn_of(ssl) : NULL;

	if (t == NULL || t->tenant == NULL)
		return ok;
	if (!ok && t->tenant->cfg->mtls == MOAT_MTLS_OPTIONAL)
		return 1;
	return ok;
}

static int set_common_options(SSL_CTX *ctx)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		return -1;
	/* Many device TLS stacks end a connection with a bare FIN, no close_notify: take it as
	 * the end of the stream. HTTP framing still tells a cut-short request, and a TCP stream
	 * has no other end marker anyway. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                                 SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Stateless tickets only: no server-side cache to share or lock between workers. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 1);
	if (!SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384"))
		return -1;
	return 0;
}

/* Every certificate of a PEM text into store (and their subjects into names, if given).
 * Returns the number added, -1 on a damaged text. */
static int add_pem_certs(const char *pem, X509_STORE *store, STACK_OF(X509_NAME) * names)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int n = 0;

	if (b == NULL)
		return -1;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_NAME *nm = names != NULL ? X509_NAME_dup(X509_get_subject_name(x)) : NULL;

		if (!X509_STORE_add_cert(store, x) ||
		    (names != NULL && (nm == NULL || !sk_X509_NAME_push(names, nm)))) {
			X509_NAME_free(nm);
			X509_free(x);
			BIO_free(b);
			return -1;
		}
		X509_free(x);
		n++;
	}
	BIO_free(b);
	ERR_clear_error(); /* the end of the text reads as "no start line" */
	return n;
}

/* A certificate chain from PEM text: the first is the leaf, the rest go to the chain. */
static int use_chain_pem(SSL_CTX *ctx, const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int ok;

	if (b == NULL)
		return -1;
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
	X509_free(x);
	while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		ok = SSL_CTX_add0_chain_cert(ctx, x) == 1;
		if (!ok)
			X509_free(x);
	}
	BIO_free(b);
	if (ok)
		ERR_clear_error();
	return ok ? 0 : -1;
}

static int load_cas(struct moat_tenant *t, SSL_CTX *ctx, const char *file,
                    moat_config_report_fn report, void *arg)
{
	const struct moat_config_tenant *c = t->cfg;
	X509_STORE *store = X509_STORE_new();
	STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
	int rc = -1;

	if (store == NULL || names == NULL)
		goto out;
	if (c->device_ca_pem != NULL && add_pem_certs(c->device_ca_pem, store, names) <= 0) {
		report(arg, file, c->line, "device CAs: cannot load the store's certificates");
		goto out;
	}
	for (size_t i = 0; i < c->ndevice_cas; i++) {
		if (!X509_STORE_load_file(store, c->device_cas[i]) ||
		    !SSL_add_file_cert_subjects_to_stack(names, c->device_cas[i])) {
			report_ssl(report, arg, file, c->device_ca_line, "device_ca",
			           c->device_cas[i]);
			goto out;
		}
	}
	if (c->crl != NULL) {
		BIO *b = BIO_new_file(c->crl, "r");
		X509_CRL *crl;

		if (b == NULL) {
			report_ssl(report, arg, file, c->crl_line, "crl", c->crl);
			goto out;
		}
		while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
			X509_CRL **n = OPENSSL_realloc(t->crls, (t->ncrls + 1) * sizeof(*n));

			if (n == NULL || !X509_STORE_add_crl(store, crl)) {
				X509_CRL_free(crl);
				BIO_free(b);
				goto out;
			}
			t->crls = n;
			t->crls[t->ncrls++] = crl;
		}
		BIO_free(b);
		{
			/* the loop ends at the end of the file ("no start line"); anything else
			 * is a damaged CRL that must not be half-loaded */
			unsigned long e = ERR_peek_last_error();

			if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM &&
			                ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
				report_ssl(report, arg, file, c->crl_line, "crl", c->crl);
				goto out;
			}
		}
		ERR_clear_error();
		if (t->ncrls == 0) {
			report_ssl(report, arg, file, c->crl_line, "crl", c->crl);
			goto out;
		}
		/* The leaf is checked against the CRL; intermediates need their own CRLs only if
		 * the operator supplies them, which CRL_CHECK_ALL would otherwise demand. */
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	SSL_CTX_set_cert_store(ctx, store); /* the context owns it now */
	store = NULL;
	SSL_CTX_set_client_CA_list(ctx, names);
	names = NULL;
	rc = 0;
out:
	X509_STORE_free(store);
	sk_X509_NAME_pop_free(names, X509_NAME_free);
	return rc;
}

int moat_tls_tenant_ctx(struct moat_tenant *t, const char *file, moat_config_report_fn report,
                        void *arg)
{
	const struct moat_config_tenant *c = t->cfg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	unsigned char sid[SHA256_DIGEST_LENGTH];

	if (ctx == NULL || set_common_options(ctx) < 0) {
		report(arg, file, c->line, "cannot create TLS context");
		SSL_CTX_free(ctx);
		return MOAT_ENOMEM;
	}
	if (c->cert_pem != NULL) {
		if (use_chain_pem(ctx, c->cert_pem) < 0) {
			report_ssl(report, arg, file, c->line, "server certificate", "(store)");
			goto fail;
		}
	} else if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
		report_ssl(report, arg, file, c->cert_line, "cert", c->cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
		report_ssl(report, arg, file, c->key_line, "key", c->key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		report(arg, file, c->key_line, "key: does not match the certificate in cert");
		ERR_clear_error();
		goto fail;
	}
	if (load_cas(t, ctx, file, report, arg) < 0)
		goto fail;
	SSL_CTX_set_verify(ctx,
	                   c->mtls == MOAT_MTLS_REQUIRE
	                           ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
	                           : SSL_VERIFY_PEER,
	                   verify_cb);
	SSL_CTX_set_verify_depth(ctx, 8);
	/* A distinct session id context per tenant: OpenSSL refuses to resume a session whose
	 * context differs, a second line of defence behind the per-tenant ticket keys. */
	SHA256((const unsigned char *)c->name, strlen(c->name), sid);
	if (!SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid)))
		goto fail;
	t->ssl_ctx = ctx;
	return MOAT_OK;
fail:
	SSL_CTX_free(ctx);
	return MOAT_EINVAL;
}

int moat_tls_origin_ctx(struct moat_tenant *t, const char *file, moat_config_report_fn report,
                        void *arg)
{
	const struct moat_config_tenant *c = t->cfg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		SSL_CTX_free(ctx);
		return MOAT_ENOMEM;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (c->origin_ca_pem != NULL) {
		if (add_pem_certs(c->origin_ca_pem, SSL_CTX_get_cert_store(ctx), NULL) <= 0) {
			report(arg, file, c->line,
			       "origin_ca: cannot load the store's certificates");
			SSL_CTX_free(ctx);
			return MOAT_EINVAL;
		}
	} else if (c->origin_ca != NULL) {
		if (SSL_CTX_load_verify_file(ctx, c->origin_ca) != 1) {
			report_ssl(report, arg, file, c->origin_ca_line, "origin_ca", c->origin_ca);
			SSL_CTX_free(ctx);
			return MOAT_EINVAL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		report(arg, file, c->origin ? c->origin_line : c->tcp_origin_line,
		       "origin: cannot load the system CA store");
		SSL_CTX_free(ctx);
		return MOAT_EINVAL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	t->origin_ctx = ctx;
	return MOAT_OK;
}

/* Extracts the host_name from a raw server_name extension (RFC 6066 section 3). */
static int parse_sni(const unsigned char *p, size_t len, char *out, size_t cap)
{
	size_t list, n;

	if (len < 2)
		return -1;
	list = ((size_t)p[0] << 8) | p[1];
	if (list != len - 2 || list < 3 || p[2] != TLSEXT_NAMETYPE_host_name)
		return -1;
	n = ((size_t)p[3] << 8) | p[4];
	if (n == 0 || n + 3 > list || n >= cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = p[5 + i];

		/* Host names only: letters, digits, '-', '.', '_'; refuse anything that could
		 * confuse a log line or a header. */
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
			return -1;
		out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
	}
	out[n] = '\0';
	return 0;
}

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	struct moat_listener *l = arg;
	struct moat_tls_conn *t = conn_of(ssl);
	const unsigned char *ext;
	size_t len;
	struct moat_tenant *tenant = NULL;

	if (t == NULL) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (t->tenant != NULL) /* a second ClientHello (HelloRetryRequest): already chosen */
		return SSL_CLIENT_HELLO_SUCCESS;
	t->sni[0] = '\0';
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len)) {
		if (parse_sni(ext, len, t->sni, sizeof(t->sni)) < 0) {
			t->refusal = "malformed server name";
			*al = SSL_AD_DECODE_ERROR;
			return SSL_CLIENT_HELLO_ERROR;
		}
		tenant = moat_gen_tenant_by_sni(l->gen, t->sni, strlen(t->sni));
	}
	if (tenant == NULL)
		tenant = l->default_tenant;
	if (tenant == NULL) {
		t->refusal = t->sni[0] ? "unknown server name and no default_tenant"
		                       : "no server name and no default_tenant";
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	t->tenant = tenant;
	if (SSL_set_SSL_CTX(ssl, tenant->ssl_ctx) == NULL) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	/* SSL_set_SSL_CTX moves certificate and session id context but not the verification
	 * mode, which was copied from the listener's context at SSL_new. */
	SSL_set_verify(ssl, SSL_CTX_get_verify_mode(tenant->ssl_ctx), verify_cb);
	SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(tenant->ssl_ctx));
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* Ticket keys: tickets are sealed under the tenant chosen from this handshake's SNI. Any
 * ticket not sealed under that tenant's key is unknown (return 0: full handshake). */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct moat_tls_conn *t = conn_of(ssl);
	const struct moat_tenant *tenant = t ? t->tenant : NULL;
	OSSL_PARAM params[2];

	if (tenant == NULL)
		return enc ? -1 : 0;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (enc) {
		if (RAND_bytes(iv, 16) != 1)
			return -1;
		memcpy(key_name, tenant->ticket_name, 16);
		if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, tenant->ticket_aes, iv) != 1)
			return -1;
	} else {
		if (CRYPTO_memcmp(key_name, tenant->ticket_name, 16) != 0)
			return 0;
		if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, tenant->ticket_aes, iv) != 1)
			return -1;
	}
	if (EVP_MAC_init(hctx, tenant->ticket_hmac, sizeof(tenant->ticket_hmac), params) != 1)
		return -1;
	return 1;
}

/* Ticket application data: the tenant name and its trust digest. */
static size_t ticket_appdata(const struct moat_tenant *t, unsigned char *buf, size_t cap)
{
	size_t n = strlen(t->cfg->name);

	if (n + 1 + sizeof(t->trust_digest) > cap)
		return 0;
	memcpy(buf, t->cfg->name, n);
	buf[n] = '\0';
	memcpy(buf + n + 1, t->trust_digest, sizeof(t->trust_digest));
	return n + 1 + sizeof(t->trust_digest);
}

static int ticket_gen_cb(SSL *ssl, void *arg)
{
	struct moat_tls_conn *t = conn_of(ssl);
	SSL_SESSION *sess = SSL_get0_session(ssl);
	unsigned char data[128];
	size_t len;

	if (t == NULL || t->tenant == NULL || sess == NULL)
		return 0;
	len = ticket_appdata(t->tenant, data, sizeof(data));
	return len > 0 && SSL_SESSION_set1_ticket_appdata(sess, data, len);
}

/* A ticket that decrypted is used only if it was issued under this tenant with the same trust
 * settings, and its certificate is neither revoked nor expired now: resumption must never
 * skip a check the full handshake would make. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname,
                                       size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	struct moat_tls_conn *t = conn_of(ssl);
	unsigned char want[128];
	size_t want_len, len = 0;
	void *data = NULL;
	X509 *peer;

	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return status == SSL_TICKET_FATAL_ERR_MALLOC || status == SSL_TICKET_FATAL_ERR_OTHER
		               ? SSL_TICKET_RETURN_ABORT
		               : SSL_TICKET_RETURN_IGNORE_RENEW;
	if (t == NULL || t->tenant == NULL)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	want_len = ticket_appdata(t->tenant, want, sizeof(want));
	if (!SSL_SESSION_get0_ticket_appdata(sess, &data, &len) || data == NULL || want_len == 0 ||
	    len != want_len || CRYPTO_memcmp(data, want, len) != 0)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	peer = SSL_SESSION_get0_peer(sess);
	if (peer != NULL && (moat_tenant_cert_revoked(t->tenant, peer) ||
	                     X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0))
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

int moat_tls_listener_ctx(struct moat_listener *l)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL || set_common_options(ctx) < 0)
		goto fail;
	SSL_CTX_set_ex_data(ctx, listener_idx, l);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, l);
	/* Ticket handling runs on the context the handshake started with, so the callbacks live
	 * here and find the tenant through the connection. */
	if (!SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb))
		goto fail;
	if (!SSL_CTX_set_session_ticket_cb(ctx, ticket_gen_cb, ticket_dec_cb, NULL))
		goto fail;
	/* HTTP listeners speak http/1.1; TCP listeners carry any protocol and select none */
	if (l->cfg->protocol == MOAT_PROTO_HTTP)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	if (!SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"moat-listener", 13))
		goto fail;
	l->ssl_ctx = ctx;
	return MOAT_OK;
fail:
	SSL_CTX_free(ctx);
	return MOAT_ENOMEM;
}

const char *moat_tls_handshake_error(SSL *ssl, struct moat_tls_conn *t, unsigned long err,
                                     char *buf, size_t cap)
{
	long vr;

	if (t != NULL && t->refusal != NULL)
		return t->refusal;
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK)
		return X509_verify_cert_error_string(vr);
	if (err != 0) {
		const char *r = ERR_reason_error_string(err);

		snprintf(buf, cap, "%s", r ? r : "tls error");
		return buf;
	}
	return "connection closed during handshake";
}
