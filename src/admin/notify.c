/*
 * Telling moatd what changed, so that a new generation rebuilds only that: a rule added to
 * one tenant must not recompile every tenant's rules nor reread a million devices.
 */
#include "admin/internal.h"

void admin_tenant_changed(struct moat_admin_call *c, const char *tenant, unsigned what)
{
	if (c->ctx->env.tenant_changed != NULL)
		c->ctx->env.tenant_changed(c->ctx->env.arg, tenant, what);
}

void admin_device_changed(struct moat_admin_call *c, const char *tenant, const char *device)
{
	if (c->ctx->env.device_changed != NULL)
		c->ctx->env.device_changed(c->ctx->env.arg, tenant, device);
	else
		admin_tenant_changed(c, tenant, MOAT_ADMIN_CHANGED_DEVICES);
}
