/*
 * Device connections: TLS handshake, identity, and the HTTP/1.1 proxy loop.
 *
 * Each connection is driven by one function, pump(), called on every event of either of its
 * sockets or its timer. pump() makes every step that can make progress — read the device,
 * parse, move body bytes to the origin, read the origin, move response bytes back, write the
 * device — until none can, then registers exactly the events the blocked steps wait for and
 * arms the one timer with the nearest deadline. Every buffer has a fixed capacity, so a side
 * that stops reading stops the other side from being read: memory per connection is bounded
 * whatever the sizes of bodies.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/addr.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/seclog.h"
#include "http/proxy.h"

#define CLIENT_IN_MIN (16 * 1024)
#define CLIENT_OUT_CAP (96 * 1024)
#define RESPONSE_MAX_HEAD (64 * 1024)
#define CHUNK_MAX_LINE 4096
#define CHUNK_FRAMING 32 /* room kept for a chunk's size line and CRLF */
#define CLOSING_TIMEOUT_MS 5000
#define LINGER_TIMEOUT_MS 3000 /* how long a closing connection keeps discarding input */

enum conn_state {
	CS_HANDSHAKE = 0,
	CS_HEAD,
	CS_BODY_WAIT, /* holding the request until the rules have the body prefix they read */
	CS_PROXY,
	CS_CLOSING,
	CS_CLOSED
};

struct request_state {
	char id[17];
	char method[24];
	char path[512];
	int minor;
	unsigned keep_alive : 1, is_head : 1, expect_continue : 1, body_done : 1;
	unsigned refused : 1; /* answered by a rule or a quarantine, not the origin */
	enum moat_http_framing framing;
	uint64_t remaining;
	struct moat_http_chunked chunked;
	uint64_t bytes_in;
	uint64_t t_start_ns, t_origin_ns, t_origin_head_ns;
	uint64_t t_body_start; /* loop ms */
	size_t retry_len; /* the forwarded head, may be sent once more (see retry_request) */
};

struct response_state {
	int status;
	unsigned started : 1; /* the final head is queued: errors can no longer be answered */
	unsigned head_done : 1, done : 1, chunked_out : 1, keep_alive : 1;
	enum moat_http_framing framing;
	uint64_t remaining;
	struct moat_http_chunked chunked;
	uint64_t bytes_out;
};

struct moat_http_conn {
	struct moat_conn base; /* first: the worker's list links connections through it */
	struct moat_worker *w;
	struct moat_sock sock;
	uv_timer_t timer;
	int open_handles;
	enum conn_state state;
	struct moat_gen *gen; /* reference; refreshed per request */
	struct moat_tenant *tenant; /* in gen */
	struct moat_tls_conn tls;
	struct moat_identity id;
	char listener_name[72];
	char tenant_name[72];
	char *ident; /* identity headers added to every request, built once */
	size_t ident_len;
	struct sockaddr_storage peer;
	char peer_ip[INET6_ADDRSTRLEN];
	unsigned peer_port;
	struct moat_buf in, out;
	unsigned draining : 1, close_after : 1, resumed : 1, up_eof : 1, up_failed : 1;
	unsigned head_dirty : 1; /* bytes arrived that may complete or refuse the head */
	unsigned up_err : 1; /* the origin connection ended in an error, not a clean close */
	unsigned lingering : 1; /* closing: our side is shut, the device's input is discarded */
	uint64_t t_accept, t_head_start, t_last_in, t_last_out, t_origin_act;
	struct moat_upstream *up;
	struct request_state rq;
	struct response_state rs;
	/* counted as connected now: the objects live as long as the process (core/stats.h) */
	struct moat_counters *tenant_counters, *device_counters;
};

static void pump(struct moat_http_conn *c);
static int read_client(struct moat_http_conn *c);
static const struct moat_conn_ops http_conn_ops;

static uint64_t now_ms(struct moat_http_conn *c)
{
	return uv_now(&c->w->loop);
}

static const char *tls_version(struct moat_http_conn *c)
{
	return c->sock.ssl ? SSL_get_version(c->sock.ssl) : "";
}

/* ---- closing ---------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
	struct moat_http_conn *c = h->data;
	struct moat_worker *w = c->w;

	if (--c->open_handles > 0)
		return;
	moat_buf_free(&c->in);
	moat_buf_free(&c->out);
	moat_free(c->ident);
	moat_limits_release(&c->peer);
	moat_gen_release(c->gen);
	moat_free(c);
	moat_worker_conn_closed(w);
}

static void count_connected(struct moat_http_conn *c, int delta)
{
	if (c->tenant_counters != NULL)
		atomic_fetch_add_explicit(&c->tenant_counters->connected, delta,
		                          memory_order_relaxed);
	if (c->device_counters != NULL)
		atomic_fetch_add_explicit(&c->device_counters->connected, delta,
		                          memory_order_relaxed);
}

static void conn_close(struct moat_http_conn *c)
{
	if (c->state == CS_CLOSED)
		return;
	c->state = CS_CLOSED;
	count_connected(c, -1);
	c->tenant_counters = c->device_counters = NULL;
	if (c->up != NULL) {
		moat_upstream_release(c->up, 0);
		c->up = NULL;
	}
	moat_worker_conn_unlink(&c->base);
	c->open_handles = 2;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
	moat_sock_close(&c->sock, handle_closed);
}

/* ---- access log ------------------------------------------------------------------------- */

static int_fast64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts); /* vDSO: no system call per request */
	return (int_fast64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The tenant's and the device's counters for the admin API, once per request. */
static void count_request(struct moat_http_conn *c)
{
	const struct moat_device_entry *e =
	        c->tenant != NULL ? moat_tenant_device(c->tenant, c->id.device_id) : NULL;
	struct moat_counters *v[2] = {c->tenant != NULL ? c->tenant->counters : NULL,
	                              e != NULL ? e->counters : NULL};
	int blocked = c->rq.refused;

	for (int i = 0; i < 2; i++) {
		if (v[i] == NULL)
			continue;
		moat_count(&v[i]->requests, 1);
		moat_count(&v[i]->bytes_in, c->rq.bytes_in);
		moat_count(&v[i]->bytes_out, c->rs.bytes_out);
		if (blocked)
			moat_count(&v[i]->blocked, 1);
	}
	if (v[1] != NULL)
		atomic_store_explicit(&v[1]->last_seen_ms, wall_ms(), memory_order_relaxed);
}

static void access_log(struct moat_http_conn *c)
{
	char buf[4096];
	struct moat_line l = {buf, 0, sizeof(buf) - 1, 0};
	char t[40];
	uint64_t end = uv_hrtime();
	double dur = c->rq.t_start_ns ? (double)(end - c->rq.t_start_ns) / 1e6 : 0;
	double origin = c->rq.t_origin_ns && c->rq.t_origin_head_ns
	                        ? (double)(c->rq.t_origin_head_ns - c->rq.t_origin_ns) / 1e6
	                        : 0;

	c->w->stats.requests++;
	count_request(c);
	if (!moat_log_access_enabled())
		return;
	moat_line_raw(&l, "{\"time\":\"", 9);
	moat_line_raw(&l, t, moat_log_time(t, sizeof(t)));
	moat_line_printf(&l, "\",\"request_id\":\"%s\",\"listener\":", c->rq.id);
	moat_line_json_str(&l, c->listener_name, strlen(c->listener_name));
	/* IPv6 addresses in brackets, so the port stays unambiguous */
	moat_line_printf(&l,
	                 strchr(c->peer_ip, ':') ? ",\"remote\":\"[%s]:%u\",\"tenant\":"
	                                         : ",\"remote\":\"%s:%u\",\"tenant\":",
	                 c->peer_ip, c->peer_port);
	moat_line_json_str(&l, c->tenant_name, strlen(c->tenant_name));
	moat_line_raw(&l, ",\"device\":", 10);
	moat_line_json_str(&l, c->id.device_id, strlen(c->id.device_id));
	moat_line_raw(&l, ",\"method\":", 10);
	moat_line_json_str(&l, c->rq.method, strlen(c->rq.method));
	moat_line_raw(&l, ",\"path\":", 8);
	moat_line_json_str(&l, c->rq.path, strlen(c->rq.path));
	moat_line_printf(&l,
	                 ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f,"
	                 "\"origin_ms\":%.3f,\"tls\":\"%s\",\"resumed\":%s}",
	                 c->rs.status, (unsigned long long)c->rq.bytes_in,
	                 (unsigned long long)c->rs.bytes_out, dur, origin, tls_version(c),
	                 c->resumed ? "true" : "false");
	if (l.truncated)
		return;
	buf[l.len++] = '\n';
	moat_log_access(buf, l.len);
}

/* ---- local responses -------------------------------------------------------------------- */

static const char *error_code(int status)
{
	switch (status) {
	case 400:
		return "bad_request";
	case 405:
		return "method_not_allowed";
	case 408:
		return "request_timeout";
	case 414:
		return "uri_too_long";
	case 417:
		return "expectation_failed";
	case 431:
		return "headers_too_large";
	case 501:
		return "not_implemented";
	case 505:
		return "http_version_not_supported";
	case 504:
		return "origin_timeout";
	default:
		return "bad_gateway";
	}
}

/*
 * Answers the current request from moatd itself, then closes: after an error the state of the
 * stream (an unread body, a half-sent request) is not worth trusting.
 */
static void respond_error(struct moat_http_conn *c, int status, const char *code,
                          const char *detail)
{
	char body[768];
	struct moat_line b = {body, 0, sizeof(body), 0};
	struct moat_line h;

	if (c->up != NULL) {
		moat_upstream_release(c->up, 0);
		c->up = NULL;
	}
	c->rs.status = status;
	c->rs.done = 1;
	c->rq.body_done = 1;
	c->close_after = 1;
	if (c->rs.started || moat_buf_prepare(&c->out) != MOAT_OK) {
		/* Part of a response already went out: the only honest signal left is a close. */
		access_log(c);
		conn_close(c);
		return;
	}
	c->rs.started = 1;
	moat_line_printf(&b, "{\"error\":\"%s\",\"detail\":", code ? code : error_code(status));
	moat_line_json_str(&b, detail, strlen(detail));
	moat_line_printf(&b, ",\"request_id\":\"%s\"}\n", c->rq.id);
	h = (struct moat_line){moat_buf_tail(&c->out), 0, moat_buf_room(&c->out), 0};
	moat_line_printf(&h,
	                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu"
	                 "\r\nConnection: close\r\n\r\n",
	                 status, moat_http_reason(status), b.len);
	if (!c->rq.is_head)
		moat_line_raw(&h, body, b.len);
	if (h.truncated) {
		conn_close(c);
		return;
	}
	c->out.end += h.len;
	c->rs.bytes_out = h.len; /* logged now: the answer is queued whole */
	access_log(c);
	c->rs.bytes_out = 0;
	c->state = CS_CLOSING;
	c->t_last_out = now_ms(c);
}

/*
 * RFC 9110 section 9.2.2: a request that can be repeated without a different effect. POST and
 * PATCH are not; neither is a request with a body, which is streamed and not kept.
 */
static int retryable(const struct moat_http_request *req, const char *method)
{
	static const char *const idempotent[] = {"GET",   "HEAD", "OPTIONS",
	                                         "TRACE", "PUT",  "DELETE"};

	if (req->framing != MOAT_BODY_NONE &&
	    !(req->framing == MOAT_BODY_LENGTH && req->content_length == 0))
		return 0;
	for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
		if (strcmp(method, idempotent[i]) == 0)
			return 1;
	return 0;
}

/*
 * An origin closes an idle keep-alive connection when its own timeout fires (5 s for Apache
 * httpd and Node.js); a request sent on it in that instant meets a close with nothing
 * received. The pool drops connections the origin closed while idle, but not one closed while
 * the request travels. A retryable request is then sent once more, on a new connection, as
 * nginx and HAProxy do; any other request gets the 502, since the origin may have acted on it.
 * Returns 1 when the request is under way again.
 */
static int retry_request(struct moat_http_conn *c)
{
	struct moat_upstream *old = c->up, *u;
	struct moat_buf sent;
	const char *err = NULL;
	size_t len = c->rq.retry_len;

	c->rq.retry_len = 0; /* once */
	if (len == 0 || c->rs.started || moat_buf_len(&old->in) > 0 ||
	    moat_buf_rewind(&old->out, len) != MOAT_OK)
		return 0;
	u = moat_upstream_connect(c->w, c->tenant, c, &err);
	if (u == NULL)
		return 0;
	/* the head goes over as it was sent: same buffer, no copy */
	sent = old->out;
	old->out = u->out;
	u->out = sent;
	moat_upstream_release(old, 0);
	c->up = u;
	c->up_eof = c->up_err = 0;
	c->t_origin_act = now_ms(c);
	moat_log_info("origin %s closed a reused connection before answering; request sent again "
	              "on a new one (request_id=%s)",
	              c->tenant->cfg->origin, c->rq.id);
	return 1;
}

static void origin_failed(struct moat_http_conn *c, int status, const char *code,
                          const char *detail)
{
	moat_log_warn("origin %s for tenant %s failed: %s (request_id=%s device=%s)",
	              c->tenant->cfg->origin ? c->tenant->cfg->origin : "(none)", c->tenant_name,
	              detail, c->rq.id, c->id.device_id[0] ? c->id.device_id : "-");
	respond_error(c, status, code, detail);
}

/* ---- identity and generations ----------------------------------------------------------- */

static int build_identity_headers(struct moat_http_conn *c)
{
	char buf[2048];
	struct moat_line l = {buf, 0, sizeof(buf), 0};

	moat_line_printf(&l, "Moat-Tenant: %s\r\n", c->tenant_name);
	if (c->id.status == MOAT_CERT_SUCCESS)
		moat_line_printf(&l, "Moat-Device: %s\r\n", c->id.device_id);
	if (c->id.has_cert)
		moat_line_printf(&l, "Moat-Cert-Sha256: %s\r\nMoat-Cert-Serial: %s\r\n",
		                 c->id.fingerprint, c->id.serial);
	if (c->id.status == MOAT_CERT_SUCCESS)
		moat_line_printf(&l, "Moat-Cert-Verified: SUCCESS\r\n");
	else if (c->id.status == MOAT_CERT_NONE)
		moat_line_printf(&l, "Moat-Cert-Verified: NONE\r\n");
	else
		moat_line_printf(&l, "Moat-Cert-Verified: FAILED:%s\r\n", c->id.fail_reason);
	if (c->peer.ss_family == AF_INET6)
		moat_line_printf(&l, "Forwarded: for=\"[%s]\";proto=https\r\n", c->peer_ip);
	else
		moat_line_printf(&l, "Forwarded: for=%s;proto=https\r\n", c->peer_ip);
	if (l.truncated)
		return MOAT_ENOMEM;
	c->ident = moat_malloc(l.len);
	if (c->ident == NULL)
		return MOAT_ENOMEM;
	memcpy(c->ident, buf, l.len);
	c->ident_len = l.len;
	return MOAT_OK;
}

/* Room for the largest head plus the body prefix the rules may inspect. */
static size_t client_in_cap(const struct moat_config *cfg)
{
	size_t n = cfg->max_header_size + cfg->rules_body_limit + CHUNK_MAX_LINE;

	return n > CLIENT_IN_MIN ? n : CLIENT_IN_MIN;
}

/* Every request is judged under the current generation: a tenant removed or a device revoked
 * by a reload stops at its next request, whatever generation its handshake saw. Returns 0 to
 * go on, -1 when the connection was closed. */
static int refresh_generation(struct moat_http_conn *c)
{
	struct moat_gen *cur = c->w->gen;
	struct moat_tenant *t;
	X509 *cert;

	if (c->gen == cur)
		return 0;
	t = moat_gen_tenant_by_name(cur, c->tenant_name);
	if (t == NULL) {
		moat_log_info("closing connection of %s: tenant %s was removed", c->peer_ip,
		              c->tenant_name);
		conn_close(c);
		return -1;
	}
	if (memcmp(t->trust_digest, c->tenant->trust_digest, sizeof(t->trust_digest)) != 0) {
		/* CAs, verification mode or identity source changed: what the handshake proved
		 * no longer says what the tenant requires. The device reconnects and is judged
		 * by a full handshake under the new policy. */
		moat_log_info(
		        "closing connection of %s: tenant %s changed its device trust settings",
		        c->peer_ip, c->tenant_name);
		conn_close(c);
		return -1;
	}
	cert = c->sock.ssl ? SSL_get0_peer_certificate(c->sock.ssl) : NULL;
	if (cert != NULL && moat_tenant_cert_revoked(t, cert) &&
	    t->cfg->mtls == MOAT_MTLS_OPTIONAL && c->id.status != MOAT_CERT_FAILED) {
		/* optional mode: the origin decides, and now learns the certificate is revoked */
		c->id.status = MOAT_CERT_FAILED;
		c->id.fail_reason = "certificate revoked";
		c->id.device_id[0] = '\0';
		moat_free(c->ident);
		c->ident = NULL;
		if (build_identity_headers(c) != MOAT_OK) {
			conn_close(c);
			return -1;
		}
	} else if (t->cfg->mtls == MOAT_MTLS_REQUIRE &&
	           moat_tenant_refusal(t, cert, c->id.device_id) != NULL) {
		moat_log_warn("closing connection: device %s of tenant %s: %s (serial %s)",
		              c->id.device_id[0] ? c->id.device_id : "-", c->tenant_name,
		              moat_tenant_refusal(t, cert, c->id.device_id), c->id.serial);
		conn_close(c);
		return -1;
	}
	moat_gen_ref(cur);
	moat_gen_release(c->gen);
	c->gen = cur;
	c->tenant = t;
	if (c->in.data == NULL) /* a reload may have raised max_header_size */
		moat_buf_init(&c->in, client_in_cap(cur->cfg));
	return 0;
}

/* ---- handshake -------------------------------------------------------------------------- */

static int do_handshake(struct moat_http_conn *c)
{
	const struct moat_peer peer = {c->listener_name, c->peer_ip, c->peer_port};
	int resumed = 0;
	int r = moat_tls_device_handshake(&c->sock, &c->tls, &c->id, &peer, &resumed);

	if (r == MOAT_EAGAIN)
		return 0;
	if (r != MOAT_OK) {
		c->w->stats.handshakes_failed++;
		conn_close(c);
		return 0;
	}
	c->tenant = c->tls.tenant;
	snprintf(c->tenant_name, sizeof(c->tenant_name), "%s", c->tenant->cfg->name);
	c->resumed = resumed;
	{
		const struct moat_device_entry *e = moat_tenant_device(c->tenant, c->id.device_id);

		c->tenant_counters = c->tenant->counters;
		c->device_counters = e != NULL ? e->counters : NULL;
		count_connected(c, 1);
	}
	if (build_identity_headers(c) != MOAT_OK) {
		conn_close(c);
		return 0;
	}
	c->state = CS_HEAD;
	c->t_last_in = now_ms(c);
	return 1;
}

/* ---- request head ----------------------------------------------------------------------- */

static void copy_slice(char *dst, size_t cap, struct moat_slice s)
{
	size_t n = s.len < cap - 1 ? s.len : cap - 1;

	memcpy(dst, s.p, n);
	dst[n] = '\0';
}

static int write_request_head(struct moat_http_conn *c, const struct moat_http_request *req,
                              struct moat_buf *out)
{
	struct moat_line l = {moat_buf_tail(out), 0, moat_buf_room(out), 0};
	int has_host = 0;

	moat_line_raw(&l, req->method.p, req->method.len);
	moat_line_raw(&l, " ", 1);
	if (req->target.len > 0 && req->target.p[0] != '/' && req->target.p[0] != '*') {
		/* absolute-form: the origin gets origin-form, like from any device */
		if (req->path.len == 0)
			moat_line_raw(&l, "/", 1);
		moat_line_raw(&l, req->path.p, req->path.len);
		if (req->query.len > 0) {
			moat_line_raw(&l, "?", 1);
			moat_line_raw(&l, req->query.p, req->query.len);
		}
	} else {
		moat_line_raw(&l, req->target.p, req->target.len);
	}
	moat_line_raw(&l, " HTTP/1.1\r\n", 11);
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct moat_http_header *h = &req->headers[i];

		if (h->flags & (MOAT_HDR_HOP | MOAT_HDR_SPOOF | MOAT_HDR_CONTENT_LENGTH))
			continue;
		if (h->flags & MOAT_HDR_HOST)
			has_host = 1;
		moat_line_raw(&l, h->name.p, h->name.len);
		moat_line_raw(&l, ": ", 2);
		moat_line_raw(&l, h->value.p, h->value.len);
		moat_line_raw(&l, "\r\n", 2);
	}
	if (!has_host)
		moat_line_printf(&l, "Host: %s\r\n",
		                 c->tls.sni[0] ? c->tls.sni : c->tenant->cfg->origin_host);
	if (req->framing == MOAT_BODY_LENGTH)
		moat_line_printf(&l, "Content-Length: %llu\r\n",
		                 (unsigned long long)req->content_length);
	else if (req->framing == MOAT_BODY_CHUNKED)
		moat_line_raw(&l, "Transfer-Encoding: chunked\r\n", 28);
	moat_line_raw(&l, c->ident, c->ident_len);
	moat_line_printf(&l, "Moat-Request-Id: %s\r\n\r\n", c->rq.id);
	if (l.truncated)
		return MOAT_ETOOBIG;
	out->end += l.len;
	return MOAT_OK;
}

/* Body bytes that came with the head are checked before the origin is contacted, so a
 * malformed chunked body sent in one piece with its head never reaches the origin at all. */
static int prevalidate_chunks(struct moat_http_conn *c, const char *p, size_t len)
{
	struct moat_http_chunked dec = c->rq.chunked;
	const char *err = NULL;

	while (len > 0) {
		struct moat_slice data;
		size_t used = 0;
		int r = moat_http_chunked_decode(&dec, p, len, &used, &data, &err);

		if (r == MOAT_EINVAL) {
			moat_log_info("request refused: 400 %s (remote=%s:%u request_id=%s)",
			              err ? err : "bad chunk", c->peer_ip, c->peer_port, c->rq.id);
			respond_error(c, 400, NULL, err ? err : "malformed chunked body");
			return -1;
		}
		if (r == 1 || r == MOAT_EAGAIN || used == 0)
			break;
		p += used;
		len -= used;
	}
	return 0;
}

/* Answers a request the edge refused (a rule, a quarantine). Without a body left to read, the
 * connection stays open for the device's next request. */
static void respond_refused(struct moat_http_conn *c, int status, const char *type,
                            const struct moat_line *b)
{
	struct moat_line h;
	int keep = c->rq.body_done && c->rq.keep_alive && !c->draining;

	c->rq.refused = 1;
	h = (struct moat_line){moat_buf_tail(&c->out), 0, moat_buf_room(&c->out), 0};
	moat_line_printf(&h, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
	                 status, moat_http_reason(status), type, b->len,
	                 keep ? "" : "Connection: close\r\n");
	if (!c->rq.is_head)
		moat_line_raw(&h, b->p, b->len);
	if (h.truncated || b->truncated) {
		conn_close(c);
		return;
	}
	c->out.end += h.len;
	c->rs.status = status;
	c->rs.started = c->rs.head_done = c->rs.done = 1;
	if (!keep) {
		/* the unread body is not wanted: answer, then close (with a lingering read, so the
		 * device sees the answer rather than a reset) */
		c->close_after = 1;
		c->rq.body_done = 1;
	}
	c->state = CS_PROXY; /* do_proxy finishes it: log, then the next request or a close */
}

static void respond_blocked(struct moat_http_conn *c, const struct moat_rule *r)
{
	char body[1024];
	struct moat_line b = {body, 0, sizeof(body), 0};
	const char *type = "application/json";

	if (moat_buf_prepare(&c->out) != MOAT_OK) {
		conn_close(c);
		return;
	}
	if (r->body != NULL) {
		moat_line_raw(&b, r->body, strlen(r->body));
		if (r->body[0] != '{' && r->body[0] != '[')
			type = "text/plain; charset=utf-8";
	} else {
		moat_line_printf(&b, "{\"error\":\"blocked\",\"rule\":");
		moat_line_json_str(&b, r->id, strlen(r->id));
		moat_line_printf(&b, ",\"request_id\":\"%s\"}\n", c->rq.id);
	}
	respond_refused(c, r->status, type, &b);
}

/* A quarantined device reaches only the tenant's quarantine_allow paths (its firmware
 * updates), compared on the normalised path so "/firmware/../unlock" is not let through.
 * Returns 0 to go on, -1 when the request was answered. */
static int check_quarantine(struct moat_http_conn *c, const struct moat_http_request *req)
{
	const struct moat_device_entry *e = moat_tenant_device(c->tenant, c->id.device_id);
	struct moat_slice raw = req->path.len ? req->path : req->target;
	char small[1024], *norm = small, body[256];
	struct moat_line b = {body, 0, sizeof(body), 0};
	long n;
	int allowed;

	if (e == NULL || e->state != MOAT_DEVICE_QUARANTINED)
		return 0;
	if (raw.len > sizeof(small) && (norm = moat_malloc(raw.len)) == NULL) {
		conn_close(c);
		return -1;
	}
	n = moat_rules_normalize_path(raw.p, raw.len, norm,
	                              raw.len > sizeof(small) ? raw.len : sizeof(small));
	allowed = n >= 0 && moat_tenant_quarantine_allows(c->tenant, norm, (size_t)n);
	if (norm != small)
		moat_free(norm);
	if (allowed)
		return 0;
	moat_buf_consume(&c->in, req->head_len);
	if (moat_buf_prepare(&c->out) != MOAT_OK) {
		conn_close(c);
		return -1;
	}
	moat_log_info("request refused: device %s of tenant %s is quarantined (request_id=%s)",
	              c->id.device_id, c->tenant_name, c->rq.id);
	moat_line_printf(&b, "{\"error\":\"quarantined\",\"request_id\":\"%s\"}\n", c->rq.id);
	respond_refused(c, 403, "application/json", &b);
	return -1;
}

/* Runs the tenant's rules on the request. Returns 0 to forward it, -1 when a rule answered
 * or closed the connection. */
static int apply_rules(struct moat_http_conn *c, const struct moat_http_request *req,
                       const char *body, size_t body_len, uint64_t body_size)
{
	const struct moat_ruleset *rs = c->tenant->rules;
	struct moat_seclog_ctx log = {c->listener_name, c->tenant_name, c->id.device_id, c->peer_ip,
	                              c->peer_port,     c->rq.method,   c->rq.path,      c->rq.id};
	struct moat_rules_input in;
	struct moat_rules_scratch scratch;
	struct moat_rules_verdict v;

	if (moat_worker_rules_scratch(c->w, c->tenant->rules_scratch, &scratch) != MOAT_OK) {
		respond_error(c, 503, "overloaded", "out of memory evaluating rules");
		return -1;
	}
	memset(&in, 0, sizeof(in));
	in.src = &c->peer;
	in.tls_version = SSL_get_version(c->sock.ssl);
	in.sni = c->tls.sni;
	in.client_verified = c->id.status == MOAT_CERT_SUCCESS;
	in.fingerprint = c->id.fingerprint;
	in.serial = c->id.serial;
	in.tenant = c->tenant_name;
	in.device_id = c->id.device_id;
	in.device = moat_devices_find(c->tenant->devices, c->id.device_id);
	in.req = req;
	in.body = body;
	in.body_len = body_len;
	in.body_size = body_size;
	moat_rules_eval(rs, &in, &scratch, moat_seclog_hit, &log, &v);
	if (v.rule == NULL || v.action == MOAT_RULE_LOG || v.action == MOAT_RULE_ALLOW)
		return 0;
	moat_buf_consume(&c->in, req->head_len);
	if (v.action == MOAT_RULE_CLOSE) {
		c->rq.refused = 1;
		c->rs.status = 0;
		c->rq.body_done = 1;
		access_log(c);
		conn_close(c);
		return -1;
	}
	respond_blocked(c, v.rule);
	return -1;
}

static void forward(struct moat_http_conn *c, const struct moat_http_request *req, const char *body,
                    size_t body_len, uint64_t body_size);

/* The request waits in CS_BODY_WAIT until the body prefix the rules read is buffered (or the
 * buffer is full); its head stays unconsumed and is parsed again, since a buffer compaction
 * may have moved it. */
static int do_body_wait(struct moat_http_conn *c)
{
	struct moat_http_request *req = &c->w->req;
	const struct moat_config *cfg = c->gen->cfg;
	const struct moat_http_limits lim = {cfg->max_request_line, cfg->max_header_size,
	                                     cfg->max_headers};
	const char *err = NULL, *body;
	size_t avail, want, len = 0;
	int complete = 0, r;

	if (moat_buf_len(&c->out) > 0) {
		ssize_t n =
		        moat_sock_write(&c->sock, moat_buf_head(&c->out), moat_buf_len(&c->out));

		if (n > 0) {
			moat_buf_consume(&c->out, (size_t)n);
			c->t_last_out = now_ms(c);
		} else if (n != MOAT_EAGAIN) {
			conn_close(c);
			return 0;
		}
	}
	if (moat_http_parse_request(moat_buf_head(&c->in), moat_buf_len(&c->in), &lim, req, &err) !=
	    MOAT_OK) {
		conn_close(c); /* it parsed before: the buffer can no longer be trusted */
		return 0;
	}
	body = moat_buf_head(&c->in) + req->head_len;
	avail = moat_buf_len(&c->in) - req->head_len;
	if (req->framing == MOAT_BODY_LENGTH) {
		want = req->content_length < cfg->rules_body_limit ? (size_t)req->content_length
		                                                   : cfg->rules_body_limit;
		complete = avail >= want;
		len = complete ? want : avail;
	} else {
		struct moat_http_chunked dec = c->rq.chunked;
		size_t off = 0;

		if (c->w->body_scratch_cap < cfg->rules_body_limit) {
			char *p = moat_realloc(c->w->body_scratch, cfg->rules_body_limit + 1);

			if (p == NULL) {
				conn_close(c);
				return 0;
			}
			c->w->body_scratch = p;
			c->w->body_scratch_cap = cfg->rules_body_limit;
		}
		while (off < avail && len < cfg->rules_body_limit) {
			struct moat_slice data;
			size_t used = 0;

			r = moat_http_chunked_decode(&dec, body + off, avail - off, &used, &data,
			                             &err);
			if (r == MOAT_EINVAL) {
				respond_error(c, 400, NULL, err ? err : "malformed chunked body");
				return 1;
			}
			if (data.len > 0) {
				size_t n = data.len < cfg->rules_body_limit - len
				                   ? data.len
				                   : cfg->rules_body_limit - len;

				memcpy(c->w->body_scratch + len, data.p, n);
				len += n;
			}
			off += used;
			if (r == 1) {
				complete = 1;
				break;
			}
			if (r == MOAT_EAGAIN || used == 0)
				break;
		}
		complete = complete || len >= cfg->rules_body_limit;
		body = c->w->body_scratch;
	}
	if (!complete && moat_buf_room(&c->in) > 0) {
		r = read_client(c);
		if (r == -2) {
			conn_close(c);
			return 0;
		}
		return r > 0;
	}
	forward(c, req, body, len,
	        req->framing == MOAT_BODY_LENGTH ? req->content_length : (uint64_t)len);
	return 1;
}

static void dispatch(struct moat_http_conn *c, const struct moat_http_request *req)
{
	struct request_state *rq = &c->rq;

	memset(rq, 0, sizeof(*rq));
	memset(&c->rs, 0, sizeof(c->rs));
	c->up_eof = c->up_failed = c->up_err = 0;
	moat_worker_request_id(c->w, rq->id);
	copy_slice(rq->method, sizeof(rq->method), req->method);
	copy_slice(rq->path, sizeof(rq->path), req->path.len ? req->path : req->target);
	rq->minor = req->minor;
	rq->keep_alive = req->keep_alive;
	rq->is_head = req->is_head;
	rq->expect_continue = req->expect_continue;
	rq->framing = req->framing;
	rq->remaining = req->content_length;
	rq->t_start_ns = uv_hrtime();
	rq->body_done = req->framing == MOAT_BODY_NONE ||
	                (req->framing == MOAT_BODY_LENGTH && req->content_length == 0);
	/* everything buffered now is this request's head and body, or a pipelined successor's;
	 * the successor's part is taken off when the body ends */
	rq->bytes_in = rq->body_done ? req->head_len : moat_buf_len(&c->in);
	moat_http_chunked_init(&rq->chunked, CHUNK_MAX_LINE, c->gen->cfg->max_header_size);
	c->state = CS_PROXY;
	if (refresh_generation(c) < 0)
		return;
	if (c->tenant->devices != NULL && check_quarantine(c, req) < 0)
		return;
	if (req->framing == MOAT_BODY_CHUNKED &&
	    prevalidate_chunks(c, moat_buf_head(&c->in) + req->head_len,
	                       moat_buf_len(&c->in) - req->head_len) < 0) {
		moat_buf_consume(&c->in, req->head_len);
		return;
	}
	if (req->is_connect) {
		moat_buf_consume(&c->in, req->head_len);
		respond_error(c, 405, NULL, "CONNECT is not supported");
		return;
	}
	if (c->tenant->origin_addrlen == 0) {
		moat_buf_consume(&c->in, req->head_len);
		origin_failed(c, 502, "origin_unreachable", "the tenant has no HTTP origin");
		return;
	}
	if (c->tenant->rules != NULL && moat_ruleset_needs_body(c->tenant->rules) &&
	    !rq->body_done) {
		c->state = CS_BODY_WAIT;
		if (rq->expect_continue && rq->minor == 1 && moat_buf_prepare(&c->out) == MOAT_OK) {
			/* the device waits for this before sending the body the rules must see;
			 * the origin's own 100, if any, is then not passed on */
			moat_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			rq->expect_continue = 0;
		}
		return;
	}
	forward(c, req, NULL, 0, rq->framing == MOAT_BODY_LENGTH ? rq->remaining : 0);
}

/* Applies the tenant's rules to the request, then sends it to the origin. */
static void forward(struct moat_http_conn *c, const struct moat_http_request *req, const char *body,
                    size_t body_len, uint64_t body_size)
{
	struct request_state *rq = &c->rq;
	const char *err = NULL;

	c->state = CS_PROXY;
	if (c->tenant->rules != NULL && apply_rules(c, req, body, body_len, body_size) < 0)
		return;
	c->up = moat_upstream_get(c->w, c->tenant, c, &err);
	if (c->up == NULL) {
		moat_buf_consume(&c->in, req->head_len);
		origin_failed(c, 502, "origin_unreachable", err ? err : "cannot connect");
		return;
	}
	if (moat_buf_prepare(&c->up->out) != MOAT_OK ||
	    write_request_head(c, req, &c->up->out) != MOAT_OK) {
		moat_buf_consume(&c->in, req->head_len);
		respond_error(c, 431, NULL, "request head too large to forward");
		return;
	}
	if (c->up->reused && retryable(req, rq->method))
		rq->retry_len = moat_buf_len(&c->up->out);
	moat_buf_consume(&c->in, req->head_len);
	rq->t_origin_ns = uv_hrtime();
	rq->t_body_start = now_ms(c);
	c->t_origin_act = now_ms(c);
}

static int read_client(struct moat_http_conn *c)
{
	ssize_t n;

	if (moat_buf_prepare(&c->in) != MOAT_OK) {
		conn_close(c);
		return -1;
	}
	if (moat_buf_room(&c->in) == 0)
		return 0;
	n = moat_sock_read(&c->sock, moat_buf_tail(&c->in), moat_buf_room(&c->in));
	if (n == MOAT_EAGAIN)
		return 0;
	if (n <= 0)
		return -2; /* end of stream or error: the caller decides what it means */
	if (moat_buf_len(&c->in) == 0 && c->state == CS_HEAD)
		c->t_head_start = now_ms(c);
	if (c->state == CS_HEAD) {
		/* The head parser rescans from the start: call it only when a line may have
		 * ended or a limit may have been crossed, so a head sent byte by byte costs
		 * linear time, not quadratic. */
		const struct moat_config *cfg = c->gen->cfg;
		size_t total = moat_buf_len(&c->in) + (size_t)n;

		if (memchr(moat_buf_tail(&c->in), '\n', (size_t)n) != NULL ||
		    total >= cfg->max_request_line || total >= cfg->max_header_size)
			c->head_dirty = 1;
	}
	c->in.end += (size_t)n;
	c->t_last_in = now_ms(c);
	return 1;
}

static int do_head(struct moat_http_conn *c)
{
	struct moat_http_request *req = &c->w->req;
	const struct moat_config *cfg = c->gen->cfg;
	const struct moat_http_limits lim = {cfg->max_request_line, cfg->max_header_size,
	                                     cfg->max_headers};
	const char *err = NULL;
	int r;

	if (moat_buf_len(&c->in) > 0 && c->head_dirty) {
		c->head_dirty = 0;
		r = moat_http_parse_request(moat_buf_head(&c->in), moat_buf_len(&c->in), &lim, req,
		                            &err);
		if (r == MOAT_OK) {
			dispatch(c, req);
			return 1;
		}
		if (r != MOAT_EAGAIN) {
			memset(&c->rq, 0, sizeof(c->rq));
			memset(&c->rs, 0, sizeof(c->rs));
			moat_worker_request_id(c->w, c->rq.id);
			c->rq.t_start_ns = uv_hrtime();
			c->rq.bytes_in = moat_buf_len(&c->in);
			moat_log_info("request refused: %d %s (remote=%s:%u tenant=%s device=%s)",
			              req->error_status, err ? err : "", c->peer_ip, c->peer_port,
			              c->tenant_name, c->id.device_id[0] ? c->id.device_id : "-");
			respond_error(c, req->error_status ? req->error_status : 400, NULL,
			              err ? err : "malformed request");
			return 1;
		}
	} else if (c->draining && moat_buf_len(&c->in) == 0) {
		conn_close(c);
		return 0;
	}
	r = read_client(c);
	if (r == -2) {
		/* a device closing between requests is the normal end of a connection */
		conn_close(c);
		return 0;
	}
	return r > 0;
}

/* ---- bodies ----------------------------------------------------------------------------- */

/* Moves request body bytes from the device's buffer into the origin's. */
static int move_request_body(struct moat_http_conn *c)
{
	struct request_state *rq = &c->rq;
	struct moat_buf *out = &c->up->out;
	int progress = 0;

	while (!rq->body_done) {
		size_t avail = moat_buf_len(&c->in), room;

		if (avail == 0) {
			int r = read_client(c);

			if (r == -2) {
				moat_log_info(
				        "device %s closed the connection during a request body "
				        "(request_id=%s)",
				        c->id.device_id[0] ? c->id.device_id : c->peer_ip, rq->id);
				conn_close(c);
				return -1;
			}
			if (r <= 0)
				return r < 0 ? -1 : progress;
			rq->bytes_in += moat_buf_len(&c->in);
			progress = 1;
			continue;
		}
		if (moat_buf_prepare(out) != MOAT_OK) {
			conn_close(c);
			return -1;
		}
		room = moat_buf_room(out);
		if (room < 2 * CHUNK_FRAMING)
			return progress;
		if (rq->framing == MOAT_BODY_LENGTH) {
			size_t n = avail < room ? avail : room;

			if (n > rq->remaining)
				n = (size_t)rq->remaining;
			moat_buf_append(out, moat_buf_head(&c->in), n);
			moat_buf_consume(&c->in, n);
			rq->remaining -= n;
			if (rq->remaining == 0) {
				rq->body_done = 1;
				/* what follows in the buffer is the next request's */
				rq->bytes_in -= moat_buf_len(&c->in);
			}
		} else {
			struct moat_slice data;
			size_t consumed = 0, lim = room - CHUNK_FRAMING;
			const char *err = NULL;
			int r = moat_http_chunked_decode(&rq->chunked, moat_buf_head(&c->in),
			                                 avail < lim ? avail : lim, &consumed,
			                                 &data, &err);

			if (r == MOAT_EINVAL) {
				moat_log_info(
				        "request refused: 400 %s (remote=%s:%u request_id=%s)",
				        err ? err : "bad chunk", c->peer_ip, c->peer_port, rq->id);
				respond_error(c, 400, NULL, err ? err : "malformed chunked body");
				return -1;
			}
			if (data.len > 0) {
				char hdr[24];
				int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", data.len);

				moat_buf_append(out, hdr, (size_t)hl);
				moat_buf_append(out, data.p, data.len);
				moat_buf_append(out, "\r\n", 2);
			}
			moat_buf_consume(&c->in, consumed);
			if (r == 1) {
				moat_buf_append(out, "0\r\n\r\n", 5);
				rq->body_done = 1;
				rq->bytes_in -= moat_buf_len(&c->in);
			}
		}
		progress = 1;
	}
	return progress;
}

static int write_response_head(struct moat_http_conn *c, const struct moat_http_response *res)
{
	struct moat_line l = {moat_buf_tail(&c->out), 0, moat_buf_room(&c->out), 0};

	moat_line_printf(&l, "HTTP/1.1 %d ", res->status);
	moat_line_raw(&l, res->reason.p, res->reason.len);
	moat_line_raw(&l, "\r\n", 2);
	for (unsigned i = 0; i < res->nheaders; i++) {
		const struct moat_http_header *h = &res->headers[i];

		if (h->flags & MOAT_HDR_HOP)
			continue;
		moat_line_raw(&l, h->name.p, h->name.len);
		moat_line_raw(&l, ": ", 2);
		moat_line_raw(&l, h->value.p, h->value.len);
		moat_line_raw(&l, "\r\n", 2);
	}
	if (res->status >= 200) {
		if (c->rs.chunked_out)
			moat_line_raw(&l, "Transfer-Encoding: chunked\r\n", 28);
		/* an origin answering before the whole body arrived ends the exchange: the rest
		 * of the body will not be read, so the connection cannot be reused */
		if (c->close_after || !c->rq.keep_alive || c->draining || !c->rq.body_done)
			moat_line_raw(&l, "Connection: close\r\n", 19);
		else if (c->rq.minor == 0)
			moat_line_raw(&l, "Connection: keep-alive\r\n", 24);
	}
	moat_line_raw(&l, "\r\n", 2);
	if (l.truncated)
		return MOAT_ETOOBIG;
	c->out.end += l.len;
	return MOAT_OK;
}

/* Parses the origin's response head and queues ours. Returns 1 on progress, 0 when more bytes
 * are needed, -1 when the request ended. */
static int response_head(struct moat_http_conn *c)
{
	static const struct moat_http_limits lim = {RESPONSE_MAX_HEAD, RESPONSE_MAX_HEAD,
	                                            MOAT_HTTP_MAX_HEADERS};
	struct moat_http_response res;
	struct moat_buf *in = &c->up->in;
	const char *err = NULL;
	int r;

	if (moat_buf_len(in) == 0) {
		if (!c->up_eof)
			return 0;
		if (retry_request(c))
			return 1;
		origin_failed(c, 502, "bad_origin_response",
		              "origin closed the connection without a response");
		return -1;
	}
	r = moat_http_parse_response(moat_buf_head(in), moat_buf_len(in), &lim, c->rq.is_head, &res,
	                             &err);
	if (r == MOAT_EAGAIN) {
		if (c->up_eof || moat_buf_room(in) == 0) {
			origin_failed(c, 502, "bad_origin_response",
			              c->up_eof ? "origin closed the connection mid-head"
			                        : "response head too large");
			return -1;
		}
		return 0;
	}
	if (r != MOAT_OK) {
		origin_failed(c, 502, "bad_origin_response", err ? err : "malformed response");
		return -1;
	}
	if (moat_buf_prepare(&c->out) != MOAT_OK) {
		conn_close(c);
		return -1;
	}
	if (res.status < 200) {
		if (res.status == 101) {
			origin_failed(c, 502, "bad_origin_response",
			              "origin switched protocols without being asked");
			return -1;
		}
		/* Interim responses: 100 Continue goes to a device that asked for it. */
		if (res.status == 100 && c->rq.expect_continue && c->rq.minor == 1 &&
		    !c->rs.started) {
			if (moat_buf_room(&c->out) < res.head_len + 64)
				return 0;
			if (write_response_head(c, &res) != MOAT_OK)
				return 0;
		}
		moat_buf_consume(in, res.head_len);
		return 1;
	}
	if (moat_buf_len(&c->out) > 0 && moat_buf_room(&c->out) < res.head_len + 256)
		return 0; /* flush what is queued first */
	c->rs.status = res.status;
	c->rs.framing = res.framing;
	c->rs.remaining = res.content_length;
	c->rs.keep_alive = res.keep_alive;
	moat_http_chunked_init(&c->rs.chunked, CHUNK_MAX_LINE, RESPONSE_MAX_HEAD);
	c->rs.chunked_out = res.framing == MOAT_BODY_CHUNKED && c->rq.minor == 1;
	if (res.framing == MOAT_BODY_UNTIL_CLOSE ||
	    (res.framing == MOAT_BODY_CHUNKED && c->rq.minor == 0))
		c->close_after = 1;
	if (write_response_head(c, &res) != MOAT_OK) {
		origin_failed(c, 502, "bad_origin_response", "response head too large");
		return -1;
	}
	c->rs.started = 1;
	c->rs.head_done = 1;
	c->rq.t_origin_head_ns = uv_hrtime();
	moat_buf_consume(in, res.head_len);
	if (res.framing == MOAT_BODY_NONE ||
	    (res.framing == MOAT_BODY_LENGTH && res.content_length == 0))
		c->rs.done = 1;
	return 1;
}

/* Moves response body bytes from the origin's buffer into the device's. */
static int move_response_body(struct moat_http_conn *c)
{
	struct response_state *rs = &c->rs;
	struct moat_buf *in = &c->up->in;
	size_t avail = moat_buf_len(in), room;

	if (avail == 0) {
		if (!c->up_eof)
			return 0;
		if (rs->framing == MOAT_BODY_UNTIL_CLOSE && !c->up_err) {
			rs->done = 1;
			return 1;
		}
		moat_log_warn("origin %s closed the connection mid-response (request_id=%s)",
		              c->tenant->cfg->origin ? c->tenant->cfg->origin : "(none)", c->rq.id);
		respond_error(c, 502, "bad_origin_response", "truncated response");
		return -1;
	}
	if (moat_buf_prepare(&c->out) != MOAT_OK) {
		conn_close(c);
		return -1;
	}
	room = moat_buf_room(&c->out);
	if (room < 2 * CHUNK_FRAMING)
		return 0;
	if (rs->framing != MOAT_BODY_CHUNKED) {
		size_t n = avail < room ? avail : room;

		if (rs->framing == MOAT_BODY_LENGTH && n > rs->remaining)
			n = (size_t)rs->remaining;
		moat_buf_append(&c->out, moat_buf_head(in), n);
		moat_buf_consume(in, n);
		if (rs->framing == MOAT_BODY_LENGTH) {
			rs->remaining -= n;
			if (rs->remaining == 0)
				rs->done = 1;
		}
		return 1;
	} else {
		struct moat_slice data;
		size_t consumed = 0, lim = room - CHUNK_FRAMING;
		const char *err = NULL;
		int r = moat_http_chunked_decode(&rs->chunked, moat_buf_head(in),
		                                 avail < lim ? avail : lim, &consumed, &data, &err);

		if (r == MOAT_EINVAL) {
			respond_error(c, 502, "bad_origin_response",
			              err ? err : "malformed chunked response");
			return -1;
		}
		if (data.len > 0) {
			if (rs->chunked_out) {
				char hdr[24];
				int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", data.len);

				moat_buf_append(&c->out, hdr, (size_t)hl);
				moat_buf_append(&c->out, data.p, data.len);
				moat_buf_append(&c->out, "\r\n", 2);
			} else {
				moat_buf_append(&c->out, data.p, data.len);
			}
		}
		moat_buf_consume(in, consumed);
		if (r == 1) {
			if (rs->chunked_out)
				moat_buf_append(&c->out, "0\r\n\r\n", 5);
			rs->done = 1;
		}
		return consumed > 0 || r == 1;
	}
}

/* ---- the proxy step --------------------------------------------------------------------- */

static int upstream_connect_step(struct moat_http_conn *c)
{
	struct moat_upstream *u = c->up;
	char buf[200];

	if (u->state == UP_CONNECTING) {
		const char *err = NULL;
		int r = moat_upstream_connect_done(u, &err);

		if (r == MOAT_EAGAIN)
			return 0;
		if (r != MOAT_OK) {
			snprintf(buf, sizeof(buf), "connect: %s", err ? err : "failed");
			origin_failed(c, 502, "origin_unreachable", buf);
			return -1;
		}
		return 1;
	}
	if (u->state == UP_TLS) {
		int r = moat_sock_handshake(&u->sock);

		if (r == MOAT_EAGAIN)
			return 0;
		if (r != MOAT_OK) {
			snprintf(buf, sizeof(buf), "TLS to origin: %s",
			         moat_tls_client_error(u->sock.ssl, u->sock.ssl_err));
			origin_failed(c, 502, "origin_unreachable", buf);
			return -1;
		}
		u->state = UP_READY;
		return 1;
	}
	return 0;
}

static int do_proxy(struct moat_http_conn *c)
{
	struct moat_upstream *u = c->up;
	int progress = 0, r;
	ssize_t n;

	if (u != NULL && u->state != UP_READY) {
		r = upstream_connect_step(c);
		if (r < 0)
			return 1;
		progress |= r;
	}
	if (!c->rq.body_done && u != NULL) {
		r = move_request_body(c);
		if (r < 0)
			return c->state == CS_CLOSED ? 0 : 1;
		progress |= r;
	}
	if (u != NULL && u->state == UP_READY && moat_buf_len(&u->out) > 0 && !c->up_failed) {
		n = moat_sock_write(&u->sock, moat_buf_head(&u->out), moat_buf_len(&u->out));
		if (n > 0) {
			moat_buf_consume(&u->out, (size_t)n);
			c->t_origin_act = now_ms(c);
			progress = 1;
		} else if (n != MOAT_EAGAIN) {
			if (!c->rs.head_done && retry_request(c))
				return 1;
			if (!c->rs.head_done) {
				origin_failed(c, 502, "origin_unreachable",
				              "origin closed the connection while receiving");
				return 1;
			}
			/* The origin answered and stopped reading: the rest of the body is
			 * not wanted. Finish the response, then close the device's stream. */
			c->up_failed = 1;
			c->close_after = 1;
			u->out.start = u->out.end = 0;
		}
	}
	if (u != NULL && u->state == UP_READY && !c->rs.done && !c->up_eof) {
		if (moat_buf_prepare(&u->in) != MOAT_OK) {
			conn_close(c);
			return 0;
		}
		if (moat_buf_room(&u->in) > 0) {
			n = moat_sock_read(&u->sock, moat_buf_tail(&u->in), moat_buf_room(&u->in));
			if (n > 0) {
				u->in.end += (size_t)n;
				c->t_origin_act = now_ms(c);
				progress = 1;
			} else if (n == 0 || n == MOAT_EIO) {
				c->up_eof = 1;
				c->up_err = n == MOAT_EIO;
				progress = 1;
			}
		}
	}
	while (u != NULL && !c->rs.done && c->state == CS_PROXY) {
		r = c->rs.head_done ? move_response_body(c) : response_head(c);
		if (r < 0)
			return c->state == CS_CLOSED ? 0 : 1;
		if (r == 0)
			break;
		progress = 1;
	}
	if (c->state != CS_PROXY)
		return c->state == CS_CLOSED ? 0 : 1;
	if (moat_buf_len(&c->out) > 0) {
		n = moat_sock_write(&c->sock, moat_buf_head(&c->out), moat_buf_len(&c->out));
		if (n > 0) {
			moat_buf_consume(&c->out, (size_t)n);
			c->rs.bytes_out += (uint64_t)n;
			c->t_last_out = now_ms(c);
			progress = 1;
		} else if (n != MOAT_EAGAIN) {
			conn_close(c);
			return 0;
		}
	}
	if (c->rs.done && moat_buf_len(&c->out) == 0) {
		int reusable = c->rq.body_done && c->rs.keep_alive && !c->up_eof && !c->up_failed &&
		               c->rs.framing != MOAT_BODY_UNTIL_CLOSE;

		access_log(c);
		if (c->up != NULL) {
			moat_upstream_release(c->up, reusable);
			c->up = NULL;
		}
		if (c->close_after || !c->rq.keep_alive || c->draining || !c->rq.body_done) {
			c->state = CS_CLOSING;
		} else {
			c->state = CS_HEAD;
			c->head_dirty = 1; /* a pipelined request may be waiting in the buffer */
			c->t_head_start = c->t_last_in = now_ms(c);
		}
		return 1;
	}
	return progress;
}

/*
 * Closing: flush what is queued, then close "lingering", as nginx does: stop sending (TLS
 * close_notify and a FIN) and read and discard what the device still sends, for a short
 * while. Closing at once with unread input makes the kernel send a reset, which can destroy
 * the answer before the device has read it (a blocked upload, an early error).
 */
static int do_closing(struct moat_http_conn *c)
{
	char sink[4096];
	ssize_t n;

	if (moat_buf_len(&c->out) > 0) {
		n = moat_sock_write(&c->sock, moat_buf_head(&c->out), moat_buf_len(&c->out));
		if (n > 0) {
			moat_buf_consume(&c->out, (size_t)n);
			c->rs.bytes_out += (uint64_t)n;
			c->t_last_out = now_ms(c);
			return 1;
		}
		if (n != MOAT_EAGAIN)
			conn_close(c);
		return 0;
	}
	if (!c->lingering) {
		c->lingering = 1;
		c->t_last_out = now_ms(c);
		moat_sock_shutdown_write(&c->sock);
	}
	/* raw reads: what the device sends now is discarded, so there is nothing to decrypt */
	for (int i = 0; i < 16; i++) {
		n = recv(c->sock.fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		conn_close(c); /* the device closed too, or failed */
		return 0;
	}
	return 1;
}

/* ---- events and timers ------------------------------------------------------------------ */

static void client_poll_cb(uv_poll_t *h, int status, int events)
{
	pump(h->data);
}

void moat_http_conn_upstream_event(struct moat_http_conn *c)
{
	pump(c);
}

static void update_watch(struct moat_http_conn *c)
{
	int ev = 0;
	struct moat_upstream *u = c->up;

	switch (c->state) {
	case CS_HANDSHAKE:
		ev = c->sock.hs_wait;
		break;
	case CS_HEAD:
		if (moat_buf_len(&c->in) == 0) {
			/* idle between requests: hold no buffer memory */
			moat_buf_release_if_empty(&c->in);
			moat_buf_release_if_empty(&c->out);
		}
		if (c->in.data == NULL || moat_buf_room(&c->in) > 0)
			ev |= c->sock.rd_wait;
		break;
	case CS_BODY_WAIT:
		if (moat_buf_room(&c->in) > 0)
			ev |= c->sock.rd_wait;
		break;
	case CS_PROXY:
		/* move_request_body reads only once the buffer is drained into the origin's:
		 * asking for readability earlier would wake us for nothing, forever */
		if (!c->rq.body_done && moat_buf_len(&c->in) == 0)
			ev |= c->sock.rd_wait;
		break;
	case CS_CLOSING:
		if (c->lingering)
			ev |= UV_READABLE;
		break;
	default:
		break;
	}
	if (moat_buf_len(&c->out) > 0)
		ev |= c->sock.wr_wait;
	moat_sock_watch(&c->sock, ev, client_poll_cb);
	if (u == NULL)
		return;
	ev = 0;
	if (u->state == UP_CONNECTING)
		ev = UV_WRITABLE;
	else if (u->state == UP_TLS)
		ev = u->sock.hs_wait;
	else {
		if (moat_buf_len(&u->out) > 0 && !c->up_failed)
			ev |= u->sock.wr_wait;
		if (!c->rs.done && !c->up_eof && (u->in.data == NULL || moat_buf_room(&u->in) > 0))
			ev |= u->sock.rd_wait;
	}
	moat_upstream_watch(u, ev);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t min_rate_deadline(const struct moat_http_conn *c, const struct moat_config *cfg);

/* The nearest deadline of the current state; UINT64_MAX if none. */
static uint64_t next_deadline(struct moat_http_conn *c)
{
	const struct moat_config *cfg = c->gen->cfg;
	uint64_t d = UINT64_MAX;

	switch (c->state) {
	case CS_HANDSHAKE:
		return c->t_accept + cfg->handshake_timeout;
	case CS_HEAD:
		if (moat_buf_len(&c->in) == 0)
			return c->t_last_in + cfg->idle_timeout;
		return c->t_head_start + cfg->request_header_timeout;
	case CS_PROXY:
		if (c->up != NULL && c->up->state != UP_READY)
			d = min_u64(d, c->t_origin_act + cfg->origin_connect_timeout);
		else if (c->up != NULL && !c->rs.done)
			d = min_u64(d, c->t_origin_act + cfg->origin_response_timeout);
		if (!c->rq.body_done && moat_buf_len(&c->in) == 0) {
			/* only while waiting for the device: when the origin is the slow side,
			 * the device is not to blame */
			d = min_u64(d, c->t_last_in + cfg->request_body_timeout);
			if (cfg->request_body_min_rate > 0)
				d = min_u64(d, min_rate_deadline(c, cfg));
		}
		if (moat_buf_len(&c->out) > 0)
			d = min_u64(d, c->t_last_out + cfg->idle_timeout);
		return d;
	case CS_BODY_WAIT:
		return c->t_last_in + cfg->request_body_timeout;
	case CS_CLOSING:
		return c->t_last_out + (c->lingering ? LINGER_TIMEOUT_MS : CLOSING_TIMEOUT_MS);
	default:
		return UINT64_MAX;
	}
}

static uint64_t min_rate_deadline(const struct moat_http_conn *c, const struct moat_config *cfg)
{
	/* After an allowance of request_body_timeout, the body must keep up the configured
	 * average rate: a device trickling one byte a second is cut off. */
	return c->rq.t_body_start + cfg->request_body_timeout +
	       (c->rq.bytes_in * 1000) / cfg->request_body_min_rate;
}

static int body_below_min_rate(const struct moat_http_conn *c, const struct moat_config *cfg,
                               uint64_t now)
{
	return cfg->request_body_min_rate > 0 && now >= min_rate_deadline(c, cfg);
}

static void timer_cb(uv_timer_t *t)
{
	struct moat_http_conn *c = t->data;
	const struct moat_config *cfg = c->gen->cfg;
	uint64_t now = now_ms(c);

	if (next_deadline(c) > now) {
		pump(c);
		return;
	}
	switch (c->state) {
	case CS_HANDSHAKE:
		moat_log_info("tls handshake timed out: remote=%s:%u", c->peer_ip, c->peer_port);
		conn_close(c);
		return;
	case CS_HEAD:
		if (moat_buf_len(&c->in) == 0) {
			conn_close(c); /* keep-alive idle timeout */
			return;
		}
		memset(&c->rq, 0, sizeof(c->rq));
		memset(&c->rs, 0, sizeof(c->rs));
		moat_worker_request_id(c->w, c->rq.id);
		c->rq.t_start_ns = uv_hrtime();
		moat_log_info("request head timed out after %llu ms (remote=%s:%u)",
		              (unsigned long long)cfg->request_header_timeout, c->peer_ip,
		              c->peer_port);
		respond_error(c, 408, NULL, "request head not received in time");
		break;
	case CS_BODY_WAIT:
		moat_log_info("request body too slow (remote=%s:%u request_id=%s)", c->peer_ip,
		              c->peer_port, c->rq.id);
		moat_buf_consume(&c->in, moat_buf_len(&c->in));
		respond_error(c, 408, NULL, "request body not received in time");
		break;
	case CS_PROXY:
		if (c->up != NULL && c->up->state != UP_READY &&
		    now >= c->t_origin_act + cfg->origin_connect_timeout) {
			origin_failed(c, 504, "origin_timeout", "connect to origin timed out");
		} else if (!c->rq.body_done && moat_buf_len(&c->in) == 0 &&
		           (now >= c->t_last_in + cfg->request_body_timeout ||
		            body_below_min_rate(c, cfg, now))) {
			moat_log_info("request body too slow (remote=%s:%u request_id=%s)",
			              c->peer_ip, c->peer_port, c->rq.id);
			respond_error(c, 408, NULL, "request body not received in time");
		} else if (c->up != NULL && !c->rs.done &&
		           now >= c->t_origin_act + cfg->origin_response_timeout) {
			origin_failed(c, 504, "origin_timeout", "origin response timed out");
		} else {
			conn_close(c); /* the device stopped reading its response */
			return;
		}
		break;
	default:
		conn_close(c);
		return;
	}
	pump(c);
}

static void arm_timer(struct moat_http_conn *c)
{
	uint64_t d = next_deadline(c), now = now_ms(c);

	if (d == UINT64_MAX) {
		uv_timer_stop(&c->timer);
		return;
	}
	uv_timer_start(&c->timer, timer_cb, d > now ? d - now : 0, 0);
}

/* The budget per wake-up (core/worker.h): a pass parses, or moves up to a buffer each way. */
#define HTTP_PUMP_MAX_PASSES 16

static void pump(struct moat_http_conn *c)
{
	int progress, passes = 0;

	do {
		switch (c->state) {
		case CS_HANDSHAKE:
			progress = do_handshake(c);
			break;
		case CS_HEAD:
			progress = do_head(c);
			break;
		case CS_BODY_WAIT:
			progress = do_body_wait(c);
			break;
		case CS_PROXY:
			progress = do_proxy(c);
			break;
		case CS_CLOSING:
			progress = do_closing(c);
			break;
		default:
			return;
		}
	} while (progress > 0 && c->state != CS_CLOSED && ++passes < HTTP_PUMP_MAX_PASSES);
	if (c->state == CS_CLOSED)
		return;
	update_watch(c);
	if (passes == HTTP_PUMP_MAX_PASSES)
		uv_timer_start(&c->timer, timer_cb, MOAT_PUMP_AGAIN_MS, 0); /* after the others */
	else
		arm_timer(c);
}

/* ---- accept and worker hooks ------------------------------------------------------------ */

void moat_http_accept(struct moat_worker *w, struct moat_listener *l, int fd,
                      const struct sockaddr_storage *addr)
{
	struct moat_http_conn *c = moat_calloc(1, sizeof(*c));
	const struct moat_config *cfg = w->gen->cfg;

	if (c == NULL)
		goto fail;
	c->w = w;
	c->peer = *addr;
	c->peer_port = moat_addr_format(addr, c->peer_ip);
	snprintf(c->listener_name, sizeof(c->listener_name), "%s", l->cfg->name);
	moat_buf_init(&c->in, client_in_cap(cfg));
	moat_buf_init(&c->out, CLIENT_OUT_CAP);
	if (moat_sock_init(&c->sock, &w->loop, fd, c) != MOAT_OK)
		goto fail;
	c->sock.ssl = SSL_new(l->ssl_ctx);
	if (c->sock.ssl == NULL || SSL_set_fd(c->sock.ssl, fd) != 1) {
		ERR_clear_error();
		c->state = CS_HANDSHAKE;
		moat_gen_ref(w->gen);
		c->gen = w->gen;
		uv_timer_init(&w->loop, &c->timer);
		c->timer.data = c;
		moat_worker_conn_add(w, &c->base, &http_conn_ops);
		conn_close(c);
		return;
	}
	SSL_set_accept_state(c->sock.ssl);
	c->tls.listener = l;
	moat_tls_conn_attach(c->sock.ssl, &c->tls);
	moat_gen_ref(w->gen);
	c->gen = w->gen;
	uv_timer_init(&w->loop, &c->timer);
	c->timer.data = c;
	moat_worker_conn_add(w, &c->base, &http_conn_ops);
	c->state = CS_HANDSHAKE;
	c->t_accept = now_ms(c);
	pump(c);
	return;
fail:
	moat_free(c);
	close(fd);
	moat_limits_release(addr);
}

static void http_drain(struct moat_conn *base)
{
	struct moat_http_conn *c = (struct moat_http_conn *)base;

	c->draining = 1;
	if (c->state == CS_HANDSHAKE || (c->state == CS_HEAD && moat_buf_len(&c->in) == 0))
		conn_close(c);
}

static void http_close(struct moat_conn *base)
{
	conn_close((struct moat_http_conn *)base);
}

/* Idle connections are checked now, busy ones at their next request: a revoked device keeps
 * no open connection past the reload. */
static void http_gen_changed(struct moat_conn *base)
{
	struct moat_http_conn *c = (struct moat_http_conn *)base;
	struct moat_tenant *t;
	const char *why;

	if (c->state == CS_HEAD && moat_buf_len(&c->in) == 0) {
		(void)refresh_generation(c);
		return;
	}
	if (c->tenant == NULL || c->state == CS_HANDSHAKE || c->state == CS_CLOSED)
		return;
	/* Busy (a long upload or download): a revoked device does not get to finish it. */
	t = moat_gen_tenant_by_name(c->w->gen, c->tenant_name);
	if (t == NULL || t->cfg->mtls != MOAT_MTLS_REQUIRE)
		return; /* a removed tenant ends at the next request */
	why = moat_tenant_refusal(t, c->sock.ssl ? SSL_get0_peer_certificate(c->sock.ssl) : NULL,
	                          c->id.device_id);
	if (why != NULL) {
		moat_log_warn("closing connection in the middle of a request: device %s of tenant "
		              "%s: %s",
		              c->id.device_id[0] ? c->id.device_id : "-", c->tenant_name, why);
		conn_close(c);
	}
}

static const struct moat_conn_ops http_conn_ops = {http_drain, http_close, http_gen_changed};
