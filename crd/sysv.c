/*
 * System V shared memory segments the tree has attached.  A segment is
 * recreated with its id (through /proc/sys/kernel/shm_next_id), key, mode and
 * owner, and filled from its shmem image before the tree exists; the
 * restorer blob attaches it at the dumped address.  One that was already
 * marked for removal is marked again once the tree holds it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "cr-dump.h"
#include "cr-restore.h"
#include "log.h"
#include "sysv.h"
#include "util.h"

#define SHM_DEST_FLAG	01000	/* in /proc/sysvipc/shm perms */

int sysv_collect(struct dump_ctx *ctx, uint32_t id)
{
	Crd__SysvShmEntry *e;
	char *buf, *line, *save;
	size_t i;
	int ret;

	for (i = 0; i < ctx->nr_sysv; i++)
		if (ctx->sysv[i]->id == id)
			return 0;
	ret = read_file("/proc/sysvipc/shm", &buf);
	if (ret < 0) {
		pr_err("can't read /proc/sysvipc/shm: %s\n", strerror(-ret));
		return ret;
	}
	ret = -ENOENT;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int key;
		unsigned int shmid, perms, uid, gid;
		unsigned long size;

		if (sscanf(line, "%d %u %o %lu %*d %*d %*d %u %u", &key, &shmid, &perms, &size, &uid,
			   &gid) != 6 || shmid != id)
			continue;
		e = arena_alloc(&ctx->arena, sizeof(*e));
		if (!e || arena_grow(&ctx->arena, (void **)&ctx->sysv, &ctx->cap_sysv,
				     ctx->nr_sysv + 1, sizeof(*ctx->sysv))) {
			ret = -ENOMEM;
			break;
		}
		crd__sysv_shm_entry__init(e);
		e->id = id;
		e->key = key;
		e->mode = perms & 0777;
		e->size = size;
		e->uid = uid;
		e->gid = gid;
		e->has_removed = true;
		e->removed = perms & SHM_DEST_FLAG;
		ctx->sysv[ctx->nr_sysv++] = e;
		ret = 0;
		break;
	}
	free(buf);
	if (ret == -ENOENT)
		pr_err("System V shared memory %u is not in /proc/sysvipc/shm\n", id);
	return ret;
}

int sysv_set_next_id(const char *kind, int id)
{
	char s[16], path[64];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/sys/kernel/%s_next_id", kind);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(s, sizeof(s), "%d", id);
	if (write(fd, s, strlen(s)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* The segment's contents as they were at dump time. */
static int refill(const Crd__SysvShmEntry *e, int id, int mfd)
{
	void *p = shmat(id, NULL, 0);
	int ret = 0;

	if (p == (void *)-1 || mfd < 0 || pread_all(mfd, p, e->size, 0) < 0) {
		pr_err("System V shared memory %u: can't refill it\n", e->id);
		ret = -EIO;
	}
	if (p != (void *)-1)
		shmdt(p);
	return ret;
}

static int restore_one(struct restore_ctx *ctx, const Crd__SysvShmEntry *e)
{
	int mfd = shmem_fd(ctx, e->id), id, ret;
	struct shmid_ds ds;

	/* restored where it was: the segment outlived its users, take it as it is now */
	if (shmctl(e->id, IPC_STAT, &ds) == 0) {
		if (ds.shm_perm.__key != e->key || ds.shm_segsz != e->size) {
			pr_err("System V shared memory id %u is taken by another segment (key %#x)\n",
			       e->id, ds.shm_perm.__key);
			return -EEXIST;
		}
		ret = refill(e, e->id, mfd);
		return ret ? ret : 1;
	}
	ret = sysv_set_next_id("shm", e->id);
	if (ret) {
		pr_err("System V shared memory %u: can't ask for its id: %s\n", e->id, strerror(-ret));
		return ret;
	}
	id = shmget(e->key, e->size, IPC_CREAT | IPC_EXCL | e->mode);
	sysv_set_next_id("shm", -1);
	if (id < 0 || (uint32_t)id != e->id) {
		ret = id < 0 ? -errno : -EEXIST;
		pr_err("System V shared memory %u (key %#x): can't recreate it: %s\n", e->id,
		       e->key, id < 0 ? strerror(errno) : "got another id");
		if (id >= 0)
			shmctl(id, IPC_RMID, NULL);
		return ret;
	}
	ret = refill(e, id, mfd);
	if (!ret && !shmctl(id, IPC_STAT, &ds)) {
		ds.shm_perm.uid = e->uid;
		ds.shm_perm.gid = e->gid;
		ds.shm_perm.mode = e->mode;
		if (shmctl(id, IPC_SET, &ds))
			ret = -errno;
	}
	if (ret)
		shmctl(id, IPC_RMID, NULL);
	return ret;
}

int sysv_restore(struct restore_ctx *ctx)
{
	size_t i;
	int ret = 0;

	if (!ctx->inv->n_sysv_shms)
		return sysv_ipc_restore(ctx);
	ctx->sysv_made = calloc(ctx->inv->n_sysv_shms, sizeof(*ctx->sysv_made));
	if (!ctx->sysv_made)
		return -ENOMEM;
	for (i = 0; !ret && i < ctx->inv->n_sysv_shms; i++) {
		ret = restore_one(ctx, ctx->inv->sysv_shms[i]);
		/* 1: it was still there and is reused, not ours to remove on failure */
		ctx->sysv_made[i] = !ret;
		if (ret == 1)
			ret = 0;
	}
	return ret ?: sysv_ipc_restore(ctx);
}

void sysv_undo(struct restore_ctx *ctx)
{
	size_t i;

	for (i = 0; ctx->sysv_made && i < ctx->inv->n_sysv_shms; i++)
		if (ctx->sysv_made[i])
			shmctl(ctx->inv->sysv_shms[i]->id, IPC_RMID, NULL);
	free(ctx->sysv_made);
	ctx->sysv_made = NULL;
	sysv_ipc_undo(ctx);
}

void sysv_finish(struct restore_ctx *ctx)
{
	size_t i;

	for (i = 0; i < ctx->inv->n_sysv_shms; i++)
		if (ctx->inv->sysv_shms[i]->removed)
			shmctl(ctx->inv->sysv_shms[i]->id, IPC_RMID, NULL);
}
