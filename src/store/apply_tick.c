/*
 * Tick and wipe: the two events that change state without a caller naming what.
 *
 * A tick acts on what has come due by its instant: the boundary index (`bounds`) says which
 * aggregates must be recomputed and which customers have subscriptions or overrides that ended;
 * then it prunes cleanup tombstones and sweeps idempotency keys past their retention, in
 * bounded pieces (docs/storage.md). A wipe empties every table but meta (import --replace).
 * Both run inside apply()'s nested transaction like every other kind (apply.c).
 */
#include "ent/pbarena.h"
#include "store/impl.h"

struct expired {
	struct ent_strset subs, overrides;
	int64_t now;
};

static int find_ended_sub(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	struct expired *e = ctx;
	ent_arena_reset(&c->ws->tmp);
	ProtobufCAllocator al;
	ent_pb_allocator(&al, &c->ws->tmp);
	Ent__V1__Subscription *sub =
		ent__v1__subscription__unpack(&al, val.len, (const uint8_t *)val.p);
	if (!sub)
		return -ENT_ECORRUPT;
	if (sub->ends_at != 0 && sub->ends_at <= e->now)
		return ent_store_strset_add(c, &e->subs, key);
	return 0;
}

static int find_expired_override(struct ent_actx *c, void *ctx, struct ent_str key,
				 struct ent_str val)
{
	struct expired *e = ctx;
	ent_arena_reset(&c->ws->tmp);
	ProtobufCAllocator al;
	ent_pb_allocator(&al, &c->ws->tmp);
	Ent__V1__CustomerOverride *o =
		ent__v1__customer_override__unpack(&al, val.len, (const uint8_t *)val.p);
	if (!o)
		return -ENT_ECORRUPT;
	if (o->expires_at != 0 && o->expires_at <= e->now)
		return ent_store_strset_add(c, &e->overrides, key);
	return 0;
}

/* Delete the customer's ended subscriptions and expired overrides (each recomputes). */
static int expire_customer(struct ent_actx *c, struct ent_str customer, int64_t now)
{
	struct ent_key prefix;
	struct ent_str empty = {"", 0};
	if (ent_store_key_make(&prefix, customer, &empty))
		return 0;
	struct ent_str p = {prefix.b, prefix.len};
	struct expired e = {{0}, {0}, now};
	int r = ent_store_apply_scan(c, ENT_T_SUBS, p, find_ended_sub, &e);
	if (!r)
		r = ent_store_apply_scan(c, ENT_T_OVERRIDES, p, find_expired_override, &e);
	for (size_t i = 0; i < e.subs.n && !r; i++) {
		struct ent_str cu, id;
		if (ent_store_key_split(e.subs.v[i], &cu, &id))
			r = ent_store_apply_remove_subscription(c, cu, id);
	}
	for (size_t i = 0; i < e.overrides.n && !r; i++) {
		struct ent_str cu, fe;
		if (ent_store_key_split(e.overrides.v[i], &cu, &fe))
			r = ent_store_apply_expire_override(c, cu, fe);
	}
	return r;
}

/*
 * Cleanup tombstones live as long as idempotency keys: both are what the daemon remembers of
 * the recent past, and a retry or a late check within the retention finds the same answer.
 * Pruned, the pair is recomputed: with nothing else left its record goes, and the customer
 * with its last reference (then UNKNOWN_CUSTOMER, as if it had never been).
 */
static int prune_tombstones(struct ent_actx *c, int64_t before, int64_t now)
{
	struct ent_strset gone = {0};
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->s->dbi[ENT_T_ENDED], &cur);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k, v;
	int r = 0;
	/* Deleting while walking is safe: see sweep_idem. */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if ((v.mv_size == 8 || v.mv_size == 9) &&
		    (int64_t)ent_store_le64_get(v.mv_data) >= before)
			continue;
		if ((r = ent_store_strset_add(c, &gone, ent_store_val_str(k))))
			break;
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
	}
	mdb_cursor_close(cur);
	if (r)
		return r;
	if (rc != MDB_NOTFOUND)
		return ent_store_mdb_err(rc);
	for (size_t i = 0; i < gone.n && !r; i++) {
		struct ent_str cu, fe;
		if (!ent_store_key_split(gone.v[i], &cu, &fe))
			continue;
		if (!(r = ent_store_apply_customer_ref(c, cu, -1)))
			r = ent_store_apply_recompute(c, cu, fe, now);
	}
	return r;
}

/* Idempotency keys (and tombstones) are swept at most once per minute of idem_before
 * progress: a sweep walks the whole table, and a minute of extra retention is harmless. */
#define IDEM_SWEEP_MS 60000
/* A tick piece of max_entries deletes at most this many times as many idempotency keys: a
 * deletion is cheaper than a recompute, and each still dirties a leaf of its own. */
#define IDEM_SWEEP_PER_ENTRY 4
/* Where an unfinished sweep goes on (meta): the first key the next piece looks at. */
#define IDEM_SWEEP_AT "idem_sweep_at"

/*
 * Delete the idempotency keys recorded before \a before, at most \a budget of them (0: no
 * bound). A sweep cut short stores where it stopped and sets res->more; the next piece goes on
 * from there (tombstones were pruned when it began), so an hour of keys at a high write rate
 * is never one transaction holding every leaf of the table dirty.
 */
static int sweep_idem(struct ent_actx *c, int64_t before, int64_t now, uint32_t budget)
{
	if (before <= 0)
		return 0; /* no retention given (an import's tick): nothing to sweep */
	uint64_t last;
	int r = ent_store_meta_u64(c->s, c->txn, "idem_swept", &last);
	if (r)
		return r;
	struct ent_key from = {0};
	MDB_val at;
	r = ent_store_apply_get(c, ENT_T_META, ent_str_c(IDEM_SWEEP_AT), &at);
	bool resuming = r == 0 && at.mv_size > 0 && at.mv_size <= sizeof(from.b);
	if (r && r != -ENT_ENOTFOUND)
		return r;
	if (resuming) {
		from.len = (uint32_t)at.mv_size;
		memcpy(from.b, at.mv_data, at.mv_size);
	} else if (last != 0 && before < (int64_t)last + IDEM_SWEEP_MS) {
		return 0;
	} else if ((r = prune_tombstones(c, before, now))) {
		return r;
	}
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->s->dbi[ENT_T_IDEM], &cur);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k = {from.len, from.b}, v;
	uint32_t deleted = 0;
	bool cut = false;
	/* After mdb_cursor_del the cursor already stands on the next entry; MDB_NEXT then
	 * returns that entry (LMDB's C_DEL handling), so deleting while walking is safe. */
	for (rc = mdb_cursor_get(cur, &k, &v, resuming ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size < 8 || (int64_t)ent_store_le64_get(v.mv_data) >= before)
			continue;
		if (budget && deleted == budget) {
			if (k.mv_size > sizeof(from.b)) {
				rc = MDB_BAD_VALSIZE;
				break;
			}
			from.len = (uint32_t)k.mv_size;
			memcpy(from.b, k.mv_data, k.mv_size);
			cut = true;
			break;
		}
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		deleted++;
	}
	mdb_cursor_close(cur);
	if (cut) {
		c->res->more = true;
		return ent_store_apply_put(c, ENT_T_META, ent_str_c(IDEM_SWEEP_AT), from.b,
					   from.len);
	}
	if (rc != MDB_NOTFOUND)
		return ent_store_mdb_err(rc);
	if (resuming && (r = ent_store_apply_del(c, ENT_T_META, ent_str_c(IDEM_SWEEP_AT))))
		return r;
	uint8_t b[8];
	ent_store_le64_put(b, (uint64_t)before);
	return ent_store_apply_put(c, ENT_T_META, ent_str_c("idem_swept"), b, 8);
}

int ent_store_apply_tick(struct ent_actx *c, const Ent__V1__Tick *t)
{
	int64_t now = t->now ? t->now : c->at;
	/* Everything the tick removes or rebuilds happens as of its own instant. */
	c->at = now;
	for (uint32_t done = 0;; done++) {
		/* Take the first due entry, delete it, then act: acting rewrites the index, so
		 * no cursor is kept across it. New entries are always later than now. */
		MDB_cursor *cur;
		int rc = mdb_cursor_open(c->txn, c->s->dbi[ENT_T_BOUNDS], &cur);
		if (rc)
			return ent_store_mdb_err(rc);
		MDB_val k, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		struct ent_key val = {0};
		int64_t when = 0;
		if (rc == 0 && k.mv_size == 8 && v.mv_size < sizeof(val.b)) {
			when = ent_store_bound_time(k.mv_data);
			val.len = (uint32_t)v.mv_size;
			memcpy(val.b, v.mv_data, v.mv_size);
		} else if (rc == 0) {
			rc = mdb_cursor_del(cur, 0); /* malformed entry: drop it */
			mdb_cursor_close(cur);
			if (rc)
				return ent_store_mdb_err(rc);
			continue;
		}
		if (rc == 0 && when <= now && t->max_entries && done == t->max_entries) {
			/* Due, but this piece is full: leave it for the next transaction. */
			mdb_cursor_close(cur);
			c->res->more = true;
			return 0;
		}
		if (rc == 0 && when <= now)
			rc = mdb_cursor_del(cur, 0);
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND || (rc == 0 && when > now))
			break;
		if (rc)
			return ent_store_mdb_err(rc);
		struct ent_str customer, feature;
		if (!ent_store_key_split((struct ent_str){val.b, val.len}, &customer, &feature))
			continue;
		/*
		 * Ends and expiries always have a whole-customer entry (feature empty), so only
		 * those look for what to delete; the per-feature entries (segment and period
		 * edges, by far the most) just recompute their one aggregate.
		 */
		int r = feature.len ? ent_store_apply_recompute(c, customer, feature, now)
				    : expire_customer(c, customer, now);
		if (!r && !feature.len)
			r = ent_store_apply_recompute_customer(c, customer, now);
		if (r)
			return r;
	}
	uint32_t budget = t->max_entries <= UINT32_MAX / IDEM_SWEEP_PER_ENTRY
				  ? t->max_entries * IDEM_SWEEP_PER_ENTRY
				  : 0;
	return sweep_idem(c, t->idem_before, now, budget);
}

int ent_store_apply_wipe(struct ent_actx *c)
{
	for (int t = 0; t < ENT_T__COUNT; t++) {
		if (t == ENT_T_META)
			continue;
		int rc = mdb_drop(c->txn, c->s->dbi[t], 0);
		if (rc)
			return ent_store_mdb_err(rc);
	}
	return 0;
}
