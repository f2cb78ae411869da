/* Listing jobs and their visible generations. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store-int.h"

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void store_free_names(char **names, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int store_list_jobs(struct store *s, char ***out, int *np)
{
	char path[STORE_PATH_MAX], **v = NULL, **nv;
	struct dirent *de;
	int n = 0, ret;
	DIR *d;

	ret = store_path(path, "%s/jobs", s->dir);
	if (ret)
		return ret;
	d = opendir(path);
	if (!d) {
		ret = -errno;
		pr_perror("store: can't list %s", path);
		return ret;
	}
	while ((de = readdir(d))) {
		/* some network file systems leave d_type unknown */
		if (!store_valid_name(de->d_name) ||
		    (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv || !(nv[n] = strdup(de->d_name))) {
			store_free_names(nv ? nv : v, n);
			closedir(d);
			return -ENOMEM;
		}
		v = nv;
		n++;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	*np = n;
	return 0;
}

int store_list_gens(struct store *s, const char *job, struct store_gen_info **out, int *np)
{
	char path[STORE_PATH_MAX];
	struct store_gen_info *v;
	struct manifest m;
	struct gen_ent *e;
	int n, i, k = 0, ret;

	ret = store_scan_gens(s, job, &e, &n);
	if (ret) {
		if (ret != -EINVAL)
			pr_err("store %s: no job %s (%s)\n", s->dir, job, strerror(-ret));
		return ret;
	}
	v = calloc(n + 1, sizeof(*v));
	for (i = 0; v && i < n; i++) {
		if (e[i].partial || store_path(path, "%s/jobs/%s/gen-%llu/MANIFEST", s->dir, job,
					       (unsigned long long)e[i].gen) ||
		    manifest_read(path, &m))
			continue;
		if (!m.is_done && m.gen == e[i].gen && !strcmp(m.job, job))
			v[k++] = (struct store_gen_info){
				.gen = m.gen, .created = m.created, .nodes = m.nnodes,
				.files = m.nfiles, .packs = m.packs.n, .logical = m.logical,
				.stored = m.stored };
		manifest_free(&m);
	}
	free(e);
	if (!v)
		return -ENOMEM;
	*out = v;
	*np = k;
	return 0;
}
