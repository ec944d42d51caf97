#!/usr/bin/python3
"""integration.fleet.crash (Proof 2 of docs/fleet.md): kill -9 of replicas mid-storm.

Three replicas on one nats-server. Four client threads report usage (unique idempotency keys,
known quantities) through replicas e1 and e2 while:
  - e3 (a reader) is killed with SIGKILL mid-storm and restarted mid-storm;
  - e2 (a writer) is killed with SIGKILL mid-storm: its clients see their calls fail and
    retry the same request (same idempotency key) on e1, as a client should; e2 restarts.
Afterwards every replica, at the same stream sequence, reads for every customer exactly the sum
of the quantities reported: nothing lost (an acknowledged report is in the stream and every
replica applies it, a restarted one from its last durable sequence + 1), nothing applied
twice (the stream position is stored in the transaction of the data, and a retried report is
deduplicated by its key, the same on every replica). The exports are identical too.
"""
import random
import threading
import time

import grpc

import natsfix
import wp
from natsfix import ThreeReplicas
from wp import pb

CUSTOMERS = ["flk_%d" % i for i in range(6)]
THREADS = 4
REPORTS = 150


class Crash(ThreeReplicas):
    def test_kill9_replicas_mid_storm(self):
        e1, e2, e3 = self.ents
        with e1.api() as api:
            natsfix.setup_catalog(api, plan_limit=10 ** 12)
            for c in CUSTOMERS:
                last = natsfix.subscribe(api, c)
        natsfix.wait_sequence(self.ents, last.sequence)
        ent = pb["entitlement"]
        expected = {c: 0 for c in CUSTOMERS}
        lock = threading.Lock()
        progress = [0]
        errors, retried = [], [0]

        def worker(i):
            rnd = random.Random(i)
            nodes = [e1, e2]
            k = i % 2
            for j in range(REPORTS):
                c = rnd.choice(CUSTOMERS)
                q = rnd.randrange(1, 10)
                req = ent.ReportUsageRequest(customer_id=c, feature_code="fl_units",
                                             quantity=q, idempotency_key="ck-%d-%d" % (i, j))
                deadline = time.monotonic() + 120
                while True:
                    node = nodes[k]
                    try:
                        with wp.Api(node.tcp) as api:
                            api.ReportUsage(req, timeout=20)
                        break
                    except (grpc.RpcError, AttributeError, TypeError) as ex:
                        # The node died under the call (or is restarting): the same request,
                        # same key, on the other node.
                        with lock:
                            retried[0] += 1
                        if time.monotonic() > deadline:
                            with lock:
                                errors.append("%s: %r" % (req.idempotency_key, ex))
                            return
                        k = 1 - k
                        time.sleep(0.05)
                with lock:
                    expected[c] += q
                    progress[0] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for th in threads:
            th.start()
        total = THREADS * REPORTS

        def at_least(n):
            wp.wait_until(lambda: progress[0] >= n, 300)

        at_least(total // 5)
        e3.kill9()  # a reader, mid-storm
        at_least(total * 2 // 5)
        e2.kill9()  # a writer, mid-storm: its clients retry on e1
        at_least(total * 3 // 5)
        e3.start()
        e2.start()
        for th in threads:
            th.join(600)
        self.assertEqual(errors, [])
        self.assertEqual(progress[0], total)
        natsfix.log("crash: %d reports, %d retried after a failed call" % (total, retried[0]))
        with e1.api() as api:
            fence = natsfix.subscribe(api, "flk_fence")
        natsfix.wait_sequence(self.ents, fence.sequence)
        for e in self.ents:
            for c in CUSTOMERS:
                used = self.check_at(e, c, "fl_units", min_sequence=fence.sequence).usage.used
                self.assertEqual(used, expected[c], "%s on %s" % (c, e.name))
        self.assert_identical(self.ents, CUSTOMERS, wp.now_ms())


if __name__ == "__main__":
    natsfix.main()
