/*
 * Certificate authority work for the control plane: device CAs (generated ECDSA P-256 or
 * imported), device certificates issued from a CSR or with a generated key (factory mode), and
 * the edge's own server certificates for tenants created through the API.
 *
 * Everything is PEM in and PEM out; strings returned through `char **` are allocated with
 * moat_malloc and the caller frees them (private keys with moat_ca_free_secret, which wipes
 * them first). Failures return MOAT_EINVAL (bad input: the reason in `err`, written for the
 * API's "detail" field, e.g. "csr: signature does not verify") or MOAT_ENOMEM / MOAT_EIO.
 */
#ifndef MOAT_TLS_CA_H
#define MOAT_TLS_CA_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

/* Facts about one certificate. */
struct moat_cert_info {
	char fingerprint[65]; /* lowercase hex SHA-256 of the DER */
	char serial[130]; /* uppercase hex, two digits per byte, no separators */
	char subject[512]; /* RFC 2253 one-line form */
	char cn[257]; /* the subject's commonName, "" if none */
	int64_t not_before, not_after; /* Unix seconds */
	int is_ca; /* basicConstraints CA:TRUE */
};

/* Reasons are written here: a short sentence, NUL-terminated. */
struct moat_ca_err {
	char msg[256];
};

/* Longest validity accepted for anything issued (days). */
#define MOAT_CA_MAX_DAYS 36500

/* A new self-signed ECDSA P-256 CA, "CN=<cn>", valid `days`, pathlen 0, keyCertSign+cRLSign. */
int moat_ca_generate(const char *cn, unsigned days, char **cert_pem, char **key_pem,
                     struct moat_cert_info *info, struct moat_ca_err *err) MOAT_WUR;

/*
 * Checks a CA to import: exactly one certificate, a CA (basicConstraints CA:TRUE), not
 * expired; if key_pem is not NULL, a private key that matches it. Fills info.
 */
int moat_ca_check_import(const char *cert_pem, const char *key_pem, struct moat_cert_info *info,
                         struct moat_ca_err *err) MOAT_WUR;

/*
 * The device CA that issues device certificates, parsed once: decoding a PEM key costs more
 * than signing with it. moat_ca_signer_new checks the CA: a CA certificate, in date, the key
 * matching it. A signer is read-only once made, but OpenSSL keys are not to be shared between
 * threads that sign at once: use one from one thread.
 */
struct moat_ca_signer;

int moat_ca_signer_new(const char *ca_cert_pem, const char *ca_key_pem, struct moat_ca_signer **out,
                       struct moat_ca_err *err) MOAT_WUR;
void moat_ca_signer_free(struct moat_ca_signer *s);

/*
 * Issues a device certificate from a CSR (PEM). The CSR's signature must verify, its key
 * must be EC P-256/P-384, Ed25519 or RSA of at least 2048 bits, and its subject CN, if any,
 * must equal device_id. The certificate: subject CN=device_id, a 128-bit random serial,
 * validity `days` from now (capped at the CA's expiry), clientAuth extended key usage, the
 * CA's key identifier. Fills info of the new certificate. Refused once the CA has expired.
 */
int moat_ca_signer_sign_csr(const struct moat_ca_signer *s, const char *csr_pem,
                            const char *device_id, unsigned days, char **cert_pem,
                            struct moat_cert_info *info, struct moat_ca_err *err) MOAT_WUR;

/* Factory mode: generates an ECDSA P-256 key for the device and issues its certificate as
 * moat_ca_signer_sign_csr does. */
int moat_ca_signer_issue_with_key(const struct moat_ca_signer *s, const char *device_id,
                                  unsigned days, char **cert_pem, char **key_pem,
                                  struct moat_cert_info *info, struct moat_ca_err *err) MOAT_WUR;

/*
 * A server certificate for the edge: a new ECDSA P-256 key, subjectAltName DNS entries for
 * each host (wildcards as given), serverAuth, issued by the node's edge CA.
 */
int moat_ca_issue_server(const char *ca_cert_pem, const char *ca_key_pem, const char *const *hosts,
                         size_t nhosts, unsigned days, char **cert_pem, char **key_pem,
                         struct moat_ca_err *err) MOAT_WUR;

/* Checks a server certificate chain and key to import: parseable, matching. */
int moat_ca_check_server(const char *cert_pem, const char *key_pem,
                         struct moat_ca_err *err) MOAT_WUR;

/* Facts about the first certificate of a PEM text. */
int moat_cert_info_pem(const char *pem, struct moat_cert_info *info,
                       struct moat_ca_err *err) MOAT_WUR;

/*
 * Writes a private key to `path` with mode 0600 (created exclusively; the directory is made
 * 0700 if missing), fsynced. MOAT_EIO with errno kept on failure.
 */
int moat_secret_write(const char *path, const char *pem) MOAT_WUR;

/* Reads a whole file (a key) into a NUL-terminated string. MOAT_ENOTFOUND, MOAT_EIO. */
int moat_secret_read(const char *path, char **pem) MOAT_WUR;

/* Wipes and frees a secret string (NULL is fine). */
void moat_ca_free_secret(char *pem);

#endif
