#!/usr/bin/python3
"""Checks that arrive together are answered together, and each gets its own answer (ops suite).

Under load the worker takes every completion that is ready and decides the checks among them
(unary calls and check-stream messages) in one batched lookup, then answers each call
(docs/architecture.md, "the drain pass"). This suite makes that happen on purpose and checks
that nothing is mixed up:

- every (customer, feature, quantity) of the demo data is asked once, alone, to learn its
  answer; then all of them are asked again at the same time, many times over, from several
  connections (unary futures) and several streams, on an entd with one worker thread;
- every answer must equal the one asked alone, byte for byte, and each invalid request in the
  burst (empty customer, a min_sequence far ahead) must get its own error, not a neighbour's
  answer;
- entd_checks_answered_ahead_total must have moved: the burst really was decided in batches
  (a suite that passed without exercising that path would prove nothing).
"""

import threading

import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(1, ops.PROBE, ops.API, extra=ops.METRICS)

CUSTOMERS = ["cus_acme", "cus_globex", "cus_hooli", "cus_initech", "cus_stark", "cus_umbrella",
             "cus_nobody"]
FEATURES = ["api_calls", "exports", "storage_gb", "support_tickets", "ai_credits", "seats",
            "sso", "audit_log", "custom_domain", "sla", "regions", "no_such_feature"]
QUANTITIES = [0, 1, 1000000]
ROUNDS = 6
CONNECTIONS = 4
STREAMS = 4


class Burst(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(CONFIG, ports=["api", "metrics"])
        self.d.start()

    def test_burst_answers_match_lone_answers(self):
        e = ops.pb["entitlement"]
        keys = [(c, f, q) for c in CUSTOMERS for f in FEATURES for q in QUANTITIES]
        chans = [ops.channel(self.d.addr("api"), options=[("ent.test.conn", i)])
                 for i in range(CONNECTIONS)]
        try:
            # Every connection up before the burst: gRPC 1.51 can report a connect still in
            # progress as failed ("No such file or directory", docs/entctl.md), and this test
            # is about the answers, not about connecting.
            for ch in chans:
                grpc.channel_ready_future(ch).result(timeout=ops.TIMEOUT)
            check = [ops.check_fn(ch) for ch in chans]
            alone = {k: check[0](ops.check_req(*k), timeout=ops.TIMEOUT).SerializeToString()
                     for k in keys}
            # The answers differ from key to key (else a mix-up could not show).
            self.assertGreater(len(set(alone.values())), len(keys) // 4)
            before = ops.scrape(self.d.ports["metrics"])

            bad_customer = ops.check_req(customer="")
            ahead = e.CheckEntitlementRequest(customer_id="cus_acme", feature_code="sso",
                                              min_sequence=1 << 40)
            futures = []  # (future, key or None for the invalid ones)
            for r in range(ROUNDS):
                for i, k in enumerate(keys):
                    fn = check[(i + r) % CONNECTIONS]
                    futures.append((fn.future(ops.check_req(*k), timeout=ops.TIMEOUT), k))
                    if i % 50 == 0:
                        futures.append((fn.future(bad_customer, timeout=ops.TIMEOUT), "bad"))
                        futures.append((fn.future(ahead, timeout=ops.TIMEOUT), "ahead"))

            # Streams, at the same time: each writes every key in a different order and reads
            # the answers in order.
            stream_errors = []

            def stream_run(n):
                order = keys[n::STREAMS] + keys[:n:STREAMS] + keys
                s = ops.Stream(chans[n % CONNECTIONS])
                for k in order:
                    s.send(ops.check_req(*k))
                for k in order:
                    got = s.recv().SerializeToString()
                    if got != alone[k]:
                        stream_errors.append((n, k))
                code = s.close()
                if code != grpc.StatusCode.OK:
                    stream_errors.append((n, code))

            threads = [threading.Thread(target=stream_run, args=(n,)) for n in range(STREAMS)]
            for t in threads:
                t.start()

            mismatched = []
            for fut, k in futures:
                if k == "bad":
                    with self.assertRaises(grpc.RpcError) as cm:
                        fut.result()
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                    self.assertIn("customer_id", cm.exception.details())
                elif k == "ahead":
                    with self.assertRaises(grpc.RpcError) as cm:
                        fut.result()
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                elif fut.result().SerializeToString() != alone[k]:
                    mismatched.append(k)
            for t in threads:
                t.join(timeout=ops.TIMEOUT)
                self.assertFalse(t.is_alive(), "a check stream did not finish")
            self.assertEqual(mismatched, [], "unary answers that differ from the lone answer")
            self.assertEqual(stream_errors, [], "stream answers that differ, or failed streams")

            after = ops.scrape(self.d.ports["metrics"])
            ahead_n = (ops.metric(after, "entd_checks_answered_ahead_total") -
                       ops.metric(before, "entd_checks_answered_ahead_total"))
            total = len(keys) * (ROUNDS + 2 * STREAMS)
            ops.log("burst: %d of %d checks decided ahead in batches" % (ahead_n, total))
            self.assertGreater(ahead_n, 0, "the burst was never batched: the path is untested")
            self.assertLessEqual(ahead_n, total)
        finally:
            for ch in chans:
                ch.close()


if __name__ == "__main__":
    ops.main()
