#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/sock.h"

int moat_sock_init(struct moat_sock *s, uv_loop_t *loop, int fd, void *owner)
{
	s->fd = fd;
	s->ssl = NULL;
	s->watching = 0;
	s->rd_wait = UV_READABLE;
	s->wr_wait = UV_WRITABLE;
	s->hs_wait = UV_READABLE;
	s->ssl_err = 0;
	s->sys_errno = 0;
	if (uv_poll_init(loop, &s->poll, fd) != 0)
		return MOAT_EIO;
	s->poll.data = owner;
	return MOAT_OK;
}

/* Maps an OpenSSL failure to MOAT_EAGAIN (with the event to wait for) or MOAT_EIO. */
static int ssl_fail(struct moat_sock *s, int ret, int *wait)
{
	int e = SSL_get_error(s->ssl, ret);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		*wait = UV_READABLE;
		return MOAT_EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*wait = UV_WRITABLE;
		return MOAT_EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return MOAT_ECLOSED;
	case SSL_ERROR_SYSCALL:
		s->sys_errno = errno;
		s->ssl_err = ERR_get_error();
		ERR_clear_error();
		return MOAT_EIO;
	default:
		s->ssl_err = ERR_get_error();
		ERR_clear_error();
		return MOAT_EIO;
	}
}

ssize_t moat_sock_read(struct moat_sock *s, char *buf, size_t len)
{
	ssize_t n;

	if (s->ssl != NULL) {
		int r;

		/* a stale error left on this thread's queue would turn a would-block into a
		 * failure of an unrelated connection */
		ERR_clear_error();
		r = SSL_read(s->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
		if (r > 0) {
			s->rd_wait = UV_READABLE;
			return r;
		}
		r = ssl_fail(s, r, &s->rd_wait);
		if (r == MOAT_ECLOSED)
			return 0;
		/* A peer that closes TCP without close_notify ends the stream too; HTTP framing
		 * tells whether anything was cut short. */
		if (r == MOAT_EIO && s->ssl_err == 0 && s->sys_errno == 0)
			return 0;
		return r;
	}
	do {
		n = recv(s->fd, buf, len, 0);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		s->rd_wait = UV_READABLE;
		return MOAT_EAGAIN;
	}
	s->sys_errno = errno;
	return MOAT_EIO;
}

ssize_t moat_sock_write(struct moat_sock *s, const char *buf, size_t len)
{
	ssize_t n;

	if (s->ssl != NULL) {
		int r;

		ERR_clear_error();
		r = SSL_write(s->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
		if (r > 0) {
			s->wr_wait = UV_WRITABLE;
			return r;
		}
		r = ssl_fail(s, r, &s->wr_wait);
		return r == MOAT_ECLOSED ? MOAT_EIO : r;
	}
	do {
		n = send(s->fd, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		s->wr_wait = UV_WRITABLE;
		return MOAT_EAGAIN;
	}
	s->sys_errno = errno;
	return MOAT_EIO;
}

int moat_sock_handshake(struct moat_sock *s)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(s->ssl);
	if (r == 1)
		return MOAT_OK;
	r = ssl_fail(s, r, &s->hs_wait);
	return r == MOAT_ECLOSED ? MOAT_EIO : r;
}

void moat_sock_watch(struct moat_sock *s, int events, uv_poll_cb cb)
{
	if (events == s->watching)
		return;
	s->watching = events;
	if (events == 0)
		uv_poll_stop(&s->poll);
	else
		uv_poll_start(&s->poll, events, cb);
}

void moat_sock_shutdown_write(struct moat_sock *s)
{
	if (s->ssl != NULL) {
		ERR_clear_error();
		if (SSL_shutdown(s->ssl) < 0)
			ERR_clear_error();
	}
	shutdown(s->fd, SHUT_WR);
}

void moat_sock_close(struct moat_sock *s, uv_close_cb cb)
{
	if (s->ssl != NULL) {
		/* Only a clean stream gets close_notify; after an error OpenSSL refuses anyway. */
		if (!(SSL_get_shutdown(s->ssl) & SSL_SENT_SHUTDOWN) &&
		    SSL_is_init_finished(s->ssl)) {
			ERR_clear_error();
			if (SSL_shutdown(s->ssl) < 0)
				ERR_clear_error();
		}
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	/* uv_close stops polling at once (the callback comes later), so the descriptor can be
	 * closed right after without its number being reused under a live watcher. */
	s->watching = 0;
	uv_close((uv_handle_t *)&s->poll, cb);
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
}
