/*
 * The read path: one check (the hot path), a batch of checks, and a customer's aggregated view.
 *
 * ent_view_check allocates nothing and takes no lock: the key is built on the stack, the
 * record is decoded in place from the map into the caller's result, and every string of the
 * answer points into the map until ent_view_end.
 *
 * ent_view_check_batch gives the same answers for many checks, faster: see "Batched lookups".
 */
#include <stdlib.h>
#include <unistd.h>

#include "ent/pbarena.h"
#include "store/impl.h"

static int get(struct ent_view *v, enum ent_table t, const void *key, size_t len, MDB_val *val)
{
	MDB_val k = {len, (void *)key};
	return mdb_get(v->txn, v->s->dbi[t], &k, val);
}

/* Tell a miss apart: unknown feature, unknown customer, or simply not entitled. */
static int check_miss(struct ent_view *v, const struct ent_check *c, struct ent_check_result *out)
{
	MDB_val val;
	int rc = MDB_NOTFOUND;
	if (c->feature.len > 0 && c->feature.len <= ENT_MAX_CODE)
		rc = get(v, ENT_T_FEATURES, c->feature.p, c->feature.len, &val);
	if (rc == MDB_NOTFOUND) {
		ent_model_decide_missing(ENT_R_UNKNOWN_FEATURE, ENT_FT_UNSPECIFIED, &out->d);
		return 0;
	}
	if (rc)
		return ent_store_mdb_err(rc);
	if (val.mv_size < 1)
		return -ENT_ECORRUPT;
	uint8_t type = ((const uint8_t *)val.mv_data)[0];
	rc = MDB_NOTFOUND;
	if (c->customer.len > 0 && c->customer.len <= ENT_MAX_CUSTOMER_ID)
		rc = get(v, ENT_T_CUSTOMERS, c->customer.p, c->customer.len, &val);
	if (rc == MDB_NOTFOUND) {
		ent_model_decide_missing(ENT_R_UNKNOWN_CUSTOMER, type, &out->d);
		return 0;
	}
	if (rc)
		return ent_store_mdb_err(rc);
	ent_model_decide_missing(ENT_R_NOT_ENTITLED, type, &out->d);
	return 0;
}

int ent_view_check(struct ent_view *v, const struct ent_check *c, struct ent_check_result *out)
{
	if (!v->active)
		return -ENT_EINVAL;
	memset(&out->usage, 0, sizeof(out->usage));
	struct ent_key key;
	if (c->customer.len == 0 || c->customer.len > ENT_MAX_CUSTOMER_ID || c->feature.len == 0 ||
	    c->feature.len > ENT_MAX_CODE || ent_key_make(&key, c->customer, &c->feature))
		return check_miss(v, c, out);
	MDB_val val;
	int rc = get(v, ENT_T_AGG, key.b, key.len, &val);
	if (rc == MDB_NOTFOUND)
		return check_miss(v, c, out);
	if (rc)
		return ent_store_mdb_err(rc);
	int r = ent_record_decode(val.mv_data, val.mv_size, c->at, &out->usage, &out->seg);
	if (r)
		return r;
	ent_model_decide(&out->usage, &out->seg, c->quantity > 0 ? c->quantity : 1, c->at, &out->d);
	return 0;
}

/* ---- batched lookups -------------------------------------------------------------------
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
 */

/* LMDB 0.9 page and node layout (mdb.c). */
#define WALK_PAGEHDR  16 /* MDB_page header: pgno(8) pad(2) flags(2) lower(2) upper(2) */
#define WALK_NODEHDR  8	 /* MDB_node header: lo(2) hi(2) flags(2) ksize(2) */
#define WALK_P_BRANCH 0x01
#define WALK_P_LEAF   0x02
#define WALK_P_TYPES  0x6f /* branch, leaf, overflow, meta, leaf2, subp */
#define WALK_DB_FLAGS 4	   /* MDB_db: pad(4) flags(2) depth(2) ... root at 40 */
#define WALK_DB_DEPTH 6
#define WALK_DB_ROOT  40
#define WALK_DB_SIZE  48
/* Keys walked together: enough misses in flight, few enough to stay in L1. Measured. */
#define WALK_GROUP 16

struct walk_tree {
	const uint8_t *base; /* page 0 of the map */
	size_t psize;
	uint64_t root, last_pgno;
	uint64_t txnid;		  /* the snapshot's */
	unsigned depth;		  /* 0: empty table */
	struct ent_walk_top *top; /* the view's cache of upper pages, or NULL */
};

static inline uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* The snapshot's tree of the agg table, or false when the walk cannot be used. */
static bool walk_setup(struct ent_view *v, struct walk_tree *t)
{
	MDB_stat st;
	MDB_envinfo info;
	MDB_dbi main_dbi;
	int major, minor;
	/* The page format read here is LMDB 0.9's (the library loaded, not only the header). */
	mdb_version(&major, &minor, NULL);
	if (major != 0 || minor != 9)
		return false;
	if (mdb_env_stat(v->s->env, &st) || mdb_env_info(v->s->env, &info) ||
	    (long)st.ms_psize != sysconf(_SC_PAGESIZE) || mdb_dbi_open(v->txn, NULL, 0, &main_dbi))
		return false;
	/* The table's name in the main DB, as env.c opens it. */
	MDB_val k = {3, (void *)"agg"}, rec;
	if (mdb_get(v->txn, main_dbi, &k, &rec) || rec.mv_size != WALK_DB_SIZE)
		return false;
	const uint8_t *r = rec.mv_data;
	/* Plain memcmp keys only (no REVERSEKEY, INTEGERKEY, DUPSORT...). */
	if (rd16(r + WALK_DB_FLAGS) != 0)
		return false;
	t->psize = st.ms_psize;
	t->depth = rd16(r + WALK_DB_DEPTH);
	t->root = rd64(r + WALK_DB_ROOT);
	t->last_pgno = info.me_last_pgno;
	t->txnid = mdb_txn_id(v->txn);
	const uint8_t *page =
		(const uint8_t *)((uintptr_t)rec.mv_data & ~(uintptr_t)(t->psize - 1));
	uint64_t pgno = rd64(page);
	if (pgno > t->last_pgno || (uintptr_t)page < pgno * t->psize)
		return false;
	t->base = page - pgno * t->psize;
	return t->depth == 0 || t->root <= t->last_pgno;
}

/* Page \a pgno if it is a sane page of type \a type, else NULL. */
static const uint8_t *walk_page(const struct walk_tree *t, uint64_t pgno, unsigned type)
{
	if (pgno > t->last_pgno)
		return NULL;
	const uint8_t *p = t->base + pgno * t->psize;
	unsigned lower = rd16(p + 12), upper = rd16(p + 14);
	if (rd64(p) != pgno || (rd16(p + 10) & WALK_P_TYPES) != type || lower < WALK_PAGEHDR + 2 ||
	    lower > upper || upper > t->psize)
		return NULL;
	return p;
}

/* Where node \a i of page \a p starts, if its header lies in the page; the node itself is not
   read, so the caller can prefetch it first. */
static const uint8_t *walk_node_at(const struct walk_tree *t, const uint8_t *p, unsigned i)
{
	unsigned off = rd16(p + WALK_PAGEHDR + 2 * i);
	if (off < rd16(p + 14) || off + WALK_NODEHDR > t->psize)
		return NULL;
	return p + off;
}

/* Whether the key of a node found by walk_node_at lies in its page. */
static inline bool walk_key_fits(const struct walk_tree *t, const uint8_t *p, const uint8_t *node)
{
	return (size_t)(node - p) + WALK_NODEHDR + rd16(node + 6) <= t->psize;
}

/* Node \a i of page \a p, its key checked to lie in the page. */
static const uint8_t *walk_node(const struct walk_tree *t, const uint8_t *p, unsigned i)
{
	const uint8_t *node = walk_node_at(t, p, i);
	return node && walk_key_fits(t, p, node) ? node : NULL;
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

/*
 * One key's walk. The binary searches of a group advance in lockstep, one probe per round:
 * a round first locates every key's next probe node and prefetches it, then compares them
 * all, so the cache misses of the probes of different keys overlap instead of queueing.
 */
struct walk_key {
	struct ent_key key;
	const uint8_t *page;
	const uint8_t *node; /* the probe of this round */
	int lo, hi, at, mid;
	/* 1: walking or found; 0: not found; -1: ask mdb_get; -2: not a valid key (a miss). */
	int state;
	bool started; /* lo, hi and at are set for this page already (top_start) */
	MDB_val val;
};

/* Start the search of \a w in its page (branch: nodes 1..n-1, node 0 being the lowest). */
static void walk_start(struct walk_key *w, bool branch)
{
	int n = (rd16(w->page + 12) - WALK_PAGEHDR) >> 1;
	w->lo = branch ? 1 : 0;
	w->hi = n - 1;
	w->at = 0;
}

/* A found leaf node's value, or -1 when it is not a plain value in the page. */
static int walk_value(const struct walk_tree *t, struct walk_key *w)
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
static void walk_search(const struct walk_tree *t, struct walk_key *w, size_t n, bool branch)
{
	uint8_t act[WALK_GROUP];
	size_t na = 0;
	for (size_t j = 0; j < n; j++)
		if (w[j].state == 1) {
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

/* ---- the upper pages' key prefixes ------------------------------------------------------
 *
 * The pages above the two lowest levels are few (174 of 758k for 1M customers) and shared by
 * every walk, so their binary searches hit the cache but still cost ~30 cycles a probe: an
 * offset, a node, a variable-length compare. For such a page the view keeps the first eight
 * bytes of every separator key as a big-endian integer, and a key's search there becomes two
 * branch-free searches over one small array; only separators that share the key's first eight
 * bytes are then compared in full, on the page itself.
 *
 * An entry belongs to one snapshot: a page's content is fixed while a snapshot that reaches it
 * is read, but LMDB reuses page numbers once older snapshots are gone, so an entry is used only
 * under the LMDB transaction id it was built in. A slot already holding another page of the
 * same snapshot is not taken over (no thrashing; that page is searched the ordinary way).
 */
#define TOP_SLOTS 512 /* a power of two */
#define TOP_MAX	  192 /* separators per page; a page with more is not kept */

struct ent_walk_top_page {
	uint64_t txnid; /* 0: empty */
	uint64_t pgno;
	uint32_t n; /* nodes; pfx[i] for node i >= 1 (node 0 has no key) */
	uint64_t pfx[TOP_MAX];
};

struct ent_walk_top {
	struct ent_walk_top_page slot[TOP_SLOTS];
};

void ent_walk_top_free(struct ent_walk_top *top)
{
	free(top);
}

/* The first eight bytes of a key (zero-padded), big-endian: ordered like the keys, ties aside. */
static inline uint64_t key_prefix(const uint8_t *p, unsigned len)
{
	uint64_t x = 0;
	if (len >= 8) {
		x = rd64(p);
	} else {
		for (unsigned i = 0; i < len; i++)
			x |= (uint64_t)p[i] << (8 * i);
	}
	return __builtin_bswap64(x);
}

/* The cached prefixes of branch page \a p (number \a pgno), built on first use; NULL when the
   page cannot be kept (slot taken, too many nodes, a node that does not check out). */
static const struct ent_walk_top_page *top_page(const struct walk_tree *t, const uint8_t *p,
						uint64_t pgno)
{
	struct ent_walk_top_page *e = &t->top->slot[pgno & (TOP_SLOTS - 1)];
	if (e->txnid == t->txnid)
		return e->pgno == pgno ? e : NULL;
	unsigned n = (rd16(p + 12) - WALK_PAGEHDR) >> 1;
	if (n > TOP_MAX)
		return NULL;
	for (unsigned i = 1; i < n; i++) {
		const uint8_t *node = walk_node(t, p, i);
		if (!node)
			return NULL;
		e->pfx[i] = key_prefix(node + WALK_NODEHDR, rd16(node + 6));
	}
	e->n = n;
	e->pgno = pgno;
	e->txnid = t->txnid;
	return e;
}

/* First i in [0, m) with a[i] > q (strict) or >= q, without branches on the data. */
static inline unsigned bound_u64(const uint64_t *a, unsigned m, uint64_t q, bool strict)
{
	if (!m)
		return 0;
	const uint64_t *b = a;
	while (m > 1) {
		unsigned half = m / 2;
		bool right = strict ? b[half] <= q : b[half] < q;
		b = right ? b + half : b;
		m -= half;
	}
	return (unsigned)(b - a) + (strict ? *b <= q : *b < q);
}

/* Narrow \a w's search of its branch page to the separators sharing its first eight bytes. */
static bool top_start(const struct walk_tree *t, struct walk_key *w, uint64_t pgno)
{
	const struct ent_walk_top_page *e = top_page(t, w->page, pgno);
	if (!e)
		return false;
	uint64_t q = key_prefix((const uint8_t *)w->key.b, w->key.len);
	/* Separators 1..n-1: those before lb are below the key, those from ub on above it. */
	unsigned lb = 1 + bound_u64(e->pfx + 1, e->n - 1, q, false);
	unsigned ub = 1 + bound_u64(e->pfx + 1, e->n - 1, q, true);
	w->lo = (int)lb;
	w->hi = (int)ub - 1;
	w->at = (int)lb - 1;
	return true;
}

/* Decide one check whose record lookup gave \a rc / \a val (the tail of ent_view_check). */
static int decide_found(struct ent_view *v, const struct ent_check *c, int rc, MDB_val *val,
			struct ent_check_result *out)
{
	memset(&out->usage, 0, sizeof(out->usage));
	if (rc == MDB_NOTFOUND)
		return check_miss(v, c, out);
	if (rc)
		return ent_store_mdb_err(rc);
	int r = ent_record_decode(val->mv_data, val->mv_size, c->at, &out->usage, &out->seg);
	if (r)
		return r;
	ent_model_decide(&out->usage, &out->seg, c->quantity > 0 ? c->quantity : 1, c->at, &out->d);
	return 0;
}

static bool key_ok(const struct ent_check *c, struct ent_key *k)
{
	return c->customer.len > 0 && c->customer.len <= ENT_MAX_CUSTOMER_ID &&
	       c->feature.len > 0 && c->feature.len <= ENT_MAX_CODE &&
	       ent_key_make(k, c->customer, &c->feature) == 0;
}

/* One group: walk every key down together, then decide in order. */
static int walk_group(struct ent_view *v, const struct walk_tree *t, const struct ent_check *c,
		      size_t n, size_t first, ent_check_cb cb, void *ctx, size_t *bad,
		      struct ent_check_result *res)
{
	struct walk_key w[WALK_GROUP];
	uint64_t pgno[WALK_GROUP];
	for (size_t j = 0; j < n; j++) {
		w[j].started = false;
		pgno[j] = t->root;
		w[j].state = key_ok(&c[j], &w[j].key) ? 1 : -2;
		if (w[j].state != 1)
			continue;
		if (!t->depth)
			w[j].state = 0; /* an empty table */
		else if (!(w[j].page = walk_page(t, t->root,
						 t->depth > 1 ? WALK_P_BRANCH : WALK_P_LEAF)))
			w[j].state = -1;
	}
	for (unsigned level = 1; level < t->depth; level++) {
		unsigned type = level + 1 < t->depth ? WALK_P_BRANCH : WALK_P_LEAF;
		/* The pages above the two lowest levels: cached prefixes. */
		if (t->top && level + 2 <= t->depth)
			for (size_t j = 0; j < n; j++)
				if (w[j].state == 1)
					w[j].started = top_start(t, &w[j], pgno[j]);
		walk_search(t, w, n, true);
		for (size_t j = 0; j < n; j++) {
			if (w[j].state != 1)
				continue;
			const uint8_t *node = walk_node(t, w[j].page, (unsigned)w[j].at);
			if (!node) {
				w[j].state = -1;
				continue;
			}
			pgno[j] = (uint64_t)rd16(node) | (uint64_t)rd16(node + 2) << 16 |
				  (uint64_t)rd16(node + 4) << 32;
			if (pgno[j] > t->last_pgno) {
				w[j].state = -1;
				continue;
			}
			/* The header, and where the middle of a branch page's offsets array lies
			   (a leaf's is in the first line): what the first probe reads. Only two
			   lines: more prefetches than line fill buffers stall. The other keys'
			   work covers the wait. */
			const uint8_t *cp = t->base + pgno[j] * t->psize;
			__builtin_prefetch(cp);
			__builtin_prefetch(cp + 128);
		}
		for (size_t j = 0; j < n; j++)
			if (w[j].state == 1 && !(w[j].page = walk_page(t, pgno[j], type)))
				w[j].state = -1;
	}
	if (t->depth)
		walk_search(t, w, n, false);
	for (size_t j = 0; j < n; j++)
		if (w[j].state == 1)
			__builtin_prefetch(w[j].val.mv_data);
	for (size_t j = 0; j < n; j++) {
		int rc = MDB_NOTFOUND;
		if (w[j].state == 1) {
			rc = 0;
		} else if (w[j].state != -2) {
			/* Not found by the walk (or not walkable): LMDB has the last word. */
			rc = get(v, ENT_T_AGG, w[j].key.b, w[j].key.len, &w[j].val);
			if (rc == 0 && w[j].state == 0)
				v->walk_missed++;
		}
		int r = decide_found(v, &c[j], rc, &w[j].val, res);
		if (r) {
			if (bad)
				*bad = first + j;
			return r;
		}
		if ((r = cb(ctx, first + j, res)) != 0)
			return r;
	}
	return 0;
}

int ent_view_check_batch(struct ent_view *v, const struct ent_check *c, size_t n, ent_check_cb cb,
			 void *ctx, size_t *bad)
{
	if (!v->active)
		return -ENT_EINVAL;
	struct ent_check_result res;
	struct walk_tree t;
	if (!walk_setup(v, &t)) {
		for (size_t i = 0; i < n; i++) {
			int r = ent_view_check(v, &c[i], &res);
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
	/* The upper pages' cache pays off from three levels on; allocated once per view. */
	if (t.depth >= 3 && !v->walk_top)
		v->walk_top = calloc(1, sizeof(*v->walk_top));
	t.top = v->walk_top;
	for (size_t i = 0; i < n; i += WALK_GROUP) {
		size_t m = n - i < WALK_GROUP ? n - i : WALK_GROUP;
		int r = walk_group(v, &t, c + i, m, i, cb, ctx, bad, &res);
		if (r)
			return r;
	}
	return 0;
}

struct cf_scan {
	struct ent_view *v;
	struct ent_str customer;
	const struct ent_str *filter;
	size_t n_filter;
	int64_t at;
	struct ent_arena *arena;
	ent_customer_feature_cb cb;
	void *ctx;
	int err;
};

static int cf_one(void *ctx, struct ent_str key, struct ent_str val)
{
	struct cf_scan *s = ctx;
	struct ent_str customer, feature;
	if (!ent_key_split(key, &customer, &feature) || !ent_str_eq(customer, s->customer))
		return 0;
	if (s->n_filter) {
		bool wanted = false;
		for (size_t i = 0; i < s->n_filter && !wanted; i++)
			wanted = ent_str_eq(s->filter[i], feature);
		if (!wanted)
			return 0;
	}
	struct ent_customer_feature cf;
	memset(&cf, 0, sizeof(cf));
	cf.feature_code = feature;
	int r = ent_record_decode((const uint8_t *)val.p, val.len, s->at, &cf.r.usage, &cf.r.seg);
	if (r)
		return s->err = r;
	ent_model_decide(&cf.r.usage, &cf.r.seg, 1, s->at, &cf.r.d);
	Ent__V1__Feature *f;
	r = ent_store_load_feature(s->v->s, s->v->txn, feature, s->arena, &f);
	if (r)
		return s->err = (r == -ENT_ENOTFOUND ? -ENT_ECORRUPT : r);
	cf.feature_pb = f;
	struct ent_sources *src = ent_arena_alloc(s->arena, sizeof(*src));
	if (!src)
		return s->err = -ENT_ENOMEM;
	r = ent_store_gather(s->v->s, s->v->txn, customer, feature, s->arena, src);
	if (r)
		return s->err = r;
	cf.sources = src;
	return s->cb(s->ctx, &cf);
}

int ent_view_customer_features(struct ent_view *v, struct ent_str customer,
			       const struct ent_str *filter, size_t n_filter, int64_t at,
			       struct ent_arena *arena, ent_customer_feature_cb cb, void *ctx)
{
	if (!v->active)
		return -ENT_EINVAL;
	if (customer.len == 0 || customer.len > ENT_MAX_CUSTOMER_ID)
		return -ENT_ENOTFOUND;
	MDB_val val;
	int rc = get(v, ENT_T_CUSTOMERS, customer.p, customer.len, &val);
	if (rc)
		return ent_store_mdb_err(rc);
	struct ent_key prefix;
	struct ent_str empty = {"", 0};
	if (ent_key_make(&prefix, customer, &empty))
		return -ENT_ENOTFOUND;
	struct cf_scan s = {v, customer, filter, n_filter, at, arena, cb, ctx, 0};
	int r = ent_view_scan(v, ENT_T_AGG, (struct ent_str){prefix.b, prefix.len},
			      (struct ent_str){"", 0}, 0, cf_one, &s);
	return s.err ? s.err : r;
}
