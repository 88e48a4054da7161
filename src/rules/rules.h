/*
 * Virtual patches: the rule language, its compiler and evaluator. See docs/rules.md for the
 * language and docs/internals/rules.md for how it is compiled and evaluated.
 *
 * A rules file is compiled once per generation into an immutable ruleset. Evaluation never
 * allocates: every field a rule reads is computed lazily, at most once per request, into a
 * caller-provided scratch arena, and the results of the multi-pattern prefilter are shared by
 * every string test (`contains`, `matches`, `==`, `in`, starts_with, ends_with) on the same
 * value.
 *
 * Threads: a compiled ruleset is read-only (only its atomic counters change), so any number
 * of threads may evaluate it at once, each with its own scratch. Each evaluating thread also
 * keeps a Hyperscan scratch and a PCRE2 match block of its own, allocated on its first
 * evaluation and again after a ruleset is compiled (never per request), freed when the thread
 * exits or calls moat_rules_thread_release. Compile (moat_rules_load_*) on any thread; free a
 * ruleset only when no thread evaluates it any more (the generation's reference count).
 */
#ifndef MOAT_RULES_RULES_H
#define MOAT_RULES_RULES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/common.h"
#include "http/parse.h"

enum moat_rule_action {
	MOAT_RULE_BLOCK = 0, /* answer with the rule's status and body (HTTP) / close (TCP) */
	MOAT_RULE_LOG, /* record the hit, go on */
	MOAT_RULE_ALLOW, /* record the hit, skip the remaining rules */
	MOAT_RULE_CLOSE, /* drop the connection without an answer */
};

enum moat_rule_mode { MOAT_RULE_ENFORCE = 0, MOAT_RULE_DRY_RUN };

/* Which fields a ruleset may use. */
enum moat_rules_scope {
	MOAT_RULES_HTTP = 0, /* connection and HTTP fields */
	MOAT_RULES_TCP, /* connection fields only: an HTTP field is a compile error */
};

/* A zero field means its default. */
struct moat_rules_limits {
	unsigned max_rules; /* per file; more -> compile error (default 10000) */
	size_t max_expr_len; /* bytes of one expression (default 8192) */
	unsigned max_depth; /* nesting of the expression tree (default 64, at most 256) */
	size_t max_regex_len; /* bytes of one regular expression (default 4096) */
	uint32_t regex_match_limit; /* PCRE2 match limit: bounds backtracking (default 100000) */
	size_t body_limit; /* bytes of the body visible as http.request.body (default 8192) */
};

/* One compiled rule. Read-only after compilation, except the hit counters. */
struct moat_rule {
	char id[65]; /* [A-Za-z0-9_.:-]{1,64} */
	char *name;
	char *description; /* may be NULL */
	char *reference; /* e.g. "CVE-2026-0001"; may be NULL */
	char *expr; /* the source text */
	enum moat_rule_action action;
	enum moat_rule_mode mode;
	int status; /* block: HTTP status (default 403) */
	char *body; /* block: body template, NULL for the default JSON */
	int enabled;
	unsigned line; /* where the rule starts in its file */
	atomic_uint_fast64_t hits_enforce, hits_dry_run;
};

struct moat_ruleset; /* opaque: the compiled rules of one file */

/* An error found while compiling: where, and what. */
struct moat_rules_error {
	const char *file;
	unsigned line, col; /* 1-based; col points at the offending character */
	const char *rule_id; /* NULL if not inside a rule */
	const char *msg;
	const char *source_line; /* the text of that line, without its newline, for the caret */
};

typedef void (*moat_rules_report_fn)(void *arg, const struct moat_rules_error *e);

/*
 * Compiles the rules file at `path` (format in docs/rules.md). Every error is reported
 * through `report` (compilation goes on to find more); on any error the whole file is refused:
 * returns MOAT_EINVAL and *out stays NULL. MOAT_EIO if the file cannot be read. `lim` may be
 * NULL for the defaults.
 */
int moat_rules_load_file(const char *path, enum moat_rules_scope scope,
                         const struct moat_rules_limits *lim, moat_rules_report_fn report,
                         void *arg, struct moat_ruleset **out) MOAT_WUR;

/* The same from a buffer; `name` is used as the file name in errors. */
int moat_rules_load_buffer(const char *name, const char *text, size_t len,
                           enum moat_rules_scope scope, const struct moat_rules_limits *lim,
                           moat_rules_report_fn report, void *arg,
                           struct moat_ruleset **out) MOAT_WUR;

/* Compiles rules given as records (the store's rules): each rule's id, name, expr, action,
 * mode, status, body, enabled, description and reference are copied; line is kept as given.
 * Errors are reported per rule, with rule_id set and line/col inside its expression; any
 * error refuses the whole set (MOAT_EINVAL, *out NULL). Ids are not checked for duplicates. */
int moat_rules_build(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                     const struct moat_rules_limits *lim, moat_rules_report_fn report, void *arg,
                     struct moat_ruleset **out) MOAT_WUR;

/* moat_rules_build with options: MOAT_RULES_BUILD_NO_PREFILTER builds no Hyperscan database
 * (every test evaluated on its own: the same results, slower per request, but the set is
 * ready at once: what moatd publishes first when a large set changed, until the complete
 * one is compiled). */
#define MOAT_RULES_BUILD_NO_PREFILTER 1u
int moat_rules_build_flags(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                           const struct moat_rules_limits *lim, unsigned flags,
                           moat_rules_report_fn report, void *arg,
                           struct moat_ruleset **out) MOAT_WUR;

/* The checks of moat_rules_build, without building the ruleset: every expression compiles,
 * the set within the limits. What the admin API runs before saving a rule; the prefilter,
 * most of a large set's compile time, is built only with the generation (it never refuses a
 * set: a pattern Hyperscan cannot take is left to PCRE2). */
int moat_rules_check_set(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                         const struct moat_rules_limits *lim, moat_rules_report_fn report,
                         void *arg) MOAT_WUR;

/* Compiles one expression alone (validation, tests): errors as above, line 1. */
int moat_rules_check_expr(const char *expr, enum moat_rules_scope scope,
                          const struct moat_rules_limits *lim, moat_rules_report_fn report,
                          void *arg) MOAT_WUR;

void moat_ruleset_free(struct moat_ruleset *rs);

size_t moat_ruleset_count(const struct moat_ruleset *rs);
struct moat_rule *moat_ruleset_rule(const struct moat_ruleset *rs, size_t i);

/* 1 if some rule reads http.request.body or http.request.body.size: only then is a body held
 * back for inspection. */
int moat_ruleset_needs_body(const struct moat_ruleset *rs);

/* The smallest value arena moat_ruleset_scratch_size_for ever gives. */
#define MOAT_RULES_SCRATCH_ARENA (64 * 1024)

/*
 * The scratch bytes one evaluation of rs needs so that no value of a request within the HTTP
 * limits `lim` (NULL: the parser's defaults, 8 KiB request line, 32 KiB head) can be missing
 * for lack of room: a fixed part (a table of the ruleset's distinct values, about 100 bytes
 * each) plus an upper bound of the values themselves, computed from the values the rules
 * read (at least MOAT_RULES_SCRATCH_ARENA). With less, a value that does not fit is missing
 * (counted in scratch_overflows), so a rule on it fails open; a scratch smaller than the
 * fixed part evaluates no rule at all. Allocate it once per worker (only the part a request
 * needs is touched) and reuse it for every request. Device tags beyond 256, and TLS or
 * device strings beyond 4 KiB, are not covered by the bound.
 */
size_t moat_ruleset_scratch_size_for(const struct moat_ruleset *rs,
                                     const struct moat_http_limits *lim);

/* moat_ruleset_scratch_size_for(rs, NULL). */
size_t moat_ruleset_scratch_size(const struct moat_ruleset *rs);

/* Counters of a ruleset since it was compiled (relaxed reads; summed over all threads). */
struct moat_rules_stats {
	uint64_t scratch_overflows; /* values treated as missing for lack of scratch */
	uint64_t regex_limit_hits; /* matches stopped by a PCRE2 limit: counted as no match */
	uint64_t prefilter_unavailable; /* evaluations without the prefilter (no Hyperscan
	                                   scratch): slower, same results */
	uint32_t prefilter_databases; /* Hyperscan databases compiled, one per scanned value */
	uint32_t values; /* distinct values (fields, keys, functions) the rules read */
};

void moat_ruleset_stats(const struct moat_ruleset *rs, struct moat_rules_stats *st);

/* Per-device facts the rules see as device.model, device.firmware, device.tags. */
struct moat_device_info {
	const char *model; /* NULL if unknown */
	const char *firmware; /* NULL if unknown; compared as a version */
	const char *const *tags;
	size_t ntags;
};

/* Everything a rule may ask about one request (or one TCP connection). */
struct moat_rules_input {
	const struct sockaddr_storage *src; /* ip.src */
	const char *tls_version; /* "TLSv1.3"; NULL on plain TCP */
	const char *sni; /* "" if none */
	int client_verified;
	const char *fingerprint; /* lowercase hex; "" if none */
	const char *serial; /* uppercase hex; "" if none */
	const char *tenant;
	const char *device_id; /* "" if none */
	const struct moat_device_info *device; /* NULL if no entry */
	const struct moat_http_request *req; /* NULL for TCP rules */
	const char *body; /* the first body bytes (<= body_limit), NULL if not read */
	size_t body_len;
	uint64_t body_size; /* Content-Length, or the bytes seen */
};

/* Scratch memory for one evaluation: lazily computed fields live here. Size it with
 * moat_ruleset_scratch_size_for (enough for any request within the HTTP limits); a field
 * that does not fit is treated as missing (and counted). Any alignment; one evaluation at a
 * time. */
struct moat_rules_scratch {
	char *mem;
	size_t cap;
};

/* The outcome of evaluating a ruleset. */
struct moat_rules_verdict {
	enum moat_rule_action action; /* MOAT_RULE_LOG if no enforcing block/close/allow hit */
	const struct moat_rule *rule; /* the deciding rule, NULL if none */
};

/* Called for every hit (enforce and dry-run), in rule order, before evaluation goes on. */
typedef void (*moat_rules_hit_fn)(void *arg, const struct moat_rule *rule);

/*
 * Evaluates the enabled rules in order against `in`. A dry-run rule that matches is counted
 * and reported through `hit` but never decides. An enforcing rule that matches is counted and
 * reported; `log` goes on, `allow` stops with action ALLOW, `block`/`close` stop with that
 * action. Never allocates; never fails: a field that cannot be computed is missing, and
 * comparisons with a missing field are false.
 */
void moat_rules_eval(const struct moat_ruleset *rs, const struct moat_rules_input *in,
                     struct moat_rules_scratch *scratch, moat_rules_hit_fn hit, void *arg,
                     struct moat_rules_verdict *v);

/* Frees the calling thread's Hyperscan scratch and PCRE2 match block (a worker about to exit
 * may call it; thread exit does it anyway). The next evaluation on the thread allocates them
 * again. */
void moat_rules_thread_release(void);

/* "block", "log", "allow", "close"; "enforce", "dry-run": as in the rules file. */
const char *moat_rule_action_name(enum moat_rule_action a);
const char *moat_rule_mode_name(enum moat_rule_mode m);

/* Formats an error as "file:line:col: rule ID: message", then the source line and a caret
 * under the column on the two lines after it (no final newline). Returns the length written
 * (truncated to cap - 1). */
int moat_rules_error_format(const struct moat_rules_error *e, char *buf, size_t cap);

/* Normalises a URI path for http.request.uri.path: percent-decoding (once), then removing dot
 * segments and repeated slashes (RFC 3986 section 5.2.4). Writes at most cap bytes; returns
 * the length, or MOAT_ETOOBIG. Exposed for tests. An invalid escape ("%zz", a final "%4") is
 * kept as written; a decoded NUL stays a NUL byte; "%2f" decodes to a slash that separates
 * segments. The result is never longer than len, so cap = len always suffices. */
long moat_rules_normalize_path(const char *raw, size_t len, char *out, size_t cap);

/* Compares two version strings (docs/rules.md: an optional "v", numeric dot-separated
 * components compared as numbers with missing ones as 0, then an optional "-pre.release" that
 * sorts before the release, ordered as in SemVer 2.0.0, and "+build" metadata that is
 * ignored). Returns -1, 0, 1, or MOAT_EINVAL if either is malformed. Exposed for tests. */
int moat_rules_version_cmp(const char *a, size_t alen, const char *b, size_t blen);

#endif
