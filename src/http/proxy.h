/*
 * The HTTP/1.1 reverse proxy: device connections (TLS, identity, request parsing, body
 * streaming) and origin connections (pooled per worker), driven by one pump per connection.
 */
#ifndef MOAT_HTTP_PROXY_H
#define MOAT_HTTP_PROXY_H

#include <sys/socket.h>

#include "core/buf.h"
#include "core/gen.h"
#include "core/list.h"
#include "core/sock.h"
#include "core/worker.h"
#include "http/parse.h"
#include "tls/tls.h"

struct moat_http_conn;

enum moat_upstream_state { UP_CONNECTING = 0, UP_TLS, UP_READY };

/* A connection to an origin: owned by one device connection while a request uses it, or
 * idle in the worker's pool. */
struct moat_upstream {
	struct moat_sock sock;
	struct moat_worker *w;
	struct moat_http_conn *owner; /* NULL while pooled */
	enum moat_upstream_state state;
	char key[300]; /* pool key: the tenant's origin_key */
	struct moat_buf in, out;
	uint64_t idle_since;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int reused; /* taken from the pool: an early close may be a stale keep-alive */
	int closing;
	struct moat_list link; /* in the worker's pool */
};

/* Hands an accepted socket to the HTTP protocol. Takes ownership of fd and of the connection
 * slot taken in the limits. */
void moat_http_accept(struct moat_worker *w, struct moat_listener *l, int fd,
                      const struct sockaddr_storage *addr);

/* An idle connection to the tenant's origin from the pool, or else a new one. */
struct moat_upstream *moat_upstream_get(struct moat_worker *w, const struct moat_tenant *t,
                                        struct moat_http_conn *owner, const char **err);
/* Always a new connection (its connect is under way): NULL with *err on failure. */
struct moat_upstream *moat_upstream_connect(struct moat_worker *w, const struct moat_tenant *t,
                                            struct moat_http_conn *owner, const char **err);
/* Finishes a non-blocking connect: MOAT_OK (state moves to UP_TLS or UP_READY), MOAT_EAGAIN,
 * or MOAT_EIO with *err. */
int moat_upstream_connect_done(struct moat_upstream *u, const char **err) MOAT_WUR;
void moat_upstream_release(struct moat_upstream *u, int reusable);
void moat_upstream_watch(struct moat_upstream *u, int events);
void moat_http_pool_expire(struct moat_worker *w, uint64_t now);
void moat_http_pool_close_all(struct moat_worker *w);

/* Called by upstream.c when the owner's origin socket has an event. */
void moat_http_conn_upstream_event(struct moat_http_conn *c);

#endif
