/*
 * TCP connections: a device stream forwarded to the tenant's TCP origin.
 *
 * Like the HTTP proxy, one pump() per connection makes every possible step — read the device,
 * write the origin, read the origin, write the device, pass on a half-close — then waits for
 * exactly the events the blocked steps need. Each direction has one buffer of tcp_buffer
 * bytes: when it is full that side is no longer read, so a device that stops reading stops
 * the origin (TCP back-pressure end to end) and memory per connection stays bounded.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/addr.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/seclog.h"
#include "core/sock.h"
#include "tcp/proxy.h"
#include "tcp/proxy_v2.h"
#include "tls/tls.h"

enum tcp_state {
	TS_HANDSHAKE = 0,
	TS_CONNECTING,
	TS_PROXY_HEADER, /* sending the PROXY header, in clear, before any origin TLS */
	TS_ORIGIN_TLS,
	TS_STREAM,
	TS_CLOSED
};

struct moat_tcp_conn {
	struct moat_conn base; /* first: the worker's list links connections through it */
	struct moat_worker *w;
	enum tcp_state state;
	struct moat_sock dev;
	struct moat_sock org;
	int org_open; /* org initialised (its poll handle must be closed) */
	uv_timer_t timer;
	int open_handles;
	struct moat_gen *gen;
	struct moat_listener *listener; /* in gen */
	struct moat_tenant *tenant; /* in gen */
	struct moat_tls_conn tls;
	struct moat_identity id;
	int tls_on, resumed;
	char listener_name[72];
	char conn_id[17];
	struct sockaddr_storage peer, local;
	char peer_ip[MOAT_ADDR_IP_LEN];
	unsigned peer_port;
	struct moat_buf up; /* device -> origin */
	struct moat_buf down; /* origin -> device */
	unsigned char *pp; /* the PROXY header to send first, or NULL */
	size_t pp_len, pp_sent;
	unsigned dev_eof : 1, org_eof : 1, dev_shut : 1, org_shut : 1, draining : 1;
	uint64_t bytes_up, bytes_down;
	uint64_t t_accept, t_connect, t_last; /* loop ms */
	uint64_t t_start_ns;
	const char *end; /* how the connection ended, for the access log */
	/* counted as connected now (core/stats.h: the objects outlive generations) */
	struct moat_counters *tenant_counters, *device_counters;
};

static void pump(struct moat_tcp_conn *c);
static const struct moat_conn_ops tcp_conn_ops;

static uint64_t now_ms(struct moat_tcp_conn *c)
{
	return uv_now(&c->w->loop);
}

static const char *tenant_name(const struct moat_tcp_conn *c)
{
	return c->tenant ? c->tenant->cfg->name : "";
}

static void access_log(struct moat_tcp_conn *c)
{
	char buf[2048];
	struct moat_line l = {buf, 0, sizeof(buf) - 1, 0};
	char t[40];
	const char *origin =
	        c->tenant && c->tenant->cfg->tcp_origin ? c->tenant->cfg->tcp_origin : "";

	if (!moat_log_access_enabled())
		return;
	moat_line_raw(&l, "{\"time\":\"", 9);
	moat_line_raw(&l, t, moat_log_time(t, sizeof(t)));
	moat_line_printf(&l, "\",\"conn_id\":\"%s\",\"listener\":", c->conn_id);
	moat_line_json_str(&l, c->listener_name, strlen(c->listener_name));
	/* IPv6 addresses in brackets, so the port stays unambiguous */
	moat_line_printf(&l,
	                 strchr(c->peer_ip, ':') ? ",\"remote\":\"[%s]:%u\",\"tenant\":"
	                                         : ",\"remote\":\"%s:%u\",\"tenant\":",
	                 c->peer_ip, c->peer_port);
	moat_line_json_str(&l, tenant_name(c), strlen(tenant_name(c)));
	moat_line_raw(&l, ",\"device\":", 10);
	moat_line_json_str(&l, c->id.device_id, strlen(c->id.device_id));
	moat_line_raw(&l, ",\"origin\":", 10);
	moat_line_json_str(&l, origin, strlen(origin));
	moat_line_printf(&l,
	                 ",\"bytes_up\":%llu,\"bytes_down\":%llu,\"duration_ms\":%.3f,"
	                 "\"end\":\"%s\",\"tls\":\"%s\",\"resumed\":%s}",
	                 (unsigned long long)c->bytes_up, (unsigned long long)c->bytes_down,
	                 (double)(uv_hrtime() - c->t_start_ns) / 1e6, c->end ? c->end : "error",
	                 c->tls_on && c->dev.ssl ? SSL_get_version(c->dev.ssl) : "",
	                 c->resumed ? "true" : "false");
	if (l.truncated)
		return;
	buf[l.len++] = '\n';
	moat_log_access(buf, l.len);
}

static void handle_closed(uv_handle_t *h)
{
	struct moat_tcp_conn *c = h->data;
	struct moat_worker *w = c->w;

	if (--c->open_handles > 0)
		return;
	moat_buf_free(&c->up);
	moat_buf_free(&c->down);
	moat_free(c->pp);
	moat_limits_release(&c->peer);
	moat_gen_release(c->gen);
	moat_free(c);
	moat_worker_conn_closed(w);
}

/* Makes close() send a reset instead of a FIN: how a reset on one side is passed on. */
static void set_reset_on_close(int fd)
{
	struct linger lg = {1, 0};

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Ends the connection. `end` says how; `reset_dev`/`reset_org` abort that side with a RST. */
/* The admin API's counters: a TCP connection counts as one request. */
static void count_start(struct moat_tcp_conn *c)
{
	const struct moat_device_entry *e = moat_tenant_device(c->tenant, c->id.device_id);
	struct timespec ts;

	c->tenant_counters = c->tenant->counters;
	c->device_counters = e != NULL ? e->counters : NULL;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	for (int i = 0; i < 2; i++) {
		struct moat_counters *k = i == 0 ? c->tenant_counters : c->device_counters;

		if (k == NULL)
			continue;
		moat_count(&k->requests, 1);
		atomic_fetch_add_explicit(&k->connected, 1, memory_order_relaxed);
		atomic_store_explicit(&k->last_seen_ms,
		                      (int_fast64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
		                      memory_order_relaxed);
	}
}

static void count_end(struct moat_tcp_conn *c, int blocked)
{
	for (int i = 0; i < 2; i++) {
		struct moat_counters *k = i == 0 ? c->tenant_counters : c->device_counters;

		if (k == NULL)
			continue;
		moat_count(&k->bytes_in, c->bytes_up);
		moat_count(&k->bytes_out, c->bytes_down);
		if (blocked)
			moat_count(&k->blocked, 1);
		atomic_fetch_sub_explicit(&k->connected, 1, memory_order_relaxed);
	}
	c->tenant_counters = c->device_counters = NULL;
}

static void conn_end(struct moat_tcp_conn *c, const char *end, int reset_dev, int reset_org)
{
	if (c->state == TS_CLOSED)
		return;
	count_end(c, strcmp(end, "blocked") == 0 || strcmp(end, "quarantined") == 0);
	if (c->end == NULL)
		c->end = end;
	if (c->state != TS_HANDSHAKE || c->tenant != NULL)
		access_log(c);
	c->state = TS_CLOSED;
	moat_worker_conn_unlink(&c->base);
	c->open_handles = 2 + (c->org_open ? 1 : 0);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
	if (reset_dev) {
		set_reset_on_close(c->dev.fd);
		if (c->dev.ssl != NULL)
			SSL_set_quiet_shutdown(c->dev.ssl, 1);
	}
	moat_sock_close(&c->dev, handle_closed);
	if (c->org_open) {
		if (reset_org) {
			set_reset_on_close(c->org.fd);
			if (c->org.ssl != NULL)
				SSL_set_quiet_shutdown(c->org.ssl, 1);
		}
		moat_sock_close(&c->org, handle_closed);
	}
}

/* ---- towards the origin ----------------------------------------------------------------- */

static int write_proxy_header(struct moat_tcp_conn *c)
{
	struct moat_pp2_info info;
	unsigned char raw[32];
	const unsigned char *fp = NULL;
	int n;

	memset(&info, 0, sizeof(info));
	info.src = &c->peer;
	info.dst = &c->local;
	info.unique_id = c->conn_id;
	info.tenant = tenant_name(c);
	if (c->tls_on) {
		info.ssl = 1;
		info.authority =
		        c->tls.sni; /* as HAProxy sets them: a certificate belongs to the session; it was also
		 * presented on this connection unless the session was resumed */
		info.cert_conn = c->id.has_cert && !c->resumed;
		info.cert_sess = c->id.has_cert;
		info.cert_verified = c->id.status == MOAT_CERT_SUCCESS;
		info.tls_version = SSL_get_version(c->dev.ssl);
		info.cipher = SSL_get_cipher_name(c->dev.ssl);
		info.cn = c->id.device_id;
		if (c->id.has_cert) {
			for (int i = 0; i < 32; i++) {
				unsigned hi = (unsigned)c->id.fingerprint[2 * i],
				         lo = (unsigned)c->id.fingerprint[2 * i + 1];

				hi = hi <= '9' ? hi - '0' : hi - 'a' + 10;
				lo = lo <= '9' ? lo - '0' : lo - 'a' + 10;
				raw[i] = (unsigned char)(hi << 4 | lo);
			}
			fp = raw;
			info.cert_serial = c->id.serial;
		}
		info.cert_sha256 = fp;
	}
	c->pp = moat_malloc(MOAT_PP2_MAX_HEADER);
	if (c->pp == NULL)
		return MOAT_ENOMEM;
	/* An unencodable value is an error, never a reason to fall back to a LOCAL header:
	 * that would present moatd's own address to the origin as the client's. */
	n = moat_pp2_encode(&info, c->pp, MOAT_PP2_MAX_HEADER);
	if (n < 0)
		return n;
	c->pp_len = (size_t)n;
	return MOAT_OK;
}

/* The tenant's TCP rules, once per connection, before the origin is contacted. Returns -1
 * when a rule ended the connection. */
static int apply_rules(struct moat_tcp_conn *c)
{
	const struct moat_ruleset *rs = c->tenant->tcp_rules;
	struct moat_seclog_ctx log = {c->listener_name,
	                              tenant_name(c),
	                              c->id.device_id,
	                              c->peer_ip,
	                              c->peer_port,
	                              NULL,
	                              NULL,
	                              c->conn_id};
	struct moat_rules_input in;
	struct moat_rules_scratch scratch;
	struct moat_rules_verdict v;

	if (rs == NULL)
		return 0;
	if (moat_worker_rules_scratch(c->w, c->tenant->tcp_rules_scratch, &scratch) != MOAT_OK) {
		conn_end(c, "error", 0, 0);
		return -1;
	}
	memset(&in, 0, sizeof(in));
	in.src = &c->peer;
	in.tls_version = c->tls_on ? SSL_get_version(c->dev.ssl) : NULL;
	in.sni = c->tls.sni;
	in.client_verified = c->id.status == MOAT_CERT_SUCCESS;
	in.fingerprint = c->id.fingerprint;
	in.serial = c->id.serial;
	in.tenant = tenant_name(c);
	in.device_id = c->id.device_id;
	in.device = moat_devices_find(c->tenant->devices, c->id.device_id);
	moat_rules_eval(rs, &in, &scratch, moat_seclog_hit, &log, &v);
	if (v.rule != NULL && (v.action == MOAT_RULE_BLOCK || v.action == MOAT_RULE_CLOSE)) {
		conn_end(c, "blocked", 0, 0);
		return -1;
	}
	return 0;
}

static void start_origin(struct moat_tcp_conn *c)
{
	const struct moat_tenant *t = c->tenant;
	const struct moat_config_tenant *tc = t->cfg;
	int fd, one = 1;

	count_start(c);
	if (t->devices != NULL) {
		const struct moat_device_entry *e = moat_tenant_device(t, c->id.device_id);

		if (e != NULL && e->state == MOAT_DEVICE_QUARANTINED) {
			moat_log_info("tcp connection %s refused: device %s of tenant %s is "
			              "quarantined",
			              c->conn_id, c->id.device_id, tc->name);
			conn_end(c, "quarantined", 0, 0);
			return;
		}
	}
	if (apply_rules(c) < 0)
		return;
	if (t->tcp_origin_addrlen == 0) {
		moat_log_warn("tenant %s has no tcp_origin: closing connection from %s:%u",
		              tc->name, c->peer_ip, c->peer_port);
		conn_end(c, "origin_unreachable", 0, 0);
		return;
	}
	socklen_t llen = sizeof(c->local);
	if (getsockname(c->dev.fd, (struct sockaddr *)&c->local, &llen) < 0)
		memset(&c->local, 0, sizeof(c->local));
	fd = socket(t->tcp_origin_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (moat_sock_init(&c->org, &c->w->loop, fd, c) != MOAT_OK) {
		close(fd);
		goto fail;
	}
	c->org_open = 1;
	if (connect(fd, (const struct sockaddr *)&t->tcp_origin_addr, t->tcp_origin_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		moat_log_warn("tcp origin %s for tenant %s unreachable: connect: %s (conn_id=%s "
		              "device=%s)",
		              tc->tcp_origin, tc->name, strerror(errno), c->conn_id,
		              c->id.device_id[0] ? c->id.device_id : "-");
		conn_end(c, "origin_unreachable", 0, 0);
		return;
	}
	if (tc->tcp_origin_scheme == MOAT_ORIGIN_TLS) {
		c->org.ssl = moat_tls_client_new(t->origin_ctx, fd, tc->tcp_origin_host);
		if (c->org.ssl == NULL)
			goto fail;
	}
	if (tc->proxy_protocol == MOAT_PP_V2 && write_proxy_header(c) != MOAT_OK) {
		moat_log_error("cannot encode the PROXY header (conn_id=%s)", c->conn_id);
		conn_end(c, "error", 0, 0);
		return;
	}
	c->state = TS_CONNECTING;
	c->t_connect = now_ms(c);
	return;
fail:
	moat_log_error("cannot open a connection to tcp origin %s: %s", tc->tcp_origin,
	               strerror(errno));
	conn_end(c, "error", 0, 0);
}

static int connect_step(struct moat_tcp_conn *c)
{
	const struct moat_config_tenant *tc = c->tenant->cfg;

	if (c->state == TS_CONNECTING) {
		if (connect(c->org.fd, (const struct sockaddr *)&c->tenant->tcp_origin_addr,
		            c->tenant->tcp_origin_addrlen) < 0 &&
		    errno != EISCONN) {
			if (errno == EALREADY || errno == EINPROGRESS || errno == EINTR)
				return 0;
			moat_log_warn("tcp origin %s for tenant %s unreachable: connect: %s "
			              "(conn_id=%s device=%s)",
			              tc->tcp_origin, tc->name, strerror(errno), c->conn_id,
			              c->id.device_id[0] ? c->id.device_id : "-");
			conn_end(c, "origin_unreachable", 0, 0);
			return -1;
		}
		c->state = c->pp != NULL        ? TS_PROXY_HEADER
		           : c->org.ssl != NULL ? TS_ORIGIN_TLS
		                                : TS_STREAM;
		c->t_last = now_ms(c);
		return 1;
	}
	if (c->state == TS_PROXY_HEADER) {
		ssize_t n =
		        send(c->org.fd, c->pp + c->pp_sent, c->pp_len - c->pp_sent, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			conn_end(c, "origin_reset", 1, 0);
			return -1;
		}
		c->pp_sent += (size_t)n;
		if (c->pp_sent < c->pp_len)
			return 0;
		moat_free(c->pp);
		c->pp = NULL;
		c->state = c->org.ssl != NULL ? TS_ORIGIN_TLS : TS_STREAM;
		return 1;
	}
	if (c->state == TS_ORIGIN_TLS) {
		int r = moat_sock_handshake(&c->org);

		if (r == MOAT_EAGAIN)
			return 0;
		if (r != MOAT_OK) {
			moat_log_warn("tcp origin %s for tenant %s: TLS handshake failed: %s "
			              "(conn_id=%s)",
			              tc->tcp_origin, tc->name,
			              moat_tls_client_error(c->org.ssl, c->org.ssl_err),
			              c->conn_id);
			conn_end(c, "origin_tls_failed", 0, 0);
			return -1;
		}
		c->state = TS_STREAM;
		c->t_last = now_ms(c);
		return 1;
	}
	return 0;
}

/* ---- the stream ------------------------------------------------------------------------- */

/* Reads from `from` into b. Returns 1 on progress, 0 when blocked, -1 at the end of the
 * stream (*eof set), -2 on an error (a reset). */
static int read_into(struct moat_tcp_conn *c, struct moat_sock *from, struct moat_buf *b,
                     uint64_t *count)
{
	ssize_t n;

	if (moat_buf_prepare(b) != MOAT_OK)
		return -2;
	if (moat_buf_room(b) == 0)
		return 0;
	n = moat_sock_read(from, moat_buf_tail(b), moat_buf_room(b));
	if (n == MOAT_EAGAIN)
		return 0;
	if (n == 0)
		return -1;
	if (n < 0)
		return -2;
	b->end += (size_t)n;
	*count += (uint64_t)n;
	c->t_last = now_ms(c);
	return 1;
}

static int write_from(struct moat_tcp_conn *c, struct moat_sock *to, struct moat_buf *b)
{
	ssize_t n = moat_sock_write(to, moat_buf_head(b), moat_buf_len(b));

	if (n == MOAT_EAGAIN)
		return 0;
	if (n < 0)
		return -2;
	moat_buf_consume(b, (size_t)n);
	c->t_last = now_ms(c);
	return 1;
}

static int stream_step(struct moat_tcp_conn *c)
{
	int progress = 0, r;

	/* device -> buffer (also while the origin connection is being set up) */
	if (!c->dev_eof) {
		r = read_into(c, &c->dev, &c->up, &c->bytes_up);
		if (r == -2) {
			conn_end(c, "device_reset", 0, 1);
			return -1;
		}
		if (r == -1)
			c->dev_eof = 1;
		progress |= r != 0;
	}
	if (c->state != TS_STREAM)
		return progress;
	if (moat_buf_len(&c->up) > 0) {
		r = write_from(c, &c->org, &c->up);
		if (r == -2) {
			conn_end(c, "origin_reset", 1, 0);
			return -1;
		}
		progress |= r;
	}
	if (c->dev_eof && moat_buf_len(&c->up) == 0 && !c->org_shut) {
		moat_sock_shutdown_write(&c->org); /* pass the device's FIN on */
		c->org_shut = 1;
		progress = 1;
	}
	if (!c->org_eof) {
		r = read_into(c, &c->org, &c->down, &c->bytes_down);
		if (r == -2) {
			conn_end(c, "origin_reset", 1, 0);
			return -1;
		}
		if (r == -1)
			c->org_eof = 1;
		progress |= r != 0;
	}
	if (moat_buf_len(&c->down) > 0) {
		r = write_from(c, &c->dev, &c->down);
		if (r == -2) {
			conn_end(c, "device_reset", 0, 1);
			return -1;
		}
		progress |= r;
	}
	if (c->org_eof && moat_buf_len(&c->down) == 0 && !c->dev_shut) {
		moat_sock_shutdown_write(&c->dev); /* pass the origin's FIN on */
		c->dev_shut = 1;
		progress = 1;
	}
	if (c->dev_shut && c->org_shut) {
		conn_end(c, "closed", 0, 0);
		return -1;
	}
	return progress;
}

static int do_handshake(struct moat_tcp_conn *c)
{
	const struct moat_peer peer = {c->listener_name, c->peer_ip, c->peer_port};
	int r = moat_tls_device_handshake(&c->dev, &c->tls, &c->id, &peer, &c->resumed);

	if (r == MOAT_EAGAIN)
		return 0;
	if (r != MOAT_OK) {
		c->w->stats.handshakes_failed++;
		conn_end(c, "refused", 0, 0);
		return -1;
	}
	c->tenant = c->tls.tenant;
	start_origin(c);
	return c->state == TS_CLOSED ? -1 : 1;
}

/* ---- events ----------------------------------------------------------------------------- */

static void poll_cb(uv_poll_t *h, int status, int events)
{
	pump(h->data);
}

static void update_watch(struct moat_tcp_conn *c)
{
	int ev = 0;

	if (c->state == TS_HANDSHAKE) {
		moat_sock_watch(&c->dev, c->dev.hs_wait, poll_cb);
		return;
	}
	/* an idle stream holds no buffer memory (the worker's buffer cache makes this cheap) */
	moat_buf_release_if_empty(&c->up);
	moat_buf_release_if_empty(&c->down);
	if (!c->dev_eof && (c->up.data == NULL || moat_buf_room(&c->up) > 0))
		ev |= c->dev.rd_wait;
	if (moat_buf_len(&c->down) > 0)
		ev |= c->dev.wr_wait;
	moat_sock_watch(&c->dev, ev, poll_cb);
	if (!c->org_open)
		return;
	ev = 0;
	if (c->state == TS_CONNECTING || c->state == TS_PROXY_HEADER)
		ev = UV_WRITABLE;
	else if (c->state == TS_ORIGIN_TLS)
		ev = c->org.hs_wait;
	else {
		if (!c->org_eof && (c->down.data == NULL || moat_buf_room(&c->down) > 0))
			ev |= c->org.rd_wait;
		if (moat_buf_len(&c->up) > 0)
			ev |= c->org.wr_wait;
	}
	moat_sock_watch(&c->org, ev, poll_cb);
}

static uint64_t deadline(struct moat_tcp_conn *c)
{
	const struct moat_config *cfg = c->gen->cfg;

	switch (c->state) {
	case TS_HANDSHAKE:
		return c->t_accept + cfg->handshake_timeout;
	case TS_CONNECTING:
	case TS_PROXY_HEADER:
	case TS_ORIGIN_TLS:
		return c->t_connect + cfg->origin_connect_timeout;
	case TS_STREAM:
		return c->t_last + cfg->tcp_idle_timeout;
	default:
		return UINT64_MAX;
	}
}

static void timer_cb(uv_timer_t *t)
{
	struct moat_tcp_conn *c = t->data;

	if (deadline(c) > now_ms(c)) {
		pump(c);
		return;
	}
	switch (c->state) {
	case TS_HANDSHAKE:
		moat_log_info("tls handshake timed out: listener=%s remote=%s:%u", c->listener_name,
		              c->peer_ip, c->peer_port);
		conn_end(c, "handshake_timeout", 0, 0);
		break;
	case TS_CONNECTING:
	case TS_PROXY_HEADER:
	case TS_ORIGIN_TLS:
		moat_log_warn("tcp origin %s for tenant %s: connect timed out after %llu ms "
		              "(conn_id=%s)",
		              c->tenant->cfg->tcp_origin, tenant_name(c),
		              (unsigned long long)c->gen->cfg->origin_connect_timeout, c->conn_id);
		conn_end(c, "origin_connect_timeout", 0, 0);
		break;
	default:
		conn_end(c, "idle_timeout", 0, 0);
		break;
	}
}

/*
 * A stream's budget per wake-up: each pass moves up to a buffer (tcp_buffer, 64 KiB by
 * default) each way. Fewer passes than HTTP's: with a hundred busy streams a worker's loop
 * turn moves up to passes x 100 buffers before it polls again, and a new connection needs a
 * few turns to complete its handshake.
 */
#define TCP_PUMP_MAX_PASSES 2

static void pump(struct moat_tcp_conn *c)
{
	int r, passes = 0;
	uint64_t d, now;

	for (;;) {
		switch (c->state) {
		case TS_HANDSHAKE:
			r = do_handshake(c);
			break;
		case TS_CONNECTING:
		case TS_PROXY_HEADER:
		case TS_ORIGIN_TLS:
			r = connect_step(c);
			if (r >= 0 && c->state != TS_CLOSED) {
				int st = stream_step(c);

				r = st < 0 ? -1 : (r | st);
			}
			break;
		case TS_STREAM:
			r = stream_step(c);
			break;
		default:
			return;
		}
		if (r <= 0 || c->state == TS_CLOSED || ++passes == TCP_PUMP_MAX_PASSES)
			break;
	}
	if (c->state == TS_CLOSED)
		return;
	update_watch(c);
	d = deadline(c);
	now = now_ms(c);
	/* more to do: come back after the loop has served everyone else once (OpenSSL may hold
	 * decrypted bytes no poll event would announce) */
	uv_timer_start(&c->timer, timer_cb,
	               passes == TCP_PUMP_MAX_PASSES ? MOAT_PUMP_AGAIN_MS : (d > now ? d - now : 0),
	               0);
}

/* ---- worker hooks ----------------------------------------------------------------------- */

static void tcp_drain(struct moat_conn *base)
{
	struct moat_tcp_conn *c = (struct moat_tcp_conn *)base;

	/* Streams have no request boundary to stop at: they flow until the drain deadline. */
	c->draining = 1;
	if (c->state == TS_HANDSHAKE)
		conn_end(c, "shutdown", 0, 0);
}

static void tcp_close(struct moat_conn *base)
{
	conn_end((struct moat_tcp_conn *)base, "shutdown", 0, 0);
}

/* A reload: the device's tenant must still exist, trust it the same way, and not have revoked
 * its certificate; otherwise the stream ends now. */
static void tcp_gen_changed(struct moat_conn *base)
{
	struct moat_tcp_conn *c = (struct moat_tcp_conn *)base;
	struct moat_gen *cur = c->w->gen;
	struct moat_tenant *t;
	X509 *cert;

	if (c->gen == cur || c->tenant == NULL || c->state == TS_CLOSED)
		return;
	t = moat_gen_tenant_by_name(cur, c->tenant->cfg->name);
	if (t == NULL) {
		moat_log_info("closing tcp connection %s: tenant %s was removed", c->conn_id,
		              tenant_name(c));
		conn_end(c, "tenant_removed", 0, 0);
		return;
	}
	cert = c->tls_on && c->dev.ssl ? SSL_get0_peer_certificate(c->dev.ssl) : NULL;
	if (c->tls_on && moat_tenant_refusal(t, cert, c->id.device_id) != NULL) {
		moat_log_warn("closing tcp connection %s: device %s of tenant %s: %s (serial %s)",
		              c->conn_id, c->id.device_id[0] ? c->id.device_id : "-", t->cfg->name,
		              moat_tenant_refusal(t, cert, c->id.device_id), c->id.serial);
		conn_end(c, "revoked", 0, 0);
		return;
	}
	if (c->tls_on && moat_tenant_device(t, c->id.device_id) != NULL &&
	    moat_tenant_device(t, c->id.device_id)->state == MOAT_DEVICE_QUARANTINED) {
		moat_log_info("closing tcp connection %s: device %s of tenant %s is quarantined",
		              c->conn_id, c->id.device_id, t->cfg->name);
		conn_end(c, "quarantined", 0, 0);
		return;
	}
	if (c->tls_on &&
	    memcmp(t->trust_digest, c->tenant->trust_digest, sizeof(t->trust_digest)) != 0) {
		moat_log_info("closing tcp connection %s: tenant %s changed its device trust "
		              "settings",
		              c->conn_id, t->cfg->name);
		conn_end(c, "policy_changed", 0, 0);
		return;
	}
	/* Keep streaming under the new generation; the old one can then be freed. The origin
	 * address stays what it was: an open stream is not moved. */
	moat_gen_ref(cur);
	moat_gen_release(c->gen);
	c->gen = cur;
	c->tenant = t;
	c->listener = NULL;
}

static const struct moat_conn_ops tcp_conn_ops = {tcp_drain, tcp_close, tcp_gen_changed};

void moat_tcp_accept(struct moat_worker *w, struct moat_listener *l, int fd,
                     const struct sockaddr_storage *addr)
{
	struct moat_tcp_conn *c = moat_calloc(1, sizeof(*c));
	const struct moat_config *cfg = w->gen->cfg;

	if (c == NULL || moat_sock_init(&c->dev, &w->loop, fd, c) != MOAT_OK) {
		moat_free(c);
		close(fd);
		moat_limits_release(addr);
		return;
	}
	c->w = w;
	c->peer = *addr;
	c->peer_port = moat_addr_format(addr, c->peer_ip);
	snprintf(c->listener_name, sizeof(c->listener_name), "%s", l->cfg->name);
	moat_worker_request_id(w, c->conn_id);
	moat_gen_ref(w->gen);
	c->gen = w->gen;
	c->listener = l;
	c->tls_on = l->cfg->tls;
	moat_buf_init(&c->up, cfg->tcp_buffer);
	moat_buf_init(&c->down, cfg->tcp_buffer);
	uv_timer_init(&w->loop, &c->timer);
	c->timer.data = c;
	c->t_accept = c->t_last = now_ms(c);
	c->t_start_ns = uv_hrtime();
	moat_worker_conn_add(w, &c->base, &tcp_conn_ops);
	if (c->tls_on) {
		c->dev.ssl = SSL_new(l->ssl_ctx);
		if (c->dev.ssl == NULL || SSL_set_fd(c->dev.ssl, fd) != 1) {
			ERR_clear_error();
			conn_end(c, "error", 0, 0);
			return;
		}
		SSL_set_accept_state(c->dev.ssl);
		c->tls.listener = l;
		moat_tls_conn_attach(c->dev.ssl, &c->tls);
		c->state = TS_HANDSHAKE;
	} else {
		/* plain TCP: no identity; the listener's tenant says where the bytes go */
		c->tenant = l->default_tenant;
		if (c->tenant == NULL) {
			conn_end(c, "error", 0, 0);
			return;
		}
		start_origin(c);
		if (c->state == TS_CLOSED)
			return;
	}
	pump(c);
}
