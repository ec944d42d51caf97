#!/usr/bin/python3
"""integration.writepath.expiry: an override expiring a couple of seconds ahead is reported by
checks at the right instant and is gone from storage shortly after, with no restart; and the
same when entd is down while the boundary passes (applied at start, from the boundary index in
LMDB).

Proved, live:
  - check at = expires_at - 1 shows the override, at = expires_at does not (half-open window);
  - once the wall clock is past expires_at, a plain check does not show it;
  - shortly after, ListCustomerEntitlements no longer lists it, GetStatus's overrides count and
    pending_boundaries drop, next_boundary_at moves past expires_at;
  - a batch of overrides expiring at the same instant and just after all go.
Proved across a restart:
  - entd is stopped (SIGTERM, exit 0) while the override is still stored (checked offline with
    `entctl export --db`), the boundary passes while it is down, entd starts on the same
    directory: a plain check does not show the override at once, and the timer removes it
    without any request arriving; offline export after a second stop agrees.

Timing never decides pass/fail: checks that must come before the boundary verify they did,
else the scenario is repeated with a wider window (2, 4, 8, 16 s); waits for the timer's
cleanup poll with a generous bound.
"""
import json

import wp
from wp import pb
from wp import TooSlow, sleep_until

CLEANUP_BOUND = 60


class Expiry(wp.Statuses, wp.EntdPerTest):
    """Each test runs its own entd (the restart test stops and starts it)."""

    def setUp(self):
        super().setUp()
        self.admin = self.d.api()
        t, a = pb["types"], pb["admin"]
        self.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="we_api", type=t.FEATURE_TYPE_METERED)))
        self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code="we_plan", entitlements=[
            t.Grant(feature_code="we_api", usage_limit=10,
                    usage_reset_period=t.RESET_PERIOD_NEVER)]))

    def tearDown(self):
        self.admin.close()
        status = self.d.stop()
        if status != 0:
            self.d.failed = True
            self.fail("entd exit status after SIGTERM: %s (want 0)\n%s" % (status, self.d.tail()))

    # ---- helpers -------------------------------------------------------------------------

    def subscribe(self, customer):
        t, a = pb["types"], pb["admin"]
        return self.admin.UpsertSubscription(a.UpsertSubscriptionRequest(
            subscription=t.Subscription(id="sub_" + customer, customer_id=customer,
                                        plan_code="we_plan")))

    def override(self, customer, exp, limit=500):
        t, a = pb["types"], pb["admin"]
        return wp.expiring(self.admin.SetCustomerEntitlement, a.SetCustomerEntitlementRequest(
            customer_id=customer, feature_code="we_api",
            value=t.OverrideValue(number_value=limit), reason="short", expires_at=exp))

    def listed(self, customer):
        a = pb["admin"]
        return [o.feature_code for o in self.admin.ListCustomerEntitlements(
            a.ListCustomerEntitlementsRequest(customer_id=customer)).entitlements]

    def offline_overrides(self):
        """(customer, feature, expires_at) of every override stored in the stopped daemon's
        database, read with `entctl export --db` (no daemon involved)."""
        doc = json.loads(self.d.entctl("export", "--db", self.d.db))
        return [(o["customer_id"], o["feature_code"]) for o in doc.get("overrides", [])]

    def retry(self, flow):
        def attempt(n, margin):
            if n:
                # A slow earlier attempt left overrides behind: let the timer remove them
                # first, so the counts and the next boundary compared below are ours alone.
                wp.wait_until(lambda: self.admin.status().overrides == 0, CLEANUP_BOUND)
            return flow(n, margin)
        return wp.with_margins(self, attempt)

    def assert_before(self, deadline):
        wp.assert_before(deadline)

    # ---- live ----------------------------------------------------------------------------

    def test_expires_on_time_without_restart(self):
        def flow(n, margin):
            cus = "we_live%d" % n
            self.subscribe(cus)
            exp = wp.now_ms() + margin
            st0 = self.admin.status()
            r = self.override(cus, exp)
            st1 = self.admin.status()
            self.assertEqual(st1.overrides, st0.overrides + 1)
            self.assertGreater(st1.pending_boundaries, st0.pending_boundaries)
            self.assertEqual(st1.next_boundary_at, exp)
            c_before = self.admin.check(cus, "we_api", 11, at=exp - 1, min_sequence=r.sequence)
            c_at = self.admin.check(cus, "we_api", 11, at=exp, min_sequence=r.sequence)
            c_now = self.admin.check(cus, "we_api", 11)
            self.assert_before(exp)
            return cus, exp, st0, st1, c_before, c_at, c_now

        cus, exp, st0, st1, c_before, c_at, c_now = self.retry(flow)
        self.assertEqual((c_before.allowed, c_before.override_applied, c_before.usage.limit,
                          c_before.override_expires_at), (True, True, 500, exp))
        self.assertEqual((c_now.allowed, c_now.override_applied), (True, True))
        self.assertEqual((c_at.allowed, c_at.override_applied, c_at.usage.limit,
                          c_at.reason), (False, False, 10, wp.reason("LIMIT_EXCEEDED")))
        sleep_until(exp)
        c = self.admin.check(cus, "we_api", 11)
        self.assertEqual((c.allowed, c.override_applied, c.usage.limit), (False, False, 10))
        gone = wp.wait_until(lambda: "we_api" not in self.listed(cus), CLEANUP_BOUND)
        self.assertTrue(gone, "override still listed %ds after it expired" % CLEANUP_BOUND)
        st2 = self.admin.status()
        self.assertEqual(st2.overrides, st0.overrides)
        self.assertLess(st2.pending_boundaries, st1.pending_boundaries)
        self.assertNotEqual(st2.next_boundary_at, exp)
        self.assertTrue(st2.next_boundary_at == 0 or st2.next_boundary_at > exp)
        self.assertEqual(self.d.proc.poll(), None)  # no restart happened

    def test_many_expire_together(self):
        """40 overrides: 20 expiring at one instant, 20 half a second later; all go, and the
        boundary index drains back to what it held before they were set."""
        def flow(n, margin):
            st0 = self.admin.status()
            exp = wp.now_ms() + margin
            futs = []
            for i in range(40):
                cus = "we_many%d_%d" % (n, i)
                self.subscribe(cus)
                futs.append(self.admin.future("SetCustomerEntitlement", pb["admin"].
                                              SetCustomerEntitlementRequest(
                    customer_id=cus, feature_code="we_api",
                    value=pb["types"].OverrideValue(number_value=100 + i),
                    expires_at=exp + (500 if i % 2 else 0))))
            seq = max(wp.expiring(f.result).sequence for f in futs)
            res = self.admin.BatchCheckEntitlements(pb["entitlement"].BatchCheckEntitlementsRequest(
                checks=[pb["entitlement"].CheckEntitlementRequest(
                    customer_id="we_many%d_%d" % (n, i), feature_code="we_api",
                    min_sequence=seq) for i in range(40)]))
            self.assert_before(exp)
            return n, exp, st0, res

        n, exp, st0, res = self.retry(flow)
        self.assertEqual([r.usage.limit for r in res.results], [100 + i for i in range(40)])
        sleep_until(exp + 500)
        drained = wp.wait_until(lambda: self.admin.status().overrides == st0.overrides,
                                CLEANUP_BOUND)
        self.assertTrue(drained, "expired overrides still stored")
        for i in range(40):
            self.assertEqual(self.listed("we_many%d_%d" % (n, i)), [])
        self.assertEqual(self.admin.status().pending_boundaries, st0.pending_boundaries)

    # ---- across a restart -------------------------------------------------------------------

    def test_boundary_passed_while_down_is_applied_at_start(self):
        def flow(n, margin):
            cus = "we_down%d" % n
            self.subscribe(cus)
            exp = wp.now_ms() + margin
            r = self.override(cus, exp)
            c = self.admin.check(cus, "we_api", 11, min_sequence=r.sequence)
            self.assertTrue(c.override_applied)
            st1 = self.admin.status()
            self.admin.close()
            self.assertEqual(self.d.stop(), 0)
            # Stopped before the override was cleaned up? Otherwise the restart proves nothing.
            if (cus, "we_api") not in self.offline_overrides():
                self.d.start()
                self.admin = self.d.api()
                raise TooSlow("entd removed the override before it was down")
            return cus, exp, st1

        cus, exp, st1 = self.retry(flow)
        sleep_until(exp)  # the boundary passes while entd is down
        self.assertIn((cus, "we_api"), self.offline_overrides())
        self.d.start()
        self.admin = self.d.api()
        # Exact at once, whatever the timer did yet.
        c = self.admin.check(cus, "we_api", 11)
        self.assertEqual((c.allowed, c.override_applied, c.usage.limit), (False, False, 10))
        # Removed by the timer armed at start: no write or check of ours triggers it.
        gone = wp.wait_until(lambda: self.admin.status().overrides == st1.overrides - 1,
                             CLEANUP_BOUND)
        self.assertTrue(gone, "the boundary that passed while entd was down was not applied")
        self.assertNotIn("we_api", self.listed(cus))
        st2 = self.admin.status()
        self.assertLess(st2.pending_boundaries, st1.pending_boundaries)
        self.assertTrue(st2.next_boundary_at == 0 or st2.next_boundary_at > exp)
        # And on disk: stop again and read the directory offline.
        self.admin.close()
        self.assertEqual(self.d.stop(), 0)
        self.assertNotIn((cus, "we_api"), self.offline_overrides())
        self.d.start()
        self.admin = self.d.api()


if __name__ == "__main__":
    wp.main()
