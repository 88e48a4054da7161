/*
 * The security log: one JSON line per rule hit, enforced or dry-run, with what a security
 * engineer needs to judge it — which rule, what it did (or would have done), to whom.
 */
#ifndef MOAT_CORE_SECLOG_H
#define MOAT_CORE_SECLOG_H

#include "rules/rules.h"

struct moat_seclog_ctx {
	const char *listener;
	const char *tenant;
	const char *device; /* "" if none */
	const char *remote_ip;
	unsigned remote_port;
	const char *method; /* NULL on TCP listeners */
	const char *path; /* NULL on TCP listeners */
	const char *request_id; /* or the connection id on TCP listeners */
};

/* Writes the line for one hit (a moat_rules_hit_fn: arg is a struct moat_seclog_ctx). */
void moat_seclog_hit(void *arg, const struct moat_rule *r);

#endif
