#!/usr/bin/python3
"""Integration tests with an independent client: Debian's Python grpcio.

Run by harness.py (ENTD_TEST_TCP, ENTD_TEST_UNIX, ENTD_TEST_TOKEN in the environment) against
an entd holding deploy/demo/demo.json. The protobuf modules are generated at test time with
protoc into --out; no grpcio-tools, no generated service stubs: every call is
channel.unary_unary / stream_stream / unary_stream with the messages' SerializeToString and
FromString.

Read tests use the demo customers and run over TCP and over the unix socket; windows that must
start or end are made relative to now through the admin RPCs, and the instants that decide an
answer are passed as the check's `at` (in the future: the daemon answers future instants
exactly), so nothing depends on the daemon's timers. The demo's own dates (overrides expiring
2030) keep its answers valid until then. The seed flows
(Hyperline, Zenskar, Flexprice, Lago) go through the admin RPCs on objects of their own ("py_"
codes) and never touch what the read tests look at.
"""
import argparse
import os
import subprocess
import sys
import unittest

# No __pycache__ in the source tree; the fixture module is next to this file.
sys.dont_write_bytecode = True
import harness  # noqa: E402  (it sets grpcio's environment before importing it)
from harness import DAY, Statuses, ms, now_ms, pb, reason  # noqa: E402,F401
import grpc  # noqa: E402

ARGS = None
TIMEOUT = 30  # seconds per call: generous on two shared cores


class Api(harness.Api):
    """The fixture's client (admin RPCs by name, raw) with the read path under short names:
    check, batch, get, health (unary), stream (bidirectional), watch (server stream)."""

    def __init__(self, target, metadata=None):
        super().__init__(target, metadata=metadata, timeout=TIMEOUT)
        e, h = pb["entitlement"], pb["health"]
        svc = "/ent.v1.EntitlementService/"
        self.check = self.CheckEntitlement
        self.batch = self.BatchCheckEntitlements
        self.get = self.GetCustomerEntitlements
        self.health = self.Health
        self.stream = self.channel.stream_stream(
            svc + "StreamCheckEntitlements",
            request_serializer=e.CheckEntitlementRequest.SerializeToString,
            response_deserializer=e.CheckEntitlementResponse.FromString)
        self.watch = self.channel.unary_stream(
            harness.HEALTH_WATCH,
            request_serializer=h.HealthCheckRequest.SerializeToString,
            response_deserializer=h.HealthCheckResponse.FromString)


def env(name):
    v = os.environ.get(name)
    if not v:
        raise SystemExit("run me through tests/integration/harness.py (%s is not set)" % name)
    return v


def req(customer, feature, quantity=0, at=0, min_sequence=0):
    return pb["entitlement"].CheckEntitlementRequest(
        customer_id=customer, feature_code=feature, quantity=quantity, at=at,
        min_sequence=min_sequence)


# ---- read path, over both transports ------------------------------------------------------

class ReadMixin(Statuses):
    TARGET_ENV = None

    @classmethod
    def setUpClass(cls):
        cls.api = Api(env(cls.TARGET_ENV))
        # Windows relative to now (the demo's dates are fixed): one subscription that starts
        # in 10 days, one that ends in 10 days. Upserts: both transports may write them.
        t, a = pb["types"], pb["admin"]
        admin = Api(env("ENTD_TEST_TCP"), metadata=[("authorization",
                                                     "Bearer " + env("ENTD_TEST_TOKEN"))])
        cls.t0 = getattr(ReadMixin, "t0", None) or now_ms()
        ReadMixin.t0 = cls.t0
        cls.seq = 0
        for sub, cust, start, end in [("py_rd_future", "py_rd_future", cls.t0 + 10 * DAY, 0),
                                      ("py_rd_ending", "py_rd_ending", cls.t0 - DAY,
                                       cls.t0 + 10 * DAY)]:
            r = admin.UpsertSubscription(a.UpsertSubscriptionRequest(
                subscription=t.Subscription(id=sub, customer_id=cust, plan_code="free",
                                            active_from=start, ends_at=end)))
            cls.seq = max(cls.seq, r.sequence)
        admin.close()

    @classmethod
    def tearDownClass(cls):
        cls.api.close()

    def check(self, *a, **kw):
        return self.api.check(req(*a, **kw))

    def test_check_entitled_boolean(self):
        r = self.check("cus_acme", "custom_domain")
        self.assertTrue(r.allowed)
        self.assertEqual(r.reason, reason("ENTITLED"))
        self.assertEqual(r.feature_type, pb["types"].FEATURE_TYPE_BOOLEAN)
        self.assertEqual(r.WhichOneof("value"), "bool_value")
        self.assertTrue(r.bool_value)
        self.assertGreater(r.sequence, 0)

    def test_check_metered_never_resets(self):
        # cus_umbrella: startup x2 -> storage_gb 2 x 100, 150 used (demo usage, NEVER resets).
        r = self.check("cus_umbrella", "storage_gb", 50)
        self.assertTrue(r.allowed)
        self.assertEqual(r.reason, reason("ENTITLED"))
        self.assertEqual(r.feature_type, pb["types"].FEATURE_TYPE_METERED)
        self.assertTrue(r.HasField("usage"))
        self.assertEqual((r.usage.limit, r.usage.used, r.usage.remaining), (200, 150, 50))
        self.assertEqual(r.usage.reset_period, pb["types"].RESET_PERIOD_NEVER)
        self.assertEqual(r.WhichOneof("value"), "number_value")
        self.assertEqual(r.number_value, 200)

    def test_check_limit_exceeded(self):
        r = self.check("cus_umbrella", "storage_gb", 51)
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("LIMIT_EXCEEDED"))
        self.assertEqual(r.usage.remaining, 50)

    def test_check_soft_limit(self):
        # startup's api_calls: 50000 soft, x2 for cus_umbrella, nothing used.
        r = self.check("cus_umbrella", "api_calls", 100001)
        self.assertTrue(r.allowed)
        self.assertEqual(r.reason, reason("ALLOWED_OVER_SOFT_LIMIT"))
        self.assertTrue(r.usage.is_soft_limit)
        self.assertEqual(r.usage.limit, 100000)

    def test_check_not_entitled(self):
        r = self.check("cus_initech", "sso")
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("NOT_ENTITLED"))

    def test_check_unknown_customer(self):
        r = self.check("cus_nobody", "sso")
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("UNKNOWN_CUSTOMER"))

    def test_check_unknown_feature(self):
        r = self.check("cus_acme", "no_such_feature")
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("UNKNOWN_FEATURE"))

    def test_check_disabled_by_override(self):
        r = self.check("cus_umbrella", "sso")
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("DISABLED_BY_OVERRIDE"))
        self.assertTrue(r.override_applied)
        self.assertEqual(r.override_reason, "SSO disabled during security review")

    def test_check_not_yet_active_then_active(self):
        # py_rd_future's only subscription (plan free: seats) starts in 10 days.
        r = self.check("py_rd_future", "seats", min_sequence=self.seq)
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("NOT_YET_ACTIVE"))
        self.assertEqual(r.next_change_at, self.t0 + 10 * DAY)
        r = self.check("py_rd_future", "seats", at=self.t0 + 11 * DAY, min_sequence=self.seq)
        self.assertTrue(r.allowed)
        self.assertEqual(r.reason, reason("ENTITLED"))

    def test_check_expired(self):
        # py_rd_ending's only subscription ends in 10 days.
        r = self.check("py_rd_ending", "seats", min_sequence=self.seq)
        self.assertTrue(r.allowed)
        self.assertEqual(r.next_change_at, self.t0 + 10 * DAY)
        r = self.check("py_rd_ending", "seats", at=self.t0 + 20 * DAY, min_sequence=self.seq)
        self.assertFalse(r.allowed)
        self.assertEqual(r.reason, reason("EXPIRED"))

    def test_check_privileges_and_static_values(self):
        r = self.check("cus_hooli", "seats")
        self.assertTrue(r.allowed)
        privs = {p.code: p for p in r.privileges}
        # The override raises max to 2000; the others come from the enterprise plan.
        self.assertEqual(privs["max"].int_value, 2000)
        self.assertEqual(privs["max"].value_type, pb["types"].PRIVILEGE_TYPE_INTEGER)
        self.assertEqual(privs["max_admins"].int_value, 50)
        self.assertTrue(privs["root"].bool_value)
        self.assertTrue(r.override_applied)
        r = self.check("cus_globex", "sla")
        self.assertEqual(r.feature_type, pb["types"].FEATURE_TYPE_STATIC)
        self.assertEqual(set(r.static_values), {"99.99%", "24x7-support", "priority-support"})
        self.assertEqual(r.string_value, r.static_values[0])
        r = self.check("cus_acme", "sso")
        self.assertEqual([(p.code, p.string_value) for p in r.privileges], [("provider", "google")])
        self.assertEqual(r.privileges[0].value_type, pb["types"].PRIVILEGE_TYPE_SELECT)

    MIXED = [("cus_acme", "custom_domain", 0, "ENTITLED"),
             ("cus_nobody", "sso", 0, "UNKNOWN_CUSTOMER"),
             ("cus_umbrella", "storage_gb", 51, "LIMIT_EXCEEDED"),
             ("cus_initech", "sso", 0, "NOT_ENTITLED"),
             ("cus_umbrella", "sso", 0, "DISABLED_BY_OVERRIDE"),
             ("cus_acme", "no_such_feature", 0, "UNKNOWN_FEATURE"),
             ("cus_umbrella", "api_calls", 100001, "ALLOWED_OVER_SOFT_LIMIT")]

    def test_batch_order_and_reasons(self):
        items = [self.MIXED[i % len(self.MIXED)] for i in range(50)]
        r = self.api.batch(pb["entitlement"].BatchCheckEntitlementsRequest(
            checks=[req(c, f, q) for c, f, q, _ in items]))
        self.assertEqual(len(r.results), len(items))
        for i, (res, (c, f, q, want)) in enumerate(zip(r.results, items)):
            self.assertEqual(res.reason, reason(want), "results[%d] %s/%s" % (i, c, f))
            self.assertEqual(res.sequence, r.sequence)

    def test_batch_invalid_item_named(self):
        checks = [req("cus_acme", "sso"), req("cus_acme", "sso"), req("cus_acme", "")]
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.api.batch,
                          pb["entitlement"].BatchCheckEntitlementsRequest(checks=checks),
                          contains="checks[2]")
        checks = [req("cus_acme", "sso"), req("cus_acme", "sso", quantity=-1)]
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.api.batch,
                          pb["entitlement"].BatchCheckEntitlementsRequest(checks=checks),
                          contains="checks[1]")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.api.batch,
                          pb["entitlement"].BatchCheckEntitlementsRequest())

    def test_stream_in_order(self):
        items = [self.MIXED[i % len(self.MIXED)] for i in range(300)]
        responses = list(self.api.stream(iter([req(c, f, q) for c, f, q, _ in items]),
                                         timeout=TIMEOUT))
        self.assertEqual(len(responses), len(items))
        for i, (res, (c, f, q, want)) in enumerate(zip(responses, items)):
            self.assertEqual(res.reason, reason(want), "response %d %s/%s" % (i, c, f))

    def test_stream_invalid_request_ends_it(self):
        it = self.api.stream(iter([req("cus_acme", "sso"), req("", "sso")]), timeout=TIMEOUT)
        first = next(it)
        self.assertEqual(first.reason, reason("ENTITLED"))
        with self.assertRaises(grpc.RpcError) as cm:
            next(it)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("customer_id", cm.exception.details())

    def test_get_entitlements_shape(self):
        # Flexprice's aggregated view: cus_globex has plan, add-on, subscription-level and
        # override sources.
        r = self.api.get(pb["entitlement"].GetCustomerEntitlementsRequest(customer_id="cus_globex"))
        self.assertEqual(r.customer_id, "cus_globex")
        feats = {f.feature.code: f for f in r.features}
        self.assertIn("sso", feats)
        st = pb["types"]
        storage = feats["storage_gb"]
        kinds = {s.entity_type: s for s in storage.sources}
        self.assertEqual(kinds[st.SOURCE_TYPE_PLAN].entity_id, "enterprise")
        self.assertEqual(kinds[st.SOURCE_TYPE_PLAN].subscription_id, "sub_globex")
        self.assertEqual(kinds[st.SOURCE_TYPE_SUBSCRIPTION].usage_limit, 4000)
        self.assertEqual(kinds[st.SOURCE_TYPE_SUBSCRIPTION].entity_id, "sub_globex")
        self.assertEqual(storage.entitlement.usage_limit, 5000)
        self.assertEqual(storage.entitlement.usage_reset_period, st.RESET_PERIOD_NEVER)
        support = {s.entity_type: s for s in feats["support_tickets"].sources}
        self.assertEqual(support[st.SOURCE_TYPE_ADDON].entity_id, "priority_support")
        self.assertEqual(support[st.SOURCE_TYPE_ADDON].quantity, 1)
        self.assertEqual(feats["support_tickets"].entitlement.usage_limit, 70)
        ai = feats["ai_credits"]
        ovr = [s for s in ai.sources if s.entity_type == st.SOURCE_TYPE_OVERRIDE]
        self.assertEqual(len(ovr), 1)
        self.assertEqual(ovr[0].reason, "Zenskar contract: 250k credits")
        self.assertEqual(ai.entitlement.usage_limit, 250000)
        self.assertTrue(all(s.active for s in ai.sources))
        # Add-on quantities multiply: cus_acme has 2 x extra_api_calls.
        r = self.api.get(pb["entitlement"].GetCustomerEntitlementsRequest(
            customer_id="cus_acme", feature_codes=["api_calls"]))
        self.assertEqual([f.feature.code for f in r.features], ["api_calls"])
        addon = [s for s in r.features[0].sources if s.entity_type == st.SOURCE_TYPE_ADDON][0]
        self.assertEqual((addon.entity_id, addon.quantity, addon.usage_limit),
                         ("extra_api_calls", 2, 10000))

    def test_get_entitlements_filter(self):
        r = self.api.get(pb["entitlement"].GetCustomerEntitlementsRequest(
            customer_id="cus_acme", feature_codes=["sso", "seats"]))
        self.assertEqual(sorted(f.feature.code for f in r.features), ["seats", "sso"])
        self.assertGreater(r.sequence, 0)

    def test_health_check_and_watch(self):
        h = pb["health"]
        serving = h.HealthCheckResponse.SERVING
        self.assertEqual(self.api.health(h.HealthCheckRequest()).status, serving)
        for svc in ("ent.v1.EntitlementService", "ent.v1.AdminService"):
            self.assertEqual(self.api.health(h.HealthCheckRequest(service=svc)).status, serving)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.api.health,
                          h.HealthCheckRequest(service="no.such.Service"))
        watch = self.api.watch(h.HealthCheckRequest(), timeout=TIMEOUT)
        self.assertEqual(next(watch).status, serving)
        watch.cancel()

    def test_errors_ids_and_quantity(self):
        code = grpc.StatusCode.INVALID_ARGUMENT
        self.assertStatus(code, self.check, "", "sso", contains="customer_id")
        self.assertStatus(code, self.check, "cus_acme", "", contains="feature_code")
        self.assertStatus(code, self.check, "c" * 300, "sso", contains="customer_id")
        self.assertStatus(code, self.check, "cus_acme", "f" * 300, contains="feature_code")
        self.assertStatus(code, self.check, "cus_acme", "api_calls", -5, contains="quantity")
        self.assertStatus(code, self.api.get,
                          pb["entitlement"].GetCustomerEntitlementsRequest(customer_id=""),
                          contains="customer_id")

    def test_min_sequence_ahead_is_unavailable(self):
        r = self.check("cus_acme", "custom_domain")
        self.assertStatus(grpc.StatusCode.UNAVAILABLE, self.check, "cus_acme", "custom_domain",
                          min_sequence=r.sequence + 1000000, contains="min_sequence")
        self.assertTrue(self.check("cus_acme", "custom_domain", min_sequence=r.sequence).allowed)

    def test_errors_wire(self):
        svc = "/ent.v1.EntitlementService/"
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.api.raw,
                          svc + "CheckEntitlement", b"\x0a\xff\xff\xff\xff\x0f\x01\x02")
        self.assertStatus(grpc.StatusCode.UNIMPLEMENTED, self.api.raw, svc + "NoSuchMethod", b"")
        self.assertStatus(grpc.StatusCode.UNIMPLEMENTED, self.api.raw, "/no.Such/Method", b"")
        self.assertStatus(grpc.StatusCode.RESOURCE_EXHAUSTED, self.api.raw,
                          svc + "CheckEntitlement", b"\x0a" + b"x" * (5 << 20))
        # The channel still works afterwards.
        self.assertTrue(self.check("cus_acme", "custom_domain").allowed)


class TcpReadTests(ReadMixin, unittest.TestCase):
    TARGET_ENV = "ENTD_TEST_TCP"


class UnixReadTests(ReadMixin, unittest.TestCase):
    TARGET_ENV = "ENTD_TEST_UNIX"


# ---- admin and the seed flows -------------------------------------------------------------

class AdminTests(Statuses, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tcp, tok = env("ENTD_TEST_TCP"), env("ENTD_TEST_TOKEN")
        cls.admin = Api(tcp, metadata=[("authorization", "Bearer " + tok)])
        cls.apikey = Api(tcp, metadata=[("x-api-key", tok)])
        cls.anon = Api(tcp)
        cls.wrong = Api(tcp, metadata=[("authorization", "Bearer nope")])
        cls.wrong_key = Api(tcp, metadata=[("x-api-key", "nope")])
        t, a = pb["types"], pb["admin"]
        # Features the flows grant, declared once.
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="py_api", name="PY API", type=t.FEATURE_TYPE_METERED)))
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="py_flag", name="PY flag", type=t.FEATURE_TYPE_BOOLEAN)))
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="py_seats", name="PY seats", type=t.FEATURE_TYPE_BOOLEAN, privileges=[
                t.PrivilegeDef(code="max", value_type=t.PRIVILEGE_TYPE_INTEGER),
                t.PrivilegeDef(code="root", value_type=t.PRIVILEGE_TYPE_BOOLEAN),
                t.PrivilegeDef(code="provider", value_type=t.PRIVILEGE_TYPE_SELECT,
                               select_options=["google", "okta"])])))

    @classmethod
    def tearDownClass(cls):
        for api in (cls.admin, cls.apikey, cls.anon, cls.wrong, cls.wrong_key):
            api.close()

    def subscribe(self, sub_id, customer, plan, addons=(), **kw):
        t, a = pb["types"], pb["admin"]
        r = self.admin.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id=sub_id, customer_id=customer, plan_code=plan,
            addons=[t.SubscriptionAddon(addon_code=c, quantity=q) for c, q in addons], **kw)))
        return r.sequence

    def plan(self, code, grants, patch=False, addon=False):
        a = pb["admin"]
        fn = {(False, False): self.admin.SetPlanEntitlements,
              (True, False): self.admin.PatchPlanEntitlements,
              (False, True): self.admin.SetAddonEntitlements,
              (True, True): self.admin.PatchAddonEntitlements}[(patch, addon)]
        return fn(a.SetEntitlementsRequest(code=code, name=code.upper(), entitlements=grants))

    def check(self, customer, feature, quantity=0, at=0, seq=0):
        return self.admin.check(req(customer, feature, quantity, at, seq))

    def test_auth_required(self):
        a = pb["admin"]
        for api in (self.anon, self.wrong, self.wrong_key):
            self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, api.GetStatus, a.GetStatusRequest())
            self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, api.DeleteFeature,
                              a.DeleteFeatureRequest(code="py_flag"))
            self.assertStatus(grpc.StatusCode.UNAUTHENTICATED, api.Export, a.ExportRequest())
        # Still there: the refused delete did nothing.
        self.assertEqual(self.admin.GetFeature(a.GetFeatureRequest(code="py_flag")).feature.code,
                         "py_flag")
        # Both credential forms work.
        self.assertGreater(self.apikey.GetStatus(a.GetStatusRequest()).sequence, 0)
        st = self.admin.GetStatus(a.GetStatusRequest())
        self.assertGreaterEqual(st.features, 11)  # the demo's
        self.assertGreaterEqual(st.customers, 6)
        self.assertTrue(st.version)

    def test_feature_crud_and_paging(self):
        t, a = pb["types"], pb["admin"]
        f = self.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="py_tmp", name="Temp", type=t.FEATURE_TYPE_STATIC, metadata={"k": "v"}))).feature
        self.assertEqual(f.metadata["k"], "v")
        self.assertGreater(f.created_at, 0)
        codes, token = [], ""
        while True:
            page = self.admin.ListFeatures(a.ListFeaturesRequest(page_size=3, page_token=token))
            self.assertLessEqual(len(page.features), 3)
            codes += [x.code for x in page.features]
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(len(codes), len(set(codes)))
        self.assertIn("py_tmp", codes)
        self.assertIn("api_calls", codes)
        self.assertTrue(self.admin.DeleteFeature(a.DeleteFeatureRequest(code="py_tmp")).deleted)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.admin.GetFeature,
                          a.GetFeatureRequest(code="py_tmp"))
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.ListFeatures,
                          a.ListFeaturesRequest(page_size=5000), contains="page_size")

    def test_hyperline_override(self):
        """PUT /v1/customers/{id}/entitlements/{feature_code}: value, reason, expires_at; the
        answer echoes them with created_at/updated_at, and checks see the override."""
        t, a = pb["types"], pb["admin"]
        self.plan("py_hl_plan", [t.Grant(feature_code="py_api", usage_limit=10)])
        seq = self.subscribe("py_hl_sub", "py_hl_cust", "py_hl_plan")
        self.assertEqual(self.check("py_hl_cust", "py_api", 11, seq=seq).reason,
                         reason("LIMIT_EXCEEDED"))
        expires = now_ms() + 30 * DAY
        r = self.admin.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
            customer_id="py_hl_cust", feature_code="py_api",
            value=t.OverrideValue(number_value=500), reason="Q4 promotion", expires_at=expires))
        e = r.entitlement
        self.assertEqual((e.customer_id, e.feature_code, e.reason, e.expires_at),
                         ("py_hl_cust", "py_api", "Q4 promotion", expires))
        self.assertEqual(e.value.number_value, 500)
        self.assertGreater(e.created_at, 0)
        self.assertGreaterEqual(e.updated_at, e.created_at)
        c = self.check("py_hl_cust", "py_api", 11, seq=r.sequence)
        self.assertTrue(c.allowed)
        self.assertTrue(c.override_applied)
        self.assertEqual(c.override_reason, "Q4 promotion")
        self.assertEqual(c.override_expires_at, expires)
        self.assertEqual(c.usage.limit, 500)
        # After expires_at the plan's limit is back, whatever the timers did.
        c = self.check("py_hl_cust", "py_api", 11, at=expires + 1, seq=r.sequence)
        self.assertFalse(c.allowed)
        self.assertFalse(c.override_applied)
        # Setting again keeps created_at and moves updated_at.
        r2 = self.admin.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
            customer_id="py_hl_cust", feature_code="py_api", value=t.OverrideValue(bool_value=False),
            reason="suspended"))
        self.assertEqual(r2.entitlement.created_at, e.created_at)
        self.assertGreaterEqual(r2.entitlement.updated_at, e.updated_at)
        c = self.check("py_hl_cust", "py_api", 1, seq=r2.sequence)
        self.assertEqual(c.reason, reason("DISABLED_BY_OVERRIDE"))
        lst = self.admin.ListCustomerEntitlements(
            a.ListCustomerEntitlementsRequest(customer_id="py_hl_cust"))
        self.assertEqual([o.feature_code for o in lst.entitlements], ["py_api"])
        self.assertEqual(lst.entitlements[0].reason, "suspended")
        # value is required (Hyperline), and the ids are checked.
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.SetCustomerEntitlement,
                          a.SetCustomerEntitlementRequest(customer_id="py_hl_cust",
                                                          feature_code="py_api"),
                          contains="value")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.SetCustomerEntitlement,
                          a.SetCustomerEntitlementRequest(customer_id="", feature_code="py_api",
                                                          value=t.OverrideValue(bool_value=True)),
                          contains="customer_id")
        d = self.admin.DeleteCustomerEntitlement(a.DeleteCustomerEntitlementRequest(
            customer_id="py_hl_cust", feature_code="py_api"))
        self.assertTrue(d.deleted)
        self.assertEqual(self.check("py_hl_cust", "py_api", 11, seq=d.sequence).reason,
                         reason("LIMIT_EXCEEDED"))

    def test_zenskar_partial_update(self):
        """PATCH quantity / quantity_used / active_from / expiry_at: only what is sent changes."""
        t, a = pb["types"], pb["admin"]
        from google.protobuf import wrappers_pb2 as w
        self.plan("py_zk_plan", [t.Grant(feature_code="py_api", usage_limit=5)])
        self.subscribe("py_zk_sub", "py_zk_cust", "py_zk_plan")
        upd = self.admin.UpdateCustomerEntitlement
        r = upd(a.UpdateCustomerEntitlementRequest(
            customer_id="py_zk_cust", feature_code="py_api", quantity=w.Int64Value(value=100)))
        self.assertEqual(r.entitlement.quantity.value, 100)
        c = self.check("py_zk_cust", "py_api", 60, seq=r.sequence)
        self.assertTrue(c.allowed)
        self.assertEqual(c.usage.limit, 100)
        # quantity_used alone: the quantity stays.
        r = upd(a.UpdateCustomerEntitlementRequest(
            customer_id="py_zk_cust", feature_code="py_api", quantity_used=w.Int64Value(value=70)))
        self.assertEqual(r.entitlement.quantity.value, 100)
        self.assertEqual(r.entitlement.quantity_used, 70)
        c = self.check("py_zk_cust", "py_api", 31, seq=r.sequence)
        self.assertEqual((c.usage.limit, c.usage.used, c.usage.remaining), (100, 70, 30))
        self.assertEqual(c.reason, reason("LIMIT_EXCEEDED"))
        # expiry_at: the quantity holds until then, the plan's 5 after.
        exp = now_ms() + 10 * DAY
        r = upd(a.UpdateCustomerEntitlementRequest(
            customer_id="py_zk_cust", feature_code="py_api", expiry_at=w.Int64Value(value=exp)))
        self.assertEqual(r.entitlement.expires_at, exp)
        self.assertEqual(r.entitlement.quantity.value, 100)
        self.assertEqual(self.check("py_zk_cust", "py_api", 1, seq=r.sequence).usage.limit, 100)
        self.assertEqual(self.check("py_zk_cust", "py_api", 1, at=exp, seq=r.sequence).usage.limit,
                         5)
        # active_from in the future: not yet applied now.
        start = now_ms() + 2 * DAY
        r = upd(a.UpdateCustomerEntitlementRequest(
            customer_id="py_zk_cust", feature_code="py_api", active_from=w.Int64Value(value=start)))
        self.assertEqual(r.entitlement.active_from, start)
        self.assertEqual(r.entitlement.expires_at, exp)
        c = self.check("py_zk_cust", "py_api", 1, seq=r.sequence)
        self.assertFalse(c.override_applied)
        self.assertEqual(c.usage.limit, 5)
        c = self.check("py_zk_cust", "py_api", 1, at=start + DAY, seq=r.sequence)
        self.assertTrue(c.override_applied)
        self.assertEqual(c.usage.limit, 100)
        # Nothing to update / negative values are 422-style INVALID_ARGUMENT naming the field.
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, upd,
                          a.UpdateCustomerEntitlementRequest(customer_id="py_zk_cust",
                                                             feature_code="py_api"))
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, upd,
                          a.UpdateCustomerEntitlementRequest(
                              customer_id="py_zk_cust", feature_code="py_api",
                              quantity=w.Int64Value(value=-1)),
                          contains="quantity")

    def test_flexprice_aggregated_view(self):
        """GET /customers/{id}/entitlements: per feature the aggregate and its sources, with
        plan, add-on, subscription and override sources and their quantities."""
        t, a, e = pb["types"], pb["admin"], pb["entitlement"]
        self.plan("py_fp_plan", [t.Grant(feature_code="py_api", usage_limit=100,
                                         usage_reset_period=t.RESET_PERIOD_MONTHLY),
                                 t.Grant(feature_code="py_flag")])
        self.plan("py_fp_addon", [t.Grant(feature_code="py_api", usage_limit=25,
                                          usage_reset_period=t.RESET_PERIOD_MONTHLY)], addon=True)
        self.subscribe("py_fp_sub", "py_fp_cust", "py_fp_plan", addons=[("py_fp_addon", 4)],
                       quantity=2, entitlements=[t.Grant(
                           feature_code="py_api", usage_limit=7,
                           usage_reset_period=t.RESET_PERIOD_MONTHLY)])
        r = self.admin.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
            customer_id="py_fp_cust", feature_code="py_flag", value=t.OverrideValue(bool_value=True),
            reason="kept on"))
        g = self.admin.get(e.GetCustomerEntitlementsRequest(customer_id="py_fp_cust",
                                                            min_sequence=r.sequence))
        feats = {f.feature.code: f for f in g.features}
        self.assertEqual(set(feats), {"py_api", "py_flag"})
        api = feats["py_api"]
        self.assertEqual(api.feature.type, t.FEATURE_TYPE_METERED)
        src = {s.entity_type: s for s in api.sources}
        self.assertEqual(set(src), {t.SOURCE_TYPE_PLAN, t.SOURCE_TYPE_ADDON,
                                    t.SOURCE_TYPE_SUBSCRIPTION})
        self.assertEqual((src[t.SOURCE_TYPE_PLAN].entity_id, src[t.SOURCE_TYPE_PLAN].quantity,
                          src[t.SOURCE_TYPE_PLAN].usage_limit), ("py_fp_plan", 2, 100))
        self.assertEqual((src[t.SOURCE_TYPE_ADDON].entity_id, src[t.SOURCE_TYPE_ADDON].quantity,
                          src[t.SOURCE_TYPE_ADDON].usage_limit), ("py_fp_addon", 4, 25))
        self.assertEqual(src[t.SOURCE_TYPE_SUBSCRIPTION].usage_limit, 7)
        for s in api.sources:
            self.assertEqual(s.subscription_id, "py_fp_sub")
            self.assertTrue(s.active)
            self.assertTrue(s.is_enabled)
        # 100 x 2 + 25 x 4 + 7: limits add up, multiplied by their quantities.
        self.assertEqual(api.entitlement.usage_limit, 307)
        self.assertTrue(api.entitlement.is_enabled)
        # The period comes from the highest-precedence source (docs/semantics.md rule 9).
        self.assertEqual(api.entitlement.usage_reset_period, t.RESET_PERIOD_MONTHLY)
        self.assertEqual(api.entitlement.usage.limit, 307)
        self.assertEqual(api.entitlement.reason, reason("ENTITLED"))
        flag = feats["py_flag"]
        kinds = sorted(s.entity_type for s in flag.sources)
        self.assertEqual(kinds, [t.SOURCE_TYPE_PLAN, t.SOURCE_TYPE_OVERRIDE])
        self.assertEqual(flag.entitlement.override_reason, "kept on")

    def test_lago_set_patch_validate(self):
        """POST replaces all of a plan's entitlements, PATCH merges, and every privilege value
        is validated against its feature (INVALID_ARGUMENT naming it)."""
        t, a = pb["types"], pb["admin"]

        def pv(code, **kw):
            return t.PrivilegeValue(code=code, **kw)
        r = self.plan("py_lago", [
            t.Grant(feature_code="py_seats", privileges=[pv("max", int_value=10),
                                                          pv("provider", string_value="okta")]),
            t.Grant(feature_code="py_flag")])
        self.assertEqual(len(r.entitlements), 2)
        # Set replaces: only py_api remains.
        r = self.plan("py_lago", [t.Grant(feature_code="py_api", usage_limit=3)])
        got = self.admin.GetPlanEntitlements(a.GetEntitlementsRequest(code="py_lago"))
        self.assertEqual([g.feature_code for g in got.entitlements], ["py_api"])
        self.assertEqual(got.name, "PY_LAGO")
        # Patch merges: py_seats added, py_api kept; patching py_api again replaces its grant.
        self.plan("py_lago", [t.Grant(feature_code="py_seats",
                                      privileges=[pv("max", int_value=25), pv("root", bool_value=True)])],
                  patch=True)
        r = self.plan("py_lago", [t.Grant(feature_code="py_api", usage_limit=9)], patch=True)
        grants = {g.feature_code: g for g in r.entitlements}
        self.assertEqual(set(grants), {"py_api", "py_seats"})
        self.assertEqual(grants["py_api"].usage_limit, 9)
        self.assertEqual({p.code: p.int_value or p.bool_value for p in grants["py_seats"].privileges},
                         {"max": 25, "root": True})
        # ...and a subscriber sees the merged plan.
        seq = self.subscribe("py_lago_sub", "py_lago_cust", "py_lago")
        c = self.check("py_lago_cust", "py_seats", seq=seq)
        self.assertTrue(c.allowed)
        self.assertEqual({p.code: p.int_value for p in c.privileges if p.code == "max"}, {"max": 25})
        self.assertEqual(self.check("py_lago_cust", "py_api", 10, seq=seq).reason,
                         reason("LIMIT_EXCEEDED"))
        bad = [
            ([pv("nope", int_value=1)], "nope"),                       # undeclared privilege
            ([pv("provider", string_value="azure")], "provider"),     # not a select option
            ([pv("max", string_value="ten")], "max"),                 # wrong value type
            ([pv("root", int_value=1)], "root"),
        ]
        for privs, name in bad:
            for patch in (False, True):
                self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.plan, "py_lago",
                                  [t.Grant(feature_code="py_seats", privileges=privs)], patch,
                                  contains=name)
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.plan, "py_lago",
                          [t.Grant(feature_code="py_no_such_feature")],
                          contains="py_no_such_feature")
        # The refused writes changed nothing.
        got = self.admin.GetPlanEntitlements(a.GetEntitlementsRequest(code="py_lago"))
        self.assertEqual(sorted(g.feature_code for g in got.entitlements), ["py_api", "py_seats"])

    def test_addon_and_subscription_lifecycle(self):
        t, a = pb["types"], pb["admin"]
        self.plan("py_lc_plan", [t.Grant(feature_code="py_flag")])
        self.plan("py_lc_addon", [t.Grant(feature_code="py_api", usage_limit=4)], addon=True)
        got = self.admin.GetAddonEntitlements(a.GetEntitlementsRequest(code="py_lc_addon"))
        self.assertEqual(got.entitlements[0].usage_limit, 4)
        self.subscribe("py_lc_sub", "py_lc_cust", "py_lc_plan", addons=[("py_lc_addon", 3)])
        end = now_ms() + 3 * DAY
        r = self.admin.CancelSubscription(a.CancelSubscriptionRequest(
            customer_id="py_lc_cust", subscription_id="py_lc_sub", at=end))
        self.assertEqual(r.subscription.ends_at, end)
        self.assertTrue(self.check("py_lc_cust", "py_flag", seq=r.sequence).allowed)
        c = self.check("py_lc_cust", "py_api", 12, seq=r.sequence)
        self.assertTrue(c.allowed)
        self.assertEqual(c.usage.limit, 12)
        c = self.check("py_lc_cust", "py_flag", at=end, seq=r.sequence)
        self.assertEqual(c.reason, reason("EXPIRED"))
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.admin.CancelSubscription,
                          a.CancelSubscriptionRequest(customer_id="py_lc_cust",
                                                      subscription_id="py_nope"))
        # Add-on deletion is refused or applied, but never leaves a dangling success answer.
        self.plan("py_lc_addon2", [t.Grant(feature_code="py_api", usage_limit=1)], addon=True)
        d = self.admin.DeleteAddonEntitlements(a.GetEntitlementsRequest(code="py_lc_addon2"))
        self.assertTrue(d.deleted)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.admin.GetAddonEntitlements,
                          a.GetEntitlementsRequest(code="py_lc_addon2"))

    def test_delete_of_referenced_plan_is_refused(self):
        """A plan that a subscription still names cannot be deleted (the export would name a
        plan that no longer exists); the refusal names the plan and changes nothing."""
        t, a = pb["types"], pb["admin"]
        self.plan("py_ref_plan", [t.Grant(feature_code="py_flag")])
        self.subscribe("py_ref_sub", "py_ref_cust", "py_ref_plan")
        self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION, self.admin.DeletePlanEntitlements,
                          a.GetEntitlementsRequest(code="py_ref_plan"), contains="py_ref_plan")
        got = self.admin.GetPlanEntitlements(a.GetEntitlementsRequest(code="py_ref_plan"))
        self.assertEqual([g.feature_code for g in got.entitlements], ["py_flag"])
        ex = self.admin.Export(a.ExportRequest())
        self.admin.Import(a.ImportRequest(json=ex.json))

    def test_import_is_all_or_nothing(self):
        """A document whose plan names an unknown feature is refused whole: the valid feature
        before it is not written either, and the sequence does not move."""
        a = pb["admin"]
        doc = ('{"features": [{"code": "py_atomic_f", "type": "boolean"}],'
               ' "plans": {"py_atomic_p": {"entitlements": {"py_no_such_feature": {}}}}}')
        before = self.admin.GetStatus(a.GetStatusRequest()).sequence
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.Import,
                          a.ImportRequest(json=doc), contains="py_no_such_feature")
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.admin.GetFeature,
                          a.GetFeatureRequest(code="py_atomic_f"))
        self.assertEqual(self.admin.GetStatus(a.GetStatusRequest()).sequence, before)

    def test_export_import_roundtrip(self):
        a = pb["admin"]
        ex = self.admin.Export(a.ExportRequest())
        self.assertIn('"cus_acme"', ex.json)
        im = self.admin.Import(a.ImportRequest(json=ex.json))
        self.assertGreater(im.changes, 0)
        self.assertGreater(im.sequence, ex.sequence)
        c = self.check("cus_umbrella", "storage_gb", 50, seq=im.sequence)
        self.assertEqual((c.usage.limit, c.usage.used), (200, 150))
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.Import,
                          a.ImportRequest(json='{"features": 5}'), contains="features")


class UsageTests(Statuses, unittest.TestCase):
    """ReportUsage (idempotent by key) and ConsumeEntitlement (atomic check-and-consume)."""

    def test_report_and_consume(self):
        t, a, e = pb["types"], pb["admin"], pb["entitlement"]
        admin = Api(env("ENTD_TEST_TCP"), metadata=[("authorization",
                                                     "Bearer " + env("ENTD_TEST_TOKEN"))])
        self.addCleanup(admin.close)
        admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="py_units", type=t.FEATURE_TYPE_METERED)))
        admin.SetPlanEntitlements(a.SetEntitlementsRequest(code="py_units_plan", entitlements=[
            t.Grant(feature_code="py_units", usage_limit=10,
                    usage_reset_period=t.RESET_PERIOD_NEVER)]))
        admin.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id="py_units_sub", customer_id="py_units_cust", plan_code="py_units_plan")))
        report, consume = admin.ReportUsage, admin.ConsumeEntitlement
        rq = e.ReportUsageRequest(customer_id="py_units_cust", feature_code="py_units",
                                  quantity=4, idempotency_key="py-r1")
        r1, r2 = report(rq), report(rq)
        self.assertEqual((r1.duplicate, r1.usage.used), (False, 4))
        self.assertEqual((r2.duplicate, r2.usage.used), (True, 4))
        c = consume(e.ConsumeEntitlementRequest(customer_id="py_units_cust",
                                                feature_code="py_units", quantity=6,
                                                idempotency_key="py-c1"))
        self.assertTrue(c.allowed)
        self.assertEqual((c.usage.used, c.usage.remaining), (10, 0))
        again = consume(e.ConsumeEntitlementRequest(customer_id="py_units_cust",
                                                    feature_code="py_units", quantity=6,
                                                    idempotency_key="py-c1"))
        self.assertTrue(again.duplicate)
        self.assertEqual(again.usage.used, 10)
        no = consume(e.ConsumeEntitlementRequest(customer_id="py_units_cust",
                                                 feature_code="py_units", quantity=1))
        self.assertFalse(no.allowed)
        self.assertEqual(no.reason, reason("LIMIT_EXCEEDED"))
        chk = admin.check(req("py_units_cust", "py_units", 1, min_sequence=no.sequence))
        self.assertEqual((chk.allowed, chk.usage.used), (False, 10))
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, report,
                          e.ReportUsageRequest(customer_id="py_units_cust",
                                               feature_code="py_units", quantity=1),
                          contains="idempotency_key")


class EntctlTests(unittest.TestCase):
    """The command line against the same daemon: output, --json and exit statuses
    (0 RPC ok, 1 RPC error, 2 usage)."""

    def run_ctl(self, *args, token=None, stdin=None):
        e = dict(os.environ, ENTD_ADDR=env("ENTD_TEST_TCP"))
        e.pop("ENTD_ADMIN_TOKEN", None)
        if token:
            e["ENTD_ADMIN_TOKEN"] = token
        return subprocess.run([env("ENTD_TEST_ENTCTL")] + list(args), env=e, input=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=120)

    def json_of(self, *args, **kw):
        p = self.run_ctl(*args, **kw)
        self.assertEqual(p.returncode, 0, p.stderr)
        import json
        return json.loads(p.stdout)

    def test_health(self):
        p = self.run_ctl("health")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "SERVING"))
        p = self.run_ctl("health", "-a", env("ENTD_TEST_UNIX"), "--watch")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "SERVING"))
        self.assertEqual(self.json_of("health", "--json"), {"status": "SERVING"})
        p = self.run_ctl("health", "no.such.Service")
        self.assertEqual(p.returncode, 1)
        self.assertIn("NOT_FOUND", p.stderr)

    def test_check_outputs_and_statuses(self):
        j = self.json_of("check", "--json", "cus_umbrella", "storage_gb", "51")
        self.assertEqual((j["allowed"], j["reason"]), (False, "REASON_LIMIT_EXCEEDED"))
        self.assertEqual(j["usage"]["used"], 150)
        p = self.run_ctl("check", "cus_acme", "custom_domain")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"allowed\s+yes")
        self.assertRegex(p.stdout, r"reason\s+ENTITLED")
        # A denial is still a successful RPC: exit 0.
        p = self.run_ctl("check", "cus_initech", "sso")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"reason\s+NOT_ENTITLED")
        p = self.run_ctl("admin", "subscription", "upsert",
                         '{"id": "py_cli_later", "customer_id": "py_cli_later",'
                         ' "plan_code": "free", "active_from": "now+10d"}',
                         token=env("ENTD_TEST_TOKEN"))
        self.assertEqual(p.returncode, 0, p.stderr)
        j = self.json_of("check", "--json", "py_cli_later", "seats")
        self.assertEqual(j["reason"], "REASON_NOT_YET_ACTIVE")
        j = self.json_of("check", "--json", "--at", "now+11d", "py_cli_later", "seats")
        self.assertEqual(j["reason"], "REASON_ENTITLED")
        p = self.run_ctl("check", "", "sso")
        self.assertEqual(p.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", p.stderr)
        self.assertIn("customer_id", p.stderr)
        self.assertEqual(self.run_ctl("check", "only_one_arg").returncode, 2)
        self.assertEqual(self.run_ctl("check", "--at", "yesterday", "a", "b").returncode, 2)
        p = self.run_ctl("check", "-a", "127.0.0.1:1", "cus_acme", "sso")
        self.assertEqual(p.returncode, 1)
        self.assertIn("UNAVAILABLE", p.stderr)

    def test_get(self):
        j = self.json_of("get", "--json", "cus_acme", "sso", "seats")
        self.assertEqual(sorted(f["feature"]["code"] for f in j["features"]), ["seats", "sso"])
        p = self.run_ctl("get", "cus_globex")
        self.assertEqual(p.returncode, 0)
        self.assertIn("priority_support", p.stdout)
        self.assertIn("OVERRIDE", p.stdout)

    def test_usage_and_consume(self):
        tok = env("ENTD_TEST_TOKEN")
        self.assertEqual(self.run_ctl("admin", "subscription", "upsert",
                                      '{"id": "py_cli_usage", "customer_id": "py_cli_usage",'
                                      ' "plan_code": "free"}', token=tok).returncode, 0)
        j = self.json_of("usage", "--json", "--key", "cli-1", "py_cli_usage", "storage_gb", "1")
        self.assertEqual((j["duplicate"], j["usage"]["used"]), (False, 1))
        j = self.json_of("usage", "--json", "--key", "cli-1", "py_cli_usage", "storage_gb", "1")
        self.assertTrue(j["duplicate"])
        j = self.json_of("consume", "--json", "py_cli_usage", "storage_gb")
        self.assertEqual((j["allowed"], j["reason"]), (False, "REASON_LIMIT_EXCEEDED"))
        self.assertEqual(self.run_ctl("usage", "py_cli_usage", "storage_gb", "1").returncode, 2)

    def test_admin_needs_token(self):
        p = self.run_ctl("admin", "status")
        self.assertEqual(p.returncode, 1)
        self.assertIn("UNAUTHENTICATED", p.stderr)
        p = self.run_ctl("admin", "status", "--token", "wrong")
        self.assertEqual(p.returncode, 1)
        j = self.json_of("admin", "status", "--json", token=env("ENTD_TEST_TOKEN"))
        self.assertGreater(j["sequence"], 0)
        self.assertGreaterEqual(j["features"], 11)
        self.assertEqual(self.run_ctl("admin", "nonsense", token="x").returncode, 2)

    def test_admin_document_bodies(self):
        """Bodies in the import document's shape (privileges inline, RFC 3339 or now+N times)
        and in proto3 JSON both work; bad bodies name the field and exit 2."""
        tok = env("ENTD_TEST_TOKEN")

        def ok(*args, stdin=None):
            p = self.run_ctl("admin", *args, token=tok, stdin=stdin)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p
        ok("feature", "upsert", '{"code": "py_cli_sso", "type": "boolean", "privileges": ['
           '{"code": "provider", "value_type": "select",'
           ' "config": {"select_options": ["google", "okta"]}}]}')
        ok("plan", "set", "py_cli_plan", "-",
           stdin='{"name": "CLI", "entitlements": {"py_cli_sso": {"provider": "okta"}}}')
        ok("subscription", "upsert", '{"id": "py_cli_sub", "customer_id": "py_cli_cust",'
           ' "plan_code": "py_cli_plan", "active_from": "2024-01-01T00:00:00Z"}')
        j = self.json_of("check", "--json", "py_cli_cust", "py_cli_sso")
        self.assertEqual(j["privileges"][0]["string_value"], "okta")
        # proto3 JSON: a list of grants, enum short names.
        ok("plan", "patch", "py_cli_plan",
           '[{"feature_code": "api_calls", "usage_limit": 5, "usage_reset_period": "daily"}]')
        j = self.json_of("admin", "plan", "get", "py_cli_plan", "--json", token=tok)
        self.assertEqual(sorted(g["feature_code"] for g in j["entitlements"]),
                         ["api_calls", "py_cli_sso"])
        # Hyperline override with a relative expiry, then a Zenskar update.
        ok("override", "set", "py_cli_cust", "api_calls",
           '{"value": 50, "reason": "cli", "expires_at": "now+1d"}')
        ok("override", "update", "py_cli_cust", "api_calls", '{"quantity_used": 7}')
        j = self.json_of("check", "--json", "py_cli_cust", "api_calls")
        self.assertEqual((j["usage"]["limit"], j["usage"]["used"]), (50, 7))
        self.assertEqual(j["override_reason"], "cli")
        j = self.json_of("admin", "override", "list", "py_cli_cust", "--json", token=tok)
        self.assertEqual(len(j["entitlements"]), 1)
        # Server-side validation: exit 1 with the status; body errors: exit 2 with the path.
        p = self.run_ctl("admin", "plan", "patch", "py_cli_plan",
                         '{"entitlements": {"py_cli_sso": {"provider": "aol"}}}', token=tok)
        self.assertEqual(p.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", p.stderr)
        p = self.run_ctl("admin", "feature", "upsert", '{"code": "x", "colour": "red"}', token=tok)
        self.assertEqual(p.returncode, 2)
        self.assertIn("colour", p.stderr)
        p = self.run_ctl("admin", "override", "update", "py_cli_cust", "api_calls",
                         '{"quantity": "many"}', token=tok)
        self.assertEqual(p.returncode, 2)
        self.assertIn("quantity", p.stderr)
        ok("override", "delete", "py_cli_cust", "api_calls")
        ok("addon", "set", "py_cli_unused", '{"entitlements": {"api_calls": {"usage_limit": 1}}}')
        ok("addon", "delete", "py_cli_unused")
        p = self.run_ctl("admin", "addon", "get", "py_cli_unused", token=tok)
        self.assertEqual(p.returncode, 1)
        self.assertIn("NOT_FOUND", p.stderr)

    def test_admin_export_import(self):
        tok = env("ENTD_TEST_TOKEN")
        path = os.path.join(env("ENTD_TEST_DIR"), "cli-export.json")
        p = self.run_ctl("admin", "export", path, token=tok)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(path) as f:
            self.assertIn("cus_hooli", f.read())
        j = self.json_of("admin", "import", path, "--json", token=tok)
        self.assertGreater(j["changes"], 0)
        p = self.run_ctl("admin", "import", "/nonexistent.json", token=tok)
        self.assertEqual(p.returncode, 1)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--out", required=True)
    ARGS, rest = ap.parse_known_args()
    harness.generate(ARGS.proto_dir, ARGS.protoc, ARGS.out)
    unittest.main(argv=[sys.argv[0], "-v"] + rest)


if __name__ == "__main__":
    main()
