/*
 * Fuzz driver for moat_http_chunked_decode (src/http/chunked.c).
 *
 * The input is a chunked message body. It is decoded three ways: whole, split in two at a
 * point that varies with the input, and (for small inputs) one byte at a time. The driver
 * aborts unless all three give the same result, the same data and, when the body is complete,
 * the same number of bytes consumed; and unless every call respects its contract (data runs
 * inside the input, *consumed within it, EAGAIN only when everything was consumed).
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

#define MAX_LINE 64
#define MAX_TRAILER 256
#define BYTEWISE_MAX 4096

struct run {
	int rc; /* 1, MOAT_EAGAIN or MOAT_EINVAL */
	size_t consumed; /* bytes consumed in all */
	char *out; /* decoded data */
	size_t out_len;
};

/* Feeds in[from..to) until it is used up or the body ends or fails. */
static void feed(struct moat_http_chunked *c, const char *in, size_t from, size_t to, struct run *r)
{
	while (r->rc == MOAT_EAGAIN && from < to) {
		struct moat_slice data;
		const char *err = NULL;
		size_t used = (size_t)-1;
		int rc;

		rc = moat_http_chunked_decode(c, in + from, to - from, &used, &data, &err);
		if (rc == MOAT_EINVAL) {
			CHECK(err != NULL);
			r->rc = rc;
			return;
		}
		CHECK(used <= to - from);
		if (rc == 1) {
			r->rc = 1;
			r->consumed += used;
			return;
		}
		if (rc == MOAT_EAGAIN) {
			CHECK(used == to - from && data.len == 0);
			r->consumed += used;
			return;
		}
		CHECK(rc == MOAT_OK);
		CHECK(data.len > 0 && data.p >= in + from && data.p + data.len <= in + from + used);
		/* data runs are the last thing a call consumes */
		CHECK(data.p + data.len == in + from + used);
		memcpy(r->out + r->out_len, data.p, data.len);
		r->out_len += data.len;
		r->consumed += used;
		from += used;
	}
}

static void run_init(struct run *r, size_t size)
{
	r->rc = MOAT_EAGAIN;
	r->consumed = 0;
	r->out_len = 0;
	r->out = malloc(size + 1);
	CHECK(r->out != NULL);
}

static void same(const struct run *a, const struct run *b)
{
	CHECK(a->rc == b->rc);
	CHECK(a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0);
	if (a->rc != MOAT_EINVAL)
		CHECK(a->consumed == b->consumed);
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
	const char *in = (const char *)data;
	struct moat_http_chunked c;
	struct run whole, split, bytewise;
	size_t cut = size ? (size_t)(hash(data, size) % (size + 1)) : 0, i;

	run_init(&whole, size);
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	feed(&c, in, 0, size, &whole);
	CHECK(whole.out_len <= size && whole.consumed <= size);
	if (whole.rc == MOAT_EAGAIN)
		CHECK(whole.consumed == size);

	run_init(&split, size);
	moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
	feed(&c, in, 0, cut, &split);
	feed(&c, in, cut, size, &split);
	same(&whole, &split);

	if (size <= BYTEWISE_MAX) {
		run_init(&bytewise, size);
		moat_http_chunked_init(&c, MAX_LINE, MAX_TRAILER);
		for (i = 0; i < size && bytewise.rc == MOAT_EAGAIN; i++)
			feed(&c, in, i, i + 1, &bytewise);
		same(&whole, &bytewise);
		free(bytewise.out);
	}

	free(whole.out);
	free(split.out);
	return 0;
}
