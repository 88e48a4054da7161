/*
 * The store's schema history, compiled into the binary. Migration `version` takes a store
 * from version-1 to version; moat_store_open applies the ones a store lacks, in order and in
 * one transaction, and records the result in PRAGMA user_version.
 *
 * A released migration is never edited: a schema change appends one, raises
 * MOAT_STORE_SCHEMA_VERSION (store/store.h) and updates src/store/schema.sql to match.
 */
#ifndef MOAT_STORE_MIGRATIONS_H
#define MOAT_STORE_MIGRATIONS_H

#include <stddef.h>

struct moat_store_migration {
	int version; /* 1, 2, ...: the schema version after this step */
	const char *sql; /* one or more statements */
};

/* Ordered by version, without gaps; the last one is MOAT_STORE_SCHEMA_VERSION. */
extern const struct moat_store_migration moat_store_migrations[];
extern const size_t moat_store_migrations_count;

#endif
