/*
 * Tests for src/rules/parse.c: the shape of the tree (precedence, n-ary chains, comparisons,
 * calls, keys, sets), the depth limit, and every syntax error with its position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "rules/internal.h"

static struct moat_rules_arena arena;
static char out[4096];
static size_t outn;
static char errmsg[512];
static size_t errpos;
static unsigned nerrors;

static void on_error(void *arg, size_t pos, const char *msg)
{
	(void)arg;
	if (nerrors++ == 0) {
		snprintf(errmsg, sizeof(errmsg), "%s", msg);
		errpos = pos;
	}
}

static void put(const char *s)
{
	size_t n = strlen(s);

	if (outn + n < sizeof(out)) {
		memcpy(out + outn, s, n + 1);
		outn += n;
	}
}

static void dump(const struct moat_rules_ast *n)
{
	static const char *const logic[] = {"or", "xor", "and", "not"};
	char tmp[128];
	unsigned i;

	switch (n->kind) {
	case MOAT_AST_OR:
	case MOAT_AST_XOR:
	case MOAT_AST_AND:
	case MOAT_AST_NOT:
		put("(");
		put(logic[n->kind]);
		for (i = 0; i < n->nkids; i++) {
			put(" ");
			dump(n->kids[i]);
		}
		put(")");
		return;
	case MOAT_AST_CMP:
		put("(");
		put(moat_rules_op_name(n->op));
		put(" ");
		dump(n->kids[0]);
		put(" ");
		dump(n->kids[1]);
		put(")");
		return;
	case MOAT_AST_FIELD:
		snprintf(tmp, sizeof(tmp), "%.*s", (int)n->namelen, n->name);
		put(tmp);
		if (n->key != NULL) {
			put("[");
			dump(n->key);
			put("]");
		}
		return;
	case MOAT_AST_CALL:
		snprintf(tmp, sizeof(tmp), "%.*s(", (int)n->namelen, n->name);
		put(tmp);
		for (i = 0; i < n->nkids; i++) {
			if (i > 0)
				put(", ");
			dump(n->kids[i]);
		}
		put(")");
		return;
	case MOAT_AST_STR:
		snprintf(tmp, sizeof(tmp), "\"%.*s\"", (int)n->len, n->str);
		put(tmp);
		return;
	case MOAT_AST_INT:
		snprintf(tmp, sizeof(tmp), "%lld", (long long)n->num);
		put(tmp);
		return;
	case MOAT_AST_IP:
		snprintf(tmp, sizeof(tmp), "ip/%u", n->ip.prefix);
		put(tmp);
		return;
	case MOAT_AST_BOOL:
		put(n->num ? "true" : "false");
		return;
	case MOAT_AST_SET:
		put("{");
		for (i = 0; i < n->nkids; i++) {
			if (i > 0)
				put(" ");
			dump(n->kids[i]);
		}
		put("}");
		return;
	}
}

static const char *parse_depth(const char *src, unsigned depth)
{
	struct moat_rules_diag d = {on_error, NULL, 0};
	struct moat_rules_ast *root;

	moat_rules_arena_free(&arena);
	nerrors = 0;
	errmsg[0] = '\0';
	root = moat_rules_parse(src, strlen(src), depth, &arena, &d);
	if (root == NULL)
		return NULL;
	assert_int_equal(nerrors, 0);
	outn = 0;
	out[0] = '\0';
	dump(root);
	return out;
}

static void shape(const char *src, const char *want)
{
	const char *got = parse_depth(src, 64);

	if (got == NULL)
		fail_msg("%s: refused at %zu: %s", src, errpos, errmsg);
	if (strcmp(got, want) != 0)
		fail_msg("%s:\n got  %s\n want %s", src, got, want);
}

static void refused_depth(const char *src, unsigned depth, size_t pos, const char *msg)
{
	if (parse_depth(src, depth) != NULL)
		fail_msg("%s: accepted as %s", src, out);
	assert_int_equal(nerrors, 1); /* one error per expression */
	if (strstr(errmsg, msg) == NULL)
		fail_msg("%s: \"%s\" lacks \"%s\"", src, errmsg, msg);
	if (errpos != pos)
		fail_msg("%s: error at %zu, want %zu (%s)", src, errpos, pos, errmsg);
}

static void refused(const char *src, size_t pos, const char *msg)
{
	refused_depth(src, 64, pos, msg);
}

static void test_precedence(void **state)
{
	(void)state;
	shape("a or b and c", "(or a (and b c))");
	shape("a and b or c", "(or (and a b) c)");
	shape("a or b xor c and d", "(or a (xor b (and c d)))");
	shape("not a and b", "(and (not a) b)");
	shape("not not a", "(not (not a))");
	shape("! a || b && c ^^ d", "(or (not a) (xor (and b c) d))");
	shape("(a or b) and c", "(and (or a b) c)");
	shape("a == \"x\" and b != 1", "(and (== a \"x\") (!= b 1))");
	shape("not x.y contains \"z\"", "(not (contains x.y \"z\"))");
	/* chains are flat */
	shape("a or b or c or d", "(or a b c d)");
	shape("a and b and c", "(and a b c)");
	shape("a xor b xor c", "(xor a b c)");
	shape("a and (b and c)", "(and a (and b c))");
}

static void test_comparisons(void **state)
{
	(void)state;
	shape("x eq 1", "(== x 1)");
	shape("x ne 1", "(!= x 1)");
	shape("x lt 1 or x le 2 or x gt 3 or x ge 4", "(or (< x 1) (<= x 2) (> x 3) (>= x 4))");
	shape("x < 1 or x <= 2 or x > 3 or x >= 4", "(or (< x 1) (<= x 2) (> x 3) (>= x 4))");
	shape("x matches r\"^a\\d\"", "(matches x \"^a\\d\")");
	shape("x in {\"a\" \"b\", \"c\"}", "(in x {\"a\" \"b\" \"c\"})");
	shape("ip.src in {10.0.0.0/8 ::1}", "(in ip.src {ip/104 ip/128})");
	shape("x in {1, -2, 3,}", "(in x {1 -2 3})");
	shape("h[\"User-Agent\"] contains \"x\"", "(contains h[\"User-Agent\"] \"x\")");
	shape("lower(url_decode(p)) contains \"..\"", "(contains lower(url_decode(p)) \"..\")");
	shape("starts_with(p, \"/a\")", "starts_with(p, \"/a\")");
	shape("any(h[\"a\"] contains \"x\" and h[\"a\"] contains \"y\")",
	      "any((and (contains h[\"a\"] \"x\") (contains h[\"a\"] \"y\")))");
	shape("f()", "f()");
	shape("true", "true");
	shape("(x) == 1", "(== x 1)");
	shape("x == true", "(== x true)");
}

static void test_errors(void **state)
{
	(void)state;
	refused("", 0, "empty expression");
	refused("   ", 3, "empty expression");
	refused("a ==", 4, "expected a field, a function or '('");
	refused("a == == 1", 5, "expected a field, a function or '('");
	refused("(a", 2, "expected ')'");
	refused("a)", 1, "expected 'and', 'or', 'xor' or the end");
	refused("a b", 2, "expected 'and', 'or', 'xor' or the end of the expression, found 'b'");
	refused("a == 1 == 2", 7, "comparisons do not chain");
	refused("a in \"x\"", 5, "expected '{' after 'in'");
	refused("a in {}", 5, "empty set");
	refused("a in {\"x\"", 9, "expected '}' to close the set");
	refused("a in {b}", 6, "a string, a number or an IP address in the set");
	refused("a[1]", 2, "a string key");
	refused("a[\"k\"", 5, "expected ']'");
	refused("f(a, ", 5, "expected a field, a function or '('");
	refused("f(a b)", 4, "expected ',' or ')' in the arguments");
	refused("and", 0, "expected a field, a function or '('");
	refused("a and", 5, "found the end of the expression");
	refused("{1}", 0, "expected a field");
	/* a lexer error surfaces with its own position */
	refused("a == \"x", 5, "unterminated string");
	refused("a == 10.1.2.3/8", 5, "bits set after the prefix");
}

static void test_depth(void **state)
{
	char deep[1024];
	size_t i, n = 0;

	(void)state;
	/* within the limit */
	assert_non_null(parse_depth("((((a))))", 4));
	assert_non_null(parse_depth("not not not not a", 4));
	refused_depth("(((((a)))))", 4, 4, "nested deeper than 4 levels");
	refused_depth("not not not not not a", 4, 16, "nested deeper than 4 levels");
	refused_depth("f(f(f(f(f(a)))))", 4, 8, "nested deeper than 4");
	/* a long flat chain is not deep */
	for (i = 0; i < 200; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "%sa", i ? " or " : "");
	assert_non_null(parse_depth(deep, 2));
	/* deep nesting beyond the default limit is refused, without exhausting the stack */
	n = 0;
	for (i = 0; i < 300; i++)
		deep[n++] = '(';
	deep[n++] = 'a';
	for (i = 0; i < 300; i++)
		deep[n++] = ')';
	deep[n] = '\0';
	refused_depth(deep, 64, 64, "nested deeper than 64 levels");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_precedence),
	        cmocka_unit_test(test_comparisons),
	        cmocka_unit_test(test_errors),
	        cmocka_unit_test(test_depth),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);

	moat_rules_arena_free(&arena);
	return r;
}
