#!/usr/bin/python3
"""SIGHUP reloads (ops suite).

- A rotated TLS certificate: a StreamCheckEntitlements over TLS stays open across the
  rotation and keeps answering; a fresh handshake (the ssl module) sees the new certificate's
  serial, and a new gRPC connection works. A rotation whose key does not match is refused with
  a log line, and the running certificate stays.
- The admin credential from admin.token_file: the old token is refused, the new one accepted,
  without a restart.
- The decision log turned on by a reload; the log level lowered by a reload (info lines stop).
- A non-reloadable change is logged as needing a restart; an invalid configuration is refused
  and the running one stays.

SIGHUP is handled asynchronously: the tests wait for the daemon's own log line saying the
reload is done before they look (a condition, not a sleep).
"""
import os
import shutil
import socket
import ssl


import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = """
db:
  path: {db}
threads: {threads}
admin:
  token_file: {tmp}/token
listeners:
  - address: 127.0.0.1:{probe}
    services: health
  - address: 127.0.0.1:{tls}
    tls:
      cert_file: {tmp}/pki/srv.crt
      key_file: {tmp}/pki/srv.key
log:
  level: {level}
decision_log:
  sample_rate: {rate}
  path: {tmp}/decisions.log
"""

RELOADED = 'msg="configuration reloaded"'


class Reload(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(self.config(), ports=["tls"])
        os.makedirs(self.d.path("pki"))
        self.pki = ops.Pki(self.d.path("pki"))
        self.a = self.pki.issue("srv-a", "localhost", 0x1001)
        self.b = self.pki.issue("srv-b", "localhost", 0x2002)
        self.install(self.a)
        self.set_token("token-one")
        self.d.start()

    @staticmethod
    def config(threads=2, level="info", rate=0):
        return CONFIG.replace("{threads}", str(threads)).replace("{level}", level).replace(
            "{rate}", str(rate))

    def install(self, pair, key=None):
        ops.replace_file(self.d.path("pki/srv.crt"), ops.read(pair[0]))
        ops.replace_file(self.d.path("pki/srv.key"), ops.read(key or pair[1]))

    def set_token(self, tok):
        ops.replace_file(self.d.path("token"), (tok + "\n").encode())

    def reload(self, text=None):
        """Rewrite the config (if given), SIGHUP, wait for the end of the reload."""
        if text is not None:
            self.d.write_config(text)
        n = self.reloads() + 1
        self.d.hup()
        ops.wait_for(lambda: self.reloads() >= n, what="the end of the reload in the log")
        return self.d.log_text()

    def reloads(self):
        """Reloads finished so far: each ends with one of these two lines."""
        return self.d.log_count(RELOADED) + self.d.log_count('msg="reload refused')

    def peer_serial(self):
        """The serial of the certificate a brand-new TLS handshake gets."""
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", self.d.ports["tls"]), timeout=30) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                return t.getpeercert()["serialNumber"]

    def fresh_channel(self):
        # Its own subchannel pool: a new connection, hence a new handshake.
        return ops.channel(self.d.addr("tls"), ops.tls_creds(self.pki),
                           options=[("grpc.use_local_subchannel_pool", 1)])

    def test_certificate_rotation_keeps_stream(self):
        self.assertEqual(self.peer_serial(), "1001")
        with self.fresh_channel() as ch:
            s = ops.Stream(ch)
            self.assertTrue(s.ask(ops.check_req()).allowed)

            self.install(self.b)
            log = self.reload()
            self.assertIn('msg="tls certificate reloaded"', log)
            self.assertIn("serial=2002", log)

            # The stream opened under the old certificate keeps answering.
            for _ in range(3):
                self.assertTrue(s.ask(ops.check_req()).allowed)
            # New handshakes get the new certificate.
            self.assertEqual(self.peer_serial(), "2002")
            with self.fresh_channel() as ch2:
                self.assertTrue(ops.check_fn(ch2)(ops.check_req(), timeout=ops.TIMEOUT).allowed)

            # A bad rotation (certificate A with the key of B): refused, B stays.
            self.install(self.a, key=self.b[1])
            log = self.reload()
            self.assertIn("tls certificates not reloaded", log)
            self.assertIn("does not belong to the certificate", log)
            self.assertEqual(self.peer_serial(), "2002")
            self.assertTrue(s.ask(ops.check_req()).allowed)
            self.assertEqual(s.close(), grpc.StatusCode.OK)

    def admin_call(self, ch, tok):
        fn = ops.unary(ch, "/ent.v1.AdminService/ListFeatures",
                       ops.pb["admin"].ListFeaturesResponse)
        return fn(ops.pb["admin"].ListFeaturesRequest(),
                  metadata=[("authorization", "Bearer " + tok)], timeout=ops.TIMEOUT)

    def test_token_decision_log_and_restart_needed(self):
        with self.fresh_channel() as ch:
            self.assertGreater(len(self.admin_call(ch, "token-one").features), 0)

            self.set_token("token-two")
            log = self.reload(self.config(threads=1, rate=1))
            self.assertIn('msg="admin credential replaced"', log)
            self.assertIn('msg="setting changed; restart to apply" key=threads', log)
            self.assertNotIn("token-two", log)
            self.assertNotIn("token-one", log)

            with self.assertRaises(grpc.RpcError) as cm:
                self.admin_call(ch, "token-one")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            self.assertGreater(len(self.admin_call(ch, "token-two").features), 0)

            # The decision log was off; the reload turned it on (rate 1).
            ops.check_fn(ch)(ops.check_req("cus_acme", "sso"), timeout=ops.TIMEOUT)
            lines = ops.read(self.d.path("decisions.log"), "r").splitlines()
            self.assertEqual(len(lines), 1)
            self.assertIn("customer=cus_acme feature=sso", lines[0])

            # An invalid config is refused; everything keeps running as it was.
            log = self.reload("threads: 0\n")
            self.assertIn("reload refused", log)
            self.assertIn("threads: 0 is not in 1..256", log)
            self.assertGreater(len(self.admin_call(ch, "token-two").features), 0)

            # Lower the level to warn: info lines stop, warnings still come. (threads still
            # differs from the running value, so each reload ends with that warning.)
            for i in range(2):
                if i == 1:
                    infos = self.d.log_count("level=info")
                self.d.write_config(self.config(threads=1 + 2 * i, level="warn", rate=1))
                n = self.d.log_count("restart to apply") + 1
                self.d.hup()
                self.d.wait_log("restart to apply", n)
            self.assertEqual(self.d.log_count("level=info"), infos)


if __name__ == "__main__":
    ops.main()
