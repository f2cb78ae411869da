/*
 * The restorer blob.  crd jumps here, on a stack inside the blob's region, in
 * each restored process once its fds and the rest of its kernel state are in
 * place.  From here on nothing of crd's own address space may be used: the
 * blob unmaps it, builds the dumped address space, creates the threads, and
 * every thread rt_sigreturn()s into the dumped registers.
 *
 * Freestanding: no libc, raw syscalls, no relocations (see pie/mkblob.sh).
 */
#include <asm/prctl.h>
#include <asm/unistd.h>
#include <linux/capability.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <linux/signal.h>

#include "rst.h"

#define SHM_RDONLY	010000
#define SHM_EXEC	0100000

#define TASK_SIZE_MAX		0x7ffffffff000UL
#define FP_XSTATE_MAGIC2	0x46505845U
#define PR_TIMER_CREATE_RESTORE_IDS	77
#define RSEQ_SIG_DEFAULT	0x53053053

#define __rst	__attribute__((visibility("hidden")))

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 asm("r10") = d;
	register long r8 asm("r8") = e;
	register long r9 asm("r9") = f;
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
		     : "rcx", "r11", "memory");
	return ret;
}

#define sys0(n)			sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a)		sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b)		sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c)	sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d)	sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e)	sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* A syscall instruction crd reuses to unmap this region after the sigreturns. */
asm(".pushsection .text\n"
    ".globl rst_sigreturn_insn\n"
    ".hidden rst_sigreturn_insn\n"
    "rst_sigreturn_insn:\n"
    "	syscall\n"
    "	ud2\n"
    ".popsection\n");
extern char rst_sigreturn_insn[] __rst;

static char *put_num(char *p, long v)
{
	char tmp[24];
	int n = 0;

	if (v < 0) {
		*p++ = '-';
		v = -v;
	}
	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* Report on crd's log and die: crd sees the exit and fails the restore. */
static void __attribute__((noreturn)) fail(struct rst_args *a, const char *what, long err)
{
	char buf[160], *p = buf;
	const char *s = "crd restorer: pid ";

	while (*s)
		*p++ = *s++;
	p = put_num(p, a->pid);
	*p++ = ':';
	*p++ = ' ';
	s = what;
	while (*s && p < buf + 120)
		*p++ = *s++;
	s = " failed, error ";
	while (*s)
		*p++ = *s++;
	p = put_num(p, err);
	*p++ = '\n';
	sys3(__NR_write, a->log_fd, buf, p - buf);
	sys1(__NR_exit_group, 70);
	for (;;)
		;
}

static void check(struct rst_args *a, long ret, const char *what)
{
	if (ret < 0 && ret > -4096)
		fail(a, what, ret);
}

static void unmap_others(struct rst_args *a)
{
	uint64_t end = a->blob_start + a->blob_len;

	check(a, sys2(__NR_munmap, 0, a->blob_start), "unmap below the restorer");
	check(a, sys2(__NR_munmap, end, TASK_SIZE_MAX - end), "unmap above the restorer");
}

static void map_vmas(struct rst_args *a)
{
	struct rst_vma *v = (struct rst_vma *)a->vmas;
	uint32_t i;

	for (i = 0; i < a->n_vmas; i++, v++) {
		uint32_t prot = v->fill ? v->prot | PROT_READ | PROT_WRITE : v->prot;
		long r;

		if (v->sysv) {
			r = sys3(__NR_shmat, v->sysv_id, v->start,
				 (v->prot & PROT_WRITE ? 0 : SHM_RDONLY) |
				 (v->prot & PROT_EXEC ? SHM_EXEC : 0));
			if (r == (long)v->start && !(v->prot & PROT_READ))
				r = sys3(__NR_mprotect, v->start, v->end - v->start, v->prot) ?:
				    (long)v->start;
		} else {
			r = sys6(__NR_mmap, v->start, v->end - v->start, prot, v->flags | MAP_FIXED,
				 v->fd, v->pgoff);
		}
		if (r != (long)v->start)
			fail(a, "map of a VMA", r);
	}
}

static void fill_pages(struct rst_args *a)
{
	struct rst_run *r = (struct rst_run *)a->runs;
	uint32_t i;

	for (i = 0; i < a->n_runs; i++, r++) {
		uint64_t done = 0;

		while (done < r->len) {
			long n = sys4(__NR_pread64, a->pages_fd, r->vaddr + done, r->len - done,
				      r->off + done);

			if (n <= 0)
				fail(a, "read of the pages image", n ? n : -5);
			done += n;
		}
	}
}

static void protect_vmas(struct rst_args *a)
{
	struct rst_vma *v = (struct rst_vma *)a->vmas;
	uint32_t i;

	for (i = 0; i < a->n_vmas; i++, v++)
		if (v->fill && v->prot != (PROT_READ | PROT_WRITE))
			check(a, sys3(__NR_mprotect, v->start, v->end - v->start, v->prot),
			      "mprotect");
}

static void restore_timers(struct rst_args *a)
{
	struct rst_timer *t = (struct rst_timer *)a->timers;
	uint32_t i;

	if (!a->n_timers)
		return;
	check(a, sys2(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1),
	      "PR_TIMER_CREATE_RESTORE_IDS (needs Linux 6.17)");
	for (i = 0; i < a->n_timers; i++, t++) {
		struct {
			uint64_t value;
			int32_t signo;
			int32_t notify;
			int32_t tid;
			int32_t pad[11];
		} sev = { t->sigval, t->signo, t->notify, t->notify_tid };
		struct {
			int64_t is, in, vs, vn;
		} its = { t->interval_sec, t->interval_nsec, t->value_sec, t->value_nsec };
		int32_t id = t->id;

		check(a, sys3(__NR_timer_create, t->clock, &sev, &id), "timer_create");
		if (id != t->id)
			fail(a, "timer_create with the dumped id", id);
		if (t->value_sec || t->value_nsec)
			check(a, sys4(__NR_timer_settime, id, 0, &its, 0), "timer_settime");
	}
	check(a, sys2(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0), "PR_TIMER_CREATE_RESTORE_IDS");
}

static void restore_process_state(struct rst_args *a)
{
	struct rst_rlimit *rl = (struct rst_rlimit *)a->rlimits;
	uint8_t *si = (uint8_t *)a->sigs;
	uint32_t i;

	restore_timers(a);
	for (i = 0; i < a->n_rlimits; i++, rl++)
		check(a, sys4(__NR_prlimit64, 0, rl->resource, &rl->cur, 0), "setrlimit");
	for (i = 0; i < a->n_sigs; i++, si += 128)
		check(a, sys3(__NR_rt_sigqueueinfo, a->pid, *(int32_t *)si, si),
		      "queue a pending signal");
}

static void restore_creds(struct rst_args *a, struct rst_creds *c)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = {
		{ (uint32_t)c->cap_eff, (uint32_t)c->cap_prm, (uint32_t)c->cap_inh },
		{ c->cap_eff >> 32, c->cap_prm >> 32, c->cap_inh >> 32 },
	};
	uint32_t keep;
	int cap;

	check(a, sys2(__NR_setgroups, c->ngroups, c->groups), "setgroups");
	check(a, sys3(__NR_setresgid, c->gid, c->egid, c->sgid), "setresgid");
	sys1(__NR_setfsgid, c->fsgid);
	for (cap = 0; cap < 64; cap++)
		if (!(c->cap_bnd & (1ULL << cap)) &&
		    sys2(__NR_prctl, PR_CAPBSET_READ, cap) == 1)
			check(a, sys2(__NR_prctl, PR_CAPBSET_DROP, cap), "drop a bounding cap");
	/*
	 * securebits need CAP_SETPCAP: set them while we have it, with
	 * KEEP_CAPS so that the uid change keeps the capabilities capset()
	 * then lowers to the dumped ones.
	 */
	keep = c->securebits & SECBIT_KEEP_CAPS_LOCKED ? c->securebits :
						       c->securebits | SECBIT_KEEP_CAPS;
	if (sys1(__NR_prctl, PR_GET_SECUREBITS) != keep)
		check(a, sys2(__NR_prctl, PR_SET_SECUREBITS, keep), "securebits");
	check(a, sys3(__NR_setresuid, c->uid, c->euid, c->suid), "setresuid");
	sys1(__NR_setfsuid, c->fsuid);
	if (!(c->securebits & SECBIT_KEEP_CAPS_LOCKED))
		check(a, sys2(__NR_prctl, PR_SET_KEEPCAPS, !!(c->securebits & SECBIT_KEEP_CAPS)),
		      "PR_SET_KEEPCAPS");
	/* capset can only lower what we have: an image can't raise privileges */
	check(a, sys2(__NR_capset, &hdr, data), "capset");
	for (cap = 0; cap < 64; cap++)
		if (c->cap_amb & (1ULL << cap))
			check(a, sys5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
			      "raise an ambient cap");
	if (c->no_new_privs)
		check(a, sys5(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
}

static void __attribute__((noreturn)) restore_thread(struct rst_args *a, long idx)
{
	struct rst_thread *t = (struct rst_thread *)a->threads + idx;
	uint8_t *si = (uint8_t *)t->sigs;
	uint32_t i;

	for (i = 0; i < t->n_sigs; i++, si += 128)
		check(a, sys4(__NR_rt_tgsigqueueinfo, a->pid, t->tid, *(int32_t *)si, si),
		      "queue a pending thread signal");
	if (t->rseq_addr)
		check(a, sys4(__NR_rseq, t->rseq_addr, t->rseq_len, 0, t->rseq_sig),
		      "rseq registration");
	sys1(__NR_set_tid_address, t->clear_tid);
	check(a, sys2(__NR_arch_prctl, ARCH_SET_FS, t->fs_base), "set fs base");
	check(a, sys2(__NR_arch_prctl, ARCH_SET_GS, t->gs_base), "set gs base");
	check(a, sys2(__NR_prctl, PR_SET_NAME, t->comm), "set comm");
	restore_creds(a, &t->creds);
	/*
	 * int3 hands the thread to crd (it traces us): crd lets it run the
	 * rt_sigreturn and catches it on the way out, with the dumped registers.
	 */
	asm volatile("mov %0, %%rsp\n\t"
		     "int3\n\t"
		     "mov %1, %%eax\n\t"
		     "jmp rst_sigreturn_insn\n\t"
		     :
		     : "r"(t->frame + 8), "i"(__NR_rt_sigreturn)
		     : "memory");
	for (;;)
		;
}

static long clone_thread(struct clone_args *ca, struct rst_args *a, long idx)
{
	register long r12 asm("r12") = (long)restore_thread;
	register long r13 asm("r13") = (long)a;
	register long r14 asm("r14") = idx;
	long ret;

	asm volatile("syscall\n\t"
		     "test %%rax, %%rax\n\t"
		     "jnz 1f\n\t"
		     "mov %%r13, %%rdi\n\t"
		     "mov %%r14, %%rsi\n\t"
		     "call *%%r12\n\t"
		     "ud2\n"
		     "1:\n\t"
		     : "=a"(ret)
		     : "a"(__NR_clone3), "D"(ca), "S"(sizeof(*ca)), "r"(r12), "r"(r13), "r"(r14)
		     : "rcx", "r11", "memory");
	return ret;
}

static void create_threads(struct rst_args *a)
{
	struct rst_thread *t = (struct rst_thread *)a->threads;
	uint32_t i;

	for (i = 1; i < a->n_threads; i++) {
		int64_t tid = t[i].tid;
		struct clone_args ca = {
			.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
				 CLONE_SYSVSEM,
			.stack = t[i].stack_top - RST_STACK_SIZE,
			.stack_size = RST_STACK_SIZE,
			.set_tid = (uint64_t)&tid,
			.set_tid_size = 1,
		};

		check(a, clone_thread(&ca, a, i), "clone3 of a thread");
	}
}

__attribute__((section(".text.entry"), used, noreturn, visibility("default")))
void restorer_entry(struct rst_args *a)
{
	a->sigreturn_ip = (uint64_t)rst_sigreturn_insn;
	unmap_others(a);
	map_vmas(a);
	fill_pages(a);
	protect_vmas(a);
	if (a->vdso_start)
		check(a, sys2(__NR_arch_prctl, ARCH_MAP_VDSO_64, a->vdso_start), "map the vDSO");
	check(a, sys5(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof(a->mm), 0),
	      "PR_SET_MM_MAP");
	create_threads(a);
	restore_process_state(a);
	/* crd's log stays open for our error reports: crd closes it after the sigreturns */
	sys3(__NR_close_range, a->fd_base, a->log_fd - 1, 0);
	sys3(__NR_close_range, a->log_fd + 1, ~0U, 0);
	restore_thread(a, 0);
}
