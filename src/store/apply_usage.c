/*
 * apply() for usage: reported usage (idempotent by key), atomic check-and-consume, and the
 * import path that sets a counter as exported.
 *
 * The counter lives in two places kept equal in one transaction: the usage table (the truth
 * that survives recomputes) and the aggregate record's header (what a check reads in place).
 * A count belongs to one reset period; a new period starts from zero.
 */
#include "store/impl.h"

static struct ent_str s_(const char *s)
{
	return ent_str_c(s);
}

/* Idempotency values: {i64 at, i64 quantity, u8 flags}; flags bit 0 = counted/allowed,
 * bits 1..7 = the consume reason. */
#define IDEM_LEN 17

static int idem_lookup(struct ent_actx *c, const struct ent_key *key, bool *seen, uint8_t *flags)
{
	MDB_val v;
	int r = ent_store_apply_get(c, ENT_T_IDEM, (struct ent_str){key->b, key->len}, &v);
	*seen = r == 0;
	*flags = r == 0 && v.mv_size >= IDEM_LEN ? ((const uint8_t *)v.mv_data)[16] : 0;
	return r == -ENT_ENOTFOUND ? 0 : r;
}

static int idem_store(struct ent_actx *c, const struct ent_key *key, int64_t quantity,
		      uint8_t flags)
{
	uint8_t b[IDEM_LEN];
	ent_store_le64_put(b, (uint64_t)c->at);
	ent_store_le64_put(b + 8, (uint64_t)quantity);
	b[16] = flags;
	return ent_store_apply_put(c, ENT_T_IDEM, (struct ent_str){key->b, key->len}, b, IDEM_LEN);
}

/* The answer for one unit after the event, without borrowed pointers. */
static int answer_usage(struct ent_actx *c, struct ent_str customer, struct ent_str feature)
{
	struct ent_usage_state u;
	int r = ent_store_apply_decide(c, customer, feature, 1, c->at, &u, &c->res->usage);
	c->res->usage.agg = NULL;
	return r;
}

/*
 * Count \a q units at instant \a ts, in the period of ts under the shape of ts's segment.
 * A period that starts after the stored one: the counter restarts there. One that contains
 * the stored period's start (the same period, or the same one seen under a moved anchor): add.
 * One that ended before the stored period began (closed): acknowledged, not counted
 * (*counted = false).
 */
static int count(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
		 const struct ent_key *key, int64_t ts, int64_t q, bool *counted)
{
	(void)key;
	struct ent_usage_state u;
	int64_t ps, pe;
	int r = ent_store_apply_period_at(c, customer, feature, ts, &ps, &pe, &u);
	if (r)
		return r;
	*counted = false;
	int64_t used;
	if (ps > u.period_start) {
		used = q;
	} else if (pe == 0 || u.period_start < pe) {
		if (u.used > INT64_MAX - q)
			return ent_err_set(c->err, ENT_EINVAL, "quantity: overflows the counter");
		used = u.used + q;
		ps = u.period_start;
	} else {
		return 0;
	}
	*counted = true;
	return ent_store_apply_usage_write(c, customer, feature, ps, used);
}

static int check_ids(struct ent_actx *c, const char *customer, const char *feature,
		     const char *idem, bool idem_required)
{
	int r;
	if ((r = ent_str_check_id(s_(customer), ENT_MAX_CUSTOMER_ID, "customer_id", c->err)) ||
	    (r = ent_str_check_id(s_(feature), ENT_MAX_CODE, "feature_code", c->err)))
		return r;
	if ((idem_required || (idem && *idem)) &&
	    (r = ent_str_check_id(s_(idem), ENT_MAX_IDEM_KEY, "idempotency_key", c->err)))
		return r;
	return 0;
}

int ent_store_apply_report_usage(struct ent_actx *c, const Ent__V1__ReportUsageRequest *req)
{
	int r = check_ids(c, req->customer_id, req->feature_code, req->idempotency_key, true);
	if (r)
		return r;
	if (req->quantity <= 0)
		return ent_err_set(c->err, ENT_EINVAL, "quantity: must be > 0");
	if (req->timestamp < 0)
		return ent_err_set(c->err, ENT_EINVAL, "timestamp: must be >= 0");
	if ((r = ent_store_apply_check_time(c, req->timestamp, "timestamp")))
		return r;
	struct ent_str customer = s_(req->customer_id), feature = s_(req->feature_code);
	MDB_val v;
	r = ent_store_apply_get(c, ENT_T_FEATURES, feature, &v);
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_EINVAL, "feature_code: unknown feature '%s'",
				   req->feature_code);
	if (r)
		return r;
	if (v.mv_size < 1 || ((const uint8_t *)v.mv_data)[0] != ENT_FT_METERED)
		return ent_err_set(c->err, ENT_EINVAL, "feature_code: feature '%s' is not metered",
				   req->feature_code);
	r = ent_store_apply_get(c, ENT_T_CUSTOMERS, customer, &v);
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_ENOTFOUND, "customer_id: unknown customer '%s'",
				   req->customer_id);
	if (r)
		return r;
	struct ent_key ikey, key;
	struct ent_str idem = s_(req->idempotency_key);
	if (ent_store_key_make(&ikey, customer, &idem) ||
	    ent_store_key_make(&key, customer, &feature))
		return ent_err_set(c->err, ENT_EINVAL, "idempotency_key: too long");
	bool seen;
	uint8_t flags;
	if ((r = idem_lookup(c, &ikey, &seen, &flags)))
		return r;
	if (seen) {
		c->res->duplicate = true;
		return answer_usage(c, customer, feature);
	}
	/* Usage "that already happened": a timestamp ahead of the event clock is clock skew
	 * between services and counts now. */
	int64_t ts = req->timestamp ? req->timestamp : c->at;
	if (ts > c->at)
		ts = c->at;
	bool counted;
	if ((r = count(c, customer, feature, &key, ts, req->quantity, &counted)) ||
	    (r = idem_store(c, &ikey, req->quantity, counted ? 1 : 0)))
		return r;
	c->res->counted = counted;
	return answer_usage(c, customer, feature);
}

int ent_store_apply_consume(struct ent_actx *c, const Ent__V1__ConsumeEntitlementRequest *req)
{
	int r = check_ids(c, req->customer_id, req->feature_code, req->idempotency_key, false);
	if (r)
		return r;
	if (req->quantity < 0)
		return ent_err_set(c->err, ENT_EINVAL, "quantity: must be >= 0");
	int64_t q = req->quantity ? req->quantity : 1;
	struct ent_str customer = s_(req->customer_id), feature = s_(req->feature_code);
	struct ent_str idem = s_(req->idempotency_key);
	struct ent_key ikey, key;
	if (ent_store_key_make(&key, customer, &feature) ||
	    (idem.len && ent_store_key_make(&ikey, customer, &idem)))
		return ent_err_set(c->err, ENT_EINVAL, "idempotency_key: too long");
	if (idem.len) {
		bool seen;
		uint8_t flags;
		if ((r = idem_lookup(c, &ikey, &seen, &flags)))
			return r;
		if (seen) {
			/* The first answer's effect, once: nothing is counted again. */
			c->res->duplicate = true;
			c->res->allowed = flags & 1;
			c->res->reason = flags >> 1;
			return answer_usage(c, customer, feature);
		}
	}
	struct ent_usage_state u;
	struct ent_decision d;
	if ((r = ent_store_apply_decide(c, customer, feature, q, c->at, &u, &d)))
		return r;
	c->res->allowed = d.allowed;
	c->res->reason = d.reason;
	if (d.allowed) {
		bool counted = true;
		if (u.feature_type == ENT_FT_METERED &&
		    (r = count(c, customer, feature, &key, c->at, q, &counted)))
			return r;
		/* A denied consume records nothing, so a retry under the same key is decided
		 * afresh. */
		if (idem.len && (r = idem_store(c, &ikey, q, (uint8_t)(1 | d.reason << 1))))
			return r;
	}
	return answer_usage(c, customer, feature);
}

int ent_store_apply_set_usage(struct ent_actx *c, const Ent__V1__UsageState *req)
{
	int r = check_ids(c, req->customer_id, req->feature_code, NULL, false);
	if (r)
		return r;
	if (req->used < 0)
		return ent_err_set(c->err, ENT_EINVAL, "used: must be >= 0");
	MDB_val v;
	r = ent_store_apply_get(c, ENT_T_FEATURES, s_(req->feature_code), &v);
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_EINVAL, "feature_code: unknown feature '%s'",
				   req->feature_code);
	if (r)
		return r;
	return ent_store_apply_usage_write(c, s_(req->customer_id), s_(req->feature_code),
					   req->period_start, req->used);
}
