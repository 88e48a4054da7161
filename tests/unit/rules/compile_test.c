/*
 * Tests for src/rules/compile.c: values shared between rules, constants prepared once (sorted
 * and de-duplicated sets, merged address ranges, parsed versions), guards and candidate
 * tables, limits with their defaults, and clean failure when any allocation fails while
 * compiling (each allocation made to fail in turn, in a child process).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "helpers.h"

static void test_shared_values(void **state)
{
	const char *text =
	        "[rule a]\nname = a\nexpr = http.request.headers[\"X-A\"] == \"1\"\n"
	        "[rule b]\nname = b\nexpr = http.request.headers[\"x-a\"] contains \"2\"\n"
	        "[rule c]\nname = c\nexpr = lower(http.request.headers[\"x-A\"]) == \"3\"\n"
	        "[rule d]\nname = d\nexpr = http.request.uri.args[\"X\"] == \"1\" and "
	        "http.request.uri.args[\"x\"] == \"1\"\n";
	struct moat_ruleset *rs = NULL;
	uint32_t i, headers = 0, lowers = 0, args = 0;

	(void)state;
	assert_int_equal(moat_rules_load_buffer("s", text, strlen(text), MOAT_RULES_HTTP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	for (i = 0; i < rs->nslots; i++) {
		const struct moat_rules_slot *s = &rs->slots[i];

		if (s->op == MOAT_SLOT_FIELD && s->field == MOAT_F_HEADERS) {
			headers++;
			/* header keys are lowered once, at compile time */
			assert_int_equal(s->keylen, 3);
			assert_memory_equal(s->key, "x-a", 3);
			assert_int_equal(s->root, i);
		}
		if (s->op == MOAT_SLOT_LOWER) {
			lowers++;
			assert_int_equal(s->root, s->arg);
		}
		args += s->op == MOAT_SLOT_FIELD && s->field == MOAT_F_ARGS;
	}
	assert_int_equal(headers, 1); /* one value for three spellings */
	assert_int_equal(lowers, 1);
	assert_int_equal(args, 2); /* argument names are case-sensitive */
	moat_ruleset_free(rs);
}

static void test_sets(void **state)
{
	struct moat_ruleset *rs;
	const struct moat_rules_set *set;

	(void)state;
	rs = h_compile("http.request.method in {\"b\" \"a\" \"b\" \"ab\" \"\" \"a\"}",
	               MOAT_RULES_HTTP);
	assert_int_equal(rs->nsets, 1);
	set = &rs->sets[0];
	assert_int_equal(set->kind, MOAT_SET_STR);
	assert_int_equal(set->n, 4);
	assert_int_equal(set->v.str[0].len, 0);
	assert_memory_equal(set->v.str[1].p, "a", 1);
	assert_memory_equal(set->v.str[2].p, "ab", 2);
	assert_memory_equal(set->v.str[3].p, "b", 1);
	moat_ruleset_free(rs);

	rs = h_compile("len(http.host) in {5 -1 5 3 9223372036854775807}", MOAT_RULES_HTTP);
	set = &rs->sets[0];
	assert_int_equal(set->n, 4);
	assert_true(set->v.num[0] == -1 && set->v.num[1] == 3 && set->v.num[2] == 5 &&
	            set->v.num[3] == INT64_MAX);
	moat_ruleset_free(rs);

	rs = h_compile("device.firmware in {\"2.0\" \"v1.10\" \"1.9\" \"2.0.0\" \"2.0-rc.1\"}",
	               MOAT_RULES_HTTP);
	set = &rs->sets[0];
	assert_int_equal(set->kind, MOAT_SET_VER);
	assert_int_equal(set->n, 4);
	assert_true(set->v.ver[0].num[1] == 9);
	assert_true(set->v.ver[1].num[1] == 10);
	assert_int_equal(set->v.ver[2].prelen, 4);
	assert_int_equal(set->v.ver[3].prelen, 0);
	moat_ruleset_free(rs);

	/* overlapping, nested and adjacent ranges merge into disjoint ones */
	rs = h_compile("ip.src in {10.0.0.0/9 10.128.0.0/9 10.1.0.0/16 192.0.2.1 192.0.2.2 "
	               "192.0.2.0/31 ::/128 ::1}",
	               MOAT_RULES_HTTP);
	set = &rs->sets[0];
	assert_int_equal(set->kind, MOAT_SET_IP);
	assert_int_equal(set->n, 3); /* ::-::1, 10/8, 192.0.2.0-2 */
	assert_int_equal(set->v.ip[0].hi[15], 1);
	assert_int_equal(set->v.ip[1].lo[12], 10);
	assert_int_equal(set->v.ip[1].hi[12], 10);
	assert_int_equal(set->v.ip[1].hi[13], 255);
	assert_int_equal(set->v.ip[2].hi[15], 2);
	moat_ruleset_free(rs);

	/* the whole address space */
	rs = h_compile("ip.src in {::/1 8000::/1 10.0.0.0/8}", MOAT_RULES_HTTP);
	assert_int_equal(rs->sets[0].n, 1);
	moat_ruleset_free(rs);
}

static void test_candidates(void **state)
{
	const char *text = "[rule a]\nname = a\nexpr = http.host == \"a\" and ip.src == ::1\n"
	                   "[rule b]\nname = b\nexpr = ip.src == ::1\n"
	                   "[rule c]\nname = c\nenabled = false\nexpr = http.host == \"c\"\n"
	                   "[rule d]\nname = d\nexpr = starts_with(http.host, \"d\")\n";
	struct moat_ruleset *rs = NULL;

	(void)state;
	assert_int_equal(moat_rules_load_buffer("c", text, strlen(text), MOAT_RULES_HTTP, NULL,
	                                        NULL, NULL, &rs),
	                 MOAT_OK);
	assert_int_equal(rs->rule_words, 1);
	/* b has no guard: always evaluated; c is disabled: never */
	assert_int_equal(rs->always[0], 1u << 1);
	assert_int_equal(rs->enabled[0], (1u << 0) | (1u << 1) | (1u << 3));
	assert_int_equal(rs->ngslots, 1);
	assert_int_equal(rs->slots[rs->gslots[0].slot].field, MOAT_F_HOST);
	assert_int_not_equal(rs->guard[0].pat, MOAT_RULES_NONE);
	assert_int_equal(rs->guard[1].pat, MOAT_RULES_NONE);
	assert_int_not_equal(rs->guard[3].pat, MOAT_RULES_NONE);
	moat_ruleset_free(rs);
}

static void test_limits_defaults(void **state)
{
	struct moat_rules_limits l, in;

	(void)state;
	moat_rules_limits_fill(&l, NULL);
	assert_int_equal(l.max_rules, 10000);
	assert_int_equal(l.max_expr_len, 8192);
	assert_int_equal(l.max_depth, 64);
	assert_int_equal(l.max_regex_len, 4096);
	assert_int_equal(l.regex_match_limit, 100000);
	assert_int_equal(l.body_limit, 8192);
	memset(&in, 0, sizeof(in));
	in.max_depth = 100000;
	in.max_rules = 7;
	moat_rules_limits_fill(&l, &in);
	assert_int_equal(l.max_depth, 256); /* the stack bound */
	assert_int_equal(l.max_rules, 7);
	assert_int_equal(l.max_expr_len, 8192);
}

/*
 * Makes allocation number k fail, for k = 1, 2, ... until a compilation and an evaluation
 * succeed with no failure left to inject. Each attempt runs in a child process because the
 * failure switch cannot be reset; a child that crashes (or trips the sanitizers) fails.
 */
static void test_allocation_failures(void **state)
{
	const char *text = "[rule a]\nname = a\nreference = R\ndescription = D\n"
	                   "expr = http.request.uri.path contains \"/x\" and "
	                   "any(lower(http.request.headers[\"x-a\"]) in {\"a\" \"b\"}) and "
	                   "ip.src in {10.0.0.0/8} and device.firmware < \"2.0\"\n"
	                   "[rule b]\nname = b\nexpr = http.user_agent matches \"^a+b\" or "
	                   "http.user_agent contains \"zz\" or http.request.uri.path == \"/y\"\n";
	int k, done = 0;

	(void)state;
	for (k = 1; k < 2000 && !done; k++) {
		pid_t pid = fork();
		int status;

		assert_true(pid >= 0);
		if (pid == 0) {
			char num[16];
			struct moat_ruleset *rs = NULL;
			struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
			struct moat_rules_verdict v;
			struct moat_rules_input in;
			int r;

			h_set_request("GET /x HTTP/1.1\r\nHost: h\r\nX-A: A\r\n");
			in = h_input();
			snprintf(num, sizeof(num), "%d", k);
			setenv("MOAT_ALLOC_FAIL_AT", num, 1);
			moat_alloc_init();
			r = moat_rules_load_buffer("f", text, strlen(text), MOAT_RULES_HTTP, NULL,
			                           NULL, NULL, &rs);
			if (r != MOAT_OK) {
				if (r != MOAT_EINVAL || rs != NULL)
					_exit(3);
				_exit(1); /* refused cleanly: try the next allocation */
			}
			moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
			moat_ruleset_free(rs);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 1))
			fail_msg("allocation %d: child died (status 0x%x)", k, status);
		done = WEXITSTATUS(status) == 0;
	}
	assert_true(done);
	assert_true(k > 20); /* the compilation did allocate, and failed cleanly each time */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_shared_values),       cmocka_unit_test(test_sets),
	        cmocka_unit_test(test_candidates),          cmocka_unit_test(test_limits_defaults),
	        cmocka_unit_test(test_allocation_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
