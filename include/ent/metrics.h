/**
 * \file metrics.h
 * Prometheus metrics over HTTP (libmicrohttpd), /livez and /readyz, and the sampled decision
 * log. docs/observability.md lists every metric.
 *
 * The counting side costs the check path a few plain stores: each RPC thread takes its own
 * counter block once (ent_metrics_thread_block) and counts into it with relaxed atomic
 * load/store pairs, which compile to ordinary loads and stores because only that thread ever
 * writes the block. Blocks are cache-line aligned, so threads never share a line. The scraper
 * sums the blocks with relaxed loads: a scrape may see one thread's counters a moment older
 * than another's, never a torn or lost count. No lock, no allocation, no syscall.
 *
 * Gauges that belong to other modules (snapshot sequence, LMDB use, writer queue, open calls)
 * are pulled at scrape time from a callback; process memory is read from /proc/self.
 */
#ifndef ENT_METRICS_H
#define ENT_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ent/store.h"
#include "ent/util.h"
#include "ent/writer.h"

struct ent_metrics;

/** gRPC status codes 0..16 (OK .. UNAUTHENTICATED); others are counted as UNKNOWN (2). */
#define ENT_METRICS_N_STATUS 17
/** Check decision reasons (enum ent_reason) 0..15; others are counted as UNSPECIFIED (0). */
#define ENT_METRICS_N_REASONS 16
/**
 * Latency buckets: upper bounds 2^k µs for k = 2..24 (4 µs .. 16.8 s), then +Inf.
 * Powers of two let the bucket be found with one count-leading-zeros instruction.
 */
#define ENT_METRICS_BUCKET_MIN_LOG2 2
#define ENT_METRICS_N_FINITE	    23
#define ENT_METRICS_N_BUCKETS	    (ENT_METRICS_N_FINITE + 1)

/**
 * One thread's counters. Written only by the owning thread (through the inline functions
 * below), read by the scraper. The arrays follow the struct in the same allocation.
 */
struct ent_metrics_block {
	struct ent_metrics_block *next; /**< registry link; set before the block is published */
	uint32_t n_methods;
	_Atomic uint64_t *calls; /**< [method * ENT_METRICS_N_STATUS + status] */
	_Atomic uint64_t
		*buckets;	  /**< [method * ENT_METRICS_N_BUCKETS + bucket] (not cumulative) */
	_Atomic uint64_t *sum_us; /**< [method] total latency, µs */
	_Atomic uint64_t reasons[ENT_METRICS_N_REASONS];
	_Atomic uint64_t decisions_logged;
	_Atomic uint64_t checks_ahead; /**< checks decided by the worker's drain pass */
	uint64_t rng; /**< the decision log's sampling state (xorshift64*), this thread only */
} __attribute__((aligned(64)));

/**
 * Create the registry for \a n_methods methods named by \a method_names (full gRPC paths such as
 * "/ent.v1.EntitlementService/Check"; the strings are copied). Method indexes in the observe
 * calls refer to this array.
 * \return 0 or -ENT_ENOMEM / -ENT_EINVAL.
 */
ENT_API int ent_metrics_new(const char *const *method_names, size_t n_methods,
			    struct ent_metrics **out);

/**
 * A fresh counter block for the calling thread, registered with \a m. Call once per thread
 * (at thread start, not per call) and keep the pointer in the thread's state. Blocks live until
 * ent_metrics_free, so counts survive the thread. Thread-safe (takes a mutex).
 * \return the block, or NULL on allocation failure (the observe functions accept NULL).
 */
ENT_API struct ent_metrics_block *ent_metrics_thread_block(struct ent_metrics *m);

/** The bucket index of a latency (internal, exposed for the inline functions and tests). */
static inline unsigned ent_metrics_bucket(uint64_t micros)
{
	if (micros <= (1u << ENT_METRICS_BUCKET_MIN_LOG2))
		return 0;
	/* ceil(log2(micros)) for micros >= 2 */
	unsigned k = 64 - (unsigned)__builtin_clzll(micros - 1);
	k -= ENT_METRICS_BUCKET_MIN_LOG2;
	return k < ENT_METRICS_N_FINITE ? k : ENT_METRICS_N_FINITE;
}

/* Single-writer increment: no lock prefix, but still a data-race-free atomic access. */
static inline void ent_metrics_add_(_Atomic uint64_t *c, uint64_t d)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

/**
 * Count one finished call of \a method with gRPC \a status that took \a micros µs (from the
 * call's arrival to its final batch). Owning thread only. Allocation- and lock-free.
 */
static inline void ent_metrics_observe_call(struct ent_metrics_block *b, unsigned method,
					    unsigned status, uint64_t micros)
{
	if (!b || method >= b->n_methods)
		return;
	if (status >= ENT_METRICS_N_STATUS)
		status = 2; /* UNKNOWN */
	ent_metrics_add_(&b->calls[method * ENT_METRICS_N_STATUS + status], 1);
	ent_metrics_add_(&b->buckets[method * ENT_METRICS_N_BUCKETS + ent_metrics_bucket(micros)],
			 1);
	ent_metrics_add_(&b->sum_us[method], micros);
}

/** Count one check decision with \a reason (enum ent_reason). Owning thread only. */
static inline void ent_metrics_count_reason(struct ent_metrics_block *b, unsigned reason)
{
	if (!b)
		return;
	ent_metrics_add_(&b->reasons[reason < ENT_METRICS_N_REASONS ? reason : 0], 1);
}

/**
 * Gauges pulled at scrape time. The scraper sets every field to NaN (doubles) or leaves the
 * have_* flags false before calling the callback; what the callback does not fill is not
 * exported. ent_metrics_fill_store / _fill_writer fill the store and writer parts.
 */
struct ent_metrics_gauges {
	bool have_store;
	double snapshot_seq;	     /**< events applied (entd_snapshot_sequence) */
	double snapshot_age_seconds; /**< now - last commit (entd_snapshot_age_seconds) */
	double lmdb_map_size_bytes;
	double lmdb_used_bytes;
	double objects[7];   /**< features, plans, addons, subscriptions, overrides, customers,
				 aggregates (entd_store_objects{kind}) */
	double boundaries;   /**< pending boundary entries */
	double walk_enabled; /**< 1: batched checks use the B-tree walk (entd_store_walk_enabled) */
	double walk_fallbacks; /**< lookups the walk handed to mdb_get (..._walk_fallbacks_total) */
	double corrupt_reads;  /**< entd_store_corrupt_reads_total */

	bool have_writer;
	double writer_queue_depth;
	double writer_commits_total;
	double writer_events_total;
	double writer_failed_total;
	double writer_last_commit_seconds;
	double writer_boundary_lag_seconds;
	double writer_next_boundary_timestamp_seconds; /**< 0: none */
	double checks_waiting;			       /**< checks parked for their min_sequence */

	double open_calls; /**< calls in flight (entd_rpc_open_calls); NaN: unknown */
	double sync_lag;   /**< fleet mode: events behind the stream; NaN: not in fleet mode */
	/* fleet mode only (NaN otherwise) */
	double sync_last_heard_seconds; /**< since the stream was last heard from */
	double sync_connected;		/**< 1: the NATS connection is up */
	double sync_degraded;	     /**< 1: disconnected, stopped on a hole or stream re-created */
	double sync_caught_up;	     /**< 1: the first catch-up is done */
	double sync_applied_seq;     /**< stream sequence applied */
	double sync_skipped_total;   /**< undecodable messages skipped */
	double sync_published_total; /**< events published by this node */
	double sync_publish_failed_total; /**< writes answered UNAVAILABLE by the fleet */
	double sync_reconnects_total;
	double sync_rebootstraps_total;	       /**< re-bootstraps in place completed */
	double sync_rebootstrap_failed_total;  /**< re-bootstrap tries that did not complete */
	double sync_snapshots_published_total; /**< snapshots this replica published */
	double sync_snapshot_failed_total;     /**< snapshot publishes that failed */
	double sync_snapshot_last_timestamp_seconds; /**< last one published here (0: none) */
	double serving; /**< 1 serving, 0 not (entd_serving); NaN: unknown */
};

/** Fill the store part of \a g from \a st, with ages relative to \a now_ms. */
ENT_API void ent_metrics_fill_store(struct ent_metrics_gauges *g, const struct ent_store_stats *st,
				    int64_t now_ms);
/** Fill the writer part of \a g from \a ws. */
ENT_API void ent_metrics_fill_writer(struct ent_metrics_gauges *g,
				     const struct ent_writer_stats *ws);

/** Called on the HTTP thread at every scrape; must not block for long. */
typedef void (*ent_metrics_gauge_cb)(void *ctx, struct ent_metrics_gauges *g);
/** Set before ent_metrics_serve (not thread-safe against a running scrape). */
ENT_API void ent_metrics_set_gauge_cb(struct ent_metrics *m, ent_metrics_gauge_cb cb, void *ctx);

/**
 * Readiness for /readyz: return true when ready; otherwise may write a short reason into
 * \a why (NUL-terminated, at most \a len bytes), which becomes the 503 body. HTTP thread.
 */
typedef bool (*ent_metrics_ready_cb)(void *ctx, char *why, size_t len);

/**
 * Render the Prometheus text exposition (format 0.0.4) into a heap buffer (caller frees).
 * This is what GET /metrics answers; exposed for tests and for a status RPC.
 * \return 0 or -ENT_ENOMEM.
 */
ENT_API int ent_metrics_render(struct ent_metrics *m, char **out, size_t *len);

/**
 * Start the HTTP endpoint on \a listen ("host:port", "[v6]:port" or ":port"; port 0 picks a
 * free one, see ent_metrics_port) in its own thread: GET /metrics, /livez (200 "ok" while the
 * process runs), /readyz (200 "ok" when \a ready says so, else 503 and the reason; NULL \a ready
 * means always ready). Other paths 404, other methods 405.
 * \return 0, or -ENT_EINVAL (bad address) / -ENT_EIO (cannot bind) with \a err naming it.
 */
ENT_API int ent_metrics_serve(struct ent_metrics *m, const char *listen, ent_metrics_ready_cb ready,
			      void *ctx, struct ent_err *err);
/**
 * Limits of the HTTP endpoint, set before ent_metrics_serve: \a max_connections open at once
 * (a quarter of them per client address), closed after \a timeout_s idle. 0: 32 and 10 s.
 */
ENT_API void ent_metrics_set_limits(struct ent_metrics *m, unsigned max_connections,
				    unsigned timeout_s);
/** The bound TCP port, or 0 when not serving. */
ENT_API unsigned ent_metrics_port(const struct ent_metrics *m);
/** Stop the HTTP endpoint (joins its thread); counting keeps working. Idempotent. */
ENT_API void ent_metrics_stop(struct ent_metrics *m);
/** Stop and free everything, including every block: no thread may count any more. */
ENT_API void ent_metrics_free(struct ent_metrics *m);

/* ---- the decision log ------------------------------------------------------------------ */

/**
 * A sampled audit trail of check decisions: one line per sampled check (logfmt or JSON, as
 * the log format), written with one write(2) to a file opened O_APPEND or to stderr, so lines
 * from different threads never mix. Sampling uses the per-thread generator in the caller's
 * metrics block: no shared state is written on the check path.
 */
struct ent_decision_log;

/**
 * Open the decision log. \a path "stderr", "-", "" or NULL: standard error; else a file,
 * created 0640 and appended to. \a sample_rate 0..1 (0 opens it but samples nothing).
 * \return 0 or -ENT_EIO with \a err naming the path.
 */
ENT_API int ent_metrics_decision_log_open(const char *path, double sample_rate, bool json,
					  struct ent_decision_log **out, struct ent_err *err);
/** Change the sampling rate (SIGHUP); any thread, takes effect for the next check. */
ENT_API void ent_metrics_decision_log_set_rate(struct ent_decision_log *l, double sample_rate);
/**
 * Re-open the file at the same path (log rotation on SIGHUP) without a window in which
 * writers see a closed descriptor. \return 0 or -ENT_EIO (the old file stays in use).
 */
ENT_API int ent_metrics_decision_log_reopen(struct ent_decision_log *l, struct ent_err *err);
ENT_API void ent_metrics_decision_log_close(struct ent_decision_log *l);

/** Should this check be logged? Cheap: one xorshift step on the block's own state. */
ENT_API bool ent_metrics_decision_log_sample(struct ent_decision_log *l,
					     struct ent_metrics_block *b);

/** One audited decision; strings are borrowed for the duration of the call. */
struct ent_decision_record {
	struct ent_str customer;
	struct ent_str feature;
	int64_t quantity;
	bool allowed;
	uint8_t reason; /**< enum ent_reason */
	uint64_t seq;	/**< snapshot sequence the answer was read from */
	int64_t at;	/**< evaluation instant, ms */
};

/**
 * Write one line (no allocation; a stack buffer and one write). Counted in the block's
 * decisions_logged when \a b is given. Call only when ent_metrics_decision_log_sample said yes.
 */
ENT_API void ent_metrics_decision_log_write(struct ent_decision_log *l, struct ent_metrics_block *b,
					    const struct ent_decision_record *r);

#endif
