#!/usr/bin/python3
"""bench/fleet_rebootstrap.py: the cost of a re-bootstrap IN PLACE (docs/fleet.md,
"Re-bootstrap in place") on a database of --customers customers (entctl generate).

One nats-server -js (pinging its clients every second, so a frozen client is dropped) and two
replicas on a stream that keeps --max-msgs messages, both bootstrapped from the generated
database published as the fleet's seed snapshot. e2 is frozen (SIGSTOP) until the server drops
its connection, e1 takes 2 x max-msgs writes, a snapshot of e1 is published, e2 is resumed.
Figures: the snapshot's size, e2's fetch and swap times (from its log line), the time from
SIGCONT to e2 "ok" again, and single checks on e2 meanwhile: their latency while the swap
transaction runs against the same replica's quiet latency just before (p50 / p99 / max),
and that none failed.

  bench/fleet_rebootstrap.py --entd build/entd --entctl build/entctl --proto-dir proto \
      --out /tmp/rb-py --customers 100000

Uses the integration suites' fixtures (tests/integration/fleet/natsfix.py). Not a test: it
asserts nothing about time; it prints the figures.
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "fleet"))
import natsfix  # noqa: E402
import harness  # noqa: E402
import wp  # noqa: E402

OPTS = {}


def extra(ap):
    ap.add_argument("--customers", type=int, default=100000)
    ap.add_argument("--max-msgs", type=int, default=200)
    ap.add_argument("--work", default=None, help="directory for the seed (kept for reuse)")


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))]


def entd_connections(n):
    status, body = natsfix.http_get(n.http_port, "/connz?limit=1024")
    return sum(1 for c in json.loads(body).get("connections") or [] if c.get("name") == "entd")


def ts_of(line):
    m = re.search(r"ts=(\S+)Z", line)
    return datetime.datetime.fromisoformat(m.group(1)).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def main():
    a = harness.ARGS
    work = a.work or os.path.join(tempfile.gettempdir(), "entd-rebootstrap-bench")
    os.makedirs(work, exist_ok=True)
    seed = os.path.join(work, "seed-%d" % a.customers)
    if not os.path.exists(os.path.join(seed, ".complete")):
        shutil.rmtree(seed, ignore_errors=True)
        t0 = time.monotonic()
        subprocess.run([a.entctl, "generate", "--db", seed, "--customers", str(a.customers),
                        "--plans", "4", "--map-size", "64G"], check=True,
                       stdout=subprocess.DEVNULL)
        open(os.path.join(seed, ".complete"), "w").close()
        natsfix.log("generated %d customers in %.1f s" % (a.customers, time.monotonic() - t0))
    n = natsfix.Nats(extra_conf='ping_interval: "1s"\nping_max: 2').start()
    ents = []
    try:
        ex = ["--fleet-snapshot-interval-ms", "0", "--fleet-max-msgs", str(a.max_msgs),
              "--map-size", "64G"]
        e0 = natsfix.FleetEntd([n.url], extra=ex, name="e0")
        e0.start(3600)  # creates the stream
        e0.stop()
        e0.cleanup()
        subprocess.run([a.entctl, "fleet", "snapshot", "publish", "--seed", "--db", seed,
                        "--nats", n.url, "--stream", "ENTD_EVENTS"], check=True,
                       stdout=subprocess.DEVNULL)
        e1 = natsfix.FleetEntd([n.url], extra=ex, name="e1")
        e2 = natsfix.FleetEntd([n.url], extra=ex, name="e2")
        ents = [e1, e2]
        for e in ents:
            e.start(3600)
        natsfix.wait_sequence(ents, natsfix.status(e1).sequence, timeout=3600)

        lat = []  # (wall time at the answer, seconds, ok)
        stop = threading.Event()

        def loop():
            with wp.Api(e2.tcp, timeout=600) as api:
                i = 0
                while not stop.is_set():
                    t = time.monotonic()
                    try:
                        api.check("cus_%d" % (i % a.customers), "f_metered_0")
                        ok = True
                    except Exception:  # noqa: BLE001 (counted, not raised)
                        ok = False
                    lat.append((time.time(), time.monotonic() - t, ok))
                    i += 7919
        th = threading.Thread(target=loop, daemon=True)
        th.start()
        time.sleep(2)  # a quiet baseline of checks (a figure, not a proof)
        quiet_end = time.time()

        conns = entd_connections(n)
        os.kill(e2.pid, signal.SIGSTOP)
        while entd_connections(n) != conns - 1:
            time.sleep(0.1)
        with e1.api() as api:
            for i in range(2 * a.max_msgs):
                natsfix.subscribe(api, "rbb_%d" % i, plan="plan_0")
        t0 = time.monotonic()
        subprocess.run([a.entctl, "fleet", "snapshot", "publish", "--db", e1.db, "--nats",
                        n.url], check=True, stdout=subprocess.DEVNULL)
        publish_s = time.monotonic() - t0
        snap = natsfix.status(e1).sequence
        t0 = time.monotonic()
        os.kill(e2.pid, signal.SIGCONT)
        while True:
            st = natsfix.status(e2)
            if st.sequence >= snap and st.fleet_state == "ok":
                break
            time.sleep(0.05)
        back_s = time.monotonic() - t0
        stop.set()
        th.join(120)
        line = [ln for ln in e2.log_text().splitlines()
                if "re-bootstrapped in place" in ln][-1]
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        end = ts_of(line)
        swap_s = float(fields["swap_seconds"])
        quiet = [x[1] * 1000 for x in lat if x[0] <= quiet_end and x[2]]
        during = [x[1] * 1000 for x in lat if end - swap_s <= x[0] <= end + 0.05 and x[2]]
        failed = sum(1 for x in lat if not x[2])
        size = os.path.getsize(os.path.join(e1.db, "data.mdb"))
        out = {
            "customers": a.customers, "entries": int(fields["entries"]),
            "e1_data_mdb_bytes": size, "snapshot_publish_s": round(publish_s, 2),
            "fetch_s": float(fields["fetch_seconds"]), "swap_s": swap_s,
            "sigcont_to_ok_s": round(back_s, 2),
            "checks_quiet": {"n": len(quiet), "p50_ms": round(pct(quiet, 50), 3),
                             "p99_ms": round(pct(quiet, 99), 3),
                             "max_ms": round(max(quiet) if quiet else 0, 3)},
            "checks_during_swap": {"n": len(during), "p50_ms": round(pct(during, 50), 3),
                                   "p99_ms": round(pct(during, 99), 3),
                                   "max_ms": round(max(during) if during else 0, 3)},
            "checks_failed": failed,
        }
        print(json.dumps(out))
    finally:
        for e in ents:
            if e.alive():
                os.kill(e.pid, signal.SIGCONT)
            e.stop()
            e.cleanup()
        n.cleanup()


if __name__ == "__main__":
    harness.setup(extra=extra)
    sys.exit(main())
