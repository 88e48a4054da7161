/*
 * Helpers shared by the rule engine's unit tests: a parsed request, a default input (a
 * verified device on TLS 1.3), and one-expression rulesets that are evaluated both with and
 * without the prefilter, which must always agree.
 */
#ifndef MOAT_TEST_RULES_HELPERS_H
#define MOAT_TEST_RULES_HELPERS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "rules/internal.h"

static struct moat_http_request h_req;
static char h_raw[65536];
static _Alignas(16) char h_mem[1 << 18];
static struct sockaddr_storage h_src;
static const char *h_tags[] = {"lab", "beta", "Outdoor"};
static struct moat_device_info h_dev = {"CAM-1", "2.0.9", h_tags, 3};

/* The last error reported, for assertions on messages and positions. */
static struct {
	char msg[512];
	char source[1024];
	char rule[80];
	unsigned line, col, count;
} h_err;

static MOAT_UNUSED void h_report(void *arg, const struct moat_rules_error *e)
{
	(void)arg;
	if (h_err.count++ == 0) {
		snprintf(h_err.msg, sizeof(h_err.msg), "%s", e->msg);
		snprintf(h_err.source, sizeof(h_err.source), "%s", e->source_line);
		snprintf(h_err.rule, sizeof(h_err.rule), "%s", e->rule_id ? e->rule_id : "");
		h_err.line = e->line;
		h_err.col = e->col;
	}
}

static MOAT_UNUSED void h_err_reset(void)
{
	memset(&h_err, 0, sizeof(h_err));
}

static MOAT_UNUSED void h_set_src(const char *addr)
{
	memset(&h_src, 0, sizeof(h_src));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&h_src;

		a6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, addr, &a6->sin6_addr) != 1)
			fail_msg("bad test address %s", addr);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&h_src;

		a4->sin_family = AF_INET;
		if (inet_pton(AF_INET, addr, &a4->sin_addr) != 1)
			fail_msg("bad test address %s", addr);
	}
}

/* Parses a request head (the final empty line is added when missing). */
static MOAT_UNUSED void h_set_request(const char *head)
{
	const char *err = NULL;
	size_t n = strlen(head);

	if (n + 2 >= sizeof(h_raw))
		fail_msg("test request too long");
	memcpy(h_raw, head, n + 1);
	if (n < 4 || strcmp(h_raw + n - 4, "\r\n\r\n") != 0)
		memcpy(h_raw + n, "\r\n", 3);
	if (moat_http_parse_request(h_raw, strlen(h_raw), NULL, &h_req, &err) != MOAT_OK)
		fail_msg("test request refused: %s", err ? err : "?");
}

static MOAT_UNUSED struct moat_rules_input h_input(void)
{
	struct moat_rules_input in;

	memset(&in, 0, sizeof(in));
	if (h_src.ss_family == 0)
		h_set_src("192.0.2.10");
	in.src = &h_src;
	in.tls_version = "TLSv1.3";
	in.sni = "gw.example.com";
	in.client_verified = 1;
	in.fingerprint = "ab12cd";
	in.serial = "01F2";
	in.tenant = "acme";
	in.device_id = "dev-0001";
	in.device = &h_dev;
	in.req = &h_req;
	return in;
}

/* Compiles one expression as a one-rule ruleset; NULL (with h_err set) if it is refused. */
static MOAT_UNUSED struct moat_ruleset *h_compile(const char *expr, enum moat_rules_scope scope)
{
	char text[16384];
	struct moat_ruleset *rs = NULL;
	int n;

	n = snprintf(text, sizeof(text), "[rule t]\nname = test\nexpr = %s\n", expr);
	if (n < 0 || (size_t)n >= sizeof(text))
		fail_msg("test expression too long");
	h_err_reset();
	if (moat_rules_load_buffer("test.rules", text, (size_t)n, scope, NULL, h_report, NULL,
	                           &rs) != MOAT_OK)
		return NULL;
	return rs;
}

/* Evaluates rule i with and without the prefilter: they must agree. */
static MOAT_UNUSED int h_eval_rule(const struct moat_ruleset *rs, size_t i,
                                   const struct moat_rules_input *in)
{
	struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
	int a = moat_rules_eval_rule(rs, i, in, &sc, 0);
	int b = moat_rules_eval_rule(rs, i, in, &sc, MOAT_RULES_EVAL_NO_PREFILTER);
	struct moat_rules_verdict v1, v2;

	if (a != b)
		fail_msg("rule %zu: %d with the prefilter, %d without", i, a, b);
	/* the whole-ruleset path (candidates, guards) agrees with the rule alone */
	moat_rules_eval_flags(rs, in, &sc, NULL, NULL, &v1, 0);
	moat_rules_eval_flags(rs, in, &sc, NULL, NULL, &v2, MOAT_RULES_EVAL_NO_PREFILTER);
	if (v1.rule != v2.rule || v1.action != v2.action)
		fail_msg("ruleset verdicts differ with and without the prefilter");
	return a;
}

/* The value of one expression against an input (fails the test if it does not compile). */
static MOAT_UNUSED int h_eval_in(const char *expr, const struct moat_rules_input *in)
{
	struct moat_ruleset *rs = h_compile(expr, MOAT_RULES_HTTP);
	int r;

	if (rs == NULL)
		fail_msg("%s: refused: %u:%u %s", expr, h_err.line, h_err.col, h_err.msg);
	r = h_eval_rule(rs, 0, in);
	moat_ruleset_free(rs);
	return r;
}

static MOAT_UNUSED int h_eval(const char *expr)
{
	struct moat_rules_input in = h_input();

	return h_eval_in(expr, &in);
}

#define assert_true_expr(e)                                                                        \
	do {                                                                                       \
		if (!h_eval(e))                                                                    \
			fail_msg("expected true: %s", e);                                          \
	} while (0)

#define assert_false_expr(e)                                                                       \
	do {                                                                                       \
		if (h_eval(e))                                                                     \
			fail_msg("expected false: %s", e);                                         \
	} while (0)

/* Asserts that an expression is refused with a message containing `msg` at line 1, column
 * `col` of the expression itself (moat_rules_check_expr). */
static MOAT_UNUSED void h_refused_scope(const char *expr, enum moat_rules_scope scope, unsigned col,
                                        const char *msg)
{
	h_err_reset();
	if (moat_rules_check_expr(expr, scope, NULL, h_report, NULL) != MOAT_EINVAL)
		fail_msg("accepted: %s", expr);
	if (h_err.count == 0 || h_err.msg[0] == '\0')
		fail_msg("%s: refused without a message", expr);
	if (strstr(h_err.msg, msg) == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\"", expr, h_err.msg, msg);
	if (h_err.line != 1 || h_err.col != col)
		fail_msg("%s: error at %u:%u, want 1:%u (%s)", expr, h_err.line, h_err.col, col,
		         h_err.msg);
	if (strlen(expr) < sizeof(h_err.source) && strchr(expr, '\n') == NULL &&
	    strcmp(h_err.source, expr) != 0)
		fail_msg("%s: source line \"%s\"", expr, h_err.source);
}

static MOAT_UNUSED void h_refused(const char *expr, unsigned col, const char *msg)
{
	h_refused_scope(expr, MOAT_RULES_HTTP, col, msg);
}

static MOAT_UNUSED void h_accepted(const char *expr)
{
	h_err_reset();
	if (moat_rules_check_expr(expr, MOAT_RULES_HTTP, NULL, h_report, NULL) != MOAT_OK)
		fail_msg("%s: refused at %u:%u: %s", expr, h_err.line, h_err.col, h_err.msg);
}

#endif
