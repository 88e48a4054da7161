/*
 * The fields a rule can read, and their values for one request: each value (a field, a field
 * with a key, or a function of another value) is a slot, computed on first use into the
 * scratch and kept for the rest of the evaluation, so a value used by a thousand rules is
 * computed once. Nothing here allocates: a value that does not fit in the scratch is missing.
 */
#include <netinet/in.h>
#include <string.h>

#include "rules/internal.h"

#define FIELD(n, i, t, l, m, h, b)                                                                 \
	{                                                                                          \
		.name = n, .id = i, .type = t, .list = l, .map = m, .http = h, .body = b           \
	}

const struct moat_rules_field moat_rules_fields[MOAT_F_COUNT] = {
        FIELD("ip.src", MOAT_F_IP_SRC, MOAT_RT_IP, 0, 0, 0, 0),
        FIELD("tls.version", MOAT_F_TLS_VERSION, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("tls.sni", MOAT_F_TLS_SNI, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("tls.client.verified", MOAT_F_TLS_VERIFIED, MOAT_RT_BOOL, 0, 0, 0, 0),
        FIELD("tls.client.fingerprint", MOAT_F_TLS_FINGERPRINT, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("tls.client.serial", MOAT_F_TLS_SERIAL, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("tenant", MOAT_F_TENANT, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("device.id", MOAT_F_DEVICE_ID, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("device.model", MOAT_F_DEVICE_MODEL, MOAT_RT_STR, 0, 0, 0, 0),
        FIELD("device.firmware", MOAT_F_DEVICE_FIRMWARE, MOAT_RT_VER, 0, 0, 0, 0),
        FIELD("device.tags", MOAT_F_DEVICE_TAGS, MOAT_RT_STR, 1, 0, 0, 0),
        FIELD("http.request.method", MOAT_F_METHOD, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.request.uri", MOAT_F_URI, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.request.uri.path", MOAT_F_PATH, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.request.uri.path.raw", MOAT_F_PATH_RAW, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.request.uri.query", MOAT_F_QUERY, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.request.uri.args", MOAT_F_ARGS, MOAT_RT_STR, 1, 1, 1, 0),
        FIELD("http.request.uri.args.names", MOAT_F_ARGS_NAMES, MOAT_RT_STR, 1, 0, 1, 0),
        FIELD("http.request.uri.args.values", MOAT_F_ARGS_VALUES, MOAT_RT_STR, 1, 0, 1, 0),
        FIELD("http.request.headers", MOAT_F_HEADERS, MOAT_RT_STR, 1, 1, 1, 0),
        FIELD("http.request.headers.names", MOAT_F_HEADER_NAMES, MOAT_RT_STR, 1, 0, 1, 0),
        FIELD("http.request.headers.values", MOAT_F_HEADER_VALUES, MOAT_RT_STR, 1, 0, 1, 0),
        FIELD("http.user_agent", MOAT_F_USER_AGENT, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.host", MOAT_F_HOST, MOAT_RT_STR, 0, 0, 1, 0),
        FIELD("http.request.body", MOAT_F_BODY, MOAT_RT_STR, 0, 0, 1, 1),
        FIELD("http.request.body.size", MOAT_F_BODY_SIZE, MOAT_RT_INT, 0, 0, 1, 1),
};

const struct moat_rules_field *moat_rules_field_find(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < MOAT_F_COUNT; i++) {
		const char *f = moat_rules_fields[i].name;

		if (strlen(f) == len && memcmp(f, name, len) == 0)
			return &moat_rules_fields[i];
	}
	return NULL;
}

void *moat_rules_ctx_alloc(struct moat_rules_ctx *c, size_t n)
{
	size_t at = (c->used + 7) & ~(size_t)7;
	void *p;

	if (at > c->cap || c->cap - at < n) {
		c->overflows++;
		return NULL;
	}
	p = c->mem + at;
	c->used = at + n;
	return p;
}

static unsigned char lower_c(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static unsigned char upper_c(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 32) : c;
}

static int str1(struct moat_rules_val *v, const char *p, size_t len)
{
	v->one.p = p != NULL ? p : "";
	v->one.len = len;
	v->s = &v->one;
	v->n = 1;
	return 0;
}

static int cstr(struct moat_rules_val *v, const char *s)
{
	if (s == NULL)
		return -1;
	return str1(v, s, strlen(s));
}

static int slice1(struct moat_rules_val *v, struct moat_slice s)
{
	return str1(v, s.p, s.len);
}

static int int1(struct moat_rules_val *v, int64_t x)
{
	v->onenum = x;
	v->num = &v->onenum;
	v->n = 1;
	return 0;
}

static int ip_src(struct moat_rules_ctx *c, struct moat_rules_val *v)
{
	const struct sockaddr_storage *ss = c->in->src;
	unsigned char *a;

	if (ss == NULL || (ss->ss_family != AF_INET && ss->ss_family != AF_INET6))
		return -1;
	a = moat_rules_ctx_alloc(c, 16);
	if (a == NULL)
		return -1;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		/* IPv4 as ::ffff:a.b.c.d, like the constants: one representation for both */
		memset(a, 0, 10);
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &sin->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		memcpy(a, &sin6->sin6_addr, 16);
	}
	v->ip = a;
	v->n = 1;
	return 0;
}

static int firmware(struct moat_rules_ctx *c, struct moat_rules_val *v)
{
	const struct moat_device_info *d = c->in->device;
	struct moat_rules_version *ver;

	if (d == NULL || d->firmware == NULL)
		return -1;
	cstr(v, d->firmware);
	ver = moat_rules_ctx_alloc(c, sizeof(*ver));
	if (ver == NULL)
		return -1;
	if (moat_rules_version_parse(v->one.p, v->one.len, ver) == MOAT_OK)
		v->ver = ver;
	return 0;
}

static int tags(struct moat_rules_ctx *c, struct moat_rules_val *v)
{
	const struct moat_device_info *d = c->in->device;
	struct moat_slice *s;
	size_t i, n = 0;

	if (d == NULL)
		return -1;
	s = moat_rules_ctx_alloc(c, (d->ntags ? d->ntags : 1) * sizeof(*s));
	if (s == NULL)
		return -1;
	for (i = 0; i < d->ntags; i++) {
		if (d->tags[i] == NULL)
			continue;
		s[n].p = d->tags[i];
		s[n].len = strlen(d->tags[i]);
		n++;
	}
	v->s = s;
	v->n = (uint32_t)n;
	return 0;
}

/* Splits the query on '&' and the first '=' of each part, percent-decoding both sides ('+'
 * is a space there). Empty parts ("a=1&&b=2") are skipped. Done once per evaluation. */
static int args_table(struct moat_rules_ctx *c)
{
	const struct moat_http_request *req = c->in->req;
	const char *q, *end;
	size_t max = 1, i;
	char *buf;

	if (c->args_state != 0)
		return c->args_state == 1 ? 0 : -1;
	c->args_state = 2;
	if (req == NULL)
		return -1;
	q = req->query.p;
	end = q + req->query.len;
	/* non-empty parts only: at most (len + 1) / 2, which bounds the table (see
	 * moat_ruleset_scratch_size_for) */
	max = 0;
	for (i = 0; i < req->query.len; i++) {
		if (q[i] != '&' && (i == 0 || q[i - 1] == '&'))
			max++;
	}
	if (max == 0)
		max = 1;
	c->arg_names = moat_rules_ctx_alloc(c, max * sizeof(struct moat_slice));
	c->arg_values = moat_rules_ctx_alloc(c, max * sizeof(struct moat_slice));
	buf = moat_rules_ctx_alloc(c, req->query.len ? req->query.len : 1);
	if (c->arg_names == NULL || c->arg_values == NULL || buf == NULL)
		return -1;
	c->nargs = 0;
	while (q != NULL && q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *part_end = amp != NULL ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(part_end - q));
		const char *name_end = eq != NULL ? eq : part_end;
		struct moat_slice *nm = &c->arg_names[c->nargs], *val = &c->arg_values[c->nargs];

		if (part_end > q) {
			nm->p = buf;
			nm->len = moat_rules_url_decode(q, (size_t)(name_end - q), buf, 1);
			buf += nm->len;
			val->p = buf;
			val->len = 0;
			if (eq != NULL) {
				val->len = moat_rules_url_decode(
				        eq + 1, (size_t)(part_end - eq - 1), buf, 1);
				buf += val->len;
			}
			c->nargs++;
		}
		q = amp != NULL ? amp + 1 : end;
	}
	c->args_state = 1;
	return 0;
}

static int args(struct moat_rules_ctx *c, const struct moat_rules_slot *sd,
                struct moat_rules_val *v)
{
	struct moat_slice *s;
	uint32_t i, n = 0;

	if (args_table(c) != 0)
		return -1;
	if (sd->field == MOAT_F_ARGS_NAMES || sd->field == MOAT_F_ARGS_VALUES) {
		v->s = sd->field == MOAT_F_ARGS_NAMES ? c->arg_names : c->arg_values;
		v->n = c->nargs;
		return 0;
	}
	for (i = 0; i < c->nargs; i++)
		n += c->arg_names[i].len == sd->keylen &&
		     memcmp(c->arg_names[i].p, sd->key, sd->keylen) == 0;
	s = moat_rules_ctx_alloc(c, (n ? n : 1) * sizeof(*s));
	if (s == NULL)
		return -1;
	n = 0;
	for (i = 0; i < c->nargs; i++) {
		if (c->arg_names[i].len == sd->keylen &&
		    memcmp(c->arg_names[i].p, sd->key, sd->keylen) == 0)
			s[n++] = c->arg_values[i];
	}
	v->s = s;
	v->n = n;
	return 0;
}

uint64_t moat_rules_name_bloom(const char *name, size_t len, int lower)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ (lower ? lower_c((unsigned char)name[i]) : (unsigned char)name[i])) *
		    1099511628211ull;
	return (1ull << (h & 63)) | (1ull << ((h >> 6) & 63));
}

static uint64_t header_bloom(struct moat_rules_ctx *c)
{
	const struct moat_http_request *req = c->in->req;
	uint64_t b = 1; /* bit 0 set: computed, even with no headers */
	unsigned i;

	if (c->hdr_bloom != 0)
		return c->hdr_bloom;
	for (i = 0; i < req->nheaders; i++)
		b |= moat_rules_name_bloom(req->headers[i].name.p, req->headers[i].name.len, 1);
	c->hdr_bloom = b;
	return b;
}

/* The key is lowered at compile time; header names are tokens, so ASCII folding is exact. */
static int name_is(struct moat_slice name, const char *key, size_t keylen)
{
	size_t i;

	if (name.len != keylen)
		return 0;
	for (i = 0; i < keylen; i++) {
		if (lower_c((unsigned char)name.p[i]) != (unsigned char)key[i])
			return 0;
	}
	return 1;
}

static int headers(struct moat_rules_ctx *c, const struct moat_rules_slot *sd,
                   struct moat_rules_val *v)
{
	const struct moat_http_request *req = c->in->req;
	struct moat_slice *s;
	unsigned i, n = 0;

	if (req == NULL)
		return -1;
	if (sd->field == MOAT_F_HEADERS && (header_bloom(c) & sd->keybloom) != sd->keybloom) {
		/* certainly absent: an empty list */
		v->s = NULL;
		v->n = 0;
		return 0;
	}
	for (i = 0; i < req->nheaders; i++)
		n += sd->field != MOAT_F_HEADERS ||
		     name_is(req->headers[i].name, sd->key, sd->keylen);
	s = moat_rules_ctx_alloc(c, (n ? n : 1) * sizeof(*s));
	if (s == NULL)
		return -1;
	n = 0;
	for (i = 0; i < req->nheaders; i++) {
		const struct moat_http_header *h = &req->headers[i];

		if (sd->field == MOAT_F_HEADERS) {
			if (name_is(h->name, sd->key, sd->keylen))
				s[n++] = h->value;
		} else if (sd->field == MOAT_F_HEADER_VALUES) {
			s[n++] = h->value;
		} else {
			char *low = moat_rules_ctx_alloc(c, h->name.len ? h->name.len : 1);
			size_t k;

			if (low == NULL)
				return -1;
			for (k = 0; k < h->name.len; k++)
				low[k] = (char)lower_c((unsigned char)h->name.p[k]);
			s[n].p = low;
			s[n++].len = h->name.len;
		}
	}
	v->s = s;
	v->n = n;
	return 0;
}

static int http_field(struct moat_rules_ctx *c, const struct moat_rules_slot *sd,
                      struct moat_rules_val *v)
{
	const struct moat_http_request *req = c->in->req;
	const struct moat_http_header *h;
	char *out;
	long n;

	if (req == NULL)
		return -1;
	switch (sd->field) {
	case MOAT_F_METHOD:
		return slice1(v, req->method);
	case MOAT_F_URI:
		return slice1(v, req->target);
	case MOAT_F_PATH_RAW:
		return slice1(v, req->path);
	case MOAT_F_QUERY:
		return slice1(v, req->query);
	case MOAT_F_HOST:
		return slice1(v, req->host);
	case MOAT_F_PATH:
		out = moat_rules_ctx_alloc(c, req->path.len ? req->path.len : 1);
		if (out == NULL)
			return -1;
		n = moat_rules_normalize_path(req->path.p, req->path.len, out, req->path.len);
		if (n < 0)
			return -1;
		return str1(v, out, (size_t)n);
	case MOAT_F_USER_AGENT:
		h = moat_http_header_find(req->headers, req->nheaders, "user-agent");
		if (h == NULL)
			return -1;
		return slice1(v, h->value);
	case MOAT_F_BODY:
		if (c->in->body == NULL)
			return -1;
		return str1(v, c->in->body,
		            c->in->body_len < c->rs->lim.body_limit ? c->in->body_len
		                                                    : c->rs->lim.body_limit);
	case MOAT_F_BODY_SIZE:
		return int1(v,
		            c->in->body_size > INT64_MAX ? INT64_MAX : (int64_t)c->in->body_size);
	case MOAT_F_ARGS:
	case MOAT_F_ARGS_NAMES:
	case MOAT_F_ARGS_VALUES:
		return args(c, sd, v);
	case MOAT_F_HEADERS:
	case MOAT_F_HEADER_NAMES:
	case MOAT_F_HEADER_VALUES:
		return headers(c, sd, v);
	default:
		return -1;
	}
}

static int field(struct moat_rules_ctx *c, const struct moat_rules_slot *sd,
                 struct moat_rules_val *v)
{
	const struct moat_rules_input *in = c->in;

	switch (sd->field) {
	case MOAT_F_IP_SRC:
		return ip_src(c, v);
	case MOAT_F_TLS_VERSION:
		return cstr(v, in->tls_version);
	case MOAT_F_TLS_SNI:
		return cstr(v, in->sni);
	case MOAT_F_TLS_VERIFIED:
		return int1(v, in->client_verified != 0);
	case MOAT_F_TLS_FINGERPRINT:
		return cstr(v, in->fingerprint);
	case MOAT_F_TLS_SERIAL:
		return cstr(v, in->serial);
	case MOAT_F_TENANT:
		return cstr(v, in->tenant);
	case MOAT_F_DEVICE_ID:
		return cstr(v, in->device_id);
	case MOAT_F_DEVICE_MODEL:
		return in->device != NULL ? cstr(v, in->device->model) : -1;
	case MOAT_F_DEVICE_FIRMWARE:
		return firmware(c, v);
	case MOAT_F_DEVICE_TAGS:
		return tags(c, v);
	default:
		return http_field(c, sd, v);
	}
}

/* lower(), upper(), url_decode(): element by element, into one block of the arena. */
static int map_str(struct moat_rules_ctx *c, const struct moat_rules_slot *sd,
                   const struct moat_rules_val *a, struct moat_rules_val *v)
{
	struct moat_slice *s;
	size_t total = 0;
	uint32_t i;
	char *out;

	for (i = 0; i < a->n; i++)
		total += a->s[i].len;
	if (sd->list) {
		s = moat_rules_ctx_alloc(c, (a->n ? a->n : 1) * sizeof(*s));
		if (s == NULL)
			return -1;
	} else {
		s = &v->one;
	}
	out = moat_rules_ctx_alloc(c, total ? total : 1);
	if (out == NULL)
		return -1;
	for (i = 0; i < a->n; i++) {
		const unsigned char *in = (const unsigned char *)a->s[i].p;
		size_t k, len = a->s[i].len;

		s[i].p = out;
		if (sd->op == MOAT_SLOT_URLDEC) {
			len = moat_rules_url_decode((const char *)in, len, out, 1);
		} else if (sd->op == MOAT_SLOT_LOWER) {
			for (k = 0; k < len; k++)
				out[k] = (char)lower_c(in[k]);
		} else {
			for (k = 0; k < len; k++)
				out[k] = (char)upper_c(in[k]);
		}
		s[i].len = len;
		out += len;
	}
	v->s = s;
	v->n = a->n;
	return 0;
}

static int compute(struct moat_rules_ctx *c, uint32_t slot, struct moat_rules_val *v)
{
	const struct moat_rules_slot *sd = &c->rs->slots[slot];
	const struct moat_rules_val *a;
	int64_t *nums;
	uint32_t i;

	if (sd->op == MOAT_SLOT_FIELD)
		return field(c, sd, v);
	a = moat_rules_value(c, sd->arg);
	if (a == NULL)
		return -1;
	switch (sd->op) {
	case MOAT_SLOT_LOWER:
	case MOAT_SLOT_UPPER:
	case MOAT_SLOT_URLDEC:
		return map_str(c, sd, a, v);
	case MOAT_SLOT_COUNT:
		return int1(v, a->n);
	case MOAT_SLOT_LEN:
		if (!sd->list)
			return int1(v, (int64_t)a->s[0].len);
		nums = moat_rules_ctx_alloc(c, (a->n ? a->n : 1) * sizeof(*nums));
		if (nums == NULL)
			return -1;
		for (i = 0; i < a->n; i++)
			nums[i] = (int64_t)a->s[i].len;
		v->num = nums;
		v->n = a->n;
		return 0;
	default:
		return -1;
	}
}

struct moat_rules_val *moat_rules_value_compute(struct moat_rules_ctx *c, uint32_t slot)
{
	struct moat_rules_val *v = &c->vals[slot];

	c->done[slot / 64] |= 1ull << (slot % 64);
	memset(v, 0, sizeof(*v));
	v->missing = compute(c, slot, v) != 0;
	return v->missing ? NULL : v;
}
