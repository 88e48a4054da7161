/*
 * The compile-time arena: bump allocation in chunks that never move, so that constants and
 * syntax trees can point at each other, all freed in one go with the ruleset or the
 * compilation. Evaluation does not use it (it has the caller's scratch).
 */
#include <string.h>

#include "core/alloc.h"
#include "rules/internal.h"

#define CHUNK_MIN 16384

struct moat_rules_chunk {
	struct moat_rules_chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char mem[];
};

void *moat_rules_arena_alloc(struct moat_rules_arena *a, size_t n)
{
	struct moat_rules_chunk *c = a->head;
	size_t need = (n + 15) & ~(size_t)15;
	void *p;

	if (need < n)
		return NULL;
	if (c == NULL || c->cap - c->used < need) {
		size_t cap = need > CHUNK_MIN ? need : CHUNK_MIN;

		if (cap > SIZE_MAX - sizeof(*c))
			return NULL;
		c = moat_malloc(sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->used = 0;
		c->cap = cap;
		/* a big one-off block goes behind the current chunk so its free space stays usable */
		if (a->head != NULL && need > CHUNK_MIN) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	p = c->mem + c->used;
	c->used += need;
	memset(p, 0, need);
	return p;
}

char *moat_rules_arena_dup(struct moat_rules_arena *a, const char *p, size_t n)
{
	char *s;

	if (n == SIZE_MAX)
		return NULL;
	s = moat_rules_arena_alloc(a, n + 1);
	if (s == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

void moat_rules_arena_free(struct moat_rules_arena *a)
{
	struct moat_rules_chunk *c = a->head, *next;

	for (; c != NULL; c = next) {
		next = c->next;
		moat_free(c);
	}
	a->head = NULL;
}
