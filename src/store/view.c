/*
 * Read views: one read transaction handle per view, renewed for a lookup and reset right
 * after, so an idle thread pins no snapshot (long-lived readers would keep old pages alive and
 * grow the file). Renew and reset only touch the reader slot: no allocation, no lock.
 */
#include <stdlib.h>

#include "store/impl.h"

int ent_store_view_new(struct ent_store *s, struct ent_view **out)
{
	struct ent_view *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENT_ENOMEM;
	v->s = s;
	v->walk_low_after = ENT_WALK_LOW_AFTER;
	/* Begin once to get a reader slot and the handle, then park it reset until first use. */
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &v->txn);
	if (rc) {
		free(v);
		return ent_store_mdb_err(rc);
	}
	mdb_txn_reset(v->txn);
	*out = v;
	return 0;
}

void ent_store_view_free(struct ent_view *v)
{
	if (!v)
		return;
	for (int t = 0; t < ENT_T__COUNT; t++)
		if (v->cur[t])
			mdb_cursor_close(v->cur[t]);
	mdb_txn_abort(v->txn);
	ent_store_walk_cache_free(v->walk_cache);
	free(v);
}

int ent_store_view_begin(struct ent_view *v)
{
	if (v->active)
		mdb_txn_reset(v->txn);
	v->active = false;
	int rc = mdb_txn_renew(v->txn);
	if (rc)
		return ent_store_mdb_err(rc);
	v->active = true;
	/* seq changes only with a commit, and a commit makes a new snapshot id: read it once per
	   snapshot rather than on every renewal (a lookup in meta per check otherwise). */
	size_t id = mdb_txn_id(v->txn);
	if (id && id == v->seq_txnid)
		return 0;
	int r = ent_store_meta_u64(v->s, v->txn, "seq", &v->seq);
	if (r) {
		mdb_txn_reset(v->txn);
		v->active = false;
		v->seq_txnid = 0;
		return r;
	}
	v->seq_txnid = id;
	return 0;
}

void ent_store_view_end(struct ent_view *v)
{
	if (v->active)
		mdb_txn_reset(v->txn);
	v->active = false;
}

uint64_t ent_store_view_seq(const struct ent_view *v)
{
	return v->seq;
}

int ent_store_view_get(struct ent_view *v, enum ent_table t, struct ent_str key,
		       struct ent_str *val)
{
	if (!v->active || (unsigned)t >= ENT_T__COUNT)
		return -ENT_EINVAL;
	if (key.len == 0 || key.len >= ENT_KEY_MAX || !ent_store_has(v->s, t))
		return -ENT_ENOTFOUND;
	MDB_val k = {key.len, (void *)key.p}, d;
	int rc = mdb_get(v->txn, v->s->dbi[t], &k, &d);
	if (rc)
		return ent_store_mdb_err(rc);
	*val = ent_store_val_str(d);
	return 0;
}

static bool has_prefix(MDB_val k, struct ent_str prefix)
{
	return k.mv_size >= prefix.len && memcmp(k.mv_data, prefix.p, prefix.len) == 0;
}

int ent_store_view_scan(struct ent_view *v, enum ent_table t, struct ent_str prefix,
			struct ent_str after, size_t limit, ent_kv_cb cb, void *ctx)
{
	if (!v->active || (unsigned)t >= ENT_T__COUNT)
		return -ENT_EINVAL;
	if (!ent_store_has(v->s, t))
		return 0; /* a table this (older, read-only) database does not have is empty */
	/*
	 * Read-only cursors are kept per view and table and renewed, so a scan allocates
	 * nothing in steady state; a nested scan of the same table gets its own cursor.
	 */
	MDB_cursor *cur;
	int rc;
	bool cached = !(v->cur_busy & (1u << t));
	if (cached && v->cur[t]) {
		cur = v->cur[t];
		rc = mdb_cursor_renew(v->txn, cur);
	} else {
		rc = mdb_cursor_open(v->txn, v->s->dbi[t], &cur);
		if (!rc && cached)
			v->cur[t] = cur;
	}
	if (rc)
		return ent_store_mdb_err(rc);
	if (cached)
		v->cur_busy |= 1u << t;
	MDB_val k, d;
	/* Position at the first key >= max(prefix, after); skip \a after itself. */
	struct ent_str start = ent_str_cmp(after, prefix) > 0 ? after : prefix;
	if (start.len) {
		k = (MDB_val){start.len, (void *)start.p};
		rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
	}
	bool skip_after = after.len > 0;
	size_t n = 0;
	int r = 0;
	while (rc == 0) {
		if (!has_prefix(k, prefix))
			break;
		if (skip_after && ent_str_eq(ent_store_val_str(k), after)) {
			/* Every value of \a after (DUPSORT) was on the previous page. */
			rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT_NODUP);
			continue;
		}
		skip_after = false;
		if (limit && n >= limit)
			break;
		r = cb(ctx, ent_store_val_str(k), ent_store_val_str(d));
		if (r)
			break;
		n++;
		rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
	}
	if (cached)
		v->cur_busy &= ~(1u << t);
	else
		mdb_cursor_close(cur);
	if (r)
		return r;
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}
