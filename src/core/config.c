/*
 * Loading the configuration file (see config.h and docs/configuration.md).
 *
 * inih splits "key = value" lines and strips comments. What it does not do well for us is done
 * in the reader that feeds it one line at a time:
 *  - line numbers: Debian builds inih with INI_HANDLER_LINENO=0, but inih calls the reader
 *    once per line and calls the handler before it reads the next one, so the reader's count
 *    is the line of every handler call;
 *  - long lines: inih reads into a fixed INI_MAX_LINE buffer, fgets-style, and would cut a
 *    longer line in two silently; the reader refuses it instead;
 *  - sections: inih truncates section names to 49 bytes and never reports a section without
 *    keys, so the reader parses section headers itself and hands inih a blank line;
 *  - indentation: with INI_ALLOW_MULTILINE an indented line continues the previous value, so
 *    an indented "cert = x" would silently become part of the key above it; the reader strips
 *    leading whitespace, which makes indentation cosmetic;
 *  - syntax errors: inih returns only the first one; the reader reports each, then hands inih
 *    a blank line, so inih itself never sees a malformed line.
 * Every error is reported and loading goes on, so one run shows them all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerror_r returning the message */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "http/parse.h"

#define MAX_FILE_SIZE ((size_t)1024 * 1024) /* a config file is small: caps the read buffer */
#define MAX_LISTENERS 256
#define MAX_TENANTS 4096 /* sections are looked up linearly while loading */
#define MAX_NAME 64
#define MAX_WORKERS 256
#define MAX_SECTION_KEYS 16
#define MAX_KEEPALIVE 10000
#define MAX_CONNECTIONS 1000000

#define SEC_MS 1000ULL
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define KIB 1024ULL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

#define DEFAULT_DATA_DIR "/var/lib/moat"

enum {
	MK_WORKERS,
	MK_DATA_DIR,
	MK_ACCESS_LOG,
	MK_ERROR_LOG,
	MK_LOG_LEVEL,
	MK_PID_FILE,
	MK_HANDSHAKE_TIMEOUT,
	MK_IDLE_TIMEOUT,
	MK_REQUEST_HEADER_TIMEOUT,
	MK_REQUEST_BODY_TIMEOUT,
	MK_ORIGIN_CONNECT_TIMEOUT,
	MK_ORIGIN_RESPONSE_TIMEOUT,
	MK_DRAIN_TIMEOUT,
	MK_TCP_IDLE_TIMEOUT,
	MK_MAX_CONNECTIONS,
	MK_MAX_CONNECTIONS_PER_IP,
	MK_MAX_REQUEST_LINE,
	MK_MAX_HEADER_SIZE,
	MK_MAX_HEADERS,
	MK_REQUEST_BODY_MIN_RATE,
	MK_ORIGIN_KEEPALIVE,
	MK_TCP_BUFFER,
	MK_SECURITY_LOG,
	MK_RULES_BODY_LIMIT,
	MK_ADMIN_LISTEN,
	MK_ADMIN_CERT,
	MK_ADMIN_KEY,
	MK_STORE,
	MK_COUNT
};

enum { LK_BIND, LK_PROTOCOL, LK_DEFAULT_TENANT, LK_TLS, LK_ALLOW, LK_DENY, LK_COUNT };

enum {
	TK_HOSTS,
	TK_CERT,
	TK_KEY,
	TK_DEVICE_CA,
	TK_CRL,
	TK_MTLS,
	TK_DEVICE_ID,
	TK_ORIGIN,
	TK_ORIGIN_CA,
	TK_TCP_ORIGIN,
	TK_PROXY_PROTOCOL,
	TK_RULES,
	TK_TCP_RULES,
	TK_DEVICES,
	TK_COUNT
};

enum section { SEC_NONE, SEC_MOAT, SEC_LISTENER, SEC_TENANT, SEC_SKIP };

/* A host name claimed by a tenant, for the duplicate check once every tenant is read. */
struct hostref {
	const char *host; /* owned by the tenant */
	size_t tenant;
	unsigned line;
};

/* Line on which each key of one section was first set (0 if not set), and whether a value of
 * it was refused, so that checks across keys do not report a refused value a second time. */
struct seen {
	unsigned line[MAX_SECTION_KEYS];
	bool bad[MAX_SECTION_KEYS];
};

struct loader {
	const char *file; /* as the caller named it, for reports */
	moat_config_report_fn report;
	void *arg;
	struct moat_config *cfg;

	char *cwd; /* NULL if unknown; cwd_errno says why */
	int cwd_errno;

	char *data; /* the whole file */
	size_t len, pos;
	unsigned line; /* line last handed to inih */

	unsigned nerrors;
	bool nomem;

	enum section sec;
	size_t cur; /* index of the current listener or tenant */
	char label[96]; /* the current section, as written in messages: "[tenant demo]" */
	unsigned moat_line;
	unsigned moat_seen[MK_COUNT];
	bool moat_bad[MK_COUNT]; /* the value on that line was refused */
	bool bad_listener_header, bad_tenant_header;

	struct seen *lseen, *tseen;
	size_t lcap, tcap, lseen_cap, tseen_cap;

	struct hostref *hosts;
	size_t nhosts, hosts_cap;
};

struct key;
/* Parses and stores one value into obj; reports and returns false if it is refused. */
typedef bool (*key_setter)(struct loader *ld, const struct key *k, void *obj, const char *v);

struct key {
	const char *name;
	key_setter set;
	size_t off; /* of the field in obj */
	uint64_t min, max;
	bool list; /* may be repeated: every line adds to the list */
};

/* ---- reporting ---- */

static void problem_at(struct loader *ld, unsigned line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void problem_at(struct loader *ld, unsigned line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ld->nerrors++;
	if (ld->report != NULL)
		ld->report(ld->arg, ld->file, line, msg);
}

#define problem(ld, ...) problem_at((ld), (ld)->line, __VA_ARGS__)

static void out_of_memory(struct loader *ld)
{
	if (ld->nomem)
		return;
	ld->nomem = true;
	if (ld->report != NULL)
		ld->report(ld->arg, ld->file, ld->line, "out of memory");
}

static const char *errstr(int err, char *buf, size_t cap)
{
	/* GNU strerror_r: returns the message, not necessarily in buf */
	return strerror_r(err, buf, cap);
}

/* ---- small string helpers ---- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char to_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Trims blanks around s[0..*n) and returns the new start. */
static const char *trim(const char *s, size_t *n)
{
	while (*n > 0 && is_blank(s[0])) {
		s++;
		(*n)--;
	}
	while (*n > 0 && is_blank(s[*n - 1]))
		(*n)--;
	return s;
}

/* Splits the comma list v: calls fn on each trimmed item, or with n == 0 for an empty one. */
static void for_each_item(struct loader *ld, const char *v, void *obj,
                          void (*fn)(struct loader *, void *, const char *, size_t))
{
	for (;;) {
		const char *comma = strchr(v, ',');
		size_t n = comma != NULL ? (size_t)(comma - v) : strlen(v);
		const char *item = trim(v, &n);

		fn(ld, obj, item, n);
		if (comma == NULL || ld->nomem)
			return;
		v = comma + 1;
	}
}

/* Grows an array to hold `need` elements; returns it, or NULL (the old one intact). */
static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap != 0 ? *cap : 4;
	void *p;

	if (need <= *cap)
		return arr;
	while (ncap < need)
		ncap *= 2;
	p = moat_realloc(arr, ncap * elem);
	if (p == NULL)
		return NULL;
	*cap = ncap;
	return p;
}

/*
 * Room for one more element in a list whose capacity is implied by its length n (4, then
 * powers of two), so repeated keys do not cost a copy each.
 */
static void *grow_list(void *arr, size_t n, size_t elem)
{
	if (n != 0 && (n < 4 || (n & (n - 1)) != 0))
		return arr;
	return moat_realloc(arr, (n < 4 ? 4 : 2 * n) * elem);
}

/* ---- numbers, durations, sizes ---- */

/* Strict decimal: at least one digit, no sign, no overflow. Returns the end of the digits. */
static const char *parse_digits(const char *s, uint64_t *v)
{
	const char *p = s;
	uint64_t n = 0;

	for (; is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return NULL;
		n = n * 10 + d;
	}
	if (p == s)
		return NULL;
	*v = n;
	return p;
}

static bool parse_uint(const char *s, uint64_t *v)
{
	const char *end = parse_digits(s, v);

	return end != NULL && *end == '\0';
}

int moat_config_parse_duration(const char *s, uint64_t *ms)
{
	const char *unit;
	uint64_t v, mul;

	if (s == NULL || ms == NULL)
		return MOAT_EINVAL;
	unit = parse_digits(s, &v);
	if (unit == NULL)
		return MOAT_EINVAL;
	if (strcmp(unit, "") == 0 || strcmp(unit, "s") == 0)
		mul = SEC_MS;
	else if (strcmp(unit, "ms") == 0)
		mul = 1;
	else if (strcmp(unit, "m") == 0)
		mul = MIN_MS;
	else if (strcmp(unit, "h") == 0)
		mul = HOUR_MS;
	else
		return MOAT_EINVAL;
	if (v > UINT64_MAX / mul)
		return MOAT_EINVAL;
	*ms = v * mul;
	return MOAT_OK;
}

int moat_config_parse_size(const char *s, uint64_t *bytes)
{
	const char *unit;
	uint64_t v, mul;

	if (s == NULL || bytes == NULL)
		return MOAT_EINVAL;
	unit = parse_digits(s, &v);
	if (unit == NULL)
		return MOAT_EINVAL;
	/* sizes have no unit that a capital letter could confuse, so both cases are fine */
	if (unit[0] == '\0')
		mul = 1;
	else if (unit[1] != '\0')
		return MOAT_EINVAL;
	else if (unit[0] == 'k' || unit[0] == 'K')
		mul = KIB;
	else if (unit[0] == 'm' || unit[0] == 'M')
		mul = MIB;
	else if (unit[0] == 'g' || unit[0] == 'G')
		mul = GIB;
	else
		return MOAT_EINVAL;
	if (v > UINT64_MAX / mul)
		return MOAT_EINVAL;
	*bytes = v * mul;
	return MOAT_OK;
}

/* Writes a duration the way a user would: "24h", "500ms". */
static const char *fmt_duration(char *buf, size_t cap, uint64_t ms)
{
	static const struct {
		uint64_t mul;
		const char *unit;
	} units[] = {{HOUR_MS, "h"}, {MIN_MS, "m"}, {SEC_MS, "s"}, {1, "ms"}};
	size_t i;

	for (i = 0; ms != 0 && i < MOAT_ARRAY_LEN(units); i++) {
		if (ms % units[i].mul == 0) {
			snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / units[i].mul),
			         units[i].unit);
			return buf;
		}
	}
	snprintf(buf, cap, "%llu", (unsigned long long)ms);
	return buf;
}

/* Writes a size the way a user would: "1m", "256". */
static const char *fmt_size(char *buf, size_t cap, uint64_t n)
{
	if (n != 0 && n % GIB == 0)
		snprintf(buf, cap, "%llug", (unsigned long long)(n / GIB));
	else if (n != 0 && n % MIB == 0)
		snprintf(buf, cap, "%llum", (unsigned long long)(n / MIB));
	else if (n != 0 && n % KIB == 0)
		snprintf(buf, cap, "%lluk", (unsigned long long)(n / KIB));
	else
		snprintf(buf, cap, "%llu", (unsigned long long)n);
	return buf;
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	if (n > MAX_WORKERS)
		return MAX_WORKERS;
	return (unsigned)n;
}

/* ---- names and addresses ---- */

/* Section names: [A-Za-z0-9_.-]{1,64}. */
static bool name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > MAX_NAME)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return true;
}

/*
 * A DNS name: dot-separated labels of 1 to 63 letters, digits and '-' (not first or last),
 * at most 253 bytes. Origins may also use '_', common in container service names.
 */
static bool dns_name_ok(const char *s, bool underscore)
{
	size_t total = strlen(s), label = 0;
	const char *p;

	if (total == 0 || total > 253)
		return false;
	for (p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = 0;
			continue;
		}
		if (label == 0 && *p == '-')
			return false;
		if (!is_alpha(*p) && !is_digit(*p) && *p != '-' && !(underscore && *p == '_'))
			return false;
		label++;
	}
}

static bool all_digits_and_dots(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!is_digit(*s) && *s != '.')
			return false;
	}
	return true;
}

/* ---- paths ---- */

/* Removes empty and "." segments in place; ".." is kept, as symlinks make it ambiguous. */
static void clean_path(char *p)
{
	char *out = p, *in = p;

	while (*in != '\0') {
		char *seg;
		size_t n;

		while (*in == '/')
			in++;
		seg = in;
		while (*in != '\0' && *in != '/')
			in++;
		n = (size_t)(in - seg);
		if (n == 0 || (n == 1 && seg[0] == '.'))
			continue;
		*out++ = '/';
		memmove(out, seg, n);
		out += n;
	}
	if (out == p)
		*out++ = '/';
	*out = '\0';
}

/*
 * Returns the absolute form of path (relative paths join the working directory), or NULL
 * after reporting why. Symlinks are not resolved: a certificate path may be a link that is
 * swapped on renewal.
 */
static char *abs_path(struct loader *ld, const char *key, const char *path)
{
	char buf[128];
	size_t clen, plen = strlen(path);
	char *p;

	if (path[0] == '/') {
		p = moat_strdup(path);
		if (p == NULL) {
			out_of_memory(ld);
			return NULL;
		}
		clean_path(p);
		return p;
	}
	if (ld->cwd == NULL) {
		problem(ld,
		        "%s: cannot resolve the relative path %s: the working directory is unknown "
		        "(%s)",
		        key, path, errstr(ld->cwd_errno, buf, sizeof(buf)));
		return NULL;
	}
	clen = strlen(ld->cwd);
	p = moat_malloc(clen + 1 + plen + 1);
	if (p == NULL) {
		out_of_memory(ld);
		return NULL;
	}
	memcpy(p, ld->cwd, clen);
	p[clen] = '/';
	memcpy(p + clen + 1, path, plen + 1);
	clean_path(p);
	return p;
}

/* Returns NULL if path names a readable regular file, else why not. */
static const char *unreadable(const char *path, char *buf, size_t cap)
{
	struct stat st;
	int fd;

	/* stat first: opening a FIFO or a device to test it could block or have side effects */
	if (stat(path, &st) != 0)
		return errstr(errno, buf, cap);
	if (S_ISDIR(st.st_mode))
		return errstr(EISDIR, buf, cap);
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errstr(errno, buf, cap);
	close(fd);
	return NULL;
}

/* Resolves and checks a file named by `key`; NULL after reporting. */
static char *readable_file(struct loader *ld, const char *key, const char *v)
{
	char buf[128];
	const char *why;
	char *p = abs_path(ld, key, v);

	if (p == NULL)
		return NULL;
	why = unreadable(p, buf, sizeof(buf));
	if (why != NULL) {
		problem(ld, "%s: cannot read %s: %s", key, p, why);
		moat_free(p);
		return NULL;
	}
	return p;
}

static char *get_cwd(int *err)
{
	size_t cap = 256;

	for (;;) {
		char *buf = moat_malloc(cap);

		if (buf == NULL) {
			*err = ENOMEM;
			return NULL;
		}
		if (getcwd(buf, cap) != NULL)
			return buf;
		*err = errno;
		moat_free(buf);
		if (*err != ERANGE || cap >= 65536)
			return NULL;
		cap *= 2;
	}
}

/* ---- value setters ---- */

#define FIELD(obj, k, type) ((type *)(void *)((char *)(obj) + (k)->off))

static bool set_string(struct loader *ld, char **field, const char *v)
{
	char *s = moat_strdup(v);

	if (s == NULL) {
		out_of_memory(ld);
		return false;
	}
	moat_free(*field);
	*field = s;
	return true;
}

static bool set_workers(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	uint64_t n;

	if (strcmp(v, "auto") == 0) {
		*FIELD(obj, k, unsigned) = online_cpus();
		return true;
	}
	if (!parse_uint(v, &n) || n < k->min || n > k->max) {
		problem(ld, "workers: expected auto or a number from %llu to %llu, not \"%s\"",
		        (unsigned long long)k->min, (unsigned long long)k->max, v);
		return false;
	}
	*FIELD(obj, k, unsigned) = (unsigned)n;
	return true;
}

/* A path that moatd creates or opens itself later: resolved, not checked. */
static bool set_path(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	char *p;

	if (v[0] == '\0') {
		problem(ld, "%s: needs a path", k->name);
		return false;
	}
	p = abs_path(ld, k->name, v);
	if (p == NULL)
		return false;
	moat_free(*FIELD(obj, k, char *));
	*FIELD(obj, k, char *) = p;
	return true;
}

/* Like set_path, but an empty value means none. */
static bool set_opt_path(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	if (v[0] == '\0') {
		moat_free(*FIELD(obj, k, char *));
		*FIELD(obj, k, char *) = NULL;
		return true;
	}
	return set_path(ld, k, obj, v);
}

/* Returns the index of v in opts, or -1. */
static int match(const char *v, const char *const *opts, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(v, opts[i]) == 0)
			return (int)i;
	}
	return -1;
}

static bool set_log_level(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	static const char *const opts[] = {"debug", "info", "warn", "error"};
	static const enum moat_log_level levels[] = {MOAT_LOG_DEBUG, MOAT_LOG_INFO, MOAT_LOG_WARN,
	                                             MOAT_LOG_ERROR};
	int i = match(v, opts, MOAT_ARRAY_LEN(opts));

	if (i < 0) {
		problem(ld, "log_level: expected debug, info, warn or error, not \"%s\"", v);
		return false;
	}
	*FIELD(obj, k, enum moat_log_level) = levels[i];
	return true;
}

static bool set_duration(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	char lo[32], hi[32];
	uint64_t ms;

	if (moat_config_parse_duration(v, &ms) != MOAT_OK) {
		problem(ld, "%s: \"%s\" is not a duration: write e.g. 10s, 500ms, 5m or 1h",
		        k->name, v);
		return false;
	}
	if (ms < k->min || ms > k->max) {
		problem(ld, "%s: must be between %s and %s", k->name,
		        fmt_duration(lo, sizeof(lo), k->min), fmt_duration(hi, sizeof(hi), k->max));
		return false;
	}
	*FIELD(obj, k, uint64_t) = ms;
	return true;
}

static bool set_unsigned(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	uint64_t n;

	if (!parse_uint(v, &n) || n < k->min || n > k->max) {
		problem(ld, "%s: expected a number from %llu to %llu, not \"%s\"", k->name,
		        (unsigned long long)k->min, (unsigned long long)k->max, v);
		return false;
	}
	*FIELD(obj, k, unsigned) = (unsigned)n;
	return true;
}

static bool check_size(struct loader *ld, const struct key *k, const char *v, uint64_t *n)
{
	char lo[32], hi[32];

	if (moat_config_parse_size(v, n) != MOAT_OK) {
		problem(ld, "%s: \"%s\" is not a size: write e.g. 8192, 16k or 1m", k->name, v);
		return false;
	}
	if (*n < k->min || *n > k->max) {
		problem(ld, "%s: must be between %s and %s", k->name,
		        fmt_size(lo, sizeof(lo), k->min), fmt_size(hi, sizeof(hi), k->max));
		return false;
	}
	return true;
}

static bool set_size(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	uint64_t n;

	if (!check_size(ld, k, v, &n))
		return false;
	*FIELD(obj, k, size_t) = (size_t)n;
	return true;
}

static bool set_size64(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	uint64_t n;

	if (!check_size(ld, k, v, &n))
		return false;
	*FIELD(obj, k, uint64_t) = n;
	return true;
}

/* [listener] */

static bool set_bind(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	struct moat_config_listener *l = obj;
	struct sockaddr_storage ss;
	socklen_t len;
	const char *host, *host_end, *port_s;
	char host_buf[INET6_ADDRSTRLEN + 1];
	size_t host_len;
	uint64_t port;

	(void)k;
	if (v[0] == '[') {
		host = v + 1;
		host_end = strchr(host, ']');
		if (host_end == NULL || host_end[1] != ':')
			goto syntax;
		port_s = host_end + 2;
	} else {
		const char *colon = strrchr(v, ':');

		if (colon == NULL)
			goto syntax;
		if (memchr(v, ':', (size_t)(colon - v)) != NULL) {
			problem(ld, "bind: put an IPv6 address in brackets, e.g. [::]:8443");
			return false;
		}
		host = v;
		host_end = colon;
		port_s = colon + 1;
	}
	if (host == host_end)
		goto syntax;
	if (!parse_uint(port_s, &port) || port > 65535) {
		problem(ld, "bind: the port must be a number from 0 to 65535 (0: any free port)");
		return false;
	}
	host_len = (size_t)(host_end - host);
	if (host_len >= sizeof(host_buf))
		goto bad_host;
	memcpy(host_buf, host, host_len);
	host_buf[host_len] = '\0';

	memset(&ss, 0, sizeof(ss));
	if (v[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET6, host_buf, &a6->sin6_addr) != 1)
			goto bad_host;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		/* no name resolution at startup: only literals and localhost */
		if (strcmp(host_buf, "localhost") == 0)
			a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, host_buf, &a4->sin_addr) != 1)
			goto bad_host;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		len = sizeof(*a4);
	}
	if (!set_string(ld, &l->bind, v))
		return false;
	l->addr = ss;
	l->addrlen = len;
	return true;

syntax:
	problem(ld, "bind: expected HOST:PORT, e.g. 0.0.0.0:8443");
	return false;
bad_host:
	problem(ld,
	        "bind: \"%.*s\" is not an IP address: use an IPv4 address, an IPv6 address in "
	        "brackets or localhost (host names are not resolved)",
	        (int)(host_end - host), host);
	return false;
}

/* The admin API's address: like a listener's bind, or "off". */
static bool set_admin_listen(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	struct moat_config *cfg = obj;
	struct moat_config_listener l;
	bool ok;

	if (strcmp(v, "off") == 0) {
		moat_free(cfg->admin_listen);
		cfg->admin_listen = NULL;
		return true;
	}
	memset(&l, 0, sizeof(l));
	ok = set_bind(ld, k, &l, v);
	moat_free(l.bind);
	return ok && set_string(ld, &cfg->admin_listen, v);
}

static bool set_protocol(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	static const char *const opts[] = {"http", "tcp", "mqtt"};
	static const enum moat_listener_protocol protos[] = {MOAT_PROTO_HTTP, MOAT_PROTO_TCP,
	                                                     MOAT_PROTO_MQTT};
	int i = match(v, opts, MOAT_ARRAY_LEN(opts));

	if (i < 0) {
		problem(ld, "protocol: expected http or tcp, not \"%s\"", v);
		return false;
	}
	/* mqtt is reserved for the MQTT proxy to come; until then it runs over protocol = tcp */
	if (protos[i] == MOAT_PROTO_MQTT) {
		problem(ld, "protocol: %s is not supported yet: use http or tcp", v);
		return false;
	}
	*FIELD(obj, k, enum moat_listener_protocol) = protos[i];
	return true;
}

static bool set_tls(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	static const char *const opts[] = {"on", "off"};
	int i = match(v, opts, MOAT_ARRAY_LEN(opts));

	if (i < 0) {
		problem(ld, "tls: expected on or off, not \"%s\"", v);
		return false;
	}
	*FIELD(obj, k, int) = i == 0;
	return true;
}

/* One of a listener's address lists, for add_cidr(). */
struct cidr_list {
	const char *key;
	struct moat_cidr **list;
	size_t *n;
};

/* Says why s is not a range. moat_cidr_parse() only says that it is not. */
static void cidr_problem(struct loader *ld, const char *key, const char *s)
{
	char addr[INET6_ADDRSTRLEN], masked[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	struct moat_cidr c;
	const unsigned char *src;
	uint64_t prefix;
	unsigned max, bits;
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s), i;
	bool v6;

	if (slash == NULL || n >= sizeof(addr))
		goto syntax;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (moat_cidr_parse(addr, &c) != MOAT_OK)
		goto syntax;
	v6 = strchr(addr, ':') != NULL;
	max = v6 ? 128 : 32;
	if (!parse_uint(slash + 1, &prefix) || prefix > max ||
	    (slash[1] == '0' && slash[2] != '\0')) {
		problem(ld, "%s: \"%s\": the prefix length after '/' must be 0 to %u", key, s, max);
		return;
	}
	/* the address is valid and so is the prefix: the address has bits set after the prefix */
	bits = (unsigned)prefix + (v6 ? 0 : 96);
	for (i = 0; i < 16; i++) {
		unsigned keep = bits < 8 ? bits : 8;

		c.addr[i] &= (unsigned char)(0xff00 >> keep);
		bits -= keep;
	}
	src = v6 ? c.addr : c.addr + 12; /* IPv4 is stored mapped: its last 4 bytes */
	if (inet_ntop(v6 ? AF_INET6 : AF_INET, src, masked, sizeof(masked)) == NULL)
		goto syntax;
	problem(ld, "%s: \"%s\" has bits set after its /%s prefix: write %s/%s", key, s, slash + 1,
	        masked, slash + 1);
	return;
syntax:
	problem(ld,
	        "%s: \"%s\" is not an IP address or a CIDR range, e.g. 10.0.0.0/8, 192.0.2.7 or "
	        "2001:db8::/32",
	        key, s);
}

static void add_cidr(struct loader *ld, void *obj, const char *item, size_t n)
{
	const struct cidr_list *cl = obj;
	struct moat_cidr c, *list;
	char *v;

	if (n == 0) {
		problem(ld, "%s: empty entry: separate addresses with single commas", cl->key);
		return;
	}
	v = moat_strndup(item, n);
	if (v == NULL) {
		out_of_memory(ld);
		return;
	}
	if (moat_cidr_parse(v, &c) != MOAT_OK) {
		cidr_problem(ld, cl->key, v);
		moat_free(v);
		return;
	}
	moat_free(v);
	list = grow_list(*cl->list, *cl->n, sizeof(*list));
	if (list == NULL) {
		out_of_memory(ld);
		return;
	}
	*cl->list = list;
	list[(*cl->n)++] = c;
}

static bool set_cidrs(struct loader *ld, struct cidr_list *cl, const char *v)
{
	unsigned before = ld->nerrors;

	if (v[0] == '\0') {
		problem(ld,
		        "%s: expected addresses or CIDR ranges separated by commas, e.g. "
		        "10.0.0.0/8, ::1",
		        cl->key);
		return false;
	}
	for_each_item(ld, v, cl, add_cidr);
	return ld->nerrors == before;
}

static bool set_allow(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	struct moat_config_listener *l = obj;
	struct cidr_list cl = {k->name, &l->allow, &l->nallow};

	return set_cidrs(ld, &cl, v);
}

static bool set_deny(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	struct moat_config_listener *l = obj;
	struct cidr_list cl = {k->name, &l->deny, &l->ndeny};

	return set_cidrs(ld, &cl, v);
}

/* A name of another section, checked once every section is read. Empty means none. */
static bool set_ref(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	char **field = FIELD(obj, k, char *);

	if (v[0] == '\0') {
		moat_free(*field);
		*field = NULL;
		return true;
	}
	return set_string(ld, field, v);
}

/* [tenant] */

static const char *host_problem(const char *h)
{
	unsigned char addr[sizeof(struct in_addr)];
	const char *name = h;
	size_t len = strlen(h);

	if (strcmp(h, "*") == 0)
		return "would match every name: a listener's default_tenant does that";
	if (strchr(h, ':') != NULL || inet_pton(AF_INET, h, addr) == 1)
		return "is an IP address, but devices send host names (SNI), never addresses: "
		       "use a listener's default_tenant for devices that connect by address";
	if (h[0] == '*' && h[1] == '.')
		name = h + 2;
	if (strchr(name, '*') != NULL)
		return "has a misplaced '*': a wildcard is a whole first label, e.g. *.example.com";
	if (name[0] != '\0' && h[len - 1] == '.')
		return "ends with a dot: remove it";
	if (strlen(name) > 253)
		return "is longer than 253 characters";
	if (!dns_name_ok(name, false))
		return "is not a valid host name: use letters, digits and '-' in dot-separated "
		       "labels";
	return NULL;
}

static void add_host(struct loader *ld, void *obj, const char *item, size_t n)
{
	struct moat_config_tenant *t = obj;
	const char *why;
	char **hosts;
	struct hostref *refs;
	char *h;
	size_t i;

	if (n == 0) {
		problem(ld, "hosts: empty entry: separate host names with single commas");
		return;
	}
	h = moat_strndup(item, n);
	if (h == NULL) {
		out_of_memory(ld);
		return;
	}
	for (i = 0; i < n; i++)
		h[i] = to_lower(h[i]);
	why = host_problem(h);
	if (why != NULL) {
		problem(ld, "hosts: \"%.*s\" %s", (int)n, item, why);
		moat_free(h);
		return;
	}
	hosts = grow_list(t->hosts, t->nhosts, sizeof(*hosts));
	if (hosts == NULL) {
		moat_free(h);
		out_of_memory(ld);
		return;
	}
	t->hosts = hosts;
	refs = grow(ld->hosts, &ld->hosts_cap, ld->nhosts + 1, sizeof(*refs));
	if (refs == NULL) {
		moat_free(h);
		out_of_memory(ld);
		return;
	}
	ld->hosts = refs;
	t->hosts[t->nhosts++] = h;
	ld->hosts[ld->nhosts++] = (struct hostref){h, ld->cur, ld->line};
}

static bool set_hosts(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	unsigned before = ld->nerrors;

	(void)k;
	if (v[0] == '\0') {
		problem(ld, "hosts: expected host names separated by commas, e.g. "
		            "demo.example.com, *.demo.example.com");
		return false;
	}
	for_each_item(ld, v, obj, add_host);
	return ld->nerrors == before;
}

static bool set_file(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	char *p;

	if (v[0] == '\0') {
		problem(ld, "%s: needs a path", k->name);
		return false;
	}
	p = readable_file(ld, k->name, v);
	if (p == NULL)
		return false;
	moat_free(*FIELD(obj, k, char *));
	*FIELD(obj, k, char *) = p;
	return true;
}

static bool set_opt_file(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	if (v[0] == '\0') {
		moat_free(*FIELD(obj, k, char *));
		*FIELD(obj, k, char *) = NULL;
		return true;
	}
	return set_file(ld, k, obj, v);
}

static void add_device_ca(struct loader *ld, void *obj, const char *item, size_t n)
{
	struct moat_config_tenant *t = obj;
	char **cas;
	char *v, *p;

	if (n == 0) {
		problem(ld, "device_ca: empty entry: separate paths with single commas");
		return;
	}
	v = moat_strndup(item, n);
	if (v == NULL) {
		out_of_memory(ld);
		return;
	}
	p = readable_file(ld, "device_ca", v);
	moat_free(v);
	if (p == NULL)
		return;
	cas = grow_list(t->device_cas, t->ndevice_cas, sizeof(*cas));
	if (cas == NULL) {
		moat_free(p);
		out_of_memory(ld);
		return;
	}
	t->device_cas = cas;
	t->device_cas[t->ndevice_cas++] = p;
}

static bool set_device_ca(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	unsigned before = ld->nerrors;

	(void)k;
	if (v[0] == '\0') {
		problem(ld, "device_ca: needs one or more paths separated by commas");
		return false;
	}
	for_each_item(ld, v, obj, add_device_ca);
	return ld->nerrors == before;
}

static bool set_mtls(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	static const char *const opts[] = {"require", "optional"};
	static const enum moat_mtls_mode modes[] = {MOAT_MTLS_REQUIRE, MOAT_MTLS_OPTIONAL};
	int i = match(v, opts, MOAT_ARRAY_LEN(opts));

	if (i < 0) {
		problem(ld, "mtls: expected require or optional, not \"%s\"", v);
		return false;
	}
	*FIELD(obj, k, enum moat_mtls_mode) = modes[i];
	return true;
}

static bool set_device_id(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	static const char *const opts[] = {"cn", "san-uri", "san-dns"};
	static const enum moat_device_id_source srcs[] = {MOAT_DEVID_CN, MOAT_DEVID_SAN_URI,
	                                                  MOAT_DEVID_SAN_DNS};
	int i = match(v, opts, MOAT_ARRAY_LEN(opts));

	if (i < 0) {
		problem(ld, "device_id: expected cn, san-uri or san-dns, not \"%s\"", v);
		return false;
	}
	*FIELD(obj, k, enum moat_device_id_source) = srcs[i];
	return true;
}

/* What one origin key accepts, for parse_origin(). */
struct origin_kind {
	const char *key;
	const char *example; /* a valid value, for messages */
	const char *scheme[2]; /* with "://" */
	enum moat_origin_scheme id[2];
	uint16_t default_port[2]; /* 0: the port is required */
	const char *others[2]; /* the schemes of the other origin key, for a pointed message */
	const char *other_key;
	const char *path_why; /* appended to the "no path" message */
	bool slash_ok; /* a lone trailing '/' is accepted */
};

static const struct origin_kind http_origin = {
        "origin",
        "http://127.0.0.1:8080",
        {"http://", "https://"},
        {MOAT_ORIGIN_HTTP, MOAT_ORIGIN_HTTPS},
        {80, 443},
        {"tcp://", "tls://"},
        "tcp_origin",
        " (requests keep their own path)",
        true,
};

static const struct origin_kind tcp_origin = {
        "tcp_origin",
        "tcp://127.0.0.1:1883",
        {"tcp://", "tls://"},
        {MOAT_ORIGIN_TCP, MOAT_ORIGIN_TLS},
        {0, 0},
        {"http://", "https://"},
        "origin",
        "",
        false,
};

/* A parsed origin; host is allocated. */
struct origin {
	enum moat_origin_scheme scheme;
	char *host;
	uint16_t port;
};

/* Parses "SCHEME://HOST[:PORT][/]" for the key described by kind; false after reporting. */
static bool parse_origin(struct loader *ld, const struct origin_kind *kind, const char *v,
                         struct origin *out)
{
	const char *auth = NULL, *auth_end, *host, *host_end, *port_s = NULL;
	unsigned char addr[sizeof(struct in6_addr)];
	uint64_t port = 0;
	char *host_copy;
	bool host_ok;
	size_t i;

	for (i = 0; i < 2 && auth == NULL; i++) {
		size_t n = strlen(kind->scheme[i]);

		if (strncasecmp(v, kind->scheme[i], n) == 0) {
			out->scheme = kind->id[i];
			port = kind->default_port[i];
			auth = v + n;
		}
	}
	if (auth == NULL) {
		for (i = 0; i < 2; i++) {
			if (strncasecmp(v, kind->others[i], strlen(kind->others[i])) == 0) {
				problem(ld,
				        "%s: %s and %s origins go in %s: %s takes %s or %s, e.g. "
				        "%s",
				        kind->key, kind->others[0], kind->others[1],
				        kind->other_key, kind->key, kind->scheme[0],
				        kind->scheme[1], kind->example);
				return false;
			}
		}
		problem(ld, "%s: scheme must be %s or %s, e.g. %s", kind->key, kind->scheme[0],
		        kind->scheme[1], kind->example);
		return false;
	}
	auth_end = auth + strcspn(auth, "/?#");
	if (auth_end[0] != '\0' && !(kind->slash_ok && strcmp(auth_end, "/") == 0)) {
		problem(ld,
		        "%s: no path, query or fragment allowed%s: write it as SCHEME://HOST:PORT",
		        kind->key, kind->path_why);
		return false;
	}
	if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL) {
		problem(ld, "%s: user information (user@) is not allowed", kind->key);
		return false;
	}
	if (auth[0] == '[') {
		host = auth + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (host_end == NULL) {
			problem(ld, "%s: missing ']' after the IPv6 address", kind->key);
			return false;
		}
		if (host_end + 1 < auth_end) {
			if (host_end[1] != ':') {
				problem(ld, "%s: expected ':' and a port after ']'", kind->key);
				return false;
			}
			port_s = host_end + 2;
		}
	} else {
		const char *colon = memchr(auth, ':', (size_t)(auth_end - auth));

		host = auth;
		host_end = colon != NULL ? colon : auth_end;
		if (colon != NULL &&
		    memchr(colon + 1, ':', (size_t)(auth_end - colon - 1)) != NULL) {
			problem(ld, "%s: put an IPv6 address in brackets, e.g. %s[::1]%s",
			        kind->key, kind->scheme[0], strrchr(kind->example, ':'));
			return false;
		}
		if (colon != NULL)
			port_s = colon + 1;
	}
	if (host == host_end) {
		problem(ld, "%s: missing host, e.g. %s", kind->key, kind->example);
		return false;
	}
	if (port_s != NULL) {
		char buf[8];
		size_t n = (size_t)(auth_end - port_s);

		if (n == 0 || n >= sizeof(buf))
			goto bad_port;
		memcpy(buf, port_s, n);
		buf[n] = '\0';
		if (!parse_uint(buf, &port) || port == 0 || port > 65535)
			goto bad_port;
	} else if (port == 0) {
		problem(ld, "%s: needs a port, e.g. %s (there is no default port)", kind->key,
		        kind->example);
		return false;
	}
	host_copy = moat_strndup(host, (size_t)(host_end - host));
	if (host_copy == NULL) {
		out_of_memory(ld);
		return false;
	}
	if (auth[0] == '[')
		host_ok = inet_pton(AF_INET6, host_copy, addr) == 1;
	else if (all_digits_and_dots(host_copy)) /* not a name: must be a strict IPv4 literal */
		host_ok = inet_pton(AF_INET, host_copy, addr) == 1;
	else
		host_ok = dns_name_ok(host_copy, true);
	if (!host_ok) {
		problem(ld, "%s: \"%s\" is not a valid host name or address", kind->key, host_copy);
		moat_free(host_copy);
		return false;
	}
	out->host = host_copy;
	out->port = (uint16_t)port;
	return true;

bad_port:
	problem(ld, "%s: the port must be a number from 1 to 65535", kind->key);
	return false;
}

struct origin_err {
	char *buf;
	size_t cap;
};

static void origin_err_report(void *arg, const char *file, unsigned line, const char *msg)
{
	struct origin_err *e = arg;

	(void)file;
	(void)line;
	snprintf(e->buf, e->cap, "%s", msg);
}

int moat_config_origin_parse(const char *v, int tcp, enum moat_origin_scheme *scheme, char **host,
                             uint16_t *port, char *err, size_t errcap)
{
	struct origin_err e = {err, errcap};
	struct loader ld;
	struct origin o;

	memset(&ld, 0, sizeof(ld));
	ld.file = "";
	ld.report = origin_err_report;
	ld.arg = &e;
	if (errcap > 0)
		err[0] = '\0';
	if (!parse_origin(&ld, tcp ? &tcp_origin : &http_origin, v, &o))
		return ld.nomem ? MOAT_ENOMEM : MOAT_EINVAL;
	*scheme = o.scheme;
	*host = o.host;
	*port = o.port;
	return MOAT_OK;
}

int moat_config_host_ok(const char *s)
{
	if (s[0] == '*' && s[1] == '.')
		s += 2;
	return dns_name_ok(s, false);
}

/* Stores a parsed origin and the value as written; false (and nothing changed) on failure. */
static bool store_origin(struct loader *ld, const struct origin *o, const char *v, char **field,
                         char **host, enum moat_origin_scheme *scheme, uint16_t *port)
{
	char *copy = moat_strdup(v);

	if (copy == NULL) {
		moat_free(o->host);
		out_of_memory(ld);
		return false;
	}
	moat_free(*field);
	moat_free(*host);
	*field = copy;
	*host = o->host;
	*scheme = o->scheme;
	*port = o->port;
	return true;
}

static bool set_origin(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	struct moat_config_tenant *t = obj;
	struct origin o;

	(void)k;
	if (!parse_origin(ld, &http_origin, v, &o))
		return false;
	return store_origin(ld, &o, v, &t->origin, &t->origin_host, &t->origin_scheme,
	                    &t->origin_port);
}

static bool set_tcp_origin(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	struct moat_config_tenant *t = obj;
	struct origin o;

	(void)k;
	if (!parse_origin(ld, &tcp_origin, v, &o))
		return false;
	return store_origin(ld, &o, v, &t->tcp_origin, &t->tcp_origin_host, &t->tcp_origin_scheme,
	                    &t->tcp_origin_port);
}

static bool set_proxy_protocol(struct loader *ld, const struct key *k, void *obj, const char *v)
{
	static const char *const opts[] = {"off", "v2"};
	static const enum moat_proxy_protocol pps[] = {MOAT_PP_OFF, MOAT_PP_V2};
	int i = match(v, opts, MOAT_ARRAY_LEN(opts));

	if (i < 0) {
		problem(ld, "proxy_protocol: expected off or v2, not \"%s\"", v);
		return false;
	}
	*FIELD(obj, k, enum moat_proxy_protocol) = pps[i];
	return true;
}

/* ---- key tables ---- */

_Static_assert(LK_COUNT <= MAX_SECTION_KEYS && TK_COUNT <= MAX_SECTION_KEYS, "seen[] too small");

#define CFG(f) offsetof(struct moat_config, f)
#define LSN(f) offsetof(struct moat_config_listener, f)
#define TEN(f) offsetof(struct moat_config_tenant, f)

static const struct key moat_keys[MK_COUNT] = {
        [MK_WORKERS] = {"workers", set_workers, CFG(workers), 1, MAX_WORKERS, false},
        [MK_DATA_DIR] = {"data_dir", set_path, CFG(data_dir), 0, 0, false},
        [MK_ACCESS_LOG] = {"access_log", set_opt_path, CFG(access_log), 0, 0, false},
        [MK_ERROR_LOG] = {"error_log", set_opt_path, CFG(error_log), 0, 0, false},
        [MK_LOG_LEVEL] = {"log_level", set_log_level, CFG(log_level), 0, 0, false},
        [MK_PID_FILE] = {"pid_file", set_opt_path, CFG(pid_file), 0, 0, false},
        [MK_HANDSHAKE_TIMEOUT] = {"handshake_timeout", set_duration, CFG(handshake_timeout), 1,
                                  DAY_MS, false},
        [MK_IDLE_TIMEOUT] = {"idle_timeout", set_duration, CFG(idle_timeout), 1, DAY_MS, false},
        [MK_REQUEST_HEADER_TIMEOUT] = {"request_header_timeout", set_duration,
                                       CFG(request_header_timeout), 1, DAY_MS, false},
        [MK_REQUEST_BODY_TIMEOUT] = {"request_body_timeout", set_duration,
                                     CFG(request_body_timeout), 1, DAY_MS, false},
        [MK_ORIGIN_CONNECT_TIMEOUT] = {"origin_connect_timeout", set_duration,
                                       CFG(origin_connect_timeout), 1, DAY_MS, false},
        [MK_ORIGIN_RESPONSE_TIMEOUT] = {"origin_response_timeout", set_duration,
                                        CFG(origin_response_timeout), 1, DAY_MS, false},
        [MK_DRAIN_TIMEOUT] = {"drain_timeout", set_duration, CFG(drain_timeout), 1, DAY_MS, false},
        [MK_TCP_IDLE_TIMEOUT] = {"tcp_idle_timeout", set_duration, CFG(tcp_idle_timeout), 1, DAY_MS,
                                 false},
        [MK_MAX_CONNECTIONS] = {"max_connections", set_unsigned, CFG(max_connections), 1,
                                MAX_CONNECTIONS, false},
        [MK_MAX_CONNECTIONS_PER_IP] = {"max_connections_per_ip", set_unsigned,
                                       CFG(max_connections_per_ip), 0, MAX_CONNECTIONS, false},
        [MK_MAX_REQUEST_LINE] = {"max_request_line", set_size, CFG(max_request_line), 256, MIB,
                                 false},
        [MK_MAX_HEADER_SIZE] = {"max_header_size", set_size, CFG(max_header_size), 256, MIB, false},
        [MK_MAX_HEADERS] = {"max_headers", set_unsigned, CFG(max_headers), 1, MOAT_HTTP_MAX_HEADERS,
                            false},
        [MK_REQUEST_BODY_MIN_RATE] = {"request_body_min_rate", set_size64,
                                      CFG(request_body_min_rate), 0, GIB, false},
        [MK_ORIGIN_KEEPALIVE] = {"origin_keepalive", set_unsigned, CFG(origin_keepalive), 0,
                                 MAX_KEEPALIVE, false},
        [MK_TCP_BUFFER] = {"tcp_buffer", set_size, CFG(tcp_buffer), 4 * KIB, 16 * MIB, false},
        [MK_SECURITY_LOG] = {"security_log", set_opt_path, CFG(security_log), 0, 0, false},
        [MK_ADMIN_LISTEN] = {"admin_listen", set_admin_listen, CFG(admin_listen), 0, 0, false},
        [MK_ADMIN_CERT] = {"admin_cert", set_opt_path, CFG(admin_cert), 0, 0, false},
        [MK_ADMIN_KEY] = {"admin_key", set_opt_path, CFG(admin_key), 0, 0, false},
        [MK_STORE] = {"store", set_opt_path, CFG(store), 0, 0, false},
        [MK_RULES_BODY_LIMIT] = {"rules_body_limit", set_size, CFG(rules_body_limit), 0, MIB,
                                 false},
};

static const struct key listener_keys[LK_COUNT] = {
        [LK_BIND] = {"bind", set_bind, LSN(bind), 0, 0, false},
        [LK_PROTOCOL] = {"protocol", set_protocol, LSN(protocol), 0, 0, false},
        [LK_DEFAULT_TENANT] = {"default_tenant", set_ref, LSN(default_tenant), 0, 0, false},
        [LK_TLS] = {"tls", set_tls, LSN(tls), 0, 0, false},
        [LK_ALLOW] = {"allow", set_allow, LSN(allow), 0, 0, true},
        [LK_DENY] = {"deny", set_deny, LSN(deny), 0, 0, true},
};

static const struct key tenant_keys[TK_COUNT] = {
        [TK_HOSTS] = {"hosts", set_hosts, TEN(hosts), 0, 0, true},
        [TK_CERT] = {"cert", set_file, TEN(cert), 0, 0, false},
        [TK_KEY] = {"key", set_file, TEN(key), 0, 0, false},
        [TK_DEVICE_CA] = {"device_ca", set_device_ca, TEN(device_cas), 0, 0, true},
        [TK_CRL] = {"crl", set_opt_file, TEN(crl), 0, 0, false},
        [TK_MTLS] = {"mtls", set_mtls, TEN(mtls), 0, 0, false},
        [TK_DEVICE_ID] = {"device_id", set_device_id, TEN(device_id), 0, 0, false},
        [TK_ORIGIN] = {"origin", set_origin, TEN(origin), 0, 0, false},
        [TK_ORIGIN_CA] = {"origin_ca", set_opt_file, TEN(origin_ca), 0, 0, false},
        [TK_TCP_ORIGIN] = {"tcp_origin", set_tcp_origin, TEN(tcp_origin), 0, 0, false},
        [TK_PROXY_PROTOCOL] = {"proxy_protocol", set_proxy_protocol, TEN(proxy_protocol), 0, 0,
                               false},
        [TK_RULES] = {"rules", set_opt_file, TEN(rules), 0, 0, false},
        [TK_TCP_RULES] = {"tcp_rules", set_opt_file, TEN(tcp_rules), 0, 0, false},
        [TK_DEVICES] = {"devices", set_opt_file, TEN(devices), 0, 0, false},
};

static const struct {
	const char *label;
	const struct key *keys;
	size_t n;
} key_sets[] = {
        {"[moat]", moat_keys, MK_COUNT},
        {"[listener NAME]", listener_keys, LK_COUNT},
        {"[tenant NAME]", tenant_keys, TK_COUNT},
};

static int find_key(const struct key *keys, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(keys[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* Edit distance with adjacent transpositions, for "did you mean"; large for long input. */
static size_t distance(const char *a, const char *b)
{
	enum { MAXL = 40 };
	size_t rows[3][MAXL + 1], la = strlen(a), lb = strlen(b), i, j;
	size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

	if (la > MAXL || lb > MAXL)
		return (size_t)-1;
	for (j = 0; j <= lb; j++)
		prev[j] = j;
	for (i = 1; i <= la; i++) {
		size_t *t;

		cur[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t d = prev[j] + 1;

			if (cur[j - 1] + 1 < d)
				d = cur[j - 1] + 1;
			if (prev[j - 1] + cost < d)
				d = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < d)
				d = prev2[j - 2] + 1;
			cur[j] = d;
		}
		t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb];
}

static void unknown_key(struct loader *ld, const struct key *keys, size_t n, const char *name)
{
	const struct key *best = NULL;
	size_t i, best_d = 3;

	for (i = 0; i < MOAT_ARRAY_LEN(key_sets); i++) {
		if (key_sets[i].keys != keys &&
		    find_key(key_sets[i].keys, key_sets[i].n, name) >= 0) {
			problem(ld, "key \"%s\" belongs in a %s section, not in %s", name,
			        key_sets[i].label, ld->label);
			return;
		}
	}
	for (i = 0; i < n; i++) {
		size_t d = distance(name, keys[i].name);

		if (d < best_d && d < strlen(keys[i].name) / 2 + 1) {
			best = &keys[i];
			best_d = d;
		}
	}
	if (best != NULL)
		problem(ld, "unknown key \"%s\" in %s; did you mean \"%s\"?", name, ld->label,
		        best->name);
	else
		problem(ld, "unknown key \"%s\" in %s", name, ld->label);
}

static void apply(struct loader *ld, const struct key *keys, size_t n, unsigned *seen, bool *bad,
                  void *obj, const char *name, const char *value)
{
	const struct key *k;
	int i = find_key(keys, n, name);

	if (i < 0) {
		unknown_key(ld, keys, n, name);
		return;
	}
	k = &keys[i];
	if (seen[i] != 0 && !k->list) {
		problem(ld, "duplicate key \"%s\" in %s (first set on line %u): keep one", name,
		        ld->label, seen[i]);
		return;
	}
	if (seen[i] == 0)
		seen[i] = ld->line;
	if (value[0] == '"' || value[0] == '\'') {
		problem(ld, "%s: write the value without quotes", name);
	} else if (k->set(ld, k, obj, value)) {
		return;
	}
	if (bad != NULL)
		bad[i] = true;
}

/* ---- sections ---- */

static bool add_listener(struct loader *ld, const char *name, size_t n)
{
	struct moat_config *cfg = ld->cfg;
	struct moat_config_listener *ls, *l;
	struct seen *seen;
	size_t i;

	for (i = 0; i < cfg->nlisteners; i++) {
		if (strlen(cfg->listeners[i].name) == n &&
		    memcmp(cfg->listeners[i].name, name, n) == 0) {
			problem(ld,
			        "duplicate [listener %.*s] (first on line %u): give each listener "
			        "its "
			        "own name",
			        (int)n, name, cfg->listeners[i].line);
			return false;
		}
	}
	if (cfg->nlisteners == MAX_LISTENERS) {
		problem(ld, "too many [listener] sections (at most %d)", MAX_LISTENERS);
		return false;
	}
	ls = grow(cfg->listeners, &ld->lcap, cfg->nlisteners + 1, sizeof(*ls));
	if (ls == NULL)
		goto nomem;
	cfg->listeners = ls;
	seen = grow(ld->lseen, &ld->lseen_cap, cfg->nlisteners + 1, sizeof(*seen));
	if (seen == NULL)
		goto nomem;
	ld->lseen = seen;
	l = &ls[cfg->nlisteners];
	memset(l, 0, sizeof(*l));
	memset(&seen[cfg->nlisteners], 0, sizeof(*seen));
	l->name = moat_strndup(name, n);
	if (l->name == NULL)
		goto nomem;
	l->protocol = MOAT_PROTO_HTTP;
	l->tls = 1;
	l->line = ld->line;
	ld->cur = cfg->nlisteners++;
	return true;
nomem:
	out_of_memory(ld);
	return false;
}

static bool add_tenant(struct loader *ld, const char *name, size_t n)
{
	struct moat_config *cfg = ld->cfg;
	struct moat_config_tenant *ts, *t;
	struct seen *seen;
	size_t i;

	for (i = 0; i < cfg->ntenants; i++) {
		if (strlen(cfg->tenants[i].name) == n &&
		    memcmp(cfg->tenants[i].name, name, n) == 0) {
			problem(ld,
			        "duplicate [tenant %.*s] (first on line %u): give each tenant its "
			        "own "
			        "name",
			        (int)n, name, cfg->tenants[i].line);
			return false;
		}
	}
	if (cfg->ntenants == MAX_TENANTS) {
		problem(ld, "too many [tenant] sections (at most %d)", MAX_TENANTS);
		return false;
	}
	ts = grow(cfg->tenants, &ld->tcap, cfg->ntenants + 1, sizeof(*ts));
	if (ts == NULL)
		goto nomem;
	cfg->tenants = ts;
	seen = grow(ld->tseen, &ld->tseen_cap, cfg->ntenants + 1, sizeof(*seen));
	if (seen == NULL)
		goto nomem;
	ld->tseen = seen;
	t = &ts[cfg->ntenants];
	memset(t, 0, sizeof(*t));
	memset(&seen[cfg->ntenants], 0, sizeof(*seen));
	t->name = moat_strndup(name, n);
	if (t->name == NULL)
		goto nomem;
	t->mtls = MOAT_MTLS_REQUIRE;
	t->device_id = MOAT_DEVID_CN;
	t->proxy_protocol = MOAT_PP_OFF;
	t->line = ld->line;
	ld->cur = cfg->ntenants++;
	return true;
nomem:
	out_of_memory(ld);
	return false;
}

/* p[0..n) is a whole stripped line starting with '['. */
static void on_section(struct loader *ld, const char *p, size_t n)
{
	const char *close = memchr(p, ']', n), *rest, *kind, *name;
	size_t restn, kindn, namen, inner;
	bool ok;

	ld->sec = SEC_SKIP;
	if (close == NULL) {
		problem(ld, "section header without its closing ']'");
		return;
	}
	rest = close + 1;
	restn = n - (size_t)(rest - p);
	rest = trim(rest, &restn);
	if (restn > 0 && rest[0] != ';' && rest[0] != '#') {
		problem(ld, "unexpected text after ']': put comments after ';'");
		return;
	}
	inner = (size_t)(close - p - 1);
	kind = trim(p + 1, &inner);
	for (kindn = 0; kindn < inner && !is_blank(kind[kindn]);)
		kindn++;
	namen = inner - kindn;
	name = trim(kind + kindn, &namen);

	if (kindn == 4 && memcmp(kind, "moat", 4) == 0) {
		if (namen > 0) {
			problem(ld, "[moat] takes no name: write [moat]");
			return;
		}
		if (ld->moat_line != 0) {
			problem(ld, "duplicate [moat] (first on line %u): merge them into one",
			        ld->moat_line);
			return;
		}
		ld->moat_line = ld->line;
		ld->sec = SEC_MOAT;
		snprintf(ld->label, sizeof(ld->label), "[moat]");
		return;
	}
	if ((kindn == 8 && memcmp(kind, "listener", 8) == 0) ||
	    (kindn == 6 && memcmp(kind, "tenant", 6) == 0)) {
		bool is_listener = kindn == 8;

		if (namen == 0) {
			problem(ld, "[%.*s] needs a name, e.g. [%s]", (int)kindn, kind,
			        is_listener ? "listener devices" : "tenant demo");
		} else if (!name_ok(name, namen)) {
			problem(ld,
			        "%.*s name \"%.*s\": use 1 to %d letters, digits, '_', '.' or '-'",
			        (int)kindn, kind, (int)namen, name, MAX_NAME);
		} else {
			ok = is_listener ? add_listener(ld, name, namen)
			                 : add_tenant(ld, name, namen);
			if (ok) {
				ld->sec = is_listener ? SEC_LISTENER : SEC_TENANT;
				snprintf(ld->label, sizeof(ld->label), "[%.*s %.*s]", (int)kindn,
				         kind, (int)namen, name);
				return;
			}
			if (ld->nomem)
				return;
		}
		if (is_listener)
			ld->bad_listener_header = true;
		else
			ld->bad_tenant_header = true;
		return;
	}
	problem(ld, "unknown section [%.*s]: expected [moat], [listener NAME] or [tenant NAME]",
	        (int)inner, kind);
}

/* ---- inih glue ---- */

/* Where inih will find the key/value delimiter, or NULL: mirrors its find_chars_or_comment(). */
static const char *find_delimiter(const char *s, size_t n)
{
	bool was_space = false;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '=' || s[i] == ':')
			return s + i;
		if (was_space && s[i] == ';')
			return NULL;
		was_space = is_blank(s[i]);
	}
	return NULL;
}

/*
 * inih's reader: hands inih the next line, stripped, or a blank line in its place when the
 * line is handled here (sections, comments) or refused (reported here).
 */
static char *read_line(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	const char *p, *end, *nl, *delim;
	size_t n, max, i;
	bool indented;

	if (ld->pos >= ld->len)
		return NULL;
	p = ld->data + ld->pos;
	nl = memchr(p, '\n', ld->len - ld->pos);
	end = nl != NULL ? nl : ld->data + ld->len;
	ld->pos = (size_t)(end - ld->data) + (nl != NULL);
	ld->line++;
	if (num < 1)
		return NULL;
	str[0] = '\0';
	if (ld->nomem)
		return str;

	if (end > p && end[-1] == '\r')
		end--;
	if (ld->line == 1 && end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	n = (size_t)(end - p);
	max = (size_t)num - 1;
	if (n > max) {
		problem(ld,
		        "line is longer than %zu bytes: shorten it (a long hosts or device_ca list "
		        "can be split over several lines that repeat the key)",
		        max);
		return str;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			problem(ld, "control character 0x%02x in column %zu: only tabs are allowed",
			        c, i + 1);
			return str;
		}
	}
	indented = n > 0 && is_blank(p[0]);
	p = trim(p, &n);
	if (n == 0 || p[0] == ';' || p[0] == '#')
		return str;
	if (p[0] == '[') {
		on_section(ld, p, n);
		return str;
	}
	delim = find_delimiter(p, n);
	if (delim == NULL) {
		problem(ld, "expected \"key = value\", \"[section]\" or a comment%s",
		        indented
		                ? "; an indented line does not continue the value above it: repeat "
		                  "the key instead"
		                : "");
		return str;
	}
	if (delim == p) {
		problem(ld, "missing key name before '%c'", *delim);
		return str;
	}
	memcpy(str, p, n);
	str[n] = '\0';
	return str;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;
	struct moat_config *cfg = ld->cfg;
	size_t i;

	(void)section; /* tracked by read_line(): inih truncates long section names */
	if (ld->nomem)
		return 1;
	switch (ld->sec) {
	case SEC_SKIP:
		break;
	case SEC_NONE:
		for (i = 0; i < MOAT_ARRAY_LEN(key_sets); i++) {
			if (find_key(key_sets[i].keys, key_sets[i].n, name) >= 0) {
				problem(ld, "key \"%s\" comes before any section: put it under %s",
				        name, key_sets[i].label);
				return 1;
			}
		}
		problem(ld,
		        "key \"%s\" comes before any section: keys go under [moat], "
		        "[listener NAME] or [tenant NAME]",
		        name);
		break;
	case SEC_MOAT:
		apply(ld, moat_keys, MK_COUNT, ld->moat_seen, ld->moat_bad, cfg, name, value);
		break;
	case SEC_LISTENER:
		apply(ld, listener_keys, LK_COUNT, ld->lseen[ld->cur].line, ld->lseen[ld->cur].bad,
		      &cfg->listeners[ld->cur], name, value);
		break;
	case SEC_TENANT:
		apply(ld, tenant_keys, TK_COUNT, ld->tseen[ld->cur].line, ld->tseen[ld->cur].bad,
		      &cfg->tenants[ld->cur], name, value);
		break;
	}
	/* errors are counted in the loader; a zero here would only make inih remember a line */
	return 1;
}

/* ---- checks across sections ---- */

static int cmp_hostref(const void *a, const void *b)
{
	const struct hostref *x = a, *y = b;
	int c = strcmp(x->host, y->host);

	if (c != 0)
		return c;
	return (x->line > y->line) - (x->line < y->line);
}

/*
 * Sorted by name and line, the claims on one name are adjacent, and so are those of one
 * tenant among them (a tenant's keys are all in its section): "first" starts the name's run,
 * "mine" the current tenant's run inside it.
 */
static void check_hosts(struct loader *ld)
{
	struct moat_config *cfg = ld->cfg;
	size_t i, first = 0, mine = 0;

	if (ld->nhosts < 2)
		return; /* and qsort() must not be given a NULL array */
	qsort(ld->hosts, ld->nhosts, sizeof(*ld->hosts), cmp_hostref);
	for (i = 1; i < ld->nhosts; i++) {
		const struct hostref *h = &ld->hosts[i];

		if (strcmp(ld->hosts[first].host, h->host) != 0) {
			first = mine = i;
			continue;
		}
		if (ld->hosts[mine].tenant == h->tenant) {
			problem_at(ld, h->line,
			           "host \"%s\" is listed twice in [tenant %s] (also on line %u)",
			           h->host, cfg->tenants[h->tenant].name, ld->hosts[mine].line);
			continue;
		}
		mine = i;
		problem_at(ld, h->line,
		           "host \"%s\" is claimed by tenants \"%s\" and \"%s\": keep it in one",
		           h->host, cfg->tenants[ld->hosts[first].tenant].name,
		           cfg->tenants[h->tenant].name);
	}
}

static bool same_addr(const struct moat_config_listener *a, const struct moat_config_listener *b)
{
	if (a->addr.ss_family != b->addr.ss_family)
		return false;
	if (a->addr.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;

		return x->sin_port != 0 && x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;

		return x->sin6_port != 0 && x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

/* Counts the listeners that name `name` as their default_tenant, with and without TLS. */
static void count_refs(const struct moat_config *cfg, const char *name, size_t *tls, size_t *plain)
{
	size_t i;

	*tls = *plain = 0;
	for (i = 0; i < cfg->nlisteners; i++) {
		const struct moat_config_listener *l = &cfg->listeners[i];

		if (l->default_tenant == NULL || strcmp(l->default_tenant, name) != 0)
			continue;
		if (l->tls)
			(*tls)++;
		else
			(*plain)++;
	}
}

/*
 * A listener's default_tenant must have the origin its protocol forwards to. Tenants found by
 * SNI are not checked here: any TLS listener may reach them, so the proxy refuses a device whose
 * tenant lacks the origin of the listener's protocol.
 */
static void check_default_origin(struct loader *ld, const struct moat_config_listener *l,
                                 const struct seen *lseen)
{
	const struct moat_config *cfg = ld->cfg;
	const struct moat_config_tenant *t = moat_config_tenant_find(cfg, l->default_tenant);
	const unsigned *tseen;

	if (t == NULL || lseen->bad[LK_PROTOCOL] || (!l->tls && l->protocol != MOAT_PROTO_TCP))
		return;
	tseen = ld->tseen[t - cfg->tenants].line;
	/* a tenant with neither origin is reported once, as a tenant without an origin */
	if (tseen[TK_ORIGIN] == 0 && tseen[TK_TCP_ORIGIN] == 0)
		return;
	if (l->protocol == MOAT_PROTO_TCP && tseen[TK_TCP_ORIGIN] == 0)
		problem_at(
		        ld, lseen->line[LK_DEFAULT_TENANT],
		        "default_tenant \"%s\" has no tcp_origin, which a protocol = tcp listener "
		        "forwards to: add tcp_origin = tcp://HOST:PORT to [tenant %s]",
		        t->name, t->name);
	if (l->protocol == MOAT_PROTO_HTTP && tseen[TK_ORIGIN] == 0)
		problem_at(ld, lseen->line[LK_DEFAULT_TENANT],
		           "default_tenant \"%s\" has no origin, which a protocol = http listener "
		           "forwards to: add origin = http://HOST:PORT to [tenant %s]",
		           t->name, t->name);
}

static void check_listeners(struct loader *ld)
{
	struct moat_config *cfg = ld->cfg;
	size_t i, j;

	for (i = 0; i < cfg->nlisteners; i++) {
		const struct moat_config_listener *l = &cfg->listeners[i];
		const unsigned *seen = ld->lseen[i].line;

		if (seen[LK_BIND] == 0)
			problem_at(ld, l->line,
			           "[listener %s] needs a bind address, e.g. bind = 0.0.0.0:8443",
			           l->name);
		if (!l->tls && l->protocol != MOAT_PROTO_TCP && !ld->lseen[i].bad[LK_PROTOCOL])
			problem_at(ld, seen[LK_TLS],
			           "tls = off needs protocol = tcp: HTTP listeners always use TLS");
		if (!l->tls && l->default_tenant == NULL)
			problem_at(ld, l->line,
			           "[listener %s] has tls = off, so no host name selects a tenant: "
			           "add default_tenant = NAME of the tenant whose tcp_origin its "
			           "devices reach",
			           l->name);
		if (l->default_tenant != NULL &&
		    moat_config_tenant_find(cfg, l->default_tenant) == NULL)
			problem_at(ld, seen[LK_DEFAULT_TENANT],
			           "default_tenant \"%s\" is not a [tenant] section",
			           l->default_tenant);
		check_default_origin(ld, l, &ld->lseen[i]);
		for (j = 0; l->bind != NULL && j < i; j++) {
			if (cfg->listeners[j].bind != NULL && same_addr(l, &cfg->listeners[j])) {
				problem_at(ld, seen[LK_BIND],
				           "bind %s is already used by [listener %s]", l->bind,
				           cfg->listeners[j].name);
				break;
			}
		}
	}
}

/* origin_ca verifies an https:// origin or a tls:// tcp_origin; with neither it does nothing. */
static void check_origin_ca(struct loader *ld, const struct moat_config_tenant *t,
                            const struct seen *seen)
{
	if (t->origin_ca == NULL || seen->bad[TK_ORIGIN] || seen->bad[TK_TCP_ORIGIN])
		return;
	if (seen->line[TK_ORIGIN] == 0 && seen->line[TK_TCP_ORIGIN] == 0)
		return; /* reported as a tenant without an origin */
	if (t->origin != NULL && t->origin_scheme == MOAT_ORIGIN_HTTPS)
		return;
	if (t->tcp_origin != NULL && t->tcp_origin_scheme == MOAT_ORIGIN_TLS)
		return;
	problem_at(ld, t->origin_ca_line,
	           "origin_ca is only used with an https:// origin or a tls:// tcp_origin: remove "
	           "it or make the origin https:// or the tcp_origin tls://");
}

static void check_tenants(struct loader *ld)
{
	static const struct {
		int key;
		const char *what;
	} required[] = {
	        {TK_CERT, "a cert: add cert = PATH of its server certificate chain (PEM)"},
	        {TK_KEY, "a key: add key = PATH of its server private key (PEM)"},
	        {TK_DEVICE_CA, "a device_ca: add device_ca = PATH of the CA certificates that sign "
	                       "its devices (PEM)"},
	};
	struct moat_config *cfg = ld->cfg;
	size_t i, r;

	for (i = 0; i < cfg->ntenants; i++) {
		struct moat_config_tenant *t = &cfg->tenants[i];
		const unsigned *seen = ld->tseen[i].line;
		size_t refs_tls, refs_plain;
		bool plain_only, any_tls;

		t->cert_line = seen[TK_CERT];
		t->key_line = seen[TK_KEY];
		t->device_ca_line = seen[TK_DEVICE_CA];
		t->crl_line = seen[TK_CRL];
		t->origin_line = seen[TK_ORIGIN];
		t->origin_ca_line = seen[TK_ORIGIN_CA];
		t->tcp_origin_line = seen[TK_TCP_ORIGIN];
		t->rules_line = seen[TK_RULES];
		t->tcp_rules_line = seen[TK_TCP_RULES];
		t->devices_line = seen[TK_DEVICES];
		t->has_tls = t->cert != NULL && t->key != NULL && t->ndevice_cas > 0;
		count_refs(cfg, t->name, &refs_tls, &refs_plain);
		/*
		 * Only a tenant that no TLS handshake can select may go without TLS material: no
		 * hosts for SNI to match, and default_tenant of plain listeners only. One that
		 * has part of it is a mistake, and reported as such.
		 */
		plain_only = seen[TK_HOSTS] == 0 && refs_plain > 0 && refs_tls == 0;
		any_tls = seen[TK_CERT] != 0 || seen[TK_KEY] != 0 || seen[TK_DEVICE_CA] != 0;
		for (r = 0; r < MOAT_ARRAY_LEN(required) && (!plain_only || any_tls); r++) {
			if (seen[required[r].key] == 0)
				problem_at(ld, t->line, "[tenant %s] needs %s", t->name,
				           required[r].what);
		}
		if (seen[TK_ORIGIN] == 0 && seen[TK_TCP_ORIGIN] == 0)
			problem_at(
			        ld, t->line,
			        "[tenant %s] needs an origin: add origin = http://HOST:PORT of the "
			        "service behind it, or tcp_origin = tcp://HOST:PORT for TCP "
			        "listeners",
			        t->name);
		check_origin_ca(ld, t, &ld->tseen[i]);
		if (t->proxy_protocol != MOAT_PP_OFF && seen[TK_TCP_ORIGIN] == 0 &&
		    seen[TK_ORIGIN] != 0)
			problem_at(
			        ld, seen[TK_PROXY_PROTOCOL],
			        "proxy_protocol is only used with a tcp_origin: remove it or add "
			        "tcp_origin = tcp://HOST:PORT");
		if (seen[TK_HOSTS] == 0 && refs_tls + refs_plain == 0)
			problem_at(ld, t->line,
			           "[tenant %s] has no hosts and is no listener's default_tenant, "
			           "so no "
			           "device can reach it: add hosts = NAME",
			           t->name);
	}
}

static void check_moat(struct loader *ld)
{
	struct moat_config *cfg = ld->cfg;
	unsigned line;

	if (ld->moat_bad[MK_MAX_REQUEST_LINE] || ld->moat_bad[MK_MAX_HEADER_SIZE])
		return;
	if (cfg->max_header_size >= cfg->max_request_line)
		return;
	line = ld->moat_seen[MK_MAX_HEADER_SIZE] != 0 ? ld->moat_seen[MK_MAX_HEADER_SIZE]
	                                              : ld->moat_seen[MK_MAX_REQUEST_LINE];
	problem_at(ld, line,
	           "max_header_size (%zu bytes) must be at least max_request_line (%zu bytes): the "
	           "head includes the request line",
	           cfg->max_header_size, cfg->max_request_line);
}

static void check_all(struct loader *ld)
{
	struct moat_config *cfg = ld->cfg;

	check_moat(ld);
	check_listeners(ld);
	check_tenants(ld);
	check_hosts(ld);
	if (cfg->nlisteners == 0 && !ld->bad_listener_header)
		problem_at(
		        ld, 0,
		        "no [listener NAME] section: add one, e.g. [listener devices] with bind = "
		        "0.0.0.0:8443");
	/* no [tenant] section is fine: tenants may come from the store (admin API) */
	if ((cfg->admin_cert == NULL) != (cfg->admin_key == NULL))
		problem_at(ld, ld->moat_seen[cfg->admin_cert ? MK_ADMIN_CERT : MK_ADMIN_KEY],
		           "admin_cert and admin_key go together: give both for TLS on the admin "
		           "API, or neither");
}

/* ---- loading ---- */

static int read_file(struct loader *ld, const char *path)
{
	char buf[128];
	struct stat st;
	size_t cap = 4096;
	int fd, rc = MOAT_OK;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		problem_at(ld, 0, "cannot open: %s", errstr(errno, buf, sizeof(buf)));
		return MOAT_EIO;
	}
	if (fstat(fd, &st) != 0) {
		problem_at(ld, 0, "cannot read: %s", errstr(errno, buf, sizeof(buf)));
		rc = MOAT_EIO;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		problem_at(ld, 0, "cannot read: %s", errstr(EISDIR, buf, sizeof(buf)));
		rc = MOAT_EIO;
		goto out;
	}
	/* one read for a regular file: room for its size and the 0 that says it ended */
	if (S_ISREG(st.st_mode) && st.st_size >= 0 && (uint64_t)st.st_size < MAX_FILE_SIZE)
		cap = (size_t)st.st_size + 1;
	ld->data = moat_malloc(cap);
	if (ld->data == NULL)
		goto nomem;
	for (;;) {
		ssize_t r;

		if (ld->len == cap) {
			char *p;

			if (cap > MAX_FILE_SIZE) {
				problem_at(ld, 0,
				           "the file is larger than %zu KiB: is it the right file?",
				           MAX_FILE_SIZE / 1024);
				rc = MOAT_EINVAL;
				goto out;
			}
			p = moat_realloc(ld->data, cap * 2);
			if (p == NULL)
				goto nomem;
			ld->data = p;
			cap *= 2;
		}
		r = read(fd, ld->data + ld->len, cap - ld->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			problem_at(ld, 0, "cannot read: %s", errstr(errno, buf, sizeof(buf)));
			rc = MOAT_EIO;
			goto out;
		}
		if (r == 0)
			break;
		ld->len += (size_t)r;
	}
	if (ld->len > MAX_FILE_SIZE) {
		problem_at(ld, 0, "the file is larger than %zu KiB: is it the right file?",
		           MAX_FILE_SIZE / 1024);
		rc = MOAT_EINVAL;
	}
	goto out;
nomem:
	out_of_memory(ld);
	rc = MOAT_ENOMEM;
out:
	close(fd);
	return rc;
}

static bool set_defaults(struct moat_config *cfg)
{
	atomic_init(&cfg->refs, 1);
	cfg->workers = online_cpus();
	cfg->log_level = MOAT_LOG_INFO;
	cfg->handshake_timeout = 10 * SEC_MS;
	cfg->idle_timeout = 60 * SEC_MS;
	cfg->request_header_timeout = 10 * SEC_MS;
	cfg->request_body_timeout = 30 * SEC_MS;
	cfg->origin_connect_timeout = 5 * SEC_MS;
	cfg->origin_response_timeout = 60 * SEC_MS;
	cfg->drain_timeout = 30 * SEC_MS;
	cfg->tcp_idle_timeout = 10 * MIN_MS;
	cfg->max_connections = 10000;
	cfg->max_connections_per_ip = 0;
	cfg->max_request_line = 8 * KIB;
	cfg->max_header_size = 16 * KIB;
	cfg->max_headers = 100;
	cfg->request_body_min_rate = 0;
	cfg->origin_keepalive = 32;
	cfg->tcp_buffer = 64 * KIB;
	cfg->rules_body_limit = 8 * KIB;
	cfg->data_dir = moat_strdup(DEFAULT_DATA_DIR);
	cfg->admin_listen = moat_strdup("127.0.0.1:9900");
	return cfg->data_dir != NULL && cfg->admin_listen != NULL;
}

int moat_config_load(const char *path, moat_config_report_fn report, void *arg,
                     struct moat_config **out)
{
	struct loader ld;
	int rc;

	*out = NULL;
	memset(&ld, 0, sizeof(ld));
	ld.file = path;
	ld.report = report;
	ld.arg = arg;
	ld.cfg = moat_calloc(1, sizeof(*ld.cfg));
	if (ld.cfg == NULL || !set_defaults(ld.cfg))
		goto nomem;
	ld.cwd = get_cwd(&ld.cwd_errno);
	if (ld.cwd == NULL && ld.cwd_errno == ENOMEM)
		goto nomem;
	ld.cfg->path = abs_path(&ld, "config", path);
	if (ld.cfg->path == NULL) {
		rc = ld.nomem ? MOAT_ENOMEM : MOAT_EIO;
		goto out;
	}
	rc = read_file(&ld, path);
	if (rc != MOAT_OK)
		goto out;

	rc = ini_parse_stream(read_line, &ld, on_pair, &ld);
	if (rc == -2)
		out_of_memory(&ld);
	else if (rc != 0)
		/* read_line hands inih only lines it accepts; reaching this is a bug here */
		problem_at(&ld, rc > 0 ? (unsigned)rc : 0, "cannot parse this line");
	if (!ld.nomem)
		check_all(&ld);
	if (ld.nomem)
		rc = MOAT_ENOMEM;
	else if (ld.nerrors > 0)
		rc = MOAT_EINVAL;
	else
		rc = MOAT_OK;
	goto out;
nomem:
	out_of_memory(&ld);
	rc = MOAT_ENOMEM;
out:
	if (rc == MOAT_OK) {
		*out = ld.cfg;
		ld.cfg = NULL;
	}
	moat_config_free(ld.cfg);
	moat_free(ld.cwd);
	moat_free(ld.data);
	moat_free(ld.lseen);
	moat_free(ld.tseen);
	moat_free(ld.hosts);
	return rc;
}

void moat_config_ref(struct moat_config *cfg)
{
	atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
}

void moat_config_tenant_clear(struct moat_config_tenant *t)
{
	size_t j;

	moat_free(t->name);
	for (j = 0; j < t->nhosts; j++)
		moat_free(t->hosts[j]);
	moat_free(t->hosts);
	moat_free(t->cert);
	moat_free(t->key);
	for (j = 0; j < t->ndevice_cas; j++)
		moat_free(t->device_cas[j]);
	moat_free(t->device_cas);
	moat_free(t->crl);
	moat_free(t->origin);
	moat_free(t->origin_host);
	moat_free(t->origin_ca);
	moat_free(t->tcp_origin);
	moat_free(t->tcp_origin_host);
	moat_free(t->rules);
	moat_free(t->tcp_rules);
	moat_free(t->devices);
	moat_free(t->cert_pem);
	moat_free(t->device_ca_pem);
	moat_free(t->origin_ca_pem);
	for (j = 0; j < t->nquarantine_allow; j++)
		moat_free(t->quarantine_allow[j]);
	moat_free(t->quarantine_allow);
}

void moat_config_free(struct moat_config *cfg)
{
	size_t i;

	if (cfg == NULL || atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < cfg->nlisteners; i++) {
		moat_free(cfg->listeners[i].name);
		moat_free(cfg->listeners[i].bind);
		moat_free(cfg->listeners[i].default_tenant);
		moat_free(cfg->listeners[i].allow);
		moat_free(cfg->listeners[i].deny);
	}
	moat_free(cfg->listeners);
	for (i = 0; i < cfg->ntenants; i++)
		moat_config_tenant_clear(&cfg->tenants[i]);
	moat_free(cfg->tenants);
	moat_free(cfg->path);
	moat_free(cfg->data_dir);
	moat_free(cfg->access_log);
	moat_free(cfg->error_log);
	moat_free(cfg->pid_file);
	moat_free(cfg->security_log);
	moat_free(cfg->admin_listen);
	moat_free(cfg->admin_cert);
	moat_free(cfg->admin_key);
	moat_free(cfg->store);
	moat_free(cfg);
}

const struct moat_config_tenant *moat_config_tenant_find(const struct moat_config *cfg,
                                                         const char *name)
{
	size_t i;

	if (cfg == NULL || name == NULL)
		return NULL;
	for (i = 0; i < cfg->ntenants; i++) {
		if (strcmp(cfg->tenants[i].name, name) == 0)
			return &cfg->tenants[i];
	}
	return NULL;
}
