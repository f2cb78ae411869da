/*
 * Verifying a generation: its manifest and indexes parse (their checksums
 * match), every pack they name exists, every page hashes to its name and
 * every blob to the hash the manifest recorded.  Pages are read in pack and
 * offset order, which is the order they were written in.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "store-int.h"


static int loc_cmp(const void *a, const void *b)
{
	const struct store_loc *x = *(const struct store_loc *const *)a;
	const struct store_loc *y = *(const struct store_loc *const *)b;

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* a pack is there and starts with the pack header (the magic, then zeros) */
static int check_pack_file(struct store_reader *r, const struct pack_id *p)
{
	char path[STORE_PATH_MAX], hdr[PACK_HDR_SIZE], want[PACK_HDR_SIZE] = PACK_MAGIC;
	int fd, ok;

	if (store_pack_path(r->s, r->job, p, 0, path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("store: job %s gen %llu: pack %s", r->job,
			  (unsigned long long)r->m.gen, path);
		return -EBADMSG;
	}
	ok = pread_all(fd, hdr, sizeof(hdr), 0) == sizeof(hdr) && !memcmp(hdr, want, sizeof(hdr));
	close(fd);
	if (!ok) {
		pr_err("store: job %s gen %llu: pack %s: bad header\n", r->job,
		       (unsigned long long)r->m.gen, path);
		return -EBADMSG;
	}
	return 0;
}

static int check_packs(struct store_reader *r)
{
	int i, ret;

	for (i = 0; i < r->packs.n; i++) {
		const struct pack_id *p = &r->packs.v[i];

		if (packset_find(&r->m.packs, p->gen, p->node) < 0) {
			pr_err("store: job %s gen %llu: gen-%llu/%s.pack used, not in MANIFEST\n",
			       r->job, (unsigned long long)r->m.gen, (unsigned long long)p->gen,
			       p->node);
			return -EBADMSG;
		}
	}
	for (i = 0; i < r->m.packs.n; i++) {
		ret = check_pack_file(r, &r->m.packs.v[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static int check_pages(struct store_reader *r, uint64_t *npages)
{
	struct store_loc **v;
	char page[STORE_PAGE_SIZE];
	size_t i, n = 0;
	int ret = 0;

	v = malloc((r->tab.count + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < r->tab.cap; i++)
		if (r->tab.slots[i].lo || r->tab.slots[i].hi)
			v[n++] = &r->tab.slots[i];
	qsort(v, n, sizeof(*v), loc_cmp);
	for (i = 0; i < n && !ret; i++) {
		struct store_ref ref = { v[i]->lo, v[i]->hi };

		ret = store_get_page(r, &ref, page);
	}
	free(v);
	*npages = n;
	return ret;
}

static int check_blobs(struct store_reader *r)
{
	const struct manifest *m = &r->m;
	size_t len;
	void *buf;
	int i, ret;

	if (m->nfiles != r->blobs.n) {
		pr_err("store: job %s gen %llu: manifest lists %d blobs, indexes %d\n", r->job,
		       (unsigned long long)m->gen, m->nfiles, r->blobs.n);
		return -EBADMSG;
	}
	for (i = 0; i < m->nfiles; i++) {
		const struct mfile *f = &m->files[i];
		const struct blob_ent *b = bloblist_find(&r->blobs, f->name);

		if (!b || b->raw_len != f->size || b->hash != f->hash) {
			pr_err("store: job %s gen %llu: blob %s differs from the manifest\n",
			       r->job, (unsigned long long)m->gen, f->name);
			return -EBADMSG;
		}
		ret = store_get_blob(r, f->name, &buf, &len);
		if (ret)
			return ret;
		free(buf);
	}
	return 0;
}

int store_verify(struct store *s, const char *job, uint64_t gen)
{
	struct store_reader *r;
	uint64_t npages = 0;
	int ret;

	ret = store_reader_open(s, job, gen, &r);
	if (ret)
		return ret == -ENOENT ? ret : -EBADMSG;
	ret = check_packs(r);
	if (!ret)
		ret = check_pages(r, &npages);
	if (!ret)
		ret = check_blobs(r);
	if (!ret)
		pr_info("store: job %s gen %llu: %llu pages and %d blobs verified\n", job,
			(unsigned long long)r->m.gen, (unsigned long long)npages, r->m.nfiles);
	store_reader_close(r);
	return ret;
}
