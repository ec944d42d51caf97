/**
 * \file rpc.h
 * The gRPC C-core server: one completion queue per worker thread, unary methods registered so
 * the request arrives with the call (one batch per call), the bidirectional check stream with
 * one read and one write in flight, grpc.health.v1.Health, and the admin service.
 */
#ifndef ENT_RPC_H
#define ENT_RPC_H

#include "ent/store.h"
#include "ent/util.h"
#include "ent/writer.h"

struct ent_rpc;

struct ent_rpc_opts {
	struct ent_store *store;
	struct ent_writer *writer; /**< NULL: write RPCs answer UNAVAILABLE */
	const char *const *listen; /**< "host:port" or "unix:/path" */
	size_t n_listen;
	unsigned threads;	  /**< completion-queue threads; 0: one per core */
	const char *admin_token;  /**< bearer token / API key; NULL or "": admin RPCs refused */
	bool protect_checks;	  /**< the check service needs the credential too */
	size_t max_message_bytes; /**< 0: 4 MiB; larger messages get RESOURCE_EXHAUSTED */
	unsigned calls_per_queue; /**< calls pre-requested per queue and method; 0: 64 */
};

/**
 * Bind every listener and start the worker threads.
 * \return 0, or -ENT_E* with \a err naming the listener that failed.
 */
ENT_API int ent_rpc_start(const struct ent_rpc_opts *opts, struct ent_rpc **out,
			  struct ent_err *err);
/** Health status of "" and every service (SERVING / NOT_SERVING); Watch streams are told. */
ENT_API void ent_rpc_set_serving(struct ent_rpc *r, bool serving);
/**
 * Stop accepting calls, let in-flight calls finish for up to \a grace_ms, cancel the rest,
 * join the threads and free everything.
 */
ENT_API void ent_rpc_stop(struct ent_rpc *r, int64_t grace_ms);

#endif
