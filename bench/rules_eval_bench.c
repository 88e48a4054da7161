/*
 * rules_eval_bench - nanoseconds per request to evaluate a rules file, in one thread.
 *
 * Loads each rules file given (moat_rules_load_file), parses the benign requests of
 * REQUESTS (bench/rules/gen.py's requests.txt) with moat_http_parse_request, byte for byte as
 * loadgen sends them, and evaluates the ruleset against them round-robin: RUNS runs of EVALS
 * evaluations each, timed with CLOCK_MONOTONIC; the median and the fastest run are printed in
 * nanoseconds per request. The same is done without the multi-pattern prefilter
 * (MOAT_RULES_EVAL_NO_PREFILTER, fewer evaluations) to show what it saves.
 *
 * Before timing it checks that no rule matches a benign request and that every attack of
 * ATTACKS (attacks.txt) whose rule is in the file is blocked; it exits 1 otherwise.
 *
 * Build (from the top of the tree, after `make`):
 *   cc -O2 -Isrc bench/rules_eval_bench.c build/release/libmoat.a \
 *      $(pkg-config --libs openssl libuv inih jansson libpcre2-8 libhs) -lpthread -lm
 *
 * Usage: rules_eval_bench [-n EVALS] [-r RUNS] [-a ATTACKS] [-e KIB] [-v] [-p] REQUESTS RULES...
 *   -e  memory read before each evaluation in the cold-cache measurement (1024 KiB)
 *   -v  also the time of each request of the mix alone
 *   -p  only the evaluation with the prefilter (to run under a profiler)
 * Output: human text on stderr; one key=value line per rules file on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rules/internal.h"
#include "rules/rules.h"

#define MAX_REQS 4096
#define HOST "bench.moat.test"

/* The bench device, as moatd sees it in bench/rules.sh (gen.py's DEVICE and devices.ini). */
static const char *const dev_tags[] = {"outdoor", "batch-7"};
static const struct moat_device_info dev = {"cam-x", "2.3.1", dev_tags, 2};

struct req {
	char *raw; /* the head as loadgen sends it */
	size_t len;
	struct moat_http_request parsed;
	char rule[80]; /* attacks: the rule that must block it */
};

static struct req *reqs, *attacks;
static size_t nreqs, nattacks;

static void die(const char *msg, const char *arg)
{
	fprintf(stderr, "rules_eval_bench: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* "GET <target> HTTP/1.1", the header lines, then loadgen's own lines: rules.sh passes the
 * header lines inside loadgen's -u argument, ending with "X-Bench:" which takes loadgen's
 * " HTTP/1.1" as its value. */
static void build(struct req *r, char **fields, size_t nf, const char *what)
{
	size_t cap = 256, i, n;
	const char *err = NULL;
	char *p;

	for (i = 0; i < nf; i++)
		cap += strlen(fields[i]) + 2;
	p = malloc(cap);
	if (p == NULL)
		die("out of memory", NULL);
	n = (size_t)snprintf(p, cap, "GET %s HTTP/1.1\r\n", fields[0]);
	for (i = 1; i < nf; i++)
		n += (size_t)snprintf(p + n, cap - n, "%s\r\n", fields[i]);
	n += (size_t)snprintf(p + n, cap - n,
	                      "X-Bench: HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-loadgen\r\n\r\n",
	                      HOST);
	r->raw = p;
	r->len = n;
	if (moat_http_parse_request(r->raw, r->len, NULL, &r->parsed, &err) != MOAT_OK) {
		fprintf(stderr, "rules_eval_bench: %s refused by the parser (%s):\n%s", what,
		        err ? err : "?", p);
		exit(2);
	}
}

/* Reads gen.py's tab-separated lines; with_rule: the first field is a rule id. */
static size_t read_reqs(const char *path, struct req **out, int with_rule)
{
	FILE *f = fopen(path, "r");
	char line[16384];
	size_t n = 0;

	if (f == NULL)
		die("cannot open", path);
	*out = calloc(MAX_REQS, sizeof(**out));
	if (*out == NULL)
		die("out of memory", NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		char *fields[64], *save = NULL, *t;
		size_t nf = 0;

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (n == MAX_REQS)
			die("too many requests in", path);
		for (t = strtok_r(line, "\t", &save); t != NULL && nf < 64;
		     t = strtok_r(NULL, "\t", &save))
			fields[nf++] = t;
		if (with_rule) {
			if (nf < 2)
				die("bad attack line in", path);
			snprintf((*out)[n].rule, sizeof((*out)[n].rule), "%s", fields[0]);
			build(&(*out)[n], fields + 1, nf - 1, "an attack");
		} else {
			build(&(*out)[n], fields, nf, "a request");
		}
		n++;
	}
	fclose(f);
	return n;
}

static struct sockaddr_storage src;

static struct moat_rules_input input(const struct moat_http_request *req)
{
	struct moat_rules_input in;

	memset(&in, 0, sizeof(in));
	in.src = &src;
	in.tls_version = "TLSv1.3";
	in.sni = HOST;
	in.client_verified = 1;
	in.fingerprint = "3f1c9a0d5e7b2c4f6a8e0b1d3c5f7a9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";
	in.serial = "4C1D8E2A9B3F";
	in.tenant = "bench";
	in.device_id = "bench-device-0001";
	in.device = &dev;
	in.req = req;
	return in;
}

static void report(void *arg, const struct moat_rules_error *e)
{
	char buf[2048];

	(void)arg;
	moat_rules_error_format(e, buf, sizeof(buf));
	fprintf(stderr, "%s\n", buf);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static volatile size_t sink;

/* Cold caches: before each evaluation, EVICT_KIB of other memory is read (one load per cache
 * line), as a proxy's TLS, socket and kernel work between two requests pushes the ruleset
 * out of the core's caches. The time of the same reads alone is subtracted. */
#define COLD 0x100
#define EVICT_ONLY 0x200
static size_t evict_kib = 1024;
static volatile unsigned char *evict_buf;

static unsigned evict(void)
{
	unsigned x = 0;
	size_t i;

	for (i = 0; i < evict_kib * 1024; i += 64)
		x += evict_buf[i];
	return x;
}

/* One timed run: evals evaluations over the requests, round-robin; ns per evaluation. */
static double run(const struct moat_ruleset *rs, struct moat_rules_scratch *sc, long evals,
                  unsigned flags, size_t only)
{
	struct moat_rules_input in[MAX_REQS];
	struct moat_rules_verdict v;
	size_t i, hits = 0, k = 0, n = only == SIZE_MAX ? nreqs : 1;
	uint64_t t0, t1;
	long e;

	for (i = 0; i < n; i++)
		in[i] = input(&reqs[only == SIZE_MAX ? i : only].parsed);
	t0 = now_ns();
	for (e = 0; e < evals; e++) {
		if (flags & (COLD | EVICT_ONLY))
			hits += evict();
		if (!(flags & EVICT_ONLY)) {
			moat_rules_eval_flags(rs, &in[k], sc, NULL, NULL, &v,
			                      flags & MOAT_RULES_EVAL_NO_PREFILTER);
			hits += v.rule != NULL;
		}
		if (++k == n)
			k = 0;
	}
	t1 = now_ns();
	sink += hits;
	return (double)(t1 - t0) / (double)evals;
}

static void measure(const struct moat_ruleset *rs, struct moat_rules_scratch *sc, long evals,
                    int runs, unsigned flags, size_t only, double *median, double *min)
{
	double *t = calloc((size_t)runs, sizeof(double));
	int i;

	if (t == NULL)
		die("out of memory", NULL);
	run(rs, sc, evals / 10 + 1, flags, only); /* warm the caches and the thread's scratch */
	for (i = 0; i < runs; i++) {
		t[i] = run(rs, sc, evals, flags, only);
		if (flags & COLD) /* minus the reads alone, timed right after */
			t[i] -= run(rs, sc, evals, EVICT_ONLY, only);
	}
	qsort(t, (size_t)runs, sizeof(double), cmp_double);
	*median = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
	*min = t[0];
	free(t);
}

static unsigned popcount(const uint64_t *w, size_t n)
{
	unsigned c = 0;
	size_t i;

	for (i = 0; i < n; i++)
		c += (unsigned)__builtin_popcountll(w[i]);
	return c;
}

/* A value as written in a rule: lower(url_decode(http.request.headers["x"])). */
static void describe(const struct moat_ruleset *rs, uint32_t slot, char *buf, size_t cap)
{
	static const char *const fn[] = {"", "lower", "upper", "url_decode", "len", "count"};
	const struct moat_rules_slot *sd = &rs->slots[slot];
	char inner[512];

	if (sd->op == MOAT_SLOT_FIELD) {
		if (sd->keylen > 0)
			snprintf(buf, cap, "%s[\"%.*s\"]", moat_rules_fields[sd->field].name,
			         (int)sd->keylen, sd->key);
		else
			snprintf(buf, cap, "%s", moat_rules_fields[sd->field].name);
		return;
	}
	describe(rs, sd->arg, inner, sizeof(inner));
	snprintf(buf, cap, "%s(%s)", sd->op < sizeof(fn) / sizeof(fn[0]) ? fn[sd->op] : "?", inner);
}

/* -v: how much work the prefilter leaves (engine internals, src/rules/internal.h): the rules
 * without a guard, evaluated for every request; per request of the mix, the candidate rules
 * evaluated and the values computed. The ids of the unguarded rules go to stdout. */
static void diagnose(const struct moat_ruleset *rs, struct moat_rules_scratch *sc)
{
	const uint64_t *done = (const uint64_t *)(void *)sc->mem; /* malloc'd: 16-byte aligned */
	const uint64_t *cand = (const uint64_t *)(void *)(sc->mem + rs->scratch_cand);
	struct moat_rules_verdict v;
	struct moat_rules_input in;
	size_t r, i;

	fprintf(stderr,
	        "    %u of %zu rules have no guard (evaluated for every request); %u "
	        "guarding values\n",
	        popcount(rs->always, rs->rule_words), rs->nrules, rs->ngslots);
	for (i = 0; i < rs->ngslots; i++) {
		char d[600];

		describe(rs, rs->gslots[i].slot, d, sizeof(d));
		fprintf(stderr, "      guard %zu: %s, %u patterns\n", i + 1, d, rs->gslots[i].npat);
	}
	printf("unguarded:");
	for (i = 0; i < rs->nrules; i++)
		if (rs->always[i / 64] & (1ull << (i % 64)))
			printf(" %s", rs->rules[i].id);
	printf("\n");
	for (r = 0; r < nreqs; r++) {
		in = input(&reqs[r].parsed);
		moat_rules_eval(rs, &in, sc, NULL, NULL, &v);
		fprintf(stderr,
		        "    request %zu: %u candidate rules evaluated, %u of %u values computed\n",
		        r + 1, popcount(cand, rs->rule_words),
		        popcount(done, (rs->nslots + 63) / 64), rs->nslots);
	}
}

/* The benign requests must pass, the attacks on rules of this file must be blocked. */
static int check(const struct moat_ruleset *rs, struct moat_rules_scratch *sc, size_t nrules,
                 const char *file)
{
	struct moat_rules_verdict v, v2;
	struct moat_rules_input in;
	size_t i, j, checked = 0, other = 0;
	int bad = 0;

	for (i = 0; i < nreqs; i++) {
		in = input(&reqs[i].parsed);
		moat_rules_eval(rs, &in, sc, NULL, NULL, &v);
		moat_rules_eval_flags(rs, &in, sc, NULL, NULL, &v2, MOAT_RULES_EVAL_NO_PREFILTER);
		if (v.rule != NULL || v2.rule != NULL) {
			fprintf(stderr, "%s: benign request %zu is blocked by %s:\n%.*s", file,
			        i + 1, v.rule ? v.rule->id : v2.rule->id, (int)reqs[i].len,
			        reqs[i].raw);
			bad = 1;
		}
	}
	for (i = 0; i < nattacks; i++) {
		int in_file = 0;

		for (j = 0; j < nrules && !in_file; j++)
			in_file = strcmp(moat_ruleset_rule(rs, j)->id, attacks[i].rule) == 0;
		if (!in_file)
			continue;
		checked++;
		in = input(&attacks[i].parsed);
		moat_rules_eval(rs, &in, sc, NULL, NULL, &v);
		moat_rules_eval_flags(rs, &in, sc, NULL, NULL, &v2, MOAT_RULES_EVAL_NO_PREFILTER);
		if (v.rule == NULL || v.action != MOAT_RULE_BLOCK || v2.rule != v.rule) {
			fprintf(stderr,
			        "%s: attack on %s not blocked (or not alike without the "
			        "prefilter):\n%.*s",
			        file, attacks[i].rule, (int)attacks[i].len, attacks[i].raw);
			bad = 1;
		} else if (strcmp(v.rule->id, attacks[i].rule) != 0) {
			other++; /* an earlier rule matched it too: still blocked */
		}
	}
	fprintf(stderr,
	        "  checked: %zu benign requests pass, %zu attacks blocked (%zu by an earlier "
	        "rule than their own)\n",
	        nreqs, checked, other);
	return bad ? -1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: rules_eval_bench [-n EVALS] [-r RUNS] [-a ATTACKS] [-e KIB] [-v] "
	                "[-p] REQUESTS RULES...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long evals = 200000;
	int runs = 7, verbose = 0, only_eval = 0, ch, i, status = 0;
	const char *attacks_file = NULL;

	while ((ch = getopt(argc, argv, "n:r:a:e:vp")) != -1) {
		switch (ch) {
		case 'n':
			evals = atol(optarg);
			break;
		case 'r':
			runs = atoi(optarg);
			break;
		case 'a':
			attacks_file = optarg;
			break;
		case 'e':
			evict_kib = (size_t)strtoul(optarg, NULL, 10);
			break;
		case 'v':
			verbose = 1;
			break;
		case 'p':
			only_eval = 1;
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2 || evals < 1 || runs < 1)
		usage();
	evict_buf = calloc(evict_kib > 0 ? evict_kib : 1, 1024);
	if (evict_buf == NULL)
		die("out of memory", NULL);
	((struct sockaddr_in *)&src)->sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &((struct sockaddr_in *)&src)->sin_addr);
	nreqs = read_reqs(argv[optind], &reqs, 0);
	if (nreqs == 0)
		die("no requests in", argv[optind]);
	if (attacks_file != NULL)
		nattacks = read_reqs(attacks_file, &attacks, 1);
	{
		size_t lo = SIZE_MAX, hi = 0, k;

		for (k = 0; k < nreqs; k++) {
			lo = reqs[k].len < lo ? reqs[k].len : lo;
			hi = reqs[k].len > hi ? reqs[k].len : hi;
		}
		fprintf(stderr,
		        "%zu benign requests (%zu-%zu bytes each), %ld evaluations x %d runs\n",
		        nreqs, lo, hi, evals, runs);
	}

	for (i = optind + 1; i < argc; i++) {
		struct moat_ruleset *rs = NULL;
		struct moat_rules_scratch sc;
		struct moat_rules_stats st;
		double med, min, npmed, npmin, cmed, cmin;
		uint64_t t0, t1;
		size_t n, r;

		t0 = now_ns();
		if (moat_rules_load_file(argv[i], MOAT_RULES_HTTP, NULL, report, NULL, &rs) !=
		    MOAT_OK)
			die("the rules file was refused", argv[i]);
		t1 = now_ns();
		n = moat_ruleset_count(rs);
		sc.cap = moat_ruleset_scratch_size(rs);
		sc.mem = malloc(sc.cap);
		if (sc.mem == NULL)
			die("out of memory", NULL);
		fprintf(stderr, "%s: %zu rules, compiled in %.0f ms, scratch %zu bytes\n", argv[i],
		        n, (double)(t1 - t0) / 1e6, sc.cap);
		if (check(rs, &sc, n, argv[i]) != 0) {
			status = 1;
			moat_ruleset_free(rs);
			free(sc.mem);
			continue;
		}
		measure(rs, &sc, evals, runs, 0, SIZE_MAX, &med, &min);
		cmed = cmin = npmed = npmin = 0;
		if (!only_eval) {
			measure(rs, &sc, evals / 10 + 1, runs, COLD, SIZE_MAX, &cmed, &cmin);
			measure(rs, &sc, evals / 20 + 1, runs, MOAT_RULES_EVAL_NO_PREFILTER,
			        SIZE_MAX, &npmed, &npmin);
		}
		moat_ruleset_stats(rs, &st);
		fprintf(stderr,
		        "  %zu rules: %.0f ns per request (median of %d runs; fastest %.0f); with "
		        "cold caches (%zu KiB read before each evaluation) %.0f ns (fastest %.0f); "
		        "without the prefilter %.0f ns (fastest %.0f); %u values, %u prefilter "
		        "databases\n",
		        n, med, runs, min, evict_kib, cmed, cmin, npmed, npmin, st.values,
		        st.prefilter_databases);
		if (verbose) {
			diagnose(rs, &sc);
			for (r = 0; r < nreqs; r++) {
				double m1, m2;

				measure(rs, &sc, evals / 4 + 1, runs, 0, r, &m1, &m2);
				fprintf(stderr, "    request %zu: %.0f ns  %.60s\n", r + 1, m1,
				        reqs[r].raw + 4);
			}
		}
		printf("rules=%zu file=%s compile_ms=%.0f ns_median=%.0f ns_min=%.0f "
		       "cold_ns_median=%.0f cold_ns_min=%.0f noprefilter_ns_median=%.0f "
		       "noprefilter_ns_min=%.0f runs=%d evals=%ld values=%u databases=%u "
		       "regex_limit_hits=%llu scratch_overflows=%llu\n",
		       n, argv[i], (double)(t1 - t0) / 1e6, med, min, cmed, cmin, npmed, npmin,
		       runs, evals, st.values, st.prefilter_databases,
		       (unsigned long long)st.regex_limit_hits,
		       (unsigned long long)st.scratch_overflows);
		fflush(stdout);
		moat_ruleset_free(rs);
		free(sc.mem);
	}
	return status;
}
