/*
 * Write transactions and apply(): the one code path that changes state, online (writer
 * thread) and offline (entctl import) alike.
 *
 * Each event runs in a nested transaction of the group's write transaction: if it fails, its
 * nested transaction is aborted and the group goes on without it. On success it bumps meta
 * "seq" in the same nested transaction, so the sequence and the state it describes commit
 * together or not at all. The only clock is ev->at, so replaying the same events gives the same
 * database (fleet mode depends on it).
 *
 * This file also holds what every kind shares: table helpers, the recompute of one aggregate
 * with its usage row and boundary entries, reference counts. Tick and wipe are in
 * apply_tick.c.
 */
#include <stdlib.h>

#include "ent/pbarena.h"
#include "store/impl.h"

/* ---- write transactions ----------------------------------------------------------------- */

int ent_store_wtxn_begin(struct ent_store *s, struct ent_wtxn **out)
{
	if (s->read_only || s->w.txn)
		return -ENT_EPRECOND;
	if (!s->ws) {
		s->ws = calloc(1, sizeof(*s->ws));
		if (!s->ws)
			return -ENT_ENOMEM;
		ent_arena_init(&s->ws->rc, 64 * 1024);
		ent_arena_init(&s->ws->tmp, 64 * 1024);
	}
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		return ent_store_mdb_err(rc);
	uint64_t seq;
	int r = ent_store_meta_u64(s, txn, "seq", &seq);
	if (r) {
		mdb_txn_abort(txn);
		return r;
	}
	s->w.txn = txn;
	s->w.seq = seq;
	*out = &s->w;
	return 0;
}

int ent_store_wtxn_commit(struct ent_wtxn *w, struct ent_err *err)
{
	if (!w || !w->txn)
		return ent_err_set(err, ENT_EINVAL, "no write transaction");
	MDB_txn *txn = w->txn;
	w->txn = NULL;
	uint8_t b[8];
	ent_store_le64_put(b, (uint64_t)ent_time_now_ms());
	MDB_val k = {11, "last_commit"}, v = {8, b};
	int rc = mdb_put(txn, w->s->dbi[ENT_T_META], &k, &v, 0);
	if (rc) {
		mdb_txn_abort(txn);
		return ent_err_set(err, -ent_store_mdb_err(rc), "commit: %s", mdb_strerror(rc));
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return ent_err_set(err, -ent_store_mdb_err(rc), "commit: %s", mdb_strerror(rc));
	return 0;
}

void ent_store_wtxn_abort(struct ent_wtxn *w)
{
	if (w && w->txn) {
		mdb_txn_abort(w->txn);
		w->txn = NULL;
	}
}

uint64_t ent_store_wtxn_seq(const struct ent_wtxn *w)
{
	return w->seq;
}

int ent_store_wtxn_set_seq(struct ent_wtxn *w, uint64_t seq)
{
	if (!w || !w->txn)
		return -ENT_EINVAL;
	uint8_t b[8];
	ent_store_le64_put(b, seq);
	MDB_val k = {3, "seq"}, v = {8, b};
	int rc = mdb_put(w->txn, w->s->dbi[ENT_T_META], &k, &v, 0);
	if (rc)
		return ent_store_mdb_err(rc);
	w->seq = seq;
	return 0;
}

int ent_store_wtxn_put_meta(struct ent_wtxn *w, const char *name, const char *value)
{
	if (!w || !w->txn)
		return -ENT_EINVAL;
	MDB_val k = {strlen(name), (void *)name}, v = {strlen(value), (void *)value};
	return ent_store_mdb_err(mdb_put(w->txn, w->s->dbi[ENT_T_META], &k, &v, 0));
}

/* ---- table helpers ---------------------------------------------------------------------- */

static MDB_val sval(struct ent_str s)
{
	return (MDB_val){s.len, (void *)s.p};
}

int ent_store_apply_get(struct ent_actx *c, enum ent_table t, struct ent_str key, MDB_val *val)
{
	if (key.len == 0 || key.len >= ENT_KEY_MAX)
		return -ENT_ENOTFOUND;
	MDB_val k = sval(key);
	return ent_store_mdb_err(mdb_get(c->txn, c->s->dbi[t], &k, val));
}

int ent_store_apply_put(struct ent_actx *c, enum ent_table t, struct ent_str key, const void *val,
			size_t len)
{
	MDB_val k = sval(key), v = {len, (void *)val};
	return ent_store_mdb_err(mdb_put(c->txn, c->s->dbi[t], &k, &v, 0));
}

int ent_store_apply_del(struct ent_actx *c, enum ent_table t, struct ent_str key)
{
	if (key.len == 0 || key.len >= ENT_KEY_MAX)
		return -ENT_ENOTFOUND;
	MDB_val k = sval(key);
	return ent_store_mdb_err(mdb_del(c->txn, c->s->dbi[t], &k, NULL));
}

int ent_store_apply_del_dup(struct ent_actx *c, enum ent_table t, struct ent_str key,
			    struct ent_str val)
{
	MDB_val k = sval(key), v = sval(val);
	int rc = mdb_del(c->txn, c->s->dbi[t], &k, &v);
	return rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}

int ent_store_apply_put_pb(struct ent_actx *c, enum ent_table t, struct ent_str key,
			   const ProtobufCMessage *m)
{
	/* Packed straight into the reserved value: no intermediate buffer. */
	size_t n = protobuf_c_message_get_packed_size(m);
	MDB_val k = sval(key), v = {n, NULL};
	int rc = mdb_put(c->txn, c->s->dbi[t], &k, &v, MDB_RESERVE);
	if (rc)
		return ent_store_mdb_err(rc);
	protobuf_c_message_pack(m, v.mv_data);
	return 0;
}

int ent_store_apply_get_pb(struct ent_actx *c, enum ent_table t, struct ent_str key,
			   const ProtobufCMessageDescriptor *d, struct ent_arena *a, void **out)
{
	MDB_val v;
	int r = ent_store_apply_get(c, t, key, &v);
	if (r)
		return r;
	ProtobufCAllocator al;
	ent_pb_allocator(&al, a);
	*out = protobuf_c_message_unpack(d, &al, v.mv_size, v.mv_data);
	return *out ? 0 : -ENT_ECORRUPT;
}

int ent_store_apply_scan(struct ent_actx *c, enum ent_table t, struct ent_str prefix,
			 ent_a_scan_cb cb, void *ctx)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->s->dbi[t], &cur);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k = sval(prefix), v;
	rc = mdb_cursor_get(cur, &k, &v, prefix.len ? MDB_SET_RANGE : MDB_FIRST);
	int r = 0;
	while (rc == 0) {
		if (k.mv_size < prefix.len || memcmp(k.mv_data, prefix.p, prefix.len) != 0)
			break;
		if ((r = cb(c, ctx, ent_store_val_str(k), ent_store_val_str(v))))
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (r)
		return r;
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}

/* ---- string sets ------------------------------------------------------------------------ */

int ent_store_strset_add(struct ent_actx *c, struct ent_strset *set, struct ent_str s)
{
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 16;
		struct ent_str *v = ent_arena_alloc(c->arena, cap * sizeof(*v));
		if (!v)
			return -ENT_ENOMEM;
		if (set->n)
			memcpy(v, set->v, set->n * sizeof(*v));
		set->v = v;
		set->cap = cap;
	}
	char *p = ent_arena_strndup(c->arena, s.p ? s.p : "", s.len);
	if (!p)
		return -ENT_ENOMEM;
	set->v[set->n++] = (struct ent_str){p, s.len};
	return 0;
}

static int str_cmp(const void *a, const void *b)
{
	return ent_str_cmp(*(const struct ent_str *)a, *(const struct ent_str *)b);
}

void ent_store_strset_uniq(struct ent_strset *set)
{
	if (set->n < 2)
		return;
	qsort(set->v, set->n, sizeof(*set->v), str_cmp);
	size_t m = 1;
	for (size_t i = 1; i < set->n; i++)
		if (!ent_str_eq(set->v[i], set->v[m - 1]))
			set->v[m++] = set->v[i];
	set->n = m;
}

bool ent_store_strset_has(const struct ent_strset *set, struct ent_str s)
{
	for (size_t i = 0; i < set->n; i++)
		if (ent_str_eq(set->v[i], s))
			return true;
	return false;
}

/* ---- boundaries, reference counts, usage ------------------------------------------------- */

static int bound_val(struct ent_key *val, struct ent_str customer, struct ent_str feature)
{
	return ent_store_key_make(val, customer, &feature);
}

int ent_store_apply_bound_add(struct ent_actx *c, int64_t t, struct ent_str customer,
			      struct ent_str feature)
{
	struct ent_key val;
	if (bound_val(&val, customer, feature))
		return -ENT_EINVAL;
	uint8_t k[8];
	ent_store_bound_key(k, t);
	MDB_val mk = {8, k}, mv = ent_store_key_val(&val);
	/* A duplicate (same time, same target) is a no-op for DUPSORT without NODUPDATA. */
	return ent_store_mdb_err(mdb_put(c->txn, c->s->dbi[ENT_T_BOUNDS], &mk, &mv, 0));
}

static int bound_del(struct ent_actx *c, int64_t t, const struct ent_key *val)
{
	uint8_t k[8];
	ent_store_bound_key(k, t);
	MDB_val mk = {8, k}, mv = ent_store_key_val(val);
	int rc = mdb_del(c->txn, c->s->dbi[ENT_T_BOUNDS], &mk, &mv);
	return rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}

/* The end of the usage period a record's counter belongs to, or 0 if it never resets. */
static int64_t period_end_of(const struct ent_usage_state *u)
{
	if (u->feature_type != ENT_FT_METERED || u->reset == ENT_RESET_NEVER ||
	    u->reset == ENT_RESET_UNSPECIFIED)
		return 0;
	int64_t start, end;
	ent_model_period(u->reset, u->anchor, u->period_start, &start, &end);
	return end;
}

int ent_store_apply_customer_ref(struct ent_actx *c, struct ent_str customer, int delta)
{
	MDB_val v;
	int64_t n = 0;
	int r = ent_store_apply_get(c, ENT_T_CUSTOMERS, customer, &v);
	if (r == 0 && v.mv_size == 4) {
		const uint8_t *p = v.mv_data;
		n = (int64_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			      (uint32_t)p[3] << 24);
	} else if (r && r != -ENT_ENOTFOUND) {
		return r;
	}
	n += delta;
	if (n <= 0)
		return r == 0 ? ent_store_apply_del(c, ENT_T_CUSTOMERS, customer) : 0;
	uint8_t b[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
	return ent_store_apply_put(c, ENT_T_CUSTOMERS, customer, b, 4);
}

/* The previous record's facts needed after it is overwritten: its edges and usage. */
struct old_rec {
	bool exists;
	struct ent_usage_state u;
	int n;
	int64_t to[ENT_MAX_SEGMENTS];
};

static int read_old(struct ent_actx *c, const struct ent_key *key, struct old_rec *o)
{
	MDB_val v;
	o->exists = false;
	o->n = 0;
	int r = ent_store_apply_get(c, ENT_T_AGG, (struct ent_str){key->b, key->len}, &v);
	if (r == -ENT_ENOTFOUND)
		return 0;
	if (r)
		return r;
	o->exists = true;
	int n = ent_store_record_header(v.mv_data, v.mv_size, &o->u);
	if (n < 0) {
		/* A corrupt record is rebuilt from the base tables; its edges are lost, which
		 * at worst leaves stale boundary entries that recompute once more. */
		memset(&o->u, 0, sizeof(o->u));
		return 0;
	}
	o->n = n;
	for (int i = 0; i < n; i++) {
		int64_t from;
		ent_store_record_seg_window(v.mv_data, i, &from, &o->to[i]);
	}
	return 0;
}

static int drop_old_bounds(struct ent_actx *c, const struct ent_key *key, const struct old_rec *o)
{
	int r = 0;
	for (int i = 0; i < o->n && !r; i++)
		if (o->to[i] != ENT_T_MAX)
			r = bound_del(c, o->to[i], key);
	int64_t pe = o->exists ? period_end_of(&o->u) : 0;
	if (!r && pe)
		r = bound_del(c, pe, key);
	return r;
}

int ent_store_apply_recompute(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      int64_t now)
{
	struct ent_wscratch *ws = c->ws;
	struct ent_key key;
	if (ent_store_key_make(&key, customer, &feature))
		return ent_err_set(c->err, ENT_EINVAL, "key too long");
	struct ent_str skey = {key.b, key.len};
	struct old_rec old;
	int r = read_old(c, &key, &old);
	if (r)
		return r;

	ent_arena_reset(&ws->rc);
	r = ent_store_gather(c->s, c->txn, customer, feature, &ws->rc, &ws->src);
	if (r == -ENT_EINVAL)
		return ent_err_set(c->err, ENT_EINVAL,
				   "customer '%.*s' would have more than %d sources of feature "
				   "'%.*s'",
				   (int)customer.len, customer.p, ENT_MAX_SOURCES, (int)feature.len,
				   feature.p);
	if (r == -ENT_ENOTFOUND) {
		ws->src.n = 0; /* the feature is gone: so are its aggregates */
		ws->src.ended_at = 0;
		ws->src.keep = false;
	} else if (r) {
		return r;
	}

	if ((r = drop_old_bounds(c, &key, &old)))
		return r;
	/* A cleanup tombstone alone keeps the record: the answer stays EXPIRED, with the
	 * feature's type, whether or not the tick removed what ended. */
	if (ws->src.n == 0 && ws->src.ended_at == 0 && !ws->src.keep) {
		if (!old.exists)
			return 0;
		c->res->recomputed++;
		return ent_store_apply_del(c, ENT_T_AGG, skey);
	}

	int n = ent_model_segments(&ws->src, now, ws->segs);
	if (n < 1)
		return ent_err_set(c->err, ENT_EINVAL,
				   "aggregate of customer '%.*s' feature '%.*s' exceeds capacities",
				   (int)customer.len, customer.p, (int)feature.len, feature.p);
	/* The header's shape is the one at now: it places the period-end boundary entry. */
	struct ent_usage_state u = {.feature_type = ws->src.feature.type};
	int cur = 0;
	while (cur + 1 < n && ws->segs[cur].to <= now)
		cur++;
	u.reset = ws->segs[cur].reset;
	u.anchor = ws->segs[cur].anchor;
	int64_t ps, pe;
	ent_model_period(u.reset, u.anchor, now, &ps, &pe);
	u.period_start = ps;
	u.used = 0;

	/*
	 * The usage row (P, U). A check at t reads U when t's period (under t's segment's shape)
	 * starts at or before P, and 0 otherwise (ent_model_decide). Rolling the row must not
	 * change any answer from now on, whatever shapes the segments ahead have: so the row
	 * rolls to (period of now, 0) only when no instant from now on reads U any more, and
	 * otherwise stays as it is (even when a changed anchor moved the period start: the
	 * counter then still counts for the period that contains P, see count()).
	 */
	MDB_val v;
	r = ent_store_apply_get(c, ENT_T_USAGE, skey, &v);
	if (r == 0 && v.mv_size == 16) {
		int64_t row_ps = (int64_t)ent_store_le64_get(v.mv_data);
		int64_t row_used = (int64_t)ent_store_le64_get((const uint8_t *)v.mv_data + 8);
		bool live = false;
		for (int i = 0; i < n && !live; i++) {
			if (ws->segs[i].to <= now)
				continue;
			/* Period starts only grow with t inside one segment: its first instant
			 * from now on has the earliest. */
			int64_t t0 = ws->segs[i].from > now ? ws->segs[i].from : now, s0, e0;
			ent_model_period(ws->segs[i].reset, ws->segs[i].anchor, t0, &s0, &e0);
			live = s0 <= row_ps;
		}
		if (live || ws->src.n == 0) {
			/* Also kept as it is when nothing grants (a tombstone alone), like a
			 * customer without an aggregate: a grant that comes back finds it. */
			u.period_start = row_ps;
			u.used = row_used;
		} else if (row_ps != ps || row_used != 0) {
			uint8_t b[16];
			ent_store_le64_put(b, (uint64_t)ps);
			ent_store_le64_put(b + 8, 0);
			if ((r = ent_store_apply_put(c, ENT_T_USAGE, skey, b, 16)))
				return r;
		}
	} else if (r && r != -ENT_ENOTFOUND) {
		return r;
	}

	int len = ent_store_record_encode(&u, ws->segs, n, ws->rec, sizeof(ws->rec));
	if (len < 0)
		return ent_err_set(c->err, ENT_EINVAL,
				   "aggregate of customer '%.*s' feature '%.*s' exceeds %d bytes",
				   (int)customer.len, customer.p, (int)feature.len, feature.p,
				   ENT_RECORD_MAX);
	r = ent_store_apply_get(c, ENT_T_AGG, skey, &v);
	bool same = r == 0 && v.mv_size == (size_t)len && memcmp(v.mv_data, ws->rec, len) == 0;
	if (!same) {
		if ((r = ent_store_apply_put(c, ENT_T_AGG, skey, ws->rec, (size_t)len)))
			return r;
		c->res->recomputed++;
	}
	/*
	 * Boundaries: every future segment edge, every future source window edge (answers are
	 * exact without them; the tick's recompute there only keeps the usage row and the
	 * record tidy), and the end of the usage period. Only segment edges are removed on the next
	 * recompute (they are all the record remembers); a leftover source edge costs one idle
	 * recompute when it falls due and is dropped then.
	 */
	for (int i = 0; i < n; i++) {
		int64_t to = ws->segs[i].to;
		if (to != ENT_T_MAX && to > now &&
		    (r = ent_store_apply_bound_add(c, to, customer, feature)))
			return r;
	}
	for (uint32_t i = 0; i < ws->src.n; i++) {
		int64_t e[2] = {ws->src.src[i].active_from, ws->src.src[i].expires_at};
		for (int k = 0; k < 2; k++)
			if (e[k] > now &&
			    (r = ent_store_apply_bound_add(c, e[k], customer, feature)))
				return r;
	}
	int64_t ended = ws->src.ended_at;
	if (ended > now && (r = ent_store_apply_bound_add(c, ended, customer, feature)))
		return r;
	int64_t end = period_end_of(&u);
	if (end && end > now && (r = ent_store_apply_bound_add(c, end, customer, feature)))
		return r;
	return 0;
}

int ent_store_apply_recompute_all(struct ent_actx *c, const struct ent_strset *customers,
				  const struct ent_strset *features, int64_t now)
{
	for (size_t i = 0; i < customers->n; i++)
		for (size_t j = 0; j < features->n; j++) {
			int r = ent_store_apply_recompute(c, customers->v[i], features->v[j], now);
			if (r)
				return r;
		}
	return 0;
}

static int collect_agg_feature(struct ent_actx *c, void *ctx, struct ent_str key,
			       struct ent_str val)
{
	struct ent_str cu, fe;
	if (!ent_store_key_split(key, &cu, &fe))
		return 0;
	return ent_store_strset_add(c, ctx, fe);
}

static int collect_key_suffix(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	return collect_agg_feature(c, ctx, key, val);
}

int ent_store_apply_recompute_customer(struct ent_actx *c, struct ent_str customer, int64_t now)
{
	struct ent_key prefix;
	struct ent_str empty = {"", 0};
	if (ent_store_key_make(&prefix, customer, &empty))
		return 0;
	struct ent_strset features = {0};
	struct ent_str p = {prefix.b, prefix.len};
	int r = ent_store_apply_scan(c, ENT_T_AGG, p, collect_agg_feature, &features);
	if (!r)
		r = ent_store_apply_scan(c, ENT_T_OVERRIDES, p, collect_key_suffix, &features);
	if (r)
		return r;
	ent_store_strset_uniq(&features);
	for (size_t i = 0; i < features.n && !r; i++)
		r = ent_store_apply_recompute(c, customer, features.v[i], now);
	return r;
}

int ent_store_apply_usage_write(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
				int64_t period_start, int64_t used)
{
	struct ent_key key;
	if (ent_store_key_make(&key, customer, &feature))
		return -ENT_EINVAL;
	struct ent_str skey = {key.b, key.len};
	uint8_t b[16];
	ent_store_le64_put(b, (uint64_t)period_start);
	ent_store_le64_put(b + 8, (uint64_t)used);
	int r = ent_store_apply_put(c, ENT_T_USAGE, skey, b, 16);
	if (r)
		return r;
	MDB_val v;
	r = ent_store_apply_get(c, ENT_T_AGG, skey, &v);
	if (r == -ENT_ENOTFOUND)
		return 0;
	if (r)
		return r;
	struct ent_usage_state old;
	if (v.mv_size > sizeof(c->ws->rec) ||
	    ent_store_record_header(v.mv_data, v.mv_size, &old) < 0)
		return -ENT_ECORRUPT;
	/* Patched in place: only the two usage fields of the header change. */
	size_t len = v.mv_size;
	memcpy(c->ws->rec, v.mv_data, len);
	ent_store_record_set_usage(c->ws->rec, period_start, used);
	ent_store_record_reseal(c->ws->rec, len);
	if ((r = ent_store_apply_put(c, ENT_T_AGG, skey, c->ws->rec, len)))
		return r;
	struct ent_usage_state nu = old;
	nu.period_start = period_start;
	nu.used = used;
	int64_t old_end = period_end_of(&old), new_end = period_end_of(&nu);
	if (old_end != new_end) {
		if (old_end && (r = bound_del(c, old_end, &key)))
			return r;
		if (new_end && new_end > c->at &&
		    (r = ent_store_apply_bound_add(c, new_end, customer, feature)))
			return r;
	}
	return 0;
}

int ent_store_apply_decide(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			   int64_t quantity, int64_t t, struct ent_usage_state *u,
			   struct ent_decision *d)
{
	memset(u, 0, sizeof(*u));
	struct ent_key key;
	MDB_val v;
	int r = ent_store_key_make(&key, customer, &feature)
			? -ENT_ENOTFOUND
			: ent_store_apply_get(c, ENT_T_AGG, (struct ent_str){key.b, key.len}, &v);
	if (r == 0) {
		r = ent_store_record_decode(v.mv_data, v.mv_size, t, u, &c->ws->seg);
		if (r)
			return r;
		ent_model_decide(u, &c->ws->seg, quantity, t, d);
		return 0;
	}
	if (r != -ENT_ENOTFOUND)
		return r;
	r = ent_store_apply_get(c, ENT_T_FEATURES, feature, &v);
	if (r == -ENT_ENOTFOUND) {
		ent_model_decide_missing(ENT_R_UNKNOWN_FEATURE, ENT_FT_UNSPECIFIED, d);
		return 0;
	}
	if (r)
		return r;
	uint8_t type = v.mv_size ? ((const uint8_t *)v.mv_data)[0] : 0;
	r = ent_store_apply_get(c, ENT_T_CUSTOMERS, customer, &v);
	if (r && r != -ENT_ENOTFOUND)
		return r;
	ent_model_decide_missing(r ? ENT_R_UNKNOWN_CUSTOMER : ENT_R_NOT_ENTITLED, type, d);
	return 0;
}

int ent_store_apply_period_at(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      int64_t t, int64_t *start, int64_t *end, struct ent_usage_state *u)
{
	memset(u, 0, sizeof(*u));
	struct ent_key key;
	MDB_val v;
	int r = ent_store_key_make(&key, customer, &feature)
			? -ENT_ENOTFOUND
			: ent_store_apply_get(c, ENT_T_AGG, (struct ent_str){key.b, key.len}, &v);
	if (r == 0) {
		if ((r = ent_store_record_decode(v.mv_data, v.mv_size, t, u, &c->ws->seg)))
			return r;
		ent_model_period(c->ws->seg.reset, c->ws->seg.anchor, t, start, end);
		return 0;
	}
	if (r != -ENT_ENOTFOUND)
		return r;
	/* No aggregate: one never-resetting period, the usage row's counter. */
	u->reset = ENT_RESET_NEVER;
	u->period_start = ENT_T_MIN;
	ent_model_period(ENT_RESET_NEVER, 0, t, start, end);
	r = ent_store_apply_get(c, ENT_T_USAGE, (struct ent_str){key.b, key.len}, &v);
	if (r == 0 && v.mv_size == 16) {
		u->period_start = (int64_t)ent_store_le64_get(v.mv_data);
		u->used = (int64_t)ent_store_le64_get((const uint8_t *)v.mv_data + 8);
	}
	return r == -ENT_ENOTFOUND ? 0 : r;
}

/* ---- cleanup tombstones -------------------------------------------------------------------- */

/*
 * Would \a src grant the feature inside its window? Asked of the model with the source alone
 * and its window opened, so the rule is the one that explains a "no" (docs/semantics.md 6b):
 * an enabled grant, or an override that switches the feature on or sets a quota.
 */
static bool grants_alone(struct ent_wscratch *ws, const struct ent_source *src)
{
	struct ent_sources *one = &ws->one;
	one->feature = ws->src.feature;
	one->n = 1;
	one->ended_at = 0;
	one->src[0] = *src;
	one->src[0].active_from = 0;
	one->src[0].expires_at = 0;
	return ent_model_aggregate(one, 0, &ws->seg) == 0 && ws->seg.enabled;
}

int ent_store_apply_ended_put(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      int64_t end, bool grants)
{
	struct ent_key key;
	if (ent_store_key_make(&key, customer, &feature))
		return -ENT_EINVAL;
	struct ent_str skey = {key.b, key.len};
	MDB_val v;
	int r = ent_store_apply_get(c, ENT_T_ENDED, skey, &v);
	if (r && r != -ENT_ENOTFOUND)
		return r;
	bool existed = r == 0;
	if (existed && (v.mv_size == 8 || v.mv_size == 9)) {
		/* A granting tombstone stays granting; the later end is kept. */
		bool had_grants = v.mv_size == 8;
		int64_t had = (int64_t)ent_store_le64_get(v.mv_data);
		if (had_grants && !grants)
			return 0;
		if (had_grants == grants && had >= end)
			return 0;
		/* A keep-only row becomes granting with the granting end. */
	}
	uint8_t b[9];
	ent_store_le64_put(b, (uint64_t)end);
	b[8] = 0;
	if ((r = ent_store_apply_put(c, ENT_T_ENDED, skey, b, grants ? 8 : 9)))
		return r;
	/* The tombstone keeps the customer known, like a subscription or an override. */
	return existed ? 0 : ent_store_apply_customer_ref(c, customer, 1);
}

int ent_store_apply_tombstone(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			      const struct ent_str *sub_id)
{
	struct ent_wscratch *ws = c->ws;
	ent_arena_reset(&ws->tmp);
	int r = ent_store_gather(c->s, c->txn, customer, feature, &ws->tmp, &ws->src);
	if (r == -ENT_ENOTFOUND)
		return 0; /* the feature is gone: nothing to answer for */
	if (r)
		return r;
	/*
	 * Sources that ended by now and would have granted make the answer EXPIRED before the
	 * cleanup, so they leave a granting tombstone (their latest end). A disabled or
	 * values-only source never explained a "no"; it leaves one that only keeps the record,
	 * so the answer (NOT_ENTITLED with the feature's usage) stays what it was too.
	 */
	int64_t end = 0, any = 0;
	for (uint32_t i = 0; i < ws->src.n; i++) {
		const struct ent_source *src = &ws->src.src[i];
		bool mine = sub_id ? src->type != ENT_SRC_OVERRIDE &&
					     ent_str_eq(src->subscription_id, *sub_id)
				   : src->type == ENT_SRC_OVERRIDE;
		if (!mine || src->expires_at == 0 || src->expires_at > c->at)
			continue;
		if (src->expires_at > any)
			any = src->expires_at;
		if (src->expires_at > end && grants_alone(ws, src))
			end = src->expires_at;
	}
	if (end)
		return ent_store_apply_ended_put(c, customer, feature, end, true);
	return any ? ent_store_apply_ended_put(c, customer, feature, any, false) : 0;
}

/*
 * Import of a cleanup tombstone: set as exported (the larger of it and a stored one), so a
 * restored database answers EXPIRED where the exported one did. The feature must exist.
 */
static int apply_set_ended(struct ent_actx *c, const Ent__V1__EndedState *e)
{
	int r;
	bool whole = !e->feature_code || !*e->feature_code; /* the customer's own marker */
	if ((r = ent_str_check_id(ent_str_c(e->customer_id), ENT_MAX_CUSTOMER_ID, "customer_id",
				  c->err)) ||
	    (!whole && (r = ent_str_check_id(ent_str_c(e->feature_code), ENT_MAX_CODE,
					     "feature_code", c->err))))
		return r;
	if (e->ended_at <= 0)
		return ent_err_set(c->err, ENT_EINVAL, "ended_at: must be > 0");
	if ((r = ent_store_apply_check_time(c, e->ended_at, "ended_at")))
		return r;
	struct ent_str customer = ent_str_c(e->customer_id),
		       feature = whole ? (struct ent_str){"", 0} : ent_str_c(e->feature_code);
	MDB_val v;
	if (!whole) {
		r = ent_store_apply_get(c, ENT_T_FEATURES, feature, &v);
		if (r == -ENT_ENOTFOUND)
			return ent_err_set(c->err, ENT_EINVAL, "feature_code: unknown feature '%s'",
					   e->feature_code);
		if (r)
			return r;
	}
	if ((r = ent_store_apply_ended_put(c, customer, feature, e->ended_at,
					   !whole && !e->no_grant)))
		return r;
	return whole ? 0 : ent_store_apply_recompute(c, customer, feature, c->at);
}

/* ---- apply ------------------------------------------------------------------------------- */

static int dispatch(struct ent_actx *c)
{
	const Ent__V1__Event *ev = c->ev;
	switch (ev->kind_case) {
	case ENT__V1__EVENT__KIND_UPSERT_FEATURE:
		return ent_store_apply_upsert_feature(c, ev->upsert_feature);
	case ENT__V1__EVENT__KIND_DELETE_FEATURE:
		return ent_store_apply_delete_feature(c, ev->delete_feature);
	case ENT__V1__EVENT__KIND_SET_PLAN:
		return ent_store_apply_set_entitlements(c, ENT_T_PLANS, ev->set_plan, false);
	case ENT__V1__EVENT__KIND_PATCH_PLAN:
		return ent_store_apply_set_entitlements(c, ENT_T_PLANS, ev->patch_plan, true);
	case ENT__V1__EVENT__KIND_DELETE_PLAN:
		return ent_store_apply_delete_entitlements(c, ENT_T_PLANS, ev->delete_plan);
	case ENT__V1__EVENT__KIND_SET_ADDON:
		return ent_store_apply_set_entitlements(c, ENT_T_ADDONS, ev->set_addon, false);
	case ENT__V1__EVENT__KIND_PATCH_ADDON:
		return ent_store_apply_set_entitlements(c, ENT_T_ADDONS, ev->patch_addon, true);
	case ENT__V1__EVENT__KIND_DELETE_ADDON:
		return ent_store_apply_delete_entitlements(c, ENT_T_ADDONS, ev->delete_addon);
	case ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION:
		return ent_store_apply_upsert_subscription(c, ev->upsert_subscription);
	case ENT__V1__EVENT__KIND_CANCEL_SUBSCRIPTION:
		return ent_store_apply_cancel_subscription(c, ev->cancel_subscription);
	case ENT__V1__EVENT__KIND_SET_OVERRIDE:
		return ent_store_apply_set_override(c, ev->set_override);
	case ENT__V1__EVENT__KIND_UPDATE_OVERRIDE:
		return ent_store_apply_update_override(c, ev->update_override);
	case ENT__V1__EVENT__KIND_DELETE_OVERRIDE:
		return ent_store_apply_delete_override(c, ev->delete_override);
	case ENT__V1__EVENT__KIND_REPORT_USAGE:
		return ent_store_apply_report_usage(c, ev->report_usage);
	case ENT__V1__EVENT__KIND_CONSUME:
		return ent_store_apply_consume(c, ev->consume);
	case ENT__V1__EVENT__KIND_TICK:
		return ent_store_apply_tick(c, ev->tick);
	case ENT__V1__EVENT__KIND_WIPE:
		return ent_store_apply_wipe(c);
	case ENT__V1__EVENT__KIND_SET_USAGE:
		return ent_store_apply_set_usage(c, ev->set_usage);
	case ENT__V1__EVENT__KIND_SET_ENDED:
		return apply_set_ended(c, ev->set_ended);
	case ENT__V1__EVENT__KIND_REPORT_USAGE_BATCH:
		return ent_store_apply_report_usage_batch(c, ev->report_usage_batch);
	default:
		return ent_err_set(c->err, ENT_EINVAL, "event: unknown or missing kind (%d)",
				   (int)ev->kind_case);
	}
}

/* Message bodies of the oneof may be NULL in a hand-built event: refuse them up front. */
static bool body_present(const Ent__V1__Event *ev)
{
	switch (ev->kind_case) {
	case ENT__V1__EVENT__KIND_DELETE_FEATURE:
	case ENT__V1__EVENT__KIND_DELETE_PLAN:
	case ENT__V1__EVENT__KIND_DELETE_ADDON:
		return ev->delete_feature != NULL; /* the union's string member */
	case ENT__V1__EVENT__KIND__NOT_SET:
		return true; /* dispatch names the problem */
	default:
		return ev->upsert_feature != NULL; /* the union's message pointer */
	}
}

/*
 * One event. nested: in a child transaction of its own, so a failing event leaves nothing and
 * the others of the group commit (ent_store_apply). Direct: straight into the group's transaction
 * (ent_store_apply_direct), without the child's cost; a failing event may leave partial writes
 * there, so its caller aborts the whole transaction and applies the group again with that event
 * nested. Either way the same writes reach the same transaction when the event succeeds.
 */
static int apply_one(struct ent_wtxn *w, const Ent__V1__Event *ev, struct ent_arena *arena,
		     struct ent_apply_result *res, bool nested)
{
	memset(res, 0, sizeof(*res));
	if (!w || !w->txn)
		return ent_err_set(&res->err, ENT_EINVAL, "no write transaction");
	if (!ev || !body_present(ev))
		return ent_err_set(&res->err, ENT_EINVAL, "event: missing body");
	struct ent_store *s = w->s;
	struct ent_actx c = {
		.s = s,
		.ws = s->ws,
		.ev = ev,
		.at = ev->at,
		.arena = arena,
		.res = res,
		.err = &res->err,
	};
	ent_pb_allocator(&c.alloc, arena);
	int rc;
	if (nested) {
		rc = mdb_txn_begin(s->env, w->txn, 0, &c.txn);
		if (rc) {
			int r = ent_store_mdb_err(rc);
			return ent_err_set(&res->err, -r, "begin: %s", mdb_strerror(rc));
		}
	} else {
		c.txn = w->txn;
	}
	int r = dispatch(&c);
	uint64_t seq = w->seq + 1;
	/* Direct: meta "seq" is written once for the group (ent_store_wtxn_set_seq before commit).
	 */
	if (!r && nested) {
		uint8_t b[8];
		ent_store_le64_put(b, seq);
		r = ent_store_apply_put(&c, ENT_T_META, ent_str_c("seq"), b, 8);
	}
	if (nested) {
		if (!r) {
			rc = mdb_txn_commit(c.txn);
			if (rc)
				r = ent_store_mdb_err(rc);
		} else {
			mdb_txn_abort(c.txn);
		}
	}
	if (r) {
		struct ent_err keep = res->err;
		memset(res, 0, sizeof(*res));
		res->err = keep;
		if (!res->err.code || res->err.code != -r)
			ent_err_set(&res->err, -r, "%s%s%s", ent_err_strerror(r),
				    keep.code ? ": " : "", keep.code ? keep.msg : "");
		return r;
	}
	w->seq = seq;
	res->seq = seq;
	return 0;
}

int ent_store_apply(struct ent_wtxn *w, const Ent__V1__Event *ev, struct ent_arena *arena,
		    struct ent_apply_result *res)
{
	return apply_one(w, ev, arena, res, true);
}

int ent_store_apply_direct(struct ent_wtxn *w, const Ent__V1__Event *ev, struct ent_arena *arena,
			   struct ent_apply_result *res)
{
	return apply_one(w, ev, arena, res, false);
}

void ent_store_wtxn_expect_seq(struct ent_wtxn *w, uint64_t seq)
{
	w->seq = seq;
}
