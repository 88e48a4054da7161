/*
 * The lexer of the rule language: names, strings (escaped and raw), integers, IP addresses
 * and CIDRs, operators. Offsets are bytes from the start of the expression; the caller turns
 * them into lines and columns.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "rules/internal.h"

#define IP_TEXT_MAX 64 /* longer than any address with a prefix */

static int is_name_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(unsigned char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '.';
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return c - 'A' + 10;
}

static int fail(struct moat_rules_lexer *lx, size_t pos, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct moat_rules_lexer *lx, size_t pos, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(lx->errbuf, sizeof(lx->errbuf), fmt, ap);
	va_end(ap);
	lx->err = lx->errbuf;
	lx->err_pos = pos;
	return MOAT_EINVAL;
}

void moat_rules_lex_init(struct moat_rules_lexer *lx, const char *src, size_t len,
                         struct moat_rules_arena *arena)
{
	memset(lx, 0, sizeof(*lx));
	lx->src = src;
	lx->len = len;
	lx->arena = arena;
}

static void skip_space(struct moat_rules_lexer *lx)
{
	while (lx->pos < lx->len) {
		unsigned char c = (unsigned char)lx->src[lx->pos];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
			lx->pos++;
		} else if (c == '#') {
			while (lx->pos < lx->len && lx->src[lx->pos] != '\n')
				lx->pos++;
		} else {
			break;
		}
	}
}

static const struct {
	const char *word;
	enum moat_rules_tok kind;
} keywords[] = {
        {"and", MOAT_TK_AND},
        {"or", MOAT_TK_OR},
        {"xor", MOAT_TK_XOR},
        {"not", MOAT_TK_NOT},
        {"eq", MOAT_TK_EQ},
        {"ne", MOAT_TK_NE},
        {"lt", MOAT_TK_LT},
        {"le", MOAT_TK_LE},
        {"gt", MOAT_TK_GT},
        {"ge", MOAT_TK_GE},
        {"contains", MOAT_TK_CONTAINS},
        {"matches", MOAT_TK_MATCHES},
        {"in", MOAT_TK_IN},
        {"true", MOAT_TK_TRUE},
        {"false", MOAT_TK_FALSE},
};

static int lex_name(struct moat_rules_lexer *lx, struct moat_rules_token *t)
{
	size_t start = lx->pos, n, i;

	while (lx->pos < lx->len && is_name_char((unsigned char)lx->src[lx->pos]))
		lx->pos++;
	n = lx->pos - start;
	t->kind = MOAT_TK_NAME;
	t->str = lx->src + start;
	t->len = n;
	for (i = 0; i < MOAT_ARRAY_LEN(keywords); i++) {
		if (strlen(keywords[i].word) == n && memcmp(keywords[i].word, t->str, n) == 0) {
			t->kind = keywords[i].kind;
			break;
		}
	}
	return MOAT_OK;
}

/* "..." with \\ \" \n \r \t \0 \xHH; everything else after a backslash is refused so that a
 * regex written as "\d" is caught instead of silently meaning "d". */
static int lex_string(struct moat_rules_lexer *lx, struct moat_rules_token *t)
{
	size_t start = lx->pos, i, n = 0;
	char *out;
	int escaped = 0;

	lx->pos++;
	t->body = lx->pos;
	/* the decoded string is never longer than the source */
	for (i = lx->pos; i < lx->len && lx->src[i] != '"' && lx->src[i] != '\n'; i++) {
		if (lx->src[i] == '\\' && i + 1 < lx->len)
			i++;
	}
	if (i >= lx->len || lx->src[i] != '"')
		return fail(lx, start, "unterminated string (a string ends on its line)");
	out = moat_rules_arena_alloc(lx->arena, i - lx->pos + 1);
	if (out == NULL)
		return MOAT_ENOMEM;
	while (lx->src[lx->pos] != '"') {
		unsigned char c = (unsigned char)lx->src[lx->pos];

		if (c != '\\') {
			out[n++] = (char)c;
			lx->pos++;
			continue;
		}
		escaped = 1;
		c = (unsigned char)lx->src[lx->pos + 1];
		switch (c) {
		case '\\':
		case '"':
			out[n++] = (char)c;
			break;
		case 'n':
			out[n++] = '\n';
			break;
		case 'r':
			out[n++] = '\r';
			break;
		case 't':
			out[n++] = '\t';
			break;
		case '0':
			out[n++] = '\0';
			break;
		case 'x':
			if (lx->pos + 3 >= lx->len ||
			    !is_hex((unsigned char)lx->src[lx->pos + 2]) ||
			    !is_hex((unsigned char)lx->src[lx->pos + 3]))
				return fail(lx, lx->pos, "\\x needs two hex digits");
			out[n++] = (char)(hexval((unsigned char)lx->src[lx->pos + 2]) * 16 +
			                  hexval((unsigned char)lx->src[lx->pos + 3]));
			lx->pos += 2;
			break;
		default:
			if (c > 0x20 && c < 0x7f)
				return fail(lx, lx->pos,
				            "unknown escape \\%c in a string (write \\\\%c, or use "
				            "a raw "
				            "string r\"...\" for regular expressions)",
				            c, c);
			return fail(lx, lx->pos, "unknown escape in a string");
		}
		lx->pos += 2;
	}
	lx->pos++;
	t->kind = MOAT_TK_STRING;
	t->str = out;
	t->len = n;
	t->raw = !escaped;
	return MOAT_OK;
}

/* r"..." or r#"..."# (any number of #): no escapes at all, for regular expressions. */
static int lex_raw_string(struct moat_rules_lexer *lx, struct moat_rules_token *t)
{
	size_t start = lx->pos, hashes = 0, i;

	lx->pos++;
	while (lx->pos < lx->len && lx->src[lx->pos] == '#') {
		hashes++;
		lx->pos++;
	}
	if (lx->pos >= lx->len || lx->src[lx->pos] != '"')
		return fail(lx, start, "a raw string is r\"...\" or r#\"...\"#");
	lx->pos++;
	t->body = lx->pos;
	for (i = lx->pos; i < lx->len && lx->src[i] != '\n'; i++) {
		size_t k;

		if (lx->src[i] != '"')
			continue;
		for (k = 0; k < hashes && i + 1 + k < lx->len && lx->src[i + 1 + k] == '#'; k++)
			;
		if (k == hashes)
			break;
	}
	if (i >= lx->len || lx->src[i] != '"')
		return fail(lx, start, "unterminated raw string (a string ends on its line)");
	t->kind = MOAT_TK_STRING;
	t->str = moat_rules_arena_dup(lx->arena, lx->src + lx->pos, i - lx->pos);
	if (t->str == NULL)
		return MOAT_ENOMEM;
	t->len = i - lx->pos;
	t->raw = 1;
	lx->pos = i + 1 + hashes;
	return MOAT_OK;
}

static int lex_int(struct moat_rules_lexer *lx, struct moat_rules_token *t, size_t start,
                   size_t end)
{
	size_t i = start;
	int neg = 0;
	uint64_t v = 0, max;

	if (lx->src[i] == '-') {
		neg = 1;
		i++;
	}
	max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < end; i++) {
		unsigned d = (unsigned)(lx->src[i] - '0');

		if (v > (max - d) / 10)
			return fail(lx, start, "number out of range (64-bit signed)");
		v = v * 10 + d;
	}
	t->kind = MOAT_TK_INT;
	t->num = neg ? (int64_t)(0 - v) : (int64_t)v;
	lx->pos = end;
	return MOAT_OK;
}

/* Explains why moat_cidr_parse refused text, and suggests the network for host bits. */
static int bad_ip(struct moat_rules_lexer *lx, size_t start, const char *text)
{
	const char *slash = strchr(text, '/');
	char addr[IP_TEXT_MAX], net[INET6_ADDRSTRLEN];
	struct moat_cidr c;
	size_t n = slash ? (size_t)(slash - text) : strlen(text);

	memcpy(addr, text, n);
	addr[n] = '\0';
	if (moat_cidr_parse(addr, &c) != MOAT_OK)
		return fail(lx, start, "bad IP address %s", addr);
	if (slash == NULL)
		return fail(lx, start, "bad IP address %s", text);
	{
		int v4 = strchr(addr, ':') == NULL;
		unsigned long p = 0;
		const char *d = slash + 1;
		unsigned i;
		unsigned char a[16];

		if (*d == '\0' || strlen(d) > 3 || (d[0] == '0' && d[1] != '\0'))
			return fail(lx, start + n + 1, "bad prefix length in %s", text);
		for (; *d; d++) {
			if (!is_digit((unsigned char)*d))
				return fail(lx, start + n + 1, "bad prefix length in %s", text);
			p = p * 10 + (unsigned long)(*d - '0');
		}
		if (p > (v4 ? 32u : 128u))
			return fail(lx, start + n + 1, "prefix length %lu is longer than %u in %s",
			            p, v4 ? 32u : 128u, text);
		memcpy(a, c.addr, 16);
		p += v4 ? 96 : 0;
		for (i = (unsigned)p; i < 128; i++)
			a[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
		if (v4)
			inet_ntop(AF_INET, a + 12, net, sizeof(net));
		else
			inet_ntop(AF_INET6, a, net, sizeof(net));
		return fail(lx, start, "%s has bits set after the prefix (did you mean %s/%lu?)",
		            text, net, v4 ? p - 96 : p);
	}
}

/*
 * A word that starts with a digit, a hex letter or ':' may be a number, an IPv4 or IPv6
 * address (with a prefix), or a name. A colon only ever appears in IPv6 addresses, so a run of
 * hex digits, dots and colons with a colon in it is an address; digits and dots are IPv4.
 */
static int lex_word(struct moat_rules_lexer *lx, struct moat_rules_token *t)
{
	size_t start = lx->pos, q = start, end;
	int colon = 0, dot = 0, digits_only = 1;
	char text[IP_TEXT_MAX];

	while (q < lx->len &&
	       (is_hex((unsigned char)lx->src[q]) || lx->src[q] == ':' || lx->src[q] == '.')) {
		colon |= lx->src[q] == ':';
		dot |= lx->src[q] == '.';
		if (!is_digit((unsigned char)lx->src[q]) && lx->src[q] != '.')
			digits_only = 0;
		q++;
	}
	if (!colon && !is_digit((unsigned char)lx->src[start]))
		return lex_name(lx, t);
	if (!colon && !dot && digits_only) {
		if (q < lx->len && is_name_char((unsigned char)lx->src[q]))
			return fail(lx, start, "bad number");
		return lex_int(lx, t, start, q);
	}
	if (!colon && !digits_only)
		return fail(lx, start, "bad number");
	end = q;
	if (end < lx->len && lx->src[end] == '/') {
		end++;
		while (end < lx->len && is_digit((unsigned char)lx->src[end]))
			end++;
	}
	if (end < lx->len && (is_name_char((unsigned char)lx->src[end]) || lx->src[end] == '/' ||
	                      lx->src[end] == ':'))
		return fail(lx, start, "bad IP address or CIDR");
	if (end - start >= sizeof(text))
		return fail(lx, start, "bad IP address or CIDR (too long)");
	memcpy(text, lx->src + start, end - start);
	text[end - start] = '\0';
	if (moat_cidr_parse(text, &t->ip) != MOAT_OK)
		return bad_ip(lx, start, text);
	t->kind = MOAT_TK_IP;
	lx->pos = end;
	return MOAT_OK;
}

static int two(struct moat_rules_lexer *lx, char second)
{
	return lx->pos + 1 < lx->len && lx->src[lx->pos + 1] == second;
}

int moat_rules_lex(struct moat_rules_lexer *lx, struct moat_rules_token *t)
{
	unsigned char c;
	int r;

	memset(t, 0, sizeof(*t));
	skip_space(lx);
	t->pos = lx->pos;
	if (lx->pos >= lx->len) {
		t->kind = MOAT_TK_EOF;
		t->end = lx->pos;
		return MOAT_OK;
	}
	c = (unsigned char)lx->src[lx->pos];
	r = MOAT_OK;
	switch (c) {
	case '(':
		t->kind = MOAT_TK_LPAREN;
		lx->pos++;
		break;
	case ')':
		t->kind = MOAT_TK_RPAREN;
		lx->pos++;
		break;
	case '{':
		t->kind = MOAT_TK_LBRACE;
		lx->pos++;
		break;
	case '}':
		t->kind = MOAT_TK_RBRACE;
		lx->pos++;
		break;
	case '[':
		t->kind = MOAT_TK_LBRACKET;
		lx->pos++;
		break;
	case ']':
		t->kind = MOAT_TK_RBRACKET;
		lx->pos++;
		break;
	case ',':
		t->kind = MOAT_TK_COMMA;
		lx->pos++;
		break;
	case '=':
		if (!two(lx, '='))
			return fail(lx, lx->pos, "'=' is not an operator: write '=='");
		t->kind = MOAT_TK_EQ;
		lx->pos += 2;
		break;
	case '!':
		t->kind = two(lx, '=') ? MOAT_TK_NE : MOAT_TK_NOT;
		lx->pos += two(lx, '=') ? 2 : 1;
		break;
	case '<':
		t->kind = two(lx, '=') ? MOAT_TK_LE : MOAT_TK_LT;
		lx->pos += two(lx, '=') ? 2 : 1;
		break;
	case '>':
		t->kind = two(lx, '=') ? MOAT_TK_GE : MOAT_TK_GT;
		lx->pos += two(lx, '=') ? 2 : 1;
		break;
	case '&':
		if (!two(lx, '&'))
			return fail(lx, lx->pos, "'&' is not an operator: write '&&' or 'and'");
		t->kind = MOAT_TK_AND;
		lx->pos += 2;
		break;
	case '|':
		if (!two(lx, '|'))
			return fail(lx, lx->pos, "'|' is not an operator: write '||' or 'or'");
		t->kind = MOAT_TK_OR;
		lx->pos += 2;
		break;
	case '^':
		if (!two(lx, '^'))
			return fail(lx, lx->pos, "'^' is not an operator: write '^^' or 'xor'");
		t->kind = MOAT_TK_XOR;
		lx->pos += 2;
		break;
	case '"':
		r = lex_string(lx, t);
		break;
	case '-':
		if (lx->pos + 1 < lx->len && is_digit((unsigned char)lx->src[lx->pos + 1])) {
			size_t q = lx->pos + 1;

			while (q < lx->len && is_digit((unsigned char)lx->src[q]))
				q++;
			if (q < lx->len &&
			    (is_name_char((unsigned char)lx->src[q]) || lx->src[q] == ':'))
				return fail(lx, lx->pos, "bad number");
			r = lex_int(lx, t, lx->pos, q);
			break;
		}
		return fail(lx, lx->pos, "unexpected '-'");
	default:
		if (c == 'r' && lx->pos + 1 < lx->len &&
		    (lx->src[lx->pos + 1] == '"' || lx->src[lx->pos + 1] == '#')) {
			r = lex_raw_string(lx, t);
		} else if (is_hex(c) || c == ':') {
			r = lex_word(lx, t);
		} else if (is_name_start(c)) {
			r = lex_name(lx, t);
		} else if (c >= 0x21 && c < 0x7f) {
			return fail(lx, lx->pos, "unexpected character '%c'", c);
		} else {
			return fail(lx, lx->pos, "unexpected byte 0x%02x", c);
		}
	}
	t->end = lx->pos;
	return r;
}
