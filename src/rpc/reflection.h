/**
 * \file reflection.h
 * gRPC Server Reflection (grpc.reflection.v1alpha and grpc.reflection.v1), so grpcurl, Postman
 * and evans can call entd without its .proto files.
 *
 * The protocol is one bidirectional stream per client, method ServerReflectionInfo, under two
 * service names whose messages have the same wire layout:
 *
 *     ENT_REFLECTION_PATH_V1ALPHA  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
 *     ENT_REFLECTION_PATH_V1       "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
 *
 * This module is only the logic: one serialized ServerReflectionRequest in, one serialized
 * ServerReflectionResponse out. The stream plumbing (read a message, answer it, read the next
 * until the client half-closes) belongs to the server core, which serves both paths with the
 * same function.
 *
 * Answers come from a FileDescriptorSet of every served proto file (and their imports), made by
 * protoc at build time and linked into the library (cmake/embed_bytes.cmake). It is parsed once
 * by ent_rpc_reflection_init() into read-only tables; after that ent_rpc_reflection_answer() may
 * run on any number of threads at once without a lock.
 */
#ifndef ENT_RPC_REFLECTION_H
#define ENT_RPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "ent/util.h"

/** Full method path of the v1alpha reflection stream (what grpcurl and evans call first). */
#define ENT_REFLECTION_PATH_V1ALPHA "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
/** Full method path of the v1 reflection stream (newer clients, Postman). */
#define ENT_REFLECTION_PATH_V1 "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"

/** The FileDescriptorSet generated at build time (gen/ent_descriptors.c). */
extern const unsigned char ent_rpc_reflection_fds[];
extern const size_t ent_rpc_reflection_fds_len;

/**
 * Parse the embedded FileDescriptorSet into the lookup tables. Call once at start, before any
 * thread calls ent_rpc_reflection_answer(); calling it again while initialised does nothing.
 * \return 0, -ENT_ENOMEM, or -ENT_ECORRUPT if the set does not decode, a dependency is
 *         missing, or a served service is not in the set.
 */
ENT_API int ent_rpc_reflection_init(void);

/**
 * Like ent_rpc_reflection_init() but from the set \a fds of \a len bytes (tests, tools).
 * \note \a fds is borrowed: it must stay valid and unchanged until ent_rpc_reflection_deinit(),
 *       because answers point into it instead of copying each file.
 * \return as ent_rpc_reflection_init().
 */
ENT_API int ent_rpc_reflection_init_set(const uint8_t *fds, size_t len);

/**
 * Answer one ServerReflectionRequest (\a req, \a len bytes, any content).
 *
 * - list_services: the services entd serves (entitlement, admin, health, both reflections);
 * - file_by_filename: that file, then its transitive dependencies, each once;
 * - file_containing_symbol: the same for the file declaring a fully-qualified package member,
 *   message, field, oneof, enum, enum value, service or method (a leading '.' is allowed);
 * - file_containing_extension: NOT_FOUND (entd defines no extensions);
 * - all_extension_numbers_of_type: an empty list for a known message, else NOT_FOUND;
 * - a request that does not decode or sets none of these: INVALID_ARGUMENT.
 * Failures are answered in the response's error_response (a grpc status code), never as an
 * error return; valid_host and original_request echo the request as the protocol says.
 *
 * \param arena the call's arena: the request is unpacked and the response packed into it.
 * \param[out] resp the serialized ServerReflectionResponse, valid until \a arena is reset.
 * \param[out] resp_len its length.
 * \return 0 (a response was produced), -ENT_EINVAL (NULL argument), -ENT_EUNAVAIL (not
 *         initialised), -ENT_ENOMEM (arena exhausted).
 * \note Thread-safe after ent_rpc_reflection_init(): reads only the tables built there.
 */
ENT_API int ent_rpc_reflection_answer(const uint8_t *req, size_t len, struct ent_arena *arena,
				      uint8_t **resp, size_t *resp_len);

/** Free the tables. No call to ent_rpc_reflection_answer() may be running or follow. */
ENT_API void ent_rpc_reflection_deinit(void);

#endif
