/*
 * The batched B-tree walk (walk.c) and its per-view cache of branch pages (walk_cache.c):
 * private to those two files. The walk reads LMDB 0.9's page format directly; see walk.c for
 * why and for what it checks.
 */
#ifndef ENT_STORE_WALK_H
#define ENT_STORE_WALK_H

#include "store/impl.h"

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
/* Keys walked together: enough misses in flight, few enough to stay in L1, and a whole drain
   of the server (ENT_DRAIN_MAX). 32 measured ~6% faster than 16 once the cache of branch pages
   had cut each key's lines (docs/performance.md); it was no faster before. */
#define WALK_GROUP 32

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
	bool started; /* lo, hi and at are set for this page already (narrowed by the cache) */
	bool routed;  /* this level's child is known already, its page not read (the cache) */
	bool keep;    /* this level's page is to be kept in the cache once searched */
	MDB_val val;
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

/* Number of nodes of a page (checked by walk_page). */
static inline unsigned walk_nodes(const uint8_t *p)
{
	return (rd16(p + 12) - WALK_PAGEHDR) >> 1;
}

/* The child page number of a branch node. */
static inline uint64_t walk_child(const uint8_t *node)
{
	return (uint64_t)rd16(node) | (uint64_t)rd16(node + 2) << 16 |
	       (uint64_t)rd16(node + 4) << 32;
}

/* Page \a pgno if it is a sane page of type \a type, else NULL. */
static inline const uint8_t *walk_page(const struct ent_walk_tree *t, uint64_t pgno, unsigned type)
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

/* Prefetch what a search of page \a pgno reads first: its header, and where the middle of a
   branch page's offsets array lies (a leaf's is in the first line). Only two lines: more
   prefetches than line fill buffers stall; the other keys' work covers the wait. */
static inline void walk_prefetch_page(const struct ent_walk_tree *t, uint64_t pgno)
{
	const uint8_t *p = t->base + pgno * t->psize;
	__builtin_prefetch(p);
	__builtin_prefetch(p + 128);
}

/* Where node \a i of page \a p starts, if its header lies in the page; the node itself is not
   read, so the caller can prefetch it first. */
static inline const uint8_t *walk_node_at(const struct ent_walk_tree *t, const uint8_t *p,
					  unsigned i)
{
	unsigned off = rd16(p + WALK_PAGEHDR + 2 * i);
	if (off < rd16(p + 14) || off + WALK_NODEHDR > t->psize)
		return NULL;
	return p + off;
}

/* Whether the key of a node found by walk_node_at lies in its page. */
static inline bool walk_key_fits(const struct ent_walk_tree *t, const uint8_t *p,
				 const uint8_t *node)
{
	return (size_t)(node - p) + WALK_NODEHDR + rd16(node + 6) <= t->psize;
}

/* Node \a i of page \a p, its key checked to lie in the page. */
static inline const uint8_t *walk_node(const struct ent_walk_tree *t, const uint8_t *p, unsigned i)
{
	const uint8_t *node = walk_node_at(t, p, i);
	return node && walk_key_fits(t, p, node) ? node : NULL;
}

/*
 * Walk the keys \a w[0..n) (n <= WALK_GROUP; state 1 to walk, anything else is left alone)
 * down the tree \a t together: afterwards state 1 means found (val is set, inside a verified
 * leaf page), 0 not in the tree, -1 not walkable (the caller asks mdb_get). Reads only what
 * lies inside t's pages, whatever they hold (tests/fuzz/fuzz_walk.c).
 */
void ent_store_walk_descend(const struct ent_walk_tree *t, struct walk_key *w, size_t n);

/* ---- the cache of branch pages (walk_cache.c) ---- */

/* Set up \a t's cache for a batch of \a n keys in \a v's snapshot (t->cache, t->keep_low). */
void ent_store_walk_cache_begin(struct ent_view *v, struct ent_walk_tree *t, size_t n);
/* Whether the branch pages of tree level \a level go through the cache. */
static inline bool ent_store_walk_cached(const struct ent_walk_tree *t, unsigned level)
{
	return t->cache && (level + 2 < t->depth || (t->keep_low && level + 2 == t->depth));
}
/* Prefetch what ent_store_walk_route reads first for page \a pgno. */
void ent_store_walk_cache_prefetch(const struct ent_walk_tree *t, uint64_t pgno);
/*
 * One cached level for the walking keys of \a w[0..n), at pages \a pgno[] not yet read: a key
 * whose page is kept gets its child's number into pgno[] (routed); a key that ties separators
 * on the kept bytes has its page read and its search narrowed to them (started); the others
 * have their page read and marked to be kept (keep).
 */
void ent_store_walk_route(const struct ent_walk_tree *t, struct walk_key *w, size_t n,
			  uint64_t *pgno);
/* Keep branch page \a p, number \a pgno (checked by walk_page), if there is room. */
void ent_store_walk_keep(const struct ent_walk_tree *t, const uint8_t *p, uint64_t pgno);

#endif
