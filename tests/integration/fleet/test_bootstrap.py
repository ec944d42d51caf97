#!/usr/bin/python3
"""integration.fleet.bootstrap (Proof 5 of docs/fleet.md): a new replica with an empty
directory joins from a snapshot and catches up; a replica behind the stream's retention
re-bootstraps. entd's own start-up does both (src/entd.c: bootstrap, open_replica).

- e1 and e2 follow the stream; writes; `entctl fleet snapshot publish` from e1's directory
  (beside the running daemon) at sequence S; more writes after S.
- e3 starts on an empty directory: it logs "bootstrapped from the snapshot" at S, catches up
  to the head (it applies only the messages after S), and then gives the same export and
  answers as e1 at the same sequence.
- e2 is stopped; more writes; a newer snapshot is published; the stream is purged so that it
  no longer holds e2's next sequence (as retention would). e2 restarts: it logs
  "re-bootstrapping from a snapshot", catches up, and matches e1 again.
- An empty directory with the stream purged and no usable snapshot would have a hole: it is
  refused with a clear error, never served.
"""
import json
import socket

import natsfix
import wp
from natsfix import FleetCase


def purge_keep(nats_port, stream, keep):
    """$JS.API.STREAM.PURGE with {"keep": N} over the plain NATS protocol (request/reply)."""
    s = socket.create_connection(("127.0.0.1", nats_port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    body = json.dumps({"keep": keep}).encode()
    s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.purge 1\r\n'
              b"PUB $JS.API.STREAM.PURGE.%s _INBOX.purge %d\r\n%s\r\n" % (
                  stream.encode(), len(body), body))
    while True:
        line = f.readline()
        if not line:
            raise AssertionError("no answer to the purge")
        if line.startswith(b"MSG"):
            n = int(line.split()[-1])
            data = f.read(n + 2)[:n]
            s.close()
            reply = json.loads(data)
            assert reply.get("success"), reply
            return reply


class Bootstrap(FleetCase):
    def test_join_from_snapshot_and_rebootstrap(self):
        n = natsfix.single()
        with natsfix.owned(n, []) as ents:
            extra = ["--fleet-snapshot-interval-ms", "0"]
            e1, e2 = natsfix.replicas(2, [n.url], extra=extra)
            ents += [e1, e2]
            with e1.api() as api:
                natsfix.setup_catalog(api)
                for i in range(20):
                    natsfix.subscribe(api, "flb_%d" % i)
            out = e1.entctl("fleet", "snapshot", "publish", "--db", e1.db, "--nats", n.url)
            s = natsfix.status(e1).sequence
            natsfix.log("snapshot at %d: %s" % (s, out.strip()))
            with e2.api() as api:
                for i in range(20, 30):
                    last = natsfix.subscribe(api, "flb_%d" % i)
            # A new replica on an empty directory.
            e3 = natsfix.FleetEntd([n.url], extra=extra, name="e3")
            ents.append(e3)
            e3.start()
            natsfix.wait_sequence(ents, last.sequence)
            with open(e3.logpath) as f:
                log = f.read()
            self.assertIn("bootstrapped from the snapshot", log)
            self.assertIn("seq=%d" % s, log)
            customers = ["flb_%d" % i for i in range(30)]
            self.assert_identical(ents, customers, wp.now_ms())

            # Behind retention: e2 is down while the stream is purged past its sequence.
            e2.stop()
            seq2 = natsfix.status(e1).sequence
            with e1.api() as api:
                for i in range(30, 40):
                    natsfix.subscribe(api, "flb_%d" % i)
            snap2 = natsfix.status(e1).sequence
            e1.entctl("fleet", "snapshot", "publish", "--db", e1.db, "--nats", n.url)
            with e1.api() as api:
                for i in range(40, 45):
                    last = natsfix.subscribe(api, "flb_%d" % i)
            # As retention would: the stream keeps only what came after the snapshot.
            purge_keep(n.port, "ENTD_EVENTS", last.sequence - snap2)
            self.assertGreater(snap2 + 1, seq2 + 1)  # e2's next message is gone
            e2.start()
            natsfix.wait_sequence(ents, last.sequence)
            with open(e2.logpath) as f:
                log = f.read()
            self.assertIn("re-bootstrapping from a snapshot", log)
            self.assertIn("reason=\"behind retention\"", log)
            customers = ["flb_%d" % i for i in range(45)]
            self.assert_identical(ents, customers, wp.now_ms())

            # An empty directory cannot start from sequence 1 any more and the snapshot
            # bucket is gone: refused, with the reason.
            purge_keep(n.port, "OBJ_entd_snapshots", 0)
            e4 = natsfix.FleetEntd([n.url], extra=extra, name="e4")
            try:
                with self.assertRaises(RuntimeError):
                    e4.start(timeout=60)
                with open(e4.logpath) as f:
                    log = f.read()
                self.assertIn("no longer holds sequence 1", log)
            finally:
                e4.cleanup()


if __name__ == "__main__":
    natsfix.main()
