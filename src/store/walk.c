/*
 * Batched lookups: ent_store_view_check_batch.
 *
 * On a large data set one mdb_get is a chain of dependent misses: five pages deep for 13.7M
 * aggregates, each page a TLB miss and a few cache misses, about 2 us on the machines we
 * measured (docs/performance.md). LMDB walks one key at a time, so a batch pays that chain
 * once per check. Here the walks of a group of keys advance level by level together and each
 * child page is prefetched as soon as its number is known, so the misses of the group overlap.
 *
 * The walk reads LMDB 0.9's page format directly (mdb.c: MDB_page, MDB_node; stable since
 * 0.9.0 and unchanged in 0.9.x) inside the read transaction's snapshot, whose pages cannot be
 * reused while the transaction is live. It trusts nothing it reads:
 *  - the tree (root, depth, flags) is the snapshot's record of the table, read with mdb_get
 *    from the main DB; the map's base address is derived from where that record lies (its
 *    page header names its page number), and only when LMDB's page size is the OS page size;
 *  - every page visited must carry its own page number and the expected type, its node
 *    offsets and sizes must fit in the page, and page numbers must be below the last page;
 *  - a hit is a node whose key equals ours byte for byte, in a verified leaf of the snapshot;
 *  - a miss, anything unexpected (flags, overflow values, a key compare other than memcmp)
 *    falls back to mdb_get, so a walk can only be faster, never answer differently.
 *
 * The branch levels go through the view's cache of branch pages (walk_cache.c) where it has
 * them; the leaves are always searched on the page.
 */

#include <unistd.h>

#include "store/walk.h"

/* Why the walk is not used; the start log and ent_store_walk name these. */
#define WHY_CONFIG  "turned off by configuration (db.batched_walk: false)"
#define WHY_VERSION "the LMDB library loaded is not 0.9.x, whose page layout the walk reads"
#define WHY_PSIZE   "LMDB's page size is not the OS page size"
#define WHY_ENV	    "cannot read the environment's page size and last page"
#define WHY_RECORD  "the agg table's record in the main DB is missing or not LMDB 0.9's MDB_db"
#define WHY_FLAGS   "the agg table has key flags (not plain memcmp keys)"
#define WHY_BASE    "the map's base address does not follow from the agg table's record"

/* The snapshot \a txn's tree of the agg table; NULL, or why the walk cannot be used. */
static const char *walk_setup(struct ent_store *s, MDB_txn *txn, struct ent_walk_tree *t)
{
	MDB_stat st;
	MDB_envinfo info;
	MDB_dbi main_dbi;
	int major, minor;
	/* The page format read here is LMDB 0.9's (the library loaded, not only the header). */
	mdb_version(&major, &minor, NULL);
	if (major != 0 || minor != 9)
		return WHY_VERSION;
	if (mdb_env_stat(s->env, &st) || mdb_env_info(s->env, &info) ||
	    mdb_dbi_open(txn, NULL, 0, &main_dbi))
		return WHY_ENV;
	if ((long)st.ms_psize != sysconf(_SC_PAGESIZE))
		return WHY_PSIZE;
	/* The table's name in the main DB, as env.c opens it. */
	MDB_val k = {3, (void *)"agg"}, rec;
	if (mdb_get(txn, main_dbi, &k, &rec) || rec.mv_size != WALK_DB_SIZE)
		return WHY_RECORD;
	const uint8_t *r = rec.mv_data;
	/* Plain memcmp keys only (no REVERSEKEY, INTEGERKEY, DUPSORT...). */
	if (rd16(r + WALK_DB_FLAGS) != 0)
		return WHY_FLAGS;
	t->psize = st.ms_psize;
	t->depth = rd16(r + WALK_DB_DEPTH);
	t->root = rd64(r + WALK_DB_ROOT);
	t->last_pgno = info.me_last_pgno;
	t->txnid = mdb_txn_id(txn);
	const uint8_t *page =
		(const uint8_t *)((uintptr_t)rec.mv_data & ~(uintptr_t)(t->psize - 1));
	uint64_t pgno = rd64(page);
	if (pgno > t->last_pgno || (uintptr_t)page < pgno * t->psize)
		return WHY_BASE;
	t->base = page - pgno * t->psize;
	return t->depth == 0 || t->root <= t->last_pgno ? NULL : WHY_BASE;
}

/* Publish the walk's state for ent_store_walk; written only when it changes. */
static void walk_publish(struct ent_store *s, const char *why)
{
	if (atomic_load_explicit(&s->walk_why, memory_order_relaxed) != why)
		atomic_store_explicit(&s->walk_why, why, memory_order_relaxed);
}

void ent_store_walk_probe(struct ent_store *s)
{
	const char *why = WHY_CONFIG;
	if (!s->walk_off) {
		MDB_txn *txn;
		struct ent_walk_tree t;
		why = WHY_ENV;
		if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
			why = walk_setup(s, txn, &t);
			mdb_txn_abort(txn);
		}
	}
	atomic_store_explicit(&s->walk_why, why, memory_order_relaxed);
}

const char *ent_store_lmdb_version(void)
{
	return mdb_version(NULL, NULL, NULL);
}

bool ent_store_walk(struct ent_store *s, const char **why)
{
	const char *w = atomic_load_explicit(&s->walk_why, memory_order_relaxed);
	if (why)
		*why = w;
	return w == NULL;
}

/* The snapshot's tree, read once per snapshot: batches in one snapshot share it. */
static bool walk_tree_of(struct ent_view *v, struct ent_walk_tree *t)
{
	MDB_envinfo info;
	if (mdb_env_info(v->s->env, &info))
		return false;
	uint64_t txnid = mdb_txn_id(v->txn);
	/* A new map size may mean a new map address: the tree is read again then too. */
	if (v->walk_tree_txnid != txnid || v->walk_tree_mapsize != info.me_mapsize) {
		const char *why = walk_setup(v->s, v->txn, &v->walk_tree);
		v->walk_tree_ok = why == NULL;
		v->walk_tree_txnid = txnid;
		v->walk_tree_mapsize = info.me_mapsize;
		walk_publish(v->s, why);
	}
	*t = v->walk_tree;
	return v->walk_tree_ok;
}

/*
 * memcmp order of \a k against a node's key, inline: keys are a few dozen bytes, and a call
 * through the PLT per probe cost more than the comparison (docs/performance.md). Eight bytes
 * at a time; the tail is the last eight bytes of the common part, overlapping what is already
 * known equal, so a key of any length >= 8 takes no byte loop.
 */
static inline int order64(uint64_t x, uint64_t y)
{
	x = __builtin_bswap64(x);
	y = __builtin_bswap64(y);
	return (x > y) - (x < y);
}

static inline int walk_cmp(const struct ent_key *k, const uint8_t *node)
{
	const uint8_t *a = (const uint8_t *)k->b, *b = node + WALK_NODEHDR;
	unsigned bl = rd16(node + 6), n = k->len < bl ? k->len : bl, i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x = rd64(a + i), y = rd64(b + i);
		if (x != y)
			return order64(x, y);
	}
	if (i < n) {
		if (n >= 8) {
			uint64_t x = rd64(a + n - 8), y = rd64(b + n - 8);
			if (x != y)
				return order64(x, y);
		} else {
			for (; i < n; i++)
				if (a[i] != b[i])
					return a[i] < b[i] ? -1 : 1;
		}
	}
	return (k->len > bl) - (k->len < bl);
}

/* Start the search of \a w in its page (branch: nodes 1..n-1, node 0 being the lowest). */
static void walk_start(struct walk_key *w, bool branch)
{
	int n = (rd16(w->page + 12) - WALK_PAGEHDR) >> 1;
	w->lo = branch ? 1 : 0;
	w->hi = n - 1;
	w->at = 0;
}

/* A found leaf node's value, or -1 when it is not a plain value in the page. */
static int walk_value(const struct ent_walk_tree *t, struct walk_key *w)
{
	const uint8_t *node = w->node;
	size_t dsize = rd16(node) | (size_t)rd16(node + 2) << 16;
	size_t doff = (size_t)(node - w->page) + WALK_NODEHDR + rd16(node + 6);
	/* Values on overflow pages (records over ~2 KB) and sub-databases go the ordinary way. */
	if (rd16(node + 4) != 0 || doff + dsize > t->psize)
		return -1;
	w->val.mv_data = (void *)(w->page + doff);
	w->val.mv_size = dsize;
	return 1;
}

/*
 * Search every walking key of \a w[0..n) in its current page, in lockstep rounds. The keys
 * still searching are kept in a compact list, so a round touches only those.
 */
static void walk_search(const struct ent_walk_tree *t, struct walk_key *w, size_t n, bool branch)
{
	uint8_t act[WALK_GROUP];
	size_t na = 0;
	for (size_t j = 0; j < n; j++)
		if (w[j].state == 1 && !w[j].routed) {
			if (!w[j].started)
				walk_start(&w[j], branch);
			w[j].started = false;
			act[na++] = (uint8_t)j;
		}
	while (na) {
		size_t m = 0;
		for (size_t i = 0; i < na; i++) {
			struct walk_key *k = &w[act[i]];
			if (k->lo > k->hi) {
				if (!branch)
					k->state = 0; /* not in the leaf */
				continue;
			}
			k->mid = k->lo + (k->hi - k->lo) / 2;
			if (!(k->node = walk_node_at(t, k->page, (unsigned)k->mid))) {
				k->state = -1;
				continue;
			}
			__builtin_prefetch(k->node);
			act[m++] = act[i];
		}
		na = m;
		m = 0;
		for (size_t i = 0; i < na; i++) {
			struct walk_key *k = &w[act[i]];
			if (!walk_key_fits(t, k->page, k->node)) {
				k->state = -1;
				continue;
			}
			int c = walk_cmp(&k->key, k->node);
			if (c == 0) {
				if (branch)
					k->at = k->mid;
				else
					k->state = walk_value(t, k);
				continue;
			}
			/* Without branches: a search step's direction is a coin toss, and a
			   mispredicted branch per probe cost more than the probe (perf). */
			int gt = c > 0, mid = k->mid;
			k->lo = gt ? mid + 1 : k->lo;
			k->hi = gt ? k->hi : mid - 1;
			if (branch)
				k->at = gt ? mid : k->at;
			act[m++] = act[i];
		}
		na = m;
	}
}

void ent_store_walk_descend(const struct ent_walk_tree *t, struct walk_key *w, size_t n)
{
	uint64_t pgno[WALK_GROUP];
	bool cached = ent_store_walk_cached(t, 0);
	for (size_t j = 0; j < n; j++) {
		w[j].started = w[j].routed = w[j].keep = false;
		pgno[j] = t->root;
		if (w[j].state != 1 || cached)
			continue;
		if (!t->depth)
			w[j].state = 0; /* an empty table */
		else if (!(w[j].page = walk_page(t, t->root,
						 t->depth > 1 ? WALK_P_BRANCH : WALK_P_LEAF)))
			w[j].state = -1;
	}
	/* The branch levels: a level's pages are read at its start, unless the cache routes. */
	for (unsigned level = 0; level + 1 < t->depth; level++) {
		if (cached)
			ent_store_walk_route(t, w, n, pgno);
		walk_search(t, w, n, true);
		cached = ent_store_walk_cached(t, level + 1);
		for (size_t j = 0; j < n; j++) {
			if (w[j].state != 1)
				continue;
			if (!w[j].routed) {
				const uint8_t *node = walk_node(t, w[j].page, (unsigned)w[j].at);
				if (!node) {
					w[j].state = -1;
					continue;
				}
				if (w[j].keep)
					ent_store_walk_keep(t, w[j].page, pgno[j]);
				pgno[j] = walk_child(node);
				if (pgno[j] > t->last_pgno) {
					w[j].state = -1;
					continue;
				}
			}
			w[j].started = w[j].routed = w[j].keep = false;
			if (cached)
				ent_store_walk_cache_prefetch(t, pgno[j]);
			else
				walk_prefetch_page(t, pgno[j]);
		}
		if (cached)
			continue;
		unsigned type = level + 2 < t->depth ? WALK_P_BRANCH : WALK_P_LEAF;
		for (size_t j = 0; j < n; j++)
			if (w[j].state == 1 && !(w[j].page = walk_page(t, pgno[j], type)))
				w[j].state = -1;
	}
	if (t->depth)
		walk_search(t, w, n, false);
}

/* One group: walk every key down together, then decide in order. */
static int walk_group(struct ent_view *v, const struct ent_walk_tree *t, const struct ent_check *c,
		      size_t n, size_t first, ent_check_cb cb, void *ctx, size_t *bad,
		      struct ent_check_result *res)
{
	struct walk_key w[WALK_GROUP];
	for (size_t j = 0; j < n; j++)
		w[j].state = ent_store_check_key(&c[j], &w[j].key) ? 1 : -2;
	ent_store_walk_descend(t, w, n);
	for (size_t j = 0; j < n; j++)
		if (w[j].state == 1)
			__builtin_prefetch(w[j].val.mv_data);
	unsigned fallbacks = 0;
	int r = 0;
	for (size_t j = 0; j < n && !r; j++) {
		int rc = MDB_NOTFOUND;
		if (w[j].state == 1) {
			rc = 0;
		} else if (w[j].state != -2) {
			/* Not found by the walk (or not walkable): LMDB has the last word. */
			MDB_val k = ent_store_key_val(&w[j].key);
			rc = mdb_get(v->txn, v->s->dbi[ENT_T_AGG], &k, &w[j].val);
			if (rc == 0 && w[j].state == 0)
				v->walk_missed++;
			fallbacks += w[j].state == -1;
		}
		if ((r = ent_store_view_decide(v, &c[j], rc, &w[j].val, res)) != 0) {
			if (bad)
				*bad = first + j;
			break;
		}
		r = cb(ctx, first + j, res);
	}
	if (fallbacks)
		atomic_fetch_add_explicit(&v->s->walk_fallbacks, fallbacks, memory_order_relaxed);
	return r;
}

int ent_store_view_check_batch(struct ent_view *v, const struct ent_check *c, size_t n,
			       ent_check_cb cb, void *ctx, size_t *bad)
{
	if (!v->active)
		return -ENT_EINVAL;
	struct ent_check_result res;
	struct ent_walk_tree t;
	if (v->s->walk_off || !walk_tree_of(v, &t)) {
		/* The walk refused this snapshot: every lookup of the batch falls back. */
		if (!v->s->walk_off)
			atomic_fetch_add_explicit(&v->s->walk_fallbacks, n, memory_order_relaxed);
		for (size_t i = 0; i < n; i++) {
			int r = ent_store_view_check(v, &c[i], &res);
			if (r) {
				if (bad)
					*bad = i;
				return r;
			}
			if ((r = cb(ctx, i, &res)) != 0)
				return r;
		}
		return 0;
	}
	ent_store_walk_cache_begin(v, &t, n);
	for (size_t i = 0; i < n; i += WALK_GROUP) {
		size_t m = n - i < WALK_GROUP ? n - i : WALK_GROUP;
		int r = walk_group(v, &t, c + i, m, i, cb, ctx, bad, &res);
		if (r)
			return r;
	}
	return 0;
}
