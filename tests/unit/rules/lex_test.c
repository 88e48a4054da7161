/*
 * Tests for src/rules/lex.c: every token kind with its position, strings with escapes and raw
 * strings, numbers, IPv4/IPv6 addresses and CIDRs, and the refusals with their positions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "rules/internal.h"

static struct moat_rules_arena arena;

static int teardown(void **state)
{
	(void)state;
	moat_rules_arena_free(&arena);
	return 0;
}

/* Lexes all of src into toks; returns the count, or -1 - (index of the failing token). */
static int lex_all(const char *src, struct moat_rules_token *toks, int max,
                   struct moat_rules_lexer *lx)
{
	int n = 0;

	moat_rules_lex_init(lx, src, strlen(src), &arena);
	for (;;) {
		if (n == max)
			fail_msg("too many tokens in %s", src);
		if (moat_rules_lex(lx, &toks[n]) != MOAT_OK)
			return -1 - n;
		if (toks[n].kind == MOAT_TK_EOF)
			return n;
		n++;
	}
}

static void test_operators(void **state)
{
	static const struct {
		const char *src;
		enum moat_rules_tok kind;
	} cases[] = {
	        {"==", MOAT_TK_EQ},           {"eq", MOAT_TK_EQ},    {"!=", MOAT_TK_NE},
	        {"ne", MOAT_TK_NE},           {"<", MOAT_TK_LT},     {"lt", MOAT_TK_LT},
	        {"<=", MOAT_TK_LE},           {"le", MOAT_TK_LE},    {">", MOAT_TK_GT},
	        {"gt", MOAT_TK_GT},           {">=", MOAT_TK_GE},    {"ge", MOAT_TK_GE},
	        {"and", MOAT_TK_AND},         {"&&", MOAT_TK_AND},   {"or", MOAT_TK_OR},
	        {"||", MOAT_TK_OR},           {"xor", MOAT_TK_XOR},  {"^^", MOAT_TK_XOR},
	        {"not", MOAT_TK_NOT},         {"!", MOAT_TK_NOT},    {"contains", MOAT_TK_CONTAINS},
	        {"matches", MOAT_TK_MATCHES}, {"in", MOAT_TK_IN},    {"true", MOAT_TK_TRUE},
	        {"false", MOAT_TK_FALSE},     {"(", MOAT_TK_LPAREN}, {")", MOAT_TK_RPAREN},
	        {"{", MOAT_TK_LBRACE},        {"}", MOAT_TK_RBRACE}, {"[", MOAT_TK_LBRACKET},
	        {"]", MOAT_TK_RBRACKET},      {",", MOAT_TK_COMMA},
	};
	struct moat_rules_token t[4];
	struct moat_rules_lexer lx;
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(cases); i++) {
		if (lex_all(cases[i].src, t, 4, &lx) != 1 || t[0].kind != cases[i].kind)
			fail_msg("%s: wrong token", cases[i].src);
		assert_int_equal(t[0].pos, 0);
		assert_int_equal(t[0].end, strlen(cases[i].src));
		assert_non_null(moat_rules_tok_name(t[0].kind));
	}
	/* keywords are whole words and lowercase only */
	assert_int_equal(lex_all("andx AND", t, 4, &lx), 2);
	assert_int_equal(t[0].kind, MOAT_TK_NAME);
	assert_int_equal(t[1].kind, MOAT_TK_NAME);
}

static void test_names_positions(void **state)
{
	struct moat_rules_token t[16];
	struct moat_rules_lexer lx;
	const char *src = "  http.request.uri.path contains\n\t\"x\" # comment\n and ip.src";

	(void)state;
	assert_int_equal(lex_all(src, t, 16, &lx), 5);
	assert_int_equal(t[0].kind, MOAT_TK_NAME);
	assert_int_equal(t[0].pos, 2);
	assert_int_equal(t[0].len, strlen("http.request.uri.path"));
	assert_memory_equal(t[0].str, "http.request.uri.path", t[0].len);
	assert_int_equal(t[1].kind, MOAT_TK_CONTAINS);
	assert_int_equal(t[1].pos, 24);
	assert_int_equal(t[2].kind, MOAT_TK_STRING);
	assert_int_equal(t[2].pos, 34);
	assert_int_equal(t[3].kind, MOAT_TK_AND);
	assert_int_equal(t[4].kind, MOAT_TK_NAME);
	assert_int_equal(t[4].len, 6);
	/* names may contain underscores and digits; a name is not a hex number */
	assert_int_equal(lex_all("url_decode add http2", t, 16, &lx), 3);
	assert_int_equal(t[0].kind, MOAT_TK_NAME);
	assert_int_equal(t[1].kind, MOAT_TK_NAME);
	assert_int_equal(t[2].kind, MOAT_TK_NAME);
}

static void test_strings(void **state)
{
	struct moat_rules_token t[4];
	struct moat_rules_lexer lx;

	(void)state;
	assert_int_equal(lex_all("\"a\\\"b\\\\c\\n\\r\\t\\0\\x41\\x7e\"", t, 4, &lx), 1);
	assert_int_equal(t[0].kind, MOAT_TK_STRING);
	assert_int_equal(t[0].len, 11);
	assert_memory_equal(t[0].str, "a\"b\\c\n\r\t\0A~", 11);
	assert_int_equal(t[0].raw, 0);
	assert_int_equal(t[0].body, 1);

	assert_int_equal(lex_all("\"plain\"", t, 4, &lx), 1);
	assert_int_equal(t[0].raw, 1);
	assert_int_equal(t[0].len, 5);

	assert_int_equal(lex_all("\"\"", t, 4, &lx), 1);
	assert_int_equal(t[0].len, 0);

	/* raw strings: no escapes at all */
	assert_int_equal(lex_all("r\"\\d+\\.\\d\"", t, 4, &lx), 1);
	assert_int_equal(t[0].kind, MOAT_TK_STRING);
	assert_string_equal(t[0].str, "\\d+\\.\\d");
	assert_int_equal(t[0].raw, 1);
	assert_int_equal(t[0].body, 2);
	assert_int_equal(lex_all("r#\"say \"hi\"\"# x", t, 4, &lx), 2);
	assert_string_equal(t[0].str, "say \"hi\"");
	assert_int_equal(t[0].body, 3);
	assert_int_equal(t[1].kind, MOAT_TK_NAME);
	assert_int_equal(lex_all("r##\"a\"#b\"##", t, 4, &lx), 1);
	assert_string_equal(t[0].str, "a\"#b");
	/* bytes above 0x7f pass through */
	assert_int_equal(lex_all("\"caf\xc3\xa9\"", t, 4, &lx), 1);
	assert_int_equal(t[0].len, 5);
}

static void refused(const char *src, size_t pos, const char *msg)
{
	struct moat_rules_token t[8];
	struct moat_rules_lexer lx;

	if (lex_all(src, t, 8, &lx) >= 0)
		fail_msg("%s: accepted", src);
	assert_non_null(lx.err);
	if (strstr(lx.err, msg) == NULL)
		fail_msg("%s: \"%s\" lacks \"%s\"", src, lx.err, msg);
	if (lx.err_pos != pos)
		fail_msg("%s: error at %zu, want %zu (%s)", src, lx.err_pos, pos, lx.err);
}

static void test_refusals(void **state)
{
	(void)state;
	refused("\"abc", 0, "unterminated string");
	refused("x == \"ab\ncd\"", 5, "unterminated string");
	refused("\"a\\d\"", 2, "unknown escape \\d");
	refused("\"a\\x4\"", 2, "\\x needs two hex digits");
	refused("\"a\\xzz\"", 2, "\\x needs two hex digits");
	refused("r\"abc", 0, "unterminated raw string");
	refused("r#\"abc\"", 0, "unterminated raw string");
	refused("r#abc", 0, "raw string");
	refused("a = b", 2, "'=' is not an operator");
	refused("a & b", 2, "'&&'");
	refused("a | b", 2, "'||'");
	refused("a ^ b", 2, "'^^'");
	refused("a @ b", 2, "unexpected character '@'");
	refused("a \x01", 2, "unexpected byte 0x01");
	refused("99999999999999999999", 0, "out of range");
	refused("-9223372036854775809", 0, "out of range");
	refused("12abc", 0, "bad number");
	refused("1.2.3", 0, "bad IP address");
	refused("300.1.1.1", 0, "bad IP address 300.1.1.1");
	refused("- 1", 0, "unexpected '-'");
	refused("-1x", 0, "bad number");
	refused("x in {10.1.2.3/8}", 6, "has bits set after the prefix (did you mean 10.0.0.0/8?)");
	refused("2001:db8::1/32", 0, "did you mean 2001:db8::/32?");
	refused("10.0.0.0/33", 9, "prefix length 33 is longer than 32");
	refused("::/129", 3, "longer than 128");
	refused("10.0.0.0/08", 9, "bad prefix length");
	refused("10.0.0.0/", 9, "bad prefix length");
	refused("fe80::1%eth0", 7, "unexpected character '%'");
	refused("1:2:3:4:5:6:7:8:9", 0, "bad IP address");
	refused("10.0.0.0/8x", 0, "bad IP address or CIDR");
}

static void test_numbers_and_ips(void **state)
{
	struct moat_rules_token t[8];
	struct moat_rules_lexer lx;

	(void)state;
	assert_int_equal(lex_all("0 42 -7 9223372036854775807 -9223372036854775808", t, 8, &lx), 5);
	assert_int_equal(t[0].num, 0);
	assert_int_equal(t[1].num, 42);
	assert_int_equal(t[2].num, -7);
	assert_true(t[3].num == INT64_MAX);
	assert_true(t[4].num == INT64_MIN);

	assert_int_equal(
	        lex_all("10.0.0.0/8 192.0.2.1 ::1 2001:db8::/32 ::ffff:1.2.3.4", t, 8, &lx), 5);
	assert_int_equal(t[0].kind, MOAT_TK_IP);
	assert_int_equal(t[0].ip.prefix, 96 + 8);
	assert_int_equal(t[1].ip.prefix, 128);
	assert_int_equal(t[1].ip.addr[15], 1);
	assert_int_equal(t[1].ip.addr[10], 0xff);
	assert_int_equal(t[2].kind, MOAT_TK_IP);
	assert_int_equal(t[2].ip.addr[15], 1);
	assert_int_equal(t[3].ip.prefix, 32);
	assert_int_equal(t[3].ip.addr[0], 0x20);
	assert_int_equal(t[4].ip.addr[12], 1);
	assert_int_equal(t[4].ip.addr[10], 0xff);
	/* an IPv6 address may start with a hex letter */
	assert_int_equal(lex_all("fe80::/10 dead:beef::1", t, 8, &lx), 2);
	assert_int_equal(t[0].kind, MOAT_TK_IP);
	assert_int_equal(t[0].ip.prefix, 10);
	assert_int_equal(t[1].kind, MOAT_TK_IP);
	/* in a set, commas and braces end addresses */
	assert_int_equal(lex_all("{10.0.0.0/8,::1}", t, 8, &lx), 5);
	assert_int_equal(t[1].kind, MOAT_TK_IP);
	assert_int_equal(t[2].kind, MOAT_TK_COMMA);
	assert_int_equal(t[3].kind, MOAT_TK_IP);
}

static void test_empty(void **state)
{
	struct moat_rules_token t[2];
	struct moat_rules_lexer lx;

	(void)state;
	assert_int_equal(lex_all("", t, 2, &lx), 0);
	assert_int_equal(t[0].kind, MOAT_TK_EOF);
	assert_int_equal(lex_all("   # only a comment", t, 2, &lx), 0);
	assert_int_equal(t[0].pos, 19);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_operators, teardown),
	        cmocka_unit_test_teardown(test_names_positions, teardown),
	        cmocka_unit_test_teardown(test_strings, teardown),
	        cmocka_unit_test_teardown(test_refusals, teardown),
	        cmocka_unit_test_teardown(test_numbers_and_ips, teardown),
	        cmocka_unit_test_teardown(test_empty, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
