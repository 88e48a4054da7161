/*
 * Tests for src/rules/path.c: moat_rules_normalize_path (percent-decoding once, dot segments,
 * repeated slashes, invalid escapes, NUL, capacity) and moat_rules_url_decode, and the two
 * path fields that use them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

static void norm_n(const char *in, size_t len, const char *want, size_t wantlen)
{
	char out[512];
	long n;

	memset(out, 'Z', sizeof(out));
	n = moat_rules_normalize_path(in, len, out, len);
	if (n < 0)
		fail_msg("%s: refused (%ld)", in, n);
	if ((size_t)n != wantlen || memcmp(out, want, wantlen) != 0)
		fail_msg("%s: got \"%.*s\", want \"%s\"", in, (int)n, out, want);
	/* never longer than the input, and idempotent on its own output when nothing remains
	 * to decode */
	assert_true((size_t)n <= len);
}

static void norm(const char *in, const char *want)
{
	norm_n(in, strlen(in), want, strlen(want));
}

static void test_dot_segments(void **state)
{
	(void)state;
	norm("/", "/");
	norm("", "");
	norm("/a/b/c", "/a/b/c");
	norm("/a/b/", "/a/b/");
	norm("/a/./b", "/a/b");
	norm("/a/../b", "/b");
	norm("/a/b/../../c", "/c");
	norm("/a/b/..", "/a/");
	norm("/a/b/.", "/a/b/");
	norm("/a/b/../", "/a/");
	norm("/..", "/");
	norm("/../../etc/passwd", "/etc/passwd");
	norm("/a/../../../b", "/b");
	norm("/.", "/");
	norm("/./", "/");
	norm("/...", "/...");
	norm("/a/.../b", "/a/.../b");
	norm("/a/..b/c", "/a/..b/c");
	norm("/a/b./c", "/a/b./c");
	norm("/.hidden/x", "/.hidden/x");
	/* RFC 3986 section 5.4 examples, as paths */
	norm("/b/c/./../../g", "/g");
	norm("/b/c/g/./h/../i", "/b/c/g/i");
	/* relative forms keep no leading slash */
	norm("a/../b", "b");
	norm("a/./b/..", "a/");
	norm("../a", "a");
	norm("*", "*");
}

static void test_slashes(void **state)
{
	(void)state;
	norm("//", "/");
	norm("///a///b//", "/a/b/");
	norm("/a//../b", "/b");
	norm("//etc//passwd", "/etc/passwd");
	norm("/a/.//./b", "/a/b");
}

static void test_decoding(void **state)
{
	(void)state;
	norm("/a%20b", "/a b");
	norm("/%41%62", "/Ab");
	norm("/%2e%2e/etc", "/etc");
	norm("/cgi-bin/..%2f..%2fetc/passwd", "/etc/passwd");
	norm("/cgi-bin/%2e%2e%2f%2e%2e%2fetc/passwd", "/etc/passwd");
	norm("/a/%2E%2E/b", "/b");
	norm("/a%2fb", "/a/b");
	norm("/a%2F%2Fb", "/a/b");
	/* decoded once only: the double-encoded form stays text */
	norm("/a/%252e%252e%252fetc", "/a/%2e%2e%2fetc");
	norm("/%25", "/%");
	/* invalid escapes are kept as written */
	norm("/%zz/a", "/%zz/a");
	norm("/a%", "/a%");
	norm("/a%4", "/a%4");
	norm("/a%4g", "/a%4g");
	norm("/%%41", "/%A");
	/* a plus is not a space in a path */
	norm("/a+b", "/a+b");
	/* a decoded NUL stays a NUL byte */
	norm_n("/a%00.php", 9, "/a\0.php", 7);
	/* bytes above 0x7f pass through */
	norm("/caf%C3%A9", "/caf\xc3\xa9");
}

static void test_capacity(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(moat_rules_normalize_path("/abcdef", 7, out, 6), MOAT_ETOOBIG);
	assert_int_equal(moat_rules_normalize_path("/abcdef", 7, out, 7), 7);
	/* only the decoded length has to fit */
	assert_int_equal(moat_rules_normalize_path("/%41%42%43", 10, out, 4), 4);
	assert_memory_equal(out, "/ABC", 4);
	assert_int_equal(moat_rules_normalize_path("/%41%42%43", 10, out, 3), MOAT_ETOOBIG);
	assert_int_equal(moat_rules_normalize_path("", 0, out, 0), 0);
}

static void test_url_decode(void **state)
{
	char out[64];
	size_t n;

	(void)state;
	n = moat_rules_url_decode("a+b%20c%2B", 10, out, 1);
	assert_int_equal(n, 6);
	assert_memory_equal(out, "a b c+", 6);
	n = moat_rules_url_decode("a+b", 3, out, 0);
	assert_memory_equal(out, "a+b", n);
	n = moat_rules_url_decode("%", 1, out, 1);
	assert_memory_equal(out, "%", n);
	n = moat_rules_url_decode("%g1%1", 5, out, 1);
	assert_memory_equal(out, "%g1%1", n);
	n = moat_rules_url_decode("%00%ff", 6, out, 1);
	assert_int_equal(n, 2);
	assert_int_equal(out[0], 0);
	assert_int_equal((unsigned char)out[1], 0xff);
}

static void test_fields(void **state)
{
	(void)state;
	h_set_request("GET /cgi-bin//..%2f..%2fetc/./passwd?x=1 HTTP/1.1\r\nHost: a\r\n");
	assert_true_expr("http.request.uri.path == \"/etc/passwd\"");
	assert_true_expr("http.request.uri.path.raw == \"/cgi-bin//..%2f..%2fetc/./passwd\"");
	assert_true_expr("http.request.uri.path.raw contains \"..%2f\"");
	assert_true_expr("url_decode(http.request.uri.path.raw) contains \"../\"");
	h_set_request("GET /static/..%252f..%252fetc/passwd HTTP/1.1\r\nHost: a\r\n");
	assert_true_expr("http.request.uri.path == \"/static/..%2f..%2fetc/passwd\"");
	assert_true_expr("url_decode(http.request.uri.path) contains \"../\"");
	assert_true_expr(
	        "url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"../\"");
	h_set_request("GET /STATIC/%2E%2E%5C HTTP/1.1\r\nHost: a\r\n");
	assert_true_expr("lower(http.request.uri.path) == \"/static/..\\\\\"");
	/* absolute-form: the path part only */
	h_set_request("GET http://cam.example.com/a/../b?c HTTP/1.1\r\nHost: cam.example.com\r\n");
	assert_true_expr("http.request.uri.path == \"/b\"");
	assert_true_expr("http.request.uri.query == \"c\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_dot_segments), cmocka_unit_test(test_slashes),
	        cmocka_unit_test(test_decoding),     cmocka_unit_test(test_capacity),
	        cmocka_unit_test(test_url_decode),   cmocka_unit_test(test_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
