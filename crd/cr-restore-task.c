/*
 * In each restored process, before the restorer blob: the state that plain
 * syscalls restore from crd's own code (cwd, umask, personality, sigactions,
 * itimers), then the blob's region: its code, its arguments, and a prebuilt
 * rt_sigframe per thread, at an address free both here and in the dumped
 * address space.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "cr-restore.h"
#include "files.h"
#include "image.h"
#include "log.h"
#include "rst.h"
#include "util.h"

#define FP_XSTATE_MAGIC1	0x46505853U
#define FP_XSTATE_MAGIC2	0x46505845U
#define UC_FP_XSTATE		0x1
#define UC_SIGCONTEXT_SS	0x2
#define UC_STRICT_RESTORE_SS	0x4
#define RSEQ_FLAG_UNREGISTER	1
#define RSEQ_SIG_GLIBC		0x53053053
#define TASK_TOP		0x7ffffffff000UL
#define ALIGN(x, a)		(((x) + (a) - 1) & ~((uint64_t)(a) - 1))

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

struct layout {
	uint64_t size;
	uint64_t args, vmas, runs, threads, timers, sigs, rlimits, auxv, tsigs, tarea;
};

static bool vma_is_special(const Crd__VmaEntry *v)
{
	return v->kind == CRD__VMA_KIND__VMA_VVAR || v->kind == CRD__VMA_KIND__VMA_VVAR_VCLOCK ||
	       v->kind == CRD__VMA_KIND__VMA_VDSO || v->kind == CRD__VMA_KIND__VMA_VSYSCALL;
}

static void plan_layout(const Crd__TaskEntry *te, struct layout *l)
{
	size_t i, tsigs = 0;

	for (i = 0; i < te->n_threads; i++)
		tsigs += te->threads[i]->n_pending;
	l->args = ALIGN(restorer_blob_size, PAGE_SIZE);
	l->vmas = ALIGN(l->args + sizeof(struct rst_args), 64);
	l->runs = l->vmas + te->n_vmas * sizeof(struct rst_vma);
	l->threads = ALIGN(l->runs + te->n_pages * sizeof(struct rst_run), 64);
	l->timers = l->threads + te->n_threads * sizeof(struct rst_thread);
	l->sigs = ALIGN(l->timers + te->n_timers * sizeof(struct rst_timer), 64);
	l->tsigs = l->sigs + te->n_shared_pending * 128;
	l->rlimits = l->tsigs + tsigs * 128;
	l->auxv = ALIGN(l->rlimits + te->n_rlimits * sizeof(struct rst_rlimit), 64);
	l->tarea = ALIGN(l->auxv + te->mm->n_auxv * 8, PAGE_SIZE);
	l->size = l->tarea + te->n_threads * (RST_STACK_SIZE + RST_FRAME_SIZE);
}

/* A place for size bytes that overlaps no dumped VMA and nothing mapped here. */
static void *place_region(const Crd__TaskEntry *te, uint64_t size)
{
	uint64_t lo = 0x100000, hi;
	size_t i;

	for (i = 0; i <= te->n_vmas; i++) {
		void *p;

		hi = i < te->n_vmas ? te->vmas[i]->start : TASK_TOP;
		if (i < te->n_vmas && te->vmas[i]->kind == CRD__VMA_KIND__VMA_VSYSCALL)
			hi = TASK_TOP;
		/* a guard page on both sides keeps it apart from its neighbours */
		if (hi > lo && hi - lo >= size + 2 * PAGE_SIZE) {
			p = mmap((void *)(hi - size - PAGE_SIZE), size,
				 PROT_READ | PROT_WRITE | PROT_EXEC,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (p != MAP_FAILED)
				return p;
			p = mmap((void *)(lo + PAGE_SIZE), size, PROT_READ | PROT_WRITE | PROT_EXEC,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			if (p != MAP_FAILED)
				return p;
		}
		if (i < te->n_vmas && te->vmas[i]->end > lo)
			lo = te->vmas[i]->end;
	}
	return NULL;
}

static int place_fd(struct restore_ctx *ctx, int fd)
{
	int nfd;

	if (fd < 0)
		return fd;
	nfd = fcntl(fd, F_DUPFD, ctx->fd_free);
	close(fd);
	if (nfd >= 0)
		ctx->fd_free = nfd + 1;
	return nfd;
}

static int open_vma_file(struct restore_ctx *ctx, const Crd__TaskEntry *te,
			 const Crd__VmaEntry *v, size_t idx, int *fds)
{
	struct stat st;
	size_t i;
	int fd;

	/* one fd per file: VMAs of one file share it */
	for (i = 0; i < idx; i++)
		if (fds[i] >= 0 && te->vmas[i]->path && !strcmp(te->vmas[i]->path, v->path) &&
		    te->vmas[i]->open_flags == v->open_flags)
			return fds[i];
	fd = open(v->path, v->open_flags | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;

		pr_perror("pid %u: can't open %s mapped at %#lx", te->pid, v->path, v->start);
		return ret;
	}
	if (!fstat(fd, &st) && v->has_file_size && (uint64_t)st.st_size != v->file_size)
		pr_warn("pid %u: %s mapped at %#lx changed size since the dump (%llu -> %lld)\n",
			te->pid, v->path, v->start, (unsigned long long)v->file_size,
			(long long)st.st_size);
	return place_fd(ctx, fd);
}

static int fill_vmas(struct restore_ctx *ctx, const Crd__TaskEntry *te, char *base,
		     const struct layout *l, struct rst_args *a)
{
	struct rst_vma *rv = (struct rst_vma *)(base + l->vmas);
	struct rst_run *rr = (struct rst_run *)(base + l->runs);
	int *fds = calloc(te->n_vmas + 1, sizeof(int));
	uint64_t off = IMG_PAGES_DATA_OFF;
	size_t i, r = 0;

	if (!fds)
		return -ENOMEM;
	for (i = 0; i < te->n_pages; i++, rr++) {
		rr->vaddr = te->pages[i]->vaddr;
		rr->len = te->pages[i]->nr_pages * PAGE_SIZE;
		rr->off = off;
		off += rr->len;
	}
	a->n_runs = te->n_pages;
	rr = (struct rst_run *)(base + l->runs);
	for (i = 0; i < te->n_vmas; i++) {
		const Crd__VmaEntry *v = te->vmas[i];

		fds[i] = -1;
		if (vma_is_special(v))
			continue;
		rv->flags = v->flags;
		if (v->kind == CRD__VMA_KIND__VMA_SYSV_SHM) {
			rv->sysv = 1;
			rv->sysv_id = v->shmid;
			rv->fd = -1;
		} else if (v->has_shmid) {
			/* the object's memfd, shared with every other mapper */
			rv->fd = shmem_fd(ctx, v->shmid);
			rv->flags &= ~MAP_ANONYMOUS;
			if (rv->fd < 0) {
				pr_err("pid %u: shared memory %lu at %#lx is missing from the "
				       "inventory\n", te->pid, v->shmid, v->start);
				free(fds);
				return -EINVAL;
			}
		} else if (v->kind == CRD__VMA_KIND__VMA_FILE_PRIVATE ||
		    v->kind == CRD__VMA_KIND__VMA_FILE_SHARED) {
			fds[i] = open_vma_file(ctx, te, v, i, fds);
			if (fds[i] < 0) {
				int ret = fds[i];

				free(fds);
				return ret;
			}
		}
		rv->start = v->start;
		rv->end = v->end;
		rv->prot = v->prot;
		if (!v->has_shmid)
			rv->fd = fds[i];
		rv->pgoff = v->has_pgoff && rv->fd >= 0 ? v->pgoff : 0;
		/* runs are sorted like the VMAs: does one fall into this VMA? */
		while (r < a->n_runs && rr[r].vaddr < v->start)
			r++;
		rv->fill = r < a->n_runs && rr[r].vaddr < v->end;
		rv++;
		a->n_vmas++;
	}
	free(fds);
	return 0;
}

static uint64_t vdso_start(const Crd__TaskEntry *te)
{
	size_t i;

	for (i = 0; i < te->n_vmas; i++)
		if (te->vmas[i]->kind == CRD__VMA_KIND__VMA_VVAR)
			return te->vmas[i]->start;
	for (i = 0; i < te->n_vmas; i++)
		if (te->vmas[i]->kind == CRD__VMA_KIND__VMA_VDSO)
			return te->vmas[i]->start;
	return 0;
}

static void fill_creds(struct rst_creds *c, const Crd__Creds *e)
{
	size_t i;

	c->uid = e->uid; c->euid = e->euid; c->suid = e->suid; c->fsuid = e->fsuid;
	c->gid = e->gid; c->egid = e->egid; c->sgid = e->sgid; c->fsgid = e->fsgid;
	c->ngroups = e->n_groups < RST_MAX_GROUPS ? e->n_groups : RST_MAX_GROUPS;
	for (i = 0; i < c->ngroups; i++)
		c->groups[i] = e->groups[i];
	c->cap_inh = e->cap_inh; c->cap_prm = e->cap_prm; c->cap_eff = e->cap_eff;
	c->cap_bnd = e->cap_bnd; c->cap_amb = e->cap_amb;
	c->securebits = e->securebits;
	c->no_new_privs = e->no_new_privs;
}

static int build_frame(const Crd__ThreadEntry *e, char *area)
{
	struct rst_sigframe *f = (struct rst_sigframe *)area;
	struct rst_sigcontext *sc = &f->uc.uc_mcontext;
	const Crd__X86Regs *r = e->regs;
	uint8_t *fp = (uint8_t *)ALIGN((uint64_t)(f + 1), 64);
	uint32_t *sw;

	if (e->xsave.len < 576 || (uint8_t *)fp + e->xsave.len + 4 > (uint8_t *)area + RST_FRAME_SIZE) {
		pr_err("tid %u: xsave area of %zu bytes is not usable\n", e->tid, e->xsave.len);
		return -EINVAL;
	}
	memset(f, 0, sizeof(*f));
	f->uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
	if (e->has_altstack_sp) {
		f->uc.ss_sp = e->altstack_sp;
		f->uc.ss_size = e->altstack_size;
		f->uc.ss_flags = e->altstack_flags;
	} else {
		f->uc.ss_flags = SS_DISABLE;
	}
	sc->r8 = r->r8; sc->r9 = r->r9; sc->r10 = r->r10; sc->r11 = r->r11;
	sc->r12 = r->r12; sc->r13 = r->r13; sc->r14 = r->r14; sc->r15 = r->r15;
	sc->rdi = r->rdi; sc->rsi = r->rsi; sc->rbp = r->rbp; sc->rbx = r->rbx;
	sc->rdx = r->rdx; sc->rax = r->rax; sc->rcx = r->rcx; sc->rsp = r->rsp;
	sc->rip = r->rip; sc->eflags = r->eflags;
	sc->cs = r->cs; sc->ss = r->ss;
	sc->fpstate = (uint64_t)fp;
	f->uc.uc_sigmask = e->blocked;
	memcpy(fp, e->xsave.data, e->xsave.len);
	/* the software-reserved bytes tell rt_sigreturn an xsave area follows */
	sw = (uint32_t *)(fp + 464);
	sw[0] = FP_XSTATE_MAGIC1;
	sw[1] = e->xsave.len + 4;
	if (!*(uint64_t *)(fp + 472))
		*(uint64_t *)(fp + 472) = *(uint64_t *)(fp + 512);	/* xstate_bv */
	sw[4] = e->xsave.len;
	*(uint32_t *)(fp + e->xsave.len) = FP_XSTATE_MAGIC2;
	return 0;
}

static int fill_threads(const Crd__TaskEntry *te, char *base, const struct layout *l,
			struct rst_args *a)
{
	struct rst_thread *t = (struct rst_thread *)(base + l->threads);
	uint8_t *sig = (uint8_t *)base + l->tsigs;
	size_t i, j;
	int ret;

	for (i = 0; i < te->n_threads; i++, t++) {
		const Crd__ThreadEntry *e = te->threads[i];
		char *area = base + l->tarea + i * (RST_STACK_SIZE + RST_FRAME_SIZE);

		t->tid = e->tid;
		t->sigs = (uint64_t)sig;
		for (j = 0; j < e->n_pending; j++, sig += 128)
			memcpy(sig, e->pending[j]->raw.data,
			       e->pending[j]->raw.len < 128 ? e->pending[j]->raw.len : 128);
		t->n_sigs = e->n_pending;
		t->fs_base = e->regs->fs_base;
		t->gs_base = e->regs->gs_base;
		if (e->has_rseq_addr && e->rseq_addr) {
			t->rseq_addr = e->rseq_addr;
			t->rseq_len = e->rseq_len;
			t->rseq_sig = e->rseq_sig;
		}
		t->clear_tid = e->has_clear_child_tid ? e->clear_child_tid : 0;
		t->stack_top = (uint64_t)area + RST_STACK_SIZE;
		t->frame = t->stack_top;
		snprintf(t->comm, sizeof(t->comm), "%s", e->comm);
		fill_creds(&t->creds, e->creds);
		ret = build_frame(e, (char *)t->frame);
		if (ret)
			return ret;
	}
	a->n_threads = te->n_threads;
	return 0;
}

static void fill_misc(const Crd__TaskEntry *te, char *base, const struct layout *l,
		      struct rst_args *a)
{
	struct rst_timer *tm = (struct rst_timer *)(base + l->timers);
	struct rst_rlimit *rl = (struct rst_rlimit *)(base + l->rlimits);
	const Crd__MmEntry *mm = te->mm;
	size_t i;

	for (i = 0; i < te->n_timers; i++, tm++) {
		const Crd__PosixTimer *t = te->timers[i];

		tm->id = t->id;
		tm->clock = t->clock_id;
		tm->notify = t->notify;
		tm->signo = t->signo;
		tm->notify_tid = t->has_notify_tid ? t->notify_tid : 0;
		tm->sigval = t->sigval;
		tm->interval_sec = t->interval_ns / 1000000000;
		tm->interval_nsec = t->interval_ns % 1000000000;
		tm->value_sec = t->value_ns / 1000000000;
		tm->value_nsec = t->value_ns % 1000000000;
	}
	a->n_timers = te->n_timers;
	for (i = 0; i < te->n_shared_pending; i++)
		memcpy(base + l->sigs + i * 128, te->shared_pending[i]->raw.data,
		       te->shared_pending[i]->raw.len < 128 ? te->shared_pending[i]->raw.len : 128);
	a->n_sigs = te->n_shared_pending;
	for (i = 0; i < te->n_rlimits; i++, rl++) {
		rl->resource = te->rlimits[i]->resource;
		rl->cur = te->rlimits[i]->cur;
		rl->max = te->rlimits[i]->max;
	}
	a->n_rlimits = te->n_rlimits;
	memcpy(base + l->auxv, mm->auxv, mm->n_auxv * 8);
	a->mm = (struct rst_mm_map) {
		.start_code = mm->start_code, .end_code = mm->end_code,
		.start_data = mm->start_data, .end_data = mm->end_data,
		.start_brk = mm->start_brk, .brk = mm->brk, .start_stack = mm->start_stack,
		.arg_start = mm->arg_start, .arg_end = mm->arg_end,
		.env_start = mm->env_start, .env_end = mm->env_end,
		.auxv = (uint64_t)(base + l->auxv), .auxv_size = mm->n_auxv * 8,
	};
}

/* Process-wide state restored with ordinary syscalls, signals still blocked. */
static int restore_plain_state(const Crd__TaskEntry *te)
{
	size_t i;

	if (chdir(te->root) || chroot(".") || chdir(te->cwd)) {
		int ret = -errno;

		pr_perror("pid %u: can't restore root %s / cwd %s", te->pid, te->root, te->cwd);
		return ret;
	}
	umask(te->umask);
	if (personality(te->personality) < 0) {
		int ret = -errno;

		pr_perror("pid %u: can't set personality %#x", te->pid, te->personality);
		return ret;
	}
	for (i = 0; i < te->n_sigactions; i++) {
		const Crd__Sigaction *s = te->sigactions[i];
		uint64_t ka[4] = { s->handler, s->flags, s->restorer, s->mask };

		if (syscall(SYS_rt_sigaction, s->sig, ka, NULL, 8)) {
			int ret = -errno;

			pr_perror("pid %u: can't restore the action of signal %u", te->pid, s->sig);
			return ret;
		}
	}
	for (i = 0; i < te->n_itimers; i++) {
		const Crd__Itimer *t = te->itimers[i];
		struct itimerval iv = {
			{ t->interval_us / 1000000, t->interval_us % 1000000 },
			{ t->value_us / 1000000, t->value_us % 1000000 },
		};

		if (!iv.it_value.tv_sec && !iv.it_value.tv_usec)
			continue;
		if (setitimer(t->which, &iv, NULL)) {
			int ret = -errno;

			pr_perror("pid %u: can't restore itimer %u", te->pid, t->which);
			return ret;
		}
	}
	return 0;
}

int restore_task_prepare(struct restore_ctx *ctx, size_t idx, void **argsp, void **stackp)
{
	struct rtask *rt = &ctx->tasks[idx];
	const Crd__TaskEntry *te = rt->te;
	struct rst_args *a;
	struct layout l;
	char *base;
	int ret, exe_fd;

	ret = fdr_install(ctx->fr, te, ctx->fd_base);
	if (!ret)
		ret = restore_plain_state(te);
	if (ret)
		return ret;
	exe_fd = place_fd(ctx, open(te->mm->exe_path, O_RDONLY | O_CLOEXEC));
	if (exe_fd < 0) {
		pr_perror("pid %u: can't open its executable %s", te->pid, te->mm->exe_path);
		return -ENOENT;
	}
	plan_layout(te, &l);
	base = place_region(te, l.size);
	if (!base) {
		pr_err("pid %u: no room for the restorer (%lu bytes)\n", te->pid, l.size);
		return -ENOMEM;
	}
	memcpy(base, restorer_blob, restorer_blob_size);
	a = (struct rst_args *)(base + l.args);
	a->blob_start = (uint64_t)base;
	a->blob_len = l.size;
	a->vdso_start = vdso_start(te);
	a->pages_fd = rt->pages_fd;
	a->log_fd = log_get_fd();
	a->fd_base = ctx->fd_base;
	a->pid = te->pid;
	a->vmas = (uint64_t)(base + l.vmas);
	a->runs = (uint64_t)(base + l.runs);
	a->threads = (uint64_t)(base + l.threads);
	a->timers = (uint64_t)(base + l.timers);
	a->sigs = (uint64_t)(base + l.sigs);
	a->rlimits = (uint64_t)(base + l.rlimits);
	ret = fill_vmas(ctx, te, base, &l, a);
	if (!ret)
		ret = fill_threads(te, base, &l, a);
	if (ret)
		return ret;
	fill_misc(te, base, &l, a);
	a->mm.exe_fd = exe_fd;
	/*
	 * glibc's rseq area vanishes with the rest of crd: unregister it, or the
	 * kernel's next update of it kills us.  glibc registers 32 bytes even
	 * where __rseq_size says less.
	 */
	if (__rseq_size &&
	    syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, __rseq_size,
		    RSEQ_FLAG_UNREGISTER, RSEQ_SIG_GLIBC) &&
	    syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, 32,
		    RSEQ_FLAG_UNREGISTER, RSEQ_SIG_GLIBC)) {
		pr_perror("pid %u: can't unregister crd's rseq area", te->pid);
		return -errno;
	}
	ctx->sh->task[idx].blob_start = (uint64_t)base;
	ctx->sh->task[idx].blob_len = l.size;
	*argsp = a;
	/* the main thread runs the blob on its own stack, aligned as after a call */
	*stackp = (void *)(((struct rst_thread *)a->threads)[0].stack_top - 8);
	return 0;
}

void restore_task_jump(void *args, void *stack)
{
	struct rst_args *a = args;
	void *entry = (char *)a->blob_start + restorer_blob_entry;

	asm volatile("mov %0, %%rsp\n\t"
		     "mov %1, %%rdi\n\t"
		     "jmp *%2\n\t"
		     :
		     : "r"(stack), "r"(args), "r"(entry)
		     : "memory");
	__builtin_unreachable();
}
