/*
 * Fuzz target: moat_config_load() (src/core/config.c), the configuration loader and the
 * inih reader glue under it, on arbitrary file contents.
 *
 * Each input is written to a memfd and loaded through its /proc/self/fd path, as moatd loads
 * a file. Seeds name files in FIXTURE_DIR, which the driver creates at start, so that valid
 * seeds load completely and the mutations around them reach every check.
 *
 * Besides crashes and sanitizer reports (leaks included), it checks that:
 *  - a configuration is returned exactly on MOAT_OK, and an error was reported otherwise;
 *  - every report has a message and a line inside the input;
 *  - inih never sees a line the reader let through as valid and then refuses it;
 *  - a configuration returned holds what the cross-section checks promise: a plain (tls = off)
 *    listener is a TCP listener whose default_tenant has a tcp_origin, every tenant has an
 *    origin, and a tenant without TLS material cannot be selected by a TLS handshake.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/config.c src/core/config.c \
 *       src/core/cidr.c src/core/alloc.c -linih
 *   ./a.out -dict=fuzz/config.dict fuzz/corpus/config
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"

#define FIXTURE_DIR "/tmp/moat-fuzz-config"

static int memfd = -1;
static char memfd_path[64];

struct run {
	unsigned lines; /* lines in the input */
	unsigned reports;
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz/config: %s: %s\n", what, strerror(errno));
	abort();
}

static void make_fixtures(void)
{
	static const char *const names[] = {"server.pem", "server.key", "ca.pem",
	                                    "ca2.pem",    "crl.pem",    "origin-ca.pem"};
	size_t i;

	if (mkdir(FIXTURE_DIR, 0700) != 0 && errno != EEXIST)
		die("mkdir " FIXTURE_DIR);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[256];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, names[i]);
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			die(path);
		close(fd);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	make_fixtures();
	memfd = memfd_create("moat-config", MFD_CLOEXEC);
	if (memfd < 0)
		die("memfd_create");
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	return 0;
}

static void report(void *arg, const char *file, unsigned line, const char *msg)
{
	struct run *r = arg;

	r->reports++;
	if (file == NULL || msg == NULL || msg[0] == '\0' || line > r->lines)
		abort();
	/* the reader hands inih only lines it accepted: inih refusing one is a loader bug */
	if (strcmp(msg, "cannot parse this line") == 0)
		abort();
}

static void check_cidrs(const struct moat_cidr *list, size_t n)
{
	size_t i;

	if ((n == 0) != (list == NULL))
		abort();
	for (i = 0; i < n; i++) {
		if (list[i].prefix > 128)
			abort();
	}
}

static void check_listener(const struct moat_config *cfg, const struct moat_config_listener *l)
{
	const struct moat_config_tenant *t = moat_config_tenant_find(cfg, l->default_tenant);

	if (l->default_tenant != NULL && t == NULL)
		abort();
	if (l->protocol != MOAT_PROTO_HTTP && l->protocol != MOAT_PROTO_TCP)
		abort();
	if (l->tls != 0 && l->tls != 1)
		abort();
	if (l->tls == 0 && (l->protocol != MOAT_PROTO_TCP || t == NULL))
		abort();
	if (t != NULL && l->protocol == MOAT_PROTO_TCP && t->tcp_origin == NULL)
		abort();
	if (t != NULL && l->protocol == MOAT_PROTO_HTTP && t->origin == NULL)
		abort();
	if (t != NULL && l->tls && !t->has_tls)
		abort();
	check_cidrs(l->allow, l->nallow);
	check_cidrs(l->deny, l->ndeny);
}

static void check_tenant(const struct moat_config_tenant *t)
{
	if (t->origin == NULL && t->tcp_origin == NULL)
		abort();
	if (t->has_tls != (t->cert != NULL && t->key != NULL && t->ndevice_cas > 0))
		abort();
	if (!t->has_tls &&
	    (t->cert != NULL || t->key != NULL || t->ndevice_cas > 0 || t->nhosts > 0))
		abort(); /* TLS material is given in full or not at all */
	if (t->origin != NULL && t->origin_scheme != MOAT_ORIGIN_HTTP &&
	    t->origin_scheme != MOAT_ORIGIN_HTTPS)
		abort();
	if (t->tcp_origin != NULL &&
	    ((t->tcp_origin_scheme != MOAT_ORIGIN_TCP && t->tcp_origin_scheme != MOAT_ORIGIN_TLS) ||
	     t->tcp_origin_port == 0 || t->tcp_origin_host == NULL))
		abort();
	if (t->proxy_protocol != MOAT_PP_OFF && t->tcp_origin == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_config *cfg = NULL;
	struct run r = {1, 0};
	size_t i;
	int rc;

	for (i = 0; i < size; i++)
		r.lines += data[i] == '\n';
	if (ftruncate(memfd, 0) != 0)
		die("ftruncate");
	if (size > 0 && pwrite(memfd, data, size, 0) != (ssize_t)size)
		die("pwrite");

	rc = moat_config_load(memfd_path, report, &r, &cfg);
	if ((rc == MOAT_OK) != (cfg != NULL))
		abort();
	if (rc != MOAT_OK && rc != MOAT_EINVAL)
		abort(); /* the file is always readable and memory is not limited here */
	if (rc == MOAT_EINVAL && r.reports == 0)
		abort();
	if (cfg != NULL) {
		if (r.reports != 0 || cfg->nlisteners == 0 || cfg->ntenants == 0)
			abort();
		if (cfg->tcp_buffer < 4096 || cfg->tcp_buffer > 16 * 1024 * 1024 ||
		    cfg->tcp_idle_timeout == 0)
			abort();
		for (i = 0; i < cfg->nlisteners; i++)
			check_listener(cfg, &cfg->listeners[i]);
		for (i = 0; i < cfg->ntenants; i++)
			check_tenant(&cfg->tenants[i]);
	}
	moat_config_free(cfg);
	return 0;
}
