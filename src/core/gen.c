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

	if (n == 0)
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

static int load_tenant_rules(struct moat_tenant *t, const struct moat_config *cfg,
                             struct moat_gen *prev, moat_config_report_fn report, void *arg)
{
	const struct moat_config_tenant *c = t->cfg;
	struct rules_report rr = {report, arg};
	struct moat_rules_limits lim;
	struct moat_tenant *old = prev ? moat_gen_tenant_by_name(prev, c->name) : NULL;
	int failed = 0;

	memset(&lim, 0, sizeof(lim));
	lim.body_limit = cfg->rules_body_limit;
	if (c->rules != NULL) {
		if (moat_rules_load_file(c->rules, MOAT_RULES_HTTP, &lim, rules_error, &rr,
		                         &t->rules) != MOAT_OK)
			failed = 1;
		else if (old != NULL)
			carry_counters(t->rules, old->rules);
	}
	if (c->tcp_rules != NULL) {
		if (moat_rules_load_file(c->tcp_rules, MOAT_RULES_TCP, &lim, rules_error, &rr,
		                         &t->tcp_rules) != MOAT_OK)
			failed = 1;
		else if (old != NULL)
			carry_counters(t->tcp_rules, old->tcp_rules);
	}
	if (c->devices != NULL &&
	    moat_devices_load(c->devices, report, arg, &t->devices) != MOAT_OK)
		failed = 1;
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

static void gen_free(struct moat_gen *g)
{
	for (size_t i = 0; i < g->ntenants; i++) {
		struct moat_tenant *t = &g->tenants[i];

		SSL_CTX_free(t->ssl_ctx);
		SSL_CTX_free(t->origin_ctx);
		for (size_t j = 0; j < t->ncrls; j++)
			X509_CRL_free(t->crls[j]);
		OPENSSL_free(t->crls);
		moat_ruleset_free(t->rules);
		moat_ruleset_free(t->tcp_rules);
		moat_devices_free(t->devices);
		OPENSSL_cleanse(t->ticket_aes, sizeof(t->ticket_aes));
		OPENSSL_cleanse(t->ticket_hmac, sizeof(t->ticket_hmac));
	}
	for (size_t i = 0; i < g->nlisteners; i++)
		SSL_CTX_free(g->listeners[i].ssl_ctx);
	moat_free(g->tenants);
	moat_free(g->listeners);
	moat_config_free(g->cfg);
	moat_free(g);
}

int moat_gen_build(struct moat_config *cfg, const unsigned char *ticket_secret,
                   moat_config_report_fn report, void *arg, struct moat_gen **out)
{
	struct moat_gen *g = moat_calloc(1, sizeof(*g));
	struct moat_gen *prev = moat_gen_acquire_current(); /* for rule hit counters */
	int failed = 0;

	*out = NULL;
	if (g == NULL) {
		moat_gen_release(prev);
		moat_config_free(cfg);
		return MOAT_ENOMEM;
	}
	atomic_init(&g->refs, 1);
	g->cfg = cfg;
	g->tenants = moat_calloc(cfg->ntenants, sizeof(*g->tenants));
	g->listeners = moat_calloc(cfg->nlisteners, sizeof(*g->listeners));
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
		t->gen = g;
		derive(ticket_secret, "name", t->cfg->name, t->ticket_name, sizeof(t->ticket_name));
		derive(ticket_secret, "aes", t->cfg->name, t->ticket_aes, sizeof(t->ticket_aes));
		derive(ticket_secret, "hmac", t->cfg->name, t->ticket_hmac, sizeof(t->ticket_hmac));
		/* a tenant serving only plain-TCP listeners has no TLS material */
		if (t->cfg->has_tls) {
			if (moat_tls_tenant_ctx(t, cfg->path, report, arg) != MOAT_OK) {
				failed = 1;
			} else if (trust_digest(t) < 0) {
				report(arg, cfg->path, t->cfg->device_ca_line,
				       "device_ca: cannot read");
				failed = 1;
			}
		}
		if (((t->cfg->origin != NULL && t->cfg->origin_scheme == MOAT_ORIGIN_HTTPS) ||
		     (t->cfg->tcp_origin != NULL &&
		      t->cfg->tcp_origin_scheme == MOAT_ORIGIN_TLS)) &&
		    moat_tls_origin_ctx(t, cfg->path, report, arg) != MOAT_OK)
			failed = 1;
		if (resolve_origins(t, cfg->path, report, arg) != MOAT_OK)
			failed = 1;
		if (load_tenant_rules(t, cfg, prev, report, arg) != MOAT_OK)
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
	return 0;
}
