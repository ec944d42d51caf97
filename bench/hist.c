/* Log-linear latency histogram: see hist.h for the bucket layout and its precision. */
#include "hist.h"

#include <string.h>

void bench_hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

unsigned bench_hist_index(uint64_t ns)
{
	unsigned msb;

	if (ns < BENCH_HIST_LINEAR)
		return (unsigned)ns;
	if (ns > BENCH_HIST_MAX_NS)
		ns = BENCH_HIST_MAX_NS;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	/* The top 9 bits select the bucket: the leading 1 and 8 bits of sub-bucket. */
	return BENCH_HIST_LINEAR + (msb - 9u) * BENCH_HIST_SUB + (unsigned)(ns >> (msb - 8u)) -
	       BENCH_HIST_SUB;
}

uint64_t bench_hist_bucket_high(unsigned idx)
{
	unsigned b, shift;
	uint64_t sub;

	if (idx < BENCH_HIST_LINEAR)
		return idx;
	b = (idx - BENCH_HIST_LINEAR) / BENCH_HIST_SUB;
	sub = BENCH_HIST_SUB + (idx - BENCH_HIST_LINEAR) % BENCH_HIST_SUB;
	shift = b + 1u;
	return (sub << shift) + ((uint64_t)1 << shift) - 1u;
}

void bench_hist_record(struct bench_hist *h, uint64_t ns)
{
	h->counts[bench_hist_index(ns)]++;
	h->n++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	if (!src->n)
		return;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->n += src->n;
	dst->sum_ns += src->sum_ns;
	if (src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double p)
{
	uint64_t rank, seen = 0;

	if (!h->n)
		return 0;
	if (p >= 100.0)
		return h->max_ns;
	/* The smallest value v such that at least p% of the values are <= v. */
	rank = (uint64_t)(p / 100.0 * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = bench_hist_bucket_high(i);

			return v > h->max_ns ? h->max_ns : v < h->min_ns ? h->min_ns : v;
		}
	}
	return h->max_ns;
}

double bench_hist_mean(const struct bench_hist *h)
{
	return h->n ? (double)h->sum_ns / (double)h->n : 0.0;
}
