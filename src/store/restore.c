/*
 * Restore in place: the tables of another entd database (a fetched fleet snapshot) replace
 * every table of the live store inside one write transaction of the writer (docs/fleet.md,
 * "Re-bootstrap in place").
 *
 * Why a table copy in the live environment rather than swapping data.mdb under the daemon:
 * readers hold MDB_NOTLS read transactions on the live map without any lock (the check hot
 * path), so the file cannot be replaced or the environment reopened while they run. One write
 * transaction gives readers exactly what they need: until the commit every new read snapshot
 * is the old state, from the commit on it is the new one, never a mix; and a crash or kill -9
 * at any point leaves either the old or the new database (LMDB's commit is the only switch).
 *
 * Cost: the transaction holds the old pages (freed only once it commits) and writes the new
 * ones, so the map must hold the live data plus the snapshot at once; checked before anything
 * is written, since the map cannot be grown while readers run (mdb_env_set_mapsize needs no
 * transaction active in the process).
 */
#include <stdio.h>

#include "store/impl.h"

/* Slack over "live pages + snapshot pages": branch pages rebuilt, the free list, spilled pages. */
#define RESTORE_SLACK_PAGES 4096

static int used_bytes(MDB_env *env, uint64_t *used, uint64_t *map, unsigned *psize)
{
	MDB_envinfo info;
	MDB_stat st;
	int rc = mdb_env_info(env, &info);
	if (!rc)
		rc = mdb_env_stat(env, &st);
	if (rc)
		return ent_store_mdb_err(rc);
	*used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	*map = info.me_mapsize;
	*psize = st.ms_psize;
	return 0;
}

/*
 * Copy every key/value of table \a t from \a stxn into the (emptied) table of \a w. The source
 * is read in key order (and value order within a DUPSORT key), which is the order LMDB stores
 * them in, so MDB_APPEND / MDB_APPENDDUP fill the new pages completely and skip the searches.
 */
static int copy_table(struct ent_wtxn *w, struct ent_store *src, MDB_txn *stxn, enum ent_table t,
		      uint64_t *entries)
{
	MDB_cursor *rc_cur, *wc_cur;
	int rc = mdb_cursor_open(stxn, src->dbi[t], &rc_cur);
	if (rc)
		return ent_store_mdb_err(rc);
	rc = mdb_cursor_open(w->txn, w->s->dbi[t], &wc_cur);
	if (rc) {
		mdb_cursor_close(rc_cur);
		return ent_store_mdb_err(rc);
	}
	unsigned flags = 0;
	mdb_dbi_flags(w->txn, w->s->dbi[t], &flags);
	bool dup = (flags & MDB_DUPSORT) != 0;
	MDB_val k, v, prev = {0, NULL};
	for (rc = mdb_cursor_get(rc_cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(rc_cur, &k, &v, MDB_NEXT)) {
		unsigned put = MDB_APPEND;
		if (dup && prev.mv_data && prev.mv_size == k.mv_size &&
		    !memcmp(prev.mv_data, k.mv_data, k.mv_size))
			put = MDB_APPENDDUP;
		int prc = mdb_cursor_put(wc_cur, &k, &v, put);
		if (prc) {
			rc = prc;
			break;
		}
		/* The source's pages stay mapped for the whole read txn: k may be kept. */
		prev = k;
		(*entries)++;
	}
	mdb_cursor_close(wc_cur);
	mdb_cursor_close(rc_cur);
	return rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}

int ent_store_restore(struct ent_wtxn *w, const char *src_dir, struct ent_store_restore_stats *out,
		      struct ent_err *err)
{
	struct ent_err local;
	if (!err)
		err = &local;
	if (!w || !w->txn)
		return ent_err_set(err, ENT_EINVAL, "restore: no write transaction");
	if (!src_dir || !*src_dir)
		return ent_err_set(err, ENT_EINVAL, "restore: source directory required");
	struct ent_store_restore_stats st = {0};
	struct ent_store *src;
	struct ent_store_opts so = {.path = src_dir, .read_only = true, .no_walk = true};
	int r = ent_store_open(&so, &src, err);
	if (r)
		return r;

	uint64_t live_used, live_map, src_used, src_map;
	unsigned psize, spsize;
	if ((r = used_bytes(w->s->env, &live_used, &live_map, &psize)) ||
	    (r = used_bytes(src->env, &src_used, &src_map, &spsize))) {
		ent_store_close(src);
		return ent_err_set(err, -r, "restore: cannot read the environments' sizes");
	}
	st.src_bytes = src_used;
	uint64_t need = live_used + src_used + (uint64_t)RESTORE_SLACK_PAGES * psize;
	if (need > live_map) {
		ent_store_close(src);
		return ent_err_set(
			err, ENT_EFULL,
			"db.map_size: replacing the database in place needs about %llu "
			"bytes of map (the live data %llu and the snapshot %llu are both "
			"held until the swap commits); the map is %llu: raise "
			"db.map_size",
			(unsigned long long)need, (unsigned long long)live_used,
			(unsigned long long)src_used, (unsigned long long)live_map);
	}

	MDB_txn *stxn;
	int rc = mdb_txn_begin(src->env, NULL, MDB_RDONLY, &stxn);
	if (rc) {
		ent_store_close(src);
		return ent_err_set(err, -ent_store_mdb_err(rc), "restore: %s: %s", src_dir,
				   mdb_strerror(rc));
	}
	for (int t = 0; t < ENT_T__COUNT && !r; t++) {
		/* Emptied, not deleted: the DBI handles stay valid for every reader. */
		rc = mdb_drop(w->txn, w->s->dbi[t], 0);
		if (rc) {
			r = ent_store_mdb_err(rc);
			ent_err_set(err, -r, "restore: emptying table '%s': %s",
				    ent_store_table_name(t), mdb_strerror(rc));
			break;
		}
		if (src->absent & (1u << t))
			continue; /* an older snapshot without the table: it stays empty */
		r = copy_table(w, src, stxn, t, &st.entries);
		if (r)
			ent_err_set(err, -r, "restore: copying table '%s': %s",
				    ent_store_table_name(t), ent_err_strerror(r));
	}
	/*
	 * The meta rows came with the tables ("seq", "fleet_stream", "schema", the idempotency
	 * sweep's progress); "last_commit" is this node's own and ent_store_wtxn_commit rewrites
	 * it. The transaction's sequence follows the copied "seq".
	 */
	if (!r && (r = ent_store_meta_u64(w->s, w->txn, "seq", &st.seq)))
		ent_err_set(err, -r, "restore: meta 'seq' of the copy is unreadable");
	mdb_txn_abort(stxn);
	ent_store_close(src);
	if (r)
		return r;
	w->seq = st.seq;
	if (out)
		*out = st;
	return 0;
}
