#!/usr/bin/python3
"""integration.writepath.usage_batch: BatchReportUsage and `entctl usage`, against a real entd.

Python grpcio (the independent client) and entctl (our C client) over real gRPC:
  - duplicates inside one batch, across batches, between single reports and batches, and across
    a restart: counted once, answered DUPLICATE with the usage after;
  - one invalid record (each kind of refusal, the wire check included) fails alone with
    records[i].field and the status code the single report would give; the rest are counted,
    and the refused record's key stays free;
  - the call's own limits: 0 and 1001 records refused whole, 1000 accepted;
  - a batch whose records span a usage period boundary: the old period's records are
    acknowledged but not counted, the new period's counted from zero;
  - kill -9 during a storm of batches from several threads: every acknowledged record is present
    exactly once (re-sent: all DUPLICATE, counters unchanged), a batch is all or nothing (an
    unacknowledged batch re-sent is all DUPLICATE or all COUNTED), and the counters end exactly
    at the sum of everything sent;
  - `entctl usage import FILE` (JSON lines): counted / duplicate / refused with line numbers, a
    re-import counts nothing; progress on a terminal; `entctl usage report` for one record.
Nothing depends on timing: the boundary test waits for the wall clock and retries with a wider
window when the machine was too slow; the kill comes after a count of acknowledged batches.
"""
import os
import pty
import select
import subprocess
import tempfile
import threading
import time

import grpc

import wp
from wp import pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


class api_batch:
    """BatchReportUsage over api's channel (not in wp.Api's list): call, .future, .raw."""

    PATH = "/ent.v1.EntitlementService/BatchReportUsage"

    def __init__(self, api):
        resp = pb["entitlement"].BatchReportUsageResponse.FromString
        self.fn = api.channel.unary_unary(self.PATH,
                                          request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=resp)
        self.raw = api.channel.unary_unary(self.PATH, response_deserializer=resp)

    def __call__(self, req, timeout=wp.TIMEOUT):
        return self.fn(req, timeout=timeout)

    def future(self, req, timeout=wp.TIMEOUT):
        return self.fn.future(req, timeout=timeout)


def rec(customer, key, qty=1, feature="ub_units", ts=0):
    return pb["entitlement"].ReportUsageRequest(customer_id=customer, feature_code=feature,
                                                quantity=qty, timestamp=ts, idempotency_key=key)


def outcome(name):
    return pb["entitlement"].UsageOutcome.Value("USAGE_OUTCOME_" + name)


class UsageBatch(wp.Statuses, wp.DaemonCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t, a = pb["types"], pb["admin"]
        for code, ftype in (("ub_units", t.FEATURE_TYPE_METERED),
                            ("ub_calls", t.FEATURE_TYPE_METERED),
                            ("ub_flag", t.FEATURE_TYPE_BOOLEAN)):
            cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(code=code,
                                                                             type=ftype)))
        cls.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code="ub_plan", entitlements=[
            t.Grant(feature_code="ub_units", usage_limit=1000000,
                    usage_reset_period=t.RESET_PERIOD_NEVER),
            t.Grant(feature_code="ub_calls", unlimited=True,
                    usage_reset_period=t.RESET_PERIOD_NEVER),
            t.Grant(feature_code="ub_flag")]))
        cls.batch = api_batch(cls.admin)

    def customer(self, name, plan="ub_plan", anchor=0):
        t, a = pb["types"], pb["admin"]
        self.admin.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id="sub_" + name, customer_id=name, plan_code=plan, billing_anchor=anchor)))
        return name

    def used(self, customer, feature="ub_units", api=None):
        return (api or self.admin).check(customer, feature).usage.used

    def send(self, records, api=None):
        e = pb["entitlement"]
        fn = api_batch(api) if api else self.batch
        r = fn(e.BatchReportUsageRequest(records=records))
        self.assertEqual(len(r.results), len(records))
        self.assertGreater(r.sequence, 0)
        return r

    def outcomes(self, r):
        return [x.outcome for x in r.results]

    # ---- duplicates ------------------------------------------------------------------------

    def test_duplicates_inside_one_batch(self):
        c = self.customer("ub_in1")
        r = self.send([rec(c, "k1", 5), rec(c, "k2", 7), rec(c, "k1", 100), rec(c, "k3", 1),
                       rec(c, "k2", 9)])
        C, D = outcome("COUNTED"), outcome("DUPLICATE")
        self.assertEqual(self.outcomes(r), [C, C, D, C, D])
        # The usage after each record, in record order: a duplicate adds nothing.
        self.assertEqual([x.usage.used for x in r.results], [5, 12, 12, 13, 13])
        self.assertEqual((r.counted, r.duplicates, r.refused, r.not_counted), (3, 2, 0, 0))
        self.assertEqual(self.used(c), 13)
        self.assertEqual(r.results[0].usage.limit, 1000000)
        self.assertEqual(r.results[4].usage.remaining, 1000000 - 13)

    def test_duplicates_across_batches_and_single_reports(self):
        e = pb["entitlement"]
        c = self.customer("ub_across")
        first = self.send([rec(c, "a%d" % i, i + 1) for i in range(10)])
        self.assertEqual(first.counted, 10)
        self.assertEqual(self.used(c), 55)
        again = self.send([rec(c, "a%d" % i, 1000) for i in range(10)] + [rec(c, "b0", 4)])
        self.assertEqual(self.outcomes(again)[:10], [outcome("DUPLICATE")] * 10)
        self.assertEqual(again.results[10].outcome, outcome("COUNTED"))
        self.assertEqual(self.used(c), 59)
        self.assertGreater(again.sequence, first.sequence)
        # A key reported alone is a duplicate in a batch, and a batch's key alone.
        one = self.admin.ReportUsage(e.ReportUsageRequest(customer_id=c, feature_code="ub_units",
                                                          quantity=3, idempotency_key="s1"))
        self.assertFalse(one.duplicate)
        r = self.send([rec(c, "s1", 3), rec(c, "b1", 2)])
        self.assertEqual(self.outcomes(r), [outcome("DUPLICATE"), outcome("COUNTED")])
        self.assertEqual(r.results[0].usage.used, 62)
        dup = self.admin.ReportUsage(e.ReportUsageRequest(customer_id=c, feature_code="ub_units",
                                                          quantity=2, idempotency_key="b1"))
        self.assertTrue(dup.duplicate)
        self.assertEqual(self.used(c), 64)
        # Keys are per customer: the same key for another customer is counted.
        c2 = self.customer("ub_across2")
        r = self.send([rec(c2, "a0", 6)])
        self.assertEqual(r.results[0].outcome, outcome("COUNTED"))
        self.assertEqual(self.used(c2), 6)

    def test_duplicates_across_a_restart(self):
        c = self.customer("ub_restart")
        records = [rec(c, "r%d" % i, 2, feature=("ub_units", "ub_calls")[i % 2])
                   for i in range(40)]
        self.assertEqual(self.send(records).counted, 40)
        before = (self.used(c), self.used(c, "ub_calls"))
        self.assertEqual(before, (40, 40))
        self.admin.close()
        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        type(self).admin = self.d.api()
        type(self).batch = api_batch(self.admin)
        r = self.send(records)
        self.assertEqual(r.duplicates, 40)
        self.assertEqual((self.used(c), self.used(c, "ub_calls")), before)

    # ---- refusals --------------------------------------------------------------------------

    def test_one_invalid_record_fails_alone(self):
        c = self.customer("ub_bad")
        NF = grpc.StatusCode.NOT_FOUND.value[0]
        IA = INVALID.value[0]
        bad = [  # (record, code, message fragment)
            (rec(c, "x1", 0), IA, "quantity"),
            (rec(c, "x2", -4), IA, "quantity"),
            (rec(c, "x3", 1, ts=-1), IA, "timestamp"),
            (rec(c, "", 1), IA, "idempotency_key"),
            (rec(c, "x sp", 1), IA, "idempotency_key"),
            (rec(c, "k" * 256, 1), IA, "idempotency_key"),
            (rec("", "x4", 1), IA, "customer_id"),
            (rec("c" * 201, "x5", 1), IA, "customer_id"),
            (rec("ub_nobody", "x6", 1), NF, "customer_id: unknown customer 'ub_nobody'"),
            (rec(c, "x7", 1, feature="ub_nope"), IA, "feature_code: unknown feature"),
            (rec(c, "x8", 1, feature="ub_flag"), IA, "feature_code: feature 'ub_flag' is not "
                                                     "metered"),
            (rec(c, "x9", 1, feature=""), IA, "feature_code"),
            (rec("ub\x00bad", "x10", 1), IA, "customer_id: contains a NUL byte"),
        ]
        for n, (r_bad, code, frag) in enumerate(bad):
            pos = n % 5  # the bad record moves through the batch
            records = [rec(c, "ok-%d-%d" % (n, i), 1) for i in range(4)]
            records.insert(pos, r_bad)
            before = self.used(c)
            r = self.send(records)
            res = r.results[pos]
            self.assertEqual(res.outcome, outcome("REFUSED"), frag)
            self.assertEqual(res.code, code, "%s: %s" % (frag, res.error))
            self.assertTrue(res.error.startswith("records[%d]." % pos), res.error)
            self.assertIn(frag, res.error)
            self.assertFalse(res.HasField("usage"))
            others = [x for i, x in enumerate(r.results) if i != pos]
            self.assertEqual([x.outcome for x in others], [outcome("COUNTED")] * 4, res.error)
            self.assertEqual((r.counted, r.refused), (4, 1))
            self.assertEqual(self.used(c), before + 4, frag)
        # A refused record stored nothing: its key, corrected, is counted.
        r = self.send([rec(c, "x1", 3), rec(c, "x7", 2)])
        self.assertEqual(r.counted, 2)

    def test_several_invalid_records_and_all_refused(self):
        c = self.customer("ub_bad2")
        before = self.used(c)
        r = self.send([rec(c, "y0", 0), rec(c, "y1", 1), rec("ub\x00x", "y2", 1), rec(c, "y3", 2),
                       rec(c, "", 1)])
        self.assertEqual([x.outcome == outcome("REFUSED") for x in r.results],
                         [True, False, True, False, True])
        self.assertEqual([x.error.split(":")[0] for x in r.results if x.error],
                         ["records[0].quantity", "records[2].customer_id",
                          "records[4].idempotency_key"])
        self.assertEqual(self.used(c), before + 3)
        # Every record refused: still OK, one result each, nothing counted.
        r = self.send([rec(c, "z0", 0), rec("ub\x00y", "z1", 1)])
        self.assertEqual(r.refused, 2)
        self.assertEqual(self.used(c), before + 3)

    def test_call_limits(self):
        e = pb["entitlement"]
        c = self.customer("ub_limits")
        self.assertStatus(INVALID, self.batch, e.BatchReportUsageRequest(),
                          contains="records: must hold 1..1000 records (got 0)")
        big = [rec(c, "l%d" % i, 1) for i in range(1001)]
        self.assertStatus(INVALID, self.batch, e.BatchReportUsageRequest(records=big),
                          contains="records: must hold 1..1000 records (got 1001)")
        self.assertEqual(self.used(c), 0)
        r = self.send(big[:1000])
        self.assertEqual(r.counted, 1000)
        self.assertEqual(self.used(c), 1000)
        # A malformed request (not protobuf) is refused whole.
        with self.assertRaises(grpc.RpcError) as cm:
            self.batch.raw(b"\x0a\xff\xff\xff", timeout=wp.TIMEOUT)
        self.assertEqual(cm.exception.code(), INVALID)

    # ---- period boundary -------------------------------------------------------------------

    def test_batch_spanning_a_period_boundary(self):
        t, a = pb["types"], pb["admin"]
        self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code="ub_daily", entitlements=[
            t.Grant(feature_code="ub_units", usage_limit=500,
                    usage_reset_period=t.RESET_PERIOD_DAILY)]))

        def flow(attempt, margin):
            # Daily periods anchored so that one ends `margin` ms from now.
            boundary = wp.now_ms() + margin
            c = self.customer("ub_period%d" % attempt, plan="ub_daily", anchor=boundary)
            # Before the boundary: records of the current period [boundary - 1d, boundary).
            r1 = self.send([rec(c, "p0", 5), rec(c, "p1", 11, ts=boundary - wp.DAY + 1)])
            wp.assert_before(boundary)
            self.assertEqual(self.outcomes(r1), [outcome("COUNTED")] * 2)
            self.assertEqual(r1.results[1].usage.used, 16)
            self.assertEqual(r1.results[1].usage.period_start, boundary - wp.DAY)
            self.assertEqual(r1.results[1].usage.period_end, boundary)
            wp.sleep_until(boundary)
            # Wait for the writer's timer to roll the stored period (so what is stored is
            # known); answers are exact in time either way.
            self.assertTrue(wp.wait_until(lambda: self.admin.status().next_boundary_at
                                          != boundary, 60), "the period never rolled")
            r2 = self.send([
                rec(c, "q0", 3, ts=boundary - 1),     # the closed period: not counted
                rec(c, "q1", 7),                      # now: the new period, from zero
                rec(c, "q2", 4, ts=boundary - 500),   # closed period again
                rec(c, "q3", 2, ts=boundary),         # the first instant of the new one
                rec(c, "p0", 5),                      # a key of the old period: duplicate
            ])
            self.assertEqual(self.outcomes(r2), [
                outcome("NOT_COUNTED"), outcome("COUNTED"), outcome("NOT_COUNTED"),
                outcome("COUNTED"), outcome("DUPLICATE")])
            self.assertEqual((r2.counted, r2.not_counted, r2.duplicates), (2, 2, 1))
            self.assertEqual([x.usage.used for x in r2.results], [0, 7, 7, 9, 9])
            for x in r2.results:
                self.assertEqual(x.usage.period_start, boundary)
                self.assertEqual(x.usage.period_end, boundary + wp.DAY)
            self.assertEqual(self.used(c), 9)
            # A not-counted record's key is kept: it stays acknowledged, never counted later.
            r3 = self.send([rec(c, "q0", 3)])
            self.assertEqual(r3.results[0].outcome, outcome("DUPLICATE"))
            self.assertEqual(self.used(c), 9)
        wp.with_margins(self, flow)

    # ---- entctl ----------------------------------------------------------------------------

    def entctl(self, *args, pty_stderr=False):
        cmd = [wp.ARGS.entctl] + list(args)
        if not pty_stderr:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
            return p.returncode, p.stdout.decode(), p.stderr.decode()
        master, slave = pty.openpty()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        err = b""
        while True:
            ready, _, _ = select.select([master], [], [], 300)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
        out = p.stdout.read()
        p.stdout.close()
        p.wait(300)
        os.close(master)
        return p.returncode, out.decode(), err.decode(errors="replace")

    def test_entctl_usage_import(self):
        c = self.customer("ub_ctl")
        lines = [
            '{"customer_id": "ub_ctl", "feature_code": "ub_units", "quantity": 5, '
            '"idempotency_key": "i1"}',
            '{"customer_id": "ub_ctl", "feature_code": "ub_units", "quantity": 7, '
            '"idempotency_key": "i2", "timestamp": "now"}',
            '',  # blank lines are skipped
            '{"customer_id": "ub_ctl", "feature_code": "ub_units", "quantity": 0, '
            '"idempotency_key": "i3"}',                                   # line 4: refused
            '{"customer_id": "ub_ctl", "feature_code": "ub_units", "quantity": 1, '
            '"idempotency_key": "i1"}',                                   # line 5: duplicate
            '{"customer_id": "ub_ctl", "feature_code": "ub_units", "quantity": 2',  # 6: bad JSON
            '{"customer_id": "ub_ctl", "feature_code": "ub_units", "quantity": 2, '
            '"idempotency_key": "i4", "colour": "red"}',                  # line 7: unknown key
            '{"customerId": "ub_nobody", "featureCode": "ub_units", "quantity": 2, '
            '"idempotencyKey": "i5"}',                                    # line 8: NOT_FOUND
        ] + ['{"customer_id": "ub_ctl", "feature_code": "ub_calls", "quantity": 1, '
             '"idempotency_key": "m%d"}' % i for i in range(25)]          # lines 9..33
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            path = f.name
        try:
            rc, out, err = self.entctl("usage", "import", "-a", self.d.tcp, "--batch-size", "10",
                                       path)
            self.assertEqual(rc, 1, out + err)  # some lines were refused
            self.assertRegex(out, r"(?m)^counted\s+27$")
            self.assertRegex(out, r"(?m)^duplicate\s+1\s+lines 5$")
            self.assertRegex(out, r"(?m)^refused\s+4\s+lines 4, 6-8$")
            for n, frag in ((4, "INVALID_ARGUMENT: quantity"), (6, "JSON: "),
                            (7, "RECORD: .*colour"),
                            (8, "NOT_FOUND: customer_id: unknown customer 'ub_nobody'")):
                self.assertRegex(out, r"(?m)^line %d: %s" % (n, frag))
            self.assertIn("33 lines in 3 calls", out)
            self.assertEqual(self.used(c), 12)
            self.assertEqual(self.used(c, "ub_calls"), 25)
            # Importing the same file again counts nothing.
            rc, out, err = self.entctl("usage", "import", "-a", self.d.tcp, path)
            self.assertEqual(rc, 1)
            self.assertRegex(out, r"(?m)^counted\s+0$")
            self.assertRegex(out, r"(?m)^duplicate\s+28\s+lines 1-2, 5, 9-33$")
            self.assertEqual(self.used(c), 12)
            # --json: a machine-readable summary.
            rc, out, err = self.entctl("usage", "import", "-a", self.d.tcp, "--json", path)
            import json
            s = json.loads(out)
            self.assertEqual((s["counted"], s["duplicate"], s["refused"]), (0, 28, 4))
            self.assertEqual(s["duplicate_lines"], [1, 2, 5] + list(range(9, 34)))
            self.assertEqual([x["line"] for x in s["refused_lines"]], [4, 6, 7, 8])
            # A clean file exits 0; on a terminal it shows progress on stderr.
            clean = path + ".clean"
            with open(clean, "w") as f:
                for i in range(2500):
                    f.write('{"customer_id": "ub_ctl", "feature_code": "ub_calls", '
                            '"quantity": 1, "idempotency_key": "t%d"}\n' % i)
            rc, out, err = self.entctl("usage", "import", "-a", self.d.tcp, clean,
                                       pty_stderr=True)
            self.assertEqual(rc, 0, out + err)
            self.assertRegex(out, r"(?m)^counted\s+2500$")
            self.assertIn("2500/2500 lines", err)  # the progress line's last state
            self.assertEqual(self.used(c, "ub_calls"), 2525)
            # Not a terminal: no progress.
            rc, out, err = self.entctl("usage", "import", "-a", self.d.tcp, clean)
            self.assertEqual(rc, 0)
            self.assertNotIn("lines", err)
            self.assertRegex(out, r"(?m)^duplicate\s+2500\s+lines 1-2500$")
            os.unlink(clean)
            # A missing file is a usage of the command that fails before any call.
            rc, out, err = self.entctl("usage", "import", "-a", self.d.tcp, path + ".missing")
            self.assertEqual(rc, 1)
            self.assertIn("cannot open", err)
        finally:
            os.unlink(path)

    def test_entctl_usage_report(self):
        c = self.customer("ub_ctl1")
        rc, out, err = self.entctl("usage", "report", "-a", self.d.tcp, "--key", "o1", c,
                                   "ub_units", "6")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"duplicate\s+no")
        self.assertRegex(out, r"used\s+6")
        rc, out, err = self.entctl("usage", "report", "-a", self.d.tcp, "--key", "o1", c,
                                   "ub_units", "6")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"duplicate\s+yes")
        self.assertEqual(self.used(c), 6)
        rc, out, err = self.entctl("usage", "report", "-a", self.d.tcp, "--key", "o2", c,
                                   "ub_units", "0")
        self.assertEqual(rc, 1)
        self.assertIn("INVALID_ARGUMENT", err)
        self.assertIn("quantity", err)
        rc, out, err = self.entctl("usage", "report", "-a", self.d.tcp, c, "ub_units", "1")
        self.assertEqual(rc, 2)
        self.assertIn("--key", err)
        # The older spelling without a verb still reports one record.
        rc, out, err = self.entctl("usage", "-a", self.d.tcp, "--key", "o3", c, "ub_units", "4")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.used(c), 10)


# ---- kill -9 during a storm of batches --------------------------------------------------------

STORM_THREADS = 6
STORM_CUSTOMERS = 3
BATCHES_BEFORE_KILL = 150
MAX_STORM_S = 300


class BatchStorm:
    """Threads sending batches (own channel each, one call in flight) until entd is gone."""

    def __init__(self, target, rnd):
        self.target, self.rnd = target, rnd
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.batches = []  # [records, acked(bool), response or None]
        self.acked = 0
        self.errors = []
        self.details = []
        self.threads = []

    def _run(self, i):
        e = pb["entitlement"]
        api = wp.Api(self.target)
        batch = api_batch(api)
        try:
            # Connected before the storm: gRPC 1.51 can report a connect still in progress as
            # failed ("No such file or directory", docs/entctl.md), which would stop this
            # thread before the kill this test is about.
            grpc.channel_ready_future(api.channel).result(timeout=60)
            j = 0
            while not self.stop.is_set():
                j += 1
                n = 1 + (i * 37 + j * 11) % 200  # 1..200 records
                records = []
                for k in range(n):
                    cus = "ubs_%d" % ((i + k) % STORM_CUSTOMERS)
                    records.append(rec(cus, "s%d-%d-%d-%d" % (self.rnd, i, j, k), 1 + k % 5))
                entry = [records, False, None]
                with self.lock:
                    self.batches.append(entry)
                try:
                    r = batch(e.BatchReportUsageRequest(records=records), timeout=60)
                except grpc.RpcError as err:
                    with self.lock:
                        self.errors.append(err.code())
                        self.details.append(err.details())
                    return
                entry[2] = r
                entry[1] = True
                with self.lock:
                    self.acked += 1
        finally:
            api.close()

    def start(self):
        for i in range(STORM_THREADS):
            th = threading.Thread(target=self._run, args=(i,), daemon=True)
            th.start()
            self.threads.append(th)

    def join(self):
        self.stop.set()
        for th in self.threads:
            th.join(120)
            assert not th.is_alive(), "a storm thread hangs"


class Kill9(wp.EntdPerTest):
    def test_kill9_during_a_storm_of_batches(self):
        t, a, e = pb["types"], pb["admin"], pb["entitlement"]
        api = self.d.api()
        api.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="ub_units", type=t.FEATURE_TYPE_METERED)))
        api.SetPlanEntitlements(a.SetEntitlementsRequest(code="ubs_plan", entitlements=[
            t.Grant(feature_code="ub_units", unlimited=True,
                    usage_reset_period=t.RESET_PERIOD_NEVER)]))
        customers = ["ubs_%d" % k for k in range(STORM_CUSTOMERS)]
        for cus in customers:
            api.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
                id="sub_" + cus, customer_id=cus, plan_code="ubs_plan")))
        api.close()
        base = {cus: 0 for cus in customers}

        def total(batches, cus):
            return sum(r.quantity for b in batches for r in b[0] if r.customer_id == cus)

        for rnd in range(2):
            storm = BatchStorm(self.d.tcp, rnd)
            storm.start()
            deadline = time.monotonic() + MAX_STORM_S
            while storm.acked < BATCHES_BEFORE_KILL and time.monotonic() < deadline:
                time.sleep(0.01)
            running = sum(th.is_alive() for th in storm.threads)
            self.d.kill9()
            storm.join()
            acked = [b for b in storm.batches if b[1]]
            lost = [b for b in storm.batches if not b[1]]
            wp.log("round %d: killed with %d threads sending; %d batches (%d records) "
                   "acknowledged, %d not" % (rnd, running, len(acked),
                                             sum(len(b[0]) for b in acked), len(lost)))
            self.assertEqual(running, STORM_THREADS,
                             "threads stopped before the kill: %s" % storm.details)
            self.assertGreater(len(acked), 0)
            self.assertTrue(all(c == grpc.StatusCode.UNAVAILABLE for c in storm.errors),
                            storm.errors)
            for b in acked:  # every acknowledged record was counted when acknowledged
                self.assertEqual(b[2].counted, len(b[0]))

            self.mdb_stat()
            self.d.start()
            api = self.d.api()
            batch = api_batch(api)
            try:
                used = {cus: api.check(cus, "ub_units").usage.used for cus in customers}
                for cus in customers:
                    ack, unk = total(acked, cus), total(lost, cus)
                    self.assertLessEqual(base[cus] + ack, used[cus], "%s: acknowledged lost" % cus)
                    self.assertLessEqual(used[cus], base[cus] + ack + unk, "%s: twice" % cus)
                # Every acknowledged record is present: re-sent, all duplicates, nothing moves.
                futs = [batch.future(e.BatchReportUsageRequest(records=b[0])) for b in acked]
                for b, f in zip(acked, futs):
                    r = f.result()
                    self.assertEqual(r.duplicates, len(b[0]), "acknowledged records missing")
                self.assertEqual({cus: api.check(cus, "ub_units").usage.used
                                  for cus in customers}, used)
                # An unacknowledged batch is all or nothing: re-sent, all duplicate or all
                # counted. Then every counter is exactly the sum of everything sent.
                committed = 0
                for b in lost:
                    r = batch(e.BatchReportUsageRequest(records=b[0]))
                    self.assertIn((r.counted, r.duplicates), ((len(b[0]), 0), (0, len(b[0]))),
                                  "a batch was applied in part")
                    committed += r.duplicates > 0
                wp.log("round %d: %d unacknowledged batches had been committed before the "
                       "kill" % (rnd, committed))
                for cus in customers:
                    base[cus] += total(storm.batches, cus)
                    self.assertEqual(api.check(cus, "ub_units").usage.used, base[cus],
                                     "%s: not exactly once" % cus)
            finally:
                api.close()
        self.assertEqual(self.d.stop(), 0)
        self.mdb_stat()


if __name__ == "__main__":
    wp.main()
