/*
 * The page index in memory: open addressing on the hash, which is already
 * uniformly distributed, so its low bits are the bucket.  The zero page is
 * never stored, which frees {0, 0} to mark empty slots.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store-int.h"

int reftab_init(struct ref_table *t, size_t hint)
{
	size_t cap = 1024;

	while (cap < hint * 2)
		cap <<= 1;
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->cap = cap;
	t->count = 0;
	return 0;
}

void reftab_free(struct ref_table *t)
{
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static struct store_loc *probe(struct store_loc *slots, size_t cap, uint64_t lo, uint64_t hi)
{
	size_t mask = cap - 1, i = lo & mask;

	while (slots[i].lo || slots[i].hi) {
		if (slots[i].lo == lo && slots[i].hi == hi)
			return &slots[i];
		i = (i + 1) & mask;
	}
	return &slots[i];
}

struct store_loc *reftab_find(const struct ref_table *t, uint64_t lo, uint64_t hi)
{
	struct store_loc *l = probe(t->slots, t->cap, lo, hi);

	return (l->lo || l->hi) ? l : NULL;
}

static int grow_to(struct ref_table *t, size_t cap)
{
	struct store_loc *n = calloc(cap, sizeof(*n));
	size_t i;

	if (!n)
		return -ENOMEM;
	for (i = 0; i < t->cap; i++)
		if (t->slots[i].lo || t->slots[i].hi)
			*probe(n, cap, t->slots[i].lo, t->slots[i].hi) = t->slots[i];
	free(t->slots);
	t->slots = n;
	t->cap = cap;
	return 0;
}

static int grow(struct ref_table *t)
{
	return grow_to(t, t->cap * 2);
}

int reftab_reserve(struct ref_table *t, size_t more)
{
	size_t cap = t->cap;

	while ((t->count + more) * 8 > cap * 5)
		cap <<= 1;
	return cap == t->cap ? 0 : grow_to(t, cap);
}

struct store_loc *reftab_insert(struct ref_table *t, const struct store_loc *loc)
{
	struct store_loc *l;

	/* at most 5/8 full: probes stay short */
	if ((t->count + 1) * 8 > t->cap * 5 && grow(t))
		return NULL;
	l = probe(t->slots, t->cap, loc->lo, loc->hi);
	*l = *loc;
	t->count++;
	return l;
}
