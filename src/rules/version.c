/*
 * Versions: "2.10.0" > "2.9.1". The grammar and the order (docs/rules.md):
 *
 *   version  = ["v" / "V"] number *("." number) ["-" pre *("." pre)] ["+" build *("." build)]
 *   number   = 1*18DIGIT           ; compared as a number: "1.02" == "1.2"
 *   pre      = 1*(ALPHA / DIGIT / "-")
 *
 * At most 8 numbers; missing trailing numbers are 0 ("1.2" == "1.2.0"). A pre-release sorts
 * before its release ("1.0.0-rc.1" < "1.0.0"); pre-release identifiers compare as in Semantic
 * Versioning 2.0.0 (numeric ones as numbers and below alphanumeric ones, the others in ASCII
 * order, a shorter list first when one is a prefix of the other). Build metadata is ignored.
 * Anything else is malformed, and a malformed version in a request compares as missing.
 */
#include <string.h>

#include "rules/internal.h"

#define NUM_DIGITS_MAX 18 /* fits in uint64_t without overflow checks */

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_ident(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* Dot-separated non-empty identifiers over [0-9A-Za-z-] in s[0..len). */
static int idents_ok(const char *s, size_t len)
{
	size_t i, run = 0;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (run == 0)
				return 0;
			run = 0;
		} else if (is_ident((unsigned char)s[i])) {
			run++;
		} else {
			return 0;
		}
	}
	return run > 0;
}

int moat_rules_version_parse(const char *s, size_t len, struct moat_rules_version *v)
{
	size_t i = 0, digits;
	const char *plus;

	memset(v, 0, sizeof(*v));
	if (s == NULL || len == 0 || len > MOAT_RULES_VER_MAXLEN)
		return MOAT_EINVAL;
	if (s[0] == 'v' || s[0] == 'V')
		i++;
	for (;;) {
		uint64_t x = 0;

		for (digits = 0; i < len && is_digit((unsigned char)s[i]); i++, digits++) {
			if (digits == NUM_DIGITS_MAX)
				return MOAT_EINVAL;
			x = x * 10 + (uint64_t)(s[i] - '0');
		}
		if (digits == 0 || v->nnum == MOAT_RULES_VER_PARTS)
			return MOAT_EINVAL;
		v->num[v->nnum++] = x;
		if (i < len && s[i] == '.') {
			i++;
			continue;
		}
		break;
	}
	if (i == len)
		return MOAT_OK;
	plus = memchr(s + i, '+', len - i);
	if (plus != NULL && !idents_ok(plus + 1, (size_t)(s + len - plus - 1)))
		return MOAT_EINVAL;
	if (s[i] == '-') {
		size_t end = plus != NULL ? (size_t)(plus - s) : len;

		if (!idents_ok(s + i + 1, end - i - 1))
			return MOAT_EINVAL;
		v->pre = s + i + 1;
		v->prelen = end - i - 1;
		return MOAT_OK;
	}
	return s + i == plus ? MOAT_OK : MOAT_EINVAL;
}

static int all_digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

/* Numeric identifiers of any length: without leading zeros, longer is larger. */
static int cmp_numeric(const char *a, size_t an, const char *b, size_t bn)
{
	while (an > 1 && *a == '0') {
		a++;
		an--;
	}
	while (bn > 1 && *b == '0') {
		b++;
		bn--;
	}
	if (an != bn)
		return an < bn ? -1 : 1;
	return sign(memcmp(a, b, an));
}

static int cmp_pre(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, k = 0;

	while (i < an && k < bn) {
		size_t ie = i, ke = k;
		int an_num, bn_num, c;

		while (ie < an && a[ie] != '.')
			ie++;
		while (ke < bn && b[ke] != '.')
			ke++;
		an_num = all_digits(a + i, ie - i);
		bn_num = all_digits(b + k, ke - k);
		if (an_num && bn_num) {
			c = cmp_numeric(a + i, ie - i, b + k, ke - k);
		} else if (an_num != bn_num) {
			c = an_num ? -1 : 1;
		} else {
			size_t m = ie - i < ke - k ? ie - i : ke - k;

			c = sign(memcmp(a + i, b + k, m));
			if (c == 0 && ie - i != ke - k)
				c = ie - i < ke - k ? -1 : 1;
		}
		if (c != 0)
			return c;
		i = ie + (ie < an);
		k = ke + (ke < bn);
	}
	if (i < an)
		return 1;
	if (k < bn)
		return -1;
	return 0;
}

int moat_rules_version_compare(const struct moat_rules_version *a,
                               const struct moat_rules_version *b)
{
	unsigned i;

	for (i = 0; i < MOAT_RULES_VER_PARTS; i++) {
		if (a->num[i] != b->num[i])
			return a->num[i] < b->num[i] ? -1 : 1;
	}
	if (a->prelen == 0 || b->prelen == 0) {
		if (a->prelen == b->prelen)
			return 0;
		return a->prelen == 0 ? 1 : -1;
	}
	return cmp_pre(a->pre, a->prelen, b->pre, b->prelen);
}

int moat_rules_version_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	struct moat_rules_version va, vb;

	if (moat_rules_version_parse(a, alen, &va) != MOAT_OK ||
	    moat_rules_version_parse(b, blen, &vb) != MOAT_OK)
		return MOAT_EINVAL;
	return moat_rules_version_compare(&va, &vb);
}
