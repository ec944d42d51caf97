#!/usr/bin/python3
"""bench/fleet_apply_same.py: two entd builds apply the same stream to the same state.

A check of a change to the replica apply path (not a timing): one nats-server -js on loopback,
a stream filled directly with a mix of every common event kind where a share of the events (--bad-ratio, 1 %)
fails to apply (a plan granting an unknown feature, a subscription to an unknown plan, usage of
quantity 0, deletes of what does not exist, consumes past a hard limit are denials, repeated
idempotency keys are duplicates), interleaved so that failing events sit inside the groups of
good ones. Each build starts a replica on an empty directory and applies all of it; then the
Export documents and every customer's GetCustomerEntitlements (at one fixed instant) must be
byte-identical, at the same sequence.

    bench/fleet_apply_same.py --entd build/entd --base-entd /tmp/base/build/entd \
        [--events 20000] [--bad-ratio 0.01]

Exit status 0 when identical. Every process is started here and stopped by its PID.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import fleet_apply as fa  # noqa: E402
import harness  # noqa: E402


GOOD = (0, 3, 6, 7, 8, 9, 10, 11)
BAD = (1, 2, 4, 5)


def mixed(pb, n, customers, bad_ratio, seed=7):
    t, a, e, ev = pb
    rnd = random.Random(seed)
    now = int(time.time() * 1000)
    yield ev.Event(at=now, upsert_feature=t.Feature(code="u", type=t.FEATURE_TYPE_METERED))
    yield ev.Event(at=now, upsert_feature=t.Feature(code="b", type=t.FEATURE_TYPE_BOOLEAN))
    yield ev.Event(at=now, set_plan=a.SetEntitlementsRequest(code="p", entitlements=[
        t.Grant(feature_code="u", usage_limit=50, usage_reset_period=t.RESET_PERIOD_NEVER),
        t.Grant(feature_code="b")]))
    for i in range(n):
        c = "c%d" % rnd.randrange(customers)
        k = rnd.choice(BAD) if rnd.random() < bad_ratio else rnd.choice(GOOD)
        at = now + i
        if k == 0:
            yield ev.Event(at=at, upsert_subscription=t.Subscription(
                id="s_" + c, customer_id=c, plan_code="p"))
        elif k == 1:  # fails: unknown plan
            yield ev.Event(at=at, upsert_subscription=t.Subscription(
                id="s_" + c, customer_id=c, plan_code="nope"))
        elif k == 2:  # fails: the second grant names an unknown feature
            yield ev.Event(at=at, set_plan=a.SetEntitlementsRequest(code="p2", entitlements=[
                t.Grant(feature_code="u", usage_limit=rnd.randrange(1, 99)),
                t.Grant(feature_code="missing")]))
        elif k == 3:
            yield ev.Event(at=at, patch_plan=a.SetEntitlementsRequest(code="p", entitlements=[
                t.Grant(feature_code="u", usage_limit=rnd.randrange(40, 90),
                        usage_reset_period=t.RESET_PERIOD_NEVER)]))
        elif k == 4:  # fails: quantity 0
            yield ev.Event(at=at, report_usage=e.ReportUsageRequest(
                customer_id=c, feature_code="u", quantity=0, idempotency_key="z%d" % i))
        elif k == 5:  # fails: nothing to delete
            yield ev.Event(at=at, delete_override=a.DeleteCustomerEntitlementRequest(
                customer_id=c, feature_code="b"))
        elif k == 6:
            yield ev.Event(at=at, set_override=a.SetCustomerEntitlementRequest(
                customer_id=c, feature_code="b", value=t.OverrideValue(bool_value=False),
                reason="r%d" % i))
        elif k in (7, 8):
            yield ev.Event(at=at, consume=e.ConsumeEntitlementRequest(
                customer_id=c, feature_code="u", quantity=rnd.randrange(1, 9)))
        else:  # usage; one key in four repeats an earlier one (a duplicate)
            key = "k%d" % (rnd.randrange(i) if i and rnd.randrange(4) == 0 else i)
            yield ev.Event(at=at, report_usage=e.ReportUsageRequest(
                customer_id=c, feature_code="u", quantity=rnd.randrange(1, 5),
                idempotency_key=key))


def replica_state(entd, url, work, customers, at, head):
    d = tempfile.mkdtemp(dir=work)
    addr = "127.0.0.1:%d" % fa.free_port()
    p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", entd, "--db", d, "--listen",
                          addr, "--fleet-nats", url, "--fleet-snapshot-interval-ms", "0",
                          "--admin-token", harness.TOKEN],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not harness.serving(addr):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("entd did not become ready")
            time.sleep(0.02)
        api = harness.Api(addr, metadata=[("authorization", "Bearer " + harness.TOKEN)])
        while api.status().sequence < head:
            time.sleep(0.02)
        ex = api.export()
        ent = harness.pb["entitlement"]
        answers = []
        for i in range(customers):
            try:
                r = api.GetCustomerEntitlements(ent.GetCustomerEntitlementsRequest(
                    customer_id="c%d" % i, at=at))
                answers.append(r.SerializeToString())
            except harness.grpc.RpcError as err:
                answers.append(("error", err.code().name, err.details()))
        api.close()
        return ex.sequence, ex.json, answers
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entd", required=True)
    ap.add_argument("--base-entd", required=True)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--bad-ratio", type=float, default=0.01,
                    help="share of events that fail to apply")
    ap.add_argument("--proto-dir", default=os.path.join(ROOT, "proto"))
    A = ap.parse_args()
    work = tempfile.mkdtemp(prefix="entd-fleet-same-")
    pb = fa.gen(A.proto_dir, os.path.join(work, "py"))
    harness.generate(A.proto_dir, "protoc", os.path.join(work, "hpy"))
    nats, port, http = fa.start_nats(work)
    url = "nats://127.0.0.1:%d" % port
    try:
        fa.run_replica(A.entd, url, work, [])  # creates the stream
        total = fa.publish_all(port, b"entd.events", mixed(pb, A.events, A.customers, A.bad_ratio))
        while fa.stream_msgs(http, "ENTD_EVENTS")[0] < total:
            time.sleep(0.05)
        head = fa.stream_msgs(http, "ENTD_EVENTS")[1]
        at = int(time.time() * 1000) + 86400 * 1000
        new = replica_state(A.entd, url, work, A.customers, at, head)
        base = replica_state(A.base_entd, url, work, A.customers, at, head)
        same = new == base
        print("stream: %d messages, head %d; new at %d, base at %d; export %d bytes; %d "
              "customers: %s" % (total, head, new[0], base[0], len(new[1]), A.customers,
                                 "IDENTICAL" if same else "DIFFERENT"))
        if not same:
            print("export equal: %s; answers equal: %s" % (new[1] == base[1],
                                                           new[2] == base[2]))
        return 0 if same else 1
    finally:
        nats.terminate()
        nats.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
