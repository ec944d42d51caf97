/*
 * ent_store_view_check_batch (the interleaved B-tree walk of src/store/walk.c) must give exactly
 * the answers of ent_store_view_check, one by one: on trees of depth 1 to 4, with hits, records on
 * overflow pages (large values), unknown features and customers, not-entitled pairs, invalid
 * keys, an empty table, a corrupt record (its index reported), and a callback that stops early.
 * The view caches every branch level from the first walk (walk_low_after 0), so the cache's
 * routes (src/store/walk_cache.c) are what these answers test; test_cache_engages checks when
 * the lowest branch level is cached by default.
 * Records are written straight into the tables (store internals), so the trees are as large
 * and as irregular as the test wants. Everything lives in a temporary directory under /tmp.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/store.h"
#include "store/impl.h"

#include "fixture.h"

#define T0 1700000000000LL

static uint64_t rng = 88172645463325252ull;

static uint32_t below(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* The store fixture (tests/unit/fixture.c), with a 1 GiB map for the large trees. */
static int setup(void **state)
{
	if (fx_setup(state, "batch", (size_t)1 << 30))
		return -1;
	struct store_fx *f = *state;
	f->v->walk_low_after = 0;
	return 0;
}

static void put(struct ent_wtxn *w, enum ent_table t, const char *k, size_t kl, const void *v,
		size_t vl)
{
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	assert_int_equal(mdb_put(w->txn, w->s->dbi[t], &key, &val, 0), 0);
}

static void put_key(struct ent_wtxn *w, enum ent_table t, const char *c, const char *f,
		    const void *v, size_t vl)
{
	struct ent_key k;
	struct ent_str fs = ent_str_c(f);
	assert_int_equal(ent_store_key_make(&k, ent_str_c(c), &fs), 0);
	put(w, t, k.b, k.len, v, vl);
}

static char statics_buf[32][1024];

/* Customers cus_0..cus_{nc-1} with features f_0..f_{nf-1} (odd customers lack the last one:
   not entitled); every 97th record is large enough for overflow pages. */
static void fill(struct store_fx *f, unsigned nc, unsigned nf)
{
	struct ent_wtxn *w;
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	static uint8_t rec[ENT_RECORD_MAX];
	for (unsigned i = 0; i < nf; i++) {
		char code[32];
		snprintf(code, sizeof(code), "f_%u", i);
		uint8_t type = i % 3 == 0 ? ENT_FT_BOOLEAN : ENT_FT_METERED;
		put(w, ENT_T_FEATURES, code, strlen(code), &type, 1);
	}
	for (unsigned c = 0; c < nc; c++) {
		char cus[32];
		snprintf(cus, sizeof(cus), "cus_%u", c);
		uint8_t one[4] = {1, 0, 0, 0};
		put(w, ENT_T_CUSTOMERS, cus, strlen(cus), one, 4);
		for (unsigned i = 0; i < nf; i++) {
			if (c % 2 && i == nf - 1)
				continue;
			char code[32];
			snprintf(code, sizeof(code), "f_%u", i);
			struct ent_usage_state u = {i % 3 == 0 ? ENT_FT_BOOLEAN : ENT_FT_METERED,
						    ENT_RESET_MONTHLY, T0 - 5 * 86400000LL,
						    T0 - 86400000LL, (int64_t)(c * 7 + i) % 150};
			static struct ent_agg seg;
			memset(&seg, 0, sizeof(seg));
			seg.from = ENT_T_MIN;
			seg.to = ENT_T_MAX;
			seg.enabled = (c + i) % 5 != 0;
			seg.state = seg.enabled ? ENT_R_ENTITLED : ENT_R_NOT_ENTITLED;
			seg.limit = 100 + i;
			if ((c * 31 + i) % 97 == 0) {
				/* 3 x 1000 bytes of static values: past LMDB's node limit. */
				seg.n_static = 3;
				for (int k = 0; k < 3; k++) {
					memset(statics_buf[k], 'a' + k, 1000);
					seg.statics[k] = (struct ent_str){statics_buf[k], 1000};
				}
			}
			int n = ent_store_record_encode(&u, &seg, 1, rec, sizeof(rec));
			assert_true(n > 0);
			put_key(w, ENT_T_AGG, cus, code, rec, (size_t)n);
		}
	}
	struct ent_err err;
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);
}

struct cmp_ctx {
	struct ent_view *v;
	const struct ent_check *cs;
	size_t seen;
	size_t stop_at; /* SIZE_MAX: never */
};

static void same_result(const struct ent_check_result *a, const struct ent_check_result *b)
{
	assert_int_equal(a->d.allowed, b->d.allowed);
	assert_int_equal(a->d.reason, b->d.reason);
	assert_int_equal(a->d.feature_type, b->d.feature_type);
	assert_int_equal(a->d.limit, b->d.limit);
	assert_int_equal(a->d.used, b->d.used);
	assert_int_equal(a->d.remaining, b->d.remaining);
	assert_int_equal(a->d.next_change_at, b->d.next_change_at);
	assert_int_equal(a->d.agg != NULL, b->d.agg != NULL);
	if (a->d.agg) {
		assert_int_equal(a->d.agg->n_static, b->d.agg->n_static);
		for (uint32_t i = 0; i < a->d.agg->n_static; i++) {
			assert_int_equal(a->d.agg->statics[i].len, b->d.agg->statics[i].len);
			assert_memory_equal(a->d.agg->statics[i].p, b->d.agg->statics[i].p,
					    a->d.agg->statics[i].len);
		}
	}
}

static int compare_cb(void *ctx, size_t i, const struct ent_check_result *r)
{
	struct cmp_ctx *x = ctx;
	assert_int_equal(i, x->seen);
	static struct ent_check_result one;
	assert_int_equal(ent_store_view_check(x->v, &x->cs[i], &one), 0);
	same_result(r, &one);
	x->seen++;
	return x->seen == x->stop_at ? 42 : 0;
}

static char names[256][2][300];

/* A random check: mostly hits, some unknown/invalid keys. */
static void rnd_check(unsigned nc, unsigned nf, size_t slot, struct ent_check *c)
{
	char *cus = names[slot][0], *feat = names[slot][1];
	switch (below(12)) {
	case 0:
		snprintf(cus, 300, "cus_%u", nc + below(100)); /* unknown customer */
		snprintf(feat, 300, "f_%u", below(nf));
		break;
	case 1:
		snprintf(cus, 300, "cus_%u", below(nc));
		snprintf(feat, 300, "nope_%u", below(5)); /* unknown feature */
		break;
	case 2:
		cus[0] = '\0'; /* invalid: empty */
		snprintf(feat, 300, "f_%u", below(nf));
		break;
	case 3:
		memset(cus, 'x', 250); /* invalid: too long for a customer id */
		cus[250] = '\0';
		snprintf(feat, 300, "f_%u", below(nf));
		break;
	default:
		snprintf(cus, 300, "cus_%u", below(nc));
		snprintf(feat, 300, "f_%u", below(nf));
		break;
	}
	c->customer = ent_str_c(cus);
	c->feature = ent_str_c(feat);
	c->quantity = 1 + below(3);
	c->at = T0;
}

static void run_batches(struct store_fx *f, unsigned nc, unsigned nf, int rounds)
{
	struct ent_check cs[256];
	for (int r = 0; r < rounds; r++) {
		size_t n = 1 + below(200);
		for (size_t i = 0; i < n; i++)
			rnd_check(nc, nf, i, &cs[i]);
		assert_int_equal(ent_store_view_begin(f->v), 0);
		struct cmp_ctx x = {f->v, cs, 0, SIZE_MAX};
		assert_int_equal(ent_store_view_check_batch(f->v, cs, n, compare_cb, &x, NULL), 0);
		assert_int_equal(x.seen, n);
		ent_store_view_end(f->v);
	}
	/* The walk found every present key itself (LMDB's fallback would hide a walk that
	   descends wrongly), and it was on: these answers are the walk's. */
	assert_int_equal(f->v->walk_missed, 0);
	assert_int_equal(ent_store_walk(f->s, NULL), !f->s->walk_off);
}

static uint64_t fallbacks(struct store_fx *f)
{
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.walk_enabled, ent_store_walk(f->s, NULL));
	return st.walk_fallbacks;
}

static void test_empty_table(void **state)
{
	struct store_fx *f = *state;
	run_batches(f, 10, 3, 20);
}

static void test_depths(void **state)
{
	struct store_fx *f = *state;
	/* Grow the same table: a few records (one leaf), then thousands (deeper trees). */
	static const unsigned sizes[][2] = {{2, 3}, {40, 5}, {800, 6}, {9000, 8}};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(f, sizes[i][0], sizes[i][1]);
		run_batches(f, sizes[i][0], sizes[i][1], 200);
	}
	MDB_stat st;
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(f->s->env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_stat(txn, f->s->dbi[ENT_T_AGG], &st), 0);
	mdb_txn_abort(txn);
	/* The point of the test: several levels and overflow pages were walked, and the
	   cache routed keys. */
	assert_true(st.ms_depth >= 3);
	assert_true(st.ms_overflow_pages > 0);
	uint64_t routed, narrowed;
	ent_store_walk_cache_counts(f->v, &routed, &narrowed);
	assert_true(routed > 1000);
}

/* A customer id of ~200 bytes that starts with its number: long separators make a deep tree
   out of few records, and distinct first bytes give the upper pages' prefixes work to do. */
static void long_id(char *out, unsigned c)
{
	snprintf(out, 300, "%06u-%0190u", c, c); /* 197 bytes: within ENT_MAX_CUSTOMER_ID */
}

/* Put (or with \a del, drop) the f_0..f_{nf-1} records of customers [from, to). */
static void put_range(struct store_fx *f, unsigned from, unsigned to, unsigned nf, bool del,
		      int64_t used)
{
	struct ent_wtxn *w;
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	static uint8_t rec[ENT_RECORD_MAX];
	for (unsigned c = from; c < to; c++) {
		char cus[300], code[32];
		long_id(cus, c);
		for (unsigned i = 0; i < nf; i++) {
			snprintf(code, sizeof(code), "f_%u", i);
			struct ent_key k;
			struct ent_str fs = ent_str_c(code);
			assert_int_equal(ent_store_key_make(&k, ent_str_c(cus), &fs), 0);
			MDB_val key = ent_store_key_val(&k);
			if (del) {
				int rc = mdb_del(w->txn, w->s->dbi[ENT_T_AGG], &key, NULL);
				assert_true(rc == 0 || rc == MDB_NOTFOUND);
				continue;
			}
			struct ent_usage_state u = {ENT_FT_METERED, ENT_RESET_MONTHLY,
						    T0 - 5 * 86400000LL, T0 - 86400000LL, used};
			static struct ent_agg seg;
			memset(&seg, 0, sizeof(seg));
			seg.from = ENT_T_MIN;
			seg.to = ENT_T_MAX;
			seg.enabled = true;
			seg.state = ENT_R_ENTITLED;
			seg.limit = 1000 + c;
			int n = ent_store_record_encode(&u, &seg, 1, rec, sizeof(rec));
			assert_true(n > 0);
			put(w, ENT_T_AGG, k.b, k.len, rec, (size_t)n);
		}
	}
	struct ent_err err;
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);
}

/*
 * One view across snapshots whose branch pages differ. The cache keeps, per snapshot, the
 * 8 bytes after the shared prefix of every branch page's separators and the child numbers
 * (walk_cache.c); each round rewrites a range of customers (splits or merges), then checks
 * every answer against ent_store_view_check and that the walk missed nothing. The ~200-byte ids
 * make a deep tree out of few records and make keys tie separators on the kept bytes (the
 * feature comes after them). It fails when the bound is off by one, when ties are ignored, and
 * when a new snapshot keeps the old entries (each tried).
 */
static void test_snapshots_change(void **state)
{
	struct store_fx *f = *state;
	enum {
		NC = 3000,
		NF = 4
	};
	put_range(f, 0, NC, NF, false, 1);
	static char ids[128][300];
	for (int round = 0; round < 60; round++) {
		unsigned from = below(NC), len = 1 + below(NC / 4);
		unsigned to = from + len > NC ? NC : from + len;
		put_range(f, from, to, NF, round % 2 == 0, round);
		struct ent_check cs[128];
		for (size_t i = 0; i < 128; i++) {
			long_id(ids[i], below(NC));
			cs[i] = (struct ent_check){ent_str_c(ids[i]), ENT_STR_LIT("f_1"), 1, T0};
		}
		assert_int_equal(ent_store_view_begin(f->v), 0);
		struct cmp_ctx x = {f->v, cs, 0, SIZE_MAX};
		assert_int_equal(ent_store_view_check_batch(f->v, cs, 128, compare_cb, &x, NULL),
				 0);
		assert_int_equal(x.seen, 128);
		ent_store_view_end(f->v);
	}
	assert_int_equal(f->v->walk_missed, 0);
	MDB_stat st;
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(f->s->env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_stat(txn, f->s->dbi[ENT_T_AGG], &st), 0);
	mdb_txn_abort(txn);
	assert_true(st.ms_depth >= 4); /* three branch levels */
	uint64_t routed, narrowed;
	ent_store_walk_cache_counts(f->v, &routed, &narrowed);
	assert_true(routed > 0);
	assert_true(narrowed > 0); /* ties were resolved on the page */
}

/* Commit a write that changes no answer: a new snapshot (LMDB transaction id). */
static void new_snapshot(struct store_fx *f)
{
	struct ent_wtxn *w;
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	uint8_t one[4] = {1, 0, 0, 0};
	put(w, ENT_T_CUSTOMERS, "cus_extra", 9, one, 4);
	struct ent_err err;
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);
}

/* Keys routed by the cache during one batch of \a n random checks. */
static uint64_t routed_by(struct store_fx *f, unsigned nc, unsigned nf, size_t n)
{
	struct ent_check cs[256];
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i][0], 300, "cus_%u", below(nc));
		snprintf(names[i][1], 300, "f_%u", below(nf));
		cs[i] = (struct ent_check){ent_str_c(names[i][0]), ent_str_c(names[i][1]), 1, T0};
	}
	uint64_t before, after, narrowed;
	ent_store_walk_cache_counts(f->v, &before, &narrowed);
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct cmp_ctx x = {f->v, cs, 0, SIZE_MAX};
	assert_int_equal(ent_store_view_check_batch(f->v, cs, n, compare_cb, &x, NULL), 0);
	ent_store_view_end(f->v);
	ent_store_walk_cache_counts(f->v, &after, &narrowed);
	return after - before;
}

/*
 * The lowest branch level is cached only once a snapshot has served walk_low_after walks,
 * and a new snapshot starts over. On a tree of three levels the root is the only upper page,
 * so a batch of 200 routes at most 200 keys while the lowest level is searched on the pages,
 * and nearly twice that once it is cached too.
 */
static void test_cache_engages(void **state)
{
	struct store_fx *f = *state;
	fill(f, 9000, 8);
	f->v->walk_low_after = 300;
	assert_true(routed_by(f, 9000, 8, 200) <= 200); /* 200 walks: the root only */
	assert_true(routed_by(f, 9000, 8, 200) > 300);	/* 400: both levels */
	assert_true(routed_by(f, 9000, 8, 200) > 300);
	new_snapshot(f);
	assert_true(routed_by(f, 9000, 8, 200) <= 200); /* 200 walks of it */
	assert_true(routed_by(f, 9000, 8, 200) > 300);
	MDB_stat st;
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(f->s->env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_stat(txn, f->s->dbi[ENT_T_AGG], &st), 0);
	mdb_txn_abort(txn);
	assert_int_equal(st.ms_depth, 3);
	assert_int_equal(f->v->walk_missed, 0);
}

static void test_stop_and_corrupt(void **state)
{
	struct store_fx *f = *state;
	fill(f, 300, 4);
	struct ent_check cs[64];
	for (size_t i = 0; i < 64; i++) {
		snprintf(names[i][0], 300, "cus_%zu", i);
		snprintf(names[i][1], 300, "f_0");
		cs[i] = (struct ent_check){ent_str_c(names[i][0]), ent_str_c(names[i][1]), 1, T0};
	}
	/* A callback's non-zero answer stops the batch and is returned. */
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct cmp_ctx x = {f->v, cs, 0, 20};
	assert_int_equal(ent_store_view_check_batch(f->v, cs, 64, compare_cb, &x, NULL), 42);
	assert_int_equal(x.seen, 20);
	ent_store_view_end(f->v);

	/* A record that does not decode: -ENT_ECORRUPT, and which check it was. */
	struct ent_wtxn *w;
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	put_key(w, ENT_T_AGG, "cus_37", "f_0", "garbage", 7);
	struct ent_err err;
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct cmp_ctx y = {f->v, cs, 0, SIZE_MAX};
	size_t bad = 0;
	assert_int_equal(ent_store_view_check_batch(f->v, cs, 64, compare_cb, &y, &bad),
			 -ENT_ECORRUPT);
	assert_int_equal(bad, 37);
	assert_int_equal(y.seen, 37);
	ent_store_view_end(f->v);
}

/*
 * entd_store_walk_fallbacks_total counts the lookups the walk hands to mdb_get: a value on
 * overflow pages is one (cus_0/f_0 is one of fill's large records), a key the walk does not
 * find is not (it is only confirmed by mdb_get), nor is a plain hit.
 */
static void test_fallbacks_counted(void **state)
{
	struct store_fx *f = *state;
	fill(f, 40, 5);
	const char *why = "unset";
	assert_true(ent_store_walk(f->s, &why));
	assert_null(why);
	uint64_t before = fallbacks(f);
	struct ent_check cs[] = {
		{ENT_STR_LIT("cus_0"), ENT_STR_LIT("f_0"), 1, T0},
		{ENT_STR_LIT("cus_2"), ENT_STR_LIT("f_1"), 1, T0},
		{ENT_STR_LIT("nobody"), ENT_STR_LIT("f_1"), 1, T0},
		{ENT_STR_LIT("cus_0"), ENT_STR_LIT("f_0"), 1, T0},
	};
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct cmp_ctx x = {f->v, cs, 0, SIZE_MAX};
	assert_int_equal(ent_store_view_check_batch(f->v, cs, 4, compare_cb, &x, NULL), 0);
	assert_int_equal(x.seen, 4);
	ent_store_view_end(f->v);
	assert_int_equal(fallbacks(f) - before, 2);
}

/*
 * db.batched_walk: false (ent_store_opts.no_walk): the store says the walk is off and why,
 * batches give the same answers through mdb_get, the cache is never used, and nothing counts
 * as a fallback (the walk was not asked).
 */
static void test_walk_off(void **state)
{
	struct store_fx *f = *state;
	ent_store_view_free(f->v);
	ent_store_close(f->s);
	struct ent_store_opts o = {.path = f->dir, .map_size = (size_t)1 << 30, .no_walk = true};
	struct ent_err err = {0};
	assert_int_equal(ent_store_open(&o, &f->s, &err), 0);
	assert_int_equal(ent_store_view_new(f->s, &f->v), 0);
	f->v->walk_low_after = 0;
	const char *why = NULL;
	assert_false(ent_store_walk(f->s, &why));
	assert_non_null(why);
	assert_non_null(strstr(why, "db.batched_walk"));
	fill(f, 9000, 8);
	run_batches(f, 9000, 8, 50);
	uint64_t routed, narrowed;
	ent_store_walk_cache_counts(f->v, &routed, &narrowed);
	assert_int_equal(routed, 0);
	assert_int_equal(fallbacks(f), 0);
}

static void test_view_not_begun(void **state)
{
	struct store_fx *f = *state;
	struct ent_check c = {ENT_STR_LIT("cus_1"), ENT_STR_LIT("f_1"), 1, T0};
	struct cmp_ctx x = {f->v, &c, 0, SIZE_MAX};
	assert_int_equal(ent_store_view_check_batch(f->v, &c, 1, compare_cb, &x, NULL),
			 -ENT_EINVAL);
	assert_int_equal(x.seen, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_table, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_depths, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshots_change, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_cache_engages, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_corrupt, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_view_not_begun, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fallbacks_counted, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_walk_off, setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
