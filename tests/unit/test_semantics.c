/*
 * Properties of answers in time (issue 16), over random change sequences applied through
 * ent_store_apply to a real LMDB store, answers read through ent_store_view_check:
 *
 *  P1  an answer about instant t is the same whenever it is asked: a cleanup Tick at now'
 *      (the writer's timer: recomputes, usage rolls, ended subscriptions and expired overrides
 *      removed behind tombstones) changes no answer about any t >= now';
 *  P2  the answer at next_change_at - 1 (and at a random instant in [t, next_change_at)) is the
 *      answer at t, so next_change_at announces every change;
 *  P3  Export -> Import(replace) at now changes no answer about any t >= now.
 *
 * The run is deterministic: SEM_SEED (default 16) seeds it and SEM_CASES (default 200; 15 in
 * sanitizer builds) bounds it, so ctest runs a fixed sequence in seconds; run it longer by hand
 * with, e.g., SEM_CASES=5000 SEM_SEED=7 ./build/tests/test_semantics. A failure prints the seed,
 * the case and the step that broke it.
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

#include "ent/json.h"
#include "ent/store.h"
#include "ent/v1/event.pb-c.h"
#include "fixture.h"

#define T0   1767225600000LL /* 2026-01-01T00:00:00Z */
#define MIN  60000LL
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

static uint64_t rng;

static uint64_t rnd(void)
{
	/* splitmix64: small, good enough, and the same sequence on every machine */
	uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static int64_t below(int64_t n)
{
	return n > 0 ? (int64_t)(rnd() % (uint64_t)n) : 0;
}

/* ---- fixture ------------------------------------------------------------------------------ */

struct fx {
	char dir[64];
	struct ent_store *s;
	struct ent_view *v;
	struct ent_arena arena;
	struct ent_apply_result res;
	int64_t now;
	long checks, ticks, imports, events, refused;
	const char *step;
	long case_no;
};

static void sem_open(struct fx *f)
{
	strcpy(f->dir, "/tmp/entd-test-sem-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	struct ent_store_opts o = {.path = f->dir, .no_sync = true};
	fx_store_open(&o, &f->s, &f->v);
}

static void sem_close(struct fx *f)
{
	ent_store_view_free(f->v);
	ent_store_close(f->s);
	fx_rm_rf(f->dir);
}

/* Apply one event in its own transaction; a refused event changes nothing (that is fine: the
 * random sequence makes invalid requests too). */
static int apply(struct fx *f, Ent__V1__Event *ev)
{
	struct ent_wtxn *w;
	ent_arena_reset(&f->arena);
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	int r = ent_store_apply(w, ev, &f->arena, &f->res);
	struct ent_err err = {0};
	if (ent_store_wtxn_commit(w, &err))
		fail_msg("commit: %s", err.msg);
	f->events++;
	if (r)
		f->refused++;
	return r;
}

/* ---- the universe ------------------------------------------------------------------------- */

static const char *const customers[] = {"c0", "c1", "c2"};
static const char *const features[] = {"m", "b", "s"}; /* metered, boolean, static */
#define NC 3
#define NF 3

static const Ent__V1__ResetPeriod resets[] = {
	ENT__V1__RESET_PERIOD__RESET_PERIOD_UNSPECIFIED,
	ENT__V1__RESET_PERIOD__RESET_PERIOD_DAILY,
	ENT__V1__RESET_PERIOD__RESET_PERIOD_WEEKLY,
	ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY,
	ENT__V1__RESET_PERIOD__RESET_PERIOD_NEVER,
	ENT__V1__RESET_PERIOD__RESET_PERIOD_ANNUAL,
};

static void upsert_feature(struct fx *f, const char *code, Ent__V1__FeatureType type, int opts)
{
	Ent__V1__Feature ft = ENT__V1__FEATURE__INIT;
	Ent__V1__PrivilegeDef pd = ENT__V1__PRIVILEGE_DEF__INIT, *pds[1] = {&pd};
	char *options[] = {"gold", "silver"};
	ft.code = (char *)code;
	ft.type = type;
	if (opts) {
		pd.code = "tier";
		pd.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT;
		pd.n_select_options = (size_t)opts;
		pd.select_options = options;
		ft.n_privileges = 1;
		ft.privileges = pds;
	}
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	ev.upsert_feature = &ft;
	apply(f, &ev);
}

/* A random grant of feature k (only fields its type takes). */
static void rnd_grant(Ent__V1__Grant *g, Ent__V1__PrivilegeValue *pv, Ent__V1__PrivilegeValue **pvs,
		      Google__Protobuf__BoolValue *en, char **statics, int k)
{
	static char *vals[] = {"a", "b", "c"};
	static char *tiers[] = {"gold", "silver"};
	ent__v1__grant__init(g);
	g->feature_code = (char *)features[k];
	if (below(6) == 0) {
		google__protobuf__bool_value__init(en);
		en->value = false;
		g->enabled = en;
	}
	if (k == 0) {
		g->usage_limit = below(4) * 10;
		g->unlimited = below(8) == 0;
		g->is_soft_limit = below(4) == 0;
		g->usage_reset_period = resets[below(6)];
		if (below(2)) {
			ent__v1__privilege_value__init(pv);
			pv->code = "tier";
			pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
			pv->string_value = tiers[below(2)];
			pvs[0] = pv;
			g->n_privileges = 1;
			g->privileges = pvs;
		}
	} else if (k == 2) {
		statics[0] = vals[below(3)];
		g->n_static_values = 1;
		g->static_values = statics;
	}
}

static void set_object(struct fx *f, bool addon, const char *code)
{
	Ent__V1__SetEntitlementsRequest req = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	Ent__V1__Grant g[NF], *gp[NF];
	Ent__V1__PrivilegeValue pv[NF], *pvs[NF][1];
	Google__Protobuf__BoolValue en[NF];
	char *st[NF][1];
	size_t n = 0;
	for (int k = 0; k < NF; k++) {
		if (below(3) == 0)
			continue;
		rnd_grant(&g[n], &pv[n], pvs[n], &en[n], st[n], k);
		gp[n] = &g[n];
		n++;
	}
	req.code = (char *)code;
	req.n_entitlements = n;
	req.entitlements = gp;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	ev.kind_case = addon ? ENT__V1__EVENT__KIND_SET_ADDON : ENT__V1__EVENT__KIND_SET_PLAN;
	ev.set_plan = &req;
	apply(f, &ev);
}

/* An instant near now: mostly ahead (days), sometimes behind, sometimes 0 (open). */
static int64_t rnd_instant(struct fx *f, bool zero_ok)
{
	if (zero_ok && below(3) == 0)
		return 0;
	int64_t t = f->now + below(40 * DAY) - 8 * DAY;
	return below(2) ? t - t % HOUR : t; /* round instants collide with period edges */
}

static void upsert_sub(struct fx *f)
{
	static char *plans[] = {"p0", "p1"};
	static char *ids[] = {"s0", "s1", "s2", "s3", "s4", "s5"};
	Ent__V1__Subscription s = ENT__V1__SUBSCRIPTION__INIT;
	Ent__V1__SubscriptionAddon ad = ENT__V1__SUBSCRIPTION_ADDON__INIT, *ads[1] = {&ad};
	Ent__V1__Grant g, *gp[1] = {&g};
	Ent__V1__PrivilegeValue pv, *pvs[1];
	Google__Protobuf__BoolValue en;
	char *st[1];
	s.id = ids[below(6)];
	s.customer_id = (char *)customers[below(NC)];
	s.plan_code = plans[below(2)];
	s.quantity = below(3);
	s.active_from = rnd_instant(f, true);
	s.ends_at = rnd_instant(f, true);
	if (s.ends_at && s.active_from && s.ends_at <= s.active_from)
		s.ends_at = s.active_from + below(10 * DAY) + 1;
	s.billing_anchor = below(3) == 0 ? rnd_instant(f, false) : 0;
	if (s.billing_anchor < 0)
		s.billing_anchor = 0;
	if (below(2)) {
		ad.addon_code = "a0";
		ad.quantity = below(3);
		s.n_addons = 1;
		s.addons = ads;
	}
	if (below(4) == 0) {
		rnd_grant(&g, &pv, pvs, &en, st, (int)below(NF));
		s.n_entitlements = 1;
		s.entitlements = gp;
	}
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	ev.upsert_subscription = &s;
	apply(f, &ev);
}

static void cancel_sub(struct fx *f)
{
	static char *ids[] = {"s0", "s1", "s2", "s3", "s4", "s5"};
	Ent__V1__CancelSubscriptionRequest r = ENT__V1__CANCEL_SUBSCRIPTION_REQUEST__INIT;
	r.customer_id = (char *)customers[below(NC)];
	r.subscription_id = ids[below(6)];
	r.at = rnd_instant(f, true);
	if (r.at < 0)
		r.at = 0;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	ev.kind_case = ENT__V1__EVENT__KIND_CANCEL_SUBSCRIPTION;
	ev.cancel_subscription = &r;
	apply(f, &ev);
}

static void set_override(struct fx *f)
{
	Ent__V1__SetCustomerEntitlementRequest r = ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	Ent__V1__OverrideValue v = ENT__V1__OVERRIDE_VALUE__INIT;
	int k = (int)below(NF);
	r.customer_id = (char *)customers[below(NC)];
	r.feature_code = (char *)features[k];
	if (k == 0 && below(2)) {
		v.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE;
		v.number_value = (double)(below(5) * 10);
	} else {
		v.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
		v.bool_value = below(3) != 0;
	}
	r.value = &v;
	r.reason = below(2) ? "promo" : "";
	r.active_from = below(2) ? 0 : f->now + below(10 * DAY);
	r.expires_at =
		below(2) ? 0 : (r.active_from ? r.active_from : f->now) + 1 + below(10 * DAY);
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	ev.kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
	ev.set_override = &r;
	apply(f, &ev);
}

static void update_override(struct fx *f)
{
	Ent__V1__UpdateCustomerEntitlementRequest r =
		ENT__V1__UPDATE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	Google__Protobuf__Int64Value q = GOOGLE__PROTOBUF__INT64_VALUE__INIT,
				     e = GOOGLE__PROTOBUF__INT64_VALUE__INIT,
				     u = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	r.customer_id = (char *)customers[below(NC)];
	r.feature_code = "m";
	if (below(2)) {
		q.value = below(5) * 10;
		r.quantity = &q;
	}
	if (below(3) == 0) {
		e.value = f->now + 1 + below(10 * DAY);
		r.expiry_at = &e;
	}
	if (below(3) == 0) {
		u.value = below(50);
		r.quantity_used = &u;
	}
	if (!r.quantity && !r.expiry_at && !r.quantity_used)
		r.quantity = &q;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	ev.kind_case = ENT__V1__EVENT__KIND_UPDATE_OVERRIDE;
	ev.update_override = &r;
	apply(f, &ev);
}

static void usage(struct fx *f, bool consume)
{
	static char key[32];
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = f->now;
	snprintf(key, sizeof(key), "k%ld", f->events);
	if (consume) {
		Ent__V1__ConsumeEntitlementRequest r = ENT__V1__CONSUME_ENTITLEMENT_REQUEST__INIT;
		r.customer_id = (char *)customers[below(NC)];
		r.feature_code = "m";
		r.quantity = 1 + below(15);
		r.idempotency_key = key;
		ev.kind_case = ENT__V1__EVENT__KIND_CONSUME;
		ev.consume = &r;
		apply(f, &ev);
		return;
	}
	Ent__V1__ReportUsageRequest r = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	r.customer_id = (char *)customers[below(NC)];
	r.feature_code = "m";
	r.quantity = 1 + below(30);
	r.idempotency_key = key;
	r.timestamp = below(3) == 0 ? f->now - below(3 * DAY) : 0;
	ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	ev.report_usage = &r;
	apply(f, &ev);
}

static void tick(struct fx *f, int64_t now)
{
	Ent__V1__Tick t = ENT__V1__TICK__INIT;
	t.now = now;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.at = now;
	ev.kind_case = ENT__V1__EVENT__KIND_TICK;
	ev.tick = &t;
	if (apply(f, &ev))
		fail_msg("tick: %s", f->res.err.msg);
	f->ticks++;
}

/* ---- answers --------------------------------------------------------------------------------- */

/* Everything a check answers, strings copied, as one comparable text. */
static void answer(struct fx *f, int c, int k, int64_t t, char *out, size_t cap)
{
	struct ent_check chk = {ent_str_c(customers[c]), ent_str_c(features[k]), 5, t};
	struct ent_check_result r;
	memset(&r, 0, sizeof(r));
	assert_int_equal(ent_store_view_begin(f->v), 0);
	int rc = ent_store_view_check(f->v, &chk, &r);
	if (rc)
		fail_msg("check: %d", rc);
	const struct ent_decision *d = &r.d;
	size_t n = (size_t)snprintf(
		out, cap,
		"allowed=%d reason=%d type=%d metered=%d limit=%lld unl=%d soft=%d used=%lld "
		"rem=%lld reset=%d ps=%lld pe=%lld next=%lld",
		d->allowed, d->reason, d->feature_type, d->metered, (long long)d->limit,
		d->unlimited, d->soft, (long long)d->used, (long long)d->remaining, d->reset,
		(long long)d->period_start, (long long)d->period_end, (long long)d->next_change_at);
	const struct ent_agg *g = d->agg;
	if (g && n < cap) {
		n += (size_t)snprintf(out + n, cap - n,
				      " en=%d ovr=%d/%.*s/%lld statics=", g->enabled,
				      g->override_applied, (int)g->override_reason.len,
				      g->override_reason.p, (long long)g->override_expires_at);
		for (uint32_t i = 0; i < g->n_static && n < cap; i++)
			n += (size_t)snprintf(out + n, cap - n, "%.*s,", (int)g->statics[i].len,
					      g->statics[i].p);
		for (uint32_t i = 0; i < g->n_privs && n < cap; i++)
			n += (size_t)snprintf(out + n, cap - n, " %.*s=%.*s/%lld/%d",
					      (int)g->privs[i].code.len, g->privs[i].code.p,
					      (int)g->privs[i].s.len, g->privs[i].s.p,
					      (long long)g->privs[i].i, g->privs[i].b);
	}
	ent_store_view_end(f->v);
	f->checks++;
}

#define NT   12
#define ALEN 512

/* Instants to ask about, all >= from: from itself, a spread over 60 days, round hours/days. */
static void instants(struct fx *f, int64_t from, int64_t *t)
{
	t[0] = from;
	for (int i = 1; i < NT; i++) {
		int64_t x = from + below(60 * DAY);
		if (i % 3 == 0)
			x += DAY - x % DAY; /* a midnight: where daily and monthly periods turn */
		t[i] = x;
	}
}

struct snap {
	int64_t t[NT];
	char a[NC][NF][NT][ALEN];
};

static void take(struct fx *f, struct snap *s)
{
	for (int c = 0; c < NC; c++)
		for (int k = 0; k < NF; k++)
			for (int i = 0; i < NT; i++)
				answer(f, c, k, s->t[i], s->a[c][k][i], ALEN);
}

static void same(struct fx *f, const struct snap *before, const struct snap *after,
		 const char *what)
{
	for (int c = 0; c < NC; c++)
		for (int k = 0; k < NF; k++)
			for (int i = 0; i < NT; i++)
				if (strcmp(before->a[c][k][i], after->a[c][k][i]))
					fail_msg(
						"seed %llu case %ld step %s: %s changed the answer "
						"of %s/%s at %lld (now %lld)\n  before: %s\n  "
						"after:  %s",
						(unsigned long long)0, f->case_no, f->step, what,
						customers[c], features[k], (long long)before->t[i],
						(long long)f->now, before->a[c][k][i],
						after->a[c][k][i]);
}

/* P2: the answer holds from t until next_change_at. */
static void holds_until_next_change(struct fx *f)
{
	char a[ALEN], b[ALEN];
	int64_t t[NT];
	instants(f, f->now, t);
	for (int c = 0; c < NC; c++)
		for (int k = 0; k < NF; k++)
			for (int i = 0; i < NT; i++) {
				answer(f, c, k, t[i], a, ALEN);
				const char *nx = strstr(a, "next=");
				long long next = nx ? atoll(nx + 5) : 0;
				if (next == 0)
					continue;
				if (next <= t[i])
					fail_msg(
						"case %ld: next_change_at %lld is not after %lld: %s",
						f->case_no, next, (long long)t[i], a);
				int64_t probes[2] = {next - 1, t[i] + below(next - t[i])};
				for (int p = 0; p < 2; p++) {
					answer(f, c, k, probes[p], b, ALEN);
					if (strcmp(a, b))
						fail_msg(
							"case %ld step %s: %s/%s changed before its "
							"next_change_at %lld: at %lld\n  %s\nat %lld\n "
							" %s",
							f->case_no, f->step, customers[c],
							features[k], next, (long long)t[i], a,
							(long long)probes[p], b);
				}
			}
}

static struct snap s1, s2;

/* P1: a cleanup Tick at now' <= every instant asked changes nothing. */
static void tick_is_neutral(struct fx *f)
{
	int64_t later = f->now + below(20 * DAY);
	instants(f, later, s1.t);
	take(f, &s1);
	tick(f, later);
	memcpy(s2.t, s1.t, sizeof(s1.t));
	take(f, &s2);
	same(f, &s1, &s2, "a tick");
	f->now = later;
}

/* P3: Export, then Import(replace) at now, restores every answer from now on. */
static void export_import_is_neutral(struct fx *f)
{
	instants(f, f->now, s1.t);
	take(f, &s1);
	char *doc = NULL;
	struct ent_err err = {0};
	assert_int_equal(ent_store_view_begin(f->v), 0);
	int rc = ent_json_export(f->v, &doc, &err);
	ent_store_view_end(f->v);
	if (rc)
		fail_msg("export: %s", err.msg);
	struct ent_wtxn *w;
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	ent_arena_reset(&f->arena);
	rc = ent_json_apply(w, doc, strlen(doc), true, f->now, &f->arena, &err, NULL);
	if (rc) {
		ent_store_wtxn_abort(w);
		fail_msg("case %ld: the export does not import: %s\n%s", f->case_no, err.msg, doc);
	}
	assert_int_equal(ent_store_wtxn_commit(w, &err), 0);
	memcpy(s2.t, s1.t, sizeof(s1.t));
	take(f, &s2);
	same(f, &s1, &s2, "export -> import(replace)");
	free(doc);
	f->imports++;
}

static void one_case(struct fx *f)
{
	sem_open(f);
	f->now = T0 + below(365 * DAY);
	f->step = "setup";
	upsert_feature(f, "m", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED, 2);
	upsert_feature(f, "b", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN, 0);
	upsert_feature(f, "s", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC, 0);
	set_object(f, false, "p0");
	set_object(f, false, "p1");
	set_object(f, true, "a0");
	int steps = 10 + (int)below(25);
	for (int i = 0; i < steps; i++) {
		switch (below(12)) {
		case 0:
		case 1:
		case 2:
			f->step = "upsert_subscription";
			upsert_sub(f);
			break;
		case 3:
			f->step = "cancel_subscription";
			cancel_sub(f);
			break;
		case 4:
			f->step = "set_override";
			set_override(f);
			break;
		case 5:
			f->step = "update_override";
			update_override(f);
			break;
		case 6:
		case 7:
			f->step = below(2) ? "report_usage" : "consume";
			usage(f, f->step[0] == 'c');
			break;
		case 8:
			f->step = "set_plan";
			set_object(f, below(3) == 0, below(2) ? "p0" : "p1");
			break;
		case 9:
			f->step = "narrow select options";
			upsert_feature(f, "m", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED,
				       1 + (int)below(2));
			break;
		default:
			f->now += below(3 * DAY);
			break;
		}
		if (below(3) == 0) {
			f->step = "P2";
			holds_until_next_change(f);
		}
		if (below(3) == 0) {
			f->step = "P1";
			tick_is_neutral(f);
		}
		if (below(5) == 0) {
			f->step = "P3";
			export_import_is_neutral(f);
		}
	}
	f->step = "end";
	holds_until_next_change(f);
	tick_is_neutral(f);
	export_import_is_neutral(f);
	holds_until_next_change(f);
	sem_close(f);
}

/* Sanitizer builds run ~70 times slower here (LMDB under ASan): fewer cases by default. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DEFAULT_CASES 15
#else
#define DEFAULT_CASES 200
#endif

static void test_properties(void **state)
{
	(void)state;
	const char *e = getenv("SEM_SEED");
	uint64_t seed = e ? strtoull(e, NULL, 10) : 16;
	e = getenv("SEM_CASES");
	long cases = e ? strtol(e, NULL, 10) : DEFAULT_CASES;
	static struct fx f;
	memset(&f, 0, sizeof(f));
	ent_arena_init(&f.arena, 0);
	for (long i = 0; i < cases; i++) {
		rng = seed * 1000003u + (uint64_t)i;
		f.case_no = i;
		one_case(&f);
	}
	ent_arena_deinit(&f.arena);
	printf("seed %llu: %ld cases, %ld events (%ld refused), %ld checks, %ld ticks, %ld "
	       "export/imports\n",
	       (unsigned long long)seed, cases, f.events, f.refused, f.checks, f.ticks, f.imports);
	/* The sequence really exercised what it claims to. */
	assert_true(f.ticks >= cases && f.imports >= cases && f.events > f.refused);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_properties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
