/* Bump allocator: chunks of at least 64 KiB, freed together. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;
	size_t used;
	char data[];
};

void *arena_alloc(struct arena *a, size_t size)
{
	struct arena_chunk *c = a->head;
	void *p;

	size = (size + 15) & ~15UL;
	if (!c || c->size - c->used < size) {
		size_t csize = size > 65536 ? size : 65536;

		c = calloc(1, sizeof(*c) + csize);
		if (!c)
			return NULL;
		c->size = csize;
		c->next = a->head;
		a->head = c;
	}
	p = c->data + c->used;
	c->used += size;
	return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
	size_t len = strlen(s) + 1;
	char *d = arena_alloc(a, len);

	if (d)
		memcpy(d, s, len);
	return d;
}

int arena_grow(struct arena *a, void **arr, size_t *cap, size_t n, size_t sz)
{
	size_t ncap = *cap ? *cap : 8;
	void *na;

	if (n <= *cap)
		return 0;
	while (ncap < n)
		ncap *= 2;
	na = arena_alloc(a, ncap * sz);
	if (!na)
		return -ENOMEM;
	if (*arr)
		memcpy(na, *arr, *cap * sz);
	*arr = na;
	*cap = ncap;
	return 0;
}

void arena_free(struct arena *a)
{
	while (a->head) {
		struct arena_chunk *c = a->head;

		a->head = c->next;
		free(c);
	}
}
