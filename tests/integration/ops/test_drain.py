#!/usr/bin/python3
"""SIGTERM: health first, then drain, then exit 0 (ops suite).

- A health Watch sees NOT_SERVING while the process is still running, then its stream ends;
  /readyz turns 503 while the drain goes on; a StreamCheckEntitlements opened before SIGTERM
  keeps answering during the drain and ends OK when the client closes it; entd then exits 0 at
  once (the grace period is long: the drain ends because nothing is left in flight).
- With a short grace period and a stream that never closes, entd cancels it when the grace
  period is over and still exits 0.
- SIGINT drains the same way.
"""
import os
import signal


import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(2, ops.PROBE, ops.API, extra=ops.METRICS + """
shutdown:
  grace_ms: {grace}
""")

SERVING, NOT_SERVING = 1, 2


def watch(ch):
    h = ops.pb["health"]
    fn = ch.unary_stream(ops.HEALTH_WATCH, request_serializer=lambda m: m.SerializeToString(),
                         response_deserializer=h.HealthCheckResponse.FromString)
    return fn(h.HealthCheckRequest(service="ent.v1.EntitlementService"), timeout=600)


def own_channel(target):
    return ops.channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


class Drain(ops.DaemonTest):
    def start(self, grace):
        self.d = self.daemon(CONFIG.replace("{grace}", grace), ports=["api", "metrics"])
        self.d.start()
        self.metrics = self.d.ports["metrics"]

    def test_health_first_then_drain_then_exit(self):
        self.start("10m")
        with own_channel(self.d.addr("api")) as wch, own_channel(self.d.addr("api")) as sch:
            w = watch(wch)
            self.assertEqual(next(w).status, SERVING)
            s = ops.Stream(sch)
            self.assertTrue(s.ask(ops.check_req()).allowed)
            self.assertEqual(ops.http_get(self.metrics, "/readyz"), (200, "ok\n"))

            self.d.term()
            # Health changes first, while the process runs (the open stream keeps it
            # draining: nothing below depends on timing).
            self.assertEqual(next(w).status, NOT_SERVING)
            self.assertTrue(self.d.alive())
            with self.assertRaises(grpc.RpcError) as cm:
                next(w)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            st, body = ops.http_get(self.metrics, "/readyz")
            self.assertEqual(st, 503)
            self.assertIn("not ready", body)
            self.assertEqual(ops.http_get(self.metrics, "/livez")[0], 200)

            # The call in flight keeps working during the drain.
            for _ in range(3):
                self.assertTrue(s.ask(ops.check_req()).allowed)
            self.assertTrue(self.d.alive())
            self.assertEqual(s.close(), grpc.StatusCode.OK)
        # Nothing in flight any more: the drain ends long before the 10 minute grace period.
        self.assertEqual(self.d.wait(120), 0)
        log = self.d.log_text()
        self.assertIn('msg="entd stopping" signal=SIGTERM', log)
        self.assertIn('msg="entd stopped"', log)
        self.assertNotIn("grace period over", log)

    def test_grace_period_cancels_the_rest(self):
        self.start("1s")
        with own_channel(self.d.addr("api")) as ch:
            s = ops.Stream(ch)
            self.assertTrue(s.ask(ops.check_req()).allowed)
            self.d.term()
            # The client never closes: the grace period ends it.
            self.assertEqual(self.d.wait(120), 0)
            with self.assertRaises((grpc.RpcError, StopIteration)):
                s.ask(ops.check_req())
        self.assertIn('msg="rpc: grace period over, cancelling calls" calls=1',
                      self.d.log_text())

    def test_sigint(self):
        self.start("10m")
        os.kill(self.d.proc.pid, signal.SIGINT)
        self.assertEqual(self.d.wait(120), 0)
        self.assertIn('msg="entd stopping" signal=SIGINT', self.d.log_text())


if __name__ == "__main__":
    ops.main()
