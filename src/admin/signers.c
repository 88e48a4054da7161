/*
 * The tenants' signing CAs, parsed once and kept. Decoding a CA's PEM certificate and key took
 * about a third of every enrollment (OpenSSL's decoders are slow to set up); a kept signer
 * makes enrolling a fleet at the factory cost little more than the signature.
 *
 * The store stays the truth: each enrollment still reads the tenant's CA list and picks the
 * signing CA there, and a kept signer is used only if it was made from that same CA (row,
 * certificate and key file). Deleting a CA or a tenant forgets its signers, so that no key
 * outlives its CA in memory. The admin API runs on one thread: no lock.
 */
#include <string.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/log.h"
#include "tls/ca.h"

#define SIGNERS_MAX 32 /* tenants enrolling at the same time; the least recently used goes */

struct kept_signer {
	char *tenant; /* NULL: a free slot */
	int64_t ca_id;
	char *cert; /* the CA's PEM, as stored */
	char *key_file;
	struct moat_ca_signer *signer;
	uint64_t used; /* admin_signers.clock at the last use */
};

struct admin_signers {
	struct kept_signer v[SIGNERS_MAX];
	uint64_t clock;
};

struct admin_signers *admin_signers_new(void)
{
	return moat_calloc(1, sizeof(struct admin_signers));
}

static void slot_clear(struct kept_signer *k)
{
	moat_free(k->tenant);
	moat_free(k->cert);
	moat_free(k->key_file);
	moat_ca_signer_free(k->signer);
	memset(k, 0, sizeof(*k));
}

void admin_signers_free(struct admin_signers *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < SIGNERS_MAX; i++)
		slot_clear(&s->v[i]);
	moat_free(s);
}

void admin_signers_forget(struct admin_signers *s, const char *tenant)
{
	for (int i = 0; s != NULL && i < SIGNERS_MAX; i++)
		if (s->v[i].tenant != NULL && strcmp(s->v[i].tenant, tenant) == 0)
			slot_clear(&s->v[i]);
}

static struct kept_signer *find(struct admin_signers *s, const char *tenant,
                                const struct moat_store_ca *ca)
{
	for (int i = 0; i < SIGNERS_MAX; i++) {
		struct kept_signer *k = &s->v[i];

		if (k->tenant != NULL && k->ca_id == ca->id && strcmp(k->tenant, tenant) == 0 &&
		    strcmp(k->key_file, ca->key_file) == 0 && strcmp(k->cert, ca->cert) == 0)
			return k;
	}
	return NULL;
}

/* A slot for a new signer: the tenant's own (it signs with one CA at a time), a free one, or
 * the least recently used. */
static struct kept_signer *slot_for(struct admin_signers *s, const char *tenant)
{
	struct kept_signer *lru = &s->v[0];

	for (int i = 0; i < SIGNERS_MAX; i++) {
		struct kept_signer *k = &s->v[i];

		if (k->tenant == NULL || strcmp(k->tenant, tenant) == 0) {
			lru = k;
			break;
		}
		if (k->used < lru->used)
			lru = k;
	}
	slot_clear(lru);
	return lru;
}

/* Reads the CA's key file and makes its signer. */
static int make_signer(struct moat_admin_call *c, const char *tenant,
                       const struct moat_store_ca *ca, struct moat_ca_signer **out)
{
	struct moat_ca_err err = {""};
	char abs[ADMIN_PATH_CAP];
	char *key = NULL;
	int rc;

	admin_abs_path(c, ca->key_file, abs, sizeof(abs));
	rc = moat_secret_read(abs, &key);
	if (rc != MOAT_OK) {
		moat_log_error("admin: reading the key of CA %lld of %s (%s) failed",
		               (long long)ca->id, tenant, abs);
		return rc == MOAT_ENOMEM ? rc : MOAT_EIO;
	}
	rc = moat_ca_signer_new(ca->cert, key, out, &err);
	moat_ca_free_secret(key);
	if (rc != MOAT_OK) {
		moat_log_error("admin: CA %lld of %s cannot sign: %s", (long long)ca->id, tenant,
		               err.msg);
		return rc == MOAT_ENOMEM ? rc : MOAT_EIO;
	}
	return MOAT_OK;
}

/* Keeps the signer made from `ca` (freed if it cannot be kept). */
static struct kept_signer *keep(struct admin_signers *s, const char *tenant,
                                const struct moat_store_ca *ca, struct moat_ca_signer *signer)
{
	struct kept_signer *k = slot_for(s, tenant);

	k->signer = signer;
	k->ca_id = ca->id;
	k->tenant = moat_strdup(tenant);
	k->cert = moat_strdup(ca->cert);
	k->key_file = moat_strdup(ca->key_file);
	if (k->tenant == NULL || k->cert == NULL || k->key_file == NULL) {
		slot_clear(k);
		return NULL;
	}
	return k;
}

int admin_signing_ca(struct moat_admin_call *c, const char *tenant,
                     const struct moat_ca_signer **signer, char **cert_pem)
{
	struct admin_signers *s = c->ctx->signers;
	struct moat_store_ca *v = NULL;
	struct kept_signer *k;
	int64_t now = c->req->now_ms / 1000;
	size_t n = 0, i;
	int rc = moat_store_ca_list(c->ctx->env.store, tenant, &v, &n);

	*signer = NULL;
	*cert_pem = NULL;
	if (rc != MOAT_OK)
		return rc;
	/* the newest unexpired CA with a key */
	for (i = n; i-- > 0;)
		if (v[i].key_file != NULL && v[i].not_after > now)
			break;
	if (i == (size_t)-1) {
		rc = MOAT_ENOTFOUND;
		goto out;
	}
	k = find(s, tenant, &v[i]);
	if (k == NULL) {
		struct moat_ca_signer *made = NULL;

		rc = make_signer(c, tenant, &v[i], &made);
		if (rc != MOAT_OK)
			goto out;
		k = keep(s, tenant, &v[i], made);
		if (k == NULL) {
			rc = MOAT_ENOMEM;
			goto out;
		}
	}
	*cert_pem = moat_strdup(v[i].cert);
	if (*cert_pem == NULL) {
		rc = MOAT_ENOMEM;
		goto out;
	}
	k->used = ++s->clock;
	*signer = k->signer;
out:
	moat_store_cas_free(v, n);
	return rc;
}
