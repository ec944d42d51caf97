#!/usr/bin/python3
"""integration.writepath.bad_input: malformed and hostile admin (and usage) requests.

One table, against entd holding the demo data plus a few objects of our own. Each row is a
request that must be refused with INVALID_ARGUMENT or FAILED_PRECONDITION (NOT_FOUND where the
object does not exist; RESOURCE_EXHAUSTED for a message over the size limit) and a message
naming the field. The categories: wrong types and wrong privilege value types, unknown
features, over-long strings (customer id 201 bytes, code 256 bytes, texts over 1024 bytes),
negative quantities, select values outside the options, expiry before activation, unknown enum
numbers, duplicate privilege codes, subscription to an unknown plan or add-on, delete of a
feature still used; and hostile encodings sent as raw bytes (truncated varints, lengths past
the end, wrong wire types, bytes that are not UTF-8 in ids, deeply nested JSON, oversized
messages).

Before and after the WHOLE table: Export is byte-identical and GetStatus's counts and sequence
are equal (a refused write changes nothing and commits nothing), and entd is the same process,
still SERVING.

Two cases have tests of their own: an embedded NUL in an id or text, and a text that is not
UTF-8. Both are refused on the wire bytes before protobuf-c unpacks them (src/util/pbcheck.c).
"""

import grpc

import wp
from wp import pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
ADMIN = "/ent.v1.AdminService/"
CHECKS = "/ent.v1.EntitlementService/"


def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(field, payload):
    """A length-delimited protobuf field."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


class BadInput(wp.Statuses, wp.DaemonCase):
    DEMO = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t, a = pb["types"], pb["admin"]
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wb_victim", type=t.FEATURE_TYPE_BOOLEAN)))
        # A feature nothing but one override uses.
        cls.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wb_ov_only", type=t.FEATURE_TYPE_BOOLEAN)))
        cls.admin.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
            customer_id="cus_acme", feature_code="wb_ov_only",
            value=t.OverrideValue(bool_value=True), reason="only here"))

    def rows(self):
        t, a, e = pb["types"], pb["admin"], pb["entitlement"]
        from google.protobuf import wrappers_pb2 as w
        now = wp.now_ms()
        F, G, PV, PD, V = t.Feature, t.Grant, t.PrivilegeValue, t.PrivilegeDef, t.OverrideValue
        S = t.Subscription

        def feat(**kw):
            return a.UpsertFeatureRequest(feature=F(**kw))

        def plan(code="wb_p", *grants, **kw):
            return a.SetEntitlementsRequest(code=code, entitlements=list(grants), **kw)

        def sub(**kw):
            kw.setdefault("id", "wb_s")
            kw.setdefault("customer_id", "wb_c")
            kw.setdefault("plan_code", "free")
            return a.UpsertSubscriptionRequest(subscription=S(**kw))

        def ov(customer="cus_acme", feature="api_calls", **kw):
            kw.setdefault("value", V(number_value=5))
            return a.SetCustomerEntitlementRequest(customer_id=customer, feature_code=feature,
                                                   **kw)

        def upd(customer="cus_acme", feature="api_calls", **kw):
            return a.UpdateCustomerEntitlementRequest(customer_id=customer, feature_code=feature,
                                                      **{k: w.Int64Value(value=v)
                                                         for k, v in kw.items()})

        def seats(*privs):
            return G(feature_code="seats", privileges=list(privs))

        def sso(value):
            return G(feature_code="sso", privileges=[PV(code="provider", string_value=value)])
        return [
            # -- wrong types / wrong privilege value types
            ("string for an integer privilege", "SetPlanEntitlements",
             plan("wb_p", seats(PV(code="max", string_value="ten"))), INVALID,
             "entitlements[0].privileges.max"),
            ("int for a boolean privilege", "PatchPlanEntitlements",
             plan("startup", seats(PV(code="root", int_value=1))), INVALID,
             "entitlements[0].privileges.root"),
            ("bool for a select privilege", "SetAddonEntitlements",
             plan("wb_a", G(feature_code="sso", privileges=[PV(code="provider",
                                                               bool_value=True)])),
             INVALID, "entitlements[0].privileges.provider"),
            ("int for a string privilege", "UpsertSubscription",
             sub(entitlements=[G(feature_code="audit_log", privileges=[
                 PV(code="export_format", int_value=3)])]),
             INVALID, "subscription.entitlements[0].privileges.export_format"),
            ("privilege value_type echo lies", "SetPlanEntitlements",
             plan("wb_p", seats(PV(code="max", int_value=1,
                                   value_type=t.PRIVILEGE_TYPE_BOOLEAN))),
             INVALID, "entitlements[0].privileges.max"),
            ("number override on a static feature", "SetCustomerEntitlement",
             ov(feature="sla"), INVALID, "value"),
            ("string for an integer privilege in an override", "SetCustomerEntitlement",
             ov(feature="seats", value=V(bool_value=True),
                privileges=[PV(code="max", string_value="x")]),
             INVALID, "privileges.max"),
            ("fractional limit", "SetCustomerEntitlement", ov(value=V(number_value=2.5)),
             INVALID, "value.number_value"),
            ("NaN limit", "SetCustomerEntitlement", ov(value=V(number_value=float("nan"))),
             INVALID, "value.number_value"),
            ("usage on a boolean feature", "ReportUsage",
             e.ReportUsageRequest(customer_id="cus_acme", feature_code="sso", quantity=1,
                                  idempotency_key="wb-1"), INVALID, "feature_code"),
            # -- unknown features
            ("plan grant of an unknown feature", "SetPlanEntitlements",
             plan("wb_p", G(feature_code="wb_nope")), INVALID,
             ["entitlements[0].feature_code", "wb_nope"]),
            ("add-on patch with an unknown feature", "PatchAddonEntitlements",
             plan("audit_pack", G(feature_code="wb_nope")), INVALID,
             ["entitlements[0].feature_code", "wb_nope"]),
            ("subscription grant of an unknown feature", "UpsertSubscription",
             sub(entitlements=[G(feature_code="wb_nope")]), INVALID,
             ["subscription.entitlements[0].feature_code", "wb_nope"]),
            ("override of an unknown feature", "SetCustomerEntitlement",
             ov(feature="wb_nope"), INVALID, ["feature_code", "wb_nope"]),
            ("update of an unknown feature", "UpdateCustomerEntitlement",
             upd(feature="wb_nope", quantity=1), INVALID, ["feature_code", "wb_nope"]),
            ("usage of an unknown feature", "ReportUsage",
             e.ReportUsageRequest(customer_id="cus_acme", feature_code="wb_nope", quantity=1,
                                  idempotency_key="wb-2"), INVALID, "feature_code"),
            # -- over-long strings
            ("customer id 201 bytes (override)", "SetCustomerEntitlement", ov(customer="c" * 201),
             INVALID, "customer_id"),
            ("customer id 201 bytes (subscription)", "UpsertSubscription",
             sub(customer_id="c" * 201), INVALID, "subscription.customer_id"),
            ("customer id 201 bytes (update)", "UpdateCustomerEntitlement",
             upd(customer="c" * 201, quantity=1), INVALID, "customer_id"),
            ("customer id 201 bytes (cancel)", "CancelSubscription",
             a.CancelSubscriptionRequest(customer_id="c" * 201, subscription_id="sub_acme_main"),
             INVALID, "customer_id"),
            ("customer id 201 bytes (usage)", "ReportUsage",
             e.ReportUsageRequest(customer_id="c" * 201, feature_code="api_calls", quantity=1,
                                  idempotency_key="wb-3"), INVALID, "customer_id"),
            ("feature code 256 bytes", "UpsertFeature",
             feat(code="f" * 256, type=t.FEATURE_TYPE_BOOLEAN), INVALID, "feature.code"),
            ("plan code 256 bytes", "SetPlanEntitlements", plan("p" * 256), INVALID, "code"),
            ("add-on code 256 bytes", "PatchAddonEntitlements", plan("a" * 256), INVALID,
             "code"),
            ("subscription id 256 bytes", "UpsertSubscription", sub(id="s" * 256), INVALID,
             "subscription.id"),
            ("privilege code 256 bytes", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN,
                  privileges=[PD(code="p" * 256, value_type=t.PRIVILEGE_TYPE_INTEGER)]),
             INVALID, "feature.privileges[0].code"),
            ("idempotency key 256 bytes", "ReportUsage",
             e.ReportUsageRequest(customer_id="cus_acme", feature_code="api_calls", quantity=1,
                                  idempotency_key="k" * 256), INVALID, "idempotency_key"),
            ("reason 1025 bytes", "SetCustomerEntitlement", ov(reason="r" * 1025), INVALID,
             "reason"),
            ("reason 1 MiB", "SetCustomerEntitlement", ov(reason="r" * (1 << 20)), INVALID,
             "reason"),
            ("feature name 1025 bytes", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN, name="n" * 1025), INVALID,
             "feature.name"),
            ("plan name 1025 bytes", "SetPlanEntitlements",
             plan("wb_p", name="n" * 1025), INVALID, "name"),
            ("static value 1025 bytes", "SetPlanEntitlements",
             plan("wb_p", G(feature_code="sla", static_values=["s" * 1025])), INVALID,
             "entitlements[0].static_values[0]"),
            ("select option 1025 bytes", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN, privileges=[PD(
                 code="p", value_type=t.PRIVILEGE_TYPE_SELECT, select_options=["o" * 1025])]),
             INVALID, "feature.privileges[0].select_options[0]"),
            ("metadata value 5000 bytes", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN, metadata={"k": "v" * 5000}),
             INVALID, "feature.metadata"),
            # -- negative quantities
            ("negative subscription quantity", "UpsertSubscription", sub(quantity=-1), INVALID,
             "subscription.quantity"),
            ("negative add-on quantity", "UpsertSubscription",
             sub(addons=[t.SubscriptionAddon(addon_code="audit_pack", quantity=-3)]), INVALID,
             "subscription.addons[0].quantity"),
            ("negative usage_limit", "SetPlanEntitlements",
             plan("wb_p", G(feature_code="api_calls", usage_limit=-100)), INVALID,
             "entitlements[0].usage_limit"),
            ("negative quantity (update)", "UpdateCustomerEntitlement", upd(quantity=-1),
             INVALID, "quantity"),
            ("negative quantity_used", "UpdateCustomerEntitlement", upd(quantity_used=-7),
             INVALID, "quantity_used"),
            ("negative limit (override)", "SetCustomerEntitlement",
             ov(value=V(number_value=-1)), INVALID, "value.number_value"),
            ("negative usage", "ReportUsage",
             e.ReportUsageRequest(customer_id="cus_acme", feature_code="api_calls",
                                  quantity=-5, idempotency_key="wb-4"), INVALID, "quantity"),
            ("zero usage", "ReportUsage",
             e.ReportUsageRequest(customer_id="cus_acme", feature_code="api_calls",
                                  quantity=0, idempotency_key="wb-5"), INVALID, "quantity"),
            ("negative consume", "ConsumeEntitlement",
             e.ConsumeEntitlementRequest(customer_id="cus_acme", feature_code="api_calls",
                                         quantity=-1), INVALID, "quantity"),
            ("INT64_MIN quantity", "UpsertSubscription", sub(quantity=-(1 << 63)), INVALID,
             "subscription.quantity"),
            # -- select values outside the options
            ("select value not an option (plan)", "PatchPlanEntitlements",
             plan("enterprise", sso("aol")), INVALID, ["entitlements[0].privileges.provider",
                                                      "aol"]),
            ("select value empty", "SetAddonEntitlements", plan("wb_a", sso("")), INVALID,
             "entitlements[0].privileges.provider"),
            ("select value in other case", "SetPlanEntitlements", plan("wb_p", sso("OKTA")),
             INVALID, "entitlements[0].privileges.provider"),
            ("select value not an option (override)", "SetCustomerEntitlement",
             ov(feature="sso", value=V(bool_value=True),
                privileges=[PV(code="provider", string_value="aol")]),
             INVALID, "privileges.provider"),
            # -- expiry before activation
            ("override expires before it starts", "SetCustomerEntitlement",
             ov(active_from=now + 10 * wp.DAY, expires_at=now + 5 * wp.DAY), INVALID,
             "expires_at"),
            ("override expires in the past", "SetCustomerEntitlement",
             ov(expires_at=now - wp.DAY), INVALID, "expires_at"),
            ("update: expiry before activation", "UpdateCustomerEntitlement",
             upd(active_from=now + 10 * wp.DAY, expiry_at=now + 5 * wp.DAY), INVALID,
             "expiry_at"),
            ("subscription ends before it starts", "UpsertSubscription",
             sub(active_from=now, ends_at=now - 1), INVALID, "subscription.ends_at"),
            ("negative expires_at", "SetCustomerEntitlement", ov(expires_at=-1), INVALID,
             "expires_at"),
            # -- unknown enum numbers
            ("feature type 99", "UpsertFeature", feat(code="wb_f", type=99), INVALID,
             "feature.type"),
            ("feature type -1", "UpsertFeature", feat(code="wb_f", type=-1), INVALID,
             "feature.type"),
            ("privilege type 9", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN,
                  privileges=[PD(code="p", value_type=9)]), INVALID,
             "feature.privileges[0].value_type"),
            ("reset period 99", "SetPlanEntitlements",
             plan("wb_p", G(feature_code="api_calls", usage_reset_period=99)), INVALID,
             "entitlements[0].usage_reset_period"),
            ("privilege value_type 77", "SetPlanEntitlements",
             plan("wb_p", seats(PV(code="max", int_value=1, value_type=77))), INVALID,
             "entitlements[0].privileges.max"),
            # -- duplicate privilege codes
            ("feature declares a privilege twice", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN,
                  privileges=[PD(code="p", value_type=1), PD(code="p", value_type=3)]),
             INVALID, "feature.privileges[1].code"),
            ("grant gives a privilege twice", "SetPlanEntitlements",
             plan("wb_p", seats(PV(code="max", int_value=1), PV(code="max", int_value=9))),
             INVALID, "entitlements[0].privileges.max"),
            ("override gives a privilege twice", "SetCustomerEntitlement",
             ov(feature="seats", value=V(bool_value=True),
                privileges=[PV(code="root", bool_value=True), PV(code="root", bool_value=False)]),
             INVALID, "privileges.root"),
            ("select option listed twice", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN, privileges=[PD(
                 code="p", value_type=t.PRIVILEGE_TYPE_SELECT, select_options=["x", "x"])]),
             INVALID, "feature.privileges[0].select_options[1]"),
            # -- references
            ("subscription to an unknown plan", "UpsertSubscription",
             sub(plan_code="wb_gold"), INVALID, ["subscription.plan_code", "wb_gold"]),
            ("subscription with an unknown add-on", "UpsertSubscription",
             sub(addons=[t.SubscriptionAddon(addon_code="wb_nope")]), INVALID,
             ["subscription.addons[0].addon_code", "wb_nope"]),
            ("delete a feature a plan uses", "DeleteFeature", a.DeleteFeatureRequest(code="seats"),
             PRECONDITION, "seats"),
            ("delete a feature an override uses", "DeleteFeature",
             a.DeleteFeatureRequest(code="wb_ov_only"), PRECONDITION,
             ["wb_ov_only", "cus_acme"]),
            ("change the type of a used feature", "UpsertFeature",
             feat(code="api_calls", type=t.FEATURE_TYPE_BOOLEAN), PRECONDITION,
             ["feature.type", "api_calls"]),
            ("cancel an unknown subscription", "CancelSubscription",
             a.CancelSubscriptionRequest(customer_id="cus_acme", subscription_id="wb_nope"),
             NOT_FOUND, "subscription_id"),
            ("delete an override that is not there", "DeleteCustomerEntitlement",
             a.DeleteCustomerEntitlementRequest(customer_id="cus_acme", feature_code="sla"),
             NOT_FOUND, None),
            ("usage of an unknown customer", "ReportUsage",
             e.ReportUsageRequest(customer_id="wb_nobody", feature_code="api_calls",
                                  quantity=1, idempotency_key="wb-6"), NOT_FOUND,
             "customer_id"),
            # -- hostile strings and sizes
            ("customer id with a newline", "SetCustomerEntitlement", ov(customer="cus\nacme"),
             INVALID, "customer_id"),
            ("customer id with a space", "UpsertSubscription", sub(customer_id="cus acme"),
             INVALID, "subscription.customer_id"),
            ("feature code with an escape", "UpsertFeature",
             feat(code="wb\x1b[31m", type=t.FEATURE_TYPE_BOOLEAN), INVALID, "feature.code"),
            ("feature code in Cyrillic", "UpsertFeature",
             feat(code="\u0430pi_calls", type=t.FEATURE_TYPE_BOOLEAN), INVALID,
             "feature.code"),
            ("idempotency key with DEL", "ReportUsage",
             e.ReportUsageRequest(customer_id="cus_acme", feature_code="api_calls", quantity=1,
                                  idempotency_key="k\x7f"), INVALID, "idempotency_key"),
            ("1025 grants", "SetPlanEntitlements",
             plan("wb_p", *[G(feature_code="custom_domain")] * 1025), INVALID, "entitlements"),
            ("65 add-ons", "UpsertSubscription",
             sub(addons=[t.SubscriptionAddon(addon_code="audit_pack")] * 65), INVALID,
             "subscription.addons"),
            ("the same add-on twice", "UpsertSubscription",
             sub(addons=[t.SubscriptionAddon(addon_code="audit_pack")] * 2), INVALID,
             "subscription.addons[1].addon_code"),
            ("65 metadata entries", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN,
                  metadata={"k%d" % i: "v" for i in range(65)}), INVALID, "feature.metadata"),
            ("33 privileges", "UpsertFeature",
             feat(code="wb_f", type=t.FEATURE_TYPE_BOOLEAN,
                  privileges=[PD(code="p%d" % i, value_type=1) for i in range(33)]), INVALID,
             "feature.privileges"),
            ("update with nothing to update", "UpdateCustomerEntitlement", upd(), INVALID,
             "nothing to update"),
            ("override without value", "SetCustomerEntitlement",
             a.SetCustomerEntitlementRequest(customer_id="cus_acme", feature_code="api_calls"),
             INVALID, "value"),
            ("upsert without a feature", "UpsertFeature", a.UpsertFeatureRequest(), INVALID,
             "feature"),
            ("import: not JSON", "Import", a.ImportRequest(json="features: [x]"), INVALID, None),
            ("import: 100000 nested arrays", "Import", a.ImportRequest(json="[" * 100000),
             INVALID, None),
            ("import: \\u0000 in a name", "Import",
             a.ImportRequest(json='{"features": [{"code": "x", "type": "boolean",'
                                  ' "name": "a\\u0000b"}]}'), INVALID, None),
            ("import: 1e400", "Import",
             a.ImportRequest(json='{"overrides": [{"customer_id": "c", "feature_code":'
                                  ' "api_calls", "value": 1e400}]}'), INVALID, None),
            ("import: replace with an invalid document", "Import",
             a.ImportRequest(json='{"features": [{"code": "x", "type": "boolean"}],'
                                  ' "plans": {"p": {"entitlements": {"nope": {}}}}}',
                             replace=True), INVALID, "nope"),
            ("import: 5 MiB document", "Import", a.ImportRequest(json=" " * (5 << 20)),
             EXHAUSTED, None),
            # -- hostile wire encodings (raw bytes)
            ("wire: truncated varint", ADMIN + "UpsertFeature", b"\x0a\xff\xff\xff\xff\x0f",
             INVALID, None),
            ("wire: length past the end", ADMIN + "SetPlanEntitlements",
             ld(1, b"wb_p")[:-1] + b"\x1a\x40", INVALID, None),
            ("wire: varint where a message goes", ADMIN + "UpsertFeature", b"\x08\x01", INVALID,
             None),
            ("wire: group wire type", ADMIN + "SetCustomerEntitlement", b"\x0b\x0c", INVALID,
             None),
            ("wire: not UTF-8 in the customer id", ADMIN + "SetCustomerEntitlement",
             ld(1, b"cus_\xff\xfe") + ld(2, b"api_calls") + ld(3, b"\x08\x01"), INVALID,
             "customer_id"),
            ("wire: not UTF-8 in a feature code", ADMIN + "DeleteFeature", ld(1, b"\xc3\x28"),
             INVALID, "code"),
            ("wire: 2^63 quantity", ADMIN + "UpsertSubscription",
             ld(1, ld(1, b"wb_s") + ld(2, b"wb_c") + ld(3, b"free") + b"\x28" +
                varint(1 << 63)), INVALID, "subscription.quantity"),
            ("wire: garbage to usage", CHECKS + "ReportUsage", b"\xff" * 64, INVALID, None),
        ]

    def test_table_changes_nothing(self):
        a = pb["admin"]
        before = self.admin.export()
        st0 = self.admin.status()
        pid = self.d.pid
        n = 0
        for label, rpc, req, code, frags in self.rows():
            with self.subTest(row=label):
                if rpc.startswith("/"):
                    self.assertStatus(code, self.admin.raw, rpc, req, contains=frags)
                else:
                    self.assertStatus(code, getattr(self.admin, rpc), req, contains=frags)
                n += 1
        self.assertGreaterEqual(n, 90)
        after = self.admin.export()
        st1 = self.admin.status()
        self.assertEqual(before.json, after.json, "a refused request changed the state")
        for f in ("features", "plans", "addons", "subscriptions", "overrides", "customers",
                  "aggregates", "pending_boundaries"):
            self.assertEqual(getattr(st0, f), getattr(st1, f), f)
        # Nothing committed, except that an Import refused inside the writer still commits
        # the no-op Tick it rides on (docs/api.md, Import): at most one per Import row.
        imports = sum(1 for r in self.rows() if r[1] == "Import")
        self.assertLessEqual(st1.sequence - st0.sequence, imports)
        self.assertEqual(self.d.pid, pid)
        self.assertTrue(self.d.alive())
        self.assertEqual(self.admin.Health(pb["health"].HealthCheckRequest()).status,
                         pb["health"].HealthCheckResponse.SERVING)
        # The victim of the NUL test below was never touched by the table.
        self.assertEqual(self.admin.GetFeature(a.GetFeatureRequest(code="wb_victim"))
                         .feature.code, "wb_victim")

    # protobuf-c hands strings over NUL-terminated, so an id with an embedded NUL would be cut
    # at it (UpsertFeature "wb_nul\0x" creating "wb_nul", DeleteFeature "wb_victim\0x"
    # deleting "wb_victim"): such strings are refused on the wire, naming the field.
    def test_embedded_nul_is_refused(self):
        t, a = pb["types"], pb["admin"]
        try:
            self.assertStatus(INVALID, self.admin.UpsertFeature, a.UpsertFeatureRequest(
                feature=t.Feature(code="wb_nul\x00x", type=t.FEATURE_TYPE_BOOLEAN)),
                contains="feature.code")
            self.assertStatus(INVALID, self.admin.DeleteFeature,
                              a.DeleteFeatureRequest(code="wb_victim\x00x"), contains="code")
            self.assertStatus(INVALID, self.admin.SetCustomerEntitlement,
                              a.SetCustomerEntitlementRequest(
                                  customer_id="cus_acme", feature_code="sso",
                                  value=t.OverrideValue(bool_value=True), reason="a\x00b"),
                              contains="reason")
        finally:
            # Undo whatever the bug did, so the table test sees the same state either way.
            self.admin.DeleteFeature(a.DeleteFeatureRequest(code="wb_nul"))
            self.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
                code="wb_victim", type=t.FEATURE_TYPE_BOOLEAN)))
            try:
                self.admin.DeleteCustomerEntitlement(a.DeleteCustomerEntitlementRequest(
                    customer_id="cus_acme", feature_code="sso"))
            except grpc.RpcError:
                pass

    # A text field (here an override's reason) that is not UTF-8 would be stored and then
    # carried in proto3 strings that conforming clients refuse to decode: refused on the wire.
    def test_text_not_utf8_is_refused(self):
        a = pb["admin"]
        body = ld(1, b"wb_utf_cus") + ld(2, b"custom_domain") + ld(3, b"\x08\x01") + \
            ld(4, b"bad \xff\xfe reason")
        try:
            self.assertStatus(INVALID, self.admin.raw, ADMIN + "SetCustomerEntitlement", body,
                              contains="reason")
        finally:
            try:
                self.admin.DeleteCustomerEntitlement(a.DeleteCustomerEntitlementRequest(
                    customer_id="wb_utf_cus", feature_code="custom_domain"))
            except grpc.RpcError:
                pass
            self.admin.export()  # fails if the bad override is still stored


if __name__ == "__main__":
    wp.main()
