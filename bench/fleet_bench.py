#!/usr/bin/python3
"""bench/fleet_bench.py: fleet mode figures (docs/performance.md, "Fleet mode"), driven by
bench/fleet.sh. One nats-server -js and three entd replicas on loopback; every process is
started here and stopped by its PID.

Figures, each with its method:
  visible    a write on one node -> visible on every other node: p50 / p99 (ms) of the time from
             sending the write to the first answer of a check with min_sequence = the write's
             sequence on the other node (polled; goal p99 <= 20 ms)
  apply      replica apply rate from the stream: a stopped replica restarts behind N events
             (ReportUsage written meanwhile) and applies them; events / time from its first
             status answer to reaching the head (goal >= 100,000 events/s)
  report / consume   ReportUsage and ConsumeEntitlement through the fleet: entbench against the
             three replicas at once; total calls/s and each replica's p99
  plan_change  check throughput and p99 on one replica while it applies plan changes that reach
             100,000 customers each, against a quiet run measured just before (goal >= 0.8x)
  bootstrap  a new replica with an empty directory and a 1,000,000-customer snapshot in NATS:
             time to SERVING (download, digest check, open, catch-up); and `entctl fleet
             snapshot fetch` alone

The seed database comes from `entctl generate` and enters the fleet as its first snapshot with
`entctl fleet snapshot publish --seed` (the stream must be empty then), as an operator moving an
existing database into a new fleet would.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "writepath"))
import harness  # noqa: E402
import wp  # noqa: E402

A = None
PROCS = []
# PR_SET_PDEATHSIG through setpriv(1), not harness's preexec_fn: with grpcio's threads running,
# Python code between fork and exec can deadlock the child (seen here: a replica that never
# started). As tests/integration/fleet/natsfix.py does.
PDEATHSIG = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
harness.die_with_parent = None


def log(msg):
    print("[fleet_bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(*cmd, timeout=3600):
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, out))
    return out


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i]


class Nats:
    def __init__(self, work):
        self.dir = os.path.join(work, "nats")
        os.makedirs(self.dir, exist_ok=True)
        self.port, self.http = free_port(), free_port()
        conf = os.path.join(self.dir, "nats.conf")
        with open(conf, "w") as f:
            f.write("listen: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n"
                    "jetstream {\n  store_dir: \"%s\"\n  max_file_store: 64GB\n"
                    "  max_memory_store: 256MB\n}\nmax_payload: 1MB\n"
                    % (self.port, self.http, os.path.join(self.dir, "js")))
        self.log = open(os.path.join(self.dir, "nats.log"), "ab")
        self.proc = subprocess.Popen(PDEATHSIG + [A.nats_server, "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        PROCS.append(self.proc)
        self.url = "nats://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                import http.client
                c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=1)
                c.request("GET", "/healthz?js-enabled-only=true")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nats-server did not come up")


class Replica(wp.Entd):
    def __init__(self, name, nats, stream, bucket, work, extra=()):
        self.name = name
        args = ["--fleet-nats", nats.url, "--fleet-stream", stream,
                "--fleet-subject", "entd." + stream.lower(),
                "--fleet-snapshot-bucket", bucket, "--log-level", "warn",
                "--map-size", "64G"] + list(extra)
        tmp = os.path.join(work, name)
        os.makedirs(tmp, exist_ok=True)
        super().__init__(tmp=tmp, extra_args=args, prefix=PDEATHSIG)

    def start(self, timeout=3600):
        super().start(timeout)
        PROCS.append(self.proc)
        return self

    def spawn(self):
        """Start without waiting for SERVING (readiness waits for a catch-up being timed)."""
        self.tcp = "127.0.0.1:%d" % harness.free_port()
        cmd = self.prefix + [A.entd, "--db", self.db, "--listen", self.tcp, "--listen",
                             self.unix, "--admin-token", self.token] + self.extra_args
        with open(self.logpath, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        PROCS.append(self.proc)

    def seq(self):
        with self.api() as api:
            return api.status().sequence

    def wipe(self):
        shutil.rmtree(self.db, ignore_errors=True)
        os.makedirs(self.db, exist_ok=True)


def _api_enter(self):
    return self


def _api_exit(self, *exc):
    self.close()


wp.Api.__enter__ = _api_enter
wp.Api.__exit__ = _api_exit


def entbench(target, mode, duration, extra=(), label=""):
    out = os.path.join(A.work, "eb-%s-%d.json" % (mode, int(time.time() * 1000)))
    cmd = [A.entbench, "--target", target, "--mode", mode, "--duration", str(duration),
           "--warmup", "1", "--customers", str(A.customers), "--connections", "2",
           "--inflight", "8", "--quiet", "--json", out, "--label", label] + list(extra)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=duration + 600)
    with open(out) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def seed_db(customers, plans):
    path = os.path.join(A.cache, "fleet-seed-%d-p%d" % (customers, plans))
    if not os.path.exists(os.path.join(path, ".complete")):
        shutil.rmtree(path, ignore_errors=True)
        log("generating %d customers (%d plan%s) into %s" % (
            customers, plans, "" if plans == 1 else "s", path))
        run(A.entctl, "generate", "--db", path, "--customers", str(customers), "--plans",
            str(plans), "--map-size", "64G")
        open(os.path.join(path, ".complete"), "w").close()
    return path


def start_fleet(nats, stream, bucket, seed, n):
    """Create the stream with one replica, seed it with \a seed as its first snapshot, then
    start \a n replicas from empty directories (each bootstraps from the seed)."""
    first = Replica("%s-init" % stream.lower(), nats, stream, bucket, A.work)
    first.start()
    assert first.stop() == 0
    shutil.rmtree(first.tmp, ignore_errors=True)
    t0 = time.monotonic()
    out = run(A.entctl, "fleet", "snapshot", "publish", "--seed", "--db", seed, "--nats",
              nats.url, "--bucket", bucket, "--stream", stream, "--tmp", A.work)
    log("seed published in %.1f s: %s" % (time.monotonic() - t0, out.strip()))
    reps = []
    for i in range(n):
        r = Replica("%s-e%d" % (stream.lower(), i + 1), nats, stream, bucket, A.work)
        t0 = time.monotonic()
        r.start()
        log("%s SERVING after %.1f s" % (r.name, time.monotonic() - t0))
        reps.append(r)
    return reps


# ---- the measurements --------------------------------------------------------------------

def m_visible(reps, n):
    e, ad = wp.pb["entitlement"], wp.pb["admin"]
    apis = [r.api() for r in reps]
    lat, ack = [], []
    try:
        for i in range(n):
            w = i % len(reps)
            cust = "cus_%d" % (i * 7919 % A.customers)
            req = ad.SetCustomerEntitlementRequest(
                customer_id=cust, feature_code="f_boolean_0",
                value=wp.pb["types"].OverrideValue(bool_value=(i % 2 == 0)),
                reason="bench %d" % i)
            t0 = time.perf_counter()
            resp = apis[w].SetCustomerEntitlement(req)
            ack.append((time.perf_counter() - t0) * 1000)
            seq = resp.sequence
            for j, api in enumerate(apis):
                if j == w:
                    continue
                while True:
                    try:
                        api.CheckEntitlement(e.CheckEntitlementRequest(
                            customer_id=cust, feature_code="f_boolean_0",
                            min_sequence=seq), timeout=5)
                        break
                    except wp.grpc.RpcError as ex:
                        if ex.code() != wp.grpc.StatusCode.UNAVAILABLE:
                            raise
                lat.append((time.perf_counter() - t0) * 1000)
    finally:
        for a in apis:
            a.close()
    return {"samples": len(lat), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "max_ms": max(lat), "write_ack_p50_ms": pct(ack, 50), "write_ack_p99_ms": pct(ack, 99)}


def m_apply(reps, duration):
    lag = reps[-1]
    assert lag.stop() == 0
    before = reps[0].seq()
    eb = entbench(reps[0].tcp, "report", duration, ["--features", "f_metered_0,f_metered_1"],
                  "apply-load")
    head = reps[0].seq()
    events = head - before
    t_start = time.monotonic()
    lag.spawn()
    first, first_seq, done = None, None, None
    deadline = t_start + 1800
    while time.monotonic() < deadline:
        if lag.proc.poll() is not None:
            raise RuntimeError("the restarted replica exited:\n" + lag.tail())
        try:
            s = lag.seq()
        except Exception:  # noqa: BLE001  (not listening yet)
            s = None
        now = time.monotonic()
        if s is not None and first is None:
            first, first_seq = now, s
        if s is not None and s >= head:
            done = now
            break
        time.sleep(0.002)
    if done is None:
        raise RuntimeError("the restarted replica did not catch up:\n" + lag.tail())
    applied = head - first_seq
    secs = done - first
    return {"events_written": events, "write_calls_per_s": eb["calls_per_s"],
            "applied_measured": applied, "seconds": secs,
            "events_per_s": applied / secs if secs > 0 else float("nan"),
            "restart_to_caught_up_s": done - t_start}


def m_writes(reps, mode, duration):
    res = [None] * len(reps)

    def one(i):
        res[i] = entbench(reps[i].tcp, mode, duration,
                          ["--features", "f_metered_0,f_metered_1", "--seed", str(i + 1)],
                          "%s-%d" % (mode, i))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(len(reps))]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return {"total_calls_per_s": sum(r["calls_per_s"] for r in res),
            "p50_us": [r["latency_us"]["p50"] for r in res],
            "p99_us": [r["latency_us"]["p99"] for r in res],
            "status": [r["status"] for r in res]}


def m_plan_change(reps, duration):
    ad = wp.pb["admin"]
    target = reps[1]
    feats = ["f_metered_0", "f_metered_1", "f_boolean_0"]
    quiet = entbench(target.tcp, "unary", duration, ["--features", ",".join(feats)], "quiet")
    stop = threading.Event()
    changes = []

    def writer():
        # Each patch of plan_0 (every customer of the seed is on it) recomputes all their
        # aggregates on every replica, in one transaction each.
        with reps[0].api() as api:
            i = 0
            while not stop.is_set():
                req = ad.SetEntitlementsRequest(code="plan_0")
                g = req.entitlements.add()
                g.feature_code = "f_metered_0"
                g.usage_limit = 1000 + i
                t0 = time.perf_counter()
                r = api.PatchPlanEntitlements(req, timeout=600)
                changes.append((time.perf_counter() - t0, r.sequence))
                i += 1
    th = threading.Thread(target=writer)
    th.start()
    busy = entbench(target.tcp, "unary", duration, ["--features", ",".join(feats)], "busy")
    stop.set()
    th.join()
    return {"quiet_calls_per_s": quiet["calls_per_s"], "busy_calls_per_s": busy["calls_per_s"],
            "ratio": busy["calls_per_s"] / quiet["calls_per_s"],
            "quiet_p99_us": quiet["latency_us"]["p99"], "busy_p99_us": busy["latency_us"]["p99"],
            "plan_changes": len(changes),
            "plan_change_ack_s": [round(c[0], 3) for c in changes]}


def m_bootstrap(nats, customers):
    seed = seed_db(customers, 4)
    stream, bucket = "ENTD_BOOT", "entd_boot"
    first = Replica("boot-init", nats, stream, bucket, A.work)
    first.start()
    assert first.stop() == 0
    shutil.rmtree(first.tmp, ignore_errors=True)
    t0 = time.monotonic()
    out = run(A.entctl, "fleet", "snapshot", "publish", "--seed", "--db", seed, "--nats",
              nats.url, "--bucket", bucket, "--stream", stream, "--tmp", A.work)
    publish_s = time.monotonic() - t0
    log("1M seed published in %.1f s: %s" % (publish_s, out.strip()))
    fetch_dir = os.path.join(A.work, "boot-fetch")
    t0 = time.monotonic()
    run(A.entctl, "fleet", "snapshot", "fetch", "--db", fetch_dir, "--nats", nats.url,
        "--bucket", bucket)
    fetch_s = time.monotonic() - t0
    shutil.rmtree(fetch_dir, ignore_errors=True)
    r = Replica("boot-new", nats, stream, bucket, A.work)
    t0 = time.monotonic()
    r.start()
    serving_s = time.monotonic() - t0
    size = os.path.getsize(os.path.join(r.db, "data.mdb"))
    assert r.stop() == 0
    shutil.rmtree(r.tmp, ignore_errors=True)
    return {"customers": customers, "snapshot_bytes": size, "publish_s": publish_s,
            "fetch_s": fetch_s, "start_to_serving_s": serving_s}


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--entbench", required=True)
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "/usr/sbin/nats-server")
    ap.add_argument("--proto-dir", default=os.path.join(ROOT, "proto"))
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--cache", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--customers", type=int, default=100000)
    ap.add_argument("--bootstrap-customers", type=int, default=1000000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--visible-samples", type=int, default=300)
    ap.add_argument("--only", default="visible,apply,report,consume,plan_change,bootstrap")
    ap.add_argument("--json", default=None)
    A = ap.parse_args()
    os.makedirs(A.cache, exist_ok=True)
    A.work = tempfile.mkdtemp(prefix="entd-fleet-bench-", dir=os.environ.get("TMPDIR", "/tmp"))
    # harness (the fixture wp re-exports) reads its own ARGS: set both names.
    wp.ARGS = harness.ARGS = argparse.Namespace(entd=A.entd, entctl=A.entctl, keep=False)
    wp.generate(A.proto_dir, A.protoc, os.path.join(A.work, "py"))
    only = set(A.only.split(","))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
           "customers": A.customers}
    reps = []
    try:
        nats = Nats(A.work)
        if only & {"visible", "apply", "report", "consume", "plan_change"}:
            seed = seed_db(A.customers, 1)
            reps = start_fleet(nats, "ENTD_BENCH", "entd_bench", seed, 3)
            if "visible" in only:
                out["visible"] = m_visible(reps, A.visible_samples)
                log("visible: %s" % out["visible"])
            if "report" in only:
                out["report"] = m_writes(reps, "report", A.duration)
                log("report: %s" % out["report"])
            if "consume" in only:
                out["consume"] = m_writes(reps, "consume", A.duration)
                log("consume: %s" % out["consume"])
            if "plan_change" in only:
                out["plan_change"] = m_plan_change(reps, A.duration)
                log("plan_change: %s" % {k: v for k, v in out["plan_change"].items()
                                         if k != "plan_change_ack_s"})
            if "apply" in only:
                out["apply"] = m_apply(reps, A.duration)
                log("apply: %s" % out["apply"])
            for r in reps:
                r.stop()
        if "bootstrap" in only and A.bootstrap_customers > 0:
            out["bootstrap"] = m_bootstrap(nats, A.bootstrap_customers)
            log("bootstrap: %s" % out["bootstrap"])
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in PROCS:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(A.work, ignore_errors=True)
    text = json.dumps(out, indent=1, sort_keys=True)
    print(text)
    if A.json:
        with open(A.json, "a") as f:
            f.write(json.dumps(out, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
