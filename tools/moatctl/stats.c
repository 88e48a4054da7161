/*
 * moatctl stats: counters of a tenant, a device or a rule since moatd started.
 */
#include <stdio.h>

#include "moatctl.h"

static void print_tenant_stats(const json_t *s)
{
	static const char *const headers[] = {"RULE", "ENFORCE", "DRY-RUN", NULL};
	const json_t *rules = json_object_get(s, "rules");
	struct ctl_table *t;
	const json_t *rule;
	size_t i;

	ctl_print_object(s, NULL);
	if (json_array_size(rules) == 0)
		return;
	fputs("\nrule hits:\n", stdout);
	t = ctl_table_new(headers);
	json_array_foreach (rules, i, rule) {
		const json_t *hits = json_object_get(rule, "hits");

		ctl_table_row(t);
		ctl_table_field(t, rule, "id");
		ctl_table_field(t, hits, "enforce");
		ctl_table_field(t, hits, "dry_run");
	}
	ctl_table_print(t);
}

static int run_stats(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
	const char *device = ctl_value(a, "device"), *rule = ctl_value(a, "rule");
	char *path;
	int rc;

	if (device != NULL && rule != NULL)
		return ctl_usage(a, "--device or --rule, not both");
	if (device != NULL)
		path = ctl_path("/v1/tenants/{}/devices/{}/stats", a->pos[0], device);
	else if (rule != NULL)
		path = ctl_path("/v1/tenants/{}/rules/{}/stats", a->pos[0], rule);
	else
		path = ctl_path("/v1/tenants/{}/stats", a->pos[0]);
	rc = ctl_http(ctl, "GET", path, NULL, &r);
	if (rc == CTL_EXIT_OK && ctl->json)
		ctl_print_json(r.json);
	else if (rc == CTL_EXIT_OK && device == NULL && rule == NULL)
		print_tenant_stats(r.json);
	else if (rc == CTL_EXIT_OK)
		ctl_print_object(r.json, NULL);
	ctl_reply_clear(&r);
	ctl_free(path);
	return rc;
}

static const struct ctl_opt stats_opts[] = {
        {"device", CTL_OPT_VALUE}, {"rule", CTL_OPT_VALUE}, {NULL, 0}};

const struct ctl_cmd ctl_stats_cmds[] = {
        {"stats", NULL, "TENANT [--device ID | --rule ID]",
         "Counters since moatd started: requests (HTTP requests and TCP connections),\n"
         "blocked, bytes in (from the devices) and out, connections, rule hits.\n\n"
         "  --device ID          one device's counters and when it was last seen\n"
         "  --rule ID            one rule's hits\n",
         1, 1, stats_opts, run_stats},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
