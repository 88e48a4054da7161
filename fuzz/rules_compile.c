/*
 * Fuzz driver for the rules file parser and compiler: moat_rules_load_buffer
 * (src/rules/file.c, lex.c, parse.c, check.c, compile.c, prefilter.c) and
 * moat_rules_check_expr.
 *
 * The input is the text of a rules file. It is compiled for HTTP and TCP listeners, with the
 * default limits and with small ones, and the driver aborts when an invariant does not hold:
 * - the result is OK, or EINVAL with at least one error reported and no ruleset;
 * - every error has a message, a line and a column inside the text, and its source line;
 * - an accepted ruleset has at most max_rules rules with well-formed ids and actions, and
 *   evaluating it against a fixed request gives the same verdict and the same result for
 *   every rule with and without the prefilter.
 * The input is also checked as a single expression.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const char *text;
static size_t text_len;
static unsigned nerrors, nlines;

static void report(void *arg, const struct moat_rules_error *e)
{
	(void)arg;
	nerrors++;
	CHECK(e->msg != NULL && e->msg[0] != '\0');
	CHECK(e->file != NULL);
	CHECK(e->line >= 1 && e->line <= nlines);
	CHECK(e->col >= 1);
	CHECK(e->source_line != NULL);
	CHECK(e->col <= strlen(e->source_line) + 1 || e->line == nlines);
	CHECK(strchr(e->source_line, '\n') == NULL);
}

static struct moat_http_request req;
static char mem[1 << 17];
static struct sockaddr_storage src;

static void evaluate(const struct moat_ruleset *rs)
{
	static const char head[] = "GET /cgi-bin/../a%2fb.cgi?cmd=1%3Bid&x=%252e HTTP/1.1\r\n"
	                           "Host: cam\r\nUser-Agent: ZGrab/1\r\nX-A: a\r\nX-A: B\r\n\r\n";
	static const char *const tags[] = {"lab", "Beta"};
	static const struct moat_device_info dev = {"CAM-1", "2.0.9-rc.1", tags, 2};
	struct moat_rules_scratch sc = {mem, sizeof(mem)};
	struct moat_rules_input in;
	struct moat_rules_verdict v1, v2;
	const char *err;
	size_t i;

	if (req.nheaders == 0) {
		CHECK(moat_http_parse_request(head, sizeof(head) - 1, NULL, &req, &err) == MOAT_OK);
		src.ss_family = AF_INET;
	}
	memset(&in, 0, sizeof(in));
	in.src = &src;
	in.tls_version = "TLSv1.3";
	in.sni = "cam";
	in.client_verified = 1;
	in.fingerprint = "ab";
	in.serial = "01";
	in.tenant = "t";
	in.device_id = "d";
	in.device = &dev;
	in.req = &req;
	in.body = "body";
	in.body_len = 4;
	in.body_size = 4;
	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v1, 0);
	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v2, MOAT_RULES_EVAL_NO_PREFILTER);
	CHECK(v1.rule == v2.rule && v1.action == v2.action);
	for (i = 0; i < moat_ruleset_count(rs) && i < 64; i++)
		CHECK(moat_rules_eval_rule(rs, i, &in, &sc, 0) ==
		      moat_rules_eval_rule(rs, i, &in, &sc, MOAT_RULES_EVAL_NO_PREFILTER));
}

static void check_ruleset(const struct moat_ruleset *rs, const struct moat_rules_limits *lim)
{
	size_t i, k;

	CHECK(moat_ruleset_count(rs) <= (lim ? lim->max_rules : 10000));
	for (i = 0; i < moat_ruleset_count(rs); i++) {
		const struct moat_rule *r = moat_ruleset_rule(rs, i);

		CHECK(r->id[0] != '\0' && strlen(r->id) <= 64);
		for (k = 0; r->id[k]; k++)
			CHECK(strchr("_.:-", r->id[k]) != NULL ||
			      (r->id[k] >= '0' && r->id[k] <= '9') ||
			      (r->id[k] >= 'a' && r->id[k] <= 'z') ||
			      (r->id[k] >= 'A' && r->id[k] <= 'Z'));
		CHECK(r->name != NULL && r->name[0] != '\0');
		CHECK(r->expr != NULL);
		CHECK(r->action <= MOAT_RULE_CLOSE && r->mode <= MOAT_RULE_DRY_RUN);
		CHECK(r->status >= 100 && r->status <= 599);
		CHECK(r->line >= 1 && r->line <= nlines);
	}
	evaluate(rs);
}

static void compile(enum moat_rules_scope scope, const struct moat_rules_limits *lim)
{
	struct moat_ruleset *rs = NULL;
	int r;

	nerrors = 0;
	r = moat_rules_load_buffer("fuzz.rules", text, text_len, scope, lim, report, NULL, &rs);
	if (r == MOAT_OK) {
		CHECK(rs != NULL && nerrors == 0);
		check_ruleset(rs, lim);
		moat_ruleset_free(rs);
	} else {
		CHECK(r == MOAT_EINVAL && rs == NULL && nerrors > 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct moat_rules_limits small = {3, 64, 4, 16, 1000, 16};
	char *expr;
	size_t i;
	int r;

	if (size > 65536)
		return 0;
	text = (const char *)data;
	text_len = size;
	nlines = 1;
	for (i = 0; i < size; i++)
		nlines += data[i] == '\n';
	compile(MOAT_RULES_HTTP, NULL);
	compile(MOAT_RULES_TCP, NULL);
	compile(MOAT_RULES_HTTP, &small);

	/* the whole input as one expression (a C string: up to the first NUL) */
	expr = malloc(size + 1);
	if (expr == NULL)
		return 0;
	memcpy(expr, data, size);
	expr[size] = '\0';
	text = expr;
	text_len = strlen(expr);
	nlines = 1;
	for (i = 0; i < text_len; i++)
		nlines += expr[i] == '\n';
	nerrors = 0;
	r = moat_rules_check_expr(expr, MOAT_RULES_HTTP, NULL, report, NULL);
	CHECK(r == MOAT_OK ? nerrors == 0 : (r == MOAT_EINVAL && nerrors > 0));
	free(expr);
	return 0;
}
