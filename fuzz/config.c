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
 *  - inih never sees a line the reader let through as valid and then refuses it.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/config.c src/core/config.c \
 *       src/core/alloc.c -linih
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
		for (i = 0; i < cfg->nlisteners; i++) {
			const char *t = cfg->listeners[i].default_tenant;

			if (t != NULL && moat_config_tenant_find(cfg, t) == NULL)
				abort();
		}
	}
	moat_config_free(cfg);
	return 0;
}
