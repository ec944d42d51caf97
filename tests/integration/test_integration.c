/*
 * Integration tests with our C client (include/ent/client.h) against a real entd started by
 * harness.py: demo data imported, a loopback TCP port and a unix socket, an admin token.
 *
 * The fixture is built through the admin RPCs with "it_" codes so it never collides with the
 * demo data, then every read-path test runs twice: over TCP and over the unix socket. Instants
 * that decide an answer (not yet active, expired) are passed as the check's `at`, so no result
 * depends on when the test runs or on the daemon's timers. Every read carries the sequence of
 * the last fixture write as min_sequence (read-your-writes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/client.h"
#include "ent/v1/admin.pb-c.h"
#include "ent/v1/entitlement.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#define DEADLINE_MS 30000 /* generous: two shared cores */
#define DAY	    (86400 * 1000LL)

#define SVC  "/ent.v1.EntitlementService/"
#define ADM  "/ent.v1.AdminService/"
#define HLTH "/grpc.health.v1.Health/"

/* ---- environment and fixture ---------------------------------------------------------- */

static struct {
	const char *tcp, *unix_addr, *token;
	ent_client *admin; /* TCP, with the token */
	int64_t now;	   /* the fixture's reference instant */
	uint64_t seq;	   /* sequence after the last fixture write */
	bool fixture_ok;
} G;

struct transport {
	const char *name;
	const char **addr;
	ent_client *c; /* no token: the check service is open */
};

static struct transport tcp_t = {"tcp", &G.tcp, NULL};
static struct transport unix_t = {"unix", &G.unix_addr, NULL};

/* Fields of the codes the fixture creates. */
#define F_BOOL	 "it_bool"
#define F_API	 "it_api"
#define F_SOFT	 "it_soft"
#define F_STATIC "it_static"
#define F_UNUSED "it_unused"
#define C_MAIN	 "it_cust1"  /* plan it_pro + 2 x add-on it_extra */
#define C_OVR	 "it_cust2"  /* plan it_pro, overrides: it_bool off, it_api limit 7 */
#define C_FUTURE "it_future" /* subscription starting in 10 days */
#define C_ENDING "it_ending" /* subscription ending in 10 days */
#define C_NONE	 "it_nobody" /* never created */

/* A unary call that must succeed: returns the response or fails the test with the status. */
static ProtobufCMessage *ok_call(ent_client *c, const char *method, const ProtobufCMessage *req,
				 const ProtobufCMessageDescriptor *rd)
{
	ProtobufCMessage *resp = NULL;
	grpc_status_code st;
	char details[512];
	int rc = ent_client_call(c, method, req, rd, DEADLINE_MS, &resp, &st, details,
				 sizeof(details));
	if (rc)
		fail_msg("%s: %s: %s", method, ent_client_status_name(st), details);
	return resp;
}

/* A unary call that must fail with \a want and a message containing \a substr (if given). */
static void expect_status(ent_client *c, const char *method, const ProtobufCMessage *req,
			  const ProtobufCMessageDescriptor *rd, grpc_status_code want,
			  const char *substr)
{
	ProtobufCMessage *resp = NULL;
	grpc_status_code st;
	char details[512];
	int rc = ent_client_call(c, method, req, rd, DEADLINE_MS, &resp, &st, details,
				 sizeof(details));
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (st != want)
		fail_msg("%s: got %s (%s), want %s", method, ent_client_status_name(st), details,
			 ent_client_status_name(want));
	assert_int_not_equal(rc, 0);
	if (substr && !strstr(details, substr))
		fail_msg("%s: %s message '%s' does not mention '%s'", method,
			 ent_client_status_name(st), details, substr);
}

/* Fixture calls run outside a test (group setup): report instead of failing a test. */
static int fx_call(const char *method, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *rd, uint64_t (*seq_of)(ProtobufCMessage *))
{
	ProtobufCMessage *resp = NULL;
	grpc_status_code st;
	char details[512];
	int rc = ent_client_call(G.admin, method, req, rd, DEADLINE_MS, &resp, &st, details,
				 sizeof(details));
	if (rc) {
		fprintf(stderr, "fixture: %s: %s: %s\n", method, ent_client_status_name(st),
			details);
		return -1;
	}
	uint64_t s = seq_of ? seq_of(resp) : 0;
	if (s > G.seq)
		G.seq = s;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

static uint64_t seq_feature(ProtobufCMessage *m)
{
	return ((Ent__V1__FeatureResponse *)m)->sequence;
}
static uint64_t seq_grants(ProtobufCMessage *m)
{
	return ((Ent__V1__EntitlementsResponse *)m)->sequence;
}
static uint64_t seq_sub(ProtobufCMessage *m)
{
	return ((Ent__V1__SubscriptionResponse *)m)->sequence;
}
static uint64_t seq_override(ProtobufCMessage *m)
{
	return ((Ent__V1__CustomerEntitlementResponse *)m)->sequence;
}

static int fx_feature(const char *code, Ent__V1__FeatureType type, Ent__V1__PrivilegeDef **privs,
		      size_t n_privs)
{
	Ent__V1__Feature f = ENT__V1__FEATURE__INIT;
	Ent__V1__UpsertFeatureRequest req = ENT__V1__UPSERT_FEATURE_REQUEST__INIT;
	f.code = (char *)code;
	f.name = (char *)code;
	f.type = type;
	f.privileges = privs;
	f.n_privileges = n_privs;
	if (type == ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED) {
		f.unit_singular = "call";
		f.unit_plural = "calls";
	}
	req.feature = &f;
	return fx_call(ADM "UpsertFeature", &req.base, &ent__v1__feature_response__descriptor,
		       seq_feature);
}

static int fx_subscription(const char *id, const char *customer, int64_t from, int64_t ends,
			   Ent__V1__SubscriptionAddon **addons, size_t n_addons)
{
	Ent__V1__Subscription s = ENT__V1__SUBSCRIPTION__INIT;
	Ent__V1__UpsertSubscriptionRequest req = ENT__V1__UPSERT_SUBSCRIPTION_REQUEST__INIT;
	s.id = (char *)id;
	s.customer_id = (char *)customer;
	s.plan_code = "it_pro";
	s.quantity = 1;
	s.active_from = from;
	s.ends_at = ends;
	s.addons = addons;
	s.n_addons = n_addons;
	req.subscription = &s;
	return fx_call(ADM "UpsertSubscription", &req.base,
		       &ent__v1__subscription_response__descriptor, seq_sub);
}

/*
 * it_pro grants: it_bool on, it_api 100/month, it_soft 10/month soft, it_static ["eu","us"]
 * with seats=5 and tier=silver. it_extra grants it_api 50/month per unit.
 */
static int build_fixture(void)
{
	Ent__V1__PrivilegeDef seats = ENT__V1__PRIVILEGE_DEF__INIT,
			      tier = ENT__V1__PRIVILEGE_DEF__INIT,
			      sso = ENT__V1__PRIVILEGE_DEF__INIT;
	seats.code = "seats";
	seats.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER;
	tier.code = "tier";
	tier.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT;
	char *tiers[] = {"silver", "gold"};
	tier.select_options = tiers;
	tier.n_select_options = 2;
	sso.code = "sso";
	sso.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_BOOLEAN;
	Ent__V1__PrivilegeDef *privs[] = {&seats, &tier, &sso};

	if (fx_feature(F_BOOL, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN, NULL, 0) ||
	    fx_feature(F_API, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED, NULL, 0) ||
	    fx_feature(F_SOFT, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED, NULL, 0) ||
	    fx_feature(F_STATIC, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC, privs, 3) ||
	    fx_feature(F_UNUSED, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN, NULL, 0))
		return -1;

	Ent__V1__Grant g_bool = ENT__V1__GRANT__INIT, g_api = ENT__V1__GRANT__INIT,
		       g_soft = ENT__V1__GRANT__INIT, g_static = ENT__V1__GRANT__INIT,
		       g_extra = ENT__V1__GRANT__INIT;
	g_bool.feature_code = F_BOOL;
	g_api.feature_code = F_API;
	g_api.usage_limit = 100;
	g_api.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;
	g_soft.feature_code = F_SOFT;
	g_soft.usage_limit = 10;
	g_soft.is_soft_limit = 1;
	g_soft.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;
	g_static.feature_code = F_STATIC;
	char *regions[] = {"eu", "us"};
	g_static.static_values = regions;
	g_static.n_static_values = 2;
	Ent__V1__PrivilegeValue pv_seats = ENT__V1__PRIVILEGE_VALUE__INIT,
				pv_tier = ENT__V1__PRIVILEGE_VALUE__INIT;
	pv_seats.code = "seats";
	pv_seats.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER;
	pv_seats.value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
	pv_seats.int_value = 5;
	pv_tier.code = "tier";
	pv_tier.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT;
	pv_tier.value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
	pv_tier.string_value = "silver";
	Ent__V1__PrivilegeValue *pvs[] = {&pv_seats, &pv_tier};
	g_static.privileges = pvs;
	g_static.n_privileges = 2;
	g_extra.feature_code = F_API;
	g_extra.usage_limit = 50;
	g_extra.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;

	Ent__V1__Grant *pro[] = {&g_bool, &g_api, &g_soft, &g_static};
	Ent__V1__Grant *extra[] = {&g_extra};
	Ent__V1__SetEntitlementsRequest plan = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	plan.code = "it_pro";
	plan.name = "IT Pro";
	plan.entitlements = pro;
	plan.n_entitlements = 4;
	Ent__V1__SetEntitlementsRequest addon = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	addon.code = "it_extra";
	addon.name = "IT Extra";
	addon.entitlements = extra;
	addon.n_entitlements = 1;
	if (fx_call(ADM "SetPlanEntitlements", &plan.base,
		    &ent__v1__entitlements_response__descriptor, seq_grants) ||
	    fx_call(ADM "SetAddonEntitlements", &addon.base,
		    &ent__v1__entitlements_response__descriptor, seq_grants))
		return -1;

	Ent__V1__SubscriptionAddon sa = ENT__V1__SUBSCRIPTION_ADDON__INIT;
	sa.addon_code = "it_extra";
	sa.quantity = 2;
	Ent__V1__SubscriptionAddon *sas[] = {&sa};
	if (fx_subscription("it_sub1", C_MAIN, 0, 0, sas, 1) ||
	    fx_subscription("it_sub2", C_OVR, 0, 0, NULL, 0) ||
	    fx_subscription("it_sub3", C_FUTURE, G.now + 10 * DAY, 0, NULL, 0) ||
	    fx_subscription("it_sub4", C_ENDING, G.now - DAY, G.now + 10 * DAY, NULL, 0))
		return -1;

	Ent__V1__OverrideValue off = ENT__V1__OVERRIDE_VALUE__INIT,
			       seven = ENT__V1__OVERRIDE_VALUE__INIT;
	off.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
	off.bool_value = 0;
	seven.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE;
	seven.number_value = 7;
	Ent__V1__SetCustomerEntitlementRequest o1 = ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT,
					       o2 = ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	o1.customer_id = C_OVR;
	o1.feature_code = F_BOOL;
	o1.value = &off;
	o1.reason = "it: switched off";
	o2.customer_id = C_OVR;
	o2.feature_code = F_API;
	o2.value = &seven;
	o2.reason = "it: capped";
	o2.expires_at = G.now + 30 * DAY;
	if (fx_call(ADM "SetCustomerEntitlement", &o1.base,
		    &ent__v1__customer_entitlement_response__descriptor, seq_override) ||
	    fx_call(ADM "SetCustomerEntitlement", &o2.base,
		    &ent__v1__customer_entitlement_response__descriptor, seq_override))
		return -1;
	return 0;
}

static int open_transport(void **state, struct transport *t)
{
	if (!G.fixture_ok) {
		fprintf(stderr, "no fixture: skipping the %s group\n", t->name);
		return -1;
	}
	if (ent_client_new(*t->addr, NULL, &t->c)) {
		fprintf(stderr, "cannot open a client to %s\n", *t->addr);
		return -1;
	}
	/* The group state is what every test of the group receives. */
	*state = t;
	return 0;
}

static int open_tcp(void **state)
{
	return open_transport(state, &tcp_t);
}

static int open_unix(void **state)
{
	return open_transport(state, &unix_t);
}

static int close_transport(void **state)
{
	struct transport *t = *state;
	/* cmocka runs the teardown also after a group set-up that failed (no state). */
	if (!t)
		return 0;
	ent_client_free(t->c);
	t->c = NULL;
	return 0;
}

static ent_client *client_of(void **state)
{
	return ((struct transport *)*state)->c;
}

/* ---- CheckEntitlement ----------------------------------------------------------------- */

static Ent__V1__CheckEntitlementResponse *check_at(ent_client *c, const char *customer,
						   const char *feature, int64_t qty, int64_t at)
{
	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = (char *)customer;
	req.feature_code = (char *)feature;
	req.quantity = qty;
	req.at = at;
	req.min_sequence = G.seq;
	Ent__V1__CheckEntitlementResponse *r = (Ent__V1__CheckEntitlementResponse *)ok_call(
		c, SVC "CheckEntitlement", &req.base,
		&ent__v1__check_entitlement_response__descriptor);
	/* Every answer is read from a snapshot at least as new as the fixture. */
	assert_true(r->sequence >= G.seq);
	return r;
}

static Ent__V1__CheckEntitlementResponse *check(ent_client *c, const char *customer,
						const char *feature, int64_t qty)
{
	return check_at(c, customer, feature, qty, 0);
}

#define assert_reason(r, want)                                                                     \
	do {                                                                                       \
		if ((int)(r)->reason != (int)(want))                                               \
			fail_msg("reason %s, want %s",                                             \
				 ent__v1__reason__descriptor.values[(r)->reason].name,             \
				 ent__v1__reason__descriptor.values[want].name);                   \
	} while (0)

static void free_msg(void *m)
{
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_check_entitled_boolean(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_BOOL, 0);
	assert_true(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_ENTITLED);
	assert_int_equal(r->feature_type, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	assert_int_equal(r->value_case, ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_BOOL_VALUE);
	assert_true(r->bool_value);
	assert_false(r->override_applied);
	assert_null(r->usage);
	free_msg(r);
}

static void test_check_metered_within_limit(void **state)
{
	/* 100 from the plan + 2 x 50 from the add-on. */
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_API, 150);
	assert_true(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_ENTITLED);
	assert_int_equal(r->feature_type, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	assert_non_null(r->usage);
	assert_int_equal(r->usage->limit, 200);
	assert_false(r->usage->unlimited);
	assert_int_equal(r->usage->used, 0);
	assert_int_equal(r->usage->remaining, 200);
	assert_int_equal(r->usage->reset_period, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	assert_true(r->usage->period_end > r->usage->period_start);
	assert_int_equal(r->value_case, ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_NUMBER_VALUE);
	assert_true(r->number_value == 200.0);
	free_msg(r);
}

static void test_check_limit_exceeded(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_API, 201);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_LIMIT_EXCEEDED);
	assert_non_null(r->usage);
	assert_int_equal(r->usage->limit, 200);
	free_msg(r);
}

static void test_check_soft_limit(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_SOFT, 11);
	assert_true(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_ALLOWED_OVER_SOFT_LIMIT);
	assert_non_null(r->usage);
	assert_true(r->usage->is_soft_limit);
	assert_int_equal(r->usage->limit, 10);
	free_msg(r);
	r = check(client_of(state), C_MAIN, F_SOFT, 10);
	assert_true(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_ENTITLED);
	free_msg(r);
}

static void test_check_not_entitled(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_UNUSED, 1);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_NOT_ENTITLED);
	free_msg(r);
}

static void test_check_unknown_customer(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_NONE, F_BOOL, 1);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_UNKNOWN_CUSTOMER);
	free_msg(r);
}

static void test_check_unknown_feature(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, "it_no_such", 1);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_UNKNOWN_FEATURE);
	free_msg(r);
}

static void test_check_disabled_by_override(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_OVR, F_BOOL, 1);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_DISABLED_BY_OVERRIDE);
	assert_true(r->override_applied);
	assert_string_equal(r->override_reason, "it: switched off");
	free_msg(r);
}

static void test_check_override_limit_and_window(void **state)
{
	ent_client *c = client_of(state);
	/* The override's number replaces the plan's limit while it is active... */
	Ent__V1__CheckEntitlementResponse *r = check(c, C_OVR, F_API, 8);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_LIMIT_EXCEEDED);
	assert_true(r->override_applied);
	assert_int_equal(r->override_expires_at, G.now + 30 * DAY);
	assert_non_null(r->usage);
	assert_int_equal(r->usage->limit, 7);
	assert_true(r->next_change_at > 0 && r->next_change_at <= G.now + 30 * DAY);
	free_msg(r);
	/* ...and never after expires_at, whatever the expiry timer has done. */
	r = check_at(c, C_OVR, F_API, 8, G.now + 31 * DAY);
	assert_true(r->allowed);
	assert_false(r->override_applied);
	assert_int_equal(r->usage->limit, 100);
	free_msg(r);
}

static void test_check_not_yet_active(void **state)
{
	ent_client *c = client_of(state);
	Ent__V1__CheckEntitlementResponse *r = check(c, C_FUTURE, F_BOOL, 1);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_NOT_YET_ACTIVE);
	assert_int_equal(r->next_change_at, G.now + 10 * DAY);
	free_msg(r);
	r = check_at(c, C_FUTURE, F_BOOL, 1, G.now + 11 * DAY);
	assert_true(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_ENTITLED);
	free_msg(r);
}

static void test_check_expired(void **state)
{
	ent_client *c = client_of(state);
	Ent__V1__CheckEntitlementResponse *r = check(c, C_ENDING, F_BOOL, 1);
	assert_true(r->allowed);
	assert_int_equal(r->next_change_at, G.now + 10 * DAY);
	free_msg(r);
	r = check_at(c, C_ENDING, F_BOOL, 1, G.now + 20 * DAY);
	assert_false(r->allowed);
	assert_reason(r, ENT__V1__REASON__REASON_EXPIRED);
	free_msg(r);
}

static void test_check_static_and_privileges(void **state)
{
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_STATIC, 1);
	assert_true(r->allowed);
	assert_int_equal(r->feature_type, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC);
	assert_int_equal(r->n_static_values, 2);
	bool eu = false, us = false;
	for (size_t i = 0; i < r->n_static_values; i++) {
		eu = eu || !strcmp(r->static_values[i], "eu");
		us = us || !strcmp(r->static_values[i], "us");
	}
	assert_true(eu && us);
	assert_int_equal(r->value_case, ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_STRING_VALUE);
	assert_string_equal(r->string_value, r->static_values[0]);
	bool seats = false, tier = false;
	for (size_t i = 0; i < r->n_privileges; i++) {
		const Ent__V1__PrivilegeValue *p = r->privileges[i];
		if (!strcmp(p->code, "seats")) {
			seats = true;
			assert_int_equal(p->value_case, ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE);
			assert_int_equal(p->int_value, 5);
			assert_int_equal(p->value_type,
					 ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER);
		} else if (!strcmp(p->code, "tier")) {
			tier = true;
			assert_int_equal(p->value_case,
					 ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE);
			assert_string_equal(p->string_value, "silver");
		}
	}
	assert_true(seats && tier);
	free_msg(r);
}

/* ---- BatchCheckEntitlements ----------------------------------------------------------- */

struct expect {
	const char *customer, *feature;
	int64_t qty;
	int reason;
	bool allowed;
};

static const struct expect mixed[] = {
	{C_MAIN, F_BOOL, 1, ENT__V1__REASON__REASON_ENTITLED, true},
	{C_NONE, F_BOOL, 1, ENT__V1__REASON__REASON_UNKNOWN_CUSTOMER, false},
	{C_MAIN, F_API, 1000, ENT__V1__REASON__REASON_LIMIT_EXCEEDED, false},
	{C_MAIN, F_UNUSED, 1, ENT__V1__REASON__REASON_NOT_ENTITLED, false},
	{C_OVR, F_BOOL, 1, ENT__V1__REASON__REASON_DISABLED_BY_OVERRIDE, false},
	{C_MAIN, "it_no_such", 1, ENT__V1__REASON__REASON_UNKNOWN_FEATURE, false},
	{C_MAIN, F_SOFT, 11, ENT__V1__REASON__REASON_ALLOWED_OVER_SOFT_LIMIT, true},
	{C_FUTURE, F_BOOL, 1, ENT__V1__REASON__REASON_NOT_YET_ACTIVE, false},
};
#define N_MIXED (sizeof(mixed) / sizeof(mixed[0]))

static void fill_check(Ent__V1__CheckEntitlementRequest *req, const struct expect *e)
{
	ent__v1__check_entitlement_request__init(req);
	req->customer_id = (char *)e->customer;
	req->feature_code = (char *)e->feature;
	req->quantity = e->qty;
	req->min_sequence = G.seq;
}

static void test_batch_order_and_reasons(void **state)
{
	/* Three rounds of the mixed list: 24 items whose answers must come back in order. */
	enum {
		N = 3 * N_MIXED
	};
	Ent__V1__CheckEntitlementRequest items[N], *ptrs[N];
	for (size_t i = 0; i < N; i++) {
		fill_check(&items[i], &mixed[i % N_MIXED]);
		ptrs[i] = &items[i];
	}
	Ent__V1__BatchCheckEntitlementsRequest req =
		ENT__V1__BATCH_CHECK_ENTITLEMENTS_REQUEST__INIT;
	req.checks = ptrs;
	req.n_checks = N;
	Ent__V1__BatchCheckEntitlementsResponse *r =
		(Ent__V1__BatchCheckEntitlementsResponse *)ok_call(
			client_of(state), SVC "BatchCheckEntitlements", &req.base,
			&ent__v1__batch_check_entitlements_response__descriptor);
	assert_int_equal(r->n_results, N);
	assert_true(r->sequence >= G.seq);
	for (size_t i = 0; i < N; i++) {
		const struct expect *e = &mixed[i % N_MIXED];
		if ((int)r->results[i]->reason != e->reason)
			fail_msg("results[%zu] (%s, %s): reason %d, want %d", i, e->customer,
				 e->feature, r->results[i]->reason, e->reason);
		assert_int_equal(!!r->results[i]->allowed, e->allowed);
		/* One snapshot answers the whole batch. */
		assert_int_equal(r->results[i]->sequence, r->sequence);
	}
	free_msg(r);
}

static void test_batch_invalid_item_named(void **state)
{
	Ent__V1__CheckEntitlementRequest items[3], *ptrs[3];
	for (size_t i = 0; i < 3; i++) {
		fill_check(&items[i], &mixed[0]);
		ptrs[i] = &items[i];
	}
	items[2].customer_id = "";
	Ent__V1__BatchCheckEntitlementsRequest req =
		ENT__V1__BATCH_CHECK_ENTITLEMENTS_REQUEST__INIT;
	req.checks = ptrs;
	req.n_checks = 3;
	expect_status(client_of(state), SVC "BatchCheckEntitlements", &req.base,
		      &ent__v1__batch_check_entitlements_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, "checks[2]");
	items[2].customer_id = C_MAIN;
	items[1].quantity = -3;
	expect_status(client_of(state), SVC "BatchCheckEntitlements", &req.base,
		      &ent__v1__batch_check_entitlements_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, "checks[1]");
	/* An empty batch is outside 1..10000. */
	req.n_checks = 0;
	expect_status(client_of(state), SVC "BatchCheckEntitlements", &req.base,
		      &ent__v1__batch_check_entitlements_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, "checks");
}

/* ---- StreamCheckEntitlements ---------------------------------------------------------- */

static ent_client_stream *open_check_stream(void **state)
{
	ent_client_stream *s;
	assert_int_equal(ent_client_stream_open(client_of(state), SVC "StreamCheckEntitlements",
						DEADLINE_MS, &s),
			 0);
	return s;
}

/* The stream must end with status OK (after the client's half-close); frees it. */
static void finish_ok(ent_client_stream *s)
{
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	char details[256] = "";
	if (ent_client_stream_finish(s, &st, details, sizeof(details)) != 0 || st != GRPC_STATUS_OK)
		fail_msg("stream ended with %s: %s", ent_client_status_name(st), details);
	ent_client_stream_free(s);
}

static void test_stream_lockstep(void **state)
{
	enum {
		N = 40
	};
	ent_client_stream *s = open_check_stream(state);
	for (size_t i = 0; i < N; i++) {
		Ent__V1__CheckEntitlementRequest req;
		fill_check(&req, &mixed[i % N_MIXED]);
		ProtobufCMessage *m;
		int rc = ent_client_stream_exchange(
			s, &req.base, &ent__v1__check_entitlement_response__descriptor, &m);
		if (rc) {
			grpc_status_code st;
			char details[256];
			ent_client_stream_finish(s, &st, details, sizeof(details));
			fail_msg("stream ended at %zu: %s: %s", i, ent_client_status_name(st),
				 details);
		}
		Ent__V1__CheckEntitlementResponse *r = (Ent__V1__CheckEntitlementResponse *)m;
		assert_int_equal(r->reason, mixed[i % N_MIXED].reason);
		assert_true(r->sequence >= G.seq);
		free_msg(r);
	}
	finish_ok(s);
}

static void test_stream_pipelined(void **state)
{
	/* All requests first, then all answers: the server must keep them in order. */
	enum {
		N = 200
	};
	ent_client_stream *s = open_check_stream(state);
	for (size_t i = 0; i < N; i++) {
		Ent__V1__CheckEntitlementRequest req;
		fill_check(&req, &mixed[i % N_MIXED]);
		assert_int_equal(ent_client_stream_send(s, &req.base), 0);
	}
	assert_int_equal(ent_client_stream_close_send(s), 0);
	for (size_t i = 0; i < N; i++) {
		ProtobufCMessage *m;
		int rc = ent_client_stream_recv(s, &ent__v1__check_entitlement_response__descriptor,
						&m);
		if (rc)
			fail_msg("answer %zu missing (rc %d)", i, rc);
		Ent__V1__CheckEntitlementResponse *r = (Ent__V1__CheckEntitlementResponse *)m;
		if ((int)r->reason != mixed[i % N_MIXED].reason)
			fail_msg("answer %zu: reason %d, want %d", i, r->reason,
				 mixed[i % N_MIXED].reason);
		free_msg(r);
	}
	ProtobufCMessage *extra;
	assert_int_equal(
		ent_client_stream_recv(s, &ent__v1__check_entitlement_response__descriptor, &extra),
		1);
	finish_ok(s);
}

static void test_stream_invalid_request_ends_stream(void **state)
{
	ent_client_stream *s = open_check_stream(state);
	Ent__V1__CheckEntitlementRequest req;
	fill_check(&req, &mixed[0]);
	ProtobufCMessage *m;
	assert_int_equal(
		ent_client_stream_exchange(s, &req.base,
					   &ent__v1__check_entitlement_response__descriptor, &m),
		0);
	free_msg(m);
	req.customer_id = "";
	int rc = ent_client_stream_exchange(s, &req.base,
					    &ent__v1__check_entitlement_response__descriptor, &m);
	assert_int_equal(rc, 1); /* no answer: the stream ended */
	grpc_status_code st;
	char details[256];
	assert_int_not_equal(ent_client_stream_finish(s, &st, details, sizeof(details)), 0);
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(details, "customer_id"));
	ent_client_stream_free(s);
}

/* ---- GetCustomerEntitlements ---------------------------------------------------------- */

static const Ent__V1__AggregatedFeature *
find_feature(const Ent__V1__GetCustomerEntitlementsResponse *r, const char *code)
{
	for (size_t i = 0; i < r->n_features; i++)
		if (r->features[i]->feature && !strcmp(r->features[i]->feature->code, code))
			return r->features[i];
	return NULL;
}

static void test_get_entitlements_sources(void **state)
{
	Ent__V1__GetCustomerEntitlementsRequest req =
		ENT__V1__GET_CUSTOMER_ENTITLEMENTS_REQUEST__INIT;
	req.customer_id = C_MAIN;
	req.min_sequence = G.seq;
	Ent__V1__GetCustomerEntitlementsResponse *r =
		(Ent__V1__GetCustomerEntitlementsResponse *)ok_call(
			client_of(state), SVC "GetCustomerEntitlements", &req.base,
			&ent__v1__get_customer_entitlements_response__descriptor);
	assert_string_equal(r->customer_id, C_MAIN);
	assert_true(r->sequence >= G.seq);
	const Ent__V1__AggregatedFeature *api = find_feature(r, F_API);
	assert_non_null(api);
	assert_non_null(find_feature(r, F_BOOL));
	assert_non_null(find_feature(r, F_STATIC));
	assert_non_null(api->entitlement);
	assert_true(api->entitlement->is_enabled);
	assert_int_equal(api->entitlement->usage_limit, 200);
	assert_int_equal(api->entitlement->reason, ENT__V1__REASON__REASON_ENTITLED);
	bool plan = false, addon = false;
	for (size_t i = 0; i < api->n_sources; i++) {
		const Ent__V1__EntitlementSource *s = api->sources[i];
		if (s->entity_type == ENT__V1__SOURCE_TYPE__SOURCE_TYPE_PLAN) {
			plan = true;
			assert_string_equal(s->entity_id, "it_pro");
			assert_string_equal(s->subscription_id, "it_sub1");
			assert_int_equal(s->usage_limit, 100);
			assert_true(s->active);
		} else if (s->entity_type == ENT__V1__SOURCE_TYPE__SOURCE_TYPE_ADDON) {
			addon = true;
			assert_string_equal(s->entity_id, "it_extra");
			assert_int_equal(s->quantity, 2);
			assert_int_equal(s->usage_limit, 50);
		}
	}
	assert_true(plan && addon);
	free_msg(r);

	/* The override shows up as a source of its own. */
	req.customer_id = C_OVR;
	char *only[] = {F_BOOL};
	req.feature_codes = only;
	req.n_feature_codes = 1;
	r = (Ent__V1__GetCustomerEntitlementsResponse *)ok_call(
		client_of(state), SVC "GetCustomerEntitlements", &req.base,
		&ent__v1__get_customer_entitlements_response__descriptor);
	assert_int_equal(r->n_features, 1);
	const Ent__V1__AggregatedFeature *b = r->features[0];
	assert_string_equal(b->feature->code, F_BOOL);
	assert_false(b->entitlement->is_enabled);
	assert_string_equal(b->entitlement->override_reason, "it: switched off");
	bool ovr = false;
	for (size_t i = 0; i < b->n_sources; i++)
		if (b->sources[i]->entity_type == ENT__V1__SOURCE_TYPE__SOURCE_TYPE_OVERRIDE) {
			ovr = true;
			assert_string_equal(b->sources[i]->reason, "it: switched off");
			assert_false(b->sources[i]->is_enabled);
		}
	assert_true(ovr);
	free_msg(r);
}

static void test_get_entitlements_filter(void **state)
{
	Ent__V1__GetCustomerEntitlementsRequest req =
		ENT__V1__GET_CUSTOMER_ENTITLEMENTS_REQUEST__INIT;
	char *codes[] = {F_API, F_STATIC};
	req.customer_id = C_MAIN;
	req.feature_codes = codes;
	req.n_feature_codes = 2;
	req.min_sequence = G.seq;
	Ent__V1__GetCustomerEntitlementsResponse *r =
		(Ent__V1__GetCustomerEntitlementsResponse *)ok_call(
			client_of(state), SVC "GetCustomerEntitlements", &req.base,
			&ent__v1__get_customer_entitlements_response__descriptor);
	assert_int_equal(r->n_features, 2);
	assert_non_null(find_feature(r, F_API));
	assert_non_null(find_feature(r, F_STATIC));
	assert_null(find_feature(r, F_BOOL));
	free_msg(r);
}

/* ---- health --------------------------------------------------------------------------- */

static void test_health_check(void **state)
{
	ent_client *c = client_of(state);
	int serving;
	grpc_status_code st;
	char details[256];
	assert_int_equal(ent_client_health_check(c, "", DEADLINE_MS, &serving, &st, details,
						 sizeof(details)),
			 0);
	assert_int_equal(serving, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_int_equal(ent_client_health_check(c, "ent.v1.EntitlementService", DEADLINE_MS,
						 &serving, &st, details, sizeof(details)),
			 0);
	assert_int_equal(serving, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	/* The standard protocol: an unknown service is NOT_FOUND for Check. */
	assert_int_not_equal(ent_client_health_check(c, "no.such.Service", DEADLINE_MS, &serving,
						     &st, details, sizeof(details)),
			     0);
	assert_int_equal(st, GRPC_STATUS_NOT_FOUND);
}

static void test_health_watch_first(void **state)
{
	int serving;
	grpc_status_code st;
	char details[256];
	assert_int_equal(ent_client_health_watch_first(client_of(state), "", DEADLINE_MS, &serving,
						       &st, details, sizeof(details)),
			 0);
	assert_int_equal(serving, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	/* Watch of an unknown service answers SERVICE_UNKNOWN instead of failing. */
	assert_int_equal(ent_client_health_watch_first(client_of(state), "no.such.Service",
						       DEADLINE_MS, &serving, &st, details,
						       sizeof(details)),
			 0);
	assert_int_equal(serving,
			 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
}

/* ---- errors --------------------------------------------------------------------------- */

static void expect_check_invalid(ent_client *c, const char *customer, const char *feature,
				 int64_t qty, const char *field)
{
	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = (char *)customer;
	req.feature_code = (char *)feature;
	req.quantity = qty;
	expect_status(c, SVC "CheckEntitlement", &req.base,
		      &ent__v1__check_entitlement_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, field);
}

static void test_error_ids(void **state)
{
	ent_client *c = client_of(state);
	char long_id[300];
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';

	expect_check_invalid(c, "", F_BOOL, 1, "customer_id");
	expect_check_invalid(c, C_MAIN, "", 1, "feature_code");
	expect_check_invalid(c, long_id, F_BOOL, 1, "customer_id");
	expect_check_invalid(c, C_MAIN, long_id, 1, "feature_code");
	expect_check_invalid(c, "has space", F_BOOL, 1, "customer_id");

	Ent__V1__GetCustomerEntitlementsRequest g =
		ENT__V1__GET_CUSTOMER_ENTITLEMENTS_REQUEST__INIT;
	g.customer_id = "";
	expect_status(c, SVC "GetCustomerEntitlements", &g.base,
		      &ent__v1__get_customer_entitlements_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, "customer_id");
}

static void test_error_min_sequence_ahead(void **state)
{
	/* Read-your-writes: a snapshot older than asked for is UNAVAILABLE (retry elsewhere). */
	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = C_MAIN;
	req.feature_code = F_BOOL;
	req.min_sequence = G.seq + 1000000;
	expect_status(client_of(state), SVC "CheckEntitlement", &req.base,
		      &ent__v1__check_entitlement_response__descriptor, GRPC_STATUS_UNAVAILABLE,
		      "min_sequence");
}

static void test_error_negative_quantity(void **state)
{
	expect_check_invalid(client_of(state), C_MAIN, F_API, -1, "quantity");
}

static void test_error_malformed_bytes(void **state)
{
	/* A field 1 header announcing 2^63 bytes, then junk: no protobuf parser accepts it. */
	static const unsigned char junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					     0xff, 0xff, 0x7f, 0x13, 0x37, 0xde, 0xad};
	grpc_status_code st;
	char details[256];
	void *resp;
	size_t len;
	int rc = ent_client_call_raw(client_of(state), SVC "CheckEntitlement", junk, sizeof(junk),
				     DEADLINE_MS, &resp, &len, &st, details, sizeof(details));
	assert_int_not_equal(rc, 0);
	assert_null(resp);
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	/* A wire type 7 tag is invalid too, on the batch method. */
	static const unsigned char bad_tag[] = {0x0f, 0x01};
	rc = ent_client_call_raw(client_of(state), SVC "BatchCheckEntitlements", bad_tag,
				 sizeof(bad_tag), DEADLINE_MS, NULL, NULL, &st, details,
				 sizeof(details));
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
}

static void test_error_unknown_method(void **state)
{
	grpc_status_code st;
	char details[256];
	int rc = ent_client_call_raw(client_of(state), SVC "NoSuchMethod", "", 0, DEADLINE_MS, NULL,
				     NULL, &st, details, sizeof(details));
	assert_int_not_equal(rc, 0);
	assert_int_equal(st, GRPC_STATUS_UNIMPLEMENTED);
	rc = ent_client_call_raw(client_of(state), "/no.such.Service/Check", "", 0, DEADLINE_MS,
				 NULL, NULL, &st, details, sizeof(details));
	assert_int_equal(st, GRPC_STATUS_UNIMPLEMENTED);
}

static void test_error_oversized(void **state)
{
	/* 5 MiB against the default 4 MiB limit. */
	size_t n = 5u << 20;
	unsigned char *big = malloc(n);
	assert_non_null(big);
	memset(big, 'a', n);
	grpc_status_code st;
	char details[256];
	int rc = ent_client_call_raw(client_of(state), SVC "CheckEntitlement", big, n, DEADLINE_MS,
				     NULL, NULL, &st, details, sizeof(details));
	free(big);
	assert_int_not_equal(rc, 0);
	if (st != GRPC_STATUS_RESOURCE_EXHAUSTED)
		fail_msg("oversized: %s (%s)", ent_client_status_name(st), details);
	/* The connection survives: the next call on the same channel works. */
	Ent__V1__CheckEntitlementResponse *r = check(client_of(state), C_MAIN, F_BOOL, 1);
	assert_true(r->allowed);
	free_msg(r);
}

/* ---- admin ---------------------------------------------------------------------------- */

static void test_admin_unauthenticated(void **state)
{
	ent_client *none, *wrong;
	assert_int_equal(ent_client_new(G.tcp, NULL, &none), 0);
	assert_int_equal(ent_client_new(G.tcp, "not-the-token", &wrong), 0);
	ent_client *cs[] = {none, wrong};
	for (size_t i = 0; i < 2; i++) {
		Ent__V1__GetStatusRequest st = ENT__V1__GET_STATUS_REQUEST__INIT;
		expect_status(cs[i], ADM "GetStatus", &st.base,
			      &ent__v1__status_response__descriptor, GRPC_STATUS_UNAUTHENTICATED,
			      NULL);
		Ent__V1__Feature f = ENT__V1__FEATURE__INIT;
		f.code = "it_unauth";
		f.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN;
		Ent__V1__UpsertFeatureRequest up = ENT__V1__UPSERT_FEATURE_REQUEST__INIT;
		up.feature = &f;
		expect_status(cs[i], ADM "UpsertFeature", &up.base,
			      &ent__v1__feature_response__descriptor, GRPC_STATUS_UNAUTHENTICATED,
			      NULL);
		Ent__V1__ExportRequest ex = ENT__V1__EXPORT_REQUEST__INIT;
		expect_status(cs[i], ADM "Export", &ex.base, &ent__v1__export_response__descriptor,
			      GRPC_STATUS_UNAUTHENTICATED, NULL);
	}
	ent_client_free(none);
	ent_client_free(wrong);
	/* Nothing was written: the feature does not exist. */
	Ent__V1__GetFeatureRequest g = ENT__V1__GET_FEATURE_REQUEST__INIT;
	g.code = "it_unauth";
	expect_status(G.admin, ADM "GetFeature", &g.base, &ent__v1__feature_response__descriptor,
		      GRPC_STATUS_NOT_FOUND, NULL);
}

static void test_admin_demo_imported(void **state)
{
	Ent__V1__GetStatusRequest req = ENT__V1__GET_STATUS_REQUEST__INIT;
	Ent__V1__StatusResponse *s = (Ent__V1__StatusResponse *)ok_call(
		G.admin, ADM "GetStatus", &req.base, &ent__v1__status_response__descriptor);
	/* The demo plus the fixture: at least the five it_ features and four customers. */
	assert_true(s->features >= 5 + 1);
	assert_true(s->customers >= 4 + 1);
	assert_true(s->plans >= 1 + 1);
	assert_true(s->sequence >= G.seq);
	assert_true(s->aggregates > 0);
	assert_true(s->db_size_bytes > 0);
	assert_true(s->map_size_bytes >= s->db_size_bytes);
	assert_true(s->version[0] != '\0');
	free_msg(s);
}

static void test_admin_features(void **state)
{
	ent_client *a = G.admin;
	Ent__V1__Feature f = ENT__V1__FEATURE__INIT;
	f.code = "it_adm_feature";
	f.name = "Admin feature";
	f.description = "created by test_admin_features";
	f.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED;
	f.unit_singular = "seat";
	f.unit_plural = "seats";
	Ent__V1__UpsertFeatureRequest up = ENT__V1__UPSERT_FEATURE_REQUEST__INIT;
	up.feature = &f;
	Ent__V1__FeatureResponse *r = (Ent__V1__FeatureResponse *)ok_call(
		a, ADM "UpsertFeature", &up.base, &ent__v1__feature_response__descriptor);
	assert_non_null(r->feature);
	assert_string_equal(r->feature->code, "it_adm_feature");
	assert_true(r->sequence > 0);
	assert_true(r->feature->created_at > 0);
	free_msg(r);

	Ent__V1__GetFeatureRequest g = ENT__V1__GET_FEATURE_REQUEST__INIT;
	g.code = "it_adm_feature";
	r = (Ent__V1__FeatureResponse *)ok_call(a, ADM "GetFeature", &g.base,
						&ent__v1__feature_response__descriptor);
	assert_string_equal(r->feature->name, "Admin feature");
	assert_string_equal(r->feature->unit_plural, "seats");
	assert_int_equal(r->feature->type, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	free_msg(r);

	/* Page through every feature two at a time; ours must be among them, once. */
	Ent__V1__ListFeaturesRequest l = ENT__V1__LIST_FEATURES_REQUEST__INIT;
	l.page_size = 2;
	char token[512] = "";
	int seen = 0, pages = 0;
	do {
		l.page_token = token;
		Ent__V1__ListFeaturesResponse *lr = (Ent__V1__ListFeaturesResponse *)ok_call(
			a, ADM "ListFeatures", &l.base,
			&ent__v1__list_features_response__descriptor);
		assert_true(lr->n_features <= 2);
		for (size_t i = 0; i < lr->n_features; i++)
			seen += !strcmp(lr->features[i]->code, "it_adm_feature");
		snprintf(token, sizeof(token), "%s", lr->next_page_token);
		free_msg(lr);
		assert_true(++pages < 10000);
	} while (token[0]);
	assert_int_equal(seen, 1);
	assert_true(pages >= 3); /* at least 6 features exist */

	Ent__V1__DeleteFeatureRequest d = ENT__V1__DELETE_FEATURE_REQUEST__INIT;
	d.code = "it_adm_feature";
	Ent__V1__DeleteResponse *dr = (Ent__V1__DeleteResponse *)ok_call(
		a, ADM "DeleteFeature", &d.base, &ent__v1__delete_response__descriptor);
	assert_true(dr->deleted);
	free_msg(dr);
	expect_status(a, ADM "GetFeature", &g.base, &ent__v1__feature_response__descriptor,
		      GRPC_STATUS_NOT_FOUND, NULL);
	/* Invalid input names the field. */
	f.code = "";
	expect_status(a, ADM "UpsertFeature", &up.base, &ent__v1__feature_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, "code");
}

static void test_admin_plans_and_addons(void **state)
{
	ent_client *a = G.admin;
	static const char *const kinds[] = {"Plan", "Addon"};
	for (size_t k = 0; k < 2; k++) {
		char m_set[96], m_patch[96], m_get[96], m_del[96];
		snprintf(m_set, sizeof(m_set), ADM "Set%sEntitlements", kinds[k]);
		snprintf(m_patch, sizeof(m_patch), ADM "Patch%sEntitlements", kinds[k]);
		snprintf(m_get, sizeof(m_get), ADM "Get%sEntitlements", kinds[k]);
		snprintf(m_del, sizeof(m_del), ADM "Delete%sEntitlements", kinds[k]);

		Ent__V1__Grant g1 = ENT__V1__GRANT__INIT, g2 = ENT__V1__GRANT__INIT;
		g1.feature_code = F_BOOL;
		g2.feature_code = F_API;
		g2.usage_limit = 5;
		g2.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_DAILY;
		Ent__V1__Grant *gs[] = {&g1};
		Ent__V1__SetEntitlementsRequest s = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
		s.code = "it_adm_grants";
		s.name = "Admin grants";
		s.entitlements = gs;
		s.n_entitlements = 1;
		Ent__V1__EntitlementsResponse *r = (Ent__V1__EntitlementsResponse *)ok_call(
			a, m_set, &s.base, &ent__v1__entitlements_response__descriptor);
		assert_int_equal(r->n_entitlements, 1);
		free_msg(r);

		gs[0] = &g2; /* patch adds it_api, keeps it_bool */
		r = (Ent__V1__EntitlementsResponse *)ok_call(
			a, m_patch, &s.base, &ent__v1__entitlements_response__descriptor);
		assert_int_equal(r->n_entitlements, 2);
		free_msg(r);

		Ent__V1__GetEntitlementsRequest g = ENT__V1__GET_ENTITLEMENTS_REQUEST__INIT;
		g.code = "it_adm_grants";
		r = (Ent__V1__EntitlementsResponse *)ok_call(
			a, m_get, &g.base, &ent__v1__entitlements_response__descriptor);
		assert_string_equal(r->code, "it_adm_grants");
		assert_string_equal(r->name, "Admin grants");
		assert_int_equal(r->n_entitlements, 2);
		free_msg(r);

		Ent__V1__DeleteResponse *dr = (Ent__V1__DeleteResponse *)ok_call(
			a, m_del, &g.base, &ent__v1__delete_response__descriptor);
		assert_true(dr->deleted);
		free_msg(dr);
		expect_status(a, m_get, &g.base, &ent__v1__entitlements_response__descriptor,
			      GRPC_STATUS_NOT_FOUND, NULL);

		/* A grant of a feature that does not exist is refused, naming it. */
		Ent__V1__Grant bad = ENT__V1__GRANT__INIT;
		bad.feature_code = "it_no_such";
		gs[0] = &bad;
		expect_status(a, m_set, &s.base, &ent__v1__entitlements_response__descriptor,
			      GRPC_STATUS_INVALID_ARGUMENT, "it_no_such");
	}
}

static void test_admin_subscriptions(void **state)
{
	ent_client *a = G.admin;
	Ent__V1__Subscription s = ENT__V1__SUBSCRIPTION__INIT;
	s.id = "it_adm_sub";
	s.customer_id = "it_adm_cust";
	s.plan_code = "it_pro";
	Ent__V1__UpsertSubscriptionRequest up = ENT__V1__UPSERT_SUBSCRIPTION_REQUEST__INIT;
	up.subscription = &s;
	Ent__V1__SubscriptionResponse *r = (Ent__V1__SubscriptionResponse *)ok_call(
		a, ADM "UpsertSubscription", &up.base, &ent__v1__subscription_response__descriptor);
	assert_non_null(r->subscription);
	assert_string_equal(r->subscription->id, "it_adm_sub");
	uint64_t seq = r->sequence;
	free_msg(r);

	G.seq = seq > G.seq ? seq : G.seq;
	Ent__V1__CheckEntitlementResponse *c = check(G.admin, "it_adm_cust", F_BOOL, 1);
	assert_true(c->allowed);
	free_msg(c);

	Ent__V1__CancelSubscriptionRequest cr = ENT__V1__CANCEL_SUBSCRIPTION_REQUEST__INIT;
	cr.customer_id = "it_adm_cust";
	cr.subscription_id = "it_adm_sub";
	cr.at = G.now + 5 * DAY;
	r = (Ent__V1__SubscriptionResponse *)ok_call(a, ADM "CancelSubscription", &cr.base,
						     &ent__v1__subscription_response__descriptor);
	assert_non_null(r->subscription);
	assert_int_equal(r->subscription->ends_at, G.now + 5 * DAY);
	G.seq = r->sequence > G.seq ? r->sequence : G.seq;
	free_msg(r);
	c = check_at(G.admin, "it_adm_cust", F_BOOL, 1, G.now + 6 * DAY);
	assert_false(c->allowed);
	free_msg(c);

	/* A subscription to a plan that does not exist is refused. */
	s.id = "it_adm_sub2";
	s.plan_code = "it_no_such_plan";
	expect_status(a, ADM "UpsertSubscription", &up.base,
		      &ent__v1__subscription_response__descriptor, GRPC_STATUS_INVALID_ARGUMENT,
		      "it_no_such_plan");
	cr.subscription_id = "it_no_such_sub";
	expect_status(a, ADM "CancelSubscription", &cr.base,
		      &ent__v1__subscription_response__descriptor, GRPC_STATUS_NOT_FOUND, NULL);
}

static void test_admin_overrides(void **state)
{
	ent_client *a = G.admin;
	Ent__V1__OverrideValue on = ENT__V1__OVERRIDE_VALUE__INIT;
	on.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
	on.bool_value = 1;
	Ent__V1__SetCustomerEntitlementRequest s = ENT__V1__SET_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	s.customer_id = C_MAIN;
	s.feature_code = F_UNUSED;
	s.value = &on;
	s.reason = "it: granted by hand";
	s.expires_at = G.now + 3 * DAY;
	Ent__V1__CustomerEntitlementResponse *r = (Ent__V1__CustomerEntitlementResponse *)ok_call(
		a, ADM "SetCustomerEntitlement", &s.base,
		&ent__v1__customer_entitlement_response__descriptor);
	assert_non_null(r->entitlement);
	assert_string_equal(r->entitlement->reason, "it: granted by hand");
	assert_int_equal(r->entitlement->expires_at, G.now + 3 * DAY);
	assert_true(r->entitlement->created_at > 0);
	assert_true(r->entitlement->updated_at >= r->entitlement->created_at);
	G.seq = r->sequence > G.seq ? r->sequence : G.seq;
	free_msg(r);
	Ent__V1__CheckEntitlementResponse *c = check(a, C_MAIN, F_UNUSED, 1);
	assert_true(c->allowed);
	assert_true(c->override_applied);
	free_msg(c);

	Google__Protobuf__Int64Value exp = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	exp.value = G.now + 2 * DAY;
	Ent__V1__UpdateCustomerEntitlementRequest u =
		ENT__V1__UPDATE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	u.customer_id = C_MAIN;
	u.feature_code = F_UNUSED;
	u.expiry_at = &exp;
	r = (Ent__V1__CustomerEntitlementResponse *)ok_call(
		a, ADM "UpdateCustomerEntitlement", &u.base,
		&ent__v1__customer_entitlement_response__descriptor);
	assert_int_equal(r->entitlement->expires_at, G.now + 2 * DAY);
	/* Fields not sent are kept. */
	assert_string_equal(r->entitlement->reason, "it: granted by hand");
	free_msg(r);

	Ent__V1__ListCustomerEntitlementsRequest l =
		ENT__V1__LIST_CUSTOMER_ENTITLEMENTS_REQUEST__INIT;
	l.customer_id = C_MAIN;
	Ent__V1__ListCustomerEntitlementsResponse *lr =
		(Ent__V1__ListCustomerEntitlementsResponse *)ok_call(
			a, ADM "ListCustomerEntitlements", &l.base,
			&ent__v1__list_customer_entitlements_response__descriptor);
	assert_int_equal(lr->n_entitlements, 1);
	assert_string_equal(lr->entitlements[0]->feature_code, F_UNUSED);
	free_msg(lr);

	Ent__V1__DeleteCustomerEntitlementRequest d =
		ENT__V1__DELETE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
	d.customer_id = C_MAIN;
	d.feature_code = F_UNUSED;
	Ent__V1__DeleteResponse *dr = (Ent__V1__DeleteResponse *)ok_call(
		a, ADM "DeleteCustomerEntitlement", &d.base, &ent__v1__delete_response__descriptor);
	assert_true(dr->deleted);
	G.seq = dr->sequence > G.seq ? dr->sequence : G.seq;
	free_msg(dr);
	c = check(a, C_MAIN, F_UNUSED, 1);
	assert_false(c->allowed);
	assert_reason(c, ENT__V1__REASON__REASON_NOT_ENTITLED);
	free_msg(c);

	/* Hyperline requires a value. */
	s.value = NULL;
	expect_status(a, ADM "SetCustomerEntitlement", &s.base,
		      &ent__v1__customer_entitlement_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, "value");
}

static void test_admin_export_import(void **state)
{
	ent_client *a = G.admin;
	Ent__V1__ExportRequest ex = ENT__V1__EXPORT_REQUEST__INIT;
	Ent__V1__ExportResponse *e = (Ent__V1__ExportResponse *)ok_call(
		a, ADM "Export", &ex.base, &ent__v1__export_response__descriptor);
	assert_non_null(strstr(e->json, "\"it_pro\""));
	assert_non_null(strstr(e->json, "\"it_sub1\""));
	assert_true(e->sequence >= G.seq);

	/* Importing the export on top of itself changes nothing a check can see. */
	Ent__V1__ImportRequest im = ENT__V1__IMPORT_REQUEST__INIT;
	im.json = e->json;
	Ent__V1__ImportResponse *ir = (Ent__V1__ImportResponse *)ok_call(
		a, ADM "Import", &im.base, &ent__v1__import_response__descriptor);
	assert_true(ir->changes > 0);
	assert_true(ir->sequence > e->sequence);
	G.seq = ir->sequence;
	free_msg(ir);
	free_msg(e);
	Ent__V1__CheckEntitlementResponse *c = check(a, C_MAIN, F_API, 150);
	assert_true(c->allowed);
	assert_int_equal(c->usage->limit, 200);
	free_msg(c);

	im.json = "{ not json";
	expect_status(a, ADM "Import", &im.base, &ent__v1__import_response__descriptor,
		      GRPC_STATUS_INVALID_ARGUMENT, NULL);
}

static Ent__V1__ConsumeEntitlementResponse *consume(const char *key, int64_t qty)
{
	Ent__V1__ConsumeEntitlementRequest req = ENT__V1__CONSUME_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = "it_usage_cust";
	req.feature_code = F_API;
	req.quantity = qty;
	req.idempotency_key = (char *)key;
	return (Ent__V1__ConsumeEntitlementResponse *)ok_call(
		G.admin, SVC "ConsumeEntitlement", &req.base,
		&ent__v1__consume_entitlement_response__descriptor);
}

static void test_usage_and_consume(void **state)
{
	/* it_pro grants it_api 100 per month. */
	Ent__V1__Subscription s = ENT__V1__SUBSCRIPTION__INIT;
	s.id = "it_usage_sub";
	s.customer_id = "it_usage_cust";
	s.plan_code = "it_pro";
	Ent__V1__UpsertSubscriptionRequest up = ENT__V1__UPSERT_SUBSCRIPTION_REQUEST__INIT;
	up.subscription = &s;
	free_msg(ok_call(G.admin, ADM "UpsertSubscription", &up.base,
			 &ent__v1__subscription_response__descriptor));

	Ent__V1__ReportUsageRequest rep = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	rep.customer_id = "it_usage_cust";
	rep.feature_code = F_API;
	rep.quantity = 30;
	rep.idempotency_key = "it-report-1";
	for (int round = 0; round < 2; round++) {
		/* The second report with the same key is recognised and not counted. */
		Ent__V1__ReportUsageResponse *r = (Ent__V1__ReportUsageResponse *)ok_call(
			client_of(state), SVC "ReportUsage", &rep.base,
			&ent__v1__report_usage_response__descriptor);
		assert_int_equal(!!r->duplicate, round == 1);
		assert_non_null(r->usage);
		assert_int_equal(r->usage->used, 30);
		assert_int_equal(r->usage->limit, 100);
		free_msg(r);
	}
	Ent__V1__ConsumeEntitlementResponse *c = consume("it-consume-1", 50);
	assert_true(c->allowed);
	assert_false(c->duplicate);
	assert_int_equal(c->usage->used, 80);
	free_msg(c);
	c = consume("it-consume-1", 50);
	assert_true(c->duplicate);
	assert_int_equal(c->usage->used, 80);
	free_msg(c);
	c = consume("", 20);
	assert_true(c->allowed);
	assert_int_equal(c->usage->used, 100);
	assert_int_equal(c->usage->remaining, 0);
	free_msg(c);
	c = consume("", 1);
	assert_false(c->allowed);
	assert_reason(c, ENT__V1__REASON__REASON_LIMIT_EXCEEDED);
	assert_int_equal(c->usage->used, 100);
	uint64_t seq = c->sequence;
	free_msg(c);
	G.seq = seq > G.seq ? seq : G.seq;
	Ent__V1__CheckEntitlementResponse *chk = check(client_of(state), "it_usage_cust", F_API, 1);
	assert_false(chk->allowed);
	assert_int_equal(chk->usage->used, 100);
	free_msg(chk);

	rep.quantity = 0;
	rep.idempotency_key = "it-report-2";
	expect_status(G.admin, SVC "ReportUsage", &rep.base,
		      &ent__v1__report_usage_response__descriptor, GRPC_STATUS_INVALID_ARGUMENT,
		      "quantity");
	rep.quantity = 1;
	rep.idempotency_key = "";
	expect_status(G.admin, SVC "ReportUsage", &rep.base,
		      &ent__v1__report_usage_response__descriptor, GRPC_STATUS_INVALID_ARGUMENT,
		      "idempotency_key");
}

static int open_admin_group(void **state)
{
	if (!G.fixture_ok)
		return -1;
	/* The admin group writes through the TCP admin client; its checks go there too. */
	static struct transport admin_t = {"admin", &G.tcp, NULL};
	admin_t.c = G.admin;
	*state = &admin_t;
	return 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static int setup_fixture(void **state)
{
	G.now = ent_time_now_ms();
	if (ent_client_new(G.tcp, G.token, &G.admin))
		return -1;
	G.fixture_ok = build_fixture() == 0;
	return G.fixture_ok ? 0 : -1;
}

/* The read path, run once per transport. */
static const struct CMUnitTest read_tests[] = {
	cmocka_unit_test(test_check_entitled_boolean),
	cmocka_unit_test(test_check_metered_within_limit),
	cmocka_unit_test(test_check_limit_exceeded),
	cmocka_unit_test(test_check_soft_limit),
	cmocka_unit_test(test_check_not_entitled),
	cmocka_unit_test(test_check_unknown_customer),
	cmocka_unit_test(test_check_unknown_feature),
	cmocka_unit_test(test_check_disabled_by_override),
	cmocka_unit_test(test_check_override_limit_and_window),
	cmocka_unit_test(test_check_not_yet_active),
	cmocka_unit_test(test_check_expired),
	cmocka_unit_test(test_check_static_and_privileges),
	cmocka_unit_test(test_batch_order_and_reasons),
	cmocka_unit_test(test_batch_invalid_item_named),
	cmocka_unit_test(test_stream_lockstep),
	cmocka_unit_test(test_stream_pipelined),
	cmocka_unit_test(test_stream_invalid_request_ends_stream),
	cmocka_unit_test(test_get_entitlements_sources),
	cmocka_unit_test(test_get_entitlements_filter),
	cmocka_unit_test(test_health_check),
	cmocka_unit_test(test_health_watch_first),
	cmocka_unit_test(test_error_ids),
	cmocka_unit_test(test_error_negative_quantity),
	cmocka_unit_test(test_error_min_sequence_ahead),
	cmocka_unit_test(test_error_malformed_bytes),
	cmocka_unit_test(test_error_unknown_method),
	cmocka_unit_test(test_error_oversized),
};

int main(void)
{
	G.tcp = getenv("ENTD_TEST_TCP");
	G.unix_addr = getenv("ENTD_TEST_UNIX");
	G.token = getenv("ENTD_TEST_TOKEN");
	if (!G.tcp || !G.unix_addr || !G.token) {
		fprintf(stderr, "run me through tests/integration/harness.py "
				"(ENTD_TEST_TCP, ENTD_TEST_UNIX, ENTD_TEST_TOKEN)\n");
		return 2;
	}

	const struct CMUnitTest fixture_tests[] = {
		cmocka_unit_test(test_admin_unauthenticated),
		cmocka_unit_test(test_admin_demo_imported),
	};
	const struct CMUnitTest admin_tests[] = {
		cmocka_unit_test(test_admin_features),
		cmocka_unit_test(test_admin_plans_and_addons),
		cmocka_unit_test(test_admin_subscriptions),
		cmocka_unit_test(test_admin_overrides),
		cmocka_unit_test(test_admin_export_import),
		cmocka_unit_test(test_usage_and_consume),
	};

	int failed = cmocka_run_group_tests_name("fixture", fixture_tests, setup_fixture, NULL);
	failed += cmocka_run_group_tests_name("tcp", read_tests, open_tcp, close_transport);
	failed += cmocka_run_group_tests_name("unix", read_tests, open_unix, close_transport);
	failed += cmocka_run_group_tests_name("admin", admin_tests, open_admin_group, NULL);
	ent_client_free(G.admin);
	return failed ? 1 : 0;
}
