#!/usr/bin/python3
"""bench/fleet_apply.py: the replica apply rate from the stream, with the environment's flush
mode as the variable (docs/fleet.md "Flush", docs/performance.md "Fleet mode").

One nats-server -js on loopback. The stream is filled *directly* with N serialized ent.v1.Event
messages (a feature, a plan, C subscriptions, then ReportUsage events with unique keys, each
stamped once) over the plain NATS protocol, so the figure is the replica's, not a publisher's.
Then, for each mode, a replica starts on an empty directory and applies the whole stream; the
rate is messages / (time from its first status answer to reaching the head); readiness waits for
that catch-up, so the first answer comes once it is done: the time is measured from the
process start instead, minus the start-up of the same replica against an empty stream (measured
in the same run). Modes alternate (A B A B ...) to spread drift.

    bench/fleet_apply.py --entd build/entd --events 200000 [--rounds 2]
    bench/fleet_apply.py --entd build/entd --base-entd /tmp/base/build/entd --events 100000

With --base-entd (another build, e.g. of main) both binaries run in every round, alternating
(base, new, base, new ... per mode), and the ratio new / base of the medians is printed: the
before/after of a change measured in the same run, on the same stream and host.

Every process is started here and stopped by its PID.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402


def free_port():
    return harness.free_port()


def gen(proto_dir, out):
    os.makedirs(out, exist_ok=True)
    subprocess.run(["protoc", "--python_out=" + out, "-I", proto_dir, "-I", "/usr/include"]
                   + [os.path.join(proto_dir, "ent/v1/%s.proto" % f)
                      for f in ("types", "entitlement", "admin", "event")], check=True)
    sys.path.insert(0, out)
    from ent.v1 import admin_pb2, entitlement_pb2, event_pb2, types_pb2  # noqa
    return types_pb2, admin_pb2, entitlement_pb2, event_pb2


def events(pb, customers, n):
    t, a, e, ev = pb
    now = int(time.time() * 1000)
    yield ev.Event(at=now, upsert_feature=t.Feature(code="u", type=t.FEATURE_TYPE_METERED))
    yield ev.Event(at=now, set_plan=a.SetEntitlementsRequest(code="p", entitlements=[
        t.Grant(feature_code="u", unlimited=True, usage_reset_period=t.RESET_PERIOD_NEVER)]))
    for i in range(customers):
        yield ev.Event(at=now, upsert_subscription=t.Subscription(
            id="s", customer_id="c%d" % i, plan_code="p"))
    for i in range(n):
        yield ev.Event(at=now, report_usage=e.ReportUsageRequest(
            customer_id="c%d" % (i % customers), feature_code="u", quantity=1,
            idempotency_key="k%d" % i))


def publish_all(port, subject, msgs):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    buf = []
    n = 0
    for m in msgs:
        b = m.SerializeToString()
        buf.append(b"PUB %s %d\r\n%s\r\n" % (subject, len(b), b))
        n += 1
        if len(buf) >= 2000:
            s.sendall(b"".join(buf))
            buf = []
            # Pace the publisher: a PING round trip per 2000 messages lets JetStream keep up.
            s.sendall(b"PING\r\n")
            while not f.readline().startswith(b"PONG"):
                pass
    s.sendall(b"".join(buf) + b"PING\r\n")
    while not f.readline().startswith(b"PONG"):
        pass
    s.close()
    return n


def stream_msgs(http_port, name):
    import json
    import urllib.request
    z = json.load(urllib.request.urlopen(
        "http://127.0.0.1:%d/jsz?streams=true&accounts=true" % http_port))
    for acc in z.get("account_details") or []:
        for st in acc.get("stream_detail") or []:
            if st["name"] == name:
                return st["state"]["messages"], st["state"]["last_seq"]
    return 0, 0


RUN_STATS = []


def run_replica(entd, url, work, extra):
    """Start a replica on an empty directory; seconds until it answers Health SERVING (which
    it does only once caught up with the head seen at start)."""
    d = tempfile.mkdtemp(dir=work)
    addr = "127.0.0.1:%d" % free_port()
    mport = free_port()
    t0 = time.monotonic()
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", entd, "--db", d, "--listen",
                          addr, "--fleet-nats", url, "--fleet-snapshot-interval-ms", "0",
                          "--metrics-listen", "127.0.0.1:%d" % mport]
                         + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not harness.serving(addr):
            if p.poll() is not None:
                raise RuntimeError("entd exited %s" % p.returncode)
            time.sleep(0.005)
        el = time.monotonic() - t0
        import urllib.request
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport).read().decode()
        m = dict(ln.split()[:2] for ln in body.splitlines()
                 if ln.startswith("entd_writer_commits_total ")
                 or ln.startswith("entd_writer_events_total "))
        RUN_STATS.append(m)
        return el
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def start_nats(work):
    """nats-server -js on free loopback ports with its store in work/js, once its monitoring
    port answers; returns (process, client port, monitoring port). Stop it by its PID."""
    port, http = free_port(), free_port()
    nats = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", "nats-server", "-js",
                             "-a", "127.0.0.1", "-p", str(port), "-m", str(http), "-sd",
                             os.path.join(work, "js")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            socket.create_connection(("127.0.0.1", http)).close()
            return nats, port, http
        except OSError:
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base-entd", help="a reference build, alternated with --entd")
    ap.add_argument("--modes", default="nometasync,full_sync")
    ap.add_argument("--proto-dir", default=os.path.join(ROOT, "proto"))
    A = ap.parse_args()
    work = tempfile.mkdtemp(prefix="entd-fleet-apply-")
    pb = gen(A.proto_dir, os.path.join(work, "py"))
    nats, port, http = start_nats(work)
    url = "nats://127.0.0.1:%d" % port
    try:
        # The stream, created by a replica with the defaults (and its start-up time, empty).
        bins = [("new", A.entd)] + ([("base", A.base_entd)] if A.base_entd else [])
        empty = {b: min(run_replica(path, url, work, []) for _ in range(3)) for b, path in bins}
        t0 = time.monotonic()
        total = publish_all(port, b"entd.events", events(pb, A.customers, A.events))
        while stream_msgs(http, "ENTD_EVENTS")[0] < total:
            time.sleep(0.05)
        print("stream: %d messages in %.1f s; empty-stream start-up %s; load average %s" % (
            total, time.monotonic() - t0,
            ", ".join("%s %.3f s" % (b, empty[b]) for b, _ in bins),
            " ".join(open("/proc/loadavg").read().split()[:3])), flush=True)
        all_modes = {"nometasync": [], "full_sync": ["--fleet-full-sync"]}
        modes = [(m, all_modes[m]) for m in A.modes.split(",")]
        res = {(b, m): [] for b, _ in bins for m, _ in modes}
        for r in range(A.rounds):
            for mode, extra in modes:
                # Alternate which binary goes first from round to round.
                order = bins if r % 2 == 0 else bins[::-1]
                for b, path in order:
                    s = run_replica(path, url, work, extra) - empty[b]
                    res[(b, mode)].append(total / s)
                    st = RUN_STATS[-1]
                    commits = float(st.get("entd_writer_commits_total", "nan"))
                    print("round %d %-4s %-10s %.2f s  %.0f events/s  (%d commits, %.0f "
                          "messages per commit)" % (r + 1, b, mode, s, total / s, commits,
                                                    total / commits), flush=True)
        med = {}
        for (b, mode), v in res.items():
            v.sort()
            med[(b, mode)] = v[len(v) // 2]
            print("%-4s %-10s median %.0f events/s (%s)" % (
                b, mode, med[(b, mode)], ", ".join("%.0f" % x for x in v)))
        if A.base_entd:
            for mode, _ in modes:
                print("%-10s new / base = %.2f" % (mode, med[("new", mode)] /
                                                   med[("base", mode)]))
        print("load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    finally:
        nats.terminate()
        nats.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
