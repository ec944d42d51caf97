/*
 * Admin writes: validate what is cheap, wrap the request in an ent.v1.Event, hand it to the
 * writer, and answer from the writer's callback once the group holding it has committed.
 *
 * Validation here is deliberately shallow: required identifiers present and well-formed, numbers
 * in range, created_at/updated_at coming from clients dropped, so an obviously bad request never
 * costs a place in a write transaction. Everything that depends on the stored state or on the
 * structure of grants (unknown features, privilege types, select options, windows) is left to
 * ent_store_apply, the one validator the offline import shares; it names the offending field the
 * same way.
 *
 * Lifetimes: the request was unpacked into the call's arena and the event points into it; the
 * struct admin_write holding the event and the writer request is allocated from the same arena,
 * so all of it stays valid until the callback has answered the call. res->object (the stored
 * object echoed back) is only valid during the callback, which is why the response is packed
 * there: ent_rpc_call_reply packs synchronously.
 */
#include <math.h>
#include <string.h>

#include "rpc/admin.h"

/*
 * One write in flight. The callback runs on the writer thread while the call's own thread no
 * longer touches the call (its handler returned), so the call arena is used by one thread at a
 * time even though the threads differ.
 */
struct admin_write {
	struct ent_writer_req req;
	Ent__V1__Event ev;
	struct ent_call *call;
	const ProtobufCMessage *request; /**< what the client sent, for echo fallbacks */
};

static void reply_entitlements(struct admin_write *w, const struct ent_apply_result *res)
{
	Ent__V1__EntitlementsResponse r = ENT__V1__ENTITLEMENTS_RESPONSE__INIT;
	const Ent__V1__SetEntitlementsRequest *s = res->object;

	/* The stored object carries the merged grants of a patch; the request only the delta. */
	if (!s)
		s = (const Ent__V1__SetEntitlementsRequest *)w->request;
	r.code = s->code;
	r.name = s->name;
	r.n_entitlements = s->n_entitlements;
	r.entitlements = s->entitlements;
	r.sequence = res->seq;
	ent_rpc_call_reply(w->call, &r.base);
}

static void reply_override(struct admin_write *w, const struct ent_apply_result *res)
{
	Ent__V1__CustomerEntitlementResponse r = ENT__V1__CUSTOMER_ENTITLEMENT_RESPONSE__INIT;
	Ent__V1__CustomerOverride echo = ENT__V1__CUSTOMER_OVERRIDE__INIT;

	/*
	 * The store echoes the stored override with its timestamps and quantity_used (read from
	 * the usage table in the same transaction). Without an echo, answer with what was asked.
	 */
	if (res->object) {
		echo = *(const Ent__V1__CustomerOverride *)res->object;
	} else if (w->ev.kind_case == ENT__V1__EVENT__KIND_UPDATE_OVERRIDE) {
		const Ent__V1__UpdateCustomerEntitlementRequest *u = w->ev.update_override;
		echo.customer_id = u->customer_id;
		echo.feature_code = u->feature_code;
		echo.quantity = u->quantity;
		if (u->quantity_used)
			echo.quantity_used = u->quantity_used->value;
		if (u->active_from)
			echo.active_from = u->active_from->value;
		if (u->expiry_at)
			echo.expires_at = u->expiry_at->value;
	} else {
		const Ent__V1__SetCustomerEntitlementRequest *s = w->ev.set_override;
		echo.customer_id = s->customer_id;
		echo.feature_code = s->feature_code;
		echo.value = s->value;
		echo.reason = s->reason;
		echo.expires_at = s->expires_at;
		echo.active_from = s->active_from;
		echo.unlimited = s->unlimited;
		echo.n_static_values = s->n_static_values;
		echo.static_values = s->static_values;
		echo.n_privileges = s->n_privileges;
		echo.privileges = s->privileges;
	}
	r.entitlement = &echo;
	r.sequence = res->seq;
	ent_rpc_call_reply(w->call, &r.base);
}

/* Writer thread: turn the result of the event into the RPC's response. */
static void write_done(void *ctx, const struct ent_apply_result *res)
{
	struct admin_write *w = ctx;

	if (res->err.code) {
		ent_rpc_admin_fail_err(w->call, &res->err);
		return;
	}
	switch (w->ev.kind_case) {
	case ENT__V1__EVENT__KIND_UPSERT_FEATURE: {
		Ent__V1__FeatureResponse r = ENT__V1__FEATURE_RESPONSE__INIT;
		r.feature = res->object ? (Ent__V1__Feature *)res->object : w->ev.upsert_feature;
		r.sequence = res->seq;
		ent_rpc_call_reply(w->call, &r.base);
		return;
	}
	case ENT__V1__EVENT__KIND_SET_PLAN:
	case ENT__V1__EVENT__KIND_PATCH_PLAN:
	case ENT__V1__EVENT__KIND_SET_ADDON:
	case ENT__V1__EVENT__KIND_PATCH_ADDON:
		reply_entitlements(w, res);
		return;
	case ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION:
	case ENT__V1__EVENT__KIND_CANCEL_SUBSCRIPTION: {
		Ent__V1__SubscriptionResponse r = ENT__V1__SUBSCRIPTION_RESPONSE__INIT;
		r.subscription = (Ent__V1__Subscription *)res->object;
		if (!r.subscription && w->ev.kind_case == ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION)
			r.subscription = w->ev.upsert_subscription;
		r.sequence = res->seq;
		ent_rpc_call_reply(w->call, &r.base);
		return;
	}
	case ENT__V1__EVENT__KIND_SET_OVERRIDE:
	case ENT__V1__EVENT__KIND_UPDATE_OVERRIDE:
		reply_override(w, res);
		return;
	case ENT__V1__EVENT__KIND_DELETE_FEATURE:
	case ENT__V1__EVENT__KIND_DELETE_PLAN:
	case ENT__V1__EVENT__KIND_DELETE_ADDON:
	case ENT__V1__EVENT__KIND_DELETE_OVERRIDE: {
		Ent__V1__DeleteResponse r = ENT__V1__DELETE_RESPONSE__INIT;
		r.deleted = res->deleted;
		r.sequence = res->seq;
		ent_rpc_call_reply(w->call, &r.base);
		return;
	}
	default:
		ent_rpc_call_fail(w->call, ENT_EIO, "admin: unexpected event kind");
		return;
	}
}

/* A zeroed write for \a call in its arena, or NULL after answering RESOURCE_EXHAUSTED. */
static struct admin_write *write_new(struct ent_call *call, const ProtobufCMessage *req)
{
	struct admin_write *w = ent_arena_alloc(ent_rpc_call_arena(call), sizeof(*w));

	if (!w) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return NULL;
	}
	*w = (struct admin_write){.call = call, .request = req};
	ent__v1__event__init(&w->ev);
	/* at = 0: the writer stamps the commit time, the one clock every replica agrees on. */
	w->ev.at = 0;
	return w;
}

static void write_submit(struct admin_write *w)
{
	struct ent_writer *writer = ent_rpc_call_opts(w->call)->writer;
	int rc;

	if (!writer) {
		ent_rpc_call_fail(w->call, ENT_EUNAVAIL, "admin: no writer (read-only daemon)");
		return;
	}
	w->req.event = &w->ev;
	w->req.cb = write_done;
	w->req.ctx = w;
	rc = ent_writer_submit(writer, &w->req);
	/* On success the callback answers; on failure it never runs, so answer here. */
	if (rc < 0)
		ent_rpc_call_fail(w->call, rc, "admin: writer is stopping");
}

static bool check_not_negative(struct ent_call *call, int64_t v, const char *field)
{
	struct ent_err err;

	if (v >= 0)
		return true;
	ent_err_set(&err, ENT_EINVAL, "%s: must not be negative", field);
	ent_rpc_admin_fail_err(call, &err);
	return false;
}

/* ---- features ------------------------------------------------------------------------------ */

void ent_rpc_admin_upsert_feature(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__UpsertFeatureRequest *r = (const Ent__V1__UpsertFeatureRequest *)req;
	struct admin_write *w;
	Ent__V1__Feature *f;

	if (!r->feature) {
		ent_rpc_call_fail(call, ENT_EINVAL, "feature: required");
		return;
	}
	if (!ent_rpc_admin_check_id(call, r->feature->code, ENT_MAX_CODE, "feature.code"))
		return;
	if (!(w = write_new(call, req)))
		return;
	/*
	 * Timestamps are the server's: a shallow copy with them zeroed, so the store stamps
	 * created_at (kept across updates) and updated_at from the event time. Only an import
	 * carries them through, to round-trip an export.
	 */
	f = ent_arena_alloc(ent_rpc_call_arena(call), sizeof(*f));
	if (!f) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return;
	}
	*f = *r->feature;
	f->created_at = 0;
	f->updated_at = 0;
	w->ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	w->ev.upsert_feature = f;
	write_submit(w);
}

void ent_rpc_admin_delete_feature(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__DeleteFeatureRequest *r = (const Ent__V1__DeleteFeatureRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->code, ENT_MAX_CODE, "code"))
		return;
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = ENT__V1__EVENT__KIND_DELETE_FEATURE;
	w->ev.delete_feature = r->code;
	write_submit(w);
}

/* ---- plans and add-ons --------------------------------------------------------------------- */

static void set_entitlements(struct ent_call *call, const ProtobufCMessage *req,
			     Ent__V1__Event__KindCase kind)
{
	const Ent__V1__SetEntitlementsRequest *r = (const Ent__V1__SetEntitlementsRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->code, ENT_MAX_CODE, "code"))
		return;
	if (r->name && strlen(r->name) > ENT_MAX_TEXT) {
		ent_rpc_call_fail(call, ENT_EINVAL, "name: longer than 1024 bytes");
		return;
	}
	/* Each grant's feature_code is named by ent_store_apply ("entitlements[2].feature_code:
	 * ..."). */
	for (size_t i = 0; i < r->n_entitlements; i++) {
		if (!r->entitlements[i]) {
			ent_rpc_call_fail(call, ENT_EINVAL, "entitlements: empty grant");
			return;
		}
	}
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = kind;
	/* The union members of the four kinds all point to a SetEntitlementsRequest. */
	switch (kind) {
	case ENT__V1__EVENT__KIND_SET_PLAN:
		w->ev.set_plan = (Ent__V1__SetEntitlementsRequest *)r;
		break;
	case ENT__V1__EVENT__KIND_PATCH_PLAN:
		w->ev.patch_plan = (Ent__V1__SetEntitlementsRequest *)r;
		break;
	case ENT__V1__EVENT__KIND_SET_ADDON:
		w->ev.set_addon = (Ent__V1__SetEntitlementsRequest *)r;
		break;
	default:
		w->ev.patch_addon = (Ent__V1__SetEntitlementsRequest *)r;
		break;
	}
	write_submit(w);
}

static void delete_entitlements(struct ent_call *call, const ProtobufCMessage *req,
				Ent__V1__Event__KindCase kind)
{
	const Ent__V1__GetEntitlementsRequest *r = (const Ent__V1__GetEntitlementsRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->code, ENT_MAX_CODE, "code"))
		return;
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = kind;
	if (kind == ENT__V1__EVENT__KIND_DELETE_PLAN)
		w->ev.delete_plan = r->code;
	else
		w->ev.delete_addon = r->code;
	write_submit(w);
}

void ent_rpc_admin_set_plan(struct ent_call *call, const ProtobufCMessage *req)
{
	set_entitlements(call, req, ENT__V1__EVENT__KIND_SET_PLAN);
}

void ent_rpc_admin_patch_plan(struct ent_call *call, const ProtobufCMessage *req)
{
	set_entitlements(call, req, ENT__V1__EVENT__KIND_PATCH_PLAN);
}

void ent_rpc_admin_delete_plan(struct ent_call *call, const ProtobufCMessage *req)
{
	delete_entitlements(call, req, ENT__V1__EVENT__KIND_DELETE_PLAN);
}

void ent_rpc_admin_set_addon(struct ent_call *call, const ProtobufCMessage *req)
{
	set_entitlements(call, req, ENT__V1__EVENT__KIND_SET_ADDON);
}

void ent_rpc_admin_patch_addon(struct ent_call *call, const ProtobufCMessage *req)
{
	set_entitlements(call, req, ENT__V1__EVENT__KIND_PATCH_ADDON);
}

void ent_rpc_admin_delete_addon(struct ent_call *call, const ProtobufCMessage *req)
{
	delete_entitlements(call, req, ENT__V1__EVENT__KIND_DELETE_ADDON);
}

/* ---- subscriptions ------------------------------------------------------------------------- */

void ent_rpc_admin_upsert_subscription(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__UpsertSubscriptionRequest *r =
		(const Ent__V1__UpsertSubscriptionRequest *)req;
	const Ent__V1__Subscription *s = r->subscription;
	struct admin_write *w;
	Ent__V1__Subscription *copy;

	if (!s) {
		ent_rpc_call_fail(call, ENT_EINVAL, "subscription: required");
		return;
	}
	if (!ent_rpc_admin_check_id(call, s->id, ENT_MAX_CODE, "subscription.id") ||
	    !ent_rpc_admin_check_id(call, s->customer_id, ENT_MAX_CUSTOMER_ID,
				    "subscription.customer_id") ||
	    !check_not_negative(call, s->quantity, "subscription.quantity") ||
	    !check_not_negative(call, s->active_from, "subscription.active_from") ||
	    !check_not_negative(call, s->ends_at, "subscription.ends_at") ||
	    !check_not_negative(call, s->billing_anchor, "subscription.billing_anchor"))
		return;
	if (!(w = write_new(call, req)))
		return;
	copy = ent_arena_alloc(ent_rpc_call_arena(call), sizeof(*copy));
	if (!copy) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return;
	}
	*copy = *s;
	copy->created_at = 0;
	copy->updated_at = 0;
	w->ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	w->ev.upsert_subscription = copy;
	write_submit(w);
}

void ent_rpc_admin_cancel_subscription(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__CancelSubscriptionRequest *r =
		(const Ent__V1__CancelSubscriptionRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->customer_id, ENT_MAX_CUSTOMER_ID, "customer_id") ||
	    !ent_rpc_admin_check_id(call, r->subscription_id, ENT_MAX_CODE, "subscription_id") ||
	    !check_not_negative(call, r->at, "at"))
		return;
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = ENT__V1__EVENT__KIND_CANCEL_SUBSCRIPTION;
	w->ev.cancel_subscription = (Ent__V1__CancelSubscriptionRequest *)r;
	write_submit(w);
}

/* ---- customer overrides -------------------------------------------------------------------- */

void ent_rpc_admin_set_override(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__SetCustomerEntitlementRequest *r =
		(const Ent__V1__SetCustomerEntitlementRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->customer_id, ENT_MAX_CUSTOMER_ID, "customer_id") ||
	    !ent_rpc_admin_check_id(call, r->feature_code, ENT_MAX_CODE, "feature_code"))
		return;
	/* Hyperline's value is required: a boolean or a number. */
	if (!r->value || r->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND__NOT_SET) {
		ent_rpc_call_fail(call, ENT_EINVAL, "value: required (bool_value or number_value)");
		return;
	}
	if (r->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE &&
	    !isfinite(r->value->number_value)) {
		ent_rpc_call_fail(call, ENT_EINVAL, "value.number_value: must be a finite number");
		return;
	}
	if (r->reason && strlen(r->reason) > ENT_MAX_TEXT) {
		ent_rpc_call_fail(call, ENT_EINVAL, "reason: longer than 1024 bytes");
		return;
	}
	if (!check_not_negative(call, r->expires_at, "expires_at") ||
	    !check_not_negative(call, r->active_from, "active_from"))
		return;
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
	w->ev.set_override = (Ent__V1__SetCustomerEntitlementRequest *)r;
	write_submit(w);
}

void ent_rpc_admin_update_override(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__UpdateCustomerEntitlementRequest *r =
		(const Ent__V1__UpdateCustomerEntitlementRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->customer_id, ENT_MAX_CUSTOMER_ID, "customer_id") ||
	    !ent_rpc_admin_check_id(call, r->feature_code, ENT_MAX_CODE, "feature_code"))
		return;
	/* A PATCH that changes nothing would still create an empty override: refuse it. */
	if (!r->quantity && !r->quantity_used && !r->active_from && !r->expiry_at) {
		ent_rpc_call_fail(call, ENT_EINVAL,
				  "nothing to update: set quantity, quantity_used, active_from or "
				  "expiry_at");
		return;
	}
	if ((r->quantity && !check_not_negative(call, r->quantity->value, "quantity")) ||
	    (r->quantity_used &&
	     !check_not_negative(call, r->quantity_used->value, "quantity_used")) ||
	    (r->active_from && !check_not_negative(call, r->active_from->value, "active_from")) ||
	    (r->expiry_at && !check_not_negative(call, r->expiry_at->value, "expiry_at")))
		return;
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = ENT__V1__EVENT__KIND_UPDATE_OVERRIDE;
	w->ev.update_override = (Ent__V1__UpdateCustomerEntitlementRequest *)r;
	write_submit(w);
}

void ent_rpc_admin_delete_override(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__DeleteCustomerEntitlementRequest *r =
		(const Ent__V1__DeleteCustomerEntitlementRequest *)req;
	struct admin_write *w;

	if (!ent_rpc_admin_check_id(call, r->customer_id, ENT_MAX_CUSTOMER_ID, "customer_id") ||
	    !ent_rpc_admin_check_id(call, r->feature_code, ENT_MAX_CODE, "feature_code"))
		return;
	if (!(w = write_new(call, req)))
		return;
	w->ev.kind_case = ENT__V1__EVENT__KIND_DELETE_OVERRIDE;
	w->ev.delete_override = (Ent__V1__DeleteCustomerEntitlementRequest *)r;
	write_submit(w);
}
