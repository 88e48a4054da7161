/*
 * tlsclient - the client side that loadgen and tcpload share: the options that say where to
 * connect and how to speak TLS, the client SSL_CTX (full handshakes only), the non-blocking
 * connect and TLS handshake, reads and writes that look the same with and without TLS, and the
 * few process helpers both need (fatal errors, the clock, signals, CPU time).
 *
 * Each program links bench/tlsclient.c next to its own file:
 *   cc -O2 -Wall -Wextra -Werror bench/loadgen.c bench/tlsclient.c -lssl -lcrypto -o loadgen
 */
#ifndef BENCH_TLSCLIENT_H
#define BENCH_TLSCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#define NS_PER_S 1000000000ull

/* results of tlsclient_recv, tlsclient_send and tlsclient_handshake besides a byte count */
#define IO_WANT_READ (-1)
#define IO_WANT_WRITE (-2)
#define IO_ERROR (-3)

/* The options both programs take alike: -a, -s, -C, -c, -k, -V and -P. */
struct tlsclient_opts {
	const char *target; /* -a HOST:PORT, an IPv6 address in brackets */
	struct sockaddr_storage addr; /* the target, resolved by tlsclient_opts_done */
	socklen_t addrlen;
	char hostpart[256]; /* HOST of the target */
	const char *sni; /* -s: the server name sent in the ClientHello, and verified with -C */
	const char *ca; /* -C: verify the server certificate against this file */
	const char *cert, *key; /* -c, -k: the client certificate chain and key, PEM */
	int tls_min, tls_max; /* -V: 0 for any */
	int plain; /* -P: no TLS */
};

/* Why a read, write or handshake returned IO_ERROR, for the program's own message. */
struct tlsclient_err {
	int ssl; /* SSL_get_error(); 0 on a plain socket, where sys says it all */
	int sys; /* errno just after the failed call */
};

/* What the first TLS connection negotiated. group is empty when there is none to name. */
struct tlsclient_params {
	char version[32], cipher[64], group[32];
};

/* The program's name, the prefix of its messages: each program defines it. */
extern const char tlsclient_prog[];

/* Prints "PROG: message" on stderr and exits with status 2. */
void tlsclient_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t tlsclient_now_ns(void);

/* User plus system time in seconds. */
double tlsclient_cpu_seconds(const struct rusage *ru);

/* The number in s, at least min; dies naming the option what otherwise. */
double tlsclient_parse_num(const char *s, const char *what, double min);

/* The index of s in names (n of them); dies on a name that is not there. */
unsigned tlsclient_parse_mode(const char *s, const char *const *names, unsigned n);

/* Takes the option ch with its argument if it is one of the shared options; 0 if it is not. */
int tlsclient_opt(struct tlsclient_opts *t, int ch, const char *arg);

/* After the command line: -c goes with -k, and the target is resolved. Dies on an error. */
void tlsclient_opts_done(struct tlsclient_opts *t);

/* The client context for the options. Every handshake is a full one: no session cache, no
 * tickets asked for, none reused. Dies when a file cannot be loaded. */
SSL_CTX *tlsclient_ctx_new(const struct tlsclient_opts *t);

/* Starts connecting the non-blocking socket fd to the target, with TCP_NODELAY if nodelay:
 * 0, or -1 with errno set. The caller creates the socket first and notes the time in between,
 * so that a connection is timed from its connect(). */
int tlsclient_connect(int fd, const struct tlsclient_opts *t, int nodelay);

/* The result of a non-blocking connect() once the socket is writable: 0 or an errno value. */
int tlsclient_sock_error(int fd);

/* A TLS connection over fd, with the server name of the options (checked against the
 * certificate when -C is given); NULL if OpenSSL cannot make one. The caller frees it. */
SSL *tlsclient_ssl_new(SSL_CTX *ctx, int fd, const struct tlsclient_opts *t);

/* One step of the client handshake: 1 when it is complete, IO_WANT_READ, IO_WANT_WRITE, or
 * IO_ERROR with *err set. */
int tlsclient_handshake(SSL *ssl, struct tlsclient_err *err);

/* Reads up to n bytes over TLS, or from fd when ssl is NULL: a byte count, 0 at the end of the
 * stream (close_notify, or TCP closed without one), IO_WANT_READ, IO_WANT_WRITE, or IO_ERROR
 * with *err set. */
long tlsclient_recv(int fd, SSL *ssl, void *buf, size_t n, struct tlsclient_err *err);

/* Writes up to n bytes: a byte count, IO_WANT_READ, IO_WANT_WRITE, or IO_ERROR with *err set. */
long tlsclient_send(int fd, SSL *ssl, const void *buf, size_t n, struct tlsclient_err *err);

/* The negotiated version, cipher and key exchange group of ssl. */
void tlsclient_params(SSL *ssl, struct tlsclient_params *p);

/* A new epoll instance. SIGINT, SIGTERM and SIGUSR1 are blocked and reported on it instead, by
 * the signalfd *sfd, with signal_data as the event's data. Dies on an error. */
int tlsclient_epoll(uint64_t signal_data, int *sfd);

/* epoll_wait: the number of events, 0 when a signal interrupted it. Dies on an error. */
int tlsclient_wait(int ep, struct epoll_event *evs, int n, int timeout);

/* Takes the signal that made the signalfd sfd readable: 1, or 0 if there was none. */
int tlsclient_signalled(int sfd);

/* The epoll_wait timeout until deadline: 0 if it has passed, at most a minute. */
int tlsclient_timeout_ms(uint64_t deadline, uint64_t now);

#endif
