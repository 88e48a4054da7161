/*
 * Unit tests for the chunked body decoder in src/http/chunked.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "http/parse.h"

#define MAX_LINE 32
#define MAX_TRAILER 64

static char out[1 << 20];
static char big[(1 << 20) + 64];

struct result {
	int rc; /* 1, MOAT_EAGAIN or MOAT_EINVAL */
	size_t consumed; /* total bytes consumed when rc == 1 */
	size_t out_len; /* data bytes decoded */
	const char *err;
};

/*
 * Decodes in[0..len), feeding at most `step` bytes per call (0: everything at once) and
 * calling again on what was not consumed, as the proxy does.
 */
static struct result decode(const char *in, size_t len, size_t step)
{
	struct moat_http_chunked c;
	struct result r = {MOAT_EAGAIN, 0, 0, NULL};
	size_t off = 0, avail = 0;

	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	for (;;) {
		struct moat_slice data;
		size_t used;
		int rc;

		if (step == 0)
			avail = len;
		else if (avail == off && avail < len)
			avail = avail + step < len ? avail + step : len;
		rc = moat_http_chunked_decode(&c, in + off, avail - off, &used, &data, &r.err);
		if (rc == MOAT_EINVAL) {
			assert_non_null(r.err);
			r.rc = rc;
			return r;
		}
		assert_true(used <= avail - off);
		if (data.len > 0) {
			assert_int_equal(rc, MOAT_OK);
			assert_true(data.p >= in + off && data.p + data.len <= in + off + used);
			memcpy(out + r.out_len, data.p, data.len);
			r.out_len += data.len;
		}
		off += used;
		if (rc == 1) {
			r.rc = 1;
			r.consumed = off;
			return r;
		}
		if (rc == MOAT_EAGAIN) {
			assert_int_equal(off, avail);
			assert_int_equal(data.len, 0);
			if (avail == len) {
				r.rc = MOAT_EAGAIN;
				return r;
			}
		} else {
			assert_int_equal(rc, MOAT_OK);
			assert_true(data.len > 0);
		}
	}
}

static void decodes_to(const char *in, const char *want)
{
	size_t len = strlen(in);
	size_t steps[] = {0, 1, 2, 3, 7};
	size_t i;

	for (i = 0; i < MOAT_ARRAY_LEN(steps); i++) {
		struct result r = decode(in, len, steps[i]);

		if (r.rc != 1)
			fail_msg("step %zu: %d (%s) for %s", steps[i], r.rc, r.err ? r.err : "-",
			         in);
		assert_int_equal(r.consumed, len);
		assert_int_equal(r.out_len, strlen(want));
		assert_memory_equal(out, want, r.out_len);
	}
}

static void refused(const char *in)
{
	size_t steps[] = {0, 1};
	size_t i;

	for (i = 0; i < MOAT_ARRAY_LEN(steps); i++) {
		struct result r = decode(in, strlen(in), steps[i]);

		if (r.rc != MOAT_EINVAL)
			fail_msg("step %zu: accepted %s", steps[i], in);
	}
}

static void incomplete(const char *in)
{
	struct result r = decode(in, strlen(in), 1);

	if (r.rc != MOAT_EAGAIN)
		fail_msg("%s: %d (%s)", in, r.rc, r.err ? r.err : "-");
}

static void test_simple(void **state)
{
	(void)state;
	decodes_to("5\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("0\r\n\r\n", "");
	decodes_to("1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0\r\n\r\n", "abcdef");
	decodes_to("A\r\n0123456789\r\na\r\nABCDEFGHIJ\r\n0\r\n\r\n", "0123456789ABCDEFGHIJ");
	decodes_to("0005\r\nhello\r\n000\r\n\r\n", "hello");
	decodes_to("000000000000000F\r\n0123456789abcde\r\n0000000000000000\r\n\r\n",
	           "0123456789abcde");
	/* chunk data is opaque: CR, LF and NUL inside are data */
	decodes_to("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n");
}

static void test_extensions(void **state)
{
	(void)state;
	decodes_to("5;a\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5;a=b\r\nhello\r\n0;last\r\n\r\n", "hello");
	decodes_to("5;a=b;c;d=e\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5 ; a = b ;c\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5\t;\ta\t=\t\"q\"\t;b\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5;a=\"x y;z\\\"\\\\ \xe9\"\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5;a=\"q\";b=\"r\"\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5;!#$%&'*+-.^_`|~=x\r\nhello\r\n0\r\n\r\n", "hello");
	decodes_to("5;x=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n", "hello");
}

static void test_trailers(void **state)
{
	(void)state;
	decodes_to("3\r\nabc\r\n0\r\nX-Sum: 123\r\n\r\n", "abc");
	decodes_to("0\r\nA: 1\r\nB:2\r\nC:\r\nD: \t x \xff\r\n\r\n", "");
}

static void test_bytewise_large(void **state)
{
	size_t n = 0, i;

	(void)state;
	for (i = 0; i < 40; i++) {
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%zx;i=%zu\r\n", i + 1, i);
		memset(big + n, 'a' + (int)(i % 26), i + 1);
		n += i + 1;
		memcpy(big + n, "\r\n", 2);
		n += 2;
	}
	memcpy(big + n, "0\r\nT: v\r\n\r\n", 12);
	n += 11;
	{
		struct result whole = decode(big, n, 0), one = decode(big, n, 1);

		assert_int_equal(whole.rc, 1);
		assert_int_equal(one.rc, 1);
		assert_int_equal(whole.out_len, 40 * 41 / 2);
		assert_int_equal(one.out_len, whole.out_len);
		assert_int_equal(whole.consumed, n);
		assert_int_equal(one.consumed, n);
	}
}

static void test_big_chunk_one_slice(void **state)
{
	struct moat_http_chunked c;
	struct moat_slice data;
	const char *err;
	size_t used, hdr, n = 1 << 20;

	(void)state;
	hdr = (size_t)snprintf(big, sizeof(big), "%zx\r\n", n);
	memset(big + hdr, 'x', n);
	memcpy(big + hdr + n, "\r\n0\r\n\r\n", 7);

	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	/* the whole megabyte comes back as one slice of the input, no copy */
	assert_int_equal(moat_http_chunked_decode(&c, big, hdr + n + 7, &used, &data, &err),
	                 MOAT_OK);
	assert_ptr_equal(data.p, big + hdr);
	assert_int_equal(data.len, n);
	assert_int_equal(used, hdr + n);
	assert_int_equal(moat_http_chunked_decode(&c, big + used, 7, &used, &data, &err), 1);
	assert_int_equal(used, 7);

	/* a chunk larger than any buffer: data runs come back as they arrive */
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	assert_int_equal(
	        moat_http_chunked_decode(&c, "FFFFFFFFFFFFFFFF\r\n", 18, &used, &data, &err),
	        MOAT_EAGAIN);
	assert_int_equal(used, 18);
	assert_true(c.remaining == UINT64_MAX);
	assert_int_equal(moat_http_chunked_decode(&c, big, n, &used, &data, &err), MOAT_OK);
	assert_int_equal(data.len, n);
	assert_true(c.remaining == UINT64_MAX - n);
}

static void test_consumed_counts(void **state)
{
	struct moat_http_chunked c;
	struct moat_slice data;
	const char *err;
	const char *in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
	size_t used;

	(void)state;
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	assert_int_equal(moat_http_chunked_decode(&c, in, strlen(in), &used, &data, &err), MOAT_OK);
	assert_int_equal(used, 6);
	assert_int_equal(data.len, 3);
	assert_ptr_equal(data.p, in + 3);
	/* what follows the final CRLF belongs to the next message */
	assert_int_equal(moat_http_chunked_decode(&c, in + 6, strlen(in) - 6, &used, &data, &err),
	                 1);
	assert_int_equal(used, strlen("\r\n0\r\n\r\n"));
	/* finished is sticky */
	assert_int_equal(moat_http_chunked_decode(&c, "x", 1, &used, &data, &err), 1);
	assert_int_equal(used, 0);
	/* no input: nothing to do */
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	assert_int_equal(moat_http_chunked_decode(&c, "", 0, &used, &data, &err), MOAT_EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(data.len, 0);
}

static void test_zeroed_state(void **state)
{
	struct moat_http_chunked c;
	struct moat_slice data;
	const char *err;
	size_t used;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(moat_http_chunked_decode(&c, "2\r\nok\r\n", 7, &used, &data, &err),
	                 MOAT_OK);
	assert_int_equal(data.len, 2);
	assert_int_equal(moat_http_chunked_decode(&c, "\r\n0\r\n\r\n", 7, &used, &data, &err), 1);
}

static void test_incomplete(void **state)
{
	(void)state;
	incomplete("");
	incomplete("5");
	incomplete("5\r");
	incomplete("5\r\nhel");
	incomplete("5\r\nhello");
	incomplete("5\r\nhello\r");
	incomplete("5\r\nhello\r\n0\r\n");
	incomplete("5\r\nhello\r\n0\r\nX: y\r\n");
	incomplete("5\r\nhello\r\n0\r\n\r");
	incomplete("5;a=\"b");
}

static void test_bad_size(void **state)
{
	static const char *const bad[] = {
	        "\r\n",
	        "-5\r\nhello\r\n0\r\n\r\n",
	        "+5\r\nhello\r\n0\r\n\r\n",
	        " 5\r\nhello\r\n0\r\n\r\n",
	        "5 \r\nhello\r\n0\r\n\r\n",
	        "0x5\r\nhello\r\n0\r\n\r\n",
	        "g\r\n",
	        "5g\r\n",
	        ";a\r\n",
	        "10000000000000000\r\n",
	        "00000000000000001\r\n",
	        "\xff\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++)
		refused(bad[i]);
}

static void test_bad_extension(void **state)
{
	static const char *const bad[] = {
	        "5;\r\nhello\r\n0\r\n\r\n",
	        "5;=b\r\nhello\r\n0\r\n\r\n",
	        "5;a=\r\nhello\r\n0\r\n\r\n",
	        "5;a=b c\r\nhello\r\n0\r\n\r\n",
	        "5;a b\r\nhello\r\n0\r\n\r\n",
	        "5;a \r\nhello\r\n0\r\n\r\n",
	        "5;a=b \r\n",
	        "5;a=\"b\" \r\n",
	        "5;a=\"b\"c\r\n",
	        "5;a=\"b\r\n\"\r\n",
	        "5;a=\"\x01\"\r\n",
	        "5;a=\"\\\x01\"\r\n",
	        "5;a\x01\r\n",
	        "5;a=b\x7f\r\n",
	        "5;a=(b)\r\n",
	        "5;a==b\r\n",
	        "5;;\r\n",
	        "5,a\r\n",
	        "5;a=b,c\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++)
		refused(bad[i]);
}

static void test_bad_crlf(void **state)
{
	static const char *const bad[] = {
	        "5\nhello\r\n0\r\n\r\n",    "5\rhello\r\n0\r\n\r\n",
	        "5\r\nhello\n0\r\n\r\n",    "5\r\nhello\r0\r\n\r\n",
	        "5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhell\r\n0\r\n\r\n",
	        "5\r\nhello\r\n0\n\r\n",    "5\r\nhello\r\n0\r\n\n",
	        "5\r\nhello\r\n0\r\n\rx",   "5;a=b\nhello\r\n0\r\n\r\n",
	        "5;a\nhello\r\n",           "5\rXhello\r\n0\r\n\r\n",
	        "5\r\nhello\rX0\r\n\r\n",   "0\r\n\rX",
	        "0\r\nA: b\rXC: d\r\n\r\n", "5\r\nhello\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++)
		refused(bad[i]);
}

static void test_bad_trailer(void **state)
{
	static const char *const bad[] = {
	        "0\r\nX: a\r\n b\r\n\r\n", "0\r\n X: a\r\n\r\n",   "0\r\nX : a\r\n\r\n",
	        "0\r\n: a\r\n\r\n",        "0\r\nX(: a\r\n\r\n",   "0\r\nX: a\nY: b\r\n\r\n",
	        "0\r\nX: a\r\n\n",         "0\r\nX: a\rb\r\n\r\n", "0\r\nX: \x01\r\n\r\n",
	        "0\r\nX: \x7f\r\n\r\n",    "0\r\nX\r\n\r\n",       "0\r\n\xe9: a\r\n\r\n",
	};
	static const char nul[] = "0\r\nX: a\0b\r\n\r\n";
	struct moat_http_chunked c;
	struct moat_slice data;
	const char *err;
	size_t i, used;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++)
		refused(bad[i]);
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	assert_int_equal(moat_http_chunked_decode(&c, nul, sizeof(nul) - 1, &used, &data, &err),
	                 MOAT_EINVAL);
}

static void test_line_limit(void **state)
{
	char line[MAX_LINE + 32];
	size_t n;

	(void)state;
	/* a size line of exactly MAX_LINE bytes, CRLF included */
	strcpy(line, "1;x=");
	n = strlen(line);
	memset(line + n, 'y', MAX_LINE - 2 - n);
	strcpy(line + MAX_LINE - 2, "\r\na\r\n0\r\n\r\n");
	decodes_to(line, "a");

	/* one more byte */
	strcpy(line, "1;x=");
	memset(line + n, 'y', MAX_LINE - 1 - n);
	strcpy(line + MAX_LINE - 1, "\r\na\r\n0\r\n\r\n");
	refused(line);

	/*
	 * Refused while still streaming, not only when the CRLF comes: MAX_LINE - 1 bytes
	 * without a CR cannot end within MAX_LINE.
	 */
	memset(line + n, 'y', MAX_LINE - n);
	line[MAX_LINE - 1] = '\0';
	refused(line);
	line[MAX_LINE - 2] = '\0';
	incomplete(line);
	line[MAX_LINE - 2] = '\r';
	incomplete(line);
}

static void test_trailer_limit(void **state)
{
	char in[MAX_TRAILER + 32];
	size_t n;

	(void)state;
	/* a trailer section of exactly MAX_TRAILER bytes, final CRLF included */
	strcpy(in, "0\r\nX: ");
	n = strlen(in);
	memset(in + n, 'v', 3 + MAX_TRAILER - 4 - n);
	strcpy(in + 3 + MAX_TRAILER - 4, "\r\n\r\n");
	assert_int_equal(strlen(in), 3 + MAX_TRAILER);
	decodes_to(in, "");

	memset(in + n, 'v', 3 + MAX_TRAILER - 3 - n);
	strcpy(in + 3 + MAX_TRAILER - 3, "\r\n\r\n");
	refused(in);

	/* many small trailer lines add up */
	strcpy(in, "0\r\n");
	while (strlen(in) < MAX_TRAILER + 3)
		strcat(in, "A:\r\n");
	strcat(in, "\r\n");
	refused(in);
}

static void test_error_sticky(void **state)
{
	struct moat_http_chunked c;
	struct moat_slice data;
	const char *err;
	size_t used;

	(void)state;
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	assert_int_equal(moat_http_chunked_decode(&c, "z", 1, &used, &data, &err), MOAT_EINVAL);
	assert_non_null(err);
	assert_int_equal(moat_http_chunked_decode(&c, "0\r\n\r\n", 5, &used, &data, &err),
	                 MOAT_EINVAL);
	assert_non_null(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_simple),
	        cmocka_unit_test(test_extensions),
	        cmocka_unit_test(test_trailers),
	        cmocka_unit_test(test_bytewise_large),
	        cmocka_unit_test(test_big_chunk_one_slice),
	        cmocka_unit_test(test_consumed_counts),
	        cmocka_unit_test(test_zeroed_state),
	        cmocka_unit_test(test_incomplete),
	        cmocka_unit_test(test_bad_size),
	        cmocka_unit_test(test_bad_extension),
	        cmocka_unit_test(test_bad_crlf),
	        cmocka_unit_test(test_bad_trailer),
	        cmocka_unit_test(test_line_limit),
	        cmocka_unit_test(test_trailer_limit),
	        cmocka_unit_test(test_error_sticky),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
