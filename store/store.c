/* Opening a store, and the names and paths everything else builds on. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "store-int.h"

static int mkdir_p1(const char *path)
{
	if (mkdir(path, 0755) && errno != EEXIST) {
		pr_perror("store: can't create %s", path);
		return -errno;
	}
	return 0;
}

int store_open(const char *dir, struct store **out)
{
	char path[STORE_PATH_MAX];
	struct store *s;
	int ret;

	ret = mkdir_p1(dir);
	if (ret)
		return ret;
	ret = store_path(path, "%s/jobs", dir);
	if (!ret)
		ret = mkdir_p1(path);
	if (ret)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		pr_err("store %s: out of memory\n", dir);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	free(s->dir);
	free(s);
}

const char *store_dir(const struct store *s)
{
	return s->dir;
}

/* job and node names become file names: [A-Za-z0-9._-]+ without ".." */
int store_valid_name(const char *s)
{
	size_t i, len = strlen(s);

	if (!len || len > STORE_NAME_MAX || strstr(s, ".."))
		return 0;
	if (!strcmp(s, "."))
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* blob names go into text manifests: no spaces, no control characters */
int store_valid_blob_name(const char *s)
{
	size_t i, len = strlen(s);

	if (!len || len > STORE_BLOB_NAME_MAX || strstr(s, "..") || s[0] == '/')
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

int store_path(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, STORE_PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= STORE_PATH_MAX) {
		pr_err("store: path too long: %.100s...\n", buf);
		return -ENAMETOOLONG;
	}
	return 0;
}

int store_job_path(const struct store *s, const char *job, char *buf)
{
	if (!store_valid_name(job)) {
		pr_err("store %s: invalid job name '%s' (want [A-Za-z0-9._-]+)\n", s->dir, job);
		return -EINVAL;
	}
	return store_path(buf, "%s/jobs/%s", s->dir, job);
}

int store_gen_path(const struct store *s, const char *job, uint64_t gen, int partial, char *buf)
{
	return store_path(buf, "%s/jobs/%s/gen-%llu%s", s->dir, job, (unsigned long long)gen,
			  partial ? ".partial" : "");
}

int store_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0 || fsync(fd)) {
		ret = -errno;
		pr_perror("store: can't fsync %s", path);
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int store_slurp(const char *path, char **bufp, size_t *lenp)
{
	struct stat st;
	ssize_t n;
	char *buf;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out;
	}
	buf = malloc(st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	n = read_all(fd, buf, st.st_size);
	if (n < 0) {
		free(buf);
		ret = n;
		goto out;
	}
	buf[n] = '\0';
	*bufp = buf;
	*lenp = n;
	ret = 0;
out:
	close(fd);
	return ret;
}

/* some network file systems leave d_type unknown */
static int is_dir(const struct dirent *de, const char *path)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	return !lstat(path, &st) && S_ISDIR(st.st_mode);
}

static int rmtree_quiet(const char *path)
{
	char sub[STORE_PATH_MAX];
	struct dirent *de;
	int ret = 0;
	DIR *d;

	d = opendir(path);
	if (!d) {
		if (errno == ENOTDIR)
			return unlink(path) ? -errno : 0;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (store_path(sub, "%s/%s", path, de->d_name)) {
			ret = -ENAMETOOLONG;
			continue;
		}
		if (is_dir(de, sub))
			ret = rmtree_quiet(sub) ?: ret;
		else if (unlink(sub) && errno != ENOENT)
			ret = -errno;
	}
	closedir(d);
	if (rmdir(path) && errno != ENOENT)
		ret = -errno;
	return ret;
}

int store_rmtree(const char *path)
{
	int ret = rmtree_quiet(path);

	if (ret)
		pr_err("store: can't remove %s: %s\n", path, strerror(-ret));
	return ret;
}
