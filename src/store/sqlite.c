/*
 * The embedded store backend: one SQLite database in WAL mode, used by the control thread
 * alone (so the connection is opened without SQLite's own mutexes).
 *
 * Statements are prepared once, on first use, and kept for the life of the store; a call
 * binds, steps and resets. Every write goes through write_begin/write_end: on its own it is a
 * transaction (BEGIN IMMEDIATE ... COMMIT), and inside the caller's transaction it is a
 * savepoint, so a write that fails halfway leaves nothing behind while the caller's earlier
 * writes stay.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "core/alloc.h"
#include "store/migrations.h"
#include "store/store.h"

#define BUSY_TIMEOUT_MS 5000
#define PAGE_MAX 1000 /* the largest page of a device or audit list */

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_TENANT_INSERT,
	ST_TENANT_UPDATE,
	ST_TENANT_DELETE,
	ST_TENANT_GET,
	ST_TENANT_LIST,
	ST_CA_INSERT,
	ST_CA_DELETE,
	ST_CA_LIST,
	ST_DEVICE_INSERT,
	ST_DEVICE_UPDATE,
	ST_DEVICE_DELETE,
	ST_DEVICE_GET,
	ST_DEVICE_COUNT,
	ST_DEVICE_EACH,
	ST_TAG_INSERT,
	ST_TAG_DELETE,
	ST_TAG_GET,
	ST_TAG_EACH,
	ST_CERT_INSERT,
	ST_CERT_LIST,
	ST_CERT_REVOKE,
	ST_CERT_EACH_REVOKED,
	ST_RULE_LAST_POSITION,
	ST_RULE_INSERT,
	ST_RULE_UPDATE,
	ST_RULE_DELETE,
	ST_RULE_GET,
	ST_RULE_LIST,
	ST_TOKEN_INSERT,
	ST_TOKEN_DELETE,
	ST_TOKEN_GET,
	ST_TOKEN_LIST_ALL,
	ST_TOKEN_LIST_TENANT,
	ST_TOKEN_TOUCH,
	ST_TOKEN_COUNT_OPERATOR,
	ST_AUDIT_ADD,
	ST_AUDIT_LIST_ALL,
	ST_AUDIT_LIST_TENANT,
	ST_COUNT
};

/* Column lists: the record fill functions below read them by position. */
#define TENANT_COLS                                                                                \
	"name, hosts, origin, tcp_origin, origin_ca, quarantine_allow, server_cert, "              \
	"server_key_file, server_cert_generated, created_at, updated_at"
#define CA_COLS "id, tenant, cert, key_file, subject, fingerprint, not_after, generated, created_at"
#define DEVICE_COLS "tenant, id, model, firmware, owner, state, created_at, updated_at"
#define DEVICE_COLS_D                                                                              \
	"d.tenant, d.id, d.model, d.firmware, d.owner, d.state, d.created_at, d.updated_at"
#define CERT_COLS "fingerprint, tenant, device, serial, not_after, issued_at, revoked_at"
#define RULE_COLS                                                                                  \
	"tenant, id, position, name, expr, action, mode, scope, status, body, description, "       \
	"reference, enabled, created_at, updated_at"
#define TOKEN_COLS "id, name, tenant, hash, created_at, last_used_at"
#define AUDIT_COLS "seq, at, actor, source, tenant, action, object, detail"

static const char *const stmt_sql[ST_COUNT] = {
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_SAVEPOINT] = "SAVEPOINT moat_write",
        [ST_RELEASE] = "RELEASE moat_write",
        [ST_ROLLBACK_TO] = "ROLLBACK TO moat_write",

        [ST_TENANT_INSERT] = "INSERT INTO tenants (" TENANT_COLS ") "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        [ST_TENANT_UPDATE] = "UPDATE tenants SET hosts = ?2, origin = ?3, tcp_origin = ?4, "
                             "origin_ca = ?5, quarantine_allow = ?6, server_cert = ?7, "
                             "server_key_file = ?8, server_cert_generated = ?9, updated_at = ?10 "
                             "WHERE name = ?1",
        [ST_TENANT_DELETE] = "DELETE FROM tenants WHERE name = ?1",
        [ST_TENANT_GET] = "SELECT " TENANT_COLS " FROM tenants WHERE name = ?1",
        [ST_TENANT_LIST] = "SELECT " TENANT_COLS " FROM tenants ORDER BY name",

        [ST_CA_INSERT] =
                "INSERT INTO cas (tenant, cert, key_file, subject, fingerprint, "
                "not_after, generated, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        [ST_CA_DELETE] = "DELETE FROM cas WHERE tenant = ?1 AND id = ?2",
        [ST_CA_LIST] = "SELECT " CA_COLS " FROM cas WHERE tenant = ?1 ORDER BY id",

        [ST_DEVICE_INSERT] = "INSERT INTO devices (" DEVICE_COLS ") "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        [ST_DEVICE_UPDATE] =
                "UPDATE devices SET model = ?3, firmware = ?4, owner = ?5, state = ?6, "
                "updated_at = ?7 WHERE tenant = ?1 AND id = ?2",
        [ST_DEVICE_DELETE] = "DELETE FROM devices WHERE tenant = ?1 AND id = ?2",
        [ST_DEVICE_GET] = "SELECT " DEVICE_COLS " FROM devices WHERE tenant = ?1 AND id = ?2",
        [ST_DEVICE_COUNT] = "SELECT count(*) FROM devices WHERE tenant = ?1",
        [ST_DEVICE_EACH] = "SELECT " DEVICE_COLS " FROM devices WHERE tenant = ?1 ORDER BY id",
        /* a tag given twice is kept once: tags are a set that remembers its order */
        [ST_TAG_INSERT] = "INSERT OR IGNORE INTO device_tags (tenant, device, pos, tag) "
                          "VALUES (?1, ?2, ?3, ?4)",
        [ST_TAG_DELETE] = "DELETE FROM device_tags WHERE tenant = ?1 AND device = ?2",
        [ST_TAG_GET] = "SELECT tag FROM device_tags WHERE tenant = ?1 AND device = ?2 ORDER BY pos",
        [ST_TAG_EACH] = "SELECT device, tag FROM device_tags WHERE tenant = ?1 "
                        "ORDER BY device, pos",

        [ST_CERT_INSERT] = "INSERT INTO certs (" CERT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [ST_CERT_LIST] = "SELECT " CERT_COLS " FROM certs WHERE tenant = ?1 AND device = ?2 "
                         "ORDER BY issued_at DESC, rowid DESC",
        [ST_CERT_REVOKE] = "UPDATE certs SET revoked_at = ?3 "
                           "WHERE tenant = ?1 AND device = ?2 AND revoked_at = 0",
        /* "revoked_at <> 0" as written in the partial index certs_revoked, so that it is used */
        [ST_CERT_EACH_REVOKED] = "SELECT " CERT_COLS " FROM certs "
                                 "WHERE tenant = ?1 AND revoked_at <> 0 ORDER BY fingerprint",

        [ST_RULE_LAST_POSITION] = "SELECT coalesce(max(position), 0) FROM rules WHERE tenant = ?1",
        [ST_RULE_INSERT] =
                "INSERT INTO rules (" RULE_COLS ") "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
        [ST_RULE_UPDATE] = "UPDATE rules SET position = ?3, name = ?4, expr = ?5, action = ?6, "
                           "mode = ?7, scope = ?8, status = ?9, body = ?10, description = ?11, "
                           "reference = ?12, enabled = ?13, updated_at = ?14 "
                           "WHERE tenant = ?1 AND id = ?2",
        [ST_RULE_DELETE] = "DELETE FROM rules WHERE tenant = ?1 AND id = ?2",
        [ST_RULE_GET] = "SELECT " RULE_COLS " FROM rules WHERE tenant = ?1 AND id = ?2",
        [ST_RULE_LIST] = "SELECT " RULE_COLS " FROM rules WHERE tenant = ?1 ORDER BY position, id",

        [ST_TOKEN_INSERT] = "INSERT INTO tokens (" TOKEN_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        [ST_TOKEN_DELETE] = "DELETE FROM tokens WHERE id = ?1",
        [ST_TOKEN_GET] = "SELECT " TOKEN_COLS " FROM tokens WHERE id = ?1",
        [ST_TOKEN_LIST_ALL] = "SELECT " TOKEN_COLS " FROM tokens ORDER BY created_at, rowid",
        [ST_TOKEN_LIST_TENANT] = "SELECT " TOKEN_COLS " FROM tokens WHERE tenant = ?1 "
                                 "ORDER BY created_at, rowid",
        [ST_TOKEN_TOUCH] = "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
        [ST_TOKEN_COUNT_OPERATOR] = "SELECT count(*) FROM tokens WHERE tenant IS NULL",

        [ST_AUDIT_ADD] = "INSERT INTO audit (at, actor, source, tenant, action, object, detail) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [ST_AUDIT_LIST_ALL] = "SELECT " AUDIT_COLS " FROM audit WHERE seq < ?2 "
                              "ORDER BY seq DESC LIMIT ?3",
        [ST_AUDIT_LIST_TENANT] = "SELECT " AUDIT_COLS " FROM audit WHERE tenant = ?1 AND seq < ?2 "
                                 "ORDER BY seq DESC LIMIT ?3",
};

/* Device list filters: each combination has its own statement, so that SQLite can pick the
 * index that fits (a generic "?3 IS NULL OR state = ?3" would defeat every index). */
enum {
	FILTER_STATE = 1,
	FILTER_MODEL = 2,
	FILTER_FIRMWARE = 4,
	FILTER_TAG = 8,
	FILTER_VARIANTS = 16,
};

struct moat_store {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[ST_COUNT];
	sqlite3_stmt *device_list[FILTER_VARIANTS];
	int version;
	int in_txn; /* between moat_store_begin and commit or rollback */
	int txn_wrote; /* a write of the open transaction succeeded */
	int fail; /* moat_store_fail */
	uint64_t changes;
	char err[512];
};

/* ---- errors ------------------------------------------------------------------------------- */

static int store_err(struct moat_store *s, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int store_err(struct moat_store *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return rc;
}

static int no_memory(struct moat_store *s)
{
	return store_err(s, MOAT_ENOMEM, "out of memory");
}

static int injected(struct moat_store *s)
{
	return store_err(s, MOAT_EIO, "store failure injected by a test");
}

static int result_of(int code)
{
	switch (code) {
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_ROWID:
		return MOAT_EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		/* what the row belongs to (its tenant, its device) does not exist */
		return MOAT_ENOTFOUND;
	case SQLITE_CONSTRAINT_NOTNULL:
	case SQLITE_CONSTRAINT_CHECK:
		return MOAT_EINVAL;
	default:
		break;
	}
	return (code & 0xff) == SQLITE_NOMEM ? MOAT_ENOMEM : MOAT_EIO;
}

/* A failed SQLite call: our result code for it, with SQLite's message. */
static int db_err(struct moat_store *s, int code)
{
	return store_err(s, result_of(code), "%s", sqlite3_errmsg(s->db));
}

/* Binding fails only for a value too large or out of memory; SQLite records which. */
static int bind_err(struct moat_store *s)
{
	return db_err(s, sqlite3_extended_errcode(s->db));
}

/* ---- statements --------------------------------------------------------------------------- */

static int stmt(struct moat_store *s, enum stmt_id id, sqlite3_stmt **out)
{
	*out = NULL;
	if (s->stmt[id] == NULL) {
		int code = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		                              &s->stmt[id], NULL);

		if (code != SQLITE_OK)
			return db_err(s, code);
	}
	*out = s->stmt[id];
	return MOAT_OK;
}

/* Runs a statement that returns no rows we want, and resets it. */
static int run(struct moat_store *s, sqlite3_stmt *st)
{
	int code = sqlite3_step(st);
	int rc = code == SQLITE_DONE || code == SQLITE_ROW ? MOAT_OK : db_err(s, code);

	sqlite3_reset(st);
	return rc;
}

/* As run, for an UPDATE or DELETE of one object: MOAT_ENOTFOUND if no row matched. */
static int run_one(struct moat_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = run(s, st);

	if (rc == MOAT_OK && sqlite3_changes(s->db) == 0)
		rc = store_err(s, MOAT_ENOTFOUND, "no such %s", what);
	return rc;
}

static int run_id(struct moat_store *s, enum stmt_id id)
{
	sqlite3_stmt *st;
	int rc = stmt(s, id, &st);

	return rc != MOAT_OK ? rc : run(s, st);
}

/* Runs a rollback, keeping the message of the failure that called for it. */
static void undo(struct moat_store *s, enum stmt_id id)
{
	char keep[sizeof(s->err)];

	memcpy(keep, s->err, sizeof(keep));
	(void)run_id(s, id);
	memcpy(s->err, keep, sizeof(keep));
}

/* A one-row, one-integer query (counts). */
static int query_int(struct moat_store *s, sqlite3_stmt *st, int64_t *out)
{
	int code = sqlite3_step(st);
	int rc = MOAT_OK;

	if (code == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		rc = db_err(s, code == SQLITE_DONE ? SQLITE_ERROR : code);
	sqlite3_reset(st);
	return rc;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static int64_t now_or(int64_t t)
{
	return t != 0 ? t : (int64_t)time(NULL);
}

/* ---- writes and transactions -------------------------------------------------------------- */

static int write_begin(struct moat_store *s)
{
	if (s->fail)
		return injected(s);
	if (!s->in_txn)
		return run_id(s, ST_BEGIN);
	/* After some failures (I/O, disk full) SQLite rolls the whole transaction back itself: a
	 * savepoint now would open a new transaction and commit on its own at release. */
	if (sqlite3_get_autocommit(s->db))
		return store_err(s, MOAT_EIO,
		                 "the transaction was rolled back by an earlier failure");
	return run_id(s, ST_SAVEPOINT);
}

/* Ends what write_begin started: keeps the write if rc is MOAT_OK, else undoes all of it. */
static int write_end(struct moat_store *s, int rc)
{
	if (s->in_txn) {
		if (rc == MOAT_OK && (rc = run_id(s, ST_RELEASE)) == MOAT_OK) {
			s->txn_wrote = 1;
			return MOAT_OK;
		}
		if (!sqlite3_get_autocommit(s->db)) {
			undo(s, ST_ROLLBACK_TO);
			undo(s, ST_RELEASE);
		}
		return rc;
	}
	if (rc == MOAT_OK && (rc = run_id(s, ST_COMMIT)) == MOAT_OK) {
		s->changes++;
		return MOAT_OK;
	}
	if (!sqlite3_get_autocommit(s->db))
		undo(s, ST_ROLLBACK);
	return rc;
}

int moat_store_begin(struct moat_store *s)
{
	int rc;

	if (s->fail)
		return injected(s);
	if (s->in_txn)
		return store_err(s, MOAT_EINVAL, "a transaction is already open");
	rc = run_id(s, ST_BEGIN);
	if (rc == MOAT_OK) {
		s->in_txn = 1;
		s->txn_wrote = 0;
	}
	return rc;
}

int moat_store_commit(struct moat_store *s)
{
	int rc;

	if (!s->in_txn)
		return store_err(s, MOAT_EINVAL, "no transaction is open");
	if (s->fail) {
		moat_store_rollback(s);
		return injected(s);
	}
	if (sqlite3_get_autocommit(s->db))
		rc = store_err(s, MOAT_EIO,
		               "the transaction was rolled back by an earlier failure");
	else
		rc = run_id(s, ST_COMMIT);
	if (rc != MOAT_OK && !sqlite3_get_autocommit(s->db))
		undo(s, ST_ROLLBACK);
	if (rc == MOAT_OK && s->txn_wrote)
		s->changes++;
	s->in_txn = 0;
	s->txn_wrote = 0;
	return rc;
}

void moat_store_rollback(struct moat_store *s)
{
	if (!s->in_txn)
		return;
	if (!sqlite3_get_autocommit(s->db))
		undo(s, ST_ROLLBACK);
	s->in_txn = 0;
	s->txn_wrote = 0;
}

uint64_t moat_store_changes(struct moat_store *s)
{
	return s->changes;
}

void moat_store_fail(struct moat_store *s, int fail)
{
	s->fail = fail != 0;
}

const char *moat_store_error(const struct moat_store *s)
{
	return s != NULL ? s->err : "no store";
}

int moat_store_schema_version(struct moat_store *s)
{
	return s->version;
}

/* ---- reading columns ---------------------------------------------------------------------- */

/*
 * Column readers copy into a record. They take the result so far and do nothing once it is a
 * failure, so a fill function reads every column in a row and checks once.
 */
static void col_text(struct moat_store *s, sqlite3_stmt *st, int i, char **out, int *rc)
{
	const unsigned char *t;

	*out = NULL;
	if (*rc != MOAT_OK || sqlite3_column_type(st, i) == SQLITE_NULL)
		return;
	t = sqlite3_column_text(st, i);
	if (t != NULL)
		*out = moat_strndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
	if (*out == NULL)
		*rc = no_memory(s);
}

/* Grows an array to hold `need` elements; NULL (the array unchanged) when out of memory. */
static void *grow(void *v, size_t *cap, size_t need, size_t size)
{
	size_t ncap = *cap != 0 ? *cap : 8;
	void *p;

	if (need <= *cap)
		return v;
	while (ncap < need)
		ncap *= 2;
	p = moat_realloc(v, ncap * size);
	if (p != NULL)
		*cap = ncap;
	return p;
}

/* A string list from its JSON text (see schema.sql). */
static int strv_parse(struct moat_store *s, const char *text, size_t len, struct moat_strv *out)
{
	json_error_t jerr;
	json_t *a = json_loadb(text, len, 0, &jerr);
	size_t n;
	int rc = MOAT_OK;

	if (a == NULL || !json_is_array(a)) {
		rc = store_err(s, MOAT_EIO, "corrupt string list in the store");
		goto out;
	}
	n = json_array_size(a);
	if (n == 0)
		goto out;
	out->v = moat_calloc(n, sizeof(*out->v));
	if (out->v == NULL) {
		rc = no_memory(s);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(a, i);

		if (!json_is_string(e)) {
			rc = store_err(s, MOAT_EIO, "corrupt string list in the store");
			goto out;
		}
		out->v[i] = moat_strndup(json_string_value(e), json_string_length(e));
		if (out->v[i] == NULL) {
			rc = no_memory(s);
			goto out;
		}
		out->n = i + 1;
	}
out:
	json_decref(a);
	if (rc != MOAT_OK)
		moat_strv_clear(out);
	return rc;
}

static void col_strv(struct moat_store *s, sqlite3_stmt *st, int i, struct moat_strv *out, int *rc)
{
	const unsigned char *t;

	out->v = NULL;
	out->n = 0;
	if (*rc != MOAT_OK || sqlite3_column_type(st, i) == SQLITE_NULL)
		return;
	t = sqlite3_column_text(st, i);
	if (t == NULL)
		*rc = no_memory(s);
	else
		*rc = strv_parse(s, (const char *)t, (size_t)sqlite3_column_bytes(st, i), out);
}

/* A string list as JSON text for the store (moat_malloc'd). */
static int strv_format(struct moat_store *s, const struct moat_strv *v, char **out)
{
	json_t *a = json_array();
	size_t len;
	int rc = MOAT_OK;

	*out = NULL;
	if (a == NULL)
		return no_memory(s);
	for (size_t i = 0; i < v->n; i++) {
		json_t *e = v->v[i] != NULL ? json_string(v->v[i]) : NULL;

		if (e == NULL) {
			rc = store_err(s, MOAT_EINVAL,
			               "a string list holds NULL or text not in UTF-8");
			goto out;
		}
		if (json_array_append_new(a, e) != 0) {
			rc = no_memory(s);
			goto out;
		}
	}
	len = json_dumpb(a, NULL, 0, JSON_COMPACT);
	*out = len != 0 ? moat_malloc(len + 1) : NULL;
	if (*out == NULL || json_dumpb(a, *out, len, JSON_COMPACT) != len) {
		moat_free(*out);
		*out = NULL;
		rc = no_memory(s);
		goto out;
	}
	(*out)[len] = '\0';
out:
	json_decref(a);
	return rc;
}

/* ---- record fills: one row into a record, columns in the order of the *_COLS lists -------- */

static int tenant_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_tenant *t = rec;
	int rc = MOAT_OK;

	col_text(s, st, 0, &t->name, &rc);
	col_strv(s, st, 1, &t->hosts, &rc);
	col_text(s, st, 2, &t->origin, &rc);
	col_text(s, st, 3, &t->tcp_origin, &rc);
	col_text(s, st, 4, &t->origin_ca, &rc);
	col_strv(s, st, 5, &t->quarantine_allow, &rc);
	col_text(s, st, 6, &t->server_cert, &rc);
	col_text(s, st, 7, &t->server_key_file, &rc);
	t->server_cert_generated = sqlite3_column_int(st, 8);
	t->created_at = sqlite3_column_int64(st, 9);
	t->updated_at = sqlite3_column_int64(st, 10);
	return rc;
}

static int ca_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_ca *c = rec;
	int rc = MOAT_OK;

	c->id = sqlite3_column_int64(st, 0);
	col_text(s, st, 1, &c->tenant, &rc);
	col_text(s, st, 2, &c->cert, &rc);
	col_text(s, st, 3, &c->key_file, &rc);
	col_text(s, st, 4, &c->subject, &rc);
	col_text(s, st, 5, &c->fingerprint, &rc);
	c->not_after = sqlite3_column_int64(st, 6);
	c->generated = sqlite3_column_int(st, 7);
	c->created_at = sqlite3_column_int64(st, 8);
	return rc;
}

/* Without the tags, which live in their own table. */
static int device_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_device *d = rec;
	int rc = MOAT_OK;

	col_text(s, st, 0, &d->tenant, &rc);
	col_text(s, st, 1, &d->id, &rc);
	col_text(s, st, 2, &d->model, &rc);
	col_text(s, st, 3, &d->firmware, &rc);
	col_text(s, st, 4, &d->owner, &rc);
	d->state = (enum moat_device_state)sqlite3_column_int(st, 5);
	d->created_at = sqlite3_column_int64(st, 6);
	d->updated_at = sqlite3_column_int64(st, 7);
	return rc;
}

static int cert_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_cert *c = rec;
	int rc = MOAT_OK;

	col_text(s, st, 0, &c->fingerprint, &rc);
	col_text(s, st, 1, &c->tenant, &rc);
	col_text(s, st, 2, &c->device, &rc);
	col_text(s, st, 3, &c->serial, &rc);
	c->not_after = sqlite3_column_int64(st, 4);
	c->issued_at = sqlite3_column_int64(st, 5);
	c->revoked_at = sqlite3_column_int64(st, 6);
	return rc;
}

static int rule_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_rule *r = rec;
	int rc = MOAT_OK;

	col_text(s, st, 0, &r->tenant, &rc);
	col_text(s, st, 1, &r->id, &rc);
	r->position = sqlite3_column_int64(st, 2);
	col_text(s, st, 3, &r->name, &rc);
	col_text(s, st, 4, &r->expr, &rc);
	col_text(s, st, 5, &r->action, &rc);
	col_text(s, st, 6, &r->mode, &rc);
	col_text(s, st, 7, &r->scope, &rc);
	r->status = sqlite3_column_int(st, 8);
	col_text(s, st, 9, &r->body, &rc);
	col_text(s, st, 10, &r->description, &rc);
	col_text(s, st, 11, &r->reference, &rc);
	r->enabled = sqlite3_column_int(st, 12);
	r->created_at = sqlite3_column_int64(st, 13);
	r->updated_at = sqlite3_column_int64(st, 14);
	return rc;
}

static int token_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_token *t = rec;
	int rc = MOAT_OK;
	const void *hash;

	col_text(s, st, 0, &t->id, &rc);
	col_text(s, st, 1, &t->name, &rc);
	col_text(s, st, 2, &t->tenant, &rc);
	hash = sqlite3_column_blob(st, 3);
	if (rc == MOAT_OK && (hash == NULL || sqlite3_column_bytes(st, 3) != sizeof(t->hash)))
		rc = store_err(s, MOAT_EIO, "corrupt token hash in the store");
	if (rc == MOAT_OK)
		memcpy(t->hash, hash, sizeof(t->hash));
	t->created_at = sqlite3_column_int64(st, 4);
	t->last_used_at = sqlite3_column_int64(st, 5);
	return rc;
}

static int audit_fill(struct moat_store *s, sqlite3_stmt *st, void *rec)
{
	struct moat_store_audit *a = rec;
	int rc = MOAT_OK;

	a->seq = sqlite3_column_int64(st, 0);
	a->at = sqlite3_column_int64(st, 1);
	col_text(s, st, 2, &a->actor, &rc);
	col_text(s, st, 3, &a->source, &rc);
	col_text(s, st, 4, &a->tenant, &rc);
	col_text(s, st, 5, &a->action, &rc);
	col_text(s, st, 6, &a->object, &rc);
	col_text(s, st, 7, &a->detail, &rc);
	return rc;
}

/* ---- getting and listing records ---------------------------------------------------------- */

struct row_kind {
	size_t size;
	int (*fill)(struct moat_store *s, sqlite3_stmt *st, void *rec);
	void (*clear)(void *rec);
	const char *name; /* for "no such ..." */
};

static void tenant_clear(void *rec)
{
	moat_store_tenant_clear(rec);
}

static void ca_clear(void *rec)
{
	moat_store_ca_clear(rec);
}

static void device_clear(void *rec)
{
	moat_store_device_clear(rec);
}

static void cert_clear(void *rec)
{
	moat_store_cert_clear(rec);
}

static void rule_clear(void *rec)
{
	moat_store_rule_clear(rec);
}

static void token_clear(void *rec)
{
	moat_store_token_clear(rec);
}

static void audit_clear(void *rec)
{
	moat_store_audit_clear(rec);
}

static const struct row_kind tenant_kind = {sizeof(struct moat_store_tenant), tenant_fill,
                                            tenant_clear, "tenant"};
static const struct row_kind ca_kind = {sizeof(struct moat_store_ca), ca_fill, ca_clear, "CA"};
static const struct row_kind device_kind = {sizeof(struct moat_store_device), device_fill,
                                            device_clear, "device"};
static const struct row_kind cert_kind = {sizeof(struct moat_store_cert), cert_fill, cert_clear,
                                          "certificate"};
static const struct row_kind rule_kind = {sizeof(struct moat_store_rule), rule_fill, rule_clear,
                                          "rule"};
static const struct row_kind token_kind = {sizeof(struct moat_store_token), token_fill, token_clear,
                                           "token"};
static const struct row_kind audit_kind = {sizeof(struct moat_store_audit), audit_fill, audit_clear,
                                           "audit entry"};

/* Steps a bound statement to its end, filling an array of records; resets the statement. */
static int collect(struct moat_store *s, sqlite3_stmt *st, const struct row_kind *k, void **out,
                   size_t *n)
{
	char *v = NULL;
	size_t count = 0, cap = 0;
	int code = SQLITE_DONE, rc = MOAT_OK;

	while (rc == MOAT_OK && (code = sqlite3_step(st)) == SQLITE_ROW) {
		char *p = grow(v, &cap, count + 1, k->size);

		if (p == NULL) {
			rc = no_memory(s);
			break;
		}
		v = p;
		memset(v + count * k->size, 0, k->size);
		rc = k->fill(s, st, v + count * k->size);
		count++; /* a half-filled record is cleared below like the others */
	}
	if (rc == MOAT_OK && code != SQLITE_DONE)
		rc = db_err(s, code);
	sqlite3_reset(st);
	if (rc != MOAT_OK) {
		for (size_t i = 0; i < count; i++)
			k->clear(v + i * k->size);
		moat_free(v);
		return rc;
	}
	*out = v;
	*n = count;
	return MOAT_OK;
}

/* Steps a bound statement for one row into rec (zeroed first); MOAT_ENOTFOUND if none. */
static int fetch(struct moat_store *s, sqlite3_stmt *st, const struct row_kind *k, void *rec)
{
	int code = sqlite3_step(st);
	int rc;

	if (code == SQLITE_ROW)
		rc = k->fill(s, st, rec);
	else if (code == SQLITE_DONE)
		rc = store_err(s, MOAT_ENOTFOUND, "no such %s", k->name);
	else
		rc = db_err(s, code);
	sqlite3_reset(st);
	if (rc != MOAT_OK)
		k->clear(rec);
	return rc;
}

/* The start of every read: the test hook, then the statement. */
static int read_stmt(struct moat_store *s, enum stmt_id id, sqlite3_stmt **st)
{
	*st = NULL;
	if (s->fail)
		return injected(s);
	return stmt(s, id, st);
}

/* ---- opening and closing ------------------------------------------------------------------ */

static int exec_sql(struct moat_store *s, const char *sql)
{
	char *msg = NULL;
	int code = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
	int rc = MOAT_OK;

	if (code != SQLITE_OK)
		rc = store_err(s, result_of(sqlite3_extended_errcode(s->db)), "%s",
		               msg != NULL ? msg : sqlite3_errstr(code));
	sqlite3_free(msg);
	return rc;
}

/* The first column of the first row of a one-off query (pragmas), as text. */
static int query_text(struct moat_store *s, const char *sql, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int code = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	int rc = MOAT_OK;

	if (code == SQLITE_OK)
		code = sqlite3_step(st);
	if (code == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		snprintf(buf, cap, "%s", t != NULL ? (const char *)t : "");
	} else {
		rc = db_err(s, code == SQLITE_DONE ? SQLITE_ERROR : code);
	}
	sqlite3_finalize(st);
	return rc;
}

static int query_number(struct moat_store *s, const char *sql, long long *out)
{
	char buf[32];
	char *end;
	int rc = query_text(s, sql, buf, sizeof(buf));

	if (rc != MOAT_OK)
		return rc;
	errno = 0;
	*out = strtoll(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0')
		return store_err(s, MOAT_EIO, "\"%s\" answered \"%s\"", sql, buf);
	return MOAT_OK;
}

/*
 * Creates the file 0600 if it is missing: SQLite then gives its -wal and -shm files the
 * database file's mode, so no umask change (process-wide, racy with other threads) is needed.
 */
static int create_private(struct moat_store *s)
{
	int fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return store_err(s, MOAT_EIO, "%s", strerror(errno));
	close(fd);
	return MOAT_OK;
}

static int configure(struct moat_store *s)
{
	char mode[16];
	long long fk = 0;
	int rc;

	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	rc = query_text(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (rc == MOAT_OK && strcmp(mode, "wal") != 0)
		rc = store_err(s, MOAT_EIO, "cannot use write-ahead logging (journal mode %s)",
		               mode);
	/* NORMAL is durable across a crash of moatd; a power cut may lose the last commits
	 * but never corrupts the file. The page cache (16 MiB at most) keeps enrolment fast, and
	 * so do savepoint journals kept in memory: a write inside a transaction is a savepoint,
	 * and journalling those to a temporary file made a bulk enrolment ten times slower. */
	if (rc == MOAT_OK)
		rc = exec_sql(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
		                 "PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY");
	/* a SQLite built without foreign keys would accept the pragma and ignore it, and tenant
	 * deletion would leave orphans */
	if (rc == MOAT_OK)
		rc = query_number(s, "PRAGMA foreign_keys", &fk);
	if (rc == MOAT_OK && fk != 1)
		rc = store_err(s, MOAT_EIO, "this SQLite does not enforce foreign keys");
	return rc;
}

static int apply_migrations(struct moat_store *s, long long have)
{
	char sql[64];
	int rc = MOAT_OK;

	for (size_t i = 0; rc == MOAT_OK && i < moat_store_migrations_count; i++) {
		const struct moat_store_migration *m = &moat_store_migrations[i];

		if (m->version <= have)
			continue;
		rc = exec_sql(s, m->sql);
		if (rc != MOAT_OK) {
			char keep[sizeof(s->err)];

			memcpy(keep, s->err, sizeof(keep));
			return store_err(s, MOAT_EIO, "migration to schema version %d: %s",
			                 m->version, keep);
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", m->version);
		rc = exec_sql(s, sql);
	}
	return rc;
}

/* Brings the schema to this binary's version in one transaction. *full_msg is set when the
 * message already names the store. */
static int migrate(struct moat_store *s, int *full_msg)
{
	long long have = 0;
	int rc = exec_sql(s, "BEGIN IMMEDIATE");

	if (rc != MOAT_OK)
		return rc;
	rc = query_number(s, "PRAGMA user_version", &have);
	if (rc == MOAT_OK && have > MOAT_STORE_SCHEMA_VERSION) {
		*full_msg = 1;
		rc = store_err(s, MOAT_EINVAL,
		               "store %s has schema version %lld; this moatd knows up to %d: "
		               "upgrade moatd",
		               s->path, have, MOAT_STORE_SCHEMA_VERSION);
	}
	if (rc == MOAT_OK)
		rc = apply_migrations(s, have);
	if (rc == MOAT_OK)
		rc = exec_sql(s, "COMMIT");
	if (rc != MOAT_OK) {
		if (!sqlite3_get_autocommit(s->db)) {
			char keep[sizeof(s->err)];

			memcpy(keep, s->err, sizeof(keep));
			(void)exec_sql(s, "ROLLBACK");
			memcpy(s->err, keep, sizeof(keep));
		}
		return rc;
	}
	s->version = MOAT_STORE_SCHEMA_VERSION;
	return MOAT_OK;
}

int moat_store_open(const char *path, const char **err, struct moat_store **out)
{
	/* the store is gone when open fails, so its message is kept here */
	static _Thread_local char open_err[sizeof(((struct moat_store *)0)->err) + 256];
	struct moat_store *s;
	int full_msg = 0;
	int code, rc;

	*out = NULL;
	*err = NULL;
	s = moat_calloc(1, sizeof(*s));
	if (s == NULL || (s->path = moat_strdup(path)) == NULL) {
		moat_free(s);
		*err = "out of memory";
		return MOAT_ENOMEM;
	}
	snprintf(s->err, sizeof(s->err), "no error");
	rc = create_private(s);
	if (rc == MOAT_OK) {
		code = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
		                       NULL);
		if (code != SQLITE_OK)
			rc = store_err(s, result_of(code), "%s",
			               s->db != NULL ? sqlite3_errmsg(s->db)
			                             : sqlite3_errstr(code));
	}
	if (rc == MOAT_OK)
		rc = configure(s);
	if (rc == MOAT_OK)
		rc = migrate(s, &full_msg);
	if (rc != MOAT_OK) {
		if (full_msg)
			snprintf(open_err, sizeof(open_err), "%s", s->err);
		else
			snprintf(open_err, sizeof(open_err), "store %s: %s", path, s->err);
		*err = open_err;
		moat_store_close(s);
		return rc;
	}
	snprintf(s->err, sizeof(s->err), "no error");
	*out = s;
	return MOAT_OK;
}

void moat_store_close(struct moat_store *s)
{
	if (s == NULL)
		return;
	if (s->db != NULL && !sqlite3_get_autocommit(s->db))
		(void)run_id(s, ST_ROLLBACK);
	for (size_t i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	for (size_t i = 0; i < FILTER_VARIANTS; i++)
		sqlite3_finalize(s->device_list[i]);
	sqlite3_close_v2(s->db);
	moat_free(s->path);
	moat_free(s);
}

/* ---- tenants ------------------------------------------------------------------------------ */

/* Insert and update bind the same parameters: ?1 name ... ?10 the time. */
static int tenant_write(struct moat_store *s, enum stmt_id id, const struct moat_store_tenant *t,
                        int64_t at)
{
	char *hosts = NULL, *allow = NULL;
	sqlite3_stmt *st;
	int rc;

	if (t->name == NULL)
		return store_err(s, MOAT_EINVAL, "a tenant needs a name");
	rc = strv_format(s, &t->hosts, &hosts);
	if (rc == MOAT_OK)
		rc = strv_format(s, &t->quarantine_allow, &allow);
	if (rc == MOAT_OK)
		rc = stmt(s, id, &st);
	if (rc == MOAT_OK) {
		int b = bind_text(st, 1, t->name) | bind_text(st, 2, hosts) |
		        bind_text(st, 3, t->origin) | bind_text(st, 4, t->tcp_origin) |
		        bind_text(st, 5, t->origin_ca) | bind_text(st, 6, allow) |
		        bind_text(st, 7, t->server_cert) | bind_text(st, 8, t->server_key_file) |
		        sqlite3_bind_int(st, 9, t->server_cert_generated != 0) |
		        sqlite3_bind_int64(st, 10, at);

		rc = b != SQLITE_OK ? bind_err(s) : run_one(s, st, "tenant");
	}
	moat_free(hosts);
	moat_free(allow);
	return rc;
}

int moat_store_tenant_insert(struct moat_store *s, const struct moat_store_tenant *t)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, tenant_write(s, ST_TENANT_INSERT, t, now_or(t->created_at)));
}

int moat_store_tenant_update(struct moat_store *s, const struct moat_store_tenant *t)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, tenant_write(s, ST_TENANT_UPDATE, t, now_or(0)));
}

/* A delete (or other one-object write) keyed by up to two strings. */
static int delete_by(struct moat_store *s, enum stmt_id id, const char *k1, const char *k2,
                     const char *what)
{
	sqlite3_stmt *st;
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = stmt(s, id, &st);
	if (rc == MOAT_OK) {
		int b = bind_text(st, 1, k1) | (k2 != NULL ? bind_text(st, 2, k2) : SQLITE_OK);

		rc = b != SQLITE_OK ? bind_err(s) : run_one(s, st, what);
	}
	return write_end(s, rc);
}

int moat_store_tenant_delete(struct moat_store *s, const char *name)
{
	/* the foreign keys' ON DELETE CASCADE removes everything the tenant owns */
	return delete_by(s, ST_TENANT_DELETE, name, NULL, "tenant");
}

int moat_store_tenant_get(struct moat_store *s, const char *name, struct moat_store_tenant *out)
{
	sqlite3_stmt *st;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_stmt(s, ST_TENANT_GET, &st);
	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, name) != SQLITE_OK)
		return bind_err(s);
	return fetch(s, st, &tenant_kind, out);
}

int moat_store_tenant_list(struct moat_store *s, struct moat_store_tenant **out, size_t *n)
{
	sqlite3_stmt *st;
	void *v = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	rc = read_stmt(s, ST_TENANT_LIST, &st);
	if (rc == MOAT_OK)
		rc = collect(s, st, &tenant_kind, &v, n);
	*out = v;
	return rc;
}

/* ---- device CAs --------------------------------------------------------------------------- */

static int ca_write(struct moat_store *s, const struct moat_store_ca *ca, int64_t at, int64_t *id)
{
	sqlite3_stmt *st;
	int rc = stmt(s, ST_CA_INSERT, &st);
	int b;

	if (rc != MOAT_OK)
		return rc;
	b = bind_text(st, 1, ca->tenant) | bind_text(st, 2, ca->cert) |
	    bind_text(st, 3, ca->key_file) | bind_text(st, 4, ca->subject) |
	    bind_text(st, 5, ca->fingerprint) | sqlite3_bind_int64(st, 6, ca->not_after) |
	    sqlite3_bind_int(st, 7, ca->generated != 0) | sqlite3_bind_int64(st, 8, at);
	if (b != SQLITE_OK)
		return bind_err(s);
	rc = run(s, st);
	if (rc == MOAT_OK)
		*id = sqlite3_last_insert_rowid(s->db);
	return rc;
}

int moat_store_ca_insert(struct moat_store *s, struct moat_store_ca *ca)
{
	int64_t at = now_or(ca->created_at), id = 0;
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = write_end(s, ca_write(s, ca, at, &id));
	if (rc == MOAT_OK) {
		ca->id = id;
		ca->created_at = at;
	}
	return rc;
}

int moat_store_ca_delete(struct moat_store *s, const char *tenant, int64_t id)
{
	sqlite3_stmt *st;
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = stmt(s, ST_CA_DELETE, &st);
	if (rc == MOAT_OK) {
		int b = bind_text(st, 1, tenant) | sqlite3_bind_int64(st, 2, id);

		rc = b != SQLITE_OK ? bind_err(s) : run_one(s, st, "CA");
	}
	return write_end(s, rc);
}

int moat_store_ca_list(struct moat_store *s, const char *tenant, struct moat_store_ca **out,
                       size_t *n)
{
	sqlite3_stmt *st;
	void *v = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	rc = read_stmt(s, ST_CA_LIST, &st);
	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, tenant) != SQLITE_OK)
		return bind_err(s);
	rc = collect(s, st, &ca_kind, &v, n);
	*out = v;
	return rc;
}

/* ---- devices ------------------------------------------------------------------------------ */

static int device_check(struct moat_store *s, const struct moat_store_device *d)
{
	if (d->tenant == NULL || d->id == NULL)
		return store_err(s, MOAT_EINVAL, "a device needs a tenant and an id");
	if ((unsigned)d->state > MOAT_DEVICE_REVOKED)
		return store_err(s, MOAT_EINVAL, "device state %d is not one of the known states",
		                 (int)d->state);
	for (size_t i = 0; i < d->tags.n; i++)
		if (d->tags.v[i] == NULL)
			return store_err(s, MOAT_EINVAL, "a device tag is NULL");
	return MOAT_OK;
}

static int tags_write(struct moat_store *s, const struct moat_store_device *d)
{
	sqlite3_stmt *st;
	int rc = stmt(s, ST_TAG_INSERT, &st);

	if (rc != MOAT_OK || d->tags.n == 0)
		return rc;
	/* bindings outlive a reset: the device is bound once for all its tags */
	if ((bind_text(st, 1, d->tenant) | bind_text(st, 2, d->id)) != SQLITE_OK)
		return bind_err(s);
	for (size_t i = 0; rc == MOAT_OK && i < d->tags.n; i++) {
		int b = sqlite3_bind_int64(st, 3, (int64_t)i) | bind_text(st, 4, d->tags.v[i]);

		rc = b != SQLITE_OK ? bind_err(s) : run(s, st);
	}
	return rc;
}

static int delete_tags(struct moat_store *s, const struct moat_store_device *d)
{
	sqlite3_stmt *st;
	int rc = stmt(s, ST_TAG_DELETE, &st);

	if (rc != MOAT_OK)
		return rc;
	if ((bind_text(st, 1, d->tenant) | bind_text(st, 2, d->id)) != SQLITE_OK)
		return bind_err(s);
	return run(s, st);
}

/* Insert and update bind the same parameters: ?1 tenant, ?2 id ... ?7 the time. */
static int device_write(struct moat_store *s, enum stmt_id id, const struct moat_store_device *d,
                        int64_t at)
{
	sqlite3_stmt *st;
	int rc = device_check(s, d);
	int b;

	if (rc == MOAT_OK)
		rc = stmt(s, id, &st);
	if (rc != MOAT_OK)
		return rc;
	b = bind_text(st, 1, d->tenant) | bind_text(st, 2, d->id) | bind_text(st, 3, d->model) |
	    bind_text(st, 4, d->firmware) | bind_text(st, 5, d->owner) |
	    sqlite3_bind_int(st, 6, (int)d->state) | sqlite3_bind_int64(st, 7, at);
	if (b != SQLITE_OK)
		return bind_err(s);
	rc = run_one(s, st, "device");
	if (rc == MOAT_OK && id == ST_DEVICE_UPDATE)
		rc = delete_tags(s, d);
	if (rc == MOAT_OK)
		rc = tags_write(s, d);
	return rc;
}

int moat_store_device_insert(struct moat_store *s, const struct moat_store_device *d)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, device_write(s, ST_DEVICE_INSERT, d, now_or(d->created_at)));
}

int moat_store_device_update(struct moat_store *s, const struct moat_store_device *d)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, device_write(s, ST_DEVICE_UPDATE, d, now_or(0)));
}

int moat_store_device_delete(struct moat_store *s, const char *tenant, const char *id)
{
	/* its tags go with it (cascade); its certificates stay, see schema.sql */
	return delete_by(s, ST_DEVICE_DELETE, tenant, id, "device");
}

/* A device's tags, in their order, into a list the caller clears. */
static int tags_get(struct moat_store *s, const char *tenant, const char *id, struct moat_strv *out)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int code = SQLITE_DONE, rc = stmt(s, ST_TAG_GET, &st);

	if (rc != MOAT_OK)
		return rc;
	if ((bind_text(st, 1, tenant) | bind_text(st, 2, id)) != SQLITE_OK)
		return bind_err(s);
	while (rc == MOAT_OK && (code = sqlite3_step(st)) == SQLITE_ROW) {
		char **v = grow(out->v, &cap, out->n + 1, sizeof(*out->v));

		if (v == NULL) {
			rc = no_memory(s);
			break;
		}
		out->v = v;
		col_text(s, st, 0, &out->v[out->n], &rc);
		if (rc == MOAT_OK)
			out->n++;
	}
	if (rc == MOAT_OK && code != SQLITE_DONE)
		rc = db_err(s, code);
	sqlite3_reset(st);
	if (rc != MOAT_OK)
		moat_strv_clear(out);
	return rc;
}

int moat_store_device_get(struct moat_store *s, const char *tenant, const char *id,
                          struct moat_store_device *out)
{
	sqlite3_stmt *st;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_stmt(s, ST_DEVICE_GET, &st);
	if (rc != MOAT_OK)
		return rc;
	if ((bind_text(st, 1, tenant) | bind_text(st, 2, id)) != SQLITE_OK)
		return bind_err(s);
	rc = fetch(s, st, &device_kind, out);
	if (rc == MOAT_OK)
		rc = tags_get(s, tenant, id, &out->tags);
	if (rc != MOAT_OK)
		moat_store_device_clear(out);
	return rc;
}

static void sql_add(char *buf, size_t cap, size_t *len, const char *part)
{
	size_t n = strlen(part);

	/* the buffer is sized for the longest variant; a cut statement would fail to prepare */
	if (*len + n >= cap)
		return;
	memcpy(buf + *len, part, n + 1);
	*len += n;
}

/* The list statement for one combination of filters. Parameters: ?1 tenant, ?2 after,
 * ?3 state, ?4 model, ?5 firmware, ?6 tag, ?7 the row limit. */
static int device_list_stmt(struct moat_store *s, unsigned filters, sqlite3_stmt **out)
{
	char sql[512];
	size_t len = 0;
	int code;

	*out = NULL;
	if (s->device_list[filters] != NULL) {
		*out = s->device_list[filters];
		return MOAT_OK;
	}
	sql[0] = '\0';
	sql_add(sql, sizeof(sql), &len, "SELECT " DEVICE_COLS_D " FROM ");
	/* with a tag, the tag index gives the matching devices in id order */
	if (filters & FILTER_TAG)
		sql_add(sql, sizeof(sql), &len,
		        "device_tags t JOIN devices d ON d.tenant = t.tenant AND d.id = t.device "
		        "WHERE t.tenant = ?1 AND t.tag = ?6 AND t.device > ?2");
	else
		sql_add(sql, sizeof(sql), &len, "devices d WHERE d.tenant = ?1 AND d.id > ?2");
	if (filters & FILTER_STATE)
		sql_add(sql, sizeof(sql), &len, " AND d.state = ?3");
	if (filters & FILTER_MODEL)
		sql_add(sql, sizeof(sql), &len, " AND d.model = ?4");
	if (filters & FILTER_FIRMWARE)
		sql_add(sql, sizeof(sql), &len, " AND d.firmware = ?5");
	sql_add(sql, sizeof(sql), &len,
	        filters & FILTER_TAG ? " ORDER BY t.device LIMIT ?7" : " ORDER BY d.id LIMIT ?7");
	code = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	                          &s->device_list[filters], NULL);
	if (code != SQLITE_OK)
		return db_err(s, code);
	*out = s->device_list[filters];
	return MOAT_OK;
}

static int device_filter_check(struct moat_store *s, const struct moat_store_device_filter *f)
{
	if (f == NULL)
		return store_err(s, MOAT_EINVAL, "a device list needs a filter");
	if (f->limit < 1 || f->limit > PAGE_MAX)
		return store_err(s, MOAT_EINVAL, "limit %u is not within 1..%d", f->limit,
		                 PAGE_MAX);
	if (f->state < -1 || f->state > MOAT_DEVICE_REVOKED)
		return store_err(s, MOAT_EINVAL, "device state %d is not one of the known states",
		                 f->state);
	return MOAT_OK;
}

int moat_store_device_list(struct moat_store *s, const char *tenant,
                           const struct moat_store_device_filter *f, struct moat_store_device **out,
                           size_t *n, int *more)
{
	struct moat_store_device *v;
	sqlite3_stmt *st;
	unsigned filters = 0;
	void *p = NULL;
	size_t count = 0;
	int rc, b;

	*out = NULL;
	*n = 0;
	*more = 0;
	if (s->fail)
		return injected(s);
	rc = device_filter_check(s, f);
	if (rc != MOAT_OK)
		return rc;
	filters = (f->state >= 0 ? FILTER_STATE : 0) | (f->model != NULL ? FILTER_MODEL : 0) |
	          (f->firmware != NULL ? FILTER_FIRMWARE : 0) | (f->tag != NULL ? FILTER_TAG : 0);
	rc = device_list_stmt(s, filters, &st);
	if (rc != MOAT_OK)
		return rc;
	/* ids are never empty, so "" starts from the first; one row more tells if more follow */
	b = bind_text(st, 1, tenant) | bind_text(st, 2, f->after != NULL ? f->after : "") |
	    sqlite3_bind_int(st, 3, f->state) | bind_text(st, 4, f->model) |
	    bind_text(st, 5, f->firmware) | bind_text(st, 6, f->tag) |
	    sqlite3_bind_int64(st, 7, (int64_t)f->limit + 1);
	if (b != SQLITE_OK)
		return bind_err(s);
	rc = collect(s, st, &device_kind, &p, &count);
	if (rc != MOAT_OK)
		return rc;
	v = p;
	if (count > f->limit) {
		moat_store_device_clear(&v[--count]);
		*more = 1;
	}
	for (size_t i = 0; rc == MOAT_OK && i < count; i++)
		rc = tags_get(s, v[i].tenant, v[i].id, &v[i].tags);
	if (rc != MOAT_OK) {
		moat_store_devices_free(v, count);
		*more = 0;
		return rc;
	}
	*out = v;
	*n = count;
	return MOAT_OK;
}

int moat_store_device_count(struct moat_store *s, const char *tenant, uint64_t *n)
{
	sqlite3_stmt *st;
	int64_t count = 0;
	int rc;

	*n = 0;
	rc = read_stmt(s, ST_DEVICE_COUNT, &st);
	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, tenant) != SQLITE_OK)
		return bind_err(s);
	rc = query_int(s, st, &count);
	if (rc == MOAT_OK)
		*n = (uint64_t)count;
	return rc;
}

/*
 * Streaming devices with their tags: the device rows and the tag rows of the tenant are two
 * walks in the same (device id) order, merged as they go, so a million devices cost two index
 * scans and no query per device. The tags of the current device are copied into buffers that
 * are reused from device to device.
 */
struct tag_walk {
	sqlite3_stmt *st;
	int row; /* st stands on a row not yet used */
	char *text; /* the current device's tags, each NUL-terminated */
	size_t text_cap;
	char **v;
	size_t v_cap;
};

static int tag_walk_step(struct moat_store *s, struct tag_walk *w)
{
	int code = sqlite3_step(w->st);

	w->row = code == SQLITE_ROW;
	if (code == SQLITE_ROW || code == SQLITE_DONE)
		return MOAT_OK;
	return db_err(s, code);
}

/* Takes the tag rows of device `id` (skipping any of earlier ids) into *out. */
static int tag_walk_take(struct moat_store *s, struct tag_walk *w, const char *id,
                         struct moat_strv *out)
{
	size_t len = 0, n = 0;
	char *p;
	int rc = MOAT_OK;

	while (rc == MOAT_OK && w->row) {
		const char *device = (const char *)sqlite3_column_text(w->st, 0);
		const char *tag = (const char *)sqlite3_column_text(w->st, 1);
		size_t tag_len = (size_t)sqlite3_column_bytes(w->st, 1);
		int cmp;

		if (device == NULL || tag == NULL)
			return no_memory(s);
		/* the same order as SQLite's BINARY collation of the ORDER BY */
		cmp = strcmp(device, id);
		if (cmp > 0)
			break;
		if (cmp == 0) {
			p = grow(w->text, &w->text_cap, len + tag_len + 1, 1);
			if (p == NULL)
				return no_memory(s);
			w->text = p;
			memcpy(w->text + len, tag, tag_len);
			w->text[len + tag_len] = '\0';
			len += tag_len + 1;
			n++;
		}
		rc = tag_walk_step(s, w);
	}
	if (rc != MOAT_OK)
		return rc;
	if (n > w->v_cap) {
		char **v = grow(w->v, &w->v_cap, n, sizeof(*w->v));

		if (v == NULL)
			return no_memory(s);
		w->v = v;
	}
	p = w->text;
	for (size_t i = 0; i < n; i++) {
		w->v[i] = p;
		p += strlen(p) + 1;
	}
	out->v = n != 0 ? w->v : NULL;
	out->n = n;
	return MOAT_OK;
}

/* A device row as a record that points into the statement's columns. */
static int device_view(struct moat_store *s, sqlite3_stmt *st, struct moat_store_device *d)
{
	d->tenant = (char *)sqlite3_column_text(st, 0);
	d->id = (char *)sqlite3_column_text(st, 1);
	d->model = (char *)sqlite3_column_text(st, 2);
	d->firmware = (char *)sqlite3_column_text(st, 3);
	d->owner = (char *)sqlite3_column_text(st, 4);
	d->state = (enum moat_device_state)sqlite3_column_int(st, 5);
	d->created_at = sqlite3_column_int64(st, 6);
	d->updated_at = sqlite3_column_int64(st, 7);
	if (d->tenant == NULL || d->id == NULL)
		return no_memory(s);
	return MOAT_OK;
}

/* The callback may use the store for other calls, but not walk the same tenant's devices
 * again: the two statements of this walk are in use until it returns. */
int moat_store_device_each(struct moat_store *s, const char *tenant, moat_store_device_fn fn,
                           void *arg)
{
	struct tag_walk w;
	struct moat_store_device d;
	sqlite3_stmt *st;
	int code = SQLITE_DONE, rc;

	memset(&w, 0, sizeof(w));
	rc = read_stmt(s, ST_DEVICE_EACH, &st);
	if (rc == MOAT_OK)
		rc = stmt(s, ST_TAG_EACH, &w.st);
	if (rc != MOAT_OK)
		return rc;
	if ((bind_text(st, 1, tenant) | bind_text(w.st, 1, tenant)) != SQLITE_OK)
		return bind_err(s);
	rc = tag_walk_step(s, &w);
	while (rc == MOAT_OK && (code = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&d, 0, sizeof(d));
		rc = device_view(s, st, &d);
		if (rc == MOAT_OK)
			rc = tag_walk_take(s, &w, d.id, &d.tags);
		if (rc == MOAT_OK)
			rc = fn(arg, &d);
	}
	if (rc == MOAT_OK && code != SQLITE_DONE)
		rc = db_err(s, code);
	sqlite3_reset(st);
	sqlite3_reset(w.st);
	moat_free(w.text);
	moat_free(w.v);
	return rc;
}

/* ---- certificates ------------------------------------------------------------------------- */

static int cert_write(struct moat_store *s, const struct moat_store_cert *c)
{
	sqlite3_stmt *st;
	int rc = stmt(s, ST_CERT_INSERT, &st);
	int b;

	if (rc != MOAT_OK)
		return rc;
	b = bind_text(st, 1, c->fingerprint) | bind_text(st, 2, c->tenant) |
	    bind_text(st, 3, c->device) | bind_text(st, 4, c->serial) |
	    sqlite3_bind_int64(st, 5, c->not_after) | sqlite3_bind_int64(st, 6, c->issued_at) |
	    sqlite3_bind_int64(st, 7, c->revoked_at);
	return b != SQLITE_OK ? bind_err(s) : run(s, st);
}

int moat_store_cert_insert(struct moat_store *s, const struct moat_store_cert *c)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, cert_write(s, c));
}

int moat_store_cert_list(struct moat_store *s, const char *tenant, const char *device,
                         struct moat_store_cert **out, size_t *n)
{
	sqlite3_stmt *st;
	void *v = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	rc = read_stmt(s, ST_CERT_LIST, &st);
	if (rc != MOAT_OK)
		return rc;
	if ((bind_text(st, 1, tenant) | bind_text(st, 2, device)) != SQLITE_OK)
		return bind_err(s);
	rc = collect(s, st, &cert_kind, &v, n);
	*out = v;
	return rc;
}

/* A device without certificates (or with all of them revoked already) is not an error:
 * there is simply nothing left to revoke. */
int moat_store_cert_revoke_device(struct moat_store *s, const char *tenant, const char *device,
                                  int64_t at)
{
	sqlite3_stmt *st;
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = stmt(s, ST_CERT_REVOKE, &st);
	if (rc == MOAT_OK) {
		/* 0 would mean "not revoked" */
		int b = bind_text(st, 1, tenant) | bind_text(st, 2, device) |
		        sqlite3_bind_int64(st, 3, now_or(at));

		rc = b != SQLITE_OK ? bind_err(s) : run(s, st);
	}
	return write_end(s, rc);
}

int moat_store_cert_each_revoked(struct moat_store *s, const char *tenant, moat_store_cert_fn fn,
                                 void *arg)
{
	struct moat_store_cert c;
	sqlite3_stmt *st;
	int code = SQLITE_DONE, rc;

	rc = read_stmt(s, ST_CERT_EACH_REVOKED, &st);
	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, tenant) != SQLITE_OK)
		return bind_err(s);
	while (rc == MOAT_OK && (code = sqlite3_step(st)) == SQLITE_ROW) {
		c.fingerprint = (char *)sqlite3_column_text(st, 0);
		c.tenant = (char *)sqlite3_column_text(st, 1);
		c.device = (char *)sqlite3_column_text(st, 2);
		c.serial = (char *)sqlite3_column_text(st, 3);
		c.not_after = sqlite3_column_int64(st, 4);
		c.issued_at = sqlite3_column_int64(st, 5);
		c.revoked_at = sqlite3_column_int64(st, 6);
		if (c.fingerprint == NULL || c.tenant == NULL || c.device == NULL ||
		    c.serial == NULL)
			rc = no_memory(s);
		else
			rc = fn(arg, &c);
	}
	if (rc == MOAT_OK && code != SQLITE_DONE)
		rc = db_err(s, code);
	sqlite3_reset(st);
	return rc;
}

/* ---- rules -------------------------------------------------------------------------------- */

/* Insert and update bind the same parameters: ?1 tenant, ?2 id ... ?14 the time. */
static int rule_bind(sqlite3_stmt *st, const struct moat_store_rule *r, int64_t position,
                     int64_t at)
{
	return bind_text(st, 1, r->tenant) | bind_text(st, 2, r->id) |
	       sqlite3_bind_int64(st, 3, position) | bind_text(st, 4, r->name) |
	       bind_text(st, 5, r->expr) | bind_text(st, 6, r->action) | bind_text(st, 7, r->mode) |
	       bind_text(st, 8, r->scope) | sqlite3_bind_int(st, 9, r->status) |
	       bind_text(st, 10, r->body) | bind_text(st, 11, r->description) |
	       bind_text(st, 12, r->reference) | sqlite3_bind_int(st, 13, r->enabled != 0) |
	       sqlite3_bind_int64(st, 14, at);
}

/* Where a rule without a position goes: after the tenant's last one. */
static int rule_next_position(struct moat_store *s, const char *tenant, int64_t *out)
{
	sqlite3_stmt *st;
	int64_t last = 0;
	int rc = stmt(s, ST_RULE_LAST_POSITION, &st);

	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, tenant) != SQLITE_OK)
		return bind_err(s);
	rc = query_int(s, st, &last);
	*out = last + 10;
	return rc;
}

static int rule_write(struct moat_store *s, enum stmt_id id, const struct moat_store_rule *r,
                      int64_t at)
{
	int64_t position = r->position;
	sqlite3_stmt *st;
	int rc = MOAT_OK;

	if (r->tenant == NULL || r->id == NULL)
		return store_err(s, MOAT_EINVAL, "a rule needs a tenant and an id");
	if (id == ST_RULE_INSERT && position == 0)
		rc = rule_next_position(s, r->tenant, &position);
	if (rc == MOAT_OK)
		rc = stmt(s, id, &st);
	if (rc != MOAT_OK)
		return rc;
	if (rule_bind(st, r, position, at) != SQLITE_OK)
		return bind_err(s);
	return run_one(s, st, "rule");
}

int moat_store_rule_insert(struct moat_store *s, const struct moat_store_rule *r)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, rule_write(s, ST_RULE_INSERT, r, now_or(r->created_at)));
}

int moat_store_rule_update(struct moat_store *s, const struct moat_store_rule *r)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, rule_write(s, ST_RULE_UPDATE, r, now_or(0)));
}

int moat_store_rule_delete(struct moat_store *s, const char *tenant, const char *id)
{
	return delete_by(s, ST_RULE_DELETE, tenant, id, "rule");
}

int moat_store_rule_get(struct moat_store *s, const char *tenant, const char *id,
                        struct moat_store_rule *out)
{
	sqlite3_stmt *st;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_stmt(s, ST_RULE_GET, &st);
	if (rc != MOAT_OK)
		return rc;
	if ((bind_text(st, 1, tenant) | bind_text(st, 2, id)) != SQLITE_OK)
		return bind_err(s);
	return fetch(s, st, &rule_kind, out);
}

int moat_store_rule_list(struct moat_store *s, const char *tenant, struct moat_store_rule **out,
                         size_t *n)
{
	sqlite3_stmt *st;
	void *v = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	rc = read_stmt(s, ST_RULE_LIST, &st);
	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, tenant) != SQLITE_OK)
		return bind_err(s);
	rc = collect(s, st, &rule_kind, &v, n);
	*out = v;
	return rc;
}

/* ---- API tokens --------------------------------------------------------------------------- */

static int token_write(struct moat_store *s, const struct moat_store_token *t)
{
	sqlite3_stmt *st;
	int rc = stmt(s, ST_TOKEN_INSERT, &st);
	int b;

	if (rc != MOAT_OK)
		return rc;
	b = bind_text(st, 1, t->id) | bind_text(st, 2, t->name) | bind_text(st, 3, t->tenant) |
	    sqlite3_bind_blob(st, 4, t->hash, sizeof(t->hash), SQLITE_STATIC) |
	    sqlite3_bind_int64(st, 5, now_or(t->created_at)) |
	    sqlite3_bind_int64(st, 6, t->last_used_at);
	return b != SQLITE_OK ? bind_err(s) : run(s, st);
}

int moat_store_token_insert(struct moat_store *s, const struct moat_store_token *t)
{
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	return write_end(s, token_write(s, t));
}

int moat_store_token_delete(struct moat_store *s, const char *id)
{
	return delete_by(s, ST_TOKEN_DELETE, id, NULL, "token");
}

int moat_store_token_get(struct moat_store *s, const char *id, struct moat_store_token *out)
{
	sqlite3_stmt *st;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_stmt(s, ST_TOKEN_GET, &st);
	if (rc != MOAT_OK)
		return rc;
	if (bind_text(st, 1, id) != SQLITE_OK)
		return bind_err(s);
	return fetch(s, st, &token_kind, out);
}

int moat_store_token_list(struct moat_store *s, const char *tenant, struct moat_store_token **out,
                          size_t *n)
{
	sqlite3_stmt *st;
	void *v = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	rc = read_stmt(s, tenant != NULL ? ST_TOKEN_LIST_TENANT : ST_TOKEN_LIST_ALL, &st);
	if (rc != MOAT_OK)
		return rc;
	if (tenant != NULL && bind_text(st, 1, tenant) != SQLITE_OK)
		return bind_err(s);
	rc = collect(s, st, &token_kind, &v, n);
	*out = v;
	return rc;
}

int moat_store_token_touch(struct moat_store *s, const char *id, int64_t at)
{
	sqlite3_stmt *st;
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = stmt(s, ST_TOKEN_TOUCH, &st);
	if (rc == MOAT_OK) {
		int b = bind_text(st, 1, id) | sqlite3_bind_int64(st, 2, at);

		rc = b != SQLITE_OK ? bind_err(s) : run_one(s, st, "token");
	}
	return write_end(s, rc);
}

int moat_store_token_count_operator(struct moat_store *s, uint64_t *n)
{
	sqlite3_stmt *st;
	int64_t count = 0;
	int rc;

	*n = 0;
	rc = read_stmt(s, ST_TOKEN_COUNT_OPERATOR, &st);
	if (rc == MOAT_OK)
		rc = query_int(s, st, &count);
	if (rc == MOAT_OK)
		*n = (uint64_t)count;
	return rc;
}

/* ---- audit log ---------------------------------------------------------------------------- */

static int audit_write(struct moat_store *s, const struct moat_store_audit *a, int64_t at,
                       int64_t *seq)
{
	sqlite3_stmt *st;
	int rc = stmt(s, ST_AUDIT_ADD, &st);
	int b;

	if (rc != MOAT_OK)
		return rc;
	b = sqlite3_bind_int64(st, 1, at) | bind_text(st, 2, a->actor) |
	    bind_text(st, 3, a->source) | bind_text(st, 4, a->tenant) |
	    bind_text(st, 5, a->action) | bind_text(st, 6, a->object) | bind_text(st, 7, a->detail);
	if (b != SQLITE_OK)
		return bind_err(s);
	rc = run(s, st);
	if (rc == MOAT_OK)
		*seq = sqlite3_last_insert_rowid(s->db);
	return rc;
}

int moat_store_audit_add(struct moat_store *s, struct moat_store_audit *a)
{
	int64_t at = now_or(a->at), seq = 0;
	int rc = write_begin(s);

	if (rc != MOAT_OK)
		return rc;
	rc = write_end(s, audit_write(s, a, at, &seq));
	if (rc == MOAT_OK) {
		a->seq = seq;
		a->at = at;
	}
	return rc;
}

int moat_store_audit_list(struct moat_store *s, const char *tenant, int64_t before, unsigned limit,
                          struct moat_store_audit **out, size_t *n)
{
	sqlite3_stmt *st;
	void *v = NULL;
	int rc, b;

	*out = NULL;
	*n = 0;
	if (s->fail)
		return injected(s);
	/* one more than a page: the API asks for it to know whether another page follows */
	if (limit < 1 || limit > PAGE_MAX + 1)
		return store_err(s, MOAT_EINVAL, "limit %u is not within 1..%d", limit,
		                 PAGE_MAX + 1);
	rc = stmt(s, tenant != NULL ? ST_AUDIT_LIST_TENANT : ST_AUDIT_LIST_ALL, &st);
	if (rc != MOAT_OK)
		return rc;
	b = bind_text(st, 1, tenant) | sqlite3_bind_int64(st, 2, before > 0 ? before : INT64_MAX) |
	    sqlite3_bind_int(st, 3, (int)limit);
	if (b != SQLITE_OK)
		return bind_err(s);
	rc = collect(s, st, &audit_kind, &v, n);
	*out = v;
	return rc;
}
