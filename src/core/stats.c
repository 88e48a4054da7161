/*
 * Counters per tenant and per device: an open-addressing hash table of pointers to nodes, one
 * allocation each, holding the counters (at the node's start, never moved or freed before the
 * table: see stats.h) and the name. A device's node points at its tenant's node for the tenant
 * name, so a million devices of one tenant store the name once. About 100 bytes per device:
 * the node (counters 48, hash and tenant 16, the id) and 1.3 to 2.7 table slots of 8 bytes.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/stats.h"

struct node {
	struct moat_counters c;
	uint64_t hash;
	const struct node *tenant; /* a device's tenant; NULL for a tenant's own node */
	char name[]; /* the tenant's name, or the device id */
};

struct moat_stats {
	struct node **v;
	size_t cap, n; /* cap a power of two; n < cap * 3 / 4 */
};

static uint64_t hash_key(const char *tenant, const char *device)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)tenant; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","c") differs from ("a","bc") */
	for (const unsigned char *p = (const unsigned char *)(device ? device : ""); *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h ^ (device == NULL ? 0x9e3779b97f4a7c15ull : 0);
}

static const char *tenant_of(const struct node *e)
{
	return e->tenant != NULL ? e->tenant->name : e->name;
}

static int same(const struct node *e, uint64_t h, const char *tenant, const char *device)
{
	if (e->hash != h || (e->tenant == NULL) != (device == NULL) ||
	    strcmp(tenant_of(e), tenant) != 0)
		return 0;
	return device == NULL || strcmp(e->name, device) == 0;
}

/* The slot holding the key, or the empty slot where it would go. */
static struct node **slot(const struct moat_stats *s, uint64_t h, const char *tenant,
                          const char *device)
{
	size_t i = (size_t)h & (s->cap - 1);

	while (s->v[i] != NULL && !same(s->v[i], h, tenant, device))
		i = (i + 1) & (s->cap - 1);
	return &s->v[i];
}

struct moat_stats *moat_stats_new(void)
{
	struct moat_stats *s = moat_calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cap = 1024;
	s->v = moat_calloc(s->cap, sizeof(*s->v));
	if (s->v == NULL) {
		moat_free(s);
		return NULL;
	}
	return s;
}

void moat_stats_free(struct moat_stats *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->cap; i++)
		moat_free(s->v[i]);
	moat_free(s->v);
	moat_free(s);
}

static int grow(struct moat_stats *s)
{
	size_t cap = s->cap * 2;
	struct node **v = moat_calloc(cap, sizeof(*v));

	if (v == NULL)
		return -1;
	for (size_t i = 0; i < s->cap; i++) {
		size_t j;

		if (s->v[i] == NULL)
			continue;
		/* every key is distinct: the first empty slot is its place */
		for (j = (size_t)s->v[i]->hash & (cap - 1); v[j] != NULL; j = (j + 1) & (cap - 1))
			;
		v[j] = s->v[i];
	}
	moat_free(s->v);
	s->v = v;
	s->cap = cap;
	return 0;
}

static struct node *get(struct moat_stats *s, const char *tenant, const char *device)
{
	uint64_t h = hash_key(tenant, device);
	const struct node *owner = NULL;
	const char *name = device != NULL ? device : tenant;
	size_t len = strlen(name);
	struct node **e, *n;

	e = slot(s, h, tenant, device);
	if (*e != NULL)
		return *e;
	/* new: a device's node needs its tenant's; either may grow the table, moving the slot */
	if (device != NULL && (owner = get(s, tenant, NULL)) == NULL)
		return NULL;
	if ((s->n + 1) * 4 > s->cap * 3 && grow(s) < 0)
		return NULL;
	e = slot(s, h, tenant, device);
	n = moat_calloc(1, sizeof(*n) + len + 1);
	if (n == NULL)
		return NULL;
	n->hash = h;
	n->tenant = owner;
	memcpy(n->name, name, len + 1);
	*e = n;
	s->n++;
	return n;
}

struct moat_counters *moat_stats_tenant(struct moat_stats *s, const char *tenant)
{
	struct node *n = s != NULL ? get(s, tenant, NULL) : NULL;

	return n != NULL ? &n->c : NULL;
}

struct moat_counters *moat_stats_device(struct moat_stats *s, const char *tenant,
                                        const char *device)
{
	struct node *n = s != NULL && device != NULL ? get(s, tenant, device) : NULL;

	return n != NULL ? &n->c : NULL;
}

static const struct moat_counters *find(const struct moat_stats *s, const char *tenant,
                                        const char *device)
{
	const struct node *n;

	if (s == NULL)
		return NULL;
	n = *slot(s, hash_key(tenant, device), tenant, device);
	return n != NULL ? &n->c : NULL;
}

const struct moat_counters *moat_stats_find_tenant(const struct moat_stats *s, const char *tenant)
{
	return find(s, tenant, NULL);
}

const struct moat_counters *moat_stats_find_device(const struct moat_stats *s, const char *tenant,
                                                   const char *device)
{
	return device != NULL ? find(s, tenant, device) : NULL;
}

void moat_stats_each_device(const struct moat_stats *s, const char *tenant,
                            void (*fn)(void *arg, const char *device,
                                       const struct moat_counters *c),
                            void *arg)
{
	for (size_t i = 0; s != NULL && i < s->cap; i++) {
		const struct node *n = s->v[i];

		if (n != NULL && n->tenant != NULL && strcmp(n->tenant->name, tenant) == 0)
			fn(arg, n->name, &n->c);
	}
}
