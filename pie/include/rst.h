/*
 * The contract between crd restore (crd/cr-restore*.c) and the restorer blob
 * (pie/rst.c).  crd lays everything out in one region at its final address:
 * the blob's code, struct rst_args, the arrays it points to, per-thread stacks
 * and prebuilt signal frames.  Pointers are absolute addresses in that region.
 */
#ifndef CRD_RST_H
#define CRD_RST_H

#include <stdint.h>

#define RST_STACK_SIZE		(64 * 1024)
#define RST_FRAME_SIZE		(16 * 1024)	/* rt_sigframe + xsave area */
#define RST_MAX_GROUPS		64

struct rst_vma {
	uint64_t start;
	uint64_t end;
	uint64_t pgoff;
	uint32_t prot;		/* final protection */
	uint32_t flags;		/* mmap flags, MAP_FIXED added by the blob */
	int32_t fd;		/* file mappings, else -1 */
	uint32_t fill;		/* pages are read into it: map writable first */
	uint32_t sysv;		/* a System V segment: shmat() sysv_id here */
	uint32_t sysv_id;
};

struct rst_run {
	uint64_t vaddr;
	uint64_t len;
	uint64_t off;		/* in the pages image */
};

struct rst_creds {
	uint32_t uid, euid, suid, fsuid;
	uint32_t gid, egid, sgid, fsgid;
	uint32_t ngroups;
	uint32_t groups[RST_MAX_GROUPS];
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	uint32_t securebits;
	uint32_t no_new_privs;
};

struct rst_thread {
	int32_t tid;		/* in the innermost PID namespace */
	uint32_t n_sigs;	/* pending signals of this thread */
	uint64_t sigs;		/* n_sigs * 128 bytes of siginfo */
	uint64_t fs_base;
	uint64_t gs_base;
	uint64_t rseq_addr;
	uint32_t rseq_len;
	uint32_t rseq_sig;
	uint64_t clear_tid;	/* set_tid_address() */
	uint64_t frame;		/* struct rst_sigframe: rsp = frame + 8 for rt_sigreturn */
	uint64_t stack_top;
	char comm[16];
	struct rst_creds creds;
};

struct rst_timer {
	int32_t id;
	int32_t clock;
	int32_t notify;
	int32_t signo;
	int32_t notify_tid;
	int32_t pad;
	uint64_t sigval;
	int64_t interval_sec, interval_nsec;
	int64_t value_sec, value_nsec;
};

struct rst_rlimit {
	uint32_t resource;
	uint32_t pad;
	uint64_t cur;
	uint64_t max;
};

/* struct prctl_mm_map of <linux/prctl.h>, 104 bytes */
struct rst_mm_map {
	uint64_t start_code, end_code, start_data, end_data;
	uint64_t start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

struct rst_args {
	uint64_t blob_start;	/* the whole region */
	uint64_t blob_len;
	uint64_t vdso_start;	/* where [vvar] was, 0 if there was no vDSO */
	int32_t pages_fd;
	int32_t log_fd;
	int32_t fd_base;	/* everything >= this is restore-internal: closed at the end */
	int32_t pid;		/* in the innermost PID namespace */
	uint32_t n_vmas, n_runs, n_threads, n_timers, n_sigs, n_rlimits;
	uint64_t vmas, runs, threads, timers, sigs, rlimits;
	struct rst_mm_map mm;
	uint64_t sigreturn_ip;	/* set by the blob: a syscall instruction crd can reuse */
	int32_t threads_left;	/* threads still using the region's fds */
	int32_t pad;
};

/* The x86_64 rt_sigframe, as rt_sigreturn reads it at rsp - 8. */
struct rst_sigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint64_t fpstate;
	uint64_t reserved1[8];
};

struct rst_ucontext {
	uint64_t uc_flags;
	uint64_t uc_link;
	uint64_t ss_sp;
	int32_t ss_flags;
	int32_t ss_pad;
	uint64_t ss_size;
	struct rst_sigcontext uc_mcontext;
	uint64_t uc_sigmask;
};

struct rst_sigframe {
	uint64_t pretcode;
	struct rst_ucontext uc;
	uint8_t info[128];
};

#endif
