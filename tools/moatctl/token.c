/*
 * moatctl token add|list|rm: API tokens (operator token needed).
 */
#include <stdio.h>

#include "moatctl.h"

static void print_new_token(const json_t *token)
{
	ctl_print_object(token, NULL);
	fputs("moatctl: the token is shown only now: store it\n", stderr);
}

static int run_add(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	int rc;

	ctl_json_set_str(body, "name", a->pos[0]);
	if (ctl_has(a, "tenant"))
		ctl_json_set_str(body, "tenant", ctl_value(a, "tenant"));
	rc = ctl_http_show(ctl, "POST", "/v1/tokens", body, print_new_token);
	json_decref(body);
	return rc;
}

static void print_tokens(const json_t *answer)
{
	static const struct ctl_column cols[] = {
	        {"ID", "id", NULL},
	        {"NAME", "name", NULL},
	        {"TENANT", "tenant", NULL},
	        {"CREATED", "created_at", NULL},
	        {"LAST-USED", "last_used_at", NULL},
	        {NULL, NULL, NULL},
	};

	ctl_print_items(json_object_get(answer, "items"), cols);
}

static int run_list(struct ctl *ctl, const struct ctl_args *a)
{
	return ctl_http_show(ctl, "GET", "/v1/tokens", NULL, print_tokens);
}

static int run_rm(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tokens/{}", a->pos[0]);
	int rc = ctl_http_delete(ctl, path, "deleted token %s", a->pos[0]);

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
