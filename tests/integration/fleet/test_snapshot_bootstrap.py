#!/usr/bin/python3
"""integration.fleet.snapshot_bootstrap (Proof 5 of docs/fleet.md): replicas that start from a
snapshot kept in NATS, against a real nats-server -js and real entd replicas in fleet mode.

- Seed: an `entctl generate` database enters a new fleet as its first snapshot
  (`entctl fleet snapshot publish --seed`, while the stream is empty); replicas started with
  empty directories bootstrap from it (their export equals the seed's) and apply the stream.
- Join: one replica runs the periodic snapshot publisher (fleet.snapshot_interval_ms); after
  writes, a new replica with an empty directory starts from that newer snapshot (its log says
  from which sequence, > 0: not a replay from the start), catches up, and gives the same
  export and answers as the others at the same sequence.
- Behind retention: a stopped replica whose next sequence the stream no longer holds (the
  stream is purged below the head, as retention would) re-bootstraps from the newest snapshot
  at its next start instead of serving with a hole, then matches the others again; a refused
  case: a snapshot older than the stream's first sequence is not used.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
import natsfix  # noqa: E402
import test_snapshot  # noqa: E402  (the nats.go tool and entctl helpers)
import wp  # noqa: E402
from natsfix import FleetCase  # noqa: E402

STREAM = "ENTD_EVENTS"
CUSTOMERS = ["cus_%d" % i for i in range(0, 400, 9)]


def entctl(*args):
    return test_snapshot.entctl(*args)


def stream_first_last(nats):
    status, body = natsfix.http_get(nats.http_port, "/jsz?streams=true&accounts=true")
    assert status == 200, body
    for acc in json.loads(body).get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s.get("name") == STREAM:
                st = s.get("state") or {}
                return st.get("first_seq"), st.get("last_seq")
    raise AssertionError("stream %s not found" % STREAM)


def log_of(e):
    with open(e.logpath, errors="replace") as f:
        return f.read()


def bootstrapped_seq(e):
    """The seq of the last 'bootstrapped from the snapshot' line of e's log, or None."""
    m = re.findall(r'bootstrapped from the snapshot.*? seq=(\d+)', log_of(e))
    return int(m[-1]) if m else None


class Bootstrap(FleetCase):
    @classmethod
    def setUpClass(cls):
        cls.ents = []
        cls.tmp = tempfile.mkdtemp(prefix="entd-boot-", dir="/tmp")
        cls.nats = natsfix.single()
        try:
            cls.url = cls.nats.url
            cls.seed = os.path.join(cls.tmp, "seed")
            rc, _, err = entctl("generate", "--db", cls.seed, "--customers", "400", "--seed",
                                "11")
            assert rc == 0, err
            # The first replica creates the stream (empty), then stops; the seed is published
            # into the empty stream's fleet.
            first = natsfix.FleetEntd([cls.url], STREAM, name="first")
            first.start()
            assert first.stop() == 0
            first.cleanup()
            rc, out, err = entctl("fleet", "snapshot", "publish", "--seed", "--db", cls.seed,
                                  "--nats", cls.url, "--stream", STREAM)
            assert rc == 0, err
            assert " seq 0," in out, out
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for e in cls.ents:
            e.cleanup()
        cls.nats.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def replica(self, name, extra=()):
        e = natsfix.FleetEntd([self.url], STREAM, extra=list(extra), name=name)
        self.ents.append(e)
        return e

    def usage(self, e, n, tag):
        ent = wp.pb["entitlement"]
        last = 0
        with e.api() as api:
            for i in range(n):
                r = api.ReportUsage(ent.ReportUsageRequest(
                    customer_id=CUSTOMERS[i % len(CUSTOMERS)], feature_code="f_metered_0",
                    quantity=1 + i % 3, idempotency_key="%s-%d" % (tag, i)))
                last = max(last, r.sequence)
        return last

    def wait_snapshot(self, seq, timeout=120):
        """Poll the bucket until its snapshot is at seq or later (the publisher's period)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc, out, _ = entctl("fleet", "snapshot", "info", "--nats", self.url)
            if rc == 0:
                got = int(re.search(r"^seq (\d+)$", out, re.M).group(1))
                if got >= seq:
                    return got
            time.sleep(0.2)  # poll interval only
        raise AssertionError("no snapshot at seq >= %d within %ds" % (seq, timeout))

    def test_1_seed_then_join(self):
        seed_export = test_snapshot.export_of(self.seed)
        # Two replicas from empty directories: both start from the seed.
        a = self.replica("a").start()
        mport = natsfix._free_ports(1)[0]
        b = self.replica("b", ["--fleet-snapshot-interval-ms", "300", "--metrics-listen",
                               "127.0.0.1:%d" % mport]).start()
        for e in (a, b):
            self.assertEqual(bootstrapped_seq(e), 0, log_of(e)[-2000:])
            with e.api() as api:
                self.assertEqual(json.loads(api.export().json), seed_export)
        # Writes through the stream; b's publisher keeps the bucket's snapshot fresh.
        head = self.usage(a, 60, "j1")
        natsfix.wait_sequence([a, b], head)
        snap = self.wait_snapshot(head)
        self.assertGreaterEqual(snap, head)
        # The publisher's work is visible in b's metrics.
        status, body = natsfix.http_get(mport, "/metrics")
        self.assertEqual(status, 200)
        m = re.search(rb"^entd_sync_snapshots_published_total (\d+)", body, re.M)
        self.assertIsNotNone(m, body[-3000:])
        self.assertGreaterEqual(int(m.group(1)), 1)
        self.assertRegex(body.decode(), r"(?m)^entd_sync_snapshot_failed_total 0$")
        more = self.usage(b, 20, "j2")
        # A new replica joins from the newer snapshot, then applies the rest from the stream.
        c = self.replica("c").start()
        got = bootstrapped_seq(c)
        self.assertIsNotNone(got, log_of(c)[-2000:])
        self.assertGreaterEqual(got, head, "joined from the newer snapshot, not from the seed")
        natsfix.wait_sequence([a, b, c], more)
        self.assert_identical([a, b, c], CUSTOMERS, wp.now_ms())
        type(self).a, type(self).b, type(self).c = a, b, c

    def test_2_behind_retention_rebootstraps(self):
        a, b, c = self.a, self.b, self.c
        self.assertEqual(c.stop(), 0)
        stopped_at = a.sequence()
        head = self.usage(a, 50, "r1")
        natsfix.wait_sequence([a, b], head)
        snap = self.wait_snapshot(head)
        # Retention passes c by: the stream no longer holds c's next sequence.
        test_snapshot.interop("purge", self.url, STREAM, str(head))
        first, last = stream_first_last(self.nats)
        self.assertGreater(first, stopped_at + 1)
        c.start()
        self.assertIn("re-bootstrapping from a snapshot", log_of(c))
        self.assertGreaterEqual(bootstrapped_seq(c), first - 1)
        self.assertGreaterEqual(snap, first - 1)
        after = self.usage(c, 10, "r2")
        natsfix.wait_sequence([a, b, c], after)
        self.assert_identical([a, b, c], CUSTOMERS, wp.now_ms())

    def test_3_snapshot_too_old_is_not_used(self):
        """A replica behind retention whose newest snapshot is also behind does not serve
        with a hole: it refuses to start, naming the cause."""
        a, b = self.a, self.b
        d = self.replica("d")
        d.start()
        self.assertEqual(d.stop(), 0)
        # Stop b's publisher from moving the snapshot, then move the stream past d and past
        # the snapshot.
        self.assertEqual(b.stop(), 0)
        head = self.usage(a, 30, "o1")
        test_snapshot.interop("purge", self.url, STREAM, str(head))
        p = subprocess.run([wp.ARGS.entd, "--db", d.db, "--listen",
                            "127.0.0.1:%d" % natsfix._free_ports(1)[0]]
                           + natsfix.fleet_args([self.url], STREAM),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = p.stdout.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("does not fit", out)
        # (b stays stopped: the purge left it behind too; a would serve on, unaffected.)
        self.assertTrue(a.alive())

    def test_4_stream_recreated(self):
        """The stream is deleted and re-created: a replica of the old one is refused at start
        (an operator decides); `entctl fleet snapshot fetch --replace` with a snapshot of the
        new stream makes it a replica of the new one."""
        a = self.a
        self.assertEqual(a.stop(), 0)
        test_snapshot.interop("rmstream", self.url, STREAM)
        # A new replica re-creates the stream (the bucket's snapshot follows the old one: not
        # used, it starts empty).
        n = self.replica("n").start()
        self.assertIsNone(bootstrapped_seq(n))
        p = subprocess.run([wp.ARGS.entd, "--db", a.db, "--listen",
                            "127.0.0.1:%d" % natsfix._free_ports(1)[0]]
                           + natsfix.fleet_args([self.url], STREAM),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = p.stdout.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("follows stream", out)
        with n.api() as api:
            natsfix.setup_catalog(api)
        head = n.sequence()
        self.assertGreater(head, 0)
        rc, out, err = entctl("fleet", "snapshot", "publish", "--db", n.db, "--nats", self.url)
        self.assertEqual(rc, 0, err)
        self.assertIn(" seq %d," % head, out)
        rc, out, err = entctl("fleet", "snapshot", "fetch", "--replace", "--db", a.db,
                              "--nats", self.url)
        self.assertEqual(rc, 0, err)
        a.start()
        natsfix.wait_sequence([a, n], head)
        with a.api() as x, n.api() as y:
            self.assertEqual(x.export().json, y.export().json)

if __name__ == "__main__":
    rest = wp.setup(sys.argv[1:])
    test_snapshot.INTEROP = natsfix.build_go_tool("objinterop", wp.ARGS.out)
    import signal
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    unittest.main(module="__main__", argv=[sys.argv[0], "-v"] + rest)
