/*
 * Strict HTTP/1.1 message-head parsers (RFC 9110, RFC 9112) and the chunked body decoder.
 *
 * The head parsers are stateless: call them again on the whole buffer when more bytes arrive
 * (heads are small and bounded by the limits, so re-scanning is cheap and keeps the parser
 * simple to reason about). Parsed names and values are slices into the caller's buffer, which
 * must stay unchanged while they are used. Nothing is allocated.
 *
 * Every refusal carries the status code a server answers with (400, 414, 431, 501, 505, 417)
 * and a short human-readable reason.
 */
#ifndef MOAT_HTTP_PARSE_H
#define MOAT_HTTP_PARSE_H

#include "core/common.h"

/* Upper bound of header lines in one message; the configured limit may be lower. */
#define MOAT_HTTP_MAX_HEADERS 128

/* Header flags computed by the parsers, used by the proxy to rewrite the head. */
#define MOAT_HDR_HOP                                                                               \
	0x01 /* hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE,
                                        Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate,
                                        Proxy-Authorization, and every name listed in Connection */
#define MOAT_HDR_SPOOF                                                                             \
	0x02 /* identity a client must not set: Moat-*, Forwarded,
                                        X-Forwarded-*, X-Real-IP, X-Client-Cert* */
#define MOAT_HDR_CONTENT_LENGTH 0x04
#define MOAT_HDR_HOST 0x08

struct moat_http_header {
	struct moat_slice name; /* as received, validated as an RFC 9110 token */
	struct moat_slice value; /* leading and trailing whitespace removed */
	unsigned flags; /* MOAT_HDR_* */
};

enum moat_http_framing {
	MOAT_BODY_NONE = 0, /* no body follows the head */
	MOAT_BODY_LENGTH, /* content_length bytes follow */
	MOAT_BODY_CHUNKED, /* chunked transfer coding */
	MOAT_BODY_UNTIL_CLOSE, /* responses only: the body ends when the origin closes */
};

/* A zero field (or a NULL limits pointer) means the built-in default: 8 KiB line, 32 KiB head,
 * 100 header lines. */
struct moat_http_limits {
	size_t max_request_line; /* request line incl. CRLF; longer -> 414 */
	size_t max_head; /* whole head incl. request line and final CRLF; longer -> 431 */
	unsigned max_headers; /* number of header lines; more -> 431 (<= MOAT_HTTP_MAX_HEADERS) */
};

struct moat_http_request {
	struct moat_slice method;
	struct moat_slice target; /* origin-form, absolute-form, authority-form or "*" */
	struct moat_slice
	        path; /* target up to '?' (origin-form; for absolute-form the path part) */
	struct moat_slice query; /* after '?', without it; empty if none */
	struct moat_slice host; /* value of the Host header */
	int minor; /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
	struct moat_http_header headers[MOAT_HTTP_MAX_HEADERS];
	unsigned nheaders;
	size_t head_len; /* bytes of the head including the empty line */
	enum moat_http_framing framing;
	uint64_t content_length; /* when framing == MOAT_BODY_LENGTH */
	unsigned keep_alive : 1; /* per version default and Connection tokens */
	unsigned expect_continue : 1;
	unsigned is_head : 1; /* method is HEAD */
	unsigned is_connect : 1; /* method is CONNECT */
	int error_status; /* on failure: the status to answer with */
};

struct moat_http_response {
	int status;
	int minor;
	struct moat_slice reason;
	struct moat_http_header headers[MOAT_HTTP_MAX_HEADERS];
	unsigned nheaders;
	size_t head_len;
	enum moat_http_framing framing;
	uint64_t content_length;
	unsigned keep_alive : 1; /* the origin connection may be reused after this response */
};

/*
 * Parses a request head at the start of buf[0..len).
 * Returns MOAT_OK when the head is complete (req->head_len set), MOAT_EAGAIN when more bytes
 * are needed and no limit is exceeded yet, or MOAT_EINVAL with req->error_status (400, 414,
 * 431, 505, 417) and *err set. Any Transfer-Encoding other than exactly "chunked" is a 400:
 * a proxy that cannot frame a body the way its origin will must not forward it. Refused, among others: bare LF, obs-fold, whitespace before
 * a colon, invalid names, NUL/CR/LF or other controls in values, Content-Length together with
 * Transfer-Encoding, differing or malformed Content-Length, a Transfer-Encoding that is not
 * exactly "chunked", Transfer-Encoding in HTTP/1.0, missing or repeated Host in HTTP/1.1.
 */
int moat_http_parse_request(const char *buf, size_t len, const struct moat_http_limits *lim,
                            struct moat_http_request *req, const char **err) MOAT_WUR;

/*
 * Parses a response head from an origin. `request_is_head` makes the body empty whatever the
 * headers say. 1xx, 204 and 304 have no body. Anything malformed (including Content-Length
 * with Transfer-Encoding) returns MOAT_EINVAL: the proxy answers 502 and passes nothing on.
 */
int moat_http_parse_response(const char *buf, size_t len, const struct moat_http_limits *lim,
                             int request_is_head, struct moat_http_response *res,
                             const char **err) MOAT_WUR;

/* Decoder state for a chunked body; zero it (or call _init) before the first call. */
struct moat_http_chunked {
	int state;
	uint64_t remaining; /* data bytes left in the current chunk */
	size_t line_len; /* bytes of the current size line or trailer section seen so far */
	size_t max_line; /* cap for a chunk-size line with extensions */
	size_t max_trailer; /* cap for the trailer section */
};

void moat_http_chunked_init(struct moat_http_chunked *c, size_t max_line, size_t max_trailer);

/*
 * Feeds in[0..len) to the decoder. Consumes framing bytes and at most one run of chunk data.
 * Returns MOAT_OK with *consumed (bytes of `in` used) and *data (the data run inside `in`,
 * possibly empty) set; MOAT_EAGAIN when all of `in` was consumed as framing and more is
 * needed (*consumed == len, data empty); 1 when the last chunk and its trailer section are
 * complete (*consumed counts up to and including the final CRLF; trailers are discarded);
 * MOAT_EINVAL with *err on a malformed size, extension, missing CRLF or oversized line.
 */
int moat_http_chunked_decode(struct moat_http_chunked *c, const char *in, size_t len,
                             size_t *consumed, struct moat_slice *data, const char **err) MOAT_WUR;

/* Finds the first header named `name` (case-insensitive); NULL if none. */
const struct moat_http_header *moat_http_header_find(const struct moat_http_header *h, unsigned n,
                                                     const char *name);

/* The standard reason phrase of a status code ("Bad Request"), or "Unknown". */
const char *moat_http_reason(int status);

#endif
