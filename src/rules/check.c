/*
 * The checker: resolves field and function names, gives every node its type, and refuses
 * what cannot be evaluated, each time with the position of the offending token. After it,
 * the compiler can lower the tree without further checks.
 *
 * Rules of the language enforced here (docs/rules.md has them for users):
 * - a comparison is `value OP literal`: fields and functions on the left, constants on the
 *   right, so that every constant is prepared once at compile time;
 * - the operators each type allows, and the literal each needs (a version literal must parse);
 * - lower()/upper() compared with a literal that they can never produce is refused;
 * - any()/all() take a condition over exactly one list (a field and its key), and do not nest;
 * - on a TCP listener, http.* fields are refused.
 */
#include <stdio.h>
#include <string.h>

#include "rules/internal.h"

#define SUGGEST_MAX_DISTANCE 3
#define NAME_MAX_SHOWN 64

static const struct {
	const char *name;
	enum moat_rules_func_id id;
	unsigned nargs;
} funcs[MOAT_FN_NUM] = {
        {"lower", MOAT_FN_LOWER, 1},
        {"upper", MOAT_FN_UPPER, 1},
        {"len", MOAT_FN_LEN, 1},
        {"count", MOAT_FN_COUNT, 1},
        {"url_decode", MOAT_FN_URL_DECODE, 1},
        {"starts_with", MOAT_FN_STARTS_WITH, 2},
        {"ends_with", MOAT_FN_ENDS_WITH, 2},
        {"any", MOAT_FN_ANY, 1},
        {"all", MOAT_FN_ALL, 1},
};

struct checker {
	enum moat_rules_scope scope;
	const struct moat_rules_limits *lim;
	struct moat_rules_diag *d;
	int in_quantifier;
};

static int is_predicate(unsigned func)
{
	return func == MOAT_FN_STARTS_WITH || func == MOAT_FN_ENDS_WITH || func == MOAT_FN_ANY ||
	       func == MOAT_FN_ALL;
}

static int is_literal(const struct moat_rules_ast *n)
{
	return n->kind == MOAT_AST_STR || n->kind == MOAT_AST_INT || n->kind == MOAT_AST_IP ||
	       n->kind == MOAT_AST_BOOL;
}

static const char *literal_kind(const struct moat_rules_ast *n)
{
	switch (n->kind) {
	case MOAT_AST_STR:
		return "a string";
	case MOAT_AST_INT:
		return "a number";
	case MOAT_AST_IP:
		return "an IP address";
	case MOAT_AST_BOOL:
		return "true or false";
	case MOAT_AST_SET:
		return "a set";
	default:
		return "an expression";
	}
}

/* Edit distance, for "did you mean" (names are short: a fixed row suffices). */
static size_t distance(const char *a, size_t an, const char *b, size_t bn)
{
	size_t row[NAME_MAX_SHOWN + 1], i, j;

	if (an > NAME_MAX_SHOWN || bn > NAME_MAX_SHOWN)
		return SIZE_MAX;
	for (j = 0; j <= bn; j++)
		row[j] = j;
	for (i = 1; i <= an; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= bn; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[bn];
}

static const char *suggest_field(const char *name, size_t len)
{
	size_t i, best = SUGGEST_MAX_DISTANCE + 1;
	const char *found = NULL;

	for (i = 0; i < MOAT_F_COUNT; i++) {
		const char *f = moat_rules_fields[i].name;
		size_t dd = distance(name, len, f, strlen(f));

		if (dd < best) {
			best = dd;
			found = f;
		}
	}
	return found;
}

static const char *suggest_func(const char *name, size_t len)
{
	size_t i, best = SUGGEST_MAX_DISTANCE;
	const char *found = NULL;

	for (i = 0; i < MOAT_FN_NUM; i++) {
		size_t dd = distance(name, len, funcs[i].name, strlen(funcs[i].name));

		if (dd < best) {
			best = dd;
			found = funcs[i].name;
		}
	}
	return found;
}

/* "http.request.uri.path", "lower(...)": how a value is named in messages. */
static void describe(const struct moat_rules_ast *n, char *buf, size_t cap)
{
	size_t len = n->namelen > NAME_MAX_SHOWN ? NAME_MAX_SHOWN : n->namelen;

	if (n->kind == MOAT_AST_FIELD && n->key != NULL)
		snprintf(buf, cap, "%.*s[\"%.*s\"]", (int)len, n->name,
		         (int)(n->key->len > 32 ? 32 : n->key->len), n->key->str);
	else if (n->kind == MOAT_AST_FIELD)
		snprintf(buf, cap, "%.*s", (int)len, n->name);
	else if (n->kind == MOAT_AST_CALL)
		snprintf(buf, cap, "%.*s(...)", (int)len, n->name);
	else
		snprintf(buf, cap, "%s", literal_kind(n));
}

static void check_value(struct checker *ck, struct moat_rules_ast *n);
static void check_cond(struct checker *ck, struct moat_rules_ast *n);

static void check_field(struct checker *ck, struct moat_rules_ast *n)
{
	const struct moat_rules_field *f = moat_rules_field_find(n->name, n->namelen);
	int len = (int)(n->namelen > NAME_MAX_SHOWN ? NAME_MAX_SHOWN : n->namelen);

	n->type = MOAT_RT_ERR;
	if (f == NULL) {
		const char *s = suggest_field(n->name, n->namelen);

		if (s != NULL)
			moat_rules_diag(ck->d, n->pos, "unknown field %.*s (did you mean %s?)", len,
			                n->name, s);
		else
			moat_rules_diag(ck->d, n->pos, "unknown field %.*s", len, n->name);
		return;
	}
	if (f->http && ck->scope == MOAT_RULES_TCP) {
		moat_rules_diag(ck->d, n->pos, "field %s needs an HTTP listener", f->name);
		return;
	}
	if (f->map && n->key == NULL) {
		moat_rules_diag(ck->d, n->pos,
		                "%s needs a key, as in %s[\"name\"] (or use %s.names / %s.values)",
		                f->name, f->name, f->name, f->name);
		return;
	}
	if (!f->map && n->key != NULL) {
		moat_rules_diag(ck->d, n->key->pos, "%s takes no [key]", f->name);
		return;
	}
	if (n->key != NULL && n->key->len == 0) {
		moat_rules_diag(ck->d, n->key->pos, "empty key");
		return;
	}
	n->field = f->id;
	n->type = f->type;
	n->list = f->list;
	n->root = f->list ? n : NULL;
}

static int find_func(struct checker *ck, struct moat_rules_ast *n)
{
	unsigned i;
	int len = (int)(n->namelen > NAME_MAX_SHOWN ? NAME_MAX_SHOWN : n->namelen);
	const char *s;

	for (i = 0; i < MOAT_FN_NUM; i++) {
		if (strlen(funcs[i].name) == n->namelen &&
		    memcmp(funcs[i].name, n->name, n->namelen) == 0)
			break;
	}
	if (i == MOAT_FN_NUM) {
		s = suggest_func(n->name, n->namelen);
		if (s != NULL)
			moat_rules_diag(ck->d, n->pos,
			                "unknown function %.*s() (did you mean %s()?)", len,
			                n->name, s);
		else
			moat_rules_diag(ck->d, n->pos, "unknown function %.*s()", len, n->name);
		return -1;
	}
	n->func = i;
	if (n->nkids != funcs[i].nargs) {
		moat_rules_diag(ck->d, n->pos, "%s() takes %u argument%s, not %u", funcs[i].name,
		                funcs[i].nargs, funcs[i].nargs == 1 ? "" : "s", n->nkids);
		return -1;
	}
	return 0;
}

/* The argument of a value function must itself be a value: a field or a function of one. */
static int value_arg(struct checker *ck, struct moat_rules_ast *fn, struct moat_rules_ast *arg)
{
	if (arg->kind != MOAT_AST_FIELD && arg->kind != MOAT_AST_CALL) {
		moat_rules_diag(ck->d, arg->pos, "%s() takes a field or a function of one, not %s",
		                funcs[fn->func].name, literal_kind(arg));
		return -1;
	}
	check_value(ck, arg);
	return arg->type == MOAT_RT_ERR ? -1 : 0;
}

static int string_arg(struct checker *ck, struct moat_rules_ast *fn, struct moat_rules_ast *arg)
{
	char what[128];

	if (value_arg(ck, fn, arg) != 0)
		return -1;
	if (arg->type != MOAT_RT_STR && arg->type != MOAT_RT_VER) {
		describe(arg, what, sizeof(what));
		moat_rules_diag(ck->d, arg->pos, "%s() takes a string, and %s is %s %s",
		                funcs[fn->func].name, what, arg->list ? "a" : "an",
		                moat_rules_type_name((enum moat_rules_type)arg->type, arg->list));
		return -1;
	}
	return 0;
}

static void check_value_call(struct checker *ck, struct moat_rules_ast *n)
{
	struct moat_rules_ast *arg;

	n->type = MOAT_RT_ERR;
	if (find_func(ck, n) != 0)
		return;
	if (is_predicate(n->func)) {
		moat_rules_diag(ck->d, n->pos, "%s() is a condition, not a value to compare",
		                funcs[n->func].name);
		return;
	}
	arg = n->kids[0];
	if (n->func == MOAT_FN_COUNT) {
		char what[128];

		if (value_arg(ck, n, arg) != 0)
			return;
		if (!arg->list) {
			describe(arg, what, sizeof(what));
			moat_rules_diag(ck->d, arg->pos,
			                "count() takes a list field, and %s has one value", what);
			return;
		}
		n->type = MOAT_RT_INT;
		return;
	}
	if (string_arg(ck, n, arg) != 0)
		return;
	n->type = n->func == MOAT_FN_LEN ? MOAT_RT_INT : MOAT_RT_STR;
	n->list = arg->list;
	n->root = arg->root;
}

static void check_value(struct checker *ck, struct moat_rules_ast *n)
{
	if (n->kind == MOAT_AST_FIELD)
		check_field(ck, n);
	else if (n->kind == MOAT_AST_CALL)
		check_value_call(ck, n);
	else
		n->type = MOAT_RT_ERR;
}

/* Whether a literal contains a letter that lower() (or upper()) can never produce. */
static int impossible_case(const struct moat_rules_ast *lhs, const struct moat_rules_ast *lit)
{
	size_t i;

	if (lhs->kind != MOAT_AST_CALL || lit->kind != MOAT_AST_STR)
		return 0;
	for (i = 0; i < lit->len; i++) {
		unsigned char c = (unsigned char)lit->str[i];

		if (lhs->func == MOAT_FN_LOWER && c >= 'A' && c <= 'Z')
			return 1;
		if (lhs->func == MOAT_FN_UPPER && c >= 'a' && c <= 'z')
			return 1;
	}
	return 0;
}

static int case_check(struct checker *ck, const struct moat_rules_ast *lhs,
                      const struct moat_rules_ast *lit)
{
	if (!impossible_case(lhs, lit))
		return 0;
	moat_rules_diag(ck->d, lit->pos, "%s() never produces this literal: write it in %s case",
	                lhs->func == MOAT_FN_LOWER ? "lower" : "upper",
	                lhs->func == MOAT_FN_LOWER ? "lower" : "upper");
	return -1;
}

static int version_literal(struct checker *ck, const struct moat_rules_ast *lit)
{
	struct moat_rules_version v;

	if (lit->kind != MOAT_AST_STR) {
		moat_rules_diag(
		        ck->d, lit->pos,
		        "a version compares with a version string such as \"1.2.3\", not %s",
		        literal_kind(lit));
		return -1;
	}
	if (moat_rules_version_parse(lit->str, lit->len, &v) != MOAT_OK) {
		moat_rules_diag(ck->d, lit->pos,
		                "bad version \"%.*s\": expected numbers separated by dots, an "
		                "optional -pre.release and +build, as in \"2.10.0-rc.1\"",
		                (int)(lit->len > 40 ? 40 : lit->len), lit->str);
		return -1;
	}
	return 0;
}

/* The literal (or set element) that a value of type t needs for op; -1 after an error. */
static int literal_for(struct checker *ck, const struct moat_rules_ast *lhs, enum moat_rules_op op,
                       const struct moat_rules_ast *lit)
{
	char what[128];
	const char *want = NULL;

	switch ((enum moat_rules_type)lhs->type) {
	case MOAT_RT_BOOL:
		if (lit->kind != MOAT_AST_BOOL)
			want = "true or false";
		break;
	case MOAT_RT_INT:
		if (lit->kind != MOAT_AST_INT)
			want = "a number";
		break;
	case MOAT_RT_STR:
		if (lit->kind != MOAT_AST_STR)
			want = "a string";
		break;
	case MOAT_RT_IP:
		if (lit->kind != MOAT_AST_IP)
			want = "an IP address or CIDR";
		break;
	case MOAT_RT_VER:
		if (op == MOAT_OP_CONTAINS || op == MOAT_OP_MATCHES) {
			if (lit->kind != MOAT_AST_STR)
				want = "a string";
			break;
		}
		return version_literal(ck, lit);
	default:
		return -1;
	}
	if (want != NULL) {
		describe(lhs, what, sizeof(what));
		moat_rules_diag(ck->d, lit->pos, "%s is %s %s: compare it with %s, not %s", what,
		                lhs->type == MOAT_RT_INT ? "an" : "a",
		                moat_rules_type_name((enum moat_rules_type)lhs->type, 0), want,
		                literal_kind(lit));
		return -1;
	}
	if (op != MOAT_OP_MATCHES && case_check(ck, lhs, lit) != 0)
		return -1;
	if (op == MOAT_OP_MATCHES && lit->len > ck->lim->max_regex_len) {
		moat_rules_diag(ck->d, lit->pos, "regular expression longer than %zu bytes",
		                ck->lim->max_regex_len);
		return -1;
	}
	return 0;
}

/* Which operators each type has. */
static int op_allowed(struct checker *ck, const struct moat_rules_ast *n,
                      const struct moat_rules_ast *lhs)
{
	enum moat_rules_type t = (enum moat_rules_type)lhs->type;
	enum moat_rules_op op = n->op;
	char what[128];
	const char *why = NULL;

	switch (t) {
	case MOAT_RT_BOOL:
		if (op != MOAT_OP_EQ && op != MOAT_OP_NE)
			why = "a bool only compares with == and != (or use it alone, or with not)";
		break;
	case MOAT_RT_INT:
		if (op == MOAT_OP_CONTAINS || op == MOAT_OP_MATCHES)
			why = "a number has ==, !=, <, <=, >, >= and in";
		break;
	case MOAT_RT_IP:
		if (op != MOAT_OP_EQ && op != MOAT_OP_NE && op != MOAT_OP_IN)
			why = "an IP address has ==, != and in (with addresses and CIDRs)";
		break;
	case MOAT_RT_STR:
	case MOAT_RT_VER:
		break;
	default:
		return -1;
	}
	if (why == NULL)
		return 0;
	describe(lhs, what, sizeof(what));
	moat_rules_diag(ck->d, n->pos, "'%s' does not apply to %s: %s", moat_rules_op_name(op),
	                what, why);
	return -1;
}

static void check_cmp(struct checker *ck, struct moat_rules_ast *n)
{
	struct moat_rules_ast *lhs = n->kids[0], *rhs = n->kids[1];
	unsigned i;

	n->type = MOAT_RT_BOOL;
	if (is_literal(lhs)) {
		moat_rules_diag(ck->d, lhs->pos,
		                "the left side of '%s' must be a field or a function (constants go "
		                "on the right)",
		                moat_rules_op_name(n->op));
		return;
	}
	if (lhs->kind == MOAT_AST_CALL) {
		if (find_func(ck, lhs) != 0)
			return;
		if (is_predicate(lhs->func)) {
			moat_rules_diag(
			        ck->d, n->pos,
			        "'%s' compares a value, and %s() is a condition (use it alone, "
			        "or with not)",
			        moat_rules_op_name(n->op), funcs[lhs->func].name);
			return;
		}
	} else if (lhs->kind != MOAT_AST_FIELD) {
		moat_rules_diag(ck->d, n->pos, "'%s' compares a value, not a condition",
		                moat_rules_op_name(n->op));
		return;
	}
	check_value(ck, lhs);
	if (lhs->type == MOAT_RT_ERR)
		return;
	if (n->op != MOAT_OP_IN && !is_literal(rhs)) {
		moat_rules_diag(ck->d, rhs->pos,
		                "the right side of '%s' must be a literal (a string, a number, an "
		                "IP address or true/false)",
		                moat_rules_op_name(n->op));
		return;
	}
	if (op_allowed(ck, n, lhs) != 0)
		return;
	if (n->op != MOAT_OP_IN) {
		literal_for(ck, lhs, n->op, rhs);
		return;
	}
	if (lhs->type == MOAT_RT_BOOL) {
		moat_rules_diag(ck->d, n->pos, "'in' does not apply to a bool");
		return;
	}
	for (i = 0; i < rhs->nkids; i++) {
		if (literal_for(ck, lhs, n->op, rhs->kids[i]) != 0)
			return;
	}
}

static void check_pred_call(struct checker *ck, struct moat_rules_ast *n);

static void check_cond(struct checker *ck, struct moat_rules_ast *n)
{
	char what[128];
	unsigned i;

	n->type = MOAT_RT_BOOL;
	switch (n->kind) {
	case MOAT_AST_OR:
	case MOAT_AST_XOR:
	case MOAT_AST_AND:
	case MOAT_AST_NOT:
		for (i = 0; i < n->nkids; i++)
			check_cond(ck, n->kids[i]);
		return;
	case MOAT_AST_BOOL:
		return;
	case MOAT_AST_CMP:
		check_cmp(ck, n);
		return;
	case MOAT_AST_CALL:
		if (find_func(ck, n) != 0)
			return;
		if (is_predicate(n->func)) {
			check_pred_call(ck, n);
			return;
		}
		check_value_call(ck, n);
		break;
	case MOAT_AST_FIELD:
		check_field(ck, n);
		break;
	default:
		moat_rules_diag(ck->d, n->pos,
		                "%s is not a condition: compare a field with it, as in "
		                "http.request.method == \"GET\"",
		                literal_kind(n));
		return;
	}
	if (n->type == MOAT_RT_ERR || n->type == MOAT_RT_BOOL)
		return;
	describe(n, what, sizeof(what));
	moat_rules_diag(
	        ck->d, n->pos,
	        "%s is %s %s, not a condition: compare it with ==, contains, matches, in...", what,
	        n->type == MOAT_RT_INT || n->type == MOAT_RT_IP ? "an" : "a",
	        moat_rules_type_name((enum moat_rules_type)n->type, n->list));
	n->type = MOAT_RT_ERR;
}

/* Two list values are the same list when they read the same field with the same key. */
static int same_list(const struct moat_rules_ast *a, const struct moat_rules_ast *b)
{
	size_t i;

	if (a->field != b->field)
		return 0;
	if (a->key == NULL || b->key == NULL)
		return a->key == b->key;
	if (a->key->len != b->key->len)
		return 0;
	for (i = 0; i < a->key->len; i++) {
		unsigned char x = (unsigned char)a->key->str[i], y = (unsigned char)b->key->str[i];

		if (a->field == MOAT_F_HEADERS) {
			x = x >= 'A' && x <= 'Z' ? (unsigned char)(x + 32) : x;
			y = y >= 'A' && y <= 'Z' ? (unsigned char)(y + 32) : y;
		}
		if (x != y)
			return 0;
	}
	return 1;
}

/* The list an any()/all() iterates: every list operand below must be the same one. */
static int find_root(struct checker *ck, const struct moat_rules_ast *n,
                     const struct moat_rules_ast **root)
{
	const struct moat_rules_ast *v = NULL;
	char what[128];
	unsigned i;

	switch (n->kind) {
	case MOAT_AST_OR:
	case MOAT_AST_XOR:
	case MOAT_AST_AND:
	case MOAT_AST_NOT:
		for (i = 0; i < n->nkids; i++) {
			if (find_root(ck, n->kids[i], root) != 0)
				return -1;
		}
		return 0;
	case MOAT_AST_CMP:
		v = n->kids[0];
		break;
	case MOAT_AST_CALL:
		v = n->func == MOAT_FN_STARTS_WITH || n->func == MOAT_FN_ENDS_WITH ? n->kids[0]
		                                                                   : NULL;
		break;
	default:
		break;
	}
	if (v == NULL || !v->list || v->root == NULL)
		return 0;
	if (*root == NULL) {
		*root = v->root;
		return 0;
	}
	if (same_list(*root, v->root))
		return 0;
	describe(*root, what, sizeof(what));
	moat_rules_diag(
	        ck->d, v->pos,
	        "any() and all() iterate over one list; this one differs from the first (%s)",
	        what);
	return -1;
}

static void check_pred_call(struct checker *ck, struct moat_rules_ast *n)
{
	struct moat_rules_ast *arg = n->kids[0];
	const struct moat_rules_ast *root = NULL;
	unsigned errors;

	if (n->func == MOAT_FN_STARTS_WITH || n->func == MOAT_FN_ENDS_WITH) {
		struct moat_rules_ast *lit = n->kids[1];

		if (string_arg(ck, n, arg) != 0)
			return;
		if (lit->kind != MOAT_AST_STR) {
			moat_rules_diag(
			        ck->d, lit->pos,
			        "the second argument of %s() must be a string literal, not %s",
			        funcs[n->func].name, literal_kind(lit));
			return;
		}
		case_check(ck, arg, lit);
		return;
	}
	if (ck->in_quantifier) {
		moat_rules_diag(ck->d, n->pos, "any() and all() do not nest");
		return;
	}
	errors = ck->d->count;
	ck->in_quantifier = 1;
	check_cond(ck, arg);
	ck->in_quantifier = 0;
	if (ck->d->count != errors || find_root(ck, arg, &root) != 0)
		return;
	if (root == NULL) {
		moat_rules_diag(ck->d, n->pos,
		                "%s() needs a list in its condition, such as "
		                "http.request.headers[\"x\"] or device.tags",
		                funcs[n->func].name);
		return;
	}
	n->root = root;
}

unsigned moat_rules_check(struct moat_rules_ast *root, enum moat_rules_scope scope,
                          const struct moat_rules_limits *lim, struct moat_rules_diag *d)
{
	struct checker ck;
	unsigned before = d->count;

	memset(&ck, 0, sizeof(ck));
	ck.scope = scope;
	ck.lim = lim;
	ck.d = d;
	check_cond(&ck, root);
	return d->count - before;
}
