#!/usr/bin/python3
"""integration.fleet.nats_restart (Proof 3 of docs/fleet.md): the engine dies mid-storm.

Single server: three replicas; writer threads report usage through all three (unique keys;
a call answered UNAVAILABLE is retried with the same key until acknowledged, as a client
should); checker threads call CheckEntitlement on every replica without pause. Mid-storm the
nats-server is killed with SIGKILL; during the outage every replica shows it (GetStatus:
engine_connected false, fleet_state "disconnected", last_heard_ms rising) while checks keep
being answered; writes are refused UNAVAILABLE, never acknowledged. The server restarts on the
same store and ports; the storm completes; afterwards: no acknowledged report lost and none
counted twice (every replica reads exactly the acknowledged sums), no check ever failed, and
the staleness is back to zero (lag_events 0, state "ok").

Cluster: the same against a 3-node cluster with an R3 stream, killing (SIGKILL) the node that
leads the stream mid-storm and restarting it.
"""
import random
import threading
import time

import grpc

import natsfix
import wp
from natsfix import FleetCase
from wp import pb

CUSTOMERS = ["fln_%d" % i for i in range(4)]


class Storm:
    """Writers (report usage, retried with the same key until acknowledged) and checkers (every
    replica, all the time) running until stop()."""

    def __init__(self, ents, reports_per_writer):
        self.ents = ents
        self.n = reports_per_writer
        self.lock = threading.Lock()
        self.expected = {c: 0 for c in CUSTOMERS}
        self.acked = 0
        self.unavailable = 0
        self.errors = []
        self.check_ok = [0] * len(ents)
        self.check_failed = []
        self.stopping = False
        self.threads = [threading.Thread(target=self.writer, args=(i,))
                        for i in range(len(ents))]
        self.checkers = [threading.Thread(target=self.checker, args=(i,))
                         for i in range(len(ents))]

    def start(self):
        for t in self.threads + self.checkers:
            t.start()
        return self

    def writer(self, i):
        ent = pb["entitlement"]
        rnd = random.Random(i)
        e = self.ents[i]
        with e.api() as api:
            for j in range(self.n):
                c = rnd.choice(CUSTOMERS)
                q = rnd.randrange(1, 10)
                req = ent.ReportUsageRequest(customer_id=c, feature_code="fl_units", quantity=q,
                                             idempotency_key="nk-%d-%d" % (i, j))
                deadline = time.monotonic() + 240
                while True:
                    try:
                        api.ReportUsage(req, timeout=30)
                        break
                    except grpc.RpcError as ex:
                        if ex.code() != grpc.StatusCode.UNAVAILABLE or \
                                time.monotonic() > deadline:
                            with self.lock:
                                self.errors.append("%s: %s %s" % (
                                    req.idempotency_key, ex.code(), ex.details()))
                            return
                        with self.lock:
                            self.unavailable += 1
                        time.sleep(0.05)
                with self.lock:
                    self.expected[c] += q
                    self.acked += 1

    def checker(self, i):
        e = self.ents[i]
        with e.api() as api:
            while not self.stopping:
                try:
                    api.check(CUSTOMERS[0], "fl_flag")
                    self.check_ok[i] += 1
                except grpc.RpcError as ex:
                    with self.lock:
                        self.check_failed.append("%s: %s %s" % (e.name, ex.code(),
                                                                ex.details()))

    def wait_acked(self, n, timeout=300):
        wp.wait_until(lambda: self.acked >= n or self.errors, timeout)

    def join(self):
        for t in self.threads:
            t.join(600)
        self.stopping = True
        for t in self.checkers:
            t.join(60)


class NatsRestart(FleetCase):
    def run_storm_through_outage(self, ents, kill, restart):
        with ents[0].api() as api:
            natsfix.setup_catalog(api, plan_limit=10 ** 12)
            for c in CUSTOMERS:
                last = natsfix.subscribe(api, c)
        natsfix.wait_sequence(ents, last.sequence)
        storm = Storm(ents, 120).start()
        total = 120 * len(ents)
        storm.wait_acked(total // 3)
        checks_before = list(storm.check_ok)
        kill()
        outage = self.during_outage(ents, storm, cluster=self.cluster)
        restart()
        storm.join()
        self.assertEqual(storm.errors, [])
        self.assertEqual(storm.acked, total)
        self.assertEqual(storm.check_failed, [])
        for i, (a, b) in enumerate(zip(checks_before, storm.check_ok)):
            self.assertGreater(b, a, "checks stopped on replica %d" % i)
        natsfix.log("storm: %d acknowledged, %d UNAVAILABLE answers retried; checks %s; "
                    "outage seen: %s" % (storm.acked, storm.unavailable, storm.check_ok,
                                         outage))
        # Staleness back to zero: connected, caught up with the head, state ok.
        with ents[0].api() as api:
            fence = natsfix.subscribe(api, "fln_fence")
        natsfix.wait_sequence(ents, fence.sequence)

        def settled():
            sts = [natsfix.status(e) for e in ents]
            return all(s.engine_connected and s.lag_events == 0 and s.fleet_state == "ok"
                       for s in sts) and sts
        sts = wp.wait_until(settled, 60, interval=0.2)
        self.assertTrue(sts, [str(natsfix.status(e)) for e in ents])
        for e in ents:
            for c in CUSTOMERS:
                used = self.check_at(e, c, "fl_units", min_sequence=fence.sequence).usage.used
                self.assertEqual(used, storm.expected[c], "%s on %s" % (c, e.name))
        self.assert_identical(ents, CUSTOMERS, wp.now_ms())

    def during_outage(self, ents, storm, cluster=False):
        """While the engine is down: the staleness is visible on every replica and checks
        are still answered. Returns what was seen."""
        if cluster:
            return "cluster"
        def visible():
            sts = [natsfix.status(e) for e in ents]
            ok = all(not s.engine_connected and s.fleet_state == "disconnected" and
                     s.last_heard_ms >= 1000 for s in sts)
            return ok and sts
        sts = wp.wait_until(visible, 60, interval=0.1)
        self.assertTrue(sts, "the outage was not visible: %s" % [
            str(natsfix.status(e)) for e in ents])
        # Checks go on during the outage; a write is refused, not acknowledged.
        n = list(storm.check_ok)
        wp.wait_until(lambda: all(b > a for a, b in zip(n, storm.check_ok)), 30)
        self.assertTrue(all(b > a for a, b in zip(n, storm.check_ok)))
        a = pb["admin"]
        with ents[1].api() as api:
            self.assertStatus(grpc.StatusCode.UNAVAILABLE, api.UpsertFeature,
                              a.UpsertFeatureRequest(feature=pb["types"].Feature(
                                  code="fln_never", type=pb["types"].FEATURE_TYPE_BOOLEAN)),
                              contains="not reachable")
        return "disconnected, last heard %s ms ago" % [s.last_heard_ms for s in sts]

    cluster = False

    def test_single_server_kill9(self):
        self.cluster = False
        nats = natsfix.single()
        with natsfix.owned(nats, []) as ents:
            ents += natsfix.replicas(3, [nats.url])
            self.run_storm_through_outage(ents, nats.kill9, nats.start)
            # The write refused during the outage was never applied anywhere.
            with ents[2].api() as api:
                self.assertStatus(grpc.StatusCode.NOT_FOUND, api.GetFeature,
                                  pb["admin"].GetFeatureRequest(code="fln_never"))

    def test_cluster_leader_kill9(self):
        self.cluster = True
        cl = natsfix.cluster3()
        with natsfix.owned(cl, []) as ents:
            ents += natsfix.replicas(3, cl.urls(), replicas_=3)
            leader = wp.wait_until(lambda: cl.stream_leader("ENTD_EVENTS"), 60)
            self.assertTrue(leader)
            victim = cl.node(leader)
            natsfix.log("cluster: killing stream leader %s" % leader)

            def restart():
                victim.start(90)
                cl.wait_ready()
            self.run_storm_through_outage(ents, victim.kill9, restart)


if __name__ == "__main__":
    natsfix.main()
