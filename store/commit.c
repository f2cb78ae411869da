/*
 * Committing a generation: every node's done marker is there, the directory
 * loses its .partial suffix, and the MANIFEST makes it visible.  The rename
 * comes first so that a MANIFEST is never seen in a directory that can still
 * be abandoned; a crash between the two leaves a generation without a
 * MANIFEST, which readers ignore and a repeated commit completes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "store-int.h"

/* fold NODE.done of dir into the manifest */
static int add_node(struct manifest *m, const char *dir, const char *node)
{
	char path[STORE_PATH_MAX];
	struct manifest d;
	int i, k, ret;

	ret = store_path(path, "%s/%s.done", dir, node);
	if (ret)
		return ret;
	ret = manifest_read(path, &d);
	if (!ret && (!d.is_done || d.nnodes != 1 || strcmp(d.nodes[0].name, node))) {
		manifest_free(&d);
		ret = -EBADMSG;
	}
	if (ret) {
		pr_err("store: job %s gen %llu: node %s is not done (%s: %s)\n", m->job,
		       (unsigned long long)m->gen, node, path,
		       ret == -ENOENT ? "missing" : strerror(-ret));
		return ret;
	}
	k = m->nnodes;
	ret = manifest_add_node(m, &d.nodes[0]);
	for (i = 0; !ret && i < d.packs.n; i++)
		ret = packset_add(&m->packs, d.packs.v[i].gen, d.packs.v[i].node) < 0 ? -ENOMEM : 0;
	for (i = 0; !ret && i < d.nfiles; i++)
		ret = manifest_add_file(m, d.files[i].name, k, d.files[i].size, d.files[i].hash);
	manifest_free(&d);
	if (ret)
		pr_err("store: job %s gen %llu: out of memory\n", m->job,
		       (unsigned long long)m->gen);
	return ret;
}

static int file_cmp(const void *a, const void *b)
{
	const struct mfile *x = *(const struct mfile *const *)a;
	const struct mfile *y = *(const struct mfile *const *)b;

	return strcmp(x->name, y->name);
}

/* a blob name given by two nodes could not be read back unambiguously */
static int check_files(const struct manifest *m)
{
	const struct mfile **v = malloc((m->nfiles + 1) * sizeof(*v));
	int i, ret = 0;

	if (!v)
		return -ENOMEM;
	for (i = 0; i < m->nfiles; i++)
		v[i] = &m->files[i];
	/* sorted, so that thousands of nodes' files cost n log n */
	qsort(v, m->nfiles, sizeof(*v), file_cmp);
	for (i = 1; i < m->nfiles && !ret; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name)) {
			pr_err("store: job %s gen %llu: blob %s put by nodes %s and %s\n", m->job,
			       (unsigned long long)m->gen, v[i]->name,
			       m->nodes[v[i - 1]->node].name, m->nodes[v[i]->node].name);
			ret = -EEXIST;
		}
	free(v);
	return ret;
}

/* gen-G.partial -> gen-G, unless an interrupted commit already did it */
static int promote(const struct store *s, const char *job, uint64_t gen, char *dir)
{
	char partial[STORE_PATH_MAX], path[STORE_PATH_MAX];
	struct stat st;
	int ret;

	ret = store_gen_path(s, job, gen, 1, partial) ?: store_gen_path(s, job, gen, 0, dir) ?:
	      store_path(path, "%s/MANIFEST", dir);
	if (ret)
		return ret;
	if (!stat(path, &st)) {
		pr_err("store: job %s gen %llu: already committed (%s exists)\n", job,
		       (unsigned long long)gen, path);
		return -EEXIST;
	}
	if (stat(partial, &st) && !stat(dir, &st))
		return 0;
	/* the writers fsynced it from their nodes; this node's view must be durable too */
	ret = store_fsync_path(partial);
	if (ret)
		return ret;
	if (rename(partial, dir)) {
		ret = -errno;
		pr_perror("store: job %s gen %llu: can't rename %s", job,
			  (unsigned long long)gen, partial);
		return ret;
	}
	ret = store_path(path, "%s/jobs/%s", s->dir, job);
	return ret ?: store_fsync_path(path);
}

static int check_nodes(const struct store *s, const char *job, uint64_t gen,
		       const char *const *nodes, int nnodes, struct manifest *m)
{
	char dir[STORE_PATH_MAX];
	struct stat st;
	int i, ret;

	/* before the rename, the done markers are in the partial directory */
	ret = store_gen_path(s, job, gen, 0, dir);
	if (!ret && stat(dir, &st))
		ret = store_gen_path(s, job, gen, 1, dir);
	for (i = 0; !ret && i < nnodes; i++) {
		if (!store_valid_name(nodes[i]) || manifest_find_node(m, nodes[i]) >= 0) {
			pr_err("store: job %s gen %llu: invalid or repeated node name '%s'\n", job,
			       (unsigned long long)gen, nodes[i]);
			return -EINVAL;
		}
		ret = add_node(m, dir, nodes[i]);
	}
	return ret ?: check_files(m);
}

int store_commit(struct store *s, const char *job, uint64_t gen, const char *const *nodes,
		 int nnodes)
{
	char dir[STORE_PATH_MAX];
	struct manifest m = { 0 };
	int ret;

	if (!store_valid_name(job) || !gen || nnodes <= 0) {
		pr_err("store %s: commit of job '%s' gen %llu with %d nodes: invalid\n", s->dir,
		       job, (unsigned long long)gen, nnodes);
		return -EINVAL;
	}
	strcpy(m.job, job);
	m.gen = gen;
	m.created = time(NULL);
	ret = check_nodes(s, job, gen, nodes, nnodes, &m);
	if (!ret)
		ret = promote(s, job, gen, dir);
	if (!ret)
		ret = manifest_write(&m, dir, "MANIFEST");
	manifest_free(&m);
	return ret;
}
