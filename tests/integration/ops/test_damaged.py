#!/usr/bin/python3
"""Damaged databases and a second process (ops suite; docs/security.md, docs/storage.md).

Real entd and entctl processes on a demo database that the test damages on disk:

- the directory lock: a second entd, `entctl import` and `entctl generate` on a directory an
  entd serves are refused, and the message names the holder's PID;
- an empty data.mdb and one truncated to half are refused at start with a clear error (no
  SIGBUS, no empty database served);
- eight zeroed pages in the middle: refused at start (verify at start, db.verify_below), and
  `entctl verify` names the table and page;
- one flipped byte inside a stored aggregated record: refused at start by the verify; with the
  verify off, the check of that record answers DATA_LOSS on the unary and the batch path
  (never another answer), a log line names the record and entd_store_corrupt_reads_total
  counts it; every other check is still answered.
"""
import os
import subprocess
import unittest

import grpc
import ops  # first: it sets up grpcio's environment before the import

CONFIG = """
db:
  path: {db}
  verify_below: {verify}
threads: 1
listeners:
  - address: 127.0.0.1:{probe}
metrics:
  listen: 127.0.0.1:{metrics}
"""

PAGE = 4096


def entctl(*args):
    p = subprocess.run([ops.ARGS.entctl] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def record_offsets(path, customer, feature):
    """Where the aggregated records of (customer, feature) start in data.mdb, with their sizes:
    leaf nodes whose key is customer NUL feature and whose value starts with the sealed version
    byte (0x80 | version). LMDB copies pages on write, so older copies may sit in free pages too: the tests
    damage every copy, so that the live one is surely among them."""
    key = customer + b"\0" + feature
    with open(path, "rb") as f:
        data = f.read()
    out = []
    at = data.find(key)
    while at >= 0:
        ksize = int.from_bytes(data[at - 2:at], "little")
        value = at + len(key)
        if ksize == len(key) and data[value] in (0x81, 0x82):  # v1 or v2, sealed
            out.append((value, int.from_bytes(data[at - 8:at - 6], "little")))
        at = data.find(key, at + 1)
    assert out, "no aggregated record of %r in %s" % (key, path)
    return out


class Damaged(ops.DaemonTest):
    def make(self, verify="1GiB"):
        return self.daemon(CONFIG.replace("{verify}", verify), ports=("metrics",))

    def refused(self, d, needle):
        """entd exits non-zero at start and says \a needle."""
        d.write_config(d.template.format(db=d.db, probe=1, metrics=0))
        st, out, err = ops.run_entd(["--config", d.cfgpath])
        self.assertNotEqual(st, 0, "entd started on a damaged database:\n" + err)
        self.assertIn(needle, err)
        return err

    def test_second_process_is_locked_out(self):
        d = self.make().start()
        pid = "pid %d" % d.proc.pid
        d2 = self.make()
        d2.write_config(CONFIG.replace("{verify}", "0").format(db=d.db, probe=1, metrics=0))
        st, _, err = ops.run_entd(["--config", d2.cfgpath])
        self.assertNotEqual(st, 0)
        self.assertIn("in use by " + pid, err)
        st, _, err = entctl("import", "--db", d.db, ops.ARGS.demo)
        self.assertEqual(st, 1)
        self.assertIn("in use by " + pid, err)
        st, _, err = entctl("generate", "--db", d.db, "--customers", "10")
        self.assertEqual(st, 1)
        self.assertIn("in use by " + pid, err)
        # A reader is welcome beside the daemon: verify works on the live database.
        st, out, err = entctl("verify", "--db", d.db)
        self.assertEqual(st, 0, err)
        self.assertIn("OK", out)
        with ops.channel(d.probe) as ch:
            self.assertTrue(ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT).allowed)
        self.assertEqual(d.stop(), 0)
        # Once it is gone, the lock goes with it.
        st, _, err = entctl("import", "--db", d.db, ops.ARGS.demo)
        self.assertEqual(st, 0, err)

    def test_empty_data_file_is_refused(self):
        d = self.make()
        open(os.path.join(d.db, "data.mdb"), "wb").close()
        self.refused(d, "is empty (0 bytes)")

    def test_truncated_data_file_is_refused(self):
        d = self.make()
        path = os.path.join(d.db, "data.mdb")
        size = os.path.getsize(path)
        os.truncate(path, size // 2)
        self.refused(d, "the file was truncated")
        st, _, err = entctl("verify", "--db", d.db)
        self.assertEqual(st, 1)
        self.assertIn("truncated", err)

    def test_zeroed_pages_are_refused(self):
        d = self.make()
        path = os.path.join(d.db, "data.mdb")
        # The agg table's leaf of cus_acme's records: zero it and the seven pages after it.
        pages = set()
        for off, _ in record_offsets(path, b"cus_acme", b"custom_domain"):
            pages.update(range(off // PAGE, off // PAGE + 8))
        with open(path, "r+b") as f:
            for p in pages:
                f.seek(p * PAGE)
                f.write(b"\0" * PAGE)
        err = self.refused(d, "the database is damaged")
        self.assertIn("(zeroed or overwritten)", err)
        st, _, err = entctl("verify", "--db", d.db)
        self.assertEqual(st, 1)
        self.assertIn("DAMAGED", err)
        self.assertIn("(zeroed or overwritten)", err)

    def test_flipped_byte_is_data_loss(self):
        d = self.make()
        path = os.path.join(d.db, "data.mdb")
        with open(path, "r+b") as f:
            for off, size in record_offsets(path, b"cus_acme", b"custom_domain"):
                self.assertGreater(size, 40)
                f.seek(off + size // 2)  # inside the segment table or a payload
                b = f.read(1)
                f.seek(off + size // 2)
                f.write(bytes([b[0] ^ 0x01]))
        self.refused(d, "cus_acme/custom_domain")  # the verify at start names the record
        st, _, err = entctl("verify", "--db", d.db)
        self.assertEqual(st, 1)
        self.assertIn("agg: the value of key 'cus_acme/custom_domain' does not decode", err)

        # With the verify off, entd serves, and the damaged record answers DATA_LOSS.
        d.template = CONFIG.replace("{verify}", "0")
        d.start()
        with ops.channel(d.probe) as ch:
            check = ops.check_fn(ch)
            with self.assertRaises(grpc.RpcError) as cm:
                check(ops.check_req(), timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DATA_LOSS)
            batch = ops.unary(ch, ops.BATCH, ops.pb["entitlement"].BatchCheckEntitlementsResponse)
            req = ops.pb["entitlement"].BatchCheckEntitlementsRequest(
                checks=[ops.check_req(feature="seats"), ops.check_req()])
            with self.assertRaises(grpc.RpcError) as cm:
                batch(req, timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DATA_LOSS)
            # Other records are intact and still answered.
            r = check(ops.check_req(feature="seats"), timeout=ops.TIMEOUT)
            self.assertIsNotNone(r)
        d.wait_log("failed its checksum or does not decode")
        self.assertIn("feature=custom_domain", d.log_text())
        m = ops.scrape(d.ports["metrics"])
        self.assertGreaterEqual(m[("entd_store_corrupt_reads_total", frozenset())], 2)


if __name__ == "__main__":
    ops.main()
