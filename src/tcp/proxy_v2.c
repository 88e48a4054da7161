/*
 * PROXY protocol version 2 header writer (HAProxy's proxy-protocol.txt, section 2.2).
 *
 * Everything is written through a bounded cursor: each write checks what remains of the
 * caller's buffer first, and the first one that does not fit stops all later writes, so no byte
 * ever lands past cap whatever the inputs. Lengths (of a TLV, of the SSL TLV around its
 * sub-TLVs, of the whole header) are not computed in advance but filled in once the bytes they
 * cover are written, so they cannot disagree with what was written.
 *
 * Inputs are validated before anything is written: the addresses, the strings (no bytes below
 * 0x20, so that an origin which logs them cannot be fed line breaks or escape sequences), the
 * UNIQUE_ID length that the specification caps at 128 bytes and the AUTHORITY length that
 * HAProxy caps at 255 (it drops the connection on a longer one). Only then can the size limits
 * fail, so MOAT_EINVAL always wins over MOAT_ETOOBIG.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "tcp/proxy_v2.h"

#define TLV_MAX 0xFFFFu /* a TLV length and the header length are 16-bit fields */
#define UNIQUE_ID_MAX 128
#define AUTHORITY_MAX 255 /* HAProxy refuses a longer one; a DNS name is at most 253 bytes */
#define SHA256_LEN 32

#define VER_CMD_LOCAL 0x20 /* version 2, command LOCAL */
#define VER_CMD_PROXY 0x21 /* version 2, command PROXY */
#define FAM_UNSPEC 0x00
#define FAM_TCP4 0x11
#define FAM_TCP6 0x21

/* "\r\n\r\n\0\r\nQUIT\n": meant to make every common protocol fail at once if misrouted. */
static const unsigned char signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A write cursor over buf[0..cap): `err` becomes MOAT_ETOOBIG at the first thing that fails. */
struct cursor {
	unsigned char *buf;
	size_t cap;
	size_t len;
	int err;
};

static void put(struct cursor *c, const void *p, size_t n)
{
	if (c->err != 0)
		return;
	if (n > c->cap - c->len) {
		c->err = MOAT_ETOOBIG;
		return;
	}
	if (n > 0)
		memcpy(c->buf + c->len, p, n);
	c->len += n;
}

static void put_u8(struct cursor *c, unsigned v)
{
	unsigned char b = (unsigned char)v;

	put(c, &b, 1);
}

static void put_be16(struct cursor *c, unsigned v)
{
	unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};

	put(c, b, 2);
}

static void put_be32(struct cursor *c, uint32_t v)
{
	unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
	                      (unsigned char)(v >> 8), (unsigned char)v};

	put(c, b, 4);
}

/*
 * Writes a 16-bit length placeholder and returns where it is; end_len fills it with the number
 * of bytes written since. The placeholder is only touched if it was itself written, which the
 * cursor guarantees as long as no error has occurred. A TLV can never reach the 16-bit limit
 * before the header length that covers it does, but each length is checked on its own anyway.
 */
static size_t begin_len(struct cursor *c)
{
	size_t at = c->len;

	put_be16(c, 0);
	return at;
}

static void end_len(struct cursor *c, size_t at)
{
	size_t n;

	if (c->err != 0)
		return;
	n = c->len - (at + 2);
	if (n > TLV_MAX) {
		c->err = MOAT_ETOOBIG;
		return;
	}
	c->buf[at] = (unsigned char)(n >> 8);
	c->buf[at + 1] = (unsigned char)n;
}

/* A TLV holding a string; NULL or "" writes nothing. */
static void put_str_tlv(struct cursor *c, unsigned type, const char *s)
{
	size_t at;

	if (s == NULL || s[0] == '\0')
		return;
	put_u8(c, type);
	at = begin_len(c);
	put(c, s, strlen(s));
	end_len(c, at);
}

/* 0 if s is absent or printable enough to be sent, MOAT_EINVAL if it has a control byte. */
static int check_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (p == NULL)
		return 0;
	for (; *p != '\0'; p++) {
		if (*p < 0x20)
			return MOAT_EINVAL;
	}
	return 0;
}

static int check_info(const struct moat_pp2_info *info)
{
	const char *strs[] = {info->authority, info->tls_version, info->cipher,   info->cn,
	                      info->tenant,    info->cert_serial, info->unique_id};
	size_t i;

	for (i = 0; i < MOAT_ARRAY_LEN(strs); i++) {
		if (check_str(strs[i]) != 0)
			return MOAT_EINVAL;
	}
	/* strnlen: the length only matters up to the limit */
	if (info->unique_id != NULL && strnlen(info->unique_id, UNIQUE_ID_MAX + 1) > UNIQUE_ID_MAX)
		return MOAT_EINVAL;
	if (info->authority != NULL && strnlen(info->authority, AUTHORITY_MAX + 1) > AUTHORITY_MAX)
		return MOAT_EINVAL;
	return 0;
}

/*
 * The 16 address bytes and the port of a TCP6 header; an IPv4 address becomes the IPv4-mapped
 * IPv6 address ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2).
 */
static void addr6(const struct sockaddr_storage *ss, unsigned char out[16], uint16_t *port)
{
	if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, ss, sizeof(sin6));
		memcpy(out, &sin6.sin6_addr, 16);
		*port = sin6.sin6_port;
	} else {
		struct sockaddr_in sin;

		memcpy(&sin, ss, sizeof(sin));
		memset(out, 0, 10);
		out[10] = 0xFF;
		out[11] = 0xFF;
		memcpy(out + 12, &sin.sin_addr, 4);
		*port = sin.sin_port;
	}
}

/* Both addresses and ports; ports stay in network order as the sockaddrs hold them. */
static void put_addrs(struct cursor *c, const struct sockaddr_storage *src,
                      const struct sockaddr_storage *dst)
{
	if (src->ss_family == AF_INET && dst->ss_family == AF_INET) {
		struct sockaddr_in s, d;

		memcpy(&s, src, sizeof(s));
		memcpy(&d, dst, sizeof(d));
		put(c, &s.sin_addr, 4);
		put(c, &d.sin_addr, 4);
		put(c, &s.sin_port, 2);
		put(c, &d.sin_port, 2);
	} else {
		unsigned char sa[16], da[16];
		uint16_t sp, dp;

		addr6(src, sa, &sp);
		addr6(dst, da, &dp);
		put(c, sa, 16);
		put(c, da, 16);
		put(c, &sp, 2);
		put(c, &dp, 2);
	}
}

/* PP2_TYPE_SSL: client bits, verify, then the sub-TLVs that were given. */
static void put_ssl(struct cursor *c, const struct moat_pp2_info *info)
{
	unsigned client = MOAT_PP2_CLIENT_SSL;
	uint32_t verify;
	size_t at;

	if (info->cert_conn)
		client |= MOAT_PP2_CLIENT_CERT_CONN;
	if (info->cert_sess)
		client |= MOAT_PP2_CLIENT_CERT_SESS;
	/* zero means "a certificate was presented and verified", so not without a certificate */
	verify = (info->cert_verified && (info->cert_conn || info->cert_sess)) ? 0 : 1;

	put_u8(c, MOAT_PP2_TYPE_SSL);
	at = begin_len(c);
	put_u8(c, client);
	put_be32(c, verify);
	put_str_tlv(c, MOAT_PP2_SUBTYPE_SSL_VERSION, info->tls_version);
	put_str_tlv(c, MOAT_PP2_SUBTYPE_SSL_CN, info->cn);
	put_str_tlv(c, MOAT_PP2_SUBTYPE_SSL_CIPHER, info->cipher);
	end_len(c, at);
}

static int is_inet(const struct sockaddr_storage *ss)
{
	return ss != NULL && (ss->ss_family == AF_INET || ss->ss_family == AF_INET6);
}

int moat_pp2_encode(const struct moat_pp2_info *info, unsigned char *buf, size_t cap)
{
	struct cursor c = {buf, cap, 0, 0};
	int both4;
	size_t at;

	if (info == NULL || !is_inet(info->src) || !is_inet(info->dst))
		return MOAT_EINVAL;
	if (check_info(info) != 0)
		return MOAT_EINVAL;
	both4 = info->src->ss_family == AF_INET && info->dst->ss_family == AF_INET;

	put(&c, signature, sizeof(signature));
	put_u8(&c, VER_CMD_PROXY);
	put_u8(&c, both4 ? FAM_TCP4 : FAM_TCP6);
	at = begin_len(&c);
	put_addrs(&c, info->src, info->dst);

	/* TLVs in ascending type order; receivers do not require it, but it is easy to check */
	put_str_tlv(&c, MOAT_PP2_TYPE_AUTHORITY, info->authority);
	put_str_tlv(&c, MOAT_PP2_TYPE_UNIQUE_ID, info->unique_id);
	if (info->ssl)
		put_ssl(&c, info);
	put_str_tlv(&c, MOAT_PP2_TYPE_MOAT_TENANT, info->tenant);
	if (info->cert_sha256 != NULL) {
		put_u8(&c, MOAT_PP2_TYPE_MOAT_CERT_SHA256);
		put_be16(&c, SHA256_LEN);
		put(&c, info->cert_sha256, SHA256_LEN);
	}
	put_str_tlv(&c, MOAT_PP2_TYPE_MOAT_CERT_SERIAL, info->cert_serial);
	/* the header has one device id field: the CN, which moatd takes the device id from */
	put_str_tlv(&c, MOAT_PP2_TYPE_MOAT_DEVICE_ID, info->cn);
	end_len(&c, at);

	if (c.err != 0)
		return c.err;
	return (int)c.len;
}

int moat_pp2_encode_local(unsigned char *buf, size_t cap)
{
	struct cursor c = {buf, cap, 0, 0};

	put(&c, signature, sizeof(signature));
	put_u8(&c, VER_CMD_LOCAL);
	put_u8(&c, FAM_UNSPEC);
	put_be16(&c, 0);
	if (c.err != 0)
		return c.err;
	return (int)c.len;
}
