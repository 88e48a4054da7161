/*
 * Virtual patches: the rule language, its compiler and evaluator. See docs/rules.md for the
 * language and docs/internals/rules.md for how it is compiled and evaluated.
 *
 * A rules file is compiled once per generation into an immutable ruleset. Evaluation never
 * allocates: every field a rule reads is computed lazily, at most once per request, into a
 * caller-provided scratch arena, and the results of the multi-pattern prefilter are shared by
 * every `contains` and `matches` on the same field.
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
	MOAT_RULE_LOG,       /* record the hit, go on */
	MOAT_RULE_ALLOW,     /* record the hit, skip the remaining rules */
	MOAT_RULE_CLOSE,     /* drop the connection without an answer */
};

enum moat_rule_mode { MOAT_RULE_ENFORCE = 0, MOAT_RULE_DRY_RUN };

/* Which fields a ruleset may use. */
enum moat_rules_scope {
	MOAT_RULES_HTTP = 0, /* connection and HTTP fields */
	MOAT_RULES_TCP,      /* connection fields only: an HTTP field is a compile error */
};

struct moat_rules_limits {
	unsigned max_rules;      /* per file; more -> compile error (default 10000) */
	size_t max_expr_len;     /* bytes of one expression (default 8192) */
	unsigned max_depth;      /* nesting of the expression tree (default 64) */
	size_t max_regex_len;    /* bytes of one regular expression (default 4096) */
	uint32_t regex_match_limit; /* PCRE2 match limit: bounds backtracking (default 100000) */
	size_t body_limit;       /* bytes of the body visible as http.request.body (default 8192) */
};

/* One compiled rule. Read-only after compilation, except the hit counters. */
struct moat_rule {
	char id[65];          /* [A-Za-z0-9_.:-]{1,64} */
	char *name;
	char *description;    /* may be NULL */
	char *reference;      /* e.g. "CVE-2026-0001"; may be NULL */
	char *expr;           /* the source text */
	enum moat_rule_action action;
	enum moat_rule_mode mode;
	int status;           /* block: HTTP status (default 403) */
	char *body;           /* block: body template, NULL for the default JSON */
	int enabled;
	unsigned line;        /* where the rule starts in its file */
	atomic_uint_fast64_t hits_enforce, hits_dry_run;
};

struct moat_ruleset; /* opaque: the compiled rules of one file */

/* An error found while compiling: where, and what. */
struct moat_rules_error {
	const char *file;
	unsigned line, col;  /* 1-based; col points at the offending character */
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

/* Per-device facts the rules see as device.model, device.firmware, device.tags. */
struct moat_device_info {
	const char *model;    /* NULL if unknown */
	const char *firmware; /* NULL if unknown; compared as a version */
	const char *const *tags;
	size_t ntags;
};

/* Everything a rule may ask about one request (or one TCP connection). */
struct moat_rules_input {
	const struct sockaddr_storage *src; /* ip.src */
	const char *tls_version;            /* "TLSv1.3"; NULL on plain TCP */
	const char *sni;                    /* "" if none */
	int client_verified;
	const char *fingerprint; /* lowercase hex; "" if none */
	const char *serial;      /* uppercase hex; "" if none */
	const char *tenant;
	const char *device_id; /* "" if none */
	const struct moat_device_info *device; /* NULL if no entry */
	const struct moat_http_request *req;   /* NULL for TCP rules */
	const char *body;  /* the first body bytes (<= body_limit), NULL if not read */
	size_t body_len;
	uint64_t body_size; /* Content-Length, or the bytes seen */
};

/* Scratch memory for one evaluation: lazily computed fields live here. 64 KiB is plenty for
 * the default limits; a field that does not fit is treated as missing (and counted). */
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

/* Normalises a URI path for http.request.uri.path: percent-decoding (once), then removing dot
 * segments and repeated slashes (RFC 3986 section 5.2.4). Writes at most cap bytes; returns
 * the length, or MOAT_ETOOBIG. Exposed for tests. */
long moat_rules_normalize_path(const char *raw, size_t len, char *out, size_t cap);

/* Compares two version strings (docs/rules.md: numeric dot-separated components, then an
 * optional pre-release that sorts before the release). Returns -1, 0, 1, or MOAT_EINVAL if
 * either is malformed. Exposed for tests. */
int moat_rules_version_cmp(const char *a, size_t alen, const char *b, size_t blen);

#endif
