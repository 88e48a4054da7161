/*
 * A strict PROXY protocol v2 decoder for tests (tests/unit/tcp/proxy_v2_test.c) and the fuzz
 * driver (fuzz/proxy_v2.c); moatd itself never reads these headers.
 *
 * It is written from HAProxy's proxy-protocol.txt (section 2.2), not from src/tcp/proxy_v2.c,
 * and is stricter than a real receiver: it accepts exactly the headers Moat means to send and
 * nothing else, so that any drift in the encoder shows up. Beyond the specification it
 * requires:
 *   - exactly one header and nothing after it (16 + length == the bytes given);
 *   - LOCAL with family UNSPEC and no address block; PROXY with TCP4 or TCP6 only, and an
 *     address block of exactly 12 or 36 bytes followed by TLVs only;
 *   - TLVs of the types Moat sends (AUTHORITY, UNIQUE_ID, SSL, 0xE0-0xE3), each at most once,
 *     in ascending type order, never empty; strings without bytes below 0x20; AUTHORITY at
 *     most 255 bytes (as HAProxy requires); UNIQUE_ID at most 128 bytes; 0xE1 exactly 32 bytes;
 *   - SSL: PP2_CLIENT_SSL set, no unknown client bits, verify 0 or 1 and 0 only with a
 *     certificate bit; sub-TLVs VERSION, CN, CIPHER only, with the same rules, filling the
 *     SSL value exactly.
 * Every length is checked against what remains before it is used.
 *
 * pp2_decode returns 0 and fills *d (its views point into the input), or -1 and sets *err.
 * pp2_check compares a decoded header with the moat_pp2_info it was made from.
 */
#ifndef MOAT_TESTS_PP2_DECODE_H
#define MOAT_TESTS_PP2_DECODE_H

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "tcp/proxy_v2.h"

/* A TLV value inside the decoded buffer; p == NULL when the TLV was absent. */
struct pp2_view {
	const unsigned char *p;
	size_t len;
};

struct pp2_decoded {
	size_t len; /* the whole header */
	int command; /* 0 LOCAL, 1 PROXY */
	int fam; /* the family/protocol byte: 0x00, 0x11 or 0x21 */
	unsigned char src[16], dst[16]; /* 4 bytes used for TCP4 */
	unsigned src_port, dst_port; /* host order */
	struct pp2_view authority, unique_id, tenant, cert_sha256, cert_serial, device_id;
	int has_ssl;
	unsigned ssl_client;
	uint32_t ssl_verify;
	struct pp2_view ssl_version, ssl_cn, ssl_cipher;
};

static inline unsigned pp2_be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static inline int pp2_fail(const char **err, const char *why)
{
	*err = why;
	return -1;
}

static inline int pp2_printable(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] < 0x20)
			return 0;
	}
	return 1;
}

/* The SSL value: client, verify, then sub-TLVs that must fill it exactly. */
static inline int pp2_decode_ssl(const unsigned char *v, size_t n, struct pp2_decoded *d,
                                 const char **err)
{
	size_t off = 5;
	unsigned last = 0;

	if (n < 5)
		return pp2_fail(err, "SSL TLV shorter than client + verify");
	d->has_ssl = 1;
	d->ssl_client = v[0];
	d->ssl_verify = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
	if (!(d->ssl_client & MOAT_PP2_CLIENT_SSL))
		return pp2_fail(err, "SSL TLV without PP2_CLIENT_SSL");
	if (d->ssl_client & ~0x07u)
		return pp2_fail(err, "SSL TLV with unknown client bits");
	if (d->ssl_verify > 1)
		return pp2_fail(err, "SSL verify neither 0 nor 1");
	if (d->ssl_verify == 0 &&
	    !(d->ssl_client & (MOAT_PP2_CLIENT_CERT_CONN | MOAT_PP2_CLIENT_CERT_SESS)))
		return pp2_fail(err, "SSL verify 0 without a certificate");

	while (off < n) {
		unsigned type;
		size_t len;
		struct pp2_view *dst;

		if (n - off < 3)
			return pp2_fail(err, "truncated SSL sub-TLV header");
		type = v[off];
		len = pp2_be16(v + off + 1);
		off += 3;
		if (len > n - off)
			return pp2_fail(err, "SSL sub-TLV runs past the SSL TLV");
		if (type <= last)
			return pp2_fail(err, "SSL sub-TLV repeated or out of order");
		last = type;
		switch (type) {
		case MOAT_PP2_SUBTYPE_SSL_VERSION:
			dst = &d->ssl_version;
			break;
		case MOAT_PP2_SUBTYPE_SSL_CN:
			dst = &d->ssl_cn;
			break;
		case MOAT_PP2_SUBTYPE_SSL_CIPHER:
			dst = &d->ssl_cipher;
			break;
		default:
			return pp2_fail(err, "unexpected SSL sub-TLV type");
		}
		if (len == 0)
			return pp2_fail(err, "empty SSL sub-TLV");
		if (!pp2_printable(v + off, len))
			return pp2_fail(err, "control byte in an SSL sub-TLV");
		dst->p = v + off;
		dst->len = len;
		off += len;
	}
	return 0;
}

static inline int pp2_decode(const unsigned char *p, size_t n, struct pp2_decoded *d,
                             const char **err)
{
	static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
	                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
	size_t addr_len, off;
	unsigned last = 0;

	memset(d, 0, sizeof(*d));
	if (n < 16)
		return pp2_fail(err, "shorter than the fixed 16 bytes");
	if (memcmp(p, sig, sizeof(sig)) != 0)
		return pp2_fail(err, "bad signature");
	if ((p[12] >> 4) != 2)
		return pp2_fail(err, "version is not 2");
	if ((p[12] & 0x0F) > 1)
		return pp2_fail(err, "command neither LOCAL nor PROXY");
	d->command = p[12] & 0x0F;
	d->fam = p[13];
	d->len = 16 + (size_t)pp2_be16(p + 14);
	if (d->len != n)
		return pp2_fail(err, "length field disagrees with the header size");

	if (d->command == 0) {
		if (d->fam != 0x00)
			return pp2_fail(err, "LOCAL with a family other than UNSPEC");
		if (d->len != 16)
			return pp2_fail(err, "LOCAL with an address block");
		return 0;
	}
	if (d->fam == 0x11)
		addr_len = 12;
	else if (d->fam == 0x21)
		addr_len = 36;
	else
		return pp2_fail(err, "PROXY with a family/protocol other than TCP4 or TCP6");
	if (n - 16 < addr_len)
		return pp2_fail(err, "address block truncated");
	if (addr_len == 12) {
		memcpy(d->src, p + 16, 4);
		memcpy(d->dst, p + 20, 4);
		d->src_port = pp2_be16(p + 24);
		d->dst_port = pp2_be16(p + 26);
	} else {
		memcpy(d->src, p + 16, 16);
		memcpy(d->dst, p + 32, 16);
		d->src_port = pp2_be16(p + 48);
		d->dst_port = pp2_be16(p + 50);
	}

	off = 16 + addr_len;
	while (off < n) {
		unsigned type;
		size_t len;
		struct pp2_view *dst = NULL;

		if (n - off < 3)
			return pp2_fail(err, "truncated TLV header");
		type = p[off];
		len = pp2_be16(p + off + 1);
		off += 3;
		if (len > n - off)
			return pp2_fail(err, "TLV runs past the header");
		if (type <= last)
			return pp2_fail(err, "TLV repeated or out of order");
		last = type;
		if (len == 0)
			return pp2_fail(err, "empty TLV");
		switch (type) {
		case MOAT_PP2_TYPE_AUTHORITY:
			if (len > 255)
				return pp2_fail(err, "AUTHORITY longer than 255 bytes");
			dst = &d->authority;
			break;
		case MOAT_PP2_TYPE_UNIQUE_ID:
			if (len > 128)
				return pp2_fail(err, "UNIQUE_ID longer than 128 bytes");
			dst = &d->unique_id;
			break;
		case MOAT_PP2_TYPE_SSL:
			if (pp2_decode_ssl(p + off, len, d, err) != 0)
				return -1;
			break;
		case MOAT_PP2_TYPE_MOAT_TENANT:
			dst = &d->tenant;
			break;
		case MOAT_PP2_TYPE_MOAT_CERT_SHA256:
			if (len != 32)
				return pp2_fail(err, "certificate SHA-256 not 32 bytes");
			d->cert_sha256.p = p + off;
			d->cert_sha256.len = len;
			break;
		case MOAT_PP2_TYPE_MOAT_CERT_SERIAL:
			dst = &d->cert_serial;
			break;
		case MOAT_PP2_TYPE_MOAT_DEVICE_ID:
			dst = &d->device_id;
			break;
		default:
			return pp2_fail(err, "unexpected TLV type");
		}
		if (dst != NULL) {
			if (!pp2_printable(p + off, len))
				return pp2_fail(err, "control byte in a string TLV");
			dst->p = p + off;
			dst->len = len;
		}
		off += len;
	}
	return 0;
}

/* The 16-byte IPv6 form of an address: IPv4 becomes ::ffff:a.b.c.d. */
static inline void pp2_as6(const struct sockaddr_storage *ss, unsigned char out[16], unsigned *port)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		memcpy(out, mapped, 12);
		memcpy(out + 12, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		memcpy(out, &sin6->sin6_addr, 16);
		*port = ntohs(sin6->sin6_port);
	}
}

/* A string field was sent as given, or left out when NULL or "". */
static inline int pp2_same_str(struct pp2_view v, const char *s)
{
	if (s == NULL || s[0] == '\0')
		return v.p == NULL;
	return v.p != NULL && v.len == strlen(s) && memcmp(v.p, s, v.len) == 0;
}

/* NULL if d is what moat_pp2_encode should have made of info, else what differs. */
static inline const char *pp2_check(const struct moat_pp2_info *info, const struct pp2_decoded *d)
{
	unsigned char src[16], dst[16];
	unsigned sport, dport, client;

	if (d->command != 1)
		return "command is not PROXY";
	pp2_as6(info->src, src, &sport);
	pp2_as6(info->dst, dst, &dport);
	if (info->src->ss_family == AF_INET && info->dst->ss_family == AF_INET) {
		if (d->fam != 0x11)
			return "two IPv4 addresses not sent as TCP4";
		if (memcmp(d->src, src + 12, 4) != 0 || memcmp(d->dst, dst + 12, 4) != 0)
			return "IPv4 address differs";
	} else {
		if (d->fam != 0x21)
			return "IPv6 or mixed addresses not sent as TCP6";
		if (memcmp(d->src, src, 16) != 0 || memcmp(d->dst, dst, 16) != 0)
			return "IPv6 address differs";
	}
	if (d->src_port != sport || d->dst_port != dport)
		return "port differs";

	if (!pp2_same_str(d->authority, info->authority))
		return "AUTHORITY differs";
	if (!pp2_same_str(d->unique_id, info->unique_id))
		return "UNIQUE_ID differs";
	if (!pp2_same_str(d->tenant, info->tenant))
		return "tenant differs";
	if (!pp2_same_str(d->cert_serial, info->cert_serial))
		return "certificate serial differs";
	if (!pp2_same_str(d->device_id, info->cn))
		return "device id differs";
	if (info->cert_sha256 == NULL ? d->cert_sha256.p != NULL
	                              : (d->cert_sha256.p == NULL ||
	                                 memcmp(d->cert_sha256.p, info->cert_sha256, 32) != 0))
		return "certificate SHA-256 differs";

	if (!info->ssl) {
		if (d->has_ssl)
			return "SSL TLV sent for a connection without TLS";
		return NULL;
	}
	if (!d->has_ssl)
		return "SSL TLV missing";
	client = MOAT_PP2_CLIENT_SSL | (info->cert_conn ? MOAT_PP2_CLIENT_CERT_CONN : 0) |
	         (info->cert_sess ? MOAT_PP2_CLIENT_CERT_SESS : 0);
	if (d->ssl_client != client)
		return "SSL client bits differ";
	if (d->ssl_verify !=
	    (info->cert_verified && (info->cert_conn || info->cert_sess) ? 0u : 1u))
		return "SSL verify differs";
	if (!pp2_same_str(d->ssl_version, info->tls_version))
		return "SSL_VERSION differs";
	if (!pp2_same_str(d->ssl_cn, info->cn))
		return "SSL_CN differs";
	if (!pp2_same_str(d->ssl_cipher, info->cipher))
		return "SSL_CIPHER differs";
	return NULL;
}

#endif
