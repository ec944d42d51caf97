/*
 * rpc internals shared by the server core (server.c, call.c, stream.c), the check service
 * (check.c), health (health.c) and the admin service (admin.c, auth.c).
 *
 * A unary method is a row of a method table: its full path, the request descriptor and a
 * handler. The server unpacks the request into the call's arena and calls the handler on the
 * call's completion-queue thread. The handler answers exactly once, with ent_rpc_call_reply() or
 * ent_rpc_call_fail(), either before it returns or later from another thread (the writer's
 * callback): starting the final batch is allowed from any thread, and the completion that
 * recycles the call always arrives on the call's own queue thread.
 */
#ifndef ENT_RPC_IMPL_H
#define ENT_RPC_IMPL_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "ent/rpc.h"

struct ent_call;

/** Per-worker-thread state, reachable from every call of that thread. */
struct ent_worker {
	struct ent_rpc *rpc;
	struct ent_view *view; /**< this thread's read view (reset between lookups) */
	unsigned index;
};

typedef void (*ent_unary_fn)(struct ent_call *call, const ProtobufCMessage *req);
/**
 * A handler that decodes its request itself: \a req is the serialized request (\a len bytes),
 * borrowed until the handler returns. It must answer before returning (it may not hand the
 * call to another thread).
 */
typedef void (*ent_raw_fn)(struct ent_call *call, const uint8_t *req, size_t len);

struct ent_method {
	const char *path; /**< "/ent.v1.AdminService/UpsertFeature" */
	const ProtobufCMessageDescriptor *request;
	ent_unary_fn handler;
	bool admin;	/**< needs the admin credential */
	ent_raw_fn raw; /**< when set, called instead of handler, without protobuf-c unpacking */
};

/** The admin service's method table (admin.c). */
extern const struct ent_method ent_rpc_admin_methods[];
extern const size_t ent_rpc_admin_methods_count;

/** The call's arena: lives until the call is recycled (after its final batch completes). */
struct ent_arena *ent_rpc_call_arena(struct ent_call *call);
/** The worker thread the call belongs to (its view is only safe to use on that thread). */
struct ent_worker *ent_rpc_call_worker(struct ent_call *call);
/** The server options (store, writer, credentials). */
const struct ent_rpc_opts *ent_rpc_call_opts(struct ent_call *call);

/** Pack \a resp and finish the call with OK. Any thread, once per call. */
void ent_rpc_call_reply(struct ent_call *call, const ProtobufCMessage *resp);
/** Finish with the status mapped from \a ent_code (ENT_E*, sign ignored) and \a msg. */
void ent_rpc_call_fail(struct ent_call *call, int ent_code, const char *msg);
/** Finish with an explicit gRPC status. */
void ent_rpc_call_fail_status(struct ent_call *call, grpc_status_code status, const char *msg);

/** ENT_E* code (sign ignored) to gRPC status: one table (status.c). */
grpc_status_code ent_rpc_status(int ent_code);

/**
 * Constant-time check of the credential carried by a call: `authorization: Bearer <token>` or
 * `x-api-key: <token>` against \a expected (auth.c). Empty \a expected refuses everything.
 * \return 0 or -ENT_EAUTH.
 */
int ent_rpc_auth_check(const char *expected, struct ent_str authorization, struct ent_str api_key);

#endif
