/*
 * bench_lookup: what one check costs in the store, without gRPC. Opens a generated data set
 * read-only and times, over the same random keys:
 *
 *   get       a raw mdb_get of the aggregate (ent_store_view_get), one snapshot per 100 keys
 *   sorted    the same gets with each group of 100 keys sorted first (B-tree locality)
 *   check     ent_store_view_check: get + record decode + decision, one snapshot per 100 keys
 *   unary     ent_store_view_begin + ent_store_view_check + ent_store_view_end per key (a unary
 * call's store work) batch     ent_store_view_check_batch over each group of 100 keys (interleaved
 * B-tree walks)
 *
 * Before timing, every answer of ent_store_view_check_batch is compared with
 * ent_store_view_check's.
 *
 *   bench_lookup --db bench/results/db-1000000 --customers 1000000 [--n 2000000] [--seed 1]
 *                [--features f_metered_0,f_metered_1,f_metered_2] [--rounds 3] [--only MODE]
 *
 * Each figure is the median over rounds of wall time per lookup on an otherwise idle core (pin
 * it with taskset). A warm-up pass over all keys first maps the touched pages, so page faults
 * are not counted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ent/store.h"
#include "keys.h"

#define GROUP 100

struct key {
	char b[64];
	uint32_t len;  /* customer\0feature */
	uint32_t clen; /* customer part */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int key_cmp(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	uint32_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->b, y->b, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static volatile uint64_t sink;

static double run_get(struct ent_view *v, const struct key *k, size_t n)
{
	uint64_t t0 = now_ns(), acc = 0;
	for (size_t i = 0; i < n; i += GROUP) {
		if (ent_store_view_begin(v))
			return -1;
		for (size_t j = i; j < i + GROUP && j < n; j++) {
			struct ent_str val;
			if (ent_store_view_get(v, ENT_T_AGG, (struct ent_str){k[j].b, k[j].len},
					       &val) == 0)
				acc += val.len;
		}
		ent_store_view_end(v);
	}
	sink += acc;
	return (double)(now_ns() - t0) / (double)n;
}

static double run_check(struct ent_view *v, const struct key *k, size_t n, bool per_key)
{
	static struct ent_check_result res;
	uint64_t t0 = now_ns(), acc = 0;
	int64_t at = ent_time_now_ms();
	for (size_t i = 0; i < n; i += (per_key ? 1 : GROUP)) {
		if (ent_store_view_begin(v))
			return -1;
		size_t end = per_key ? i + 1 : i + GROUP;
		for (size_t j = i; j < end && j < n; j++) {
			struct ent_check c = {{k[j].b, k[j].clen},
					      {k[j].b + k[j].clen + 1, k[j].len - k[j].clen - 1},
					      1,
					      at};
			if (ent_store_view_check(v, &c, &res) == 0)
				acc += res.d.allowed;
		}
		ent_store_view_end(v);
	}
	sink += acc;
	return (double)(now_ns() - t0) / (double)n;
}

struct batch_ctx {
	uint64_t acc;
	const struct ent_check_result *expect; /* NULL: just count */
	size_t mismatches;
};

static int batch_cb(void *ctx, size_t i, const struct ent_check_result *r)
{
	struct batch_ctx *b = ctx;
	b->acc += r->d.allowed;
	if (b->expect) {
		const struct ent_decision *x = &b->expect[i].d, *y = &r->d;
		if (x->allowed != y->allowed || x->reason != y->reason || x->limit != y->limit ||
		    x->used != y->used || x->remaining != y->remaining ||
		    x->next_change_at != y->next_change_at || x->feature_type != y->feature_type)
			b->mismatches++;
	}
	return 0;
}

static void make_checks(const struct key *k, size_t n, int64_t at, struct ent_check *out)
{
	for (size_t j = 0; j < n; j++)
		out[j] = (struct ent_check){{k[j].b, k[j].clen},
					    {k[j].b + k[j].clen + 1, k[j].len - k[j].clen - 1},
					    1,
					    at};
}

static double run_batch(struct ent_view *v, const struct key *k, size_t n)
{
	struct ent_check cs[GROUP];
	struct batch_ctx b = {0};
	int64_t at = ent_time_now_ms();
	uint64_t t0 = now_ns();
	for (size_t i = 0; i < n; i += GROUP) {
		size_t m = n - i < GROUP ? n - i : GROUP;
		make_checks(k + i, m, at, cs);
		if (ent_store_view_begin(v) ||
		    ent_store_view_check_batch(v, cs, m, batch_cb, &b, NULL))
			return -1;
		ent_store_view_end(v);
	}
	sink += b.acc;
	return (double)(now_ns() - t0) / (double)n;
}

/* Every answer of the batch path against ent_store_view_check's; returns the mismatches. */
static size_t verify_batch(struct ent_view *v, const struct key *k, size_t n)
{
	static struct ent_check_result expect[GROUP];
	struct ent_check cs[GROUP];
	struct batch_ctx b = {0, expect, 0};
	int64_t at = ent_time_now_ms();
	for (size_t i = 0; i < n; i += GROUP) {
		size_t m = n - i < GROUP ? n - i : GROUP;
		make_checks(k + i, m, at, cs);
		if (ent_store_view_begin(v))
			return n;
		for (size_t j = 0; j < m; j++)
			if (ent_store_view_check(v, &cs[j], &expect[j]))
				return n;
		if (ent_store_view_check_batch(v, cs, m, batch_cb, &b, NULL))
			return n;
		ent_store_view_end(v);
	}
	return b.mismatches;
}

int main(int argc, char **argv)
{
	const char *db = NULL, *features = "f_metered_0,f_metered_1,f_metered_2", *only = NULL;
	size_t customers = 1000000, n = 2000000;
	unsigned rounds = 3;
	uint64_t seed = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--db"))
			db = argv[i + 1];
		else if (!strcmp(argv[i], "--customers"))
			customers = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--n"))
			n = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--features"))
			features = argv[i + 1];
		else if (!strcmp(argv[i], "--rounds"))
			rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--only"))
			only = argv[i + 1];
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "bench_lookup: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!db || !customers || !n || !rounds) {
		fprintf(stderr, "usage: bench_lookup --db DIR --customers N [--n LOOKUPS] "
				"[--features A,B] [--rounds R] [--seed S]\n");
		return 2;
	}

	char fbuf[1024];
	const char *feat[64];
	size_t nf = 0;
	snprintf(fbuf, sizeof(fbuf), "%s", features);
	for (char *s = strtok(fbuf, ","); s && nf < 64; s = strtok(NULL, ","))
		feat[nf++] = s;

	struct key *keys = calloc(n, sizeof(*keys)), *sorted = calloc(n, sizeof(*keys));
	if (!keys || !sorted)
		return 1;
	struct bench_rng rng;
	bench_rng_seed(&rng, seed);
	for (size_t i = 0; i < n; i++) {
		int c = snprintf(keys[i].b, sizeof(keys[i].b), "cus_%u",
				 bench_rng_below(&rng, (uint32_t)customers));
		const char *f = feat[bench_rng_below(&rng, (uint32_t)nf)];
		keys[i].clen = (uint32_t)c;
		keys[i].len =
			(uint32_t)(c + 1 +
				   snprintf(keys[i].b + c + 1, sizeof(keys[i].b) - c - 1, "%s", f));
	}
	memcpy(sorted, keys, n * sizeof(*keys));
	for (size_t i = 0; i < n; i += GROUP)
		qsort(sorted + i, (n - i < GROUP ? n - i : GROUP), sizeof(*keys), key_cmp);

	struct ent_store_opts o = {.path = db, .read_only = true, .map_size = (size_t)64 << 30};
	struct ent_err err;
	struct ent_store *s;
	if (ent_store_open(&o, &s, &err)) {
		fprintf(stderr, "bench_lookup: %s\n", err.msg);
		return 1;
	}
	struct ent_view *v;
	if (ent_store_view_new(s, &v))
		return 1;

	double warm = run_get(v, keys, n);
	printf("warm-up (page faults included): %.0f ns/get\n", warm);
	size_t bad = verify_batch(v, keys, n);
	printf("batch answers differing from ent_store_view_check: %zu of %zu\n", bad, n);
	if (bad)
		return 1;
	const char *names[] = {"get", "sorted", "check", "unary", "batch"};
	double *t[5];
	for (int m = 0; m < 5; m++)
		t[m] = calloc(rounds, sizeof(double));
	for (unsigned r = 0; r < rounds; r++) {
#define WANT(name) (!only || !strcmp(only, name))
		t[0][r] = WANT("get") ? run_get(v, keys, n) : 0;
		t[1][r] = WANT("sorted") ? run_get(v, sorted, n) : 0;
		t[2][r] = WANT("check") ? run_check(v, keys, n, false) : 0;
		t[3][r] = WANT("unary") ? run_check(v, keys, n, true) : 0;
		t[4][r] = WANT("batch") ? run_batch(v, keys, n) : 0;
	}
	for (int m = 0; m < 5; m++) {
		if (!WANT(names[m]))
			continue;
		qsort(t[m], rounds, sizeof(double), cmp_double);
		printf("%-7s %7.0f ns/lookup  (min %.0f, max %.0f over %u rounds of %zu)\n",
		       names[m], t[m][rounds / 2], t[m][0], t[m][rounds - 1], rounds, n);
		free(t[m]);
	}
	ent_store_view_free(v);
	ent_store_close(s);
	free(keys);
	free(sorted);
	return 0;
}
