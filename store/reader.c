/*
 * Reading a committed generation.  Its own indexes list every page it
 * references, wherever it is stored, so nothing of other generations but
 * their pack files is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "log.h"
#include "util.h"
#include "store-int.h"


static int load_indexes(struct store_reader *r, const char *node)
{
	char path[STORE_PATH_MAX];
	int i, ret, found = 0;

	for (i = 0; i < r->m.nnodes; i++) {
		if (node && strcmp(node, r->m.nodes[i].name))
			continue;
		found = 1;
		ret = store_path(path, "%s/jobs/%s/gen-%llu/%s.idx", r->s->dir, r->job,
				 (unsigned long long)r->m.gen, r->m.nodes[i].name);
		if (!ret)
			ret = idx_load(path, &r->tab, &r->packs, &r->blobs, 0);
		if (ret)
			return ret;
	}
	if (!found) {
		pr_err("store: job %s gen %llu: no node %s\n", r->job,
		       (unsigned long long)r->m.gen, node);
		return -ENOENT;
	}
	bloblist_sort(&r->blobs);
	r->fds = malloc((r->packs.n + 1) * sizeof(*r->fds));
	if (!r->fds)
		return -ENOMEM;
	for (i = 0; i < r->packs.n; i++)
		r->fds[i] = -1;
	return 0;
}

int store_reader_open(struct store *s, const char *job, uint64_t gen,
		      struct store_reader **out)
{
	return store_reader_open_node(s, job, gen, NULL, out);
}

int store_reader_open_node(struct store *s, const char *job, uint64_t gen, const char *node,
			   struct store_reader **out)
{
	struct store_reader *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = s;
	ret = store_load_manifest(s, job, gen, &r->m);
	if (ret) {
		free(r);
		return ret;
	}
	strcpy(r->job, job);
	ret = reftab_init(&r->tab, 0);
	if (!ret)
		ret = load_indexes(r, node);
	if (!ret && !(r->dctx = ZSTD_createDCtx()))
		ret = -ENOMEM;
	if (ret) {
		if (ret == -ENOMEM)
			pr_err("store: job %s gen %llu: out of memory\n", job,
			       (unsigned long long)r->m.gen);
		store_reader_close(r);
		return ret;
	}
	*out = r;
	return 0;
}

uint64_t store_reader_gen(struct store_reader *r)
{
	return r->m.gen;
}

void store_reader_close(struct store_reader *r)
{
	int i;

	if (!r)
		return;
	for (i = 0; r->fds && i < r->packs.n; i++)
		if (r->fds[i] >= 0)
			close(r->fds[i]);
	free(r->fds);
	ZSTD_freeDCtx(r->dctx);
	bloblist_free(&r->blobs);
	packset_free(&r->packs);
	reftab_free(&r->tab);
	manifest_free(&r->m);
	free(r);
}

static int pack_fd(struct store_reader *r, uint32_t pack, char *path)
{
	int ret = store_pack_path(r->s, r->job, &r->packs.v[pack], 0, path);

	if (ret)
		return ret;
	if (r->fds[pack] >= 0)
		return r->fds[pack];
	r->fds[pack] = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fds[pack] < 0) {
		ret = -errno;
		pr_perror("store: job %s gen %llu: can't open pack %s", r->job,
			  (unsigned long long)r->m.gen, path);
		return ret;
	}
	return r->fds[pack];
}

int store_get_page(struct store_reader *r, const struct store_ref *ref, void *page)
{
	char path[STORE_PATH_MAX];
	struct store_loc *l;
	int fd;

	if (!ref->lo && !ref->hi) {
		memset(page, 0, STORE_PAGE_SIZE);
		return 0;
	}
	l = reftab_find(&r->tab, ref->lo, ref->hi);
	if (!l) {
		pr_err("store: job %s gen %llu: page %016llx%016llx is not in the generation\n",
		       r->job, (unsigned long long)r->m.gen, (unsigned long long)ref->hi,
		       (unsigned long long)ref->lo);
		return -ENOENT;
	}
	fd = pack_fd(r, l->pack, path);
	if (fd < 0)
		return fd;
	return store_read_page(fd, path, r->job, r->m.gen, l, page, r->dctx);
}

static int blob_bytes(struct store_reader *r, const struct blob_ent *b, char *raw,
		      const char *path, int fd)
{
	ssize_t n = pread_all(fd, raw, b->stored_len, b->off);

	if (n < 0)
		return n;
	if ((uint64_t)n != b->stored_len)
		return -EBADMSG;
	return 0;
}

static int read_blob(struct store_reader *r, const struct blob_ent *b, char *out)
{
	char path[STORE_PATH_MAX], *raw = out;
	int fd, ret;

	fd = pack_fd(r, b->pack, path);
	if (fd < 0)
		return fd;
	if ((b->flags & LOC_COMPRESSED) && !(raw = malloc(b->stored_len + 1)))
		return -ENOMEM;
	ret = blob_bytes(r, b, raw, path, fd);
	if (!ret && raw != out) {
		size_t n = ZSTD_decompressDCtx(r->dctx, out, b->raw_len, raw, b->stored_len);

		if (ZSTD_isError(n) || n != b->raw_len)
			ret = -EBADMSG;
	}
	if (raw != out)
		free(raw);
	if (!ret && XXH3_64bits(out, b->raw_len) != b->hash)
		ret = -EBADMSG;
	if (ret)
		pr_err("store: job %s gen %llu: blob %s in %s at offset %llu: %s\n", r->job,
		       (unsigned long long)r->m.gen, b->name, path, (unsigned long long)b->off,
		       ret == -EBADMSG ? "corrupt (hash mismatch)" : strerror(-ret));
	return ret;
}

int store_get_blob(struct store_reader *r, const char *name, void **bufp, size_t *lenp)
{
	const struct blob_ent *b = bloblist_find(&r->blobs, name);
	char *buf;
	int ret;

	if (!b) {
		pr_err("store: job %s gen %llu: no blob %s\n", r->job,
		       (unsigned long long)r->m.gen, name);
		return -ENOENT;
	}
	buf = malloc(b->raw_len + 1);
	if (!buf)
		return -ENOMEM;
	ret = read_blob(r, b, buf);
	if (ret) {
		free(buf);
		return ret;
	}
	buf[b->raw_len] = '\0';
	*bufp = buf;
	*lenp = b->raw_len;
	return 0;
}

int store_reader_nodes(const struct store_reader *r)
{
	return r->m.nnodes;
}

const char *store_reader_node(const struct store_reader *r, int i)
{
	return i >= 0 && i < r->m.nnodes ? r->m.nodes[i].name : NULL;
}

int store_reader_files(const struct store_reader *r)
{
	return r->m.nfiles;
}

const char *store_reader_file(const struct store_reader *r, int i, const char **node)
{
	if (i < 0 || i >= r->m.nfiles)
		return NULL;
	if (node)
		*node = store_reader_node(r, r->m.files[i].node);
	return r->m.files[i].name;
}
