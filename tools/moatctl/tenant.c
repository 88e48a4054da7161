/*
 * moatctl tenant add|list|show|set|rm
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "moatctl.h"

/* A tenant as "key: value" lines, then its device CAs as a table. */
static void print_tenant(const json_t *t)
{
	const json_t *cas = json_object_get(t, "device_cas");

	ctl_print_object(t, NULL);
	if (json_array_size(cas) > 0) {
		fputs("\ndevice CAs:\n", stdout);
		ctl_print_ca_table(cas);
	}
}

/* A JSON array of the list option's values; "" alone means an empty list. */
static json_t *string_array(const char *const *values)
{
	json_t *arr = json_array();

	if (arr == NULL)
		return NULL;
	if (values[0] != NULL && values[1] == NULL && values[0][0] == '\0')
		return arr;
	for (; *values != NULL; values++)
		json_array_append_new(arr, json_string(*values));
	return arr;
}

/* "" clears a field (JSON null): the way `tenant set` removes an origin. */
static void set_text_or_null(json_t *body, const char *key, const char *value)
{
	ctl_json_set_str(body, key, value[0] ? value : NULL);
}

/* The fields add and set share. Returns an exit code. */
static int fill_common(const struct ctl_args *a, json_t *body)
{
	const char *v;
	int rc;

	if (ctl_has(a, "host"))
		ctl_json_set(body, "hosts", string_array(ctl_list(a, "host")));
	if ((v = ctl_value(a, "origin")) != NULL)
		set_text_or_null(body, "origin", v);
	if ((v = ctl_value(a, "tcp-origin")) != NULL)
		set_text_or_null(body, "tcp_origin", v);
	if ((v = ctl_value(a, "origin-ca")) != NULL) {
		if (v[0] == '\0')
			ctl_json_set(body, "origin_ca", json_null());
		else if ((rc = ctl_set_file(body, "origin_ca", v)) != CTL_EXIT_OK)
			return rc;
	}
	if (ctl_has(a, "quarantine-allow"))
		ctl_json_set(body, "quarantine_allow",
		             string_array(ctl_list(a, "quarantine-allow")));
	if (ctl_has(a, "server-cert") != ctl_has(a, "server-key"))
		return ctl_usage(a, "--server-cert and --server-key go together");
	if (ctl_has(a, "server-cert")) {
		if ((rc = ctl_set_file(body, "server_cert", ctl_value(a, "server-cert"))) != 0 ||
		    (rc = ctl_set_file(body, "server_key", ctl_value(a, "server-key"))) != 0)
			return rc;
	}
	return CTL_EXIT_OK;
}

/* The "ca" member of a new tenant: imported, or generated with optional cn/days. */
static int fill_ca(const struct ctl_args *a, json_t *body)
{
	json_t *ca;
	int rc;

	if (ctl_has(a, "ca-key") && !ctl_has(a, "ca-cert"))
		return ctl_usage(a, "--ca-key needs --ca-cert");
	if (ctl_has(a, "ca-cert") && (ctl_has(a, "ca-cn") || ctl_has(a, "ca-days")))
		return ctl_usage(a, "--ca-cn and --ca-days are for a generated CA, not --ca-cert");
	if (!ctl_has(a, "ca-cert") && !ctl_has(a, "ca-cn") && !ctl_has(a, "ca-days"))
		return CTL_EXIT_OK; /* the API generates one */
	ca = json_object();
	ctl_json_set(body, "ca", ca);
	if (ctl_has(a, "ca-cert")) {
		if ((rc = ctl_set_file(ca, "cert", ctl_value(a, "ca-cert"))) != 0)
			return rc;
		if (ctl_has(a, "ca-key") && (rc = ctl_set_file(ca, "key", ctl_value(a, "ca-key"))))
			return rc;
		return CTL_EXIT_OK;
	}
	ctl_json_set(ca, "generate", json_true());
	if (ctl_has(a, "ca-cn"))
		ctl_json_set_str(ca, "cn", ctl_value(a, "ca-cn"));
	return ctl_set_int_opt(ca, "days", a, "ca-days", 1, 36500);
}

static int run_add(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	int rc;

	if (!ctl_has(a, "host")) {
		rc = ctl_usage(a, "a tenant needs at least one --host");
		goto out;
	}
	ctl_json_set_str(body, "name", a->pos[0]);
	rc = fill_common(a, body);
	if (rc == CTL_EXIT_OK)
		rc = fill_ca(a, body);
	if (rc != CTL_EXIT_OK)
		goto out;
	rc = ctl_http_show(ctl, "POST", "/v1/tenants", body, print_tenant);
out:
	json_decref(body);
	return rc;
}

static void print_tenants(const json_t *answer)
{
	static const struct ctl_column cols[] = {
	        {"NAME", "name", NULL},     {"HOSTS", "hosts", NULL},
	        {"ORIGIN", "origin", NULL}, {"TCP-ORIGIN", "tcp_origin", NULL},
	        {"SOURCE", "source", NULL}, {"CREATED", "created_at", NULL},
	        {NULL, NULL, NULL},
	};

	ctl_print_items(json_object_get(answer, "items"), cols);
}

static int run_list(struct ctl *ctl, const struct ctl_args *a)
{
	return ctl_http_show(ctl, "GET", "/v1/tenants", NULL, print_tenants);
}

static int run_show(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}", a->pos[0]);
	int rc = ctl_http_show(ctl, "GET", path, NULL, print_tenant);

	ctl_free(path);
	return rc;
}

static int run_set(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc = fill_common(a, body);

	if (rc != CTL_EXIT_OK)
		goto out;
	if (json_object_size(body) == 0) {
		rc = ctl_usage(a, "nothing to change");
		goto out;
	}
	path = ctl_path("/v1/tenants/{}", a->pos[0]);
	rc = ctl_http_show(ctl, "PATCH", path, body, print_tenant);
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

/* Deleting a tenant deletes its keys and devices: ask, unless --yes. 0 to go on, else the
 * exit code. */
static int confirm_delete(const struct ctl_args *a)
{
	char line[256];
	const char *name = a->pos[0];

	if (ctl_has(a, "yes"))
		return CTL_EXIT_OK;
	if (!isatty(STDIN_FILENO))
		return ctl_usage(a,
		                 "deleting tenant %s needs --yes when standard input is not a "
		                 "terminal",
		                 name);
	fprintf(stderr,
	        "Delete tenant %s with all its device CAs and their keys, devices, rules and "
	        "tokens?\nType the tenant's name to confirm: ",
	        name);
	if (fgets(line, sizeof(line), stdin) == NULL)
		line[0] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (strcmp(line, name) == 0)
		return CTL_EXIT_OK;
	fprintf(stderr, "moatctl: tenant %s not deleted\n", name);
	return CTL_EXIT_API;
}

static int run_rm(struct ctl *ctl, const struct ctl_args *a)
{
	char *path;
	int rc = confirm_delete(a);

	if (rc != CTL_EXIT_OK)
		return rc;
	path = ctl_path("/v1/tenants/{}", a->pos[0]);
	rc = ctl_http_delete(ctl, path, "deleted tenant %s", a->pos[0]);
	ctl_free(path);
	return rc;
}

static const struct ctl_opt add_opts[] = {
        {"host", CTL_OPT_LIST},
        {"origin", CTL_OPT_VALUE},
        {"tcp-origin", CTL_OPT_VALUE},
        {"origin-ca", CTL_OPT_VALUE},
        {"quarantine-allow", CTL_OPT_LIST},
        {"server-cert", CTL_OPT_VALUE},
        {"server-key", CTL_OPT_VALUE},
        {"ca-cert", CTL_OPT_VALUE},
        {"ca-key", CTL_OPT_VALUE},
        {"ca-cn", CTL_OPT_VALUE},
        {"ca-days", CTL_OPT_VALUE},
        {NULL, 0},
};

static const struct ctl_opt set_opts[] = {
        {"host", CTL_OPT_LIST},
        {"origin", CTL_OPT_VALUE},
        {"tcp-origin", CTL_OPT_VALUE},
        {"origin-ca", CTL_OPT_VALUE},
        {"quarantine-allow", CTL_OPT_LIST},
        {"server-cert", CTL_OPT_VALUE},
        {"server-key", CTL_OPT_VALUE},
        {NULL, 0},
};

static const struct ctl_opt rm_opts[] = {{"yes", CTL_OPT_FLAG}, {NULL, 0}};
static const struct ctl_opt no_opts[] = {{NULL, 0}};

static const char add_help[] =
        "Creates a tenant (operator token). It serves traffic within a second.\n\n"
        "  --host H                 an SNI name of its devices (repeat for more; *.x.com\n"
        "                           matches one label)\n"
        "  --origin URL             http://host:port or https://host:port\n"
        "  --tcp-origin URL         tcp://host:port or tls://host:port (at least one origin)\n"
        "  --origin-ca FILE         PEM CA to verify a TLS origin (default: system CAs)\n"
        "  --quarantine-allow PATH  path prefix a quarantined device may still reach\n"
        "                           (repeatable), e.g. /firmware/\n"
        "  --server-cert FILE --server-key FILE\n"
        "                           the certificate devices see (default: one issued by\n"
        "                           the node's edge CA)\n"
        "  --ca-cert FILE [--ca-key FILE]\n"
        "                           import the device CA instead of generating one\n"
        "  --ca-cn CN, --ca-days N  subject and validity of the generated device CA\n";

static const char set_help[] =
        "Changes a tenant; only the fields given change. --host and --quarantine-allow\n"
        "replace the whole list. An empty value clears: --origin '' --tcp-origin ''\n"
        "--origin-ca '' --quarantine-allow ''. --host needs an operator token.\n\n"
        "  --host H, --origin URL, --tcp-origin URL, --origin-ca FILE,\n"
        "  --quarantine-allow PATH, --server-cert FILE --server-key FILE  (as in tenant add)\n";

const struct ctl_cmd ctl_tenant_cmds[] = {
        {"tenant", "add",
         "NAME --host H [--host H2]... [--origin URL] [--tcp-origin URL] [--origin-ca FILE] "
         "[--quarantine-allow PATH]... [--server-cert FILE --server-key FILE] "
         "[--ca-cert FILE [--ca-key FILE] | --ca-cn CN --ca-days N]",
         add_help, 1, 1, add_opts, run_add},
        {"tenant", "list", "", "Lists the tenants (a tenant token sees only its own).\n", 0, 0,
         no_opts, run_list},
        {"tenant", "show", "NAME",
         "Shows a tenant, its device CAs and its server CA (PEM with --json).\n", 1, 1, no_opts,
         run_show},
        {"tenant", "set",
         "NAME [--host H]... [--origin URL] [--tcp-origin URL] [--origin-ca FILE] "
         "[--quarantine-allow PATH]... [--server-cert FILE --server-key FILE]",
         set_help, 1, 1, set_opts, run_set},
        {"tenant", "rm", "NAME [--yes]",
         "Deletes a tenant and everything it owns: device CAs and their keys, devices,\n"
         "rules, its tokens; its open connections are closed. Asks for the name on a\n"
         "terminal; --yes skips the question (needed when standard input is not a terminal).\n",
         1, 1, rm_opts, run_rm},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
