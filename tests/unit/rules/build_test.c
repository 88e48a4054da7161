/*
 * Rule sets built from records (the store's rules): moat_rules_build, its quick form without
 * the prefilter (what moatd publishes first after a change to a large set) and
 * moat_rules_check_set (what the admin API runs before saving). The quick form must decide
 * every request exactly as the complete one does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "helpers.h"

#define NRULES 300

static struct moat_rule defs[NRULES];
static char exprs[NRULES][160];

static void make_defs(void)
{
	for (int i = 0; i < NRULES; i++) {
		memset(&defs[i], 0, sizeof(defs[i]));
		snprintf(defs[i].id, sizeof(defs[i].id), "r%03d", i);
		defs[i].name = "generated";
		switch (i % 3) {
		case 0:
			snprintf(exprs[i], sizeof(exprs[i]),
			         "http.request.uri.path contains \"/cgi-bin/x%03d\"", i);
			break;
		case 1:
			snprintf(exprs[i], sizeof(exprs[i]),
			         "http.request.uri.query matches \"cmd=[a-z]*%03d\"", i);
			break;
		default:
			snprintf(exprs[i], sizeof(exprs[i]),
			         "any(lower(http.request.headers[\"x-probe\"]) == \"p%03d\")", i);
			break;
		}
		defs[i].expr = exprs[i];
		defs[i].action = MOAT_RULE_BLOCK;
		defs[i].mode = MOAT_RULE_ENFORCE;
		defs[i].status = 403;
		defs[i].enabled = 1;
	}
}

static void test_quick_build_decides_the_same(void **state)
{
	static const char *const reqs[] = {
	        "GET /cgi-bin/x042/run HTTP/1.1\r\nHost: a\r\n",
	        "GET /cgi-bin/x043 HTTP/1.1\r\nHost: a\r\n", /* 43 % 3 != 0: no such rule */
	        "GET /q?cmd=abc100 HTTP/1.1\r\nHost: a\r\n",
	        "GET /q?cmd=ABC100 HTTP/1.1\r\nHost: a\r\n",
	        "GET / HTTP/1.1\r\nHost: a\r\nX-Probe: P005\r\n",
	        "GET / HTTP/1.1\r\nHost: a\r\nX-Probe: p006\r\n",
	        "GET /nothing HTTP/1.1\r\nHost: a\r\n",
	};
	struct moat_ruleset *full = NULL, *quick = NULL;
	struct moat_rules_stats sf, sq;

	(void)state;
	make_defs();
	assert_int_equal(
	        moat_rules_build(defs, NRULES, MOAT_RULES_HTTP, NULL, h_report, NULL, &full),
	        MOAT_OK);
	assert_int_equal(moat_rules_build_flags(defs, NRULES, MOAT_RULES_HTTP, NULL,
	                                        MOAT_RULES_BUILD_NO_PREFILTER, h_report, NULL,
	                                        &quick),
	                 MOAT_OK);
	moat_ruleset_stats(full, &sf);
	moat_ruleset_stats(quick, &sq);
	assert_true(sf.prefilter_databases > 0);
	assert_int_equal(sq.prefilter_databases, 0);
	for (size_t i = 0; i < MOAT_ARRAY_LEN(reqs); i++) {
		struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
		struct moat_rules_input in;
		struct moat_rules_verdict vf, vq;

		h_set_request(reqs[i]);
		in = h_input();
		moat_rules_eval(full, &in, &sc, NULL, NULL, &vf);
		moat_rules_eval(quick, &in, &sc, NULL, NULL, &vq);
		assert_int_equal(vf.action, vq.action);
		assert_true((vf.rule == NULL) == (vq.rule == NULL));
		if (vf.rule != NULL)
			assert_string_equal(vf.rule->id, vq.rule->id);
		/* requests 0, 2 and 4 are attacks; 1, 3, 5 and 6 are not */
		assert_true((vf.rule != NULL) == (i == 0 || i == 2 || i == 4));
	}
	moat_ruleset_free(full);
	moat_ruleset_free(quick);
}

static void test_check_set_reports_each_rule(void **state)
{
	(void)state;
	make_defs();
	assert_int_equal(moat_rules_check_set(defs, NRULES, MOAT_RULES_HTTP, NULL, h_report, NULL),
	                 MOAT_OK);
	defs[7].expr = "http.request.uri.pth == \"/\"";
	defs[9].expr = "http.request.uri.path ==";
	h_err_reset();
	assert_int_equal(moat_rules_check_set(defs, NRULES, MOAT_RULES_HTTP, NULL, h_report, NULL),
	                 MOAT_EINVAL);
	assert_true(h_err.count >= 2);
	assert_string_equal(h_err.rule, "r007"); /* the first error names its rule */
	/* a TCP set may not read HTTP fields */
	make_defs();
	assert_int_equal(moat_rules_check_set(defs, 1, MOAT_RULES_TCP, NULL, h_report, NULL),
	                 MOAT_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_quick_build_decides_the_same),
	        cmocka_unit_test(test_check_set_reports_each_rule),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
