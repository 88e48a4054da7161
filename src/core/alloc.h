/*
 * The one allocation wrapper. Every allocation in moatd goes through it so that tests can make
 * the n-th allocation fail (MOAT_ALLOC_FAIL_AT=n in the environment of a test build) and so that
 * a memory cap can be enforced in one place.
 */
#ifndef MOAT_CORE_ALLOC_H
#define MOAT_CORE_ALLOC_H

#include <stddef.h>

/* Like malloc/calloc/realloc/free/strdup; NULL on failure, never aborts. */
void *moat_malloc(size_t n);
void *moat_calloc(size_t count, size_t size);
void *moat_realloc(void *p, size_t n);
void moat_free(void *p);
char *moat_strdup(const char *s);
char *moat_strndup(const char *s, size_t n);

/* Reads MOAT_ALLOC_FAIL_AT once at start; 0 disables failure injection. */
void moat_alloc_init(void);

#endif
