/*
 * The configuration file: one INI file read with inih, validated whole.
 *
 * The loader checks syntax and values (types, ranges, references between sections, that
 * referenced files exist) and reports every error with file and line. It does not load
 * certificates or keys: building a generation does (src/core/gen.c), reporting against the
 * line numbers recorded here.
 *
 * Relative paths are resolved against the directory moatd was started in, and stored
 * absolute, so nothing depends on the working directory afterwards.
 */
#ifndef MOAT_CORE_CONFIG_H
#define MOAT_CORE_CONFIG_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/common.h"

enum moat_log_level { MOAT_LOG_DEBUG = 0, MOAT_LOG_INFO, MOAT_LOG_WARN, MOAT_LOG_ERROR };

enum moat_listener_protocol { MOAT_PROTO_HTTP = 0, MOAT_PROTO_TCP, MOAT_PROTO_MQTT };

enum moat_mtls_mode { MOAT_MTLS_REQUIRE = 0, MOAT_MTLS_OPTIONAL };

enum moat_device_id_source { MOAT_DEVID_CN = 0, MOAT_DEVID_SAN_URI, MOAT_DEVID_SAN_DNS };

enum moat_origin_scheme {
	MOAT_ORIGIN_HTTP = 0,
	MOAT_ORIGIN_HTTPS,
	MOAT_ORIGIN_TCP,
	MOAT_ORIGIN_TLS
};

enum moat_proxy_protocol { MOAT_PP_OFF = 0, MOAT_PP_V2 };

/* A source address range. IPv4 ranges are stored IPv4-mapped (::ffff:a.b.c.d, prefix + 96), so
 * one comparison serves IPv4, IPv6 and mapped peers alike. */
struct moat_cidr {
	unsigned char addr[16]; /* network address, host bits zero */
	unsigned prefix; /* 0..128 */
};

/* 1 if addr (AF_INET or AF_INET6 sockaddr) lies in one of the n ranges. */
int moat_cidr_match(const struct moat_cidr *list, size_t n, const struct sockaddr_storage *addr);

/* Parses "10.0.0.0/8", "2001:db8::/32" or a single address into *out. MOAT_OK or MOAT_EINVAL.
 * Refused, with *out untouched: bits set after the prefix ("10.1.2.3/8"), a prefix out of range
 * or with a leading zero, names, brackets, zone ids and blanks; the caller says which (config.c
 * reports each with its line). */
int moat_cidr_parse(const char *s, struct moat_cidr *out) MOAT_WUR;

struct moat_config_listener {
	char *name; /* from "[listener NAME]" */
	char *bind; /* as written, e.g. "0.0.0.0:8443" or "[::1]:8443" */
	struct sockaddr_storage addr; /* parsed bind address */
	socklen_t addrlen;
	enum moat_listener_protocol protocol;
	char *default_tenant; /* NULL: a device without SNI (or unknown SNI) is refused */
	int tls; /* 1 (default): TLS is terminated; 0: plain TCP (protocol tcp only) */
	struct moat_cidr *allow; /* if any: only these sources may connect */
	size_t nallow;
	struct moat_cidr *deny; /* these sources are refused (deny wins over allow) */
	size_t ndeny;
	unsigned line; /* line of the section header */
};

struct moat_config_tenant {
	char *name; /* from "[tenant NAME]" */
	char **hosts; /* lower-cased; an entry may start with "*." for one label wildcard */
	size_t nhosts;
	char *cert, *key; /* server certificate chain and key, PEM, absolute paths */
	char **device_cas; /* one or more PEM files of CA certificates */
	size_t ndevice_cas;
	char *crl; /* optional PEM CRL file, NULL if none */
	enum moat_mtls_mode mtls;
	enum moat_device_id_source device_id;
	char *origin; /* HTTP listeners: "http://host:port" or "https://host:port"; NULL if none */
	enum moat_origin_scheme origin_scheme;
	char *origin_host; /* host part (name or address literal, no brackets) */
	uint16_t origin_port;
	char *tcp_origin; /* TCP listeners: "tcp://host:port" or "tls://host:port"; NULL if none */
	enum moat_origin_scheme tcp_origin_scheme;
	char *tcp_origin_host;
	uint16_t tcp_origin_port;
	char *origin_ca; /* https/tls origins: CA file to verify the origin; NULL = system store */
	enum moat_proxy_protocol
	        proxy_protocol; /* TCP listeners: header sent to the origin first */
	int has_tls; /* cert, key and device_ca given; 0 only for tenants of tls = off listeners */
	/* line numbers of the keys, for errors found when loading the files they name */
	unsigned line, cert_line, key_line, device_ca_line, crl_line, origin_line, origin_ca_line;
	unsigned tcp_origin_line;
	char *rules; /* virtual patches for HTTP listeners (docs/rules.md); NULL if none */
	char *tcp_rules; /* rules for TCP listeners: connection fields only; NULL if none */
	char *devices; /* per-device facts (model, firmware, tags) for device.* fields */
	unsigned rules_line, tcp_rules_line, devices_line;

	/* Tenants from the store (the admin API) carry their PEMs in memory instead of file
	 * names; cert/device_cas/origin_ca are then NULL. */
	int from_store;
	char *cert_pem; /* server certificate chain */
	char *device_ca_pem; /* every device CA, concatenated */
	char *origin_ca_pem;
	char **quarantine_allow; /* path prefixes a quarantined device may still use */
	size_t nquarantine_allow;
};

struct moat_config {
	atomic_uint refs; /* generations share one config; moat_config_free drops one */
	char *path; /* absolute path of the file */
	unsigned workers; /* resolved: "auto" becomes the number of online CPUs */
	char *data_dir;
	char *access_log; /* NULL: no access log */
	char *error_log; /* NULL: standard error */
	enum moat_log_level log_level;
	char *pid_file; /* NULL: none */

	/* timeouts, milliseconds */
	uint64_t handshake_timeout;
	uint64_t idle_timeout; /* keep-alive wait for the next request */
	uint64_t request_header_timeout; /* whole head must arrive within this */
	uint64_t request_body_timeout; /* longest silence while a body is being received */
	uint64_t origin_connect_timeout;
	uint64_t origin_response_timeout; /* wait for the response head, and between body reads */
	uint64_t drain_timeout; /* SIGTERM: in-flight requests get this long */
	uint64_t tcp_idle_timeout; /* TCP listeners: no byte either way for this long -> close */

	/* limits */
	unsigned max_connections; /* per process, all listeners */
	unsigned max_connections_per_ip; /* per source address, per process; 0 = no limit */
	size_t max_request_line;
	size_t max_header_size; /* whole request head */
	unsigned max_headers;
	uint64_t request_body_min_rate; /* bytes/s averaged over a body; 0 = off */
	unsigned origin_keepalive; /* idle origin connections kept per worker and tenant */
	size_t tcp_buffer; /* TCP listeners: bytes buffered per direction per connection */
	char *security_log; /* one JSON line per rule hit; NULL: none */
	size_t rules_body_limit; /* bytes of a request body the rules may inspect */
	char *admin_listen; /* admin API address; NULL: off */
	char *admin_cert, *admin_key; /* both or neither: TLS on the admin API */
	char *store; /* the store's file; NULL: data_dir/moat.db */

	struct moat_config_listener *listeners;
	size_t nlisteners;
	struct moat_config_tenant *tenants;
	size_t ntenants;
};

/* Receives one error: file, line (0 if not tied to a line) and message. */
typedef void (*moat_config_report_fn)(void *arg, const char *file, unsigned line, const char *msg);

/*
 * Reads and validates `path`. On success returns MOAT_OK and *out (free with
 * moat_config_free). Otherwise reports every error found through `report` and returns
 * MOAT_EINVAL (or MOAT_EIO if the file cannot be read, MOAT_ENOMEM), with *out NULL.
 */
int moat_config_load(const char *path, moat_config_report_fn report, void *arg,
                     struct moat_config **out) MOAT_WUR;

/* Configs are shared by reference: ref adds one, free drops one (and frees at zero). */
void moat_config_ref(struct moat_config *cfg);
void moat_config_free(struct moat_config *cfg);

/* Frees what a tenant record owns (not the record itself). */
void moat_config_tenant_clear(struct moat_config_tenant *t);

/* Finds a tenant by name, NULL if none. */
const struct moat_config_tenant *moat_config_tenant_find(const struct moat_config *cfg,
                                                         const char *name);

/*
 * Parses a duration: a non-negative integer with an optional unit "ms", "s", "m", "h"
 * (no unit means seconds) into milliseconds. Returns MOAT_OK or MOAT_EINVAL.
 */
int moat_config_parse_duration(const char *s, uint64_t *ms) MOAT_WUR;

/* Parses a byte size: an integer with an optional "k", "m", "g" suffix (powers of 1024). */
int moat_config_parse_size(const char *s, uint64_t *bytes) MOAT_WUR;

/*
 * Parses an origin URL as the config file's `origin` (tcp = 0: http:// or https://) or
 * `tcp_origin` (tcp = 1: tcp:// or tls://) key does. On success *host is allocated. On
 * failure MOAT_EINVAL with the reason in err ("origin: scheme must be ...").
 */
int moat_config_origin_parse(const char *v, int tcp, enum moat_origin_scheme *scheme, char **host,
                             uint16_t *port, char *err, size_t errcap) MOAT_WUR;

/* 1 if s is a valid tenant host name (a DNS name, optionally "*." and a name). */
int moat_config_host_ok(const char *s);

#endif
