/*
 * moatctl rule add|list|show|set|rm|enable|disable|validate: a tenant's virtual patches.
 */
#include <stdio.h>
#include <string.h>

#include "moatctl.h"

/* Text options sent as they are; "" sends null (clears the field in rule set). */
static const char *const text_fields[][2] = {
        {"name", "name"},           {"action", "action"}, {"mode", "mode"},
        {"scope", "scope"},         {"body", "body"},     {"description", "description"},
        {"reference", "reference"},
};

/* Fills a rule body from the options add and set share. An exit code. */
static int fill_rule(const struct ctl_args *a, json_t *body)
{
	int rc;

	for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++) {
		const char *v = ctl_value(a, text_fields[i][0]);

		if (v != NULL)
			ctl_json_set_str(body, text_fields[i][1], v[0] ? v : NULL);
	}
	if (ctl_value(a, "expr") != NULL) {
		char *expr = ctl_text_or_file(ctl_value(a, "expr"));

		if (expr == NULL)
			return CTL_EXIT_USAGE;
		ctl_json_set_str(body, "expr", expr);
		ctl_free(expr);
	}
	if (ctl_value(a, "status") != NULL && ctl_value(a, "status")[0] == '\0')
		ctl_json_set(body, "status", json_null());
	else if ((rc = ctl_set_int_opt(body, "status", a, "status", 100, 599)) != CTL_EXIT_OK)
		return rc;
	rc = ctl_set_int_opt(body, "position", a, "position", -1000000000, 1000000000);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl_has(a, "disabled"))
		ctl_json_set(body, "enabled", json_false());
	return CTL_EXIT_OK;
}

static int run_add(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc;

	if (ctl_value(a, "name") == NULL || ctl_value(a, "expr") == NULL) {
		rc = ctl_usage(a, "a rule needs --name and --expr");
		goto out;
	}
	if (ctl_has(a, "id"))
		ctl_json_set_str(body, "id", ctl_value(a, "id"));
	rc = fill_rule(a, body);
	if (rc != CTL_EXIT_OK)
		goto out;
	path = ctl_path("/v1/tenants/{}/rules", a->pos[0]);
	rc = ctl_http_show(ctl, "POST", path, body, NULL);
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

static int run_set(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc;

	if (ctl_has(a, "enabled") && ctl_has(a, "disabled")) {
		rc = ctl_usage(a, "--enabled or --disabled, not both");
		goto out;
	}
	rc = fill_rule(a, body);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (ctl_has(a, "enabled"))
		ctl_json_set(body, "enabled", json_true());
	if (json_object_size(body) == 0) {
		rc = ctl_usage(a, "nothing to change");
		goto out;
	}
	path = ctl_path("/v1/tenants/{}/rules/{}", a->pos[0], a->pos[1]);
	rc = ctl_http_show(ctl, "PATCH", path, body, NULL);
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

static void print_rules(const json_t *answer)
{
	static const struct ctl_column cols[] = {
	        {"POS", "position", NULL},      {"ID", "id", NULL},
	        {"ACTION", "action", NULL},     {"MODE", "mode", NULL},
	        {"SCOPE", "scope", NULL},       {"ENABLED", "enabled", NULL},
	        {"ENFORCE", "enforce", "hits"}, {"DRY-RUN", "dry_run", "hits"},
	        {"NAME", "name", NULL},         {NULL, NULL, NULL},
	};

	ctl_print_items(json_object_get(answer, "items"), cols);
}

static int run_list(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/rules", a->pos[0]);
	int rc = ctl_http_show(ctl, "GET", path, NULL, print_rules);

	ctl_free(path);
	return rc;
}

static int run_show(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/rules/{}", a->pos[0], a->pos[1]);
	int rc = ctl_http_show(ctl, "GET", path, NULL, NULL);

	ctl_free(path);
	return rc;
}

static int run_rm(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/rules/{}", a->pos[0], a->pos[1]);
	int rc = ctl_http_delete(ctl, path, "deleted rule %s of %s", a->pos[1], a->pos[0]);

	ctl_free(path);
	return rc;
}

static int toggle(struct ctl *ctl, const struct ctl_args *a, const char *action)
{
	struct ctl_reply r = {0};
	char *path = ctl_path("/v1/tenants/{}/rules/{}/", a->pos[0], a->pos[1]);
	char *full = ctl_printf("%s%s", path, action);
	int rc = ctl_http(ctl, "POST", full, NULL, &r);

	if (rc == CTL_EXIT_OK && ctl->json)
		ctl_print_json(r.json);
	else if (rc == CTL_EXIT_OK)
		printf("%sd rule %s of %s\n", action, a->pos[1], a->pos[0]);
	ctl_reply_clear(&r);
	ctl_free(full);
	ctl_free(path);
	return rc;
}

static int run_enable(struct ctl *ctl, const struct ctl_args *a)
{
	return toggle(ctl, a, "enable");
}

static int run_disable(struct ctl *ctl, const struct ctl_args *a)
{
	return toggle(ctl, a, "disable");
}

static int run_validate(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
	json_t *body = json_object();
	char *path = NULL;
	char *expr = NULL;
	int rc;

	if (ctl_value(a, "expr") == NULL) {
		rc = ctl_usage(a, "--expr is needed");
		goto out;
	}
	expr = ctl_text_or_file(ctl_value(a, "expr"));
	if (expr == NULL) {
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	ctl_json_set_str(body, "expr", expr);
	if (ctl_has(a, "scope"))
		ctl_json_set_str(body, "scope", ctl_value(a, "scope"));
	path = ctl_path("/v1/tenants/{}/rules/validate", a->pos[0]);
	rc = ctl_http(ctl, "POST", path, body, &r);
	/* The compiler's verdict is the answer, also when it is no: --json shows the 422's
	 * errors too (ctl_http printed them on stderr with their carets). */
	if (ctl->json && (rc == CTL_EXIT_OK || r.status == 422))
		ctl_print_json(r.json);
	else if (rc == CTL_EXIT_OK)
		puts("valid");
out:
	ctl_reply_clear(&r);
	json_decref(body);
	ctl_free(path);
	ctl_free(expr);
	return rc;
}

static const struct ctl_opt add_opts[] = {
        {"name", CTL_OPT_VALUE},
        {"expr", CTL_OPT_VALUE},
        {"id", CTL_OPT_VALUE},
        {"action", CTL_OPT_VALUE},
        {"mode", CTL_OPT_VALUE},
        {"scope", CTL_OPT_VALUE},
        {"status", CTL_OPT_VALUE},
        {"body", CTL_OPT_VALUE},
        {"description", CTL_OPT_VALUE},
        {"reference", CTL_OPT_VALUE},
        {"position", CTL_OPT_VALUE},
        {"disabled", CTL_OPT_FLAG},
        {NULL, 0},
};
static const struct ctl_opt set_opts[] = {
        {"name", CTL_OPT_VALUE},
        {"expr", CTL_OPT_VALUE},
        {"action", CTL_OPT_VALUE},
        {"mode", CTL_OPT_VALUE},
        {"scope", CTL_OPT_VALUE},
        {"status", CTL_OPT_VALUE},
        {"body", CTL_OPT_VALUE},
        {"description", CTL_OPT_VALUE},
        {"reference", CTL_OPT_VALUE},
        {"position", CTL_OPT_VALUE},
        {"enabled", CTL_OPT_FLAG},
        {"disabled", CTL_OPT_FLAG},
        {NULL, 0},
};
static const struct ctl_opt validate_opts[] = {
        {"expr", CTL_OPT_VALUE}, {"scope", CTL_OPT_VALUE}, {NULL, 0}};
static const struct ctl_opt no_opts[] = {{NULL, 0}};

static const char add_help[] =
        "Adds a rule (docs/rules.md for the language). The tenant's whole rule set is\n"
        "compiled first: an expression that does not compile is refused (exit 6) with the\n"
        "place of the error marked under it.\n\n"
        "  --name N             what the rule is (required)\n"
        "  --expr EXPR          the condition (required); @FILE reads it from FILE,\n"
        "                       @- from standard input\n"
        "  --id ID              its id (default: made from the name)\n"
        "  --action A           block (default), log, allow or close\n"
        "  --mode M             enforce (default) or dry-run\n"
        "  --scope S            http (default) or tcp (connection fields only)\n"
        "  --status N           block's HTTP status (100..599)\n"
        "  --body TEXT          block's answer body\n"
        "  --description D, --reference REF   e.g. --reference CVE-2026-0001\n"
        "  --position N         rules run in ascending position (default: after the last)\n"
        "  --disabled           add it switched off\n";

static const char set_help[] =
        "Changes a rule; only the fields given change. An empty value clears an optional\n"
        "field: --status '' --body '' --description '' --reference ''.\n\n"
        "  --name, --expr (@FILE too), --action, --mode, --scope, --status, --body,\n"
        "  --description, --reference, --position   as in rule add\n"
        "  --enabled, --disabled   switch it on or off\n";

const struct ctl_cmd ctl_rule_cmds[] = {
        {"rule", "add",
         "TENANT --name N --expr EXPR [--id ID] [--action block|log|allow|close] "
         "[--mode enforce|dry-run] [--scope http|tcp] [--status N] [--body TEXT] "
         "[--description D] [--reference REF] [--position N] [--disabled]",
         add_help, 1, 1, add_opts, run_add},
        {"rule", "list", "TENANT", "Lists a tenant's rules in evaluation order, with hits.\n", 1, 1,
         no_opts, run_list},
        {"rule", "show", "TENANT ID", "Shows one rule.\n", 2, 2, no_opts, run_show},
        {"rule", "set", "TENANT ID [--name N] [--expr EXPR] [...]", set_help, 2, 2, set_opts,
         run_set},
        {"rule", "rm", "TENANT ID", "Deletes a rule.\n", 2, 2, no_opts, run_rm},
        {"rule", "enable", "TENANT ID", "Switches a rule on.\n", 2, 2, no_opts, run_enable},
        {"rule", "disable", "TENANT ID", "Switches a rule off.\n", 2, 2, no_opts, run_disable},
        {"rule", "validate", "TENANT --expr EXPR [--scope http|tcp]",
         "Compiles an expression without saving it: prints \"valid\", or the errors with\n"
         "their place marked (exit 6). --expr @FILE reads it from FILE.\n",
         1, 1, validate_opts, run_validate},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
