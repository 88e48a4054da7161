/*
 * Per-address counts live in a fixed hash table split into stripes, each with its own mutex:
 * the lock is held for a few instructions once per connection, never per request.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"

#define STRIPES 64
#define BUCKETS 4096

struct ip_count {
	unsigned char key[16];
	unsigned count;
	struct ip_count *next;
};

static atomic_uint total;
static pthread_mutex_t locks[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};
static struct ip_count *buckets[BUCKETS];

/* IPv4 and IPv4-mapped IPv6 addresses count as the same client. */
static void addr_key(const struct sockaddr_storage *a, unsigned char key[16])
{
	memset(key, 0, 16);
	if (a->ss_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)a)->sin_addr, 4);
	} else if (a->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
	}
}

static unsigned hash_key(const unsigned char key[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % BUCKETS;
}

int moat_limits_acquire(const struct sockaddr_storage *addr, unsigned max_total,
                        unsigned max_per_ip)
{
	unsigned char key[16];
	unsigned b;
	struct ip_count *e;
	int rc = MOAT_OK;

	if (atomic_fetch_add(&total, 1) >= max_total) {
		atomic_fetch_sub(&total, 1);
		return MOAT_ETOOBIG;
	}
	addr_key(addr, key);
	b = hash_key(key);
	pthread_mutex_lock(&locks[b % STRIPES]);
	for (e = buckets[b]; e != NULL; e = e->next)
		if (memcmp(e->key, key, 16) == 0)
			break;
	if (e == NULL) {
		e = moat_calloc(1, sizeof(*e));
		if (e == NULL) {
			rc = MOAT_ENOMEM;
			goto out;
		}
		memcpy(e->key, key, 16);
		e->next = buckets[b];
		buckets[b] = e;
	}
	if (max_per_ip != 0 && e->count >= max_per_ip)
		rc = MOAT_ETOOBIG;
	else
		e->count++;
out:
	pthread_mutex_unlock(&locks[b % STRIPES]);
	if (rc != MOAT_OK)
		atomic_fetch_sub(&total, 1);
	return rc;
}

void moat_limits_release(const struct sockaddr_storage *addr)
{
	unsigned char key[16];
	unsigned b;
	struct ip_count **pp, *e;

	addr_key(addr, key);
	b = hash_key(key);
	pthread_mutex_lock(&locks[b % STRIPES]);
	for (pp = &buckets[b]; (e = *pp) != NULL; pp = &e->next) {
		if (memcmp(e->key, key, 16) != 0)
			continue;
		if (--e->count == 0) {
			*pp = e->next;
			moat_free(e);
		}
		break;
	}
	pthread_mutex_unlock(&locks[b % STRIPES]);
	atomic_fetch_sub(&total, 1);
}

unsigned moat_limits_total(void)
{
	return atomic_load(&total);
}
