/*
 * The parser of the rule language: recursive descent with one token of look-ahead, building
 * an untyped tree (the checker gives it meaning). Precedence, loosest first:
 *
 *   or ||   <   xor ^^   <   and &&   <   not !   <   comparison
 *
 * Chains of one operator are n-ary nodes, so `a or b or ... or z` is one level deep whatever
 * its length; only parentheses, `not` and function calls nest, and nesting is bounded by the
 * limit `max_depth`, which also bounds the recursion of this parser and of the evaluator.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "rules/internal.h"

struct parser {
	struct moat_rules_lexer lx;
	struct moat_rules_token tok; /* the current token */
	struct moat_rules_arena *a;
	struct moat_rules_diag *d;
	unsigned depth, max_depth;
	int failed; /* one error per expression: later ones would mostly be echoes */
};

static void error_at(struct parser *p, size_t pos, const char *msg)
{
	if (p->failed)
		return;
	p->failed = 1;
	moat_rules_diag(p->d, pos, "%s", msg);
}

static void next(struct parser *p)
{
	int r;

	if (p->failed)
		return;
	r = moat_rules_lex(&p->lx, &p->tok);
	if (r == MOAT_ENOMEM)
		error_at(p, p->lx.pos, "out of memory");
	else if (r != MOAT_OK)
		error_at(p, p->lx.err_pos, p->lx.err);
	if (r != MOAT_OK)
		p->tok.kind = MOAT_TK_EOF;
}

static void unexpected(struct parser *p, const char *wanted)
{
	char msg[256];

	if (p->tok.kind == MOAT_TK_NAME)
		snprintf(msg, sizeof(msg), "expected %s, found '%.*s'", wanted,
		         (int)(p->tok.len > 64 ? 64 : p->tok.len), p->tok.str);
	else
		snprintf(msg, sizeof(msg), "expected %s, found %s", wanted,
		         moat_rules_tok_name(p->tok.kind));
	error_at(p, p->tok.pos, msg);
}

static struct moat_rules_ast *node(struct parser *p, enum moat_rules_ast_kind kind, size_t pos)
{
	struct moat_rules_ast *n = moat_rules_arena_alloc(p->a, sizeof(*n));

	if (n == NULL) {
		error_at(p, pos, "out of memory");
		return NULL;
	}
	n->kind = kind;
	n->pos = pos;
	n->slot = MOAT_RULES_NONE;
	return n;
}

/* A growable list of children, copied into the arena when complete. */
struct kids {
	struct moat_rules_ast **v;
	unsigned n, cap;
};

static int kids_push(struct parser *p, struct kids *k, struct moat_rules_ast *n)
{
	if (k->n == k->cap) {
		unsigned cap = k->cap ? k->cap * 2 : 8;
		void *v = moat_realloc(k->v, cap * sizeof(*k->v));

		if (v == NULL) {
			error_at(p, p->tok.pos, "out of memory");
			return -1;
		}
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n++] = n;
	return 0;
}

static int kids_store(struct parser *p, struct kids *k, struct moat_rules_ast *n)
{
	n->kids = moat_rules_arena_alloc(p->a, (k->n ? k->n : 1) * sizeof(*n->kids));
	if (n->kids == NULL) {
		error_at(p, n->pos, "out of memory");
		return -1;
	}
	if (k->n > 0)
		memcpy(n->kids, k->v, k->n * sizeof(*n->kids));
	n->nkids = k->n;
	return 0;
}

static int enter(struct parser *p, size_t pos)
{
	char msg[96];

	if (++p->depth <= p->max_depth)
		return 0;
	snprintf(msg, sizeof(msg), "expression nested deeper than %u levels", p->max_depth);
	error_at(p, pos, msg);
	return -1;
}

static struct moat_rules_ast *parse_or(struct parser *p);

static struct moat_rules_ast *literal(struct parser *p)
{
	struct moat_rules_ast *n = NULL;

	switch (p->tok.kind) {
	case MOAT_TK_STRING:
		n = node(p, MOAT_AST_STR, p->tok.pos);
		if (n != NULL) {
			n->str = p->tok.str;
			n->len = p->tok.len;
			n->raw = p->tok.raw;
			n->body = p->tok.body;
		}
		break;
	case MOAT_TK_INT:
		n = node(p, MOAT_AST_INT, p->tok.pos);
		if (n != NULL)
			n->num = p->tok.num;
		break;
	case MOAT_TK_IP:
		n = node(p, MOAT_AST_IP, p->tok.pos);
		if (n != NULL)
			n->ip = p->tok.ip;
		break;
	case MOAT_TK_TRUE:
	case MOAT_TK_FALSE:
		n = node(p, MOAT_AST_BOOL, p->tok.pos);
		if (n != NULL)
			n->num = p->tok.kind == MOAT_TK_TRUE;
		break;
	default:
		return NULL;
	}
	next(p);
	return n;
}

/* { "a" "b" } or { 10.0.0.0/8, 192.0.2.1 }: commas are optional. */
static struct moat_rules_ast *parse_set(struct parser *p)
{
	struct moat_rules_ast *n = node(p, MOAT_AST_SET, p->tok.pos);
	struct kids k = {0};

	if (n == NULL)
		return NULL;
	if (p->tok.kind != MOAT_TK_LBRACE) {
		unexpected(p, "'{' after 'in'");
		return NULL;
	}
	next(p);
	while (!p->failed && p->tok.kind != MOAT_TK_RBRACE) {
		struct moat_rules_ast *e;

		if (p->tok.kind == MOAT_TK_EOF) {
			unexpected(p, "'}' to close the set");
			break;
		}
		if (p->tok.kind != MOAT_TK_STRING && p->tok.kind != MOAT_TK_INT &&
		    p->tok.kind != MOAT_TK_IP) {
			unexpected(p, "a string, a number or an IP address in the set");
			break;
		}
		e = literal(p);
		if (e == NULL || kids_push(p, &k, e) != 0)
			break;
		if (p->tok.kind == MOAT_TK_COMMA)
			next(p);
	}
	if (!p->failed && k.n == 0)
		error_at(p, n->pos, "empty set: 'in { }' needs at least one value");
	if (!p->failed) {
		next(p);
		kids_store(p, &k, n);
	}
	moat_free(k.v);
	return p->failed ? NULL : n;
}

static struct moat_rules_ast *parse_call(struct parser *p, struct moat_rules_ast *n)
{
	struct kids k = {0};

	if (enter(p, n->pos) != 0)
		return NULL;
	next(p); /* ( */
	if (p->tok.kind != MOAT_TK_RPAREN) {
		for (;;) {
			struct moat_rules_ast *arg = parse_or(p);

			if (arg == NULL || kids_push(p, &k, arg) != 0)
				break;
			if (p->tok.kind == MOAT_TK_COMMA) {
				next(p);
				continue;
			}
			if (p->tok.kind != MOAT_TK_RPAREN)
				unexpected(p, "',' or ')' in the arguments");
			break;
		}
	}
	if (!p->failed) {
		next(p);
		kids_store(p, &k, n);
	}
	moat_free(k.v);
	p->depth--;
	return p->failed ? NULL : n;
}

/* A field, a field with a key, a function call, a literal or a parenthesised expression. */
static struct moat_rules_ast *parse_value(struct parser *p)
{
	struct moat_rules_ast *n;

	switch (p->tok.kind) {
	case MOAT_TK_LPAREN:
		if (enter(p, p->tok.pos) != 0)
			return NULL;
		next(p);
		n = parse_or(p);
		if (n != NULL && p->tok.kind != MOAT_TK_RPAREN) {
			unexpected(p, "')'");
			n = NULL;
		}
		next(p);
		p->depth--;
		return p->failed ? NULL : n;
	case MOAT_TK_NAME:
		n = node(p, MOAT_AST_FIELD, p->tok.pos);
		if (n == NULL)
			return NULL;
		n->name = p->tok.str;
		n->namelen = p->tok.len;
		next(p);
		if (p->tok.kind == MOAT_TK_LPAREN) {
			n->kind = MOAT_AST_CALL;
			return parse_call(p, n);
		}
		if (p->tok.kind == MOAT_TK_LBRACKET) {
			next(p);
			if (p->tok.kind != MOAT_TK_STRING) {
				unexpected(p, "a string key, as in headers[\"user-agent\"]");
				return NULL;
			}
			n->key = literal(p);
			if (!p->failed && p->tok.kind != MOAT_TK_RBRACKET) {
				unexpected(p, "']'");
				return NULL;
			}
			next(p);
		}
		return p->failed ? NULL : n;
	case MOAT_TK_STRING:
	case MOAT_TK_INT:
	case MOAT_TK_IP:
	case MOAT_TK_TRUE:
	case MOAT_TK_FALSE:
		return literal(p);
	default:
		unexpected(p, "a field, a function or '('");
		return NULL;
	}
}

static int cmp_op(enum moat_rules_tok k, enum moat_rules_op *op)
{
	switch (k) {
	case MOAT_TK_EQ:
		*op = MOAT_OP_EQ;
		return 1;
	case MOAT_TK_NE:
		*op = MOAT_OP_NE;
		return 1;
	case MOAT_TK_LT:
		*op = MOAT_OP_LT;
		return 1;
	case MOAT_TK_LE:
		*op = MOAT_OP_LE;
		return 1;
	case MOAT_TK_GT:
		*op = MOAT_OP_GT;
		return 1;
	case MOAT_TK_GE:
		*op = MOAT_OP_GE;
		return 1;
	case MOAT_TK_CONTAINS:
		*op = MOAT_OP_CONTAINS;
		return 1;
	case MOAT_TK_MATCHES:
		*op = MOAT_OP_MATCHES;
		return 1;
	case MOAT_TK_IN:
		*op = MOAT_OP_IN;
		return 1;
	default:
		return 0;
	}
}

static struct moat_rules_ast *parse_comparison(struct parser *p)
{
	struct moat_rules_ast *lhs = parse_value(p), *rhs, *n;
	enum moat_rules_op op;

	if (lhs == NULL || !cmp_op(p->tok.kind, &op))
		return lhs;
	n = node(p, MOAT_AST_CMP, p->tok.pos);
	if (n == NULL)
		return NULL;
	n->op = op;
	next(p);
	rhs = op == MOAT_OP_IN ? parse_set(p) : parse_value(p);
	if (rhs == NULL)
		return NULL;
	n->kids = moat_rules_arena_alloc(p->a, 2 * sizeof(*n->kids));
	if (n->kids == NULL) {
		error_at(p, n->pos, "out of memory");
		return NULL;
	}
	n->kids[0] = lhs;
	n->kids[1] = rhs;
	n->nkids = 2;
	if (cmp_op(p->tok.kind, &op)) {
		error_at(p, p->tok.pos, "comparisons do not chain: join them with 'and'");
		return NULL;
	}
	return n;
}

static struct moat_rules_ast *parse_unary(struct parser *p)
{
	struct moat_rules_ast *n, *kid;

	if (p->tok.kind != MOAT_TK_NOT)
		return parse_comparison(p);
	n = node(p, MOAT_AST_NOT, p->tok.pos);
	if (n == NULL || enter(p, p->tok.pos) != 0)
		return NULL;
	next(p);
	kid = parse_unary(p);
	p->depth--;
	if (kid == NULL)
		return NULL;
	n->kids = moat_rules_arena_alloc(p->a, sizeof(*n->kids));
	if (n->kids == NULL) {
		error_at(p, n->pos, "out of memory");
		return NULL;
	}
	n->kids[0] = kid;
	n->nkids = 1;
	return n;
}

/* One level of the n-ary logical operators: level 0 is or, 1 xor, 2 and. */
static struct moat_rules_ast *parse_level(struct parser *p, int level)
{
	static const enum moat_rules_tok toks[] = {MOAT_TK_OR, MOAT_TK_XOR, MOAT_TK_AND};
	static const enum moat_rules_ast_kind kinds[] = {MOAT_AST_OR, MOAT_AST_XOR, MOAT_AST_AND};
	struct moat_rules_ast *first, *n;
	struct kids k = {0};

	first = level == 2 ? parse_unary(p) : parse_level(p, level + 1);
	if (first == NULL || p->tok.kind != toks[level])
		return first;
	n = node(p, kinds[level], p->tok.pos);
	if (n == NULL || kids_push(p, &k, first) != 0)
		goto out;
	while (!p->failed && p->tok.kind == toks[level]) {
		struct moat_rules_ast *kid;

		next(p);
		kid = level == 2 ? parse_unary(p) : parse_level(p, level + 1);
		if (kid == NULL || kids_push(p, &k, kid) != 0)
			break;
	}
	if (!p->failed)
		kids_store(p, &k, n);
out:
	moat_free(k.v);
	return p->failed ? NULL : n;
}

static struct moat_rules_ast *parse_or(struct parser *p)
{
	return parse_level(p, 0);
}

struct moat_rules_ast *moat_rules_parse(const char *src, size_t len, unsigned max_depth,
                                        struct moat_rules_arena *a, struct moat_rules_diag *d)
{
	struct parser p;
	struct moat_rules_ast *root;

	memset(&p, 0, sizeof(p));
	moat_rules_lex_init(&p.lx, src, len, a);
	p.a = a;
	p.d = d;
	p.max_depth = max_depth;
	next(&p);
	if (p.tok.kind == MOAT_TK_EOF && !p.failed) {
		error_at(&p, p.tok.pos, "empty expression");
		return NULL;
	}
	root = parse_or(&p);
	if (root != NULL && p.tok.kind != MOAT_TK_EOF)
		unexpected(&p, "'and', 'or', 'xor' or the end of the expression");
	return p.failed ? NULL : root;
}
