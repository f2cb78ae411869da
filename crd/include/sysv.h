/* System V shared memory: see crd/sysv.c */
#ifndef CRD_SYSV_H
#define CRD_SYSV_H

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

#endif
