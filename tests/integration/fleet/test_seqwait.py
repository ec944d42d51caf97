#!/usr/bin/python3
"""integration.fleet.seqwait: read-your-writes anywhere without a client retry loop
(docs/fleet.md "Writes: any node takes them", docs/api.md "min_sequence").

Three replicas on one nats-server -js: e1 takes the writes; e2 waits up to 60 s for a
min_sequence it has not applied (check.min_sequence_wait_ms), e3 only 300 ms.
- Write on e1, check at once on e2 with min_sequence = the write's sequence: answered with
  the write applied, every time, in one call (no retry). A check parked on e2 before the write
  even exists (the gauge shows it) is answered once e2 applies it from the stream.
- A min_sequence far in the future on e3: UNAVAILABLE after the bound, the message naming
  min_sequence and e3's applied sequence (status and message are asserted, not the time).
- SIGTERM of e2 with a check parked: it answers UNAVAILABLE "shutting down", entd exits 0.
"""
import re
import urllib.request

import grpc

import natsfix
import wp
from natsfix import FleetCase
from wp import pb

ROUNDS = 30


def waiting(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        body = r.read().decode()
    m = re.search(r"^entd_checks_waiting_min_sequence (\S+)$", body, re.M)
    assert m, "no entd_checks_waiting_min_sequence in /metrics"
    return float(m.group(1))


class SeqWait(FleetCase):
    @classmethod
    def setUpClass(cls):
        cls.nats = natsfix.single()
        cls.ents = []
        try:
            for name, wait in (("e1", "2000"), ("e2", "60000"), ("e3", "300")):
                port = wp.harness.free_port()
                e = natsfix.FleetEntd([cls.nats.url], name=name, extra=[
                    "--min-sequence-wait-ms", wait,
                    "--metrics-listen", "127.0.0.1:%d" % port])
                e.metrics_port = port
                cls.ents.append(e)
                e.start(120)
        except Exception:
            for e in cls.ents:
                e.failed = True
                e.cleanup()
            cls.nats.failed = True
            cls.nats.cleanup()
            raise
        cls.e1, cls.e2, cls.e3 = cls.ents
        with cls.e1.api() as api:
            natsfix.setup_catalog(api)

    @classmethod
    def tearDownClass(cls):
        failed = False
        for e in cls.ents:
            if e.stop() != 0:
                failed = e.failed = True
            e.cleanup()
        cls.nats.cleanup()
        assert not failed, "an entd did not exit 0 after SIGTERM"

    def test_1_write_on_one_node_read_on_another_at_once(self):
        with self.e1.api() as a1, self.e2.api() as a2:
            for i in range(ROUNDS):
                cust = "sw_%d" % i
                r = natsfix.subscribe(a1, cust)
                # One call, no retry: e2 waits until it has applied r.sequence.
                c = a2.check(cust, "fl_flag", min_sequence=r.sequence)
                self.assertTrue(c.allowed, cust)
                self.assertGreaterEqual(c.sequence, r.sequence)

    def test_2_parked_before_the_write(self):
        e = pb["entitlement"]
        with self.e1.api() as a1, self.e2.api() as a2:
            head = self.e1.sequence()
            natsfix.wait_sequence([self.e2], head)
            fut = a2.future("CheckEntitlement", e.CheckEntitlementRequest(
                customer_id="sw_late", feature_code="fl_flag", min_sequence=head + 1))
            wp.wait_until(lambda: waiting(self.e2.metrics_port) == 1, 60)
            self.assertEqual(waiting(self.e2.metrics_port), 1)
            self.assertFalse(fut.done())
            r = natsfix.subscribe(a1, "sw_late")
            self.assertEqual(r.sequence, head + 1)
            c = fut.result(timeout=120)
            self.assertTrue(c.allowed)
            self.assertGreaterEqual(c.sequence, r.sequence)
            self.assertEqual(waiting(self.e2.metrics_port), 0)

    def test_3_future_sequence_answers_after_the_bound(self):
        far = 10 ** 9
        with self.e3.api() as a3:
            applied = self.e3.sequence()
            err = self.assertStatus(grpc.StatusCode.UNAVAILABLE, a3.check, "sw_0", "fl_flag",
                                    min_sequence=far,
                                    contains=["min_sequence %d is not applied" % far,
                                              "applied sequence "])
            got = int(re.search(r"applied sequence (\d+)", err.details()).group(1))
            self.assertGreaterEqual(got, applied)
            self.assertLess(got, far)
            # What e3 has is still served.
            self.assertTrue(a3.check("sw_0", "fl_flag", min_sequence=applied).allowed)

    def test_4_shutdown_with_a_parked_check(self):
        e = pb["entitlement"]
        with self.e2.api() as a2:
            fut = a2.future("CheckEntitlement", e.CheckEntitlementRequest(
                customer_id="sw_0", feature_code="fl_flag", min_sequence=10 ** 9))
            wp.wait_until(lambda: waiting(self.e2.metrics_port) == 1, 60)
            self.assertEqual(waiting(self.e2.metrics_port), 1)
            self.e2.term()
            with self.assertRaises(grpc.RpcError) as cm:
                fut.result(timeout=120)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("shutting down", cm.exception.details() or "")
            self.assertEqual(self.e2.wait(120), 0, self.e2.tail())


if __name__ == "__main__":
    natsfix.main()
