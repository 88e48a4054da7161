/*
 * Source address ranges for a listener's allow and deny lists (see config.h).
 *
 * Every range and every peer address is compared as 16 bytes: IPv4 as its IPv4-mapped IPv6 form
 * (::ffff:a.b.c.d). A dual-stack socket reports IPv4 peers in that form anyway, so one
 * representation serves plain IPv4 sockets, IPv6 sockets and mapped peers alike.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/config.h"

#define V4_MAPPED_PREFIX 96 /* bits before the IPv4 address in ::ffff:a.b.c.d */

static void map_v4(unsigned char out[16], const void *in4)
{
	memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	memcpy(out + 12, in4, 4);
}

/* Whether the first `prefix` bits of a and b are equal. */
static int prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	unsigned char mask;

	if (memcmp(a, b, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* Whether every bit after the first `prefix` bits of a is zero. */
static int host_bits_zero(const unsigned char *a, unsigned prefix)
{
	unsigned i = prefix / 8, rest = prefix % 8;

	if (rest != 0) {
		if ((a[i] & (unsigned char)(0xff >> rest)) != 0)
			return 0;
		i++;
	}
	for (; i < 16; i++) {
		if (a[i] != 0)
			return 0;
	}
	return 1;
}

/* "0" or 1 to 3 digits without a leading zero: "08" is refused rather than guessed at. */
static int parse_prefix(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t i, n = strlen(s);

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int moat_cidr_parse(const char *s, struct moat_cidr *out)
{
	char buf[INET6_ADDRSTRLEN];
	const char *slash;
	unsigned char addr[16];
	unsigned char raw[sizeof(struct in6_addr)];
	unsigned prefix, max;
	size_t n;
	int v6;

	if (s == NULL || out == NULL)
		return MOAT_EINVAL;
	slash = strchr(s, '/');
	n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(buf))
		return MOAT_EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	/* inet_pton takes no zone ("%eth0"), no brackets and no spaces: exactly an address */
	v6 = memchr(buf, ':', n) != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, raw) != 1)
		return MOAT_EINVAL;
	if (v6)
		memcpy(addr, raw, 16);
	else
		map_v4(addr, raw);
	max = v6 ? 128 : 32;
	prefix = max;
	if (slash != NULL && parse_prefix(slash + 1, max, &prefix) != 0)
		return MOAT_EINVAL;
	if (!v6)
		prefix += V4_MAPPED_PREFIX;
	/* 10.1.2.3/8 is more likely a typo than a wish for 10.0.0.0/8: refused, not masked */
	if (!host_bits_zero(addr, prefix))
		return MOAT_EINVAL;
	memcpy(out->addr, addr, 16);
	out->prefix = prefix;
	return MOAT_OK;
}

int moat_cidr_match(const struct moat_cidr *list, size_t n, const struct sockaddr_storage *addr)
{
	unsigned char a[16];
	size_t i;

	if (list == NULL || addr == NULL)
		return 0;
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)addr;

		map_v4(a, &sin->sin_addr);
	} else if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)addr;

		memcpy(a, &sin6->sin6_addr, 16);
	} else {
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (list[i].prefix <= 128 && prefix_equal(list[i].addr, a, list[i].prefix))
			return 1;
	}
	return 0;
}
