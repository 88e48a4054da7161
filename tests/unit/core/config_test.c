/*
 * Tests for src/core/config.c: valid files, defaults, and every error the loader reports,
 * each with its line. The .c file is included to reach its static helpers.
 *
 * The test provides the allocation wrapper (core/alloc.h) itself, counting live blocks and
 * able to fail the n-th allocation, so alloc.o is not linked.
 */
#include "core/config.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <sys/types.h>

/* ---- allocation wrapper with failure injection ---- */

static long alloc_live; /* blocks not yet freed */
static long alloc_count; /* allocations attempted */
static long alloc_fail_at; /* 0: never fail; n: the n-th allocation fails */

static bool alloc_should_fail(void)
{
	alloc_count++;
	return alloc_fail_at != 0 && alloc_count == alloc_fail_at;
}

void moat_alloc_init(void)
{
}

void *moat_malloc(size_t n)
{
	void *p;

	if (alloc_should_fail())
		return NULL;
	p = malloc(n ? n : 1);
	if (p != NULL)
		alloc_live++;
	return p;
}

void *moat_calloc(size_t count, size_t size)
{
	void *p;

	if (alloc_should_fail())
		return NULL;
	p = calloc(count ? count : 1, size ? size : 1);
	if (p != NULL)
		alloc_live++;
	return p;
}

void *moat_realloc(void *old, size_t n)
{
	void *p;

	if (alloc_should_fail())
		return NULL;
	p = realloc(old, n ? n : 1);
	if (p != NULL && old == NULL)
		alloc_live++;
	return p;
}

void moat_free(void *p)
{
	if (p != NULL)
		alloc_live--;
	free(p);
}

char *moat_strndup(const char *s, size_t n)
{
	char *d = moat_malloc(n + 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *moat_strdup(const char *s)
{
	return moat_strndup(s, strlen(s));
}

/* ---- fixture: a temporary directory with the files configs refer to ---- */

static char tmpdir[256];
static char oldcwd[4096];
static const char *const data_files[] = {"server.pem", "server.key", "ca.pem",
                                         "ca2.pem",    "crl.pem",    "origin-ca.pem"};

static void write_file(const char *name, const char *text, size_t len)
{
	FILE *f = fopen(name, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static int group_setup(void **state)
{
	size_t i;

	(void)state;
	assert_non_null(getcwd(oldcwd, sizeof(oldcwd)));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/moat-config-test-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	assert_int_equal(chdir(tmpdir), 0);
	for (i = 0; i < MOAT_ARRAY_LEN(data_files); i++)
		write_file(data_files[i], "-----BEGIN X-----\n", 18);
	assert_int_equal(mkdir("adir", 0700), 0);
	return 0;
}

static int group_teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(data_files); i++)
		unlink(data_files[i]);
	unlink("test.conf");
	unlink("big.conf");
	rmdir("adir");
	assert_int_equal(chdir(oldcwd), 0);
	assert_int_equal(rmdir(tmpdir), 0);
	return 0;
}

/* ---- collecting reports ---- */

struct report {
	unsigned line;
	char msg[1024];
};

struct reports {
	size_t n, dropped;
	char file[256];
	struct report r[64];
};

static void collect(void *arg, const char *file, unsigned line, const char *msg)
{
	struct reports *rs = arg;

	snprintf(rs->file, sizeof(rs->file), "%s", file);
	if (rs->n == MOAT_ARRAY_LEN(rs->r)) {
		rs->dropped++;
		return;
	}
	rs->r[rs->n].line = line;
	snprintf(rs->r[rs->n].msg, sizeof(rs->r[rs->n].msg), "%s", msg);
	rs->n++;
}

static void dump(const struct reports *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++)
		print_message("  reported %u: %s\n", rs->r[i].line, rs->r[i].msg);
}

static int load_text(const char *text, struct reports *rs, struct moat_config **cfg)
{
	memset(rs, 0, sizeof(*rs));
	write_file("test.conf", text, strlen(text));
	return moat_config_load("test.conf", collect, rs, cfg);
}

/* Replaces "@D" in pattern by the temporary directory. */
static void expand(char *out, size_t cap, const char *pattern)
{
	const char *at = strstr(pattern, "@D");

	if (at == NULL) {
		snprintf(out, cap, "%s", pattern);
		return;
	}
	snprintf(out, cap, "%.*s%s%s", (int)(at - pattern), pattern, tmpdir, at + 2);
}

/* Loads text and expects exactly one error, `msg` on `line`. */
static void expect_error_at(const char *text, unsigned line, const char *msg, int caller_line)
{
	struct moat_config *cfg = (struct moat_config *)1;
	struct reports rs;
	char want[1024];
	int rc;

	expand(want, sizeof(want), msg);
	rc = load_text(text, &rs, &cfg);
	if (rc != MOAT_EINVAL || rs.n != 1 || rs.r[0].line != line ||
	    strcmp(rs.r[0].msg, want) != 0) {
		print_message("case at line %d: want %u: %s\n", caller_line, line, want);
		dump(&rs);
	}
	assert_int_equal(rc, MOAT_EINVAL);
	assert_null(cfg);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, line);
	assert_string_equal(rs.r[0].msg, want);
	assert_string_equal(rs.file, "test.conf");
	assert_int_equal(alloc_live, 0);
}

#define expect_error(text, line, msg) expect_error_at((text), (line), (msg), __LINE__)

static struct moat_config *expect_ok(const char *text)
{
	struct moat_config *cfg = NULL;
	struct reports rs;
	int rc = load_text(text, &rs, &cfg);

	if (rc != MOAT_OK)
		dump(&rs);
	assert_int_equal(rc, MOAT_OK);
	assert_int_equal(rs.n, 0);
	assert_non_null(cfg);
	return cfg;
}

/* A valid file of 9 lines: cases append to it from line 10. */
#define BASE                                                                                       \
	"[listener devices]\n"                                                                     \
	"bind = 127.0.0.1:8443\n"                                                                  \
	"default_tenant = demo\n"                                                                  \
	"[tenant demo]\n"                                                                          \
	"hosts = demo.example.com\n"                                                               \
	"cert = server.pem\n"                                                                      \
	"key = server.key\n"                                                                       \
	"device_ca = ca.pem\n"                                                                     \
	"origin = http://127.0.0.1:8080\n"

/* A second complete tenant on lines 10 to 15; a key appended to it is on line 16. */
#define TENANT2                                                                                    \
	"[tenant t2]\n"                                                                            \
	"hosts = t2.example.com\n"                                                                 \
	"cert = server.pem\n"                                                                      \
	"key = server.key\n"                                                                       \
	"device_ca = ca.pem\n"                                                                     \
	"origin = http://127.0.0.1:8081\n"

/* ---- durations and sizes ---- */

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} good[] = {
	        {"0", 0},
	        {"10", 10000},
	        {"10s", 10000},
	        {"500ms", 500},
	        {"5m", 300000},
	        {"1h", 3600000},
	        {"007s", 7000},
	        {"24h", 86400000},
	        {"0ms", 0},
	        {"18446744073709551615ms", UINT64_MAX},
	        {"5124095576030h", 5124095576030ULL * 3600000},
	};
	static const char *const bad[] = {
	        "",
	        "s",
	        "-1",
	        "+1",
	        " 1",
	        "1 ",
	        "1 s",
	        "1S",
	        "1sec",
	        "1d",
	        "1.5s",
	        "1ms ",
	        "ms",
	        "0x10",
	        "1e3",
	        "1hh",
	        "18446744073709551616ms", /* 2^64 */
	        "18446744073709552s", /* overflows in milliseconds */
	        "5124095576031h",
	};
	size_t i;
	uint64_t v;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(good); i++) {
		v = 12345;
		assert_int_equal(moat_config_parse_duration(good[i].s, &v), MOAT_OK);
		assert_int_equal(v, good[i].ms);
	}
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		v = 12345;
		if (moat_config_parse_duration(bad[i], &v) != MOAT_EINVAL)
			fail_msg("duration \"%s\" was accepted", bad[i]);
		assert_int_equal(v, 12345); /* untouched on failure */
	}
	assert_int_equal(moat_config_parse_duration(NULL, &v), MOAT_EINVAL);
	assert_int_equal(moat_config_parse_duration("1s", NULL), MOAT_EINVAL);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t n;
	} good[] = {
	        {"0", 0},
	        {"8192", 8192},
	        {"8k", 8192},
	        {"8K", 8192},
	        {"1m", 1048576},
	        {"1M", 1048576},
	        {"2g", 2147483648ULL},
	        {"2G", 2147483648ULL},
	        {"18446744073709551615", UINT64_MAX},
	        {"17179869183g", 17179869183ULL * 1073741824ULL},
	};
	static const char *const bad[] = {
	        "",
	        "k",
	        "-1",
	        "+1",
	        " 1",
	        "1 ",
	        "1 k",
	        "8kb",
	        "8kk",
	        "1t",
	        "1.5k",
	        "0x1",
	        "1e3",
	        "8 ",
	        "k8",
	        "18446744073709551616", /* 2^64 */
	        "17179869184g", /* 2^64 bytes */
	        "18014398509481984k",
	};
	size_t i;
	uint64_t v;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(good); i++) {
		v = 12345;
		assert_int_equal(moat_config_parse_size(good[i].s, &v), MOAT_OK);
		assert_int_equal(v, good[i].n);
	}
	for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
		v = 12345;
		if (moat_config_parse_size(bad[i], &v) != MOAT_EINVAL)
			fail_msg("size \"%s\" was accepted", bad[i]);
		assert_int_equal(v, 12345);
	}
	assert_int_equal(moat_config_parse_size(NULL, &v), MOAT_EINVAL);
	assert_int_equal(moat_config_parse_size("1", NULL), MOAT_EINVAL);
}

/* ---- valid files ---- */

static void test_defaults(void **state)
{
	struct moat_config *cfg;
	const struct moat_config_listener *l;
	const struct moat_config_tenant *t;
	char want[512];

	(void)state;
	cfg = expect_ok(BASE);
	snprintf(want, sizeof(want), "%s/test.conf", tmpdir);
	assert_string_equal(cfg->path, want);
	assert_int_equal(cfg->workers, online_cpus());
	assert_string_equal(cfg->data_dir, "/var/lib/moat");
	assert_null(cfg->access_log);
	assert_null(cfg->error_log);
	assert_int_equal(cfg->log_level, MOAT_LOG_INFO);
	assert_null(cfg->pid_file);
	assert_int_equal(cfg->handshake_timeout, 10000);
	assert_int_equal(cfg->idle_timeout, 60000);
	assert_int_equal(cfg->request_header_timeout, 10000);
	assert_int_equal(cfg->request_body_timeout, 30000);
	assert_int_equal(cfg->origin_connect_timeout, 5000);
	assert_int_equal(cfg->origin_response_timeout, 60000);
	assert_int_equal(cfg->drain_timeout, 30000);
	assert_int_equal(cfg->max_connections, 10000);
	assert_int_equal(cfg->max_connections_per_ip, 0);
	assert_int_equal(cfg->max_request_line, 8192);
	assert_int_equal(cfg->max_header_size, 16384);
	assert_int_equal(cfg->max_headers, 100);
	assert_int_equal(cfg->request_body_min_rate, 0);
	assert_int_equal(cfg->origin_keepalive, 32);
	assert_int_equal(cfg->tcp_idle_timeout, 600000);
	assert_int_equal(cfg->tcp_buffer, 65536);

	assert_int_equal(cfg->nlisteners, 1);
	l = &cfg->listeners[0];
	assert_string_equal(l->name, "devices");
	assert_string_equal(l->bind, "127.0.0.1:8443");
	assert_int_equal(l->protocol, MOAT_PROTO_HTTP);
	assert_string_equal(l->default_tenant, "demo");
	assert_int_equal(l->tls, 1);
	assert_null(l->allow);
	assert_int_equal(l->nallow, 0);
	assert_null(l->deny);
	assert_int_equal(l->ndeny, 0);
	assert_int_equal(l->line, 1);

	assert_int_equal(cfg->ntenants, 1);
	t = &cfg->tenants[0];
	assert_string_equal(t->name, "demo");
	assert_int_equal(t->nhosts, 1);
	assert_string_equal(t->hosts[0], "demo.example.com");
	snprintf(want, sizeof(want), "%s/server.pem", tmpdir);
	assert_string_equal(t->cert, want);
	snprintf(want, sizeof(want), "%s/server.key", tmpdir);
	assert_string_equal(t->key, want);
	assert_int_equal(t->ndevice_cas, 1);
	snprintf(want, sizeof(want), "%s/ca.pem", tmpdir);
	assert_string_equal(t->device_cas[0], want);
	assert_null(t->crl);
	assert_int_equal(t->mtls, MOAT_MTLS_REQUIRE);
	assert_int_equal(t->device_id, MOAT_DEVID_CN);
	assert_string_equal(t->origin, "http://127.0.0.1:8080");
	assert_int_equal(t->origin_scheme, MOAT_ORIGIN_HTTP);
	assert_string_equal(t->origin_host, "127.0.0.1");
	assert_int_equal(t->origin_port, 8080);
	assert_null(t->origin_ca);
	assert_null(t->tcp_origin);
	assert_null(t->tcp_origin_host);
	assert_int_equal(t->tcp_origin_port, 0);
	assert_int_equal(t->proxy_protocol, MOAT_PP_OFF);
	assert_int_equal(t->has_tls, 1);
	assert_int_equal(t->line, 4);
	assert_int_equal(t->cert_line, 6);
	assert_int_equal(t->key_line, 7);
	assert_int_equal(t->device_ca_line, 8);
	assert_int_equal(t->crl_line, 0);
	assert_int_equal(t->origin_line, 9);
	assert_int_equal(t->origin_ca_line, 0);
	assert_int_equal(t->tcp_origin_line, 0);

	assert_ptr_equal(moat_config_tenant_find(cfg, "demo"), t);
	assert_null(moat_config_tenant_find(cfg, "dem"));
	assert_null(moat_config_tenant_find(cfg, NULL));
	assert_null(moat_config_tenant_find(NULL, "demo"));
	moat_config_free(cfg);
	moat_config_free(NULL);
	assert_int_equal(alloc_live, 0);
}

static void test_full(void **state)
{
	/* every key, with CRLF line ends, a BOM, indentation, comments and ':' as a delimiter */
	static const char text[] =
	        "\xEF\xBB\xBF; full configuration\r\n"
	        "# comment\r\n"
	        "[moat]\r\n"
	        "  workers = 3\r\n"
	        "\tdata_dir = ./data//x/./\r\n"
	        "  access_log = /var/log/moat/access.log ; inline comment\r\n"
	        "  error_log = logs/error.log\r\n"
	        "  log_level = debug\r\n"
	        "  pid_file = run/moatd.pid\r\n"
	        "  handshake_timeout = 5s\r\n"
	        "  idle_timeout = 2m\r\n"
	        "  request_header_timeout = 1500ms\r\n"
	        "  request_body_timeout = 45\r\n"
	        "  origin_connect_timeout = 1h\r\n"
	        "  origin_response_timeout = 24h\r\n"
	        "  drain_timeout = 1ms\r\n"
	        "  max_connections = 1000000\r\n"
	        "  max_connections_per_ip = 50\r\n"
	        "  max_request_line = 256\r\n"
	        "  max_header_size = 1m\r\n"
	        "  max_headers = 128\r\n"
	        "  request_body_min_rate = 1k\r\n"
	        "  origin_keepalive = 0\r\n"
	        "\r\n"
	        "[ listener   devices ]   ; spaces are fine\r\n"
	        "bind: [::]:8443\r\n"
	        "protocol = http\r\n"
	        "[listener local]\r\n"
	        "bind = localhost:0\r\n"
	        "default_tenant = a.b-c_d\r\n"
	        "[listener v6]\r\n"
	        "bind = [::1]:9443\r\n"
	        "[listener other-port]\r\n"
	        "bind = 0.0.0.0:9443\r\n"
	        "[tenant a.b-c_d]\r\n"
	        "hosts = Demo.Example.COM , *.demo.example.com,x\r\n"
	        "hosts = more.example.com\r\n"
	        "cert = /@D/./server.pem\r\n" /* absolute, with components to clean */
	        "key = ./server.key\r\n"
	        "device_ca = ca.pem, ca2.pem\r\n"
	        "device_ca = ./ca.pem\r\n"
	        "crl = crl.pem\r\n"
	        "mtls = optional\r\n"
	        "device_id = san-uri\r\n"
	        "origin = HTTPS://[::1]/\r\n"
	        "origin_ca = origin-ca.pem\r\n"
	        "[tenant b]\r\n"
	        "hosts = b.example\r\n"
	        "cert = server.pem\r\n"
	        "key = server.key\r\n"
	        "device_ca = ca.pem\r\n"
	        "crl =\r\n"
	        "device_id = san-dns\r\n"
	        "origin = http://origin_svc.internal\r\n"
	        "origin_ca =\r\n"
	        "[tenant c]\r\n"
	        "hosts = c.example\r\n"
	        "cert = server.pem\r\n"
	        "key = server.key\r\n"
	        "device_ca = ca.pem\r\n"
	        "device_id = cn\r\n"
	        "mtls = require\r\n"
	        "origin = https://10.1.2.3:65535"; /* no final newline */
	char buf[4096], want[512];
	struct moat_config *cfg;
	const struct moat_config_tenant *t;
	const struct sockaddr_in6 *a6;
	const struct sockaddr_in *a4;

	(void)state;
	expand(buf, sizeof(buf), text);
	cfg = expect_ok(buf);
	assert_int_equal(cfg->workers, 3);
	snprintf(want, sizeof(want), "%s/data/x", tmpdir);
	assert_string_equal(cfg->data_dir, want);
	assert_string_equal(cfg->access_log, "/var/log/moat/access.log");
	snprintf(want, sizeof(want), "%s/logs/error.log", tmpdir);
	assert_string_equal(cfg->error_log, want);
	assert_int_equal(cfg->log_level, MOAT_LOG_DEBUG);
	snprintf(want, sizeof(want), "%s/run/moatd.pid", tmpdir);
	assert_string_equal(cfg->pid_file, want);
	assert_int_equal(cfg->handshake_timeout, 5000);
	assert_int_equal(cfg->idle_timeout, 120000);
	assert_int_equal(cfg->request_header_timeout, 1500);
	assert_int_equal(cfg->request_body_timeout, 45000);
	assert_int_equal(cfg->origin_connect_timeout, 3600000);
	assert_int_equal(cfg->origin_response_timeout, 86400000);
	assert_int_equal(cfg->drain_timeout, 1);
	assert_int_equal(cfg->max_connections, 1000000);
	assert_int_equal(cfg->max_connections_per_ip, 50);
	assert_int_equal(cfg->max_request_line, 256);
	assert_int_equal(cfg->max_header_size, 1048576);
	assert_int_equal(cfg->max_headers, 128);
	assert_int_equal(cfg->request_body_min_rate, 1024);
	assert_int_equal(cfg->origin_keepalive, 0);

	assert_int_equal(cfg->nlisteners, 4);
	assert_string_equal(cfg->listeners[0].name, "devices");
	assert_int_equal(cfg->listeners[0].line, 25);
	assert_string_equal(cfg->listeners[0].bind, "[::]:8443");
	assert_null(cfg->listeners[0].default_tenant);
	a6 = (const struct sockaddr_in6 *)&cfg->listeners[0].addr;
	assert_int_equal(a6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(a6->sin6_port), 8443);
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr));
	assert_int_equal(cfg->listeners[0].addrlen, sizeof(struct sockaddr_in6));
	a4 = (const struct sockaddr_in *)&cfg->listeners[1].addr;
	assert_int_equal(a4->sin_family, AF_INET);
	assert_int_equal(ntohs(a4->sin_port), 0);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(cfg->listeners[1].addrlen, sizeof(struct sockaddr_in));
	assert_string_equal(cfg->listeners[1].default_tenant, "a.b-c_d");
	a6 = (const struct sockaddr_in6 *)&cfg->listeners[2].addr;
	assert_true(IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr));
	a4 = (const struct sockaddr_in *)&cfg->listeners[3].addr;
	assert_int_equal(ntohs(a4->sin_port), 9443);
	assert_int_equal(a4->sin_addr.s_addr, htonl(INADDR_ANY));

	assert_int_equal(cfg->ntenants, 3);
	t = moat_config_tenant_find(cfg, "a.b-c_d");
	assert_non_null(t);
	assert_int_equal(t->line, 35);
	assert_int_equal(t->nhosts, 4);
	assert_string_equal(t->hosts[0], "demo.example.com");
	assert_string_equal(t->hosts[1], "*.demo.example.com");
	assert_string_equal(t->hosts[2], "x");
	assert_string_equal(t->hosts[3], "more.example.com");
	snprintf(want, sizeof(want), "%s/server.pem", tmpdir);
	assert_string_equal(t->cert, want);
	assert_int_equal(t->cert_line, 38);
	snprintf(want, sizeof(want), "%s/server.key", tmpdir);
	assert_string_equal(t->key, want);
	assert_int_equal(t->ndevice_cas, 3);
	snprintf(want, sizeof(want), "%s/ca2.pem", tmpdir);
	assert_string_equal(t->device_cas[1], want);
	snprintf(want, sizeof(want), "%s/ca.pem", tmpdir);
	assert_string_equal(t->device_cas[2], want);
	assert_int_equal(t->device_ca_line, 40);
	snprintf(want, sizeof(want), "%s/crl.pem", tmpdir);
	assert_string_equal(t->crl, want);
	assert_int_equal(t->crl_line, 42);
	assert_int_equal(t->mtls, MOAT_MTLS_OPTIONAL);
	assert_int_equal(t->device_id, MOAT_DEVID_SAN_URI);
	assert_string_equal(t->origin, "HTTPS://[::1]/");
	assert_int_equal(t->origin_scheme, MOAT_ORIGIN_HTTPS);
	assert_string_equal(t->origin_host, "::1");
	assert_int_equal(t->origin_port, 443);
	assert_int_equal(t->origin_line, 45);
	snprintf(want, sizeof(want), "%s/origin-ca.pem", tmpdir);
	assert_string_equal(t->origin_ca, want);
	assert_int_equal(t->origin_ca_line, 46);

	t = moat_config_tenant_find(cfg, "b");
	assert_non_null(t);
	assert_null(t->crl);
	assert_int_equal(t->crl_line, 52);
	assert_null(t->origin_ca);
	assert_int_equal(t->device_id, MOAT_DEVID_SAN_DNS);
	assert_int_equal(t->mtls, MOAT_MTLS_REQUIRE);
	assert_string_equal(t->origin_host, "origin_svc.internal");
	assert_int_equal(t->origin_port, 80);

	t = moat_config_tenant_find(cfg, "c");
	assert_non_null(t);
	assert_int_equal(t->device_id, MOAT_DEVID_CN);
	assert_int_equal(t->origin_scheme, MOAT_ORIGIN_HTTPS);
	assert_string_equal(t->origin_host, "10.1.2.3");
	assert_int_equal(t->origin_port, 65535);
	assert_int_equal(t->origin_line, 63);

	moat_config_free(cfg);
	assert_int_equal(alloc_live, 0);
}

static void test_workers_auto(void **state)
{
	struct moat_config *cfg;

	(void)state;
	cfg = expect_ok(BASE "[moat]\nworkers = auto\n");
	assert_int_equal(cfg->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	moat_config_free(cfg);
	cfg = expect_ok(BASE "[moat]\nworkers = 256\nmax_request_line = 16k\n"
	                     "max_header_size = 16k\nmax_connections_per_ip = 1000000\n");
	assert_int_equal(cfg->workers, 256);
	assert_int_equal(cfg->max_request_line, cfg->max_header_size);
	moat_config_free(cfg);
}

/* Empty optional values mean none; a tenant without hosts is fine as a default_tenant. */
static void test_empty_values(void **state)
{
	struct moat_config *cfg;

	(void)state;
	cfg = expect_ok(BASE "[moat]\naccess_log =\nerror_log =\npid_file =\n"
	                     "[listener l2]\nbind = 127.0.0.1:1\ndefault_tenant =\n"
	                     "[listener l3]\nbind = 127.0.0.1:2\ndefault_tenant = hidden\n"
	                     "[tenant hidden]\ncert = server.pem\nkey = server.key\n"
	                     "device_ca = ca.pem\norigin = http://x\n");
	assert_null(cfg->access_log);
	assert_null(cfg->error_log);
	assert_null(cfg->pid_file);
	assert_null(cfg->listeners[1].default_tenant);
	assert_string_equal(cfg->listeners[2].default_tenant, "hidden");
	assert_int_equal(cfg->tenants[1].nhosts, 0);
	assert_null(cfg->tenants[1].hosts);
	moat_config_free(cfg);
}

static void test_long_lines(void **state)
{
	char text[2048], line[512];
	struct moat_config *cfg;
	struct reports rs;

	(void)state;
	/* 199 bytes is the longest line inih's buffer holds */
	memset(line, 'x', 199);
	line[0] = '#';
	line[199] = '\0';
	snprintf(text, sizeof(text), BASE "%s\n", line);
	cfg = expect_ok(text);
	moat_config_free(cfg);

	/* 200 bytes is refused, not cut in two, and the next lines keep their numbers */
	memset(line, 'x', 200);
	line[0] = '#';
	line[200] = '\0';
	snprintf(text, sizeof(text), BASE "[moat]\n%s\nworkers = 0\n", line);
	assert_int_equal(load_text(text, &rs, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	if (rs.n != 2)
		dump(&rs);
	assert_int_equal(rs.n, 2);
	assert_int_equal(rs.r[0].line, 11);
	assert_string_equal(rs.r[0].msg,
	                    "line is longer than 199 bytes: shorten it (a long hosts or device_ca "
	                    "list can be split over several lines that repeat the key)");
	assert_int_equal(rs.r[1].line, 12);
	assert_string_equal(rs.r[1].msg,
	                    "workers: expected auto or a number from 1 to 256, not \"0\"");

	/* a long value: the key must not be applied with half of it */
	memset(line, 'a', 300);
	memcpy(line, "hosts = ", 8);
	line[300] = '\0';
	snprintf(text, sizeof(text), BASE "%s\n", line);
	expect_error(text, 10,
	             "line is longer than 199 bytes: shorten it (a long hosts or device_ca list "
	             "can be split over several lines that repeat the key)");
}

/* ---- errors ---- */

struct error_case {
	const char *text;
	unsigned line;
	const char *msg;
};

static void run_cases(const struct error_case *cases, size_t n, int caller_line)
{
	size_t i;

	for (i = 0; i < n; i++) {
		print_message("case %zu (from line %d)\n", i, caller_line);
		expect_error_at(cases[i].text, cases[i].line, cases[i].msg, caller_line);
	}
}

#define RUN_CASES(c) run_cases((c), MOAT_ARRAY_LEN(c), __LINE__)

static void test_syntax_errors(void **state)
{
	static const struct error_case cases[] = {
	        {BASE "just words\n", 10, "expected \"key = value\", \"[section]\" or a comment"},
	        {BASE "[moat]\nworkers = 2\n  workers2\n", 12,
	         "expected \"key = value\", \"[section]\" or a comment; an indented line does not "
	         "continue the value above it: repeat the key instead"},
	        {BASE "a ;b = c\n", 10, "expected \"key = value\", \"[section]\" or a comment"},
	        {BASE "= value\n", 10, "missing key name before '='"},
	        {BASE ": value\n", 10, "missing key name before ':'"},
	        {BASE "[moat\n", 10, "section header without its closing ']'"},
	        {BASE "[moat] extra\n", 10, "unexpected text after ']': put comments after ';'"},
	        {BASE "bell\a = 1\n", 10,
	         "control character 0x07 in column 5: only tabs are allowed"},
	        {BASE "del = \x7f\n", 10,
	         "control character 0x7f in column 7: only tabs are allowed"},
	        {BASE "cr = 1\r\r\n", 10,
	         "control character 0x0d in column 7: only tabs are allowed"},
	        {BASE "[unknown]\n", 10,
	         "unknown section [unknown]: expected [moat], [listener NAME] or [tenant NAME]"},
	        {BASE "[]\n", 10,
	         "unknown section []: expected [moat], [listener NAME] or [tenant NAME]"},
	        {BASE "[Moat]\n", 10,
	         "unknown section [Moat]: expected [moat], [listener NAME] or [tenant NAME]"},
	        {BASE "[moat main]\n", 10, "[moat] takes no name: write [moat]"},
	        {BASE "[moat]\n[moat]\n", 11,
	         "duplicate [moat] (first on line 10): merge them into one"},
	        {"[listener]\nbind = 0.0.0.0:1\n" BASE, 1,
	         "[listener] needs a name, e.g. [listener devices]"},
	        {BASE "[tenant ]\n", 10, "[tenant] needs a name, e.g. [tenant demo]"},
	        {BASE "[tenant a b]\n", 10,
	         "tenant name \"a b\": use 1 to 64 letters, digits, '_', '.' or '-'"},
	        {BASE "[listener d/e]\n", 10,
	         "listener name \"d/e\": use 1 to 64 letters, digits, '_', '.' or '-'"},
	        {BASE "[listener devices]\nbind = 127.0.0.1:1\n", 10,
	         "duplicate [listener devices] (first on line 1): give each listener its own name"},
	        {BASE "[tenant demo]\n", 10,
	         "duplicate [tenant demo] (first on line 4): give each tenant its own name"},
	};

	(void)state;
	RUN_CASES(cases);
}

static void test_key_errors(void **state)
{
	static const struct error_case cases[] = {
	        {"workers = 2\n" BASE, 1,
	         "key \"workers\" comes before any section: put it under [moat]"},
	        {"bind = 0.0.0.0:1\n" BASE, 1,
	         "key \"bind\" comes before any section: put it under [listener NAME]"},
	        {"nonsense = 1\n" BASE, 1,
	         "key \"nonsense\" comes before any section: keys go under [moat], [listener NAME] "
	         "or [tenant NAME]"},
	        {"[listener devices]\nbnid = 127.0.0.1:8443\nbind = 127.0.0.1:8443\n"
	         "default_tenant = demo\n[tenant demo]\nhosts = demo.example.com\ncert = "
	         "server.pem\n"
	         "key = server.key\ndevice_ca = ca.pem\norigin = http://127.0.0.1:8080\n",
	         2, "unknown key \"bnid\" in [listener devices]; did you mean \"bind\"?"},
	        {BASE "[moat]\nfoo = 1\n", 11, "unknown key \"foo\" in [moat]"},
	        {BASE "[moat]\nhandshake_timeout_but_much_longer_than_any_key = 1\n", 11,
	         "unknown key \"handshake_timeout_but_much_longer_than_any_key\" in [moat]"},
	        {BASE "[moat]\nWorkers = 1\n", 11,
	         "unknown key \"Workers\" in [moat]; did you mean \"workers\"?"},
	        {BASE "[moat]\nhandshake_timout = 1\n", 11,
	         "unknown key \"handshake_timout\" in [moat]; did you mean \"handshake_timeout\"?"},
	        {BASE "[moat]\ncert = x\n", 11,
	         "key \"cert\" belongs in a [tenant NAME] section, not in [moat]"},
	        {BASE "mtls = optional\nbind = 0.0.0.0:1\n", 11,
	         "key \"bind\" belongs in a [listener NAME] section, not in [tenant demo]"},
	        {BASE "[listener l2]\nbind = 127.0.0.1:1\nworkers = 2\n", 12,
	         "key \"workers\" belongs in a [moat] section, not in [listener l2]"},
	        {BASE "cert = server.pem\n", 10,
	         "duplicate key \"cert\" in [tenant demo] (first set on line 6): keep one"},
	        {BASE "[moat]\nworkers = 2\nworkers = 2\n", 12,
	         "duplicate key \"workers\" in [moat] (first set on line 11): keep one"},
	        {BASE "[moat]\ndata_dir = \"/srv/moat\"\n", 11,
	         "data_dir: write the value without quotes"},
	        {BASE "[moat]\ndata_dir = '/srv/moat'\n", 11,
	         "data_dir: write the value without quotes"},
	        /* keys of a refused section are not reported again */
	        {BASE "[tenant bad name]\nnonsense = 1\ncert = nowhere\n", 10,
	         "tenant name \"bad name\": use 1 to 64 letters, digits, '_', '.' or '-'"},
	};

	(void)state;
	RUN_CASES(cases);
}

static void test_moat_errors(void **state)
{
	static const struct error_case cases[] = {
	        {BASE "[moat]\nworkers = 0\n", 11,
	         "workers: expected auto or a number from 1 to 256, not \"0\""},
	        {BASE "[moat]\nworkers = 257\n", 11,
	         "workers: expected auto or a number from 1 to 256, not \"257\""},
	        {BASE "[moat]\nworkers = -1\n", 11,
	         "workers: expected auto or a number from 1 to 256, not \"-1\""},
	        {BASE "[moat]\nworkers = Auto\n", 11,
	         "workers: expected auto or a number from 1 to 256, not \"Auto\""},
	        {BASE "[moat]\nworkers =\n", 11,
	         "workers: expected auto or a number from 1 to 256, not \"\""},
	        {BASE "[moat]\ndata_dir =\n", 11, "data_dir: needs a path"},
	        {BASE "[moat]\nlog_level = verbose\n", 11,
	         "log_level: expected debug, info, warn or error, not \"verbose\""},
	        {BASE "[moat]\nhandshake_timeout = 0\n", 11,
	         "handshake_timeout: must be between 1ms and 24h"},
	        {BASE "[moat]\nidle_timeout = 25h\n", 11,
	         "idle_timeout: must be between 1ms and 24h"},
	        {BASE "[moat]\nrequest_header_timeout = 86400001ms\n", 11,
	         "request_header_timeout: must be between 1ms and 24h"},
	        {BASE "[moat]\nrequest_body_timeout = 10 s\n", 11,
	         "request_body_timeout: \"10 s\" is not a duration: write e.g. 10s, 500ms, 5m or "
	         "1h"},
	        {BASE "[moat]\norigin_connect_timeout = -5s\n", 11,
	         "origin_connect_timeout: \"-5s\" is not a duration: write e.g. 10s, 500ms, 5m or "
	         "1h"},
	        {BASE "[moat]\norigin_response_timeout = 1d\n", 11,
	         "origin_response_timeout: \"1d\" is not a duration: write e.g. 10s, 500ms, 5m or "
	         "1h"},
	        {BASE "[moat]\ndrain_timeout = 99999999999999999999\n", 11,
	         "drain_timeout: \"99999999999999999999\" is not a duration: write e.g. 10s, "
	         "500ms, 5m "
	         "or 1h"},
	        {BASE "[moat]\nmax_connections = 0\n", 11,
	         "max_connections: expected a number from 1 to 1000000, not \"0\""},
	        {BASE "[moat]\nmax_connections = 1e3\n", 11,
	         "max_connections: expected a number from 1 to 1000000, not \"1e3\""},
	        {BASE "[moat]\nmax_connections_per_ip = 1000001\n", 11,
	         "max_connections_per_ip: expected a number from 0 to 1000000, not \"1000001\""},
	        {BASE "[moat]\nmax_headers = 129\n", 11,
	         "max_headers: expected a number from 1 to 128, not \"129\""},
	        {BASE "[moat]\nmax_headers = 0\n", 11,
	         "max_headers: expected a number from 1 to 128, not \"0\""},
	        {BASE "[moat]\norigin_keepalive = 10001\n", 11,
	         "origin_keepalive: expected a number from 0 to 10000, not \"10001\""},
	        {BASE "[moat]\nmax_request_line = 255\n", 11,
	         "max_request_line: must be between 256 and 1m"},
	        {BASE "[moat]\nmax_request_line = 8kb\n", 11,
	         "max_request_line: \"8kb\" is not a size: write e.g. 8192, 16k or 1m"},
	        {BASE "[moat]\nmax_header_size = 1025k\n", 11,
	         "max_header_size: must be between 256 and 1m"},
	        {BASE "[moat]\nrequest_body_min_rate = 2g\n", 11,
	         "request_body_min_rate: must be between 0 and 1g"},
	        {BASE "[moat]\nrequest_body_min_rate = -1\n", 11,
	         "request_body_min_rate: \"-1\" is not a size: write e.g. 8192, 16k or 1m"},
	        /* a head must hold its request line: reported on max_header_size when it is set */
	        {BASE "[moat]\nmax_header_size = 4k\nmax_request_line = 8k\n", 11,
	         "max_header_size (4096 bytes) must be at least max_request_line (8192 bytes): the "
	         "head includes the request line"},
	        {BASE "[moat]\nmax_request_line = 32k\n", 11,
	         "max_header_size (16384 bytes) must be at least max_request_line (32768 bytes): "
	         "the "
	         "head includes the request line"},
	        /* no second error when one of the two values was refused */
	        {BASE "[moat]\nmax_header_size = 300\nmax_request_line = 2m\n", 12,
	         "max_request_line: must be between 256 and 1m"},
	};

	(void)state;
	RUN_CASES(cases);
}

#define L2 BASE "[listener l2]\n" /* a second listener: its keys are on line 11 */

static void test_listener_errors(void **state)
{
	static const struct error_case cases[] = {
	        {L2 "bind = nope\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind = :8443\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind = 10.0.0.1\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind = [::1]8443\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind = [::1:8443\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind = []:8443\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind =\n", 11, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {L2 "bind = ::1:8443\n", 11,
	         "bind: put an IPv6 address in brackets, e.g. [::]:8443"},
	        {L2 "bind = 127.0.0.1:65536\n", 11,
	         "bind: the port must be a number from 0 to 65535 (0: any free port)"},
	        {L2 "bind = 127.0.0.1:\n", 11,
	         "bind: the port must be a number from 0 to 65535 (0: any free port)"},
	        {L2 "bind = 127.0.0.1:+80\n", 11,
	         "bind: the port must be a number from 0 to 65535 (0: any free port)"},
	        {L2 "bind = example.com:8443\n", 11,
	         "bind: \"example.com\" is not an IP address: use an IPv4 address, an IPv6 address "
	         "in "
	         "brackets or localhost (host names are not resolved)"},
	        {L2 "bind = 127.1:8443\n", 11,
	         "bind: \"127.1\" is not an IP address: use an IPv4 address, an IPv6 address in "
	         "brackets or localhost (host names are not resolved)"},
	        {L2 "bind = [127.0.0.1]:8443\n", 11,
	         "bind: \"127.0.0.1\" is not an IP address: use an IPv4 address, an IPv6 address "
	         "in "
	         "brackets or localhost (host names are not resolved)"},
	        {L2 "bind = [fe80::1%eth0]:8443\n", 11,
	         "bind: \"fe80::1%eth0\" is not an IP address: use an IPv4 address, an IPv6 "
	         "address in "
	         "brackets or localhost (host names are not resolved)"},
	        {L2 "bind = [1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb]:1\n", 11,
	         "bind: \"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb\" is not an IP "
	         "address: use an IPv4 address, an IPv6 address in brackets or localhost (host "
	         "names "
	         "are not resolved)"},
	        {L2 "bind = [::1]:8443\nprotocol = mqtt\n", 12,
	         "protocol: mqtt is not supported yet: use http or tcp"},
	        {L2 "bind = [::1]:8443\nprotocol = HTTP\n", 12,
	         "protocol: expected http or tcp, not \"HTTP\""},
	        {L2 "bind = [::1]:8443\nprotocol = udp\n", 12,
	         "protocol: expected http or tcp, not \"udp\""},
	        {L2 "bind = [::1]:8443\ndefault_tenant = nobody\n", 12,
	         "default_tenant \"nobody\" is not a [tenant] section"},
	        {L2 "protocol = http\n", 10,
	         "[listener l2] needs a bind address, e.g. bind = 0.0.0.0:8443"},
	        {L2 "bind = 127.0.0.1:8443\n", 11,
	         "bind 127.0.0.1:8443 is already used by [listener devices]"},
	        {L2 "bind = localhost:8443\n", 11,
	         "bind localhost:8443 is already used by [listener devices]"},
	        {BASE "[listener a]\nbind = [::]:1\n[listener b]\nbind = [0::0]:1\n", 13,
	         "bind [0::0]:1 is already used by [listener a]"},
	};

	(void)state;
	RUN_CASES(cases);
}

static void test_tenant_errors(void **state)
{
	static const struct error_case cases[] = {
	        /* hosts */
	        {TENANT2 "hosts =\n" BASE, 7,
	         "hosts: expected host names separated by commas, e.g. demo.example.com, "
	         "*.demo.example.com"},
	        {BASE TENANT2 "hosts = a.example,,b.example\n", 16,
	         "hosts: empty entry: separate host names with single commas"},
	        {BASE TENANT2 "hosts = a.example,\n", 16,
	         "hosts: empty entry: separate host names with single commas"},
	        {BASE TENANT2 "hosts = *\n", 16,
	         "hosts: \"*\" would match every name: a listener's default_tenant does that"},
	        {BASE TENANT2 "hosts = 10.0.0.1\n", 16,
	         "hosts: \"10.0.0.1\" is an IP address, but devices send host names (SNI), never "
	         "addresses: use a listener's default_tenant for devices that connect by address"},
	        {BASE TENANT2 "hosts = ::1\n", 16,
	         "hosts: \"::1\" is an IP address, but devices send host names (SNI), never "
	         "addresses: use a listener's default_tenant for devices that connect by address"},
	        {BASE TENANT2 "hosts = a*.example\n", 16,
	         "hosts: \"a*.example\" has a misplaced '*': a wildcard is a whole first label, "
	         "e.g. "
	         "*.example.com"},
	        {BASE TENANT2 "hosts = *.*.example\n", 16,
	         "hosts: \"*.*.example\" has a misplaced '*': a wildcard is a whole first label, "
	         "e.g. "
	         "*.example.com"},
	        {BASE TENANT2 "hosts = a.example.\n", 16,
	         "hosts: \"a.example.\" ends with a dot: remove it"},
	        {BASE TENANT2 "hosts = A_B.example\n", 16,
	         "hosts: \"A_B.example\" is not a valid host name: use letters, digits and '-' in "
	         "dot-separated labels"},
	        {BASE TENANT2 "hosts = -a.example\n", 16,
	         "hosts: \"-a.example\" is not a valid host name: use letters, digits and '-' in "
	         "dot-separated labels"},
	        {BASE TENANT2 "hosts = a-.example\n", 16,
	         "hosts: \"a-.example\" is not a valid host name: use letters, digits and '-' in "
	         "dot-separated labels"},
	        {BASE TENANT2 "hosts = a..example\n", 16,
	         "hosts: \"a..example\" is not a valid host name: use letters, digits and '-' in "
	         "dot-separated labels"},
	        {BASE TENANT2 "hosts = *.\n", 16,
	         "hosts: \"*.\" is not a valid host name: use letters, digits and '-' in "
	         "dot-separated labels"},
	        {BASE TENANT2 "hosts = T2.Example.com\n", 16,
	         "host \"t2.example.com\" is listed twice in [tenant t2] (also on line 11)"},
	        {BASE TENANT2 "hosts = x.example, demo.example.com\n", 16,
	         "host \"demo.example.com\" is claimed by tenants \"demo\" and \"t2\": keep it in "
	         "one"},
	        {BASE TENANT2 "hosts = a.example\nhosts = b.example, A.example\n", 17,
	         "host \"a.example\" is listed twice in [tenant t2] (also on line 16)"},
	        /* files */
	        {BASE TENANT2 "crl = missing.pem\n", 16,
	         "crl: cannot read @D/missing.pem: No such file or directory"},
	        {BASE TENANT2 "origin_ca = adir\n", 16,
	         "origin_ca: cannot read @D/adir: Is a directory"},
	        {BASE TENANT2 "crl = /dev/null\n", 16,
	         "crl: cannot read /dev/null: not a regular file"},
	        {BASE TENANT2 "crl = server.pem/x\n", 16,
	         "crl: cannot read @D/server.pem/x: Not a directory"},
	        {TENANT2 "cert =\n" BASE, 7,
	         "duplicate key \"cert\" in [tenant t2] (first set on line 3): keep one"},
	        {"[tenant t2]\nhosts = t2.example.com\ncert =\nkey = server.key\ndevice_ca = "
	         "ca.pem\n"
	         "origin = http://127.0.0.1:8081\n" BASE,
	         3, "cert: needs a path"},
	        {"[tenant t2]\nhosts = t2.example.com\ncert = /no/such/cert.pem\nkey = server.key\n"
	         "device_ca = ca.pem\norigin = http://127.0.0.1:8081\n" BASE,
	         3, "cert: cannot read /no/such/cert.pem: No such file or directory"},
	        {"[tenant t2]\nhosts = t2.example.com\ncert = server.pem\nkey = "
	         "./sub/../server.key\n"
	         "device_ca = ca.pem\norigin = http://127.0.0.1:8081\n" BASE,
	         4, "key: cannot read @D/sub/../server.key: No such file or directory"},
	        {"[tenant t2]\nhosts = t2.example.com\ncert = server.pem\nkey = server.key\n"
	         "device_ca =\norigin = http://127.0.0.1:8081\n" BASE,
	         5, "device_ca: needs one or more paths separated by commas"},
	        {BASE TENANT2 "device_ca = ca2.pem, ,ca.pem\n", 16,
	         "device_ca: empty entry: separate paths with single commas"},
	        {BASE TENANT2 "device_ca = ca2.pem, nope.pem\n", 16,
	         "device_ca: cannot read @D/nope.pem: No such file or directory"},
	        /* modes */
	        {BASE TENANT2 "mtls = yes\n", 16,
	         "mtls: expected require or optional, not \"yes\""},
	        {BASE TENANT2 "device_id = serial\n", 16,
	         "device_id: expected cn, san-uri or san-dns, not \"serial\""},
	        /* required keys and reachability */
	        {BASE "[tenant t2]\nhosts = t2.example\nkey = server.key\ndevice_ca = ca.pem\n"
	              "origin = http://127.0.0.1:1\n",
	         10,
	         "[tenant t2] needs a cert: add cert = PATH of its server certificate chain (PEM)"},
	        {BASE "[tenant t2]\nhosts = t2.example\ncert = server.pem\ndevice_ca = ca.pem\n"
	              "origin = http://127.0.0.1:1\n",
	         10, "[tenant t2] needs a key: add key = PATH of its server private key (PEM)"},
	        {BASE "[tenant t2]\nhosts = t2.example\ncert = server.pem\nkey = server.key\n"
	              "origin = http://127.0.0.1:1\n",
	         10,
	         "[tenant t2] needs a device_ca: add device_ca = PATH of the CA certificates that "
	         "sign its devices (PEM)"},
	        {BASE "[tenant t2]\nhosts = t2.example\ncert = server.pem\nkey = server.key\n"
	              "device_ca = ca.pem\n",
	         10,
	         "[tenant t2] needs an origin: add origin = http://HOST:PORT of the service behind "
	         "it, or tcp_origin = tcp://HOST:PORT for TCP listeners"},
	        {BASE "[tenant t2]\ncert = server.pem\nkey = server.key\ndevice_ca = ca.pem\n"
	              "origin = http://127.0.0.1:1\n",
	         10,
	         "[tenant t2] has no hosts and is no listener's default_tenant, so no device can "
	         "reach it: add hosts = NAME"},
	        {BASE TENANT2 "origin_ca = origin-ca.pem\n", 16,
	         "origin_ca is only used with an https:// origin or a tls:// tcp_origin: remove it "
	         "or make the origin https:// or the tcp_origin tls://"},
	};

	(void)state;
	RUN_CASES(cases);
}

static void test_origin_errors(void **state)
{
	static const char scheme[] = "origin: scheme must be http:// or https://, e.g. "
	                             "http://127.0.0.1:8080";
	static const char path[] = "origin: no path, query or fragment allowed (requests keep "
	                           "their own path): write it as SCHEME://HOST:PORT";
	static const char port[] = "origin: the port must be a number from 1 to 65535";
	static const struct error_case cases[] = {
	        {BASE TENANT2 "[tenant t3]\norigin = ftp://x\n", 17, scheme},
	        {BASE TENANT2 "[tenant t3]\norigin = 127.0.0.1:8080\n", 17, scheme},
	        {BASE TENANT2 "[tenant t3]\norigin = http:/x\n", 17, scheme},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x/api\n", 17, path},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x:80//\n", 17, path},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x?a=1\n", 17, path},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x#f\n", 17, path},
	        {BASE TENANT2 "[tenant t3]\norigin = http://u:p@x\n", 17,
	         "origin: user information (user@) is not allowed"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://[::1\n", 17,
	         "origin: missing ']' after the IPv6 address"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://[::1]8080\n", 17,
	         "origin: expected ':' and a port after ']'"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://::1:8080\n", 17,
	         "origin: put an IPv6 address in brackets, e.g. http://[::1]:8080"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://:8080\n", 17,
	         "origin: missing host, e.g. http://127.0.0.1:8080"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://\n", 17,
	         "origin: missing host, e.g. http://127.0.0.1:8080"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://[]:80\n", 17,
	         "origin: missing host, e.g. http://127.0.0.1:8080"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x:0\n", 17, port},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x:65536\n", 17, port},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x:\n", 17, port},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x:80a\n", 17, port},
	        {BASE TENANT2 "[tenant t3]\norigin = http://x:00000000080\n", 17, port},
	        {BASE TENANT2 "[tenant t3]\norigin = http://[::1]:\n", 17, port},
	        {BASE TENANT2 "[tenant t3]\norigin = http://a..b\n", 17,
	         "origin: \"a..b\" is not a valid host name or address"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://256.1.1.1\n", 17,
	         "origin: \"256.1.1.1\" is not a valid host name or address"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://[zz::1]\n", 17,
	         "origin: \"zz::1\" is not a valid host name or address"},
	        {BASE TENANT2 "[tenant t3]\norigin = http://a b\n", 17,
	         "origin: \"a b\" is not a valid host name or address"},
	};
	size_t i;
	struct error_case c[MOAT_ARRAY_LEN(cases)];

	(void)state;
	/* the third tenant has only an origin; make it complete so only the origin is wrong */
	for (i = 0; i < MOAT_ARRAY_LEN(cases); i++) {
		static char texts[MOAT_ARRAY_LEN(cases)][1024];

		snprintf(texts[i], sizeof(texts[i]),
		         "%shosts = t3.example\ncert = server.pem\nkey = server.key\n"
		         "device_ca = ca.pem\n",
		         cases[i].text);
		c[i] = cases[i];
		c[i].text = texts[i];
	}
	RUN_CASES(c);
}

/* ---- TCP listeners, plain listeners and address lists ---- */

struct want_error {
	unsigned line;
	const char *msg;
};

/* Loads text and expects exactly the errors in want, in that order. */
static void expect_errors_at(const char *text, const struct want_error *want, size_t n,
                             int caller_line)
{
	struct moat_config *cfg = (struct moat_config *)1;
	struct reports rs;
	size_t i;

	print_message("case from line %d\n", caller_line);
	assert_int_equal(load_text(text, &rs, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	if (rs.n != n)
		dump(&rs);
	assert_int_equal(rs.n, n);
	for (i = 0; i < n; i++) {
		assert_int_equal(rs.r[i].line, want[i].line);
		assert_string_equal(rs.r[i].msg, want[i].msg);
	}
	assert_int_equal(alloc_live, 0);
}

#define EXPECT_ERRORS(text, want) expect_errors_at((text), (want), MOAT_ARRAY_LEN(want), __LINE__)

static void assert_cidr(const struct moat_cidr *c, const char *addr, unsigned prefix)
{
	unsigned char want[16];

	assert_int_equal(inet_pton(AF_INET6, addr, want), 1);
	assert_memory_equal(c->addr, want, 16);
	assert_int_equal(c->prefix, prefix);
}

static struct sockaddr_storage peer(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		a6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, addr, &a6->sin6_addr), 1);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		a4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, addr, &a4->sin_addr), 1);
	}
	return ss;
}

static void test_tcp(void **state)
{
	static const char text[] = BASE /* 1 to 9 */
	        "[moat]\n" /* 10 */
	        "tcp_idle_timeout = 1h\n" /* 11 */
	        "tcp_buffer = 16m\n" /* 12 */
	        "[listener mqtt]\n" /* 13 */
	        "bind = 0.0.0.0:8883\n" /* 14 */
	        "protocol = tcp\n" /* 15 */
	        "tls = on\n" /* 16 */
	        "default_tenant = broker\n" /* 17 */
	        "allow = 10.0.0.0/8, ::1 ,192.0.2.7\n" /* 18 */
	        "allow = 2001:db8::/32 ; the lab\n" /* 19 */
	        "deny = 10.9.0.0/16\n" /* 20 */
	        "[listener plain]\n" /* 21 */
	        "bind = [::1]:1883\n" /* 22 */
	        "protocol = tcp\n" /* 23 */
	        "tls = off\n" /* 24 */
	        "default_tenant = sensors\n" /* 25 */
	        "allow = 127.0.0.0/8, ::1\n" /* 26 */
	        "[listener plain2]\n" /* 27 */
	        "bind = 127.0.0.1:1884\n" /* 28 */
	        "tls = off\n" /* 29: before protocol, which it needs */
	        "protocol = tcp\n" /* 30 */
	        "default_tenant = sensors\n" /* 31 */
	        "deny = 0.0.0.0/0\n" /* 32 */
	        "[tenant sensors]\n" /* 33: plain listeners only: no TLS material */
	        "tcp_origin = tcp://127.0.0.1:1885\n" /* 34 */
	        "proxy_protocol = v2\n" /* 35 */
	        "[tenant broker]\n" /* 36 */
	        "hosts = broker.example\n" /* 37 */
	        "cert = server.pem\n" /* 38 */
	        "key = server.key\n" /* 39 */
	        "device_ca = ca.pem\n" /* 40 */
	        "tcp_origin = TLS://[::1]:8883\n" /* 41 */
	        "origin_ca = origin-ca.pem\n" /* 42 */
	        "proxy_protocol = off\n" /* 43 */
	        "[tenant mixed]\n" /* 44 */
	        "hosts = mixed.example\n" /* 45 */
	        "cert = server.pem\nkey = server.key\ndevice_ca = ca.pem\n" /* 46 to 48 */
	        "origin = http://api.internal:8080\n" /* 49 */
	        "tcp_origin = tls://broker_svc.internal:8883\n" /* 50 */
	        "origin_ca = origin-ca.pem\n"; /* 51: for the tls:// tcp_origin */
	const struct moat_config_listener *l;
	const struct moat_config_tenant *t;
	struct moat_config *cfg;
	struct sockaddr_storage ss;

	(void)state;
	cfg = expect_ok(text);
	assert_int_equal(cfg->tcp_idle_timeout, 3600000);
	assert_int_equal(cfg->tcp_buffer, 16 * 1048576);
	assert_int_equal(cfg->nlisteners, 4);

	l = &cfg->listeners[1];
	assert_string_equal(l->name, "mqtt");
	assert_int_equal(l->protocol, MOAT_PROTO_TCP);
	assert_int_equal(l->tls, 1);
	assert_string_equal(l->default_tenant, "broker");
	assert_int_equal(l->nallow, 4);
	assert_cidr(&l->allow[0], "::ffff:10.0.0.0", 104);
	assert_cidr(&l->allow[1], "::1", 128);
	assert_cidr(&l->allow[2], "::ffff:192.0.2.7", 128);
	assert_cidr(&l->allow[3], "2001:db8::", 32);
	assert_int_equal(l->ndeny, 1);
	assert_cidr(&l->deny[0], "::ffff:10.9.0.0", 112);
	ss = peer("10.9.1.1");
	assert_true(moat_cidr_match(l->allow, l->nallow, &ss));
	assert_true(moat_cidr_match(l->deny, l->ndeny, &ss));
	ss = peer("::ffff:10.1.1.1");
	assert_true(moat_cidr_match(l->allow, l->nallow, &ss));
	assert_false(moat_cidr_match(l->deny, l->ndeny, &ss));

	l = &cfg->listeners[2];
	assert_string_equal(l->name, "plain");
	assert_int_equal(l->protocol, MOAT_PROTO_TCP);
	assert_int_equal(l->tls, 0);
	assert_int_equal(l->nallow, 2);
	assert_int_equal(l->ndeny, 0);
	assert_null(l->deny);
	l = &cfg->listeners[3];
	assert_int_equal(l->tls, 0);
	assert_int_equal(l->protocol, MOAT_PROTO_TCP);
	assert_int_equal(l->nallow, 0);
	assert_cidr(&l->deny[0], "::ffff:0.0.0.0", 96);

	t = moat_config_tenant_find(cfg, "sensors");
	assert_non_null(t);
	assert_int_equal(t->has_tls, 0);
	assert_null(t->cert);
	assert_null(t->key);
	assert_int_equal(t->ndevice_cas, 0);
	assert_int_equal(t->nhosts, 0);
	assert_null(t->origin);
	assert_int_equal(t->origin_line, 0);
	assert_string_equal(t->tcp_origin, "tcp://127.0.0.1:1885");
	assert_int_equal(t->tcp_origin_scheme, MOAT_ORIGIN_TCP);
	assert_string_equal(t->tcp_origin_host, "127.0.0.1");
	assert_int_equal(t->tcp_origin_port, 1885);
	assert_int_equal(t->tcp_origin_line, 34);
	assert_int_equal(t->proxy_protocol, MOAT_PP_V2);

	t = moat_config_tenant_find(cfg, "broker");
	assert_non_null(t);
	assert_int_equal(t->has_tls, 1);
	assert_null(t->origin);
	assert_string_equal(t->tcp_origin, "TLS://[::1]:8883");
	assert_int_equal(t->tcp_origin_scheme, MOAT_ORIGIN_TLS);
	assert_string_equal(t->tcp_origin_host, "::1");
	assert_int_equal(t->tcp_origin_port, 8883);
	assert_int_equal(t->tcp_origin_line, 41);
	assert_non_null(t->origin_ca);
	assert_int_equal(t->origin_ca_line, 42);
	assert_int_equal(t->proxy_protocol, MOAT_PP_OFF);

	t = moat_config_tenant_find(cfg, "mixed");
	assert_non_null(t);
	assert_int_equal(t->has_tls, 1);
	assert_int_equal(t->origin_scheme, MOAT_ORIGIN_HTTP);
	assert_int_equal(t->origin_port, 8080);
	assert_int_equal(t->tcp_origin_scheme, MOAT_ORIGIN_TLS);
	assert_string_equal(t->tcp_origin_host, "broker_svc.internal");
	assert_int_equal(t->origin_line, 49);
	assert_int_equal(t->tcp_origin_line, 50);
	moat_config_free(cfg);

	/* the limits of the new [moat] keys */
	cfg = expect_ok(BASE "[moat]\ntcp_idle_timeout = 24h\ntcp_buffer = 4k\n");
	assert_int_equal(cfg->tcp_idle_timeout, 86400000);
	assert_int_equal(cfg->tcp_buffer, 4096);
	moat_config_free(cfg);
	cfg = expect_ok(BASE "[moat]\ntcp_idle_timeout = 1ms\ntcp_buffer = 16384k\n");
	assert_int_equal(cfg->tcp_idle_timeout, 1);
	assert_int_equal(cfg->tcp_buffer, 16777216);
	moat_config_free(cfg);

	/* a plain listener's tenant may have TLS material all the same, and an HTTP origin too */
	cfg = expect_ok(BASE "[listener p]\nbind = 127.0.0.1:1\nprotocol = tcp\ntls = off\n"
	                     "default_tenant = demo2\n"
	                     "[tenant demo2]\nhosts = demo2.example\ncert = server.pem\n"
	                     "key = server.key\ndevice_ca = ca.pem\norigin = https://x\n"
	                     "tcp_origin = tcp://x:1\norigin_ca = origin-ca.pem\n");
	assert_int_equal(cfg->listeners[1].tls, 0);
	moat_config_free(cfg);
}

#define TCP_L2 L2 "bind = 127.0.0.1:1\n" /* keys of [listener l2] from line 12 */
/* a tls = off listener on lines 10 to 14, then its tenant's header on line 15 */
#define PLAIN_L2                                                                                   \
	L2 "bind = 127.0.0.1:1\nprotocol = tcp\ntls = off\ndefault_tenant = sensors\n"             \
	   "[tenant sensors]\n"
/* a third complete tenant without an origin on lines 16 to 20; appended keys from line 21 */
#define T3                                                                                         \
	BASE TENANT2 "[tenant t3]\nhosts = t3.example\ncert = server.pem\nkey = server.key\n"      \
	             "device_ca = ca.pem\n"

static void test_tcp_errors(void **state)
{
	static const char notls[] = "tls = off needs protocol = tcp: HTTP listeners always use TLS";
	static const char nodefault[] =
	        "[listener l2] has tls = off, so no host name selects a tenant: add default_tenant "
	        "= NAME of the tenant whose tcp_origin its devices reach";
	static const char notcp[] = "default_tenant \"demo\" has no tcp_origin, which a protocol = "
	                            "tcp listener forwards "
	                            "to: add tcp_origin = tcp://HOST:PORT to [tenant demo]";
	static const char origin_ca[] =
	        "origin_ca is only used with an https:// origin or a tls:// tcp_origin: remove it "
	        "or make the origin https:// or the tcp_origin tls://";
	static const struct error_case cases[] = {
	        /* [moat] */
	        {BASE "[moat]\ntcp_idle_timeout = 0\n", 11,
	         "tcp_idle_timeout: must be between 1ms and 24h"},
	        {BASE "[moat]\ntcp_idle_timeout = 25h\n", 11,
	         "tcp_idle_timeout: must be between 1ms and 24h"},
	        {BASE "[moat]\ntcp_idle_timeout = 10 m\n", 11,
	         "tcp_idle_timeout: \"10 m\" is not a duration: write e.g. 10s, 500ms, 5m or 1h"},
	        {BASE "[moat]\ntcp_buffer = 4095\n", 11, "tcp_buffer: must be between 4k and 16m"},
	        {BASE "[moat]\ntcp_buffer = 16385k\n", 11,
	         "tcp_buffer: must be between 4k and 16m"},
	        {BASE "[moat]\ntcp_buffer = 64kb\n", 11,
	         "tcp_buffer: \"64kb\" is not a size: write e.g. 8192, 16k or 1m"},
	        {BASE "[moat]\ntcp_buffer = 8k\ntcp_buffer = 8k\n", 12,
	         "duplicate key \"tcp_buffer\" in [moat] (first set on line 11): keep one"},
	        {BASE "[listener l2]\nbind = 127.0.0.1:1\ntcp_buffer = 8k\n", 12,
	         "key \"tcp_buffer\" belongs in a [moat] section, not in [listener l2]"},
	        /* tls */
	        {TCP_L2 "tls = yes\n", 12, "tls: expected on or off, not \"yes\""},
	        {TCP_L2 "tls = OFF\n", 12, "tls: expected on or off, not \"OFF\""},
	        {TCP_L2 "tls =\n", 12, "tls: expected on or off, not \"\""},
	        {TCP_L2 "tls = on\ntls = on\n", 13,
	         "duplicate key \"tls\" in [listener l2] (first set on line 12): keep one"},
	        {TCP_L2 "tls = off\ndefault_tenant = demo\n", 12, notls},
	        {TCP_L2 "protocol = http\ntls = off\ndefault_tenant = demo\n", 13, notls},
	        /* a refused protocol is not reported again through tls */
	        {TCP_L2 "protocol = mqtt\ntls = off\ndefault_tenant = demo\n", 12,
	         "protocol: mqtt is not supported yet: use http or tcp"},
	        {TCP_L2 "protocol = tcp\ntls = off\n", 10, nodefault},
	        {TCP_L2 "protocol = tcp\ntls = off\ndefault_tenant =\n", 10, nodefault},
	        {TCP_L2 "protocol = tcp\ntls = off\ndefault_tenant = ghost\n", 14,
	         "default_tenant \"ghost\" is not a [tenant] section"},
	        /* a listener's default_tenant needs the origin of the listener's protocol */
	        {TCP_L2 "protocol = tcp\ntls = off\ndefault_tenant = demo\n", 14, notcp},
	        {TCP_L2 "protocol = tcp\ndefault_tenant = demo\n", 13, notcp},
	        {L2 "bind = 127.0.0.1:1\ndefault_tenant = t2\n[tenant t2]\nhosts = t2.example\n"
	            "cert = server.pem\nkey = server.key\ndevice_ca = ca.pem\n"
	            "tcp_origin = tcp://x:1\n",
	         12,
	         "default_tenant \"t2\" has no origin, which a protocol = http listener forwards "
	         "to: "
	         "add origin = http://HOST:PORT to [tenant t2]"},
	        /* a plain listener's tenant: TLS material in full or not at all, and no hosts */
	        {PLAIN_L2 "tcp_origin = tcp://x:1\ncert = server.pem\nkey = server.key\n", 15,
	         "[tenant sensors] needs a device_ca: add device_ca = PATH of the CA certificates "
	         "that sign its devices (PEM)"},
	        {PLAIN_L2 "origin = http://x\n", 14,
	         "default_tenant \"sensors\" has no tcp_origin, which a protocol = tcp listener "
	         "forwards to: add tcp_origin = tcp://HOST:PORT to [tenant sensors]"},
	        {PLAIN_L2 "proxy_protocol = v2\n", 15,
	         "[tenant sensors] needs an origin: add origin = http://HOST:PORT of the service "
	         "behind it, or tcp_origin = tcp://HOST:PORT for TCP listeners"},
	        /* allow and deny */
	        {TCP_L2 "allow =\n", 12,
	         "allow: expected addresses or CIDR ranges separated by commas, e.g. 10.0.0.0/8, "
	         "::1"},
	        {TCP_L2 "deny =\n", 12,
	         "deny: expected addresses or CIDR ranges separated by commas, e.g. 10.0.0.0/8, "
	         "::1"},
	        {TCP_L2 "allow = 10.0.0.0/8,,::1\n", 12,
	         "allow: empty entry: separate addresses with single commas"},
	        {TCP_L2 "deny = ::1,\n", 12,
	         "deny: empty entry: separate addresses with single commas"},
	        {TCP_L2 "allow = 10.0.0.0/33\n", 12,
	         "allow: \"10.0.0.0/33\": the prefix length after '/' must be 0 to 32"},
	        {TCP_L2 "allow = ::/129\n", 12,
	         "allow: \"::/129\": the prefix length after '/' must be 0 to 128"},
	        {TCP_L2 "allow = 10.0.0.0/\n", 12,
	         "allow: \"10.0.0.0/\": the prefix length after '/' must be 0 to 32"},
	        {TCP_L2 "allow = 10.0.0.0/08\n", 12,
	         "allow: \"10.0.0.0/08\": the prefix length after '/' must be 0 to 32"},
	        {TCP_L2 "allow = 10.0.0.0/-8\n", 12,
	         "allow: \"10.0.0.0/-8\": the prefix length after '/' must be 0 to 32"},
	        {TCP_L2 "allow = 10.0.0.0/8/8\n", 12,
	         "allow: \"10.0.0.0/8/8\": the prefix length after '/' must be 0 to 32"},
	        {TCP_L2 "allow = 10.1.2.3/8\n", 12,
	         "allow: \"10.1.2.3/8\" has bits set after its /8 prefix: write 10.0.0.0/8"},
	        {TCP_L2 "deny = 192.168.17.1/20\n", 12,
	         "deny: \"192.168.17.1/20\" has bits set after its /20 prefix: write "
	         "192.168.16.0/20"},
	        {TCP_L2 "deny = 10.0.0.1/0\n", 12,
	         "deny: \"10.0.0.1/0\" has bits set after its /0 prefix: write 0.0.0.0/0"},
	        {TCP_L2 "deny = 2001:db8::1/32\n", 12,
	         "deny: \"2001:db8::1/32\" has bits set after its /32 prefix: write 2001:db8::/32"},
	        {TCP_L2 "deny = ::1/0\n", 12,
	         "deny: \"::1/0\" has bits set after its /0 prefix: write ::/0"},
	        {TCP_L2 "deny = ::ffff:10.0.0.1/120\n", 12,
	         "deny: \"::ffff:10.0.0.1/120\" has bits set after its /120 prefix: write "
	         "::ffff:10.0.0.0/120"},
	        {TCP_L2 "allow = example.com\n", 12,
	         "allow: \"example.com\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	         "192.0.2.7 or 2001:db8::/32"},
	        {TCP_L2 "allow = [::1]\n", 12,
	         "allow: \"[::1]\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	         "192.0.2.7 "
	         "or 2001:db8::/32"},
	        {TCP_L2 "allow = fe80::1%eth0/64\n", 12,
	         "allow: \"fe80::1%eth0/64\" is not an IP address or a CIDR range, e.g. "
	         "10.0.0.0/8, "
	         "192.0.2.7 or 2001:db8::/32"},
	        {TCP_L2 "allow = 10.0.0/8\n", 12,
	         "allow: \"10.0.0/8\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	         "192.0.2.7 or 2001:db8::/32"},
	        {TCP_L2 "allow = 010.0.0.1\n", 12,
	         "allow: \"010.0.0.1\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	         "192.0.2.7 or 2001:db8::/32"},
	        {TCP_L2 "allow = /8\n", 12,
	         "allow: \"/8\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, 192.0.2.7 "
	         "or "
	         "2001:db8::/32"},
	        {TCP_L2 "allow = 10.0.0.0 /8\n", 12,
	         "allow: \"10.0.0.0 /8\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	         "192.0.2.7 or 2001:db8::/32"},
	        {TCP_L2 "allow = 1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb\n", 12,
	         "allow: \"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb\" is not an IP "
	         "address or a CIDR range, e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32"},
	        /* a repeated key extends the list: its entries are checked on their own line */
	        {TCP_L2 "allow = 10.0.0.0/8\nallow = 10.0.0.256\n", 13,
	         "allow: \"10.0.0.256\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	         "192.0.2.7 or 2001:db8::/32"},
	        {BASE "allow = ::1\n", 10,
	         "key \"allow\" belongs in a [listener NAME] section, not in [tenant demo]"},
	        /* tcp_origin */
	        {T3 "tcp_origin = http://x:1\n", 21,
	         "tcp_origin: http:// and https:// origins go in origin: tcp_origin takes tcp:// "
	         "or "
	         "tls://, e.g. tcp://127.0.0.1:1883"},
	        {T3 "origin = tls://x:1\n", 21,
	         "origin: tcp:// and tls:// origins go in tcp_origin: origin takes http:// or "
	         "https://, e.g. http://127.0.0.1:8080"},
	        {T3 "tcp_origin = udp://x:1\n", 21,
	         "tcp_origin: scheme must be tcp:// or tls://, e.g. tcp://127.0.0.1:1883"},
	        {T3 "tcp_origin = x:1\n", 21,
	         "tcp_origin: scheme must be tcp:// or tls://, e.g. tcp://127.0.0.1:1883"},
	        {T3 "tcp_origin =\n", 21,
	         "tcp_origin: scheme must be tcp:// or tls://, e.g. tcp://127.0.0.1:1883"},
	        {T3 "tcp_origin = tcp://x\n", 21,
	         "tcp_origin: needs a port, e.g. tcp://127.0.0.1:1883 (there is no default port)"},
	        {T3 "tcp_origin = tls://[::1]\n", 21,
	         "tcp_origin: needs a port, e.g. tcp://127.0.0.1:1883 (there is no default port)"},
	        {T3 "tcp_origin = tcp://x:1/\n", 21,
	         "tcp_origin: no path, query or fragment allowed: write it as SCHEME://HOST:PORT"},
	        {T3 "tcp_origin = tcp://x:1/a\n", 21,
	         "tcp_origin: no path, query or fragment allowed: write it as SCHEME://HOST:PORT"},
	        {T3 "tcp_origin = tcp://x:0\n", 21,
	         "tcp_origin: the port must be a number from 1 to 65535"},
	        {T3 "tcp_origin = tcp://x:\n", 21,
	         "tcp_origin: the port must be a number from 1 to 65535"},
	        {T3 "tcp_origin = tcp://x:65536\n", 21,
	         "tcp_origin: the port must be a number from 1 to 65535"},
	        {T3 "tcp_origin = tcp://::1:80\n", 21,
	         "tcp_origin: put an IPv6 address in brackets, e.g. tcp://[::1]:1883"},
	        {T3 "tcp_origin = tcp://:80\n", 21,
	         "tcp_origin: missing host, e.g. tcp://127.0.0.1:1883"},
	        {T3 "tcp_origin = tcp://u@x:80\n", 21,
	         "tcp_origin: user information (user@) is not allowed"},
	        {T3 "tcp_origin = tcp://[::1:80\n", 21,
	         "tcp_origin: missing ']' after the IPv6 address"},
	        {T3 "tcp_origin = tcp://[::1]80\n", 21,
	         "tcp_origin: expected ':' and a port after ']'"},
	        {T3 "tcp_origin = tcp://a..b:80\n", 21,
	         "tcp_origin: \"a..b\" is not a valid host name or address"},
	        {T3 "tcp_origin = tcp://x:1\ntcp_origin = tcp://y:1\n", 22,
	         "duplicate key \"tcp_origin\" in [tenant t3] (first set on line 21): keep one"},
	        /* proxy_protocol */
	        {T3 "tcp_origin = tcp://x:1\nproxy_protocol = V2\n", 22,
	         "proxy_protocol: expected off or v2, not \"V2\""},
	        {T3 "tcp_origin = tcp://x:1\nproxy_protocol = v1\n", 22,
	         "proxy_protocol: expected off or v2, not \"v1\""},
	        {T3 "origin = http://x\nproxy_protocol = v2\n", 22,
	         "proxy_protocol is only used with a tcp_origin: remove it or add tcp_origin = "
	         "tcp://HOST:PORT"},
	        /* origin_ca: for an https:// origin or a tls:// tcp_origin */
	        {T3 "tcp_origin = tcp://x:1\norigin_ca = origin-ca.pem\n", 22, origin_ca},
	        {T3 "origin = http://x\ntcp_origin = tcp://x:1\norigin_ca = origin-ca.pem\n", 23,
	         origin_ca},
	        /* a refused origin is reported once, not again through origin_ca */
	        {T3 "origin = http://x\ntcp_origin = bogus\norigin_ca = origin-ca.pem\n", 22,
	         "tcp_origin: scheme must be tcp:// or tls://, e.g. tcp://127.0.0.1:1883"},
	        {T3 "", 16,
	         "[tenant t3] needs an origin: add origin = http://HOST:PORT of the service behind "
	         "it, or tcp_origin = tcp://HOST:PORT for TCP listeners"},
	};
	static const struct want_error hosted[] = {
	        {15,
	         "[tenant sensors] needs a cert: add cert = PATH of its server certificate chain "
	         "(PEM)"},
	        {15,
	         "[tenant sensors] needs a key: add key = PATH of its server private key (PEM)"},
	        {15, "[tenant sensors] needs a device_ca: add device_ca = PATH of the CA "
	             "certificates that sign its devices (PEM)"},
	};
	static const struct want_error entries[] = {
	        {12, "allow: \"10.0.0.1/8\" has bits set after its /8 prefix: write 10.0.0.0/8"},
	        {12, "allow: \"bogus\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, "
	             "192.0.2.7 or 2001:db8::/32"},
	        {12, "allow: empty entry: separate addresses with single commas"},
	        {13, "deny: \"::/200\": the prefix length after '/' must be 0 to 128"},
	};

	(void)state;
	RUN_CASES(cases);

	/* a tenant that a handshake can select needs its TLS material: by its hosts... */
	EXPECT_ERRORS(PLAIN_L2 "tcp_origin = tcp://x:1\nhosts = sensors.example\n", hosted);
	/* ...or as the default_tenant of a TLS listener as well */
	EXPECT_ERRORS(PLAIN_L2 "tcp_origin = tcp://x:1\n[listener l3]\nbind = 127.0.0.1:2\n"
	                       "protocol = tcp\ndefault_tenant = sensors\n",
	              hosted);
	/* every bad entry of a list is reported, each with its line */
	EXPECT_ERRORS(TCP_L2 "allow = 10.0.0.1/8, bogus, 10.0.0.0/8,\ndeny = ::1, ::/200\n",
	              entries);
}

static void test_missing_sections(void **state)
{
	static const struct error_case cases[] = {
	        {"[tenant demo]\nhosts = demo.example.com\ncert = server.pem\nkey = server.key\n"
	         "device_ca = ca.pem\norigin = http://127.0.0.1:8080\n",
	         0,
	         "no [listener NAME] section: add one, e.g. [listener devices] with bind = "
	         "0.0.0.0:8443"},
	        /* a refused header is reported once, not again as a missing section */
	        {"[listener dev ices]\nbind = 127.0.0.1:8443\n[tenant demo]\nhosts = "
	         "demo.example.com\n"
	         "cert = server.pem\nkey = server.key\ndevice_ca = ca.pem\n"
	         "origin = http://127.0.0.1:8080\n",
	         1, "listener name \"dev ices\": use 1 to 64 letters, digits, '_', '.' or '-'"},
	};
	struct moat_config *cfg;
	struct reports rs;

	(void)state;
	RUN_CASES(cases);

	/* an empty file (or only comments) lacks a listener */
	assert_int_equal(load_text("; nothing\n", &rs, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, 0);
	assert_int_equal(load_text("", &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1);

	/* no tenant is fine: tenants may all come from the store (the admin API) */
	assert_int_equal(load_text("[listener devices]\nbind = 127.0.0.1:8443\n", &rs, &cfg),
	                 MOAT_OK);
	assert_int_equal(cfg->ntenants, 0);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:9900");
	moat_config_free(cfg);

	/* admin_cert and admin_key go together */
	assert_int_equal(load_text("[moat]\nadmin_cert = a.pem\n[listener devices]\n"
	                           "bind = 127.0.0.1:8443\n",
	                           &rs, &cfg),
	                 MOAT_EINVAL);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, 2);

	/* admin_listen = off turns the API off; a bad address is an error on its line */
	assert_int_equal(load_text("[moat]\nadmin_listen = off\n[listener devices]\n"
	                           "bind = 127.0.0.1:8443\n",
	                           &rs, &cfg),
	                 MOAT_OK);
	assert_null(cfg->admin_listen);
	moat_config_free(cfg);
	assert_int_equal(load_text("[moat]\nadmin_listen = nowhere\n[listener devices]\n"
	                           "bind = 127.0.0.1:8443\n",
	                           &rs, &cfg),
	                 MOAT_EINVAL);
	assert_int_equal(rs.r[0].line, 2);
}

/* Loading goes on after an error: every error is reported, with its line. */
static void test_many_errors(void **state)
{
	static const char text[] = "[moat]\n" /* 1 */
	                           "workers = lots\n" /* 2 */
	                           "idle_timeout = 1x\n" /* 3 */
	                           "[listener devices]\n" /* 4 */
	                           "bind = nowhere\n" /* 5 */
	                           "default_tenant = ghost\n" /* 6 */
	                           "[tenant demo]\n" /* 7 */
	                           "hosts = a.example,\n" /* 8 */
	                           "cert = missing.pem\n" /* 9 */
	                           "origin = gopher://x\n" /* 10 */
	                           "[tenant other]\n" /* 11 */
	                           "hosts = a.example\n" /* 12 */
	                           "bogus\n"; /* 13 */
	static const struct {
		unsigned line;
		const char *msg;
	} want[] = {
	        {2, "workers: expected auto or a number from 1 to 256, not \"lots\""},
	        {3, "idle_timeout: \"1x\" is not a duration: write e.g. 10s, 500ms, 5m or 1h"},
	        {5, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443"},
	        {8, "hosts: empty entry: separate host names with single commas"},
	        {9, "cert: cannot read @D/missing.pem: No such file or directory"},
	        {10, "origin: scheme must be http:// or https://, e.g. http://127.0.0.1:8080"},
	        {13, "expected \"key = value\", \"[section]\" or a comment"},
	        {6, "default_tenant \"ghost\" is not a [tenant] section"},
	        {7, "[tenant demo] needs a key: add key = PATH of its server private key (PEM)"},
	        {7, "[tenant demo] needs a device_ca: add device_ca = PATH of the CA certificates "
	            "that "
	            "sign its devices (PEM)"},
	        {11, "[tenant other] needs a cert: add cert = PATH of its server certificate chain "
	             "(PEM)"},
	        {11, "[tenant other] needs a key: add key = PATH of its server private key (PEM)"},
	        {11,
	         "[tenant other] needs a device_ca: add device_ca = PATH of the CA certificates "
	         "that sign its devices (PEM)"},
	        {11, "[tenant other] needs an origin: add origin = http://HOST:PORT of the service "
	             "behind it, or tcp_origin = tcp://HOST:PORT for TCP listeners"},
	        {12,
	         "host \"a.example\" is claimed by tenants \"demo\" and \"other\": keep it in one"},
	};
	struct moat_config *cfg;
	struct reports rs;
	char msg[1024];
	size_t i;

	(void)state;
	assert_int_equal(load_text(text, &rs, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	if (rs.n != MOAT_ARRAY_LEN(want))
		dump(&rs);
	assert_int_equal(rs.n, MOAT_ARRAY_LEN(want));
	for (i = 0; i < MOAT_ARRAY_LEN(want); i++) {
		expand(msg, sizeof(msg), want[i].msg);
		assert_int_equal(rs.r[i].line, want[i].line);
		assert_string_equal(rs.r[i].msg, msg);
	}
	assert_int_equal(alloc_live, 0);
}

/* One name claimed several times, by several tenants: one report per extra claim. */
static void test_host_claims(void **state)
{
	static const char text[] = BASE /* demo: demo.example.com on line 5 */
	        TENANT2 /* t2: lines 10 to 15 */
	        "hosts = demo.example.com\n" /* 16 */
	        "hosts = Demo.example.com\n" /* 17 */
	        "[tenant t3]\n" /* 18 */
	        "hosts = demo.example.com, *.demo.example.com\n" /* 19 */
	        "cert = server.pem\nkey = server.key\ndevice_ca = ca.pem\norigin = http://x\n";
	static const struct {
		unsigned line;
		const char *msg;
	} want[] = {
	        {16,
	         "host \"demo.example.com\" is claimed by tenants \"demo\" and \"t2\": keep it in "
	         "one"},
	        {17, "host \"demo.example.com\" is listed twice in [tenant t2] (also on line 16)"},
	        {19,
	         "host \"demo.example.com\" is claimed by tenants \"demo\" and \"t3\": keep it in "
	         "one"},
	};
	struct moat_config *cfg;
	struct reports rs;
	size_t i;

	(void)state;
	assert_int_equal(load_text(text, &rs, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	if (rs.n != MOAT_ARRAY_LEN(want))
		dump(&rs);
	assert_int_equal(rs.n, MOAT_ARRAY_LEN(want));
	for (i = 0; i < MOAT_ARRAY_LEN(want); i++) {
		assert_int_equal(rs.r[i].line, want[i].line);
		assert_string_equal(rs.r[i].msg, want[i].msg);
	}
	assert_int_equal(alloc_live, 0);
}

/* Names and labels at their length limits and one past them. */
static void test_lengths(void **state)
{
	char text[2048], msg[512], name[80], label[80];
	struct moat_config *cfg;

	(void)state;
	memset(name, 'n', 64);
	name[64] = '\0';
	memset(label, 'l', 63);
	label[63] = '\0';
	snprintf(text, sizeof(text),
	         BASE "[listener %s]\nbind = 127.0.0.1:1\n[tenant %s]\nhosts = %s.example\n"
	              "hosts = %s.%s.x\ncert = server.pem\nkey = server.key\ndevice_ca = ca.pem\n"
	              "origin = http://%s\n",
	         name, name, label, label, label, label);
	cfg = expect_ok(text);
	assert_string_equal(cfg->tenants[1].name, name);
	assert_string_equal(cfg->listeners[1].name, name);
	moat_config_free(cfg);

	name[64] = 'n';
	name[65] = '\0';
	snprintf(text, sizeof(text), BASE "[tenant %s]\n", name);
	snprintf(msg, sizeof(msg),
	         "tenant name \"%s\": use 1 to 64 letters, digits, '_', '.' or '-'", name);
	expect_error(text, 10, msg);

	label[63] = 'l';
	label[64] = '\0';
	snprintf(text, sizeof(text), BASE TENANT2 "hosts = %s.example\n", label);
	snprintf(msg, sizeof(msg),
	         "hosts: \"%s.example\" is not a valid host name: use letters, digits and '-' in "
	         "dot-separated labels",
	         label);
	expect_error(text, 16, msg);

	/* a 253-byte name does not fit on a line, so the limit is checked on its own */
	label[63] = '\0';
	snprintf(text, sizeof(text), "%s.%s.%s.%.61s", label, label, label, label);
	assert_int_equal(strlen(text), 253);
	assert_null(host_problem(text));
	snprintf(text, sizeof(text), "*.%s.%s.%s.%.61s", label, label, label, label);
	assert_null(host_problem(text));
	snprintf(text, sizeof(text), "%s.%s.%s.%.62s", label, label, label, label);
	assert_string_equal(host_problem(text), "is longer than 253 characters");
	assert_true(dns_name_ok("a_b", true));
	assert_false(dns_name_ok("a_b", false));
}

static void test_limits_on_sections(void **state)
{
	size_t cap = 1 << 20, len = 0, i;
	char *text = malloc(cap);
	struct moat_config *cfg;
	struct reports rs;
	unsigned line = 0;

	(void)state;
	assert_non_null(text);
	len += (size_t)snprintf(text + len, cap - len, "%s", BASE);
	line = 9;
	for (i = 0; i < MAX_LISTENERS; i++) { /* one more than allowed, with BASE's */
		len += (size_t)snprintf(text + len, cap - len,
		                        "[listener l%zu]\nbind = 127.0.0.1:0\n", i);
		line += 2;
	}
	assert_int_equal(load_text(text, &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, line - 1);
	assert_string_equal(rs.r[0].msg, "too many [listener] sections (at most 256)");

	len = (size_t)snprintf(text, cap, "%s", BASE);
	line = 9;
	for (i = 0; i < MAX_TENANTS; i++) {
		len += (size_t)snprintf(text + len, cap - len,
		                        "[tenant t%zu]\nhosts = t%zu.example\ncert = server.pem\n"
		                        "key = server.key\ndevice_ca = ca.pem\norigin = http://x\n",
		                        i, i);
		line += 6;
	}
	assert_int_equal(load_text(text, &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, line - 5);
	assert_string_equal(rs.r[0].msg, "too many [tenant] sections (at most 4096)");
	free(text);
	assert_int_equal(alloc_live, 0);
}

static void test_file_errors(void **state)
{
	struct moat_config *cfg = (struct moat_config *)1;
	struct reports rs;
	char *big;

	(void)state;
	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("missing.conf", collect, &rs, &cfg), MOAT_EIO);
	assert_null(cfg);
	assert_int_equal(rs.n, 1);
	assert_string_equal(rs.file, "missing.conf");
	assert_int_equal(rs.r[0].line, 0);
	assert_string_equal(rs.r[0].msg, "cannot open: No such file or directory");

	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("adir", collect, &rs, &cfg), MOAT_EIO);
	assert_int_equal(rs.n, 1);
	assert_string_equal(rs.r[0].msg, "cannot read: Is a directory");

	/* a megabyte is plenty: a larger file is probably not a config file */
	big = malloc(MAX_FILE_SIZE + 1);
	assert_non_null(big);
	memset(big, '\n', MAX_FILE_SIZE + 1);
	write_file("big.conf", big, MAX_FILE_SIZE);
	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("big.conf", collect, &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1); /* only blank lines: no listener */
	write_file("big.conf", big, MAX_FILE_SIZE + 1);
	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("big.conf", collect, &rs, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, 0);
	assert_string_equal(rs.r[0].msg, "the file is larger than 1024 KiB: is it the right file?");
	free(big);

	/* files that are not regular are read to their end, within the same limit */
	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("/dev/null", collect, &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1); /* empty: no listener */
	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("/dev/zero", collect, &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1);
	assert_string_equal(rs.r[0].msg, "the file is larger than 1024 KiB: is it the right file?");

	/* a NUL byte is a control character like any other */
	write_file("test.conf", BASE "a = b\0c\n", sizeof(BASE "a = b\0c\n") - 1);
	memset(&rs, 0, sizeof(rs));
	assert_int_equal(moat_config_load("test.conf", collect, &rs, &cfg), MOAT_EINVAL);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].line, 10);
	assert_string_equal(rs.r[0].msg,
	                    "control character 0x00 in column 6: only tabs are allowed");

	/* without a report callback errors are only counted */
	write_file("test.conf", "[moat]\n", 7);
	assert_int_equal(moat_config_load("test.conf", NULL, NULL, &cfg), MOAT_EINVAL);
	assert_null(cfg);
	assert_int_equal(alloc_live, 0);
}

/* Every allocation fails in turn: the load reports it and leaks nothing. */
static void test_out_of_memory(void **state)
{
	char text[4096];
	struct moat_config *cfg;
	struct reports rs;
	long n;
	int rc;

	(void)state;
	snprintf(text, sizeof(text),
	         BASE "[moat]\ndata_dir = var\naccess_log = a.log\nerror_log = e.log\n"
	              "pid_file = p.pid\n" TENANT2 "hosts = a.x, b.x, c.x, d.x, e.x, f.x\n"
	              "device_ca = ca.pem, ca2.pem, ca.pem, ca2.pem\ncrl = crl.pem\n"
	              "[listener l2]\nbind = [::1]:1\ndefault_tenant = t2\n"
	              "allow = 10.0.0.0/8, ::1, 192.0.2.1, 192.0.2.2, 192.0.2.3\ndeny = ::/0\n"
	              "[listener l3]\nbind = [::1]:2\nprotocol = tcp\ntls = off\n"
	              "default_tenant = plain\n[tenant plain]\ntcp_origin = tls://x:1\n"
	              "origin_ca = origin-ca.pem\n");
	for (n = 1;; n++) {
		alloc_count = 0;
		alloc_fail_at = n;
		rc = load_text(text, &rs, &cfg);
		alloc_fail_at = 0;
		if (alloc_count < n) { /* nothing failed: done */
			assert_int_equal(rc, MOAT_OK);
			moat_config_free(cfg);
			assert_int_equal(alloc_live, 0);
			break;
		}
		if (rc != MOAT_ENOMEM)
			dump(&rs);
		assert_int_equal(rc, MOAT_ENOMEM);
		assert_null(cfg);
		assert_int_equal(alloc_live, 0);
		assert_int_equal(rs.n, 1);
		assert_string_equal(rs.r[0].msg, "out of memory");
	}
	assert_true(n > 20);
}

/* ---- helpers ---- */

static void test_clean_path(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	        {"/", "/"},
	        {"//", "/"},
	        {"/a/./b//c/", "/a/b/c"},
	        {"/./.", "/"},
	        {"/a/../b", "/a/../b"},
	        {"/a/.b/..c", "/a/.b/..c"},
	};
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < MOAT_ARRAY_LEN(cases); i++) {
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		clean_path(buf);
		assert_string_equal(buf, cases[i].out);
	}
}

static void test_distance(void **state)
{
	(void)state;
	assert_int_equal(distance("bind", "bind"), 0);
	assert_int_equal(distance("bnid", "bind"), 1);
	assert_int_equal(distance("bin", "bind"), 1);
	assert_int_equal(distance("", "abc"), 3);
	assert_int_equal(distance("kitten", "sitting"), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_duration),  cmocka_unit_test(test_parse_size),
	        cmocka_unit_test(test_clean_path),      cmocka_unit_test(test_distance),
	        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_full),
	        cmocka_unit_test(test_workers_auto),    cmocka_unit_test(test_empty_values),
	        cmocka_unit_test(test_long_lines),      cmocka_unit_test(test_syntax_errors),
	        cmocka_unit_test(test_key_errors),      cmocka_unit_test(test_moat_errors),
	        cmocka_unit_test(test_listener_errors), cmocka_unit_test(test_tenant_errors),
	        cmocka_unit_test(test_origin_errors),   cmocka_unit_test(test_tcp),
	        cmocka_unit_test(test_tcp_errors),      cmocka_unit_test(test_missing_sections),
	        cmocka_unit_test(test_many_errors),     cmocka_unit_test(test_host_claims),
	        cmocka_unit_test(test_lengths),         cmocka_unit_test(test_limits_on_sections),
	        cmocka_unit_test(test_file_errors),     cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
