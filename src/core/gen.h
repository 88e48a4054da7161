/*
 * Configuration generations: everything read-mostly that a worker needs — the parsed config,
 * TLS contexts, tenants with their CAs and revocation lists, resolved origins — in one
 * immutable, reference-counted object. The control thread builds a new generation on start
 * and on reload, validates it whole, then publishes it; workers pick it up at their next loop
 * turn. Connections hold a reference to the generation they use. See docs/generations.md.
 */
#ifndef MOAT_CORE_GEN_H
#define MOAT_CORE_GEN_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/common.h"
#include "core/config.h"
#include "core/devices.h"
#include "core/stats.h"
#include "rules/rules.h"
#include "store/store.h"

#define MOAT_TICKET_KEY_NAME_LEN 16

struct moat_gen;

struct moat_tenant {
	const struct moat_config_tenant *cfg; /* owned by the generation's config */
	unsigned index;
	SSL_CTX *ssl_ctx; /* server certificate, device CAs, verification policy */
	X509_CRL **crls; /* revocation lists, consulted on every resumption and request */
	size_t ncrls;
	struct sockaddr_storage origin_addr; /* HTTP origin; origin_addrlen 0 if none */
	socklen_t origin_addrlen;
	struct sockaddr_storage tcp_origin_addr; /* TCP origin; tcp_origin_addrlen 0 if none */
	socklen_t tcp_origin_addrlen;
	SSL_CTX *origin_ctx; /* https/tls origins: client context verifying the origin */
	char origin_key[300]; /* "scheme://host:port" + addr: origin pool key */
	/* session ticket keys, derived from the process's ticket secret and the tenant name, so a
	 * ticket issued for one tenant cannot even be decrypted under another */
	unsigned char ticket_name[MOAT_TICKET_KEY_NAME_LEN];
	unsigned char ticket_aes[32];
	unsigned char ticket_hmac[32];
	/* SHA-256 over what a handshake proves against: device CA certificates, mtls mode and
	 * device id source. Sessions and open connections made under another digest are not
	 * trusted after a reload. */
	unsigned char trust_digest[32];
	struct moat_ruleset *rules; /* virtual patches for HTTP requests; NULL if none */
	struct moat_ruleset *tcp_rules; /* rules applied when a TCP connection is made */
	struct moat_devices
	        *devices; /* device.* facts, or a store tenant's registry; NULL if none */
	struct moat_counters *counters; /* traffic counters; NULL if not counted */
	/* scratch bytes an evaluation needs for the largest request the limits admit: computed
	 * once here, not per request */
	size_t rules_scratch, tcp_rules_scratch;
	struct moat_gen *gen;
	/* The compiled rules and the devices (registry or devices file), shared with the next
	 * generation when they did not change: a store tenant's by the versions the admin API
	 * bumps, a config tenant's as long as the file is not read again (compiling 1,000 rules
	 * or reading a million devices for an unrelated change would delay every change). The
	 * TLS contexts are shared the same way (SSL_CTX_up_ref). */
	struct moat_gen_share *rules_share, *devices_share;
	uint64_t rules_version, devices_version;
};

struct moat_listener {
	const struct moat_config_listener *cfg;
	SSL_CTX *ssl_ctx; /* accepting context: picks the tenant from the ClientHello */
	struct moat_tenant *default_tenant; /* NULL: no SNI or unknown SNI is refused */
	struct moat_gen *gen;
};

struct moat_gen {
	atomic_uint refs;
	uint64_t id; /* 1, 2, ... in order of publication */
	struct moat_config *cfg;
	struct moat_tenant *tenants; /* the config file's, then the store's */
	size_t ntenants;
	struct moat_config_tenant *store_tenants; /* owned: what the store's tenants became */
	size_t nstore_tenants;
	struct moat_listener *listeners;
	size_t nlisteners;
	int fast_rules; /* some rule set was built without its prefilter: build again soon */
};

#define MOAT_GEN_FAST_RULES 200

/* Where tenants and counters come from besides the config file; any field may be NULL. */
struct moat_gen_sources {
	struct moat_store *store; /* tenants, CAs, devices and rules made through the admin API */
	struct moat_stats *stats; /* counters handed to tenants and devices */
	/* Change counters of a tenant's rules and devices: equal to the previous generation's,
	 * its compiled rules / registry are reused. NULL: everything is built afresh. */
	void (*versions)(void *arg, const char *tenant, uint64_t *rules, uint64_t *devices);
	/* The devices of a tenant changed after its devices version `since`: 0 with their ids
	 * (valid until the next call), or -1 when not known one by one (then the registry is
	 * read whole). NULL: always read whole. */
	int (*device_changes)(void *arg, const char *tenant, uint64_t since,
	                      const char *const **ids, size_t *n);
	void *versions_arg;
	/* 1: a store tenant's changed rule set of more than MOAT_GEN_FAST_RULES rules is built
	 * without its prefilter (ready in milliseconds instead of seconds) and the generation
	 * says so in fast_rules; the complete sets, compiled elsewhere (moat_gen_compile_rules),
	 * come back through take_complete: 0 and the rulesets (ownership passes) if they are
	 * ready for this rules version, -1 if not. */
	int fast_rules;
	int (*take_complete)(void *arg, const char *tenant, uint64_t rules_version,
	                     struct moat_ruleset **http, struct moat_ruleset **tcp);
};

/*
 * Builds a generation from a loaded config (ownership of cfg passes to the generation, also on
 * failure) and the store. Loads every certificate, key, CA and CRL, and resolves origins; each
 * failure of the config file's tenants is reported with the config line that named the file
 * and refuses the generation. A store tenant that cannot be built (an origin that does not
 * resolve, say) is left out with an error in the log, so one bad tenant never blocks the
 * changes of the others. `ticket_secret` (32 bytes) seeds the per-tenant session ticket keys.
 * Returns MOAT_OK with *out holding one reference.
 */
int moat_gen_build(struct moat_config *cfg, const unsigned char *ticket_secret,
                   const struct moat_gen_sources *src, moat_config_report_fn report, void *arg,
                   struct moat_gen **out) MOAT_WUR;

void moat_gen_ref(struct moat_gen *g);
void moat_gen_release(struct moat_gen *g);

/* Makes g the current generation (consumes the caller's reference). */
void moat_gen_publish(struct moat_gen *g);

/* Returns a new reference to the current generation, or NULL before the first publish. */
struct moat_gen *moat_gen_acquire_current(void);

/* Drops the current generation (at exit). */
void moat_gen_unpublish(void);

struct moat_tenant *moat_gen_tenant_by_name(struct moat_gen *g, const char *name);

/* Matches an SNI host name (case-insensitive, exact or one-label "*." wildcard). */
struct moat_tenant *moat_gen_tenant_by_sni(struct moat_gen *g, const char *sni, size_t len);

/* 1 if the certificate is revoked by one of the tenant's CRLs or by its registry. */
int moat_tenant_cert_revoked(const struct moat_tenant *t, X509 *cert);

/* The tenant's device entry (registry or devices file), NULL if none. */
const struct moat_device_entry *moat_tenant_device(const struct moat_tenant *t, const char *id);

/*
 * Whether this connection's device may use the tenant now: NULL if yes, else the reason the
 * connection must end ("certificate revoked", "device revoked", "unknown device"). cert may
 * be NULL (no certificate: nothing to check here).
 */
const char *moat_tenant_refusal(const struct moat_tenant *t, X509 *cert, const char *device_id);

/* 1 if the tenant's rules were built without their prefilter and wait to be completed. */
int moat_tenant_rules_partial(const struct moat_tenant *t);

/* Compiles a tenant's rule records whole (both scopes) — any thread: moatd runs it on libuv's
 * thread pool for the sets a generation published partial. */
int moat_gen_compile_rules(const struct moat_store_rule *v, size_t n,
                           const struct moat_rules_limits *lim, struct moat_ruleset **http,
                           struct moat_ruleset **tcp) MOAT_WUR;

/* 1 if a quarantined device may still reach this path (the tenant's quarantine_allow). */
int moat_tenant_quarantine_allows(const struct moat_tenant *t, const char *path, size_t len);

#endif
