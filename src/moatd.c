/*
 * moatd: the edge daemon. The main thread is the control thread: it reads the configuration,
 * builds and publishes generations, handles signals, and starts and stops the workers.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <jansson.h>
#include <uv.h>

#include "admin/admin.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/gen.h"
#include "core/log.h"
#include "core/worker.h"
#include "core/stats.h"
#include "rules/rules.h"
#include "store/store.h"
#include "tls/tls.h"

#define MOAT_VERSION "0.1.0"
#define TICKET_SECRET_LEN 32

struct control {
	const char *conf_path;
	uv_loop_t *loop;
	uv_signal_t sighup, sigterm, sigint, sigusr1, sigusr2;
	uv_async_t worker_exit;
	uv_timer_t drain_timer;
	struct moat_worker *workers;
	unsigned nworkers;
	atomic_uint exited;
	int draining;
	unsigned char ticket_secret[TICKET_SECRET_LEN];
	unsigned config_errors;
	struct moat_config *cfg; /* the config file of the running generation (a reference) */
	struct moat_store *store;
	struct moat_stats *stats;
	struct moat_gen_sources sources;
	struct moat_admin_ctx *admin;
	struct moat_admin_server *admin_server;
	uv_timer_t rebuild_timer; /* coalesces store changes into one new generation */
};

static struct control ctl;

static void report_stderr(void *arg, const char *file, unsigned line, const char *msg)
{
	unsigned *n = arg;

	(*n)++;
	if (line > 0)
		fprintf(stderr, "%s:%u: %s\n", file, line, msg);
	else
		fprintf(stderr, "%s: %s\n", file, msg);
}

static void report_log(void *arg, const char *file, unsigned line, const char *msg)
{
	unsigned *n = arg;

	(*n)++;
	moat_log_error("%s:%u: %s", file, line, msg);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: moatd [-t] -c FILE\n"
	           "  -c FILE  configuration file (INI; see docs/configuration.md)\n"
	           "  -t       check the configuration and every file it names, then exit\n"
	           "  -v       print the version\n"
	           "  -h       this help\n");
}

/* Session ticket keys must survive restarts (devices keep their tickets) and be the same for
 * every worker: one secret, kept 0600 in the data directory. */
static int load_ticket_secret(const char *data_dir, unsigned char *secret)
{
	char path[4096];
	int fd;
	ssize_t n;

	if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
		moat_log_error("data_dir %s: %s", data_dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/tls-ticket.key", data_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, secret, TICKET_SECRET_LEN);
		close(fd);
		if (n == TICKET_SECRET_LEN)
			return 0;
		moat_log_warn("%s is damaged; creating a new ticket secret", path);
		unlink(path);
	}
	if (RAND_bytes(secret, TICKET_SECRET_LEN) != 1)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		moat_log_error("cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	n = write(fd, secret, TICKET_SECRET_LEN);
	close(fd);
	return n == TICKET_SECRET_LEN ? 0 : -1;
}

static int write_pid_file(const char *path)
{
	char buf[32];
	int n, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return -1;
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static void publish(struct moat_gen *g)
{
	moat_gen_publish(g);
	for (unsigned i = 0; i < ctl.nworkers; i++)
		moat_worker_notify_reload(&ctl.workers[i]);
}

/* The store changed (the admin API): the same config file, the store read again. */
/* Large rule sets a generation published without their prefilter are compiled whole on
 * libuv's thread pool, so neither the workers nor the admin API wait for Hyperscan; when one
 * is ready (and its rules have not changed since), a new generation takes it. */
struct rules_job {
	uv_work_t req;
	char *tenant;
	uint64_t version;
	struct moat_store_rule *recs;
	size_t n;
	struct moat_rules_limits lim;
	struct moat_ruleset *http, *tcp;
	int rc;
	struct rules_job *next; /* running, or done and waiting to be taken */
	int done;
};

static struct rules_job *rules_jobs;

static void rules_job_free(struct rules_job *j)
{
	moat_ruleset_free(j->http);
	moat_ruleset_free(j->tcp);
	moat_store_rules_free(j->recs, j->n);
	moat_free(j->tenant);
	moat_free(j);
}

static void rules_job_work(uv_work_t *req)
{
	struct rules_job *j = req->data;

	j->rc = moat_gen_compile_rules(j->recs, j->n, &j->lim, &j->http, &j->tcp);
}

static void rebuild_cb(uv_timer_t *timer);

static void rules_job_done(uv_work_t *req, int status)
{
	struct rules_job *j = req->data;

	j->done = 1;
	if (status != 0 || j->rc != MOAT_OK) {
		moat_log_error("tenant %s: compiling its rules whole failed; they stay without "
		               "their prefilter until the next change",
		               j->tenant);
		return;
	}
	if (!ctl.draining && !uv_is_active((uv_handle_t *)&ctl.rebuild_timer))
		uv_timer_start(&ctl.rebuild_timer, rebuild_cb, 0, 0);
}

static int take_complete(void *arg, const char *tenant, uint64_t version,
                         struct moat_ruleset **http, struct moat_ruleset **tcp)
{
	(void)arg;
	for (struct rules_job *j = rules_jobs; j != NULL; j = j->next)
		if (j->done && j->rc == MOAT_OK && j->version == version &&
		    strcmp(j->tenant, tenant) == 0 && (j->http != NULL || j->tcp != NULL)) {
			*http = j->http;
			*tcp = j->tcp;
			j->http = j->tcp = NULL;
			return 0;
		}
	return -1;
}

/* Drops finished jobs (taken or outdated) and starts one for each partial set of g. */
static void complete_rules(struct moat_gen *g)
{
	struct rules_job **p = &rules_jobs;

	while (*p != NULL) {
		struct rules_job *j = *p;

		const struct moat_tenant *t = moat_gen_tenant_by_name(g, j->tenant);
		int wanted =
		        t != NULL && moat_tenant_rules_partial(t) && t->rules_version == j->version;

		/* taken, failed, or made for rules that changed again since */
		if (j->done && (!wanted || (j->http == NULL && j->tcp == NULL))) {
			*p = j->next;
			rules_job_free(j);
		} else {
			p = &j->next;
		}
	}
	for (size_t i = 0; i < g->ntenants; i++) {
		const struct moat_tenant *t = &g->tenants[i];
		struct rules_job *j;
		int running = 0;

		if (!moat_tenant_rules_partial(t))
			continue;
		for (j = rules_jobs; j != NULL; j = j->next)
			running |= j->version == t->rules_version &&
			           strcmp(j->tenant, t->cfg->name) == 0;
		if (running)
			continue;
		j = moat_calloc(1, sizeof(*j));
		if (j == NULL || (j->tenant = moat_strdup(t->cfg->name)) == NULL ||
		    moat_store_rule_list(ctl.store, t->cfg->name, &j->recs, &j->n) != MOAT_OK) {
			if (j != NULL)
				rules_job_free(j);
			continue;
		}
		j->version = t->rules_version;
		j->lim.body_limit = g->cfg->rules_body_limit;
		j->req.data = j;
		if (uv_queue_work(ctl.loop, &j->req, rules_job_work, rules_job_done) != 0) {
			rules_job_free(j);
			continue;
		}
		j->next = rules_jobs;
		rules_jobs = j;
	}
}

static void rebuild_cb(uv_timer_t *timer)
{
	struct moat_gen *g = NULL;
	struct moat_gen_sources src = ctl.sources;
	unsigned errors = 0;
	uint64_t t0 = uv_hrtime();

	if (ctl.draining)
		return;
	/* A change is enforced first with large rule sets built without their prefilter (in
	 * milliseconds); the thread pool compiles them whole (seconds for a thousand rules), and
	 * the generation that takes them is as fast per request as ever. */
	(void)timer;
	src.fast_rules = 1;
	moat_config_ref(ctl.cfg);
	if (moat_gen_build(ctl.cfg, ctl.ticket_secret, &src, report_log, &errors, &g) != MOAT_OK) {
		moat_log_error("the store's changes are not applied: %u error%s building the new "
		               "generation",
		               errors, errors == 1 ? "" : "s");
		return;
	}
	publish(g);
	moat_log_info("store changes applied: generation %llu (built in %.1f ms)%s",
	              (unsigned long long)g->id, (double)(uv_hrtime() - t0) / 1e6,
	              g->fast_rules ? "; completing large rule sets" : "");
	complete_rules(g);
}

/* Change counters of each store tenant's rules and devices (the generation reuses what did
 * not change). */
struct device_change {
	uint64_t version; /* the tenant's devices version this change made */
	char *id;
};

#define MAX_DEVICE_CHANGES 100000 /* more waiting: the next generation reads the registry */

struct tenant_version {
	char *name;
	uint64_t rules, devices;
	/* devices changed one by one since `floor`, in order: a new generation patches the
	 * registry with them; a change before floor is not known one by one */
	struct device_change *changes;
	size_t nchanges;
	uint64_t floor;
};

static void forget_changes(struct tenant_version *v)
{
	for (size_t i = 0; i < v->nchanges; i++)
		moat_free(v->changes[i].id);
	moat_free(v->changes);
	v->changes = NULL;
	v->nchanges = 0;
	v->floor = v->devices;
}

static struct tenant_version *versions;
static size_t nversions;

static struct tenant_version *version_of(const char *tenant, int create)
{
	struct tenant_version *v;

	for (size_t i = 0; i < nversions; i++)
		if (strcmp(versions[i].name, tenant) == 0)
			return &versions[i];
	if (!create)
		return NULL;
	v = moat_realloc(versions, (nversions + 1) * sizeof(*v));
	if (v == NULL)
		return NULL;
	versions = v;
	v = &versions[nversions];
	memset(v, 0, sizeof(*v));
	v->name = moat_strdup(tenant);
	if (v->name == NULL)
		return NULL;
	v->rules = v->devices = 0; /* what tenant_versions said before this entry existed */
	nversions++;
	return v;
}

static void tenant_versions(void *arg, const char *tenant, uint64_t *rules, uint64_t *devices)
{
	struct tenant_version *v = version_of(tenant, 0);

	(void)arg;
	*rules = v != NULL ? v->rules : 0;
	*devices = v != NULL ? v->devices : 0;
}

static void tenant_changed(void *arg, const char *tenant, unsigned what)
{
	struct tenant_version *v = version_of(tenant, 1);

	(void)arg;
	if (v == NULL) {
		/* out of memory: forget every version, so the next generation rebuilds all */
		ctl.sources.versions = NULL;
		return;
	}
	if (what & MOAT_ADMIN_CHANGED_RULES)
		v->rules++;
	if (what & MOAT_ADMIN_CHANGED_DEVICES) {
		v->devices++;
		forget_changes(v); /* not one device: the registry is read whole */
	}
}

static void device_changed(void *arg, const char *tenant, const char *device)
{
	struct tenant_version *v = version_of(tenant, 1);
	struct device_change *c;

	(void)arg;
	if (v == NULL) {
		ctl.sources.versions = NULL;
		return;
	}
	v->devices++;
	if (v->nchanges >= MAX_DEVICE_CHANGES) {
		forget_changes(v);
		return;
	}
	c = moat_realloc(v->changes, (v->nchanges + 1) * sizeof(*c));
	if (c == NULL) {
		forget_changes(v);
		return;
	}
	v->changes = c;
	c[v->nchanges].version = v->devices;
	c[v->nchanges].id = moat_strdup(device);
	if (c[v->nchanges].id == NULL) {
		forget_changes(v);
		return;
	}
	v->nchanges++;
}

/* The devices changed after `since`. Changes up to `since` are dropped: a generation is
 * built on the current one, whose registry already has them. */
static int device_changes(void *arg, const char *tenant, uint64_t since, const char *const **ids,
                          size_t *n)
{
	static const char **out;
	struct tenant_version *v = version_of(tenant, 0);
	size_t drop = 0, k = 0;
	const char **o;

	(void)arg;
	if (v == NULL || since < v->floor)
		return -1;
	while (drop < v->nchanges && v->changes[drop].version <= since)
		moat_free(v->changes[drop++].id);
	memmove(v->changes, v->changes + drop, (v->nchanges - drop) * sizeof(*v->changes));
	v->nchanges -= drop;
	v->floor = since;
	o = moat_realloc(out, (v->nchanges + 1) * sizeof(*o));
	if (o == NULL)
		return -1;
	out = o;
	for (; k < v->nchanges; k++)
		out[k] = v->changes[k].id;
	*ids = out;
	*n = k;
	return 0;
}

static void store_changed(void *arg)
{
	(void)arg;
	/* Changes within a few milliseconds (a script enrolling a fleet) share one rebuild. */
	if (!uv_is_active((uv_handle_t *)&ctl.rebuild_timer))
		uv_timer_start(&ctl.rebuild_timer, rebuild_cb, 5, 0);
}

static void reload(void)
{
	struct moat_config *cfg = NULL;
	struct moat_gen *g = NULL, *cur;
	struct moat_gen_sources full;
	unsigned errors = 0;
	const char *err = NULL;

	moat_log_info("reloading configuration from %s", ctl.conf_path);
	if (moat_config_load(ctl.conf_path, report_log, &errors, &cfg) == MOAT_OK)
		moat_config_ref(cfg); /* one for the generation, one kept for store rebuilds */
	/* everything afresh: the file may have changed limits the compiled rules depend on */
	full = ctl.sources;
	full.versions = NULL;
	if (cfg == NULL ||
	    moat_gen_build(cfg, ctl.ticket_secret, &full, report_log, &errors, &g) != MOAT_OK) {
		moat_config_free(cfg);
		cur = moat_gen_acquire_current();
		moat_log_error("reload refused: %u error%s in %s; still serving generation %llu",
		               errors, errors == 1 ? "" : "s", ctl.conf_path,
		               cur ? (unsigned long long)cur->id : 0ull);
		moat_gen_release(cur);
		return;
	}
	if (g->cfg->workers != ctl.nworkers)
		moat_log_warn("workers = %u takes effect at the next restart (running %u)",
		              g->cfg->workers, ctl.nworkers);
	if (moat_log_reopen(g->cfg->error_log, g->cfg->access_log, g->cfg->log_level, &err) !=
	            MOAT_OK ||
	    moat_log_security_open(g->cfg->security_log, &err) != MOAT_OK)
		moat_log_error("reload: %s", err);
	moat_config_free(ctl.cfg);
	ctl.cfg = cfg;
	publish(g);
	moat_log_info("configuration reloaded: generation %llu", (unsigned long long)g->id);
}

static json_t *rules_json(const struct moat_ruleset *rs)
{
	json_t *arr = json_array();

	for (size_t i = 0; rs != NULL && arr != NULL && i < moat_ruleset_count(rs); i++) {
		const struct moat_rule *r = moat_ruleset_rule(rs, i);

		json_array_append_new(
		        arr, json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:I}", "id", r->id, "name",
		                       r->name ? r->name : "", "action",
		                       moat_rule_action_name(r->action), "mode",
		                       moat_rule_mode_name(r->mode), "enabled", r->enabled,
		                       "hits_enforce", (json_int_t)atomic_load(&r->hits_enforce),
		                       "hits_dry_run", (json_int_t)atomic_load(&r->hits_dry_run)));
	}
	return arr;
}

/* SIGUSR2: the rule hit counters, as JSON, in data_dir/rules-stats.json (written whole, then
 * renamed into place, so a reader never sees half a file). */
static void write_rules_stats(void)
{
	struct moat_gen *g = moat_gen_acquire_current();
	char path[4096], tmp[4200], t[40];
	json_t *root, *tenants;

	if (g == NULL)
		return;
	moat_log_time(t, sizeof(t));
	root = json_pack("{s:s, s:I}", "time", t, "generation", (json_int_t)g->id);
	tenants = json_object();
	for (size_t i = 0; root != NULL && tenants != NULL && i < g->ntenants; i++) {
		const struct moat_tenant *tn = &g->tenants[i];

		json_object_set_new(tenants, tn->cfg->name,
		                    json_pack("{s:o, s:o}", "rules", rules_json(tn->rules),
		                              "tcp_rules", rules_json(tn->tcp_rules)));
	}
	json_object_set_new(root, "tenants", tenants);
	snprintf(path, sizeof(path), "%s/rules-stats.json", g->cfg->data_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (root == NULL || json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 ||
	    rename(tmp, path) != 0)
		moat_log_error("cannot write %s: %s", path, strerror(errno));
	else
		moat_log_info("rule statistics written to %s", path);
	json_decref(root);
	moat_gen_release(g);
}

/* The store (tenants, devices, rules of the admin API) and the counters the API reports. */
static int open_store(const struct moat_config *cfg)
{
	char path[4096];
	const char *err = NULL;

	if (cfg->store != NULL)
		snprintf(path, sizeof(path), "%s", cfg->store);
	else
		snprintf(path, sizeof(path), "%s/moat.db", cfg->data_dir);
	if (moat_store_open(path, &err, &ctl.store) != MOAT_OK) {
		fprintf(stderr, "moatd: store %s: %s\n", path, err ? err : "cannot open");
		moat_log_error("store %s: %s", path, err ? err : "cannot open");
		return -1;
	}
	ctl.stats = moat_stats_new();
	if (ctl.stats == NULL)
		return -1;
	ctl.sources.store = ctl.store;
	ctl.sources.stats = ctl.stats;
	ctl.sources.versions = tenant_versions;
	ctl.sources.device_changes = device_changes;
	ctl.sources.take_complete = take_complete;
	return 0;
}

/* The admin API on the control loop; on first start, the operator token. */
static int start_admin(const struct moat_config *cfg)
{
	struct moat_admin_env env;
	const char *err = NULL;
	char *token = NULL;

	memset(&env, 0, sizeof(env));
	env.store = ctl.store;
	env.data_dir = cfg->data_dir;
	env.stats = ctl.stats;
	env.changed = store_changed;
	env.tenant_changed = tenant_changed;
	env.device_changed = device_changed;
	env.started_at = (int64_t)time(NULL);
	env.version = MOAT_VERSION;
	ctl.admin = moat_admin_ctx_new(&env);
	if (ctl.admin == NULL)
		return -1;
	if (moat_admin_bootstrap(ctl.admin, &token) != MOAT_OK) {
		moat_log_error("cannot create the first operator token");
		return -1;
	}
	if (token != NULL) {
		/* shown once: the file is for `make run` and moatctl on this machine */
		fprintf(stderr,
		        "moatd: operator token (shown once; also in %s/operator.token, mode "
		        "0600):\n"
		        "  %s\n",
		        cfg->data_dir, token);
		moat_log_info("created the first operator token; it is in %s/operator.token",
		              cfg->data_dir);
		OPENSSL_cleanse(token, strlen(token));
		moat_free(token);
	}
	if (cfg->admin_listen == NULL) {
		moat_log_info("admin API off (admin_listen = off)");
		return 0;
	}
	if (moat_admin_server_start(ctl.loop, ctl.admin, cfg->admin_listen, cfg->admin_cert,
	                            cfg->admin_key, &err, &ctl.admin_server) != MOAT_OK) {
		moat_log_error("admin API: %s", err ? err : "cannot start");
		fprintf(stderr, "moatd: admin API: %s\n", err ? err : "cannot start");
		return -1;
	}
	return 0;
}

static void drain_deadline_cb(uv_timer_t *t)
{
	moat_log_warn("drain deadline reached: closing the remaining connections");
	for (unsigned i = 0; i < ctl.nworkers; i++)
		moat_worker_notify_stop(&ctl.workers[i], 1);
}

static void start_drain(void)
{
	struct moat_gen *g = moat_gen_acquire_current();
	uint64_t timeout = g ? g->cfg->drain_timeout : 30000;

	moat_gen_release(g);
	if (ctl.draining) {
		drain_deadline_cb(NULL);
		return;
	}
	ctl.draining = 1;
	if (ctl.admin_server != NULL) {
		moat_admin_server_stop(ctl.admin_server);
		ctl.admin_server = NULL;
	}
	moat_log_info("draining: no new connections; in-flight requests have %llu ms",
	              (unsigned long long)timeout);
	for (unsigned i = 0; i < ctl.nworkers; i++)
		moat_worker_notify_stop(&ctl.workers[i], 0);
	uv_timer_start(&ctl.drain_timer, drain_deadline_cb, timeout, 0);
}

static void signal_cb(uv_signal_t *h, int signum)
{
	const char *err = NULL;

	switch (signum) {
	case SIGHUP:
		if (!ctl.draining)
			reload();
		break;
	case SIGUSR1: {
		struct moat_gen *g = moat_gen_acquire_current();

		if (g != NULL && (moat_log_reopen(g->cfg->error_log, g->cfg->access_log,
		                                  g->cfg->log_level, &err) != MOAT_OK ||
		                  moat_log_security_open(g->cfg->security_log, &err) != MOAT_OK))
			moat_log_error("reopening logs: %s", err);
		else
			moat_log_info("log files reopened");
		moat_gen_release(g);
		break;
	}
	case SIGUSR2:
		write_rules_stats();
		break;
	default:
		start_drain();
		break;
	}
}

static int worker_exited(struct moat_worker *w)
{
	atomic_fetch_add(&ctl.exited, 1);
	uv_async_send(&ctl.worker_exit);
	return 0;
}

static void close_handle(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void worker_exit_cb(uv_async_t *h)
{
	if (atomic_load(&ctl.exited) < ctl.nworkers)
		return;
	uv_walk(ctl.loop, close_handle, NULL);
}

static void log_started(const struct moat_gen *g)
{
	char buf[1024];
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < g->nlisteners && n < sizeof(buf) - 1; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s=%s", i ? ", " : "",
		                      g->listeners[i].cfg->name, g->listeners[i].cfg->bind);
	moat_log_info("moatd started: %u worker%s, listening on %s (version %s, pid %ld)",
	              ctl.nworkers, ctl.nworkers == 1 ? "" : "s", buf, MOAT_VERSION,
	              (long)getpid());
}

int main(int argc, char **argv)
{
	struct moat_config *cfg = NULL;
	struct moat_gen *g = NULL;
	const char *err = NULL;
	char *pid_file = NULL;
	int opt, test_only = 0;
	unsigned errors = 0;

	while ((opt = getopt(argc, argv, "c:thv")) != -1) {
		switch (opt) {
		case 'c':
			ctl.conf_path = optarg;
			break;
		case 't':
			test_only = 1;
			break;
		case 'v':
			printf("moatd %s (%s, libuv %s)\n", MOAT_VERSION,
			       OpenSSL_version(OPENSSL_VERSION), uv_version_string());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (ctl.conf_path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	moat_alloc_init();
	signal(SIGPIPE, SIG_IGN);
	if (OPENSSL_init_ssl(0, NULL) != 1 || moat_tls_init() != MOAT_OK) {
		fprintf(stderr, "moatd: cannot initialise OpenSSL\n");
		return 1;
	}
	if (test_only && RAND_bytes(ctl.ticket_secret, TICKET_SECRET_LEN) != 1)
		return 1;
	if (moat_config_load(ctl.conf_path, report_stderr, &errors, &cfg) != MOAT_OK) {
		fprintf(stderr, "moatd: configuration %s has %u error%s\n", ctl.conf_path, errors,
		        errors == 1 ? "" : "s");
		return 1;
	}
	if (!test_only) {
		if (moat_log_open(cfg->error_log, cfg->access_log, cfg->log_level, &err) !=
		            MOAT_OK ||
		    moat_log_security_open(cfg->security_log, &err) != MOAT_OK) {
			fprintf(stderr, "moatd: %s\n", err);
			moat_config_free(cfg);
			return 1;
		}
		if (load_ticket_secret(cfg->data_dir, ctl.ticket_secret) < 0) {
			moat_config_free(cfg);
			return 1;
		}
	}
	if (!test_only && open_store(cfg) < 0) {
		moat_config_free(cfg);
		return 1;
	}
	ctl.cfg = cfg;
	moat_config_ref(cfg); /* kept for rebuilds from the store */
	if (moat_gen_build(cfg, ctl.ticket_secret, &ctl.sources, report_stderr, &errors, &g) !=
	    MOAT_OK) {
		fprintf(stderr, "moatd: configuration %s has %u error%s\n", ctl.conf_path, errors,
		        errors == 1 ? "" : "s");
		return 1;
	}
	if (test_only) {
		printf("moatd: configuration %s is ok\n", ctl.conf_path);
		moat_gen_release(g);
		return 0;
	}
	if (g->cfg->pid_file != NULL) {
		if (write_pid_file(g->cfg->pid_file) < 0)
			moat_log_warn("cannot write pid_file %s: %s", g->cfg->pid_file,
			              strerror(errno));
		else
			pid_file = moat_strdup(g->cfg->pid_file);
	}

	ctl.loop = uv_default_loop();
	ctl.nworkers = g->cfg->workers;
	ctl.workers = moat_calloc(ctl.nworkers, sizeof(*ctl.workers));
	if (ctl.workers == NULL)
		return 1;
	uv_async_init(ctl.loop, &ctl.worker_exit, worker_exit_cb);
	uv_timer_init(ctl.loop, &ctl.drain_timer);
	uv_timer_init(ctl.loop, &ctl.rebuild_timer);
	uv_signal_init(ctl.loop, &ctl.sighup);
	uv_signal_init(ctl.loop, &ctl.sigterm);
	uv_signal_init(ctl.loop, &ctl.sigint);
	uv_signal_init(ctl.loop, &ctl.sigusr1);
	uv_signal_init(ctl.loop, &ctl.sigusr2);
	uv_signal_start(&ctl.sighup, signal_cb, SIGHUP);
	uv_signal_start(&ctl.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&ctl.sigint, signal_cb, SIGINT);
	uv_signal_start(&ctl.sigusr1, signal_cb, SIGUSR1);
	uv_signal_start(&ctl.sigusr2, signal_cb, SIGUSR2);

	moat_gen_publish(g); /* the published reference is the control thread's */
	for (unsigned i = 0; i < ctl.nworkers; i++) {
		ctl.workers[i].on_exit = worker_exited;
		if (moat_worker_start(&ctl.workers[i], i, g) != MOAT_OK) {
			moat_log_error("cannot start worker %u; exiting", i);
			_exit(1);
		}
	}
	if (start_admin(g->cfg) < 0)
		_exit(1);
	log_started(g);
	uv_run(ctl.loop, UV_RUN_DEFAULT);
	for (unsigned i = 0; i < ctl.nworkers; i++)
		moat_worker_join(&ctl.workers[i]);
	for (unsigned i = 0; i < ctl.nworkers; i++)
		moat_worker_destroy(&ctl.workers[i]);
	moat_log_info("moatd stopped");
	if (pid_file != NULL) /* the file written at start, whatever reloads said since */
		unlink(pid_file);
	moat_free(pid_file);
	moat_gen_unpublish();
	moat_config_free(ctl.cfg);
	moat_admin_ctx_free(ctl.admin);
	moat_store_close(ctl.store);
	while (rules_jobs != NULL) { /* the loop ran until every job was done */
		struct rules_job *j = rules_jobs;

		rules_jobs = j->next;
		rules_job_free(j);
	}
	moat_stats_free(ctl.stats);
	for (size_t i = 0; i < nversions; i++) {
		forget_changes(&versions[i]);
		moat_free(versions[i].name);
	}
	moat_free(versions);
	moat_free(ctl.workers);
	uv_loop_close(ctl.loop);
	return 0;
}
