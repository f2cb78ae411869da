/* The store's command line: ls, show, verify, gc, rm. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store-int.h"

struct cli {
	const char *cmd;
	const char *dir;
	const char *job;
	uint64_t gen;
	int keep;
	int force;
	unsigned grace;
	const char *writers[64];	/* commit: the generation's writers */
	int nwriters;
};

static const char usage[] =
	"usage: ls [JOB] | show JOB [GEN] | verify JOB [GEN] |\n"
	"       gc [--keep K] [--force] [--grace SECONDS] [JOB] | rm JOB [GEN] |\n"
	"       commit JOB GEN --writer NAME...\n"
	"       with -S/--store DIR or $CRD_STORE naming the store\n";

static void human(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = n;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u)
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	else
		snprintf(buf, len, "%" PRIu64 " B", n);
}

static void ratio(uint64_t logical, uint64_t stored, char *buf, size_t len)
{
	if (stored)
		snprintf(buf, len, "%.2f", (double)logical / stored);
	else
		snprintf(buf, len, "-");
}

static void when(int64_t t, char *buf, size_t len)
{
	time_t tt = t;
	struct tm tm;

	if (!localtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "%" PRId64, t);
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || end == s || *end || s[0] == '-' ? -EINVAL : 0;
}

static int parse_args(int argc, char **argv, struct cli *c)
{
	const char *pos[2];
	uint64_t v;
	int i, npos = 0;

	c->cmd = argv[0];
	c->dir = getenv("CRD_STORE");
	c->grace = STORE_GC_GRACE_DEFAULT;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has_val = i + 1 < argc;

		if ((!strcmp(a, "-S") || !strcmp(a, "-D") || !strcmp(a, "--store")) && has_val)
			c->dir = argv[++i];
		else if (!strcmp(a, "--keep") && has_val && !parse_u64(argv[i + 1], &v) &&
			 v < 1000000)
			c->keep = v, i++;
		else if (!strcmp(a, "--grace") && has_val && !parse_u64(argv[i + 1], &v) &&
			 v < 100000000)
			c->grace = v, i++;
		else if (!strcmp(a, "--force"))
			c->force = 1;
		else if (!strcmp(a, "--writer") && has_val && c->nwriters < 64)
			c->writers[c->nwriters++] = argv[++i];
		else if (a[0] != '-' && npos < 2)
			pos[npos++] = a;
		else
			return -EINVAL;
	}
	if (!c->dir)
		return -EINVAL;
	if (npos > 0)
		c->job = pos[0];
	if (npos > 1 && (parse_u64(pos[1], &c->gen) || !c->gen))
		return -EINVAL;
	return 0;
}

static void print_gen(const char *job, const struct store_gen_info *g)
{
	char t[32], l[16], s[16], r[16];

	when(g->created, t, sizeof(t));
	human(g->logical, l, sizeof(l));
	human(g->stored, s, sizeof(s));
	ratio(g->logical, g->stored, r, sizeof(r));
	printf("%-24s %5" PRIu64 "  %-19s %5d %6d %11s %11s %7s\n", job, g->gen, t, g->nodes,
	       g->files, l, s, r);
}

static int ls_job(struct store *s, const char *job)
{
	struct store_gen_info *v;
	int n, i, ret;

	ret = store_list_gens(s, job, &v, &n);
	if (ret)
		return ret;
	for (i = 0; i < n; i++)
		print_gen(job, &v[i]);
	free(v);
	return 0;
}

static int cmd_ls(struct store *s, const struct cli *c)
{
	char **jobs;
	int n, i, ret = 0;

	printf("%-24s %5s  %-19s %5s %6s %11s %11s %7s\n", "JOB", "GEN", "CREATED", "NODES",
	       "FILES", "LOGICAL", "STORED", "RATIO");
	if (c->job)
		return ls_job(s, c->job);
	ret = store_list_jobs(s, &jobs, &n);
	if (ret)
		return ret;
	for (i = 0; i < n; i++)
		ret = ls_job(s, jobs[i]) ?: ret;
	store_free_names(jobs, n);
	return ret;
}

static void show_manifest(const struct manifest *m)
{
	char t[32], l[16], s[16], r[16];
	int i;

	when(m->created, t, sizeof(t));
	human(m->logical, l, sizeof(l));
	human(m->stored, s, sizeof(s));
	ratio(m->logical, m->stored, r, sizeof(r));
	printf("job %s generation %" PRIu64 "\ncreated %s\n", m->job, m->gen, t);
	printf("logical %s (%" PRIu64 " bytes), stored %s (%" PRIu64 " bytes), dedup ratio %s\n",
	       l, m->logical, s, m->stored, r);
	printf("nodes %d:\n", m->nnodes);
	for (i = 0; i < m->nnodes; i++) {
		const struct mnode *n = &m->nodes[i];

		human(n->logical, l, sizeof(l));
		human(n->stored, s, sizeof(s));
		printf("  %-20s pages %" PRIu64 " (zero %" PRIu64 ", new %" PRIu64
		       "), logical %s, stored %s\n", n->name, n->pages, n->zero, n->new_pages,
		       l, s);
	}
	printf("packs %d:\n", m->packs.n);
	for (i = 0; i < m->packs.n; i++)
		printf("  gen-%" PRIu64 "/%s.pack\n", m->packs.v[i].gen, m->packs.v[i].node);
	printf("files %d:\n", m->nfiles);
	for (i = 0; i < m->nfiles; i++)
		printf("  %-40s %10" PRIu64 "  %s\n", m->files[i].name, m->files[i].size,
		       m->nodes[m->files[i].node].name);
}

static int cmd_show(struct store *s, const struct cli *c)
{
	struct manifest m;
	int ret;

	ret = store_load_manifest(s, c->job, c->gen, &m);
	if (ret)
		return ret;
	show_manifest(&m);
	manifest_free(&m);
	return 0;
}

static int cmd_verify(struct store *s, const struct cli *c)
{
	struct manifest m;
	uint64_t gen = c->gen;
	int ret;

	if (!gen) {
		ret = store_load_manifest(s, c->job, 0, &m);
		if (ret)
			return ret;
		gen = m.gen;
		manifest_free(&m);
	}
	ret = store_verify(s, c->job, gen);
	if (ret)
		printf("job %s generation %" PRIu64 ": FAILED (%s)\n", c->job, gen,
		       strerror(-ret));
	else
		printf("job %s generation %" PRIu64 ": ok\n", c->job, gen);
	return ret;
}

static void print_removed(const struct store_gc_stats *st)
{
	char b[16];

	human(st->bytes, b, sizeof(b));
	printf("removed %d partial generations, %d generations, %d pack files, %s\n",
	       st->partials, st->gens, st->packs, b);
}

static int cmd_gc(struct store *s, const struct cli *c)
{
	struct store_gc_stats st;
	int ret;

	ret = store_gc(s, c->job, c->keep, c->grace, c->force ? STORE_GC_FORCE : 0, &st);
	print_removed(&st);
	return ret;
}

static int cmd_rm(struct store *s, const struct cli *c)
{
	struct store_gc_stats st;
	int ret;

	ret = store_rm(s, c->job, c->gen, &st);
	if (!ret)
		print_removed(&st);
	return ret;
}

/* the writers of a generation all finished (dump --no-commit): make it visible */
static int cmd_commit(struct store *s, const struct cli *c)
{
	int ret;

	if (!c->gen || !c->nwriters) {
		fputs(usage, stderr);
		return -EINVAL;
	}
	ret = store_commit(s, c->job, c->gen, c->writers, c->nwriters);
	if (!ret)
		printf("job %s generation %" PRIu64 " committed\n", c->job, c->gen);
	return ret;
}

int store_cli(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct store *s, const struct cli *c);
		int need_job;
	} cmds[] = {
		{ "ls", cmd_ls, 0 }, { "show", cmd_show, 1 }, { "verify", cmd_verify, 1 },
		{ "gc", cmd_gc, 0 }, { "rm", cmd_rm, 1 }, { "commit", cmd_commit, 1 },
	};
	struct cli c = { 0 };
	struct store *s;
	size_t i;
	int ret;

	if (argc < 1 || parse_args(argc, argv, &c)) {
		fputs(usage, stderr);
		return 2;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(c.cmd, cmds[i].name))
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0]) || (cmds[i].need_job && !c.job) ||
	    (c.gen && (!strcmp(c.cmd, "ls") || !strcmp(c.cmd, "gc")))) {
		fputs(usage, stderr);
		return 2;
	}
	ret = store_open(c.dir, &s);
	if (ret)
		return 1;
	ret = cmds[i].fn(s, &c);
	store_close(s);
	fflush(stdout);
	return ret ? 1 : 0;
}
