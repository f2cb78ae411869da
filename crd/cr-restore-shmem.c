/*
 * Shared memory objects without a path (shared anonymous memory, memfds,
 * deleted files) come back as one memfd each, filled from shmem-ID.img
 * before the tree exists.  Every process that mapped the object maps the
 * memfd, so what one writes the others see, as before the dump.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cr-restore.h"
#include "image.h"
#include "log.h"
#include "util.h"

#define COPY_SIZE	(4 << 20)

static int fill_shmem(const Crd__ShmemEntry *e, int img, int memfd, char *buf)
{
	uint64_t src = IMG_PAGES_DATA_OFF;
	size_t i;

	if (ftruncate(memfd, e->size)) {
		pr_perror("shared memory %s: can't size it to %lu", e->name, e->size);
		return -errno;
	}
	for (i = 0; i < e->n_pages; i++) {
		uint64_t left = e->pages[i]->nr_pages * PAGE_SIZE, dst = e->pages[i]->vaddr;

		if (dst + left > PAGE_ALIGN(e->size)) {
			pr_err("shared memory %s: pages beyond its size\n", e->name);
			return -EINVAL;
		}
		while (left) {
			size_t n = left < COPY_SIZE ? left : COPY_SIZE;
			/* the last page may be partial: the object keeps its size */
			size_t w = dst + n > e->size ? e->size - dst : n;

			if (pread_all(img, buf, n, src) != (ssize_t)n ||
			    pwrite(memfd, buf, w, dst) != (ssize_t)w) {
				pr_perror("shared memory %s: can't copy its contents", e->name);
				return -EIO;
			}
			src += n;
			dst += n;
			left -= n;
		}
	}
	return 0;
}

static int restore_one(struct restore_ctx *ctx, const Crd__ShmemEntry *e, char *buf)
{
	uint64_t npages = 0;
	char name[64];
	size_t i;
	int img, fd, ret;

	for (i = 0; i < e->n_pages; i++)
		npages += e->pages[i]->nr_pages;
	img_shmem_name(name, sizeof(name), e->id);
	img = img_pages_open(ctx->dirfd, name, npages * PAGE_SIZE);
	if (img < 0)
		return img;
	fd = memfd_create("crd-shmem", 0);
	if (fd < 0) {
		ret = -errno;
		pr_perror("%s: can't create a memfd", name);
		close(img);
		return ret;
	}
	ret = fill_shmem(e, img, fd, buf);
	close(img);
	if (!ret) {
		int nfd = fcntl(fd, F_DUPFD, ctx->fd_free);

		if (nfd < 0)
			ret = -errno;
		ctx->fd_free = nfd + 1;
		ctx->shmems[ctx->nr_shmems].id = e->id;
		ctx->shmems[ctx->nr_shmems++].fd = nfd;
	}
	close(fd);
	return ret;
}

int restore_shmems(struct restore_ctx *ctx)
{
	const Crd__Inventory *inv = ctx->inv;
	char *buf;
	size_t i;
	int ret = 0;

	if (!inv->n_shmems)
		return 0;
	ctx->shmems = calloc(inv->n_shmems, sizeof(*ctx->shmems));
	buf = malloc(COPY_SIZE);
	if (!ctx->shmems || !buf) {
		free(buf);
		return -ENOMEM;
	}
	for (i = 0; !ret && i < inv->n_shmems; i++)
		ret = restore_one(ctx, inv->shmems[i], buf);
	free(buf);
	return ret;
}

int shmem_fd(const void *arg, uint64_t id)
{
	const struct restore_ctx *ctx = arg;
	size_t i;

	for (i = 0; i < ctx->nr_shmems; i++)
		if (ctx->shmems[i].id == id)
			return ctx->shmems[i].fd;
	return -1;
}
