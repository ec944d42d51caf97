#!/usr/bin/python3
"""integration.fleet.bad_input (Proof 6 of docs/fleet.md): what a bad engine, a bad setting or a
bad message does. Each case gets a clear error or the documented rule, and no crash.

- An unreachable NATS address at start: entd exits 1 within fleet.connect_timeout_ms with
  "fleet.nats: cannot connect to ...".
- Wrong credentials (a server with user/password; the URL's password wrong): exit 1 with the
  server's "Authorization Violation", the password never printed; the right one starts.
- An existing stream with other settings: another subject (fleet.subject), other replicas
  (fleet.replicas): exit 1 naming the key; the stream is left as it was.
- A database of embedded mode: refused ("embedded-mode state"), not silently mixed.
- Invalid fleet settings: named by key (fleet.replicas 2, a http:// URL, a stream name with a
  dot, a missing credentials file).
- An undecodable message in the stream (raw bytes published on the subject by a plain NATS
  client): every replica skips it at the same sequence (skipped_events 1, a warning with the
  stream sequence), moves on past it, keeps serving, and the next write is applied on all.
"""
import subprocess

import natsfix  # noqa: I100 (puts harness and wp on the path)
import harness
import wp
from natsfix import FleetCase




class BadInput(FleetCase):
    def test_unreachable_engine_at_start(self):
        port = harness.free_port()
        rc, out = natsfix.run_entd(["--fleet-nats", "nats://127.0.0.1:%d" % port,
                            "--fleet-connect-timeout-ms", "500"])
        self.assertEqual(rc, 1, out)
        self.assertIn("fleet.nats: cannot connect to nats://127.0.0.1:%d" % port, out)

    def test_wrong_credentials(self):
        n = natsfix.Nats(extra_conf='authorization { user: "fl", password: "right-pw" }')
        try:
            n.start()
            url_bad = "nats://fl:wrong-pw@127.0.0.1:%d" % n.port
            rc, out = natsfix.run_entd(["--fleet-nats", url_bad,
                                        "--fleet-connect-timeout-ms", "3000"])
            self.assertEqual(rc, 1, out)
            self.assertIn("fleet.nats: cannot connect", out)
            self.assertIn("uthorization", out)
            self.assertNotIn("wrong-pw", out)  # a password is never printed
            e = natsfix.FleetEntd(["nats://fl:right-pw@127.0.0.1:%d" % n.port])
            try:
                e.start()
                self.assertEqual(natsfix.status(e).fleet_state, "ok")
                with open(e.logpath) as f:  # the start line of wp shows the command itself
                    self.assertNotIn("right-pw", f.read().replace(
                        "--fleet-nats nats://fl:right-pw", ""))
            finally:
                e.stop()
                e.cleanup()
        finally:
            n.cleanup()

    def test_existing_stream_with_other_settings(self):
        n = natsfix.single()
        try:
            # A stream of the same name made by someone else, on another subject.
            e = natsfix.FleetEntd([n.url], extra=["--fleet-subject", "other.events"])
            e.start()
            e.stop()
            e.cleanup()
            rc, out = natsfix.run_entd(["--fleet-nats", n.url])
            self.assertEqual(rc, 1, out)
            self.assertIn("fleet.subject: the existing stream 'ENTD_EVENTS' has other "
                          "subjects", out)
            rc, out = natsfix.run_entd(["--fleet-nats", n.url, "--fleet-subject", "other.events",
                                "--fleet-replicas", "3"])
            self.assertEqual(rc, 1, out)
            self.assertIn("fleet.replicas: the existing stream 'ENTD_EVENTS' has 1 replicas, "
                          "the config says 3", out)
        finally:
            n.cleanup()

    def test_embedded_database_refused(self):
        n = natsfix.single()
        e = wp.Entd(prefix=natsfix.PDEATHSIG)
        try:
            e.start()
            with e.api() as api:
                natsfix.setup_catalog(api)
            e.stop()
            e.extra_args = natsfix.fleet_args([n.url])
            e.proc = None
            cmd = [wp.ARGS.entd, "--db", e.db, "--listen", "127.0.0.1:%d" % harness.free_port()]
            p = subprocess.run(cmd + e.extra_args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 1, out)
            self.assertIn("holds embedded-mode state", out)
        finally:
            e.cleanup()
            n.cleanup()

    def test_bad_settings_named(self):
        for args, want in (
                (["--fleet-nats", "nats://127.0.0.1:4222", "--fleet-replicas", "2"],
                 "fleet.replicas: 2 is not 1, 3 or 5"),
                (["--fleet-nats", "http://127.0.0.1:4222"], "fleet.nats: 'http://127.0.0.1:4222' is not nats://host:port"),
                (["--fleet-nats", "nats://127.0.0.1:4222", "--fleet-stream", "a.b"],
                 "fleet.stream: 'a.b' is not a stream name"),
                (["--fleet-nats", "nats://127.0.0.1:4222", "--fleet-creds-file",
                  "/nonexistent/x.creds"], "fleet.creds_file: '/nonexistent/x.creds' is not"),
                (["--fleet-nats", "nats://127.0.0.1:4222", "--fleet-subject", "a.*"],
                 "fleet.subject: 'a.*' has a wildcard")):
            rc, out = natsfix.run_entd(args)
            self.assertEqual(rc, 1, out)
            self.assertIn(want, out)

    def test_undecodable_message_skipped_everywhere(self):
        n = natsfix.single()
        ents = []
        try:
            ents = natsfix.replicas(2, [n.url])
            with ents[0].api() as api:
                natsfix.setup_catalog(api)
            before = natsfix.status(ents[0]).sequence
            # Bytes that are no ent.v1.Event (a truncated varint), straight onto the subject.
            line = natsfix.raw_publish(n.port, "entd.events", b"\xff\xff\xff\xff")
            self.assertTrue(line.startswith(b"PONG"), line)
            natsfix.wait_sequence(ents, before + 1)
            for e in ents:
                st = natsfix.status(e)
                self.assertEqual(st.skipped_events, 1, e.name)
                self.assertEqual(st.sequence, before + 1, e.name)
                self.assertEqual(st.fleet_state, "ok", e.name)
                with open(e.logpath) as f:
                    self.assertIn("undecodable message skipped", f.read())
                self.assertTrue(e.alive())
            # The fleet goes on: the next write is applied everywhere.
            with ents[1].api() as api:
                r = natsfix.subscribe(api, "flb_after")
            self.assertEqual(r.sequence, before + 2)
            for e in ents:
                self.assertTrue(self.check_at(e, "flb_after", "fl_flag",
                                              min_sequence=r.sequence).allowed)
            # A valid message of no kind: apply refuses it the same way on every replica.
            natsfix.raw_publish(n.port, "entd.events", b"")
            natsfix.wait_sequence(ents, before + 3)
            self.assert_identical(ents, ["flb_after"], wp.now_ms())
        finally:
            for e in ents:
                e.stop()
                e.cleanup()
            n.cleanup()


if __name__ == "__main__":
    natsfix.main()
