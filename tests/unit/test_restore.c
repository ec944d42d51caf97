/*
 * ent_store_restore (src/store/restore.c): the tables of another database replace every table
 * of a live store inside one write transaction - what a fleet replica's re-bootstrap in place
 * does (docs/fleet.md). Two LMDB directories under /tmp, removed at the end; fixed instants.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ent/store.h"
#include "ent/v1/event.pb-c.h"

#define T0 1700000000000LL

struct fx {
	char live[64], src[64];
	struct ent_arena arena;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct ent_store *open_store(const char *dir, size_t map_size)
{
	struct ent_store *s;
	/* No fsync per commit: thousands of small setup commits; nothing here tests a crash. */
	struct ent_store_opts o = {.path = dir, .map_size = map_size, .no_sync = true};
	struct ent_err err = {0};
	if (ent_store_open(&o, &s, &err))
		fail_msg("open %s: %s", dir, err.msg);
	return s;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->live, "/tmp/entd-test-restore-live-XXXXXX");
	strcpy(f->src, "/tmp/entd-test-restore-src-XXXXXX");
	if (!mkdtemp(f->live) || !mkdtemp(f->src))
		return -1;
	ent_arena_init(&f->arena, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ent_arena_deinit(&f->arena);
	rm_rf(f->live);
	rm_rf(f->src);
	free(f);
	return 0;
}

static void apply_ok(struct fx *f, struct ent_store *s, Ent__V1__Event *ev)
{
	struct ent_wtxn *w;
	struct ent_apply_result res;
	struct ent_err err = {0};
	ent_arena_reset(&f->arena);
	assert_int_equal(ent_store_wtxn_begin(s, &w), 0);
	if (ent_store_apply(w, ev, &f->arena, &res))
		fail_msg("event kind %d: %s", (int)ev->kind_case, res.err.msg);
	if (ent_store_wtxn_commit(w, &err))
		fail_msg("commit: %s", err.msg);
}

static void feature(struct fx *f, struct ent_store *s, const char *code)
{
	Ent__V1__Feature ft = ENT__V1__FEATURE__INIT;
	ft.code = (char *)code;
	ft.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = T0;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	ev.upsert_feature = &ft;
	apply_ok(f, s, &ev);
}

static void plan(struct fx *f, struct ent_store *s, const char *code, const char *feat)
{
	Ent__V1__Grant g = ENT__V1__GRANT__INIT, *gp = &g;
	g.feature_code = (char *)feat;
	Ent__V1__SetEntitlementsRequest req = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	req.code = (char *)code;
	req.name = (char *)code;
	req.n_entitlements = 1;
	req.entitlements = &gp;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = T0;
	ev.kind_case = ENT__V1__EVENT__KIND_SET_PLAN;
	ev.set_plan = &req;
	apply_ok(f, s, &ev);
}

static void subscribe(struct fx *f, struct ent_store *s, const char *customer, const char *p)
{
	char id[64];
	snprintf(id, sizeof(id), "sub_%s", customer);
	Ent__V1__Subscription sub = ENT__V1__SUBSCRIPTION__INIT;
	sub.id = id;
	sub.customer_id = (char *)customer;
	sub.plan_code = (char *)p;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = T0;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	ev.upsert_subscription = &sub;
	apply_ok(f, s, &ev);
}

static void stamp(struct ent_store *s, uint64_t seq, const char *stream)
{
	struct ent_wtxn *w;
	struct ent_err err = {0};
	assert_int_equal(ent_store_wtxn_begin(s, &w), 0);
	assert_int_equal(ent_store_wtxn_set_seq(w, seq), 0);
	assert_int_equal(ent_store_wtxn_put_meta(w, "fleet_stream", stream), 0);
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);
}

/* Whether \a customer is entitled to \a feat in the view's current snapshot. */
static bool allowed(struct ent_view *v, const char *customer, const char *feat)
{
	static struct ent_check_result r;
	struct ent_check c = {ent_str_c(customer), ent_str_c(feat), 1, T0 + 1000};
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	return r.d.allowed;
}

static bool has(struct ent_view *v, enum ent_table t, const char *key)
{
	struct ent_str val;
	return ent_store_view_get(v, t, ent_str_c(key), &val) == 0;
}

static int count_kv(void *ctx, struct ent_str key, struct ent_str val)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

/* The live store (old catalog, seq 5) and the source (another one, seq 777, 2000 features and
 * 50 subscriptions on one plan: several pages, and 50 duplicates under one plan_subs key). */
static void build(struct fx *f, struct ent_store *live, struct ent_store *src)
{
	feature(f, live, "old_feat");
	plan(f, live, "old_plan", "old_feat");
	subscribe(f, live, "old_cust", "old_plan");
	stamp(live, 5, "S/1");
	char code[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(code, sizeof(code), "f_%04d", i);
		feature(f, src, code);
	}
	plan(f, src, "p", "f_0007");
	for (int i = 0; i < 50; i++) {
		snprintf(code, sizeof(code), "c%02d", i);
		subscribe(f, src, code, "p");
	}
	stamp(src, 777, "S/1");
}

static void test_restore_swaps_everything_at_commit(void **state)
{
	struct fx *f = *state;
	struct ent_store *live = open_store(f->live, 0), *src = open_store(f->src, 0);
	build(f, live, src);
	struct ent_store_stats want;
	assert_int_equal(ent_store_stats(src, &want), 0);
	ent_store_close(src);

	struct ent_view *old, *v;
	assert_int_equal(ent_store_view_new(live, &old), 0);
	assert_int_equal(ent_store_view_new(live, &v), 0);
	/* A reader in the middle of a check across the swap. */
	assert_int_equal(ent_store_view_begin(old), 0);
	assert_true(allowed(old, "old_cust", "old_feat"));

	struct ent_wtxn *w;
	struct ent_err err = {0};
	struct ent_store_restore_stats st;
	assert_int_equal(ent_store_wtxn_begin(live, &w), 0);
	int r = ent_store_restore(w, f->src, &st, &err);
	if (r)
		fail_msg("restore: %s", err.msg);
	assert_int_equal(st.seq, 777);
	assert_int_equal(ent_store_wtxn_seq(w), 777);
	assert_true(st.entries > 2000);
	assert_true(st.src_bytes > 0);
	/* Before the commit a new reader still sees the whole old state. */
	assert_int_equal(ent_store_view_begin(v), 0);
	assert_int_equal(ent_store_view_seq(v), 5);
	assert_true(allowed(v, "old_cust", "old_feat"));
	assert_false(has(v, ENT_T_FEATURES, "f_0000"));
	ent_store_view_end(v);
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);

	/* The reader that began before keeps its snapshot, whole. */
	assert_int_equal(ent_store_view_seq(old), 5);
	assert_true(allowed(old, "old_cust", "old_feat"));
	assert_false(has(old, ENT_T_FEATURES, "f_1999"));
	ent_store_view_end(old);

	/* Every new snapshot is the source's, whole: old rows gone, every table copied. */
	assert_int_equal(ent_store_view_begin(v), 0);
	assert_int_equal(ent_store_view_seq(v), 777);
	assert_false(has(v, ENT_T_FEATURES, "old_feat"));
	assert_false(has(v, ENT_T_PLANS, "old_plan"));
	assert_true(has(v, ENT_T_FEATURES, "f_0000"));
	assert_true(has(v, ENT_T_FEATURES, "f_1999"));
	assert_true(allowed(v, "c00", "f_0007"));
	assert_true(allowed(v, "c49", "f_0007"));
	assert_false(allowed(v, "c00", "f_0008"));
	assert_false(allowed(v, "old_cust", "old_feat"));
	uint64_t dups = 0;
	assert_int_equal(ent_store_view_scan(v, ENT_T_PLAN_SUBS, ENT_STR_LIT("p"),
					     (struct ent_str){"", 0}, 0, count_kv, &dups),
			 0);
	assert_int_equal(dups, 50);
	ent_store_view_end(v);
	struct ent_store_stats got;
	assert_int_equal(ent_store_stats(live, &got), 0);
	assert_int_equal(got.seq, 777);
	assert_int_equal(got.features, want.features);
	assert_int_equal(got.plans, want.plans);
	assert_int_equal(got.subscriptions, want.subscriptions);
	assert_int_equal(got.customers, want.customers);
	assert_int_equal(got.aggregates, want.aggregates);
	char id[64];
	assert_int_equal(ent_store_get_meta(live, "fleet_stream", id, sizeof(id)), 0);
	assert_string_equal(id, "S/1");
	ent_store_view_free(old);
	ent_store_view_free(v);
	ent_store_close(live);

	/* Durable: a reopen finds the new state. */
	live = open_store(f->live, 0);
	assert_int_equal(ent_store_stats(live, &got), 0);
	assert_int_equal(got.seq, 777);
	assert_int_equal(got.features, want.features);
	ent_store_close(live);
}

static void test_restore_refuses_a_small_map(void **state)
{
	struct fx *f = *state;
	struct ent_store *live = open_store(f->live, 8 << 20), *src = open_store(f->src, 0);
	build(f, live, src);
	ent_store_close(src);
	struct ent_wtxn *w;
	struct ent_err err = {0};
	assert_int_equal(ent_store_wtxn_begin(live, &w), 0);
	assert_int_equal(ent_store_restore(w, f->src, NULL, &err), -ENT_EFULL);
	assert_non_null(strstr(err.msg, "db.map_size"));
	ent_store_wtxn_abort(w);
	/* Nothing changed. */
	struct ent_store_stats got;
	assert_int_equal(ent_store_stats(live, &got), 0);
	assert_int_equal(got.seq, 5);
	assert_int_equal(got.features, 1);
	ent_store_close(live);
}

static void test_restore_refuses_a_non_database(void **state)
{
	struct fx *f = *state;
	struct ent_store *live = open_store(f->live, 0);
	feature(f, live, "old_feat");
	struct ent_wtxn *w;
	struct ent_err err = {0};
	assert_int_equal(ent_store_wtxn_begin(live, &w), 0);
	/* f->src is an empty directory: no data.mdb. */
	assert_true(ent_store_restore(w, f->src, NULL, &err) < 0);
	assert_true(err.msg[0] != '\0');
	ent_store_wtxn_abort(w);
	struct ent_store_stats got;
	assert_int_equal(ent_store_stats(live, &got), 0);
	assert_int_equal(got.features, 1);
	assert_int_equal(got.seq, 1);
	ent_store_close(live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_restore_swaps_everything_at_commit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_a_small_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refuses_a_non_database, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
