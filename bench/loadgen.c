/*
 * loadgen - an HTTP/1.1 load generator that can present a TLS client certificate.
 *
 * wrk and h2load cannot send a client certificate, and every request through an mTLS gateway
 * needs one, so bench/run.sh uses this instead. One thread per process, non-blocking sockets,
 * level-triggered epoll, OpenSSL. Start several processes to use several cores or more than
 * one process's file descriptors.
 *
 * Modes (bench/README.md has the details):
 *   rps        N keep-alive connections each send a request as soon as the previous response
 *              is complete; counts complete 2xx responses over D seconds.
 *   handshake  N connections at a time, each: TCP connect, a full TLS handshake (sessions are
 *              never resumed), one request with "Connection: close", the whole response, then
 *              close. A handshake counts when its response has arrived: under TLS 1.3 the
 *              client finishes its side before the server has checked the client certificate,
 *              so only a response proves that the server accepted it.
 *   idle       opens N connections (at most -i being set up at once) and completes each
 *              handshake, prints a "ready=1 ..." line on stdout, then holds them idle until
 *              SIGTERM, SIGINT or SIGUSR1, or D seconds; counts those the server closes.
 *   latency    R requests per second on a fixed schedule over N keep-alive connections.
 *              Latency runs from the scheduled send time to the end of the response, so a
 *              stall also counts against the requests queued behind it.
 *
 * Output: one key=value line on stdout (with the "ready" line before it in idle mode), and a
 * human-readable summary on stderr.
 *
 * Build: cc -O2 -Wall -Wextra -Werror bench/loadgen.c bench/tlsclient.c -lssl -lcrypto \
 *            -o build/bench/loadgen
 */
#define _GNU_SOURCE
#include "tlsclient.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define SCRATCH_SIZE (64 * 1024)
#define HEAD_MAX (16 * 1024)
#define LINE_CAP 256
#define MAX_EVENTS 512
#define MAX_ERROR_LOGS 5
#define GRACE_NS (2 * NS_PER_S) /* latency mode: time allowed for the last responses */
#define SETUP_LIMIT_NS (120 * NS_PER_S) /* idle mode: longest connection set-up phase */
#define FATAL_ERRORS 1000 /* give up after this many errors without a single success */

/* epoll data for the two non-connection descriptors; connections use (gen << 32 | index) */
#define EV_TIMER UINT64_MAX
#define EV_SIGNAL (UINT64_MAX - 1)

enum mode { MODE_RPS, MODE_HANDSHAKE, MODE_IDLE, MODE_LATENCY };
static const char *const mode_names[] = {"rps", "handshake", "idle", "latency"};

enum cstate {
	CS_FREE, /* no socket */
	CS_CONNECTING, /* TCP connect in progress */
	CS_HANDSHAKE, /* TLS handshake in progress */
	CS_WRITING, /* sending a request */
	CS_READING, /* reading a response */
	CS_READY, /* latency mode: open, waiting for the schedule */
	CS_HELD, /* idle mode: open and held */
};

enum rstate {
	RS_HEAD,
	RS_BODY_LEN,
	RS_BODY_EOF,
	RS_CHUNK_SIZE,
	RS_CHUNK_DATA,
	RS_CHUNK_CRLF,
	RS_TRAILER,
	RS_DONE,
};

/* Incremental response parser: Content-Length, chunked and read-until-close bodies. */
struct resp {
	enum rstate st;
	char *head; /* HEAD_MAX bytes, allocated on first use and kept */
	size_t hlen;
	char line[LINE_CAP]; /* chunk-size and trailer lines */
	size_t llen;
	uint64_t remaining;
	int status;
	int close; /* the connection cannot be reused after this response */
};

struct conn {
	unsigned idx;
	uint32_t gen; /* bumped on every new socket, so stale epoll events are recognised */
	int fd;
	uint32_t events; /* current epoll interest */
	enum cstate st;
	SSL *ssl;
	size_t woff;
	struct resp r;
	uint64_t t_open; /* connect() */
	uint64_t t_req; /* request start; the scheduled time in latency mode */
	int counted; /* latency mode: this request was scheduled inside the measured window */
	unsigned nreq; /* requests sent on this socket */
	int free_pos; /* latency mode: position in the free stack, -1 when not there */
};

/* Log-linear histogram of nanoseconds: 64 sub-buckets per power of two, <= 1.6% error. */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * 60)

struct hist {
	uint64_t n, sum, min, max;
	uint64_t b[HIST_BUCKETS];
};

struct opts {
	enum mode mode;
	struct tlsclient_opts net; /* -a, -s, -C, -c, -k, -V, -P */
	const char *host, *path;
	unsigned conns;
	double duration, warmup, rate;
	unsigned inflight;
	int request_first;
	int quiet;
};

static struct {
	struct opts o;
	SSL_CTX *ctx;
	int ep, tfd, sfd;
	char *req;
	size_t reqlen;
	char *scratch;
	struct conn *conns;
	unsigned *reopen, *reopen_next; /* connections to open again at the next loop turn */
	unsigned nreopen;

	uint64_t t_start, t_meas, t_end; /* run start, measurement start and end */
	uint64_t t_stop; /* when the loop stopped */
	int stop, stopping, fatal;
	struct rusage ru_meas;
	int ru_taken;

	/* counters; responses, non2xx and the histogram cover the measured window only */
	uint64_t responses, non2xx, errors, reconnects, peer_closed, ever_ok, bytes_in, resumed;
	uint64_t total_ok; /* 2xx responses over the whole run, warm-up included */
	unsigned logged;
	char last_error[256];
	struct hist h;

	/* negotiated parameters, from the first TLS connection */
	struct tlsclient_params tls;

	/* idle mode */
	unsigned idle_next, setting_up, up, failed, dropped, ready;
	uint64_t t_ready;

	/* latency mode */
	double period_ns;
	uint64_t lat_k, lat_next;
	uint64_t *q; /* ring of scheduled send times waiting for a connection */
	size_t qcap, qhead, qlen;
	uint64_t q_overflow;
	unsigned *freel; /* stack of idle connections */
	unsigned nfree;
	uint64_t scheduled, sent, lost;
} g;

const char tlsclient_prog[] = "loadgen";

/* ---- histogram ---- */

static unsigned hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - HIST_SUB_BITS;
	if (shift + 2 > HIST_BUCKETS / HIST_SUB)
		return HIST_BUCKETS - 1;
	return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

static uint64_t hist_low(unsigned i)
{
	if (i < 2 * HIST_SUB)
		return i;
	return (uint64_t)(i % HIST_SUB + HIST_SUB) << (i / HIST_SUB - 1);
}

static uint64_t hist_width(unsigned i)
{
	return i < 2 * HIST_SUB ? 1 : 1ull << (i / HIST_SUB - 1);
}

static void hist_add(struct hist *h, uint64_t v)
{
	if (h->n == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->n++;
	h->sum += v;
	h->b[hist_index(v)]++;
}

/* The value at percentile p (0..100): the middle of its bucket, within [min, max]. */
static uint64_t hist_pct(const struct hist *h, double p)
{
	uint64_t want, cum = 0;
	unsigned i;

	if (h->n == 0)
		return 0;
	if (p >= 100.0)
		return h->max;
	want = (uint64_t)(p / 100.0 * (double)h->n);
	if ((double)want < p / 100.0 * (double)h->n)
		want++;
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		cum += h->b[i];
		if (cum >= want) {
			uint64_t v = hist_low(i) + hist_width(i) / 2;

			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* Prints percentiles and a coarse histogram (powers of two, in microseconds) to stderr. */
static void hist_print(const struct hist *h, const char *what)
{
	static const double pcts[] = {50, 75, 90, 99, 99.9, 99.99, 100};
	uint64_t coarse[48] = {0};
	unsigned i, lo = 48, hi = 0;
	uint64_t peak = 0;

	if (h->n == 0) {
		fprintf(stderr, "  %s: no samples\n", what);
		return;
	}
	fprintf(stderr, "  %s (%llu samples, mean %.1f us, min %.1f us):\n", what,
	        (unsigned long long)h->n, us(h->sum / h->n), us(h->min));
	for (i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
		fprintf(stderr, "    p%-6g %10.1f us\n", pcts[i], us(hist_pct(h, pcts[i])));
	for (i = 0; i < HIST_BUCKETS; i++) {
		uint64_t v = hist_low(i) / 1000;
		unsigned k = v ? 64u - (unsigned)__builtin_clzll(v) : 0;

		if (!h->b[i])
			continue;
		if (k > 47)
			k = 47;
		coarse[k] += h->b[i];
	}
	for (i = 0; i < 48; i++) {
		if (!coarse[i])
			continue;
		if (i < lo)
			lo = i;
		hi = i;
		if (coarse[i] > peak)
			peak = coarse[i];
	}
	fprintf(stderr, "    histogram (us):\n");
	for (i = lo; i <= hi; i++) {
		unsigned long long from = i ? 1ull << (i - 1) : 0, to = 1ull << i;
		unsigned bar = (unsigned)(coarse[i] * 50 / peak);
		char bars[51];

		memset(bars, '#', bar);
		bars[bar] = '\0';
		fprintf(stderr, "    %8llu - %-8llu %10llu %s\n", from, to,
		        (unsigned long long)coarse[i], bars);
	}
}

/* ---- response parser ---- */

static void resp_reset(struct resp *r)
{
	r->st = RS_HEAD;
	r->hlen = 0;
	r->llen = 0;
	r->remaining = 0;
	r->status = 0;
	r->close = 0;
}

/* Case-insensitive comparison of (a, n) with the lower-case string b. */
static int ci_eq(const char *a, size_t n, const char *b)
{
	size_t i;

	if (strlen(b) != n)
		return 0;
	for (i = 0; i < n; i++)
		if (tolower((unsigned char)a[i]) != b[i])
			return 0;
	return 1;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Does the comma-separated list (a, n) contain the token t? */
static int has_token(const char *a, size_t n, const char *t)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (is_ows(a[i]) || a[i] == ','))
			i++;
		s = i;
		while (i < n && a[i] != ',')
			i++;
		e = i;
		while (e > s && is_ows(a[e - 1]))
			e--;
		if (e > s && ci_eq(a + s, e - s, t))
			return 1;
	}
	return 0;
}

/* Is t the last token of the comma-separated list (a, n)? */
static int last_token_is(const char *a, size_t n, const char *t)
{
	size_t s, e = n;

	while (e > 0 && (is_ows(a[e - 1]) || a[e - 1] == ','))
		e--;
	s = e;
	while (s > 0 && a[s - 1] != ',')
		s--;
	while (s < e && is_ows(a[s]))
		s++;
	return e > s && ci_eq(a + s, e - s, t);
}

/*
 * Parses a complete response head (h, n) that ends with its empty line. Returns 0 and sets up
 * the body state, 1 for an interim (1xx) response to skip, or -1 with *err set.
 */
static int head_parse(struct resp *r, const char *h, size_t n, const char **err)
{
	const char *p = h, *end = h + n, *eol;
	size_t len;
	int status, http10, have_cl = 0, te = 0, chunked = 0, conn_close = 0, conn_ka = 0;
	uint64_t cl = 0;

	eol = memchr(p, '\n', (size_t)(end - p));
	len = (size_t)(eol - p);
	if (len && p[len - 1] == '\r')
		len--;
	if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ' || !isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) ||
	    !isdigit((unsigned char)p[11]) || (len > 12 && p[12] != ' ')) {
		*err = "malformed status line";
		return -1;
	}
	status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	http10 = p[7] == '0';

	for (p = eol + 1; p < end; p = eol + 1) {
		const char *colon, *v, *ve;
		size_t nlen;

		eol = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)(eol - p);
		if (len && p[len - 1] == '\r')
			len--;
		if (len == 0)
			break;
		colon = memchr(p, ':', len);
		if (!colon || colon == p || is_ows(colon[-1])) {
			*err = "malformed header line";
			return -1;
		}
		nlen = (size_t)(colon - p);
		v = colon + 1;
		ve = p + len;
		while (v < ve && is_ows(*v))
			v++;
		while (ve > v && is_ows(ve[-1]))
			ve--;
		if (ci_eq(p, nlen, "content-length")) {
			uint64_t x = 0;
			const char *q;

			if (v == ve) {
				*err = "empty Content-Length";
				return -1;
			}
			for (q = v; q < ve; q++) {
				if (!isdigit((unsigned char)*q)) {
					*err = "malformed Content-Length";
					return -1;
				}
				if (x > (UINT64_MAX - 9) / 10) {
					*err = "Content-Length too large";
					return -1;
				}
				x = x * 10 + (uint64_t)(*q - '0');
			}
			if (have_cl && x != cl) {
				*err = "conflicting Content-Length headers";
				return -1;
			}
			have_cl = 1;
			cl = x;
		} else if (ci_eq(p, nlen, "transfer-encoding")) {
			te = 1;
			chunked = last_token_is(v, (size_t)(ve - v), "chunked");
		} else if (ci_eq(p, nlen, "connection")) {
			conn_close |= has_token(v, (size_t)(ve - v), "close");
			conn_ka |= has_token(v, (size_t)(ve - v), "keep-alive");
		}
	}

	if (status < 100) {
		*err = "status code below 100";
		return -1;
	}
	if (status < 200) {
		if (status == 101) {
			*err = "unexpected 101 Switching Protocols";
			return -1;
		}
		return 1;
	}
	r->status = status;
	r->close = conn_close || (http10 && !conn_ka);
	if (status == 204 || status == 304) {
		r->st = RS_DONE;
	} else if (te) {
		/* Transfer-Encoding overrides Content-Length (RFC 9112, 6.3) */
		if (chunked) {
			r->st = RS_CHUNK_SIZE;
		} else {
			r->st = RS_BODY_EOF;
			r->close = 1;
		}
	} else if (have_cl) {
		r->remaining = cl;
		r->st = cl ? RS_BODY_LEN : RS_DONE;
	} else {
		r->st = RS_BODY_EOF;
		r->close = 1;
	}
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Handles one complete line (without its LF) in a chunk-size, chunk-end or trailer state. */
static int chunk_line(struct resp *r, const char *l, size_t len, const char **err)
{
	uint64_t x = 0;
	size_t k;

	if (len && l[len - 1] == '\r')
		len--;
	if (r->st == RS_CHUNK_CRLF) {
		if (len) {
			*err = "missing CRLF after chunk data";
			return -1;
		}
		r->st = RS_CHUNK_SIZE;
		return 0;
	}
	if (r->st == RS_TRAILER) {
		if (!len)
			r->st = RS_DONE;
		return 0;
	}
	for (k = 0; k < len && hexval(l[k]) >= 0; k++) {
		if (x >> 59) {
			*err = "chunk size too large";
			return -1;
		}
		x = x * 16 + (uint64_t)hexval(l[k]);
	}
	if (k == 0 || (k < len && l[k] != ';' && !is_ows(l[k]))) {
		*err = "malformed chunk size";
		return -1;
	}
	if (x == 0) {
		r->st = RS_TRAILER;
	} else {
		r->remaining = x;
		r->st = RS_CHUNK_DATA;
	}
	return 0;
}

/*
 * Feeds n bytes of the response stream. Returns how many were consumed (the rest follow the end
 * of the response), or -1 with *err set. *done says whether the response is complete.
 */
static long resp_feed(struct resp *r, const char *p, size_t n, int *done, const char **err)
{
	size_t i = 0;

	while (i < n && r->st != RS_DONE) {
		switch (r->st) {
		case RS_HEAD: {
			size_t take, total, from, k, endpos = 0;
			int rc;

			if (!r->head && !(r->head = malloc(HEAD_MAX))) {
				*err = "out of memory";
				return -1;
			}
			take = n - i < HEAD_MAX - r->hlen ? n - i : HEAD_MAX - r->hlen;
			from = r->hlen > 3 ? r->hlen - 3 : 0;
			memcpy(r->head + r->hlen, p + i, take);
			total = r->hlen + take;
			/* the head ends with an empty line: CRLF CRLF (bare LF tolerated) */
			for (k = from; k < total; k++) {
				if (r->head[k] != '\n')
					continue;
				if ((k >= 1 && r->head[k - 1] == '\n') ||
				    (k >= 2 && r->head[k - 1] == '\r' && r->head[k - 2] == '\n')) {
					endpos = k + 1;
					break;
				}
			}
			if (!endpos) {
				if (total == HEAD_MAX) {
					*err = "response head larger than 16 KiB";
					return -1;
				}
				r->hlen = total;
				i += take;
				break;
			}
			i += endpos - r->hlen;
			r->hlen = 0;
			rc = head_parse(r, r->head, endpos, err);
			if (rc < 0)
				return -1;
			break; /* rc == 1: an interim response, the real head follows */
		}
		case RS_BODY_LEN:
		case RS_CHUNK_DATA: {
			size_t take = n - i;

			if (take > r->remaining)
				take = (size_t)r->remaining;
			i += take;
			r->remaining -= take;
			if (!r->remaining) {
				r->st = r->st == RS_BODY_LEN ? RS_DONE : RS_CHUNK_CRLF;
				r->llen = 0;
			}
			break;
		}
		case RS_BODY_EOF:
			i = n;
			break;
		case RS_CHUNK_SIZE:
		case RS_CHUNK_CRLF:
		case RS_TRAILER: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t take = nl ? (size_t)(nl - (p + i)) + 1 : n - i;

			if (r->llen + take > LINE_CAP) {
				*err = "chunk or trailer line too long";
				return -1;
			}
			memcpy(r->line + r->llen, p + i, take);
			r->llen += take;
			i += take;
			if (!nl)
				break;
			take = r->llen - 1;
			r->llen = 0;
			if (chunk_line(r, r->line, take, err) < 0)
				return -1;
			break;
		}
		case RS_DONE:
			break;
		}
	}
	*done = r->st == RS_DONE;
	return (long)i;
}

/* ---- connections ---- */

static void conn_open(struct conn *c);
static void conn_write(struct conn *c);
static void lat_dispatch(void);

static void interest(struct conn *c, uint32_t events)
{
	struct epoll_event ev;

	if (c->events == events)
		return;
	ev.events = events;
	ev.data.u64 = (uint64_t)c->gen << 32 | c->idx;
	if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		tlsclient_die("epoll_ctl: %s", strerror(errno));
	c->events = events;
}

static int measuring(uint64_t t)
{
	return t >= g.t_meas && t < g.t_end;
}

static void free_push(struct conn *c)
{
	c->free_pos = (int)g.nfree;
	g.freel[g.nfree++] = c->idx;
}

static void free_remove(struct conn *c)
{
	unsigned last;

	if (c->free_pos < 0)
		return;
	last = g.freel[--g.nfree];
	g.freel[c->free_pos] = last;
	g.conns[last].free_pos = c->free_pos;
	c->free_pos = -1;
}

static void conn_close(struct conn *c, int polite)
{
	if (c->ssl) {
		/* a device that is done sends close_notify; one call, no waiting for the reply */
		if (polite)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->events = 0;
	c->st = CS_FREE;
	free_remove(c);
}

/* Rebuilds a closed connection at the next loop turn, unless the run is ending. */
static void conn_again(struct conn *c)
{
	if (g.stopping || g.o.mode == MODE_IDLE)
		return;
	g.reopen[g.nreopen++] = c->idx;
}

static void note_error(const char *what, const char *why)
{
	snprintf(g.last_error, sizeof(g.last_error), "%s: %s", what, why);
	if (g.logged < MAX_ERROR_LOGS && !g.o.quiet)
		fprintf(stderr, "loadgen: %s\n", g.last_error);
	else if (g.logged == MAX_ERROR_LOGS && !g.o.quiet)
		fprintf(stderr, "loadgen: (further errors not shown)\n");
	g.logged++;
	if (g.errors >= FATAL_ERRORS && g.ever_ok == 0 && !g.stop) {
		fprintf(stderr, "loadgen: %d errors and no success: giving up\n", FATAL_ERRORS);
		g.stop = 1;
		g.fatal = 1;
	}
}

/* A connection failed: count it, close it and, depending on the mode, start another. */
static void conn_error(struct conn *c, const char *what, const char *why)
{
	enum cstate st = c->st;

	g.errors++;
	note_error(what, why);
	if (g.o.mode == MODE_IDLE) {
		if (st == CS_HELD) {
			g.dropped++;
			g.up--;
		} else {
			g.failed++;
			g.setting_up--;
		}
	}
	if (g.o.mode == MODE_LATENCY && (st == CS_WRITING || st == CS_READING) && c->counted)
		g.lost++;
	conn_close(c, 0);
	if (g.o.mode != MODE_IDLE)
		g.reconnects++;
	conn_again(c);
}

static const char *tls_reason(struct conn *c, int e, int saved_errno)
{
	static char buf[320];
	unsigned long err = ERR_get_error();
	/* the verification result only means something when the server is being verified */
	long v = c->ssl && g.o.net.ca ? SSL_get_verify_result(c->ssl) : X509_V_OK;
	size_t n;

	if (err)
		ERR_error_string_n(err, buf, sizeof(buf));
	else if (e == SSL_ERROR_SYSCALL)
		snprintf(buf, sizeof(buf), "%s",
		         saved_errno ? strerror(saved_errno) : "connection closed by the server");
	else
		snprintf(buf, sizeof(buf), "TLS error %d", e);
	n = strlen(buf);
	if (v != X509_V_OK && n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - n, " (certificate: %s)",
		         X509_verify_cert_error_string(v));
	ERR_clear_error();
	return buf;
}

/* Reads from the connection: a byte count, 0 at the end of the stream, or an IO_ code. */
static long conn_recv(struct conn *c, char *buf, size_t n, const char **why)
{
	struct tlsclient_err e;
	long r = tlsclient_recv(c->fd, c->ssl, buf, n, &e);

	if (r == IO_ERROR)
		*why = e.ssl ? tls_reason(c, e.ssl, e.sys) : strerror(e.sys);
	return r;
}

static long conn_send(struct conn *c, const char *buf, size_t n, const char **why)
{
	struct tlsclient_err e;
	long r = tlsclient_send(c->fd, c->ssl, buf, n, &e);

	if (r == IO_ERROR)
		*why = e.ssl ? tls_reason(c, e.ssl, e.sys) : strerror(e.sys);
	return r;
}

static void conn_send_request(struct conn *c, uint64_t t)
{
	c->t_req = t;
	c->woff = 0;
	c->nreq++;
	resp_reset(&c->r);
	c->st = CS_WRITING;
	conn_write(c);
}

/* idle mode: the connection is up, and held until the end */
static void conn_hold(struct conn *c)
{
	c->st = CS_HELD;
	interest(c, EPOLLIN);
	g.setting_up--;
	g.up++;
}

/* latency mode: the connection waits for the schedule to give it a request */
static void conn_idle(struct conn *c)
{
	c->st = CS_READY;
	interest(c, EPOLLIN);
	free_push(c);
}

/* TCP (and TLS, if any) is up. */
static void conn_established(struct conn *c)
{
	g.ever_ok++;
	switch (g.o.mode) {
	case MODE_RPS:
	case MODE_HANDSHAKE:
		conn_send_request(c, tlsclient_now_ns());
		return;
	case MODE_IDLE:
		if (g.o.request_first) {
			conn_send_request(c, tlsclient_now_ns());
			return;
		}
		conn_hold(c);
		return;
	case MODE_LATENCY:
		conn_idle(c);
		lat_dispatch();
		return;
	}
}

/* A response to count in the results: a 2xx one is a sample of the time since t0. */
static void count_response(int ok, uint64_t t0, uint64_t t)
{
	if (ok) {
		g.responses++;
		hist_add(&g.h, t - t0);
	} else {
		g.non2xx++;
	}
}

/* A connection the server closed without an error: another takes its place. */
static void conn_reopen(struct conn *c, int polite)
{
	conn_close(c, polite);
	g.reconnects++;
	conn_again(c);
}

static void conn_response(struct conn *c)
{
	uint64_t t = tlsclient_now_ns();
	int ok = c->r.status >= 200 && c->r.status < 300;

	g.ever_ok++;
	if (ok)
		g.total_ok++;
	switch (g.o.mode) {
	case MODE_RPS:
		if (measuring(t))
			count_response(ok, c->t_req, t);
		if (c->r.close)
			conn_reopen(c, 1);
		else
			conn_send_request(c, t);
		return;
	case MODE_HANDSHAKE:
		if (measuring(t))
			count_response(ok, c->t_open, t);
		conn_close(c, 1);
		conn_again(c);
		return;
	case MODE_IDLE:
		if (!ok)
			g.non2xx++;
		if (c->r.close) {
			conn_error(c, "request",
			           "the server closed the connection after the response");
			return;
		}
		conn_hold(c);
		return;
	case MODE_LATENCY:
		if (c->counted)
			count_response(ok, c->t_req, t);
		if (c->r.close) {
			conn_reopen(c, 1);
		} else {
			conn_idle(c);
		}
		lat_dispatch();
		return;
	}
}

static void conn_eof(struct conn *c)
{
	if (c->st == CS_READING && c->r.st == RS_BODY_EOF) {
		conn_response(c);
		return;
	}
	if (c->st == CS_READY) {
		/* the server closed an unused keep-alive connection: not an error */
		g.peer_closed++;
		conn_reopen(c, 0);
		return;
	}
	if (c->st == CS_READING && c->r.st == RS_HEAD && c->r.hlen == 0)
		conn_error(c, "read", "connection closed before any response byte");
	else if (c->st == CS_READING)
		conn_error(c, "read", "connection closed in the middle of a response");
	else
		conn_error(c, "read", "connection closed by the server");
}

/* An I/O result that says what to wait for: the interest is set and 1 returned. */
static int wait_for(struct conn *c, long n)
{
	if (n == IO_WANT_READ)
		interest(c, EPOLLIN);
	else if (n == IO_WANT_WRITE)
		interest(c, EPOLLOUT);
	else
		return 0;
	return 1;
}

static void conn_read(struct conn *c)
{
	for (;;) {
		const char *why = NULL, *err = NULL;
		long n = conn_recv(c, g.scratch, SCRATCH_SIZE, &why), used;
		int done = 0;

		if (wait_for(c, n))
			return;
		if (n == IO_ERROR) {
			conn_error(c, "read", why);
			return;
		}
		if (n == 0) {
			conn_eof(c);
			return;
		}
		g.bytes_in += (uint64_t)n;
		if (c->st != CS_READING) {
			conn_error(c, "read", "data from the server without a request");
			return;
		}
		used = resp_feed(&c->r, g.scratch, (size_t)n, &done, &err);
		if (used < 0) {
			conn_error(c, "response", err);
			return;
		}
		if (done) {
			if (used != n) {
				conn_error(c, "response", "bytes after the end of the response");
				return;
			}
			conn_response(c);
			return;
		}
	}
}

static void conn_write(struct conn *c)
{
	while (c->woff < g.reqlen) {
		const char *why = NULL;
		long n = conn_send(c, g.req + c->woff, g.reqlen - c->woff, &why);

		if (wait_for(c, n))
			return;
		if (n == IO_ERROR) {
			conn_error(c, "write", why);
			return;
		}
		c->woff += (size_t)n;
	}
	c->st = CS_READING;
	interest(c, EPOLLIN);
}

static void conn_handshake(struct conn *c)
{
	struct tlsclient_err e;
	int r = tlsclient_handshake(c->ssl, &e);

	if (wait_for(c, r))
		return;
	if (r != 1) {
		conn_error(c, "handshake", tls_reason(c, e.ssl, e.sys));
		return;
	}
	if (!g.tls.version[0])
		tlsclient_params(c->ssl, &g.tls);
	if (SSL_session_reused(c->ssl))
		g.resumed++; /* never expected: no session is ever offered */
	conn_established(c);
}

static void conn_connected(struct conn *c)
{
	int err = tlsclient_sock_error(c->fd);

	if (err) {
		conn_error(c, "connect", strerror(err));
		return;
	}
	if (!g.ctx) {
		conn_established(c);
		return;
	}
	c->ssl = tlsclient_ssl_new(g.ctx, c->fd, &g.o.net);
	if (!c->ssl) {
		conn_error(c, "tls", "SSL_new failed");
		return;
	}
	c->st = CS_HANDSHAKE;
	conn_handshake(c);
}

static void conn_open(struct conn *c)
{
	struct epoll_event ev;

	c->fd = socket(g.o.net.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->gen++;
	c->events = EPOLLOUT;
	c->nreq = 0;
	c->counted = 0;
	c->t_open = tlsclient_now_ns();
	resp_reset(&c->r);
	c->st = CS_CONNECTING;
	if (c->fd < 0) {
		conn_error(c, "socket", strerror(errno));
		return;
	}
	if (tlsclient_connect(c->fd, &g.o.net, 1) < 0) {
		conn_error(c, "connect", strerror(errno));
		return;
	}
	ev.events = EPOLLOUT;
	ev.data.u64 = (uint64_t)c->gen << 32 | c->idx;
	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		tlsclient_die("epoll_ctl: %s", strerror(errno));
}

static void conn_event(struct conn *c, uint32_t events)
{
	switch (c->st) {
	case CS_CONNECTING:
		conn_connected(c);
		return;
	case CS_HANDSHAKE:
		conn_handshake(c);
		return;
	case CS_WRITING:
		conn_write(c);
		return;
	case CS_READING:
	case CS_READY:
	case CS_HELD:
		conn_read(c);
		return;
	case CS_FREE:
		return;
	}
	(void)events;
}

/* ---- latency mode: the schedule ---- */

static void lat_schedule(uint64_t t)
{
	while (g.lat_next <= t && g.lat_next < g.t_end) {
		if (g.lat_next >= g.t_meas)
			g.scheduled++;
		if (g.qlen == g.qcap) {
			g.q_overflow++;
		} else {
			g.q[(g.qhead + g.qlen) % g.qcap] = g.lat_next;
			g.qlen++;
		}
		g.lat_k++;
		g.lat_next = g.t_start + (uint64_t)((double)g.lat_k * g.period_ns);
	}
}

static void lat_dispatch(void)
{
	while (g.qlen && g.nfree) {
		struct conn *c = &g.conns[g.freel[g.nfree - 1]];
		uint64_t t = g.q[g.qhead];

		g.qhead = (g.qhead + 1) % g.qcap;
		g.qlen--;
		free_remove(c);
		c->counted = t >= g.t_meas;
		if (c->counted)
			g.sent++;
		conn_send_request(c, t);
	}
}

static void lat_arm(void)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (g.lat_next >= g.t_end)
		return;
	its.it_value.tv_sec = (time_t)(g.lat_next / NS_PER_S);
	its.it_value.tv_nsec = (long)(g.lat_next % NS_PER_S);
	if (timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		tlsclient_die("timerfd_settime: %s", strerror(errno));
}

/* ---- idle mode ---- */

static void idle_fill(void)
{
	while (g.idle_next < g.o.conns && g.setting_up < g.o.inflight && !g.stop) {
		struct conn *c = &g.conns[g.idle_next++];

		g.setting_up++;
		conn_open(c);
	}
	if (!g.ready && g.idle_next == g.o.conns && g.setting_up == 0) {
		g.ready = 1;
		g.t_ready = tlsclient_now_ns();
		g.t_end = g.t_ready + (uint64_t)(g.o.duration * (double)NS_PER_S);
		printf("ready=1 up=%u failed=%u setup_s=%.3f\n", g.up, g.failed,
		       (double)(g.t_ready - g.t_start) / (double)NS_PER_S);
		fflush(stdout);
		if (!g.o.quiet)
			fprintf(stderr, "loadgen: %u connections up, %u failed; holding\n", g.up,
			        g.failed);
	}
}

/* ---- setup ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: loadgen -m MODE -a HOST:PORT [options]\n"
	        "  -m, --mode MODE         rps | handshake | idle | latency\n"
	        "  -a, --addr HOST:PORT    target (an IPv6 address in brackets)\n"
	        "  -s, --sni NAME          server name sent in the TLS ClientHello\n"
	        "  -H, --host NAME         Host header (default: the SNI name, else HOST)\n"
	        "  -u, --path PATH         request path (default /small)\n"
	        "  -C, --ca FILE           verify the server certificate against FILE (default: "
	        "no verification)\n"
	        "  -c, --cert FILE         client certificate chain, PEM\n"
	        "  -k, --key FILE          client private key, PEM\n"
	        "  -V, --tls VERSION       1.2 | 1.3 | any (default any)\n"
	        "  -P, --plain             plain HTTP, no TLS\n"
	        "  -n, --conns N           connections (default 64; idle mode: how many to hold)\n"
	        "  -d, --duration SECONDS  measured time (idle mode: longest hold) (default 10)\n"
	        "  -w, --warmup SECONDS    run before measuring (default 1; idle mode: unused)\n"
	        "  -r, --rate R            latency mode: requests per second in total (default "
	        "1000)\n"
	        "  -i, --in-flight N       idle mode: connections being set up at once (default "
	        "100)\n"
	        "  -R, --request-first     idle mode: one request on each connection before "
	        "holding "
	        "it\n"
	        "  -q, --quiet             no human-readable output\n"
	        "  -h, --help\n");
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
	        {"mode", required_argument, NULL, 'm'},
	        {"addr", required_argument, NULL, 'a'},
	        {"sni", required_argument, NULL, 's'},
	        {"host", required_argument, NULL, 'H'},
	        {"path", required_argument, NULL, 'u'},
	        {"ca", required_argument, NULL, 'C'},
	        {"cert", required_argument, NULL, 'c'},
	        {"key", required_argument, NULL, 'k'},
	        {"tls", required_argument, NULL, 'V'},
	        {"plain", no_argument, NULL, 'P'},
	        {"conns", required_argument, NULL, 'n'},
	        {"duration", required_argument, NULL, 'd'},
	        {"warmup", required_argument, NULL, 'w'},
	        {"rate", required_argument, NULL, 'r'},
	        {"in-flight", required_argument, NULL, 'i'},
	        {"request-first", no_argument, NULL, 'R'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int ch, have_mode = 0;

	memset(o, 0, sizeof(*o));
	o->path = "/small";
	o->conns = 64;
	o->duration = 10;
	o->warmup = 1;
	o->rate = 1000;
	o->inflight = 100;
	while ((ch = getopt_long(argc, argv, "m:a:s:H:u:C:c:k:V:Pn:d:w:r:i:Rqh", lopts, NULL)) !=
	       -1) {
		if (tlsclient_opt(&o->net, ch, optarg))
			continue;
		switch (ch) {
		case 'm':
			o->mode = (enum mode)tlsclient_parse_mode(
			        optarg, mode_names, sizeof(mode_names) / sizeof(mode_names[0]));
			have_mode = 1;
			break;
		case 'H':
			o->host = optarg;
			break;
		case 'u':
			o->path = optarg;
			break;
		case 'n':
			o->conns = (unsigned)tlsclient_parse_num(optarg, "--conns", 1);
			break;
		case 'd':
			o->duration = tlsclient_parse_num(optarg, "--duration", 0.001);
			break;
		case 'w':
			o->warmup = tlsclient_parse_num(optarg, "--warmup", 0);
			break;
		case 'r':
			o->rate = tlsclient_parse_num(optarg, "--rate", 0.001);
			break;
		case 'i':
			o->inflight = (unsigned)tlsclient_parse_num(optarg, "--in-flight", 1);
			break;
		case 'R':
			o->request_first = 1;
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
	if (o->mode == MODE_IDLE)
		o->warmup = 0;
	tlsclient_opts_done(&o->net);
}

static SSL_CTX *tls_setup(const struct opts *o)
{
	SSL_CTX *ctx = tlsclient_ctx_new(&o->net);

	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static void build_request(const struct opts *o)
{
	const char *host = o->host ? o->host : o->net.sni ? o->net.sni : o->net.hostpart;
	size_t cap = 1024 + strlen(o->path) + strlen(host);
	int n;

	g.req = malloc(cap);
	if (!g.req)
		tlsclient_die("%s", "out of memory");
	n = snprintf(g.req, cap,
	             "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-loadgen\r\n%s\r\n", o->path,
	             host, o->mode == MODE_HANDSHAKE ? "Connection: close\r\n" : "");
	g.reqlen = (size_t)n;
}

/* ---- report ---- */

static void report(void)
{
	const struct opts *o = &g.o;
	uint64_t end = g.t_stop < g.t_end ? g.t_stop : g.t_end;
	double secs = end > g.t_meas ? (double)(end - g.t_meas) / (double)NS_PER_S : 0;
	double cpu_pct = 0;
	const char *tls = o->net.plain ? "none" : g.tls.version[0] ? g.tls.version : "unknown";
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	if (g.ru_taken) {
		double span = (double)(g.t_stop - g.t_meas) / (double)NS_PER_S;

		if (span > 0)
			cpu_pct = (tlsclient_cpu_seconds(&ru) - tlsclient_cpu_seconds(&g.ru_meas)) /
			          span * 100.0;
	}

	printf("mode=%s target=%s tls=%s", mode_names[o->mode], o->net.target, tls);
	switch (o->mode) {
	case MODE_RPS:
		printf(" conns=%u duration=%.3f requests=%llu rps=%.1f", o->conns, secs,
		       (unsigned long long)g.responses, secs > 0 ? (double)g.responses / secs : 0);
		break;
	case MODE_HANDSHAKE:
		printf(" conns=%u duration=%.3f handshakes=%llu hps=%.1f", o->conns, secs,
		       (unsigned long long)g.responses, secs > 0 ? (double)g.responses / secs : 0);
		break;
	case MODE_IDLE:
		printf(" conns=%u up=%u failed=%u dropped=%u setup_s=%.3f held_s=%.3f", o->conns,
		       g.up, g.failed, g.dropped,
		       g.ready ? (double)(g.t_ready - g.t_start) / (double)NS_PER_S : 0,
		       g.ready ? (double)(g.t_stop - g.t_ready) / (double)NS_PER_S : 0);
		break;
	case MODE_LATENCY:
		printf(" conns=%u rate=%.1f duration=%.3f scheduled=%llu completed=%llu "
		       "achieved_rps=%.1f incomplete=%llu",
		       o->conns, o->rate, secs, (unsigned long long)g.scheduled,
		       (unsigned long long)g.responses, secs > 0 ? (double)g.responses / secs : 0,
		       (unsigned long long)(g.scheduled - g.responses - g.non2xx - g.lost));
		break;
	}
	if (o->mode != MODE_IDLE)
		printf(" p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f",
		       us(hist_pct(&g.h, 50)), us(hist_pct(&g.h, 90)), us(hist_pct(&g.h, 99)),
		       us(hist_pct(&g.h, 99.9)), us(g.h.max), g.h.n ? us(g.h.sum / g.h.n) : 0);
	printf(" non2xx=%llu errors=%llu reconnects=%llu resumed=%llu total=%llu cpu_pct=%.1f "
	       "cpu_s=%.3f fatal=%d\n",
	       (unsigned long long)g.non2xx, (unsigned long long)g.errors,
	       (unsigned long long)g.reconnects, (unsigned long long)g.resumed,
	       (unsigned long long)g.total_ok, cpu_pct, tlsclient_cpu_seconds(&ru), g.fatal);
	fflush(stdout);

	if (o->quiet)
		return;
	fprintf(stderr, "loadgen %s: %s", mode_names[o->mode], o->net.target);
	if (o->net.plain)
		fprintf(stderr, " (plain HTTP)\n");
	else
		fprintf(stderr, " (%s %s %s, %s)\n", tls, g.tls.cipher,
		        g.tls.group[0] ? g.tls.group : "none",
		        o->net.cert ? "client certificate" : "no client certificate");
	switch (o->mode) {
	case MODE_RPS:
		fprintf(stderr,
		        "  %u keep-alive connections, %.2f s measured after %.1f s warm-up\n",
		        o->conns, secs, o->warmup);
		fprintf(stderr, "  %llu responses (2xx): %.1f per second\n",
		        (unsigned long long)g.responses, secs > 0 ? (double)g.responses / secs : 0);
		hist_print(&g.h, "time per request, closed loop");
		break;
	case MODE_HANDSHAKE:
		fprintf(stderr,
		        "  %u concurrent connections, %.2f s measured after %.1f s warm-up\n"
		        "  %llu full handshakes (each with one request): %.1f per second\n",
		        o->conns, secs, o->warmup, (unsigned long long)g.responses,
		        secs > 0 ? (double)g.responses / secs : 0);
		hist_print(&g.h, "connect to end of response");
		break;
	case MODE_IDLE:
		fprintf(stderr,
		        "  %u of %u connections up at the end; %u failed during set-up, %u closed "
		        "by the server while held\n",
		        g.up, o->conns, g.failed, g.dropped);
		if (g.ready)
			fprintf(stderr, "  set up in %.2f s, held %.2f s\n",
			        (double)(g.t_ready - g.t_start) / (double)NS_PER_S,
			        (double)(g.t_stop - g.t_ready) / (double)NS_PER_S);
		break;
	case MODE_LATENCY:
		fprintf(stderr,
		        "  %.1f requests/s scheduled over %u connections, %.2f s measured after "
		        "%.1f s warm-up\n"
		        "  %llu scheduled, %llu completed (2xx), %llu lost to errors%s\n",
		        o->rate, o->conns, secs, o->warmup, (unsigned long long)g.scheduled,
		        (unsigned long long)g.responses, (unsigned long long)g.lost,
		        g.q_overflow ? ", schedule queue overflowed" : "");
		hist_print(&g.h, "latency from the scheduled send time");
		break;
	}
	fprintf(stderr, "  %llu non-2xx, %llu errors, %llu reconnects, loadgen CPU %.0f%%\n",
	        (unsigned long long)g.non2xx, (unsigned long long)g.errors,
	        (unsigned long long)g.reconnects, cpu_pct);
	if (g.errors)
		fprintf(stderr, "  last error: %s\n", g.last_error);
}

/* ---- main loop ---- */

static int run_done(uint64_t t)
{
	if (g.stop)
		return 1;
	switch (g.o.mode) {
	case MODE_RPS:
	case MODE_HANDSHAKE:
		return t >= g.t_end;
	case MODE_IDLE:
		return g.ready && t >= g.t_end;
	case MODE_LATENCY:
		if (t < g.t_end)
			return 0;
		/* every request scheduled in the window has been answered or lost */
		return t >= g.t_end + GRACE_NS ||
		       (g.qlen == 0 && g.sent == g.responses + g.non2xx + g.lost);
	}
	return 1;
}

static void loop(void)
{
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		uint64_t t = tlsclient_now_ns(), deadline = UINT64_MAX;
		unsigned i, n;
		int k, timeout;

		if (!g.ru_taken && t >= g.t_meas) {
			getrusage(RUSAGE_SELF, &g.ru_meas);
			g.ru_taken = 1;
		}
		if (t >= g.t_end && !g.stopping && g.o.mode != MODE_IDLE)
			g.stopping = 1;
		if (run_done(t))
			break;

		/* swap lists first: an open that fails at once queues its connection again */
		n = g.nreopen;
		if (n) {
			unsigned *list = g.reopen;

			g.reopen = g.reopen_next;
			g.reopen_next = list;
			g.nreopen = 0;
			for (i = 0; i < n; i++)
				conn_open(&g.conns[list[i]]);
		}
		if (g.o.mode == MODE_IDLE) {
			idle_fill();
			if (!g.ready && t - g.t_start > SETUP_LIMIT_NS) {
				for (i = 0; i < g.o.conns; i++) {
					struct conn *c = &g.conns[i];

					if (c->st != CS_FREE && c->st != CS_HELD)
						conn_error(c, "setup", "not up within 120 s");
				}
				g.idle_next = g.o.conns;
				idle_fill();
			}
		}
		if (g.o.mode == MODE_LATENCY) {
			lat_schedule(t);
			lat_dispatch();
		}

		if (g.o.mode != MODE_IDLE || g.ready)
			deadline = g.o.mode == MODE_LATENCY && t >= g.t_end ? g.t_end + GRACE_NS
			                                                    : g.t_end;
		else
			deadline = g.t_start + SETUP_LIMIT_NS + 1;
		if (!g.ru_taken && g.t_meas < deadline)
			deadline = g.t_meas;
		timeout = g.nreopen ? 1 : tlsclient_timeout_ms(deadline, t);

		k = tlsclient_wait(g.ep, evs, MAX_EVENTS, timeout);
		for (i = 0; i < (unsigned)k; i++) {
			uint64_t d = evs[i].data.u64;
			struct conn *c;

			if (d == EV_SIGNAL) {
				if (tlsclient_signalled(g.sfd))
					g.stop = 1;
				continue;
			}
			if (d == EV_TIMER) {
				uint64_t ticks;

				if (read(g.tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
					tlsclient_die("timerfd read: %s", strerror(errno));
				lat_schedule(tlsclient_now_ns());
				lat_dispatch();
				lat_arm();
				continue;
			}
			c = &g.conns[(uint32_t)d];
			if (c->gen != (uint32_t)(d >> 32) || c->fd < 0)
				continue; /* the socket this event was for is gone */
			conn_event(c, evs[i].events);
		}
	}
	g.t_stop = tlsclient_now_ns();
}

int main(int argc, char **argv)
{
	struct epoll_event ev;
	unsigned i;

	parse_opts(argc, argv, &g.o);
	signal(SIGPIPE, SIG_IGN);
	if (!g.o.net.plain)
		g.ctx = tls_setup(&g.o);
	build_request(&g.o);

	g.scratch = malloc(SCRATCH_SIZE);
	g.conns = calloc(g.o.conns, sizeof(*g.conns));
	g.reopen = calloc(g.o.conns, sizeof(*g.reopen));
	g.reopen_next = calloc(g.o.conns, sizeof(*g.reopen_next));
	g.freel = calloc(g.o.conns, sizeof(*g.freel));
	if (!g.scratch || !g.conns || !g.reopen || !g.reopen_next || !g.freel)
		tlsclient_die("%s", "out of memory");
	for (i = 0; i < g.o.conns; i++) {
		g.conns[i].idx = i;
		g.conns[i].fd = -1;
		g.conns[i].free_pos = -1;
	}

	g.ep = tlsclient_epoll(EV_SIGNAL, &g.sfd);

	g.t_start = tlsclient_now_ns();
	g.t_meas = g.t_start + (uint64_t)(g.o.warmup * (double)NS_PER_S);
	g.t_end = g.t_meas + (uint64_t)(g.o.duration * (double)NS_PER_S);

	if (g.o.mode == MODE_LATENCY) {
		g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (g.tfd < 0)
			tlsclient_die("timerfd_create: %s", strerror(errno));
		ev.events = EPOLLIN;
		ev.data.u64 = EV_TIMER;
		epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &ev);
		g.period_ns = (double)NS_PER_S / g.o.rate;
		g.qcap = 1u << 20;
		g.q = malloc(g.qcap * sizeof(*g.q));
		if (!g.q)
			tlsclient_die("%s", "out of memory");
		g.lat_next = g.t_start;
		lat_arm();
	}

	if (g.o.mode == MODE_IDLE) {
		g.t_meas = g.t_start;
		g.t_end = UINT64_MAX;
	} else {
		for (i = 0; i < g.o.conns; i++)
			conn_open(&g.conns[i]);
	}

	loop();
	report();
	return g.fatal ? 1 : 0;
}
