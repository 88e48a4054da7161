/*
 * Tests for src/rules/file.c: the rules file format (sections, keys, defaults, comments,
 * continuation lines, CRLF, BOM), every refusal with its line, column, rule id and source
 * line, expression errors mapped through continuation lines, limits, loading from a file, the
 * error formatter, and the three virtual patches documented in docs/rules.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

static struct moat_ruleset *load_lim(const char *text, const struct moat_rules_limits *lim)
{
	struct moat_ruleset *rs = NULL;
	int r;

	h_err_reset();
	r = moat_rules_load_buffer("test.rules", text, strlen(text), MOAT_RULES_HTTP, lim, h_report,
	                           NULL, &rs);
	if (r != MOAT_OK) {
		assert_int_equal(r, MOAT_EINVAL);
		assert_null(rs);
		assert_true(h_err.count > 0);
		return NULL;
	}
	assert_int_equal(h_err.count, 0);
	return rs;
}

static struct moat_ruleset *load(const char *text)
{
	return load_lim(text, NULL);
}

/* Refused with the first error at line:col, in rule `rule` ("" if none), saying msg. */
static void refused(const char *text, unsigned line, unsigned col, const char *rule,
                    const char *msg)
{
	if (load(text) != NULL)
		fail_msg("accepted:\n%s", text);
	if (strstr(h_err.msg, msg) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", h_err.msg, msg);
	if (h_err.line != line || h_err.col != col)
		fail_msg("\"%s\" at %u:%u, want %u:%u", h_err.msg, h_err.line, h_err.col, line,
		         col);
	if (strcmp(h_err.rule, rule) != 0)
		fail_msg("\"%s\" in rule \"%s\", want \"%s\"", h_err.msg, h_err.rule, rule);
}

static void test_format(void **state)
{
	const char *text = "\xef\xbb\xbf# Virtual patches for the demo tenant\r\n"
	                   "; another comment\r\n"
	                   "\r\n"
	                   "[rule cve-2026-0001]\r\n"
	                   "name = Command injection in the cgi-bin\r\n"
	                   "  diagnostic endpoint\r\n"
	                   "reference = CVE-2026-0001   ; the advisory\r\n"
	                   "description = Long text,\r\n"
	                   "\tover two lines; with a semicolon\r\n"
	                   "action = block            ; block | log | allow | close\r\n"
	                   "mode = enforce            # enforce | dry-run\r\n"
	                   "status = 403\r\n"
	                   "body = {\"error\":\"blocked\"}\r\n"
	                   "enabled = true\r\n"
	                   "expr = http.request.uri.path contains \"/cgi-bin/\"\r\n"
	                   "       and any(http.request.uri.args[\"cmd\"] contains \";\")\r\n"
	                   "\r\n"
	                   "[ rule  minimal ]   # spaces are fine\n"
	                   "name=Minimal\n"
	                   "expr=\n"
	                   "  true\n"
	                   "[rule a.b:c_d-e]\n"
	                   "name = x\n"
	                   "mode = dry-run\n"
	                   "action = log\n"
	                   "enabled = false\n"
	                   "expr = false # a comment in an expression\n"
	                   "   or false";
	struct moat_ruleset *rs = load(text);
	const struct moat_rule *r;

	(void)state;
	if (rs == NULL)
		fail_msg("refused at %u:%u: %s", h_err.line, h_err.col, h_err.msg);
	assert_int_equal(moat_ruleset_count(rs), 3);
	r = moat_ruleset_rule(rs, 0);
	assert_string_equal(r->id, "cve-2026-0001");
	assert_string_equal(r->name, "Command injection in the cgi-bin diagnostic endpoint");
	assert_string_equal(r->reference, "CVE-2026-0001");
	assert_string_equal(r->description, "Long text, over two lines; with a semicolon");
	assert_int_equal(r->action, MOAT_RULE_BLOCK);
	assert_int_equal(r->mode, MOAT_RULE_ENFORCE);
	assert_int_equal(r->status, 403);
	assert_string_equal(r->body, "{\"error\":\"blocked\"}");
	assert_int_equal(r->enabled, 1);
	assert_int_equal(r->line, 4);
	assert_string_equal(r->expr,
	                    "http.request.uri.path contains \"/cgi-bin/\"\r\n"
	                    "       and any(http.request.uri.args[\"cmd\"] contains \";\")");
	r = moat_ruleset_rule(rs, 1);
	assert_string_equal(r->id, "minimal");
	assert_string_equal(r->name, "Minimal");
	/* defaults */
	assert_int_equal(r->action, MOAT_RULE_BLOCK);
	assert_int_equal(r->mode, MOAT_RULE_ENFORCE);
	assert_int_equal(r->status, 403);
	assert_null(r->body);
	assert_null(r->reference);
	assert_null(r->description);
	assert_int_equal(r->enabled, 1);
	assert_string_equal(r->expr, "true");
	r = moat_ruleset_rule(rs, 2);
	assert_string_equal(r->id, "a.b:c_d-e");
	assert_int_equal(r->action, MOAT_RULE_LOG);
	assert_int_equal(r->mode, MOAT_RULE_DRY_RUN);
	assert_int_equal(r->enabled, 0);
	assert_int_equal(r->line, 22);
	moat_ruleset_free(rs);

	/* empty and comment-only files are an empty ruleset */
	rs = load("");
	assert_non_null(rs);
	assert_int_equal(moat_ruleset_count(rs), 0);
	moat_ruleset_free(rs);
	rs = load("# nothing\n\n; here\n");
	assert_non_null(rs);
	moat_ruleset_free(rs);
}

static void test_refusals(void **state)
{
	(void)state;
	refused("name = x\n", 1, 1, "", "'name' outside a [rule ID] section");
	refused("[rule a]\nname = a\nexpr = true\ncolour = red\n", 4, 1, "a",
	        "unknown key 'colour'");
	refused("[rule a]\nname = a\nName = b\nexpr = true\n", 3, 1, "a", "unknown key 'Name'");
	refused("[rule a]\nname = a\nname = b\nexpr = true\n", 3, 1, "a",
	        "duplicate key 'name' (first on line 2)");
	refused("[rule a]\nname = a\nexpr = true\n[rule a]\nname = b\nexpr = true\n", 4, 7, "a",
	        "duplicate rule id a (first defined on line 1)");
	refused("[rule a]\nexpr = true\n", 1, 1, "a", "rule a has no name");
	refused("[rule a]\nname = a\n", 1, 1, "a", "rule a has no expr");
	refused("[rule a]\nname =\nexpr = true\n", 2, 1, "a", "empty name");
	refused("[rule a]\nname = a\naction = deny\nexpr = true\n", 3, 10, "a",
	        "action is block, log, allow or close");
	refused("[rule a]\nname = a\nmode = shadow\nexpr = true\n", 3, 8, "a",
	        "mode is enforce or dry-run");
	refused("[rule a]\nname = a\nenabled = yes\nexpr = true\n", 3, 11, "a",
	        "enabled is true or false");
	refused("[rule a]\nname = a\nstatus = 99\nexpr = true\n", 3, 10, "a", "from 100 to 599");
	refused("[rule a]\nname = a\nstatus = 600\nexpr = true\n", 3, 10, "a", "from 100 to 599");
	refused("[rule a]\nname = a\nstatus = 4o3\nexpr = true\n", 3, 10, "a", "from 100 to 599");
	refused("[rule a]\nname = a\nstatus = 40300\nexpr = true\n", 3, 10, "a", "from 100 to 599");
	refused("[rule a]\nname = a\naction = log\nstatus = 403\nexpr = true\n", 4, 1, "a",
	        "status applies only to action = block");
	refused("[rule a]\nname = a\naction = allow\nbody = x\nexpr = true\n", 4, 1, "a",
	        "body applies only to action = block");
	refused("[rule a]\nname = a\naction = block log\nexpr = true\n", 3, 16, "a",
	        "unexpected text after the value");
	refused("[rule a]\nname = a\naction =\nexpr = true\n", 3, 9, "a", "missing value");
	refused("[rule a]\nname = a\nexpr true\n", 3, 6, "a", "expected key = value");
	refused("[rule a]\nname = a\n= true\n", 3, 1, "a", "expected key = value");
	refused("[rule a]\nname = a\nexpr = true\n\n  and false\n", 5, 3, "a",
	        "unexpected indented line");
	refused("[rule a]\nname = a\nmode = enforce\n  extra\nexpr = true\n", 4, 3, "a",
	        "unexpected indented line");
	refused("[rules a]\nname = a\nexpr = true\n", 1, 2, "", "unknown section");
	refused("[tenant a]\n", 1, 2, "", "unknown section");
	refused("[rule]\nname = a\nexpr = true\n", 1, 6, "", "missing rule id");
	refused("[rule a b]\nname = a\nexpr = true\n", 1, 9, "", "a rule id has only letters");
	refused("[rule a/b]\nname = a\nexpr = true\n", 1, 8, "", "a rule id has only letters");
	refused("[rule a\nname = a\nexpr = true\n", 1, 8, "", "expected ']'");
	refused("[rule a] x\nname = a\nexpr = true\n", 1, 10, "", "unexpected text after");
	refused("[rule aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\nname = "
	        "a\n"
	        "expr = true\n",
	        1, 7, "", "rule id longer than 64 characters");
	refused("[rule a]\nname = a\nreference = CVE-1 CVE-2\nexpr = true\n", 3, 19, "a",
	        "unexpected text after the value");
}

static void test_nul_byte(void **state)
{
	static const char text[] = "[rule a]\nname = a\nexpr = true\x00\n";
	struct moat_ruleset *rs = NULL;

	(void)state;
	h_err_reset();
	assert_int_equal(moat_rules_load_buffer("n", text, sizeof(text) - 1, MOAT_RULES_HTTP, NULL,
	                                        h_report, NULL, &rs),
	                 MOAT_EINVAL);
	assert_null(rs);
	assert_non_null(strstr(h_err.msg, "NUL byte"));
	assert_int_equal(h_err.line, 3);
	assert_int_equal(h_err.col, 12);
}

static void test_expression_positions(void **state)
{
	(void)state;
	/* the column of an expression error is the column in the file */
	refused("[rule a]\nname = a\nexpr = http.request.uri.pth == \"/\"\n", 3, 8, "a",
	        "unknown field http.request.uri.pth");
	refused("[rule a]\nname = a\nexpr=ip.src in {10.1.2.3/8}\n", 3, 17, "a",
	        "did you mean 10.0.0.0/8?");
	/* through continuation lines, with tabs and CRLF */
	refused("[rule a]\r\nname = a\r\nexpr = http.request.uri.path contains \"/x\"\r\n"
	        "\tand\r\n"
	        "\t  device.firmware < \"2.x\"\r\n",
	        5, 22, "a", "bad version \"2.x\"");
	assert_string_equal(h_err.source, "\t  device.firmware < \"2.x\"");
	refused("[rule a]\nname = a\nexpr =\n    http.host == \"a\"\n    and nope(1)\n", 5, 9, "a",
	        "unknown function nope()");
	refused("[rule a]\nname = a\nexpr = http.host == \"a\" and\n", 3, 28, "a",
	        "found the end of the expression");
	refused("[rule a]\nname = a\nexpr =\n", 3, 7, "a", "empty expression");
	/* a regex error inside a raw string points into the pattern */
	refused("[rule a]\nname = a\nexpr = http.host matches r\"ab(c\"\n", 3, 32, "a",
	        "bad regular expression");
	/* a comment line at column 1 ends the expression */
	refused("[rule a]\nname = a\nexpr = http.host == \"a\"\n# note\n  and false\n", 5, 3, "a",
	        "unexpected indented line");
}

static void test_all_errors_reported(void **state)
{
	(void)state;
	/* errors in several rules are all reported; the file is refused whole */
	assert_null(load("[rule a]\nname = a\nexpr = bad.one\n"
	                 "[rule b]\nname = b\nexpr = true\n"
	                 "[rule c]\nname = c\nexpr = bad.two == 1\n"
	                 "[rule d]\nexpr = true\n"));
	assert_int_equal(h_err.count, 3);
	assert_int_equal(h_err.line, 3);
	assert_string_equal(h_err.rule, "a");
	/* lines of a refused section are not checked again */
	assert_null(load("[bogus]\nname = a\ncolour = b\n[rule x]\nname = x\nexpr = true\n"));
	assert_int_equal(h_err.count, 1);
}

static void test_limits(void **state)
{
	struct moat_rules_limits lim;
	char text[4096];
	size_t n = 0;
	int i;
	struct moat_ruleset *rs;

	(void)state;
	memset(&lim, 0, sizeof(lim));
	lim.max_rules = 3;
	for (i = 0; i < 4; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		                      "[rule r%d]\nname = r\nexpr = true\n", i);
	assert_null(load_lim(text, &lim));
	assert_non_null(strstr(h_err.msg, "more than 3 rules in one file"));
	assert_int_equal(h_err.line, 10);
	assert_int_equal(h_err.col, 1);
	lim.max_rules = 4;
	rs = load_lim(text, &lim);
	assert_non_null(rs);
	moat_ruleset_free(rs);

	lim.max_expr_len = 10;
	assert_null(load_lim("[rule a]\nname = a\nexpr = http.host == \"abc\"\n", &lim));
	assert_non_null(strstr(h_err.msg, "expression longer than 10 bytes"));
	assert_int_equal(h_err.line, 3);
	assert_int_equal(h_err.col, 7);
	assert_string_equal(h_err.rule, "a");

	/* text lengths */
	memset(text, 'x', sizeof(text));
	memcpy(text, "[rule a]\nexpr = true\nname = ", 28);
	text[28 + 201] = '\n';
	text[28 + 202] = '\0';
	assert_null(load(text));
	assert_non_null(strstr(h_err.msg, "name longer than 200 bytes"));
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/moat-rules-test-XXXXXX";
	const char *text = "[rule a]\nname = a\nexpr = http.host = \"x\"\n";
	struct moat_ruleset *rs = NULL;
	char buf[512];
	struct moat_rules_error e;
	int fd;

	(void)state;
	assert_int_equal(moat_rules_load_file("/nonexistent/moat.rules", MOAT_RULES_HTTP, NULL,
	                                      h_report, NULL, &rs),
	                 MOAT_EIO);
	assert_null(rs);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	h_err_reset();
	assert_int_equal(moat_rules_load_file(path, MOAT_RULES_HTTP, NULL, h_report, NULL, &rs),
	                 MOAT_EINVAL);
	assert_int_equal(h_err.line, 3);
	assert_int_equal(h_err.col, 18);
	assert_non_null(strstr(h_err.msg, "'=' is not an operator"));

	/* the formatter: location, rule, message, source line and a caret under the column */
	memset(&e, 0, sizeof(e));
	e.file = path;
	e.line = 3;
	e.col = 18;
	e.rule_id = "a";
	e.msg = "'=' is not an operator: write '=='";
	e.source_line = "expr = http.host = \"x\"";
	moat_rules_error_format(&e, buf, sizeof(buf));
	assert_non_null(strstr(buf, ":3:18: rule a: '=' is not an operator"));
	assert_non_null(strstr(buf, "\n  expr = http.host = \"x\"\n                   ^"));
	/* tabs stay tabs so that the caret lines up */
	e.rule_id = NULL;
	e.col = 3;
	e.source_line = "\t\tx";
	moat_rules_error_format(&e, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\n  \t\tx\n  \t\t^"));
	/* truncation */
	assert_int_equal(moat_rules_error_format(&e, buf, 5), 4);
	assert_int_equal(strlen(buf), 4);

	text = "[rule a]\nname = a\nexpr = http.host == \"x\"\n";
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(moat_rules_load_file(path, MOAT_RULES_HTTP, NULL, NULL, NULL, &rs),
	                 MOAT_OK);
	assert_int_equal(moat_ruleset_count(rs), 1);
	moat_ruleset_free(rs);
	/* TCP scope refuses HTTP fields, with the rule and position */
	h_err_reset();
	assert_int_equal(moat_rules_load_file(path, MOAT_RULES_TCP, NULL, h_report, NULL, &rs),
	                 MOAT_EINVAL);
	assert_non_null(strstr(h_err.msg, "field http.host needs an HTTP listener"));
	assert_int_equal(h_err.col, 8);
	unlink(path);
	assert_string_equal(moat_rule_action_name(MOAT_RULE_CLOSE), "close");
	assert_string_equal(moat_rule_action_name(MOAT_RULE_ALLOW), "allow");
	assert_string_equal(moat_rule_mode_name(MOAT_RULE_DRY_RUN), "dry-run");
	assert_string_equal(moat_rule_mode_name(MOAT_RULE_ENFORCE), "enforce");
}

/* The examples of docs/rules.md, "Three virtual patches". */
static const char *const patches =
        "[rule cve-2026-0001]\n"
        "name = Command injection in the cgi-bin diagnostic endpoint\n"
        "reference = CVE-2026-0001\n"
        "description = diag.cgi passes its host argument to a shell.\n"
        "action = block\n"
        "expr = starts_with(http.request.uri.path, \"/cgi-bin/\")\n"
        "       and any(url_decode(http.request.uri.args.values) matches r\"[;&|`\\n]|\\$\\(\")\n"
        "\n"
        "[rule traversal-encoded]\n"
        "name = Path traversal through encoded dot segments\n"
        "reference = CVE-2026-0002\n"
        "action = block\n"
        "expr = url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"../\"\n"
        "       or url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"..\\\\\"\n"
        "\n"
        "[rule cam1-debug-auth-bypass]\n"
        "name = Authentication bypass through X-Debug-Auth on CAM-1 before 2.1.0\n"
        "reference = CVE-2026-0003\n"
        "action = block\n"
        "status = 401\n"
        "expr = device.model == \"CAM-1\"\n"
        "       and device.firmware < \"2.1.0\"\n"
        "       and count(http.request.headers[\"x-debug-auth\"]) > 0\n";

static const char *verdict(const struct moat_ruleset *rs, const char *head)
{
	struct moat_rules_scratch sc = {h_mem, sizeof(h_mem)};
	struct moat_rules_input in;
	struct moat_rules_verdict v, v2;

	h_set_request(head);
	in = h_input();
	moat_rules_eval(rs, &in, &sc, NULL, NULL, &v);
	moat_rules_eval_flags(rs, &in, &sc, NULL, NULL, &v2, MOAT_RULES_EVAL_NO_PREFILTER);
	assert_ptr_equal(v.rule, v2.rule);
	return v.rule != NULL ? v.rule->id : "-";
}

static void test_documented_patches(void **state)
{
	struct moat_ruleset *rs = load(patches);

	(void)state;
	if (rs == NULL)
		fail_msg("refused at %u:%u: %s", h_err.line, h_err.col, h_err.msg);
	h_dev.model = "CAM-1";
	h_dev.firmware = "2.0.9";
	/* command injection */
	assert_string_equal(verdict(rs, "GET /cgi-bin/diag.cgi?host=8.8.8.8%3Bcat%20/etc/passwd "
	                                "HTTP/1.1\r\nHost: cam\r\n"),
	                    "cve-2026-0001");
	assert_string_equal(verdict(rs, "GET /cgi-bin/diag.cgi?host=%24(reboot) HTTP/1.1\r\n"
	                                "Host: cam\r\n"),
	                    "cve-2026-0001");
	assert_string_equal(verdict(rs, "GET /cgi-bin/diag.cgi?host=1.1.1.1%7Cid HTTP/1.1\r\n"
	                                "Host: cam\r\n"),
	                    "cve-2026-0001");
	assert_string_equal(
	        verdict(rs, "GET /cgi-bin/diag.cgi?host=8.8.8.8 HTTP/1.1\r\nHost: cam\r\n"), "-");
	assert_string_equal(verdict(rs, "GET /api/search?q=a%3Bb HTTP/1.1\r\nHost: cam\r\n"), "-");
	/* path traversal, single and double encoded, any case */
	assert_string_equal(
	        verdict(rs, "GET /static/..%2f..%2fetc/passwd HTTP/1.1\r\nHost: cam\r\n"),
	        "traversal-encoded");
	assert_string_equal(verdict(rs, "GET /static/%2e%2e%2F%2E%2E%2fetc/passwd HTTP/1.1\r\n"
	                                "Host: cam\r\n"),
	                    "traversal-encoded");
	assert_string_equal(verdict(rs, "GET /static/..%252f..%252fetc/passwd HTTP/1.1\r\n"
	                                "Host: cam\r\n"),
	                    "traversal-encoded");
	assert_string_equal(verdict(rs, "GET /static/%252e%252e%252fetc/passwd HTTP/1.1\r\n"
	                                "Host: cam\r\n"),
	                    "traversal-encoded");
	assert_string_equal(verdict(rs, "GET /static/..%5c..%5cwindows HTTP/1.1\r\nHost: cam\r\n"),
	                    "traversal-encoded");
	assert_string_equal(verdict(rs, "GET /static/app.js HTTP/1.1\r\nHost: cam\r\n"), "-");
	assert_string_equal(verdict(rs, "GET /static/v1..2/app.js HTTP/1.1\r\nHost: cam\r\n"), "-");
	/* the auth bypass: only that model, only below that firmware */
	assert_string_equal(
	        verdict(rs, "GET /api/config HTTP/1.1\r\nHost: cam\r\nX-Debug-Auth: 1\r\n"),
	        "cam1-debug-auth-bypass");
	assert_int_equal(moat_ruleset_rule(rs, 2)->status, 401);
	h_dev.firmware = "2.1.0";
	assert_string_equal(
	        verdict(rs, "GET /api/config HTTP/1.1\r\nHost: cam\r\nX-Debug-Auth: 1\r\n"), "-");
	h_dev.firmware = "2.1.0-rc.2";
	assert_string_equal(
	        verdict(rs, "GET /api/config HTTP/1.1\r\nHost: cam\r\nX-Debug-Auth: 1\r\n"),
	        "cam1-debug-auth-bypass");
	h_dev.firmware = "2.0.9";
	h_dev.model = "CAM-2";
	assert_string_equal(
	        verdict(rs, "GET /api/config HTTP/1.1\r\nHost: cam\r\nX-Debug-Auth: 1\r\n"), "-");
	h_dev.model = "CAM-1";
	assert_string_equal(verdict(rs, "GET /api/config HTTP/1.1\r\nHost: cam\r\n"), "-");
	moat_ruleset_free(rs);
}

/* Every ```ini block of docs/rules.md is a rules file that loads (run from the top of the
 * tree, as `make unit` does; skipped elsewhere). */
static void test_doc_examples(void **state)
{
	static char doc[1 << 17];
	FILE *f = fopen("docs/rules.md", "r");
	size_t n;
	char *p;
	int blocks = 0;

	(void)state;
	if (f == NULL) {
		skip();
		return;
	}
	n = fread(doc, 1, sizeof(doc) - 1, f);
	fclose(f);
	doc[n] = '\0';
	for (p = strstr(doc, "```ini\n"); p != NULL; p = strstr(p, "```ini\n")) {
		char *start = p + 7, *end = strstr(start, "```");
		struct moat_ruleset *rs;

		assert_non_null(end);
		*end = '\0';
		rs = load(start);
		if (rs == NULL)
			fail_msg("docs/rules.md example %d refused at %u:%u: %s\n%s", blocks + 1,
			         h_err.line, h_err.col, h_err.msg, h_err.source);
		assert_true(moat_ruleset_count(rs) > 0);
		moat_ruleset_free(rs);
		blocks++;
		p = end + 1;
	}
	assert_true(blocks >= 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_format),
	        cmocka_unit_test(test_refusals),
	        cmocka_unit_test(test_nul_byte),
	        cmocka_unit_test(test_expression_positions),
	        cmocka_unit_test(test_all_errors_reported),
	        cmocka_unit_test(test_limits),
	        cmocka_unit_test(test_load_file),
	        cmocka_unit_test(test_documented_patches),
	        cmocka_unit_test(test_doc_examples),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
