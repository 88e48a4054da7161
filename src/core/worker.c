#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/proxy.h"
#include "tcp/proxy.h"

#define ACCEPT_BATCH 64
#define LISTEN_BACKLOG 4096

static void listen_cb(uv_poll_t *h, int status, int events);

static int open_listen_fd(const struct moat_config_listener *c)
{
	int fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (c->addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&c->addr, c->addrlen) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;
fail : {
	int e = errno;

	close(fd);
	errno = e;
}
	return -1;
}

static void listen_closed(uv_handle_t *h)
{
	struct moat_listen *ls = h->data;

	moat_free(ls);
}

static void listen_close(struct moat_listen *ls)
{
	if (ls->closing)
		return;
	ls->closing = 1;
	moat_list_remove(&ls->link);
	uv_close((uv_handle_t *)&ls->poll, listen_closed);
	close(ls->fd);
}

static int listen_open(struct moat_worker *w, struct moat_listener *l)
{
	struct moat_listen *ls = moat_calloc(1, sizeof(*ls));

	if (ls == NULL)
		return MOAT_ENOMEM;
	ls->w = w;
	ls->listener = l;
	snprintf(ls->bind, sizeof(ls->bind), "%s", l->cfg->bind);
	ls->fd = open_listen_fd(l->cfg);
	if (ls->fd < 0) {
		moat_log_error("listener %s: cannot listen on %s: %s", l->cfg->name, l->cfg->bind,
		               strerror(errno));
		moat_free(ls);
		return MOAT_EIO;
	}
	if (uv_poll_init(&w->loop, &ls->poll, ls->fd) != 0) {
		close(ls->fd);
		moat_free(ls);
		return MOAT_EIO;
	}
	ls->poll.data = ls;
	moat_list_insert_head(&w->listens, &ls->link);
	uv_poll_start(&ls->poll, UV_READABLE, listen_cb);
	return MOAT_OK;
}

/* Matches the worker's sockets to the listeners of its (new) generation: kept sockets keep
 * their queue of pending connections, so a reload never resets a connecting device. */
static int sync_listens(struct moat_worker *w)
{
	struct moat_gen *g = w->gen;
	struct moat_list *it, *next;
	int rc = MOAT_OK;

	for (it = w->listens.next; it != &w->listens; it = next) {
		struct moat_listen *ls = moat_list_entry(it, struct moat_listen, link);

		next = it->next;
		ls->listener = NULL;
		for (size_t i = 0; i < g->nlisteners; i++)
			if (strcmp(g->listeners[i].cfg->bind, ls->bind) == 0)
				ls->listener = &g->listeners[i];
		if (ls->listener == NULL)
			listen_close(ls);
	}
	for (size_t i = 0; i < g->nlisteners; i++) {
		int found = 0;

		for (it = w->listens.next; it != &w->listens; it = it->next)
			if (moat_list_entry(it, struct moat_listen, link)->listener ==
			    &g->listeners[i])
				found = 1;
		if (!found && listen_open(w, &g->listeners[i]) != MOAT_OK)
			rc = MOAT_EIO;
	}
	return rc;
}

/* Source address lists: deny wins; a non-empty allow list admits only its ranges. */
static int source_allowed(const struct moat_config_listener *l, const struct sockaddr_storage *a)
{
	if (l->ndeny > 0 && moat_cidr_match(l->deny, l->ndeny, a))
		return 0;
	return l->nallow == 0 || moat_cidr_match(l->allow, l->nallow, a);
}

static void listen_cb(uv_poll_t *h, int status, int events)
{
	struct moat_listen *ls = h->data;
	struct moat_worker *w = ls->w;

	for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
		struct sockaddr_storage addr;
		socklen_t alen = sizeof(addr);
		int fd = accept4(ls->fd, (struct sockaddr *)&addr, &alen,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		const struct moat_config *cfg = w->gen->cfg;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: stop accepting for a moment instead of
				 * spinning on a socket that stays readable. The tick restarts it. */
				moat_log_error("accept on %s: %s; pausing accepts", ls->bind,
				               strerror(errno));
				uv_poll_stop(&ls->poll);
			}
			return;
		}
		if (!source_allowed(ls->listener->cfg, &addr)) {
			uint64_t now = uv_now(&w->loop);

			w->stats.refused_acl++;
			if (now - w->last_acl_log >= 1000) {
				w->last_acl_log = now;
				{
					char ip[MOAT_ADDR_IP_LEN];
					unsigned port = moat_addr_format(&addr, ip);

					moat_log_warn(
					        "listener %s: connection from %s:%u refused: "
					        "source "
					        "outside the allow/deny lists (further refusals "
					        "this second are not logged)",
					        ls->listener->cfg->name, ip, port);
				}
			}
			close(fd);
			continue;
		}
		if (moat_limits_acquire(&addr, cfg->max_connections, cfg->max_connections_per_ip) !=
		    MOAT_OK) {
			uint64_t now = uv_now(&w->loop);

			w->stats.refused_limits++;
			if (now - w->last_limit_log >= 1000) {
				w->last_limit_log = now;
				moat_log_warn(
				        "connection limit reached on %s (max_connections=%u, "
				        "max_connections_per_ip=%u): refusing new connections",
				        ls->bind, cfg->max_connections,
				        cfg->max_connections_per_ip);
			}
			close(fd);
			continue;
		}
		w->stats.accepted++;
		if (ls->listener->cfg->protocol == MOAT_PROTO_TCP)
			moat_tcp_accept(w, ls->listener, fd, &addr);
		else
			moat_http_accept(w, ls->listener, fd, &addr);
	}
}

static void finish_if_drained(struct moat_worker *w)
{
	if (!w->draining || w->nconns > 0 || w->finished)
		return;
	w->finished = 1;
	moat_http_pool_close_all(w);
	uv_close((uv_handle_t *)&w->tick, NULL);
	/* The wake handle stays open (only unreferenced, so the loop can end) until the control
	 * thread has joined this thread: it may still signal us, and a closed async handle
	 * would make that abort. moat_worker_destroy closes it. */
	uv_unref((uv_handle_t *)&w->wake);
}

void moat_worker_conn_add(struct moat_worker *w, struct moat_conn *c,
                          const struct moat_conn_ops *ops)
{
	c->ops = ops;
	moat_list_insert_head(&w->conns, &c->link);
	w->nconns++;
}

void moat_worker_conn_unlink(struct moat_conn *c)
{
	moat_list_remove(&c->link);
}

void moat_worker_conn_closed(struct moat_worker *w)
{
	w->nconns--;
	finish_if_drained(w);
}

/* Calls op on every connection; op may close (and so unlink) the connection it is given. */
static void each_conn(struct moat_worker *w, int which)
{
	struct moat_list *it, *next;

	for (it = w->conns.next; it != &w->conns; it = next) {
		struct moat_conn *c = moat_list_entry(it, struct moat_conn, link);

		next = it->next;
		if (which == 0)
			c->ops->drain(c);
		else
			c->ops->gen_changed(c);
	}
}

static void close_all(struct moat_worker *w)
{
	while (!moat_list_empty(&w->conns)) {
		struct moat_conn *c = moat_list_entry(w->conns.next, struct moat_conn, link);

		c->ops->close(c);
	}
}

static void start_drain(struct moat_worker *w)
{
	if (w->draining)
		return;
	w->draining = 1;
	while (!moat_list_empty(&w->listens))
		listen_close(moat_list_entry(w->listens.next, struct moat_listen, link));
	each_conn(w, 0);
	finish_if_drained(w);
}

static void wake_cb(uv_async_t *h)
{
	struct moat_worker *w = h->data;

	if (atomic_exchange(&w->reload_pending, 0) && !w->draining) {
		struct moat_gen *g = moat_gen_acquire_current();

		if (g != NULL && g != w->gen) {
			moat_gen_release(w->gen);
			w->gen = g;
			if (sync_listens(w) != MOAT_OK)
				moat_log_error("worker %u: some listeners could not be opened",
				               w->index);
			each_conn(w, 1);
		} else {
			moat_gen_release(g);
		}
	}
	if (w->finished)
		return;
	if (atomic_exchange(&w->stop_pending, 0)) {
		start_drain(w);
		close_all(w);
		finish_if_drained(w);
		return;
	}
	if (atomic_exchange(&w->drain_pending, 0))
		start_drain(w);
}

static void tick_cb(uv_timer_t *t)
{
	struct moat_worker *w = t->data;
	struct moat_list *it;

	moat_http_pool_expire(w, uv_now(&w->loop));
	/* Resume accepting if an earlier descriptor shortage paused it. */
	for (it = w->listens.next; it != &w->listens; it = it->next) {
		struct moat_listen *ls = moat_list_entry(it, struct moat_listen, link);

		if (!uv_is_active((uv_handle_t *)&ls->poll))
			uv_poll_start(&ls->poll, UV_READABLE, listen_cb);
	}
}

static void *worker_main(void *arg)
{
	struct moat_worker *w = arg;

	uv_run(&w->loop, UV_RUN_DEFAULT);
	moat_rules_thread_release();
	moat_buf_cache_flush();
	moat_free(w->rules_scratch);
	moat_free(w->body_scratch);
	moat_gen_release(w->gen);
	w->gen = NULL;
	if (w->on_exit != NULL)
		w->on_exit(w);
	return NULL;
}

int moat_worker_start(struct moat_worker *w, unsigned index, struct moat_gen *g)
{
	uint64_t seed = 0;

	w->index = index;
	moat_list_init(&w->listens);
	moat_list_init(&w->conns);
	moat_list_init(&w->idle_upstreams);
	atomic_init(&w->reload_pending, 0);
	atomic_init(&w->drain_pending, 0);
	atomic_init(&w->stop_pending, 0);
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + index;
	w->rng = seed | 1;
	if (uv_loop_init(&w->loop) != 0)
		return MOAT_EIO;
	moat_gen_ref(g);
	w->gen = g;
	uv_async_init(&w->loop, &w->wake, wake_cb);
	w->wake.data = w;
	uv_timer_init(&w->loop, &w->tick);
	w->tick.data = w;
	uv_timer_start(&w->tick, tick_cb, 1000, 1000);
	if (sync_listens(w) != MOAT_OK)
		return MOAT_EIO;
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return MOAT_EIO;
	return MOAT_OK;
}

void moat_worker_notify_reload(struct moat_worker *w)
{
	atomic_store(&w->reload_pending, 1);
	uv_async_send(&w->wake);
}

void moat_worker_notify_stop(struct moat_worker *w, int force)
{
	atomic_store(force ? &w->stop_pending : &w->drain_pending, 1);
	uv_async_send(&w->wake);
}

void moat_worker_join(struct moat_worker *w)
{
	pthread_join(w->thread, NULL);
}

void moat_worker_destroy(struct moat_worker *w)
{
	uv_close((uv_handle_t *)&w->wake, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&w->loop) != 0)
		moat_log_warn("worker %u: loop closed with handles still open", w->index);
}

int moat_worker_rules_scratch(struct moat_worker *w, size_t need, struct moat_rules_scratch *out)
{
	if (need > w->rules_scratch_cap) {
		char *p = moat_realloc(w->rules_scratch, need);

		if (p == NULL)
			return MOAT_ENOMEM;
		w->rules_scratch = p;
		w->rules_scratch_cap = need;
	}
	out->mem = w->rules_scratch;
	out->cap = w->rules_scratch_cap;
	return MOAT_OK;
}

void moat_worker_request_id(struct moat_worker *w, char out[17])
{
	static const char hex[] = "0123456789abcdef";
	/* xorshift64*: ids need to be unique and unguessable enough for correlation, not
	 * secret, so a fast generator seeded from getrandom is enough. */
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	x *= 0x2545f4914f6cdd1dull;
	for (int i = 15; i >= 0; i--, x >>= 4)
		out[i] = hex[x & 15];
	out[16] = '\0';
}
