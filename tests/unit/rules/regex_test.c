/*
 * Tests for src/rules/regex.c: a pattern that backtracks catastrophically returns quickly,
 * counts as no match and is counted; the match limit is configurable; JIT and interpreter
 * give the same answers; ordinary patterns are unaffected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "helpers.h"

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static char attack[4096];

static void set_attack_ua(size_t n)
{
	char head[4200];

	memset(attack, 'a', n);
	attack[n] = 'b';
	attack[n + 1] = '\0';
	snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n", attack);
	h_set_request(head);
}

/* Runs rule 0 of rs against the attack, with and without the prefilter, timing both. */
static void quick_no_match(const char *expr, int expect_limit)
{
	struct moat_ruleset *rs = h_compile(expr, MOAT_RULES_HTTP);
	struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
	struct moat_rules_input in = h_input();
	struct moat_rules_stats st;
	double t0, t1, t2;

	if (rs == NULL)
		fail_msg("%s refused: %s", expr, h_err.msg);
	t0 = now_ms();
	assert_int_equal(moat_rules_eval_rule(rs, 0, &in, &sc, MOAT_RULES_EVAL_NO_PREFILTER), 0);
	t1 = now_ms();
	assert_int_equal(moat_rules_eval_rule(rs, 0, &in, &sc, 0), 0);
	t2 = now_ms();
	/* a real catastrophe takes minutes; the limit stops it in about a millisecond */
	if (t1 - t0 > 200 || t2 - t1 > 200)
		fail_msg("%s took %.1f ms / %.1f ms", expr, t1 - t0, t2 - t1);
	moat_ruleset_stats(rs, &st);
	/* at least the direct evaluation hit the limit */
	if (expect_limit && st.regex_limit_hits < 1)
		fail_msg("%s: no limit hit counted", expr);
	moat_ruleset_free(rs);
}

static void test_catastrophic(void **state)
{
	(void)state;
	set_attack_ua(40);
	quick_no_match("http.user_agent matches \"(a+)+$\"", 1);
	quick_no_match("http.user_agent matches \"^(a|aa)+$\"", 1);
	/* PCRE2 sees that a 'c' is required and fails at once: no limit needed */
	quick_no_match("http.user_agent matches \"(a*)*c\"", 0);
	/* a backreference: Hyperscan's prefilter over-approximates it and reports a hit, so
	 * PCRE2 runs with the prefilter on too */
	quick_no_match("http.user_agent matches \"^(a+)+\\\\1$\"", 1);
	set_attack_ua(4000);
	quick_no_match("http.user_agent matches \"(a+)+$\"", 1);
	quick_no_match("http.user_agent matches \"^(a|aa)+$\"", 1);
	quick_no_match("http.user_agent matches \"^(\\\\w+\\\\s?)+$\" and false", 0);
	/* the same pattern in many rules on one value: each match is bounded */
	quick_no_match("http.user_agent matches \"(a+)+$\" or http.user_agent matches \"(a+)+b$\" "
	               "and http.user_agent matches \"x(a+)+$\"",
	               1);
}

static void test_limit_configurable(void **state)
{
	const char *text = "[rule r]\nname = r\nexpr = http.user_agent matches \"a.*b.*c.*d\"\n";
	struct moat_rules_limits lim;
	struct moat_ruleset *rs = NULL;
	struct moat_rules_input in;
	struct moat_rules_stats st;

	(void)state;
	h_set_request("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a-b-c-d\r\n");
	in = h_input();
	memset(&lim, 0, sizeof(lim));
	lim.regex_match_limit = 1;
	assert_int_equal(moat_rules_load_buffer("l", text, strlen(text), MOAT_RULES_HTTP, &lim,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	/* a limit of 1 stops even this match: counted as no match */
	assert_false(h_eval_rule(rs, 0, &in));
	moat_ruleset_stats(rs, &st);
	assert_true(st.regex_limit_hits >= 1);
	moat_ruleset_free(rs);
	/* the default limit lets it through */
	assert_true_expr("http.user_agent matches \"a.*b.*c.*d\"");
}

static void test_ordinary(void **state)
{
	(void)state;
	h_set_request("GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7.88.1\r\n");
	assert_true_expr("http.user_agent matches \"^curl/(\\\\d+)\\\\.(\\\\d+)\"");
	assert_true_expr("http.user_agent matches r\"^curl/\\d+\\.\\d+\\.\\d+$\"");
	assert_false_expr("http.user_agent matches r\"^curl/\\d+$\"");
	assert_true_expr("http.user_agent matches \"\"");
	assert_true_expr("http.user_agent matches \"(?i)CURL\"");
	/* bytes, not UTF-8: . matches one byte */
	h_set_request("GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\xc3\xa9\r\n");
	assert_true_expr("http.user_agent matches \"^caf..$\"");
	assert_true_expr("http.user_agent matches \"\\\\xc3\\\\xa9\"");
	/* PCRE2 semantics: $ also before a final newline; \\z only at the very end */
	h_set_request("GET /a%0A HTTP/1.1\r\nHost: x\r\n");
	assert_true_expr("http.request.uri.path matches \"a$\"");
	assert_false_expr("http.request.uri.path matches \"a\\\\z\"");
	assert_true_expr("http.request.uri.path matches \"a\\\\n\\\\z\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_catastrophic),
	        cmocka_unit_test(test_limit_configurable),
	        cmocka_unit_test(test_ordinary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
