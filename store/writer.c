/*
 * One node's writer of one generation.  Pages already stored by a complete
 * earlier generation (any node) or by this writer are referenced where they
 * are; new ones are appended to NODE.pack.  Nothing is visible to readers
 * until store_commit().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "log.h"
#include "store-int.h"

#define ZSTD_LEVEL	1	/* fast: the writer has to keep up with the dump */

struct store_writer {
	const struct store *s;
	char job[STORE_NAME_MAX + 1];
	char node[STORE_NAME_MAX + 1];
	uint64_t gen;
	unsigned flags;
	char dir[STORE_PATH_MAX];	/* gen-G.partial */
	struct pack_writer pack;
	struct ref_table tab;
	struct pack_set packs;		/* 0 is our own */
	struct blob_list blobs;
	ZSTD_CCtx *cctx;
	char zbuf[ZSTD_COMPRESSBOUND(STORE_PAGE_SIZE)];
	struct store_writer_stats st;
	int err;			/* sticky: the first failure */
	int owns_files;			/* NODE.* are ours: the pack was created O_EXCL */
};

static int page_is_zero(const void *page)
{
	const uint64_t *p = page;
	size_t i;

	for (i = 0; i < STORE_PAGE_SIZE / 8; i += 8)
		if (p[i] | p[i + 1] | p[i + 2] | p[i + 3] | p[i + 4] | p[i + 5] | p[i + 6] |
		    p[i + 7])
			return 0;
	return 1;
}

/* the indexes of the complete earlier generations, newest first (first one wins) */
static void load_earlier(struct store_writer *w)
{
	char path[STORE_PATH_MAX];
	struct manifest m;
	struct gen_ent *v;
	int n, i, j;

	if (store_scan_gens(w->s, w->job, &v, &n))
		return;
	for (i = n - 1; i >= 0; i--) {
		if (v[i].partial || v[i].gen >= w->gen)
			continue;
		if (store_path(path, "%s/jobs/%s/gen-%llu/MANIFEST", w->s->dir, w->job,
			       (unsigned long long)v[i].gen) || manifest_read(path, &m))
			continue;
		for (j = 0; j < m.nnodes; j++) {
			if ((w->flags & STORE_DEDUP_NODE) && strcmp(m.nodes[j].name, w->node))
				continue;
			if (store_path(path, "%s/jobs/%s/gen-%llu/%s.idx", w->s->dir, w->job,
				       (unsigned long long)v[i].gen, m.nodes[j].name))
				continue;
			/* a lost index only costs deduplication */
			if (idx_load(path, &w->tab, &w->packs, NULL, 0))
				pr_warn("store: job %s gen %llu: not deduplicating against %s\n",
					w->job, (unsigned long long)w->gen, path);
		}
		manifest_free(&m);
	}
	free(v);
}

static int make_dirs(struct store_writer *w)
{
	char path[STORE_PATH_MAX];
	struct stat st;
	int ret;

	ret = store_job_path(w->s, w->job, path);
	if (ret)
		return ret;
	if (!mkdir(path, 0755)) {
		/* a new job: its directory entry must survive a crash like its files */
		*strrchr(path, '/') = '\0';
		store_fsync_path(path);
	} else if (errno != EEXIST) {
		goto fail;
	}
	ret = store_gen_path(w->s, w->job, w->gen, 0, path);
	if (ret)
		return ret;
	if (!stat(path, &st)) {
		pr_err("store: %s: generation %llu of job %s is already committed\n", path,
		       (unsigned long long)w->gen, w->job);
		return -EEXIST;
	}
	ret = store_gen_path(w->s, w->job, w->gen, 1, w->dir);
	if (ret)
		return ret;
	if (mkdir(w->dir, 0755) && errno != EEXIST) {
		strcpy(path, w->dir);
		goto fail;
	}
	return 0;
fail:
	ret = -errno;
	pr_perror("store: job %s gen %llu: can't create %s", w->job,
		  (unsigned long long)w->gen, path);
	return ret;
}

static int writer_init(struct store_writer *w)
{
	char path[STORE_PATH_MAX];
	int ret;

	ret = make_dirs(w);
	if (ret)
		return ret;
	if (reftab_init(&w->tab, 0) || packset_add(&w->packs, w->gen, w->node) != 0)
		return -ENOMEM;
	if ((w->flags & STORE_COMPRESS) && !(w->cctx = ZSTD_createCCtx()))
		return -ENOMEM;
	ret = store_path(path, "%s/%s.pack", w->dir, w->node);
	if (ret)
		return ret;
	ret = pack_create(&w->pack, path);
	if (ret)
		return ret;
	w->owns_files = 1;
	load_earlier(w);
	return 0;
}

static void writer_free(struct store_writer *w)
{
	pack_close(&w->pack);
	reftab_free(&w->tab);
	packset_free(&w->packs);
	bloblist_free(&w->blobs);
	ZSTD_freeCCtx(w->cctx);
	free(w);
}

int store_writer_begin(struct store *s, const char *job, uint64_t gen, const char *node,
		       unsigned flags, struct store_writer **out)
{
	struct store_writer *w;
	int ret;

	if (!store_valid_name(job) || !store_valid_name(node) || !gen) {
		pr_err("store %s: invalid job '%s', node '%s' or generation %llu\n", s->dir, job,
		       node, (unsigned long long)gen);
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		pr_err("store %s: job %s: out of memory\n", s->dir, job);
		return -ENOMEM;
	}
	w->s = s;
	strcpy(w->job, job);
	strcpy(w->node, node);
	w->gen = gen;
	w->flags = flags;
	w->pack.fd = -1;
	ret = writer_init(w);
	if (ret) {
		if (ret == -ENOMEM)
			pr_err("store %s: job %s gen %llu: out of memory\n", s->dir, job,
			       (unsigned long long)gen);
		store_writer_abort(w);
		return ret;
	}
	*out = w;
	return 0;
}

/* the chunk to store for data: compressed if that is smaller */
static const void *chunk(struct store_writer *w, const void *data, size_t *len, uint32_t *flags)
{
	size_t n;

	*flags = 0;
	if (!w->cctx)
		return data;
	n = ZSTD_compressCCtx(w->cctx, w->zbuf, sizeof(w->zbuf), data, *len, ZSTD_LEVEL);
	if (ZSTD_isError(n) || n >= *len)
		return data;
	*len = n;
	*flags = LOC_COMPRESSED;
	return w->zbuf;
}

int store_put_page(struct store_writer *w, const void *page, struct store_ref *ref)
{
	struct store_loc loc, *l;
	XXH128_hash_t h;
	const void *data;
	size_t len = STORE_PAGE_SIZE;
	int ret;

	if (w->err)
		return w->err;
	w->st.pages++;
	w->st.logical += STORE_PAGE_SIZE;
	if (page_is_zero(page)) {
		ref->lo = ref->hi = 0;
		w->st.zero_pages++;
		return 0;
	}
	h = XXH3_128bits(page, STORE_PAGE_SIZE);
	ref->lo = h.low64;
	ref->hi = h.high64;
	l = reftab_find(&w->tab, h.low64, h.high64);
	if (l) {
		l->flags |= LOC_USED;
		return 0;
	}
	data = chunk(w, page, &len, &loc.flags);
	ret = pack_append(&w->pack, data, len, &loc.off);
	if (ret)
		return w->err = ret;
	loc.lo = h.low64;
	loc.hi = h.high64;
	loc.len = len;
	loc.pack = 0;
	loc.flags |= LOC_USED;
	if (!reftab_insert(&w->tab, &loc)) {
		pr_err("store: job %s gen %llu node %s: out of memory\n", w->job,
		       (unsigned long long)w->gen, w->node);
		return w->err = -ENOMEM;
	}
	w->st.new_pages++;
	return 0;
}

static int put_blob_data(struct store_writer *w, struct blob_ent *b, const void *buf,
			 size_t len)
{
	size_t bound = ZSTD_compressBound(len), n;
	void *z = NULL;
	int ret;

	b->flags = 0;
	if (w->cctx && len && (z = malloc(bound))) {
		n = ZSTD_compressCCtx(w->cctx, z, bound, buf, len, ZSTD_LEVEL);
		if (!ZSTD_isError(n) && n < len) {
			buf = z;
			len = n;
			b->flags = LOC_COMPRESSED;
		}
	}
	b->stored_len = len;
	ret = pack_append(&w->pack, buf, len, &b->off);
	free(z);
	return ret;
}

int store_put_blob(struct store_writer *w, const char *name, const void *buf, size_t len)
{
	struct blob_ent b = { .name = (char *)name, .raw_len = len, .pack = 0 };
	int ret;

	if (w->err)
		return w->err;
	if (!store_valid_blob_name(name)) {
		pr_err("store: job %s gen %llu: invalid blob name '%s'\n", w->job,
		       (unsigned long long)w->gen, name);
		return -EINVAL;
	}
	if (bloblist_find(&w->blobs, name)) {
		pr_err("store: job %s gen %llu node %s: blob %s put twice\n", w->job,
		       (unsigned long long)w->gen, w->node, name);
		return -EEXIST;
	}
	b.hash = XXH3_64bits(buf, len);
	ret = put_blob_data(w, &b, buf, len);
	if (!ret && bloblist_add(&w->blobs, &b)) {
		pr_err("store: job %s gen %llu: out of memory\n", w->job,
		       (unsigned long long)w->gen);
		ret = -ENOMEM;
	}
	if (ret)
		return w->err = ret;
	w->st.logical += len;
	return 0;
}

void store_writer_stats(const struct store_writer *w, struct store_writer_stats *st)
{
	*st = w->st;
	st->stored = w->pack.data_bytes;
}

/* the packs the generation references: ours and those of USED pages, renumbered */
static int used_packs(struct store_writer *w, struct pack_set *out, int **mapp)
{
	int *map = calloc(w->packs.n, sizeof(*map));
	size_t i;
	int k;

	if (!map)
		return -ENOMEM;
	for (k = 0; k < w->packs.n; k++)
		map[k] = -1;
	map[0] = packset_add(out, w->gen, w->node);
	for (i = 0; i < w->tab.cap && map[0] >= 0; i++) {
		const struct store_loc *l = &w->tab.slots[i];

		if (!(l->flags & LOC_USED) || map[l->pack] >= 0)
			continue;
		map[l->pack] = packset_add(out, w->packs.v[l->pack].gen,
					   w->packs.v[l->pack].node);
		if (map[l->pack] < 0)
			map[0] = -ENOMEM;
	}
	if (map[0] < 0) {
		free(map);
		return -ENOMEM;
	}
	*mapp = map;
	return 0;
}

static int write_done(struct store_writer *w, struct pack_set *packs)
{
	struct manifest m = { .is_done = 1 };
	struct mnode n = { 0 };
	int i, ret;

	strcpy(n.name, w->node);
	n.pages = w->st.pages;
	n.zero = w->st.zero_pages;
	n.new_pages = w->st.new_pages;
	n.logical = w->st.logical;
	n.stored = w->pack.data_bytes;
	ret = manifest_add_node(&m, &n);
	for (i = 0; !ret && i < w->blobs.n; i++)
		ret = manifest_add_file(&m, w->blobs.v[i].name, 0, w->blobs.v[i].raw_len,
					w->blobs.v[i].hash);
	m.packs = *packs;
	if (!ret) {
		char name[STORE_NAME_MAX + 8];

		snprintf(name, sizeof(name), "%s.done", w->node);
		ret = manifest_write(&m, w->dir, name);
	}
	memset(&m.packs, 0, sizeof(m.packs));
	manifest_free(&m);
	return ret;
}

static int writer_finish(struct store_writer *w)
{
	char path[STORE_PATH_MAX];
	struct pack_set packs = { 0 };
	int *map = NULL, ret;

	if (w->err)
		return w->err;
	ret = pack_sync(&w->pack);
	if (ret)
		return ret;
	ret = used_packs(w, &packs, &map);
	if (ret)
		goto out;
	ret = store_path(path, "%s/%s.idx", w->dir, w->node);
	if (!ret)
		ret = idx_write(path, &w->tab, &packs, map, &w->blobs);
	if (!ret)
		ret = write_done(w, &packs);
out:
	if (ret == -ENOMEM)
		pr_err("store: job %s gen %llu node %s: out of memory\n", w->job,
		       (unsigned long long)w->gen, w->node);
	free(map);
	packset_free(&packs);
	return ret;
}

int store_writer_finish(struct store_writer *w)
{
	int ret = writer_finish(w);

	if (ret) {
		/* what is half written is of no use to anyone: free the space */
		store_writer_abort(w);
		return ret;
	}
	writer_free(w);
	return 0;
}

void store_writer_abort(struct store_writer *w)
{
	static const char *const ext[] = { "pack", "idx", "done", "done.tmp" };
	char path[STORE_PATH_MAX];
	size_t i;

	if (!w)
		return;
	pack_close(&w->pack);
	for (i = 0; w->owns_files && i < sizeof(ext) / sizeof(ext[0]); i++)
		if (!store_path(path, "%s/%s.%s", w->dir, w->node, ext[i]) && unlink(path) &&
		    errno != ENOENT)
			pr_perror("store: can't remove %s", path);
	/* the last writer out removes the directory; others' files keep it */
	if (w->dir[0])
		rmdir(w->dir);
	writer_free(w);
}

int store_put_ref(struct store_writer *w, const struct store_ref *ref)
{
	struct store_loc *l;

	if (w->err)
		return w->err;
	w->st.pages++;
	w->st.logical += STORE_PAGE_SIZE;
	if (!ref->lo && !ref->hi) {
		w->st.zero_pages++;
		return 0;
	}
	l = reftab_find(&w->tab, ref->lo, ref->hi);
	if (!l) {
		pr_err("store: job %s gen %llu node %s: page %016llx%016llx is not known\n",
		       w->job, (unsigned long long)w->gen, w->node, (unsigned long long)ref->hi,
		       (unsigned long long)ref->lo);
		return -ENOENT;
	}
	l->flags |= LOC_USED;
	return 0;
}

int store_writer_adopt(struct store_writer *w, const char *node)
{
	char path[STORE_PATH_MAX];
	int ret;

	if (!store_valid_name(node))
		return -EINVAL;
	ret = store_path(path, "%s/%s.idx", w->dir, node);
	if (!ret)
		ret = idx_load(path, &w->tab, &w->packs, NULL, 0);
	if (ret)
		pr_err("store: job %s gen %llu: can't take over the pages of %s: %s\n", w->job,
		       (unsigned long long)w->gen, node, strerror(-ret));
	return ret;
}

const char *store_writer_dir(const struct store_writer *w)
{
	return w->dir;
}
