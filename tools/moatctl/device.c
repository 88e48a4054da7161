/*
 * moatctl device enroll|list|show|set|quarantine|release|revoke|renew|rm
 *
 * enroll and renew write the device's files (certificate, CAs, and in factory mode its private
 * key) into --out DIR. The API shows a factory key once and never stores it, so everything
 * that can stop us from writing is checked before the request is sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moatctl.h"

/* ---- output files ------------------------------------------------------------------------ */

enum { FILE_KEY, FILE_CERT, FILE_CA, FILE_SERVER_CA, NFILES };

/* Where each file goes and which member of the answer it holds; key first, the most precious. */
static const struct {
	const char *member;
	const char *what;
	mode_t mode;
} file_kinds[NFILES] = {
        [FILE_KEY] = {"key", "private key", 0600},
        [FILE_CERT] = {"certificate", "certificate", 0644},
        [FILE_CA] = {"ca", "device CA", 0644},
        [FILE_SERVER_CA] = {"server_ca", "server CA", 0644},
};

struct out_files {
	const char *dir;
	char *path[NFILES]; /* NULL: not written in this mode (the key with --csr) */
	int force;
};

/* [A-Za-z0-9._:-]{1,128}: checked here too because the id names files in DIR. */
static int device_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > 128)
		return 0;
	for (; *id; id++) {
		char c = *id;

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir);

	return ctl_printf("%s%s%s", dir, n > 0 && dir[n - 1] == '/' ? "" : "/", name);
}

static void files_plan(struct out_files *f, const char *dir, const char *id, int with_key,
                       int force)
{
	char *crt = ctl_printf("%s.crt", id);
	char *key = ctl_printf("%s.key", id);

	memset(f, 0, sizeof(*f));
	f->dir = dir;
	f->force = force;
	f->path[FILE_KEY] = with_key ? join(dir, key) : NULL;
	f->path[FILE_CERT] = join(dir, crt);
	f->path[FILE_CA] = join(dir, "ca.crt");
	f->path[FILE_SERVER_CA] = join(dir, "server-ca.crt");
	ctl_free(crt);
	ctl_free(key);
}

static void files_clear(struct out_files *f)
{
	for (int i = 0; i < NFILES; i++)
		ctl_free(f->path[i]);
}

/* Creates DIR and its parents; new directories are 0700 as DIR may receive a private key. */
static int make_dirs(const char *dir)
{
	char *p = ctl_strdup(dir);
	struct stat st;
	int rc = 0;

	for (char *s = p + 1; rc == 0; s++) {
		char c = *s;

		if (c != '/' && c != '\0')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			rc = -1;
		*s = c;
		if (c == '\0')
			break;
	}
	if (rc == 0 && stat(dir, &st) != 0)
		rc = -1;
	else if (rc == 0 && !S_ISDIR(st.st_mode))
		errno = ENOTDIR, rc = -1;
	ctl_free(p);
	return rc;
}

/* ca.crt and server-ca.crt are the tenant's, not the device's: several devices may share DIR. */
static int is_shared(int i)
{
	return i == FILE_CA || i == FILE_SERVER_CA;
}

/* Before the request: none of the device's own files exist (unless --force), DIR exists.
 * An exit code. */
static int files_prepare(const struct out_files *f)
{
	struct stat st;

	for (int i = 0; i < NFILES; i++) {
		if (f->path[i] == NULL || lstat(f->path[i], &st) != 0)
			continue;
		/* Files are opened with O_NOFOLLOW: a link would fail only after the API answered,
		 * losing a factory key. */
		if (!S_ISREG(st.st_mode)) {
			fprintf(stderr, "moatctl: %s is not a regular file\n", f->path[i]);
			return CTL_EXIT_USAGE;
		}
		if (!f->force && !is_shared(i)) {
			fprintf(stderr, "moatctl: %s exists (--force overwrites it)\n", f->path[i]);
			return CTL_EXIT_USAGE;
		}
	}
	if (make_dirs(f->dir) != 0) {
		fprintf(stderr, "moatctl: cannot create %s: %s\n", f->dir, strerror(errno));
		return CTL_EXIT_API;
	}
	if (access(f->dir, W_OK | X_OK) != 0) {
		fprintf(stderr, "moatctl: cannot write into %s: %s\n", f->dir, strerror(errno));
		return CTL_EXIT_API;
	}
	return CTL_EXIT_OK;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* O_EXCL unless --force, so a file that appeared meanwhile is never clobbered; the mode is
 * set again on an overwritten file, which may have been readable before. */
static int write_file(const char *path, const char *text, mode_t mode, int force)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL);
	int fd = open(path, flags, mode);
	int rc = 0;

	if (fd < 0)
		return -1;
	if (fchmod(fd, mode) != 0 || write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0)
		rc = -1;
	if (close(fd) != 0)
		rc = -1;
	return rc;
}

/* 1 if the file at path holds exactly text. */
static int same_content(const char *path, const char *text)
{
	char *old = ctl_read_file(path);
	int same = old != NULL && strcmp(old, text) == 0;

	ctl_free(old);
	return same;
}

/*
 * After the request: every file the answer carries, the device's own first. A shared CA file
 * that is already there is kept when it holds the same certificate, and refused (but the
 * other files still written) when it differs. An exit code.
 */
static int files_write(const struct out_files *f, const json_t *answer, const char *tenant,
                       const char *id, int quiet)
{
	int rc = CTL_EXIT_OK;

	for (int i = 0; i < NFILES; i++) {
		const char *text = ctl_str(answer, file_kinds[i].member);
		const char *path = f->path[i];

		if (path == NULL || text == NULL)
			continue;
		if (write_file(path, text, file_kinds[i].mode, f->force) == 0) {
			if (!quiet)
				printf("wrote %s (%s%s)\n", path, file_kinds[i].what,
				       i == FILE_KEY ? ", mode 0600" : "");
			continue;
		}
		if (errno == EEXIST && is_shared(i) && same_content(path, text)) {
			if (!quiet)
				printf("kept %s (%s, unchanged)\n", path, file_kinds[i].what);
			continue;
		}
		if (errno == EEXIST && is_shared(i)) {
			fprintf(stderr,
			        "moatctl: %s holds another certificate; not overwritten (--force "
			        "does; tenant show --json has the %s)\n",
			        path, file_kinds[i].what);
			rc = CTL_EXIT_API;
			continue;
		}
		fprintf(stderr, "moatctl: cannot write %s: %s\n", path, strerror(errno));
		if (i == FILE_KEY)
			fprintf(stderr,
			        "moatctl: the device's new key is lost; issue another with: "
			        "moatctl "
			        "device renew %s %s --out DIR\n",
			        tenant, id);
		return CTL_EXIT_API;
	}
	return rc;
}

/* 1 if certificate a was issued after b: unrevoked first, then the later issued_at; on a tie
 * (the same second) the earlier in the list wins, as the API lists the newest first. */
static int newer(const json_t *a, const json_t *b)
{
	int a_live = json_is_null(json_object_get(a, "revoked_at"));
	int b_live = json_is_null(json_object_get(b, "revoked_at"));
	const char *at = ctl_str(a, "issued_at"), *bt = ctl_str(b, "issued_at");

	if (a_live != b_live)
		return a_live;
	return at != NULL && bt != NULL && strcmp(at, bt) > 0;
}

/* The certificate just issued: the newest of the device's in the answer, or NULL. */
static const json_t *newest_cert(const json_t *device)
{
	const json_t *best = NULL, *c;
	size_t i;

	json_array_foreach (json_object_get(device, "certificates"), i, c) {
		if (best == NULL || newer(c, best))
			best = c;
	}
	return best;
}

static void print_issued(const char *verb, const json_t *answer, const char *tenant, const char *id)
{
	const json_t *cert = newest_cert(answer);
	char *formatted = ctl_format(json_object_get(cert, "not_after"));
	char *until = ctl_clean(formatted);
	char *serial = ctl_clean(ctl_str(cert, "serial"));

	if (cert != NULL)
		printf("%s %s in %s: certificate %s, valid until %s\n", verb, id, tenant, serial,
		       until);
	else
		printf("%s %s in %s\n", verb, id, tenant);
	ctl_free(serial);
	ctl_free(until);
	ctl_free(formatted);
}

/* --json after enroll/renew: the answer but the private key, which belongs in its file only
 * (a terminal or CI log is no place for it). */
static void print_json_without_key(const json_t *answer)
{
	json_t *copy = json_deep_copy(answer);

	if (copy == NULL) {
		fputs("moatctl: out of memory\n", stderr);
		return;
	}
	json_object_del(copy, "key");
	ctl_print_json(copy);
	json_decref(copy);
}

/*
 * enroll and renew: plan the files, send, write. `path` is the endpoint, `body` what to send
 * (its csr decides factory mode).
 */
static int issue(struct ctl *ctl, const struct ctl_args *a, const char *path, json_t *body,
                 const char *verb)
{
	const char *tenant = a->pos[0], *id = a->pos[1];
	struct ctl_reply r = {0};
	struct out_files f;
	int rc;

	files_plan(&f, ctl_value(a, "out"), id, !ctl_has(a, "csr"), ctl_has(a, "force"));
	rc = files_prepare(&f);
	if (rc != CTL_EXIT_OK)
		goto out;
	rc = ctl_http(ctl, "POST", path, body, &r);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (!ctl->json)
		print_issued(verb, r.json, tenant, id);
	rc = files_write(&f, r.json, tenant, id, ctl->json);
	if (ctl->json)
		print_json_without_key(r.json);
out:
	ctl_reply_clear(&r);
	files_clear(&f);
	return rc;
}

/* Checks the arguments enroll and renew share. An exit code. */
static int check_issue_args(const struct ctl_args *a)
{
	if (ctl_value(a, "out") == NULL || ctl_value(a, "out")[0] == '\0')
		return ctl_usage(a,
		                 "--out DIR is needed: the certificate and key are written there");
	if (!device_id_ok(a->pos[1]))
		return ctl_usage(a, "'%s' is not a device id ([A-Za-z0-9._:-], 1 to 128)",
		                 a->pos[1]);
	return CTL_EXIT_OK;
}

/* The optional csr and days of enroll and renew. An exit code. */
static int fill_csr_days(const struct ctl_args *a, json_t *body)
{
	int rc;

	if (ctl_has(a, "csr") && (rc = ctl_set_file(body, "csr", ctl_value(a, "csr"))) != 0)
		return rc;
	return ctl_set_int_opt(body, "days", a, "days", 1, 36500);
}

static json_t *tags_array(const char *const *tags)
{
	json_t *arr = json_array();

	for (; arr != NULL && *tags != NULL; tags++)
		json_array_append_new(arr, json_string(*tags));
	return arr;
}

static int run_enroll(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc = check_issue_args(a);

	if (rc != CTL_EXIT_OK)
		goto out;
	ctl_json_set_str(body, "id", a->pos[1]);
	if (ctl_has(a, "model"))
		ctl_json_set_str(body, "model", ctl_value(a, "model"));
	if (ctl_has(a, "firmware"))
		ctl_json_set_str(body, "firmware", ctl_value(a, "firmware"));
	if (ctl_has(a, "tag"))
		ctl_json_set(body, "tags", tags_array(ctl_list(a, "tag")));
	if (ctl_has(a, "owner"))
		ctl_json_set_str(body, "owner", ctl_value(a, "owner"));
	rc = fill_csr_days(a, body);
	if (rc != CTL_EXIT_OK)
		goto out;
	path = ctl_path("/v1/tenants/{}/devices", a->pos[0]);
	rc = issue(ctl, a, path, body, "enrolled");
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

static int run_renew(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc = check_issue_args(a);

	if (rc != CTL_EXIT_OK)
		goto out;
	rc = fill_csr_days(a, body);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (ctl_has(a, "revoke-previous"))
		ctl_json_set(body, "revoke_previous", json_true());
	path = ctl_path("/v1/tenants/{}/devices/{}/renew", a->pos[0], a->pos[1]);
	rc = issue(ctl, a, path, body, "renewed");
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

/* ---- list -------------------------------------------------------------------------------- */

static char *list_path(const struct ctl_args *a, const char *after)
{
	static const char *const filters[] = {"state", "model", "firmware", "tag", "limit", NULL};
	char *path = ctl_path("/v1/tenants/{}/devices", a->pos[0]);

	for (int i = 0; filters[i] != NULL; i++) {
		if (ctl_value(a, filters[i]) != NULL)
			ctl_query(&path, filters[i], ctl_value(a, filters[i]));
	}
	if (after != NULL)
		ctl_query(&path, "after", after);
	return path;
}

static void print_device_table(const json_t *items)
{
	static const struct ctl_column cols[] = {
	        {"ID", "id", NULL},
	        {"MODEL", "model", NULL},
	        {"FIRMWARE", "firmware", NULL},
	        {"TAGS", "tags", NULL},
	        {"OWNER", "owner", NULL},
	        {"STATE", "state", NULL},
	        {"UPDATED", "updated_at", NULL},
	        {NULL, NULL, NULL},
	};

	ctl_print_items(items, cols);
}

/* Where the next page starts, on stderr so that stdout stays one table. */
static void print_more(const char *next)
{
	char *clean;

	if (next == NULL)
		return;
	clean = ctl_clean(next);
	fprintf(stderr, "more: --after %s (or --all)\n", clean);
	ctl_free(clean);
}

static void print_page(const json_t *answer)
{
	print_device_table(json_object_get(answer, "items"));
	print_more(ctl_str(answer, "next"));
}

/* --all: every page's items into `all`. An exit code. */
static int list_all(struct ctl *ctl, const struct ctl_args *a, json_t *all)
{
	char *after = ctl_value(a, "after") ? ctl_strdup(ctl_value(a, "after")) : NULL;
	int rc = CTL_EXIT_OK;

	for (;;) {
		struct ctl_reply r = {0};
		char *path = list_path(a, after);
		const char *next;

		rc = ctl_http(ctl, "GET", path, NULL, &r);
		ctl_free(path);
		if (rc == CTL_EXIT_OK)
			json_array_extend(all, json_object_get(r.json, "items"));
		next = ctl_str(r.json, "next");
		/* A server that hands back the same cursor would keep us here for ever. */
		if (rc == CTL_EXIT_OK && next != NULL && after != NULL &&
		    strcmp(next, after) == 0) {
			fprintf(stderr, "moatctl: the server repeated the page after %s\n", after);
			rc = CTL_EXIT_SERVER;
		}
		ctl_free(after);
		after = rc == CTL_EXIT_OK && next != NULL ? ctl_strdup(next) : NULL;
		ctl_reply_clear(&r);
		if (after == NULL)
			break;
	}
	return rc;
}

static int run_list(struct ctl *ctl, const struct ctl_args *a)
{
	json_int_t limit;
	char *path;
	int rc;

	if (ctl_int_opt(a, "limit", 1, 1000, &limit) < 0)
		return CTL_EXIT_USAGE;
	if (ctl_has(a, "all")) {
		json_t *all = json_array();

		rc = list_all(ctl, a, all);
		if (rc == CTL_EXIT_OK && ctl->json) {
			json_t *page = json_pack("{s:O,s:n}", "items", all, "next");

			ctl_print_json(page);
			json_decref(page);
		} else if (rc == CTL_EXIT_OK) {
			print_device_table(all);
		}
		json_decref(all);
		return rc;
	}
	path = list_path(a, ctl_value(a, "after"));
	rc = ctl_http_show(ctl, "GET", path, NULL, print_page);
	ctl_free(path);
	return rc;
}

/* ---- one device -------------------------------------------------------------------------- */

static void print_device(const json_t *d)
{
	static const struct ctl_column cols[] = {
	        {"SERIAL", "serial", NULL},           {"ISSUED", "issued_at", NULL},
	        {"NOT-AFTER", "not_after", NULL},     {"REVOKED", "revoked_at", NULL},
	        {"FINGERPRINT", "fingerprint", NULL}, {NULL, NULL, NULL},
	};
	const json_t *certs = json_object_get(d, "certificates");

	ctl_print_object(d, NULL);
	if (json_array_size(certs) == 0)
		return;
	fputs("\ncertificates:\n", stdout);
	ctl_print_items(certs, cols);
}

static int run_show(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/devices/{}", a->pos[0], a->pos[1]);
	int rc = ctl_http_show(ctl, "GET", path, NULL, print_device);

	ctl_free(path);
	return rc;
}

/* "" for model, firmware or owner clears it (JSON null). */
static void set_or_clear(const struct ctl_args *a, json_t *body, const char *name)
{
	const char *v = ctl_value(a, name);

	if (v != NULL)
		ctl_json_set_str(body, name, v[0] ? v : NULL);
}

static int run_set(struct ctl *ctl, const struct ctl_args *a)
{
	json_t *body = json_object();
	char *path = NULL;
	int rc = CTL_EXIT_OK;

	if (ctl_has(a, "tag") && ctl_has(a, "clear-tags")) {
		rc = ctl_usage(a, "--tag and --clear-tags exclude each other");
		goto out;
	}
	set_or_clear(a, body, "model");
	set_or_clear(a, body, "firmware");
	set_or_clear(a, body, "owner");
	if (ctl_has(a, "tag"))
		ctl_json_set(body, "tags", tags_array(ctl_list(a, "tag")));
	if (ctl_has(a, "clear-tags"))
		ctl_json_set(body, "tags", json_array());
	if (json_object_size(body) == 0) {
		rc = ctl_usage(a, "nothing to change");
		goto out;
	}
	path = ctl_path("/v1/tenants/{}/devices/{}", a->pos[0], a->pos[1]);
	rc = ctl_http_show(ctl, "PATCH", path, body, print_device);
out:
	json_decref(body);
	ctl_free(path);
	return rc;
}

/* quarantine, release, revoke: POST .../{id}/<action>, no body. */
static int state_change(struct ctl *ctl, const struct ctl_args *a, const char *action,
                        const char *done)
{
	struct ctl_reply r = {0};
	char *path = ctl_path("/v1/tenants/{}/devices/{}/", a->pos[0], a->pos[1]);
	char *full = ctl_printf("%s%s", path, action);
	int rc = ctl_http(ctl, "POST", full, NULL, &r);

	if (rc == CTL_EXIT_OK && ctl->json)
		ctl_print_json(r.json);
	else if (rc == CTL_EXIT_OK && ctl_str(r.json, "state") != NULL)
		printf("%s %s of %s (state: %s)\n", done, a->pos[1], a->pos[0],
		       ctl_str(r.json, "state"));
	else if (rc == CTL_EXIT_OK)
		printf("%s %s of %s\n", done, a->pos[1], a->pos[0]);
	ctl_reply_clear(&r);
	ctl_free(full);
	ctl_free(path);
	return rc;
}

static int run_quarantine(struct ctl *ctl, const struct ctl_args *a)
{
	return state_change(ctl, a, "quarantine", "quarantined");
}

static int run_release(struct ctl *ctl, const struct ctl_args *a)
{
	return state_change(ctl, a, "release", "released");
}

static int run_revoke(struct ctl *ctl, const struct ctl_args *a)
{
	return state_change(ctl, a, "revoke", "revoked");
}

static int run_rm(struct ctl *ctl, const struct ctl_args *a)
{
	char *path = ctl_path("/v1/tenants/{}/devices/{}", a->pos[0], a->pos[1]);
	int rc =
	        ctl_http_delete(ctl, path, "deleted device %s of %s (its certificates are revoked)",
	                        a->pos[1], a->pos[0]);

	ctl_free(path);
	return rc;
}

/* ---- the table ---------------------------------------------------------------------------- */

static const struct ctl_opt enroll_opts[] = {
        {"model", CTL_OPT_VALUE}, {"firmware", CTL_OPT_VALUE}, {"tag", CTL_OPT_LIST},
        {"owner", CTL_OPT_VALUE}, {"days", CTL_OPT_VALUE},     {"csr", CTL_OPT_VALUE},
        {"out", CTL_OPT_VALUE},   {"force", CTL_OPT_FLAG},     {NULL, 0},
};
static const struct ctl_opt renew_opts[] = {
        {"csr", CTL_OPT_VALUE}, {"days", CTL_OPT_VALUE}, {"revoke-previous", CTL_OPT_FLAG},
        {"out", CTL_OPT_VALUE}, {"force", CTL_OPT_FLAG}, {NULL, 0},
};
static const struct ctl_opt list_opts[] = {
        {"state", CTL_OPT_VALUE},    {"model", CTL_OPT_VALUE},
        {"firmware", CTL_OPT_VALUE}, {"tag", CTL_OPT_VALUE},
        {"limit", CTL_OPT_VALUE},    {"after", CTL_OPT_VALUE},
        {"all", CTL_OPT_FLAG},       {NULL, 0},
};
static const struct ctl_opt set_opts[] = {
        {"model", CTL_OPT_VALUE},     {"firmware", CTL_OPT_VALUE}, {"tag", CTL_OPT_LIST},
        {"clear-tags", CTL_OPT_FLAG}, {"owner", CTL_OPT_VALUE},    {NULL, 0},
};
static const struct ctl_opt no_opts[] = {{NULL, 0}};

static const char enroll_help[] =
        "Registers a device and issues its certificate, signed by the tenant's newest device\n"
        "CA that has a key. Writes into DIR (created if missing, mode 0700):\n"
        "  DIR/ID.crt         the device certificate\n"
        "  DIR/ca.crt         the tenant's device CA that signed it\n"
        "  DIR/server-ca.crt  the CA of the server certificate the device sees (if any)\n"
        "  DIR/ID.key         factory mode only (no --csr): the new private key, mode 0600;\n"
        "                     the API shows it once and never stores it\n"
        "Existing files are never overwritten without --force.\n\n"
        "  --model M, --firmware V, --owner O   what the rules see as device.*\n"
        "  --tag T              a tag (repeatable)\n"
        "  --days N             certificate validity (default 730)\n"
        "  --csr FILE           sign this PKCS#10 request (its CN, if any, must be ID)\n"
        "  --out DIR            where the files go (required)\n"
        "  --force              overwrite existing files\n";

static const char renew_help[] =
        "Issues a new certificate for a device (not a revoked one), written into DIR as by\n"
        "enroll; without --csr a new private key too. Older certificates stay valid until\n"
        "they expire, unless --revoke-previous.\n\n"
        "  --csr FILE           sign this PKCS#10 request instead of making a key\n"
        "  --days N             certificate validity\n"
        "  --revoke-previous    revoke the device's older certificates\n"
        "  --out DIR            where the files go (required)\n"
        "  --force              overwrite existing files\n";

static const char list_help[] =
        "Lists a tenant's devices, by id, one page (100 unless --limit) at a time.\n\n"
        "  --state S            active, quarantined or revoked\n"
        "  --model M, --firmware V, --tag T   only devices with this value\n"
        "  --limit N            page size, 1..1000\n"
        "  --after ID           the page after this id (the \"more:\" line names it)\n"
        "  --all                follow the pages to the end\n";

static const char set_help[] =
        "Changes a device's attributes; only the fields given change. --tag replaces every\n"
        "tag; an empty value clears: --model '' --firmware '' --owner ''.\n\n"
        "  --model M, --firmware V, --owner O\n"
        "  --tag T              a tag (repeatable; replaces the tags)\n"
        "  --clear-tags         remove every tag\n";

const struct ctl_cmd ctl_device_cmds[] = {
        {"device", "enroll",
         "TENANT ID [--model M] [--firmware V] [--tag T]... [--owner O] [--days N] "
         "[--csr FILE] --out DIR [--force]",
         enroll_help, 2, 2, enroll_opts, run_enroll},
        {"device", "list",
         "TENANT [--state S] [--model M] [--firmware V] [--tag T] [--limit N] [--after ID] "
         "[--all]",
         list_help, 1, 1, list_opts, run_list},
        {"device", "show", "TENANT ID", "Shows a device and its certificates.\n", 2, 2, no_opts,
         run_show},
        {"device", "set",
         "TENANT ID [--model M] [--firmware V] [--tag T]... [--clear-tags] [--owner O]", set_help,
         2, 2, set_opts, run_set},
        {"device", "quarantine", "TENANT ID",
         "Quarantines an active device: it still connects, but every HTTP request except\n"
         "under the tenant's quarantine_allow paths answers 403, and TCP is refused.\n",
         2, 2, no_opts, run_quarantine},
        {"device", "release", "TENANT ID", "Returns a quarantined device to active.\n", 2, 2,
         no_opts, run_release},
        {"device", "revoke", "TENANT ID",
         "Revokes every certificate of a device, for good: handshakes fail and open\n"
         "connections close within a second.\n",
         2, 2, no_opts, run_revoke},
        {"device", "renew",
         "TENANT ID [--csr FILE] [--days N] [--revoke-previous] --out DIR [--force]", renew_help, 2,
         2, renew_opts, run_renew},
        {"device", "rm", "TENANT ID", "Revokes a device, then forgets it.\n", 2, 2, no_opts,
         run_rm},
        {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
