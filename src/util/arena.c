/* Bump allocator: blocks are reused across resets, so a steady state allocates nothing. */
#include <stdlib.h>
#include <string.h>

#include "ent/util.h"

struct ent_arena_block {
	struct ent_arena_block *next;
	size_t size, used;
	_Alignas(16) unsigned char data[];
};

void ent_arena_init(struct ent_arena *a, size_t block_size)
{
	a->head = NULL;
	a->free = NULL;
	a->block_size = block_size ? block_size : 64 * 1024;
}

static void free_list(struct ent_arena_block *b)
{
	while (b) {
		struct ent_arena_block *n = b->next;
		free(b);
		b = n;
	}
}

void ent_arena_deinit(struct ent_arena *a)
{
	free_list(a->head);
	free_list(a->free);
	a->head = a->free = NULL;
}

void *ent_arena_alloc(struct ent_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct ent_arena_block *b = a->head;
	if (b && b->size - b->used >= n) {
		void *p = b->data + b->used;
		b->used += n;
		return p;
	}
	/* Reuse a kept block if it is big enough; otherwise allocate one that fits. */
	struct ent_arena_block **pp = &a->free;
	while (*pp && (*pp)->size < n)
		pp = &(*pp)->next;
	if (*pp) {
		b = *pp;
		*pp = b->next;
	} else {
		size_t size = n > a->block_size ? n : a->block_size;
		b = malloc(sizeof(*b) + size);
		if (!b)
			return NULL;
		b->size = size;
	}
	b->used = n;
	b->next = a->head;
	a->head = b;
	return b->data;
}

char *ent_arena_strndup(struct ent_arena *a, const char *s, size_t n)
{
	char *p = ent_arena_alloc(a, n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

void ent_arena_reset(struct ent_arena *a)
{
	struct ent_arena_block *b = a->head;
	while (b) {
		struct ent_arena_block *n = b->next;
		b->used = 0;
		b->next = a->free;
		a->free = b;
		b = n;
	}
	a->head = NULL;
}
