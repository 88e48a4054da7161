/*
 * Certificate authority work for the control plane (ca.h), the issuing side: the checks on
 * what is asked for (CSR, device id, hosts, validity), then building and signing the CA,
 * device and server certificates.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "tls/ca_internal.h"

/* Devices with a clock a little behind must not see their new certificate as not yet valid. */
#define CLOCK_SKEW_SECONDS (5 * 60)
#define SERIAL_BYTES 16
#define DEVICE_ID_MAX 128 /* docs/api.md: [A-Za-z0-9._:-]{1,128} */
#define HOSTS_MAX 64
#define HOST_LEN_MAX 253
#define DEVICE_ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
#define HOST_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.*"

enum cert_kind { KIND_CA, KIND_DEVICE, KIND_SERVER };

/* What to put in a new certificate. */
struct issue {
	enum cert_kind kind;
	X509 *ca; /* NULL for the self-signed CA */
	EVP_PKEY *ca_key; /* signs */
	EVP_PKEY *key; /* the subject's public key */
	const char *cn;
	unsigned days;
	const char *const *hosts; /* KIND_SERVER */
	size_t nhosts;
};

static int has_control(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 1;
	return 0;
}

static int check_days(unsigned days, struct moat_ca_err *err)
{
	if (days < 1 || days > MOAT_CA_MAX_DAYS)
		return moat_ca_fail(err, MOAT_EINVAL, "days: must be between 1 and %d",
		                    MOAT_CA_MAX_DAYS);
	return MOAT_OK;
}

/* The device id becomes the certificate's CN: the charset of docs/api.md, nothing to escape. */
static int check_device_id(const char *id, struct moat_ca_err *err)
{
	size_t n = id == NULL ? 0 : strnlen(id, DEVICE_ID_MAX + 1);

	if (n < 1 || n > DEVICE_ID_MAX || strspn(id, DEVICE_ID_CHARS) != n)
		return moat_ca_fail(err, MOAT_EINVAL,
		                    "id: must be 1 to 128 characters from A-Z a-z 0-9 . _ : -");
	return MOAT_OK;
}

/* Names go into a subjectAltName as given: letters, digits, '-', '.', and '*' for wildcards. */
static int check_hosts(const char *const *hosts, size_t nhosts, struct moat_ca_err *err)
{
	char shown[80];

	if (hosts == NULL || nhosts < 1 || nhosts > HOSTS_MAX)
		return moat_ca_fail(err, MOAT_EINVAL, "hosts: 1 to %d names required", HOSTS_MAX);
	for (size_t i = 0; i < nhosts; i++) {
		size_t n = hosts[i] == NULL ? 0 : strnlen(hosts[i], HOST_LEN_MAX + 1);

		if (n < 1 || n > HOST_LEN_MAX || strspn(hosts[i], HOST_CHARS) != n) {
			moat_ca_quote(shown, sizeof(shown), (const unsigned char *)hosts[i], n);
			return moat_ca_fail(err, MOAT_EINVAL, "hosts: \"%s\" is not a DNS name",
			                    shown);
		}
	}
	return MOAT_OK;
}

/* EC P-256/P-384, Ed25519 or RSA >= 2048; otherwise `desc` names what was offered. */
static int key_accepted(EVP_PKEY *key, char *desc, size_t cap)
{
	char group[64];
	int nid;

	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_ED25519:
		return 1;
	case EVP_PKEY_RSA:
		snprintf(desc, cap, "RSA %d-bit", EVP_PKEY_get_bits(key));
		return EVP_PKEY_get_bits(key) >= 2048;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) != 1) {
			snprintf(desc, cap, "EC with explicit parameters");
			return 0;
		}
		snprintf(desc, cap, "EC %s", group);
		nid = OBJ_sn2nid(group);
		if (nid == NID_undef)
			nid = EC_curve_nist2nid(group);
		return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1;
	default:
		snprintf(desc, cap, "%s",
		         EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown");
		return 0;
	}
}

static int check_csr_cn(X509_REQ *req, const char *device_id, struct moat_ca_err *err)
{
	X509_NAME *subj = X509_REQ_get_subject_name(req);
	int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1), n, rc = MOAT_OK;
	unsigned char *utf8 = NULL;
	char shown[80];

	if (i < 0)
		return MOAT_OK;
	if (X509_NAME_get_index_by_NID(subj, NID_commonName, i) >= 0)
		return moat_ca_fail(err, MOAT_EINVAL, "csr: subject has more than one CN");
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
	if (n < 0)
		return moat_ca_fail(err, MOAT_EINVAL, "csr: CN does not decode");
	if ((size_t)n != strlen(device_id) || memcmp(utf8, device_id, (size_t)n) != 0) {
		moat_ca_quote(shown, sizeof(shown), utf8, (size_t)n);
		rc = moat_ca_fail(err, MOAT_EINVAL,
		                  "csr: CN \"%s\" does not match device id \"%s\"", shown,
		                  device_id);
	}
	OPENSSL_free(utf8);
	return rc;
}

/* The CSR's key and proof of possession. Its subject and extensions are not used. */
static int check_csr(X509_REQ *req, const char *device_id, struct moat_ca_err *err)
{
	EVP_PKEY *key = X509_REQ_get0_pubkey(req);
	char desc[80] = "";

	if (key == NULL)
		return moat_ca_fail(err, MOAT_EINVAL, "csr: public key does not parse");
	if (!key_accepted(key, desc, sizeof(desc)))
		return moat_ca_fail(
		        err, MOAT_EINVAL,
		        "csr: key type %s not accepted (EC P-256 or P-384, Ed25519, or RSA of "
		        "2048 bits or more)",
		        desc);
	if (X509_REQ_verify(req, key) != 1)
		return moat_ca_fail(err, MOAT_EINVAL, "csr: signature does not verify");
	return check_csr_cn(req, device_id, err);
}

/* The issuing CA from the store: parseable, a CA, in date, and its key. */
static int load_signer(const char *cert_pem, const char *key_pem, X509 **ca, EVP_PKEY **key,
                       struct moat_ca_err *err)
{
	int rc = moat_ca_load_certs(cert_pem, "ca", 1, ca, err);

	*key = NULL;
	if (rc == MOAT_OK && !(X509_get_extension_flags(*ca) & EXFLAG_CA))
		rc = moat_ca_fail(err, MOAT_EINVAL, "ca: not a CA certificate");
	if (rc == MOAT_OK && moat_ca_expired(*ca))
		rc = moat_ca_fail(err, MOAT_EINVAL, "ca: certificate has expired");
	if (rc == MOAT_OK)
		rc = moat_ca_load_key(key_pem, "ca_key", key, err);
	if (rc == MOAT_OK)
		rc = moat_ca_key_matches(*ca, *key, "ca_key", err);
	if (rc != MOAT_OK) {
		X509_free(*ca);
		EVP_PKEY_free(*key);
		*ca = NULL;
		*key = NULL;
	}
	return rc;
}

static int set_random_serial(X509 *x)
{
	unsigned char b[SERIAL_BYTES];

	/* Positive (top bit clear) and a full 16 bytes, so every serial shows as 32 digits. */
	do {
		if (RAND_bytes(b, sizeof(b)) != 1)
			return -1;
		b[0] &= 0x7f;
	} while (b[0] == 0);
	return ASN1_STRING_set(X509_get_serialNumber(x), b, sizeof(b)) == 1 ? 0 : -1;
}

/*
 * The CN is set as a UTF8String directly: device ids (up to 128 characters) and host names
 * may exceed the 64 that OpenSSL's string table would enforce.
 */
static int set_subject_cn(X509 *x, const char *cn)
{
	X509_NAME *name = X509_NAME_new();
	int ok = name != NULL &&
	         X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
	                                    (const unsigned char *)cn, (int)strlen(cn), -1,
	                                    0) == 1 &&
	         X509_set_subject_name(x, name) == 1;

	X509_NAME_free(name);
	return ok ? 0 : -1;
}

static int set_validity(X509 *x, const X509 *ca, unsigned days)
{
	time_t now = time(NULL);

	if (X509_time_adj_ex(X509_getm_notBefore(x), 0, -CLOCK_SKEW_SECONDS, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now) == NULL)
		return -1;
	if (ca != NULL && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0)
		return X509_set1_notAfter(x, X509_get0_notAfter(ca)) == 1 ? 0 : -1;
	return 0;
}

static int add_conf_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;

	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* The issuer's own key identifier, or for an imported CA without one, RFC 5280's method 1. */
static int add_authority_key_id(X509 *x, X509 *ca)
{
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc = -1;

	if (akid == NULL)
		return -1;
	akid->keyid = ski != NULL ? ASN1_OCTET_STRING_dup(ski) : ASN1_OCTET_STRING_new();
	if (akid->keyid == NULL)
		goto out;
	if (ski == NULL && (X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen) != 1 ||
	                    ASN1_OCTET_STRING_set(akid->keyid, md, (int)mdlen) != 1))
		goto out;
	if (X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
out:
	AUTHORITY_KEYID_free(akid);
	return rc;
}

/* Built as structures, not as a config string, so that no host can smuggle in other names. */
static int add_dns_names(X509 *x, const char *const *hosts, size_t nhosts)
{
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	int rc = -1;

	for (size_t i = 0; names != NULL && i < nhosts; i++) {
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();
		GENERAL_NAME *g = GENERAL_NAME_new();

		if (s == NULL || g == NULL || ASN1_STRING_set(s, hosts[i], -1) != 1) {
			ASN1_IA5STRING_free(s);
			GENERAL_NAME_free(g);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		if (sk_GENERAL_NAME_push(names, g) <= 0) {
			GENERAL_NAME_free(g);
			goto out;
		}
	}
	if (names != NULL &&
	    X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
out:
	GENERAL_NAMES_free(names);
	return rc;
}

static int add_extensions(X509 *x, const struct issue *p)
{
	X509V3_CTX ctx;
	int rsa = EVP_PKEY_get_base_id(p->key) == EVP_PKEY_RSA;

	X509V3_set_ctx(&ctx, p->ca != NULL ? p->ca : x, x, NULL, NULL, 0);
	if (p->kind == KIND_CA) {
		if (add_conf_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    add_conf_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
		    add_conf_ext(x, &ctx, NID_subject_key_identifier, "hash"))
			return -1;
		return 0;
	}
	/* RSA keys may be used for key transport; other keys only sign. */
	if (add_conf_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_conf_ext(x, &ctx, NID_key_usage,
	                 rsa ? "critical,digitalSignature,keyEncipherment"
	                     : "critical,digitalSignature") ||
	    add_conf_ext(x, &ctx, NID_ext_key_usage,
	                 p->kind == KIND_SERVER ? "serverAuth" : "clientAuth") ||
	    add_conf_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
	    add_authority_key_id(x, p->ca))
		return -1;
	return p->kind == KIND_SERVER ? add_dns_names(x, p->hosts, p->nhosts) : 0;
}

/* Ed25519 and Ed448 sign the message itself: no separate digest. */
static const EVP_MD *signing_digest(EVP_PKEY *key)
{
	int id = EVP_PKEY_get_base_id(key);

	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static int issue(const struct issue *p, X509 **out, struct moat_ca_err *err)
{
	X509 *x = X509_new();
	int ok;

	*out = NULL;
	ok = x != NULL && X509_set_version(x, X509_VERSION_3) == 1 && set_random_serial(x) == 0 &&
	     set_subject_cn(x, p->cn) == 0 &&
	     X509_set_issuer_name(x, X509_get_subject_name(p->ca != NULL ? p->ca : x)) == 1 &&
	     set_validity(x, p->ca, p->days) == 0 && X509_set_pubkey(x, p->key) == 1 &&
	     add_extensions(x, p) == 0;
	if (!ok) {
		X509_free(x);
		return moat_ca_ossl_fail(err, "building the certificate");
	}
	if (X509_sign(x, p->ca_key, signing_digest(p->ca_key)) <= 0) {
		X509_free(x);
		return moat_ca_ossl_fail(err, "signing the certificate");
	}
	*out = x;
	return MOAT_OK;
}

static int new_p256_key(EVP_PKEY **out, struct moat_ca_err *err)
{
	*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return *out != NULL ? MOAT_OK : moat_ca_ossl_fail(err, "key generation");
}

/*
 * Signs, encodes and describes the certificate `p` asks for; with `key` (a key generated here),
 * its PEM too. On failure nothing is returned.
 */
static int issue_to_pem(const struct issue *p, EVP_PKEY *key, char **cert_pem, char **key_pem,
                        struct moat_cert_info *info, struct moat_ca_err *err)
{
	X509 *x = NULL;
	int rc = issue(p, &x, err);

	if (rc == MOAT_OK)
		rc = moat_ca_cert_to_pem(x, cert_pem, err);
	if (rc == MOAT_OK && key != NULL)
		rc = moat_ca_key_to_pem(key, key_pem, err);
	if (rc == MOAT_OK && info != NULL)
		rc = moat_ca_describe(x, "cert", info, err);
	if (rc != MOAT_OK) {
		moat_free(*cert_pem);
		*cert_pem = NULL;
		if (key_pem != NULL) {
			moat_ca_free_secret(*key_pem);
			*key_pem = NULL;
		}
	}
	X509_free(x);
	return rc;
}

int moat_ca_generate(const char *cn, unsigned days, char **cert_pem, char **key_pem,
                     struct moat_cert_info *info, struct moat_ca_err *err)
{
	struct issue p = {.kind = KIND_CA, .cn = cn, .days = days};
	size_t n = cn == NULL ? 0 : strnlen(cn, 65);
	EVP_PKEY *key = NULL;
	int rc = check_days(days, err);

	*cert_pem = NULL;
	*key_pem = NULL;
	if (rc == MOAT_OK && (n < 1 || n > 64 || has_control(cn, n)))
		rc = moat_ca_fail(err, MOAT_EINVAL,
		                  "cn: must be 1 to 64 characters, no control characters");
	if (rc == MOAT_OK)
		rc = new_p256_key(&key, err);
	if (rc == MOAT_OK) {
		p.ca_key = p.key = key;
		rc = issue_to_pem(&p, key, cert_pem, key_pem, info, err);
	}
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

struct moat_ca_signer {
	X509 *ca;
	EVP_PKEY *key;
};

int moat_ca_signer_new(const char *ca_cert_pem, const char *ca_key_pem, struct moat_ca_signer **out,
                       struct moat_ca_err *err)
{
	struct moat_ca_signer *s = moat_calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s == NULL)
		return moat_ca_no_memory(err);
	rc = load_signer(ca_cert_pem, ca_key_pem, &s->ca, &s->key, err);
	ERR_clear_error();
	if (rc != MOAT_OK) {
		moat_free(s);
		return rc;
	}
	*out = s;
	return MOAT_OK;
}

void moat_ca_signer_free(struct moat_ca_signer *s)
{
	if (s == NULL)
		return;
	X509_free(s->ca);
	EVP_PKEY_free(s->key);
	moat_free(s);
}

/* A device certificate for `pub` (from a CSR or generated here) under the signer's CA. */
static int issue_device(const struct moat_ca_signer *s, EVP_PKEY *pub, EVP_PKEY *generated,
                        const char *device_id, unsigned days, char **cert_pem, char **key_pem,
                        struct moat_cert_info *info, struct moat_ca_err *err)
{
	struct issue p = {.kind = KIND_DEVICE,
	                  .ca = s->ca,
	                  .ca_key = s->key,
	                  .key = pub,
	                  .cn = device_id,
	                  .days = days};

	if (moat_ca_expired(s->ca))
		return moat_ca_fail(err, MOAT_EINVAL, "ca: certificate has expired");
	return issue_to_pem(&p, generated, cert_pem, key_pem, info, err);
}

int moat_ca_signer_sign_csr(const struct moat_ca_signer *s, const char *csr_pem,
                            const char *device_id, unsigned days, char **cert_pem,
                            struct moat_cert_info *info, struct moat_ca_err *err)
{
	X509_REQ *req = NULL;
	int rc = check_device_id(device_id, err);

	*cert_pem = NULL;
	if (rc == MOAT_OK)
		rc = check_days(days, err);
	if (rc == MOAT_OK)
		rc = moat_ca_load_csr(csr_pem, &req, err);
	if (rc == MOAT_OK)
		rc = check_csr(req, device_id, err);
	if (rc == MOAT_OK)
		rc = issue_device(s, X509_REQ_get0_pubkey(req), NULL, device_id, days, cert_pem,
		                  NULL, info, err);
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

int moat_ca_signer_issue_with_key(const struct moat_ca_signer *s, const char *device_id,
                                  unsigned days, char **cert_pem, char **key_pem,
                                  struct moat_cert_info *info, struct moat_ca_err *err)
{
	EVP_PKEY *key = NULL;
	int rc = check_device_id(device_id, err);

	*cert_pem = NULL;
	*key_pem = NULL;
	if (rc == MOAT_OK)
		rc = check_days(days, err);
	if (rc == MOAT_OK)
		rc = new_p256_key(&key, err);
	if (rc == MOAT_OK)
		rc = issue_device(s, key, key, device_id, days, cert_pem, key_pem, info, err);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

int moat_ca_issue_server(const char *ca_cert_pem, const char *ca_key_pem, const char *const *hosts,
                         size_t nhosts, unsigned days, char **cert_pem, char **key_pem,
                         struct moat_ca_err *err)
{
	struct issue p = {.kind = KIND_SERVER, .days = days, .hosts = hosts, .nhosts = nhosts};
	EVP_PKEY *key = NULL;
	int rc = check_hosts(hosts, nhosts, err);

	*cert_pem = NULL;
	*key_pem = NULL;
	if (rc == MOAT_OK)
		rc = check_days(days, err);
	if (rc == MOAT_OK)
		rc = load_signer(ca_cert_pem, ca_key_pem, &p.ca, &p.ca_key, err);
	if (rc == MOAT_OK)
		rc = new_p256_key(&key, err);
	if (rc == MOAT_OK) {
		p.key = key;
		p.cn = hosts[0];
		rc = issue_to_pem(&p, key, cert_pem, key_pem, NULL, err);
	}
	X509_free(p.ca);
	EVP_PKEY_free(p.ca_key);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}