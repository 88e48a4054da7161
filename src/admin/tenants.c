/*
 * Tenants and their device CAs (docs/api.md), and the certificates a tenant made through the
 * API needs: a server certificate issued for its hosts by the node's edge CA (or imported),
 * and device CAs generated here (or imported).
 *
 * Private keys are written under data_dir/keys/<tenant>/ (0600) before the transaction that
 * records their data_dir-relative paths, and removed again if it does not commit; no answer
 * ever carries a key. Tenants of the config file are shown read-only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/gen.h"
#include "core/log.h"

#define MAX_HOSTS 64
#define MAX_HOST_LEN 253
#define MAX_ORIGIN_LEN 1024
#define MAX_PEM (256 * 1024)
#define MAX_QUARANTINE_ALLOW 64
#define MAX_PATH_PREFIX 1024
#define MAX_CN 64 /* the X.509 upper bound for commonName */
#define CA_DAYS 3650
#define SERVER_DAYS 397 /* what browsers accept; devices do not care, but tools do */
#define EDGE_CA_CN "Moat edge CA"

/* ---- files ------------------------------------------------------------------------------- */

/* 500 for a failure that is not the store's; the reason goes to the error log. */
static void internal_error(struct moat_admin_call *c, const char *what)
{
	admin_error(c, 500, "internal", "%s failed; nothing was written", what);
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	moat_log_error("admin: mkdir %s: %s", path, strerror(errno));
	return -1;
}

/* Writes a private key under keys/<tenant>/; *rel (allocated) is its data_dir-relative path. */
static int key_save(struct moat_admin_call *c, const char *tenant, const char *what,
                    const char *pem, char **rel)
{
	char r[ADMIN_PATH_CAP], abs[ADMIN_PATH_CAP];

	admin_abs_path(c, "keys", abs, sizeof(abs));
	if (make_dir(abs) != 0)
		goto fail;
	snprintf(r, sizeof(r), "keys/%s", tenant);
	admin_abs_path(c, r, abs, sizeof(abs));
	if (make_dir(abs) != 0)
		goto fail;
	admin_key_path(c, tenant, what, r, sizeof(r));
	admin_abs_path(c, r, abs, sizeof(abs));
	if (moat_secret_write(abs, pem) != MOAT_OK) {
		moat_log_error("admin: writing %s: %s", abs, strerror(errno));
		goto fail;
	}
	*rel = moat_strdup(r);
	if (*rel == NULL) {
		unlink(abs);
		admin_store_error(c, MOAT_ENOMEM);
		return -1;
	}
	return 0;
fail:
	internal_error(c, "writing a private key");
	return -1;
}

static void key_remove(struct moat_admin_call *c, const char *rel)
{
	char abs[ADMIN_PATH_CAP];

	if (rel == NULL)
		return;
	admin_abs_path(c, rel, abs, sizeof(abs));
	if (unlink(abs) != 0 && errno != ENOENT)
		moat_log_warn("admin: removing %s: %s", abs, strerror(errno));
}

/* Removes keys/<tenant>/ and the keys in it (a deleted tenant's). */
static void key_dir_remove(struct moat_admin_call *c, const char *tenant)
{
	char rel[ADMIN_PATH_CAP], abs[ADMIN_PATH_CAP];
	struct dirent *e;
	DIR *d;

	snprintf(rel, sizeof(rel), "keys/%s", tenant);
	admin_abs_path(c, rel, abs, sizeof(abs));
	d = opendir(abs);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
		    unlinkat(dirfd(d), e->d_name, 0) != 0)
			moat_log_warn("admin: removing %s/%s: %s", abs, e->d_name, strerror(errno));
	}
	closedir(d);
	if (rmdir(abs) != 0)
		moat_log_warn("admin: removing %s: %s", abs, strerror(errno));
}

/* Writes a public file (0644) whole or not at all: a temporary file renamed into place. */
static int public_write(const char *path, const char *text)
{
	char tmp[ADMIN_PATH_CAP + 8];
	size_t len = strlen(text), off = 0;
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return MOAT_EIO;
	ok = fchmod(fd, 0644) == 0;
	while (ok && off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		ok = w > 0;
		off += ok ? (size_t)w : 0;
	}
	ok = ok && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return MOAT_EIO;
	}
	return MOAT_OK;
}

/* ---- the edge CA --------------------------------------------------------------------------- */

static void edge_paths(struct moat_admin_call *c, char *cert, char *key, size_t cap)
{
	admin_abs_path(c, "edge-ca.crt", cert, cap);
	admin_abs_path(c, "keys/edge-ca.key", key, cap);
}

static int edge_ca_create(struct moat_admin_call *c, char **cert_pem, char **key_pem)
{
	char cert_path[ADMIN_PATH_CAP], key_path[ADMIN_PATH_CAP], dir[ADMIN_PATH_CAP];
	struct moat_cert_info info;
	struct moat_ca_err err;
	int rc;

	edge_paths(c, cert_path, key_path, sizeof(cert_path));
	rc = moat_ca_generate(EDGE_CA_CN, CA_DAYS, cert_pem, key_pem, &info, &err);
	if (rc != MOAT_OK) {
		moat_log_error("admin: generating the edge CA: %s", err.msg);
		return rc;
	}
	admin_abs_path(c, "keys", dir, sizeof(dir));
	/* a key without its certificate is left from an interrupted first use */
	unlink(key_path);
	rc = make_dir(dir) == 0 ? moat_secret_write(key_path, *key_pem) : MOAT_EIO;
	if (rc == MOAT_OK)
		rc = public_write(cert_path, *cert_pem);
	if (rc != MOAT_OK) {
		moat_log_error("admin: writing the edge CA (%s, %s): %s", cert_path, key_path,
		               strerror(errno));
		unlink(key_path);
		moat_free(*cert_pem);
		moat_ca_free_secret(*key_pem);
		*cert_pem = *key_pem = NULL;
		return MOAT_EIO;
	}
	moat_log_info("admin: created the edge CA %s (%s)", cert_path, info.fingerprint);
	return MOAT_OK;
}

int admin_edge_ca(struct moat_admin_call *c, char **cert_pem, char **key_pem)
{
	char cert_path[ADMIN_PATH_CAP], key_path[ADMIN_PATH_CAP];
	int rc;

	*cert_pem = *key_pem = NULL;
	edge_paths(c, cert_path, key_path, sizeof(cert_path));
	rc = moat_secret_read(cert_path, cert_pem);
	if (rc == MOAT_ENOTFOUND)
		return edge_ca_create(c, cert_pem, key_pem);
	if (rc == MOAT_OK)
		rc = moat_secret_read(key_path, key_pem);
	if (rc != MOAT_OK) {
		moat_log_error("admin: reading the edge CA (%s, %s) failed", cert_path, key_path);
		moat_free(*cert_pem);
		*cert_pem = NULL;
		return rc == MOAT_ENOTFOUND ? MOAT_EIO : rc;
	}
	return MOAT_OK;
}

/* The edge CA's certificate for answers; NULL (logged) if it cannot be read. */
static char *edge_ca_cert(struct moat_admin_call *c)
{
	char cert_path[ADMIN_PATH_CAP], key_path[ADMIN_PATH_CAP];
	char *pem = NULL;

	edge_paths(c, cert_path, key_path, sizeof(cert_path));
	if (moat_secret_read(cert_path, &pem) != MOAT_OK)
		moat_log_warn("admin: cannot read %s", cert_path);
	return pem;
}

/* A server certificate for hosts from the edge CA; *edge_cert (if not NULL) gets its PEM. */
static int server_issue(struct moat_admin_call *c, const struct moat_strv *hosts, char **cert,
                        char **key, char **edge_cert)
{
	char *ca_cert = NULL, *ca_key = NULL;
	struct moat_ca_err err;
	int rc;

	if (admin_edge_ca(c, &ca_cert, &ca_key) != MOAT_OK) {
		internal_error(c, "loading the edge CA");
		return -1;
	}
	rc = moat_ca_issue_server(ca_cert, ca_key, (const char *const *)hosts->v, hosts->n,
	                          SERVER_DAYS, cert, key, &err);
	moat_ca_free_secret(ca_key);
	if (rc == MOAT_EINVAL) {
		admin_error(c, 400, "bad_request", "%s", err.msg); /* "hosts: ..." */
	} else if (rc != MOAT_OK) {
		moat_log_error("admin: issuing a server certificate: %s", err.msg);
		internal_error(c, "issuing the server certificate");
	}
	if (rc == MOAT_OK && edge_cert != NULL)
		*edge_cert = ca_cert;
	else
		moat_free(ca_cert);
	return rc == MOAT_OK ? 0 : -1;
}

/* ---- JSON of tenants and CAs ------------------------------------------------------------ */

static json_t *strings_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *tenant_json(const struct moat_store_tenant *t)
{
	return json_pack("{s:s, s:o, s:s?, s:s?, s:s?, s:o, s:s, s:o, s:o}", "name", t->name,
	                 "hosts", strings_json(t->hosts.v, t->hosts.n), "origin", t->origin,
	                 "tcp_origin", t->tcp_origin, "origin_ca", t->origin_ca, "quarantine_allow",
	                 strings_json(t->quarantine_allow.v, t->quarantine_allow.n), "source",
	                 "api", "created_at", admin_time(t->created_at), "updated_at",
	                 admin_time(t->updated_at));
}

/* A tenant of the config file: origin_ca is a file there, not PEM, so it is not shown. */
static json_t *config_tenant_json(const struct moat_config_tenant *t)
{
	return json_pack("{s:s, s:o, s:s?, s:s?, s:n, s:[], s:s, s:n, s:n}", "name", t->name,
	                 "hosts", strings_json(t->hosts, t->nhosts), "origin", t->origin,
	                 "tcp_origin", t->tcp_origin, "origin_ca", "quarantine_allow", "source",
	                 "config", "created_at", "updated_at");
}

static json_t *ca_json(const struct moat_store_ca *ca)
{
	return json_pack("{s:I, s:s, s:s, s:o, s:b, s:b, s:s}", "id", (json_int_t)ca->id, "subject",
	                 ca->subject, "fingerprint", ca->fingerprint, "not_after",
	                 admin_time(ca->not_after), "generated", ca->generated, "has_key",
	                 ca->key_file != NULL, "cert", ca->cert);
}

/* Appends the certificates of one PEM file to items, numbering them from *id. */
static void config_ca_file(const char *path, json_t *items, int64_t *id)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	char *pem = NULL, *p, *b, *e;

	if (moat_secret_read(path, &pem) != MOAT_OK) {
		moat_log_warn("admin: cannot read device CA file %s", path);
		return;
	}
	for (p = pem; (b = strstr(p, begin)) != NULL && (e = strstr(b, end)) != NULL; p = e) {
		struct moat_store_ca ca;
		struct moat_cert_info info;
		struct moat_ca_err err;
		char *cert;

		e += sizeof(end) - 1;
		cert = moat_strndup(b, (size_t)(e - b));
		if (cert == NULL)
			break;
		if (moat_cert_info_pem(cert, &info, &err) == MOAT_OK) {
			memset(&ca, 0, sizeof(ca));
			ca.id = (*id)++;
			ca.cert = cert;
			ca.subject = info.subject;
			ca.fingerprint = info.fingerprint;
			ca.not_after = info.not_after;
			json_array_append_new(items, ca_json(&ca));
		}
		moat_free(cert);
	}
	moat_free(pem);
}

/* The device CAs of a config tenant, read from its files: ids are their order there. */
static json_t *config_cas_json(const struct moat_config_tenant *t)
{
	json_t *items = json_array();
	int64_t id = 1;
	size_t i;

	for (i = 0; items != NULL && i < t->ndevice_cas; i++)
		config_ca_file(t->device_cas[i], items, &id);
	return items;
}

/* The CA list of a store tenant; NULL after answering a store failure. */
static json_t *store_cas_json(struct moat_admin_call *c, const char *tenant)
{
	struct moat_store_ca *v = NULL;
	size_t n = 0, i;
	json_t *items;
	int rc = moat_store_ca_list(c->ctx->env.store, tenant, &v, &n);

	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return NULL;
	}
	items = json_array();
	for (i = 0; items != NULL && i < n; i++)
		json_array_append_new(items, ca_json(&v[i]));
	moat_store_cas_free(v, n);
	return items;
}

/* The answer for one tenant: the tenant, its device_cas and server_ca. cas is stolen. */
static json_t *tenant_full_json(const struct moat_store_tenant *t, json_t *cas,
                                const char *server_ca)
{
	json_t *obj = tenant_json(t);

	if (obj == NULL) {
		json_decref(cas);
		return NULL;
	}
	json_object_set_new(obj, "device_cas", cas != NULL ? cas : json_array());
	json_object_set_new(obj, "server_ca",
	                    t->server_cert_generated && server_ca != NULL ? json_string(server_ca)
	                                                                  : json_null());
	return obj;
}

/* The JSON of a config tenant (with its CAs when `full`), NULL if the file has none by that
 * name any more. */
static json_t *config_tenant_answer(const char *name, int full)
{
	struct moat_gen *g = moat_gen_acquire_current();
	const struct moat_config_tenant *t =
	        g != NULL ? moat_config_tenant_find(g->cfg, name) : NULL;
	json_t *obj = t != NULL ? config_tenant_json(t) : NULL;

	if (obj != NULL && full) {
		json_object_set_new(obj, "device_cas", config_cas_json(t));
		json_object_set_new(obj, "server_ca", json_null());
	}
	moat_gen_release(g);
	return obj;
}

/* ---- tenant bodies ------------------------------------------------------------------------- */

/* What a POST or PATCH body says; pointers into the body. An `has_` flag with a NULL value
 * means JSON null (cleared). */
struct tenant_input {
	int has_hosts, has_origin, has_tcp_origin, has_origin_ca, has_quarantine_allow;
	struct moat_strv hosts, quarantine_allow;
	const char *origin, *tcp_origin, *origin_ca;
	const char *server_cert, *server_key;
};

static void tenant_input_clear(struct tenant_input *in)
{
	moat_strv_clear(&in->hosts);
	moat_strv_clear(&in->quarantine_allow);
}

/* A string field that may be null: 1 present (value or NULL), 0 absent, -1 answered. */
static int nullable_string(struct moat_admin_call *c, const char *key, size_t maxlen, int syntax,
                           const char **out)
{
	static const char absent[] = "";
	const char *v = absent;
	int rc = admin_body_string(c, key, maxlen, syntax, 1, &v);

	if (rc < 0)
		return -1;
	if (rc == 0 && v == absent)
		return 0;
	*out = v;
	return 1;
}

static int hosts_parse(struct moat_admin_call *c, struct tenant_input *in)
{
	size_t i, j;
	char *p;
	int rc =
	        admin_body_strv(c, "hosts", MAX_HOSTS, MAX_HOST_LEN, ADMIN_SYNTAX_HOST, &in->hosts);

	if (rc <= 0)
		return rc;
	in->has_hosts = 1;
	if (in->hosts.n == 0) {
		admin_error(c, 400, "bad_request", "hosts: 1 to %d names", MAX_HOSTS);
		return -1;
	}
	for (i = 0; i < in->hosts.n; i++) {
		for (p = in->hosts.v[i]; *p != '\0'; p++) {
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		}
		for (j = 0; j < i; j++) {
			if (strcmp(in->hosts.v[i], in->hosts.v[j]) == 0) {
				admin_error(c, 400, "bad_request", "hosts: %s is given twice",
				            in->hosts.v[i]);
				return -1;
			}
		}
	}
	return 1;
}

static int origin_check(struct moat_admin_call *c, const char *v, int tcp)
{
	enum moat_origin_scheme scheme;
	char err[256], *host = NULL;
	uint16_t port;
	int rc = moat_config_origin_parse(v, tcp, &scheme, &host, &port, err, sizeof(err));

	moat_free(host);
	if (rc == MOAT_ENOMEM) {
		admin_store_error(c, rc);
		return -1;
	}
	if (rc != MOAT_OK) {
		admin_error(c, 400, "bad_request", "%s", err);
		return -1;
	}
	return 0;
}

static int origins_parse(struct moat_admin_call *c, struct tenant_input *in)
{
	struct moat_cert_info info;
	struct moat_ca_err err;
	int rc;

	rc = nullable_string(c, "origin", MAX_ORIGIN_LEN, ADMIN_SYNTAX_TEXT, &in->origin);
	if (rc < 0 || (rc == 1 && in->origin != NULL && origin_check(c, in->origin, 0) != 0))
		return -1;
	in->has_origin = rc;
	rc = nullable_string(c, "tcp_origin", MAX_ORIGIN_LEN, ADMIN_SYNTAX_TEXT, &in->tcp_origin);
	if (rc < 0 ||
	    (rc == 1 && in->tcp_origin != NULL && origin_check(c, in->tcp_origin, 1) != 0))
		return -1;
	in->has_tcp_origin = rc;
	rc = nullable_string(c, "origin_ca", MAX_PEM, ADMIN_SYNTAX_PEM, &in->origin_ca);
	if (rc < 0)
		return -1;
	in->has_origin_ca = rc;
	if (rc == 1 && in->origin_ca != NULL &&
	    moat_cert_info_pem(in->origin_ca, &info, &err) != MOAT_OK) {
		admin_error(c, 400, "bad_request", "origin_ca: %s", err.msg);
		return -1;
	}
	return 0;
}

static int quarantine_allow_parse(struct moat_admin_call *c, struct tenant_input *in)
{
	size_t i;
	int rc = admin_body_strv(c, "quarantine_allow", MAX_QUARANTINE_ALLOW, MAX_PATH_PREFIX,
	                         ADMIN_SYNTAX_TEXT, &in->quarantine_allow);

	if (rc <= 0)
		return rc;
	in->has_quarantine_allow = 1;
	for (i = 0; i < in->quarantine_allow.n; i++) {
		if (in->quarantine_allow.v[i][0] != '/') {
			admin_error(c, 400, "bad_request",
			            "quarantine_allow: %.64s does not start with /",
			            in->quarantine_allow.v[i]);
			return -1;
		}
	}
	return 0;
}

static int server_cert_parse(struct moat_admin_call *c, struct tenant_input *in)
{
	struct moat_ca_err err;
	int has_cert, has_key;

	has_cert =
	        admin_body_string(c, "server_cert", MAX_PEM, ADMIN_SYNTAX_PEM, 0, &in->server_cert);
	if (has_cert < 0)
		return -1;
	has_key = admin_body_string(c, "server_key", MAX_PEM, ADMIN_SYNTAX_PEM, 0, &in->server_key);
	if (has_key < 0)
		return -1;
	if (has_cert != has_key) {
		admin_error(c, 400, "bad_request", "server_cert and server_key go together");
		return -1;
	}
	if (has_cert && moat_ca_check_server(in->server_cert, in->server_key, &err) != MOAT_OK) {
		admin_error(c, 400, "bad_request", "%s", err.msg); /* names its field */
		return -1;
	}
	return 0;
}

static int tenant_input_parse(struct moat_admin_call *c, struct tenant_input *in)
{
	memset(in, 0, sizeof(*in));
	if (hosts_parse(c, in) < 0 || origins_parse(c, in) != 0 ||
	    quarantine_allow_parse(c, in) != 0 || server_cert_parse(c, in) != 0)
		return -1;
	return 0;
}

/* 409 if a host belongs to another tenant, of the store or of the config file. */
static int hosts_free(struct moat_admin_call *c, const char *self, const struct moat_strv *hosts)
{
	struct moat_store_tenant *v = NULL;
	struct moat_gen *g;
	const char *owner = NULL, *host = NULL;
	size_t n = 0, i, j, k;
	int rc = moat_store_tenant_list(c->ctx->env.store, &v, &n);

	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return -1;
	}
	for (i = 0; i < n && owner == NULL; i++) {
		for (j = 0; j < v[i].hosts.n && owner == NULL && strcmp(v[i].name, self) != 0;
		     j++) {
			for (k = 0; k < hosts->n && owner == NULL; k++) {
				if (strcmp(v[i].hosts.v[j], hosts->v[k]) == 0) {
					owner = v[i].name;
					host = hosts->v[k];
				}
			}
		}
	}
	if (owner != NULL) {
		admin_error(c, 409, "conflict", "host %s belongs to tenant %s", host, owner);
		moat_store_tenants_free(v, n);
		return -1;
	}
	moat_store_tenants_free(v, n);
	g = moat_gen_acquire_current();
	for (i = 0; g != NULL && i < g->cfg->ntenants && owner == NULL; i++) {
		const struct moat_config_tenant *t = &g->cfg->tenants[i];

		for (j = 0; j < t->nhosts && owner == NULL && strcmp(t->name, self) != 0; j++) {
			for (k = 0; k < hosts->n && owner == NULL; k++) {
				if (strcmp(t->hosts[j], hosts->v[k]) == 0) {
					admin_error(
					        c, 409, "conflict",
					        "host %s belongs to tenant %s of the config file",
					        hosts->v[k], t->name);
					owner = t->name;
				}
			}
		}
	}
	moat_gen_release(g);
	return owner != NULL ? -1 : 0;
}

/* ---- device CAs: what a body asks for ------------------------------------------------------ */

struct ca_spec {
	int generate;
	const char *cn, *cert, *key;
	int64_t days;
};

/* Reads a CA request ({"generate": true, "cn", "days"} or {"cert", "key"}) from c->body;
 * no body means generate. */
static int ca_spec_parse(struct moat_admin_call *c, struct ca_spec *s)
{
	static const char *const allowed[] = {"generate", "cn", "days", "cert", "key", NULL};
	int generate = 1, has_generate, has_cn, has_days, has_cert, has_key;

	memset(s, 0, sizeof(*s));
	s->days = CA_DAYS;
	if (admin_body_check(c, allowed, 1) != 0 ||
	    (has_generate = admin_body_bool(c, "generate", &generate)) < 0 ||
	    (has_cn = admin_body_string(c, "cn", MAX_CN, ADMIN_SYNTAX_TEXT, 0, &s->cn)) < 0 ||
	    (has_days = admin_body_int(c, "days", 1, MOAT_CA_MAX_DAYS, &s->days)) < 0 ||
	    (has_cert = admin_body_string(c, "cert", MAX_PEM, ADMIN_SYNTAX_PEM, 0, &s->cert)) < 0 ||
	    (has_key = admin_body_string(c, "key", MAX_PEM, ADMIN_SYNTAX_PEM, 1, &s->key)) < 0)
		return -1;
	if (has_cert && (has_generate || has_cn || has_days)) {
		admin_error(
		        c, 400, "bad_request",
		        "a CA is either generated (generate, cn, days) or imported (cert, key)");
		return -1;
	}
	if (!has_cert && (has_key || !generate)) {
		admin_error(c, 400, "bad_request",
		            "give {\"generate\": true} or the CA's \"cert\" (and \"key\")");
		return -1;
	}
	if (has_cn && s->cn[0] == '\0') {
		admin_error(c, 400, "bad_request", "\"cn\": must not be empty");
		return -1;
	}
	s->generate = !has_cert;
	return 0;
}

/* The same, for the "ca" object inside a tenant's body. */
static int ca_spec_parse_field(struct moat_admin_call *c, struct ca_spec *s)
{
	json_t *body = c->body, *v = json_object_get(body, "ca");
	int rc;

	if (v != NULL && !json_is_object(v)) {
		admin_error(c, 400, "bad_request", "\"ca\": expected an object");
		return -1;
	}
	c->body = v;
	rc = ca_spec_parse(c, s);
	c->body = body;
	return rc;
}

/* Makes the CA a spec asks for: the record to insert and the key to write (NULL if none). */
static int ca_make(struct moat_admin_call *c, const char *tenant, const struct ca_spec *s,
                   struct moat_store_ca *ca, char **key)
{
	struct moat_cert_info info;
	struct moat_ca_err err;
	char cn[MAX_CN + 64];
	int rc;

	memset(ca, 0, sizeof(*ca));
	*key = NULL;
	if (s->generate) {
		snprintf(cn, sizeof(cn), "%s device CA", tenant);
		rc = moat_ca_generate(s->cn != NULL ? s->cn : cn, (unsigned)s->days, &ca->cert, key,
		                      &info, &err);
	} else {
		rc = moat_ca_check_import(s->cert, s->key, &info, &err);
		if (rc == MOAT_OK) {
			ca->cert = moat_strdup(s->cert);
			*key = s->key != NULL ? moat_strdup(s->key) : NULL;
			if (ca->cert == NULL || (s->key != NULL && *key == NULL))
				rc = MOAT_ENOMEM;
		}
	}
	if (rc == MOAT_OK) {
		ca->tenant = moat_strdup(tenant);
		ca->subject = moat_strdup(info.subject);
		ca->fingerprint = moat_strdup(info.fingerprint);
		ca->not_after = info.not_after;
		ca->generated = s->generate;
		ca->created_at = c->req->now_ms / 1000;
		if (ca->tenant == NULL || ca->subject == NULL || ca->fingerprint == NULL)
			rc = MOAT_ENOMEM;
	}
	if (rc == MOAT_OK)
		return 0;
	if (rc == MOAT_EINVAL) {
		admin_error(c, 400, "bad_request", "ca: %s", err.msg);
	} else if (rc == MOAT_ENOMEM) {
		admin_store_error(c, rc);
	} else {
		moat_log_error("admin: making a CA for %s: %s", tenant, err.msg);
		internal_error(c, "making the CA");
	}
	moat_store_ca_clear(ca);
	moat_ca_free_secret(*key);
	*key = NULL;
	return -1;
}

/* ---- tenants ------------------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

	return strcmp(json_string_value(json_object_get(x, "name")),
	              json_string_value(json_object_get(y, "name")));
}

/* Config tenants the caller may see, skipping names the store has (the store's win). */
static void config_tenants_add(struct moat_admin_call *c, const struct moat_gen *g,
                               const struct moat_store_tenant *v, size_t n, json_t **items,
                               size_t *count)
{
	size_t i, j;

	for (i = 0; g != NULL && i < g->cfg->ntenants; i++) {
		const struct moat_config_tenant *t = &g->cfg->tenants[i];

		for (j = 0; j < n && strcmp(v[j].name, t->name) != 0; j++)
			;
		if (j < n || (c->scope != NULL && strcmp(c->scope, t->name) != 0))
			continue;
		items[(*count)++] = config_tenant_json(t);
	}
}

/* {"items": [...]} of the tenants, sorted by name; NULL if one could not be made. */
static json_t *tenant_items(json_t **items, size_t count)
{
	json_t *arr;
	size_t i;

	for (i = 0; i < count; i++) {
		if (items[i] == NULL)
			return NULL;
	}
	qsort(items, count, sizeof(*items), name_cmp);
	arr = json_array();
	for (i = 0; arr != NULL && i < count; i++)
		json_array_append(arr, items[i]);
	return arr != NULL ? json_pack("{s:o}", "items", arr) : NULL;
}

void admin_tenant_list(struct moat_admin_call *c)
{
	struct moat_store_tenant *v = NULL;
	struct moat_gen *g = moat_gen_acquire_current();
	size_t n = 0, i, count = 0;
	json_t **items = NULL;
	int rc;

	rc = moat_store_tenant_list(c->ctx->env.store, &v, &n);
	if (rc == MOAT_OK) {
		items = moat_calloc(n + (g != NULL ? g->cfg->ntenants : 0), sizeof(*items));
		rc = items != NULL ? MOAT_OK : MOAT_ENOMEM;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (c->scope == NULL || strcmp(c->scope, v[i].name) == 0)
			items[count++] = tenant_json(&v[i]);
	}
	config_tenants_add(c, g, v, n, items, &count);
	admin_reply(c, 200, tenant_items(items, count));
	for (i = 0; i < count; i++)
		json_decref(items[i]);
out:
	moat_free(items);
	moat_store_tenants_free(v, n);
	moat_gen_release(g);
}

void admin_tenant_get(struct moat_admin_call *c)
{
	struct moat_store_tenant t;
	const char *name = c->params[0];
	char *server_ca;
	json_t *cas;
	int ro;

	if (admin_tenant(c, name, 0, &t, &ro) != 0)
		return;
	if (ro) {
		json_t *obj = config_tenant_answer(name, 1);

		if (obj == NULL)
			admin_error(c, 404, "not_found", "no tenant %s", name);
		else
			admin_reply(c, 200, obj);
		return;
	}
	cas = store_cas_json(c, name);
	if (cas != NULL) {
		server_ca = t.server_cert_generated ? edge_ca_cert(c) : NULL;
		admin_reply(c, 200, tenant_full_json(&t, cas, server_ca));
		moat_free(server_ca);
	}
	moat_store_tenant_clear(&t);
}

static int dup_or_null(const char *s, char **out)
{
	*out = s != NULL ? moat_strdup(s) : NULL;
	return s != NULL && *out == NULL ? -1 : 0;
}

/* Replaces a string field of a record with a copy of v (NULL clears). */
static int replace_string(char **field, const char *v)
{
	char *copy;

	if (dup_or_null(v, &copy) != 0)
		return -1;
	moat_free(*field);
	*field = copy;
	return 0;
}

static void replace_strv(struct moat_strv *field, struct moat_strv *v)
{
	moat_strv_clear(field);
	*field = *v;
	v->v = NULL;
	v->n = 0;
}

/* Applies what the body gives to the record; the lists move out of `in`. */
static int tenant_apply(struct moat_store_tenant *t, struct tenant_input *in)
{
	if (in->has_hosts)
		replace_strv(&t->hosts, &in->hosts);
	if (in->has_quarantine_allow)
		replace_strv(&t->quarantine_allow, &in->quarantine_allow);
	if ((in->has_origin && replace_string(&t->origin, in->origin) != 0) ||
	    (in->has_tcp_origin && replace_string(&t->tcp_origin, in->tcp_origin) != 0) ||
	    (in->has_origin_ca && replace_string(&t->origin_ca, in->origin_ca) != 0))
		return -1;
	return 0;
}

/* 409 unless the name is free in the store and in the config file. */
static int tenant_name_free(struct moat_admin_call *c, const char *name)
{
	struct moat_store_tenant t;
	int rc;

	if (admin_config_tenant(name)) {
		admin_error(c, 409, "conflict", "tenant %s exists in the config file", name);
		return -1;
	}
	rc = moat_store_tenant_get(c->ctx->env.store, name, &t);
	if (rc == MOAT_OK) {
		moat_store_tenant_clear(&t);
		admin_error(c, 409, "conflict", "tenant %s exists", name);
		return -1;
	}
	if (rc != MOAT_ENOTFOUND) {
		admin_store_error(c, rc);
		return -1;
	}
	return 0;
}

/* Everything a new tenant needs before its transaction. */
struct tenant_new {
	struct moat_store_tenant t;
	struct moat_store_ca ca;
	char *server_key, *ca_key; /* PEM, wiped when freed */
	char *edge_cert; /* the edge CA's PEM when it issued the server certificate */
};

static void tenant_new_clear(struct tenant_new *nt)
{
	moat_store_tenant_clear(&nt->t);
	moat_store_ca_clear(&nt->ca);
	moat_ca_free_secret(nt->server_key);
	moat_ca_free_secret(nt->ca_key);
	moat_free(nt->edge_cert);
}

/* The tenant's record, server certificate and CA, keys written; -1 after answering. */
static int tenant_new_make(struct moat_admin_call *c, const char *name, struct tenant_input *in,
                           const struct ca_spec *spec, struct tenant_new *nt)
{
	struct moat_store_tenant *t = &nt->t;

	t->name = moat_strdup(name);
	t->created_at = t->updated_at = c->req->now_ms / 1000;
	if (t->name == NULL || tenant_apply(t, in) != 0 ||
	    dup_or_null(in->server_cert, &t->server_cert) != 0 ||
	    dup_or_null(in->server_key, &nt->server_key) != 0) {
		admin_store_error(c, MOAT_ENOMEM);
		return -1;
	}
	if (in->server_cert == NULL) {
		if (server_issue(c, &t->hosts, &t->server_cert, &nt->server_key, &nt->edge_cert) !=
		    0)
			return -1;
		t->server_cert_generated = 1;
	}
	if (ca_make(c, name, spec, &nt->ca, &nt->ca_key) != 0 ||
	    key_save(c, name, "server", nt->server_key, &t->server_key_file) != 0 ||
	    (nt->ca_key != NULL && key_save(c, name, "ca", nt->ca_key, &nt->ca.key_file) != 0))
		return -1;
	return 0;
}

static int tenant_new_insert(struct moat_admin_call *c, struct tenant_new *nt)
{
	struct moat_store *s = c->ctx->env.store;
	int rc = moat_store_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_tenant_insert(s, &nt->t);
	if (rc == MOAT_OK)
		rc = moat_store_ca_insert(s, &nt->ca);
	if (rc == MOAT_OK)
		rc = admin_audit(
		        c, "tenant.create", nt->t.name, nt->t.name,
		        json_pack("{s:o}", "hosts", strings_json(nt->t.hosts.v, nt->t.hosts.n)));
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	return rc;
}

/* Removes the keys a tenant that was not created had written, and its directory if empty. */
static void tenant_new_undo(struct moat_admin_call *c, struct tenant_new *nt)
{
	char rel[ADMIN_PATH_CAP], abs[ADMIN_PATH_CAP];

	key_remove(c, nt->t.server_key_file);
	key_remove(c, nt->ca.key_file);
	if (nt->t.name != NULL) {
		snprintf(rel, sizeof(rel), "keys/%s", nt->t.name);
		admin_abs_path(c, rel, abs, sizeof(abs));
		rmdir(abs);
	}
}

void admin_tenant_create(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"name",        "hosts",      "origin",
	                                      "tcp_origin",  "origin_ca",  "quarantine_allow",
	                                      "server_cert", "server_key", "ca",
	                                      NULL};
	struct tenant_input in;
	struct tenant_new nt;
	struct ca_spec spec;
	const char *name = NULL;
	int rc;

	memset(&in, 0, sizeof(in));
	memset(&nt, 0, sizeof(nt));
	if (admin_operator_only(c) != 0 || admin_body_check(c, allowed, 0) != 0)
		return;
	rc = admin_body_string(c, "name", 63, ADMIN_SYNTAX_TENANT, 0, &name);
	if (rc == 0)
		admin_error(c, 400, "bad_request", "\"name\" is required");
	if (rc <= 0 || tenant_input_parse(c, &in) != 0 || ca_spec_parse_field(c, &spec) != 0)
		goto out;
	if (!in.has_hosts) {
		admin_error(c, 400, "bad_request", "\"hosts\" is required");
		goto out;
	}
	if (in.origin == NULL && in.tcp_origin == NULL) {
		admin_error(c, 400, "bad_request", "\"origin\" or \"tcp_origin\" is required");
		goto out;
	}
	if (tenant_name_free(c, name) != 0 || hosts_free(c, name, &in.hosts) != 0)
		goto out;
	if (tenant_new_make(c, name, &in, &spec, &nt) != 0) {
		tenant_new_undo(c, &nt);
		goto out;
	}
	rc = tenant_new_insert(c, &nt);
	if (rc != MOAT_OK) {
		tenant_new_undo(c, &nt);
		if (rc == MOAT_EEXIST)
			admin_error(c, 409, "conflict", "tenant %s exists", name);
		else
			admin_store_error(c, rc);
		goto out;
	}
	/* a tenant of the same name deleted just before must not lend its rules or devices */
	admin_tenant_changed(c, name, MOAT_ADMIN_CHANGED_RULES | MOAT_ADMIN_CHANGED_DEVICES);
	admin_changed(c);
	admin_reply(c, 201,
	            tenant_full_json(&nt.t, json_pack("[o]", ca_json(&nt.ca)), nt.edge_cert));
out:
	tenant_new_clear(&nt);
	tenant_input_clear(&in);
}

static int same_hosts(const struct moat_strv *a, const struct moat_strv *b)
{
	size_t i, j;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++) {
		for (j = 0; j < b->n && strcmp(a->v[i], b->v[j]) != 0; j++)
			;
		if (j == b->n)
			return 0;
	}
	return 1;
}

/* The new server certificate a PATCH asks for (imported, or reissued because the hosts
 * changed), its key written; *old_key gets the key file it replaces. -1 after answering. */
static int server_cert_update(struct moat_admin_call *c, struct moat_store_tenant *t,
                              const struct tenant_input *in, int hosts_changed, char **old_key)
{
	char *cert = NULL, *key = NULL, *rel = NULL;

	if (in->server_cert != NULL) {
		if (dup_or_null(in->server_cert, &cert) != 0 ||
		    dup_or_null(in->server_key, &key) != 0) {
			moat_free(cert);
			admin_store_error(c, MOAT_ENOMEM);
			return -1;
		}
	} else if (hosts_changed && t->server_cert_generated) {
		if (server_issue(c, &t->hosts, &cert, &key, NULL) != 0)
			return -1;
	} else {
		return 0;
	}
	if (key_save(c, t->name, "server", key, &rel) != 0) {
		moat_free(cert);
		moat_ca_free_secret(key);
		return -1;
	}
	moat_ca_free_secret(key);
	moat_free(t->server_cert);
	t->server_cert = cert;
	*old_key = t->server_key_file;
	t->server_key_file = rel;
	t->server_cert_generated = in->server_cert == NULL;
	return 0;
}

/* The names of the fields a PATCH changed, for the audit log. */
static json_t *changed_fields(json_t *body)
{
	json_t *a = json_array(), *v;
	const char *key;

	json_object_foreach (body, key, v) {
		json_array_append_new(a, json_string(key));
	}
	return json_pack("{s:o}", "fields", a);
}

static int tenant_update_commit(struct moat_admin_call *c, const struct moat_store_tenant *t)
{
	struct moat_store *s = c->ctx->env.store;
	int rc = moat_store_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_tenant_update(s, t);
	if (rc == MOAT_OK)
		rc = admin_audit(c, "tenant.update", t->name, t->name, changed_fields(c->body));
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	return rc;
}

void admin_tenant_update(struct moat_admin_call *c)
{
	static const char *const allowed[] = {
	        "hosts",       "origin",     "tcp_origin", "origin_ca", "quarantine_allow",
	        "server_cert", "server_key", NULL};
	const char *name = c->params[0];
	struct moat_store_tenant t;
	struct tenant_input in;
	char *old_key = NULL, *server_ca = NULL;
	json_t *cas = NULL;
	int hosts_changed, rc;

	memset(&t, 0, sizeof(t));
	memset(&in, 0, sizeof(in));
	if (admin_body_check(c, allowed, 0) != 0 ||
	    (json_object_get(c->body, "hosts") != NULL && admin_operator_only(c) != 0) ||
	    admin_tenant(c, name, 1, &t, NULL) != 0)
		return;
	if (tenant_input_parse(c, &in) != 0 ||
	    (in.has_hosts && hosts_free(c, name, &in.hosts) != 0))
		goto out;
	hosts_changed = in.has_hosts && !same_hosts(&t.hosts, &in.hosts);
	if (tenant_apply(&t, &in) != 0) {
		admin_store_error(c, MOAT_ENOMEM);
		goto out;
	}
	if (t.origin == NULL && t.tcp_origin == NULL) {
		admin_error(c, 400, "bad_request", "a tenant needs \"origin\" or \"tcp_origin\"");
		goto out;
	}
	/* the CA list is read before the change, so nothing can fail after the commit */
	cas = store_cas_json(c, name);
	if (cas == NULL || server_cert_update(c, &t, &in, hosts_changed, &old_key) != 0)
		goto out;
	t.updated_at = c->req->now_ms / 1000;
	rc = tenant_update_commit(c, &t);
	if (rc != MOAT_OK) {
		if (old_key != NULL)
			key_remove(c, t.server_key_file);
		if (rc == MOAT_ENOTFOUND)
			admin_error(c, 404, "not_found", "no tenant %s", name);
		else
			admin_store_error(c, rc);
		goto out;
	}
	key_remove(c, old_key);
	admin_changed(c);
	server_ca = t.server_cert_generated ? edge_ca_cert(c) : NULL;
	admin_reply(c, 200, tenant_full_json(&t, cas, server_ca));
	cas = NULL;
out:
	json_decref(cas);
	moat_free(server_ca);
	moat_free(old_key);
	moat_store_tenant_clear(&t);
	tenant_input_clear(&in);
}

void admin_tenant_delete(struct moat_admin_call *c)
{
	struct moat_store *s = c->ctx->env.store;
	const char *name = c->params[0];
	int rc;

	if (admin_operator_only(c) != 0 || admin_tenant(c, name, 1, NULL, NULL) != 0)
		return;
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return;
	}
	rc = moat_store_tenant_delete(s, name);
	if (rc == MOAT_OK)
		rc = admin_audit(c, "tenant.delete", name, name, NULL);
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK) {
		moat_store_rollback(s);
		if (rc == MOAT_ENOTFOUND)
			admin_error(c, 404, "not_found", "no tenant %s", name);
		else
			admin_store_error(c, rc);
		return;
	}
	key_dir_remove(c, name);
	admin_signers_forget(c->ctx->signers, name);
	admin_tenant_changed(c, name, MOAT_ADMIN_CHANGED_RULES | MOAT_ADMIN_CHANGED_DEVICES);
	admin_changed(c);
	admin_no_content(c);
}

/* ---- device CAs ---------------------------------------------------------------------------- */

void admin_ca_list(struct moat_admin_call *c)
{
	const char *name = c->params[0];
	json_t *items = NULL;
	int ro;

	if (admin_tenant(c, name, 0, NULL, &ro) != 0)
		return;
	if (ro) {
		struct moat_gen *g = moat_gen_acquire_current();
		const struct moat_config_tenant *t =
		        g != NULL ? moat_config_tenant_find(g->cfg, name) : NULL;

		items = t != NULL ? config_cas_json(t) : json_array();
		moat_gen_release(g);
	} else {
		items = store_cas_json(c, name);
		if (items == NULL)
			return;
	}
	admin_reply(c, 200, json_pack("{s:o}", "items", items));
}

static int ca_insert_commit(struct moat_admin_call *c, struct moat_store_ca *ca)
{
	struct moat_store *s = c->ctx->env.store;
	char object[128];
	int rc = moat_store_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_ca_insert(s, ca);
	snprintf(object, sizeof(object), "%s/%lld", ca->tenant, (long long)ca->id);
	if (rc == MOAT_OK)
		rc = admin_audit(c, "ca.create", ca->tenant, object,
		                 json_pack("{s:s, s:s, s:b}", "subject", ca->subject, "fingerprint",
		                           ca->fingerprint, "generated", ca->generated));
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	return rc;
}

void admin_ca_create(struct moat_admin_call *c)
{
	const char *name = c->params[0];
	struct moat_store_ca ca;
	struct ca_spec spec;
	char *key = NULL;
	int rc;

	memset(&ca, 0, sizeof(ca));
	if (admin_tenant(c, name, 1, NULL, NULL) != 0 || ca_spec_parse(c, &spec) != 0 ||
	    ca_make(c, name, &spec, &ca, &key) != 0)
		return;
	if (key != NULL && key_save(c, name, "ca", key, &ca.key_file) != 0)
		goto out;
	rc = ca_insert_commit(c, &ca);
	if (rc != MOAT_OK) {
		key_remove(c, ca.key_file);
		if (rc == MOAT_EEXIST)
			admin_error(c, 409, "conflict", "tenant %s already has this CA (%s)", name,
			            ca.fingerprint);
		else
			admin_store_error(c, rc);
		goto out;
	}
	admin_changed(c);
	admin_reply(c, 201, ca_json(&ca));
out:
	moat_store_ca_clear(&ca);
	moat_ca_free_secret(key);
}

/* A CA id from the path: a positive decimal; -1 otherwise. */
static int64_t ca_id_parse(const char *s)
{
	int64_t v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i == 18)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return i > 0 && v > 0 ? v : -1;
}

/* Deletes the CA in one transaction; *key_file gets its key's path. MOAT_ENOTFOUND, or
 * MOAT_EEXIST standing for "the last CA". */
static int ca_delete_commit(struct moat_admin_call *c, const char *tenant, int64_t id,
                            char **key_file)
{
	struct moat_store *s = c->ctx->env.store;
	struct moat_store_ca *v = NULL;
	char object[128];
	size_t n = 0, i;
	int rc = moat_store_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_ca_list(s, tenant, &v, &n);
	for (i = 0; rc == MOAT_OK && i < n && v[i].id != id; i++)
		;
	if (rc == MOAT_OK && i == n)
		rc = MOAT_ENOTFOUND;
	else if (rc == MOAT_OK && n == 1)
		rc = MOAT_EEXIST;
	if (rc == MOAT_OK)
		rc = moat_store_ca_delete(s, tenant, id);
	snprintf(object, sizeof(object), "%s/%lld", tenant, (long long)id);
	if (rc == MOAT_OK)
		rc = admin_audit(c, "ca.delete", tenant, object,
		                 json_pack("{s:s}", "fingerprint", v[i].fingerprint));
	if (rc == MOAT_OK && dup_or_null(v[i].key_file, key_file) != 0)
		rc = MOAT_ENOMEM;
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	moat_store_cas_free(v, n);
	return rc;
}

void admin_ca_delete(struct moat_admin_call *c)
{
	const char *name = c->params[0];
	int64_t id;
	char *key_file = NULL;
	int rc;

	if (admin_tenant(c, name, 1, NULL, NULL) != 0)
		return;
	id = ca_id_parse(c->params[1]);
	rc = id > 0 ? ca_delete_commit(c, name, id, &key_file) : MOAT_ENOTFOUND;
	if (rc == MOAT_ENOTFOUND) {
		admin_error(c, 404, "not_found", "no CA %.32s in tenant %s", c->params[1], name);
	} else if (rc == MOAT_EEXIST) {
		admin_error(c, 409, "conflict",
		            "CA %lld is the last CA of tenant %s: add another one first",
		            (long long)id, name);
	} else if (rc != MOAT_OK) {
		admin_store_error(c, rc);
	} else {
		key_remove(c, key_file);
		admin_signers_forget(c->ctx->signers, name);
		admin_changed(c);
		admin_no_content(c);
	}
	moat_free(key_file);
}
