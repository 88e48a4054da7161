/*
 * Device identity from the peer certificate: device id, SHA-256 fingerprint and serial.
 */
#include <string.h>

#include <openssl/x509v3.h>

#include "tls/tls.h"

static const char hexl[] = "0123456789abcdef";
static const char hexu[] = "0123456789ABCDEF";

/* A device id becomes a header value and a log field: printable ASCII only, no quotes or
 * backslashes that would need escaping downstream. */
static int valid_id(const unsigned char *s, size_t n)
{
	if (n == 0 || n > 256)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
			return 0;
	return 1;
}

static int id_from_cn(X509 *cert, char *out, size_t cap)
{
	X509_NAME *subj = X509_get_subject_name(cert);
	int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n, rc = -1;

	/* Exactly one CN: with two, which one is "the" identity would be a guess. */
	if (i < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, i) >= 0)
		return -1;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
	if (n > 0 && (size_t)n < cap && valid_id(utf8, (size_t)n)) {
		memcpy(out, utf8, (size_t)n);
		out[n] = '\0';
		rc = 0;
	}
	OPENSSL_free(utf8);
	return rc;
}

static int id_from_san(X509 *cert, int type, char *out, size_t cap)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int rc = -1;

	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const ASN1_STRING *s;
		int n;

		if (g->type != type)
			continue;
		s = type == GEN_URI ? g->d.uniformResourceIdentifier : g->d.dNSName;
		n = ASN1_STRING_length(s);
		if (n > 0 && (size_t)n < cap && valid_id(ASN1_STRING_get0_data(s), (size_t)n)) {
			memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
			out[n] = '\0';
			rc = 0;
		}
		break; /* the first name of the type is the identity */
	}
	GENERAL_NAMES_free(names);
	return rc;
}

int moat_tls_identity(SSL *ssl, const struct moat_tenant *t, struct moat_identity *id,
                      const char **reason)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const ASN1_INTEGER *serial;
	long vr;
	int rc;

	memset(id, 0, sizeof(*id));
	if (cert == NULL) {
		id->status = MOAT_CERT_NONE;
		if (t->cfg->mtls == MOAT_MTLS_REQUIRE) {
			*reason = "no client certificate";
			return MOAT_EINVAL;
		}
		return MOAT_OK;
	}
	id->has_cert = 1;
	if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1)
		return MOAT_ENOMEM;
	for (unsigned i = 0; i < mdlen && i < 32; i++) {
		id->fingerprint[2 * i] = hexl[md[i] >> 4];
		id->fingerprint[2 * i + 1] = hexl[md[i] & 15];
	}
	serial = X509_get0_serialNumber(cert);
	for (int i = 0; i < ASN1_STRING_length(serial) && i < 64; i++) {
		unsigned char b = ASN1_STRING_get0_data(serial)[i];

		id->serial[2 * i] = hexu[b >> 4];
		id->serial[2 * i + 1] = hexu[b & 15];
	}
	/* A resumed session skipped verification: judge it against today's revocation lists. */
	if (moat_tenant_cert_revoked(t, cert)) {
		if (t->cfg->mtls == MOAT_MTLS_REQUIRE) {
			*reason = "certificate revoked";
			return MOAT_EINVAL;
		}
		id->status = MOAT_CERT_FAILED;
		id->fail_reason = "certificate revoked";
		return MOAT_OK;
	}
	vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK) {
		id->status = MOAT_CERT_FAILED;
		id->fail_reason = X509_verify_cert_error_string(vr);
		if (t->cfg->mtls == MOAT_MTLS_REQUIRE) {
			*reason = id->fail_reason;
			return MOAT_EINVAL;
		}
		return MOAT_OK;
	}
	switch (t->cfg->device_id) {
	case MOAT_DEVID_SAN_URI:
		rc = id_from_san(cert, GEN_URI, id->device_id, sizeof(id->device_id));
		break;
	case MOAT_DEVID_SAN_DNS:
		rc = id_from_san(cert, GEN_DNS, id->device_id, sizeof(id->device_id));
		break;
	default:
		rc = id_from_cn(cert, id->device_id, sizeof(id->device_id));
		break;
	}
	if (rc < 0) {
		id->device_id[0] = '\0';
		id->status = MOAT_CERT_FAILED;
		id->fail_reason = "certificate carries no usable device id";
		if (t->cfg->mtls == MOAT_MTLS_REQUIRE) {
			*reason = id->fail_reason;
			return MOAT_EINVAL;
		}
		return MOAT_OK;
	}
	/* A tenant made through the admin API admits only the devices of its registry. */
	if (moat_devices_refusal(t->devices, id->device_id) != NULL) {
		*reason = moat_devices_refusal(t->devices, id->device_id);
		return MOAT_EINVAL;
	}
	id->status = MOAT_CERT_SUCCESS;
	return MOAT_OK;
}
