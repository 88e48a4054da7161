/*
 * Per-thread state for evaluation: a Hyperscan scratch and a PCRE2 match block. Neither can
 * live in the caller's scratch memory (both are opaque and allocated by their libraries), and
 * neither may be allocated per request.
 *
 * Hyperscan needs a scratch region per concurrent scanner, large enough for every database it
 * scans. The control thread, when it compiles a database, grows one process-wide *prototype*
 * scratch for it (hs_alloc_scratch keeps a scratch usable for all the databases it was grown
 * for) and bumps a generation number. A worker keeps a thread-local clone of the prototype
 * and the generation it was cloned at; when the generation has moved on (a ruleset was
 * compiled since), it clones again. So a worker allocates one scratch on its first evaluation
 * and one after each compilation, never per request. The prototype only grows; its size is the
 * largest any database has needed (a few KB for typical rulesets).
 *
 * The generation is bumped before the new ruleset can be published, and a worker reads it
 * after it has taken the ruleset from the published generation, so it never scans with a
 * scratch too small for the ruleset in hand.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rules/internal.h"

struct thread_state {
	hs_scratch_t *hs;
	unsigned gen;
	pcre2_match_data *md;
};

static pthread_mutex_t proto_lock = PTHREAD_MUTEX_INITIALIZER;
static hs_scratch_t *proto;
static atomic_uint proto_gen = 1;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_ok;
static _Thread_local struct thread_state *ts;

static void destroy(void *p)
{
	struct thread_state *t = p;

	if (t == NULL)
		return;
	if (t->hs != NULL)
		hs_free_scratch(t->hs);
	if (t->md != NULL)
		pcre2_match_data_free(t->md);
	free(t);
}

static void make_key(void)
{
	key_ok = pthread_key_create(&key, destroy) == 0;
}

/* The thread's state, created on first use (freed at thread exit, or by
 * moat_rules_thread_release). Plain malloc: this is per thread, not per request, and must
 * not be subject to the allocation-failure injection of the request path. */
static struct thread_state *state(void)
{
	if (ts != NULL)
		return ts;
	pthread_once(&key_once, make_key);
	ts = calloc(1, sizeof(*ts));
	if (ts != NULL && key_ok)
		pthread_setspecific(key, ts);
	return ts;
}

int moat_rules_thread_grow(const hs_database_t *db)
{
	int r;

	pthread_mutex_lock(&proto_lock);
	r = hs_alloc_scratch(db, &proto) == HS_SUCCESS ? 0 : -1;
	if (r == 0)
		atomic_fetch_add(&proto_gen, 1);
	pthread_mutex_unlock(&proto_lock);
	return r;
}

hs_scratch_t *moat_rules_thread_hs(void)
{
	struct thread_state *t = state();
	unsigned gen = atomic_load_explicit(&proto_gen, memory_order_acquire);
	hs_scratch_t *clone = NULL;

	if (t == NULL)
		return NULL;
	if (t->hs != NULL && t->gen == gen)
		return t->hs;
	pthread_mutex_lock(&proto_lock);
	gen = atomic_load(&proto_gen);
	if (proto == NULL || hs_clone_scratch(proto, &clone) != HS_SUCCESS)
		clone = NULL;
	pthread_mutex_unlock(&proto_lock);
	if (clone == NULL)
		return NULL;
	if (t->hs != NULL)
		hs_free_scratch(t->hs);
	t->hs = clone;
	t->gen = gen;
	return clone;
}

pcre2_match_data *moat_rules_thread_md(void)
{
	struct thread_state *t = state();

	if (t == NULL)
		return NULL;
	if (t->md == NULL)
		t->md = pcre2_match_data_create(1, NULL);
	return t->md;
}

void moat_rules_thread_release(void)
{
	if (ts == NULL)
		return;
	if (key_ok)
		pthread_setspecific(key, NULL);
	destroy(ts);
	ts = NULL;
}
