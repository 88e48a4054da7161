/*
 * Worker threads. Each owns a libuv loop and its own SO_REUSEPORT listening sockets, so the
 * kernel spreads connections over workers and a connection lives and dies on one thread: no
 * lock on the hot path. The control thread talks to workers only through an async handle:
 * "a new generation is published", "drain", "stop now".
 */
#ifndef MOAT_CORE_WORKER_H
#define MOAT_CORE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "core/common.h"
#include "core/gen.h"
#include "core/list.h"
#include "http/parse.h"
#include "rules/rules.h"

struct moat_worker;
struct moat_conn;

/* What a worker asks of every connection, whatever its protocol. */
struct moat_conn_ops {
	void (*drain)(struct moat_conn *c); /* SIGTERM: finish, then close */
	void (*close)(struct moat_conn *c); /* drain deadline: close now */
	void (*gen_changed)(struct moat_conn *c); /* a new generation: recheck the device */
};

/* The head of every connection object, linking it into its worker's list. */
struct moat_conn {
	struct moat_list link;
	const struct moat_conn_ops *ops;
};

/* One listening socket of one worker. */
struct moat_listen {
	struct moat_worker *w;
	char bind[128];
	int fd;
	uv_poll_t poll;
	struct moat_listener *listener; /* in w->gen; refreshed when the generation changes */
	int closing;
	struct moat_list link;
};

struct moat_worker_stats {
	uint64_t accepted, refused_limits, refused_acl, handshakes_failed, requests;
};

struct moat_worker {
	unsigned index;
	pthread_t thread;
	uv_loop_t loop;
	uv_async_t wake;
	uv_timer_t tick; /* once a second: pooled origin connections expire */
	struct moat_gen *gen;
	struct moat_list listens;
	struct moat_list conns; /* client connections */
	struct moat_list idle_upstreams; /* origin connection pool */
	unsigned nconns, nidle;
	atomic_int reload_pending, drain_pending, stop_pending;
	int draining;
	int finished; /* drained: the loop is ending */
	uint64_t rng; /* request ids */
	uint64_t last_limit_log, last_acl_log;
	struct moat_worker_stats stats;
	struct moat_http_request req; /* parse scratch: one request head is parsed at a time */
	char *rules_scratch; /* rule evaluation scratch, sized for the largest ruleset */
	size_t rules_scratch_cap;
	char *body_scratch; /* a decoded body prefix for the rules (chunked bodies) */
	size_t body_scratch_cap;
	int (*on_exit)(struct moat_worker *w); /* tells the control thread this worker is done */
	void *on_exit_arg;
};

/* Creates the worker, opens its listening sockets for g (a reference is taken) and starts its
 * thread. Returns MOAT_OK or an error with a log line. */
int moat_worker_start(struct moat_worker *w, unsigned index, struct moat_gen *g) MOAT_WUR;

/* Asks the worker to pick up the current generation. Thread-safe. */
void moat_worker_notify_reload(struct moat_worker *w);

/* Asks the worker to stop accepting and finish in-flight requests; with `force`, to close
 * every connection now. Thread-safe. */
void moat_worker_notify_stop(struct moat_worker *w, int force);

void moat_worker_join(struct moat_worker *w);

/* After join: closes the worker's loop. */
void moat_worker_destroy(struct moat_worker *w);

/* Scratch of at least `need` bytes (the tenant's rules_scratch: computed once per generation)
 * for evaluating rules on this worker. MOAT_ENOMEM if it cannot be grown. */
int moat_worker_rules_scratch(struct moat_worker *w, size_t need,
                              struct moat_rules_scratch *out) MOAT_WUR;

/* A new request id: 16 hex characters, unique per process in practice. */
void moat_worker_request_id(struct moat_worker *w, char out[17]);

/* Registers a new connection with its worker. */
void moat_worker_conn_add(struct moat_worker *w, struct moat_conn *c,
                          const struct moat_conn_ops *ops);

/* Unlinks a closing connection (its handles may still be closing). */
void moat_worker_conn_unlink(struct moat_conn *c);

/* Called by protocol code when a connection's memory is freed, to let a draining worker
 * finish. */
void moat_worker_conn_closed(struct moat_worker *w);

/*
 * Each protocol bounds the work a connection does per wake-up (its pump()'s passes): a transfer
 * that always has more to move must not keep its worker from the event loop, or every other
 * connection of the worker, and new ones, would starve. A connection that used up its budget
 * comes back after this many milliseconds: by then the loop has polled every other connection
 * once. Not 0: libuv before 1.45 (Debian 12 has 1.44) runs a timer re-armed with 0 from its
 * own callback again in the same loop turn, so the loop would never reach its poll and the
 * budget would bound nothing.
 */
#define MOAT_PUMP_AGAIN_MS 1

#endif
