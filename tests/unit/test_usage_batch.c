/*
 * The ReportUsageBatch event through ent_store_apply (src/store/apply_usage_batch.c), in a
 * temporary LMDB directory: per-record results, duplicates within and across batches and single
 * reports, refusals that fail alone and write nothing, period rules, one sequence per batch, the
 * same state as the same records reported one by one (determinism: only the event's `at` counts),
 * and a full map that fails the whole batch and leaves nothing behind.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ent/store.h"
#include "ent/v1/event.pb-c.h"
#include "fixture.h"

#define T0  1700000000000LL /* 2023-11-14T22:13:20Z */
#define DAY 86400000LL

/* The store fixture: tests/unit/fixture.c. */
static int setup(void **state)
{
	return fx_setup(state, "ubatch", 0);
}

static void feature(struct store_fx *f, const char *code, Ent__V1__FeatureType type)
{
	Ent__V1__Feature ft = ENT__V1__FEATURE__INIT;
	ft.code = (char *)code;
	ft.type = type;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = T0;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	ev.upsert_feature = &ft;
	fx_apply_ok(f, &ev);
}

/* api_calls (metered, 1000 a month), sso (boolean) on plan p; customers acme and beta. */
static void catalog(struct store_fx *f)
{
	feature(f, "api_calls", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	feature(f, "sso", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	Ent__V1__Grant g[2] = {ENT__V1__GRANT__INIT, ENT__V1__GRANT__INIT};
	g[0].feature_code = "api_calls";
	g[0].usage_limit = 1000;
	g[0].usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;
	g[1].feature_code = "sso";
	Ent__V1__Grant *gp[2] = {&g[0], &g[1]};
	Ent__V1__SetEntitlementsRequest plan = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	plan.code = "p";
	plan.n_entitlements = 2;
	plan.entitlements = gp;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = T0;
	ev.kind_case = ENT__V1__EVENT__KIND_SET_PLAN;
	ev.set_plan = &plan;
	fx_apply_ok(f, &ev);
	const char *cus[2] = {"acme", "beta"};
	for (int i = 0; i < 2; i++) {
		Ent__V1__Subscription sub = ENT__V1__SUBSCRIPTION__INIT;
		sub.id = "s";
		sub.customer_id = (char *)cus[i];
		sub.plan_code = "p";
		sub.billing_anchor = T0;
		Ent__V1__Event e2 = ENT__V1__EVENT__INIT;
		e2.at = T0;
		e2.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
		e2.upsert_subscription = &sub;
		fx_apply_ok(f, &e2);
	}
}

/* A batch of up to 1100 records built in static storage. */
struct batch {
	Ent__V1__ReportUsageRequest r[1100];
	Ent__V1__ReportUsageRequest *p[1100];
	char keys[1100][32];
	size_t n;
};

static void add(struct batch *b, const char *customer, const char *feat, int64_t q, const char *key,
		int64_t ts)
{
	Ent__V1__ReportUsageRequest *r = &b->r[b->n];
	ent__v1__report_usage_request__init(r);
	r->customer_id = (char *)customer;
	r->feature_code = (char *)feat;
	r->quantity = q;
	r->timestamp = ts;
	snprintf(b->keys[b->n], sizeof(b->keys[0]), "%s", key);
	r->idempotency_key = b->keys[b->n];
	b->p[b->n] = r;
	b->n++;
}

static int send(struct store_fx *f, struct batch *b, int64_t at)
{
	Ent__V1__ReportUsageBatch pl = ENT__V1__REPORT_USAGE_BATCH__INIT;
	pl.n_records = b->n;
	pl.records = b->p;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = at;
	ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE_BATCH;
	ev.report_usage_batch = &pl;
	return fx_apply(f, &ev);
}

static int64_t used(struct store_fx *f, const char *customer, int64_t at)
{
	static struct ent_check_result r;
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct ent_check c = {ent_str_c(customer), ent_str_c("api_calls"), 1, at};
	assert_int_equal(ent_store_view_check(f->v, &c, &r), 0);
	int64_t u = r.d.used;
	ent_store_view_end(f->v);
	return u;
}

static uint64_t seq(struct store_fx *f)
{
	assert_int_equal(ent_store_view_begin(f->v), 0);
	uint64_t s = ent_store_view_seq(f->v);
	ent_store_view_end(f->v);
	return s;
}

static void test_results_and_duplicates(void **state)
{
	struct store_fx *f = *state;
	static struct batch b;
	catalog(f);
	uint64_t s0 = seq(f);
	b.n = 0;
	add(&b, "acme", "api_calls", 5, "k1", 0);
	add(&b, "beta", "api_calls", 7, "k1", 0); /* keys are per customer */
	add(&b, "acme", "api_calls", 100, "k1", 0);
	add(&b, "acme", "api_calls", 3, "k2", T0 + 5);
	assert_int_equal(send(f, &b, T0 + 10), 0);
	assert_int_equal(f->res.n_records, 4);
	assert_int_equal(f->res.seq, s0 + 1); /* one event, one sequence number */
	const struct ent_usage_result *x = f->res.records;
	assert_int_equal(x[0].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(x[0].usage.used, 5);
	assert_int_equal(x[1].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(x[1].usage.used, 7);
	assert_int_equal(x[2].outcome, ENT_USAGE_DUPLICATE);
	assert_int_equal(x[2].usage.used, 5);
	assert_int_equal(x[3].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(x[3].usage.used, 8);
	assert_int_equal(x[3].usage.remaining, 992);
	assert_null(x[3].usage.agg);
	assert_int_equal(used(f, "acme", T0 + 11), 8);
	assert_int_equal(used(f, "beta", T0 + 11), 7);

	/* Across batches, and a single report of a batch's key. */
	b.n = 0;
	add(&b, "acme", "api_calls", 5, "k2", 0);
	add(&b, "acme", "api_calls", 1, "k3", 0);
	assert_int_equal(send(f, &b, T0 + 20), 0);
	assert_int_equal(f->res.records[0].outcome, ENT_USAGE_DUPLICATE);
	assert_int_equal(f->res.records[1].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(f->res.records[1].usage.used, 9);
	Ent__V1__ReportUsageRequest one = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	one.customer_id = "acme";
	one.feature_code = "api_calls";
	one.quantity = 4;
	one.idempotency_key = "k3";
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = T0 + 21;
	ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	ev.report_usage = &one;
	fx_apply_ok(f, &ev);
	assert_true(f->res.duplicate);
	assert_int_equal(used(f, "acme", T0 + 22), 9);

	/* Across a reopen of the store (what a restart does). */
	fx_close(f);
	fx_open(f, 0);
	b.n = 0;
	add(&b, "acme", "api_calls", 5, "k1", 0);
	assert_int_equal(send(f, &b, T0 + 30), 0);
	assert_int_equal(f->res.records[0].outcome, ENT_USAGE_DUPLICATE);
	assert_int_equal(used(f, "acme", T0 + 31), 9);
}

static void test_refusals_fail_alone(void **state)
{
	struct store_fx *f = *state;
	static struct batch b;
	catalog(f);
	char long_key[300];
	memset(long_key, 'k', 256);
	long_key[256] = '\0';
	b.n = 0;
	add(&b, "acme", "api_calls", 1, "a0", 0);
	add(&b, "acme", "api_calls", 0, "a1", 0);   /* 1: quantity */
	add(&b, "nobody", "api_calls", 1, "a2", 0); /* 2: unknown customer */
	add(&b, "acme", "sso", 1, "a3", 0);	    /* 3: not metered */
	add(&b, "acme", "nope", 1, "a4", 0);	    /* 4: unknown feature */
	add(&b, "acme", "api_calls", 1, "", 0);	    /* 5: no key */
	add(&b, "acme", "api_calls", 1, "a6", -1);  /* 6: timestamp */
	add(&b, "acme", "api_calls", 2, "a7", 0);
	/* 8: a key too long (the static key buffer cuts it: build it by hand) */
	add(&b, "acme", "api_calls", 1, "x", 0);
	b.r[8].idempotency_key = long_key;
	add(&b, "acme", "api_calls", INT64_MAX, "a9", 0); /* 9: the counter would overflow */
	assert_int_equal(send(f, &b, T0 + 10), 0);
	const struct ent_usage_result *x = f->res.records;
	static const struct {
		int code;
		const char *frag;
	} want[10] = {
		{0, NULL},
		{ENT_EINVAL, "quantity"},
		{ENT_ENOTFOUND, "customer_id: unknown customer 'nobody'"},
		{ENT_EINVAL, "feature_code: feature 'sso' is not metered"},
		{ENT_EINVAL, "feature_code: unknown feature 'nope'"},
		{ENT_EINVAL, "idempotency_key"},
		{ENT_EINVAL, "timestamp"},
		{0, NULL},
		{ENT_EINVAL, "idempotency_key"},
		{ENT_EINVAL, "quantity: overflows the counter"},
	};
	for (int i = 0; i < 10; i++) {
		if (!want[i].code) {
			assert_int_equal(x[i].outcome, ENT_USAGE_COUNTED);
			continue;
		}
		assert_int_equal(x[i].outcome, ENT_USAGE_REFUSED);
		assert_int_equal(x[i].code, want[i].code);
		assert_non_null(x[i].msg);
		if (!strstr(x[i].msg, want[i].frag))
			fail_msg("record %d: '%s' lacks '%s'", i, x[i].msg, want[i].frag);
	}
	assert_int_equal(used(f, "acme", T0 + 11), 3);
	/* The refused records stored no key: corrected, they count. */
	b.n = 0;
	add(&b, "acme", "api_calls", 4, "a1", 0);
	add(&b, "acme", "api_calls", 5, "a9", 0);
	assert_int_equal(send(f, &b, T0 + 12), 0);
	assert_int_equal(f->res.records[0].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(f->res.records[1].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(used(f, "acme", T0 + 13), 12);
}

static void test_limits_and_periods(void **state)
{
	struct store_fx *f = *state;
	static struct batch b;
	catalog(f);
	uint64_t s0 = seq(f);
	b.n = 0;
	assert_int_equal(send(f, &b, T0 + 1), -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "records: must hold 1..1000 records (got 0)"));
	char key[32];
	for (int i = 0; i < 1001; i++) {
		snprintf(key, sizeof(key), "m%d", i);
		add(&b, "acme", "api_calls", 1, key, 0);
	}
	assert_int_equal(send(f, &b, T0 + 1), -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "(got 1001)"));
	assert_int_equal(seq(f), s0);
	b.n = 1000;
	assert_int_equal(send(f, &b, T0 + 1), 0);
	assert_int_equal(f->res.records[999].usage.used, 1000);
	assert_int_equal(seq(f), s0 + 1);

	/* Periods: monthly from T0. A batch at T0 + 40 days: a record of the first month (closed
	   once the second has counted) and ones of the second. A timestamp after the event's
	   instant counts at the instant (clock skew). */
	int64_t at = T0 + 40 * DAY;
	b.n = 0;
	add(&b, "beta", "api_calls", 2, "p0", T0 + DAY);     /* first month: counted there */
	add(&b, "beta", "api_calls", 3, "p1", 0);	     /* now: the new month, from zero */
	add(&b, "beta", "api_calls", 4, "p2", T0 + 2 * DAY); /* first month again: closed */
	add(&b, "beta", "api_calls", 5, "p3", at + DAY);     /* future: counts now */
	assert_int_equal(send(f, &b, at), 0);
	const struct ent_usage_result *x = f->res.records;
	assert_int_equal(x[0].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(x[1].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(x[1].usage.used, 3);
	assert_int_equal(x[2].outcome, ENT_USAGE_NOT_COUNTED);
	assert_int_equal(x[2].usage.used, 3);
	assert_int_equal(x[3].outcome, ENT_USAGE_COUNTED);
	assert_int_equal(x[3].usage.used, 8);
	assert_true(x[3].usage.period_start <= at && at < x[3].usage.period_end);
	assert_int_equal(used(f, "beta", at), 8);
	/* A not-counted record keeps its key. */
	b.n = 0;
	add(&b, "beta", "api_calls", 4, "p2", 0);
	assert_int_equal(send(f, &b, at + 1), 0);
	assert_int_equal(f->res.records[0].outcome, ENT_USAGE_DUPLICATE);
}

/* The same records as one batch or as single reports: the same counters and answers. */
static void test_same_as_single_reports(void **state)
{
	struct store_fx *f = *state;
	static struct batch b;
	catalog(f);
	char key[32];
	b.n = 0;
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "b%d", i % 250); /* 50 repeats */
		add(&b, i % 3 ? "acme" : "beta", "api_calls", 1 + i % 7, key, i % 5 ? 0 : T0 + i);
	}
	assert_int_equal(send(f, &b, T0 + 1000), 0);
	static struct ent_usage_result batch_res[300];
	memcpy(batch_res, f->res.records, sizeof(batch_res));
	int64_t ua = used(f, "acme", T0 + 1001), ub = used(f, "beta", T0 + 1001);
	/* Single reports under other keys, on a second pair of customers would need another
	   catalog; instead the keys get a prefix and the counters are compared by difference. */
	for (int i = 0; i < 300; i++) {
		Ent__V1__ReportUsageRequest one = b.r[i];
		char k2[40];
		snprintf(k2, sizeof(k2), "s-%s", b.keys[i]);
		one.idempotency_key = k2;
		Ent__V1__Event ev = ENT__V1__EVENT__INIT;
		ev.at = T0 + 1000;
		ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
		ev.report_usage = &one;
		fx_apply_ok(f, &ev);
		assert_int_equal(f->res.duplicate, batch_res[i].outcome == ENT_USAGE_DUPLICATE);
		assert_int_equal(batch_res[i].outcome == ENT_USAGE_COUNTED, f->res.counted);
	}
	assert_int_equal(used(f, "acme", T0 + 1001), 2 * ua);
	assert_int_equal(used(f, "beta", T0 + 1001), 2 * ub);
}

/* A batch that does not fit the map fails whole with EFULL: nothing of it is written. */
static void test_map_full_fails_whole(void **state)
{
	struct store_fx *f = *state;
	fx_close(f);
	fx_rm_rf(f->dir);
	assert_int_equal(mkdir(f->dir, 0700), 0);
	fx_open(f, 256 * 1024);
	catalog(f);
	static struct batch b;
	char key[32];
	int64_t total = 0;
	int r = 0;
	for (int round = 0; round < 200 && !r; round++) {
		b.n = 0;
		for (int i = 0; i < 500; i++) {
			snprintf(key, sizeof(key), "f%d-%d-%s", round, i, "padding-padding");
			add(&b, i % 2 ? "acme" : "beta", "api_calls", 1, key, 0);
		}
		int64_t before = used(f, "acme", T0 + 1) + used(f, "beta", T0 + 1);
		r = send(f, &b, T0 + 1);
		int64_t after = used(f, "acme", T0 + 1) + used(f, "beta", T0 + 1);
		if (r) {
			assert_int_equal(r, -ENT_EFULL);
			assert_int_equal(after, before); /* all or nothing */
		} else {
			assert_int_equal(after, before + 500);
			total += 500;
		}
	}
	assert_int_equal(r, -ENT_EFULL);
	assert_true(total > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_results_and_duplicates, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_refusals_fail_alone, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_limits_and_periods, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_same_as_single_reports, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_map_full_fails_whole, setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
