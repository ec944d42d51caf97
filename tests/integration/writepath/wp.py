#!/usr/bin/python3
"""Shared helpers of the write-path suites (tests/integration/writepath/).

Every suite starts its own entd (the write path needs restarts and kill -9, which the
integration harness does not do), so this module holds:

- `setup()`: command-line options (--entd, --entctl, --proto-dir, --protoc, --out), protoc
  --python_out into --out and loading of the generated modules into `pb`;
- `Entd`: one daemon on a temporary (or given) LMDB directory, a free loopback port and a unix
  socket; start (waits for Health SERVING), stop (SIGTERM, exit status), kill9, restart on the
  same directory. The child gets PR_SET_PDEATHSIG, so no daemon outlives a killed test.
- `Api`: typed callables for every RPC over one channel (no generated stubs: unary_unary with
  the messages' SerializeToString / FromString, as tests/integration/test_grpcio.py does).
- `Statuses`: assertStatus(code, fn, req, contains=...).

Run with Debian's interpreter (/usr/bin/python3): grpcio and protobuf are Debian packages.
"""
import argparse
import calendar
import datetime
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

# The integration harness's small process helpers (free port, health probe, PDEATHSIG, log
# tail); imported, not copied, and not edited (that file belongs to the C/grpcio suites).
# No __pycache__ in the source tree, least of all in the client engineer's directory.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

ARGS = None
pb = {}  # "types", "entitlement", "admin", "health" -> generated module
TIMEOUT = 60  # seconds per call: generous, two cores shared with builds
TOKEN = "wp-admin-token"
DAY = 86400 * 1000


def now_ms():
    return int(time.time() * 1000)


def ms(iso):
    """RFC 3339 UTC ("2029-06-01T00:00:00Z") -> Unix ms."""
    dt = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
    return calendar.timegm(dt.timetuple()) * 1000


def log(msg):
    print("wp: " + msg, file=sys.stderr, flush=True)


# ---- generated code ------------------------------------------------------------------------

def generate(proto_dir, protoc, out):
    """protoc --python_out for the contract; load the modules (health under its own name: a
    top-level package "grpc" would shadow grpcio)."""
    os.makedirs(out, exist_ok=True)
    files = ["ent/v1/types.proto", "ent/v1/entitlement.proto", "ent/v1/admin.proto",
             "grpc/health/v1/health.proto"]
    subprocess.run([protoc, "--python_out=" + out, "-I", proto_dir, "-I", "/usr/include"]
                   + [os.path.join(proto_dir, f) for f in files], check=True)
    sys.path.insert(0, out)
    from ent.v1 import admin_pb2, entitlement_pb2, types_pb2  # noqa: E402
    pb["types"], pb["entitlement"], pb["admin"] = types_pb2, entitlement_pb2, admin_pb2
    spec = importlib.util.spec_from_file_location(
        "entd_wp_health_pb2", os.path.join(out, "grpc", "health", "v1", "health_pb2.py"))
    health = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health)
    pb["health"] = health


def setup(argv=None, extra=None):
    """Parse our options, generate the protobuf modules; returns the rest of argv (for
    unittest). \a extra(ap) may add options of the calling script."""
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--out", required=True, help="directory for the generated _pb2 modules")
    ap.add_argument("--mdb-stat", default="mdb_stat", help="lmdb-utils' mdb_stat")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    if extra:
        extra(ap)
    ARGS, rest = ap.parse_known_args(argv)
    generate(ARGS.proto_dir, ARGS.protoc, ARGS.out)
    return rest


def main(argv=None):
    """unittest.main over the calling module's tests, after setup()."""
    rest = setup(argv if argv is not None else sys.argv[1:])
    # SIGTERM (ctest timeout) unwinds through tearDown/finally like Ctrl-C, so daemons stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    unittest.main(module="__main__", argv=[sys.argv[0], "-v"] + rest)


# ---- the daemon ----------------------------------------------------------------------------

class Entd:
    """One entd process on DIR/db, listening on a free loopback port and on DIR/entd.sock.

    The directory survives stop/kill9/restart (that is the point); cleanup() removes it unless
    a test failed or --keep was given, in which case entd.log stays there for the post-mortem.
    """

    def __init__(self, tmp=None, token=TOKEN, extra_args=(), demo=None, prefix=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix="entd-wp-", dir="/tmp")
        self.db = os.path.join(self.tmp, "db")
        os.makedirs(self.db, exist_ok=True)
        self.sock = os.path.join(self.tmp, "entd.sock")
        self.logpath = os.path.join(self.tmp, "entd.log")
        self.token = token
        self.extra_args = list(extra_args)
        self.prefix = list(prefix)  # e.g. ["taskset", "-c", "1"] (measure_writes.py)
        self.proc = None
        self.tcp = None
        self.unix = "unix:" + self.sock
        self.failed = False
        if demo:
            self.entctl("import", "--db", self.db, demo)

    def entctl(self, *args, timeout=600):
        p = subprocess.run([ARGS.entctl] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("entctl %s failed (%d):\n%s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace")))
        return p.stdout.decode(errors="replace")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=120):
        """Start entd and wait until Health/Check answers SERVING on both listeners."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(3):
            if os.path.exists(self.sock):
                os.unlink(self.sock)
            self.tcp = "127.0.0.1:%d" % harness.free_port()
            cmd = self.prefix + [ARGS.entd, "--db", self.db, "--listen", self.tcp,
                                 "--listen", self.unix, "--admin-token", self.token]
            cmd += self.extra_args
            with open(self.logpath, "ab") as logf:
                logf.write(("---- wp: start attempt %d: %s\n" % (attempt + 1, " ".join(
                    c if c != self.token else "***" for c in cmd))).encode())
                logf.flush()
                self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                             preexec_fn=harness.die_with_parent)
            deadline = time.monotonic() + timeout
            ready = set()
            while time.monotonic() < deadline and self.proc.poll() is None:
                for t in (self.tcp, self.unix):
                    if t not in ready and harness.serving(t):
                        ready.add(t)
                if len(ready) == 2:
                    return self
                time.sleep(0.05)  # poll interval only; readiness is decided by the answer
            if self.proc.poll() is None:
                self.kill9()
                raise RuntimeError("entd not SERVING after %ds:\n%s" % (timeout, self.tail()))
            # Exited early: most likely the port was taken between free_port() and bind.
            log("entd exited with %s during start-up (attempt %d)" % (
                self.proc.returncode, attempt + 1))
        raise RuntimeError("entd did not start:\n" + self.tail())

    def stop(self, grace=60):
        """SIGTERM by PID; returns the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log("entd pid %d did not exit %ds after SIGTERM: kill -9" % (self.proc.pid, grace))
            self.kill9()
            return None

    def kill9(self):
        """kill -9 by PID, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=60):
        return harness.tail(self.logpath, n)

    def api(self, admin=True, unix=False):
        md = [("authorization", "Bearer " + self.token)] if admin else None
        return Api(self.unix if unix else self.tcp, metadata=md)

    def cleanup(self):
        if self.alive():
            self.kill9()
        if self.failed or ARGS.keep:
            log("kept %s (entd.log inside)" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class DaemonCase(unittest.TestCase):
    """A TestCase with one entd per class (started in setUpClass, SIGTERM-stopped in
    tearDownClass with exit status 0 required). `cls.d` is the Entd, `cls.admin` an Api with
    the admin credential. DEMO = True imports deploy/demo/demo.json first."""

    DEMO = False
    EXTRA_ARGS = ()

    @classmethod
    def setUpClass(cls):
        demo = None
        if cls.DEMO:
            demo = os.path.join(ARGS.proto_dir, "..", "deploy", "demo", "demo.json")
        cls.d = Entd(extra_args=cls.EXTRA_ARGS, demo=demo)
        try:
            cls.d.start()
        except Exception:
            cls.d.failed = True
            cls.d.cleanup()
            raise
        cls.admin = cls.d.api()

    @classmethod
    def tearDownClass(cls):
        cls.admin.close()
        status = cls.d.stop()
        if status != 0:
            cls.d.failed = True
            cls.d.cleanup()
            raise AssertionError("entd exit status after SIGTERM: %s (want 0)\n%s"
                                 % (status, cls.d.tail()))
        cls.d.cleanup()

    def run(self, result=None):
        # Keep the daemon's directory (and log) when any test of the class fails.
        r = super().run(result)
        if r is not None and (r.failures or r.errors):
            type(self).d.failed = True
        return r


# ---- gRPC ----------------------------------------------------------------------------------

ADMIN_RPCS = [
    ("UpsertFeature", "FeatureResponse"), ("GetFeature", "FeatureResponse"),
    ("ListFeatures", "ListFeaturesResponse"), ("DeleteFeature", "DeleteResponse"),
    ("SetPlanEntitlements", "EntitlementsResponse"),
    ("PatchPlanEntitlements", "EntitlementsResponse"),
    ("GetPlanEntitlements", "EntitlementsResponse"),
    ("DeletePlanEntitlements", "DeleteResponse"),
    ("SetAddonEntitlements", "EntitlementsResponse"),
    ("PatchAddonEntitlements", "EntitlementsResponse"),
    ("GetAddonEntitlements", "EntitlementsResponse"),
    ("DeleteAddonEntitlements", "DeleteResponse"),
    ("UpsertSubscription", "SubscriptionResponse"),
    ("CancelSubscription", "SubscriptionResponse"),
    ("SetCustomerEntitlement", "CustomerEntitlementResponse"),
    ("UpdateCustomerEntitlement", "CustomerEntitlementResponse"),
    ("DeleteCustomerEntitlement", "DeleteResponse"),
    ("ListCustomerEntitlements", "ListCustomerEntitlementsResponse"),
    ("Import", "ImportResponse"), ("Export", "ExportResponse"),
    ("GetStatus", "StatusResponse"),
]

CHECK_RPCS = [
    ("CheckEntitlement", "CheckEntitlementResponse"),
    ("BatchCheckEntitlements", "BatchCheckEntitlementsResponse"),
    ("GetCustomerEntitlements", "GetCustomerEntitlementsResponse"),
    ("ReportUsage", "ReportUsageResponse"),
    ("ConsumeEntitlement", "ConsumeEntitlementResponse"),
]


class Api:
    """Every unary RPC as a method named like the RPC (api.SetCustomerEntitlement(req)), plus
    .future(name, req) for in-flight concurrency. One channel; close() it."""

    def __init__(self, target, metadata=None):
        self.target = target
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.enable_retries", 0)])
        self.metadata = metadata
        self._fns = {}
        a, e = pb["admin"], pb["entitlement"]
        for name, resp in ADMIN_RPCS:
            self._add("/ent.v1.AdminService/" + name, name, getattr(a, resp))
        for name, resp in CHECK_RPCS:
            self._add("/ent.v1.EntitlementService/" + name, name, getattr(e, resp))
        self._add("/grpc.health.v1.Health/Check", "Health", pb["health"].HealthCheckResponse)

    def _add(self, path, name, resp_cls):
        fn = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        self._fns[name] = fn
        md = self.metadata

        def call(req, **kw):
            kw.setdefault("timeout", TIMEOUT)
            if md is not None:
                kw.setdefault("metadata", md)
            return fn(req, **kw)
        setattr(self, name, call)

    def future(self, name, req, timeout=TIMEOUT):
        kw = {"timeout": timeout}
        if self.metadata is not None:
            kw["metadata"] = self.metadata
        return self._fns[name].future(req, **kw)

    def raw(self, path, data, timeout=TIMEOUT):
        """Send bytes as they are (hostile encodings); returns the response bytes."""
        kw = {"timeout": timeout}
        if self.metadata is not None:
            kw["metadata"] = self.metadata
        return self.channel.unary_unary(path)(data, **kw)

    def check(self, customer, feature, quantity=0, at=0, min_sequence=0):
        return self.CheckEntitlement(pb["entitlement"].CheckEntitlementRequest(
            customer_id=customer, feature_code=feature, quantity=quantity, at=at,
            min_sequence=min_sequence))

    def export(self):
        return self.Export(pb["admin"].ExportRequest())

    def status(self):
        return self.GetStatus(pb["admin"].GetStatusRequest())

    def close(self):
        self.channel.close()


def reason(name):
    return pb["types"].Reason.Value("REASON_" + name)


class Statuses:
    """assertStatus: the call fails with the given code and, optionally, message fragments."""

    def assertStatus(self, code, fn, *args, contains=None, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(*args, **kw)
        err = cm.exception
        self.assertEqual(err.code(), code, "%s: %s" % (err.code(), err.details()))
        if contains:
            for frag in [contains] if isinstance(contains, str) else contains:
                self.assertIn(frag, err.details() or "")
        return err


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until it returns a true value or timeout seconds pass; returns its last
    value. Used where the property itself is asynchronous (the writer's timers): the test
    then asserts the value, with a generous bound, never a duration."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---- boundaries without timing-dependent verdicts -------------------------------------------

class TooSlow(Exception):
    """A check that had to be answered before a boundary was answered after it."""


def assert_before(deadline_ms):
    """Raise TooSlow if the wall clock already reached deadline_ms (call it right after the
    answers that had to come before that boundary)."""
    if now_ms() >= deadline_ms:
        raise TooSlow("an answer needed before %d arrived after it" % deadline_ms)


def with_margins(case, flow, margins=(2000, 4000, 8000, 16000)):
    """Run flow(attempt, margin_ms) until it does not raise TooSlow; each attempt must use
    fresh objects (attempt numbers them). Only a machine too slow for a 16 s window fails.
    WP_MARGINS_MS="100,2000" overrides the list (to exercise the retry path)."""
    if os.environ.get("WP_MARGINS_MS"):
        margins = [int(x) for x in os.environ["WP_MARGINS_MS"].split(",")]
    for n, margin in enumerate(margins):
        try:
            return flow(n, margin)
        except TooSlow as e:
            log("%s: %s; again with a wider window" % (case.id(), e))
    case.fail("the machine was too slow for a %d ms window" % margins[-1])


def expiring(fn, *args, **kw):
    """fn(...) of a write carrying a future expiry: refused as "in the past" means the window
    closed before the write was applied, i.e. the machine was too slow (TooSlow)."""
    try:
        return fn(*args, **kw)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT and "in the past" in (e.details() or ""):
            raise TooSlow("the write came after its own expiry: " + e.details())
        raise


def sleep_until(instant_ms):
    """Sleep until the wall clock is past instant_ms (a boundary), with 50 ms to spare."""
    while True:
        left = instant_ms + 50 - now_ms()
        if left <= 0:
            return
        time.sleep(left / 1000.0)
