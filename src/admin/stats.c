/*
 * Statistics (docs/api.md, "Statistics"): the workers' counters per tenant and per device
 * (core/stats.h) and the rule hit counters of the running generation. Nothing here is kept
 * across restarts; without a counters table (tests, or before the first request) every count
 * is zero.
 */
#include <stdio.h>
#include <string.h>

#include "admin/internal.h"
#include "core/gen.h"
#include "rules/rules.h"

static uint64_t load_u(const atomic_uint_fast64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static int64_t load_i(const atomic_int_fast64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static void reply_json(struct moat_admin_call *c, int status, json_t *o)
{
	if (o == NULL)
		admin_error(c, 500, "internal", "out of memory");
	else
		admin_reply(c, status, o);
}

/* requests, blocked, bytes_in, bytes_out of a counters object (NULL: zeros) into o. */
static void traffic_json(json_t *o, const struct moat_counters *k)
{
	json_object_set_new(o, "requests", json_integer(k ? (json_int_t)load_u(&k->requests) : 0));
	json_object_set_new(o, "blocked", json_integer(k ? (json_int_t)load_u(&k->blocked) : 0));
	json_object_set_new(o, "bytes_in", json_integer(k ? (json_int_t)load_u(&k->bytes_in) : 0));
	json_object_set_new(o, "bytes_out",
	                    json_integer(k ? (json_int_t)load_u(&k->bytes_out) : 0));
}

/* A connection count that went below zero for a moment (a close counted before its open on
 * another path) shows as zero. */
static json_int_t connected(const struct moat_counters *k)
{
	int64_t n = k != NULL ? load_i(&k->connected) : 0;

	return n > 0 ? (json_int_t)n : 0;
}

static json_t *hits_json(const struct moat_rule *r)
{
	uint64_t enforce = r != NULL ? load_u(&r->hits_enforce) : 0;
	uint64_t dry_run = r != NULL ? load_u(&r->hits_dry_run) : 0;

	return json_pack("{s:I, s:I}", "enforce", (json_int_t)enforce, "dry_run",
	                 (json_int_t)dry_run);
}

/* The live rule of the tenant with this id in the given scope (-1: any), or NULL. */
static const struct moat_rule *live_rule(const struct moat_tenant *t, int scope, const char *id)
{
	for (int s = 0; t != NULL && s < 2; s++) {
		const struct moat_ruleset *rs = s == 0 ? t->rules : t->tcp_rules;
		size_t n = rs != NULL ? moat_ruleset_count(rs) : 0;

		if (scope >= 0 && scope != s)
			continue;
		for (size_t i = 0; i < n; i++) {
			const struct moat_rule *r = moat_ruleset_rule(rs, i);

			if (strcmp(r->id, id) == 0)
				return r;
		}
	}
	return NULL;
}

static json_t *rule_hits_entry(const char *id, const struct moat_rule *r)
{
	return json_pack("{s:s, s:o}", "id", id, "hits", hits_json(r));
}

/* The tenant's rules with their hits: the stored ones in evaluation order (a rule not yet in
 * the generation has none), or, for a config tenant, the generation's. */
static int rules_hits(struct moat_admin_call *c, const char *tenant, int read_only, json_t *items)
{
	struct moat_gen *g = moat_gen_acquire_current();
	struct moat_tenant *t = g != NULL ? moat_gen_tenant_by_name(g, tenant) : NULL;
	struct moat_store_rule *all = NULL;
	size_t n = 0;
	int rc = MOAT_OK;

	if (read_only) {
		for (int s = 0; t != NULL && s < 2; s++) {
			const struct moat_ruleset *rs = s == 0 ? t->rules : t->tcp_rules;

			for (size_t i = 0; rs != NULL && i < moat_ruleset_count(rs); i++) {
				const struct moat_rule *r = moat_ruleset_rule(rs, i);

				json_array_append_new(items, rule_hits_entry(r->id, r));
			}
		}
		goto out;
	}
	rc = moat_store_rule_list(c->ctx->env.store, tenant, &all, &n);
	if (rc != MOAT_OK)
		goto out;
	for (size_t i = 0; i < n; i++) {
		int scope = strcmp(all[i].scope, "tcp") == 0;

		json_array_append_new(items,
		                      rule_hits_entry(all[i].id, live_rule(t, scope, all[i].id)));
	}
	moat_store_rules_free(all, n);
out:
	if (g != NULL)
		moat_gen_release(g);
	return rc;
}

struct connected_count {
	uint64_t n;
};

static void count_connected(void *arg, const char *device, const struct moat_counters *k)
{
	struct connected_count *cc = arg;

	if (load_i(&k->connected) > 0)
		cc->n++;
}

void admin_stats_tenant(struct moat_admin_call *c)
{
	const char *tenant = c->params[0];
	const struct moat_stats *st = c->ctx->env.stats;
	const struct moat_counters *k = st != NULL ? moat_stats_find_tenant(st, tenant) : NULL;
	struct connected_count cc = {0};
	uint64_t devices = 0;
	int read_only = 0, rc;
	json_t *o, *rules;

	if (admin_tenant(c, tenant, 0, NULL, &read_only) < 0)
		return;
	rc = moat_store_device_count(c->ctx->env.store, tenant, &devices);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return;
	}
	rules = json_array();
	if (rules == NULL) {
		reply_json(c, 500, NULL);
		return;
	}
	rc = rules_hits(c, tenant, read_only, rules);
	if (rc != MOAT_OK) {
		json_decref(rules);
		admin_store_error(c, rc);
		return;
	}
	if (st != NULL)
		moat_stats_each_device(st, tenant, count_connected, &cc);
	o = json_object();
	if (o == NULL) {
		json_decref(rules);
		reply_json(c, 500, NULL);
		return;
	}
	json_object_set_new(o, "tenant", json_string(tenant));
	traffic_json(o, k);
	json_object_set_new(o, "connections_now", json_integer(connected(k)));
	json_object_set_new(o, "devices", json_integer((json_int_t)devices));
	json_object_set_new(o, "devices_connected", json_integer((json_int_t)cc.n));
	json_object_set_new(o, "rules", rules);
	reply_json(c, 200, o);
}

void admin_stats_device(struct moat_admin_call *c)
{
	const char *tenant = c->params[0], *id = c->params[1];
	const struct moat_stats *st = c->ctx->env.stats;
	const struct moat_counters *k = NULL;
	struct moat_store_device d;
	int read_only = 0, rc;
	int64_t last_ms;
	json_t *o;

	if (admin_tenant(c, tenant, 0, NULL, &read_only) < 0)
		return;
	if (st != NULL)
		k = moat_stats_find_device(st, tenant, id);
	memset(&d, 0, sizeof(d));
	rc = moat_store_device_get(c->ctx->env.store, tenant, id, &d);
	if (rc == MOAT_OK)
		moat_store_device_clear(&d);
	/* a config tenant's devices are not in the store: those that connected are known */
	if (rc == MOAT_ENOTFOUND && !(read_only && k != NULL)) {
		admin_error(c, 404, "not_found", "no device %s in tenant %s", id, tenant);
		return;
	}
	if (rc != MOAT_OK && rc != MOAT_ENOTFOUND) {
		admin_store_error(c, rc);
		return;
	}
	o = json_object();
	if (o == NULL) {
		reply_json(c, 500, NULL);
		return;
	}
	last_ms = k != NULL ? load_i(&k->last_seen_ms) : 0;
	json_object_set_new(o, "device", json_string(id));
	traffic_json(o, k);
	json_object_set_new(o, "last_seen", admin_time(last_ms > 0 ? last_ms / 1000 : 0));
	json_object_set_new(o, "connected_now", json_integer(connected(k)));
	reply_json(c, 200, o);
}

void admin_stats_rule(struct moat_admin_call *c)
{
	const char *tenant = c->params[0], *id = c->params[1];
	struct moat_store_rule r;
	struct moat_gen *g;
	const struct moat_rule *live;
	int read_only = 0, scope = -1, rc;

	if (admin_tenant(c, tenant, 0, NULL, &read_only) < 0)
		return;
	memset(&r, 0, sizeof(r));
	if (!read_only) {
		rc = moat_store_rule_get(c->ctx->env.store, tenant, id, &r);
		if (rc == MOAT_ENOTFOUND) {
			admin_error(c, 404, "not_found", "no rule %s in tenant %s", id, tenant);
			return;
		}
		if (rc != MOAT_OK) {
			admin_store_error(c, rc);
			return;
		}
		scope = strcmp(r.scope, "tcp") == 0;
		moat_store_rule_clear(&r);
	}
	g = moat_gen_acquire_current();
	live = live_rule(g != NULL ? moat_gen_tenant_by_name(g, tenant) : NULL, scope, id);
	if (read_only && live == NULL) {
		if (g != NULL)
			moat_gen_release(g);
		admin_error(c, 404, "not_found", "no rule %s in tenant %s", id, tenant);
		return;
	}
	reply_json(c, 200, json_pack("{s:s, s:o}", "rule", id, "hits", hits_json(live)));
	if (g != NULL)
		moat_gen_release(g);
}
