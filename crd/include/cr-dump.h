/* Internals of crd dump shared by its files (cr-*.c). */
#ifndef CRD_CR_DUMP_H
#define CRD_CR_DUMP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "arena.h"
#include "crd.h"
#include "crd.pb-c.h"

struct dthread {
	pid_t tid;
	bool seized;
	bool stopped;
	int stop_sig;			/* signal-delivery-stop seen while freezing, 0 if none */
	uint8_t stop_si[128];		/* its siginfo: it was dequeued, so it goes back */
	struct user_regs_struct regs;	/* as found: put back on release */
	uint64_t sigmask;		/* as found */
	bool regs_valid;
};

struct dtask {
	pid_t pid;
	pid_t ppid;			/* 0 for the root */
	pid_t pgid;
	pid_t sid;
	bool zombie;			/* exited, not reaped: nothing to seize or dump */
	bool stopped;			/* in a job-control stop before we came */
	int exit_status;		/* its wait status */
	struct dthread *threads;
	size_t nr_threads;
	size_t cap_threads;
	Crd__TaskEntry *te;
	char orig_freezer[256];		/* cgroup freezer path to move back to */
};

struct store_writer;
struct incr_state;

struct dump_ctx {
	const struct dump_opts *opts;
	struct arena arena;
	int dirfd;
	struct dtask *tasks;		/* tasks[0] is the root, parents before children */
	size_t nr_tasks;
	size_t cap_tasks;
	struct file_table *ft;
	uint64_t zero_pfn;
	char cgroup[256];		/* our freezer cgroup, "" when not used */
	Crd__ShmemEntry **shmems;	/* shared memory objects dumped so far */
	size_t nr_shmems;
	size_t cap_shmems;
	Crd__SysvShmEntry **sysv;	/* System V segments attached by the tree */
	size_t nr_sysv;
	size_t cap_sysv;
	size_t cap_sems, cap_msgs;	/* of the inventory's semaphore and queue arrays */
	struct store_writer *sw;	/* --store: where page data goes */
	struct incr_state *incr;	/* after a pre-dump: what it copied */
};

/* cr-freeze.c */
int freeze_tree(struct dump_ctx *ctx);
/* Put registers and masks back and detach; kill first when kill is set. */
void release_tree(struct dump_ctx *ctx, bool kill);

/* cr-infect.c: run syscalls inside a stopped thread */
struct infect {
	pid_t tid;
	uint64_t syscall_ip;		/* address of a `syscall` instruction */
	uint64_t scratch;		/* a page mapped in the target, 0 if none */
	struct user_regs_struct regs;	/* the thread's registers as found */
	uint64_t poke_addr;		/* where we poked a syscall instruction, 0 if not */
	long poke_orig;
};

int infect_start(struct dthread *th, struct infect *inf);
long infect_syscall(struct infect *inf, long nr, long a1, long a2, long a3, long a4, long a5,
		    long a6);
int infect_scratch_write(struct infect *inf, const void *buf, size_t len);
int infect_scratch_read(struct infect *inf, void *buf, size_t len);
/* Switch to another thread of the same process, keeping the scratch page. */
int infect_switch(struct infect *inf, struct dthread *th);
/* Unmap the scratch page, undo the poke, put the registers back. */
int infect_stop(struct infect *inf);

/* cr-regs.c */
/* Save th's registers and signal mask, to be put back by release_tree(). */
int thread_save_regs(struct dthread *th);
int dump_thread_regs(struct dump_ctx *ctx, struct dtask *t, struct dthread *th,
		     Crd__ThreadEntry *e);
/* signals queued on a thread, or on the process with shared */
int dump_pending(struct arena *a, pid_t tid, bool shared, Crd__Siginfo ***out, size_t *n);
/* cr-task.c: everything per process but memory and fds */
int dump_task_state(struct dump_ctx *ctx, struct dtask *t);
/* cr-mem.c */
int dump_task_mem(struct dump_ctx *ctx, struct dtask *t);
/* contents of a shared memory object without a path, open at fd, into shmem-ID.img */
int dump_shmem_fd(struct dump_ctx *ctx, int fd, uint64_t id, const char *what);

#endif
