/*
 * A store tenant's registry: its devices (id, model, firmware, tags, state) and the
 * fingerprints of its revoked certificates, read from the store when a generation is built.
 * The handshake refuses devices the registry does not list or lists as revoked; the proxies
 * read quarantine and the device.* facts from it per request.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/devices.h"
#include "core/registry.h"

#define BLOCK_SIZE (1u << 20)

struct block {
	struct block *next;
	size_t used, cap;
	char mem[];
};

struct moat_devices_arena {
	struct block *head;
};

void moat_devices_arena_free(struct moat_devices_arena *a)
{
	if (a == NULL)
		return;
	while (a->head != NULL) {
		struct block *b = a->head;

		a->head = b->next;
		moat_free(b);
	}
	moat_free(a);
}

static void *arena_alloc(struct moat_devices_arena *a, size_t n, size_t align)
{
	struct block *b = a->head;
	size_t off;

	off = b != NULL ? (b->used + align - 1) & ~(align - 1) : 0;
	if (b == NULL || off + n > b->cap) {
		size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;

		b = moat_malloc(sizeof(*b) + cap);
		if (b == NULL)
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
		off = 0;
	}
	b->used = off + n;
	return b->mem + off;
}

static char *arena_str(struct moat_devices_arena *a, const char *s)
{
	size_t n;
	char *p;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	p = arena_alloc(a, n, 1);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

struct build {
	struct moat_devices *d;
	size_t cap, rcap;
	struct moat_stats *stats;
	const char *tenant;
};

static int add_device(void *arg, const struct moat_store_device *sd)
{
	struct build *b = arg;
	struct moat_devices *d = b->d;
	struct moat_device_entry *e;

	if (d->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		struct moat_device_entry *v = moat_realloc(d->v, cap * sizeof(*v));

		if (v == NULL)
			return MOAT_ENOMEM;
		d->v = v;
		b->cap = cap;
	}
	e = &d->v[d->n];
	memset(e, 0, sizeof(*e));
	e->id = arena_str(d->arena, sd->id);
	e->model = arena_str(d->arena, sd->model);
	e->firmware = arena_str(d->arena, sd->firmware);
	if (e->id == NULL || (sd->model && !e->model) || (sd->firmware && !e->firmware))
		return MOAT_ENOMEM;
	if (sd->tags.n > 0) {
		e->tags = arena_alloc(d->arena, sd->tags.n * sizeof(char *), sizeof(char *));
		if (e->tags == NULL)
			return MOAT_ENOMEM;
		for (size_t i = 0; i < sd->tags.n; i++)
			if ((e->tags[i] = arena_str(d->arena, sd->tags.v[i])) == NULL)
				return MOAT_ENOMEM;
		e->ntags = sd->tags.n;
	}
	e->state = sd->state;
	e->info.model = e->model;
	e->info.firmware = e->firmware;
	e->info.tags = (const char *const *)e->tags;
	e->info.ntags = e->ntags;
	if (b->stats != NULL)
		e->counters = moat_stats_device(b->stats, b->tenant, sd->id);
	d->n++;
	return 0;
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int add_revoked(void *arg, const struct moat_store_cert *c)
{
	struct build *b = arg;
	struct moat_devices *d = b->d;
	unsigned char fp[32];

	if (c->fingerprint == NULL || strlen(c->fingerprint) != 64)
		return 0; /* not a fingerprint we could ever match */
	for (size_t i = 0; i < 32; i++) {
		int hi = hex_nibble(c->fingerprint[2 * i]),
		    lo = hex_nibble(c->fingerprint[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return 0;
		fp[i] = (unsigned char)(hi << 4 | lo);
	}
	if (d->nrevoked == b->rcap) {
		size_t cap = b->rcap ? b->rcap * 2 : 64;
		unsigned char(*v)[32] = moat_realloc(d->revoked, cap * sizeof(*v));

		if (v == NULL)
			return MOAT_ENOMEM;
		d->revoked = v;
		b->rcap = cap;
	}
	memcpy(d->revoked[d->nrevoked++], fp, 32);
	return 0;
}

static int cmp_fp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct moat_device_entry *)a)->id,
	              ((const struct moat_device_entry *)b)->id);
}

int moat_devices_from_store(struct moat_store *s, const char *tenant, struct moat_stats *stats,
                            struct moat_devices **out)
{
	struct build b = {NULL, 0, 0, stats, tenant};
	int rc;

	*out = NULL;
	b.d = moat_calloc(1, sizeof(*b.d));
	if (b.d == NULL)
		return MOAT_ENOMEM;
	b.d->registry = 1;
	b.d->arena = moat_calloc(1, sizeof(*b.d->arena));
	if (b.d->arena == NULL) {
		moat_free(b.d);
		return MOAT_ENOMEM;
	}
	rc = moat_store_device_each(s, tenant, add_device, &b);
	if (rc == MOAT_OK)
		rc = moat_store_cert_each_revoked(s, tenant, add_revoked, &b);
	if (rc != MOAT_OK) {
		moat_devices_free(b.d);
		return rc;
	}
	/* The store streams in id order already, but the lookups must not depend on a
	 * backend's collation: sort with strcmp, the order bsearch uses. */
	if (b.d->n > 1)
		qsort(b.d->v, b.d->n, sizeof(*b.d->v), cmp_entry);
	if (b.d->nrevoked > 1)
		qsort(b.d->revoked, b.d->nrevoked, 32, cmp_fp);
	*out = b.d;
	return MOAT_OK;
}

int moat_devices_cert_revoked(const struct moat_devices *d, const unsigned char fp[32])
{
	return d != NULL && d->nrevoked > 0 &&
	       bsearch(fp, d->revoked, d->nrevoked, 32, cmp_fp) != NULL;
}

const char *moat_devices_refusal(const struct moat_devices *d, const char *id)
{
	const struct moat_device_entry *e;

	if (d == NULL || !d->registry)
		return NULL;
	e = moat_devices_entry(d, id);
	if (e == NULL)
		return "unknown device";
	if (e->state == MOAT_DEVICE_REVOKED)
		return "device revoked";
	return NULL;
}
