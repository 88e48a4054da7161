/*
 * moatctl: global flags, the config file, dispatch to the command groups, and the helpers
 * every command shares (options, input files, memory).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "moatctl.h"

#define DEFAULT_SERVER "http://127.0.0.1:9900"
#define DEFAULT_TIMEOUT_MS 30000L
/* The API refuses bodies over 1 MiB, so no input file needs to be larger. */
#define MAX_INPUT_FILE (1024 * 1024)

static const struct ctl_cmd *const *all_groups(void);

/* ---- memory -------------------------------------------------------------------------------- */

static void out_of_memory(void)
{
	fputs("moatctl: out of memory\n", stderr);
	exit(CTL_EXIT_API);
}

void *ctl_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		out_of_memory();
	return p;
}

void *ctl_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		out_of_memory();
	return q;
}

char *ctl_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = ctl_malloc(n);

	memcpy(p, s, n);
	return p;
}

void ctl_free(void *p)
{
	free(p);
}

char *ctl_printf(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory();
	p = ctl_malloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void ctl_json_set(json_t *obj, const char *key, json_t *value)
{
	if (value == NULL || json_object_set_new(obj, key, value) != 0)
		out_of_memory();
}

void ctl_json_set_str(json_t *obj, const char *key, const char *value)
{
	/* Every argument and input file was checked for UTF-8 already, so json_string can
	 * only fail for want of memory. */
	ctl_json_set(obj, key, value ? json_string(value) : json_null());
}

/* ---- input -------------------------------------------------------------------------------- */

/* 1 if s is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF):
 * jansson refuses anything else, and the API speaks only UTF-8. */
static int utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t len;
		unsigned cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

char *ctl_read_file(const char *path)
{
	int is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	int ok = 0;

	if (f == NULL) {
		fprintf(stderr, "moatctl: cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf = ctl_malloc(MAX_INPUT_FILE + 1);
	len = fread(buf, 1, MAX_INPUT_FILE + 1, f);
	if (ferror(f))
		fprintf(stderr, "moatctl: cannot read %s: %s\n", path, strerror(errno));
	else if (len > MAX_INPUT_FILE)
		fprintf(stderr, "moatctl: %s is larger than 1 MiB\n", path);
	else if (memchr(buf, '\0', len) != NULL || !utf8_ok((unsigned char *)buf, len))
		fprintf(stderr, "moatctl: %s is not UTF-8 text\n", path);
	else
		ok = 1;
	if (!is_stdin)
		fclose(f);
	if (!ok) {
		ctl_free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

char *ctl_text_or_file(const char *arg)
{
	char *text;
	size_t n;

	if (arg[0] != '@')
		return ctl_strdup(arg);
	text = ctl_read_file(arg + 1);
	if (text == NULL)
		return NULL;
	/* Editors end files with a newline that is no part of the expression. */
	n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	return text;
}

int ctl_set_file(json_t *obj, const char *key, const char *path)
{
	char *text = ctl_read_file(path);

	if (text == NULL)
		return CTL_EXIT_USAGE;
	ctl_json_set_str(obj, key, text);
	ctl_free(text);
	return CTL_EXIT_OK;
}

/* ---- options -------------------------------------------------------------------------------- */

static int opt_index(const struct ctl_args *a, const char *name)
{
	for (int i = 0; a->cmd->opts[i].name != NULL; i++) {
		if (strcmp(a->cmd->opts[i].name, name) == 0)
			return i;
	}
	/* A command asking for an option it does not declare is a bug in moatctl itself. */
	fprintf(stderr, "moatctl: internal error: no option --%s\n", name);
	abort();
}

int ctl_has(const struct ctl_args *a, const char *name)
{
	return a->count[opt_index(a, name)];
}

const char *ctl_value(const struct ctl_args *a, const char *name)
{
	return a->value[opt_index(a, name)];
}

const char *const *ctl_list(const struct ctl_args *a, const char *name)
{
	static const char *const empty[] = {NULL};
	int i = opt_index(a, name);

	return a->list[i] ? (const char *const *)a->list[i] : empty;
}

static void print_cmd_words(FILE *f, const struct ctl_cmd *c)
{
	fprintf(f, "moatctl %s%s%s", c->group, c->name ? " " : "", c->name ? c->name : "");
}

static void print_usage_line(FILE *f, const struct ctl_cmd *c)
{
	fputs("usage: ", f);
	print_cmd_words(f, c);
	fprintf(f, "%s%s\n", c->synopsis[0] ? " " : "", c->synopsis);
}

int ctl_usage(const struct ctl_args *a, const char *fmt, ...)
{
	va_list ap;

	fputs("moatctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_usage_line(stderr, a->cmd);
	return CTL_EXIT_USAGE;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int ctl_int_opt(const struct ctl_args *a, const char *name, long long min, long long max,
                json_int_t *out)
{
	const char *s = ctl_value(a, name);
	long long v;

	if (s == NULL)
		return 0;
	if (parse_ll(s, min, max, &v) != 0) {
		ctl_usage(a, "--%s needs a whole number from %lld to %lld, not '%s'", name, min,
		          max, s);
		return -1;
	}
	*out = (json_int_t)v;
	return 1;
}

int ctl_set_int_opt(json_t *obj, const char *key, const struct ctl_args *a, const char *name,
                    long long min, long long max)
{
	json_int_t v;
	int rc = ctl_int_opt(a, name, min, max, &v);

	if (rc < 0)
		return CTL_EXIT_USAGE;
	if (rc > 0)
		ctl_json_set(obj, key, json_integer(v));
	return CTL_EXIT_OK;
}

/* ---- global flags --------------------------------------------------------------------------- */

struct globals {
	const char *server;
	const char *token;
	const char *cacert;
	const char *timeout;
	int json;
	int help;
	int version;
};

/*
 * If argv[*i] is `--name` or `--name=value`, returns 1 and sets *value to the inline value
 * (or NULL); else 0.
 */
static int match_long(const char *arg, const char *name, const char **value)
{
	size_t n = strlen(name);

	if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0)
		return 0;
	if (arg[2 + n] == '\0') {
		*value = NULL;
		return 1;
	}
	if (arg[2 + n] == '=') {
		*value = arg + 3 + n;
		return 1;
	}
	return 0;
}

/* An option's value: inline ("--x=v") or the next argument, taken whatever it looks like so
 * that values may start with '-'. NULL and an error message in err if there is none. */
static const char *option_value(int argc, char **argv, int *i, const char *inline_value,
                                const char *name, char *err, size_t errcap)
{
	if (inline_value != NULL)
		return inline_value;
	if (*i + 1 >= argc) {
		snprintf(err, errcap, "option --%s needs a value", name);
		return NULL;
	}
	return argv[++*i];
}

/*
 * Takes argv[*i] if it is a global flag (advancing *i past its value): 1 if taken, 0 if not,
 * -1 with err set for a global flag used wrongly.
 */
static int take_global(int argc, char **argv, int *i, struct globals *g, char *err, size_t cap)
{
	static const char *const valued[] = {"server", "token", "cacert", "timeout", NULL};
	const char **slots[] = {&g->server, &g->token, &g->cacert, &g->timeout};
	const char *arg = argv[*i];
	const char *v;

	if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
		g->help = 1;
		return 1;
	}
	if (strcmp(arg, "--json") == 0) {
		g->json = 1;
		return 1;
	}
	if (strcmp(arg, "--version") == 0) {
		g->version = 1;
		return 1;
	}
	for (int k = 0; valued[k] != NULL; k++) {
		if (!match_long(arg, valued[k], &v))
			continue;
		v = option_value(argc, argv, i, v, valued[k], err, cap);
		if (v == NULL)
			return -1;
		*slots[k] = v;
		return 1;
	}
	return 0;
}

/* ---- command lookup and help ---------------------------------------------------------------- */

static const struct ctl_cmd *find_group(const char *word)
{
	for (const struct ctl_cmd *const *g = all_groups(); *g != NULL; g++) {
		for (const struct ctl_cmd *c = *g; c->group != NULL; c++) {
			if (strcmp(c->group, word) == 0)
				return c;
		}
	}
	return NULL;
}

static const struct ctl_cmd *find_cmd(const char *group, const char *name)
{
	for (const struct ctl_cmd *const *g = all_groups(); *g != NULL; g++) {
		for (const struct ctl_cmd *c = *g; c->group != NULL; c++) {
			if (strcmp(c->group, group) != 0)
				continue;
			if (c->name == NULL || (name != NULL && strcmp(c->name, name) == 0))
				return c;
		}
	}
	return NULL;
}

static const char global_help[] =
        "Global flags (before or after the command):\n"
        "  --server URL      admin API address (default " DEFAULT_SERVER ")\n"
        "  --token TOKEN     API token (moat_<id>_<secret>)\n"
        "  --json            print the API's JSON instead of tables\n"
        "  --cacert FILE     CA certificate(s) to verify an https admin address\n"
        "  --timeout SECS    give up after SECS seconds (default 30)\n"
        "  -h, --help        help, also per command: moatctl device enroll --help\n"
        "  --version         moatctl's own version\n"
        "Settings come from the flag, else the environment (MOAT_SERVER, MOAT_TOKEN,\n"
        "MOAT_TOKEN_FILE, MOAT_CACERT, MOAT_TIMEOUT), else ~/.config/moat/config.\n";

static void print_group(FILE *f, const char *group)
{
	for (const struct ctl_cmd *const *g = all_groups(); *g != NULL; g++) {
		for (const struct ctl_cmd *c = *g; c->group != NULL; c++) {
			if (group != NULL && strcmp(c->group, group) != 0)
				continue;
			fputs("  ", f);
			print_cmd_words(f, c);
			fprintf(f, "%s%s\n", c->synopsis[0] ? " " : "", c->synopsis);
		}
	}
}

static void print_general_help(FILE *f)
{
	fputs("moatctl: the operator's CLI for moatd's admin API\n\nCommands:\n", f);
	print_group(f, NULL);
	fputc('\n', f);
	fputs(global_help, f);
	fputs("\nExit codes: 0 ok, 1 other API error or local failure, 2 usage, 3 not found,\n"
	      "4 conflict, 5 authentication, 6 validation, 7 server error, 8 cannot connect.\n"
	      "See docs/moatctl.md.\n",
	      f);
}

static void print_cmd_help(const struct ctl_cmd *c)
{
	print_usage_line(stdout, c);
	fputc('\n', stdout);
	fputs(c->help, stdout);
	fputc('\n', stdout);
	fputs(global_help, stdout);
}

/* "moatctl help [group [name]]" */
static int run_help(int nwords, char **words)
{
	const struct ctl_cmd *c;

	if (nwords < 2) {
		print_general_help(stdout);
		return CTL_EXIT_OK;
	}
	c = find_group(words[1]);
	if (c == NULL) {
		fprintf(stderr, "moatctl: unknown command '%s' (see moatctl --help)\n", words[1]);
		return CTL_EXIT_USAGE;
	}
	if (c->name == NULL) {
		print_cmd_help(c);
		return CTL_EXIT_OK;
	}
	if (nwords < 3) {
		printf("moatctl %s commands:\n", words[1]);
		print_group(stdout, words[1]);
		return CTL_EXIT_OK;
	}
	c = find_cmd(words[1], words[2]);
	if (c == NULL) {
		fprintf(stderr, "moatctl: unknown command '%s %s'\n", words[1], words[2]);
		return CTL_EXIT_USAGE;
	}
	print_cmd_help(c);
	return CTL_EXIT_OK;
}

/* ---- argument parsing ----------------------------------------------------------------------- */

/* Takes argv[*i] as one of the command's options. 0, or -1 with err set. */
static int take_cmd_option(struct ctl_args *a, int argc, char **argv, int *i, char *err, size_t cap)
{
	const char *arg = argv[*i];
	const char *v;

	for (int k = 0; k < CTL_MAX_OPTS && a->cmd->opts[k].name != NULL; k++) {
		const struct ctl_opt *o = &a->cmd->opts[k];

		if (!match_long(arg, o->name, &v))
			continue;
		if (o->kind == CTL_OPT_FLAG) {
			if (v != NULL) {
				snprintf(err, cap, "option --%s takes no value", o->name);
				return -1;
			}
			a->count[k]++;
			return 0;
		}
		v = option_value(argc, argv, i, v, o->name, err, cap);
		if (v == NULL)
			return -1;
		if (o->kind == CTL_OPT_LIST) {
			if (a->list[k] == NULL)
				a->list[k] = ctl_malloc(sizeof(char *) * ((size_t)argc + 1));
			a->list[k][a->count[k]] = v;
			a->list[k][a->count[k] + 1] = NULL;
		}
		a->count[k]++;
		a->value[k] = v;
		return 0;
	}
	snprintf(err, cap, "unknown option %.100s", arg);
	return -1;
}

/*
 * Parses the command's arguments from argv[i]: its options, the global flags, positionals.
 * The first error is kept in err (not printed) so that --help anywhere still wins.
 */
static void parse_cmd_args(struct ctl_args *a, struct globals *g, int argc, char **argv, int i,
                           char *err, size_t cap)
{
	int dashdash = 0;

	for (; i < argc; i++) {
		const char *arg = argv[i];
		char e[200] = "";
		int r;

		if (!dashdash && strcmp(arg, "--") == 0) {
			dashdash = 1;
			continue;
		}
		if (dashdash || arg[0] != '-' || arg[1] == '\0') {
			if (a->npos >= a->cmd->max_pos) {
				if (err[0] == '\0')
					snprintf(err, cap, "unexpected argument '%.100s'", arg);
				continue;
			}
			a->pos[a->npos++] = arg;
			continue;
		}
		r = take_global(argc, argv, &i, g, e, sizeof(e));
		if (r == 0)
			r = take_cmd_option(a, argc, argv, &i, e, sizeof(e)) == 0 ? 1 : -1;
		if (r < 0 && err[0] == '\0')
			snprintf(err, cap, "%s", e);
	}
	if (err[0] == '\0' && a->npos < a->cmd->min_pos)
		snprintf(err, cap, "missing arguments");
}

/* ---- config file ---------------------------------------------------------------------------- */

struct config {
	char *path;
	char *server;
	char *token;
	char *token_file;
	char *cacert;
	char *timeout;
};

static void config_clear(struct config *c)
{
	ctl_free(c->path);
	ctl_free(c->server);
	ctl_free(c->token);
	ctl_free(c->token_file);
	ctl_free(c->cacert);
	ctl_free(c->timeout);
}

static char *trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	/* A value may be quoted to keep its outer spaces or a '#'. */
	if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
		s[n - 1] = '\0';
		s++;
	}
	return s;
}

/* "~/x" names a file under $HOME, as in a shell. */
static char *expand_home(const char *path)
{
	const char *home = getenv("HOME");

	if (strncmp(path, "~/", 2) == 0 && home != NULL)
		return ctl_printf("%s/%s", home, path + 2);
	return ctl_strdup(path);
}

static char *config_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");

	if (xdg != NULL && xdg[0] == '/')
		return ctl_printf("%s/moat/config", xdg);
	if (home != NULL && home[0] != '\0')
		return ctl_printf("%s/.config/moat/config", home);
	return NULL;
}

static void warn_if_readable(const char *path, int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
		fprintf(stderr,
		        "moatctl: warning: %s holds a token and is readable by others "
		        "(chmod 600 %s)\n",
		        path, path);
}

static void config_line(struct config *c, char *line, int lineno)
{
	char **slots[] = {&c->server, &c->token, &c->token_file, &c->cacert, &c->timeout};
	static const char *const keys[] = {"server", "token", "token_file", "cacert", "timeout"};
	char *s = trim(line);
	char *eq;

	if (s[0] == '\0' || s[0] == '#' || s[0] == ';' || s[0] == '[')
		return;
	eq = strchr(s, '=');
	if (eq == NULL) {
		fprintf(stderr, "moatctl: warning: %s:%d: not 'key = value', ignored\n", c->path,
		        lineno);
		return;
	}
	*eq = '\0';
	s = trim(s);
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		if (strcmp(s, keys[k]) == 0) {
			ctl_free(*slots[k]);
			*slots[k] = ctl_strdup(trim(eq + 1));
			return;
		}
	}
	fprintf(stderr, "moatctl: warning: %s:%d: unknown key '%s', ignored\n", c->path, lineno, s);
}

/* Reads the config file if there is one; a missing file is no error. */
static void config_load(struct config *c)
{
	char line[4096];
	FILE *f;
	int lineno = 0;

	c->path = config_path();
	if (c->path == NULL)
		return;
	f = fopen(c->path, "r");
	if (f == NULL) {
		if (errno != ENOENT)
			fprintf(stderr, "moatctl: warning: cannot read %s: %s\n", c->path,
			        strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL)
		config_line(c, line, ++lineno);
	if (c->token != NULL && c->token[0] != '\0')
		warn_if_readable(c->path, fileno(f));
	fclose(f);
}

/* The first line of a token file, trimmed; NULL after printing why. */
static char *read_token_file(const char *name)
{
	char *path = expand_home(name);
	char line[1024];
	char *token = NULL;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "moatctl: cannot read token file %s: %s\n", path, strerror(errno));
		goto out;
	}
	warn_if_readable(path, fileno(f));
	if (fgets(line, sizeof(line), f) == NULL || trim(line)[0] == '\0')
		fprintf(stderr, "moatctl: token file %s is empty\n", path);
	else
		token = ctl_strdup(trim(line));
	fclose(f);
out:
	ctl_free(path);
	return token;
}

/* ---- settings -------------------------------------------------------------------------------- */

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

static char *normalize_server(const char *s)
{
	char *url = strstr(s, "://") ? ctl_strdup(s) : ctl_printf("http://%s", s);
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
	return url;
}

/* Tokens travel in a header: only visible ASCII, or the request could be split. */
static int token_ok(const char *t)
{
	for (; *t; t++) {
		if (*t < 0x21 || *t > 0x7e)
			return 0;
	}
	return 1;
}

static int resolve_token(struct ctl *ctl, const struct globals *g, const struct config *c)
{
	if (g->token != NULL) {
		ctl->token = ctl_strdup(g->token);
		ctl->token_source = "--token";
	} else if (env("MOAT_TOKEN") != NULL) {
		ctl->token = ctl_strdup(env("MOAT_TOKEN"));
		ctl->token_source = "MOAT_TOKEN";
	} else if (env("MOAT_TOKEN_FILE") != NULL) {
		ctl->token = read_token_file(env("MOAT_TOKEN_FILE"));
		ctl->token_source = "MOAT_TOKEN_FILE";
		if (ctl->token == NULL)
			return CTL_EXIT_USAGE;
	} else if (c->token != NULL && c->token[0] != '\0') {
		ctl->token = ctl_strdup(c->token);
		ctl->token_source = c->path;
	} else if (c->token_file != NULL && c->token_file[0] != '\0') {
		ctl->token = read_token_file(c->token_file);
		ctl->token_source = c->token_file;
		if (ctl->token == NULL)
			return CTL_EXIT_USAGE;
	}
	if (ctl->token != NULL && !token_ok(ctl->token)) {
		fprintf(stderr, "moatctl: the token from %s holds spaces or control characters\n",
		        ctl->token_source);
		return CTL_EXIT_USAGE;
	}
	return CTL_EXIT_OK;
}

static int resolve(struct ctl *ctl, const struct globals *g)
{
	struct config c = {0};
	const char *timeout;
	int rc;

	config_load(&c);
	ctl->server = normalize_server(g->server            ? g->server
	                               : env("MOAT_SERVER") ? env("MOAT_SERVER")
	                               : c.server           ? c.server
	                                                    : DEFAULT_SERVER);
	rc = resolve_token(ctl, g, &c);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (g->cacert != NULL || env("MOAT_CACERT") != NULL)
		ctl->cacert = ctl_strdup(g->cacert ? g->cacert : env("MOAT_CACERT"));
	else if (c.cacert != NULL && c.cacert[0] != '\0')
		ctl->cacert = expand_home(c.cacert);
	timeout = g->timeout ? g->timeout : env("MOAT_TIMEOUT") ? env("MOAT_TIMEOUT") : c.timeout;
	ctl->timeout_ms = DEFAULT_TIMEOUT_MS;
	if (timeout != NULL) {
		char *end;
		double s;

		errno = 0;
		s = strtod(timeout, &end);
		if (timeout[0] == '\0' || *end != '\0' || errno != 0 || !(s > 0) || s > 86400) {
			fprintf(stderr,
			        "moatctl: --timeout needs seconds (0 < s <= 86400), not '%s'\n",
			        timeout);
			rc = CTL_EXIT_USAGE;
			goto out;
		}
		ctl->timeout_ms = (long)(s * 1000);
		if (ctl->timeout_ms < 1)
			ctl->timeout_ms = 1;
	}
	ctl->json = g->json;
out:
	config_clear(&c);
	return rc;
}

static void ctl_clear(struct ctl *ctl)
{
	ctl_free(ctl->server);
	ctl_free(ctl->token);
	ctl_free(ctl->cacert);
}

/* ---- health and version ---------------------------------------------------------------------- */

/* Neither needs a token: none is sent, so a wrong one cannot count as a failed login. */
static int run_unauthenticated(struct ctl *ctl, const char *path, struct ctl_reply *r)
{
	char *saved = ctl->token;
	int rc;

	ctl->token = NULL;
	rc = ctl_http(ctl, "GET", path, NULL, r);
	ctl->token = saved;
	return rc;
}

static int run_health(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
	int rc = run_unauthenticated(ctl, "/v1/health", &r);

	/* 503 "degraded" still carries the health object: show it. */
	if (r.json != NULL && json_is_object(r.json) && json_object_get(r.json, "status")) {
		if (ctl->json)
			ctl_print_json(r.json);
		else
			ctl_print_object(r.json, NULL);
	}
	ctl_reply_clear(&r);
	return rc;
}

static int run_version(struct ctl *ctl, const struct ctl_args *a)
{
	struct ctl_reply r = {0};
	int rc = run_unauthenticated(ctl, "/v1/version", &r);
	struct ctl_kv *kv;

	if (rc != CTL_EXIT_OK)
		goto out;
	if (ctl->json) {
		ctl_print_json(r.json);
		goto out;
	}
	kv = ctl_kv_new();
	ctl_kv_text(kv, "moatctl", MOATCTL_VERSION);
	ctl_kv_value(kv, "server", json_object_get(r.json, "version"));
	ctl_kv_value(kv, "api", json_object_get(r.json, "api"));
	ctl_kv_value(kv, "schema", json_object_get(r.json, "schema"));
	ctl_kv_print(kv);
out:
	ctl_reply_clear(&r);
	return rc;
}

static const struct ctl_opt no_opts[] = {{NULL, 0}};

const struct ctl_cmd ctl_misc_cmds[] = {
        {"health", NULL, "",
         "Shows whether moatd is up and its store readable (no token needed).\n", 0, 0, no_opts,
         run_health},
        {"version", NULL, "", "Shows moatctl's and moatd's versions (no token needed).\n", 0, 0,
         no_opts, run_version},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};

static const struct ctl_cmd *const *all_groups(void)
{
	static const struct ctl_cmd *const groups[] = {
	        ctl_misc_cmds,   ctl_tenant_cmds, ctl_ca_cmds,
	        ctl_device_cmds, ctl_rule_cmds,   ctl_stats_cmds,
	        ctl_token_cmds,  ctl_audit_cmds,  NULL,
	};
	return groups;
}

/* ---- main ------------------------------------------------------------------------------------ */

static int args_are_utf8(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!utf8_ok((const unsigned char *)argv[i], strlen(argv[i]))) {
			fprintf(stderr, "moatctl: argument %d is not UTF-8\n", i);
			return 0;
		}
	}
	return 1;
}

/*
 * Finds the command words (group, then name for groups that have several commands), taking
 * global flags met on the way. Returns the index after the words, or -1 after a usage error.
 */
static int find_words(int argc, char **argv, struct globals *g, char **words, int *nwords)
{
	int i = 1;
	char err[200] = "";

	*nwords = 0;
	while (i < argc && *nwords < 3) {
		const char *arg = argv[i];
		int r;

		if (arg[0] == '-' && arg[1] != '\0') {
			r = take_global(argc, argv, &i, g, err, sizeof(err));
			if (r < 0) {
				fprintf(stderr, "moatctl: %s\n", err);
				return -1;
			}
			if (r == 0) {
				if (*nwords > 0)
					break; /* a command option: the command's parser takes it */
				fprintf(stderr, "moatctl: unknown option %s (see moatctl --help)\n",
				        arg);
				return -1;
			}
			i++;
			continue;
		}
		words[(*nwords)++] = argv[i++];
		if (*nwords == 1 && strcmp(words[0], "help") != 0) {
			const struct ctl_cmd *c = find_group(words[0]);

			if (c == NULL || c->name == NULL)
				break;
		}
		if (*nwords == 2 && strcmp(words[0], "help") != 0)
			break;
	}
	return i;
}

static int print_version(void)
{
	printf("moatctl %s (libcurl %s, jansson %s)\n", MOATCTL_VERSION,
	       curl_version_info(CURLVERSION_NOW)->version, jansson_version_str());
	return CTL_EXIT_OK;
}

static int dispatch(int argc, char **argv)
{
	struct globals g = {0};
	struct ctl_args a = {0};
	struct ctl ctl = {0};
	char *words[3];
	char err[256] = "";
	int nwords, i, rc;

	i = find_words(argc, argv, &g, words, &nwords);
	if (i < 0)
		return CTL_EXIT_USAGE;
	if (g.version)
		return print_version();
	if (nwords == 0) {
		print_general_help(g.help ? stdout : stderr);
		return g.help ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	}
	if (strcmp(words[0], "help") == 0)
		return run_help(nwords, words);
	a.cmd = find_group(words[0]);
	if (a.cmd == NULL) {
		fprintf(stderr, "moatctl: unknown command '%s' (see moatctl --help)\n", words[0]);
		return CTL_EXIT_USAGE;
	}
	if (a.cmd->name != NULL) {
		if (nwords < 2) {
			FILE *f = g.help ? stdout : stderr;

			if (!g.help)
				fprintf(stderr, "moatctl: %s needs a command:\n", words[0]);
			print_group(f, words[0]);
			return g.help ? CTL_EXIT_OK : CTL_EXIT_USAGE;
		}
		a.cmd = find_cmd(words[0], words[1]);
		if (a.cmd == NULL) {
			fprintf(stderr, "moatctl: unknown command '%s %s'; %s commands:\n",
			        words[0], words[1], words[0]);
			print_group(stderr, words[0]);
			return CTL_EXIT_USAGE;
		}
	}
	parse_cmd_args(&a, &g, argc, argv, i, err, sizeof(err));
	if (g.version) {
		rc = print_version();
		goto out;
	}
	if (g.help) {
		print_cmd_help(a.cmd);
		rc = CTL_EXIT_OK;
		goto out;
	}
	if (err[0] != '\0') {
		rc = ctl_usage(&a, "%s", err);
		goto out;
	}
	rc = resolve(&ctl, &g);
	if (rc == CTL_EXIT_OK)
		rc = a.cmd->run(&ctl, &a);
out:
	for (int k = 0; k < CTL_MAX_OPTS; k++)
		ctl_free((void *)a.list[k]);
	ctl_clear(&ctl);
	return rc;
}

int main(int argc, char **argv)
{
	int rc;

	if (!args_are_utf8(argc, argv))
		return CTL_EXIT_USAGE;
	if (ctl_http_init() != 0) {
		fputs("moatctl: cannot initialise libcurl\n", stderr);
		return CTL_EXIT_API;
	}
	rc = dispatch(argc, argv);
	ctl_http_done();
	/* A full disk or closed pipe must not pass for success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "moatctl: cannot write the output: %s\n", strerror(errno));
		if (rc == CTL_EXIT_OK)
			rc = CTL_EXIT_API;
	}
	return rc;
}
