/*
 * The store end to end: events applied through ent_store_apply in write transactions, answers read
 * back through read views (ent_store_view_check), in a temporary LMDB directory under /tmp that is
 * removed at the end. Instants are fixed (no wall clock), so nothing depends on timing.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "ent/store.h"
#include "ent/v1/event.pb-c.h"
#include "fixture.h"

#define T0  1700000000000LL /* 2023-11-14T22:13:20Z */
#define DAY 86400000LL

/* ---- fixture (tests/unit/fixture.c) ------------------------------------------------------ */

static int setup(void **state)
{
	return fx_setup(state, "store", 0);
}

/* ---- event builders (everything lives in static storage of the test) ------------------- */

static Ent__V1__Event event(int64_t at)
{
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = at;
	return ev;
}

static void upsert_feature(struct store_fx *f, const char *code, Ent__V1__FeatureType type)
{
	Ent__V1__Feature ft = ENT__V1__FEATURE__INIT;
	ft.code = (char *)code;
	ft.type = type;
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	ev.upsert_feature = &ft;
	fx_apply_ok(f, &ev);
}

static Ent__V1__Grant grant(const char *feature, int64_t limit, Ent__V1__ResetPeriod reset)
{
	Ent__V1__Grant g = ENT__V1__GRANT__INIT;
	g.feature_code = (char *)feature;
	g.usage_limit = limit;
	g.usage_reset_period = reset;
	return g;
}

static int set_object(struct store_fx *f, Ent__V1__Event__KindCase kind, const char *code,
		      Ent__V1__Grant *grants, size_t n)
{
	Ent__V1__Grant *ptrs[8];
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &grants[i];
	Ent__V1__SetEntitlementsRequest req = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	req.code = (char *)code;
	req.name = (char *)code;
	req.n_entitlements = n;
	req.entitlements = ptrs;
	Ent__V1__Event ev = event(T0);
	ev.kind_case = kind;
	ev.set_plan = &req; /* the union member of every SetEntitlementsRequest kind */
	return fx_apply(f, &ev);
}

static void set_object_at(struct store_fx *f, Ent__V1__Event__KindCase kind, const char *code,
			  Ent__V1__Grant *grants, size_t n, int64_t at)
{
	Ent__V1__Grant *ptrs[8];
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &grants[i];
	Ent__V1__SetEntitlementsRequest req = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	req.code = (char *)code;
	req.name = (char *)code;
	req.n_entitlements = n;
	req.entitlements = ptrs;
	Ent__V1__Event ev = event(at);
	ev.kind_case = kind;
	ev.set_plan = &req;
	fx_apply_ok(f, &ev);
}

struct sub_spec {
	const char *id, *customer, *plan;
	int64_t quantity, active_from, ends_at;
	const char *addon;
	int64_t addon_quantity;
};

static int upsert_sub(struct store_fx *f, const struct sub_spec *sp)
{
	Ent__V1__SubscriptionAddon ad = ENT__V1__SUBSCRIPTION_ADDON__INIT, *adp = &ad;
	Ent__V1__Subscription sub = ENT__V1__SUBSCRIPTION__INIT;
	sub.id = (char *)sp->id;
	sub.customer_id = (char *)sp->customer;
	sub.plan_code = (char *)sp->plan;
	sub.quantity = sp->quantity;
	sub.active_from = sp->active_from;
	sub.ends_at = sp->ends_at;
	if (sp->addon) {
		ad.addon_code = (char *)sp->addon;
		ad.quantity = sp->addon_quantity;
		sub.n_addons = 1;
		sub.addons = &adp;
	}
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	ev.upsert_subscription = &sub;
	return fx_apply(f, &ev);
}

static int set_override_number(struct store_fx *f, const char *customer, const char *feature,
			       double number, int64_t expires_at, int64_t at)
{
	Ent__V1__OverrideValue val = ENT__V1__OVERRIDE_VALUE__INIT;
	val.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE;
	val.number_value = number;
	Ent__V1__SetCustomerEntitlementRequest req =
		ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = (char *)customer;
	req.feature_code = (char *)feature;
	req.value = &val;
	req.reason = "support ticket 42";
	req.expires_at = expires_at;
	Ent__V1__Event ev = event(at);
	ev.kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
	ev.set_override = &req;
	return fx_apply(f, &ev);
}

static int report(struct store_fx *f, const char *customer, const char *feature, int64_t q,
		  const char *key, int64_t at)
{
	Ent__V1__ReportUsageRequest req = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	req.customer_id = (char *)customer;
	req.feature_code = (char *)feature;
	req.quantity = q;
	req.idempotency_key = (char *)key;
	Ent__V1__Event ev = event(at);
	ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	ev.report_usage = &req;
	return fx_apply(f, &ev);
}

static int consume(struct store_fx *f, const char *customer, const char *feature, int64_t q,
		   const char *key, int64_t at)
{
	Ent__V1__ConsumeEntitlementRequest req = ENT__V1__CONSUME_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = (char *)customer;
	req.feature_code = (char *)feature;
	req.quantity = q;
	req.idempotency_key = (char *)(key ? key : "");
	Ent__V1__Event ev = event(at);
	ev.kind_case = ENT__V1__EVENT__KIND_CONSUME;
	ev.consume = &req;
	return fx_apply(f, &ev);
}

/* A tick of at most \a max entries (0: all); \return whether it stopped with more to do. */
static bool tick_piece(struct store_fx *f, int64_t now, int64_t idem_before, uint32_t max)
{
	Ent__V1__Tick t = ENT__V1__TICK__INIT;
	t.now = now;
	t.idem_before = idem_before;
	t.max_entries = max;
	Ent__V1__Event ev = event(now);
	ev.kind_case = ENT__V1__EVENT__KIND_TICK;
	ev.tick = &t;
	fx_apply_ok(f, &ev);
	return f->res.more;
}

static void tick(struct store_fx *f, int64_t now, int64_t idem_before)
{
	assert_false(tick_piece(f, now, idem_before, 0));
}

/* The usual catalog: api_calls (metered), sso (boolean), plan startup (100 calls a month
 * and sso), add-on boost (50 calls). */
static void catalog(struct store_fx *f)
{
	upsert_feature(f, "api_calls", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	upsert_feature(f, "sso", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	Ent__V1__Grant g[2] = {grant("api_calls", 100, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY),
			       grant("sso", 0, 0)};
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", g, 2), 0);
	Ent__V1__Grant b = grant("api_calls", 50, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_ADDON, "boost", &b, 1), 0);
}

/* ---- checks ------------------------------------------------------------------------------ */

struct answer {
	struct ent_decision d;
	bool override_applied;
	char override_reason[64];
	int64_t override_expires_at;
	uint64_t seq;
};

static struct answer check(struct store_fx *f, const char *customer, const char *feature, int64_t q,
			   int64_t at)
{
	static struct ent_check_result r;
	struct answer a;
	memset(&a, 0, sizeof(a));
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct ent_check c = {ent_str_c(customer), ent_str_c(feature), q, at};
	assert_int_equal(ent_store_view_check(f->v, &c, &r), 0);
	a.d = r.d;
	a.d.agg = NULL;
	if (r.d.agg) {
		a.override_applied = r.d.agg->override_applied;
		snprintf(a.override_reason, sizeof(a.override_reason), "%.*s",
			 (int)r.d.agg->override_reason.len, r.d.agg->override_reason.p);
		a.override_expires_at = r.d.agg->override_expires_at;
	}
	a.seq = ent_store_view_seq(f->v);
	ent_store_view_end(f->v);
	return a;
}

static uint64_t count_bounds_at(struct store_fx *f, int64_t t);

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_plan_and_subscription(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 3}), 0);
	/* The echo is the stored subscription, stamped with the event time. */
	const Ent__V1__Subscription *echo = f->res.object;
	assert_non_null(echo);
	assert_string_equal(echo->plan_code, "startup");
	assert_int_equal(echo->created_at, T0);
	assert_true(f->res.recomputed >= 2);

	struct answer a = check(f, "acme", "api_calls", 1, T0 + 1000);
	assert_true(a.d.allowed);
	assert_int_equal(a.d.reason, ENT_R_ENTITLED);
	assert_int_equal(a.d.feature_type, ENT_FT_METERED);
	assert_int_equal(a.d.limit, 300); /* 100 x quantity 3 */
	assert_int_equal(a.d.remaining, 300);
	assert_int_equal(a.d.reset, ENT_RESET_MONTHLY);
	assert_true(a.d.period_end > T0);

	a = check(f, "acme", "sso", 1, T0 + 1000);
	assert_true(a.d.allowed);
	assert_int_equal(a.d.feature_type, ENT_FT_BOOLEAN);

	/* 301 units is more than the limit. */
	a = check(f, "acme", "api_calls", 301, T0 + 1000);
	assert_false(a.d.allowed);
	assert_int_equal(a.d.reason, ENT_R_LIMIT_EXCEEDED);
}

static void test_addon_adds(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(
		upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1, 0, 0, "boost", 2}), 0);
	struct answer a = check(f, "acme", "api_calls", 1, T0);
	assert_int_equal(a.d.limit, 100 + 50 * 2);
	/* Changing the subscription drops the add-on: its index entry and its grant go. */
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	a = check(f, "acme", "api_calls", 1, T0);
	assert_int_equal(a.d.limit, 100);
	Ent__V1__Grant b = grant("api_calls", 70, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_ADDON, "boost", &b, 1), 0);
	assert_int_equal(f->res.recomputed, 0); /* nobody is on the add-on any more */
	a = check(f, "acme", "api_calls", 1, T0);
	assert_int_equal(a.d.limit, 100);
}

static void test_override_expiry(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	int64_t exp = T0 + DAY;
	assert_int_equal(set_override_number(f, "acme", "api_calls", 1000, exp, T0), 0);
	const Ent__V1__CustomerOverride *o = f->res.object;
	assert_non_null(o);
	assert_int_equal(o->expires_at, exp);
	assert_int_equal(o->created_at, T0);

	struct answer a = check(f, "acme", "api_calls", 1, exp - 1);
	assert_int_equal(a.d.limit, 1000);
	assert_true(a.override_applied);
	assert_string_equal(a.override_reason, "support ticket 42");
	assert_int_equal(a.override_expires_at, exp);
	assert_int_equal(a.d.next_change_at, exp);

	/* Exact in time: at expires_at the override is gone without any tick. */
	a = check(f, "acme", "api_calls", 1, exp);
	assert_int_equal(a.d.limit, 100);
	assert_false(a.override_applied);

	/* An override alone grants a feature the plans do not. */
	upsert_feature(f, "export", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	a = check(f, "acme", "export", 1, T0);
	assert_int_equal(a.d.reason, ENT_R_NOT_ENTITLED);
	assert_int_equal(set_override_number(f, "acme", "export", 1, 0, T0), 0);
	a = check(f, "acme", "export", 1, T0);
	assert_true(a.d.allowed);
}

static void test_windows(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	int64_t start = T0 + 10 * DAY, end = T0 + 20 * DAY;
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1, start, end}),
			 0);
	struct answer a = check(f, "acme", "sso", 1, T0);
	assert_false(a.d.allowed);
	assert_int_equal(a.d.reason, ENT_R_NOT_YET_ACTIVE);
	assert_int_equal(a.d.next_change_at, start);
	a = check(f, "acme", "sso", 1, start);
	assert_true(a.d.allowed);
	a = check(f, "acme", "sso", 1, end);
	assert_false(a.d.allowed);
	assert_int_equal(a.d.reason, ENT_R_EXPIRED);

	/* Cancelling ends it at the cancel instant. */
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s2", "globex", "startup", 1}), 0);
	Ent__V1__CancelSubscriptionRequest req = ENT__V1__CANCEL_SUBSCRIPTION_REQUEST__INIT;
	req.customer_id = "globex";
	req.subscription_id = "s2";
	req.at = T0 + 5 * DAY;
	Ent__V1__Event ev = event(T0 + DAY);
	ev.kind_case = ENT__V1__EVENT__KIND_CANCEL_SUBSCRIPTION;
	ev.cancel_subscription = &req;
	fx_apply_ok(f, &ev);
	const Ent__V1__Subscription *s = f->res.object;
	assert_true(s->cancelled);
	assert_int_equal(s->ends_at, T0 + 5 * DAY);
	a = check(f, "globex", "sso", 1, T0 + 5 * DAY - 1);
	assert_true(a.d.allowed);
	a = check(f, "globex", "sso", 1, T0 + 5 * DAY);
	assert_int_equal(a.d.reason, ENT_R_EXPIRED);
	/* Cancelling an unknown subscription is NOT_FOUND. */
	req.subscription_id = "nope";
	assert_int_equal(fx_apply(f, &ev), -ENT_ENOTFOUND);
}

static void test_unknown(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	upsert_feature(f, "export", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC);
	struct answer a = check(f, "acme", "nope", 1, T0);
	assert_int_equal(a.d.reason, ENT_R_UNKNOWN_FEATURE);
	a = check(f, "nobody", "sso", 1, T0);
	assert_int_equal(a.d.reason, ENT_R_UNKNOWN_CUSTOMER);
	assert_int_equal(a.d.feature_type, ENT_FT_BOOLEAN);
	a = check(f, "acme", "export", 1, T0);
	assert_int_equal(a.d.reason, ENT_R_NOT_ENTITLED);
	assert_int_equal(a.d.feature_type, ENT_FT_STATIC);
	/* Oversized ids are simply unknown, never an error. */
	char big[400];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	a = check(f, big, "sso", 1, T0);
	assert_int_equal(a.d.reason, ENT_R_UNKNOWN_CUSTOMER);
	a = check(f, "acme", big, 1, T0);
	assert_int_equal(a.d.reason, ENT_R_UNKNOWN_FEATURE);
}

static void test_usage_and_idempotency(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	assert_int_equal(report(f, "acme", "api_calls", 10, "k1", T0 + 1), 0);
	assert_false(f->res.duplicate);
	assert_int_equal(f->res.usage.used, 10);
	assert_int_equal(f->res.usage.remaining, 90);
	assert_null(f->res.usage.agg);
	assert_int_equal(report(f, "acme", "api_calls", 10, "k1", T0 + 2), 0);
	assert_true(f->res.duplicate);
	assert_int_equal(f->res.usage.used, 10);
	assert_int_equal(report(f, "acme", "api_calls", 5, "k2", T0 + 3), 0);
	assert_int_equal(f->res.usage.used, 15);
	struct answer a = check(f, "acme", "api_calls", 1, T0 + 4);
	assert_int_equal(a.d.used, 15);
	assert_int_equal(a.d.remaining, 85);

	/* The next month starts from zero, before any tick. */
	a = check(f, "acme", "api_calls", 1, a.d.period_end);
	assert_int_equal(a.d.used, 0);

	/* Refusals name the field. */
	assert_int_equal(report(f, "acme", "sso", 1, "k3", T0), -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "feature_code"));
	assert_int_equal(f->res.seq, 0);
	assert_int_equal(report(f, "nobody", "api_calls", 1, "k3", T0), -ENT_ENOTFOUND);
	assert_non_null(strstr(f->res.err.msg, "customer_id: unknown customer"));
	assert_int_equal(report(f, "acme", "api_calls", 0, "k3", T0), -ENT_EINVAL);
	assert_int_equal(report(f, "acme", "api_calls", 1, "", T0), -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "idempotency_key"));

	/* A report for an earlier, closed period is acknowledged but not counted. */
	int64_t next = T0 + 40 * DAY;
	assert_int_equal(report(f, "acme", "api_calls", 7, "k4", next), 0);
	assert_int_equal(f->res.usage.used, 7);
	Ent__V1__ReportUsageRequest req = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	req.customer_id = "acme";
	req.feature_code = "api_calls";
	req.quantity = 3;
	req.idempotency_key = "k5";
	req.timestamp = T0 + 1;
	Ent__V1__Event ev = event(next + 1);
	ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	ev.report_usage = &req;
	fx_apply_ok(f, &ev);
	assert_false(f->res.duplicate);
	assert_int_equal(f->res.usage.used, 7);

	/* Idempotency keys are dropped by the retention sweep of a tick. */
	tick(f, next + 2, next + 2);
	assert_int_equal(report(f, "acme", "api_calls", 1, "k4", next + 3), 0);
	assert_false(f->res.duplicate);
	assert_int_equal(f->res.usage.used, 8);
}

/*
 * A tick in pieces sweeps idempotency keys a bounded number at a time and goes on where it
 * stopped: every old key goes, every recent one stays, whatever the cut.
 */
static void test_idem_sweep_in_pieces(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1, T0}), 0);
	char key[16];
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "old%d", i);
		assert_int_equal(report(f, "acme", "api_calls", 1, key, T0 + 10 + i), 0);
	}
	assert_int_equal(report(f, "acme", "api_calls", 1, "new", T0 + 100), 0);

	/* One entry per piece: four keys a piece, so ten old keys take three pieces. */
	int pieces = 1;
	while (tick_piece(f, T0 + 200, T0 + 50, 1))
		pieces++;
	assert_int_equal(pieces, 3);
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "old%d", i);
		assert_int_equal(report(f, "acme", "api_calls", 1, key, T0 + 300 + i), 0);
		assert_false(f->res.duplicate);
	}
	assert_int_equal(report(f, "acme", "api_calls", 1, "new", T0 + 400), 0);
	assert_true(f->res.duplicate);
	/* Done: the next tick within the minute sweeps nothing and has nothing more to do. */
	assert_false(tick_piece(f, T0 + 500, T0 + 60, 1));
}

static void test_consume_hard_limit(void **state)
{
	struct store_fx *f = *state;
	upsert_feature(f, "jobs", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	Ent__V1__Grant g = grant("jobs", 5, ENT__V1__RESET_PERIOD__RESET_PERIOD_DAILY);
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "tiny", &g, 1), 0);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "tiny", 1, T0}), 0);
	int allowed = 0;
	for (int i = 0; i < 10; i++) {
		assert_int_equal(consume(f, "acme", "jobs", 2, NULL, T0 + 10 + i), 0);
		if (f->res.allowed) {
			allowed++;
		} else {
			assert_int_equal(f->res.reason, ENT_R_LIMIT_EXCEEDED);
		}
		assert_true(f->res.usage.used <= 5);
	}
	assert_int_equal(allowed, 2);
	assert_int_equal(consume(f, "acme", "jobs", 1, NULL, T0 + 100), 0);
	assert_true(f->res.allowed);
	assert_int_equal(f->res.usage.used, 5);
	assert_int_equal(consume(f, "acme", "jobs", 1, NULL, T0 + 101), 0);
	assert_false(f->res.allowed);
	assert_int_equal(check(f, "acme", "jobs", 1, T0 + 102).d.used, 5);

	/* An idempotency key makes a repeat answer the first effect, counted once. */
	assert_int_equal(consume(f, "acme", "jobs", 3, "once", T0 + DAY), 0);
	assert_true(f->res.allowed);
	assert_int_equal(f->res.usage.used, 3);
	assert_int_equal(consume(f, "acme", "jobs", 3, "once", T0 + DAY + 1), 0);
	assert_true(f->res.duplicate);
	assert_true(f->res.allowed);
	assert_int_equal(f->res.usage.used, 3);

	/* Unknown targets are answered, not failed. */
	assert_int_equal(consume(f, "acme", "nope", 1, NULL, T0), 0);
	assert_false(f->res.allowed);
	assert_int_equal(f->res.reason, ENT_R_UNKNOWN_FEATURE);
}

static void test_soft_limit(void **state)
{
	struct store_fx *f = *state;
	upsert_feature(f, "jobs", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	Ent__V1__Grant g = grant("jobs", 5, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	g.is_soft_limit = true;
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "soft", &g, 1), 0);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "soft", 1}), 0);
	assert_int_equal(consume(f, "acme", "jobs", 10, NULL, T0), 0);
	assert_true(f->res.allowed);
	assert_int_equal(f->res.reason, ENT_R_ALLOWED_OVER_SOFT_LIMIT);
	assert_int_equal(f->res.usage.used, 10);
	struct answer a = check(f, "acme", "jobs", 1, T0 + 1);
	assert_true(a.d.allowed && a.d.soft);
	assert_int_equal(a.d.reason, ENT_R_ALLOWED_OVER_SOFT_LIMIT);
	assert_int_equal(a.d.remaining, 0);
}

static void test_group_bad_event_fails_alone(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	struct ent_wtxn *w;
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	uint64_t seq0 = ent_store_wtxn_seq(w);

	Ent__V1__Subscription a = ENT__V1__SUBSCRIPTION__INIT, b = a, c = a;
	a.id = "s1", a.customer_id = "acme", a.plan_code = "startup";
	b.id = "s2", b.customer_id = "globex", b.plan_code = "gold";
	c.id = "s3", c.customer_id = "initech", c.plan_code = "startup";
	Ent__V1__Subscription *subs[3] = {&a, &b, &c};
	int want[3] = {0, -ENT_EINVAL, 0};
	for (int i = 0; i < 3; i++) {
		Ent__V1__Event ev = event(T0);
		ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
		ev.upsert_subscription = subs[i];
		struct ent_apply_result res;
		assert_int_equal(ent_store_apply(w, &ev, &f->arena, &res), want[i]);
		if (want[i]) {
			assert_int_equal(res.err.code, ENT_EINVAL);
			assert_string_equal(res.err.msg, "subscription.plan_code: no plan 'gold'");
			assert_int_equal(res.seq, 0);
		} else {
			assert_int_equal(res.err.code, 0);
		}
	}
	assert_int_equal(ent_store_wtxn_seq(w), seq0 + 2);
	struct ent_err err;
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);

	assert_true(check(f, "acme", "sso", 1, T0).d.allowed);
	assert_true(check(f, "initech", "sso", 1, T0).d.allowed);
	assert_int_equal(check(f, "globex", "sso", 1, T0).d.reason, ENT_R_UNKNOWN_CUSTOMER);
	assert_int_equal(check(f, "acme", "sso", 1, T0).seq, seq0 + 2);
}

static void test_seq_and_reopen(void **state)
{
	struct store_fx *f = *state;
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.seq, 0);
	catalog(f); /* 4 events */
	assert_int_equal(f->res.seq, 4);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 2}), 0);
	assert_int_equal(f->res.seq, 5);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.seq, 5);
	assert_int_equal(st.features, 2);
	assert_int_equal(st.plans, 1);
	assert_int_equal(st.addons, 1);
	assert_int_equal(st.subscriptions, 1);
	assert_int_equal(st.customers, 1);
	assert_int_equal(st.aggregates, 2);
	assert_true(st.last_commit_at > 0);
	assert_true(st.db_size_bytes > 0 && st.map_size_bytes == (uint64_t)16 << 30);

	fx_close(f);
	fx_open(f, 0);
	struct answer a = check(f, "acme", "api_calls", 1, T0);
	assert_int_equal(a.seq, 5);
	assert_int_equal(a.d.limit, 200);

	/* A compact copy opens on its own with the same state. */
	char copy[96];
	snprintf(copy, sizeof(copy), "%s/snap", f->dir);
	struct ent_err err = {0};
	if (ent_store_copy(f->s, copy, &err))
		fail_msg("copy: %s", err.msg);
	struct ent_store_opts o = {.path = copy, .read_only = true};
	struct ent_store *s2;
	assert_int_equal(ent_store_open(&o, &s2, &err), 0);
	struct ent_view *v2;
	assert_int_equal(ent_store_view_new(s2, &v2), 0);
	assert_int_equal(ent_store_view_begin(v2), 0);
	assert_int_equal(ent_store_view_seq(v2), 5);
	struct ent_check c = {ENT_STR_LIT("acme"), ENT_STR_LIT("sso"), 1, T0};
	static struct ent_check_result r;
	assert_int_equal(ent_store_view_check(v2, &c, &r), 0);
	assert_true(r.d.allowed);
	ent_store_view_end(v2);
	ent_store_view_free(v2);
	ent_store_close(s2);
	/* A read-only open of a missing database says so. */
	snprintf(copy, sizeof(copy), "%s/none", f->dir);
	o.path = copy;
	assert_int_equal(ent_store_open(&o, &s2, &err), -ENT_ENOTFOUND);
}

static void test_schema_refused(void **state)
{
	struct store_fx *f = *state;
	fx_close(f);
	/* Stamp another schema through a raw LMDB write, then reopen. */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	assert_int_equal(mdb_env_open(env, f->dir, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	uint8_t two[4] = {2, 0, 0, 0};
	MDB_val k = {6, "schema"}, v = {4, two};
	assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	struct ent_store_opts o = {.path = f->dir};
	struct ent_err err = {0};
	struct ent_store *s;
	assert_int_equal(ent_store_open(&o, &s, &err), -ENT_EPRECOND);
	assert_non_null(strstr(err.msg, "schema 2"));
	/* Put it back so teardown can close a working store. */
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	assert_int_equal(mdb_env_open(env, f->dir, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	two[0] = 1;
	assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	fx_open(f, 0);
}

static void test_map_full(void **state)
{
	struct store_fx *f = *state;
	fx_close(f);
	fx_rm_rf(f->dir);
	/* 32 KiB is the smallest map LMDB opens with our tables; 64 KiB leaves room for a few
	 * events before it fills. */
	fx_open(f, 64 * 1024);
	char desc[1000];
	memset(desc, 'd', sizeof(desc) - 1);
	desc[sizeof(desc) - 1] = '\0';
	int committed = 0, r = 0;
	for (int i = 0; i < 1000; i++) {
		char code[32];
		snprintf(code, sizeof(code), "feature_%04d", i);
		Ent__V1__Feature ft = ENT__V1__FEATURE__INIT;
		ft.code = code;
		ft.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN;
		ft.description = desc;
		Ent__V1__Event ev = event(T0);
		ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
		ev.upsert_feature = &ft;
		r = fx_apply(f, &ev);
		if (r)
			break;
		committed++;
	}
	assert_int_equal(r, -ENT_EFULL);
	assert_int_equal(f->res.err.code, ENT_EFULL);
	assert_true(committed > 0);
	/* Everything acknowledged is there after a reopen, and the store still reads. */
	fx_close(f);
	fx_open(f, 64 * 1024);
	assert_int_equal(ent_store_view_begin(f->v), 0);
	assert_int_equal(ent_store_view_seq(f->v), (uint64_t)committed);
	struct ent_str val;
	assert_int_equal(
		ent_store_view_get(f->v, ENT_T_FEATURES, ENT_STR_LIT("feature_0000"), &val), 0);
	assert_true(val.len > 1000);
	ent_store_view_end(f->v);
	assert_int_equal(check(f, "x", "feature_0000", 1, T0).d.reason, ENT_R_UNKNOWN_CUSTOMER);
}

static int count_bound(void *ctx, struct ent_str key, struct ent_str val)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

static uint64_t count_bounds_at(struct store_fx *f, int64_t t)
{
	uint8_t k[8];
	uint64_t u = (uint64_t)t ^ (UINT64_C(1) << 63);
	for (int i = 0; i < 8; i++)
		k[i] = (uint8_t)(u >> (56 - 8 * i));
	uint64_t n = 0;
	assert_int_equal(ent_store_view_begin(f->v), 0);
	assert_int_equal(ent_store_view_scan(f->v, ENT_T_BOUNDS, (struct ent_str){(char *)k, 8},
					     (struct ent_str){"", 0}, 0, count_bound, &n),
			 0);
	ent_store_view_end(f->v);
	return n;
}

static void test_tick_expires_override(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	int64_t exp = T0 + DAY;
	assert_int_equal(set_override_number(f, "acme", "api_calls", 1000, exp, T0), 0);
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.overrides, 1);
	assert_int_equal(st.customers, 1);
	assert_true(count_bounds_at(f, exp) >= 1);
	int64_t next;
	assert_int_equal(ent_store_next_boundary(f->s, &next), 0);
	assert_int_equal(next, exp);

	tick(f, exp - 1, 0); /* not due yet: nothing changes */
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.overrides, 1);

	tick(f, exp, 0);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.overrides, 0);
	assert_int_equal(count_bounds_at(f, exp), 0);
	assert_true(st.next_boundary_at > exp); /* the usage period end remains */
	struct answer a = check(f, "acme", "api_calls", 1, exp);
	assert_int_equal(a.d.limit, 100);
	assert_false(a.override_applied);

	/* An ended subscription is deleted by the tick at its end; its customer stays known
	 * through the tombstones, and the answer does not change (test_cleanup_keeps_answers). */
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s9", "shortlived", "startup", 1, 0,
							  T0 + 2 * DAY}),
			 0);
	assert_int_equal(check(f, "shortlived", "sso", 1, T0 + 2 * DAY).d.reason, ENT_R_EXPIRED);
	tick(f, T0 + 2 * DAY, 0);
	assert_int_equal(check(f, "shortlived", "sso", 1, T0 + 2 * DAY).d.reason, ENT_R_EXPIRED);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.subscriptions, 1);
	assert_int_equal(st.customers, 2);
	/* acme's override on api_calls, shortlived's api_calls and sso, and both customers'
	 * markers (docs/semantics.md, "Cleanup does not change answers"). */
	assert_int_equal(st.tombstones, 5);
}

/* The fields of an answer that cleanup must not change. */
static void assert_same_answer(const struct answer *a, const struct answer *b, const char *what)
{
	if (a->d.allowed != b->d.allowed || a->d.reason != b->d.reason ||
	    a->d.feature_type != b->d.feature_type || a->d.limit != b->d.limit ||
	    a->d.used != b->d.used || a->override_applied != b->override_applied)
		fail_msg("%s: %s/%s type %d limit %lld used %lld, then %s/%s type %d limit %lld "
			 "used %lld",
			 what, a->d.allowed ? "allowed" : "denied",
			 ent_model_reason_name(a->d.reason), a->d.feature_type,
			 (long long)a->d.limit, (long long)a->d.used,
			 b->d.allowed ? "allowed" : "denied", ent_model_reason_name(b->d.reason),
			 b->d.feature_type, (long long)b->d.limit, (long long)b->d.used);
}

static int list_count(void *ctx, const struct ent_customer_feature *cf)
{
	assert_int_equal(cf->sources->n, 0);
	assert_int_equal(cf->r.d.reason, ENT_R_EXPIRED);
	(*(int *)ctx)++;
	return 0;
}

/*
 * A check's answer does not depend on whether the writer's timer ran: the tick deletes ended
 * subscriptions and expired overrides, and leaves a tombstone per (customer, feature) they
 * granted, so EXPIRED stays EXPIRED (not UNKNOWN_CUSTOMER or NOT_ENTITLED) until the
 * idempotency retention prunes it.
 */
static void test_cleanup_keeps_answers(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	upsert_feature(f, "export", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	int64_t end = T0 + 2 * DAY, exp = T0 + DAY, at = end + 1000;
	/* gone: a subscription that ends; solo: only an override (a limit) that expires;
	 * flag: only an override switching a boolean on; off: only an override switching it
	 * off, which never granted anything. */
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "gone", "startup", 1, 0, end}), 0);
	assert_int_equal(report(f, "gone", "api_calls", 4, "k1", T0 + 1), 0);
	assert_int_equal(set_override_number(f, "solo", "api_calls", 50, exp, T0), 0);
	assert_int_equal(report(f, "solo", "api_calls", 5, "k1", T0 + 1), 0);
	assert_int_equal(set_override_number(f, "flag", "export", 1, exp, T0), 0);
	assert_int_equal(set_override_number(f, "off", "export", 0, exp, T0), 0);
	static const struct {
		const char *customer, *feature;
		uint8_t reason;
	} pairs[] = {
		{"gone", "api_calls", ENT_R_EXPIRED},  {"gone", "sso", ENT_R_EXPIRED},
		{"solo", "api_calls", ENT_R_EXPIRED},  {"flag", "export", ENT_R_EXPIRED},
		{"off", "export", ENT_R_NOT_ENTITLED},
	};
	const int NP = (int)(sizeof(pairs) / sizeof(pairs[0]));
	struct answer before[sizeof(pairs) / sizeof(pairs[0])];
	for (int i = 0; i < NP; i++) {
		before[i] = check(f, pairs[i].customer, pairs[i].feature, 1, at);
		assert_int_equal(before[i].d.reason, pairs[i].reason);
	}
	assert_int_equal(before[0].d.used, 4);
	assert_int_equal(before[2].d.used, 5);

	tick(f, exp, 0);
	tick(f, end, 0);
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.subscriptions + st.overrides, 0); /* cleaned up */
	/* gone x 2, solo, flag; off's keep-only row (its source never granted, yet its answer
	 * stays NOT_ENTITLED rather than UNKNOWN_CUSTOMER); the four customers' markers. */
	assert_int_equal(st.tombstones, 9);
	assert_int_equal(st.customers, 4);
	for (int i = 0; i < NP; i++) {
		char what[64];
		snprintf(what, sizeof(what), "%s/%s", pairs[i].customer, pairs[i].feature);
		struct answer after = check(f, pairs[i].customer, pairs[i].feature, 1, at);
		assert_same_answer(&before[i], &after, what);
	}
	/* Every feature of the customer is listed, EXPIRED, with no source left. */
	struct ent_arena ar;
	ent_arena_init(&ar, 0);
	int listed = 0;
	assert_int_equal(ent_store_view_begin(f->v), 0);
	assert_int_equal(ent_store_view_customer_features(f->v, ENT_STR_LIT("gone"), NULL, 0, at,
							  &ar, list_count, &listed),
			 0);
	ent_store_view_end(f->v);
	ent_arena_deinit(&ar);
	assert_int_equal(listed, 2);

	/* The tombstone is not a grant: usage of the ended subscription is not counted again,
	 * and a new subscription simply wins. */
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s2", "gone", "startup", 1}), 0);
	struct answer a = check(f, "gone", "sso", 1, at);
	assert_true(a.d.allowed);
	assert_int_equal(check(f, "gone", "api_calls", 1, at).d.limit, 100);

	/* Deleting the feature takes its tombstones (and the references they held). */
	Ent__V1__Event ev = event(end);
	ev.kind_case = ENT__V1__EVENT__KIND_DELETE_FEATURE;
	ev.delete_feature = "export";
	fx_apply_ok(f, &ev);
	assert_true(f->res.deleted);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.tombstones, 7);
	assert_int_equal(st.customers, 4); /* gone, solo, and flag and off by their markers */

	/* Past the idempotency retention the tombstones go: solo is unknown again. A retention
	 * that has not reached them yet keeps them. */
	tick(f, end + DAY, exp);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.tombstones, 7);
	tick(f, end + 2 * DAY, end + 1);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.tombstones, 0);
	assert_int_equal(st.customers, 1);
	assert_int_equal(check(f, "solo", "api_calls", 1, at).d.reason, ENT_R_UNKNOWN_CUSTOMER);
	assert_true(check(f, "gone", "sso", 1, at).d.allowed);
	/* Its usage row outlives the record, as for any customer left without a source. */
	assert_int_equal(ent_store_view_begin(f->v), 0);
	struct ent_str row;
	assert_int_equal(ent_store_view_get(f->v, ENT_T_USAGE,
					    (struct ent_str){"solo\0api_calls", 14}, &row),
			 0);
	ent_store_view_end(f->v);
}

/* A one-grant patch recomputes that feature for each customer, not every feature. */
static void test_fan_out_only_changed(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	upsert_feature(f, "export", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	Ent__V1__Grant g[3] = {grant("api_calls", 100, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY),
			       grant("sso", 0, 0), grant("export", 0, 0)};
	set_object_at(f, ENT__V1__EVENT__KIND_SET_PLAN, "wide", g, 3, T0);
	/* Subscriptions that start later: their records have a segment before the start, so
	 * any recompute after it rewrites them. Unchanged features must not be recomputed. */
	const char *customers[] = {"c1", "c2", "c3", "c4"};
	for (int i = 0; i < 4; i++) {
		char id[8];
		snprintf(id, sizeof(id), "s%d", i);
		assert_int_equal(upsert_sub(f, &(struct sub_spec){id, customers[i], "wide", 1,
								  T0 + DAY / 2}),
				 0);
	}
	Ent__V1__Grant p = grant("api_calls", 500, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	set_object_at(f, ENT__V1__EVENT__KIND_PATCH_PLAN, "wide", &p, 1, T0 + DAY);
	assert_int_equal(f->res.recomputed, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(check(f, customers[i], "api_calls", 1, T0 + DAY).d.limit, 500);
		assert_true(check(f, customers[i], "sso", 1, T0 + DAY).d.allowed);
		assert_true(check(f, customers[i], "export", 1, T0 + DAY).d.allowed);
	}
	/* The same grant again changes nothing; a set that drops one grant and keeps two
	 * recomputes the dropped one only. */
	set_object_at(f, ENT__V1__EVENT__KIND_PATCH_PLAN, "wide", &p, 1, T0 + DAY);
	assert_int_equal(f->res.recomputed, 0);
	Ent__V1__Grant keep[2] = {p, grant("sso", 0, 0)};
	set_object_at(f, ENT__V1__EVENT__KIND_SET_PLAN, "wide", keep, 2, T0 + DAY);
	assert_int_equal(f->res.recomputed, 4);
	assert_int_equal(check(f, "c2", "export", 1, T0 + DAY).d.reason, ENT_R_NOT_ENTITLED);
	assert_true(check(f, "c2", "sso", 1, T0 + DAY).d.allowed);
	/* An add-on works the same way. */
	Ent__V1__Grant b[2] = {grant("api_calls", 50, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY),
			       grant("sso", 0, 0)};
	set_object_at(f, ENT__V1__EVENT__KIND_SET_ADDON, "more", b, 2, T0);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s9", "c9", "startup", 1, T0 + DAY / 2, 0,
							  "more", 1}),
			 0);
	b[0].usage_limit = 60;
	set_object_at(f, ENT__V1__EVENT__KIND_PATCH_ADDON, "more", b, 1, T0 + DAY);
	assert_int_equal(f->res.recomputed, 1);
	assert_int_equal(check(f, "c9", "api_calls", 1, T0 + DAY).d.limit, 160);
}

static void test_plan_change_fans_out(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	const char *customers[] = {"c1", "c2", "c3"};
	for (int i = 0; i < 3; i++) {
		char id[8];
		snprintf(id, sizeof(id), "s%d", i);
		assert_int_equal(
			upsert_sub(f, &(struct sub_spec){id, customers[i], "startup", i + 1}), 0);
	}
	Ent__V1__Grant g = grant("api_calls", 1000, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", &g, 1), 0);
	/* api_calls changes for 3 customers and sso goes away for 3: 6 rewritten. */
	assert_int_equal(f->res.recomputed, 6);
	for (int i = 0; i < 3; i++) {
		struct answer a = check(f, customers[i], "api_calls", 1, T0);
		assert_int_equal(a.d.limit, 1000 * (i + 1));
		a = check(f, customers[i], "sso", 1, T0);
		assert_int_equal(a.d.reason, ENT_R_NOT_ENTITLED);
	}
	/* Patch merges by feature: sso comes back, api_calls stays. */
	Ent__V1__Grant p = grant("sso", 0, 0);
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_PATCH_PLAN, "startup", &p, 1), 0);
	const Ent__V1__SetEntitlementsRequest *o = f->res.object;
	assert_int_equal(o->n_entitlements, 2);
	assert_true(check(f, "c2", "sso", 1, T0).d.allowed);
	assert_int_equal(check(f, "c2", "api_calls", 1, T0).d.limit, 2000);
	/* A plan that subscriptions still name cannot be deleted, and nothing changes. */
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_DELETE_PLAN;
	ev.delete_plan = "startup";
	assert_int_equal(fx_apply(f, &ev), -ENT_EPRECOND);
	assert_non_null(strstr(f->res.err.msg, "plan 'startup' is used by a subscription"));
	assert_true(check(f, "c3", "sso", 1, T0).d.allowed);
	/* Setting it to no grants removes what it granted from every customer on it. */
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", NULL, 0), 0);
	assert_int_equal(check(f, "c3", "sso", 1, T0).d.reason, ENT_R_NOT_ENTITLED);
	assert_int_equal(check(f, "c1", "api_calls", 1, T0).d.reason, ENT_R_NOT_ENTITLED);
}

static void test_validation_messages(void **state)
{
	struct store_fx *f = *state;
	Ent__V1__PrivilegeDef pd = ENT__V1__PRIVILEGE_DEF__INIT, *pdp = &pd;
	char *opts[] = {"google", "okta"};
	pd.code = "provider";
	pd.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT;
	pd.n_select_options = 2;
	pd.select_options = opts;
	Ent__V1__Feature ft = ENT__V1__FEATURE__INIT;
	ft.code = "sso";
	ft.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN;
	ft.n_privileges = 1;
	ft.privileges = &pdp;
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	ev.upsert_feature = &ft;
	fx_apply_ok(f, &ev);
	upsert_feature(f, "seats", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);

	Ent__V1__PrivilegeValue pv = ENT__V1__PRIVILEGE_VALUE__INIT, *pvp = &pv;
	pv.code = "provider";
	pv.value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
	pv.string_value = "azure";
	Ent__V1__Grant g[3] = {grant("seats", 5, 0), grant("seats", 1, 0), grant("sso", 0, 0)};
	g[2].n_privileges = 1;
	g[2].privileges = &pvp;
	g[1].feature_code = "seats2";
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", g, 3),
			 -ENT_EINVAL);
	assert_string_equal(f->res.err.msg,
			    "entitlements[1].feature_code: unknown feature 'seats2'");
	g[1].feature_code = "seats";
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", g, 3),
			 -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "entitlements[1].feature_code"));
	Ent__V1__Grant ok[2] = {g[0], g[2]};
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", ok, 2),
			 -ENT_EINVAL);
	assert_string_equal(f->res.err.msg,
			    "entitlements[1].privileges.provider: 'azure' is not one of google, "
			    "okta");
	pv.string_value = "okta";
	ok[0].usage_limit = -1;
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", ok, 2),
			 -ENT_EINVAL);
	assert_string_equal(f->res.err.msg, "entitlements[0].usage_limit: must be >= 0");
	ok[0].usage_limit = 5;
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "startup", ok, 2), 0);
	/* The stored grant carries the declared privilege type. */
	const Ent__V1__SetEntitlementsRequest *o = f->res.object;
	assert_int_equal(o->entitlements[1]->privileges[0]->value_type,
			 ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT);

	/* Referenced features can neither go nor change type. */
	ev.kind_case = ENT__V1__EVENT__KIND_DELETE_FEATURE;
	ev.delete_feature = "seats";
	assert_int_equal(fx_apply(f, &ev), -ENT_EPRECOND);
	assert_string_equal(f->res.err.msg, "code: feature 'seats' is used by plan 'startup'");
	ft.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	ev.upsert_feature = &ft;
	assert_int_equal(fx_apply(f, &ev), -ENT_EPRECOND);
	assert_non_null(strstr(f->res.err.msg, "used by plan 'startup'"));
	/* An unused one can go. */
	upsert_feature(f, "spare", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	ev.kind_case = ENT__V1__EVENT__KIND_DELETE_FEATURE;
	ev.delete_feature = "spare";
	fx_apply_ok(f, &ev);
	assert_true(f->res.deleted);

	/* Bad ids and windows. */
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s 1", "acme", "startup"}), -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "subscription.id"));
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1, T0 + 5, T0}),
			 -ENT_EINVAL);
	assert_string_equal(f->res.err.msg, "subscription.ends_at: must be after active_from");
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", -1}),
			 -ENT_EINVAL);
	assert_int_equal(set_override_number(f, "acme", "seats", 1.5, 0, T0), -ENT_EINVAL);
	assert_non_null(strstr(f->res.err.msg, "value.number_value"));
	assert_int_equal(set_override_number(f, "acme", "nope", 1, 0, T0), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg, "feature_code: unknown feature 'nope'");
	assert_int_equal(set_override_number(f, "acme", "seats", 1, T0 - 1, T0), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg, "expires_at: in the past");
	/* Nothing of the failures was stored. */
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.subscriptions, 0);
	assert_int_equal(st.overrides, 0);
	assert_int_equal(st.customers, 0);
}

/* A grant or override may carry only what its feature's type means (ENT_EINVAL names it). */
static void test_type_rules(void **state)
{
	struct store_fx *f = *state;
	upsert_feature(f, "api_calls", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	upsert_feature(f, "sso", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	upsert_feature(f, "sla", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC);
	char *vals[] = {"99.9%"};

	/* Grants: limits and reset periods for metered only, static values for static only. */
	static const struct {
		const char *feature;
		int field; /* 0 usage_limit, 1 unlimited, 2 is_soft_limit, 3 reset, 4 static */
		const char *want;
	} bad[] = {
		{"sso", 0,
		 "entitlements[0].usage_limit: only for metered features ('sso' is boolean)"},
		{"sla", 1,
		 "entitlements[0].unlimited: only for metered features ('sla' is static)"},
		{"sso", 2,
		 "entitlements[0].is_soft_limit: only for metered features ('sso' is "
		 "boolean)"},
		{"sla", 3,
		 "entitlements[0].usage_reset_period: only for metered features ('sla' is "
		 "static)"},
		{"api_calls", 4,
		 "entitlements[0].static_values: only for static features "
		 "('api_calls' is metered)"},
		{"sso", 4,
		 "entitlements[0].static_values: only for static features ('sso' is "
		 "boolean)"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Ent__V1__Grant g = grant(bad[i].feature, 0, 0);
		switch (bad[i].field) {
		case 0:
			g.usage_limit = 5;
			break;
		case 1:
			g.unlimited = true;
			break;
		case 2:
			g.is_soft_limit = true;
			break;
		case 3:
			g.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;
			break;
		default:
			g.n_static_values = 1;
			g.static_values = vals;
		}
		assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "p", &g, 1),
				 -ENT_EINVAL);
		assert_string_equal(f->res.err.msg, bad[i].want);
	}
	/* Each on its own type is fine. */
	Ent__V1__Grant ok[3] = {grant("api_calls", 5, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY),
				grant("sso", 0, 0), grant("sla", 0, 0)};
	ok[0].is_soft_limit = true;
	ok[2].n_static_values = 1;
	ok[2].static_values = vals;
	assert_int_equal(set_object(f, ENT__V1__EVENT__KIND_SET_PLAN, "p", ok, 3), 0);
	/* Subscription grants follow the same rule, under their own field name. */
	Ent__V1__Grant sg = grant("sso", 3, 0), *sgp = &sg;
	Ent__V1__Subscription sub = ENT__V1__SUBSCRIPTION__INIT;
	sub.id = "s1";
	sub.customer_id = "acme";
	sub.plan_code = "p";
	sub.n_entitlements = 1;
	sub.entitlements = &sgp;
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	ev.upsert_subscription = &sub;
	assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg, "subscription.entitlements[0].usage_limit: only for "
					    "metered features ('sso' is boolean)");

	/* Overrides: static values for static only; a number on a boolean stays on/off. */
	Ent__V1__OverrideValue on = ENT__V1__OVERRIDE_VALUE__INIT;
	on.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
	on.bool_value = true;
	Ent__V1__SetCustomerEntitlementRequest so = ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	so.customer_id = "acme";
	so.feature_code = "sso";
	so.value = &on;
	so.n_static_values = 1;
	so.static_values = vals;
	ev.kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
	ev.set_override = &so;
	assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg,
			    "static_values: only for static features ('sso' is boolean)");
	so.feature_code = "api_calls";
	assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg,
			    "static_values: only for static features ('api_calls' is metered)");
	so.feature_code = "sla";
	fx_apply_ok(f, &ev);
	assert_int_equal(set_override_number(f, "acme", "sso", 1, 0, T0), 0);
	assert_true(check(f, "acme", "sso", 1, T0).d.allowed);

	/* A Zenskar quantity is a limit: metered only. */
	Google__Protobuf__Int64Value q = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	q.value = 10;
	Ent__V1__UpdateCustomerEntitlementRequest up =
		ENT__V1__UPDATE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	up.customer_id = "acme";
	up.feature_code = "sso";
	up.quantity = &q;
	ev.kind_case = ENT__V1__EVENT__KIND_UPDATE_OVERRIDE;
	ev.update_override = &up;
	assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg,
			    "quantity: only for metered features ('sso' is boolean)");
	up.feature_code = "sla";
	assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg,
			    "quantity: only for metered features ('sla' is static)");
	up.feature_code = "api_calls";
	fx_apply_ok(f, &ev);
	assert_int_equal(check(f, "acme", "api_calls", 1, T0).d.limit, 10);

	/* expiry_at in the past is refused like set_override's expires_at; 0 clears it. */
	Google__Protobuf__Int64Value exp = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	up.quantity = NULL;
	up.expiry_at = &exp;
	static const int64_t past[] = {T0, T0 - 1, 1};
	for (size_t i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
		exp.value = past[i];
		assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
		assert_string_equal(f->res.err.msg, "expiry_at: in the past");
	}
	exp.value = T0 + 1;
	fx_apply_ok(f, &ev);
	assert_int_equal(((const Ent__V1__CustomerOverride *)f->res.object)->expires_at, T0 + 1);
	exp.value = 0;
	fx_apply_ok(f, &ev);
	assert_int_equal(((const Ent__V1__CustomerOverride *)f->res.object)->expires_at, 0);
}

static void test_zenskar_update(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	Google__Protobuf__Int64Value q = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	Google__Protobuf__Int64Value used = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	q.value = 40;
	used.value = 12;
	Ent__V1__UpdateCustomerEntitlementRequest req =
		ENT__V1__UPDATE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = "acme";
	req.feature_code = "api_calls";
	req.quantity = &q;
	req.quantity_used = &used;
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_UPDATE_OVERRIDE;
	ev.update_override = &req;
	fx_apply_ok(f, &ev); /* creates the override */
	const Ent__V1__CustomerOverride *o = f->res.object;
	assert_non_null(o->quantity);
	assert_int_equal(o->quantity->value, 40);
	assert_int_equal(o->quantity_used, 12);
	struct answer a = check(f, "acme", "api_calls", 1, T0 + 1);
	assert_int_equal(a.d.limit, 40);
	assert_int_equal(a.d.used, 12);

	/* Only the fields sent change. */
	Google__Protobuf__Int64Value exp = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	exp.value = T0 + DAY;
	req.quantity = NULL;
	req.quantity_used = NULL;
	req.expiry_at = &exp;
	ev.at = T0 + 10;
	fx_apply_ok(f, &ev);
	o = f->res.object;
	assert_int_equal(o->quantity->value, 40);
	assert_int_equal(o->expires_at, T0 + DAY);
	assert_int_equal(o->created_at, T0);
	assert_int_equal(o->updated_at, T0 + 10);
	a = check(f, "acme", "api_calls", 1, T0 + DAY);
	assert_int_equal(a.d.limit, 100);

	Google__Protobuf__Int64Value from = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	from.value = T0 + 2 * DAY;
	req.expiry_at = NULL;
	req.active_from = &from;
	assert_int_equal(fx_apply(f, &ev), -ENT_EINVAL);
	assert_string_equal(f->res.err.msg, "expiry_at: must be after active_from");

	/* Delete: gone, and a second delete is NOT_FOUND. */
	Ent__V1__DeleteCustomerEntitlementRequest del =
		ENT__V1__DELETE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	del.customer_id = "acme";
	del.feature_code = "api_calls";
	ev.kind_case = ENT__V1__EVENT__KIND_DELETE_OVERRIDE;
	ev.delete_override = &del;
	fx_apply_ok(f, &ev);
	assert_true(f->res.deleted);
	assert_int_equal(fx_apply(f, &ev), -ENT_ENOTFOUND);
	a = check(f, "acme", "api_calls", 1, T0 + 11);
	assert_int_equal(a.d.limit, 100);
	assert_int_equal(a.d.used, 12); /* the counter belongs to the customer, not the override */
}

struct listed {
	int n;
	char codes[4][32];
	uint32_t sources[4];
	bool allowed[4];
};

static int list_cb(void *ctx, const struct ent_customer_feature *cf)
{
	struct listed *l = ctx;
	const Ent__V1__Feature *ft = cf->feature_pb;
	assert_true(l->n < 4);
	assert_true(ent_str_eq(cf->feature_code, ent_str_c(ft->code)));
	snprintf(l->codes[l->n], 32, "%.*s", (int)cf->feature_code.len, cf->feature_code.p);
	l->sources[l->n] = cf->sources->n;
	l->allowed[l->n] = cf->r.d.allowed;
	l->n++;
	return 0;
}

static void test_customer_features(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(
		upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1, 0, 0, "boost", 1}), 0);
	assert_int_equal(set_override_number(f, "acme", "sso", 0, 0, T0), 0);
	struct ent_arena a;
	ent_arena_init(&a, 0);
	struct listed l = {0};
	assert_int_equal(ent_store_view_begin(f->v), 0);
	assert_int_equal(ent_store_view_customer_features(f->v, ENT_STR_LIT("acme"), NULL, 0, T0,
							  &a, list_cb, &l),
			 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.codes[0], "api_calls");
	assert_int_equal(l.sources[0], 2); /* plan + add-on */
	assert_true(l.allowed[0]);
	assert_string_equal(l.codes[1], "sso");
	assert_int_equal(l.sources[1], 2); /* plan + override */
	assert_false(l.allowed[1]);	   /* number 0 on a boolean switches it off */

	struct ent_str only = ENT_STR_LIT("sso");
	memset(&l, 0, sizeof(l));
	assert_int_equal(ent_store_view_customer_features(f->v, ENT_STR_LIT("acme"), &only, 1, T0,
							  &a, list_cb, &l),
			 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(ent_store_view_customer_features(f->v, ENT_STR_LIT("nobody"), NULL, 0, T0,
							  &a, list_cb, &l),
			 -ENT_ENOTFOUND);
	ent_store_view_end(f->v);
	ent_arena_deinit(&a);
}

static void test_wipe_and_set_usage(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	Ent__V1__UsageState us = ENT__V1__USAGE_STATE__INIT;
	us.customer_id = "acme";
	us.feature_code = "api_calls";
	struct answer a = check(f, "acme", "api_calls", 1, T0);
	us.period_start = a.d.period_start;
	us.used = 60;
	Ent__V1__Event ev = event(T0);
	ev.kind_case = ENT__V1__EVENT__KIND_SET_USAGE;
	ev.set_usage = &us;
	fx_apply_ok(f, &ev);
	assert_int_equal(check(f, "acme", "api_calls", 1, T0).d.used, 60);

	uint64_t seq = f->res.seq;
	Ent__V1__Wipe wipe = ENT__V1__WIPE__INIT;
	ev.kind_case = ENT__V1__EVENT__KIND_WIPE;
	ev.wipe = &wipe;
	fx_apply_ok(f, &ev);
	assert_int_equal(f->res.seq, seq + 1);
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.features + st.plans + st.subscriptions + st.aggregates + st.boundaries,
			 0);
	assert_int_equal(st.seq, seq + 1);
	assert_int_equal(check(f, "acme", "api_calls", 1, T0).d.reason, ENT_R_UNKNOWN_FEATURE);
}

static void test_scan_paging(void **state)
{
	struct store_fx *f = *state;
	const char *codes[] = {"a", "b", "c", "d", "e"};
	for (int i = 0; i < 5; i++)
		upsert_feature(f, codes[i], ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	uint64_t n = 0;
	assert_int_equal(ent_store_view_begin(f->v), 0);
	assert_int_equal(ent_store_view_scan(f->v, ENT_T_FEATURES, (struct ent_str){"", 0},
					     ENT_STR_LIT("b"), 2, count_bound, &n),
			 0);
	assert_int_equal(n, 2); /* c, d */
	n = 0;
	assert_int_equal(ent_store_view_scan(f->v, ENT_T_FEATURES, (struct ent_str){"", 0},
					     ENT_STR_LIT("d"), 0, count_bound, &n),
			 0);
	assert_int_equal(n, 1); /* e */
	ent_store_view_end(f->v);
}

/* A database written before the `ended` table existed opens read-only and reads as before. */
static void test_readonly_without_ended(void **state)
{
	struct store_fx *f = *state;
	catalog(f);
	assert_int_equal(upsert_sub(f, &(struct sub_spec){"s1", "acme", "startup", 1}), 0);
	fx_close(f);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	assert_int_equal(mdb_env_open(env, f->dir, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "ended", 0, &dbi), 0);
	assert_int_equal(mdb_drop(txn, dbi, 1), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	struct ent_store_opts o = {.path = f->dir, .read_only = true};
	struct ent_err err = {0};
	struct ent_store *s;
	if (ent_store_open(&o, &s, &err))
		fail_msg("read-only open: %s", err.msg);
	struct ent_view *v;
	assert_int_equal(ent_store_view_new(s, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);
	struct ent_check c = {ENT_STR_LIT("acme"), ENT_STR_LIT("api_calls"), 1, T0};
	static struct ent_check_result r;
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	assert_int_equal(r.d.limit, 100);
	struct ent_str val;
	assert_int_equal(ent_store_view_get(v, ENT_T_ENDED, ENT_STR_LIT("acme"), &val),
			 -ENT_ENOTFOUND);
	uint64_t n = 0;
	assert_int_equal(ent_store_view_scan(v, ENT_T_ENDED, (struct ent_str){"", 0},
					     (struct ent_str){"", 0}, 0, count_bound, &n),
			 0);
	assert_int_equal(n, 0);
	struct ent_arena a;
	ent_arena_init(&a, 0);
	struct listed l = {0};
	assert_int_equal(ent_store_view_customer_features(v, ENT_STR_LIT("acme"), NULL, 0, T0, &a,
							  list_cb, &l),
			 0);
	assert_int_equal(l.n, 2);
	ent_arena_deinit(&a);
	ent_store_view_end(v);
	ent_store_view_free(v);
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(s, &st), 0);
	assert_int_equal(st.tombstones, 0);
	assert_int_equal(st.aggregates, 2);
	ent_store_close(s);
	/* A read-write open creates the table again. */
	fx_open(f, 0);
	assert_int_equal(ent_store_stats(f->s, &st), 0);
	assert_int_equal(st.customers, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plan_and_subscription, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_addon_adds, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_override_expiry, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_windows, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_unknown, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_usage_and_idempotency, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_idem_sweep_in_pieces, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_consume_hard_limit, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_soft_limit, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_group_bad_event_fails_alone, setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_seq_and_reopen, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_schema_refused, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_readonly_without_ended, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_map_full, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_tick_expires_override, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_keeps_answers, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_plan_change_fans_out, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fan_out_only_changed, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_validation_messages, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_type_rules, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_zenskar_update, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_customer_features, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_wipe_and_set_usage, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_scan_paging, setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
