/*
 * tlsclient - the client side that loadgen and tcpload share (tlsclient.h).
 */
#define _GNU_SOURCE
#include "tlsclient.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/signalfd.h>

#include <openssl/err.h>

void tlsclient_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", tlsclient_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

uint64_t tlsclient_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

double tlsclient_cpu_seconds(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

/* ---- options ---- */

double tlsclient_parse_num(const char *s, const char *what, double min)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < min)
		tlsclient_die("bad value for %s", what);
	return v;
}

unsigned tlsclient_parse_mode(const char *s, const char *const *names, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	tlsclient_die("unknown mode %s", s);
}

int tlsclient_opt(struct tlsclient_opts *t, int ch, const char *arg)
{
	switch (ch) {
	case 'a':
		t->target = arg;
		return 1;
	case 's':
		t->sni = arg;
		return 1;
	case 'C':
		t->ca = arg;
		return 1;
	case 'c':
		t->cert = arg;
		return 1;
	case 'k':
		t->key = arg;
		return 1;
	case 'V':
		if (strcmp(arg, "1.2") == 0)
			t->tls_min = t->tls_max = TLS1_2_VERSION;
		else if (strcmp(arg, "1.3") == 0)
			t->tls_min = t->tls_max = TLS1_3_VERSION;
		else if (strcmp(arg, "any") == 0)
			t->tls_min = t->tls_max = 0;
		else
			tlsclient_die("unknown TLS version %s (1.2, 1.3, any)", arg);
		return 1;
	case 'P':
		t->plain = 1;
		return 1;
	default:
		return 0;
	}
}

static void parse_target(struct tlsclient_opts *t)
{
	struct addrinfo hints, *res = NULL;
	const char *s = t->target, *port;
	size_t hl;
	int rc;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			tlsclient_die("bad address %s", s);
		hl = (size_t)(rb - s - 1);
		s++;
		port = rb + 2;
	} else {
		port = strrchr(s, ':');
		if (!port)
			tlsclient_die("bad address %s (HOST:PORT)", s);
		hl = (size_t)(port - s);
		port++;
	}
	if (hl == 0 || hl >= sizeof(t->hostpart))
		tlsclient_die("bad address %s", t->target);
	memcpy(t->hostpart, s, hl);
	t->hostpart[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(t->hostpart, port, &hints, &res);
	if (rc != 0 || !res)
		tlsclient_die("cannot resolve %s: %s", t->target, gai_strerror(rc));
	memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
	t->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
}

void tlsclient_opts_done(struct tlsclient_opts *t)
{
	if ((t->cert == NULL) != (t->key == NULL))
		tlsclient_die("%s", "-c (certificate) and -k (key) go together");
	parse_target(t);
}

/* ---- TLS ---- */

SSL_CTX *tlsclient_ctx_new(const struct tlsclient_opts *t)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		tlsclient_die("%s", "SSL_CTX_new failed");
	if (t->tls_min)
		SSL_CTX_set_min_proto_version(ctx, t->tls_min);
	if (t->tls_max)
		SSL_CTX_set_max_proto_version(ctx, t->tls_max);
	/* the cost measured is that of a device's full handshake, so none is ever resumed */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (t->cert) {
		if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
			tlsclient_die("cannot load the client certificate %s", t->cert);
		if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1)
			tlsclient_die("cannot load the client key %s", t->key);
		if (SSL_CTX_check_private_key(ctx) != 1)
			tlsclient_die("the client key %s does not match the certificate", t->key);
	}
	if (t->ca) {
		if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1)
			tlsclient_die("cannot load the CA file %s", t->ca);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

SSL *tlsclient_ssl_new(SSL_CTX *ctx, int fd, const struct tlsclient_opts *t)
{
	SSL *ssl = SSL_new(ctx);

	if (!ssl)
		return NULL;
	if (!SSL_set_fd(ssl, fd)) {
		SSL_free(ssl);
		return NULL;
	}
	if (t->sni) {
		SSL_set_tlsext_host_name(ssl, t->sni);
		if (t->ca)
			SSL_set1_host(ssl, t->sni);
	}
	return ssl;
}

void tlsclient_params(SSL *ssl, struct tlsclient_params *p)
{
	int nid = (int)SSL_get_negotiated_group(ssl);
	const char *gname = nid > 0 ? OBJ_nid2sn(nid) : NULL;

	snprintf(p->version, sizeof(p->version), "%s", SSL_get_version(ssl));
	snprintf(p->cipher, sizeof(p->cipher), "%s", SSL_get_cipher_name(ssl));
	snprintf(p->group, sizeof(p->group), "%s", gname ? gname : "");
}

/* ---- connections ---- */

int tlsclient_connect(int fd, const struct tlsclient_opts *t, int nodelay)
{
	if (nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS)
		return -1;
	return 0;
}

int tlsclient_sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	return err;
}

/* A plain recv() or send() that returned k: k itself, want when it would block, or IO_ERROR. */
static long sock_result(long k, long want, struct tlsclient_err *err)
{
	if (k >= 0)
		return k;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return want;
	err->ssl = 0;
	err->sys = errno;
	return IO_ERROR;
}

/*
 * An SSL_read, SSL_write or SSL_connect that returned r <= 0, with errno cleared before it.
 * With eof, the end of the stream is 0: close_notify, or TCP closed without one and nothing in
 * OpenSSL's error queue (SSL_OP_IGNORE_UNEXPECTED_EOF), as servers close idle connections.
 */
static long ssl_result(SSL *ssl, int r, int eof, struct tlsclient_err *err)
{
	int e = SSL_get_error(ssl, r);

	if (e == SSL_ERROR_WANT_READ)
		return IO_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return IO_WANT_WRITE;
	if (eof && e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (eof && e == SSL_ERROR_SYSCALL && errno == 0 && ERR_peek_error() == 0)
		return 0;
	err->ssl = e;
	err->sys = errno;
	return IO_ERROR;
}

int tlsclient_handshake(SSL *ssl, struct tlsclient_err *err)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_connect(ssl);
	return r == 1 ? 1 : (int)ssl_result(ssl, r, 0, err);
}

long tlsclient_recv(int fd, SSL *ssl, void *buf, size_t n, struct tlsclient_err *err)
{
	int r;

	if (!ssl)
		return sock_result(recv(fd, buf, n, 0), IO_WANT_READ, err);
	ERR_clear_error();
	errno = 0;
	r = SSL_read(ssl, buf, (int)n);
	return r > 0 ? r : ssl_result(ssl, r, 1, err);
}

long tlsclient_send(int fd, SSL *ssl, const void *buf, size_t n, struct tlsclient_err *err)
{
	int r;

	if (!ssl)
		return sock_result(send(fd, buf, n, MSG_NOSIGNAL), IO_WANT_WRITE, err);
	ERR_clear_error();
	errno = 0;
	r = SSL_write(ssl, buf, (int)n);
	return r > 0 ? r : ssl_result(ssl, r, 0, err);
}

/* ---- the event loop ---- */

int tlsclient_epoll(uint64_t signal_data, int *sfd)
{
	struct epoll_event ev;
	sigset_t mask;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		tlsclient_die("epoll_create1: %s", strerror(errno));
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	*sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (*sfd < 0)
		tlsclient_die("signalfd: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.u64 = signal_data;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, *sfd, &ev) < 0)
		tlsclient_die("epoll_ctl: %s", strerror(errno));
	return ep;
}

int tlsclient_wait(int ep, struct epoll_event *evs, int n, int timeout)
{
	int k = epoll_wait(ep, evs, n, timeout);

	if (k >= 0)
		return k;
	if (errno != EINTR)
		tlsclient_die("epoll_wait: %s", strerror(errno));
	return 0;
}

int tlsclient_signalled(int sfd)
{
	struct signalfd_siginfo si;

	return read(sfd, &si, sizeof(si)) > 0;
}

int tlsclient_timeout_ms(uint64_t deadline, uint64_t now)
{
	if (deadline <= now)
		return 0;
	if (deadline - now > 60 * NS_PER_S)
		return 60000;
	return (int)((deadline - now + 999999) / 1000000);
}
