#!/usr/bin/python3
"""integration.fleet.replicas (Proof 1 of docs/fleet.md): three entd replicas on one
nats-server -js (R1 stream).

- A write on any node is visible on every other: each node writes, the others read it with
  min_sequence = the write's answer sequence (a stream sequence), retried while they answer
  UNAVAILABLE "older than min_sequence" (not applied yet there).
- A mixed storm of every event kind (features, plans, add-ons, subscriptions, overrides with
  expiries that fall during the storm so ticks run through the stream, usage, consume),
  written from all three nodes at once: afterwards every replica, at the same stream
  sequence, exports the same document and gives the same answers for every customer.
- Sequences in answers are stream sequences: GetStatus.sequence equals the stream head.
"""
import random
import threading
import time

import grpc
from google.protobuf.wrappers_pb2 import Int64Value

import natsfix
import wp
from natsfix import ThreeReplicas
from wp import pb

CUSTOMERS = ["flc_%d" % i for i in range(12)]
OPS_PER_NODE = 150


class Replicas(ThreeReplicas):
    REQUIRE_CLEAN_EXIT = True

    def test_1_write_anywhere_read_everywhere(self):
        t, a = pb["types"], pb["admin"]
        with self.ents[0].api() as api:
            natsfix.setup_catalog(api)
        for i, e in enumerate(self.ents):
            cust = "flw_%d" % i
            with e.api() as api:
                r = natsfix.subscribe(api, cust)
            self.assertGreater(r.sequence, 0)
            for other in self.ents:
                c = self.check_at(other, cust, "fl_flag", min_sequence=r.sequence)
                self.assertTrue(c.allowed, "%s on %s" % (cust, other.name))
                self.assertGreaterEqual(c.sequence, r.sequence)
        # A check asking for a sequence nobody has waits (check.min_sequence_wait_ms), then is
        # refused, not answered stale; the message names both sequences.
        with self.ents[1].api() as api:
            self.assertStatus(grpc.StatusCode.UNAVAILABLE, api.check, "flw_0", "fl_flag",
                              min_sequence=10 ** 9,
                              contains=["min_sequence 1000000000 is not applied",
                                        "applied sequence "])
        # Sequences are stream sequences: every replica reports the stream head.
        heads = {natsfix.status(e).stream_head for e in self.ents}
        seqs = {natsfix.status(e).sequence for e in self.ents}
        self.assertEqual(len(heads), 1)
        self.assertEqual(seqs, heads)
        # entctl fleet status: one line per node, same sequence and stream, state ok.
        args = ["fleet", "status", "--token", wp.TOKEN]
        for e in self.ents:
            args += ["-a", e.tcp]
        out = self.ents[0].entctl(*args)
        lines = [ln.split() for ln in out.splitlines()[1:]]
        self.assertEqual(len(lines), 3, out)
        self.assertEqual({ln[1] for ln in lines}, {str(s) for s in seqs}, out)
        self.assertEqual({ln[5] for ln in lines}, {"ok"}, out)
        self.assertEqual(len({ln[6] for ln in lines}), 1, out)
        st = natsfix.status(self.ents[2])
        self.assertTrue(st.fleet)
        self.assertEqual(st.fleet_state, "ok")
        self.assertTrue(st.stream.startswith("ENTD_EVENTS/"))

    def storm_ops(self, api, node, rnd, counts, lock):
        t, a, e = pb["types"], pb["admin"], pb["entitlement"]
        now = wp.now_ms()
        kinds = ["feature", "delfeature", "plan", "patchplan", "addon", "patchaddon",
                 "deladdon", "sub", "cancel", "override", "expiring", "update", "deloverride",
                 "usage", "consume", "delplan"]
        for i in range(OPS_PER_NODE):
            k = kinds[i % len(kinds)] if i < len(kinds) else rnd.choice(kinds)
            c = rnd.choice(CUSTOMERS)
            try:
                if k == "feature":
                    api.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
                        code="fls_f%d" % rnd.randrange(4), name="n%d" % i,
                        type=t.FEATURE_TYPE_BOOLEAN)))
                elif k == "delfeature":
                    api.DeleteFeature(a.DeleteFeatureRequest(code="fls_f%d" % rnd.randrange(4)))
                elif k in ("plan", "patchplan"):
                    fn = api.SetPlanEntitlements if k == "plan" else api.PatchPlanEntitlements
                    fn(a.SetEntitlementsRequest(code="fls_p%d" % rnd.randrange(3), entitlements=[
                        t.Grant(feature_code="fl_units", usage_limit=rnd.randrange(50, 500),
                                usage_reset_period=t.RESET_PERIOD_NEVER),
                        t.Grant(feature_code="fl_flag")]))
                elif k == "delplan":
                    api.DeletePlanEntitlements(a.GetEntitlementsRequest(
                        code="fls_p%d" % rnd.randrange(3)))
                elif k in ("addon", "patchaddon"):
                    fn = api.SetAddonEntitlements if k == "addon" else api.PatchAddonEntitlements
                    fn(a.SetEntitlementsRequest(code="fls_a%d" % rnd.randrange(2), entitlements=[
                        t.Grant(feature_code="fl_units", usage_limit=rnd.randrange(1, 20),
                                usage_reset_period=t.RESET_PERIOD_NEVER)]))
                elif k == "deladdon":
                    api.DeleteAddonEntitlements(a.GetEntitlementsRequest(
                        code="fls_a%d" % rnd.randrange(2)))
                elif k == "sub":
                    plan = rnd.choice(["fl_plan", "fls_p0", "fls_p1", "fls_p2"])
                    api.UpsertSubscription(a.UpsertSubscriptionRequest(
                        subscription=t.Subscription(
                            id="s%d" % rnd.randrange(2), customer_id=c, plan_code=plan,
                            quantity=rnd.randrange(1, 3),
                            addons=[t.SubscriptionAddon(addon_code="fl_addon", quantity=1)])))
                elif k == "cancel":
                    api.CancelSubscription(a.CancelSubscriptionRequest(
                        customer_id=c, subscription_id="s%d" % rnd.randrange(2)))
                elif k in ("override", "expiring"):
                    exp = now + rnd.randrange(1500, 4000) if k == "expiring" else 0
                    api.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
                        customer_id=c, feature_code="fl_units",
                        value=t.OverrideValue(number_value=rnd.randrange(5, 50)),
                        reason="r%d" % i, expires_at=exp))
                elif k == "update":
                    api.UpdateCustomerEntitlement(a.UpdateCustomerEntitlementRequest(
                        customer_id=c, feature_code="fl_units",
                        quantity=Int64Value(value=rnd.randrange(1, 4))))
                elif k == "deloverride":
                    api.DeleteCustomerEntitlement(a.DeleteCustomerEntitlementRequest(
                        customer_id=c, feature_code="fl_units"))
                elif k == "usage":
                    api.ReportUsage(e.ReportUsageRequest(
                        customer_id=c, feature_code="fl_units", quantity=rnd.randrange(1, 5),
                        idempotency_key="k-%d-%d" % (node, i)))
                elif k == "consume":
                    api.ConsumeEntitlement(e.ConsumeEntitlementRequest(
                        customer_id=c, feature_code=rnd.choice(["fl_units", "fl_flag"]),
                        quantity=rnd.randrange(1, 3)))
                with lock:
                    counts["ok"] += 1
            except grpc.RpcError as ex:
                # Refusals the state explains (unknown customer, still referenced, ...) are
                # part of the storm: apply decides them, identically everywhere.
                if ex.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                 grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN):
                    with lock:
                        counts["bad"].append("%s %s: %s" % (k, ex.code(), ex.details()))
                else:
                    with lock:
                        counts["refused"] += 1

    def test_2_mixed_storm_identical(self):
        with self.ents[0].api() as api:
            natsfix.setup_catalog(api)
            for c in CUSTOMERS:
                natsfix.subscribe(api, c)
        counts = {"ok": 0, "refused": 0, "bad": []}
        lock = threading.Lock()

        def node(i):
            with self.ents[i].api() as api:
                self.storm_ops(api, i, random.Random(1000 + i), counts, lock)
        threads = [threading.Thread(target=node, args=(i,)) for i in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        self.assertEqual(counts["bad"], [])
        self.assertGreater(counts["ok"], OPS_PER_NODE)  # most of the storm was applied
        natsfix.log("storm: %d applied, %d refused by apply" % (counts["ok"], counts["refused"]))
        # Let the expiries of the storm pass, so ticks (published to the stream) run.
        wp.sleep_until(wp.now_ms() + 4500)
        with self.ents[1].api() as api:  # one more write: every replica must apply it too
            last = natsfix.subscribe(api, "flc_last")
        natsfix.wait_sequence(self.ents, last.sequence)
        at = wp.now_ms() + 86400 * 1000
        seq, doc, answers = self.assert_identical(self.ents, CUSTOMERS + ["flc_last"], at)
        self.assertGreaterEqual(seq, last.sequence)
        self.assertIn("flc_last", doc)
        self.assertTrue(any(f for _, f in answers))


if __name__ == "__main__":
    natsfix.main()
