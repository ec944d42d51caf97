/*
 * What entbench sends, prepared before the clock starts: a fast PRNG, a Zipf sampler over a
 * precomputed CDF, and the protobuf wire bytes of every customer and feature key, so building a
 * request is a couple of memcpy()s and no protobuf-c call.
 *
 * Wire facts used here (proto/ent/v1/entitlement.proto): CheckEntitlementRequest,
 * ConsumeEntitlementRequest and ReportUsageRequest all carry customer_id as field 1 and
 * feature_code as field 2, so one pre-encoded "key" (field 1 + field 2) starts all three;
 * BatchCheckEntitlementsRequest is field 1 repeated, each a length-delimited
 * CheckEntitlementRequest.
 */
#ifndef BENCH_KEYS_H
#define BENCH_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- PRNG: splitmix64 to seed, xorshift128+ to draw --------------------------------- */

struct bench_rng {
	uint64_t s[2];
};

/** Seed \a r from \a seed (any value, including 0). */
void bench_rng_seed(struct bench_rng *r, uint64_t seed);

static inline uint64_t bench_rng_next(struct bench_rng *r)
{
	uint64_t s1 = r->s[0];
	const uint64_t s0 = r->s[1];

	r->s[0] = s0;
	s1 ^= s1 << 23;
	r->s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return r->s[1] + s0;
}

/** Uniform in [0, n) without a division (Lemire's multiply-shift; bias < n / 2^64). */
static inline uint32_t bench_rng_below(struct bench_rng *r, uint32_t n)
{
	return (uint32_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

/** Uniform double in [0, 1) with 53 random bits. */
static inline double bench_rng_unit(struct bench_rng *r)
{
	return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- Zipf ----------------------------------------------------------------------------- */

/**
 * Zipf over ranks 0..n-1 with P(rank k) proportional to 1/(k+1)^s. The CDF is precomputed and
 * a guide table (Chen & Asau) maps a uniform draw to the first candidate rank, so a draw costs
 * O(1) expected steps instead of a binary search. n up to 2^32-1; about 12 bytes per rank.
 */
struct bench_zipf {
	uint32_t n;
	double *cdf;	 /**< cdf[k] = P(rank <= k); cdf[n-1] == 1 */
	uint32_t *guide; /**< guide[j] = smallest k with cdf[k] > j / n */
};

/** Build the tables. \return 0, or -1 (bad argument or out of memory). */
int bench_zipf_init(struct bench_zipf *z, uint32_t n, double s);
void bench_zipf_deinit(struct bench_zipf *z);
/** A rank in [0, n); rank 0 is the most frequent. */
uint32_t bench_zipf_draw(const struct bench_zipf *z, struct bench_rng *r);

/* ---- keys and request encoding -------------------------------------------------------- */

/** Room for the largest request built from one key (key + quantity + idempotency key). */
#define BENCH_REQ_MAX 640

/**
 * Customers <prefix>0 .. <prefix>(n-1) and a list of feature codes, each stored as the encoded
 * protobuf field (tag, length, bytes): customers as field 1, features as field 2.
 */
struct bench_keys {
	uint32_t customers;
	uint32_t stride; /**< bytes per customer entry: 1 length byte + the encoded field */
	uint8_t *cust;	 /**< customers * stride */
	uint32_t features;
	uint8_t **feat; /**< encoded field 2 of each feature, feat_len[i] bytes */
	uint16_t *feat_len;
	char **feat_code; /**< the codes as given (NUL-terminated) */
};

/**
 * Build the key tables. \a feature_csv is a comma-separated list of feature codes.
 * \return 0, or -1 with a message in \a err (bad prefix/feature, too long, out of memory).
 */
int bench_keys_init(struct bench_keys *k, const char *customer_prefix, uint32_t customers,
		    const char *feature_csv, char *err, size_t errlen);
void bench_keys_deinit(struct bench_keys *k);

/** Write the key (customer field 1 + feature field 2) at \a out; \return its length. */
size_t bench_enc_key(const struct bench_keys *k, uint32_t cust, uint32_t feat, uint8_t *out);

/** A CheckEntitlementRequest: the key, plus quantity (field 3) when it is not 0. */
size_t bench_enc_check(const struct bench_keys *k, uint32_t cust, uint32_t feat, int64_t quantity,
		       uint8_t *out);
/** A ConsumeEntitlementRequest: key, quantity, idempotency_key (field 4) unless NULL. */
size_t bench_enc_consume(const struct bench_keys *k, uint32_t cust, uint32_t feat, int64_t quantity,
			 const char *idem, size_t idem_len, uint8_t *out);
/** A ReportUsageRequest: key, quantity (> 0), idempotency_key (field 5, required). */
size_t bench_enc_report(const struct bench_keys *k, uint32_t cust, uint32_t feat, int64_t quantity,
			const char *idem, size_t idem_len, uint8_t *out);
/**
 * Append one CheckEntitlementRequest as an element of BatchCheckEntitlementsRequest.checks
 * (field 1, length-delimited) at \a out; \return bytes written (at most BENCH_REQ_MAX).
 */
size_t bench_enc_batch_item(const struct bench_keys *k, uint32_t cust, uint32_t feat,
			    int64_t quantity, uint8_t *out);

/**
 * Append one ReportUsageRequest as an element of BatchReportUsageRequest.records (field 1,
 * length-delimited) at \a out; \return bytes written (at most BENCH_REQ_MAX).
 */
size_t bench_enc_report_item(const struct bench_keys *k, uint32_t cust, uint32_t feat,
			     int64_t quantity, const char *idem, size_t idem_len, uint8_t *out);

/**
 * Walk a BatchReportUsageResponse: count the results (field 1) whose outcome (field 1 of the
 * result) is COUNTED (1). \return that count, or -1 if malformed or any record was not counted.
 */
long bench_scan_usage_batch(const uint8_t *p, size_t len);

/** Protobuf base-128 varint; \return bytes written (1..10). */
size_t bench_put_varint(uint8_t *out, uint64_t v);

/**
 * The answer fields entbench looks at, read straight from the wire: `allowed` (field 1, bool)
 * and `reason` (field 2, enum), shared by CheckEntitlementResponse and
 * ConsumeEntitlementResponse. Unknown fields are skipped.
 * \return 0, or -1 if the bytes are not a valid protobuf message.
 */
int bench_scan_answer(const uint8_t *p, size_t len, bool *allowed, uint32_t *reason);

/**
 * Walk a BatchCheckEntitlementsResponse: count its results (field 1) and scan each.
 * \a reasons (16 counters) gets one increment per result by reason (clamped to 15).
 * \return number of results, or -1 if malformed.
 */
long bench_scan_batch(const uint8_t *p, size_t len, uint64_t *allowed, uint64_t reasons[16]);

#endif
