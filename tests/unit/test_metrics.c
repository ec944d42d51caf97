/*
 * The metrics module: per-thread counting summed at scrape time, the Prometheus text, the
 * gauges callback, the HTTP endpoints over a real loopback connection (a plain socket client),
 * and the sampled decision log.
 *
 * Nothing depends on timing: threads are joined before their counts are read, readiness is a
 * flag flipped between requests, and the sampling test allows a band the binomial law leaves
 * with probability far below 1e-20.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ent/metrics.h"
#include "ent/model.h"

static const char *const methods[] = {
	"/ent.v1.EntitlementService/Check",
	"/ent.v1.AdminService/UpsertFeature",
	"/grpc.health.v1.Health/Check",
};
#define N_METHODS 3

/* The value of the exposition line that starts with \a series followed by a space. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p;) {
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NAN;
}

static char *render(struct ent_metrics *m)
{
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(ent_metrics_render(m, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	return text;
}

/* ---- counting -------------------------------------------------------------------------- */

static void test_buckets(void **state)
{
	(void)state;
	/* Upper bounds are 2^(k+2) µs: a value equal to a bound falls in that bucket (le). */
	assert_int_equal(ent_metrics_bucket(0), 0);
	assert_int_equal(ent_metrics_bucket(1), 0);
	assert_int_equal(ent_metrics_bucket(4), 0);
	assert_int_equal(ent_metrics_bucket(5), 1);
	assert_int_equal(ent_metrics_bucket(8), 1);
	assert_int_equal(ent_metrics_bucket(9), 2);
	assert_int_equal(ent_metrics_bucket(1000), 8); /* 1024 µs */
	assert_int_equal(ent_metrics_bucket(1024), 8);
	assert_int_equal(ent_metrics_bucket(1025), 9);
	assert_int_equal(ent_metrics_bucket(1u << 24), ENT_METRICS_N_FINITE - 1);
	assert_int_equal(ent_metrics_bucket((1u << 24) + 1), ENT_METRICS_N_FINITE); /* +Inf */
	assert_int_equal(ent_metrics_bucket(UINT64_MAX), ENT_METRICS_N_FINITE);
}

#define N_THREADS 4
#define N_CALLS	  20000

struct worker {
	struct ent_metrics *m;
	int index;
};

static void *count_thread(void *arg)
{
	struct worker *w = arg;
	struct ent_metrics_block *b = ent_metrics_thread_block(w->m);
	if (!b)
		return NULL;
	for (int i = 0; i < N_CALLS; i++) {
		/* Every 10th call fails NOT_FOUND; latencies cycle 3, 6, 100 µs. */
		unsigned status = i % 10 == 9 ? 5 : 0;
		static const uint64_t lat[3] = {3, 6, 100};
		ent_metrics_observe_call(b, 0, status, lat[i % 3]);
		ent_metrics_count_reason(b, i % 2 ? ENT_R_ENTITLED : ENT_R_LIMIT_EXCEEDED);
	}
	ent_metrics_observe_call(b, 1, 16, 2000000); /* one slow UNAUTHENTICATED admin call */
	ent_metrics_observe_call(b, 99, 0, 1);	     /* out of range: ignored */
	ent_metrics_observe_call(b, 2, 400, 1);	     /* bad status: counted as UNKNOWN */
	ent_metrics_count_reason(b, 200);	     /* bad reason: counted as UNSPECIFIED */
	return b;
}

static void test_threads_and_scrape(void **state)
{
	(void)state;
	struct ent_metrics *m;
	assert_int_equal(ent_metrics_new(methods, N_METHODS, &m), 0);
	pthread_t th[N_THREADS];
	struct worker w[N_THREADS];
	for (int i = 0; i < N_THREADS; i++) {
		w[i] = (struct worker){m, i};
		assert_int_equal(pthread_create(&th[i], NULL, count_thread, &w[i]), 0);
	}
	/* Scraping while they count is allowed (and exercised under TSan builds). */
	free(render(m));
	for (int i = 0; i < N_THREADS; i++) {
		void *b;
		pthread_join(th[i], &b);
		assert_non_null(b);
	}
	char *t = render(m);
	const double total = N_THREADS * N_CALLS, failed = N_THREADS * (N_CALLS / 10);
	assert_true(value_of(t, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/Check\","
				"code=\"OK\"}") == total - failed);
	assert_true(value_of(t, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/Check\","
				"code=\"NOT_FOUND\"}") == failed);
	assert_true(value_of(t, "entd_rpc_calls_total{method=\"/ent.v1.AdminService/"
				"UpsertFeature\",code=\"UNAUTHENTICATED\"}") == N_THREADS);
	/* Zero series are left out, except OK. */
	assert_true(isnan(value_of(t, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/"
				      "Check\",code=\"INTERNAL\"}")));
	assert_true(value_of(t,
			     "entd_rpc_calls_total{method=\"/ent.v1.AdminService/UpsertFeature\","
			     "code=\"OK\"}") == 0);
	assert_true(value_of(t, "entd_rpc_calls_total{method=\"/grpc.health.v1.Health/Check\","
				"code=\"UNKNOWN\"}") == N_THREADS);

	/* The histogram: cumulative, +Inf equals _count, _sum in seconds. */
	const char *chk = "{method=\"/ent.v1.EntitlementService/Check\"";
	char series[256];
	double prev = 0;
	for (int k = 0; k < ENT_METRICS_N_FINITE; k++) {
		snprintf(series, sizeof(series), "entd_rpc_duration_seconds_bucket%s,le=\"%.6f\"}",
			 chk, (double)(1ULL << (k + 2)) / 1e6);
		double v = value_of(t, series);
		assert_false(isnan(v));
		assert_true(v >= prev);
		prev = v;
	}
	/* 3 µs -> le 4 µs; 6 µs -> le 8 µs; 100 µs -> le 128 µs. */
	double per3 = 0, per6 = 0, per100 = 0;
	for (int i = 0; i < N_CALLS; i++)
		*(i % 3 == 0 ? &per3 : i % 3 == 1 ? &per6 : &per100) += N_THREADS;
	snprintf(series, sizeof(series), "entd_rpc_duration_seconds_bucket%s,le=\"0.000004\"}",
		 chk);
	assert_true(value_of(t, series) == per3);
	snprintf(series, sizeof(series), "entd_rpc_duration_seconds_bucket%s,le=\"0.000064\"}",
		 chk);
	assert_true(value_of(t, series) == per3 + per6);
	snprintf(series, sizeof(series), "entd_rpc_duration_seconds_bucket%s,le=\"0.000128\"}",
		 chk);
	assert_true(value_of(t, series) == total);
	snprintf(series, sizeof(series), "entd_rpc_duration_seconds_bucket%s,le=\"+Inf\"}", chk);
	assert_true(value_of(t, series) == total);
	snprintf(series, sizeof(series), "entd_rpc_duration_seconds_count%s}", chk);
	assert_true(value_of(t, series) == total);
	snprintf(series, sizeof(series), "entd_rpc_duration_seconds_sum%s}", chk);
	assert_true(fabs(value_of(t, series) - (per3 * 3 + per6 * 6 + per100 * 100) / 1e6) < 1e-6);
	/* The 2 s admin call is above 1.048576 s and below 2.097152 s. */
	assert_true(value_of(t, "entd_rpc_duration_seconds_bucket{method=\"/ent.v1.AdminService/"
				"UpsertFeature\",le=\"1.048576\"}") == 0);
	assert_true(value_of(t, "entd_rpc_duration_seconds_bucket{method=\"/ent.v1.AdminService/"
				"UpsertFeature\",le=\"2.097152\"}") == N_THREADS);

	/* Reasons: every known one present, counted ones right. */
	assert_true(value_of(t, "entd_check_decisions_total{reason=\"ENTITLED\"}") == total / 2);
	assert_true(value_of(t, "entd_check_decisions_total{reason=\"LIMIT_EXCEEDED\"}") ==
		    total / 2);
	assert_true(value_of(t, "entd_check_decisions_total{reason=\"EXPIRED\"}") == 0);
	assert_true(value_of(t, "entd_check_decisions_total{reason=\"UNSPECIFIED\"}") == N_THREADS);

	/* Headers, build info and process memory. */
	assert_non_null(strstr(t, "# TYPE entd_rpc_duration_seconds histogram\n"));
	assert_non_null(strstr(t, "# TYPE entd_rpc_calls_total counter\n"));
	assert_non_null(strstr(t, "entd_build_info{version=\""));
	assert_true(value_of(t, "entd_process_resident_memory_bytes") > 0);
	assert_true(value_of(t, "entd_process_open_fds") >= 3);
	/* Gauges nobody supplied are absent, not zero. */
	assert_null(strstr(t, "entd_snapshot_sequence"));
	assert_null(strstr(t, "entd_writer_queue_depth"));
	free(t);
	ent_metrics_free(m);
}

static void gauges(void *ctx, struct ent_metrics_gauges *g)
{
	(void)ctx;
	struct ent_store_stats st = {.seq = 42,
				     .last_commit_at = 1000000,
				     .customers = 7,
				     .aggregates = 21,
				     .db_size_bytes = 1 << 20,
				     .map_size_bytes = 1 << 30};
	ent_metrics_fill_store(g, &st, 1000000 + 2500);
	struct ent_writer_stats ws = {
		.commits = 5, .queue_depth = 3, .last_commit_us = 1500, .boundary_lag_ms = 20};
	ent_metrics_fill_writer(g, &ws);
	g->open_calls = 9;
}

static void test_gauges(void **state)
{
	(void)state;
	struct ent_metrics *m;
	assert_int_equal(ent_metrics_new(methods, N_METHODS, &m), 0);
	ent_metrics_set_gauge_cb(m, gauges, NULL);
	char *t = render(m);
	assert_true(value_of(t, "entd_snapshot_sequence") == 42);
	assert_true(value_of(t, "entd_snapshot_age_seconds") == 2.5);
	assert_true(value_of(t, "entd_lmdb_used_bytes") == 1 << 20);
	assert_true(value_of(t, "entd_lmdb_map_size_bytes") == 1 << 30);
	assert_true(value_of(t, "entd_store_objects{kind=\"customers\"}") == 7);
	assert_true(value_of(t, "entd_store_objects{kind=\"aggregates\"}") == 21);
	assert_true(value_of(t, "entd_writer_queue_depth") == 3);
	assert_true(value_of(t, "entd_writer_commits_total") == 5);
	assert_true(value_of(t, "entd_writer_last_commit_seconds") == 0.0015);
	assert_true(value_of(t, "entd_writer_boundary_lag_seconds") == 0.02);
	assert_true(value_of(t, "entd_rpc_open_calls") == 9);
	assert_null(strstr(t, "entd_sync_lag_events")); /* not in fleet mode */
	assert_non_null(strstr(t, "# TYPE entd_writer_commits_total counter\n"));
	free(t);
	ent_metrics_free(m);
}

static void test_label_escaping(void **state)
{
	(void)state;
	const char *odd[] = {"/a\"b\\c\nd"};
	struct ent_metrics *m;
	assert_int_equal(ent_metrics_new(odd, 1, &m), 0);
	char *t = render(m);
	assert_non_null(strstr(t, "{method=\"/a\\\"b\\\\c\\nd\",code=\"OK\"} 0\n"));
	free(t);
	ent_metrics_free(m);
}

/* ---- HTTP ---------------------------------------------------------------------------- */

/* One HTTP/1.0 request over a fresh loopback connection; returns the status, body in \a body. */
static int http(unsigned port, const char *method, const char *path, char *body, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[256];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method,
			 path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	static char resp[1 << 20];
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	resp[got] = 0;
	int status = 0;
	assert_int_equal(sscanf(resp, "HTTP/1.%*d %d", &status), 1);
	const char *b = strstr(resp, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	if (!strcmp(path, "/metrics") && status == 200)
		assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4"));
	return status;
}

static atomic_bool ready_flag;

static bool ready(void *ctx, char *why, size_t len)
{
	(void)ctx;
	if (atomic_load(&ready_flag))
		return true;
	snprintf(why, len, "database not open yet");
	return false;
}

static void test_http(void **state)
{
	(void)state;
	struct ent_metrics *m;
	assert_int_equal(ent_metrics_new(methods, N_METHODS, &m), 0);
	struct ent_metrics_block *b = ent_metrics_thread_block(m);
	ent_metrics_observe_call(b, 0, 0, 10);
	struct ent_err err = {0};
	atomic_store(&ready_flag, false);
	int rc = ent_metrics_serve(m, "127.0.0.1:0", ready, NULL, &err);
	if (rc)
		fail_msg("%s", err.msg);
	unsigned port = ent_metrics_port(m);
	assert_true(port > 0);

	static char body[1 << 20];
	assert_int_equal(http(port, "GET", "/metrics", body, sizeof(body)), 200);
	assert_true(value_of(body, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/"
				   "Check\",code=\"OK\"}") == 1);
	assert_int_equal(http(port, "GET", "/livez", body, sizeof(body)), 200);
	assert_string_equal(body, "ok\n");
	assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 503);
	assert_string_equal(body, "not ready: database not open yet\n");
	atomic_store(&ready_flag, true);
	assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 200);
	assert_string_equal(body, "ok\n");
	atomic_store(&ready_flag, false);
	assert_int_equal(http(port, "GET", "/readyz", body, sizeof(body)), 503);
	assert_int_equal(http(port, "GET", "/nope", body, sizeof(body)), 404);
	assert_int_equal(http(port, "POST", "/metrics", body, sizeof(body)), 405);
	assert_int_equal(http(port, "HEAD", "/livez", body, sizeof(body)), 200);

	/* Counting continues to show up in later scrapes. */
	ent_metrics_observe_call(b, 0, 0, 10);
	assert_int_equal(http(port, "GET", "/metrics", body, sizeof(body)), 200);
	assert_true(value_of(body, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/"
				   "Check\",code=\"OK\"}") == 2);

	/* A second endpoint on the same port cannot bind, and says so. */
	struct ent_metrics *m2;
	assert_int_equal(ent_metrics_new(methods, N_METHODS, &m2), 0);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	assert_int_equal(ent_metrics_serve(m2, addr, NULL, NULL, &err), -ENT_EIO);
	assert_non_null(strstr(err.msg, "metrics.listen: cannot listen on '127.0.0.1:"));
	assert_int_equal(ent_metrics_serve(m2, "localhost", NULL, NULL, &err), -ENT_EINVAL);
	assert_string_equal(err.msg, "metrics.listen: 'localhost' is not host:port (or :port)");
	ent_metrics_free(m2);

	ent_metrics_stop(m);
	assert_int_equal(ent_metrics_port(m), 0);
	ent_metrics_stop(m); /* idempotent */
	ent_metrics_free(m);
}

/* ---- the decision log ---------------------------------------------------------------- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

static void test_decision_log(void **state)
{
	(void)state;
	char dir[] = "/tmp/ent-declog-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128], rotated[128];
	snprintf(path, sizeof(path), "%s/decisions.log", dir);
	snprintf(rotated, sizeof(rotated), "%s/decisions.log.1", dir);

	struct ent_metrics *m;
	assert_int_equal(ent_metrics_new(methods, N_METHODS, &m), 0);
	struct ent_metrics_block *b = ent_metrics_thread_block(m);
	struct ent_decision_log *l;
	struct ent_err err = {0};
	assert_int_equal(ent_metrics_decision_log_open(path, 1.0, false, &l, &err), 0);
	assert_true(ent_metrics_decision_log_sample(l, b));
	struct ent_decision_record r = {.customer = ENT_STR_LIT("cus_acme"),
					.feature = ENT_STR_LIT("api=calls"),
					.quantity = 10,
					.allowed = false,
					.reason = ENT_R_LIMIT_EXCEEDED,
					.seq = 77,
					.at = 0};
	ent_metrics_decision_log_write(l, b, &r);
	const char *text = slurp(path);
	assert_non_null(strstr(text, " msg=decision customer=cus_acme feature=\"api=calls\" "
				     "quantity=10 allowed=false reason=LIMIT_EXCEEDED seq=77 "
				     "at=1970-01-01T00:00:00.000Z\n"));
	assert_int_equal(strncmp(text, "ts=", 3), 0);

	/* Rotation: the old file keeps its line, new lines go to a fresh file at the path. */
	assert_int_equal(rename(path, rotated), 0);
	assert_int_equal(ent_metrics_decision_log_reopen(l, &err), 0);
	r.allowed = true;
	r.reason = ENT_R_ENTITLED;
	ent_metrics_decision_log_write(l, b, &r);
	assert_non_null(strstr(slurp(rotated), "reason=LIMIT_EXCEEDED"));
	text = slurp(path);
	assert_non_null(strstr(text, "allowed=true reason=ENTITLED"));
	assert_null(strstr(text, "LIMIT_EXCEEDED"));

	/* Rate 0 never samples; 0.5 samples about half (binomial: 10000 draws, band +-8 sigma). */
	ent_metrics_decision_log_set_rate(l, 0);
	for (int i = 0; i < 1000; i++)
		assert_false(ent_metrics_decision_log_sample(l, b));
	ent_metrics_decision_log_set_rate(l, 0.5);
	int hits = 0;
	for (int i = 0; i < 10000; i++)
		hits += ent_metrics_decision_log_sample(l, b);
	assert_in_range(hits, 4600, 5400);
	ent_metrics_decision_log_close(l);

	/* JSON lines, and the count of lines in the metrics. */
	assert_int_equal(ent_metrics_decision_log_open(path, 1.0, true, &l, &err), 0);
	r.customer = ENT_STR_LIT("cus \"quoted\"");
	ent_metrics_decision_log_write(l, b, &r);
	ent_metrics_decision_log_close(l);
	assert_non_null(strstr(slurp(path),
			       "\"msg\":\"decision\",\"customer\":\"cus "
			       "\\\"quoted\\\"\",\"feature\":\"api=calls\","
			       "\"quantity\":10,\"allowed\":true,\"reason\":\"ENTITLED\","
			       "\"seq\":77,"));
	char *t = render(m);
	assert_true(value_of(t, "entd_decision_log_lines_total") == 3);
	free(t);

	/* An unopenable path is an error naming it. */
	char bad[160];
	snprintf(bad, sizeof(bad), "%s/no/such/dir.log", dir);
	assert_int_equal(ent_metrics_decision_log_open(bad, 1.0, false, &l, &err), -ENT_EIO);
	assert_non_null(strstr(err.msg, "decision_log.path: cannot open"));

	ent_metrics_free(m);
	unlink(path);
	unlink(rotated);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets), cmocka_unit_test(test_threads_and_scrape),
		cmocka_unit_test(test_gauges),	cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_http),	cmocka_unit_test(test_decision_log),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
