/*
 * JSON in and out of the admin API: typed fields of the request body, the syntax of names and
 * ids, query parameters, and the answers. A refused field answers 400 with the field named in
 * the detail, so a handler only has to return when a helper says -1.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"

/* What each syntax accepts, as told to the client. */
static const char *const syntax_desc[] = {
        [ADMIN_SYNTAX_TEXT] = "printable UTF-8 text",
        [ADMIN_SYNTAX_TENANT] = "a tenant name: [a-z0-9][a-z0-9-]{0,62}",
        [ADMIN_SYNTAX_DEVICE_ID] = "a device id: [A-Za-z0-9._:-]{1,128}",
        [ADMIN_SYNTAX_RULE_ID] = "a rule id: [A-Za-z0-9_.:-]{1,64}",
        [ADMIN_SYNTAX_TAG] = "a tag: [A-Za-z0-9._:-]{1,64}",
        [ADMIN_SYNTAX_HOST] = "a DNS name, optionally starting with \"*.\"",
        [ADMIN_SYNTAX_PEM] = "PEM text",
};

static int is_lower_digit(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static int is_alnum(unsigned char ch)
{
	return is_lower_digit(ch) || (ch >= 'A' && ch <= 'Z');
}

/* 1..max bytes, each alphanumeric or one of `extra`. */
static int ident_ok(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++) {
		if (!is_alnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
			return 0;
	}
	return 1;
}

static int tenant_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 63 || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++) {
		if (!is_lower_digit((unsigned char)s[i]) && s[i] != '-')
			return 0;
	}
	return 1;
}

/* Length of the UTF-8 sequence starting at p (shortest form, no surrogates, at most
 * U+10FFFF), 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/* Valid UTF-8 without control characters; PEM text may also hold line breaks and tabs. */
static int text_ok(const char *s, int pem)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		size_t n = utf8_seq(p);

		if (n == 0)
			return 0;
		if (n == 1 && (*p < 0x20 || *p == 0x7f) &&
		    !(pem && (*p == '\n' || *p == '\r' || *p == '\t')))
			return 0;
		p += n;
	}
	return 1;
}

int admin_syntax_ok(int syntax, const char *s)
{
	switch (syntax) {
	case ADMIN_SYNTAX_TEXT:
		return text_ok(s, 0);
	case ADMIN_SYNTAX_PEM:
		return text_ok(s, 1);
	case ADMIN_SYNTAX_TENANT:
		return tenant_ok(s);
	case ADMIN_SYNTAX_DEVICE_ID:
		return ident_ok(s, "._:-", 128);
	case ADMIN_SYNTAX_RULE_ID:
	case ADMIN_SYNTAX_TAG:
		return ident_ok(s, "._:-", 64);
	case ADMIN_SYNTAX_HOST:
		return strlen(s) <= 253 && moat_config_host_ok(s);
	default:
		return 0;
	}
}

int admin_body_check(struct moat_admin_call *c, const char *const *allowed, int empty_ok)
{
	const char *key;
	json_t *v;

	if (c->body == NULL) {
		if (empty_ok)
			return 0;
		admin_error(c, 400, "bad_request", "a JSON object body is required");
		return -1;
	}
	json_object_foreach (c->body, key, v) {
		const char *const *a;

		for (a = allowed; *a != NULL && strcmp(*a, key) != 0; a++)
			;
		if (*a == NULL) {
			admin_error(c, 400, "bad_request", "unknown field \"%.64s\"", key);
			return -1;
		}
	}
	return 0;
}

/* The field's value; NULL when there is no body or the field is absent. */
static json_t *field(struct moat_admin_call *c, const char *key)
{
	return c->body == NULL ? NULL : json_object_get(c->body, key);
}

/* Checks one string against the length and syntax; answers 400 naming `what`. */
static int string_ok(struct moat_admin_call *c, const char *what, json_t *v, size_t maxlen,
                     int syntax)
{
	const char *s;

	if (!json_is_string(v)) {
		admin_error(c, 400, "bad_request", "%s: expected a string", what);
		return -1;
	}
	s = json_string_value(v);
	/* jansson refuses \u0000 unless asked to accept it; the length check is kept anyway so a
	 * string with a NUL can never pass as a shorter one */
	if (json_string_length(v) != strlen(s)) {
		admin_error(c, 400, "bad_request", "%s: NUL characters are not allowed", what);
		return -1;
	}
	if (strlen(s) > maxlen) {
		admin_error(c, 400, "bad_request", "%s: longer than %zu bytes", what, maxlen);
		return -1;
	}
	if (!admin_syntax_ok(syntax, s)) {
		const char *desc = syntax >= 0 && (size_t)syntax < MOAT_ARRAY_LEN(syntax_desc)
		                           ? syntax_desc[syntax]
		                           : "a valid value";

		admin_error(c, 400, "bad_request", "%s: expected %s", what, desc);
		return -1;
	}
	return 0;
}

int admin_body_string(struct moat_admin_call *c, const char *key, size_t maxlen, int syntax,
                      int null_ok, const char **out)
{
	json_t *v = field(c, key);
	char what[96];

	if (v == NULL)
		return 0;
	if (json_is_null(v) && null_ok) {
		*out = NULL;
		return 0;
	}
	snprintf(what, sizeof(what), "\"%s\"", key);
	if (string_ok(c, what, v, maxlen, syntax) != 0)
		return -1;
	*out = json_string_value(v);
	return 1;
}

int admin_body_int(struct moat_admin_call *c, const char *key, int64_t min, int64_t max,
                   int64_t *out)
{
	json_t *v = field(c, key);
	json_int_t i;

	if (v == NULL)
		return 0;
	if (!json_is_integer(v)) {
		admin_error(c, 400, "bad_request", "\"%s\": expected an integer", key);
		return -1;
	}
	i = json_integer_value(v);
	if (i < min || i > max) {
		admin_error(c, 400, "bad_request", "\"%s\": must be between %lld and %lld", key,
		            (long long)min, (long long)max);
		return -1;
	}
	*out = i;
	return 1;
}

int admin_body_bool(struct moat_admin_call *c, const char *key, int *out)
{
	json_t *v = field(c, key);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		admin_error(c, 400, "bad_request", "\"%s\": expected true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 1;
}

/*
 * JSON null counts as an empty list (present: returns 1 with n = 0), which is what "null
 * clears" means for tags and quarantine_allow; a field needing entries checks n itself.
 */
int admin_body_strv(struct moat_admin_call *c, const char *key, size_t maxn, size_t maxlen,
                    int syntax, struct moat_strv *out)
{
	json_t *v = field(c, key), *item;
	size_t i, n;
	char what[96];

	if (v == NULL)
		return 0;
	out->v = NULL;
	out->n = 0;
	if (json_is_null(v))
		return 1;
	if (!json_is_array(v)) {
		admin_error(c, 400, "bad_request", "\"%s\": expected an array of strings", key);
		return -1;
	}
	n = json_array_size(v);
	if (n > maxn) {
		admin_error(c, 400, "bad_request", "\"%s\": at most %zu entries", key, maxn);
		return -1;
	}
	json_array_foreach (v, i, item) {
		snprintf(what, sizeof(what), "\"%s\"[%zu]", key, i);
		if (string_ok(c, what, item, maxlen, syntax) != 0)
			return -1;
	}
	if (n == 0)
		return 1;
	out->v = moat_calloc(n, sizeof(*out->v));
	if (out->v == NULL)
		goto nomem;
	json_array_foreach (v, i, item) {
		out->v[i] = moat_strdup(json_string_value(item));
		if (out->v[i] == NULL)
			goto nomem;
		out->n = i + 1;
	}
	return 1;
nomem:
	moat_strv_clear(out);
	admin_store_error(c, MOAT_ENOMEM);
	return -1;
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into buf ('+' is a space, as forms send it). -1 on a bad escape, a
 * NUL, or a value that does not fit. */
static int query_decode(const char *s, size_t n, char *buf, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int ch = (unsigned char)s[i];

		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%') {
			int hi, lo;

			if (n - i < 3)
				return -1;
			hi = hex_value(s[i + 1]);
			lo = hex_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = hi * 16 + lo;
			i += 2;
		}
		if (ch == 0 || o + 1 >= cap)
			return -1;
		buf[o++] = (char)ch;
	}
	if (cap == 0)
		return -1;
	buf[o] = '\0';
	return 0;
}

/*
 * A value that cannot be decoded (a bad escape, a NUL, longer than the buffer) comes back as
 * "": every parameter a handler reads is a number or an id of at least one character, so the
 * handler's own check refuses it with 400 rather than acting on a truncated value.
 */
const char *admin_query(struct moat_admin_call *c, const char *name, char *buf, size_t cap)
{
	const char *p = c->query;
	size_t name_len = strlen(name);

	if (p == NULL || cap == 0)
		return NULL;
	while (*p != '\0') {
		const char *end = strchr(p, '&'), *eq;

		if (end == NULL)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL)
			eq = end;
		if ((size_t)(eq - p) == name_len && memcmp(p, name, name_len) == 0) {
			const char *v = eq < end ? eq + 1 : end;

			if (query_decode(v, (size_t)(end - v), buf, cap) != 0)
				buf[0] = '\0';
			return buf;
		}
		p = *end == '&' ? end + 1 : end;
	}
	return NULL;
}

/* ---- answers ------------------------------------------------------------------------------ */

/* JSON text of obj, moat_malloc'd and NUL-terminated; NULL when out of memory. */
static char *json_text(const json_t *obj, size_t *len)
{
	size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
	char *s;

	if (n == 0)
		return NULL;
	s = moat_malloc(n + 1);
	if (s == NULL)
		return NULL;
	if (json_dumpb(obj, s, n, JSON_COMPACT) != n) {
		moat_free(s);
		return NULL;
	}
	s[n] = '\0';
	*len = n;
	return s;
}

static void set_answer(struct moat_admin_resp *resp, int status, char *body, size_t len)
{
	moat_free(resp->body);
	resp->status = status;
	resp->body = body;
	resp->body_len = len;
}

void admin_reply(struct moat_admin_call *c, int status, json_t *obj)
{
	static const char nomem[] = "{\"error\":\"internal\",\"detail\":\"out of memory\"}";
	size_t len = 0;
	char *text = obj != NULL ? json_text(obj, &len) : NULL;

	json_decref(obj);
	if (text == NULL) {
		/* json_pack fails on out of memory, and on text that is not UTF-8: a bug */
		moat_log_error("admin: cannot encode the answer to %s %s", c->req->method,
		               c->req->target);
		text = moat_strdup(nomem);
		len = text != NULL ? sizeof(nomem) - 1 : 0;
		status = 500;
	}
	set_answer(c->resp, status, text, len);
}

void admin_error(struct moat_admin_call *c, int status, const char *error, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	/* A detail may quote what the client sent (an undecodable id, a field name cut at a
	 * length limit in the middle of a character): JSON strings must be UTF-8, so every byte
	 * that does not start a valid sequence becomes '?'. */
	for (unsigned char *p = (unsigned char *)detail; *p != '\0';) {
		size_t n = utf8_seq(p);

		if (n == 0 || (n == 1 && *p < 0x20)) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
	admin_reply(c, status, json_pack("{s:s, s:s}", "error", error, "detail", detail));
}

void admin_no_content(struct moat_admin_call *c)
{
	set_answer(c->resp, 204, NULL, 0);
}

void admin_store_error(struct moat_admin_call *c, int rc)
{
	if (rc == MOAT_ENOMEM)
		moat_log_error("admin: %s %s: out of memory", c->req->method, c->req->target);
	else
		moat_log_error("admin: %s %s: store: %s", c->req->method, c->req->target,
		               moat_store_error(c->ctx->env.store));
	admin_error(c, 500, "internal", "the store failed; nothing was written");
}

void moat_admin_resp_clear(struct moat_admin_resp *resp)
{
	moat_free(resp->body);
	memset(resp, 0, sizeof(*resp));
}
