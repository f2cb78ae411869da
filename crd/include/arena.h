/*
 * A bump allocator for the many small objects of one dump or restore: the
 * protobuf messages of a dump are built from it and freed in one go.
 */
#ifndef CRD_ARENA_H
#define CRD_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head;
};

/* Zeroed memory, or NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t size);
char *arena_strdup(struct arena *a, const char *s);
/* Grow *arr (of *cap elements of size sz) to hold at least n; 0 or -ENOMEM. */
int arena_grow(struct arena *a, void **arr, size_t *cap, size_t n, size_t sz);
void arena_free(struct arena *a);

#endif
