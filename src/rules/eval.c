/*
 * The evaluator: runs the compiled rules of a ruleset against one request, in order, without
 * allocating. Values come from fields.c (computed on first use); `contains` and `matches`
 * first consult the prefilter bits of their value, which is scanned once by Hyperscan on
 * first use; a rule whose guard bit is not set is skipped without looking at its tree.
 */
#include <string.h>

#include "rules/internal.h"

static int cmp_result(int c, uint8_t op)
{
	switch (op) {
	case MOAT_OP_EQ:
		return c == 0;
	case MOAT_OP_NE:
		return c != 0;
	case MOAT_OP_LT:
		return c < 0;
	case MOAT_OP_LE:
		return c <= 0;
	case MOAT_OP_GT:
		return c > 0;
	case MOAT_OP_GE:
		return c >= 0;
	default:
		return 0;
	}
}

static int slice_cmp(const struct moat_slice *a, const struct moat_slice *b)
{
	size_t m = a->len < b->len ? a->len : b->len;
	int c = m ? memcmp(a->p, b->p, m) : 0;

	if (c != 0)
		return c < 0 ? -1 : 1;
	return (a->len > b->len) - (a->len < b->len);
}

static int contains(const struct moat_slice *s, const struct moat_slice *lit)
{
	if (lit->len == 0)
		return 1;
	if (s->len < lit->len)
		return 0;
	return memmem(s->p, s->len, lit->p, lit->len) != NULL;
}

static int in_str(const struct moat_rules_set *set, const struct moat_slice *s)
{
	uint32_t lo = 0, hi = set->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = slice_cmp(&set->v.str[mid], s);

		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int in_int(const struct moat_rules_set *set, int64_t x)
{
	uint32_t lo = 0, hi = set->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (set->v.num[mid] == x)
			return 1;
		if (set->v.num[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int in_ver(const struct moat_rules_set *set, const struct moat_rules_version *v)
{
	uint32_t lo = 0, hi = set->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = moat_rules_version_compare(&set->v.ver[mid], v);

		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* The ranges are sorted and disjoint: find the last that starts at or before ip. */
static int in_ip(const struct moat_rules_set *set, const unsigned char *ip)
{
	uint32_t lo = 0, hi = set->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (memcmp(set->v.ip[mid].lo, ip, 16) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && memcmp(ip, set->v.ip[lo - 1].hi, 16) <= 0;
}

static int regex(struct moat_rules_ctx *c, uint32_t re, const struct moat_slice *s)
{
	int limited = 0, r;

	r = moat_rules_regex_match(c->rs, c->rs->regexes[re], c->md, s->p, s->len, &limited);
	c->limited += (unsigned)limited;
	return r;
}

/* One element of a value against a leaf. */
static int test(struct moat_rules_ctx *c, const struct moat_rules_node *nd,
                const struct moat_rules_val *v, uint32_t i)
{
	const struct moat_ruleset *rs = c->rs;
	const struct moat_slice *s = v->s != NULL ? &v->s[i] : NULL;
	const struct moat_slice *lit;

	switch (nd->op) {
	case MOAT_N_BOOL:
		return v->num[i] != 0;
	case MOAT_N_CMP_INT:
		return cmp_result((v->num[i] > nd->num) - (v->num[i] < nd->num), nd->cmp);
	case MOAT_N_CMP_STR:
		return cmp_result(slice_cmp(s, &rs->strs[nd->a]), nd->cmp);
	case MOAT_N_CMP_VER:
		/* a malformed version is missing: no comparison holds, not even != */
		return v->ver != NULL &&
		       cmp_result(moat_rules_version_compare(v->ver, &rs->vers[nd->a]), nd->cmp);
	case MOAT_N_IN_IP:
		return in_ip(&rs->sets[nd->a], v->ip + 16 * (size_t)i) ^ (nd->cmp == MOAT_OP_NE);
	case MOAT_N_IN_STR:
		return in_str(&rs->sets[nd->a], s);
	case MOAT_N_IN_INT:
		return in_int(&rs->sets[nd->a], v->num[i]);
	case MOAT_N_IN_VER:
		return v->ver != NULL && in_ver(&rs->sets[nd->a], v->ver);
	case MOAT_N_CONTAINS:
		return contains(s, &rs->strs[nd->a]);
	case MOAT_N_MATCHES:
		return regex(c, nd->a, s);
	case MOAT_N_STARTS:
		lit = &rs->strs[nd->a];
		return s->len >= lit->len && memcmp(s->p, lit->p, lit->len) == 0;
	case MOAT_N_ENDS:
		lit = &rs->strs[nd->a];
		return s->len >= lit->len &&
		       memcmp(s->p + s->len - lit->len, lit->p, lit->len) == 0;
	default:
		return 0;
	}
}

/* A value with its prefilter bits: scanned once, on first use. */
static struct moat_rules_val *scanned(struct moat_rules_ctx *c, uint32_t slot)
{
	const struct moat_rules_slot *sd = &c->rs->slots[slot];
	struct moat_rules_val *v = moat_rules_value(c, slot);
	size_t rows, words = sd->words;
	uint64_t *bits;
	uint32_t i, w;

	if (v == NULL || v->scan != 0)
		return v;
	v->scan = 2;
	if (c->hs == NULL || sd->db < 0)
		return v;
	rows = sd->list ? (size_t)v->n + 1 : 1;
	bits = moat_rules_ctx_alloc(c, rows * words * sizeof(*bits));
	if (bits == NULL)
		return v;
	memset(bits, 0, rows * words * sizeof(*bits));
	for (i = 0; i < v->n; i++) {
		uint64_t *row = sd->list ? bits + (1 + (size_t)i) * words : bits;

		if (moat_rules_prefilter_scan(c->rs->dbs[sd->db], c->hs, v->s[i].p, v->s[i].len,
		                              row) != 0)
			return v;
		if (sd->list) {
			for (w = 0; w < words; w++)
				bits[w] |= row[w];
		}
	}
	v->bits = bits;
	v->scan = 1;
	return v;
}

/* A pattern leaf whose value has been scanned: the bits say where it can be true. */
static int prefiltered(struct moat_rules_ctx *c, const struct moat_rules_node *nd,
                       const struct moat_rules_val *pv, int iter)
{
	const struct moat_rules_slot *ps = &c->rs->slots[nd->pslot];
	const struct moat_rules_val *v;
	uint64_t mask = 1ull << (nd->pat % 64);
	size_t w = nd->pat / 64, words = ps->words;
	uint32_t i;

	if (iter) {
		const uint64_t *row =
		        ps->list ? pv->bits + (1 + (size_t)c->iter_elem) * words : pv->bits;

		if (!(row[w] & mask))
			return 0;
		if (nd->exact)
			return 1;
		v = moat_rules_value(c, nd->slot);
		return v != NULL && c->iter_elem < v->n && test(c, nd, v, c->iter_elem);
	}
	if (!(pv->bits[w] & mask))
		return 0;
	if (nd->exact)
		return 1;
	v = moat_rules_value(c, nd->slot);
	if (v == NULL)
		return 0;
	if (!ps->list)
		return test(c, nd, v, 0);
	for (i = 0; i < v->n && i < pv->n; i++) {
		if ((pv->bits[(1 + (size_t)i) * words + w] & mask) && test(c, nd, v, i))
			return 1;
	}
	return 0;
}

static int leaf(struct moat_rules_ctx *c, const struct moat_rules_node *nd)
{
	const struct moat_rules_slot *sd = &c->rs->slots[nd->slot];
	const struct moat_rules_val *v;
	int iter = sd->list && c->iter_root != MOAT_RULES_NONE && sd->root == c->iter_root;
	uint32_t i;

	if (nd->pat != MOAT_RULES_NONE && c->hs != NULL) {
		const struct moat_rules_val *pv = scanned(c, nd->pslot);

		if (pv == NULL)
			return 0;
		if (pv->scan == 1)
			return prefiltered(c, nd, pv, iter);
	}
	v = moat_rules_value(c, nd->slot);
	if (v == NULL)
		return 0;
	if (iter)
		return c->iter_elem < v->n && test(c, nd, v, c->iter_elem);
	/* a list compared without any()/all(): true if some element is */
	for (i = 0; i < v->n; i++) {
		if (test(c, nd, v, i))
			return 1;
	}
	return 0;
}

static int eval_node(struct moat_rules_ctx *c, uint32_t idx)
{
	const struct moat_rules_node *nd = &c->rs->nodes[idx];
	const uint32_t *kids;
	const struct moat_rules_val *v;
	uint32_t i;
	int r;

	switch (nd->op) {
	case MOAT_N_TRUE:
		return 1;
	case MOAT_N_FALSE:
		return 0;
	case MOAT_N_AND:
		kids = c->rs->kids + nd->a;
		for (i = 0; i < nd->b; i++) {
			if (!eval_node(c, kids[i]))
				return 0;
		}
		return 1;
	case MOAT_N_OR:
		kids = c->rs->kids + nd->a;
		for (i = 0; i < nd->b; i++) {
			if (eval_node(c, kids[i]))
				return 1;
		}
		return 0;
	case MOAT_N_XOR:
		kids = c->rs->kids + nd->a;
		for (r = 0, i = 0; i < nd->b; i++)
			r ^= eval_node(c, kids[i]);
		return r;
	case MOAT_N_NOT:
		return !eval_node(c, nd->a);
	case MOAT_N_ANY:
	case MOAT_N_ALL:
		/* over a missing or empty list, both are false */
		v = moat_rules_value(c, nd->slot);
		if (v == NULL || v->n == 0)
			return 0;
		c->iter_root = nd->slot;
		r = nd->op == MOAT_N_ALL;
		for (i = 0; i < v->n; i++) {
			c->iter_elem = i;
			if (eval_node(c, nd->a) != (nd->op == MOAT_N_ALL)) {
				r = !r;
				break;
			}
		}
		c->iter_root = MOAT_RULES_NONE;
		return r;
	default:
		return leaf(c, nd);
	}
}

/* Lays the evaluation out in the caller's scratch; 0 if it is too small for the fixed part. */
static int setup(struct moat_rules_ctx *c, const struct moat_ruleset *rs,
                 const struct moat_rules_input *in, struct moat_rules_scratch *scratch,
                 unsigned flags)
{
	uintptr_t base, aligned;
	size_t skip, words = (rs->nslots + 63) / 64;

	memset(c, 0, sizeof(*c));
	c->rs = rs;
	c->in = in;
	c->flags = flags;
	c->iter_root = MOAT_RULES_NONE;
	if (scratch == NULL || scratch->mem == NULL)
		return 0;
	base = (uintptr_t)scratch->mem;
	aligned = (base + 15) & ~(uintptr_t)15;
	skip = (size_t)(aligned - base);
	if (scratch->cap < skip || scratch->cap - skip < rs->scratch_fixed)
		return 0;
	c->done = (uint64_t *)(void *)(scratch->mem + skip);
	memset(c->done, 0, words * sizeof(uint64_t));
	c->vals = (struct moat_rules_val *)(void *)(scratch->mem + skip + rs->scratch_vals);
	c->mem = scratch->mem + skip + rs->scratch_fixed;
	c->cap = scratch->cap - skip - rs->scratch_fixed;
	if (rs->ndbs > 0 && !(flags & MOAT_RULES_EVAL_NO_PREFILTER)) {
		c->hs = moat_rules_thread_hs();
		if (c->hs == NULL)
			atomic_fetch_add_explicit(
			        &((struct moat_ruleset *)rs)->prefilter_unavailable, 1,
			        memory_order_relaxed);
	}
	if (rs->nregexes > 0)
		c->md = moat_rules_thread_md();
	return 1;
}

static void account(struct moat_rules_ctx *c)
{
	struct moat_ruleset *rs = (struct moat_ruleset *)c->rs;

	if (c->overflows)
		atomic_fetch_add_explicit(&rs->scratch_overflows, c->overflows,
		                          memory_order_relaxed);
	if (c->limited)
		atomic_fetch_add_explicit(&rs->regex_limit_hits, c->limited, memory_order_relaxed);
}

/*
 * The rules to evaluate, as a bitmap in rule order: those without a guard, and those whose
 * guard bit hit. Scanning every guarding value here is no extra work: the rule loop would
 * have scanned each of them on its first guarded rule anyway.
 */
static void candidates(struct moat_rules_ctx *c, uint64_t *cand)
{
	const struct moat_ruleset *rs = c->rs;
	uint32_t k, w;

	if (c->hs == NULL) {
		memcpy(cand, rs->enabled, rs->rule_words * sizeof(uint64_t));
		return;
	}
	memcpy(cand, rs->always, rs->rule_words * sizeof(uint64_t));
	for (k = 0; k < rs->ngslots; k++) {
		const struct moat_rules_gslot *gs = &rs->gslots[k];
		const uint32_t *off = rs->pat_off + gs->first;
		const struct moat_rules_val *pv = scanned(c, gs->slot);
		uint32_t i, from, to;

		if (pv == NULL)
			continue; /* missing: no rule it guards can be true */
		if (pv->scan != 1) {
			/* not scanned (scratch full): every rule it guards runs, and is evaluated
			 * directly */
			for (i = off[0]; i < off[gs->npat]; i++)
				cand[rs->guard_rules[i] / 64] |= 1ull << (rs->guard_rules[i] % 64);
			continue;
		}
		for (w = 0; w < rs->slots[gs->slot].words; w++) {
			uint64_t bits = pv->bits[w];

			while (bits != 0) {
				uint32_t bit = w * 64 + (uint32_t)__builtin_ctzll(bits);

				bits &= bits - 1;
				from = off[bit];
				to = off[bit + 1];
				for (i = from; i < to; i++)
					cand[rs->guard_rules[i] / 64] |=
					        1ull << (rs->guard_rules[i] % 64);
			}
		}
	}
}

void moat_rules_eval_flags(const struct moat_ruleset *rs, const struct moat_rules_input *in,
                           struct moat_rules_scratch *scratch, moat_rules_hit_fn hit, void *arg,
                           struct moat_rules_verdict *v, unsigned flags)
{
	struct moat_rules_ctx c;
	uint64_t *cand;
	uint32_t w;

	v->action = MOAT_RULE_LOG;
	v->rule = NULL;
	if (rs == NULL || in == NULL || rs->nrules == 0)
		return;
	if (!setup(&c, rs, in, scratch, flags)) {
		/* no room even for the value table: nothing can be evaluated */
		atomic_fetch_add_explicit(&((struct moat_ruleset *)rs)->scratch_overflows, 1,
		                          memory_order_relaxed);
		return;
	}
	cand = (uint64_t *)(void *)((char *)c.done + rs->scratch_cand);
	candidates(&c, cand);
	for (w = 0; w < rs->rule_words; w++) {
		uint64_t bits = cand[w];

		while (bits != 0) {
			size_t i = (size_t)w * 64 + (size_t)__builtin_ctzll(bits);
			const struct moat_rules_exec *x = &rs->exec[i];
			struct moat_rule *r = &rs->rules[i];

			bits &= bits - 1;
			if (!eval_node(&c, x->root))
				continue;
			if (x->mode == MOAT_RULE_DRY_RUN) {
				atomic_fetch_add_explicit(&r->hits_dry_run, 1,
				                          memory_order_relaxed);
				if (hit != NULL)
					hit(arg, r);
				continue;
			}
			atomic_fetch_add_explicit(&r->hits_enforce, 1, memory_order_relaxed);
			if (hit != NULL)
				hit(arg, r);
			if (x->action != MOAT_RULE_LOG) {
				v->action = (enum moat_rule_action)x->action;
				v->rule = r;
				goto out;
			}
		}
	}
out:
	account(&c);
}

void moat_rules_eval(const struct moat_ruleset *rs, const struct moat_rules_input *in,
                     struct moat_rules_scratch *scratch, moat_rules_hit_fn hit, void *arg,
                     struct moat_rules_verdict *v)
{
	moat_rules_eval_flags(rs, in, scratch, hit, arg, v, 0);
}

int moat_rules_eval_rule(const struct moat_ruleset *rs, size_t i, const struct moat_rules_input *in,
                         struct moat_rules_scratch *scratch, unsigned flags)
{
	struct moat_rules_ctx c;
	int r;

	if (rs == NULL || in == NULL || i >= rs->nrules || !setup(&c, rs, in, scratch, flags))
		return 0;
	r = eval_node(&c, rs->root[i]);
	account(&c);
	return r;
}
