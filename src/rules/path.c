/*
 * URI decoding for the rules: percent-decoding (url_decode(), query arguments) and the
 * normalised path that http.request.uri.path shows, i.e. where a request really goes.
 */
#include <string.h>

#include "rules/internal.h"

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t moat_rules_url_decode(const char *src, size_t len, char *out, int plus_space)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c == '%' && i + 2 < len && hexval((unsigned char)src[i + 1]) >= 0 &&
		    hexval((unsigned char)src[i + 2]) >= 0) {
			out[n++] = (char)(hexval((unsigned char)src[i + 1]) * 16 +
			                  hexval((unsigned char)src[i + 2]));
			i += 2;
		} else if (c == '+' && plus_space) {
			out[n++] = ' ';
		} else {
			/* "%zz", "%4" at the end: kept as written, as most servers do */
			out[n++] = (char)c;
		}
	}
	return n;
}

/*
 * Decodes once, then walks the segments: empty ones (repeated slashes) and "." are dropped,
 * ".." removes the previous segment (never going above the root). Done in place in `out`,
 * whose write position never passes the read position. A decoded "%2f" is a slash like any
 * other, so "..%2f" climbs; "%252f" decodes to "%2f" and stays text. A decoded NUL stays a
 * NUL byte in the path (rules can look for "\x00").
 */
long moat_rules_normalize_path(const char *raw, size_t len, char *out, size_t cap)
{
	size_t n = 0, r, w = 0, i;
	int absolute;

	/* the decoded length first: only it has to fit, and removing segments only shrinks */
	for (i = 0; i < len; i++, n++) {
		if (raw[i] == '%' && i + 2 < len && hexval((unsigned char)raw[i + 1]) >= 0 &&
		    hexval((unsigned char)raw[i + 2]) >= 0)
			i += 2;
	}
	if (n > cap)
		return MOAT_ETOOBIG;
	n = moat_rules_url_decode(raw, len, out, 0);
	absolute = n > 0 && out[0] == '/';
	r = 0;
	if (absolute) {
		w = 1;
		r = 1;
	}
	while (r < n) {
		size_t seg = r, seglen;
		int last;

		while (r < n && out[r] != '/')
			r++;
		seglen = r - seg;
		last = r >= n;
		if (!last)
			r++; /* the slash */
		if (seglen == 0)
			continue; /* repeated slash */
		if (seglen == 1 && out[seg] == '.') {
			/* "/a/." ends with a slash, like "/a/" */
			continue;
		}
		if (seglen == 2 && out[seg] == '.' && out[seg + 1] == '.') {
			/* drop the last written segment: back to just after the previous slash */
			size_t floor = absolute ? 1 : 0;

			if (w > floor) {
				w--; /* the slash after it */
				while (w > floor && out[w - 1] != '/')
					w--;
			}
			continue;
		}
		memmove(out + w, out + seg, seglen);
		w += seglen;
		if (!last)
			out[w++] = '/';
	}
	return (long)w;
}
