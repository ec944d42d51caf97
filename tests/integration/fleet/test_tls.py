#!/usr/bin/python3
"""integration.fleet.tls: fleet mode over a TLS (and mutual-TLS) NATS connection, and what
wrong TLS or credential settings do (docs/fleet.md, "Connecting securely").

A test CA, a server certificate (SAN 127.0.0.1) and client certificates are made with the
openssl CLI (ops.Pki). One nats-server -js requires TLS and verifies client certificates
against the CA (`tls { ... verify: true }`).

- Two replicas with fleet.tls_ca_file + fleet.tls_cert_file/key_file: both reach state "ok",
  a write on one is read on the other with min_sequence, and the nats-server's /connz shows
  both connections with TLS.
- A replica trusting another CA, one without a client certificate, one with a client
  certificate from another CA, and one without any TLS setting: each exits 1 at start with
  "fleet.nats: cannot connect" (plus the TLS reason where nats.c gives one); none serves.
- A missing or unreadable TLS file and a malformed credentials file: exit 1 naming the key
  (fleet.tls_ca_file, fleet.tls_cert_file, fleet.creds_file).
- Credentials files (NATS decentralized auth): an operator-mode nats-server whose accounts are
  made by tests/integration/fleet/credsgen (Debian's nats-io/jwt and nkeys, what NATS's nsc is
  built on). A replica with a user of the JetStream-enabled account serves and takes writes;
  a user of an account the server does not know, and a revoked user, exit 1 with
  "fleet.creds_file: cannot connect ... Authorization Violation" (no secret printed).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import natsfix
from natsfix import FleetCase

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from ops import Pki  # noqa: E402


def start_server(conf, tmp):
    """A nats-server with  conf added to its configuration;  tmp removed if it fails."""
    n = natsfix.Nats(extra_conf=conf)
    try:
        return n.start()
    except Exception:
        n.failed = True
        n.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        raise




class FleetTls(FleetCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="entd-fltls-pki-", dir="/tmp")
        cls.pki = Pki(cls.tmp)
        cls.srv = cls.pki.issue("srv", "127.0.0.1", 1)
        cls.cli = cls.pki.issue("cli", "entd replica", 2, server=False)
        other_dir = os.path.join(cls.tmp, "other")
        os.makedirs(other_dir)
        cls.other = Pki(other_dir, name="other")
        cls.other_cli = cls.other.issue("cli", "entd stranger", 3, server=False)
        conf = "\n".join([
            "tls {",
            '  cert_file: "%s"' % cls.srv[0],
            '  key_file: "%s"' % cls.srv[1],
            '  ca_file: "%s"' % cls.pki.ca_crt,
            "  verify: true",
            "  timeout: 5",
            "}",
        ])
        cls.nats = start_server(conf, cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.nats.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tls_args(self, ca=None, cert=None):
        args = ["--fleet-tls-ca-file", ca or self.pki.ca_crt]
        if cert:
            args += ["--fleet-tls-cert-file", cert[0], "--fleet-tls-key-file", cert[1]]
        return args

    def test_1_replicas_over_mutual_tls(self):
        ents = natsfix.replicas(2, [self.nats.url], extra=self.tls_args(cert=self.cli))
        try:
            for e in ents:
                self.assertEqual(natsfix.status(e).fleet_state, "ok")
            with ents[0].api() as a:
                natsfix.setup_catalog(a)
                r = natsfix.subscribe(a, "fltls_1")
            self.assertGreater(r.sequence, 0)
            c = self.check_at(ents[1], "fltls_1", "fl_flag", min_sequence=r.sequence)
            self.assertTrue(c.allowed)
            self.assertGreaterEqual(c.sequence, r.sequence)
            # The server's own view: every client connection of ours is TLS.
            status, body = natsfix.http_get(self.nats.http_port, "/connz?subs=0")
            self.assertEqual(status, 200)
            conns = [c for c in json.loads(body).get("connections", [])
                     if c.get("name") == "entd"]
            self.assertGreaterEqual(len(conns), 2, body)
            for conn in conns:
                self.assertTrue(conn.get("tls_version"), conn)
        finally:
            for e in ents:
                e.stop()
                e.cleanup()

    def assert_refused(self, args, *needles):
        rc, out = natsfix.run_entd(["--fleet-nats", self.nats.url, "--fleet-connect-timeout-ms",
                            "3000"] + list(args))
        self.assertEqual(rc, 1, out)
        for n in needles:
            self.assertIn(n, out)
        return out

    def test_2_other_ca_refused(self):
        # The server's certificate does not chain to the CA this replica trusts.
        self.assert_refused(self.tls_args(ca=self.other.ca_crt, cert=self.cli),
                            "fleet.nats: cannot connect")

    def test_3_client_certificate_required(self):
        self.assert_refused(self.tls_args(), "fleet.nats: cannot connect")

    def test_4_client_certificate_of_another_ca_refused(self):
        self.assert_refused(self.tls_args(cert=self.other_cli), "fleet.nats: cannot connect")

    def test_5_plain_text_refused(self):
        # No TLS setting: the server requires TLS, so nats.c cannot complete the handshake.
        self.assert_refused([], "fleet.nats: cannot connect")

    def test_6_bad_files_named_by_key(self):
        missing = os.path.join(self.tmp, "missing.pem")
        self.assert_refused(["--fleet-tls-ca-file", missing], "fleet.tls_ca_file")
        self.assert_refused(self.tls_args(cert=(missing, self.cli[1])), "fleet.tls_cert_file")
        bad = os.path.join(self.tmp, "bad.creds")
        with open(bad, "w") as f:
            f.write("this is not a NATS credentials file\n")
        # nats.c reads the file only when it connects; entd names the key all the same.
        out = self.assert_refused(self.tls_args(cert=self.cli) + ["--fleet-creds-file", bad],
                                  "fleet.creds_file: cannot connect")
        self.assertIn("no nkey user seed", out)  # nats.c's reason, kept


class FleetCreds(FleetCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="entd-flcreds-", dir="/tmp")
        exe = natsfix.build_go_tool("credsgen", cls.tmp)
        subprocess.run([exe, cls.tmp], check=True, timeout=60)
        with open(os.path.join(cls.tmp, "auth.conf")) as f:
            cls.nats = start_server(f.read(), cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.nats.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def creds(self, name):
        return os.path.join(self.tmp, name + ".creds")

    def test_1_user_of_the_account_serves(self):
        e = natsfix.FleetEntd([self.nats.url], extra=["--fleet-creds-file", self.creds("entd")])
        try:
            e.start()
            self.assertEqual(natsfix.status(e).fleet_state, "ok")
            with e.api() as a:
                r = natsfix.setup_catalog(a)
            self.assertGreater(r.sequence, 0)
            self.assertEqual(e.sequence(), r.sequence)
            with open(e.logpath) as f:
                log = f.read()
            with open(self.creds("entd")) as f:
                seed = [ln for ln in f.read().splitlines() if ln.startswith("SU")]
            self.assertEqual(len(seed), 1)
            self.assertNotIn(seed[0], log)  # the nkey seed is a secret: never logged
        finally:
            e.stop()
            e.cleanup()

    def test_2_unknown_account_and_revoked_user_refused(self):
        for name in ("stranger", "revoked"):
            rc, out = natsfix.run_entd(["--fleet-nats", self.nats.url, "--fleet-connect-timeout-ms",
                                "3000", "--fleet-creds-file", self.creds(name)])
            self.assertEqual(rc, 1, out)
            self.assertIn("fleet.creds_file: cannot connect", out)
            self.assertIn("Authorization Violation", out)


if __name__ == "__main__":
    natsfix.main()
