/*
 * Unit tests for src/http/parse.c (and moat_slice_eq_ci from src/core/slice.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "http/parse.h"

#define LINE_MAX_TEST 64
#define HEAD_MAX_TEST 256
#define HEADERS_MAX_TEST 8

static const struct moat_http_limits lim = {LINE_MAX_TEST, HEAD_MAX_TEST, HEADERS_MAX_TEST};
static const struct moat_http_limits big = {8192, 65536, MOAT_HTTP_MAX_HEADERS};

/* Large structs live here rather than on the test's stack. */
static struct moat_http_request req;
static struct moat_http_response res;
static const char *err;
static char buf[70000];

static int parse_n(const char *s, size_t n, const struct moat_http_limits *l)
{
	return moat_http_parse_request(s, n, l, &req, &err);
}

static int parse(const char *s)
{
	return parse_n(s, strlen(s), &lim);
}

static int parse_res(const char *s, int is_head)
{
	return moat_http_parse_response(s, strlen(s), &lim, is_head, &res, &err);
}

static void assert_slice(struct moat_slice s, const char *want)
{
	if (s.len != strlen(want) || memcmp(s.p, want, s.len) != 0)
		fail_msg("slice \"%.*s\" != \"%s\"", (int)s.len, s.p, want);
}

/* Asserts the refusal and its status; the reason must always be given. */
static void refused(const char *s, int status)
{
	int r = parse(s);

	if (r != MOAT_EINVAL || req.error_status != status)
		fail_msg("%s: got %d status %d (%s), want status %d", s, r, req.error_status,
		         err ? err : "-", status);
	assert_non_null(err);
}

static void refused_res(const char *s, int is_head)
{
	if (parse_res(s, is_head) != MOAT_EINVAL)
		fail_msg("response accepted: %s", s);
	assert_non_null(err);
}

/* Every proper prefix needs more bytes; the whole head parses and ends where it should. */
static void accepted_bytewise(const char *s, size_t head_len)
{
	size_t n = strlen(s), k;

	for (k = 0; k < head_len; k++) {
		int r = parse_n(s, k, &lim);

		if (r != MOAT_EAGAIN)
			fail_msg("prefix %zu of %s: got %d (%s)", k, s, r, err ? err : "-");
	}
	assert_int_equal(parse_n(s, n, &lim), MOAT_OK);
	assert_int_equal(req.head_len, head_len);
}

/* ---- positive requests ---- */

static void test_get(void **state)
{
	const char *s = "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

	(void)state;
	assert_int_equal(parse(s), MOAT_OK);
	assert_slice(req.method, "GET");
	assert_slice(req.target, "/a/b?x=1&y");
	assert_slice(req.path, "/a/b");
	assert_slice(req.query, "x=1&y");
	assert_slice(req.host, "example.com");
	assert_int_equal(req.minor, 1);
	assert_int_equal(req.nheaders, 2);
	assert_slice(req.headers[1].name, "Accept");
	assert_slice(req.headers[1].value, "*/*");
	assert_int_equal(req.head_len, strlen(s));
	assert_int_equal(req.framing, MOAT_BODY_NONE);
	assert_true(req.keep_alive);
	assert_false(req.is_head);
	assert_false(req.is_connect);
	assert_false(req.expect_continue);
	assert_null(err);
}

static void test_get_no_query(void **state)
{
	(void)state;
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_slice(req.path, "/");
	assert_int_equal(req.query.len, 0);
	assert_int_equal(parse("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_slice(req.path, "/p");
	assert_int_equal(req.query.len, 0);
}

static void test_post_length(void **state)
{
	const char *s = "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\nbody...";

	(void)state;
	assert_int_equal(parse(s), MOAT_OK);
	assert_int_equal(req.framing, MOAT_BODY_LENGTH);
	assert_int_equal(req.content_length, 42);
	assert_int_equal(req.head_len, strlen(s) - strlen("body..."));
	assert_int_equal(req.headers[1].flags, MOAT_HDR_CONTENT_LENGTH);
}

static void test_post_length_zero(void **state)
{
	(void)state;
	/* CL: 0 is framed as a zero-length body, not as "no body" */
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), MOAT_OK);
	assert_int_equal(req.framing, MOAT_BODY_LENGTH);
	assert_int_equal(req.content_length, 0);
}

static void test_post_length_max(void **state)
{
	(void)state;
	assert_int_equal(
	        parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n"),
	        MOAT_OK);
	assert_true(req.content_length == UINT64_MAX);
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n"),
	                 MOAT_OK);
	assert_int_equal(req.content_length, 7);
}

static void test_post_length_duplicate_identical(void **state)
{
	(void)state;
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
	                       "Content-Length: 5\r\n\r\n"),
	                 MOAT_OK);
	assert_int_equal(req.framing, MOAT_BODY_LENGTH);
	assert_int_equal(req.content_length, 5);
}

static void test_post_chunked(void **state)
{
	(void)state;
	assert_int_equal(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
	                 MOAT_OK);
	assert_int_equal(req.framing, MOAT_BODY_CHUNKED);
	assert_int_equal(req.headers[1].flags, MOAT_HDR_HOP);
	assert_int_equal(
	        parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n"),
	        MOAT_OK);
	assert_int_equal(req.framing, MOAT_BODY_CHUNKED);
}

static void test_head(void **state)
{
	(void)state;
	assert_int_equal(parse("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_true(req.is_head);
	assert_false(req.is_connect);
	/* methods are case-sensitive: "head" is some other method */
	assert_int_equal(parse("head /x HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_false(req.is_head);
}

static void test_connect(void **state)
{
	(void)state;
	assert_int_equal(parse("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n"),
	                 MOAT_OK);
	assert_true(req.is_connect);
	assert_slice(req.target, "h.example:443");
	assert_int_equal(req.path.len, 0);
	assert_slice(req.host, "h.example:443");
	assert_int_equal(parse("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), MOAT_OK);
	assert_true(req.is_connect);
}

static void test_options_asterisk(void **state)
{
	(void)state;
	assert_int_equal(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_slice(req.target, "*");
	assert_slice(req.path, "*");
}

static void test_any_token_method(void **state)
{
	(void)state;
	assert_int_equal(parse("M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_EINVAL);
	assert_int_equal(parse("M-SEARCH /x HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_slice(req.method, "M-SEARCH");
	assert_int_equal(parse("PROPFIND /x HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_int_equal(parse("!#$%&'*+-.^_`|~09az /x HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
}

static void test_absolute_form(void **state)
{
	(void)state;
	assert_int_equal(parse("GET http://Example.com:8080/p/q?a=b HTTP/1.1\r\n"
	                       "Host: example.com:8080\r\n\r\n"),
	                 MOAT_OK);
	assert_slice(req.path, "/p/q");
	assert_slice(req.query, "a=b");
	assert_slice(req.host, "Example.com:8080");

	assert_int_equal(parse("GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_int_equal(req.path.len, 0);
	assert_int_equal(req.query.len, 0);
	assert_slice(req.host, "h");

	assert_int_equal(parse("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_int_equal(req.path.len, 0);
	assert_slice(req.query, "q");

	/* HTTP/1.0 may omit Host: the authority is the host */
	assert_int_equal(parse("GET http://h/ HTTP/1.0\r\n\r\n"), MOAT_OK);
	assert_slice(req.host, "h");
}

static void test_http10(void **state)
{
	(void)state;
	assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n"), MOAT_OK);
	assert_int_equal(req.minor, 0);
	assert_false(req.keep_alive);
	assert_int_equal(req.host.len, 0);
	assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), MOAT_OK);
	assert_true(req.keep_alive);
	assert_int_equal(
	        parse("GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n"),
	        MOAT_OK);
	assert_false(req.keep_alive);
	assert_slice(req.host, "h");
}

static void test_keep_alive(void **state)
{
	(void)state;
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), MOAT_OK);
	assert_false(req.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n"), MOAT_OK);
	assert_false(req.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: ,,keep-alive ,\r\n\r\n"),
	                 MOAT_OK);
	assert_true(req.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n"
	                       "Connection: close\r\n\r\n"),
	                 MOAT_OK);
	assert_false(req.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection:\r\n\r\n"), MOAT_OK);
	assert_true(req.keep_alive);
}

static void test_flags(void **state)
{
	static const struct {
		const char *name;
		unsigned flags;
	} want[] = {
	        {"Host", MOAT_HDR_HOST},
	        {"Connection", MOAT_HDR_HOP},
	        {"Keep-Alive", MOAT_HDR_HOP},
	        {"Proxy-Connection", MOAT_HDR_HOP},
	        {"TE", MOAT_HDR_HOP},
	        {"Trailer", MOAT_HDR_HOP},
	        {"Upgrade", MOAT_HDR_HOP},
	        {"Proxy-Authorization", MOAT_HDR_HOP},
	        {"Proxy-Authenticate", MOAT_HDR_HOP},
	        {"X-Custom", MOAT_HDR_HOP},
	        {"x-other", MOAT_HDR_HOP},
	        {"X-Forwarded-For", MOAT_HDR_SPOOF | MOAT_HDR_HOP},
	        {"Forwarded", MOAT_HDR_SPOOF},
	        {"X-Forwarded-Proto", MOAT_HDR_SPOOF},
	        {"X-Real-IP", MOAT_HDR_SPOOF},
	        {"Moat-Device-Id", MOAT_HDR_SPOOF},
	        {"X-Client-Cert", MOAT_HDR_SPOOF},
	        {"X-Client-Cert-Chain", MOAT_HDR_SPOOF},
	        {"Moat_Device", MOAT_HDR_SPOOF},
	        {"X_Forwarded_For", MOAT_HDR_SPOOF},
	        {"x_real_ip", MOAT_HDR_SPOOF},
	        {"Content-Length", MOAT_HDR_CONTENT_LENGTH},
	        {"Accept", 0},
	        {"X-Forwarded", 0},
	        {"Moat", 0},
	        {"X-Customer", 0},
	};
	const char *s = "POST / HTTP/1.1\r\n"
	                "Host: h\r\n"
	                "Connection: x-custom, X-OTHER ,x-forwarded-for\r\n"
	                "Keep-Alive: timeout=5\r\n"
	                "Proxy-Connection: x\r\n"
	                "TE: trailers\r\n"
	                "Trailer: x\r\n"
	                "Upgrade: websocket\r\n"
	                "Proxy-Authorization: x\r\n"
	                "Proxy-Authenticate: x\r\n"
	                "X-Custom: 1\r\n"
	                "x-other: 1\r\n"
	                "X-Forwarded-For: 1.2.3.4\r\n"
	                "Forwarded: for=1.2.3.4\r\n"
	                "X-Forwarded-Proto: https\r\n"
	                "X-Real-IP: 1.2.3.4\r\n"
	                "Moat-Device-Id: dev\r\n"
	                "X-Client-Cert: x\r\n"
	                "X-Client-Cert-Chain: x\r\n"
	                "Moat_Device: victim\r\n"
	                "X_Forwarded_For: 1.2.3.4\r\n"
	                "x_real_ip: 1.2.3.4\r\n"
	                "Content-Length: 3\r\n"
	                "Accept: */*\r\n"
	                "X-Forwarded: x\r\n"
	                "Moat: x\r\n"
	                "X-Customer: x\r\n"
	                "\r\n";
	size_t i, j;

	(void)state;
	assert_int_equal(parse_n(s, strlen(s), &big), MOAT_OK);
	assert_int_equal(req.nheaders, MOAT_ARRAY_LEN(want));
	for (i = 0, j = 0; i < req.nheaders; i++) {
		const struct moat_http_header *h = &req.headers[i];

		if (moat_slice_eq_ci(h->name, "connection"))
			continue;
		while (!moat_slice_eq_ci(h->name, want[j].name))
			j++;
		if (h->flags != want[j].flags)
			fail_msg("%s: flags %#x, want %#x", want[j].name, h->flags, want[j].flags);
	}
}

static void test_values(void **state)
{
	(void)state;
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost:h\r\nA:  \t v \t x\t \r\nB:\r\n"
	                       "C:   \r\nD: \xc3\xa9t\xff\r\n\r\n"),
	                 MOAT_OK);
	assert_slice(req.headers[0].value, "h");
	assert_slice(req.headers[1].value, "v \t x");
	assert_int_equal(req.headers[2].value.len, 0);
	assert_int_equal(req.headers[3].value.len, 0);
	assert_slice(req.headers[4].value, "\xc3\xa9t\xff");
}

static void test_leading_empty_lines(void **state)
{
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";

	(void)state;
	assert_int_equal(parse(s), MOAT_OK);
	assert_int_equal(req.head_len, strlen(s));
	assert_slice(req.method, "GET");
	assert_int_equal(parse("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), MOAT_OK);
	assert_int_equal(parse("\r\n"), MOAT_EAGAIN);
	assert_int_equal(parse("\r"), MOAT_EAGAIN);
}

static void test_pipelined(void **state)
{
	const char *s = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
	                "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab"
	                "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
	size_t off = 0, n = strlen(s);

	(void)state;
	assert_int_equal(parse_n(s, n, &lim), MOAT_OK);
	assert_slice(req.path, "/1");
	assert_int_equal(req.head_len, strlen("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"));
	off += req.head_len;
	assert_int_equal(parse_n(s + off, n - off, &lim), MOAT_OK);
	assert_slice(req.path, "/2");
	assert_int_equal(req.content_length, 2);
	assert_memory_equal(s + off + req.head_len, "abGET /3", 8);
	off += req.head_len + 2;
	assert_int_equal(parse_n(s + off, n - off, &lim), MOAT_OK);
	assert_slice(req.path, "/3");
	assert_int_equal(off + req.head_len, n);
}

static void test_expect(void **state)
{
	(void)state;
	assert_int_equal(parse("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
	                       "Content-Length: 1\r\n\r\n"),
	                 MOAT_OK);
	assert_true(req.expect_continue);
	assert_int_equal(parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), MOAT_OK);
	assert_false(req.expect_continue);
}

static void test_bytewise(void **state)
{
	static const char *const ok[] = {
	        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	        "\r\nPOST /x?y HTTP/1.1\r\nHost: h:1\r\nContent-Length: 10\r\nA: b c\r\n\r\n",
	        "GET http://h/p HTTP/1.1\r\nHost: h\r\nConnection: close, x\r\nX: y\r\n\r\n",
	        ("PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
	         "Expect: 100-continue\r\n\r\n"),
	        "GET / HTTP/1.0\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(ok); i++)
		accepted_bytewise(ok[i], strlen(ok[i]));
	/* with a body following: still EAGAIN until the empty line */
	accepted_bytewise("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
	                  strlen("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"));
}

static void test_null_limits(void **state)
{
	const char *s = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
	struct moat_http_limits zero = {0, 0, 0};

	(void)state;
	assert_int_equal(moat_http_parse_request(s, strlen(s), NULL, &req, &err), MOAT_OK);
	assert_int_equal(moat_http_parse_request(s, strlen(s), &zero, &req, &err), MOAT_OK);
}

/* ---- request refusals ---- */

static void test_cl_te(void **state)
{
	(void)state;
	refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
	        "Transfer-Encoding: chunked\r\n\r\n",
	        400);
	refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
	        "Content-Length: 5\r\n\r\n",
	        400);
}

static void test_bad_content_length(void **state)
{
	static const char *const bad[] = {
	        "",
	        "abc",
	        "-1",
	        "+1",
	        "1 2",
	        "1,1",
	        "1, 1",
	        "0x10",
	        "1.0",
	        "18446744073709551616",
	        "99999999999999999999999",
	        "\xff",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf),
		         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
	refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
	        400);
	/* same number, different spelling: refused, we compare what was sent */
	refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n",
	        400);
	refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: x\r\n\r\n",
	        400);
}

static void test_bad_transfer_encoding(void **state)
{
	static const char *const bad[] = {
	        "chunked, chunked", "gzip, chunked", "chunked, gzip",
	        "identity",         "gzip",          "",
	        "chunked;q=1",      "chunked,",      ",chunked",
	        "chunke",           "\"chunked\"",   "chunked x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf),
		         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
	refused("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
	        "Transfer-Encoding: chunked\r\n\r\n",
	        400);
	refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

static void test_obs_fold(void **state)
{
	(void)state;
	refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400);
	/* whitespace between the request line and the first header */
	refused("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
}

static void test_bare_lf(void **state)
{
	(void)state;
	refused("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
	refused("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n", 400);
	refused("GET /\n HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_bare_cr(void **state)
{
	(void)state;
	refused("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\n\rx", 400);
	refused("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400);
}

static void test_bad_header_name(void **state)
{
	static const char *const bad[] = {
	        ": empty",  "Fo o: x",  "Fo\"o: x",    "Foo@: x", "F(o): x", "Fo/o: x",
	        "\x01X: x", "X\x7f: x", "\xc3\xa9: x", "[x]: x",  "Foo",     "Foo=bar",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
	refused("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", 400);
}

static void test_bad_header_value(void **state)
{
	static const char *const bad[] = {"a\x01", "\x1f", "a\x7f", "a\x0b", "\x0c"};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\nX: %s\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
	/* NUL cannot go through the helpers above */
	static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
	assert_int_equal(parse_n(nul, sizeof(nul) - 1, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 400);
	static const char nul_name[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0: a\r\n\r\n";
	assert_int_equal(parse_n(nul_name, sizeof(nul_name) - 1, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 400);
	static const char nul_target[] = "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n";
	assert_int_equal(parse_n(nul_target, sizeof(nul_target) - 1, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 400);
}

static void test_bad_method(void **state)
{
	(void)state;
	refused("G(ET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused("G\x80T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused("GET:/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	refused("GET\r\n\r\n", 400);
}

static void test_bad_target(void **state)
{
	static const char *const bad[] = {
	        "GET  / HTTP/1.1", /* empty target */
	        "GET /a b HTTP/1.1", /* space in target */
	        "GET /a\tb HTTP/1.1", /* HTAB in target */
	        "GET /\x01 HTTP/1.1", /* CTL */
	        "GET /\x7f HTTP/1.1", /* DEL */
	        "GET /\xc3\xa9 HTTP/1.1", /* obs-text */
	        "GET /a#frag HTTP/1.1", /* fragment */
	        "GET a/b HTTP/1.1", /* relative */
	        "GET * HTTP/1.1", /* asterisk outside OPTIONS */
	        "CONNECT / HTTP/1.1", /* CONNECT needs authority-form */
	        "CONNECT h HTTP/1.1", /* port required */
	        "CONNECT http://h/ HTTP/1.1",
	        "GET h:80 HTTP/1.1", /* authority-form outside CONNECT */
	        "GET ftp://h/ HTTP/1.1", /* scheme */
	        "GET http:/h/ HTTP/1.1",
	        "GET http:// HTTP/1.1", /* empty authority */
	        "GET http:///p HTTP/1.1",
	        "GET http://u@h/ HTTP/1.1", /* userinfo */
	        "GET http://h:x/ HTTP/1.1", /* port */
	        "GET http://h:123456/ HTTP/1.1",
	        "GET http://h%41/ HTTP/1.1", /* percent-encoded host */
	        "GET http://[]/ HTTP/1.1",
	        "GET http://[::1/ HTTP/1.1",
	        "GET / / HTTP/1.1",
	        "GET / HTTP/1.1 x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf), "%s\r\nHost: h\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
}

static void test_bad_version(void **state)
{
	static const char *const bad[] = {
	        "http/1.1", "HTTP/1",    "HTTP/1.",  "HTTP/1.10", "HTTP/11.1",  "HTTP/1.1 ",
	        "HTTP 1.1", "HTTPS/1.1", "HTTP/1,1", "HTTP/a.1",  "HTTP/1.1\t", "",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf), "GET / %s\r\nHost: h\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
	refused("GET /\r\nHost: h\r\n\r\n", 400);
	refused("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
	refused("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
	refused("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
	refused("GET / HTTP/9.9\r\nHost: h\r\n\r\n", 505);
}

static void test_bad_host(void **state)
{
	static const char *const bad[] = {
	        "a b",  "a/b", "a@b",    "h:",      "h:x", "h:123456", ":80",
	        "[::1", "[]",  "[g::1]", "h:80:80", "a,b", "h%20",     "h\xc3\xa9",
	};
	size_t i;

	(void)state;
	refused("GET / HTTP/1.1\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
	refused("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400);
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
		refused(buf, 400);
	}
	refused("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400);
	refused("GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	/* accepted forms */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n"), MOAT_OK);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: 10.0.0.1:1\r\n\r\n"), MOAT_OK);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a-b.c_d~e\r\n\r\n"), MOAT_OK);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n"), MOAT_OK);
	assert_int_equal(req.host.len, 0);
}

static void test_bad_connection(void **state)
{
	(void)state;
	refused("GET / HTTP/1.1\r\nHost: h\r\nConnection: close;x\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nConnection: a b\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nConnection: \"close\"\r\n\r\n", 400);
	refused("GET / HTTP/1.1\r\nHost: h\r\nConnection: host\r\n\r\n", 400);
	refused("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
	        "Connection: Content-Length\r\n\r\n",
	        400);
}

static void test_bad_expect(void **state)
{
	(void)state;
	refused("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417);
	refused("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n", 417);
	refused("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nExpect: y\r\n\r\n", 417);
	refused("PUT / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n", 417);
	/* a malformed request is a 400 first */
	refused("PUT / HTTP/1.1\r\nExpect: nope\r\n\r\n", 400);
}

static void test_too_many_empty_lines(void **state)
{
	(void)state;
	refused("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

/* A request line of exactly n bytes including its CRLF. */
static void request_line(char *out, size_t n)
{
	size_t fixed = strlen("GET / HTTP/1.1\r\n");

	assert_true(n >= fixed);
	memcpy(out, "GET /", 5);
	memset(out + 5, 'a', n - fixed);
	memcpy(out + 5 + (n - fixed), " HTTP/1.1\r\n", 11);
	out[n] = '\0';
}

static void test_request_line_limit(void **state)
{
	(void)state;
	request_line(buf, LINE_MAX_TEST);
	strcat(buf, "Host: h\r\n\r\n");
	assert_int_equal(parse(buf), MOAT_OK);

	request_line(buf, LINE_MAX_TEST + 1);
	strcat(buf, "Host: h\r\n\r\n");
	refused(buf, 414);

	/* streamed without its end: refused once the limit is reached, not left waiting */
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', sizeof(buf) - 5);
	assert_int_equal(parse_n(buf, LINE_MAX_TEST - 1, &lim), MOAT_EAGAIN);
	assert_int_equal(parse_n(buf, LINE_MAX_TEST, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 414);
	assert_int_equal(parse_n(buf, sizeof(buf), &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 414);

	/* CR as the last byte allowed, LF still missing: wait */
	request_line(buf, LINE_MAX_TEST);
	assert_int_equal(parse_n(buf, LINE_MAX_TEST - 1, &lim), MOAT_EAGAIN);
	/* one byte longer: its CR lands on the last allowed byte, the LF cannot fit */
	request_line(buf, LINE_MAX_TEST + 1);
	assert_int_equal(parse_n(buf, LINE_MAX_TEST, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 414);

	/* leading empty lines do not count against the request line */
	strcpy(buf, "\r\n");
	request_line(buf + 2, LINE_MAX_TEST);
	strcat(buf, "Host: h\r\n\r\n");
	assert_int_equal(parse(buf), MOAT_OK);
}

static void test_head_limit_below_line_limit(void **state)
{
	const struct moat_http_limits small_head = {1024, 64, 8};

	(void)state;
	/* the request line alone passes the head limit: 431, the head is what is too large */
	request_line(buf, 100);
	strcat(buf, "Host: h\r\n\r\n");
	assert_int_equal(parse_n(buf, strlen(buf), &small_head), MOAT_EINVAL);
	assert_int_equal(req.error_status, 431);
	assert_int_equal(parse_n(buf, 64, &small_head), MOAT_EINVAL);
	assert_int_equal(req.error_status, 431);
	assert_int_equal(parse_n(buf, 63, &small_head), MOAT_EAGAIN);
}

/* A head of exactly n bytes: request line, Host, one padding header, empty line. */
static void head_of(char *out, size_t n)
{
	const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
	size_t fixed = strlen(pre) + 4;

	assert_true(n >= fixed);
	strcpy(out, pre);
	memset(out + strlen(pre), 'v', n - fixed);
	memcpy(out + strlen(pre) + (n - fixed), "\r\n\r\n", 5);
	assert_int_equal(strlen(out), n);
}

static void test_head_limit(void **state)
{
	(void)state;
	head_of(buf, HEAD_MAX_TEST);
	assert_int_equal(parse(buf), MOAT_OK);
	assert_int_equal(req.head_len, HEAD_MAX_TEST);

	head_of(buf, HEAD_MAX_TEST + 1);
	refused(buf, 431);

	/* incomplete head: waiting below the limit, refused at it */
	head_of(buf, HEAD_MAX_TEST + 100);
	assert_int_equal(parse_n(buf, HEAD_MAX_TEST - 1, &lim), MOAT_EAGAIN);
	assert_int_equal(parse_n(buf, HEAD_MAX_TEST, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 431);

	/* the final CRLF is part of the head: one byte short of it at the limit is too large */
	head_of(buf, HEAD_MAX_TEST + 1);
	assert_int_equal(parse_n(buf, HEAD_MAX_TEST, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 431);

	/* leading empty lines count */
	strcpy(buf, "\r\n");
	head_of(buf + 2, HEAD_MAX_TEST - 2);
	assert_int_equal(parse(buf), MOAT_OK);
	head_of(buf + 2, HEAD_MAX_TEST - 1);
	refused(buf, 431);
}

static void headers_n(char *out, unsigned n)
{
	unsigned i;

	strcpy(out, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (i = 1; i < n; i++)
		strcat(out, "X: y\r\n");
	strcat(out, "\r\n");
}

static void test_header_count_limit(void **state)
{
	struct moat_http_limits many = {8192, 65536, 1000};
	size_t n;

	(void)state;
	headers_n(buf, HEADERS_MAX_TEST);
	assert_int_equal(parse(buf), MOAT_OK);
	assert_int_equal(req.nheaders, HEADERS_MAX_TEST);

	headers_n(buf, HEADERS_MAX_TEST + 1);
	refused(buf, 431);

	/* refused as soon as the extra line begins */
	headers_n(buf, HEADERS_MAX_TEST);
	n = strlen(buf) - 2;
	assert_int_equal(parse_n(buf, n, &lim), MOAT_EAGAIN);
	memcpy(buf + n, "X", 1);
	assert_int_equal(parse_n(buf, n + 1, &lim), MOAT_EINVAL);
	assert_int_equal(req.error_status, 431);

	/* the configured limit cannot exceed the array */
	headers_n(buf, MOAT_HTTP_MAX_HEADERS);
	assert_int_equal(parse_n(buf, strlen(buf), &many), MOAT_OK);
	assert_int_equal(req.nheaders, MOAT_HTTP_MAX_HEADERS);
	headers_n(buf, MOAT_HTTP_MAX_HEADERS + 1);
	assert_int_equal(parse_n(buf, strlen(buf), &many), MOAT_EINVAL);
	assert_int_equal(req.error_status, 431);
}

/* A refusal found in a prefix stays a refusal with the same status when more arrives. */
static void test_refusal_is_stable(void **state)
{
	static const char *const bad[] = {
	        "GET / HTTP/1.1\r\nHost: h\r\nX\n",
	        "GET /\x01",
	        "GET / HTTP/1.1\r\n ",
	        "GE(",
	};
	size_t i, k;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		size_t n = strlen(bad[i]);

		assert_int_equal(parse_n(bad[i], n, &lim), MOAT_EINVAL);
		assert_int_equal(req.error_status, 400);
		snprintf(buf, sizeof(buf), "%sHost: h\r\n\r\n", bad[i]);
		refused(buf, 400);
		for (k = 0; k < n - 1; k++)
			assert_int_equal(parse_n(bad[i], k, &lim), MOAT_EAGAIN);
	}
}

/* ---- responses ---- */

static void test_response_length(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\nhello";

	(void)state;
	assert_int_equal(parse_res(s, 0), MOAT_OK);
	assert_int_equal(res.status, 200);
	assert_int_equal(res.minor, 1);
	assert_slice(res.reason, "OK");
	assert_int_equal(res.nheaders, 2);
	assert_int_equal(res.head_len, strlen(s) - 5);
	assert_int_equal(res.framing, MOAT_BODY_LENGTH);
	assert_int_equal(res.content_length, 12);
	assert_true(res.keep_alive);
	assert_null(err);
}

static void test_response_chunked(void **state)
{
	(void)state;
	assert_int_equal(parse_res("HTTP/1.1 201 Created\r\nTransfer-Encoding: Chunked\r\n\r\n", 0),
	                 MOAT_OK);
	assert_int_equal(res.framing, MOAT_BODY_CHUNKED);
	assert_true(res.keep_alive);
	assert_int_equal(res.headers[0].flags, MOAT_HDR_HOP);
}

static void test_response_until_close(void **state)
{
	(void)state;
	assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", 0),
	                 MOAT_OK);
	assert_int_equal(res.framing, MOAT_BODY_UNTIL_CLOSE);
	assert_false(res.keep_alive);
	assert_int_equal(parse_res("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", 0),
	                 MOAT_OK);
	assert_int_equal(res.framing, MOAT_BODY_UNTIL_CLOSE);
	assert_false(res.keep_alive);
}

static void test_response_no_body(void **state)
{
	static const char *const none[] = {
	        "HTTP/1.1 100 Continue\r\n\r\n",
	        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
	        "upgrade\r\n\r\n",
	        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
	        "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
	        "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
	        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	        "HTTP/1.1 204 No Content\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(none); i++) {
		assert_int_equal(parse_res(none[i], 0), MOAT_OK);
		assert_int_equal(res.framing, MOAT_BODY_NONE);
		assert_true(res.keep_alive);
	}
	assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 1), MOAT_OK);
	assert_int_equal(res.framing, MOAT_BODY_NONE);
	assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1),
	                 MOAT_OK);
	assert_int_equal(res.framing, MOAT_BODY_NONE);
	assert_int_equal(parse_res("HTTP/1.1 200 OK\r\n\r\n", 1), MOAT_OK);
	assert_int_equal(res.framing, MOAT_BODY_NONE);
	assert_true(res.keep_alive);
}

static void test_response_keep_alive(void **state)
{
	(void)state;
	assert_int_equal(parse_res("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n"
	                           "\r\n",
	                           0),
	                 MOAT_OK);
	assert_false(res.keep_alive);
	assert_int_equal(parse_res("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0), MOAT_OK);
	assert_false(res.keep_alive);
	assert_int_equal(res.minor, 0);
	assert_int_equal(parse_res("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n"
	                           "Connection: Keep-Alive\r\n\r\n",
	                           0),
	                 MOAT_OK);
	assert_true(res.keep_alive);
}

static void test_response_reason(void **state)
{
	(void)state;
	assert_int_equal(parse_res("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0), MOAT_OK);
	assert_int_equal(res.reason.len, 0);
	assert_int_equal(parse_res("HTTP/1.1 204\r\n\r\n", 0), MOAT_OK);
	assert_int_equal(res.reason.len, 0);
	assert_int_equal(res.status, 204);
	assert_int_equal(parse_res("HTTP/1.1 599 Very\tOdd  \xe9t\xe9 \r\n\r\n", 0), MOAT_OK);
	assert_slice(res.reason, "Very\tOdd  \xe9t\xe9 ");
	assert_int_equal(res.status, 599);
	assert_int_equal(parse_res("HTTP/1.1 100 x\r\n\r\n", 0), MOAT_OK);
}

static void test_response_bytewise(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
	size_t head = strlen(s) - 3, k;

	(void)state;
	for (k = 0; k < head; k++)
		assert_int_equal(moat_http_parse_response(s, k, &lim, 0, &res, &err), MOAT_EAGAIN);
	assert_int_equal(moat_http_parse_response(s, strlen(s), &lim, 0, &res, &err), MOAT_OK);
	assert_int_equal(res.head_len, head);
}

static void test_response_bad(void **state)
{
	static const char *const bad[] = {
	        "HTTP/1.1 20 OK\r\n\r\n",
	        "HTTP/1.1 2000 OK\r\n\r\n",
	        "HTTP/1.1 099 Low\r\n\r\n",
	        "HTTP/1.1 600 High\r\n\r\n",
	        "HTTP/1.1 000 Zero\r\n\r\n",
	        "HTTP/1.1 2x0 OK\r\n\r\n",
	        "HTTP/1.1  200 OK\r\n\r\n",
	        "HTTP/1.1\t200 OK\r\n\r\n",
	        "HTTP/1.1 200\tOK\r\n\r\n",
	        "HTTP/1.1 200 O\x01K\r\n\r\n",
	        "HTTP/1.1 200 O\x7fK\r\n\r\n",
	        "HTTP/2.0 200 OK\r\n\r\n",
	        "HTTP/1.2 200 OK\r\n\r\n",
	        "HTTP/0.9 200 OK\r\n\r\n",
	        "http/1.1 200 OK\r\n\r\n",
	        "HTTP/1.1 200 OK\n\r\n",
	        "HTTP/1.1 200 OK\r\nA: b\n\r\n",
	        "HTTP/1.1 200 OK\r\nA: b\r\n\n",
	        "HTTP/1.1 200 OK\rA: b\r\n\r\n",
	        "\r\nHTTP/1.1 200 OK\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nA(: b\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	        "HTTP/1.1 204 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	        "chunked\r\n\r\n",
	        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nConnection: a;b\r\n\r\n",
	        "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++)
		refused_res(bad[i], 0);
	refused_res("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	            1);
}

static void test_response_limits(void **state)
{
	char *p;
	unsigned i;

	(void)state;
	/* exactly max_head bytes is fine, one more is not, and an incomplete one at the limit */
	strcpy(buf, "HTTP/1.1 200 OK\r\nX: ");
	p = buf + strlen(buf);
	memset(p, 'v', HEAD_MAX_TEST - strlen(buf) - 4);
	strcpy(buf + HEAD_MAX_TEST - 4, "\r\n\r\n");
	assert_int_equal(parse_res(buf, 0), MOAT_OK);
	assert_int_equal(res.head_len, HEAD_MAX_TEST);
	assert_int_equal(moat_http_parse_response(buf, HEAD_MAX_TEST - 1, &lim, 0, &res, &err),
	                 MOAT_EAGAIN);
	memmove(buf + HEAD_MAX_TEST - 3, buf + HEAD_MAX_TEST - 4, 5);
	buf[HEAD_MAX_TEST - 4] = 'v';
	assert_int_equal(parse_res(buf, 0), MOAT_EINVAL);
	assert_string_equal(err, "response head too large");
	assert_int_equal(moat_http_parse_response(buf, HEAD_MAX_TEST, &lim, 0, &res, &err),
	                 MOAT_EINVAL);
	assert_string_equal(err, "response head too large");

	strcpy(buf, "HTTP/1.1 200 OK\r\n");
	for (i = 0; i < HEADERS_MAX_TEST; i++)
		strcat(buf, "X: y\r\n");
	strcat(buf, "\r\n");
	assert_int_equal(parse_res(buf, 0), MOAT_OK);
	strcpy(buf + strlen(buf) - 2, "X: y\r\n\r\n");
	assert_int_equal(parse_res(buf, 0), MOAT_EINVAL);
	assert_string_equal(err, "response head too large");
}

/* ---- helpers ---- */

static void test_header_find(void **state)
{
	const struct moat_http_header *h;

	(void)state;
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n"), MOAT_OK);
	h = moat_http_header_find(req.headers, req.nheaders, "X-a");
	assert_non_null(h);
	assert_slice(h->value, "1");
	assert_ptr_equal(moat_http_header_find(req.headers, req.nheaders, "host"), &req.headers[0]);
	assert_null(moat_http_header_find(req.headers, req.nheaders, "X"));
	assert_null(moat_http_header_find(req.headers, req.nheaders, "X-AB"));
	assert_null(moat_http_header_find(req.headers, 0, "host"));
}

static void test_reason(void **state)
{
	(void)state;
	assert_string_equal(moat_http_reason(200), "OK");
	assert_string_equal(moat_http_reason(400), "Bad Request");
	assert_string_equal(moat_http_reason(414), "URI Too Long");
	assert_string_equal(moat_http_reason(417), "Expectation Failed");
	assert_string_equal(moat_http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(moat_http_reason(501), "Not Implemented");
	assert_string_equal(moat_http_reason(502), "Bad Gateway");
	assert_string_equal(moat_http_reason(505), "HTTP Version Not Supported");
	assert_string_equal(moat_http_reason(299), "Unknown");
	assert_string_equal(moat_http_reason(-1), "Unknown");
}

static void test_slice_eq_ci(void **state)
{
	(void)state;
	assert_true(moat_slice_eq_ci(MOAT_SLICE_LIT("Content-Length"), "content-length"));
	assert_true(moat_slice_eq_ci(MOAT_SLICE_LIT(""), ""));
	assert_false(moat_slice_eq_ci(MOAT_SLICE_LIT("Host"), "hos"));
	assert_false(moat_slice_eq_ci(MOAT_SLICE_LIT("Hos"), "host"));
	assert_false(moat_slice_eq_ci(MOAT_SLICE_LIT("Ho\0t"), "ho"));
	assert_false(moat_slice_eq_ci(MOAT_SLICE_LIT("["), "{"));
	assert_false(moat_slice_eq_ci(MOAT_SLICE_LIT("\xc9"), "\xe9"));
	assert_true(moat_slice_eq_ci((struct moat_slice){"hostname", 4}, "HOST"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_get),
	        cmocka_unit_test(test_get_no_query),
	        cmocka_unit_test(test_post_length),
	        cmocka_unit_test(test_post_length_zero),
	        cmocka_unit_test(test_post_length_max),
	        cmocka_unit_test(test_post_length_duplicate_identical),
	        cmocka_unit_test(test_post_chunked),
	        cmocka_unit_test(test_head),
	        cmocka_unit_test(test_connect),
	        cmocka_unit_test(test_options_asterisk),
	        cmocka_unit_test(test_any_token_method),
	        cmocka_unit_test(test_absolute_form),
	        cmocka_unit_test(test_http10),
	        cmocka_unit_test(test_keep_alive),
	        cmocka_unit_test(test_flags),
	        cmocka_unit_test(test_values),
	        cmocka_unit_test(test_leading_empty_lines),
	        cmocka_unit_test(test_pipelined),
	        cmocka_unit_test(test_expect),
	        cmocka_unit_test(test_bytewise),
	        cmocka_unit_test(test_null_limits),
	        cmocka_unit_test(test_cl_te),
	        cmocka_unit_test(test_bad_content_length),
	        cmocka_unit_test(test_bad_transfer_encoding),
	        cmocka_unit_test(test_obs_fold),
	        cmocka_unit_test(test_bare_lf),
	        cmocka_unit_test(test_bare_cr),
	        cmocka_unit_test(test_bad_header_name),
	        cmocka_unit_test(test_bad_header_value),
	        cmocka_unit_test(test_bad_method),
	        cmocka_unit_test(test_bad_target),
	        cmocka_unit_test(test_bad_version),
	        cmocka_unit_test(test_bad_host),
	        cmocka_unit_test(test_bad_connection),
	        cmocka_unit_test(test_bad_expect),
	        cmocka_unit_test(test_too_many_empty_lines),
	        cmocka_unit_test(test_request_line_limit),
	        cmocka_unit_test(test_head_limit),
	        cmocka_unit_test(test_head_limit_below_line_limit),
	        cmocka_unit_test(test_header_count_limit),
	        cmocka_unit_test(test_refusal_is_stable),
	        cmocka_unit_test(test_response_length),
	        cmocka_unit_test(test_response_chunked),
	        cmocka_unit_test(test_response_until_close),
	        cmocka_unit_test(test_response_no_body),
	        cmocka_unit_test(test_response_keep_alive),
	        cmocka_unit_test(test_response_reason),
	        cmocka_unit_test(test_response_bytewise),
	        cmocka_unit_test(test_response_bad),
	        cmocka_unit_test(test_response_limits),
	        cmocka_unit_test(test_header_find),
	        cmocka_unit_test(test_reason),
	        cmocka_unit_test(test_slice_eq_ci),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
