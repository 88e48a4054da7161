/*
 * Tests for src/tls/ca.c, ca_issue.c and ca_secret.c: CA generation and import, device
 * certificates from CSRs (EC, Ed25519, RSA) and in factory mode, server certificates, the
 * refusals, and private key files. Issued certificates are checked by path validation with
 * OpenSSL, and once with the openssl command line tool.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "tls/ca.h"

/* The CA most tests issue from: generated once for the group. */
static struct {
	char *cert, *key;
	struct moat_cert_info info;
} ca;

static char tmpdir[64];

/* ---- helpers ------------------------------------------------------------------------------ */

static char *bio_text(BIO *bio)
{
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	char *s = malloc((size_t)n + 1);

	assert_non_null(s);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(bio);
	return s;
}

static char *cat(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	char *s = malloc(na + nb + 1);

	assert_non_null(s);
	memcpy(s, a, na);
	memcpy(s + na, b, nb + 1);
	return s;
}

/* "EC:P-256", "EC:secp256k1", "RSA:2048", "ED25519". */
static EVP_PKEY *keygen(const char *spec)
{
	EVP_PKEY *k;

	if (strncmp(spec, "EC:", 3) == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", spec + 3);
	else if (strncmp(spec, "RSA:", 4) == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)strtoul(spec + 4, NULL, 10));
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, spec);
	if (k == NULL)
		fail_msg("key generation for %s failed", spec);
	return k;
}

static const EVP_MD *digest_for(EVP_PKEY *key)
{
	int id = EVP_PKEY_get_base_id(key);

	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static X509_REQ *build_csr(EVP_PKEY *key, const char *cn, int ask_ca)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name;

	assert_non_null(req);
	name = X509_REQ_get_subject_name(req);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
	                                            (const unsigned char *)"Evil Corp", -1, -1, 0),
	                 1);
	if (cn != NULL)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
		                                            (const unsigned char *)cn, -1, -1, 0),
		                 1);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	if (ask_ca) {
		STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
		X509V3_CTX ctx;

		X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);
		sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
		                                                 "critical,CA:TRUE"));
		sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
		                                                 "critical,keyCertSign"));
		assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	}
	assert_true(X509_REQ_sign(req, key, digest_for(key)) > 0);
	return req;
}

/* A CSR in PEM; the caller frees it. */
static char *make_csr(EVP_PKEY *key, const char *cn, int ask_ca)
{
	X509_REQ *req = build_csr(key, cn, ask_ca);
	BIO *bio = BIO_new(BIO_s_mem());

	assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
	X509_REQ_free(req);
	return bio_text(bio);
}

static char *cert_pem(X509 *x)
{
	BIO *bio = BIO_new(BIO_s_mem());

	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	return bio_text(bio);
}

static char *key_pem(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());

	assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
	return bio_text(bio);
}

static X509 *parse_cert(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

	BIO_free(bio);
	assert_non_null(x);
	return x;
}

static EVP_PKEY *parse_key(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);

	BIO_free(bio);
	assert_non_null(k);
	return k;
}

/*
 * A CA built here rather than by moat_ca_generate: valid from `from` to `to` seconds from
 * now (negative: in the past), with or without a subjectKeyIdentifier, self-signed with `key`.
 */
static char *test_ca(EVP_PKEY *key, long from, long to, int with_ski, long serial)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;
	char *pem;

	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"Old CA", -1,
	                           -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_NAME_free(name);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to));
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	assert_int_equal(
	        X509_add1_ext_i2d(x, NID_basic_constraints, &(BASIC_CONSTRAINTS){.ca = 0xff}, 1, 0),
	        1);
	if (with_ski) {
		X509_EXTENSION *e =
		        X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");

		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, key, digest_for(key)) > 0);
	pem = cert_pem(x);
	X509_free(x);
	return pem;
}

/* Path validation of `leaf` against the one trusted CA, for a purpose: X509_V_OK or why not. */
static int verify_error(const char *ca_pem, const char *leaf_pem, int purpose)
{
	X509 *root = parse_cert(ca_pem), *leaf = parse_cert(leaf_pem);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int rc;

	assert_int_equal(X509_STORE_add_cert(store, root), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(root);
	X509_free(leaf);
	return rc;
}

static void assert_verifies(const char *ca_pem, const char *leaf_pem, int purpose)
{
	int rc = verify_error(ca_pem, leaf_pem, purpose);

	if (rc != X509_V_OK)
		fail_msg("verification failed: %s", X509_verify_cert_error_string(rc));
}

static int ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static void assert_upper_hex(const char *s, size_t len)
{
	assert_int_equal(strlen(s), len);
	assert_int_equal(strspn(s, "0123456789ABCDEF"), len);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* A refusal: MOAT_EINVAL and exactly this message (or this prefix, with a trailing '*'). */
static void assert_refused(int rc, const struct moat_ca_err *err, const char *want)
{
	size_t n = strlen(want);

	assert_int_equal(rc, MOAT_EINVAL);
	if (n > 0 && want[n - 1] == '*') {
		if (strncmp(err->msg, want, n - 1) != 0)
			fail_msg("message \"%s\", wanted \"%s\"", err->msg, want);
	} else {
		assert_string_equal(err->msg, want);
	}
}

/* A signer made for one certificate, from a CSR (key_out NULL) or in factory mode. */
static int issue_once(const char *ca_cert, const char *ca_key, const char *csr, const char *id,
                      unsigned days, char **out, char **key_out, struct moat_cert_info *info,
                      struct moat_ca_err *err)
{
	struct moat_ca_signer *s = NULL;
	int rc = moat_ca_signer_new(ca_cert, ca_key, &s, err);

	*out = NULL;
	if (key_out != NULL)
		*key_out = NULL;
	if (rc == MOAT_OK && key_out == NULL)
		rc = moat_ca_signer_sign_csr(s, csr, id, days, out, info, err);
	else if (rc == MOAT_OK)
		rc = moat_ca_signer_issue_with_key(s, id, days, out, key_out, info, err);
	moat_ca_signer_free(s);
	return rc;
}

static int sign(const char *csr, const char *id, unsigned days, char **out,
                struct moat_cert_info *info, struct moat_ca_err *err)
{
	return issue_once(ca.cert, ca.key, csr, id, days, out, NULL, info, err);
}

/* ---- the CA ------------------------------------------------------------------------------- */

static void test_generate(void **state)
{
	X509 *x = parse_cert(ca.cert);
	EVP_PKEY *k = parse_key(ca.key);
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65];
	BASIC_CONSTRAINTS *bc;

	assert_int_equal(ca.info.is_ca, 1);
	assert_string_equal(ca.info.cn, "Test Device CA");
	assert_string_equal(ca.info.subject, "CN=Test Device CA");
	assert_upper_hex(ca.info.serial, 32);
	assert_int_equal(ca.info.not_after - ca.info.not_before, 3650 * 86400L + 300);
	assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	assert_string_equal(ca.info.fingerprint, hex);
	/* Self-signed, v3, the constraints critical, an unencrypted PKCS#8 key that matches. */
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_true(bc->ca);
	assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_true(ext_critical(x, NID_key_usage));
	assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(x));
	assert_int_equal(strncmp(ca.key, "-----BEGIN PRIVATE KEY-----\n", 28), 0);
	assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
	assert_int_equal(X509_check_private_key(x, k), 1);
	EVP_PKEY_free(k);
	X509_free(x);
}

static void test_generate_refusals(void **state)
{
	struct moat_ca_err err;
	char *c = (char *)"x", *k = (char *)"x";

	assert_refused(moat_ca_generate("CA", 0, &c, &k, NULL, &err), &err, "days: *");
	assert_null(c);
	assert_null(k);
	assert_refused(moat_ca_generate("CA", MOAT_CA_MAX_DAYS + 1, &c, &k, NULL, &err), &err,
	               "days: *");
	assert_refused(moat_ca_generate("", 10, &c, &k, NULL, &err), &err, "cn: *");
	assert_refused(moat_ca_generate("a\nb", 10, &c, &k, NULL, &err), &err, "cn: *");
}

/* ---- device certificates from CSRs -------------------------------------------------------- */

/* Everything a device certificate must be, for a CSR made with `spec`. */
static void check_signed(const char *spec, int rsa)
{
	EVP_PKEY *key = keygen(spec);
	char *csr = make_csr(key, "cam-0001", 0), *out = NULL;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};
	X509 *x, *root = parse_cert(ca.cert);
	const ASN1_INTEGER *serial;
	int64_t now = (int64_t)time(NULL);

	if (sign(csr, "cam-0001", 730, &out, &info, &err) != MOAT_OK)
		fail_msg("%s: %s", spec, err.msg);
	assert_verifies(ca.cert, out, X509_PURPOSE_SSL_CLIENT);
	assert_int_equal(verify_error(ca.cert, out, X509_PURPOSE_SSL_SERVER),
	                 X509_V_ERR_INVALID_PURPOSE);
	x = parse_cert(out);
	assert_string_equal(info.cn, "cam-0001");
	assert_string_equal(info.subject, "CN=cam-0001"); /* the CSR's O= is not copied */
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(root)), 0);
	assert_int_equal(info.is_ca, 0);
	assert_upper_hex(info.serial, 32);
	serial = X509_get0_serialNumber(x);
	assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER); /* positive */
	assert_int_equal(ASN1_STRING_length(serial), 16);
	assert_int_equal(i2d_ASN1_INTEGER(serial, NULL), 18); /* no sign byte: top bit clear */
	assert_true(info.not_after <= ca.info.not_after);
	assert_in_range(info.not_before, now - 310, now - 290);
	assert_in_range(info.not_after - now, 730 * 86400L - 10, 730 * 86400L + 10);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
	assert_int_equal(X509_get_key_usage(x),
	                 rsa ? KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT : KU_DIGITAL_SIGNATURE);
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_true(ext_critical(x, NID_key_usage));
	assert_non_null(X509_get0_subject_key_id(x));
	/* The authority key identifier is the CA's subject key identifier. */
	assert_non_null(X509_get0_authority_key_id(x));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
	                                       X509_get0_subject_key_id(root)),
	                 0);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	X509_free(x);
	X509_free(root);
	moat_free(out);
	free(csr);
	EVP_PKEY_free(key);
}

static void test_sign_ec_p256(void **state)
{
	check_signed("EC:P-256", 0);
}

static void test_sign_ec_p384(void **state)
{
	check_signed("EC:P-384", 0);
}

static void test_sign_ed25519(void **state)
{
	check_signed("ED25519", 0);
}

static void test_sign_rsa2048(void **state)
{
	check_signed("RSA:2048", 1);
}

static void test_sign_without_cn(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	char *csr = make_csr(key, NULL, 0), *out = NULL;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};

	assert_int_equal(sign(csr, "cam-0002", 30, &out, &info, &err), MOAT_OK);
	assert_string_equal(info.cn, "cam-0002");
	moat_free(out);
	free(csr);
	EVP_PKEY_free(key);
}

static void test_sign_capped_at_ca_expiry(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	char *csr = make_csr(key, "cam-1", 0), *ca_cert, *ca_key, *out;
	struct moat_cert_info ca_info, info;
	struct moat_ca_err err = {""};

	assert_int_equal(moat_ca_generate("Short CA", 30, &ca_cert, &ca_key, &ca_info, &err),
	                 MOAT_OK);
	assert_int_equal(issue_once(ca_cert, ca_key, csr, "cam-1", MOAT_CA_MAX_DAYS, &out, NULL,
	                            &info, &err),
	                 MOAT_OK);
	assert_int_equal(info.not_after, ca_info.not_after);
	assert_verifies(ca_cert, out, X509_PURPOSE_SSL_CLIENT);
	moat_free(out);
	moat_free(ca_cert);
	moat_ca_free_secret(ca_key);
	free(csr);
	EVP_PKEY_free(key);
}

/* A device cannot obtain a CA by asking for one in its CSR's extensions. */
static void test_sign_ignores_requested_extensions(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	char *csr = make_csr(key, "cam-1", 1), *out = NULL;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};
	BASIC_CONSTRAINTS *bc;
	X509 *x;

	assert_int_equal(sign(csr, "cam-1", 30, &out, &info, &err), MOAT_OK);
	assert_int_equal(info.is_ca, 0);
	x = parse_cert(out);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_false(bc->ca);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_check_ca(x), 0);
	BASIC_CONSTRAINTS_free(bc);
	X509_free(x);
	moat_free(out);
	free(csr);
	EVP_PKEY_free(key);
}

static void test_sign_wrong_cn(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	char *csr = make_csr(key, "cam-9999", 0), *out = (char *)"x";
	struct moat_ca_err err;

	assert_refused(sign(csr, "cam-0001", 30, &out, NULL, &err), &err,
	               "csr: CN \"cam-9999\" does not match device id \"cam-0001\"");
	assert_null(out);
	free(csr);
	csr = make_csr(key, "x\"y", 0);
	assert_refused(sign(csr, "cam-0001", 30, &out, NULL, &err), &err,
	               "csr: CN \"x?y\" does not match device id \"cam-0001\"");
	free(csr);
	EVP_PKEY_free(key);
}

static void test_sign_bad_signature(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	X509_REQ *req = build_csr(key, "cam-1", 0);
	unsigned char *der = NULL;
	int len = i2d_X509_REQ(req, &der);
	BIO *bio = BIO_new(BIO_s_mem());
	char *csr, *out = NULL;
	struct moat_ca_err err;

	assert_true(len > 0);
	der[len - 1] ^= 0x01; /* the last byte of the signature */
	assert_true(PEM_write_bio(bio, "CERTIFICATE REQUEST", "", der, len) > 0);
	csr = bio_text(bio);
	assert_refused(sign(csr, "cam-1", 30, &out, NULL, &err), &err,
	               "csr: signature does not verify");
	assert_null(out);
	free(csr);
	OPENSSL_free(der);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

static void test_sign_weak_keys(void **state)
{
	static const struct {
		const char *spec, *msg;
	} cases[] = {
	        {"RSA:1024", "csr: key type RSA 1024-bit not accepted*"},
	        {"EC:secp256k1", "csr: key type EC secp256k1 not accepted*"},
	        {"ED448", "csr: key type ED448 not accepted*"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *key = keygen(cases[i].spec);
		char *csr = make_csr(key, "cam-1", 0), *out = NULL;
		struct moat_ca_err err;

		assert_refused(sign(csr, "cam-1", 30, &out, NULL, &err), &err, cases[i].msg);
		free(csr);
		EVP_PKEY_free(key);
	}
}

static void test_sign_bad_input(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	char *csr = make_csr(key, "cam-1", 0), *two = cat(csr, csr), *big = malloc(70001);
	char *with_cert = cat(csr, ca.cert), *out = NULL;
	struct moat_ca_err err;

	assert_refused(sign("", "cam-1", 30, &out, NULL, &err), &err, "csr: missing");
	assert_refused(sign("hello", "cam-1", 30, &out, NULL, &err), &err,
	               "csr: not a PEM certificate request");
	assert_refused(sign(two, "cam-1", 30, &out, NULL, &err), &err,
	               "csr: expected one certificate request");
	assert_refused(sign(with_cert, "cam-1", 30, &out, NULL, &err), &err,
	               "csr: expected one certificate request");
	assert_refused(sign(ca.cert, "cam-1", 30, &out, NULL, &err), &err,
	               "csr: unexpected PEM block \"CERTIFICATE\"");
	assert_refused(sign("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
	                    "-----END CERTIFICATE REQUEST-----\n",
	                    "cam-1", 30, &out, NULL, &err),
	               &err, "csr: certificate request does not parse");
	assert_refused(sign("-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n"
	                    "-----END CERTIFICATE REQUEST-----\n",
	                    "cam-1", 30, &out, NULL, &err),
	               &err, "csr: malformed PEM block");
	memset(big, 'A', 70000);
	big[70000] = '\0';
	assert_refused(sign(big, "cam-1", 30, &out, NULL, &err), &err,
	               "csr: PEM text larger than 64 KiB");
	/* The request's own fields. */
	assert_refused(sign(csr, "cam 1", 30, &out, NULL, &err), &err, "id: *");
	assert_refused(sign(csr, "", 30, &out, NULL, &err), &err, "id: *");
	assert_refused(sign(csr, "cam-1", 0, &out, NULL, &err), &err, "days: *");
	assert_refused(sign(csr, "cam-1", MOAT_CA_MAX_DAYS + 1, &out, NULL, &err), &err, "days: *");
	assert_null(out);
	free(with_cert);
	free(big);
	free(two);
	free(csr);
	EVP_PKEY_free(key);
}

/* The issuing CA must be a CA, in date, with its own key. */
static void test_sign_bad_signer(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256"), *other = keygen("EC:P-256");
	char *csr = make_csr(key, "cam-1", 0), *other_key = key_pem(other), *out = NULL;
	char *old = test_ca(other, -20 * 86400L, -86400L, 1, 7);
	struct moat_ca_err err;

	assert_refused(issue_once(ca.cert, other_key, csr, "cam-1", 30, &out, NULL, NULL, &err),
	               &err, "ca_key: does not match the certificate");
	assert_refused(issue_once(old, other_key, csr, "cam-1", 30, &out, NULL, NULL, &err), &err,
	               "ca: certificate has expired");
	assert_null(out);
	free(old);
	free(other_key);
	free(csr);
	EVP_PKEY_free(other);
	EVP_PKEY_free(key);
}

/* An imported Ed25519 CA without a key identifier still issues certificates that verify. */
static void test_sign_with_imported_ed25519_ca(void **state)
{
	EVP_PKEY *ca_key = keygen("ED25519"), *key = keygen("EC:P-256");
	char *ca_cert = test_ca(ca_key, -60, 86400L * 30, 0, 1), *ca_key_pem = key_pem(ca_key);
	char *csr = make_csr(key, "cam-1", 0), *out = NULL;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};
	X509 *x;

	if (moat_ca_check_import(ca_cert, ca_key_pem, &info, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	if (issue_once(ca_cert, ca_key_pem, csr, "cam-1", 10, &out, NULL, &info, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	assert_verifies(ca_cert, out, X509_PURPOSE_SSL_CLIENT);
	x = parse_cert(out);
	assert_int_equal(X509_get_signature_nid(x), NID_ED25519);
	assert_non_null(X509_get0_authority_key_id(x));
	X509_free(x);
	moat_free(out);
	free(csr);
	free(ca_key_pem);
	free(ca_cert);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
}

/* The openssl tool agrees with the library: clientAuth yes, serverAuth no. */
static void test_openssl_tool_verifies(void **state)
{
	EVP_PKEY *key = keygen("EC:P-256");
	char *csr = make_csr(key, "cam-0001", 0), *out = NULL;
	char ca_path[128], dev_path[128], cmd[512];
	struct moat_ca_err err = {""};
	int status;

	assert_int_equal(sign(csr, "cam-0001", 30, &out, NULL, &err), MOAT_OK);
	snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", tmpdir);
	snprintf(dev_path, sizeof(dev_path), "%s/dev.pem", tmpdir);
	write_file(ca_path, ca.cert);
	write_file(dev_path, out);
	snprintf(cmd, sizeof(cmd), "openssl verify -CAfile %s -purpose sslclient %s", ca_path,
	         dev_path);
	status = system(cmd);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	snprintf(cmd, sizeof(cmd),
	         "openssl verify -CAfile %s -purpose sslserver %s >/dev/null 2>&1", ca_path,
	         dev_path);
	status = system(cmd);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 0);
	unlink(ca_path);
	unlink(dev_path);
	moat_free(out);
	free(csr);
	EVP_PKEY_free(key);
}

/* ---- factory mode ------------------------------------------------------------------------- */

static void test_issue_with_key(void **state)
{
	char *out = NULL, *key = NULL;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};
	X509 *x;
	EVP_PKEY *k;

	if (issue_once(ca.cert, ca.key, NULL, "sensor.7:a_b", 365, &out, &key, &info, &err) !=
	    MOAT_OK)
		fail_msg("%s", err.msg);
	assert_string_equal(info.cn, "sensor.7:a_b");
	assert_int_equal(strncmp(key, "-----BEGIN PRIVATE KEY-----\n", 28), 0);
	x = parse_cert(out);
	k = parse_key(key);
	assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
	assert_int_equal(X509_check_private_key(x, k), 1);
	assert_verifies(ca.cert, out, X509_PURPOSE_SSL_CLIENT);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
	EVP_PKEY_free(k);
	X509_free(x);
	moat_free(out);
	moat_ca_free_secret(key);

	assert_refused(issue_once(ca.cert, ca.key, NULL, "bad id", 365, &out, &key, &info, &err),
	               &err, "id: *");
	assert_null(out);
	assert_null(key);
}

/* Device ids up to 128 characters, longer than X.509's usual 64 for a CN. */
static void test_issue_long_device_id(void **state)
{
	char id[129], longer[130], *out = NULL, *key = NULL;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};

	memset(id, 'd', 128);
	id[128] = '\0';
	if (issue_once(ca.cert, ca.key, NULL, id, 10, &out, &key, &info, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	assert_string_equal(info.cn, id);
	assert_verifies(ca.cert, out, X509_PURPOSE_SSL_CLIENT);
	moat_free(out);
	moat_ca_free_secret(key);
	memset(longer, 'd', 129);
	longer[129] = '\0';
	assert_refused(issue_once(ca.cert, ca.key, NULL, longer, 10, &out, &key, &info, &err), &err,
	               "id: *");
}

/* A signer made once issues from CSRs and in factory mode, each certificate with its own
 * serial; it refuses a CA whose key does not match, and a CA that is not a CA. */
static void test_signer(void **state)
{
	EVP_PKEY *dev = keygen("EC:P-256"), *other = keygen("EC:P-256");
	char *csr = make_csr(dev, "cam-1", 0), *other_key = key_pem(other);
	char *a = NULL, *b = NULL, *key = NULL, *leaf = NULL, *leaf_key = NULL;
	struct moat_cert_info ia, ib;
	struct moat_ca_signer *s = NULL, *none = NULL;
	struct moat_ca_err err = {""};

	if (moat_ca_signer_new(ca.cert, ca.key, &s, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	if (moat_ca_signer_sign_csr(s, csr, "cam-1", 30, &a, &ia, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	if (moat_ca_signer_issue_with_key(s, "cam-2", 30, &b, &key, &ib, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	assert_verifies(ca.cert, a, X509_PURPOSE_SSL_CLIENT);
	assert_verifies(ca.cert, b, X509_PURPOSE_SSL_CLIENT);
	assert_string_equal(ia.cn, "cam-1");
	assert_string_equal(ib.cn, "cam-2");
	assert_string_not_equal(ia.serial, ib.serial);
	/* what the signer checks per certificate, it still checks */
	assert_refused(moat_ca_signer_sign_csr(s, csr, "cam-9", 30, &leaf, NULL, &err), &err,
	               "csr: *");
	assert_refused(moat_ca_signer_issue_with_key(s, "bad id", 30, &leaf, &leaf_key, NULL, &err),
	               &err, "id: *");
	assert_null(leaf);
	assert_null(leaf_key);
	moat_ca_signer_free(s);

	assert_refused(moat_ca_signer_new(ca.cert, other_key, &none, &err), &err,
	               "ca_key: does not match the certificate");
	assert_null(none);
	assert_refused(moat_ca_signer_new(b, key, &none, &err), &err, "ca: not a CA certificate");
	assert_null(none);
	moat_ca_signer_free(NULL);

	moat_free(a);
	moat_free(b);
	moat_ca_free_secret(key);
	free(csr);
	free(other_key);
	EVP_PKEY_free(dev);
	EVP_PKEY_free(other);
}

/* ---- import ------------------------------------------------------------------------------- */

static void test_import(void **state)
{
	struct moat_cert_info info;
	struct moat_ca_err err = {""};

	assert_int_equal(moat_ca_check_import(ca.cert, ca.key, &info, &err), MOAT_OK);
	assert_int_equal(info.is_ca, 1);
	assert_string_equal(info.fingerprint, ca.info.fingerprint);
	assert_int_equal(moat_ca_check_import(ca.cert, NULL, &info, &err), MOAT_OK);
}

static void test_import_refusals(void **state)
{
	EVP_PKEY *other = keygen("EC:P-256");
	char *other_key = key_pem(other), *dev = NULL, *dev_key = NULL;
	char *old = test_ca(other, -20 * 86400L, -86400L, 1, 7), *two = cat(ca.cert, ca.cert);
	char *with_key = cat(ca.cert, ca.key), *encrypted;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};
	BIO *bio = BIO_new(BIO_s_mem());

	assert_int_equal(issue_once(ca.cert, ca.key, NULL, "cam-1", 10, &dev, &dev_key, NULL, &err),
	                 MOAT_OK);
	assert_refused(moat_ca_check_import(dev, dev_key, &info, &err), &err,
	               "cert: not a CA certificate (basicConstraints CA:TRUE required)");
	assert_refused(moat_ca_check_import(ca.cert, other_key, &info, &err), &err,
	               "key: does not match the certificate");
	assert_refused(moat_ca_check_import(old, other_key, &info, &err), &err,
	               "cert: certificate has expired");
	assert_refused(moat_ca_check_import(two, NULL, &info, &err), &err,
	               "cert: expected one certificate");
	assert_refused(moat_ca_check_import(with_key, NULL, &info, &err), &err,
	               "cert: expected one certificate");
	assert_refused(moat_ca_check_import(ca.key, NULL, &info, &err), &err,
	               "cert: unexpected PEM block \"PRIVATE KEY\"");
	assert_refused(moat_ca_check_import("", NULL, &info, &err), &err, "cert: missing");
	assert_refused(moat_ca_check_import(ca.cert, "junk", &info, &err), &err,
	               "key: not an unencrypted PEM private key");
	/* An encrypted key is refused, never prompted for. */
	assert_int_equal(PEM_write_bio_PKCS8PrivateKey(bio, other, EVP_aes_256_cbc(), NULL, 0, NULL,
	                                               (void *)"secret"),
	                 1);
	encrypted = bio_text(bio);
	assert_refused(moat_ca_check_import(ca.cert, encrypted, &info, &err), &err,
	               "key: not an unencrypted PEM private key");
	free(encrypted);
	free(with_key);
	free(two);
	free(old);
	moat_free(dev);
	moat_ca_free_secret(dev_key);
	free(other_key);
	EVP_PKEY_free(other);
}

/* ---- server certificates ------------------------------------------------------------------ */

static void test_issue_server(void **state)
{
	const char *hosts[] = {"edge.example.com", "*.devices.example.com"};
	char *out = NULL, *key = NULL, *chain, *other_key;
	struct moat_cert_info info;
	struct moat_ca_err err = {""};
	EVP_PKEY *k, *other = keygen("EC:P-256");
	X509 *x;

	if (moat_ca_issue_server(ca.cert, ca.key, hosts, 2, 365, &out, &key, &err) != MOAT_OK)
		fail_msg("%s", err.msg);
	assert_verifies(ca.cert, out, X509_PURPOSE_SSL_SERVER);
	assert_int_equal(verify_error(ca.cert, out, X509_PURPOSE_SSL_CLIENT),
	                 X509_V_ERR_INVALID_PURPOSE);
	x = parse_cert(out);
	k = parse_key(key);
	assert_int_equal(X509_check_private_key(x, k), 1);
	assert_int_equal(X509_check_host(x, "edge.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "cam.devices.example.com", 0, 0, NULL), 1);
	assert_int_not_equal(X509_check_host(x, "example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
	assert_int_equal(X509_check_ca(x), 0);
	assert_int_equal(moat_cert_info_pem(out, &info, &err), MOAT_OK);
	assert_string_equal(info.cn, "edge.example.com");
	assert_true(info.not_after <= ca.info.not_after);

	/* The same as an import: chain with the CA, and the key. */
	chain = cat(out, ca.cert);
	other_key = key_pem(other);
	assert_int_equal(moat_ca_check_server(chain, key, &err), MOAT_OK);
	assert_refused(moat_ca_check_server(chain, other_key, &err), &err,
	               "server_key: does not match the certificate");
	assert_refused(moat_ca_check_server(key, key, &err), &err,
	               "server_cert: unexpected PEM block \"PRIVATE KEY\"");
	assert_refused(moat_ca_check_server("nothing", key, &err), &err,
	               "server_cert: not a PEM certificate");
	free(other_key);
	free(chain);
	EVP_PKEY_free(other);
	EVP_PKEY_free(k);
	X509_free(x);
	moat_free(out);
	moat_ca_free_secret(key);
}

static void test_issue_server_refusals(void **state)
{
	const char *comma[] = {"a.example.com,DNS:evil.com"}, *empty[] = {""};
	const char *ok[] = {"a.example.com"};
	char *out = NULL, *key = NULL;
	struct moat_ca_err err;

	assert_refused(moat_ca_issue_server(ca.cert, ca.key, comma, 1, 30, &out, &key, &err), &err,
	               "hosts: \"a.example.com,DNS:evil.com\" is not a DNS name");
	assert_refused(moat_ca_issue_server(ca.cert, ca.key, empty, 1, 30, &out, &key, &err), &err,
	               "hosts: \"\" is not a DNS name");
	assert_refused(moat_ca_issue_server(ca.cert, ca.key, ok, 0, 30, &out, &key, &err), &err,
	               "hosts: *");
	assert_refused(moat_ca_issue_server(ca.cert, ca.key, ok, 1, 0, &out, &key, &err), &err,
	               "days: *");
	assert_null(out);
	assert_null(key);
}

/* ---- certificate facts -------------------------------------------------------------------- */

/* Serials shown as src/tls/identity.c shows them: two digits per byte of the magnitude. */
static void test_info_serial_format(void **state)
{
	EVP_PKEY *k = keygen("EC:P-256");
	char *one = test_ca(k, -60, 86400, 1, 1), *ff = test_ca(k, -60, 86400, 1, 255);
	char *with_text = cat("subject=CN = Old CA\n", one);
	struct moat_cert_info info;
	struct moat_ca_err err;

	assert_int_equal(moat_cert_info_pem(one, &info, &err), MOAT_OK);
	assert_string_equal(info.serial, "01");
	assert_string_equal(info.subject, "CN=Old CA");
	assert_int_equal(info.is_ca, 1);
	assert_int_equal(moat_cert_info_pem(ff, &info, &err), MOAT_OK);
	assert_string_equal(info.serial, "FF");
	assert_int_equal(moat_cert_info_pem(with_text, &info, &err), MOAT_OK);
	assert_string_equal(info.cn, "Old CA");
	assert_refused(moat_cert_info_pem("nothing", &info, &err), &err,
	               "cert: no PEM certificate");
	free(with_text);
	free(ff);
	free(one);
	EVP_PKEY_free(k);
}

/* ---- key files ---------------------------------------------------------------------------- */

static void test_secret_files(void **state)
{
	char dir[128], path[192], *back = NULL;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/keys/tenant", tmpdir);
	snprintf(path, sizeof(path), "%s/ca-1.key", dir);
	assert_int_equal(moat_secret_write(path, ca.key), MOAT_OK);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(moat_secret_read(path, &back), MOAT_OK);
	assert_string_equal(back, ca.key);
	moat_ca_free_secret(back);

	/* Never overwritten. */
	errno = 0;
	assert_int_equal(moat_secret_write(path, "other"), MOAT_EIO);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(moat_secret_read(path, &back), MOAT_OK);
	assert_string_equal(back, ca.key);
	moat_ca_free_secret(back);

	snprintf(path, sizeof(path), "%s/missing.key", dir);
	assert_int_equal(moat_secret_read(path, &back), MOAT_ENOTFOUND);
	assert_null(back);
	assert_int_equal(moat_secret_read(dir, &back), MOAT_EIO);
	moat_ca_free_secret(NULL);
}

/* ---- setup -------------------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int group_setup(void **state)
{
	struct moat_ca_err err = {""};

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/moat-ca-test-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	if (moat_ca_generate("Test Device CA", 3650, &ca.cert, &ca.key, &ca.info, &err) !=
	    MOAT_OK) {
		print_error("generate: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	moat_free(ca.cert);
	moat_ca_free_secret(ca.key);
	return nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_generate),
	        cmocka_unit_test(test_generate_refusals),
	        cmocka_unit_test(test_sign_ec_p256),
	        cmocka_unit_test(test_sign_ec_p384),
	        cmocka_unit_test(test_sign_ed25519),
	        cmocka_unit_test(test_sign_rsa2048),
	        cmocka_unit_test(test_sign_without_cn),
	        cmocka_unit_test(test_sign_capped_at_ca_expiry),
	        cmocka_unit_test(test_sign_ignores_requested_extensions),
	        cmocka_unit_test(test_sign_wrong_cn),
	        cmocka_unit_test(test_sign_bad_signature),
	        cmocka_unit_test(test_sign_weak_keys),
	        cmocka_unit_test(test_sign_bad_input),
	        cmocka_unit_test(test_sign_bad_signer),
	        cmocka_unit_test(test_sign_with_imported_ed25519_ca),
	        cmocka_unit_test(test_openssl_tool_verifies),
	        cmocka_unit_test(test_issue_with_key),
	        cmocka_unit_test(test_issue_long_device_id),
	        cmocka_unit_test(test_import),
	        cmocka_unit_test(test_import_refusals),
	        cmocka_unit_test(test_signer),
	        cmocka_unit_test(test_issue_server),
	        cmocka_unit_test(test_issue_server_refusals),
	        cmocka_unit_test(test_info_serial_format),
	        cmocka_unit_test(test_secret_files),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
