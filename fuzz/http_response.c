/*
 * Fuzz driver for moat_http_parse_response (src/http/parse.c).
 *
 * The input is what an origin answered. It is parsed as the answer to a HEAD request and to
 * any other request, and the driver aborts when an invariant the proxy relies on breaks:
 * - the result is OK, EAGAIN or EINVAL, with a reason on EINVAL;
 * - an accepted head lies within the input and the limits, ends with CRLF CRLF, and every
 *   slice points inside it;
 * - framing: HEAD, 1xx, 204 and 304 have no body; a body read until close ends the
 *   connection; chunked and length framing agree with the headers;
 * - parsing is prefix-stable, as for requests.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parse.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const struct moat_http_limits limits = {64, 1024, 16};

static struct moat_http_response res, again;

static int inside(struct moat_slice s, const char *base, size_t len)
{
	if (s.len == 0)
		return s.p == NULL || (s.p >= base && s.p <= base + len);
	return s.p >= base && s.len <= len && (size_t)(s.p - base) <= len - s.len;
}

static void check_accepted(const char *buf, size_t len, int is_head)
{
	const struct moat_http_header *cl, *te;
	size_t n = res.head_len;
	unsigned i;

	CHECK(n >= 16 && n <= len && n <= limits.max_head);
	CHECK(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
	CHECK(res.status >= 100 && res.status <= 599);
	CHECK(res.minor == 0 || res.minor == 1);
	CHECK(res.nheaders <= limits.max_headers);
	CHECK(inside(res.reason, buf, n));
	for (i = 0; i < res.reason.len; i++) {
		unsigned char c = (unsigned char)res.reason.p[i];

		CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
	}
	for (i = 0; i < res.nheaders; i++) {
		CHECK(res.headers[i].name.len > 0);
		CHECK(inside(res.headers[i].name, buf, n) && inside(res.headers[i].value, buf, n));
	}
	cl = moat_http_header_find(res.headers, res.nheaders, "content-length");
	te = moat_http_header_find(res.headers, res.nheaders, "transfer-encoding");
	CHECK(!(cl && te));
	if (te)
		CHECK(res.minor == 1 && moat_slice_eq_ci(te->value, "chunked"));
	if (is_head || res.status < 200 || res.status == 204 || res.status == 304)
		CHECK(res.framing == MOAT_BODY_NONE);
	switch (res.framing) {
	case MOAT_BODY_NONE:
		break;
	case MOAT_BODY_LENGTH:
		CHECK(cl != NULL);
		break;
	case MOAT_BODY_CHUNKED:
		CHECK(te != NULL);
		break;
	case MOAT_BODY_UNTIL_CLOSE:
		CHECK(!cl && !te && !res.keep_alive);
		break;
	default:
		CHECK(0);
	}
}

static uint64_t hash(const uint8_t *d, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ d[i]) * 1099511628211ull;
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	int is_head;

	for (is_head = 0; is_head < 2; is_head++) {
		const char *err = NULL, *err2 = NULL;
		size_t cut;
		int r, r2;

		r = moat_http_parse_response(buf, size, &limits, is_head, &res, &err);
		if (r == MOAT_EINVAL) {
			CHECK(err != NULL);
		} else if (r == MOAT_EAGAIN) {
			CHECK(size < limits.max_head);
		} else {
			CHECK(r == MOAT_OK);
			check_accepted(buf, size, is_head);
			r2 = moat_http_parse_response(buf, res.head_len, &limits, is_head, &again,
			                              &err2);
			CHECK(r2 == MOAT_OK && again.head_len == res.head_len);
			CHECK(again.framing == res.framing && again.status == res.status);
		}

		if (size == 0)
			continue;
		cut = (size_t)(hash(data, size) % size);
		r2 = moat_http_parse_response(buf, cut, &limits, is_head, &again, &err2);
		if (r == MOAT_OK && cut >= res.head_len)
			CHECK(r2 == MOAT_OK && again.head_len == res.head_len);
		else if (r2 != MOAT_EAGAIN)
			CHECK(r2 == r);
	}
	return 0;
}
