/*
 * Fuzz driver for moat_http_parse_request (src/http/parse.c).
 *
 * The input is the bytes a client sent. Each input is parsed under small and large limits,
 * and the driver aborts when an invariant the proxy relies on does not hold:
 * - the result is OK, EAGAIN or EINVAL, with a known status and a reason on EINVAL;
 * - an accepted head lies within the input and the limits, ends with CRLF CRLF, and every
 *   slice points inside it; names are tokens, values hold no CR, LF, NUL or edge whitespace;
 * - the framing agrees with the headers;
 * - parsing is prefix-stable: a prefix of the input gives EAGAIN or exactly the same answer,
 *   and the head alone parses to the same head.
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

static const struct moat_http_limits limits[] = {
        {64, 512, 16},
        {512, 128, 4}, /* a head limit below the line limit */
        {8192, 65536, MOAT_HTTP_MAX_HEADERS},
};

/* Big: keep them out of the fuzzer's stack. */
static struct moat_http_request req, again;

static int inside(struct moat_slice s, const char *base, size_t len)
{
	if (s.len == 0)
		return s.p == NULL || (s.p >= base && s.p <= base + len);
	return s.p >= base && s.len <= len && (size_t)(s.p - base) <= len - s.len;
}

static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static uint64_t hash(const uint8_t *d, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ d[i]) * 1099511628211ull;
	return h;
}

static void check_accepted(const char *buf, size_t len, const struct moat_http_limits *lim)
{
	const struct moat_http_header *cl, *te;
	size_t n = req.head_len;
	unsigned i;

	CHECK(n >= 16 && n <= len && n <= lim->max_head);
	CHECK(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
	CHECK(req.nheaders <= lim->max_headers);
	CHECK(req.minor == 0 || req.minor == 1);
	CHECK(req.method.len > 0 && inside(req.method, buf, n));
	CHECK(req.target.len > 0 && inside(req.target, buf, n));
	CHECK(inside(req.path, buf, n) && inside(req.query, buf, n) && inside(req.host, buf, n));
	CHECK(inside(req.path, req.target.p, req.target.len));
	CHECK(inside(req.query, req.target.p, req.target.len));
	for (i = 0; i < req.target.len; i++)
		CHECK((unsigned char)req.target.p[i] > 0x20 &&
		      (unsigned char)req.target.p[i] < 0x7f);
	for (i = 0; i < req.nheaders; i++) {
		const struct moat_http_header *h = &req.headers[i];
		size_t k;

		CHECK(h->name.len > 0 && inside(h->name, buf, n) && inside(h->value, buf, n));
		for (k = 0; k < h->name.len; k++)
			CHECK(is_tchar((unsigned char)h->name.p[k]));
		for (k = 0; k < h->value.len; k++) {
			unsigned char c = (unsigned char)h->value.p[k];

			CHECK(c != '\r' && c != '\n' && c != '\0' && c != 0x7f);
		}
		if (h->value.len > 0) {
			CHECK(h->value.p[0] != ' ' && h->value.p[0] != '\t');
			CHECK(h->value.p[h->value.len - 1] != ' ' &&
			      h->value.p[h->value.len - 1] != '\t');
		}
		CHECK(!(h->flags & MOAT_HDR_CONTENT_LENGTH) ==
		      !moat_slice_eq_ci(h->name, "content-length"));
		CHECK(!(h->flags & MOAT_HDR_HOST) == !moat_slice_eq_ci(h->name, "host"));
		if (moat_slice_eq_ci(h->name, "transfer-encoding") ||
		    moat_slice_eq_ci(h->name, "connection"))
			CHECK(h->flags & MOAT_HDR_HOP);
	}
	cl = moat_http_header_find(req.headers, req.nheaders, "content-length");
	te = moat_http_header_find(req.headers, req.nheaders, "transfer-encoding");
	CHECK(!(cl && te));
	switch (req.framing) {
	case MOAT_BODY_NONE:
		CHECK(!cl && !te);
		break;
	case MOAT_BODY_LENGTH:
		CHECK(cl && !te);
		break;
	case MOAT_BODY_CHUNKED:
		CHECK(te && !cl && req.minor == 1 && moat_slice_eq_ci(te->value, "chunked"));
		break;
	default:
		CHECK(0);
	}
	if (req.minor == 1)
		CHECK(moat_http_header_find(req.headers, req.nheaders, "host") != NULL);
	CHECK(req.is_head == (req.method.len == 4 && memcmp(req.method.p, "HEAD", 4) == 0));
	CHECK(req.is_connect == (req.method.len == 7 && memcmp(req.method.p, "CONNECT", 7) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t li;

	for (li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
		const struct moat_http_limits *lim = &limits[li];
		const char *err = NULL, *err2 = NULL;
		size_t cut;
		int r, r2;

		r = moat_http_parse_request(buf, size, lim, &req, &err);
		if (r == MOAT_EINVAL) {
			int st = req.error_status;

			CHECK(err != NULL);
			CHECK(st == 400 || st == 414 || st == 431 || st == 501 || st == 505 ||
			      st == 417);
		} else if (r == MOAT_EAGAIN) {
			CHECK(size < lim->max_head);
		} else {
			CHECK(r == MOAT_OK);
			check_accepted(buf, size, lim);
			r2 = moat_http_parse_request(buf, req.head_len, lim, &again, &err2);
			CHECK(r2 == MOAT_OK && again.head_len == req.head_len);
			CHECK(again.nheaders == req.nheaders && again.framing == req.framing);
		}

		/* prefix stability, at a cut that varies with the input */
		if (size == 0)
			continue;
		cut = (size_t)(hash(data, size) % size);
		r2 = moat_http_parse_request(buf, cut, lim, &again, &err2);
		if (r == MOAT_OK && cut >= req.head_len) {
			CHECK(r2 == MOAT_OK && again.head_len == req.head_len);
		} else if (r2 != MOAT_EAGAIN) {
			CHECK(r2 == r);
			CHECK(again.error_status == req.error_status);
		}
	}
	return 0;
}
