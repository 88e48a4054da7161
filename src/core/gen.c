#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/alloc.h"
#include "core/gen.h"
#include "core/log.h"
#include "tls/tls.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct moat_gen *current;
static uint64_t next_id = 1;

static void derive(const unsigned char *secret, const char *label, const char *name,
                   unsigned char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "moat ticket %s|%s", label, name);

	HMAC(EVP_sha256(), secret, 32, (const unsigned char *)msg, (size_t)n, md, &mdlen);
	memcpy(out, md, outlen < mdlen ? outlen : mdlen);
	OPENSSL_cleanse(md, sizeof(md));
}

static int trust_digest(struct moat_tenant *t)
{
	const struct moat_config_tenant *c = t->cfg;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int len = 0;
	int rc = -1;

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	EVP_DigestUpdate(md, &c->mtls, sizeof(c->mtls));
	EVP_DigestUpdate(md, &c->device_id, sizeof(c->device_id));
	if (c->device_ca_pem != NULL)
		EVP_DigestUpdate(md, c->device_ca_pem, strlen(c->device_ca_pem));
	for (size_t i = 0; i < c->ndevice_cas; i++) {
		char buf[8192];
		size_t n;
		FILE *f = fopen(c->device_cas[i], "rb");

		if (f == NULL)
			goto out;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			EVP_DigestUpdate(md, buf, n);
		fclose(f);
	}
	if (EVP_DigestFinal_ex(md, t->trust_digest, &len) == 1 && len == sizeof(t->trust_digest))
		rc = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

/* Resolves an origin's host once per generation: the request path never waits for DNS. */
static int resolve(const char *host, uint16_t port_num, unsigned line, const char *key,
                   const char *file, moat_config_report_fn report, void *arg,
                   struct sockaddr_storage *addr, socklen_t *addrlen, char *numeric, size_t cap)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	char msg[400];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", port_num);
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(msg, sizeof(msg), "%s: cannot resolve %s: %s", key, host,
		         gai_strerror(rc));
		report(arg, file, line, msg);
		return MOAT_EINVAL;
	}
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*addrlen = res->ai_addrlen;
	if (getnameinfo(res->ai_addr, res->ai_addrlen, numeric, (socklen_t)cap, NULL, 0,
	                NI_NUMERICHOST) != 0)
		numeric[0] = '\0';
	freeaddrinfo(res);
	return MOAT_OK;
}

struct rules_report {
	moat_config_report_fn report;
	void *arg;
};

/* Rule errors reach the same reporter as config errors, with the column and a caret under it
 * (moatd -t prints them as they are; the error log folds them onto one line). */
static void rules_error(void *arg, const struct moat_rules_error *e)
{
	struct rules_report *r = arg;
	char msg[1024];
	int n;

	n = snprintf(msg, sizeof(msg), "column %u: %s%s%s%s", e->col, e->rule_id ? "rule " : "",
	             e->rule_id ? e->rule_id : "", e->rule_id ? ": " : "", e->msg);
	if (e->source_line != NULL && n > 0 && (size_t)n < sizeof(msg) - 8) {
		size_t len = (size_t)n;

		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "\n    %s\n    ",
		                        e->source_line);
		/* the caret's padding copies the line's tabs, so it lands under the column
		 * whatever the tab width */
		for (unsigned i = 0;
		     i + 1 < e->col && e->source_line[i] != '\0' && len < sizeof(msg) - 2; i++)
			msg[len++] = e->source_line[i] == '\t' ? '\t' : ' ';
		if (len < sizeof(msg) - 1) {
			msg[len++] = '^';
			msg[len] = '\0';
		}
	}
	r->report(r->arg, e->file, e->line, msg);
}

static int by_rule_id(const void *a, const void *b)
{
	return strcmp((*(struct moat_rule *const *)a)->id, (*(struct moat_rule *const *)b)->id);
}

static void carry_counters(struct moat_ruleset *to, const struct moat_ruleset *from)
{
	/* Hit counters survive reloads for rules that keep their id. A worker may still count
	 * a hit or two on the old generation after the copy; those are lost. */
	size_t n = from != NULL ? moat_ruleset_count(from) : 0;
	struct moat_rule **old;

	if (n == 0 || to == NULL)
		return;
	old = moat_calloc(n, sizeof(*old));
	if (old == NULL)
		return; /* counters restart from zero: not worth refusing a reload over */
	for (size_t j = 0; j < n; j++)
		old[j] = moat_ruleset_rule(from, j);
	qsort(old, n, sizeof(*old), by_rule_id);
	for (size_t i = 0; i < moat_ruleset_count(to); i++) {
		struct moat_rule *r = moat_ruleset_rule(to, i);
		struct moat_rule key, *kp = &key, **o;

		memcpy(key.id, r->id, sizeof(key.id));
		o = bsearch(&kp, old, n, sizeof(*old), by_rule_id);
		if (o == NULL)
			continue;
		atomic_store(&r->hits_enforce, atomic_load(&(*o)->hits_enforce));
		atomic_store(&r->hits_dry_run, atomic_load(&(*o)->hits_dry_run));
	}
	moat_free(old);
}

static int rule_action(const char *s, enum moat_rule_action *a)
{
	static const enum moat_rule_action all[] = {MOAT_RULE_BLOCK, MOAT_RULE_LOG, MOAT_RULE_ALLOW,
	                                            MOAT_RULE_CLOSE};

	for (size_t i = 0; i < MOAT_ARRAY_LEN(all); i++)
		if (s != NULL && strcmp(s, moat_rule_action_name(all[i])) == 0) {
			*a = all[i];
			return 0;
		}
	return -1;
}

/* Compiles the store's rules of one scope for a tenant; *out NULL if it has none. */
/* One scope of a tenant's rule records, compiled (quick: without the prefilter, and only for a
 * set large enough to need it); *out NULL if the scope has no rule. */
static int compile_records(const struct moat_store_rule *v, size_t n, const char *scope_name,
                           enum moat_rules_scope scope, const struct moat_rules_limits *lim,
                           int fast, int *was_fast, moat_rules_report_fn report, void *arg,
                           struct moat_ruleset **out)
{
	struct moat_rule *defs;
	size_t k = 0;
	int rc;

	*out = NULL;
	defs = moat_calloc(n + 1, sizeof(*defs));
	if (defs == NULL)
		return MOAT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct moat_rule *d = &defs[k];

		if (v[i].scope == NULL || strcmp(v[i].scope, scope_name) != 0)
			continue;
		snprintf(d->id, sizeof(d->id), "%s", v[i].id);
		d->name = v[i].name;
		d->description = v[i].description;
		d->reference = v[i].reference;
		d->expr = v[i].expr;
		d->body = v[i].body;
		d->status = v[i].status > 0 ? v[i].status : 403;
		d->enabled = v[i].enabled;
		d->mode = v[i].mode != NULL && strcmp(v[i].mode, "dry-run") == 0
		                  ? MOAT_RULE_DRY_RUN
		                  : MOAT_RULE_ENFORCE;
		if (rule_action(v[i].action, &d->action) < 0)
			d->action = MOAT_RULE_BLOCK;
		d->line = (unsigned)(i + 1);
		k++;
	}
	fast = fast && k > MOAT_GEN_FAST_RULES;
	if (fast)
		*was_fast = 1;
	rc = k == 0 ? MOAT_OK
	            : moat_rules_build_flags(defs, k, scope, lim,
	                                     fast ? MOAT_RULES_BUILD_NO_PREFILTER : 0, report, arg,
	                                     out);
	moat_free(defs);
	return rc;
}

int moat_gen_compile_rules(const struct moat_store_rule *v, size_t n,
                           const struct moat_rules_limits *lim, struct moat_ruleset **http,
                           struct moat_ruleset **tcp)
{
	int unused = 0;
	int rc = compile_records(v, n, "http", MOAT_RULES_HTTP, lim, 0, &unused, NULL, NULL, http);

	*tcp = NULL;
	if (rc == MOAT_OK)
		rc = compile_records(v, n, "tcp", MOAT_RULES_TCP, lim, 0, &unused, NULL, NULL, tcp);
	if (rc != MOAT_OK) {
		moat_ruleset_free(*http);
		*http = NULL;
	}
	return rc;
}

/* The store's rules of one scope for a tenant. */
static int store_rules(struct moat_store *st, const char *tenant, const char *scope_name,
                       enum moat_rules_scope scope, const struct moat_rules_limits *lim, int fast,
                       int *was_fast, struct rules_report *rr, struct moat_ruleset **out)
{
	struct moat_store_rule *v = NULL;
	size_t n = 0;
	int rc = moat_store_rule_list(st, tenant, &v, &n);

	*out = NULL;
	if (rc != MOAT_OK)
		return rc;
	rc = compile_records(v, n, scope_name, scope, lim, fast, was_fast, rules_error, rr, out);
	moat_store_rules_free(v, n);
	return rc;
}

struct moat_gen_share {
	atomic_uint refs;
	struct moat_ruleset *rules, *tcp_rules;
	struct moat_devices *devices;
	int fast; /* rules built without their prefilter, to be completed */
};

static struct moat_gen_share *share_new(void)
{
	struct moat_gen_share *sh = moat_calloc(1, sizeof(*sh));

	if (sh != NULL)
		atomic_init(&sh->refs, 1);
	return sh;
}

static struct moat_gen_share *share_ref(struct moat_gen_share *sh)
{
	atomic_fetch_add_explicit(&sh->refs, 1, memory_order_relaxed);
	return sh;
}

static void share_release(struct moat_gen_share *sh)
{
	if (sh == NULL || atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) != 1)
		return;
	moat_ruleset_free(sh->rules);
	moat_ruleset_free(sh->tcp_rules);
	moat_devices_free(sh->devices);
	moat_free(sh);
}

/* A store tenant's rules and registry: reused from the previous generation when unchanged. */
static int store_tenant_content(struct moat_tenant *t, struct moat_tenant *old,
                                const struct moat_rules_limits *lim, struct rules_report *rr,
                                const struct moat_gen_sources *src)
{
	const char *name = t->cfg->name;
	int have = src->versions != NULL;

	if (have)
		src->versions(src->versions_arg, name, &t->rules_version, &t->devices_version);
	if (have && old != NULL && old->rules_share != NULL && old->rules_share->fast &&
	    old->rules_version == t->rules_version && src->take_complete != NULL &&
	    (t->rules_share = share_new()) != NULL &&
	    src->take_complete(src->versions_arg, name, t->rules_version, &t->rules_share->rules,
	                       &t->rules_share->tcp_rules) == 0) {
		/* the quick set of the previous generation, now compiled whole on another thread */
		carry_counters(t->rules_share->rules, old->rules);
		carry_counters(t->rules_share->tcp_rules, old->tcp_rules);
	} else if (have && old != NULL && old->rules_share != NULL &&
	           old->rules_version == t->rules_version) {
		share_release(t->rules_share);
		t->rules_share = share_ref(old->rules_share);
	} else {
		share_release(t->rules_share);
		t->rules_share = share_new();
		if (t->rules_share == NULL ||
		    store_rules(src->store, name, "http", MOAT_RULES_HTTP, lim, src->fast_rules,
		                &t->rules_share->fast, rr, &t->rules_share->rules) != MOAT_OK ||
		    store_rules(src->store, name, "tcp", MOAT_RULES_TCP, lim, src->fast_rules,
		                &t->rules_share->fast, rr, &t->rules_share->tcp_rules) != MOAT_OK)
			return -1;
		if (old != NULL) {
			carry_counters(t->rules_share->rules, old->rules);
			carry_counters(t->rules_share->tcp_rules, old->tcp_rules);
		}
	}
	if (have && old != NULL && old->devices_share != NULL &&
	    old->devices_version == t->devices_version) {
		t->devices_share = share_ref(old->devices_share);
	} else {
		const char *const *ids = NULL;
		size_t nids = 0;

		t->devices_share = share_new();
		if (t->devices_share == NULL)
			return -1;
		/* a few devices changed: patch the previous registry rather than read it whole */
		if (!(have && old != NULL && old->devices != NULL && src->device_changes != NULL &&
		      src->device_changes(src->versions_arg, name, old->devices_version, &ids,
		                          &nids) == 0 &&
		      moat_devices_patch(old->devices, src->store, name, src->stats, ids, nids,
		                         &t->devices_share->devices) == MOAT_OK) &&
		    moat_devices_from_store(src->store, name, src->stats,
		                            &t->devices_share->devices) != MOAT_OK)
			return -1;
	}
	t->rules = t->rules_share->rules;
	t->tcp_rules = t->rules_share->tcp_rules;
	t->devices = t->devices_share->devices;
	if (t->rules_share->fast)
		t->gen->fast_rules = 1;
	return 0;
}

static int load_tenant_rules(struct moat_tenant *t, const struct moat_config *cfg,
                             struct moat_gen *prev, moat_config_report_fn report, void *arg,
                             const struct moat_gen_sources *src)
{
	const struct moat_config_tenant *c = t->cfg;
	struct rules_report rr = {report, arg};
	struct moat_rules_limits lim;
	struct moat_tenant *old = prev ? moat_gen_tenant_by_name(prev, c->name) : NULL;
	int failed = 0;

	memset(&lim, 0, sizeof(lim));
	lim.body_limit = cfg->rules_body_limit;
	if (old != NULL && old->cfg->from_store != c->from_store)
		old = NULL; /* a config tenant replaced by a store tenant of the name, or back */
	if (c->from_store) {
		if (store_tenant_content(t, old, &lim, &rr, src) < 0)
			failed = 1;
	} else if (old != NULL && prev->cfg == cfg && old->rules_share != NULL &&
	           old->devices_share != NULL) {
		/* a rebuild for the store: the file was not read again, its rules stand */
		t->rules_share = share_ref(old->rules_share);
		t->devices_share = share_ref(old->devices_share);
	} else {
		t->rules_share = share_new();
		t->devices_share = share_new();
		if (t->rules_share == NULL || t->devices_share == NULL)
			return MOAT_ENOMEM;
		if (c->rules != NULL) {
			if (moat_rules_load_file(c->rules, MOAT_RULES_HTTP, &lim, rules_error, &rr,
			                         &t->rules_share->rules) != MOAT_OK)
				failed = 1;
			else if (old != NULL)
				carry_counters(t->rules_share->rules, old->rules);
		}
		if (c->tcp_rules != NULL) {
			if (moat_rules_load_file(c->tcp_rules, MOAT_RULES_TCP, &lim, rules_error,
			                         &rr, &t->rules_share->tcp_rules) != MOAT_OK)
				failed = 1;
			else if (old != NULL)
				carry_counters(t->rules_share->tcp_rules, old->tcp_rules);
		}
		if (c->devices != NULL && moat_devices_load(c->devices, report, arg,
		                                            &t->devices_share->devices) != MOAT_OK)
			failed = 1;
	}
	if (t->rules_share != NULL) {
		t->rules = t->rules_share->rules;
		t->tcp_rules = t->rules_share->tcp_rules;
	}
	if (t->devices_share != NULL)
		t->devices = t->devices_share->devices;
	{
		/* a value that did not fit the scratch would be "missing": a rule failing open */
		const struct moat_http_limits hl = {cfg->max_request_line, cfg->max_header_size,
		                                    cfg->max_headers};

		if (t->rules != NULL)
			t->rules_scratch = moat_ruleset_scratch_size_for(t->rules, &hl);
		if (t->tcp_rules != NULL)
			t->tcp_rules_scratch = moat_ruleset_scratch_size_for(t->tcp_rules, &hl);
	}
	return failed ? MOAT_EINVAL : MOAT_OK;
}

static int resolve_origins(struct moat_tenant *t, const char *file, moat_config_report_fn report,
                           void *arg)
{
	const struct moat_config_tenant *c = t->cfg;
	char host[NI_MAXHOST];

	if (c->origin != NULL) {
		if (resolve(c->origin_host, c->origin_port, c->origin_line, "origin", file, report,
		            arg, &t->origin_addr, &t->origin_addrlen, host,
		            sizeof(host)) != MOAT_OK)
			return MOAT_EINVAL;
		/* TLS origin connections were verified under this tenant's origin_ca: never
		 * lend them to another tenant, even one naming the same origin */
		snprintf(t->origin_key, sizeof(t->origin_key), "%.200s|%.64s|%.20s", c->origin,
		         host, c->origin_scheme == MOAT_ORIGIN_HTTPS ? c->name : "");
	}
	if (c->tcp_origin != NULL &&
	    resolve(c->tcp_origin_host, c->tcp_origin_port, c->tcp_origin_line, "tcp_origin", file,
	            report, arg, &t->tcp_origin_addr, &t->tcp_origin_addrlen, host,
	            sizeof(host)) != MOAT_OK)
		return MOAT_EINVAL;
	return MOAT_OK;
}

static void tenant_free(struct moat_tenant *t)
{
	SSL_CTX_free(t->ssl_ctx);
	SSL_CTX_free(t->origin_ctx);
	for (size_t j = 0; j < t->ncrls; j++)
		X509_CRL_free(t->crls[j]);
	OPENSSL_free(t->crls);
	/* rules and devices are always held through shares (possibly this tenant's alone) */
	share_release(t->rules_share);
	share_release(t->devices_share);
	OPENSSL_cleanse(t->ticket_aes, sizeof(t->ticket_aes));
	OPENSSL_cleanse(t->ticket_hmac, sizeof(t->ticket_hmac));
}

static void gen_free(struct moat_gen *g)
{
	for (size_t i = 0; i < g->ntenants; i++)
		tenant_free(&g->tenants[i]);
	for (size_t i = 0; i < g->nstore_tenants; i++)
		moat_config_tenant_clear(&g->store_tenants[i]);
	moat_free(g->store_tenants);
	for (size_t i = 0; i < g->nlisteners; i++)
		SSL_CTX_free(g->listeners[i].ssl_ctx);
	moat_free(g->tenants);
	moat_free(g->listeners);
	moat_config_free(g->cfg);
	moat_free(g);
}

static int same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/*
 * Whether a tenant's TLS material is the same as in the previous generation, so its contexts
 * can be shared rather than built again (an SSL_CTX costs about a millisecond in OpenSSL 3:
 * with a few hundred tenants, rebuilding them all would delay every change by a second).
 * A config tenant's is when the file was not read again; a store tenant's when the same PEMs
 * and key file make it up.
 */
static int same_tls(const struct moat_tenant *old, const struct moat_config_tenant *c,
                    const struct moat_gen *prev, const struct moat_config *cfg)
{
	const struct moat_config_tenant *o;

	if (old == NULL || old->ssl_ctx == NULL || old->cfg->from_store != c->from_store)
		return 0;
	o = old->cfg;
	if (!c->from_store)
		return prev->cfg == cfg;
	return same_str(o->cert_pem, c->cert_pem) && same_str(o->key, c->key) &&
	       same_str(o->device_ca_pem, c->device_ca_pem) && o->mtls == c->mtls &&
	       o->device_id == c->device_id;
}

static int share_tls(struct moat_tenant *t, const struct moat_tenant *old)
{
	if (old->ncrls > 0) {
		t->crls = OPENSSL_malloc(old->ncrls * sizeof(*t->crls));
		if (t->crls == NULL)
			return -1;
		for (size_t i = 0; i < old->ncrls; i++) {
			X509_CRL_up_ref(old->crls[i]);
			t->crls[i] = old->crls[i];
		}
		t->ncrls = old->ncrls;
	}
	SSL_CTX_up_ref(old->ssl_ctx);
	t->ssl_ctx = old->ssl_ctx;
	memcpy(t->trust_digest, old->trust_digest, sizeof(t->trust_digest));
	return 0;
}

/* Everything of one tenant but the listeners; 0 or -1 (reported). */
static int build_tenant(struct moat_tenant *t, struct moat_gen *g, struct moat_gen *prev,
                        const unsigned char *ticket_secret, const struct moat_gen_sources *src,
                        moat_config_report_fn report, void *arg)
{
	const struct moat_config *cfg = g->cfg;
	struct moat_tenant *old = prev != NULL ? moat_gen_tenant_by_name(prev, t->cfg->name) : NULL;
	int reuse = same_tls(old, t->cfg, prev, cfg);
	int failed = 0;

	t->gen = g;
	derive(ticket_secret, "name", t->cfg->name, t->ticket_name, sizeof(t->ticket_name));
	derive(ticket_secret, "aes", t->cfg->name, t->ticket_aes, sizeof(t->ticket_aes));
	derive(ticket_secret, "hmac", t->cfg->name, t->ticket_hmac, sizeof(t->ticket_hmac));
	t->counters = src->stats != NULL ? moat_stats_tenant(src->stats, t->cfg->name) : NULL;
	/* a tenant serving only plain-TCP listeners has no TLS material */
	if (t->cfg->has_tls && reuse) {
		if (share_tls(t, old) < 0)
			failed = 1;
	} else if (t->cfg->has_tls) {
		if (moat_tls_tenant_ctx(t, cfg->path, report, arg) != MOAT_OK) {
			failed = 1;
		} else if (trust_digest(t) < 0) {
			report(arg, cfg->path, t->cfg->device_ca_line, "device_ca: cannot read");
			failed = 1;
		}
	}
	if ((t->cfg->origin != NULL && t->cfg->origin_scheme == MOAT_ORIGIN_HTTPS) ||
	    (t->cfg->tcp_origin != NULL && t->cfg->tcp_origin_scheme == MOAT_ORIGIN_TLS)) {
		if (old != NULL && old->origin_ctx != NULL &&
		    old->cfg->from_store == t->cfg->from_store &&
		    (t->cfg->from_store ? same_str(old->cfg->origin_ca_pem, t->cfg->origin_ca_pem)
		                        : prev->cfg == cfg)) {
			SSL_CTX_up_ref(old->origin_ctx);
			t->origin_ctx = old->origin_ctx;
		} else if (moat_tls_origin_ctx(t, cfg->path, report, arg) != MOAT_OK) {
			failed = 1;
		}
	}
	if (resolve_origins(t, cfg->path, report, arg) != MOAT_OK)
		failed = 1;
	if (load_tenant_rules(t, cfg, prev, report, arg, src) != MOAT_OK)
		failed = 1;
	return failed ? -1 : 0;
}

static char **strv_dup(const struct moat_strv *v, size_t *n)
{
	char **out = moat_calloc(v->n + 1, sizeof(*out));

	*n = 0;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < v->n; i++) {
		out[i] = moat_strdup(v->v[i]);
		if (out[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				moat_free(out[j]);
			moat_free(out);
			return NULL;
		}
	}
	*n = v->n;
	return out;
}

/* A store tenant in the shape the config file gives: PEMs in memory, the key as a file. */
static int store_tenant_cfg(struct moat_store *st, const char *data_dir,
                            const struct moat_store_tenant *r, struct moat_config_tenant *c,
                            char *err, size_t cap)
{
	struct moat_store_ca *cas = NULL;
	size_t ncas = 0, len = 0;
	char path[4096];

	memset(c, 0, sizeof(*c));
	c->from_store = 1;
	c->has_tls = 1;
	c->mtls = MOAT_MTLS_REQUIRE;
	c->device_id = MOAT_DEVID_CN;
	c->name = moat_strdup(r->name);
	c->hosts = strv_dup(&r->hosts, &c->nhosts);
	c->quarantine_allow = strv_dup(&r->quarantine_allow, &c->nquarantine_allow);
	c->cert_pem = r->server_cert != NULL ? moat_strdup(r->server_cert) : NULL;
	snprintf(path, sizeof(path), "%s/%s", data_dir,
	         r->server_key_file ? r->server_key_file : "");
	c->key = moat_strdup(path);
	if (r->origin_ca != NULL)
		c->origin_ca_pem = moat_strdup(r->origin_ca);
	if (c->name == NULL || c->hosts == NULL || c->quarantine_allow == NULL || c->key == NULL ||
	    (r->origin_ca != NULL && c->origin_ca_pem == NULL)) {
		snprintf(err, cap, "out of memory");
		return MOAT_ENOMEM;
	}
	if (c->cert_pem == NULL || r->server_key_file == NULL) {
		snprintf(err, cap, "no server certificate");
		return MOAT_EINVAL;
	}
	if (r->origin != NULL) {
		if (moat_config_origin_parse(r->origin, 0, &c->origin_scheme, &c->origin_host,
		                             &c->origin_port, err, cap) != MOAT_OK)
			return MOAT_EINVAL;
		c->origin = moat_strdup(r->origin);
	}
	if (r->tcp_origin != NULL) {
		if (moat_config_origin_parse(r->tcp_origin, 1, &c->tcp_origin_scheme,
		                             &c->tcp_origin_host, &c->tcp_origin_port, err,
		                             cap) != MOAT_OK)
			return MOAT_EINVAL;
		c->tcp_origin = moat_strdup(r->tcp_origin);
	}
	if (moat_store_ca_list(st, r->name, &cas, &ncas) != MOAT_OK) {
		snprintf(err, cap, "cannot read its device CAs: %s", moat_store_error(st));
		return MOAT_EIO;
	}
	for (size_t i = 0; i < ncas; i++)
		len += strlen(cas[i].cert) + 1;
	c->device_ca_pem = ncas > 0 ? moat_malloc(len + 1) : NULL;
	if (c->device_ca_pem != NULL) {
		len = 0;
		for (size_t i = 0; i < ncas; i++) {
			size_t n = strlen(cas[i].cert);

			memcpy(c->device_ca_pem + len, cas[i].cert, n);
			c->device_ca_pem[len + n] = '\n';
			len += n + 1;
		}
		c->device_ca_pem[len] = '\0';
	}
	moat_store_cas_free(cas, ncas);
	if (c->device_ca_pem == NULL) {
		snprintf(err, cap, ncas == 0 ? "no device CA" : "out of memory");
		return MOAT_EINVAL;
	}
	return MOAT_OK;
}

/* Errors of one store tenant go to the error log; they leave the tenant out, nothing more. */
struct store_report {
	const char *tenant;
	unsigned errors;
};

static void report_store_tenant(void *arg, const char *file, unsigned line, const char *msg)
{
	struct store_report *r = arg;

	(void)file;
	(void)line;
	r->errors++;
	moat_log_error("tenant %s (store): %s", r->tenant, msg);
}

/* Adds the store's tenants after the config file's; a config tenant of the same name wins. */
static int build_store_tenants(struct moat_gen *g, struct moat_gen *prev,
                               const unsigned char *ticket_secret,
                               const struct moat_gen_sources *src)
{
	struct moat_store_tenant *v = NULL;
	size_t n = 0;
	int rc = moat_store_tenant_list(src->store, &v, &n);

	if (rc != MOAT_OK) {
		moat_log_error("store: cannot list tenants: %s", moat_store_error(src->store));
		return rc;
	}
	g->store_tenants = moat_calloc(n + 1, sizeof(*g->store_tenants));
	if (g->store_tenants == NULL) {
		moat_store_tenants_free(v, n);
		return MOAT_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct moat_config_tenant *c = &g->store_tenants[g->nstore_tenants];
		struct store_report sr = {v[i].name, 0};
		char err[300];
		struct moat_tenant *t;

		if (moat_config_tenant_find(g->cfg, v[i].name) != NULL) {
			moat_log_error(
			        "tenant %s (store): the config file has a tenant of that name; "
			        "the store's is not served",
			        v[i].name);
			continue;
		}
		if (store_tenant_cfg(src->store, g->cfg->data_dir, &v[i], c, err, sizeof(err)) !=
		    MOAT_OK) {
			moat_log_error("tenant %s (store): %s; not served", v[i].name, err);
			moat_config_tenant_clear(c);
			memset(c, 0, sizeof(*c));
			continue;
		}
		g->nstore_tenants++;
		t = &g->tenants[g->ntenants++];
		t->cfg = c;
		t->index = (unsigned)(g->ntenants - 1);
		if (build_tenant(t, g, prev, ticket_secret, src, report_store_tenant, &sr) < 0) {
			moat_log_error("tenant %s (store): not served", v[i].name);
			tenant_free(t);
			memset(t, 0, sizeof(*t));
			g->ntenants--;
			moat_config_tenant_clear(c);
			memset(c, 0, sizeof(*c));
			g->nstore_tenants--;
		}
	}
	moat_store_tenants_free(v, n);
	return MOAT_OK;
}

int moat_gen_build(struct moat_config *cfg, const unsigned char *ticket_secret,
                   const struct moat_gen_sources *src, moat_config_report_fn report, void *arg,
                   struct moat_gen **out)
{
	static const struct moat_gen_sources none; /* zero: the config file only */
	struct moat_gen *g = moat_calloc(1, sizeof(*g));
	struct moat_gen *prev = moat_gen_acquire_current(); /* for rule hit counters */
	size_t nstore = 0;
	int failed = 0;

	*out = NULL;
	if (src == NULL)
		src = &none;
	if (g == NULL) {
		moat_gen_release(prev);
		moat_config_free(cfg);
		return MOAT_ENOMEM;
	}
	atomic_init(&g->refs, 1);
	g->cfg = cfg;
	if (src->store != NULL) {
		struct moat_store_tenant *v = NULL;

		/* room for every store tenant; the list is read again when they are built */
		if (moat_store_tenant_list(src->store, &v, &nstore) == MOAT_OK)
			moat_store_tenants_free(v, nstore);
		else
			nstore = 0;
	}
	g->tenants = moat_calloc(cfg->ntenants + nstore + 1, sizeof(*g->tenants));
	g->listeners = moat_calloc(cfg->nlisteners + 1, sizeof(*g->listeners));
	if (g->tenants == NULL || g->listeners == NULL) {
		moat_gen_release(prev);
		gen_free(g);
		return MOAT_ENOMEM;
	}
	/* Count tenants as built, so that gen_free releases exactly what exists. */
	for (size_t i = 0; i < cfg->ntenants; i++) {
		struct moat_tenant *t = &g->tenants[i];

		g->ntenants++;
		t->cfg = &cfg->tenants[i];
		t->index = (unsigned)i;
		if (build_tenant(t, g, prev, ticket_secret, src, report, arg) < 0)
			failed = 1;
	}
	if (!failed && src->store != NULL && nstore > 0 &&
	    build_store_tenants(g, prev, ticket_secret, src) != MOAT_OK) {
		report(arg, cfg->path, 0, "cannot read the store");
		failed = 1;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct moat_listener *l = &g->listeners[i];

		g->nlisteners++;
		l->cfg = &cfg->listeners[i];
		l->gen = g;
		if (l->cfg->default_tenant != NULL)
			l->default_tenant = moat_gen_tenant_by_name(g, l->cfg->default_tenant);
		if (l->cfg->tls && moat_tls_listener_ctx(l) != MOAT_OK) {
			report(arg, cfg->path, l->cfg->line,
			       "cannot create the listener's TLS context");
			failed = 1;
		}
	}
	moat_gen_release(prev);
	if (failed) {
		gen_free(g);
		return MOAT_EINVAL;
	}
	*out = g;
	return MOAT_OK;
}

void moat_gen_ref(struct moat_gen *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

void moat_gen_release(struct moat_gen *g)
{
	if (g != NULL && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
		gen_free(g);
}

void moat_gen_publish(struct moat_gen *g)
{
	struct moat_gen *old;

	pthread_mutex_lock(&current_lock);
	g->id = next_id++;
	old = current;
	current = g;
	pthread_mutex_unlock(&current_lock);
	moat_gen_release(old);
}

struct moat_gen *moat_gen_acquire_current(void)
{
	struct moat_gen *g;

	/* A lock, not a lone atomic load: between loading the pointer and taking a reference
	 * the publisher could drop the last one. Workers come here once per reload. */
	pthread_mutex_lock(&current_lock);
	g = current;
	if (g != NULL)
		moat_gen_ref(g);
	pthread_mutex_unlock(&current_lock);
	return g;
}

void moat_gen_unpublish(void)
{
	struct moat_gen *old;

	pthread_mutex_lock(&current_lock);
	old = current;
	current = NULL;
	pthread_mutex_unlock(&current_lock);
	moat_gen_release(old);
}

struct moat_tenant *moat_gen_tenant_by_name(struct moat_gen *g, const char *name)
{
	for (size_t i = 0; i < g->ntenants; i++)
		if (strcmp(g->tenants[i].cfg->name, name) == 0)
			return &g->tenants[i];
	return NULL;
}

static int host_match(const char *pattern, const char *sni, size_t len)
{
	size_t plen = strlen(pattern);

	if (pattern[0] == '*' && pattern[1] == '.') {
		/* "*.example" matches exactly one label in front of ".example" */
		const char *dot = memchr(sni, '.', len);
		size_t rest;

		if (dot == NULL || dot == sni)
			return 0;
		rest = len - (size_t)(dot - sni);
		return rest == plen - 1 && strncasecmp(dot, pattern + 1, rest) == 0;
	}
	return plen == len && strncasecmp(pattern, sni, len) == 0;
}

struct moat_tenant *moat_gen_tenant_by_sni(struct moat_gen *g, const char *sni, size_t len)
{
	/* Exact names win over wildcards, whatever the order of tenants in the file. */
	for (int wild = 0; wild < 2; wild++)
		for (size_t i = 0; i < g->ntenants; i++) {
			const struct moat_config_tenant *c = g->tenants[i].cfg;

			for (size_t h = 0; h < c->nhosts; h++)
				if ((c->hosts[h][0] == '*') == wild &&
				    host_match(c->hosts[h], sni, len))
					return &g->tenants[i];
		}
	return NULL;
}

int moat_tenant_cert_revoked(const struct moat_tenant *t, X509 *cert)
{
	for (size_t i = 0; i < t->ncrls; i++) {
		X509_REVOKED *r = NULL;

		if (X509_CRL_get0_by_cert(t->crls[i], &r, cert) == 1)
			return 1;
	}
	if (t->devices != NULL && t->devices->nrevoked > 0) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int len = 0;

		/* fail closed: a certificate we cannot hash cannot be cleared */
		if (X509_digest(cert, EVP_sha256(), md, &len) != 1 || len != 32)
			return 1;
		return moat_devices_cert_revoked(t->devices, md);
	}
	return 0;
}

const struct moat_device_entry *moat_tenant_device(const struct moat_tenant *t, const char *id)
{
	return moat_devices_entry(t->devices, id);
}

const char *moat_tenant_refusal(const struct moat_tenant *t, X509 *cert, const char *device_id)
{
	if (cert != NULL && moat_tenant_cert_revoked(t, cert))
		return "certificate revoked";
	return moat_devices_refusal(t->devices, device_id);
}

int moat_tenant_rules_partial(const struct moat_tenant *t)
{
	return t->rules_share != NULL && t->rules_share->fast;
}

int moat_tenant_quarantine_allows(const struct moat_tenant *t, const char *path, size_t len)
{
	const struct moat_config_tenant *c = t->cfg;

	for (size_t i = 0; i < c->nquarantine_allow; i++) {
		size_t n = strlen(c->quarantine_allow[i]);

		if (len >= n && memcmp(path, c->quarantine_allow[i], n) == 0)
			return 1;
	}
	return 0;
}
