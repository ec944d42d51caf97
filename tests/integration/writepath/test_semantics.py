#!/usr/bin/python3
"""integration.writepath.semantics: the answers of issue 16, one test per item, through real
gRPC (Debian's grpcio) against a real entd on a temporary LMDB directory.

Each test asserts answers (reason, used, period, next_change_at, values), not just statuses.
Item 1 asks the same request before and after the boundary (the writer's tick having run in
between) and steps across next_change_at. Timing never decides pass/fail: a step that must come
before a boundary checks that it did, else the scenario runs again with a wider window
(wp.with_margins); waits for the writer's cleanup poll with a generous bound.
"""
import calendar
import datetime
import json
import unittest

import grpc

import wp
from wp import pb, TooSlow

CLEANUP_BOUND = 60  # seconds for the writer's tick to act on a passed boundary
MAX53 = 2 ** 53 - 1
INT64_MAX = 2 ** 63 - 1


def answer(resp):
    """A check answer without its snapshot sequence, for comparing answers."""
    r = type(resp)()
    r.CopyFrom(resp)
    r.sequence = 0
    return r.SerializeToString(deterministic=True)


def add_month(ms):
    d = datetime.datetime.utcfromtimestamp(ms / 1000.0)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    dim = calendar.monthrange(y, m)[1]
    d2 = d.replace(year=y, month=m, day=min(d.day, dim))
    return calendar.timegm(d2.timetuple()) * 1000 + d.microsecond // 1000


class Semantics(wp.Statuses, wp.DaemonCase):

    def setUp(self):
        self.t, self.a, self.e = pb["types"], pb["admin"], pb["entitlement"]

    # ---- helpers ---------------------------------------------------------------------------

    def feature(self, code, ftype, privileges=()):
        return self.admin.UpsertFeature(self.a.UpsertFeatureRequest(feature=self.t.Feature(
            code=code, type=ftype, privileges=list(privileges))))

    def plan(self, code, grants, addon=False):
        req = self.a.SetEntitlementsRequest(code=code, entitlements=grants)
        return (self.admin.SetAddonEntitlements if addon else self.admin.SetPlanEntitlements)(req)

    def metered(self, feature, limit, reset=0, soft=False):
        return self.t.Grant(feature_code=feature, usage_limit=limit, usage_reset_period=reset,
                            is_soft_limit=soft)

    def sub(self, customer, sid, plan, **kw):
        return self.admin.UpsertSubscription(self.a.UpsertSubscriptionRequest(
            subscription=self.t.Subscription(id=sid, customer_id=customer, plan_code=plan,
                                             **kw))).subscription

    def report(self, customer, feature, q, key):
        return self.admin_check_api().ReportUsage(self.e.ReportUsageRequest(
            customer_id=customer, feature_code=feature, quantity=q, idempotency_key=key))

    def admin_check_api(self):
        return self.admin

    def wait_gone(self, customer, sub_id):
        """Until the writer's tick has deleted the ended subscription (its source is gone)."""
        def gone():
            r = self.admin.GetCustomerEntitlements(self.e.GetCustomerEntitlementsRequest(
                customer_id=customer))
            return all(s.subscription_id != sub_id for f in r.features for s in f.sources)
        self.assertTrue(wp.wait_until(gone, CLEANUP_BOUND),
                        "subscription %s was not cleaned up" % sub_id)

    def export_import(self):
        doc = self.admin.export().json
        self.admin.Import(self.a.ImportRequest(json=doc, replace=True))
        return doc

    # ---- item 1 ------------------------------------------------------------------------------

    def test_01_period_of_the_instant_asked(self):
        """Monthly plan ends at T, daily plan starts at T; Check{q 50, at T + 60 s} answers the
        same before and after T, and next_change_at announces each change."""
        T = self.t
        self.feature("i1_calls", T.FEATURE_TYPE_METERED)
        self.plan("i1_monthly", [self.metered("i1_calls", 100, T.RESET_PERIOD_MONTHLY)])
        self.plan("i1_daily", [self.metered("i1_calls", 100, T.RESET_PERIOD_DAILY)])

        def flow(n, margin):
            cu = "i1_cus_%d" % n
            b = wp.now_ms() + margin
            self.sub(cu, "old", "i1_monthly", ends_at=b)
            self.sub(cu, "new", "i1_daily", active_from=b)
            self.report(cu, "i1_calls", 60, "k1")
            q = self.admin.check(cu, "i1_calls", quantity=50, at=b + 60000)
            now_answer = self.admin.check(cu, "i1_calls", quantity=50)
            before_t1 = self.admin.check(cu, "i1_calls", quantity=50, at=b - 1)
            at_b = self.admin.check(cu, "i1_calls", quantity=50, at=b)
            if wp.now_ms() >= b:
                raise TooSlow("the checks before the boundary came after it")
            return cu, b, q, now_answer, before_t1, at_b

        cu, b, q, now_answer, before_t1, at_b = wp.with_margins(self, flow)
        R = pb["types"]
        # The answer about T + 60 s: the daily period that starts at T, nothing used in it.
        self.assertEqual(q.reason, wp.reason("ENTITLED"))
        self.assertEqual(q.usage.used, 0)
        self.assertEqual(q.usage.reset_period, R.RESET_PERIOD_DAILY)
        self.assertEqual(q.usage.period_start, b)
        self.assertEqual(q.usage.period_end, b + wp.DAY)
        self.assertEqual(q.next_change_at, b + wp.DAY)
        # Now (monthly, 60 used): 60 + 50 > 100, and the change at T is announced.
        self.assertEqual(now_answer.reason, wp.reason("LIMIT_EXCEEDED"))
        self.assertEqual(now_answer.usage.used, 60)
        self.assertEqual(now_answer.usage.reset_period, R.RESET_PERIOD_MONTHLY)
        self.assertEqual(now_answer.next_change_at, b)
        # Stepping across it: unchanged until T - 1, changed at T.
        self.assertEqual(before_t1.reason, now_answer.reason)
        self.assertEqual(before_t1.usage.used, 60)
        self.assertEqual(before_t1.next_change_at, b)
        self.assertEqual(at_b.reason, wp.reason("ENTITLED"))
        self.assertEqual(at_b.usage.reset_period, R.RESET_PERIOD_DAILY)
        # After T, once the writer's tick removed the ended subscription: the same answers.
        wp.sleep_until(b)
        self.wait_gone(cu, "old")
        self.assertEqual(answer(self.admin.check(cu, "i1_calls", quantity=50, at=b + 60000)),
                         answer(q))
        self.assertEqual(answer(self.admin.check(cu, "i1_calls", quantity=50, at=b)),
                         answer(at_b))

    def test_01b_opposite_flip_is_announced(self):
        """Daily (anchor long ago) ends, monthly with an earlier anchor starts: the counter of
        the daily period still counts in the monthly one; the flip to LIMIT_EXCEEDED is at a
        next_change_at, and the answer about it does not change when the tick runs."""
        T = self.t
        self.feature("i1b_calls", T.FEATURE_TYPE_METERED)
        self.plan("i1b_daily", [self.metered("i1b_calls", 100, T.RESET_PERIOD_DAILY)])
        self.plan("i1b_monthly", [self.metered("i1b_calls", 100, T.RESET_PERIOD_MONTHLY)])

        def flow(n, margin):
            cu = "i1b_cus_%d" % n
            now = wp.now_ms()
            b = now + margin
            month_anchor = now - 3 * wp.DAY  # the monthly period began before the daily one
            self.sub(cu, "d", "i1b_daily", ends_at=b, billing_anchor=now - wp.DAY // 2 - 7)
            self.sub(cu, "m", "i1b_monthly", active_from=b, billing_anchor=month_anchor)
            self.report(cu, "i1b_calls", 60, "k1")
            asked = self.admin.check(cu, "i1b_calls", quantity=50, at=b + 1000)
            first = self.admin.check(cu, "i1b_calls", quantity=50)
            if wp.now_ms() >= b:
                raise TooSlow("the checks before the boundary came after it")
            return cu, b, asked, first

        cu, b, asked, first = wp.with_margins(self, flow)
        # Now: 60 used in the daily period, and the change of shape at T is announced.
        self.assertEqual(first.reason, wp.reason("LIMIT_EXCEEDED"))
        self.assertEqual(first.usage.reset_period, T.RESET_PERIOD_DAILY)
        self.assertEqual(first.next_change_at, b)
        self.assertEqual(asked.reason, wp.reason("LIMIT_EXCEEDED"))
        self.assertEqual(asked.usage.used, 60)
        wp.sleep_until(b)
        self.wait_gone(cu, "d")
        self.assertEqual(answer(self.admin.check(cu, "i1b_calls", quantity=50, at=b + 1000)),
                         answer(asked))

    # ---- item 2 ------------------------------------------------------------------------------

    def test_02_cancel_before_start(self):
        T = self.t
        self.feature("i2_f", T.FEATURE_TYPE_BOOLEAN)
        self.feature("i2_g", T.FEATURE_TYPE_BOOLEAN)
        self.plan("i2_p", [T.Grant(feature_code="i2_f")])
        self.plan("i2_other", [T.Grant(feature_code="i2_g")])
        start = wp.now_ms() + 10 * wp.DAY
        self.sub("i2_cus", "keep", "i2_other")
        self.sub("i2_cus", "future", "i2_p", active_from=start)
        self.assertEqual(self.admin.check("i2_cus", "i2_f").reason, wp.reason("NOT_YET_ACTIVE"))
        r = self.admin.CancelSubscription(self.a.CancelSubscriptionRequest(
            customer_id="i2_cus", subscription_id="future", at=start - wp.DAY))
        self.assertTrue(r.subscription.cancelled)
        self.assertEqual(r.subscription.ends_at, start - wp.DAY)
        # Never active: no grant before, at or after its start, and nothing left to clean up.
        for at in (0, start - 1, start, start + wp.DAY):
            c = self.admin.check("i2_cus", "i2_f", at=at)
            self.assertEqual(c.reason, wp.reason("NOT_ENTITLED"), at)
            self.assertEqual(c.next_change_at, 0)
        doc = json.loads(self.admin.export().json)
        self.assertNotIn("future", [s["id"] for s in doc["subscriptions"]])
        before = answer(self.admin.check("i2_cus", "i2_f", at=start + 1))
        self.export_import()
        self.assertEqual(answer(self.admin.check("i2_cus", "i2_f", at=start + 1)), before)

    # ---- item 3 ------------------------------------------------------------------------------

    def test_03_unset_period_does_not_override(self):
        T = self.t
        self.feature("i3_calls", T.FEATURE_TYPE_METERED)
        self.plan("i3_pro", [self.metered("i3_calls", 1000, T.RESET_PERIOD_MONTHLY)])
        self.plan("i3_boost", [self.metered("i3_calls", 500, soft=True)], addon=True)
        self.sub("i3_cus", "s", "i3_pro",
                 addons=[T.SubscriptionAddon(addon_code="i3_boost", quantity=2)])
        c = self.admin.check("i3_cus", "i3_calls")
        self.assertEqual(c.usage.limit, 2000)
        self.assertTrue(c.usage.is_soft_limit)
        self.assertEqual(c.usage.reset_period, T.RESET_PERIOD_MONTHLY)
        self.assertNotEqual(c.usage.period_end, 0)
        g = self.admin.GetCustomerEntitlements(self.e.GetCustomerEntitlementsRequest(
            customer_id="i3_cus")).features[0]
        self.assertEqual(g.entitlement.usage_reset_period, T.RESET_PERIOD_MONTHLY)
        # The sources show who says what: the plan MONTHLY, the add-on nothing.
        periods = {s.entity_id: s.usage_reset_period for s in g.sources}
        self.assertEqual(periods, {"i3_pro": T.RESET_PERIOD_MONTHLY,
                                   "i3_boost": T.RESET_PERIOD_UNSPECIFIED})

    # ---- item 4 ------------------------------------------------------------------------------

    def test_04_no_active_from_anchors_at_creation(self):
        T = self.t
        self.feature("i4_calls", T.FEATURE_TYPE_METERED)
        self.plan("i4_p", [self.metered("i4_calls", 10, T.RESET_PERIOD_MONTHLY)])
        s = self.sub("i4_cus", "s", "i4_p")
        self.assertEqual(s.active_from, 0)
        self.assertEqual(s.billing_anchor, 0)
        c = self.admin.check("i4_cus", "i4_calls", at=s.created_at + 1)
        self.assertEqual(c.usage.period_start, s.created_at)
        self.assertEqual(c.usage.period_end, add_month(s.created_at))
        self.assertEqual(c.next_change_at, add_month(s.created_at))
        # The anchor survives a restore (created_at travels in the document).
        self.export_import()
        c2 = self.admin.check("i4_cus", "i4_calls", at=s.created_at + 1)
        self.assertEqual(c2.usage.period_start, s.created_at)

    # ---- item 5 ------------------------------------------------------------------------------

    def test_05_never_counter_survives_an_end(self):
        T = self.t
        self.feature("i5_calls", T.FEATURE_TYPE_METERED)
        self.plan("i5_p", [self.metered("i5_calls", 100, T.RESET_PERIOD_NEVER)])

        def flow(n, margin):
            cu = "i5_cus_%d" % n
            now = wp.now_ms()
            b = now + margin
            self.sub(cu, "a_first", "i5_p", active_from=now - 2 * wp.DAY,
                     billing_anchor=now - 2 * wp.DAY, ends_at=b)
            self.sub(cu, "b_second", "i5_p", active_from=now - wp.DAY,
                     billing_anchor=now - wp.DAY + 12345)
            self.report(cu, "i5_calls", 40, "k")
            before = self.admin.check(cu, "i5_calls", at=b + 1000)
            if wp.now_ms() >= b:
                raise TooSlow("the check before the end came after it")
            return cu, b, before

        cu, b, before = wp.with_margins(self, flow)
        self.assertEqual(before.usage.used, 40)
        self.assertEqual(before.usage.reset_period, T.RESET_PERIOD_NEVER)
        wp.sleep_until(b)
        self.wait_gone(cu, "a_first")
        after = self.admin.check(cu, "i5_calls", at=b + 1000)
        self.assertEqual(after.usage.used, 40)
        self.assertEqual(answer(after), answer(before))

    # ---- item 6 ------------------------------------------------------------------------------

    def test_06_no_sentinel_instants(self):
        T = self.t
        self.feature("i6_calls", T.FEATURE_TYPE_METERED)
        self.plan("i6_p", [self.metered("i6_calls", 10, T.RESET_PERIOD_NEVER)])
        self.sub("i6_cus", "s", "i6_p")
        c = self.admin.check("i6_cus", "i6_calls")
        self.assertEqual(c.usage.period_start, 0)
        self.assertEqual(c.usage.period_end, 0)
        self.assertEqual(c.next_change_at, 0)
        for v in (c.usage.period_start, c.usage.period_end, c.next_change_at):
            self.assertLessEqual(abs(v), MAX53)
        out = self.d.entctl("check", "-a", self.d.tcp, "i6_cus", "i6_calls")
        self.assertIn("NEVER - .. -", out)
        self.assertNotIn("292278994", out)
        # Instants beyond 2^53 - 1 are refused on the way in, naming the field.
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.check, "i6_cus",
                          "i6_calls", at=MAX53 + 1, contains="at:")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.admin.UpsertSubscription,
                          self.a.UpsertSubscriptionRequest(subscription=T.Subscription(
                              id="s2", customer_id="i6_cus", plan_code="i6_p",
                              ends_at=MAX53 + 1)), contains="subscription.ends_at")
        # The largest allowed instant works and comes back as given.
        s = self.sub("i6_cus", "s3", "i6_p", ends_at=MAX53)
        self.assertEqual(s.ends_at, MAX53)

    # ---- item 7 ------------------------------------------------------------------------------

    def test_07_empty_string_privilege(self):
        T = self.t
        self.feature("i7_sso", T.FEATURE_TYPE_BOOLEAN, privileges=[T.PrivilegeDef(
            code="domain", value_type=T.PRIVILEGE_TYPE_STRING)])
        self.plan("i7_p", [T.Grant(feature_code="i7_sso", privileges=[
            T.PrivilegeValue(code="domain", string_value="")])])
        self.sub("i7_cus", "s", "i7_p")
        got = self.admin.GetPlanEntitlements(self.a.GetEntitlementsRequest(code="i7_p"))
        self.assertEqual(got.entitlements[0].privileges[0].WhichOneof("value"), "string_value")
        c = self.admin.check("i7_cus", "i7_sso")
        self.assertEqual(len(c.privileges), 1)
        self.assertEqual(c.privileges[0].WhichOneof("value"), "string_value")
        self.assertEqual(c.privileges[0].string_value, "")
        g = self.admin.GetCustomerEntitlements(self.e.GetCustomerEntitlementsRequest(
            customer_id="i7_cus")).features[0].entitlement
        self.assertEqual(g.privileges[0].WhichOneof("value"), "string_value")
        self.assertEqual(g.privileges[0].string_value, "")

    # ---- item 8 ------------------------------------------------------------------------------

    def test_08_one_whole_number_rule(self):
        T = self.t
        self.feature("i8_calls", T.FEATURE_TYPE_METERED)
        self.plan("i8_p", [self.metered("i8_calls", 1)])
        self.sub("i8_cus", "s", "i8_p")
        set_ = self.admin.SetCustomerEntitlement
        req = self.a.SetCustomerEntitlementRequest
        set_(req(customer_id="i8_cus", feature_code="i8_calls",
                 value=T.OverrideValue(number_value=1e16)))
        self.assertEqual(self.admin.check("i8_cus", "i8_calls").usage.limit, 10 ** 16)
        big = float(2 ** 63 - 1024)  # the largest double below 2^63
        set_(req(customer_id="i8_cus", feature_code="i8_calls",
                 value=T.OverrideValue(number_value=big)))
        self.assertEqual(self.admin.check("i8_cus", "i8_calls").usage.limit, int(big))
        for bad in (2.0 ** 63, 1.5, -1.0):
            self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, set_, req(
                customer_id="i8_cus", feature_code="i8_calls",
                value=T.OverrideValue(number_value=bad)), contains="whole number")
        # Zenskar's quantity takes the same range: up to INT64_MAX, whole by type.
        upd = self.a.UpdateCustomerEntitlementRequest(customer_id="i8_cus",
                                                      feature_code="i8_calls")
        upd.quantity.value = INT64_MAX
        self.admin.UpdateCustomerEntitlement(upd)
        self.assertEqual(self.admin.check("i8_cus", "i8_calls").usage.limit, INT64_MAX)

    # ---- item 9 ------------------------------------------------------------------------------

    def test_09_update_without_override_is_refused(self):
        T = self.t
        self.feature("i9_calls", T.FEATURE_TYPE_METERED)
        upd = self.a.UpdateCustomerEntitlementRequest()
        upd.customer_id = "i9_cus"
        upd.feature_code = "i9_calls"
        upd.expiry_at.value = wp.now_ms() + wp.DAY
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.admin.UpdateCustomerEntitlement, upd,
                          contains="quantity: required to create an override")
        # Nothing was created: the customer is still unknown.
        self.assertEqual(self.admin.check("i9_cus", "i9_calls").reason,
                         wp.reason("UNKNOWN_CUSTOMER"))
        # With a quantity it is created and grants it.
        upd.quantity.value = 7
        self.admin.UpdateCustomerEntitlement(upd)
        c = self.admin.check("i9_cus", "i9_calls")
        self.assertEqual(c.reason, wp.reason("ENTITLED"))
        self.assertEqual(c.usage.limit, 7)
        self.assertTrue(c.override_applied)
        # Now that it exists, a window-only update is a plain update.
        upd2 = self.a.UpdateCustomerEntitlementRequest(customer_id="i9_cus",
                                                       feature_code="i9_calls")
        upd2.expiry_at.value = wp.now_ms() + 2 * wp.DAY
        r = self.admin.UpdateCustomerEntitlement(upd2)
        self.assertEqual(r.entitlement.quantity.value, 7)

    # ---- item 10 -----------------------------------------------------------------------------

    def test_10_every_export_restores(self):
        T = self.t
        tier = T.PrivilegeDef(code="tier", value_type=T.PRIVILEGE_TYPE_SELECT,
                              select_options=["gold", "silver"])
        seats = T.PrivilegeDef(code="seats", value_type=T.PRIVILEGE_TYPE_INTEGER)
        self.feature("i10_s", T.FEATURE_TYPE_BOOLEAN, [tier, seats])
        self.plan("i10_p", [T.Grant(feature_code="i10_s", privileges=[
            T.PrivilegeValue(code="tier", string_value="silver"),
            T.PrivilegeValue(code="seats", int_value=5)])])
        self.sub("i10_cus", "s", "i10_p")
        before = answer(self.admin.check("i10_cus", "i10_s"))
        narrowed = T.PrivilegeDef(code="tier", value_type=T.PRIVILEGE_TYPE_SELECT,
                                  select_options=["gold"])
        retyped = T.PrivilegeDef(code="seats", value_type=T.PRIVILEGE_TYPE_STRING)
        for privs, what in (([narrowed, seats], "'silver' is not one of gold"),
                            ([tier, retyped], "seats"), ([tier], "seats")):
            self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION, self.admin.UpsertFeature,
                              self.a.UpsertFeatureRequest(feature=T.Feature(
                                  code="i10_s", type=T.FEATURE_TYPE_BOOLEAN,
                                  privileges=privs)), contains="plan 'i10_p'")
        c = self.admin.check("i10_cus", "i10_s")
        self.assertEqual({p.code: p.WhichOneof("value") for p in c.privileges},
                         {"tier": "string_value", "seats": "int_value"})
        self.assertEqual(answer(c), before)
        # A declaration change that strands nothing is fine (a new option, a new privilege).
        self.feature("i10_s", T.FEATURE_TYPE_BOOLEAN, [T.PrivilegeDef(
            code="tier", value_type=T.PRIVILEGE_TYPE_SELECT,
            select_options=["gold", "silver", "bronze"]), seats])
        # A grant whose override ended and was cleaned up answers EXPIRED: so does a restore.
        self.feature("i10_b", T.FEATURE_TYPE_BOOLEAN)

        def flow(n, margin):
            cu = "i10_ovr_%d" % n
            exp = wp.now_ms() + margin
            wp.expiring(self.admin.SetCustomerEntitlement, self.a.SetCustomerEntitlementRequest(
                customer_id=cu, feature_code="i10_b", value=T.OverrideValue(bool_value=True),
                expires_at=exp))
            return cu, exp

        cu, exp = wp.with_margins(self, flow)
        wp.sleep_until(exp)
        self.assertTrue(wp.wait_until(lambda: not self.admin.ListCustomerEntitlements(
            self.a.ListCustomerEntitlementsRequest(customer_id=cu)).entitlements,
            CLEANUP_BOUND), "the expired override was not cleaned up")
        expired = self.admin.check(cu, "i10_b")
        self.assertEqual(expired.reason, wp.reason("EXPIRED"))
        answers = [answer(self.admin.check(cu, "i10_b")),
                   answer(self.admin.check("i10_cus", "i10_s"))]
        doc = json.loads(self.export_import())
        self.assertIn(cu, [e["customer_id"] for e in doc["ended"]])
        self.assertEqual([answer(self.admin.check(cu, "i10_b")),
                          answer(self.admin.check("i10_cus", "i10_s"))], answers)

    # ---- item 11 -----------------------------------------------------------------------------

    def test_11_delete_plan_in_use(self):
        T = self.t
        self.feature("i11_f", T.FEATURE_TYPE_BOOLEAN)
        self.plan("i11_p", [T.Grant(feature_code="i11_f")])
        self.sub("i11_cus", "s", "i11_p")
        self.assertStatus(grpc.StatusCode.FAILED_PRECONDITION,
                          self.admin.DeletePlanEntitlements,
                          self.a.GetEntitlementsRequest(code="i11_p"),
                          contains="used by a subscription of customer 'i11_cus'")
        self.assertEqual(len(self.admin.GetPlanEntitlements(
            self.a.GetEntitlementsRequest(code="i11_p")).entitlements), 1)
        self.assertEqual(self.admin.check("i11_cus", "i11_f").reason, wp.reason("ENTITLED"))
        # Once no subscription names it (ended, and cleaned up by the tick), it goes.
        self.admin.CancelSubscription(self.a.CancelSubscriptionRequest(
            customer_id="i11_cus", subscription_id="s", at=wp.now_ms() + 500))

        def deleted():
            try:
                return self.admin.DeletePlanEntitlements(
                    self.a.GetEntitlementsRequest(code="i11_p")).deleted
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
                return False
        self.assertTrue(wp.wait_until(deleted, CLEANUP_BOUND))
        self.assertEqual(self.admin.check("i11_cus", "i11_f").reason, wp.reason("EXPIRED"))
        # A cancellation dated far back (its boundary lies before the writer's last tick) is
        # cleaned up too, although the polling below writes every 50 ms (each write re-arms
        # the writer's timer: the retry must not be pushed away by them).
        self.plan("i11_q", [T.Grant(feature_code="i11_f")])
        self.sub("i11_old", "s", "i11_q")
        self.admin.CancelSubscription(self.a.CancelSubscriptionRequest(
            customer_id="i11_old", subscription_id="s", at=1))

        def deleted_q():
            try:
                return self.admin.DeletePlanEntitlements(
                    self.a.GetEntitlementsRequest(code="i11_q")).deleted
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
                return False
        self.assertTrue(wp.wait_until(deleted_q, CLEANUP_BOUND))


if __name__ == "__main__":
    wp.main()
