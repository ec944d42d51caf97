#!/usr/bin/python3
"""integration.writepath.concurrency: ConsumeEntitlement is an atomic check-and-consume.

16 client threads (each with its own channel, so its own HTTP/2 connection) x 50 calls of
1 unit = 800 units of demand:
  - against a hard limit of 300: exactly 300 are granted (never more), 500 are denied with
    LIMIT_EXCEEDED, the granted answers' `usage.used` are exactly 1..300 (each grant saw a
    distinct counter: no two consumers passed on the same remaining unit), and a check
    afterwards reads used = 300;
  - against a soft limit of 300: all 800 are granted, exactly the 500 beyond the limit are
    flagged ALLOWED_OVER_SOFT_LIMIT (the first 300 ENTITLED), used = 800;
  - quantities of 7 against a hard limit of 300: the granted sum never passes 300 and stops
    within one request of it (294);
  - with idempotency keys, every call sent twice (concurrently): counted once each.
Nothing depends on timing: the assertions are about counts, whatever the interleaving.
"""
import threading

import wp
from wp import pb, reason

THREADS = 16
CALLS = 50


class Concurrency(wp.Statuses, wp.DaemonCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t, a = pb["types"], pb["admin"]
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wk_units", type=t.FEATURE_TYPE_METERED)))
        for code, soft in (("wk_hard", False), ("wk_soft", True)):
            cls.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code=code, entitlements=[
                t.Grant(feature_code="wk_units", usage_limit=300, is_soft_limit=soft,
                        usage_reset_period=t.RESET_PERIOD_NEVER)]))

    def customer(self, name, plan):
        t, a = pb["types"], pb["admin"]
        return self.admin.UpsertSubscription(a.UpsertSubscriptionRequest(
            subscription=t.Subscription(id="sub_" + name, customer_id=name, plan_code=plan)))

    def storm(self, customer, quantity=1, keys=False, repeat=1):
        """THREADS x CALLS consumes; returns every answer. With keys, each call has a unique
        idempotency key and is sent `repeat` times (by different threads)."""
        e = pb["entitlement"]
        answers, errors = [], []
        lock = threading.Lock()
        go = threading.Barrier(THREADS)

        def worker(i):
            api = wp.Api(self.d.tcp)
            try:
                go.wait()  # all threads start together
                for j in range(CALLS):
                    for k in range(repeat):
                        # Repeats of one key come from different threads (i + k).
                        key = "wk-%s-%d-%d" % (customer, (i + k) % THREADS, j) if keys else ""
                        r = api.ConsumeEntitlement(e.ConsumeEntitlementRequest(
                            customer_id=customer, feature_code="wk_units", quantity=quantity,
                            idempotency_key=key))
                        with lock:
                            answers.append(r)
            except Exception as ex:
                with lock:
                    errors.append(repr(ex))
            finally:
                api.close()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        self.assertEqual(errors, [])
        self.assertEqual(len(answers), THREADS * CALLS * repeat)
        return answers

    def used(self, customer):
        return self.admin.check(customer, "wk_units").usage.used

    def test_hard_limit_never_passed(self):
        self.customer("wk_c_hard", "wk_hard")
        ans = self.storm("wk_c_hard")
        granted = [r for r in ans if r.allowed]
        denied = [r for r in ans if not r.allowed]
        self.assertEqual(len(granted), 300)
        self.assertEqual(len(denied), THREADS * CALLS - 300)
        self.assertEqual({r.reason for r in granted}, {reason("ENTITLED")})
        self.assertEqual({r.reason for r in denied}, {reason("LIMIT_EXCEEDED")})
        self.assertEqual(sorted(r.usage.used for r in granted), list(range(1, 301)))
        self.assertEqual({r.usage.used for r in denied}, {300})
        self.assertEqual(len({r.sequence for r in granted}), 300)
        self.assertEqual(self.used("wk_c_hard"), 300)

    def test_soft_limit_flags_overage(self):
        self.customer("wk_c_soft", "wk_soft")
        ans = self.storm("wk_c_soft")
        self.assertTrue(all(r.allowed for r in ans))
        over = [r for r in ans if r.reason == reason("ALLOWED_OVER_SOFT_LIMIT")]
        within = [r for r in ans if r.reason == reason("ENTITLED")]
        self.assertEqual((len(within), len(over)), (300, THREADS * CALLS - 300))
        self.assertEqual(sorted(r.usage.used for r in within), list(range(1, 301)))
        self.assertEqual(sorted(r.usage.used for r in over), list(range(301, 801)))
        self.assertTrue(all(r.usage.is_soft_limit for r in ans))
        self.assertEqual(self.used("wk_c_soft"), THREADS * CALLS)

    def test_hard_limit_with_larger_quantities(self):
        self.customer("wk_c_seven", "wk_hard")
        ans = self.storm("wk_c_seven", quantity=7)
        granted = [r for r in ans if r.allowed]
        self.assertEqual(len(granted), 300 // 7)
        self.assertEqual(sorted(r.usage.used for r in granted),
                         [7 * k for k in range(1, 300 // 7 + 1)])
        self.assertEqual(self.used("wk_c_seven"), 7 * (300 // 7))

    def test_idempotent_repeats_counted_once(self):
        self.customer("wk_c_idem", "wk_soft")
        ans = self.storm("wk_c_idem", keys=True, repeat=2)
        firsts = [r for r in ans if not r.duplicate]
        dups = [r for r in ans if r.duplicate]
        self.assertEqual((len(firsts), len(dups)), (THREADS * CALLS, THREADS * CALLS))
        self.assertEqual(sorted(r.usage.used for r in firsts), list(range(1, 801)))
        self.assertEqual(self.used("wk_c_idem"), THREADS * CALLS)


if __name__ == "__main__":
    wp.main()
