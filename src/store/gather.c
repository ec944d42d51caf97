/*
 * Gathering the sources of one (customer, feature) from the base tables: the feature's
 * declaration, every subscription of the customer with its plan's, add-ons' and own grants of
 * the feature, the customer's override, and the cleanup tombstone (`ended`). The result is plain
 * model structs; everything it points at lives in the caller's arena (protobufs are unpacked with
 * the arena allocator), so it stays valid after the transaction moves on.
 */
#include <math.h>

#include "ent/pbarena.h"
#include "store/impl.h"

int ent_store_load_feature(struct ent_store *s, MDB_txn *txn, struct ent_str code,
			   struct ent_arena *a, Ent__V1__Feature **out)
{
	if (code.len == 0 || code.len >= ENT_KEY_MAX)
		return -ENT_ENOTFOUND;
	MDB_val k = {code.len, (void *)code.p}, v;
	int rc = mdb_get(txn, s->dbi[ENT_T_FEATURES], &k, &v);
	if (rc)
		return ent_store_mdb_err(rc);
	if (v.mv_size < 1)
		return -ENT_ECORRUPT;
	ProtobufCAllocator al;
	ent_pb_allocator(&al, a);
	*out = ent__v1__feature__unpack(&al, v.mv_size - 1, (const uint8_t *)v.mv_data + 1);
	return *out ? 0 : -ENT_ECORRUPT;
}

struct gather {
	struct ent_store *s;
	MDB_txn *txn;
	struct ent_arena *a;
	ProtobufCAllocator al;
	struct ent_sources *out;
	const Ent__V1__Feature *f;
};

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* Privilege values of a grant or override, kept only where the feature still declares them
 * with the same type (a declaration may have changed since the grant was validated). */
static int copy_privs(struct gather *g, Ent__V1__PrivilegeValue *const *pv, size_t n,
		      struct ent_source *src)
{
	src->n_privs = 0;
	src->privs = NULL;
	if (n == 0)
		return 0;
	struct ent_priv *out = ent_arena_alloc(g->a, n * sizeof(*out));
	if (!out)
		return -ENT_ENOMEM;
	uint32_t m = 0;
	for (size_t i = 0; i < n && m < ENT_MAX_PRIVS; i++) {
		const struct ent_feature_def *fd = &g->out->feature;
		struct ent_str code = ent_str_c(pv[i]->code);
		uint8_t type = 0;
		for (uint32_t j = 0; j < fd->n_privs; j++)
			if (ent_str_eq(fd->privs[j].code, code))
				type = fd->privs[j].type;
		struct ent_priv *p = &out[m];
		memset(p, 0, sizeof(*p));
		p->code = code;
		p->type = type;
		switch (pv[i]->value_case) {
		case ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE:
			if (type != ENT_PT_INTEGER)
				continue;
			p->i = pv[i]->int_value;
			break;
		case ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE:
			if (type != ENT_PT_BOOLEAN)
				continue;
			p->b = pv[i]->bool_value;
			break;
		case ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE:
			if (type != ENT_PT_STRING && type != ENT_PT_SELECT)
				continue;
			p->s = ent_str_c(pv[i]->string_value);
			break;
		default:
			continue;
		}
		m++;
	}
	src->n_privs = m;
	src->privs = out;
	return 0;
}

static int copy_statics(struct gather *g, char *const *sv, size_t n, struct ent_source *src)
{
	src->n_static = 0;
	src->statics = NULL;
	if (n == 0)
		return 0;
	if (n > ENT_MAX_STATIC)
		n = ENT_MAX_STATIC;
	struct ent_str *out = ent_arena_alloc(g->a, n * sizeof(*out));
	if (!out)
		return -ENT_ENOMEM;
	for (size_t i = 0; i < n; i++)
		out[i] = ent_str_c(sv[i]);
	src->n_static = (uint32_t)n;
	src->statics = out;
	return 0;
}

static struct ent_source *next_source(struct gather *g)
{
	if (g->out->n >= ENT_MAX_SOURCES)
		return NULL;
	struct ent_source *src = &g->out->src[g->out->n++];
	memset(src, 0, sizeof(*src));
	return src;
}

static const Ent__V1__Grant *find_grant(Ent__V1__Grant *const *grants, size_t n,
					const char *feature)
{
	for (size_t i = 0; i < n; i++)
		if (grants[i]->feature_code && strcmp(grants[i]->feature_code, feature) == 0)
			return grants[i];
	return NULL;
}

static int add_grant(struct gather *g, const Ent__V1__Grant *gr, uint8_t type, const char *id,
		     const char *name, const Ent__V1__Subscription *sub, int64_t quantity)
{
	struct ent_source *src = next_source(g);
	if (!src)
		return -ENT_EINVAL;
	src->type = type;
	src->id = ent_str_c(id);
	src->name = ent_str_c(name);
	src->subscription_id = ent_str_c(sub->id);
	src->quantity = quantity > 0 ? quantity : 1;
	src->active_from = sub->active_from;
	src->expires_at = sub->ends_at;
	src->enabled = gr->enabled ? gr->enabled->value : true;
	src->usage_limit = gr->usage_limit;
	src->unlimited = gr->unlimited;
	src->soft = gr->is_soft_limit;
	/* UNSPECIFIED stays: the grant names no period, and the model takes the period from the
	 * sources that do (docs/semantics.md rule 9). */
	src->reset = (uint8_t)gr->usage_reset_period;
	/* Periods count from the anchor, else the start, else the instant the subscription was
	 * created (stamped once, from the event, so every replica agrees). */
	src->billing_anchor = sub->billing_anchor ? sub->billing_anchor
			      : sub->active_from  ? sub->active_from
						  : sub->created_at;
	int r = copy_statics(g, gr->static_values, gr->n_static_values, src);
	return r ? r : copy_privs(g, gr->privileges, gr->n_privileges, src);
}

/* The grants object (plan or add-on) \a code in table \a t, or NULL if it is gone. */
static int load_grants(struct gather *g, enum ent_table t, const char *code,
		       Ent__V1__SetEntitlementsRequest **out)
{
	*out = NULL;
	size_t n = strlen(code);
	if (n == 0 || n >= ENT_KEY_MAX)
		return 0;
	MDB_val k = {n, (void *)code}, v;
	int rc = mdb_get(g->txn, g->s->dbi[t], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0; /* deleted plans and add-ons grant nothing */
	if (rc)
		return ent_store_mdb_err(rc);
	*out = ent__v1__set_entitlements_request__unpack(&g->al, v.mv_size, v.mv_data);
	return *out ? 0 : -ENT_ECORRUPT;
}

static int gather_sub(struct gather *g, const Ent__V1__Subscription *sub)
{
	const char *feature = g->f->code;
	Ent__V1__SetEntitlementsRequest *obj;
	int r = load_grants(g, ENT_T_PLANS, nz(sub->plan_code), &obj);
	if (r)
		return r;
	const Ent__V1__Grant *gr;
	if (obj && (gr = find_grant(obj->entitlements, obj->n_entitlements, feature))) {
		r = add_grant(g, gr, ENT_SRC_PLAN, obj->code, obj->name, sub, sub->quantity);
		if (r)
			return r;
	}
	for (size_t i = 0; i < sub->n_addons; i++) {
		const Ent__V1__SubscriptionAddon *ad = sub->addons[i];
		r = load_grants(g, ENT_T_ADDONS, nz(ad->addon_code), &obj);
		if (r)
			return r;
		if (obj && (gr = find_grant(obj->entitlements, obj->n_entitlements, feature))) {
			r = add_grant(g, gr, ENT_SRC_ADDON, obj->code, obj->name, sub,
				      ad->quantity);
			if (r)
				return r;
		}
	}
	/* Subscription-level grants count once: the subscription's quantity multiplies the
	 * plan, not grants made to this subscription specifically. */
	gr = find_grant(sub->entitlements, sub->n_entitlements, feature);
	if (gr)
		return add_grant(g, gr, ENT_SRC_SUBSCRIPTION, sub->id, "", sub, 1);
	return 0;
}

static int gather_subs(struct gather *g, struct ent_str customer)
{
	struct ent_key prefix;
	struct ent_str empty = {"", 0};
	if (ent_store_key_make(&prefix, customer, &empty))
		return 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(g->txn, g->s->dbi[ENT_T_SUBS], &cur);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k = ent_store_key_val(&prefix), v;
	int r = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < prefix.len || memcmp(k.mv_data, prefix.b, prefix.len) != 0)
			break;
		Ent__V1__Subscription *sub =
			ent__v1__subscription__unpack(&g->al, v.mv_size, v.mv_data);
		if (!sub) {
			r = -ENT_ECORRUPT;
			break;
		}
		if ((r = gather_sub(g, sub)))
			break;
	}
	mdb_cursor_close(cur);
	if (r)
		return r;
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : ent_store_mdb_err(rc);
}

/*
 * The override as a source: `sets` says which parts of the aggregate it replaces, derived
 * from what the stored override carries (docs/storage.md, "Overrides").
 */
static int gather_override(struct gather *g, struct ent_str customer)
{
	struct ent_key key;
	struct ent_str feature = ent_str_c(g->f->code);
	if (ent_store_key_make(&key, customer, &feature))
		return 0;
	MDB_val k = ent_store_key_val(&key), v;
	int rc = mdb_get(g->txn, g->s->dbi[ENT_T_OVERRIDES], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return ent_store_mdb_err(rc);
	Ent__V1__CustomerOverride *o =
		ent__v1__customer_override__unpack(&g->al, v.mv_size, v.mv_data);
	if (!o)
		return -ENT_ECORRUPT;
	/* The override keeps the usage shape of the base: take reset and anchor from the
	 * highest-precedence enabled metered source gathered so far (ties: first). */
	const struct ent_source *base = NULL;
	for (uint32_t i = 0; i < g->out->n; i++) {
		const struct ent_source *b = &g->out->src[i];
		if (b->enabled && (!base || b->type > base->type))
			base = b;
	}
	struct ent_source *src = next_source(g);
	if (!src)
		return -ENT_EINVAL;
	src->type = ENT_SRC_OVERRIDE;
	src->id = feature;
	src->name = (struct ent_str){"", 0};
	src->subscription_id = (struct ent_str){"", 0};
	src->quantity = 1;
	src->active_from = o->active_from;
	src->expires_at = o->expires_at;
	src->enabled = true;
	src->reset = base ? base->reset : ENT_RESET_NEVER;
	src->billing_anchor = base ? base->billing_anchor : 0;
	src->reason = ent_str_c(o->reason);
	uint8_t type = g->out->feature.type;
	if (o->value && o->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE) {
		src->sets |= ENT_SETS_ENABLED;
		src->enabled = o->value->bool_value;
	} else if (o->value && o->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE) {
		double d = o->value->number_value;
		if (type == ENT_FT_METERED) {
			src->sets |= ENT_SETS_LIMIT;
			src->usage_limit = !isfinite(d) || d <= 0	? 0
					   : d >= 9223372036854775808.0 ? INT64_MAX
									: (int64_t)d;
		} else {
			src->sets |= ENT_SETS_ENABLED;
			src->enabled = d != 0;
		}
	}
	/* A Zenskar quantity is the later, more specific grant: it wins over a number value. */
	if (o->quantity) {
		src->sets |= ENT_SETS_LIMIT;
		src->usage_limit = o->quantity->value > 0 ? o->quantity->value : 0;
	}
	if (o->unlimited)
		src->sets |= ENT_SETS_UNLIMITED;
	src->unlimited = o->unlimited;
	if (o->n_static_values)
		src->sets |= ENT_SETS_STATIC;
	if (o->n_privileges)
		src->sets |= ENT_SETS_PRIVS;
	int r = copy_statics(g, o->static_values, o->n_static_values, src);
	return r ? r : copy_privs(g, o->privileges, o->n_privileges, src);
}

/* The cleanup tombstone of (customer, feature): the latest end of a granting source the
 * tick already removed (0: none). */
static int gather_ended(struct gather *g, struct ent_str customer)
{
	g->out->ended_at = 0;
	g->out->keep = false;
	struct ent_key key;
	struct ent_str feature = ent_str_c(g->f->code);
	if (!ent_store_has(g->s, ENT_T_ENDED) || ent_store_key_make(&key, customer, &feature))
		return 0;
	MDB_val k = ent_store_key_val(&key), v;
	int rc = mdb_get(g->txn, g->s->dbi[ENT_T_ENDED], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return ent_store_mdb_err(rc);
	if (v.mv_size == 9) {
		/* Ended sources that granted nothing: the record stays, nothing is explained. */
		g->out->keep = true;
		return 0;
	}
	if (v.mv_size != 8)
		return -ENT_ECORRUPT;
	g->out->ended_at = (int64_t)ent_store_le64_get(v.mv_data);
	return 0;
}

int ent_store_gather(struct ent_store *s, MDB_txn *txn, struct ent_str customer,
		     struct ent_str feature, struct ent_arena *a, struct ent_sources *out)
{
	struct gather g = {s, txn, a, {0}, out, NULL};
	ent_pb_allocator(&g.al, a);
	out->n = 0;
	out->ended_at = 0;
	out->keep = false;
	Ent__V1__Feature *f;
	int r = ent_store_load_feature(s, txn, feature, a, &f);
	if (r)
		return r;
	g.f = f;
	struct ent_feature_def *fd = &out->feature;
	fd->code = ent_str_c(f->code);
	fd->type = (uint8_t)f->type;
	fd->n_privs = 0;
	for (size_t i = 0; i < f->n_privileges && fd->n_privs < ENT_MAX_PRIVS; i++) {
		fd->privs[fd->n_privs].code = ent_str_c(f->privileges[i]->code);
		fd->privs[fd->n_privs].type = (uint8_t)f->privileges[i]->value_type;
		fd->n_privs++;
	}
	if ((r = gather_subs(&g, customer)) || (r = gather_override(&g, customer)))
		return r;
	return gather_ended(&g, customer);
}
