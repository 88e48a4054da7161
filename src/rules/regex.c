/*
 * `matches`: PCRE2, compiled once per ruleset and JIT-compiled when the platform allows.
 *
 * A pattern that backtracks catastrophically must not stall a worker. The match limit
 * (moat_rules_limits.regex_match_limit) bounds the work of one match in both the JIT and the
 * interpreter; the depth and heap limits bound the interpreter's memory; the JIT uses its
 * default 32 KiB stack and fails cleanly beyond it. A match that hits any limit counts as
 * "no match" and is counted in the ruleset's statistics.
 */
#include "core/alloc.h"
#include "rules/internal.h"

pcre2_code *moat_rules_regex_compile(struct moat_ruleset *rs, const char *p, size_t len,
                                     char *errbuf, size_t cap, size_t *erroff)
{
	pcre2_code *re;
	PCRE2_SIZE off = 0;
	int code = 0;

	re = pcre2_compile((PCRE2_SPTR)p, len, 0, &code, &off, rs->cctx);
	if (re == NULL) {
		if (pcre2_get_error_message(code, (PCRE2_UCHAR *)errbuf, cap) < 0 && cap > 0)
			errbuf[0] = '\0';
		*erroff = off;
		return NULL;
	}
	/* without JIT (unsupported platform, or out of executable memory) the interpreter
	 * still gives the same answers under the same limits, only slower */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

int moat_rules_regex_match(const struct moat_ruleset *rs, const pcre2_code *re,
                           pcre2_match_data *md, const char *s, size_t len, int *limited)
{
	int r;

	if (md == NULL) {
		*limited = 1;
		return 0;
	}
	r = pcre2_match(re, (PCRE2_SPTR)(s != NULL ? s : ""), len, 0, 0, md, rs->mctx);
	if (r >= 0)
		return 1;
	if (r != PCRE2_ERROR_NOMATCH)
		*limited = 1;
	return 0;
}
