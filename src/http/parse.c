/*
 * Strict HTTP/1.1 head parsers (RFC 9110, RFC 9112).
 *
 * Both parsers scan the buffer once from the start, left to right, and stop at the first byte
 * that cannot be part of a valid head. Because the scan never looks past the configured limits,
 * an oversized line or head is refused as soon as the limit is passed, not when (or if) its
 * terminating CRLF arrives. A consequence the proxy may rely on: if a prefix of the input is
 * refused, every longer input is refused with the same status, and every proper prefix of an
 * accepted head yields MOAT_EAGAIN.
 *
 * Decisions beyond the RFCs, all in the direction of refusing what a peer could interpret
 * differently from us (request smuggling, routing confusion):
 * - Every Transfer-Encoding in a request other than exactly "chunked" is answered with 400,
 *   including codings that are merely unsupported ("gzip, chunked"), where RFC 9112 suggests
 *   501: one status for every refused coding keeps the rule simple, and the connection is
 *   closed either way.
 * - "Content-Length: 0" gives MOAT_BODY_LENGTH with content_length 0, never MOAT_BODY_NONE, so
 *   the proxy can forward the header as received.
 * - An absolute-form target sets `host` to the target's authority (RFC 9112 section 3.2.2);
 *   the Host header, still required in HTTP/1.1, must then be equal to it (ignoring case),
 *   otherwise 400. A request whose target and Host name different hosts has no legitimate
 *   use and is a classic way to make two hops route differently.
 * - Hosts (Host header and authorities) are limited to unreserved characters or a bracketed
 *   IPv6 literal, with an optional port of 1 to 5 digits; userinfo, percent-encoding and
 *   sub-delims are refused. An empty Host value is accepted (RFC 9112 section 3.2).
 * - Request targets must be visible ASCII without '#'; obs-text in a target is refused.
 * - A Connection option naming Host or Content-Length is refused: forwarding the message
 *   without them would change its meaning.
 * - The response status line may omit the space after the status code when the reason is
 *   empty ("HTTP/1.1 204\r\n"), as many origins send it; nothing depends on the reason.
 * - Response heads are bounded by max_head and max_headers; max_request_line does not apply
 *   to status lines.
 * - A zero field in `struct moat_http_limits` (or a NULL pointer) means the built-in default.
 */
#include <string.h>

#include "http/parse.h"

#define DEFAULT_MAX_REQUEST_LINE 8192
#define DEFAULT_MAX_HEAD 32768
#define DEFAULT_MAX_HEADERS 100

/* RFC 9112 section 2.2 asks to ignore "at least one" empty line before a request line. */
#define MAX_LEADING_EMPTY_LINES 4

/* RFC 9110 section 5.6.2: tchar. */
static const unsigned char tchar[256] = {
        /* 0x00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        /* 0x10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        /* 0x20 */ 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
        /* 0x30 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
        /* 0x40 */ 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        /* 0x50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
        /* 0x60 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        /* 0x70 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
};

static int is_tchar(unsigned char c)
{
	return tchar[c];
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* field-vchar, SP and HTAB (RFC 9110 section 5.5); also the reason-phrase alphabet. */
static int is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Visible ASCII, except '#': a fragment never belongs in a request-target. */
static int is_target_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '#';
}

/* RFC 3986 unreserved: what we accept in a host name. */
static int is_host_char(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

struct limits {
	size_t line;
	size_t head;
	unsigned headers;
};

static void resolve_limits(const struct moat_http_limits *lim, struct limits *l)
{
	l->line = DEFAULT_MAX_REQUEST_LINE;
	l->head = DEFAULT_MAX_HEAD;
	l->headers = DEFAULT_MAX_HEADERS;
	if (lim == NULL)
		return;
	if (lim->max_request_line != 0)
		l->line = lim->max_request_line;
	if (lim->max_head != 0)
		l->head = lim->max_head;
	if (lim->max_headers != 0)
		l->headers = lim->max_headers;
	if (l->headers > MOAT_HTTP_MAX_HEADERS)
		l->headers = MOAT_HTTP_MAX_HEADERS;
}

/*
 * End of the bytes a scan starting at `start` may examine: `limit` bytes at most, fewer if
 * that is all we have. *capped tells whether the limit (rather than the data) ends the window:
 * an element still incomplete at a capped window end is longer than the limit.
 */
static size_t window(size_t start, size_t len, size_t limit, int *capped)
{
	if (len - start >= limit) {
		*capped = 1;
		return start + limit;
	}
	*capped = 0;
	return len;
}

static struct moat_slice slice(const char *buf, size_t from, size_t to)
{
	return (struct moat_slice){buf + from, to - from};
}

/* Result of the scanning helpers: complete, need more bytes, or refused (reason in err). */
#define SCAN_OK 0
#define SCAN_MORE 1
#define SCAN_BAD 2

struct scan {
	const char *buf;
	size_t end; /* window end: never read at or past it */
	const char *err;
};

static int bad(struct scan *s, const char *err)
{
	s->err = err;
	return SCAN_BAD;
}

/* Expects CRLF at *p. */
static int scan_crlf(struct scan *s, size_t *p)
{
	if (*p == s->end)
		return SCAN_MORE;
	if (s->buf[*p] == '\n')
		return bad(s, "bare LF");
	if (s->buf[*p] != '\r')
		return bad(s, "expected CRLF");
	if (*p + 1 == s->end)
		return SCAN_MORE;
	if (s->buf[*p + 1] != '\n')
		return bad(s, "CR not followed by LF");
	*p += 2;
	return SCAN_OK;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 section 2.3); case-sensitive. */
static int scan_version(struct scan *s, size_t *p, int *major, int *minor)
{
	static const char name[] = "HTTP/";
	size_t i = *p;
	size_t k;

	for (k = 0; k < sizeof(name) - 1; k++, i++) {
		if (i == s->end)
			return SCAN_MORE;
		if (s->buf[i] != name[k])
			return bad(s, "invalid HTTP version");
	}
	if (i == s->end)
		return SCAN_MORE;
	if (!is_digit((unsigned char)s->buf[i]))
		return bad(s, "invalid HTTP version");
	*major = s->buf[i++] - '0';
	if (i == s->end)
		return SCAN_MORE;
	if (s->buf[i++] != '.')
		return bad(s, "invalid HTTP version");
	if (i == s->end)
		return SCAN_MORE;
	if (!is_digit((unsigned char)s->buf[i]))
		return bad(s, "invalid HTTP version");
	*minor = s->buf[i++] - '0';
	*p = i;
	return SCAN_OK;
}

/*
 * Header lines after the start line, up to and including the empty line.
 * SCAN_MORE with *too_many set means a header line past max_headers has begun.
 */
static int scan_fields(struct scan *s, size_t *p, unsigned max_headers, struct moat_http_header *h,
                       unsigned *nheaders, int *too_many)
{
	const char *buf = s->buf;
	size_t i = *p;
	unsigned n = 0;

	*too_many = 0;
	for (;;) {
		size_t name0, value0, value1;
		unsigned char c;
		int r;

		if (i == s->end)
			goto more;
		c = (unsigned char)buf[i];
		if (c == '\r' || c == '\n') {
			r = scan_crlf(s, &i);
			if (r == SCAN_MORE)
				goto more;
			if (r != SCAN_OK)
				return r;
			*p = i;
			*nheaders = n;
			return SCAN_OK;
		}
		if (is_ows(c))
			return bad(s, "obsolete line folding or whitespace before a header");
		if (n == max_headers) {
			*too_many = 1;
			goto more;
		}

		name0 = i;
		while (i < s->end && is_tchar((unsigned char)buf[i]))
			i++;
		if (i == s->end)
			goto more;
		if (buf[i] != ':') {
			if (i == name0)
				return bad(s, "invalid header name");
			if (is_ows((unsigned char)buf[i]))
				return bad(s, "whitespace between header name and colon");
			return bad(s, "invalid character in header name");
		}
		if (i == name0)
			return bad(s, "empty header name");
		h[n].name = slice(buf, name0, i);
		i++;

		while (i < s->end && is_ows((unsigned char)buf[i]))
			i++;
		value0 = i;
		while (i < s->end && is_field_char((unsigned char)buf[i]))
			i++;
		if (i == s->end)
			goto more;
		value1 = i;
		r = scan_crlf(s, &i);
		if (r == SCAN_MORE)
			goto more;
		if (r != SCAN_OK) {
			if (buf[value1] != '\r' && buf[value1] != '\n')
				s->err = "invalid character in header value";
			return r;
		}
		while (value1 > value0 && is_ows((unsigned char)buf[value1 - 1]))
			value1--;
		h[n].value = slice(buf, value0, value1);
		h[n].flags = 0;
		n++;
	}
more:
	*nheaders = n;
	return SCAN_MORE;
}

/* Compares a slice with a lower-case prefix, ignoring case. */
static int has_prefix_ci(struct moat_slice a, const char *prefix)
{
	size_t n = strlen(prefix);

	if (a.len < n)
		return 0;
	return moat_slice_eq_ci((struct moat_slice){a.p, n}, prefix);
}

/*
 * Identity a client must not set. '_' counts as '-': CGI, WSGI, PHP and Rack map both
 * "Moat-Device" and "Moat_Device" to HTTP_MOAT_DEVICE, so either spelling would reach an
 * origin as the same variable.
 */
static int is_spoofable(struct moat_slice name)
{
	char norm[32];
	struct moat_slice n = {norm, name.len < sizeof(norm) ? name.len : sizeof(norm)};

	for (size_t i = 0; i < n.len; i++)
		norm[i] = name.p[i] == '_' ? '-' : name.p[i];
	if (name.len <= sizeof(norm) &&
	    (moat_slice_eq_ci(n, "forwarded") || moat_slice_eq_ci(n, "x-real-ip")))
		return 1;
	/* prefixes: the first 32 bytes are enough to decide */
	return has_prefix_ci(n, "moat-") || has_prefix_ci(n, "x-forwarded-") ||
	       has_prefix_ci(n, "x-client-cert");
}

static unsigned name_flags(struct moat_slice name)
{
	static const char *const hop[] = {
	        "connection",
	        "keep-alive",
	        "proxy-connection",
	        "te",
	        "trailer",
	        "upgrade",
	        "transfer-encoding",
	        "proxy-authenticate",
	        "proxy-authorization",
	};
	size_t i;

	if (moat_slice_eq_ci(name, "content-length"))
		return MOAT_HDR_CONTENT_LENGTH;
	if (moat_slice_eq_ci(name, "host"))
		return MOAT_HDR_HOST;
	for (i = 0; i < MOAT_ARRAY_LEN(hop); i++)
		if (moat_slice_eq_ci(name, hop[i]))
			return MOAT_HDR_HOP;
	if (is_spoofable(name))
		return MOAT_HDR_SPOOF;
	return 0;
}

/*
 * Next element of a comma-separated token list (RFC 9110 section 5.6.1, empty elements
 * allowed). Returns 1 with *tok, 0 at the end, -1 on a syntax error.
 */
static int next_token(struct moat_slice v, size_t *pos, struct moat_slice *tok)
{
	size_t i = *pos;
	size_t t0;

	while (i < v.len && (v.p[i] == ',' || is_ows((unsigned char)v.p[i])))
		i++;
	if (i == v.len) {
		*pos = i;
		return 0;
	}
	t0 = i;
	while (i < v.len && is_tchar((unsigned char)v.p[i]))
		i++;
	if (i == t0)
		return -1;
	*tok = (struct moat_slice){v.p + t0, i - t0};
	while (i < v.len && is_ows((unsigned char)v.p[i]))
		i++;
	if (i < v.len && v.p[i] != ',')
		return -1;
	*pos = i;
	return 1;
}

/* Content-Length = 1*DIGIT; no sign, no list, no whitespace inside, no overflow. */
static int parse_content_length(struct moat_slice v, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;

	if (v.len == 0)
		return -1;
	for (i = 0; i < v.len; i++) {
		unsigned d;

		if (!is_digit((unsigned char)v.p[i]))
			return -1;
		d = (unsigned)(v.p[i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

static int slice_eq(struct moat_slice a, struct moat_slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static int slice_eq_ci(struct moat_slice a, struct moat_slice b)
{
	size_t i;

	if (a.len != b.len)
		return 0;
	for (i = 0; i < a.len; i++) {
		unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return 0;
	}
	return 1;
}

/* uri-host [ ":" port ], host restricted as described at the top of this file. */
static int valid_host(struct moat_slice h, int need_port)
{
	size_t i = 0, d0;

	if (h.len == 0)
		return 0;
	if (h.p[0] == '[') {
		for (i = 1; i < h.len && h.p[i] != ']'; i++)
			if (!is_hex((unsigned char)h.p[i]) && h.p[i] != ':' && h.p[i] != '.')
				return 0;
		if (i == h.len || i == 1)
			return 0;
		i++;
	} else {
		while (i < h.len && is_host_char((unsigned char)h.p[i]))
			i++;
		if (i == 0)
			return 0;
	}
	if (i == h.len)
		return !need_port;
	if (h.p[i] != ':')
		return 0;
	d0 = ++i;
	while (i < h.len && is_digit((unsigned char)h.p[i]))
		i++;
	return i == h.len && i - d0 >= 1 && i - d0 <= 5;
}

/* What the field pass learned; shared by requests and responses. */
struct fields {
	unsigned ncl, nte, nhost, nexpect;
	int te_chunked; /* every Transfer-Encoding line is exactly "chunked" */
	int expect_other; /* an Expect other than 100-continue */
	int conn_close, conn_keep_alive;
	uint64_t content_length;
	struct moat_slice host;
};

/*
 * Flags every header, checks Content-Length and Connection, and records what the caller
 * needs to decide framing. All refusals here are 400-class syntax problems.
 */
static int check_fields(struct moat_http_header *h, unsigned n, struct fields *f, const char **err)
{
	struct moat_slice cl = {NULL, 0};
	unsigned i, j;

	memset(f, 0, sizeof(*f));
	f->te_chunked = 1;
	for (i = 0; i < n; i++) {
		h[i].flags = name_flags(h[i].name);
		if (h[i].flags & MOAT_HDR_CONTENT_LENGTH) {
			/* identical repeated lines are harmless; any difference is ambiguous */
			if (f->ncl++ > 0) {
				if (!slice_eq(cl, h[i].value)) {
					*err = "conflicting Content-Length";
					return MOAT_EINVAL;
				}
				continue;
			}
			cl = h[i].value;
			if (parse_content_length(cl, &f->content_length) != 0) {
				*err = "invalid Content-Length";
				return MOAT_EINVAL;
			}
		} else if (h[i].flags & MOAT_HDR_HOST) {
			f->nhost++;
			f->host = h[i].value;
		} else if (moat_slice_eq_ci(h[i].name, "transfer-encoding")) {
			f->nte++;
			if (!moat_slice_eq_ci(h[i].value, "chunked"))
				f->te_chunked = 0;
		} else if (moat_slice_eq_ci(h[i].name, "expect")) {
			f->nexpect++;
			if (!moat_slice_eq_ci(h[i].value, "100-continue"))
				f->expect_other = 1;
		}
	}

	for (i = 0; i < n; i++) {
		struct moat_slice tok;
		size_t pos = 0;
		int r;

		if (!moat_slice_eq_ci(h[i].name, "connection"))
			continue;
		while ((r = next_token(h[i].value, &pos, &tok)) == 1) {
			if (moat_slice_eq_ci(tok, "close")) {
				f->conn_close = 1;
				continue;
			}
			if (moat_slice_eq_ci(tok, "keep-alive"))
				f->conn_keep_alive = 1;
			if (moat_slice_eq_ci(tok, "host") ||
			    moat_slice_eq_ci(tok, "content-length")) {
				*err = "Connection names an end-to-end header";
				return MOAT_EINVAL;
			}
			for (j = 0; j < n; j++)
				if (slice_eq_ci(h[j].name, tok))
					h[j].flags |= MOAT_HDR_HOP;
		}
		if (r < 0) {
			*err = "invalid Connection header";
			return MOAT_EINVAL;
		}
	}
	return 0;
}

/* scheme "://" authority [ path-abempty ] [ "?" query ], only http and https. */
static int split_absolute(struct moat_slice t, struct moat_slice *authority,
                          struct moat_slice *path, struct moat_slice *query)
{
	size_t i = 0, a0, p0;
	struct moat_slice scheme;

	if (t.len == 0 || !is_alpha((unsigned char)t.p[0]))
		return -1;
	while (i < t.len && (is_alpha((unsigned char)t.p[i]) || is_digit((unsigned char)t.p[i]) ||
	                     t.p[i] == '+' || t.p[i] == '-' || t.p[i] == '.'))
		i++;
	scheme = (struct moat_slice){t.p, i};
	if (!moat_slice_eq_ci(scheme, "http") && !moat_slice_eq_ci(scheme, "https"))
		return -1;
	if (t.len - i < 3 || memcmp(t.p + i, "://", 3) != 0)
		return -1;
	a0 = i += 3;
	while (i < t.len && t.p[i] != '/' && t.p[i] != '?')
		i++;
	*authority = (struct moat_slice){t.p + a0, i - a0};
	if (!valid_host(*authority, 0))
		return -1;
	p0 = i;
	while (i < t.len && t.p[i] != '?')
		i++;
	*path = (struct moat_slice){t.p + p0, i - p0};
	if (i < t.len)
		i++;
	*query = (struct moat_slice){t.p + i, t.len - i};
	return 0;
}

static int method_is(struct moat_slice m, const char *s)
{
	size_t n = strlen(s);

	/* methods are case-sensitive (RFC 9110 section 9.1) */
	return m.len == n && memcmp(m.p, s, n) == 0;
}

/* Classifies the request-target (RFC 9112 section 3.2) and splits path and query. */
static int split_target(struct moat_http_request *req, struct moat_slice *authority,
                        const char **err)
{
	struct moat_slice t = req->target;

	*authority = (struct moat_slice){NULL, 0};
	req->path = (struct moat_slice){t.p, 0};
	req->query = (struct moat_slice){t.p + t.len, 0};
	if (req->is_connect) {
		if (!valid_host(t, 1)) {
			*err = "CONNECT needs an authority-form target";
			return MOAT_EINVAL;
		}
		return 0;
	}
	if (t.p[0] == '/') {
		const char *q = memchr(t.p, '?', t.len);

		if (q == NULL) {
			req->path = t;
			return 0;
		}
		req->path = (struct moat_slice){t.p, (size_t)(q - t.p)};
		req->query = (struct moat_slice){q + 1, t.len - req->path.len - 1};
		return 0;
	}
	if (t.len == 1 && t.p[0] == '*') {
		if (!method_is(req->method, "OPTIONS")) {
			*err = "asterisk-form target outside OPTIONS";
			return MOAT_EINVAL;
		}
		req->path = t;
		return 0;
	}
	if (split_absolute(t, authority, &req->path, &req->query) != 0) {
		*err = "invalid request target";
		return MOAT_EINVAL;
	}
	return 0;
}

static int refuse(struct moat_http_request *req, int status, const char **err, const char *why)
{
	req->error_status = status;
	*err = why;
	return MOAT_EINVAL;
}

int moat_http_parse_request(const char *buf, size_t len, const struct moat_http_limits *lim,
                            struct moat_http_request *req, const char **err)
{
	struct limits l;
	struct scan s = {buf, 0, NULL};
	struct fields f;
	struct moat_slice authority;
	size_t p = 0, head_end, line0, m0, t0, line_end;
	int head_capped, line_capped, major = 0, minor = 0, too_many, r;
	unsigned k;

	resolve_limits(lim, &l);
	req->method = req->target = req->path = req->query = req->host =
	        (struct moat_slice){buf, 0};
	req->minor = 0;
	req->nheaders = 0;
	req->head_len = 0;
	req->framing = MOAT_BODY_NONE;
	req->content_length = 0;
	req->keep_alive = 0;
	req->expect_continue = 0;
	req->is_head = 0;
	req->is_connect = 0;
	req->error_status = 0;
	*err = NULL;

	head_end = window(0, len, l.head, &head_capped);
	s.end = head_end;

	for (k = 0;; k++) {
		if (p == s.end)
			goto more_head;
		if (buf[p] != '\r' && buf[p] != '\n')
			break;
		if (k == MAX_LEADING_EMPTY_LINES)
			return refuse(req, 400, err, "too many empty lines before the request");
		r = scan_crlf(&s, &p);
		if (r == SCAN_MORE)
			goto more_head;
		if (r != SCAN_OK)
			return refuse(req, 400, err, s.err);
	}

	/* the request line: method SP request-target SP HTTP-version CRLF */
	line0 = p;
	line_end = window(line0, len, l.line, &line_capped);
	s.end = line_end < head_end ? line_end : head_end;

	m0 = p;
	while (p < s.end && is_tchar((unsigned char)buf[p]))
		p++;
	if (p == s.end)
		goto more_line;
	if (buf[p] != ' ' || p == m0)
		return refuse(req, 400, err, "invalid method");
	req->method = slice(buf, m0, p);
	p++;

	t0 = p;
	while (p < s.end && is_target_char((unsigned char)buf[p]))
		p++;
	if (p == s.end)
		goto more_line;
	if (p == t0)
		return refuse(req, 400, err, "empty request target");
	if (buf[p] != ' ') {
		if (buf[p] == '\r' || buf[p] == '\n')
			return refuse(req, 400, err, "missing HTTP version");
		return refuse(req, 400, err, "invalid character in request target");
	}
	req->target = slice(buf, t0, p);
	p++;

	r = scan_version(&s, &p, &major, &minor);
	if (r == SCAN_OK)
		r = scan_crlf(&s, &p);
	if (r == SCAN_MORE)
		goto more_line;
	if (r != SCAN_OK)
		return refuse(req, 400, err, s.err);
	if (major != 1 || minor > 1)
		return refuse(req, 505, err, "unsupported HTTP version");
	req->minor = minor;
	req->is_head = method_is(req->method, "HEAD");
	req->is_connect = method_is(req->method, "CONNECT");
	if (split_target(req, &authority, err) != 0)
		return refuse(req, 400, err, *err);

	s.end = head_end;
	r = scan_fields(&s, &p, l.headers, req->headers, &req->nheaders, &too_many);
	if (r == SCAN_MORE) {
		if (too_many)
			return refuse(req, 431, err, "too many header lines");
		goto more_head;
	}
	if (r != SCAN_OK)
		return refuse(req, 400, err, s.err);

	if (check_fields(req->headers, req->nheaders, &f, err) != 0)
		return refuse(req, 400, err, *err);

	if (f.nhost > 1)
		return refuse(req, 400, err, "more than one Host header");
	if (f.nhost == 0 && minor == 1)
		return refuse(req, 400, err, "missing Host header");
	if (f.nhost == 1) {
		if (f.host.len > 0 && !valid_host(f.host, 0))
			return refuse(req, 400, err, "invalid Host header");
		req->host = f.host;
	}
	if (authority.p != NULL) {
		if (f.nhost == 1 && !slice_eq_ci(authority, f.host))
			return refuse(req, 400, err, "Host differs from the target's authority");
		req->host = authority;
	}

	if (f.nte > 0) {
		/* RFC 9112 section 6.1: TE in HTTP/1.0 means the framing is faulty */
		if (minor == 0)
			return refuse(req, 400, err, "Transfer-Encoding in HTTP/1.0");
		if (f.ncl > 0)
			return refuse(req, 400, err, "Content-Length with Transfer-Encoding");
		if (f.nte > 1 || !f.te_chunked)
			return refuse(req, 400, err, "Transfer-Encoding other than chunked");
		req->framing = MOAT_BODY_CHUNKED;
	} else if (f.ncl > 0) {
		req->framing = MOAT_BODY_LENGTH;
		req->content_length = f.content_length;
	}

	/* answered after every 400, so that a malformed request never looks acceptable */
	if (f.expect_other)
		return refuse(req, 417, err, "unsupported expectation");
	/* RFC 9110 section 10.1.1: ignore 100-continue from HTTP/1.0 clients */
	req->expect_continue = f.nexpect > 0 && minor == 1;

	req->keep_alive = minor == 1 || f.conn_keep_alive;
	if (f.conn_close)
		req->keep_alive = 0;
	req->head_len = p;
	return MOAT_OK;

more_line:
	if (line_capped && s.end == line_end)
		return refuse(req, 414, err, "request line too long");
more_head:
	if (head_capped && s.end == head_end)
		return refuse(req, 431, err, "request head too large");
	return MOAT_EAGAIN;
}

int moat_http_parse_response(const char *buf, size_t len, const struct moat_http_limits *lim,
                             int request_is_head, struct moat_http_response *res, const char **err)
{
	struct limits l;
	struct scan s = {buf, 0, NULL};
	struct fields f;
	size_t p = 0, r0;
	int capped, major = 0, minor = 0, too_many, r;
	unsigned i;

	resolve_limits(lim, &l);
	res->status = 0;
	res->minor = 0;
	res->reason = (struct moat_slice){buf, 0};
	res->nheaders = 0;
	res->head_len = 0;
	res->framing = MOAT_BODY_NONE;
	res->content_length = 0;
	res->keep_alive = 0;
	*err = NULL;

	s.end = window(0, len, l.head, &capped);

	/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF */
	r = scan_version(&s, &p, &major, &minor);
	if (r != SCAN_OK)
		goto fail;
	if (major != 1 || minor > 1) {
		*err = "unsupported HTTP version";
		return MOAT_EINVAL;
	}
	for (i = 0; i < 4; i++, p++) {
		if (p == s.end)
			goto more;
		if (i == 0 ? buf[p] != ' ' : !is_digit((unsigned char)buf[p])) {
			*err = "invalid status line";
			return MOAT_EINVAL;
		}
		if (i > 0)
			res->status = res->status * 10 + (buf[p] - '0');
	}
	if (res->status < 100 || res->status > 599) {
		*err = "invalid status code";
		return MOAT_EINVAL;
	}
	if (p == s.end)
		goto more;
	if (buf[p] == ' ') {
		r0 = ++p;
		while (p < s.end && is_field_char((unsigned char)buf[p]))
			p++;
		if (p == s.end)
			goto more;
		res->reason = slice(buf, r0, p);
	} else {
		res->reason = slice(buf, p, p);
	}
	r = scan_crlf(&s, &p);
	if (r != SCAN_OK) {
		if (r == SCAN_BAD && buf[p] != '\r' && buf[p] != '\n')
			s.err = "invalid status line";
		goto fail;
	}
	res->minor = minor;

	r = scan_fields(&s, &p, l.headers, res->headers, &res->nheaders, &too_many);
	if (r != SCAN_OK) {
		if (too_many)
			goto too_big;
		goto fail;
	}
	if (check_fields(res->headers, res->nheaders, &f, err) != 0)
		return MOAT_EINVAL;

	res->keep_alive = minor == 1 || f.conn_keep_alive;
	if (f.conn_close)
		res->keep_alive = 0;

	if (f.nte > 0) {
		if (minor == 0) {
			*err = "Transfer-Encoding in HTTP/1.0";
			return MOAT_EINVAL;
		}
		if (f.ncl > 0) {
			*err = "Content-Length with Transfer-Encoding";
			return MOAT_EINVAL;
		}
		/* only a bare "chunked" lets us find the end of a body we do not decode */
		if (f.nte > 1 || !f.te_chunked) {
			*err = "Transfer-Encoding other than chunked";
			return MOAT_EINVAL;
		}
	}
	if (request_is_head || res->status < 200 || res->status == 204 || res->status == 304) {
		res->framing = MOAT_BODY_NONE;
	} else if (f.nte > 0) {
		res->framing = MOAT_BODY_CHUNKED;
	} else if (f.ncl > 0) {
		res->framing = MOAT_BODY_LENGTH;
		res->content_length = f.content_length;
	} else {
		res->framing = MOAT_BODY_UNTIL_CLOSE;
		res->keep_alive = 0;
	}
	res->head_len = p;
	return MOAT_OK;

fail:
	if (r == SCAN_BAD) {
		*err = s.err;
		return MOAT_EINVAL;
	}
more:
	if (capped)
		goto too_big;
	return MOAT_EAGAIN;
too_big:
	*err = "response head too large";
	return MOAT_EINVAL;
}

const struct moat_http_header *moat_http_header_find(const struct moat_http_header *h, unsigned n,
                                                     const char *name)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (moat_slice_eq_ci(h[i].name, name))
			return &h[i];
	return NULL;
}

const char *moat_http_reason(int status)
{
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
	        {100, "Continue"},
	        {101, "Switching Protocols"},
	        {200, "OK"},
	        {201, "Created"},
	        {202, "Accepted"},
	        {203, "Non-Authoritative Information"},
	        {204, "No Content"},
	        {205, "Reset Content"},
	        {206, "Partial Content"},
	        {300, "Multiple Choices"},
	        {301, "Moved Permanently"},
	        {302, "Found"},
	        {303, "See Other"},
	        {304, "Not Modified"},
	        {305, "Use Proxy"},
	        {307, "Temporary Redirect"},
	        {308, "Permanent Redirect"},
	        {400, "Bad Request"},
	        {401, "Unauthorized"},
	        {402, "Payment Required"},
	        {403, "Forbidden"},
	        {404, "Not Found"},
	        {405, "Method Not Allowed"},
	        {406, "Not Acceptable"},
	        {407, "Proxy Authentication Required"},
	        {408, "Request Timeout"},
	        {409, "Conflict"},
	        {410, "Gone"},
	        {411, "Length Required"},
	        {412, "Precondition Failed"},
	        {413, "Content Too Large"},
	        {414, "URI Too Long"},
	        {415, "Unsupported Media Type"},
	        {416, "Range Not Satisfiable"},
	        {417, "Expectation Failed"},
	        {421, "Misdirected Request"},
	        {422, "Unprocessable Content"},
	        {426, "Upgrade Required"},
	        {428, "Precondition Required"},
	        {429, "Too Many Requests"},
	        {431, "Request Header Fields Too Large"},
	        {500, "Internal Server Error"},
	        {501, "Not Implemented"},
	        {502, "Bad Gateway"},
	        {503, "Service Unavailable"},
	        {504, "Gateway Timeout"},
	        {505, "HTTP Version Not Supported"},
	};
	size_t i;

	for (i = 0; i < MOAT_ARRAY_LEN(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}
