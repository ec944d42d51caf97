/* Key tables, request encoding, PRNG and Zipf sampler: see keys.h. */
#include "keys.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field tags: (field number << 3) | wire type; wire type 0 varint, 2 length-delimited. */
#define TAG_LEN(f)    ((uint8_t)(((f) << 3) | 2))
#define TAG_VARINT(f) ((uint8_t)((f) << 3))

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void bench_rng_seed(struct bench_rng *r, uint64_t seed)
{
	r->s[0] = splitmix64(&seed);
	r->s[1] = splitmix64(&seed);
	if (!r->s[0] && !r->s[1]) /* xorshift's one absorbing state */
		r->s[1] = 1;
}

int bench_zipf_init(struct bench_zipf *z, uint32_t n, double s)
{
	double total = 0.0, acc = 0.0;
	uint32_t k = 0;

	memset(z, 0, sizeof(*z));
	if (n == 0 || !(s > 0.0))
		return -1;
	z->cdf = malloc((size_t)n * sizeof(*z->cdf));
	z->guide = malloc((size_t)n * sizeof(*z->guide));
	if (!z->cdf || !z->guide) {
		bench_zipf_deinit(z);
		return -1;
	}
	z->n = n;
	/* Summed from the smallest weight up so the tail is not lost in rounding. */
	for (uint32_t i = n; i-- > 0;)
		total += pow((double)i + 1.0, -s);
	for (uint32_t i = 0; i < n; i++) {
		acc += pow((double)i + 1.0, -s);
		z->cdf[i] = acc / total;
	}
	z->cdf[n - 1] = 1.0; /* a draw u < 1 always finds a rank */
	for (uint32_t j = 0; j < n; j++) {
		double threshold = (double)j / (double)n;

		while (k < n - 1 && z->cdf[k] <= threshold)
			k++;
		z->guide[j] = k;
	}
	return 0;
}

void bench_zipf_deinit(struct bench_zipf *z)
{
	free(z->cdf);
	free(z->guide);
	memset(z, 0, sizeof(*z));
}

uint32_t bench_zipf_draw(const struct bench_zipf *z, struct bench_rng *r)
{
	double u = bench_rng_unit(r);
	uint32_t j = (uint32_t)(u * (double)z->n);
	uint32_t k;

	if (j >= z->n)
		j = z->n - 1;
	/* guide[j] is never past the answer: cdf[guide[j] - 1] <= j/n <= u. */
	k = z->guide[j];
	while (z->cdf[k] <= u && k < z->n - 1)
		k++;
	return k;
}

size_t bench_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

static bool valid_id(const char *s, size_t len)
{
	if (len < 1 || len > 120)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] == 0x7f || s[i] == ',')
			return false;
	return true;
}

int bench_keys_init(struct bench_keys *k, const char *customer_prefix, uint32_t customers,
		    const char *feature_csv, char *err, size_t errlen)
{
	size_t plen = strlen(customer_prefix);
	const char *p;
	uint32_t nf = 1;

	memset(k, 0, sizeof(*k));
	if (customers == 0) {
		snprintf(err, errlen, "--customers must be at least 1");
		return -1;
	}
	if (plen > 100 || (plen && !valid_id(customer_prefix, plen))) {
		snprintf(err, errlen, "bad --customer-prefix");
		return -1;
	}
	/*
	 * Longest id is prefix + 10 digits; the entry is its length byte, tag, length, the bytes,
	 * and room for snprintf's NUL. Ids stay below 128 bytes, so the length is one byte.
	 */
	k->stride = (uint32_t)(4 + plen + 10);
	k->customers = customers;
	k->cust = malloc((size_t)customers * k->stride);
	if (!k->cust)
		goto fail_nomem;
	for (uint32_t i = 0; i < customers; i++) {
		uint8_t *e = k->cust + (size_t)i * k->stride;
		int n = snprintf((char *)e + 3, k->stride - 3, "%s%u", customer_prefix, i);

		e[0] = (uint8_t)(2 + n);
		e[1] = TAG_LEN(1);
		e[2] = (uint8_t)n;
	}

	for (p = feature_csv; *p; p++)
		nf += *p == ',';
	k->feat = calloc(nf, sizeof(*k->feat));
	k->feat_len = calloc(nf, sizeof(*k->feat_len));
	k->feat_code = calloc(nf, sizeof(*k->feat_code));
	if (!k->feat || !k->feat_len || !k->feat_code)
		goto fail_nomem;
	p = feature_csv;
	for (uint32_t i = 0; i < nf; i++) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (!valid_id(p, len)) {
			snprintf(err, errlen, "bad feature code #%u in '%s'", i + 1, feature_csv);
			bench_keys_deinit(k);
			return -1;
		}
		k->feat_code[i] = strndup(p, len);
		k->feat[i] = malloc(2 + len);
		if (!k->feat_code[i] || !k->feat[i])
			goto fail_nomem;
		k->feat[i][0] = TAG_LEN(2);
		k->feat[i][1] = (uint8_t)len;
		memcpy(k->feat[i] + 2, p, len);
		k->feat_len[i] = (uint16_t)(2 + len);
		k->features = i + 1;
		p = end ? end + 1 : p + len;
	}
	return 0;

fail_nomem:
	snprintf(err, errlen, "out of memory for %u customers", customers);
	bench_keys_deinit(k);
	return -1;
}

void bench_keys_deinit(struct bench_keys *k)
{
	for (uint32_t i = 0; k->feat && i < k->features; i++) {
		free(k->feat[i]);
		free(k->feat_code[i]);
	}
	free(k->feat);
	free(k->feat_len);
	free(k->feat_code);
	free(k->cust);
	memset(k, 0, sizeof(*k));
}

size_t bench_enc_key(const struct bench_keys *k, uint32_t cust, uint32_t feat, uint8_t *out)
{
	const uint8_t *e = k->cust + (size_t)cust * k->stride;
	size_t n = e[0];

	memcpy(out, e + 1, n);
	memcpy(out + n, k->feat[feat], k->feat_len[feat]);
	return n + k->feat_len[feat];
}

static size_t put_varint_field(uint8_t *out, unsigned field, uint64_t v)
{
	out[0] = TAG_VARINT(field);
	return 1 + bench_put_varint(out + 1, v);
}

static size_t put_bytes_field(uint8_t *out, unsigned field, const char *s, size_t len)
{
	size_t n;

	out[0] = TAG_LEN(field);
	n = 1 + bench_put_varint(out + 1, len);
	memcpy(out + n, s, len);
	return n + len;
}

size_t bench_enc_check(const struct bench_keys *k, uint32_t cust, uint32_t feat, int64_t quantity,
		       uint8_t *out)
{
	size_t n = bench_enc_key(k, cust, feat, out);

	if (quantity)
		n += put_varint_field(out + n, 3, (uint64_t)quantity);
	return n;
}

size_t bench_enc_consume(const struct bench_keys *k, uint32_t cust, uint32_t feat, int64_t quantity,
			 const char *idem, size_t idem_len, uint8_t *out)
{
	size_t n = bench_enc_check(k, cust, feat, quantity, out);

	if (idem)
		n += put_bytes_field(out + n, 4, idem, idem_len);
	return n;
}

size_t bench_enc_report(const struct bench_keys *k, uint32_t cust, uint32_t feat, int64_t quantity,
			const char *idem, size_t idem_len, uint8_t *out)
{
	size_t n = bench_enc_check(k, cust, feat, quantity > 0 ? quantity : 1, out);

	return n + put_bytes_field(out + n, 5, idem, idem_len);
}

size_t bench_enc_batch_item(const struct bench_keys *k, uint32_t cust, uint32_t feat,
			    int64_t quantity, uint8_t *out)
{
	uint8_t item[BENCH_REQ_MAX];
	size_t len = bench_enc_check(k, cust, feat, quantity, item);
	size_t n;

	out[0] = TAG_LEN(1);
	n = 1 + bench_put_varint(out + 1, len);
	memcpy(out + n, item, len);
	return n + len;
}

/* ---- reading answers ------------------------------------------------------------------ */

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -1;
		uint8_t b = *(*p)++;

		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* Skip the value of a field of wire type \a wt. */
static int skip_field(const uint8_t **p, const uint8_t *end, unsigned wt)
{
	uint64_t v;

	switch (wt) {
	case 0:
		return get_varint(p, end, &v);
	case 1:
		if (end - *p < 8)
			return -1;
		*p += 8;
		return 0;
	case 2:
		if (get_varint(p, end, &v) || v > (uint64_t)(end - *p))
			return -1;
		*p += v;
		return 0;
	case 5:
		if (end - *p < 4)
			return -1;
		*p += 4;
		return 0;
	default:
		return -1;
	}
}

int bench_scan_answer(const uint8_t *p, size_t len, bool *allowed, uint32_t *reason)
{
	const uint8_t *end = p + len;

	*allowed = false;
	*reason = 0;
	while (p < end) {
		uint64_t key, v;

		if (get_varint(&p, end, &key) || key >> 3 == 0)
			return -1;
		if ((key >> 3) <= 2 && (key & 7) == 0) {
			if (get_varint(&p, end, &v))
				return -1;
			if ((key >> 3) == 1)
				*allowed = v != 0;
			else
				*reason = v > 0xffff ? 0xffff : (uint32_t)v;
		} else if (skip_field(&p, end, (unsigned)(key & 7))) {
			return -1;
		}
	}
	return 0;
}

long bench_scan_batch(const uint8_t *p, size_t len, uint64_t *allowed, uint64_t reasons[16])
{
	const uint8_t *end = p + len;
	long n = 0;

	while (p < end) {
		uint64_t key, v;

		if (get_varint(&p, end, &key) || key >> 3 == 0)
			return -1;
		if (key == (uint64_t)TAG_LEN(1)) {
			bool ok;
			uint32_t reason;

			if (get_varint(&p, end, &v) || v > (uint64_t)(end - p) ||
			    bench_scan_answer(p, (size_t)v, &ok, &reason))
				return -1;
			p += v;
			*allowed += ok;
			reasons[reason > 15 ? 15 : reason]++;
			n++;
		} else if (skip_field(&p, end, (unsigned)(key & 7))) {
			return -1;
		}
	}
	return n;
}

size_t bench_enc_report_item(const struct bench_keys *k, uint32_t cust, uint32_t feat,
			     int64_t quantity, const char *idem, size_t idem_len, uint8_t *out)
{
	uint8_t item[BENCH_REQ_MAX];
	size_t len = bench_enc_report(k, cust, feat, quantity, idem, idem_len, item);
	size_t n;

	out[0] = TAG_LEN(1);
	n = 1 + bench_put_varint(out + 1, len);
	memcpy(out + n, item, len);
	return n + len;
}

/* The outcome (field 1) of one ReportUsageResult; 0 when absent. */
static int scan_outcome(const uint8_t *p, size_t len, uint64_t *outcome)
{
	const uint8_t *end = p + len;

	*outcome = 0;
	while (p < end) {
		uint64_t key;

		if (get_varint(&p, end, &key) || key >> 3 == 0)
			return -1;
		if (key == 1 << 3) {
			if (get_varint(&p, end, outcome))
				return -1;
		} else if (skip_field(&p, end, (unsigned)(key & 7))) {
			return -1;
		}
	}
	return 0;
}

long bench_scan_usage_batch(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	long n = 0;

	while (p < end) {
		uint64_t key, v, outcome;

		if (get_varint(&p, end, &key) || key >> 3 == 0)
			return -1;
		if (key == (uint64_t)TAG_LEN(1)) {
			if (get_varint(&p, end, &v) || v > (uint64_t)(end - p) ||
			    scan_outcome(p, (size_t)v, &outcome) || outcome != 1)
				return -1;
			p += v;
			n++;
		} else if (skip_field(&p, end, (unsigned)(key & 7))) {
			return -1;
		}
	}
	return n;
}
