#include <string.h>

#include "core/log.h"
#include "core/seclog.h"

static void field(struct moat_line *l, const char *key, const char *v)
{
	moat_line_printf(l, ",\"%s\":", key);
	moat_line_json_str(l, v ? v : "", v ? strlen(v) : 0);
}

void moat_seclog_hit(void *arg, const struct moat_rule *r)
{
	const struct moat_seclog_ctx *x = arg;
	char buf[3072], t[40];
	struct moat_line l = {buf, 0, sizeof(buf) - 1, 0};
	int dry = r->mode == MOAT_RULE_DRY_RUN;

	if (!moat_log_security_enabled())
		return;
	moat_line_raw(&l, "{\"time\":\"", 9);
	moat_line_raw(&l, t, moat_log_time(t, sizeof(t)));
	moat_line_raw(&l, "\"", 1);
	field(&l, "rule", r->id);
	field(&l, "name", r->name);
	if (r->reference != NULL)
		field(&l, "reference", r->reference);
	field(&l, "action", moat_rule_action_name(r->action));
	field(&l, "mode", moat_rule_mode_name(r->mode));
	/* dry-run hits say what would have happened, so a patch can be watched before it bites */
	field(&l, "outcome",
	      dry ? (r->action == MOAT_RULE_BLOCK   ? "would block"
	             : r->action == MOAT_RULE_CLOSE ? "would close"
	             : r->action == MOAT_RULE_ALLOW ? "would allow"
	                                            : "would log")
	          : (r->action == MOAT_RULE_BLOCK   ? "blocked"
	             : r->action == MOAT_RULE_CLOSE ? "closed"
	             : r->action == MOAT_RULE_ALLOW ? "allowed"
	                                            : "logged"));
	field(&l, "listener", x->listener);
	field(&l, "tenant", x->tenant);
	field(&l, "device", x->device);
	moat_line_printf(
	        &l, strchr(x->remote_ip, ':') ? ",\"remote\":\"[%s]:%u\"" : ",\"remote\":\"%s:%u\"",
	        x->remote_ip, x->remote_port);
	if (x->method != NULL) {
		field(&l, "method", x->method);
		field(&l, "path", x->path);
		field(&l, "request_id", x->request_id);
	} else {
		field(&l, "conn_id", x->request_id);
	}
	moat_line_raw(&l, "}", 1);
	if (l.truncated)
		return;
	buf[l.len++] = '\n';
	moat_log_security(buf, l.len);
}
