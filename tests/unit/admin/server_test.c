/*
 * Unit tests for the admin API's HTTP server in src/admin/server.c.
 *
 * The server runs on a libuv loop in a thread of its own; the tests are its clients, with
 * plain blocking sockets (and OpenSSL for TLS) bounded by receive timeouts. Requests are
 * answered by a fake handler that echoes what it was given, installed through the server's
 * test hook: the real handler needs a store.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "admin/admin.h"
#include "core/alloc.h"
#include "core/log.h"
#include "http/parse.h"

/* test hooks of src/admin/server.c */
void moat_admin_server_set_handler(void (*fn)(struct moat_admin_ctx *,
                                              const struct moat_admin_req *,
                                              struct moat_admin_resp *));
void moat_admin_server_set_timeouts(uint64_t request_ms, uint64_t idle_ms);
int moat_admin_server_port(const struct moat_admin_server *s);

#define CLIENT_TIMEOUT_MS 5000
#define BIG_BODY (1024 * 1024)

/* ---- the fake handler ----------------------------------------------------------------------- */

static atomic_int handled;
/* what the handler found wrong: it runs on the loop's thread, where cmocka cannot fail */
static atomic_int handler_errors;

static void json_text(char *out, size_t cap, const char *s)
{
	snprintf(out, cap, "%s", s ? s : "(null)");
	for (char *p = out; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '?';
}

static void fake_handle(struct moat_admin_ctx *ctx, const struct moat_admin_req *req,
                        struct moat_admin_resp *resp)
{
	char method[32], target[256], auth[128], ctype[64], body[64], source[64];
	size_t cap = 1024;

	atomic_fetch_add(&handled, 1);
	resp->status = 200;
	if (strcmp(req->target, "/big") == 0) {
		resp->body = moat_malloc(BIG_BODY);
		if (resp->body == NULL) {
			atomic_fetch_add(&handler_errors, 1);
			resp->status = 500;
			return;
		}
		memset(resp->body, ' ', BIG_BODY);
		memcpy(resp->body, "{}", 2);
		resp->body_len = BIG_BODY;
		return;
	}
	if (strcmp(req->target, "/204") == 0) {
		resp->status = 204;
		return;
	}
	if (strcmp(req->target, "/405") == 0) {
		resp->status = 405;
		snprintf(resp->allow, sizeof(resp->allow), "GET, POST");
	} else if (strcmp(req->target, "/429") == 0) {
		resp->status = 429;
		resp->retry_after = 42;
	}
	/* the body must be NUL-terminated just after its end */
	if (req->body == NULL || req->body[req->body_len] != '\0' || req->source == NULL ||
	    req->now_ms < 1700000000000LL)
		atomic_fetch_add(&handler_errors, 1);
	json_text(method, sizeof(method), req->method);
	json_text(target, sizeof(target), req->target);
	json_text(auth, sizeof(auth), req->authorization);
	json_text(ctype, sizeof(ctype), req->content_type);
	json_text(body, sizeof(body), req->body_len < sizeof(body) ? req->body : "(long)");
	json_text(source, sizeof(source), req->source);
	resp->body = moat_malloc(cap);
	if (resp->body == NULL) {
		atomic_fetch_add(&handler_errors, 1);
		resp->status = 500;
		return;
	}
	resp->body_len = (size_t)snprintf(
	        resp->body, cap,
	        "{\"method\":\"%s\",\"target\":\"%s\",\"auth\":\"%s\",\"ctype\":\"%s\","
	        "\"has_length\":%d,\"body_len\":%zu,\"body\":\"%s\",\"source\":\"%s\"}",
	        method, target, auth, ctype, req->has_length, req->body_len, body, source);
}

/* ---- the server in its thread --------------------------------------------------------------- */

static uv_loop_t loop;
static uv_async_t stop_async;
static pthread_t loop_thread;
static struct moat_admin_server *server;
static int port;
static char tmpdir[64];
static char cert_path[128], key_path[128];

static void on_stop(uv_async_t *a)
{
	moat_admin_server_stop(server);
	uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *arg)
{
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

static void start_listen(const char *listen, int tls, uint64_t request_ms, uint64_t idle_ms)
{
	const char *err = NULL;

	moat_admin_server_set_handler(fake_handle);
	moat_admin_server_set_timeouts(request_ms, idle_ms);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(moat_admin_server_start(&loop, NULL, listen, tls ? cert_path : NULL,
	                                         tls ? key_path : NULL, &err, &server),
	                 MOAT_OK);
	assert_non_null(server);
	port = moat_admin_server_port(server);
	assert_true(port > 0);
	assert_int_equal(uv_async_init(&loop, &stop_async, on_stop), 0);
	atomic_store(&handled, 0);
	atomic_store(&handler_errors, 0);
	assert_int_equal(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
}

static void start(int tls, uint64_t request_ms, uint64_t idle_ms)
{
	start_listen("127.0.0.1:0", tls, request_ms, idle_ms);
}

/* Stops the server and checks that it closed every handle: the loop has nothing left. */
static void stop(void)
{
	uv_async_send(&stop_async);
	pthread_join(loop_thread, NULL);
	assert_int_equal(uv_loop_close(&loop), 0);
	server = NULL;
	assert_int_equal(atomic_load(&handler_errors), 0);
}

/* ---- clients -------------------------------------------------------------------------------- */

struct client {
	int fd;
	SSL *ssl;
	SSL_CTX *tls;
	char buf[BIG_BODY + 65536];
	size_t len;
};

struct response {
	int status;
	char head[2048];
	char body[4096];
	size_t body_len;
	int keep_alive;
};

static void set_timeout(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}

static int connect_fd(int family, int p)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	set_timeout(fd, CLIENT_TIMEOUT_MS);
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)p);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)p);
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
	return fd;
}

static struct client *client_new_family(int family)
{
	struct client *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->fd = connect_fd(family, port);
	return c;
}

static struct client *client_new(void)
{
	return client_new_family(AF_INET);
}

static struct client *tls_client_new(void)
{
	struct client *c = client_new();

	c->tls = SSL_CTX_new(TLS_client_method());
	assert_non_null(c->tls);
	assert_int_equal(SSL_CTX_load_verify_locations(c->tls, cert_path, NULL), 1);
	SSL_CTX_set_verify(c->tls, SSL_VERIFY_PEER, NULL);
	c->ssl = SSL_new(c->tls);
	assert_non_null(c->ssl);
	SSL_set_fd(c->ssl, c->fd);
	assert_int_equal(SSL_set1_host(c->ssl, "localhost"), 1);
	assert_int_equal(SSL_connect(c->ssl), 1);
	return c;
}

static void client_free(struct client *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	SSL_CTX_free(c->tls);
	close(c->fd);
	free(c);
}

static void send_bytes(struct client *c, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n =
		        c->ssl ? SSL_write(c->ssl, s, (int)len) : send(c->fd, s, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		s += n;
		len -= (size_t)n;
	}
}

static void send_str(struct client *c, const char *s)
{
	send_bytes(c, s, strlen(s));
}

/* Reads more bytes into c->buf: the count, 0 at the end of the stream, -1 on an error (a
 * reset) or the receive timeout. */
static ssize_t fill(struct client *c)
{
	ssize_t n;

	assert_true(c->len < sizeof(c->buf));
	if (c->ssl != NULL) {
		n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, (int)n);

			ERR_clear_error();
			return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
		}
	} else {
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n < 0)
			return -1;
	}
	c->len += (size_t)n;
	return n;
}

static void take(struct client *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static const char *header(const struct moat_http_response *res, const char *name, char *out,
                          size_t cap)
{
	const struct moat_http_header *h = moat_http_header_find(res->headers, res->nheaders, name);

	if (h == NULL)
		return NULL;
	snprintf(out, cap, "%.*s", (int)h->value.len, h->value.p);
	return out;
}

/* Reads one response, checked with our strict response parser. The status, 0 if the stream
 * ended (or was reset) before a response. */
static int read_response_head(struct client *c, struct response *r, int is_head)
{
	struct moat_http_response res;
	const char *err = NULL;
	char v[128];
	int rc;

	memset(r, 0, sizeof(*r));
	for (;;) {
		rc = c->len > 0
		             ? moat_http_parse_response(c->buf, c->len, NULL, is_head, &res, &err)
		             : MOAT_EAGAIN;
		if (rc == MOAT_OK)
			break;
		assert_int_equal(rc, MOAT_EAGAIN);
		if (fill(c) <= 0) {
			assert_int_equal(c->len, 0);
			return 0;
		}
	}
	r->status = res.status;
	r->keep_alive = res.keep_alive;
	snprintf(r->head, sizeof(r->head), "%.*s", (int)res.head_len, c->buf);
	if (res.status < 200) {
		take(c, res.head_len);
		return r->status;
	}
	assert_string_equal(header(&res, "cache-control", v, sizeof(v)), "no-store");
	if (res.status != 204)
		assert_int_equal(res.framing, is_head ? MOAT_BODY_NONE : MOAT_BODY_LENGTH);
	else
		assert_null(header(&res, "content-length", v, sizeof(v)));
	while (c->len < res.head_len + res.content_length)
		assert_true(fill(c) > 0);
	r->body_len = (size_t)res.content_length;
	if (r->body_len > 0) {
		assert_string_equal(header(&res, "content-type", v, sizeof(v)), "application/json");
		snprintf(r->body, sizeof(r->body), "%.*s", (int)r->body_len, c->buf + res.head_len);
	}
	take(c, res.head_len + (size_t)res.content_length);
	return r->status;
}

static int read_response(struct client *c, struct response *r)
{
	return read_response_head(c, r, 0);
}

/* The server closes: end of stream (or a reset) with no further bytes. */
static void expect_closed(struct client *c)
{
	ssize_t n = fill(c);

	assert_true(n <= 0);
	assert_int_equal(c->len, 0);
}

static void expect_in(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("\"%s\" not in \"%s\"", needle, hay);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: admin\r\n\r\n"

/* ---- tests ---------------------------------------------------------------------------------- */

static void simple_get(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(c, "GET /v1/health?x=1 HTTP/1.1\r\nHost: admin\r\n"
	            "Authorization: Bearer moat_1_abc\r\n\r\n");
	assert_int_equal(read_response(c, &r), 200);
	assert_true(r.keep_alive);
	expect_in(r.body, "\"method\":\"GET\"");
	expect_in(r.body, "\"target\":\"/v1/health?x=1\"");
	expect_in(r.body, "\"auth\":\"Bearer moat_1_abc\"");
	expect_in(r.body, "\"ctype\":\"(null)\"");
	expect_in(r.body, "\"has_length\":0,\"body_len\":0");
	expect_in(r.body, "\"source\":\"127.0.0.1\"");
	expect_in(r.head, "HTTP/1.1 200 OK\r\n");
	client_free(c);
	stop();
}

static void post_body(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(c, "POST /v1/tenants HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n"
	            "Content-Length: 11\r\n\r\n{\"a\":true}x");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"method\":\"POST\"");
	expect_in(r.body, "\"ctype\":\"application/json\"");
	expect_in(r.body, "\"has_length\":1,\"body_len\":11,\"body\":\"{?a?:true}x\"");
	/* an empty body with a length */
	send_str(c, "DELETE /v1/x HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"has_length\":1,\"body_len\":0");
	client_free(c);
	stop();
}

static void special_headers(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(c, GET("/405"));
	assert_int_equal(read_response(c, &r), 405);
	expect_in(r.head, "\r\nAllow: GET, POST\r\n");
	send_str(c, GET("/429"));
	assert_int_equal(read_response(c, &r), 429);
	expect_in(r.head, "\r\nRetry-After: 42\r\n");
	send_str(c, GET("/204"));
	assert_int_equal(read_response(c, &r), 204);
	assert_int_equal(r.body_len, 0);
	/* HEAD: the length of the body, not the body */
	send_str(c, "HEAD /x HTTP/1.1\r\nHost: admin\r\n\r\n");
	assert_int_equal(read_response_head(c, &r, 1), 200);
	expect_in(r.head, "Content-Length: ");
	send_str(c, GET("/after-head"));
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/after-head\"");
	/* two Authorization headers: which one counts is not for us to guess */
	send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n");
	assert_int_equal(read_response(c, &r), 400);
	expect_in(r.head, "Connection: close");
	expect_closed(c);
	client_free(c);
	assert_int_equal(atomic_load(&handled), 5);
	stop();
}

static void keep_alive(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	for (int i = 0; i < 3; i++) {
		send_str(c, GET("/one"));
		assert_int_equal(read_response(c, &r), 200);
		assert_true(r.keep_alive);
		assert_null(strstr(r.head, "Connection"));
	}
	assert_int_equal(atomic_load(&handled), 3);
	client_free(c);
	stop();
}

static void pipelined(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(c, GET("/first") "POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: "
	                          "3\r\n\r\nabc" GET("/third"));
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/first\"");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/second\"");
	expect_in(r.body, "\"body\":\"abc\"");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/third\"");
	client_free(c);
	stop();
}

static void connection_close(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	/* the request after the closing one is never answered */
	send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" GET("/y"));
	assert_int_equal(read_response(c, &r), 200);
	assert_false(r.keep_alive);
	expect_in(r.head, "\r\nConnection: close\r\n");
	expect_closed(c);
	client_free(c);

	/* HTTP/1.0 closes unless asked to keep the connection */
	c = client_new();
	send_str(c, "GET /x HTTP/1.0\r\n\r\n");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.head, "\r\nConnection: close\r\n");
	expect_closed(c);
	client_free(c);
	c = client_new();
	send_str(c, "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.head, "\r\nConnection: keep-alive\r\n");
	send_str(c, "GET /y HTTP/1.0\r\n\r\n");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/y\"");
	expect_closed(c);
	client_free(c);
	assert_int_equal(atomic_load(&handled), 4);
	stop();
}

/* A client that half-closes after its request still gets the answer. */
static void half_close(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(c, GET("/x") "GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
	assert_int_equal(read_response(c, &r), 200);
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/y\"");
	expect_closed(c);
	client_free(c);
	stop();
}

static void refused(const char *request, int status, const char *error)
{
	struct client *c = client_new();
	struct response r;

	send_str(c, request);
	assert_int_equal(read_response(c, &r), status);
	expect_in(r.head, "\r\nConnection: close\r\n");
	expect_in(r.body, error);
	expect_in(r.body, "\"detail\":\"");
	expect_closed(c);
	client_free(c);
}

static void refusals(void **state)
{
	static const char big_head[] = "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ";
	char *big;

	start(0, 5000, 5000);
	/* no body is sent: the answer must not wait for it */
	refused("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413,
	        "{\"error\":\"payload_too_large\",");
	refused("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	        411, "{\"error\":\"length_required\",");
	refused("GARBAGE\r\n\r\n", 400, "{\"error\":\"bad_request\",");
	refused("GET /x HTTP/1.1\r\n\r\n", 400, "{\"error\":\"bad_request\",");
	refused("GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505, "\"error\":");
	refused("GET /x HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417, "\"error\":");

	big = malloc(20 * 1024 + 64);
	assert_non_null(big);
	memcpy(big, big_head, strlen(big_head));
	memset(big + strlen(big_head), 'b', 20 * 1024);
	memcpy(big + strlen(big_head) + 20 * 1024, "\r\n\r\n", 5);
	refused(big, 431, "{\"error\":\"header_fields_too_large\",");
	memset(big, 'a', 20 * 1024);
	memcpy(big, "GET /", 5);
	memcpy(big + 10 * 1024, " HTTP/1.1\r\nHost: a\r\n\r\n", 23);
	refused(big, 414, "{\"error\":\"uri_too_long\",");
	free(big);
	assert_int_equal(atomic_load(&handled), 0);
	stop();
}

/* A client that sends its body without waiting still reads the refusal: the server keeps
 * reading (and discarding) after it answered, so its close does not reset the connection
 * under the answer. */
static void refused_while_sending(void **state)
{
	enum { PART = 512 * 1024 };
	struct client *c;
	struct response r;
	char *body = malloc(PART);

	assert_non_null(body);
	memset(body, 'x', PART);
	start(0, 5000, 5000);
	c = client_new();
	send_str(c, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n");
	send_bytes(c, body, PART);
	assert_int_equal(read_response(c, &r), 413);
	/* a clean end of stream, not a reset: the server did not close with our bytes unread */
	assert_int_equal(fill(c), 0);
	client_free(c);
	free(body);
	assert_int_equal(atomic_load(&handled), 0);
	stop();
}

static void body_at_limit(void **state)
{
	struct client *c;
	struct response r;
	char *body = malloc(MOAT_ADMIN_MAX_BODY);
	char head[128];

	assert_non_null(body);
	memset(body, 'z', MOAT_ADMIN_MAX_BODY);
	start(0, 5000, 5000);
	c = client_new();
	snprintf(head, sizeof(head), "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
	         MOAT_ADMIN_MAX_BODY);
	send_str(c, head);
	send_bytes(c, body, MOAT_ADMIN_MAX_BODY);
	send_str(c, GET("/next"));
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"body_len\":1048576,\"body\":\"(long)\"");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/next\"");
	client_free(c);
	free(body);
	stop();
}

static void expect_continue(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(
	        c,
	        "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
	/* the interim answer comes before any of the body is sent */
	assert_int_equal(read_response(c, &r), 100);
	assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
	assert_int_equal(atomic_load(&handled), 0);
	send_str(c, "hello");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"body_len\":5,\"body\":\"hello\"");
	/* with the body already sent, no interim answer */
	send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: "
	            "2\r\n\r\nok");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"body\":\"ok\"");
	/* an oversized body is refused instead */
	send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
	            "Content-Length: 9999999\r\n\r\n");
	assert_int_equal(read_response(c, &r), 413);
	expect_closed(c);
	client_free(c);
	stop();
}

/* The client goes away in the middle of a head, of a body, before reading an answer. */
static void client_disconnects(void **state)
{
	struct client *c;
	struct response r;

	start(0, 5000, 5000);
	c = client_new();
	send_str(c, "GET /x HTTP/1.1\r\nHo");
	client_free(c);
	c = client_new();
	send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc");
	client_free(c);
	c = client_new();
	send_str(c, GET("/big") GET("/big"));
	client_free(c);
	c = client_new();
	send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"body\":\"abc\"");
	client_free(c);
	stop();
}

static void request_timeout(void **state)
{
	struct client *c;
	struct response r;
	int64_t t0, dt;

	start(0, 200, 400);
	/* a head that never ends: 408, then the close */
	c = client_new();
	t0 = mono_ms();
	send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\n");
	assert_int_equal(read_response(c, &r), 408);
	dt = mono_ms() - t0;
	assert_true(dt >= 150 && dt < 3000);
	expect_in(r.body, "{\"error\":\"request_timeout\",");
	expect_closed(c);
	client_free(c);

	/* a body that never ends */
	c = client_new();
	send_str(c, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
	assert_int_equal(read_response(c, &r), 408);
	expect_closed(c);
	client_free(c);

	/* trickling does not extend the deadline: it counts from the first byte */
	c = client_new();
	t0 = mono_ms();
	send_str(c, "G");
	for (int i = 0;; i++) {
		struct pollfd p = {c->fd, POLLIN, 0};

		assert_true(i < 100);
		if (poll(&p, 1, 50) == 1)
			break;
		send_str(c, "E");
	}
	assert_int_equal(read_response(c, &r), 408);
	dt = mono_ms() - t0;
	assert_true(dt >= 150 && dt < 1500);
	client_free(c);

	/* idle: closed without an answer */
	c = client_new();
	t0 = mono_ms();
	expect_closed(c);
	dt = mono_ms() - t0;
	assert_true(dt >= 300 && dt < 3000);
	client_free(c);

	/* idle after an answer too */
	c = client_new();
	send_str(c, GET("/x"));
	assert_int_equal(read_response(c, &r), 200);
	expect_closed(c);
	client_free(c);
	assert_int_equal(atomic_load(&handled), 1);
	stop();
}

/* A client that sends requests and never reads: the server stops taking them once its
 * answers back up, and drops the client when the answer has waited too long. */
static void client_never_reads(void **state)
{
	struct client *c;
	char many[64 * 1024];
	size_t n = 0, sent = 0;
	int requests = 0, small = 4096;
	struct pollfd p;

	start(0, 300, 300);
	c = client_new();
	/* a small receive buffer so the answers back up quickly */
	assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	while (n + sizeof(GET("/big")) < sizeof(many)) {
		memcpy(many + n, GET("/big"), sizeof(GET("/big")) - 1);
		n += sizeof(GET("/big")) - 1;
		requests++;
	}
	while (sent < n) {
		ssize_t w = send(c->fd, many + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0)
			break; /* the server stopped reading: our side is full */
		sent += (size_t)w;
	}
	/* the server gives up on the stalled answer and closes (with a reset: unread bytes) */
	p = (struct pollfd){c->fd, POLLRDHUP, 0};
	assert_int_equal(poll(&p, 1, CLIENT_TIMEOUT_MS), 1);
	assert_true(p.revents & (POLLRDHUP | POLLHUP | POLLERR));
	/* each answer is 1 MiB: a few fit in the socket buffers, not the requests sent */
	assert_true(atomic_load(&handled) < 100);
	assert_true(requests > 1000);
	client_free(c);
	stop();
}

static void many_connections(void **state)
{
	enum { N = 300, LIMIT = 256 };
	struct client *cs[N];
	struct response r;
	int ok = 0, closed = 0;

	start(0, 5000, 10000);
	for (int i = 0; i < N; i++)
		cs[i] = client_new();
	for (int i = 0; i < N; i++) {
		struct client *c = cs[i];

		/* a closed connection may refuse the write already */
		if (send(c->fd, GET("/m"), sizeof(GET("/m")) - 1, MSG_NOSIGNAL) < 0) {
			closed++;
			continue;
		}
		if (read_response(c, &r) == 200)
			ok++;
		else
			closed++;
	}
	assert_int_equal(ok, LIMIT);
	assert_int_equal(closed, N - LIMIT);
	for (int i = 0; i < N; i++)
		client_free(cs[i]);
	/* the server lives on: once it has seen the closes, a new client is served */
	for (int attempt = 0;; attempt++) {
		struct client *c = client_new();

		send_str(c, GET("/again"));
		if (read_response(c, &r) == 200) {
			client_free(c);
			break;
		}
		client_free(c);
		assert_true(attempt < 1000);
	}
	stop();
}

static void make_cert(void)
{
	char cmd[512];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/moat-admin-test-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	         "-keyout %s -out %s -days 2 -subj /CN=localhost "
	         "-addext subjectAltName=DNS:localhost 2>/dev/null",
	         key_path, cert_path);
	assert_int_equal(system(cmd), 0);
}

static void remove_cert(void)
{
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
}

static void tls_requests(void **state)
{
	struct client *c;
	struct response r;
	char body[20000];
	char head[128];

	start(1, 5000, 5000);
	c = tls_client_new();
	send_str(c, GET("/tls"));
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/tls\"");
	/* pipelined, with a body over one TLS record */
	memset(body, 'q', sizeof(body));
	snprintf(head, sizeof(head), "PUT /b HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
	         sizeof(body));
	send_str(c, head);
	send_bytes(c, body, sizeof(body));
	send_str(c, GET("/after"));
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"body_len\":20000");
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"target\":\"/after\"");
	/* a big answer */
	send_str(c, "GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
	assert_int_equal(read_response(c, &r), 200);
	assert_int_equal(r.body_len, BIG_BODY);
	expect_closed(c);
	client_free(c);

	/* plain HTTP on the TLS port: no HTTP answer (a TLS alert at most), a close */
	c = client_new();
	send_str(c, GET("/plain"));
	while (fill(c) > 0)
		;
	assert_null(memmem(c->buf, c->len, "HTTP/", 5));
	client_free(c);
	assert_int_equal(atomic_load(&handled), 4);
	stop();

	/* a handshake that never comes */
	start(1, 200, 5000);
	c = client_new();
	expect_closed(c);
	client_free(c);
	stop();
}

static void ipv6(void **state)
{
	struct client *c;
	struct response r;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int have_v6 = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	if (fd >= 0)
		close(fd);
	if (!have_v6)
		skip();
	start_listen("[::1]:0", 0, 5000, 5000);
	c = client_new_family(AF_INET6);
	send_str(c, GET("/six"));
	assert_int_equal(read_response(c, &r), 200);
	expect_in(r.body, "\"source\":\"::1\"");
	client_free(c);
	stop();
}

static void start_fails(const char *listen, const char *cert, const char *key, const char *want)
{
	uv_loop_t l;
	struct moat_admin_server *s = (struct moat_admin_server *)1;
	const char *err = NULL;

	assert_int_equal(uv_loop_init(&l), 0);
	assert_true(moat_admin_server_start(&l, NULL, listen, cert, key, &err, &s) != MOAT_OK);
	assert_null(s);
	assert_non_null(err);
	expect_in(err, want);
	/* whatever was set up is released by the loop */
	uv_run(&l, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&l), 0);
}

static void bad_addresses(void **state)
{
	char listen[64], missing[160];

	start_fails("localhost:9900", NULL, NULL, "admin_listen localhost:9900: not an address");
	start_fails("127.0.0.1", NULL, NULL, "not an address");
	start_fails("127.0.0.1:", NULL, NULL, "not an address");
	start_fails("127.0.0.1:65536", NULL, NULL, "not an address");
	start_fails("127.0.0.1:-1", NULL, NULL, "not an address");
	start_fails("127.0.0.1:80x", NULL, NULL, "not an address");
	start_fails("::1:9900", NULL, NULL, "not an address");
	start_fails("[::1:9900", NULL, NULL, "not an address");
	start_fails("[::1]9900", NULL, NULL, "not an address");
	start_fails("[127.0.0.1]:9900", NULL, NULL, "not an address");
	start_fails("", NULL, NULL, "not an address");
	start_fails("127.0.0.1:0", cert_path, NULL, "go together");
	snprintf(missing, sizeof(missing), "%s/missing.pem", tmpdir);
	start_fails("127.0.0.1:0", missing, key_path, "admin_cert");
	start_fails("127.0.0.1:0", cert_path, missing, "admin_key");
	start_fails("127.0.0.1:0", key_path, key_path, "admin_cert");

	/* a port in use */
	start(0, 5000, 5000);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	{
		char want[160];

		snprintf(want, sizeof(want), "admin_listen %s: address already in use", listen);
		start_fails(listen, NULL, NULL, want);
	}
	stop();
}

/* Stopping closes connections in every state. */
static void stop_with_connections(void **state)
{
	struct client *idle, *partial, *body;
	struct response r;

	start(0, 5000, 5000);
	idle = client_new();
	send_str(idle, GET("/x"));
	assert_int_equal(read_response(idle, &r), 200);
	partial = client_new();
	send_str(partial, "GET /x HT");
	body = client_new();
	send_str(body, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n1");
	send_str(idle, GET("/y"));
	assert_int_equal(read_response(idle, &r), 200);
	stop();
	expect_closed(idle);
	expect_closed(partial);
	expect_closed(body);
	client_free(idle);
	client_free(partial);
	client_free(body);
}

static int setup(void **state)
{
	const char *err = NULL;

	/* refusals are logged at info: keep the test output to what fails */
	assert_int_equal(moat_log_open(NULL, NULL, MOAT_LOG_WARN, &err), MOAT_OK);
	/* as moatd does: a write to a closed connection is an error code, not a signal */
	signal(SIGPIPE, SIG_IGN);
	make_cert();
	return 0;
}

static int teardown(void **state)
{
	remove_cert();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(simple_get),
	        cmocka_unit_test(post_body),
	        cmocka_unit_test(special_headers),
	        cmocka_unit_test(keep_alive),
	        cmocka_unit_test(pipelined),
	        cmocka_unit_test(connection_close),
	        cmocka_unit_test(half_close),
	        cmocka_unit_test(refusals),
	        cmocka_unit_test(refused_while_sending),
	        cmocka_unit_test(body_at_limit),
	        cmocka_unit_test(expect_continue),
	        cmocka_unit_test(client_disconnects),
	        cmocka_unit_test(request_timeout),
	        cmocka_unit_test(client_never_reads),
	        cmocka_unit_test(many_connections),
	        cmocka_unit_test(tls_requests),
	        cmocka_unit_test(ipv6),
	        cmocka_unit_test(bad_addresses),
	        cmocka_unit_test(stop_with_connections),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
