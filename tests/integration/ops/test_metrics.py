#!/usr/bin/python3
"""Prometheus metrics, probes and the decision log (ops suite).

One entd with metrics.listen on a free port and the decision log at sample rate 1 into a file.
The exposition is parsed strictly (ops.parse_metrics). Known traffic is sent, and the
difference between a scrape before and one after must be exactly that traffic:

- entd_rpc_calls_total by method and status (OK, INVALID_ARGUMENT, UNAUTHENTICATED);
- entd_rpc_duration_seconds: _count moves by the calls, buckets are cumulative, +Inf = count;
- entd_check_decisions_total by reason, for unary checks, batch items and stream messages;
- the writer and snapshot gauges move after a write; store, LMDB and process gauges exist;
- the decision log has one line per check and entd_decision_log_lines_total agrees;
- the batched walk's state: logged once at start, entd_store_walk_enabled 1 (0 with
  --no-batched-walk, which logs why), entd_store_walk_fallbacks_total exported.

/livez and /readyz answer 200 while serving (the drain suite checks /readyz 503).
"""

import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(2, ops.PROBE, ops.API, extra=ops.ADMIN + ops.METRICS + """
decision_log:
  sample_rate: 1
  path: {tmp}/decisions.log
""")

E = "/ent.v1.EntitlementService/"


class Metrics(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(CONFIG, ports=["api", "metrics"])
        self.d.start()
        self.port = self.d.ports["metrics"]

    def delta(self, before, after, name, **labels):
        a = ops.metric(after, name, **labels)
        self.assertIsNotNone(a, "%s%s missing after the traffic" % (name, labels))
        return a - (ops.metric(before, name, **labels) or 0)

    def test_probes(self):
        self.assertEqual(ops.http_get(self.port, "/livez"), (200, "ok\n"))
        self.assertEqual(ops.http_get(self.port, "/readyz"), (200, "ok\n"))
        self.assertEqual(ops.http_get(self.port, "/nope")[0], 404)

    def test_counters_move_with_traffic(self):
        e = ops.pb["entitlement"]
        before = ops.scrape(self.port)
        self.assertEqual(ops.metric(before, "entd_serving"), 1)
        # Every method's OK series exists from the start, at 0.
        self.assertEqual(ops.metric(before, "entd_rpc_calls_total", method=E + "CheckEntitlement",
                                    code="OK"), 0)
        with ops.channel(self.d.addr("api")) as ch:
            check = ops.check_fn(ch)
            for _ in range(40):
                self.assertTrue(check(ops.check_req(), timeout=ops.TIMEOUT).allowed)
            for _ in range(7):
                r = check(ops.check_req("cus_nobody", "sso"), timeout=ops.TIMEOUT)
                self.assertEqual(r.reason, ops.reason("UNKNOWN_CUSTOMER"))
            with self.assertRaises(grpc.RpcError) as cm:
                check(ops.check_req(customer=""), timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

            batch = ops.unary(ch, E + "BatchCheckEntitlements",
                              e.BatchCheckEntitlementsResponse)
            r = batch(e.BatchCheckEntitlementsRequest(checks=[ops.check_req()] * 4 + [
                ops.check_req("cus_acme", "no_such_feature")]), timeout=ops.TIMEOUT)
            self.assertEqual(len(r.results), 5)

            s = ops.Stream(ch)
            for _ in range(3):
                self.assertTrue(s.ask(ops.check_req()).allowed)
            self.assertEqual(s.close(), grpc.StatusCode.OK)

            feats = ops.unary(ch, "/ent.v1.AdminService/ListFeatures",
                              ops.pb["admin"].ListFeaturesResponse)
            with self.assertRaises(grpc.RpcError) as cm:
                feats(ops.pb["admin"].ListFeaturesRequest(), timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

            usage = ops.unary(ch, E + "ReportUsage", e.ReportUsageResponse)
            usage(e.ReportUsageRequest(customer_id="cus_acme", feature_code="api_calls",
                                       quantity=3, idempotency_key="ops-metrics-1"),
                  timeout=ops.TIMEOUT)
        # A call is counted when its final batch completes on its worker thread, which may
        # be a moment after the client has its answer (a write is answered from the writer
        # thread): scrape until every call shows, then every figure must be exact.
        calls = "entd_rpc_calls_total"
        want = {
            (E + "CheckEntitlement", "OK"): 47,
            (E + "CheckEntitlement", "INVALID_ARGUMENT"): 1,
            (E + "BatchCheckEntitlements", "OK"): 1,
            (E + "StreamCheckEntitlements", "OK"): 1,
            (E + "ReportUsage", "OK"): 1,
            ("/ent.v1.AdminService/ListFeatures", "UNAUTHENTICATED"): 1,
        }

        def moved(a, name, **kw):
            return (ops.metric(a, name, **kw) or 0) - (ops.metric(before, name, **kw) or 0)

        def settled():
            a = ops.scrape(self.port)
            ok = all(moved(a, calls, method=m, code=c) >= n for (m, c), n in want.items())
            return a if ok else None
        after = ops.wait_for(settled, what="every call in /metrics")

        d = lambda name, **kw: self.delta(before, after, name, **kw)  # noqa: E731
        for (m, c), n in want.items():
            self.assertEqual(d(calls, method=m, code=c), n, (m, c))

        # The latency histogram of CheckEntitlement: 48 calls, cumulative buckets.
        h = "entd_rpc_duration_seconds"
        m = E + "CheckEntitlement"
        self.assertEqual(d(h + "_count", method=m), 48)
        self.assertGreater(d(h + "_sum", method=m), 0)
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                          if k[0] == h + "_bucket" and dict(k[1]).get("method") == m))
        self.assertEqual(len(buckets), 24)
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "buckets are not cumulative")
        self.assertEqual(buckets[-1], (float("inf"), ops.metric(after, h + "_count", method=m)))

        # Reasons: 40 unary + 4 batch items + 3 stream messages entitled.
        r = "entd_check_decisions_total"
        self.assertEqual(d(r, reason="ENTITLED"), 47)
        self.assertEqual(d(r, reason="UNKNOWN_CUSTOMER"), 7)
        self.assertEqual(d(r, reason="UNKNOWN_FEATURE"), 1)

        # The write moved the writer and the snapshot.
        self.assertGreaterEqual(d("entd_writer_commits_total"), 1)
        self.assertGreaterEqual(d("entd_writer_events_total"), 1)
        self.assertGreater(d("entd_snapshot_sequence"), 0)
        for g in ("entd_writer_queue_depth", "entd_writer_last_commit_seconds",
                  "entd_writer_boundary_lag_seconds", "entd_snapshot_age_seconds",
                  "entd_lmdb_used_bytes", "entd_rpc_open_calls",
                  "entd_process_resident_memory_bytes", "entd_process_threads",
                  "entd_process_open_fds"):
            self.assertIsNotNone(ops.metric(after, g), g + " missing")
        self.assertEqual(ops.metric(after, "entd_lmdb_map_size_bytes"), 16 << 30)
        self.assertEqual(ops.metric(after, "entd_store_objects", kind="features"), 11)
        self.assertGreater(ops.metric(after, "entd_process_resident_memory_bytes"), 1 << 20)

        # The decision log: one line per check (rate 1), each naming what was decided.
        logged = d("entd_decision_log_lines_total")
        self.assertEqual(logged, 40 + 7 + 5 + 3)  # unary + batch items + stream messages
        lines = ops.read(self.d.path("decisions.log"), "r").splitlines()
        self.assertEqual(len(lines), logged)
        self.assertTrue(all(" msg=decision " in ln for ln in lines))
        self.assertEqual(sum("customer=cus_acme feature=custom_domain" in ln
                             and "allowed=true reason=ENTITLED" in ln for ln in lines), 47)
        self.assertEqual(sum("customer=cus_nobody feature=sso" in ln
                             and "reason=UNKNOWN_CUSTOMER" in ln for ln in lines), 7)
        self.assertEqual(sum("feature=no_such_feature" in ln for ln in lines), 1)

    def test_batched_walk_visible(self):
        """The batched walk says at start whether it is on, and the metrics agree; turned
        off (--no-batched-walk) it says why, and a batch gets the same answers."""
        e = ops.pb["entitlement"]
        checks = [ops.check_req(), ops.check_req("cus_nobody", "sso"),
                  ops.check_req("cus_acme", "no_such_feature")] * 3

        def run(d, port):
            with ops.channel(d.addr("api")) as ch:
                batch = ops.unary(ch, E + "BatchCheckEntitlements",
                                  e.BatchCheckEntitlementsResponse)
                r = batch(e.BatchCheckEntitlementsRequest(checks=checks), timeout=ops.TIMEOUT)
            return [(x.allowed, x.reason) for x in r.results], ops.scrape(port)

        self.assertEqual(self.d.log_count("batched walk: on"), 1, self.d.tail())
        on, after = run(self.d, self.port)
        self.assertEqual(ops.metric(after, "entd_store_walk_enabled"), 1)
        # The demo's records are small: nothing went to mdb_get instead of the walk.
        self.assertEqual(ops.metric(after, "entd_store_walk_fallbacks_total"), 0)

        off_d = self.daemon(CONFIG, ports=["api", "metrics"], args=["--no-batched-walk"])
        off_d.start()
        self.assertEqual(off_d.log_count("batched walk: off"), 1, off_d.tail())
        self.assertIn("db.batched_walk", off_d.log_text())
        off, after = run(off_d, off_d.ports["metrics"])
        self.assertEqual(ops.metric(after, "entd_store_walk_enabled"), 0)
        self.assertEqual(ops.metric(after, "entd_store_walk_fallbacks_total"), 0)
        self.assertEqual(off, on)
        self.assertEqual([a for a, _ in on], [True, False, False] * 3)


if __name__ == "__main__":
    ops.main()
