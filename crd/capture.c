/*
 * Node-local scratch.  A job restarted on another node finds no /dev/shm or
 * /tmp files of its old node, yet its processes hold them open or mapped
 * (MPI shared-memory transports, session directories).  Files the tree uses
 * in /dev/shm and in the --capture-path directories are copied whole into
 * capture-N.img; restore recreates each one that is missing, with its mode
 * and owner, before the tree's files are opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture.h"
#include "cr-dump.h"
#include "cr-restore.h"
#include "image.h"
#include "log.h"
#include "util.h"

#define CHUNK		(4 << 20)
#define CAPTURE_NAME	"capture-%u.img"

static bool under(const char *path, const char *dir)
{
	size_t len = strlen(dir);

	while (len > 1 && dir[len - 1] == '/')
		len--;
	return !strncmp(path, dir, len) && path[len] == '/';
}

static bool wanted(const struct dump_opts *o, const char *path)
{
	int i;

	if (under(path, "/dev/shm"))
		return true;
	for (i = 0; i < o->n_capture; i++)
		if (under(path, o->capture[i]))
			return true;
	return false;
}

bool capture_listed(const Crd__Inventory *inv, const char *path)
{
	size_t i;

	for (i = 0; i < inv->n_captured; i++)
		if (!strcmp(inv->captured[i]->path, path))
			return true;
	return false;
}

static int copy_into(int fd, struct img_pages_writer *w, const char *path)
{
	char *buf = malloc(CHUNK);
	ssize_t n;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	while ((n = read_all(fd, buf, CHUNK)) > 0) {
		ret = img_pages_write(w, buf, n);
		if (ret)
			break;
	}
	if (n < 0) {
		ret = n;
		pr_err("%s: can't read it to capture it: %s\n", path, strerror(-ret));
	}
	free(buf);
	return ret;
}

static int capture_one(struct dump_ctx *ctx, Crd__Inventory *inv, size_t *cap,
		       const char *path)
{
	Crd__CapturedFile *c;
	struct img_pages_writer w;
	struct stat st;
	char name[64];
	int fd, ret;

	if (!wanted(ctx->opts, path) || capture_listed(inv, path))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		pr_perror("%s: can't open it to capture it", path);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	c = arena_alloc(&ctx->arena, sizeof(*c));
	if (!c || arena_grow(&ctx->arena, (void **)&inv->captured, cap, inv->n_captured + 1,
			     sizeof(*inv->captured))) {
		close(fd);
		return -ENOMEM;
	}
	crd__captured_file__init(c);
	c->path = arena_strdup(&ctx->arena, path);
	c->mode = st.st_mode & 07777;
	c->uid = st.st_uid;
	c->gid = st.st_gid;
	c->size = st.st_size;
	c->image = inv->n_captured;
	snprintf(name, sizeof(name), CAPTURE_NAME, c->image);
	ret = img_pages_create_sw(ctx->dirfd, name, ctx->sw, &w);
	if (!ret) {
		ret = copy_into(fd, &w, path);
		if (!ret && w.len != c->size) {
			pr_err("%s: changed size while being captured\n", path);
			ret = -EAGAIN;
		}
		if (!ret)
			ret = img_pages_finish(&w);
		else
			img_pages_abort(&w);
	}
	close(fd);
	if (!ret)
		inv->captured[inv->n_captured++] = c;
	return ret;
}

int capture_files(struct dump_ctx *ctx, Crd__Inventory *inv)
{
	size_t cap = 0, i, j;
	int ret = 0;

	for (i = 0; !ret && i < inv->n_files; i++)
		if (inv->files[i]->type == CRD__FILE_TYPE__FILE_REG && inv->files[i]->path &&
		    !inv->files[i]->has_shmid)
			ret = capture_one(ctx, inv, &cap, inv->files[i]->path);
	for (i = 0; !ret && i < ctx->nr_tasks; i++) {
		const Crd__TaskEntry *te = ctx->tasks[i].te;

		for (j = 0; te && !ret && j < te->n_vmas; j++)
			if (te->vmas[j]->path && !te->vmas[j]->has_shmid &&
			    (te->vmas[j]->kind == CRD__VMA_KIND__VMA_FILE_SHARED ||
			     te->vmas[j]->kind == CRD__VMA_KIND__VMA_FILE_PRIVATE))
				ret = capture_one(ctx, inv, &cap, te->vmas[j]->path);
	}
	return ret;
}

/* mkdir -p of the directory part of path */
static int make_parents(const char *path)
{
	char dir[PATH_MAX], *p;

	snprintf(dir, sizeof(dir), "%s", path);
	for (p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdir(dir, 0755) && errno != EEXIST) {
			pr_perror("can't create directory %s", dir);
			return -errno;
		}
		*p = '/';
	}
	return 0;
}

static int recreate(struct restore_ctx *ctx, const Crd__CapturedFile *c, char *buf)
{
	uint64_t off = IMG_PAGES_DATA_OFF, left = c->size;
	char name[64];
	int img, fd, ret;

	snprintf(name, sizeof(name), CAPTURE_NAME, c->image);
	img = img_pages_open(ctx->dirfd, name, c->size);
	if (img < 0)
		return img;
	ret = make_parents(c->path);
	fd = ret ? -1 : open(c->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, c->mode);
	if (fd < 0) {
		ret = ret ? ret : -errno;
		if (!ret)
			pr_perror("%s: can't recreate it", c->path);
		close(img);
		return ret ? ret : -EIO;
	}
	while (!ret && left) {
		size_t n = left < CHUNK ? left : CHUNK;

		if (pread_all(img, buf, n, off) != (ssize_t)n || write_all(fd, buf, n))
			ret = -EIO;
		off += n;
		left -= n;
	}
	if (!ret && (fchown(fd, c->uid, c->gid) || fchmod(fd, c->mode)))
		ret = -errno;
	if (ret)
		pr_err("%s: can't recreate it: %s\n", c->path, strerror(-ret));
	close(fd);
	close(img);
	return ret;
}

int restore_captured(struct restore_ctx *ctx)
{
	const Crd__Inventory *inv = ctx->inv;
	char *buf;
	size_t i;
	int ret = 0;

	if (!inv->n_captured)
		return 0;
	buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	for (i = 0; !ret && i < inv->n_captured; i++) {
		if (!access(inv->captured[i]->path, F_OK))
			continue;	/* still there: this node's copy is the live one */
		pr_info("recreating %s\n", inv->captured[i]->path);
		ret = recreate(ctx, inv->captured[i], buf);
	}
	free(buf);
	return ret;
}
