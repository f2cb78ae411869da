/*
 * Reclaiming space.  A generation is dropped by unlinking its MANIFEST
 * first, so readers stop seeing it before anything it needs goes away; its
 * pack files stay as long as a retained generation references them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store-int.h"

struct gc_gen {
	uint64_t gen;
	int partial;
	int valid;		/* the MANIFEST parses */
	int fresh;		/* being written or committed: hands off */
	struct manifest m;
};

struct gc_job {
	const struct store *s;
	const char *job;
	struct gc_gen *v;
	int n;
	int busy;		/* a generation is in progress: keep every pack */
	struct pack_set refs;	/* packs of retained generations */
	struct store_gc_stats *st;
};

/* the newest mtime of a directory and its entries, and whether a .done is among them */
static time_t newest_mtime(const char *dir, int *has_done)
{
	char path[STORE_PATH_MAX];
	struct dirent *de;
	struct stat st;
	time_t t = 0;
	DIR *d;

	*has_done = 0;
	if (!stat(dir, &st))
		t = st.st_mtime;
	d = opendir(dir);
	if (!d)
		return t;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len > 5 && !strcmp(de->d_name + len - 5, ".done"))
			*has_done = 1;
		if (de->d_name[0] == '.' || store_path(path, "%s/%s", dir, de->d_name) ||
		    stat(path, &st))
			continue;
		if (st.st_mtime > t)
			t = st.st_mtime;
	}
	closedir(d);
	return t;
}

static uint64_t tree_size(const char *path)
{
	char sub[STORE_PATH_MAX];
	struct dirent *de;
	struct stat st;
	uint64_t sum = 0;
	DIR *d;

	if (lstat(path, &st))
		return 0;
	if (!S_ISDIR(st.st_mode))
		return st.st_size;
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    !store_path(sub, "%s/%s", path, de->d_name))
			sum += tree_size(sub);
	closedir(d);
	return sum;
}

static int remove_counted(struct gc_job *j, const char *path)
{
	uint64_t size = tree_size(path);
	int ret = store_rmtree(path);

	if (!ret)
		j->st->bytes += size;
	return ret;
}

/* first pass: what each generation directory is */
static int classify(struct gc_job *j, unsigned grace, unsigned flags)
{
	char dir[STORE_PATH_MAX], path[STORE_PATH_MAX];
	time_t now = time(NULL);
	int i, has_done, ret = 0;

	for (i = 0; i < j->n; i++) {
		struct gc_gen *g = &j->v[i];
		time_t t;

		if (store_gen_path(j->s, j->job, g->gen, g->partial, dir))
			return -ENAMETOOLONG;
		if (!g->partial && !store_path(path, "%s/MANIFEST", dir) &&
		    !manifest_read(path, &g->m) && !g->m.is_done && g->m.gen == g->gen) {
			g->valid = 1;
			continue;
		}
		t = newest_mtime(dir, &has_done);
		/* a committed directory without MANIFEST may be a commit under way */
		g->fresh = !(flags & STORE_GC_FORCE) && now - t < (time_t)grace &&
			   (g->partial || has_done);
		j->busy |= g->fresh;
		if (g->partial && !g->fresh) {
			pr_info("store: job %s: removing abandoned %s\n", j->job, dir);
			if (remove_counted(j, dir))
				ret = -EIO;
			else
				j->st->partials++;
		}
	}
	return ret;
}

/* second pass: drop generations beyond the newest keep, collect what the rest use */
static int retain(struct gc_job *j, int keep)
{
	char path[STORE_PATH_MAX];
	int i, k, seen = 0;

	for (i = j->n - 1; i >= 0; i--) {
		struct gc_gen *g = &j->v[i];

		if (!g->valid)
			continue;
		if (!keep || seen++ < keep) {
			for (k = 0; k < g->m.packs.n; k++)
				if (packset_add(&j->refs, g->m.packs.v[k].gen,
						g->m.packs.v[k].node) < 0)
					return -ENOMEM;
			continue;
		}
		if (store_path(path, "%s/jobs/%s/gen-%llu/MANIFEST", j->s->dir, j->job,
			       (unsigned long long)g->gen))
			return -ENAMETOOLONG;
		if (unlink(path)) {
			pr_perror("store: job %s gen %llu: can't remove %s", j->job,
				  (unsigned long long)g->gen, path);
			return -errno;
		}
		g->valid = 0;
		j->st->gens++;
	}
	return 0;
}

/* an entry of an unretained or retained generation's directory: does it go? */
static int doomed(struct gc_job *j, const struct gc_gen *g, const char *name, int *is_pack)
{
	char node[STORE_NAME_MAX + 1];
	size_t len = strlen(name);

	*is_pack = len > 5 && !strcmp(name + len - 5, ".pack");
	if (*is_pack) {
		if (j->busy || len - 5 > STORE_NAME_MAX)
			return 0;
		memcpy(node, name, len - 5);
		node[len - 5] = '\0';
		return packset_find(&j->refs, g->gen, node) < 0;
	}
	return !g->valid;
}

/* third pass: files of committed directories nothing retained needs */
static int sweep(struct gc_job *j, const struct gc_gen *g)
{
	char dir[STORE_PATH_MAX], path[STORE_PATH_MAX];
	struct dirent *de;
	int is_pack, ret = 0;
	DIR *d;

	if (store_gen_path(j->s, j->job, g->gen, 0, dir))
		return -ENAMETOOLONG;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !doomed(j, g, de->d_name, &is_pack))
			continue;
		if (store_path(path, "%s/%s", dir, de->d_name) || remove_counted(j, path)) {
			ret = -EIO;
			continue;
		}
		j->st->packs += is_pack;
	}
	closedir(d);
	/* empty once nothing of it is referenced any more */
	if (!g->valid)
		rmdir(dir);
	return ret;
}

/*
 * A writer creates its partial directory before it reads any MANIFEST; gc
 * unlinks manifests before it looks again for partial directories.  So a
 * writer that read a manifest being dropped is seen here, and its packs stay.
 */
static void recheck_busy(struct gc_job *j)
{
	struct gen_ent *e;
	int n, i;

	if (j->busy || store_scan_gens(j->s, j->job, &e, &n))
		return;
	for (i = 0; i < n; i++)
		j->busy |= e[i].partial;
	free(e);
}

static int gc_job(const struct store *s, const char *job, int keep, unsigned grace,
		  unsigned flags, struct store_gc_stats *st)
{
	struct gc_job j = { .s = s, .job = job, .st = st };
	struct gen_ent *e;
	int i, ret;

	ret = store_scan_gens(s, job, &e, &j.n);
	if (ret) {
		pr_err("store %s: job %s: can't list generations: %s\n", s->dir, job,
		       strerror(-ret));
		return ret;
	}
	j.v = calloc(j.n + 1, sizeof(*j.v));
	if (!j.v) {
		free(e);
		return -ENOMEM;
	}
	for (i = 0; i < j.n; i++) {
		j.v[i].gen = e[i].gen;
		j.v[i].partial = e[i].partial;
	}
	free(e);
	ret = classify(&j, grace, flags);
	if (!ret)
		ret = retain(&j, keep);
	if (!ret && !(flags & STORE_GC_FORCE))
		recheck_busy(&j);
	for (i = 0; !ret && i < j.n; i++)
		if (!j.v[i].partial && !j.v[i].fresh)
			ret = sweep(&j, &j.v[i]);
	if (j.busy)
		pr_info("store: job %s: a generation is in progress, packs kept\n", job);
	if (ret)
		pr_err("store %s: job %s: gc incomplete: %s\n", s->dir, job, strerror(-ret));
	for (i = 0; i < j.n; i++)
		manifest_free(&j.v[i].m);
	free(j.v);
	packset_free(&j.refs);
	return ret;
}

int store_gc(struct store *s, const char *job, int keep, unsigned grace, unsigned flags,
	     struct store_gc_stats *st)
{
	struct store_gc_stats dummy;
	char **jobs;
	int n, i, ret = 0;

	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	if (keep < 0)
		return -EINVAL;
	if (job) {
		if (!store_valid_name(job)) {
			pr_err("store %s: invalid job name '%s'\n", s->dir, job);
			return -EINVAL;
		}
		return gc_job(s, job, keep, grace, flags, st);
	}
	ret = store_list_jobs(s, &jobs, &n);
	if (ret)
		return ret;
	for (i = 0; i < n; i++)
		ret = gc_job(s, jobs[i], keep, grace, flags, st) ?: ret;
	store_free_names(jobs, n);
	return ret;
}

/* everything but the packs: those go when nothing references them */
static void strip_gen(const char *dir)
{
	char path[STORE_PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (de->d_name[0] == '.' || (len > 5 && !strcmp(de->d_name + len - 5, ".pack")))
			continue;
		if (!store_path(path, "%s/%s", dir, de->d_name) && unlink(path))
			pr_perror("store: can't remove %s", path);
	}
	if (d)
		closedir(d);
}

int store_rm(struct store *s, const char *job, uint64_t gen, struct store_gc_stats *st)
{
	char dir[STORE_PATH_MAX], path[STORE_PATH_MAX];
	struct store_gc_stats dummy, sub;
	struct stat sb;
	int ret;

	if (!st)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	ret = store_job_path(s, job, dir);
	if (ret)
		return ret;
	if (!gen) {
		if (stat(dir, &sb)) {
			pr_err("store %s: no job %s\n", s->dir, job);
			return -ENOENT;
		}
		st->bytes = tree_size(dir);
		return store_rmtree(dir);
	}
	/* an unfinished generation has nothing others use */
	if (!store_gen_path(s, job, gen, 1, dir) && !stat(dir, &sb)) {
		st->bytes = tree_size(dir);
		st->partials = 1;
		return store_rmtree(dir);
	}
	ret = store_gen_path(s, job, gen, 0, dir) ?: store_path(path, "%s/MANIFEST", dir);
	if (ret)
		return ret;
	if (unlink(path)) {
		ret = -errno;
		pr_perror("store %s: job %s: can't remove generation %llu (%s)", s->dir, job,
			  (unsigned long long)gen, path);
		return ret;
	}
	store_fsync_path(dir);
	/* without its done markers gc does not take it for a commit under way */
	strip_gen(dir);
	ret = gc_job(s, job, 0, STORE_GC_GRACE_DEFAULT, 0, &sub);
	*st = sub;
	st->gens++;
	return ret;
}
