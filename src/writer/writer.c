/*
 * The writer: one libuv loop thread that owns every LMDB write transaction.
 *
 * Other threads only push requests onto a mutex-guarded FIFO and wake the loop with
 * uv_async_send. The loop takes the whole queue at once and applies it in groups of at most
 * max_group events, one write transaction per group, committed durably before any caller of
 * the group is answered. A uv_timer fires at the next boundary of the store's index (override
 * expiry or activation, period end) and at least hourly, and applies a Tick event.
 * docs/writer.md tells the whole story (ordering, failure isolation, disk full).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <uv.h>

#include "ent/pbarena.h"
#include "ent/store.h"
#include "ent/util.h"
#include "ent/v1/event.pb-c.h"
#include "ent/writer.h"

/** Idempotency keys are pruned by a tick at least this often, boundary or not. */
#define TICK_EVERY_MS (60 * 60 * 1000)
/** Retry delay when a boundary survived the tick that should have cleared it. */
#define STUCK_RETRY_MS		  1000
#define DEFAULT_MAX_GROUP	  1024
#define DEFAULT_IDEM_RETENTION_MS (7LL * 24 * 60 * 60 * 1000)

/** Usage records per group at most, per max_group: 4096 by default (docs/writer.md). */
#define GROUP_RECORDS 4
/*
 * Boundary entries one tick transaction acts on at most. A transaction keeps its dirty pages
 * on the heap (LMDB allows up to 131,071 of them, 512 MB), and a boundary shared by a million
 * customers would dirty most of the map in one go; a piece of 1024 recomputes stays at a few
 * MB, and the queue's requests run between two pieces.
 */
#define DEFAULT_TICK_PIECE 1024
/*
 * Fleet mode: a stream group takes max_group messages, and more while they are small: up to
 * STREAM_GROUP_FACTOR x max_group messages holding STREAM_GROUP_BYTES x max_group bytes in
 * all (a ReportUsage message is about 80 bytes, so 4096 of them by default; a few large usage
 * batches stop it early). A replica catching up spends most of its commit writing the same
 * pages again (the usage rows of the same customers); four times the messages per commit
 * write them once. Only a backlog makes groups this large: a replica that keeps up applies
 * what arrived, as before.
 */
#define STREAM_GROUP_FACTOR 4
#define STREAM_GROUP_BYTES  384
/* Fleet mode: stream messages queued before the consumer's thread is made to wait. */
#define FEED_MAX 65536
/* Fleet mode: retry delay when a transaction could not be begun or committed. */
#define FEED_RETRY_MS 1000

/* A request refused after ent_writer_submit returned 0 (fleet mode), answered by the loop. */
struct fail_item {
	struct fail_item *next;
	struct ent_writer_req *req;
	struct ent_err err;
};

/*
 * Invariants:
 * - qhead/qtail/stopping are only touched with qlock held. A submitter that finds the queue
 *   empty calls uv_async_send(&work) while still holding qlock; once stopping is set nobody
 *   sends any more, so the loop may close the handles after draining under qlock.
 * - Everything below "loop thread only" is touched by the loop thread alone (and by
 *   ent_writer_start/stop before the thread starts and after it was joined).
 * - The atomics are written by the loop thread and read by anyone (stats, seq).
 */
struct ent_writer {
	struct ent_store *store;
	size_t max_group;
	int nice;	     /**< writer.nice, applied by the thread itself */
	size_t stream_group; /**< fleet mode: messages per stream group at most */
	int64_t idem_retention_ms;

	uv_mutex_t qlock;
	struct ent_writer_req *qhead, *qtail;
	bool stopping;
	/* fleet mode, under qlock: stream messages in order, refused requests */
	const struct ent_writer_fleet *fleet; /**< set at start, never changed */
	struct ent_writer_msg *fhead, *ftail;
	uint64_t fcount;
	uv_cond_t fcond; /**< "the feed queue was taken" (back-pressure) */
	struct fail_item *failhead;

	uv_thread_t thread;
	uv_loop_t loop;
	uv_async_t work; /**< "requests queued" */
	uv_async_t stop; /**< "stop began: drain and close" */
	uv_timer_t timer;

	/* loop thread only */
	struct ent_arena arena;		  /**< results' objects; reset after each group's answers */
	struct ent_apply_result *results; /**< stream_group entries, one per request of a group */
	struct ent_writer_req **group;	  /**< stream_group entries: the group being applied */
	int64_t armed_boundary;		  /**< boundary the timer waits for, 0: hourly tick only */
	int64_t last_tick;  /**< when the last tick ran (start time before the first) */
	Ent__V1__Tick tick; /**< the tick event, reused */
	bool tick_more;	    /**< the last tick piece stopped with entries still due */
	Ent__V1__Event tick_ev;
	struct ent_writer_req tick_req;
	uint64_t full_refused;	      /**< events answered ENT_EFULL since the last log line */
	int64_t full_logged_at;	      /**< when that line was last written */
	bool tick_inflight;	      /**< fleet mode: our tick is published, not applied yet */
	struct ent_writer_msg **msgs; /**< stream_group entries: the stream group being applied */
	uint8_t *nested;	      /**< stream_group entries: message i is applied nested */
	uv_timer_t retry;	      /**< fleet mode: apply the feed again after a failure */
	int64_t stall_logged_at;

	/*
	 * Parked waits for a sequence (ent_writer_wait): the list, its length and the closed flag
	 * are under wlock; waiting mirrors the length so that a commit with nobody waiting (the
	 * rule) tests one atomic and takes no lock. A parker increments waiting before it reads
	 * seq, a commit stores seq before it reads waiting, both sequentially consistent: either
	 * the parker sees the new seq (and does not park) or the commit sees the parker.
	 */
	uv_mutex_t wlock;
	struct ent_writer_wait *waits;
	size_t n_waits;
	bool waits_closed;
	uv_async_t wait_wake;  /**< "a wait was parked": (re)arm wait_timer */
	uv_timer_t wait_timer; /**< the earliest deadline of a parked wait */
	_Atomic size_t waiting;

	_Atomic uint64_t seq;
	_Atomic uint64_t feed_depth, skipped;
	_Atomic uint64_t commits, events, failed, queue_depth;
	_Atomic uint64_t last_commit_us;
	_Atomic int64_t next_boundary_at;
	_Atomic int64_t boundary_lag_ms;
};

/* ---- answering ------------------------------------------------------------------------ */

/*
 * Answer reqs[0..n) with their results and forget the arena. Called only once the group's fate
 * is sealed (committed, or known not to be), so an acknowledged event is a durable one.
 * A request may be freed by its own callback: read it before calling.
 */
static void answer(struct ent_writer *w, struct ent_writer_req **reqs, struct ent_apply_result *res,
		   size_t n)
{
	uint64_t failed = 0;
	for (size_t i = 0; i < n; i++) {
		if (res[i].err.code)
			failed++;
	}
	atomic_fetch_add_explicit(&w->events, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->failed, failed, memory_order_relaxed);
	for (size_t i = 0; i < n; i++) {
		struct ent_writer_req *r = reqs[i];
		ent_writer_done_cb cb = r->cb;
		void *ctx = r->ctx;
		r->next = NULL;
		if (cb)
			cb(ctx, &res[i]);
	}
	ent_arena_reset(&w->arena);
}

/* Turn the result of an event that will not be committed into the group's error. */
static void fail_result(struct ent_apply_result *res, const struct ent_err *err)
{
	if (res->err.code)
		return; /* it failed on its own: its own reason is the more useful one */
	memset(res, 0, sizeof(*res));
	res->err = *err;
}

/* ---- waits for a sequence --------------------------------------------------------------- */

/*
 * Take the parked waits that are due out of the list and run their callbacks (outside the
 * lock: a callback hands its call back to an rpc worker). Due: all of them when \a stopping;
 * else those whose sequence is applied, and those whose deadline is at or before \a now_ns
 * (0: deadlines are not looked at).
 */
static void release_waits(struct ent_writer *w, int64_t now_ns, bool stopping)
{
	uint64_t applied = atomic_load_explicit(&w->seq, memory_order_seq_cst);
	struct ent_writer_wait *due = NULL, **pp;
	size_t k = 0;
	uv_mutex_lock(&w->wlock);
	if (stopping)
		w->waits_closed = true;
	pp = &w->waits;
	while (*pp) {
		struct ent_writer_wait *wt = *pp;
		int end;
		if (stopping)
			end = ENT_WAIT_STOPPING;
		else if (wt->seq <= applied)
			end = ENT_WAIT_APPLIED;
		else if (now_ns && wt->deadline_ns <= now_ns)
			end = ENT_WAIT_TIMEOUT;
		else {
			pp = &wt->next;
			continue;
		}
		*pp = wt->next;
		wt->next = due;
		wt->end = end;
		due = wt;
		k++;
	}
	w->n_waits -= k;
	atomic_fetch_sub_explicit(&w->waiting, k, memory_order_seq_cst);
	uv_mutex_unlock(&w->wlock);
	while (due) {
		struct ent_writer_wait *next = due->next;
		due->next = NULL;
		due->cb(due, due->end, applied);
		due = next;
	}
}

/* A commit made \a seq the applied sequence: publish it, and release the waits it satisfies. */
static void set_applied(struct ent_writer *w, uint64_t seq)
{
	atomic_store_explicit(&w->seq, seq, memory_order_seq_cst);
	if (atomic_load_explicit(&w->waiting, memory_order_seq_cst))
		release_waits(w, 0, false);
}

static void on_wait_timer(uv_timer_t *t);

/* Loop thread: arm the wait timer for the earliest deadline of the parked waits. */
static void arm_wait_timer(struct ent_writer *w)
{
	int64_t first = 0;
	uv_mutex_lock(&w->wlock);
	for (struct ent_writer_wait *wt = w->waits; wt; wt = wt->next)
		if (!first || wt->deadline_ns < first)
			first = wt->deadline_ns;
	uv_mutex_unlock(&w->wlock);
	if (!first) {
		uv_timer_stop(&w->wait_timer);
		return;
	}
	int64_t now = ent_time_mono_ns();
	/* Rounded up: a timer that fires a little early would find nothing due and spin. */
	uint64_t ms = first > now ? (uint64_t)((first - now + 999999) / 1000000) : 0;
	uv_update_time(&w->loop);
	uv_timer_start(&w->wait_timer, on_wait_timer, ms, 0);
}

static void on_wait_timer(uv_timer_t *t)
{
	struct ent_writer *w = t->data;
	release_waits(w, ent_time_mono_ns(), false);
	arm_wait_timer(w);
}

static void on_wait_wake(uv_async_t *h)
{
	arm_wait_timer(h->data);
}

int ent_writer_wait(struct ent_writer *w, struct ent_writer_wait *wt, size_t max)
{
	uv_mutex_lock(&w->wlock);
	if (w->waits_closed) {
		uv_mutex_unlock(&w->wlock);
		return -ENT_EUNAVAIL;
	}
	if (w->n_waits >= max) {
		uv_mutex_unlock(&w->wlock);
		return -ENT_EFULL;
	}
	wt->next = w->waits;
	w->waits = wt;
	w->n_waits++;
	atomic_fetch_add_explicit(&w->waiting, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&w->seq, memory_order_seq_cst) >= wt->seq) {
		/* Applied meanwhile (the commit may not have seen us): not parked after all. */
		w->waits = wt->next;
		w->n_waits--;
		atomic_fetch_sub_explicit(&w->waiting, 1, memory_order_seq_cst);
		uv_mutex_unlock(&w->wlock);
		wt->next = NULL;
		return 1;
	}
	/* Under the lock, like enqueue: the handle is closed only once waits_closed is set. */
	uv_async_send(&w->wait_wake);
	uv_mutex_unlock(&w->wlock);
	return 0;
}

void ent_writer_wait_close(struct ent_writer *w)
{
	if (w)
		release_waits(w, 0, true);
}

size_t ent_writer_waiting(const struct ent_writer *w)
{
	return atomic_load_explicit(&w->waiting, memory_order_relaxed);
}

/* ---- group commit --------------------------------------------------------------------- */

/*
 * Events are applied straight into the group's transaction (ent_store_apply_direct: no nested
 * transaction per event, which cost a child transaction with a 2 MB dirty list and a copy of
 * every page the group had dirtied already). An event that fails that way may have left
 * partial writes, so the transaction is aborted and the group applied again from its start,
 * that event now nested (ent_store_apply: it fails alone, as before); apply is deterministic, so
 * the events before it succeed again with the same writes. After MAX_RERUNS such runs of one group,
 * every event from the failing one on is applied nested, so a group full of failing events costs at
 * most MAX_RERUNS + 2 runs, never one per event.
 */
#define MAX_RERUNS 3

static void mark_nested(struct ent_writer *w, size_t i, size_t n, unsigned reruns)
{
	if (reruns <= MAX_RERUNS)
		w->nested[i] = 1;
	else
		memset(w->nested + i, 1, n - i);
}

/*
 * Try to apply reqs[0..n) in one transaction. Returns n once every request was answered.
 * Returns k < n when the map ran out of space and a shorter group may fit: nothing was
 * answered, the transaction was aborted, and the caller retries reqs[0..k). k is the index of
 * the event whose ent_store_apply hit -ENT_EFULL (0: that event was first and does not fit alone),
 * or n / 2 when the commit itself hit it.
 */
static size_t try_group(struct ent_writer *w, struct ent_writer_req **reqs, size_t n)
{
	struct ent_apply_result *res = w->results;
	struct ent_err err = {0};
	struct ent_wtxn *txn;
	/* Stamped once: a re-run of the group applies the same instants. */
	int64_t now = ent_time_now_ms();
	unsigned reruns = 0;
	memset(w->nested, 0, n);

again:;
	bool seq_pending = false; /* a direct apply moved the sequence: write meta "seq" */
	int rc = ent_store_wtxn_begin(w->store, &txn);
	if (rc) {
		ent_err_set(&err, -rc, "write transaction: %s", ent_err_strerror(rc));
		for (size_t i = 0; i < n; i++) {
			memset(&res[i], 0, sizeof(res[i]));
			res[i].err = err;
		}
		ent_log(ENT_LOG_ERROR, "writer: cannot begin a transaction", "err", err.msg, NULL);
		answer(w, reqs, res, n);
		return n;
	}

	/*
	 * The submitter's Event is const and may be read by it concurrently (e.g. to build the
	 * response), so the time stamp goes on a shallow copy: only the top-level `at` differs,
	 * the payload pointers are shared and only read by ent_store_apply.
	 */
	for (size_t i = 0; i < n; i++) {
		Ent__V1__Event ev = *reqs[i]->event;
		if (ev.at == 0)
			ev.at = now;
		memset(&res[i], 0, sizeof(res[i]));
		if (!w->nested[i]) {
			rc = ent_store_apply_direct(txn, &ev, &w->arena, &res[i]);
			if (rc == -ENT_EFULL) {
				ent_store_wtxn_abort(txn);
				ent_arena_reset(&w->arena);
				return i;
			}
			if (rc || res[i].err.code) {
				ent_store_wtxn_abort(txn);
				ent_arena_reset(&w->arena);
				mark_nested(w, i, n, ++reruns);
				goto again;
			}
			seq_pending = true;
			continue;
		}
		rc = ent_store_apply(txn, &ev, &w->arena, &res[i]);
		if (rc == -ENT_EFULL) {
			ent_store_wtxn_abort(txn);
			ent_arena_reset(&w->arena);
			return i;
		}
		if (rc && !res[i].err.code)
			ent_err_set(&res[i].err, -rc, "%s", ent_err_strerror(rc));
		if (res[i].err.code)
			res[i].seq = 0;
	}

	uint64_t seq = ent_store_wtxn_seq(txn);
	if (seq_pending && (rc = ent_store_wtxn_set_seq(txn, seq)) != 0) {
		/* Counts as the commit failing: nothing of the group is written. */
		ent_store_wtxn_abort(txn);
	} else {
		uint64_t t0 = uv_hrtime();
		rc = ent_store_wtxn_commit(txn, &err);
		atomic_store_explicit(&w->last_commit_us, (uv_hrtime() - t0) / 1000,
				      memory_order_relaxed);
	}
	if (rc == -ENT_EFULL && n > 1) {
		/* The pages LMDB needs at commit did not fit: half as many events may. */
		ent_arena_reset(&w->arena);
		return n / 2;
	}
	if (rc) {
		/* Nothing of the group reached the disk: every event is answered so. */
		if (!err.code)
			ent_err_set(&err, -rc, "commit: %s", ent_err_strerror(rc));
		for (size_t i = 0; i < n; i++)
			fail_result(&res[i], &err);
		if (rc == -ENT_EFULL)
			w->full_refused += n;
		else
			ent_log(ENT_LOG_ERROR, "writer: commit failed", "err", err.msg, NULL);
	} else {
		set_applied(w, seq);
		atomic_fetch_add_explicit(&w->commits, 1, memory_order_relaxed);
	}
	answer(w, reqs, res, n);
	return n;
}

/*
 * Apply reqs[0..n) in as few transactions as fit. When the map runs out of space, the group is
 * cut before the event that did not fit (or halved, if the commit did not fit) and retried; an
 * event that does not fit as the first of a transaction is answered -ENT_EFULL alone. So one
 * oversized change fails by itself and everything around it still commits if it fits. The
 * group size only grows back (doubling) after a success, so a map that stays full costs one
 * short attempt per event, never a loop.
 */
static void run_group(struct ent_writer *w, struct ent_writer_req **reqs, size_t n)
{
	size_t start = 0, cap = n;
	while (start < n) {
		size_t m = n - start < cap ? n - start : cap;
		size_t k = try_group(w, reqs + start, m);
		if (k == m) {
			start += m;
			cap = cap > n / 2 ? n : cap * 2;
		} else if (k == 0) {
			struct ent_apply_result *res = w->results;
			memset(res, 0, sizeof(*res));
			ent_err_set(&res->err, ENT_EFULL, "%s",
				    ent_store_full_is_disk()
					    ? "database full: no space left on the disk"
					    : "database full: the change does not fit in the map");
			answer(w, reqs + start, res, 1);
			start += 1;
			w->full_refused++;
		} else {
			cap = k;
		}
	}
	/* A full map refuses every event: one line a second, with the count, not one each. */
	int64_t now = ent_time_now_ms();
	if (w->full_refused && now - w->full_logged_at >= 1000) {
		char buf[24];
		snprintf(buf, sizeof(buf), "%" PRIu64, w->full_refused);
		if (ent_store_full_is_disk())
			ent_log(ENT_LOG_WARN,
				"writer: events refused, the disk is full (no space left for "
				"the database file; free disk space)",
				"events", buf, NULL);
		else
			ent_log(ENT_LOG_WARN,
				"writer: events refused, the database map is full (raise "
				"db.map_size)",
				"events", buf, NULL);
		w->full_refused = 0;
		w->full_logged_at = now;
	}
}

/*
 * Run one transaction request: its function applies what it likes in a transaction of its own,
 * which commits only if the function succeeded, and the caller is answered after the commit.
 */
/*
 * A transaction request (Import) may have grown the writer's arena to a multiple of its
 * document; an arena keeps its blocks for reuse, and glibc keeps freed heap, so a 45 MB import
 * kept 1.49 GB after it was done. Both are given back after each one: transaction requests are
 * rare, and the next event group builds a small arena again.
 */
static void release_after_txn(struct ent_writer *w)
{
	ent_arena_deinit(&w->arena);
	ent_arena_init(&w->arena, 0);
	malloc_trim(0);
}

static void run_txn(struct ent_writer *w, struct ent_writer_req *r)
{
	struct ent_writer_txn_req *t = (struct ent_writer_txn_req *)r;
	struct ent_apply_result *res = w->results;
	struct ent_wtxn *txn;
	memset(res, 0, sizeof(*res));
	int rc = ent_store_wtxn_begin(w->store, &txn);
	if (rc) {
		ent_err_set(&res->err, -rc, "write transaction: %s", ent_err_strerror(rc));
		answer(w, &r, res, 1);
		return;
	}
	rc = t->fn(r->ctx, txn, &w->arena, res);
	if (rc < 0) {
		ent_store_wtxn_abort(txn);
		if (!res->err.code)
			ent_err_set(&res->err, -rc, "%s", ent_err_strerror(rc));
		res->seq = 0;
		answer(w, &r, res, 1);
		release_after_txn(w);
		return;
	}
	uint64_t seq = ent_store_wtxn_seq(txn);
	uint64_t t0 = uv_hrtime();
	rc = ent_store_wtxn_commit(txn, &res->err);
	atomic_store_explicit(&w->last_commit_us, (uv_hrtime() - t0) / 1000, memory_order_relaxed);
	if (rc) {
		if (!res->err.code)
			ent_err_set(&res->err, -rc, "commit: %s", ent_err_strerror(rc));
		res->seq = 0;
	} else {
		res->seq = seq;
		set_applied(w, seq);
		atomic_fetch_add_explicit(&w->commits, 1, memory_order_relaxed);
	}
	answer(w, &r, res, 1);
	release_after_txn(w);
}

static void arm_timer(struct ent_writer *w);

/* ---- fleet mode: the stream ------------------------------------------------------------ */

/*
 * Apply msgs[0..n) in one transaction, in stream order, each at its stream sequence, so the
 * position moves on with the data in the same transaction (a crash neither loses nor repeats
 * a message). A message that fails to apply fails identically on every replica (apply is
 * deterministic), and its error is the answer its publisher gets.
 *
 * Messages are applied directly, as in try_group (mark_nested above), with meta "seq" written
 * once before the commit; a message applied nested after a failed direct run gets meta "seq"
 * set to seq - 1 before it (so ent_store_apply writes seq) and to seq after it fails. A message
 * that cannot be decoded is skipped the same way in both (meta "seq" set to its sequence).
 *
 * Returns n once all were applied and answered; k < n when the map is full (nothing was
 * written; retry msgs[0..k), k may be 0); or 0 with *stuck set when the transaction failed
 * otherwise (retry later).
 */
static size_t try_stream(struct ent_writer *w, struct ent_writer_msg **msgs, size_t n, bool *stuck)
{
	struct ent_apply_result *res = w->results;
	struct ent_writer_req **reqs = w->group;
	struct ent_wtxn *txn;
	struct ent_err err = {0};
	ProtobufCAllocator alloc;
	ent_pb_allocator(&alloc, &w->arena);
	unsigned reruns = 0;
	memset(w->nested, 0, n);

again:
	*stuck = false;
	bool seq_pending = false; /* a direct apply moved the sequence: write meta "seq" */
	int rc = ent_store_wtxn_begin(w->store, &txn);
	if (rc) {
		ent_log(ENT_LOG_ERROR, "fleet: cannot begin a transaction", "err",
			ent_err_strerror(rc), NULL);
		*stuck = true;
		return 0;
	}
	uint64_t skipped = 0;
	for (size_t i = 0; i < n; i++) {
		struct ent_writer_msg *m = msgs[i];
		memset(&res[i], 0, sizeof(res[i]));
		reqs[i] = NULL;
		if (m->seq <= ent_store_wtxn_seq(txn)) {
			/* A redelivery (consumer reset, restart): applied already. */
			ent_err_set(&res[i].err, ENT_EINVAL, "redelivered message");
			continue;
		}
		Ent__V1__Event *ev = ent__v1__event__unpack(&alloc, m->len, m->data);
		if (!ev) {
			/* The documented rule (docs/fleet.md): skipped by every replica alike. */
			char seq[24];
			snprintf(seq, sizeof(seq), "%" PRIu64, m->seq);
			ent_log(ENT_LOG_WARN, "fleet: undecodable message skipped", "stream_seq",
				seq, NULL);
			ent_err_set(&res[i].err, ENT_EINVAL, "event: undecodable message");
			skipped++;
			if ((rc = ent_store_wtxn_set_seq(txn, m->seq)))
				goto abort;
			continue;
		}
		if (!w->nested[i]) {
			ent_store_wtxn_expect_seq(txn, m->seq - 1);
			rc = ent_store_apply_direct(txn, ev, &w->arena, &res[i]);
			if (rc == -ENT_EFULL)
				goto abort;
			if (rc || res[i].err.code) {
				ent_store_wtxn_abort(txn);
				ent_arena_reset(&w->arena);
				mark_nested(w, i, n, ++reruns);
				goto again;
			}
			seq_pending = true;
			continue;
		}
		if ((rc = ent_store_wtxn_set_seq(txn, m->seq - 1)))
			goto abort;
		rc = ent_store_apply(txn, ev, &w->arena, &res[i]);
		if (rc == -ENT_EFULL)
			goto abort;
		if (rc && !res[i].err.code)
			ent_err_set(&res[i].err, -rc, "%s", ent_err_strerror(rc));
		if (res[i].err.code) {
			res[i].seq = 0;
			if ((rc = ent_store_wtxn_set_seq(txn, m->seq)))
				goto abort;
		}
	}
	if (seq_pending && (rc = ent_store_wtxn_set_seq(txn, ent_store_wtxn_seq(txn))))
		goto abort;
	if (w->fleet->identity &&
	    (rc = ent_store_wtxn_put_meta(txn, "fleet_stream", w->fleet->identity)))
		goto abort;
	uint64_t seq = ent_store_wtxn_seq(txn);
	uint64_t t0 = uv_hrtime();
	rc = ent_store_wtxn_commit(txn, &err);
	atomic_store_explicit(&w->last_commit_us, (uv_hrtime() - t0) / 1000, memory_order_relaxed);
	if (rc) {
		ent_arena_reset(&w->arena);
		if (rc == -ENT_EFULL && n > 1)
			return n / 2;
		if (rc != -ENT_EFULL)
			ent_log(ENT_LOG_ERROR, "fleet: commit failed", "err", err.msg, NULL);
		*stuck = rc != -ENT_EFULL;
		return 0;
	}
	set_applied(w, seq);
	atomic_fetch_add_explicit(&w->commits, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->skipped, skipped, memory_order_relaxed);
	/* Durable (and in the stream): now the waiting publishers of this node learn their result.
	 */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i]->local_id &&
		    (reqs[k] = w->fleet->claim(w->fleet->ctx, msgs[i]->local_id))) {
			if (k != i)
				res[k] = res[i];
			k++;
		}
	}
	atomic_fetch_add_explicit(&w->feed_depth, -(uint64_t)n, memory_order_relaxed);
	for (size_t i = 0; i < n; i++)
		msgs[i]->release(msgs[i]);
	answer(w, reqs, res, k); /* also resets the arena */
	return n;

abort:
	ent_store_wtxn_abort(txn);
	ent_arena_reset(&w->arena);
	if (rc == -ENT_EFULL)
		return n > 1 ? n / 2 : 0;
	ent_log(ENT_LOG_ERROR, "fleet: cannot apply", "err", ent_err_strerror(rc), NULL);
	*stuck = true;
	return 0;
}

/*
 * Apply the stream messages msgs[0..n) in as few transactions as fit. Whatever cannot be
 * applied now (a full map, a failing disk) is handed back: the caller puts it back at the
 * head of the feed and retries later. Unlike a request, a stream message can never be
 * skipped because it does not fit: the replica would diverge. It stalls, visibly (lag).
 */
static size_t run_stream(struct ent_writer *w, struct ent_writer_msg **msgs, size_t n)
{
	size_t start = 0, cap = n;
	while (start < n) {
		size_t m = n - start < cap ? n - start : cap;
		bool stuck;
		size_t k = try_stream(w, msgs + start, m, &stuck);
		if (k == m) {
			start += m;
			cap = cap > n / 2 ? n : cap * 2;
		} else if (k == 0) {
			int64_t now = ent_time_now_ms();
			if (now - w->stall_logged_at >= 10000) {
				ent_log(ENT_LOG_ERROR,
					"fleet: the replica cannot apply the next stream message "
					"(database full or failing); it stays behind until it can",
					"reason",
					stuck ? "transaction failed" : "database map full", NULL);
				w->stall_logged_at = now;
			}
			return start;
		} else {
			cap = k;
		}
	}
	return n;
}

static void on_retry(uv_timer_t *t)
{
	uv_async_send(&((struct ent_writer *)t->data)->work);
}

/* Answer the requests refused after submit (fleet mode), in the order they were refused. */
static void answer_fails(struct ent_writer *w, struct fail_item *f)
{
	/* The list was pushed LIFO: reverse it. */
	struct fail_item *rev = NULL;
	while (f) {
		struct fail_item *next = f->next;
		f->next = rev;
		rev = f;
		f = next;
	}
	while (rev) {
		struct fail_item *next = rev->next;
		struct ent_apply_result *res = w->results;
		memset(res, 0, sizeof(*res));
		res->err = rev->err;
		answer(w, &rev->req, res, 1);
		free(rev);
		rev = next;
	}
}

static void drain_feed(struct ent_writer *w, struct ent_writer_msg *m)
{
	while (m) {
		size_t n = 0, bytes = 0;
		while (m && n < w->stream_group &&
		       (n < w->max_group || bytes + m->len <= STREAM_GROUP_BYTES * w->max_group)) {
			bytes += m->len;
			w->msgs[n++] = m;
			m = m->next;
		}
		size_t done = run_stream(w, w->msgs, n);
		if (done < n) {
			/* Put the rest back at the head, in order, and try again in a while. */
			struct ent_writer_msg *rest = w->msgs[done];
			for (size_t i = done; i + 1 < n; i++)
				w->msgs[i]->next = w->msgs[i + 1];
			w->msgs[n - 1]->next = m;
			uv_mutex_lock(&w->qlock);
			struct ent_writer_msg *tail = rest;
			uint64_t cnt = 1;
			while (tail->next) {
				tail = tail->next;
				cnt++;
			}
			tail->next = w->fhead;
			if (!w->fhead)
				w->ftail = tail;
			w->fhead = rest;
			w->fcount += cnt;
			uv_mutex_unlock(&w->qlock);
			uv_timer_start(&w->retry, on_retry, FEED_RETRY_MS, 0);
			return;
		}
	}
}

/*
 * What an event weighs in a group: a usage batch counts its records, so a group of batches
 * stays near the dirty pages of max_group records (each record of a distinct customer dirties
 * about three leaves, which LMDB holds in memory until the commit).
 */
static size_t weight(const struct ent_writer_req *r)
{
	const Ent__V1__Event *ev = r->event;
	if (ev->kind_case == ENT__V1__EVENT__KIND_REPORT_USAGE_BATCH && ev->report_usage_batch &&
	    ev->report_usage_batch->n_records > 1)
		return ev->report_usage_batch->n_records;
	return 1;
}

/*
 * Take the whole queue at once (O(1) under the lock) and apply it group by group. Requests
 * submitted meanwhile find the queue empty and send a new wake-up, so nothing is left behind
 * and the loop gets to run its timer between two takes.
 */
static void drain(struct ent_writer *w)
{
	uv_mutex_lock(&w->qlock);
	struct ent_writer_req *r = w->qhead;
	w->qhead = w->qtail = NULL;
	struct ent_writer_msg *feed = w->fhead;
	w->fhead = w->ftail = NULL;
	w->fcount = 0;
	struct fail_item *fails = w->failhead;
	w->failhead = NULL;
	if (feed)
		uv_cond_broadcast(&w->fcond);
	uv_mutex_unlock(&w->qlock);
	if (fails)
		answer_fails(w, fails);
	if (feed)
		drain_feed(w, feed);
	if (!r) {
		if (feed || fails)
			arm_timer(w);
		return;
	}

	while (r) {
		if (!r->event && w->fleet && !((struct ent_writer_txn_req *)r)->local) {
			/* A multi-event transaction cannot be one stream message (docs/fleet.md).
			 */
			struct ent_writer_req *next = r->next;
			atomic_fetch_sub_explicit(&w->queue_depth, 1, memory_order_relaxed);
			struct ent_apply_result *res = w->results;
			memset(res, 0, sizeof(*res));
			ent_err_set(
				&res->err, ENT_EPRECOND,
				"import: not available in fleet mode (an import is one all-or-"
				"nothing transaction, the stream carries single events); import "
				"into an embedded entd and publish a snapshot, or replay the "
				"document with the admin RPCs (docs/fleet.md)");
			answer(w, &r, res, 1);
			r = next;
			continue;
		}
		if (!r->event) {
			/* A transaction request runs alone, in queue order. */
			struct ent_writer_req *next = r->next;
			atomic_fetch_sub_explicit(&w->queue_depth, 1, memory_order_relaxed);
			run_txn(w, r);
			r = next;
			continue;
		}
		size_t n = 0, load = 0;
		while (r && r->event && n < w->max_group &&
		       (n == 0 || load + weight(r) <= GROUP_RECORDS * w->max_group)) {
			load += weight(r);
			w->group[n++] = r;
			r = r->next;
		}
		/* Counted out before the answers, so a caller answered sees itself dequeued. */
		atomic_fetch_sub_explicit(&w->queue_depth, n, memory_order_relaxed);
		run_group(w, w->group, n);
	}
	arm_timer(w);
}

static void on_work(uv_async_t *h)
{
	drain(h->data);
}

/* ---- boundaries ----------------------------------------------------------------------- */

static void on_tick_done(void *ctx, const struct ent_apply_result *res)
{
	struct ent_writer *w = ctx;
	w->tick_more = res->err.code == 0 && res->more;
	w->tick_inflight = false;
	if (res->err.code)
		ent_log(w->fleet && res->err.code == ENT_EUNAVAIL ? ENT_LOG_DEBUG : ENT_LOG_ERROR,
			"writer: tick failed", "err", res->err.msg, NULL);
}

static void on_timer(uv_timer_t *t);

static void run_tick(struct ent_writer *w, int64_t now)
{
	w->tick.now = now;
	w->tick.idem_before = now - w->idem_retention_ms;
	w->tick_ev.at = now;
	struct ent_writer_req *r = &w->tick_req;
	if (w->fleet) {
		/*
		 * Fleet mode: the tick is an event of the stream like any other, so every replica
		 * cleans up at the same position and the tables stay identical (docs/fleet.md).
		 * Each node's timer publishes one; a second tick at the same instant finds
		 * nothing due and changes nothing.
		 */
		if (!w->tick_inflight) {
			w->tick_inflight = true;
			if (w->fleet->publish(w->fleet->ctx, r, &w->tick_ev))
				w->tick_inflight = false;
		}
	} else {
		run_group(w, &r, 1);
	}
	w->last_tick = now;
}

/*
 * (Re)arm the timer for the earliest of the next boundary and the hourly tick. The store's
 * index is the truth (it survives restarts), so a boundary that passed while entd was down
 * gives a delay of 0 and fires at once. A tick cut into pieces continues at once too, after
 * the loop has taken the requests queued meanwhile.
 */
static void arm_timer(struct ent_writer *w)
{
	int64_t at = 0;
	int rc = ent_store_next_boundary(w->store, &at);
	if (rc) {
		ent_log(ENT_LOG_ERROR, "writer: cannot read the next boundary", "err",
			ent_err_strerror(rc), NULL);
		at = 0;
	}
	atomic_store_explicit(&w->next_boundary_at, at, memory_order_relaxed);

	int64_t now = ent_time_now_ms();
	int64_t target = w->tick_more ? now : w->last_tick + TICK_EVERY_MS;
	w->armed_boundary = 0;
	if (at != 0 && at < target) {
		target = at;
		w->armed_boundary = at;
		/*
		 * A tick at or after this instant already ran and the boundary is still there
		 * (it failed, or an event added the boundary in the past since, e.g. a cancellation
		 * dated back): retry a while after that tick rather than spin on it. Counted from
		 * the last tick, not from now: every write re-arms the timer, and "now + retry"
		 * would push the retry away for ever under a steady stream of writes.
		 */
		if (at <= w->last_tick && !w->tick_more)
			target = w->last_tick + STUCK_RETRY_MS;
	}
	int64_t delay = target > now ? target - now : 0;
	/* The loop's clock is cached at the start of an iteration; a commit may have taken long. */
	uv_update_time(&w->loop);
	uv_timer_start(&w->timer, on_timer, (uint64_t)delay, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct ent_writer *w = t->data;
	int64_t now = ent_time_now_ms();
	int64_t boundary = w->armed_boundary;
	bool boundary_due = boundary != 0 && boundary <= now;
	/*
	 * The timer runs on the monotonic clock, boundaries are wall-clock instants: if the wall
	 * clock was stepped back, the timer can fire before the boundary. Then just re-arm.
	 */
	if (boundary_due || w->tick_more || now - w->last_tick >= TICK_EVERY_MS)
		run_tick(w, now);
	if (boundary_due)
		atomic_store_explicit(&w->boundary_lag_ms, now - boundary, memory_order_relaxed);
	arm_timer(w);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/*
 * Stop began (no submitter can queue any more): answer everything still queued, then close
 * the handles so uv_run returns and the thread ends.
 */
static void on_stop(uv_async_t *h)
{
	struct ent_writer *w = h->data;
	drain(w);
	/* Stream messages that could not be applied (a stalled replica) are dropped unapplied:
	 * the stream still holds them for the next start. */
	uv_mutex_lock(&w->qlock);
	struct ent_writer_msg *m = w->fhead;
	w->fhead = w->ftail = NULL;
	w->fcount = 0;
	uv_cond_broadcast(&w->fcond);
	uv_mutex_unlock(&w->qlock);
	while (m) {
		struct ent_writer_msg *next = m->next;
		m->release(m);
		m = next;
	}
	/* Nothing will be committed any more: a parked wait is told so now, not at its bound. */
	release_waits(w, 0, true);
	uv_timer_stop(&w->timer);
	uv_timer_stop(&w->retry);
	uv_timer_stop(&w->wait_timer);
	uv_close((uv_handle_t *)&w->wait_wake, NULL);
	uv_close((uv_handle_t *)&w->wait_timer, NULL);
	uv_close((uv_handle_t *)&w->work, NULL);
	uv_close((uv_handle_t *)&w->stop, NULL);
	uv_close((uv_handle_t *)&w->timer, NULL);
	uv_close((uv_handle_t *)&w->retry, NULL);
}

/*
 * The writer runs below the check threads' priority (writer.nice): on a sidecar's one or two
 * cores a large change (a plan patch recomputing 100,000 aggregates) then takes the CPU the
 * checks leave, instead of halving their throughput; the change is acknowledged later
 * instead. Linux keeps a nice value per thread, so only this thread is lowered.
 */
static void lower_priority(int nice)
{
	if (nice <= 0)
		return;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	if (setpriority(PRIO_PROCESS, (id_t)tid, nice) != 0) {
		char v[16];
		snprintf(v, sizeof(v), "%d", nice);
		ent_log(ENT_LOG_WARN, "writer: cannot lower the writer thread's priority",
			"writer.nice", v, "err", strerror(errno), NULL);
	}
}

static void loop_main(void *arg)
{
	struct ent_writer *w = arg;
	lower_priority(w->nice);
	arm_timer(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int ent_writer_start(const struct ent_writer_opts *opts, struct ent_writer **out)
{
	if (!opts || !opts->store || !out)
		return -ENT_EINVAL;
	struct ent_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENT_ENOMEM;
	w->store = opts->store;
	w->max_group = opts->max_group ? opts->max_group : DEFAULT_MAX_GROUP;
	w->nice = opts->nice;
	w->idem_retention_ms =
		opts->idem_retention_ms > 0 ? opts->idem_retention_ms : DEFAULT_IDEM_RETENTION_MS;
	w->fleet = opts->fleet;
	w->stream_group = w->fleet ? w->max_group * STREAM_GROUP_FACTOR : w->max_group;
	w->results = calloc(w->stream_group, sizeof(*w->results));
	w->group = calloc(w->stream_group, sizeof(*w->group));
	w->msgs = calloc(w->stream_group, sizeof(*w->msgs));
	w->nested = calloc(w->stream_group, 1);
	if (!w->results || !w->group || !w->msgs || !w->nested)
		goto fail_alloc;
	ent_arena_init(&w->arena, 0);

	struct ent_store_stats st;
	if (ent_store_stats(w->store, &st) == 0)
		atomic_store(&w->seq, st.seq);
	w->last_tick = ent_time_now_ms();
	ent__v1__tick__init(&w->tick);
	w->tick.max_entries = opts->tick_piece ? opts->tick_piece : DEFAULT_TICK_PIECE;
	ent__v1__event__init(&w->tick_ev);
	w->tick_ev.kind_case = ENT__V1__EVENT__KIND_TICK;
	w->tick_ev.tick = &w->tick;
	w->tick_req.event = &w->tick_ev;
	w->tick_req.cb = on_tick_done;
	w->tick_req.ctx = w;

	if (uv_mutex_init(&w->wlock))
		goto fail_wlock;
	if (uv_mutex_init(&w->qlock))
		goto fail_mutex;
	if (uv_cond_init(&w->fcond)) {
		uv_mutex_destroy(&w->qlock);
		goto fail_mutex;
	}
	if (uv_loop_init(&w->loop))
		goto fail_loop;
	/* Handles are set up here; the thread creation orders this before the loop runs. */
	if (uv_async_init(&w->loop, &w->work, on_work))
		goto fail_handles;
	w->work.data = w;
	if (uv_async_init(&w->loop, &w->stop, on_stop)) {
		uv_close((uv_handle_t *)&w->work, NULL);
		goto fail_handles;
	}
	w->stop.data = w;
	if (uv_async_init(&w->loop, &w->wait_wake, on_wait_wake)) {
		uv_close((uv_handle_t *)&w->work, NULL);
		uv_close((uv_handle_t *)&w->stop, NULL);
		goto fail_handles;
	}
	w->wait_wake.data = w;
	uv_timer_init(&w->loop, &w->wait_timer);
	w->wait_timer.data = w;
	uv_timer_init(&w->loop, &w->timer);
	w->timer.data = w;
	uv_timer_init(&w->loop, &w->retry);
	w->retry.data = w;
	if (uv_thread_create(&w->thread, loop_main, w)) {
		uv_close((uv_handle_t *)&w->work, NULL);
		uv_close((uv_handle_t *)&w->stop, NULL);
		uv_close((uv_handle_t *)&w->timer, NULL);
		uv_close((uv_handle_t *)&w->retry, NULL);
		uv_close((uv_handle_t *)&w->wait_wake, NULL);
		uv_close((uv_handle_t *)&w->wait_timer, NULL);
		goto fail_handles;
	}
	*out = w;
	return 0;

fail_handles:
	uv_run(&w->loop, UV_RUN_DEFAULT); /* runs the close callbacks */
	uv_loop_close(&w->loop);
fail_loop:
	uv_cond_destroy(&w->fcond);
	uv_mutex_destroy(&w->qlock);
fail_mutex:
	uv_mutex_destroy(&w->wlock);
fail_wlock:
	ent_arena_deinit(&w->arena);
fail_alloc:
	free(w->results);
	free(w->group);
	free(w->msgs);
	free(w->nested);
	free(w);
	return -ENT_ENOMEM;
}

static int enqueue(struct ent_writer *w, struct ent_writer_req *req);

int ent_writer_submit_txn(struct ent_writer *w, struct ent_writer_txn_req *t)
{
	t->req.event = NULL;
	return enqueue(w, &t->req);
}

int ent_writer_submit(struct ent_writer *w, struct ent_writer_req *req)
{
	if (!req->event)
		return -ENT_EINVAL;
	if (w->fleet) {
		/* Fleet mode: the stream decides; our replica answers when it applies it. */
		uv_mutex_lock(&w->qlock);
		bool stopping = w->stopping;
		uv_mutex_unlock(&w->qlock);
		if (stopping)
			return -ENT_EUNAVAIL;
		return w->fleet->publish(w->fleet->ctx, req, req->event);
	}
	return enqueue(w, req);
}

int ent_writer_feed(struct ent_writer *w, struct ent_writer_msg *m)
{
	m->next = NULL;
	uv_mutex_lock(&w->qlock);
	while (!w->stopping && w->fcount >= FEED_MAX)
		uv_cond_wait(&w->fcond, &w->qlock);
	if (w->stopping) {
		uv_mutex_unlock(&w->qlock);
		m->release(m);
		return -ENT_EUNAVAIL;
	}
	bool was_empty = w->fhead == NULL;
	if (was_empty)
		w->fhead = m;
	else
		w->ftail->next = m;
	w->ftail = m;
	w->fcount++;
	atomic_fetch_add_explicit(&w->feed_depth, 1, memory_order_relaxed);
	if (was_empty)
		uv_async_send(&w->work);
	uv_mutex_unlock(&w->qlock);
	return 0;
}

void ent_writer_fail(struct ent_writer *w, struct ent_writer_req *req, const struct ent_err *err)
{
	struct fail_item *f = malloc(sizeof(*f));
	uv_mutex_lock(&w->qlock);
	if (!f || w->stopping) {
		/* No memory, or the loop is gone: answer here, on this thread. */
		uv_mutex_unlock(&w->qlock);
		struct ent_apply_result res;
		memset(&res, 0, sizeof(res));
		res.err = *err;
		free(f);
		if (req->cb)
			req->cb(req->ctx, &res);
		return;
	}
	f->req = req;
	f->err = *err;
	f->next = w->failhead;
	w->failhead = f;
	uv_async_send(&w->work);
	uv_mutex_unlock(&w->qlock);
}

uint64_t ent_writer_feed_depth(const struct ent_writer *w)
{
	return atomic_load_explicit(&w->feed_depth, memory_order_relaxed);
}

uint64_t ent_writer_skipped(const struct ent_writer *w)
{
	return atomic_load_explicit(&w->skipped, memory_order_relaxed);
}

static int enqueue(struct ent_writer *w, struct ent_writer_req *req)
{
	req->next = NULL;
	uv_mutex_lock(&w->qlock);
	if (w->stopping) {
		uv_mutex_unlock(&w->qlock);
		return -ENT_EUNAVAIL;
	}
	bool was_empty = w->qhead == NULL;
	if (was_empty)
		w->qhead = req;
	else
		w->qtail->next = req;
	w->qtail = req;
	atomic_fetch_add_explicit(&w->queue_depth, 1, memory_order_relaxed);
	/*
	 * Only the push onto an empty queue wakes the loop: the loop takes the whole queue, so a
	 * non-empty one has a wake-up pending already. Sending under the lock is what lets
	 * on_stop close the handle safely (see the invariants); it is a flag test and at most
	 * one eventfd write.
	 */
	if (was_empty)
		uv_async_send(&w->work);
	uv_mutex_unlock(&w->qlock);
	return 0;
}

uint64_t ent_writer_seq(const struct ent_writer *w)
{
	return atomic_load_explicit(&w->seq, memory_order_acquire);
}

void ent_writer_get_stats(const struct ent_writer *w, struct ent_writer_stats *out)
{
	out->commits = atomic_load_explicit(&w->commits, memory_order_relaxed);
	out->events = atomic_load_explicit(&w->events, memory_order_relaxed);
	out->failed = atomic_load_explicit(&w->failed, memory_order_relaxed);
	out->queue_depth = atomic_load_explicit(&w->queue_depth, memory_order_relaxed);
	out->waiting = atomic_load_explicit(&w->waiting, memory_order_relaxed);
	out->last_commit_us = atomic_load_explicit(&w->last_commit_us, memory_order_relaxed);
	out->next_boundary_at = atomic_load_explicit(&w->next_boundary_at, memory_order_relaxed);
	out->boundary_lag_ms = atomic_load_explicit(&w->boundary_lag_ms, memory_order_relaxed);
}

void ent_writer_stop(struct ent_writer *w)
{
	if (!w)
		return;
	uv_mutex_lock(&w->qlock);
	w->stopping = true;
	uv_cond_broadcast(&w->fcond); /* a feeder waiting for room gives up */
	uv_mutex_unlock(&w->qlock);
	uv_async_send(&w->stop);
	uv_thread_join(&w->thread);

	uv_loop_close(&w->loop);
	uv_cond_destroy(&w->fcond);
	uv_mutex_destroy(&w->qlock);
	uv_mutex_destroy(&w->wlock);
	ent_arena_deinit(&w->arena);
	free(w->results);
	free(w->group);
	free(w->msgs);
	free(w->nested);
	free(w);
}
