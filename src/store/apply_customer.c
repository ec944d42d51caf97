/*
 * apply() for a customer's own state: subscriptions (with the plan_subs/addon_subs indexes and
 * the customers reference count) and overrides (Hyperline's set, Zenskar's partial update).
 *
 * Every change recomputes the aggregates it can affect, in the same transaction: for a
 * subscription every feature of its old and new plan, add-ons and own grants; for an override
 * its one feature. Ends and expiries also get a whole-customer boundary entry, so tick deletes
 * the ended subscription or expired override even when it grants nothing.
 */
#include <math.h>
#include <stdio.h>

#include "ent/pbarena.h"
#include "store/impl.h"

static struct ent_str s_(const char *s)
{
	return ent_str_c(s);
}

static const struct ent_str empty = {"", 0};

static int echo(struct ent_actx *c, enum ent_table t, struct ent_str key,
		const ProtobufCMessageDescriptor *d)
{
	MDB_val v;
	int r = ent_store_apply_get(c, t, key, &v);
	if (r)
		return r;
	c->res->object = protobuf_c_message_unpack(d, &c->alloc, v.mv_size, v.mv_data);
	return c->res->object ? 0 : -ENT_ECORRUPT;
}

/* ---- subscriptions ------------------------------------------------------------------------ */

static int object_features(struct ent_actx *c, enum ent_table t, const char *code,
			   struct ent_strset *set)
{
	Ent__V1__SetEntitlementsRequest *o;
	int r = ent_store_apply_get_pb(c, t, s_(code),
				       &ent__v1__set_entitlements_request__descriptor, c->arena,
				       (void **)&o);
	if (r == -ENT_ENOTFOUND)
		return 0;
	for (size_t i = 0; !r && i < o->n_entitlements; i++)
		r = ent_store_strset_add(c, set, s_(o->entitlements[i]->feature_code));
	return r;
}

/* Every feature a subscription can grant: its plan's, its add-ons' and its own. */
static int sub_features(struct ent_actx *c, const Ent__V1__Subscription *sub,
			struct ent_strset *set)
{
	int r = object_features(c, ENT_T_PLANS, sub->plan_code, set);
	for (size_t i = 0; !r && i < sub->n_addons; i++)
		r = object_features(c, ENT_T_ADDONS, sub->addons[i]->addon_code, set);
	for (size_t i = 0; !r && i < sub->n_entitlements; i++)
		r = ent_store_strset_add(c, set, s_(sub->entitlements[i]->feature_code));
	return r;
}

static int index_put(struct ent_actx *c, enum ent_table t, const char *code,
		     const struct ent_key *key)
{
	MDB_val k = {strlen(code), (void *)code}, v = ent_store_key_val(key);
	if (k.mv_size == 0)
		return 0;
	return ent_store_mdb_err(mdb_put(c->txn, c->s->dbi[t], &k, &v, 0));
}

/* Add (\a add) or remove the subscription's plan_subs and addon_subs entries. */
static int index_sub(struct ent_actx *c, const Ent__V1__Subscription *sub,
		     const struct ent_key *key, bool add)
{
	struct ent_str kv = {key->b, key->len};
	int r = add ? index_put(c, ENT_T_PLAN_SUBS, sub->plan_code, key)
		    : ent_store_apply_del_dup(c, ENT_T_PLAN_SUBS, s_(sub->plan_code), kv);
	for (size_t i = 0; !r && i < sub->n_addons; i++) {
		const char *a = sub->addons[i]->addon_code;
		r = add ? index_put(c, ENT_T_ADDON_SUBS, a, key)
			: ent_store_apply_del_dup(c, ENT_T_ADDON_SUBS, s_(a), kv);
	}
	return r;
}

static int recompute_features(struct ent_actx *c, struct ent_str customer,
			      struct ent_strset *features)
{
	ent_store_strset_uniq(features);
	int r = 0;
	for (size_t i = 0; i < features->n && !r; i++)
		r = ent_store_apply_recompute(c, customer, features->v[i], c->at);
	return r;
}

static int check_subscription(struct ent_actx *c, const Ent__V1__Subscription *sub)
{
	int r;
	if ((r = ent_str_check_id(s_(sub->id), ENT_MAX_CODE, "subscription.id", c->err)) ||
	    (r = ent_str_check_id(s_(sub->customer_id), ENT_MAX_CUSTOMER_ID,
				  "subscription.customer_id", c->err)) ||
	    (r = ent_str_check_id(s_(sub->plan_code), ENT_MAX_CODE, "subscription.plan_code",
				  c->err)))
		return r;
	MDB_val v;
	r = ent_store_apply_get(c, ENT_T_PLANS, s_(sub->plan_code), &v);
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_EINVAL, "subscription.plan_code: no plan '%s'",
				   sub->plan_code);
	if (r)
		return r;
	if (sub->n_addons > ENT_MAX_ADDONS)
		return ent_err_set(c->err, ENT_EINVAL, "subscription.addons: more than %d",
				   ENT_MAX_ADDONS);
	for (size_t i = 0; i < sub->n_addons; i++) {
		const Ent__V1__SubscriptionAddon *a = sub->addons[i];
		char fld[96];
		snprintf(fld, sizeof(fld), "subscription.addons[%zu].addon_code", i);
		if ((r = ent_str_check_id(s_(a->addon_code), ENT_MAX_CODE, fld, c->err)))
			return r;
		for (size_t j = 0; j < i; j++)
			if (strcmp(sub->addons[j]->addon_code, a->addon_code) == 0)
				return ent_err_set(c->err, ENT_EINVAL, "%s: '%s' listed twice", fld,
						   a->addon_code);
		r = ent_store_apply_get(c, ENT_T_ADDONS, s_(a->addon_code), &v);
		if (r == -ENT_ENOTFOUND)
			return ent_err_set(c->err, ENT_EINVAL, "%s: no add-on '%s'", fld,
					   a->addon_code);
		if (r)
			return r;
		if (a->quantity < 0)
			return ent_err_set(c->err, ENT_EINVAL,
					   "subscription.addons[%zu].quantity: must be >= 0", i);
	}
	if (sub->quantity < 0)
		return ent_err_set(c->err, ENT_EINVAL, "subscription.quantity: must be >= 0");
	if (sub->active_from < 0)
		return ent_err_set(c->err, ENT_EINVAL, "subscription.active_from: must be >= 0");
	if (sub->ends_at < 0)
		return ent_err_set(c->err, ENT_EINVAL, "subscription.ends_at: must be >= 0");
	if (sub->billing_anchor < 0)
		return ent_err_set(c->err, ENT_EINVAL, "subscription.billing_anchor: must be >= 0");
	if ((r = ent_store_apply_check_time(c, sub->active_from, "subscription.active_from")) ||
	    (r = ent_store_apply_check_time(c, sub->ends_at, "subscription.ends_at")) ||
	    (r = ent_store_apply_check_time(c, sub->billing_anchor,
					    "subscription.billing_anchor")) ||
	    (r = ent_store_apply_check_time(c, sub->created_at, "subscription.created_at")) ||
	    (r = ent_store_apply_check_time(c, sub->updated_at, "subscription.updated_at")))
		return r;
	if (sub->ends_at && sub->active_from && sub->ends_at <= sub->active_from)
		return ent_err_set(c->err, ENT_EINVAL,
				   "subscription.ends_at: must be after active_from");
	return 0;
}

int ent_store_apply_upsert_subscription(struct ent_actx *c, const Ent__V1__Subscription *sub)
{
	int r = check_subscription(c, sub);
	if (r)
		return r;
	Ent__V1__Grant **grants;
	if ((r = ent_store_apply_check_grants(c, "subscription.entitlements", sub->entitlements,
					      sub->n_entitlements, &grants)))
		return r;
	struct ent_str customer = s_(sub->customer_id), id = s_(sub->id);
	struct ent_key key;
	if (ent_store_key_make(&key, customer, &id))
		return ent_err_set(c->err, ENT_EINVAL, "subscription.id: too long");
	struct ent_str skey = {key.b, key.len};
	Ent__V1__Subscription *old = NULL;
	r = ent_store_apply_get_pb(c, ENT_T_SUBS, skey, &ent__v1__subscription__descriptor,
				   c->arena, (void **)&old);
	if (r && r != -ENT_ENOTFOUND)
		return r;

	Ent__V1__Subscription st = *sub;
	st.entitlements = grants;
	st.created_at = sub->created_at ? sub->created_at : old ? old->created_at : c->at;
	st.updated_at = sub->updated_at ? sub->updated_at : c->at;

	struct ent_strset features = {0};
	if ((old && (r = sub_features(c, old, &features))) || (r = sub_features(c, &st, &features)))
		return r;
	if ((old && (r = index_sub(c, old, &key, false))) || (r = index_sub(c, &st, &key, true)) ||
	    (r = ent_store_apply_put_pb(c, ENT_T_SUBS, skey, &st.base)))
		return r;
	if (!old && (r = ent_store_apply_customer_ref(c, customer, 1)))
		return r;
	if (st.ends_at && (r = ent_store_apply_bound_add(c, st.ends_at, customer, empty)))
		return r;
	if ((r = recompute_features(c, customer, &features)))
		return r;
	return echo(c, ENT_T_SUBS, skey, &ent__v1__subscription__descriptor);
}

static int load_sub(struct ent_actx *c, struct ent_str customer, struct ent_str id,
		    struct ent_key *key, Ent__V1__Subscription **out)
{
	if (ent_store_key_make(key, customer, &id))
		return -ENT_ENOTFOUND;
	return ent_store_apply_get_pb(c, ENT_T_SUBS, (struct ent_str){key->b, key->len},
				      &ent__v1__subscription__descriptor, c->arena, (void **)out);
}

int ent_store_apply_cancel_subscription(struct ent_actx *c,
					const Ent__V1__CancelSubscriptionRequest *req)
{
	int r;
	if ((r = ent_str_check_id(s_(req->customer_id), ENT_MAX_CUSTOMER_ID, "customer_id",
				  c->err)) ||
	    (r = ent_str_check_id(s_(req->subscription_id), ENT_MAX_CODE, "subscription_id",
				  c->err)))
		return r;
	if (req->at < 0)
		return ent_err_set(c->err, ENT_EINVAL, "at: must be >= 0");
	if ((r = ent_store_apply_check_time(c, req->at, "at")))
		return r;
	struct ent_str customer = s_(req->customer_id);
	struct ent_key key;
	Ent__V1__Subscription *sub;
	r = load_sub(c, customer, s_(req->subscription_id), &key, &sub);
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_ENOTFOUND,
				   "subscription_id: no subscription '%s' of customer '%s'",
				   req->subscription_id, req->customer_id);
	if (r)
		return r;
	/* Cancelling never extends: an earlier end stays. */
	int64_t at = req->at ? req->at : c->at;
	if (!sub->ends_at || sub->ends_at > at)
		sub->ends_at = at;
	sub->cancelled = true;
	sub->updated_at = c->at;
	struct ent_strset features = {0};
	struct ent_str skey = {key.b, key.len};
	if (sub->active_from && sub->ends_at <= sub->active_from) {
		/*
		 * Ended before it started: the subscription is never active. It goes at once,
		 * without a tombstone (it never granted anything), rather than being stored with
		 * an empty window that UpsertSubscription and Import refuse, and whose cleanup
		 * would change NOT_YET_ACTIVE into something else. The echo shows it as cancelled.
		 */
		Ent__V1__Subscription *echo_sub = sub;
		if ((r = sub_features(c, sub, &features)) || (r = index_sub(c, sub, &key, false)) ||
		    (r = ent_store_apply_del(c, ENT_T_SUBS, skey)) ||
		    (r = ent_store_apply_customer_ref(c, customer, -1)) ||
		    (r = recompute_features(c, customer, &features)))
			return r;
		c->res->object = &echo_sub->base;
		c->res->deleted = true;
		return 0;
	}
	if ((r = sub_features(c, sub, &features)) ||
	    (r = ent_store_apply_put_pb(c, ENT_T_SUBS, skey, &sub->base)) ||
	    (r = ent_store_apply_bound_add(c, sub->ends_at, customer, empty)) ||
	    (r = recompute_features(c, customer, &features)))
		return r;
	return echo(c, ENT_T_SUBS, skey, &ent__v1__subscription__descriptor);
}

int ent_store_apply_remove_subscription(struct ent_actx *c, struct ent_str customer,
					struct ent_str id)
{
	struct ent_key key;
	Ent__V1__Subscription *sub;
	int r = load_sub(c, customer, id, &key, &sub);
	if (r)
		return r == -ENT_ENOTFOUND ? 0 : r;
	struct ent_strset features = {0};
	if ((r = sub_features(c, sub, &features)))
		return r;
	/* Tombstones first, while the subscription's sources can still be gathered. */
	ent_store_strset_uniq(&features);
	for (size_t i = 0; i < features.n && !r; i++)
		r = ent_store_apply_tombstone(c, customer, features.v[i], &id);
	/* The customer stays known (NOT_ENTITLED, not UNKNOWN_CUSTOMER) for the tombstones'
	 * horizon even when what ended granted no feature at all. */
	if (!r && sub->ends_at)
		r = ent_store_apply_ended_put(c, customer, empty, sub->ends_at, false);
	if (r || (r = index_sub(c, sub, &key, false)) ||
	    (r = ent_store_apply_del(c, ENT_T_SUBS, (struct ent_str){key.b, key.len})) ||
	    (r = ent_store_apply_customer_ref(c, customer, -1)))
		return r;
	return recompute_features(c, customer, &features);
}

/* ---- overrides ---------------------------------------------------------------------------- */

/* The (customer, feature) pair of an override request: ids valid, the feature known. */
static int check_pair(struct ent_actx *c, const char *customer, const char *feature,
		      struct ent_key *key, Ent__V1__Feature **f)
{
	int r;
	if ((r = ent_str_check_id(s_(customer), ENT_MAX_CUSTOMER_ID, "customer_id", c->err)) ||
	    (r = ent_str_check_id(s_(feature), ENT_MAX_CODE, "feature_code", c->err)))
		return r;
	r = ent_store_load_feature(c->s, c->txn, s_(feature), c->arena, f);
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_EINVAL, "feature_code: unknown feature '%s'",
				   feature);
	if (r)
		return r;
	struct ent_str fs = s_(feature);
	if (ent_store_key_make(key, s_(customer), &fs))
		return ent_err_set(c->err, ENT_EINVAL, "customer_id: too long");
	return 0;
}

/* Echo the stored override with quantity_used filled in from the usage counter. */
static int echo_override(struct ent_actx *c, struct ent_str customer, struct ent_str feature,
			 const struct ent_key *key)
{
	int r = echo(c, ENT_T_OVERRIDES, (struct ent_str){key->b, key->len},
		     &ent__v1__customer_override__descriptor);
	if (r)
		return r;
	struct ent_usage_state u;
	struct ent_decision d;
	if ((r = ent_store_apply_decide(c, customer, feature, 1, c->at, &u, &d)))
		return r;
	Ent__V1__CustomerOverride *o = (Ent__V1__CustomerOverride *)c->res->object;
	o->quantity_used = d.metered ? d.used : 0;
	return 0;
}

static int store_override(struct ent_actx *c, Ent__V1__CustomerOverride *o, bool existed,
			  const struct ent_key *key)
{
	struct ent_str customer = s_(o->customer_id), feature = s_(o->feature_code);
	int r = ent_store_apply_put_pb(c, ENT_T_OVERRIDES, (struct ent_str){key->b, key->len},
				       &o->base);
	if (!r && !existed)
		r = ent_store_apply_customer_ref(c, customer, 1);
	if (!r && o->expires_at)
		r = ent_store_apply_bound_add(c, o->expires_at, customer, empty);
	if (!r)
		r = ent_store_apply_recompute(c, customer, feature, c->at);
	return r;
}

int ent_store_apply_set_override(struct ent_actx *c,
				 const Ent__V1__SetCustomerEntitlementRequest *req)
{
	struct ent_key key;
	Ent__V1__Feature *f;
	int r = check_pair(c, req->customer_id, req->feature_code, &key, &f);
	if (r)
		return r;
	const Ent__V1__OverrideValue *val = req->value;
	if (!val || val->kind_case == ENT__V1__OVERRIDE_VALUE__KIND__NOT_SET)
		return ent_err_set(c->err, ENT_EINVAL,
				   "value: required (bool_value or number_value)");
	if (val->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE) {
		double d = val->number_value;
		if (f->type == ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC)
			return ent_err_set(c->err, ENT_EINVAL,
					   "value.number_value: static feature '%s' takes "
					   "bool_value",
					   f->code);
		if (!isfinite(d))
			return ent_err_set(c->err, ENT_EINVAL, "value.number_value: not finite");
		/* The one rule for every limit (Zenskar's int64 quantity too): a whole number
		 * from 0 to INT64_MAX. Every double below 2^63 converts to int64 exactly. */
		if (f->type == ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED &&
		    (d < 0 || d != floor(d) || d >= 9223372036854775808.0))
			return ent_err_set(c->err, ENT_EINVAL,
					   "value.number_value: must be a whole number from 0 to "
					   "2^63-1 (the usage limit)");
	}
	if (req->unlimited && f->type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED)
		return ent_err_set(c->err, ENT_EINVAL,
				   "unlimited: only metered features have "
				   "limits");
	if ((r = ent_store_apply_check_text(c, req->reason, "reason")))
		return r;
	if (req->n_static_values && f->type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC)
		return ent_err_set(c->err, ENT_EINVAL,
				   "static_values: only for static features ('%s' is %s)", f->code,
				   ent_model_feature_type_name((uint8_t)f->type));
	if (req->n_static_values > ENT_MAX_STATIC)
		return ent_err_set(c->err, ENT_EINVAL, "static_values: more than %d",
				   ENT_MAX_STATIC);
	for (size_t i = 0; i < req->n_static_values; i++) {
		char fld[48];
		snprintf(fld, sizeof(fld), "static_values[%zu]", i);
		if ((r = ent_store_apply_check_text(c, req->static_values[i], fld)))
			return r;
	}
	Ent__V1__PrivilegeValue **privs;
	if ((r = ent_store_apply_check_privs(c, "privileges", f, req->privileges, req->n_privileges,
					     &privs)))
		return r;
	if (req->active_from < 0)
		return ent_err_set(c->err, ENT_EINVAL, "active_from: must be >= 0");
	if (req->expires_at < 0)
		return ent_err_set(c->err, ENT_EINVAL, "expires_at: must be >= 0");
	if ((r = ent_store_apply_check_time(c, req->active_from, "active_from")) ||
	    (r = ent_store_apply_check_time(c, req->expires_at, "expires_at")))
		return r;
	if (req->expires_at) {
		if (req->expires_at <= req->active_from)
			return ent_err_set(c->err, ENT_EINVAL,
					   "expires_at: must be after active_from");
		if (req->expires_at <= c->at)
			return ent_err_set(c->err, ENT_EINVAL, "expires_at: in the past");
	}
	Ent__V1__CustomerOverride *old = NULL;
	r = ent_store_apply_get_pb(c, ENT_T_OVERRIDES, (struct ent_str){key.b, key.len},
				   &ent__v1__customer_override__descriptor, c->arena,
				   (void **)&old);
	if (r && r != -ENT_ENOTFOUND)
		return r;
	/* Hyperline's PUT replaces the override whole (a Zenskar quantity too); only its
	 * creation stamp survives. */
	Ent__V1__CustomerOverride o = ENT__V1__CUSTOMER_OVERRIDE__INIT;
	o.customer_id = req->customer_id;
	o.feature_code = req->feature_code;
	o.value = (Ent__V1__OverrideValue *)val;
	o.unlimited = req->unlimited;
	o.n_static_values = req->n_static_values;
	o.static_values = req->static_values;
	o.n_privileges = req->n_privileges;
	o.privileges = privs;
	o.reason = req->reason;
	o.active_from = req->active_from;
	o.expires_at = req->expires_at;
	o.created_at = old ? old->created_at : c->at;
	o.updated_at = c->at;
	if ((r = store_override(c, &o, old != NULL, &key)))
		return r;
	return echo_override(c, s_(req->customer_id), s_(req->feature_code), &key);
}

int ent_store_apply_update_override(struct ent_actx *c,
				    const Ent__V1__UpdateCustomerEntitlementRequest *req)
{
	struct ent_key key;
	Ent__V1__Feature *f;
	int r = check_pair(c, req->customer_id, req->feature_code, &key, &f);
	if (r)
		return r;
	if (req->quantity && f->type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED)
		return ent_err_set(c->err, ENT_EINVAL,
				   "quantity: only for metered features ('%s' is %s)", f->code,
				   ent_model_feature_type_name((uint8_t)f->type));
	if (req->quantity && req->quantity->value < 0)
		return ent_err_set(c->err, ENT_EINVAL, "quantity: must be >= 0");
	if (req->quantity_used && req->quantity_used->value < 0)
		return ent_err_set(c->err, ENT_EINVAL, "quantity_used: must be >= 0");
	if (req->quantity_used && f->type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED)
		return ent_err_set(c->err, ENT_EINVAL, "quantity_used: feature '%s' is not metered",
				   f->code);
	if (req->active_from && req->active_from->value < 0)
		return ent_err_set(c->err, ENT_EINVAL, "active_from: must be >= 0");
	if (req->expiry_at && req->expiry_at->value < 0)
		return ent_err_set(c->err, ENT_EINVAL, "expiry_at: must be >= 0");
	if ((req->active_from &&
	     (r = ent_store_apply_check_time(c, req->active_from->value, "active_from"))) ||
	    (req->expiry_at &&
	     (r = ent_store_apply_check_time(c, req->expiry_at->value, "expiry_at"))))
		return r;
	/* Like set_override's expires_at: an override that would be born expired is a mistake
	 * (and the tick would delete it at once). 0 clears the expiry. */
	if (req->expiry_at && req->expiry_at->value != 0 && req->expiry_at->value <= c->at)
		return ent_err_set(c->err, ENT_EINVAL, "expiry_at: in the past");
	Ent__V1__CustomerOverride *old = NULL;
	r = ent_store_apply_get_pb(c, ENT_T_OVERRIDES, (struct ent_str){key.b, key.len},
				   &ent__v1__customer_override__descriptor, c->arena,
				   (void **)&old);
	if (r && r != -ENT_ENOTFOUND)
		return r;
	/* Zenskar PATCHes an existing assignment; with none yet, one is created holding just
	 * the fields sent (docs/storage.md). */
	/* An override is created only by what grants something: a quantity. One holding just
	 * a window (or a counter) would set nothing yet answer override_applied. */
	if (!old && !req->quantity)
		return ent_err_set(c->err, ENT_ENOTFOUND,
				   "quantity: required to create an override (customer '%s' has "
				   "none for feature '%s')",
				   req->customer_id, req->feature_code);
	Ent__V1__CustomerOverride blank = ENT__V1__CUSTOMER_OVERRIDE__INIT;
	Ent__V1__CustomerOverride *o = old ? old : &blank;
	if (!old) {
		blank.customer_id = req->customer_id;
		blank.feature_code = req->feature_code;
		blank.created_at = c->at;
	}
	Google__Protobuf__Int64Value q = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	if (req->quantity) {
		q.value = req->quantity->value;
		o->quantity = &q;
	}
	if (req->active_from)
		o->active_from = req->active_from->value;
	if (req->expiry_at)
		o->expires_at = req->expiry_at->value;
	if (o->expires_at && o->expires_at <= o->active_from)
		return ent_err_set(c->err, ENT_EINVAL, "expiry_at: must be after active_from");
	o->updated_at = c->at;
	o->quantity_used = 0; /* derived from the usage table, never stored */
	if ((r = store_override(c, o, old != NULL, &key)))
		return r;
	struct ent_str customer = s_(req->customer_id), feature = s_(req->feature_code);
	if (req->quantity_used) {
		/* The counter of the current period, under the shape the freshly recomputed
		 * record has at this instant. */
		struct ent_usage_state u;
		int64_t ps, pe;
		if ((r = ent_store_apply_period_at(c, customer, feature, c->at, &ps, &pe, &u)))
			return r;
		if ((r = ent_store_apply_usage_write(c, customer, feature, ps,
						     req->quantity_used->value)))
			return r;
	}
	return echo_override(c, customer, feature, &key);
}

int ent_store_apply_remove_override(struct ent_actx *c, struct ent_str customer,
				    struct ent_str feature)
{
	struct ent_key key;
	if (ent_store_key_make(&key, customer, &feature))
		return -ENT_ENOTFOUND;
	int r = ent_store_apply_del(c, ENT_T_OVERRIDES, (struct ent_str){key.b, key.len});
	if (r || (r = ent_store_apply_customer_ref(c, customer, -1)))
		return r;
	return ent_store_apply_recompute(c, customer, feature, c->at);
}

int ent_store_apply_expire_override(struct ent_actx *c, struct ent_str customer,
				    struct ent_str feature)
{
	int r = ent_store_apply_tombstone(c, customer, feature, NULL);
	if (!r)
		r = ent_store_apply_ended_put(c, customer, empty, c->at, false);
	return r ? r : ent_store_apply_remove_override(c, customer, feature);
}

int ent_store_apply_delete_override(struct ent_actx *c,
				    const Ent__V1__DeleteCustomerEntitlementRequest *req)
{
	int r;
	if ((r = ent_str_check_id(s_(req->customer_id), ENT_MAX_CUSTOMER_ID, "customer_id",
				  c->err)) ||
	    (r = ent_str_check_id(s_(req->feature_code), ENT_MAX_CODE, "feature_code", c->err)))
		return r;
	r = ent_store_apply_remove_override(c, s_(req->customer_id), s_(req->feature_code));
	if (r == -ENT_ENOTFOUND)
		return ent_err_set(c->err, ENT_ENOTFOUND,
				   "no override of feature '%s' for customer '%s'",
				   req->feature_code, req->customer_id);
	if (r)
		return r;
	c->res->deleted = true;
	return 0;
}
