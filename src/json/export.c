/*
 * Stored state -> the JSON document, streamed: each object is built as a small jansson tree,
 * printed on one line into the output buffer and dropped, so exporting a million subscriptions
 * never holds the whole document as a tree.
 *
 * The output is canonical so that export -> import -> export is byte-identical: tables in key
 * order, members in a fixed order, default values (0, "", false, empty lists) left out, every
 * section present even when empty.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ent/json.h"
#include "ent/model.h"
#include "ent/pbarena.h"
#include "ent/v1/event.pb-c.h"
#include "json/impl.h"

/* A growing malloc'ed string. oom sticks: later writes are dropped and the export fails. */
struct out {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void out_put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 64 * 1024;
		while (o->len + n + 1 > cap)
			cap *= 2;
		char *b = realloc(o->buf, cap);
		if (!b) {
			o->oom = true;
			return;
		}
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void out_str(struct out *o, const char *s)
{
	out_put(o, s, strlen(s));
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
	struct out *o = data;
	out_put(o, buffer, size);
	return o->oom ? -1 : 0;
}

/* Print \a j on one line ("key": value, ...) and release it. NULL means allocation failed. */
static void out_json(struct out *o, json_t *j)
{
	if (!j || json_dump_callback(j, dump_cb, o, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER))
		o->oom = true;
	json_decref(j);
}

/* ---- value helpers ------------------------------------------------------------------- */

/*
 * jansson's json_object_set_new steals the value even on failure, so a NULL from an allocation
 * only has to be remembered: set() records it in the exporter's oom flag through *ok.
 */
static void set(json_t *obj, const char *key, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(obj, key, v))
		*ok = false;
}

static void set_str(json_t *obj, const char *key, const char *s, bool *ok)
{
	if (s && *s)
		set(obj, key, json_string(s), ok);
}

/* Years 1..9999 print as RFC 3339 (what ent_time_parse reads back); others as Unix ms. */
static json_t *time_json(int64_t ms)
{
	if (ms >= -62135596800000LL && ms <= 253402300799999LL) {
		char buf[40];
		return json_string(ent_time_fmt(ms, buf, sizeof(buf)));
	}
	return json_integer(ms);
}

static void set_time(json_t *obj, const char *key, int64_t ms, bool *ok)
{
	if (ms)
		set(obj, key, time_json(ms), ok);
}

static json_t *str_array(char **v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_string(v[i] ? v[i] : ""))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *priv_value_json(const Ent__V1__PrivilegeValue *pv)
{
	switch (pv->value_case) {
	case ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE:
		return json_integer(pv->int_value);
	case ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE:
		return json_boolean(pv->bool_value);
	case ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE:
		return json_string(pv->string_value ? pv->string_value : "");
	default:
		return json_null();
	}
}

static json_t *priv_map(Ent__V1__PrivilegeValue **pv, size_t n, bool *ok)
{
	json_t *m = json_object();
	for (size_t i = 0; m && i < n; i++)
		set(m, pv[i]->code, priv_value_json(pv[i]), ok);
	return m;
}

/* The keys that switch a grant object to the extended form (import.c has the same list). */
static bool is_grant_key(const char *k)
{
	static const char *const keys[] = {
		"enabled",	 "usage_limit", "unlimited", "is_soft_limit", "usage_reset_period",
		"static_values", "privileges",	NULL};
	for (const char *const *p = keys; *p; p++)
		if (!strcmp(*p, k))
			return true;
	return false;
}

/*
 * Lago's plain privilege map when the grant is nothing but privileges whose codes cannot be
 * mistaken for the extended form's keys; the extended form otherwise.
 */
static json_t *grant_json(const Ent__V1__Grant *g, bool *ok)
{
	bool plain = !g->enabled && !g->usage_limit && !g->unlimited && !g->is_soft_limit &&
		     !g->usage_reset_period && !g->n_static_values;
	for (size_t i = 0; plain && i < g->n_privileges; i++)
		plain = !is_grant_key(g->privileges[i]->code);
	if (plain)
		return priv_map(g->privileges, g->n_privileges, ok);
	json_t *o = json_object();
	if (!o)
		return NULL;
	if (g->enabled)
		set(o, "enabled", json_boolean(g->enabled->value), ok);
	if (g->usage_limit)
		set(o, "usage_limit", json_integer(g->usage_limit), ok);
	if (g->unlimited)
		set(o, "unlimited", json_true(), ok);
	if (g->is_soft_limit)
		set(o, "is_soft_limit", json_true(), ok);
	const char *rp = ent_json_reset_name((uint8_t)g->usage_reset_period);
	if (rp)
		set(o, "usage_reset_period", json_string(rp), ok);
	if (g->n_static_values)
		set(o, "static_values", str_array(g->static_values, g->n_static_values), ok);
	if (g->n_privileges)
		set(o, "privileges", priv_map(g->privileges, g->n_privileges, ok), ok);
	return o;
}

static json_t *grant_map(Ent__V1__Grant **g, size_t n, bool *ok)
{
	json_t *m = json_object();
	for (size_t i = 0; m && i < n; i++)
		set(m, g[i]->feature_code, grant_json(g[i], ok), ok);
	return m;
}

/* ---- one record per table --------------------------------------------------------------- */

static json_t *feature_json(const Ent__V1__Feature *f, bool *ok)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	set_str(o, "code", f->code, ok);
	set_str(o, "name", f->name, ok);
	set_str(o, "description", f->description, ok);
	const char *t = ent_json_feature_type_name((uint8_t)f->type);
	if (t)
		set(o, "type", json_string(t), ok);
	set_str(o, "unit_singular", f->unit_singular, ok);
	set_str(o, "unit_plural", f->unit_plural, ok);
	if (f->n_metadata) {
		json_t *md = json_object();
		for (size_t i = 0; md && i < f->n_metadata; i++)
			set(md, f->metadata[i]->key, json_string(f->metadata[i]->value), ok);
		set(o, "metadata", md, ok);
	}
	if (f->n_privileges) {
		json_t *a = json_array();
		for (size_t i = 0; a && i < f->n_privileges; i++) {
			const Ent__V1__PrivilegeDef *d = f->privileges[i];
			json_t *p = json_object();
			if (!p) {
				*ok = false;
				break;
			}
			set_str(p, "code", d->code, ok);
			set_str(p, "name", d->name, ok);
			const char *vt = ent_json_priv_type_name((uint8_t)d->value_type);
			if (vt)
				set(p, "value_type", json_string(vt), ok);
			if (d->n_select_options) {
				json_t *cfg = json_object();
				if (cfg)
					set(cfg, "select_options",
					    str_array(d->select_options, d->n_select_options), ok);
				set(p, "config", cfg, ok);
			}
			if (json_array_append_new(a, p))
				*ok = false;
		}
		set(o, "privileges", a, ok);
	}
	set_time(o, "created_at", f->created_at, ok);
	set_time(o, "updated_at", f->updated_at, ok);
	return o;
}

static json_t *plan_json(const Ent__V1__SetEntitlementsRequest *p, bool *ok)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	set_str(o, "name", p->name, ok);
	set(o, "entitlements", grant_map(p->entitlements, p->n_entitlements, ok), ok);
	return o;
}

static json_t *subscription_json(const Ent__V1__Subscription *s, bool *ok)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	set_str(o, "id", s->id, ok);
	set_str(o, "customer_id", s->customer_id, ok);
	set_str(o, "plan_code", s->plan_code, ok);
	if (s->quantity)
		set(o, "quantity", json_integer(s->quantity), ok);
	if (s->n_addons) {
		json_t *a = json_array();
		for (size_t i = 0; a && i < s->n_addons; i++) {
			json_t *sa = json_object();
			if (!sa) {
				*ok = false;
				break;
			}
			set_str(sa, "addon_code", s->addons[i]->addon_code, ok);
			if (s->addons[i]->quantity)
				set(sa, "quantity", json_integer(s->addons[i]->quantity), ok);
			if (json_array_append_new(a, sa))
				*ok = false;
		}
		set(o, "addons", a, ok);
	}
	set_time(o, "active_from", s->active_from, ok);
	set_time(o, "ends_at", s->ends_at, ok);
	set_time(o, "billing_anchor", s->billing_anchor, ok);
	if (s->cancelled)
		set(o, "cancelled", json_true(), ok);
	if (s->n_entitlements)
		set(o, "entitlements", grant_map(s->entitlements, s->n_entitlements, ok), ok);
	set_time(o, "created_at", s->created_at, ok);
	set_time(o, "updated_at", s->updated_at, ok);
	return o;
}

/* Integral numbers print as integers ("value": 500, not 500.0); others with 17 digits. */
static json_t *number_json(double d)
{
	if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
		return json_integer((json_int_t)d);
	return json_real(d);
}

static json_t *override_json(const Ent__V1__CustomerOverride *c, bool *ok)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	set_str(o, "customer_id", c->customer_id, ok);
	set_str(o, "feature_code", c->feature_code, ok);
	if (c->value && c->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE)
		set(o, "value", json_boolean(c->value->bool_value), ok);
	else if (c->value && c->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE)
		set(o, "value", number_json(c->value->number_value), ok);
	if (c->quantity)
		set(o, "quantity", json_integer(c->quantity->value), ok);
	if (c->unlimited)
		set(o, "unlimited", json_true(), ok);
	if (c->n_static_values)
		set(o, "static_values", str_array(c->static_values, c->n_static_values), ok);
	if (c->n_privileges)
		set(o, "privileges", priv_map(c->privileges, c->n_privileges, ok), ok);
	set_str(o, "reason", c->reason, ok);
	set_time(o, "active_from", c->active_from, ok);
	set_time(o, "expires_at", c->expires_at, ok);
	set_time(o, "created_at", c->created_at, ok);
	set_time(o, "updated_at", c->updated_at, ok);
	return o;
}

static int64_t le64(const char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | (uint8_t)p[i];
	return (int64_t)v;
}

/* ---- the scan ------------------------------------------------------------------------------ */

enum section_kind {
	SEC_FEATURES,
	SEC_PLANS,
	SEC_ADDONS,
	SEC_SUBS,
	SEC_OVERRIDES,
	SEC_USAGE,
	SEC_ENDED,
};

struct exporter {
	struct out out;
	struct ent_arena arena; /* one record's unpacked message; reset per record */
	ProtobufCAllocator alloc;
	struct ent_err *err;
	enum section_kind kind;
	const char *name;
	size_t count;
};

static int corrupt(struct exporter *x, struct ent_str key)
{
	int n = key.len > 80 ? 80 : (int)key.len;
	return ent_err_set(x->err, ENT_ECORRUPT, "%s: stored record \"%.*s\" does not decode",
			   x->name, n, key.p);
}

static int record_cb(void *ctx, struct ent_str key, struct ent_str val)
{
	struct exporter *x = ctx;
	const uint8_t *data = (const uint8_t *)val.p;
	json_t *j = NULL;
	bool ok = true;
	ent_arena_reset(&x->arena);
	out_str(&x->out, x->count++ ? ",\n    " : "\n    ");

	switch (x->kind) {
	case SEC_FEATURES: {
		/* [u8 feature type][Feature protobuf]: the type byte is for the hot path only. */
		if (val.len < 1)
			return corrupt(x, key);
		Ent__V1__Feature *f = ent__v1__feature__unpack(&x->alloc, val.len - 1, data + 1);
		if (!f)
			return corrupt(x, key);
		j = feature_json(f, &ok);
		break;
	}
	case SEC_PLANS:
	case SEC_ADDONS: {
		Ent__V1__SetEntitlementsRequest *p =
			ent__v1__set_entitlements_request__unpack(&x->alloc, val.len, data);
		if (!p)
			return corrupt(x, key);
		/* The table key is the code; the document's map key is too. */
		json_t *k = json_stringn(key.p, key.len);
		if (!k)
			break;
		out_json(&x->out, k);
		out_str(&x->out, ": ");
		j = plan_json(p, &ok);
		break;
	}
	case SEC_SUBS: {
		Ent__V1__Subscription *s = ent__v1__subscription__unpack(&x->alloc, val.len, data);
		if (!s)
			return corrupt(x, key);
		j = subscription_json(s, &ok);
		break;
	}
	case SEC_OVERRIDES: {
		Ent__V1__CustomerOverride *c =
			ent__v1__customer_override__unpack(&x->alloc, val.len, data);
		if (!c)
			return corrupt(x, key);
		j = override_json(c, &ok);
		break;
	}
	case SEC_USAGE: {
		/* customer\0feature -> {i64 period_start, i64 used} LE */
		const char *nul = memchr(key.p, '\0', key.len);
		if (!nul || val.len < 16)
			return corrupt(x, key);
		j = json_object();
		if (!j)
			break;
		size_t clen = (size_t)(nul - key.p);
		set(j, "customer_id", json_stringn(key.p, clen), &ok);
		set(j, "feature_code", json_stringn(nul + 1, key.len - clen - 1), &ok);
		/* A never-resetting counter has no period start (INT64_MIN): the key is left
		 * out, and import reads its absence as that. */
		if (le64(val.p) != INT64_MIN)
			set(j, "period_start", time_json(le64(val.p)), &ok);
		set(j, "used", json_integer(le64(val.p + 8)), &ok);
		break;
	}
	case SEC_ENDED: {
		/* customer\0feature -> i64 ended_at LE: cleanup tombstones, so a restore answers
		 * EXPIRED where this database does. */
		const char *nul = memchr(key.p, '\0', key.len);
		if (!nul || (val.len != 8 && val.len != 9))
			return corrupt(x, key);
		j = json_object();
		if (!j)
			break;
		size_t clen = (size_t)(nul - key.p);
		set(j, "customer_id", json_stringn(key.p, clen), &ok);
		/* No feature: the customer's own marker. 9 bytes: what ended granted nothing. */
		if (key.len - clen - 1)
			set(j, "feature_code", json_stringn(nul + 1, key.len - clen - 1), &ok);
		set(j, "ended_at", time_json(le64(val.p)), &ok);
		if (val.len == 9 && key.len - clen - 1)
			set(j, "no_grant", json_true(), &ok);
		break;
	}
	}
	if (!ok) {
		json_decref(j);
		j = NULL;
	}
	out_json(&x->out, j);
	if (x->out.oom)
		return ent_err_set(x->err, ENT_ENOMEM, "%s: out of memory", x->name);
	return 0;
}

int ent_json_export(struct ent_view *view, char **out, struct ent_err *err)
{
	static const struct {
		const char *name;
		enum ent_table table;
		enum section_kind kind;
		bool object;
	} sections[] = {
		{"features", ENT_T_FEATURES, SEC_FEATURES, false},
		{"plans", ENT_T_PLANS, SEC_PLANS, true},
		{"addons", ENT_T_ADDONS, SEC_ADDONS, true},
		{"subscriptions", ENT_T_SUBS, SEC_SUBS, false},
		{"overrides", ENT_T_OVERRIDES, SEC_OVERRIDES, false},
		{"usage", ENT_T_USAGE, SEC_USAGE, false},
		{"ended", ENT_T_ENDED, SEC_ENDED, false},
	};
	struct exporter x = {.err = err};
	int rc = 0;
	*out = NULL;
	if (err)
		err->code = 0;
	ent_arena_init(&x.arena, 0);
	ent_pb_allocator(&x.alloc, &x.arena);
	out_str(&x.out, "{");
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		x.name = sections[i].name;
		x.kind = sections[i].kind;
		x.count = 0;
		out_str(&x.out, i ? ",\n  \"" : "\n  \"");
		out_str(&x.out, x.name);
		out_str(&x.out, sections[i].object ? "\": {" : "\": [");
		rc = ent_view_scan(view, sections[i].table, (struct ent_str){"", 0},
				   (struct ent_str){"", 0}, 0, record_cb, &x);
		if (rc) {
			if (!err || !err->code)
				ent_err_set(err, rc, "%s: %s", x.name, ent_strerror(rc));
			goto fail;
		}
		if (x.count)
			out_str(&x.out, "\n  ");
		out_str(&x.out, sections[i].object ? "}" : "]");
	}
	out_str(&x.out, "\n}\n");
	if (x.out.oom) {
		rc = ent_err_set(err, ENT_ENOMEM, "export: out of memory");
		goto fail;
	}
	ent_arena_deinit(&x.arena);
	*out = x.out.buf;
	return 0;
fail:
	ent_arena_deinit(&x.arena);
	free(x.out.buf);
	return rc < 0 ? rc : -ENT_EIO;
}
