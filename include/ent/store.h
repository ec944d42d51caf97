/**
 * \file store.h
 * The sole owner of the LMDB environment: read views for the RPC threads, write transactions
 * for the writer thread (and entctl offline), the aggregated record codec, and apply().
 *
 * Tables (named DBIs; layouts in docs/storage.md). Keys "c\0f" are customer_id NUL feature_code.
 *   meta       "seq" -> u64 LE events applied (fleet mode: stream sequence of the last applied
 *              message); "last_commit" -> i64 LE ms; "schema" -> u32 LE; "fleet_stream" ->
 *              "<stream name>/<created ns>" (fleet mode: the stream the state follows)
 *   features   code -> [u8 feature type][ent.v1.Feature protobuf]
 *   plans      code -> ent.v1.SetEntitlementsRequest protobuf (code, name, grants)
 *   addons     code -> ent.v1.SetEntitlementsRequest protobuf
 *   subs       customer\0sub_id -> ent.v1.Subscription protobuf
 *   overrides  customer\0feature -> ent.v1.CustomerOverride protobuf
 *   usage      customer\0feature -> {i64 period_start, i64 used} LE
 *   idem       customer\0key -> {i64 at, i64 quantity, u8 flags} LE
 *   customers  customer -> u32 LE number of subscriptions + overrides + ended tombstones
 *   plan_subs  (DUPSORT) plan code -> customer\0sub_id
 *   addon_subs (DUPSORT) add-on code -> customer\0sub_id
 *   bounds     (DUPSORT) be64(t ^ sign bit) -> customer\0feature (feature empty: whole customer)
 *   agg        customer\0feature -> aggregated record (versioned compact binary, read in place)
 *   ended      customer\0feature -> i64 LE: latest end of a granting source cleanup removed
 *              (a tombstone: the answer stays EXPIRED; pruned after the idempotency retention)
 *
 * Threads: any number of read views, one per thread (MDB_NOTLS); write transactions on one
 * thread at a time (the writer thread).
 */
#ifndef ENT_STORE_H
#define ENT_STORE_H

#include "ent/model.h"
#include "ent/util.h"

struct ent_store;
struct ent_view;
struct ent_wtxn;
struct Ent__V1__Event;

struct ent_store_opts {
	const char *path;     /**< directory; created if missing (unless read_only) */
	size_t map_size;      /**< bytes; 0: 16 GiB (address space; the file grows as it fills) */
	unsigned max_readers; /**< 0: 256 */
	bool read_only;
	bool no_sync; /**< MDB_NOSYNC: for bulk offline builds only; never for the daemon */
	/** Never use the batched B-tree walk (db.batched_walk: false): batches look every key
	    up with mdb_get. For an LMDB build the walk was not verified against (storage.md). */
	bool no_walk;
	/** MDB_NOMETASYNC: data pages are flushed at commit, the meta page lazily (at the next
	    commit's sync). A crash can lose the last commits but never integrity. Only for fleet
	    mode, where the stream is the durable copy and a replica re-applies from its last
	    durable sequence (docs/fleet.md). */
	bool no_meta_sync;
};

/**
 * Open (creating tables as needed) the environment at opts->path.
 * \return 0, or -ENT_E* with \a err naming the problem (missing directory, bad schema, ...).
 * \note the handle is freed by ent_store_close, after every view is freed.
 */
ENT_API int ent_store_open(const struct ent_store_opts *opts, struct ent_store **out,
			   struct ent_err *err);
ENT_API void ent_store_close(struct ent_store *s);

struct ent_store_stats {
	uint64_t seq;
	int64_t last_commit_at;
	uint64_t features, plans, addons, subscriptions, overrides, customers, aggregates;
	uint64_t boundaries;
	int64_t next_boundary_at; /**< 0: none */
	uint64_t db_size_bytes;	  /**< pages in use x page size */
	uint64_t map_size_bytes;
	uint64_t tombstones;	 /**< rows of `ended` (cleaned-up grants still answered EXPIRED) */
	bool walk_enabled;	 /**< the batched walk is in use (ent_store_walk) */
	uint64_t walk_fallbacks; /**< lookups the walk handed to mdb_get (ent_store_walk) */
	uint64_t corrupt_reads;	 /**< reads that met a record failing its checksum or structure */
};
ENT_API int ent_store_stats(struct ent_store *s, struct ent_store_stats *out);

/**
 * Whether batched checks (ent_store_view_check_batch) use the batched B-tree walk, which reads
 * LMDB 0.9's page layout directly (src/store/walk.c, docs/storage.md). It is off when
 * opts->no_walk asked so, or when its checks of the LMDB library and database refuse it (other
 * LMDB version, a page size other than the OS's, table flags...): checked at open and again
 * for every new snapshot, so the answer can change if the file changes underneath.
 * \param why set to why it is off (a constant string), NULL when it is on (may be NULL).
 * \return true when on. Any thread.
 * \note ent_store_stats' walk_fallbacks counts the lookups the walk, while on, handed to mdb_get
 *       (a snapshot it refused, a page it does not trust, a value on overflow pages); the
 *       answers are the same either way, only slower.
 */
ENT_API bool ent_store_walk(struct ent_store *s, const char **why);

/** The version string of the LMDB library loaded (not the header's). */
ENT_API const char *ent_store_lmdb_version(void);

/** What ent_store_verify found. */
struct ent_store_verify_report {
	uint64_t tables;       /**< B-trees of tables walked */
	uint64_t pages;	       /**< pages checked (branch, leaf, overflow) */
	uint64_t records;      /**< values decoded, all tables */
	uint64_t agg_records;  /**< aggregated records among them */
	uint64_t agg_unsealed; /**< of those, written before checksums (no CRC trailer) */
	uint64_t problems;     /**< problems found; 0: the database is sound */
	char first[256];       /**< the first problem, naming the table and page or key */
};

/**
 * Check the whole database in one read snapshot: every page of every B-tree (read from a
 * private mapping, so a damaged page is reported, never handed to LMDB), then every value of
 * every table decoded as entd decodes it (aggregated records at every segment, checksum
 * included). Runs beside a live writer (it is a reader). \return 0 when sound,
 * -ENT_ECORRUPT with \a r->first naming the first problem, or another -ENT_E* on failure.
 */
ENT_API int ent_store_verify(struct ent_store *s, struct ent_store_verify_report *r);

/**
 * Whether the last ENT_EFULL of the calling thread came from the disk (ENOSPC, EDQUOT) rather
 * than from the map (MDB_MAP_FULL): the two need different fixes (free disk space vs raise
 * db.map_size), so the writer's log line names the right one.
 */
ENT_API bool ent_store_full_is_disk(void);

/** The earliest pending boundary (ms), or 0 when none. */
ENT_API int ent_store_next_boundary(struct ent_store *s, int64_t *at);

/**
 * Write a compact copy of the environment to \a path (a directory; MDB_CP_COMPACT).
 */
ENT_API int ent_store_copy(struct ent_store *s, const char *path, struct ent_err *err);

/* ---- read views ------------------------------------------------------------------------ */

/**
 * A read view owns one read transaction handle, reset between lookups and renewed for the next,
 * so no snapshot is held while idle. Not thread-safe: one per thread.
 */
ENT_API int ent_store_view_new(struct ent_store *s, struct ent_view **out);
ENT_API void ent_store_view_free(struct ent_view *v);
/** Renew the snapshot (cheap). Everything read through the view is valid until ent_store_view_end.
 */
ENT_API int ent_store_view_begin(struct ent_view *v);
ENT_API void ent_store_view_end(struct ent_view *v);
/** The sequence (events applied) of the current snapshot. */
ENT_API uint64_t ent_store_view_seq(const struct ent_view *v);

struct ent_check {
	struct ent_str customer;
	struct ent_str feature;
	int64_t quantity; /**< >= 1 */
	int64_t at;	  /**< evaluation instant, ms; must be set (callers fill now) */
};

/** Scratch and answer of one check: d.agg points at seg; strings borrowed from the map. */
struct ent_check_result {
	struct ent_decision d;
	struct ent_usage_state usage;
	struct ent_agg seg;
};

/**
 * The hot path: decide \a c in the current snapshot. One mdb_get on a hit; on a miss it tells
 * unknown feature, unknown customer and not entitled apart. Allocates nothing.
 * \return 0 (the answer is in out->d, whatever it is), or -ENT_ECORRUPT / -ENT_EIO.
 */
ENT_API int ent_store_view_check(struct ent_view *v, const struct ent_check *c,
				 struct ent_check_result *out);

/** Receives the answer of check \a i of a batch; non-zero stops the batch with that value. */
typedef int (*ent_check_cb)(void *ctx, size_t i, const struct ent_check_result *r);

/**
 * Decide \a n checks in the current snapshot and hand each answer to \a cb, in order: the same
 * answers as n calls of ent_store_view_check, but the B-tree walks of a group of checks are
 * interleaved so their cache and TLB misses overlap (docs/performance.md). Allocates nothing.
 * \param bad set to the index of the check that failed when -ENT_ECORRUPT / -ENT_EIO is
 *        returned (may be NULL).
 * \return 0, the first non-zero cb return, or -ENT_ECORRUPT / -ENT_EIO.
 * \note the result passed to cb borrows the map and is only valid during the call.
 */
ENT_API int ent_store_view_check_batch(struct ent_view *v, const struct ent_check *c, size_t n,
				       ent_check_cb cb, void *ctx, size_t *bad);

/** One feature of a customer's aggregated view (GetCustomerEntitlements). */
struct ent_customer_feature {
	struct ent_str feature_code;
	const void *feature_pb;		   /**< const Ent__V1__Feature *, in the arena */
	struct ent_check_result r;	   /**< the aggregate at the instant, decided for 1 unit */
	const struct ent_sources *sources; /**< all sources, with windows (active ones flagged by
					       comparing their window with the instant) */
};
typedef int (*ent_customer_feature_cb)(void *ctx, const struct ent_customer_feature *cf);

/**
 * Call \a cb for each feature the customer has an aggregate for (feature code order), limited
 * to \a filter when n_filter > 0. Sources are gathered from the base tables into \a arena.
 * \return 0, -ENT_ENOTFOUND for an unknown customer, or the first non-zero cb return.
 */
ENT_API int ent_store_view_customer_features(struct ent_view *v, struct ent_str customer,
					     const struct ent_str *filter, size_t n_filter,
					     int64_t at, struct ent_arena *arena,
					     ent_customer_feature_cb cb, void *ctx);

enum ent_table {
	ENT_T_META,
	ENT_T_FEATURES,
	ENT_T_PLANS,
	ENT_T_ADDONS,
	ENT_T_SUBS,
	ENT_T_OVERRIDES,
	ENT_T_USAGE,
	ENT_T_IDEM,
	ENT_T_CUSTOMERS,
	ENT_T_PLAN_SUBS,
	ENT_T_ADDON_SUBS,
	ENT_T_BOUNDS,
	ENT_T_AGG,
	ENT_T_ENDED,
	ENT_T__COUNT
};

/** Raw get: \a val borrowed until ent_store_view_end. \return 0 or -ENT_ENOTFOUND. */
ENT_API int ent_store_view_get(struct ent_view *v, enum ent_table t, struct ent_str key,
			       struct ent_str *val);

typedef int (*ent_kv_cb)(void *ctx, struct ent_str key, struct ent_str val);
/**
 * Iterate \a t in key order over keys starting with \a prefix (empty: all), beginning after
 * \a after (empty: from the start), at most \a limit entries (0: no limit).
 * \return 0, or the first non-zero cb return.
 */
ENT_API int ent_store_view_scan(struct ent_view *v, enum ent_table t, struct ent_str prefix,
				struct ent_str after, size_t limit, ent_kv_cb cb, void *ctx);

/* ---- writes ---------------------------------------------------------------------------- */

/** Begin the (single) write transaction. Only one thread may write at a time. */
ENT_API int ent_store_wtxn_begin(struct ent_store *s, struct ent_wtxn **out);
/**
 * Commit durably (fsync unless no_sync). Grows the map and retries once on MDB_MAP_FULL is NOT
 * done here: a full map answers -ENT_EFULL and the transaction is aborted.
 */
ENT_API int ent_store_wtxn_commit(struct ent_wtxn *w, struct ent_err *err);
ENT_API void ent_store_wtxn_abort(struct ent_wtxn *w);
/** Sequence after the events applied so far in this transaction. */
ENT_API uint64_t ent_store_wtxn_seq(const struct ent_wtxn *w);
/**
 * Fleet mode: set meta "seq" to \a seq in this transaction (the stream sequence of the last
 * applied message; the next ent_store_apply writes seq + 1). So the stream position commits
 * together with the data it describes. \return 0 or -ENT_E* (-ENT_EFULL: abort the transaction).
 */
ENT_API int ent_store_wtxn_set_seq(struct ent_wtxn *w, uint64_t seq);
/**
 * Write the string meta value \a name (e.g. "fleet_stream", the stream identity) in this
 * transaction. \return 0 or -ENT_E*.
 */
ENT_API int ent_store_wtxn_put_meta(struct ent_wtxn *w, const char *name, const char *value);
/**
 * Read the string meta value \a name from the newest snapshot into \a buf (NUL-terminated,
 * truncated to \a cap - 1). \return 0, -ENT_ENOTFOUND when absent, or -ENT_E*.
 */
ENT_API int ent_store_get_meta(struct ent_store *s, const char *name, char *buf, size_t cap);

/** What ent_store_restore copied. */
struct ent_store_restore_stats {
	uint64_t seq;	    /**< meta "seq" of the source: the store's sequence after the swap */
	uint64_t entries;   /**< key/values copied, all tables */
	uint64_t src_bytes; /**< pages in use in the source database */
};

/**
 * Replace, inside the open write transaction \a w, every table of the store with the tables
 * of the entd database in \a src_dir (a verified fleet snapshot; opened read-only here and
 * closed before returning): each table is emptied (mdb_drop, the handles stay valid) and
 * filled with the source's key/values raw, meta rows included ("seq", "fleet_stream", ...;
 * "last_commit" is rewritten by the commit). \a w's sequence becomes the source's "seq".
 * Nothing is visible to readers until \a w commits: they see the whole old state, then the
 * whole new one; abort \a w on failure and nothing changed.
 * \param out may be NULL.
 * \return 0; -ENT_EFULL when the map cannot hold the live data and the copy together (checked
 *         before anything is written; \a err names db.map_size) or LMDB ran out of room;
 *         -ENT_ECORRUPT / -ENT_ENOTFOUND / -ENT_EPRECOND when \a src_dir is not an entd
 *         database of this schema; other -ENT_E* from LMDB. \a err says which.
 * \note writer thread (the store's single writer) only; its cost is one pass over the source
 *       and a transaction as large as the source (docs/fleet.md, "Re-bootstrap in place").
 */
ENT_API int ent_store_restore(struct ent_wtxn *w, const char *src_dir,
			      struct ent_store_restore_stats *out, struct ent_err *err);

/** The most records one ReportUsageBatch event (BatchReportUsage call) may hold (docs/api.md:
    a worst-case batch still fits one 1 MiB stream message in fleet mode). */
#define ENT_MAX_USAGE_BATCH 1000

/** What became of one record of a ReportUsageBatch (the proto's UsageOutcome numbers). */
enum ent_usage_outcome {
	ENT_USAGE_COUNTED = 1,	   /**< added to the counter of its period */
	ENT_USAGE_DUPLICATE = 2,   /**< its idempotency key was seen before: nothing counted */
	ENT_USAGE_NOT_COUNTED = 3, /**< acknowledged, key kept, but its period had closed */
	ENT_USAGE_REFUSED = 4,	   /**< invalid: nothing of it was written */
};

/** The result of one record of a ReportUsageBatch event. */
struct ent_usage_result {
	uint8_t outcome;	   /**< enum ent_usage_outcome */
	int code;		   /**< refused: the positive ENT_E* code (EINVAL, ENOTFOUND) */
	const char *msg;	   /**< refused: "quantity: must be > 0", in the arena */
	struct ent_decision usage; /**< not refused: the usage after this record (agg == NULL) */
};

/** What an applied event produced, for the caller's response. */
struct ent_apply_result {
	uint64_t seq;	    /**< sequence after this event (0 if it failed) */
	struct ent_err err; /**< why it failed (err.code != 0) */
	/** The stored object echoed back, in the arena: Ent__V1__Feature, SetEntitlementsRequest,
	    Subscription or CustomerOverride (NULL for others). */
	const void *object;
	bool deleted;	/**< delete events: something was deleted */
	bool duplicate; /**< usage/consume: idempotency key seen before, nothing counted */
	bool allowed;	/**< consume */
	uint8_t reason; /**< consume: enum ent_reason */
	struct ent_decision usage; /**< usage/consume: usage after the event (agg == NULL) */
	uint32_t recomputed;	   /**< aggregated records rewritten */
	bool more;    /**< tick: stopped at its bound; another tick goes on (docs/storage.md) */
	bool counted; /**< report_usage: added to a counter (false: duplicate or period closed) */
	/** report_usage_batch: one result per record, in record order, in the arena. */
	struct ent_usage_result *records;
	size_t n_records;
};

/**
 * Validate and apply one event inside \a w, in a nested transaction: an invalid event changes
 * nothing and fails alone (res->err), the others of the group commit. Deterministic: the only
 * clock is ev->at. Recomputes every affected aggregate (a plan change reaches every customer
 * on the plan) and the boundary index in the same transaction.
 * \param arena holds res->object; reset by the caller.
 * \return 0, or -ENT_E* (also in res->err). -ENT_EFULL means the whole transaction must abort.
 */
ENT_API int ent_store_apply(struct ent_wtxn *w, const struct Ent__V1__Event *ev,
			    struct ent_arena *arena, struct ent_apply_result *res);
/**
 * ent_store_apply without the nested transaction: the event's writes go straight into \a w, which
 * is much cheaper (no child transaction, no copies of the pages the group already dirtied).
 * The price: an event that fails (any non-zero return or res->err) may have left part of its
 * writes in \a w, so the caller must then abort the whole transaction (and may apply the group
 * again with that event through ent_store_apply). Meta "seq" is not written per event: only the
 * in-memory sequence advances, and the caller writes it once (ent_store_wtxn_set_seq(w,
 * ent_store_wtxn_seq(w))) before committing. A successful event writes exactly what ent_store_apply
 * writes.
 */
ENT_API int ent_store_apply_direct(struct ent_wtxn *w, const struct Ent__V1__Event *ev,
				   struct ent_arena *arena, struct ent_apply_result *res);
/**
 * Set the in-memory sequence of \a w to \a seq without writing meta "seq" (the next direct
 * apply is seq + 1): for a caller that writes meta "seq" itself before the commit.
 */
ENT_API void ent_store_wtxn_expect_seq(struct ent_wtxn *w, uint64_t seq);

/* ---- aggregated record codec (record.c) ---------------------------------------------- */

/**
 * Encode \a n segments plus the usage state into \a buf (capacity \a cap).
 * \return bytes written, or -ENT_EINVAL if it does not fit.
 */
ENT_API int ent_store_record_encode(const struct ent_usage_state *u, const struct ent_agg *segs,
				    int n, uint8_t *buf, size_t cap);
/**
 * Decode the usage state and the segment containing \a t from \a rec in place: strings in
 * \a seg point into \a rec. Validates every length against the buffer (records are untrusted
 * bytes to a fuzzer). \return 0 or -ENT_ECORRUPT.
 */
ENT_API int ent_store_record_decode(const uint8_t *rec, size_t len, int64_t t,
				    struct ent_usage_state *u, struct ent_agg *seg);
/** Maximum encoded size of one record. */
#define ENT_RECORD_MAX (64 * 1024)

#endif
