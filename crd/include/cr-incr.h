/*
 * Incremental dumps without soft-dirty: `crd pre-dump` gives every process a
 * userfaultfd in write-protect async mode over its private anonymous memory
 * (created inside the process, kept there at a high fd), write-protects all
 * of it, lets the tree run and copies the memory into the store meanwhile.
 * The final dump asks PAGEMAP_SCAN which pages were written since, reads
 * only those, and takes the others' references from the pre-dump; then it
 * closes the userfaultfd in the process, which drops every trace of it.
 */
#ifndef CRD_CR_INCR_H
#define CRD_CR_INCR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

struct dump_ctx;
struct dtask;

struct incr_range {
	uint64_t start, end;
};

struct incr_task {
	uint32_t pid;
	int32_t uffd;			/* its number in the process */
	struct incr_range *vmas;	/* tracked, sorted */
	uint32_t nvmas;
	uint64_t *vaddrs;		/* pages copied by the pre-dump, sorted */
	struct store_ref *refs;
	uint64_t n, cap;
	/* final dump: written since the pre-dump, sorted */
	struct incr_range *written;
	size_t nwritten;
};

struct incr_state {
	struct incr_task *tasks;
	size_t n;
};

/* crd pre-dump: see crd.h */
void incr_free(struct incr_state *s);
int incr_load(const char *path, struct incr_state *s);

/* Final dump, tree frozen: what was written since; the tracker leaves the process. */
int incr_prepare_task(struct dump_ctx *ctx, struct dtask *t);
/* remove trackers of pre-dumps that this dump does not follow */
int incr_drop_stale(struct dtask *t);
/* The pre-dump's reference for the page at addr if it was not written since, else NULL. */
const struct store_ref *incr_unchanged(struct incr_task *it, uint64_t addr);
struct incr_task *incr_find(struct incr_state *s, uint32_t pid);
/* Was [start, end) tracked whole?  Memory mapped since is read whole. */
bool incr_covers(const struct incr_task *t, uint64_t start, uint64_t end);

#endif
