/*
 * Private to the server core (server.c, call.c, stream.c, tls.c) and the services built
 * directly on its call state (check.c for the bidirectional check stream, health.c for Watch).
 * admin.c only needs impl.h.
 *
 * Threads and ownership
 * ---------------------
 * Each worker thread owns one completion queue, one read view and a pool of struct ent_call.
 * A call object is requested on its worker's queue and every batch it starts reports back to
 * that same queue, so all of its state changes happen on one thread and need no lock. The one
 * exception is a unary handler that hands its work to the writer: from then on the writer
 * thread owns the call until ent_rpc_call_reply()/ent_rpc_call_fail() has started the final batch;
 * the worker does not touch the call in between, and the completion comes back to the worker.
 *
 * A call object is recycled (back on its worker's free list, its arena reset) when no batch is
 * in flight (pending == 0) and the call is over (finished). Recycling never frees memory of our
 * own, so a steady state allocates nothing in this module.
 *
 * Metrics: each worker owns one counter block (ws->mb). A call is counted once, when it is
 * recycled (always on its worker thread), with the status and time recorded when its final
 * batch started, so a call answered from the writer thread never touches the block. Check
 * decisions are counted where the check response is sent, which is on the worker thread.
 *
 * Worker notifications (health changes, shutdown, orphaned calls) are delivered as completions:
 * another thread creates a call on a lame channel bound to the worker's queue, which fails at
 * once and so posts its tag there. The C core has no public alarm; this is the smallest public
 * way to wake one particular queue.
 */
#ifndef ENT_RPC_CORE_H
#define ENT_RPC_CORE_H

#include <pthread.h>
#include <stdatomic.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/grpc_security_constants.h>
#include <grpc/support/time.h>

#include "ent/metrics.h"
#include "ent/store.h"
#include "ent/writer.h"
#include "rpc/impl.h"

/** What a completion means; every tag handed to gRPC is a struct ent_tag. */
enum ent_tag_kind {
	ENT_TAG_REQUEST,  /**< a requested call arrived (success 0: slot killed by shutdown) */
	ENT_TAG_BATCH,	  /**< the final batch (status sent, close received) */
	ENT_TAG_RECV,	  /**< stream: a RECV_MESSAGE finished */
	ENT_TAG_SEND,	  /**< stream: a SEND_MESSAGE finished */
	ENT_TAG_CLOSE,	  /**< watch: the early RECV_CLOSE_ON_SERVER finished */
	ENT_TAG_NOTIFY,	  /**< a worker notification (lame call finished) */
	ENT_TAG_SHUTDOWN, /**< grpc_server_shutdown_and_notify finished */
};

struct ent_tag {
	uint8_t kind;
	void *owner; /**< the struct ent_call, ent_wstate or ent_rpc it belongs to */
};

enum ent_method_kind {
	ENT_MK_UNARY,	     /**< request arrives with the call, one final batch */
	ENT_MK_CHECK_STREAM, /**< ent.v1.EntitlementService/StreamCheckEntitlements */
	ENT_MK_WATCH,	     /**< grpc.health.v1.Health/Watch */
	ENT_MK_GENERIC,	     /**< any unregistered method: UNIMPLEMENTED */
	ENT_MK_REFLECTION,   /**< grpc.reflection.v1alpha/v1 ServerReflectionInfo (a stream) */
};

struct ent_srv;

/** A registered method of one of the running grpc_servers. */
struct ent_rmethod {
	const char *path;
	const struct ent_method *m; /**< unary: descriptor and handler; NULL otherwise */
	uint8_t kind;		    /**< enum ent_method_kind */
	bool auth;		    /**< needs the credential (admin, or checks when protected) */
	unsigned prearm;	    /**< calls kept requested per queue */
	unsigned mindex;	    /**< index in ent_rpc_method_names() (metrics) */
	void *handle;		    /**< grpc_server_register_method's handle */
	struct ent_srv *srv;	    /**< the server it is registered with */
};

/*
 * One grpc_server: the listeners that serve the same set of services. The C core registers
 * methods per server, so each distinct set gets its own server, method table and generic
 * slots; every worker's queue is registered with every server.
 */
struct ent_srv {
	grpc_server *server;
	unsigned services; /**< enum ent_config_service bits */
	struct ent_rmethod *methods;
	size_t n_methods;
	struct ent_rmethod generic;
	struct ent_tag t_shutdown;
	bool shutdown_started;
};

/*
 * A TLS listener's certificate state, read by gRPC's config fetcher on every new handshake
 * (any gRPC thread) and replaced by ent_rpc_reload_tls (main thread). Invariant: gen changes
 * only under mu, together with the PEM strings; served is the gen last handed to gRPC, so the
 * fetcher's common case is two atomic loads and no lock.
 */
struct ent_tls {
	char *address;
	pthread_mutex_t mu;
	char *cert, *key, *ca; /**< PEM contents (ca may be NULL); under mu */
	atomic_uint gen;
	atomic_uint served;
	grpc_ssl_client_certificate_request_type request;
};

/* ---- tls.c ---------------------------------------------------------------------------- */

/**
 * Read and check the PEM files of TLS listener \a l and add its state to r->tls (freed by
 * ent_rpc_tls_free at teardown). \return 0, or -ENT_E* with \a err naming the file.
 */
int ent_rpc_tls_new(struct ent_rpc *r, const struct ent_config_listener *l, struct ent_tls **out,
		    struct ent_err *err);
/** gRPC's certificate config fetcher for \a user, a struct ent_tls (any gRPC thread). */
grpc_ssl_certificate_config_reload_status
ent_rpc_tls_fetch(void *user, grpc_ssl_server_certificate_config **out);
/** Free a listener's TLS state (teardown, once every server is destroyed). */
void ent_rpc_tls_free(struct ent_tls *t);

/*
 * One check decided by ent_rpc_check_decide (check.c): its encoded response and what the metrics
 * count when it is sent. Each call holds one (struct ent_call.ans). The worker's drain pass may
 * decide it before the call's completion is dispatched; the answer then waits in the call and
 * is recognised by the request bytes it answers (req, len), so it can only be sent for them.
 * Invariant: out holds a slice reference exactly when ok is set; whoever clears ok sends or
 * unrefs out (ent_rpc_call_drop_answer).
 */
struct ent_answer {
	const uint8_t *req; /**< the request bytes it answers (borrowed from the call's buffer) */
	size_t len;
	bool ok;      /**< decided: out holds the encoded response */
	bool allowed; /**< the decision, for the metrics and the decision log */
	uint8_t reason;
	uint64_t seq;	      /**< the snapshot it was decided in */
	uint64_t behind;      /**< a lone check refused for its min_sequence: that sequence */
	struct ent_check chk; /**< strings borrow the request, alive until it is answered */
	grpc_slice out;
};

struct ent_wstate;

/*
 * One call. Invariants:
 * - pending counts batches in flight; the call is recycled on its worker thread when the last
 *   one completes and finished is set (the final status batch was started, or the call died).
 * - streams: at most one RECV_MESSAGE (recv_busy) and one SEND_MESSAGE (send_busy) in flight;
 *   a message received while a send is in flight waits in held.
 * - sent holds the byte buffer of the SEND_MESSAGE in flight (destroyed on its completion).
 * - payload, md, deadline and details are filled by gRPC when the request completes and are
 *   valid until the call is recycled (metadata values die with grpc_call_unref).
 */
struct ent_call {
	struct ent_tag t_request, t_batch, t_recv, t_send, t_close;
	struct ent_wstate *ws;
	const struct ent_rmethod *rm; /**< what it was requested for */
	struct ent_call *next;	      /**< free list or the worker's watch list */
	struct ent_call *all_next;    /**< every call object of the worker */
	struct ent_call *orphan_next; /**< the worker's orphan stack */

	grpc_call *call;
	gpr_timespec deadline;
	grpc_call_details details; /**< generic calls only */
	grpc_metadata_array md;
	grpc_byte_buffer *payload; /**< request (unary, watch) */
	grpc_byte_buffer *recv;	   /**< stream: target of RECV_MESSAGE */
	grpc_byte_buffer *held;	   /**< stream: received while a send was in flight */
	grpc_byte_buffer *sent;	   /**< message of the SEND_MESSAGE in flight */
	grpc_slice status_details;
	bool has_details;
	int cancelled; /**< RECV_CLOSE_ON_SERVER: the client left */

	/* Metrics: the call is observed once, when it is recycled on its worker thread. */
	int64_t t_arrive_ns; /**< CLOCK_MONOTONIC at arrival */
	int64_t t_done_ns;   /**< when the final batch was started (0: never) */
	uint8_t status;	     /**< the final status sent (valid when t_done_ns != 0) */
	/** The request being answered (unary: the unpacked request; stream: the current
	    message), for the decision log. Lives in the arena. */
	const ProtobufCMessage *req;

	unsigned pending;
	bool finished;
	bool md_sent;		 /**< initial metadata went out */
	bool send_busy;		 /**< stream/watch: a SEND_MESSAGE is in flight */
	bool recv_busy;		 /**< stream: a RECV_MESSAGE is in flight */
	bool half_closed;	 /**< stream: the client finished sending */
	bool close_armed;	 /**< RECV_CLOSE_ON_SERVER was started */
	bool drop_arena;	 /**< free the arena's blocks on recycle (a large call) */
	const char *bad_request; /**< why ent_rpc_call_unpack refused the request (in the arena) */

	/* A final status that waits for the send in flight (stream, watch). */
	bool end_pending;
	grpc_status_code end_status;
	char end_msg[256];

	/* CheckEntitlement and check stream messages: the answer being sent, or one decided ahead
	   by the worker's drain pass that waits for its completion to be dispatched. */
	struct ent_answer ans;

	/* A unary check parked until its min_sequence is applied (check.c: park). The writer owns
	   the call from a parking ent_writer_wait until the wait's callback, which hands it back
	   to the worker (ws->resumed); resumed keeps it from being parked twice. */
	struct ent_writer_wait wait;
	uint64_t wait_applied; /**< the applied sequence when the wait ended */
	int64_t wait_ms;       /**< how long it was allowed to wait */
	uint8_t wait_end;      /**< enum ent_writer_wait_end */
	bool resumed;
	struct ent_call *resume_next;

	/* Health Watch: the status last sent and the one to report (-1: unknown service). */
	int watch_sent;
	bool watch_unknown;
	bool watch_listed;

	struct ent_arena arena;
	ProtobufCAllocator alloc;
};

/*
 * Per worker thread. The public part (struct ent_worker) comes first so a handler's
 * ent_rpc_call_worker() pointer converts back. Only notify_armed and orphans are touched by other
 * threads; everything else belongs to the worker thread.
 */
struct ent_wstate {
	struct ent_worker w;
	grpc_completion_queue *cq;
	pthread_t thread;
	bool thread_started;
	struct ent_call *free;	  /**< idle call objects, LIFO so the warm ones are reused */
	struct ent_call *all;	  /**< every call object, freed at stop */
	struct ent_call *watches; /**< active health Watch streams */
	size_t n_calls;
	atomic_size_t live; /**< calls that arrived and are not recycled yet (read at stop) */

	struct ent_tag t_notify;
	atomic_int notify_armed; /**< a notification call is in flight */
	grpc_call *notify_call;
	grpc_metadata_array notify_md;
	grpc_status_code notify_status;
	grpc_slice notify_details;
	_Atomic(struct ent_call *) orphans; /**< calls another thread could not finish */
	_Atomic(struct ent_call *) resumed; /**< parked checks whose wait ended (LIFO) */
	struct ent_metrics_block *mb;	    /**< this thread's counters (NULL: not counted) */
};

/*
 * Invariant: after start, only serving, stopping, token, dlog, the TLS states and the shutdown
 * fields change. token is swapped whole (RCU style): readers load the pointer once per call;
 * replaced tokens stay allocated in old_tokens until teardown, so a reader never sees freed
 * memory.
 */
struct ent_rpc {
	struct ent_rpc_opts opts; /**< copy; admin_token is the initial token (use token) */
	_Atomic(char *) token;
	char **old_tokens; /**< under mu */
	size_t n_old_tokens;
	_Atomic(struct ent_decision_log *) dlog;
	struct ent_srv *srvs;
	size_t n_srvs;
	struct ent_tls **tls; /**< one per TLS listener (stable addresses: fetcher user data) */
	size_t n_tls;
	grpc_channel *lame;	    /**< posts worker notifications */
	grpc_resource_quota *quota; /**< limits.memory, shared by every server; NULL: none */
	struct ent_wstate *workers;
	unsigned n_workers;
	atomic_bool serving;
	atomic_bool stopping;
	bool reflection;  /**< ent_rpc_reflection_init succeeded */
	unsigned m_other; /**< metrics index of unknown methods */

	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t shutdowns_done; /**< under mu: servers whose shutdown tag came */
};

/* ---- call.c --------------------------------------------------------------------------- */

/** Set up a call object of \a ws (no gRPC state yet). NULL on allocation failure. */
struct ent_call *ent_rpc_call_new(struct ent_wstate *ws);
/** Free a recycled call object (stop only). */
void ent_rpc_call_free(struct ent_call *c);
/** Request \a c for \a rm on its worker's queue. \return 0 or -ENT_EUNAVAIL. */
int ent_rpc_call_arm(struct ent_call *c, const struct ent_rmethod *rm);
/** A completion for \a c arrived on its worker thread. */
void ent_rpc_call_on_event(struct ent_call *c, uint8_t kind, bool success);
/** Recycle every call in the worker's orphan stack (worker thread). */
void ent_rpc_call_collect_orphans(struct ent_wstate *ws);
/** The worker's idle call object, or a new one. NULL on allocation failure. */
struct ent_call *ent_rpc_call_get(struct ent_wstate *ws);

/** Note that the call's arena grew large: its blocks are freed instead of kept on recycle. */
void ent_rpc_call_drop_arena(struct ent_call *c);

/** A message larger than this frees the call's arena blocks on recycle (not kept pooled). */
#define ENT_CALL_BIG_MESSAGE (64 * 1024)

/* The state machine's steps that the streams (stream.c) build on. */

/** The call is over without a status of ours (the client left or a batch failed). */
void ent_rpc_call_kill(struct ent_call *c);
/**
 * Pack \a msg into a new byte buffer of one gRPC slice (the transport frees it once written).
 * \return 0, or -ENT_EFULL when larger than the maximum message size.
 */
int ent_rpc_call_pack(struct ent_call *c, const ProtobufCMessage *msg, grpc_byte_buffer **out);
/** Fill \a op with SEND_STATUS_FROM_SERVER \a status / \a msg (copied into the call). */
void ent_rpc_call_fill_status(struct ent_call *c, grpc_op *op, grpc_status_code status,
			      const char *msg);
/** Start the call's last batch (\a n \a ops); on failure the call is cancelled and recycled. */
void ent_rpc_call_start_final(struct ent_call *c, grpc_op *ops, size_t n, grpc_status_code status);
/**
 * The bytes of \a bb: in place when it is one uncompressed slice, else a copy held in \a hold
 * (unref it after use). \return false when it cannot be read.
 */
bool ent_rpc_call_bytes(grpc_byte_buffer *bb, grpc_slice *hold, const uint8_t **p, size_t *n);
/** Count a protobuf-c check answer for the metrics (what ent_rpc_call_reply does). */
void ent_rpc_call_observe_response(struct ent_call *c, const ProtobufCMessage *resp);

/* ---- stream.c ------------------------------------------------------------------------- */

/** Start a RECV_MESSAGE on a check or reflection stream. */
void ent_rpc_stream_recv(struct ent_call *c);
/** The stream's RECV_MESSAGE finished (\a success: gRPC's). */
void ent_rpc_stream_on_recv(struct ent_call *c, bool success);
/** The stream's SEND_MESSAGE finished successfully and no final status is waiting. */
void ent_rpc_stream_on_sent(struct ent_call *c);

/**
 * Stream/watch: start a SEND_MESSAGE of \a msg (initial metadata with the first).
 * \return 0, or -ENT_E* (nothing started).
 */
int ent_rpc_call_stream_send(struct ent_call *c, const ProtobufCMessage *msg);
/**
 * Stream/watch: end with \a status / \a msg once no send is in flight. The final batch carries
 * RECV_CLOSE_ON_SERVER except for Watch, whose close is already pending.
 */
void ent_rpc_call_stream_end(struct ent_call *c, grpc_status_code status, const char *msg);

/**
 * Stream: start a SEND_MESSAGE of \a len bytes at \a data (copied), initial metadata with the
 * first. \return 0, or -ENT_E* (nothing started).
 */
int ent_rpc_call_stream_send_bytes(struct ent_call *c, const void *data, size_t len);

/**
 * Finish a unary call with OK and the serialized answer \a msg (its reference is taken over).
 * Like ent_rpc_call_reply, for handlers that encode their answer themselves (check.c).
 */
void ent_rpc_call_reply_slice(struct ent_call *c, grpc_slice msg);

/**
 * Count one decided check for the metrics and the sampled decision log (worker thread): what
 * ent_rpc_call_reply does by looking at a CheckEntitlementResponse, for hand-written answers.
 */
void ent_rpc_call_observe_check(struct ent_call *c, const struct ent_check *chk,
				const struct ent_decision *d, uint64_t seq);

/** The credential check for a call whose method needs it (0 or -ENT_EAUTH). */
int ent_rpc_call_auth(struct ent_call *c);

/** Unpack \a bb into the call's arena. NULL: malformed. The buffer is not consumed. */
ProtobufCMessage *ent_rpc_call_unpack(struct ent_call *c, const ProtobufCMessageDescriptor *desc,
				      grpc_byte_buffer *bb);

/**
 * Hand the parked call \a c back to its worker (any thread: the wait's callback), which then
 * runs ent_rpc_check_resume on it.
 */
void ent_rpc_call_resume(struct ent_call *c);
/** Run ent_rpc_check_resume on every call handed back to the worker (worker thread). */
void ent_rpc_call_collect_resumed(struct ent_wstate *ws);

/** Drop a check answer decided ahead that was not sent (the call ended another way). */
void ent_rpc_call_drop_answer(struct ent_call *c);

/** At most this many completions are taken from the queue per drain cycle (server.c). */
#define ENT_DRAIN_MAX 32

/**
 * The drain pass (worker thread): among the \a n completions just taken from the queue, find
 * the CheckEntitlement requests and check stream messages that will be answered as soon as
 * they are dispatched, and decide them ahead together (ent_rpc_check_decide).
 * Nothing is sent: each answer waits in its call (c->ans) until its completion is dispatched.
 */
void ent_rpc_call_prepare(struct ent_wstate *ws, const grpc_event *evs, size_t n);

/* ---- server.c ------------------------------------------------------------------------- */

/** Wake the worker: it collects orphans and reconsiders its Watch streams. Any thread. */
void ent_rpc_notify(struct ent_wstate *ws);

/* ---- check.c -------------------------------------------------------------------------- */

extern const struct ent_method ent_rpc_check_methods[];
extern const size_t ent_rpc_check_methods_count;
/** The path of the bidirectional check stream. */
#define ENT_CHECK_STREAM_PATH "/ent.v1.EntitlementService/StreamCheckEntitlements"
/**
 * One message of the check stream: decode \a req (\a len bytes, borrowed for the call), validate,
 * check, and write the answer into a new slice \a out (the caller's reference).
 * \return 0, or -ENT_E* with \a err naming the field (the stream ends with that status).
 */
int ent_rpc_check_stream_answer(struct ent_call *c, const uint8_t *req, size_t len, grpc_slice *out,
				struct ent_err *err);

/**
 * Decide the checks \a a[i] (\a n of them, each with its request bytes in req / len) in one
 * snapshot, and encode each answer into a[i]->out (ok set). This is the one place a check is
 * decided: a lone CheckEntitlement or stream message is n = 1, the drain pass hands over the
 * checks that arrived together (at most ENT_DRAIN_MAX), which are then looked up as one
 * batched walk (ent_store_view_check_batch).
 * \param err a lone check (n = 1): where its error goes, naming the field; the snapshot is
 *        renewed until it is as new as the request's min_sequence. NULL (the drain pass): a
 *        check that cannot be decided here (malformed, invalid, wants a newer snapshot, answer
 *        too large, store error) is left with ok unset, and its call decides it again alone
 *        and reports the error; fewer than two decidable checks are all left alone, since one
 *        check gains nothing from being decided ahead.
 * \return 0, or -ENT_E* (only with \a err).
 * \note every a[i]->ok must be unset on entry.
 */
int ent_rpc_check_decide(struct ent_wstate *ws, struct ent_answer *const *a, size_t n,
			 struct ent_err *err);
/**
 * A parked check's wait ended (worker thread): decide it again now that its min_sequence is
 * applied, or answer UNAVAILABLE naming min_sequence and the applied sequence.
 */
void ent_rpc_check_resume(struct ent_call *c);
/** True when \a m is CheckEntitlement (its request can be answered ahead). */
bool ent_rpc_check_is_unary_check(const struct ent_method *m);

/* ---- health.c ------------------------------------------------------------------------- */

extern const struct ent_method ent_rpc_health_methods[];
extern const size_t ent_rpc_health_methods_count;
#define ENT_HEALTH_WATCH_PATH "/grpc.health.v1.Health/Watch"
/** A Watch call arrived with its request in c->payload. */
void ent_rpc_health_watch_start(struct ent_call *c);
/** The Watch's send finished successfully and no final status is waiting. */
void ent_rpc_health_watch_sent(struct ent_call *c);
/** The Watch's RECV_CLOSE_ON_SERVER finished: the client left or the call ended. */
void ent_rpc_health_watch_closed(struct ent_call *c);
/** The serving status or the stopping flag may have changed: update the worker's watches. */
void ent_rpc_health_watch_update(struct ent_wstate *ws);

#endif
