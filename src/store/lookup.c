/*
 * The read path: one check (the hot path), a batch of checks, and a customer's aggregated view.
 *
 * ent_store_view_check allocates nothing and takes no lock: the key is built on the stack, the
 * record is decoded in place from the map into the caller's result, and every string of the
 * answer points into the map until ent_store_view_end.
 *
 * ent_store_view_check_batch (walk.c) gives the same answers for many checks, faster.
 */
#include <stdatomic.h>
#include <stdio.h>

#include "ent/pbarena.h"
#include "store/impl.h"

/*
 * A record that fails its checksum or its structure: counted (entd_store_corrupt_reads_total)
 * and logged at most once a second, naming the record, so an operator learns of the damage
 * from the first bad read and can run `entctl verify`. The check answers DATA_LOSS, never
 * another answer. Only on the error path: the hot path pays nothing for it.
 */
static void note_corrupt(struct ent_store *s, struct ent_str customer, struct ent_str feature)
{
	atomic_fetch_add_explicit(&s->corrupt_reads, 1, memory_order_relaxed);
	int64_t now = ent_time_now_ms();
	int64_t last = atomic_load_explicit(&s->corrupt_logged_at, memory_order_relaxed);
	if (now - last < 1000 || !atomic_compare_exchange_strong(&s->corrupt_logged_at, &last, now))
		return;
	char c[ENT_MAX_CUSTOMER_ID + 1], f[ENT_MAX_CODE + 1], n[24];
	snprintf(c, sizeof(c), "%.*s", (int)customer.len, customer.p);
	snprintf(f, sizeof(f), "%.*s", (int)feature.len, feature.p);
	snprintf(n, sizeof(n), "%llu",
		 (unsigned long long)atomic_load_explicit(&s->corrupt_reads, memory_order_relaxed));
	ent_log(ENT_LOG_ERROR,
		"store: a stored record failed its checksum or does not decode; answered "
		"DATA_LOSS (run entctl verify, restore from a snapshot)",
		"customer", c, "feature", f, "corrupt_reads", n, NULL);
}

static int get(struct ent_view *v, enum ent_table t, const void *key, size_t len, MDB_val *val)
{
	MDB_val k = {len, (void *)key};
	return mdb_get(v->txn, v->s->dbi[t], &k, val);
}

/* Tell a miss apart: unknown feature, unknown customer, or simply not entitled. */
static int check_miss(struct ent_view *v, const struct ent_check *c, struct ent_check_result *out)
{
	MDB_val val;
	int rc = MDB_NOTFOUND;
	if (c->feature.len > 0 && c->feature.len <= ENT_MAX_CODE)
		rc = get(v, ENT_T_FEATURES, c->feature.p, c->feature.len, &val);
	if (rc == MDB_NOTFOUND) {
		ent_model_decide_missing(ENT_R_UNKNOWN_FEATURE, ENT_FT_UNSPECIFIED, &out->d);
		return 0;
	}
	if (rc)
		return ent_store_mdb_err(rc);
	if (val.mv_size < 1)
		return -ENT_ECORRUPT;
	uint8_t type = ((const uint8_t *)val.mv_data)[0];
	rc = MDB_NOTFOUND;
	if (c->customer.len > 0 && c->customer.len <= ENT_MAX_CUSTOMER_ID)
		rc = get(v, ENT_T_CUSTOMERS, c->customer.p, c->customer.len, &val);
	if (rc == MDB_NOTFOUND) {
		ent_model_decide_missing(ENT_R_UNKNOWN_CUSTOMER, type, &out->d);
		return 0;
	}
	if (rc)
		return ent_store_mdb_err(rc);
	ent_model_decide_missing(ENT_R_NOT_ENTITLED, type, &out->d);
	return 0;
}

int ent_store_view_decide(struct ent_view *v, const struct ent_check *c, int rc, MDB_val *val,
			  struct ent_check_result *out)
{
	memset(&out->usage, 0, sizeof(out->usage));
	if (rc == MDB_NOTFOUND)
		return check_miss(v, c, out);
	if (rc)
		return ent_store_mdb_err(rc);
	int r = ent_store_record_decode(val->mv_data, val->mv_size, c->at, &out->usage, &out->seg);
	if (r) {
		note_corrupt(v->s, c->customer, c->feature);
		return r;
	}
	ent_model_decide(&out->usage, &out->seg, c->quantity > 0 ? c->quantity : 1, c->at, &out->d);
	return 0;
}

int ent_store_view_check(struct ent_view *v, const struct ent_check *c,
			 struct ent_check_result *out)
{
	if (!v->active)
		return -ENT_EINVAL;
	struct ent_key key;
	MDB_val val;
	int rc = MDB_NOTFOUND;
	if (ent_store_check_key(c, &key))
		rc = get(v, ENT_T_AGG, key.b, key.len, &val);
	return ent_store_view_decide(v, c, rc, &val, out);
}

struct cf_scan {
	struct ent_view *v;
	struct ent_str customer;
	const struct ent_str *filter;
	size_t n_filter;
	int64_t at;
	struct ent_arena *arena;
	ent_customer_feature_cb cb;
	void *ctx;
	int err;
};

static int cf_one(void *ctx, struct ent_str key, struct ent_str val)
{
	struct cf_scan *s = ctx;
	struct ent_str customer, feature;
	if (!ent_store_key_split(key, &customer, &feature) || !ent_str_eq(customer, s->customer))
		return 0;
	if (s->n_filter) {
		bool wanted = false;
		for (size_t i = 0; i < s->n_filter && !wanted; i++)
			wanted = ent_str_eq(s->filter[i], feature);
		if (!wanted)
			return 0;
	}
	struct ent_customer_feature cf;
	memset(&cf, 0, sizeof(cf));
	cf.feature_code = feature;
	int r = ent_store_record_decode((const uint8_t *)val.p, val.len, s->at, &cf.r.usage,
					&cf.r.seg);
	if (r) {
		note_corrupt(s->v->s, customer, feature);
		return s->err = r;
	}
	ent_model_decide(&cf.r.usage, &cf.r.seg, 1, s->at, &cf.r.d);
	Ent__V1__Feature *f;
	r = ent_store_load_feature(s->v->s, s->v->txn, feature, s->arena, &f);
	if (r)
		return s->err = (r == -ENT_ENOTFOUND ? -ENT_ECORRUPT : r);
	cf.feature_pb = f;
	struct ent_sources *src = ent_arena_alloc(s->arena, sizeof(*src));
	if (!src)
		return s->err = -ENT_ENOMEM;
	r = ent_store_gather(s->v->s, s->v->txn, customer, feature, s->arena, src);
	if (r)
		return s->err = r;
	cf.sources = src;
	return s->cb(s->ctx, &cf);
}

int ent_store_view_customer_features(struct ent_view *v, struct ent_str customer,
				     const struct ent_str *filter, size_t n_filter, int64_t at,
				     struct ent_arena *arena, ent_customer_feature_cb cb, void *ctx)
{
	if (!v->active)
		return -ENT_EINVAL;
	if (customer.len == 0 || customer.len > ENT_MAX_CUSTOMER_ID)
		return -ENT_ENOTFOUND;
	MDB_val val;
	int rc = get(v, ENT_T_CUSTOMERS, customer.p, customer.len, &val);
	if (rc)
		return ent_store_mdb_err(rc);
	struct ent_key prefix;
	struct ent_str empty = {"", 0};
	if (ent_store_key_make(&prefix, customer, &empty))
		return -ENT_ENOTFOUND;
	struct cf_scan s = {v, customer, filter, n_filter, at, arena, cb, ctx, 0};
	int r = ent_store_view_scan(v, ENT_T_AGG, (struct ent_str){prefix.b, prefix.len},
				    (struct ent_str){"", 0}, 0, cf_one, &s);
	return s.err ? s.err : r;
}
