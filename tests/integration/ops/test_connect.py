#!/usr/bin/python3
"""A connect that gRPC 1.51 reports as failed does not fail the call (ops suite).

gRPC 1.51 reads connect's errno only after other calls that may overwrite it, so now and then
an ordinary in-progress TCP connect is reported as `No such file or directory` and a fail-fast
first call would get UNAVAILABLE while entd is up (seen under AddressSanitizer in the suites).
The C client waits for the channel through a few failed attempts before a call
(src/client/client.c, await_ready). Here an LD_PRELOAD shim (connect_errno_shim.c) makes that
happen on the first connect, every time: gRPC's own trace must show the failed attempt, and
entctl must still answer.
"""
import os
import subprocess
import unittest

import ops  # first: it sets up grpcio's environment before the import

CONFIG = ops.config(1, ops.listener("127.0.0.1:{probe}"))

SHIM = os.environ.get("ENT_CONNECT_SHIM", "")


@unittest.skipUnless(SHIM and os.path.exists(SHIM), "ENT_CONNECT_SHIM not built (sanitizer build)")
class ConnectReportedFailed(ops.DaemonTest):
    def test_first_call_survives_a_connect_reported_failed(self):
        d = self.daemon(CONFIG).start()
        env = dict(os.environ, LD_PRELOAD=SHIM, ENT_SHIM_PORT=str(d.ports["probe"]),
                   GRPC_VERBOSITY="debug", GRPC_TRACE="subchannel")
        p = subprocess.run([ops.ARGS.entctl, "check", "-a", d.probe, "--json", "cus_acme",
                            "custom_domain"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        out, err = p.stdout.decode(), p.stderr.decode(errors="replace")
        # The shim did its part: gRPC saw the connect fail with the flake's error.
        self.assertIn("connect failed (UNKNOWN:No such file or directory", err)
        # And the call went through on the next attempt, with the demo's answer.
        self.assertEqual(p.returncode, 0, err[-2000:])
        self.assertIn('"allowed":true', out.replace(" ", ""))

    def test_a_down_server_still_gets_the_cores_reason(self):
        port = ops.harness.free_port()
        p = subprocess.run([ops.ARGS.entctl, "check", "-a", "127.0.0.1:%d" % port, "cus_acme",
                            "custom_domain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("UNAVAILABLE", p.stderr.decode())
        self.assertIn("Connection refused", p.stderr.decode())


if __name__ == "__main__":
    ops.main()
