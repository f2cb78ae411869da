/* Internals of crd restore shared by its files (cr-restore*.c). */
#ifndef CRD_CR_RESTORE_H
#define CRD_CR_RESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crd.h"
#include "crd.pb-c.h"

extern const unsigned char restorer_blob[];
extern const size_t restorer_blob_size;
extern const size_t restorer_blob_entry;
extern const size_t restorer_blob_sigreturn;

struct rtask {
	Crd__PstreeEntry *pe;
	Crd__TaskEntry *te;
	int pages_fd;		/* checked, inherited by the tree */
};

/* Shared between the orchestrator and the processes it creates. */
struct rst_task_state {
	int32_t outer_pid;	/* the pid as crd sees it */
	int32_t pad;
	uint64_t blob_start;
	uint64_t blob_len;
};

struct rst_shared {
	int32_t created;	/* processes that exist */
	int32_t leaders;	/* processes done with their own process group */
	int32_t ready;		/* processes about to enter the restorer */
	int32_t go;		/* orchestrator: all seized, enter it */
	int32_t failed;		/* a process failed: everybody stops */
	int32_t pad;
	struct rst_task_state task[];
};

struct rshmem {
	uint64_t id;
	int fd;			/* a memfd with the object's contents */
};

struct restore_ctx {
	const struct restore_opts *opts;
	int dirfd;
	Crd__Inventory *inv;
	bool net_locked;		/* we hold the lock of the tree's connections */
	struct rtask *tasks;
	size_t nr_tasks;
	size_t nr_live;		/* tasks that are not zombies */
	size_t nr_threads;
	struct fd_restore *fr;
	struct rshmem *shmems;
	size_t nr_shmems;
	bool *sysv_made;	/* System V segments this restore created */
	bool *ipc_made;		/* semaphore sets, then message queues, it created */
	int fd_base;		/* first restore-internal fd */
	int fd_free;		/* first fd nothing uses yet (per process) */
	struct rst_shared *sh;
	size_t sh_len;
	uint64_t vdso_size[3];	/* this kernel's [vvar], [vvar_vclock], [vdso] */
};

/* owner.c: restore --owner: nothing in the images beyond what uid has */
int owner_check(const struct restore_ctx *ctx, uid_t uid);

/* cr-restore-shmem.c: shared memory objects as memfds, before the tree exists */
int restore_shmems(struct restore_ctx *ctx);
int shmem_fd(const void *ctx, uint64_t id);

/* cr-restore-task.c: runs in a restored process; returns only on failure */
int restore_task_prepare(struct restore_ctx *ctx, size_t idx, void **args, void **stack);
void restore_task_jump(void *args, void *stack);

/* futex helpers on the shared state */
void rst_wake(int32_t *addr);
int rst_wait_for(struct restore_ctx *ctx, int32_t *addr, int32_t val);

#endif
