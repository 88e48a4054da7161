/*
 * store_fill - puts N devices, each with one certificate record, into a tenant of a moatd
 * store, fast: one transaction through the store interface (moat_store_device_insert,
 * moat_store_cert_insert), as moatd itself would write them, without the admin API's key
 * generation and signing. bench/api.sh uses it to measure moatd's start, memory and change
 * times with a large fleet.
 *
 * The tenant must exist already (bench/api.sh creates it through the API, with its device CA
 * and server certificate, then stops moatd). Certificate records carry distinct fake
 * fingerprints and serials: they match no real certificate, which is fine because moatd's
 * registry keys devices by id and only looks fingerprints up among revoked certificates.
 *
 * Build (from the top of the tree, after `make O=build/h-bench build/h-bench/libmoat.a`):
 *   cc -O2 -Isrc bench/store_fill.c build/h-bench/libmoat.a \
 *      $(pkg-config --libs openssl libuv inih jansson libpcre2-8 libhs sqlite3) -lpthread -lm
 *
 * Usage: store_fill [-t TENANT] [-p PREFIX] [-s FIRST] [-r EVERY] [-R RULES] STORE N
 *   -t  the tenant (bench)
 *   -p  device ids are PREFIX followed by a 7-digit number (fill-)
 *   -s  the first number (1)
 *   -r  every EVERY-th certificate is marked revoked (0: none), so that the registry's
 *       revocation list is not empty
 *   -R  also the rules of RULES, one per line, ID<TAB>NAME<TAB>ACTION<TAB>EXPR, added after the
 *       tenant's rules in the same transaction (enforce, http). Adding a thousand rules
 *       through the API would take long: every write compiles the tenant's whole rule set.
 * Output: one key=value line on stdout: devices=N rules=N seconds=S per_second=R.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "store/store.h"

#define DAY 86400
#define CERT_DAYS 730
#define RULE_LINE_MAX (64 * 1024)

/* A small spread of facts, so that the registry's strings are not all the same. */
static const char *const models[] = {"cam-x", "cam-y", "doorbell-2", "meter-1"};
static const char *const firmwares[] = {"1.9.4", "2.0.3", "2.3.1", "2.4.0", "3.0.0-rc1"};
static const char *const places[] = {"outdoor", "indoor"};

struct fill {
	const char *tenant;
	const char *prefix;
	unsigned long first;
	unsigned long n;
	unsigned long revoke_every;
	const char *rules; /* a file of rules, or NULL */
	unsigned long nrules; /* inserted */
	int64_t now;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex(const unsigned char *b, size_t n, const char *digits, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * A fingerprint and a serial that no two devices share: a prefix hashed from the tenant and the
 * id prefix, then the device's number. Increasing with the number, so that the certificates'
 * primary-key b-tree grows at its end as the devices' does; real fingerprints are random and
 * would make the fill several times slower (every insert a random page of a b-tree larger than
 * the store's cache) without changing what moatd reads at start.
 */
static void fake_cert_ids(const struct fill *f, unsigned long k, char fp[65], char serial[33])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char seed[256];
	int n = snprintf(seed, sizeof(seed), "moat-bench-fill/%s/%s", f->tenant, f->prefix);

	SHA256((const unsigned char *)seed, (size_t)n, md);
	hex(md, 24, "0123456789abcdef", fp);
	snprintf(fp + 48, 17, "%016lx", k);
	/* a positive serial, as CAs issue them: the top bit clear */
	md[0] &= 0x7f;
	hex(md, 8, "0123456789ABCDEF", serial);
	snprintf(serial + 16, 17, "%016lX", k);
}

static int insert_one(struct moat_store *s, const struct fill *f, unsigned long k)
{
	char id[128], batch[32], fp[65], serial[33];
	char *tags[2];
	struct moat_store_device d;
	struct moat_store_cert c;
	int rc;

	snprintf(id, sizeof(id), "%s%07lu", f->prefix, k);
	snprintf(batch, sizeof(batch), "batch-%lu", k % 50);
	tags[0] = (char *)places[k % 2];
	tags[1] = batch;
	memset(&d, 0, sizeof(d));
	d.tenant = (char *)f->tenant;
	d.id = id;
	d.model = (char *)models[k % 4];
	d.firmware = (char *)firmwares[k % 5];
	d.tags.v = tags;
	d.tags.n = 2;
	d.state = MOAT_DEVICE_ACTIVE;
	d.created_at = d.updated_at = f->now;
	rc = moat_store_device_insert(s, &d);
	if (rc != MOAT_OK)
		return rc;
	fake_cert_ids(f, k, fp, serial);
	memset(&c, 0, sizeof(c));
	c.fingerprint = fp;
	c.tenant = (char *)f->tenant;
	c.device = id;
	c.serial = serial;
	c.issued_at = f->now;
	c.not_after = f->now + (int64_t)CERT_DAYS * DAY;
	c.revoked_at = f->revoke_every > 0 && k % f->revoke_every == 0 ? f->now : 0;
	return moat_store_cert_insert(s, &c);
}

/* Cuts the next tab-separated field off *line; NULL if there is none. */
static char *field(char **line)
{
	char *start = *line, *tab;

	if (start == NULL)
		return NULL;
	tab = strchr(start, '\t');
	if (tab != NULL)
		*tab++ = '\0';
	*line = tab;
	return start;
}

static int insert_rule(struct moat_store *s, const struct fill *f, char *line)
{
	struct moat_store_rule r;

	memset(&r, 0, sizeof(r));
	r.tenant = (char *)f->tenant;
	r.id = field(&line);
	r.name = field(&line);
	r.action = field(&line);
	r.expr = field(&line);
	if (r.expr == NULL || line != NULL) {
		fprintf(stderr,
		        "store_fill: %s: a rule line is ID, NAME, ACTION, EXPR, tab-separated\n",
		        f->rules);
		return MOAT_EINVAL;
	}
	r.mode = "enforce";
	r.scope = "http";
	r.enabled = 1;
	r.created_at = r.updated_at = f->now;
	return moat_store_rule_insert(s, &r);
}

static int insert_rules(struct moat_store *s, struct fill *f)
{
	static char line[RULE_LINE_MAX];
	FILE *in = fopen(f->rules, "r");
	int rc = MOAT_OK;

	if (in == NULL) {
		perror(f->rules);
		return MOAT_EINVAL;
	}
	while (rc == MOAT_OK && fgets(line, sizeof(line), in) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		rc = insert_rule(s, f, line);
		if (rc == MOAT_OK)
			f->nrules++;
	}
	fclose(in);
	return rc;
}

static int fill_store(struct moat_store *s, struct fill *f)
{
	int rc = moat_store_begin(s);

	for (unsigned long i = 0; rc == MOAT_OK && i < f->n; i++)
		rc = insert_one(s, f, f->first + i);
	if (rc == MOAT_OK && f->rules != NULL)
		rc = insert_rules(s, f);
	if (rc != MOAT_OK) {
		fprintf(stderr, "store_fill: %s\n", moat_store_error(s));
		moat_store_rollback(s);
		return rc;
	}
	rc = moat_store_commit(s);
	if (rc != MOAT_OK)
		fprintf(stderr, "store_fill: commit: %s\n", moat_store_error(s));
	return rc;
}

static int parse_count(const char *s, unsigned long *out)
{
	char *end = NULL;

	*out = strtoul(s, &end, 10);
	return end != s && *end == '\0' ? 0 : -1;
}

static void usage(void)
{
	fputs("usage: store_fill [-t TENANT] [-p PREFIX] [-s FIRST] [-r EVERY] [-R RULES] STORE "
	      "N\n",
	      stderr);
	exit(2);
}

/* The tenant must exist: inserting under a missing one would fail on its foreign key, but a
 * plain message is more helpful. */
static void check_tenant(struct moat_store *s, const char *tenant)
{
	struct moat_store_tenant t;

	memset(&t, 0, sizeof(t));
	if (moat_store_tenant_get(s, tenant, &t) != MOAT_OK) {
		fprintf(stderr,
		        "store_fill: no tenant %s in the store (create it through the API)\n",
		        tenant);
		exit(1);
	}
	moat_store_tenant_clear(&t);
}

int main(int argc, char **argv)
{
	struct fill f = {"bench", "fill-", 1, 0, 0, NULL, 0, (int64_t)time(NULL)};
	struct moat_store *s = NULL;
	const char *err = NULL;
	double t0;
	int ch, rc;

	while ((ch = getopt(argc, argv, "t:p:s:r:R:")) != -1) {
		switch (ch) {
		case 't':
			f.tenant = optarg;
			break;
		case 'p':
			f.prefix = optarg;
			break;
		case 's':
			if (parse_count(optarg, &f.first) < 0)
				usage();
			break;
		case 'r':
			if (parse_count(optarg, &f.revoke_every) < 0)
				usage();
			break;
		case 'R':
			f.rules = optarg;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || parse_count(argv[optind + 1], &f.n) < 0)
		usage();
	if (moat_store_open(argv[optind], &err, &s) != MOAT_OK) {
		fprintf(stderr, "store_fill: %s: %s\n", argv[optind], err ? err : "cannot open");
		return 1;
	}
	check_tenant(s, f.tenant);
	t0 = now_s();
	rc = fill_store(s, &f);
	moat_store_close(s);
	if (rc != MOAT_OK)
		return 1;
	t0 = now_s() - t0;
	printf("devices=%lu rules=%lu seconds=%.3f per_second=%.0f\n", f.n, f.nrules, t0,
	       t0 > 0 ? (double)f.n / t0 : 0.0);
	return 0;
}
