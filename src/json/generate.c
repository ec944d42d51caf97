/*
 * The synthetic data set of `entctl generate`: deterministic (same options, same data) so that
 * benchmarks and tests know the key space and can predict answers. docs/data-format.md lists
 * what it creates.
 *
 * Events go straight to ent_store_apply, a bounded number per write transaction: one transaction
 * per million customers would pin every dirty page in memory, one per event would spend the time in
 * commits. Each customer's events are built on the stack and dropped after apply.
 */
#include <stdio.h>
#include <string.h>

#include "ent/json.h"
#include "ent/model.h"
#include "ent/v1/event.pb-c.h"

/* 2024-01-01T00:00:00Z: the first billing anchor; customers spread over the following 28 days. */
#define GEN_EPOCH_MS INT64_C(1704067200000)
#define DAY_MS	     INT64_C(86400000)
/* 2035-01-01T00:00:00Z: far enough that generated overrides stay active in tests. */
#define GEN_EXPIRY_MS INT64_C(2051222400000)

/* splitmix64: a stateless hash, so any customer's data is computable without generating it. */
static uint64_t mix(uint64_t seed, uint64_t x)
{
	uint64_t z = seed * UINT64_C(0x9E3779B97F4A7C15) + x + UINT64_C(0x632BE59BD9B4E019);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

void ent_json_gen_feature_counts(uint32_t features, uint32_t *metered, uint32_t *boolean,
				 uint32_t *statics)
{
	if (features < 4)
		features = 4;
	*metered = features / 2;
	*boolean = (features - *metered + 1) / 2;
	*statics = features - *metered - *boolean;
}

const char *ent_json_gen_feature_code(uint8_t type, uint32_t k, char *buf, size_t len)
{
	const char *kind = type == ENT_FT_METERED   ? "metered"
			   : type == ENT_FT_BOOLEAN ? "boolean"
						    : "static";
	snprintf(buf, len, "f_%s_%u", kind, k);
	return buf;
}

/* Reset periods cycle over the metered features so every one of them is exercised. */
static const uint8_t gen_resets[] = {
	ENT_RESET_MONTHLY,   ENT_RESET_DAILY,	    ENT_RESET_WEEKLY, ENT_RESET_ANNUAL,
	ENT_RESET_QUARTERLY, ENT_RESET_HALF_YEARLY, ENT_RESET_NEVER,
};

static const char *const tiers[] = {"basic", "pro", "enterprise"};

struct gen {
	struct ent_store *store;
	const struct ent_gen_opts *o;
	struct ent_gen_stats *stats;
	struct ent_err *err;
	struct ent_wtxn *w;
	struct ent_arena arena;
	uint32_t nm, nb, ns, batch, in_batch;
	int64_t now;
};

static int gen_commit(struct gen *g)
{
	if (!g->w)
		return 0;
	g->stats->seq = ent_store_wtxn_seq(g->w);
	int rc = ent_store_wtxn_commit(g->w, g->err);
	g->w = NULL;
	g->in_batch = 0;
	return rc;
}

/* Apply one event, committing the batch when it is full. \a what names it in errors. */
static int gen_apply(struct gen *g, Ent__V1__Event *ev, const char *what)
{
	int rc;
	if (!g->w && (rc = ent_store_wtxn_begin(g->store, &g->w)))
		return ent_err_set(g->err, rc, "begin write transaction: %s", ent_err_strerror(rc));
	struct ent_apply_result res;
	memset(&res, 0, sizeof(res));
	ev->at = g->now;
	rc = ent_store_apply(g->w, ev, &g->arena, &res);
	ent_arena_reset(&g->arena);
	if (rc || res.err.code) {
		int code = res.err.code ? res.err.code : -rc;
		ent_err_set(g->err, code, "%s: %s", what,
			    res.err.msg[0] ? res.err.msg : ent_err_strerror(code));
		ent_store_wtxn_abort(g->w);
		g->w = NULL;
		return -code;
	}
	g->stats->events++;
	if (++g->in_batch >= g->batch)
		return gen_commit(g);
	return 0;
}

/* ---- catalog: features, plans, add-ons ------------------------------------------------- */

static int gen_features(struct gen *g)
{
	char code[64], name[64];
	Ent__V1__PrivilegeDef pd[4];
	Ent__V1__PrivilegeDef *pdp[4];
	static const char *const pcodes[] = {"max_seats", "admin", "region", "tier"};
	static const Ent__V1__PrivilegeType ptypes[] = {
		ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER,
		ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_BOOLEAN,
		ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_STRING,
		ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT};
	for (int i = 0; i < 4; i++) {
		ent__v1__privilege_def__init(&pd[i]);
		pd[i].code = (char *)pcodes[i];
		pd[i].name = (char *)pcodes[i];
		pd[i].value_type = ptypes[i];
		pdp[i] = &pd[i];
	}
	pd[3].n_select_options = 3;
	pd[3].select_options = (char **)tiers;

	const struct {
		uint8_t type;
		uint32_t n;
	} kinds[] = {{ENT_FT_METERED, g->nm}, {ENT_FT_BOOLEAN, g->nb}, {ENT_FT_STATIC, g->ns}};
	for (size_t t = 0; t < 3; t++) {
		for (uint32_t k = 0; k < kinds[t].n; k++) {
			Ent__V1__Feature f = ENT__V1__FEATURE__INIT;
			Ent__V1__Event ev = ENT__V1__EVENT__INIT;
			f.code = (char *)ent_json_gen_feature_code(kinds[t].type, k, code,
								   sizeof(code));
			snprintf(name, sizeof(name), "Synthetic %s feature %u",
				 kinds[t].type == ENT_FT_METERED   ? "metered"
				 : kinds[t].type == ENT_FT_BOOLEAN ? "boolean"
								   : "static",
				 k);
			f.name = name;
			f.type = (Ent__V1__FeatureType)kinds[t].type;
			if (kinds[t].type == ENT_FT_METERED) {
				f.unit_singular = "call";
				f.unit_plural = "calls";
			}
			/* Boolean features carry one privilege of each of Lago's four types. */
			if (kinds[t].type == ENT_FT_BOOLEAN) {
				f.n_privileges = 4;
				f.privileges = pdp;
			}
			ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
			ev.upsert_feature = &f;
			int rc = gen_apply(g, &ev, f.code);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/*
 * Privilege values of a boolean grant at tier \a j. Strings point at static storage, so the
 * caller's arrays need no cleanup.
 */
static void gen_privs(Ent__V1__PrivilegeValue pv[4], Ent__V1__PrivilegeValue *pvp[4], int64_t seats,
		      bool admin, uint32_t j)
{
	static const char *const regions[] = {"eu", "us"};
	static const char *const pcodes[] = {"max_seats", "admin", "region", "tier"};
	for (int i = 0; i < 4; i++) {
		ent__v1__privilege_value__init(&pv[i]);
		pv[i].code = (char *)pcodes[i];
		pvp[i] = &pv[i];
	}
	pv[0].value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
	pv[0].int_value = seats;
	pv[1].value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE;
	pv[1].bool_value = admin;
	pv[2].value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
	pv[2].string_value = (char *)regions[j % 2];
	pv[3].value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
	pv[3].string_value = (char *)tiers[j < 2 ? j : 2];
}

/* Does plan j of P grant the k-th of n features of a kind? Higher plans grant more. */
static bool plan_grants(uint32_t j, uint32_t plans, uint32_t k, uint32_t n)
{
	return (uint64_t)k * plans < (uint64_t)n * (j + 1);
}

/* The usage limit plan j grants for metered feature k (before the subscription quantity). */
static int64_t plan_limit(const struct gen *g, uint32_t j, uint32_t k)
{
	return (int64_t)(100 * (1 + mix(g->o->seed, k) % 10)) * (j + 1);
}

static int gen_plans(struct gen *g)
{
	uint32_t nf = g->nm + g->nb + g->ns;
	/* Grants live in their own arena so gen_apply's per-event reset does not free them. */
	struct ent_arena a;
	ent_arena_init(&a, 0);
	int rc = 0;
	char name[64];
	for (uint32_t j = 0; j < g->o->plans && !rc; j++) {
		ent_arena_reset(&a);
		Ent__V1__Grant *gs = ent_arena_alloc(&a, nf * sizeof(*gs));
		Ent__V1__Grant **gp = ent_arena_alloc(&a, nf * sizeof(*gp));
		Ent__V1__PrivilegeValue *pv = ent_arena_alloc(&a, 4 * g->nb * sizeof(*pv));
		Ent__V1__PrivilegeValue **pvp = ent_arena_alloc(&a, 4 * g->nb * sizeof(*pvp));
		char **statics = ent_arena_alloc(&a, 2 * g->ns * sizeof(char *));
		if (!gs || !gp || !pv || !pvp || !statics) {
			rc = ent_err_set(g->err, ENT_ENOMEM, "out of memory");
			break;
		}
		size_t n = 0;
		for (uint32_t k = 0; k < g->nm; k++) {
			if (!plan_grants(j, g->o->plans, k, g->nm))
				continue;
			Ent__V1__Grant *gr = &gs[n];
			ent__v1__grant__init(gr);
			gr->feature_code = ent_arena_alloc(&a, 32);
			ent_json_gen_feature_code(ENT_FT_METERED, k, gr->feature_code, 32);
			gr->usage_limit = plan_limit(g, j, k);
			gr->usage_reset_period =
				(Ent__V1__ResetPeriod)gen_resets[k % sizeof(gen_resets)];
			gr->is_soft_limit = j % 2 == 1;
			gr->unlimited = j + 1 == g->o->plans && k % 3 == 2;
			gp[n++] = gr;
		}
		for (uint32_t k = 0; k < g->nb; k++) {
			if (!plan_grants(j, g->o->plans, k, g->nb))
				continue;
			Ent__V1__Grant *gr = &gs[n];
			ent__v1__grant__init(gr);
			gr->feature_code = ent_arena_alloc(&a, 32);
			ent_json_gen_feature_code(ENT_FT_BOOLEAN, k, gr->feature_code, 32);
			gen_privs(&pv[4 * k], &pvp[4 * k], 5 * (int64_t)(j + 1), j >= 1, j);
			gr->n_privileges = 4;
			gr->privileges = &pvp[4 * k];
			gp[n++] = gr;
		}
		for (uint32_t k = 0; k < g->ns; k++) {
			if (!plan_grants(j, g->o->plans, k, g->ns))
				continue;
			Ent__V1__Grant *gr = &gs[n];
			ent__v1__grant__init(gr);
			gr->feature_code = ent_arena_alloc(&a, 32);
			ent_json_gen_feature_code(ENT_FT_STATIC, k, gr->feature_code, 32);
			statics[2 * k] = ent_arena_alloc(&a, 32);
			statics[2 * k + 1] = ent_arena_alloc(&a, 32);
			snprintf(statics[2 * k], 32, "tier-%u", j);
			snprintf(statics[2 * k + 1], 32, "region-%u", k % 3);
			gr->n_static_values = 2;
			gr->static_values = &statics[2 * k];
			gp[n++] = gr;
		}
		Ent__V1__SetEntitlementsRequest p = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
		char code[32];
		snprintf(code, sizeof(code), "plan_%u", j);
		snprintf(name, sizeof(name), "Plan %u", j);
		p.code = code;
		p.name = name;
		p.n_entitlements = n;
		p.entitlements = gp;
		Ent__V1__Event ev = ENT__V1__EVENT__INIT;
		ev.kind_case = ENT__V1__EVENT__KIND_SET_PLAN;
		ev.set_plan = &p;
		rc = gen_apply(g, &ev, code);
	}
	ent_arena_deinit(&a);
	return rc;
}

/*
 * addon_0 "Extra usage": +500 f_metered_0 per unit, monthly (limits add up).
 * addon_1 "Premium": every boolean feature with top privileges, and "premium" on f_static_0.
 */
static int gen_addons(struct gen *g)
{
	char code[32];
	Ent__V1__Grant g0 = ENT__V1__GRANT__INIT;
	Ent__V1__Grant *g0p = &g0;
	ent_json_gen_feature_code(ENT_FT_METERED, 0, code, sizeof(code));
	g0.feature_code = code;
	g0.usage_limit = 500;
	g0.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;
	Ent__V1__SetEntitlementsRequest a0 = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	a0.code = "addon_0";
	a0.name = "Extra usage";
	a0.n_entitlements = 1;
	a0.entitlements = &g0p;
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.kind_case = ENT__V1__EVENT__KIND_SET_ADDON;
	ev.set_addon = &a0;
	int rc = gen_apply(g, &ev, "addon_0");
	if (rc)
		return rc;

	struct ent_arena a;
	ent_arena_init(&a, 0);
	uint32_t n = g->nb + 1;
	Ent__V1__Grant *gs = ent_arena_alloc(&a, n * sizeof(*gs));
	Ent__V1__Grant **gp = ent_arena_alloc(&a, n * sizeof(*gp));
	Ent__V1__PrivilegeValue *pv = ent_arena_alloc(&a, 4 * g->nb * sizeof(*pv));
	Ent__V1__PrivilegeValue **pvp = ent_arena_alloc(&a, 4 * g->nb * sizeof(*pvp));
	if (!gs || !gp || !pv || !pvp) {
		ent_arena_deinit(&a);
		return ent_err_set(g->err, ENT_ENOMEM, "out of memory");
	}
	for (uint32_t k = 0; k < g->nb; k++) {
		ent__v1__grant__init(&gs[k]);
		gs[k].feature_code = ent_arena_alloc(&a, 32);
		ent_json_gen_feature_code(ENT_FT_BOOLEAN, k, gs[k].feature_code, 32);
		gen_privs(&pv[4 * k], &pvp[4 * k], 100, true, 2);
		gs[k].n_privileges = 4;
		gs[k].privileges = &pvp[4 * k];
		gp[k] = &gs[k];
	}
	static char *premium[] = {"premium"};
	ent__v1__grant__init(&gs[g->nb]);
	gs[g->nb].feature_code = ent_arena_alloc(&a, 32);
	ent_json_gen_feature_code(ENT_FT_STATIC, 0, gs[g->nb].feature_code, 32);
	gs[g->nb].n_static_values = 1;
	gs[g->nb].static_values = premium;
	gp[g->nb] = &gs[g->nb];
	Ent__V1__SetEntitlementsRequest a1 = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	a1.code = "addon_1";
	a1.name = "Premium";
	a1.n_entitlements = n;
	a1.entitlements = gp;
	ev.kind_case = ENT__V1__EVENT__KIND_SET_ADDON;
	ev.set_addon = &a1;
	rc = gen_apply(g, &ev, "addon_1");
	ent_arena_deinit(&a);
	return rc;
}

/* ---- customers ------------------------------------------------------------------------ */

/*
 * Customer i: subscription sub_<i> to plan_<i mod P>, anchored at GEN_EPOCH + (i mod 28) days;
 * i mod 10 == 1: addon_0 x (1 + i/10 mod 3); i mod 10 == 2: addon_1.
 * i mod 20 == 7 (5%): an override, by (i/20) mod 3: f_metered_0 limit 1000000 until 2035;
 * f_boolean_0 switched off; f_boolean_0 with max_seats 1000 until 2035.
 * i mod 4 == 0: f_metered_0 usage in the current period (never on an overridden customer).
 */
static int gen_customer(struct gen *g, uint64_t i)
{
	char cus[48], sub[48], plan[32], what[160];
	snprintf(cus, sizeof(cus), "cus_%llu", (unsigned long long)i);
	snprintf(sub, sizeof(sub), "sub_%llu", (unsigned long long)i);
	uint32_t j = (uint32_t)(i % g->o->plans);
	snprintf(plan, sizeof(plan), "plan_%u", j);
	int64_t anchor = GEN_EPOCH_MS + (int64_t)(i % 28) * DAY_MS;

	Ent__V1__SubscriptionAddon sa = ENT__V1__SUBSCRIPTION_ADDON__INIT;
	Ent__V1__SubscriptionAddon *sap = &sa;
	Ent__V1__Subscription s = ENT__V1__SUBSCRIPTION__INIT;
	s.id = sub;
	s.customer_id = cus;
	s.plan_code = plan;
	s.quantity = 1;
	s.active_from = anchor;
	s.billing_anchor = anchor;
	if (i % 10 == 1 || i % 10 == 2) {
		sa.addon_code = i % 10 == 1 ? "addon_0" : "addon_1";
		sa.quantity = i % 10 == 1 ? (int64_t)(1 + i / 10 % 3) : 1;
		s.n_addons = 1;
		s.addons = &sap;
	}
	Ent__V1__Event ev = ENT__V1__EVENT__INIT;
	ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	ev.upsert_subscription = &s;
	snprintf(what, sizeof(what), "%s/%s", cus, sub);
	int rc = gen_apply(g, &ev, what);
	if (rc)
		return rc;

	char fcode[32];
	if (i % 20 == 7) {
		Ent__V1__SetCustomerEntitlementRequest o =
			ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
		Ent__V1__OverrideValue v = ENT__V1__OVERRIDE_VALUE__INIT;
		Ent__V1__PrivilegeValue pv = ENT__V1__PRIVILEGE_VALUE__INIT;
		Ent__V1__PrivilegeValue *pvp = &pv;
		o.customer_id = cus;
		o.value = &v;
		switch (i / 20 % 3) {
		case 0:
			o.feature_code = (char *)ent_json_gen_feature_code(ENT_FT_METERED, 0, fcode,
									   sizeof(fcode));
			v.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE;
			v.number_value = 1000000;
			o.reason = "generated: raised limit";
			o.expires_at = GEN_EXPIRY_MS;
			break;
		case 1:
			o.feature_code = (char *)ent_json_gen_feature_code(ENT_FT_BOOLEAN, 0, fcode,
									   sizeof(fcode));
			v.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
			v.bool_value = false;
			o.reason = "generated: disabled";
			break;
		default:
			o.feature_code = (char *)ent_json_gen_feature_code(ENT_FT_BOOLEAN, 0, fcode,
									   sizeof(fcode));
			v.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
			v.bool_value = true;
			pv.code = "max_seats";
			pv.value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
			pv.int_value = 1000;
			o.n_privileges = 1;
			o.privileges = &pvp;
			o.reason = "generated: more seats";
			o.expires_at = GEN_EXPIRY_MS;
			break;
		}
		ev.kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
		ev.set_override = &o;
		snprintf(what, sizeof(what), "%s/override %s", cus, o.feature_code);
		if ((rc = gen_apply(g, &ev, what)))
			return rc;
	}

	if (i % 4 == 0) {
		/* f_metered_0 is granted by every plan with reset gen_resets[0] (MONTHLY); the
		 * counter must belong to the period containing now to count. */
		int64_t start, end;
		int64_t limit = plan_limit(g, j, 0);
		ent_model_period(gen_resets[0], anchor, g->now, &start, &end);
		Ent__V1__UsageState u = ENT__V1__USAGE_STATE__INIT;
		u.customer_id = cus;
		u.feature_code =
			(char *)ent_json_gen_feature_code(ENT_FT_METERED, 0, fcode, sizeof(fcode));
		u.period_start = start;
		u.used = (int64_t)(mix(g->o->seed, i) % (uint64_t)(limit + limit / 2));
		ev.kind_case = ENT__V1__EVENT__KIND_SET_USAGE;
		ev.set_usage = &u;
		snprintf(what, sizeof(what), "%s/usage %s", cus, u.feature_code);
		if ((rc = gen_apply(g, &ev, what)))
			return rc;
	}
	return 0;
}

int ent_json_generate(struct ent_store *store, const struct ent_gen_opts *opts,
		      struct ent_gen_stats *stats, struct ent_err *err)
{
	struct ent_gen_opts o = *opts;
	struct ent_gen_stats st = {0};
	if (!o.features)
		o.features = 20;
	if (o.features < 4)
		return ent_err_set(err, ENT_EINVAL, "features: at least 4 (one of each kind)");
	if (!o.plans)
		o.plans = 4;
	struct gen g = {.store = store, .o = &o, .stats = &st, .err = err};
	g.batch = o.batch ? o.batch : 10000;
	g.now = o.now ? o.now : ent_time_now_ms();
	ent_json_gen_feature_counts(o.features, &g.nm, &g.nb, &g.ns);
	ent_arena_init(&g.arena, 0);

	int rc = gen_features(&g);
	if (!rc)
		rc = gen_plans(&g);
	if (!rc)
		rc = gen_addons(&g);
	for (uint64_t i = 0; !rc && i < o.customers; i++) {
		rc = gen_customer(&g, i);
		/* Report progress at each commit, when the batch counter has just wrapped. */
		if (!rc && g.in_batch == 0 && o.progress)
			o.progress(o.progress_ctx, i + 1);
	}
	if (!rc)
		rc = gen_commit(&g);
	if (g.w)
		ent_store_wtxn_abort(g.w);
	ent_arena_deinit(&g.arena);
	if (stats)
		*stats = st;
	return rc;
}
