/*
 * The compiler: lowers checked expressions into the flat form the evaluator runs (nodes that
 * refer to each other by index, value slots shared by all rules, constants prepared once:
 * sorted sets, parsed versions, merged CIDR ranges, compiled regular expressions), then
 * builds the prefilter databases and each rule's guard. See docs/internals/rules.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "rules/internal.h"

#define DEFAULT_MAX_RULES 10000
#define DEFAULT_MAX_EXPR_LEN 8192
#define DEFAULT_MAX_DEPTH 64
#define HARD_MAX_DEPTH 256 /* the parser and the evaluator recurse this deep at most */
#define DEFAULT_MAX_REGEX_LEN 4096
#define DEFAULT_MATCH_LIMIT 100000
#define DEFAULT_BODY_LIMIT 8192
#define DEPTH_LIMIT 10000 /* PCRE2 interpreter: backtracking depth */
#define HEAP_LIMIT_KB 2048 /* PCRE2 interpreter: backtracking memory */
#define MAX_SLOTS 65535
/* A value gets a prefilter database once this many patterns look into it: below that,
 * memmem and PCRE2 directly cost less than a Hyperscan scan (docs/internals/rules.md). */
#define PREFILTER_MIN_PATTERNS 2

/* A growable array of fixed-size elements. */
struct vec {
	char *p;
	uint32_t n, cap;
};

struct bpat {
	uint32_t pslot;
	struct moat_rules_pattern p;
	uint32_t bit; /* set in finish: the bit in the slot's database, or NONE */
};

struct moat_rules_builder {
	struct moat_ruleset *rs;
	enum moat_rules_scope scope;
	struct vec nodes, kids, slots, strs, vers, sets, regexes, pats, rules, roots;
	struct moat_rules_diag *d;
	int nomem;
	int no_prefilter; /* every pattern evaluated directly: a quick build */
};

static void *vec_push(struct moat_rules_builder *b, struct vec *v, size_t size)
{
	if (v->n == UINT32_MAX - 1) {
		b->nomem = 1;
		return NULL;
	}
	if (v->n == v->cap) {
		uint32_t cap = v->cap ? v->cap * 2 : 16;
		char *p;

		if (cap < v->cap || (size_t)cap > SIZE_MAX / size) {
			b->nomem = 1;
			return NULL;
		}
		p = moat_realloc(v->p, (size_t)cap * size);
		if (p == NULL) {
			b->nomem = 1;
			return NULL;
		}
		v->p = p;
		v->cap = cap;
	}
	memset(v->p + (size_t)v->n * size, 0, size);
	return v->p + (size_t)v->n++ * size;
}

#define VEC_AT(v, type, i) (&((type *)(v).p)[i])

void moat_rules_limits_fill(struct moat_rules_limits *out, const struct moat_rules_limits *in)
{
	memset(out, 0, sizeof(*out));
	if (in != NULL)
		*out = *in;
	if (out->max_rules == 0)
		out->max_rules = DEFAULT_MAX_RULES;
	if (out->max_expr_len == 0)
		out->max_expr_len = DEFAULT_MAX_EXPR_LEN;
	if (out->max_depth == 0)
		out->max_depth = DEFAULT_MAX_DEPTH;
	if (out->max_depth > HARD_MAX_DEPTH)
		out->max_depth = HARD_MAX_DEPTH;
	if (out->max_regex_len == 0)
		out->max_regex_len = DEFAULT_MAX_REGEX_LEN;
	if (out->regex_match_limit == 0)
		out->regex_match_limit = DEFAULT_MATCH_LIMIT;
	if (out->body_limit == 0)
		out->body_limit = DEFAULT_BODY_LIMIT;
}

static void *pcre_alloc(size_t n, void *data)
{
	(void)data;
	return moat_malloc(n);
}

static void pcre_free(void *p, void *data)
{
	(void)data;
	moat_free(p);
}

static void ruleset_free(struct moat_ruleset *rs)
{
	uint32_t i;

	if (rs == NULL)
		return;
	for (i = 0; i < rs->nregexes; i++)
		pcre2_code_free(rs->regexes[i]);
	for (i = 0; i < rs->ndbs; i++)
		hs_free_database(rs->dbs[i]);
	pcre2_match_context_free(rs->mctx);
	pcre2_compile_context_free(rs->cctx);
	pcre2_general_context_free(rs->gctx);
	moat_free(rs->rules);
	moat_free(rs->root);
	moat_free(rs->guard);
	moat_free(rs->exec);
	moat_free(rs->always);
	moat_free(rs->enabled);
	moat_free(rs->gslots);
	moat_free(rs->pat_off);
	moat_free(rs->guard_rules);
	moat_free(rs->nodes);
	moat_free(rs->kids);
	moat_free(rs->slots);
	moat_free(rs->strs);
	moat_free(rs->vers);
	moat_free(rs->sets);
	moat_free(rs->regexes);
	moat_free(rs->dbs);
	moat_rules_arena_free(&rs->arena);
	moat_free(rs);
}

void moat_ruleset_free(struct moat_ruleset *rs)
{
	ruleset_free(rs);
}

struct moat_rules_builder *moat_rules_builder_new(enum moat_rules_scope scope,
                                                  const struct moat_rules_limits *lim)
{
	struct moat_rules_builder *b = moat_calloc(1, sizeof(*b));
	struct moat_ruleset *rs;

	if (b == NULL)
		return NULL;
	rs = b->rs = moat_calloc(1, sizeof(*rs));
	if (rs == NULL)
		goto fail;
	b->scope = scope;
	moat_rules_limits_fill(&rs->lim, lim);
	rs->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
	if (rs->gctx == NULL)
		goto fail;
	rs->cctx = pcre2_compile_context_create(rs->gctx);
	rs->mctx = pcre2_match_context_create(rs->gctx);
	if (rs->cctx == NULL || rs->mctx == NULL)
		goto fail;
	pcre2_set_max_pattern_length(rs->cctx, rs->lim.max_regex_len);
	pcre2_set_match_limit(rs->mctx, rs->lim.regex_match_limit);
	pcre2_set_depth_limit(rs->mctx, DEPTH_LIMIT);
	pcre2_set_heap_limit(rs->mctx, HEAP_LIMIT_KB);
	atomic_init(&rs->scratch_overflows, 0);
	atomic_init(&rs->regex_limit_hits, 0);
	atomic_init(&rs->prefilter_unavailable, 0);
	return b;
fail:
	moat_rules_builder_free(b);
	return NULL;
}

static void bpat_free_all(struct moat_rules_builder *b)
{
	moat_free(b->pats.p);
	b->pats.p = NULL;
}

void moat_rules_builder_free(struct moat_rules_builder *b)
{
	if (b == NULL)
		return;
	if (b->rs != NULL) {
		/* compiled patterns the builder still owns go with the ruleset (once moved into it
		 * by finish, the builder's array is NULL and the ruleset has them already) */
		if (b->regexes.p != NULL) {
			b->rs->regexes = (pcre2_code **)b->regexes.p;
			b->rs->nregexes = b->regexes.n;
			b->regexes.p = NULL;
		}
		ruleset_free(b->rs);
	}
	moat_free(b->nodes.p);
	moat_free(b->kids.p);
	moat_free(b->slots.p);
	moat_free(b->strs.p);
	moat_free(b->vers.p);
	moat_free(b->sets.p);
	moat_free(b->regexes.p);
	moat_free(b->rules.p);
	moat_free(b->roots.p);
	bpat_free_all(b);
	moat_free(b);
}

/* ---- slots -------------------------------------------------------------------------------- */

static uint32_t slot_find(struct moat_rules_builder *b, const struct moat_rules_slot *want)
{
	uint32_t i;

	for (i = 0; i < b->slots.n; i++) {
		const struct moat_rules_slot *s = VEC_AT(b->slots, struct moat_rules_slot, i);

		if (s->op == want->op && s->field == want->field && s->arg == want->arg &&
		    s->keylen == want->keylen &&
		    (s->keylen == 0 || memcmp(s->key, want->key, s->keylen) == 0))
			return i;
	}
	return MOAT_RULES_NONE;
}

static uint32_t slot_add(struct moat_rules_builder *b, const struct moat_rules_slot *want)
{
	uint32_t i = slot_find(b, want);
	struct moat_rules_slot *s;

	if (i != MOAT_RULES_NONE)
		return i;
	if (b->slots.n >= MAX_SLOTS) {
		b->nomem = 1;
		return MOAT_RULES_NONE;
	}
	s = vec_push(b, &b->slots, sizeof(*s));
	if (s == NULL)
		return MOAT_RULES_NONE;
	*s = *want;
	s->db = -1;
	i = b->slots.n - 1;
	if (s->list && s->op == MOAT_SLOT_FIELD)
		s->root = i;
	return i;
}

static uint32_t lower_value(struct moat_rules_builder *b, const struct moat_rules_ast *n)
{
	struct moat_rules_slot want;
	char *key;
	size_t k;

	memset(&want, 0, sizeof(want));
	want.arg = MOAT_RULES_NONE;
	want.root = MOAT_RULES_NONE;
	want.type = (uint8_t)n->type;
	want.list = (uint8_t)n->list;
	if (n->kind == MOAT_AST_FIELD) {
		want.op = MOAT_SLOT_FIELD;
		want.field = (uint8_t)n->field;
		if (moat_rules_fields[n->field].body)
			b->rs->needs_body = 1;
		if (n->key != NULL) {
			key = moat_rules_arena_dup(&b->rs->arena, n->key->str, n->key->len);
			if (key == NULL) {
				b->nomem = 1;
				return MOAT_RULES_NONE;
			}
			if (n->field == MOAT_F_HEADERS) {
				for (k = 0; k < n->key->len; k++) {
					if (key[k] >= 'A' && key[k] <= 'Z')
						key[k] = (char)(key[k] + 32);
				}
			}
			want.key = key;
			want.keylen = n->key->len;
			if (n->field == MOAT_F_HEADERS)
				want.keybloom = moat_rules_name_bloom(key, n->key->len, 0);
		}
		return slot_add(b, &want);
	}
	want.arg = lower_value(b, n->kids[0]);
	if (want.arg == MOAT_RULES_NONE)
		return MOAT_RULES_NONE;
	switch (n->func) {
	case MOAT_FN_LOWER:
		want.op = MOAT_SLOT_LOWER;
		break;
	case MOAT_FN_UPPER:
		want.op = MOAT_SLOT_UPPER;
		break;
	case MOAT_FN_URL_DECODE:
		want.op = MOAT_SLOT_URLDEC;
		break;
	case MOAT_FN_LEN:
		want.op = MOAT_SLOT_LEN;
		break;
	default:
		want.op = MOAT_SLOT_COUNT;
		break;
	}
	if (want.list)
		want.root = VEC_AT(b->slots, struct moat_rules_slot, want.arg)->root;
	return slot_add(b, &want);
}

/* ---- constants ---------------------------------------------------------------------------- */

static uint32_t add_str(struct moat_rules_builder *b, const char *p, size_t len)
{
	struct moat_slice *s = vec_push(b, &b->strs, sizeof(*s));

	if (s == NULL)
		return MOAT_RULES_NONE;
	s->p = moat_rules_arena_dup(&b->rs->arena, p, len);
	s->len = len;
	if (s->p == NULL) {
		b->nomem = 1;
		return MOAT_RULES_NONE;
	}
	return b->strs.n - 1;
}

static int ver_of(struct moat_rules_builder *b, const struct moat_rules_ast *lit,
                  struct moat_rules_version *v)
{
	char *text = moat_rules_arena_dup(&b->rs->arena, lit->str, lit->len);

	if (text == NULL) {
		b->nomem = 1;
		return -1;
	}
	/* the checker has parsed it already; parse the stable copy for the pre-release pointer */
	return moat_rules_version_parse(text, lit->len, v) == MOAT_OK ? 0 : -1;
}

static uint32_t add_ver(struct moat_rules_builder *b, const struct moat_rules_ast *lit)
{
	struct moat_rules_version *v = vec_push(b, &b->vers, sizeof(*v));

	if (v == NULL || ver_of(b, lit, v) != 0)
		return MOAT_RULES_NONE;
	return b->vers.n - 1;
}

static int cmp_slices(const void *x, const void *y)
{
	const struct moat_slice *a = x, *b = y;
	size_t m = a->len < b->len ? a->len : b->len;
	int c = m ? memcmp(a->p, b->p, m) : 0;

	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

static int cmp_ints(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

	return (a > b) - (a < b);
}

static int cmp_vers(const void *x, const void *y)
{
	return moat_rules_version_compare(x, y);
}

static int cmp_ranges(const void *x, const void *y)
{
	const struct moat_rules_range *a = x, *b = y;

	return memcmp(a->lo, b->lo, 16);
}

static void range_of(const struct moat_cidr *c, struct moat_rules_range *r)
{
	unsigned i;

	memcpy(r->lo, c->addr, 16);
	memcpy(r->hi, c->addr, 16);
	for (i = c->prefix; i < 128; i++)
		r->hi[i / 8] |= (unsigned char)(0x80u >> (i % 8));
}

/* Whether b starts at or right after the end of a, so that they merge. */
static int touches(const unsigned char *a_hi, const unsigned char *b_lo)
{
	unsigned char next[16];
	int i;

	if (memcmp(b_lo, a_hi, 16) <= 0)
		return 1;
	memcpy(next, a_hi, 16);
	for (i = 15; i >= 0; i--) {
		if (++next[i] != 0)
			break;
	}
	return i >= 0 && memcmp(b_lo, next, 16) == 0;
}

static uint32_t add_set(struct moat_rules_builder *b, enum moat_rules_set_kind kind,
                        const struct moat_rules_ast *const *lits, unsigned n)
{
	struct moat_rules_set *set = vec_push(b, &b->sets, sizeof(*set));
	struct moat_rules_arena *a = &b->rs->arena;
	uint32_t i, k = 0;

	if (set == NULL)
		return MOAT_RULES_NONE;
	set->kind = kind;
	switch (kind) {
	case MOAT_SET_STR:
		set->v.str = moat_rules_arena_alloc(a, n * sizeof(*set->v.str));
		if (set->v.str == NULL)
			goto nomem;
		for (i = 0; i < n; i++) {
			set->v.str[i].p = moat_rules_arena_dup(a, lits[i]->str, lits[i]->len);
			set->v.str[i].len = lits[i]->len;
			if (set->v.str[i].p == NULL)
				goto nomem;
		}
		qsort(set->v.str, n, sizeof(*set->v.str), cmp_slices);
		for (i = k = 0; i < n; i++) {
			if (k == 0 || cmp_slices(&set->v.str[k - 1], &set->v.str[i]) != 0)
				set->v.str[k++] = set->v.str[i];
		}
		break;
	case MOAT_SET_INT:
		set->v.num = moat_rules_arena_alloc(a, n * sizeof(*set->v.num));
		if (set->v.num == NULL)
			goto nomem;
		for (i = 0; i < n; i++)
			set->v.num[i] = lits[i]->num;
		qsort(set->v.num, n, sizeof(*set->v.num), cmp_ints);
		for (i = k = 0; i < n; i++) {
			if (k == 0 || set->v.num[k - 1] != set->v.num[i])
				set->v.num[k++] = set->v.num[i];
		}
		break;
	case MOAT_SET_VER:
		set->v.ver = moat_rules_arena_alloc(a, n * sizeof(*set->v.ver));
		if (set->v.ver == NULL)
			goto nomem;
		for (i = 0; i < n; i++) {
			if (ver_of(b, lits[i], &set->v.ver[i]) != 0)
				goto nomem;
		}
		qsort(set->v.ver, n, sizeof(*set->v.ver), cmp_vers);
		for (i = k = 0; i < n; i++) {
			if (k == 0 ||
			    moat_rules_version_compare(&set->v.ver[k - 1], &set->v.ver[i]))
				set->v.ver[k++] = set->v.ver[i];
		}
		break;
	case MOAT_SET_IP:
		set->v.ip = moat_rules_arena_alloc(a, n * sizeof(*set->v.ip));
		if (set->v.ip == NULL)
			goto nomem;
		for (i = 0; i < n; i++)
			range_of(&lits[i]->ip, &set->v.ip[i]);
		qsort(set->v.ip, n, sizeof(*set->v.ip), cmp_ranges);
		for (i = k = 0; i < n; i++) {
			struct moat_rules_range *last = k ? &set->v.ip[k - 1] : NULL;

			if (last != NULL && touches(last->hi, set->v.ip[i].lo)) {
				if (memcmp(set->v.ip[i].hi, last->hi, 16) > 0)
					memcpy(last->hi, set->v.ip[i].hi, 16);
			} else {
				set->v.ip[k++] = set->v.ip[i];
			}
		}
		break;
	}
	set->n = k;
	return b->sets.n - 1;
nomem:
	b->nomem = 1;
	return MOAT_RULES_NONE;
}

/* The pattern index for a leaf, shared by identical patterns on one value. */
static uint32_t add_pattern(struct moat_rules_builder *b, uint32_t pslot,
                            const struct moat_rules_pattern *want)
{
	struct bpat *bp;
	uint32_t i;

	for (i = 0; i < b->pats.n; i++) {
		const struct moat_rules_pattern *p = &VEC_AT(b->pats, struct bpat, i)->p;

		if (VEC_AT(b->pats, struct bpat, i)->pslot == pslot && p->kind == want->kind &&
		    p->caseless == want->caseless && p->len == want->len && p->set == want->set &&
		    (want->len == 0 || memcmp(p->p, want->p, want->len) == 0))
			return i;
	}
	bp = vec_push(b, &b->pats, sizeof(*bp));
	if (bp == NULL)
		return MOAT_RULES_NONE;
	bp->pslot = pslot;
	bp->p = *want; /* its bytes are constants in the ruleset's arena: stable */
	bp->bit = MOAT_RULES_NONE;
	return b->pats.n - 1;
}

/* ---- nodes -------------------------------------------------------------------------------- */

static uint32_t new_node(struct moat_rules_builder *b, uint8_t op, uint32_t slot)
{
	struct moat_rules_node *nd = vec_push(b, &b->nodes, sizeof(*nd));

	if (nd == NULL)
		return MOAT_RULES_NONE;
	nd->op = op;
	nd->slot = slot;
	nd->a = nd->b = MOAT_RULES_NONE;
	nd->pslot = nd->pat = MOAT_RULES_NONE;
	return b->nodes.n - 1;
}

#define NODE(b, i) VEC_AT((b)->nodes, struct moat_rules_node, i)

static uint32_t lower_cond(struct moat_rules_builder *b, const struct moat_rules_ast *n);

/*
 * Puts a string leaf's test into the prefilter of its value. lower(x) == "abc" is exactly x
 * equal to "abc" without regard to ASCII case (the checker made sure the literal is lower
 * case), so such a pattern joins x's database with the caseless flag, and x is scanned once
 * for both kinds of rules. Regular expressions stay on their own value.
 */
static void attach(struct moat_rules_builder *b, uint32_t idx, enum moat_rules_pat_kind kind,
                   const char *p, size_t len, const struct moat_rules_set *set)
{
	struct moat_rules_node *nd = NODE(b, idx);
	const struct moat_rules_slot *sd = VEC_AT(b->slots, struct moat_rules_slot, nd->slot);
	struct moat_rules_pattern want;
	uint32_t pslot = nd->slot;

	memset(&want, 0, sizeof(want));
	want.kind = kind;
	want.p = p;
	want.len = len;
	if (set != NULL) {
		want.set = set->v.str;
		want.nset = set->n;
	}
	if (kind != MOAT_PAT_REGEX && (sd->op == MOAT_SLOT_LOWER || sd->op == MOAT_SLOT_UPPER)) {
		pslot = sd->arg;
		want.caseless = 1;
	}
	nd->exact = kind != MOAT_PAT_REGEX;
	nd->pslot = pslot;
	nd->pat = add_pattern(b, pslot, &want);
	if (nd->pat == MOAT_RULES_NONE)
		nd->pslot = MOAT_RULES_NONE;
}

static uint32_t lower_contains(struct moat_rules_builder *b, uint32_t slot, const char *p,
                               size_t len)
{
	uint32_t idx = new_node(b, MOAT_N_CONTAINS, slot), s;

	if (idx == MOAT_RULES_NONE)
		return idx;
	s = add_str(b, p, len);
	if (s == MOAT_RULES_NONE)
		return s;
	NODE(b, idx)->a = s;
	attach(b, idx, MOAT_PAT_CONTAINS, VEC_AT(b->strs, struct moat_slice, s)->p, len, NULL);
	return idx;
}

static uint32_t lower_matches(struct moat_rules_builder *b, uint32_t slot,
                              const struct moat_rules_ast *lit)
{
	char err[256];
	size_t off = 0;
	pcre2_code *re, **rp;
	uint32_t idx, s;

	re = moat_rules_regex_compile(b->rs, lit->str, lit->len, err, sizeof(err), &off);
	if (re == NULL) {
		/* point into the pattern when the source shows it byte for byte */
		size_t pos = lit->raw && off <= lit->len ? lit->body + off : lit->pos;

		moat_rules_diag(b->d, pos, "bad regular expression: %s", err);
		return MOAT_RULES_NONE;
	}
	rp = vec_push(b, &b->regexes, sizeof(*rp));
	if (rp == NULL) {
		pcre2_code_free(re);
		return MOAT_RULES_NONE;
	}
	*rp = re;
	s = add_str(b, lit->str, lit->len);
	idx = new_node(b, MOAT_N_MATCHES, slot);
	if (s == MOAT_RULES_NONE || idx == MOAT_RULES_NONE)
		return MOAT_RULES_NONE;
	NODE(b, idx)->a = b->regexes.n - 1;
	attach(b, idx, MOAT_PAT_REGEX, VEC_AT(b->strs, struct moat_slice, s)->p, lit->len, NULL);
	return idx;
}

static uint32_t lower_cmp(struct moat_rules_builder *b, const struct moat_rules_ast *n)
{
	const struct moat_rules_ast *lhs = n->kids[0], *rhs = n->kids[1];
	uint32_t slot = lower_value(b, lhs), idx = MOAT_RULES_NONE, c;
	const struct moat_rules_ast *const *lits = (const struct moat_rules_ast *const *)rhs->kids;

	if (slot == MOAT_RULES_NONE)
		return slot;
	if (n->op == MOAT_OP_CONTAINS)
		return lower_contains(b, slot, rhs->str, rhs->len);
	if (n->op == MOAT_OP_MATCHES)
		return lower_matches(b, slot, rhs);
	switch ((enum moat_rules_type)lhs->type) {
	case MOAT_RT_BOOL:
	case MOAT_RT_INT:
		if (n->op == MOAT_OP_IN) {
			c = add_set(b, MOAT_SET_INT, lits, rhs->nkids);
			idx = new_node(b, MOAT_N_IN_INT, slot);
		} else {
			c = 0;
			idx = new_node(b, MOAT_N_CMP_INT, slot);
			if (idx != MOAT_RULES_NONE)
				NODE(b, idx)->num = rhs->num;
		}
		break;
	case MOAT_RT_STR:
		if (n->op == MOAT_OP_IN) {
			c = add_set(b, MOAT_SET_STR, lits, rhs->nkids);
			idx = new_node(b, MOAT_N_IN_STR, slot);
		} else {
			c = add_str(b, rhs->str, rhs->len);
			idx = new_node(b, MOAT_N_CMP_STR, slot);
		}
		break;
	case MOAT_RT_VER:
		if (n->op == MOAT_OP_IN) {
			c = add_set(b, MOAT_SET_VER, lits, rhs->nkids);
			idx = new_node(b, MOAT_N_IN_VER, slot);
		} else {
			c = add_ver(b, rhs);
			idx = new_node(b, MOAT_N_CMP_VER, slot);
		}
		break;
	case MOAT_RT_IP:
		if (n->op == MOAT_OP_IN)
			c = add_set(b, MOAT_SET_IP, lits, rhs->nkids);
		else
			c = add_set(b, MOAT_SET_IP, &rhs, 1);
		idx = new_node(b, MOAT_N_IN_IP, slot);
		break;
	default:
		return MOAT_RULES_NONE;
	}
	if (idx == MOAT_RULES_NONE || c == MOAT_RULES_NONE)
		return MOAT_RULES_NONE;
	NODE(b, idx)->a = c;
	NODE(b, idx)->cmp = (uint8_t)(n->op == MOAT_OP_IN ? MOAT_OP_EQ : n->op);
	if (lhs->type == MOAT_RT_STR && n->op == MOAT_OP_EQ) {
		const struct moat_slice *lit = VEC_AT(b->strs, struct moat_slice, c);

		attach(b, idx, MOAT_PAT_EXACT, lit->p, lit->len, NULL);
	} else if (lhs->type == MOAT_RT_STR && n->op == MOAT_OP_IN) {
		attach(b, idx, MOAT_PAT_SET, NULL, 0, VEC_AT(b->sets, struct moat_rules_set, c));
	}
	return idx;
}

static uint32_t lower_logic(struct moat_rules_builder *b, const struct moat_rules_ast *n,
                            uint8_t op)
{
	uint32_t *tmp, idx, i, first;

	tmp = moat_calloc(n->nkids, sizeof(*tmp));
	if (tmp == NULL) {
		b->nomem = 1;
		return MOAT_RULES_NONE;
	}
	idx = new_node(b, op, MOAT_RULES_NONE);
	for (i = 0; i < n->nkids && idx != MOAT_RULES_NONE; i++) {
		tmp[i] = lower_cond(b, n->kids[i]);
		if (tmp[i] == MOAT_RULES_NONE)
			idx = MOAT_RULES_NONE;
	}
	/* the children's indices go into kids[] as one block, after all of them are built */
	first = b->kids.n;
	for (i = 0; i < n->nkids && idx != MOAT_RULES_NONE; i++) {
		uint32_t *k = vec_push(b, &b->kids, sizeof(*k));

		if (k == NULL)
			idx = MOAT_RULES_NONE;
		else
			*k = tmp[i];
	}
	moat_free(tmp);
	if (idx == MOAT_RULES_NONE)
		return idx;
	NODE(b, idx)->a = first;
	NODE(b, idx)->b = n->nkids;
	return idx;
}

static uint32_t lower_cond(struct moat_rules_builder *b, const struct moat_rules_ast *n)
{
	uint32_t idx, kid, slot, s;

	switch (n->kind) {
	case MOAT_AST_OR:
		return lower_logic(b, n, MOAT_N_OR);
	case MOAT_AST_XOR:
		return lower_logic(b, n, MOAT_N_XOR);
	case MOAT_AST_AND:
		return lower_logic(b, n, MOAT_N_AND);
	case MOAT_AST_NOT:
		kid = lower_cond(b, n->kids[0]);
		if (kid == MOAT_RULES_NONE)
			return kid;
		idx = new_node(b, MOAT_N_NOT, MOAT_RULES_NONE);
		if (idx != MOAT_RULES_NONE)
			NODE(b, idx)->a = kid;
		return idx;
	case MOAT_AST_BOOL:
		return new_node(b, n->num ? MOAT_N_TRUE : MOAT_N_FALSE, MOAT_RULES_NONE);
	case MOAT_AST_FIELD:
		slot = lower_value(b, n);
		return slot == MOAT_RULES_NONE ? slot : new_node(b, MOAT_N_BOOL, slot);
	case MOAT_AST_CMP:
		return lower_cmp(b, n);
	case MOAT_AST_CALL:
		break;
	default:
		return MOAT_RULES_NONE;
	}
	if (n->func == MOAT_FN_ANY || n->func == MOAT_FN_ALL) {
		slot = lower_value(b, n->root);
		kid = lower_cond(b, n->kids[0]);
		if (slot == MOAT_RULES_NONE || kid == MOAT_RULES_NONE)
			return MOAT_RULES_NONE;
		idx = new_node(b, n->func == MOAT_FN_ANY ? MOAT_N_ANY : MOAT_N_ALL, slot);
		if (idx != MOAT_RULES_NONE)
			NODE(b, idx)->a = kid;
		return idx;
	}
	/* starts_with / ends_with */
	slot = lower_value(b, n->kids[0]);
	if (slot == MOAT_RULES_NONE)
		return slot;
	s = add_str(b, n->kids[1]->str, n->kids[1]->len);
	idx = new_node(b, n->func == MOAT_FN_STARTS_WITH ? MOAT_N_STARTS : MOAT_N_ENDS, slot);
	if (idx == MOAT_RULES_NONE || s == MOAT_RULES_NONE)
		return MOAT_RULES_NONE;
	NODE(b, idx)->a = s;
	attach(b, idx, n->func == MOAT_FN_STARTS_WITH ? MOAT_PAT_PREFIX : MOAT_PAT_SUFFIX,
	       VEC_AT(b->strs, struct moat_slice, s)->p, n->kids[1]->len, NULL);
	return idx;
}

int moat_rules_builder_expr(struct moat_rules_builder *b, const char *expr, size_t len,
                            struct moat_rules_diag *d, uint32_t *root)
{
	struct moat_rules_arena tmp = {0};
	struct moat_rules_ast *ast;
	unsigned before = d->count;
	int r = MOAT_EINVAL;

	b->d = d;
	if (len > b->rs->lim.max_expr_len) {
		moat_rules_diag(d, 0, "expression longer than %zu bytes", b->rs->lim.max_expr_len);
		return MOAT_EINVAL;
	}
	ast = moat_rules_parse(expr, len, b->rs->lim.max_depth, &tmp, d);
	if (ast == NULL || moat_rules_check(ast, b->scope, &b->rs->lim, d) != 0)
		goto out;
	b->nomem = 0;
	*root = lower_cond(b, ast);
	if (b->nomem) {
		moat_rules_diag(d, 0, "out of memory");
		r = MOAT_ENOMEM;
		goto out;
	}
	if (*root != MOAT_RULES_NONE && d->count == before)
		r = MOAT_OK;
out:
	moat_rules_arena_free(&tmp);
	return r;
}

int moat_rules_builder_rule(struct moat_rules_builder *b, const struct moat_rule *r, uint32_t root)
{
	struct moat_rules_arena *a = &b->rs->arena;
	struct moat_rule *dst = vec_push(b, &b->rules, sizeof(*dst));
	uint32_t *rp = vec_push(b, &b->roots, sizeof(*rp));

	if (dst == NULL || rp == NULL)
		return MOAT_ENOMEM;
	memcpy(dst->id, r->id, sizeof(dst->id));
	dst->id[sizeof(dst->id) - 1] = '\0';
	dst->name = r->name ? moat_rules_arena_dup(a, r->name, strlen(r->name)) : NULL;
	dst->description = r->description
	                           ? moat_rules_arena_dup(a, r->description, strlen(r->description))
	                           : NULL;
	dst->reference =
	        r->reference ? moat_rules_arena_dup(a, r->reference, strlen(r->reference)) : NULL;
	dst->expr = r->expr ? moat_rules_arena_dup(a, r->expr, strlen(r->expr)) : NULL;
	dst->body = r->body ? moat_rules_arena_dup(a, r->body, strlen(r->body)) : NULL;
	if ((r->name && !dst->name) || (r->description && !dst->description) ||
	    (r->reference && !dst->reference) || (r->expr && !dst->expr) || (r->body && !dst->body))
		return MOAT_ENOMEM;
	dst->action = r->action;
	dst->mode = r->mode;
	dst->status = r->status;
	dst->enabled = r->enabled;
	dst->line = r->line;
	*rp = root;
	return MOAT_OK;
}

/* ---- finishing: prefilter databases, guards, scratch layout --------------------------------- */

static int build_prefilter(struct moat_rules_builder *b)
{
	struct moat_ruleset *rs = b->rs;
	uint32_t *count = NULL, s, i;
	struct moat_rules_pattern *tmp = NULL;
	uint32_t *which = NULL;
	int r = MOAT_ENOMEM;

	if (b->pats.n == 0)
		return MOAT_OK;
	if (b->no_prefilter) {
		/* no database: every pattern keeps bit NONE, so its node is evaluated directly */
		for (i = 0; i < b->nodes.n; i++)
			if (NODE(b, i)->pat != MOAT_RULES_NONE) {
				NODE(b, i)->pat = MOAT_RULES_NONE;
				NODE(b, i)->pslot = MOAT_RULES_NONE;
			}
		return MOAT_OK;
	}
	count = moat_calloc(b->slots.n, sizeof(*count));
	tmp = moat_calloc(b->pats.n, sizeof(*tmp));
	which = moat_calloc(b->pats.n, sizeof(*which));
	rs->dbs = moat_calloc(b->slots.n, sizeof(*rs->dbs));
	if (count == NULL || tmp == NULL || which == NULL || rs->dbs == NULL)
		goto out;
	for (i = 0; i < b->pats.n; i++)
		count[VEC_AT(b->pats, struct bpat, i)->pslot]++;
	for (s = 0; s < b->slots.n; s++) {
		struct moat_rules_slot *sd = VEC_AT(b->slots, struct moat_rules_slot, s);
		hs_database_t *db;
		uint32_t m = 0;

		if (count[s] < PREFILTER_MIN_PATTERNS)
			continue;
		for (i = 0; i < b->pats.n; i++) {
			struct bpat *bp = VEC_AT(b->pats, struct bpat, i);

			if (bp->pslot == s) {
				tmp[m] = bp->p;
				which[m++] = i;
			}
		}
		db = moat_rules_prefilter_build(tmp, m);
		if (db == NULL)
			continue;
		sd->db = (int32_t)rs->ndbs;
		rs->dbs[rs->ndbs++] = db;
		sd->npat = m;
		sd->words = (m + 63) / 64;
		for (i = 0; i < m; i++) {
			if (tmp[i].in_db)
				VEC_AT(b->pats, struct bpat, which[i])->bit = i;
		}
	}
	/* nodes now refer to bits; a pattern outside every database is evaluated directly */
	for (i = 0; i < b->nodes.n; i++) {
		struct moat_rules_node *nd = NODE(b, i);

		if (nd->pat == MOAT_RULES_NONE)
			continue;
		nd->pat = VEC_AT(b->pats, struct bpat, nd->pat)->bit;
		if (nd->pat == MOAT_RULES_NONE)
			nd->pslot = MOAT_RULES_NONE;
	}
	r = MOAT_OK;
out:
	moat_free(count);
	moat_free(tmp);
	moat_free(which);
	return r;
}

/* A prefilter bit that must be set for the node to be true, if there is one: a pattern leaf,
 * or such a leaf among the operands of an `and`. */
static struct moat_rules_guard necessary(const struct moat_rules_builder *b, uint32_t idx)
{
	const struct moat_rules_node *nd = NODE(b, idx);
	struct moat_rules_guard g = {MOAT_RULES_NONE, MOAT_RULES_NONE};
	uint32_t i;

	switch (nd->op) {
	case MOAT_N_CONTAINS:
	case MOAT_N_MATCHES:
	case MOAT_N_CMP_STR:
	case MOAT_N_IN_STR:
	case MOAT_N_STARTS:
	case MOAT_N_ENDS:
		/* only `==` and the positive tests carry a pattern: a hit is needed for truth */
		if (nd->pat != MOAT_RULES_NONE) {
			g.slot = nd->pslot;
			g.pat = nd->pat;
		}
		return g;
	case MOAT_N_ANY:
	case MOAT_N_ALL:
		return necessary(b, nd->a);
	case MOAT_N_AND:
		for (i = 0; i < nd->b; i++) {
			g = necessary(b, *VEC_AT(b->kids, uint32_t, nd->a + i));
			if (g.pat != MOAT_RULES_NONE)
				return g;
		}
		return g;
	default:
		return g;
	}
}

/* The tables of the evaluation loop: which rules always run, and which run when a pattern of
 * a guarding value hits (docs/internals/rules.md, "Candidates"). */
static int build_candidates(struct moat_ruleset *rs)
{
	uint32_t *gidx = NULL, *fill = NULL, i, total = 0;
	int r = MOAT_ENOMEM;

	rs->rule_words = (uint32_t)((rs->nrules + 63) / 64);
	rs->always = moat_calloc(rs->rule_words ? rs->rule_words : 1, sizeof(uint64_t));
	rs->enabled = moat_calloc(rs->rule_words ? rs->rule_words : 1, sizeof(uint64_t));
	rs->exec = moat_calloc(rs->nrules ? rs->nrules : 1, sizeof(*rs->exec));
	rs->gslots = moat_calloc(rs->nslots ? rs->nslots : 1, sizeof(*rs->gslots));
	gidx = moat_calloc(rs->nslots ? rs->nslots : 1, sizeof(*gidx));
	if (rs->always == NULL || rs->enabled == NULL || rs->exec == NULL || rs->gslots == NULL ||
	    gidx == NULL)
		goto out;
	for (i = 0; i < rs->nslots; i++)
		gidx[i] = MOAT_RULES_NONE;
	for (i = 0; i < rs->nrules; i++) {
		const struct moat_rules_guard *g = &rs->guard[i];
		struct moat_rules_gslot *gs;

		rs->exec[i].root = rs->root[i];
		rs->exec[i].action = (uint8_t)rs->rules[i].action;
		rs->exec[i].mode = (uint8_t)rs->rules[i].mode;
		if (!rs->rules[i].enabled)
			continue;
		rs->enabled[i / 64] |= 1ull << (i % 64);
		if (g->pat == MOAT_RULES_NONE) {
			rs->always[i / 64] |= 1ull << (i % 64);
			continue;
		}
		if (gidx[g->slot] == MOAT_RULES_NONE) {
			gidx[g->slot] = rs->ngslots;
			gs = &rs->gslots[rs->ngslots++];
			gs->slot = g->slot;
			gs->npat = rs->slots[g->slot].npat;
			gs->first = total;
			total += gs->npat + 1;
		}
	}
	rs->pat_off = moat_calloc(total ? total : 1, sizeof(*rs->pat_off));
	fill = moat_calloc(total ? total : 1, sizeof(*fill));
	rs->guard_rules = moat_calloc(rs->nrules ? rs->nrules : 1, sizeof(*rs->guard_rules));
	if (rs->pat_off == NULL || fill == NULL || rs->guard_rules == NULL)
		goto out;
	/* count per (value, bit), then prefix sums across all values: each value's rules are one
	 * contiguous run, bit by bit, each bit's rules in rule order */
	for (i = 0; i < rs->nrules; i++) {
		const struct moat_rules_guard *g = &rs->guard[i];

		if (rs->rules[i].enabled && g->pat != MOAT_RULES_NONE)
			rs->pat_off[rs->gslots[gidx[g->slot]].first + g->pat + 1]++;
	}
	{
		uint32_t run = 0, k;

		for (k = 0; k < rs->ngslots; k++) {
			const struct moat_rules_gslot *gs = &rs->gslots[k];
			uint32_t bit;

			rs->pat_off[gs->first] = run;
			for (bit = 0; bit < gs->npat; bit++) {
				run += rs->pat_off[gs->first + bit + 1];
				rs->pat_off[gs->first + bit + 1] = run;
			}
		}
	}
	for (i = 0; i < rs->nrules; i++) {
		const struct moat_rules_guard *g = &rs->guard[i];
		uint32_t at;

		if (!rs->rules[i].enabled || g->pat == MOAT_RULES_NONE)
			continue;
		at = rs->gslots[gidx[g->slot]].first + g->pat;
		rs->guard_rules[rs->pat_off[at] + fill[at]++] = (uint32_t)i;
	}
	r = MOAT_OK;
out:
	moat_free(gidx);
	moat_free(fill);
	return r;
}

/* Moves a builder's array into the ruleset, shrinking nothing: it is read-only from now on. */
#define TAKE(b, field, vecname, type)                                                              \
	do {                                                                                       \
		(b)->rs->field = (type *)(b)->vecname.p;                                           \
		(b)->vecname.p = NULL;                                                             \
	} while (0)

void moat_rules_builder_no_prefilter(struct moat_rules_builder *b)
{
	b->no_prefilter = 1;
}

int moat_rules_builder_finish(struct moat_rules_builder *b, struct moat_ruleset **out)
{
	struct moat_ruleset *rs = b->rs;
	size_t i, words;
	int r;

	*out = NULL;
	r = build_prefilter(b);
	if (r != MOAT_OK)
		goto fail;
	rs->nrules = b->rules.n;
	rs->rules = moat_calloc(rs->nrules ? rs->nrules : 1, sizeof(*rs->rules));
	rs->guard = moat_calloc(rs->nrules ? rs->nrules : 1, sizeof(*rs->guard));
	if (rs->rules == NULL || rs->guard == NULL) {
		r = MOAT_ENOMEM;
		goto fail;
	}
	for (i = 0; i < rs->nrules; i++) {
		const struct moat_rule *src = VEC_AT(b->rules, struct moat_rule, i);
		struct moat_rule *dst = &rs->rules[i];

		memcpy(dst->id, src->id, sizeof(dst->id));
		dst->name = src->name;
		dst->description = src->description;
		dst->reference = src->reference;
		dst->expr = src->expr;
		dst->action = src->action;
		dst->mode = src->mode;
		dst->status = src->status;
		dst->body = src->body;
		dst->enabled = src->enabled;
		dst->line = src->line;
		atomic_init(&dst->hits_enforce, 0);
		atomic_init(&dst->hits_dry_run, 0);
		rs->guard[i] = necessary(b, *VEC_AT(b->roots, uint32_t, i));
	}
	rs->nnodes = b->nodes.n;
	rs->nkids = b->kids.n;
	rs->nslots = b->slots.n;
	rs->nstrs = b->strs.n;
	rs->nvers = b->vers.n;
	rs->nsets = b->sets.n;
	rs->nregexes = b->regexes.n;
	TAKE(b, root, roots, uint32_t);
	TAKE(b, nodes, nodes, struct moat_rules_node);
	TAKE(b, kids, kids, uint32_t);
	TAKE(b, slots, slots, struct moat_rules_slot);
	TAKE(b, strs, strs, struct moat_slice);
	TAKE(b, vers, vers, struct moat_rules_version);
	TAKE(b, sets, sets, struct moat_rules_set);
	TAKE(b, regexes, regexes, pcre2_code *);
	r = build_candidates(rs);
	if (r != MOAT_OK)
		goto fail;
	/* scratch: done bits | value table | candidate bitmap | value arena */
	words = (rs->nslots + 63) / 64;
	rs->scratch_vals = (words * 8 + 15) & ~(size_t)15;
	rs->scratch_cand =
	        rs->scratch_vals +
	        (((size_t)rs->nslots * sizeof(struct moat_rules_val) + 15) & ~(size_t)15);
	rs->scratch_fixed = rs->scratch_cand + (((size_t)rs->rule_words * 8 + 15) & ~(size_t)15);
	b->rs = NULL;
	moat_rules_builder_free(b);
	*out = rs;
	return MOAT_OK;
fail:
	moat_rules_builder_free(b);
	return r;
}

/* ---- accessors ---------------------------------------------------------------------------- */

size_t moat_ruleset_count(const struct moat_ruleset *rs)
{
	return rs != NULL ? rs->nrules : 0;
}

struct moat_rule *moat_ruleset_rule(const struct moat_ruleset *rs, size_t i)
{
	if (rs == NULL || i >= rs->nrules)
		return NULL;
	return &rs->rules[i];
}

int moat_ruleset_needs_body(const struct moat_ruleset *rs)
{
	return rs != NULL && rs->needs_body;
}

/* Bounds for values that do not come from the request head: they come from the TLS layer
 * or the operator's device records. A longer one, or more tags, can overflow (counted). */
#define OTHER_STRING_MAX 4096
#define TAGS_MAX 256
#define ALLOC_SLACK 8 /* alignment lost per arena allocation */

/* Keyed slots (args["k"], headers["k"] and functions of them) of one field, bounded together:
 * each argument or header line has one name, so the elements of all keys add up to at most
 * the number of arguments or lines, and their bytes to at most the query or the head. */
struct family {
	size_t slots; /* keyed slots of the family */
	size_t mult; /* most slots derived from one key */
	size_t copies; /* lower/upper/url_decode slots among them */
	size_t maxwords; /* widest prefilter row among them */
};

/*
 * The most arena bytes one evaluation can use, for requests within the given HTTP limits:
 * every slot computed, at its largest (fields.c allocates no more than is counted here). With
 * this much, no value of such a request is ever missing for lack of room, so an attacker
 * cannot make a rule fail open by sending a large request.
 */
static size_t arena_bound(const struct moat_ruleset *rs, const struct moat_http_limits *hl)
{
	size_t line = hl != NULL && hl->max_request_line ? hl->max_request_line : 8192;
	size_t head = hl != NULL && hl->max_head ? hl->max_head : 32768;
	size_t nh = hl != NULL && hl->max_headers ? hl->max_headers : MOAT_HTTP_MAX_HEADERS;
	size_t nargs = (line + 1) / 2 + 1, total = 0, *bytes, *elems, *mult;
	struct family fam[2] = {{0}, {0}}; /* args, headers */
	int args = 0;
	uint32_t i, k;

	if (nh > MOAT_HTTP_MAX_HEADERS)
		nh = MOAT_HTTP_MAX_HEADERS;
	bytes = moat_calloc(rs->nslots ? rs->nslots : 1, sizeof(*bytes));
	elems = moat_calloc(rs->nslots ? rs->nslots : 1, sizeof(*elems));
	mult = moat_calloc(rs->nslots ? rs->nslots : 1, sizeof(*mult));
	if (bytes == NULL || elems == NULL || mult == NULL) {
		moat_free(bytes);
		moat_free(elems);
		moat_free(mult);
		return 16u << 20; /* generous, and only reached without memory */
	}
	/* slots are created after the slots they read, so one pass in index order works */
	for (i = 0; i < rs->nslots; i++) {
		const struct moat_rules_slot *sd = &rs->slots[i];
		const struct moat_rules_slot *root =
		        sd->list && sd->root != MOAT_RULES_NONE ? &rs->slots[sd->root] : NULL;
		size_t b = OTHER_STRING_MAX, n = 1, alloc = 0;

		if (root != NULL && root->keylen > 0) {
			struct family *f = &fam[root->field == MOAT_F_HEADERS];

			args |= root->field == MOAT_F_ARGS;
			f->slots++;
			if (++mult[sd->root] > f->mult)
				f->mult = mult[sd->root];
			f->copies += sd->op == MOAT_SLOT_LOWER || sd->op == MOAT_SLOT_UPPER ||
			             sd->op == MOAT_SLOT_URLDEC;
			if (sd->db >= 0 && sd->words > f->maxwords)
				f->maxwords = sd->words;
			continue;
		}
		switch (sd->op) {
		case MOAT_SLOT_FIELD:
			switch (sd->field) {
			case MOAT_F_IP_SRC:
				alloc = 16;
				break;
			case MOAT_F_DEVICE_FIRMWARE:
				alloc = sizeof(struct moat_rules_version);
				break;
			case MOAT_F_DEVICE_TAGS:
				n = TAGS_MAX;
				b = TAGS_MAX * 64;
				alloc = n * sizeof(struct moat_slice);
				break;
			case MOAT_F_METHOD:
			case MOAT_F_URI:
			case MOAT_F_PATH_RAW:
			case MOAT_F_QUERY:
				b = line;
				break;
			case MOAT_F_PATH:
				b = alloc = line;
				break;
			case MOAT_F_HOST:
			case MOAT_F_USER_AGENT:
				b = head;
				break;
			case MOAT_F_ARGS_NAMES:
			case MOAT_F_ARGS_VALUES:
				args = 1;
				b = line;
				n = nargs;
				break;
			case MOAT_F_HEADER_VALUES:
				b = head;
				n = nh;
				alloc = n * sizeof(struct moat_slice);
				break;
			case MOAT_F_HEADER_NAMES:
				b = head;
				n = nh;
				/* a lowered copy of each name: one allocation per name */
				alloc = n * sizeof(struct moat_slice) + head + n * ALLOC_SLACK;
				break;
			case MOAT_F_BODY:
				b = rs->lim.body_limit;
				break;
			default:
				break;
			}
			break;
		case MOAT_SLOT_LOWER:
		case MOAT_SLOT_UPPER:
		case MOAT_SLOT_URLDEC:
			b = bytes[sd->arg];
			n = elems[sd->arg];
			alloc = (sd->list ? n * sizeof(struct moat_slice) : 0) + b;
			break;
		case MOAT_SLOT_LEN:
			n = elems[sd->arg];
			alloc = sd->list ? n * sizeof(int64_t) : 0;
			break;
		default:
			break;
		}
		if (sd->db >= 0)
			alloc +=
			        (sd->list ? n + 1 : 1) * sd->words * sizeof(uint64_t) + ALLOC_SLACK;
		bytes[i] = b;
		elems[i] = n;
		total += alloc + 2 * ALLOC_SLACK;
	}
	for (k = 0; k < 2; k++) {
		const struct family *f = &fam[k];
		size_t n = k ? nh : nargs, b = k ? head : line;
		/* all the slots of the most-derived key, each at most n elements in all keys,
		 * plus one element's worth per slot (an empty list still takes one) */
		size_t rows = f->mult * n + f->slots;

		if (f->slots == 0)
			continue;
		total += rows * (sizeof(struct moat_slice) + sizeof(int64_t)) + f->copies * b +
		         rows * f->maxwords * sizeof(uint64_t) + f->slots * 4 * ALLOC_SLACK;
	}
	if (args) /* the split query, shared by the args slots */
		total += 2 * nargs * sizeof(struct moat_slice) + line + 3 * ALLOC_SLACK;
	moat_free(bytes);
	moat_free(elems);
	moat_free(mult);
	return total;
}

size_t moat_ruleset_scratch_size_for(const struct moat_ruleset *rs,
                                     const struct moat_http_limits *lim)
{
	size_t bound;

	if (rs == NULL)
		return MOAT_RULES_SCRATCH_ARENA;
	bound = arena_bound(rs, lim);
	return rs->scratch_fixed + 16 +
	       (bound > MOAT_RULES_SCRATCH_ARENA ? bound : MOAT_RULES_SCRATCH_ARENA);
}

size_t moat_ruleset_scratch_size(const struct moat_ruleset *rs)
{
	return moat_ruleset_scratch_size_for(rs, NULL);
}

void moat_ruleset_stats(const struct moat_ruleset *rs, struct moat_rules_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (rs == NULL)
		return;
	st->scratch_overflows = atomic_load_explicit(
	        &((struct moat_ruleset *)rs)->scratch_overflows, memory_order_relaxed);
	st->regex_limit_hits = atomic_load_explicit(&((struct moat_ruleset *)rs)->regex_limit_hits,
	                                            memory_order_relaxed);
	st->prefilter_unavailable = atomic_load_explicit(
	        &((struct moat_ruleset *)rs)->prefilter_unavailable, memory_order_relaxed);
	st->prefilter_databases = rs->ndbs;
	st->values = rs->nslots;
}
