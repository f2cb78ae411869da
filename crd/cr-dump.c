/*
 * crd dump: freeze a process tree, write its images, then kill it or let it
 * run on.  Every failure releases the tree exactly as it was found and removes
 * what was written: a directory holds a dump only once inventory.img, written
 * last, is there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "cr-dump.h"
#include "files.h"
#include "image.h"
#include "cr-incr.h"
#include "img-store.h"
#include "log.h"
#include "sysv.h"
#include "util.h"
#include "tty.h"

#define PME_PFN_MASK	((1ULL << 55) - 1)

/* The PFN of the shared zero page, to skip never-written anonymous pages. */
static int find_zero_pfn(uint64_t *pfn)
{
	volatile char *p;
	uint64_t e = 0;
	int fd, ret = 0;

	p = mmap(NULL, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	(void)p[0];
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread_all(fd, &e, 8, (uint64_t)p / PAGE_SIZE * 8) != 8)
		ret = -EIO;
	if (fd >= 0)
		close(fd);
	munmap((void *)p, PAGE_SIZE);
	*pfn = e & PME_PFN_MASK;
	if (!ret && !*pfn) {
		pr_err("pagemap shows no PFNs: crd dump needs root\n");
		ret = -EPERM;
	}
	return ret;
}

static int dump_one_task(struct dump_ctx *ctx, struct dtask *t)
{
	struct arena *a = &ctx->arena;
	Crd__TaskEntry *te;
	char name[64];
	size_t i;
	int ret;

	te = t->te = arena_alloc(a, sizeof(*te));
	if (!te)
		return -ENOMEM;
	crd__task_entry__init(te);
	te->pid = t->pid;
	if (t->stopped) {
		te->has_stopped = true;
		te->stopped = true;
	}
	te->mm = arena_alloc(a, sizeof(*te->mm));
	te->threads = arena_alloc(a, t->nr_threads * sizeof(*te->threads));
	if (!te->mm || !te->threads)
		return -ENOMEM;
	crd__mm_entry__init(te->mm);
	/* the leader first: restore builds the other threads from it */
	for (i = 0; i < t->nr_threads; i++)
		if (t->threads[i].tid == t->pid && i) {
			struct dthread tmp = t->threads[0];

			t->threads[0] = t->threads[i];
			t->threads[i] = tmp;
		}
	for (i = 0; i < t->nr_threads; i++) {
		Crd__ThreadEntry *e = arena_alloc(a, sizeof(*e));

		if (!e)
			return -ENOMEM;
		crd__thread_entry__init(e);
		te->threads[te->n_threads++] = e;
		ret = dump_thread_regs(ctx, t, &t->threads[i], e);
		if (ret)
			return ret;
	}
	ret = dump_pending(a, t->pid, true, &te->shared_pending, &te->n_shared_pending);
	/* the pre-dump's tracker leaves before the fds are looked at */
	if (!ret && ctx->incr)
		ret = incr_prepare_task(ctx, t);
	if (!ret)
		ret = incr_drop_stale(t);
	if (!ret)
		ret = dump_task_fds(ctx->ft, t->pid, te);
	if (!ret)
		ret = dump_task_state(ctx, t);
	if (!ret && t->sid == t->pid)
		tty_check_ctty(t->pid);
	if (!ret)
		ret = dump_task_mem(ctx, t);
	if (ret)
		return ret;
	img_task_name(name, sizeof(name), t->pid);
	return img_write_msg(ctx->dirfd, name, IMG_TASK, &te->base);
}

static int dump_file_shmem(void *arg, pid_t pid, int fd, const Crd__FileEntry *e)
{
	char path[64];
	int ofd, ret;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	ofd = open(path, O_RDONLY | O_CLOEXEC);
	if (ofd < 0) {
		ret = -errno;
		pr_perror("pid %d fd %d: can't open %s to dump its contents", pid, fd, e->path);
		return ret;
	}
	ret = dump_shmem_fd(arg, ofd, e->shmid, e->path);
	close(ofd);
	return ret;
}

static int write_inventory(struct dump_ctx *ctx)
{
	struct arena *a = &ctx->arena;
	Crd__Inventory inv = CRD__INVENTORY__INIT;
	struct utsname u;
	struct timespec ts;
	struct stat st;
	char path[64];
	size_t i;
	int ret;

	inv.format_version = IMG_VERSION;
	inv.root_pid = ctx->opts->pid;
	inv.tasks = arena_alloc(a, ctx->nr_tasks * sizeof(*inv.tasks));
	if (!inv.tasks)
		return -ENOMEM;
	for (i = 0; i < ctx->nr_tasks; i++) {
		struct dtask *t = &ctx->tasks[i];
		Crd__PstreeEntry *e = arena_alloc(a, sizeof(*e));
		size_t j;

		if (!e)
			return -ENOMEM;
		crd__pstree_entry__init(e);
		e->pid = t->pid;
		e->ppid = t->ppid;
		e->pgid = t->pgid;
		e->sid = t->sid;
		e->threads = arena_alloc(a, (t->nr_threads + 1) * sizeof(*e->threads));
		if (!e->threads)
			return -ENOMEM;
		for (j = 0; j < t->nr_threads; j++)
			e->threads[e->n_threads++] = t->threads[j].tid;
		if (t->zombie) {
			e->has_zombie = e->has_exit_status = true;
			e->zombie = true;
			e->exit_status = t->exit_status;
			e->threads[e->n_threads++] = t->pid;
		}
		inv.tasks[inv.n_tasks++] = e;
	}
	ret = file_table_dump_inflight(ctx->ft);
	if (!ret)
		ret = file_table_for_each_shmem(ctx->ft, dump_file_shmem, ctx);
	if (ret)
		return ret;
	inv.shmems = ctx->shmems;
	inv.n_shmems = ctx->nr_shmems;
	inv.sysv_shms = ctx->sysv;
	inv.n_sysv_shms = ctx->nr_sysv;
	ret = sysv_ipc_dump(ctx, &inv);
	if (ret)
		return ret;
	ret = file_table_fill_inventory(ctx->ft, &inv, ctx->opts->pid);
	if (!ret)
		ret = capture_files(ctx, &inv);
	if (ret)
		return ret;
	if (!uname(&u)) {
		inv.hostname = arena_strdup(a, u.nodename);
		inv.kernel = arena_strdup(a, u.release);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	inv.has_dump_time_ns = true;
	inv.dump_time_ns = ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	snprintf(path, sizeof(path), "/proc/%d", ctx->opts->pid);
	if (!stat(path, &st)) {
		inv.has_dump_uid = true;
		inv.dump_uid = st.st_uid;
	}
	return img_write_msg(ctx->dirfd, IMG_INVENTORY_NAME, IMG_INVENTORY, &inv.base);
}

/* A failed dump leaves no images behind that could pass for a dump. */
static void remove_images(struct dump_ctx *ctx)
{
	char name[64];
	size_t i;

	unlinkat(ctx->dirfd, IMG_INVENTORY_NAME, 0);
	for (i = 0; i < ctx->nr_tasks; i++) {
		img_task_name(name, sizeof(name), ctx->tasks[i].pid);
		unlinkat(ctx->dirfd, name, 0);
		img_pages_name(name, sizeof(name), ctx->tasks[i].pid);
		unlinkat(ctx->dirfd, name, 0);
	}
	for (i = 0; i < ctx->nr_shmems; i++) {
		img_shmem_name(name, sizeof(name), ctx->shmems[i]->id);
		unlinkat(ctx->dirfd, name, 0);
	}
	/* captured files are numbered from 0 up */
	for (i = 0;; i++) {
		snprintf(name, sizeof(name), "capture-%zu.img", i);
		if (unlinkat(ctx->dirfd, name, 0))
			break;
	}
}

/*
 * A failed dump, and a tree that runs on, get their connections back unless
 * the caller keeps them locked for a dump of the peers.  A killed tree's stay
 * locked: the peers must see neither new data acknowledged nor a reset until
 * the tree is restored (which removes the lock) or `crd net-unlock` is run.
 */
static void finish_net_lock(struct dump_ctx *ctx, int ret)
{
	if (!file_table_net_locked(ctx->ft))
		return;
	if (ret || (ctx->opts->leave_running && !ctx->opts->keep_net_locked))
		file_table_net_unlock(ctx->ft);
	else
		pr_info("tree %d: its TCP connections stay locked until restore or "
			"`crd net-unlock %d`\n", ctx->opts->pid, ctx->opts->pid);
}

int cr_dump(const struct dump_opts *opts)
{
	struct dump_ctx ctx = { .opts = opts, .dirfd = -1 };
	struct img_store_dump sd = { };
	struct timespec t0, t1;
	bool finished = false;
	size_t i;
	int ret;

	if (opts->store) {
		ret = img_store_dump_begin(opts, &sd);
		if (ret)
			return ret;
		ctx.sw = sd.sw;
		ctx.incr = sd.incr;
	}
	ctx.dirfd = img_open_dir(opts->store ? sd.staging : opts->dir);
	if (ctx.dirfd < 0) {
		img_store_dump_abort(&sd);
		return ctx.dirfd;
	}
	ret = find_zero_pfn(&ctx.zero_pfn);
	if (ret)
		goto out;
	ctx.ft = file_table_new();
	if (!ctx.ft) {
		ret = -ENOMEM;
		goto out;
	}
	file_table_set_shell_job(ctx.ft, opts->shell_job);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	file_table_set_external(ctx.ft, opts->external, opts->n_external);
	ret = freeze_tree(&ctx);
	if (ret)
		goto release;
	pr_info("frozen %zu processes of tree %d\n", ctx.nr_tasks, opts->pid);
	if (ctx.tasks[0].zombie) {
		pr_err("pid %d has exited (a zombie): there is nothing to dump\n", opts->pid);
		ret = -ESRCH;
		goto release;
	}
	ret = run_action_script(opts->action_script, "post-freeze", opts->pid);
	for (i = 0; i < ctx.nr_tasks && !ret; i++)
		if (!ctx.tasks[i].zombie)
			ret = dump_one_task(&ctx, &ctx.tasks[i]);
	if (!ret)
		ret = write_inventory(&ctx);
	/*
	 * Written but not committed (a coordinator commits every node's
	 * writers at once): durable before post-dump tells it so.
	 */
	if (!ret && opts->store && opts->no_commit) {
		ret = img_store_dump_finish(opts, &sd);
		finished = true;
	}
	if (!ret)
		ret = run_action_script(opts->action_script, "post-dump", opts->pid);
	/* a tree that dies with the dump goes only once its generation is safe */
	if (!ret && opts->store && !opts->leave_running && !finished) {
		ret = img_store_dump_finish(opts, &sd);
		finished = true;
	}
	if (ret) {
		pr_err("dump of tree %d failed; it keeps running\n", opts->pid);
		remove_images(&ctx);
	}
release:
	/* connections resume before their processes do; a killed tree's close silently */
	if (ctx.ft && (ret || opts->leave_running))
		file_table_close_sockets(ctx.ft, true);
	release_tree(&ctx, !ret && !opts->leave_running);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pr_info("tree %d was frozen for %.3f s\n", opts->pid,
		(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	/* one that runs on need not wait for the fsyncs and the commit */
	if (!ret && opts->store && !finished)
		ret = img_store_dump_finish(opts, &sd);
	if (ctx.ft)
		finish_net_lock(&ctx, ret);
out:
	if (opts->store)
		img_store_dump_abort(&sd);
	if (ctx.ft)
		file_table_free(ctx.ft);
	close(ctx.dirfd);
	arena_free(&ctx.arena);
	return ret;
}
