-- The store's schema, version 1: the reference every backend follows.
--
-- SQLite creates it as migration 1 (src/store/migrations.c carries the same CREATE
-- statements, and tests/unit/store/store_test.c checks that the two agree). A PostgreSQL
-- backend creates the same tables and indexes, reading INTEGER as BIGINT, BLOB as BYTEA and
-- "INTEGER PRIMARY KEY AUTOINCREMENT" as "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY";
-- WITHOUT ROWID is a SQLite storage choice (the row lives in its primary key's b-tree) with
-- no meaning there.
--
-- Conventions:
--   * Times are Unix seconds; 0 stands for "never" where a time may be absent.
--   * A NULL string means "none" (no model, no origin, ...).
--   * Short string lists that are only read whole (a tenant's hosts and quarantine_allow)
--     are JSON arrays of strings in a TEXT column. Device tags are filtered on, so they get
--     a table of their own with an index: a tag filter matches whole tags, never substrings.
--   * Everything a tenant owns references it with ON DELETE CASCADE (needs
--     PRAGMA foreign_keys = ON in SQLite), so deleting the tenant's row deletes its CAs,
--     devices and their tags, certificates, rules and tokens. The audit log does not
--     reference tenants: it has to outlive what it describes.
--   * Every foreign key's columns lead some index, so cascades never scan a table.

CREATE TABLE tenants (
	name TEXT NOT NULL PRIMARY KEY,
	hosts TEXT NOT NULL DEFAULT '[]', -- JSON array: SNI names, "*.x" for a wildcard
	origin TEXT,
	tcp_origin TEXT,
	origin_ca TEXT,
	quarantine_allow TEXT NOT NULL DEFAULT '[]', -- JSON array of path prefixes
	server_cert TEXT,
	server_key_file TEXT, -- relative to the data dir
	server_cert_generated INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);

-- Device CAs. AUTOINCREMENT: an id is never reused after a delete, so an id in an old audit
-- entry or a client's hand never names a different CA.
CREATE TABLE cas (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
	cert TEXT NOT NULL,
	key_file TEXT, -- NULL: imported without its key
	subject TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	not_after INTEGER NOT NULL,
	generated INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (tenant, fingerprint)
);

CREATE TABLE devices (
	tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
	id TEXT NOT NULL,
	model TEXT,
	firmware TEXT,
	owner TEXT,
	state INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)), -- active, quarantined, revoked
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
-- One per list filter; ending in id lets a filtered page continue (id > after) in order.
CREATE INDEX devices_state ON devices (tenant, state, id);
CREATE INDEX devices_model ON devices (tenant, model, id);
CREATE INDEX devices_firmware ON devices (tenant, firmware, id);

-- A device's tags in the order given (pos), each tag at most once per device.
CREATE TABLE device_tags (
	tenant TEXT NOT NULL,
	device TEXT NOT NULL,
	pos INTEGER NOT NULL,
	tag TEXT NOT NULL,
	PRIMARY KEY (tenant, device, pos),
	FOREIGN KEY (tenant, device) REFERENCES devices (tenant, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE UNIQUE INDEX device_tags_tag ON device_tags (tenant, tag, device);

-- Device certificates. They reference the tenant but not the device: deleting a device
-- revokes its certificates first, and they stay in the tenant's revocation list.
CREATE TABLE certs (
	fingerprint TEXT NOT NULL PRIMARY KEY, -- lowercase hex SHA-256 of the DER
	tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
	device TEXT NOT NULL,
	serial TEXT NOT NULL,
	not_after INTEGER NOT NULL,
	issued_at INTEGER NOT NULL,
	revoked_at INTEGER NOT NULL DEFAULT 0 -- 0: not revoked
);
CREATE INDEX certs_device ON certs (tenant, device);
-- The revocation list of a tenant, in fingerprint order, without visiting valid certificates.
CREATE INDEX certs_revoked ON certs (tenant, fingerprint) WHERE revoked_at <> 0;

CREATE TABLE rules (
	tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
	id TEXT NOT NULL,
	position INTEGER NOT NULL, -- rules run in ascending position, then id
	name TEXT NOT NULL,
	expr TEXT NOT NULL,
	action TEXT NOT NULL, -- block | log | allow | close
	mode TEXT NOT NULL, -- enforce | dry-run
	scope TEXT NOT NULL, -- http | tcp
	status INTEGER NOT NULL DEFAULT 0, -- block: the HTTP status, 0 for the default
	body TEXT,
	description TEXT,
	reference TEXT,
	enabled INTEGER NOT NULL DEFAULT 1,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE INDEX rules_position ON rules (tenant, position, id);

-- API tokens: only a hash of the secret part is kept.
CREATE TABLE tokens (
	id TEXT NOT NULL PRIMARY KEY, -- the public part: 16 lowercase hex digits
	name TEXT,
	tenant TEXT REFERENCES tenants (name) ON DELETE CASCADE, -- NULL: an operator token
	hash BLOB NOT NULL, -- SHA-256 of the secret part, 32 bytes
	created_at INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_tenant ON tokens (tenant);

-- The audit log. AUTOINCREMENT keeps seq increasing even after old entries are pruned.
CREATE TABLE audit (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	at INTEGER NOT NULL,
	actor TEXT NOT NULL, -- token id, or "moatd"
	source TEXT, -- client address
	tenant TEXT, -- NULL: not tenant-scoped; no reference, entries outlive their tenant
	action TEXT NOT NULL,
	object TEXT,
	detail TEXT -- JSON text
);
CREATE INDEX audit_tenant ON audit (tenant, seq);
