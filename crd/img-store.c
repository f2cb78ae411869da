/* Images in the store: see include/img-store.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "store.h"
#include "util.h"
#include "img-store.h"

#define REFS_DATA_OFF	64	/* header, then u64 length and hash of the data, then refs */
#define STAGE_BUF	(1 << 20)

struct refs_head {
	uint64_t len;		/* bytes of data the references stand for */
	uint64_t reserved;	/* the pages' own hashes check them: no checksum of all */
};

static int grow_refs(struct img_pages_writer *w)
{
	size_t cap = w->cap_refs ? w->cap_refs * 2 : 1024;
	struct store_ref *r;

	if (w->nrefs < w->cap_refs)
		return 0;
	r = realloc(w->refs, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	w->refs = r;
	w->cap_refs = cap;
	return 0;
}

static int put_page(struct img_pages_writer *w, const void *page)
{
	int ret = grow_refs(w);

	if (ret)
		return ret;
	ret = store_put_page(w->sw, page, &w->refs[w->nrefs]);
	if (ret) {
		pr_err("%s: can't put a page into the store: %s\n", w->name, strerror(-ret));
		return ret;
	}
	w->nrefs++;
	return 0;
}

int img_refs_put(struct img_pages_writer *w, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	int ret;

	w->len += len;
	while (len) {
		if (!w->plen && len >= PAGE_SIZE) {
			ret = put_page(w, p);
			if (ret)
				return ret;
			p += PAGE_SIZE;
			len -= PAGE_SIZE;
			continue;
		}
		/* the tail of a file (capture) or a page split between writes */
		if (!w->part && !(w->part = calloc(1, PAGE_SIZE)))
			return -ENOMEM;
		size_t n = len < PAGE_SIZE - w->plen ? len : PAGE_SIZE - w->plen;

		memcpy(w->part + w->plen, p, n);
		w->plen += n;
		p += n;
		len -= n;
		if (w->plen == PAGE_SIZE) {
			ret = put_page(w, w->part);
			if (ret)
				return ret;
			w->plen = 0;
		}
	}
	return 0;
}

int img_refs_put_ref(struct img_pages_writer *w, const struct store_ref *ref)
{
	int ret;

	if (w->plen)
		return -EINVAL;	/* only whole pages come by reference */
	ret = grow_refs(w);
	if (!ret)
		ret = store_put_ref(w->sw, ref);
	if (ret)
		return ret;
	w->refs[w->nrefs++] = *ref;
	w->len += PAGE_SIZE;
	return 0;
}

int img_refs_finish(struct img_pages_writer *w, const struct img_hdr *data_hdr)
{
	struct refs_head rh = { data_hdr->payload_len, 0 };
	struct img_hdr hdr = *data_hdr;
	XXH3_state_t *st = XXH3_createState();
	int ret = 0;

	if (w->plen) {
		memset(w->part + w->plen, 0, PAGE_SIZE - w->plen);
		ret = put_page(w, w->part);
		w->plen = 0;
	}
	if (!st)
		return -ENOMEM;
	hdr.type = IMG_PAGES_REFS;
	hdr.data_off = REFS_DATA_OFF;
	hdr.payload_len = sizeof(rh) + w->nrefs * sizeof(*w->refs);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, &rh, sizeof(rh));
	XXH3_64bits_update(st, w->refs, w->nrefs * sizeof(*w->refs));
	hdr.payload_hash = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	if (!ret && (pwrite(w->fd, &hdr, sizeof(hdr), 0) != sizeof(hdr) ||
		     pwrite(w->fd, &rh, sizeof(rh), REFS_DATA_OFF) != sizeof(rh) ||
		     pwrite(w->fd, w->refs, w->nrefs * sizeof(*w->refs),
			    REFS_DATA_OFF + sizeof(rh)) != (ssize_t)(w->nrefs * sizeof(*w->refs))))
		ret = errno ? -errno : -EIO;
	return ret;
}

void img_refs_free(struct img_pages_writer *w)
{
	free(w->refs);
	free(w->part);
	w->refs = NULL;
	w->part = NULL;
	w->nrefs = w->cap_refs = w->plen = 0;
}

/* ------------------------------------------------------------------ dump */

/* Is there a pre-dump of this writer in generation gen?  Its state file into path. */
static bool pre_dump_map(const struct dump_opts *o, struct img_store_dump *d, uint64_t gen,
			 char *path, size_t len)
{
	char p[PATH_MAX];

	snprintf(d->pre, sizeof(d->pre), "%s.pre", d->writer);
	snprintf(p, sizeof(p), "%s/jobs/%s/gen-%llu.partial/%s.map", o->store, o->job,
		 (unsigned long long)gen, d->pre);
	if (path)
		snprintf(path, len, "%s", p);
	return !access(p, R_OK);
}

/* Take over the pre-dump's pages and what it knows of them. */
static int follow_pre_dump(const struct dump_opts *o, struct img_store_dump *d)
{
	char path[PATH_MAX];
	int ret;

	if (!pre_dump_map(o, d, d->gen, path, sizeof(path))) {
		d->pre[0] = '\0';
		return 0;
	}
	d->incr = calloc(1, sizeof(*d->incr));
	if (!d->incr)
		return -ENOMEM;
	ret = store_writer_adopt(d->sw, d->pre);
	if (!ret)
		ret = incr_load(path, d->incr);
	if (!ret) {
		unlink(path);	/* used once: its trackers leave the processes now */
		/*
		 * Our index will list every page of the pre-dump we use, in its
		 * pack: the pre-dump's own index is not needed by anyone now, and
		 * the generation is committed with our name only.
		 */
		snprintf(path, sizeof(path), "%s/%s.idx", store_writer_dir(d->sw), d->pre);
		unlink(path);
		snprintf(path, sizeof(path), "%s/%s.done", store_writer_dir(d->sw), d->pre);
		unlink(path);
		pr_info("generation %llu follows the pre-dump %s\n", (unsigned long long)d->gen,
			d->pre);
	}
	return ret;
}

/*
 * Staging directories are named PREFIX-PID-XXXXXX after the crd that made
 * them; one whose crd is gone (killed: it could not clean up) is removed.
 */
static void sweep_staging(const char *dir, const char *prefix)
{
	size_t plen = strlen(prefix);
	char path[PATH_MAX], proc[32];
	struct dirent *de;
	DIR *d = opendir(dir);
	long pid;

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, plen))
			continue;
		pid = strtol(de->d_name + plen, NULL, 10);
		snprintf(proc, sizeof(proc), "/proc/%ld", pid);
		if (pid <= 0 || !access(proc, F_OK))
			continue;	/* an old name, or its crd still runs */
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		pr_info("removing %s, left by a crd that was killed\n", path);
		img_store_unstage(path);
	}
	closedir(d);
}

int img_store_dump_begin(const struct dump_opts *o, struct img_store_dump *d)
{
	int ret;

	memset(d, 0, sizeof(*d));
	if (!o->job) {
		pr_err("--store needs --job ID\n");
		return -EINVAL;
	}
	if (o->writer)
		snprintf(d->writer, sizeof(d->writer), "%s", o->writer);
	else
		snprintf(d->writer, sizeof(d->writer), "tree-%d", o->pid);
	ret = store_open(o->store, &d->st);
	if (ret)
		return ret;
	d->gen = o->generation;
	if (!d->gen)
		ret = store_next_gen(d->st, o->job, &d->gen);
	/* a pre-dump of this tree started the newest generation: finish that one */
	if (!ret && !o->generation && d->gen > 1 && pre_dump_map(o, d, d->gen - 1, NULL, 0))
		d->gen--;
	if (!ret)
		ret = store_writer_begin(d->st, o->job, d->gen, d->writer,
					 o->compress ? STORE_COMPRESS : 0, &d->sw);
	if (ret) {
		pr_err("store %s, job %s: can't start generation %llu: %s\n", o->store, o->job,
		       (unsigned long long)d->gen, strerror(-ret));
		img_store_dump_abort(d);
		return ret;
	}
	ret = follow_pre_dump(o, d);
	if (ret) {
		img_store_dump_abort(d);
		return ret;
	}
	sweep_staging("/tmp", "crd-dump-");
	snprintf(d->staging, sizeof(d->staging), "/tmp/crd-dump-%d-XXXXXX", getpid());
	if (!mkdtemp(d->staging)) {
		ret = -errno;
		pr_perror("can't make a staging directory");
		d->staging[0] = '\0';
		img_store_dump_abort(d);
		return ret;
	}
	return 0;
}

static int put_file(struct img_store_dump *d, int dirfd, const char *name)
{
	char blob[PATH_MAX];
	char *buf = NULL;
	ssize_t len;
	int fd, ret;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(blob, sizeof(blob), "/proc/self/fd/%d", fd);
	len = read_file(blob, &buf);
	close(fd);
	if (len < 0)
		return len;
	snprintf(blob, sizeof(blob), "%s/%s", d->writer, name);
	ret = store_put_blob(d->sw, blob, buf, len);
	free(buf);
	if (ret)
		pr_err("%s: can't put it into the store: %s\n", name, strerror(-ret));
	return ret;
}

static int put_staging(struct img_store_dump *d)
{
	DIR *dir = opendir(d->staging);
	struct dirent *de;
	int ret = 0;

	if (!dir)
		return -errno;
	while (!ret && (de = readdir(dir)))
		if (de->d_name[0] != '.')
			ret = put_file(d, dirfd(dir), de->d_name);
	closedir(dir);
	return ret;
}

int img_store_dump_finish(const struct dump_opts *o, struct img_store_dump *d)
{
	const char *nodes[1] = { d->writer };
	int ret;

	ret = put_staging(d);
	if (ret) {
		img_store_dump_abort(d);
		return ret;
	}
	ret = store_writer_finish(d->sw);
	d->sw = NULL;
	if (!ret && !o->no_commit)
		ret = store_commit(d->st, o->job, d->gen, nodes, 1);
	if (ret)
		pr_err("store %s, job %s: generation %llu not committed: %s\n", o->store, o->job,
		       (unsigned long long)d->gen, strerror(-ret));
	else
		printf("generation %llu%s%s%s\n", (unsigned long long)d->gen,
		       o->no_commit ? " (written, not committed)" : "",
		       d->pre[0] ? ", after the pre-dump " : "", d->pre);
	fflush(stdout);
	img_store_unstage(d->staging);
	d->staging[0] = '\0';
	store_close(d->st);
	d->st = NULL;
	img_store_dump_abort(d);	/* what is left: the pre-dump state */
	return ret;
}

void img_store_dump_abort(struct img_store_dump *d)
{
	if (d->incr) {
		incr_free(d->incr);
		free(d->incr);
		d->incr = NULL;
	}
	if (d->sw)
		store_writer_abort(d->sw);
	d->sw = NULL;
	if (d->staging[0])
		img_store_unstage(d->staging);
	d->staging[0] = '\0';
	if (d->st)
		store_close(d->st);
	d->st = NULL;
}

/* ------------------------------------------------------------------ restore */

/* A pages image again, its data fetched from the store page by page. */
static int unfold_refs(struct store_reader *r, int fd, const char *name, const char *buf,
		       size_t len)
{
	const struct img_hdr *h = (const void *)buf;
	struct img_hdr out;
	struct refs_head rh;
	const struct store_ref *refs;
	XXH3_state_t *st;
	char *pages;
	size_t n, i, done = 0;
	int ret = 0;

	if (len < REFS_DATA_OFF + sizeof(rh) || h->payload_len != len - REFS_DATA_OFF ||
	    XXH3_64bits(buf + REFS_DATA_OFF, h->payload_len) != h->payload_hash) {
		pr_err("%s: the page references in the store are damaged\n", name);
		return -EINVAL;
	}
	memcpy(&rh, buf + REFS_DATA_OFF, sizeof(rh));
	refs = (const void *)(buf + REFS_DATA_OFF + sizeof(rh));
	n = (h->payload_len - sizeof(rh)) / sizeof(*refs);
	if (PAGE_ALIGN(rh.len) / PAGE_SIZE != n) {
		pr_err("%s: %zu page references for %llu bytes\n", name, n,
		       (unsigned long long)rh.len);
		return -EINVAL;
	}
	out = *h;
	out.type = IMG_PAGES;
	out.data_off = IMG_PAGES_DATA_OFF;
	out.payload_len = rh.len;
	pages = malloc(STAGE_BUF);
	st = XXH3_createState();
	if (!pages || !st) {
		free(pages);
		XXH3_freeState(st);
		return -ENOMEM;
	}
	XXH3_64bits_reset(st);
	if (ftruncate(fd, IMG_PAGES_DATA_OFF + rh.len))
		ret = -errno;
	for (i = 0; !ret && i < n; i += STAGE_BUF / PAGE_SIZE) {
		size_t k, cnt = n - i < STAGE_BUF / PAGE_SIZE ? n - i : STAGE_BUF / PAGE_SIZE;
		size_t bytes = cnt * PAGE_SIZE;

		for (k = 0; !ret && k < cnt; k++)
			ret = store_get_page(r, &refs[i + k], pages + k * PAGE_SIZE);
		if (done + bytes > rh.len)
			bytes = rh.len - done;
		if (!ret && pwrite(fd, pages, bytes, IMG_PAGES_DATA_OFF + done) != (ssize_t)bytes)
			ret = -errno;
		XXH3_64bits_update(st, pages, bytes);
		done += bytes;
	}
	/* the store checked every page; the image gets its checksum as if written whole */
	out.payload_hash = XXH3_64bits_digest(st);
	if (!ret && pwrite(fd, &out, sizeof(out), 0) != sizeof(out))
		ret = -errno;
	XXH3_freeState(st);
	free(pages);
	if (ret)
		pr_err("%s: can't rebuild it from the store: %s\n", name, strerror(-ret));
	return ret;
}

static int stage_file(struct store_reader *r, int dirfd, const char *blob, const char *name)
{
	const struct img_hdr *h;
	void *buf;
	size_t len;
	int fd, ret;

	ret = store_get_blob(r, blob, &buf, &len);
	if (ret) {
		pr_err("%s: can't read it from the store: %s\n", blob, strerror(-ret));
		return ret;
	}
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		free(buf);
		return ret;
	}
	h = buf;
	if (len >= sizeof(*h) && h->magic == IMG_MAGIC && h->type == IMG_PAGES_REFS)
		ret = unfold_refs(r, fd, blob, buf, len);
	else
		ret = write_all(fd, buf, len);
	if (close(fd) && !ret)
		ret = -errno;
	free(buf);
	return ret;
}

/* The writer whose images to restore: the one named, or the only one. */
static bool is_pre(const char *w)
{
	size_t n = strlen(w);

	return n > 4 && !strcmp(w + n - 4, ".pre");
}

static const char *pick_writer(const struct restore_opts *o, struct store_reader *r)
{
	int i, m, n = store_reader_nodes(r);
	const char *only = NULL;

	if (o->writer) {
		for (i = 0; i < n; i++)
			if (!strcmp(store_reader_node(r, i), o->writer))
				return store_reader_node(r, i);
		pr_err("job %s generation %llu has no images of %s\n", o->job,
		       (unsigned long long)store_reader_gen(r), o->writer);
		return NULL;
	}
	/* a pre-dump's writer holds pages, not a tree */
	for (i = 0, m = 0; i < n; i++)
		if (!is_pre(store_reader_node(r, i)))
			m++, only = store_reader_node(r, i);
	if (m == 1)
		return only;
	pr_err("job %s generation %llu holds %d trees: name one with --writer\n", o->job,
	       (unsigned long long)store_reader_gen(r), m);
	return NULL;
}

static int stage_all(struct store_reader *r, const char *writer, int dirfd)
{
	size_t wlen = strlen(writer);
	int i, ret = 0, n = 0;

	for (i = 0; !ret && i < store_reader_files(r); i++) {
		const char *node, *name = store_reader_file(r, i, &node);

		if (strcmp(node, writer) || strncmp(name, writer, wlen) || name[wlen] != '/')
			continue;
		ret = stage_file(r, dirfd, name, name + wlen + 1);
		n++;
	}
	if (!ret && !n) {
		pr_err("no images of %s in the store\n", writer);
		ret = -ENOENT;
	}
	return ret;
}

int img_store_stage(const struct restore_opts *o, char *path, size_t len)
{
	struct store_reader *r = NULL;
	struct store *st = NULL;
	const char *writer;
	int ret, dirfd;

	if (!o->job) {
		pr_err("--store needs --job ID\n");
		return -EINVAL;
	}
	ret = store_open(o->store, &st);
	if (!ret)
		ret = store_reader_open(st, o->job, o->generation, &r);
	if (ret) {
		pr_err("store %s, job %s: no generation %llu to restore from: %s\n", o->store,
		       o->job, (unsigned long long)o->generation, strerror(-ret));
		goto out;
	}
	writer = pick_writer(o, r);
	if (!writer) {
		ret = -ENOENT;
		goto out;
	}
	/* memory, not disk: the pages are read once, right away */
	sweep_staging("/dev/shm", "crd-restore-");
	snprintf(path, len, "/dev/shm/crd-restore-%d-XXXXXX", getpid());
	if (!mkdtemp(path)) {
		ret = -errno;
		pr_perror("can't make a staging directory");
		goto out;
	}
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = dirfd < 0 ? -errno : stage_all(r, writer, dirfd);
	if (dirfd >= 0)
		close(dirfd);
	if (ret)
		img_store_unstage(path);
	else
		pr_info("restoring generation %llu of job %s (%s)\n",
			(unsigned long long)store_reader_gen(r), o->job, writer);
out:
	if (r)
		store_reader_close(r);
	if (st)
		store_close(st);
	return ret;
}

void img_store_unstage(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *de;

	if (dir) {
		while ((de = readdir(dir)))
			if (de->d_name[0] != '.')
				unlinkat(dirfd(dir), de->d_name, 0);
		closedir(dir);
	}
	rmdir(path);
}
