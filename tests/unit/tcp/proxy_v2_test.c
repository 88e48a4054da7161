/*
 * Unit tests for the PROXY protocol v2 writer in src/tcp/proxy_v2.c.
 *
 * Headers are read back with the strict decoder in pp2_decode.h and compared field by field
 * with what they were made from; one realistic header is also compared byte for byte with a
 * vector written out by hand from HAProxy's proxy-protocol.txt.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "tcp/proxy_v2.h"
#include "unit/tcp/pp2_decode.h"

#define CANARY 0xA5
#define BIG (70 * 1024)

static unsigned char buf[BIG + 64];
static char long_str[BIG];

/* SHA-256 of the empty string, a value anyone can check. */
static const unsigned char sha[32] = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
                                      0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                                      0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                      0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

static void sa4(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

static void sa6(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
}

/* What moatd sends for a verified device on a TLS listener. */
static void full_info(struct moat_pp2_info *info, const struct sockaddr_storage *src,
                      const struct sockaddr_storage *dst)
{
	memset(info, 0, sizeof(*info));
	info->src = src;
	info->dst = dst;
	info->authority = "mqtt.example.com";
	info->ssl = 1;
	info->cert_conn = 1;
	info->cert_verified = 1;
	info->tls_version = "TLSv1.3";
	info->cipher = "TLS_AES_256_GCM_SHA384";
	info->cn = "device-1";
	info->tenant = "demo";
	info->cert_sha256 = sha;
	info->cert_serial = "1A2B3C4D";
	info->unique_id = "5f1d8e2a9c3b7046";
}

/* Encodes into a big buffer, decodes strictly and compares; returns the header length. */
static size_t round_trip(const struct moat_pp2_info *info, struct pp2_decoded *d)
{
	const char *err = NULL, *diff;
	int n;

	memset(buf, CANARY, sizeof(buf));
	n = moat_pp2_encode(info, buf, BIG);
	assert_true(n >= 16);
	assert_int_equal(buf[n], CANARY);
	if (pp2_decode(buf, (size_t)n, d, &err) != 0)
		fail_msg("decode: %s", err);
	diff = pp2_check(info, d);
	if (diff != NULL)
		fail_msg("round trip: %s", diff);
	return (size_t)n;
}

static void ipv4(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;

	sa4(&s, "192.0.2.10", 40000);
	sa4(&t, "198.51.100.1", 8883);
	full_info(&info, &s, &t);
	round_trip(&info, &d);
	assert_int_equal(buf[12], 0x21);
	assert_int_equal(buf[13], 0x11);
	assert_int_equal(d.src_port, 40000);
	assert_int_equal(d.dst_port, 8883);
	assert_memory_equal(d.src, "\xc0\x00\x02\x0a", 4);
	assert_memory_equal(d.dst, "\xc6\x33\x64\x01", 4);
}

static void ipv6(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;

	sa6(&s, "2001:db8::1234:5678", 65535);
	sa6(&t, "2001:db8:ffff::1", 1);
	full_info(&info, &s, &t);
	round_trip(&info, &d);
	assert_int_equal(buf[12], 0x21);
	assert_int_equal(buf[13], 0x21);
	assert_int_equal(d.src_port, 65535);
	assert_int_equal(d.dst_port, 1);
	assert_memory_equal(d.src, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\x12\x34\x56\x78", 16);
	assert_memory_equal(d.dst, "\x20\x01\x0d\xb8\xff\xff\0\0\0\0\0\0\0\0\0\x01", 16);
}

/* An IPv4 address next to an IPv6 one is sent as its IPv4-mapped form in a TCP6 header. */
static void mixed_families(void **state MOAT_UNUSED)
{
	static const unsigned char mapped[16] = {0, 0, 0,    0,    0,   0, 0, 0,
	                                         0, 0, 0xff, 0xff, 127, 0, 0, 1};
	struct sockaddr_storage v4, v6, m6;
	struct moat_pp2_info info;
	struct pp2_decoded d;

	sa4(&v4, "127.0.0.1", 5000);
	sa6(&v6, "::1", 6000);
	sa6(&m6, "::ffff:127.0.0.1", 7000);

	full_info(&info, &v4, &v6);
	round_trip(&info, &d);
	assert_int_equal(d.fam, 0x21);
	assert_memory_equal(d.src, mapped, 16);
	assert_int_equal(d.src_port, 5000);
	assert_int_equal(d.dst_port, 6000);

	full_info(&info, &v6, &v4);
	round_trip(&info, &d);
	assert_int_equal(d.fam, 0x21);
	assert_memory_equal(d.dst, mapped, 16);

	/* an IPv4-mapped IPv6 address and an IPv4 one: the same 16 bytes either way */
	full_info(&info, &m6, &v4);
	round_trip(&info, &d);
	assert_int_equal(d.fam, 0x21);
	assert_memory_equal(d.src, mapped, 16);
	assert_memory_equal(d.dst, mapped, 16);

	/* two IPv6 addresses stay IPv6, even when both are IPv4-mapped */
	full_info(&info, &m6, &m6);
	round_trip(&info, &d);
	assert_int_equal(d.fam, 0x21);
}

static void local(void **state MOAT_UNUSED)
{
	static const unsigned char want[16] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	                                       0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
	struct pp2_decoded d;
	const char *err = NULL;
	size_t cap;

	memset(buf, CANARY, sizeof(buf));
	assert_int_equal(moat_pp2_encode_local(buf, sizeof(buf)), 16);
	assert_memory_equal(buf, want, 16);
	assert_int_equal(buf[16], CANARY);
	assert_int_equal(pp2_decode(buf, 16, &d, &err), 0);
	assert_int_equal(d.command, 0);

	for (cap = 0; cap < 16; cap++) {
		memset(buf, CANARY, sizeof(buf));
		assert_int_equal(moat_pp2_encode_local(buf, cap), MOAT_ETOOBIG);
		assert_int_equal(buf[cap], CANARY);
	}
	assert_int_equal(moat_pp2_encode_local(NULL, 0), MOAT_ETOOBIG);
}

/* No TLV at all: the fixed part and the addresses. */
static void bare(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;

	sa4(&s, "10.0.0.1", 1);
	sa4(&t, "10.0.0.2", 2);
	memset(&info, 0, sizeof(info));
	info.src = &s;
	info.dst = &t;
	assert_int_equal(round_trip(&info, &d), 16 + 12);
	assert_int_equal(buf[14], 0);
	assert_int_equal(buf[15], 12);

	sa6(&s, "fe80::1", 1);
	assert_int_equal(round_trip(&info, &d), 16 + 36);
	assert_int_equal(buf[15], 36);

	/* empty strings are left out like NULL ones */
	info.authority = info.cipher = info.cn = info.tenant = "";
	info.cert_serial = info.unique_id = info.tls_version = "";
	assert_int_equal(round_trip(&info, &d), 16 + 36);
}

static size_t str_tlv(const char *s)
{
	return s == NULL || s[0] == '\0' ? 0 : 3 + strlen(s);
}

/* Each TLV and SSL sub-TLV present or absent, in every combination, with every client bit. */
static void every_combination(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;
	unsigned mask;

	sa4(&s, "203.0.113.7", 51000);
	sa4(&t, "203.0.113.1", 443);
	for (mask = 0; mask < 1u << 12; mask++) {
		size_t want = 16 + 12;

		memset(&info, 0, sizeof(info));
		info.src = &s;
		info.dst = &t;
		info.authority = mask & 1 ? "a.example" : NULL;
		info.unique_id = mask & 2 ? "0123456789abcdef" : NULL;
		info.ssl = !!(mask & 4);
		info.tls_version = mask & 8 ? "TLSv1.2" : NULL;
		info.cn = mask & 16 ? "sensor-42" : NULL;
		info.cipher = mask & 32 ? "ECDHE-RSA-AES128-GCM-SHA256" : NULL;
		info.tenant = mask & 64 ? "acme" : NULL;
		info.cert_sha256 = mask & 128 ? sha : NULL;
		info.cert_serial = mask & 256 ? "00FF" : NULL;
		info.cert_conn = !!(mask & 512);
		info.cert_sess = !!(mask & 1024);
		info.cert_verified = !!(mask & 2048);

		want += str_tlv(info.authority) + str_tlv(info.unique_id) + str_tlv(info.tenant) +
		        str_tlv(info.cert_serial) + str_tlv(info.cn);
		if (info.cert_sha256 != NULL)
			want += 3 + 32;
		if (info.ssl)
			want += 3 + 5 + str_tlv(info.tls_version) + str_tlv(info.cn) +
			        str_tlv(info.cipher);
		assert_int_equal(round_trip(&info, &d), want);
		assert_int_equal(pp2_be16(buf + 14), want - 16);
	}
}

static void ssl_bits(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;

	sa4(&s, "192.0.2.1", 1000);
	sa4(&t, "192.0.2.2", 2000);
	full_info(&info, &s, &t);

	round_trip(&info, &d);
	assert_int_equal(d.ssl_client, 0x03);
	assert_int_equal(d.ssl_verify, 0);

	/* a resumed session: the certificate was presented on the session, not this connection */
	info.cert_conn = 0;
	info.cert_sess = 1;
	round_trip(&info, &d);
	assert_int_equal(d.ssl_client, 0x05);
	assert_int_equal(d.ssl_verify, 0);

	info.cert_conn = 1;
	round_trip(&info, &d);
	assert_int_equal(d.ssl_client, 0x07);

	info.cert_verified = 0;
	round_trip(&info, &d);
	assert_int_equal(d.ssl_verify, 1);

	/* no certificate: verify is non-zero even if the caller claims it verified */
	info.cert_conn = info.cert_sess = 0;
	info.cert_verified = 1;
	round_trip(&info, &d);
	assert_int_equal(d.ssl_client, 0x01);
	assert_int_equal(d.ssl_verify, 1);

	/* ssl = 0 leaves the SSL TLV out, whatever the other SSL fields say */
	info.ssl = 0;
	info.cert_conn = 1;
	round_trip(&info, &d);
	assert_false(d.has_ssl);
	assert_non_null(d.device_id.p);
}

/* Values up to the 16-bit limits of a TLV and of the whole header. */
static void long_values(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;
	char uid[130];

	sa4(&s, "192.0.2.1", 1000);
	sa4(&t, "192.0.2.2", 2000);
	memset(&info, 0, sizeof(info));
	info.src = &s;
	info.dst = &t;
	memset(long_str, 'x', sizeof(long_str));

	/* the length field covers 12 address bytes + 3 + value: at most 65535 */
	long_str[65520] = '\0';
	info.tenant = long_str;
	assert_int_equal(round_trip(&info, &d), 16 + 65535);
	assert_int_equal(d.tenant.len, 65520);
	assert_int_equal(pp2_be16(buf + 14), 0xFFFF);
	long_str[65520] = 'x';
	long_str[65521] = '\0';
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_ETOOBIG);

	/* a value over 65535 can never be sent */
	long_str[65521] = 'x';
	long_str[65536] = '\0';
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_ETOOBIG);

	/* a long SSL sub-TLV: 12 + SSL (3 + 5 + 3 + cipher) is the binding limit */
	info.tenant = NULL;
	info.ssl = 1;
	long_str[65536] = 'x';
	long_str[65512] = '\0';
	info.cipher = long_str;
	assert_int_equal(round_trip(&info, &d), 16 + 65535);
	assert_int_equal(d.ssl_cipher.len, 65512);
	long_str[65512] = 'x';
	long_str[65513] = '\0';
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_ETOOBIG);
	long_str[65513] = 'x';
	long_str[65536] = '\0';
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_ETOOBIG);
	long_str[65536] = 'x';

	/* AUTHORITY is at most 255 bytes (HAProxy drops the connection otherwise) */
	info.cipher = NULL;
	long_str[255] = '\0';
	info.authority = long_str;
	round_trip(&info, &d);
	assert_int_equal(d.authority.len, 255);
	long_str[255] = 'x';
	long_str[256] = '\0';
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
	long_str[256] = 'x';
	info.authority = NULL;

	/* UNIQUE_ID is at most 128 bytes by the specification */
	memset(uid, 'u', sizeof(uid));
	uid[128] = '\0';
	info.unique_id = uid;
	round_trip(&info, &d);
	assert_int_equal(d.unique_id.len, 128);
	uid[128] = 'u';
	uid[129] = '\0';
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);

	/* a realistic worst case fits MOAT_PP2_MAX_HEADER */
	sa6(&s, "2001:db8::1", 1);
	sa6(&t, "2001:db8::2", 2);
	full_info(&info, &s, &t);
	long_str[253] = '\0';
	info.authority = long_str;
	uid[128] = '\0';
	info.unique_id = uid;
	info.cn = long_str + 253 - 64;
	info.tenant = long_str + 253 - 64;
	info.cert_serial = "0123456789ABCDEF0123456789ABCDEF0123456789";
	assert_true(round_trip(&info, &d) <= MOAT_PP2_MAX_HEADER);
	long_str[253] = 'x';
}

/* Every cap below the size fails without writing past it; the exact size works. */
static void caps(void **state MOAT_UNUSED)
{
	static unsigned char want[MOAT_PP2_MAX_HEADER];
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	int n;
	size_t cap;

	sa6(&s, "2001:db8::1", 1);
	sa4(&t, "192.0.2.2", 2);
	full_info(&info, &s, &t);
	n = moat_pp2_encode(&info, want, sizeof(want));
	assert_true(n > 16);

	for (cap = 0; cap < (size_t)n; cap++) {
		memset(buf, CANARY, sizeof(buf));
		assert_int_equal(moat_pp2_encode(&info, buf, cap), MOAT_ETOOBIG);
		assert_int_equal(buf[cap], CANARY);
	}
	memset(buf, CANARY, sizeof(buf));
	assert_int_equal(moat_pp2_encode(&info, buf, (size_t)n), n);
	assert_memory_equal(buf, want, (size_t)n);
	assert_int_equal(buf[n], CANARY);
	assert_int_equal(moat_pp2_encode(&info, NULL, 0), MOAT_ETOOBIG);
}

static void invalid_strings(void **state MOAT_UNUSED)
{
	static const char *const bad[] = {"a\nb", "\r", "x\x1f", "\t", "\x01", "evil\x1b[2J"};
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;
	size_t i, f;

	sa4(&s, "192.0.2.1", 1000);
	sa4(&t, "192.0.2.2", 2000);
	for (f = 0; f < 7; f++) {
		for (i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
			full_info(&info, &s, &t);
			switch (f) {
			case 0:
				info.authority = bad[i];
				break;
			case 1:
				info.unique_id = bad[i];
				break;
			case 2:
				info.tls_version = bad[i];
				break;
			case 3:
				info.cn = bad[i];
				break;
			case 4:
				info.cipher = bad[i];
				break;
			case 5:
				info.tenant = bad[i];
				break;
			default:
				info.cert_serial = bad[i];
				break;
			}
			memset(buf, CANARY, sizeof(buf));
			assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
			assert_int_equal(buf[0], CANARY);
			/* invalid input is reported before a too small buffer */
			assert_int_equal(moat_pp2_encode(&info, buf, 0), MOAT_EINVAL);
			/* ... and checked even where it would not be sent */
			info.ssl = 0;
			assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
		}
	}

	/* DEL, UTF-8 and spaces are not control bytes below 0x20 and go through as they are */
	full_info(&info, &s, &t);
	info.cn = "capteur \xc3\xa9t\xc3\xa9 \x7f";
	round_trip(&info, &d);
}

static void invalid_addresses(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t, u;
	struct moat_pp2_info info;

	sa4(&s, "192.0.2.1", 1000);
	sa4(&t, "192.0.2.2", 2000);
	memset(&u, 0, sizeof(u));
	full_info(&info, &s, &t);

	assert_int_equal(moat_pp2_encode(NULL, buf, BIG), MOAT_EINVAL);
	info.src = NULL;
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
	info.src = &s;
	info.dst = NULL;
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
	info.dst = &u; /* AF_UNSPEC */
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
	u.ss_family = AF_UNIX;
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), MOAT_EINVAL);
	info.src = &u;
	info.dst = &t;
	assert_int_equal(moat_pp2_encode(&info, buf, 0), MOAT_EINVAL);
}

/*
 * A TCP4 header for device-1 connecting from 192.0.2.10:40000 to 198.51.100.1:8883, written
 * out byte by byte from proxy-protocol.txt.
 */
static const unsigned char golden[] =
        /* signature */
        "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
        /* version 2 + PROXY, TCP over IPv4, 168 bytes follow */
        "\x21"
        "\x11"
        "\x00\xa8"
        /* source 192.0.2.10, destination 198.51.100.1, ports 40000 and 8883 */
        "\xc0\x00\x02\x0a"
        "\xc6\x33\x64\x01"
        "\x9c\x40"
        "\x22\xb3"
        /* PP2_TYPE_AUTHORITY, 16 bytes */
        "\x02\x00\x10"
        "mqtt.example.com"
        /* PP2_TYPE_UNIQUE_ID, 16 bytes */
        "\x05\x00\x10"
        "5f1d8e2a9c3b7046"
        /* PP2_TYPE_SSL, 51 bytes: client SSL|CERT_CONN, verify 0, then 3 sub-TLVs */
        "\x20\x00\x33"
        "\x03"
        "\x00\x00\x00\x00"
        "\x21\x00\x07"
        "TLSv1.3"
        "\x22\x00\x08"
        "device-1"
        "\x23\x00\x16"
        "TLS_AES_256_GCM_SHA384"
        /* 0xE0 tenant, 4 bytes */
        "\xe0\x00\x04"
        "demo"
        /* 0xE1 certificate SHA-256, 32 bytes */
        "\xe1\x00\x20"
        "\xe3\xb0\xc4\x42\x98\xfc\x1c\x14\x9a\xfb\xf4\xc8\x99\x6f\xb9\x24"
        "\x27\xae\x41\xe4\x64\x9b\x93\x4c\xa4\x95\x99\x1b\x78\x52\xb8\x55"
        /* 0xE2 certificate serial, 8 bytes */
        "\xe2\x00\x08"
        "1A2B3C4D"
        /* 0xE3 device id, 8 bytes */
        "\xe3\x00\x08"
        "device-1";

static void golden_vector(void **state MOAT_UNUSED)
{
	struct sockaddr_storage s, t;
	struct moat_pp2_info info;
	struct pp2_decoded d;
	const char *err = NULL;

	assert_int_equal(sizeof(golden) - 1, 16 + 168);
	sa4(&s, "192.0.2.10", 40000);
	sa4(&t, "198.51.100.1", 8883);
	full_info(&info, &s, &t);
	assert_int_equal(moat_pp2_encode(&info, buf, BIG), sizeof(golden) - 1);
	assert_memory_equal(buf, golden, sizeof(golden) - 1);
	assert_int_equal(pp2_decode(golden, sizeof(golden) - 1, &d, &err), 0);
	assert_null(pp2_check(&info, &d));
}

/* The decoder the other tests rely on refuses what it should. */
static void decoder_negative(void **state MOAT_UNUSED)
{
	static const struct {
		size_t at;
		unsigned char byte;
	} flips[] = {
	        {0, 0x0c}, /* signature */
	        {4, 0x01}, /* the NUL in the signature */
	        {12, 0x11}, /* version 1 */
	        {12, 0x22}, /* command 2 */
	        {13, 0x12}, /* UDP over IPv4 */
	        {13, 0x31}, /* UNIX stream */
	        {15, 0xa7}, /* length one short */
	        {15, 0xa9}, /* length one long */
	        {28, 0x05}, /* AUTHORITY retyped as UNIQUE_ID: repeated type */
	        {28, 0x01}, /* ALPN, which Moat never sends */
	        {30, 0x11}, /* AUTHORITY length one over */
	        {67, 0x01}, /* SSL length past the header */
	        {68, 0x34}, /* SSL length one over: a truncated sub-TLV */
	        {69, 0x0b}, /* unknown client bit */
	        {69, 0x02}, /* no PP2_CLIENT_SSL */
	        {73, 0x02}, /* verify 2 */
	        {74, 0x24}, /* SIG_ALG sub-TLV */
	        {74, 0x23}, /* VERSION retyped as CIPHER: out of order */
	        {77, 0x0a}, /* line feed in TLS version */
	        {120, 0xe1}, /* tenant retyped as SHA-256 of 4 bytes */
	        {176, 0x0d}, /* carriage return in the device id */
	};
	unsigned char h[sizeof(golden)];
	struct pp2_decoded d;
	const char *err;
	size_t i, n = sizeof(golden) - 1;

	for (i = 0; i < MOAT_ARRAY_LEN(flips); i++) {
		memcpy(h, golden, n);
		assert_true(h[flips[i].at] != flips[i].byte);
		h[flips[i].at] = flips[i].byte;
		err = NULL;
		if (pp2_decode(h, n, &d, &err) == 0)
			fail_msg("flip %zu accepted", i);
		assert_non_null(err);
	}
	/* every truncation, and one byte too many */
	for (i = 0; i < n; i++)
		assert_int_equal(pp2_decode(golden, i, &d, &err), -1);
	memcpy(h, golden, n);
	h[n] = 0;
	assert_int_equal(pp2_decode(h, n + 1, &d, &err), -1);
	/* client bit CERT_CONN cleared: verify 0 without a certificate */
	memcpy(h, golden, n);
	h[69] = 0x01;
	assert_int_equal(pp2_decode(h, n, &d, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(ipv4),
	        cmocka_unit_test(ipv6),
	        cmocka_unit_test(mixed_families),
	        cmocka_unit_test(local),
	        cmocka_unit_test(bare),
	        cmocka_unit_test(every_combination),
	        cmocka_unit_test(ssl_bits),
	        cmocka_unit_test(long_values),
	        cmocka_unit_test(caps),
	        cmocka_unit_test(invalid_strings),
	        cmocka_unit_test(invalid_addresses),
	        cmocka_unit_test(golden_vector),
	        cmocka_unit_test(decoder_negative),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
