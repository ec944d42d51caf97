#!/usr/bin/python3
"""integration.fleet.rebootstrap (Proof 5 of docs/fleet.md, at run time): a RUNNING replica that
the stream's retention left behind re-bootstraps in place from a snapshot - no restart (same
PID), no half-restored state ever answered.

How a running replica is put behind retention, reliably: the stream is created with
`fleet.max_msgs` 60 (it keeps the newest 60 messages) and e2 is frozen with SIGSTOP. SIGSTOP
alone is not enough: nats-server keeps pushing the consumer's messages into the frozen
process's socket buffers (measured: 400 messages all "delivered" to a frozen client), so
after SIGCONT it would have everything it needs. So this nats-server pings its clients every
second and drops one that misses two pings ("stale connection"): the test waits until the
server lists one entd connection less (polled, no sleep as proof), and only then writes more
than 60 messages. Whatever e2 had not received before the drop is then gone from the stream.
After SIGCONT, nats.c reconnects and re-creates the ordered consumer from e2's last sequence
+ 1; the stream starts later, e2's consumer sees the jump: a hole.

1. No snapshot fits (the only snapshot is older than the stream's first sequence): e2 reports
   `stopped_hole`, health NOT_SERVING, `entd_sync_degraded 1`, retries (the metric
   `entd_sync_rebootstrap_failed_total` grows past 2 while the state stays), keeps answering
   checks from its last applied state (sequence unchanged) and refuses writes UNAVAILABLE.
2. A snapshot is published (`entctl fleet snapshot publish` from e1's directory): e2
   re-bootstraps in place - same PID, started once ("entd listening" logged once),
   "re-bootstrapped in place" logged, `entd_sync_rebootstraps_total 1` - catches up, takes
   writes again, and e1, e2, e3 give the same export and answers at the same sequence.
3. Never a partial state: a thread checks every customer on e2 in one BatchCheckEntitlements
   call (one read snapshot) from SIGCONT to the end. Each customer is subscribed by one write
   whose stream sequence is known, and nothing else changes who is entitled, so every answer
   at sequence q must grant exactly the customers written at or before q - the old state,
   the new state and every catch-up step alike. A table swapped without the others, a wipe
   visible before the copy, or meta "seq" moving without the data would break it. The
   thread must have seen answers from before the (first) swap and from after both.
4. Again with a fitting snapshot already published when e2 meets the hole: it re-bootstraps
   at once (`entd_sync_rebootstraps_total 2`), still the same PID, and matches the others.
5. The stream e1 created keeps `max_msgs` 60 (nats-server's /jsz); a bad `fleet.max_msgs` is
   refused at start with the key named.
"""
import json
import os
import signal
import threading
import time

import grpc

import natsfix
import wp
from natsfix import FleetCase
from wp import pb

MAX_MSGS = 60
PING_CONF = 'ping_interval: "1s"\nping_max: 2'


def entd_connections(n):
    """Connections named "entd" the server lists (entctl names its own otherwise)."""
    status, body = natsfix.http_get(n.http_port, "/connz?limit=1024")
    if status != 200:
        return None
    return sum(1 for c in json.loads(body).get("connections") or [] if c.get("name") == "entd")


def metric(port, name):
    status, body = natsfix.http_get(port, "/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def serving(e):
    h = pb["health"]
    with e.api() as a:
        return a.Health(h.HealthCheckRequest()).status == h.HealthCheckResponse.SERVING


class CheckLoop(threading.Thread):
    """BatchCheckEntitlements of every customer on one replica, again and again: records
    (sequence, allowed tuple) of every answer."""

    def __init__(self, e, customers):
        super().__init__(daemon=True)
        self.e = e
        self.customers = list(customers)
        self.stop_ev = threading.Event()
        self.answers = []
        self.errors = []

    def run(self):
        ent = pb["entitlement"]
        req = ent.BatchCheckEntitlementsRequest(checks=[
            ent.CheckEntitlementRequest(customer_id=c, feature_code="fl_flag")
            for c in self.customers])
        # A long call timeout: the replica is frozen (SIGSTOP) for a while in round 4.
        with wp.Api(self.e.tcp, timeout=600) as a:
            while not self.stop_ev.is_set():
                try:
                    r = a.BatchCheckEntitlements(req)
                except grpc.RpcError as ex:
                    self.errors.append("%s %s" % (ex.code(), ex.details()))
                    continue
                self.answers.append((r.sequence, tuple(x.allowed for x in r.results)))

    def stop(self):
        self.stop_ev.set()
        self.join(120)


class Rebootstrap(FleetCase):
    def test_rebootstrap_in_place(self):
        n = natsfix.Nats(extra_conf=PING_CONF).start()
        ents = []
        frozen = []
        loop = None
        try:
            extra = ["--fleet-snapshot-interval-ms", "0", "--fleet-max-msgs", str(MAX_MSGS)]
            e1 = natsfix.FleetEntd([n.url], extra=extra, name="e1")
            mport = natsfix._free_ports(1)[0]
            e2 = natsfix.FleetEntd([n.url], name="e2", extra=extra + [
                "--metrics-listen", "127.0.0.1:%d" % mport])
            e3 = natsfix.FleetEntd([n.url], extra=extra, name="e3")
            ents = [e1, e2, e3]
            for e in ents:
                e.start()
            # The stream e1 created carries fleet.max_msgs.
            status, body = natsfix.http_get(n.http_port, "/jsz?streams=true&config=true")
            self.assertEqual(status, 200)
            cfgs = [sd.get("config") or {} for acc in json.loads(body).get("account_details")
                    or [] for sd in acc.get("stream_detail") or []
                    if sd.get("name") == "ENTD_EVENTS"]
            self.assertEqual([c.get("max_msgs") for c in cfgs], [MAX_MSGS])
            written = {}  # customer -> stream sequence of its subscription

            def write(e, names):
                last = None
                with e.api() as api:
                    for c in names:
                        last = natsfix.subscribe(api, c)
                        written[c] = last.sequence
                return last

            with e1.api() as api:
                natsfix.setup_catalog(api)
            write(e1, ["rb_%d" % i for i in range(10)])
            # A snapshot that will be too old once e2 meets the hole.
            e1.entctl("fleet", "snapshot", "publish", "--db", e1.db, "--nats", n.url)
            old_snap = natsfix.status(e1).sequence
            natsfix.wait_sequence(ents, old_snap)
            pid = e2.pid

            def freeze_and_outrun(first_name):
                """SIGSTOP e2, wait until the server dropped its connection, then write more
                than the stream keeps. Returns e2's sequence before and the names written."""
                before = natsfix.status(e2).sequence
                conns = entd_connections(n)
                os.kill(e2.pid, signal.SIGSTOP)
                frozen.append(e2)
                self.assertTrue(wp.wait_until(lambda: entd_connections(n) == conns - 1, 120),
                                "nats-server did not drop the frozen replica's connection")
                names = ["rb_%d" % i for i in range(first_name, first_name + 2 * MAX_MSGS)]
                write(e1, names)
                info = natsfix.status(e1)
                natsfix.log("e2 frozen at %d; stream head %d" % (before, info.sequence))
                return before, names

            customers = ["rb_%d" % i for i in range(10 + 4 * MAX_MSGS)] + ["rb_w1", "rb_w2"]
            a, _ = freeze_and_outrun(10)
            self.assertGreater(natsfix.status(e1).sequence - MAX_MSGS, a + 1)
            self.assertGreater(natsfix.status(e1).sequence - MAX_MSGS, old_snap + 1)

            loop = CheckLoop(e2, customers)
            os.kill(e2.pid, signal.SIGCONT)
            frozen.remove(e2)
            loop.start()

            # 1. No snapshot fits: stopped, flagged, retrying, still answering checks.
            def state():
                return natsfix.status(e2).fleet_state
            self.assertTrue(wp.wait_until(lambda: state() == "stopped_hole", 120),
                            "e2 did not report the hole: %s" % state())
            self.assertTrue(wp.wait_until(
                lambda: (metric(mport, "entd_sync_rebootstrap_failed_total") or 0) >= 2, 120))
            st = natsfix.status(e2)
            self.assertEqual(st.fleet_state, "stopped_hole")
            self.assertEqual(st.sequence, a)
            self.assertFalse(serving(e2))
            self.assertEqual(metric(mport, "entd_sync_degraded"), 1)
            self.assertEqual(metric(mport, "entd_sync_rebootstraps_total"), 0)
            with e2.api() as api:
                self.assertStatus(grpc.StatusCode.UNAVAILABLE, natsfix.subscribe, api,
                                  "rb_refused", contains="re-bootstrap")
                c = api.check("rb_0", "fl_flag")
                self.assertTrue(c.allowed)
                self.assertEqual(c.sequence, a)
            self.assertIn("stream no longer holds the next sequence", e2.log_text())
            self.assertIn("re-bootstrap waits: no snapshot fits", e2.log_text())

            # 2. A snapshot that fits: re-bootstrap in place.
            e1.entctl("fleet", "snapshot", "publish", "--db", e1.db, "--nats", n.url)
            snap = natsfix.status(e1).sequence
            self.assertTrue(wp.wait_until(
                lambda: natsfix.status(e2).sequence >= snap and state() == "ok", 120),
                "e2 did not re-bootstrap: %s" % natsfix.status(e2))
            self.assertTrue(wp.wait_until(lambda: serving(e2), 120))
            self.assertEqual(e2.pid, pid)
            self.assertTrue(e2.alive())
            log = e2.log_text()
            self.assertEqual(log.count("entd listening"), 1)
            self.assertIn("re-bootstrapped in place from the snapshot", log)
            self.assertIn("seq=%d" % snap, log)
            self.assertEqual(metric(mport, "entd_sync_rebootstraps_total"), 1)
            self.assertEqual(metric(mport, "entd_sync_degraded"), 0)
            self.assertFalse(os.path.exists(os.path.join(e2.db, ".rebootstrap")))
            # It takes writes again, and every replica agrees.
            last = write(e2, ["rb_w1"])
            self.assertGreater(last.sequence, snap)
            last = write(e3, ["rb_w2"])
            natsfix.wait_sequence(ents, last.sequence)
            self.assert_identical(ents, [c for c in customers if c in written], wp.now_ms())

            # 4. The hole again, with a fitting snapshot published before e2 wakes up.
            b, _ = freeze_and_outrun(10 + 2 * MAX_MSGS)
            e1.entctl("fleet", "snapshot", "publish", "--db", e1.db, "--nats", n.url)
            snap2 = natsfix.status(e1).sequence
            self.assertGreater(snap2 - MAX_MSGS, b + 1)
            os.kill(e2.pid, signal.SIGCONT)
            frozen.remove(e2)
            self.assertTrue(wp.wait_until(
                lambda: metric(mport, "entd_sync_rebootstraps_total") == 2, 120),
                "e2 did not re-bootstrap a second time: %s" % natsfix.status(e2))
            natsfix.wait_sequence([e2], snap2)
            self.assertTrue(wp.wait_until(lambda: state() == "ok", 120))
            self.assertEqual(e2.pid, pid)
            self.assertEqual(e2.log_text().count("entd listening"), 1)
            last = write(e1, ["rb_w3"])
            customers.append("rb_w3")
            natsfix.wait_sequence(ents, last.sequence)
            self.assert_identical(ents, [c for c in customers if c in written], wp.now_ms())

            # 3. Every answer e2 gave was a whole state.
            loop.stop()
            self.assertEqual(loop.errors, [])
            self.assertGreater(len(loop.answers), 0)
            seen = set()
            for q, allowed in loop.answers:
                want = tuple(c in written and written[c] <= q for c in loop.customers)
                self.assertEqual(allowed, want, "e2 answered a state that is not the one of "
                                 "sequence %d" % q)
                seen.add(q)
            self.assertIn(a, seen, "the check loop saw no answer from before the first swap")
            self.assertTrue(any(q >= snap for q in seen))
            self.assertTrue(any(q >= snap2 for q in seen))
            natsfix.log("check loop: %d answers at %d sequences" % (len(loop.answers),
                                                                    len(seen)))
        except Exception:
            n.failed = True
            for e in ents:
                e.failed = True
            raise
        finally:
            if loop is not None and loop.is_alive():
                loop.stop()
            for e in frozen:
                os.kill(e.pid, signal.SIGCONT)
            failed = []
            for e in ents:
                if e.stop() != 0:
                    failed.append(e.name)
                    e.failed = True
                e.cleanup()
            n.cleanup()
        self.assertEqual(failed, [], "entd did not exit 0 after SIGTERM")

    def test_max_msgs_setting_named(self):
        """A bad fleet.max_msgs is refused at start, naming the key (no NATS needed)."""
        import subprocess
        import tempfile
        d = tempfile.mkdtemp(prefix="entd-rb-")
        try:
            for bad, want in (("abc", "not an integer"), ("-1", "not an integer"),
                              ("3000000000", "not in 0..2000000000")):
                p = subprocess.run([wp.ARGS.entd, "--db", d, "--fleet-nats",
                                    "nats://127.0.0.1:1", "--fleet-max-msgs", bad],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
                out = p.stdout.decode(errors="replace")
                self.assertNotEqual(p.returncode, 0, out)
                self.assertIn("fleet.max_msgs", out)
                self.assertIn(want, out)
        finally:
            import shutil
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    natsfix.main()
