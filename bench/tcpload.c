/*
 * tcpload - byte-stream load through a TLS-terminating TCP proxy, and the origin behind it.
 *
 * bench/tcp.sh uses it to compare moatd's `protocol = tcp` listeners with HAProxy `mode tcp`.
 * One thread per process, non-blocking sockets, level-triggered epoll, OpenSSL on the client
 * side (with a client certificate), plain TCP on the origin side.
 *
 * The origin protocol is one command byte from the client, then:
 *   'U'  upload: the origin reads and discards everything (a sink);
 *   'D'  download: the origin sends an endless stream and discards whatever it reads;
 *   'E'  echo: the origin sends back every byte it reads after the command.
 *
 * Modes (bench/README.md, "TCP", has the details):
 *   serve  the origin: listens on -a and serves the three commands; with -O FILE it keeps
 *          its byte counters (received, sent) in FILE (mmap), where the client reads them.
 *   up     N streams, each: TCP connect, full TLS handshake, 'U', then 64 KiB writes as fast
 *          as the proxy takes them. Measured at the receiver: the origin's byte counter (-O),
 *          over D seconds after W seconds of warm-up that start once all N streams are up.
 *   down   N streams, each 'D', then reads as fast as it can; the bytes the client received.
 *   idle   opens N connections (at most -i being set up at once); each: handshake, 'E' and -b
 *          bytes, waits for the -b bytes to come back (so the origin connection behind the
 *          proxy is open), prints a "ready=1 ..." line on stdout, then holds them until
 *          SIGTERM, SIGINT or SIGUSR1, or D seconds; counts those closed in the meantime.
 *   check  one connection: 'E' and -b bytes (256 KiB by default) of a pseudo-random pattern,
 *          which must come back unchanged; exit status 0 only then.
 *
 * CPU accounting (up, down): with -p PIDS (the proxy's processes, comma-separated) and -o PIDS
 * (the origin's), the CPU time of those processes, of this one, of the whole machine
 * (/proc/stat: user + nice + system + steal, and irq + softirq) is sampled at the start and
 * the end of the measured window; "other" is the machine's busy time that none of them used.
 *
 * Output: one key=value line on stdout (after the "ready" line in idle mode); human text on
 * stderr. MB = 10^6 bytes.
 *
 * Build: cc -O2 -Wall -Wextra -Werror bench/tcpload.c bench/tlsclient.c -lssl -lcrypto \
 *            -o build/bench/tcpload
 */
#define _GNU_SOURCE
#include "tlsclient.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MAX_EVENTS 512
#define CHUNK (64 * 1024) /* client writes (up) and reads (down) */
#define ORIGIN_CHUNK (256 * 1024) /* origin reads and sends */
#define ECHO_BUF (64 * 1024)
#define SETUP_LIMIT_NS (120 * NS_PER_S) /* longest connection set-up phase */
#define MAX_ERROR_LOGS 5
#define PROBE_SLOTS 256 /* probe connections open at once, at most */

#define EV_SIGNAL UINT64_MAX
#define EV_LISTEN (UINT64_MAX - 1)

enum mode { MODE_SERVE, MODE_UP, MODE_DOWN, MODE_IDLE, MODE_CHECK };
static const char *const mode_names[] = {"serve", "up", "down", "idle", "check"};

const char tlsclient_prog[] = "tcpload";

/* the pattern sent in echo and check mode: byte i of a stream */
static unsigned char pattern(uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull;

	x ^= x >> 29;
	return (unsigned char)(x >> (8 * (i & 7)));
}

/* ---- options ---- */

struct opts {
	enum mode mode;
	struct tlsclient_opts net; /* -a (serve: where to listen), -s, -C, -c, -k, -V, -P */
	const char *counters, *proxy_pids, *origin_pids;
	int quiet;
	unsigned conns, inflight;
	double duration, warmup, probe_rate;
	size_t echo_bytes;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: tcpload -m serve -a HOST:PORT [-O COUNTERS]\n"
	           "       tcpload -m up|down|idle|check -a HOST:PORT [-s SNI] [-C CA] [-c CERT -k "
	           "KEY]\n"
	           "               [-V 1.2|1.3|any] [-P] [-n CONNS] [-d SECONDS] [-w WARMUP] [-i "
	           "IN_FLIGHT]\n"
	           "               [-b ECHO_BYTES] [-O COUNTERS] [-p PROXY_PIDS] [-o ORIGIN_PIDS] "
	           "[-r PROBES_PER_S] [-q]\n");
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	int ch, have_mode = 0, have_b = 0;

	memset(o, 0, sizeof(*o));
	o->conns = 1;
	o->duration = 10;
	o->warmup = 1;
	o->inflight = 100;
	o->echo_bytes = 1;
	while ((ch = getopt(argc, argv, "m:a:s:C:c:k:V:Pn:d:w:i:b:O:p:o:r:qh")) != -1) {
		if (tlsclient_opt(&o->net, ch, optarg))
			continue;
		switch (ch) {
		case 'm':
			o->mode = (enum mode)tlsclient_parse_mode(
			        optarg, mode_names, sizeof(mode_names) / sizeof(mode_names[0]));
			have_mode = 1;
			break;
		case 'n':
			o->conns = (unsigned)tlsclient_parse_num(optarg, "-n", 1);
			break;
		case 'd':
			o->duration = tlsclient_parse_num(optarg, "-d", 0.001);
			break;
		case 'w':
			o->warmup = tlsclient_parse_num(optarg, "-w", 0);
			break;
		case 'i':
			o->inflight = (unsigned)tlsclient_parse_num(optarg, "-i", 1);
			break;
		case 'b':
			o->echo_bytes = (size_t)tlsclient_parse_num(optarg, "-b", 1);
			have_b = 1;
			break;
		case 'r':
			o->probe_rate = tlsclient_parse_num(optarg, "-r", 0);
			break;
		case 'O':
			o->counters = optarg;
			break;
		case 'p':
			o->proxy_pids = optarg;
			break;
		case 'o':
			o->origin_pids = optarg;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc || !have_mode || !o->net.target) {
		usage(stderr);
		exit(2);
	}
	if (o->mode == MODE_CHECK) {
		o->conns = 1;
		if (!have_b)
			o->echo_bytes = 256 * 1024;
	}
	tlsclient_opts_done(&o->net);
}

/* ---- CPU accounting ---- */

struct cpu_snap {
	uint64_t t;
	unsigned long long proxy, origin, busy, irq; /* clock ticks */
	double self; /* seconds */
};

static unsigned long long pid_ticks(const char *list)
{
	unsigned long long sum = 0;
	char path[64], buf[1024];
	const char *p = list;

	while (p && *p) {
		long pid = strtol(p, (char **)&p, 10);
		FILE *f;

		while (*p == ',' || *p == ' ')
			p++;
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f)) {
			char *s = strrchr(buf, ')');
			unsigned long long ut = 0, st = 0;

			/* after "pid (comm) ": state is field 3; utime and stime are 14 and 15 */
			if (s &&
			    sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			           &ut, &st) == 2)
				sum += ut + st;
		}
		fclose(f);
	}
	return sum;
}

static void cpu_take(struct cpu_snap *s, const struct opts *o)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[10] = {0};
	struct rusage ru;

	if (f) {
		if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		           &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
			memset(v, 0, sizeof(v));
		fclose(f);
	}
	/* user nice system idle iowait irq softirq steal */
	s->busy = v[0] + v[1] + v[2] + v[7];
	s->irq = v[5] + v[6];
	s->proxy = pid_ticks(o->proxy_pids);
	s->origin = pid_ticks(o->origin_pids);
	getrusage(RUSAGE_SELF, &ru);
	s->self = tlsclient_cpu_seconds(&ru);
	s->t = tlsclient_now_ns();
}

/* ---- the origin ---- */

struct oconn {
	char cmd; /* 0 until the first byte */
	unsigned char *ebuf; /* echo: bytes read and not yet sent back */
	size_t elen, eoff;
	uint32_t events;
};

static struct {
	int ep, lfd;
	struct oconn **c; /* by descriptor */
	size_t nc;
	unsigned char *rbuf, *sbuf;
	volatile uint64_t *ctr; /* [0] bytes received, [1] bytes sent */
	uint64_t local_ctr[2];
	unsigned long open, accepted;
} so;

static void o_interest(int fd, struct oconn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.u64 = (uint64_t)fd};

	if (ev == c->events)
		return;
	if (epoll_ctl(so.ep, EPOLL_CTL_MOD, fd, &e) < 0)
		tlsclient_die("epoll_ctl: %s", strerror(errno));
	c->events = ev;
}

static void o_close(int fd)
{
	struct oconn *c = so.c[fd];

	free(c->ebuf);
	free(c);
	so.c[fd] = NULL;
	close(fd);
	so.open--;
}

static void o_count(int i, uint64_t n)
{
	so.local_ctr[i] += n;
	__atomic_store_n(&so.ctr[i], so.local_ctr[i], __ATOMIC_RELAXED);
}

static void o_accept(void)
{
	for (;;) {
		int fd = accept4(so.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event e;
		struct oconn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fprintf(stderr, "tcpload serve: accept: %s\n", strerror(errno));
			return;
		}
		if ((size_t)fd >= so.nc) {
			size_t n = so.nc ? so.nc : 1024;

			while (n <= (size_t)fd)
				n *= 2;
			so.c = realloc(so.c, n * sizeof(*so.c));
			if (!so.c)
				tlsclient_die("%s", "out of memory");
			memset(so.c + so.nc, 0, (n - so.nc) * sizeof(*so.c));
			so.nc = n;
		}
		c = calloc(1, sizeof(*c));
		if (!c)
			tlsclient_die("%s", "out of memory");
		c->events = EPOLLIN;
		so.c[fd] = c;
		e.events = EPOLLIN;
		e.data.u64 = (uint64_t)fd;
		if (epoll_ctl(so.ep, EPOLL_CTL_ADD, fd, &e) < 0)
			tlsclient_die("epoll_ctl: %s", strerror(errno));
		so.open++;
		so.accepted++;
	}
}

/* echo: send back what is buffered; 1 when all is sent, 0 when blocked, -1 on error */
static int o_echo_flush(int fd, struct oconn *c)
{
	while (c->eoff < c->elen) {
		ssize_t n = send(fd, c->ebuf + c->eoff, c->elen - c->eoff, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		o_count(1, (uint64_t)n);
		c->eoff += (size_t)n;
	}
	c->eoff = c->elen = 0;
	return 1;
}

static void o_event(int fd, uint32_t events)
{
	struct oconn *c = so.c[fd];
	int turns;

	if (!c)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (turns = 0; turns < 4; turns++) {
			unsigned char *dst = so.rbuf;
			size_t room = ORIGIN_CHUNK;
			ssize_t n;

			if (c->cmd == 0) {
				room = 1; /* the command byte alone */
			} else if (c->cmd == 'E') {
				if (c->elen > 0)
					break; /* echo pending: read more once it is sent */
				dst = c->ebuf;
				room = ECHO_BUF;
			}
			n = recv(fd, dst, room, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n <= 0) {
				o_close(fd);
				return;
			}
			o_count(0, (uint64_t)n);
			if (c->cmd == 0) {
				c->cmd = (char)dst[0];
				if (c->cmd == 'E') {
					c->ebuf = malloc(ECHO_BUF);
					if (!c->ebuf)
						tlsclient_die("%s", "out of memory");
				} else if (c->cmd == 'D') {
					o_interest(fd, c, EPOLLIN | EPOLLOUT);
				} else if (c->cmd != 'U') {
					o_close(fd); /* unknown command */
					return;
				}
				continue;
			}
			if (c->cmd == 'E') {
				int r;

				c->elen = (size_t)n;
				c->eoff = 0;
				r = o_echo_flush(fd, c);
				if (r < 0) {
					o_close(fd);
					return;
				}
				if (r == 0) {
					o_interest(fd, c, EPOLLOUT);
					return;
				}
			}
		}
	}
	if (!(events & EPOLLOUT))
		return;
	if (c->cmd == 'E') {
		int r = o_echo_flush(fd, c);

		if (r < 0)
			o_close(fd);
		else if (r > 0)
			o_interest(fd, c, EPOLLIN);
		return;
	}
	if (c->cmd != 'D')
		return;
	for (turns = 0; turns < 4; turns++) {
		ssize_t n = send(fd, so.sbuf, ORIGIN_CHUNK, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				o_close(fd);
			return;
		}
		o_count(1, (uint64_t)n);
	}
}

static volatile uint64_t *map_counters(const char *path, int create)
{
	int fd = open(path, create ? O_RDWR | O_CREAT | O_TRUNC : O_RDONLY, 0644);
	void *p;

	if (fd < 0)
		tlsclient_die("cannot open %s: %s", path, strerror(errno));
	if (create && ftruncate(fd, 4096) < 0)
		tlsclient_die("ftruncate %s: %s", path, strerror(errno));
	p = mmap(NULL, 4096, create ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		tlsclient_die("mmap %s: %s", path, strerror(errno));
	close(fd);
	return p;
}

static int serve(const struct opts *o)
{
	struct epoll_event e, evs[MAX_EVENTS];
	int one = 1, sfd;
	size_t i;

	so.rbuf = malloc(ORIGIN_CHUNK);
	so.sbuf = malloc(ORIGIN_CHUNK);
	if (!so.rbuf || !so.sbuf)
		tlsclient_die("%s", "out of memory");
	for (i = 0; i < ORIGIN_CHUNK; i++)
		so.sbuf[i] = pattern(i);
	so.ctr = o->counters ? map_counters(o->counters, 1) : so.local_ctr;

	so.lfd = socket(o->net.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (so.lfd < 0)
		tlsclient_die("socket: %s", strerror(errno));
	setsockopt(so.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(so.lfd, (struct sockaddr *)&o->net.addr, o->net.addrlen) < 0)
		tlsclient_die("bind %s: %s", o->net.target, strerror(errno));
	if (listen(so.lfd, 4096) < 0)
		tlsclient_die("listen: %s", strerror(errno));

	so.ep = tlsclient_epoll(EV_SIGNAL, &sfd);
	e.events = EPOLLIN;
	e.data.u64 = EV_LISTEN;
	epoll_ctl(so.ep, EPOLL_CTL_ADD, so.lfd, &e);
	if (!o->quiet)
		fprintf(stderr, "tcpload serve: listening on %s\n", o->net.target);

	for (;;) {
		int k = tlsclient_wait(so.ep, evs, MAX_EVENTS, -1), j;

		for (j = 0; j < k; j++) {
			uint64_t d = evs[j].data.u64;

			if (d == EV_SIGNAL) {
				fprintf(stderr,
				        "tcpload serve: stopping; %lu connections accepted, %lu "
				        "open, "
				        "%llu bytes received, %llu sent\n",
				        so.accepted, so.open, (unsigned long long)so.local_ctr[0],
				        (unsigned long long)so.local_ctr[1]);
				return 0;
			}
			if (d == EV_LISTEN)
				o_accept();
			else
				o_event((int)d, evs[j].events);
		}
	}
}

/* ---- the client ---- */

enum cstate {
	CS_FREE,
	CS_CONNECTING,
	CS_HANDSHAKE,
	CS_HELLO, /* sending the command (and the echo bytes) */
	CS_STREAM, /* up: writing; down: reading */
	CS_HELD, /* idle: echo received, held */
	CS_CHECKED, /* check: echo received and verified */
	CS_DEAD,
};

struct conn {
	int fd;
	uint32_t gen;
	uint32_t events;
	enum cstate st;
	SSL *ssl;
	const unsigned char *hello; /* command + echo bytes */
	size_t hello_len, hello_off;
	int probe; /* a probe connection (up, down with -r) */
	uint64_t t_open;
	size_t echo_got;
	size_t wpend; /* up: length of the SSL_write being retried, 0 if none */
	uint64_t bytes; /* payload: sent (up) or received (down) */
	uint64_t bytes_at_meas, bytes_window;
};

static struct {
	struct opts o;
	SSL_CTX *ctx;
	int ep, sfd;
	struct conn *c;
	unsigned char *buf, *rbuf, *hello;
	volatile uint64_t *ctr;
	uint64_t t0, t_all_up, t_meas, t_end, t_stop, t_ready;
	int stop, measuring, measured, ready;
	unsigned next, setting_up, up, streaming, failed, dropped, errors, logged;
	struct cpu_snap s0, s1;
	uint64_t ctr0[2], ctr1[2];
	struct tlsclient_params tls; /* negotiated by the first connection */
	char last_error[256];

	/* probes: new connections, each a handshake and a 1-byte echo, during up and down */
	unsigned nprobe_slots;
	uint64_t probe_period, probe_next;
	uint64_t *probe_ns; /* latencies of the completed probes */
	unsigned probe_n, probe_cap, probe_failed, probe_skipped;
} g;

static const unsigned char probe_hello[2] = {'E', 'p'};

static void note_error(const char *what, const char *why)
{
	snprintf(g.last_error, sizeof(g.last_error), "%s: %s", what, why);
	if (g.logged < MAX_ERROR_LOGS && !g.o.quiet) {
		fprintf(stderr, "tcpload: %s\n", g.last_error);
		if (++g.logged == MAX_ERROR_LOGS)
			fprintf(stderr, "tcpload: (further errors not shown)\n");
	}
}

static void interest(struct conn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev,
	                        .data.u64 = ((uint64_t)c->gen << 32) | (uint64_t)(c - g.c)};

	if (ev == c->events)
		return;
	if (epoll_ctl(g.ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) < 0)
		tlsclient_die("epoll_ctl: %s", strerror(errno));
	c->events = ev;
}

static void conn_close(struct conn *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->events = 0;
}

/* a connection that failed or was closed: counted once, never reopened */
static void conn_fail(struct conn *c, const char *what, const char *why)
{
	if (c->probe) {
		g.probe_failed++;
		note_error("probe", why);
		conn_close(c);
		c->st = CS_FREE;
		(void)what;
		return;
	}
	if (c->st == CS_HELD) {
		g.dropped++; /* idle: was up, closed later */
		g.up--;
	} else if (c->st == CS_STREAM) {
		g.errors++; /* up/down: a stream ended during the run */
		g.streaming--;
	} else {
		g.failed++; /* during set-up */
		g.setting_up--;
	}
	note_error(what, why);
	conn_close(c);
	c->st = CS_DEAD;
}

static const char *tls_reason(struct conn *c, int e, int saved_errno)
{
	static char buf[320];
	unsigned long err = ERR_peek_last_error();

	if (c->ssl && g.o.net.ca && SSL_get_verify_result(c->ssl) != X509_V_OK)
		snprintf(buf, sizeof(buf), "server certificate: %s",
		         X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
	else if (err)
		snprintf(buf, sizeof(buf), "%s", ERR_reason_error_string(err));
	else if (e == SSL_ERROR_SYSCALL)
		snprintf(buf, sizeof(buf), "%s",
		         saved_errno ? strerror(saved_errno) : "connection closed by the peer");
	else if (e == SSL_ERROR_ZERO_RETURN)
		snprintf(buf, sizeof(buf), "closed by the peer (close_notify)");
	else
		snprintf(buf, sizeof(buf), "SSL error %d", e);
	ERR_clear_error();
	return buf;
}

/* why the last c_recv or c_send returned IO_ERROR */
static const char *io_why;

static const char *io_reason(struct conn *c, const struct tlsclient_err *e)
{
	return e->ssl ? tls_reason(c, e->ssl, e->sys) : strerror(e->sys);
}

/* read/write on a connection, TLS or not: >0 bytes, 0 end of stream, or an IO_ code */
static long c_recv(struct conn *c, unsigned char *b, size_t n)
{
	struct tlsclient_err e;
	long r = tlsclient_recv(c->fd, c->ssl, b, n, &e);

	if (r == IO_ERROR)
		io_why = io_reason(c, &e);
	return r;
}

static long c_send(struct conn *c, const unsigned char *b, size_t n)
{
	struct tlsclient_err e;
	long r = tlsclient_send(c->fd, c->ssl, b, n, &e);

	if (r == IO_ERROR)
		io_why = io_reason(c, &e);
	return r;
}

static void conn_open(struct conn *c)
{
	int fd = socket(g.o.net.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	c->gen++;
	c->events = 0;
	c->bytes = c->bytes_at_meas = c->bytes_window = 0;
	c->hello_off = c->echo_got = c->wpend = 0;
	c->t_open = tlsclient_now_ns();
	if (!c->probe)
		g.setting_up++;
	if (fd < 0) {
		c->st = CS_CONNECTING;
		conn_fail(c, "socket", strerror(errno));
		return;
	}
	c->fd = fd;
	c->st = CS_CONNECTING;
	if (tlsclient_connect(fd, &g.o.net, 0) < 0) {
		conn_fail(c, "connect", strerror(errno));
		return;
	}
	interest(c, EPOLLOUT);
}

static void conn_step(struct conn *c, uint32_t events);

static void conn_connected(struct conn *c)
{
	int err = tlsclient_sock_error(c->fd);

	if (err) {
		conn_fail(c, "connect", strerror(err));
		return;
	}
	if (g.o.net.plain) {
		c->st = CS_HELLO;
		return;
	}
	c->ssl = tlsclient_ssl_new(g.ctx, c->fd, &g.o.net);
	if (!c->ssl) {
		conn_fail(c, "tls", "SSL_new failed");
		return;
	}
	c->st = CS_HANDSHAKE;
}

/* all N streams up: the warm-up starts */
static void stream_up(struct conn *c)
{
	c->st = CS_STREAM;
	g.setting_up--;
	g.streaming++;
	if (g.streaming == g.o.conns && !g.t_all_up) {
		g.t_all_up = tlsclient_now_ns();
		g.t_meas = g.t_all_up + (uint64_t)(g.o.warmup * (double)NS_PER_S);
		g.t_end = g.t_meas + (uint64_t)(g.o.duration * (double)NS_PER_S);
	}
}

static void conn_step(struct conn *c, uint32_t events)
{
	long n;

	if (c->st == CS_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		conn_connected(c);
		if (c->st != CS_HANDSHAKE && c->st != CS_HELLO)
			return;
	}
	if (c->st == CS_HANDSHAKE) {
		struct tlsclient_err e;
		int r = tlsclient_handshake(c->ssl, &e);

		if (r == IO_WANT_READ || r == IO_WANT_WRITE) {
			interest(c, r == IO_WANT_READ ? EPOLLIN : EPOLLOUT);
			return;
		}
		if (r != 1) {
			conn_fail(c, "handshake", tls_reason(c, e.ssl, e.sys));
			return;
		}
		if (!g.tls.version[0])
			tlsclient_params(c->ssl, &g.tls);
		c->st = CS_HELLO;
	}
	if (c->st == CS_HELLO) {
		/* the command, then (echo) the bytes to come back; echoes are read meanwhile */
		int want_out = 0;

		while (c->hello_off < c->hello_len) {
			size_t k = c->hello_len - c->hello_off;

			if (k > 16384)
				k = 16384;
			n = c_send(c, c->hello + c->hello_off, k);
			if (n == IO_WANT_WRITE || n == IO_WANT_READ) {
				want_out = n == IO_WANT_WRITE;
				break;
			}
			if (n < 0) {
				conn_fail(c, "send", io_why);
				return;
			}
			c->hello_off += (size_t)n;
		}
		if ((g.o.mode == MODE_UP || g.o.mode == MODE_DOWN) && !c->probe) {
			if (c->hello_off < c->hello_len) {
				interest(c, want_out ? EPOLLOUT : EPOLLIN);
				return;
			}
			stream_up(c);
		} else {
			size_t want = c->hello_len - 1;

			while (c->echo_got < want) {
				n = c_recv(c, g.rbuf, CHUNK);
				if (n == IO_WANT_READ || n == IO_WANT_WRITE)
					break;
				if (n == 0) {
					conn_fail(c, "echo",
					          "connection closed before the echo came back");
					return;
				}
				if (n < 0) {
					conn_fail(c, "echo", io_why);
					return;
				}
				if (c->echo_got + (size_t)n > want ||
				    memcmp(g.rbuf, c->hello + 1 + c->echo_got, (size_t)n) != 0) {
					conn_fail(c, "echo", "the bytes that came back differ");
					return;
				}
				c->echo_got += (size_t)n;
			}
			if (c->echo_got < want) {
				interest(c, want_out ? EPOLLIN | EPOLLOUT : EPOLLIN);
				return;
			}
			if (c->hello_off < c->hello_len) {
				interest(c, want_out ? EPOLLIN | EPOLLOUT : EPOLLIN);
				return;
			}
			if (c->probe) {
				if (g.probe_n < g.probe_cap)
					g.probe_ns[g.probe_n++] = tlsclient_now_ns() - c->t_open;
				conn_close(c);
				c->st = CS_FREE;
				return;
			}
			g.setting_up--;
			g.up++;
			c->st = g.o.mode == MODE_CHECK ? CS_CHECKED : CS_HELD;
			if (c->st == CS_CHECKED)
				g.stop = 1;
			interest(c, EPOLLIN);
			return;
		}
	}
	if (c->st == CS_HELD) {
		/* idle: anything but a TLS record with no data (a ticket) ends the hold */
		n = c_recv(c, g.rbuf, CHUNK);
		if (n == IO_WANT_READ || n == IO_WANT_WRITE)
			return;
		conn_fail(c, "idle connection",
		          n == 0  ? "closed by the peer"
		          : n > 0 ? "unexpected bytes"
		                  : io_why);
		return;
	}
	if (c->st != CS_STREAM)
		return;
	if (g.o.mode == MODE_DOWN) {
		int turns;

		for (turns = 0; turns < 16; turns++) {
			n = c_recv(c, g.buf, CHUNK);
			if (n == IO_WANT_READ) {
				interest(c, EPOLLIN);
				return;
			}
			if (n == IO_WANT_WRITE) {
				interest(c, EPOLLOUT);
				return;
			}
			if (n <= 0) {
				conn_fail(c, "download", n == 0 ? "closed by the peer" : io_why);
				return;
			}
			c->bytes += (uint64_t)n;
		}
		interest(c, EPOLLIN);
		return;
	}
	/* MODE_UP: 64 KiB writes; a write that blocked is retried with the same arguments */
	for (int turns = 0; turns < 4; turns++) {
		size_t k = c->wpend ? c->wpend : CHUNK;

		n = c_send(c, g.buf, k);
		if (n == IO_WANT_WRITE || n == IO_WANT_READ) {
			c->wpend = k;
			interest(c, n == IO_WANT_WRITE ? EPOLLOUT : EPOLLIN);
			return;
		}
		if (n < 0) {
			conn_fail(c, "upload", io_why);
			return;
		}
		c->wpend = 0;
		c->bytes += (uint64_t)n;
	}
	interest(c, EPOLLOUT);
}

/* a probe: a new connection, full handshake, 1-byte echo; timed from connect() to the echo */
static void probe_start(void)
{
	unsigned i;

	for (i = g.o.conns; i < g.o.conns + g.nprobe_slots; i++) {
		if (g.c[i].fd < 0) {
			conn_open(&g.c[i]);
			return;
		}
	}
	g.probe_skipped++; /* all slots busy: PROBE_SLOTS probes are stuck already */
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void idle_fill(void)
{
	while (g.next < g.o.conns && g.setting_up < g.o.inflight)
		conn_open(&g.c[g.next++]);
	if (!g.ready && g.next == g.o.conns && g.setting_up == 0) {
		g.ready = 1;
		g.t_ready = tlsclient_now_ns();
		if (g.o.mode == MODE_IDLE) {
			printf("ready=1 up=%u failed=%u setup_s=%.3f\n", g.up, g.failed,
			       (double)(g.t_ready - g.t0) / (double)NS_PER_S);
			fflush(stdout);
			g.t_end = g.t_ready + (uint64_t)(g.o.duration * (double)NS_PER_S);
		} else if (g.o.mode == MODE_CHECK) {
			g.stop = 1;
		}
	}
}

static SSL_CTX *tls_setup(const struct opts *o)
{
	SSL_CTX *ctx = tlsclient_ctx_new(&o->net);

	if (o->mode == MODE_IDLE) {
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	} else if (o->mode == MODE_DOWN) {
		/* fewer read() calls on the load core: several records per read */
		SSL_CTX_set_read_ahead(ctx, 1);
		SSL_CTX_set_default_read_buffer_len(ctx, 4 * 16384 + 2048);
	}
	return ctx;
}

/* the start (first = 1) and the end of the measured window */
static void snapshot(int first)
{
	struct cpu_snap *s = first ? &g.s0 : &g.s1;
	uint64_t *ctr = first ? g.ctr0 : g.ctr1;
	unsigned i;

	for (i = 0; i < g.o.conns; i++) {
		if (first)
			g.c[i].bytes_at_meas = g.c[i].bytes;
		else
			g.c[i].bytes_window = g.c[i].bytes - g.c[i].bytes_at_meas;
	}
	ctr[0] = g.ctr ? __atomic_load_n(&g.ctr[0], __ATOMIC_RELAXED) : 0;
	ctr[1] = g.ctr ? __atomic_load_n(&g.ctr[1], __ATOMIC_RELAXED) : 0;
	cpu_take(s, &g.o);
}

static void report(void)
{
	const struct opts *o = &g.o;
	const char *tls = o->net.plain ? "none" : g.tls.version[0] ? g.tls.version : "unknown";

	printf("mode=%s target=%s tls=%s cipher=%s group=%s conns=%u", mode_names[o->mode],
	       o->net.target, tls,
	       o->net.plain      ? "none"
	       : g.tls.cipher[0] ? g.tls.cipher
	                         : "unknown",
	       o->net.plain     ? "none"
	       : g.tls.group[0] ? g.tls.group
	                        : "unknown",
	       o->conns);
	if (o->mode == MODE_UP || o->mode == MODE_DOWN) {
		double secs = g.measured ? (double)(g.s1.t - g.s0.t) / (double)NS_PER_S : 0;
		double hz = (double)sysconf(_SC_CLK_TCK);
		uint64_t client = 0, bytes, mn = UINT64_MAX, mx = 0;
		double sq = 0, jain = 0;
		double proxy_s = 0, origin_s = 0, self_s = 0, busy_s = 0, irq_s = 0, other_s;
		char per_mb[32] = "n/a";
		unsigned i;

		for (i = 0; i < o->conns; i++) {
			uint64_t b = g.measured ? g.c[i].bytes_window : 0;

			client += b;
			sq += (double)b * (double)b;
			if (b < mn)
				mn = b;
			if (b > mx)
				mx = b;
		}
		if (!g.measured)
			mn = 0;
		/* Jain's fairness index of the streams' bytes: 1 when all moved as much, 1/N when
		 * one stream moved everything */
		if (sq > 0)
			jain = (double)client * (double)client / ((double)o->conns * sq);
		/* measured at the receiver: the origin for uploads (when its counters are
		 * shared), this client for downloads */
		bytes = client;
		if (o->mode == MODE_UP && g.ctr && g.measured)
			bytes = g.ctr1[0] - g.ctr0[0];
		if (g.measured) {
			proxy_s = (double)(g.s1.proxy - g.s0.proxy) / hz;
			origin_s = (double)(g.s1.origin - g.s0.origin) / hz;
			self_s = g.s1.self - g.s0.self;
			busy_s = (double)(g.s1.busy - g.s0.busy) / hz;
			irq_s = (double)(g.s1.irq - g.s0.irq) / hz;
		}
		other_s = busy_s - proxy_s - origin_s - self_s;
		if (other_s < 0)
			other_s = 0;
		if (o->proxy_pids && bytes > 0)
			snprintf(per_mb, sizeof(per_mb), "%.4f",
			         proxy_s * 1e3 / ((double)bytes / 1e6));
		printf(" streams_up=%u duration=%.3f bytes=%llu mbps=%.1f client_bytes=%llu "
		       "stream_min_mbps=%.2f stream_max_mbps=%.2f fairness=%.3f errors=%u "
		       "failed=%u "
		       "proxy_cpu_s=%.3f proxy_ms_per_mb=%s proxy_cpu=%.0f origin_cpu=%.0f "
		       "loadgen_cpu=%.0f other_cpu=%.0f irq_cpu=%.0f",
		       g.streaming, secs, (unsigned long long)bytes,
		       secs > 0 ? (double)bytes / 1e6 / secs : 0, (unsigned long long)client,
		       secs > 0 ? (double)mn / 1e6 / secs : 0,
		       secs > 0 ? (double)mx / 1e6 / secs : 0, jain, g.errors, g.failed, proxy_s,
		       per_mb, secs > 0 ? proxy_s / secs * 100 : 0,
		       secs > 0 ? origin_s / secs * 100 : 0, secs > 0 ? self_s / secs * 100 : 0,
		       secs > 0 ? other_s / secs * 100 : 0, secs > 0 ? irq_s / secs * 100 : 0);
		if (g.nprobe_slots) {
			unsigned pending = 0;
			double p50 = 0, p90 = 0, mx2 = 0;

			/* a probe still unfinished at the end counts with the time it had waited
			 * then, a lower bound: the percentiles cover every probe started */
			for (i = g.o.conns; i < g.o.conns + g.nprobe_slots; i++) {
				if (g.c[i].fd < 0)
					continue;
				pending++;
				if (g.probe_n < g.probe_cap)
					g.probe_ns[g.probe_n++] = g.t_stop - g.c[i].t_open;
			}
			if (g.probe_n > 0) {
				qsort(g.probe_ns, g.probe_n, sizeof(*g.probe_ns), cmp_u64);
				p50 = (double)g.probe_ns[(g.probe_n - 1) / 2] / 1e6;
				p90 = (double)g.probe_ns[(g.probe_n * 9 - 1) / 10] / 1e6;
				mx2 = (double)g.probe_ns[g.probe_n - 1] / 1e6;
			}
			printf(" probes=%u probe_p50_ms=%.2f probe_p90_ms=%.2f probe_max_ms=%.2f "
			       "probe_failed=%u probe_unfinished=%u probe_skipped=%u",
			       g.probe_n, p50, p90, mx2, g.probe_failed, pending, g.probe_skipped);
			if (!o->quiet)
				fprintf(stderr,
				        "tcpload %s: %u probes (new connection, handshake, 1-byte "
				        "echo): p50 %.2f ms, p90 %.2f ms, max %.2f ms; %u failed, "
				        "%u "
				        "unfinished (counted with their wait so far), %u not "
				        "started\n",
				        mode_names[o->mode], g.probe_n, p50, p90, mx2,
				        g.probe_failed, pending, g.probe_skipped);
		}
		printf(" ok=%d\n", g.measured && g.errors == 0 && g.failed == 0 ? 1 : 0);
		if (!o->quiet)
			fprintf(stderr,
			        "tcpload %s: %u streams, %.1f MB/s over %.2f s (per stream "
			        "%.2f..%.2f), "
			        "fairness %.3f, proxy CPU %.0f%%, %s, %s\n",
			        mode_names[o->mode], g.streaming,
			        secs > 0 ? (double)bytes / 1e6 / secs : 0, secs,
			        secs > 0 ? (double)mn / 1e6 / secs : 0,
			        secs > 0 ? (double)mx / 1e6 / secs : 0, jain,
			        secs > 0 ? proxy_s / secs * 100 : 0, tls, g.tls.cipher);
	} else if (o->mode == MODE_IDLE) {
		printf(" up=%u failed=%u dropped=%u setup_s=%.3f held_s=%.3f last_error=%s\n", g.up,
		       g.failed, g.dropped,
		       g.ready ? (double)(g.t_ready - g.t0) / (double)NS_PER_S : 0,
		       g.ready ? (double)(g.t_stop - g.t_ready) / (double)NS_PER_S : 0,
		       g.last_error[0] ? "yes" : "none");
	} else {
		printf(" echo_bytes=%zu echo_ok=%d\n", o->echo_bytes, g.up == 1 ? 1 : 0);
	}
	if (g.last_error[0] && !o->quiet)
		fprintf(stderr, "tcpload: last error: %s\n", g.last_error);
	fflush(stdout);
}

static void client_loop(void)
{
	struct epoll_event evs[MAX_EVENTS];
	unsigned i;

	for (;;) {
		uint64_t t = tlsclient_now_ns(), deadline;
		int k, timeout;

		if (g.o.mode == MODE_UP || g.o.mode == MODE_DOWN) {
			if (g.t_all_up && !g.measuring && t >= g.t_meas) {
				snapshot(1);
				g.measuring = 1;
				g.probe_next = t;
			}
			while (g.measuring && g.nprobe_slots && t >= g.probe_next && t < g.t_end) {
				probe_start();
				g.probe_next += g.probe_period;
			}
			if (g.measuring && t >= g.t_end) {
				snapshot(0);
				g.measured = 1;
				g.stop = 1;
			}
			if (!g.t_all_up && (g.setting_up == 0 || t - g.t0 > SETUP_LIMIT_NS)) {
				fprintf(stderr, "tcpload: only %u of %u streams came up\n",
				        g.streaming, g.o.conns);
				g.stop = 1;
			}
			if (g.t_all_up && g.streaming < g.o.conns && !g.measured)
				g.stop = 1; /* a stream failed: the run is not valid */
		} else {
			idle_fill();
			if (!g.ready && t - g.t0 > SETUP_LIMIT_NS) {
				fprintf(stderr, "tcpload: set-up did not finish in time\n");
				g.stop = 1;
			}
			if (g.ready && g.o.mode == MODE_IDLE && t >= g.t_end)
				g.stop = 1;
		}
		if (g.stop)
			break;
		if (g.o.mode == MODE_UP || g.o.mode == MODE_DOWN)
			deadline = !g.t_all_up   ? g.t0 + SETUP_LIMIT_NS + 1
			           : g.measuring ? g.t_end
			                         : g.t_meas;
		else
			deadline = g.ready ? g.t_end : g.t0 + SETUP_LIMIT_NS + 1;
		if (g.measuring && g.nprobe_slots && g.probe_next < deadline)
			deadline = g.probe_next;
		timeout = tlsclient_timeout_ms(deadline, t);
		k = tlsclient_wait(g.ep, evs, MAX_EVENTS, timeout);
		for (i = 0; i < (unsigned)k; i++) {
			uint64_t d = evs[i].data.u64;
			struct conn *c;

			if (d == EV_SIGNAL) {
				if (tlsclient_signalled(g.sfd))
					g.stop = 1;
				continue;
			}
			c = &g.c[(uint32_t)d];
			if (c->gen != (uint32_t)(d >> 32) || c->fd < 0)
				continue;
			conn_step(c, evs[i].events);
		}
	}
	g.t_stop = tlsclient_now_ns();
}

static int client(void)
{
	unsigned i;
	size_t j;

	if (!g.o.net.plain)
		g.ctx = tls_setup(&g.o);
	if ((g.o.mode == MODE_UP || g.o.mode == MODE_DOWN) && g.o.probe_rate > 0) {
		g.nprobe_slots = PROBE_SLOTS;
		g.probe_period = (uint64_t)((double)NS_PER_S / g.o.probe_rate);
		g.probe_cap = (unsigned)(g.o.probe_rate * g.o.duration) + 16;
		g.probe_ns = calloc(g.probe_cap, sizeof(*g.probe_ns));
		if (!g.probe_ns)
			tlsclient_die("%s", "out of memory");
	}
	g.c = calloc(g.o.conns + g.nprobe_slots, sizeof(*g.c));
	g.buf = malloc(CHUNK);
	g.rbuf = malloc(CHUNK);
	g.hello = malloc(1 + g.o.echo_bytes);
	if (!g.c || !g.buf || !g.rbuf || !g.hello)
		tlsclient_die("%s", "out of memory");
	for (i = 0; i < g.o.conns + g.nprobe_slots; i++) {
		g.c[i].fd = -1;
		g.c[i].hello = g.hello;
		if (i >= g.o.conns) {
			g.c[i].probe = 1;
			g.c[i].hello = probe_hello;
			g.c[i].hello_len = sizeof(probe_hello);
		}
	}
	for (j = 0; j < CHUNK; j++)
		g.buf[j] = pattern(j);
	g.hello[0] = g.o.mode == MODE_UP ? 'U' : g.o.mode == MODE_DOWN ? 'D' : 'E';
	for (j = 0; j < g.o.echo_bytes; j++)
		g.hello[1 + j] = pattern(j * 7 + 3);
	if (g.o.counters)
		g.ctr = map_counters(g.o.counters, 0);

	g.ep = tlsclient_epoll(EV_SIGNAL, &g.sfd);

	g.t0 = tlsclient_now_ns();
	for (i = 0; i < g.o.conns; i++)
		g.c[i].hello_len =
		        (g.o.mode == MODE_UP || g.o.mode == MODE_DOWN) ? 1 : 1 + g.o.echo_bytes;
	if (g.o.mode == MODE_UP || g.o.mode == MODE_DOWN) {
		for (i = 0; i < g.o.conns; i++)
			conn_open(&g.c[i]);
		g.next = g.o.conns;
	}
	client_loop();
	report();
	if (g.o.mode == MODE_CHECK)
		return g.up == 1 ? 0 : 1;
	if (g.o.mode == MODE_IDLE)
		return g.up > 0 ? 0 : 1;
	return g.measured ? 0 : 1;
}

int main(int argc, char **argv)
{
	parse_opts(argc, argv, &g.o);
	signal(SIGPIPE, SIG_IGN);
	if (g.o.mode == MODE_SERVE)
		return serve(&g.o);
	return client();
}
