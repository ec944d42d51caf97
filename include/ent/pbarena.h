/**
 * \file pbarena.h
 * A ProtobufCAllocator over an ent_arena, so protobuf-c unpacks into per-thread memory that is
 * dropped with one reset instead of a free per field.
 */
#ifndef ENT_PBARENA_H
#define ENT_PBARENA_H

#include <protobuf-c/protobuf-c.h>

#include "ent/util.h"

/** Fill \a alloc so it allocates from \a arena (free is a no-op). */
ENT_API void ent_pb_allocator(ProtobufCAllocator *alloc, struct ent_arena *arena);

#endif
