#!/usr/bin/python3
"""Helpers of the write-path suites (tests/integration/writepath/) that only they use: boundary
instants without timing-dependent verdicts (`TooSlow`, `assert_before`, `with_margins`,
`expiring`, `sleep_until`).

Everything else - options and generated code (`setup`, `main`, `pb`, `ARGS`), the restartable
daemon (`Entd`, `DaemonCase`), the client (`Api`, `Statuses`, `reason`), `wait_until`, time
helpers - is the one fixture module's, tests/integration/harness.py, re-exported here under the
names the suites use.

Run with Debian's interpreter (/usr/bin/python3): grpcio and protobuf are Debian packages.
"""
import os
import sys
import time

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
# The fixture module sits one directory up; it sets grpcio's environment before importing it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402
from harness import (  # noqa: E402,F401  (re-exported for the suites)
    ADMIN_RPCS, CHECK_RPCS, DAY, TIMEOUT, TOKEN, Api, DaemonCase, Entd, EntdPerTest, Statuses,
    generate, ms,
    now_ms, pb, reason, wait_until)
import grpc  # noqa: E402

main, setup, __getattr__ = harness.main_tests, harness.setup, harness.args_getattr


def log(msg):
    print("wp: " + msg, file=sys.stderr, flush=True)


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
