/*
 * moatctl ca list|add|rm: a tenant's device CAs.
 */
#include <stdio.h>

#include "moatctl.h"

void ctl_print_ca_table(const json_t *items)
{
	static const struct ctl_column cols[] = {
	        {"ID", "id", NULL},
	        {"SUBJECT", "subject", NULL},
	        {"GENERATED", "generated", NULL},
	        {"KEY", "has_key", NULL},
	        {"NOT-AFTER", "not_after", NULL},
	        {"FINGERPRINT", "fingerprint", NULL},
	        {NULL, NULL, NULL},
	};

	ctl_print_items(items, cols);
}

static void print_cas(const json_t *answer)
{
	ctl_print_ca_table(json_object_get(answer, "items"));
}

static int run_list(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/cas", a->pos[0]);
	int rc = ctl_http_show(ctl, "GET", path, NULL, print_cas);

	ctl_free(path);
	return rc;
}

/* {"generate": true, "cn", "days"} or {"cert", "key"}. Returns an exit code. */
static int fill_body(const struct ctl_args *a, json_t *body)
{
	int rc;

	if (ctl_has(a, "cert")) {
		if (ctl_has(a, "generate") || ctl_has(a, "cn") || ctl_has(a, "days"))
			return ctl_usage(a, "--cert imports a CA: no --generate, --cn or --days");
		if ((rc = ctl_set_file(body, "cert", ctl_value(a, "cert"))) != CTL_EXIT_OK)
			return rc;
		if (ctl_has(a, "key"))
			return ctl_set_file(body, "key", ctl_value(a, "key"));
		return CTL_EXIT_OK;
	}
	if (ctl_has(a, "key"))
		return ctl_usage(a, "--key goes with --cert");
	ctl_json_set(body, "generate", json_true());
	if (ctl_has(a, "cn"))
		ctl_json_set_str(body, "cn", ctl_value(a, "cn"));
	return ctl_set_int_opt(body, "days", a, "days", 1, 36500);
}

static int run_add(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc = fill_body(a, body);

	if (rc != CTL_EXIT_OK)
		goto out;
	path = ctl_path("/v1/tenants/{}/cas", a->pos[0]);
	rc = ctl_http_show(ctl, "POST", path, body, NULL);
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

static int run_rm(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/cas/{}", a->pos[0], a->pos[1]);
	int rc = ctl_http_delete(ctl, path, "deleted CA %s of %s", a->pos[1], a->pos[0]);

	ctl_free(path);
	return rc;
}

static const struct ctl_opt add_opts[] = {
        {"generate", CTL_OPT_FLAG}, {"cn", CTL_OPT_VALUE},  {"days", CTL_OPT_VALUE},
        {"cert", CTL_OPT_VALUE},    {"key", CTL_OPT_VALUE}, {NULL, 0},
};
static const struct ctl_opt no_opts[] = {{NULL, 0}};

const struct ctl_cmd ctl_ca_cmds[] = {
        {"ca", "list", "TENANT",
         "Lists the CAs the tenant's device certificates are checked "
         "against.\n",
         1, 1, no_opts, run_list},
        {"ca", "add", "TENANT [--generate [--cn CN] [--days N] | --cert FILE [--key FILE]]",
         "Adds a device CA: generated (the default; ECDSA P-256) or imported from PEM\n"
         "files. Without --key an imported CA only verifies devices enrolled elsewhere.\n"
         "The newest CA with a key signs new device certificates.\n\n"
         "  --generate         generate a CA (the default)\n"
         "  --cn CN            its subject's common name\n"
         "  --days N           its validity in days\n"
         "  --cert FILE        import this CA certificate\n"
         "  --key FILE         and its private key\n",
         1, 1, add_opts, run_add},
        {"ca", "rm", "TENANT ID", "Deletes a device CA and its key (not the tenant's last one).\n",
         2, 2, no_opts, run_rm},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
