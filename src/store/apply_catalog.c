/*
 * apply() for the catalog: features, plans and add-ons, and the validation of grants and
 * privilege values they share with subscriptions and overrides.
 *
 * Error messages name the offending field the way the request spells it
 * ("entitlements[2].privileges.provider: 'azure' is not one of google, okta"), so a caller can
 * map them to a form field like Zenskar's 422 locations.
 */
#include <stdio.h>

#include "ent/pbarena.h"
#include "store/impl.h"

static const char *const priv_type_names[] = {"unspecified", "integer", "boolean", "string",
					      "select"};

static const char *ptype_name(int t)
{
	return t >= 0 && t <= ENT_PT_SELECT ? priv_type_names[t] : "unknown";
}

static struct ent_str s_(const char *s)
{
	return ent_str_c(s);
}

int ent_store_apply_check_text(struct ent_actx *c, const char *s, const char *field)
{
	if (s && strlen(s) > ENT_MAX_TEXT)
		return ent_err_set(c->err, ENT_EINVAL, "%s: longer than %d bytes", field,
				   ENT_MAX_TEXT);
	return 0;
}

int ent_store_apply_check_time(struct ent_actx *c, int64_t t, const char *field)
{
	if (t > ENT_WIRE_TIME_MAX || t < -ENT_WIRE_TIME_MAX)
		return ent_err_set(c->err, ENT_EINVAL,
				   "%s: beyond the largest instant, 2^53-1 ms (year 287396)",
				   field);
	return 0;
}

/* "'azure' is not one of google, okta" */
static int not_one_of(struct ent_actx *c, const char *field, const char *v,
		      const Ent__V1__PrivilegeDef *d)
{
	char list[160];
	size_t at = 0;
	list[0] = '\0';
	for (size_t i = 0; i < d->n_select_options && at < sizeof(list); i++)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%s", i ? ", " : "",
				       d->select_options[i]);
	return ent_err_set(c->err, ENT_EINVAL, "%s: '%.64s' is not one of %s", field, v, list);
}

int ent_store_apply_check_privs(struct ent_actx *c, const char *field, const Ent__V1__Feature *f,
				Ent__V1__PrivilegeValue *const *pv, size_t n,
				Ent__V1__PrivilegeValue ***out)
{
	*out = NULL;
	if (n == 0)
		return 0;
	if (n > ENT_MAX_PRIVS)
		return ent_err_set(c->err, ENT_EINVAL, "%s: more than %d privileges", field,
				   ENT_MAX_PRIVS);
	Ent__V1__PrivilegeValue **norm = ent_arena_alloc(c->arena, n * sizeof(*norm));
	Ent__V1__PrivilegeValue *copies = ent_arena_alloc(c->arena, n * sizeof(*copies));
	if (!norm || !copies)
		return -ENT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const Ent__V1__PrivilegeValue *v = pv[i];
		char fld[320];
		int r = ent_str_check_id(s_(v->code), ENT_MAX_CODE, field, c->err);
		if (r)
			return r;
		snprintf(fld, sizeof(fld), "%s.%s", field, v->code);
		const Ent__V1__PrivilegeDef *d = NULL;
		for (size_t j = 0; j < f->n_privileges && !d; j++)
			if (strcmp(f->privileges[j]->code, v->code) == 0)
				d = f->privileges[j];
		if (!d)
			return ent_err_set(c->err, ENT_EINVAL,
					   "%s: feature '%s' declares no such privilege", fld,
					   f->code);
		for (size_t j = 0; j < i; j++)
			if (strcmp(pv[j]->code, v->code) == 0)
				return ent_err_set(c->err, ENT_EINVAL, "%s: given twice", fld);
		if (v->value_type != 0 && v->value_type != d->value_type)
			return ent_err_set(c->err, ENT_EINVAL,
					   "%s: value_type %s does not match the declared %s", fld,
					   ptype_name(v->value_type), ptype_name(d->value_type));
		bool ok;
		switch (d->value_type) {
		case ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER:
			ok = v->value_case == ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
			break;
		case ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_BOOLEAN:
			ok = v->value_case == ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE;
			break;
		default:
			ok = v->value_case == ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
		}
		if (!ok)
			return ent_err_set(c->err, ENT_EINVAL, "%s: needs an %s value", fld,
					   ptype_name(d->value_type));
		if (v->value_case == ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE) {
			if ((r = ent_store_apply_check_text(c, v->string_value, fld)))
				return r;
			if (d->value_type == ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT) {
				bool found = false;
				for (size_t j = 0; j < d->n_select_options && !found; j++)
					found = strcmp(d->select_options[j], v->string_value) == 0;
				if (!found)
					return not_one_of(c, fld, v->string_value, d);
			}
		}
		copies[i] = *v;
		copies[i].value_type = d->value_type;
		norm[i] = &copies[i];
	}
	*out = norm;
	return 0;
}

/*
 * Fields a grant may only carry for one feature type: limits and reset periods mean something
 * only for metered features, static values only for static ones. Refused rather than ignored,
 * so a caller who set them learns they have no effect.
 */
static int check_grant_type(struct ent_actx *c, const char *pfx, const Ent__V1__Grant *g,
			    const Ent__V1__Feature *f)
{
	if (f->type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED) {
		const char *field = g->usage_limit	    ? "usage_limit"
				    : g->unlimited	    ? "unlimited"
				    : g->is_soft_limit	    ? "is_soft_limit"
				    : g->usage_reset_period ? "usage_reset_period"
							    : NULL;
		if (field)
			return ent_err_set(
				c->err, ENT_EINVAL, "%s.%s: only for metered features ('%s' is %s)",
				pfx, field, f->code, ent_model_feature_type_name((uint8_t)f->type));
	}
	if (g->n_static_values && f->type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC)
		return ent_err_set(c->err, ENT_EINVAL,
				   "%s.static_values: only for static features ('%s' is %s)", pfx,
				   f->code, ent_model_feature_type_name((uint8_t)f->type));
	return 0;
}

int ent_store_apply_check_grants(struct ent_actx *c, const char *field,
				 Ent__V1__Grant *const *grants, size_t n, Ent__V1__Grant ***out)
{
	*out = NULL;
	if (n > ENT_MAX_GRANTS)
		return ent_err_set(c->err, ENT_EINVAL, "%s: more than %d grants", field,
				   ENT_MAX_GRANTS);
	if (n == 0)
		return 0;
	Ent__V1__Grant **norm = ent_arena_alloc(c->arena, n * sizeof(*norm));
	Ent__V1__Grant *copies = ent_arena_alloc(c->arena, n * sizeof(*copies));
	if (!norm || !copies)
		return -ENT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const Ent__V1__Grant *g = grants[i];
		char pfx[128], fld[192];
		snprintf(pfx, sizeof(pfx), "%s[%zu]", field, i);
		snprintf(fld, sizeof(fld), "%s.feature_code", pfx);
		int r = ent_str_check_id(s_(g->feature_code), ENT_MAX_CODE, fld, c->err);
		if (r)
			return r;
		for (size_t j = 0; j < i; j++)
			if (strcmp(grants[j]->feature_code, g->feature_code) == 0)
				return ent_err_set(c->err, ENT_EINVAL, "%s: '%s' is granted twice",
						   fld, g->feature_code);
		Ent__V1__Feature *f;
		r = ent_store_load_feature(c->s, c->txn, s_(g->feature_code), c->arena, &f);
		if (r == -ENT_ENOTFOUND)
			return ent_err_set(c->err, ENT_EINVAL, "%s: unknown feature '%s'", fld,
					   g->feature_code);
		if (r)
			return r;
		if (g->usage_limit < 0)
			return ent_err_set(c->err, ENT_EINVAL, "%s.usage_limit: must be >= 0", pfx);
		if ((int)g->usage_reset_period < 0 || (int)g->usage_reset_period > ENT_RESET_NEVER)
			return ent_err_set(c->err, ENT_EINVAL,
					   "%s.usage_reset_period: unknown value %d", pfx,
					   (int)g->usage_reset_period);
		if (g->n_static_values > ENT_MAX_STATIC)
			return ent_err_set(c->err, ENT_EINVAL,
					   "%s.static_values: more than %d values", pfx,
					   ENT_MAX_STATIC);
		for (size_t j = 0; j < g->n_static_values; j++) {
			snprintf(fld, sizeof(fld), "%s.static_values[%zu]", pfx, j);
			if ((r = ent_store_apply_check_text(c, g->static_values[j], fld)))
				return r;
		}
		/* Each value valid on its own first, then whether the feature's type takes it. */
		if ((r = check_grant_type(c, pfx, g, f)))
			return r;
		snprintf(fld, sizeof(fld), "%s.privileges", pfx);
		Ent__V1__PrivilegeValue **pv;
		if ((r = ent_store_apply_check_privs(c, fld, f, g->privileges, g->n_privileges,
						     &pv)))
			return r;
		copies[i] = *g;
		copies[i].privileges = pv;
		norm[i] = &copies[i];
	}
	*out = norm;
	return 0;
}

/* Re-read what was stored, unpacked into the event arena: the echo is exactly the record. */
static int echo(struct ent_actx *c, enum ent_table t, struct ent_str key,
		const ProtobufCMessageDescriptor *d, size_t skip)
{
	MDB_val v;
	int r = ent_store_apply_get(c, t, key, &v);
	if (r)
		return r;
	if (v.mv_size < skip)
		return -ENT_ECORRUPT;
	c->res->object = protobuf_c_message_unpack(d, &c->alloc, v.mv_size - skip,
						   (const uint8_t *)v.mv_data + skip);
	return c->res->object ? 0 : -ENT_ECORRUPT;
}

/* ---- who uses a feature ------------------------------------------------------------------- */

struct users {
	const char *feature;
	struct ent_strset plans, addons, sub_keys, override_keys;
};

static bool grants_feature(Ent__V1__Grant *const *g, size_t n, const char *feature)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(g[i]->feature_code, feature) == 0)
			return true;
	return false;
}

static int users_in_object(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val,
			   struct ent_strset *set)
{
	struct users *u = ctx;
	ent_arena_reset(&c->ws->tmp);
	ProtobufCAllocator al;
	ent_pb_allocator(&al, &c->ws->tmp);
	Ent__V1__SetEntitlementsRequest *o =
		ent__v1__set_entitlements_request__unpack(&al, val.len, (const uint8_t *)val.p);
	if (!o)
		return -ENT_ECORRUPT;
	return grants_feature(o->entitlements, o->n_entitlements, u->feature)
		       ? ent_store_strset_add(c, set, key)
		       : 0;
}

static int users_plan(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	return users_in_object(c, ctx, key, val, &((struct users *)ctx)->plans);
}

static int users_addon(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	return users_in_object(c, ctx, key, val, &((struct users *)ctx)->addons);
}

static int users_sub(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	struct users *u = ctx;
	ent_arena_reset(&c->ws->tmp);
	ProtobufCAllocator al;
	ent_pb_allocator(&al, &c->ws->tmp);
	Ent__V1__Subscription *s =
		ent__v1__subscription__unpack(&al, val.len, (const uint8_t *)val.p);
	if (!s)
		return -ENT_ECORRUPT;
	return grants_feature(s->entitlements, s->n_entitlements, u->feature)
		       ? ent_store_strset_add(c, &u->sub_keys, key)
		       : 0;
}

static int users_override(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	struct users *u = ctx;
	struct ent_str cu, fe;
	if (ent_store_key_split(key, &cu, &fe) && ent_str_eq(fe, s_(u->feature)))
		return ent_store_strset_add(c, &u->override_keys, key);
	return 0;
}

/* Everything that references \a feature: scans of plans, add-ons, subscriptions, overrides. */
static int find_users(struct ent_actx *c, const char *feature, struct users *u)
{
	memset(u, 0, sizeof(*u));
	u->feature = feature;
	struct ent_str all = {"", 0};
	int r = ent_store_apply_scan(c, ENT_T_PLANS, all, users_plan, u);
	if (!r)
		r = ent_store_apply_scan(c, ENT_T_ADDONS, all, users_addon, u);
	if (!r)
		r = ent_store_apply_scan(c, ENT_T_SUBS, all, users_sub, u);
	if (!r)
		r = ent_store_apply_scan(c, ENT_T_OVERRIDES, all, users_override, u);
	return r;
}

static bool users_any(const struct users *u)
{
	return u->plans.n || u->addons.n || u->sub_keys.n || u->override_keys.n;
}

static int used_by(struct ent_actx *c, const char *what, const struct users *u)
{
	struct ent_str a, b;
	if (u->plans.n)
		return ent_err_set(c->err, ENT_EPRECOND, "%s is used by plan '%.*s'", what,
				   (int)u->plans.v[0].len, u->plans.v[0].p);
	if (u->addons.n)
		return ent_err_set(c->err, ENT_EPRECOND, "%s is used by add-on '%.*s'", what,
				   (int)u->addons.v[0].len, u->addons.v[0].p);
	if (u->sub_keys.n && ent_store_key_split(u->sub_keys.v[0], &a, &b))
		return ent_err_set(c->err, ENT_EPRECOND,
				   "%s is used by subscription '%.*s' of customer '%.*s'", what,
				   (int)b.len, b.p, (int)a.len, a.p);
	if (u->override_keys.n && ent_store_key_split(u->override_keys.v[0], &a, &b))
		return ent_err_set(c->err, ENT_EPRECOND,
				   "%s is used by an override of customer '%.*s'", what, (int)a.len,
				   a.p);
	return 0;
}

static const Ent__V1__Grant *grant_of_code(const Ent__V1__SetEntitlementsRequest *o,
					   const char *feature)
{
	for (size_t i = 0; o && i < o->n_entitlements; i++)
		if (strcmp(o->entitlements[i]->feature_code, feature) == 0)
			return o->entitlements[i];
	return NULL;
}

/*
 * A declaration change must not strand a stored value: a removed privilege, a changed type or
 * a select option taken away while a grant or override still carries it is refused, naming
 * the first such value. Otherwise checks would go on showing a value the feature no longer
 * allows, and an Export of that state would not Import (docs/semantics.md, "Every export
 * restores").
 */
static int stranded(struct ent_actx *c, const Ent__V1__Feature *f, const char *who,
		    Ent__V1__PrivilegeValue *const *pv, size_t n)
{
	Ent__V1__PrivilegeValue **norm;
	if (n == 0 || ent_store_apply_check_privs(c, "privileges", f, pv, n, &norm) == 0)
		return 0;
	if (c->err->code != ENT_EINVAL)
		return -c->err->code;
	char msg[sizeof(c->err->msg)];
	snprintf(msg, sizeof(msg), "%s", c->err->msg);
	return ent_err_set(c->err, ENT_EPRECOND,
			   "feature.privileges: cannot change; %s holds %s (change or remove that "
			   "value first)",
			   who, msg);
}

static int check_users_privs(struct ent_actx *c, const Ent__V1__Feature *f, const struct users *u)
{
	char who[600];
	int r = 0;
	for (int k = 0; k < 2 && !r; k++) {
		const struct ent_strset *set = k == 0 ? &u->plans : &u->addons;
		for (size_t i = 0; i < set->n && !r; i++) {
			Ent__V1__SetEntitlementsRequest *o;
			r = ent_store_apply_get_pb(c, k == 0 ? ENT_T_PLANS : ENT_T_ADDONS,
						   set->v[i],
						   &ent__v1__set_entitlements_request__descriptor,
						   c->arena, (void **)&o);
			if (r)
				return r;
			const Ent__V1__Grant *g = grant_of_code(o, f->code);
			snprintf(who, sizeof(who), "%s '%.*s'", k == 0 ? "plan" : "add-on",
				 (int)set->v[i].len, set->v[i].p);
			if (g)
				r = stranded(c, f, who, g->privileges, g->n_privileges);
		}
	}
	for (size_t i = 0; i < u->sub_keys.n && !r; i++) {
		Ent__V1__Subscription *sub;
		struct ent_str cu = {"", 0}, id = {"", 0};
		if ((r = ent_store_apply_get_pb(c, ENT_T_SUBS, u->sub_keys.v[i],
						&ent__v1__subscription__descriptor, c->arena,
						(void **)&sub)))
			return r;
		ent_store_key_split(u->sub_keys.v[i], &cu, &id);
		snprintf(who, sizeof(who), "subscription '%.*s' of customer '%.*s'", (int)id.len,
			 id.p, (int)cu.len, cu.p);
		for (size_t j = 0; j < sub->n_entitlements && !r; j++)
			if (strcmp(sub->entitlements[j]->feature_code, f->code) == 0)
				r = stranded(c, f, who, sub->entitlements[j]->privileges,
					     sub->entitlements[j]->n_privileges);
	}
	for (size_t i = 0; i < u->override_keys.n && !r; i++) {
		Ent__V1__CustomerOverride *o;
		struct ent_str cu = {"", 0}, fe;
		if ((r = ent_store_apply_get_pb(c, ENT_T_OVERRIDES, u->override_keys.v[i],
						&ent__v1__customer_override__descriptor, c->arena,
						(void **)&o)))
			return r;
		ent_store_key_split(u->override_keys.v[i], &cu, &fe);
		snprintf(who, sizeof(who), "the override of customer '%.*s'", (int)cu.len, cu.p);
		r = stranded(c, f, who, o->privileges, o->n_privileges);
	}
	return r;
}

/* Customers subscribed to plan/add-on \a code, through the DUPSORT index. */
static int index_customers(struct ent_actx *c, enum ent_table index, struct ent_str code,
			   struct ent_strset *out)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(c->txn, c->s->dbi[index], &cur);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k = {code.len, (void *)code.p}, v;
	int r = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0 && !r;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
		struct ent_str cu, id;
		if (ent_store_key_split(ent_store_val_str(v), &cu, &id))
			r = ent_store_strset_add(c, out, cu);
	}
	mdb_cursor_close(cur);
	if (r)
		return r;
	return rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}

static int users_customers(struct ent_actx *c, const struct users *u, struct ent_strset *out)
{
	int r = 0;
	for (size_t i = 0; i < u->plans.n && !r; i++)
		r = index_customers(c, ENT_T_PLAN_SUBS, u->plans.v[i], out);
	for (size_t i = 0; i < u->addons.n && !r; i++)
		r = index_customers(c, ENT_T_ADDON_SUBS, u->addons.v[i], out);
	const struct ent_strset *keys[] = {&u->sub_keys, &u->override_keys};
	for (int k = 0; k < 2 && !r; k++)
		for (size_t i = 0; i < keys[k]->n && !r; i++) {
			struct ent_str cu, rest;
			if (ent_store_key_split(keys[k]->v[i], &cu, &rest))
				r = ent_store_strset_add(c, out, cu);
		}
	ent_store_strset_uniq(out);
	return r;
}

/* Keys customer\0feature of table \a t whose feature is \a feature (a full scan: such
 * tables are keyed by customer first). */
struct pairs {
	const char *feature;
	struct ent_strset keys;
};

static int pair_of_feature(struct ent_actx *c, void *ctx, struct ent_str key, struct ent_str val)
{
	struct pairs *p = ctx;
	struct ent_str cu, fe;
	if (ent_store_key_split(key, &cu, &fe) && ent_str_eq(fe, s_(p->feature)))
		return ent_store_strset_add(c, &p->keys, key);
	return 0;
}

static int pairs_of_feature(struct ent_actx *c, enum ent_table t, const char *feature,
			    struct pairs *out)
{
	memset(out, 0, sizeof(*out));
	out->feature = feature;
	return ent_store_apply_scan(c, t, (struct ent_str){"", 0}, pair_of_feature, out);
}

/* ---- features ------------------------------------------------------------------------------ */

static int check_feature(struct ent_actx *c, const Ent__V1__Feature *f)
{
	int r = ent_str_check_id(s_(f->code), ENT_MAX_CODE, "feature.code", c->err);
	if (r || (r = ent_store_apply_check_time(c, f->created_at, "feature.created_at")) ||
	    (r = ent_store_apply_check_time(c, f->updated_at, "feature.updated_at")))
		return r;
	if (f->type < ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN ||
	    f->type > ENT__V1__FEATURE_TYPE__FEATURE_TYPE_STATIC)
		return ent_err_set(c->err, ENT_EINVAL,
				   f->type == 0
					   ? "feature.type: required (boolean, metered or static)"
					   : "feature.type: must be boolean, metered or static");
	if ((r = ent_store_apply_check_text(c, f->name, "feature.name")) ||
	    (r = ent_store_apply_check_text(c, f->description, "feature.description")) ||
	    (r = ent_store_apply_check_text(c, f->unit_singular, "feature.unit_singular")) ||
	    (r = ent_store_apply_check_text(c, f->unit_plural, "feature.unit_plural")))
		return r;
	if (f->n_metadata > ENT_MAX_METADATA)
		return ent_err_set(c->err, ENT_EINVAL, "feature.metadata: more than %d entries",
				   ENT_MAX_METADATA);
	for (size_t i = 0; i < f->n_metadata; i++) {
		const Ent__V1__Feature__MetadataEntry *m = f->metadata[i];
		if (!m->key || !*m->key)
			return ent_err_set(c->err, ENT_EINVAL, "feature.metadata: empty key");
		if ((r = ent_store_apply_check_text(c, m->key, "feature.metadata")) ||
		    (r = ent_store_apply_check_text(c, m->value, "feature.metadata")))
			return r;
	}
	if (f->n_privileges > ENT_MAX_PRIVS)
		return ent_err_set(c->err, ENT_EINVAL, "feature.privileges: more than %d",
				   ENT_MAX_PRIVS);
	for (size_t i = 0; i < f->n_privileges; i++) {
		const Ent__V1__PrivilegeDef *d = f->privileges[i];
		char fld[96];
		snprintf(fld, sizeof(fld), "feature.privileges[%zu].code", i);
		if ((r = ent_str_check_id(s_(d->code), ENT_MAX_CODE, fld, c->err)))
			return r;
		for (size_t j = 0; j < i; j++)
			if (strcmp(f->privileges[j]->code, d->code) == 0)
				return ent_err_set(c->err, ENT_EINVAL, "%s: '%s' declared twice",
						   fld, d->code);
		snprintf(fld, sizeof(fld), "feature.privileges[%zu].name", i);
		if ((r = ent_store_apply_check_text(c, d->name, fld)))
			return r;
		if (d->value_type < ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER ||
		    d->value_type > ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT)
			return ent_err_set(c->err, ENT_EINVAL,
					   "feature.privileges[%zu].value_type: must be integer, "
					   "boolean, string or select",
					   i);
		bool select = d->value_type == ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT;
		if (select && d->n_select_options == 0)
			return ent_err_set(c->err, ENT_EINVAL,
					   "feature.privileges[%zu].select_options: required for "
					   "select",
					   i);
		if (!select && d->n_select_options)
			return ent_err_set(
				c->err, ENT_EINVAL,
				"feature.privileges[%zu].select_options: only for select", i);
		if (d->n_select_options > ENT_MAX_SELECT)
			return ent_err_set(c->err, ENT_EINVAL,
					   "feature.privileges[%zu].select_options: more than %d",
					   i, ENT_MAX_SELECT);
		for (size_t j = 0; j < d->n_select_options; j++) {
			const char *o = d->select_options[j];
			snprintf(fld, sizeof(fld), "feature.privileges[%zu].select_options[%zu]", i,
				 j);
			if (!o || !*o)
				return ent_err_set(c->err, ENT_EINVAL, "%s: empty", fld);
			if ((r = ent_store_apply_check_text(c, o, fld)))
				return r;
			for (size_t k = 0; k < j; k++)
				if (strcmp(d->select_options[k], o) == 0)
					return ent_err_set(c->err, ENT_EINVAL,
							   "%s: '%s' listed twice", fld, o);
		}
	}
	return 0;
}

int ent_store_apply_upsert_feature(struct ent_actx *c, const Ent__V1__Feature *f)
{
	int r = check_feature(c, f);
	if (r)
		return r;
	struct ent_str code = s_(f->code);
	Ent__V1__Feature *old = NULL;
	r = ent_store_load_feature(c->s, c->txn, code, c->arena, &old);
	if (r && r != -ENT_ENOTFOUND)
		return r;
	struct users u = {0};
	if (old) {
		if ((r = find_users(c, f->code, &u)))
			return r;
		if (old->type != f->type && users_any(&u)) {
			char what[320];
			snprintf(what, sizeof(what), "feature.type: cannot change; feature '%s'",
				 f->code);
			return used_by(c, what, &u);
		}
		if ((r = check_users_privs(c, f, &u)))
			return r;
	}
	/* The RPC layer zeroes the stamps; non-zero ones come from an import and are kept. */
	Ent__V1__Feature st = *f;
	st.created_at = f->created_at ? f->created_at : old ? old->created_at : c->at;
	st.updated_at = f->updated_at ? f->updated_at : c->at;
	size_t n = protobuf_c_message_get_packed_size(&st.base);
	MDB_val k = {code.len, (void *)code.p}, v = {n + 1, NULL};
	int rc = mdb_put(c->txn, c->s->dbi[ENT_T_FEATURES], &k, &v, MDB_RESERVE);
	if (rc)
		return ent_store_mdb_err(rc);
	((uint8_t *)v.mv_data)[0] = (uint8_t)st.type;
	protobuf_c_message_pack(&st.base, (uint8_t *)v.mv_data + 1);

	/* Records kept only by a cleanup tombstone show the feature's type too. */
	struct pairs ended = {0};
	if (old && (r = pairs_of_feature(c, ENT_T_ENDED, f->code, &ended)))
		return r;
	if (old && (users_any(&u) || ended.keys.n)) {
		struct ent_strset customers = {0}, features = {0};
		if ((r = users_customers(c, &u, &customers)))
			return r;
		for (size_t i = 0; i < ended.keys.n && !r; i++) {
			struct ent_str cu, fe;
			if (ent_store_key_split(ended.keys.v[i], &cu, &fe))
				r = ent_store_strset_add(c, &customers, cu);
		}
		ent_store_strset_uniq(&customers);
		if (r || (r = ent_store_strset_add(c, &features, code)) ||
		    (r = ent_store_apply_recompute_all(c, &customers, &features, c->at)))
			return r;
	}
	return echo(c, ENT_T_FEATURES, code, &ent__v1__feature__descriptor, 1);
}

int ent_store_apply_delete_feature(struct ent_actx *c, const char *code)
{
	int r = ent_str_check_id(s_(code), ENT_MAX_CODE, "code", c->err);
	if (r)
		return r;
	MDB_val v;
	r = ent_store_apply_get(c, ENT_T_FEATURES, s_(code), &v);
	if (r == -ENT_ENOTFOUND)
		return 0;
	if (r)
		return r;
	struct users u;
	if ((r = find_users(c, code, &u)))
		return r;
	if (users_any(&u)) {
		char what[300];
		snprintf(what, sizeof(what), "code: feature '%s'", code);
		return used_by(c, what, &u);
	}
	if ((r = ent_store_apply_del(c, ENT_T_FEATURES, s_(code))))
		return r;
	/* Leftover usage counters of the feature go with it, so a feature created later under
	 * the same code starts from zero. */
	struct pairs left;
	if ((r = pairs_of_feature(c, ENT_T_USAGE, code, &left)))
		return r;
	for (size_t i = 0; i < left.keys.n && !r; i++)
		r = ent_store_apply_del(c, ENT_T_USAGE, left.keys.v[i]);
	if (r)
		return r;
	/* So do its cleanup tombstones (not users: nothing grants the feature any more), with
	 * the records they kept and the customer references they held. */
	if ((r = pairs_of_feature(c, ENT_T_ENDED, code, &left)))
		return r;
	for (size_t i = 0; i < left.keys.n && !r; i++) {
		struct ent_str cu, fe;
		if (!ent_store_key_split(left.keys.v[i], &cu, &fe))
			continue;
		if (!(r = ent_store_apply_del(c, ENT_T_ENDED, left.keys.v[i])) &&
		    !(r = ent_store_apply_customer_ref(c, cu, -1)))
			r = ent_store_apply_recompute(c, cu, fe, c->at);
	}
	if (r)
		return r;
	c->res->deleted = true;
	return 0;
}

/* ---- plans and add-ons ---------------------------------------------------------------------- */

static const Ent__V1__Grant *grant_of(const Ent__V1__SetEntitlementsRequest *o, const char *feature)
{
	for (size_t i = 0; o && i < o->n_entitlements; i++)
		if (strcmp(o->entitlements[i]->feature_code, feature) == 0)
			return o->entitlements[i];
	return NULL;
}

/*
 * Did the grant of \a feature change between \a a and \b? Compared as packed protobuf bytes:
 * both sides are normalized the same way before they are stored, and protobuf-c packs fields
 * in a fixed order, so equal grants pack equal. Present on one side only: changed.
 */
static int grant_changed(struct ent_actx *c, const Ent__V1__SetEntitlementsRequest *a,
			 const Ent__V1__SetEntitlementsRequest *b, const char *feature,
			 bool *changed)
{
	const Ent__V1__Grant *ga = grant_of(a, feature), *gb = grant_of(b, feature);
	*changed = true;
	if (!ga || !gb)
		return 0;
	size_t na = protobuf_c_message_get_packed_size(&ga->base);
	size_t nb = protobuf_c_message_get_packed_size(&gb->base);
	if (na != nb)
		return 0;
	ent_arena_reset(&c->ws->tmp);
	uint8_t *pa = ent_arena_alloc(&c->ws->tmp, na + 1),
		*pb = ent_arena_alloc(&c->ws->tmp, nb + 1);
	if (!pa || !pb)
		return -ENT_ENOMEM;
	protobuf_c_message_pack(&ga->base, pa);
	protobuf_c_message_pack(&gb->base, pb);
	*changed = memcmp(pa, pb, na) != 0;
	return 0;
}

/* Features whose grant differs between \a old and \a now (either may be NULL). */
static int changed_features(struct ent_actx *c, const Ent__V1__SetEntitlementsRequest *old,
			    const Ent__V1__SetEntitlementsRequest *now, struct ent_strset *set)
{
	const Ent__V1__SetEntitlementsRequest *sides[2] = {old, now};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; sides[k] && i < sides[k]->n_entitlements; i++) {
			const char *feature = sides[k]->entitlements[i]->feature_code;
			bool changed;
			/* A feature on both sides was decided in the first round. */
			if (k == 1 && grant_of(old, feature))
				continue;
			int r = grant_changed(c, old, now, feature, &changed);
			if (!r && changed)
				r = ent_store_strset_add(c, set, s_(feature));
			if (r)
				return r;
		}
	return 0;
}

/*
 * Recompute what a plan or add-on change can move: every customer on it, but only for the
 * features whose grant changed. A one-grant patch of a plan with many features costs one
 * recompute per customer, not one per feature and customer (the rest of each record is
 * unchanged, and an unchanged record stays exact in time on its own).
 */
static int fan_out(struct ent_actx *c, enum ent_table t, struct ent_str code,
		   const Ent__V1__SetEntitlementsRequest *old,
		   const Ent__V1__SetEntitlementsRequest *now)
{
	struct ent_strset customers = {0}, features = {0};
	int r = changed_features(c, old, now, &features);
	if (r || features.n == 0)
		return r;
	r = index_customers(c, t == ENT_T_PLANS ? ENT_T_PLAN_SUBS : ENT_T_ADDON_SUBS, code,
			    &customers);
	if (r || customers.n == 0)
		return r;
	ent_store_strset_uniq(&customers);
	ent_store_strset_uniq(&features);
	return ent_store_apply_recompute_all(c, &customers, &features, c->at);
}

int ent_store_apply_set_entitlements(struct ent_actx *c, enum ent_table t,
				     const Ent__V1__SetEntitlementsRequest *req, bool patch)
{
	int r = ent_str_check_id(s_(req->code), ENT_MAX_CODE, "code", c->err);
	if (r || (r = ent_store_apply_check_text(c, req->name, "name")))
		return r;
	Ent__V1__Grant **norm;
	if ((r = ent_store_apply_check_grants(c, "entitlements", req->entitlements,
					      req->n_entitlements, &norm)))
		return r;
	struct ent_str code = s_(req->code);
	Ent__V1__SetEntitlementsRequest *old = NULL;
	r = ent_store_apply_get_pb(c, t, code, &ent__v1__set_entitlements_request__descriptor,
				   c->arena, (void **)&old);
	if (r && r != -ENT_ENOTFOUND)
		return r;

	Ent__V1__SetEntitlementsRequest st = ENT__V1__SET_ENTITLEMENTS_REQUEST__INIT;
	st.code = req->code;
	st.name = req->name;
	st.n_entitlements = req->n_entitlements;
	st.entitlements = norm;
	if (patch && old) {
		/* Merge by feature code: a patched grant replaces that feature's grant whole,
		 * in place; grants of new features are appended in request order. */
		size_t cap = old->n_entitlements + req->n_entitlements;
		Ent__V1__Grant **m = ent_arena_alloc(c->arena, (cap ? cap : 1) * sizeof(*m));
		if (!m)
			return -ENT_ENOMEM;
		size_t n = 0;
		for (size_t i = 0; i < old->n_entitlements; i++) {
			Ent__V1__Grant *g = old->entitlements[i];
			for (size_t j = 0; j < req->n_entitlements; j++)
				if (strcmp(norm[j]->feature_code, g->feature_code) == 0)
					g = norm[j];
			m[n++] = g;
		}
		for (size_t j = 0; j < req->n_entitlements; j++)
			if (!grants_feature(old->entitlements, old->n_entitlements,
					    norm[j]->feature_code))
				m[n++] = norm[j];
		if (n > ENT_MAX_GRANTS)
			return ent_err_set(c->err, ENT_EINVAL,
					   "entitlements: more than %d grants after the merge",
					   ENT_MAX_GRANTS);
		st.n_entitlements = n;
		st.entitlements = m;
		if (!req->name || !*req->name)
			st.name = old->name;
	}
	if ((r = ent_store_apply_put_pb(c, t, code, &st.base)) ||
	    (r = fan_out(c, t, code, old, &st)))
		return r;
	return echo(c, t, code, &ent__v1__set_entitlements_request__descriptor, 0);
}

int ent_store_apply_delete_entitlements(struct ent_actx *c, enum ent_table t, const char *code)
{
	int r = ent_str_check_id(s_(code), ENT_MAX_CODE, "code", c->err);
	if (r)
		return r;
	Ent__V1__SetEntitlementsRequest *old = NULL;
	r = ent_store_apply_get_pb(c, t, s_(code), &ent__v1__set_entitlements_request__descriptor,
				   c->arena, (void **)&old);
	if (r == -ENT_ENOTFOUND)
		return 0;
	if (r)
		return r;
	/* A plan or add-on a subscription still names stays: deleting it would leave that
	   subscription pointing at nothing, and an export that no import accepts. */
	struct ent_strset users = {0};
	r = index_customers(c, t == ENT_T_PLANS ? ENT_T_PLAN_SUBS : ENT_T_ADDON_SUBS, s_(code),
			    &users);
	if (r)
		return r;
	if (users.n > 0)
		return ent_err_set(c->err, ENT_EPRECOND,
				   "code: %s '%s' is used by a subscription of customer '%.*s'",
				   t == ENT_T_PLANS ? "plan" : "add-on", code, (int)users.v[0].len,
				   users.v[0].p);
	if ((r = ent_store_apply_del(c, t, s_(code))) || (r = fan_out(c, t, s_(code), old, NULL)))
		return r;
	c->res->deleted = true;
	return 0;
}
