/*
 * moatctl audit: the log of every change, newest first.
 */
#include <stdio.h>

#include "moatctl.h"

static void print_audit(const json_t *page)
{
	static const char *const headers[] = {"SEQ",    "TIME",   "ACTOR",  "SOURCE",
	                                      "TENANT", "ACTION", "OBJECT", NULL};
	struct ctl_table *t = ctl_table_new(headers);
	const json_t *e, *next = json_object_get(page, "next");
	size_t i;

	json_array_foreach (json_object_get(page, "items"), i, e) {
		ctl_table_row(t);
		ctl_table_field(t, e, "seq");
		ctl_table_field(t, e, "at");
		ctl_table_field(t, e, "actor");
		ctl_table_field(t, e, "source");
		ctl_table_field(t, e, "tenant");
		ctl_table_field(t, e, "action");
		ctl_table_field(t, e, "object");
	}
	ctl_table_print(t);
	if (json_is_integer(next))
		fprintf(stderr, "more: --before %" JSON_INTEGER_FORMAT "\n",
		        json_integer_value(next));
}

static int run_audit(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
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
	rc = ctl_http(ctl, "GET", path, NULL, &r);
	if (rc == CTL_EXIT_OK && ctl->json)
		ctl_print_json(r.json);
	else if (rc == CTL_EXIT_OK)
		print_audit(r.json);
out:
	ctl_reply_clear(&r);
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
