/*
 * The image store: content-addressed, deduplicated checkpoint images of jobs
 * on shared storage (NFS, Lustre), written by many nodes at once without any
 * locking between them.
 *
 * Layout under the store directory DIR:
 *   DIR/jobs/JOB/gen-G.partial/   a generation being written
 *   DIR/jobs/JOB/gen-G/           a committed one, visible once MANIFEST parses
 *     NODE.pack   page chunks and blobs of one writer, append-only
 *     NODE.idx    every page the writer referenced: hash -> pack, offset, length
 *     NODE.done   the writer's summary, written last
 *     MANIFEST    nodes, files, sizes, referenced packs; checksummed
 *
 * Pages are named by the XXH3_128 of their 4096 bytes.  A page already
 * stored by a complete earlier generation of the job, or by the same writer
 * earlier, is referenced where it is instead of being written again.
 *
 * Every function returns 0 or a negative errno and logs the error once, with
 * the job, the generation and the path it concerns.  There is no global
 * state; a store, writer or reader is used by one thread at a time.
 */
#ifndef CRD_STORE_H
#define CRD_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_PAGE_SIZE		4096

/* store_writer_begin() flags */
#define STORE_COMPRESS		0x1	/* zstd each chunk, kept only if smaller */
/*
 * Deduplicate against the earlier generations of this node only: one index
 * per generation to load instead of one per node, for jobs of many nodes.
 */
#define STORE_DEDUP_NODE	0x2

/* store_gc() flags */
#define STORE_GC_FORCE		0x1	/* partial generations regardless of age */

/* partial generations untouched this long are abandoned (seconds) */
#define STORE_GC_GRACE_DEFAULT	3600

struct store;
struct store_writer;
struct store_reader;

/* XXH3_128 of a page; {0, 0} is the zero page, which is never stored */
struct store_ref {
	uint64_t lo, hi;
};

/* what a writer did, for callers that report it */
struct store_writer_stats {
	uint64_t pages;		/* store_put_page() calls */
	uint64_t zero_pages;	/* of which all zero */
	uint64_t new_pages;	/* of which written to this writer's pack */
	uint64_t logical;	/* bytes of pages and blobs put */
	uint64_t stored;	/* bytes appended to the pack */
};

/* one visible generation, as its manifest tells */
struct store_gen_info {
	uint64_t gen;
	int64_t created;	/* seconds since the epoch */
	int nodes;
	int files;
	int packs;		/* referenced, those of earlier generations included */
	uint64_t logical;
	uint64_t stored;	/* bytes this generation added */
};

int store_open(const char *dir, struct store **out);
void store_close(struct store *s);
const char *store_dir(const struct store *s);

/* 1 + the highest generation of the job, complete or partial (1 for a new job) */
int store_next_gen(struct store *s, const char *job, uint64_t *gen);

int store_writer_begin(struct store *s, const char *job, uint64_t gen, const char *node,
		       unsigned flags, struct store_writer **out);
int store_put_page(struct store_writer *w, const void *page, struct store_ref *ref);
int store_put_blob(struct store_writer *w, const char *name, const void *buf, size_t len);
void store_writer_stats(const struct store_writer *w, struct store_writer_stats *st);
/* Reference a page the writer knows (earlier generations, adopted writers); -ENOENT if not. */
int store_put_ref(struct store_writer *w, const struct store_ref *ref);
/*
 * Take over what another writer of the same generation finished (a pre-dump):
 * its pages are known from now on; commit then names both writers.
 */
int store_writer_adopt(struct store_writer *w, const char *node);
/* the generation's directory while it is partial (for a writer's side files) */
const char *store_writer_dir(const struct store_writer *w);
/*
 * fsync the pack and the index, then write NODE.done.  The writer is freed
 * either way; on failure what it wrote is removed, as by store_writer_abort().
 */
int store_writer_finish(struct store_writer *w);
/* remove what this writer wrote and free it */
void store_writer_abort(struct store_writer *w);

/* all nodes done: gen-G.partial becomes gen-G with a MANIFEST */
int store_commit(struct store *s, const char *job, uint64_t gen, const char *const *nodes,
		 int nnodes);

/* gen 0 = the latest complete generation */
int store_reader_open(struct store *s, const char *job, uint64_t gen,
		      struct store_reader **out);
/* the same, loading one node's index only: its pages and blobs, for its restore */
int store_reader_open_node(struct store *s, const char *job, uint64_t gen, const char *node,
			   struct store_reader **out);
uint64_t store_reader_gen(struct store_reader *r);
int store_get_blob(struct store_reader *r, const char *name, void **buf, size_t *len);
int store_get_page(struct store_reader *r, const struct store_ref *ref, void *page);
void store_reader_close(struct store_reader *r);
/* the generation's writers, and its blobs (by index; each with its writer's name) */
int store_reader_nodes(const struct store_reader *r);
const char *store_reader_node(const struct store_reader *r, int i);
int store_reader_files(const struct store_reader *r);
const char *store_reader_file(const struct store_reader *r, int i, const char **node);

/* visible generations of a job, ascending; *out is malloc'ed */
int store_list_gens(struct store *s, const char *job, struct store_gen_info **out, int *n);
/* jobs of the store, sorted; free with store_free_names() */
int store_list_jobs(struct store *s, char ***jobs, int *n);
void store_free_names(char **names, int n);

/* check every object of a generation (0 = latest); -EBADMSG names the first bad one */
int store_verify(struct store *s, const char *job, uint64_t gen);

/* what gc and rm removed */
struct store_gc_stats {
	int partials;		/* partial generations */
	int gens;		/* complete generations */
	int packs;		/* pack files */
	uint64_t bytes;		/* of all files removed */
};

/*
 * Reclaim space of one job (or all jobs if job is NULL): partial generations
 * older than grace seconds (all with STORE_GC_FORCE), generations beyond the
 * newest keep (0 = keep all) and pack files no retained generation references.
 * While a job has a generation being written, its packs are all kept: the
 * writer may reference any of them.  st may be NULL.
 */
int store_gc(struct store *s, const char *job, int keep, unsigned grace, unsigned flags,
	     struct store_gc_stats *st);
/* remove a whole job (gen 0) or one generation of it, then what only it used */
int store_rm(struct store *s, const char *job, uint64_t gen, struct store_gc_stats *st);

/*
 * The store command line: argv[0] is the subcommand, one of "ls [JOB]",
 * "show JOB [GEN]", "verify JOB [GEN]", "gc [--keep K] [--force] [--grace S] [JOB]",
 * "rm JOB [GEN]".  The store is given by -S/--store DIR anywhere after it, or by
 * $CRD_STORE.  Prints to stdout; returns the exit code.
 */
int store_cli(int argc, char **argv);

#endif
