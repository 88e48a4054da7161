/*
 * The store's records: releasing what a get or list call filled, and the device state names.
 * Independent of the backend.
 */
#include <string.h>

#include "core/alloc.h"
#include "store/store.h"

static const char *const state_names[] = {
        [MOAT_DEVICE_ACTIVE] = "active",
        [MOAT_DEVICE_QUARANTINED] = "quarantined",
        [MOAT_DEVICE_REVOKED] = "revoked",
};

const char *moat_device_state_name(enum moat_device_state s)
{
	if ((unsigned)s >= MOAT_ARRAY_LEN(state_names))
		return "unknown";
	return state_names[s];
}

int moat_device_state_parse(const char *s)
{
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < MOAT_ARRAY_LEN(state_names); i++)
		if (strcmp(s, state_names[i]) == 0)
			return (int)i;
	return -1;
}

void moat_strv_clear(struct moat_strv *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++)
		moat_free(v->v[i]);
	moat_free(v->v);
	v->v = NULL;
	v->n = 0;
}

void moat_store_tenant_clear(struct moat_store_tenant *t)
{
	if (t == NULL)
		return;
	moat_free(t->name);
	moat_strv_clear(&t->hosts);
	moat_free(t->origin);
	moat_free(t->tcp_origin);
	moat_free(t->origin_ca);
	moat_strv_clear(&t->quarantine_allow);
	moat_free(t->server_cert);
	moat_free(t->server_key_file);
	memset(t, 0, sizeof(*t));
}

void moat_store_ca_clear(struct moat_store_ca *c)
{
	if (c == NULL)
		return;
	moat_free(c->tenant);
	moat_free(c->cert);
	moat_free(c->key_file);
	moat_free(c->subject);
	moat_free(c->fingerprint);
	memset(c, 0, sizeof(*c));
}

void moat_store_device_clear(struct moat_store_device *d)
{
	if (d == NULL)
		return;
	moat_free(d->tenant);
	moat_free(d->id);
	moat_free(d->model);
	moat_free(d->firmware);
	moat_strv_clear(&d->tags);
	moat_free(d->owner);
	memset(d, 0, sizeof(*d));
}

void moat_store_cert_clear(struct moat_store_cert *c)
{
	if (c == NULL)
		return;
	moat_free(c->fingerprint);
	moat_free(c->tenant);
	moat_free(c->device);
	moat_free(c->serial);
	memset(c, 0, sizeof(*c));
}

void moat_store_rule_clear(struct moat_store_rule *r)
{
	if (r == NULL)
		return;
	moat_free(r->tenant);
	moat_free(r->id);
	moat_free(r->name);
	moat_free(r->expr);
	moat_free(r->action);
	moat_free(r->mode);
	moat_free(r->scope);
	moat_free(r->body);
	moat_free(r->description);
	moat_free(r->reference);
	memset(r, 0, sizeof(*r));
}

void moat_store_token_clear(struct moat_store_token *t)
{
	if (t == NULL)
		return;
	moat_free(t->id);
	moat_free(t->name);
	moat_free(t->tenant);
	/* also wipes the hash, which lives in the record itself */
	memset(t, 0, sizeof(*t));
}

void moat_store_audit_clear(struct moat_store_audit *a)
{
	if (a == NULL)
		return;
	moat_free(a->actor);
	moat_free(a->source);
	moat_free(a->tenant);
	moat_free(a->action);
	moat_free(a->object);
	moat_free(a->detail);
	memset(a, 0, sizeof(*a));
}

/* The *_free functions: clear each record of an array from a list call, then the array. */

void moat_store_tenants_free(struct moat_store_tenant *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_tenant_clear(&v[i]);
	moat_free(v);
}

void moat_store_cas_free(struct moat_store_ca *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_ca_clear(&v[i]);
	moat_free(v);
}

void moat_store_devices_free(struct moat_store_device *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_device_clear(&v[i]);
	moat_free(v);
}

void moat_store_certs_free(struct moat_store_cert *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_cert_clear(&v[i]);
	moat_free(v);
}

void moat_store_rules_free(struct moat_store_rule *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_rule_clear(&v[i]);
	moat_free(v);
}

void moat_store_tokens_free(struct moat_store_token *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_token_clear(&v[i]);
	moat_free(v);
}

void moat_store_audits_free(struct moat_store_audit *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_store_audit_clear(&v[i]);
	moat_free(v);
}
