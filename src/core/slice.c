/*
 * Byte slices: helpers that never assume NUL termination of the slice.
 */
#include "core/common.h"

/*
 * ASCII folding only: header names and tokens are ASCII by definition, and locale-dependent
 * tolower() could make two different names compare equal.
 */
static unsigned char lower(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (unsigned char)(c + ('a' - 'A'));
	return c;
}

int moat_slice_eq_ci(struct moat_slice a, const char *s)
{
	size_t i;

	for (i = 0; i < a.len; i++) {
		/* s ends first (or a holds a NUL where s ends): lengths differ */
		if (s[i] == '\0')
			return 0;
		if (lower((unsigned char)a.p[i]) != lower((unsigned char)s[i]))
			return 0;
	}
	return s[i] == '\0';
}
