/*
 * Unit tests of entbench's pieces that need no server: the histogram's precision and
 * percentiles, the Zipf sampler's distribution, and the hand-made wire encoding, checked by
 * decoding it with the protobuf-c code generated from the real contract.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/v1/entitlement.pb-c.h"
#include "hist.h"
#include "keys.h"

static struct bench_hist *hist_new(void)
{
	struct bench_hist *h = malloc(sizeof(*h));

	assert_non_null(h);
	bench_hist_init(h);
	return h;
}

/* Every value maps to a bucket whose range holds it and whose width is within the precision. */
static void test_hist_buckets(void **state)
{
	uint64_t v = 0;

	(void)state;
	while (v < BENCH_HIST_MAX_NS) {
		unsigned idx = bench_hist_index(v);
		uint64_t hi = bench_hist_bucket_high(idx);

		assert_true(idx < BENCH_HIST_BUCKETS);
		assert_true(hi >= v);
		if (v < BENCH_HIST_LINEAR)
			assert_int_equal(hi, v);
		else
			assert_true((double)(hi - v) <= (double)v / 256.0 + 1.0);
		if (idx > 0)
			assert_true(bench_hist_bucket_high(idx - 1) < v);
		v = v < 4096 ? v + 1 : v + v / 1000 + 7;
	}
	/* Past the range: the bucket of 60 s, never beyond the array. */
	assert_int_equal(bench_hist_index(UINT64_MAX / 2), bench_hist_index(BENCH_HIST_MAX_NS));
	assert_true(bench_hist_index(UINT64_MAX) < BENCH_HIST_BUCKETS);
}

static void test_hist_percentiles(void **state)
{
	struct bench_hist *h = hist_new(), *h2 = hist_new();

	(void)state;
	assert_int_equal(bench_hist_percentile(h, 50), 0);
	/* 1..10000 us: p50 = 5000 us, p99 = 9900 us, max = 10000 us, mean = 5000.5 us. */
	for (uint64_t i = 1; i <= 10000; i++)
		bench_hist_record(i <= 5000 ? h : h2, i * 1000);
	bench_hist_merge(h, h2);
	assert_int_equal(h->n, 10000);
	assert_true(fabs((double)bench_hist_percentile(h, 50) - 5000000.0) <= 5000000.0 / 256);
	assert_true(fabs((double)bench_hist_percentile(h, 99) - 9900000.0) <= 9900000.0 / 256);
	assert_true(bench_hist_percentile(h, 99) >= 9900000);
	assert_int_equal(bench_hist_percentile(h, 100), 10000000);
	assert_true(bench_hist_percentile(h, 99.99) <= 10000000);
	assert_true(fabs(bench_hist_mean(h) - 5000500.0) < 1e-6);
	assert_int_equal(h->min_ns, 1000);
	/* One outlier among many: p99.9 must not see it, max must. */
	bench_hist_init(h);
	for (int i = 0; i < 9999; i++)
		bench_hist_record(h, 100);
	bench_hist_record(h, 5000000000ull);
	assert_int_equal(bench_hist_percentile(h, 99.9), 100);
	assert_int_equal(bench_hist_percentile(h, 100), 5000000000ull);
	free(h);
	free(h2);
}

static void test_rng(void **state)
{
	struct bench_rng a, b;
	uint32_t counts[10] = {0};

	(void)state;
	bench_rng_seed(&a, 42);
	bench_rng_seed(&b, 42);
	for (int i = 0; i < 100; i++)
		assert_true(bench_rng_next(&a) == bench_rng_next(&b));
	for (int i = 0; i < 100000; i++) {
		uint32_t x = bench_rng_below(&a, 10);
		double u = bench_rng_unit(&a);

		assert_true(x < 10);
		assert_true(u >= 0.0 && u < 1.0);
		counts[x]++;
	}
	for (int i = 0; i < 10; i++)
		assert_true(counts[i] > 9000 && counts[i] < 11000);
}

static void test_zipf(void **state)
{
	const uint32_t n = 1000;
	struct bench_zipf z;
	struct bench_rng r;
	uint32_t *counts = calloc(n, sizeof(*counts));
	double h = 0;
	const int draws = 400000;

	(void)state;
	assert_int_equal(bench_zipf_init(&z, 0, 1.0), -1);
	assert_int_equal(bench_zipf_init(&z, n, 1.0), 0);
	for (uint32_t i = 1; i <= n; i++)
		h += 1.0 / i;
	bench_rng_seed(&r, 7);
	for (int i = 0; i < draws; i++) {
		uint32_t k = bench_zipf_draw(&z, &r);

		assert_true(k < n);
		counts[k]++;
	}
	/* Ranks 0, 1, 9 against 1/(k+1)/H_n, within 5% (tens of thousands of draws each). */
	assert_true(fabs(counts[0] / (double)draws - 1.0 / h) < 0.05 / h);
	assert_true(fabs(counts[1] / (double)draws - 0.5 / h) < 0.05 * 0.5 / h);
	assert_true(fabs(counts[9] / (double)draws - 0.1 / h) < 0.05 * 0.1 / h);
	/* The tail is reachable. */
	assert_true(counts[n - 1] > 0);
	/* One rank: always 0. */
	bench_zipf_deinit(&z);
	assert_int_equal(bench_zipf_init(&z, 1, 1.2), 0);
	assert_int_equal(bench_zipf_draw(&z, &r), 0);
	bench_zipf_deinit(&z);
	free(counts);
}

static struct bench_keys keys;

static int keys_setup(void **state)
{
	char err[128];

	(void)state;
	return bench_keys_init(&keys, "cus_", 1000000, "api_calls,seats,sso", err, sizeof(err));
}

static int keys_teardown(void **state)
{
	(void)state;
	bench_keys_deinit(&keys);
	return 0;
}

static void test_keys_reject(void **state)
{
	struct bench_keys k;
	char err[128];

	(void)state;
	assert_int_equal(bench_keys_init(&k, "cus_", 10, "a,,b", err, sizeof(err)), -1);
	assert_int_equal(bench_keys_init(&k, "cus_", 10, "has space", err, sizeof(err)), -1);
	assert_int_equal(bench_keys_init(&k, "cus_", 0, "a", err, sizeof(err)), -1);
}

static void test_encode_check(void **state)
{
	uint8_t buf[BENCH_REQ_MAX];
	size_t n;
	Ent__V1__CheckEntitlementRequest *r;

	(void)state;
	assert_int_equal(keys.features, 3);
	n = bench_enc_check(&keys, 999999, 1, 0, buf);
	r = ent__v1__check_entitlement_request__unpack(NULL, n, buf);
	assert_non_null(r);
	assert_string_equal(r->customer_id, "cus_999999");
	assert_string_equal(r->feature_code, "seats");
	assert_int_equal(r->quantity, 0);
	ent__v1__check_entitlement_request__free_unpacked(r, NULL);

	n = bench_enc_check(&keys, 0, 2, 300, buf);
	r = ent__v1__check_entitlement_request__unpack(NULL, n, buf);
	assert_non_null(r);
	assert_string_equal(r->customer_id, "cus_0");
	assert_string_equal(r->feature_code, "sso");
	assert_int_equal(r->quantity, 300);
	ent__v1__check_entitlement_request__free_unpacked(r, NULL);
}

static void test_encode_writes(void **state)
{
	uint8_t buf[BENCH_REQ_MAX];
	size_t n;
	Ent__V1__ConsumeEntitlementRequest *c;
	Ent__V1__ReportUsageRequest *u;

	(void)state;
	n = bench_enc_consume(&keys, 42, 0, 0, "eb-1-0-1", 8, buf);
	c = ent__v1__consume_entitlement_request__unpack(NULL, n, buf);
	assert_non_null(c);
	assert_string_equal(c->customer_id, "cus_42");
	assert_string_equal(c->feature_code, "api_calls");
	assert_string_equal(c->idempotency_key, "eb-1-0-1");
	ent__v1__consume_entitlement_request__free_unpacked(c, NULL);

	/* Report: quantity 0 becomes 1 (the contract wants > 0); the key is required. */
	n = bench_enc_report(&keys, 7, 0, 0, "k", 1, buf);
	u = ent__v1__report_usage_request__unpack(NULL, n, buf);
	assert_non_null(u);
	assert_string_equal(u->customer_id, "cus_7");
	assert_int_equal(u->quantity, 1);
	assert_string_equal(u->idempotency_key, "k");
	ent__v1__report_usage_request__free_unpacked(u, NULL);
}

static void test_encode_batch(void **state)
{
	uint8_t *buf = malloc(200 * BENCH_REQ_MAX);
	size_t n = 0;
	Ent__V1__BatchCheckEntitlementsRequest *b;

	(void)state;
	for (uint32_t i = 0; i < 200; i++)
		n += bench_enc_batch_item(&keys, i * 4999, i % 3, i, buf + n);
	b = ent__v1__batch_check_entitlements_request__unpack(NULL, n, buf);
	assert_non_null(b);
	assert_int_equal(b->n_checks, 200);
	assert_string_equal(b->checks[1]->customer_id, "cus_4999");
	assert_string_equal(b->checks[199]->customer_id, "cus_994801");
	assert_string_equal(b->checks[199]->feature_code, "seats");
	assert_int_equal(b->checks[199]->quantity, 199);
	ent__v1__batch_check_entitlements_request__free_unpacked(b, NULL);
	free(buf);
}

/* BatchReportUsage: records encode as protobuf-c reads them; the answer scanner counts only
 * all-COUNTED answers. */
static void test_usage_batch(void **state)
{
	uint8_t *buf = malloc(100 * BENCH_REQ_MAX);
	size_t n = 0;
	char key[16];
	Ent__V1__BatchReportUsageRequest *b;

	(void)state;
	for (uint32_t i = 0; i < 100; i++) {
		int kl = snprintf(key, sizeof(key), "k%u", i);
		n += bench_enc_report_item(&keys, i * 7, i % 3, 2, key, (size_t)kl, buf + n);
	}
	b = ent__v1__batch_report_usage_request__unpack(NULL, n, buf);
	assert_non_null(b);
	assert_int_equal(b->n_records, 100);
	assert_string_equal(b->records[99]->customer_id, "cus_693");
	assert_string_equal(b->records[99]->idempotency_key, "k99");
	assert_int_equal(b->records[99]->quantity, 2);
	ent__v1__batch_report_usage_request__free_unpacked(b, NULL);

	Ent__V1__ReportUsageResult r[3] = {ENT__V1__REPORT_USAGE_RESULT__INIT,
					   ENT__V1__REPORT_USAGE_RESULT__INIT,
					   ENT__V1__REPORT_USAGE_RESULT__INIT};
	Ent__V1__ReportUsageResult *rp[3] = {&r[0], &r[1], &r[2]};
	Ent__V1__Usage u = ENT__V1__USAGE__INIT;
	u.used = 5;
	Ent__V1__BatchReportUsageResponse resp = ENT__V1__BATCH_REPORT_USAGE_RESPONSE__INIT;
	for (int i = 0; i < 3; i++) {
		r[i].outcome = ENT__V1__USAGE_OUTCOME__USAGE_OUTCOME_COUNTED;
		r[i].usage = &u;
	}
	resp.n_results = 3;
	resp.results = rp;
	resp.sequence = 9;
	resp.counted = 3;
	n = ent__v1__batch_report_usage_response__pack(&resp, buf);
	assert_int_equal(bench_scan_usage_batch(buf, n), 3);
	assert_int_equal(bench_scan_usage_batch(buf, n - 1), -1); /* truncated */
	r[1].outcome = ENT__V1__USAGE_OUTCOME__USAGE_OUTCOME_REFUSED;
	r[1].usage = NULL;
	r[1].error = "records[1].quantity: must be > 0";
	n = ent__v1__batch_report_usage_response__pack(&resp, buf);
	assert_int_equal(bench_scan_usage_batch(buf, n), -1); /* a refused record */
	free(buf);
}

/* The answer scanner agrees with protobuf-c on packed responses, nested usage included. */
static void test_scan_answers(void **state)
{
	Ent__V1__Usage usage = ENT__V1__USAGE__INIT;
	Ent__V1__CheckEntitlementResponse r = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__INIT;
	Ent__V1__CheckEntitlementResponse *items[3] = {&r, &r, &r};
	Ent__V1__BatchCheckEntitlementsResponse b =
		ENT__V1__BATCH_CHECK_ENTITLEMENTS_RESPONSE__INIT;
	uint8_t buf[1024];
	uint64_t allowed = 0, reasons[16] = {0};
	bool ok;
	uint32_t reason;
	size_t n;

	(void)state;
	usage.limit = 1000;
	usage.used = 1000;
	r.allowed = 0;
	r.reason = ENT__V1__REASON__REASON_LIMIT_EXCEEDED;
	r.usage = &usage;
	r.value_case = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_NUMBER_VALUE;
	r.number_value = 1000;
	r.override_reason = "promo";
	r.sequence = 99;
	n = ent__v1__check_entitlement_response__pack(&r, buf);
	assert_int_equal(bench_scan_answer(buf, n, &ok, &reason), 0);
	assert_false(ok);
	assert_int_equal(reason, 5);
	/* A truncated message is rejected, not misread. */
	assert_int_equal(bench_scan_answer(buf, n - 1, &ok, &reason), -1);

	r.allowed = 1;
	r.reason = ENT__V1__REASON__REASON_ENTITLED;
	b.n_results = 3;
	b.results = items;
	b.sequence = 5;
	n = ent__v1__batch_check_entitlements_response__pack(&b, buf);
	assert_int_equal(bench_scan_batch(buf, n, &allowed, reasons), 3);
	assert_int_equal(allowed, 3);
	assert_int_equal(reasons[1], 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test(test_hist_percentiles),
		cmocka_unit_test(test_rng),
		cmocka_unit_test(test_zipf),
		cmocka_unit_test(test_keys_reject),
		cmocka_unit_test_setup_teardown(test_encode_check, keys_setup, keys_teardown),
		cmocka_unit_test_setup_teardown(test_encode_writes, keys_setup, keys_teardown),
		cmocka_unit_test_setup_teardown(test_encode_batch, keys_setup, keys_teardown),
		cmocka_unit_test(test_scan_answers),
		cmocka_unit_test_setup_teardown(test_usage_batch, keys_setup, keys_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
