/*
 * Logging: the error log (levelled text lines) and the access log (one JSON object a line).
 *
 * Both are plain file descriptors opened with O_APPEND; each line is formatted into a stack
 * buffer and written with one write(2), so lines from different workers never interleave and
 * no lock is taken. moat_log_reopen() swaps the files in place with dup2(), for log rotation.
 */
#ifndef MOAT_CORE_LOG_H
#define MOAT_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/config.h"

/* Opens the files named by the config (error_log NULL: stderr; access_log NULL: none).
 * Returns MOAT_OK or MOAT_EIO with *err set to a static message. */
int moat_log_open(const char *error_log, const char *access_log, enum moat_log_level level,
                  const char **err) MOAT_WUR;

/* Reopens the current files (SIGUSR1) or switches to new paths (reload). */
int moat_log_reopen(const char *error_log, const char *access_log, enum moat_log_level level,
                    const char **err) MOAT_WUR;

void moat_log(enum moat_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

#define moat_log_debug(...) moat_log(MOAT_LOG_DEBUG, __VA_ARGS__)
#define moat_log_info(...) moat_log(MOAT_LOG_INFO, __VA_ARGS__)
#define moat_log_warn(...) moat_log(MOAT_LOG_WARN, __VA_ARGS__)
#define moat_log_error(...) moat_log(MOAT_LOG_ERROR, __VA_ARGS__)

int moat_log_enabled(enum moat_log_level level);

/* Writes one complete line (which must end in '\n') to the access log, if one is open. */
void moat_log_access(const char *line, size_t len);

int moat_log_access_enabled(void);

/* The security log: one JSON line per rule hit. Opens (or reopens, or switches to) path;
 * NULL: none. */
int moat_log_security_open(const char *path, const char **err) MOAT_WUR;
void moat_log_security(const char *line, size_t len);
int moat_log_security_enabled(void);

/* Formats the current time as "2026-11-23T14:51:23.123Z" into buf (at least 32 bytes). */
size_t moat_log_time(char *buf, size_t cap);

/*
 * A bounded line builder for JSON log lines: appending past the capacity sets `truncated`
 * and drops the rest, never overflows.
 */
struct moat_line {
	char *p;
	size_t len, cap;
	int truncated;
};

void moat_line_raw(struct moat_line *l, const char *s, size_t n);
void moat_line_printf(struct moat_line *l, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) as a JSON string, with quotes, escaping what JSON requires. */
void moat_line_json_str(struct moat_line *l, const char *s, size_t n);

#endif
