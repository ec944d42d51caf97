/* protobuf-c allocator backed by an arena. */
#include "ent/pbarena.h"

static void *arena_alloc(void *data, size_t size)
{
	return ent_arena_alloc(data, size ? size : 1);
}

static void arena_free(void *data, void *ptr)
{
	/* Freed all at once by ent_arena_reset. */
}

void ent_pb_allocator(ProtobufCAllocator *alloc, struct ent_arena *arena)
{
	alloc->alloc = arena_alloc;
	alloc->free = arena_free;
	alloc->allocator_data = arena;
}
