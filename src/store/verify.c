/*
 * ent_store_verify: check a whole database, page by page and record by record, without ever
 * letting LMDB read a damaged page.
 *
 * LMDB pages carry no checksum, and LMDB trusts them: a zeroed page met by a cursor moving to
 * its next leaf trips an assertion (IS_LEAF in mdb_cursor_next) that aborts the process, and a
 * page past the end of a truncated file is a SIGBUS. So the check runs in two passes inside one
 * read transaction:
 *
 *  1. Structure, read from our own read-only mapping of data.mdb (the snapshot's pages cannot
 *     change while the transaction is open): the meta page of the snapshot, then every B-tree
 *     reachable from it (the main DB, each table, each DUPSORT sub-tree), page by page. Every
 *     page must carry its own number and the type its level needs, its node offsets and sizes
 *     must lie in the page, keys must be in order (within a page and from page to page), every
 *     child and overflow page must lie below the snapshot's last page, no page may be reached
 *     twice, and each tree's entry count must match what its record says.
 *  2. Content, through LMDB cursors (safe now that every page they can reach passed pass 1):
 *     every value of every table is decoded as entd decodes it: aggregated records at every
 *     segment (checksum included), stored protobufs unpacked, fixed-size rows sized.
 *
 * Pass 2 only runs when pass 1 found nothing, and both stop counting details after the first
 * problem's message is kept (the counts go on).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ent/pbarena.h"
#include "ent/v1/admin.pb-c.h"
#include "ent/v1/entitlement.pb-c.h"
#include "ent/v1/types.pb-c.h"
#include "store/walk.h"

#define P_BRANCH   0x01
#define P_LEAF	   0x02
#define P_OVERFLOW 0x04
#define P_LEAF2	   0x20
#define P_SUBP	   0x40
#define F_BIGDATA  0x01
#define F_SUBDATA  0x02
#define F_DUPDATA  0x04
#define MAX_DEPTH  32

struct vctx {
	const uint8_t *base; /* our mapping of data.mdb */
	size_t psize;
	uint64_t last_pgno;
	uint8_t *seen; /* bit per page: reached once already */
	struct ent_store_verify_report *r;
	const char *table; /* the tree being walked, for messages */
	char name[32];
	/* The last key met in the tree being walked, for the order check across pages. */
	uint8_t last[ENT_KEY_MAX];
	size_t last_len;
	bool have_last;
};

static void problem(struct vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct vctx *c, const char *fmt, ...)
{
	if (c->r->problems++ == 0) {
		int n = snprintf(c->r->first, sizeof(c->r->first), "%s: ", c->table);
		va_list ap;
		va_start(ap, fmt);
		if (n > 0 && (size_t)n < sizeof(c->r->first))
			vsnprintf(c->r->first + n, sizeof(c->r->first) - (size_t)n, fmt, ap);
		va_end(ap);
	}
}

static int keycmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int x = memcmp(a, b, al < bl ? al : bl);
	return x ? x : (al > bl) - (al < bl);
}

/* Page \a pgno of the map, reached for the first time, with a header of type \a type. */
static const uint8_t *page_at(struct vctx *c, uint64_t pgno, unsigned type)
{
	if (pgno < 2 || pgno > c->last_pgno) {
		problem(c, "page number %llu outside 2..%llu", (unsigned long long)pgno,
			(unsigned long long)c->last_pgno);
		return NULL;
	}
	if (c->seen[pgno >> 3] & (1u << (pgno & 7))) {
		problem(c, "page %llu is reached twice", (unsigned long long)pgno);
		return NULL;
	}
	c->seen[pgno >> 3] |= (uint8_t)(1u << (pgno & 7));
	c->r->pages++;
	const uint8_t *p = c->base + pgno * c->psize;
	unsigned flags = rd16(p + 10) & ~0x8000u; /* P_LOOSE etc. never reach a snapshot */
	if (rd64(p) != pgno) {
		problem(c, "page %llu names itself %llu (zeroed or overwritten)",
			(unsigned long long)pgno, (unsigned long long)rd64(p));
		return NULL;
	}
	if ((flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_LEAF2)) != type) {
		problem(c, "page %llu has flags 0x%x, expected 0x%x", (unsigned long long)pgno,
			flags, type);
		return NULL;
	}
	return p;
}

/*
 * The nodes of a branch or leaf page (or a DUPSORT sub-page of \a size bytes inline in a leaf
 * value): offsets, headers and keys inside, keys in order. \return the node count or -1.
 */
static int check_nodes(struct vctx *c, const uint8_t *p, size_t size, bool branch, uint64_t pgno)
{
	unsigned lower = rd16(p + 12), upper = rd16(p + 14);
	if (lower < WALK_PAGEHDR || lower > upper || upper > size || (lower & 1)) {
		problem(c, "page %llu: bad bounds lower=%u upper=%u", (unsigned long long)pgno,
			lower, upper);
		return -1;
	}
	int n = (int)(lower - WALK_PAGEHDR) / 2;
	if (n < 1) {
		problem(c, "page %llu has no nodes", (unsigned long long)pgno);
		return -1;
	}
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	for (int i = 0; i < n; i++) {
		unsigned off = rd16(p + WALK_PAGEHDR + 2 * i);
		if (off < upper || off + WALK_NODEHDR > size ||
		    off + WALK_NODEHDR + rd16(p + off + 6) > size) {
			problem(c, "page %llu: node %d lies outside the page",
				(unsigned long long)pgno, i);
			return -1;
		}
		const uint8_t *node = p + off;
		size_t klen = rd16(node + 6);
		if (klen > ENT_KEY_MAX - 1) {
			problem(c, "page %llu: node %d has a %zu-byte key",
				(unsigned long long)pgno, i, klen);
			return -1;
		}
		if (!branch) {
			size_t dsize = rd16(node) | (size_t)rd16(node + 2) << 16;
			unsigned f = rd16(node + 4);
			size_t in_page = f & F_BIGDATA ? 8 : dsize;
			if (off + WALK_NODEHDR + klen + in_page > size) {
				problem(c, "page %llu: node %d's value runs past the page",
					(unsigned long long)pgno, i);
				return -1;
			}
		}
		if (branch && i == 0)
			continue; /* the leftmost branch node's key is not used */
		if (prev && keycmp(prev, prev_len, node + WALK_NODEHDR, klen) >= 0) {
			problem(c, "page %llu: keys out of order at node %d",
				(unsigned long long)pgno, i);
			return -1;
		}
		prev = node + WALK_NODEHDR;
		prev_len = klen;
	}
	return n;
}

static void walk_tree(struct vctx *c, const uint8_t *db, bool dupsort, uint64_t *items);

/* A leaf's keys continue the order of the tree's previous leaf. */
static void order_across(struct vctx *c, const uint8_t *key, size_t len, uint64_t pgno)
{
	if (c->have_last && keycmp(c->last, c->last_len, key, len) >= 0)
		problem(c, "page %llu: first key is not above the previous page's last",
			(unsigned long long)pgno);
}

static void check_leaf(struct vctx *c, const uint8_t *p, uint64_t pgno, bool dupsort,
		       uint64_t *items)
{
	int n = check_nodes(c, p, c->psize, false, pgno);
	if (n < 0)
		return;
	for (int i = 0; i < n; i++) {
		const uint8_t *node = p + rd16(p + WALK_PAGEHDR + 2 * i);
		size_t klen = rd16(node + 6);
		size_t dsize = rd16(node) | (size_t)rd16(node + 2) << 16;
		unsigned f = rd16(node + 4);
		const uint8_t *data = node + WALK_NODEHDR + klen;
		if (i == 0)
			order_across(c, node + WALK_NODEHDR, klen, pgno);
		if (f & F_BIGDATA) {
			uint64_t op = rd64(data);
			const uint8_t *o = page_at(c, op, P_OVERFLOW);
			if (!o)
				return;
			uint32_t np;
			memcpy(&np, o + 12, 4);
			if (np < 1 || op + np - 1 > c->last_pgno || dsize > np * c->psize - 16) {
				problem(c, "overflow page %llu: %u pages for %zu bytes",
					(unsigned long long)op, np, dsize);
				return;
			}
			for (uint64_t k = 1; k < np; k++)
				c->seen[(op + k) >> 3] |= (uint8_t)(1u << ((op + k) & 7));
			c->r->pages += np - 1;
			(*items)++;
		} else if ((f & F_DUPDATA) && (f & F_SUBDATA)) {
			if (!dupsort || dsize != WALK_DB_SIZE) {
				problem(c, "page %llu: a sub-database where none can be",
					(unsigned long long)pgno);
				return;
			}
			/* A sub-tree orders its own values: it has an order of its own. */
			uint8_t keep[ENT_KEY_MAX];
			size_t keep_len = c->last_len;
			bool keep_have = c->have_last;
			memcpy(keep, c->last, c->last_len);
			c->have_last = false;
			walk_tree(c, data, false, items);
			memcpy(c->last, keep, keep_len);
			c->last_len = keep_len;
			c->have_last = keep_have;
		} else if (f & F_DUPDATA) {
			if (!dupsort || dsize < WALK_PAGEHDR ||
			    (rd16(data + 10) & (P_LEAF | P_SUBP)) != (P_LEAF | P_SUBP)) {
				problem(c, "page %llu: node %d: bad duplicate sub-page",
					(unsigned long long)pgno, i);
				return;
			}
			int m = check_nodes(c, data, dsize, false, pgno);
			if (m < 0)
				return;
			*items += (uint64_t)m;
		} else if (f & ~(unsigned)(F_BIGDATA | F_SUBDATA | F_DUPDATA)) {
			problem(c, "page %llu: node %d has unknown flags 0x%x",
				(unsigned long long)pgno, i, f);
			return;
		} else {
			(*items)++;
		}
		if (klen <= sizeof(c->last)) {
			memcpy(c->last, node + WALK_NODEHDR, klen);
			c->last_len = klen;
			c->have_last = true;
		}
	}
}

static void check_page(struct vctx *c, uint64_t pgno, unsigned level, unsigned depth, bool dupsort,
		       uint64_t *items)
{
	if (c->r->problems)
		return;
	bool leaf = level + 1 == depth;
	const uint8_t *p = page_at(c, pgno, leaf ? P_LEAF : P_BRANCH);
	if (!p)
		return;
	if (leaf) {
		check_leaf(c, p, pgno, dupsort, items);
		return;
	}
	int n = check_nodes(c, p, c->psize, true, pgno);
	for (int i = 0; i < n && !c->r->problems; i++) {
		const uint8_t *node = p + rd16(p + WALK_PAGEHDR + 2 * i);
		check_page(c, walk_child(node), level + 1, depth, dupsort, items);
	}
}

/* One tree from its MDB_db record (48 bytes): its pages, then its entry count. */
static void walk_tree(struct vctx *c, const uint8_t *db, bool dupsort, uint64_t *items)
{
	unsigned depth = rd16(db + WALK_DB_DEPTH);
	uint64_t root = rd64(db + WALK_DB_ROOT), entries = rd64(db + 32), got = 0;
	if (depth == 0) {
		if (entries != 0)
			problem(c, "empty tree claims %llu entries", (unsigned long long)entries);
		return;
	}
	if (depth > MAX_DEPTH) {
		problem(c, "tree depth %u", depth);
		return;
	}
	check_page(c, root, 0, depth, dupsort, &got);
	if (!c->r->problems && got != entries)
		problem(c, "%llu entries found, the tree's record says %llu",
			(unsigned long long)got, (unsigned long long)entries);
	*items += got;
}

/* Pass 1 over the snapshot of \a txn. */
static void check_structure(struct ent_store *s, MDB_txn *txn, struct vctx *c)
{
	/* The meta page of this snapshot: the one whose txnid is the transaction's. */
	uint64_t id = (uint64_t)mdb_txn_id(txn);
	const uint8_t *meta = NULL;
	for (int i = 0; i < 2; i++) {
		const uint8_t *m = c->base + (size_t)i * c->psize + WALK_PAGEHDR;
		if (rd64(m + 24 + 2 * WALK_DB_SIZE + 8) == id)
			meta = m;
	}
	c->table = "(meta)";
	if (!meta) {
		problem(c, "no meta page for transaction %llu", (unsigned long long)id);
		return;
	}
	/* The main DB: its leaves name the tables, each with its own tree record. */
	const uint8_t *main_db = meta + 24 + WALK_DB_SIZE;
	unsigned depth = rd16(main_db + WALK_DB_DEPTH);
	uint64_t root = rd64(main_db + WALK_DB_ROOT);
	c->table = "(main)";
	if (depth != 1) {
		problem(c, "main DB of depth %u (entd keeps one page of tables)", depth);
		return;
	}
	const uint8_t *p = page_at(c, root, P_LEAF);
	if (!p)
		return;
	int n = check_nodes(c, p, c->psize, false, root);
	for (int i = 0; i < n && !c->r->problems; i++) {
		const uint8_t *node = p + rd16(p + WALK_PAGEHDR + 2 * i);
		size_t klen = rd16(node + 6);
		const uint8_t *db = node + WALK_NODEHDR + klen;
		if (!(rd16(node + 4) & F_SUBDATA) ||
		    (rd16(node) | (size_t)rd16(node + 2) << 16) != WALK_DB_SIZE) {
			problem(c, "node %d is not a table", i);
			return;
		}
		snprintf(c->name, sizeof(c->name), "%.*s", (int)(klen < 24 ? klen : 24),
			 (const char *)node + WALK_NODEHDR);
		c->table = c->name;
		c->have_last = false;
		bool dupsort = rd16(db + WALK_DB_FLAGS) & MDB_DUPSORT;
		uint64_t items = 0;
		walk_tree(c, db, dupsort, &items);
		c->r->tables++;
	}
	(void)s;
}

/* ---- pass 2: every value decoded as entd decodes it ------------------------------------ */

static bool decode_value(struct ent_store_verify_report *r, enum ent_table t, MDB_val *k,
			 MDB_val *v, struct ent_arena *a)
{
	ProtobufCAllocator al;
	ent_pb_allocator(&al, a);
	const uint8_t *d = v->mv_data;
	ProtobufCMessage *m = NULL;
	switch (t) {
	case ENT_T_AGG: {
		struct ent_usage_state u;
		struct ent_agg seg;
		int n = ent_store_record_header(d, v->mv_size, &u);
		if (n < 0)
			return false;
		r->agg_records++;
		if (!(d[0] & 0x80))
			r->agg_unsealed++;
		for (int i = 0; i < n; i++) {
			int64_t from, to;
			ent_store_record_seg_window(d, i, &from, &to);
			if (ent_store_record_decode(d, v->mv_size, from, &u, &seg))
				return false;
		}
		return true;
	}
	case ENT_T_FEATURES:
		if (v->mv_size < 1 || d[0] > ENT_FT_STATIC)
			return false;
		m = (ProtobufCMessage *)ent__v1__feature__unpack(&al, v->mv_size - 1, d + 1);
		return m != NULL;
	case ENT_T_PLANS:
	case ENT_T_ADDONS:
		m = (ProtobufCMessage *)ent__v1__set_entitlements_request__unpack(&al, v->mv_size,
										  d);
		return m != NULL;
	case ENT_T_SUBS:
		return ent__v1__subscription__unpack(&al, v->mv_size, d) != NULL;
	case ENT_T_OVERRIDES:
		return ent__v1__customer_override__unpack(&al, v->mv_size, d) != NULL;
	case ENT_T_USAGE:
		return v->mv_size == 16;
	case ENT_T_IDEM:
		return v->mv_size == 17;
	case ENT_T_CUSTOMERS:
		return v->mv_size == 4;
	case ENT_T_ENDED:
		/* i64 end; a ninth byte (0) marks a keep-only row (ent_store_apply_ended_put). */
		return v->mv_size == 8 || (v->mv_size == 9 && d[8] == 0);
	case ENT_T_BOUNDS:
		return k->mv_size == 8 && v->mv_size >= 2 && memchr(d, 0, v->mv_size) != NULL;
	case ENT_T_PLAN_SUBS:
	case ENT_T_ADDON_SUBS:
		return v->mv_size >= 3 && memchr(d, 0, v->mv_size) != NULL;
	default:
		return true;
	}
}

static int check_content(struct ent_store *s, MDB_txn *txn, struct ent_store_verify_report *r)
{
	struct ent_arena a;
	ent_arena_init(&a, 0);
	int rc = 0;
	for (int t = 0; t < ENT_T__COUNT && !rc; t++) {
		if (!ent_store_has(s, t))
			continue;
		MDB_cursor *cur;
		if ((rc = mdb_cursor_open(txn, s->dbi[t], &cur)))
			break;
		MDB_val k, v;
		int g = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		for (; g == 0; g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			r->records++;
			if (!decode_value(r, t, &k, &v, &a) && r->problems++ == 0) {
				/* Keys join two ids with NUL: shown as '/', so both are named. */
				char key[121];
				size_t n = k.mv_size < 120 ? k.mv_size : 120;
				for (size_t i = 0; i < n; i++) {
					char ch = ((const char *)k.mv_data)[i];
					key[i] = ch >= 0x20 && ch < 0x7f ? ch : '/';
				}
				key[n] = 0;
				snprintf(r->first, sizeof(r->first),
					 "%s: the value of key '%s' does not decode",
					 ent_store_table_name(t), key);
			}
			if ((r->records & 1023) == 0)
				ent_arena_reset(&a);
		}
		mdb_cursor_close(cur);
		if (g != MDB_NOTFOUND)
			rc = g;
	}
	ent_arena_deinit(&a);
	return rc;
}

int ent_store_verify(struct ent_store *s, struct ent_store_verify_report *r)
{
	memset(r, 0, sizeof(*r));
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_envinfo info;
	MDB_stat st;
	const char *dir;
	int fd = -1;
	void *map = MAP_FAILED;
	size_t len = 0;
	uint8_t *seen = NULL;
	int r2 = 0;
	if ((rc = mdb_env_info(s->env, &info)) || (rc = mdb_env_stat(s->env, &st)) ||
	    (rc = mdb_env_get_path(s->env, &dir))) {
		r2 = ent_store_mdb_err(rc);
		goto out;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	struct stat fs;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &fs)) {
		r2 = -ENT_EIO;
		goto out;
	}
	/* The snapshot's last page: from its meta, which the open already checked fits. */
	uint64_t last = info.me_last_pgno;
	len = (size_t)(last + 1) * st.ms_psize;
	if ((uint64_t)fs.st_size < len) {
		r->problems++;
		snprintf(r->first, sizeof(r->first),
			 "data.mdb: %lld bytes, the last page ends at %zu", (long long)fs.st_size,
			 len);
		goto out;
	}
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	seen = calloc(last / 8 + 1, 1);
	if (map == MAP_FAILED || !seen) {
		r2 = -ENT_ENOMEM;
		goto out;
	}
	/* Sequential reads: the kernel may read ahead. */
	madvise(map, len, MADV_SEQUENTIAL);
	struct vctx c = {
		.base = map, .psize = st.ms_psize, .last_pgno = last, .seen = seen, .r = r};
	check_structure(s, txn, &c);
	if (!r->problems)
		r2 = check_content(s, txn, r);
	if (r2 > 0)
		r2 = ent_store_mdb_err(r2);
out:
	free(seen);
	if (map != MAP_FAILED)
		munmap(map, len);
	if (fd >= 0)
		close(fd);
	mdb_txn_abort(txn);
	if (r2)
		return r2;
	return r->problems ? -ENT_ECORRUPT : 0;
}
