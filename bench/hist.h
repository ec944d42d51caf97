/*
 * A latency histogram in the style of HdrHistogram: log-linear buckets over nanoseconds.
 * Values below 512 ns get a bucket each; above, every power of two is cut into 256 equal
 * buckets, so a reported value is at most 0.4% (and below 256 us, at most 1 us) above the true
 * one. The range ends at BENCH_HIST_MAX_NS (60 s); larger values are counted in its bucket and
 * still raise max. Recording is a few instructions and never allocates; one histogram per
 * thread and operation, merged after the run.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_MAX_NS  60000000000ull
#define BENCH_HIST_LINEAR  512u /* one bucket per ns below this */
#define BENCH_HIST_SUB	   256u /* buckets per power of two above */
#define BENCH_HIST_MAX_MSB 35u	/* 2^35 ns < 60 s < 2^36 ns */
#define BENCH_HIST_BUCKETS (BENCH_HIST_LINEAR + (BENCH_HIST_MAX_MSB - 9u + 1u) * BENCH_HIST_SUB)

struct bench_hist {
	uint64_t n;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t counts[BENCH_HIST_BUCKETS];
};

/** Empty \a h. */
void bench_hist_init(struct bench_hist *h);
/** Count one value. */
void bench_hist_record(struct bench_hist *h, uint64_t ns);
/** Add every count of \a src to \a dst. */
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/**
 * The value at percentile \a p (0 < p <= 100) in nanoseconds: the highest value of the bucket
 * holding that rank, clamped to the recorded maximum. 0 for an empty histogram.
 */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);
/** Mean in nanoseconds (exact: the sum is kept); 0 when empty. */
double bench_hist_mean(const struct bench_hist *h);

/** Bucket index of \a ns (exposed for the tests). */
unsigned bench_hist_index(uint64_t ns);
/** Highest value that falls in bucket \a idx. */
uint64_t bench_hist_bucket_high(unsigned idx);

#endif
