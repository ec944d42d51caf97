/*
 * The writer against a real store in a temporary LMDB directory: concurrent submitters, group
 * commit, failure isolation, hard limits under contention, boundary timers, draining on stop.
 *
 * Nothing here depends on timing for pass/fail: where the writer must be caught mid-way, a
 * "gate" request whose callback blocks holds the writer thread still; waits have generous
 * time-outs that only turn a hang into a failure.
 *
 * ENT_WRITER_BENCH=1 also prints durable events per second of the group-commit test (never
 * asserted). The serial commit rate (one event in flight) is measured by bench/measure_writes.py.
 */
#include <dirent.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "ent/store.h"
#include "ent/util.h"
#include "ent/v1/event.pb-c.h"
#include "ent/writer.h"

#define WAIT_NS (120ULL * 1000 * 1000 * 1000) /* a hang guard, not a pass criterion */

struct fx {
	char dir[64];
	struct ent_store *store;
	struct ent_writer *w;
};

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static struct ent_store *open_store(const char *dir)
{
	struct ent_store_opts o = {.path = dir};
	struct ent_store *s = NULL;
	struct ent_err err = {0};
	int rc = ent_store_open(&o, &s, &err);
	if (rc)
		fprintf(stderr, "ent_store_open: %s\n", err.msg);
	assert_int_equal(rc, 0);
	return s;
}

static struct ent_writer *start_writer_piece(struct ent_store *s, size_t max_group,
					     uint32_t tick_piece)
{
	struct ent_writer_opts o = {.store = s, .max_group = max_group, .tick_piece = tick_piece};
	struct ent_writer *w = NULL;
	assert_int_equal(ent_writer_start(&o, &w), 0);
	assert_non_null(w);
	return w;
}

static struct ent_writer *start_writer(struct ent_store *s, size_t max_group)
{
	return start_writer_piece(s, max_group, 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/ent_writer_XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->store = open_store(f->dir);
	f->w = start_writer(f->store, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->w)
		ent_writer_stop(f->w);
	if (f->store)
		ent_store_close(f->store);
	rm_dir(f->dir);
	free(f);
	return 0;
}

/* ---- event builders (the strings are literals or test-owned; nothing is freed) ---------- */

struct ev_feature {
	Ent__V1__Event ev;
	Ent__V1__Feature f;
};

static void mk_feature(struct ev_feature *e, const char *code, Ent__V1__FeatureType type)
{
	ent__v1__event__init(&e->ev);
	ent__v1__feature__init(&e->f);
	e->f.code = (char *)code;
	e->f.name = (char *)code;
	e->f.type = type;
	e->ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_FEATURE;
	e->ev.upsert_feature = &e->f;
}

struct ev_plan {
	Ent__V1__Event ev;
	Ent__V1__SetEntitlementsRequest p;
	Ent__V1__Grant g;
	Ent__V1__Grant *gp[1];
};

static void mk_plan(struct ev_plan *e, const char *code, const char *feature, int64_t limit)
{
	ent__v1__event__init(&e->ev);
	ent__v1__set_entitlements_request__init(&e->p);
	ent__v1__grant__init(&e->g);
	e->g.feature_code = (char *)feature;
	e->g.usage_limit = limit;
	e->g.usage_reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_NEVER;
	e->gp[0] = &e->g;
	e->p.code = (char *)code;
	e->p.name = (char *)code;
	e->p.n_entitlements = 1;
	e->p.entitlements = e->gp;
	e->ev.kind_case = ENT__V1__EVENT__KIND_SET_PLAN;
	e->ev.set_plan = &e->p;
}

struct ev_sub {
	Ent__V1__Event ev;
	Ent__V1__Subscription s;
};

static void mk_sub(struct ev_sub *e, const char *id, const char *customer, const char *plan)
{
	ent__v1__event__init(&e->ev);
	ent__v1__subscription__init(&e->s);
	e->s.id = (char *)id;
	e->s.customer_id = (char *)customer;
	e->s.plan_code = (char *)plan;
	e->ev.kind_case = ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION;
	e->ev.upsert_subscription = &e->s;
}

struct ev_usage {
	Ent__V1__Event ev;
	Ent__V1__ReportUsageRequest u;
	char key[ENT_MAX_IDEM_KEY + 1];
};

static void mk_usage(struct ev_usage *e, const char *customer, const char *feature, int64_t qty,
		     const char *key)
{
	ent__v1__event__init(&e->ev);
	ent__v1__report_usage_request__init(&e->u);
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->u.customer_id = (char *)customer;
	e->u.feature_code = (char *)feature;
	e->u.quantity = qty;
	e->u.idempotency_key = e->key;
	e->ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
	e->ev.report_usage = &e->u;
}

struct ev_consume {
	Ent__V1__Event ev;
	Ent__V1__ConsumeEntitlementRequest c;
};

static void mk_consume(struct ev_consume *e, const char *customer, const char *feature)
{
	ent__v1__event__init(&e->ev);
	ent__v1__consume_entitlement_request__init(&e->c);
	e->c.customer_id = (char *)customer;
	e->c.feature_code = (char *)feature;
	e->c.quantity = 1;
	e->ev.kind_case = ENT__V1__EVENT__KIND_CONSUME;
	e->ev.consume = &e->c;
}

struct ev_override {
	Ent__V1__Event ev;
	Ent__V1__SetCustomerEntitlementRequest o;
	Ent__V1__OverrideValue v;
};

static void mk_override(struct ev_override *e, const char *customer, const char *feature,
			int64_t expires_at)
{
	ent__v1__event__init(&e->ev);
	ent__v1__set_customer_entitlement_request__init(&e->o);
	ent__v1__override_value__init(&e->v);
	e->v.kind_case = ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE;
	e->v.bool_value = 1;
	e->o.customer_id = (char *)customer;
	e->o.feature_code = (char *)feature;
	e->o.value = &e->v;
	e->o.reason = (char *)"trial";
	e->o.expires_at = expires_at;
	e->ev.kind_case = ENT__V1__EVENT__KIND_SET_OVERRIDE;
	e->ev.set_override = &e->o;
}

/* ---- waiting for callbacks ---------------------------------------------------------------- */

/** One request and what its callback saw. */
struct slot {
	struct ent_writer_req req;
	struct counter *counter;
	atomic_int calls;
	int err;
	uint64_t seq;
	bool allowed;
	bool duplicate;
};

/** Counts callbacks of many slots; wait_all blocks until \a want arrived (or the guard). */
struct counter {
	uv_mutex_t m;
	uv_cond_t c;
	uint64_t done, want;
};

static void counter_init(struct counter *c, uint64_t want)
{
	uv_mutex_init(&c->m);
	uv_cond_init(&c->c);
	c->done = 0;
	c->want = want;
}

static void counter_deinit(struct counter *c)
{
	uv_cond_destroy(&c->c);
	uv_mutex_destroy(&c->m);
}

static void slot_cb(void *ctx, const struct ent_apply_result *res)
{
	struct slot *s = ctx;
	s->err = res->err.code;
	s->seq = res->seq;
	s->allowed = res->allowed;
	s->duplicate = res->duplicate;
	if (res->err.code && getenv("ENT_TEST_VERBOSE"))
		fprintf(stderr, "event failed: %s\n", res->err.msg);
	atomic_fetch_add(&s->calls, 1);
	uv_mutex_lock(&s->counter->m);
	if (++s->counter->done >= s->counter->want)
		uv_cond_broadcast(&s->counter->c);
	uv_mutex_unlock(&s->counter->m);
}

static bool counter_wait(struct counter *c)
{
	uint64_t deadline = uv_hrtime() + WAIT_NS;
	uv_mutex_lock(&c->m);
	while (c->done < c->want) {
		uint64_t now = uv_hrtime();
		if (now >= deadline)
			break;
		uv_cond_timedwait(&c->c, &c->m, deadline - now);
	}
	bool ok = c->done >= c->want;
	uv_mutex_unlock(&c->m);
	return ok;
}

static void slot_prep(struct slot *s, struct counter *c, const Ent__V1__Event *ev)
{
	memset(s, 0, sizeof(*s));
	s->counter = c;
	s->req.event = ev;
	s->req.cb = slot_cb;
	s->req.ctx = s;
}

/** Submit one event and wait for its answer. \return the ENT_E* code of the result. */
static int submit_wait(struct ent_writer *w, const Ent__V1__Event *ev, struct slot *out)
{
	struct counter c;
	struct slot s;
	counter_init(&c, 1);
	slot_prep(&s, &c, ev);
	assert_int_equal(ent_writer_submit(w, &s.req), 0);
	assert_true(counter_wait(&c));
	assert_int_equal(atomic_load(&s.calls), 1);
	counter_deinit(&c);
	if (out)
		*out = s;
	return s.err;
}

/*
 * A request whose callback blocks the writer thread until released, so the test can fill the
 * queue while the writer provably cannot take it.
 */
struct gate {
	struct ev_feature ev;
	struct ent_writer_req req;
	uv_sem_t running, release;
};

static void gate_cb(void *ctx, const struct ent_apply_result *res)
{
	struct gate *g = ctx;
	uv_sem_post(&g->running);
	uv_sem_wait(&g->release);
}

static void gate_close(struct gate *g, struct ent_writer *w)
{
	uv_sem_init(&g->running, 0);
	uv_sem_init(&g->release, 0);
	mk_feature(&g->ev, "gate", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	g->req = (struct ent_writer_req){.event = &g->ev.ev, .cb = gate_cb, .ctx = g};
	assert_int_equal(ent_writer_submit(w, &g->req), 0);
	uv_sem_wait(&g->running);
}

static void gate_open(struct gate *g)
{
	uv_sem_post(&g->release);
}

static void gate_destroy(struct gate *g)
{
	uv_sem_destroy(&g->running);
	uv_sem_destroy(&g->release);
}

/* ---- common state ------------------------------------------------------------------------ */

/** Features api (metered, huge limit) and calls (metered, hard limit), on plans pro/basic. */
static void seed(struct ent_writer *w, int64_t calls_limit)
{
	struct ev_feature f;
	struct ev_plan p;
	mk_feature(&f, "api", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	assert_int_equal(submit_wait(w, &f.ev, NULL), 0);
	mk_feature(&f, "calls", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	assert_int_equal(submit_wait(w, &f.ev, NULL), 0);
	mk_feature(&f, "beta", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	assert_int_equal(submit_wait(w, &f.ev, NULL), 0);
	mk_plan(&p, "pro", "api", 1000000000);
	assert_int_equal(submit_wait(w, &p.ev, NULL), 0);
	mk_plan(&p, "basic", "calls", calls_limit);
	assert_int_equal(submit_wait(w, &p.ev, NULL), 0);
}

static void subscribe(struct ent_writer *w, const char *id, const char *customer, const char *plan)
{
	struct ev_sub s;
	mk_sub(&s, id, customer, plan);
	assert_int_equal(submit_wait(w, &s.ev, NULL), 0);
}

/** Decide one unit of \a feature for \a customer now in a fresh snapshot. */
static void check_now(struct ent_store *s, const char *customer, const char *feature,
		      struct ent_decision *d, uint64_t *seq)
{
	struct ent_view *v;
	struct ent_check_result r;
	struct ent_check c = {.customer = ent_str_c(customer),
			      .feature = ent_str_c(feature),
			      .quantity = 1,
			      .at = ent_time_now_ms()};
	assert_int_equal(ent_store_view_new(s, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	*d = r.d;
	d->agg = NULL; /* borrowed from the snapshot, gone after ent_store_view_end */
	if (seq)
		*seq = ent_store_view_seq(v);
	ent_store_view_end(v);
	ent_store_view_free(v);
}

static uint64_t store_count(struct ent_store *s, size_t field_offset)
{
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(s, &st), 0);
	return *(uint64_t *)((char *)&st + field_offset);
}

/* ---- many submitters ---------------------------------------------------------------------- */

#define N_THREADS     8
#define PER_THREAD    2000
#define FEATURE_EVERY 50 /* every 50th event of a thread upserts a feature */

struct producer {
	uv_thread_t tid;
	int id;
	struct ent_writer *w;
	struct counter *counter;
	struct slot *slots;
	struct ev_usage *usage;
	struct ev_feature *features;
	char (*codes)[32];
	int refused;
};

static void producer_main(void *arg)
{
	struct producer *p = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		const Ent__V1__Event *ev;
		if (i % FEATURE_EVERY == 0) {
			snprintf(p->codes[i], sizeof(p->codes[i]), "f%d_%d", p->id, i);
			mk_feature(&p->features[i], p->codes[i],
				   ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
			ev = &p->features[i].ev;
		} else {
			char key[32];
			snprintf(key, sizeof(key), "k%d_%d", p->id, i);
			mk_usage(&p->usage[i], "cust", "api", 1, key);
			ev = &p->usage[i].ev;
		}
		slot_prep(&p->slots[i], p->counter, ev);
		if (ent_writer_submit(p->w, &p->slots[i].req))
			p->refused++;
	}
}

static void test_concurrent_submitters(void **state)
{
	struct fx *f = *state;
	seed(f->w, 100);
	subscribe(f->w, "s1", "cust", "pro");
	uint64_t features_before =
		store_count(f->store, offsetof(struct ent_store_stats, features));

	struct counter c;
	counter_init(&c, (uint64_t)N_THREADS * PER_THREAD);
	struct producer p[N_THREADS];
	struct ent_writer_stats st0, st1;
	ent_writer_get_stats(f->w, &st0);
	uint64_t t0 = uv_hrtime();
	for (int t = 0; t < N_THREADS; t++) {
		p[t] = (struct producer){.id = t, .w = f->w, .counter = &c};
		p[t].slots = calloc(PER_THREAD, sizeof(*p[t].slots));
		p[t].usage = calloc(PER_THREAD, sizeof(*p[t].usage));
		p[t].features = calloc(PER_THREAD, sizeof(*p[t].features));
		p[t].codes = calloc(PER_THREAD, sizeof(*p[t].codes));
		assert_int_equal(uv_thread_create(&p[t].tid, producer_main, &p[t]), 0);
	}
	for (int t = 0; t < N_THREADS; t++)
		uv_thread_join(&p[t].tid);
	assert_true(counter_wait(&c));
	uint64_t elapsed = uv_hrtime() - t0;
	ent_writer_get_stats(f->w, &st1);

	/* Every callback fired exactly once, successfully, with a committed sequence. */
	uint64_t last_seq = ent_writer_seq(f->w);
	int n_usage = 0, n_features = 0;
	for (int t = 0; t < N_THREADS; t++) {
		assert_int_equal(p[t].refused, 0);
		for (int i = 0; i < PER_THREAD; i++) {
			struct slot *s = &p[t].slots[i];
			assert_int_equal(atomic_load(&s->calls), 1);
			assert_int_equal(s->err, 0);
			assert_true(s->seq > 0 && s->seq <= last_seq);
			if (i % FEATURE_EVERY == 0)
				n_features++;
			else
				n_usage++;
		}
	}
	assert_int_equal(st1.events - st0.events, (uint64_t)N_THREADS * PER_THREAD);
	assert_int_equal(st1.failed, st0.failed);
	assert_int_equal(st1.queue_depth, 0);
	assert_true(st1.commits > st0.commits);

	if (getenv("ENT_WRITER_BENCH")) {
		uint64_t commits = st1.commits - st0.commits;
		printf("# writer bench: %d events from %d threads in %.3f s: %.0f durable events/s, "
		       "%" PRIu64 " commits (%.1f events/commit), last commit %" PRIu64 " us\n",
		       N_THREADS * PER_THREAD, N_THREADS, elapsed / 1e9,
		       N_THREADS * PER_THREAD / (elapsed / 1e9), commits,
		       (double)(N_THREADS * PER_THREAD) / (double)(commits ? commits : 1),
		       st1.last_commit_us);
	}

	struct ent_decision d;
	check_now(f->store, "cust", "api", &d, NULL);
	assert_int_equal(d.used, n_usage);
	assert_int_equal(store_count(f->store, offsetof(struct ent_store_stats, features)),
			 features_before + (uint64_t)n_features);

	/* Committed means durable: reopen and count again. */
	ent_writer_stop(f->w);
	f->w = NULL;
	ent_store_close(f->store);
	f->store = open_store(f->dir);
	check_now(f->store, "cust", "api", &d, NULL);
	assert_int_equal(d.used, n_usage);
	assert_int_equal(store_count(f->store, offsetof(struct ent_store_stats, seq)), last_seq);
	assert_int_equal(store_count(f->store, offsetof(struct ent_store_stats, features)),
			 features_before + (uint64_t)n_features);

	for (int t = 0; t < N_THREADS; t++) {
		free(p[t].slots);
		free(p[t].usage);
		free(p[t].features);
		free(p[t].codes);
	}
	counter_deinit(&c);
}

/* ---- failure isolation -------------------------------------------------------------------- */

static void test_invalid_event_fails_alone(void **state)
{
	struct fx *f = *state;
	seed(f->w, 100);
	subscribe(f->w, "s1", "cust", "pro");

	enum {
		N = 201,
		BAD = 100
	};
	struct ev_usage *u = calloc(N, sizeof(*u));
	struct slot *s = calloc(N, sizeof(*s));
	struct counter c;
	counter_init(&c, N);

	/* Hold the writer so that all N are queued together and go into one transaction. */
	struct gate g;
	gate_close(&g, f->w);
	struct ent_writer_stats st0, st1;
	ent_writer_get_stats(f->w, &st0);
	for (int i = 0; i < N; i++) {
		char key[32];
		snprintf(key, sizeof(key), "iso%d", i);
		if (i == BAD)
			mk_usage(&u[i], "cust", "api", 0, ""); /* quantity 0, no key: invalid */
		else
			mk_usage(&u[i], "cust", "api", 1, key);
		slot_prep(&s[i], &c, &u[i].ev);
		assert_int_equal(ent_writer_submit(f->w, &s[i].req), 0);
	}
	gate_open(&g);
	assert_true(counter_wait(&c));
	ent_writer_get_stats(f->w, &st1);

	for (int i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&s[i].calls), 1);
		if (i == BAD) {
			assert_int_equal(s[i].err, ENT_EINVAL);
			assert_int_equal(s[i].seq, 0);
		} else {
			assert_int_equal(s[i].err, 0);
			assert_true(s[i].seq > 0);
		}
	}
	/* The gate's group committed before st0; the N requests made exactly one more. */
	assert_int_equal(st1.commits - st0.commits, 1);
	assert_int_equal(st1.failed - st0.failed, 1);

	struct ent_decision d;
	check_now(f->store, "cust", "api", &d, NULL);
	assert_int_equal(d.used, N - 1);

	gate_destroy(&g);
	counter_deinit(&c);
	free(u);
	free(s);
}

/* ---- transaction requests: all or nothing ------------------------------------------------ */

struct txn_job {
	struct ent_writer_txn_req txn;
	struct ev_feature a, b;
	struct counter *counter;
	int err;
	uint64_t seq;
};

/* Writer thread: apply both features; the first failure abandons the whole transaction. */
static int txn_apply_two(void *ctx, struct ent_wtxn *txn, struct ent_arena *arena,
			 struct ent_apply_result *res)
{
	struct txn_job *j = ctx;
	int rc = ent_store_apply(txn, &j->a.ev, arena, res);
	if (rc == 0)
		rc = ent_store_apply(txn, &j->b.ev, arena, res);
	return rc;
}

static void txn_done(void *ctx, const struct ent_apply_result *res)
{
	struct txn_job *j = ctx;
	j->err = res->err.code;
	j->seq = res->seq;
	uv_mutex_lock(&j->counter->m);
	j->counter->done++;
	uv_cond_broadcast(&j->counter->c);
	uv_mutex_unlock(&j->counter->m);
}

static bool feature_stored(struct ent_store *s, const char *code)
{
	struct ent_view *v;
	struct ent_str val;
	assert_int_equal(ent_store_view_new(s, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);
	bool found = ent_store_view_get(v, ENT_T_FEATURES, ent_str_c(code), &val) == 0;
	ent_store_view_end(v);
	ent_store_view_free(v);
	return found;
}

static void run_txn_job(struct ent_writer *w, struct txn_job *j)
{
	struct counter c;
	counter_init(&c, 1);
	j->counter = &c;
	j->txn.fn = txn_apply_two;
	j->txn.req.cb = txn_done;
	j->txn.req.ctx = j;
	assert_int_equal(ent_writer_submit_txn(w, &j->txn), 0);
	assert_true(counter_wait(&c));
	counter_deinit(&c);
}

static void test_txn_request_all_or_nothing(void **state)
{
	struct fx *f = *state;
	struct txn_job bad = {0}, good = {0};

	/* The second event is invalid (no code): the first must not be written either. */
	mk_feature(&bad.a, "tx_first", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	mk_feature(&bad.b, "", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	run_txn_job(f->w, &bad);
	assert_int_equal(bad.err, ENT_EINVAL);
	assert_int_equal(bad.seq, 0);
	assert_false(feature_stored(f->store, "tx_first"));

	uint64_t before = ent_writer_seq(f->w);
	mk_feature(&good.a, "tx_one", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	mk_feature(&good.b, "tx_two", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	run_txn_job(f->w, &good);
	assert_int_equal(good.err, 0);
	assert_int_equal(good.seq, before + 2);
	assert_int_equal(ent_writer_seq(f->w), before + 2);
	assert_true(feature_stored(f->store, "tx_one"));
	assert_true(feature_stored(f->store, "tx_two"));

	/* A plain submit without an event is refused rather than crashing the writer. */
	struct ent_writer_req empty = {0};
	assert_int_equal(ent_writer_submit(f->w, &empty), -ENT_EINVAL);
}

/* ---- a hard limit under contention ---------------------------------------------------------- */

#define LIMIT	     100
#define CONSUMERS    8
#define CONSUME_EACH 40

struct consumer {
	uv_thread_t tid;
	struct ent_writer *w;
	struct counter *counter;
	struct slot slots[CONSUME_EACH];
	struct ev_consume ev[CONSUME_EACH];
};

static void consumer_main(void *arg)
{
	struct consumer *k = arg;
	for (int i = 0; i < CONSUME_EACH; i++) {
		mk_consume(&k->ev[i], "cc", "calls");
		slot_prep(&k->slots[i], k->counter, &k->ev[i].ev);
		if (ent_writer_submit(k->w, &k->slots[i].req))
			k->slots[i].err = -1;
	}
}

static void test_consume_never_exceeds_limit(void **state)
{
	struct fx *f = *state;
	seed(f->w, LIMIT);
	subscribe(f->w, "s2", "cc", "basic");

	struct counter c;
	counter_init(&c, CONSUMERS * CONSUME_EACH);
	struct consumer *k = calloc(CONSUMERS, sizeof(*k));
	for (int t = 0; t < CONSUMERS; t++) {
		k[t].w = f->w;
		k[t].counter = &c;
		assert_int_equal(uv_thread_create(&k[t].tid, consumer_main, &k[t]), 0);
	}
	for (int t = 0; t < CONSUMERS; t++)
		uv_thread_join(&k[t].tid);
	assert_true(counter_wait(&c));

	int allowed = 0;
	for (int t = 0; t < CONSUMERS; t++) {
		for (int i = 0; i < CONSUME_EACH; i++) {
			assert_int_equal(atomic_load(&k[t].slots[i].calls), 1);
			assert_int_equal(k[t].slots[i].err, 0);
			allowed += k[t].slots[i].allowed;
		}
	}
	/* 320 attempts of one unit against a hard limit of 100: exactly 100 granted. */
	assert_int_equal(allowed, LIMIT);

	struct ent_decision d;
	check_now(f->store, "cc", "calls", &d, NULL);
	assert_int_equal(d.used, LIMIT);
	assert_false(d.allowed);
	assert_int_equal(d.reason, ENT_R_LIMIT_EXCEEDED);
	free(k);
	counter_deinit(&c);
}

/* ---- boundaries ------------------------------------------------------------------------- */

/** Poll (up to 10 s) until the store holds no override. */
static bool wait_no_overrides(struct ent_store *s)
{
	for (int i = 0; i < 200; i++) {
		if (store_count(s, offsetof(struct ent_store_stats, overrides)) == 0)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

static void test_boundary_timer_expires_override(void **state)
{
	struct fx *f = *state;
	seed(f->w, LIMIT);
	subscribe(f->w, "s3", "cb", "basic");

	int64_t expires = ent_time_now_ms() + 1500;
	struct ev_override o;
	mk_override(&o, "cb", "beta", expires);
	assert_int_equal(submit_wait(f->w, &o.ev, NULL), 0);

	struct ent_decision d;
	int64_t before = ent_time_now_ms();
	check_now(f->store, "cb", "beta", &d, NULL);
	if (before < expires - 200) /* only meaningful if we got here before the expiry */
		assert_true(d.allowed);

	/* The timer applies the expiry: the override is dropped from the tables. */
	assert_true(wait_no_overrides(f->store));
	assert_true(ent_time_now_ms() >= expires);
	check_now(f->store, "cb", "beta", &d, NULL);
	assert_false(d.allowed);

	struct ent_writer_stats st;
	ent_writer_get_stats(f->w, &st);
	assert_true(st.boundary_lag_ms >= 0);
	assert_true(st.next_boundary_at == 0 || st.next_boundary_at > expires);
}

static void test_boundary_passed_while_down_fires_at_start(void **state)
{
	struct fx *f = *state;
	seed(f->w, LIMIT);
	subscribe(f->w, "s4", "cd", "basic");
	ent_writer_stop(f->w);
	f->w = NULL;

	/* Write the override with the writer down, straight through the store. */
	int64_t now = ent_time_now_ms();
	struct ev_override o;
	mk_override(&o, "cd", "beta", now + 200);
	o.ev.at = now;
	struct ent_wtxn *txn;
	struct ent_arena arena;
	struct ent_apply_result res = {0};
	struct ent_err err = {0};
	ent_arena_init(&arena, 0);
	assert_int_equal(ent_store_wtxn_begin(f->store, &txn), 0);
	assert_int_equal(ent_store_apply(txn, (const void *)&o.ev, &arena, &res), 0);
	assert_int_equal(ent_store_wtxn_commit(txn, &err), 0);
	ent_arena_deinit(&arena);
	assert_int_equal(store_count(f->store, offsetof(struct ent_store_stats, overrides)), 1);

	while (ent_time_now_ms() <= now + 200)
		usleep(20 * 1000);
	f->w = start_writer(f->store, 0);
	assert_true(wait_no_overrides(f->store));
}

/*
 * A boundary shared by many customers is acted on in bounded transactions (pieces), so one
 * tick never holds the whole change as dirty pages: nine overrides expiring at one instant,
 * pieces of two entries, must take several commits and still leave nothing behind.
 */
static void test_boundary_tick_runs_in_pieces(void **state)
{
	struct fx *f = *state;
	seed(f->w, LIMIT);
	enum {
		CUSTOMERS = 9
	};
	char cust[CUSTOMERS][8], sub[CUSTOMERS][8];
	for (int i = 0; i < CUSTOMERS; i++) {
		snprintf(cust[i], sizeof(cust[i]), "cp%d", i);
		snprintf(sub[i], sizeof(sub[i]), "sp%d", i);
		subscribe(f->w, sub[i], cust[i], "basic");
	}
	ent_writer_stop(f->w);
	f->w = NULL;

	int64_t now = ent_time_now_ms();
	struct ent_arena arena;
	ent_arena_init(&arena, 0);
	struct ent_wtxn *txn;
	struct ent_err err = {0};
	assert_int_equal(ent_store_wtxn_begin(f->store, &txn), 0);
	for (int i = 0; i < CUSTOMERS; i++) {
		struct ev_override o;
		mk_override(&o, cust[i], "beta", now + 200);
		o.ev.at = now;
		struct ent_apply_result res = {0};
		assert_int_equal(ent_store_apply(txn, (const void *)&o.ev, &arena, &res), 0);
	}
	assert_int_equal(ent_store_wtxn_commit(txn, &err), 0);
	ent_arena_deinit(&arena);
	assert_int_equal(store_count(f->store, offsetof(struct ent_store_stats, overrides)),
			 CUSTOMERS);

	while (ent_time_now_ms() <= now + 200)
		usleep(20 * 1000);
	f->w = start_writer_piece(f->store, 0, 2);
	assert_true(wait_no_overrides(f->store));
	struct ent_writer_stats st;
	ent_writer_get_stats(f->w, &st);
	/* Nine whole-customer entries at least, two per transaction: five commits or more. */
	assert_true(st.commits >= (CUSTOMERS + 1) / 2);
	for (int i = 0; i < CUSTOMERS; i++) {
		struct ent_decision d;
		check_now(f->store, cust[i], "beta", &d, NULL);
		assert_false(d.allowed);
	}
}

/* Wait until the writer has committed nothing for a second (at most 30 s). */
static void wait_writer_quiet(struct ent_writer *w)
{
	struct ent_writer_stats st;
	ent_writer_get_stats(w, &st);
	uint64_t last = st.commits;
	for (int quiet = 0, i = 0; quiet < 20 && i < 600; i++) {
		usleep(50 * 1000);
		ent_writer_get_stats(w, &st);
		quiet = st.commits == last ? quiet + 1 : 0;
		last = st.commits;
	}
}

/*
 * The idempotency sweep cut into pieces goes on at once, not at the next boundary or hour:
 * ten expired keys, pieces of one entry (four keys), one boundary to start the tick. Once the
 * writer is idle the last key must be gone, i.e. reporting it again counts.
 */
static void test_idem_sweep_pieces_continue(void **state)
{
	struct fx *f = *state;
	ent_writer_stop(f->w);
	struct ent_writer_opts o = {.store = f->store, .idem_retention_ms = 1, .tick_piece = 1};
	assert_int_equal(ent_writer_start(&o, &f->w), 0);
	seed(f->w, LIMIT);
	subscribe(f->w, "si", "ci", "pro");
	char key[16];
	for (int i = 0; i < 10; i++) {
		struct ev_usage u;
		snprintf(key, sizeof(key), "k%d", i);
		mk_usage(&u, "ci", "api", 1, key);
		assert_int_equal(submit_wait(f->w, &u.ev, NULL), 0);
	}
	struct ev_override o2;
	mk_override(&o2, "ci", "beta", ent_time_now_ms() + 300);
	assert_int_equal(submit_wait(f->w, &o2.ev, NULL), 0);
	assert_true(wait_no_overrides(f->store));
	wait_writer_quiet(f->w);

	struct ev_usage again;
	mk_usage(&again, "ci", "api", 1, "k9");
	struct slot s;
	assert_int_equal(submit_wait(f->w, &again.ev, &s), 0);
	assert_false(s.duplicate);
}

/* ---- a full map ------------------------------------------------------------------------- */

static void test_map_full_fails_alone_and_keeps_going(void **state)
{
	char dir[64];
	strcpy(dir, "/tmp/ent_writer_XXXXXX");
	assert_non_null(mkdtemp(dir));
	struct ent_store_opts so = {.path = dir, .map_size = 512 * 1024};
	struct ent_store *store = NULL;
	struct ent_err err = {0};
	assert_int_equal(ent_store_open(&so, &store, &err), 0);
	struct ent_writer *w = start_writer(store, 0);
	seed(w, LIMIT);
	subscribe(w, "s1", "cust", "pro");

	/* ~4000 idempotency keys of 200 bytes cannot fit in a 512 KiB map. */
	enum {
		N = 4000
	};
	struct ev_usage *u = calloc(N, sizeof(*u));
	struct slot *s = calloc(N, sizeof(*s));
	struct counter c;
	counter_init(&c, N);
	struct gate g;
	gate_close(&g, w);
	struct ent_writer_stats st0, st1;
	ent_writer_get_stats(w, &st0);
	for (int i = 0; i < N; i++) {
		char key[256];
		snprintf(key, sizeof(key), "%0200d", i);
		mk_usage(&u[i], "cust", "api", 1, key);
		slot_prep(&s[i], &c, &u[i].ev);
		assert_int_equal(ent_writer_submit(w, &s[i].req), 0);
	}
	gate_open(&g);
	assert_true(counter_wait(&c));
	ent_writer_get_stats(w, &st1);

	int ok = 0, full = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&s[i].calls), 1);
		if (s[i].err == 0) {
			assert_true(s[i].seq > 0);
			ok++;
		} else {
			assert_int_equal(s[i].err, ENT_EFULL);
			assert_int_equal(s[i].seq, 0);
			full++;
		}
	}
	assert_true(ok > 0);
	assert_true(full > 0);
	assert_int_equal(st1.failed - st0.failed, (uint64_t)full);

	/* Exactly the acknowledged events were committed, and the writer still answers. */
	struct ent_decision d;
	check_now(store, "cust", "api", &d, NULL);
	assert_int_equal(d.used, ok);
	struct ev_feature f;
	mk_feature(&f, "late", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	int rc = submit_wait(w, &f.ev, NULL);
	assert_true(rc == 0 || rc == ENT_EFULL);

	ent_writer_stop(w);
	ent_store_close(store);
	rm_dir(dir);
	gate_destroy(&g);
	counter_deinit(&c);
	free(u);
	free(s);
}

/* ---- stop ------------------------------------------------------------------------------- */

struct stopper {
	uv_thread_t tid;
	struct ent_writer *w;
};

static void stopper_main(void *arg)
{
	struct stopper *s = arg;
	ent_writer_stop(s->w);
}

static void test_stop_drains_queue(void **state)
{
	struct fx *f = *state;
	seed(f->w, LIMIT);
	subscribe(f->w, "s1", "cust", "pro");

	enum {
		N = 3000,
		MAX_PROBES = 100000
	};
	struct ev_usage *u = calloc(N, sizeof(*u));
	struct slot *s = calloc(N, sizeof(*s));
	struct slot *probe = calloc(MAX_PROBES, sizeof(*probe));
	struct ev_usage *probe_ev = calloc(MAX_PROBES, sizeof(*probe_ev));
	struct counter c;
	counter_init(&c, N);

	struct gate g;
	gate_close(&g, f->w); /* the writer thread is now held inside the gate's callback */
	for (int i = 0; i < N; i++) {
		char key[32];
		snprintf(key, sizeof(key), "drain%d", i);
		mk_usage(&u[i], "cust", "api", 1, key);
		slot_prep(&s[i], &c, &u[i].ev);
		assert_int_equal(ent_writer_submit(f->w, &s[i].req), 0);
	}

	struct stopper st = {.w = f->w};
	assert_int_equal(uv_thread_create(&st.tid, stopper_main, &st), 0);
	/*
	 * Stop began once a submit is refused. Probes accepted before that are queued like any
	 * other request and must be answered too.
	 */
	int accepted = 0, rc = 0;
	while (accepted < MAX_PROBES) {
		char key[32];
		snprintf(key, sizeof(key), "probe%d", accepted);
		mk_usage(&probe_ev[accepted], "cust", "api", 1, key);
		slot_prep(&probe[accepted], &c, &probe_ev[accepted].ev);
		rc = ent_writer_submit(f->w, &probe[accepted].req);
		if (rc)
			break;
		uv_mutex_lock(&c.m);
		c.want++;
		uv_mutex_unlock(&c.m);
		accepted++;
		if (accepted % 64 == 0)
			usleep(1000);
	}
	assert_int_equal(rc, -ENT_EUNAVAIL);
	gate_open(&g);
	uv_thread_join(&st.tid); /* stop returns only after the queue was drained */
	f->w = NULL;

	uv_mutex_lock(&c.m);
	uint64_t done = c.done;
	uv_mutex_unlock(&c.m);
	assert_int_equal(done, (uint64_t)N + (uint64_t)accepted);
	for (int i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&s[i].calls), 1);
		assert_int_equal(s[i].err, 0);
	}
	for (int i = 0; i < accepted; i++) {
		assert_int_equal(atomic_load(&probe[i].calls), 1);
		assert_int_equal(probe[i].err, 0);
	}
	assert_int_equal(atomic_load(&probe[accepted].calls), 0);

	struct ent_decision d;
	check_now(f->store, "cust", "api", &d, NULL);
	assert_int_equal(d.used, N + accepted);

	gate_destroy(&g);
	counter_deinit(&c);
	free(u);
	free(s);
	free(probe);
	free(probe_ev);
}

/*
 * Usage batches weigh their records in a group: ten batches of 1000 records queued behind a
 * gate are committed in groups of at most 4 x max_group records (4000 with the default 1024):
 * 4 + 4 + 2 batches, three commits, where events alone would have made one. Every record is
 * counted once.
 */
static void test_usage_batches_weigh_their_records(void **state)
{
	struct fx *f = *state;
	seed(f->w, 100);
	subscribe(f->w, "s1", "cust", "pro");
	enum {
		BATCHES = 10,
		RECORDS = 1000
	};
	static Ent__V1__ReportUsageRequest recs[BATCHES * RECORDS];
	static Ent__V1__ReportUsageRequest *ptrs[BATCHES * RECORDS];
	static char keys[BATCHES * RECORDS][16];
	static Ent__V1__ReportUsageBatch pl[BATCHES];
	static Ent__V1__Event ev[BATCHES];
	static struct slot slots[BATCHES];
	for (int i = 0; i < BATCHES * RECORDS; i++) {
		ent__v1__report_usage_request__init(&recs[i]);
		snprintf(keys[i], sizeof(keys[i]), "w%d", i);
		recs[i].customer_id = "cust";
		recs[i].feature_code = "api";
		recs[i].quantity = 1;
		recs[i].idempotency_key = keys[i];
		ptrs[i] = &recs[i];
	}
	struct counter c;
	counter_init(&c, BATCHES);
	struct gate g;
	gate_close(&g, f->w);
	struct ent_writer_stats st0, st1;
	ent_writer_get_stats(f->w, &st0);
	for (int b = 0; b < BATCHES; b++) {
		ent__v1__report_usage_batch__init(&pl[b]);
		pl[b].n_records = RECORDS;
		pl[b].records = ptrs + b * RECORDS;
		ent__v1__event__init(&ev[b]);
		ev[b].kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE_BATCH;
		ev[b].report_usage_batch = &pl[b];
		slot_prep(&slots[b], &c, &ev[b]);
		assert_int_equal(ent_writer_submit(f->w, &slots[b].req), 0);
	}
	gate_open(&g);
	assert_true(counter_wait(&c));
	ent_writer_get_stats(f->w, &st1);
	for (int b = 0; b < BATCHES; b++)
		assert_int_equal(slots[b].err, 0);
	assert_int_equal(st1.commits - st0.commits, 3);
	struct ent_decision d;
	check_now(f->store, "cust", "api", &d, NULL);
	assert_int_equal(d.used, BATCHES * RECORDS);
	counter_deinit(&c);
	gate_destroy(&g);
}

static void test_start_rejects_bad_opts(void **state)
{
	struct ent_writer *w = NULL;
	struct ent_writer_opts o = {0};
	assert_int_equal(ent_writer_start(&o, &w), -ENT_EINVAL);
	assert_null(w);
}

/* ---- fleet mode: the writer applies a stream at its sequences ------------------------- */

/*
 * A fake stream for the fleet hooks: publish packs the event and feeds it back at the next
 * sequence (starting at 100, so stream sequences are told apart from local counts), with the
 * request's local id; claim hands the request back once. Single-threaded test side.
 */
struct fake_msg {
	struct ent_writer_msg m;
	uint8_t *buf;
};

struct fake_stream {
	struct ent_writer *w;
	uint64_t next_seq;
	struct ent_writer_req *pending[16];
	atomic_int released;
	atomic_int claimed;
};

static void fake_release(struct ent_writer_msg *m)
{
	struct fake_msg *f = (struct fake_msg *)m;
	free(f->buf);
	free(f);
}

static void fake_feed(struct fake_stream *fs, uint64_t seq, const uint8_t *data, size_t len,
		      uint64_t local_id)
{
	struct fake_msg *f = calloc(1, sizeof(*f));
	f->buf = malloc(len ? len : 1);
	memcpy(f->buf, data, len);
	f->m.seq = seq;
	f->m.data = f->buf;
	f->m.len = len;
	f->m.local_id = local_id;
	f->m.release = fake_release;
	assert_int_equal(ent_writer_feed(fs->w, &f->m), 0);
}

static int fake_publish(void *ctx, struct ent_writer_req *req, const Ent__V1__Event *in)
{
	struct fake_stream *fs = ctx;
	Ent__V1__Event ev = *in;
	if (!ev.at)
		ev.at = ent_time_now_ms();
	size_t n = ent__v1__event__get_packed_size(&ev);
	uint8_t *b = malloc(n ? n : 1);
	ent__v1__event__pack(&ev, b);
	uint64_t id = fs->next_seq % 16 + 1;
	fs->pending[id - 1] = req;
	fake_feed(fs, fs->next_seq++, b, n, id);
	free(b);
	return 0;
}

static struct ent_writer_req *fake_claim(void *ctx, uint64_t id)
{
	struct fake_stream *fs = ctx;
	struct ent_writer_req *r = fs->pending[id - 1];
	fs->pending[id - 1] = NULL;
	if (r)
		atomic_fetch_add(&fs->claimed, 1);
	return r;
}

static void test_fleet_applies_stream_sequences(void **state)
{
	struct fx *f = *state;
	ent_writer_stop(f->w); /* the fixture's embedded writer: replaced by a fleet one */
	struct fake_stream fs = {.next_seq = 100};
	struct ent_writer_fleet hooks = {
		.ctx = &fs, .publish = fake_publish, .claim = fake_claim, .identity = "TEST/42"};
	struct ent_writer_opts o = {.store = f->store, .fleet = &hooks};
	assert_int_equal(ent_writer_start(&o, &f->w), 0);
	fs.w = f->w;

	/* A write is published, applied at its stream sequence, and answered by the apply. */
	struct ev_feature e;
	mk_feature(&e, "api", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	struct slot sl;
	assert_int_equal(submit_wait(f->w, &e.ev, &sl), 0);
	assert_int_equal(sl.seq, 100);
	assert_int_equal(atomic_load(&fs.claimed), 1);
	assert_int_equal(ent_writer_seq(f->w), 100);

	/* A redelivery of 100 and an undecodable 101: skipped, the position moves past 101. */
	uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
	Ent__V1__Event again = e.ev;
	again.at = 1;
	size_t n = ent__v1__event__get_packed_size(&again);
	uint8_t *b = malloc(n);
	ent__v1__event__pack(&again, b);
	fake_feed(&fs, 100, b, n, 0);
	free(b);
	fake_feed(&fs, 101, junk, sizeof(junk), 0);
	fs.next_seq = 102;
	/* The next write lands at 102: everything before it was applied (or skipped) in order. */
	struct ev_feature e2;
	mk_feature(&e2, "sso", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	assert_int_equal(submit_wait(f->w, &e2.ev, &sl), 0);
	assert_int_equal(sl.seq, 102);
	assert_int_equal(ent_writer_skipped(f->w), 1);

	/* The sequence and the identity were committed with the data. */
	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->store, &st), 0);
	assert_int_equal(st.seq, 102);
	assert_int_equal(st.features, 2);
	char id[64];
	assert_int_equal(ent_store_get_meta(f->store, "fleet_stream", id, sizeof(id)), 0);
	assert_string_equal(id, "TEST/42");

	/* A transaction request (Import) is refused in fleet mode. */
	struct ent_writer_txn_req t;
	memset(&t, 0, sizeof(t));
	struct counter c;
	counter_init(&c, 1);
	struct slot ts;
	slot_prep(&ts, &c, NULL);
	t.req = ts.req;
	t.fn = NULL;
	assert_int_equal(ent_writer_submit_txn(f->w, &t), 0);
	assert_true(counter_wait(&c));
	assert_int_equal(ts.err, ENT_EPRECOND);
}

/*
 * Stream messages are applied straight into the group's transaction and a failing one makes
 * the group run again with it nested: the result must be what a nested apply of every message
 * gives. One group of 41 messages (held together behind a claim that blocks), every fourth one
 * invalid - more failures than the reruns allowed, so the "nested from here on" fallback runs
 * too: the good ones are all applied, the bad ones leave nothing, the position is the last
 * message's, and it took exactly one commit.
 */
struct gated_stream {
	struct fake_stream fs;
	uv_sem_t entered, release;
};

static struct ent_writer_req *gated_claim(void *ctx, uint64_t id)
{
	struct gated_stream *g = ctx;
	if (id == 99) {
		uv_sem_post(&g->entered);
		uv_sem_wait(&g->release);
		return NULL;
	}
	return fake_claim(&g->fs, id);
}

static void feed_event(struct fake_stream *fs, uint64_t seq, const Ent__V1__Event *ev,
		       uint64_t local_id)
{
	size_t n = ent__v1__event__get_packed_size(ev);
	uint8_t *b = malloc(n ? n : 1);
	ent__v1__event__pack(ev, b);
	fake_feed(fs, seq, b, n, local_id);
	free(b);
}

static void test_fleet_failing_messages_fail_alone(void **state)
{
	struct fx *f = *state;
	ent_writer_stop(f->w);
	struct gated_stream g = {.fs = {.next_seq = 100}};
	uv_sem_init(&g.entered, 0);
	uv_sem_init(&g.release, 0);
	struct ent_writer_fleet hooks = {.ctx = &g, .publish = fake_publish, .claim = gated_claim};
	struct ent_writer_opts o = {.store = f->store, .fleet = &hooks};
	assert_int_equal(ent_writer_start(&o, &f->w), 0);
	g.fs.w = f->w;

	struct ev_feature gate;
	mk_feature(&gate, "gate", ENT__V1__FEATURE_TYPE__FEATURE_TYPE_BOOLEAN);
	gate.ev.at = 1000;
	feed_event(&g.fs, 100, &gate.ev, 99);
	uv_sem_wait(&g.entered); /* the writer holds in the claim of 100, after its commit */
	struct ent_writer_stats st0, st1;
	ent_writer_get_stats(f->w, &st0);

	enum {
		N = 41
	};
	int good = 0;
	for (int i = 0; i < N; i++) {
		char code[16];
		snprintf(code, sizeof(code), "f%d", i);
		if (i % 4 == 1) {
			struct ev_usage u;
			mk_usage(&u, "cust", "gate", 0, ""); /* quantity 0, no key: invalid */
			u.ev.at = 1000;
			feed_event(&g.fs, 101 + i, &u.ev, 0);
		} else {
			struct ev_feature e;
			mk_feature(&e, code, ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
			e.ev.at = 1000;
			feed_event(&g.fs, 101 + i, &e.ev, 0);
			good++;
		}
	}
	uv_sem_post(&g.release);
	for (int i = 0; i < 10000 && ent_writer_seq(f->w) < 100 + N; i++)
		usleep(1000);
	assert_int_equal(ent_writer_seq(f->w), 100 + N);
	ent_writer_get_stats(f->w, &st1);
	assert_int_equal(st1.commits - st0.commits, 1);

	struct ent_store_stats st;
	assert_int_equal(ent_store_stats(f->store, &st), 0);
	assert_int_equal(st.seq, 100 + N);
	assert_int_equal(st.features, 1 + good);
	assert_int_equal(ent_writer_skipped(f->w), 0);
	ent_writer_stop(f->w);
	f->w = NULL;
	uv_sem_destroy(&g.entered);
	uv_sem_destroy(&g.release);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_rejects_bad_opts),
		cmocka_unit_test_setup_teardown(test_fleet_applies_stream_sequences, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fleet_failing_messages_fail_alone, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_submitters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_event_fails_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn_request_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consume_never_exceeds_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boundary_timer_expires_override, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_boundary_tick_runs_in_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idem_sweep_pieces_continue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boundary_passed_while_down_fires_at_start,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_drains_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_batches_weigh_their_records, setup,
						teardown),
		cmocka_unit_test(test_map_full_fails_alone_and_keeps_going),
	};
	ent_log_setup(ENT_LOG_WARN, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
