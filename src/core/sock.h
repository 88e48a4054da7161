/*
 * A non-blocking socket, plain or TLS, watched by a libuv poll handle. OpenSSL reads and writes
 * the descriptor itself; this layer turns its WANT_READ/WANT_WRITE answers into the poll
 * events to wait for, so callers only ask "read", "write", and "what do I wait on".
 */
#ifndef MOAT_CORE_SOCK_H
#define MOAT_CORE_SOCK_H

#include <sys/types.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "core/common.h"

struct moat_sock {
	int fd;
	SSL *ssl; /* NULL for plain TCP */
	uv_poll_t poll; /* poll.data is the owner */
	int watching; /* events currently registered */
	int rd_wait; /* UV_READABLE or UV_WRITABLE: what the last blocked read needs */
	int wr_wait; /* the same for the last blocked write */
	int hs_wait; /* the same for the handshake */
	unsigned long ssl_err; /* the OpenSSL error queue's first error of the last failure */
	int sys_errno;
};

/* Initialises the poll handle on loop for fd; `owner` is passed back through poll.data. */
int moat_sock_init(struct moat_sock *s, uv_loop_t *loop, int fd, void *owner) MOAT_WUR;

/* Returns bytes read (> 0), 0 at a clean end of stream, MOAT_EAGAIN, or MOAT_EIO. */
ssize_t moat_sock_read(struct moat_sock *s, char *buf, size_t len);

/* Returns bytes written (> 0), MOAT_EAGAIN, or MOAT_EIO. */
ssize_t moat_sock_write(struct moat_sock *s, const char *buf, size_t len);

/* Advances a TLS handshake (server or client by the SSL object's role): MOAT_OK when done,
 * MOAT_EAGAIN, or MOAT_EIO (s->ssl_err tells why). */
int moat_sock_handshake(struct moat_sock *s);

/* Registers exactly `events` (UV_READABLE|UV_WRITABLE, 0 to pause) with the poll callback. */
void moat_sock_watch(struct moat_sock *s, int events, uv_poll_cb cb);

/* Best-effort close_notify, then closes the descriptor; the poll handle is closed through
 * uv_close with `cb` (the owner may be freed there). */
void moat_sock_close(struct moat_sock *s, uv_close_cb cb);

/* Half-close: shuts down the write side (plain sockets) after a final close_notify (TLS). */
void moat_sock_shutdown_write(struct moat_sock *s);

#endif
