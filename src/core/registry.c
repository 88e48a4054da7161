/*
 * A store tenant's registry: its devices (id, model, firmware, tags, state) and the
 * fingerprints of its revoked certificates, read from the store when a generation is built.
 * The handshake refuses devices the registry does not list or lists as revoked; the proxies
 * read quarantine and the device.* facts from it per request.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/devices.h"
#include "core/registry.h"

#define BLOCK_SIZE (1u << 20)
#define PATCH_BLOCK_SIZE 4096
#define MAX_PATCHES 64 /* merged overlays; then a full read compacts the chain of arenas */
#define MAX_OVERLAY 4096 /* changed devices kept beside the base before they are merged */

struct block {
	struct block *next;
	size_t used, cap;
	char mem[];
};

/* Reference-counted: a patched registry keeps the strings of the one it was made from
 * through `parent`, and adds its own. */
struct moat_devices_arena {
	atomic_uint refs;
	size_t block_size;
	struct block *head;
	struct moat_devices_arena *parent;
};

static struct moat_devices_arena *arena_new(size_t block_size, struct moat_devices_arena *parent)
{
	struct moat_devices_arena *a = moat_calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	atomic_init(&a->refs, 1);
	a->block_size = block_size;
	if (parent != NULL) {
		atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
		a->parent = parent;
	}
	return a;
}

void moat_devices_arena_free(struct moat_devices_arena *a)
{
	while (a != NULL && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
		struct moat_devices_arena *parent = a->parent;

		while (a->head != NULL) {
			struct block *b = a->head;

			a->head = b->next;
			moat_free(b);
		}
		moat_free(a);
		a = parent;
	}
}

static void *arena_alloc(struct moat_devices_arena *a, size_t n, size_t align)
{
	struct block *b = a->head;
	size_t off;

	off = b != NULL ? (b->used + align - 1) & ~(align - 1) : 0;
	if (b == NULL || off + n > b->cap) {
		size_t cap = n > a->block_size ? n : a->block_size;

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

static int fill_entry(struct moat_device_entry *e, struct moat_devices *d,
                      const struct moat_store_device *sd, struct moat_stats *stats,
                      const char *tenant);

static int add_device(void *arg, const struct moat_store_device *sd)
{
	struct build *b = arg;
	struct moat_devices *d = b->d;
	int rc;

	if (d->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		struct moat_device_entry *v = moat_realloc(d->v, cap * sizeof(*v));

		if (v == NULL)
			return MOAT_ENOMEM;
		d->v = v;
		b->cap = cap;
	}
	rc = fill_entry(&d->v[d->n], d, sd, b->stats, b->tenant);
	if (rc == 0)
		d->n++;
	return rc;
}

/* One device's entry, its strings in d's arena. */
static int fill_entry(struct moat_device_entry *e, struct moat_devices *d,
                      const struct moat_store_device *sd, struct moat_stats *stats,
                      const char *tenant)
{
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
	if (stats != NULL)
		e->counters = moat_stats_device(stats, tenant, sd->id);
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
	atomic_init(&b.d->refs, 1);
	b.d->registry = 1;
	b.d->arena = arena_new(BLOCK_SIZE, NULL);
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

/* The first entry at or after `from` whose id is not below id. */
static size_t lower_bound(const struct moat_devices *d, size_t from, const char *id)
{
	size_t lo = from, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(d->v[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A copy of an entry with its strings in d's arena. */
static int copy_entry(struct moat_device_entry *to, struct moat_devices *d,
                      const struct moat_device_entry *from)
{
	*to = *from;
	to->id = arena_str(d->arena, from->id);
	to->model = arena_str(d->arena, from->model);
	to->firmware = arena_str(d->arena, from->firmware);
	to->tags = NULL;
	if (to->id == NULL || (from->model && !to->model) || (from->firmware && !to->firmware))
		return MOAT_ENOMEM;
	if (from->ntags > 0) {
		to->tags = arena_alloc(d->arena, from->ntags * sizeof(char *), sizeof(char *));
		if (to->tags == NULL)
			return MOAT_ENOMEM;
		for (size_t i = 0; i < from->ntags; i++)
			if ((to->tags[i] = arena_str(d->arena, from->tags[i])) == NULL)
				return MOAT_ENOMEM;
	}
	to->info.model = to->model;
	to->info.firmware = to->firmware;
	to->info.tags = (const char *const *)to->tags;
	return MOAT_OK;
}

/* The device as the store has it now: an entry, or a "gone" marker. */
static int fetch_entry(struct moat_device_entry *e, struct build *b, struct moat_store *s,
                       const char *id)
{
	struct moat_store_device sd;
	int rc;

	memset(&sd, 0, sizeof(sd));
	rc = moat_store_device_get(s, b->tenant, id, &sd);
	if (rc == MOAT_OK) {
		rc = fill_entry(e, b->d, &sd, b->stats, b->tenant);
	} else if (rc == MOAT_ENOTFOUND) {
		memset(e, 0, sizeof(*e));
		e->gone = 1;
		e->id = arena_str(b->d->arena, id);
		rc = e->id != NULL ? MOAT_OK : MOAT_ENOMEM;
	}
	moat_store_device_clear(&sd);
	return rc;
}

static int add_revoked_of(struct build *b, struct moat_store *s, const char *id)
{
	struct moat_store_cert *certs = NULL;
	size_t ncerts = 0;
	int rc = moat_store_cert_list(s, b->tenant, id, &certs, &ncerts);

	for (size_t c = 0; rc == MOAT_OK && c < ncerts; c++)
		if (certs[c].revoked_at != 0)
			rc = add_revoked(b, &certs[c]);
	moat_store_certs_free(certs, ncerts);
	return rc;
}

/* A full registry from a base and its overlay: the overlay's strings are copied into the
 * new registry's arena, the base's stay in the base's (kept through the arena's parent). */
static int merge_overlay(const struct moat_devices *o, struct moat_devices **out)
{
	const struct moat_devices *base = o->base;
	struct moat_devices *m = moat_calloc(1, sizeof(*m));
	size_t i = 0, j = 0;

	*out = NULL;
	if (m == NULL)
		return MOAT_ENOMEM;
	atomic_init(&m->refs, 1);
	m->registry = 1;
	m->patches = base->patches + 1;
	m->arena = arena_new(PATCH_BLOCK_SIZE, base->arena);
	m->v = moat_malloc((base->n + o->n + 1) * sizeof(*m->v));
	m->revoked = o->nrevoked ? moat_malloc(o->nrevoked * 32) : NULL;
	if (m->arena == NULL || m->v == NULL || (o->nrevoked && m->revoked == NULL)) {
		moat_devices_free(m);
		return MOAT_ENOMEM;
	}
	if (o->nrevoked)
		memcpy(m->revoked, o->revoked, o->nrevoked * 32);
	m->nrevoked = o->nrevoked;
	for (size_t k = 0; k < o->n; k++) {
		size_t pos = lower_bound(base, i, o->v[k].id);

		memcpy(&m->v[j], &base->v[i], (pos - i) * sizeof(*m->v));
		j += pos - i;
		i = pos;
		if (i < base->n && strcmp(base->v[i].id, o->v[k].id) == 0)
			i++;
		if (o->v[k].gone)
			continue;
		if (copy_entry(&m->v[j], m, &o->v[k]) != MOAT_OK) {
			moat_devices_free(m);
			return MOAT_ENOMEM;
		}
		j++;
	}
	memcpy(&m->v[j], &base->v[i], (base->n - i) * sizeof(*m->v));
	m->n = j + base->n - i;
	*out = m;
	return MOAT_OK;
}

int moat_devices_patch(const struct moat_devices *old, struct moat_store *s, const char *tenant,
                       struct moat_stats *stats, const char *const *ids, size_t nids,
                       struct moat_devices **out)
{
	struct build b = {NULL, 0, 0, stats, tenant};
	struct moat_devices *base;
	const struct moat_devices *prev_overlay;
	const char **sorted = NULL;
	size_t i = 0, k;
	int rc = MOAT_ENOMEM;

	*out = NULL;
	if (old == NULL || !old->registry || old->arena == NULL)
		return MOAT_ETOOBIG;
	base = old->base != NULL ? old->base : (struct moat_devices *)old;
	prev_overlay = old->base != NULL ? old : NULL;
	if (base->patches >= MAX_PATCHES)
		return MOAT_ETOOBIG;
	b.d = moat_calloc(1, sizeof(*b.d));
	sorted = moat_calloc(nids + 1, sizeof(*sorted));
	if (b.d == NULL || sorted == NULL)
		goto fail;
	atomic_init(&b.d->refs, 1);
	b.d->registry = 1;
	atomic_fetch_add_explicit(&base->refs, 1, memory_order_relaxed);
	b.d->base = base;
	b.d->arena = arena_new(PATCH_BLOCK_SIZE, NULL);
	b.cap = (prev_overlay ? prev_overlay->n : 0) + nids;
	b.d->v = moat_malloc((b.cap + 1) * sizeof(*b.d->v));
	b.rcap = old->nrevoked;
	b.d->revoked = old->nrevoked ? moat_malloc(old->nrevoked * 32) : NULL;
	if (b.d->arena == NULL || b.d->v == NULL || (old->nrevoked && b.d->revoked == NULL))
		goto fail;
	if (old->nrevoked > 0)
		memcpy(b.d->revoked, old->revoked, old->nrevoked * 32);
	b.d->nrevoked = old->nrevoked;
	memcpy(sorted, ids, nids * sizeof(*sorted));
	qsort(sorted, nids, sizeof(*sorted), cmp_str);
	/* the new overlay: the previous overlay's entries merged with the changed devices,
	 * every string copied into the new (small) arena */
	for (k = 0; k <= nids; k++) {
		size_t pn = prev_overlay ? prev_overlay->n : 0;

		if (k > 0 && k < nids && strcmp(sorted[k], sorted[k - 1]) == 0)
			continue;
		while (i < pn && (k == nids || strcmp(prev_overlay->v[i].id, sorted[k]) < 0)) {
			rc = copy_entry(&b.d->v[b.d->n], b.d, &prev_overlay->v[i++]);
			if (rc != MOAT_OK)
				goto fail;
			b.d->n++;
		}
		if (k == nids)
			break;
		if (i < pn && strcmp(prev_overlay->v[i].id, sorted[k]) == 0)
			i++; /* read again below */
		rc = fetch_entry(&b.d->v[b.d->n], &b, s, sorted[k]);
		if (rc == MOAT_OK)
			rc = add_revoked_of(&b, s, sorted[k]);
		if (rc != MOAT_OK)
			goto fail;
		b.d->n++;
	}
	if (b.d->nrevoked > 1) { /* sorted, without the duplicates a re-read may add */
		size_t w = 1;

		qsort(b.d->revoked, b.d->nrevoked, 32, cmp_fp);
		for (size_t r = 1; r < b.d->nrevoked; r++)
			if (memcmp(b.d->revoked[r], b.d->revoked[w - 1], 32) != 0)
				memmove(b.d->revoked[w++], b.d->revoked[r], 32);
		b.d->nrevoked = w;
	}
	moat_free(sorted);
	if (b.d->n > MAX_OVERLAY) { /* lookups would pay for it: fold it into a new base */
		rc = merge_overlay(b.d, out);
		moat_devices_free(b.d);
		return rc;
	}
	*out = b.d;
	return MOAT_OK;
fail:
	moat_free(sorted);
	moat_devices_free(b.d);
	return rc == MOAT_OK ? MOAT_ENOMEM : rc;
}
