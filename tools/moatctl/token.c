/*
 * moatctl token add|list|rm: API tokens (operator token needed).
 */
#include <stdio.h>

#include "moatctl.h"

static int run_add(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
	json_t *body = json_object();
	int rc;

	ctl_json_set_str(body, "name", a->pos[0]);
	if (ctl_has(a, "tenant"))
		ctl_json_set_str(body, "tenant", ctl_value(a, "tenant"));
	rc = ctl_http(ctl, "POST", "/v1/tokens", body, &r);
	if (rc == CTL_EXIT_OK && ctl->json) {
		ctl_print_json(r.json);
	} else if (rc == CTL_EXIT_OK) {
		ctl_print_object(r.json, NULL);
		fputs("moatctl: the token is shown only now: store it\n", stderr);
	}
	ctl_reply_clear(&r);
	json_decref(body);
	return rc;
}

static int run_list(struct ctl *ctl, const struct ctl_args *a)
{
	static const char *const headers[] = {"ID", "NAME", "TENANT", "CREATED", "LAST-USED", NULL};
	struct ctl_reply r = {0};
	struct ctl_table *t;
	const json_t *tok;
	size_t i;
	int rc = ctl_http(ctl, "GET", "/v1/tokens", NULL, &r);

	if (rc != CTL_EXIT_OK || ctl->json) {
		if (rc == CTL_EXIT_OK)
			ctl_print_json(r.json);
		goto out;
	}
	t = ctl_table_new(headers);
	json_array_foreach (json_object_get(r.json, "items"), i, tok) {
		ctl_table_row(t);
		ctl_table_field(t, tok, "id");
		ctl_table_field(t, tok, "name");
		ctl_table_field(t, tok, "tenant");
		ctl_table_field(t, tok, "created_at");
		ctl_table_field(t, tok, "last_used_at");
	}
	ctl_table_print(t);
out:
	ctl_reply_clear(&r);
	return rc;
}

static int run_rm(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
	char *path = ctl_path("/v1/tokens/{}", a->pos[0]);
	int rc = ctl_http(ctl, "DELETE", path, NULL, &r);

	if (rc == CTL_EXIT_OK && !ctl->json)
		printf("deleted token %s\n", a->pos[0]);
	ctl_reply_clear(&r);
	ctl_free(path);
	return rc;
}

static const struct ctl_opt add_opts[] = {{"tenant", CTL_OPT_VALUE}, {NULL, 0}};
static const struct ctl_opt no_opts[] = {{NULL, 0}};

const struct ctl_cmd ctl_token_cmds[] = {
        {"token", "add", "NAME [--tenant T]",
         "Creates an API token and prints it, this once. Without --tenant it is an operator\n"
         "token (every right); with it, limited to that tenant.\n\n"
         "  --tenant T           limit the token to tenant T\n",
         1, 1, add_opts, run_add},
        {"token", "list", "", "Lists the tokens (never their secrets).\n", 0, 0, no_opts, run_list},
        {"token", "rm", "ID",
         "Deletes a token (by the 16-hex-digit id of token list). The last operator token\n"
         "cannot delete itself.\n",
         1, 1, no_opts, run_rm},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
