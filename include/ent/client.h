/**
 * \file client.h
 * A small blocking gRPC client for entd on the gRPC C core: unary calls, the bidirectional
 * check stream and server streams (Health/Watch), with protobuf-c messages.
 *
 * Each client owns one insecure channel and one pluck completion queue. Every operation starts
 * one batch and plucks its own tag, so calls block the calling thread until they complete.
 * Plucking is fine in a client; the server never does it (STYLE.md).
 *
 * Threads: calls on one client may be made from several threads at once, at most
 * GRPC_MAX_COMPLETION_QUEUE_PLUCKERS (6) blocked at the same time. A stream is used by one
 * thread at a time.
 *
 * Errors: functions return 0 or a negative ENT_E* code. A call that reached the server and
 * ended with a non-OK status returns the code mapped by ent_client_status_err() and fills the
 * caller's status and details.
 */
#ifndef ENT_CLIENT_H
#define ENT_CLIENT_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "ent/util.h"

/** An open channel to one entd. Opaque. */
typedef struct ent_client ent_client;
/** One streaming call. Opaque. */
typedef struct ent_client_stream ent_client_stream;

/**
 * Open a client for \a target ("host:port" or "unix:/path"). The channel connects lazily: this
 * succeeds even when nothing listens yet, and the first call fails with UNAVAILABLE.
 * \param token bearer token sent as `authorization: Bearer <token>` on every call; NULL or ""
 *        sends no credential. Copied.
 * \return 0 or -ENT_EINVAL (empty target) / -ENT_ENOMEM.
 * \note Initialises the gRPC library (reference counted); free with ent_client_free().
 */
ENT_API int ent_client_new(const char *target, const char *token, ent_client **out);

/** Close the channel and free the client. Every stream of it must be freed first. NULL is ok. */
ENT_API void ent_client_free(ent_client *c);

/**
 * One unary call: pack \a req, send it to \a method_path ("/ent.v1.EntitlementService/
 * CheckEntitlement"), wait for the answer and unpack it as \a resp_desc.
 * \param deadline_ms time allowed for the whole call; <= 0 waits forever.
 * \param resp_out set to the response on success (status OK), NULL otherwise. The caller frees
 *        it with protobuf_c_message_free_unpacked(resp, NULL).
 * \param status if not NULL, the call's gRPC status (GRPC_STATUS_OK on success). A response
 *        that does not decode is reported as GRPC_STATUS_INTERNAL.
 * \param details if not NULL, receives the status message, NUL-terminated and truncated to
 *        \a details_len bytes ("" when OK).
 * \return 0 when the call ended with OK and the response decoded, else the negative ENT_E*
 *         code of the status (ent_client_status_err()).
 */
ENT_API int ent_client_call(ent_client *c, const char *method_path, const ProtobufCMessage *req,
			    const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ms,
			    ProtobufCMessage **resp_out, grpc_status_code *status, char *details,
			    size_t details_len);

/**
 * A unary call with raw request bytes, for tests that send what protobuf-c would never pack
 * (garbage, oversized messages) and for callers that pack themselves.
 * \param resp_out if not NULL, set to a malloc'ed copy of the response bytes (free() it), or
 *        NULL when there is none; \a resp_len receives its length.
 * \return as ent_client_call(); the response is not decoded.
 */
ENT_API int ent_client_call_raw(ent_client *c, const char *method_path, const void *req,
				size_t req_len, int64_t deadline_ms, void **resp_out,
				size_t *resp_len, grpc_status_code *status, char *details,
				size_t details_len);

/**
 * Start a streaming call to \a method_path and send the initial metadata (with the token).
 * Works for bidirectional streams (StreamCheckEntitlements) and server streams (send one
 * request, close the sending side, then receive: Health/Watch).
 * \param deadline_ms time allowed for the whole stream; <= 0 forever.
 * \return 0, or -ENT_EUNAVAIL / -ENT_ENOMEM. On success free \a *out with
 *         ent_client_stream_free().
 */
ENT_API int ent_client_stream_open(ent_client *c, const char *method_path, int64_t deadline_ms,
				   ent_client_stream **out);

/**
 * Send one message on the stream. Blocks until gRPC has taken it (flow control): a caller
 * that sends many messages without receiving stalls once the HTTP/2 windows of both directions
 * are full, so pipeline a bounded number (hundreds of small checks are fine).
 * \return 0, or -ENT_EUNAVAIL when the stream is already over (call
 *         ent_client_stream_finish() for the reason).
 */
ENT_API int ent_client_stream_send(ent_client_stream *s, const ProtobufCMessage *msg);

/** Half-close: tell the server no more messages come. Idempotent. \return 0 or -ENT_EUNAVAIL. */
ENT_API int ent_client_stream_close_send(ent_client_stream *s);

/**
 * Receive the next message and unpack it as \a desc.
 * \param out set to the message (free with protobuf_c_message_free_unpacked(m, NULL)), or NULL
 *        at the end of the stream.
 * \return 0 with a message, 1 at the end of the stream (then ent_client_stream_finish() tells
 *         the status), -ENT_ECORRUPT when the message does not decode.
 */
ENT_API int ent_client_stream_recv(ent_client_stream *s, const ProtobufCMessageDescriptor *desc,
				   ProtobufCMessage **out);

/**
 * Send one request and receive its answer: the request/response step of an in-order stream
 * such as StreamCheckEntitlements.
 * \return 0, 1 when the stream ended instead of answering, or a negative ENT_E* code.
 */
ENT_API int ent_client_stream_exchange(ent_client_stream *s, const ProtobufCMessage *req,
				       const ProtobufCMessageDescriptor *resp_desc,
				       ProtobufCMessage **resp_out);

/**
 * Half-close if not done yet, then wait for the server's status. Messages still unread are
 * discarded by gRPC.
 * \return 0 when the status is OK, else its negative ENT_E* code; \a status and \a details as
 *         in ent_client_call().
 */
ENT_API int ent_client_stream_finish(ent_client_stream *s, grpc_status_code *status, char *details,
				     size_t details_len);

/** Cancel the stream if still running and free it. NULL is ok. */
ENT_API void ent_client_stream_free(ent_client_stream *s);

/**
 * grpc.health.v1.Health/Check for \a service ("" for the whole server).
 * \param serving_status set to the HealthCheckResponse status (1 SERVING, 2 NOT_SERVING, ...).
 * \return as ent_client_call().
 */
ENT_API int ent_client_health_check(ent_client *c, const char *service, int64_t deadline_ms,
				    int *serving_status, grpc_status_code *status, char *details,
				    size_t details_len);

/**
 * grpc.health.v1.Health/Watch for \a service: open the stream, read the first message (the
 * current status), cancel the stream.
 * \return as ent_client_health_check().
 */
ENT_API int ent_client_health_watch_first(ent_client *c, const char *service, int64_t deadline_ms,
					  int *serving_status, grpc_status_code *status,
					  char *details, size_t details_len);

/** "OK", "INVALID_ARGUMENT", ...: the canonical name of a gRPC status. Static storage. */
ENT_API const char *ent_client_status_name(grpc_status_code status);

/**
 * The ENT_E* code (negative) a gRPC status stands for: the inverse of the server's table.
 * OK gives 0; statuses without an ENT_E* equivalent give -ENT_EIO.
 */
ENT_API int ent_client_status_err(grpc_status_code status);

#endif
