/* Internals of the image store shared by its files; not for users of store.h. */
#ifndef CRD_STORE_INT_H
#define CRD_STORE_INT_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

#define STORE_NAME_MAX		64	/* job and node names */
#define STORE_BLOB_NAME_MAX	255
#define STORE_PATH_MAX		4096

struct store {
	char *dir;
};

/* ------------------------------------------------------------ paths (store.c) */

int store_valid_name(const char *s);
int store_valid_blob_name(const char *s);
/* snprintf into a STORE_PATH_MAX buffer; -ENAMETOOLONG logged */
int store_path(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int store_job_path(const struct store *s, const char *job, char *buf);
int store_gen_path(const struct store *s, const char *job, uint64_t gen, int partial, char *buf);
int store_fsync_path(const char *path);
/* whole regular file into a malloc'ed buffer, NUL-terminated; -errno, not logged */
int store_slurp(const char *path, char **buf, size_t *len);
/* unlink everything in a directory and the directory */
int store_rmtree(const char *path);

/* -------------------------------------------------------- generations (gens.c) */

struct gen_ent {
	uint64_t gen;
	int partial;
};

/* gen-* entries of a job directory, ascending; -ENOENT if the job does not exist */
int store_scan_gens(const struct store *s, const char *job, struct gen_ent **out, int *n);

/* -------------------------------------------------------- pack sets (packset.c) */

struct pack_id {
	uint64_t gen;
	char node[STORE_NAME_MAX + 1];
};

struct pack_set {
	struct pack_id *v;
	int n, cap;
};

/* index of (gen, node) in the set, added if missing; -ENOMEM */
int packset_add(struct pack_set *ps, uint64_t gen, const char *node);
int packset_find(const struct pack_set *ps, uint64_t gen, const char *node);
void packset_free(struct pack_set *ps);
int store_pack_path(const struct store *s, const char *job, const struct pack_id *p,
		    int partial, char *buf);

/* ------------------------------------------------------ ref tables (reftab.c) */

#define LOC_COMPRESSED	0x1	/* stored chunk is zstd */
#define LOC_USED	0x2	/* referenced by the generation being written */

/* where one page is: the hash table's slot */
struct store_loc {
	uint64_t lo, hi;
	uint64_t off;
	uint32_t len;		/* stored length */
	uint32_t pack;		/* index in the owner's pack_set */
	uint32_t flags;
};

struct ref_table {
	struct store_loc *slots;
	size_t cap, count;	/* cap is a power of two; a free slot has lo == hi == 0 */
};

int reftab_init(struct ref_table *t, size_t hint);
void reftab_free(struct ref_table *t);
/* room for more entries without growing on the way */
int reftab_reserve(struct ref_table *t, size_t more);
struct store_loc *reftab_find(const struct ref_table *t, uint64_t lo, uint64_t hi);
/* insert a copy of loc (its hash must not be there); returns the slot or NULL */
struct store_loc *reftab_insert(struct ref_table *t, const struct store_loc *loc);

/* ----------------------------------------------------------- index files (idx.c) */

struct blob_ent {
	char *name;
	uint64_t off;		/* in the node's own pack */
	uint64_t stored_len;
	uint64_t raw_len;
	uint64_t hash;		/* XXH3_64 of the raw bytes */
	uint32_t flags;		/* LOC_COMPRESSED */
	uint32_t pack;		/* index in the owner's pack_set */
};

struct blob_list {
	struct blob_ent *v;
	int n, cap;
	int sorted;		/* by name, for bsearch */
};

/* adds a copy, name included */
int bloblist_add(struct blob_list *bl, const struct blob_ent *b);
void bloblist_sort(struct blob_list *bl);
struct blob_ent *bloblist_find(const struct blob_list *bl, const char *name);
void bloblist_free(struct blob_list *bl);

/*
 * Write the index of a writer: every USED entry of t, the packs they are in
 * and the blobs.  map turns the pack numbers of entries and blobs into
 * indexes of packs.  One buffer, one write, fsync.
 */
int idx_write(const char *path, const struct ref_table *t, const struct pack_set *packs,
	      const int *map, const struct blob_list *blobs);
/*
 * Load an index into t, mapping its packs into the set packs; entries
 * already in t are kept, new ones get extra_flags.  blobs (if not NULL)
 * get the index's blobs.  -EBADMSG is logged with the path.
 */
int idx_load(const char *path, struct ref_table *t, struct pack_set *packs,
	     struct blob_list *blobs, uint32_t extra_flags);

/* ------------------------------------------------------------- packs (pack.c) */

#define PACK_MAGIC	"CRSTPAK1"
#define PACK_HDR_SIZE	64

struct pack_writer {
	char path[STORE_PATH_MAX];
	int fd;
	char *buf;
	size_t buf_len, buf_cap;
	uint64_t off;		/* file offset of the next appended byte */
	uint64_t data_bytes;	/* appended after the header */
};

int pack_create(struct pack_writer *pw, const char *path);
int pack_append(struct pack_writer *pw, const void *data, size_t len, uint64_t *off);
int pack_flush(struct pack_writer *pw);
int pack_sync(struct pack_writer *pw);
void pack_close(struct pack_writer *pw);

/* --------------------------------------------------------- manifests (manifest.c) */

struct mnode {
	char name[STORE_NAME_MAX + 1];
	uint64_t pages, zero, new_pages, logical, stored;
};

struct mfile {
	char *name;
	int node;		/* index in nodes */
	uint64_t size, hash;
};

/* a MANIFEST, or a NODE.done (one node, no job/gen/created) */
struct manifest {
	int is_done;
	char job[STORE_NAME_MAX + 1];
	uint64_t gen;
	int64_t created;
	uint64_t logical, stored;
	struct mnode *nodes;
	int nnodes;
	struct mfile *files;
	int nfiles;
	struct pack_set packs;
};

void manifest_free(struct manifest *m);
/* write to dir/name through name.tmp, fsync both and the directory */
int manifest_write(const struct manifest *m, const char *dir, const char *name);
/* parse and check; -ENOENT if missing, -EBADMSG (logged at debug) if bad */
int manifest_read(const char *path, struct manifest *m);
int manifest_add_node(struct manifest *m, const struct mnode *n);
/* index of the node in the manifest, or -1 */
int manifest_find_node(const struct manifest *m, const char *name);
int manifest_add_file(struct manifest *m, const char *name, int node, uint64_t size,
		      uint64_t hash);
/* the manifest of a visible generation (gen 0 = latest); -ENOENT logged */
int store_load_manifest(const struct store *s, const char *job, uint64_t gen,
			struct manifest *m);

/* ------------------------------------------------------------ readers (reader.c) */

/* here, not in reader.c, because verify walks its tables */
struct store_reader {
	const struct store *s;
	char job[STORE_NAME_MAX + 1];
	struct manifest m;
	struct ref_table tab;
	struct pack_set packs;
	struct blob_list blobs;
	int *fds;		/* per pack, opened on first use */
	void *dctx;		/* ZSTD_DCtx */
};

/* ---------------------------------------------------------------- chunks */

/* read, decompress and check the page at loc; -EBADMSG logged naming it all */
int store_read_page(int fd, const char *pack_path, const char *job, uint64_t gen,
		    const struct store_loc *loc, void *page, void *dctx);

#endif
