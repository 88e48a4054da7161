/*
 * PROXY protocol version 2 (the binary header of HAProxy's "PROXY protocol" specification):
 * what moatd sends first on a connection to an origin so that the origin learns who the
 * device is. Documented for users in docs/proxy-protocol.md.
 */
#ifndef MOAT_TCP_PROXY_V2_H
#define MOAT_TCP_PROXY_V2_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/common.h"

/* Standard TLV types and SSL sub-types. */
#define MOAT_PP2_TYPE_ALPN 0x01
#define MOAT_PP2_TYPE_AUTHORITY 0x02
#define MOAT_PP2_TYPE_CRC32C 0x03
#define MOAT_PP2_TYPE_NOOP 0x04
#define MOAT_PP2_TYPE_UNIQUE_ID 0x05
#define MOAT_PP2_TYPE_SSL 0x20
#define MOAT_PP2_SUBTYPE_SSL_VERSION 0x21
#define MOAT_PP2_SUBTYPE_SSL_CN 0x22
#define MOAT_PP2_SUBTYPE_SSL_CIPHER 0x23
#define MOAT_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define MOAT_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define MOAT_PP2_TYPE_NETNS 0x30

/* PP2_TYPE_SSL client bits */
#define MOAT_PP2_CLIENT_SSL 0x01
#define MOAT_PP2_CLIENT_CERT_CONN 0x02
#define MOAT_PP2_CLIENT_CERT_SESS 0x04

/* Moat's own TLVs, in the range the specification reserves for custom use (0xE0-0xEF). */
#define MOAT_PP2_TYPE_MOAT_TENANT 0xE0 /* tenant name, ASCII */
#define MOAT_PP2_TYPE_MOAT_CERT_SHA256 0xE1 /* SHA-256 of the client certificate, 32 raw bytes */
#define MOAT_PP2_TYPE_MOAT_CERT_SERIAL 0xE2 /* certificate serial, uppercase hex ASCII */
#define MOAT_PP2_TYPE_MOAT_DEVICE_ID 0xE3 /* device id, ASCII (also in SSL_CN) */

/* The fixed 16-byte part plus the largest header moatd ever writes. */
#define MOAT_PP2_MAX_HEADER 1024

/* What the header says. Strings are NUL-terminated; NULL or "" leaves the TLV out. */
struct moat_pp2_info {
	const struct sockaddr_storage *src; /* the device's address and port */
	const struct sockaddr_storage *dst; /* the address and port it connected to */
	const char *authority; /* SNI the device sent */
	int ssl; /* the device connection used TLS */
	int cert_conn; /* a client certificate was presented on this connection */
	int cert_sess; /* ... or on the session this connection resumed */
	int cert_verified; /* and it verified (verify field 0) */
	const char *tls_version; /* e.g. "TLSv1.3" */
	const char *cipher; /* e.g. "TLS_AES_256_GCM_SHA384" */
	const char *cn; /* the device id */
	const char *tenant;
	const unsigned char *cert_sha256; /* 32 bytes, or NULL */
	const char *cert_serial;
	const char *unique_id; /* connection id, at most 128 bytes */
};

/*
 * Writes a PROXY v2 header for a proxied TCP connection (command PROXY, TCP over IPv4 or IPv6)
 * into buf[0..cap). Two IPv4 addresses give TCP4; otherwise TCP6, an IPv4 address being written
 * as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), and two IPv6 addresses staying as they are
 * even when both are IPv4-mapped. TLVs follow in this order, each only if given: AUTHORITY,
 * UNIQUE_ID, SSL (only if ssl; client bits from cert_conn/cert_sess, verify 0 only if
 * cert_verified and a certificate bit is set, else 1; sub-TLVs SSL_VERSION, SSL_CN = cn,
 * SSL_CIPHER), then 0xE0 tenant, 0xE1 cert_sha256, 0xE2 cert_serial, 0xE3 device id = cn.
 *
 * Returns the header length (28 to 65551, at most cap). MOAT_EINVAL if info or an address is
 * missing or of a family other than AF_INET/AF_INET6 (then use moat_pp2_encode_local), if a
 * string holds a byte below 0x20 (checked in every string field, sent or not), if unique_id is
 * over 128 bytes or authority over 255 (HAProxy refuses more). MOAT_ETOOBIG if cap is too small
 * or the header would exceed the 16-bit length field. Invalid input is reported before a small
 * cap. Nothing is ever written past cap, but on failure buf may hold a partial header.
 */
int moat_pp2_encode(const struct moat_pp2_info *info, unsigned char *buf, size_t cap) MOAT_WUR;

/*
 * Writes a LOCAL header (family UNSPEC, no addresses): the origin should use the real connection
 * endpoints. Returns 16, or MOAT_ETOOBIG if cap is below 16.
 */
int moat_pp2_encode_local(unsigned char *buf, size_t cap) MOAT_WUR;

#endif
