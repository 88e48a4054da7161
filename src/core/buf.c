#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

void moat_buf_init(struct moat_buf *b, size_t cap)
{
	b->data = NULL;
	b->start = b->end = 0;
	b->cap = cap;
}

int moat_buf_prepare(struct moat_buf *b)
{
	if (b->data == NULL) {
		b->data = moat_malloc(b->cap);
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

int moat_buf_release_if_empty(struct moat_buf *b)
{
	if (b->data == NULL || b->start != b->end)
		return 0;
	moat_free(b->data);
	b->data = NULL;
	b->start = b->end = 0;
	return 1;
}

void moat_buf_free(struct moat_buf *b)
{
	moat_free(b->data);
	b->data = NULL;
	b->start = b->end = 0;
}
