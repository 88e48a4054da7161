/*
 * moatctl audit: the log of every change, newest first.
 */
#include <stdio.h>

#include "moatctl.h"

static void print_audit(const json_t *page)
{
	static const struct ctl_column cols[] = {
	        {"SEQ", "seq", NULL},       {"TIME", "at", NULL},       {"ACTOR", "actor", NULL},
	        {"SOURCE", "source", NULL}, {"TENANT", "tenant", NULL}, {"ACTION", "action", NULL},
	        {"OBJECT", "object", NULL}, {NULL, NULL, NULL},
	};
	const json_t *next = json_object_get(page, "next");

	ctl_print_items(json_object_get(page, "items"), cols);
	if (json_is_integer(next))
		fprintf(stderr, "more: --before %" JSON_INTEGER_FORMAT "\n",
		        json_integer_value(next));
}

static int run_audit(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/audit");
	json_int_t n;
	int rc;

	if (ctl_int_opt(a, "limit", 1, 1000, &n) < 0 ||
	    ctl_int_opt(a, "before", 0, (long long)1 << 62, &n) < 0) {
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	if (ctl_has(a, "limit"))
		ctl_query(&path, "limit", ctl_value(a, "limit"));
	if (ctl_has(a, "before"))
		ctl_query(&path, "before", ctl_value(a, "before"));
	rc = ctl_http_show(ctl, "GET", path, NULL, print_audit);
out:
	ctl_free(path);
	return rc;
}

static const struct ctl_opt audit_opts[] = {
        {"limit", CTL_OPT_VALUE}, {"before", CTL_OPT_VALUE}, {NULL, 0}};

const struct ctl_cmd ctl_audit_cmds[] = {
        {"audit", NULL, "[--limit N] [--before SEQ]",
         "Shows the audit log, newest first: when, which token (its id), from which\n"
         "address, what. --json also shows each entry's detail.\n\n"
         "  --limit N            entries per page (default 100)\n"
         "  --before SEQ         entries older than SEQ (the \"more:\" line names it)\n",
         0, 0, audit_opts, run_audit},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
