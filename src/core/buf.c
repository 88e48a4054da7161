#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

/*
 * A small per-thread cache of freed buffer storage. Connections give their buffers back while
 * idle (so idle connections cost little memory) and take them again for the next request; the
 * cache turns that into a list push and pop instead of malloc/free, which for 64-96 KiB blocks
 * meant the allocator trimming and re-growing its heap (madvise) every few requests. Each
 * worker is one thread, so no lock is needed.
 */
#define CACHE_CLASSES 4
#define CACHE_DEPTH 64

struct cache_class {
	size_t cap;
	unsigned n;
	void *slot[CACHE_DEPTH];
};

static __thread struct cache_class cache[CACHE_CLASSES];

static void *storage_get(size_t cap)
{
	for (int i = 0; i < CACHE_CLASSES; i++)
		if (cache[i].cap == cap && cache[i].n > 0)
			return cache[i].slot[--cache[i].n];
	return moat_malloc(cap);
}

static void storage_put(void *p, size_t cap)
{
	int free_class = -1;

	for (int i = 0; i < CACHE_CLASSES; i++) {
		if (cache[i].cap == cap) {
			if (cache[i].n < CACHE_DEPTH) {
				cache[i].slot[cache[i].n++] = p;
				return;
			}
			moat_free(p);
			return;
		}
		if (cache[i].n == 0 && free_class < 0)
			free_class = i;
	}
	if (free_class >= 0) {
		cache[free_class].cap = cap;
		cache[free_class].slot[0] = p;
		cache[free_class].n = 1;
		return;
	}
	moat_free(p);
}

void moat_buf_cache_flush(void)
{
	for (int i = 0; i < CACHE_CLASSES; i++) {
		while (cache[i].n > 0)
			moat_free(cache[i].slot[--cache[i].n]);
		cache[i].cap = 0;
	}
}

void moat_buf_init(struct moat_buf *b, size_t cap)
{
	b->data = NULL;
	b->start = b->end = 0;
	b->cap = cap;
}

int moat_buf_prepare(struct moat_buf *b)
{
	if (b->data == NULL) {
		b->data = storage_get(b->cap);
		if (b->data == NULL)
			return MOAT_ENOMEM;
		b->start = b->end = 0;
		return MOAT_OK;
	}
	if (b->start > 0) {
		size_t n = b->end - b->start;

		memmove(b->data, b->data + b->start, n);
		b->start = 0;
		b->end = n;
	}
	return MOAT_OK;
}

void moat_buf_append(struct moat_buf *b, const void *p, size_t n)
{
	memcpy(b->data + b->end, p, n);
	b->end += n;
}

void moat_buf_consume(struct moat_buf *b, size_t n)
{
	b->start += n;
	if (b->start == b->end)
		b->start = b->end = 0;
}

int moat_buf_rewind(struct moat_buf *b, size_t n)
{
	/* consumed whole, the buffer restarted at 0; consumed in part, it still ends at n */
	if (b->data == NULL || n == 0 || n > b->cap || (b->end != 0 && b->end != n))
		return MOAT_EINVAL;
	b->start = 0;
	b->end = n;
	return MOAT_OK;
}

int moat_buf_release_if_empty(struct moat_buf *b)
{
	if (b->data == NULL || b->start != b->end)
		return 0;
	storage_put(b->data, b->cap);
	b->data = NULL;
	b->start = b->end = 0;
	return 1;
}

void moat_buf_free(struct moat_buf *b)
{
	if (b->data != NULL)
		storage_put(b->data, b->cap);
	b->data = NULL;
	b->start = b->end = 0;
}
