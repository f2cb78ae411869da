/* Incremental dumps: see include/cr-incr.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "cr-dump.h"
#include "log.h"
#include "proc.h"
#include "util.h"
#include "uffd-compat.h"
#include "cr-incr.h"

#define MAP_MAGIC	0x31455250445243ULL	/* "CRDPRE1" */
#define COPY_PAGES	256
#define SCAN_REGIONS	1024

/* ------------------------------------------------------------------ state file */

struct map_hdr {
	uint64_t magic;
	uint64_t ntasks;
};

struct map_task {
	uint32_t pid;
	int32_t uffd;
	uint32_t nvmas;
	uint32_t pad;
	uint64_t n;
};

void incr_free(struct incr_state *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->tasks[i].vmas);
		free(s->tasks[i].vaddrs);
		free(s->tasks[i].refs);
		free(s->tasks[i].written);
	}
	free(s->tasks);
	s->tasks = NULL;
	s->n = 0;
}

static int put(FILE *f, XXH3_state_t *h, const void *p, size_t len)
{
	XXH3_64bits_update(h, p, len);
	return fwrite(p, 1, len, f) == len ? 0 : -EIO;
}

static int incr_save(const char *path, const struct incr_state *s)
{
	struct map_hdr hdr = { MAP_MAGIC, s->n };
	XXH3_state_t *h = XXH3_createState();
	char tmp[4300];
	uint64_t sum;
	FILE *f;
	size_t i;
	int ret;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f || !h) {
		ret = -errno;
		pr_perror("can't write %s", tmp);
		if (f)
			fclose(f);
		XXH3_freeState(h);
		return ret ?: -ENOMEM;
	}
	XXH3_64bits_reset(h);
	ret = put(f, h, &hdr, sizeof(hdr));
	for (i = 0; !ret && i < s->n; i++) {
		const struct incr_task *t = &s->tasks[i];
		struct map_task mt = { t->pid, t->uffd, t->nvmas, 0, t->n };

		ret = put(f, h, &mt, sizeof(mt)) ?:
		      put(f, h, t->vmas, t->nvmas * sizeof(*t->vmas)) ?:
		      put(f, h, t->vaddrs, t->n * sizeof(*t->vaddrs)) ?:
		      put(f, h, t->refs, t->n * sizeof(*t->refs));
	}
	sum = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	if (!ret && fwrite(&sum, sizeof(sum), 1, f) != 1)
		ret = -EIO;
	if ((fflush(f) || fsync(fileno(f))) && !ret)
		ret = -errno;
	if (fclose(f) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		pr_err("%s: can't write the pre-dump state: %s\n", path, strerror(-ret));
		unlink(tmp);
	}
	return ret;
}

static void *take(const char **p, const char *end, size_t len)
{
	void *v;

	if ((size_t)(end - *p) < len)
		return NULL;
	v = malloc(len ? len : 1);
	if (v)
		memcpy(v, *p, len);
	*p += len;
	return v;
}

int incr_load(const char *path, struct incr_state *s)
{
	const char *p, *end;
	struct map_hdr hdr;
	char *buf;
	ssize_t len = read_file(path, &buf);
	size_t i;
	int ret = -EINVAL;

	memset(s, 0, sizeof(*s));
	if (len < 0)
		return len;
	p = buf;
	end = buf + len - sizeof(uint64_t);
	if (len < (ssize_t)(sizeof(hdr) + 8) ||
	    XXH3_64bits(buf, end - buf) != *(const uint64_t *)end)
		goto bad;
	memcpy(&hdr, p, sizeof(hdr));
	p += sizeof(hdr);
	if (hdr.magic != MAP_MAGIC || hdr.ntasks > 1 << 20)
		goto bad;
	s->tasks = calloc(hdr.ntasks + 1, sizeof(*s->tasks));
	if (!s->tasks)
		goto bad;
	for (i = 0; i < hdr.ntasks; i++) {
		struct incr_task *t = &s->tasks[s->n++];
		struct map_task mt;

		if (end - p < (ssize_t)sizeof(mt))
			goto bad;
		memcpy(&mt, p, sizeof(mt));
		p += sizeof(mt);
		if (mt.n > (uint64_t)(end - p) / 8 || mt.nvmas > (uint64_t)(end - p) / 16)
			goto bad;
		t->pid = mt.pid;
		t->uffd = mt.uffd;
		t->nvmas = mt.nvmas;
		t->n = mt.n;
		t->vmas = take(&p, end, mt.nvmas * sizeof(*t->vmas));
		t->vaddrs = take(&p, end, mt.n * sizeof(*t->vaddrs));
		t->refs = take(&p, end, mt.n * sizeof(*t->refs));
		if (!t->vmas || !t->vaddrs || !t->refs)
			goto bad;
	}
	if (p != end)
		goto bad;
	free(buf);
	return 0;
bad:
	pr_err("%s: the pre-dump state is damaged\n", path);
	free(buf);
	incr_free(s);
	return ret;
}

/* ------------------------------------------------------------------ pre-dump */

static int collect_anon(const struct proc_vma *v, void *arg)
{
	struct incr_task *t = arg;
	struct incr_range *r;

	/* private anonymous memory that may change; the rest is dumped whole every time */
	if (v->shared || !(v->prot & PROT_WRITE) ||
	    (v->path[0] && strcmp(v->path, "[heap]") && strcmp(v->path, "[stack]")))
		return 0;
	r = realloc(t->vmas, (t->nvmas + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	t->vmas = r;
	t->vmas[t->nvmas++] = (struct incr_range){ v->start, v->end };
	return 0;
}

/* where a tracker goes: a high fd the process will not use */
static long tracker_min_fd(pid_t pid)
{
	struct rlimit rl = { 1024, 1024 };

	prlimit(pid, RLIMIT_NOFILE, NULL, &rl);
	return rl.rlim_cur > 128 ? (long)rl.rlim_cur - 64 : 64;
}

static bool is_uffd(uint32_t pid, int fd);

#define MAX_STALE	8

/* userfaultfds at tracker fds: left by a pre-dump that no dump followed */
static int stale_trackers(pid_t pid, int *fds)
{
	long min = tracker_min_fd(pid);
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < MAX_STALE) {
		long fd = strtol(de->d_name, NULL, 10);

		if (de->d_name[0] != '.' && fd >= min && is_uffd(pid, fd))
			fds[n++] = fd;
	}
	closedir(d);
	return n;
}

/*
 * Close them in the process (inf started): closing the last reference ends
 * the tracking and lifts the write protection.  Its memory is dumped whole.
 */
static void drop_stale(struct infect *inf, pid_t pid, const int *fds, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		pr_warn("pid %d: fd %d is a write tracker of a pre-dump that no dump used: "
			"removed\n", pid, fds[i]);
		infect_syscall(inf, __NR_close, fds[i], 0, 0, 0, 0, 0);
	}
}

int incr_drop_stale(struct dtask *dt)
{
	struct infect inf;
	int fds[MAX_STALE], n = stale_trackers(dt->pid, fds), ret;

	if (!n)
		return 0;
	ret = infect_start(&dt->threads[0], &inf);
	if (ret)
		return ret;
	drop_stale(&inf, dt->pid, fds, n);
	return infect_stop(&inf);
}

/* A userfaultfd created inside the process, moved to a high fd it will not use. */
static int make_uffd(struct dtask *dt, struct incr_task *t)
{
	struct dthread *th = &dt->threads[0];
	int stale[MAX_STALE], nstale = stale_trackers(dt->pid, stale);
	struct infect inf;
	long fd, hi = -1, min = tracker_min_fd(dt->pid);
	int ret;

	/* what release_tree() puts back once we are done */
	ret = thread_save_regs(th);
	if (ret)
		return ret;
	ret = infect_start(th, &inf);
	if (ret)
		return ret;
	/* an earlier pre-dump's tracker would keep this one from registering */
	drop_stale(&inf, dt->pid, stale, nstale);
	fd = infect_syscall(&inf, __NR_userfaultfd, O_CLOEXEC | O_NONBLOCK, 0, 0, 0, 0, 0);
	if (fd >= 0) {
		hi = infect_syscall(&inf, __NR_fcntl, fd, F_DUPFD_CLOEXEC, min, 0, 0, 0);
		infect_syscall(&inf, __NR_close, fd, 0, 0, 0, 0, 0);
	}
	ret = infect_stop(&inf);
	if (fd < 0 || hi < 0) {
		pr_err("pid %d: can't create a userfaultfd in it: %s\n", dt->pid,
		       strerror(fd < 0 ? -fd : -hi));
		return fd < 0 ? fd : hi;
	}
	t->uffd = hi;
	return ret;
}

/* Register the memory for write-protect tracking and protect all of it now. */
static int arm_uffd(struct incr_task *t)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};
	int fd = task_fd_dup(t->pid, t->uffd), ret = 0;
	uint32_t i;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api))
		ret = -errno;
	for (i = 0; !ret && i < t->nvmas; i++) {
		struct uffdio_register reg = {
			.range = { t->vmas[i].start, t->vmas[i].end - t->vmas[i].start },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		struct uffdio_writeprotect wp = {
			.range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};

		if (ioctl(fd, UFFDIO_REGISTER, &reg) || ioctl(fd, UFFDIO_WRITEPROTECT, &wp))
			ret = -errno;
	}
	close(fd);
	if (ret)
		pr_err("pid %u: can't track writes to its memory: %s\n", t->pid, strerror(-ret));
	return ret;
}

static int add_page(struct incr_task *t, uint64_t addr, const struct store_ref *ref)
{
	if (t->n == t->cap) {
		uint64_t cap = t->cap ? t->cap * 2 : 4096;
		uint64_t *v = realloc(t->vaddrs, cap * sizeof(*v));
		struct store_ref *r = v ? realloc(t->refs, cap * sizeof(*r)) : NULL;

		if (v)
			t->vaddrs = v;
		if (!r)
			return -ENOMEM;
		t->refs = r;
		t->cap = cap;
	}
	t->vaddrs[t->n] = addr;
	t->refs[t->n++] = *ref;
	return 0;
}

/* Copy n pages from vaddrs while the process runs; gone memory is just skipped. */
static int copy_batch(struct store_writer *sw, struct incr_task *t, const uint64_t *vaddrs,
		      size_t n, char *buf)
{
	struct iovec l = { buf, n * PAGE_SIZE }, r[COPY_PAGES];
	struct store_ref ref;
	size_t i;
	int ret;

	for (i = 0; i < n; i++)
		r[i] = (struct iovec){ (void *)vaddrs[i], PAGE_SIZE };
	if (process_vm_readv(t->pid, &l, 1, r, n, 0) != (ssize_t)(n * PAGE_SIZE))
		return 0;	/* changed under us: the final dump reads it */
	for (i = 0; i < n; i++) {
		ret = store_put_page(sw, buf + i * PAGE_SIZE, &ref);
		if (!ret)
			ret = add_page(t, vaddrs[i], &ref);
		if (ret)
			return ret;
	}
	return 0;
}

#define PME_PRESENT	(1ULL << 63)
#define PME_SWAP	(1ULL << 62)

static int copy_task(struct store_writer *sw, struct incr_task *t)
{
	uint64_t pm[COPY_PAGES], vaddrs[COPY_PAGES];
	char path[64], *buf = malloc(COPY_PAGES * PAGE_SIZE);
	uint32_t i;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/%u/pagemap", t->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return fd < 0 ? -errno : -ENOMEM;
	}
	for (i = 0; !ret && i < t->nvmas; i++) {
		uint64_t addr = t->vmas[i].start;

		while (!ret && addr < t->vmas[i].end) {
			size_t cnt = (t->vmas[i].end - addr) / PAGE_SIZE, k, n = 0;

			if (cnt > COPY_PAGES)
				cnt = COPY_PAGES;
			if (pread_all(fd, pm, cnt * 8, addr / PAGE_SIZE * 8) != (ssize_t)(cnt * 8))
				break;
			for (k = 0; k < cnt; k++)
				if (pm[k] & (PME_PRESENT | PME_SWAP))
					vaddrs[n++] = addr + k * PAGE_SIZE;
			ret = n ? copy_batch(sw, t, vaddrs, n, buf) : 0;
			addr += cnt * PAGE_SIZE;
		}
	}
	close(fd);
	free(buf);
	return ret;
}

static int track_tree(struct dump_ctx *ctx, struct incr_state *s)
{
	size_t i;
	int ret = 0;

	s->tasks = calloc(ctx->nr_tasks + 1, sizeof(*s->tasks));
	if (!s->tasks)
		return -ENOMEM;
	for (i = 0; !ret && i < ctx->nr_tasks; i++) {
		struct incr_task *t;

		if (ctx->tasks[i].zombie)
			continue;
		t = &s->tasks[s->n++];
		t->pid = ctx->tasks[i].pid;
		t->uffd = -1;
		ret = proc_parse_maps(t->pid, collect_anon, t);
		if (!ret && t->nvmas)
			ret = make_uffd(&ctx->tasks[i], t);
		if (!ret && t->nvmas)
			ret = arm_uffd(t);
	}
	return ret;
}

int cr_pre_dump(const struct dump_opts *opts)
{
	struct dump_ctx ctx = { .opts = opts, .dirfd = -1 };
	struct incr_state s = { };
	struct store_writer *sw = NULL;
	struct store *st = NULL;
	char writer[80], path[4200];
	uint64_t gen, pages = 0;
	size_t i;
	int ret;

	if (!opts->store || !opts->job) {
		pr_err("pre-dump needs --store DIR and --job ID\n");
		return -EINVAL;
	}
	snprintf(writer, sizeof(writer), "%s%d.pre", opts->writer ? "" : "tree-", opts->pid);
	if (opts->writer)
		snprintf(writer, sizeof(writer), "%s.pre", opts->writer);
	ret = store_open(opts->store, &st);
	/* a coordinator names the generation every node's pre-dump goes to */
	gen = opts->generation;
	if (!ret && !gen)
		ret = store_next_gen(st, opts->job, &gen);
	if (!ret)
		ret = store_writer_begin(st, opts->job, gen, writer,
					 opts->compress ? STORE_COMPRESS : 0, &sw);
	if (ret)
		goto out;
	snprintf(path, sizeof(path), "%s/%s.map", store_writer_dir(sw), writer);
	ret = freeze_tree(&ctx);
	if (!ret)
		ret = track_tree(&ctx, &s);
	/* from here on the tree runs: its writes are recorded, not lost */
	release_tree(&ctx, false);
	for (i = 0; !ret && i < s.n; i++) {
		ret = copy_task(sw, &s.tasks[i]);
		pages += s.tasks[i].n;
	}
	if (!ret) {
		ret = store_writer_finish(sw);
		sw = NULL;
	}
	if (!ret)
		ret = incr_save(path, &s);
	if (!ret)
		printf("pre-dump for generation %llu: %llu pages copied\n",
		       (unsigned long long)gen, (unsigned long long)pages);
out:
	if (ret)
		pr_err("pre-dump of tree %d failed: %s\n", opts->pid, strerror(-ret));
	if (sw)
		store_writer_abort(sw);
	if (st)
		store_close(st);
	incr_free(&s);
	arena_free(&ctx.arena);
	return ret;
}

/* ------------------------------------------------------------------ final dump */

struct incr_task *incr_find(struct incr_state *s, uint32_t pid)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->tasks[i].pid == pid)
			return &s->tasks[i];
	return NULL;
}

static int scan_written(int pm, struct incr_task *t, const struct incr_range *v)
{
	struct page_region reg[SCAN_REGIONS];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = v->start,
		.end = v->end,
		.vec = (uint64_t)reg,
		.vec_len = SCAN_REGIONS,
		.category_anyof_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};

	while (arg.start < v->end) {
		long n = ioctl(pm, PAGEMAP_SCAN, &arg), i;

		if (n < 0)
			return -errno;
		for (i = 0; i < n; i++) {
			struct incr_range *w = realloc(t->written,
						       (t->nwritten + 1) * sizeof(*w));

			if (!w)
				return -ENOMEM;
			t->written = w;
			t->written[t->nwritten++] = (struct incr_range){ reg[i].start, reg[i].end };
		}
		/* a full vector stops the walk early: go on from where it ended */
		if (arg.walk_end <= arg.start)
			break;
		arg.start = arg.walk_end;
	}
	return 0;
}

static bool is_uffd(uint32_t pid, int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%u/fd/%d", pid, fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = '\0';
	return !strcmp(link, "anon_inode:[userfaultfd]");
}

int incr_prepare_task(struct dump_ctx *ctx, struct dtask *dt)
{
	struct incr_task *t = incr_find(ctx->incr, dt->pid);
	struct infect inf;
	char path[64];
	uint32_t i;
	int pm, ret = 0;

	if (!t || t->uffd < 0)
		return 0;
	if (!is_uffd(t->pid, t->uffd)) {
		/* no tracker (a new process with the same pid?): nothing is known unchanged */
		pr_warn("pid %u: the pre-dump's tracker is gone: dumping all of it\n", t->pid);
		t->n = 0;
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/%u/pagemap", t->pid);
	pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0)
		return -errno;
	for (i = 0; !ret && i < t->nvmas; i++)
		ret = scan_written(pm, t, &t->vmas[i]);
	close(pm);
	if (ret) {
		pr_err("pid %u: can't tell which pages were written: %s\n", t->pid, strerror(-ret));
		return ret;
	}
	/* the tracker goes: the process must not find it, nor the fd dump */
	ret = infect_start(&dt->threads[0], &inf);
	if (!ret) {
		infect_syscall(&inf, __NR_close, t->uffd, 0, 0, 0, 0, 0);
		ret = infect_stop(&inf);
	}
	pr_info("pid %u: %zu ranges written since the pre-dump\n", t->pid, t->nwritten);
	return ret;
}

/* Binary searches: lookups come page by page, but across VMAs in any order. */
static bool in_ranges(const struct incr_range *r, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r[mid].end <= addr)
			lo = mid + 1;
		else if (r[mid].start > addr)
			hi = mid;
		else
			return true;
	}
	return false;
}

const struct store_ref *incr_unchanged(struct incr_task *t, uint64_t addr)
{
	size_t lo = 0, hi = t->n;

	if (!t->n || in_ranges(t->written, t->nwritten, addr))
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->vaddrs[mid] < addr)
			lo = mid + 1;
		else if (t->vaddrs[mid] > addr)
			hi = mid;
		else
			return &t->refs[mid];
	}
	return NULL;
}

bool incr_covers(const struct incr_task *t, uint64_t start, uint64_t end)
{
	uint32_t i;

	for (i = 0; i < t->nvmas; i++)
		if (t->vmas[i].start <= start && end <= t->vmas[i].end)
			return true;
	return false;
}
