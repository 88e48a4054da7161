#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Failure injection: the allocation numbered fail_at (counting from 1) and every later one
 * fails. Off (0) unless a test asks for it; the fast path is one relaxed load. */
static atomic_ulong fail_at;
static atomic_ulong count;

void moat_alloc_init(void)
{
	const char *s = getenv("MOAT_ALLOC_FAIL_AT");
	unsigned long v = 0;

	if (s == NULL)
		return;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (unsigned long)(*s - '0');
	atomic_store(&fail_at, v);
}

static int should_fail(void)
{
	unsigned long at = atomic_load_explicit(&fail_at, memory_order_relaxed);

	if (at == 0)
		return 0;
	return atomic_fetch_add(&count, 1) + 1 >= at;
}

void *moat_malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *moat_calloc(size_t count_, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(count_ ? count_ : 1, size ? size : 1);
}

void *moat_realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

void moat_free(void *p)
{
	free(p);
}

char *moat_strndup(const char *s, size_t n)
{
	char *d = moat_malloc(n + 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *moat_strdup(const char *s)
{
	return moat_strndup(s, strlen(s));
}
