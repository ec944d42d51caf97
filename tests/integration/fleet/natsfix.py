#!/usr/bin/python3
"""Fixtures of the fleet suites (tests/integration/fleet/): real nats-server processes and entd
replicas in fleet mode.

- `Nats`: one `nats-server -js` on free loopback ports (client, monitoring, and cluster when it
  is part of a cluster) with its own temporary store directory and config file; start (waits
  for the monitoring port's /healthz?js-enabled=true to answer 200, i.e. JetStream is up and,
  in a cluster, current with its meta group), stop (SIGTERM), kill9, restart on the same store
  and ports. The child gets PR_SET_PDEATHSIG, so no server outlives a killed test.
- `Cluster`: three `Nats` with routes to each other on loopback (cluster name "entd-test"),
  urls() for the entd config, wait_ready() until every node reports JetStream healthy.
- `single()` / `cluster3()`: the common set-ups.
- `replicas(n, nats_urls, ...)`: n `wp.Entd` started with the fleet flags; `FleetEntd` is
  wp.Entd plus the fleet options (stream name, extra flags) and helpers to read its status.

Run with Debian's interpreter (/usr/bin/python3): grpcio and protobuf are Debian packages;
nats-server is Debian's `nats-server` package (deploy/dev.sh installs it).
"""
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, ".."))
sys.path.insert(0, os.path.join(_here, "..", "writepath"))
import harness  # noqa: E402
import wp  # noqa: E402

# PR_SET_PDEATHSIG through setpriv(1) (util-linux), not a preexec_fn: these suites run
# grpcio's threads, and Python code between fork and exec in a threaded process can deadlock or
# abort the child (seen: nats-server and entd dying with SIGABRT before exec). So harness's
# preexec hook is switched off for every process started from here, wp.Entd's included.
PDEATHSIG = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
harness.die_with_parent = None

NATS_SERVER = os.environ.get("ENT_NATS_SERVER") or shutil.which("nats-server") or \
    "/usr/sbin/nats-server"
KEEP = os.environ.get("ENT_FLEET_KEEP") == "1"


def log(msg):
    print("natsfix: " + msg, file=sys.stderr, flush=True)


def _free_ports(n):
    """n distinct free loopback ports (held open together so they differ)."""
    import socket
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def http_get(port, path, timeout=2):
    """(status, body) of GET http://127.0.0.1:port/path, or (None, error text)."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError as e:
        return None, str(e).encode()


class Nats:
    """One nats-server with JetStream on loopback. Ports and store survive restarts."""

    def __init__(self, name="n1", tmp=None, cluster_port=None, routes=(), cluster_name=None,
                 extra_conf=""):
        self.name = name
        self.tmp = tmp or tempfile.mkdtemp(prefix="entd-nats-", dir="/tmp")
        self.store = os.path.join(self.tmp, "js")
        os.makedirs(self.store, exist_ok=True)
        self.port, self.http_port = _free_ports(2)
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.cluster_name = cluster_name
        self.extra_conf = extra_conf
        self.conf = os.path.join(self.tmp, "nats.conf")
        self.logpath = os.path.join(self.tmp, "nats.log")
        self.proc = None
        self.failed = False

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def write_conf(self):
        lines = [
            'server_name: "%s"' % self.name,
            "listen: 127.0.0.1:%d" % self.port,
            "http: 127.0.0.1:%d" % self.http_port,
            "jetstream {",
            '  store_dir: "%s"' % self.store,
            "  max_memory_store: 64MB",
            "  max_file_store: 1GB",
            "}",
        ]
        if self.cluster_port:
            lines += [
                "cluster {",
                '  name: "%s"' % (self.cluster_name or "entd-test"),
                "  listen: 127.0.0.1:%d" % self.cluster_port,
                "  routes: [%s]" % ", ".join("nats-route://127.0.0.1:%d" % p
                                             for p in self.routes),
                "}",
            ]
        if self.extra_conf:
            lines.append(self.extra_conf)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def spawn(self):
        assert not self.alive(), "already running"
        self.write_conf()
        with open(self.logpath, "ab") as logf:
            logf.write(("---- natsfix: start %s\n" % self.name).encode())
            logf.flush()
            self.proc = subprocess.Popen(PDEATHSIG + [NATS_SERVER, "-c", self.conf],
                                         stdout=logf, stderr=subprocess.STDOUT)
        return self

    def healthy(self):
        """True when /healthz?js-enabled=true answers 200 (JetStream up and current)."""
        status, _ = http_get(self.http_port, "/healthz?js-enabled=true")
        return status == 200

    def jsz(self):
        status, body = http_get(self.http_port, "/jsz")
        if status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("nats-server %s exited (%s):\n%s" % (
                    self.name, self.proc.returncode, self.tail()))
            if self.healthy():
                return self
            time.sleep(0.05)  # poll interval only
        raise RuntimeError("nats-server %s not healthy after %ds:\n%s" % (
            self.name, timeout, self.tail()))

    def start(self, timeout=60):
        """Start and wait for JetStream (single server). Cluster members: Cluster.start()."""
        self.spawn()
        return self.wait_ready(timeout)

    def stop(self, grace=30):
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def kill9(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, timeout=60):
        self.stop()
        return self.start(timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=40):
        return harness.tail(self.logpath, n)

    def cleanup(self):
        self.kill9()
        if self.failed or KEEP:
            log("kept %s (nats.log inside)" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Cluster:
    """Three nats-servers routed to each other on loopback; JetStream R3 capable."""

    def __init__(self, n=3, name="entd-test"):
        cports = _free_ports(n)
        self.nodes = []
        for i in range(n):
            self.nodes.append(Nats(name="n%d" % (i + 1), cluster_port=cports[i],
                                   routes=[p for j, p in enumerate(cports) if j != i],
                                   cluster_name=name))

    def urls(self):
        return [x.url for x in self.nodes]

    def start(self, timeout=90):
        for x in self.nodes:
            x.spawn()
        return self.wait_ready(timeout)

    def wait_ready(self, timeout=90):
        """Every running node healthy and one meta leader known."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [x for x in self.nodes if x.alive()]
            if up and all(x.healthy() for x in up):
                z = up[0].jsz()
                if z and (z.get("meta_cluster") or {}).get("leader"):
                    return self
            time.sleep(0.1)  # poll interval only
        raise RuntimeError("cluster not ready after %ds:\n%s" % (
            timeout, "\n".join("%s:\n%s" % (x.name, x.tail(15)) for x in self.nodes)))

    def stream_leader(self, stream):
        """Name of the server leading \a stream ("n1".."n3"), or None."""
        for x in self.nodes:
            if not x.alive():
                continue
            status, body = http_get(x.http_port, "/jsz?streams=true&accounts=true")
            if status != 200:
                continue
            try:
                z = json.loads(body)
            except ValueError:
                continue
            for acc in z.get("account_details") or []:
                for s in acc.get("stream_detail") or []:
                    if s.get("name") == stream:
                        leader = (s.get("cluster") or {}).get("leader")
                        if leader:
                            return leader
        return None

    def node(self, name):
        return next(x for x in self.nodes if x.name == name)

    def cleanup(self):
        for x in self.nodes:
            x.cleanup()

    @property
    def failed(self):
        return any(x.failed for x in self.nodes)

    @failed.setter
    def failed(self, v):
        for x in self.nodes:
            x.failed = v


def single(timeout=60):
    return Nats().start(timeout)


def cluster3(timeout=90):
    return Cluster(3).start(timeout)


# ---- entd replicas -----------------------------------------------------------------------

def fleet_args(urls, stream="ENTD_EVENTS", replicas=1, extra=()):
    """The entd flags of fleet mode (docs/configuration.md, fleet.*)."""
    args = ["--fleet-nats", ",".join(urls), "--fleet-stream", stream,
            "--fleet-replicas", str(replicas)]
    return args + list(extra)


class FleetEntd(wp.Entd):
    """wp.Entd in fleet mode: the NATS urls, stream and extra flags are kept so restart() after
    kill9() starts the same replica on the same directory."""

    def __init__(self, urls, stream="ENTD_EVENTS", replicas=1, extra=(), tmp=None, name=""):
        self.name = name
        self.urls = list(urls)
        super().__init__(tmp=tmp, extra_args=fleet_args(urls, stream, replicas, extra),
                         prefix=PDEATHSIG)

    def restart(self, timeout=120):
        self.kill9()
        return self.start(timeout)

    def sequence(self):
        """The replica's applied stream sequence (GetStatus)."""
        with self.api() as a:
            return a.status().sequence


def replicas(n, urls, stream="ENTD_EVENTS", replicas_=1, extra=(), start=True, timeout=120):
    """n FleetEntd on the same stream, started one after the other (each waits for SERVING)."""
    out = [FleetEntd(urls, stream, replicas_, extra, name="e%d" % (i + 1)) for i in range(n)]
    if start:
        try:
            for e in out:
                e.start(timeout)
        except Exception:
            for e in out:
                e.failed = True
                e.cleanup()
            raise
    return out


def wait_sequence(ents, seq, timeout=60):
    """Poll until every replica in \a ents reports an applied sequence >= seq."""
    def ok():
        return all(e.sequence() >= seq for e in ents if e.alive())
    if not wp.wait_until(ok, timeout, interval=0.05):
        raise AssertionError("replicas did not reach sequence %d in %ds: %s" % (
            seq, timeout, [e.sequence() if e.alive() else None for e in ents]))


if __name__ == "__main__":
    # Self-test of the fixture alone: a single server and a cluster come up, go down by PID,
    # and come back on the same store.
    n = single()
    print("single:", n.url, "pid", n.pid, "healthy", n.healthy())
    n.kill9()
    assert not n.healthy()
    n.start()
    print("restarted:", n.healthy())
    n.cleanup()
    c = cluster3()
    print("cluster:", c.urls(), "meta leader",
          c.nodes[0].jsz().get("meta_cluster", {}).get("leader"))
    c.nodes[1].kill9()
    c.nodes[1].start(90)
    c.wait_ready()
    print("cluster node n2 restarted, ready")
    c.cleanup()


# ---- shared by the suites --------------------------------------------------------------------

class FleetCase(wp.Statuses, unittest.TestCase):
    """Helpers of the fleet suites: calls with retries where the fleet is asynchronous
    (min_sequence on another replica), and the state comparisons."""

    def check_at(self, e, customer, feature, min_sequence=0, at=0, timeout=60):
        """CheckEntitlement on replica e with min_sequence, retried while the replica answers
        UNAVAILABLE "older than min_sequence" (it has not applied it yet)."""
        import grpc
        deadline = time.monotonic() + timeout
        with e.api() as a:
            while True:
                try:
                    return a.check(customer, feature, at=at, min_sequence=min_sequence)
                except grpc.RpcError as ex:
                    if ex.code() != grpc.StatusCode.UNAVAILABLE or \
                            time.monotonic() > deadline:
                        raise
                time.sleep(0.02)

    def snapshot_of(self, e, customers, at):
        """Everything a caller can read from replica e at instant `at`: the export document
        and every customer's entitlements (serialized), plus the sequence they were read at."""
        ent = wp.pb["entitlement"]
        with e.api() as a:
            ex = a.export()
            answers = []
            for c in customers:
                r = a.GetCustomerEntitlements(ent.GetCustomerEntitlementsRequest(
                    customer_id=c, at=at))
                answers.append((c, r.sequence, r.features))
            return ex.sequence, ex.json, [(c, list(f)) for c, _, f in answers]

    def assert_identical(self, ents, customers, at):
        """Every replica, once at the same sequence, gives the same export and answers."""
        seqs = [e.sequence() for e in ents]
        head = max(seqs)
        wait_sequence(ents, head)
        snaps = [self.snapshot_of(e, customers, at) for e in ents]
        for i, s in enumerate(snaps[1:], 1):
            self.assertEqual(s[0], snaps[0][0], "replica %d exported at another sequence" % i)
            self.assertEqual(s[1], snaps[0][1], "replica %d: export differs" % i)
            self.assertEqual(s[2], snaps[0][2], "replica %d: answers differ" % i)
        return snaps[0]


@contextlib.contextmanager
def owned(nats, ents):
    """For a with-block: own a NATS fixture (single server or cluster) and the list of replicas
    the block fills (`ents += replicas(...)`). An exception marks them all failed (their
    files are kept for the post-mortem) and goes on; at the end every replica is stopped and
    removed, then NATS."""
    try:
        yield ents
    except Exception:
        nats.failed = True
        for e in ents:
            e.failed = True
        raise
    finally:
        for e in ents:
            e.stop()
            e.cleanup()
        nats.cleanup()


class ThreeReplicas(FleetCase):
    """A FleetCase whose class starts three replicas (cls.ents, named e1..e3) on one
    nats-server (cls.nats) once, and stops them at the end. With REQUIRE_CLEAN_EXIT the class
    fails unless every entd exits 0 after SIGTERM."""

    REQUIRE_CLEAN_EXIT = False

    @classmethod
    def setUpClass(cls):
        cls.nats = single()
        try:
            cls.ents = replicas(3, [cls.nats.url])
        except Exception:
            cls.nats.failed = True
            cls.nats.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        failed = False
        for e in cls.ents:
            if e.stop() != 0 and cls.REQUIRE_CLEAN_EXIT:
                failed = True
                e.failed = True
            e.cleanup()
        cls.nats.cleanup()
        assert not failed, "an entd did not exit 0 after SIGTERM"


def status(e):
    with e.api() as a:
        return a.status()


def run_entd(args, timeout=60):
    """entd with \a args on a fresh directory, for settings it must refuse at start; returns
    (exit status, output). It must exit by itself within \a timeout."""
    tmp = tempfile.mkdtemp(prefix="entd-flrun-", dir="/tmp")
    try:
        cmd = [wp.ARGS.entd, "--db", os.path.join(tmp, "db"), "--listen",
               "127.0.0.1:%d" % harness.free_port()] + list(args)
        p = subprocess.Popen(PDEATHSIG + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # A hang is a finding: say where each thread of entd waits before killing it.
            where = _threads_of(p.pid)
            p.kill()
            out, _ = p.communicate()
            raise AssertionError("entd %s did not exit within %ds; its threads: %s\noutput:\n%s"
                                 % (" ".join(args), timeout, where,
                                    out.decode(errors="replace")))
        return p.returncode, out.decode(errors="replace")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _threads_of(pid):
    """Each thread of process \a pid: name, state and kernel wait channel (for a hang)."""
    out = []
    try:
        for tid in sorted(os.listdir("/proc/%d/task" % pid)):
            base = "/proc/%d/task/%s/" % (pid, tid)
            try:
                with open(base + "comm") as f:
                    comm = f.read().strip()
                with open(base + "stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(base + "wchan") as f:
                    wchan = f.read().strip()
            except OSError:
                continue
            out.append("%s %s %s %s" % (tid, comm, state, wchan))
    except OSError as ex:
        return "unreadable (%s)" % ex
    return "; ".join(out)


def raw_publish(nats_port, subject, payload, headers=None):
    """Publish bytes on a subject over the plain NATS protocol (no client library needed):
    CONNECT, then HPUB/PUB, then PING to learn it was processed. JetStream stores it."""
    import socket
    s = socket.create_connection(("127.0.0.1", nats_port), timeout=10)
    f = s.makefile("rb")
    f.readline()  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
    if headers:
        h = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                                      for k, v in headers.items()) + b"\r\n"
        s.sendall(b"HPUB %s %d %d\r\n" % (subject.encode(), len(h), len(h) + len(payload))
                  + h + payload + b"\r\n")
    else:
        s.sendall(b"PUB %s %d\r\n" % (subject.encode(), len(payload)) + payload + b"\r\n")
    s.sendall(b"PING\r\n")
    while True:
        line = f.readline()
        if not line or line.startswith(b"PONG") or line.startswith(b"-ERR"):
            break
    s.close()
    return line


GO = shutil.which("go") or "/usr/bin/go"
GOPATH = "/usr/share/gocode"  # Debian's Go library packages live here (GOPATH mode)


def build_go_tool(name, out):
    """Build the Go test tool tests/integration/fleet/<name>/main.go into out/<name> with
    Debian's go and its Go library packages (GOPATH mode, offline); returns its path."""
    exe = os.path.join(out, name)
    if not os.path.exists(GO):
        raise RuntimeError("go not found: deploy/dev.sh installs golang-go and the "
                           "golang-github-nats-io-* packages the fleet suites build with")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="",
               GOCACHE=os.path.join(out, "gocache"), CGO_ENABLED="0")
    subprocess.run([GO, "build", "-o", exe, os.path.join(_here, name, "main.go")],
                   check=True, env=env, timeout=600)
    return exe

def setup_catalog(admin, plan_limit=1000, hard=True):
    """Features, a plan, an add-on: the base every suite writes on."""
    t, a = wp.pb["types"], wp.pb["admin"]
    admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
        code="fl_units", type=t.FEATURE_TYPE_METERED)))
    admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
        code="fl_flag", type=t.FEATURE_TYPE_BOOLEAN)))
    admin.SetPlanEntitlements(a.SetEntitlementsRequest(code="fl_plan", entitlements=[
        t.Grant(feature_code="fl_units", usage_limit=plan_limit, is_soft_limit=not hard,
                usage_reset_period=t.RESET_PERIOD_NEVER),
        t.Grant(feature_code="fl_flag")]))
    return admin.SetAddonEntitlements(a.SetEntitlementsRequest(code="fl_addon", entitlements=[
        t.Grant(feature_code="fl_units", usage_limit=10,
                usage_reset_period=t.RESET_PERIOD_NEVER)]))


def subscribe(admin, customer, plan="fl_plan"):
    t, a = wp.pb["types"], wp.pb["admin"]
    return admin.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
        id="sub_" + customer, customer_id=customer, plan_code=plan)))


def main():
    wp.main()
