/*
 * Index files.  One per writer and generation, written once at the end:
 *
 *   header   magic, version, counts
 *   packs    npacks x { u64 gen, u16 len, node name }
 *   entries  nentries x { u64 lo, hi, off, u32 pack, u32 len | flags << 24 }
 *   blobs    nblobs x { u64 off, stored_len, raw_len, hash, u32 flags, pack,
 *                       u16 len, name }
 *   trailer  u64 XXH3_64 of everything before it
 *
 * It lists every page the generation references, those in packs of earlier
 * generations too, so that a generation reads without any other's index.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <unistd.h>

#include <xxhash.h>

#include "log.h"
#include "util.h"
#include "store-int.h"

#define IDX_MAGIC	"CRSTIDX1"
#define IDX_VERSION	1

struct idx_hdr {
	char magic[8];
	uint32_t version;
	uint32_t npacks;
	uint64_t nentries;
	uint32_t nblobs;
	uint32_t pad;
};

struct idx_rec {
	uint64_t lo, hi, off;
	uint32_t pack;
	uint32_t len_flags;
};

/* ------------------------------------------------------------ blob lists */

int bloblist_add(struct blob_list *bl, const struct blob_ent *b)
{
	if (bl->n == bl->cap) {
		int cap = bl->cap ? bl->cap * 2 : 16;
		struct blob_ent *nv = realloc(bl->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		bl->v = nv;
		bl->cap = cap;
	}
	bl->v[bl->n] = *b;
	bl->v[bl->n].name = strdup(b->name);
	if (!bl->v[bl->n].name)
		return -ENOMEM;
	bl->n++;
	bl->sorted = 0;
	return 0;
}

static int blob_cmp(const void *a, const void *b)
{
	return strcmp(((const struct blob_ent *)a)->name, ((const struct blob_ent *)b)->name);
}

void bloblist_sort(struct blob_list *bl)
{
	if (bl->n > 1)
		qsort(bl->v, bl->n, sizeof(*bl->v), blob_cmp);
	bl->sorted = 1;
}

struct blob_ent *bloblist_find(const struct blob_list *bl, const char *name)
{
	struct blob_ent key = { .name = (char *)name };
	int i;

	if (!bl->n)
		return NULL;
	if (bl->sorted)
		return bsearch(&key, bl->v, bl->n, sizeof(*bl->v), blob_cmp);
	for (i = 0; i < bl->n; i++)
		if (!strcmp(bl->v[i].name, name))
			return &bl->v[i];
	return NULL;
}

void bloblist_free(struct blob_list *bl)
{
	int i;

	for (i = 0; i < bl->n; i++)
		free(bl->v[i].name);
	free(bl->v);
	memset(bl, 0, sizeof(*bl));
}

/* ------------------------------------------------------------ writing */

struct bbuf {
	char *p;
	size_t len, cap;
};

static int bb_put(struct bbuf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *np;

		while (cap < b->len + len)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static int bb_put_name(struct bbuf *b, const char *name)
{
	uint16_t len = strlen(name);

	return bb_put(b, &len, sizeof(len)) ?: bb_put(b, name, len);
}

static int put_entries(struct bbuf *b, const struct ref_table *t, const int *map, uint64_t *n)
{
	size_t i;

	*n = 0;
	for (i = 0; i < t->cap; i++) {
		const struct store_loc *l = &t->slots[i];
		struct idx_rec r;

		if (!(l->flags & LOC_USED))
			continue;
		r.lo = l->lo;
		r.hi = l->hi;
		r.off = l->off;
		r.pack = map[l->pack];
		r.len_flags = l->len | (l->flags & LOC_COMPRESSED) << 24;
		if (bb_put(b, &r, sizeof(r)))
			return -ENOMEM;
		(*n)++;
	}
	return 0;
}

static int put_blobs(struct bbuf *b, const struct blob_list *bl, const int *map)
{
	int i;

	for (i = 0; i < bl->n; i++) {
		const struct blob_ent *e = &bl->v[i];
		uint64_t q[4] = { e->off, e->stored_len, e->raw_len, e->hash };
		uint32_t w[2] = { e->flags, map[e->pack] };

		if (bb_put(b, q, sizeof(q)) || bb_put(b, w, sizeof(w)) ||
		    bb_put_name(b, e->name))
			return -ENOMEM;
	}
	return 0;
}

static int idx_build(struct bbuf *b, const struct ref_table *t, const struct pack_set *packs,
		     const int *map, const struct blob_list *blobs)
{
	struct idx_hdr hdr = { .magic = IDX_MAGIC, .version = IDX_VERSION };
	uint64_t sum;
	int i;

	hdr.npacks = packs->n;
	hdr.nblobs = blobs->n;
	if (bb_put(b, &hdr, sizeof(hdr)))
		return -ENOMEM;
	for (i = 0; i < packs->n; i++)
		if (bb_put(b, &packs->v[i].gen, 8) || bb_put_name(b, packs->v[i].node))
			return -ENOMEM;
	if (put_entries(b, t, map, &hdr.nentries) || put_blobs(b, blobs, map))
		return -ENOMEM;
	memcpy(b->p, &hdr, sizeof(hdr));
	sum = XXH3_64bits(b->p, b->len);
	return bb_put(b, &sum, sizeof(sum));
}

/*
 * An index is written zstd-compressed: half of each entry (offsets, pack
 * numbers, lengths) compresses well, and every generation lists every page
 * it references, so this is most of a small generation's cost.
 */
#define IDX_Z_MAGIC	"CRSTIDZ1"

struct idx_z_hdr {
	char magic[8];
	uint64_t raw_len;
};

static int compress_idx(struct bbuf *b)
{
	size_t cap = ZSTD_compressBound(b->len) + sizeof(struct idx_z_hdr), n;
	struct idx_z_hdr h = { .raw_len = b->len };
	char *z = malloc(cap);

	if (!z)
		return -ENOMEM;
	memcpy(h.magic, IDX_Z_MAGIC, 8);
	n = ZSTD_compress(z + sizeof(h), cap - sizeof(h), b->p, b->len, 3);
	if (ZSTD_isError(n)) {
		free(z);
		return -EIO;
	}
	memcpy(z, &h, sizeof(h));
	free(b->p);
	b->p = z;
	b->len = n + sizeof(h);
	return 0;
}

static int decompress_idx(char **buf, size_t *len)
{
	struct idx_z_hdr h;
	char *raw;
	size_t n;

	if (*len < sizeof(h) || memcmp(*buf, IDX_Z_MAGIC, 8))
		return 0;
	memcpy(&h, *buf, sizeof(h));
	if (h.raw_len > (1ULL << 40) || !(raw = malloc(h.raw_len ? h.raw_len : 1)))
		return -EBADMSG;
	n = ZSTD_decompress(raw, h.raw_len, *buf + sizeof(h), *len - sizeof(h));
	if (ZSTD_isError(n) || n != h.raw_len) {
		free(raw);
		return -EBADMSG;
	}
	free(*buf);
	*buf = raw;
	*len = n;
	return 0;
}

int idx_write(const char *path, const struct ref_table *t, const struct pack_set *packs,
	      const int *map, const struct blob_list *blobs)
{
	struct bbuf b = { 0 };
	int fd, ret;

	ret = idx_build(&b, t, packs, map, blobs);
	if (!ret)
		ret = compress_idx(&b);
	if (ret) {
		pr_err("store: %s: out of memory\n", path);
		goto out;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		pr_perror("store: can't create %s", path);
		goto out;
	}
	ret = write_all(fd, b.p, b.len);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret)
		pr_err("store: can't write %s: %s\n", path, strerror(-ret));
	close(fd);
out:
	free(b.p);
	return ret;
}

/* ------------------------------------------------------------ loading */

struct cursor {
	const char *p, *end;
};

static const void *take(struct cursor *c, size_t len)
{
	const char *p = c->p;

	if ((size_t)(c->end - c->p) < len)
		return NULL;
	c->p += len;
	return p;
}

/* copy out: the records after a name are not aligned */
static int take_copy(struct cursor *c, void *out, size_t len)
{
	const void *p = take(c, len);

	if (!p)
		return -EBADMSG;
	memcpy(out, p, len);
	return 0;
}

/* a name as written by bb_put_name, copied into out (size max + 1) */
static int take_name(struct cursor *c, char *out, size_t max)
{
	uint16_t len;

	if (take_copy(c, &len, sizeof(len)) || !len || len > max || take_copy(c, out, len))
		return -EBADMSG;
	out[len] = '\0';
	return 0;
}

static int load_packs(struct cursor *c, uint32_t n, struct pack_set *packs, uint32_t *map)
{
	char node[STORE_NAME_MAX + 1];
	uint64_t gen;
	uint32_t i;
	int k;

	for (i = 0; i < n; i++) {
		if (take_copy(c, &gen, sizeof(gen)) || take_name(c, node, STORE_NAME_MAX) ||
		    !store_valid_name(node))
			return -EBADMSG;
		k = packset_add(packs, gen, node);
		if (k < 0)
			return k;
		map[i] = k;
	}
	return 0;
}

static int load_entries(struct cursor *c, uint64_t n, uint32_t npacks, const uint32_t *map,
			struct ref_table *t, uint32_t extra)
{
	struct idx_rec r;
	struct store_loc l;
	uint64_t i;

	for (i = 0; i < n; i++) {
		if (take_copy(c, &r, sizeof(r)) || r.pack >= npacks || (!r.lo && !r.hi))
			return -EBADMSG;
		if (reftab_find(t, r.lo, r.hi))
			continue;
		l.lo = r.lo;
		l.hi = r.hi;
		l.off = r.off;
		l.pack = map[r.pack];
		l.len = r.len_flags & 0xffffff;
		l.flags = (r.len_flags >> 24) | extra;
		if (!reftab_insert(t, &l))
			return -ENOMEM;
	}
	return 0;
}

static int load_blobs(struct cursor *c, uint32_t n, uint32_t npacks, const uint32_t *map,
		      struct blob_list *bl)
{
	char name[STORE_BLOB_NAME_MAX + 1];
	struct blob_ent b;
	uint64_t q[4];
	uint32_t w[2];
	uint32_t i;
	int ret;

	for (i = 0; i < n; i++) {
		if (take_copy(c, q, sizeof(q)) || take_copy(c, w, sizeof(w)) ||
		    w[1] >= npacks || take_name(c, name, STORE_BLOB_NAME_MAX))
			return -EBADMSG;
		if (!bl)
			continue;
		b = (struct blob_ent){ .name = name, .off = q[0], .stored_len = q[1],
				       .raw_len = q[2], .hash = q[3], .flags = w[0],
				       .pack = map[w[1]] };
		ret = bloblist_add(bl, &b);
		if (ret)
			return ret;
	}
	return 0;
}

static int idx_parse(const char *buf, size_t len, struct ref_table *t, struct pack_set *packs,
		     struct blob_list *blobs, uint32_t extra)
{
	const struct idx_hdr *hdr;
	struct cursor c;
	uint64_t sum;
	uint32_t *map;
	int ret;

	if (len < sizeof(*hdr) + sizeof(sum))
		return -EBADMSG;
	c.p = buf;
	c.end = buf + len - sizeof(sum);
	memcpy(&sum, c.end, sizeof(sum));
	hdr = take(&c, sizeof(*hdr));
	if (memcmp(hdr->magic, IDX_MAGIC, 8) || hdr->version != IDX_VERSION ||
	    XXH3_64bits(buf, len - sizeof(sum)) != sum)
		return -EBADMSG;
	map = calloc(hdr->npacks + 1, sizeof(*map));
	if (!map)
		return -ENOMEM;
	ret = load_packs(&c, hdr->npacks, packs, map);
	/* a corrupt count cannot pass the checksum; still, do not trust it with memory */
	if (!ret && hdr->nentries <= len / sizeof(struct idx_rec))
		ret = reftab_reserve(t, hdr->nentries);
	if (!ret)
		ret = load_entries(&c, hdr->nentries, hdr->npacks, map, t, extra);
	if (!ret)
		ret = load_blobs(&c, hdr->nblobs, hdr->npacks, map, blobs);
	if (!ret && c.p != c.end)
		ret = -EBADMSG;
	free(map);
	return ret;
}

int idx_load(const char *path, struct ref_table *t, struct pack_set *packs,
	     struct blob_list *blobs, uint32_t extra_flags)
{
	size_t len;
	char *buf;
	int ret;

	ret = store_slurp(path, &buf, &len);
	if (ret) {
		pr_err("store: can't read %s: %s\n", path, strerror(-ret));
		return ret;
	}
	ret = decompress_idx(&buf, &len);
	if (!ret)
		ret = idx_parse(buf, len, t, packs, blobs, extra_flags);
	free(buf);
	if (ret == -EBADMSG)
		pr_err("store: %s: corrupt index (bad checksum or structure)\n", path);
	else if (ret)
		pr_err("store: can't load %s: %s\n", path, strerror(-ret));
	return ret;
}
