#!/usr/bin/python3
"""What the metrics cost a check: h2load against CheckEntitlement, metrics on vs off.

    measure_metrics_cost.py --entd BUILD/entd --entctl BUILD/entctl --demo deploy/demo/demo.json
                            [--rounds 5] [--duration 5] [--server-cpu 0] [--client-cpu 1]

Two entd processes run side by side on copies of the demo database, both pinned to the same
core (taskset), one with metrics.listen set (counting on; /metrics scraped once a second while
it is loaded), one without (nothing counted: the RPC threads get no counter block). h2load,
pinned to the other core, sends one pre-encoded CheckEntitlement (cus_acme, custom_domain:
ENTITLED) over 4 connections with 32 streams each, alternating A and B every round, so both
see the same background load of a shared machine. Prints each run and the medians; the answer
is checked to carry grpc-status 0 before and after (h2load counts HTTP 200 as success).

Not a ctest: its figures are in docs/observability.md.
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# The integration suites' fixture module (free port, health probe, PDEATHSIG).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402

PATH = "/ent.v1.EntitlementService/CheckEntitlement"


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field_str(num, s):
    b = s.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b


def body(customer, feature):
    """gRPC framing (5-byte prefix) + CheckEntitlementRequest{customer_id=1, feature_code=2}."""
    msg = field_str(1, customer) + field_str(2, feature)
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def start(args, tmp, name, metrics_port):
    db = os.path.join(tmp, name)
    shutil.copytree(os.path.join(tmp, "db"), db)
    port = harness.free_port()
    cmd = ["taskset", "-c", str(args.server_cpu), args.entd, "--db", db, "--listen",
           "127.0.0.1:%d" % port, "--threads", "1", "--log-level", "warn"]
    if metrics_port:
        cmd += ["--metrics-listen", "127.0.0.1:%d" % metrics_port]
    p = subprocess.Popen(cmd, stderr=open(os.path.join(tmp, name + ".log"), "wb"),
                         preexec_fn=harness.die_with_parent)
    addr = "127.0.0.1:%d" % port
    while not harness.serving(addr):
        if p.poll() is not None:
            raise RuntimeError("%s exited; see %s.log" % (name, name))
        time.sleep(0.05)
    return p, addr


def grpc_ok(addr, bodyfile):
    out = subprocess.run(["nghttp", "-v", "-H", ":method: POST", "-H",
                          "content-type: application/grpc", "-H", "te: trailers", "-d", bodyfile,
                          "http://%s%s" % (addr, PATH)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=60).stdout.decode(errors="replace")
    return "grpc-status: 0" in out


def cpu_seconds(pid):
    """User + system CPU of a process so far (/proc/PID/stat), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2load(args, addr, bodyfile, duration=None):
    """(requests per second, requests answered)."""
    out = subprocess.run(["taskset", "-c", str(args.client_cpu), "h2load", "-D",
                          "%ds" % (duration or args.duration), "-c", "4", "-m", "32",
                          "-t", "1", "-H", "content-type: application/grpc", "-H",
                          "te: trailers", "-d", bodyfile, "http://%s%s" % (addr, PATH)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=args.duration + 120).stdout.decode(errors="replace")
    m = re.search(r"finished in [^,]+, ([0-9.]+) req/s", out)
    r = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored", out)
    if not m or not r or int(r.group(2)) or int(r.group(3)):
        raise RuntimeError("h2load failed:\n" + out)
    return float(m.group(1)), int(r.group(1))


def scraper(port, stop):
    while not stop.is_set():
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            r.read()
        stop.wait(1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="entd-mcost-", dir="/tmp")
    procs = []
    try:
        os.mkdir(os.path.join(tmp, "db"))
        subprocess.run([args.entctl, "import", "--db", os.path.join(tmp, "db"), args.demo],
                       check=True, stdout=subprocess.DEVNULL)
        bodyfile = os.path.join(tmp, "check.body")
        with open(bodyfile, "wb") as f:
            f.write(body("cus_acme", "custom_domain"))
        mport = harness.free_port()
        on, on_addr = start(args, tmp, "on", mport)
        off, off_addr = start(args, tmp, "off", None)
        procs = [on, off]
        results = {"on": [], "off": []}
        cpu_us = {"on": [], "off": []}
        pids = {"on": on.pid, "off": off.pid}
        for r in range(args.rounds):
            order = [("on", on_addr), ("off", off_addr)]
            if r % 2:
                order.reverse()  # neither side always goes first
            for name, addr in order:
                if not grpc_ok(addr, bodyfile):
                    raise RuntimeError("%s: the check does not answer grpc-status 0" % name)
                stop = threading.Event()
                t = None
                if name == "on":
                    t = threading.Thread(target=scraper, args=(mport, stop), daemon=True)
                    t.start()
                h2load(args, addr, bodyfile, duration=1)  # warm-up, not measured
                c0 = cpu_seconds(pids[name])
                qps, n = h2load(args, addr, bodyfile)
                us = (cpu_seconds(pids[name]) - c0) * 1e6 / n
                stop.set()
                if t:
                    t.join()
                if not grpc_ok(addr, bodyfile):
                    raise RuntimeError("%s: the check does not answer grpc-status 0" % name)
                results[name].append(qps)
                cpu_us[name].append(us)
                print("round %d metrics %-3s %9.0f req/s  %5.2f us CPU/call"
                      % (r + 1, name, qps, us), flush=True)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as resp:
            text = resp.read().decode()
        m = re.search(r'entd_rpc_calls_total\{method="%s",code="OK"\} (\d+)' % re.escape(PATH),
                      text)
        counted = int(m.group(1)) if m else 0
        on_m, off_m = statistics.median(results["on"]), statistics.median(results["off"])
        print("median: metrics on %.0f req/s, off %.0f req/s, on/off %.3f (%+.1f%%)"
              % (on_m, off_m, on_m / off_m, (on_m / off_m - 1) * 100))
        on_c, off_c = statistics.median(cpu_us["on"]), statistics.median(cpu_us["off"])
        print("median server CPU per call: metrics on %.2f us, off %.2f us, difference %+.2f us "
              "(%+.1f%%)" % (on_c, off_c, on_c - off_c, (on_c / off_c - 1) * 100))
        print("CheckEntitlement calls counted by the 'on' daemon: %d" % counted)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
