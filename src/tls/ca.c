/*
 * Certificate authority work for the control plane (ca.h), the PEM side: strict parsing of
 * certificates, CSRs and keys, describing certificates, and the checks on certificates to
 * import. Issuing is in ca_issue.c, private key files in ca_secret.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "tls/ca_internal.h"

/* PEM text is one certificate, key or CSR, or a short chain; more is not a mistake but abuse. */
#define PEM_MAX (64 * 1024)
#define CHAIN_MAX 32

/* One PEM block: its label and decoded bytes, owned by OpenSSL. */
struct pem_block {
	char *name, *header;
	unsigned char *data;
	long len;
};

static const char *const cert_labels[] = {"CERTIFICATE", NULL};
static const char *const csr_labels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", NULL};

static const char hexl[] = "0123456789abcdef";
static const char hexu[] = "0123456789ABCDEF";

int moat_ca_fail(struct moat_ca_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* An OpenSSL call failed on input we had already checked: memory, or something unexpected. */
int moat_ca_ossl_fail(struct moat_ca_err *err, const char *what)
{
	unsigned long e = ERR_peek_last_error();

	if (e != 0 && ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
		return moat_ca_fail(err, MOAT_ENOMEM, "internal: out of memory (%s)", what);
	return moat_ca_fail(err, MOAT_EIO, "internal: %s failed", what);
}

int moat_ca_no_memory(struct moat_ca_err *err)
{
	return moat_ca_fail(err, MOAT_ENOMEM, "internal: out of memory");
}

/* Untrusted text quoted in a message: printable ASCII, no quotes, at most 64 bytes. */
void moat_ca_quote(char *out, size_t cap, const unsigned char *s, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && i < 64 && j + 1 < cap; i++)
		out[j++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' ? (char)s[i]
		                                                                      : '?';
	out[j] = '\0';
}

static int check_bounded(const char *pem, const char *field, struct moat_ca_err *err)
{
	if (pem == NULL || pem[0] == '\0')
		return moat_ca_fail(err, MOAT_EINVAL, "%s: missing", field);
	if (strnlen(pem, PEM_MAX + 1) > PEM_MAX)
		return moat_ca_fail(err, MOAT_EINVAL, "%s: PEM text larger than 64 KiB", field);
	return MOAT_OK;
}

/* 1: a block was read; 0: no further block; -1: a block is malformed. */
static int next_block(BIO *bio, struct pem_block *b)
{
	unsigned long e;

	memset(b, 0, sizeof(*b));
	if (PEM_read_bio(bio, &b->name, &b->header, &b->data, &b->len) == 1)
		return 1;
	e = ERR_peek_last_error();
	ERR_clear_error();
	return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE ? 0 : -1;
}

static void block_free(struct pem_block *b)
{
	OPENSSL_free(b->name);
	OPENSSL_free(b->header);
	/* The block may be a private key pasted into the wrong field. */
	OPENSSL_clear_free(b->data, b->data != NULL ? (size_t)b->len : 0);
	memset(b, 0, sizeof(*b));
}

static int has_label(const struct pem_block *b, const char *const *labels)
{
	for (; *labels != NULL; labels++)
		if (strcmp(b->name, *labels) == 0)
			return 1;
	return 0;
}

static int unexpected_block(const struct pem_block *b, const char *field, struct moat_ca_err *err)
{
	char shown[80];

	moat_ca_quote(shown, sizeof(shown), (const unsigned char *)b->name, strlen(b->name));
	return moat_ca_fail(err, MOAT_EINVAL, "%s: unexpected PEM block \"%s\"", field, shown);
}

/*
 * Reads PEM blocks of one kind: exactly one when `max` is 1, else one or more. Anything else
 * in the text (another block, a block of another kind) is refused rather than ignored.
 * Each block is handed to `take`, which returns MOAT_OK or fills err.
 */
static int read_blocks(const char *pem, const char *field, const char *what,
                       const char *const *labels, int max,
                       int (*take)(const struct pem_block *, void *, struct moat_ca_err *),
                       void *arg, struct moat_ca_err *err)
{
	struct pem_block b;
	BIO *bio;
	int count = 0, rc = check_bounded(pem, field, err), got;

	if (rc != MOAT_OK)
		return rc;
	bio = BIO_new_mem_buf(pem, (int)strlen(pem));
	if (bio == NULL)
		return moat_ca_no_memory(err);
	while (rc == MOAT_OK && (got = next_block(bio, &b)) != 0) {
		if (got < 0)
			rc = moat_ca_fail(err, MOAT_EINVAL, "%s: malformed PEM block", field);
		else if (++count > max && max == 1)
			rc = moat_ca_fail(err, MOAT_EINVAL, "%s: expected one %s", field, what);
		else if (count > max)
			rc = moat_ca_fail(err, MOAT_EINVAL, "%s: more than %d PEM blocks", field,
			                  max);
		else if (!has_label(&b, labels))
			rc = unexpected_block(&b, field, err);
		else
			rc = take(&b, arg, err);
		block_free(&b);
	}
	BIO_free(bio);
	if (rc == MOAT_OK && count == 0)
		rc = moat_ca_fail(err, MOAT_EINVAL, "%s: not a PEM %s", field, what);
	return rc;
}

struct take_arg {
	const char *field;
	void *first; /* X509 * or X509_REQ * */
};

static int take_cert(const struct pem_block *b, void *arg, struct moat_ca_err *err)
{
	struct take_arg *t = arg;
	const unsigned char *p = b->data;
	X509 *x = d2i_X509(NULL, &p, b->len);

	if (x == NULL || p != b->data + b->len) {
		X509_free(x);
		return moat_ca_fail(err, MOAT_EINVAL, "%s: certificate does not parse", t->field);
	}
	if (t->first == NULL)
		t->first = x;
	else
		X509_free(x);
	return MOAT_OK;
}

static int take_csr(const struct pem_block *b, void *arg, struct moat_ca_err *err)
{
	struct take_arg *t = arg;
	const unsigned char *p = b->data;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, b->len);

	if (req == NULL || p != b->data + b->len) {
		X509_REQ_free(req);
		return moat_ca_fail(err, MOAT_EINVAL, "%s: certificate request does not parse",
		                    t->field);
	}
	t->first = req;
	return MOAT_OK;
}

/* Exactly one certificate (max 1), or a chain whose first certificate is returned. */
int moat_ca_load_certs(const char *pem, const char *field, int max, X509 **out,
                       struct moat_ca_err *err)
{
	struct take_arg t = {field, NULL};
	int rc = read_blocks(pem, field, "certificate", cert_labels, max, take_cert, &t, err);

	if (rc != MOAT_OK)
		X509_free(t.first);
	*out = rc == MOAT_OK ? t.first : NULL;
	return rc;
}

int moat_ca_load_csr(const char *pem, X509_REQ **out, struct moat_ca_err *err)
{
	struct take_arg t = {"csr", NULL};
	int rc = read_blocks(pem, "csr", "certificate request", csr_labels, 1, take_csr, &t, err);

	if (rc != MOAT_OK)
		X509_REQ_free(t.first);
	*out = rc == MOAT_OK ? t.first : NULL;
	return rc;
}

/* A key that needs a passphrase is refused instead of prompting on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

int moat_ca_load_key(const char *pem, const char *field, EVP_PKEY **out, struct moat_ca_err *err)
{
	int rc = check_bounded(pem, field, err);
	BIO *bio;

	*out = NULL;
	if (rc != MOAT_OK)
		return rc;
	bio = BIO_new_mem_buf(pem, (int)strlen(pem));
	if (bio == NULL)
		return moat_ca_no_memory(err);
	*out = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (*out == NULL)
		return moat_ca_fail(err, MOAT_EINVAL, "%s: not an unencrypted PEM private key",
		                    field);
	return MOAT_OK;
}

int moat_ca_key_matches(X509 *cert, EVP_PKEY *key, const char *field, struct moat_ca_err *err)
{
	EVP_PKEY *pub = X509_get0_pubkey(cert);

	if (pub == NULL || EVP_PKEY_eq(pub, key) != 1)
		return moat_ca_fail(err, MOAT_EINVAL, "%s: does not match the certificate", field);
	return MOAT_OK;
}

int moat_ca_expired(const X509 *x)
{
	return X509_cmp_current_time(X509_get0_notAfter(x)) <= 0;
}

static int asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	*out = (int64_t)timegm(&tm);
	return 0;
}

/* Two digits per byte of the serial's magnitude, as src/tls/identity.c shows it. */
static void serial_hex(const X509 *x, char *out, size_t cap)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
	const unsigned char *p = ASN1_STRING_get0_data(serial);
	size_t j = 0;

	for (int i = 0; i < ASN1_STRING_length(serial) && j + 2 < cap; i++) {
		out[j++] = hexu[p[i] >> 4];
		out[j++] = hexu[p[i] & 15];
	}
	out[j] = '\0';
}

static void first_cn(const X509 *x, char *out, size_t cap)
{
	const X509_NAME *subj = X509_get_subject_name(x);
	int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n = i < 0 ? -1
	              : ASN1_STRING_to_UTF8(&utf8,
	                                    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
	size_t len = n < 0 ? 0 : (size_t)n;

	if (len >= cap) {
		/* Cut on a character boundary, not inside a UTF-8 sequence. */
		len = cap - 1;
		while (len > 0 && (utf8[len] & 0xc0) == 0x80)
			len--;
	}
	if (len > 0)
		memcpy(out, utf8, len);
	out[len] = '\0';
	OPENSSL_free(utf8);
}

int moat_ca_describe(X509 *x, const char *field, struct moat_cert_info *info,
                     struct moat_ca_err *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	BIO *bio;
	int n;

	memset(info, 0, sizeof(*info));
	if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
		return moat_ca_ossl_fail(err, "fingerprint");
	for (unsigned i = 0; i < mdlen; i++) {
		info->fingerprint[2 * i] = hexl[md[i] >> 4];
		info->fingerprint[2 * i + 1] = hexl[md[i] & 15];
	}
	serial_hex(x, info->serial, sizeof(info->serial));
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		return moat_ca_no_memory(err);
	if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
		BIO_free(bio);
		return moat_ca_ossl_fail(err, "subject");
	}
	n = BIO_read(bio, info->subject, (int)sizeof(info->subject) - 1);
	info->subject[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
	first_cn(x, info->cn, sizeof(info->cn));
	if (asn1_time_unix(X509_get0_notBefore(x), &info->not_before) < 0 ||
	    asn1_time_unix(X509_get0_notAfter(x), &info->not_after) < 0)
		return moat_ca_fail(err, MOAT_EINVAL, "%s: validity dates do not parse", field);
	info->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
	return MOAT_OK;
}

static int bio_to_string(BIO *bio, char **out, struct moat_ca_err *err)
{
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);

	if (n <= 0)
		return moat_ca_ossl_fail(err, "PEM encoding");
	*out = moat_strndup(p, (size_t)n);
	return *out != NULL ? MOAT_OK : moat_ca_no_memory(err);
}

int moat_ca_cert_to_pem(X509 *x, char **out, struct moat_ca_err *err)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc;

	if (bio == NULL)
		return moat_ca_no_memory(err);
	rc = PEM_write_bio_X509(bio, x) == 1 ? bio_to_string(bio, out, err)
	                                     : moat_ca_ossl_fail(err, "PEM encoding");
	BIO_free(bio);
	return rc;
}

/* PKCS#8, unencrypted; the BIO's buffer is wiped when freed. */
int moat_ca_key_to_pem(EVP_PKEY *key, char **out, struct moat_ca_err *err)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	int rc;

	if (bio == NULL)
		return moat_ca_no_memory(err);
	rc = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1
	             ? bio_to_string(bio, out, err)
	             : moat_ca_ossl_fail(err, "PEM encoding");
	BIO_free(bio);
	return rc;
}

/* The first certificate of the text, described. */
static int info_from_pem(const char *pem, struct moat_cert_info *info, struct moat_ca_err *err)
{
	X509 *x = NULL;
	BIO *bio;
	int rc = check_bounded(pem, "cert", err);

	if (rc != MOAT_OK)
		return rc;
	bio = BIO_new_mem_buf(pem, (int)strlen(pem));
	if (bio == NULL)
		return moat_ca_no_memory(err);
	x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	rc = x != NULL ? moat_ca_describe(x, "cert", info, err)
	               : moat_ca_fail(err, MOAT_EINVAL, "cert: no PEM certificate");
	X509_free(x);
	return rc;
}

int moat_ca_check_import(const char *cert_pem, const char *key_pem, struct moat_cert_info *info,
                         struct moat_ca_err *err)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	uint32_t flags;
	int rc = moat_ca_load_certs(cert_pem, "cert", 1, &cert, err);

	if (rc != MOAT_OK)
		goto out;
	flags = X509_get_extension_flags(cert);
	if (flags & EXFLAG_INVALID)
		rc = moat_ca_fail(err, MOAT_EINVAL, "cert: extensions do not parse");
	else if (!(flags & EXFLAG_CA))
		rc = moat_ca_fail(err, MOAT_EINVAL,
		                  "cert: not a CA certificate (basicConstraints CA:TRUE required)");
	else if (X509_check_ca(cert) != 1)
		rc = moat_ca_fail(err, MOAT_EINVAL,
		                  "cert: keyUsage does not allow certificate signing");
	else if (moat_ca_expired(cert))
		rc = moat_ca_fail(err, MOAT_EINVAL, "cert: certificate has expired");
	if (rc == MOAT_OK && key_pem != NULL)
		rc = moat_ca_load_key(key_pem, "key", &key, err);
	if (rc == MOAT_OK && key != NULL)
		rc = moat_ca_key_matches(cert, key, "key", err);
	if (rc == MOAT_OK && info != NULL)
		rc = moat_ca_describe(cert, "cert", info, err);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

int moat_ca_check_server(const char *cert_pem, const char *key_pem, struct moat_ca_err *err)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	int rc = moat_ca_load_certs(cert_pem, "server_cert", CHAIN_MAX, &cert, err);

	if (rc == MOAT_OK)
		rc = moat_ca_load_key(key_pem, "server_key", &key, err);
	if (rc == MOAT_OK)
		rc = moat_ca_key_matches(cert, key, "server_key", err);
	X509_free(cert);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

int moat_cert_info_pem(const char *pem, struct moat_cert_info *info, struct moat_ca_err *err)
{
	int rc = info_from_pem(pem, info, err);

	ERR_clear_error();
	return rc;
}