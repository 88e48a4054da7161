/*
 * What moatctl prints: aligned tables, "key: value" lines, and --json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moatctl.h"

void ctl_print_json(const json_t *v)
{
	/* Order of the members as the API sent them (jansson keeps insertion order). */
	if (v != NULL && json_dumpf(v, stdout, JSON_INDENT(2)) == 0)
		fputc('\n', stdout);
}

const char *ctl_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* ---- one value -------------------------------------------------------------------------- */

static int digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
	}
	return 1;
}

/* "2026-11-23T18:04:00Z" (seconds fraction allowed) → "2026-11-23 18:04"; else NULL. */
static char *short_time(const char *s)
{
	size_t n = strlen(s);
	char *out;

	if (n < 20 || s[n - 1] != 'Z' || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) ||
	    s[7] != '-' || !digits(s + 8, 2) || s[10] != 'T' || !digits(s + 11, 2) ||
	    s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
		return NULL;
	if (n > 20 && (s[19] != '.' || !digits(s + 20, n - 21)))
		return NULL;
	out = ctl_malloc(17);
	memcpy(out, s, 16);
	out[10] = ' ';
	out[16] = '\0';
	return out;
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static char *format_string(const char *s)
{
	char *t;
	size_t certs;

	if (strncmp(s, "-----BEGIN ", 11) == 0) {
		/* PEM is for files, not for a terminal: --json shows it whole. */
		certs = count(s, "-----BEGIN CERTIFICATE-----");
		if (certs == 0)
			return ctl_strdup("(PEM)");
		return ctl_printf("(PEM, %zu certificate%s)", certs, certs == 1 ? "" : "s");
	}
	t = short_time(s);
	return t ? t : ctl_strdup(s);
}

/* Appends piece to *out (malloc'd), with sep between pieces. */
static void append(char **out, const char *sep, const char *piece)
{
	char *next = *out ? ctl_printf("%s%s%s", *out, sep, piece) : ctl_strdup(piece);

	ctl_free(*out);
	*out = next;
}

static char *format_array(const json_t *v)
{
	char *out = NULL;
	size_t i;
	const json_t *e;

	if (json_array_size(v) == 0)
		return ctl_strdup("-");
	json_array_foreach (v, i, e) {
		char *piece;

		if (json_is_object(e) || json_is_array(e)) {
			ctl_free(out);
			return ctl_printf("(%zu items)", json_array_size(v));
		}
		piece = ctl_format(e);
		append(&out, ",", piece);
		ctl_free(piece);
	}
	return out;
}

static char *format_object(const json_t *v)
{
	char *out = NULL;
	const char *k;
	const json_t *e;

	json_object_foreach ((json_t *)v, k, e) {
		char *val = ctl_format(e);
		char *piece = ctl_printf("%s=%s", k, val);

		append(&out, " ", piece);
		ctl_free(piece);
		ctl_free(val);
	}
	return out ? out : ctl_strdup("-");
}

char *ctl_format(const json_t *v)
{
	if (v == NULL || json_is_null(v))
		return ctl_strdup("-");
	if (json_is_true(v))
		return ctl_strdup("yes");
	if (json_is_false(v))
		return ctl_strdup("no");
	if (json_is_integer(v))
		return ctl_printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	if (json_is_real(v))
		return ctl_printf("%g", json_real_value(v));
	if (json_is_string(v))
		return format_string(json_string_value(v));
	if (json_is_array(v))
		return format_array(v);
	return format_object(v);
}

/* Columns count characters, not bytes: UTF-8 continuation bytes take no room. */
static size_t display_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	}
	return w;
}

/*
 * Text from the server goes to a terminal: control characters (escape sequences) become '?'.
 * A table cell is one line, so there newlines and tabs become spaces; a key: value line keeps
 * its newlines (a multi-line rule expression).
 */
static char *printable(char *s, int keep_newlines)
{
	for (char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\n' && keep_newlines)
			continue;
		if (c == '\n' || c == '\t' || c == '\r')
			*p = ' ';
		else if (c < 0x20 || c == 0x7f)
			*p = '?';
	}
	return s;
}

static char *one_line(char *s)
{
	return printable(s, 0);
}

char *ctl_clean(const char *s)
{
	return one_line(ctl_strdup(s ? s : "-"));
}

/* ---- tables ------------------------------------------------------------------------------- */

struct ctl_table {
	size_t ncols;
	size_t nrows;
	size_t ncells; /* cells filled so far, row by row */
	char **cells; /* headers first, then nrows * ncols */
	size_t cap;
};

static void table_push(struct ctl_table *t, char *cell)
{
	if (t->ncells == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->cells = ctl_realloc(t->cells, t->cap * sizeof(char *));
	}
	t->cells[t->ncells++] = cell;
}

/* Pads the row being filled, so that a row with missing cells still lines up. */
static void table_finish_row(struct ctl_table *t)
{
	while (t->ncells < (t->nrows + 1) * t->ncols)
		table_push(t, ctl_strdup("-"));
}

/* Starts a row; cells fill it left to right. */
static void table_row(struct ctl_table *t)
{
	if (t->nrows > 0)
		table_finish_row(t);
	t->nrows++;
}

/* Prints (an empty table prints "(none)" on stderr and nothing on stdout) and frees. */
static void table_print(struct ctl_table *t)
{
	size_t *width = ctl_malloc(t->ncols * sizeof(size_t));

	if (t->nrows > 0)
		table_finish_row(t);
	if (t->nrows == 0)
		fputs("(none)\n", stderr);
	for (size_t c = 0; c < t->ncols; c++) {
		width[c] = 0;
		for (size_t r = 0; r <= t->nrows; r++) {
			size_t w = display_width(t->cells[r * t->ncols + c]);

			if (w > width[c])
				width[c] = w;
		}
	}
	for (size_t r = 0; t->nrows > 0 && r <= t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			fputs(cell, stdout);
			if (c + 1 == t->ncols)
				break; /* no trailing spaces */
			for (size_t w = display_width(cell); w < width[c] + 2; w++)
				fputc(' ', stdout);
		}
		fputc('\n', stdout);
	}
	for (size_t i = 0; i < t->ncells; i++)
		ctl_free(t->cells[i]);
	ctl_free(t->cells);
	ctl_free(width);
	ctl_free(t);
}

void ctl_print_items(const json_t *items, const struct ctl_column *cols)
{
	struct ctl_table *t = ctl_malloc(sizeof(*t));
	const struct ctl_column *c;
	const json_t *item;
	size_t i;

	memset(t, 0, sizeof(*t));
	for (c = cols; c->header != NULL; c++, t->ncols++)
		table_push(t, ctl_strdup(c->header));
	json_array_foreach (items, i, item) {
		table_row(t);
		for (c = cols; c->header != NULL; c++) {
			const json_t *from = c->in != NULL ? json_object_get(item, c->in) : item;

			table_push(t, one_line(ctl_format(json_object_get(from, c->key))));
		}
	}
	table_print(t);
}

/* ---- key: value -------------------------------------------------------------------------- */

struct ctl_kv {
	size_t n, cap;
	char **keys;
	char **values;
};

struct ctl_kv *ctl_kv_new(void)
{
	struct ctl_kv *kv = ctl_malloc(sizeof(*kv));

	memset(kv, 0, sizeof(*kv));
	return kv;
}

static void kv_push(struct ctl_kv *kv, const char *key, char *value)
{
	if (kv->n == kv->cap) {
		kv->cap = kv->cap ? kv->cap * 2 : 16;
		kv->keys = ctl_realloc(kv->keys, kv->cap * sizeof(char *));
		kv->values = ctl_realloc(kv->values, kv->cap * sizeof(char *));
	}
	kv->keys[kv->n] = one_line(ctl_strdup(key));
	kv->values[kv->n] = value;
	kv->n++;
}

void ctl_kv_text(struct ctl_kv *kv, const char *key, const char *text)
{
	kv_push(kv, key, printable(ctl_strdup(text && text[0] ? text : "-"), 1));
}

void ctl_kv_value(struct ctl_kv *kv, const char *key, const json_t *v)
{
	kv_push(kv, key, printable(ctl_format(v), 1));
}

static int skipped(const char *key, const char *const *skip)
{
	for (; skip != NULL && *skip != NULL; skip++) {
		if (strcmp(key, *skip) == 0)
			return 1;
	}
	return 0;
}

static int is_array_of_objects(const json_t *v)
{
	return json_is_array(v) && json_array_size(v) > 0 && json_is_object(json_array_get(v, 0));
}

void ctl_kv_object(struct ctl_kv *kv, const json_t *obj, const char *const *skip)
{
	const char *k;
	const json_t *v;

	json_object_foreach ((json_t *)obj, k, v) {
		if (!skipped(k, skip) && !is_array_of_objects(v))
			ctl_kv_value(kv, k, v);
	}
}

void ctl_kv_print(struct ctl_kv *kv)
{
	size_t width = 0;

	for (size_t i = 0; i < kv->n; i++) {
		size_t w = display_width(kv->keys[i]);

		if (w > width)
			width = w;
	}
	for (size_t i = 0; i < kv->n; i++) {
		const char *v = kv->values[i];

		fprintf(stdout, "%s:", kv->keys[i]);
		for (size_t w = display_width(kv->keys[i]); w < width + 1; w++)
			fputc(' ', stdout);
		/* Lines after the first (a multi-line rule expression) start under the value. */
		for (const char *nl; (nl = strchr(v, '\n')) != NULL; v = nl + 1) {
			fprintf(stdout, "%.*s\n%*s", (int)(nl - v), v, (int)width + 2, "");
		}
		fprintf(stdout, "%s\n", v);
		ctl_free(kv->keys[i]);
		ctl_free(kv->values[i]);
	}
	ctl_free(kv->keys);
	ctl_free(kv->values);
	ctl_free(kv);
}

void ctl_print_object(const json_t *obj, const char *const *skip)
{
	struct ctl_kv *kv = ctl_kv_new();

	ctl_kv_object(kv, obj, skip);
	ctl_kv_print(kv);
}
