#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static atomic_int error_fd = 2;
static atomic_int access_fd = -1;
static atomic_int security_fd = -1;
static atomic_int min_level = MOAT_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* Replaces the file behind *slot: the descriptor number stays valid for concurrent writers. */
static int swap_fd(atomic_int *slot, const char *path)
{
	int fd, cur;

	if (path == NULL)
		return 0;
	fd = open_log(path);
	if (fd < 0)
		return -1;
	cur = atomic_load(slot);
	if (cur > 2) {
		if (dup2(fd, cur) < 0) {
			close(fd);
			return -1;
		}
		close(fd);
	} else {
		atomic_store(slot, fd);
	}
	return 0;
}

int moat_log_open(const char *error_log, const char *access_log, enum moat_log_level level,
                  const char **err)
{
	atomic_store(&min_level, (int)level);
	if (swap_fd(&error_fd, error_log) < 0) {
		*err = "cannot open error_log";
		return MOAT_EIO;
	}
	if (swap_fd(&access_fd, access_log) < 0) {
		*err = "cannot open access_log";
		return MOAT_EIO;
	}
	return MOAT_OK;
}

int moat_log_reopen(const char *error_log, const char *access_log, enum moat_log_level level,
                    const char **err)
{
	if (access_log == NULL && atomic_load(&access_fd) > 2) {
		/* Access logging switched off by a reload: point the descriptor at /dev/null
		 * rather than closing it under concurrent writers. */
		access_log = "/dev/null";
	}
	return moat_log_open(error_log, access_log, level, err);
}

int moat_log_security_open(const char *path, const char **err)
{
	if (path == NULL && atomic_load(&security_fd) > 2)
		path = "/dev/null"; /* switched off by a reload: never close under writers */
	if (swap_fd(&security_fd, path) < 0) {
		*err = "cannot open security_log";
		return MOAT_EIO;
	}
	return MOAT_OK;
}

void moat_log_security(const char *line, size_t len)
{
	int fd = atomic_load_explicit(&security_fd, memory_order_relaxed);

	if (fd < 0)
		return;
	if (write(fd, line, len) < 0)
		return;
}

int moat_log_security_enabled(void)
{
	return atomic_load_explicit(&security_fd, memory_order_relaxed) >= 0;
}

int moat_log_enabled(enum moat_log_level level)
{
	return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

size_t moat_log_time(char *buf, size_t cap)
{
	struct timeval tv;
	struct tm tm;
	size_t n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
	return n < cap ? n : cap - 1;
}

void moat_log(enum moat_log_level level, const char *fmt, ...)
{
	char buf[2048];
	size_t n;
	int w;
	va_list ap;

	if (!moat_log_enabled(level))
		return;
	n = moat_log_time(buf, sizeof(buf));
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, " [%s] ", level_names[level]);
	va_start(ap, fmt);
	w = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (w < 0)
		w = 0;
	n += (size_t)w;
	if (n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	/* Log lines come partly from the network (SNI, reasons): never let them split a line. */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	buf[n++] = '\n';
	if (write(atomic_load_explicit(&error_fd, memory_order_relaxed), buf, n) < 0)
		return;
}

void moat_log_access(const char *line, size_t len)
{
	int fd = atomic_load_explicit(&access_fd, memory_order_relaxed);

	if (fd < 0)
		return;
	if (write(fd, line, len) < 0)
		return;
}

int moat_log_access_enabled(void)
{
	return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0;
}

void moat_line_raw(struct moat_line *l, const char *s, size_t n)
{
	if (l->truncated || n > l->cap - l->len) {
		l->truncated = 1;
		return;
	}
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

void moat_line_printf(struct moat_line *l, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (l->truncated)
		return;
	va_start(ap, fmt);
	w = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= l->cap - l->len) {
		l->truncated = 1;
		return;
	}
	l->len += (size_t)w;
}

void moat_line_json_str(struct moat_line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	moat_line_raw(l, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			moat_line_raw(l, esc, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			/* Bytes from the wire are not trusted to be UTF-8: escape every non-ASCII
			 * byte so the line stays valid JSON whatever a client sends. */
			esc[0] = '\\';
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			moat_line_raw(l, esc, 6);
		} else {
			moat_line_raw(l, (const char *)&s[i], 1);
		}
	}
	moat_line_raw(l, "\"", 1);
}
