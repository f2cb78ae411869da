/* Which generations a job directory holds, from its entry names alone. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store-int.h"

/* "gen-G" or "gen-G.partial" with G a decimal > 0; 0 if it is neither */
static int parse_gen_name(const char *name, struct gen_ent *g)
{
	char *end;

	if (strncmp(name, "gen-", 4) || name[4] < '1' || name[4] > '9')
		return 0;
	errno = 0;
	g->gen = strtoull(name + 4, &end, 10);
	if (errno)
		return 0;
	if (!*end)
		g->partial = 0;
	else if (!strcmp(end, ".partial"))
		g->partial = 1;
	else
		return 0;
	return 1;
}

static int gen_cmp(const void *a, const void *b)
{
	const struct gen_ent *x = a, *y = b;

	if (x->gen != y->gen)
		return x->gen < y->gen ? -1 : 1;
	return x->partial - y->partial;
}

int store_scan_gens(const struct store *s, const char *job, struct gen_ent **out, int *np)
{
	char path[STORE_PATH_MAX];
	struct gen_ent *v = NULL, g;
	struct dirent *de;
	int n = 0, cap = 0, ret;
	DIR *d;

	ret = store_job_path(s, job, path);
	if (ret)
		return ret;
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!parse_gen_name(de->d_name, &g))
			continue;
		if (n == cap) {
			struct gen_ent *nv;

			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = g;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), gen_cmp);
	*out = v;
	*np = n;
	return 0;
}

int store_next_gen(struct store *s, const char *job, uint64_t *gen)
{
	struct gen_ent *v;
	int n, ret;

	ret = store_scan_gens(s, job, &v, &n);
	if (ret == -ENOENT) {
		*gen = 1;
		return 0;
	}
	if (ret) {
		if (ret != -EINVAL)
			pr_err("store %s: job %s: can't list generations: %s\n", s->dir, job,
			       strerror(-ret));
		return ret;
	}
	*gen = n ? v[n - 1].gen + 1 : 1;
	free(v);
	return 0;
}
