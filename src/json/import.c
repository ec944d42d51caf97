/*
 * JSON document -> ent.v1.Event messages -> ent_store_apply in one write transaction.
 *
 * Each object converts to its message by descriptor (json/pbjson.c with the document's options):
 * field names, types, times and enum spellings come from the .proto. What is written here by
 * hand is the document's shape only: its sections and their order, maps keyed by code, Lago's
 * privilege maps typed by the feature's declaration, a privilege's "config", an override's
 * plain value and the events an object becomes.
 *
 * The converter checks syntax and shape only: JSON types, unknown keys (so a typo is an error,
 * not a silently ignored field), times, enum names, and privilege value types when the feature
 * is declared in the same document. Everything that needs the stored state -- does the plan
 * exist, is the value one of the select options -- is ent_store_apply's job, so an import and the
 * admin RPCs refuse exactly the same things. Either way the error names the JSON path.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ent/json.h"
#include "ent/model.h"
#include "ent/pbarena.h"
#include "ent/v1/event.pb-c.h"
#include "json/impl.h"

/* The JSON path of the value being converted: "plans.pro.entitlements.seats". */
struct path {
	char buf[400];
	size_t len;
};

static size_t path_push(struct path *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push(struct path *p, const char *fmt, ...)
{
	size_t old = p->len;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(p->buf + p->len, sizeof(p->buf) - p->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		p->len = p->len + (size_t)n < sizeof(p->buf) ? p->len + (size_t)n
							     : sizeof(p->buf) - 1;
	return old;
}

static size_t path_key(struct path *p, const char *key)
{
	return path_push(p, p->len ? ".%s" : "%s", key);
}

static size_t path_index(struct path *p, size_t i)
{
	return path_push(p, "[%zu]", i);
}

static void path_pop(struct path *p, size_t old)
{
	p->len = old;
	p->buf[old] = '\0';
}

/*
 * Conversion state. decl maps each feature code declared in the document to an object
 * {privilege code: integer enum ent_priv_type}: a jansson object is a ready-made hash table,
 * and the document's declaration is authoritative because its upsert replaces the stored one.
 */
struct conv {
	struct ent_arena *arena;
	struct ent_err *err;
	struct path path;
	json_t *decl;
	ProtobufCAllocator alloc; /* into arena */
	struct ent_pbjson_opts opts;
	Ent__V1__Event **ev;
	const char **paths;
	size_t n, cap;
};

static int fail(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct conv *c, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ent_err_set(c->err, ENT_EINVAL, "%s: %s", c->path.len ? c->path.buf : "document",
			   msg);
}

/* fail() for member \a key of the current object. The path is left pointing at it. */
static int fail_at(struct conv *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_at(struct conv *c, const char *key, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	path_key(&c->path, key);
	return fail(c, "%s", msg);
}

static int oom(struct conv *c)
{
	return ent_err_set(c->err, ENT_ENOMEM, "out of memory");
}

static void *zalloc(struct conv *c, size_t n)
{
	void *p = ent_arena_alloc(c->arena, n ? n : 1);
	if (p)
		memset(p, 0, n);
	return p;
}

static char *dup_json_str(struct conv *c, const json_t *s)
{
	return ent_arena_strndup(c->arena, json_string_value(s), json_string_length(s));
}

/* Every key of \a obj must be in the NULL-terminated \a allowed list. */
static int check_keys(struct conv *c, json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		const char *const *a = allowed;
		while (*a && strcmp(*a, key))
			a++;
		if (!*a)
			return fail_at(c, key, "unknown key");
	}
	return 0;
}

static int need_object(struct conv *c, json_t *j)
{
	return json_is_object(j) ? 0 : fail(c, "expected object");
}

static Ent__V1__Event *add_event(struct conv *c)
{
	if (c->n >= c->cap)
		return NULL; /* cannot happen: cap counts every object of the document */
	Ent__V1__Event *ev = zalloc(c, sizeof(*ev));
	const char *p = ent_arena_strndup(c->arena, c->path.buf, c->path.len);
	if (!ev || !p)
		return NULL;
	ent__v1__event__init(ev);
	c->ev[c->n] = ev;
	c->paths[c->n] = p;
	c->n++;
	return ev;
}

/*
 * Convert the object \a j at the current path to a message of type \a desc, by descriptor,
 * leaving out the members named in \a skip (NULL-terminated; the caller converts them by hand).
 */
static int conv_msg(struct conv *c, json_t *j, const char *const *skip,
		    const ProtobufCMessageDescriptor *desc, void *out)
{
	int rc;
	if ((rc = need_object(c, j)))
		return rc;
	json_t *copy = j;
	if (skip) {
		if (!(copy = json_copy(j)))
			return oom(c);
		for (const char *const *k = skip; *k; k++)
			json_object_del(copy, *k);
	}
	rc = ent_json_pb_decode(copy, desc, &c->opts, c->path.buf, (ProtobufCMessage **)out,
				c->err);
	if (skip)
		json_decref(copy);
	return rc;
}

/* A member the document requires: present and not null. */
static int required(struct conv *c, json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	return v && !json_is_null(v) ? 0 : fail_at(c, key, "required");
}

/* ---- features ------------------------------------------------------------------------- */

/* Lago's {"config": {"select_options": [...]}} becomes the proto's select_options. */
static int lift_config(struct conv *c, json_t *privs)
{
	static const char *const config_keys[] = {"select_options", NULL};
	size_t i;
	json_t *p;
	int rc;
	json_array_foreach(privs, i, p)
	{
		json_t *cfg = json_object_get(p, "config");
		if (!json_is_object(p))
			continue; /* the decoder names it */
		size_t old = path_key(&c->path, "privileges");
		path_index(&c->path, i);
		if (json_object_get(p, "select_options"))
			return fail_at(c, "select_options", "unknown key");
		if (cfg && !json_is_null(cfg)) {
			size_t o2 = path_key(&c->path, "config");
			if ((rc = need_object(c, cfg)) || (rc = check_keys(c, cfg, config_keys)))
				return rc;
			path_pop(&c->path, o2);
			json_t *opts = json_object_get(cfg, "select_options");
			if (opts && json_object_set(p, "select_options", opts))
				return oom(c);
		}
		json_object_del(p, "config");
		path_pop(&c->path, old);
	}
	return 0;
}

static int conv_feature(struct conv *c, json_t *j)
{
	int rc;
	if ((rc = need_object(c, j)))
		return rc;
	Ent__V1__Event *ev = add_event(c);
	json_t *copy = json_deep_copy(j);
	if (!ev || !copy) {
		json_decref(copy);
		return oom(c);
	}
	json_t *privs = json_object_get(copy, "privileges");
	rc = json_is_array(privs) ? lift_config(c, privs) : 0;
	if (!rc) {
		rc = conv_msg(c, copy, NULL, &ent__v1__feature__descriptor, &ev->upsert_feature);
		/* A select option's path is under "config" in the document. */
		char *so = rc ? strstr(c->err->msg, "].select_options") : NULL;
		if (so && strlen(c->err->msg) + 7 < sizeof(c->err->msg)) {
			memmove(so + 8, so + 1, strlen(so + 1) + 1);
			memcpy(so + 1, ".config", 7);
		}
	}
	json_decref(copy);
	if (rc || (rc = required(c, j, "code")) || (rc = required(c, j, "type")))
		return rc;
	Ent__V1__Feature *f = ev->upsert_feature;
	ev->kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	for (size_t i = 0; i < f->n_privileges; i++) {
		if (f->privileges[i]->code[0])
			continue;
		path_key(&c->path, "privileges");
		path_index(&c->path, i);
		return fail_at(c, "code", "required");
	}

	/* The declaration that types this document's privilege maps (priv_decl). */
	json_t *types = json_object();
	if (!types || json_object_set_new(c->decl, f->code, types))
		return oom(c);
	for (size_t i = 0; i < f->n_privileges; i++) {
		Ent__V1__PrivilegeDef *d = f->privileges[i];
		if (d->value_type == ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_UNSPECIFIED)
			d->value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_STRING; /* Lago's */
		json_t *ti = json_integer(d->value_type);
		if (!ti || json_object_set_new(types, d->code, ti))
			return oom(c);
	}
	return 0;
}

/* ---- grants and privilege values ------------------------------------------------------- */

/*
 * The declared type of privilege \a priv of \a feature: 1 found, 0 the feature is not declared
 * in this document (apply checks against the stored feature), -1 declared without it.
 */
static int priv_decl(struct conv *c, const char *feature, const char *priv, uint8_t *type)
{
	json_t *types = json_object_get(c->decl, feature);
	if (!types)
		return 0;
	json_t *t = json_object_get(types, priv);
	if (!t)
		return -1;
	*type = (uint8_t)json_integer_value(t);
	return 1;
}

/* One item of a map keyed by code; the path is at the item. */
typedef int (*conv_keyed_fn)(struct conv *c, const char *feature, const char *key, json_t *v,
			     void **out);

/*
 * The member \a member of \a j (when given; NULL: \a j itself) read as the document's map
 * {code: item}, in document order, into an array of \a *n messages: where a message has a
 * list, the document has a map keyed by the items' codes.
 */
static int conv_keyed(struct conv *c, json_t *j, const char *member, const char *feature,
		      conv_keyed_fn fn, size_t *n, void *out)
{
	json_t *map = member ? json_object_get(j, member) : j;
	if (!map || json_is_null(map))
		return 0;
	size_t old = member ? path_key(&c->path, member) : c->path.len;
	int rc;
	if ((rc = need_object(c, map)))
		return rc;
	*n = json_object_size(map);
	void **items = zalloc(c, *n * sizeof(void *));
	if (!items)
		return oom(c);
	*(void ***)out = items;
	size_t i = 0;
	const char *key;
	json_t *v;
	json_object_foreach(map, key, v)
	{
		size_t o2 = path_key(&c->path, key);
		if ((rc = fn(c, feature, key, v, &items[i++])))
			return rc;
		path_pop(&c->path, o2);
	}
	path_pop(&c->path, old);
	return 0;
}

/*
 * One privilege of a Lago map {code: value}. The value type is the feature's declaration when
 * the document has it (so "20" for an integer privilege is an error here), else it follows the
 * JSON type and apply checks it against the stored feature.
 */
static int conv_priv(struct conv *c, const char *feature, const char *key, json_t *v, void **out)
{
	Ent__V1__PrivilegeValue *pv = zalloc(c, sizeof(*pv));
	if (!pv)
		return oom(c);
	ent__v1__privilege_value__init(pv);
	*out = pv;
	if (!(pv->code = ent_arena_strndup(c->arena, key, strlen(key))))
		return oom(c);
	uint8_t t = ENT_PT_UNSPECIFIED;
	int known = priv_decl(c, feature, key, &t);
	if (known < 0)
		return fail(c, "feature %s declares no privilege %s", feature, key);
	if (!known) {
		if (json_is_integer(v))
			t = ENT_PT_INTEGER;
		else if (json_is_boolean(v))
			t = ENT_PT_BOOLEAN;
		else if (json_is_string(v))
			t = ENT_PT_STRING;
		else
			return fail(c, "expected integer, boolean or string");
	}
	switch (t) {
	case ENT_PT_INTEGER:
		if (!json_is_integer(v))
			return fail(c, "expected integer");
		pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
		pv->int_value = json_integer_value(v);
		break;
	case ENT_PT_BOOLEAN:
		if (!json_is_boolean(v))
			return fail(c, "expected true or false");
		pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE;
		pv->bool_value = json_is_true(v);
		break;
	default: /* STRING, SELECT */
		if (!json_is_string(v))
			return fail(c, "expected string");
		pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
		if (!(pv->string_value = dup_json_str(c, v)))
			return oom(c);
		break;
	}
	pv->value_type = (Ent__V1__PrivilegeType)t;
	return 0;
}

/* A member naming a Grant field makes the extended form; anything else is a Lago privilege map. */
static bool is_extended_grant(struct conv *c, json_t *j)
{
	const ProtobufCMessageDescriptor *d = &ent__v1__grant__descriptor;
	for (unsigned i = 0; i < d->n_fields; i++)
		if (!c->opts.omit(d, &d->fields[i]) && json_object_get(j, d->fields[i].name))
			return true;
	return false;
}

/* One grant of {feature_code: grant}; the path is at it ("plans.pro.entitlements.seats"). */
static int conv_grant(struct conv *c, const char *unused, const char *feature, json_t *j,
		      void **outp)
{
	Ent__V1__Grant **out = (Ent__V1__Grant **)outp;
	static const char *const by_hand[] = {"usage_limit", "privileges", NULL};
	int rc;
	if ((rc = need_object(c, j)))
		return rc;
	if (!is_extended_grant(c, j)) {
		Ent__V1__Grant *g = zalloc(c, sizeof(*g));
		if (!g)
			return oom(c);
		ent__v1__grant__init(g);
		*out = g;
		if (!(g->feature_code = ent_arena_strndup(c->arena, feature, strlen(feature))))
			return oom(c);
		return conv_keyed(c, j, NULL, feature, conv_priv, &g->n_privileges, &g->privileges);
	}
	/* Flexprice writes an unlimited grant as usage_limit: null, which the decoder would
	 * read as "not set": so usage_limit is taken out when null. */
	json_t *lim = json_object_get(j, "usage_limit");
	bool null_limit = lim && json_is_null(lim);
	if ((rc = conv_msg(c, j, null_limit ? by_hand : by_hand + 1, &ent__v1__grant__descriptor,
			   out)))
		return rc;
	Ent__V1__Grant *g = *out;
	if (!(g->feature_code = ent_arena_strndup(c->arena, feature, strlen(feature))))
		return oom(c);
	if (null_limit)
		g->unlimited = true;
	return conv_keyed(c, j, "privileges", feature, conv_priv, &g->n_privileges, &g->privileges);
}

/* ---- plans and add-ons ------------------------------------------------------------------ */

static const char *const grants_by_hand[] = {"entitlements", NULL};

/* The path is at the plan ("plans.pro"); its code is the map key. */
static int conv_plan(struct conv *c, const char *code, json_t *j, bool addon)
{
	int rc;
	Ent__V1__Event *ev = add_event(c);
	if (!ev)
		return oom(c);
	if ((rc = conv_msg(c, j, grants_by_hand, &ent__v1__set_entitlements_request__descriptor,
			   &ev->set_plan)))
		return rc;
	/* set_plan and set_addon share the union slot. */
	ev->kind_case = addon ? ENT__V1__EVENT__KIND_SET_ADDON : ENT__V1__EVENT__KIND_SET_PLAN;
	Ent__V1__SetEntitlementsRequest *p = ev->set_plan;
	if (!(p->code = ent_arena_strndup(c->arena, code, strlen(code))))
		return oom(c);
	return conv_keyed(c, j, "entitlements", NULL, conv_grant, &p->n_entitlements,
			  &p->entitlements);
}

/* ---- subscriptions ---------------------------------------------------------------------- */

static int conv_subscription(struct conv *c, json_t *j)
{
	int rc;
	Ent__V1__Event *ev = add_event(c);
	if (!ev)
		return oom(c);
	if ((rc = conv_msg(c, j, grants_by_hand, &ent__v1__subscription__descriptor,
			   &ev->upsert_subscription)) ||
	    (rc = required(c, j, "id")) || (rc = required(c, j, "customer_id")))
		return rc;
	ev->kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	Ent__V1__Subscription *s = ev->upsert_subscription;
	for (size_t i = 0; i < s->n_addons; i++) {
		if (s->addons[i]->addon_code[0])
			continue;
		path_key(&c->path, "addons");
		path_index(&c->path, i);
		return fail_at(c, "addon_code", "required");
	}
	return conv_keyed(c, j, "entitlements", NULL, conv_grant, &s->n_entitlements,
			  &s->entitlements);
}

/* ---- overrides ---------------------------------------------------------------------------- */

/*
 * An override with a value (Hyperline) is a set_override event, followed by an update_override
 * carrying the quantity when there is one (SetCustomerEntitlementRequest mirrors Hyperline's
 * PUT, which has no quantity). Without a value it is a Zenskar assignment: update_override
 * alone, which creates the override holding just quantity and window.
 *
 * The applier stamps created_at/updated_at with the event time, so the document's stamps travel
 * as ev->at: the first event at created_at, a second one at updated_at when they differ.
 * ent_json_apply keeps these times only when it starts from an empty state (see there).
 */
static int conv_override(struct conv *c, json_t *j)
{
	static const char *const by_hand[] = {"value", "privileges", NULL};
	int rc;
	Ent__V1__CustomerOverride *co;
	if ((rc = conv_msg(c, j, by_hand, &ent__v1__customer_override__descriptor, &co)) ||
	    (rc = required(c, j, "customer_id")) || (rc = required(c, j, "feature_code")))
		return rc;
	json_t *v = json_object_get(j, "value");
	bool has_value = v && !json_is_null(v);
	bool has_qty = co->quantity != NULL;
	Ent__V1__Event *ev = add_event(c);
	if (!ev)
		return oom(c);
	ev->at = co->created_at ? co->created_at : co->updated_at;
	if (has_value) {
		Ent__V1__SetCustomerEntitlementRequest *o = zalloc(c, sizeof(*o));
		Ent__V1__OverrideValue *ov = zalloc(c, sizeof(*ov));
		if (!o || !ov)
			return oom(c);
		ent__v1__set_customer_entitlement_request__init(o);
		ent__v1__override_value__init(ov);
		ev->kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
		ev->set_override = o;
		o->customer_id = co->customer_id;
		o->feature_code = co->feature_code;
		o->active_from = co->active_from;
		o->expires_at = co->expires_at;
		o->reason = co->reason;
		o->unlimited = co->unlimited;
		o->n_static_values = co->n_static_values;
		o->static_values = co->static_values;
		/* Hyperline's plain value. */
		if (json_is_boolean(v)) {
			ov->kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
			ov->bool_value = json_is_true(v);
		} else if (json_is_number(v)) {
			ov->kind_case = ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE;
			ov->number_value = json_number_value(v);
		} else {
			return fail_at(c, "value", "expected true, false or a number");
		}
		o->value = ov;
		if ((rc = conv_keyed(c, j, "privileges", co->feature_code, conv_priv,
				     &o->n_privileges, &o->privileges)))
			return rc;
	} else {
		static const char *const need_value[] = {"reason", "unlimited", "static_values",
							 "privileges", NULL};
		for (const char *const *k = need_value; *k; k++)
			if (json_object_get(j, *k))
				return fail_at(
					c, "value",
					"required with %s (without a value an override is a "
					"Zenskar assignment: quantity, active_from, expires_at)",
					*k);
		Ent__V1__UpdateCustomerEntitlementRequest *u = zalloc(c, sizeof(*u));
		Google__Protobuf__Int64Value *w = zalloc(c, 2 * sizeof(*w));
		if (!u || !w)
			return oom(c);
		ent__v1__update_customer_entitlement_request__init(u);
		ev->kind_case = ENT__V1__EVENT__KIND_UPDATE_OVERRIDE;
		ev->update_override = u;
		u->customer_id = co->customer_id;
		u->feature_code = co->feature_code;
		if (co->active_from) {
			google__protobuf__int64_value__init(&w[0]);
			w[0].value = co->active_from;
			u->active_from = &w[0];
		}
		if (co->expires_at) {
			google__protobuf__int64_value__init(&w[1]);
			w[1].value = co->expires_at;
			u->expiry_at = &w[1];
		}
		u->quantity = co->quantity;
	}
	/* The quantity (with a value), or a later updated_at: one more update. */
	bool qty_later = has_value && has_qty;
	if (qty_later || (co->updated_at && co->updated_at != ev->at)) {
		Ent__V1__UpdateCustomerEntitlementRequest *u = zalloc(c, sizeof(*u));
		Ent__V1__Event *ev2 = add_event(c);
		if (!u || !ev2)
			return oom(c);
		ent__v1__update_customer_entitlement_request__init(u);
		u->customer_id = co->customer_id;
		u->feature_code = co->feature_code;
		if (qty_later)
			u->quantity = co->quantity;
		ev2->kind_case = ENT__V1__EVENT__KIND_UPDATE_OVERRIDE;
		ev2->update_override = u;
		ev2->at = co->updated_at;
	}
	return 0;
}

/* ---- usage ------------------------------------------------------------------------------- */

/* A counter (what export writes: set as is) when it has "used", else a usage report. */
static int conv_usage(struct conv *c, json_t *j)
{
	int rc;
	if ((rc = need_object(c, j)))
		return rc;
	Ent__V1__Event *ev = add_event(c);
	if (!ev)
		return oom(c);
	if (json_object_get(j, "used")) {
		if ((rc = conv_msg(c, j, NULL, &ent__v1__usage_state__descriptor,
				   &ev->set_usage)) ||
		    (rc = required(c, j, "customer_id")) || (rc = required(c, j, "feature_code")))
			return rc;
		ev->kind_case = ENT__V1__EVENT__KIND_SET_USAGE;
		json_t *ps = json_object_get(j, "period_start");
		if (!ps || json_is_null(ps))
			ev->set_usage->period_start = ENT_T_MIN; /* never resets (export.c) */
		return 0;
	}
	if ((rc = conv_msg(c, j, NULL, &ent__v1__report_usage_request__descriptor,
			   &ev->report_usage)) ||
	    (rc = required(c, j, "customer_id")) || (rc = required(c, j, "feature_code")) ||
	    (rc = required(c, j, "idempotency_key")) || (rc = required(c, j, "quantity")))
		return rc;
	ev->kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	return 0;
}

/* ---- the document ------------------------------------------------------------------------ */

static const char *const doc_keys[] = {"features",  "plans", "addons", "subscriptions",
				       "overrides", "usage", "ended",  NULL};

/* A cleanup tombstone, as export writes it: set as is. */
static int conv_ended(struct conv *c, json_t *j)
{
	int rc;
	Ent__V1__Event *ev = add_event(c);
	if (!ev)
		return oom(c);
	if ((rc = conv_msg(c, j, NULL, &ent__v1__ended_state__descriptor, &ev->set_ended)) ||
	    (rc = required(c, j, "customer_id")) || (rc = required(c, j, "ended_at")))
		return rc;
	ev->kind_case = ENT__V1__EVENT__KIND_SET_ENDED;
	return 0;
}

typedef int (*conv_item_fn)(struct conv *c, json_t *j);

static int conv_array(struct conv *c, json_t *doc, const char *key, conv_item_fn fn)
{
	json_t *a = json_object_get(doc, key);
	if (!a || json_is_null(a))
		return 0;
	size_t old = path_key(&c->path, key);
	for (size_t i = 0; i < json_array_size(a); i++) {
		size_t o2 = path_index(&c->path, i);
		int rc = fn(c, json_array_get(a, i));
		if (rc)
			return rc;
		path_pop(&c->path, o2);
	}
	path_pop(&c->path, old);
	return 0;
}

static int conv_plans(struct conv *c, json_t *doc, const char *key, bool addon)
{
	json_t *m = json_object_get(doc, key);
	if (!m || json_is_null(m))
		return 0;
	size_t old = path_key(&c->path, key);
	const char *code;
	json_t *v;
	json_object_foreach(m, code, v)
	{
		size_t o2 = path_key(&c->path, code);
		int rc = conv_plan(c, code, v, addon);
		if (rc)
			return rc;
		path_pop(&c->path, o2);
	}
	path_pop(&c->path, old);
	return 0;
}

/* Type-check the top-level members and count the events they make, to size the arrays once. */
static int count_events(struct conv *c, json_t *doc, size_t *n)
{
	static const struct {
		const char *key;
		bool object;
		size_t events; /* per item */
	} members[] = {
		{"features", false, 1},	     {"plans", true, 1},      {"addons", true, 1},
		{"subscriptions", false, 1}, {"overrides", false, 2}, {"usage", false, 1},
		{"ended", false, 1},
	};
	*n = 0;
	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		json_t *m = json_object_get(doc, members[i].key);
		if (!m || json_is_null(m))
			continue;
		if (members[i].object ? !json_is_object(m) : !json_is_array(m))
			return fail_at(c, members[i].key,
				       members[i].object ? "expected object" : "expected array");
		*n += members[i].events *
		      (members[i].object ? json_object_size(m) : json_array_size(m));
	}
	return 0;
}

int ent_json_to_events_paths(const char *text, size_t len, struct ent_arena *arena,
			     Ent__V1__Event ***events, const char ***paths, size_t *n,
			     struct ent_err *err)
{
	struct conv c = {.arena = arena, .err = err};
	json_error_t jerr;
	int rc;
	*events = NULL;
	*n = 0;
	if (paths)
		*paths = NULL;
	json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc)
		return ent_err_set(err, ENT_EINVAL, "line %d column %d: %s", jerr.line, jerr.column,
				   jerr.text);
	if (!json_is_object(doc)) {
		rc = ent_err_set(err, ENT_EINVAL, "document: expected object");
		goto out;
	}
	if ((rc = check_keys(&c, doc, doc_keys)) || (rc = count_events(&c, doc, &c.cap)))
		goto out;
	ent_pb_allocator(&c.alloc, arena);
	c.opts = ent_json_doc;
	c.opts.alloc = &c.alloc;
	c.ev = zalloc(&c, c.cap * sizeof(*c.ev));
	c.paths = zalloc(&c, c.cap * sizeof(*c.paths));
	c.decl = json_object();
	if (!c.ev || !c.paths || !c.decl) {
		rc = oom(&c);
		goto out;
	}
	/* Dependency order, whatever the document's order: a plan refers to features, a
	 * subscription to plans and add-ons, an override and usage to a customer. */
	if ((rc = conv_array(&c, doc, "features", conv_feature)) ||
	    (rc = conv_plans(&c, doc, "plans", false)) ||
	    (rc = conv_plans(&c, doc, "addons", true)) ||
	    (rc = conv_array(&c, doc, "subscriptions", conv_subscription)) ||
	    (rc = conv_array(&c, doc, "overrides", conv_override)) ||
	    (rc = conv_array(&c, doc, "usage", conv_usage)) ||
	    (rc = conv_array(&c, doc, "ended", conv_ended)))
		goto out;
	*events = c.ev;
	*n = c.n;
	if (paths)
		*paths = c.paths;
out:
	json_decref(c.decl);
	json_decref(doc);
	return rc;
}

int ent_json_to_events(const char *text, size_t len, struct ent_arena *arena,
		       Ent__V1__Event ***events, size_t *n, struct ent_err *err)
{
	return ent_json_to_events_paths(text, len, arena, events, NULL, n, err);
}
