/*
 * Tests for src/rules/thread.c: several threads evaluate one ruleset at once with their own
 * scratch, while the main thread compiles new rulesets (which grows the shared Hyperscan
 * scratch prototype); every verdict stays right, and a thread can release its state.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

#define THREADS 4
#define ROUNDS 20000

static const char *const rules_text =
        "[rule a]\nname = a\nexpr = http.request.uri.path contains \"/cgi-bin/\" and "
        "any(http.request.uri.args[\"cmd\"] matches r\"[;|]\")\n"
        "[rule b]\nname = b\nexpr = lower(http.user_agent) contains \"zgrab\" or "
        "http.user_agent matches \"^sqlmap\"\n"
        "[rule c]\nname = c\nexpr = http.request.uri.path == \"/x\" or "
        "starts_with(http.request.uri.path, \"/admin\")\n";

static struct moat_ruleset *shared;
static struct moat_http_request reqs[3];
static const char *const heads[3] = {
        "GET /cgi-bin/a.cgi?cmd=1%3Bid HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost: h\r\nUser-Agent: Mozilla ZGrab\r\n\r\n",
        "GET /fine HTTP/1.1\r\nHost: h\r\nUser-Agent: device/1\r\n\r\n",
};
static const char *const want[3] = {"a", "b", NULL};
static atomic_int errors;

static void *worker(void *arg)
{
	static _Thread_local char mem[1 << 17];
	struct moat_rules_scratch sc = {mem, sizeof(mem)};
	struct moat_rules_input in;
	int i;

	(void)arg;
	memset(&in, 0, sizeof(in));
	for (i = 0; i < ROUNDS; i++) {
		struct moat_rules_verdict v;
		int k = i % 3;

		in.req = &reqs[k];
		moat_rules_eval(shared, &in, &sc, NULL, NULL, &v);
		if ((want[k] == NULL) != (v.rule == NULL) ||
		    (want[k] != NULL && strcmp(v.rule->id, want[k]) != 0))
			atomic_fetch_add(&errors, 1);
		if (i == ROUNDS / 2)
			moat_rules_thread_release(); /* and allocated again on the next evaluation */
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	pthread_t t[THREADS];
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		const char *err;

		assert_int_equal(
		        moat_http_parse_request(heads[i], strlen(heads[i]), NULL, &reqs[i], &err),
		        MOAT_OK);
	}
	assert_int_equal(moat_rules_load_buffer("t", rules_text, strlen(rules_text),
	                                        MOAT_RULES_HTTP, NULL, NULL, NULL, &shared),
	                 MOAT_OK);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker, NULL), 0);
	/* meanwhile, compile bigger rulesets: the workers must pick up a larger scratch */
	for (i = 0; i < 5; i++) {
		char text[65536];
		size_t n = 0;
		int k;
		struct moat_ruleset *rs = NULL;

		for (k = 0; k < 100; k++)
			n += (size_t)snprintf(
			        text + n, sizeof(text) - n,
			        "[rule r%d]\nname = r\nexpr = http.user_agent matches "
			        "\"a%d(b|c)+d{%d}\" or http.request.uri.path contains \"/p%d\"\n",
			        k, k * i, k % 5 + 1, k);
		assert_int_equal(moat_rules_load_buffer("big", text, n, MOAT_RULES_HTTP, NULL, NULL,
		                                        NULL, &rs),
		                 MOAT_OK);
		moat_ruleset_free(rs);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&errors), 0);
	assert_int_equal(atomic_load(&moat_ruleset_rule(shared, 0)->hits_enforce),
	                 THREADS * (ROUNDS / 3 + 1));
	moat_ruleset_free(shared);
	moat_rules_thread_release();
	moat_rules_thread_release();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_concurrent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
