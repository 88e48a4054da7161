/*
 * moatctl stats: counters of a tenant, a device or a rule since moatd started.
 */
#include <stdio.h>

#include "moatctl.h"

static void print_tenant_stats(const json_t *s)
{
	static const struct ctl_column cols[] = {
	        {"RULE", "id", NULL},
	        {"ENFORCE", "enforce", "hits"},
	        {"DRY-RUN", "dry_run", "hits"},
	        {NULL, NULL, NULL},
	};
	const json_t *rules = json_object_get(s, "rules");

	ctl_print_object(s, NULL);
	if (json_array_size(rules) == 0)
		return;
	fputs("\nrule hits:\n", stdout);
	ctl_print_items(rules, cols);
}

static int run_stats(struct ctl *ctl, const struct ctl_args *a)
{
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
	/* one device's or one rule's counters are key: value lines alone */
	rc = ctl_http_show(ctl, "GET", path, NULL,
	                   device == NULL && rule == NULL ? print_tenant_stats : NULL);
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
