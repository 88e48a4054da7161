/*
 * The rules file: sections `[rule ID]` with `key = value` lines, values continued on indented
 * lines (docs/rules.md). Written here rather than with an INI library because every error
 * must carry its column, and an expression's errors must point into the file through its
 * continuation lines: an expression is compiled straight from the file's bytes, and offsets
 * in it map back to lines and columns of the file.
 *
 * Any error refuses the whole file; parsing goes on after an error to report the others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "rules/internal.h"

#define FILE_MAX (64u << 20)
#define NAME_MAX_LEN 200
#define REFERENCE_MAX_LEN 128
#define DESCRIPTION_MAX_LEN 4096
#define BODY_MAX_LEN 8192
#define ID_MAX_LEN 64

enum key {
	K_NAME = 0,
	K_REFERENCE,
	K_DESCRIPTION,
	K_ACTION,
	K_MODE,
	K_STATUS,
	K_ENABLED,
	K_EXPR,
	K_BODY,
	K_COUNT
};

static const char *const key_names[K_COUNT] = {
        "name", "reference", "description", "action", "mode", "status", "enabled", "expr", "body"};

/* Which keys may continue on indented lines (the others are one word). */
static const unsigned char key_multiline[K_COUNT] = {1, 0, 1, 0, 0, 0, 0, 1, 1};

struct buf {
	char *p;
	size_t n, cap;
};

struct pending {
	int open;
	char id[ID_MAX_LEN + 1];
	size_t header_off; /* the '[' */
	unsigned line;
	unsigned key_line[K_COUNT]; /* 0: not given */
	size_t key_off[K_COUNT];
	struct buf text[K_COUNT];
	size_t expr_off, expr_end; /* the expression's bytes in the file */
	enum moat_rule_action action;
	enum moat_rule_mode mode;
	int status, enabled;
	unsigned errors_before;
};

struct loader {
	const char *name;
	const char *text;
	size_t len;
	size_t *lines; /* offset of the start of each line */
	unsigned nlines;
	moat_rules_report_fn report;
	void *arg;
	unsigned errors;
	int nomem;
	struct moat_rules_builder *b;
	struct moat_rules_limits lim;
	struct pending r;
	int cont; /* key whose value an indented line continues, or -1 */
	size_t expr_base; /* file offset of the expression being compiled */
	/* rule ids seen so far, for duplicates: open addressing on a power-of-two table */
	struct seen {
		const char *id; /* into a copy in `ids` */
		unsigned line;
	} * seen;
	size_t seen_cap, nrules;
	struct moat_rules_arena ids;
	int stop;
	int skip; /* inside a section whose header was refused: its lines are not checked */
};

static int buf_add(struct loader *L, struct buf *b, const char *p, size_t n)
{
	if (b->cap - b->n < n + 1) {
		size_t cap = b->cap ? b->cap : 64;
		char *np;

		while (cap - b->n < n + 1)
			cap *= 2;
		np = moat_realloc(b->p, cap);
		if (np == NULL) {
			L->nomem = 1;
			return -1;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

/* ---- positions and errors ------------------------------------------------------------------ */

static unsigned line_of(const struct loader *L, size_t off)
{
	unsigned lo = 0, hi = L->nlines;

	/* the last line that starts at or before off */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (L->lines[mid] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 ? lo - 1 : 0;
}

static void report_at(struct loader *L, size_t off, const char *rule_id, const char *msg)
{
	struct moat_rules_error e;
	unsigned li;
	size_t start, end;
	char *src;

	L->errors++;
	if (L->report == NULL)
		return;
	if (off > L->len)
		off = L->len;
	li = line_of(L, off);
	start = L->nlines ? L->lines[li] : 0;
	end = start;
	while (end < L->len && L->text[end] != '\n')
		end++;
	if (end > start && L->text[end - 1] == '\r')
		end--;
	src = moat_strndup(L->text + start, end - start);
	memset(&e, 0, sizeof(e));
	e.file = L->name;
	e.line = li + 1;
	e.col = (unsigned)(off - start) + 1;
	e.rule_id = rule_id;
	e.msg = msg;
	e.source_line = src != NULL ? src : "";
	L->report(L->arg, &e);
	moat_free(src);
}

static void error_at(struct loader *L, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void error_at(struct loader *L, size_t off, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report_at(L, off, L->r.open ? L->r.id : NULL, msg);
}

/* Expression errors arrive as offsets in the expression: move them into the file. */
static void expr_error(void *arg, size_t pos, const char *msg)
{
	struct loader *L = arg;

	report_at(L, L->expr_base + pos, L->r.open ? L->r.id : NULL, msg);
}

/* ---- duplicate ids ------------------------------------------------------------------------ */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* 0 if new (and remembered), else the line where it was first defined. */
static unsigned seen_add(struct loader *L, const char *id, unsigned line)
{
	size_t i, mask;

	if (L->nrules * 2 >= L->seen_cap) {
		size_t cap = L->seen_cap ? L->seen_cap * 2 : 64;
		struct seen *t = moat_calloc(cap, sizeof(*t));

		if (t == NULL) {
			L->nomem = 1;
			return 0;
		}
		for (i = 0; i < L->seen_cap; i++) {
			size_t k;

			if (L->seen[i].id == NULL)
				continue;
			for (k = hash(L->seen[i].id) & (cap - 1); t[k].id != NULL;
			     k = (k + 1) & (cap - 1))
				;
			t[k] = L->seen[i];
		}
		moat_free(L->seen);
		L->seen = t;
		L->seen_cap = cap;
	}
	mask = L->seen_cap - 1;
	for (i = hash(id) & mask; L->seen[i].id != NULL; i = (i + 1) & mask) {
		if (strcmp(L->seen[i].id, id) == 0)
			return L->seen[i].line;
	}
	L->seen[i].id = moat_rules_arena_dup(&L->ids, id, strlen(id));
	if (L->seen[i].id == NULL) {
		L->nomem = 1;
		return 0;
	}
	L->seen[i].line = line;
	L->nrules++;
	return 0;
}

/* ---- rules -------------------------------------------------------------------------------- */

static void pending_reset(struct loader *L)
{
	unsigned k;

	for (k = 0; k < K_COUNT; k++)
		moat_free(L->r.text[k].p);
	memset(&L->r, 0, sizeof(L->r));
	L->r.action = MOAT_RULE_BLOCK;
	L->r.mode = MOAT_RULE_ENFORCE;
	L->r.status = 403;
	L->r.enabled = 1;
	L->cont = -1;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The expression as stored in the rule (for logs and the admin API): its text, trimmed. */
static char *expr_text(struct loader *L)
{
	size_t s = L->r.expr_off, e = L->r.expr_end;

	while (s < e && (is_blank(L->text[s]) || L->text[s] == '\n'))
		s++;
	while (e > s && (is_blank(L->text[e - 1]) || L->text[e - 1] == '\n'))
		e--;
	return moat_strndup(L->text + s, e - s);
}

static void finish_rule(struct loader *L)
{
	struct pending *r = &L->r;
	struct moat_rules_diag d = {expr_error, L, 0};
	struct moat_rule rule;
	uint32_t root;
	char *expr = NULL;
	int res;

	if (!r->open)
		return;
	if (r->key_line[K_NAME] == 0)
		error_at(L, r->header_off, "rule %s has no name", r->id);
	else if (r->text[K_NAME].n == 0)
		error_at(L, r->key_off[K_NAME], "empty name");
	if (r->key_line[K_EXPR] == 0)
		error_at(L, r->header_off, "rule %s has no expr", r->id);
	if (r->key_line[K_STATUS] != 0 && r->action != MOAT_RULE_BLOCK)
		error_at(L, r->key_off[K_STATUS], "status applies only to action = block");
	if (r->key_line[K_BODY] != 0 && r->action != MOAT_RULE_BLOCK)
		error_at(L, r->key_off[K_BODY], "body applies only to action = block");
	if (r->key_line[K_EXPR] != 0) {
		L->expr_base = r->expr_off;
		res = moat_rules_builder_expr(L->b, L->text + r->expr_off,
		                              r->expr_end - r->expr_off, &d, &root);
		if (res == MOAT_ENOMEM)
			L->nomem = 1;
		if (res == MOAT_OK && L->errors == r->errors_before) {
			expr = expr_text(L);
			memset(&rule, 0, sizeof(rule));
			memcpy(rule.id, r->id, sizeof(rule.id));
			rule.name = r->text[K_NAME].p;
			rule.description = r->text[K_DESCRIPTION].p;
			rule.reference = r->text[K_REFERENCE].p;
			rule.body = r->text[K_BODY].p;
			rule.expr = expr;
			rule.action = r->action;
			rule.mode = r->mode;
			rule.status = r->status;
			rule.enabled = r->enabled;
			rule.line = r->line;
			if (expr == NULL || moat_rules_builder_rule(L->b, &rule, root) != MOAT_OK)
				L->nomem = 1;
		}
	}
	moat_free(expr);
	pending_reset(L);
}

static int id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '-';
}

/* "[rule ID]" at s[0..n), s being at file offset off. */
static void section(struct loader *L, const char *s, size_t n, size_t off, unsigned line)
{
	size_t i = 1, id_start, id_len, first;

	finish_rule(L);
	L->skip = 1; /* until the header is known to be good */
	while (i < n && is_blank(s[i]))
		i++;
	if (n - i < 4 || memcmp(s + i, "rule", 4) != 0 ||
	    (i + 4 < n && id_char((unsigned char)s[i + 4]))) {
		error_at(L, off + i, "unknown section: a rule starts with [rule ID]");
		L->cont = -1;
		return;
	}
	i += 4;
	while (i < n && is_blank(s[i]))
		i++;
	id_start = i;
	while (i < n && id_char((unsigned char)s[i]))
		i++;
	id_len = i - id_start;
	while (i < n && is_blank(s[i]))
		i++;
	if (id_len == 0) {
		error_at(L, off + id_start, "missing rule id: [rule ID]");
		return;
	}
	if (i >= n || s[i] != ']') {
		if (i < n)
			error_at(L, off + i,
			         "a rule id has only letters, digits and _ . : - (then ']')");
		else
			error_at(L, off + i, "expected ']'");
		return;
	}
	first = i + 1;
	while (first < n && is_blank(s[first]))
		first++;
	if (first < n && s[first] != '#' && s[first] != ';') {
		error_at(L, off + first, "unexpected text after the section header");
		return;
	}
	if (id_len > ID_MAX_LEN) {
		error_at(L, off + id_start, "rule id longer than %d characters", ID_MAX_LEN);
		return;
	}
	if (L->nrules >= L->lim.max_rules) {
		error_at(L, off, "more than %u rules in one file", L->lim.max_rules);
		L->stop = 1;
		return;
	}
	pending_reset(L);
	L->skip = 0;
	L->r.open = 1;
	memcpy(L->r.id, s + id_start, id_len);
	L->r.id[id_len] = '\0';
	L->r.header_off = off;
	L->r.line = line;
	L->r.errors_before = L->errors;
	{
		unsigned prev = seen_add(L, L->r.id, line);

		if (prev != 0)
			error_at(L, off + id_start,
			         "duplicate rule id %s (first defined on line %u)", L->r.id, prev);
	}
}

/* A one-word value, then optionally a comment: "block   ; the default". */
static int word(struct loader *L, const char *v, size_t n, size_t off, size_t *wlen)
{
	size_t i = 0, k;

	while (i < n && !is_blank(v[i]))
		i++;
	*wlen = i;
	for (k = i; k < n && is_blank(v[k]); k++)
		;
	if (k < n && v[k] != ';' && v[k] != '#') {
		error_at(L, off + k,
		         "unexpected text after the value (comments start with ; or #)");
		return -1;
	}
	if (i == 0) {
		error_at(L, off, "missing value");
		return -1;
	}
	return 0;
}

static int word_is(const char *v, size_t n, const char *w)
{
	return strlen(w) == n && memcmp(v, w, n) == 0;
}

static void one_word_value(struct loader *L, enum key k, const char *v, size_t n, size_t off)
{
	struct pending *r = &L->r;
	size_t w, i;
	int status = 0;

	if (word(L, v, n, off, &w) != 0)
		return;
	switch (k) {
	case K_ACTION:
		if (word_is(v, w, "block"))
			r->action = MOAT_RULE_BLOCK;
		else if (word_is(v, w, "log"))
			r->action = MOAT_RULE_LOG;
		else if (word_is(v, w, "allow"))
			r->action = MOAT_RULE_ALLOW;
		else if (word_is(v, w, "close"))
			r->action = MOAT_RULE_CLOSE;
		else
			error_at(L, off, "action is block, log, allow or close");
		return;
	case K_MODE:
		if (word_is(v, w, "enforce"))
			r->mode = MOAT_RULE_ENFORCE;
		else if (word_is(v, w, "dry-run"))
			r->mode = MOAT_RULE_DRY_RUN;
		else
			error_at(L, off, "mode is enforce or dry-run");
		return;
	case K_ENABLED:
		if (word_is(v, w, "true"))
			r->enabled = 1;
		else if (word_is(v, w, "false"))
			r->enabled = 0;
		else
			error_at(L, off, "enabled is true or false");
		return;
	case K_STATUS:
		for (i = 0; i < w && i < 4; i++) {
			if (v[i] < '0' || v[i] > '9')
				break;
			status = status * 10 + (v[i] - '0');
		}
		if (i != w || status < 100 || status > 599)
			error_at(L, off, "status is an HTTP status code from 100 to 599");
		else
			r->status = status;
		return;
	case K_REFERENCE:
		if (w > REFERENCE_MAX_LEN)
			error_at(L, off, "reference longer than %d bytes", REFERENCE_MAX_LEN);
		else
			buf_add(L, &r->text[k], v, w);
		return;
	default:
		return;
	}
}

static void text_piece(struct loader *L, enum key k, const char *v, size_t n, size_t off)
{
	static const size_t max[K_COUNT] = {NAME_MAX_LEN, 0, DESCRIPTION_MAX_LEN, 0, 0, 0, 0, 0,
	                                    BODY_MAX_LEN};
	struct buf *b = &L->r.text[k];

	while (n > 0 && is_blank(v[n - 1]))
		n--;
	if (n == 0)
		return;
	/* continuation lines join with a space (a newline in a body) */
	if (b->n > 0 && buf_add(L, b, k == K_BODY ? "\n" : " ", 1) != 0)
		return;
	if (buf_add(L, b, v, n) != 0)
		return;
	if (b->n > max[k] && b->n - n <= max[k])
		error_at(L, off, "%s longer than %zu bytes", key_names[k], max[k]);
}

/* "key = value" at s[0..n), s being at file offset off. */
static void key_line(struct loader *L, const char *s, size_t n, size_t off, unsigned line)
{
	size_t i = 0, v;
	unsigned k;

	L->cont = -1;
	if (!L->r.open && L->skip)
		return;
	while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || s[i] == '-' ||
	                 (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
		i++;
	v = i;
	while (v < n && is_blank(s[v]))
		v++;
	if (i == 0 || v >= n || s[v] != '=') {
		error_at(L, off + (i == 0 ? 0 : v), "expected key = value");
		return;
	}
	for (k = 0; k < K_COUNT; k++) {
		if (word_is(s, i, key_names[k]))
			break;
	}
	if (k == K_COUNT) {
		error_at(L, off,
		         "unknown key '%.*s' (a rule has name, expr, action, mode, status, body, "
		         "enabled, reference, description)",
		         (int)(i > 40 ? 40 : i), s);
		return;
	}
	if (!L->r.open) {
		error_at(L, off, "'%s' outside a [rule ID] section", key_names[k]);
		return;
	}
	if (L->r.key_line[k] != 0) {
		error_at(L, off, "duplicate key '%s' (first on line %u)", key_names[k],
		         L->r.key_line[k]);
		return;
	}
	L->r.key_line[k] = line;
	L->r.key_off[k] = off;
	v++;
	if (k == K_EXPR) {
		/* the expression starts right after '=' so that offsets map to columns */
		L->r.expr_off = off + v;
		L->r.expr_end = off + n;
		L->cont = (int)k;
		return;
	}
	while (v < n && is_blank(s[v]))
		v++;
	if (key_multiline[k]) {
		text_piece(L, (enum key)k, s + v, n - v, off + v);
		L->cont = (int)k;
		return;
	}
	one_word_value(L, (enum key)k, s + v, n - v, off + v);
}

static void continuation(struct loader *L, const char *s, size_t n, size_t off)
{
	size_t i = 0;

	if (L->skip && !L->r.open)
		return;
	if (L->cont < 0) {
		while (i < n && is_blank(s[i]))
			i++;
		error_at(L, off + i,
		         "unexpected indented line (only name, description, expr and body "
		         "continue on indented lines)");
		return;
	}
	if (L->cont == K_EXPR) {
		L->r.expr_end = off + n;
		return;
	}
	while (i < n && is_blank(s[i]))
		i++;
	text_piece(L, (enum key)L->cont, s + i, n - i, off + i);
}

static int index_lines(struct loader *L)
{
	size_t i, n = 1, k = 0;

	for (i = 0; i < L->len; i++)
		n += L->text[i] == '\n';
	if (n > UINT32_MAX)
		return -1;
	L->lines = moat_malloc(n * sizeof(*L->lines));
	if (L->lines == NULL)
		return -1;
	L->lines[k++] = 0;
	for (i = 0; i < L->len; i++) {
		if (L->text[i] == '\n')
			L->lines[k++] = i + 1;
	}
	L->nlines = (unsigned)n;
	return 0;
}

static void parse_file(struct loader *L)
{
	size_t off = 0;
	unsigned line = 0;
	const char *nul = memchr(L->text, '\0', L->len);

	if (nul != NULL) {
		error_at(L, (size_t)(nul - L->text), "NUL byte in the rules file");
		return;
	}
	/* a UTF-8 byte order mark, as some editors write one */
	if (L->len >= 3 && memcmp(L->text, "\xef\xbb\xbf", 3) == 0)
		off = 3;
	while (off < L->len && !L->stop && !L->nomem) {
		const char *s = L->text + off;
		const char *nl = memchr(s, '\n', L->len - off);
		size_t n = nl != NULL ? (size_t)(nl - s) : L->len - off, i;

		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		for (i = 0; i < n && is_blank(s[i]); i++)
			;
		if (i == n) {
			L->cont = -1; /* a blank line ends a value */
		} else if (s[0] == '#' || s[0] == ';') {
			L->cont = -1;
		} else if (i > 0) {
			continuation(L, s, n, off);
		} else if (s[0] == '[') {
			section(L, s, n, off, line);
		} else {
			key_line(L, s, n, off, line);
		}
		off += (nl != NULL ? (size_t)(nl - s) + 1 : L->len - off);
	}
	if (!L->stop)
		finish_rule(L);
}

static int load(const char *name, const char *text, size_t len, enum moat_rules_scope scope,
                const struct moat_rules_limits *lim, moat_rules_report_fn report, void *arg,
                struct moat_ruleset **out)
{
	struct loader L;
	int r = MOAT_EINVAL;
	unsigned k;

	*out = NULL;
	memset(&L, 0, sizeof(L));
	L.name = name != NULL ? name : "<rules>";
	L.text = text != NULL ? text : "";
	L.len = text != NULL ? len : 0;
	L.report = report;
	L.arg = arg;
	L.cont = -1;
	moat_rules_limits_fill(&L.lim, lim);
	L.b = moat_rules_builder_new(scope, &L.lim);
	if (L.b == NULL || index_lines(&L) != 0) {
		r = MOAT_ENOMEM;
		goto out;
	}
	pending_reset(&L);
	parse_file(&L);
	if (L.nomem) {
		if (L.errors == 0)
			error_at(&L, 0, "out of memory");
		r = MOAT_ENOMEM;
		goto out;
	}
	if (L.errors > 0)
		goto out;
	r = moat_rules_builder_finish(L.b, out);
	L.b = NULL;
	if (r != MOAT_OK) {
		error_at(&L, 0, "out of memory");
		r = MOAT_ENOMEM;
	}
out:
	moat_rules_builder_free(L.b);
	for (k = 0; k < K_COUNT; k++)
		moat_free(L.r.text[k].p);
	moat_free(L.lines);
	moat_free(L.seen);
	moat_rules_arena_free(&L.ids);
	/* the contract: any failure to compile is MOAT_EINVAL, whatever the cause */
	return r == MOAT_OK ? MOAT_OK : MOAT_EINVAL;
}

int moat_rules_load_buffer(const char *name, const char *text, size_t len,
                           enum moat_rules_scope scope, const struct moat_rules_limits *lim,
                           moat_rules_report_fn report, void *arg, struct moat_ruleset **out)
{
	return load(name, text, len, scope, lim, report, arg, out);
}

int moat_rules_load_file(const char *path, enum moat_rules_scope scope,
                         const struct moat_rules_limits *lim, moat_rules_report_fn report,
                         void *arg, struct moat_ruleset **out)
{
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0;
	int r;

	*out = NULL;
	f = fopen(path, "rb");
	if (f == NULL)
		return MOAT_EIO;
	for (;;) {
		size_t got;

		if (cap - len < 65536) {
			char *p;

			if (cap >= FILE_MAX) {
				struct moat_rules_error e = {
				        path, 1, 1, NULL, "rules file larger than 64 MiB", ""};

				fclose(f);
				moat_free(text);
				if (report != NULL)
					report(arg, &e);
				return MOAT_EINVAL;
			}
			p = moat_realloc(text, cap + 65536 + 1);
			if (p == NULL) {
				fclose(f);
				moat_free(text);
				return MOAT_EIO;
			}
			text = p;
			cap += 65536;
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fclose(f);
		moat_free(text);
		return MOAT_EIO;
	}
	fclose(f);
	r = load(path, text, len, scope, lim, report, arg, out);
	moat_free(text);
	return r;
}

struct check_ctx {
	const char *expr;
	size_t len;
	size_t *lines;
	unsigned nlines;
	moat_rules_report_fn report;
	void *arg;
};

static void check_error(void *arg, size_t pos, const char *msg)
{
	struct check_ctx *c = arg;
	struct loader L;

	memset(&L, 0, sizeof(L));
	L.name = "<expression>";
	L.text = c->expr;
	L.len = c->len;
	L.lines = c->lines;
	L.nlines = c->nlines;
	L.report = c->report;
	L.arg = c->arg;
	report_at(&L, pos, NULL, msg);
}

int moat_rules_check_expr(const char *expr, enum moat_rules_scope scope,
                          const struct moat_rules_limits *lim, moat_rules_report_fn report,
                          void *arg)
{
	struct moat_rules_limits l;
	struct moat_rules_builder *b;
	struct check_ctx c = {
	        expr != NULL ? expr : "", expr != NULL ? strlen(expr) : 0, NULL, 0, report, arg};
	struct moat_rules_diag d = {check_error, &c, 0};
	struct loader L;
	uint32_t root;
	int r;

	moat_rules_limits_fill(&l, lim);
	memset(&L, 0, sizeof(L));
	L.text = c.expr;
	L.len = c.len;
	b = moat_rules_builder_new(scope, &l);
	if (b == NULL || index_lines(&L) != 0) {
		moat_rules_builder_free(b);
		return MOAT_EINVAL;
	}
	c.lines = L.lines;
	c.nlines = L.nlines;
	r = moat_rules_builder_expr(b, c.expr, c.len, &d, &root);
	moat_rules_builder_free(b);
	moat_free(L.lines);
	return r == MOAT_OK ? MOAT_OK : MOAT_EINVAL;
}

/* Errors of one rule's expression: positions are in the expression, the rule id is given. */
struct build_ctx {
	struct check_ctx c;
	const char *rule_id;
};

static void build_error(void *arg, size_t pos, const char *msg)
{
	struct build_ctx *b = arg;
	struct loader L;

	memset(&L, 0, sizeof(L));
	L.name = "<rule>";
	L.text = b->c.expr;
	L.len = b->c.len;
	L.lines = b->c.lines;
	L.nlines = b->c.nlines;
	L.report = b->c.report;
	L.arg = b->c.arg;
	report_at(&L, pos, b->rule_id, msg);
}

static int build_set(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                     const struct moat_rules_limits *lim, unsigned flags,
                     moat_rules_report_fn report, void *arg, struct moat_ruleset **out)
{
	struct moat_rules_limits l;
	struct moat_rules_builder *b;
	unsigned errors = 0;
	int nomem = 0;

	moat_rules_limits_fill(&l, lim);
	if (n > l.max_rules) {
		struct moat_rules_error e = {"<rules>", 1, 1, NULL, "too many rules", ""};

		if (report != NULL)
			report(arg, &e);
		return MOAT_EINVAL;
	}
	b = moat_rules_builder_new(scope, &l);
	if (b == NULL)
		return MOAT_EINVAL;
	if (flags & MOAT_RULES_BUILD_NO_PREFILTER)
		moat_rules_builder_no_prefilter(b);
	for (size_t i = 0; i < n && !nomem; i++) {
		const char *expr = defs[i].expr != NULL ? defs[i].expr : "";
		struct build_ctx bc = {{expr, strlen(expr), NULL, 0, report, arg}, defs[i].id};
		struct moat_rules_diag d = {build_error, &bc, 0};
		struct loader L;
		uint32_t root;
		int r;

		memset(&L, 0, sizeof(L));
		L.text = expr;
		L.len = bc.c.len;
		if (index_lines(&L) != 0) {
			nomem = 1;
			break;
		}
		bc.c.lines = L.lines;
		bc.c.nlines = L.nlines;
		r = moat_rules_builder_expr(b, expr, bc.c.len, &d, &root);
		if (r == MOAT_OK && moat_rules_builder_rule(b, &defs[i], root) != MOAT_OK)
			nomem = 1;
		else if (r != MOAT_OK)
			errors++;
		moat_free(L.lines);
	}
	if (errors > 0 || nomem || out == NULL) {
		moat_rules_builder_free(b);
		return errors > 0 || nomem ? MOAT_EINVAL : MOAT_OK;
	}
	return moat_rules_builder_finish(b, out) == MOAT_OK ? MOAT_OK : MOAT_EINVAL;
}

int moat_rules_build(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                     const struct moat_rules_limits *lim, moat_rules_report_fn report, void *arg,
                     struct moat_ruleset **out)
{
	*out = NULL;
	return build_set(defs, n, scope, lim, 0, report, arg, out);
}

int moat_rules_build_flags(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                           const struct moat_rules_limits *lim, unsigned flags,
                           moat_rules_report_fn report, void *arg, struct moat_ruleset **out)
{
	*out = NULL;
	return build_set(defs, n, scope, lim, flags, report, arg, out);
}

int moat_rules_check_set(const struct moat_rule *defs, size_t n, enum moat_rules_scope scope,
                         const struct moat_rules_limits *lim, moat_rules_report_fn report,
                         void *arg)
{
	return build_set(defs, n, scope, lim, 0, report, arg, NULL);
}

/* ---- names and messages ------------------------------------------------------------------- */

const char *moat_rule_action_name(enum moat_rule_action a)
{
	switch (a) {
	case MOAT_RULE_BLOCK:
		return "block";
	case MOAT_RULE_LOG:
		return "log";
	case MOAT_RULE_ALLOW:
		return "allow";
	case MOAT_RULE_CLOSE:
		return "close";
	}
	return "?";
}

const char *moat_rule_mode_name(enum moat_rule_mode m)
{
	return m == MOAT_RULE_DRY_RUN ? "dry-run" : "enforce";
}

int moat_rules_error_format(const struct moat_rules_error *e, char *buf, size_t cap)
{
	const char *src = e->source_line != NULL ? e->source_line : "";
	size_t n, i, col = e->col > 0 ? e->col - 1 : 0, srclen = strlen(src);
	int w;

	if (cap == 0)
		return 0;
	if (e->rule_id != NULL)
		w = snprintf(buf, cap, "%s:%u:%u: rule %s: %s\n  %s\n  ", e->file ? e->file : "-",
		             e->line, e->col, e->rule_id, e->msg, src);
	else
		w = snprintf(buf, cap, "%s:%u:%u: %s\n  %s\n  ", e->file ? e->file : "-", e->line,
		             e->col, e->msg, src);
	if (w < 0)
		return 0;
	n = (size_t)w;
	/* the caret under the column: tabs stay tabs so that it lines up */
	for (i = 0; i < col && n + 1 < cap; i++)
		buf[n++] = i < srclen && src[i] == '\t' ? '\t' : ' ';
	if (n + 1 < cap)
		buf[n++] = '^';
	if (n >= cap)
		n = cap - 1;
	buf[n] = '\0';
	return (int)n;
}
