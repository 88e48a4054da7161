/*
 * An intrusive doubly-linked list with a sentinel head (as in nginx's ngx_queue_t).
 */
#ifndef MOAT_CORE_LIST_H
#define MOAT_CORE_LIST_H

#include <stddef.h>

struct moat_list {
	struct moat_list *prev, *next;
};

static inline void moat_list_init(struct moat_list *h)
{
	h->prev = h->next = h;
}

static inline int moat_list_empty(const struct moat_list *h)
{
	return h->next == h;
}

static inline void moat_list_insert_head(struct moat_list *h, struct moat_list *n)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}

static inline void moat_list_remove(struct moat_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define moat_list_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
