/**
 * \file pbcheck.h
 * What protobuf-c's unpack hides about strings, checked on the wire bytes before unpacking.
 *
 * protobuf-c hands a string field over NUL-terminated and does not validate it, so a string
 * with an embedded NUL would silently lose everything after the NUL (an id "a\0b" would act on
 * object "a"), and bytes that are not UTF-8 would be stored and later refused by conforming
 * clients (proto3 strings are UTF-8). Every request is checked once, at the RPC edge.
 */
#ifndef ENT_PBCHECK_H
#define ENT_PBCHECK_H

#include <protobuf-c/protobuf-c.h>

#include "ent/util.h"

/**
 * Walk the serialized message \a buf of type \a desc, recursing into sub-messages (repeated,
 * maps included), and refuse any string field that contains a NUL byte or is not valid UTF-8.
 * \return 0, or -ENT_EINVAL with \a err naming the field path, e.g.
 *         "feature.privileges[2].code: contains a NUL byte"; malformed wire data is
 *         "malformed request". Allocates nothing.
 */
ENT_API int ent_pb_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
				 size_t len, struct ent_err *err);

/**
 * Forget every unknown field of \a m and of every sub-message it holds (repeated and oneof
 * members included), so that nothing a client added outside the schema is stored or echoed
 * (docs/storage.md: stored messages are normalized). Only the references are dropped.
 * \note for messages unpacked into an arena (ent_pb_allocator): their memory goes with the
 * arena; a malloc-unpacked message would leak it.
 */
ENT_API void ent_pb_drop_unknown(ProtobufCMessage *m);

/** True if \a s[0..len) is valid UTF-8 (no overlong forms, surrogates or code points past
 *  U+10FFFF). */
ENT_API bool ent_pb_utf8_valid(const uint8_t *s, size_t len);

#endif
