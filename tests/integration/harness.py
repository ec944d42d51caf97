#!/usr/bin/python3
"""Run one integration suite against a real entd.

    harness.py --entd PATH --entctl PATH --demo FILE [--token T] [--timeout S] -- CMD [ARGS...]

1. make a temporary directory and import the demo document into DIR/db with the built entctl;
2. start the built entd on a free loopback TCP port and on the unix socket DIR/entd.sock, with
   an admin token;
3. poll grpc.health.v1.Health/Check on both listeners until SERVING (no fixed sleeps);
4. run CMD with ENTD_TEST_TCP, ENTD_TEST_UNIX, ENTD_TEST_TOKEN, ENTD_TEST_DIR, ENTD_TEST_ENTCTL,
   ENTD_TEST_DEMO and ENTD_TEST_PID in its environment;
5. stop entd with SIGTERM (by PID) and require exit status 0 within the grace time, else
   kill -9 and fail.

The exit status is CMD's, or 1 if entd did not start or did not stop cleanly. The temporary
directory is removed on success and kept (with entd.log) on failure.
"""
import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def die_with_parent():
    """In the child before exec: entd gets SIGKILL if the harness itself is killed (a ctest
    timeout), so no daemon outlives its test."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def log(msg):
    print("harness: " + msg, file=sys.stderr, flush=True)


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


def start_entd(args, tmp, token):
    """Start entd and wait until both listeners are SERVING. Returns (proc, tcp, unix)."""
    sock = os.path.join(tmp, "entd.sock")
    logpath = os.path.join(tmp, "entd.log")
    for attempt in range(3):
        port = free_port()
        tcp = "127.0.0.1:%d" % port
        unix = "unix:" + sock
        cmd = [args.entd, "--db", os.path.join(tmp, "db"), "--listen", tcp, "--listen", unix,
               "--admin-token", token]
        log("starting " + " ".join(cmd[:-1]) + " ***")
        logf = open(logpath, "ab")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)
        logf.close()
        deadline = time.monotonic() + args.start_timeout
        ready = set()
        while time.monotonic() < deadline and proc.poll() is None:
            for t in (tcp, unix):
                if t not in ready and serving(t):
                    ready.add(t)
            if len(ready) == 2:
                log("entd pid %d SERVING on %s and %s" % (proc.pid, tcp, unix))
                return proc, tcp, unix
            time.sleep(0.05)  # poll interval only; readiness is decided by the answer
        if proc.poll() is None:
            log("entd not SERVING after %ds" % args.start_timeout)
            stop_entd(proc, 10)
            return None, None, None
        # Exited early: most likely the port was taken between free_port() and bind; retry.
        log("entd exited with %s during start-up (attempt %d):\n%s"
            % (proc.returncode, attempt + 1, tail(logpath)))
        if os.path.exists(sock):
            os.unlink(sock)
    return None, None, None


def stop_entd(proc, grace):
    """SIGTERM by PID, wait; kill -9 after grace seconds. Returns the exit status or None."""
    if proc.poll() is not None:
        return proc.returncode
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log("entd did not exit %ds after SIGTERM: kill -9" % grace)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--entctl", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--token", default="it-admin-token")
    ap.add_argument("--start-timeout", type=int, default=60)
    ap.add_argument("--stop-timeout", type=int, default=30)
    ap.add_argument("--timeout", type=int, default=900, help="seconds allowed for CMD")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no test command")

    # SIGTERM (ctest, CI) unwinds through the finally blocks below like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Short base path: a unix socket path must fit in 108 bytes.
    tmp = tempfile.mkdtemp(prefix="entd-it-", dir="/tmp")
    ok = False
    proc = None
    try:
        db = os.path.join(tmp, "db")
        os.mkdir(db)
        imp = subprocess.run([args.entctl, "import", "--db", db, args.demo],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        if imp.returncode != 0:
            log("entctl import failed (%d):\n%s" % (imp.returncode,
                                                    imp.stdout.decode(errors="replace")))
            return 1
        proc, tcp, unix = start_entd(args, tmp, args.token)
        if not proc:
            return 1
        env = dict(os.environ, ENTD_TEST_TCP=tcp, ENTD_TEST_UNIX=unix,
                   ENTD_TEST_TOKEN=args.token, ENTD_TEST_DIR=tmp, ENTD_TEST_ENTCTL=args.entctl,
                   ENTD_TEST_DEMO=args.demo, ENTD_TEST_PID=str(proc.pid))
        try:
            rc = subprocess.run(cmd, env=env, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            log("test command timed out after %ds" % args.timeout)
            rc = 1
        if proc.poll() is not None:
            log("entd died during the tests (status %s):\n%s"
                % (proc.returncode, tail(os.path.join(tmp, "entd.log"))))
            return 1
        status = stop_entd(proc, args.stop_timeout)
        if status != 0:
            log("entd exit status after SIGTERM: %s (want 0)\n%s"
                % (status, tail(os.path.join(tmp, "entd.log"))))
            return 1
        log("entd stopped cleanly (exit 0)")
        if rc != 0:
            log("tests failed (%d); entd log:\n%s" % (rc, tail(os.path.join(tmp, "entd.log"))))
        ok = rc == 0
        return rc
    finally:
        if proc is not None and proc.poll() is None:
            stop_entd(proc, 5)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("kept " + tmp)


if __name__ == "__main__":
    sys.exit(main())
