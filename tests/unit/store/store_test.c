/*
 * Tests for the SQLite store (src/store/sqlite.c, records.c, migrations.c): opening (file
 * modes, reopening, a schema too new, files that are not stores), the schema against
 * src/store/schema.sql, every object's writes and reads with their failures, cascades,
 * device list filters and pages, transactions, the change counter, the failure hook, and a
 * hundred thousand devices streamed back.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "core/alloc.h"
#include "store/migrations.h"
#include "store/store.h"

static struct {
	char dir[64];
	char path[128];
	unsigned serial;
	struct moat_store *s;
} F;

/* ---- fixture ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(F.dir, sizeof(F.dir), "/tmp/moat-storetest-XXXXXX");
	return mkdtemp(F.dir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	nftw(F.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* Every test gets a store of its own. */
static int setup(void **state)
{
	const char *err = NULL;

	(void)state;
	snprintf(F.path, sizeof(F.path), "%s/store-%u.db", F.dir, ++F.serial);
	if (moat_store_open(F.path, &err, &F.s) != MOAT_OK) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	moat_store_close(F.s);
	F.s = NULL;
	return 0;
}

/* ---- record builders (strings point at literals: records to insert are not cleared) ------- */

static struct moat_store_tenant tenant_rec(const char *name)
{
	static char *hosts[] = {"acme.devices.local", "*.acme.example"};
	static char *allow[] = {"/firmware/", "/health"};
	struct moat_store_tenant t;

	memset(&t, 0, sizeof(t));
	t.name = (char *)name;
	t.hosts.v = hosts;
	t.hosts.n = 2;
	t.origin = "http://127.0.0.1:8080";
	t.quarantine_allow.v = allow;
	t.quarantine_allow.n = 2;
	t.server_cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	t.server_key_file = "keys/acme/server.key";
	t.server_cert_generated = 1;
	return t;
}

static void add_tenant(const char *name)
{
	struct moat_store_tenant t = tenant_rec(name);

	assert_int_equal(moat_store_tenant_insert(F.s, &t), MOAT_OK);
}

static struct moat_store_device device_rec(const char *tenant, const char *id, char **tags,
                                           size_t ntags)
{
	struct moat_store_device d;

	memset(&d, 0, sizeof(d));
	d.tenant = (char *)tenant;
	d.id = (char *)id;
	d.model = "cam-x";
	d.firmware = "1.2.0";
	d.tags.v = tags;
	d.tags.n = ntags;
	d.owner = "ops@acme.example";
	d.state = MOAT_DEVICE_ACTIVE;
	return d;
}

static struct moat_store_cert cert_rec(const char *fp, const char *tenant, const char *device,
                                       int64_t issued_at)
{
	struct moat_store_cert c;

	memset(&c, 0, sizeof(c));
	c.fingerprint = (char *)fp;
	c.tenant = (char *)tenant;
	c.device = (char *)device;
	c.serial = "4F2A";
	c.not_after = 2000000000;
	c.issued_at = issued_at;
	return c;
}

static struct moat_store_rule rule_rec(const char *tenant, const char *id, int64_t position)
{
	struct moat_store_rule r;

	memset(&r, 0, sizeof(r));
	r.tenant = (char *)tenant;
	r.id = (char *)id;
	r.position = position;
	r.name = (char *)id;
	r.expr = "http.request.uri.path == \"/\"";
	r.action = "block";
	r.mode = "enforce";
	r.scope = "http";
	r.enabled = 1;
	return r;
}

static struct moat_store_token token_rec(const char *id, const char *tenant, int64_t created)
{
	struct moat_store_token t;

	memset(&t, 0, sizeof(t));
	t.id = (char *)id;
	t.name = "ci";
	t.tenant = (char *)tenant;
	for (size_t i = 0; i < sizeof(t.hash); i++)
		t.hash[i] = (unsigned char)(i * 7 + id[0]);
	t.created_at = created;
	return t;
}

static int64_t add_audit(const char *tenant, const char *action)
{
	struct moat_store_audit a;

	memset(&a, 0, sizeof(a));
	a.actor = "6f1c2a9e0b3d4c5a";
	a.source = "127.0.0.1";
	a.tenant = (char *)tenant;
	a.action = (char *)action;
	a.object = "acme/cam-0001";
	a.detail = "{\"why\":\"test\"}";
	assert_int_equal(moat_store_audit_add(F.s, &a), MOAT_OK);
	assert_true(a.seq > 0);
	assert_true(a.at > 0);
	return a.seq;
}

/* Rows of a table for a tenant, read around the store through a second connection. */
static long long rows_of(const char *table, const char *tenant)
{
	char sql[160];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	long long n = -1;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE tenant = ?1", table);
	assert_int_equal(sqlite3_open_v2(F.path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* ---- opening ------------------------------------------------------------------------------ */

static void assert_mode_0600(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		fail_msg("%s: %s", path, strerror(errno));
	if ((st.st_mode & 0777) != 0600)
		fail_msg("%s has mode %o", path, (unsigned)(st.st_mode & 0777));
}

static void test_open_private(void **state)
{
	struct moat_store *s = NULL;
	const char *err = NULL;
	char path[160], side[176];
	mode_t old = umask(0); /* the modes must not depend on the umask */

	(void)state;
	snprintf(path, sizeof(path), "%s/private.db", F.dir);
	assert_int_equal(moat_store_open(path, &err, &s), MOAT_OK);
	umask(old);
	assert_non_null(s);
	assert_int_equal(moat_store_schema_version(s), MOAT_STORE_SCHEMA_VERSION);
	{
		struct moat_store_tenant t = tenant_rec("acme");

		assert_int_equal(moat_store_tenant_insert(s, &t), MOAT_OK);
	}
	assert_mode_0600(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	assert_mode_0600(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	assert_mode_0600(side);
	moat_store_close(s);
}

static void test_reopen_keeps_data(void **state)
{
	struct moat_store_tenant t;
	const char *err = NULL;

	(void)state;
	add_tenant("acme");
	moat_store_close(F.s);
	F.s = NULL;
	assert_int_equal(moat_store_open(F.path, &err, &F.s), MOAT_OK);
	assert_int_equal(moat_store_tenant_get(F.s, "acme", &t), MOAT_OK);
	assert_string_equal(t.name, "acme");
	assert_int_equal(t.hosts.n, 2);
	moat_store_tenant_clear(&t);
	assert_int_equal(moat_store_schema_version(F.s), MOAT_STORE_SCHEMA_VERSION);
}

static void test_schema_too_new(void **state)
{
	struct moat_store *s = (struct moat_store *)&s;
	const char *err = NULL;
	sqlite3 *db = NULL;

	(void)state;
	add_tenant("acme");
	moat_store_close(F.s);
	F.s = NULL;
	assert_int_equal(sqlite3_open(F.path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(moat_store_open(F.path, &err, &s), MOAT_EINVAL);
	assert_null(s);
	assert_non_null(err);
	assert_non_null(strstr(err, F.path));
	assert_non_null(
	        strstr(err, "has schema version 99; this moatd knows up to 1: upgrade moatd"));

	/* refused, not changed: an older binary never rewrites a newer store */
	assert_int_equal(sqlite3_open(F.path, &db), SQLITE_OK);
	{
		sqlite3_stmt *st = NULL;

		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
		                 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(st, 0), 99);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
}

static void test_open_failures(void **state)
{
	struct moat_store *s = NULL;
	const char *err = NULL;
	char path[160];
	int fd;

	(void)state;
	/* a directory that does not exist */
	snprintf(path, sizeof(path), "%s/missing/store.db", F.dir);
	assert_int_equal(moat_store_open(path, &err, &s), MOAT_EIO);
	assert_null(s);
	assert_non_null(strstr(err, path));

	/* a file that is not a database */
	snprintf(path, sizeof(path), "%s/garbage.db", F.dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(write(fd, "this is not a SQLite database, not at all.\n", 43), 43);
	close(fd);
	err = NULL;
	assert_int_equal(moat_store_open(path, &err, &s), MOAT_EIO);
	assert_null(s);
	assert_non_null(strstr(err, "not a database"));
}

static void test_migrations_list(void **state)
{
	(void)state;
	assert_int_equal(moat_store_migrations_count, MOAT_STORE_SCHEMA_VERSION);
	for (size_t i = 0; i < moat_store_migrations_count; i++) {
		assert_int_equal(moat_store_migrations[i].version, (int)i + 1);
		assert_non_null(moat_store_migrations[i].sql);
	}
}

/* The schema objects of a database, one line each, in name order. */
static char *schema_of(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT type, name, tbl_name, sql FROM sqlite_master "
	                                    "WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		fprintf(f, "%s %s %s %s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
		        sqlite3_column_text(st, 2), sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	fclose(f);
	return out;
}

/* src/store/schema.sql is the reference: migration 1 must create exactly what it says. */
static void test_schema_matches_reference(void **state)
{
	char *text = NULL, *want, *have, *err = NULL;
	size_t len = 0;
	sqlite3 *ref = NULL, *db = NULL;
	FILE *f = fopen("src/store/schema.sql", "r");

	(void)state;
	if (f == NULL)
		skip(); /* run from elsewhere than the source tree */
	assert_true(getdelim(&text, &len, '\0', f) > 0);
	fclose(f);
	assert_int_equal(sqlite3_open(":memory:", &ref), SQLITE_OK);
	if (sqlite3_exec(ref, text, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("schema.sql: %s", err);
	free(text);
	assert_int_equal(sqlite3_open_v2(F.path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	want = schema_of(ref);
	have = schema_of(db);
	assert_non_null(strstr(want, "CREATE TABLE devices"));
	assert_string_equal(have, want);
	free(want);
	free(have);
	sqlite3_close(ref);
	sqlite3_close(db);
}

/* ---- tenants ------------------------------------------------------------------------------ */

static void test_tenant_crud(void **state)
{
	struct moat_store_tenant t = tenant_rec("acme"), got, *v = NULL;
	char *one_host[] = {"beta.local"};
	int64_t before = (int64_t)time(NULL);
	size_t n = 0;

	(void)state;
	assert_int_equal(moat_store_tenant_insert(F.s, &t), MOAT_OK);
	assert_int_equal(moat_store_tenant_insert(F.s, &t), MOAT_EEXIST);

	assert_int_equal(moat_store_tenant_get(F.s, "acme", &got), MOAT_OK);
	assert_string_equal(got.name, "acme");
	assert_int_equal(got.hosts.n, 2);
	assert_string_equal(got.hosts.v[0], "acme.devices.local");
	assert_string_equal(got.hosts.v[1], "*.acme.example");
	assert_string_equal(got.origin, "http://127.0.0.1:8080");
	assert_null(got.tcp_origin);
	assert_null(got.origin_ca);
	assert_int_equal(got.quarantine_allow.n, 2);
	assert_string_equal(got.quarantine_allow.v[1], "/health");
	assert_string_equal(got.server_cert, t.server_cert);
	assert_string_equal(got.server_key_file, "keys/acme/server.key");
	assert_int_equal(got.server_cert_generated, 1);
	assert_true(got.created_at >= before && got.created_at <= (int64_t)time(NULL));
	assert_int_equal(got.updated_at, got.created_at);
	moat_store_tenant_clear(&got);
	assert_null(got.name);

	/* update replaces every field but the name and created_at; empty lists stay lists */
	t.hosts.v = one_host;
	t.hosts.n = 1;
	t.quarantine_allow.v = NULL;
	t.quarantine_allow.n = 0;
	t.origin = NULL;
	t.tcp_origin = "tls://127.0.0.1:9000";
	t.server_cert_generated = 0;
	assert_int_equal(moat_store_tenant_update(F.s, &t), MOAT_OK);
	assert_int_equal(moat_store_tenant_get(F.s, "acme", &got), MOAT_OK);
	assert_int_equal(got.hosts.n, 1);
	assert_string_equal(got.hosts.v[0], "beta.local");
	assert_int_equal(got.quarantine_allow.n, 0);
	assert_null(got.quarantine_allow.v);
	assert_null(got.origin);
	assert_string_equal(got.tcp_origin, "tls://127.0.0.1:9000");
	assert_int_equal(got.server_cert_generated, 0);
	moat_store_tenant_clear(&got);

	add_tenant("zeta");
	add_tenant("beta");
	assert_int_equal(moat_store_tenant_list(F.s, &v, &n), MOAT_OK);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "acme");
	assert_string_equal(v[1].name, "beta");
	assert_string_equal(v[2].name, "zeta");
	assert_int_equal(v[1].hosts.n, 2);
	moat_store_tenants_free(v, n);

	assert_int_equal(moat_store_tenant_delete(F.s, "beta"), MOAT_OK);
	assert_int_equal(moat_store_tenant_delete(F.s, "beta"), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_tenant_get(F.s, "beta", &got), MOAT_ENOTFOUND);
	assert_null(got.name);
	t.name = "nobody";
	assert_int_equal(moat_store_tenant_update(F.s, &t), MOAT_ENOTFOUND);
	assert_non_null(strstr(moat_store_error(F.s), "no such tenant"));

	/* a list holding NULL is refused, and nothing is written */
	{
		char *bad[] = {"ok.local", NULL};
		struct moat_store_tenant b = tenant_rec("bad");

		b.hosts.v = bad;
		b.hosts.n = 2;
		assert_int_equal(moat_store_tenant_insert(F.s, &b), MOAT_EINVAL);
		assert_int_equal(moat_store_tenant_get(F.s, "bad", &got), MOAT_ENOTFOUND);
	}
}

/* ---- device CAs --------------------------------------------------------------------------- */

static struct moat_store_ca ca_rec(const char *tenant, const char *fp, const char *key_file)
{
	struct moat_store_ca c;

	memset(&c, 0, sizeof(c));
	c.tenant = (char *)tenant;
	c.cert = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
	c.key_file = (char *)key_file;
	c.subject = "CN=acme device CA";
	c.fingerprint = (char *)fp;
	c.not_after = 2100000000;
	c.generated = key_file != NULL;
	return c;
}

static void test_ca_crud(void **state)
{
	struct moat_store_ca a = ca_rec("acme", "5e1f", "keys/acme/ca-1.key");
	struct moat_store_ca b = ca_rec("acme", "77aa", NULL);
	struct moat_store_ca *v = NULL;
	size_t n = 0;

	(void)state;
	add_tenant("acme");
	add_tenant("beta");
	assert_int_equal(moat_store_ca_insert(F.s, &a), MOAT_OK);
	assert_int_equal(moat_store_ca_insert(F.s, &b), MOAT_OK);
	assert_true(a.id > 0);
	assert_true(b.id > a.id);
	assert_true(a.created_at > 0);

	{
		struct moat_store_ca dup = ca_rec("acme", "5e1f", NULL);
		struct moat_store_ca other = ca_rec("beta", "5e1f", NULL);
		struct moat_store_ca orphan = ca_rec("nobody", "0000", NULL);

		assert_int_equal(moat_store_ca_insert(F.s, &dup), MOAT_EEXIST);
		assert_int_equal(dup.id, 0); /* not set on failure */
		assert_int_equal(moat_store_ca_insert(F.s, &other), MOAT_OK);
		assert_int_equal(moat_store_ca_insert(F.s, &orphan), MOAT_ENOTFOUND);
	}

	assert_int_equal(moat_store_ca_list(F.s, "acme", &v, &n), MOAT_OK);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, a.id);
	assert_string_equal(v[0].tenant, "acme");
	assert_string_equal(v[0].fingerprint, "5e1f");
	assert_string_equal(v[0].key_file, "keys/acme/ca-1.key");
	assert_string_equal(v[0].subject, "CN=acme device CA");
	assert_string_equal(v[0].cert, a.cert);
	assert_int_equal(v[0].not_after, 2100000000);
	assert_int_equal(v[0].generated, 1);
	assert_int_equal(v[0].created_at, a.created_at);
	assert_null(v[1].key_file);
	assert_int_equal(v[1].generated, 0);
	moat_store_cas_free(v, n);

	assert_int_equal(moat_store_ca_delete(F.s, "acme", a.id), MOAT_OK);
	assert_int_equal(moat_store_ca_delete(F.s, "acme", a.id), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_ca_delete(F.s, "beta", b.id), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_ca_list(F.s, "acme", &v, &n), MOAT_OK);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, b.id);
	moat_store_cas_free(v, n);

	/* ids are never reused */
	{
		struct moat_store_ca c = ca_rec("acme", "9999", NULL);

		assert_int_equal(moat_store_ca_delete(F.s, "acme", b.id), MOAT_OK);
		assert_int_equal(moat_store_ca_insert(F.s, &c), MOAT_OK);
		assert_true(c.id > b.id + 1);
	}
}

/* ---- devices ------------------------------------------------------------------------------ */

static void test_device_crud(void **state)
{
	char *tags[] = {"outdoor", "batch-7", "outdoor"};
	char *tags2[] = {"indoor"};
	struct moat_store_device d = device_rec("acme", "cam-0001", tags, 3), got;
	uint64_t count = 99;

	(void)state;
	add_tenant("acme");
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_EEXIST);

	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-0001", &got), MOAT_OK);
	assert_string_equal(got.tenant, "acme");
	assert_string_equal(got.id, "cam-0001");
	assert_string_equal(got.model, "cam-x");
	assert_string_equal(got.firmware, "1.2.0");
	assert_string_equal(got.owner, "ops@acme.example");
	assert_int_equal(got.state, MOAT_DEVICE_ACTIVE);
	/* in the order given, a repeated tag once */
	assert_int_equal(got.tags.n, 2);
	assert_string_equal(got.tags.v[0], "outdoor");
	assert_string_equal(got.tags.v[1], "batch-7");
	assert_true(got.created_at > 0);
	assert_int_equal(got.updated_at, got.created_at);
	moat_store_device_clear(&got);

	/* a given created_at is kept */
	{
		struct moat_store_device e = device_rec("acme", "cam-0002", NULL, 0);

		e.created_at = 1700000000;
		e.model = NULL;
		e.firmware = NULL;
		e.owner = NULL;
		assert_int_equal(moat_store_device_insert(F.s, &e), MOAT_OK);
		assert_int_equal(moat_store_device_get(F.s, "acme", "cam-0002", &got), MOAT_OK);
		assert_int_equal(got.created_at, 1700000000);
		assert_null(got.model);
		assert_null(got.firmware);
		assert_null(got.owner);
		assert_int_equal(got.tags.n, 0);
		assert_null(got.tags.v);
		moat_store_device_clear(&got);
	}

	d.model = "cam-y";
	d.firmware = NULL;
	d.tags.v = tags2;
	d.tags.n = 1;
	d.state = MOAT_DEVICE_QUARANTINED;
	assert_int_equal(moat_store_device_update(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-0001", &got), MOAT_OK);
	assert_string_equal(got.model, "cam-y");
	assert_null(got.firmware);
	assert_int_equal(got.state, MOAT_DEVICE_QUARANTINED);
	assert_int_equal(got.tags.n, 1);
	assert_string_equal(got.tags.v[0], "indoor");
	moat_store_device_clear(&got);

	assert_int_equal(moat_store_device_count(F.s, "acme", &count), MOAT_OK);
	assert_int_equal(count, 2);
	assert_int_equal(moat_store_device_count(F.s, "nobody", &count), MOAT_OK);
	assert_int_equal(count, 0);

	assert_int_equal(moat_store_device_delete(F.s, "acme", "cam-0001"), MOAT_OK);
	assert_int_equal(moat_store_device_delete(F.s, "acme", "cam-0001"), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-0001", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_device_update(F.s, &d), MOAT_ENOTFOUND);
	assert_int_equal(rows_of("device_tags", "acme"), 0);

	/* a device of a tenant that does not exist; a state that does not exist */
	d.tenant = "nobody";
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_ENOTFOUND);
	d.tenant = "acme";
	d.state = (enum moat_device_state)7;
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_EINVAL);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-0001", &got), MOAT_ENOTFOUND);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(moat_device_state_name(MOAT_DEVICE_ACTIVE), "active");
	assert_string_equal(moat_device_state_name(MOAT_DEVICE_QUARANTINED), "quarantined");
	assert_string_equal(moat_device_state_name(MOAT_DEVICE_REVOKED), "revoked");
	assert_string_equal(moat_device_state_name((enum moat_device_state)9), "unknown");
	assert_int_equal(moat_device_state_parse("active"), MOAT_DEVICE_ACTIVE);
	assert_int_equal(moat_device_state_parse("quarantined"), MOAT_DEVICE_QUARANTINED);
	assert_int_equal(moat_device_state_parse("revoked"), MOAT_DEVICE_REVOKED);
	assert_int_equal(moat_device_state_parse("Active"), -1);
	assert_int_equal(moat_device_state_parse(""), -1);
	assert_int_equal(moat_device_state_parse(NULL), -1);
}

/* 40 devices dev-00 .. dev-39: state by i % 3, model by i % 2, firmware by i % 4; tags
 * "out" on multiples of 5, "outdoor" on every even one (a substring of it must not match). */
static void add_filter_devices(void)
{
	char *out_tag[] = {"batch", "out"};
	char *outdoor_tag[] = {"outdoor"};
	char *both[] = {"outdoor", "out"};
	char id[16], fw[16];

	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	for (int i = 0; i < 40; i++) {
		struct moat_store_device d;
		int five = i % 5 == 0, even = i % 2 == 0;

		snprintf(id, sizeof(id), "dev-%02d", i);
		snprintf(fw, sizeof(fw), "1.%d", i % 4);
		d = device_rec("acme", id, NULL, 0);
		if (five && even)
			d.tags.v = both, d.tags.n = 2;
		else if (five)
			d.tags.v = out_tag, d.tags.n = 2;
		else if (even)
			d.tags.v = outdoor_tag, d.tags.n = 1;
		d.state = (enum moat_device_state)(i % 3);
		d.model = i % 2 ? "cam-odd" : "cam-even";
		d.firmware = fw;
		assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	}
	assert_int_equal(moat_store_commit(F.s), MOAT_OK);
}

/* Lists every page with the filter and returns the ids seen, comma-separated. */
static void list_all(struct moat_store_device_filter f, char *out, size_t cap, int *pages)
{
	char after[32] = "";
	size_t len = 0;

	out[0] = '\0';
	*pages = 0;
	for (;;) {
		struct moat_store_device *v = NULL;
		size_t n = 0;
		int more = -1;

		f.after = after[0] != '\0' ? after : NULL;
		assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_OK);
		(*pages)++;
		assert_true(n <= f.limit);
		for (size_t i = 0; i < n; i++) {
			len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "," : "",
			                        v[i].id);
			assert_true(len < cap);
			assert_string_equal(v[i].tenant, "acme");
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", v[n - 1].id);
		moat_store_devices_free(v, n);
		if (!more)
			break;
		assert_int_equal(n, f.limit); /* a page with more after it is full */
	}
}

/* The ids dev-NN for which keep(i) holds, comma-separated. */
static void expect_ids(int (*keep)(int), char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (int i = 0; i < 40; i++)
		if (keep(i))
			len += (size_t)snprintf(out + len, cap - len, "%sdev-%02d", len ? "," : "",
			                        i);
}

static int all_ids(int i)
{
	return i >= 0;
}

static int quarantined_ids(int i)
{
	return i % 3 == MOAT_DEVICE_QUARANTINED;
}

static int out_ids(int i)
{
	return i % 5 == 0;
}

static int outdoor_ids(int i)
{
	return i % 2 == 0;
}

static int combined_ids(int i)
{
	/* active, model cam-even, firmware 1.2, tag outdoor */
	return i % 3 == 0 && i % 2 == 0 && i % 4 == 2;
}

static int revoked_out_ids(int i)
{
	return i % 3 == MOAT_DEVICE_REVOKED && i % 5 == 0;
}

static void check_listing(struct moat_store_device_filter f, int (*keep)(int), int want_pages)
{
	char have[1024], want[1024];
	int pages = 0;

	list_all(f, have, sizeof(have), &pages);
	expect_ids(keep, want, sizeof(want));
	assert_string_equal(have, want);
	if (want_pages > 0)
		assert_int_equal(pages, want_pages);
}

static void test_device_list(void **state)
{
	struct moat_store_device_filter f = {.state = -1, .limit = 7};
	struct moat_store_device *v = NULL;
	size_t n = 9;
	int more = 9;

	(void)state;
	add_tenant("acme");
	add_tenant("beta");
	add_filter_devices();
	{
		struct moat_store_device other = device_rec("beta", "dev-00", NULL, 0);

		assert_int_equal(moat_store_device_insert(F.s, &other), MOAT_OK);
	}

	check_listing(f, all_ids, 6); /* 40 in pages of 7 */
	f.limit = 40;
	check_listing(f, all_ids, 1);
	f.limit = 1000;
	check_listing(f, all_ids, 1);

	f.limit = 3;
	f.state = MOAT_DEVICE_QUARANTINED;
	check_listing(f, quarantined_ids, 0);

	f.state = -1;
	f.tag = "out";
	check_listing(f, out_ids, 0);
	f.tag = "outdoor";
	check_listing(f, outdoor_ids, 0);
	f.tag = "outd"; /* a piece of a tag is not a tag */
	{
		char buf[64];
		int pages;

		list_all(f, buf, sizeof(buf), &pages);
		assert_string_equal(buf, "");
		assert_int_equal(pages, 1);
	}

	f.tag = "outdoor";
	f.state = MOAT_DEVICE_ACTIVE;
	f.model = "cam-even";
	f.firmware = "1.2";
	check_listing(f, combined_ids, 0);

	f.model = NULL;
	f.firmware = NULL;
	f.tag = "out";
	f.state = MOAT_DEVICE_REVOKED;
	f.limit = 1;
	check_listing(f, revoked_out_ids, 0);

	/* model and firmware filters are exact */
	f.tag = NULL;
	f.state = -1;
	f.limit = 100;
	f.model = "cam";
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_OK);
	assert_int_equal(n, 0);
	assert_int_equal(more, 0);
	moat_store_devices_free(v, n);
	f.model = NULL;
	f.firmware = "1.3";
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_OK);
	assert_int_equal(n, 10);
	assert_string_equal(v[0].id, "dev-03");
	assert_string_equal(v[0].firmware, "1.3");
	moat_store_devices_free(v, n);

	/* the records of a page carry their tags */
	f.firmware = NULL;
	f.after = "dev-09";
	f.limit = 2;
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_OK);
	assert_int_equal(n, 2);
	assert_int_equal(more, 1);
	assert_string_equal(v[0].id, "dev-10");
	assert_int_equal(v[0].tags.n, 2);
	assert_string_equal(v[0].tags.v[0], "outdoor");
	assert_string_equal(v[0].tags.v[1], "out");
	assert_int_equal(v[1].tags.n, 0);
	assert_int_equal(v[1].state, 11 % 3);
	moat_store_devices_free(v, n);

	/* the last page */
	f.after = "dev-38";
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_OK);
	assert_int_equal(n, 1);
	assert_int_equal(more, 0);
	moat_store_devices_free(v, n);

	/* limits outside 1..1000, unknown states */
	f.after = NULL;
	f.limit = 0;
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_EINVAL);
	assert_null(v);
	assert_int_equal(n, 0);
	f.limit = 1001;
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_EINVAL);
	f.limit = 10;
	f.state = 3;
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_EINVAL);
	f.state = -2;
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_EINVAL);
	assert_int_equal(moat_store_device_list(F.s, "acme", NULL, &v, &n, &more), MOAT_EINVAL);
}

struct walk {
	unsigned count;
	unsigned stop_at;
	char last[64];
	int ordered;
	unsigned tagged;
};

static int walk_device(void *arg, const struct moat_store_device *d)
{
	struct walk *w = arg;

	if (w->count > 0 && strcmp(w->last, d->id) >= 0)
		w->ordered = 0;
	snprintf(w->last, sizeof(w->last), "%s", d->id);
	if (d->tags.n > 0)
		w->tagged++;
	w->count++;
	return w->stop_at != 0 && w->count == w->stop_at ? 42 : 0;
}

/* Checks each device's tags against the pattern of add_filter_devices. */
static int walk_check_tags(void *arg, const struct moat_store_device *d)
{
	int i = (int)strtol(d->id + 4, NULL, 10);
	size_t want = (i % 5 == 0 ? 1u : 0u) + (i % 2 == 0 ? 1u : 0u);

	(void)arg;
	if (i % 5 == 0 && i % 2 != 0)
		want = 2; /* batch, out */
	assert_int_equal(d->tags.n, want);
	if (i % 5 == 0 && i % 2 == 0) {
		assert_string_equal(d->tags.v[0], "outdoor");
		assert_string_equal(d->tags.v[1], "out");
	} else if (i % 5 == 0) {
		assert_string_equal(d->tags.v[0], "batch");
		assert_string_equal(d->tags.v[1], "out");
	} else if (i % 2 == 0) {
		assert_string_equal(d->tags.v[0], "outdoor");
	} else {
		assert_null(d->tags.v);
	}
	assert_int_equal(d->state, i % 3);
	assert_string_equal(d->tenant, "acme");
	return 0;
}

static void test_device_each(void **state)
{
	struct walk w;

	(void)state;
	add_tenant("acme");
	add_tenant("beta");
	add_filter_devices();
	{
		char *t[] = {"x"};
		struct moat_store_device other = device_rec("beta", "dev-05", t, 1);

		assert_int_equal(moat_store_device_insert(F.s, &other), MOAT_OK);
	}
	memset(&w, 0, sizeof(w));
	w.ordered = 1;
	assert_int_equal(moat_store_device_each(F.s, "acme", walk_device, &w), MOAT_OK);
	assert_int_equal(w.count, 40);
	assert_true(w.ordered);
	assert_int_equal(w.tagged, 24); /* 20 even + 4 odd multiples of 5 */
	assert_int_equal(moat_store_device_each(F.s, "acme", walk_check_tags, NULL), MOAT_OK);

	/* the callback's answer stops the walk and comes back */
	memset(&w, 0, sizeof(w));
	w.stop_at = 5;
	assert_int_equal(moat_store_device_each(F.s, "acme", walk_device, &w), 42);
	assert_int_equal(w.count, 5);
	/* and the statements were reset: a new walk starts over */
	memset(&w, 0, sizeof(w));
	assert_int_equal(moat_store_device_each(F.s, "beta", walk_device, &w), MOAT_OK);
	assert_int_equal(w.count, 1);
	assert_int_equal(w.tagged, 1);
	memset(&w, 0, sizeof(w));
	assert_int_equal(moat_store_device_each(F.s, "nobody", walk_device, &w), MOAT_OK);
	assert_int_equal(w.count, 0);
}

/* ---- certificates ------------------------------------------------------------------------- */

struct revoked {
	char seen[256];
	size_t len;
	int64_t at;
};

static int collect_revoked(void *arg, const struct moat_store_cert *c)
{
	struct revoked *r = arg;

	r->len += (size_t)snprintf(r->seen + r->len, sizeof(r->seen) - r->len, "%s%s:%s",
	                           r->len ? "," : "", c->fingerprint, c->device);
	r->at = c->revoked_at;
	assert_string_equal(c->tenant, "acme");
	assert_string_equal(c->serial, "4F2A");
	return 0;
}

static void test_certs(void **state)
{
	struct moat_store_device d = device_rec("acme", "cam-1", NULL, 0);
	struct moat_store_cert *v = NULL;
	struct revoked r;
	size_t n = 0;

	(void)state;
	add_tenant("acme");
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	{
		struct moat_store_cert c1 = cert_rec("cc01", "acme", "cam-1", 1000);
		struct moat_store_cert c2 = cert_rec("aa02", "acme", "cam-1", 2000);
		struct moat_store_cert c3 = cert_rec("bb03", "acme", "cam-2", 1500);
		struct moat_store_cert c4 = cert_rec("dd04", "acme", "cam-1", 2000);

		assert_int_equal(moat_store_cert_insert(F.s, &c1), MOAT_OK);
		assert_int_equal(moat_store_cert_insert(F.s, &c2), MOAT_OK);
		assert_int_equal(moat_store_cert_insert(F.s, &c3), MOAT_OK);
		assert_int_equal(moat_store_cert_insert(F.s, &c4), MOAT_OK);
		assert_int_equal(moat_store_cert_insert(F.s, &c1), MOAT_EEXIST);
		c1.tenant = "nobody";
		c1.fingerprint = "ee05";
		assert_int_equal(moat_store_cert_insert(F.s, &c1), MOAT_ENOTFOUND);
	}

	/* newest first; at the same second, the later insert first */
	assert_int_equal(moat_store_cert_list(F.s, "acme", "cam-1", &v, &n), MOAT_OK);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].fingerprint, "dd04");
	assert_string_equal(v[1].fingerprint, "aa02");
	assert_string_equal(v[2].fingerprint, "cc01");
	assert_string_equal(v[2].serial, "4F2A");
	assert_string_equal(v[2].device, "cam-1");
	assert_string_equal(v[2].tenant, "acme");
	assert_int_equal(v[2].not_after, 2000000000);
	assert_int_equal(v[2].issued_at, 1000);
	assert_int_equal(v[2].revoked_at, 0);
	moat_store_certs_free(v, n);

	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_cert_each_revoked(F.s, "acme", collect_revoked, &r), MOAT_OK);
	assert_string_equal(r.seen, "");

	assert_int_equal(moat_store_cert_revoke_device(F.s, "acme", "cam-1", 5000), MOAT_OK);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_cert_each_revoked(F.s, "acme", collect_revoked, &r), MOAT_OK);
	assert_string_equal(r.seen, "aa02:cam-1,cc01:cam-1,dd04:cam-1");
	assert_int_equal(r.at, 5000);

	/* a second revocation keeps the first time; nothing to revoke is no error */
	assert_int_equal(moat_store_cert_revoke_device(F.s, "acme", "cam-1", 6000), MOAT_OK);
	assert_int_equal(moat_store_cert_revoke_device(F.s, "acme", "cam-9", 6000), MOAT_OK);
	assert_int_equal(moat_store_cert_revoke_device(F.s, "acme", "cam-2", 7000), MOAT_OK);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_cert_each_revoked(F.s, "acme", collect_revoked, &r), MOAT_OK);
	assert_string_equal(r.seen, "aa02:cam-1,bb03:cam-2,cc01:cam-1,dd04:cam-1");
	assert_int_equal(moat_store_cert_list(F.s, "acme", "cam-1", &v, &n), MOAT_OK);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].revoked_at, 5000);
	moat_store_certs_free(v, n);

	/* deleting a device keeps its revoked certificates in the revocation list */
	assert_int_equal(moat_store_device_delete(F.s, "acme", "cam-1"), MOAT_OK);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_cert_each_revoked(F.s, "acme", collect_revoked, &r), MOAT_OK);
	assert_string_equal(r.seen, "aa02:cam-1,bb03:cam-2,cc01:cam-1,dd04:cam-1");

	/* the walk stops on the callback's word */
	assert_int_equal(moat_store_cert_list(F.s, "acme", "nobody", &v, &n), MOAT_OK);
	assert_int_equal(n, 0);
	moat_store_certs_free(v, n);
}

/* ---- rules -------------------------------------------------------------------------------- */

static void test_rules(void **state)
{
	struct moat_store_rule r = rule_rec("acme", "r-b", 0), got, *v = NULL;
	size_t n = 0;

	(void)state;
	add_tenant("acme");
	add_tenant("beta");
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_OK); /* 10 */
	r.id = "r-a";
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_OK); /* 20 */
	r.id = "r-c";
	r.position = 15;
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_OK);
	r.id = "r-d";
	r.position = 20; /* a tie: id breaks it */
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_OK);
	r.id = "r-e";
	r.position = 0;
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_OK); /* 30 */
	r.id = "r-a";
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_EEXIST);
	{
		struct moat_store_rule first = rule_rec("beta", "r-a", 0);

		assert_int_equal(moat_store_rule_insert(F.s, &first), MOAT_OK);
		first.tenant = "nobody";
		assert_int_equal(moat_store_rule_insert(F.s, &first), MOAT_ENOTFOUND);
		first.tenant = "beta";
		first.id = "r-x";
		first.expr = NULL;
		assert_int_equal(moat_store_rule_insert(F.s, &first), MOAT_EINVAL);
	}

	assert_int_equal(moat_store_rule_list(F.s, "acme", &v, &n), MOAT_OK);
	assert_int_equal(n, 5);
	assert_string_equal(v[0].id, "r-b");
	assert_int_equal(v[0].position, 10);
	assert_string_equal(v[1].id, "r-c");
	assert_string_equal(v[2].id, "r-a");
	assert_int_equal(v[2].position, 20);
	assert_string_equal(v[3].id, "r-d");
	assert_string_equal(v[4].id, "r-e");
	assert_int_equal(v[4].position, 30);
	moat_store_rules_free(v, n);
	assert_int_equal(moat_store_rule_list(F.s, "beta", &v, &n), MOAT_OK);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].position, 10);
	moat_store_rules_free(v, n);

	assert_int_equal(moat_store_rule_get(F.s, "acme", "r-c", &got), MOAT_OK);
	assert_string_equal(got.tenant, "acme");
	assert_string_equal(got.name, "r-b"); /* rule_rec's name, from the first insert */
	assert_string_equal(got.expr, "http.request.uri.path == \"/\"");
	assert_string_equal(got.action, "block");
	assert_string_equal(got.mode, "enforce");
	assert_string_equal(got.scope, "http");
	assert_int_equal(got.status, 0);
	assert_null(got.body);
	assert_null(got.description);
	assert_null(got.reference);
	assert_int_equal(got.enabled, 1);
	assert_true(got.created_at > 0);
	moat_store_rule_clear(&got);

	r = rule_rec("acme", "r-c", 5);
	r.name = "renamed";
	r.action = "log";
	r.mode = "dry-run";
	r.scope = "tcp";
	r.status = 451;
	r.body = "{\"blocked\":true}";
	r.description = "why";
	r.reference = "CVE-2026-0001";
	r.enabled = 0;
	r.created_at = 1; /* not replaced by an update */
	assert_int_equal(moat_store_rule_update(F.s, &r), MOAT_OK);
	assert_int_equal(moat_store_rule_get(F.s, "acme", "r-c", &got), MOAT_OK);
	assert_string_equal(got.name, "renamed");
	assert_string_equal(got.action, "log");
	assert_string_equal(got.mode, "dry-run");
	assert_string_equal(got.scope, "tcp");
	assert_int_equal(got.status, 451);
	assert_string_equal(got.body, "{\"blocked\":true}");
	assert_string_equal(got.description, "why");
	assert_string_equal(got.reference, "CVE-2026-0001");
	assert_int_equal(got.enabled, 0);
	assert_int_equal(got.position, 5);
	assert_true(got.created_at > 1);
	moat_store_rule_clear(&got);
	assert_int_equal(moat_store_rule_list(F.s, "acme", &v, &n), MOAT_OK);
	assert_string_equal(v[0].id, "r-c");
	moat_store_rules_free(v, n);

	assert_int_equal(moat_store_rule_delete(F.s, "acme", "r-c"), MOAT_OK);
	assert_int_equal(moat_store_rule_delete(F.s, "acme", "r-c"), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_rule_get(F.s, "acme", "r-c", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_rule_update(F.s, &r), MOAT_ENOTFOUND);
}

/* ---- tokens ------------------------------------------------------------------------------- */

static void test_tokens(void **state)
{
	struct moat_store_token a = token_rec("00000000000000a1", NULL, 300);
	struct moat_store_token b = token_rec("00000000000000b2", "acme", 100);
	struct moat_store_token c = token_rec("00000000000000c3", NULL, 200);
	struct moat_store_token d = token_rec("00000000000000d4", "acme", 400);
	struct moat_store_token got, *v = NULL;
	uint64_t ops = 9;
	size_t n = 0;

	(void)state;
	add_tenant("acme");
	assert_int_equal(moat_store_token_count_operator(F.s, &ops), MOAT_OK);
	assert_int_equal(ops, 0);
	assert_int_equal(moat_store_token_insert(F.s, &a), MOAT_OK);
	assert_int_equal(moat_store_token_insert(F.s, &b), MOAT_OK);
	assert_int_equal(moat_store_token_insert(F.s, &c), MOAT_OK);
	assert_int_equal(moat_store_token_insert(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_token_insert(F.s, &a), MOAT_EEXIST);
	{
		struct moat_store_token e = token_rec("00000000000000e5", "nobody", 1);

		assert_int_equal(moat_store_token_insert(F.s, &e), MOAT_ENOTFOUND);
	}
	assert_int_equal(moat_store_token_count_operator(F.s, &ops), MOAT_OK);
	assert_int_equal(ops, 2);

	assert_int_equal(moat_store_token_list(F.s, NULL, &v, &n), MOAT_OK);
	assert_int_equal(n, 4);
	assert_string_equal(v[0].id, b.id); /* by creation */
	assert_string_equal(v[1].id, c.id);
	assert_string_equal(v[2].id, a.id);
	assert_string_equal(v[3].id, d.id);
	moat_store_tokens_free(v, n);
	assert_int_equal(moat_store_token_list(F.s, "acme", &v, &n), MOAT_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, b.id);
	assert_string_equal(v[0].tenant, "acme");
	assert_string_equal(v[1].id, d.id);
	moat_store_tokens_free(v, n);

	assert_int_equal(moat_store_token_get(F.s, a.id, &got), MOAT_OK);
	assert_string_equal(got.id, a.id);
	assert_string_equal(got.name, "ci");
	assert_null(got.tenant);
	assert_memory_equal(got.hash, a.hash, sizeof(a.hash));
	assert_int_equal(got.created_at, 300);
	assert_int_equal(got.last_used_at, 0);
	moat_store_token_clear(&got);

	assert_int_equal(moat_store_token_touch(F.s, a.id, 12345), MOAT_OK);
	assert_int_equal(moat_store_token_get(F.s, a.id, &got), MOAT_OK);
	assert_int_equal(got.last_used_at, 12345);
	moat_store_token_clear(&got);
	assert_int_equal(moat_store_token_touch(F.s, "ffffffffffffffff", 1), MOAT_ENOTFOUND);

	assert_int_equal(moat_store_token_delete(F.s, a.id), MOAT_OK);
	assert_int_equal(moat_store_token_delete(F.s, a.id), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_token_get(F.s, a.id, &got), MOAT_ENOTFOUND);
	assert_null(got.id);
	assert_int_equal(moat_store_token_count_operator(F.s, &ops), MOAT_OK);
	assert_int_equal(ops, 1);
}

/* ---- audit -------------------------------------------------------------------------------- */

static void test_audit(void **state)
{
	struct moat_store_audit *v = NULL;
	int64_t seq[25];
	size_t n = 0;

	(void)state;
	for (int i = 0; i < 25; i++)
		seq[i] = add_audit(i % 2 ? "acme" : (i % 4 ? NULL : "beta"), "device.enroll");
	for (int i = 1; i < 25; i++)
		assert_true(seq[i] > seq[i - 1]);

	assert_int_equal(moat_store_audit_list(F.s, NULL, 0, 10, &v, &n), MOAT_OK);
	assert_int_equal(n, 10);
	assert_int_equal(v[0].seq, seq[24]);
	assert_int_equal(v[9].seq, seq[15]);
	assert_string_equal(v[0].actor, "6f1c2a9e0b3d4c5a");
	assert_string_equal(v[0].source, "127.0.0.1");
	assert_string_equal(v[0].action, "device.enroll");
	assert_string_equal(v[0].object, "acme/cam-0001");
	assert_string_equal(v[0].detail, "{\"why\":\"test\"}");
	assert_null(v[2].tenant); /* 22: neither */
	assert_true(v[0].at > 0);
	moat_store_audits_free(v, n);

	/* the next page, then the last */
	assert_int_equal(moat_store_audit_list(F.s, NULL, seq[15], 10, &v, &n), MOAT_OK);
	assert_int_equal(n, 10);
	assert_int_equal(v[0].seq, seq[14]);
	moat_store_audits_free(v, n);
	assert_int_equal(moat_store_audit_list(F.s, NULL, seq[5], 10, &v, &n), MOAT_OK);
	assert_int_equal(n, 5);
	assert_int_equal(v[4].seq, seq[0]);
	moat_store_audits_free(v, n);

	/* a tenant's entries */
	assert_int_equal(moat_store_audit_list(F.s, "acme", 0, 1000, &v, &n), MOAT_OK);
	assert_int_equal(n, 12);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i].tenant, "acme");
		assert_int_equal(v[i].seq, seq[23 - 2 * i]);
	}
	moat_store_audits_free(v, n);
	assert_int_equal(moat_store_audit_list(F.s, "acme", seq[23], 1, &v, &n), MOAT_OK);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].seq, seq[21]);
	moat_store_audits_free(v, n);

	assert_int_equal(moat_store_audit_list(F.s, NULL, 0, 0, &v, &n), MOAT_EINVAL);
	assert_int_equal(moat_store_audit_list(F.s, NULL, 0, 1002, &v, &n), MOAT_EINVAL);
	{
		struct moat_store_audit bad;

		memset(&bad, 0, sizeof(bad));
		bad.action = "x"; /* no actor */
		assert_int_equal(moat_store_audit_add(F.s, &bad), MOAT_EINVAL);
		assert_int_equal(bad.seq, 0);
	}
}

/* ---- cascade ------------------------------------------------------------------------------ */

static void fill_tenant(const char *name)
{
	char *tags[] = {"a", "b"};
	char fp[32];
	struct moat_store_ca ca;
	struct moat_store_device d = device_rec(name, "cam-1", tags, 2);
	struct moat_store_rule r = rule_rec(name, "r-1", 0);
	struct moat_store_token t = token_rec(
	        strcmp(name, "acme") == 0 ? "aaaaaaaaaaaaaaaa" : "bbbbbbbbbbbbbbbb", name, 0);
	struct moat_store_cert c;

	snprintf(fp, sizeof(fp), "%s-fp", name);
	ca = ca_rec(name, fp, NULL);
	c = cert_rec(fp, name, "cam-1", 1);
	add_tenant(name);
	assert_int_equal(moat_store_ca_insert(F.s, &ca), MOAT_OK);
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_cert_insert(F.s, &c), MOAT_OK);
	assert_int_equal(moat_store_cert_revoke_device(F.s, name, "cam-1", 10), MOAT_OK);
	assert_int_equal(moat_store_rule_insert(F.s, &r), MOAT_OK);
	assert_int_equal(moat_store_token_insert(F.s, &t), MOAT_OK);
	(void)add_audit(name, "tenant.create");
}

static void test_tenant_delete_cascades(void **state)
{
	static const char *const tables[] = {"cas",   "devices", "device_tags",
	                                     "certs", "rules",   "tokens"};
	struct moat_store_token op = token_rec("0000000000000000", NULL, 0), got;
	struct moat_store_audit *v = NULL;
	uint64_t count = 0;
	size_t n = 0;

	(void)state;
	fill_tenant("acme");
	fill_tenant("beta");
	assert_int_equal(moat_store_token_insert(F.s, &op), MOAT_OK);
	for (size_t i = 0; i < MOAT_ARRAY_LEN(tables); i++)
		assert_true(rows_of(tables[i], "acme") > 0);

	assert_int_equal(moat_store_tenant_delete(F.s, "acme"), MOAT_OK);
	for (size_t i = 0; i < MOAT_ARRAY_LEN(tables); i++) {
		if (rows_of(tables[i], "acme") != 0)
			fail_msg("%s still has rows of the deleted tenant", tables[i]);
		assert_true(rows_of(tables[i], "beta") > 0);
	}
	assert_int_equal(moat_store_token_get(F.s, "aaaaaaaaaaaaaaaa", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_token_get(F.s, op.id, &got), MOAT_OK);
	moat_store_token_clear(&got);
	assert_int_equal(moat_store_device_count(F.s, "beta", &count), MOAT_OK);
	assert_int_equal(count, 1);
	/* the audit log outlives the tenant */
	assert_int_equal(moat_store_audit_list(F.s, "acme", 0, 10, &v, &n), MOAT_OK);
	assert_int_equal(n, 1);
	moat_store_audits_free(v, n);

	/* the name is free again */
	fill_tenant("acme");
}

/* ---- transactions, the change counter and the failure hook -------------------------------- */

static void test_transactions(void **state)
{
	struct moat_store_device d = device_rec("acme", "cam-1", (char *[]){"t"}, 1), got;
	struct moat_store_tenant t;
	uint64_t c0, count = 0;

	(void)state;
	c0 = moat_store_changes(F.s);
	add_tenant("acme");
	assert_int_equal(moat_store_changes(F.s), c0 + 1); /* an autocommitted write */

	/* a failed write is no change */
	{
		struct moat_store_tenant dup = tenant_rec("acme");

		assert_int_equal(moat_store_tenant_insert(F.s, &dup), MOAT_EEXIST);
		assert_int_equal(moat_store_changes(F.s), c0 + 1);
	}

	/* rolled back: nothing stays, nothing changed */
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	assert_int_equal(moat_store_begin(F.s), MOAT_EINVAL); /* not nested */
	add_tenant("beta");
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-1", &got), MOAT_OK);
	moat_store_device_clear(&got);
	assert_int_equal(moat_store_changes(F.s), c0 + 1);
	moat_store_rollback(F.s);
	assert_int_equal(moat_store_tenant_get(F.s, "beta", &t), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-1", &got), MOAT_ENOTFOUND);
	assert_int_equal(rows_of("device_tags", "acme"), 0);
	assert_int_equal(moat_store_changes(F.s), c0 + 1);
	assert_int_equal(moat_store_commit(F.s), MOAT_EINVAL); /* none open */
	moat_store_rollback(F.s); /* none open: nothing happens */

	/* committed: all stays, one change; a failed write inside leaves the others alone */
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	add_tenant("beta");
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_EEXIST);
	d.id = "cam-2";
	d.tenant = "nobody";
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_ENOTFOUND);
	d.tenant = "beta";
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	/* not visible to another reader before the commit */
	assert_int_equal(rows_of("devices", "beta"), 0);
	assert_int_equal(moat_store_commit(F.s), MOAT_OK);
	assert_int_equal(moat_store_changes(F.s), c0 + 2);
	assert_int_equal(rows_of("devices", "beta"), 1);
	assert_int_equal(moat_store_device_count(F.s, "acme", &count), MOAT_OK);
	assert_int_equal(count, 1);
	assert_int_equal(moat_store_tenant_get(F.s, "beta", &t), MOAT_OK);
	moat_store_tenant_clear(&t);

	/* a transaction that only read is no change */
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	assert_int_equal(moat_store_device_count(F.s, "acme", &count), MOAT_OK);
	assert_int_equal(moat_store_commit(F.s), MOAT_OK);
	assert_int_equal(moat_store_changes(F.s), c0 + 2);

	/* nor is a transaction whose writes all failed */
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	assert_int_equal(moat_store_device_delete(F.s, "acme", "nothing"), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_commit(F.s), MOAT_OK);
	assert_int_equal(moat_store_changes(F.s), c0 + 2);
}

/* A write of several statements that fails halfway leaves nothing, inside a transaction or
 * not: a trigger added behind the store's back refuses the tag "boom" after the device row
 * went in. */
static void test_write_atomic(void **state)
{
	char *good[] = {"fine"};
	char *bad[] = {"fine", "boom"};
	struct moat_store_device d1 = device_rec("acme", "cam-1", good, 1);
	struct moat_store_device d2 = device_rec("acme", "cam-2", bad, 2), got;
	uint64_t changes;
	sqlite3 *db = NULL;

	(void)state;
	add_tenant("acme");
	assert_int_equal(sqlite3_open(F.path, &db), SQLITE_OK);
	assert_int_equal(
	        sqlite3_exec(db,
	                     "CREATE TRIGGER boom BEFORE INSERT ON device_tags "
	                     "WHEN NEW.tag = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END",
	                     NULL, NULL, NULL),
	        SQLITE_OK);
	sqlite3_close(db);
	changes = moat_store_changes(F.s);

	/* on its own */
	assert_int_equal(moat_store_device_insert(F.s, &d2), MOAT_EIO);
	assert_non_null(strstr(moat_store_error(F.s), "boom"));
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-2", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_changes(F.s), changes);

	/* inside a transaction: the failed write goes, the others stay */
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	assert_int_equal(moat_store_device_insert(F.s, &d1), MOAT_OK);
	assert_int_equal(moat_store_device_insert(F.s, &d2), MOAT_EIO);
	d1.tags.v = bad;
	d1.tags.n = 2;
	d1.model = "changed";
	assert_int_equal(moat_store_device_update(F.s, &d1), MOAT_EIO);
	assert_int_equal(moat_store_commit(F.s), MOAT_OK);
	assert_int_equal(moat_store_changes(F.s), changes + 1);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-2", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-1", &got), MOAT_OK);
	assert_string_equal(got.model, "cam-x");
	assert_int_equal(got.tags.n, 1);
	assert_string_equal(got.tags.v[0], "fine");
	moat_store_device_clear(&got);
	assert_int_equal(rows_of("device_tags", "acme"), 1);
}

static int never_called(void *arg, const struct moat_store_device *d)
{
	(void)arg;
	(void)d;
	fail_msg("called while the store fails");
	return 0;
}

static void test_fail_hook(void **state)
{
	struct moat_store_device d = device_rec("acme", "cam-1", NULL, 0), got;
	struct moat_store_device_filter f = {.state = -1, .limit = 10};
	struct moat_store_tenant t = tenant_rec("beta"), *tv = NULL;
	struct moat_store_audit *av = NULL;
	struct moat_store_rule *rv = NULL;
	struct moat_store_device *dv = NULL;
	uint64_t changes, count = 7;
	size_t n = 3;
	int more = 0;

	(void)state;
	add_tenant("acme");
	changes = moat_store_changes(F.s);
	moat_store_fail(F.s, 1);
	assert_int_equal(moat_store_tenant_insert(F.s, &t), MOAT_EIO);
	assert_non_null(strstr(moat_store_error(F.s), "injected"));
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_EIO);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-1", &got), MOAT_EIO);
	assert_int_equal(moat_store_tenant_list(F.s, &tv, &n), MOAT_EIO);
	assert_null(tv);
	assert_int_equal(n, 0);
	assert_int_equal(moat_store_device_list(F.s, "acme", &f, &dv, &n, &more), MOAT_EIO);
	assert_null(dv);
	assert_int_equal(moat_store_device_count(F.s, "acme", &count), MOAT_EIO);
	assert_int_equal(moat_store_device_each(F.s, "acme", never_called, NULL), MOAT_EIO);
	assert_int_equal(moat_store_rule_list(F.s, "acme", &rv, &n), MOAT_EIO);
	assert_int_equal(moat_store_audit_list(F.s, NULL, 0, 10, &av, &n), MOAT_EIO);
	assert_int_equal(moat_store_token_count_operator(F.s, &count), MOAT_EIO);
	assert_int_equal(moat_store_tenant_delete(F.s, "acme"), MOAT_EIO);
	assert_int_equal(moat_store_begin(F.s), MOAT_EIO);
	assert_int_equal(moat_store_changes(F.s), changes);
	moat_store_fail(F.s, 0);

	assert_int_equal(moat_store_tenant_get(F.s, "beta", &t), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-1", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_device_count(F.s, "acme", &count), MOAT_OK);
	assert_int_equal(count, 0);

	/* failing between begin and commit: the commit fails and nothing is kept */
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	moat_store_fail(F.s, 1);
	assert_int_equal(moat_store_commit(F.s), MOAT_EIO);
	moat_store_fail(F.s, 0);
	assert_int_equal(moat_store_device_get(F.s, "acme", "cam-1", &got), MOAT_ENOTFOUND);
	assert_int_equal(moat_store_changes(F.s), changes);
	/* and the store works on */
	assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	assert_int_equal(moat_store_changes(F.s), changes + 1);
}

/* ---- many devices ------------------------------------------------------------------------- */

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_many_devices(void **state)
{
	const char *env = getenv("MOAT_STORE_TEST_DEVICES");
	unsigned total = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 100000;
	char *tags[] = {"fleet", "batch-00"};
	char id[32], batch[16];
	struct timespec t0;
	struct walk w;
	uint64_t count = 0;
	double secs;

	(void)state;
	add_tenant("acme");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(moat_store_begin(F.s), MOAT_OK);
	for (unsigned i = 0; i < total; i++) {
		struct moat_store_device d;

		snprintf(id, sizeof(id), "dev-%08u", i);
		snprintf(batch, sizeof(batch), "batch-%02u", i % 100);
		tags[1] = batch;
		d = device_rec("acme", id, tags, 2);
		d.state = (enum moat_device_state)(i % 50 == 0 ? 1 : 0);
		d.created_at = 1700000000;
		if (moat_store_device_insert(F.s, &d) != MOAT_OK)
			fail_msg("insert %u: %s", i, moat_store_error(F.s));
	}
	assert_int_equal(moat_store_commit(F.s), MOAT_OK);
	secs = seconds_since(&t0);
	print_message("store: %u devices inserted in one transaction in %.2f s (%.0f/s)\n", total,
	              secs, total / secs);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(&w, 0, sizeof(w));
	w.ordered = 1;
	assert_int_equal(moat_store_device_each(F.s, "acme", walk_device, &w), MOAT_OK);
	secs = seconds_since(&t0);
	print_message("store: %u devices streamed in %.2f s\n", w.count, secs);
	assert_int_equal(w.count, total);
	assert_int_equal(w.tagged, total);
	assert_true(w.ordered);

	assert_int_equal(moat_store_device_count(F.s, "acme", &count), MOAT_OK);
	assert_int_equal(count, total);
	{
		struct moat_store_device_filter f = {.state = 1, .tag = "batch-50", .limit = 1000};
		struct moat_store_device *v = NULL;
		size_t n = 0;
		int more = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(moat_store_device_list(F.s, "acme", &f, &v, &n, &more), MOAT_OK);
		print_message("store: a filtered page of %zu in %.3f s\n", n, seconds_since(&t0));
		assert_int_equal(n, total >= 100 ? (total + 49) / 100 : 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(v[i].state, MOAT_DEVICE_QUARANTINED);
		moat_store_devices_free(v, n);
	}

	/* single-write transactions (enrolment through the API) */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < 2000; i++) {
		struct moat_store_device d;

		snprintf(id, sizeof(id), "one-%05u", i);
		d = device_rec("acme", id, tags, 2);
		assert_int_equal(moat_store_device_insert(F.s, &d), MOAT_OK);
	}
	secs = seconds_since(&t0);
	print_message("store: 2000 devices inserted one transaction each in %.2f s (%.0f/s)\n",
	              secs, 2000 / secs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_open_private, NULL, NULL),
	        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_schema_too_new, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_open_failures, NULL, NULL),
	        cmocka_unit_test(test_migrations_list),
	        cmocka_unit_test_setup_teardown(test_schema_matches_reference, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_crud, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_ca_crud, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_device_crud, setup, teardown),
	        cmocka_unit_test(test_state_names),
	        cmocka_unit_test_setup_teardown(test_device_list, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_device_each, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_certs, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_tenant_delete_cascades, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_write_atomic, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_fail_hook, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_many_devices, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
