/*
 * Images in the store (store/): a dump with --store writes its metadata
 * images to a private staging directory and its page data, through the
 * pages writer, to the store, keeping only references (IMG_PAGES_REFS) in
 * the staging files; at the end every staging file becomes a blob named
 * "WRITER/FILE" of the generation.  A restore from the store turns the blobs
 * of one writer back into a staging directory of ordinary images.
 */
#ifndef CRD_IMG_STORE_H
#define CRD_IMG_STORE_H

#include <stdint.h>

#include "crd.h"
#include "image.h"
#include "cr-incr.h"

struct store;
struct store_writer;

/* pages writer, store mode (image.c) */
int img_refs_put(struct img_pages_writer *w, const void *buf, size_t len);
/* a page by its reference (the store knows it): the data is not at hand */
int img_refs_put_ref(struct img_pages_writer *w, const struct store_ref *ref);
int img_refs_finish(struct img_pages_writer *w, const struct img_hdr *data_hdr);
void img_refs_free(struct img_pages_writer *w);

struct img_store_dump {
	struct store *st;
	struct store_writer *sw;
	uint64_t gen;
	char writer[64];
	char pre[72];		/* the pre-dump's writer, when this dump follows one */
	char staging[64];
	struct incr_state *incr;
};

/* Open the store and a writer of the generation; staging gets the image dir. */
int img_store_dump_begin(const struct dump_opts *o, struct img_store_dump *d);
/* The staging files as blobs, the writer finished, the generation committed unless told not. */
int img_store_dump_finish(const struct dump_opts *o, struct img_store_dump *d);
/* After a failure: nothing of this dump stays in the store or in staging. */
void img_store_dump_abort(struct img_store_dump *d);

/* One writer's images of a generation into a new staging directory (path out). */
int img_store_stage(const struct restore_opts *o, char *path, size_t len);
/* Remove a staging directory and what is in it. */
void img_store_unstage(const char *path);

#endif
