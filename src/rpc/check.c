/*
 * The check service: CheckEntitlement, BatchCheckEntitlements, the check stream,
 * GetCustomerEntitlements, and the two writes that go through the writer (ReportUsage,
 * ConsumeEntitlement).
 *
 * The check path (unary, batch, stream) is: decode the request bytes in place (rpc/wire.c:
 * strings point into the received buffer, nothing is copied or allocated) -> validate ->
 * ent_store_view_begin -> ent_store_view_check (a batch: ent_store_view_check_batch, one snapshot
 * for all) -> write the response straight from the decision into one gRPC slice ->
 * ent_store_view_end. The answers borrow the mapped database only until they are written, which
 * happens before the view ends. No lock is taken: the view belongs to the worker thread.
 * docs/performance.md has what each of these steps bought. Under load, the unary checks and stream
 * messages that arrive together are decided ahead as one batched walk; a lone one is the same
 * routine with one check (ent_rpc_check_decide, below), and check_one sends the answer it finds in
 * the call.
 *
 * GetCustomerEntitlements builds its (larger, rarer) answer with protobuf-c in the call's arena:
 * protobuf-c wants NUL-terminated strings, so the strings it carries are copied there (the
 * arena keeps its blocks: no malloc once warm).
 *
 * Writes wrap the request in an ent.v1.Event in the call's arena and hand it to the writer;
 * the writer's callback (on the writer thread) builds the answer in the same arena and
 * finishes the call. Read-your-writes on one node: the writer answers after its commit, so a
 * check sent after that answer, with min_sequence = the answer's sequence, sees it.
 */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "ent/v1/entitlement.pb-c.h"
#include "ent/v1/event.pb-c.h"
#include "rpc/core.h"
#include "rpc/usage_batch.h"
#include "rpc/wire.h"

#define MAX_BATCH 10000
/* Re-begin a too-old snapshot this many times before answering UNAVAILABLE. */
#define MIN_SEQ_RETRIES 3
/* A batch this large needs enough arena for its checks to drop the blocks afterwards. */
#define BIG_BATCH 256
/* First guess of a batch answer's size per check (a metered answer is about 80 bytes); the
   buffer grows by doubling when answers carry many values or privileges. */
#define BATCH_ITEM_GUESS 128
/* Room for a batch answer's sequence field. */
#define BATCH_SEQ_ROOM 11

/* ---- building responses in the arena ------------------------------------------------- */

/* Arena allocation that remembers a failure, so builders check once at the end. */
struct bld {
	struct ent_arena *a;
	bool oom;
};

static void *bld_alloc(struct bld *b, size_t n)
{
	void *p = n ? ent_arena_alloc(b->a, n) : NULL;
	if (n && !p)
		b->oom = true;
	return p;
}

static char *bld_str(struct bld *b, struct ent_str s)
{
	if (!s.len)
		return (char *)protobuf_c_empty_string;
	char *p = ent_arena_strndup(b->a, s.p, s.len);
	if (!p) {
		b->oom = true;
		return (char *)protobuf_c_empty_string;
	}
	return p;
}

static char **bld_strs(struct bld *b, const struct ent_str *s, uint32_t n)
{
	char **v = bld_alloc(b, n * sizeof(*v));
	if (!v)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		v[i] = bld_str(b, s[i]);
	return v;
}

static Ent__V1__PrivilegeValue **bld_privs(struct bld *b, const struct ent_priv *p, uint32_t n)
{
	Ent__V1__PrivilegeValue *vals = bld_alloc(b, n * sizeof(*vals));
	Ent__V1__PrivilegeValue **v = bld_alloc(b, n * sizeof(*v));
	if (!vals || !v)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		Ent__V1__PrivilegeValue *pv = &vals[i];
		ent__v1__privilege_value__init(pv);
		pv->code = bld_str(b, p[i].code);
		pv->value_type = p[i].type;
		switch (p[i].type) {
		case ENT_PT_INTEGER:
			pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
			pv->int_value = p[i].i;
			break;
		case ENT_PT_BOOLEAN:
			pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE;
			pv->bool_value = p[i].b;
			break;
		case ENT_PT_STRING:
		case ENT_PT_SELECT:
			pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
			/* protobuf-c leaves out a oneof string that is the shared empty default:
			 * an empty value gets a string of its own, so "" is sent as a value. */
			pv->string_value =
				p[i].s.len ? bld_str(b, p[i].s) : ent_arena_strndup(b->a, "", 0);
			if (!pv->string_value) {
				b->oom = true;
				pv->string_value = (char *)protobuf_c_empty_string;
			}
			break;
		}
		v[i] = pv;
	}
	return v;
}

static void fill_usage(Ent__V1__Usage *u, const struct ent_decision *d)
{
	ent__v1__usage__init(u);
	u->limit = d->limit;
	u->unlimited = d->unlimited;
	u->used = d->used;
	u->remaining = d->remaining;
	u->is_soft_limit = d->soft;
	u->reset_period = d->reset;
	u->period_start = d->period_start;
	u->period_end = d->period_end;
}

/* ---- validation and snapshots --------------------------------------------------------- */

/* The checks of CheckEntitlementRequest: ids, quantity and instant; 0 means 1 unit, now. */
static int parse_check(const struct ent_wire_check *r, int64_t now, struct ent_check *c,
		       struct ent_err *err)
{
	int rc;
	c->customer = r->customer_id;
	c->feature = r->feature_code;
	if ((rc = ent_str_check_id(c->customer, ENT_MAX_CUSTOMER_ID, "customer_id", err)) != 0)
		return rc;
	if ((rc = ent_str_check_id(c->feature, ENT_MAX_CODE, "feature_code", err)) != 0)
		return rc;
	if (r->quantity < 0)
		return ent_err_set(err, ENT_EINVAL, "quantity: must not be negative");
	if (r->at < 0)
		return ent_err_set(err, ENT_EINVAL, "at: must not be negative");
	if (r->at > ENT_WIRE_TIME_MAX)
		return ent_err_set(err, ENT_EINVAL, "at: beyond the largest instant, 2^53-1 ms");
	c->quantity = r->quantity ? r->quantity : 1;
	c->at = r->at ? r->at : now;
	return 0;
}

/*
 * Begin a snapshot at least \a min_seq new. A writer commit that the caller has already seen
 * answered is visible to a fresh snapshot, so a renewal normally suffices. A min_sequence
 * from the future (another node, or not yet committed) is refused here, with *behind set to
 * it (when \a behind is not NULL), since a worker thread must never block: the unary handlers
 * then park the call until the writer applies it (park, below).
 */
static int begin_min(struct ent_view *v, uint64_t min_seq, uint64_t *behind, struct ent_err *err)
{
	for (int i = 0;; i++) {
		int rc = ent_store_view_begin(v);
		if (rc)
			return ent_err_set(err, rc, "snapshot: %s", ent_err_strerror(rc));
		uint64_t seq = ent_store_view_seq(v);
		if (seq >= min_seq)
			return 0;
		ent_store_view_end(v);
		if (i == MIN_SEQ_RETRIES) {
			if (behind)
				*behind = min_seq;
			return ent_err_set(err, ENT_EUNAVAIL,
					   "snapshot sequence %" PRIu64
					   " is older than min_sequence %" PRIu64,
					   seq, min_seq);
		}
		sched_yield();
	}
}

/* ---- checks that wait for their min_sequence ------------------------------------------ */

/*
 * A unary check whose min_sequence this node has not applied yet is parked: its call (the
 * request bytes stay in it) waits in the writer's list of waits (ent_writer_wait) instead of
 * being refused, and the worker goes on serving. The commit that applies the sequence (a local
 * write, or the stream's messages in fleet mode) releases it from the writer thread, which
 * only hands the call back to its worker (ent_rpc_call_resume); the worker decides it again from
 * the start with a fresh snapshot (ent_rpc_check_resume). The check is not decided on the writer
 * thread because the read view, the counters and the decision log belong to the worker, and
 * the writer's time is the apply rate's. Only this rare path takes a lock (the writer's list).
 */
enum {
	PARK_NO,
	PARK_PARKED,
	PARK_AGAIN
};

static void wait_done(struct ent_writer_wait *wt, int end, uint64_t applied)
{
	struct ent_call *c = wt->ctx;
	c->wait_end = (uint8_t)end;
	c->wait_applied = applied;
	ent_rpc_call_resume(c);
}

/*
 * Park \a call until sequence \a want is applied. PARK_PARKED: the call is the writer's now,
 * do not touch it. PARK_AGAIN: applied meanwhile, decide again now. PARK_NO: answer with
 * \a err (kept as it is when waiting is off; else why the call cannot wait).
 */
static int park(struct ent_call *call, uint64_t want, struct ent_err *err)
{
	const struct ent_rpc_opts *o = ent_rpc_call_opts(call);
	if (!o->writer || o->min_seq_wait_ms <= 0 || call->resumed ||
	    call->rm->kind != ENT_MK_UNARY)
		return PARK_NO;
	int64_t now = ent_time_mono_ns();
	int64_t until = now + o->min_seq_wait_ms * 1000000;
	gpr_timespec dl = call->deadline;
	if (dl.clock_type != GPR_TIMESPAN && dl.tv_sec != INT64_MAX) {
		/* Never past the call's deadline: the client would not read the answer. */
		gpr_timespec left = gpr_time_sub(dl, gpr_now(dl.clock_type));
		int64_t left_ns = left.tv_sec * 1000000000 + left.tv_nsec;
		if (left_ns <= 0)
			return PARK_NO;
		if (now + left_ns < until)
			until = now + left_ns;
	}
	call->wait = (struct ent_writer_wait){
		.seq = want, .deadline_ns = until, .cb = wait_done, .ctx = call};
	call->wait_ms = (until - now) / 1000000;
	int rc = ent_writer_wait(o->writer, &call->wait, o->min_seq_wait_max);
	if (rc == 0)
		return PARK_PARKED;
	call->resumed = true;
	if (rc == 1)
		return PARK_AGAIN;
	uint64_t applied = ent_writer_seq(o->writer);
	if (rc == -ENT_EFULL)
		ent_err_set(err, ENT_EUNAVAIL,
			    "min_sequence %" PRIu64 " is not applied on this node yet (applied "
			    "sequence %" PRIu64 ") and %zu checks already wait for theirs, the "
			    "most that may (check.min_sequence_wait_max): retry later",
			    want, applied, o->min_seq_wait_max);
	else
		ent_err_set(err, ENT_EUNAVAIL,
			    "min_sequence %" PRIu64 " is not applied on this node yet (applied "
			    "sequence %" PRIu64 ") and the server is shutting down",
			    want, applied);
	return PARK_NO;
}

void ent_rpc_check_resume(struct ent_call *c)
{
	char msg[sizeof(((struct ent_err *)0)->msg)];
	c->resumed = true;
	if (c->wait_end == ENT_WAIT_APPLIED) {
		if (c->rm->m->raw) {
			grpc_slice hold;
			const uint8_t *p;
			size_t n;
			if (!ent_rpc_call_bytes(c->payload, &hold, &p, &n)) {
				ent_rpc_call_fail(c, ENT_EINVAL, "malformed request");
				return;
			}
			c->rm->m->raw(c, p, n);
			grpc_slice_unref(hold);
		} else {
			c->rm->m->handler(c, c->req);
		}
		return;
	}
	if (c->wait_end == ENT_WAIT_TIMEOUT)
		snprintf(msg, sizeof(msg),
			 "min_sequence %" PRIu64 " is not applied on this node yet: applied "
			 "sequence %" PRIu64 " after waiting %" PRId64 " ms "
			 "(check.min_sequence_wait_ms, or the call's deadline); retry later or "
			 "on a node that is caught up",
			 c->wait.seq, c->wait_applied, c->wait_ms);
	else
		snprintf(msg, sizeof(msg),
			 "min_sequence %" PRIu64 " is not applied on this node yet (applied "
			 "sequence %" PRIu64 ") and the server is shutting down",
			 c->wait.seq, c->wait_applied);
	ent_rpc_call_fail(c, ENT_EUNAVAIL, msg);
}

static int view_error(int rc, struct ent_err *err)
{
	return ent_err_set(err, rc, "check: %s", ent_err_strerror(rc));
}

/* ---- answers straight into a gRPC slice --------------------------------------------- */

/*
 * A sent slice may outlive the batch (the socket write is asynchronous), so answers go into a
 * slice of their own, written in place from the decision: no protobuf-c message, no string
 * copies, one allocation (gRPC's) per answer.
 */
static int encode_check(const struct ent_decision *d, uint64_t seq, size_t max, grpc_slice *out)
{
	size_t n = ent_rpc_wire_check_resp_size(d, seq);
	if (n > max)
		return -ENT_EFULL;
	grpc_slice s = grpc_slice_malloc(n);
	ent_rpc_wire_check_resp_write(GRPC_SLICE_START_PTR(s), d, seq);
	*out = s;
	return 0;
}

/* ---- CheckEntitlement and the stream ------------------------------------------------- */

/*
 * Send-side of one check (unary or stream message): the answer the drain pass decided ahead
 * from these same bytes, or else one decided now, alone. Either way it is counted for the
 * metrics here, where it is sent, and \a out takes over the answer's slice.
 */
static int check_one(struct ent_call *call, const uint8_t *req, size_t len, grpc_slice *out,
		     struct ent_err *err)
{
	struct ent_answer *a = &call->ans;
	a->behind = 0;
	if (a->ok && a->req == req && a->len == len) {
		if (call->ws->mb)
			ent_metrics_add_(&call->ws->mb->checks_ahead, 1);
	} else {
		/* Decided ahead for other bytes: cannot happen while every answer decided ahead is
		   sent or dropped before the call's next message; kept as the guard that makes it
		   so. */
		ent_rpc_call_drop_answer(call);
		a->req = req;
		a->len = len;
		int rc = ent_rpc_check_decide(call->ws, &a, 1, err);
		if (rc)
			return rc;
	}
	a->ok = false;
	*out = a->out;
	struct ent_decision d = {.allowed = a->allowed, .reason = a->reason};
	ent_rpc_call_observe_check(call, &a->chk, &d, a->seq);
	return 0;
}

static void h_check(struct ent_call *call, const uint8_t *req, size_t len)
{
	struct ent_err err;
	grpc_slice out;
	while (check_one(call, req, len, &out, &err)) {
		int p = call->ans.behind ? park(call, call->ans.behind, &err) : PARK_NO;
		if (p == PARK_PARKED)
			return;
		if (p == PARK_NO) {
			ent_rpc_call_fail(call, err.code, err.msg);
			return;
		}
	}
	ent_rpc_call_reply_slice(call, out);
}

int ent_rpc_check_stream_answer(struct ent_call *c, const uint8_t *req, size_t len, grpc_slice *out,
				struct ent_err *err)
{
	return check_one(c, req, len, out, err);
}

/* ---- deciding checks: one, or the ones that arrived together -------------------------- */

/*
 * A lookup of one random key is a chain of dependent cache and TLB misses that a single check
 * cannot overlap; ent_store_view_check_batch interleaves the walks of a group of keys (WALK_GROUP
 * in store/walk.h, as many as one drain takes) so their misses overlap (docs/performance.md has the
 * figures). The worker's drain pass (server.c, call.c: ent_rpc_call_prepare) hands over the checks
 * of the unary calls and stream messages that arrived together, which are decided in one snapshot:
 * as fresh as the one each would have begun alone, since all of them had arrived before it.
 */
struct decided {
	struct ent_answer **who;
	uint64_t seq;
	size_t max;
	bool lone; /* an error stops and is reported, instead of leaving the check alone */
};

static int decided_answer(void *ctx, size_t i, const struct ent_check_result *r)
{
	struct decided *p = ctx;
	struct ent_answer *a = p->who[i];
	if (encode_check(&r->d, p->seq, p->max, &a->out) != 0)
		/* Too large for one message: a lone check fails with that error; one decided
		   ahead is left to its call, which then does. */
		return p->lone ? -ENT_EFULL : 0;
	a->ok = true;
	a->allowed = r->d.allowed;
	a->reason = r->d.reason;
	a->seq = p->seq;
	return 0;
}

int ent_rpc_check_decide(struct ent_wstate *ws, struct ent_answer *const *a, size_t n,
			 struct ent_err *err)
{
	struct ent_check cs[ENT_DRAIN_MAX];
	struct ent_answer *who[ENT_DRAIN_MAX];
	uint64_t min_seq[ENT_DRAIN_MAX];
	struct ent_err ignored;
	struct ent_err *e = err ? err : &ignored;
	bool lone = err != NULL;
	int64_t now = ent_time_now_ms();
	size_t m = 0;
	for (size_t i = 0; i < n && m < ENT_DRAIN_MAX; i++) {
		struct ent_wire_check w;
		int rc;
		if (ent_rpc_wire_check_decode(a[i]->req, a[i]->len, &w))
			rc = ent_err_set(e, ENT_EINVAL, "malformed request");
		else
			rc = parse_check(&w, now, &cs[m], e);
		if (rc) {
			if (lone)
				return rc;
			continue;
		}
		min_seq[m] = w.min_sequence;
		who[m++] = a[i];
	}
	if (m == 0 || (!lone && m < 2))
		return 0;
	/* A lone check waits (briefly) for its min_sequence; checks decided ahead take the
	   snapshot there is, and one that asks for a newer one keeps its own path. */
	struct ent_view *v = ws->w.view;
	int rc = begin_min(v, lone ? min_seq[0] : 0, lone ? &who[0]->behind : NULL, e);
	if (rc)
		return lone ? rc : 0;
	struct decided p = {.who = who,
			    .seq = ent_store_view_seq(v),
			    .max = ws->w.rpc->opts.max_message_bytes,
			    .lone = lone};
	size_t k = 0;
	for (size_t i = 0; i < m; i++) {
		if (min_seq[i] > p.seq)
			continue;
		cs[k] = cs[i];
		who[k] = who[i];
		who[k]->chk = cs[i];
		k++;
	}
	if (k == 1) {
		/* One key: nothing to overlap, the plain lookup is the shorter path. */
		struct ent_check_result res;
		rc = ent_store_view_check(v, &cs[0], &res);
		if (!rc)
			rc = decided_answer(&p, 0, &res);
	} else if (k > 1) {
		rc = ent_store_view_check_batch(v, cs, k, decided_answer, &p, NULL);
	}
	ent_store_view_end(v);
	if (!rc || !lone)
		return 0;
	if (rc == -ENT_EFULL)
		return ent_err_set(err, ENT_EFULL,
				   "response is larger than the maximum message size");
	return view_error(rc, err);
}

bool ent_rpc_check_is_unary_check(const struct ent_method *m)
{
	return m->raw == h_check;
}

/* ---- BatchCheckEntitlements ----------------------------------------------------------- */

/*
 * The answer of a batch is written result by result into one gRPC slice as the checks are
 * decided (rpc/wire.c: ent_wire_batch_*); the slice is replaced by a larger one, with a copy,
 * only when the first size guess was too small.
 */
struct batch_out {
	struct ent_wire_batch b; /* first: the grow callback converts back */
	struct ent_call *call;
	const struct ent_check *cs;
	grpc_slice s;
};

static int batch_grow(struct ent_wire_batch *b, size_t cap)
{
	struct batch_out *o = (struct batch_out *)b;
	grpc_slice s = grpc_slice_malloc(cap);
	memcpy(GRPC_SLICE_START_PTR(s), b->p, b->used);
	grpc_slice_unref(o->s);
	o->s = s;
	b->p = GRPC_SLICE_START_PTR(s);
	b->cap = cap;
	return 0;
}

static int batch_answer(void *ctx, size_t i, const struct ent_check_result *r)
{
	struct batch_out *o = ctx;
	int rc = ent_rpc_wire_batch_add(&o->b, &r->d);
	if (!rc)
		ent_rpc_call_observe_check(o->call, &o->cs[i], &r->d, o->b.seq);
	return rc;
}

static void h_batch(struct ent_call *call, const uint8_t *req, size_t len)
{
	struct ent_err err;
	char msg[sizeof(err.msg) + 64];
	size_t n;

	if (ent_rpc_wire_batch_items(req, len, &n)) {
		ent_rpc_call_fail(call, ENT_EINVAL, "malformed request");
		return;
	}
	if (n == 0 || n > MAX_BATCH) {
		snprintf(msg, sizeof(msg), "checks: must hold 1..%d checks (got %zu)", MAX_BATCH,
			 n);
		ent_rpc_call_fail(call, ENT_EINVAL, msg);
		return;
	}
	if (n > BIG_BATCH)
		ent_rpc_call_drop_arena(call);
	struct ent_check *cs = ent_arena_alloc(ent_rpc_call_arena(call), n * sizeof(*cs));
	if (!cs) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "checks: out of memory");
		return;
	}
	/* Validate everything before reading: a bad batch is refused as a whole. */
	int64_t now = ent_time_now_ms();
	uint64_t min_seq = 0;
	struct ent_wire_iter it;
	struct ent_wire_check w;
	ent_rpc_wire_iter_init(&it, req, len);
	for (size_t i = 0; i < n; i++) {
		if (ent_rpc_wire_batch_next(&it, &w) != 1) {
			ent_rpc_call_fail(call, ENT_EINVAL, "malformed request");
			return;
		}
		if (parse_check(&w, now, &cs[i], &err) != 0) {
			snprintf(msg, sizeof(msg), "checks[%zu].%s", i, err.msg);
			ent_rpc_call_fail(call, err.code, msg);
			return;
		}
		if (w.min_sequence > min_seq)
			min_seq = w.min_sequence;
	}
	struct ent_view *v = ent_rpc_call_worker(call)->view;
	uint64_t behind = 0;
	if (begin_min(v, min_seq, &behind, &err) != 0) {
		int p = behind ? park(call, behind, &err) : PARK_NO;
		if (p == PARK_AGAIN)
			h_batch(call, req, len);
		else if (p == PARK_NO)
			ent_rpc_call_fail(call, err.code, err.msg);
		return;
	}
	/* One snapshot for all: the answers are consistent with each other. */
	struct batch_out o = {.call = call, .cs = cs};
	o.b.seq = ent_store_view_seq(v);
	o.b.max = ent_rpc_call_opts(call)->max_message_bytes;
	o.b.cap = n * BATCH_ITEM_GUESS + BATCH_SEQ_ROOM;
	o.b.grow = batch_grow;
	o.s = grpc_slice_malloc(o.b.cap);
	o.b.p = GRPC_SLICE_START_PTR(o.s);
	size_t bad = 0;
	int rc = ent_store_view_check_batch(v, cs, n, batch_answer, &o, &bad);
	ent_store_view_end(v);
	if (!rc)
		rc = ent_rpc_wire_batch_finish(&o.b);
	if (rc == -ENT_EFULL) {
		grpc_slice_unref(o.s);
		ent_rpc_call_fail_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
					 "response is larger than the maximum message size");
		return;
	}
	if (rc) {
		grpc_slice_unref(o.s);
		snprintf(msg, sizeof(msg), "checks[%zu]: %s", bad, ent_err_strerror(rc));
		ent_rpc_call_fail(call, rc, msg);
		return;
	}
	/* The answer is the first o.b.used bytes; the slice's reference goes with it. */
	ent_rpc_call_reply_slice(call, grpc_slice_sub_no_ref(o.s, 0, o.b.used));
}

/* ---- GetCustomerEntitlements ---------------------------------------------------------- */

struct gce {
	struct bld b;
	int64_t at;
	Ent__V1__AggregatedFeature **items;
	size_t n, cap;
};

static bool source_active(const struct ent_source *s, int64_t at)
{
	return (s->active_from == 0 || s->active_from <= at) &&
	       (s->expires_at == 0 || at < s->expires_at);
}

static Ent__V1__EntitlementSource *build_source(struct bld *b, const struct ent_source *s,
						int64_t at)
{
	Ent__V1__EntitlementSource *e = bld_alloc(b, sizeof(*e));
	if (!e)
		return NULL;
	ent__v1__entitlement_source__init(e);
	e->entity_type = s->type;
	e->entity_id = bld_str(b, s->id);
	e->entity_name = bld_str(b, s->name);
	e->subscription_id = bld_str(b, s->subscription_id);
	e->quantity = s->quantity;
	e->is_enabled = s->enabled;
	e->usage_limit = s->usage_limit;
	e->unlimited = s->unlimited;
	e->is_soft_limit = s->soft;
	e->usage_reset_period = s->reset;
	if (s->n_static) {
		e->n_static_values = s->n_static;
		e->static_values = bld_strs(b, s->statics, s->n_static);
	}
	if (s->n_privs) {
		e->n_privileges = s->n_privs;
		e->privileges = bld_privs(b, s->privs, s->n_privs);
	}
	e->active_from = s->active_from;
	e->expires_at = s->expires_at;
	e->reason = bld_str(b, s->reason);
	e->active = source_active(s, at);
	return e;
}

static int gce_feature(void *ctx, const struct ent_customer_feature *cf)
{
	struct gce *g = ctx;
	struct bld *b = &g->b;
	if (g->n == g->cap) {
		/* Arena arrays cannot grow in place: double into a new one (the old one is
		   dropped with the arena). */
		size_t cap = g->cap ? g->cap * 2 : 16;
		Ent__V1__AggregatedFeature **items = bld_alloc(b, cap * sizeof(*items));
		if (!items)
			return -ENT_ENOMEM;
		if (g->n)
			memcpy(items, g->items, g->n * sizeof(*items));
		g->items = items;
		g->cap = cap;
	}
	Ent__V1__AggregatedFeature *af = bld_alloc(b, sizeof(*af));
	Ent__V1__AggregatedEntitlement *e = bld_alloc(b, sizeof(*e));
	if (!af || !e)
		return -ENT_ENOMEM;
	ent__v1__aggregated_feature__init(af);
	ent__v1__aggregated_entitlement__init(e);

	af->feature = (Ent__V1__Feature *)cf->feature_pb;
	if (!af->feature) {
		/* The store always gives the declaration; if not, name the feature at least. */
		Ent__V1__Feature *f = bld_alloc(b, sizeof(*f));
		if (!f)
			return -ENT_ENOMEM;
		ent__v1__feature__init(f);
		f->code = bld_str(b, cf->feature_code);
		f->type = cf->r.d.feature_type;
		af->feature = f;
	}

	const struct ent_decision *d = &cf->r.d;
	const struct ent_agg *a = d->agg;
	if (a) {
		e->is_enabled = a->enabled;
		e->is_soft_limit = a->soft;
		e->usage_limit = a->limit;
		e->unlimited = a->unlimited;
		if (a->n_static) {
			e->n_static_values = a->n_static;
			e->static_values = bld_strs(b, a->statics, a->n_static);
		}
		if (a->n_privs) {
			e->n_privileges = a->n_privs;
			e->privileges = bld_privs(b, a->privs, a->n_privs);
		}
		if (a->override_applied) {
			e->override_reason = bld_str(b, a->override_reason);
			e->override_expires_at = a->override_expires_at;
		}
	}
	e->usage_reset_period = d->reset ? d->reset : cf->r.usage.reset;
	if (d->metered) {
		Ent__V1__Usage *u = bld_alloc(b, sizeof(*u));
		if (!u)
			return -ENT_ENOMEM;
		fill_usage(u, d);
		e->usage = u;
	}
	e->reason = d->reason;
	e->next_change_at = d->next_change_at;
	af->entitlement = e;

	const struct ent_sources *s = cf->sources;
	if (s && s->n) {
		af->sources = bld_alloc(b, s->n * sizeof(*af->sources));
		if (!af->sources)
			return -ENT_ENOMEM;
		for (uint32_t i = 0; i < s->n; i++)
			if (!(af->sources[af->n_sources++] = build_source(b, &s->src[i], g->at)))
				return -ENT_ENOMEM;
	}
	if (b->oom)
		return -ENT_ENOMEM;
	g->items[g->n++] = af;
	return 0;
}

static void h_customer(struct ent_call *call, const ProtobufCMessage *m)
{
	const Ent__V1__GetCustomerEntitlementsRequest *req =
		(const Ent__V1__GetCustomerEntitlementsRequest *)m;
	struct ent_err err;
	char msg[sizeof(err.msg) + 64];
	struct ent_str customer = ent_str_c(req->customer_id);

	if (ent_str_check_id(customer, ENT_MAX_CUSTOMER_ID, "customer_id", &err) != 0) {
		ent_rpc_call_fail(call, err.code, err.msg);
		return;
	}
	if (req->at < 0) {
		ent_rpc_call_fail(call, ENT_EINVAL, "at: must not be negative");
		return;
	}
	if (req->at > ENT_WIRE_TIME_MAX) {
		ent_rpc_call_fail(call, ENT_EINVAL, "at: beyond the largest instant, 2^53-1 ms");
		return;
	}
	struct gce g = {.b = {ent_rpc_call_arena(call), false}};
	g.at = req->at ? req->at : ent_time_now_ms();
	struct ent_str *filter = NULL;
	if (req->n_feature_codes) {
		filter = bld_alloc(&g.b, req->n_feature_codes * sizeof(*filter));
		if (!filter) {
			ent_rpc_call_fail(call, ENT_ENOMEM, "feature_codes: out of memory");
			return;
		}
		for (size_t i = 0; i < req->n_feature_codes; i++) {
			filter[i] = ent_str_c(req->feature_codes[i]);
			if (ent_str_check_id(filter[i], ENT_MAX_CODE, "feature_code", &err) != 0) {
				snprintf(msg, sizeof(msg), "feature_codes[%zu]: %s", i, err.msg);
				ent_rpc_call_fail(call, err.code, msg);
				return;
			}
		}
	}
	struct ent_view *v = ent_rpc_call_worker(call)->view;
	uint64_t behind = 0;
	if (begin_min(v, req->min_sequence, &behind, &err) != 0) {
		int p = behind ? park(call, behind, &err) : PARK_NO;
		if (p == PARK_AGAIN)
			h_customer(call, m);
		else if (p == PARK_NO)
			ent_rpc_call_fail(call, err.code, err.msg);
		return;
	}
	/* Sources are gathered from the base tables: this answer is larger than a check's. */
	ent_rpc_call_drop_arena(call);
	int rc = ent_store_view_customer_features(v, customer, filter, req->n_feature_codes, g.at,
						  ent_rpc_call_arena(call), gce_feature, &g);
	if (rc == -ENT_ENOTFOUND) {
		ent_store_view_end(v);
		snprintf(msg, sizeof(msg), "customer_id: unknown customer '%s'", req->customer_id);
		ent_rpc_call_fail(call, ENT_ENOTFOUND, msg);
		return;
	}
	if (rc) {
		ent_store_view_end(v);
		snprintf(msg, sizeof(msg), "customer_id: cannot read '%s': %s", req->customer_id,
			 ent_err_strerror(rc));
		ent_rpc_call_fail(call, rc, msg);
		return;
	}
	Ent__V1__GetCustomerEntitlementsResponse resp =
		ENT__V1__GET_CUSTOMER_ENTITLEMENTS_RESPONSE__INIT;
	resp.customer_id = req->customer_id;
	resp.n_features = g.n;
	resp.features = g.items;
	resp.sequence = ent_store_view_seq(v);
	ent_rpc_call_reply(call, &resp.base);
	ent_store_view_end(v);
}

/* ---- writes: ReportUsage, ConsumeEntitlement ------------------------------------------ */

/* Runs on the writer thread; the call is this thread's until the final batch starts. */
static void report_done(void *ctx, const struct ent_apply_result *res)
{
	struct ent_call *call = ctx;
	if (res->err.code) {
		ent_rpc_call_fail(call, res->err.code, res->err.msg);
		return;
	}
	Ent__V1__ReportUsageResponse resp = ENT__V1__REPORT_USAGE_RESPONSE__INIT;
	Ent__V1__Usage usage;
	fill_usage(&usage, &res->usage);
	resp.duplicate = res->duplicate;
	resp.usage = &usage;
	resp.sequence = res->seq;
	ent_rpc_call_reply(call, &resp.base);
}

static void consume_done(void *ctx, const struct ent_apply_result *res)
{
	struct ent_call *call = ctx;
	if (res->err.code) {
		ent_rpc_call_fail(call, res->err.code, res->err.msg);
		return;
	}
	Ent__V1__ConsumeEntitlementResponse resp = ENT__V1__CONSUME_ENTITLEMENT_RESPONSE__INIT;
	Ent__V1__Usage usage;
	fill_usage(&usage, &res->usage);
	resp.allowed = res->allowed;
	resp.reason = res->reason;
	resp.usage = &usage;
	resp.sequence = res->seq;
	resp.duplicate = res->duplicate;
	ent_rpc_call_reply(call, &resp.base);
}

/*
 * Hand \a ev to the writer. The event, the request it points to and the writer's request all
 * live in the call's arena, which stays until the call is recycled after the callback's reply.
 */
static void submit(struct ent_call *call, Ent__V1__Event *ev, ent_writer_done_cb cb)
{
	struct ent_writer *w = ent_rpc_call_opts(call)->writer;
	if (!w) {
		ent_rpc_call_fail(call, ENT_EUNAVAIL, "writes are not available on this server");
		return;
	}
	struct ent_writer_req *wr = ent_arena_alloc(ent_rpc_call_arena(call), sizeof(*wr));
	if (!wr) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "request: out of memory");
		return;
	}
	memset(wr, 0, sizeof(*wr));
	wr->event = ev;
	wr->cb = cb;
	wr->ctx = call;
	int rc = ent_writer_submit(w, wr);
	if (rc)
		ent_rpc_call_fail(call, rc, "writer: not accepting writes (shutting down)");
	/* On success the call belongs to the writer until cb runs: do not touch it here. */
}

static Ent__V1__Event *new_event(struct ent_call *call)
{
	Ent__V1__Event *ev = ent_arena_alloc(ent_rpc_call_arena(call), sizeof(*ev));
	if (ev)
		ent__v1__event__init(ev);
	return ev;
}

static int check_ids(const char *customer, const char *feature, struct ent_err *err)
{
	int rc = ent_str_check_id(ent_str_c(customer), ENT_MAX_CUSTOMER_ID, "customer_id", err);
	if (!rc)
		rc = ent_str_check_id(ent_str_c(feature), ENT_MAX_CODE, "feature_code", err);
	return rc;
}

static void h_report(struct ent_call *call, const ProtobufCMessage *m)
{
	Ent__V1__ReportUsageRequest *req = (Ent__V1__ReportUsageRequest *)m;
	struct ent_err err;
	if (check_ids(req->customer_id, req->feature_code, &err) ||
	    ent_str_check_id(ent_str_c(req->idempotency_key), ENT_MAX_IDEM_KEY, "idempotency_key",
			     &err)) {
		ent_rpc_call_fail(call, err.code, err.msg);
		return;
	}
	if (req->quantity <= 0) {
		ent_rpc_call_fail(call, ENT_EINVAL, "quantity: must be positive");
		return;
	}
	if (req->timestamp < 0) {
		ent_rpc_call_fail(call, ENT_EINVAL, "timestamp: must not be negative");
		return;
	}
	if (req->timestamp > ENT_WIRE_TIME_MAX) {
		ent_rpc_call_fail(call, ENT_EINVAL,
				  "timestamp: beyond the largest instant, 2^53-1 ms");
		return;
	}
	Ent__V1__Event *ev = new_event(call);
	if (!ev) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "request: out of memory");
		return;
	}
	ev->kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	ev->report_usage = req;
	submit(call, ev, report_done);
}

static void h_consume(struct ent_call *call, const ProtobufCMessage *m)
{
	Ent__V1__ConsumeEntitlementRequest *req = (Ent__V1__ConsumeEntitlementRequest *)m;
	struct ent_err err;
	if (check_ids(req->customer_id, req->feature_code, &err) ||
	    (*req->idempotency_key &&
	     ent_str_check_id(ent_str_c(req->idempotency_key), ENT_MAX_IDEM_KEY, "idempotency_key",
			      &err))) {
		ent_rpc_call_fail(call, err.code, err.msg);
		return;
	}
	if (req->quantity < 0) {
		ent_rpc_call_fail(call, ENT_EINVAL, "quantity: must not be negative");
		return;
	}
	/* The request lives in the arena and is ours: say what 0 means before it is logged as
	   an event. */
	if (req->quantity == 0)
		req->quantity = 1;
	Ent__V1__Event *ev = new_event(call);
	if (!ev) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "request: out of memory");
		return;
	}
	ev->kind_case = ENT__V1__EVENT__KIND_CONSUME;
	ev->consume = req;
	submit(call, ev, consume_done);
}

const struct ent_method ent_rpc_check_methods[] = {
	/* The check path decodes its requests itself (rpc/wire.c): raw handlers. */
	{.path = "/ent.v1.EntitlementService/CheckEntitlement",
	 .request = &ent__v1__check_entitlement_request__descriptor,
	 .raw = h_check},
	{.path = "/ent.v1.EntitlementService/BatchCheckEntitlements",
	 .request = &ent__v1__batch_check_entitlements_request__descriptor,
	 .raw = h_batch},
	{.path = "/ent.v1.EntitlementService/GetCustomerEntitlements",
	 .request = &ent__v1__get_customer_entitlements_request__descriptor,
	 .handler = h_customer},
	{.path = "/ent.v1.EntitlementService/ReportUsage",
	 .request = &ent__v1__report_usage_request__descriptor,
	 .handler = h_report},
	{.path = "/ent.v1.EntitlementService/ConsumeEntitlement",
	 .request = &ent__v1__consume_entitlement_request__descriptor,
	 .handler = h_consume},
	{.path = "/ent.v1.EntitlementService/BatchReportUsage",
	 .request = &ent__v1__batch_report_usage_wire__descriptor,
	 .handler = ent_rpc_usage_batch_handler},
};
const size_t ent_rpc_check_methods_count =
	sizeof(ent_rpc_check_methods) / sizeof(ent_rpc_check_methods[0]);
