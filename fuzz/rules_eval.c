/*
 * Fuzz driver for evaluation: moat_rules_eval (src/rules/eval.c, fields.c, path.c,
 * version.c, prefilter.c, regex.c) with fixed, realistic rules against random requests.
 *
 * The input is: one byte choosing the connection (IPv4, IPv6, mapped, no device, odd
 * firmware...), then a request head as a client sends it, then optionally a body. The head is
 * parsed with moat_http_parse_request (inputs it refuses are dropped, as the proxy would). The
 * driver aborts when:
 * - the verdict or any single rule differs with and without the prefilter;
 * - a verdict names a rule whose action it does not carry, or a disabled rule;
 * - a scratch just big enough for the value table changes anything but missing values
 *   (it must not crash, and blocks only what a full scratch blocks... or nothing).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const char rules[] =
        "[rule cve-2026-0001]\n"
        "name = Command injection in the cgi-bin diagnostic endpoint\n"
        "expr = starts_with(http.request.uri.path, \"/cgi-bin/\")\n"
        "       and any(url_decode(http.request.uri.args.values) matches r\"[;&|`\\n]|\\$\\(\")\n"
        "[rule traversal]\n"
        "name = Path traversal\n"
        "expr = url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"../\"\n"
        "       or url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"..\\\\\"\n"
        "[rule auth-bypass]\n"
        "name = Auth bypass\nstatus = 401\n"
        "expr = device.model == \"CAM-1\" and device.firmware < \"2.1.0\"\n"
        "       and count(http.request.headers[\"x-debug-auth\"]) > 0\n"
        "[rule scanners]\nname = scanners\naction = log\n"
        "expr = lower(http.user_agent) contains \"zgrab\" or http.user_agent matches "
        "r\"(?i)^(masscan|nmap|sqlmap)\" or lower(http.user_agent) in {\"python-requests\" \"-\"}\n"
        "[rule dry]\nname = dry\nmode = dry-run\n"
        "expr = http.request.method in {\"PUT\" \"DELETE\" \"TRACE\"} and not tls.client.verified\n"
        "[rule jndi]\nname = jndi\n"
        "expr = any(lower(url_decode(http.request.headers.values)) contains \"${jndi:\")\n"
        "       or http.request.body contains \"${jndi:\"\n"
        "[rule php]\nname = php\naction = close\n"
        "expr = ends_with(lower(http.request.uri.path), \".php\") and http.request.uri.args.names "
        "matches \"^(cmd|exec|system)$\"\n"
        "[rule big]\nname = big\n"
        "expr = http.request.body.size > 1048576 or len(http.request.uri.query) > 2048\n"
        "       or count(http.request.uri.args.names) > 100\n"
        "[rule admin]\nname = admin\naction = allow\n"
        "expr = ip.src in {10.0.0.0/8 2001:db8::/32} and starts_with(http.request.uri.path, "
        "\"/admin\")\n"
        "[rule admin-block]\nname = admin from outside\n"
        "expr = starts_with(http.request.uri.path, \"/admin\") and tenant != \"ops\"\n"
        "[rule hosts]\nname = hosts\naction = log\n"
        "expr = not http.host in {\"cam.example.com\" \"gw.example.com\"} and "
        "all(http.request.headers[\"host\"] != \"\")\n"
        "[rule tags]\nname = tags\nenabled = false\nexpr = any(device.tags == \"lab\")\n"
        "[rule firmware]\nname = firmware\naction = log\n"
        "expr = device.firmware in {\"1.0.0\" \"1.0.1\" \"v2.0.0-rc.1\"} or device.firmware "
        "matches \"beta\"\n"
        "[rule hdr]\nname = hdr\naction = log\n"
        "expr = http.request.headers.names == \"x-forwarded-host\" or "
        "any(len(http.request.headers[\"cookie\"]) > 4096) xor tls.sni == \"\"\n";

static struct moat_ruleset *rs;
static struct moat_http_request req;
static char mem[1 << 17];

static void init(void)
{
	if (rs != NULL)
		return;
	if (moat_rules_load_buffer("eval.rules", rules, sizeof(rules) - 1, MOAT_RULES_HTTP, NULL,
	                           NULL, NULL, &rs) != MOAT_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tags[] = {"lab", "beta"};
	static const char *const firmwares[] = {"2.0.9", "2.1.0", "v1.0.0",  "2.1.0-rc.1",
	                                        "bad",   NULL,    "1.0.1+b", "2.0.0-beta"};
	struct moat_device_info dev = {"CAM-1", NULL, tags, 2};
	struct moat_rules_scratch sc = {mem, sizeof(mem)};
	struct moat_rules_input in;
	struct moat_rules_verdict v1, v2, v3;
	struct sockaddr_storage ss;
	const char *err;
	uint8_t sel;
	size_t i;

	init();
	if (size < 1)
		return 0;
	sel = data[0];
	data++;
	size--;
	if (moat_http_parse_request((const char *)data, size, NULL, &req, &err) != MOAT_OK)
		return 0;
	memset(&ss, 0, sizeof(ss));
	if (sel & 1) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;

		a6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, (sel & 2) ? "::ffff:10.1.2.3" : "2001:db8::7", &a6->sin6_addr);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;

		a4->sin_family = AF_INET;
		inet_pton(AF_INET, (sel & 2) ? "10.9.8.7" : "198.51.100.1", &a4->sin_addr);
	}
	dev.firmware = firmwares[(sel >> 2) & 7];
	memset(&in, 0, sizeof(in));
	in.src = &ss;
	in.tls_version = "TLSv1.3";
	in.sni = (sel & 0x20) ? "" : "cam.example.com";
	in.client_verified = !(sel & 0x40);
	in.fingerprint = "ab";
	in.serial = "01";
	in.tenant = "acme";
	in.device_id = "d";
	in.device = (sel & 0x80) ? NULL : &dev;
	in.req = &req;
	if (req.head_len < size) {
		in.body = (const char *)data + req.head_len;
		in.body_len = size - req.head_len;
	}
	in.body_size = in.body_len;

	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v1, 0);
	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v2, MOAT_RULES_EVAL_NO_PREFILTER);
	CHECK(v1.rule == v2.rule && v1.action == v2.action);
	if (v1.rule != NULL) {
		CHECK(v1.rule->enabled && v1.rule->mode == MOAT_RULE_ENFORCE);
		CHECK(v1.action == v1.rule->action && v1.action != MOAT_RULE_LOG);
	} else {
		CHECK(v1.action == MOAT_RULE_LOG);
	}
	for (i = 0; i < moat_ruleset_count(rs); i++)
		CHECK(moat_rules_eval_rule(rs, i, &in, &sc, 0) ==
		      moat_rules_eval_rule(rs, i, &in, &sc, MOAT_RULES_EVAL_NO_PREFILTER));
	/* a scratch with room only for the value table: values are missing, nothing breaks */
	sc.cap = rs->scratch_fixed + 16;
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v3);
	CHECK(v3.action == MOAT_RULE_LOG || v3.rule != NULL);
	return 0;
}
