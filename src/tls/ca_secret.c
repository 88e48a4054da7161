/*
 * Private key files of the certificate authority (ca.h): written once with mode 0600 and
 * fsynced, read back bounded, wiped from memory when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/alloc.h"
#include "tls/ca.h"

/* A PEM private key is a few KiB; anything near this is not one. */
#define SECRET_MAX (1024 * 1024)

/* mkdir -p of the directories above `path`, each new one 0700. */
static int make_parents(const char *path)
{
	char *dir = moat_strdup(path);
	int rc = 0;

	if (dir == NULL) {
		errno = ENOMEM;
		return -1;
	}
	for (char *p = dir + 1; *p != '\0' && rc == 0; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	moat_free(dir);
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int moat_secret_write(const char *path, const char *pem)
{
	int fd, saved, ok;

	if (path == NULL || path[0] == '\0' || pem == NULL) {
		errno = EINVAL;
		return MOAT_EINVAL;
	}
	if (make_parents(path) < 0)
		return MOAT_EIO;
	/* O_EXCL: a key is never overwritten, and a planted symlink is not followed. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return MOAT_EIO;
	/* The umask may have taken bits away; the mode must be exactly 0600 all the same. */
	ok = fchmod(fd, 0600) == 0 && write_all(fd, pem, strlen(pem)) == 0 && fsync(fd) == 0;
	saved = errno;
	if (close(fd) < 0 && ok) {
		ok = 0;
		saved = errno;
	}
	if (ok)
		return MOAT_OK;
	/* A partial key would block every retry (O_EXCL); nothing refers to it yet. */
	unlink(path);
	errno = saved;
	return MOAT_EIO;
}

static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
	*len = 0;
	while (*len < cap) {
		ssize_t r = read(fd, buf + *len, cap - *len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		*len += (size_t)r;
	}
	return 0;
}

int moat_secret_read(const char *path, char **pem)
{
	struct stat st;
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int fd, rc = MOAT_EIO, saved;

	*pem = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? MOAT_ENOTFOUND : MOAT_EIO;
	if (fstat(fd, &st) < 0)
		goto out;
	if (!S_ISREG(st.st_mode) || st.st_size > SECRET_MAX) {
		errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		goto out;
	}
	/* One byte more than the size: a file that grew since fstat is refused, not cut. */
	cap = (size_t)st.st_size + 1;
	buf = moat_malloc(cap + 1);
	if (buf == NULL) {
		errno = ENOMEM;
		rc = MOAT_ENOMEM;
		goto out;
	}
	if (read_all(fd, buf, cap, &len) < 0)
		goto out;
	if (len == cap) {
		errno = EFBIG;
		goto out;
	}
	buf[len] = '\0';
	*pem = buf;
	buf = NULL;
	rc = MOAT_OK;
out:
	saved = errno;
	if (buf != NULL) {
		OPENSSL_cleanse(buf, cap);
		moat_free(buf);
	}
	close(fd);
	errno = saved;
	return rc;
}

void moat_ca_free_secret(char *pem)
{
	if (pem == NULL)
		return;
	OPENSSL_cleanse(pem, strlen(pem));
	moat_free(pem);
}
