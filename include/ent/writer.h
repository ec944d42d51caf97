/**
 * \file writer.h
 * The only LMDB writer: one libuv loop thread. RPC threads hand it events through a queue and
 * uv_async_send (never blocking on it); it group-commits every event waiting at that moment in
 * one transaction (a bad event fails alone: docs/writer.md, "Group commit"), commits
 * durably, then answers each caller with its result. A uv_timer fires at the next boundary in
 * the store's index and applies a Tick event.
 */
#ifndef ENT_WRITER_H
#define ENT_WRITER_H

#include "ent/store.h"
#include "ent/util.h"

struct ent_writer;
struct Ent__V1__Event;

/**
 * Called on the writer thread after the group holding the request committed (or failed:
 * res->err.code != 0 and res->seq == 0). res->object lives until the callback returns.
 * The callback must not block; it may start a gRPC batch.
 */
typedef void (*ent_writer_done_cb)(void *ctx, const struct ent_apply_result *res);

/** A caller-owned request; must stay valid until its callback has run. */
struct ent_writer_req {
	struct ent_writer_req *next;	    /**< queue link, owned by the writer while queued */
	const struct Ent__V1__Event *event; /**< caller-owned until the callback */
	ent_writer_done_cb cb;
	void *ctx;
};

/**
 * A change that is more than one event and must be all or nothing (an Import document): \a fn
 * runs on the writer thread inside a write transaction of its own, applying what it likes with
 * ent_store_apply. A negative return aborts the transaction (nothing of it is written) and answers
 * the caller with res->err; 0 commits it durably, then the callback gets res->seq.
 * \param arena the writer's scratch, reset after the callback.
 */
typedef int (*ent_writer_txn_fn)(void *ctx, struct ent_wtxn *txn, struct ent_arena *arena,
				 struct ent_apply_result *res);

/** A caller-owned transaction request; must stay valid until its callback has run. */
struct ent_writer_txn_req {
	struct ent_writer_req req; /**< req.event is NULL: that marks a transaction request */
	ent_writer_txn_fn fn;
	/** Fleet mode: a local change that is not an event of the stream and runs anyway (the
	    in-place re-bootstrap's table swap, src/sync/fleet.c). false: refused in fleet mode,
	    like an Import (one stream message cannot carry it). */
	bool local;
};

struct ent_writer_opts {
	struct ent_store *store;
	size_t max_group;	   /**< events per transaction at most; 0: 1024 */
	int64_t idem_retention_ms; /**< how long idempotency keys are kept; 0: 7 days */
	uint32_t tick_piece; /**< boundary entries (x4 swept idempotency keys) per tick txn; 0: 1024
			      */
	const struct ent_writer_fleet *fleet; /**< NULL: embedded mode; else kept (borrowed) */
	int nice; /**< nice increment of the writer thread (Linux sets it per thread); 0: none */
};

/**
 * Fleet mode: one message of the stream, handed to the writer by src/sync in stream order.
 * Owned by the writer from ent_writer_feed until release() is called on the writer thread.
 */
struct ent_writer_msg {
	struct ent_writer_msg *next; /**< queue link */
	uint64_t seq;		     /**< stream sequence */
	const uint8_t *data;	     /**< the ent.v1.Event protobuf (untrusted bytes) */
	size_t len;
	uint64_t local_id; /**< != 0: a request of this node waits for this message (claim) */
	void (*release)(struct ent_writer_msg *m);
};

/**
 * Fleet mode hooks (src/sync/fleet.c). With them set, ent_writer_submit publishes instead of
 * applying, and the writer applies only what ent_writer_feed hands it.
 */
struct ent_writer_fleet {
	void *ctx;
	/**
	 * Publish \a ev (its `at` stamped) for \a req, any thread. The request is answered
	 * later: by the apply of its message (claim), or by ent_writer_fail. Returns 0, or
	 * -ENT_E* when nothing was published and the request will not be answered.
	 */
	int (*publish)(void *ctx, struct ent_writer_req *req, const struct Ent__V1__Event *ev);
	/** The request of this node waiting for message \a local_id, or NULL; writer thread. */
	struct ent_writer_req *(*claim)(void *ctx, uint64_t local_id);
	/** Written to meta "fleet_stream" in every transaction; borrowed for the writer's life. */
	const char *identity;
};

/** Start the loop thread. \return 0 or -ENT_E*. */
ENT_API int ent_writer_start(const struct ent_writer_opts *opts, struct ent_writer **out);
/**
 * Queue \a req (thread-safe, never blocks beyond a short mutex). An event with at == 0 is
 * applied with at = the time its group began; the stamp goes on a shallow copy, the caller's
 * const Event is never written. \return 0, or -ENT_EUNAVAIL once stopping.
 */
ENT_API int ent_writer_submit(struct ent_writer *w, struct ent_writer_req *req);
/**
 * Queue a transaction request (thread-safe). It runs after everything queued before it, alone
 * in its transaction; req.cb and req.ctx are set by the caller, req.event is set to NULL here.
 * \return 0, or -ENT_EUNAVAIL once stopping.
 */
ENT_API int ent_writer_submit_txn(struct ent_writer *w, struct ent_writer_txn_req *t);
/**
 * Fleet mode: queue stream message \a m (thread-safe). Messages must come in stream order;
 * one at or below the applied sequence is released unapplied (a redelivery). Blocks the
 * caller while more than 65,536 messages wait (back-pressure on the stream consumer).
 * \return 0, or -ENT_EUNAVAIL once stopping (m is then released here).
 */
ENT_API int ent_writer_feed(struct ent_writer *w, struct ent_writer_msg *m);
/**
 * Answer \a req with \a err on the writer thread (thread-safe): fleet mode's way to refuse a
 * request whose publish failed after ent_writer_submit returned 0.
 */
ENT_API void ent_writer_fail(struct ent_writer *w, struct ent_writer_req *req,
			     const struct ent_err *err);
/** Fleet mode: stream messages queued and not yet applied (any thread). */
ENT_API uint64_t ent_writer_feed_depth(const struct ent_writer *w);
/** Fleet mode: messages that could not be decoded and were skipped (any thread). */
ENT_API uint64_t ent_writer_skipped(const struct ent_writer *w);

/** How a parked wait for a sequence ended (ent_writer_wait). */
enum ent_writer_wait_end {
	ENT_WAIT_APPLIED = 0, /**< a commit reached the sequence */
	ENT_WAIT_TIMEOUT = 1, /**< its deadline passed first */
	ENT_WAIT_STOPPING = 2 /**< ent_writer_wait_close or ent_writer_stop released it */
};

struct ent_writer_wait;
/**
 * A parked wait ended: \a end is an enum ent_writer_wait_end, \a applied the sequence of the
 * last commit at that moment. Runs once per parked wait, on the writer thread, or on the
 * thread of ent_writer_wait_close / ent_writer_stop; it must not block and must not call back
 * into the writer's wait functions.
 */
typedef void (*ent_writer_wait_cb)(struct ent_writer_wait *wt, int end, uint64_t applied);

/** A caller-owned wait for a sequence; owned by the writer from a parking ent_writer_wait
    until its callback runs. */
struct ent_writer_wait {
	struct ent_writer_wait *next; /**< list link, the writer's while parked */
	uint64_t seq;		      /**< released once a commit reaches this sequence */
	int64_t deadline_ns;	      /**< ent_time_mono_ns() instant: released ENT_WAIT_TIMEOUT */
	ent_writer_wait_cb cb;
	void *ctx;
	int end; /**< the writer's, while releasing */
};

/**
 * Park \a wt until the applied sequence reaches wt->seq (any thread; never blocks beyond a
 * short mutex). Meant for the rare check whose min_sequence is ahead of this node: the writer
 * releases it right after the commit that applies the sequence (embedded or fleet mode alike),
 * or when wt->deadline_ns passes.
 * \param max parked waits at most (all callers together)
 * \return 0: parked, wt->cb will run exactly once; 1: the sequence is applied already (not
 *         parked, no callback); -ENT_EFULL: \a max waits are parked already; -ENT_EUNAVAIL:
 *         waits are closed (stopping).
 */
ENT_API int ent_writer_wait(struct ent_writer *w, struct ent_writer_wait *wt, size_t max);
/**
 * Release every parked wait now with ENT_WAIT_STOPPING (callbacks run on this thread) and
 * refuse new ones from now on (-ENT_EUNAVAIL): the server's shutdown, so that no call waits
 * for its bound while the server drains. Any thread but the writer's.
 */
ENT_API void ent_writer_wait_close(struct ent_writer *w);
/** Waits parked now (any thread). */
ENT_API size_t ent_writer_waiting(const struct ent_writer *w);

/** Sequence of the last commit (atomic read; any thread). */
ENT_API uint64_t ent_writer_seq(const struct ent_writer *w);

struct ent_writer_stats {
	uint64_t commits, events, failed, queue_depth;
	uint64_t waiting;	 /**< checks parked for a sequence (ent_writer_wait) */
	uint64_t last_commit_us; /**< duration of the last commit */
	int64_t next_boundary_at;
	int64_t boundary_lag_ms; /**< how late the last boundary tick ran */
};
ENT_API void ent_writer_get_stats(const struct ent_writer *w, struct ent_writer_stats *out);

/**
 * Refuse new requests, finish every queued one (each callback runs), stop the timers, join the
 * thread and free \a w. Call once, from a thread other than the writer's (not from a callback).
 */
ENT_API void ent_writer_stop(struct ent_writer *w);

#endif
