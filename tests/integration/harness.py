#!/usr/bin/python3
"""The one fixture module of the integration suites: starting entd, data sets, clients.

Every suite talks to a real entd over real gRPC with a real LMDB on disk; this module is the
only place that knows how to start one, how to load the demo data, how to generate the
protobuf modules and how to build a client. The suites' own modules keep only what is theirs
and re-export the rest: tests/integration/ops/ops.py (TLS material, /metrics parsing) and
tests/integration/writepath/wp.py (boundary timing without timing-dependent verdicts).

- processes: `die_with_parent` (PR_SET_PDEATHSIG: no daemon outlives a killed test),
  `free_port`, `serving` (Health/Check as raw bytes), `tail`, `run_entd` (to completion);
- options and generated code: `setup(argv)` parses --entd, --entctl, --proto-dir, --protoc,
  --out, --demo, --mdb-stat, --keep into `ARGS`, runs protoc --python_out and loads the
  modules into `pb` ("types", "entitlement", "admin", "health", "refl_v1alpha", "refl_v1");
- daemons, both on a temporary directory with the LMDB database in DIR/db (the demo document
  imported when asked) and the log in DIR/entd.log:
    `Entd`    flags: a free loopback port, the unix socket DIR/entd.sock, an admin token;
              restartable on the same directory, kill -9 (the write-path proofs);
    `Daemon`  a YAML config text with {db}, {tmp}, {probe} and named free ports; readiness on
              a plain-text health-only probe listener (the operations suites);
  and the unittest bases `DaemonCase` (one Entd per class) and `DaemonTest` (daemons per test,
  each required to exit 0 after SIGTERM);
- clients: `Api` (every unary RPC as a method named like the RPC), `channel`, `unary`,
  `check_fn`, `check_req`, `Stream`, `health_status`, `reason`, `Statuses`;
- polling: `wait_for` (raises), `wait_until` (returns the last value). Readiness and every
  asynchronous property are polled; a timeout only bounds a failure.

Run as a script it is the runner of integration.c_client and integration.grpcio:

    harness.py --entd PATH --entctl PATH --demo FILE [--token T] [--timeout S] -- CMD [ARGS...]

1. make a temporary directory and import the demo document into DIR/db with the built entctl;
2. start the built entd on a free loopback TCP port and on the unix socket DIR/entd.sock, with
   an admin token, and poll Health/Check on both listeners until SERVING;
3. run CMD with ENTD_TEST_TCP, ENTD_TEST_UNIX, ENTD_TEST_TOKEN, ENTD_TEST_DIR, ENTD_TEST_ENTCTL,
   ENTD_TEST_DEMO and ENTD_TEST_PID in its environment;
4. stop entd with SIGTERM (by PID) and require exit status 0 within the grace time, else
   kill -9 and fail.
The exit status is CMD's, or 1 if entd did not start or did not stop cleanly. The temporary
directory is removed on success and kept (with entd.log) on failure.

Run with Debian's interpreter (/usr/bin/python3): grpcio and protobuf are Debian packages.
"""
import argparse
import calendar
import ctypes
import datetime
import importlib.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# Before grpcio is imported: the suites fork entd and openssl while channels are open, which
# grpcio's fork handlers do not survive reliably (ctest sets it too).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # noqa: E402

ARGS = None
pb = {}  # generated modules by short name (see setup); filled in place, so imports of it see
TIMEOUT = 60  # seconds per call: generous, two cores shared with builds
TOKEN = "it-admin-token"
DAY = 86400 * 1000
CHECK = "/ent.v1.EntitlementService/CheckEntitlement"
BATCH = "/ent.v1.EntitlementService/BatchCheckEntitlements"
STREAM = "/ent.v1.EntitlementService/StreamCheckEntitlements"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def log(msg):
    print("harness: " + msg, file=sys.stderr, flush=True)


def now_ms():
    return int(time.time() * 1000)


def ms(iso):
    """RFC 3339 UTC ("2029-06-01T00:00:00Z") -> Unix ms."""
    dt = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
    return calendar.timegm(dt.timetuple()) * 1000


def wait_for(pred, timeout=60, what="condition"):
    """Poll pred() until true and return its value; raise AssertionError after \a timeout.
    The timeout only bounds a failure: pass/fail is decided by the condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until it returns a true value or timeout seconds pass; returns its last
    value, for the caller to assert (with a generous bound, never a duration)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---- processes -----------------------------------------------------------------------------

def die_with_parent():
    """In the child before exec: entd gets SIGKILL if the test process itself is killed (a
    ctest timeout), so no daemon outlives its test."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    """A loopback port nobody listens on right now (entd binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving(target):
    """True when Health/Check("") on target answers SERVING. Raw bytes: no generated code."""
    with grpc.insecure_channel(target) as ch:
        check = ch.unary_unary(HEALTH_CHECK)
        try:
            return check(b"", timeout=2) == SERVING
        except grpc.RpcError:
            return False


def tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def run_entd(args, env=None, timeout=120):
    """Run entd to completion (--check-config and friends): (status, stdout, stderr)."""
    p = subprocess.run([ARGS.entd] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout, preexec_fn=die_with_parent)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# ---- options and generated code ------------------------------------------------------------

def _load(out, rel, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(out, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def generate(proto_dir, protoc, out):
    """protoc --python_out for the contract, health and reflection protos into \a out, loaded
    into `pb`. Modules under the "grpc" package are loaded by path under other names (a
    top-level package "grpc" would shadow grpcio)."""
    os.makedirs(out, exist_ok=True)
    files = ["ent/v1/types.proto", "ent/v1/entitlement.proto", "ent/v1/admin.proto",
             "grpc/health/v1/health.proto", "grpc/reflection/v1alpha/reflection.proto",
             "grpc/reflection/v1/reflection.proto"]
    subprocess.run([protoc, "--python_out=" + out, "-I", proto_dir, "-I", "/usr/include"]
                   + [os.path.join(proto_dir, f) for f in files], check=True)
    sys.path.insert(0, out)
    from ent.v1 import admin_pb2, entitlement_pb2, types_pb2  # noqa: E402
    pb["types"], pb["entitlement"], pb["admin"] = types_pb2, entitlement_pb2, admin_pb2
    pb["health"] = _load(out, "grpc/health/v1/health_pb2.py", "entd_health_pb2")
    pb["refl_v1alpha"] = _load(out, "grpc/reflection/v1alpha/reflection_pb2.py",
                               "entd_refl_v1alpha_pb2")
    pb["refl_v1"] = _load(out, "grpc/reflection/v1/reflection_pb2.py", "entd_refl_v1_pb2")


def setup(argv=None, extra=None):
    """Parse the suites' options into ARGS and generate the protobuf modules; returns the rest
    of argv (for unittest). \a extra(ap) may add options of the calling script."""
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--out", required=True, help="directory for the generated _pb2 modules")
    ap.add_argument("--demo", help="the demo document (default: deploy/demo/demo.json)")
    ap.add_argument("--mdb-stat", default="mdb_stat", help="lmdb-utils' mdb_stat")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    if extra:
        extra(ap)
    ARGS, rest = ap.parse_known_args(argv)
    if not ARGS.demo:
        ARGS.demo = os.path.join(ARGS.proto_dir, "..", "deploy", "demo", "demo.json")
    generate(ARGS.proto_dir, ARGS.protoc, ARGS.out)
    return rest


def args_getattr(name):
    """A suite module's __getattr__: its ARGS is this module's, which setup() sets after the
    suite module was imported (PEP 562)."""
    if name == "ARGS":
        return ARGS
    raise AttributeError(name)


def main_tests(argv=None):
    """unittest.main over the calling script's tests, after setup()."""
    rest = setup(argv if argv is not None else sys.argv[1:])
    # SIGTERM (ctest timeout) unwinds through tearDown/finally like Ctrl-C, so daemons stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    unittest.main(module="__main__", argv=[sys.argv[0], "-v"] + rest)


# ---- daemons -------------------------------------------------------------------------------

class _Process:
    """What both kinds of daemon share: the directory, the demo import, the start loop with
    its readiness poll, signals, the log, and cleanup."""

    def __init__(self, tmp, tmp_prefix, demo, prefix=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix=tmp_prefix, dir="/tmp")
        self.db = os.path.join(self.tmp, "db")
        os.makedirs(self.db, exist_ok=True)
        self.logpath = os.path.join(self.tmp, "entd.log")
        self.prefix = list(prefix)  # e.g. ["taskset", "-c", "1"] (bench/measure_writes.py)
        self.proc = None
        self.failed = False
        self.expect_nonzero = False  # a test that kills or breaks it on purpose says so
        if demo:
            self.entctl("import", "--db", self.db, demo)

    def path(self, name):
        return os.path.join(self.tmp, name)

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

    def _launch(self, attempt_fn, timeout, env=None, secret=None):
        """Start entd until it is SERVING on every target: attempt_fn() picks fresh ports and
        returns (cmd, targets). An early exit is most likely a port taken between free_port()
        and bind, so it is tried three times."""
        for attempt in range(3):
            cmd, targets = attempt_fn()
            cmd = self.prefix + cmd
            shown = " ".join(c if c != secret else "***" for c in cmd)
            with open(self.logpath, "ab") as logf:
                logf.write(("---- start attempt %d: %s\n" % (attempt + 1, shown)).encode())
                logf.flush()
                self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                             env=env, preexec_fn=die_with_parent)
            deadline = time.monotonic() + timeout
            ready = set()
            while time.monotonic() < deadline and self.proc.poll() is None:
                for t in targets:
                    if t not in ready and serving(t):
                        ready.add(t)
                if len(ready) == len(targets):
                    return self
                time.sleep(0.05)  # poll interval only; readiness is decided by the answer
            if self.proc.poll() is None:
                self.kill9()
                raise RuntimeError("entd not SERVING after %ds:\n%s" % (timeout, self.tail()))
            log("entd exited with %s during start-up (attempt %d)"
                % (self.proc.returncode, attempt + 1))
        raise RuntimeError("entd did not start:\n" + self.tail())

    def hup(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def term(self):
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout=120):
        """The exit status, or None after kill -9 when it did not exit within \a timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log("entd pid %d did not exit within %ds: kill -9" % (self.proc.pid, timeout))
            self.kill9()
            return None

    def stop(self, grace=120):
        """SIGTERM by PID; the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.term()
        return self.wait(grace)

    def kill9(self):
        """kill -9 by PID, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def log_count(self, needle):
        return self.log_text().count(needle)

    def wait_log(self, needle, count=1, timeout=60):
        """Wait until \a needle appears \a count times in the log (a SIGHUP is handled
        asynchronously; its log lines say when it is done)."""
        return wait_for(lambda: self.log_count(needle) >= count, timeout,
                        "%r x%d in entd.log" % (needle, count))

    def tail(self, n=80):
        return tail(self.logpath, n)

    def cleanup(self):
        if self.alive():
            self.kill9()
        if self.failed or (ARGS is not None and getattr(ARGS, "keep", False)):
            log("kept %s (entd.log inside)" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Entd(_Process):
    """One entd on DIR/db started with flags, listening on a free loopback port (self.tcp) and
    on DIR/entd.sock (self.unix), with an admin token.

    The directory survives stop/kill9/restart (that is the point); cleanup() removes it unless
    a test failed or --keep was given, in which case entd.log stays there for the post-mortem.
    """

    def __init__(self, tmp=None, token=TOKEN, extra_args=(), demo=None, prefix=(),
                 tmp_prefix="entd-it-"):
        super().__init__(tmp, tmp_prefix, demo, prefix)
        self.sock = os.path.join(self.tmp, "entd.sock")
        self.token = token
        self.extra_args = list(extra_args)
        self.tcp = None
        self.unix = "unix:" + self.sock

    def start(self, timeout=120):
        """Start entd and wait until Health/Check answers SERVING on both listeners."""
        assert self.proc is None or self.proc.poll() is not None, "already running"

        def attempt():
            if os.path.exists(self.sock):
                os.unlink(self.sock)
            self.tcp = "127.0.0.1:%d" % free_port()
            cmd = [ARGS.entd, "--db", self.db, "--listen", self.tcp, "--listen", self.unix,
                   "--admin-token", self.token] + self.extra_args
            return cmd, (self.tcp, self.unix)
        return self._launch(attempt, timeout, secret=self.token)

    def stop(self, grace=60):
        return super().stop(grace)

    def tail(self, n=60):
        return super().tail(n)

    def api(self, admin=True, unix=False):
        md = [("authorization", "Bearer " + self.token)] if admin else None
        return Api(self.unix if unix else self.tcp, metadata=md)


class Daemon(_Process):
    """One entd on TMP/db (the demo imported unless demo=False) with a config file
    TMP/entd.yaml.

    `config` is YAML text with placeholders filled here: {db}, {tmp} and {probe} (a free
    loopback port for the plain-text health-only listener used for readiness, as in
    deploy/k8s); `ports` names further free ports to allocate, available as {name} in the text
    and as self.ports[name].
    """

    def __init__(self, config, ports=(), args=(), env=None, demo=True, tmp=None):
        super().__init__(tmp, "entd-ops-", ARGS.demo if demo is True else demo)
        self.cfgpath = os.path.join(self.tmp, "entd.yaml")
        self.template = config
        self.port_names = ["probe"] + list(ports)
        self.args = list(args)
        self.env = env
        self.ports = {}

    def write_config(self, text=None):
        vals = dict(self.ports, db=self.db, tmp=self.tmp)
        with open(self.cfgpath, "w") as f:
            f.write((text if text is not None else self.template).format(**vals))

    @property
    def probe(self):
        return "127.0.0.1:%d" % self.ports["probe"]

    def addr(self, name):
        return "127.0.0.1:%d" % self.ports[name]

    def start(self, timeout=120):
        def attempt():
            self.ports = {n: free_port() for n in self.port_names}
            self.write_config()
            return [ARGS.entd, "--config", self.cfgpath] + self.args, (self.probe,)
        return self._launch(attempt, timeout, env=self.env)


class DaemonCase(unittest.TestCase):
    """A TestCase with one Entd per class (started in setUpClass, SIGTERM-stopped in
    tearDownClass with exit status 0 required). `cls.d` is the Entd, `cls.admin` an Api with
    the admin credential. DEMO = True imports the demo document first."""

    DEMO = False
    EXTRA_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.d = Entd(extra_args=cls.EXTRA_ARGS, demo=ARGS.demo if cls.DEMO else None,
                     tmp_prefix="entd-wp-")
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


class EntdPerTest(unittest.TestCase):
    """A TestCase whose every test starts its own Entd (`self.d`, in setUp): for tests that
    kill or restart it. Its directory (with entd.log) is kept when the test failed."""

    def setUp(self):
        self.d = Entd()
        self.d.start()

    def run(self, result=None):
        r = super().run(result)
        if hasattr(self, "d"):
            if r is not None and (r.failures or r.errors):
                self.d.failed = True
            self.d.cleanup()
        return r

    def mdb_stat(self):
        """`mdb_stat -a` on the daemon's database (LMDB's own walk of every table) must exit
        0. \return its output."""
        p = subprocess.run([ARGS.mdb_stat, "-a", self.d.db], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        self.assertEqual(p.returncode, 0, "mdb_stat -a: %s" % p.stdout.decode(errors="replace"))
        return p.stdout.decode(errors="replace")


class DaemonTest(unittest.TestCase):
    """Daemons started per test (self.daemon(...)); each must exit 0 after SIGTERM, and their
    directories are kept when the test fails."""

    def setUp(self):
        self.daemons = []

    def daemon(self, *a, **kw):
        d = Daemon(*a, **kw)
        self.daemons.append(d)
        return d

    def tearDown(self):
        # unittest's outcome of this test so far (Python 3.11: failures are recorded as they
        # happen, before tearDown).
        failed = not getattr(self._outcome, "success", True)
        bad_exit = []
        for d in self.daemons:
            if d.alive():
                st = d.stop()
                if st != 0:
                    bad_exit.append(st)
                    failed = True
            elif d.proc is not None and d.proc.returncode != 0 and not d.expect_nonzero:
                bad_exit.append(d.proc.returncode)
                failed = True
            d.failed = d.failed or failed
            if failed:
                log("entd log (%s):\n%s" % (d.tmp, d.tail()))
            d.cleanup()
        # Every daemon must have stopped cleanly (exit 0 after SIGTERM), whatever the test did.
        self.assertEqual(bad_exit, [], "entd exit status after SIGTERM")


# ---- clients -------------------------------------------------------------------------------

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
    .future(name, req) for in-flight concurrency and .raw(path, bytes). One channel; close() it.
    No generated stubs: unary_unary with the messages' SerializeToString / FromString."""

    def __init__(self, target, metadata=None, timeout=None):
        self.target = target
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.enable_retries", 0)])
        self.metadata = metadata
        self.timeout = timeout or TIMEOUT
        self._fns = {}
        a, e = pb["admin"], pb["entitlement"]
        for name, resp in ADMIN_RPCS:
            self._add("/ent.v1.AdminService/" + name, name, getattr(a, resp))
        for name, resp in CHECK_RPCS:
            self._add("/ent.v1.EntitlementService/" + name, name, getattr(e, resp))
        self._add(HEALTH_CHECK, "Health", pb["health"].HealthCheckResponse)

    def _add(self, path, name, resp_cls):
        fn = self.channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        self._fns[name] = fn
        md = self.metadata
        timeout = self.timeout

        def call(req, **kw):
            kw.setdefault("timeout", timeout)
            if md is not None:
                kw.setdefault("metadata", md)
            return fn(req, **kw)
        setattr(self, name, call)

    def future(self, name, req, timeout=None):
        kw = {"timeout": timeout or self.timeout}
        if self.metadata is not None:
            kw["metadata"] = self.metadata
        return self._fns[name].future(req, **kw)

    def raw(self, path, data, timeout=None):
        """Send bytes as they are (hostile encodings); returns the response bytes."""
        kw = {"timeout": timeout or self.timeout}
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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def channel(target, creds=None, options=()):
    opts = [("grpc.enable_retries", 0)] + list(options)
    if creds is None:
        return grpc.insecure_channel(target, options=opts)
    return grpc.secure_channel(target, creds, options=opts)


def unary(ch, path, resp_cls):
    return ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=resp_cls.FromString)


def check_fn(ch):
    return unary(ch, CHECK, pb["entitlement"].CheckEntitlementResponse)


def check_req(customer="cus_acme", feature="custom_domain", quantity=0):
    return pb["entitlement"].CheckEntitlementRequest(customer_id=customer, feature_code=feature,
                                                     quantity=quantity)


def health_status(ch, service="", timeout=TIMEOUT):
    fn = unary(ch, HEALTH_CHECK, pb["health"].HealthCheckResponse)
    return fn(pb["health"].HealthCheckRequest(service=service), timeout=timeout).status


def reason(name):
    return pb["types"].Reason.Value("REASON_" + name)


class Stream:
    """A bidirectional StreamCheckEntitlements on \a ch: send() one request and read its
    response with recv(); close() half-closes and returns the call's final status."""

    _END = object()

    def __init__(self, ch, metadata=None):
        self.q = queue.Queue()
        fn = ch.stream_stream(STREAM, request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=pb["entitlement"].CheckEntitlementResponse
                              .FromString)
        self.call = fn(self._requests(), metadata=metadata, timeout=600)

    def _requests(self):
        while True:
            m = self.q.get()
            if m is self._END:
                return
            yield m

    def send(self, req):
        self.q.put(req)

    def recv(self):
        return next(self.call)

    def ask(self, req):
        self.send(req)
        return self.recv()

    def close(self):
        self.q.put(self._END)
        for _ in self.call:  # drain: no more responses are expected
            pass
        return self.call.code()


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


# ---- the runner of the C client and grpcio suites ------------------------------------------

def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--token", default=TOKEN)
    ap.add_argument("--start-timeout", type=int, default=60)
    ap.add_argument("--stop-timeout", type=int, default=30)
    ap.add_argument("--timeout", type=int, default=900, help="seconds allowed for CMD")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    ARGS = args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no test command")

    # SIGTERM (ctest, CI) unwinds through the finally blocks below like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Short base path (/tmp/entd-it-*): a unix socket path must fit in 108 bytes.
    d = Entd(token=args.token, tmp_prefix="entd-it-")
    d.failed = True  # until the tests passed and entd stopped cleanly
    try:
        try:
            d.entctl("import", "--db", d.db, args.demo, timeout=300)
            d.start(timeout=args.start_timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(str(e))
            return 1
        log("entd pid %d SERVING on %s and %s" % (d.pid, d.tcp, d.unix))
        env = dict(os.environ, ENTD_TEST_TCP=d.tcp, ENTD_TEST_UNIX=d.unix,
                   ENTD_TEST_TOKEN=args.token, ENTD_TEST_DIR=d.tmp, ENTD_TEST_ENTCTL=args.entctl,
                   ENTD_TEST_DEMO=args.demo, ENTD_TEST_PID=str(d.pid))
        try:
            rc = subprocess.run(cmd, env=env, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            log("test command timed out after %ds" % args.timeout)
            rc = 1
        if not d.alive():
            log("entd died during the tests (status %s):\n%s" % (d.proc.returncode, d.tail()))
            return 1
        status = d.stop(args.stop_timeout)
        if status != 0:
            log("entd exit status after SIGTERM: %s (want 0)\n%s" % (status, d.tail()))
            return 1
        log("entd stopped cleanly (exit 0)")
        if rc != 0:
            log("tests failed (%d); entd log:\n%s" % (rc, d.tail()))
        d.failed = rc != 0
        return rc
    finally:
        if d.alive():
            d.stop(5)
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
