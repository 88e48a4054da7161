/*
 * moatctl, the operator's CLI for the admin API (docs/api.md; usage in docs/moatctl.md).
 *
 * It speaks only HTTP (libcurl) and JSON (jansson) and links nothing of libmoat, so it has its
 * own small allocation wrappers. One file per job: main.c (flags, config file, dispatch, shared
 * argument helpers), http.c (requests and error reporting), output.c (tables, key: value lines,
 * --json), and one file per command group (tenant.c, ca.c, device.c, rule.c, stats.c,
 * token.c, audit.c), each exporting a table of its commands.
 */
#ifndef MOATCTL_H
#define MOATCTL_H

#include <stddef.h>

#include <jansson.h>

#define MOATCTL_VERSION "0.1.0"

/* Exit codes, documented in docs/moatctl.md: scripts depend on them. */
enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_API = 1, /* a 4xx not listed below, or a local failure (writing files) */
	CTL_EXIT_USAGE = 2, /* bad arguments, unreadable input file, output file exists */
	CTL_EXIT_NOT_FOUND = 3, /* 404 */
	CTL_EXIT_CONFLICT = 4, /* 409 */
	CTL_EXIT_AUTH = 5, /* 401, 403 */
	CTL_EXIT_INVALID = 6, /* 400, 422 */
	CTL_EXIT_SERVER = 7, /* 5xx, or an answer that is not the API's JSON */
	CTL_EXIT_CONNECT = 8, /* cannot connect, TLS failure, timeout */
};

/* The resolved settings of one run (flag, then environment, then config file). */
struct ctl {
	char *server; /* base URL, no trailing '/' */
	char *token; /* NULL: send no Authorization header */
	const char *token_source; /* where the token came from, for hints */
	char *cacert; /* NULL: the system's CAs */
	long timeout_ms;
	int json; /* --json: print the API's JSON instead of tables */
};

/* ---- commands and their arguments (main.c) ---------------------------------------------- */

enum ctl_opt_kind {
	CTL_OPT_FLAG, /* --yes */
	CTL_OPT_VALUE, /* --model M (the last one given counts) */
	CTL_OPT_LIST, /* --tag T, repeatable; every value is kept */
};

struct ctl_opt {
	const char *name; /* without the leading "--" */
	enum ctl_opt_kind kind;
};

#define CTL_MAX_OPTS 24
#define CTL_MAX_POS 4

struct ctl_cmd;

/* The parsed arguments of one command. Values point into argv. */
struct ctl_args {
	const struct ctl_cmd *cmd;
	const char *pos[CTL_MAX_POS];
	int npos;
	int count[CTL_MAX_OPTS]; /* times each option of cmd->opts was given */
	const char *value[CTL_MAX_OPTS]; /* its last value */
	const char **list[CTL_MAX_OPTS]; /* every value of a CTL_OPT_LIST, NULL-ended */
};

struct ctl_cmd {
	const char *group; /* first word: "device"; a one-word command ("stats") has only this */
	const char *name; /* second word: "enroll"; NULL for a one-word command */
	const char *synopsis; /* the arguments, as printed after the command words */
	const char *help; /* what it does and its options, for --help */
	int min_pos, max_pos; /* positional arguments */
	const struct ctl_opt *opts; /* ends with {NULL}; at most CTL_MAX_OPTS */
	int (*run)(struct ctl *ctl, const struct ctl_args *a); /* returns an exit code */
};

/* Each group's commands, ending with an entry whose group is NULL. */
extern const struct ctl_cmd ctl_tenant_cmds[];
extern const struct ctl_cmd ctl_ca_cmds[];
extern const struct ctl_cmd ctl_device_cmds[];
extern const struct ctl_cmd ctl_rule_cmds[];
extern const struct ctl_cmd ctl_stats_cmds[];
extern const struct ctl_cmd ctl_token_cmds[];
extern const struct ctl_cmd ctl_audit_cmds[];
/* health and version (main.c) */
extern const struct ctl_cmd ctl_misc_cmds[];

/* How many times option `name` was given (it must be one of the command's options). */
int ctl_has(const struct ctl_args *a, const char *name);
/* The option's last value, NULL if absent. */
const char *ctl_value(const struct ctl_args *a, const char *name);
/* Every value of a list option, NULL-ended (never NULL itself). */
const char *const *ctl_list(const struct ctl_args *a, const char *name);

/* Prints "moatctl: <message>" and the command's usage to stderr; returns CTL_EXIT_USAGE. */
int ctl_usage(const struct ctl_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The integer value of option `name` into *out, if given: returns 1 if set, 0 if absent, and
 * -1 after a usage message when it is not a whole number within [min, max].
 */
int ctl_int_opt(const struct ctl_args *a, const char *name, long long min, long long max,
                json_int_t *out);

/* Sets key to the integer value of option `name`, if given (ctl_int_opt); returns 0, or
 * CTL_EXIT_USAGE after the usage message. */
int ctl_set_int_opt(json_t *obj, const char *key, const struct ctl_args *a, const char *name,
                    long long min, long long max);

/*
 * Reads a whole input file ("-" is standard input) as a NUL-terminated string. NULL after
 * printing why (unreadable, too big, holds NUL bytes). The caller frees it.
 */
char *ctl_read_file(const char *path);

/* "@FILE" reads FILE (trailing newlines dropped), anything else is taken as is. NULL after
 * printing why. The caller frees it. */
char *ctl_text_or_file(const char *arg);

/* Sets key to a PEM file's text; returns 0, or CTL_EXIT_USAGE after printing why. */
int ctl_set_file(json_t *obj, const char *key, const char *path);

/* ---- memory (main.c) ---------------------------------------------------------------------- */

/* A CLI has nothing to unwind on exhaustion: these print and exit(CTL_EXIT_API) instead of
 * returning NULL, so callers need no checks. */
void *ctl_malloc(size_t n);
void *ctl_realloc(void *p, size_t n);
char *ctl_strdup(const char *s);
void ctl_free(void *p);
/* A malloc'd printf. */
char *ctl_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sets a string member; json_null() when value is NULL. Aborts like ctl_malloc on failure. */
void ctl_json_set_str(json_t *obj, const char *key, const char *value);
void ctl_json_set(json_t *obj, const char *key, json_t *value); /* steals value */

/* ---- HTTP (http.c) ------------------------------------------------------------------------ */

struct ctl_reply {
	long status; /* 0 if no answer came */
	json_t *json; /* the parsed body, NULL when there was none (204) */
};

/*
 * "/v1/tenants/{}/devices/{}" with each "{}" replaced by the next string argument,
 * percent-encoded. The caller frees the result.
 */
char *ctl_path(const char *tmpl, ...);
/* Appends "?key=value" or "&key=value" (value percent-encoded) to a ctl_path result. */
void ctl_query(char **path, const char *key, const char *value);

/*
 * Sends one request (path from ctl_path; body NULL for none, not stolen). On a 2xx answer
 * returns CTL_EXIT_OK. Otherwise prints the error and its hint to stderr and returns the exit
 * code for it; reply->status and reply->json are still set when an answer came. Always clear
 * the reply with ctl_reply_clear.
 */
int ctl_http(struct ctl *ctl, const char *method, const char *path, json_t *body,
             struct ctl_reply *reply);
void ctl_reply_clear(struct ctl_reply *reply);

/*
 * ctl_http for a command whose output is the answer: on success prints it, with --json as the
 * API sent it, else with print, or as key: value lines (ctl_print_object) when print is NULL.
 * Returns the exit code.
 */
int ctl_http_show(struct ctl *ctl, const char *method, const char *path, json_t *body,
                  void (*print)(const json_t *answer));

/* DELETE path; on success, unless --json, prints the line made from fmt (its newline added
 * here). Returns the exit code. */
int ctl_http_delete(struct ctl *ctl, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Starts and stops libcurl; ctl_http_done also drops the connection kept between requests. */
int ctl_http_init(void);
void ctl_http_done(void);

/* The exit code for an HTTP status. */
int ctl_exit_for_status(long status);

/* ---- output (output.c) -------------------------------------------------------------------- */

/* --json: the API's JSON, pretty, on stdout. */
void ctl_print_json(const json_t *v);

/*
 * One value as a table cell or after "key: ": null "-", booleans "yes"/"no", RFC 3339 times
 * as "2026-11-23 18:04", arrays of scalars comma-separated ("-" when empty), PEM text as
 * "(PEM, N certificates)", objects as "k=v k=v". The caller frees it.
 */
char *ctl_format(const json_t *v);

/* A column of ctl_print_items: its header and the member it shows, of the item itself or, when
 * `in` is not NULL, of the item's object member `in` (a rule's "hits"). */
struct ctl_column {
	const char *header;
	const char *key;
	const char *in;
};

/*
 * A table of items (an array of objects), a row each, with the columns cols (ended by a NULL
 * header): columns as wide as their widest cell, two spaces apart, values formatted with
 * ctl_format ("-" when absent). No items: "(none)" on stderr and nothing on stdout.
 */
void ctl_print_items(const json_t *items, const struct ctl_column *cols);

/* "key: value" lines with the values aligned. */
struct ctl_kv;
struct ctl_kv *ctl_kv_new(void);
void ctl_kv_text(struct ctl_kv *kv, const char *key, const char *text);
void ctl_kv_value(struct ctl_kv *kv, const char *key, const json_t *v);
/* Every member of obj in order, except those named in skip (NULL-ended, may be NULL) and
 * arrays of objects (printed as tables by the caller). */
void ctl_kv_object(struct ctl_kv *kv, const json_t *obj, const char *const *skip);
void ctl_kv_print(struct ctl_kv *kv); /* prints and frees */

/* Prints obj as key: value lines (ctl_kv_object) to stdout. */
void ctl_print_object(const json_t *obj, const char *const *skip);

/* The device CAs of a tenant (ca.c): a table of GET /v1/tenants/{t}/cas items. */
void ctl_print_ca_table(const json_t *items);

/* A copy of server text fit for a terminal line: control characters replaced ("-" for
 * NULL). The caller frees it. */
char *ctl_clean(const char *s);

/* A string member, or NULL when absent or not a string. */
const char *ctl_str(const json_t *obj, const char *key);

#endif
