/*
 * The multi-pattern prefilter: every `contains`, `==`, `in { }`, starts_with, ends_with and
 * `matches` on one string value goes into one Hyperscan database, so the value is scanned once
 * however many rules look at it. Literals are exact (a hit is a match; `==` is \A...\z, a set
 * is one expression per element sharing one id); regular expressions are compiled in Hyperscan's
 * prefilter mode, which may report a hit where PCRE2 finds no match but never misses one, so
 * a hit is confirmed with PCRE2 and a miss needs nothing more. A pattern that Hyperscan
 * cannot take even as a prefilter (recursion, \K, a NUL byte...) stays out of the database and
 * is evaluated by PCRE2 (or memmem) alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "rules/internal.h"

static int is_plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A literal as a Hyperscan expression, between an optional \A and \z: every byte that is
 * not a letter or a digit as \xHH. */
static char *escape_literal(const char *p, size_t len, int anchor_start, int anchor_end)
{
	char *out, *w;
	size_t i;

	if (len > (SIZE_MAX - 5) / 4)
		return NULL;
	out = moat_malloc(len * 4 + 5);
	if (out == NULL)
		return NULL;
	w = out;
	if (anchor_start) {
		memcpy(w, "\\A", 2);
		w += 2;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (is_plain(c)) {
			*w++ = (char)c;
		} else {
			snprintf(w, 5, "\\x%02x", c);
			w += 4;
		}
	}
	if (anchor_end) {
		memcpy(w, "\\z", 2);
		w += 2;
	}
	*w = '\0';
	return out;
}

static unsigned flags_of(const struct moat_rules_pattern *p)
{
	if (p->kind == MOAT_PAT_REGEX)
		return HS_FLAG_SINGLEMATCH | HS_FLAG_PREFILTER | HS_FLAG_ALLOWEMPTY;
	return HS_FLAG_SINGLEMATCH | (p->caseless ? HS_FLAG_CASELESS : 0);
}

/* The expressions for pattern i, in the arrays from *m on. An empty literal (always or
 * trivially true, and refused by Hyperscan) or a regex with a NUL byte yields none. */
struct exprs {
	char **e;
	unsigned *flags, *ids;
	unsigned m, cap;
};

static int push_expr(struct exprs *x, char *e, unsigned flags, unsigned id, int check)
{
	hs_expr_info_t *info = NULL;
	hs_compile_error_t *err = NULL;

	if (e == NULL)
		return -1;
	/* a check of each regular expression alone, so that the multi-pattern compile rarely
	 * fails; escaped literals always compile, and checking them would double the time */
	if (check && hs_expression_info(e, flags, &info, &err) != HS_SUCCESS) {
		hs_free_compile_error(err);
		moat_free(e);
		return -1;
	}
	free(info); /* allocated by Hyperscan's default allocator (NULL without the check) */
	if (x->m == x->cap) {
		moat_free(e);
		return -1;
	}
	x->e[x->m] = e;
	x->flags[x->m] = flags;
	x->ids[x->m] = id;
	x->m++;
	return 0;
}

static void drop_id(struct exprs *x, unsigned id)
{
	unsigned i = 0;

	while (i < x->m) {
		if (x->ids[i] != id) {
			i++;
			continue;
		}
		moat_free(x->e[i]);
		x->m--;
		x->e[i] = x->e[x->m];
		x->flags[i] = x->flags[x->m];
		x->ids[i] = x->ids[x->m];
	}
}

static void add_pattern_exprs(struct exprs *x, const struct moat_rules_pattern *p, unsigned id)
{
	unsigned before = x->m, k;
	unsigned fl = flags_of(p);
	int ok = 0;

	switch (p->kind) {
	case MOAT_PAT_CONTAINS:
	case MOAT_PAT_PREFIX:
	case MOAT_PAT_SUFFIX:
	case MOAT_PAT_EXACT:
		if (p->len == 0)
			return;
		ok = push_expr(
		        x,
		        escape_literal(p->p, p->len,
		                       p->kind == MOAT_PAT_PREFIX || p->kind == MOAT_PAT_EXACT,
		                       p->kind == MOAT_PAT_SUFFIX || p->kind == MOAT_PAT_EXACT),
		        fl, id, 0);
		break;
	case MOAT_PAT_SET:
		/* one expression per element, all reporting the same id */
		for (k = 0; k < p->nset && ok == 0; k++) {
			if (p->set[k].len == 0)
				ok = -1;
			else
				ok = push_expr(x, escape_literal(p->set[k].p, p->set[k].len, 1, 1),
				               fl, id, 0);
		}
		break;
	case MOAT_PAT_REGEX:
		if (memchr(p->p, '\0', p->len) != NULL)
			return;
		ok = push_expr(x, moat_strndup(p->p, p->len), fl, id, 1);
		break;
	}
	if (ok != 0) {
		/* all of a pattern or none of it */
		while (x->m > before) {
			x->m--;
			moat_free(x->e[x->m]);
		}
	}
}

hs_database_t *moat_rules_prefilter_build(struct moat_rules_pattern *pats, unsigned n)
{
	struct exprs x = {0};
	hs_database_t *db = NULL;
	unsigned i, total = 0;

	for (i = 0; i < n; i++) {
		pats[i].in_db = 0;
		total += pats[i].kind == MOAT_PAT_SET ? pats[i].nset : 1;
	}
	if (n == 0 || hs_valid_platform() != HS_SUCCESS)
		return NULL;
	x.cap = total;
	x.e = moat_calloc(total, sizeof(*x.e));
	x.flags = moat_calloc(total, sizeof(*x.flags));
	x.ids = moat_calloc(total, sizeof(*x.ids));
	if (x.e == NULL || x.flags == NULL || x.ids == NULL)
		goto out;
	for (i = 0; i < n; i++)
		add_pattern_exprs(&x, &pats[i], i);
	while (x.m > 0) {
		hs_compile_error_t *err = NULL;
		int bad;

		if (hs_compile_multi((const char *const *)x.e, x.flags, x.ids, x.m, HS_MODE_BLOCK,
		                     NULL, &db, &err) == HS_SUCCESS)
			break;
		db = NULL;
		bad = err != NULL ? err->expression : -1;
		hs_free_compile_error(err);
		if (bad < 0 || (unsigned)bad >= x.m)
			break; /* not one pattern's fault (resources): no database for this value */
		drop_id(&x, x.ids[bad]);
	}
	if (db != NULL && moat_rules_thread_grow(db) != 0) {
		hs_free_database(db);
		db = NULL;
	}
	if (db != NULL) {
		for (i = 0; i < x.m; i++)
			pats[x.ids[i]].in_db = 1;
	}
out:
	if (x.e != NULL) {
		for (i = 0; i < x.m; i++)
			moat_free(x.e[i]);
	}
	moat_free(x.e);
	moat_free(x.flags);
	moat_free(x.ids);
	return db;
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx)
{
	uint64_t *row = ctx;

	(void)from;
	(void)to;
	(void)flags;
	row[id / 64] |= 1ull << (id % 64);
	return 0;
}

int moat_rules_prefilter_scan(const hs_database_t *db, hs_scratch_t *scratch, const char *p,
                              size_t len, uint64_t *row)
{
	if (len > UINT32_MAX)
		return -1;
	if (hs_scan(db, p != NULL ? p : "", (unsigned)len, 0, scratch, on_match, row) != HS_SUCCESS)
		return -1;
	return 0;
}
