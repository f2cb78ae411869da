/*
 * Per-thread state that ptrace and /proc give from outside: registers, xsave,
 * signal mask and queue, rseq, comm and credentials.
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "cr-dump.h"
#include "log.h"
#include "util.h"

#define ERESTARTSYS		512
#define ERESTARTNOINTR		513
#define ERESTARTNOHAND		514
#define ERESTART_RESTARTBLOCK	516


#define XSAVE_MAX	8192

static Crd__X86Regs *regs_to_image(struct arena *a, const struct user_regs_struct *r)
{
	Crd__X86Regs *e = arena_alloc(a, sizeof(*e));

	if (!e)
		return NULL;
	crd__x86_regs__init(e);
	e->r15 = r->r15; e->r14 = r->r14; e->r13 = r->r13; e->r12 = r->r12;
	e->rbp = r->rbp; e->rbx = r->rbx; e->r11 = r->r11; e->r10 = r->r10;
	e->r9 = r->r9; e->r8 = r->r8; e->rax = r->rax; e->rcx = r->rcx;
	e->rdx = r->rdx; e->rsi = r->rsi; e->rdi = r->rdi; e->orig_rax = r->orig_rax;
	e->rip = r->rip; e->cs = r->cs; e->eflags = r->eflags; e->rsp = r->rsp;
	e->ss = r->ss; e->fs_base = r->fs_base; e->gs_base = r->gs_base;
	e->ds = r->ds; e->es = r->es; e->fs = r->fs; e->gs = r->gs;
	return e;
}

/*
 * A thread stopped inside a syscall resumes by re-executing it, as the kernel
 * would have done: point rip back at the syscall instruction.  A restart block
 * (nanosleep & co) can't be carried to another kernel state, so the call
 * returns EINTR instead (nanosleep has written the remaining time already).
 */
static void adjust_restart(Crd__X86Regs *e, pid_t tid)
{
	if ((long)e->orig_rax < 0)
		return;
	switch ((long)e->rax) {
	case -ERESTARTSYS:
	case -ERESTARTNOINTR:
	case -ERESTARTNOHAND:
		e->rax = e->orig_rax;
		e->rip -= 2;
		break;
	case -ERESTART_RESTARTBLOCK:
		pr_info("tid %d: interrupted syscall %ld will return EINTR\n", tid,
			(long)e->orig_rax);
		e->rax = -EINTR;
		break;
	}
	e->orig_rax = -1;
}

int dump_pending(struct arena *a, pid_t tid, bool shared, Crd__Siginfo ***out, size_t *n)
{
	struct __ptrace_peeksiginfo_args args = {
		.off = 0,
		.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0,
		.nr = 1,
	};
	size_t cap = 0;

	for (;;) {
		uint8_t si[128];
		Crd__Siginfo *e;
		long r = ptrace(PTRACE_PEEKSIGINFO, tid, &args, si);

		if (r < 0) {
			int ret = -errno;

			pr_perror("tid %d: can't peek pending signals", tid);
			return ret;
		}
		if (r == 0)
			return 0;
		if (arena_grow(a, (void **)out, &cap, *n + 1, sizeof(**out)))
			return -ENOMEM;
		e = arena_alloc(a, sizeof(*e));
		if (!e)
			return -ENOMEM;
		crd__siginfo__init(e);
		e->raw.len = sizeof(si);
		e->raw.data = arena_alloc(a, sizeof(si));
		if (!e->raw.data)
			return -ENOMEM;
		memcpy(e->raw.data, si, sizeof(si));
		(*out)[(*n)++] = e;
		args.off++;
	}
}

/* "Name:\tv1\tv2..." lines of /proc/PID/task/TID/status */
static int status_u32s(const char *buf, const char *key, uint32_t *v, int n)
{
	const char *p = strstr(buf, key);
	int i;

	if (!p)
		return -ENOENT;
	p += strlen(key);
	for (i = 0; i < n; i++) {
		char *end;

		v[i] = strtoul(p, &end, 10);
		if (end == p)
			return -EINVAL;
		p = end;
	}
	return 0;
}

static uint64_t status_hex(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);

	return p ? strtoull(p + strlen(key), NULL, 16) : 0;
}

static Crd__Creds *dump_creds(struct arena *a, pid_t pid, pid_t tid)
{
	char path[64], *buf, *p;
	uint32_t u[4], g[4], nnp = 0;
	Crd__Creds *c;
	size_t cap = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	if (read_file(path, &buf) < 0)
		return NULL;
	c = arena_alloc(a, sizeof(*c));
	if (!c || status_u32s(buf, "\nUid:", u, 4) || status_u32s(buf, "\nGid:", g, 4)) {
		pr_err("tid %d: can't parse credentials in %s\n", tid, path);
		free(buf);
		return NULL;
	}
	crd__creds__init(c);
	c->uid = u[0]; c->euid = u[1]; c->suid = u[2]; c->fsuid = u[3];
	c->gid = g[0]; c->egid = g[1]; c->sgid = g[2]; c->fsgid = g[3];
	c->cap_inh = status_hex(buf, "\nCapInh:");
	c->cap_prm = status_hex(buf, "\nCapPrm:");
	c->cap_eff = status_hex(buf, "\nCapEff:");
	c->cap_bnd = status_hex(buf, "\nCapBnd:");
	c->cap_amb = status_hex(buf, "\nCapAmb:");
	status_u32s(buf, "\nNoNewPrivs:", &nnp, 1);
	c->no_new_privs = nnp;
	p = strstr(buf, "\nGroups:");
	if (p) {
		p += strlen("\nGroups:");
		for (;;) {
			char *end;
			unsigned long gid = strtoul(p, &end, 10);

			if (end == p || *p == '\n')
				break;
			if (arena_grow(a, (void **)&c->groups, &cap, c->n_groups + 1,
				       sizeof(*c->groups)))
				break;
			c->groups[c->n_groups++] = gid;
			p = end;
		}
	}
	free(buf);
	return c;
}

int thread_save_regs(struct dthread *th)
{
	int ret;

	if (ptrace(PTRACE_GETREGS, th->tid, 0, &th->regs) ||
	    ptrace(PTRACE_GETSIGMASK, th->tid, sizeof(th->sigmask), &th->sigmask)) {
		ret = -errno;
		pr_perror("tid %d: can't read registers", th->tid);
		return ret;
	}
	th->regs_valid = true;
	return 0;
}

int dump_thread_regs(struct dump_ctx *ctx, struct dtask *t, struct dthread *th,
		     Crd__ThreadEntry *e)
{
	struct __ptrace_rseq_configuration rseq = { };
	struct arena *a = &ctx->arena;
	struct iovec iov;
	char path[96], *comm;
	int ret;

	ret = thread_save_regs(th);
	if (ret)
		return ret;
	e->tid = th->tid;
	e->regs = regs_to_image(a, &th->regs);
	if (!e->regs)
		return -ENOMEM;
	adjust_restart(e->regs, th->tid);
	e->blocked = th->sigmask;

	e->xsave.data = arena_alloc(a, XSAVE_MAX);
	if (!e->xsave.data)
		return -ENOMEM;
	iov.iov_base = e->xsave.data;
	iov.iov_len = XSAVE_MAX;
	if (ptrace(PTRACE_GETREGSET, th->tid, NT_X86_XSTATE, &iov)) {
		ret = -errno;
		pr_perror("tid %d: can't read the xsave state", th->tid);
		return ret;
	}
	e->xsave.len = iov.iov_len;

	/* it returns the size of what it wrote, not 0 */
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, th->tid, sizeof(rseq), &rseq) > 0 &&
	    rseq.rseq_abi_pointer) {
		e->has_rseq_addr = e->has_rseq_len = e->has_rseq_sig = true;
		e->rseq_addr = rseq.rseq_abi_pointer;
		e->rseq_len = rseq.rseq_abi_size;
		e->rseq_sig = rseq.signature;
	}

	ret = dump_pending(a, th->tid, false, &e->pending, &e->n_pending);
	if (ret)
		return ret;
	if (th->stop_sig) {
		/* caught while freezing: it was dequeued, it is pending again after restore */
		size_t cap = e->n_pending;
		Crd__Siginfo *si = arena_alloc(a, sizeof(*si));

		if (!si || arena_grow(a, (void **)&e->pending, &cap, e->n_pending + 1,
				      sizeof(*e->pending)))
			return -ENOMEM;
		crd__siginfo__init(si);
		si->raw.len = sizeof(th->stop_si);
		si->raw.data = th->stop_si;
		e->pending[e->n_pending++] = si;
	}

	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", t->pid, th->tid);
	ret = read_file(path, &comm);
	if (ret < 0) {
		pr_err("tid %d: can't read %s: %s\n", th->tid, path, strerror(-ret));
		return ret;
	}
	comm[strcspn(comm, "\n")] = '\0';
	e->comm = arena_strdup(a, comm);
	free(comm);
	e->creds = dump_creds(a, t->pid, th->tid);
	if (!e->comm || !e->creds)
		return -ENOMEM;
	return 0;
}
