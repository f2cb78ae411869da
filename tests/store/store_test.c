/*
 * Tests of the image store: store_test SCRATCH_DIR [BENCH_MB]
 * (store_test --cli SUBCOMMAND ... runs the store command line instead)
 *
 * Prints one line per check, PASS or FAIL, and exits 0 only if all pass.
 * Page contents come from seeds, so every generation is checked against
 * what it must hold rather than against another copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

#define PG	STORE_PAGE_SIZE

static int failures;
static const char *scratch;

static void result(int ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("%s %s: ", ok ? "PASS" : "FAIL", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	failures += !ok;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ page contents */

/* seed 0 is the zero page; odd high bit makes a compressible page */
#define SEED_TEXT	(1ULL << 63)

static void fill_page(uint64_t seed, void *page)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1, *p = page;
	unsigned char *b = page;
	int i;

	if (!seed) {
		memset(page, 0, PG);
		return;
	}
	for (i = 0; i < PG / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x;
	}
	if (seed & SEED_TEXT)
		for (i = 0; i < PG; i++)
			b[i] = "etaoin shrdlu\n"[b[i] % 14];
}

/* the pages of one node's image: seeds[i] for page i */
struct image {
	uint64_t *seeds;
	int n;
};

static struct image image_new(int n, uint64_t base, int zero_every, int text)
{
	struct image im = { calloc(n, sizeof(uint64_t)), n };
	int i;

	for (i = 0; i < n; i++) {
		im.seeds[i] = base + i;
		if (text)
			im.seeds[i] |= SEED_TEXT;
		if (zero_every && i % zero_every == 0)
			im.seeds[i] = 0;
	}
	return im;
}

/* the next checkpoint of an image: every 1/every page changed */
static struct image image_change(const struct image *old, int every, uint64_t salt, int *nchanged)
{
	struct image im = { malloc(old->n * sizeof(uint64_t)), old->n };
	int i;

	*nchanged = 0;
	memcpy(im.seeds, old->seeds, old->n * sizeof(uint64_t));
	for (i = 0; i < im.n; i++)
		if (i % every == every / 2 && im.seeds[i]) {
			im.seeds[i] = (im.seeds[i] & SEED_TEXT) | (salt + i);
			(*nchanged)++;
		}
	return im;
}

/* ------------------------------------------------------------ writing and reading */

static char blob_name[64];

static const char *refs_blob(const char *node)
{
	snprintf(blob_name, sizeof(blob_name), "%s/pages.refs", node);
	return blob_name;
}

/* one node's image as one writer; the refs go into a blob, like a dump's page map */
static int write_image(struct store *s, const char *job, uint64_t gen, const char *node,
		       const struct image *im, unsigned flags, struct store_writer_stats *st)
{
	struct store_ref *refs = calloc(im->n + 1, sizeof(*refs));
	struct store_writer *w;
	char page[PG];
	int i, ret;

	ret = store_writer_begin(s, job, gen, node, flags, &w);
	if (ret) {
		free(refs);
		return ret;
	}
	for (i = 0; i < im->n && !ret; i++) {
		fill_page(im->seeds[i], page);
		ret = store_put_page(w, page, &refs[i]);
	}
	if (!ret)
		ret = store_put_blob(w, refs_blob(node), refs, im->n * sizeof(*refs));
	if (!ret) {
		char name[64];

		snprintf(name, sizeof(name), "meta/%s.txt", node);
		ret = store_put_blob(w, name, "hello", 5);
	}
	if (st)
		store_writer_stats(w, st);
	free(refs);
	if (ret) {
		store_writer_abort(w);
		return ret;
	}
	return store_writer_finish(w);
}

static int commit1(struct store *s, const char *job, uint64_t gen, const char *node)
{
	const char *nodes[] = { node };

	return store_commit(s, job, gen, nodes, 1);
}

/* read node's image back through r and compare every page; 0 or the first error */
static int check_reader(struct store_reader *r, const char *node, const struct image *im)
{
	struct store_ref *refs;
	char page[PG], want[PG];
	size_t len;
	int i, ret;

	ret = store_get_blob(r, refs_blob(node), (void **)&refs, &len);
	if (ret)
		return ret;
	if (len != im->n * sizeof(*refs))
		ret = -EBADMSG;
	for (i = 0; i < im->n && !ret; i++) {
		ret = store_get_page(r, &refs[i], page);
		fill_page(im->seeds[i], want);
		if (!ret && memcmp(page, want, PG))
			ret = -EILSEQ;
	}
	free(refs);
	return ret;
}

static int check_image(struct store *s, const char *job, uint64_t gen, const char *node,
		       const struct image *im)
{
	struct store_reader *r;
	int ret;

	ret = store_reader_open(s, job, gen, &r);
	if (ret)
		return ret;
	ret = check_reader(r, node, im);
	store_reader_close(r);
	return ret;
}

/* the same through a reader of the node's index alone */
static int check_node_image(struct store *s, const char *job, uint64_t gen, const char *node,
			    const struct image *im)
{
	struct store_reader *r;
	void *buf = NULL;
	size_t len;
	int ret, fd = log_get_fd();

	ret = store_reader_open_node(s, job, gen, node, &r);
	if (ret)
		return ret;
	ret = check_reader(r, node, im);
	/* the other nodes' blobs are not there (and saying so is no error here) */
	log_init(LOG_ERROR - 1, fd);
	if (!ret && strcmp(node, "n0") &&
	    store_get_blob(r, "n0/pages.refs", &buf, &len) != -ENOENT)
		ret = -EEXIST;
	log_init(LOG_WARN, fd);
	free(buf);
	store_reader_close(r);
	return ret;
}

static int gen_info(struct store *s, const char *job, uint64_t gen, struct store_gen_info *out)
{
	struct store_gen_info *v;
	int n, i, ret;

	ret = store_list_gens(s, job, &v, &n);
	if (ret)
		return ret;
	ret = -ENOENT;
	for (i = 0; i < n; i++)
		if (v[i].gen == gen) {
			*out = v[i];
			ret = 0;
		}
	free(v);
	return ret;
}

static int count_gens(struct store *s, const char *job)
{
	struct store_gen_info *v;
	int n;

	if (store_list_gens(s, job, &v, &n))
		return -1;
	free(v);
	return n;
}

static int count_gens_cli(const char *job)
{
	struct store *s;
	int n;

	if (store_open(scratch, &s))
		return -1;
	n = count_gens(s, job);
	store_close(s);
	return n;
}

static int exists(const char *fmt, ...)
{
	char path[4096];
	struct stat st;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return !stat(path, &st);
}

/* run fn with the log going to a file; the log text into buf */
static int captured(int (*fn)(void *), void *arg, char *buf, size_t len)
{
	char path[4096];
	ssize_t n;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/log.tmp", scratch);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	log_init(LOG_WARN, fd);
	ret = fn(arg);
	log_init(LOG_WARN, STDERR_FILENO);
	n = pread(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return ret;
}

/* ------------------------------------------------------------ the checks */

#define NPAGES	4096		/* 16 MiB per image */

struct ctx {
	struct store *s;
	struct image gen1, gen2;
};

static void t_basic(struct ctx *c)
{
	struct store_writer_stats st;
	struct store_gen_info gi = { 0 };
	uint64_t gen;
	int ret, zeros = 0, i;

	c->gen1 = image_new(NPAGES, 1000, 10, 0);
	for (i = 0; i < NPAGES; i++)
		zeros += !c->gen1.seeds[i];
	/* a few duplicates inside the image: written once */
	c->gen1.seeds[1] = c->gen1.seeds[2] = c->gen1.seeds[3];
	ret = store_next_gen(c->s, "jobA", &gen);
	result(!ret && gen == 1, "next-gen-new-job", "gen %llu", (unsigned long long)gen);
	ret = write_image(c->s, "jobA", 1, "n0", &c->gen1, 0, &st);
	if (!ret)
		ret = commit1(c->s, "jobA", 1, "n0");
	result(!ret && st.zero_pages == (uint64_t)zeros &&
	       st.new_pages == (uint64_t)(NPAGES - zeros - 2),
	       "zero-pages-not-stored", "ret %d, %llu pages, %llu zero, %llu written", ret,
	       (unsigned long long)st.pages, (unsigned long long)st.zero_pages,
	       (unsigned long long)st.new_pages);
	ret = gen_info(c->s, "jobA", 1, &gi);
	result(!ret && gi.stored == st.new_pages * PG + NPAGES * 16 + 5, "stored-bytes",
	       "logical %llu stored %llu", (unsigned long long)gi.logical,
	       (unsigned long long)gi.stored);
	ret = check_image(c->s, "jobA", 1, "n0", &c->gen1);
	result(!ret, "gen1-read-back", "ret %d", ret);
}

static void t_dedup(struct ctx *c)
{
	struct store_writer_stats st;
	struct store_gen_info gi = { 0 };
	int changed, ret;
	uint64_t gen;

	c->gen2 = image_change(&c->gen1, 50, 777000, &changed);
	ret = store_next_gen(c->s, "jobA", &gen);
	if (!ret)
		ret = write_image(c->s, "jobA", gen, "n0", &c->gen2, 0, &st);
	if (!ret)
		ret = commit1(c->s, "jobA", gen, "n0");
	if (!ret)
		ret = gen_info(c->s, "jobA", 2, &gi);
	result(!ret && gen == 2 && st.new_pages == (uint64_t)changed &&
	       gi.stored * 100 < gi.logical * 3,
	       "dedup-across-generations",
	       "%d of %d pages changed, %llu written, stored %.2f%% of logical, ratio %.1f",
	       changed, NPAGES, (unsigned long long)st.new_pages,
	       ret ? 0 : 100.0 * gi.stored / gi.logical,
	       ret ? 0 : (double)gi.logical / gi.stored);
	ret = check_image(c->s, "jobA", 2, "n0", &c->gen2) ?:
	      check_image(c->s, "jobA", 1, "n0", &c->gen1);
	result(!ret, "every-generation-read-back", "ret %d", ret);
}

/* two nodes write generation 3 at the same time, from two processes */
static void t_two_writers(struct ctx *c)
{
	const char *nodes[] = { "n0", "n1" };
	struct image im[2];
	struct store_gen_info gi = { 0 };
	int i, ret = 0, changed, status;
	pid_t pid[2];

	im[0] = image_change(&c->gen2, 25, 888000, &changed);
	/* n1: half the pages n0 had in gen 2, half its own */
	im[1] = image_new(NPAGES, 500000, 0, 0);
	memcpy(im[1].seeds, c->gen2.seeds, NPAGES / 2 * sizeof(uint64_t));
	for (i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			struct store *s;

			if (store_open(scratch, &s))
				_exit(1);
			_exit(write_image(s, "jobA", 3, nodes[i], &im[i], 0, NULL) ? 1 : 0);
		}
	}
	for (i = 0; i < 2; i++)
		if (waitpid(pid[i], &status, 0) != pid[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			ret = -ECHILD;
	if (!ret)
		ret = store_commit(c->s, "jobA", 3, nodes, 2);
	if (!ret)
		ret = check_image(c->s, "jobA", 3, "n0", &im[0]) ?:
		      check_image(c->s, "jobA", 3, "n1", &im[1]);
	if (!ret)
		ret = gen_info(c->s, "jobA", 3, &gi);
	if (!ret)
		ret = check_node_image(c->s, "jobA", 3, "n1", &im[1]);
	result(!ret && gi.nodes == 2, "two-writers-concurrently",
	       "ret %d, logical %llu stored %llu ratio %.2f", ret,
	       (unsigned long long)gi.logical, (unsigned long long)gi.stored,
	       ret ? 0 : (double)gi.logical / gi.stored);
	/* a commit missing a node's done marker is refused */
	ret = store_commit(c->s, "jobA", 4, nodes, 2);
	result(ret < 0 && count_gens(c->s, "jobA") == 3, "commit-needs-all-nodes", "ret %d", ret);
	free(im[0].seeds);
	free(im[1].seeds);
}

/* STORE_DEDUP_NODE: only the node's own earlier generations count */
static void t_dedup_node(struct ctx *c)
{
	const char *nodes[] = { "n0", "n1" };
	struct image im = image_new(256, 321000, 0, 0);
	struct store_writer_stats st[2];
	int ret;

	ret = write_image(c->s, "jobN", 1, "n0", &im, 0, NULL) ?: commit1(c->s, "jobN", 1, "n0");
	ret = ret ?: write_image(c->s, "jobN", 2, "n0", &im, STORE_DEDUP_NODE, &st[0]);
	ret = ret ?: write_image(c->s, "jobN", 2, "n1", &im, STORE_DEDUP_NODE, &st[1]);
	ret = ret ?: store_commit(c->s, "jobN", 2, nodes, 2);
	ret = ret ?: check_image(c->s, "jobN", 2, "n0", &im) ?:
	      check_node_image(c->s, "jobN", 2, "n1", &im);
	result(!ret && st[0].new_pages == 0 && st[1].new_pages == 256, "dedup-own-node-only",
	       "ret %d, n0 wrote %llu pages, n1 %llu", ret, (unsigned long long)st[0].new_pages,
	       (unsigned long long)st[1].new_pages);
	free(im.seeds);
}

static void t_compress(struct ctx *c)
{
	struct image text = image_new(1024, 42, 7, 1), rnd = image_new(1024, 43, 0, 0);
	struct store_writer_stats st[3];
	int ret;

	ret = write_image(c->s, "jobZ", 1, "n0", &text, STORE_COMPRESS, &st[0]) ?:
	      commit1(c->s, "jobZ", 1, "n0") ?: check_image(c->s, "jobZ", 1, "n0", &text);
	result(!ret && st[0].stored * 2 < st[0].new_pages * PG, "compression-on-round-trip",
	       "ret %d, %llu pages in %llu bytes", ret, (unsigned long long)st[0].new_pages,
	       (unsigned long long)st[0].stored);
	/* random pages do not compress: stored as they are */
	ret = write_image(c->s, "jobZ", 2, "n0", &rnd, STORE_COMPRESS, &st[1]) ?:
	      commit1(c->s, "jobZ", 2, "n0") ?: check_image(c->s, "jobZ", 2, "n0", &rnd);
	result(!ret && st[1].stored >= st[1].new_pages * PG &&
	       st[1].stored <= st[1].new_pages * PG + 1024 * 16 + 64, "compression-skipped",
	       "ret %d, %llu pages in %llu bytes", ret, (unsigned long long)st[1].new_pages,
	       (unsigned long long)st[1].stored);
	text.seeds[0] = 99999 | SEED_TEXT;
	ret = write_image(c->s, "jobZ", 3, "n0", &text, 0, &st[2]) ?:
	      commit1(c->s, "jobZ", 3, "n0") ?: check_image(c->s, "jobZ", 3, "n0", &text) ?:
	      check_image(c->s, "jobZ", 1, "n0", &text) == -EILSEQ ? 0 : -1;
	result(!ret && st[2].new_pages == 1, "compression-off-round-trip",
	       "ret %d, %llu new pages", ret, (unsigned long long)st[2].new_pages);
	free(text.seeds);
	free(rnd.seeds);
}

static void t_partial(struct ctx *c)
{
	struct image im = image_new(256, 7000, 0, 0);
	struct store_gc_stats gs;
	struct store_reader *r;
	uint64_t gen = 0, rgen = 0;
	int ret;

	ret = store_next_gen(c->s, "jobA", &gen) ?:
	      write_image(c->s, "jobA", gen, "n0", &im, 0, NULL);
	if (!ret && !(ret = store_reader_open(c->s, "jobA", 0, &r))) {
		rgen = store_reader_gen(r);
		store_reader_close(r);
	}
	result(!ret && gen == 4 && rgen == 3 && count_gens(c->s, "jobA") == 3,
	       "partial-invisible", "ret %d, partial gen %llu, latest readable %llu", ret,
	       (unsigned long long)gen, (unsigned long long)rgen);
	ret = store_gc(c->s, "jobA", 0, STORE_GC_GRACE_DEFAULT, 0, &gs);
	result(!ret && !gs.partials && exists("%s/jobs/jobA/gen-4.partial", scratch),
	       "gc-spares-fresh-partial", "ret %d, %d removed", ret, gs.partials);
	ret = store_gc(c->s, "jobA", 0, STORE_GC_GRACE_DEFAULT, STORE_GC_FORCE, &gs);
	result(!ret && gs.partials == 1 && !exists("%s/jobs/jobA/gen-4.partial", scratch) &&
	       check_image(c->s, "jobA", 3, "n0", &c->gen2) != 0, /* n0 of gen 3 differs */
	       "gc-reclaims-partial", "ret %d, %d removed, %llu bytes", ret, gs.partials,
	       (unsigned long long)gs.bytes);
	/* an aborted writer leaves nothing */
	{
		struct store_writer *w;
		struct store_ref ref;
		char page[PG];

		fill_page(5, page);
		ret = store_writer_begin(c->s, "jobA", 5, "n9", 0, &w) ?:
		      store_put_page(w, page, &ref);
		if (!ret)
			store_writer_abort(w);
		result(!ret && !exists("%s/jobs/jobA/gen-5.partial", scratch), "abort-cleans-up",
		       "ret %d", ret);
	}
	free(im.seeds);
}

static void t_keep(struct ctx *c)
{
	struct image im[6];
	struct store_gc_stats gs;
	char path[4096];
	int g, ret = 0, changed;

	im[1] = image_new(512, 30000, 0, 0);
	for (g = 1; g <= 5 && !ret; g++) {
		if (g > 1)
			im[g] = image_change(&im[g - 1], 4, 30000 + g * 1000, &changed);
		ret = write_image(c->s, "jobK", g, "n0", &im[g], 0, NULL) ?:
		      commit1(c->s, "jobK", g, "n0");
	}
	if (!ret)
		ret = store_gc(c->s, "jobK", 2, STORE_GC_GRACE_DEFAULT, 0, &gs);
	result(!ret && count_gens(c->s, "jobK") == 2 && gs.gens == 3, "gc-keep-2",
	       "ret %d, %d generations left, %d dropped, %d packs removed", ret,
	       count_gens(c->s, "jobK"), gs.gens, gs.packs);
	ret = check_image(c->s, "jobK", 5, "n0", &im[5]) ?:
	      check_image(c->s, "jobK", 4, "n0", &im[4]) ?: store_verify(c->s, "jobK", 4);
	/* gen 1's pack still holds pages gen 4 and 5 use */
	result(!ret && exists("%s/jobs/jobK/gen-1/n0.pack", scratch) &&
	       !exists("%s/jobs/jobK/gen-1/n0.idx", scratch), "kept-generations-intact",
	       "ret %d", ret);
	/* rm of one generation, then of the job */
	ret = store_rm(c->s, "jobK", 4, &gs) ?: check_image(c->s, "jobK", 5, "n0", &im[5]);
	result(!ret && count_gens(c->s, "jobK") == 1, "rm-generation", "ret %d", ret);
	ret = store_rm(c->s, "jobK", 0, &gs);
	snprintf(path, sizeof(path), "%s/jobs/jobK", scratch);
	result(!ret && !exists("%s", path), "rm-job", "ret %d", ret);
	for (g = 1; g <= 5; g++)
		free(im[g].seeds);
}

struct verify_arg {
	struct store *s;
	const char *job;
	uint64_t gen;
};

static int do_verify(void *a)
{
	struct verify_arg *v = a;

	return store_verify(v->s, v->job, v->gen);
}

static int do_read(void *a)
{
	struct ctx *c = a;

	return check_image(c->s, "jobC", 1, "n0", &c->gen1);
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char b = 0;

	if (pread(fd, &b, 1, off) == 1) {
		b ^= 0x40;
		if (pwrite(fd, &b, 1, off) != 1)
			perror(path);
	}
	close(fd);
}

static void t_corrupt(struct ctx *c)
{
	struct verify_arg va = { c->s, "jobC", 1 };
	char path[4096], log[4096];
	int ret, i;

	ret = write_image(c->s, "jobC", 1, "n0", &c->gen1, 0, NULL) ?:
	      commit1(c->s, "jobC", 1, "n0") ?: store_verify(c->s, "jobC", 1);
	result(!ret, "verify-intact", "ret %d", ret);
	snprintf(path, sizeof(path), "%s/jobs/jobC/gen-1/n0.pack", scratch);
	flip_byte(path, 64 + 100 * PG + 17);
	ret = captured(do_verify, &va, log, sizeof(log));
	for (i = strlen(log); i > 0 && log[i - 1] == '\n'; i--)
		log[i - 1] = '\0';
	result(ret == -EBADMSG && strstr(log, "jobC gen 1") && strstr(log, "n0.pack") &&
	       strstr(log, "offset"), "verify-finds-corrupt-page", "ret %d, said: %s", ret,
	       log);
	ret = captured(do_read, c, log, sizeof(log));
	result(ret == -EBADMSG, "reader-refuses-corrupt-page", "ret %d", ret);
	/* a truncated MANIFEST: the generation is not there */
	ret = write_image(c->s, "jobC", 2, "n0", &c->gen2, 0, NULL) ?:
	      commit1(c->s, "jobC", 2, "n0");
	snprintf(path, sizeof(path), "%s/jobs/jobC/gen-2/MANIFEST", scratch);
	if (!ret)
		ret = truncate(path, 60) ? -errno : 0;
	{
		struct verify_arg v2 = { c->s, "jobC", 2 };
		int n = count_gens(c->s, "jobC");

		result(!ret && n == 1 && captured(do_verify, &v2, log, sizeof(log)) < 0,
		       "truncated-manifest-not-listed", "ret %d, %d generations listed", ret, n);
	}
	/* gc reclaims it like any generation without a MANIFEST */
	{
		struct store_gc_stats gs;

		ret = store_gc(c->s, "jobC", 0, 0, STORE_GC_FORCE, &gs);
		result(!ret && !exists("%s/jobs/jobC/gen-2", scratch), "gc-reclaims-no-manifest",
		       "ret %d", ret);
	}
}

/* a full file system mid-generation: error, nothing left, the previous generation intact */
static void t_enospc(void)
{
	struct image small = image_new(128, 60000, 0, 0), big = image_new(1024, 70000, 0, 0);
	char dir[4096], log[4096];
	struct store *s;
	int ret, i;

	snprintf(dir, sizeof(dir), "%s/tiny", scratch);
	mkdir(dir, 0755);
	if (unshare(CLONE_NEWNS) || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) ||
	    mount("store-test", dir, "tmpfs", 0, "size=2m")) {
		/* only root can: the test runner is root, a developer may not be */
		if (errno == EPERM)
			printf("SKIP enospc: can't mount a tmpfs (not root)\n");
		else
			result(0, "enospc", "can't mount a 2 MiB tmpfs on %s: %s", dir,
			       strerror(errno));
		rmdir(dir);
		free(small.seeds);
		free(big.seeds);
		return;
	}
	ret = store_open(dir, &s);
	if (!ret)
		ret = write_image(s, "jobF", 1, "n0", &small, 0, NULL) ?:
		      commit1(s, "jobF", 1, "n0");
	result(!ret, "enospc-setup", "ret %d", ret);
	snprintf(log, sizeof(log), "%s/log.tmp", scratch);
	{
		int fd = open(log, O_RDWR | O_CREAT | O_TRUNC, 0644);
		ssize_t n;

		log_init(LOG_WARN, fd);
		ret = write_image(s, "jobF", 2, "n0", &big, 0, NULL);
		log_init(LOG_WARN, STDERR_FILENO);
		n = pread(fd, log, sizeof(log) - 1, 0);
		log[n > 0 ? n : 0] = '\0';
		close(fd);
		for (i = strlen(log); i > 0 && log[i - 1] == '\n'; i--)
			log[i - 1] = '\0';
	}
	result(ret == -ENOSPC && strstr(log, "gen-2.partial/n0.pack") &&
	       strstr(log, "No space left"), "enospc-error", "ret %d, said: %s", ret, log);
	result(!exists("%s/jobs/jobF/gen-2.partial", dir), "enospc-nothing-left", "");
	/* the disk fills up while the pages wait in the writer's buffer: finish fails */
	{
		char filler[4200], chunk[65536] = { 1 };
		struct store_writer *w;
		struct store_ref ref;
		char page[PG];
		int fd;

		ret = store_writer_begin(s, "jobF", 2, "n0", 0, &w);
		for (i = 0; !ret && i < 64; i++) {
			fill_page(80000 + i, page);
			ret = store_put_page(w, page, &ref);
		}
		snprintf(filler, sizeof(filler), "%s/filler", dir);
		fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		while (write(fd, chunk, sizeof(chunk)) > 0)
			;
		close(fd);
		log_init(LOG_ERROR, open("/dev/null", O_WRONLY));
		ret = ret ?: store_writer_finish(w);
		close(log_get_fd());
		log_init(LOG_WARN, STDERR_FILENO);
		unlink(filler);
		result(ret == -ENOSPC && !exists("%s/jobs/jobF/gen-2.partial", dir),
		       "enospc-at-finish", "ret %d", ret);
	}
	ret = store_verify(s, "jobF", 1) ?: check_image(s, "jobF", 1, "n0", &small);
	result(!ret && count_gens(s, "jobF") == 1, "enospc-previous-intact", "ret %d", ret);
	store_close(s);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	free(small.seeds);
	free(big.seeds);
}

/* every byte of a small generation's files flipped, every length cut: never unnoticed */
static void t_corrupt_everywhere(struct ctx *c)
{
	static const struct {
		const char *file;
		int step;
	} files[] = { { "MANIFEST", 1 }, { "n0.idx", 1 }, { "n0.pack", 61 } };
	struct image im = image_new(16, 555000, 5, 1);
	struct verify_arg va = { c->s, "jobE", 1 };
	char path[4096], log[4096], *orig;
	int ret, missed = 0, tried = 0, harmless = 0, fd;
	struct stat st;
	ssize_t n;
	size_t f;
	off_t off;

	ret = write_image(c->s, "jobE", 1, "n0", &im, STORE_COMPRESS, NULL) ?:
	      commit1(c->s, "jobE", 1, "n0");
	for (f = 0; !ret && f < sizeof(files) / sizeof(files[0]); f++) {
		snprintf(path, sizeof(path), "%s/jobs/jobE/gen-1/%s", scratch, files[f].file);
		if (stat(path, &st) || !(orig = malloc(st.st_size)))
			break;
		fd = open(path, O_RDONLY);
		n = read(fd, orig, st.st_size);
		close(fd);
		for (off = 0; off < st.st_size; off += files[f].step) {
			flip_byte(path, off);
			tried++;
			/* zstd frames have bits no decoder reads: those flips are harmless */
			if (!captured(do_verify, &va, log, sizeof(log)) &&
			    !check_image(c->s, "jobE", 1, "n0", &im)) {
				harmless++;
			} else if (!captured(do_verify, &va, log, sizeof(log))) {
				missed++;
				printf("  missed: %s byte %lld flipped\n", files[f].file,
				       (long long)off);
			}
			flip_byte(path, off);
		}
		for (off = 0; off < st.st_size; off += files[f].step) {
			if (truncate(path, off))
				break;
			tried++;
			if (!captured(do_verify, &va, log, sizeof(log))) {
				missed++;
				printf("  missed: %s cut to %lld\n", files[f].file, (long long)off);
			}
			fd = open(path, O_WRONLY | O_TRUNC);
			n = write(fd, orig, st.st_size);
			close(fd);
		}
		free(orig);
		if (n != st.st_size)
			ret = -EIO;
	}
	ret = ret ?: store_verify(c->s, "jobE", 1);
	result(!ret && !missed, "corrupt-everywhere",
	       "ret %d, %d damaged copies, %d missed, %d harmless (pages intact)", ret, tried,
	       missed, harmless);
	free(im.seeds);
}

/* gc while a generation is written: the packs the writer may reference stay */
static void t_gc_during_write(struct ctx *c)
{
	struct image im[4];
	struct store_writer *w;
	struct store_gc_stats gs;
	struct store_ref *refs;
	char page[PG];
	int g, i, ret = 0, changed;

	im[1] = image_new(512, 90000, 0, 0);
	for (g = 1; g <= 2 && !ret; g++) {
		if (g > 1)
			im[g] = image_change(&im[g - 1], 3, 90000 + g * 1000, &changed);
		ret = write_image(c->s, "jobG", g, "n0", &im[g], 0, NULL) ?:
		      commit1(c->s, "jobG", g, "n0");
	}
	/* generation 3 references pages of 1 that 2 changed back */
	im[3] = image_new(512, 90000, 0, 0);
	refs = calloc(512, sizeof(*refs));
	ret = ret ?: store_writer_begin(c->s, "jobG", 3, "n0", 0, &w);
	if (!ret) {
		ret = store_gc(c->s, "jobG", 1, STORE_GC_GRACE_DEFAULT, 0, &gs);
		for (i = 0; i < 512 && !ret; i++) {
			fill_page(im[3].seeds[i], page);
			ret = store_put_page(w, page, &refs[i]);
		}
		ret = ret ?: store_put_blob(w, refs_blob("n0"), refs, 512 * sizeof(*refs));
		ret = ret ?: store_writer_finish(w);
		ret = ret ?: commit1(c->s, "jobG", 3, "n0");
	}
	ret = ret ?: check_image(c->s, "jobG", 3, "n0", &im[3]);
	result(!ret && gs.gens == 1 && !gs.packs && exists("%s/jobs/jobG/gen-1/n0.pack", scratch),
	       "gc-during-write-keeps-packs", "ret %d, %d generations, %d packs removed", ret,
	       gs.gens, gs.packs);
	/* now nothing is in progress: gen 2's pack goes, gen 1's stays for gen 3 */
	ret = store_gc(c->s, "jobG", 1, STORE_GC_GRACE_DEFAULT, 0, &gs) ?:
	      check_image(c->s, "jobG", 3, "n0", &im[3]) ?: store_verify(c->s, "jobG", 3);
	result(!ret && gs.packs == 1 && !exists("%s/jobs/jobG/gen-2", scratch) &&
	       exists("%s/jobs/jobG/gen-1/n0.pack", scratch), "gc-after-write",
	       "ret %d, %d generations, %d packs removed", ret, gs.gens, gs.packs);
	free(refs);
	for (g = 1; g <= 3; g++)
		free(im[g].seeds);
}

static int do_open_dup(void *a)
{
	struct ctx *c = a;
	struct store_writer *w;
	int ret = store_writer_begin(c->s, "jobR", 2, "n0", 0, &w);

	if (!ret)
		store_writer_abort(w);
	return ret;
}

/* four writers per generation and a gc --keep 2 running all along: every kept one reads */
static void t_stress(struct ctx *c)
{
	const char *nodes[] = { "s0", "s1", "s2", "s3" };
	struct image im[4];
	pid_t gc_pid, pid[4];
	int g, i, ret = 0, status, changed;

	for (i = 0; i < 4; i++)
		im[i] = image_new(384, 700000 + i * 100, 9, i & 1);
	gc_pid = fork();
	if (gc_pid == 0) {
		struct store *s;

		if (store_open(scratch, &s))
			_exit(1);
		for (;;)
			store_gc(s, "jobS", 2, STORE_GC_GRACE_DEFAULT, 0, NULL);
	}
	for (g = 1; g <= 6 && !ret; g++) {
		for (i = 0; i < 4; i++) {
			struct image next = image_change(&im[i], 7, g * 10000 + i * 1000, &changed);

			free(im[i].seeds);
			im[i] = next;
			pid[i] = fork();
			if (pid[i] == 0) {
				struct store *s;

				if (store_open(scratch, &s))
					_exit(1);
				_exit(write_image(s, "jobS", g, nodes[i], &im[i],
						  (i & 1) ? STORE_COMPRESS : 0, NULL) ? 1 : 0);
			}
		}
		for (i = 0; i < 4; i++)
			if (waitpid(pid[i], &status, 0) != pid[i] || !WIFEXITED(status) ||
			    WEXITSTATUS(status))
				ret = -ECHILD;
		ret = ret ?: store_commit(c->s, "jobS", g, nodes, 4);
		for (i = 0; i < 4 && !ret; i++)
			ret = check_image(c->s, "jobS", g, nodes[i], &im[i]);
	}
	kill(gc_pid, SIGKILL);
	waitpid(gc_pid, &status, 0);
	ret = ret ?: store_gc(c->s, "jobS", 2, STORE_GC_GRACE_DEFAULT, 0, NULL) ?:
	      store_verify(c->s, "jobS", 6) ?: store_verify(c->s, "jobS", 5);
	result(!ret && count_gens(c->s, "jobS") == 2, "stress-writers-and-gc",
	       "ret %d, %d generations kept", ret, count_gens(c->s, "jobS"));
	for (i = 0; i < 4; i++)
		free(im[i].seeds);
}

/* writers and commits that go wrong, and corrupt indexes and blobs */
static void t_robust(struct ctx *c)
{
	struct image im = image_new(256, 123000, 0, 0);
	struct verify_arg va = { c->s, "jobR", 2 };
	struct store_writer *w;
	char from[4096], to[4096], log[4096];
	int ret;

	ret = write_image(c->s, "jobR", 1, "n0", &im, 0, NULL) ?: commit1(c->s, "jobR", 1, "n0");
	/* a second writer with the same node name is refused and harms nothing */
	ret = ret ?: store_writer_begin(c->s, "jobR", 2, "n0", 0, &w);
	if (!ret) {
		int dup = captured(do_open_dup, c, log, sizeof(log));

		ret = dup == -EEXIST ? 0 : -1;
		store_writer_abort(w);
	}
	result(!ret, "same-node-twice-refused", "ret %d", ret);
	/* a commit interrupted after its rename is completed by the next one */
	ret = write_image(c->s, "jobR", 2, "n0", &im, 0, NULL);
	snprintf(from, sizeof(from), "%s/jobs/jobR/gen-2.partial", scratch);
	snprintf(to, sizeof(to), "%s/jobs/jobR/gen-2", scratch);
	if (!ret)
		ret = rename(from, to) ? -errno : 0;
	ret = ret ?: (count_gens(c->s, "jobR") == 1 ? 0 : -1);
	ret = ret ?: commit1(c->s, "jobR", 2, "n0") ?: check_image(c->s, "jobR", 2, "n0", &im);
	result(!ret && count_gens(c->s, "jobR") == 2, "commit-completes-interrupted", "ret %d",
	       ret);
	ret = commit1(c->s, "jobR", 2, "n0");
	result(ret == -EEXIST, "commit-twice-refused", "ret %d", ret);
	/* a flipped byte in an index */
	snprintf(to, sizeof(to), "%s/jobs/jobR/gen-2/n0.idx", scratch);
	flip_byte(to, 100);
	ret = captured(do_verify, &va, log, sizeof(log));
	result(ret < 0 && strstr(log, "jobR/gen-2/n0.idx"), "verify-finds-corrupt-index",
	       "ret %d", ret);
	flip_byte(to, 100);
	/* and in a blob (the last bytes of the pack) */
	snprintf(to, sizeof(to), "%s/jobs/jobR/gen-2/n0.pack", scratch);
	{
		struct stat st;

		stat(to, &st);
		flip_byte(to, st.st_size - 10);
	}
	ret = captured(do_verify, &va, log, sizeof(log));
	result(ret == -EBADMSG && strstr(log, "blob n0/pages.refs"), "verify-finds-corrupt-blob",
	       "ret %d", ret);
	free(im.seeds);
}

/* run the command line with its stdout and stderr into out */
static int cli(char *out, size_t len, char **argv)
{
	char path[4096];
	int argc = 0, fd, o1, o2, ret;
	ssize_t n;

	while (argv[argc])
		argc++;
	snprintf(path, sizeof(path), "%s/cli.out", scratch);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	fflush(stdout);
	o1 = dup(1);
	o2 = dup(2);
	dup2(fd, 1);
	dup2(fd, 2);
	ret = store_cli(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(o1, 1);
	dup2(o2, 2);
	close(o1);
	close(o2);
	n = pread(fd, out, len - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return ret;
}

static void t_cli(void)
{
	char *S = (char *)scratch, out[16384];
	char *ls[] = { "ls", "-S", S, NULL };
	char *lsjob[] = { "ls", "jobA", "-S", S, NULL };
	char *show[] = { "show", "jobA", "2", "-S", S, NULL };
	char *ver[] = { "verify", "jobA", "--store", S, NULL };
	char *bad[] = { "verify", "jobC", "1", "-S", S, NULL };
	char *gc[] = { "gc", "--keep", "5", "-S", S, NULL };
	char *rm[] = { "rm", "jobZ", "1", "-S", S, NULL };
	char *usage[] = { "frob", NULL };
	int r;

	r = cli(out, sizeof(out), ls);
	result(!r && strstr(out, "RATIO") && strstr(out, "jobA") && strstr(out, "jobZ"),
	       "cli-ls", "%d", r);
	r = cli(out, sizeof(out), lsjob);
	result(!r && !strstr(out, "jobZ") && strstr(out, "41.96"), "cli-ls-job", "%d", r);
	r = cli(out, sizeof(out), show);
	result(!r && strstr(out, "dedup ratio 41.96") && strstr(out, "gen-1/n0.pack") &&
	       strstr(out, "n0/pages.refs"), "cli-show", "%d", r);
	r = cli(out, sizeof(out), ver);
	result(!r && strstr(out, "job jobA generation 3: ok"), "cli-verify", "%d", r);
	r = cli(out, sizeof(out), bad);
	result(r == 1 && strstr(out, "job jobC generation 1: FAILED") &&
	       strstr(out, "jobC gen 1: page "), "cli-verify-bad", "%d", r);
	r = cli(out, sizeof(out), gc);
	result(!r && strstr(out, "removed 0 partial generations"), "cli-gc", "%d", r);
	r = cli(out, sizeof(out), rm);
	result(!r && strstr(out, "removed") && count_gens_cli("jobZ") == 2, "cli-rm", "%d", r);
	r = cli(out, sizeof(out), usage);
	result(r == 2 && strstr(out, "usage"), "cli-usage", "%d", r);
}

/* ------------------------------------------------------------ throughput */

/* write() of n pages and fsync, in 1 MiB calls: what the store is measured against */
static double plain_write(const char *dir, const char *buf, int n)
{
	char path[4096];
	double t0 = now();
	int i, fd;

	snprintf(path, sizeof(path), "%s/bench.raw", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	for (i = 0; i < n; i += 256)
		if (write(fd, buf + (size_t)i * PG, 256 * PG) < 0)
			break;
	fsync(fd);
	close(fd);
	t0 = now() - t0;
	unlink(path);
	return t0;
}

static int bench_put(struct store *s, uint64_t gen, unsigned flags, char *buf, int n,
		     struct store_ref *refs, int flip)
{
	struct store_writer *w;
	int i, ret;

	ret = store_writer_begin(s, "bench", gen, "n0", flags, &w);
	for (i = 0; !ret && i < n; i++) {
		/* new content, so that it is not deduplicated */
		buf[(size_t)i * PG] ^= flip;
		ret = store_put_page(w, buf + (size_t)i * PG, &refs[i]);
	}
	if (ret) {
		store_writer_abort(w);
		return ret;
	}
	return store_writer_finish(w) ?: commit1(s, "bench", gen, "n0");
}

static void bench(const char *dir, int mb)
{
	int n = mb * 256, i, ret;
	char *buf = malloc((size_t)n * PG);
	struct store_ref *refs = malloc(n * sizeof(*refs));
	struct store_reader *r;
	struct store *s;
	double t0, tw1, tp, tc, td, tr;

	for (i = 0; i < n; i++)
		fill_page(i + 1 + (i % 3 == 0 ? SEED_TEXT : 0), buf + (size_t)i * PG);
	ret = store_open(dir, &s);
	/* the best of three: the first run in a process pays for the file system's pages */
	tw1 = plain_write(dir, buf, n);
	for (i = 0; i < 2; i++) {
		t0 = plain_write(dir, buf, n);
		tw1 = t0 < tw1 ? t0 : tw1;
	}
	t0 = now();
	ret = ret ?: bench_put(s, 1, 0, buf, n, refs, 0);
	tp = now() - t0;
	t0 = now();
	ret = ret ?: bench_put(s, 2, STORE_COMPRESS, buf, n, refs, 1);
	tc = now() - t0;
	t0 = now();
	/* the same pages again: everything deduplicated */
	ret = ret ?: bench_put(s, 3, 0, buf, n, refs, 0);
	td = now() - t0;
	t0 = now();
	ret = ret ?: store_reader_open(s, "bench", 2, &r);
	for (i = 0; !ret && i < n; i++)
		ret = store_get_page(r, &refs[i], buf + (size_t)i * PG);
	if (!ret)
		store_reader_close(r);
	tr = now() - t0;
	result(!ret, "throughput",
	       "%d MiB: write()+fsync %.0f MiB/s; put_page+finish+commit %.0f MiB/s, "
	       "compressed %.0f MiB/s, all duplicates %.0f MiB/s; get_page (zstd) %.0f MiB/s",
	       mb, mb / tw1, mb / tp, mb / tc, mb / td, mb / tr);
	store_rm(s, "bench", 0, NULL);
	store_close(s);
	free(buf);
	free(refs);
}

int main(int argc, char **argv)
{
	struct ctx c = { 0 };
	int ret;

	if (argc < 2) {
		fprintf(stderr, "usage: %s SCRATCH_DIR [BENCH_MB] | --cli SUBCOMMAND ...\n",
			argv[0]);
		return 2;
	}
	/* the command line as crd will have it, for scripts and people */
	if (!strcmp(argv[1], "--cli"))
		return store_cli(argc - 2, argv + 2);
	scratch = argv[1];
	log_init(LOG_WARN, STDERR_FILENO);
	ret = store_open(scratch, &c.s);
	result(!ret, "open", "%s", scratch);
	if (ret)
		return 1;
	t_basic(&c);
	t_dedup(&c);
	t_two_writers(&c);
	t_dedup_node(&c);
	t_compress(&c);
	t_partial(&c);
	t_keep(&c);
	t_corrupt(&c);
	t_corrupt_everywhere(&c);
	t_gc_during_write(&c);
	t_robust(&c);
	t_stress(&c);
	t_cli();
	bench(scratch, argc > 2 ? atoi(argv[2]) : 64);
	t_enospc();
	store_close(c.s);
	free(c.gen1.seeds);
	free(c.gen2.seeds);
	printf("%s: %d failed\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
