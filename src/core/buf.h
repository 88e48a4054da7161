/*
 * A bounded byte buffer with a read position: bytes are appended at `end` and consumed from
 * `start`. The capacity is fixed at creation: a full buffer is the back-pressure signal, never a
 * reason to grow. Storage is allocated on first use and can be released while empty, so idle
 * connections hold no buffer memory.
 */
#ifndef MOAT_CORE_BUF_H
#define MOAT_CORE_BUF_H

#include <stddef.h>

#include "core/common.h"

struct moat_buf {
	char *data; /* NULL until needed */
	size_t start; /* first unconsumed byte */
	size_t end; /* one past the last byte */
	size_t cap;
};

static inline size_t moat_buf_len(const struct moat_buf *b)
{
	return b->end - b->start;
}

static inline const char *moat_buf_head(const struct moat_buf *b)
{
	return b->data + b->start;
}

/* Space left at the tail after compacting. */
static inline size_t moat_buf_room(const struct moat_buf *b)
{
	return b->cap - moat_buf_len(b);
}

void moat_buf_init(struct moat_buf *b, size_t cap);

/* Allocates storage if needed and moves unconsumed bytes to the front, so that
 * moat_buf_room() bytes are writable at moat_buf_tail(). MOAT_ENOMEM on failure. */
int moat_buf_prepare(struct moat_buf *b) MOAT_WUR;

static inline char *moat_buf_tail(struct moat_buf *b)
{
	return b->data + b->end;
}

/* Appends n bytes (n <= moat_buf_room, after moat_buf_prepare). */
void moat_buf_append(struct moat_buf *b, const void *p, size_t n);

/* Consumes n bytes from the front; an emptied buffer restarts at offset 0. */
void moat_buf_consume(struct moat_buf *b, size_t n);

/*
 * Makes the first n bytes of storage readable again: for a buffer filled from empty with
 * exactly n bytes and consumed since, nothing appended (what was sent can be sent again).
 * MOAT_EINVAL when the buffer is not in that state.
 */
int moat_buf_rewind(struct moat_buf *b, size_t n) MOAT_WUR;

/* Frees storage if the buffer is empty; returns 1 if released. */
int moat_buf_release_if_empty(struct moat_buf *b);

/* Releases storage (to the calling thread's cache of recently freed buffers). */
void moat_buf_free(struct moat_buf *b);

/* Frees the calling thread's cache of buffer storage (a worker about to exit). */
void moat_buf_cache_flush(void);

#endif
