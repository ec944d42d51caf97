#!/usr/bin/python3
"""Shared helpers of the operations suites (tests/integration/ops/).

Each suite starts real entd processes from a YAML config file (plus flags and environment
where the test is about them) and drives them with Debian's Python grpcio, the openssl CLI,
the ssl module and plain HTTP; nothing is mocked. This module holds:

- `setup()`/`main()`: options (--entd, --entctl, --proto-dir, --protoc, --demo, --out),
  protoc --python_out for the contract and the reflection protos, loaded into `pb`;
- `Daemon`: one entd on a temporary directory (demo data imported), started from a config
  text, with readiness decided by the gRPC health service on a plain-text probe listener that
  every config here has (as in deploy/k8s); stop (SIGTERM, exit status), hup (SIGHUP),
  log polling. Children get PR_SET_PDEATHSIG, so no daemon outlives a killed test;
- `Pki`: a test CA, server and client certificates made with the openssl CLI;
- `scrape()`/`parse_metrics()`: GET /metrics and a strict parser of the text format;
- `Stream`: a bidirectional StreamCheckEntitlements driven one message at a time.

Run with Debian's interpreter (/usr/bin/python3): grpcio and protobuf are Debian packages.
"""
import argparse
import http.client
import importlib.util
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

# Before grpcio is imported: the suites fork entd and openssl while channels are open, which
# grpcio's fork handlers do not survive reliably (ctest sets it too).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # noqa: E402

# The integration harness's small process helpers (free port, health probe, PDEATHSIG, log
# tail); imported, not copied, and not edited.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

ARGS = None
pb = {}  # "types", "entitlement", "admin", "health", "refl_v1alpha", "refl_v1" -> module
TIMEOUT = 60  # seconds per call: generous, two cores shared with builds
TOKEN = "ops-admin-token"
CHECK = "/ent.v1.EntitlementService/CheckEntitlement"
BATCH = "/ent.v1.EntitlementService/BatchCheckEntitlements"
STREAM = "/ent.v1.EntitlementService/StreamCheckEntitlements"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


def log(msg):
    print("ops: " + msg, file=sys.stderr, flush=True)


def wait_for(pred, timeout=60, what="condition"):
    """Poll pred() until true. The timeout only bounds a failure: pass/fail is decided by the
    condition, never by how long it took."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


# ---- generated code ------------------------------------------------------------------------

def _load(out, rel, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(out, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def generate(proto_dir, protoc, out):
    """protoc --python_out for the contract and the reflection protos. Modules under the
    "grpc" package are loaded by path under other names (a top-level package "grpc" would
    shadow grpcio)."""
    os.makedirs(out, exist_ok=True)
    files = ["ent/v1/types.proto", "ent/v1/entitlement.proto", "ent/v1/admin.proto",
             "grpc/health/v1/health.proto", "grpc/reflection/v1alpha/reflection.proto",
             "grpc/reflection/v1/reflection.proto"]
    subprocess.run([protoc, "--python_out=" + out, "-I", proto_dir, "-I", "/usr/include"]
                   + [os.path.join(proto_dir, f) for f in files], check=True)
    sys.path.insert(0, out)
    from ent.v1 import admin_pb2, entitlement_pb2, types_pb2  # noqa: E402
    pb["types"], pb["entitlement"], pb["admin"] = types_pb2, entitlement_pb2, admin_pb2
    pb["health"] = _load(out, "grpc/health/v1/health_pb2.py", "entd_ops_health_pb2")
    pb["refl_v1alpha"] = _load(out, "grpc/reflection/v1alpha/reflection_pb2.py",
                               "entd_ops_refl_v1alpha_pb2")
    pb["refl_v1"] = _load(out, "grpc/reflection/v1/reflection_pb2.py", "entd_ops_refl_v1_pb2")


def setup(argv):
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--demo", required=True)
    ap.add_argument("--out", required=True, help="directory for the generated _pb2 modules")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ARGS, rest = ap.parse_known_args(argv)
    generate(ARGS.proto_dir, ARGS.protoc, ARGS.out)
    return rest


def main():
    rest = setup(sys.argv[1:])
    # SIGTERM (ctest timeout) unwinds through tearDown/finally like Ctrl-C, so daemons stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    unittest.main(module="__main__", argv=[sys.argv[0], "-v"] + rest)


# ---- processes -------------------------------------------------------------------------

def run_entd(args, env=None, timeout=120):
    """Run entd to completion (--check-config and friends): (status, stdout, stderr)."""
    p = subprocess.run([ARGS.entd] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout, preexec_fn=harness.die_with_parent)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class Daemon:
    """One entd on TMP/db (the demo imported) with a config file TMP/entd.yaml.

    `config` is YAML text with two placeholders filled here: {db} and {probe} (a free loopback
    port for the plain-text health-only listener used for readiness); `ports` names further
    free ports to allocate, available as {name} in the text and as self.ports[name].
    """

    def __init__(self, config, ports=(), args=(), env=None, demo=True, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="entd-ops-", dir="/tmp")
        self.db = os.path.join(self.tmp, "db")
        os.makedirs(self.db, exist_ok=True)
        self.logpath = os.path.join(self.tmp, "entd.log")
        self.cfgpath = os.path.join(self.tmp, "entd.yaml")
        self.template = config
        self.port_names = ["probe"] + list(ports)
        self.args = list(args)
        self.env = env
        self.proc = None
        self.failed = False
        self.expect_nonzero = False  # a test that kills or breaks it on purpose says so
        self.ports = {}
        if demo:
            p = subprocess.run([ARGS.entctl, "import", "--db", self.db, ARGS.demo],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
            if p.returncode != 0:
                raise RuntimeError("entctl import failed:\n" + p.stdout.decode())

    def path(self, name):
        return os.path.join(self.tmp, name)

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
        for attempt in range(3):
            self.ports = {n: harness.free_port() for n in self.port_names}
            self.write_config()
            cmd = [ARGS.entd, "--config", self.cfgpath] + self.args
            with open(self.logpath, "ab") as logf:
                logf.write(("---- ops: start attempt %d: %s\n" % (attempt + 1, " ".join(cmd)))
                           .encode())
                logf.flush()
                self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                             env=self.env, preexec_fn=harness.die_with_parent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if harness.serving(self.probe):
                    return self
                time.sleep(0.05)  # poll interval only; readiness is decided by the answer
            if self.proc.poll() is None:
                self.kill9()
                raise RuntimeError("entd not SERVING after %ds:\n%s" % (timeout, self.tail()))
            # Exited early: most likely a port was taken between free_port() and bind.
            log("entd exited with %s during start-up (attempt %d)"
                % (self.proc.returncode, attempt + 1))
        raise RuntimeError("entd did not start:\n" + self.tail())

    def hup(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def term(self):
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout=120):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def stop(self, timeout=120):
        """SIGTERM by PID; the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.term()
        return self.wait(timeout)

    def kill9(self):
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
        return harness.tail(self.logpath, n)

    def cleanup(self):
        if self.alive():
            self.kill9()
        if self.failed or ARGS.keep:
            log("kept %s (entd.log inside)" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class DaemonTest(unittest.TestCase):
    """Keeps each test's daemons' directories when the test fails."""

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


# ---- gRPC helpers ----------------------------------------------------------------------

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


# ---- TLS ---------------------------------------------------------------------------------

class Pki:
    """A test CA and certificates signed by it, made with the openssl CLI in \a dir."""

    def __init__(self, dir, name="ca"):
        self.dir = dir
        self.name = name
        self.ca_key = os.path.join(dir, name + ".key")
        self.ca_crt = os.path.join(dir, name + ".crt")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-days", "3", "-subj", "/CN=entd test %s" % name,
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                      "-keyout", self.ca_key, "-out", self.ca_crt)

    @staticmethod
    def _openssl(*args):
        p = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), p.stdout.decode()))

    def issue(self, stem, cn, serial, server=True):
        """Key and certificate stem.key / stem.crt; returns (crt, key) paths."""
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        crt = os.path.join(self.dir, stem + ".crt")
        ext = os.path.join(self.dir, stem + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
            if server:
                f.write("extendedKeyUsage=serverAuth\n"
                        "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-subj", "/CN=" + cn, "-keyout", key, "-out", csr)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
                      "-set_serial", str(serial), "-days", "2", "-extfile", ext, "-out", crt)
        return crt, key


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def replace_file(path, data):
    """Atomic replacement, as a Kubernetes Secret update or a careful operator does it."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def tls_creds(pki, client=None):
    """Channel credentials trusting \a pki's CA, with an optional (crt, key) client pair."""
    kw = {"root_certificates": read(pki.ca_crt)}
    if client:
        kw["certificate_chain"] = read(client[0])
        kw["private_key"] = read(client[1])
    return grpc.ssl_channel_credentials(**kw)


# ---- metrics -----------------------------------------------------------------------------

def http_get(port, path, timeout=30):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """Prometheus text format 0.0.4 into {(name, frozenset(labels.items())): value}, strictly:
    every sample line must parse, every family must have # TYPE before its samples, and the
    text must end with a newline."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    typed = {}
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            typed[name] = typ
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "unparsable sample line: %r" % line
        name, _, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert name in typed or family in typed, "sample before its # TYPE: %r" % line
        lab = {}
        if labels:
            pos = 0
            while pos < len(labels):
                lm = _LABEL.match(labels, pos)
                assert lm, "bad labels in %r" % line
                lab[lm.group(1)] = lm.group(2)
                pos = lm.end()
        key = (name, frozenset(lab.items()))
        assert key not in out, "duplicate series %r" % line
        out[key] = float(value)
    return out


def metric(samples, name, **labels):
    """The value of one series, or None."""
    return samples.get((name, frozenset(labels.items())))


def scrape(port):
    st, body = http_get(port, "/metrics")
    assert st == 200, "GET /metrics: %d %s" % (st, body[:200])
    return parse_metrics(body)
