/*
 * Sets of pack files, named by (generation, node).  A generation references
 * packs of earlier ones, so a pack is never named by its own directory alone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store-int.h"

int packset_find(const struct pack_set *ps, uint64_t gen, const char *node)
{
	int i;

	/* few packs per set: a job has nodes x generations at most */
	for (i = ps->n - 1; i >= 0; i--)
		if (ps->v[i].gen == gen && !strcmp(ps->v[i].node, node))
			return i;
	return -ENOENT;
}

int packset_add(struct pack_set *ps, uint64_t gen, const char *node)
{
	int i = packset_find(ps, gen, node);

	if (i >= 0)
		return i;
	if (strlen(node) > STORE_NAME_MAX)
		return -EINVAL;
	if (ps->n == ps->cap) {
		int cap = ps->cap ? ps->cap * 2 : 8;
		struct pack_id *nv = realloc(ps->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		ps->v = nv;
		ps->cap = cap;
	}
	ps->v[ps->n].gen = gen;
	strcpy(ps->v[ps->n].node, node);
	return ps->n++;
}

void packset_free(struct pack_set *ps)
{
	free(ps->v);
	memset(ps, 0, sizeof(*ps));
}

int store_pack_path(const struct store *s, const char *job, const struct pack_id *p,
		    int partial, char *buf)
{
	return store_path(buf, "%s/jobs/%s/gen-%llu%s/%s.pack", s->dir, job,
			  (unsigned long long)p->gen, partial ? ".partial" : "", p->node);
}
