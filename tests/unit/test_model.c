/*
 * Unit tests of the model: every rule of docs/semantics.md has a test named in its row.
 * Instants are written as RFC 3339 and converted with ent_time_parse (src/util), which is
 * independent of the civil-date code under test in src/model/period.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ent/model.h"

/* ---- helpers ------------------------------------------------------------------------- */

static int64_t T(const char *iso)
{
	int64_t ms = 0;
	if (ent_time_parse(iso, &ms) != 0)
		fail_msg("bad test time %s", iso);
	return ms;
}

/* One struct ent_sources is ~10 KB: keep it static, reset per test. */
static struct ent_sources S;

static void start(uint8_t ftype)
{
	memset(&S, 0, sizeof(S));
	S.feature.code = ENT_STR_LIT("api_calls");
	S.feature.type = ftype;
}

static void declare(const char *code, uint8_t type)
{
	S.feature.privs[S.feature.n_privs].code = ent_str_c(code);
	S.feature.privs[S.feature.n_privs].type = type;
	S.feature.n_privs++;
}

/* A new enabled source of \a type, active for ever, quantity 1. */
static struct ent_source *add(uint8_t type)
{
	struct ent_source *s = &S.src[S.n++];
	memset(s, 0, sizeof(*s));
	s->type = type;
	s->id = ENT_STR_LIT("src");
	s->quantity = 1;
	s->enabled = true;
	return s;
}

static struct ent_source *add_override(uint32_t sets)
{
	struct ent_source *s = add(ENT_SRC_OVERRIDE);
	s->sets = sets;
	s->reason = ENT_STR_LIT("support ticket 42");
	return s;
}

static struct ent_agg A;
static struct ent_agg SEG[ENT_MAX_SEGMENTS];

static struct ent_agg *agg_at(int64_t t)
{
	assert_int_equal(ent_model_aggregate(&S, t, &A), 0);
	return &A;
}

static void assert_str(struct ent_str got, const char *want)
{
	if (!ent_str_eq(got, ent_str_c(want)))
		fail_msg("got \"%.*s\", want \"%s\"", (int)got.len, got.p ? got.p : "", want);
}

static const struct ent_priv *priv_of(const struct ent_agg *a, const char *code)
{
	for (uint32_t i = 0; i < a->n_privs; i++)
		if (ent_str_eq(a->privs[i].code, ent_str_c(code)))
			return &a->privs[i];
	return NULL;
}

/* ---- activity ------------------------------------------------------------------------ */

static void test_activity_window(void **state)
{
	start(ENT_FT_BOOLEAN);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->active_from = 1000;
	p->expires_at = 2000;
	static const struct {
		int64_t t;
		bool enabled;
	} rows[] = {{999, false}, {1000, true}, {1999, true}, {2000, false}, {-5, false}};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (agg_at(rows[i].t)->enabled != rows[i].enabled)
			fail_msg("row %zu (t=%lld)", i, (long long)rows[i].t);

	/* 0 means open at that end, including for instants before the epoch. */
	p->active_from = 0;
	p->expires_at = 0;
	assert_true(agg_at(-1000000)->enabled);
	assert_true(agg_at(INT64_MAX - 1)->enabled);
	p->active_from = 0;
	p->expires_at = 2000;
	assert_true(agg_at(-1000000)->enabled);
	assert_false(agg_at(2000)->enabled);
}

/* ---- rules 1-3 ------------------------------------------------------------------------- */

static void test_enabled_or(void **state)
{
	start(ENT_FT_BOOLEAN);
	struct ent_source *p = add(ENT_SRC_PLAN);
	struct ent_source *a = add(ENT_SRC_ADDON);
	p->enabled = false;
	a->enabled = true;
	assert_true(agg_at(0)->enabled);
	assert_int_equal(A.state, ENT_R_ENTITLED);
	a->enabled = false;
	assert_false(agg_at(0)->enabled);
	assert_int_equal(A.state, ENT_R_NOT_ENTITLED);
	/* An enabled but inactive source does not count. */
	a->enabled = true;
	a->expires_at = 10;
	assert_false(agg_at(10)->enabled);
	assert_true(agg_at(9)->enabled);
}

static void test_metered_limit_sum(void **state)
{
	start(ENT_FT_METERED);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->usage_limit = 100;
	struct ent_source *a = add(ENT_SRC_ADDON);
	a->usage_limit = 50;
	a->quantity = 3;
	assert_int_equal(agg_at(0)->limit, 100 + 150);
	assert_false(A.unlimited);

	/* Quantity < 1 is read as 1. */
	a->quantity = 0;
	assert_int_equal(agg_at(0)->limit, 150);
	a->quantity = -4;
	assert_int_equal(agg_at(0)->limit, 150);

	/* Only contributing (enabled, active) sources add up. */
	a->quantity = 3;
	a->enabled = false;
	assert_int_equal(agg_at(0)->limit, 100);
	a->enabled = true;
	a->active_from = 500;
	assert_int_equal(agg_at(499)->limit, 100);
	assert_int_equal(agg_at(500)->limit, 250);
}

static void test_metered_unlimited_any(void **state)
{
	start(ENT_FT_METERED);
	add(ENT_SRC_PLAN)->usage_limit = 100;
	struct ent_source *a = add(ENT_SRC_ADDON);
	a->unlimited = true;
	assert_true(agg_at(0)->unlimited);
	a->enabled = false;
	assert_false(agg_at(0)->unlimited);
}

static void test_limit_saturates(void **state)
{
	start(ENT_FT_METERED);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->usage_limit = INT64_MAX / 2 + 1;
	p->quantity = 2;
	assert_int_equal(agg_at(0)->limit, INT64_MAX);

	p->usage_limit = INT64_MAX - 10;
	p->quantity = 1;
	add(ENT_SRC_ADDON)->usage_limit = 11;
	assert_int_equal(agg_at(0)->limit, INT64_MAX);

	p->usage_limit = 3;
	p->quantity = INT64_MAX;
	assert_int_equal(agg_at(0)->limit, INT64_MAX);

	/* Exactly representable results are not clamped. */
	p->usage_limit = INT64_MAX - 11;
	p->quantity = 1;
	assert_int_equal(agg_at(0)->limit, INT64_MAX);
	p->usage_limit = INT64_MAX - 12;
	assert_int_equal(agg_at(0)->limit, INT64_MAX - 1);
}

static void test_soft_any(void **state)
{
	start(ENT_FT_METERED);
	add(ENT_SRC_PLAN)->usage_limit = 10;
	struct ent_source *a = add(ENT_SRC_ADDON);
	a->usage_limit = 5;
	assert_false(agg_at(0)->soft);
	a->soft = true;
	assert_true(agg_at(0)->soft);
	/* A soft source that does not contribute does not make the limit soft. */
	a->enabled = false;
	assert_false(agg_at(0)->soft);
}

static void test_static_union(void **state)
{
	static const char b1[] = "eu-west", b2[] = "eu-west"; /* equal content, distinct storage */
	static struct ent_str s1[3], s2[3], s3[1];
	s1[0] = ENT_STR_LIT("us-east");
	s1[1] = (struct ent_str){b1, 7};
	s1[2] = ENT_STR_LIT("us-east");
	s2[0] = (struct ent_str){b2, 7};
	s2[1] = ENT_STR_LIT("ap-south");
	s2[2] = ENT_STR_LIT("us-east");
	s3[0] = ENT_STR_LIT("hidden");

	start(ENT_FT_STATIC);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->n_static = 3;
	p->statics = s1;
	struct ent_source *a = add(ENT_SRC_ADDON);
	a->n_static = 3;
	a->statics = s2;
	struct ent_source *d = add(ENT_SRC_ADDON);
	d->enabled = false;
	d->n_static = 1;
	d->statics = s3;

	agg_at(0);
	assert_int_equal(A.n_static, 3);
	assert_str(A.statics[0], "us-east");
	assert_str(A.statics[1], "eu-west");
	assert_str(A.statics[2], "ap-south");
}

static void test_static_cap(void **state)
{
	static char buf[40][8];
	static struct ent_str vals[40];
	for (int i = 0; i < 40; i++) {
		snprintf(buf[i], sizeof(buf[i]), "v%02u", (unsigned)i % 100);
		vals[i] = ent_str_c(buf[i]);
	}
	start(ENT_FT_STATIC);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->n_static = 40;
	p->statics = vals;
	agg_at(0);
	assert_int_equal(A.n_static, ENT_MAX_STATIC);
	assert_str(A.statics[0], "v00");
	assert_str(A.statics[ENT_MAX_STATIC - 1], "v31");
}

/* ---- rule 4: privileges ---------------------------------------------------------------- */

static void test_priv_rules(void **state)
{
	/* Sources in array order: plan, addon, subscription, addon. */
	static struct ent_priv plan[5], addon[4], sub[2], addon2[2];
	plan[0] = (struct ent_priv){.code = ENT_STR_LIT("seats"), .i = 10};
	plan[1] = (struct ent_priv){.code = ENT_STR_LIT("sso"), .b = false};
	plan[2] = (struct ent_priv){.code = ENT_STR_LIT("tier"), .s = ENT_STR_LIT("basic")};
	plan[3] = (struct ent_priv){.code = ENT_STR_LIT("undeclared"), .i = 7};
	plan[4] = (struct ent_priv){.code = ENT_STR_LIT("region"), .s = ENT_STR_LIT("eu")};
	addon[0] = (struct ent_priv){.code = ENT_STR_LIT("seats"), .i = 25};
	addon[1] = (struct ent_priv){.code = ENT_STR_LIT("sso"), .b = true};
	addon[2] = (struct ent_priv){.code = ENT_STR_LIT("tier"), .s = ENT_STR_LIT("pro")};
	addon[3] = (struct ent_priv){.code = ENT_STR_LIT("color"), .s = ENT_STR_LIT("red")};
	sub[0] = (struct ent_priv){.code = ENT_STR_LIT("seats"), .i = 5};
	sub[1] = (struct ent_priv){.code = ENT_STR_LIT("region"), .s = ENT_STR_LIT("us")};
	addon2[0] = (struct ent_priv){.code = ENT_STR_LIT("color"), .s = ENT_STR_LIT("blue")};
	addon2[1] = (struct ent_priv){.code = ENT_STR_LIT("tier"), .s = ENT_STR_LIT("ent")};

	start(ENT_FT_BOOLEAN);
	/* Declaration order differs from every source's order on purpose. */
	declare("color", ENT_PT_SELECT);
	declare("tier", ENT_PT_STRING);
	declare("missing", ENT_PT_INTEGER);
	declare("seats", ENT_PT_INTEGER);
	declare("sso", ENT_PT_BOOLEAN);
	declare("region", ENT_PT_SELECT);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->n_privs = 5;
	p->privs = plan;
	struct ent_source *a = add(ENT_SRC_ADDON);
	a->n_privs = 4;
	a->privs = addon;
	struct ent_source *s = add(ENT_SRC_SUBSCRIPTION);
	s->n_privs = 2;
	s->privs = sub;
	struct ent_source *a2 = add(ENT_SRC_ADDON);
	a2->n_privs = 2;
	a2->privs = addon2;

	agg_at(0);
	static const char *const order[] = {"color", "tier", "seats", "sso", "region"};
	assert_int_equal(A.n_privs, 5); /* "missing" is carried by nobody, "undeclared" ignored */
	for (int i = 0; i < 5; i++)
		assert_str(A.privs[i].code, order[i]);
	assert_int_equal(A.privs[0].type, ENT_PT_SELECT);
	assert_str(A.privs[0].s, "red"); /* addon tie: the earlier addon wins */
	assert_int_equal(A.privs[1].type, ENT_PT_STRING);
	assert_str(A.privs[1].s, "pro"); /* addon > plan; tie with the later addon */
	assert_int_equal(A.privs[2].type, ENT_PT_INTEGER);
	assert_int_equal(A.privs[2].i, 25); /* max, not precedence */
	assert_int_equal(A.privs[3].type, ENT_PT_BOOLEAN);
	assert_true(A.privs[3].b);	/* OR */
	assert_str(A.privs[4].s, "us"); /* subscription > plan */
	assert_null(priv_of(&A, "undeclared"));
	assert_null(priv_of(&A, "missing"));

	/* A source that does not contribute does not carry its privileges. */
	a->enabled = false;
	agg_at(0);
	assert_int_equal(priv_of(&A, "seats")->i, 10);
	assert_false(priv_of(&A, "sso")->b);
	assert_str(priv_of(&A, "tier")->s, "ent");
	assert_str(priv_of(&A, "color")->s, "blue");
}

/* ---- rule 5: overrides ----------------------------------------------------------------- */

static void test_override_enabled(void **state)
{
	start(ENT_FT_BOOLEAN);
	add(ENT_SRC_PLAN);
	struct ent_source *o = add_override(ENT_SETS_ENABLED);
	o->enabled = false;
	o->expires_at = 5000;
	agg_at(0);
	assert_false(A.enabled);
	assert_int_equal(A.state, ENT_R_DISABLED_BY_OVERRIDE);
	assert_true(A.override_applied);
	assert_str(A.override_reason, "support ticket 42");
	assert_int_equal(A.override_expires_at, 5000);
	/* Exact in time: past its expiry the override never applies. */
	agg_at(5000);
	assert_true(A.enabled);
	assert_false(A.override_applied);
	assert_int_equal(A.override_reason.len, 0);
}

static void test_override_limit(void **state)
{
	start(ENT_FT_METERED);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->usage_limit = 100;
	p->quantity = 2;
	p->unlimited = true;
	p->soft = true;
	struct ent_source *o = add_override(ENT_SETS_LIMIT);
	o->usage_limit = 7;
	o->quantity = 10; /* no multiplier for overrides */
	agg_at(0);
	assert_true(A.enabled);
	assert_int_equal(A.limit, 7);
	assert_false(A.unlimited);
	assert_true(A.soft); /* soft stays from the base */

	o->sets = ENT_SETS_UNLIMITED;
	p->unlimited = false;
	agg_at(0);
	assert_true(A.unlimited);
	assert_int_equal(A.limit, 200);

	/* LIMIT | UNLIMITED: unlimited wins. */
	o->sets = ENT_SETS_LIMIT | ENT_SETS_UNLIMITED;
	assert_true(agg_at(0)->unlimited);
	assert_int_equal(A.limit, 7);
}

static void test_override_quota_enables(void **state)
{
	static const uint32_t sets[] = {ENT_SETS_LIMIT, ENT_SETS_UNLIMITED};
	for (size_t i = 0; i < 2; i++) {
		start(ENT_FT_METERED);
		struct ent_source *p = add(ENT_SRC_PLAN);
		p->enabled = false;
		struct ent_source *o = add_override(sets[i]);
		o->enabled = false; /* ignored: ENABLED is not in sets */
		o->usage_limit = 3;
		if (!agg_at(0)->enabled || A.state != ENT_R_ENTITLED)
			fail_msg("sets %u did not enable", sets[i]);
		/* An explicit ENABLED=false still wins over the quota. */
		o->sets |= ENT_SETS_ENABLED;
		if (agg_at(0)->enabled || A.state != ENT_R_DISABLED_BY_OVERRIDE)
			fail_msg("sets %u|ENABLED=false enabled", sets[i]);
	}
}

static void test_override_static_privs(void **state)
{
	static struct ent_str base_st[2], ovr_st[2];
	base_st[0] = ENT_STR_LIT("a");
	base_st[1] = ENT_STR_LIT("b");
	ovr_st[0] = ENT_STR_LIT("z");
	ovr_st[1] = ENT_STR_LIT("z");
	static struct ent_priv base_pv[2], ovr_pv[3];
	base_pv[0] = (struct ent_priv){.code = ENT_STR_LIT("seats"), .i = 50};
	base_pv[1] = (struct ent_priv){.code = ENT_STR_LIT("sso"), .b = true};
	ovr_pv[0] = (struct ent_priv){.code = ENT_STR_LIT("seats"), .i = 3}; /* lower: still wins */
	ovr_pv[1] = (struct ent_priv){.code = ENT_STR_LIT("tier"), .s = ENT_STR_LIT("vip")};
	ovr_pv[2] = (struct ent_priv){.code = ENT_STR_LIT("nope"), .i = 1};

	start(ENT_FT_STATIC);
	declare("seats", ENT_PT_INTEGER);
	declare("sso", ENT_PT_BOOLEAN);
	declare("tier", ENT_PT_STRING);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->n_static = 2;
	p->statics = base_st;
	p->n_privs = 2;
	p->privs = base_pv;
	struct ent_source *o = add_override(ENT_SETS_STATIC);
	o->n_static = 2;
	o->statics = ovr_st;
	o->n_privs = 3;
	o->privs = ovr_pv;

	/* STATIC alone: privileges untouched. */
	agg_at(0);
	assert_int_equal(A.n_static, 1);
	assert_str(A.statics[0], "z");
	assert_int_equal(A.n_privs, 2);
	assert_int_equal(priv_of(&A, "seats")->i, 50);

	/* PRIVS alone: statics untouched, carried privileges replaced, others kept, order kept. */
	o->sets = ENT_SETS_PRIVS;
	agg_at(0);
	assert_int_equal(A.n_static, 2);
	assert_int_equal(A.n_privs, 3);
	assert_str(A.privs[0].code, "seats");
	assert_int_equal(A.privs[0].i, 3);
	assert_str(A.privs[1].code, "sso");
	assert_true(A.privs[1].b);
	assert_str(A.privs[2].code, "tier");
	assert_int_equal(A.privs[2].type, ENT_PT_STRING);
	assert_str(A.privs[2].s, "vip");
	assert_null(priv_of(&A, "nope"));
	assert_true(A.enabled); /* PRIVS/STATIC do not touch enabled */
}

static void test_override_alone(void **state)
{
	start(ENT_FT_METERED);
	struct ent_source *o = add_override(ENT_SETS_ENABLED | ENT_SETS_LIMIT);
	o->usage_limit = 40;
	o->active_from = 100;
	o->expires_at = 200;
	agg_at(150);
	assert_true(A.enabled);
	assert_int_equal(A.limit, 40);
	assert_true(A.override_applied);
	assert_int_equal(A.override_expires_at, 200);
	assert_int_equal(A.from, 100);
	assert_int_equal(A.to, 200);
	assert_false(agg_at(200)->enabled);
	assert_int_equal(A.state, ENT_R_EXPIRED);
	assert_false(agg_at(99)->enabled);
	assert_int_equal(A.state, ENT_R_NOT_YET_ACTIVE);
}

static void test_override_first_active_wins(void **state)
{
	start(ENT_FT_METERED);
	add(ENT_SRC_PLAN)->usage_limit = 10;
	struct ent_source *o1 = add_override(ENT_SETS_LIMIT);
	o1->usage_limit = 1;
	o1->expires_at = 100;
	o1->reason = ENT_STR_LIT("first");
	struct ent_source *o2 = add_override(ENT_SETS_LIMIT);
	o2->usage_limit = 2;
	o2->reason = ENT_STR_LIT("second");
	agg_at(50);
	assert_int_equal(A.limit, 1);
	assert_str(A.override_reason, "first");
	/* The first is no longer active: the next active one applies. */
	agg_at(100);
	assert_int_equal(A.limit, 2);
	assert_str(A.override_reason, "second");
}

/* ---- rule 6: disabled results and their reasons ---------------------------------------- */

static void test_disabled_clears_values(void **state)
{
	static struct ent_str st[1];
	static struct ent_priv pv[1];
	st[0] = ENT_STR_LIT("x");
	pv[0] = (struct ent_priv){.code = ENT_STR_LIT("seats"), .i = 9};
	start(ENT_FT_METERED);
	declare("seats", ENT_PT_INTEGER);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->usage_limit = 10;
	p->unlimited = true;
	p->soft = true;
	p->n_static = 1;
	p->statics = st;
	p->n_privs = 1;
	p->privs = pv;
	agg_at(0);
	assert_true(A.enabled && A.unlimited && A.soft && A.limit == 10);
	assert_int_equal(A.n_static, 1);
	assert_int_equal(A.n_privs, 1);
	add_override(ENT_SETS_ENABLED | ENT_SETS_STATIC | ENT_SETS_PRIVS)->enabled = false;
	agg_at(0);
	assert_false(A.enabled);
	assert_int_equal(A.limit, 0);
	assert_false(A.unlimited);
	assert_false(A.soft);
	assert_int_equal(A.n_static, 0);
	assert_int_equal(A.n_privs, 0);
	assert_true(A.override_applied); /* why it is disabled stays visible */
}

static void test_state_reasons(void **state)
{
	/* Each row: up to two sources, evaluated at t = 1000. */
	static const struct {
		const char *name;
		uint8_t type[2];
		bool enabled[2];
		uint32_t sets[2];
		int64_t from[2], exp[2];
		uint8_t want;
	} rows[] = {
		{"no sources", {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, ENT_R_NOT_ENTITLED},
		{"plan disabled",
		 {ENT_SRC_PLAN, 0},
		 {false, 0},
		 {0, 0},
		 {0, 0},
		 {0, 0},
		 ENT_R_NOT_ENTITLED},
		{"plan later",
		 {ENT_SRC_PLAN, 0},
		 {true, 0},
		 {0, 0},
		 {2000, 0},
		 {0, 0},
		 ENT_R_NOT_YET_ACTIVE},
		{"plan expired",
		 {ENT_SRC_PLAN, 0},
		 {true, 0},
		 {0, 0},
		 {0, 0},
		 {1000, 0},
		 ENT_R_EXPIRED},
		{"disabled plan later",
		 {ENT_SRC_PLAN, 0},
		 {false, 0},
		 {0, 0},
		 {2000, 0},
		 {0, 0},
		 ENT_R_NOT_ENTITLED},
		{"later beats expired",
		 {ENT_SRC_PLAN, ENT_SRC_ADDON},
		 {true, true},
		 {0, 0},
		 {0, 1500},
		 {500, 0},
		 ENT_R_NOT_YET_ACTIVE},
		{"override off",
		 {ENT_SRC_PLAN, ENT_SRC_OVERRIDE},
		 {true, false},
		 {0, ENT_SETS_ENABLED},
		 {0, 0},
		 {0, 0},
		 ENT_R_DISABLED_BY_OVERRIDE},
		{"override off beats later",
		 {ENT_SRC_PLAN, ENT_SRC_OVERRIDE},
		 {true, false},
		 {0, ENT_SETS_ENABLED},
		 {2000, 0},
		 {0, 0},
		 ENT_R_DISABLED_BY_OVERRIDE},
		{"quota override later",
		 {ENT_SRC_OVERRIDE, 0},
		 {false, 0},
		 {ENT_SETS_LIMIT, 0},
		 {2000, 0},
		 {0, 0},
		 ENT_R_NOT_YET_ACTIVE},
		{"unlimited override expired",
		 {ENT_SRC_OVERRIDE, 0},
		 {false, 0},
		 {ENT_SETS_UNLIMITED, 0},
		 {0, 0},
		 {900, 0},
		 ENT_R_EXPIRED},
		{"enabling override expired",
		 {ENT_SRC_OVERRIDE, 0},
		 {true, 0},
		 {ENT_SETS_ENABLED, 0},
		 {0, 0},
		 {900, 0},
		 ENT_R_EXPIRED},
		{"static-only override later",
		 {ENT_SRC_OVERRIDE, 0},
		 {true, 0},
		 {ENT_SETS_STATIC, 0},
		 {2000, 0},
		 {0, 0},
		 ENT_R_NOT_ENTITLED},
		{"expired disabling override",
		 {ENT_SRC_PLAN, ENT_SRC_OVERRIDE},
		 {false, false},
		 {0, ENT_SETS_ENABLED},
		 {0, 0},
		 {0, 900},
		 ENT_R_NOT_ENTITLED},
		{"enabled", {ENT_SRC_PLAN, 0}, {true, 0}, {0, 0}, {0, 0}, {0, 0}, ENT_R_ENTITLED},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		start(ENT_FT_BOOLEAN);
		for (int k = 0; k < 2; k++) {
			if (!rows[i].type[k])
				continue;
			struct ent_source *s = add(rows[i].type[k]);
			s->enabled = rows[i].enabled[k];
			s->sets = rows[i].sets[k];
			s->active_from = rows[i].from[k];
			s->expires_at = rows[i].exp[k];
		}
		agg_at(1000);
		if (A.state != rows[i].want)
			fail_msg("%s: state %s, want %s", rows[i].name,
				 ent_model_reason_name(A.state),
				 ent_model_reason_name(rows[i].want));
		if (A.enabled != (rows[i].want == ENT_R_ENTITLED))
			fail_msg("%s: enabled %d", rows[i].name, A.enabled);
	}
}

/*
 * Rule 6b, cleanup tombstone: sources that ended and were removed leave ended_at, which still
 * explains a "no" as EXPIRED from that instant on, and is an edge like a window's. An active
 * grant wins; NOT_YET_ACTIVE and DISABLED_BY_OVERRIDE keep their precedence.
 */
static void test_state_ended(void **state)
{
	/* Nothing left but the tombstone: the answer the removed source gave. */
	start(ENT_FT_METERED);
	S.ended_at = 1000;
	assert_int_equal(agg_at(1000)->state, ENT_R_EXPIRED);
	assert_false(A.enabled);
	assert_int_equal(agg_at(5000)->state, ENT_R_EXPIRED);
	/* Before it: no grant had ended yet. */
	assert_int_equal(agg_at(999)->state, ENT_R_NOT_ENTITLED);
	assert_true(A.from == ENT_T_MIN && A.to == 1000);
	assert_true(agg_at(1000)->from == 1000 && A.to == ENT_T_MAX);
	/* Segments: the tombstone is an edge; past it the list is the EXPIRED segment alone. */
	int n = ent_model_segments(&S, 0, SEG);
	assert_int_equal(n, 2);
	assert_int_equal(SEG[0].state, ENT_R_NOT_ENTITLED);
	assert_int_equal(SEG[1].state, ENT_R_EXPIRED);
	assert_true(SEG[1].from == 1000);
	n = ent_model_segments(&S, 1000, SEG);
	assert_int_equal(n, 1);
	assert_true(SEG[0].from == ENT_T_MIN && SEG[0].to == ENT_T_MAX);
	assert_int_equal(SEG[0].state, ENT_R_EXPIRED);

	/* A new active grant wins over the tombstone. */
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->usage_limit = 7;
	assert_int_equal(agg_at(2000)->state, ENT_R_ENTITLED);
	assert_int_equal(A.limit, 7);
	/* One that starts later explains the "no" first. */
	p->active_from = 3000;
	assert_int_equal(agg_at(2000)->state, ENT_R_NOT_YET_ACTIVE);
	assert_int_equal(agg_at(3000)->state, ENT_R_ENTITLED);
	/* A disabled source does not hide it. */
	p->active_from = 0;
	p->enabled = false;
	assert_int_equal(agg_at(2000)->state, ENT_R_EXPIRED);
	/* An override switching the feature off says so itself. */
	struct ent_source *o = add_override(ENT_SETS_ENABLED);
	o->enabled = false;
	assert_int_equal(agg_at(2000)->state, ENT_R_DISABLED_BY_OVERRIDE);
	/* 0 is no tombstone. */
	start(ENT_FT_BOOLEAN);
	S.ended_at = 0;
	assert_int_equal(agg_at(2000)->state, ENT_R_NOT_ENTITLED);
	assert_true(A.from == ENT_T_MIN && A.to == ENT_T_MAX);
}

/* ---- rule 7: window edges -------------------------------------------------------------- */

static void test_aggregate_window_edges(void **state)
{
	start(ENT_FT_BOOLEAN);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->active_from = -500;
	p->expires_at = 3000;
	struct ent_source *d = add(ENT_SRC_ADDON);
	d->enabled = false; /* edges count even when the source changes nothing */
	d->active_from = 1000;
	d->expires_at = 2000;
	static const struct {
		int64_t t, from, to;
	} rows[] = {
		{-1000, ENT_T_MIN, -500}, {-500, -500, 1000},		{0, -500, 1000},
		{999, -500, 1000},	  {1000, 1000, 2000},		{2500, 2000, 3000},
		{3000, 3000, ENT_T_MAX},  {INT64_MAX, 3000, ENT_T_MAX},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		agg_at(rows[i].t);
		if (A.from != rows[i].from || A.to != rows[i].to)
			fail_msg("row %zu: [%lld, %lld)", i, (long long)A.from, (long long)A.to);
	}
	start(ENT_FT_BOOLEAN);
	add(ENT_SRC_PLAN);
	agg_at(123);
	assert_true(A.from == ENT_T_MIN && A.to == ENT_T_MAX);
}

static void test_aggregate_einval(void **state)
{
	start(ENT_FT_BOOLEAN);
	add(ENT_SRC_PLAN);
	S.n = ENT_MAX_SOURCES + 1;
	assert_int_equal(ent_model_aggregate(&S, 0, &A), -ENT_EINVAL);
	static struct ent_agg segs[ENT_MAX_SEGMENTS];
	assert_int_equal(ent_model_segments(&S, 0, segs), -ENT_EINVAL);
	S.n = 1;
	S.feature.n_privs = ENT_MAX_PRIVS + 1;
	assert_int_equal(ent_model_aggregate(&S, 0, &A), -ENT_EINVAL);
	S.feature.n_privs = 0;
	S.src[0].n_static = 2; /* with a NULL array */
	assert_int_equal(ent_model_aggregate(&S, 0, &A), -ENT_EINVAL);
	S.src[0].n_static = 0;
	assert_int_equal(ent_model_aggregate(&S, 0, &A), 0);
}

/* ---- rule 8: segments ------------------------------------------------------------------ */

/* Segments cover [ENT_T_MIN, ENT_T_MAX) without gaps, and neighbours differ. */
static void assert_cover(int n)
{
	assert_true(n >= 1 && n <= ENT_MAX_SEGMENTS);
	assert_true(SEG[0].from == ENT_T_MIN);
	assert_true(SEG[n - 1].to == ENT_T_MAX);
	for (int i = 0; i + 1 < n; i++) {
		assert_true(SEG[i].to == SEG[i + 1].from);
		assert_true(SEG[i].from < SEG[i].to);
	}
}

static void test_segments_basic(void **state)
{
	start(ENT_FT_METERED);
	add(ENT_SRC_PLAN)->usage_limit = 10;
	struct ent_source *o = add_override(ENT_SETS_LIMIT);
	o->usage_limit = 99;
	o->active_from = 100;
	o->expires_at = 200;
	int n = ent_model_segments(&S, 0, SEG);
	assert_int_equal(n, 3);
	assert_cover(n);
	assert_int_equal(SEG[0].to, 100);
	assert_int_equal(SEG[0].limit, 10);
	assert_false(SEG[0].override_applied);
	assert_int_equal(SEG[1].to, 200);
	assert_int_equal(SEG[1].limit, 99);
	assert_true(SEG[1].override_applied);
	assert_int_equal(SEG[2].limit, 10);

	/* Every segment equals the aggregate at any instant inside it. */
	static const int64_t probes[] = {-7, 0, 99, 100, 150, 199, 200, 1000000};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		int64_t t = probes[i];
		int k = 0;
		while (!(SEG[k].from <= t && t < SEG[k].to))
			k++;
		agg_at(t);
		if (A.limit != SEG[k].limit || A.override_applied != SEG[k].override_applied)
			fail_msg("probe %lld disagrees with segment %d", (long long)t, k);
	}
}

static void test_segments_first_interval(void **state)
{
	/* The open-ended first interval is evaluated just before the first edge. */
	start(ENT_FT_BOOLEAN);
	struct ent_source *p = add(ENT_SRC_PLAN);
	p->expires_at = 500;
	int n = ent_model_segments(&S, 0, SEG);
	assert_int_equal(n, 2);
	assert_cover(n);
	assert_true(SEG[0].enabled);
	assert_int_equal(SEG[0].to, 500);
	assert_false(SEG[1].enabled);
	assert_int_equal(SEG[1].state, ENT_R_EXPIRED);

	/* No edges at all: one segment for ever. */
	p->expires_at = 0;
	n = ent_model_segments(&S, 0, SEG);
	assert_int_equal(n, 1);
	assert_cover(n);
	assert_true(SEG[0].enabled);
}

static void test_segments_merge(void **state)
{
	static const char r1[] = "same reason", r2[] = "same reason";
	start(ENT_FT_BOOLEAN);
	add(ENT_SRC_PLAN);
	/* A disabled add-on's window creates edges but no change: all merge into one. */
	struct ent_source *d = add(ENT_SRC_ADDON);
	d->enabled = false;
	d->active_from = 100;
	d->expires_at = 200;
	int n = ent_model_segments(&S, ENT_T_MIN, SEG);
	assert_int_equal(n, 1);
	assert_cover(n);

	/*
	 * Two overrides with equal content in distinct storage: o2 applies on [50, 100), then o1
	 * (first in the array) on [100, 300). Same reason text, same expiry: one segment.
	 */
	start(ENT_FT_BOOLEAN);
	add(ENT_SRC_PLAN);
	struct ent_source *o1 = add_override(ENT_SETS_ENABLED);
	o1->enabled = false;
	o1->active_from = 100;
	o1->expires_at = 300;
	o1->reason = (struct ent_str){r1, sizeof(r1) - 1};
	struct ent_source *o2 = add_override(ENT_SETS_ENABLED);
	o2->enabled = false;
	o2->active_from = 50;
	o2->expires_at = 300;
	o2->reason = (struct ent_str){r2, sizeof(r2) - 1};
	n = ent_model_segments(&S, ENT_T_MIN, SEG);
	assert_int_equal(n, 3);
	assert_cover(n);
	assert_int_equal(SEG[1].from, 50);
	assert_int_equal(SEG[1].to, 300);
	assert_int_equal(SEG[1].state, ENT_R_DISABLED_BY_OVERRIDE);
	assert_true(SEG[2].enabled);

	/* A different reason text does not merge... */
	o2->reason = ENT_STR_LIT("other reason");
	n = ent_model_segments(&S, ENT_T_MIN, SEG);
	assert_int_equal(n, 4);
	assert_cover(n);
	assert_str(SEG[1].override_reason, "other reason");
	assert_str(SEG[2].override_reason, "same reason");

	/* ...nor does a different expiry, which a check can see. */
	o2->reason = (struct ent_str){r2, sizeof(r2) - 1};
	o2->expires_at = 400;
	n = ent_model_segments(&S, ENT_T_MIN, SEG);
	assert_int_equal(n, 5); /* [MIN,50) [50,100) [100,300) [300,400) [400,MAX) */
	assert_cover(n);
	assert_int_equal(SEG[1].override_expires_at, 400);
	assert_int_equal(SEG[2].override_expires_at, 300);
	assert_int_equal(SEG[3].from, 300);
	assert_int_equal(SEG[3].override_expires_at, 400);
	assert_true(SEG[4].enabled);
	assert_int_equal(SEG[3].state, ENT_R_DISABLED_BY_OVERRIDE);
}

static void test_segments_drop_past(void **state)
{
	start(ENT_FT_METERED);
	add(ENT_SRC_PLAN)->usage_limit = 10;
	struct ent_source *o = add_override(ENT_SETS_LIMIT);
	o->usage_limit = 99;
	o->active_from = 100;
	o->expires_at = 200;

	int n = ent_model_segments(&S, 150, SEG);
	assert_int_equal(n, 2);
	assert_cover(n);
	assert_int_equal(SEG[0].limit, 99); /* [MIN,200): the one containing now, widened */
	assert_int_equal(SEG[0].to, 200);

	/* A segment ending exactly at now is dropped (its `to` <= now). */
	n = ent_model_segments(&S, 200, SEG);
	assert_int_equal(n, 1);
	assert_cover(n);
	assert_int_equal(SEG[0].limit, 10);

	n = ent_model_segments(&S, 199, SEG);
	assert_int_equal(n, 2);
}

static void test_segments_cap(void **state)
{
	/* 40 back-to-back overrides with distinct limits: 82 distinct intervals, all kept
	 * (the cap holds every interval the sources can make, so nothing is folded). */
	start(ENT_FT_METERED);
	add(ENT_SRC_PLAN)->usage_limit = 1;
	for (int i = 0; i < 40; i++) {
		struct ent_source *o = add_override(ENT_SETS_LIMIT);
		o->usage_limit = 100 + i;
		o->active_from = 1000 + i * 10;
		o->expires_at = 1000 + i * 10 + 10;
	}
	int n = ent_model_segments(&S, 0, SEG);
	assert_int_equal(n, 42); /* before, 40 overrides, after (back-to-back edges are shared) */
	assert_cover(n);
	assert_int_equal(SEG[0].limit, 1);
	for (int i = 0; i < 40; i++)
		assert_int_equal(SEG[1 + i].limit, 100 + i);
	assert_int_equal(SEG[41].from, 1000 + 40 * 10);
	assert_int_equal(SEG[41].limit, 1);

	/* Later, the list rolls forward. */
	n = ent_model_segments(&S, 1000 + 30 * 10, SEG);
	assert_int_equal(n, 11);
	assert_cover(n);
	assert_int_equal(SEG[0].limit, 130);
	assert_int_equal(SEG[9].limit, 139);
	assert_int_equal(SEG[10].limit, 1);

	/* The most sources with the most distinct edges still fit: 2 x 64 + 1 edges. */
	start(ENT_FT_METERED);
	for (int i = 0; i < ENT_MAX_SOURCES; i++) {
		struct ent_source *p = add(ENT_SRC_PLAN);
		p->usage_limit = 1 + i;
		p->active_from = 1000 + i * 10;
		p->expires_at = 1000 + 10000 + i * 7;
	}
	S.ended_at = 99;
	n = ent_model_segments(&S, 0, SEG);
	assert_true(n > 32 && n <= ENT_MAX_SEGMENTS); /* more than the old cap, none folded */
	assert_cover(n);
	assert_int_equal(SEG[n - 1].to, ENT_T_MAX);
	for (int i = 0; i < n; i++) {
		struct ent_agg one;
		assert_int_equal(
			ent_model_aggregate(
				&S, SEG[i].to == ENT_T_MAX ? SEG[i].from : SEG[i].to - 1, &one),
			0);
		assert_int_equal(one.limit, SEG[i].limit); /* each segment exact to its end */
	}
}

/* ---- rule 9: usage shape --------------------------------------------------------------- */

static void test_usage_shape(void **state)
{
	uint8_t r;
	int64_t anchor;
	start(ENT_FT_METERED);
	ent_model_usage_shape(&S, 0, &r, &anchor);
	assert_int_equal(r, ENT_RESET_NEVER);
	assert_int_equal(anchor, 0);

	struct ent_source *p = add(ENT_SRC_PLAN);
	p->reset = ENT_RESET_DAILY;
	p->billing_anchor = 11;
	struct ent_source *s1 = add(ENT_SRC_SUBSCRIPTION);
	s1->reset = ENT_RESET_MONTHLY;
	s1->billing_anchor = 0;
	s1->active_from = 500;
	struct ent_source *s2 = add(ENT_SRC_SUBSCRIPTION);
	s2->reset = ENT_RESET_ANNUAL;
	s2->billing_anchor = 33;
	struct ent_source *a = add(ENT_SRC_ADDON);
	a->reset = ENT_RESET_WEEKLY;
	a->billing_anchor = 44;
	struct ent_source *o = add_override(ENT_SETS_LIMIT);
	o->reset = ENT_RESET_QUARTERLY;
	o->billing_anchor = 55;

	/* Subscription > addon > plan; ties: first; anchor 0 reads as active_from. */
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_MONTHLY);
	assert_int_equal(anchor, 500);
	/* Before the first subscription is active, the second one is the best. */
	ent_model_usage_shape(&S, 100, &r, &anchor);
	assert_int_equal(r, ENT_RESET_ANNUAL);
	assert_int_equal(anchor, 33);
	/* Disabled sources do not count; the override never does. */
	s1->enabled = false;
	s2->enabled = false;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_WEEKLY);
	assert_int_equal(anchor, 44);
	a->expires_at = 600;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_DAILY);
	assert_int_equal(anchor, 11);
	p->enabled = false;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_NEVER);
	assert_int_equal(anchor, 0);
	/* UNSPECIFIED names no period: with no source naming one, NEVER (which has no anchor). */
	p->enabled = true;
	p->reset = ENT_RESET_UNSPECIFIED;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_NEVER);
	assert_int_equal(anchor, 0);
	/* An add-on that names no period does not outrank a plan that names one (issue 16.3). */
	p->reset = ENT_RESET_MONTHLY;
	a->expires_at = 0;
	a->reset = ENT_RESET_UNSPECIFIED;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_MONTHLY);
	assert_int_equal(anchor, 11);
	/* ... but one that names NEVER does: a named period wins by precedence. */
	a->reset = ENT_RESET_NEVER;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_NEVER);
	assert_int_equal(anchor, 0);
	/* The aggregate carries the same shape. */
	struct ent_agg g;
	assert_int_equal(ent_model_aggregate(&S, 600, &g), 0);
	assert_int_equal(g.reset, ENT_RESET_NEVER);
	/* Not a metered feature: no usage period. */
	p->reset = ENT_RESET_DAILY;
	S.feature.type = ENT_FT_BOOLEAN;
	ent_model_usage_shape(&S, 600, &r, &anchor);
	assert_int_equal(r, ENT_RESET_NEVER);
	assert_int_equal(anchor, 0);
}

/* ---- rule 10: periods ------------------------------------------------------------------ */

static void test_period_table(void **state)
{
	static const struct {
		uint8_t reset;
		const char *anchor, *t, *start, *end;
	} rows[] = {
		/* fixed lengths, including instants before the anchor (negative k) */
		{ENT_RESET_DAILY, "2024-01-01T06:00:00Z", "2024-01-01T06:00:00Z",
		 "2024-01-01T06:00:00Z", "2024-01-02T06:00:00Z"},
		{ENT_RESET_DAILY, "2024-01-01T06:00:00Z", "2024-01-01T05:59:59.999Z",
		 "2023-12-31T06:00:00Z", "2024-01-01T06:00:00Z"},
		{ENT_RESET_DAILY, "2024-01-01T06:00:00Z", "2024-03-10T23:00:00Z",
		 "2024-03-10T06:00:00Z", "2024-03-11T06:00:00Z"},
		{ENT_RESET_WEEKLY, "1970-01-01T00:00:00Z", "1970-01-10T00:00:00Z",
		 "1970-01-08T00:00:00Z", "1970-01-15T00:00:00Z"},
		{ENT_RESET_WEEKLY, "2024-01-03T00:00:00Z", "2023-12-20T12:00:00Z",
		 "2023-12-20T00:00:00Z", "2023-12-27T00:00:00Z"},
		/* monthly from Jan 31: clamp from the anchor's day every time */
		{ENT_RESET_MONTHLY, "2023-01-31T10:00:00Z", "2023-02-15T00:00:00Z",
		 "2023-01-31T10:00:00Z", "2023-02-28T10:00:00Z"},
		{ENT_RESET_MONTHLY, "2023-01-31T10:00:00Z", "2023-02-28T09:59:59.999Z",
		 "2023-01-31T10:00:00Z", "2023-02-28T10:00:00Z"},
		{ENT_RESET_MONTHLY, "2023-01-31T10:00:00Z", "2023-02-28T10:00:00Z",
		 "2023-02-28T10:00:00Z", "2023-03-31T10:00:00Z"},
		{ENT_RESET_MONTHLY, "2023-01-31T10:00:00Z", "2023-04-30T11:00:00Z",
		 "2023-04-30T10:00:00Z", "2023-05-31T10:00:00Z"},
		/* leap year */
		{ENT_RESET_MONTHLY, "2024-01-31T10:00:00Z", "2024-02-29T12:00:00Z",
		 "2024-02-29T10:00:00Z", "2024-03-31T10:00:00Z"},
		{ENT_RESET_MONTHLY, "2024-01-31T10:00:00Z", "2024-02-29T09:00:00Z",
		 "2024-01-31T10:00:00Z", "2024-02-29T10:00:00Z"},
		/* negative k, across a year boundary */
		{ENT_RESET_MONTHLY, "2023-03-31T00:00:00Z", "2023-02-10T00:00:00Z",
		 "2023-01-31T00:00:00Z", "2023-02-28T00:00:00Z"},
		{ENT_RESET_MONTHLY, "2023-03-31T00:00:00Z", "2022-12-31T00:00:00Z",
		 "2022-12-31T00:00:00Z", "2023-01-31T00:00:00Z"},
		{ENT_RESET_MONTHLY, "2023-03-31T00:00:00Z", "2022-12-30T23:59:59.999Z",
		 "2022-11-30T00:00:00Z", "2022-12-31T00:00:00Z"},
		/* anchor 0 is the epoch; before it */
		{ENT_RESET_MONTHLY, "1970-01-01T00:00:00Z", "1969-12-15T00:00:00Z",
		 "1969-12-01T00:00:00Z", "1970-01-01T00:00:00Z"},
		/* quarterly, half-yearly, annual */
		{ENT_RESET_QUARTERLY, "2023-11-30T00:00:00Z", "2024-03-01T00:00:00Z",
		 "2024-02-29T00:00:00Z", "2024-05-30T00:00:00Z"},
		{ENT_RESET_QUARTERLY, "2023-11-30T00:00:00Z", "2023-10-01T00:00:00Z",
		 "2023-08-30T00:00:00Z", "2023-11-30T00:00:00Z"},
		{ENT_RESET_HALF_YEARLY, "2023-08-31T00:00:00Z", "2024-03-01T00:00:00Z",
		 "2024-02-29T00:00:00Z", "2024-08-31T00:00:00Z"},
		{ENT_RESET_ANNUAL, "2024-02-29T08:00:00Z", "2025-03-01T00:00:00Z",
		 "2025-02-28T08:00:00Z", "2026-02-28T08:00:00Z"},
		{ENT_RESET_ANNUAL, "2024-02-29T08:00:00Z", "2028-02-29T08:00:00Z",
		 "2028-02-29T08:00:00Z", "2029-02-28T08:00:00Z"},
		{ENT_RESET_ANNUAL, "2024-02-29T08:00:00Z", "2023-06-01T00:00:00Z",
		 "2023-02-28T08:00:00Z", "2024-02-29T08:00:00Z"},
		{ENT_RESET_ANNUAL, "2000-02-29T00:00:00Z", "2100-03-01T00:00:00Z",
		 "2100-02-28T00:00:00Z", "2101-02-28T00:00:00Z"}, /* 2100 is not a leap year */
	};
	char b1[40], b2[40];
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int64_t s, e;
		ent_model_period(rows[i].reset, T(rows[i].anchor), T(rows[i].t), &s, &e);
		if (s != T(rows[i].start) || e != T(rows[i].end))
			fail_msg("row %zu (%s t=%s): got [%s, %s)", i,
				 ent_model_reset_name(rows[i].reset), rows[i].t,
				 ent_time_fmt(s, b1, sizeof(b1)), ent_time_fmt(e, b2, sizeof(b2)));
	}
}

static void test_period_never(void **state)
{
	int64_t s, e;
	/* One period for ever whatever the anchor, so anchors never split a NEVER counter. */
	ent_model_period(ENT_RESET_NEVER, 777, 5, &s, &e);
	assert_true(s == ENT_T_MIN);
	assert_int_equal(e, 0);
	ent_model_period(ENT_RESET_UNSPECIFIED, 0, 5, &s, &e);
	assert_true(s == ENT_T_MIN);
	assert_int_equal(e, 0);
	ent_model_period(ENT_RESET_NEVER, 0, 5, &s, &e);
	assert_true(s == ENT_T_MIN);
	assert_int_equal(e, 0);
}

/* Properties over three years of instants: t is inside its period, periods tile time. */
static void test_period_properties(void **state)
{
	static const uint8_t resets[] = {ENT_RESET_DAILY,	ENT_RESET_WEEKLY,
					 ENT_RESET_MONTHLY,	ENT_RESET_QUARTERLY,
					 ENT_RESET_HALF_YEARLY, ENT_RESET_ANNUAL};
	const int64_t anchor = T("2024-01-31T23:30:00Z");
	for (size_t r = 0; r < sizeof(resets) / sizeof(resets[0]); r++) {
		for (int64_t t = T("2022-06-01T00:00:00Z"); t < T("2026-06-01T00:00:00Z");
		     t += 7 * 3600 * 1000 + 1234) {
			int64_t s, e, s2, e2;
			ent_model_period(resets[r], anchor, t, &s, &e);
			if (!(s <= t && t < e))
				fail_msg("%s: t=%lld outside [%lld, %lld)",
					 ent_model_reset_name(resets[r]), (long long)t,
					 (long long)s, (long long)e);
			ent_model_period(resets[r], anchor, e, &s2, &e2);
			assert_true(s2 == e);
			ent_model_period(resets[r], anchor, e - 1, &s2, &e2);
			assert_true(s2 == s && e2 == e);
		}
	}
	/* Extreme instants give ordered, saturated bounds instead of overflowing. */
	static const int64_t ext[] = {ENT_T_MIN, ENT_T_MIN + 1, ENT_T_MAX - 1, ENT_T_MAX};
	for (size_t r = 0; r < sizeof(resets) / sizeof(resets[0]); r++) {
		for (size_t k = 0; k < 4; k++) {
			int64_t s, e;
			ent_model_period(resets[r], anchor, ext[k], &s, &e);
			assert_true(s <= ext[k] && s < e);
			/* and extreme anchors, far before or after t */
			ent_model_period(resets[r], ext[k], anchor, &s, &e);
			assert_true(s <= anchor && anchor < e);
		}
	}
}

/* ---- rule 11: decide ------------------------------------------------------------------- */

static struct ent_agg seg_enabled(int64_t limit, bool unlimited, bool soft)
{
	struct ent_agg g;
	memset(&g, 0, sizeof(g));
	g.from = ENT_T_MIN;
	g.to = ENT_T_MAX;
	g.state = ENT_R_ENTITLED;
	g.enabled = true;
	g.limit = limit;
	g.unlimited = unlimited;
	g.soft = soft;
	return g;
}

static void test_decide_not_metered(void **state)
{
	struct ent_agg g = seg_enabled(0, false, false);
	struct ent_usage_state u = {.feature_type = ENT_FT_BOOLEAN, .reset = ENT_RESET_DAILY};
	struct ent_decision d;
	ent_model_decide(&u, &g, 1000000, 5, &d);
	assert_true(d.allowed);
	assert_int_equal(d.reason, ENT_R_ENTITLED);
	assert_int_equal(d.feature_type, ENT_FT_BOOLEAN);
	assert_false(d.metered);
	assert_int_equal(d.period_end, 0);
	assert_int_equal(d.next_change_at, 0); /* no period for a boolean */
	assert_ptr_equal(d.agg, &g);
	u.feature_type = ENT_FT_STATIC;
	ent_model_decide(&u, &g, 3, 5, &d);
	assert_true(d.allowed);
	assert_int_equal(d.feature_type, ENT_FT_STATIC);
}

static void test_decide_disabled(void **state)
{
	static const uint8_t states[] = {ENT_R_NOT_ENTITLED, ENT_R_DISABLED_BY_OVERRIDE,
					 ENT_R_NOT_YET_ACTIVE, ENT_R_EXPIRED};
	struct ent_usage_state u = {.feature_type = ENT_FT_METERED, .reset = ENT_RESET_NEVER};
	for (size_t i = 0; i < 4; i++) {
		struct ent_agg g;
		memset(&g, 0, sizeof(g));
		g.from = ENT_T_MIN;
		g.to = 900;
		g.state = states[i];
		struct ent_decision d;
		ent_model_decide(&u, &g, 1, 5, &d);
		assert_false(d.allowed);
		assert_int_equal(d.reason, states[i]);
		assert_int_equal(d.next_change_at, 900);
	}
}

static void test_decide_metered(void **state)
{
	static const struct {
		int64_t limit, used, q;
		bool unlimited, soft;
		bool allowed;
		uint8_t reason;
		int64_t remaining;
	} rows[] = {
		{10, 7, 3, false, false, true, ENT_R_ENTITLED, 3},
		{10, 7, 4, false, false, false, ENT_R_LIMIT_EXCEEDED, 3},
		{10, 7, 4, false, true, true, ENT_R_ALLOWED_OVER_SOFT_LIMIT, 3},
		{10, 12, 1, false, true, true, ENT_R_ALLOWED_OVER_SOFT_LIMIT, 0},
		{10, 12, 1, false, false, false, ENT_R_LIMIT_EXCEEDED, 0},
		{0, 0, 1, false, false, false, ENT_R_LIMIT_EXCEEDED, 0},
		{10, 10, 0, false, false, false, ENT_R_LIMIT_EXCEEDED, 0}, /* q 0 reads as 1 */
		{10, 9, 0, false, false, true, ENT_R_ENTITLED, 1},
		{0, 5000, 99999, true, false, true, ENT_R_ENTITLED, 0},
		/* used + q would overflow */
		{INT64_MAX, INT64_MAX - 1, 5, false, false, false, ENT_R_LIMIT_EXCEEDED, 1},
		{INT64_MAX, 1, INT64_MAX, false, false, false, ENT_R_LIMIT_EXCEEDED, INT64_MAX - 1},
		{INT64_MAX, 1, INT64_MAX - 1, false, false, true, ENT_R_ENTITLED, INT64_MAX - 1},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct ent_agg g = seg_enabled(rows[i].limit, rows[i].unlimited, rows[i].soft);
		struct ent_usage_state u = {.feature_type = ENT_FT_METERED,
					    .reset = ENT_RESET_NEVER,
					    .anchor = 0,
					    .period_start = ENT_T_MIN,
					    .used = rows[i].used};
		struct ent_decision d;
		ent_model_decide(&u, &g, rows[i].q, 1000, &d);
		if (d.allowed != rows[i].allowed || d.reason != rows[i].reason ||
		    d.remaining != rows[i].remaining)
			fail_msg("row %zu: allowed %d reason %s remaining %lld", i, d.allowed,
				 ent_model_reason_name(d.reason), (long long)d.remaining);
		assert_true(d.metered);
		assert_int_equal(d.used, rows[i].used);
		assert_true(d.limit == rows[i].limit);
		assert_int_equal(d.unlimited, rows[i].unlimited);
		assert_int_equal(d.soft, rows[i].soft);
		assert_int_equal(d.reset, ENT_RESET_NEVER);
		assert_int_equal(d.period_start, 0); /* no start: "not set" on the wire */
		assert_int_equal(d.period_end, 0);
		assert_int_equal(d.next_change_at, 0);
	}
}

static void test_decide_period_boundary(void **state)
{
	const int64_t anchor = T("2024-01-31T00:00:00Z");
	const int64_t p0 = T("2024-02-29T00:00:00Z"), p1 = T("2024-03-31T00:00:00Z");
	struct ent_agg g = seg_enabled(10, false, false);
	g.reset = ENT_RESET_MONTHLY;
	g.anchor = anchor;
	struct ent_usage_state u = {.feature_type = ENT_FT_METERED,
				    .reset = ENT_RESET_MONTHLY,
				    .anchor = anchor,
				    .period_start = p0,
				    .used = 10};
	struct ent_decision d;

	/* Last instant of the counted period: the counter applies, the limit is reached. */
	ent_model_decide(&u, &g, 1, p1 - 1, &d);
	assert_false(d.allowed);
	assert_int_equal(d.reason, ENT_R_LIMIT_EXCEEDED);
	assert_int_equal(d.used, 10);
	assert_int_equal(d.period_start, p0);
	assert_int_equal(d.period_end, p1);
	assert_int_equal(d.next_change_at, p1);

	/* First instant of the next period: it starts from zero, before any reset timer ran. */
	ent_model_decide(&u, &g, 1, p1, &d);
	assert_true(d.allowed);
	assert_int_equal(d.reason, ENT_R_ENTITLED);
	assert_int_equal(d.used, 0);
	assert_int_equal(d.remaining, 10);
	assert_int_equal(d.period_start, p1);
	assert_int_equal(d.period_end, T("2024-04-30T00:00:00Z"));

	/* An instant in an earlier period reads the current counter (no history kept). */
	ent_model_decide(&u, &g, 1, p0 - 1, &d);
	assert_int_equal(d.used, 10);
	assert_int_equal(d.period_start, anchor);
	assert_false(d.allowed);
}

static void test_decide_next_change(void **state)
{
	struct ent_agg g = seg_enabled(10, false, false);
	struct ent_usage_state u = {.feature_type = ENT_FT_METERED,
				    .reset = ENT_RESET_DAILY,
				    .anchor = 0,
				    .period_start = 0,
				    .used = 0};
	struct ent_decision d;
	g.reset = ENT_RESET_DAILY;
	g.anchor = 0;
	g.to = 5000;
	ent_model_decide(&u, &g, 1, 1000, &d);
	assert_int_equal(d.next_change_at, 5000); /* segment ends before the day */
	g.to = 90000000;
	ent_model_decide(&u, &g, 1, 1000, &d);
	assert_int_equal(d.next_change_at, 86400000); /* the day ends first */
	g.to = ENT_T_MAX;
	ent_model_decide(&u, &g, 1, 1000, &d);
	assert_int_equal(d.next_change_at, 86400000);
	u.reset = ENT_RESET_NEVER;
	g.reset = ENT_RESET_NEVER;
	ent_model_decide(&u, &g, 1, 1000, &d);
	assert_int_equal(d.next_change_at, 0);
	g.to = 5000;
	ent_model_decide(&u, &g, 1, 1000, &d);
	assert_int_equal(d.next_change_at, 5000);
}

/* ---- rule 12 ----------------------------------------------------------------------------- */

static void test_decide_missing(void **state)
{
	struct ent_decision d;
	memset(&d, 0xa5, sizeof(d));
	ent_model_decide_missing(ENT_R_UNKNOWN_FEATURE, ENT_FT_UNSPECIFIED, &d);
	assert_false(d.allowed);
	assert_int_equal(d.reason, ENT_R_UNKNOWN_FEATURE);
	assert_int_equal(d.feature_type, ENT_FT_UNSPECIFIED);
	assert_false(d.metered);
	assert_int_equal(d.limit, 0);
	assert_int_equal(d.used, 0);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.next_change_at, 0);
	assert_null(d.agg);
	ent_model_decide_missing(ENT_R_UNKNOWN_CUSTOMER, ENT_FT_METERED, &d);
	assert_int_equal(d.reason, ENT_R_UNKNOWN_CUSTOMER);
	assert_int_equal(d.feature_type, ENT_FT_METERED);
}

/* ---- rule 13: names ---------------------------------------------------------------------- */

static void test_names(void **state)
{
	static const char *const resets[] = {"NEVER",	  "DAILY",	 "WEEKLY", "MONTHLY",
					     "QUARTERLY", "HALF_YEARLY", "ANNUAL", "NEVER"};
	for (uint8_t i = 0; i < 8; i++)
		assert_string_equal(ent_model_reset_name(i), resets[i]);
	static const char *const fts[] = {"unspecified", "boolean", "metered", "static"};
	for (uint8_t i = 0; i < 4; i++)
		assert_string_equal(ent_model_feature_type_name(i), fts[i]);
	static const char *const pts[] = {"integer", "boolean", "string", "select"};
	for (uint8_t i = 0; i < 4; i++)
		assert_string_equal(ent_model_priv_type_name(i + 1), pts[i]);
	static const char *const reasons[] = {"ENTITLED",
					      "NOT_ENTITLED",
					      "UNKNOWN_CUSTOMER",
					      "UNKNOWN_FEATURE",
					      "LIMIT_EXCEEDED",
					      "ALLOWED_OVER_SOFT_LIMIT",
					      "DISABLED_BY_OVERRIDE",
					      "NOT_YET_ACTIVE",
					      "EXPIRED"};
	for (uint8_t i = 0; i < 9; i++)
		assert_string_equal(ent_model_reason_name(i + 1), reasons[i]);
	static const char *const srcs[] = {"plan", "addon", "subscription", "override"};
	for (uint8_t i = 0; i < 4; i++)
		assert_string_equal(ent_model_source_type_name(i + 1), srcs[i]);
	/* Out-of-range values never return NULL. */
	assert_non_null(ent_model_reset_name(200));
	assert_non_null(ent_model_reason_name(200));
	assert_non_null(ent_model_feature_type_name(200));
	assert_non_null(ent_model_priv_type_name(200));
	assert_non_null(ent_model_source_type_name(200));
}

static void test_name_parsers(void **state)
{
	static const struct {
		const char *s;
		uint8_t want;
	} resets[] = {
		{"DAILY", ENT_RESET_DAILY},	      {"weekly", ENT_RESET_WEEKLY},
		{"Monthly", ENT_RESET_MONTHLY},	      {"QUARTERLY", ENT_RESET_QUARTERLY},
		{"quarter", ENT_RESET_QUARTERLY},     {"HALF_YEARLY", ENT_RESET_HALF_YEARLY},
		{"Half_Year", ENT_RESET_HALF_YEARLY}, {"annual", ENT_RESET_ANNUAL},
		{"NEVER", ENT_RESET_NEVER},
	};
	uint8_t v;
	for (size_t i = 0; i < sizeof(resets) / sizeof(resets[0]); i++) {
		v = 99;
		assert_int_equal(ent_model_reset_parse(resets[i].s, &v), 0);
		assert_int_equal(v, resets[i].want);
	}
	static const char *const bad_resets[] = {"", "MONTH", "DAILYX", "yearly", "unspecified"};
	for (size_t i = 0; i < sizeof(bad_resets) / sizeof(bad_resets[0]); i++)
		assert_int_equal(ent_model_reset_parse(bad_resets[i], &v), -ENT_EINVAL);
	assert_int_equal(ent_model_reset_parse(NULL, &v), -ENT_EINVAL);

	assert_int_equal(ent_model_feature_type_parse("METERED", &v), 0);
	assert_int_equal(v, ENT_FT_METERED);
	assert_int_equal(ent_model_feature_type_parse("Boolean", &v), 0);
	assert_int_equal(v, ENT_FT_BOOLEAN);
	assert_int_equal(ent_model_feature_type_parse("static", &v), 0);
	assert_int_equal(v, ENT_FT_STATIC);
	assert_int_equal(ent_model_feature_type_parse("unspecified", &v), -ENT_EINVAL);
	assert_int_equal(ent_model_feature_type_parse("bool", &v), -ENT_EINVAL);
	assert_int_equal(ent_model_feature_type_parse(NULL, &v), -ENT_EINVAL);

	for (uint8_t t = ENT_PT_INTEGER; t <= ENT_PT_SELECT; t++) {
		char up[16];
		const char *n = ent_model_priv_type_name(t);
		size_t k = 0;
		for (; n[k] && k + 1 < sizeof(up); k++)
			up[k] = (char)(n[k] >= 'a' && n[k] <= 'z' ? n[k] - 32 : n[k]);
		up[k] = 0;
		v = 0;
		assert_int_equal(ent_model_priv_type_parse(up, &v), 0);
		assert_int_equal(v, t);
	}
	assert_int_equal(ent_model_priv_type_parse("int", &v), -ENT_EINVAL);
	/* Round trip of every reset name. */
	for (uint8_t r = ENT_RESET_DAILY; r <= ENT_RESET_NEVER; r++) {
		assert_int_equal(ent_model_reset_parse(ent_model_reset_name(r), &v), 0);
		assert_int_equal(v, r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_activity_window),
		cmocka_unit_test(test_enabled_or),
		cmocka_unit_test(test_metered_limit_sum),
		cmocka_unit_test(test_metered_unlimited_any),
		cmocka_unit_test(test_limit_saturates),
		cmocka_unit_test(test_soft_any),
		cmocka_unit_test(test_static_union),
		cmocka_unit_test(test_static_cap),
		cmocka_unit_test(test_priv_rules),
		cmocka_unit_test(test_override_enabled),
		cmocka_unit_test(test_override_limit),
		cmocka_unit_test(test_override_quota_enables),
		cmocka_unit_test(test_override_static_privs),
		cmocka_unit_test(test_override_alone),
		cmocka_unit_test(test_override_first_active_wins),
		cmocka_unit_test(test_disabled_clears_values),
		cmocka_unit_test(test_state_reasons),
		cmocka_unit_test(test_state_ended),
		cmocka_unit_test(test_aggregate_window_edges),
		cmocka_unit_test(test_aggregate_einval),
		cmocka_unit_test(test_segments_basic),
		cmocka_unit_test(test_segments_first_interval),
		cmocka_unit_test(test_segments_merge),
		cmocka_unit_test(test_segments_drop_past),
		cmocka_unit_test(test_segments_cap),
		cmocka_unit_test(test_usage_shape),
		cmocka_unit_test(test_period_table),
		cmocka_unit_test(test_period_never),
		cmocka_unit_test(test_period_properties),
		cmocka_unit_test(test_decide_not_metered),
		cmocka_unit_test(test_decide_disabled),
		cmocka_unit_test(test_decide_metered),
		cmocka_unit_test(test_decide_period_boundary),
		cmocka_unit_test(test_decide_next_change),
		cmocka_unit_test(test_decide_missing),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_name_parsers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
