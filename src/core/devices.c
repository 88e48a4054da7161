#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "core/alloc.h"
#include "core/devices.h"
#include "core/registry.h"

#define MAX_DEVICES 1000000
#define MAX_TAGS 64

struct loader {
	const char *path;
	moat_config_report_fn report;
	void *arg;
	struct moat_devices *d;
	size_t cap;
	unsigned line;
	int errors;
	FILE *f;
};

static void problem(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct loader *ld, const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ld->report(ld->arg, ld->path, ld->line, msg);
	ld->errors++;
}

/* inih calls the reader once per line: counting here gives the handler its line number. */
static char *reader(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	char *r = fgets(str, num, ld->f);

	if (r != NULL)
		ld->line++;
	return r;
}

static struct moat_device_entry *current(struct loader *ld, const char *section)
{
	struct moat_devices *d = ld->d;
	struct moat_device_entry *e;

	if (d->n > 0 && strcmp(d->v[d->n - 1].id, section) == 0)
		return &d->v[d->n - 1];
	if (d->n == MAX_DEVICES)
		return NULL;
	if (d->n == ld->cap) {
		size_t ncap = ld->cap ? ld->cap * 2 : 64;
		struct moat_device_entry *nv = moat_realloc(d->v, ncap * sizeof(*nv));

		if (nv == NULL)
			return NULL;
		d->v = nv;
		ld->cap = ncap;
	}
	e = &d->v[d->n];
	memset(e, 0, sizeof(*e));
	e->id = moat_strdup(section);
	if (e->id == NULL)
		return NULL;
	d->n++;
	return e;
}

static int split_tags(struct moat_device_entry *e, const char *v)
{
	const char *p = v;

	while (*p != '\0') {
		const char *start, *end;
		char **nt;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && *p != ',')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (e->ntags == MAX_TAGS)
			return -1;
		nt = moat_realloc(e->tags, (e->ntags + 1) * sizeof(*nt));
		if (nt == NULL)
			return -1;
		e->tags = nt;
		e->tags[e->ntags] = moat_strndup(start, (size_t)(end - start));
		if (e->tags[e->ntags] == NULL)
			return -1;
		e->ntags++;
	}
	return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;
	struct moat_device_entry *e;
	char **field = NULL;

	if (section[0] == '\0') {
		problem(ld, "\"%s\" outside a [device-id] section", name);
		return 1;
	}
	e = current(ld, section);
	if (e == NULL) {
		problem(ld, "too many devices or out of memory at [%s]", section);
		return 1;
	}
	if (strcmp(name, "model") == 0)
		field = &e->model;
	else if (strcmp(name, "firmware") == 0)
		field = &e->firmware;
	else if (strcmp(name, "tags") == 0) {
		if (split_tags(e, value) < 0)
			problem(ld, "tags: at most 64 tags per device (device %s)", section);
		return 1;
	} else {
		problem(ld, "unknown key \"%s\": use model, firmware or tags", name);
		return 1;
	}
	if (*field != NULL) {
		problem(ld, "\"%s\" given twice for this device", name);
		return 1;
	}
	*field = moat_strdup(value);
	return 1;
}

static int by_id(const void *a, const void *b)
{
	return strcmp(((const struct moat_device_entry *)a)->id,
	              ((const struct moat_device_entry *)b)->id);
}

int moat_devices_load(const char *path, moat_config_report_fn report, void *arg,
                      struct moat_devices **out)
{
	struct loader ld = {path, report, arg, NULL, 0, 0, 0, NULL};
	int rc;

	*out = NULL;
	ld.d = moat_calloc(1, sizeof(*ld.d));
	if (ld.d != NULL)
		atomic_init(&ld.d->refs, 1);
	if (ld.d == NULL)
		return MOAT_ENOMEM;
	ld.f = fopen(path, "r");
	if (ld.f == NULL) {
		char msg[300];

		snprintf(msg, sizeof(msg), "devices: cannot read %s: %s", path, strerror(errno));
		report(arg, path, 0, msg);
		moat_devices_free(ld.d);
		return MOAT_EIO;
	}
	rc = ini_parse_stream(reader, &ld, handler, &ld);
	fclose(ld.f);
	if (rc > 0) {
		ld.line = (unsigned)rc;
		problem(&ld, "%s", "syntax error: expected [device-id] or key = value");
	}
	if (ld.d->n > 1) {
		qsort(ld.d->v, ld.d->n, sizeof(ld.d->v[0]), by_id);
		for (size_t i = 1; i < ld.d->n; i++)
			if (strcmp(ld.d->v[i - 1].id, ld.d->v[i].id) == 0) {
				ld.line = 0;
				problem(&ld, "device %s is declared in two sections",
				        ld.d->v[i].id);
			}
	}
	if (ld.errors > 0 || rc < 0) {
		moat_devices_free(ld.d);
		return MOAT_EINVAL;
	}
	for (size_t i = 0; i < ld.d->n; i++) {
		struct moat_device_entry *e = &ld.d->v[i];

		e->info.model = e->model;
		e->info.firmware = e->firmware;
		e->info.tags = (const char *const *)e->tags;
		e->info.ntags = e->ntags;
	}
	*out = ld.d;
	return MOAT_OK;
}

void moat_devices_free(struct moat_devices *d)
{
	if (d == NULL || atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) != 1)
		return;
	moat_devices_free(d->base);
	if (d->arena != NULL) {
		moat_devices_arena_free(d->arena);
		moat_free(d->v);
		moat_free(d->revoked);
		moat_free(d);
		return;
	}
	for (size_t i = 0; i < d->n; i++) {
		struct moat_device_entry *e = &d->v[i];

		moat_free(e->id);
		moat_free(e->model);
		moat_free(e->firmware);
		for (size_t j = 0; j < e->ntags; j++)
			moat_free(e->tags[j]);
		moat_free(e->tags);
	}
	moat_free(d->v);
	moat_free(d->revoked); /* a registry that failed before its arena existed */
	moat_free(d);
}

static const struct moat_device_entry *search(const struct moat_devices *d, const char *id)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(d->v[mid].id, id);

		if (c == 0)
			return &d->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct moat_device_entry *moat_devices_entry(const struct moat_devices *d, const char *id)
{
	const struct moat_device_entry *e;

	if (d == NULL || id == NULL || id[0] == '\0')
		return NULL;
	e = search(d, id);
	if (e != NULL)
		return e->gone ? NULL : e;
	return d->base != NULL ? search(d->base, id) : NULL;
}

const struct moat_device_info *moat_devices_find(const struct moat_devices *d, const char *id)
{
	const struct moat_device_entry *e = moat_devices_entry(d, id);

	return e != NULL ? &e->info : NULL;
}
