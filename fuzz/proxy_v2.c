/*
 * Fuzz driver for moat_pp2_encode and moat_pp2_encode_local (src/tcp/proxy_v2.c).
 *
 * The input describes a struct moat_pp2_info and a buffer size:
 *
 *   byte 0      flags: 0x01 ssl, 0x02 cert_conn, 0x04 cert_sess, 0x08 cert_verified,
 *               0x10 cert_sha256 present, 0x20 pad the cipher instead of the tenant,
 *               0x40 add 4096 to the pad, 0x80 also encode a LOCAL header
 *   byte 1      addresses: bits 0-1 source, bits 2-3 destination (0 IPv4, 1 IPv6,
 *               2 IPv4-mapped IPv6, 3 AF_UNIX), 0x10 source NULL, 0x20 destination NULL
 *   byte 2      cap mode: 0 exact size, 1 below it, 2 absolute, 3 above it
 *   bytes 3-4   cap argument (big-endian)
 *   bytes 5-6   pad length (big-endian): this many 'a' appended to the tenant or cipher,
 *               so that values can reach the 16-bit limits
 *   7..74       source address (16), destination address (16), ports (2 + 2), SHA-256 (32)
 *   then        seven strings, each a big-endian 16-bit length (0xFFFF: NULL) and its bytes:
 *               authority, unique_id, tls_version, cipher, cn, tenant, cert_serial
 *
 * Missing bytes read as zero. The driver computes on its own what the result must be
 * (MOAT_EINVAL, MOAT_ETOOBIG or the exact header size), encodes into a heap buffer of exactly
 * cap bytes so that AddressSanitizer catches any write past it, and aborts unless the result
 * is the expected one, the header decodes with the strict test decoder and matches the input
 * field by field, one byte less fails with MOAT_ETOOBIG, and encoding again gives the same
 * bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcp/proxy_v2.h"
#include "../tests/unit/tcp/pp2_decode.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define NSTR 7
#define PAD_MAX (0xFFFF + 4096)

struct input {
	const uint8_t *p;
	size_t n, off;
};

static unsigned get8(struct input *in)
{
	return in->off < in->n ? in->p[in->off++] : 0;
}

static unsigned get16(struct input *in)
{
	unsigned hi = get8(in);

	return hi << 8 | get8(in);
}

static void get_bytes(struct input *in, void *out, size_t n)
{
	size_t have = in->off < in->n ? in->n - in->off : 0;

	if (have > n)
		have = n;
	memset(out, 0, n);
	memcpy(out, in->p + in->off, have);
	in->off += have;
}

/* A string of up to 0xFFFE input bytes plus `pad` 'a's, NUL-terminated, or NULL. */
static char *get_str(struct input *in, size_t pad)
{
	unsigned len = get16(in);
	size_t have = in->off < in->n ? in->n - in->off : 0;
	char *s;

	if (len == 0xFFFF)
		return NULL;
	if (len > have)
		len = (unsigned)have;
	s = malloc(len + pad + 1);
	CHECK(s != NULL);
	memcpy(s, in->p + in->off, len);
	memset(s + len, 'a', pad);
	s[len + pad] = '\0';
	in->off += len;
	return s;
}

static void make_addr(struct sockaddr_storage *ss, unsigned kind, const uint8_t addr[16],
                      const uint8_t port[2])
{
	memset(ss, 0, sizeof(*ss));
	switch (kind) {
	case 0: {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		memcpy(&sin->sin_port, port, 2);
		break;
	}
	case 1:
	case 2: {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		if (kind == 2) {
			memset(&sin6->sin6_addr, 0, 10);
			memset((uint8_t *)&sin6->sin6_addr + 10, 0xFF, 2);
		}
		memcpy(&sin6->sin6_port, port, 2);
		break;
	}
	default:
		ss->ss_family = AF_UNIX;
		break;
	}
}

static int has_control(const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20)
			return 1;
	}
	return 0;
}

static size_t tlv(const char *s)
{
	return s == NULL || s[0] == '\0' ? 0 : 3 + strlen(s);
}

/* What moat_pp2_encode must return with an unlimited buffer: the size, or MOAT_E*. */
static long expected(const struct moat_pp2_info *info)
{
	const char *strs[] = {info->authority, info->unique_id, info->tls_version, info->cipher,
	                      info->cn,        info->tenant,    info->cert_serial};
	size_t i, len;

	if (info->src == NULL || info->dst == NULL)
		return MOAT_EINVAL;
	if (info->src->ss_family != AF_INET && info->src->ss_family != AF_INET6)
		return MOAT_EINVAL;
	if (info->dst->ss_family != AF_INET && info->dst->ss_family != AF_INET6)
		return MOAT_EINVAL;
	for (i = 0; i < NSTR; i++) {
		if (has_control(strs[i]))
			return MOAT_EINVAL;
	}
	if (info->unique_id != NULL && strlen(info->unique_id) > 128)
		return MOAT_EINVAL;
	if (info->authority != NULL && strlen(info->authority) > 255)
		return MOAT_EINVAL;

	len = info->src->ss_family == AF_INET && info->dst->ss_family == AF_INET ? 12 : 36;
	len += tlv(info->authority) + tlv(info->unique_id) + tlv(info->tenant) +
	       tlv(info->cert_serial) + tlv(info->cn);
	if (info->cert_sha256 != NULL)
		len += 3 + 32;
	if (info->ssl)
		len += 3 + 5 + tlv(info->tls_version) + tlv(info->cn) + tlv(info->cipher);
	if (len > 0xFFFF)
		return MOAT_ETOOBIG;
	return (long)(16 + len);
}

static size_t pick_cap(unsigned mode, unsigned arg, long want)
{
	size_t need = want > 0 ? (size_t)want : 0;

	switch (mode & 3) {
	case 0:
		return need;
	case 1:
		return need == 0 ? 0 : need - 1 - arg % need;
	case 2:
		return arg;
	default:
		return need + arg % 64;
	}
}

static void local(size_t cap)
{
	unsigned char *b = malloc(cap ? cap : 1);
	const char *err = NULL;
	struct pp2_decoded d;
	int rc;

	CHECK(b != NULL);
	rc = moat_pp2_encode_local(b, cap);
	if (cap < 16) {
		CHECK(rc == MOAT_ETOOBIG);
	} else {
		CHECK(rc == 16);
		CHECK(pp2_decode(b, 16, &d, &err) == 0 && d.command == 0);
	}
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size, 0};
	struct sockaddr_storage src, dst;
	struct moat_pp2_info info;
	uint8_t a_src[16], a_dst[16], p_src[2], p_dst[2], sha[32];
	unsigned flags, fam, cap_mode, cap_arg, i;
	size_t pad, cap;
	char *strs[NSTR];
	unsigned char *b, *again;
	long want;
	int rc;

	flags = get8(&in);
	fam = get8(&in);
	cap_mode = get8(&in);
	cap_arg = get16(&in);
	pad = get16(&in) + (flags & 0x40 ? 4096 : 0);
	get_bytes(&in, a_src, 16);
	get_bytes(&in, a_dst, 16);
	get_bytes(&in, p_src, 2);
	get_bytes(&in, p_dst, 2);
	get_bytes(&in, sha, 32);
	for (i = 0; i < NSTR; i++) {
		size_t this_pad = 0;

		if ((i == 5 && !(flags & 0x20)) || (i == 3 && (flags & 0x20)))
			this_pad = pad;
		strs[i] = get_str(&in, this_pad);
	}

	make_addr(&src, fam & 3, a_src, p_src);
	make_addr(&dst, (fam >> 2) & 3, a_dst, p_dst);
	memset(&info, 0, sizeof(info));
	info.src = fam & 0x10 ? NULL : &src;
	info.dst = fam & 0x20 ? NULL : &dst;
	info.ssl = flags & 0x01;
	info.cert_conn = flags & 0x02;
	info.cert_sess = flags & 0x04;
	info.cert_verified = flags & 0x08;
	info.cert_sha256 = flags & 0x10 ? sha : NULL;
	info.authority = strs[0];
	info.unique_id = strs[1];
	info.tls_version = strs[2];
	info.cipher = strs[3];
	info.cn = strs[4];
	info.tenant = strs[5];
	info.cert_serial = strs[6];

	want = expected(&info);
	cap = pick_cap(cap_mode, cap_arg, want);
	b = malloc(cap ? cap : 1);
	CHECK(b != NULL);
	rc = moat_pp2_encode(&info, b, cap);
	if (want < 0) {
		CHECK(rc == want);
	} else if ((size_t)want > cap) {
		CHECK(rc == MOAT_ETOOBIG);
	} else {
		struct pp2_decoded d;
		const char *err = NULL, *diff;

		CHECK(rc == want);
		if (pp2_decode(b, (size_t)rc, &d, &err) != 0) {
			fprintf(stderr, "decode: %s\n", err);
			abort();
		}
		diff = pp2_check(&info, &d);
		if (diff != NULL) {
			fprintf(stderr, "round trip: %s\n", diff);
			abort();
		}
		again = malloc((size_t)rc);
		CHECK(again != NULL);
		CHECK(moat_pp2_encode(&info, again, (size_t)rc - 1) == MOAT_ETOOBIG);
		CHECK(moat_pp2_encode(&info, again, (size_t)rc) == rc);
		CHECK(memcmp(again, b, (size_t)rc) == 0);
		free(again);
	}
	free(b);

	if (flags & 0x80)
		local(cap);
	for (i = 0; i < NSTR; i++)
		free(strs[i]);
	return 0;
}
