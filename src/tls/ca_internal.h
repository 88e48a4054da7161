/*
 * Shared between the files of the certificate authority (ca.c: PEM parsing and checks,
 * ca_issue.c: issuing). Nothing here is used outside src/tls/ca*.c.
 */
#ifndef MOAT_TLS_CA_INTERNAL_H
#define MOAT_TLS_CA_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tls/ca.h"

/* Writes the reason into err (if not NULL) and returns rc. */
int moat_ca_fail(struct moat_ca_err *err, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* An OpenSSL call failed on checked input: MOAT_ENOMEM if it ran out of memory, else MOAT_EIO. */
int moat_ca_ossl_fail(struct moat_ca_err *err, const char *what);
/* MOAT_ENOMEM with its message. */
int moat_ca_no_memory(struct moat_ca_err *err);
/* Untrusted text made safe to quote in a message: printable ASCII, at most 64 bytes. */
void moat_ca_quote(char *out, size_t cap, const unsigned char *s, size_t n);

/*
 * PEM input, bounded to 64 KiB. Errors name `field`. moat_ca_load_certs wants exactly one
 * certificate when max is 1, otherwise 1..max, and returns the first; nothing but certificates
 * may be in the text. The caller frees what is returned.
 */
int moat_ca_load_certs(const char *pem, const char *field, int max, X509 **out,
                       struct moat_ca_err *err) MOAT_WUR;
/* Exactly one CSR; errors name "csr". */
int moat_ca_load_csr(const char *pem, X509_REQ **out, struct moat_ca_err *err) MOAT_WUR;
/* An unencrypted private key (a passphrase is never asked for). */
int moat_ca_load_key(const char *pem, const char *field, EVP_PKEY **out,
                     struct moat_ca_err *err) MOAT_WUR;
/* MOAT_EINVAL "<field>: does not match the certificate" unless key is cert's key. */
int moat_ca_key_matches(X509 *cert, EVP_PKEY *key, const char *field,
                        struct moat_ca_err *err) MOAT_WUR;
/* Whether the certificate's notAfter has passed (or does not parse). */
int moat_ca_expired(const X509 *x);

/* Fills info from a parsed certificate; errors name `field`. */
int moat_ca_describe(X509 *x, const char *field, struct moat_cert_info *info,
                     struct moat_ca_err *err) MOAT_WUR;

/* PEM encodings in moat_malloc'd strings; keys as unencrypted PKCS#8. */
int moat_ca_cert_to_pem(X509 *x, char **out, struct moat_ca_err *err) MOAT_WUR;
int moat_ca_key_to_pem(EVP_PKEY *key, char **out, struct moat_ca_err *err) MOAT_WUR;

#endif
