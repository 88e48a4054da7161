/*
 * A tenant's rules (docs/api.md, "Rules"): the virtual patches of tenants made through the
 * API, kept in the store. Every write compiles the tenant's whole rule set of the scope it
 * touches, with the change in place, before anything is saved: a set that would not compile
 * never reaches the store, so building the next generation cannot fail on it.
 *
 * Config tenants keep their rules in the files the config names; they are shown here, from
 * the current generation, read-only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/internal.h"
#include "core/alloc.h"
#include "core/gen.h"
#include "rules/rules.h"

#define RULE_MAX_ID 64
#define RULE_MAX_NAME 200
#define RULE_MAX_EXPR 8192
#define RULE_MAX_BODY 8192
#define RULE_MAX_DESCRIPTION 4096
#define RULE_MAX_REFERENCE 128
#define RULE_MAX_POSITION INT32_MAX
#define RULE_POSITION_STEP 10
#define RULE_MAX_ERRORS 20

static const char *const actions[] = {"block", "log", "allow", "close", NULL};
static const char *const modes[] = {"enforce", "dry-run", NULL};
static const char *const scopes[] = {"http", "tcp", NULL};

static int64_t now_s(const struct moat_admin_call *c)
{
	return c->req->now_ms / 1000;
}

static json_t *json_string_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static void oom(struct moat_admin_call *c)
{
	admin_error(c, 500, "internal", "out of memory");
}

/* admin_reply, or 500 when the answer could not be built. */
static void reply_json(struct moat_admin_call *c, int status, json_t *o)
{
	if (o == NULL)
		oom(c);
	else
		admin_reply(c, status, o);
}

/* Index of s in a NULL-ended list, or -1. */
static int lookup(const char *const *list, const char *s)
{
	for (int i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return i;
	return -1;
}

static enum moat_rules_scope scope_of(const char *scope)
{
	return strcmp(scope, "tcp") == 0 ? MOAT_RULES_TCP : MOAT_RULES_HTTP;
}

static int tx_finish(struct moat_store *s, int rc)
{
	if (rc == MOAT_OK)
		rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		moat_store_rollback(s);
	return rc;
}

/* ---- hit counters of the running generation ------------------------------------------------- */

/* The live rules of one tenant, sorted by id per scope, to find each rule's counters without a
 * scan per rule. The generation is held while the index is used. */
struct hits_index {
	struct moat_gen *g;
	struct moat_tenant *t;
	const struct moat_rule **v[2];
	size_t n[2];
};

static int rule_id_cmp(const void *a, const void *b)
{
	const struct moat_rule *const *x = a, *const *y = b;

	return strcmp((*x)->id, (*y)->id);
}

static void hits_index_open(struct hits_index *h, const char *tenant)
{
	memset(h, 0, sizeof(*h));
	h->g = moat_gen_acquire_current();
	h->t = h->g != NULL ? moat_gen_tenant_by_name(h->g, tenant) : NULL;
	if (h->t == NULL)
		return;
	for (int s = 0; s < 2; s++) {
		const struct moat_ruleset *rs = s == 0 ? h->t->rules : h->t->tcp_rules;
		size_t n = rs != NULL ? moat_ruleset_count(rs) : 0;

		/* no index when out of memory: hits then read 0, nothing worse */
		if (n == 0 || (h->v[s] = moat_calloc(n, sizeof(*h->v[s]))) == NULL)
			continue;
		for (size_t i = 0; i < n; i++)
			h->v[s][i] = moat_ruleset_rule(rs, i);
		qsort(h->v[s], n, sizeof(*h->v[s]), rule_id_cmp);
		h->n[s] = n;
	}
}

static void hits_index_close(struct hits_index *h)
{
	moat_free(h->v[0]);
	moat_free(h->v[1]);
	if (h->g != NULL)
		moat_gen_release(h->g);
	memset(h, 0, sizeof(*h));
}

static json_t *hits_json(uint64_t enforce, uint64_t dry_run)
{
	return json_pack("{s:I, s:I}", "enforce", (json_int_t)enforce, "dry_run",
	                 (json_int_t)dry_run);
}

static json_t *hits_of(const struct hits_index *h, const char *scope, const char *id)
{
	int s = scope_of(scope) == MOAT_RULES_TCP;
	struct moat_rule key;
	const struct moat_rule *kp = &key, *const * found;

	snprintf(key.id, sizeof(key.id), "%s", id);
	found = h->n[s] ? bsearch(&kp, h->v[s], h->n[s], sizeof(*h->v[s]), rule_id_cmp) : NULL;
	if (found == NULL)
		return hits_json(0, 0);
	return hits_json(atomic_load_explicit(&(*found)->hits_enforce, memory_order_relaxed),
	                 atomic_load_explicit(&(*found)->hits_dry_run, memory_order_relaxed));
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static json_t *rule_json(const struct moat_store_rule *r, const struct hits_index *h)
{
	json_t *o = json_object();
	int block = strcmp(r->action, "block") == 0;

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "name", json_string(r->name));
	json_object_set_new(o, "expr", json_string(r->expr));
	json_object_set_new(o, "action", json_string(r->action));
	json_object_set_new(o, "mode", json_string(r->mode));
	json_object_set_new(o, "scope", json_string(r->scope));
	/* the status a block answers with, also when it is the default */
	json_object_set_new(o, "status",
	                    block ? json_integer(r->status ? r->status : 403) : json_null());
	json_object_set_new(o, "body", json_string_or_null(r->body));
	json_object_set_new(o, "description", json_string_or_null(r->description));
	json_object_set_new(o, "reference", json_string_or_null(r->reference));
	json_object_set_new(o, "enabled", json_boolean(r->enabled));
	json_object_set_new(o, "position", json_integer(r->position));
	json_object_set_new(o, "hits", hits_of(h, r->scope, r->id));
	json_object_set_new(o, "created_at", admin_time(r->created_at));
	json_object_set_new(o, "updated_at", admin_time(r->updated_at));
	return o;
}

/* A compiled rule of a config tenant, at `position` (1-based) in its file's order. */
static json_t *live_rule_json(const struct moat_rule *r, const char *scope, size_t position)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "name", json_string_or_null(r->name));
	json_object_set_new(o, "expr", json_string_or_null(r->expr));
	json_object_set_new(o, "action", json_string(moat_rule_action_name(r->action)));
	json_object_set_new(o, "mode", json_string(moat_rule_mode_name(r->mode)));
	json_object_set_new(o, "scope", json_string(scope));
	json_object_set_new(o, "status",
	                    r->action == MOAT_RULE_BLOCK ? json_integer(r->status) : json_null());
	json_object_set_new(o, "body", json_string_or_null(r->body));
	json_object_set_new(o, "description", json_string_or_null(r->description));
	json_object_set_new(o, "reference", json_string_or_null(r->reference));
	json_object_set_new(o, "enabled", json_boolean(r->enabled));
	json_object_set_new(o, "position", json_integer((json_int_t)position));
	json_object_set_new(
	        o, "hits",
	        hits_json(atomic_load_explicit(&r->hits_enforce, memory_order_relaxed),
	                  atomic_load_explicit(&r->hits_dry_run, memory_order_relaxed)));
	json_object_set_new(o, "created_at", json_null());
	json_object_set_new(o, "updated_at", json_null());
	json_object_set_new(o, "source", json_string("config"));
	return o;
}

/* Every live rule of a config tenant (id NULL) or the one with that id, appended to items. */
static void live_rules(const char *tenant, const char *id, json_t *items)
{
	struct moat_gen *g = moat_gen_acquire_current();
	struct moat_tenant *t = g != NULL ? moat_gen_tenant_by_name(g, tenant) : NULL;

	for (int s = 0; t != NULL && s < 2; s++) {
		const struct moat_ruleset *rs = s == 0 ? t->rules : t->tcp_rules;
		size_t n = rs != NULL ? moat_ruleset_count(rs) : 0;

		for (size_t i = 0; i < n; i++) {
			const struct moat_rule *r = moat_ruleset_rule(rs, i);

			if (id == NULL || strcmp(r->id, id) == 0)
				json_array_append_new(items, live_rule_json(r, scopes[s], i + 1));
		}
	}
	if (g != NULL)
		moat_gen_release(g);
}

/* ---- compiling ------------------------------------------------------------------------------ */

/* Compile errors gathered for a 422 answer. */
struct rule_errors {
	json_t *items;
	const char *self; /* the rule being written: its errors need no rule id */
	char detail[512];
	unsigned n;
};

/* The offending line, then a caret under the column; tabs are kept so that it lines up. */
static json_t *caret_json(const struct moat_rules_error *e)
{
	const char *src = e->source_line != NULL ? e->source_line : "";
	size_t len = strlen(src), col = e->col > 0 ? e->col - 1 : 0;
	char *buf = moat_malloc(len + col + 3);
	json_t *j;
	size_t k = len;

	if (buf == NULL)
		return NULL;
	memcpy(buf, src, len);
	buf[k++] = '\n';
	for (size_t i = 0; i < col; i++)
		buf[k++] = i < len && src[i] == '\t' ? '\t' : ' ';
	buf[k++] = '^';
	j = json_stringn(buf, k);
	moat_free(buf);
	return j;
}

static void collect_error(void *arg, const struct moat_rules_error *e)
{
	struct rule_errors *x = arg;
	int other = e->rule_id != NULL && (x->self == NULL || strcmp(e->rule_id, x->self) != 0);
	json_t *o;

	if (x->n++ == 0) {
		if (other)
			snprintf(x->detail, sizeof(x->detail), "rule %s: %u:%u: %s", e->rule_id,
			         e->line, e->col, e->msg);
		else
			snprintf(x->detail, sizeof(x->detail), "%u:%u: %s", e->line, e->col,
			         e->msg);
	}
	if (x->items == NULL || json_array_size(x->items) >= RULE_MAX_ERRORS)
		return;
	o = json_pack("{s:i, s:i, s:s}", "line", (int)e->line, "col", (int)e->col, "message",
	              e->msg);
	if (o == NULL)
		return;
	json_object_set_new(o, "caret", caret_json(e));
	/* an error in another rule of the set (say, after a change in the language) is named */
	if (other)
		json_object_set_new(o, "rule", json_string(e->rule_id));
	json_array_append_new(x->items, o);
}

/* Answers 422 with what was collected, or 500 if compilation failed without a reason (out of
 * memory). */
static void reply_invalid(struct moat_admin_call *c, struct rule_errors *x)
{
	json_t *o;

	if (x->n == 0 || x->items == NULL) {
		json_decref(x->items);
		admin_error(c, 500, "internal", "cannot compile the rules");
		return;
	}
	o = json_pack("{s:s, s:s, s:o}", "error", "invalid_rule", "detail", x->detail, "errors",
	              x->items);
	x->items = NULL;
	if (o == NULL) {
		oom(c);
		return;
	}
	admin_reply(c, 422, o);
}

static void def_from_record(struct moat_rule *d, const struct moat_store_rule *r)
{
	snprintf(d->id, sizeof(d->id), "%s", r->id);
	d->name = r->name;
	d->description = r->description;
	d->reference = r->reference;
	d->expr = r->expr;
	d->action = (enum moat_rule_action)lookup(actions, r->action);
	d->mode = (enum moat_rule_mode)lookup(modes, r->mode);
	d->status = r->status != 0 ? r->status : 403;
	d->body = r->body;
	d->enabled = r->enabled;
	d->line = 1;
}

/*
 * Compiles the tenant's rules of the changed rule's scope as they will be after the change:
 * `all` (the stored rules) with `changed` put in place of the rule of its id. A rule that
 * leaves a scope cannot break the set it leaves, so only one scope is compiled. -1 after
 * answering (422 with the errors, or 500).
 */
static int compile_with(struct moat_admin_call *c, const struct moat_store_rule *all, size_t n,
                        const struct moat_store_rule *changed)
{
	struct rule_errors x = {json_array(), changed->id, "", 0};
	struct moat_rules_limits lim;
	struct moat_rule *defs = moat_calloc(n + 1, sizeof(*defs));
	size_t k = 0;
	int rc;

	if (defs == NULL || x.items == NULL) {
		moat_free(defs);
		json_decref(x.items);
		oom(c);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].scope, changed->scope) == 0 &&
		    strcmp(all[i].id, changed->id) != 0)
			def_from_record(&defs[k++], &all[i]);
	def_from_record(&defs[k++], changed);
	/* zero limits are the defaults; the body limit only sizes buffers at run time */
	memset(&lim, 0, sizeof(lim));
	rc = moat_rules_check_set(defs, k, scope_of(changed->scope), &lim, collect_error, &x);
	moat_free(defs);
	if (rc == MOAT_OK) {
		json_decref(x.items);
		return 0;
	}
	reply_invalid(c, &x);
	return -1;
}

/* ---- request fields ------------------------------------------------------------------------- */

static int set_owned(struct moat_admin_call *c, char **field, const char *s)
{
	char *copy = NULL;

	if (s != NULL && (copy = moat_strdup(s)) == NULL) {
		oom(c);
		return -1;
	}
	moat_free(*field);
	*field = copy;
	return 0;
}

/* A string field: absent leaves *field, null clears it (if nullable, else 400), a valid string
 * replaces it. -1 after answering. */
static int take_string(struct moat_admin_call *c, const char *key, size_t maxlen, int syntax,
                       int nullable, char **field)
{
	json_t *v = json_object_get(c->body, key);
	const char *s = NULL;

	if (v == NULL)
		return 0;
	if (json_is_null(v)) {
		if (nullable)
			return set_owned(c, field, NULL);
		admin_error(c, 400, "bad_request", "%s cannot be null", key);
		return -1;
	}
	if (admin_body_string(c, key, maxlen, syntax, 0, &s) < 0)
		return -1;
	return set_owned(c, field, s);
}

/* "a, b, c" of a NULL-ended list, for messages. */
static void join(const char *const *list, char *buf, size_t cap)
{
	size_t k = 0;

	buf[0] = '\0';
	for (int i = 0; list[i] != NULL && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", list[i]);
}

/* One of `values`, as take_string otherwise (never null). */
static int take_enum(struct moat_admin_call *c, const char *key, const char *const *values,
                     char **field)
{
	json_t *v = json_object_get(c->body, key);
	char names[64];

	if (v != NULL && json_is_string(v) && lookup(values, json_string_value(v)) < 0) {
		join(values, names, sizeof(names));
		admin_error(c, 400, "bad_request", "%s must be one of %s", key, names);
		return -1;
	}
	return take_string(c, key, 16, ADMIN_SYNTAX_TEXT, 0, field);
}

/*
 * Applies the body's fields (all but id) to r. status and body belong to block: giving them
 * to another action is refused, and a change of action away from block drops them.
 */
static int take_rule_fields(struct moat_admin_call *c, struct moat_store_rule *r)
{
	json_t *status = json_object_get(c->body, "status");
	int64_t v;

	if (take_string(c, "name", RULE_MAX_NAME, ADMIN_SYNTAX_TEXT, 0, &r->name) < 0 ||
	    take_string(c, "expr", RULE_MAX_EXPR, ADMIN_SYNTAX_PEM, 0, &r->expr) < 0 ||
	    take_enum(c, "action", actions, &r->action) < 0 ||
	    take_enum(c, "mode", modes, &r->mode) < 0 ||
	    take_enum(c, "scope", scopes, &r->scope) < 0 ||
	    take_string(c, "body", RULE_MAX_BODY, ADMIN_SYNTAX_PEM, 1, &r->body) < 0 ||
	    take_string(c, "description", RULE_MAX_DESCRIPTION, ADMIN_SYNTAX_PEM, 1,
	                &r->description) < 0 ||
	    take_string(c, "reference", RULE_MAX_REFERENCE, ADMIN_SYNTAX_TEXT, 1, &r->reference) <
	            0 ||
	    admin_body_bool(c, "enabled", &r->enabled) < 0)
		return -1;
	if (status != NULL && json_is_null(status)) {
		r->status = 0;
	} else if (status != NULL) {
		if (admin_body_int(c, "status", 100, 599, &v) < 0)
			return -1;
		r->status = (int)v;
	}
	v = r->position;
	if (json_object_get(c->body, "position") != NULL &&
	    admin_body_int(c, "position", 1, RULE_MAX_POSITION, &v) < 0)
		return -1;
	r->position = v;
	if (strcmp(r->action, "block") != 0) {
		int given = (status != NULL && !json_is_null(status)) ||
		            (json_object_get(c->body, "body") != NULL && r->body != NULL);

		if (given) {
			admin_error(c, 400, "bad_request", "status and body apply only to block");
			return -1;
		}
		r->status = 0;
		moat_free(r->body);
		r->body = NULL;
	}
	if (r->expr == NULL || r->expr[0] == '\0') {
		admin_error(c, 400, "bad_request", "expr is required");
		return -1;
	}
	return 0;
}

/* ---- ids ------------------------------------------------------------------------------------ */

static int id_taken(const struct moat_store_rule *all, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].id, id) == 0)
			return 1;
	return 0;
}

static int id_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
	       ch == ':';
}

/* The id a name gives: lower-cased, every run of other characters one '-', none at the ends,
 * at most 64 bytes. */
static void id_from_name(const char *name, char out[RULE_MAX_ID + 1])
{
	size_t n = 0;
	int dash = 1; /* no '-' at the start */

	for (const unsigned char *p = (const unsigned char *)name; *p && n < RULE_MAX_ID; p++) {
		unsigned char ch = *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p - 'A' + 'a') : *p;

		if (id_char(ch)) {
			out[n++] = (char)ch;
			dash = 0;
		} else if (!dash) {
			out[n++] = '-';
			dash = 1;
		}
	}
	while (n > 0 && out[n - 1] == '-')
		n--;
	if (n == 0) {
		snprintf(out, RULE_MAX_ID + 1, "rule");
		return;
	}
	out[n] = '\0';
}

/* A free id made from the name: the name's own, else with "-2", "-3", ... (the base cut to
 * keep 64 bytes). */
static void id_unique(const struct moat_store_rule *all, size_t n, const char *name,
                      char out[RULE_MAX_ID + 1])
{
	char base[RULE_MAX_ID + 1], suffix[24];

	id_from_name(name, base);
	snprintf(out, RULE_MAX_ID + 1, "%s", base);
	for (unsigned k = 2; id_taken(all, n, out); k++) {
		size_t keep;

		snprintf(suffix, sizeof(suffix), "-%u", k);
		keep = strlen(base);
		if (keep + strlen(suffix) > RULE_MAX_ID)
			keep = RULE_MAX_ID - strlen(suffix);
		snprintf(out, RULE_MAX_ID + 1, "%.*s%s", (int)keep, base, suffix);
	}
}

static int64_t next_position(const struct moat_store_rule *all, size_t n)
{
	int64_t last = 0;

	for (size_t i = 0; i < n; i++)
		if (all[i].position > last)
			last = all[i].position;
	return last + RULE_POSITION_STEP;
}

/* ---- saving --------------------------------------------------------------------------------- */

/* Answers with the rule as stored now; after a commit a failing re-read shows r instead. */
static void reply_rule(struct moat_admin_call *c, int status, const struct moat_store_rule *r)
{
	struct moat_store_rule fresh;
	struct hits_index h;
	int have;
	json_t *o;

	memset(&fresh, 0, sizeof(fresh));
	have = moat_store_rule_get(c->ctx->env.store, r->tenant, r->id, &fresh) == MOAT_OK;
	hits_index_open(&h, r->tenant);
	o = rule_json(have ? &fresh : r, &h);
	hits_index_close(&h);
	if (have)
		moat_store_rule_clear(&fresh);
	if (o == NULL) {
		oom(c);
		return;
	}
	admin_reply(c, status, o);
}

enum save_op { SAVE_INSERT, SAVE_UPDATE, SAVE_DELETE };

/* One write with its audit entry, in one transaction; answers 409 / 500 on failure. */
static int save_rule(struct moat_admin_call *c, enum save_op op, const struct moat_store_rule *r,
                     const char *action, json_t *detail)
{
	struct moat_store *s = c->ctx->env.store;
	char object[160];
	int rc;

	snprintf(object, sizeof(object), "%s/%s", r->tenant, r->id);
	rc = moat_store_begin(s);
	if (rc != MOAT_OK) {
		json_decref(detail);
		admin_store_error(c, rc);
		return -1;
	}
	if (op == SAVE_INSERT)
		rc = moat_store_rule_insert(s, r);
	else if (op == SAVE_UPDATE)
		rc = moat_store_rule_update(s, r);
	else
		rc = moat_store_rule_delete(s, r->tenant, r->id);
	if (rc == MOAT_OK)
		rc = admin_audit(c, action, r->tenant, object, detail);
	else
		json_decref(detail);
	rc = tx_finish(s, rc);
	if (rc == MOAT_EEXIST) {
		admin_error(c, 409, "conflict", "rule %s already exists in tenant %s", r->id,
		            r->tenant);
		return -1;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return -1;
	}
	admin_tenant_changed(c, r->tenant, MOAT_ADMIN_CHANGED_RULES);
	admin_changed(c);
	return 0;
}

static int load_all(struct moat_admin_call *c, const char *tenant, struct moat_store_rule **all,
                    size_t *n)
{
	int rc = moat_store_rule_list(c->ctx->env.store, tenant, all, n);

	if (rc != MOAT_OK) {
		*all = NULL;
		*n = 0;
		admin_store_error(c, rc);
		return -1;
	}
	return 0;
}

/* The rule of the path ({t}/{id}); -1 after answering 404 / 500. */
static int load_rule(struct moat_admin_call *c, struct moat_store_rule *r)
{
	int rc = moat_store_rule_get(c->ctx->env.store, c->params[0], c->params[1], r);

	if (rc == MOAT_ENOTFOUND) {
		admin_error(c, 404, "not_found", "no rule %s in tenant %s", c->params[1],
		            c->params[0]);
		return -1;
	}
	if (rc != MOAT_OK) {
		admin_store_error(c, rc);
		return -1;
	}
	return 0;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static const char *const rule_fields[] = {"id",      "name",     "expr", "action",      "mode",
                                          "scope",   "status",   "body", "description", "reference",
                                          "enabled", "position", NULL};

/* The defaults of a new rule, before the body's fields. */
static int rule_defaults(struct moat_admin_call *c, struct moat_store_rule *r)
{
	memset(r, 0, sizeof(*r));
	r->enabled = 1;
	if (set_owned(c, &r->tenant, c->params[0]) < 0 || set_owned(c, &r->action, "block") < 0 ||
	    set_owned(c, &r->mode, "enforce") < 0 || set_owned(c, &r->scope, "http") < 0)
		return -1;
	return 0;
}

void admin_rule_create(struct moat_admin_call *c)
{
	const char *tenant = c->params[0], *id = NULL;
	struct moat_store_rule r, *all = NULL;
	char made[RULE_MAX_ID + 1];
	size_t n = 0;
	int read_only = 0, rc;

	memset(&r, 0, sizeof(r));
	if (admin_tenant(c, tenant, 1, NULL, &read_only) < 0 ||
	    admin_body_check(c, rule_fields, 0) < 0 || rule_defaults(c, &r) < 0)
		goto out;
	rc = admin_body_string(c, "id", RULE_MAX_ID, ADMIN_SYNTAX_RULE_ID, 0, &id);
	if (rc < 0 || take_rule_fields(c, &r) < 0)
		goto out;
	if (id == NULL && r.name == NULL) {
		admin_error(c, 400, "bad_request", "name is required");
		goto out;
	}
	if (load_all(c, tenant, &all, &n) < 0)
		goto out;
	if (id != NULL && id_taken(all, n, id)) {
		admin_error(c, 409, "conflict", "rule %s already exists in tenant %s", id, tenant);
		goto out;
	}
	if (id == NULL) {
		id_unique(all, n, r.name, made);
		id = made;
	}
	/* a rule given only an id is named after it */
	if (set_owned(c, &r.id, id) < 0 || (r.name == NULL && set_owned(c, &r.name, id) < 0))
		goto out;
	if (r.position == 0)
		r.position = next_position(all, n);
	r.created_at = r.updated_at = now_s(c);
	if (compile_with(c, all, n, &r) < 0)
		goto out;
	if (save_rule(c, SAVE_INSERT, &r, "rule.create",
	              json_pack("{s:s, s:s, s:s, s:s}", "expr", r.expr, "action", r.action, "mode",
	                        r.mode, "scope", r.scope)) == 0)
		reply_rule(c, 201, &r);
out:
	moat_store_rules_free(all, n);
	moat_store_rule_clear(&r);
}

void admin_rule_list(struct moat_admin_call *c)
{
	const char *tenant = c->params[0];
	struct moat_store_rule *all = NULL;
	struct hits_index h;
	size_t n = 0;
	int read_only = 0;
	json_t *items;

	if (admin_tenant(c, tenant, 0, NULL, &read_only) < 0)
		return;
	items = json_array();
	if (items == NULL) {
		oom(c);
		return;
	}
	if (read_only) {
		live_rules(tenant, NULL, items);
		reply_json(c, 200, json_pack("{s:o}", "items", items));
		return;
	}
	if (load_all(c, tenant, &all, &n) < 0) {
		json_decref(items);
		return;
	}
	hits_index_open(&h, tenant);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(items, rule_json(&all[i], &h));
	hits_index_close(&h);
	moat_store_rules_free(all, n);
	reply_json(c, 200, json_pack("{s:o}", "items", items));
}

void admin_rule_get(struct moat_admin_call *c)
{
	struct moat_store_rule r;
	int read_only = 0;

	memset(&r, 0, sizeof(r));
	if (admin_tenant(c, c->params[0], 0, NULL, &read_only) < 0)
		return;
	if (read_only) {
		json_t *items = json_array();

		live_rules(c->params[0], c->params[1], items);
		if (json_array_size(items) == 0)
			admin_error(c, 404, "not_found", "no rule %s in tenant %s", c->params[1],
			            c->params[0]);
		else
			admin_reply(c, 200, json_incref(json_array_get(items, 0)));
		json_decref(items);
		return;
	}
	if (load_rule(c, &r) < 0)
		return;
	reply_rule(c, 200, &r);
	moat_store_rule_clear(&r);
}

/* Compiles and saves a changed rule r with its audit entry, then answers with it. */
static void update_rule(struct moat_admin_call *c, struct moat_store_rule *r, const char *action,
                        json_t *detail)
{
	struct moat_store_rule *all = NULL;
	size_t n = 0;

	if (load_all(c, r->tenant, &all, &n) < 0) {
		json_decref(detail);
		return;
	}
	r->updated_at = now_s(c);
	if (compile_with(c, all, n, r) < 0)
		json_decref(detail);
	else if (save_rule(c, SAVE_UPDATE, r, action, detail) == 0)
		reply_rule(c, 200, r);
	moat_store_rules_free(all, n);
}

void admin_rule_update(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"name",      "expr",    "action",   "mode",
	                                      "scope",     "status",  "body",     "description",
	                                      "reference", "enabled", "position", NULL};
	struct moat_store_rule r;
	int read_only = 0;

	memset(&r, 0, sizeof(r));
	if (admin_tenant(c, c->params[0], 1, NULL, &read_only) < 0 || load_rule(c, &r) < 0)
		return;
	if (admin_body_check(c, allowed, 0) == 0 && take_rule_fields(c, &r) == 0)
		update_rule(c, &r, "rule.update", json_deep_copy(c->body));
	moat_store_rule_clear(&r);
}

static void set_enabled(struct moat_admin_call *c, int enabled)
{
	static const char *const allowed[] = {NULL};
	struct moat_store_rule r;
	int read_only = 0;

	memset(&r, 0, sizeof(r));
	if (admin_tenant(c, c->params[0], 1, NULL, &read_only) < 0 || load_rule(c, &r) < 0)
		return;
	if (admin_body_check(c, allowed, 1) < 0) {
		moat_store_rule_clear(&r);
		return;
	}
	if (r.enabled == enabled) {
		reply_rule(c, 200, &r); /* already so: nothing to write */
	} else {
		r.enabled = enabled;
		update_rule(c, &r, enabled ? "rule.enable" : "rule.disable", NULL);
	}
	moat_store_rule_clear(&r);
}

void admin_rule_enable(struct moat_admin_call *c)
{
	set_enabled(c, 1);
}

void admin_rule_disable(struct moat_admin_call *c)
{
	set_enabled(c, 0);
}

void admin_rule_delete(struct moat_admin_call *c)
{
	struct moat_store_rule r;
	int read_only = 0;

	memset(&r, 0, sizeof(r));
	if (admin_tenant(c, c->params[0], 1, NULL, &read_only) < 0 || load_rule(c, &r) < 0)
		return;
	/* removing a rule cannot make the rest fail to compile: nothing to check */
	if (save_rule(c, SAVE_DELETE, &r, "rule.delete", NULL) == 0)
		admin_no_content(c);
	moat_store_rule_clear(&r);
}

void admin_rule_validate(struct moat_admin_call *c)
{
	static const char *const allowed[] = {"expr", "scope", NULL};
	struct rule_errors x = {NULL, NULL, "", 0};
	struct moat_rules_limits lim;
	char *scope = NULL;
	const char *expr = NULL;
	int read_only = 0, rc;

	if (admin_tenant(c, c->params[0], 0, NULL, &read_only) < 0 ||
	    admin_body_check(c, allowed, 0) < 0)
		return;
	rc = admin_body_string(c, "expr", RULE_MAX_EXPR, ADMIN_SYNTAX_PEM, 0, &expr);
	if (rc == 0)
		admin_error(c, 400, "bad_request", "expr is required");
	if (rc <= 0 || take_enum(c, "scope", scopes, &scope) < 0)
		goto out;
	x.items = json_array();
	if (x.items == NULL) {
		oom(c);
		goto out;
	}
	memset(&lim, 0, sizeof(lim));
	rc = moat_rules_check_expr(expr, scope_of(scope != NULL ? scope : "http"), &lim,
	                           collect_error, &x);
	if (rc == MOAT_OK) {
		json_decref(x.items);
		reply_json(c, 200, json_pack("{s:b}", "valid", 1));
	} else {
		reply_invalid(c, &x);
	}
out:
	moat_free(scope);
}
