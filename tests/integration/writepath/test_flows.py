#!/usr/bin/python3
"""integration.writepath.flows: each seed page's example flow end to end, through real gRPC,
including the part test_grpcio.py cannot do with `at` alone: the wall clock passing the
expiry. set -> check -> check at the boundary -> the boundary passes -> check -> the expired
object is gone from storage (the writer's timer) and the answers did not change when it went.

Timing never decides pass/fail: windows are a few seconds wide, and every check that must run
*before* a boundary verifies that its answer arrived before it; if the machine was too slow for
that, the flow is repeated with fresh objects and a window twice as wide (TooSlow). Waiting
*for* a boundary sleeps until the wall clock is past it (same machine, same clock as entd), and
waiting for the timer's cleanup polls with a generous bound.
"""

import wp
from wp import pb, reason, sleep_until

CLEANUP_BOUND = 60  # seconds the timer may take to remove an expired object on a busy machine


class SeedFlows(wp.Statuses, wp.DaemonCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t, a = pb["types"], pb["admin"]
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wf_api", name="API calls", type=t.FEATURE_TYPE_METERED,
            unit_singular="call", unit_plural="calls")))
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wf_flag", name="Flag", type=t.FEATURE_TYPE_BOOLEAN)))
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wf_seats", name="Number of seats", type=t.FEATURE_TYPE_BOOLEAN, privileges=[
                t.PrivilegeDef(code="max", name="Maximum", value_type=t.PRIVILEGE_TYPE_INTEGER),
                t.PrivilegeDef(code="provider", value_type=t.PRIVILEGE_TYPE_SELECT,
                               select_options=["google", "okta"])])))

    # ---- helpers -------------------------------------------------------------------------

    def with_margins(self, flow):
        return wp.with_margins(self, flow)

    def before(self, deadline, fn, *args, **kw):
        """fn(...) whose answer must be read before the boundary `deadline` (ms)."""
        r = fn(*args, **kw)
        wp.assert_before(deadline)
        return r

    def check(self, customer, feature, quantity=0, at=0, seq=0):
        return self.admin.check(customer, feature, quantity, at=at, min_sequence=seq)

    def overrides(self, customer):
        a = pb["admin"]
        return [o.feature_code for o in self.admin.ListCustomerEntitlements(
            a.ListCustomerEntitlementsRequest(customer_id=customer)).entitlements]

    def wait_overrides_gone(self, customer, features):
        left = wp.wait_until(lambda: not set(features) & set(self.overrides(customer)),
                             CLEANUP_BOUND)
        self.assertTrue(left, "overrides %s of %s still stored %ds after they expired"
                        % (features, customer, CLEANUP_BOUND))

    def subscribe(self, sub, customer, plan, **kw):
        t, a = pb["types"], pb["admin"]
        return self.admin.UpsertSubscription(a.UpsertSubscriptionRequest(
            subscription=t.Subscription(id=sub, customer_id=customer, plan_code=plan, **kw)))

    def privs(self, c):
        return {p.code: (p.int_value if p.WhichOneof("value") == "int_value" else
                         p.string_value) for p in c.privileges}

    # ---- Hyperline: PUT /v1/customers/{id}/entitlements/{feature_code} --------------------

    def test_hyperline_override_expires(self):
        t, a = pb["types"], pb["admin"]

        def flow(n, margin):
            cus, plan = "wf_hl_cus%d" % n, "wf_hl_plan%d" % n
            self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_api", usage_limit=10,
                        usage_reset_period=t.RESET_PERIOD_MONTHLY),
                t.Grant(feature_code="wf_flag")]))
            self.subscribe("wf_hl_sub%d" % n, cus, plan)
            exp = wp.now_ms() + margin
            r1 = wp.expiring(self.admin.SetCustomerEntitlement, a.SetCustomerEntitlementRequest(
                customer_id=cus, feature_code="wf_api", value=t.OverrideValue(number_value=500),
                reason="Q4 promotion", expires_at=exp))
            r2 = wp.expiring(self.admin.SetCustomerEntitlement, a.SetCustomerEntitlementRequest(
                customer_id=cus, feature_code="wf_flag", value=t.OverrideValue(bool_value=False),
                reason="suspended", expires_at=exp))
            e = r1.entitlement
            self.assertEqual((e.value.number_value, e.reason, e.expires_at),
                             (500, "Q4 promotion", exp))
            self.assertGreater(e.created_at, 0)
            self.assertEqual(sorted(self.overrides(cus)), ["wf_api", "wf_flag"])
            # While it applies: now, and at the last millisecond of its window.
            for at in (0, exp - 1):
                c = self.before(exp, self.check, cus, "wf_api", 11, at=at, seq=r2.sequence)
                self.assertEqual((c.allowed, c.override_applied, c.usage.limit),
                                 (True, True, 500))
                self.assertEqual((c.override_reason, c.override_expires_at),
                                 ("Q4 promotion", exp))
                self.assertEqual(c.next_change_at, exp)
                c = self.before(exp, self.check, cus, "wf_flag", at=at, seq=r2.sequence)
                self.assertEqual(c.reason, reason("DISABLED_BY_OVERRIDE"))
            # At expires_at it no longer applies (half-open window), before the timer ran.
            c = self.before(exp, self.check, cus, "wf_api", 11, at=exp, seq=r2.sequence)
            self.assertEqual((c.allowed, c.reason, c.override_applied, c.usage.limit),
                             (False, reason("LIMIT_EXCEEDED"), False, 10))
            c = self.before(exp, self.check, cus, "wf_flag", at=exp, seq=r2.sequence)
            self.assertEqual((c.allowed, c.reason), (True, reason("ENTITLED")))
            return cus, exp

        cus, exp = self.with_margins(flow)
        sleep_until(exp)
        for _ in ("before the cleanup", "after the cleanup"):
            c = self.check(cus, "wf_api", 11)
            self.assertEqual((c.allowed, c.override_applied, c.usage.limit), (False, False, 10))
            self.assertEqual(c.override_reason, "")
            self.assertTrue(self.check(cus, "wf_flag").allowed)
            self.wait_overrides_gone(cus, ["wf_api", "wf_flag"])

    # ---- Zenskar: PATCH quantity, quantity_used, active_from, expiry_at -------------------

    def test_zenskar_window_activates_and_expires(self):
        t, a = pb["types"], pb["admin"]
        from google.protobuf import wrappers_pb2 as w

        def flow(n, margin):
            cus, plan = "wf_zk_cus%d" % n, "wf_zk_plan%d" % n
            self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_api", usage_limit=5,
                        usage_reset_period=t.RESET_PERIOD_NEVER)]))
            self.subscribe("wf_zk_sub%d" % n, cus, plan)
            start = wp.now_ms() + margin
            end = start + margin
            r = self.admin.UpdateCustomerEntitlement(a.UpdateCustomerEntitlementRequest(
                customer_id=cus, feature_code="wf_api", quantity=w.Int64Value(value=100),
                quantity_used=w.Int64Value(value=70), active_from=w.Int64Value(value=start),
                expiry_at=w.Int64Value(value=end)))
            e = r.entitlement
            self.assertEqual((e.quantity.value, e.quantity_used, e.active_from, e.expires_at),
                             (100, 70, start, end))
            # Before active_from: the plan's 5, with the 70 used that PATCH set.
            c = self.before(start, self.check, cus, "wf_api", 1, seq=r.sequence)
            self.assertEqual((c.allowed, c.override_applied, c.usage.limit, c.usage.used),
                             (False, False, 5, 70))
            self.assertEqual(c.next_change_at, start)
            # Inside [active_from, expiry_at): 100 granted, 30 left.
            for at in (start, end - 1):
                c = self.before(start, self.check, cus, "wf_api", 30, at=at, seq=r.sequence)
                self.assertEqual((c.allowed, c.override_applied, c.usage.limit,
                                  c.usage.remaining), (True, True, 100, 30))
                c = self.before(start, self.check, cus, "wf_api", 31, at=at, seq=r.sequence)
                self.assertEqual(c.reason, reason("LIMIT_EXCEEDED"))
            c = self.before(start, self.check, cus, "wf_api", 1, at=end, seq=r.sequence)
            self.assertEqual((c.override_applied, c.usage.limit), (False, 5))
            # The wall clock passes active_from: a plain check sees it (before expiry_at).
            sleep_until(start)
            c = self.before(end, self.check, cus, "wf_api", 30)
            self.assertEqual((c.allowed, c.override_applied, c.usage.limit), (True, True, 100))
            self.assertEqual(c.next_change_at, end)
            return cus, end

        cus, end = self.with_margins(flow)
        sleep_until(end)
        c = self.check(cus, "wf_api", 1)
        self.assertEqual((c.allowed, c.override_applied, c.usage.limit, c.usage.used),
                         (False, False, 5, 70))
        self.wait_overrides_gone(cus, ["wf_api"])
        c = self.check(cus, "wf_api", 1)
        self.assertEqual((c.allowed, c.usage.limit, c.usage.used), (False, 5, 70))

    # ---- Flexprice: GET /customers/{id}/entitlements (aggregate + sources) ---------------

    def test_flexprice_sources_expire(self):
        t, a, e = pb["types"], pb["admin"], pb["entitlement"]

        def view(cus, at=0, seq=0):
            g = self.admin.GetCustomerEntitlements(e.GetCustomerEntitlementsRequest(
                customer_id=cus, at=at, min_sequence=seq))
            return {f.feature.code: f for f in g.features}

        def kinds(f, active_only=True):
            return sorted(s.entity_type for s in f.sources if s.active or not active_only)

        def flow(n, margin):
            cus, plan, addon = "wf_fp_cus%d" % n, "wf_fp_plan%d" % n, "wf_fp_addon%d" % n
            sub = "wf_fp_sub%d" % n
            self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_api", usage_limit=100,
                        usage_reset_period=t.RESET_PERIOD_MONTHLY),
                t.Grant(feature_code="wf_flag")]))
            self.admin.SetAddonEntitlements(a.SetEntitlementsRequest(code=addon, entitlements=[
                t.Grant(feature_code="wf_api", usage_limit=25,
                        usage_reset_period=t.RESET_PERIOD_MONTHLY)]))
            self.subscribe(sub, cus, plan, quantity=2,
                           addons=[t.SubscriptionAddon(addon_code=addon, quantity=4)],
                           entitlements=[t.Grant(feature_code="wf_api", usage_limit=7,
                                                 usage_reset_period=t.RESET_PERIOD_MONTHLY)])
            t1 = wp.now_ms() + margin  # the override on wf_flag expires
            t2 = t1 + margin           # the subscription ends
            wp.expiring(self.admin.SetCustomerEntitlement, a.SetCustomerEntitlementRequest(
                customer_id=cus, feature_code="wf_flag", value=t.OverrideValue(bool_value=True),
                reason="kept on", expires_at=t1))
            r = self.admin.CancelSubscription(a.CancelSubscriptionRequest(
                customer_id=cus, subscription_id=sub, at=t2))
            self.assertEqual(r.subscription.ends_at, t2)
            v = self.before(t1, view, cus, seq=r.sequence)
            api, flag = v["wf_api"], v["wf_flag"]
            self.assertEqual(kinds(api), [t.SOURCE_TYPE_PLAN, t.SOURCE_TYPE_ADDON,
                                          t.SOURCE_TYPE_SUBSCRIPTION])
            self.assertEqual({s.expires_at for s in api.sources}, {t2})
            self.assertEqual(api.entitlement.usage_limit, 2 * 100 + 4 * 25 + 7)
            self.assertEqual(kinds(flag), [t.SOURCE_TYPE_PLAN, t.SOURCE_TYPE_OVERRIDE])
            ov = [s for s in flag.sources if s.entity_type == t.SOURCE_TYPE_OVERRIDE][0]
            self.assertEqual((ov.expires_at, ov.reason), (t1, "kept on"))
            self.assertEqual(flag.entitlement.override_reason, "kept on")
            self.assertEqual(flag.entitlement.next_change_at, t1)
            # At t1 the override source is no longer active; the plan still grants.
            v = self.before(t1, view, cus, at=t1, seq=r.sequence)
            self.assertEqual(kinds(v["wf_flag"]), [t.SOURCE_TYPE_PLAN])
            self.assertEqual(v["wf_flag"].entitlement.override_reason, "")
            self.assertTrue(v["wf_flag"].entitlement.is_enabled)
            self.assertEqual(v["wf_api"].entitlement.usage_limit, 307)
            # At t2 nothing grants: EXPIRED, no values.
            v = self.before(t1, view, cus, at=t2, seq=r.sequence)
            for code in ("wf_api", "wf_flag"):
                self.assertEqual(kinds(v[code]), [])
                self.assertFalse(v[code].entitlement.is_enabled)
                self.assertEqual(v[code].entitlement.reason, reason("EXPIRED"))
            self.assertEqual(v["wf_api"].entitlement.usage_limit, 0)
            # The wall clock passes t1: the live view drops the override, keeps the plan.
            sleep_until(t1)
            v = self.before(t2, view, cus)
            self.assertEqual(kinds(v["wf_flag"]), [t.SOURCE_TYPE_PLAN])
            self.assertEqual(v["wf_api"].entitlement.usage_limit, 307)
            return cus, sub, t2

        cus, sub, t2 = self.with_margins(flow)
        sleep_until(t2)
        for code in ("wf_api", "wf_flag"):
            c = self.check(cus, code)
            self.assertFalse(c.allowed)
            # EXPIRED until the timer drops the ended subscription, UNKNOWN_CUSTOMER after
            # (see test_answer_stable_when_subscription_cleanup_runs).
            self.assertIn(c.reason, (reason("EXPIRED"), reason("UNKNOWN_CUSTOMER")))
        gone = wp.wait_until(lambda: ('"%s"' % sub) not in self.admin.export().json,
                             CLEANUP_BOUND)
        self.assertTrue(gone, "ended subscription %s still stored" % sub)
        self.assertFalse(self.check(cus, "wf_api").allowed)

    def test_answer_stable_when_subscription_cleanup_runs(self):
        t, a = pb["types"], pb["admin"]

        def flow(n, margin):
            cus, plan = "wf_st_cus%d" % n, "wf_st_plan%d" % n
            self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_flag")]))
            end = wp.now_ms() + margin
            r = self.subscribe("wf_st_sub%d" % n, cus, plan, ends_at=end)
            at = end + 1000  # an instant after the end, asked before and after the cleanup
            c = self.before(end, self.check, cus, "wf_flag", at=at, seq=r.sequence)
            return cus, end, at, c

        cus, end, at, first = self.with_margins(flow)
        self.assertEqual(first.reason, reason("EXPIRED"))
        sleep_until(end)
        wp.wait_until(lambda: '"%s"' % cus not in self.admin.export().json, CLEANUP_BOUND)
        again = self.check(cus, "wf_flag", at=at)
        self.assertEqual((again.allowed, again.reason), (first.allowed, first.reason))

    # ---- Lago: POST (replace) / PATCH (merge) plan entitlements with typed privileges ------

    def test_lago_privileges_override_expires(self):
        t, a = pb["types"], pb["admin"]
        PV = t.PrivilegeValue

        def flow(n, margin):
            cus, plan = "wf_lg_cus%d" % n, "wf_lg_plan%d" % n
            self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_seats", privileges=[
                    PV(code="max", int_value=10), PV(code="provider", string_value="okta")])]))
            self.admin.PatchPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_api", usage_limit=3)]))
            got = self.admin.GetPlanEntitlements(a.GetEntitlementsRequest(code=plan))
            self.assertEqual(sorted(g.feature_code for g in got.entitlements),
                             ["wf_api", "wf_seats"])
            r = self.subscribe("wf_lg_sub%d" % n, cus, plan)
            self.assertEqual(self.privs(self.check(cus, "wf_seats", seq=r.sequence)),
                             {"max": 10, "provider": "okta"})
            exp = wp.now_ms() + margin
            r = wp.expiring(self.admin.SetCustomerEntitlement, a.SetCustomerEntitlementRequest(
                customer_id=cus, feature_code="wf_seats", value=t.OverrideValue(bool_value=True),
                privileges=[PV(code="max", int_value=100),
                            PV(code="provider", string_value="google")],
                reason="pilot", expires_at=exp))
            for at in (0, exp - 1):
                c = self.before(exp, self.check, cus, "wf_seats", at=at, seq=r.sequence)
                self.assertEqual(self.privs(c), {"max": 100, "provider": "google"})
                self.assertTrue(c.override_applied)
            c = self.before(exp, self.check, cus, "wf_seats", at=exp, seq=r.sequence)
            self.assertEqual(self.privs(c), {"max": 10, "provider": "okta"})
            self.assertFalse(c.override_applied)
            # A PATCH while the override applies: the fan-out reaches the subscriber, and the
            # override still wins until it expires (then the patched value shows).
            p = self.admin.PatchPlanEntitlements(a.SetEntitlementsRequest(code=plan, entitlements=[
                t.Grant(feature_code="wf_seats", privileges=[
                    PV(code="max", int_value=25), PV(code="provider", string_value="okta")])]))
            c = self.before(exp, self.check, cus, "wf_seats", seq=p.sequence)
            self.assertEqual(self.privs(c)["max"], 100)
            c = self.before(exp, self.check, cus, "wf_seats", at=exp, seq=p.sequence)
            self.assertEqual(self.privs(c), {"max": 25, "provider": "okta"})
            return cus, exp

        cus, exp = self.with_margins(flow)
        sleep_until(exp)
        c = self.check(cus, "wf_seats")
        self.assertEqual((c.allowed, c.override_applied), (True, False))
        self.assertEqual(self.privs(c), {"max": 25, "provider": "okta"})
        self.wait_overrides_gone(cus, ["wf_seats"])
        self.assertEqual(self.privs(self.check(cus, "wf_seats")), {"max": 25, "provider": "okta"})


if __name__ == "__main__":
    wp.main()
