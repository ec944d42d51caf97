/* entbench output: the readable table and the one-line JSON object per run. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "entbench.h"

static const char *const reason_names[16] = {
	"UNSPECIFIED",	   "ENTITLED",	     "NOT_ENTITLED",	  "UNKNOWN_CUSTOMER",
	"UNKNOWN_FEATURE", "LIMIT_EXCEEDED", "ALLOWED_OVER_SOFT", "DISABLED_BY_OVERRIDE",
	"NOT_YET_ACTIVE",  "EXPIRED",	     "REASON_10",	  "REASON_11",
	"REASON_12",	   "REASON_13",	     "REASON_14",	  "REASON_15+",
};

const char *bench_reason_name(unsigned reason)
{
	return reason_names[reason > 15 ? 15 : reason];
}

const char *bench_mode_name(enum bench_mode m)
{
	switch (m) {
	case MODE_UNARY:
		return "unary";
	case MODE_BATCH:
		return "batch";
	case MODE_STREAM:
		return "stream";
	case MODE_CONSUME:
		return "consume";
	case MODE_REPORT:
		return "report";
	case MODE_MIXED:
		return "mixed";
	case MODE_REPORT_BATCH:
		return "report-batch";
	}
	return "?";
}

const char *bench_op_name(enum bench_op op)
{
	static const char *const names[OP__COUNT] = {
		[OP_CHECK] = "CheckEntitlement",  [OP_BATCH] = "BatchCheckEntitlements",
		[OP_STREAM] = "StreamCheck(msg)", [OP_CONSUME] = "ConsumeEntitlement",
		[OP_REPORT] = "ReportUsage",	  [OP_REPORT_BATCH] = "BatchReportUsage",
	};
	return (unsigned)op < OP__COUNT ? names[op] : "?";
}

/* JSON keys for the operations. */
static const char *op_key(enum bench_op op)
{
	static const char *const keys[OP__COUNT] = {
		[OP_CHECK] = "check",	[OP_BATCH] = "batch",
		[OP_STREAM] = "stream", [OP_CONSUME] = "consume",
		[OP_REPORT] = "report", [OP_REPORT_BATCH] = "report_batch",
	};
	return keys[op];
}

const char *bench_status_name(unsigned code)
{
	static const char *const names[BENCH_STATUS_CODES] = {
		"OK",
		"CANCELLED",
		"UNKNOWN",
		"INVALID_ARGUMENT",
		"DEADLINE_EXCEEDED",
		"NOT_FOUND",
		"ALREADY_EXISTS",
		"PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION",
		"ABORTED",
		"OUT_OF_RANGE",
		"UNIMPLEMENTED",
		"INTERNAL",
		"UNAVAILABLE",
		"DATA_LOSS",
		"UNAUTHENTICATED",
	};
	return code < BENCH_STATUS_CODES ? names[code] : "?";
}

static uint64_t unknown_answers(const struct bench_result *res)
{
	return res->reasons[3] + res->reasons[4]; /* UNKNOWN_CUSTOMER, UNKNOWN_FEATURE */
}

static uint64_t total_done(const struct bench_result *res)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < OP__COUNT; i++)
		n += res->done[i];
	return n;
}

uint64_t bench_result_errors(const struct bench_config *cfg, const struct bench_result *res)
{
	uint64_t n = res->failed_batches + res->bad_answers + res->unsent;

	for (unsigned i = 1; i < BENCH_STATUS_CODES; i++)
		n += res->errors[i];
	if (cfg->strict)
		n += unknown_answers(res);
	/* A run that measured nothing did not succeed either. */
	if (total_done(res) == 0)
		n++;
	return n;
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void print_hist_row(const char *name, const struct bench_hist *h)
{
	printf("  %-24s %10llu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", name,
	       (unsigned long long)h->n, us(bench_hist_percentile(h, 50)),
	       us(bench_hist_percentile(h, 90)), us(bench_hist_percentile(h, 99)),
	       us(bench_hist_percentile(h, 99.9)), us(h->max_ns), bench_hist_mean(h) / 1000.0);
}

void bench_report_table(const struct bench_config *cfg, const struct bench_result *res)
{
	uint64_t errs = bench_result_errors(cfg, res), calls = total_done(res);
	unsigned ops_used = 0;

	printf("entbench %s, %s loop, target %s\n", bench_mode_name(cfg->mode),
	       cfg->rate > 0 ? "open" : "closed", cfg->target);
	if (cfg->rate > 0)
		printf("  rate %.0f/s over %u connection(s), %u thread(s)", cfg->rate,
		       cfg->connections, cfg->threads);
	else
		printf("  %u connection(s) x %u in flight, %u thread(s)", cfg->connections,
		       cfg->inflight, cfg->threads);
	if (cfg->mode == MODE_BATCH || cfg->mode == MODE_REPORT_BATCH)
		printf(", batch %u", cfg->batch_size);
	if (cfg->mode == MODE_STREAM)
		printf(", window %u per stream", cfg->stream_window);
	if (cfg->mode == MODE_MIXED)
		printf(", write ratio %.3f", cfg->write_ratio);
	printf("\n  warm-up %.1f s, window %.1f s, %u customers (%s", cfg->warmup_s, res->window_s,
	       cfg->keys->customers, cfg->dist);
	if (cfg->zipf)
		printf(" s=%.2f", cfg->zipf_s);
	printf("), %u feature(s)\n", cfg->keys->features);

	printf("  result     %s\n", errs ? "FAILED" : "OK");
	printf("  calls/s    %.0f\n", (double)calls / res->window_s);
	if (cfg->mode == MODE_BATCH || cfg->mode == MODE_STREAM)
		printf("  checks/s   %.0f\n", (double)res->checks / res->window_s);
	if (cfg->mode == MODE_REPORT_BATCH)
		printf("  records/s  %.0f\n", (double)res->checks / res->window_s);
	printf("  latency us %-13s %10s %9s %9s %9s %9s %9s %9s\n", "", "count", "p50", "p90",
	       "p99", "p99.9", "max", "mean");
	for (unsigned i = 0; i < OP__COUNT; i++) {
		if (!res->hist[i].n)
			continue;
		ops_used++;
		print_hist_row(bench_op_name((enum bench_op)i), &res->hist[i]);
	}
	if (ops_used > 1)
		print_hist_row("all", &res->all);
	if (cfg->rate > 0) {
		print_hist_row("(send lag vs schedule)", &res->sched_lag);
		if (res->backlog_max)
			printf("  open loop fell behind: up to %llu sends waited for a free slot\n",
			       (unsigned long long)res->backlog_max);
	}
	if (res->answers) {
		printf("  answers    %.1f%% allowed:",
		       100.0 * (double)res->allowed / (double)res->answers);
		for (unsigned i = 0; i < 16; i++)
			if (res->reasons[i])
				printf(" %s=%llu", bench_reason_name(i),
				       (unsigned long long)res->reasons[i]);
		printf("\n");
	}
	if (unknown_answers(res))
		printf("  WARNING    %llu answers name an unknown customer or feature: check "
		       "--customers/--features against the data set%s\n",
		       (unsigned long long)unknown_answers(res), cfg->strict ? " (--strict)" : "");
	if (!errs) {
		printf("  errors     none\n");
		return;
	}
	printf("  errors    ");
	for (unsigned i = 1; i < BENCH_STATUS_CODES; i++)
		if (res->errors[i])
			printf(" %s=%llu", bench_status_name(i),
			       (unsigned long long)res->errors[i]);
	if (res->failed_batches)
		printf(" failed_batches=%llu", (unsigned long long)res->failed_batches);
	if (res->bad_answers)
		printf(" bad_answers=%llu", (unsigned long long)res->bad_answers);
	if (res->unsent)
		printf(" unsent=%llu", (unsigned long long)res->unsent);
	if (!calls)
		printf(" no_call_completed_in_window");
	printf("\n");
}

static json_t *hist_json(const struct bench_hist *h)
{
	return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)h->n,
			 "p50", us(bench_hist_percentile(h, 50)), "p90",
			 us(bench_hist_percentile(h, 90)), "p99", us(bench_hist_percentile(h, 99)),
			 "p99_9", us(bench_hist_percentile(h, 99.9)), "max", us(h->max_ns), "min",
			 h->n ? us(h->min_ns) : 0.0, "mean", bench_hist_mean(h) / 1000.0);
}

int bench_report_json(const struct bench_config *cfg, const struct bench_result *res,
		      const char *path)
{
	uint64_t errs = bench_result_errors(cfg, res), calls = total_done(res);
	json_t *o = json_object(), *ops = json_object(), *codes = json_object();
	json_t *reasons = json_object();
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	FILE *f;
	int rc = 0;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, "tool", json_string("entbench"));
	json_object_set_new(o, "time", json_string(ts));
	if (cfg->label)
		json_object_set_new(o, "label", json_string(cfg->label));
	json_object_set_new(o, "mode", json_string(bench_mode_name(cfg->mode)));
	json_object_set_new(o, "loop", json_string(cfg->rate > 0 ? "open" : "closed"));
	json_object_set_new(o, "target", json_string(cfg->target));
	json_object_set_new(o, "connections", json_integer(cfg->connections));
	json_object_set_new(o, "inflight", json_integer(cfg->inflight));
	json_object_set_new(o, "threads", json_integer(cfg->threads));
	json_object_set_new(o, "rate", json_real(cfg->rate));
	if (cfg->mode == MODE_BATCH || cfg->mode == MODE_REPORT_BATCH)
		json_object_set_new(o, "batch_size", json_integer(cfg->batch_size));
	if (cfg->mode == MODE_STREAM)
		json_object_set_new(o, "stream_window", json_integer(cfg->stream_window));
	if (cfg->mode == MODE_MIXED)
		json_object_set_new(o, "write_ratio", json_real(cfg->write_ratio));
	json_object_set_new(o, "warmup_s", json_real(cfg->warmup_s));
	json_object_set_new(o, "duration_s", json_real(res->window_s));
	json_object_set_new(o, "customers", json_integer(cfg->keys->customers));
	json_object_set_new(o, "features", json_integer(cfg->keys->features));
	json_object_set_new(o, "dist", json_string(cfg->dist));
	if (cfg->zipf)
		json_object_set_new(o, "zipf_s", json_real(cfg->zipf_s));
	json_object_set_new(o, "status", json_string(errs ? "FAILED" : "OK"));
	json_object_set_new(o, "calls", json_integer((json_int_t)calls));
	json_object_set_new(o, "calls_per_s", json_real((double)calls / res->window_s));
	json_object_set_new(o, "checks_per_s", json_real((double)res->checks / res->window_s));
	/* Warm-up and drain included: what the server did in all, e.g. to divide its CPU by. */
	json_object_set_new(o, "total_calls", json_integer((json_int_t)res->total_calls));
	json_object_set_new(o, "total_checks", json_integer((json_int_t)res->total_checks));
	json_object_set_new(o, "latency_us", hist_json(&res->all));
	for (unsigned i = 0; i < OP__COUNT; i++)
		if (res->hist[i].n || res->done[i])
			json_object_set_new(ops, op_key((enum bench_op)i),
					    hist_json(&res->hist[i]));
	json_object_set_new(o, "ops", ops);
	if (cfg->rate > 0) {
		json_object_set_new(o, "send_lag_us", hist_json(&res->sched_lag));
		json_object_set_new(o, "backlog_max", json_integer((json_int_t)res->backlog_max));
	}
	for (unsigned i = 1; i < BENCH_STATUS_CODES; i++)
		if (res->errors[i])
			json_object_set_new(codes, bench_status_name(i),
					    json_integer((json_int_t)res->errors[i]));
	json_object_set_new(
		o, "errors",
		json_pack("{s:I, s:o, s:I, s:I, s:I}", "total", (json_int_t)errs, "by_code", codes,
			  "failed_batches", (json_int_t)res->failed_batches, "bad_answers",
			  (json_int_t)res->bad_answers, "unsent", (json_int_t)res->unsent));
	for (unsigned i = 0; i < 16; i++)
		if (res->reasons[i])
			json_object_set_new(reasons, bench_reason_name(i),
					    json_integer((json_int_t)res->reasons[i]));
	json_object_set_new(o, "answers",
			    json_pack("{s:I, s:I, s:o}", "total", (json_int_t)res->answers,
				      "allowed", (json_int_t)res->allowed, "reasons", reasons));

	bool to_stdout = !strcmp(path, "-");

	f = to_stdout ? stdout : fopen(path, "a");
	if (!f || json_dumpf(o, f, JSON_COMPACT | JSON_REAL_PRECISION(10)) || fputc('\n', f) < 0)
		rc = -1;
	if (f && (to_stdout ? fflush(f) : fclose(f)))
		rc = -1;
	if (rc)
		fprintf(stderr, "entbench: cannot write JSON to %s\n", path);
	json_decref(o);
	return rc;
}
