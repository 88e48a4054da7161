/*
 * Tests for src/rules/prefilter.c and the evaluator's use of it: the prefilter (Hyperscan
 * databases, guards, candidate bitmaps) must give exactly the results of plain evaluation.
 *
 * - a randomized differential test: random rulesets over a small alphabet (so that patterns
 *   do hit) against random requests, every rule and every verdict compared with and without
 *   the prefilter;
 * - the corners where Hyperscan and PCRE2 could disagree, or where a pattern cannot go into
 *   Hyperscan at all and must be evaluated directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static uint32_t pick(uint32_t n)
{
	return next() % n;
}

/* Words built from few letters, upper and lower case, and the characters attacks use. */
static void word(char *out, size_t cap, int for_regex)
{
	static const char alpha[] = "abAB/.;%2e";
	static const char safe[] = "abAB/;2e";
	size_t n = 1 + pick(4), i;

	for (i = 0; i < n && i + 1 < cap; i++)
		out[i] = for_regex ? safe[pick(sizeof(safe) - 1)] : alpha[pick(sizeof(alpha) - 1)];
	out[i] = '\0';
}

static const char *const values[] = {
        "http.request.uri.path",
        "http.request.uri.path.raw",
        "http.user_agent",
        "http.request.headers[\"x-a\"]",
        "http.request.uri.args[\"q\"]",
        "http.request.uri.args.names",
        "device.tags",
        "http.request.method",
};

static const char *const regexes[] = {
        "a+b",    "^/a",        "b$",    "(?i)ab",  "[;%]",         "a.b",     "^$",
        "(a|b)/", "\\\\.\\\\.", "a{2,}", "^[^/]*$", "(ab)\\\\1",    "\\\\bab", "b\\\\z",
        "a(?=b)", "(?<!a)b",    "x*",    "\\\\Ka",  "(?(?=a)ab|b)", "A",
};

/* One random condition on one value, written into out. */
static void condition(char *out, size_t cap, int depth)
{
	char w[16], w2[16], v[128];
	const char *val = values[pick(MOAT_ARRAY_LEN(values))];
	int list = strchr(val, '[') != NULL || strstr(val, "names") != NULL ||
	           strstr(val, "tags") != NULL;
	int fn = (int)pick(4);

	if (depth < 2 && pick(4) == 0) {
		char a[1024], b[1024];
		static const char *const ops[] = {"and", "or", "xor"};

		condition(a, sizeof(a), depth + 1);
		condition(b, sizeof(b), depth + 1);
		/* checked by hand: the format warning cannot see that cap is large enough */
		if (strlen(a) + strlen(b) + 16 > cap)
			fail_msg("condition too long");
		out[0] = '\0';
		if (pick(5) == 0)
			strcat(out, "not ");
		strcat(out, "(");
		strcat(out, a);
		strcat(out, " ");
		strcat(out, ops[pick(3)]);
		strcat(out, " ");
		strcat(out, b);
		strcat(out, ")");
		return;
	}
	word(w, sizeof(w), 0);
	word(w2, sizeof(w2), 0);
	if (fn == 1) {
		size_t i;

		snprintf(v, sizeof(v), "lower(%s)", val);
		for (i = 0; w[i]; i++)
			w[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
		for (i = 0; w2[i]; i++)
			w2[i] = (char)(w2[i] >= 'A' && w2[i] <= 'Z' ? w2[i] + 32 : w2[i]);
	} else if (fn == 2) {
		size_t i;

		snprintf(v, sizeof(v), "upper(%s)", val);
		for (i = 0; w[i]; i++)
			w[i] = (char)(w[i] >= 'a' && w[i] <= 'z' ? w[i] - 32 : w[i]);
		for (i = 0; w2[i]; i++)
			w2[i] = (char)(w2[i] >= 'a' && w2[i] <= 'z' ? w2[i] - 32 : w2[i]);
	} else if (fn == 3) {
		snprintf(v, sizeof(v), "url_decode(%s)", val);
	} else {
		snprintf(v, sizeof(v), "%s", val);
	}
	switch (pick(8)) {
	case 0:
		snprintf(out, cap, "%s contains \"%s\"", v, w);
		break;
	case 1:
		snprintf(out, cap, "%s matches \"%s\"", v,
		         fn == 0 || fn == 3 ? regexes[pick(MOAT_ARRAY_LEN(regexes))] : "a|B|/");
		break;
	case 2:
		snprintf(out, cap, "%s == \"%s\"", v, w);
		break;
	case 3:
		snprintf(out, cap, "%s in {\"%s\" \"%s\" \"\"}", v, w, w2);
		break;
	case 4:
		snprintf(out, cap, "starts_with(%s, \"%s\")", v, w);
		break;
	case 5:
		snprintf(out, cap, "ends_with(%s, \"%s\")", v, w);
		break;
	case 6:
		snprintf(out, cap, "%s != \"%s\"", v, w);
		break;
	default:
		snprintf(out, cap, "len(%s) > %u", v, pick(6));
		break;
	}
	if (list && pick(3) == 0) {
		char tmp[4096];

		if (strlen(out) + 8 > cap)
			fail_msg("condition too long");
		memcpy(tmp, out, strlen(out) + 1);
		strcpy(out, pick(2) ? "any(" : "all(");
		strcat(out, tmp);
		strcat(out, ")");
	}
}

static size_t ruleset_text(char *text, size_t cap, unsigned nrules)
{
	static const char *const actions[] = {"log", "block", "allow", "close"};
	size_t n = 0;
	unsigned i;

	for (i = 0; i < nrules && n < cap; i++) {
		char cond[2048];

		condition(cond, sizeof(cond), 0);
		n += (size_t)snprintf(text + n, cap - n,
		                      "[rule r%u]\nname = r\naction = %s\nmode = %s\nenabled = %s\n"
		                      "expr = %s\n",
		                      i, actions[pick(4) == 0 ? 1 + pick(3) : 0],
		                      pick(4) == 0 ? "dry-run" : "enforce",
		                      pick(10) == 0 ? "false" : "true", cond);
	}
	return n;
}

static void random_request(void)
{
	char head[4096], w[16], path[256] = "";
	size_t n = 0, i;
	static const char *const methods[] = {"GET", "POST", "aB", "a"};

	for (i = pick(4); i > 0; i--) {
		word(w, sizeof(w), 0);
		/* only what a request target may hold */
		strncat(path, "/", sizeof(path) - strlen(path) - 1);
		strncat(path, w, sizeof(path) - strlen(path) - 1);
	}
	n += (size_t)snprintf(head + n, sizeof(head) - n, "%s /%s?q=%s&q=", methods[pick(4)],
	                      path + (path[0] == '/'), pick(2) ? "a%3bb" : "AB");
	word(w, sizeof(w), 1);
	n += (size_t)snprintf(head + n, sizeof(head) - n, "%s&%s=1 HTTP/1.1\r\nHost: h\r\n", w,
	                      pick(2) ? "x" : "q");
	for (i = pick(3); i > 0; i--) {
		word(w, sizeof(w), 1);
		n += (size_t)snprintf(head + n, sizeof(head) - n, "X-A: %s\r\n", w);
	}
	if (pick(3) != 0) {
		word(w, sizeof(w), 1);
		n += (size_t)snprintf(head + n, sizeof(head) - n, "User-Agent: %s\r\n", w);
	}
	h_set_request(head);
}

static void test_differential(void **state)
{
	static char text[1 << 20];
	static const char *tagsets[][3] = {{"ab", "B/", "x"}, {"", "a;b", "AB"}};
	unsigned round, k;

	(void)state;
	for (round = 0; round < 100; round++) {
		struct moat_ruleset *rs = NULL;
		struct moat_rules_stats st;
		size_t n = ruleset_text(text, sizeof(text), 60);

		h_err_reset();
		if (moat_rules_load_buffer("random", text, n, MOAT_RULES_HTTP, NULL, h_report, NULL,
		                           &rs) != MOAT_OK)
			fail_msg("random ruleset refused at %u:%u: %s\n%s", h_err.line, h_err.col,
			         h_err.msg, h_err.source);
		moat_ruleset_stats(rs, &st);
		assert_true(st.prefilter_databases > 0);
		for (k = 0; k < 60; k++) {
			struct moat_rules_input in;
			size_t i;

			random_request();
			h_dev.tags = tagsets[pick(2)];
			in = h_input();
			if (pick(8) == 0)
				in.device = NULL;
			/* every rule alone, and the whole ruleset's verdict (h_eval_rule) */
			for (i = 0; i < moat_ruleset_count(rs); i++)
				h_eval_rule(rs, i, &in);
		}
		moat_ruleset_free(rs);
	}
	h_dev.tags = (const char **)(void *)0;
	h_dev.ntags = 0;
}

static void both(const char *expr, int want)
{
	if (h_eval(expr) != want)
		fail_msg("%s: want %d", expr, want);
}

static void test_corners(void **state)
{
	static const char *tags[] = {"lab", "beta", "Outdoor"};

	(void)state;
	h_dev.tags = tags;
	h_dev.ntags = 3;
	/* the value under test, with a vertical tab: http.request.uri.args["v"] = "Ab\vc" */
	h_set_request("GET /a/B%0a?v=Ab%0bc HTTP/1.1\r\nHost: h\r\n"
	              "X-A: one\r\nX-A: \r\nX-A: two\r\n");
	/* several patterns on one value so that it gets a database, plus the tested one */
#define WITH(e)                                                                                    \
	"http.request.uri.args[\"v\"] contains \"zz\" or http.request.uri.args[\"v\"] matches "    \
	"\"^qq\" or " e
	/* PCRE2's \s includes VT, and so does Hyperscan's */
	both(WITH("http.request.uri.args[\"v\"] matches \"b\\\\sc\""), 1);
	/* patterns Hyperscan refuses even as a prefilter: evaluated by PCRE2 alone */
	both(WITH("http.request.uri.args[\"v\"] matches \"\\\\KAb\""), 1);
	both(WITH("http.request.uri.args[\"v\"] matches \"(?(?=A)Ab|x)\""), 1);
	both(WITH("http.request.uri.args[\"v\"] matches \"^(A|b(?1))\""), 1);
	both(WITH("http.request.uri.args[\"v\"] matches \"(?|(A)|(b))\\\\1\""), 0);
	both(WITH("http.request.uri.args[\"v\"] matches \"A\\\\x00\""), 0);
	both(WITH("http.request.uri.args[\"v\"] contains \"\\x00\""), 0);
	/* anchors: $ before a final newline (the path ends with one) */
	both("http.request.uri.path matches \"B$\" or http.request.uri.path matches \"^/x\"", 1);
	both("http.request.uri.path matches \"B\\\\z\" or http.request.uri.path matches \"^/x\"",
	     0);
	both("ends_with(http.request.uri.path, \"B\") or starts_with(http.request.uri.path, "
	     "\"/x\")",
	     0);
	both("http.request.uri.path == \"/a/B\" or http.request.uri.path == \"/a/B\\n\"", 1);
	/* caseless literals share the raw value's database */
	both("lower(http.request.uri.args[\"v\"]) contains \"ab\\x0bc\" and "
	     "http.request.uri.args[\"v\"] contains \"A\"",
	     1);
	both("lower(http.request.uri.args[\"v\"]) == \"ab\\x0bc\" or "
	     "upper(http.request.uri.args[\"v\"]) == \"AB\\x0bC\"",
	     1);
	both("upper(http.request.uri.args[\"v\"]) in {\"AB\\x0bC\" \"X\"} and "
	     "lower(http.request.uri.args[\"v\"]) != \"ab\"",
	     1);
	both("starts_with(lower(http.request.uri.args[\"v\"]), \"ab\") and "
	     "ends_with(upper(http.request.uri.args[\"v\"]), "
	     "\"\\x0bC\")",
	     1);
	/* empty literals never go into Hyperscan */
	both("http.request.uri.args[\"v\"] contains \"\" and http.request.uri.path contains \"/\"",
	     1);
	both("http.request.headers[\"x-a\"] == \"\" and http.request.headers[\"x-a\"] == \"one\"",
	     1);
	both("http.request.headers[\"x-a\"] in {\"\" \"zz\"} or http.request.uri.args[\"v\"] == "
	     "\"q\"",
	     1);
	both("starts_with(http.request.uri.args[\"v\"], \"\") and "
	     "ends_with(http.request.uri.args[\"v\"], \"\")",
	     1);
	/* per element: both conditions on the same header line */
	both("any(http.request.headers[\"x-a\"] contains \"o\" and "
	     "http.request.headers[\"x-a\"] contains \"w\")",
	     1);
	both("any(http.request.headers[\"x-a\"] contains \"e\" and "
	     "http.request.headers[\"x-a\"] contains \"w\")",
	     0);
	both("all(http.request.headers[\"x-a\"] matches \"o|^$\")", 1);
	both("all(http.request.headers[\"x-a\"] matches \"o\")", 0);
	both("any(lower(device.tags) contains \"out\" and device.tags matches \"^O\")", 1);
	/* a guard inside a negation is not a guard */
	both("not http.request.uri.args[\"v\"] contains \"zz\" and not "
	     "http.request.uri.args[\"v\"] matches \"^qq\"",
	     1);
	both("not (http.request.uri.args[\"v\"] contains \"zz\" or http.request.uri.args[\"v\"] == "
	     "\"Ab\\x0bc\")",
	     0);
	/* one pattern shared by many rules, and the same literal as contains and == */
	both("http.request.uri.args[\"v\"] contains \"Ab\" and http.request.uri.args[\"v\"] == "
	     "\"Ab\\x0bc\" and "
	     "starts_with(http.request.uri.args[\"v\"], \"Ab\")",
	     1);
#undef WITH
	h_dev.ntags = 0;
}

static void test_databases(void **state)
{
	struct moat_ruleset *rs;
	struct moat_rules_stats st;

	(void)state;
	/* one pattern on a value: no database (memmem and PCRE2 are cheaper) */
	rs = h_compile("http.user_agent contains \"a\"", MOAT_RULES_HTTP);
	moat_ruleset_stats(rs, &st);
	assert_int_equal(st.prefilter_databases, 0);
	assert_int_equal(rs->guard[0].pat, MOAT_RULES_NONE);
	moat_ruleset_free(rs);
	/* two values with several patterns each: two databases; lower() joins its argument's */
	rs = h_compile(
	        "http.user_agent contains \"a\" or lower(http.user_agent) contains \"b\" or "
	        "http.request.uri.path == \"/x\" or starts_with(http.request.uri.path, \"/y\") "
	        "or http.request.method == \"GET\"",
	        MOAT_RULES_HTTP);
	moat_ruleset_stats(rs, &st);
	assert_int_equal(st.prefilter_databases, 2);
	moat_ruleset_free(rs);
	/* a guard comes from a conjunct */
	rs = h_compile("http.request.method == \"POST\" and http.user_agent contains \"a\" and "
	               "http.user_agent matches \"b\"",
	               MOAT_RULES_HTTP);
	assert_int_not_equal(rs->guard[0].pat, MOAT_RULES_NONE);
	assert_int_equal(rs->slots[rs->guard[0].slot].field, MOAT_F_USER_AGENT);
	moat_ruleset_free(rs);
	/* not from a disjunction or a negation */
	rs = h_compile("http.user_agent contains \"a\" or http.user_agent matches \"b\"",
	               MOAT_RULES_HTTP);
	assert_int_equal(rs->guard[0].pat, MOAT_RULES_NONE);
	moat_ruleset_free(rs);
	rs = h_compile("not (http.user_agent contains \"a\" and http.user_agent matches \"b\")",
	               MOAT_RULES_HTTP);
	assert_int_equal(rs->guard[0].pat, MOAT_RULES_NONE);
	moat_ruleset_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_differential),
	        cmocka_unit_test(test_corners),
	        cmocka_unit_test(test_databases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
