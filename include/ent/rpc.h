/**
 * \file rpc.h
 * The gRPC C-core server: one completion queue per worker thread, unary methods registered so
 * the request arrives with the call (one batch per call), the bidirectional check stream with
 * one read and one write in flight, grpc.health.v1.Health, and the admin service.
 */
#ifndef ENT_RPC_H
#define ENT_RPC_H

#include "ent/config.h"
#include "ent/store.h"
#include "ent/util.h"
#include "ent/writer.h"

struct ent_rpc;
struct ent_metrics;
struct ent_decision_log;

struct ent_fleet;

struct ent_rpc_opts {
	struct ent_store *store;
	struct ent_fleet *fleet;   /**< fleet mode (GetStatus shows the replica's lag); or NULL */
	bool start_not_serving;	   /**< health starts NOT_SERVING (fleet mode: until caught up) */
	struct ent_writer *writer; /**< NULL: write RPCs answer UNAVAILABLE */
	const char *const *listen; /**< "host:port" or "unix:/path" */
	size_t n_listen;
	unsigned threads;	  /**< completion-queue threads; 0: one per core */
	const char *admin_token;  /**< bearer token / API key; NULL or "": admin RPCs refused */
	bool protect_checks;	  /**< the check service needs the credential too */
	size_t max_message_bytes; /**< 0: 4 MiB; larger messages get RESOURCE_EXHAUSTED */
	unsigned calls_per_queue; /**< calls pre-requested per queue and method; 0: 64 */

	/*
	 * Listeners with their own services and protection. When n_listeners is non-zero they
	 * are used and listen/n_listen are ignored; each distinct service set gets its own
	 * grpc_server (the C core registers methods per server, not per port), all sharing the
	 * worker threads and their completion queues. The structs are read during ent_rpc_start
	 * only (TLS files are read then, and again by ent_rpc_reload_tls).
	 */
	const struct ent_config_listener *listeners;
	size_t n_listeners;

	/* HTTP/2 limits; 0 keeps gRPC's default (false for the flag). */
	unsigned max_concurrent_streams;     /**< GRPC_ARG_MAX_CONCURRENT_STREAMS */
	int64_t keepalive_time_ms;	     /**< GRPC_ARG_KEEPALIVE_TIME_MS */
	int64_t keepalive_timeout_ms;	     /**< GRPC_ARG_KEEPALIVE_TIMEOUT_MS */
	bool keepalive_permit_without_calls; /**< GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS */
	int64_t min_ping_interval_ms; /**< GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS */
	size_t max_metadata_bytes;    /**< GRPC_ARG_MAX_METADATA_SIZE */
	size_t memory_bytes;	      /**< GRPC_ARG_RESOURCE_QUOTA of every server */
	bool compression;	      /**< false: identity only (no gzip/deflate accepted) */
	int64_t max_connection_idle_ms; /**< GRPC_ARG_MAX_CONNECTION_IDLE_MS */
	int64_t max_connection_age_ms;	/**< GRPC_ARG_MAX_CONNECTION_AGE_MS */

	/**
	 * Counters (ent_metrics_new with ent_rpc_method_names()); NULL: nothing is counted.
	 * Each worker thread takes its own block. Must outlive the server.
	 */
	struct ent_metrics *metrics;
	/** Sampled decision log; NULL: none (ent_rpc_set_decision_log may add one later). */
	struct ent_decision_log *decision_log;
	/**
	 * A check (CheckEntitlement, BatchCheckEntitlements, GetCustomerEntitlements) whose
	 * min_sequence this node has not applied yet is parked until the writer applies it, for
	 * this long at most (and never past the call's deadline); 0: answered UNAVAILABLE at once.
	 * Needs a writer.
	 */
	int64_t min_seq_wait_ms;
	/** Checks parked at once at most; one more is answered UNAVAILABLE at once. 0: 1024. */
	size_t min_seq_wait_max;
};

/** Label of calls to methods the server does not have, in the metrics. */
#define ENT_RPC_METHOD_OTHER "other"

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

/**
 * The full paths of every method the server can serve, in the order of the metrics' method
 * indexes, ending with ENT_RPC_METHOD_OTHER. Fills up to \a cap pointers to static strings.
 * \return the number of methods (may exceed \a cap).
 */
ENT_API size_t ent_rpc_method_names(const char **names, size_t cap);

/** True while the health status is SERVING (false from the start of shutdown). Any thread. */
ENT_API bool ent_rpc_serving(const struct ent_rpc *r);
/** Calls that arrived and are not finished yet. Any thread. */
ENT_API size_t ent_rpc_open_calls(const struct ent_rpc *r);

/**
 * Replace the admin credential (SIGHUP). Calls that start after this use \a token (NULL or
 * "": admin calls refused); a call checking the old one at this moment still sees a valid
 * string: the old one is kept until ent_rpc_stop. Any thread.
 * \return 0 or -ENT_ENOMEM (the old token stays).
 */
ENT_API int ent_rpc_set_admin_token(struct ent_rpc *r, const char *token);

/**
 * Re-read the certificate, key and client CA files of every TLS listener (SIGHUP). \a ls are
 * the listeners of the new configuration; the TLS listener with the same address takes its
 * files from there. New handshakes use the new files; established connections keep theirs.
 * \return the number of TLS listeners whose files changed (the others keep their handshake
 * setup untouched), or -ENT_E* with \a err naming the listener and file (every listener then
 * keeps its current certificate).
 */
ENT_API int ent_rpc_reload_tls(struct ent_rpc *r, const struct ent_config_listener *ls, size_t n,
			       struct ent_err *err);

/**
 * Start logging sampled decisions to \a dl (which must outlive the server); NULL stops.
 * Any thread.
 */
ENT_API void ent_rpc_set_decision_log(struct ent_rpc *r, struct ent_decision_log *dl);

#endif
