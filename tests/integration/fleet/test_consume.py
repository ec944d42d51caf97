#!/usr/bin/python3
"""integration.fleet.consume (Proof 4 of docs/fleet.md): ConsumeEntitlement from three
replicas at once against a hard limit of 100 grants exactly 100 fleet-wide.

Three replicas on one nats-server; 4 client threads per replica (12 connections) each send
20 consumes of 1 unit (240 units of demand) for one customer whose plan allows 100. The
decision is made when the event is applied, in stream order, so: exactly 100 granted, 140
denied LIMIT_EXCEEDED, the granted answers' usage.used are exactly 1..100 (each grant took a
distinct unit), and every replica reads used = 100 at the same sequence. A second round with
idempotency keys sent twice, from two different replicas, counts each key once.
Counts only: nothing depends on timing.
"""
import threading

import natsfix
import wp
from natsfix import ThreeReplicas
from wp import pb, reason

PER_NODE = 4
CALLS = 20


class Consume(ThreeReplicas):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with cls.ents[0].api() as api:
            natsfix.setup_catalog(api, plan_limit=100, hard=True)

    def storm(self, customer, keys=False):
        e = pb["entitlement"]
        answers, errors = [], []
        lock = threading.Lock()
        n = 3 * PER_NODE
        go = threading.Barrier(n)

        def worker(i):
            node = self.ents[i % 3]
            api = node.api()
            try:
                go.wait()
                for j in range(CALLS):
                    # With keys, thread i and thread i+1 (another replica) send the same key.
                    key = "ck-%s-%d-%d" % (customer, i // 2, j) if keys else ""
                    r = api.ConsumeEntitlement(e.ConsumeEntitlementRequest(
                        customer_id=customer, feature_code="fl_units", quantity=1,
                        idempotency_key=key))
                    with lock:
                        answers.append(r)
            except Exception as ex:
                with lock:
                    errors.append(repr(ex))
            finally:
                api.close()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        self.assertEqual(errors, [])
        self.assertEqual(len(answers), n * CALLS)
        return answers

    def test_exactly_100_granted_fleet_wide(self):
        with self.ents[1].api() as api:
            sub = natsfix.subscribe(api, "flc_hard")
        natsfix.wait_sequence(self.ents, sub.sequence)
        ans = self.storm("flc_hard")
        granted = [r for r in ans if r.allowed]
        denied = [r for r in ans if not r.allowed]
        self.assertEqual(len(granted), 100)
        self.assertEqual(len(denied), 3 * PER_NODE * CALLS - 100)
        self.assertEqual({r.reason for r in granted}, {reason("ENTITLED")})
        self.assertEqual({r.reason for r in denied}, {reason("LIMIT_EXCEEDED")})
        self.assertEqual(sorted(r.usage.used for r in granted), list(range(1, 101)))
        self.assertEqual(len({r.sequence for r in ans}), len(ans))  # one stream message each
        last = max(r.sequence for r in ans)
        natsfix.wait_sequence(self.ents, last)
        for e in self.ents:
            c = self.check_at(e, "flc_hard", "fl_units", min_sequence=last)
            self.assertEqual(c.usage.used, 100, e.name)
            self.assertFalse(c.allowed, e.name)

    def test_keys_counted_once_across_replicas(self):
        with self.ents[2].api() as api:
            sub = natsfix.subscribe(api, "flc_keys")
        natsfix.wait_sequence(self.ents, sub.sequence)
        ans = self.storm("flc_keys", keys=True)
        firsts = [r for r in ans if not r.duplicate]
        dups = [r for r in ans if r.duplicate]
        # 6 key groups x 20 = 120 keys, each sent twice; 100 units available.
        self.assertEqual(len(firsts) + len(dups), 240)
        granted_first = [r for r in firsts if r.allowed]
        self.assertEqual(len(granted_first), 100)
        last = max(r.sequence for r in ans)
        natsfix.wait_sequence(self.ents, last)
        for e in self.ents:
            self.assertEqual(self.check_at(e, "flc_keys", "fl_units",
                                           min_sequence=last).usage.used, 100, e.name)


if __name__ == "__main__":
    natsfix.main()
