/*
 * Tests for src/core/cidr.c: parsing address ranges (valid and refused) and matching IPv4,
 * IPv6 and IPv4-mapped peers against them.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>
#include <cmocka.h>

#include "core/config.h"

static struct moat_cidr parse_ok(const char *s)
{
	struct moat_cidr c;

	memset(&c, 0xaa, sizeof(c));
	if (moat_cidr_parse(s, &c) != MOAT_OK)
		fail_msg("\"%s\" was refused", s);
	return c;
}

static struct sockaddr_storage peer(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(40000);
		assert_int_equal(inet_pton(AF_INET6, addr, &a6->sin6_addr), 1);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		a4->sin_family = AF_INET;
		a4->sin_port = htons(40000);
		assert_int_equal(inet_pton(AF_INET, addr, &a4->sin_addr), 1);
	}
	return ss;
}

/* Whether the peer address matches the one range s. */
static int in(const char *s, const char *addr)
{
	struct moat_cidr c = parse_ok(s);
	struct sockaddr_storage ss = peer(addr);

	return moat_cidr_match(&c, 1, &ss);
}

static void test_parse(void **state)
{
	static const struct {
		const char *s, *addr; /* the network, as IPv6 */
		unsigned prefix;
	} good[] = {
	        /* IPv4: stored mapped, the prefix counting the 96 bits of ::ffff: */
	        {"10.0.0.0/8", "::ffff:10.0.0.0", 104},
	        {"192.0.2.7", "::ffff:192.0.2.7", 128},
	        {"192.0.2.7/32", "::ffff:192.0.2.7", 128},
	        {"0.0.0.0/0", "::ffff:0.0.0.0", 96},
	        {"255.255.255.255", "::ffff:255.255.255.255", 128},
	        {"172.16.0.0/12", "::ffff:172.16.0.0", 108},
	        {"192.168.128.0/17", "::ffff:192.168.128.0", 113},
	        {"10.0.0.0/10", "::ffff:10.0.0.0", 106},
	        /* IPv6 */
	        {"2001:db8::/32", "2001:db8::", 32},
	        {"::1", "::1", 128},
	        {"::1/128", "::1", 128},
	        {"::/0", "::", 0},
	        {"fe80::/10", "fe80::", 10},
	        {"2001:DB8:8000::/33", "2001:db8:8000::", 33},
	        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128},
	        /* an IPv4-mapped range written as IPv6 is the same range */
	        {"::ffff:10.0.0.0/104", "::ffff:10.0.0.0", 104},
	        {"::ffff:0:0/96", "::ffff:0.0.0.0", 96},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct moat_cidr c = parse_ok(good[i].s);
		unsigned char want[16];

		assert_int_equal(inet_pton(AF_INET6, good[i].addr, want), 1);
		assert_memory_equal(c.addr, want, 16);
		if (c.prefix != good[i].prefix)
			fail_msg("\"%s\": prefix %u, want %u", good[i].s, c.prefix, good[i].prefix);
	}
}

static void test_parse_bad(void **state)
{
	static const char *const bad[] = {
	        "",
	        "/",
	        "/8",
	        "10.0.0.0/",
	        "10.0.0.0/33",
	        "10.0.0.0/99",
	        "10.0.0.0/4294967304", /* 2^32 + 8: no wrap-around to 8 */
	        "10.0.0.0/-1",
	        "10.0.0.0/+8",
	        "10.0.0.0/08",
	        "10.0.0.0/8 ",
	        " 10.0.0.0/8",
	        "10.0.0.0 /8",
	        "10.0.0.0/ 8",
	        "10.0.0.0/8x",
	        "10.0.0.0/8/8",
	        "10.0.0.0//8",
	        "10.0.0.0/0x8",
	        "10.0.0.1/8", /* bits set after the prefix */
	        "11.0.0.0/7",
	        "192.0.2.1/31",
	        "1.0.0.0/0",
	        "10.0.0/8",
	        "10.0.0",
	        "10",
	        "10.0.0.256",
	        "010.0.0.1",
	        "1.2.3.4.5",
	        "1.2.3.-4",
	        "example.com",
	        "localhost",
	        "*",
	        "::1/129",
	        "::/200",
	        "::1/",
	        "2001:db8::1/32",
	        "::1/127",
	        "::1/0",
	        "[::1]",
	        "[::1]/128",
	        "fe80::1%eth0",
	        "fe80::%1/64",
	        ":::1",
	        "1::2::3",
	        "12345::",
	        "::ffff:10.0.0.1/120",
	        "1111:2222:3333:4444:5555:6666:7777:8888:9999",
	        "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc/128", /* > buffer */
	        "10.0.0.0,10.1.0.0",
	        "10.0.0.0\n",
	};
	struct moat_cidr c, before;
	size_t i;

	(void)state;
	memset(&before, 0x5a, sizeof(before));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = before;
		if (moat_cidr_parse(bad[i], &c) != MOAT_EINVAL)
			fail_msg("\"%s\" was accepted", bad[i]);
		assert_memory_equal(&c, &before, sizeof(c)); /* untouched on failure */
	}
	assert_int_equal(moat_cidr_parse(NULL, &c), MOAT_EINVAL);
	assert_int_equal(moat_cidr_parse("10.0.0.0/8", NULL), MOAT_EINVAL);
}

static void test_match_v4(void **state)
{
	(void)state;
	assert_true(in("10.0.0.0/8", "10.0.0.0"));
	assert_true(in("10.0.0.0/8", "10.1.2.3"));
	assert_true(in("10.0.0.0/8", "10.255.255.255"));
	assert_false(in("10.0.0.0/8", "11.0.0.0"));
	assert_false(in("10.0.0.0/8", "9.255.255.255"));
	/* prefixes that do not end on a byte */
	assert_true(in("10.0.0.0/7", "11.255.255.255"));
	assert_false(in("10.0.0.0/7", "12.0.0.0"));
	assert_true(in("10.0.0.0/9", "10.127.255.255"));
	assert_false(in("10.0.0.0/9", "10.128.0.0"));
	assert_true(in("172.16.0.0/12", "172.31.0.1"));
	assert_false(in("172.16.0.0/12", "172.32.0.1"));
	assert_true(in("192.0.2.6/31", "192.0.2.7"));
	assert_false(in("192.0.2.6/31", "192.0.2.8"));
	/* /32 and a bare address: that address only */
	assert_true(in("192.0.2.7/32", "192.0.2.7"));
	assert_false(in("192.0.2.7/32", "192.0.2.6"));
	assert_true(in("192.0.2.7", "192.0.2.7"));
	assert_false(in("192.0.2.7", "192.0.2.71"));
	/* /0: every IPv4 address, and no IPv6 one */
	assert_true(in("0.0.0.0/0", "0.0.0.0"));
	assert_true(in("0.0.0.0/0", "255.255.255.255"));
	assert_true(in("0.0.0.0/0", "::ffff:1.2.3.4"));
	assert_false(in("0.0.0.0/0", "2001:db8::1"));
	assert_false(in("0.0.0.0/0", "::1"));
	assert_false(in("0.0.0.0/0", "::"));
}

static void test_match_v6(void **state)
{
	(void)state;
	assert_true(in("2001:db8::/32", "2001:db8::1"));
	assert_true(in("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(in("2001:db8::/32", "2001:db9::1"));
	assert_true(in("2001:db8:8000::/33", "2001:db8:8000::1"));
	assert_false(in("2001:db8:8000::/33", "2001:db8:7fff::1"));
	assert_true(in("::1/128", "::1"));
	assert_true(in("::1", "::1"));
	assert_false(in("::1", "::2"));
	assert_false(in("::1", "127.0.0.1")); /* IPv6 loopback is not IPv4 loopback */
	/* ::/0 is every address, IPv4 included: IPv4 peers are compared in their mapped form */
	assert_true(in("::/0", "2001:db8::1"));
	assert_true(in("::/0", "10.0.0.1"));
	assert_true(in("::/0", "::"));
}

/* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: IPv4 ranges match them. */
static void test_match_mapped(void **state)
{
	(void)state;
	assert_true(in("10.0.0.0/8", "::ffff:10.0.0.1"));
	assert_false(in("10.0.0.0/8", "::ffff:11.0.0.1"));
	assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
	assert_true(in("192.0.2.7", "::ffff:192.0.2.7"));
	assert_true(in("::ffff:10.0.0.0/104", "10.9.8.7"));
	assert_true(in("::ffff:0:0/96", "8.8.8.8"));
	/* the IPv4-compatible form (::a.b.c.d, deprecated) is not the mapped one */
	assert_false(in("10.0.0.0/8", "::10.0.0.1"));
}

static void test_match_lists(void **state)
{
	struct moat_cidr list[3];
	struct sockaddr_storage ss;
	struct sockaddr_un *un = (struct sockaddr_un *)&ss;

	(void)state;
	list[0] = parse_ok("10.0.0.0/8");
	list[1] = parse_ok("::1");
	list[2] = parse_ok("2001:db8::/32");
	ss = peer("10.1.1.1");
	assert_true(moat_cidr_match(list, 3, &ss));
	assert_false(moat_cidr_match(list + 1, 2, &ss));
	ss = peer("::1");
	assert_true(moat_cidr_match(list, 3, &ss));
	assert_false(moat_cidr_match(list, 1, &ss));
	ss = peer("2001:db8::5");
	assert_true(moat_cidr_match(list, 3, &ss));
	assert_false(moat_cidr_match(list, 2, &ss));
	ss = peer("192.0.2.1");
	assert_false(moat_cidr_match(list, 3, &ss));
	/* an empty list matches nothing */
	ss = peer("10.1.1.1");
	assert_false(moat_cidr_match(list, 0, &ss));
	assert_false(moat_cidr_match(NULL, 0, &ss));
	assert_false(moat_cidr_match(list, 3, NULL));
	/* neither IPv4 nor IPv6 */
	memset(&ss, 0, sizeof(ss));
	un->sun_family = AF_UNIX;
	assert_false(moat_cidr_match(list, 3, &ss));
	memset(&ss, 0, sizeof(ss));
	assert_false(moat_cidr_match(list, 3, &ss)); /* AF_UNSPEC */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse),        cmocka_unit_test(test_parse_bad),
	        cmocka_unit_test(test_match_v4),     cmocka_unit_test(test_match_v6),
	        cmocka_unit_test(test_match_mapped), cmocka_unit_test(test_match_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
