#!/usr/bin/python3
"""integration.fleet.snapshot: fleet snapshots in NATS's object-store layout, against a real
`nats-server -js` on loopback (started here, stopped by PID) and the reference NATS client.

- round trip: a real database (entctl generate + usage and overrides through a live entd) is
  published with `entctl fleet snapshot publish` and fetched with `... fetch` into an empty
  directory: identical export, identical answers from a daemon started on each copy;
- interoperability: nats.go (Debian's golang-github-nats-io-go-nats-dev, built here into a small
  tool, tests/integration/fleet/objinterop) reads our object byte for byte and sees our headers;
  our fetch reads an object that nats.go wrote; the bucket's stream has the configuration
  nats.go itself gives an object store;
- a large multi-chunk object (hundreds of chunks), replaced by a second publish whose old
  chunks are purged (the stream holds one version);
- a digest mismatch is refused and leaves nothing in the directory;
- missing bucket, missing object, non-empty directory, unreachable NATS: clear errors;
- publish from the directory of a running entd (read-only, alongside the daemon).

Run by ctest (tests/integration/fleet/CMakeLists.txt) with --entd/--entctl/--proto-dir/--out.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
import natsfix  # noqa: E402
import wp  # noqa: E402  (natsfix put writepath/ on sys.path)

INTEROP = None  # path of the built objinterop tool


def interop(*args, check=True):
    p = subprocess.run([INTEROP] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError("objinterop %s failed: %s" % (" ".join(args), p.stderr.decode()))
    return p


def entctl(*args, timeout=600):
    """(returncode, stdout, stderr) of entctl."""
    p = subprocess.run([wp.ARGS.entctl] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def export_of(db):
    rc, out, err = entctl("export", "--db", db)
    assert rc == 0, err
    return json.loads(out)


def stream_state(nats, stream):
    """(messages, subjects) of \a stream from the server's /jsz monitoring endpoint."""
    status, body = natsfix.http_get(nats.http_port, "/jsz?streams=true&accounts=true")
    assert status == 200, body
    z = json.loads(body)
    for acc in z.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s.get("name") == stream:
                st = s.get("state") or {}
                return st.get("messages"), st.get("num_subjects")
    return None, None


class Snapshot(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls._setup()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def _setup(cls):
        cls.live = None
        cls.tmp = None
        cls.nats = natsfix.single()
        cls.url = cls.nats.url
        cls.tmp = tempfile.mkdtemp(prefix="entd-snap-", dir="/tmp")
        # A real database: generated customers, then usage, overrides and consumption applied
        # by a live daemon, so the snapshot carries every table and a non-trivial sequence.
        cls.db = os.path.join(cls.tmp, "src")
        rc, _, err = entctl("generate", "--db", cls.db, "--customers", "1500", "--seed", "7")
        assert rc == 0, err
        d = wp.Entd(tmp=os.path.join(cls.tmp, "live"))
        shutil.rmtree(d.db)
        d.db = cls.db
        cls.live = d
        d.start()
        e = wp.pb["entitlement"]
        with d.api() as api:
            ex = json.loads(api.export().json)
            cls.features = sorted(f["code"] for f in ex["features"])
            metered = [f["code"] for f in ex["features"] if f["type"] == "metered"]
            for i in range(200):
                api.ReportUsage(e.ReportUsageRequest(
                    customer_id="cus_%d" % (i * 7 % 1500), feature_code=metered[i % len(metered)],
                    quantity=1 + i % 5, idempotency_key="snap-%d" % i))
            cls.seq_live = api.status().sequence
        cls.customers = ["cus_%d" % i for i in range(0, 1500, 37)]

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "live", None):
            cls.live.cleanup()
        if getattr(cls, "nats", None):
            cls.nats.cleanup()
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def dir(self, name):
        p = os.path.join(self.tmp, name)
        self.assertFalse(os.path.exists(p))
        return p

    def publish(self, *extra, db=None):
        rc, out, err = entctl("fleet", "snapshot", "publish", "--db", db or self.db, "--nats",
                              self.url, "--allow-no-stream", *extra)
        self.assertEqual(rc, 0, err)
        return out

    def fetch(self, dest, *extra):
        return entctl("fleet", "snapshot", "fetch", "--db", dest, "--nats", self.url, *extra)

    def answers(self, d):
        """Every feature of a sample of customers, as the daemon on \a d answers them."""
        out = {}
        e = wp.pb["entitlement"]
        with d.api() as api:
            for c in self.customers:
                r = api.GetCustomerEntitlements(e.GetCustomerEntitlementsRequest(customer_id=c))
                out[c] = r.SerializeToString(deterministic=True)
                for f in self.features[:6]:
                    out[(c, f)] = api.check(c, f).SerializeToString(deterministic=True)
        return out

    # ---- tests ---------------------------------------------------------------------------

    def test_1_round_trip_while_live(self):
        """Publish from the directory of the running daemon; fetch; same state, same answers."""
        self.assertTrue(self.live.alive())
        out = self.publish("--bucket", "rt")
        self.assertIn("seq %d" % self.seq_live, out)
        dest = self.dir("rt")
        rc, out, err = self.fetch(dest, "--bucket", "rt")
        self.assertEqual(rc, 0, err)
        self.assertIn("seq %d" % self.seq_live, out)
        self.assertEqual(sorted(os.listdir(dest)), ["data.mdb", "lock.mdb"])
        self.assertEqual(export_of(dest), export_of(self.db))
        # Answers: the live daemon against a daemon started on the fetched copy.
        want = self.answers(self.live)
        copy = wp.Entd(tmp=os.path.join(self.tmp, "rt-daemon"))
        shutil.rmtree(copy.db)
        copy.db = dest
        try:
            copy.start()
            with copy.api() as api:
                self.assertEqual(api.status().sequence, self.seq_live)
            got = self.answers(copy)
            self.assertEqual(copy.stop(), 0)
        finally:
            copy.cleanup()
        self.assertEqual(len(got), len(want))
        self.assertEqual(got, want)
        self.assertTrue(self.live.alive(), "publishing must not disturb the daemon")

    def test_2_interop_with_nats_go(self):
        """The reference client reads our object; we read the reference client's object."""
        self.publish("--bucket", "io")
        info = json.loads(interop("info", self.url, "io", "snapshot").stdout)
        self.assertEqual(info["name"], "snapshot")
        self.assertEqual(info["bucket"], "io")
        self.assertEqual(info["headers"]["Ent-Stream-Seq"], [str(self.seq_live)])
        self.assertIn("Ent-Stream", info["headers"])
        self.assertTrue(info["digest"].startswith("SHA-256="))
        self.assertGreater(info["chunks"], 1)
        got = os.path.join(self.tmp, "io-go.mdb")
        interop("get", self.url, "io", "snapshot", got)  # nats.go checks the digest itself
        dest = self.dir("io")
        rc, _, err = self.fetch(dest, "--bucket", "io")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256_file(got), sha256_file(os.path.join(dest, "data.mdb")))
        self.assertEqual(os.path.getsize(got), info["size"])

        # Our stream is configured as nats.go configures an object store.
        ours = json.loads(interop("stream", self.url, "io").stdout)
        src = os.path.join(dest, "data.mdb")
        interop("put", self.url, "gobucket", "snapshot", src,
                "Ent-Stream-Seq=%d" % self.seq_live, "Ent-Stream=")
        theirs = json.loads(interop("stream", self.url, "gobucket").stdout)
        for k in ("subjects", "retention", "max_bytes", "discard", "storage", "num_replicas",
                  "allow_rollup_hdrs", "allow_direct", "max_msgs_per_subject", "max_age"):
            a, b = ours.get(k), theirs.get(k)
            if k == "subjects":
                a = [s.replace("io", "B") for s in a]
                b = [s.replace("gobucket", "B") for s in b]
            self.assertEqual(a, b, "stream config field %s" % k)

        # What nats.go wrote (its own chunk size, nuid, JSON) fetches as a database here.
        dest2 = self.dir("from-go")
        rc, out, err = self.fetch(dest2, "--bucket", "gobucket")
        self.assertEqual(rc, 0, err)
        self.assertIn("seq %d" % self.seq_live, out)
        self.assertEqual(export_of(dest2), export_of(self.db))

    def test_3_large_multichunk_and_replace(self):
        """Hundreds of chunks; a second publish replaces the first and purges its chunks."""
        # 16 KiB chunks make the database hundreds of chunks without a bigger data set.
        self.publish("--bucket", "big", "--chunk-size", "16384")
        info1 = json.loads(interop("info", self.url, "big", "snapshot").stdout)
        self.assertGreaterEqual(info1["chunks"], 300)
        self.assertEqual(info1["options"]["max_chunk_size"], 16384)
        msgs, _ = stream_state(self.nats, "OBJ_big")
        self.assertEqual(msgs, info1["chunks"] + 1)
        dest = self.dir("big-fetched")
        rc, out, err = self.fetch(dest, "--bucket", "big")
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.path.getsize(os.path.join(dest, "data.mdb")), info1["size"])
        self.assertEqual(export_of(dest), export_of(self.db))
        # Another database, published again: a new version with a new nuid.
        other = os.path.join(self.tmp, "big2")
        rc, _, err = entctl("generate", "--db", other, "--customers", "300", "--seed", "4")
        self.assertEqual(rc, 0, err)
        self.publish("--bucket", "big", "--chunk-size", "8192", db=other)
        info2 = json.loads(interop("info", self.url, "big", "snapshot").stdout)
        self.assertNotEqual(info1["nuid"], info2["nuid"])
        self.assertNotEqual(info1["digest"], info2["digest"])
        self.assertGreater(info2["chunks"], 1)
        # One meta (rollup) and the new version's chunks: the old chunks are gone.
        msgs, _ = stream_state(self.nats, "OBJ_big")
        self.assertEqual(msgs, info2["chunks"] + 1)
        dest2 = self.dir("big2-fetched")
        rc, out, err = self.fetch(dest2, "--bucket", "big")
        self.assertEqual(rc, 0, err)
        self.assertEqual(export_of(dest2), export_of(other))

    def test_4_digest_mismatch_refused(self):
        self.publish("--bucket", "tamper")
        interop("tamper", self.url, "tamper", "snapshot")
        dest = self.dir("tampered")
        rc, out, err = self.fetch(dest, "--bucket", "tamper")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("digest mismatch", err)
        self.assertEqual(os.listdir(dest), [], "nothing may be left behind")
        # The reference client agrees the object is corrupt.
        p = interop("get", self.url, "tamper", "snapshot", os.path.join(self.tmp, "t.bin"),
                    check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("digest", p.stderr.decode())

    def test_5_missing_and_bad(self):
        dest = self.dir("missing")
        rc, out, err = self.fetch(dest, "--bucket", "never_created")
        self.assertEqual(rc, 3, err)
        self.assertIn("bucket 'never_created' does not exist", err)
        self.assertEqual(os.listdir(dest), [])
        rc, _, err = entctl("fleet", "snapshot", "info", "--nats", self.url, "--bucket",
                            "never_created")
        self.assertEqual(rc, 3)
        self.assertIn("does not exist", err)
        # The bucket exists, the object does not.
        self.publish("--bucket", "named", "--name", "other")
        rc, _, err = self.fetch(dest, "--bucket", "named")
        self.assertEqual(rc, 3, err)
        self.assertIn("has no object 'snapshot'", err)
        # Non-empty directory: refused, untouched.
        rc, _, err = self.fetch(self.db, "--bucket", "named", "--name", "other")
        self.assertEqual(rc, 1)
        self.assertIn("not empty", err)
        # Unreachable NATS.
        rc, _, err = entctl("fleet", "snapshot", "fetch", "--db", dest, "--nats",
                            "nats://127.0.0.1:%d" % natsfix._free_ports(1)[0])
        self.assertEqual(rc, 1)
        self.assertIn("cannot connect to NATS", err)
        # A database that follows no stream is not a fleet snapshot without the flag.
        rc, _, err = entctl("fleet", "snapshot", "publish", "--db", self.db, "--nats", self.url)
        self.assertEqual(rc, 1)
        self.assertIn("follows no stream", err)
        # Bad bucket names and usage.
        rc, _, err = entctl("fleet", "snapshot", "info", "--nats", self.url, "--bucket", "a.b")
        self.assertEqual(rc, 1)
        self.assertIn("bucket", err)
        rc, _, err = entctl("fleet", "snapshot", "publish", "--nats", self.url)
        self.assertEqual(rc, 2)
        self.assertIn("--db", err)

    def test_6_replace_existing(self):
        """fetch --replace swaps a stopped replica's (older) database for the snapshot, and
        refuses while a process has the database open."""
        self.publish("--bucket", "rep")
        old = os.path.join(self.tmp, "old")
        rc, _, err = entctl("generate", "--db", old, "--customers", "50", "--seed", "9")
        self.assertEqual(rc, 0, err)
        self.assertNotEqual(export_of(old), export_of(self.db))
        # A plain fetch refuses a non-empty directory; --replace swaps it.
        rc, _, err = self.fetch(old, "--bucket", "rep")
        self.assertEqual(rc, 1)
        rc, out, err = self.fetch(old, "--bucket", "rep", "--replace")
        self.assertEqual(rc, 0, err)
        self.assertIn("seq %d" % self.seq_live, out)
        self.assertEqual(export_of(old), export_of(self.db))
        self.assertFalse(os.path.exists(os.path.join(old, ".bootstrap")))
        # The live daemon's directory is open in its process: refused, untouched.
        # (the inode: a replace would swap the file; the daemon's own timers may write to it)
        before = os.stat(os.path.join(self.db, "data.mdb")).st_ino
        rc, _, err = self.fetch(self.db, "--bucket", "rep", "--replace")
        self.assertEqual(rc, 1)
        self.assertIn("open in process %d" % self.live.pid, err)
        self.assertEqual(os.stat(os.path.join(self.db, "data.mdb")).st_ino, before)
        # A missing snapshot leaves the directory as it was.
        rc, _, err = self.fetch(old, "--bucket", "rep", "--name", "absent", "--replace")
        self.assertEqual(rc, 3)
        self.assertEqual(export_of(old), export_of(self.db))


if __name__ == "__main__":
    def extra(ap):
        ap.add_argument("--go-out", default=None)
    rest = wp.setup(sys.argv[1:], extra)
    INTEROP = natsfix.build_go_tool("objinterop", wp.ARGS.out)
    import signal
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    unittest.main(module="__main__", argv=[sys.argv[0], "-v"] + rest)
