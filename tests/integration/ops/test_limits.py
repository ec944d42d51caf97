#!/usr/bin/python3
"""Limits that keep one client from hurting the others (ops suite).

- limits.max_message_bytes: a request above it is refused with RESOURCE_EXHAUSTED before any
  handler sees it; one just below is served; the daemon keeps serving others.
- limits.max_concurrent_streams: with 1, a second call on the same HTTP/2 connection cannot
  start while a stream is open (it waits in the client; here it runs out of its deadline),
  while a call on another connection is served at once; once the stream ends, the waiting
  connection works again.
- keepalive settings are accepted and the server runs with them (their effect on the wire:
  test_keepalive.py).
"""

import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(2, ops.PROBE, ops.listener("127.0.0.1:{api}", "checks"), extra="""
limits:
  max_message_bytes: 64KiB
  max_concurrent_streams: 1
  keepalive_time_ms: 30s
  keepalive_timeout_ms: 5s
  keepalive_permit_without_calls: true
  min_ping_interval_ms: 10s
""")


class Limits(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(CONFIG, ports=["api"])
        self.d.start()

    def test_max_message_size(self):
        big = ops.check_req(customer="c" * (70 * 1024))
        with ops.channel(self.d.addr("api")) as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                ops.check_fn(ch)(big, timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            # Just under the limit the request reaches the handler, which refuses the id.
            under = ops.check_req(customer="c" * (60 * 1024))
            with self.assertRaises(grpc.RpcError) as cm:
                ops.check_fn(ch)(under, timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("customer_id", cm.exception.details())
            self.assertTrue(ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT).allowed)

    def test_max_concurrent_streams(self):
        # Channels to one target share a connection unless each has its own subchannel pool.
        own = [("grpc.use_local_subchannel_pool", 1)]
        with ops.channel(self.d.addr("api"), options=own) as ch, \
                ops.channel(self.d.addr("api"), options=own) as other:
            s = ops.Stream(ch)
            self.assertTrue(s.ask(ops.check_req()).allowed)
            # The one stream slot of this connection is taken: this call cannot start.
            with self.assertRaises(grpc.RpcError) as cm:
                ops.check_fn(ch)(ops.check_req(), timeout=3)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            # Another connection is not affected.
            self.assertTrue(ops.check_fn(other)(ops.check_req(), timeout=ops.TIMEOUT).allowed)
            self.assertEqual(s.close(), grpc.StatusCode.OK)
            self.assertTrue(ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT).allowed)


if __name__ == "__main__":
    ops.main()
