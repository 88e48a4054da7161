/*
 * Counters per tenant and per device: an open-addressing hash table from "tenant\0device" to a
 * counters object allocated once and never moved or freed before the table (see stats.h).
 */
#include <string.h>

#include "core/alloc.h"
#include "core/stats.h"

struct entry {
	char *tenant; /* owned */
	char *device; /* owned; NULL for the tenant's own counters */
	uint64_t hash;
	struct moat_counters *c;
};

struct moat_stats {
	struct entry *v;
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

static int same(const struct entry *e, uint64_t h, const char *tenant, const char *device)
{
	if (e->hash != h || strcmp(e->tenant, tenant) != 0)
		return 0;
	if (e->device == NULL || device == NULL)
		return e->device == device;
	return strcmp(e->device, device) == 0;
}

static struct entry *slot(const struct moat_stats *s, uint64_t h, const char *tenant,
                          const char *device)
{
	size_t i = (size_t)h & (s->cap - 1);

	while (s->v[i].tenant != NULL && !same(&s->v[i], h, tenant, device))
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
	for (size_t i = 0; i < s->cap; i++) {
		moat_free(s->v[i].tenant);
		moat_free(s->v[i].device);
		moat_free(s->v[i].c);
	}
	moat_free(s->v);
	moat_free(s);
}

static int grow(struct moat_stats *s)
{
	struct moat_stats bigger = {moat_calloc(s->cap * 2, sizeof(*s->v)), s->cap * 2, s->n};

	if (bigger.v == NULL)
		return -1;
	for (size_t i = 0; i < s->cap; i++)
		if (s->v[i].tenant != NULL)
			*slot(&bigger, s->v[i].hash, s->v[i].tenant, s->v[i].device) = s->v[i];
	moat_free(s->v);
	*s = bigger;
	return 0;
}

static struct moat_counters *get(struct moat_stats *s, const char *tenant, const char *device)
{
	uint64_t h = hash_key(tenant, device);
	struct entry *e;

	if ((s->n + 1) * 4 > s->cap * 3 && grow(s) < 0)
		return NULL;
	e = slot(s, h, tenant, device);
	if (e->tenant != NULL)
		return e->c;
	e->c = moat_calloc(1, sizeof(*e->c));
	e->tenant = moat_strdup(tenant);
	e->device = device != NULL ? moat_strdup(device) : NULL;
	if (e->c == NULL || e->tenant == NULL || (device != NULL && e->device == NULL)) {
		moat_free(e->c);
		moat_free(e->tenant);
		moat_free(e->device);
		memset(e, 0, sizeof(*e));
		return NULL;
	}
	e->hash = h;
	s->n++;
	return e->c;
}

struct moat_counters *moat_stats_tenant(struct moat_stats *s, const char *tenant)
{
	return s != NULL ? get(s, tenant, NULL) : NULL;
}

struct moat_counters *moat_stats_device(struct moat_stats *s, const char *tenant,
                                        const char *device)
{
	return s != NULL && device != NULL ? get(s, tenant, device) : NULL;
}

static const struct moat_counters *find(const struct moat_stats *s, const char *tenant,
                                        const char *device)
{
	const struct entry *e;

	if (s == NULL)
		return NULL;
	e = slot(s, hash_key(tenant, device), tenant, device);
	return e->tenant != NULL ? e->c : NULL;
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
	for (size_t i = 0; s != NULL && i < s->cap; i++)
		if (s->v[i].tenant != NULL && s->v[i].device != NULL &&
		    strcmp(s->v[i].tenant, tenant) == 0)
			fn(arg, s->v[i].device, s->v[i].c);
}
