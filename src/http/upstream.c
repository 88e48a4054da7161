/*
 * Connections to origins and the per-worker pool of idle ones.
 *
 * A pooled connection is watched for readability: an origin that closes it, or sends anything
 * unasked, gets it closed at once, so a request rarely meets a dead keep-alive connection —
 * without a system call per request to check (the event loop already does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/proxy.h"

#define UPSTREAM_IN_CAP (64 * 1024)
#define UPSTREAM_OUT_MIN (64 * 1024)
#define POOL_IDLE_MS 30000 /* below the 60-75 s keep-alive timeouts of common origins */

static void upstream_closed(uv_handle_t *h)
{
	struct moat_upstream *u = h->data;

	moat_buf_free(&u->in);
	moat_buf_free(&u->out);
	moat_free(u);
}

static void upstream_close(struct moat_upstream *u)
{
	if (u->closing)
		return;
	u->closing = 1;
	if (u->owner == NULL) {
		moat_list_remove(&u->link);
		u->w->nidle--;
	}
	moat_sock_close(&u->sock, upstream_closed);
}

static void upstream_poll_cb(uv_poll_t *h, int status, int events)
{
	struct moat_upstream *u = h->data;

	if (u->owner != NULL) {
		moat_http_conn_upstream_event(u->owner);
		return;
	}
	/* Idle in the pool: any event means the origin closed it or misbehaves. */
	upstream_close(u);
}

void moat_upstream_watch(struct moat_upstream *u, int events)
{
	moat_sock_watch(&u->sock, events, upstream_poll_cb);
}

static struct moat_upstream *pool_take(struct moat_worker *w, const char *key)
{
	struct moat_list *it, *next;

	for (it = w->idle_upstreams.next; it != &w->idle_upstreams; it = next) {
		struct moat_upstream *u = moat_list_entry(it, struct moat_upstream, link);

		next = it->next;
		if (strcmp(u->key, key) != 0)
			continue;
		moat_list_remove(&u->link);
		w->nidle--;
		return u;
	}
	return NULL;
}

/* Room for the largest request head the limits admit, plus our identity headers. */
static size_t out_capacity(const struct moat_worker *w)
{
	size_t cap = w->gen->cfg->max_header_size + 8192;

	return cap < UPSTREAM_OUT_MIN ? UPSTREAM_OUT_MIN : cap;
}

struct moat_upstream *moat_upstream_get(struct moat_worker *w, const struct moat_tenant *t,
                                        struct moat_http_conn *owner, const char **err)
{
	struct moat_upstream *u = pool_take(w, t->origin_key);

	if (u == NULL)
		return moat_upstream_connect(w, t, owner, err);
	u->owner = owner;
	u->reused = 1;
	moat_buf_init(&u->out, out_capacity(w)); /* pooled connections hold no buffers */
	return u;
}

struct moat_upstream *moat_upstream_connect(struct moat_worker *w, const struct moat_tenant *t,
                                            struct moat_http_conn *owner, const char **err)
{
	struct moat_upstream *u;
	int fd;

	fd = socket(t->origin_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = strerror(errno);
		return NULL;
	}
	if (t->origin_addr.ss_family != AF_UNIX) {
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(fd, (const struct sockaddr *)&t->origin_addr, t->origin_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		*err = strerror(errno);
		close(fd);
		return NULL;
	}
	u = moat_calloc(1, sizeof(*u));
	if (u == NULL) {
		*err = "out of memory";
		close(fd);
		return NULL;
	}
	u->w = w;
	u->owner = owner;
	moat_list_init(&u->link);
	snprintf(u->key, sizeof(u->key), "%s", t->origin_key);
	moat_buf_init(&u->in, UPSTREAM_IN_CAP);
	moat_buf_init(&u->out, out_capacity(w));
	if (moat_sock_init(&u->sock, &w->loop, fd, u) != MOAT_OK) {
		*err = "cannot watch socket";
		close(fd);
		moat_free(u);
		return NULL;
	}
	u->state = UP_CONNECTING;
	u->addr = t->origin_addr;
	u->addrlen = t->origin_addrlen;
	if (t->cfg->origin_scheme == MOAT_ORIGIN_HTTPS &&
	    (u->sock.ssl = moat_tls_client_new(t->origin_ctx, fd, t->cfg->origin_host)) == NULL) {
		*err = "cannot set up TLS to the origin";
		u->owner = NULL;
		u->closing = 1;
		moat_sock_close(&u->sock, upstream_closed);
		return NULL;
	}
	return u;
}

int moat_upstream_connect_done(struct moat_upstream *u, const char **err)
{
	/* Asking connect() again is the portable way to learn how a non-blocking connect
	 * ended: 0 or EISCONN when established, EALREADY while in progress. */
	if (connect(u->sock.fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0 &&
	    errno != EISCONN) {
		if (errno == EALREADY || errno == EINPROGRESS || errno == EINTR)
			return MOAT_EAGAIN;
		*err = strerror(errno);
		return MOAT_EIO;
	}
	u->state = u->sock.ssl != NULL ? UP_TLS : UP_READY;
	return MOAT_OK;
}

void moat_upstream_release(struct moat_upstream *u, int reusable)
{
	struct moat_worker *w = u->w;
	unsigned same = 0;
	struct moat_list *it;

	if (u->closing)
		return;
	if (reusable && !w->draining && u->state == UP_READY && moat_buf_len(&u->in) == 0 &&
	    moat_buf_len(&u->out) == 0) {
		for (it = w->idle_upstreams.next; it != &w->idle_upstreams; it = it->next)
			if (strcmp(moat_list_entry(it, struct moat_upstream, link)->key, u->key) ==
			    0)
				same++;
		if (same < w->gen->cfg->origin_keepalive) {
			u->owner = NULL;
			u->idle_since = uv_now(&w->loop);
			moat_buf_free(&u->in);
			moat_buf_free(&u->out);
			moat_list_insert_head(&w->idle_upstreams, &u->link);
			w->nidle++;
			moat_upstream_watch(u, UV_READABLE);
			return;
		}
	}
	u->owner = NULL;
	u->closing = 1;
	moat_sock_close(&u->sock, upstream_closed);
}

void moat_http_pool_expire(struct moat_worker *w, uint64_t now)
{
	struct moat_list *it, *next;

	for (it = w->idle_upstreams.next; it != &w->idle_upstreams; it = next) {
		struct moat_upstream *u = moat_list_entry(it, struct moat_upstream, link);

		next = it->next;
		if (now - u->idle_since >= POOL_IDLE_MS)
			upstream_close(u);
	}
}

void moat_http_pool_close_all(struct moat_worker *w)
{
	while (!moat_list_empty(&w->idle_upstreams))
		upstream_close(moat_list_entry(w->idle_upstreams.next, struct moat_upstream, link));
}
