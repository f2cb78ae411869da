/* System V shared memory: see crd/sysv.c */
#ifndef CRD_SYSV_H
#define CRD_SYSV_H

#include <stddef.h>
#include <stdint.h>

#include "crd.pb-c.h"

struct dump_ctx;
struct restore_ctx;

/* Note segment id (attached by the tree) for the inventory. */
int sysv_collect(struct dump_ctx *ctx, uint32_t id);
/* Recreate every segment with its id, key, mode, owner and contents. */
int sysv_restore(struct restore_ctx *ctx);
/* After a failed restore: remove the segments sysv_restore() made. */
void sysv_undo(struct restore_ctx *ctx);
/* Mark for removal those that were (after the tree has attached them again). */
void sysv_finish(struct restore_ctx *ctx);

/* Set /proc/sys/kernel/KIND_next_id ("shm", "sem", "msg"); -1 ends it. */
int sysv_set_next_id(const char *kind, int id);

/* sysv-ipc.c: semaphore sets and message queues the tree was the last to use */
int sysv_ipc_dump(struct dump_ctx *ctx, Crd__Inventory *inv);
int sysv_ipc_restore(struct restore_ctx *ctx);
void sysv_ipc_undo(struct restore_ctx *ctx);

/* Running syscalls in restored processes (by their pid in the images). */
struct task_calls {
	long (*call)(void *arg, uint32_t pid, long nr, long a1, long a2, long a3, long a4,
		     long a5);
	/* copy buf into the process's restorer region; its address there in *addr */
	int (*poke)(void *arg, uint32_t pid, const void *buf, size_t len, uint64_t *addr);
	void *arg;
};

/* Make the tree's processes the last users of its sets and queues again. */
void sysv_ipc_replay(const Crd__Inventory *inv, const struct task_calls *tc);

#endif
