#!/usr/bin/python3
"""Write-path measurements (printed, never asserted; not a ctest). docs/write-path.md quotes them.

    bench/measure_writes.py --entd build/entd --entctl build/entctl --proto-dir proto \\
        --out /tmp/wp-py [--entbench build/bench/entbench] [--customers 100000] \\
        [--entd-cpus 1] [--client-cpus 0] [--duration 10] [--fanouts 5] [--map-size 8G]

1. `entctl generate --db DIR --customers N --plans 1`: every customer on plan_0, so a change of
   plan_0 fans out to all N customers (docs/data-format.md).
2. entd on that directory, pinned with `taskset -c ENTD_CPUS`, listening on a unix socket, with
   --map-size 8G (a 100 000-customer fan-out does not fit in the default 1 GiB); the load
   generators are pinned to CLIENT_CPUS.
3. (a) durable changes per second through the writer: for DURATION seconds keep 64 calls in
   flight (grpcio futures) of SetCustomerEntitlement (distinct values on distinct customers),
   then of ReportUsage (unique keys); and, for reference, 1 in flight (one fsync per change);
   then ReportUsage from entbench --mode report (C client, 4 connections x 16 in flight).
   Every answer is an acknowledgement after the commit, so acknowledged/s = durable changes/s.
4. (b) fan-out: PatchPlanEntitlements of plan_0's f_metered_0 grant (new usage_limit) while a
   poller checks cus_3 and cus_<N-1> (plan_0 only, no add-on, no override) in a loop; reports
   the time until the Patch is acknowledged and until the poller first sees the new limit on
   both, and that they appear together (one transaction). Five times, alternating limits.
5. (c) check throughput and p99 with entbench (closed loop, unary checks, uniform over the N
   customers, f_metered_0 and f_boolean_0) for DURATION seconds on a quiet daemon, then for
   DURATION seconds while plan_0 is patched back to back (each Patch waits for its ack).
   Without entbench, a grpcio loop of 8 threads stands in (much slower: Python-bound).
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

# The integration suites' fixture module: the same daemon, data set and client as the tests.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness as wp  # noqa: E402
from harness import pb  # noqa: E402


def opts(ap):
    ap.add_argument("--entbench", default="")
    ap.add_argument("--customers", type=int, default=100000)
    ap.add_argument("--entd-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--fanouts", type=int, default=5)
    # A fan-out rewrites every aggregate of the plan's customers copy-on-write in one
    # transaction: 100 000 customers (532 MiB) do not fit in entd's default 1 GiB map.
    ap.add_argument("--map-size", default="8G")


def pin(cpus):
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


# ---- (a) writes -----------------------------------------------------------------------------

def windowed(api, name, make, inflight, duration):
    """Keep `inflight` calls of `name` outstanding for `duration` s; returns (acks, errors,
    seconds, per-call latencies in ms)."""
    # Reentrant: a future that is already done runs its callback at once, in this thread,
    # while the loop below holds the lock.
    lock = threading.RLock()
    done = threading.Condition(lock)
    state = {"out": 0, "acks": 0, "errors": 0, "i": 0}
    lat = []
    t_end = time.monotonic() + duration

    def finished(fut, t0):
        with lock:
            state["out"] -= 1
            if fut.exception() is None:
                state["acks"] += 1
                lat.append((time.monotonic() - t0) * 1000)
            else:
                state["errors"] += 1
            done.notify()

    t_start = time.monotonic()
    with lock:
        while time.monotonic() < t_end:
            while state["out"] < inflight:
                state["i"] += 1
                state["out"] += 1
                t0 = time.monotonic()
                fut = api.future(name, make(state["i"]))
                fut.add_done_callback(lambda f, t0=t0: finished(f, t0))
            done.wait(0.5)
        while state["out"]:
            done.wait(1)
    return state["acks"], state["errors"], time.monotonic() - t_start, lat


def measure_writes(api, n, duration):
    t, e, a = pb["types"], pb["entitlement"], pb["admin"]
    run = int(time.time())
    rows = []
    for name, make in [
        ("SetCustomerEntitlement", lambda i: a.SetCustomerEntitlementRequest(
            customer_id="cus_%d" % (i % n), feature_code="f_metered_1",
            value=t.OverrideValue(number_value=1000 + i), reason="measure %d" % i)),
        ("ReportUsage", lambda i: e.ReportUsageRequest(
            customer_id="cus_%d" % (i % n), feature_code="f_metered_0", quantity=1,
            idempotency_key="m-%d-%d" % (run, i))),
    ]:
        for inflight in (64, 1):
            s0 = api.status().sequence
            acks, errs, secs, lat = windowed(api, name, make, inflight,
                                             duration if inflight > 1 else duration / 2)
            s1 = api.status().sequence
            lat.sort()
            rows.append((name, inflight, acks / secs, (s1 - s0) / secs,
                         lat[len(lat) // 2] if lat else 0,
                         lat[int(len(lat) * 0.99)] if lat else 0, errs))
    return rows


# ---- (b) fan-out ----------------------------------------------------------------------------

def current_grant(api):
    a = pb["admin"]
    got = api.GetPlanEntitlements(a.GetEntitlementsRequest(code="plan_0"))
    return [g for g in got.entitlements if g.feature_code == "f_metered_0"][0]


def fanout_once(api, poll_apis, customers, new_limit):
    """Patch plan_0's f_metered_0 to new_limit; returns (ack_ms, visible_ms per customer,
    sequence)."""
    a = pb["admin"]
    g = current_grant(api)
    g.usage_limit = new_limit
    seen = {}
    stop = threading.Event()
    t0 = time.monotonic()

    def poll(papi, cus):
        while not stop.is_set():
            c = papi.check(cus, "f_metered_0")
            if c.usage.limit == new_limit:
                seen[cus] = (time.monotonic() - t0) * 1000
                return
    threads = [threading.Thread(target=poll, args=(p, c)) for p, c in zip(poll_apis, customers)]
    for th in threads:
        th.start()
    r = api.PatchPlanEntitlements(a.SetEntitlementsRequest(code="plan_0", entitlements=[g]),
                                  timeout=600)
    ack_ms = (time.monotonic() - t0) * 1000
    for th in threads:
        th.join(600)
    stop.set()
    return ack_ms, [seen.get(c) for c in customers], r.sequence


# ---- (c) checks under fan-out ---------------------------------------------------------------

def entbench(args, target, n, label, mode="unary", features="f_metered_0,f_boolean_0"):
    cmd = ["taskset", "-c", args.client_cpus, args.entbench, "--target", target,
           "--mode", mode, "--connections", "4", "--inflight", "16",
           "--duration", str(args.duration), "--warmup", "1", "--customers", str(n),
           "--features", features, "--json", "-", "--quiet", "--label", label]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=args.duration * 10 + 120)
    if p.returncode != 0:
        raise RuntimeError("entbench failed: %s" % p.stderr)
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return j["checks_per_s"], j["latency_us"]["p50"] / 1000, j["latency_us"]["p99"] / 1000, \
        j["errors"]["total"]


def grpcio_checks(target, n, duration, label):
    """Fallback load: 8 threads of blocking checks; (checks/s, p50 ms, p99 ms, errors)."""
    lat, errors = [], [0]
    lock = threading.Lock()
    t_end = time.monotonic() + duration

    def worker(k):
        api = wp.Api(target)
        i = k
        mine = []
        while time.monotonic() < t_end:
            i += 7919
            t0 = time.monotonic()
            try:
                api.check("cus_%d" % (i % n), "f_metered_0" if i % 2 else "f_boolean_0")
                mine.append((time.monotonic() - t0) * 1000)
            except Exception:
                errors[0] += 1
        with lock:
            lat.extend(mine)
        api.close()
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    lat.sort()
    return len(lat) / duration, lat[len(lat) // 2], lat[int(len(lat) * 0.99)], errors[0]


def checks(args, d, n, label):
    if args.entbench:
        return entbench(args, d.unix, n, label)
    return grpcio_checks(d.unix, n, args.duration, label)


def main():
    wp.setup(sys.argv[1:], extra=opts)
    # SIGTERM unwinds through the finally below (entd stopped, directory removed).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args = wp.ARGS
    if not args.entbench:
        for cand in ("build/bench/entbench", "build-bench/bench/entbench"):
            path = os.path.join(args.proto_dir, "..", cand)
            if os.access(path, os.X_OK):
                args.entbench = os.path.abspath(path)
                break
    n = args.customers
    d = wp.Entd(prefix=["taskset", "-c", args.entd_cpus],
                extra_args=["--map-size", args.map_size])
    out = []

    def say(line=""):
        out.append(line)
        print(line, flush=True)
    try:
        t0 = time.monotonic()
        gen = d.entctl("generate", "--db", d.db, "--customers", str(n), "--plans", "1",
                       timeout=3600)
        say("generate: %d customers in %.1f s (%s)" % (
            n, time.monotonic() - t0, gen.splitlines()[1].strip() if len(
                gen.splitlines()) > 1 else ""))
        d.start(timeout=600)
        pin(args.client_cpus)
        api = wp.Api(d.unix, metadata=[("authorization", "Bearer " + d.token)])
        say("entd pid %d pinned to CPU %s; clients on CPU %s; %s; nproc %d; load %s" % (
            d.pid, args.entd_cpus, args.client_cpus,
            "entbench " + args.entbench if args.entbench else "grpcio check loop",
            os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))

        say()
        say("(a) durable changes per second (acknowledged after commit)")
        say("%-24s %8s %12s %12s %9s %9s %6s" % ("rpc", "inflight", "acks/s", "seq/s",
                                                 "p50 ms", "p99 ms", "errors"))
        for name, infl, aps, sps, p50, p99, errs in measure_writes(api, n, args.duration):
            say("%-24s %8d %12.0f %12.0f %9.2f %9.2f %6d" % (name, infl, aps, sps, p50, p99,
                                                             errs))
        if args.entbench:
            # The same through the C load generator: 4 connections x 16 in flight, so the
            # client (one pinned CPU of Python above) is less of a limit.
            s0 = api.status().sequence
            t0 = time.monotonic()
            cps, p50, p99, errs = entbench(args, d.unix, n, "report", mode="report",
                                           features="f_metered_0")
            sps = (api.status().sequence - s0) / (time.monotonic() - t0)
            say("%-24s %8d %12.0f %12.0f %9.2f %9.2f %6d" % ("ReportUsage (entbench)", 64, cps,
                                                             sps, p50, p99, errs))

        say()
        say("(b) plan_0 change fanning out to %d customers" % n)
        customers = ["cus_3", "cus_%d" % (n - 1 if (n - 1) % 10 not in (1, 2) and
                                          (n - 1) % 20 != 7 else n - 5)]
        poll_apis = [wp.Api(d.unix) for _ in customers]
        base = current_grant(api).usage_limit
        say("%-4s %10s %12s %22s" % ("run", "new limit", "ack ms", "visible ms (%s)" %
                                     ", ".join(customers)))
        acks = []
        for k in range(args.fanouts):
            new = base + 1000 * (k % 2 + 1)
            ack, vis, seq = fanout_once(api, poll_apis, customers, new)
            acks.append(ack)
            say("%-4d %10d %12.0f %22s" % (k + 1, new, ack, ", ".join(
                "%.0f" % v if v is not None else "never" for v in vis)))
        say("median ack %.0f ms" % statistics.median(acks))
        for p in poll_apis:
            p.close()

        say()
        say("(c) checks: quiet vs during back-to-back plan_0 fan-outs (%.0f s each)"
            % args.duration)
        say("%-10s %12s %9s %9s %7s %9s" % ("run", "checks/s", "p50 ms", "p99 ms", "errors",
                                            "fan-outs"))
        q = checks(args, d, n, "quiet")
        say("%-10s %12.0f %9.2f %9.2f %7d %9s" % ("quiet", q[0], q[1], q[2], q[3], "-"))
        stop = threading.Event()
        count = [0]

        def patcher():
            k = 0
            while not stop.is_set():
                k += 1
                g = current_grant(api)
                g.usage_limit = base + 7 * k
                api.PatchPlanEntitlements(pb["admin"].SetEntitlementsRequest(
                    code="plan_0", entitlements=[g]), timeout=600)
                count[0] += 1
        th = threading.Thread(target=patcher)
        th.start()
        try:
            f = checks(args, d, n, "fanout")
        finally:
            stop.set()
            th.join()
        say("%-10s %12.0f %9.2f %9.2f %7d %9d" % ("fan-out", f[0], f[1], f[2], f[3], count[0]))
        st = api.status()
        say()
        say("status: sequence %d, %d aggregates, db %.0f MiB of %.0f MiB map" % (
            st.sequence, st.aggregates, st.db_size_bytes / 2**20, st.map_size_bytes / 2**20))
        api.close()
        status = d.stop(grace=120)
        say("entd exit status %s" % status)
    finally:
        if d.alive():
            d.kill9()
        shutil.rmtree(d.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
