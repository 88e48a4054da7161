/*
 * Who may see what: operator-only actions, and the tenant a path names — from the store or
 * from the config file (read-only) — checked against a tenant token's scope. A tenant token
 * asking for another tenant gets the same 404 as for a tenant that does not exist.
 */
#include <string.h>

#include "admin/internal.h"
#include "core/gen.h"

int admin_operator_only(struct moat_admin_call *c)
{
	if (c->scope == NULL)
		return 0;
	admin_error(c, 403, "forbidden", "this needs an operator token");
	return -1;
}

int admin_config_tenant(const char *name)
{
	struct moat_gen *g = moat_gen_acquire_current();
	int found;

	if (g == NULL)
		return 0;
	found = moat_config_tenant_find(g->cfg, name) != NULL;
	moat_gen_release(g);
	return found;
}

int admin_tenant(struct moat_admin_call *c, const char *name, int write,
                 struct moat_store_tenant *out, int *read_only)
{
	struct moat_store_tenant t;
	int rc;

	memset(&t, 0, sizeof(t));
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (read_only != NULL)
		*read_only = 0;
	if (c->scope != NULL && strcmp(c->scope, name) != 0)
		goto not_found;
	/* the store first: a tenant made through the API is never read-only */
	rc = moat_store_tenant_get(c->ctx->env.store, name, &t);
	if (rc == MOAT_OK) {
		if (out != NULL)
			*out = t;
		else
			moat_store_tenant_clear(&t);
		return 0;
	}
	if (rc != MOAT_ENOTFOUND) {
		admin_store_error(c, rc);
		return -1;
	}
	if (!admin_config_tenant(name))
		goto not_found;
	if (write) {
		admin_error(
		        c, 409, "conflict",
		        "tenant %s comes from the config file and is read-only: change it there "
		        "and reload",
		        name);
		return -1;
	}
	if (read_only != NULL)
		*read_only = 1;
	return 0;
not_found:
	admin_error(c, 404, "not_found", "no tenant %.64s", name);
	return -1;
}
