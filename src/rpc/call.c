/*
 * The per-call state machine: request -> dispatch -> (stream: recv/send ...) -> final batch ->
 * recycle. See core.h for the threading rules; the short version is that every completion of
 * a call arrives on its own worker thread, and only a unary call handed to the writer is
 * touched by another thread, and only until it starts its final batch.
 *
 * Recycling rules, which keep a call from being recycled twice or while another thread holds
 * it:
 * - unary and generic calls are recycled only when their final batch completes, or through the
 *   orphan stack when that batch could not be started;
 * - stream and watch calls are recycled at the end of the completion that leaves them with no
 *   batch in flight, always on the worker thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "ent/pbarena.h"
#include "ent/pbcheck.h"
#include "ent/v1/entitlement.pb-c.h"
#include "rpc/core.h"
#include "rpc/reflection.h"

/* Requests and responses of the check service fit in one block; large admin or batch calls
   grow the arena with bigger blocks and drop them on recycle. */
#define CALL_ARENA_BLOCK     (8 * 1024)
#define ENT_CALL_BIG_MESSAGE (64 * 1024)

static struct ent_rpc *call_rpc(const struct ent_call *c)
{
	return c->ws->w.rpc;
}

struct ent_arena *ent_rpc_call_arena(struct ent_call *call)
{
	return &call->arena;
}

struct ent_worker *ent_rpc_call_worker(struct ent_call *call)
{
	return &call->ws->w;
}

const struct ent_rpc_opts *ent_rpc_call_opts(struct ent_call *call)
{
	return &call_rpc(call)->opts;
}

void ent_rpc_call_drop_arena(struct ent_call *c)
{
	c->drop_arena = true;
}

struct ent_call *ent_rpc_call_new(struct ent_wstate *ws)
{
	struct ent_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ws = ws;
	c->t_request = (struct ent_tag){ENT_TAG_REQUEST, c};
	c->t_batch = (struct ent_tag){ENT_TAG_BATCH, c};
	c->t_recv = (struct ent_tag){ENT_TAG_RECV, c};
	c->t_send = (struct ent_tag){ENT_TAG_SEND, c};
	c->t_close = (struct ent_tag){ENT_TAG_CLOSE, c};
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	ent_arena_init(&c->arena, CALL_ARENA_BLOCK);
	ent_pb_allocator(&c->alloc, &c->arena);
	c->all_next = ws->all;
	ws->all = c;
	ws->n_calls++;
	return c;
}

void ent_rpc_call_free(struct ent_call *c)
{
	if (c->call)
		grpc_call_unref(c->call);
	ent_rpc_call_drop_answer(c);
	grpc_byte_buffer_destroy(c->payload);
	grpc_byte_buffer_destroy(c->recv);
	grpc_byte_buffer_destroy(c->held);
	grpc_byte_buffer_destroy(c->sent);
	if (c->has_details)
		grpc_slice_unref(c->status_details);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	ent_arena_deinit(&c->arena);
	free(c);
}

/* ---- metrics ------------------------------------------------------------------------ */

/* Count a finished call once; runs in recycle(), on the worker thread that owns ws->mb. A
   call that never started a final batch of ours was cancelled (the client left, or a batch
   failed). */
static void observe_call(struct ent_call *c)
{
	struct ent_metrics_block *mb = c->ws->mb;
	if (!mb || !c->rm)
		return;
	int64_t end = c->t_done_ns ? c->t_done_ns : ent_time_mono_ns();
	int64_t us = (end - c->t_arrive_ns) / 1000;
	ent_metrics_observe_call(mb, c->rm->mindex,
				 c->t_done_ns ? c->status : GRPC_STATUS_CANCELLED,
				 us > 0 ? (uint64_t)us : 0);
}

/* One check decision: its reason counter, and the decision log when sampled. */
static void observe_decision(struct ent_call *c, const Ent__V1__CheckEntitlementRequest *req,
			     const Ent__V1__CheckEntitlementResponse *resp)
{
	struct ent_metrics_block *mb = c->ws->mb;
	ent_metrics_count_reason(mb, (unsigned)resp->reason);
	struct ent_decision_log *dl =
		atomic_load_explicit(&c->ws->w.rpc->dlog, memory_order_relaxed);
	if (!dl || !req || !ent_metrics_decision_log_sample(dl, mb))
		return;
	struct ent_decision_record rec = {
		.customer = ent_str_c(req->customer_id),
		.feature = ent_str_c(req->feature_code),
		.quantity = req->quantity ? req->quantity : 1,
		.allowed = resp->allowed,
		.reason = (uint8_t)resp->reason,
		.seq = resp->sequence,
		.at = req->at ? req->at : ent_time_now_ms(),
	};
	ent_metrics_decision_log_write(dl, mb, &rec);
}

/*
 * Check responses are recognised by their descriptor where they are sent, so every way of
 * answering a check (unary, each item of a batch, each stream message) is counted in one
 * place. They are always sent on the worker thread (checks never go through the writer), which
 * owns the counter block. c->req is the request being answered.
 */
void ent_rpc_call_observe_response(struct ent_call *c, const ProtobufCMessage *resp)
{
	const ProtobufCMessage *rq = c->req;
	if (resp->descriptor == &ent__v1__check_entitlement_response__descriptor) {
		bool match =
			rq && rq->descriptor == &ent__v1__check_entitlement_request__descriptor;
		observe_decision(c, match ? (const Ent__V1__CheckEntitlementRequest *)rq : NULL,
				 (const Ent__V1__CheckEntitlementResponse *)resp);
	} else if (resp->descriptor == &ent__v1__batch_check_entitlements_response__descriptor) {
		const Ent__V1__BatchCheckEntitlementsResponse *b =
			(const Ent__V1__BatchCheckEntitlementsResponse *)resp;
		const Ent__V1__BatchCheckEntitlementsRequest *q =
			rq && rq->descriptor == &ent__v1__batch_check_entitlements_request__descriptor
				? (const Ent__V1__BatchCheckEntitlementsRequest *)rq
				: NULL;
		if (q && q->n_checks != b->n_results)
			q = NULL;
		for (size_t i = 0; i < b->n_results; i++)
			observe_decision(c, q ? q->checks[i] : NULL, b->results[i]);
	}
}

/* The same counting for the check path's hand-written answers (check.c), which have no
   protobuf-c messages to look at: one call per decided check, on the worker thread. */
void ent_rpc_call_observe_check(struct ent_call *c, const struct ent_check *chk,
				const struct ent_decision *d, uint64_t seq)
{
	struct ent_metrics_block *mb = c->ws->mb;
	ent_metrics_count_reason(mb, d->reason);
	struct ent_decision_log *dl =
		atomic_load_explicit(&c->ws->w.rpc->dlog, memory_order_relaxed);
	if (!dl || !ent_metrics_decision_log_sample(dl, mb))
		return;
	struct ent_decision_record rec = {
		.customer = chk->customer,
		.feature = chk->feature,
		.quantity = chk->quantity,
		.allowed = d->allowed,
		.reason = d->reason,
		.seq = seq,
		.at = chk->at,
	};
	ent_metrics_decision_log_write(dl, mb, &rec);
}

struct ent_call *ent_rpc_call_get(struct ent_wstate *ws)
{
	struct ent_call *c = ws->free;
	if (c) {
		ws->free = c->next;
		c->next = NULL;
		return c;
	}
	return ent_rpc_call_new(ws);
}

/* Back to the free list with every per-call resource released; runs on the worker thread. */
static void recycle(struct ent_call *c)
{
	struct ent_wstate *ws = c->ws;
	bool was_live = c->call != NULL;
	if (was_live)
		observe_call(c);

	/* An answer prepared ahead but never sent (the call was refused or ended first) must not
	   reach the next call this struct serves. */
	ent_rpc_call_drop_answer(c);
	/* grpc_byte_buffer_destroy accepts NULL. */
	grpc_byte_buffer_destroy(c->payload);
	grpc_byte_buffer_destroy(c->recv);
	grpc_byte_buffer_destroy(c->held);
	grpc_byte_buffer_destroy(c->sent);
	c->payload = c->recv = c->held = c->sent = NULL;
	if (c->call) {
		grpc_call_unref(c->call);
		c->call = NULL;
	}
	if (c->has_details) {
		grpc_slice_unref(c->status_details);
		c->has_details = false;
	}
	/* The server swaps its own metadata array into ours when it publishes a call; its keys
	   and values died with grpc_call_unref above, so release the array now. */
	grpc_metadata_array_destroy(&c->md);
	grpc_metadata_array_init(&c->md);
	if (c->rm && c->rm->kind == ENT_MK_GENERIC) {
		grpc_call_details_destroy(&c->details);
		grpc_call_details_init(&c->details);
	}
	if (c->drop_arena) {
		ent_arena_deinit(&c->arena);
		ent_arena_init(&c->arena, CALL_ARENA_BLOCK);
	} else {
		ent_arena_reset(&c->arena);
	}
	c->rm = NULL;
	c->req = NULL;
	c->t_done_ns = 0;
	c->cancelled = 0;
	c->pending = 0;
	c->finished = c->md_sent = c->send_busy = c->recv_busy = false;
	c->half_closed = c->close_armed = c->drop_arena = c->end_pending = false;
	c->watch_sent = -1;
	c->watch_unknown = c->watch_listed = false;
	c->resumed = false;

	c->next = ws->free;
	ws->free = c;
	if (was_live)
		atomic_fetch_sub_explicit(&ws->live, 1, memory_order_release);
}

/*
 * A call whose final batch could not be started gets no completion, so the thread that gave
 * up on it (perhaps the writer) hands it to its worker, which recycles it on the next
 * notification.
 */
static void orphan(struct ent_call *c)
{
	struct ent_wstate *ws = c->ws;
	struct ent_call *head = atomic_load(&ws->orphans);
	do {
		c->orphan_next = head;
	} while (!atomic_compare_exchange_weak(&ws->orphans, &head, c));
	ent_rpc_notify(ws);
}

void ent_rpc_call_collect_orphans(struct ent_wstate *ws)
{
	struct ent_call *c = atomic_exchange(&ws->orphans, NULL);
	while (c) {
		struct ent_call *n = c->orphan_next;
		c->orphan_next = NULL;
		recycle(c);
		c = n;
	}
}

/*
 * A parked check goes back to its worker the way an orphan does: pushed on a lock-free stack
 * and the worker woken, because the thread whose commit ended the wait (the writer) must not
 * decide checks (the read view and the counters are the worker's).
 */
void ent_rpc_call_resume(struct ent_call *c)
{
	struct ent_wstate *ws = c->ws;
	struct ent_call *head = atomic_load(&ws->resumed);
	do {
		c->resume_next = head;
	} while (!atomic_compare_exchange_weak(&ws->resumed, &head, c));
	ent_rpc_notify(ws);
}

void ent_rpc_call_collect_resumed(struct ent_wstate *ws)
{
	struct ent_call *c = atomic_exchange(&ws->resumed, NULL), *fifo = NULL;
	/* Pushed LIFO: answer in the order the waits ended. */
	while (c) {
		struct ent_call *n = c->resume_next;
		c->resume_next = fifo;
		fifo = c;
		c = n;
	}
	while (fifo) {
		struct ent_call *n = fifo->resume_next;
		fifo->resume_next = NULL;
		ent_rpc_check_resume(fifo);
		fifo = n;
	}
}

static bool is_streaming(const struct ent_call *c)
{
	return c->rm && (c->rm->kind == ENT_MK_CHECK_STREAM || c->rm->kind == ENT_MK_WATCH ||
			 c->rm->kind == ENT_MK_REFLECTION);
}

/* The call is over without a status of ours (the client left or a batch failed). */
void ent_rpc_call_kill(struct ent_call *c)
{
	if (c->call)
		grpc_call_cancel(c->call, NULL);
	c->finished = true;
}

int ent_rpc_call_arm(struct ent_call *c, const struct ent_rmethod *rm)
{
	struct ent_wstate *ws = c->ws;
	grpc_server *server = rm->srv->server;
	grpc_call_error e;

	c->rm = rm;
	if (rm->kind == ENT_MK_GENERIC) {
		e = grpc_server_request_call(server, &c->call, &c->details, &c->md, ws->cq, ws->cq,
					     &c->t_request);
	} else {
		/* Unary methods and Watch are registered so the request arrives with the call. */
		bool payload = rm->kind == ENT_MK_UNARY || rm->kind == ENT_MK_WATCH;
		e = grpc_server_request_registered_call(server, rm->handle, &c->call, &c->deadline,
							&c->md, payload ? &c->payload : NULL,
							ws->cq, ws->cq, &c->t_request);
	}
	if (e != GRPC_CALL_OK) {
		c->rm = NULL;
		c->next = ws->free;
		ws->free = c;
		return -ENT_EUNAVAIL;
	}
	return 0;
}

/* ---- sending ------------------------------------------------------------------------- */

/*
 * Pack \a msg into a byte buffer. The bytes go into one gRPC slice that the transport frees
 * once written: gRPC may keep a sent slice past the batch completion (the socket write is
 * asynchronous), so it cannot point into the call's arena.
 */
int ent_rpc_call_pack(struct ent_call *c, const ProtobufCMessage *msg, grpc_byte_buffer **out)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	if (len > call_rpc(c)->opts.max_message_bytes)
		return -ENT_EFULL;
	if (len > ENT_CALL_BIG_MESSAGE)
		c->drop_arena = true;
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	*out = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return 0;
}

/* Start the call's last batch. On failure no completion will come: hand the call back. */
void ent_rpc_call_start_final(struct ent_call *c, grpc_op *ops, size_t n, grpc_status_code status)
{
	/* For the metrics, before the batch: its completion may run on the worker before
	   grpc_call_start_batch returns here. Without metrics, no clock is read at all. */
	if (c->ws->mb) {
		c->status = (uint8_t)status;
		c->t_done_ns = ent_time_mono_ns();
	}
	c->finished = true;
	c->pending++;
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->t_batch, NULL);
	if (e == GRPC_CALL_OK)
		return;
	c->pending--;
	ent_log(ENT_LOG_ERROR, "rpc: cannot start the final batch", "error",
		grpc_call_error_to_string(e), NULL);
	grpc_call_cancel(c->call, NULL);
	/* Streams are recycled by the completion that is running now (worker thread); a unary
	   call may be on the writer thread here and must go through its worker. */
	if (!is_streaming(c))
		orphan(c);
}

void ent_rpc_call_fill_status(struct ent_call *c, grpc_op *op, grpc_status_code status,
			      const char *msg)
{
	op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	op->data.send_status_from_server.status = status;
	if (msg && *msg) {
		c->status_details = grpc_slice_from_copied_string(msg);
		c->has_details = true;
		op->data.send_status_from_server.status_details = &c->status_details;
	}
}

/* The one batch of a unary answer: metadata, the message \a bb (the call's now), OK. */
static void reply_bb(struct ent_call *c, grpc_byte_buffer *bb)
{
	c->sent = bb;
	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
	ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
	c->md_sent = true;
	ent_rpc_call_start_final(c, ops, 4, GRPC_STATUS_OK);
}

void ent_rpc_call_reply(struct ent_call *c, const ProtobufCMessage *resp)
{
	grpc_byte_buffer *bb;
	if (ent_rpc_call_pack(c, resp, &bb)) {
		ent_rpc_call_fail_status(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
					 "response is larger than the maximum message size");
		return;
	}
	ent_rpc_call_observe_response(c, resp);
	reply_bb(c, bb);
}

void ent_rpc_call_reply_slice(struct ent_call *c, grpc_slice msg)
{
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&msg, 1);
	grpc_slice_unref(msg);
	reply_bb(c, bb);
}

void ent_rpc_call_fail_status(struct ent_call *c, grpc_status_code status, const char *msg)
{
	if (is_streaming(c)) {
		ent_rpc_call_stream_end(c, status, msg);
		return;
	}
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ent_rpc_call_fill_status(c, &ops[n++], status, msg);
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	c->md_sent = true;
	ent_rpc_call_start_final(c, ops, n, status);
}

void ent_rpc_call_fail(struct ent_call *c, int ent_code, const char *msg)
{
	ent_rpc_call_fail_status(c, ent_rpc_status(ent_code), msg);
}

/* ---- receiving ----------------------------------------------------------------------- */

/*
 * protobuf-c hands strings over NUL-terminated and unchecked, so the wire bytes are checked
 * first: a string with an embedded NUL would otherwise act on a shorter id than the one sent,
 * and one that is not UTF-8 would be stored and break conforming clients later.
 */
static ProtobufCMessage *unpack_checked(struct ent_call *c, const ProtobufCMessageDescriptor *desc,
					grpc_slice s)
{
	struct ent_err err = {0};
	if (GRPC_SLICE_LENGTH(s) > ENT_CALL_BIG_MESSAGE)
		c->drop_arena = true;
	if (ent_pb_check_strings(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), &err)) {
		c->bad_request = ent_arena_strndup(&c->arena, err.msg, strlen(err.msg));
		return NULL;
	}
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &c->alloc, GRPC_SLICE_LENGTH(s),
							GRPC_SLICE_START_PTR(s));
	/* Fields outside the schema are dropped here, before any handler can store or echo
	   them (a 3 MiB unknown field was stored and echoed). */
	ent_pb_drop_unknown(m);
	return m;
}

ProtobufCMessage *ent_rpc_call_unpack(struct ent_call *c, const ProtobufCMessageDescriptor *desc,
				      grpc_byte_buffer *bb)
{
	c->bad_request = NULL;
	/* The common case: one uncompressed slice, unpacked in place without a copy. */
	if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
	    bb->data.raw.slice_buffer.count == 1)
		return unpack_checked(c, desc, bb->data.raw.slice_buffer.slices[0]);
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	ProtobufCMessage *m = unpack_checked(c, desc, s);
	grpc_slice_unref(s);
	return m;
}

static bool slice_is(grpc_slice s, const char *lit, size_t len)
{
	return GRPC_SLICE_LENGTH(s) == len && memcmp(GRPC_SLICE_START_PTR(s), lit, len) == 0;
}

/* By pointer: a short value is stored inline in the grpc_slice itself, so a pointer into a
   copy of the slice would dangle. */
static struct ent_str slice_str(const grpc_slice *s)
{
	return (struct ent_str){(const char *)GRPC_SLICE_START_PTR(*s),
				(uint32_t)GRPC_SLICE_LENGTH(*s)};
}

int ent_rpc_call_auth(struct ent_call *c)
{
	struct ent_str authz = {"", 0}, key = {"", 0};
	/* Keys arrive lower-case (HTTP/2). The values are borrowed from the call, which outlives
	   this check. */
	for (size_t i = 0; i < c->md.count; i++) {
		const grpc_metadata *m = &c->md.metadata[i];
		if (slice_is(m->key, "authorization", 13))
			authz = slice_str(&m->value);
		else if (slice_is(m->key, "x-api-key", 9))
			key = slice_str(&m->value);
	}
	/* One load: SIGHUP may swap the token, never free it while we run (server.c). */
	const char *token = atomic_load_explicit(&call_rpc(c)->token, memory_order_acquire);
	return ent_rpc_auth_check(token, authz, key);
}

static bool deadline_passed(gpr_timespec deadline)
{
	/* Requested calls carry a monotonic deadline; a timespan would not be a deadline. */
	if (deadline.clock_type == GPR_TIMESPAN || deadline.tv_sec == INT64_MAX)
		return false;
	return gpr_time_cmp(deadline, gpr_now(deadline.clock_type)) < 0;
}

static const char *auth_failure(const struct ent_call *c)
{
	const char *token = atomic_load_explicit(&call_rpc(c)->token, memory_order_acquire);
	if (!token || !*token)
		return "no credential is configured on this server (--admin-token), so this "
		       "method is refused";
	return "missing or invalid credential: send 'authorization: Bearer <token>' or "
	       "'x-api-key: <token>'";
}

/* The common gate of every method: deadline, then credential. Answers and returns false when
   the call must not run. */
static bool gate(struct ent_call *c, gpr_timespec deadline)
{
	if (deadline_passed(deadline)) {
		ent_rpc_call_fail_status(c, GRPC_STATUS_DEADLINE_EXCEEDED,
					 "deadline exceeded before the call was handled");
		return false;
	}
	if (c->rm->auth && ent_rpc_call_auth(c) != 0) {
		ent_rpc_call_fail_status(c, GRPC_STATUS_UNAUTHENTICATED, auth_failure(c));
		return false;
	}
	return true;
}

/*
 * The bytes of a received message: in place when it is one uncompressed slice (the common
 * case), else gathered into \a hold, which the caller unrefs after use (an empty slice
 * otherwise). False if the buffer cannot be read.
 */
static bool bb_flat(const grpc_byte_buffer *bb, const uint8_t **p, size_t *n)
{
	if (!bb || bb->type != GRPC_BB_RAW || bb->data.raw.compression != GRPC_COMPRESS_NONE ||
	    bb->data.raw.slice_buffer.count != 1)
		return false;
	const grpc_slice *s = &bb->data.raw.slice_buffer.slices[0];
	*p = GRPC_SLICE_START_PTR(*s);
	*n = GRPC_SLICE_LENGTH(*s);
	return true;
}

bool ent_rpc_call_bytes(grpc_byte_buffer *bb, grpc_slice *hold, const uint8_t **p, size_t *n)
{
	*hold = grpc_empty_slice();
	if (bb_flat(bb, p, n))
		return true;
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return false;
	*hold = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	*p = GRPC_SLICE_START_PTR(*hold);
	*n = GRPC_SLICE_LENGTH(*hold);
	return true;
}

/* A method that decodes its request itself reads it in place: no unpacking, no copy. */
static void dispatch_raw(struct ent_call *c)
{
	grpc_slice hold;
	const uint8_t *p;
	size_t n;
	if (!ent_rpc_call_bytes(c->payload, &hold, &p, &n)) {
		ent_rpc_call_fail_status(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request");
		return;
	}
	c->rm->m->raw(c, p, n);
	/* Raw handlers answer before returning, and the completion that recycles the call runs
	   on this thread after we return: c->payload is released then, hold now. */
	grpc_slice_unref(hold);
}

static void dispatch_unary(struct ent_call *c)
{
	if (!gate(c, c->deadline))
		return;
	if (!c->payload) {
		ent_rpc_call_fail_status(c, GRPC_STATUS_INVALID_ARGUMENT,
					 "missing request message");
		return;
	}
	if (c->rm->m->raw) {
		dispatch_raw(c);
		return;
	}
	ProtobufCMessage *req = ent_rpc_call_unpack(c, c->rm->m->request, c->payload);
	/* Strings were copied into the arena: the received bytes can go now. */
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	if (!req) {
		ent_rpc_call_fail_status(c, GRPC_STATUS_INVALID_ARGUMENT,
					 c->bad_request ? c->bad_request : "malformed request");
		return;
	}
	c->req = req;
	c->rm->m->handler(c, req);
	/* The call may belong to the writer thread now: do not touch it. */
}

static void dispatch_generic(struct ent_call *c)
{
	char msg[300];
	grpc_slice m = c->details.method;
	int len = (int)GRPC_SLICE_LENGTH(m);
	if (len > 200)
		len = 200;
	snprintf(msg, sizeof(msg), "unknown method '%.*s'", len,
		 (const char *)GRPC_SLICE_START_PTR(m));
	ent_rpc_call_fail_status(c, GRPC_STATUS_UNIMPLEMENTED, msg);
}

/* ---- answering ahead: the drain pass --------------------------------------------------- */

void ent_rpc_call_drop_answer(struct ent_call *c)
{
	if (c->ans.ok) {
		grpc_slice_unref(c->ans.out);
		c->ans.ok = false;
	}
}

/*
 * Only completions that ent_rpc_call_on_event will answer at once, with the check in hand, are
 * taken: a CheckEntitlement request that passes the gate (the gate runs again at dispatch, so
 * a call refused there just drops its answer), and a check stream message received with
 * nothing in flight. Anything else is left to the normal path; an answer that ends up unused
 * is dropped when the call is recycled.
 */
void ent_rpc_call_prepare(struct ent_wstate *ws, const grpc_event *evs, size_t n)
{
	struct ent_answer *ans[ENT_DRAIN_MAX];
	size_t m = 0;
	for (size_t i = 0; i < n && m < ENT_DRAIN_MAX; i++) {
		if (!evs[i].success)
			continue;
		const struct ent_tag *t = evs[i].tag;
		struct ent_call *c = t->owner;
		grpc_byte_buffer *bb;
		if (t->kind == ENT_TAG_REQUEST) {
			if (c->rm->kind != ENT_MK_UNARY || !c->rm->m->raw ||
			    !ent_rpc_check_is_unary_check(c->rm->m) ||
			    deadline_passed(c->deadline) ||
			    (c->rm->auth && ent_rpc_call_auth(c) != 0))
				continue;
			bb = c->payload;
		} else if (t->kind == ENT_TAG_RECV) {
			if (c->rm->kind != ENT_MK_CHECK_STREAM || c->finished || c->ans.ok)
				continue;
			bb = c->recv;
		} else {
			continue;
		}
		if (!bb_flat(bb, &c->ans.req, &c->ans.len))
			continue;
		ans[m++] = &c->ans;
	}
	if (m >= 2)
		(void)ent_rpc_check_decide(ws, ans, m, NULL);
}

/* ---- completions --------------------------------------------------------------------- */

static void on_request(struct ent_call *c, bool success)
{
	struct ent_wstate *ws = c->ws;
	struct ent_rpc *r = call_rpc(c);

	if (!success) {
		/* The slot was killed by shutdown: nothing arrived. */
		c->finished = true;
		recycle(c);
		return;
	}
	atomic_fetch_add_explicit(&ws->live, 1, memory_order_relaxed);
	if (ws->mb)
		c->t_arrive_ns = ent_time_mono_ns();
	/* Re-arm first: a unary handler may hand this call to the writer, after which this
	   thread must not touch it. */
	if (!atomic_load_explicit(&r->stopping, memory_order_relaxed)) {
		struct ent_call *n = ent_rpc_call_get(ws);
		if (!n || ent_rpc_call_arm(n, c->rm) != 0)
			ent_log(ENT_LOG_ERROR, "rpc: cannot re-arm a call slot", "method",
				c->rm->path, NULL);
	}
	switch (c->rm->kind) {
	case ENT_MK_UNARY:
		dispatch_unary(c);
		return;
	case ENT_MK_GENERIC:
		dispatch_generic(c);
		return;
	case ENT_MK_CHECK_STREAM:
	case ENT_MK_REFLECTION:
		if (gate(c, c->deadline))
			ent_rpc_stream_recv(c);
		break;
	case ENT_MK_WATCH:
		if (gate(c, c->deadline))
			ent_rpc_health_watch_start(c);
		break;
	}
	if (c->pending == 0 && c->finished)
		recycle(c);
}

void ent_rpc_call_on_event(struct ent_call *c, uint8_t kind, bool success)
{
	switch (kind) {
	case ENT_TAG_REQUEST:
		on_request(c, success);
		return;
	case ENT_TAG_BATCH:
		c->pending--;
		break;
	case ENT_TAG_RECV:
		c->pending--;
		c->recv_busy = false;
		if (c->rm->kind == ENT_MK_CHECK_STREAM && c->send_busy) {
			/* check_stream_next's batch: its send is done too. */
			c->send_busy = false;
			grpc_byte_buffer_destroy(c->sent);
			c->sent = NULL;
		}
		ent_rpc_stream_on_recv(c, success);
		break;
	case ENT_TAG_SEND:
		c->pending--;
		c->send_busy = false;
		grpc_byte_buffer_destroy(c->sent);
		c->sent = NULL;
		if (c->finished)
			break;
		if (!success) {
			ent_rpc_call_kill(c);
		} else if (c->end_pending) {
			c->end_pending = false;
			ent_rpc_call_stream_end(c, c->end_status, c->end_msg);
		} else if (c->rm->kind == ENT_MK_WATCH) {
			ent_rpc_health_watch_sent(c);
		} else {
			ent_rpc_stream_on_sent(c);
		}
		break;
	case ENT_TAG_CLOSE:
		c->pending--;
		ent_rpc_health_watch_closed(c);
		break;
	}
	if (c->pending == 0 && c->finished)
		recycle(c);
}
