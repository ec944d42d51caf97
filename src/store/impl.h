/*
 * store internals shared by env.c, view.c, lookup.c, walk.c, gather.c, record.c and apply*.c.
 *
 * Invariants of struct ent_store:
 *  - env and every dbi[] are opened once in ent_store_open and stay valid until close; DBI
 *    handles are process-wide in LMDB, so every read view and write txn shares them.
 *  - At most one write transaction exists at a time (w.txn != NULL while it is open). Its
 *    scratch (ws) is allocated on the first ent_store_wtxn_begin and reused for every later one, so
 *    recomputing aggregates allocates nothing in steady state.
 *  - Values read inside the write transaction are only valid until the next write in it
 *    (LMDB may move dirty pages), so apply code unpacks or copies before it writes.
 */
#ifndef ENT_STORE_IMPL_H
#define ENT_STORE_IMPL_H

#include <lmdb.h>
#include <stdatomic.h>
#include <string.h>

#include "ent/store.h"
#include "ent/v1/event.pb-c.h"

/** The database layout version in meta "schema". */
#define ENT_SCHEMA 1

/** Extra capacities of admin input that have no ENT_MAX_* in util.h/model.h. */
#define ENT_MAX_GRANTS	 1024 /**< grants of one plan, add-on or subscription */
#define ENT_MAX_ADDONS	 ENT_MAX_SOURCES
#define ENT_MAX_METADATA 64

/** Keys of two ids joined by NUL fit LMDB's 511-byte key limit (200 + 1 + 255). */
#define ENT_KEY_MAX 512

struct ent_wscratch;

struct ent_wtxn {
	struct ent_store *s;
	MDB_txn *txn; /**< the top-level write txn; NULL when none is open */
	uint64_t seq; /**< meta seq as of the last applied event */
};

struct ent_store {
	MDB_env *env;
	MDB_dbi dbi[ENT_T__COUNT];
	/** Bit t: table t is missing (a read-only open of a database written before the table
	    existed; only `ended` may be). Its dbi is invalid: lookups read as not found. */
	uint32_t absent;
	bool read_only;
	struct ent_wtxn w;	 /**< the single write transaction */
	struct ent_wscratch *ws; /**< writer scratch, see above */
	/** The batched walk (walk.c): walk_why is NULL while it is on, else why it is off (a
	    constant string); off by configuration for good, otherwise set by the last snapshot
	    any view set up (relaxed: a status for the metrics and the start log). */
	bool walk_off;
	_Atomic(const char *) walk_why;
	atomic_uint_fast64_t walk_fallbacks; /**< lookups handed to mdb_get; rare, so shared */
	int lock_fd; /**< <dir>/entd.lock, flock'ed while open read-write; -1 */
	/** Records that failed to decode on a read (checksum or structure): counted without a
	    lock from any reader thread, exported as entd_store_corrupt_reads_total. */
	_Atomic uint64_t corrupt_reads;
	_Atomic int64_t corrupt_logged_at; /**< ms of the last log line about one */
};

/** The agg B-tree of one snapshot as the batched walk reads it (walk.c). */
struct ent_walk_tree {
	const uint8_t *base; /* page 0 of the map */
	size_t psize;
	uint64_t root, last_pgno;
	uint64_t txnid; /* the snapshot's */
	unsigned depth; /* 0: empty table */
	/* The view's cache of branch pages for this snapshot, or NULL; keep_low: the lowest
	   branch level is routed through it too (walk_cache.c). */
	struct ent_walk_cache *cache;
	bool keep_low;
};

struct ent_view {
	struct ent_store *s;
	MDB_txn *txn; /**< reset while idle, renewed by ent_store_view_begin */
	uint64_t seq;
	size_t seq_txnid; /**< the snapshot (LMDB txn id) seq was read in; 0: none */
	bool active;
	MDB_cursor *cur[ENT_T__COUNT]; /**< kept read-only cursors, renewed per scan */
	uint32_t cur_busy;	       /**< bit t: cur[t] is in use by a running scan */
	/** Keys the batched walk (walk.c) called absent that mdb_get then found: the answer is
	    still right, but a walk that misses is slow and wrong; the tests require 0. */
	uint64_t walk_missed;
	struct ent_walk_cache *walk_cache; /**< the walk's cache of branch pages (walk_cache.c) */
	/** The tree of the last snapshot walked, kept for the next batch in the same snapshot
	    (and map size): reading it costs a main-DB lookup and two env queries. */
	struct ent_walk_tree walk_tree;
	uint64_t walk_tree_txnid;
	size_t walk_tree_mapsize; /**< 0: none kept */
	bool walk_tree_ok;	  /**< the kept tree can be walked */
	/** Keys a snapshot serves this view's walk before the lowest branch level is cached;
	    the tests set 0 to exercise that level on small data. */
	uint64_t walk_low_after;
};

/** The default of ent_view.walk_low_after (walk_cache.c). */
#define ENT_WALK_LOW_AFTER 65536
struct ent_walk_cache;
void ent_store_walk_cache_free(struct ent_walk_cache *c);
/** Keys the cache routed, and of those the ones narrowed to tied separators (tests). */
void ent_store_walk_cache_counts(const struct ent_view *v, uint64_t *routed, uint64_t *narrowed);

/** Check at open whether the walk can be used, for ent_store_walk (walk.c). */
void ent_store_walk_probe(struct ent_store *s);

/** Decide a check whose record lookup gave \a rc / \a val: the tail of ent_store_view_check,
    shared with the batched walk (walk.c). */
int ent_store_view_decide(struct ent_view *v, const struct ent_check *c, int rc, MDB_val *val,
			  struct ent_check_result *out);

/** Working memory of the writer: too big for a thread stack, reused for every recompute. */
struct ent_wscratch {
	struct ent_sources src;
	struct ent_agg segs[ENT_MAX_SEGMENTS];
	struct ent_agg seg;	/**< one decoded segment (consume, usage answers) */
	struct ent_sources one; /**< one source alone: does it grant? (cleanup tombstones) */
	uint8_t rec[ENT_RECORD_MAX];
	struct ent_arena rc;  /**< gather of one recompute; reset per recompute */
	struct ent_arena tmp; /**< one item of a scan; reset per item */
};

/* ---- errors and small codecs ---------------------------------------------------------- */

/** Translate an LMDB (or errno) return code to 0 / -ENT_E*. The only place that does it. */
int ent_store_mdb_err(int rc);

static inline void ent_store_le64_put(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t ent_store_le64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/** Boundary keys sort as signed times under memcmp: big-endian of t with the sign bit flipped. */
static inline void ent_store_bound_key(uint8_t out[8], int64_t t)
{
	uint64_t u = (uint64_t)t ^ (UINT64_C(1) << 63);
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(u >> (56 - 8 * i));
}

static inline int64_t ent_store_bound_time(const uint8_t in[8])
{
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = (u << 8) | in[i];
	return (int64_t)(u ^ (UINT64_C(1) << 63));
}

/** A key "a\0b" (or "a" when b is NULL) built on the stack. */
struct ent_key {
	uint32_t len;
	char b[ENT_KEY_MAX];
};

/*
 * memcpy of a few dozen bytes without reading past either end: two overlapping loads per size
 * class. gcc inlines a variable-length memcpy here as `rep movsq`, whose start-up cost was 9%
 * of a batched check (perf, docs/performance.md).
 */
static inline void ent_store_copy_short(char *d, const char *s, size_t n)
{
	uint64_t x, y;
	if (n >= 16) {
		size_t i = 0;
		for (; i + 16 <= n; i += 16) {
			memcpy(&x, s + i, 8);
			memcpy(&y, s + i + 8, 8);
			memcpy(d + i, &x, 8);
			memcpy(d + i + 8, &y, 8);
		}
		if (i < n) {
			memcpy(&x, s + n - 16, 8);
			memcpy(&y, s + n - 8, 8);
			memcpy(d + n - 16, &x, 8);
			memcpy(d + n - 8, &y, 8);
		}
	} else if (n >= 8) {
		memcpy(&x, s, 8);
		memcpy(&y, s + n - 8, 8);
		memcpy(d, &x, 8);
		memcpy(d + n - 8, &y, 8);
	} else if (n >= 4) {
		uint32_t u, v;
		memcpy(&u, s, 4);
		memcpy(&v, s + n - 4, 4);
		memcpy(d, &u, 4);
		memcpy(d + n - 4, &v, 4);
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
	}
}

/** \return 0, or -ENT_EINVAL when the parts do not fit a key. */
static inline int ent_store_key_make(struct ent_key *k, struct ent_str a, const struct ent_str *b)
{
	size_t n = a.len + (b ? 1 + (size_t)b->len : 0);
	if (n == 0 || n >= sizeof(k->b))
		return -ENT_EINVAL;
	ent_store_copy_short(k->b, a.p, a.len);
	if (b) {
		k->b[a.len] = '\0';
		ent_store_copy_short(k->b + a.len + 1, b->p, b->len);
	}
	k->len = (uint32_t)n;
	return 0;
}

/** The agg key of a check, or false when its ids cannot form one (the check is a miss). */
static inline bool ent_store_check_key(const struct ent_check *c, struct ent_key *k)
{
	return c->customer.len > 0 && c->customer.len <= ENT_MAX_CUSTOMER_ID &&
	       c->feature.len > 0 && c->feature.len <= ENT_MAX_CODE &&
	       ent_store_key_make(k, c->customer, &c->feature) == 0;
}

static inline MDB_val ent_store_key_val(const struct ent_key *k)
{
	return (MDB_val){k->len, (void *)k->b};
}

static inline struct ent_str ent_store_val_str(MDB_val v)
{
	return (struct ent_str){v.mv_data, (uint32_t)v.mv_size};
}

/** Split "a\0b" at the first NUL. \return false if there is none. */
static inline bool ent_store_key_split(struct ent_str k, struct ent_str *a, struct ent_str *b)
{
	const char *z = k.len ? memchr(k.p, '\0', k.len) : NULL;
	if (!z)
		return false;
	a->p = k.p;
	a->len = (uint32_t)(z - k.p);
	b->p = z + 1;
	b->len = k.len - a->len - 1;
	return true;
}

/** Read a u64 LE meta value (0 when absent). */
int ent_store_meta_u64(struct ent_store *s, MDB_txn *txn, const char *name, uint64_t *out);

/** Fetch and unpack a stored feature into \a a. \return 0, -ENT_ENOTFOUND or -ENT_ECORRUPT. */
int ent_store_load_feature(struct ent_store *s, MDB_txn *txn, struct ent_str code,
			   struct ent_arena *a, Ent__V1__Feature **out);

/** The LMDB name of table \a t ("agg"). */
const char *ent_store_table_name(enum ent_table t);

/** Whether table \a t exists in this environment (see struct ent_store.absent). */
static inline bool ent_store_has(const struct ent_store *s, enum ent_table t)
{
	return !(s->absent & (1u << t));
}

/* ---- record.c ------------------------------------------------------------------------- */

/** Record header size and one segment table entry size (docs/storage.md). */
#define ENT_REC_HDR 28
#define ENT_REC_SEG 20

/**
 * Validate the header and segment table of \a rec and read the usage state.
 * \return the number of segments (>= 1), or -ENT_ECORRUPT.
 */
int ent_store_record_header(const uint8_t *rec, size_t len, struct ent_usage_state *u);
/** The window of segment \a i of a record that passed ent_store_record_header. */
void ent_store_record_seg_window(const uint8_t *rec, int i, int64_t *from, int64_t *to);
/** Overwrite period_start and used of an encoded record in place (then ent_store_record_reseal). */
void ent_store_record_set_usage(uint8_t *rec, int64_t period_start, int64_t used);
/** Recompute the checksum trailer of a record of \a len bytes patched in place (a record
    without one, written before checksums, is left as it is). */
void ent_store_record_reseal(uint8_t *rec, size_t len);

/* ---- gather.c ------------------------------------------------------------------------- */

/**
 * Gather every source of (customer, feature) from the base tables of \a txn into \a out.
 * Strings and arrays live in \a a (protobufs are unpacked into it).
 * \return 0, -ENT_ENOTFOUND if the feature is unknown, -ENT_EINVAL if there are more than
 * ENT_MAX_SOURCES sources, or a storage error.
 */
int ent_store_gather(struct ent_store *s, MDB_txn *txn, struct ent_str customer,
		     struct ent_str feature, struct ent_arena *a, struct ent_sources *out);

/* ---- apply*.c ------------------------------------------------------------------------- */

/** The state of one ent_store_apply call, passed to the per-kind handlers. */
struct ent_actx {
	struct ent_store *s;
	struct ent_wscratch *ws;
	MDB_txn *txn; /**< the event's nested transaction */
	const Ent__V1__Event *ev;
	int64_t at;
	struct ent_arena *arena; /**< caller's: res->object and per-event allocations */
	ProtobufCAllocator alloc;
	struct ent_apply_result *res;
	struct ent_err *err;
};

/* Raw table access inside the apply txn: 0, -ENT_ENOTFOUND or another -ENT_E*. */
int ent_store_apply_get(struct ent_actx *c, enum ent_table t, struct ent_str key, MDB_val *val);
int ent_store_apply_put(struct ent_actx *c, enum ent_table t, struct ent_str key, const void *val,
			size_t len);
/** Delete \a key (all its values); -ENT_ENOTFOUND if absent. */
int ent_store_apply_del(struct ent_actx *c, enum ent_table t, struct ent_str key);
/** Delete one value of a DUPSORT key; absent is not an error. */
int ent_store_apply_del_dup(struct ent_actx *c, enum ent_table t, struct ent_str key,
			    struct ent_str val);
/** Put a protobuf message (packed straight into the reserved value). */
int ent_store_apply_put_pb(struct ent_actx *c, enum ent_table t, struct ent_str key,
			   const ProtobufCMessage *m);
/** Fetch and unpack a protobuf value into c->arena. \return 0, -ENT_ENOTFOUND, ... */
int ent_store_apply_get_pb(struct ent_actx *c, enum ent_table t, struct ent_str key,
			   const ProtobufCMessageDescriptor *d, struct ent_arena *a, void **out);

typedef int (*ent_a_scan_cb)(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val);
/**
 * Iterate keys with \a prefix (all dups of DUPSORT keys). The callback must not write: collect
 * first, write after.
 */
int ent_store_apply_scan(struct ent_actx *c, enum ent_table t, struct ent_str prefix,
			 ent_a_scan_cb cb, void *ctx);

/** A growable list of strings in the event arena (customers, feature codes). */
struct ent_strset {
	struct ent_str *v;
	size_t n, cap;
};
/** Append a copy of \a s (into c->arena). */
int ent_store_strset_add(struct ent_actx *c, struct ent_strset *set, struct ent_str s);
/** Sort and drop duplicates. */
void ent_store_strset_uniq(struct ent_strset *set);
bool ent_store_strset_has(const struct ent_strset *set, struct ent_str s);

/**
 * Rebuild the aggregate of (customer, feature) as of c->at (or \a now), its usage row and its
 * boundary entries. No sources: the aggregate and its boundaries are removed.
 */
int ent_store_apply_recompute(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      int64_t now);
/** Recompute every (customer, feature) of customers x features. */
int ent_store_apply_recompute_all(struct ent_actx *c, const struct ent_strset *customers,
				  const struct ent_strset *features, int64_t now);
/** Recompute every feature the customer has an aggregate or an override for. */
int ent_store_apply_recompute_customer(struct ent_actx *c, struct ent_str customer, int64_t now);

/** Add \a delta to the customer's reference count; the row goes at 0. */
int ent_store_apply_customer_ref(struct ent_actx *c, struct ent_str customer, int delta);
/** Add a boundary entry: at \a t, revisit (customer, feature); feature empty: the customer. */
int ent_store_apply_bound_add(struct ent_actx *c, int64_t t, struct ent_str customer,
			      struct ent_str feature);

/**
 * Set the usage counter of (customer, feature) to \a used in the period starting at
 * \a period_start: the usage row, the aggregate's copy and the period-end boundary.
 */
int ent_store_apply_usage_write(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
				int64_t period_start, int64_t used);

/**
 * Decide a check of \a quantity at \a t inside the apply txn, like ent_store_view_check.
 * \a u receives the record's usage state (feature_type 0 when there is no record).
 */
int ent_store_apply_decide(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			   int64_t quantity, int64_t t, struct ent_usage_state *u,
			   struct ent_decision *d);

/**
 * The usage period containing \a t for (customer, feature), from the shape of the record's
 * segment at t (a never-resetting period when there is no record), and the counter in \a u
 * (the record's, else the usage row's).
 */
int ent_store_apply_period_at(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      int64_t t, int64_t *start, int64_t *end, struct ent_usage_state *u);

/** Per-kind handlers (apply_catalog.c, apply_customer.c, apply_usage.c). */
int ent_store_apply_upsert_feature(struct ent_actx *c, const Ent__V1__Feature *f);
int ent_store_apply_delete_feature(struct ent_actx *c, const char *code);
int ent_store_apply_set_entitlements(struct ent_actx *c, enum ent_table t,
				     const Ent__V1__SetEntitlementsRequest *req, bool patch);
int ent_store_apply_delete_entitlements(struct ent_actx *c, enum ent_table t, const char *code);
int ent_store_apply_upsert_subscription(struct ent_actx *c, const Ent__V1__Subscription *sub);
int ent_store_apply_cancel_subscription(struct ent_actx *c,
					const Ent__V1__CancelSubscriptionRequest *req);
/**
 * Remove a subscription (tick: ended), maintaining indexes, refcount and aggregates. Each
 * feature it granted gets a tombstone in `ended` first (ent_store_apply_tombstone), so the answer
 * stays EXPIRED after it is gone.
 */
int ent_store_apply_remove_subscription(struct ent_actx *c, struct ent_str customer,
					struct ent_str id);
int ent_store_apply_set_override(struct ent_actx *c,
				 const Ent__V1__SetCustomerEntitlementRequest *req);
int ent_store_apply_update_override(struct ent_actx *c,
				    const Ent__V1__UpdateCustomerEntitlementRequest *req);
int ent_store_apply_delete_override(struct ent_actx *c,
				    const Ent__V1__DeleteCustomerEntitlementRequest *req);
/** Remove an override (delete_override), maintaining refcount and the aggregate. */
int ent_store_apply_remove_override(struct ent_actx *c, struct ent_str customer,
				    struct ent_str feature);
/** The tick's removal of an expired override: a tombstone first, then
 * ent_store_apply_remove_override. */
int ent_store_apply_expire_override(struct ent_actx *c, struct ent_str customer,
				    struct ent_str feature);

/**
 * Before cleanup removes sources of (customer, feature), record the latest end among those
 * that ended by c->at and would grant the feature, in `ended` (the larger of the stored one
 * and this; a new row adds a customer reference). Which sources: the override when
 * \a sub_id is NULL, else the plan, add-on and own grants of subscription \a sub_id.
 */
int ent_store_apply_tombstone(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      const struct ent_str *sub_id);
/**
 * Write a row of `ended` (merged with a stored one; a new row adds a customer reference).
 * \a grants: a tombstone that explains EXPIRED from \a end on (8-byte value); otherwise one
 * that only keeps the record and the customer (9 bytes: end, then 0). An empty \a feature is
 * the customer's own marker: cleanup removed an object of it, so it stays known.
 */
int ent_store_apply_ended_put(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      int64_t end, bool grants);
int ent_store_apply_report_usage(struct ent_actx *c, const Ent__V1__ReportUsageRequest *req);
int ent_store_apply_consume(struct ent_actx *c, const Ent__V1__ConsumeEntitlementRequest *req);
/**
 * A batch of usage reports as one event (apply_usage_batch.c): each record is applied like
 * ent_store_apply_report_usage and gets its own result in c->res->records; an invalid record is
 * refused alone. A storage error fails the whole event.
 */
int ent_store_apply_report_usage_batch(struct ent_actx *c, const Ent__V1__ReportUsageBatch *b);
int ent_store_apply_set_usage(struct ent_actx *c, const Ent__V1__UsageState *req);
/**
 * A tick (apply_tick.c): recompute what came due by t->now (default: the event's instant),
 * remove ended subscriptions and expired overrides, prune tombstones and sweep idempotency
 * keys older than t->idem_before. At most t->max_entries due entries (0: no bound); a piece cut
 * short sets c->res->more.
 */
int ent_store_apply_tick(struct ent_actx *c, const Ent__V1__Tick *t);
/** A wipe (apply_tick.c): empty every table but meta, in the event's transaction. */
int ent_store_apply_wipe(struct ent_actx *c);

/**
 * Validate a list of grants against the features they name. \a field prefixes error
 * messages ("entitlements", "subscription.entitlements"). On success *out holds normalized
 * copies (privilege value_type filled from the feature) in c->arena.
 */
int ent_store_apply_check_grants(struct ent_actx *c, const char *field,
				 Ent__V1__Grant *const *grants, size_t n, Ent__V1__Grant ***out);
/**
 * Validate privilege values against feature \a f (declared, typed, select option, unique).
 * On success *out holds normalized copies in c->arena.
 */
int ent_store_apply_check_privs(struct ent_actx *c, const char *field, const Ent__V1__Feature *f,
				Ent__V1__PrivilegeValue *const *pv, size_t n,
				Ent__V1__PrivilegeValue ***out);
/** Validate an instant of the API: within +-ENT_WIRE_TIME_MAX (2^53 - 1 ms). */
int ent_store_apply_check_time(struct ent_actx *c, int64_t t, const char *field);
/** Validate a text field (<= ENT_MAX_TEXT bytes). */
int ent_store_apply_check_text(struct ent_actx *c, const char *s, const char *field);

#endif
