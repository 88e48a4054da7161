/*
 * Decoder for the chunked transfer coding (RFC 9112 section 7.1).
 *
 * A byte-at-a-time state machine for the framing (size lines, extensions, CRLFs, trailers), so
 * that input split anywhere decodes the same; chunk data is never examined, only handed back
 * as a slice of the input. Every state transition is driven by one input byte, and the only
 * unbounded quantity, data, is counted down in `remaining`.
 *
 * Limits: a size line (digits, extensions and CRLF) is at most max_line bytes and the trailer
 * section (every trailer line and the final CRLF) at most max_trailer bytes. A zero limit, as
 * left by zeroing the struct instead of calling moat_http_chunked_init, means the default.
 *
 * Strictness: at most 16 hex digits (so the size always fits in 64 bits), no sign or leading
 * whitespace, extensions as in the RFC grammar (BWS allowed around ';' and '=', but no
 * whitespace before the CRLF), CRLF only, trailer lines checked like header lines.
 */
#include "http/parse.h"

#define DEFAULT_MAX_LINE 4096
#define DEFAULT_MAX_TRAILER 16384
#define MAX_SIZE_DIGITS 16

enum {
	ST_SIZE = 0, /* zero so that a zeroed struct starts here */
	ST_SIZE_WS,
	ST_EXT_NAME_START,
	ST_EXT_NAME,
	ST_EXT_NAME_WS,
	ST_EXT_VALUE_START,
	ST_EXT_TOKEN,
	ST_EXT_QUOTED,
	ST_EXT_QUOTED_PAIR,
	ST_EXT_AFTER_QUOTE,
	ST_EXT_VALUE_WS,
	ST_SIZE_LF,
	ST_DATA,
	ST_DATA_CR,
	ST_DATA_LF,
	ST_TRAILER_START,
	ST_TRAILER_NAME,
	ST_TRAILER_VALUE,
	ST_TRAILER_LF,
	ST_END_LF,
	ST_DONE,
	ST_ERROR,
};

/* RFC 9110 section 5.6.2: tchar. */
static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	switch (c) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '.':
	case '^':
	case '_':
	case '`':
	case '|':
	case '~':
		return 1;
	default:
		return 0;
	}
}

static int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* qdtext (RFC 9110 section 5.6.4) */
static int is_qdtext(unsigned char c)
{
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
	       (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

/* HTAB, SP, VCHAR, obs-text: the second byte of a quoted-pair, and field values */
static int is_field_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

void moat_http_chunked_init(struct moat_http_chunked *c, size_t max_line, size_t max_trailer)
{
	c->state = ST_SIZE;
	c->remaining = 0;
	c->line_len = 0;
	c->max_line = max_line;
	c->max_trailer = max_trailer;
}

/* One size-line byte other than a digit: extensions and the CRLF. Returns the next state. */
static int size_line_byte(int state, unsigned char ch, const char **err)
{
	switch (state) {
	case ST_SIZE:
	case ST_SIZE_WS:
		if (ch == ';')
			return ST_EXT_NAME_START;
		if (is_ows(ch))
			return ST_SIZE_WS;
		if (ch == '\r' && state == ST_SIZE)
			return ST_SIZE_LF;
		*err = ch == '\n' ? "bare LF in chunk size line" : "invalid chunk size";
		return ST_ERROR;
	case ST_EXT_NAME_START:
		if (is_ows(ch))
			return state;
		if (is_tchar(ch))
			return ST_EXT_NAME;
		break;
	case ST_EXT_NAME:
		if (is_tchar(ch))
			return state;
		if (ch == '=')
			return ST_EXT_VALUE_START;
		if (ch == ';')
			return ST_EXT_NAME_START;
		if (is_ows(ch))
			return ST_EXT_NAME_WS;
		if (ch == '\r')
			return ST_SIZE_LF;
		break;
	case ST_EXT_NAME_WS:
		if (is_ows(ch))
			return state;
		if (ch == '=')
			return ST_EXT_VALUE_START;
		if (ch == ';')
			return ST_EXT_NAME_START;
		break;
	case ST_EXT_VALUE_START:
		if (is_ows(ch))
			return state;
		if (ch == '"')
			return ST_EXT_QUOTED;
		if (is_tchar(ch))
			return ST_EXT_TOKEN;
		break;
	case ST_EXT_TOKEN:
		if (is_tchar(ch))
			return state;
		if (ch == ';')
			return ST_EXT_NAME_START;
		if (is_ows(ch))
			return ST_EXT_VALUE_WS;
		if (ch == '\r')
			return ST_SIZE_LF;
		break;
	case ST_EXT_QUOTED:
		if (ch == '"')
			return ST_EXT_AFTER_QUOTE;
		if (ch == '\\')
			return ST_EXT_QUOTED_PAIR;
		if (is_qdtext(ch))
			return state;
		break;
	case ST_EXT_QUOTED_PAIR:
		if (is_field_char(ch))
			return ST_EXT_QUOTED;
		break;
	case ST_EXT_AFTER_QUOTE:
		if (ch == ';')
			return ST_EXT_NAME_START;
		if (is_ows(ch))
			return ST_EXT_VALUE_WS;
		if (ch == '\r')
			return ST_SIZE_LF;
		break;
	case ST_EXT_VALUE_WS:
		if (is_ows(ch))
			return state;
		if (ch == ';')
			return ST_EXT_NAME_START;
		break;
	default:
		break;
	}
	*err = ch == '\n' ? "bare LF in chunk size line" : "invalid chunk extension";
	return ST_ERROR;
}

/* One byte of the trailer section. Returns the next state. */
static int trailer_byte(int state, unsigned char ch, const char **err)
{
	switch (state) {
	case ST_TRAILER_START:
		if (ch == '\r')
			return ST_END_LF;
		if (is_tchar(ch))
			return ST_TRAILER_NAME;
		if (is_ows(ch))
			*err = "obsolete line folding in trailer";
		else if (ch == '\n')
			*err = "bare LF in trailer";
		else
			*err = "invalid trailer name";
		return ST_ERROR;
	case ST_TRAILER_NAME:
		if (is_tchar(ch))
			return state;
		if (ch == ':')
			return ST_TRAILER_VALUE;
		*err = is_ows(ch) ? "whitespace before colon in trailer" : "invalid trailer name";
		return ST_ERROR;
	case ST_TRAILER_VALUE:
		if (is_field_char(ch))
			return state;
		if (ch == '\r')
			return ST_TRAILER_LF;
		*err = ch == '\n' ? "bare LF in trailer" : "invalid character in trailer";
		return ST_ERROR;
	case ST_TRAILER_LF:
	case ST_END_LF:
		if (ch == '\n')
			return state == ST_END_LF ? ST_DONE : ST_TRAILER_START;
		*err = "CR not followed by LF in trailer";
		return ST_ERROR;
	default:
		*err = "internal state error";
		return ST_ERROR;
	}
}

int moat_http_chunked_decode(struct moat_http_chunked *c, const char *in, size_t len,
                             size_t *consumed, struct moat_slice *data, const char **err)
{
	size_t max_line = c->max_line ? c->max_line : DEFAULT_MAX_LINE;
	size_t max_trailer = c->max_trailer ? c->max_trailer : DEFAULT_MAX_TRAILER;
	size_t i = 0;

	*consumed = 0;
	*data = (struct moat_slice){in, 0};
	*err = NULL;

	if (c->state == ST_DONE)
		return 1;
	if (c->state == ST_ERROR) {
		*err = "chunked decoder already failed";
		return MOAT_EINVAL;
	}

	while (i < len) {
		unsigned char ch = (unsigned char)in[i];
		int hv;

		switch (c->state) {
		case ST_DATA: {
			size_t avail = len - i;
			size_t n = c->remaining < avail ? (size_t)c->remaining : avail;

			*data = (struct moat_slice){in + i, n};
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = ST_DATA_CR;
			*consumed = i + n;
			return MOAT_OK;
		}
		case ST_DATA_CR:
			if (ch != '\r') {
				*err = "missing CRLF after chunk data";
				goto fail;
			}
			c->state = ST_DATA_LF;
			break;
		case ST_DATA_LF:
			if (ch != '\n') {
				*err = "missing CRLF after chunk data";
				goto fail;
			}
			c->state = ST_SIZE;
			c->line_len = 0;
			c->remaining = 0;
			break;
		case ST_SIZE_LF:
			if (ch != '\n') {
				*err = "CR not followed by LF in chunk size line";
				goto fail;
			}
			c->line_len = 0;
			c->state = c->remaining == 0 ? ST_TRAILER_START : ST_DATA;
			break;
		case ST_TRAILER_START:
		case ST_TRAILER_NAME:
		case ST_TRAILER_VALUE:
		case ST_TRAILER_LF:
		case ST_END_LF:
			if (++c->line_len > max_trailer) {
				*err = "chunked trailer section too large";
				goto fail;
			}
			c->state = trailer_byte(c->state, ch, err);
			if (c->state == ST_ERROR)
				goto fail;
			if (c->state == ST_DONE) {
				*consumed = i + 1;
				return 1;
			}
			break;
		default:
			/*
			 * The size line: line_len counts its bytes, and with its CRLF it must fit
			 * in max_line. A byte other than CR needs room for at least a CRLF after
			 * it, so an overlong line is refused before its end arrives.
			 */
			if (max_line - c->line_len < (ch == '\r' ? 2u : 3u)) {
				*err = "chunk size line too long";
				goto fail;
			}
			hv = c->state == ST_SIZE ? hex_value(ch) : -1;
			if (hv >= 0) {
				/* in ST_SIZE every byte so far was a digit */
				if (c->line_len == MAX_SIZE_DIGITS) {
					*err = "chunk size too large";
					goto fail;
				}
				c->remaining = (c->remaining << 4) | (uint64_t)hv;
			} else if (c->state == ST_SIZE && c->line_len == 0) {
				*err = ch == '\n' ? "bare LF in chunk size line"
				                  : "invalid chunk size";
				goto fail;
			} else {
				c->state = size_line_byte(c->state, ch, err);
				if (c->state == ST_ERROR)
					goto fail;
			}
			c->line_len++;
			break;
		}
		i++;
	}
	*consumed = len;
	return MOAT_EAGAIN;

fail:
	c->state = ST_ERROR;
	return MOAT_EINVAL;
}
