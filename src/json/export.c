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

/* ---- one record per table --------------------------------------------------------------- */

/*
 * Each record is its message converted by descriptor (json/pbjson.c, with the document's
 * options: proto field names and order, RFC 3339 times, defaults left out). What is written by
 * hand below is only the document's shape: maps keyed by code where the message has a list,
 * Lago's {code: value} privilege maps, a feature privilege's "config", an override's plain value.
 */

static json_t *encode(const ProtobufCMessage *m)
{
	return ent_json_pb_encode(m, &ent_json_doc);
}

/* Replace member \a key of \a o (in place: jansson keeps its position) or drop it. */
static bool replace(json_t *o, const char *key, json_t *v)
{
	if (!json_object_get(o, key)) {
		json_decref(v);
		return true;
	}
	return v && !json_object_set_new(o, key, v);
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

/*
 * A list of \a n messages as the document's map keyed by each one's code: \a fn gives an
 * item's key and value. NULL when out of memory.
 */
static json_t *keyed(const void *const *items, size_t n,
		     json_t *(*fn)(const void *item, const char **key))
{
	json_t *m = json_object();
	for (size_t i = 0; m && i < n; i++) {
		const char *key;
		json_t *v = fn(items[i], &key);
		if (json_object_set_new(m, key, v)) {
			json_decref(m);
			return NULL;
		}
	}
	return m;
}

static json_t *priv_item(const void *item, const char **key)
{
	const Ent__V1__PrivilegeValue *pv = item;
	*key = pv->code;
	return priv_value_json(pv);
}

/* Lago's {code: value} privilege map. */
static json_t *priv_map(Ent__V1__PrivilegeValue **pv, size_t n)
{
	return keyed((const void *const *)pv, n, priv_item);
}

/* Does \a k name a member of the extended grant form (a Grant field the document carries)? */
static bool is_grant_key(const char *k)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field_by_name(&ent__v1__grant__descriptor, k);
	return f && !ent_json_doc.omit(&ent__v1__grant__descriptor, f);
}

/*
 * Lago's plain privilege map when the grant is nothing but privileges whose codes cannot be
 * mistaken for the extended form's keys; the extended form otherwise.
 */
static json_t *grant_json(const Ent__V1__Grant *g)
{
	json_t *o = encode(&g->base);
	if (!o)
		return NULL;
	bool plain = json_object_size(o) == (g->n_privileges ? 1 : 0);
	for (size_t i = 0; plain && i < g->n_privileges; i++)
		plain = !is_grant_key(g->privileges[i]->code);
	if (plain) {
		json_decref(o);
		return priv_map(g->privileges, g->n_privileges);
	}
	if (!replace(o, "privileges", priv_map(g->privileges, g->n_privileges))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *grant_item(const void *item, const char **key)
{
	const Ent__V1__Grant *g = item;
	*key = g->feature_code;
	return grant_json(g);
}

/* A message's list of grants as the document's {feature_code: grant}. */
static json_t *grant_map(Ent__V1__Grant **g, size_t n)
{
	return keyed((const void *const *)g, n, grant_item);
}

static json_t *feature_json(const Ent__V1__Feature *f)
{
	json_t *o = encode(&f->base);
	json_t *privs = json_object_get(o, "privileges");
	size_t i;
	json_t *p;
	/* Lago nests a privilege's select options in "config". */
	json_array_foreach(privs, i, p)
	{
		json_t *opts = json_object_get(p, "select_options");
		if (!opts)
			continue;
		json_t *cfg = json_pack("{s:O}", "select_options", opts);
		if (!cfg || json_object_del(p, "select_options") ||
		    json_object_set_new(p, "config", cfg)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

struct json_t *ent_json_feature_doc(const struct Ent__V1__Feature *f)
{
	return feature_json(f);
}

static json_t *plan_json(const Ent__V1__SetEntitlementsRequest *p)
{
	json_t *o = encode(&p->base);
	/* Always present, even empty: a plan's grants are what it is for. */
	if (o &&
	    json_object_set_new(o, "entitlements", grant_map(p->entitlements, p->n_entitlements))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *subscription_json(const Ent__V1__Subscription *s)
{
	json_t *o = encode(&s->base);
	if (o && !replace(o, "entitlements", grant_map(s->entitlements, s->n_entitlements))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Integral numbers print as integers ("value": 500, not 500.0); others with 17 digits. */
static json_t *number_json(double d)
{
	if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
		return json_integer((json_int_t)d);
	return json_real(d);
}

/* Hyperline's plain value: true, false or a number. */
static json_t *override_value_json(const Ent__V1__OverrideValue *v)
{
	if (v && v->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE)
		return json_boolean(v->bool_value);
	if (v && v->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE)
		return number_json(v->number_value);
	return json_null();
}

static json_t *override_json(const Ent__V1__CustomerOverride *c)
{
	json_t *o = encode(&c->base);
	if (o && (!replace(o, "value", override_value_json(c->value)) ||
		  !replace(o, "privileges", priv_map(c->privileges, c->n_privileges)))) {
		json_decref(o);
		return NULL;
	}
	/* An override whose value kind is unset has "value": {} from the encoder: drop it. */
	if (o && json_is_null(json_object_get(o, "value")))
		json_object_del(o, "value");
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
		j = feature_json(f);
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
		j = plan_json(p);
		break;
	}
	case SEC_SUBS: {
		Ent__V1__Subscription *s = ent__v1__subscription__unpack(&x->alloc, val.len, data);
		if (!s)
			return corrupt(x, key);
		j = subscription_json(s);
		break;
	}
	case SEC_OVERRIDES: {
		Ent__V1__CustomerOverride *c =
			ent__v1__customer_override__unpack(&x->alloc, val.len, data);
		if (!c)
			return corrupt(x, key);
		j = override_json(c);
		break;
	}
	case SEC_USAGE: {
		/* customer\0feature -> {i64 period_start, i64 used} LE: as a UsageState. */
		const char *nul = memchr(key.p, '\0', key.len);
		if (!nul || val.len < 16)
			return corrupt(x, key);
		Ent__V1__UsageState u = ENT__V1__USAGE_STATE__INIT;
		size_t clen = (size_t)(nul - key.p);
		u.customer_id = ent_arena_strndup(&x->arena, key.p, clen);
		u.feature_code = ent_arena_strndup(&x->arena, nul + 1, key.len - clen - 1);
		u.period_start = le64(val.p);
		u.used = le64(val.p + 8);
		if (!u.customer_id || !u.feature_code)
			break;
		/* A never-resetting counter has no period start (INT64_MIN): the key is left out,
		 * and import reads its absence as that. "used" is always written, even 0: import
		 * tells a counter from a usage report by it. */
		int64_t ps = u.period_start;
		if (ps == INT64_MIN)
			u.period_start = 0;
		j = encode(&u.base);
		char buf[40];
		if (j)
			json_object_del(j, "used");
		if (j && ((ps == 0 &&
			   json_object_set_new(j, "period_start",
					       json_string(ent_time_fmt(0, buf, sizeof(buf))))) ||
			  json_object_set_new(j, "used", json_integer(u.used)))) {
			json_decref(j);
			j = NULL;
		}
		break;
	}
	case SEC_ENDED: {
		/* customer\0feature -> i64 ended_at LE (9 bytes: what ended granted nothing):
		 * cleanup tombstones as EndedState, so a restore answers EXPIRED where this
		 * database does. No feature: the customer's own marker. */
		const char *nul = memchr(key.p, '\0', key.len);
		if (!nul || (val.len != 8 && val.len != 9))
			return corrupt(x, key);
		Ent__V1__EndedState e = ENT__V1__ENDED_STATE__INIT;
		size_t clen = (size_t)(nul - key.p);
		e.customer_id = ent_arena_strndup(&x->arena, key.p, clen);
		e.feature_code = ent_arena_strndup(&x->arena, nul + 1, key.len - clen - 1);
		e.ended_at = le64(val.p);
		e.no_grant = val.len == 9 && key.len - clen - 1;
		if (e.customer_id && e.feature_code)
			j = encode(&e.base);
		break;
	}
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
		rc = ent_store_view_scan(view, sections[i].table, (struct ent_str){"", 0},
					 (struct ent_str){"", 0}, 0, record_cb, &x);
		if (rc) {
			if (!err || !err->code)
				ent_err_set(err, rc, "%s: %s", x.name, ent_err_strerror(rc));
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
