/*
 * Memory: the VMA list and the contents of populated pages.
 *
 * Which pages: from /proc/PID/pagemap, those present and anonymous (for a
 * private file mapping: copied on write) or swapped; never the shared zero
 * page, and pages found to be all zeros are dropped after reading too: an
 * absent page reads as zeros after restore anyway.  Shared anonymous memory
 * is read through /proc/PID/map_files, where pages a process never touched
 * still have their contents.
 *
 * How: process_vm_readv() in batches into one of two buffers while a writer
 * thread hashes and writes the other, so copying and writing overlap.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cr-dump.h"
#include "image.h"
#include "log.h"
#include "proc.h"
#include "sysv.h"
#include "util.h"
#include "cr-incr.h"
#include "img-store.h"

#define PME_PRESENT	(1ULL << 63)
#define PME_SWAP	(1ULL << 62)
#define PME_FILE	(1ULL << 61)
#define PME_PFN_MASK	((1ULL << 55) - 1)

#define BUF_PAGES	1024			/* 4 MiB per buffer */
#define BUF_SIZE	(BUF_PAGES * PAGE_SIZE)
#define PM_CHUNK	4096			/* pagemap entries read at once */

#define MAX_SEGS	16384

/*
 * After an incremental pre-dump a buffer mixes pages read now with pages
 * known by their store reference only: then segs says, in order, which.
 */
struct seg {
	uint32_t data_pages;		/* 0: a reference */
	struct store_ref ref;
};

struct pbuf {
	char *data;
	size_t len;
	bool full;
	struct seg *segs;
	size_t nsegs;
};

struct pages_out {
	struct img_pages_writer w;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pbuf buf[2];
	int cur;
	int err;			/* first write error */
	bool done;
	struct arena *a;
	Crd__TaskEntry *te;
	size_t cap_runs;
};

static int write_buf(struct img_pages_writer *w, const struct pbuf *b)
{
	const char *p = b->data;
	size_t i;
	int ret = 0;

	if (!b->nsegs)
		return img_pages_write(w, b->data, b->len);
	for (i = 0; !ret && i < b->nsegs; i++) {
		if (!b->segs[i].data_pages) {
			ret = img_refs_put_ref(w, &b->segs[i].ref);
			continue;
		}
		ret = img_pages_write(w, p, b->segs[i].data_pages * PAGE_SIZE);
		p += b->segs[i].data_pages * PAGE_SIZE;
	}
	return ret;
}

static void *writer_fn(void *arg)
{
	struct pages_out *po = arg;
	int i = 0;

	pthread_mutex_lock(&po->lock);
	for (;;) {
		while (!po->buf[i].full && !po->done)
			pthread_cond_wait(&po->cond, &po->lock);
		if (!po->buf[i].full)
			break;
		pthread_mutex_unlock(&po->lock);
		if (!po->err) {
			int ret = write_buf(&po->w, &po->buf[i]);

			if (ret)
				po->err = ret;
		}
		pthread_mutex_lock(&po->lock);
		po->buf[i].full = false;
		po->buf[i].len = 0;
		po->buf[i].nsegs = 0;
		pthread_cond_broadcast(&po->cond);
		i ^= 1;
	}
	pthread_mutex_unlock(&po->lock);
	return NULL;
}

/* Hand the current buffer to the writer and wait until the other one is free. */
static int out_flush(struct pages_out *po)
{
	if (!po->buf[po->cur].len && !po->buf[po->cur].nsegs)
		return po->err;
	pthread_mutex_lock(&po->lock);
	po->buf[po->cur].full = true;
	pthread_cond_broadcast(&po->cond);
	po->cur ^= 1;
	while (po->buf[po->cur].full)
		pthread_cond_wait(&po->cond, &po->lock);
	pthread_mutex_unlock(&po->lock);
	return po->err;
}

/*
 * Hand the current buffer to the writer and wait until it wrote both: a
 * store writer (--store) is shared by every image of the dump and is not
 * thread-safe, so nothing else may put pages into it while ours runs.
 */
static int out_drain(struct pages_out *po)
{
	int ret = out_flush(po);

	pthread_mutex_lock(&po->lock);
	while (po->buf[0].full || po->buf[1].full)
		pthread_cond_wait(&po->cond, &po->lock);
	pthread_mutex_unlock(&po->lock);
	return ret ? ret : po->err;
}

static bool page_is_zero(const char *p)
{
	const uint64_t *q = (const uint64_t *)p;
	size_t i;

	for (i = 0; i < PAGE_SIZE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

/* Append the page at addr to a list of runs, extending the last run if it can. */
static int run_append(struct arena *a, Crd__PageRun ***runs, size_t *n, size_t *cap,
		      uint64_t addr)
{
	Crd__PageRun *r = *n ? (*runs)[*n - 1] : NULL;

	if (r && r->vaddr + r->nr_pages * PAGE_SIZE == addr) {
		r->nr_pages++;
		return 0;
	}
	r = arena_alloc(a, sizeof(*r));
	if (!r || arena_grow(a, (void **)runs, cap, *n + 1, sizeof(**runs)))
		return -ENOMEM;
	crd__page_run__init(r);
	r->vaddr = addr;
	r->nr_pages = 1;
	(*runs)[(*n)++] = r;
	return 0;
}

static int add_page(struct pages_out *po, uint64_t vaddr)
{
	return run_append(po->a, &po->te->pages, &po->te->n_pages, &po->cap_runs, vaddr);
}

/*
 * npages pages were read to the free space of the current buffer, the i-th
 * from vaddrs[i]: keep the non-zero ones, packed.
 */
static int out_commit(struct pages_out *po, const uint64_t *vaddrs, size_t npages)
{
	struct pbuf *b = &po->buf[po->cur];
	char *src = b->data + b->len;
	size_t i;

	for (i = 0; i < npages; i++, src += PAGE_SIZE) {
		char *dst = b->data + b->len;

		if (page_is_zero(src))
			continue;
		if (dst != src)
			memcpy(dst, src, PAGE_SIZE);
		if (add_page(po, vaddrs[i]))
			return -ENOMEM;
		b->len += PAGE_SIZE;
		if (b->nsegs && b->segs[b->nsegs - 1].data_pages)
			b->segs[b->nsegs - 1].data_pages++;
		else if (b->nsegs)
			b->segs[b->nsegs++] = (struct seg){ .data_pages = 1 };
		po->te->pages_size += PAGE_SIZE;
	}
	return 0;
}

static size_t out_room(struct pages_out *po)
{
	return (BUF_SIZE - po->buf[po->cur].len) / PAGE_SIZE;
}

/* A page the pre-dump copied and nobody wrote since: its reference only. */
static int out_ref(struct pages_out *po, uint64_t vaddr, const struct store_ref *ref)
{
	struct pbuf *b = &po->buf[po->cur];
	int ret;

	if (!ref->lo && !ref->hi)
		return 0;	/* a zero page, like those skipped below */
	if (b->nsegs + 2 >= MAX_SEGS) {
		ret = out_flush(po);
		if (ret)
			return ret;
		b = &po->buf[po->cur];
	}
	/* the pages already in the buffer become the first segment */
	if (!b->nsegs && b->len)
		b->segs[b->nsegs++] = (struct seg){ .data_pages = b->len / PAGE_SIZE };
	b->segs[b->nsegs++] = (struct seg){ .ref = *ref };
	po->te->pages_size += PAGE_SIZE;
	return add_page(po, vaddr);
}

struct mem_reader {
	pid_t pid;
	int pagemap_fd;
	int mem_fd;
	uint64_t zero_pfn;
	uint64_t vaddrs[BUF_PAGES];
	struct iovec riov[BUF_PAGES];
	uint64_t pm[PM_CHUNK];
};

/* Read the pages listed in vaddrs[0..n) into the current buffer and commit them. */
static int read_batch(struct pages_out *po, struct mem_reader *mr, size_t n, bool readable)
{
	char *dst = po->buf[po->cur].data + po->buf[po->cur].len;
	size_t i, niov = 0;
	struct iovec l = { dst, n * PAGE_SIZE };
	ssize_t got;

	if (!n)
		return 0;
	for (i = 0; i < n; i++) {
		if (niov && (uint64_t)mr->riov[niov - 1].iov_base + mr->riov[niov - 1].iov_len ==
			    mr->vaddrs[i]) {
			mr->riov[niov - 1].iov_len += PAGE_SIZE;
			continue;
		}
		mr->riov[niov].iov_base = (void *)mr->vaddrs[i];
		mr->riov[niov++].iov_len = PAGE_SIZE;
	}
	if (readable) {
		got = process_vm_readv(mr->pid, &l, 1, mr->riov, niov, 0);
	} else {
		/* PROT_NONE & co: /proc/PID/mem reads them (FOLL_FORCE) */
		char *p = dst;

		got = 0;
		for (i = 0; i < niov; i++) {
			ssize_t r = pread_all(mr->mem_fd, p, mr->riov[i].iov_len,
					      (off_t)mr->riov[i].iov_base);

			if (r != (ssize_t)mr->riov[i].iov_len) {
				got = -1;
				break;
			}
			p += r;
			got += r;
		}
	}
	if (got != (ssize_t)(n * PAGE_SIZE)) {
		pr_err("pid %d: can't read memory at %#lx (%zu pages): %s\n", mr->pid,
		       mr->vaddrs[0], n, got < 0 ? strerror(errno) : "short read");
		return -EIO;
	}
	return out_commit(po, mr->vaddrs, n);
}

static int dump_private_vma(struct pages_out *po, struct mem_reader *mr, Crd__VmaEntry *v,
			    struct incr_task *it)
{
	uint64_t *pm = mr->pm;
	bool readable = v->prot & PROT_READ;
	uint64_t addr = v->start;
	size_t n = 0;
	int ret;

	while (addr < v->end) {
		size_t cnt = (v->end - addr) / PAGE_SIZE, i;
		ssize_t r;

		if (cnt > PM_CHUNK)
			cnt = PM_CHUNK;
		r = pread_all(mr->pagemap_fd, pm, cnt * 8, addr / PAGE_SIZE * 8);
		if (r != (ssize_t)(cnt * 8)) {
			pr_err("pid %d: can't read pagemap at %#lx\n", mr->pid, addr);
			return -EIO;
		}
		for (i = 0; i < cnt; i++, addr += PAGE_SIZE) {
			const struct store_ref *ref = it ? incr_unchanged(it, addr) : NULL;
			uint64_t e = pm[i];

			if (ref) {
				/* the pages before it go first: the order is the image's */
				ret = read_batch(po, mr, n, readable);
				n = 0;
				if (!ret && !out_room(po))
					ret = out_flush(po);
				if (!ret)
					ret = out_ref(po, addr, ref);
				if (ret)
					return ret;
				continue;
			}
			if (!(e & PME_SWAP) &&
			    (!(e & PME_PRESENT) || (e & PME_FILE) ||
			     (e & PME_PFN_MASK) == mr->zero_pfn))
				continue;
			mr->vaddrs[n++] = addr;
			if (n == out_room(po)) {
				ret = read_batch(po, mr, n, readable);
				if (!ret)
					ret = out_flush(po);
				if (ret)
					return ret;
				n = 0;
			}
		}
	}
	return read_batch(po, mr, n, readable);
}

static Crd__ShmemEntry *find_shmem(struct dump_ctx *ctx, uint64_t id)
{
	size_t i;

	for (i = 0; i < ctx->nr_shmems; i++)
		if (ctx->shmems[i]->id == id)
			return ctx->shmems[i];
	return NULL;
}

/* Copy the non-zero pages of the object behind fd into w, noting them in e. */
static int copy_shmem(struct dump_ctx *ctx, int fd, Crd__ShmemEntry *e,
		      struct img_pages_writer *w, char *buf)
{
	size_t cap = 0;
	uint64_t off;
	int ret = 0;

	for (off = 0; !ret && off < e->size; off += BUF_SIZE) {
		size_t len = e->size - off < BUF_SIZE ? e->size - off : BUF_SIZE, i;
		ssize_t r = pread_all(fd, buf, len, off);

		if (r < (ssize_t)len) {
			pr_err("shared memory %s: short read at %lu\n", e->name, off);
			return -EIO;
		}
		/* a last partial page is stored whole, zero-padded */
		memset(buf + len, 0, PAGE_ALIGN(len) - len);
		for (i = 0; !ret && i < len; i += PAGE_SIZE) {
			if (page_is_zero(buf + i))
				continue;
			ret = run_append(&ctx->arena, &e->pages, &e->n_pages, &cap, off + i);
			if (!ret)
				ret = img_pages_write(w, buf + i, PAGE_SIZE);
		}
	}
	return ret;
}

/*
 * A shared memory object without a path (shared anonymous memory, memfd,
 * deleted file), open at fd: its contents go to shmem-ID.img once, whoever
 * maps it or holds it open.
 */
int dump_shmem_fd(struct dump_ctx *ctx, int fd, uint64_t id, const char *what)
{
	struct img_pages_writer w;
	Crd__ShmemEntry *e;
	char name[64], *buf;
	struct stat st;
	int ret;

	if (find_shmem(ctx, id))
		return 0;
	if (fstat(fd, &st)) {
		ret = -errno;
		pr_perror("%s: can't stat it", what);
		return ret;
	}
	e = arena_alloc(&ctx->arena, sizeof(*e));
	buf = malloc(BUF_SIZE);
	if (!e || !buf || arena_grow(&ctx->arena, (void **)&ctx->shmems, &ctx->cap_shmems,
				     ctx->nr_shmems + 1, sizeof(*ctx->shmems))) {
		free(buf);
		return -ENOMEM;
	}
	crd__shmem_entry__init(e);
	e->id = id;
	e->size = st.st_size;
	e->name = arena_strdup(&ctx->arena, what);
	img_shmem_name(name, sizeof(name), e->id);
	ret = e->name ? img_pages_create_sw(ctx->dirfd, name, ctx->sw, &w) : -ENOMEM;
	if (!ret) {
		ret = copy_shmem(ctx, fd, e, &w, buf);
		if (!ret)
			ret = img_pages_finish(&w);
		else
			img_pages_abort(&w);
	}
	free(buf);
	if (!ret)
		ctx->shmems[ctx->nr_shmems++] = e;
	return ret;
}

static int dump_shmem(struct dump_ctx *ctx, pid_t pid, const Crd__VmaEntry *v)
{
	char path[96];
	int fd, ret;

	if (find_shmem(ctx, v->shmid))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", pid, v->start, v->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_perror("pid %d: can't open the shared memory mapped at %#lx", pid, v->start);
		return ret;
	}
	ret = dump_shmem_fd(ctx, fd, v->shmid, v->path ? v->path : "shared anonymous memory");
	close(fd);
	return ret;
}

struct vma_collect {
	struct dump_ctx *ctx;
	Crd__TaskEntry *te;
	size_t cap;
	int err;
};

static int classify_vma(struct vma_collect *vc, const struct proc_vma *pv, Crd__VmaEntry *v)
{
	static const struct {
		const char *name;
		Crd__VmaKind kind;
	} special[] = {
		{ "[heap]", CRD__VMA_KIND__VMA_HEAP },
		{ "[stack]", CRD__VMA_KIND__VMA_STACK },
		{ "[vvar]", CRD__VMA_KIND__VMA_VVAR },
		{ "[vvar_vclock]", CRD__VMA_KIND__VMA_VVAR_VCLOCK },
		{ "[vdso]", CRD__VMA_KIND__VMA_VDSO },
		{ "[vsyscall]", CRD__VMA_KIND__VMA_VSYSCALL },
	};
	pid_t pid = vc->te->pid;
	char path[96];
	struct stat st;
	size_t i;

	v->flags = pv->shared ? MAP_SHARED : MAP_PRIVATE;
	for (i = 0; i < ARRAY_SIZE(special); i++)
		if (!strcmp(pv->path, special[i].name)) {
			v->kind = special[i].kind;
			v->flags |= MAP_ANONYMOUS;
			if (v->kind == CRD__VMA_KIND__VMA_STACK)
				v->flags |= MAP_GROWSDOWN;
			return 0;
		}
	if (pv->path[0] == '[') {
		pr_err("pid %d: unsupported mapping %s at %#lx\n", pid, pv->path, pv->start);
		return -ENOTSUP;
	}
	if (!pv->path[0]) {
		v->flags |= MAP_ANONYMOUS;
		v->kind = CRD__VMA_KIND__VMA_ANON_PRIVATE;
		return 0;
	}
	if (!strncmp(pv->path, "/SYSV", 5)) {
		/* attached with shmat(): the inode number is the segment's id */
		if (pv->pgoff) {
			pr_err("pid %d: System V segment %lu attached in part at %#lx: not "
			       "supported yet\n", pid, pv->ino, pv->start);
			return -ENOTSUP;
		}
		v->kind = CRD__VMA_KIND__VMA_SYSV_SHM;
		v->flags = MAP_SHARED;
		v->has_shmid = v->has_pgoff = true;
		v->shmid = pv->ino;
		v->path = arena_strdup(&vc->ctx->arena, pv->path);
		return sysv_collect(vc->ctx, pv->ino);
	}
	if (pv->deleted || !strncmp(pv->path, "/memfd:", 7)) {
		/* no path leads to it: its contents go into the image (dump_shmem) */
		v->has_shmid = v->has_pgoff = true;
		v->shmid = pv->ino;
		v->pgoff = pv->pgoff;
		v->path = arena_strdup(&vc->ctx->arena, pv->path);
		if (pv->shared && !strcmp(pv->path, "/dev/zero")) {
			v->flags |= MAP_ANONYMOUS;
			v->kind = CRD__VMA_KIND__VMA_ANON_SHARED;
		} else {
			v->kind = pv->shared ? CRD__VMA_KIND__VMA_FILE_SHARED
					     : CRD__VMA_KIND__VMA_FILE_PRIVATE;
		}
		return v->path ? 0 : -ENOMEM;
	}
	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", pid, pv->start, pv->end);
	if (stat(path, &st)) {
		int ret = -errno;

		pr_perror("pid %d: can't stat the file mapped at %#lx (%s)", pid, pv->start,
			  pv->path);
		return ret;
	}
	v->kind = pv->shared ? CRD__VMA_KIND__VMA_FILE_SHARED : CRD__VMA_KIND__VMA_FILE_PRIVATE;
	v->path = arena_strdup(&vc->ctx->arena, pv->path);
	v->has_pgoff = v->has_dev = v->has_ino = v->has_file_size = v->has_open_flags = true;
	v->pgoff = pv->pgoff;
	v->dev = st.st_dev;
	v->ino = st.st_ino;
	v->file_size = st.st_size;
	v->open_flags = (pv->shared && (pv->prot & PROT_WRITE)) ? O_RDWR : O_RDONLY;
	return v->path ? 0 : -ENOMEM;
}

static int collect_vma(const struct proc_vma *pv, void *arg)
{
	struct vma_collect *vc = arg;
	Crd__TaskEntry *te = vc->te;
	Crd__VmaEntry *v;

	v = arena_alloc(&vc->ctx->arena, sizeof(*v));
	if (!v || arena_grow(&vc->ctx->arena, (void **)&te->vmas, &vc->cap, te->n_vmas + 1,
			     sizeof(*te->vmas)))
		return -ENOMEM;
	crd__vma_entry__init(v);
	v->start = pv->start;
	v->end = pv->end;
	v->prot = pv->prot;
	vc->err = classify_vma(vc, pv, v);
	if (vc->err)
		return vc->err;
	te->vmas[te->n_vmas++] = v;
	return 0;
}

static bool vma_has_pages(const Crd__VmaEntry *v)
{
	switch (v->kind) {
	case CRD__VMA_KIND__VMA_VVAR:
	case CRD__VMA_KIND__VMA_VVAR_VCLOCK:
	case CRD__VMA_KIND__VMA_VDSO:
	case CRD__VMA_KIND__VMA_VSYSCALL:
	case CRD__VMA_KIND__VMA_FILE_SHARED:
	case CRD__VMA_KIND__VMA_ANON_SHARED:
	case CRD__VMA_KIND__VMA_SYSV_SHM:
		return false;
	default:
		return true;
	}
}

static int open_proc(pid_t pid, const char *name)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;

		pr_perror("pid %d: can't open %s", pid, path);
		return ret;
	}
	return fd;
}

static int write_pages(struct dump_ctx *ctx, struct dtask *t, struct pages_out *po)
{
	Crd__TaskEntry *te = t->te;
	struct mem_reader *mr;
	size_t i;
	int ret = 0;

	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	mr->pid = t->pid;
	mr->zero_pfn = ctx->zero_pfn;
	mr->pagemap_fd = open_proc(t->pid, "pagemap");
	mr->mem_fd = open_proc(t->pid, "mem");
	if (mr->pagemap_fd < 0 || mr->mem_fd < 0)
		ret = -EIO;
	for (i = 0; !ret && i < te->n_vmas; i++) {
		Crd__VmaEntry *v = te->vmas[i];

		/* shared memory goes to an image of its own, through the same store writer */
		if (v->has_shmid && !find_shmem(ctx, v->shmid))
			ret = out_drain(po);
		if (!ret && v->has_shmid)
			ret = dump_shmem(ctx, t->pid, v);
		if (!ret && vma_has_pages(v)) {
			struct incr_task *it = ctx->incr ? incr_find(ctx->incr, t->pid) : NULL;

			if (it && !incr_covers(it, v->start, v->end))
				it = NULL;
			ret = dump_private_vma(po, mr, v, it);
		}
	}
	if (!ret)
		ret = out_flush(po);
	if (mr->pagemap_fd >= 0)
		close(mr->pagemap_fd);
	if (mr->mem_fd >= 0)
		close(mr->mem_fd);
	free(mr);
	return ret;
}

int dump_task_mem(struct dump_ctx *ctx, struct dtask *t)
{
	struct vma_collect vc = { .ctx = ctx, .te = t->te };
	struct pages_out *po;
	char name[64];
	int ret, i;

	ret = proc_parse_maps(t->pid, collect_vma, &vc);
	if (ret) {
		if (!vc.err)
			pr_err("pid %d: can't read its maps: %s\n", t->pid, strerror(-ret));
		return ret;
	}
	po = calloc(1, sizeof(*po));
	if (!po)
		return -ENOMEM;
	po->a = &ctx->arena;
	po->te = t->te;
	pthread_mutex_init(&po->lock, NULL);
	pthread_cond_init(&po->cond, NULL);
	for (i = 0; i < 2; i++) {
		po->buf[i].data = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (po->buf[i].data == MAP_FAILED) {
			po->buf[i].data = NULL;
			ret = -ENOMEM;
		}
		if (ctx->incr && !(po->buf[i].segs = calloc(MAX_SEGS, sizeof(struct seg))))
			ret = -ENOMEM;
	}
	img_pages_name(name, sizeof(name), t->pid);
	if (!ret)
		ret = img_pages_create_sw(ctx->dirfd, name, ctx->sw, &po->w);
	if (ret)
		goto out;
	if (pthread_create(&po->thread, NULL, writer_fn, po)) {
		img_pages_abort(&po->w);
		ret = -EAGAIN;
		goto out;
	}
	ret = write_pages(ctx, t, po);
	pthread_mutex_lock(&po->lock);
	po->done = true;
	pthread_cond_broadcast(&po->cond);
	pthread_mutex_unlock(&po->lock);
	pthread_join(po->thread, NULL);
	if (!ret)
		ret = po->err;
	if (!ret)
		ret = img_pages_finish(&po->w);
	else
		img_pages_abort(&po->w);
out:
	for (i = 0; i < 2; i++) {
		if (po->buf[i].data)
			munmap(po->buf[i].data, BUF_SIZE);
		free(po->buf[i].segs);
	}
	free(po);
	return ret;
}
