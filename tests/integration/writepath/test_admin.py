#!/usr/bin/python3
"""integration.writepath.admin: every AdminService RPC through real gRPC, its happy path and
every validation rule docs/api.md gives it.

Method: each RPC has one valid *base* request. Every table row copies the base and breaks ONE
field, so the refusal can only be about that field; the row names the status code and a
fragment of the message (the field's path, e.g. "entitlements[0].privileges.max"). All rows of
an RPC run between two Exports that must be identical (a refused write changes nothing, not
even updated_at), and then the base request itself must succeed and be readable back (the happy
path; that also proves the rows failed for their field, not because the base was bad).

test_grpcio.py (the client engineer's suite) already walks a happy path of each RPC and the
seed flows; this suite is the validation table. One entd, started by the test on a temporary
database, stopped with SIGTERM (exit status 0 required).
"""
import grpc

import wp
from wp import DAY, pb

OK = None
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def clone(msg):
    c = type(msg)()
    c.CopyFrom(msg)
    return c


class AdminValidation(wp.Statuses, wp.DaemonCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t, a = pb["types"], pb["admin"]
        ad = cls.admin
        ad.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wp_m", name="WP metered", type=t.FEATURE_TYPE_METERED)))
        ad.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wp_b", name="WP boolean", type=t.FEATURE_TYPE_BOOLEAN, privileges=[
                t.PrivilegeDef(code="max", value_type=t.PRIVILEGE_TYPE_INTEGER),
                t.PrivilegeDef(code="root", value_type=t.PRIVILEGE_TYPE_BOOLEAN),
                t.PrivilegeDef(code="label", value_type=t.PRIVILEGE_TYPE_STRING),
                t.PrivilegeDef(code="tier", value_type=t.PRIVILEGE_TYPE_SELECT,
                               select_options=["basic", "pro"])])))
        ad.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wp_s", name="WP static", type=t.FEATURE_TYPE_STATIC)))
        # Features referenced in exactly one way each, for the DeleteFeature rows.
        for code in ("wp_in_plan", "wp_in_addon", "wp_in_sub", "wp_in_override"):
            ad.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
                code=code, type=t.FEATURE_TYPE_BOOLEAN)))
        ad.SetPlanEntitlements(a.SetEntitlementsRequest(code="wp_plan", name="WP", entitlements=[
            t.Grant(feature_code="wp_m", usage_limit=10,
                    usage_reset_period=t.RESET_PERIOD_MONTHLY),
            t.Grant(feature_code="wp_b", privileges=[
                t.PrivilegeValue(code="max", int_value=3),
                t.PrivilegeValue(code="tier", string_value="basic")]),
            t.Grant(feature_code="wp_in_plan")]))
        ad.SetAddonEntitlements(a.SetEntitlementsRequest(code="wp_addon", entitlements=[
            t.Grant(feature_code="wp_m", usage_limit=5,
                    usage_reset_period=t.RESET_PERIOD_MONTHLY),
            t.Grant(feature_code="wp_in_addon")]))
        ad.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id="wp_sub", customer_id="wp_cus", plan_code="wp_plan",
            addons=[t.SubscriptionAddon(addon_code="wp_addon", quantity=1)],
            entitlements=[t.Grant(feature_code="wp_in_sub")])))
        ad.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
            customer_id="wp_cus", feature_code="wp_in_override",
            value=t.OverrideValue(bool_value=True)))

    # ---- the table runner --------------------------------------------------------------

    def table(self, rpc, base, rows):
        """Run every row (label, mutate(req), code, fragments) against rpc, with the state
        compared before and after; returns nothing. Rows with code OK must succeed (boundary
        values that are allowed) and are run after the Export comparison."""
        call = getattr(self.admin, rpc)
        before = self.admin.export().json
        ok_rows = []
        for label, mutate, code, frags in rows:
            req = clone(base)
            mutate(req)
            if code is OK:
                ok_rows.append((label, req))
                continue
            with self.subTest(rpc=rpc, row=label):
                self.assertStatus(code, call, req, contains=frags)
        after = self.admin.export().json
        self.assertEqual(before, after, "%s: a refused request changed the state" % rpc)
        for label, req in ok_rows:
            with self.subTest(rpc=rpc, row=label):
                call(req)

    # ---- features --------------------------------------------------------------------

    def test_upsert_feature(self):
        t, a = pb["types"], pb["admin"]
        base = a.UpsertFeatureRequest(feature=t.Feature(
            code="wp_f1", name="F1", description="d", type=t.FEATURE_TYPE_BOOLEAN,
            unit_singular="u", unit_plural="us", metadata={"k": "v"},
            privileges=[t.PrivilegeDef(code="tier", value_type=t.PRIVILEGE_TYPE_SELECT,
                                       select_options=["a", "b"])]))

        def f(fn):
            return lambda r: fn(r.feature)

        def set_(field, value):
            return f(lambda x: setattr(x, field, value))

        def priv(**kw):
            return f(lambda x: x.privileges[0].MergeFrom(t.PrivilegeDef(**kw)))

        def replace_privs(defs):
            def m(x):
                del x.privileges[:]
                x.privileges.extend(defs)
            return f(m)
        P = t.PrivilegeDef
        rows = [
            ("no feature", lambda r: r.ClearField("feature"), INVALID, "feature: required"),
            ("empty code", set_("code", ""), INVALID, "feature.code"),
            ("code 256 bytes", set_("code", "c" * 256), INVALID, "feature.code"),
            ("code with a space", set_("code", "a b"), INVALID, "feature.code"),
            ("code not ASCII", set_("code", "caf\u00e9"), INVALID, "feature.code"),
            ("type unspecified", set_("type", t.FEATURE_TYPE_UNSPECIFIED), INVALID,
             "feature.type"),
            ("type 99", set_("type", 99), INVALID, "feature.type"),
            ("name 1025 bytes", set_("name", "n" * 1025), INVALID, "feature.name"),
            ("description 1025 bytes", set_("description", "d" * 1025), INVALID,
             "feature.description"),
            ("unit_singular 1025 bytes", set_("unit_singular", "u" * 1025), INVALID,
             "feature.unit_singular"),
            ("unit_plural 1025 bytes", set_("unit_plural", "u" * 1025), INVALID,
             "feature.unit_plural"),
            ("33 privileges", replace_privs([P(code="p%d" % i, value_type=1) for i in range(33)]),
             INVALID, "feature.privileges"),
            ("privilege without code", replace_privs([P(value_type=1)]), INVALID,
             "feature.privileges[0].code"),
            ("privilege code 256 bytes", replace_privs([P(code="p" * 256, value_type=1)]),
             INVALID, "feature.privileges[0].code"),
            ("duplicate privilege codes", replace_privs([P(code="p", value_type=1),
                                                         P(code="p", value_type=2)]),
             INVALID, ["feature.privileges[1].code", "'p'"]),
            ("privilege type unspecified", replace_privs([P(code="p")]), INVALID,
             "feature.privileges[0].value_type"),
            ("privilege type 9", replace_privs([P(code="p", value_type=9)]), INVALID,
             "feature.privileges[0].value_type"),
            ("select without options", replace_privs([P(code="p", value_type=4)]), INVALID,
             "feature.privileges[0].select_options"),
            ("options on an integer", replace_privs([P(code="p", value_type=1,
                                                       select_options=["x"])]),
             INVALID, "feature.privileges[0].select_options"),
            ("duplicate options", priv(select_options=["a"]), INVALID,
             "feature.privileges[0].select_options[2]"),
            ("65 options", replace_privs([P(code="p", value_type=4,
                                            select_options=["o%d" % i for i in range(65)])]),
             INVALID, "feature.privileges[0].select_options"),
            ("privilege name 1025 bytes", priv(name="n" * 1025), INVALID,
             "feature.privileges[0].name"),
            # Changing the type of a feature that plans/add-ons/subscriptions/overrides use.
            ("type change of a used feature",
             lambda r: r.feature.MergeFrom(t.Feature(code="wp_m", type=t.FEATURE_TYPE_STATIC)),
             PRECONDITION, ["feature.type", "wp_m"]),
            # Allowed edges: 255-byte code, 1024-byte texts, 32 privileges, 64 options.
            ("code 255 bytes", set_("code", "c" * 255), OK, None),
            ("name 1024 bytes", set_("name", "n" * 1024), OK, None),
            ("32 privileges", lambda r: r.feature.MergeFrom(t.Feature(code="wp_f32")) or
             replace_privs([P(code="p%d" % i, value_type=1) for i in range(32)])(r), OK, None),
            ("64 options", lambda r: r.feature.MergeFrom(t.Feature(code="wp_f64")) or
             replace_privs([P(code="p", value_type=4,
                              select_options=["o%d" % i for i in range(64)])])(r), OK, None),
        ]
        self.table("UpsertFeature", base, rows)
        # Happy path: stored as sent, stamped; a second upsert keeps created_at.
        r1 = self.admin.UpsertFeature(base)
        self.assertEqual((r1.feature.code, r1.feature.name, r1.feature.metadata["k"]),
                         ("wp_f1", "F1", "v"))
        self.assertEqual(list(r1.feature.privileges[0].select_options), ["a", "b"])
        self.assertGreater(r1.feature.created_at, 0)
        got = self.admin.GetFeature(a.GetFeatureRequest(code="wp_f1")).feature
        self.assertEqual(got.unit_plural, "us")
        r2 = self.admin.UpsertFeature(base)
        self.assertEqual(r2.feature.created_at, r1.feature.created_at)
        self.assertGreater(r2.sequence, r1.sequence)
        # An unused feature may change its type.
        ch = clone(base)
        ch.feature.type = t.FEATURE_TYPE_STATIC
        self.assertEqual(self.admin.UpsertFeature(ch).feature.type, t.FEATURE_TYPE_STATIC)

    def test_get_list_delete_feature(self):
        a = pb["admin"]
        self.table("GetFeature", a.GetFeatureRequest(code="wp_m"), [
            ("empty code", lambda r: setattr(r, "code", ""), INVALID, "code: required"),
            ("code 256 bytes", lambda r: setattr(r, "code", "c" * 256), INVALID, "code"),
            ("unknown", lambda r: setattr(r, "code", "wp_nope"), NOT_FOUND,
             ["code", "wp_nope"]),
        ])
        self.assertEqual(self.admin.GetFeature(a.GetFeatureRequest(code="wp_m")).feature.code,
                         "wp_m")
        self.table("ListFeatures", a.ListFeaturesRequest(page_size=2), [
            ("page_size 1001", lambda r: setattr(r, "page_size", 1001), INVALID, "page_size"),
            ("page_token with a space", lambda r: setattr(r, "page_token", "a b"), INVALID,
             "page_token"),
            ("page_size 1000", lambda r: setattr(r, "page_size", 1000), OK, None),
        ])
        # Happy path: walking pages of 2 from a token lists codes in order, each once.
        seen, token = [], ""
        while True:
            page = self.admin.ListFeatures(a.ListFeaturesRequest(page_size=2, page_token=token))
            self.assertLessEqual(len(page.features), 2)
            seen += [f.code for f in page.features]
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(seen, sorted(set(seen)))
        self.assertTrue({"wp_m", "wp_b", "wp_s"} <= set(seen))
        # DeleteFeature: refused while referenced, in each of the four ways, naming the user.
        self.table("DeleteFeature", a.DeleteFeatureRequest(code="wp_unused"), [
            ("empty code", lambda r: setattr(r, "code", ""), INVALID, "code: required"),
            ("code 256 bytes", lambda r: setattr(r, "code", "c" * 256), INVALID, "code"),
            ("used by a plan", lambda r: setattr(r, "code", "wp_in_plan"), PRECONDITION,
             ["wp_in_plan", "wp_plan"]),
            ("used by an add-on", lambda r: setattr(r, "code", "wp_in_addon"), PRECONDITION,
             ["wp_in_addon", "wp_addon"]),
            ("used by a subscription grant", lambda r: setattr(r, "code", "wp_in_sub"),
             PRECONDITION, ["wp_in_sub", "wp_sub"]),
            ("used by an override", lambda r: setattr(r, "code", "wp_in_override"),
             PRECONDITION, ["wp_in_override", "wp_cus"]),
        ])
        t = pb["types"]
        self.assertFalse(self.admin.DeleteFeature(a.DeleteFeatureRequest(code="wp_unused")).deleted)
        self.admin.UpsertFeature(a.UpsertFeatureRequest(feature=t.Feature(
            code="wp_unused", type=t.FEATURE_TYPE_BOOLEAN)))
        d = self.admin.DeleteFeature(a.DeleteFeatureRequest(code="wp_unused"))
        self.assertTrue(d.deleted)
        self.assertStatus(NOT_FOUND, self.admin.GetFeature, a.GetFeatureRequest(code="wp_unused"))

    # ---- plans and add-ons -------------------------------------------------------------

    def grant_rows(self):
        """Rows over SetEntitlementsRequest; grant 0 is wp_m, 1 is wp_b, 2 is wp_s."""
        t = pb["types"]
        PV = t.PrivilegeValue

        def g(i, fn):
            return lambda r: fn(r.entitlements[i])

        def privs(values):
            def m(x):
                del x.privileges[:]
                x.privileges.extend(values)
            return g(1, m)
        return [
            ("empty code", lambda r: setattr(r, "code", ""), INVALID, "code: required"),
            ("code 256 bytes", lambda r: setattr(r, "code", "c" * 256), INVALID, "code"),
            ("code with a tab", lambda r: setattr(r, "code", "a\tb"), INVALID, "code"),
            ("name 1025 bytes", lambda r: setattr(r, "name", "n" * 1025), INVALID, "name"),
            ("grant without feature", g(0, lambda x: setattr(x, "feature_code", "")), INVALID,
             "entitlements[0].feature_code"),
            ("unknown feature", g(0, lambda x: setattr(x, "feature_code", "wp_nope")), INVALID,
             ["entitlements[0].feature_code", "wp_nope"]),
            ("feature granted twice", g(2, lambda x: setattr(x, "feature_code", "wp_m")),
             INVALID, ["entitlements[2].feature_code", "wp_m"]),
            ("negative usage_limit", g(0, lambda x: setattr(x, "usage_limit", -1)), INVALID,
             "entitlements[0].usage_limit"),
            ("reset period 99", g(0, lambda x: setattr(x, "usage_reset_period", 99)), INVALID,
             "entitlements[0].usage_reset_period"),
            ("33 static values", g(2, lambda x: x.static_values.extend(
                ["v%d" % i for i in range(32)])), INVALID, "entitlements[2].static_values"),
            ("static value 1025 bytes", g(2, lambda x: x.static_values.__setitem__(0, "v" * 1025)),
             INVALID, "entitlements[2].static_values[0]"),
            ("undeclared privilege", privs([PV(code="nope", int_value=1)]), INVALID,
             "entitlements[1].privileges.nope"),
            ("string for an integer", privs([PV(code="max", string_value="ten")]), INVALID,
             "entitlements[1].privileges.max"),
            ("bool for an integer", privs([PV(code="max", bool_value=True)]), INVALID,
             "entitlements[1].privileges.max"),
            ("integer for a boolean", privs([PV(code="root", int_value=1)]), INVALID,
             "entitlements[1].privileges.root"),
            ("integer for a string", privs([PV(code="label", int_value=1)]), INVALID,
             "entitlements[1].privileges.label"),
            ("no value", privs([PV(code="max")]), INVALID, "entitlements[1].privileges.max"),
            ("echoed value_type wrong", privs([PV(code="max", int_value=1,
                                                  value_type=t.PRIVILEGE_TYPE_STRING)]),
             INVALID, "entitlements[1].privileges.max"),
            ("select outside options", privs([PV(code="tier", string_value="gold")]), INVALID,
             ["entitlements[1].privileges.tier", "gold"]),
            ("select option in other case", privs([PV(code="tier", string_value="PRO")]),
             INVALID, "entitlements[1].privileges.tier"),
            ("privilege given twice", privs([PV(code="max", int_value=1),
                                             PV(code="max", int_value=2)]),
             INVALID, "entitlements[1].privileges.max"),
            ("string privilege 1025 bytes", privs([PV(code="label", string_value="l" * 1025)]),
             INVALID, "entitlements[1].privileges.label"),
            ("name 1024 bytes", lambda r: setattr(r, "name", "n" * 1024), OK, None),
        ]

    def grants_base(self, code):
        t, a = pb["types"], pb["admin"]
        return a.SetEntitlementsRequest(code=code, name="N-" + code, entitlements=[
            t.Grant(feature_code="wp_m", usage_limit=3, is_soft_limit=True,
                    usage_reset_period=t.RESET_PERIOD_WEEKLY),
            t.Grant(feature_code="wp_b", privileges=[
                t.PrivilegeValue(code="max", int_value=2),
                t.PrivilegeValue(code="root", bool_value=True),
                t.PrivilegeValue(code="label", string_value="x"),
                t.PrivilegeValue(code="tier", string_value="pro")]),
            t.Grant(feature_code="wp_s", static_values=["gold"])])

    def check_grants(self, resp, code):
        self.assertEqual(resp.code, code)
        g = {x.feature_code: x for x in resp.entitlements}
        self.assertEqual(g["wp_m"].usage_limit, 3)
        self.assertTrue(g["wp_m"].is_soft_limit)
        self.assertEqual({p.code: p.WhichOneof("value") for p in g["wp_b"].privileges},
                         {"max": "int_value", "root": "bool_value", "label": "string_value",
                          "tier": "string_value"})
        self.assertEqual(list(g["wp_s"].static_values), ["gold"])

    def test_plan_and_addon_entitlements(self):
        a = pb["admin"]
        for kind in ("Plan", "Addon"):
            for verb in ("Set", "Patch"):
                rpc = "%s%sEntitlements" % (verb, kind)
                # Patch merges into the existing fixture; Set creates a new one.
                code = {"Plan": "wp_plan", "Addon": "wp_addon"}[kind] if verb == "Patch" \
                    else "wp_new_" + kind.lower()
                base = self.grants_base(code)
                self.table(rpc, base, self.grant_rows())
                r = getattr(self.admin, rpc)(base)
                self.check_grants(r, code)
                got = getattr(self.admin, "Get%sEntitlements" % kind)(
                    a.GetEntitlementsRequest(code=code))
                self.check_grants(got, code)
                if verb == "Patch":
                    # The fixture's other grants survived the merge.
                    self.assertIn("wp_in_" + kind.lower(),
                                  [x.feature_code for x in got.entitlements])
            for verb in ("Get", "Delete"):
                rpc = "%s%sEntitlements" % (verb, kind)
                rows = [("empty code", lambda r: setattr(r, "code", ""), INVALID,
                         "code: required"),
                        ("code 256 bytes", lambda r: setattr(r, "code", "c" * 256), INVALID,
                         "code")]
                if verb == "Get":
                    rows.append(("unknown", lambda r: setattr(r, "code", "wp_nope"), NOT_FOUND,
                                 ["code", "wp_nope"]))
                self.table(rpc, a.GetEntitlementsRequest(code="wp_new_" + kind.lower()), rows)
            # Delete: the unused new one goes; a second delete finds nothing.
            dele = getattr(self.admin, "Delete%sEntitlements" % kind)
            self.assertTrue(dele(a.GetEntitlementsRequest(code="wp_new_" + kind.lower())).deleted)
            self.assertFalse(dele(a.GetEntitlementsRequest(code="wp_new_" + kind.lower())).deleted)
            self.assertStatus(NOT_FOUND, getattr(self.admin, "Get%sEntitlements" % kind),
                              a.GetEntitlementsRequest(code="wp_new_" + kind.lower()))

    # ---- subscriptions -------------------------------------------------------------------

    def test_upsert_subscription(self):
        t, a = pb["types"], pb["admin"]
        now = wp.now_ms()
        # A plan and add-on of its own: test_plan_and_addon_entitlements patches the shared ones.
        self.admin.SetPlanEntitlements(a.SetEntitlementsRequest(code="wp_sub_plan", entitlements=[
            t.Grant(feature_code="wp_m", usage_limit=10)]))
        self.admin.SetAddonEntitlements(a.SetEntitlementsRequest(
            code="wp_sub_addon", entitlements=[t.Grant(feature_code="wp_m", usage_limit=5)]))
        base = a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id="wp_sub2", customer_id="wp_cus2", plan_code="wp_sub_plan", quantity=2,
            addons=[t.SubscriptionAddon(addon_code="wp_sub_addon", quantity=2)],
            active_from=now - DAY, ends_at=now + 30 * DAY, billing_anchor=now - DAY,
            entitlements=[t.Grant(feature_code="wp_s", static_values=["sub"])]))

        def s(field, value):
            return lambda r: setattr(r.subscription, field, value)

        def sub_grant(fn):
            return lambda r: fn(r.subscription.entitlements[0])
        rows = [
            ("no subscription", lambda r: r.ClearField("subscription"), INVALID,
             "subscription: required"),
            ("empty id", s("id", ""), INVALID, "subscription.id"),
            ("id 256 bytes", s("id", "i" * 256), INVALID, "subscription.id"),
            ("id with a space", s("id", "a b"), INVALID, "subscription.id"),
            ("empty customer", s("customer_id", ""), INVALID, "subscription.customer_id"),
            ("customer 201 bytes", s("customer_id", "c" * 201), INVALID,
             "subscription.customer_id"),
            ("customer with DEL", s("customer_id", "a\x7fb"), INVALID,
             "subscription.customer_id"),
            ("no plan", s("plan_code", ""), INVALID, "subscription.plan_code"),
            ("unknown plan", s("plan_code", "wp_gold"), INVALID,
             ["subscription.plan_code", "wp_gold"]),
            ("unknown add-on", lambda r: setattr(r.subscription.addons[0], "addon_code", "wp_x"),
             INVALID, ["subscription.addons[0].addon_code", "wp_x"]),
            ("negative add-on quantity",
             lambda r: setattr(r.subscription.addons[0], "quantity", -2), INVALID,
             "subscription.addons[0].quantity"),
            ("negative quantity", s("quantity", -1), INVALID, "subscription.quantity"),
            ("negative active_from", s("active_from", -1), INVALID, "subscription.active_from"),
            ("negative ends_at", s("ends_at", -1), INVALID, "subscription.ends_at"),
            ("ends before it starts", s("ends_at", now - 2 * DAY), INVALID,
             "subscription.ends_at"),
            ("ends when it starts", s("ends_at", now - DAY), INVALID, "subscription.ends_at"),
            ("negative billing_anchor", s("billing_anchor", -5), INVALID,
             "subscription.billing_anchor"),
            ("grant of an unknown feature",
             sub_grant(lambda x: setattr(x, "feature_code", "wp_nope")), INVALID,
             ["subscription.entitlements[0].feature_code", "wp_nope"]),
            ("grant with a bad privilege",
             sub_grant(lambda x: (setattr(x, "feature_code", "wp_b"), x.ClearField(
                 "static_values"), x.privileges.add(code="tier", string_value="gold"))),
             INVALID, "subscription.entitlements[0].privileges.tier"),
            ("grant with reset period 42",
             sub_grant(lambda x: (setattr(x, "feature_code", "wp_m"),
                                  setattr(x, "usage_reset_period", 42))),
             INVALID, "subscription.entitlements[0].usage_reset_period"),
            ("customer 200 bytes", lambda r: (s("customer_id", "c" * 200)(r),
                                              s("id", "wp_sub200")(r)), OK, None),
        ]
        self.table("UpsertSubscription", base, rows)
        r = self.admin.UpsertSubscription(base)
        sub = r.subscription
        self.assertEqual((sub.id, sub.customer_id, sub.plan_code, sub.quantity),
                         ("wp_sub2", "wp_cus2", "wp_sub_plan", 2))
        self.assertEqual(sub.ends_at, now + 30 * DAY)
        self.assertGreater(sub.created_at, 0)
        # limit = plan 10 x 2 + add-on 5 x 2, a hard limit.
        c = self.admin.check("wp_cus2", "wp_m", 30, min_sequence=r.sequence)
        self.assertEqual((c.allowed, c.usage.limit), (True, 30))
        c = self.admin.check("wp_cus2", "wp_m", 31, min_sequence=r.sequence)
        self.assertEqual(c.reason, wp.reason("LIMIT_EXCEEDED"))

    def test_cancel_subscription(self):
        t, a = pb["types"], pb["admin"]
        self.admin.UpsertSubscription(a.UpsertSubscriptionRequest(subscription=t.Subscription(
            id="wp_sub3", customer_id="wp_cus3", plan_code="wp_plan")))
        end = wp.now_ms() + 5 * DAY
        base = a.CancelSubscriptionRequest(customer_id="wp_cus3", subscription_id="wp_sub3",
                                           at=end)
        self.table("CancelSubscription", base, [
            ("empty customer", lambda r: setattr(r, "customer_id", ""), INVALID, "customer_id"),
            ("customer 201 bytes", lambda r: setattr(r, "customer_id", "c" * 201), INVALID,
             "customer_id"),
            ("empty subscription", lambda r: setattr(r, "subscription_id", ""), INVALID,
             "subscription_id"),
            ("negative at", lambda r: setattr(r, "at", -1), INVALID, "at"),
            ("unknown subscription", lambda r: setattr(r, "subscription_id", "wp_nope"),
             NOT_FOUND, ["subscription_id", "wp_nope"]),
            ("another customer's subscription", lambda r: setattr(r, "customer_id", "wp_cus"),
             NOT_FOUND, "subscription_id"),
        ])
        r = self.admin.CancelSubscription(base)
        self.assertEqual(r.subscription.ends_at, end)
        self.assertEqual(self.admin.check("wp_cus3", "wp_m", at=end,
                                          min_sequence=r.sequence).reason, wp.reason("EXPIRED"))

    # ---- overrides ---------------------------------------------------------------------

    def test_set_customer_entitlement(self):
        t, a = pb["types"], pb["admin"]
        now = wp.now_ms()
        base = a.SetCustomerEntitlementRequest(
            customer_id="wp_cus", feature_code="wp_m", value=t.OverrideValue(number_value=50),
            reason="support ticket 7", expires_at=now + 30 * DAY)
        V = t.OverrideValue
        PV = t.PrivilegeValue

        def s(field, value):
            return lambda r: setattr(r, field, value)

        def val(**kw):
            return lambda r: r.value.CopyFrom(V(**kw))

        def on_b(*privs):
            def m(r):
                r.feature_code = "wp_b"
                r.value.CopyFrom(V(bool_value=True))
                r.privileges.extend(privs)
            return m

        def on_s(values):
            def m(r):
                r.feature_code = "wp_s"
                r.value.CopyFrom(V(bool_value=True))
                r.static_values.extend(values)
            return m
        rows = [
            ("empty customer", s("customer_id", ""), INVALID, "customer_id"),
            ("customer 201 bytes", s("customer_id", "c" * 201), INVALID, "customer_id"),
            ("customer with a newline", s("customer_id", "a\nb"), INVALID, "customer_id"),
            ("empty feature", s("feature_code", ""), INVALID, "feature_code"),
            ("feature 256 bytes", s("feature_code", "f" * 256), INVALID, "feature_code"),
            ("unknown feature", s("feature_code", "wp_nope"), INVALID,
             ["feature_code", "wp_nope"]),
            ("no value", lambda r: r.ClearField("value"), INVALID, "value"),
            ("empty value", lambda r: r.value.Clear(), INVALID, "value"),
            ("negative limit", val(number_value=-5), INVALID, "value.number_value"),
            ("fractional limit", val(number_value=1.5), INVALID, "value.number_value"),
            ("NaN", val(number_value=float("nan")), INVALID, "value.number_value"),
            ("infinity", val(number_value=float("inf")), INVALID, "value.number_value"),
            ("1e30", val(number_value=1e30), INVALID, "value.number_value"),
            ("reason 1025 bytes", s("reason", "r" * 1025), INVALID, "reason"),
            ("negative expires_at", s("expires_at", -1), INVALID, "expires_at"),
            ("expires in the past", s("expires_at", now - DAY), INVALID, "expires_at"),
            ("expires before it starts", lambda r: (setattr(r, "active_from", now + 40 * DAY)),
             INVALID, "expires_at"),
            ("expires when it starts", s("active_from", now + 30 * DAY), INVALID, "expires_at"),
            ("negative active_from", s("active_from", -1), INVALID, "active_from"),
            ("number on a static feature", lambda r: setattr(r, "feature_code", "wp_s"),
             INVALID, ["value", "wp_s"]),
            ("unlimited on a boolean", lambda r: (on_b()(r), setattr(r, "unlimited", True)),
             INVALID, "unlimited"),
            ("undeclared privilege", on_b(PV(code="nope", int_value=1)), INVALID,
             "privileges.nope"),
            ("string for an integer privilege", on_b(PV(code="max", string_value="x")), INVALID,
             "privileges.max"),
            ("select outside options", on_b(PV(code="tier", string_value="gold")), INVALID,
             ["privileges.tier", "gold"]),
            ("privilege twice", on_b(PV(code="max", int_value=1), PV(code="max", int_value=1)),
             INVALID, "privileges.max"),
            ("static value 1025 bytes", on_s(["v" * 1025]), INVALID, "static_values[0]"),
            ("33 static values", on_s(["v%d" % i for i in range(33)]), INVALID,
             "static_values"),
            ("reason 1024 bytes", lambda r: (s("reason", "r" * 1024)(r),
                                             s("feature_code", "wp_b")(r),
                                             val(bool_value=True)(r)), OK, None),
        ]
        self.table("SetCustomerEntitlement", base, rows)
        r = self.admin.SetCustomerEntitlement(base)
        e = r.entitlement
        self.assertEqual((e.customer_id, e.feature_code, e.reason, e.expires_at),
                         ("wp_cus", "wp_m", "support ticket 7", now + 30 * DAY))
        self.assertEqual(e.value.number_value, 50)
        c = self.admin.check("wp_cus", "wp_m", 50, min_sequence=r.sequence)
        self.assertTrue(c.override_applied)
        self.assertEqual(c.usage.limit, 50)
        listed = self.admin.ListCustomerEntitlements(
            a.ListCustomerEntitlementsRequest(customer_id="wp_cus")).entitlements
        self.assertIn(("wp_m", "support ticket 7"), [(o.feature_code, o.reason) for o in listed])

    def test_update_customer_entitlement(self):
        a = pb["admin"]
        from google.protobuf import wrappers_pb2 as w
        now = wp.now_ms()
        base = a.UpdateCustomerEntitlementRequest(
            customer_id="wp_cus4", feature_code="wp_m", quantity=w.Int64Value(value=40),
            quantity_used=w.Int64Value(value=4), active_from=w.Int64Value(value=now - DAY),
            expiry_at=w.Int64Value(value=now + 9 * DAY))

        def s(field, value):
            return lambda r: getattr(r, field).CopyFrom(w.Int64Value(value=value))
        rows = [
            ("nothing to update", lambda r: [r.ClearField(f) for f in (
                "quantity", "quantity_used", "active_from", "expiry_at")], INVALID,
             "nothing to update"),
            ("empty customer", lambda r: setattr(r, "customer_id", ""), INVALID, "customer_id"),
            ("customer 201 bytes", lambda r: setattr(r, "customer_id", "c" * 201), INVALID,
             "customer_id"),
            ("empty feature", lambda r: setattr(r, "feature_code", ""), INVALID,
             "feature_code"),
            ("feature 256 bytes", lambda r: setattr(r, "feature_code", "f" * 256), INVALID,
             "feature_code"),
            ("unknown feature", lambda r: setattr(r, "feature_code", "wp_nope"), INVALID,
             ["feature_code", "wp_nope"]),
            ("negative quantity", s("quantity", -1), INVALID, "quantity"),
            ("negative quantity_used", s("quantity_used", -1), INVALID, "quantity_used"),
            ("negative active_from", s("active_from", -1), INVALID, "active_from"),
            ("negative expiry_at", s("expiry_at", -1), INVALID, "expiry_at"),
            ("expiry before activation", s("active_from", now + 10 * DAY), INVALID,
             "expiry_at"),
        ]
        self.table("UpdateCustomerEntitlement", base, rows)
        r = self.admin.UpdateCustomerEntitlement(base)
        e = r.entitlement
        self.assertEqual((e.quantity.value, e.quantity_used, e.expires_at),
                         (40, 4, now + 9 * DAY))
        c = self.admin.check("wp_cus4", "wp_m", 36, min_sequence=r.sequence)
        self.assertEqual((c.allowed, c.usage.limit, c.usage.used), (True, 40, 4))
        # Only what is sent changes.
        r = self.admin.UpdateCustomerEntitlement(a.UpdateCustomerEntitlementRequest(
            customer_id="wp_cus4", feature_code="wp_m", quantity=w.Int64Value(value=41)))
        self.assertEqual((r.entitlement.quantity.value, r.entitlement.expires_at),
                         (41, now + 9 * DAY))

    def test_delete_and_list_customer_entitlements(self):
        t, a = pb["types"], pb["admin"]
        self.admin.SetCustomerEntitlement(a.SetCustomerEntitlementRequest(
            customer_id="wp_cus5", feature_code="wp_b", value=t.OverrideValue(bool_value=False),
            reason="off"))
        self.table("DeleteCustomerEntitlement",
                   a.DeleteCustomerEntitlementRequest(customer_id="wp_cus5", feature_code="wp_b"),
                   [("empty customer", lambda r: setattr(r, "customer_id", ""), INVALID,
                     "customer_id"),
                    ("customer 201 bytes", lambda r: setattr(r, "customer_id", "c" * 201),
                     INVALID, "customer_id"),
                    ("empty feature", lambda r: setattr(r, "feature_code", ""), INVALID,
                     "feature_code"),
                    ("no such override", lambda r: setattr(r, "feature_code", "wp_m"),
                     NOT_FOUND, None),
                    ("unknown customer", lambda r: setattr(r, "customer_id", "wp_nobody"),
                     NOT_FOUND, None)])
        self.table("ListCustomerEntitlements",
                   a.ListCustomerEntitlementsRequest(customer_id="wp_cus5"),
                   [("empty customer", lambda r: setattr(r, "customer_id", ""), INVALID,
                     "customer_id"),
                    ("customer 201 bytes", lambda r: setattr(r, "customer_id", "c" * 201),
                     INVALID, "customer_id"),
                    ("unknown customer", lambda r: setattr(r, "customer_id", "wp_nobody"),
                     NOT_FOUND, ["customer_id", "wp_nobody"])])
        lst = self.admin.ListCustomerEntitlements(
            a.ListCustomerEntitlementsRequest(customer_id="wp_cus5")).entitlements
        self.assertEqual([(o.feature_code, o.reason) for o in lst], [("wp_b", "off")])
        d = self.admin.DeleteCustomerEntitlement(
            a.DeleteCustomerEntitlementRequest(customer_id="wp_cus5", feature_code="wp_b"))
        self.assertTrue(d.deleted)
        self.assertStatus(NOT_FOUND, self.admin.DeleteCustomerEntitlement,
                          a.DeleteCustomerEntitlementRequest(customer_id="wp_cus5",
                                                             feature_code="wp_b"))

    # ---- import, export, status ----------------------------------------------------------

    def test_import_export_status(self):
        a = pb["admin"]
        good = ('{"features": [{"code": "wp_imp", "type": "metered"}], "plans": {"wp_imp_plan":'
                ' {"entitlements": {"wp_imp": {"usage_limit": 7}}}}, "subscriptions": [{"id":'
                ' "wp_imp_sub", "customer_id": "wp_imp_cus", "plan_code": "wp_imp_plan"}]}')
        base = a.ImportRequest(json=good)

        def j(doc):
            return lambda r: setattr(r, "json", doc)
        rows = [
            ("empty json", j(""), INVALID, "json"),
            ("syntax error", j('{"features": ['), INVALID, "line 1"),
            ("not an object", j("[]"), INVALID, None),
            ("unknown key", j('{"colour": 1}'), INVALID, "colour"),
            ("features not a list", j('{"features": 5}'), INVALID, "features"),
            ("unknown feature type", j('{"features": [{"code": "x", "type": "nope"}]}'),
             INVALID, "features[0].type"),
            ("grant of an unknown feature",
             j('{"plans": {"p": {"entitlements": {"wp_nope": {}}}}}'), INVALID,
             ["plans.p", "wp_nope"]),
            ("bad select value in a plan",
             j('{"plans": {"p": {"entitlements": {"wp_b": {"tier": "gold"}}}}}'), INVALID,
             ["plans.p", "tier"]),
            ("subscription to an unknown plan",
             j('{"subscriptions": [{"id": "s", "customer_id": "c", "plan_code": "wp_gold"}]}'),
             INVALID, ["subscriptions[0]", "wp_gold"]),
            # All or nothing: the first half is valid, the second is not; replace=true must not
            # have wiped anything either.
            ("half valid",
             j('{"features": [{"code": "wp_half", "type": "boolean"}], "plans": {"p2":'
               ' {"entitlements": {"wp_nope": {}}}}}'), INVALID, "wp_nope"),
            ("half valid with replace",
             lambda r: (j('{"features": [{"code": "wp_half", "type": "boolean"}],'
                          ' "plans": {"p2": {"entitlements": {"wp_nope": {}}}}}')(r),
                        setattr(r, "replace", True)), INVALID, "wp_nope"),
        ]
        self.table("Import", base, rows)
        self.assertStatus(NOT_FOUND, self.admin.GetFeature, a.GetFeatureRequest(code="wp_half"))
        st0 = self.admin.status()
        im = self.admin.Import(base)
        self.assertGreaterEqual(im.changes, 3)
        self.assertGreater(im.sequence, st0.sequence)
        c = self.admin.check("wp_imp_cus", "wp_imp", 7, min_sequence=im.sequence)
        self.assertEqual((c.allowed, c.usage.limit), (True, 7))
        st = self.admin.status()
        self.assertEqual((st.features, st.plans, st.subscriptions),
                         (st0.features + 1, st0.plans + 1, st0.subscriptions + 1))
        self.assertGreaterEqual(st.sequence, im.sequence)
        self.assertGreater(st.map_size_bytes, st.db_size_bytes)
        ex = self.admin.export()
        self.assertIn('"wp_imp_sub"', ex.json)
        self.assertGreaterEqual(ex.sequence, im.sequence)


if __name__ == "__main__":
    wp.main()
