/*
 * Devices of a tenant (docs/api.md, "Devices"): enrollment from a CSR or in factory mode, the
 * registry's fields, the state machine active <-> quarantined -> revoked, certificate renewal
 * and deletion. Every change is one store transaction with its audit entry; moatd is told
 * after the commit so that workers see it in the next generation.
 */
#include <stdio.h>
#include <string.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "rules/rules.h"

#define DEVICE_MAX_MODEL 128
#define DEVICE_MAX_FIRMWARE 64
#define DEVICE_MAX_TAGS 64
#define DEVICE_MAX_TAG 64
#define DEVICE_MAX_OWNER 256
#define DEVICE_MAX_ID 64 /* the certificate CN: at most 64 characters (RFC 5280) */
#define DEVICE_MAX_CSR 65536
#define DEVICE_DEFAULT_DAYS 730
#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000

/* The key material of one issued certificate, freed by issued_clear. */
struct issued {
	char *cert; /* PEM */
	char *key; /* PEM, factory mode only: a secret */
	char *ca; /* the issuing CA's PEM */
	struct moat_cert_info info;
};

static void issued_clear(struct issued *is)
{
	moat_free(is->cert);
	moat_ca_free_secret(is->key);
	moat_free(is->ca);
	memset(is, 0, sizeof(*is));
}

static int64_t now_s(const struct moat_admin_call *c)
{
	return c->req->now_ms / 1000;
}

static json_t *json_string_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void oom(struct moat_admin_call *c)
{
	admin_error(c, 500, "internal", "out of memory");
}

/* Commits when everything before went well, otherwise rolls back; returns the outcome. */
static int tx_finish(struct moat_store *s, int rc)
{
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	return rc;
}

/* After a commit: the next generation updates this device in the tenant's registry. */
static void devices_changed(struct moat_admin_call *c, const char *tenant, const char *id)
{
	admin_device_changed(c, tenant, id);
	admin_changed(c);
}

static int audit_device(struct moat_admin_call *c, const char *action, const char *tenant,
                        const char *id, json_t *detail)
{
	char object[256];

	snprintf(object, sizeof(object), "%s/%s", tenant, id);
	return admin_audit(c, action, tenant, object, detail);
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static json_t *cert_json(const struct moat_store_cert *ct)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "serial", json_string(ct->serial));
	json_object_set_new(o, "fingerprint", json_string(ct->fingerprint));
	json_object_set_new(o, "not_after", admin_time(ct->not_after));
	json_object_set_new(o, "issued_at", admin_time(ct->issued_at));
	json_object_set_new(o, "revoked_at", admin_time(ct->revoked_at));
	return o;
}

/* A device as the API shows it; with certificates when certs is not NULL. */
static json_t *device_json(const struct moat_store_device *d, const struct moat_store_cert *certs,
                           size_t ncerts)
{
	json_t *o = json_object(), *tags = json_array();

	if (o == NULL || tags == NULL) {
		json_decref(o);
		json_decref(tags);
		return NULL;
	}
	for (size_t i = 0; i < d->tags.n; i++)
		json_array_append_new(tags, json_string(d->tags.v[i]));
	json_object_set_new(o, "id", json_string(d->id));
	json_object_set_new(o, "tenant", json_string(d->tenant));
	json_object_set_new(o, "model", json_string_or_null(d->model));
	json_object_set_new(o, "firmware", json_string_or_null(d->firmware));
	json_object_set_new(o, "tags", tags);
	json_object_set_new(o, "owner", json_string_or_null(d->owner));
	json_object_set_new(o, "state", json_string(moat_device_state_name(d->state)));
	if (certs != NULL) {
		json_t *a = json_array();

		for (size_t i = 0; a != NULL && i < ncerts; i++)
			json_array_append_new(a, cert_json(&certs[i]));
		json_object_set_new(o, "certificates", a);
	}
	json_object_set_new(o, "created_at", admin_time(d->created_at));
	json_object_set_new(o, "updated_at", admin_time(d->updated_at));
	return o;
}

/*
 * Answers with the device as stored now, its certificates, and the extra fields (stolen; may
 * be NULL). Called after a commit, so a failing re-read must not turn into a 500 ("nothing
 * was written" would be false): the record the handler holds is shown instead.
 */
static void reply_device(struct moat_admin_call *c, int status, const struct moat_store_device *d,
                         json_t *extra)
{
	struct moat_store *s = c->ctx->env.store;
	struct moat_store_device fresh;
	struct moat_store_cert *certs = NULL;
	size_t ncerts = 0;
	int have_fresh, have_certs;
	json_t *o;

	memset(&fresh, 0, sizeof(fresh));
	have_fresh = moat_store_device_get(s, d->tenant, d->id, &fresh) == MOAT_OK;
	have_certs = moat_store_cert_list(s, d->tenant, d->id, &certs, &ncerts) == MOAT_OK;
	o = device_json(have_fresh ? &fresh : d, have_certs ? certs : NULL, ncerts);
	if (o != NULL && extra != NULL)
		json_object_update(o, extra);
	json_decref(extra);
	if (have_certs)
		moat_store_certs_free(certs, ncerts);
	if (have_fresh)
		moat_store_device_clear(&fresh);
	if (o == NULL) {
		oom(c);
		return;
	}
	admin_reply(c, status, o);
}

/* ---- request fields ------------------------------------------------------------------------- */

/* Replaces *field by a copy of s (NULL clears). -1 after answering when out of memory. */
static int set_owned(struct moat_admin_call *c, char **field, const char *s)
{
	char *copy = NULL;

	if (s != NULL && (copy = moat_strdup(s)) == NULL) {
		oom(c);
		return -1;
	}
	moat_free(*field);
	*field = copy;
	return 0;
}

/* A text field of the body: absent leaves *field as it is, null clears it, a string of at most
 * maxlen bytes replaces it. -1 after answering. */
static int take_text(struct moat_admin_call *c, const char *key, size_t maxlen, char **field)
{
	json_t *v = json_object_get(c->body, key);
	const char *s = NULL;

	if (v == NULL)
		return 0;
	if (json_is_null(v))
		return set_owned(c, field, NULL);
	if (admin_body_string(c, key, maxlen, ADMIN_SYNTAX_TEXT, 0, &s) < 0)
		return -1;
	return set_owned(c, field, s);
}

static int take_tags(struct moat_admin_call *c, struct moat_strv *tags)
{
	json_t *v = json_object_get(c->body, "tags");
	struct moat_strv got = {NULL, 0};

	if (v == NULL)
		return 0;
	if (!json_is_null(v) &&
	    admin_body_strv(c, "tags", DEVICE_MAX_TAGS, DEVICE_MAX_TAG, ADMIN_SYNTAX_TAG, &got) < 0)
		return -1;
	/* a tag is a set member for the rules (`"x" in device.tags`): twice is a mistake */
	for (size_t i = 0; i < got.n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (strcmp(got.v[i], got.v[j]) == 0) {
				admin_error(c, 400, "bad_request", "tags: %s is given twice",
				            got.v[i]);
				moat_strv_clear(&got);
				return -1;
			}
		}
	}
	moat_strv_clear(tags);
	*tags = got;
	return 0;
}

static int firmware_ok(const char *fw)
{
	return moat_rules_version_cmp(fw, strlen(fw), "0", 1) != MOAT_EINVAL;
}

/* model, firmware, tags, owner from the body onto d (absent: unchanged, null: cleared). */
static int take_device_fields(struct moat_admin_call *c, struct moat_store_device *d)
{
	if (take_text(c, "model", DEVICE_MAX_MODEL, &d->model) < 0 ||
	    take_text(c, "firmware", DEVICE_MAX_FIRMWARE, &d->firmware) < 0 ||
	    take_tags(c, &d->tags) < 0 || take_text(c, "owner", DEVICE_MAX_OWNER, &d->owner) < 0)
		return -1;
	if (d->firmware != NULL && !firmware_ok(d->firmware)) {
		admin_error(c, 400, "bad_request", "firmware: %s is not a version (like 1.2.0)",
		            d->firmware);
		return -1;
	}
	return 0;
}

/* The optional csr and days of enroll and renew. */
static int take_issue_fields(struct moat_admin_call *c, const char **csr, unsigned *days)
{
	int64_t d = DEVICE_DEFAULT_DAYS;

	*csr = NULL;
	if (admin_body_string(c, "csr", DEVICE_MAX_CSR, ADMIN_SYNTAX_PEM, 1, csr) < 0 ||
	    admin_body_int(c, "days", 1, MOAT_CA_MAX_DAYS, &d) < 0)
		return -1;
	*days = (unsigned)d;
	return 0;
}

/* ---- issuing -------------------------------------------------------------------------------- */

/*
 * Issues a certificate for device `id` with the tenant's signing CA: from the CSR, or with a
 * new key (factory mode) when csr is NULL. -1 after answering: 409 without a CA that has its
 * key, 400 for a CSR the CA code refuses.
 */
static int issue(struct moat_admin_call *c, const char *tenant, const char *id, const char *csr,
                 unsigned days, struct issued *out)
{
	struct moat_ca_err err = {""};
	const struct moat_ca_signer *signer = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = admin_signing_ca(c, tenant, &signer, &out->ca);
	if (rc == MOAT_ENOTFOUND) {
		admin_error(c, 409, "conflict", "tenant %s has no device CA with its private key",
		            tenant);
		return -1;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return -1;
	}
	if (csr != NULL)
		rc = moat_ca_signer_sign_csr(signer, csr, id, days, &out->cert, &out->info, &err);
	else
		rc = moat_ca_signer_issue_with_key(signer, id, days, &out->cert, &out->key,
		                                   &out->info, &err);
	if (rc == MOAT_EINVAL) {
		admin_error(c, 400, "bad_request", "%s", err.msg[0] ? err.msg : "cannot issue");
		return -1;
	}
	if (rc != MOAT_OK) {
		admin_error(c, 500, "internal", "cannot issue the certificate");
		return -1;
	}
	return 0;
}

/* The edge CA devices verify the server with; NULL when the tenant brought its own server
 * certificate (or the file cannot be read: the device then has to be given it otherwise). */
static char *server_ca_pem(struct moat_admin_call *c, const struct moat_store_tenant *t)
{
	char path[4096];
	char *pem = NULL;

	if (!t->server_cert_generated)
		return NULL;
	admin_abs_path(c, "edge-ca.crt", path, sizeof(path));
	if (moat_secret_read(path, &pem) != MOAT_OK)
		return NULL;
	return pem;
}

/* The fields an answer with a new certificate carries beside the device. */
static json_t *issued_json(const struct issued *is, const char *server_ca)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "certificate", json_string(is->cert));
	json_object_set_new(o, "ca", json_string(is->ca));
	json_object_set_new(o, "server_ca", json_string_or_null(server_ca));
	if (is->key != NULL)
		json_object_set_new(o, "key", json_string(is->key));
	return o;
}

static void cert_record(struct moat_store_cert *ct, const struct moat_store_device *d,
                        const struct issued *is, int64_t now)
{
	memset(ct, 0, sizeof(*ct));
	ct->fingerprint = (char *)is->info.fingerprint;
	ct->serial = (char *)is->info.serial;
	ct->tenant = d->tenant;
	ct->device = d->id;
	ct->not_after = is->info.not_after;
	ct->issued_at = now;
}

static json_t *issue_detail(const struct issued *is)
{
	return json_pack("{s:s, s:s, s:s}", "serial", is->info.serial, "fingerprint",
	                 is->info.fingerprint, "mode", is->key != NULL ? "factory" : "csr");
}

/* ---- common lookups ------------------------------------------------------------------------- */

/* The device of the path ({t}/{id}), checked for the caller; write: not a config tenant. The
 * tenant's record goes to t when it is not NULL (clear it). -1 after answering. */
static int load_device(struct moat_admin_call *c, int write, struct moat_store_device *d,
                       struct moat_store_tenant *t)
{
	const char *tenant = c->params[0], *id = c->params[1];
	int read_only = 0, rc;

	memset(d, 0, sizeof(*d));
	if (admin_tenant(c, tenant, write, t, &read_only) < 0)
		return -1;
	rc = moat_store_device_get(c->ctx->env.store, tenant, id, d);
	if (rc == MOAT_OK)
		return 0;
	if (rc == MOAT_ENOTFOUND)
		admin_error(c, 404, "not_found", "no device %s in tenant %s", id, tenant);
	else
		admin_store_error(c, rc);
	if (t != NULL)
		moat_store_tenant_clear(t);
	return -1;
}

/* ---- handlers ------------------------------------------------------------------------------- */

void admin_device_enroll(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"id",    "model", "firmware", "tags",
	                                      "owner", "days",  "csr",      NULL};
	struct moat_store *s = c->ctx->env.store;
	const char *tenant = c->params[0], *id = NULL, *csr = NULL;
	struct moat_store_tenant t;
	struct moat_store_device d, existing;
	struct moat_store_cert ct;
	struct issued is;
	char *server_ca = NULL;
	unsigned days;
	int read_only = 0, rc;

	memset(&t, 0, sizeof(t));
	memset(&d, 0, sizeof(d));
	memset(&is, 0, sizeof(is));
	if (admin_tenant(c, tenant, 1, &t, &read_only) < 0)
		return;
	if (admin_body_check(c, allowed, 0) < 0)
		goto out;
	rc = admin_body_string(c, "id", DEVICE_MAX_ID, ADMIN_SYNTAX_DEVICE_ID, 0, &id);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		admin_error(c, 400, "bad_request", "id is required");
		goto out;
	}
	if (take_device_fields(c, &d) < 0 || take_issue_fields(c, &csr, &days) < 0)
		goto out;

	/* refuse a duplicate before a certificate is issued for nothing */
	memset(&existing, 0, sizeof(existing));
	rc = moat_store_device_get(s, tenant, id, &existing);
	if (rc == MOAT_OK) {
		moat_store_device_clear(&existing);
		admin_error(c, 409, "conflict", "device %s already exists in tenant %s", id,
		            tenant);
		goto out;
	}
	if (rc != MOAT_ENOTFOUND) {
		admin_store_error(c, rc);
		goto out;
	}
	if (issue(c, tenant, id, csr, days, &is) < 0)
		goto out;

	if (set_owned(c, &d.tenant, tenant) < 0 || set_owned(c, &d.id, id) < 0)
		goto out;
	d.state = MOAT_DEVICE_ACTIVE;
	d.created_at = d.updated_at = now_s(c);
	cert_record(&ct, &d, &is, now_s(c));
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	rc = moat_store_device_insert(s, &d);
	if (rc == MOAT_OK)
		rc = moat_store_cert_insert(s, &ct);
	if (rc == MOAT_OK)
		rc = audit_device(c, "device.enroll", tenant, id, issue_detail(&is));
	rc = tx_finish(s, rc);
	if (rc == MOAT_EEXIST) {
		admin_error(c, 409, "conflict", "device %s already exists in tenant %s", id,
		            tenant);
		goto out;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	devices_changed(c, tenant, d.id);
	server_ca = server_ca_pem(c, &t);
	reply_device(c, 201, &d, issued_json(&is, server_ca));
out:
	moat_free(server_ca);
	issued_clear(&is);
	moat_store_device_clear(&d);
	moat_store_tenant_clear(&t);
}

/* Reads a decimal limit (1..LIST_MAX_LIMIT); 0 if malformed. */
static unsigned parse_limit(const char *v)
{
	unsigned n = 0;

	if (*v == '\0' || strlen(v) > 4)
		return 0;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return 0;
		n = n * 10 + (unsigned)(*v - '0');
	}
	return n <= LIST_MAX_LIMIT ? n : 0;
}

/* The query of a device list into f (its strings point into bufs). -1 after answering. */
static int list_filter(struct moat_admin_call *c, struct moat_store_device_filter *f,
                       char bufs[6][512])
{
	const char *state = admin_query(c, "state", bufs[0], sizeof(bufs[0]));
	const char *limit = admin_query(c, "limit", bufs[1], sizeof(bufs[1]));

	memset(f, 0, sizeof(*f));
	f->state = -1;
	f->limit = LIST_DEFAULT_LIMIT;
	f->model = admin_query(c, "model", bufs[2], sizeof(bufs[2]));
	f->firmware = admin_query(c, "firmware", bufs[3], sizeof(bufs[3]));
	f->tag = admin_query(c, "tag", bufs[4], sizeof(bufs[4]));
	f->after = admin_query(c, "after", bufs[5], sizeof(bufs[5]));
	if (state != NULL && (f->state = moat_device_state_parse(state)) < 0) {
		admin_error(c, 400, "bad_request",
		            "state must be one of active, quarantined, revoked");
		return -1;
	}
	if (limit != NULL && (f->limit = parse_limit(limit)) == 0) {
		admin_error(c, 400, "bad_request", "limit must be a number from 1 to %d",
		            LIST_MAX_LIMIT);
		return -1;
	}
	if (f->model != NULL && strlen(f->model) > DEVICE_MAX_MODEL) {
		admin_error(c, 400, "bad_request", "model: at most %d bytes", DEVICE_MAX_MODEL);
		return -1;
	}
	if (f->firmware != NULL &&
	    (strlen(f->firmware) > DEVICE_MAX_FIRMWARE || !firmware_ok(f->firmware))) {
		admin_error(c, 400, "bad_request", "firmware: not a version");
		return -1;
	}
	if (f->tag != NULL && !admin_syntax_ok(ADMIN_SYNTAX_TAG, f->tag)) {
		admin_error(c, 400, "bad_request", "tag: not a tag ([A-Za-z0-9._:-]{1,64})");
		return -1;
	}
	if (f->after != NULL && !admin_syntax_ok(ADMIN_SYNTAX_DEVICE_ID, f->after)) {
		admin_error(c, 400, "bad_request", "after: not a device id");
		return -1;
	}
	return 0;
}

void admin_device_list(struct moat_admin_call *c)
{
	const char *tenant = c->params[0];
	struct moat_store_device_filter f;
	struct moat_store_device *v = NULL;
	char bufs[6][512];
	size_t n = 0;
	int read_only = 0, more = 0, rc;
	json_t *o, *items;

	if (admin_tenant(c, tenant, 0, NULL, &read_only) < 0 || list_filter(c, &f, bufs) < 0)
		return;
	rc = moat_store_device_list(c->ctx->env.store, tenant, &f, &v, &n, &more);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return;
	}
	o = json_object();
	items = json_array();
	for (size_t i = 0; items != NULL && i < n; i++)
		json_array_append_new(items, device_json(&v[i], NULL, 0));
	if (o == NULL || items == NULL) {
		json_decref(o);
		json_decref(items);
		moat_store_devices_free(v, n);
		oom(c);
		return;
	}
	json_object_set_new(o, "items", items);
	json_object_set_new(o, "next", more && n > 0 ? json_string(v[n - 1].id) : json_null());
	moat_store_devices_free(v, n);
	admin_reply(c, 200, o);
}

void admin_device_get(struct moat_admin_call *c)
{
	struct moat_store_cert *certs = NULL;
	struct moat_store_device d;
	size_t ncerts = 0;
	json_t *o;
	int rc;

	if (load_device(c, 0, &d, NULL) < 0)
		return;
	rc = moat_store_cert_list(c->ctx->env.store, d.tenant, d.id, &certs, &ncerts);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		moat_store_device_clear(&d);
		return;
	}
	o = device_json(&d, certs, ncerts);
	moat_store_certs_free(certs, ncerts);
	moat_store_device_clear(&d);
	if (o == NULL) {
		oom(c);
		return;
	}
	admin_reply(c, 200, o);
}

/* Stores d (already changed) with an audit entry; answers 500 on failure. */
static int save_device(struct moat_admin_call *c, struct moat_store_device *d, const char *action,
                       json_t *detail)
{
	struct moat_store *s = c->ctx->env.store;
	int rc;

	d->updated_at = now_s(c);
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		json_decref(detail);
		admin_store_error(c, rc);
		return -1;
	}
	rc = moat_store_device_update(s, d);
	if (rc == MOAT_OK && d->state == MOAT_DEVICE_REVOKED)
		rc = moat_store_cert_revoke_device(s, d->tenant, d->id, now_s(c));
	if (rc == MOAT_OK)
		rc = audit_device(c, action, d->tenant, d->id, detail);
	else
		json_decref(detail);
	rc = tx_finish(s, rc);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return -1;
	}
	devices_changed(c, d->tenant, d->id);
	return 0;
}

void admin_device_update(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"model", "firmware", "tags", "owner", NULL};
	struct moat_store_device d;

	if (load_device(c, 1, &d, NULL) < 0)
		return;
	if (admin_body_check(c, allowed, 0) == 0 && take_device_fields(c, &d) == 0 &&
	    save_device(c, &d, "device.update", json_deep_copy(c->body)) == 0)
		reply_device(c, 200, &d, NULL);
	moat_store_device_clear(&d);
}

/*
 * A state change. `from` is the state it applies to; a device already in `to` answers 200
 * without a change (a retried call is harmless); a revoked device cannot change any more.
 */
static void change_state(struct moat_admin_call *c, enum moat_device_state to, const char *action)
{
	static const char *const allowed[] = {NULL};
	struct moat_store_device d;
	json_t *detail;

	if (load_device(c, 1, &d, NULL) < 0)
		return;
	if (admin_body_check(c, allowed, 1) < 0)
		goto out;
	if (d.state == to) {
		reply_device(c, 200, &d, NULL);
		goto out;
	}
	if (d.state == MOAT_DEVICE_REVOKED) {
		admin_error(c, 409, "conflict", "device %s is revoked", d.id);
		goto out;
	}
	detail = json_pack("{s:s, s:s}", "from", moat_device_state_name(d.state), "to",
	                   moat_device_state_name(to));
	d.state = to;
	if (save_device(c, &d, action, detail) == 0)
		reply_device(c, 200, &d, NULL);
out:
	moat_store_device_clear(&d);
}

void admin_device_quarantine(struct moat_admin_call *c)
{
	change_state(c, MOAT_DEVICE_QUARANTINED, "device.quarantine");
}

void admin_device_release(struct moat_admin_call *c)
{
	change_state(c, MOAT_DEVICE_ACTIVE, "device.release");
}

void admin_device_revoke(struct moat_admin_call *c)
{
	change_state(c, MOAT_DEVICE_REVOKED, "device.revoke");
}

void admin_device_renew(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"csr", "days", "revoke_previous", NULL};
	struct moat_store *s = c->ctx->env.store;
	const char *tenant = c->params[0], *csr = NULL;
	struct moat_store_tenant t;
	struct moat_store_device d;
	struct moat_store_cert ct;
	struct issued is;
	char *server_ca = NULL;
	int revoke_previous = 0, rc;
	unsigned days;
	json_t *detail;

	memset(&is, 0, sizeof(is));
	if (load_device(c, 1, &d, &t) < 0)
		return;
	if (admin_body_check(c, allowed, 1) < 0 || take_issue_fields(c, &csr, &days) < 0 ||
	    admin_body_bool(c, "revoke_previous", &revoke_previous) < 0)
		goto out;
	if (d.state == MOAT_DEVICE_REVOKED) {
		admin_error(c, 409, "conflict", "device %s is revoked", d.id);
		goto out;
	}
	if (issue(c, tenant, d.id, csr, days, &is) < 0)
		goto out;

	cert_record(&ct, &d, &is, now_s(c));
	detail = issue_detail(&is);
	json_object_set_new(detail, "revoke_previous", json_boolean(revoke_previous));
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		json_decref(detail);
		admin_store_error(c, rc);
		goto out;
	}
	/* the older certificates go first, so the new one is not caught by the revocation */
	if (revoke_previous)
		rc = moat_store_cert_revoke_device(s, tenant, d.id, now_s(c));
	if (rc == MOAT_OK)
		rc = moat_store_cert_insert(s, &ct);
	if (rc == MOAT_OK)
		rc = audit_device(c, "device.renew", tenant, d.id, detail);
	else
		json_decref(detail);
	rc = tx_finish(s, rc);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	devices_changed(c, tenant, d.id);
	server_ca = server_ca_pem(c, &t);
	reply_device(c, 200, &d, issued_json(&is, server_ca));
out:
	moat_free(server_ca);
	issued_clear(&is);
	moat_store_device_clear(&d);
	moat_store_tenant_clear(&t);
}

void admin_device_delete(struct moat_admin_call *c)
{
	struct moat_store *s = c->ctx->env.store;
	struct moat_store_device d;
	int rc;

	if (load_device(c, 1, &d, NULL) < 0)
		return;
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	/* revoked first: the certificates stay on the tenant's revocation list after the device
	 * record is gone, so a copied key cannot come back as an unknown device */
	rc = moat_store_cert_revoke_device(s, d.tenant, d.id, now_s(c));
	if (rc == MOAT_OK)
		rc = moat_store_device_delete(s, d.tenant, d.id);
	if (rc == MOAT_OK)
		rc = audit_device(c, "device.delete", d.tenant, d.id, NULL);
	rc = tx_finish(s, rc);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	devices_changed(c, d.tenant, d.id);
	admin_no_content(c);
out:
	moat_store_device_clear(&d);
}
