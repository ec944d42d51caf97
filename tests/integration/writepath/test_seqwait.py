#!/usr/bin/python3
"""integration.writepath.seqwait: checks that wait for their min_sequence, embedded mode
(docs/api.md "min_sequence"; the fleet side is tests/integration/fleet/test_seqwait.py).

- A CheckEntitlement, a BatchCheckEntitlements and a GetCustomerEntitlements asking for the
  sequence of the next write are parked (the gauge entd_checks_waiting_min_sequence shows
  them), and each answers - with the write applied - once the write commits. No client retry.
- A min_sequence that never comes answers UNAVAILABLE after check.min_sequence_wait_ms, with a
  message naming min_sequence and the applied sequence (status and message, not the time).
- check.min_sequence_wait_ms = 0 keeps the old rule: UNAVAILABLE at once.
- Beyond check.min_sequence_wait_max parked checks, one more answers UNAVAILABLE at once.
- SIGTERM with a parked check: the check answers UNAVAILABLE "shutting down" and entd exits 0.
- A check stream message with a min_sequence ahead is answered at once (the stream ends
  UNAVAILABLE): only unary calls wait.
Nothing here depends on timing: parked checks are seen through the gauge, writes are made
only once they are seen, and every wait is bounded by a generous timeout.
"""
import re
import unittest
import urllib.request

import grpc

import wp  # first: it puts the fixture module (harness) on the path
import harness  # noqa: E402
from wp import pb  # noqa: E402

LONG_WAIT = ["--min-sequence-wait-ms", "600000"]  # longer than any call timeout here


def waiting(port):
    """entd_checks_waiting_min_sequence from /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        body = r.read().decode()
    m = re.search(r"^entd_checks_waiting_min_sequence (\S+)$", body, re.M)
    assert m, "no entd_checks_waiting_min_sequence in /metrics"
    return float(m.group(1))


class SeqWait(wp.Statuses, unittest.TestCase):
    def start(self, *args):
        port = harness.free_port()
        d = wp.Entd(extra_args=["--metrics-listen", "127.0.0.1:%d" % port] + list(args),
                    tmp_prefix="entd-sw-")
        d.metrics_port = port
        d.start()
        self.entds.append(d)
        return d

    def setUp(self):
        self.entds = []

    def tearDown(self):
        bad = []
        for d in self.entds:
            st = d.stop()
            if st != 0:
                d.failed = True
                bad.append((st, d.tail()))
            d.cleanup()
        self.assertEqual(bad, [], "entd exit status after SIGTERM (want 0)")

    def catalog(self, api):
        t, a = pb["types"], pb["admin"]
        api.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="sw_flag", type=t.FEATURE_TYPE_BOOLEAN)))
        return api.SetPlanEntitlements(a.SetEntitlementsRequest(
            code="sw_plan", entitlements=[t.Grant(feature_code="sw_flag")])).sequence

    def subscribe(self, api, customer):
        t, a = pb["types"], pb["admin"]
        return api.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id="sub_" + customer, customer_id=customer, plan_code="sw_plan")))

    def test_checks_wait_for_the_next_write(self):
        e = pb["entitlement"]
        d = self.start(*LONG_WAIT)
        api = d.api()
        try:
            seq = self.catalog(api)
            nxt = seq + 1
            # Asked before the write exists: each of the three waits for sequence nxt.
            f1 = api.future("CheckEntitlement", e.CheckEntitlementRequest(
                customer_id="sw_c1", feature_code="sw_flag", min_sequence=nxt))
            f2 = api.future("BatchCheckEntitlements", e.BatchCheckEntitlementsRequest(checks=[
                e.CheckEntitlementRequest(customer_id="sw_c1", feature_code="sw_flag",
                                          min_sequence=nxt),
                e.CheckEntitlementRequest(customer_id="sw_c2", feature_code="sw_flag")]))
            f3 = api.future("GetCustomerEntitlements", e.GetCustomerEntitlementsRequest(
                customer_id="sw_c1", min_sequence=nxt))
            harness.wait_for(lambda: waiting(d.metrics_port) == 3, 60, "3 parked checks")
            self.assertFalse(f1.done() or f2.done() or f3.done())
            # A check already satisfied meanwhile is answered at once (it does not queue).
            self.assertFalse(api.check("sw_c1", "sw_flag", min_sequence=seq).allowed)
            w = self.subscribe(api, "sw_c1")
            self.assertEqual(w.sequence, nxt)
            r1, r2, r3 = f1.result(), f2.result(), f3.result()
            self.assertTrue(r1.allowed)
            self.assertGreaterEqual(r1.sequence, nxt)
            self.assertEqual([r.allowed for r in r2.results], [True, False])
            self.assertGreaterEqual(r2.sequence, nxt)
            self.assertEqual([f.feature.code for f in r3.features], ["sw_flag"])
            self.assertGreaterEqual(r3.sequence, nxt)
            self.assertEqual(waiting(d.metrics_port), 0)
        finally:
            api.close()

    def test_bound_passes(self):
        d = self.start("--min-sequence-wait-ms", "300")
        e = pb["entitlement"]
        api = d.api()
        try:
            seq = self.catalog(api)
            far = 10 ** 9
            err = self.assertStatus(grpc.StatusCode.UNAVAILABLE, api.check, "sw_c1", "sw_flag",
                                    min_sequence=far,
                                    contains=["min_sequence %d is not applied" % far,
                                              "applied sequence %d" % seq,
                                              "check.min_sequence_wait_ms"])
            self.assertNotIn("shutting down", err.details())
            self.assertStatus(grpc.StatusCode.UNAVAILABLE, api.GetCustomerEntitlements,
                              e.GetCustomerEntitlementsRequest(customer_id="sw_c1",
                                                               min_sequence=far),
                              contains="min_sequence %d is not applied" % far)
            self.assertEqual(waiting(d.metrics_port), 0)
            # The node still answers what it has.
            self.assertFalse(api.check("sw_c1", "sw_flag", min_sequence=seq).allowed)
        finally:
            api.close()

    def test_wait_off_refuses_at_once(self):
        d = self.start("--min-sequence-wait-ms", "0")
        api = d.api()
        try:
            seq = self.catalog(api)
            self.assertStatus(grpc.StatusCode.UNAVAILABLE, api.check, "sw_c1", "sw_flag",
                              min_sequence=seq + 1,
                              contains="older than min_sequence %d" % (seq + 1))
        finally:
            api.close()

    def test_stream_message_answers_at_once(self):
        d = self.start(*LONG_WAIT)
        e = pb["entitlement"]
        api = d.api()
        ch = harness.channel(d.tcp)
        try:
            seq = self.catalog(api)
            s = harness.Stream(ch)
            s.send(e.CheckEntitlementRequest(customer_id="sw_c1", feature_code="sw_flag",
                                             min_sequence=seq + 1))
            try:
                code = s.close()
            except grpc.RpcError as ex:  # the failed call raises from its iterator
                code = ex.code()
                self.assertIn("min_sequence %d" % (seq + 1), ex.details() or "")
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(waiting(d.metrics_port), 0)
        finally:
            ch.close()
            api.close()

    def test_limit_and_shutdown_with_parked_check(self):
        d = self.start("--min-sequence-wait-max", "1", *LONG_WAIT)
        api = d.api()
        try:
            seq = self.catalog(api)
            e = pb["entitlement"]
            parked = api.future("CheckEntitlement", e.CheckEntitlementRequest(
                customer_id="sw_c1", feature_code="sw_flag", min_sequence=seq + 5))
            harness.wait_for(lambda: waiting(d.metrics_port) == 1, 60, "a parked check")
            # The second one finds the list full: refused at once, saying why.
            self.assertStatus(grpc.StatusCode.UNAVAILABLE, api.check, "sw_c1", "sw_flag",
                              min_sequence=seq + 5,
                              contains=["min_sequence %d" % (seq + 5),
                                        "check.min_sequence_wait_max"])
            # SIGTERM while it waits: answered (not left to its 10-minute bound), exit 0.
            d.term()
            with self.assertRaises(grpc.RpcError) as cm:
                parked.result(timeout=120)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("shutting down", cm.exception.details() or "")
            self.assertIn("min_sequence %d" % (seq + 5), cm.exception.details() or "")
            self.assertEqual(d.wait(120), 0, d.tail())
        finally:
            api.close()


if __name__ == "__main__":
    wp.main()
