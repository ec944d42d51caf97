/*
 * Admin reads, answered on the call's own thread from that thread's read view.
 *
 * A view holds one LMDB snapshot between ent_store_view_begin and ent_store_view_end; values it
 * returns are borrowed from the map until the end. Every stored object is unpacked into the call's
 * arena (protobuf-c copies strings and arrays out of the input), so the view is ended before the
 * reply is packed and no snapshot is held while gRPC sends. Each handler ends the view on every
 * path exactly once: a view left open would pin pages and grow the file.
 */
#include <stdio.h>
#include <string.h>

#include "ent/sync.h"
#include "rpc/admin.h"

#define LIST_DEFAULT_PAGE 100
#define LIST_MAX_PAGE	  1000

/* Begin the worker's view, or answer the call and return NULL. */
static struct ent_view *view_begin(struct ent_call *call)
{
	struct ent_view *v = ent_rpc_call_worker(call)->view;
	int rc = ent_store_view_begin(v);

	if (rc < 0) {
		ent_rpc_call_fail(call, rc, "admin: cannot open a read snapshot");
		return NULL;
	}
	return v;
}

static void fail_not_found(struct ent_call *call, const char *field, const char *what,
			   const char *id)
{
	char msg[sizeof(((struct ent_err *)0)->msg)];

	/* Identifiers were validated as printable ASCII, so echoing them is safe. */
	snprintf(msg, sizeof(msg), "%s: unknown %s '%s'", field, what, id);
	ent_rpc_call_fail(call, ENT_ENOTFOUND, msg);
}

/* Stored features are [u8 feature type][ent.v1.Feature]: the byte spares checks an unpack. */
static Ent__V1__Feature *unpack_feature(struct ent_call *call, struct ent_str val)
{
	if (val.len < 1) {
		ent_rpc_call_fail(call, ENT_ECORRUPT, "stored feature is empty");
		return NULL;
	}
	return (Ent__V1__Feature *)ent_rpc_admin_unpack(call, &ent__v1__feature__descriptor,
							val.p + 1, val.len - 1, "feature");
}

/* ---- features ------------------------------------------------------------------------------ */

void ent_rpc_admin_get_feature(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__GetFeatureRequest *r = (const Ent__V1__GetFeatureRequest *)req;
	Ent__V1__FeatureResponse resp = ENT__V1__FEATURE_RESPONSE__INIT;
	struct ent_view *v;
	struct ent_str val;
	int rc;

	if (!ent_rpc_admin_check_id(call, r->code, ENT_MAX_CODE, "code"))
		return;
	if (!(v = view_begin(call)))
		return;
	rc = ent_store_view_get(v, ENT_T_FEATURES, ent_rpc_admin_str(r->code), &val);
	if (rc == -ENT_ENOTFOUND) {
		ent_store_view_end(v);
		fail_not_found(call, "code", "feature", r->code);
		return;
	}
	if (rc < 0) {
		ent_store_view_end(v);
		ent_rpc_call_fail(call, rc, "features: read failed");
		return;
	}
	resp.feature = unpack_feature(call, val);
	resp.sequence = ent_store_view_seq(v);
	ent_store_view_end(v);
	if (resp.feature)
		ent_rpc_call_reply(call, &resp.base);
}

struct feature_page {
	struct ent_call *call;
	Ent__V1__Feature **items;
	size_t n, cap;
	bool answered; /**< a callback failed the call already */
};

static int page_add(void *ctx, struct ent_str key, struct ent_str val)
{
	struct feature_page *p = ctx;
	Ent__V1__Feature *f;

	if (p->n == p->cap)
		return 1;
	if (!(f = unpack_feature(p->call, val))) {
		p->answered = true;
		return -ENT_ECORRUPT;
	}
	p->items[p->n++] = f;
	return 0;
}

void ent_rpc_admin_list_features(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__ListFeaturesRequest *r = (const Ent__V1__ListFeaturesRequest *)req;
	Ent__V1__ListFeaturesResponse resp = ENT__V1__LIST_FEATURES_RESPONSE__INIT;
	struct ent_str after = ent_rpc_admin_str(r->page_token);
	struct feature_page page = {.call = call};
	size_t size = r->page_size ? r->page_size : LIST_DEFAULT_PAGE;
	struct ent_view *v;
	int rc;

	if (r->page_size > LIST_MAX_PAGE) {
		ent_rpc_call_fail(call, ENT_EINVAL, "page_size: at most 1000");
		return;
	}
	/* The token is the last code of the previous page: a valid code or nothing. */
	if (after.len && !ent_rpc_admin_check_id(call, r->page_token, ENT_MAX_CODE, "page_token"))
		return;
	/* One more than the page tells whether another page follows, so the last page says so. */
	page.cap = size + 1;
	page.items = ent_arena_alloc(ent_rpc_call_arena(call), page.cap * sizeof(*page.items));
	if (!page.items) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return;
	}
	if (!(v = view_begin(call)))
		return;
	rc = ent_store_view_scan(v, ENT_T_FEATURES, (struct ent_str){"", 0}, after, page.cap,
				 page_add, &page);
	ent_store_view_end(v);
	if (page.answered)
		return;
	if (rc < 0) {
		ent_rpc_call_fail(call, rc, "features: scan failed");
		return;
	}
	if (page.n > size) {
		page.n = size;
		resp.next_page_token = page.items[size - 1]->code;
	}
	resp.n_features = page.n;
	resp.features = page.items;
	ent_rpc_call_reply(call, &resp.base);
}

/* ---- plans and add-ons --------------------------------------------------------------------- */

static void get_entitlements(struct ent_call *call, const ProtobufCMessage *req,
			     enum ent_table table, const char *what)
{
	const Ent__V1__GetEntitlementsRequest *r = (const Ent__V1__GetEntitlementsRequest *)req;
	Ent__V1__EntitlementsResponse resp = ENT__V1__ENTITLEMENTS_RESPONSE__INIT;
	const Ent__V1__SetEntitlementsRequest *s;
	struct ent_view *v;
	struct ent_str val;
	int rc;

	if (!ent_rpc_admin_check_id(call, r->code, ENT_MAX_CODE, "code"))
		return;
	if (!(v = view_begin(call)))
		return;
	rc = ent_store_view_get(v, table, ent_rpc_admin_str(r->code), &val);
	if (rc == -ENT_ENOTFOUND) {
		ent_store_view_end(v);
		fail_not_found(call, "code", what, r->code);
		return;
	}
	if (rc < 0) {
		ent_store_view_end(v);
		ent_rpc_call_fail(call, rc, "entitlements: read failed");
		return;
	}
	s = (const Ent__V1__SetEntitlementsRequest *)ent_rpc_admin_unpack(
		call, &ent__v1__set_entitlements_request__descriptor, val.p, val.len, what);
	resp.sequence = ent_store_view_seq(v);
	ent_store_view_end(v);
	if (!s)
		return;
	resp.code = s->code;
	resp.name = s->name;
	resp.n_entitlements = s->n_entitlements;
	resp.entitlements = s->entitlements;
	ent_rpc_call_reply(call, &resp.base);
}

void ent_rpc_admin_get_plan(struct ent_call *call, const ProtobufCMessage *req)
{
	get_entitlements(call, req, ENT_T_PLANS, "plan");
}

void ent_rpc_admin_get_addon(struct ent_call *call, const ProtobufCMessage *req)
{
	get_entitlements(call, req, ENT_T_ADDONS, "add-on");
}

/* ---- customer overrides -------------------------------------------------------------------- */

struct override_list {
	struct ent_call *call;
	Ent__V1__CustomerOverride **items;
	size_t n, cap;
	bool answered; /**< a callback failed the call already */
};

static int override_add(void *ctx, struct ent_str key, struct ent_str val)
{
	struct override_list *l = ctx;
	Ent__V1__CustomerOverride *o;

	/* A customer has at most one override per feature: grow by doubling in the arena. */
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		void *items = ent_arena_alloc(ent_rpc_call_arena(l->call), cap * sizeof(*l->items));
		if (!items) {
			ent_rpc_call_fail(l->call, ENT_ENOMEM, "admin: out of memory");
			l->answered = true;
			return -ENT_ENOMEM;
		}
		if (l->n)
			memcpy(items, l->items, l->n * sizeof(*l->items));
		l->items = items;
		l->cap = cap;
	}
	o = (Ent__V1__CustomerOverride *)ent_rpc_admin_unpack(
		l->call, &ent__v1__customer_override__descriptor, val.p, val.len, "override");
	if (!o) {
		l->answered = true;
		return -ENT_ECORRUPT;
	}
	l->items[l->n++] = o;
	return 0;
}

/*
 * Units used in the current period (Zenskar quantity_used), read the way a check reads them: the
 * aggregate's usage state counts the period starting at period_start; if the period containing
 * now starts later, the usage has rolled over to zero even if no tick has rewritten the row yet.
 */
static int64_t used_now(struct ent_view *v, struct ent_str customer, struct ent_str feature,
			int64_t now)
{
	struct ent_check c = {customer, feature, 1, now};
	struct ent_check_result r;

	memset(&r, 0, sizeof(r));
	if (ent_store_view_check(v, &c, &r) < 0 || !r.d.agg)
		return 0;
	/* The decision already reads the counter in now's period, under now's segment's shape. */
	return r.usage.feature_type == ENT_FT_METERED && r.d.metered ? r.d.used : 0;
}

void ent_rpc_admin_list_overrides(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__ListCustomerEntitlementsRequest *r =
		(const Ent__V1__ListCustomerEntitlementsRequest *)req;
	Ent__V1__ListCustomerEntitlementsResponse resp =
		ENT__V1__LIST_CUSTOMER_ENTITLEMENTS_RESPONSE__INIT;
	struct override_list list = {.call = call};
	struct ent_str customer = ent_rpc_admin_str(r->customer_id), prefix, val;
	int64_t now = ent_time_now_ms();
	struct ent_view *v;
	char *key;
	int rc;

	if (!ent_rpc_admin_check_id(call, r->customer_id, ENT_MAX_CUSTOMER_ID, "customer_id"))
		return;
	/* Override keys are customer NUL feature: the prefix includes the NUL. */
	key = ent_arena_alloc(ent_rpc_call_arena(call), customer.len + 1);
	if (!key) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return;
	}
	memcpy(key, customer.p, customer.len);
	key[customer.len] = '\0';
	prefix = (struct ent_str){key, customer.len + 1};

	if (!(v = view_begin(call)))
		return;
	rc = ent_store_view_get(v, ENT_T_CUSTOMERS, customer, &val);
	if (rc == -ENT_ENOTFOUND) {
		ent_store_view_end(v);
		fail_not_found(call, "customer_id", "customer", r->customer_id);
		return;
	}
	if (rc == 0)
		rc = ent_store_view_scan(v, ENT_T_OVERRIDES, prefix, (struct ent_str){"", 0}, 0,
					 override_add, &list);
	if (list.answered) {
		ent_store_view_end(v);
		return;
	}
	if (rc < 0) {
		ent_store_view_end(v);
		ent_rpc_call_fail(call, rc, "overrides: scan failed");
		return;
	}
	/* After the scan, not inside it: lookups while a cursor walks are legal but needless. */
	for (size_t i = 0; i < list.n; i++)
		list.items[i]->quantity_used =
			used_now(v, customer, ent_rpc_admin_str(list.items[i]->feature_code), now);
	ent_store_view_end(v);
	resp.n_entitlements = list.n;
	resp.entitlements = list.items;
	ent_rpc_call_reply(call, &resp.base);
}

/* ---- status -------------------------------------------------------------------------------- */

void ent_rpc_admin_get_status(struct ent_call *call, const ProtobufCMessage *req)
{
	const struct ent_rpc_opts *opts = ent_rpc_call_opts(call);
	Ent__V1__StatusResponse resp = ENT__V1__STATUS_RESPONSE__INIT;
	struct ent_store_stats st;
	int rc;

	memset(&st, 0, sizeof(st));
	rc = ent_store_stats(opts->store, &st);
	if (rc < 0) {
		ent_rpc_call_fail(call, rc, "status: cannot read store statistics");
		return;
	}
	resp.sequence = st.seq;
	resp.last_commit_at = st.last_commit_at;
	resp.next_boundary_at = ent_model_wire_time(st.next_boundary_at); /* never a sentinel */
	if (opts->writer) {
		/*
		 * The writer's last commit may be newer than the snapshot the counts were read
		 * from (a commit in between): report the newer sequence. Boundaries come from the
		 * store's snapshot, the same one pending_boundaries counts.
		 */
		uint64_t wseq = ent_writer_seq(opts->writer);
		if (wseq > resp.sequence)
			resp.sequence = wseq;
	}
	resp.features = st.features;
	resp.plans = st.plans;
	resp.addons = st.addons;
	resp.subscriptions = st.subscriptions;
	resp.overrides = st.overrides;
	resp.customers = st.customers;
	resp.aggregates = st.aggregates;
	resp.db_size_bytes = st.db_size_bytes;
	resp.map_size_bytes = st.map_size_bytes;
	resp.pending_boundaries = st.boundaries;
	resp.version = (char *)ENT_VERSION;
	struct ent_fleet_stats fs;
	if (opts->fleet) {
		ent_sync_fleet_get_stats(opts->fleet, &fs);
		resp.fleet = true;
		resp.stream = fs.identity;
		if (fs.applied_seq > resp.sequence)
			resp.sequence = fs.applied_seq;
		resp.stream_head = fs.head_seq > resp.sequence ? fs.head_seq : resp.sequence;
		resp.lag_events = resp.stream_head - resp.sequence;
		resp.last_heard_ms = fs.last_heard_ms;
		resp.engine_connected = fs.connected;
		resp.caught_up = fs.caught_up;
		resp.fleet_state = (char *)ent_sync_fleet_state_name(&fs);
		resp.skipped_events = fs.skipped;
		resp.published_events = fs.published;
	}
	ent_rpc_call_reply(call, &resp.base);
}
