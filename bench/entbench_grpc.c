/*
 * The load itself, on the gRPC C core.
 *
 * Each client thread owns one completion queue and a share of the connections (connection i
 * belongs to thread i % threads); every call it starts is bound to its queue, so a call's
 * completions always arrive on the thread that started it and nothing is locked. Each thread
 * keeps its own histograms and counters, merged by bench_run() after the threads are joined.
 *
 * Unary calls (Check, Batch, Consume, Report) are one batch each: send metadata, message and
 * close, receive metadata, message and status, like any gRPC client stub. A stream keeps up to
 * --stream-window messages in flight: one SEND_MESSAGE batch at a time (the core allows only one
 * of each op type in flight per call) and one RECV_MESSAGE batch, re-armed after each answer;
 * the send time of each message waits in a ring until its answer arrives, answers being in order.
 *
 * Timing. The clock starts at t0; requests started in [t0 + warmup, t_end) are timed, calls
 * completing in that window count for throughput. Closed loop: a slot re-issues as soon as its
 * call completes and latency runs from the actual send. Open loop: sends are scheduled every
 * 1/rate seconds whatever happens to earlier ones, and latency runs from the scheduled time, so
 * a server stall shows up as latency of every request that should have been sent during it
 * (no coordinated omission). If every slot is busy, due sends wait in a backlog, still timed from
 * their schedule.
 */
#include "entbench.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#define M_CHECK	  "/ent.v1.EntitlementService/CheckEntitlement"
#define M_BATCH	  "/ent.v1.EntitlementService/BatchCheckEntitlements"
#define M_STREAM  "/ent.v1.EntitlementService/StreamCheckEntitlements"
#define M_CONSUME "/ent.v1.EntitlementService/ConsumeEntitlement"
#define M_REPORT  "/ent.v1.EntitlementService/ReportUsage"
#define M_RBATCH  "/ent.v1.EntitlementService/BatchReportUsage"

/* After t_end, in-flight calls get this long to finish before they are cancelled. */
#define DRAIN_NS 5000000000ull
/*
 * A timed wait on a completion queue can oversleep by up to a millisecond (epoll's timeout is
 * in ms), which an open loop would add to the latency of every send due in that gap. So the
 * thread sleeps only until SPIN_NS before a due send and polls (zero timeout) from there: at
 * open-loop rates above ~700/s per thread that means the client thread busy-polls its core.
 */
#define SPIN_NS 1500000ull
/* Reason codes entbench treats as "the benchmark is misconfigured" in --strict mode. */
#define REASON_UNKNOWN_CUSTOMER 3
#define REASON_UNKNOWN_FEATURE	4

enum tag_kind {
	TAG_UNARY,
	TAG_S_SEND,
	TAG_S_RECV,
	TAG_S_STATUS,
};

/* Completion-queue tags are pointers to one of these, embedded in the call state. */
struct tag {
	enum tag_kind kind;
	void *owner;
};

struct conn {
	grpc_channel *ch;
	void *method[OP__COUNT]; /* registered-call handles */
};

struct thr;

/* One unary call slot. Free slots sit on the thread's free list with call == NULL. */
struct ucall {
	struct tag tag;
	struct thr *t;
	grpc_call *call;
	enum bench_op op;
	uint32_t items;
	uint64_t start_ns; /* actual send (closed loop) or scheduled send (open loop) */
	grpc_byte_buffer *send;
	grpc_byte_buffer *recv;
	grpc_metadata_array md_init;
	grpc_metadata_array md_trail;
	grpc_status_code status;
	grpc_slice details;
	struct ucall *next;
};

/*
 * One stream. Invariants: at most one send batch (a message or the close) and one receive
 * batch in flight; count = messages sent and not yet answered (<= window), their send times
 * in sent[head .. head+count) modulo window. The call is released once the status arrived and
 * both the receive side and the send side are idle.
 */
struct scall {
	struct tag t_send, t_recv, t_status;
	struct thr *t;
	struct conn *c;
	grpc_call *call;
	uint64_t *sent;
	unsigned head, count;
	bool send_busy, closing, recv_busy, status_done, broken;
	grpc_byte_buffer *send;
	grpc_byte_buffer *recv;
	grpc_metadata_array md_init;
	grpc_metadata_array md_trail;
	grpc_status_code status;
	grpc_slice details;
};

struct thr {
	const struct bench_config *cfg;
	unsigned index;
	pthread_t thread;
	grpc_completion_queue *cq;
	struct conn **conns;
	unsigned nconns, rr;
	struct bench_rng rng;
	uint64_t t0, t_meas, t_end;
	unsigned active; /* calls (streams) not yet finished */
	bool cancelled;	 /* drain deadline passed: everything left was cancelled */
	struct ucall *free;
	struct ucall **all; /* every slot ever allocated, for cancelling and freeing */
	unsigned nall, capall;
	struct scall *streams;
	unsigned nstreams;
	uint8_t *scratch;
	size_t scratch_len;
	char idem[48];
	size_t idem_prefix_len;
	uint64_t idem_seq;
	/* open loop */
	uint64_t interval_ns, next_sched, backlog;
	struct bench_result res;
};

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static gpr_timespec deadline_at(uint64_t mono_ns)
{
	uint64_t now = bench_now_ns();

	if (mono_ns <= now)
		return gpr_inf_past(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_nanos((int64_t)(mono_ns - now), GPR_TIMESPAN));
}

/* ---- request building ------------------------------------------------------------------ */

static uint32_t pick_customer(struct thr *t)
{
	const struct bench_config *cfg = t->cfg;

	if (cfg->zipf)
		return bench_zipf_draw(cfg->zipf, &t->rng);
	return bench_rng_below(&t->rng, cfg->keys->customers);
}

static uint32_t pick_feature(struct thr *t)
{
	uint32_t n = t->cfg->keys->features;

	return n == 1 ? 0 : bench_rng_below(&t->rng, n);
}

/* A unique idempotency key per write: run id, thread, sequence. */
static size_t next_idem(struct thr *t)
{
	int n = snprintf(t->idem + t->idem_prefix_len, sizeof(t->idem) - t->idem_prefix_len, "%llx",
			 (unsigned long long)++t->idem_seq);

	return t->idem_prefix_len + (size_t)n;
}

static enum bench_op pick_op(struct thr *t)
{
	switch (t->cfg->mode) {
	case MODE_BATCH:
		return OP_BATCH;
	case MODE_STREAM:
		return OP_STREAM;
	case MODE_CONSUME:
		return OP_CONSUME;
	case MODE_REPORT:
		return OP_REPORT;
	case MODE_REPORT_BATCH:
		return OP_REPORT_BATCH;
	case MODE_MIXED:
		if (bench_rng_unit(&t->rng) < t->cfg->write_ratio)
			return (bench_rng_next(&t->rng) & 1) ? OP_CONSUME : OP_REPORT;
		return OP_CHECK;
	case MODE_UNARY:
	default:
		return OP_CHECK;
	}
}

/* Encode one request for \a op into the thread's scratch; \return its length. */
static size_t encode(struct thr *t, enum bench_op op, uint32_t *items)
{
	const struct bench_config *cfg = t->cfg;
	const struct bench_keys *k = cfg->keys;
	size_t n = 0, il;

	*items = 1;
	switch (op) {
	case OP_BATCH:
		for (unsigned i = 0; i < cfg->batch_size; i++)
			n += bench_enc_batch_item(k, pick_customer(t), pick_feature(t),
						  cfg->quantity, t->scratch + n);
		*items = cfg->batch_size;
		return n;
	case OP_CONSUME:
		il = next_idem(t);
		return bench_enc_consume(k, pick_customer(t), pick_feature(t), cfg->quantity,
					 t->idem, il, t->scratch);
	case OP_REPORT:
		il = next_idem(t);
		return bench_enc_report(k, pick_customer(t), pick_feature(t), cfg->quantity,
					t->idem, il, t->scratch);
	case OP_REPORT_BATCH:
		for (unsigned i = 0; i < cfg->batch_size; i++) {
			il = next_idem(t);
			n += bench_enc_report_item(k, pick_customer(t), pick_feature(t),
						   cfg->quantity, t->idem, il, t->scratch + n);
		}
		*items = cfg->batch_size;
		return n;
	case OP_CHECK:
	case OP_STREAM:
	default:
		return bench_enc_check(k, pick_customer(t), pick_feature(t), cfg->quantity,
				       t->scratch);
	}
}

static grpc_byte_buffer *make_message(struct thr *t, enum bench_op op, uint32_t *items)
{
	size_t n = encode(t, op, items);
	grpc_slice s = grpc_slice_from_copied_buffer((const char *)t->scratch, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

	grpc_slice_unref(s);
	return bb;
}

/* ---- answers ---------------------------------------------------------------------------- */

/* Copy a received message into one contiguous slice (a new reference: unref it). */
static grpc_slice read_message(grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return grpc_empty_slice();
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return s;
}

/* Look at an OK answer: count allowed/reasons. \return false if it is unusable. */
static bool scan_answer(struct thr *t, enum bench_op op, uint32_t items, grpc_byte_buffer *bb)
{
	struct bench_result *res = &t->res;
	grpc_slice s;
	bool ok = true, allowed;
	uint32_t reason;

	if (!bb)
		return false;
	if (op == OP_REPORT) /* ReportUsageResponse carries no decision */
		return true;
	s = read_message(bb);
	if (op == OP_REPORT_BATCH) {
		/* Every record must be counted: a refused one means the data set lacks the key. */
		long n = bench_scan_usage_batch(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
		if (n < 0 || (uint32_t)n != items)
			ok = false;
		else
			res->answers += (uint64_t)n;
	} else if (op == OP_BATCH) {
		long n = bench_scan_batch(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
					  &res->allowed, res->reasons);
		if (n < 0 || (uint32_t)n != items)
			ok = false;
		else
			res->answers += (uint64_t)n;
	} else if (bench_scan_answer(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), &allowed,
				     &reason) == 0) {
		res->answers++;
		res->allowed += allowed;
		res->reasons[reason > 15 ? 15 : reason]++;
	} else {
		ok = false;
	}
	grpc_slice_unref(s);
	return ok;
}

static void note_error_details(struct thr *t, grpc_status_code code, const grpc_slice *details)
{
	/* The first message per thread is enough to tell what went wrong. */
	if (t->res.errors[code] == 1 && GRPC_SLICE_LENGTH(*details))
		fprintf(stderr, "entbench: %s: %.*s\n", bench_status_name(code),
			(int)GRPC_SLICE_LENGTH(*details),
			(const char *)GRPC_SLICE_START_PTR(*details));
}

/* Record one finished operation started at \a start and answered now. */
static void account(struct thr *t, enum bench_op op, uint32_t items, uint64_t start, uint64_t now)
{
	struct bench_result *res = &t->res;

	if (start >= t->t_meas && start < t->t_end) {
		bench_hist_record(&res->hist[op], now - start);
		bench_hist_record(&res->all, now - start);
	}
	if (now >= t->t_meas && now < t->t_end) {
		res->done[op]++;
		res->checks += items;
	}
}

/* ---- unary calls ------------------------------------------------------------------------ */

static struct ucall *ucall_get(struct thr *t)
{
	struct ucall *u = t->free;

	if (u) {
		t->free = u->next;
		return u;
	}
	if (t->nall == t->capall) {
		unsigned cap = t->capall ? t->capall * 2 : 64;
		struct ucall **all = realloc(t->all, cap * sizeof(*all));

		if (!all)
			return NULL;
		t->all = all;
		t->capall = cap;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->tag.kind = TAG_UNARY;
	u->tag.owner = u;
	u->t = t;
	grpc_metadata_array_init(&u->md_init);
	grpc_metadata_array_init(&u->md_trail);
	t->all[t->nall++] = u;
	return u;
}

static void ucall_put(struct thr *t, struct ucall *u)
{
	u->call = NULL;
	u->next = t->free;
	t->free = u;
}

/* Start one unary call in slot \a u, timed from \a start. \return 0 or -1 (slot not used). */
static int ucall_start(struct thr *t, struct ucall *u, uint64_t start)
{
	struct conn *c = t->conns[t->rr++ % t->nconns];
	grpc_op ops[6];

	u->op = pick_op(t);
	u->send = make_message(t, u->op, &u->items);
	u->recv = NULL;
	u->md_init.count = 0;
	u->md_trail.count = 0;
	u->status = GRPC_STATUS_OK;
	u->details = grpc_empty_slice();
	u->start_ns = start;
	u->call = grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq,
						      c->method[u->op],
						      gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = u->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->md_init;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &u->recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &u->md_trail;
	ops[5].data.recv_status_on_client.status = &u->status;
	ops[5].data.recv_status_on_client.status_details = &u->details;
	if (!u->call || grpc_call_start_batch(u->call, ops, 6, &u->tag, NULL) != GRPC_CALL_OK) {
		/* No completion will come: undo here and count it as a failed call. */
		t->res.failed_batches++;
		grpc_byte_buffer_destroy(u->send);
		if (u->call)
			grpc_call_unref(u->call);
		ucall_put(t, u);
		return -1;
	}
	t->active++;
	return 0;
}

/* A unary call finished: account for it, release it. The slot is free afterwards. */
static void ucall_done(struct thr *t, struct ucall *u, bool success, uint64_t now)
{
	struct bench_result *res = &t->res;

	res->total_calls++;
	if (!success) {
		res->failed_batches++;
	} else if (u->status != GRPC_STATUS_OK) {
		unsigned code = (unsigned)u->status < BENCH_STATUS_CODES ? (unsigned)u->status : 2;

		res->errors[code]++;
		note_error_details(t, (grpc_status_code)code, &u->details);
	} else if (!scan_answer(t, u->op, u->items, u->recv)) {
		res->bad_answers++;
	} else {
		res->total_checks += u->items;
		account(t, u->op, u->items, u->start_ns, now);
	}
	grpc_byte_buffer_destroy(u->send);
	if (u->recv)
		grpc_byte_buffer_destroy(u->recv);
	grpc_slice_unref(u->details);
	grpc_call_unref(u->call);
	t->active--;
	ucall_put(t, u);
}

/* ---- streams ---------------------------------------------------------------------------- */

static int stream_send(struct thr *t, struct scall *s, bool close)
{
	grpc_op ops[2];
	size_t n = 0;
	uint32_t items;

	memset(ops, 0, sizeof(ops));
	if (close) {
		ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		s->closing = true;
	} else {
		unsigned w = t->cfg->stream_window;

		s->send = make_message(t, OP_STREAM, &items);
		s->sent[(s->head + s->count) % w] = bench_now_ns();
		s->count++;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = s->send;
	}
	s->send_busy = true;
	if (grpc_call_start_batch(s->call, ops, n, &s->t_send, NULL) != GRPC_CALL_OK) {
		s->send_busy = false;
		s->broken = true;
		if (s->send) {
			grpc_byte_buffer_destroy(s->send);
			s->send = NULL;
			s->count--;
		}
		return -1;
	}
	return 0;
}

static int stream_recv(struct scall *s)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &s->recv;
	s->recv = NULL;
	s->recv_busy = true;
	if (grpc_call_start_batch(s->call, &op, 1, &s->t_recv, NULL) != GRPC_CALL_OK) {
		s->recv_busy = false;
		s->broken = true;
		return -1;
	}
	return 0;
}

/* Keep the stream's window full until t_end, then half-close once nothing is outstanding. */
static void stream_pump(struct thr *t, struct scall *s, uint64_t now)
{
	if (s->send_busy || s->closing || !s->call)
		return;
	if (s->broken) {
		/* The status batch will tell why; cancel so it arrives promptly. */
		grpc_call_cancel(s->call, NULL);
		s->closing = true;
		return;
	}
	if (now < t->t_end && s->count < t->cfg->stream_window)
		stream_send(t, s, false);
	else if (now >= t->t_end && s->count == 0)
		stream_send(t, s, true);
}

static void stream_maybe_release(struct thr *t, struct scall *s)
{
	if (!s->call || !s->status_done || s->send_busy || s->recv_busy)
		return;
	if (s->status != GRPC_STATUS_OK) {
		unsigned code = (unsigned)s->status < BENCH_STATUS_CODES ? (unsigned)s->status : 2;

		t->res.errors[code]++;
		note_error_details(t, (grpc_status_code)code, &s->details);
	} else if (s->count) {
		/* OK status although messages went unanswered: a server bug, count it. */
		t->res.bad_answers += s->count;
	}
	grpc_slice_unref(s->details);
	grpc_call_unref(s->call);
	s->call = NULL;
	t->active--;
}

static int stream_open(struct thr *t, struct scall *s, struct conn *c)
{
	grpc_op ops[2];

	s->c = c;
	s->head = s->count = 0;
	s->send_busy = s->closing = s->recv_busy = s->status_done = s->broken = false;
	s->details = grpc_empty_slice();
	s->status = GRPC_STATUS_OK;
	s->call = grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq,
						      c->method[OP_STREAM],
						      gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (!s->call)
		return -1;
	/* Metadata out and in, then the status, which arrives last whatever happens. */
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[1].data.recv_status_on_client.trailing_metadata = &s->md_trail;
	ops[1].data.recv_status_on_client.status = &s->status;
	ops[1].data.recv_status_on_client.status_details = &s->details;
	if (grpc_call_start_batch(s->call, ops, 2, &s->t_status, NULL) != GRPC_CALL_OK) {
		grpc_call_unref(s->call);
		s->call = NULL;
		return -1;
	}
	t->active++;
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &s->recv;
	s->recv = NULL;
	s->recv_busy = true;
	if (grpc_call_start_batch(s->call, ops, 2, &s->t_recv, NULL) != GRPC_CALL_OK) {
		s->recv_busy = false;
		s->broken = true;
	}
	stream_pump(t, s, bench_now_ns());
	return 0;
}

static void stream_event(struct thr *t, struct tag *tag, bool success, uint64_t now)
{
	struct scall *s = tag->owner;

	switch (tag->kind) {
	case TAG_S_SEND:
		s->send_busy = false;
		if (s->send) {
			grpc_byte_buffer_destroy(s->send);
			s->send = NULL;
		}
		if (!success)
			s->broken = true;
		stream_pump(t, s, now);
		break;
	case TAG_S_RECV:
		s->recv_busy = false;
		if (!success || !s->recv) {
			/* The server ended the stream; unanswered messages are counted at release.
			 */
			if (s->recv)
				grpc_byte_buffer_destroy(s->recv);
			s->recv = NULL;
			if (!s->closing || s->count)
				s->broken = true;
			stream_pump(t, s, now);
			break;
		}
		t->res.total_calls++;
		if (!s->count) {
			t->res.bad_answers++; /* an answer nobody asked for */
		} else {
			uint64_t start = s->sent[s->head];

			s->head = (s->head + 1) % t->cfg->stream_window;
			s->count--;
			if (scan_answer(t, OP_STREAM, 1, s->recv)) {
				t->res.total_checks++;
				account(t, OP_STREAM, 1, start, now);
			} else {
				t->res.bad_answers++;
			}
		}
		grpc_byte_buffer_destroy(s->recv);
		s->recv = NULL;
		/* Keep reading until the server's end of stream (a NULL message). */
		stream_recv(s);
		stream_pump(t, s, now);
		break;
	case TAG_S_STATUS:
		s->status_done = true;
		if (!success)
			t->res.failed_batches++;
		break;
	default:
		break;
	}
	stream_maybe_release(t, s);
}

/* ---- threads ---------------------------------------------------------------------------- */

static void cancel_everything(struct thr *t)
{
	t->cancelled = true;
	for (unsigned i = 0; i < t->nall; i++)
		if (t->all[i]->call)
			grpc_call_cancel(t->all[i]->call, NULL);
	for (unsigned i = 0; i < t->nstreams; i++)
		if (t->streams[i].call)
			grpc_call_cancel(t->streams[i].call, NULL);
}

/* Open loop: start every send that is due, as far as slots allow. */
static void open_loop_send(struct thr *t, uint64_t now)
{
	uint64_t due = 0;

	if (t->cancelled && t->next_sched < t->t_end) {
		/* Past the drain deadline: what is still waiting will never be sent. */
		t->res.unsent += (t->t_end - t->next_sched + t->interval_ns - 1) / t->interval_ns;
		t->next_sched = t->t_end;
		return;
	}
	while (t->next_sched <= now && t->next_sched < t->t_end) {
		struct ucall *u;

		if (t->active >= t->cfg->max_inflight || !(u = ucall_get(t)))
			break;
		if (t->next_sched >= t->t_meas)
			bench_hist_record(&t->res.sched_lag, now - t->next_sched);
		ucall_start(t, u, t->next_sched);
		t->next_sched += t->interval_ns;
	}
	/* Only sends scheduled inside the run count; the schedule ends at t_end. */
	if (t->next_sched <= now && t->next_sched < t->t_end)
		due = ((now < t->t_end ? now : t->t_end - 1) - t->next_sched) / t->interval_ns + 1;
	if (due > t->res.backlog_max)
		t->res.backlog_max = due;
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	const struct bench_config *cfg = t->cfg;
	bool open = cfg->rate > 0;
	uint64_t drain_end = t->t_end + DRAIN_NS;

	/* Wait for the common start so every thread's window is the same. */
	while (bench_now_ns() < t->t0)
		usleep(100);

	if (cfg->mode == MODE_STREAM) {
		for (unsigned i = 0; i < t->nstreams; i++)
			stream_open(t, &t->streams[i], t->conns[i % t->nconns]);
	} else if (!open) {
		for (unsigned i = 0; i < t->nconns * cfg->inflight; i++) {
			struct ucall *u = ucall_get(t);

			if (u)
				ucall_start(t, u, bench_now_ns());
		}
	}

	for (;;) {
		uint64_t now = bench_now_ns(), wake;
		gpr_timespec dl;
		grpc_event ev;

		if (open)
			open_loop_send(t, now);
		if (now >= t->t_end && t->active == 0 && (!open || t->next_sched >= t->t_end))
			break;
		if (now >= drain_end && !t->cancelled)
			cancel_everything(t);
		if (open && t->next_sched < t->t_end && t->next_sched > now)
			wake = t->next_sched;
		else if (open && t->next_sched < t->t_end)
			wake = t->t_end; /* backlogged: only a completion frees a slot */
		else if (now < t->t_end)
			wake = t->t_end;
		else
			wake = drain_end + (t->cancelled ? DRAIN_NS : 0);
		dl = wake <= now + SPIN_NS ? gpr_inf_past(GPR_CLOCK_MONOTONIC)
					   : deadline_at(wake - SPIN_NS);
		ev = grpc_completion_queue_next(t->cq, dl, NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (t->cancelled && bench_now_ns() >= drain_end + DRAIN_NS) {
				fprintf(stderr, "entbench: %u calls never completed\n", t->active);
				break;
			}
			continue;
		}
		if (ev.type != GRPC_OP_COMPLETE)
			break;
		now = bench_now_ns();
		struct tag *tag = ev.tag;

		if (tag->kind == TAG_UNARY) {
			struct ucall *u = tag->owner;

			ucall_done(t, u, ev.success, now);
			if (!open && now < t->t_end && (u = ucall_get(t)))
				ucall_start(t, u, now);
		} else {
			stream_event(t, tag, ev.success, now);
		}
	}
	return NULL;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static grpc_channel *open_channel(const char *target, unsigned index)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_arg args[4];
	grpc_channel_args ca = {.num_args = 4, .args = args};
	grpc_channel *ch;

	/*
	 * A local subchannel pool and a distinct argument per channel: otherwise channels to the
	 * same target share one subchannel, i.e. one TCP connection, and --connections would lie.
	 * Retries are off: the retry filter buffers every send, which a benchmark should not pay.
	 */
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
	args[0].value.integer = 1;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = "entbench.connection";
	args[1].value.integer = (int)index;
	args[2].type = GRPC_ARG_INTEGER;
	args[2].key = GRPC_ARG_ENABLE_RETRIES;
	args[2].value.integer = 0;
	args[3].type = GRPC_ARG_INTEGER;
	args[3].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[3].value.integer = -1;
	ch = grpc_channel_create(target, creds, &ca);
	grpc_channel_credentials_release(creds);
	return ch;
}

/* Wait until \a ch is READY (at most 10 s). \return 0 or -1. */
static int wait_ready(grpc_channel *ch, grpc_completion_queue *cq)
{
	uint64_t give_up = bench_now_ns() + 10000000000ull;

	for (;;) {
		grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
		grpc_event ev;

		if (st == GRPC_CHANNEL_READY)
			return 0;
		if (bench_now_ns() >= give_up)
			return -1;
		grpc_channel_watch_connectivity_state(ch, st, deadline_at(give_up), cq, NULL);
		ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			return -1;
	}
}

static void merge(struct bench_result *dst, const struct bench_result *src)
{
	for (unsigned i = 0; i < OP__COUNT; i++) {
		bench_hist_merge(&dst->hist[i], &src->hist[i]);
		dst->done[i] += src->done[i];
	}
	bench_hist_merge(&dst->all, &src->all);
	bench_hist_merge(&dst->sched_lag, &src->sched_lag);
	dst->checks += src->checks;
	dst->total_calls += src->total_calls;
	dst->total_checks += src->total_checks;
	for (unsigned i = 0; i < BENCH_STATUS_CODES; i++)
		dst->errors[i] += src->errors[i];
	dst->failed_batches += src->failed_batches;
	dst->bad_answers += src->bad_answers;
	dst->unsent += src->unsent;
	dst->answers += src->answers;
	dst->allowed += src->allowed;
	for (unsigned i = 0; i < 16; i++)
		dst->reasons[i] += src->reasons[i];
	if (src->backlog_max > dst->backlog_max)
		dst->backlog_max = src->backlog_max;
}

static void result_init(struct bench_result *r)
{
	memset(r, 0, sizeof(*r));
	for (unsigned i = 0; i < OP__COUNT; i++)
		bench_hist_init(&r->hist[i]);
	bench_hist_init(&r->all);
	bench_hist_init(&r->sched_lag);
}

static void thr_free(struct thr *t)
{
	for (unsigned i = 0; i < t->nall; i++) {
		grpc_metadata_array_destroy(&t->all[i]->md_init);
		grpc_metadata_array_destroy(&t->all[i]->md_trail);
		free(t->all[i]);
	}
	free(t->all);
	for (unsigned i = 0; i < t->nstreams; i++) {
		grpc_metadata_array_destroy(&t->streams[i].md_init);
		grpc_metadata_array_destroy(&t->streams[i].md_trail);
		free(t->streams[i].sent);
	}
	free(t->streams);
	free(t->conns);
	free(t->scratch);
	if (t->cq) {
		grpc_completion_queue_shutdown(t->cq);
		while (grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(t->cq);
	}
}

static int thr_setup(struct thr *t, const struct bench_config *cfg, unsigned index,
		     struct conn *conns, uint64_t run_id)
{
	size_t item_max = 16 + cfg->keys->stride + 2 + 130;

	t->cfg = cfg;
	t->index = index;
	result_init(&t->res);
	bench_rng_seed(&t->rng, cfg->seed * 0x100000001b3ull + index);
	t->cq = grpc_completion_queue_create_for_next(NULL);
	for (unsigned i = index; i < cfg->connections; i += cfg->threads)
		t->nconns++;
	t->conns = calloc(t->nconns ? t->nconns : 1, sizeof(*t->conns));
	t->scratch_len =
		(cfg->mode == MODE_BATCH || cfg->mode == MODE_REPORT_BATCH ? cfg->batch_size : 1) *
			(item_max + 64) +
		BENCH_REQ_MAX;
	t->scratch = malloc(t->scratch_len);
	if (!t->cq || !t->conns || !t->scratch)
		return -1;
	for (unsigned i = index, j = 0; i < cfg->connections; i += cfg->threads)
		t->conns[j++] = &conns[i];
	t->idem_prefix_len = (size_t)snprintf(t->idem, sizeof(t->idem), "eb-%llx-%u-",
					      (unsigned long long)run_id, index);
	if (cfg->mode == MODE_STREAM) {
		t->nstreams = t->nconns * cfg->inflight;
		t->streams = calloc(t->nstreams ? t->nstreams : 1, sizeof(*t->streams));
		if (!t->streams)
			return -1;
		for (unsigned i = 0; i < t->nstreams; i++) {
			struct scall *s = &t->streams[i];

			s->t = t;
			s->t_send = (struct tag){TAG_S_SEND, s};
			s->t_recv = (struct tag){TAG_S_RECV, s};
			s->t_status = (struct tag){TAG_S_STATUS, s};
			grpc_metadata_array_init(&s->md_init);
			grpc_metadata_array_init(&s->md_trail);
			s->sent = calloc(cfg->stream_window, sizeof(*s->sent));
			if (!s->sent)
				return -1;
		}
	}
	if (cfg->rate > 0)
		t->interval_ns = (uint64_t)(1e9 * cfg->threads / cfg->rate);
	if (cfg->rate > 0 && t->interval_ns == 0)
		t->interval_ns = 1;
	return 0;
}

int bench_run(const struct bench_config *cfg, struct bench_result *res)
{
	static const char *const paths[OP__COUNT] = {
		[OP_CHECK] = M_CHECK,	  [OP_BATCH] = M_BATCH,	  [OP_STREAM] = M_STREAM,
		[OP_CONSUME] = M_CONSUME, [OP_REPORT] = M_REPORT, [OP_REPORT_BATCH] = M_RBATCH,
	};
	uint64_t run_id = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ bench_now_ns();
	struct conn *conns = calloc(cfg->connections, sizeof(*conns));
	struct thr *thrs = calloc(cfg->threads, sizeof(*thrs));
	grpc_completion_queue *setup_cq = grpc_completion_queue_create_for_next(NULL);
	int rc = -1;
	uint64_t t0;

	result_init(res);
	if (!conns || !thrs || !setup_cq) {
		fputs("entbench: out of memory\n", stderr);
		goto out;
	}
	for (unsigned i = 0; i < cfg->connections; i++) {
		conns[i].ch = open_channel(cfg->target, i);
		for (unsigned m = 0; m < OP__COUNT; m++)
			conns[i].method[m] =
				grpc_channel_register_call(conns[i].ch, paths[m], NULL, NULL);
	}
	/* Connect before the clock starts: the warm-up is for the server, not for handshakes. */
	for (unsigned i = 0; i < cfg->connections; i++) {
		if (wait_ready(conns[i].ch, setup_cq)) {
			fprintf(stderr, "entbench: cannot connect to %s\n", cfg->target);
			goto out;
		}
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		if (thr_setup(&thrs[i], cfg, i, conns, run_id)) {
			fputs("entbench: out of memory\n", stderr);
			goto out;
		}
	}
	t0 = bench_now_ns() + 20000000ull; /* 20 ms for the threads to start */
	for (unsigned i = 0; i < cfg->threads; i++) {
		struct thr *t = &thrs[i];

		t->t0 = t0;
		t->t_meas = t0 + (uint64_t)(cfg->warmup_s * 1e9);
		t->t_end = t->t_meas + (uint64_t)(cfg->duration_s * 1e9);
		/* Threads' schedules are interleaved, not in phase. */
		t->next_sched = t0 + (t->interval_ns * i) / cfg->threads;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		if (pthread_create(&thrs[i].thread, NULL, thr_main, &thrs[i]) != 0) {
			fputs("entbench: cannot start a thread\n", stderr);
			for (unsigned j = 0; j < i; j++)
				pthread_join(thrs[j].thread, NULL);
			goto out;
		}
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		pthread_join(thrs[i].thread, NULL);
		merge(res, &thrs[i].res);
	}
	res->window_s = cfg->duration_s;
	rc = 0;
out:
	for (unsigned i = 0; thrs && i < cfg->threads; i++)
		thr_free(&thrs[i]);
	free(thrs);
	for (unsigned i = 0; conns && i < cfg->connections; i++)
		if (conns[i].ch)
			grpc_channel_destroy(conns[i].ch);
	free(conns);
	if (setup_cq) {
		grpc_completion_queue_shutdown(setup_cq);
		while (grpc_completion_queue_next(setup_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
						  NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(setup_cq);
	}
	return rc;
}
