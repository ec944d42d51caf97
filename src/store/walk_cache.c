/*
 * The batched walk's cache of branch pages: per view, for one snapshot at a time.
 *
 * Without it every walk searches one page per branch level (four for 13.7M aggregates): ~7
 * binary search probes a page, each an offset, a node on its own cache line and a
 * variable-length compare, then the child's number from the node found. The pages above the
 * lowest branch level are few (174 for 1M customers) and stay in cache, but their probes still
 * cost ~30 cycles each; the lowest branch level is 11k pages (45 MB), and there every probe is
 * a cache miss as well (docs/performance.md).
 *
 * For a branch page it meets, the view keeps the prefix all the page's separator keys share
 * (up to 16 bytes), the eight bytes that follow it in each separator as a big-endian integer,
 * and the children's page numbers, packed in a pool (~0.8 KB for a page of 67 children). A
 * key then goes through the page by one branch-free bound search over those integers (the
 * keys of a group in lockstep, each prefetching its next probe) and one read of a child
 * number; the page itself is read only when the key ties separators on the kept bytes, and
 * then only they are compared in full. Ordering by the zero-padded 8 bytes agrees with memcmp
 * on the keys wherever the integers differ, so the route is the page's own.
 *
 * An entry is only good for the snapshot it was built in: a page's content is fixed while a
 * snapshot that reaches it is read, but LMDB hands a freed page number out again once no
 * reader needs the old content. So the cache belongs to one LMDB transaction id, and a new
 * snapshot starts a new generation (every entry dropped at once, the pool emptied). Keeping a
 * page reads all of it (~1 us); for the upper levels that is a few hundred microseconds per
 * snapshot, but for the lowest level it pays back only if the snapshot lives long enough to
 * use the entries, so that level is kept only once the snapshot has served walk_low_after
 * walks of this view (default ENT_WALK_LOW_AFTER): a database committed to many times a second
 * keeps the plain search there.
 *
 * Memory: the slots (1 MB) and the pool (24 MB) are mapped at the first batch and only the
 * parts used become resident: ~10 MB for 1M customers. A page that finds both slots of its
 * set taken, or no room in the pool, is simply searched the plain way.
 */
#include <sys/mman.h>

#include "store/walk.h"

#define CACHE_SETS 16384       /* of two 32-byte slots: 1 MB; a power of two */
#define CACHE_POOL (24u << 20) /* prefixes and child numbers, 64-byte aligned per page */
#define CACHE_CP   16	       /* longest shared prefix kept */

struct cache_slot {
	uint32_t pgno;
	uint32_t gen; /* the generation it was built in; 0: never used */
	uint32_t off; /* in the pool: uint64_t pfx[n - 1], then uint32_t child[n] */
	uint16_t n;   /* children; separators are nodes 1..n-1 (node 0 has no key) */
	uint8_t cpl;  /* length of the shared prefix cp */
	uint8_t pad;
	uint8_t cp[CACHE_CP];
};

struct ent_walk_cache {
	uint64_t txnid; /* the snapshot of this generation */
	uint64_t walks; /* keys walked in it */
	uint32_t gen;
	uint32_t used;		   /* bytes of the pool */
	uint64_t routed, narrowed; /* keys routed by an entry; of those, narrowed on ties */
	/* A set's two slots share one cache line; the pool's entries start on lines. */
	_Alignas(64) struct cache_slot slot[CACHE_SETS][2];
	_Alignas(64) uint8_t pool[CACHE_POOL];
};

void ent_store_walk_cache_free(struct ent_walk_cache *c)
{
	if (c)
		munmap(c, sizeof(*c));
}

void ent_store_walk_cache_counts(const struct ent_view *v, uint64_t *routed, uint64_t *narrowed)
{
	*routed = v->walk_cache ? v->walk_cache->routed : 0;
	*narrowed = v->walk_cache ? v->walk_cache->narrowed : 0;
}

void ent_store_walk_cache_begin(struct ent_view *v, struct ent_walk_tree *t, size_t n)
{
	t->cache = NULL;
	t->keep_low = false;
	/* With fewer than three levels the root is the only page above the lowest branch level. */
	if (t->depth < 3)
		return;
	if (!v->walk_cache) {
		/* Mapped rather than calloc'ed, so that only what is used becomes resident. */
		void *m = mmap(NULL, sizeof(struct ent_walk_cache), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return;
		v->walk_cache = m;
	}
	struct ent_walk_cache *c = v->walk_cache;
	if (c->txnid != t->txnid) {
		c->txnid = t->txnid;
		c->walks = 0;
		c->used = 0;
		if (++c->gen == 0) {
			memset(c->slot, 0, sizeof(c->slot));
			c->gen = 1;
		}
	}
	c->walks += n;
	t->cache = c;
	t->keep_low = c->walks > v->walk_low_after;
}

static inline struct cache_slot *cache_set(const struct ent_walk_cache *c, uint64_t pgno)
{
	/* Fibonacci hashing: page numbers of one level are spread, but not evenly. */
	return (struct cache_slot *)c->slot[(uint32_t)(pgno * 0x9E3779B1u) >> (32 - 14)];
}

static inline const struct cache_slot *cache_find(const struct ent_walk_cache *c, uint64_t pgno)
{
	const struct cache_slot *s = cache_set(c, pgno);
	if (s[0].gen == c->gen && s[0].pgno == pgno)
		return &s[0];
	if (s[1].gen == c->gen && s[1].pgno == pgno)
		return &s[1];
	return NULL;
}

void ent_store_walk_cache_prefetch(const struct ent_walk_tree *t, uint64_t pgno)
{
	__builtin_prefetch(cache_set(t->cache, pgno));
}

/* Eight bytes of a key from \a p (zero-padded), big-endian: ordered like the keys, ties aside. */
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

/* memcmp of \a m <= CACHE_CP bytes, inline: a library call per key and level cost more. */
static inline int cmp_short(const uint8_t *a, const uint8_t *b, unsigned m)
{
	if (m >= 8) {
		uint64_t x = rd64(a), y = rd64(b);
		if (x == y) {
			x = rd64(a + m - 8);
			y = rd64(b + m - 8);
		}
		x = __builtin_bswap64(x);
		y = __builtin_bswap64(y);
		return (x > y) - (x < y);
	}
	for (unsigned i = 0; i < m; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

void ent_store_walk_keep(const struct ent_walk_tree *t, const uint8_t *p, uint64_t pgno)
{
	struct ent_walk_cache *c = t->cache;
	if (pgno > UINT32_MAX || cache_find(c, pgno))
		return;
	/* A set whose two slots hold pages of this snapshot is not taken over: no thrashing. */
	struct cache_slot *s = cache_set(c, pgno), *e = NULL;
	if (s[0].gen != c->gen)
		e = &s[0];
	else if (s[1].gen != c->gen)
		e = &s[1];
	unsigned n = walk_nodes(p);
	size_t need = ((size_t)(n - 1) * 8 + (size_t)n * 4 + 63) & ~(size_t)63;
	if (!e || n < 2 || n > UINT16_MAX || need > CACHE_POOL - c->used)
		return;
	const uint8_t *f = walk_node(t, p, 1), *z = walk_node(t, p, n - 1);
	if (!f || !z)
		return;
	/* Separators are sorted, so the first and last share what all of them share. */
	unsigned fl = rd16(f + 6), zl = rd16(z + 6), cpl = 0;
	while (cpl < fl && cpl < zl && cpl < CACHE_CP &&
	       f[WALK_NODEHDR + cpl] == z[WALK_NODEHDR + cpl])
		cpl++;
	uint64_t *pfx = (uint64_t *)(void *)(c->pool + c->used);
	uint32_t *child = (uint32_t *)(pfx + (n - 1));
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *node = walk_node(t, p, i);
		if (!node)
			return;
		uint64_t cp = walk_child(node);
		unsigned kl = rd16(node + 6);
		if (cp > t->last_pgno || cp > UINT32_MAX || (i && kl < cpl))
			return;
		child[i] = (uint32_t)cp;
		if (i)
			pfx[i - 1] = key_prefix(node + WALK_NODEHDR + cpl, kl - cpl);
	}
	e->pgno = (uint32_t)pgno;
	e->off = c->used;
	e->n = (uint16_t)n;
	e->cpl = (uint8_t)cpl;
	memcpy(e->cp, f + WALK_NODEHDR, cpl);
	e->gen = c->gen;
	c->used += (uint32_t)need;
}

/* One key's bound search over an entry's prefixes. */
struct route {
	const struct cache_slot *e;
	const uint64_t *pfx, *b; /* the entry's prefixes; the search's window starts at b */
	uint64_t q;		 /* the key's eight bytes after the shared prefix */
	unsigned m;		 /* the window's length; 0: routed without a search */
};

void ent_store_walk_route(const struct ent_walk_tree *t, struct walk_key *w, size_t n,
			  uint64_t *pgno)
{
	struct ent_walk_cache *c = t->cache;
	struct route r[WALK_GROUP];
	uint8_t act[WALK_GROUP];
	size_t na = 0;
	for (size_t j = 0; j < n; j++) {
		r[j].e = NULL;
		if (w[j].state != 1)
			continue;
		const struct cache_slot *e = cache_find(c, pgno[j]);
		if (!e) {
			walk_prefetch_page(t, pgno[j]);
			w[j].keep = true;
			continue;
		}
		r[j].e = e;
		r[j].pfx = r[j].b = (const uint64_t *)(const void *)(c->pool + e->off);
		unsigned cpl = e->cpl, kl = w[j].key.len;
		int o = cmp_short((const uint8_t *)w[j].key.b, e->cp, kl < cpl ? kl : cpl);
		if (o == 0 && kl < cpl)
			o = -1;
		if (o) {
			/* Below every separator, or above them all: the first or the last child. */
			r[j].m = 0;
			r[j].b = o < 0 ? r[j].pfx : r[j].pfx + e->n - 1;
			continue;
		}
		r[j].q = key_prefix((const uint8_t *)w[j].key.b + cpl, kl - cpl);
		r[j].m = e->n - 1;
		__builtin_prefetch(r[j].b + r[j].m / 2);
		__builtin_prefetch(r[j].b + r[j].m / 4);
		__builtin_prefetch(r[j].b + 3 * r[j].m / 4);
		act[na++] = (uint8_t)j;
	}
	/* The first prefix >= q, one step per key a round (a branch-free lower bound). */
	while (na) {
		size_t k = 0;
		for (size_t i = 0; i < na; i++) {
			struct route *x = &r[act[i]];
			unsigned half = x->m / 2;
			x->b = x->b[half] < x->q ? x->b + half : x->b;
			x->m -= half;
			if (x->m > 1) {
				__builtin_prefetch(x->b + x->m / 2);
				act[k++] = act[i];
			} else {
				x->b += *x->b < x->q;
				__builtin_prefetch((const uint32_t *)(x->pfx + x->e->n - 1) +
						   (x->b - x->pfx));
			}
		}
		na = k;
	}
	for (size_t j = 0; j < n; j++) {
		if (w[j].state != 1)
			continue;
		const struct cache_slot *e = r[j].e;
		if (e) {
			c->routed++;
			const uint64_t *pfx = r[j].pfx;
			const uint32_t *child = (const uint32_t *)(pfx + e->n - 1);
			/* Separator i is pfx[i - 1]; lb is the first separator not below the key's
			   prefix, ub the first above it. */
			unsigned lb = 1 + (unsigned)(r[j].b - pfx), ub = lb;
			if (r[j].m)
				while (ub < e->n && pfx[ub - 1] == r[j].q)
					ub++;
			if (ub == lb) {
				pgno[j] = child[lb - 1];
				w[j].routed = true;
				continue;
			}
			/* Ties: those separators are compared in full, on the page. */
			c->narrowed++;
			w[j].lo = (int)lb;
			w[j].hi = (int)ub - 1;
			w[j].at = (int)lb - 1;
			w[j].started = true;
		}
		if (!(w[j].page = walk_page(t, pgno[j], WALK_P_BRANCH)))
			w[j].state = -1;
	}
}
