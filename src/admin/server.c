/*
 * The admin API's HTTP/1.1 server: accepts connections on the control thread's loop, reads
 * each request whole (with bounds and timeouts), hands it to moat_admin_handle and writes the
 * answer.
 *
 * A connection is a small state machine:
 *
 *     HANDSHAKE (TLS only) -> HEAD -> BODY -> WRITING -> HEAD -> ...
 *                                  \-> LINGER -> closed   (errors, Connection: close)
 *
 * One request is handled at a time, and a connection does not read while its answer is being
 * written: a client that sends requests without reading the answers stalls itself, not the
 * server's memory. Pipelined requests wait in the input buffer and are taken in order once
 * the previous answer is out. The input buffer never holds more than one request's head
 * (16 KiB) and body (MOAT_ADMIN_MAX_BODY), plus what a pipelining client sent after them
 * within that bound.
 *
 * TLS runs over memory BIOs: bytes libuv reads go into the read BIO, SSL_read yields the
 * plaintext, and what OpenSSL wants to send is drained from the write BIO into uv_write. Only
 * libuv touches the socket, so TLS and plain connections share every other line of code.
 *
 * A connection that closes after its answer shuts down its sending side once the answer is
 * written and reads and discards for a little while (a lingering close): closing with unread
 * bytes in the kernel sends a reset, which can destroy the answer before the client reads it
 * (a 413 sent while the client is still sending its body, say).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "admin/admin.h"
#include "core/alloc.h"
#include "core/list.h"
#include "core/log.h"
#include "http/parse.h"

#define HEAD_MAX (16 * 1024)
#define REQUEST_LINE_MAX (8 * 1024)
#define HEADERS_MAX 100
#define MAX_CONNS 256
#define BACKLOG 128
/* one TLS record with its overhead: what a read from the socket takes at once */
#define READ_CHUNK (16 * 1024 + 512)
/* after a final answer: how long and how much we keep reading before closing */
#define LINGER_MS 5000
#define LINGER_MAX_BYTES (1024 * 1024)
/* at most one "too many connections" line this often, whatever the flood */
#define REFUSAL_LOG_INTERVAL_MS 10000

typedef void (*admin_handler_fn)(struct moat_admin_ctx *, const struct moat_admin_req *,
                                 struct moat_admin_resp *);

/*
 * Test hooks, declared here and in the unit test rather than in admin.h: the server's tests
 * answer through a fake handler (the real one needs a store), shorten the timeouts, and learn
 * the port picked for "127.0.0.1:0".
 */
void moat_admin_server_set_handler(admin_handler_fn fn);
void moat_admin_server_set_timeouts(uint64_t request_ms, uint64_t idle_ms);
int moat_admin_server_port(const struct moat_admin_server *s);

static admin_handler_fn handler = moat_admin_handle;
/* whole request (and TLS handshake) from its first byte; idle keep-alive and answer writing */
static uint64_t request_timeout_ms = 10000;
static uint64_t idle_timeout_ms = 60000;
static uint64_t linger_ms = LINGER_MS;

enum conn_state {
	ST_HANDSHAKE, /* TLS handshake under way */
	ST_HEAD, /* waiting for (the rest of) a request head */
	ST_BODY, /* the head is in; waiting for head_len + body_len bytes */
	ST_WRITING, /* an answer is being written; the connection stays open after it */
	ST_LINGER, /* the last answer is being written, then the connection closes */
};

struct conn {
	struct moat_list link; /* in the server's conns */
	struct moat_admin_server *s;
	uv_tcp_t tcp;
	uv_timer_t timer; /* the one deadline of the current state */
	uv_shutdown_t shutdown;
	enum conn_state state;
	int handles; /* libuv handles not yet closed; the conn is freed at 0 */
	unsigned writes; /* uv_write requests in flight */
	unsigned closing : 1;
	unsigned reading : 1;
	unsigned eof : 1; /* the client finished sending (FIN or close_notify) */
	unsigned shut : 1; /* our sending side is shut down: the answer is out */
	unsigned head_dirty : 1; /* bytes that may end the head arrived since the last parse */
	unsigned timing_request : 1; /* the request timer runs (the head's first byte is in) */
	SSL *ssl; /* NULL for plain connections */
	char *in; /* plaintext received: the current request first */
	size_t in_len, in_cap;
	size_t head_len, body_len; /* the request being read, from ST_BODY on */
	size_t lingered; /* bytes discarded while lingering */
	char peer[INET6_ADDRSTRLEN];
};

struct moat_admin_server {
	uv_loop_t *loop;
	struct moat_admin_ctx *ctx;
	SSL_CTX *tls;
	uv_tcp_t listener;
	/* connections over the limit are accepted into this handle and closed at once; one
	 * at a time, so a flood costs no memory */
	uv_tcp_t drop;
	struct moat_list conns;
	unsigned nconns;
	unsigned listening : 1; /* the listener handle is not closed yet */
	unsigned dropping : 1; /* the drop handle is closing */
	unsigned accept_waiting : 1; /* a connection waits to be accepted until drop is free */
	unsigned stopping : 1;
	int port;
	uint64_t refusal_logged_at;
	unsigned refused_since_log;
	/* one request is parsed at a time on this loop; too big for the stack of a callback */
	struct moat_http_request req;
	char scratch[READ_CHUNK]; /* TLS and lingering reads */
};

/* A write request and its bytes, freed by its callback. */
struct wbuf {
	uv_write_t req;
	size_t len;
	char data[];
};

static const struct moat_http_limits limits = {REQUEST_LINE_MAX, HEAD_MAX, HEADERS_MAX};

static void process(struct conn *c);
static void conn_close(struct conn *c);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_timer(uv_timer_t *t);

/* ---- test hooks ------------------------------------------------------------------------- */

void moat_admin_server_set_handler(admin_handler_fn fn)
{
	handler = fn != NULL ? fn : moat_admin_handle;
}

void moat_admin_server_set_timeouts(uint64_t request_ms, uint64_t idle_ms)
{
	request_timeout_ms = request_ms;
	idle_timeout_ms = idle_ms;
	linger_ms = request_ms < LINGER_MS ? request_ms : LINGER_MS;
}

int moat_admin_server_port(const struct moat_admin_server *s)
{
	return s->port;
}

/* ---- small helpers ---------------------------------------------------------------------- */

static int64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void arm(struct conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* The first OpenSSL error's reason, and a clean queue for the next user of this thread. */
static const char *ssl_reason(char *buf, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, cap, "unknown error");
	else
		ERR_error_string_n(e, buf, cap);
	ERR_clear_error();
	return buf;
}

static void peer_text(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	snprintf(c->peer, sizeof(c->peer), "unknown");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;

		/* a dual-stack listener: show IPv4 clients as IPv4, as the audit log expects */
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
			inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], c->peer, sizeof(c->peer));
		else
			uv_ip6_name(a6, c->peer, sizeof(c->peer));
	}
}

/* ---- writing ------------------------------------------------------------------------------ */

static struct wbuf *wbuf_new(size_t len)
{
	struct wbuf *w = moat_malloc(sizeof(*w) + len);

	if (w != NULL)
		w->len = len;
	return w;
}

static void on_write(uv_write_t *req, int status)
{
	struct wbuf *w = (struct wbuf *)req;
	struct conn *c = req->data;

	moat_free(w);
	c->writes--;
	if (c->closing)
		return;
	if (status < 0) {
		moat_log_debug("admin: write to %s failed: %s", c->peer, uv_strerror(status));
		conn_close(c);
		return;
	}
	if (c->writes == 0 && c->state == ST_WRITING) {
		/* the answer is out: the next request, maybe already buffered */
		c->state = ST_HEAD;
		c->timing_request = 0;
		if (c->in_len > 0) {
			c->head_dirty = 1;
		} else {
			/* an idle connection keeps no buffer */
			moat_free(c->in);
			c->in = NULL;
			c->in_cap = 0;
			arm(c, idle_timeout_ms);
		}
		process(c);
	}
}

/* Queues w's bytes on the socket; takes w. */
static int write_raw(struct conn *c, struct wbuf *w)
{
	uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
	int r;

	w->req.data = c;
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (r != 0) {
		moat_free(w);
		return -1;
	}
	c->writes++;
	return 0;
}

/* Sends what OpenSSL has produced (records, alerts, close_notify). */
static int tls_flush(struct conn *c)
{
	BIO *wb = SSL_get_wbio(c->ssl);
	size_t n = BIO_ctrl_pending(wb);
	struct wbuf *w;

	if (n == 0)
		return 0;
	w = wbuf_new(n);
	if (w == NULL)
		return -1;
	if (BIO_read(wb, w->data, (int)n) != (int)n) {
		moat_free(w);
		return -1;
	}
	return write_raw(c, w);
}

/* Sends w's plaintext, encrypted on a TLS connection; takes w. */
static int send_wbuf(struct conn *c, struct wbuf *w)
{
	char why[160];
	int r;

	if (c->ssl == NULL)
		return write_raw(c, w);
	if (w->len > INT32_MAX) {
		moat_free(w);
		return -1;
	}
	ERR_clear_error();
	/* a memory BIO takes everything at once: no partial writes, no retries */
	r = SSL_write(c->ssl, w->data, (int)w->len);
	moat_free(w);
	if (r <= 0) {
		moat_log_debug("admin: TLS write to %s failed: %s", c->peer,
		               ssl_reason(why, sizeof(why)));
		return -1;
	}
	return tls_flush(c);
}

static int send_text(struct conn *c, const char *s, size_t len)
{
	struct wbuf *w = wbuf_new(len);

	if (w == NULL)
		return -1;
	memcpy(w->data, s, len);
	return send_wbuf(c, w);
}

static int status_has_body(int status)
{
	return status != 204 && status != 304;
}

/* A header value from the handler, refused if it could split the head. */
static int header_safe(const char *v)
{
	return v[strcspn(v, "\r\n")] == '\0';
}

/*
 * Writes an answer's head and body as one buffer. keep: the connection stays open after it;
 * minor: the request's HTTP version (an HTTP/1.0 client is told when we keep its connection).
 */
static int send_response(struct conn *c, const struct moat_admin_resp *r, int is_head, int minor,
                         int keep)
{
	char headbuf[512];
	struct moat_line h = {headbuf, 0, sizeof(headbuf), 0};
	/* a handler never answers 1xx: anything out of range is its bug, not the client's */
	int status = r->status >= 200 && r->status <= 599 ? r->status : 500;
	int with_body = status_has_body(status);
	size_t body_len = with_body && r->body != NULL ? r->body_len : 0;
	size_t send_len = is_head ? 0 : body_len;
	struct wbuf *w;

	moat_line_printf(&h, "HTTP/1.1 %d %s\r\n", status, moat_http_reason(status));
	if (body_len > 0)
		moat_line_printf(&h, "Content-Type: application/json\r\n");
	if (with_body)
		moat_line_printf(&h, "Content-Length: %zu\r\n", body_len);
	moat_line_printf(&h, "Cache-Control: no-store\r\n");
	if (status == 405 && r->allow[0] != '\0' && header_safe(r->allow))
		moat_line_printf(&h, "Allow: %s\r\n", r->allow);
	if (status == 429)
		moat_line_printf(&h, "Retry-After: %u\r\n", r->retry_after);
	if (!keep)
		moat_line_printf(&h, "Connection: close\r\n");
	else if (minor == 0)
		moat_line_printf(&h, "Connection: keep-alive\r\n");
	moat_line_printf(&h, "\r\n");
	if (h.truncated)
		return -1;
	w = wbuf_new(h.len + send_len);
	if (w == NULL)
		return -1;
	memcpy(w->data, headbuf, h.len);
	if (send_len > 0)
		memcpy(w->data + h.len, r->body, send_len);
	return send_wbuf(c, w);
}

/* ---- closing ---------------------------------------------------------------------------- */

static void server_maybe_free(struct moat_admin_server *s)
{
	if (!s->stopping || s->listening || s->dropping || !moat_list_empty(&s->conns))
		return;
	SSL_CTX_free(s->tls);
	moat_free(s);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct moat_admin_server *s = c->s;

	if (--c->handles > 0)
		return;
	moat_list_remove(&c->link);
	s->nconns--;
	SSL_free(c->ssl);
	moat_free(c->in);
	moat_free(c);
	server_maybe_free(s);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->reading = 0;
	/* pending writes and the shutdown are cancelled; their callbacks run before ours */
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
	uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status < 0 || c->eof) {
		conn_close(c);
		return;
	}
	/* the answer is out; give the client a moment to take it and close first */
	c->shut = 1;
	arm(c, linger_ms);
}

static void start_reading(struct conn *c);

/*
 * After the last answer is queued: close our sending side once it is written, and discard
 * whatever the client still sends until it closes too, or for linger_ms, or LINGER_MAX_BYTES.
 */
static void begin_linger(struct conn *c)
{
	c->state = ST_LINGER;
	if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(c->ssl); /* close_notify: the client need not wait for more */
		ERR_clear_error();
		if (tls_flush(c) != 0) {
			conn_close(c);
			return;
		}
	}
	c->shutdown.data = c;
	if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
		conn_close(c);
		return;
	}
	/* until the answer is written, the client has as long to take it as an idle one */
	arm(c, idle_timeout_ms);
	if (c->eof)
		return;
	start_reading(c);
}

static void linger_read(struct conn *c, ssize_t nread)
{
	if (nread < 0) {
		c->eof = 1;
		if (c->shut) {
			conn_close(c);
			return;
		}
		/* a half-closed client still waits for its answer */
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
		return;
	}
	c->lingered += (size_t)nread;
	if (c->lingered > LINGER_MAX_BYTES)
		conn_close(c);
}

/* ---- answering -------------------------------------------------------------------------- */

static const char *error_name(int status)
{
	switch (status) {
	case 408:
		return "request_timeout";
	case 411:
		return "length_required";
	case 413:
		return "payload_too_large";
	case 414:
		return "uri_too_long";
	case 417:
		return "expectation_failed";
	case 431:
		return "header_fields_too_large";
	case 505:
		return "http_version_not_supported";
	case 500:
		return "internal";
	default:
		return "bad_request";
	}
}

/* Answers a request the server itself refuses, then closes: what follows cannot be trusted
 * to be a request. */
static void refuse(struct conn *c, int status, const char *detail)
{
	char body[256];
	struct moat_line b = {body, 0, sizeof(body), 0};
	struct moat_admin_resp r;

	moat_log_info("admin: request refused: %d %s (remote=%s)", status, detail, c->peer);
	moat_line_printf(&b, "{\"error\":\"%s\",\"detail\":", error_name(status));
	moat_line_json_str(&b, detail, strlen(detail));
	moat_line_raw(&b, "}", 1);
	memset(&r, 0, sizeof(r));
	r.status = status;
	r.body = b.truncated ? NULL : body;
	r.body_len = b.truncated ? 0 : b.len;
	if (send_response(c, &r, 0, 1, 0) != 0) {
		conn_close(c);
		return;
	}
	begin_linger(c);
}

/* A header that must appear at most once; *out is empty if absent. -1 if repeated. */
static int single_header(const struct moat_http_request *req, const char *name,
                         struct moat_slice *out, int *present)
{
	*present = 0;
	*out = (struct moat_slice){NULL, 0};
	for (unsigned i = 0; i < req->nheaders; i++) {
		if (!moat_slice_eq_ci(req->headers[i].name, name))
			continue;
		if (*present)
			return -1;
		*present = 1;
		*out = req->headers[i].value;
	}
	return 0;
}

static char *copy_slice(char **dst, struct moat_slice s)
{
	char *p = *dst;

	memcpy(p, s.p, s.len);
	p[s.len] = '\0';
	*dst += s.len + 1;
	return p;
}

/* The strings of struct moat_admin_req, NUL-terminated in one allocation. */
struct req_strings {
	char *mem;
	const char *method, *target, *authorization, *content_type;
};

/* 0, or the status to refuse the request with (*why says why). Two Authorization headers
 * would leave the handler and a logging proxy in front disagreeing on who asked. */
static int make_strings(const struct moat_http_request *req, struct req_strings *rs,
                        const char **why)
{
	struct moat_slice auth, ctype;
	int has_auth, has_ctype;
	char *p;

	if (single_header(req, "authorization", &auth, &has_auth) != 0) {
		*why = "more than one Authorization header";
		return 400;
	}
	if (single_header(req, "content-type", &ctype, &has_ctype) != 0) {
		*why = "more than one Content-Type header";
		return 400;
	}
	rs->mem = moat_malloc(req->method.len + req->target.len + auth.len + ctype.len + 4);
	if (rs->mem == NULL) {
		*why = "out of memory";
		return 500;
	}
	p = rs->mem;
	rs->method = copy_slice(&p, req->method);
	rs->target = copy_slice(&p, req->target);
	rs->authorization = has_auth ? copy_slice(&p, auth) : NULL;
	rs->content_type = has_ctype ? copy_slice(&p, ctype) : NULL;
	return 0;
}

/* Drops the answered request from the input buffer; what remains is pipelined. */
static void consume_request(struct conn *c)
{
	size_t used = c->head_len + c->body_len;

	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
	c->head_len = c->body_len = 0;
}

/* The request in c->in is complete: answer it. */
static void handle_request(struct conn *c)
{
	struct moat_http_request *req = &c->s->req;
	struct moat_admin_req areq;
	struct moat_admin_resp resp;
	struct req_strings rs;
	const char *err = NULL;
	char *body_end, saved;
	int keep, rc;

	uv_timer_stop(&c->timer);
	/* parsed before, but the buffer may have moved since: the slices are taken again */
	if (moat_http_parse_request(c->in, c->in_len, &limits, req, &err) != MOAT_OK) {
		conn_close(c);
		return;
	}
	rc = make_strings(req, &rs, &err);
	if (rc != 0) {
		refuse(c, rc, err);
		return;
	}
	memset(&areq, 0, sizeof(areq));
	areq.method = rs.method;
	areq.target = rs.target;
	areq.authorization = rs.authorization;
	areq.content_type = rs.content_type;
	areq.has_length = req->framing == MOAT_BODY_LENGTH;
	areq.body = c->in + c->head_len;
	areq.body_len = c->body_len;
	areq.source = c->peer;
	areq.now_ms = unix_ms();
	/* a NUL after the body, for handlers that treat it as text; the byte belongs to a
	 * pipelined request, if any, and is put back (the buffer has room for one more) */
	body_end = c->in + c->head_len + c->body_len;
	saved = *body_end;
	*body_end = '\0';
	memset(&resp, 0, sizeof(resp));
	handler(c->s->ctx, &areq, &resp);
	*body_end = saved;
	moat_log_debug("admin: %s %s -> %d (remote=%s)", rs.method, rs.target, resp.status,
	               c->peer);
	keep = req->keep_alive && !c->s->stopping;
	rc = send_response(c, &resp, req->is_head, req->minor, keep);
	moat_admin_resp_clear(&resp);
	moat_free(rs.mem);
	if (rc != 0) {
		conn_close(c);
		return;
	}
	consume_request(c);
	if (!keep) {
		begin_linger(c);
		return;
	}
	c->state = ST_WRITING;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
	/* a client that does not take its answer is not kept forever */
	arm(c, idle_timeout_ms);
}

/* ---- reading ---------------------------------------------------------------------------- */

/* How many bytes the current state may still read into c->in: a head, or the rest of a
 * body. 0 means the request in the buffer is complete (or refused). */
static size_t input_limit(const struct conn *c)
{
	return c->state == ST_BODY ? c->head_len + c->body_len : HEAD_MAX;
}

/* Room in c->in for the current state, growing the buffer as needed; 0 on a full buffer or
 * when out of memory. One byte more than the limit is kept for the NUL after a body. */
static size_t input_room(struct conn *c)
{
	size_t limit = input_limit(c), want, cap;
	char *p;

	if (c->in_len >= limit)
		return 0;
	want = c->in_len + (limit - c->in_len < READ_CHUNK ? limit - c->in_len : READ_CHUNK) + 1;
	if (want > c->in_cap) {
		cap = c->in_cap * 2 > want ? c->in_cap * 2 : want;
		if (cap > limit + 1)
			cap = limit + 1;
		if (cap < HEAD_MAX + 1 && limit >= HEAD_MAX)
			cap = HEAD_MAX + 1;
		p = moat_realloc(c->in, cap);
		if (p == NULL)
			return 0;
		c->in = p;
		c->in_cap = cap;
	}
	return (c->in_cap - 1 < limit ? c->in_cap - 1 : limit) - c->in_len;
}

/* Takes note of n new bytes at the end of c->in. */
static void appended(struct conn *c, size_t n)
{
	/* the head parser rescans from the start: run it only when a line may have ended or
	 * the limit is reached, so a head trickling in byte by byte costs linear time */
	if (memchr(c->in + c->in_len, '\n', n) != NULL || c->in_len + n >= HEAD_MAX)
		c->head_dirty = 1;
	c->in_len += n;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	size_t room;

	if (c->ssl != NULL || c->state == ST_LINGER) {
		*buf = uv_buf_init(c->s->scratch, sizeof(c->s->scratch));
		return;
	}
	room = input_room(c);
	*buf = uv_buf_init(room > 0 ? c->in + c->in_len : NULL, (unsigned)room);
}

static void start_reading(struct conn *c)
{
	if (c->reading || c->closing)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_close(c);
		return;
	}
	c->reading = 1;
}

/* The client went away (or the socket failed) with no answer pending. */
static void peer_gone(struct conn *c, ssize_t why)
{
	if (c->in_len > 0 || c->state == ST_BODY)
		moat_log_debug("admin: %s closed the connection in the middle of a request (%s)",
		               c->peer, why < 0 ? uv_strerror((int)why) : "end of stream");
	conn_close(c);
}

/* Decrypts buffered TLS records into c->in while there is room. -1: the connection is
 * closed. */
static int tls_pull(struct conn *c)
{
	char why[160];
	size_t room;
	int r, e;

	/* nothing to decrypt: leave an idle connection without an input buffer */
	if (BIO_ctrl_pending(SSL_get_rbio(c->ssl)) == 0 && !SSL_has_pending(c->ssl))
		return 0;
	while ((room = input_room(c)) > 0) {
		ERR_clear_error();
		r = SSL_read(c->ssl, c->in + c->in_len, room > INT32_MAX ? INT32_MAX : (int)room);
		if (r > 0) {
			appended(c, (size_t)r);
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			c->eof = 1;
			break;
		}
		moat_log_debug("admin: TLS read from %s failed: %s", c->peer,
		               ssl_reason(why, sizeof(why)));
		conn_close(c);
		return -1;
	}
	/* reading may have produced records to send (a key update's answer) */
	if (tls_flush(c) != 0) {
		conn_close(c);
		return -1;
	}
	return 0;
}

enum { STEP_MORE, STEP_NEXT, STEP_STOP };

/* ST_HEAD: parses the head once it may be complete and moves to ST_BODY. */
static int head_step(struct conn *c)
{
	struct moat_http_request *req = &c->s->req;
	const char *err = NULL;
	int r;

	if (c->in_len == 0)
		return STEP_MORE;
	if (!c->timing_request) {
		c->timing_request = 1;
		arm(c, request_timeout_ms);
	}
	if (!c->head_dirty)
		return STEP_MORE;
	c->head_dirty = 0;
	r = moat_http_parse_request(c->in, c->in_len, &limits, req, &err);
	if (r == MOAT_EAGAIN) {
		if (c->in_len < HEAD_MAX)
			return STEP_MORE;
		r = MOAT_EINVAL; /* the parser refuses at the limit; never wait on a full buffer */
		req->error_status = 431;
		err = "request head too large";
	}
	if (r != MOAT_OK) {
		refuse(c, req->error_status ? req->error_status : 400,
		       err ? err : "malformed request");
		return STEP_STOP;
	}
	if (req->framing == MOAT_BODY_CHUNKED) {
		refuse(c, 411, "chunked request bodies are not accepted: send a Content-Length");
		return STEP_STOP;
	}
	if (req->framing == MOAT_BODY_LENGTH && req->content_length > MOAT_ADMIN_MAX_BODY) {
		refuse(c, 413, "the request body is over 1 MiB");
		return STEP_STOP;
	}
	c->head_len = req->head_len;
	c->body_len = req->framing == MOAT_BODY_LENGTH ? (size_t)req->content_length : 0;
	c->state = ST_BODY;
	if (req->expect_continue && c->in_len < c->head_len + c->body_len &&
	    send_text(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0) {
		conn_close(c);
		return STEP_STOP;
	}
	return STEP_NEXT;
}

/* Moves the connection on with what has been received: answers a complete request, or reads
 * more. */
static void process(struct conn *c)
{
	for (;;) {
		if (c->closing)
			return;
		if (c->ssl != NULL && tls_pull(c) != 0)
			return;
		if (c->state == ST_HEAD) {
			int r = head_step(c);

			if (r == STEP_STOP)
				return;
			if (r == STEP_NEXT)
				continue; /* the body may be buffered already, or decryptable */
		} else if (c->state == ST_BODY) {
			if (c->in_len >= c->head_len + c->body_len) {
				handle_request(c);
				return;
			}
		} else {
			return;
		}
		/* more bytes are needed */
		if (c->eof) {
			peer_gone(c, 0);
			return;
		}
		start_reading(c);
		return;
	}
}

/* ST_HANDSHAKE: advances the handshake. 0 once done, 1 while under way, -1 after a close. */
static int tls_handshake(struct conn *c)
{
	char why[160];
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (tls_flush(c) != 0) {
		conn_close(c);
		return -1;
	}
	if (r == 1) {
		c->state = ST_HEAD;
		c->timing_request = 0;
		arm(c, idle_timeout_ms);
		return 0;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 1;
	moat_log_info("admin: TLS handshake with %s failed: %s", c->peer,
	              ssl_reason(why, sizeof(why)));
	/* the alert, if any, is queued: let it go out before the close */
	begin_linger(c);
	return -1;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = stream->data;

	if (c->closing || nread == 0)
		return;
	if (c->state == ST_LINGER) {
		linger_read(c, nread);
		return;
	}
	if (nread < 0) {
		peer_gone(c, nread == UV_EOF ? 0 : nread);
		return;
	}
	if (c->ssl == NULL) {
		appended(c, (size_t)nread);
		process(c);
		return;
	}
	if (BIO_write(SSL_get_rbio(c->ssl), buf->base, (int)nread) != (int)nread) {
		conn_close(c);
		return;
	}
	if (c->state == ST_HANDSHAKE && tls_handshake(c) != 0)
		return;
	process(c);
}

/* ---- accepting -------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status);

static void on_drop_closed(uv_handle_t *h)
{
	struct moat_admin_server *s = h->data;

	s->dropping = 0;
	if (s->stopping) {
		server_maybe_free(s);
		return;
	}
	if (s->accept_waiting) {
		s->accept_waiting = 0;
		on_connection((uv_stream_t *)&s->listener, 0);
	}
}

/* Accepts the waiting connection and closes it at once. Until it is closed, libuv holds
 * further connections in the backlog (a connection callback that does not accept pauses
 * the listener), and on_drop_closed takes the next one. */
static void drop_connection(struct moat_admin_server *s, const char *why)
{
	uint64_t now = uv_now(s->loop);

	if (s->dropping) {
		s->accept_waiting = 1;
		return;
	}
	uv_tcp_init(s->loop, &s->drop);
	s->drop.data = s;
	s->dropping = 1;
	(void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&s->drop);
	uv_close((uv_handle_t *)&s->drop, on_drop_closed);
	s->refused_since_log++;
	if (s->refusal_logged_at == 0 || now - s->refusal_logged_at >= REFUSAL_LOG_INTERVAL_MS) {
		moat_log_warn("admin: connection refused: %s (%u refused since the last report)",
		              why, s->refused_since_log);
		s->refusal_logged_at = now;
		s->refused_since_log = 0;
	}
}

static struct conn *conn_new(struct moat_admin_server *s)
{
	struct conn *c = moat_calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->s = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	moat_list_insert_head(&s->conns, &c->link);
	s->nconns++;
	return c;
}

static int conn_start_tls(struct conn *c)
{
	BIO *rb, *wb;

	c->ssl = SSL_new(c->s->tls);
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || rb == NULL || wb == NULL) {
		BIO_free(rb);
		BIO_free(wb);
		ERR_clear_error();
		return -1;
	}
	/* an empty read BIO means "wait for more", not end of stream */
	BIO_set_mem_eof_return(rb, -1);
	SSL_set_bio(c->ssl, rb, wb);
	SSL_set_accept_state(c->ssl);
	return 0;
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct moat_admin_server *s = listener->data;
	struct conn *c;

	if (status < 0) {
		moat_log_warn("admin: accept failed: %s", uv_strerror(status));
		return;
	}
	if (s->stopping)
		return;
	if (s->nconns >= MAX_CONNS) {
		drop_connection(s, "too many connections");
		return;
	}
	c = conn_new(s);
	if (c == NULL) {
		drop_connection(s, "out of memory");
		return;
	}
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	peer_text(c);
	uv_tcp_nodelay(&c->tcp, 1);
	if (s->tls != NULL) {
		if (conn_start_tls(c) != 0) {
			moat_log_error("admin: cannot set up TLS for %s: out of memory", c->peer);
			conn_close(c);
			return;
		}
		c->state = ST_HANDSHAKE;
		arm(c, request_timeout_ms);
	} else {
		c->state = ST_HEAD;
		arm(c, idle_timeout_ms);
	}
	start_reading(c);
}

/* The one deadline of each state has passed. */
static void on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->closing)
		return;
	if ((c->state == ST_HEAD && c->in_len > 0) || c->state == ST_BODY) {
		refuse(c, 408, "the request did not arrive in time");
		return;
	}
	/* idle keep-alive, a handshake or answer not done in time, the end of lingering */
	moat_log_debug("admin: closing the connection of %s: timed out", c->peer);
	conn_close(c);
}

/* ---- start and stop --------------------------------------------------------------------- */

/* *err of moat_admin_server_start: the caller reports it at once, before the next start. */
static _Thread_local char errbuf[512];

static const char *set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *set_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return errbuf;
}

/* "HOST:PORT" with an IPv4 address, or "[IPv6]:PORT". Names are not resolved: the admin
 * address is a decision, not a lookup. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 16];
	const char *port_s, *end;
	unsigned long port;
	size_t hlen;
	int v6 = listen[0] == '[';

	if (v6) {
		end = strchr(listen, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		hlen = (size_t)(end - listen - 1);
		memcpy(host, listen + 1, hlen < sizeof(host) ? hlen : 0);
		port_s = end + 2;
	} else {
		end = strrchr(listen, ':');
		if (end == NULL || memchr(listen, ':', (size_t)(end - listen)) != NULL)
			return -1;
		hlen = (size_t)(end - listen);
		memcpy(host, listen, hlen < sizeof(host) ? hlen : 0);
		port_s = end + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	host[hlen] = '\0';
	if (port_s[0] < '0' || port_s[0] > '9' || strlen(port_s) > 5 ||
	    port_s[strspn(port_s, "0123456789")] != '\0')
		return -1;
	port = strtoul(port_s, NULL, 10);
	if (port > 65535)
		return -1;
	memset(ss, 0, sizeof(*ss));
	if (v6)
		return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0 ? 0 : -1;
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ? 0 : -1;
}

/* Offers http/1.1 when the client asks for ALPN; anything else goes on without ALPN. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char http11[] = "\x08http/1.1";

	if (SSL_select_next_proto((unsigned char **)out, outlen, http11, sizeof(http11) - 1, in,
	                          inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_tls(const char *cert, const char *key, const char **err)
{
	SSL_CTX *t = SSL_CTX_new(TLS_server_method());
	char why[160];

	if (t == NULL || !SSL_CTX_set_min_proto_version(t, TLS1_2_VERSION)) {
		*err = set_err("admin TLS: %s", ssl_reason(why, sizeof(why)));
		SSL_CTX_free(t);
		return NULL;
	}
	SSL_CTX_set_options(t, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                               SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(t, SSL_MODE_RELEASE_BUFFERS);
	/* one request per moatctl run: resumption would only keep state around */
	SSL_CTX_set_session_cache_mode(t, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(t, 0);
	SSL_CTX_set_alpn_select_cb(t, select_alpn, NULL);
	if (SSL_CTX_use_certificate_chain_file(t, cert) != 1) {
		*err = set_err("admin_cert %s: %s", cert, ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t, key, SSL_FILETYPE_PEM) != 1) {
		*err = set_err("admin_key %s: %s", key, ssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(t) != 1) {
		*err = set_err("admin_key %s does not match admin_cert %s", key, cert);
		ERR_clear_error();
		goto fail;
	}
	return t;
fail:
	SSL_CTX_free(t);
	return NULL;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct moat_admin_server *s = h->data;

	s->listening = 0;
	server_maybe_free(s);
}

int moat_admin_server_start(uv_loop_t *loop, struct moat_admin_ctx *ctx, const char *listen,
                            const char *cert, const char *key, const char **err,
                            struct moat_admin_server **out)
{
	struct sockaddr_storage ss;
	struct sockaddr_storage bound;
	struct moat_admin_server *s;
	int len = sizeof(bound), r;

	*out = NULL;
	*err = NULL;
	if (listen == NULL || parse_listen(listen, &ss) != 0) {
		*err = set_err("admin_listen %s: not an address and port (\"127.0.0.1:9900\" or "
		               "\"[::1]:9900\")",
		               listen ? listen : "(none)");
		return MOAT_EINVAL;
	}
	if ((cert == NULL) != (key == NULL)) {
		*err = set_err("admin_cert and admin_key go together: set both or neither");
		return MOAT_EINVAL;
	}
	s = moat_calloc(1, sizeof(*s));
	if (s == NULL) {
		*err = set_err("admin API: out of memory");
		return MOAT_ENOMEM;
	}
	s->loop = loop;
	s->ctx = ctx;
	moat_list_init(&s->conns);
	if (cert != NULL) {
		s->tls = make_tls(cert, key, err);
		if (s->tls == NULL) {
			moat_free(s);
			return MOAT_EINVAL;
		}
	}
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	s->listening = 1;
	/* libuv sets SO_REUSEADDR on every TCP bind: a restart does not wait for TIME_WAIT */
	r = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->listener, BACKLOG, on_connection);
	if (r == 0)
		r = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
	if (r != 0) {
		*err = set_err("admin_listen %s: %s", listen, uv_strerror(r));
		s->stopping = 1;
		uv_close((uv_handle_t *)&s->listener, on_listener_closed);
		return MOAT_EIO;
	}
	s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
	                                            : ((struct sockaddr_in *)&bound)->sin_port);
	moat_log_info("admin API listening on %s%s", listen, s->tls ? " (TLS)" : "");
	*out = s;
	return MOAT_OK;
}

void moat_admin_server_stop(struct moat_admin_server *s)
{
	struct moat_list *l;

	if (s == NULL || s->stopping)
		return;
	s->stopping = 1;
	uv_close((uv_handle_t *)&s->listener, on_listener_closed);
	for (l = s->conns.next; l != &s->conns; l = l->next)
		conn_close(moat_list_entry(l, struct conn, link));
}
