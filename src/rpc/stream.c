/*
 * Streams on top of the call state machine (call.c): sending on a stream or Watch (one
 * SEND_MESSAGE in flight, the final status after it), and the two bidirectional streams that
 * read their own messages, the check stream and server reflection. Every function here runs
 * on the call's worker thread, from a completion of that call.
 *
 * One read and one write in flight: a message received while a send is in flight waits in
 * c->held, the next receive starts only once a message is answered, so answers keep request
 * order and a slow reader holds back the reading. The check stream's answer and next receive
 * go in one batch (check_stream_next).
 */
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "rpc/core.h"
#include "rpc/reflection.h"

/* ---- sending ------------------------------------------------------------------------- */

/*
 * Start the SEND_MESSAGE of \a bb (which the call owns from now on), with the initial metadata
 * the first time, and with \a recv also the next RECV_MESSAGE in the same batch (tag t_recv:
 * the check stream, below); alone it reports on t_send. On failure the call is killed.
 */
static int stream_send_bb(struct ent_call *c, grpc_byte_buffer *bb, bool recv)
{
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = bb;
	if (recv) {
		ops[n].op = GRPC_OP_RECV_MESSAGE;
		ops[n++].data.recv_message.recv_message = &c->recv;
		c->recv_busy = true;
	}
	c->sent = bb;
	c->send_busy = true;
	c->pending++;
	if (grpc_call_start_batch(c->call, ops, n, recv ? &c->t_recv : &c->t_send, NULL) !=
	    GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(bb);
		c->sent = NULL;
		c->send_busy = false;
		if (recv)
			c->recv_busy = false;
		c->pending--;
		ent_rpc_call_kill(c);
		return -ENT_EIO;
	}
	c->md_sent = true;
	return 0;
}

int ent_rpc_call_stream_send(struct ent_call *c, const ProtobufCMessage *msg)
{
	grpc_byte_buffer *bb;
	int rc = ent_rpc_call_pack(c, msg, &bb);
	if (rc)
		return rc;
	ent_rpc_call_observe_response(c, msg);
	return stream_send_bb(c, bb, false);
}

int ent_rpc_call_stream_send_bytes(struct ent_call *c, const void *data, size_t len)
{
	if (len > ent_rpc_call_opts(c)->max_message_bytes)
		return -ENT_EFULL;
	/* A copy: the bytes may live in the arena, which the next message resets, while gRPC
	   may keep a sent slice past the batch. */
	grpc_slice s = grpc_slice_from_copied_buffer(data, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return stream_send_bb(c, bb, false);
}

void ent_rpc_call_stream_end(struct ent_call *c, grpc_status_code status, const char *msg)
{
	if (c->finished)
		return;
	/* One SEND_MESSAGE at a time, and the status goes after it. */
	if (c->send_busy) {
		c->end_pending = true;
		c->end_status = status;
		snprintf(c->end_msg, sizeof(c->end_msg), "%s", msg ? msg : "");
		return;
	}
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ent_rpc_call_fill_status(c, &ops[n++], status, msg);
	if (!c->close_armed) {
		ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
		ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
		c->close_armed = true;
	}
	c->md_sent = true;
	ent_rpc_call_start_final(c, ops, n, status);
}

/* ---- the check stream ---------------------------------------------------------------- */

void ent_rpc_stream_recv(struct ent_call *c)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv;
	c->recv_busy = true;
	c->pending++;
	if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK) {
		c->recv_busy = false;
		c->pending--;
		ent_rpc_call_kill(c);
	}
}

/*
 * The check stream sends the answer to message k and receives message k+1 in one batch
 * (SEND_MESSAGE + RECV_MESSAGE, tag t_recv): one batch and one completion per message instead
 * of two, which is most of what a stream message costs beyond a check (docs/performance.md).
 * The answer is written out at once; the batch completes when the next message (or the
 * half-close) has arrived as well, so at every completion nothing is in flight, answers stay
 * in request order, and a slow reader holds back the next receive. \a answer is consumed.
 */
static void check_stream_next(struct ent_call *c, grpc_slice answer)
{
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&answer, 1);
	grpc_slice_unref(answer);
	(void)stream_send_bb(c, bb, true);
}

/*
 * One message of a reflection stream: ServerReflectionRequest bytes in, response bytes out
 * (rpc/reflection.h). The same one-read-one-write discipline as the check stream.
 */
static void reflection_process(struct ent_call *c, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb)) {
		grpc_byte_buffer_destroy(bb);
		ent_rpc_call_stream_end(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request");
		return;
	}
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	grpc_byte_buffer_destroy(bb);
	uint8_t *resp;
	size_t len;
	int rc = ent_rpc_reflection_answer(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), &c->arena,
					   &resp, &len);
	grpc_slice_unref(s);
	if (rc) {
		ent_rpc_call_stream_end(c, ent_rpc_status(rc), "reflection: cannot answer");
		return;
	}
	/* A whole file set can be large: do not keep those arena blocks pooled. */
	if (len > ENT_CALL_BIG_MESSAGE)
		c->drop_arena = true;
	if (ent_rpc_call_stream_send_bytes(c, resp, len) != 0) {
		ent_rpc_call_stream_end(
			c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			"reflection: response larger than the maximum message size");
		return;
	}
	if (!c->finished)
		ent_rpc_stream_recv(c);
}

/* Answer one received message; the next receive starts only once this one is answered, so
   responses stay in request order with one SEND_MESSAGE in flight. */
static void stream_process(struct ent_call *c, grpc_byte_buffer *bb)
{
	/* The previous message's request and response are no longer referenced: the response
	   was packed into its own slice. */
	ent_arena_reset(&c->arena);
	c->req = NULL;
	if (c->rm->kind == ENT_MK_REFLECTION) {
		reflection_process(c, bb);
		return;
	}
	grpc_slice hold, answer;
	const uint8_t *p;
	size_t n;
	struct ent_err err = {0};
	int rc = -ENT_EINVAL;
	if (ent_rpc_call_bytes(bb, &hold, &p, &n)) {
		rc = ent_rpc_check_stream_answer(c, p, n, &answer, &err);
		grpc_slice_unref(hold);
	} else {
		ent_err_set(&err, ENT_EINVAL, "malformed request");
	}
	grpc_byte_buffer_destroy(bb);
	if (rc) {
		ent_rpc_call_stream_end(c, ent_rpc_status(err.code), err.msg);
		return;
	}
	check_stream_next(c, answer);
}

void ent_rpc_stream_on_recv(struct ent_call *c, bool success)
{
	grpc_byte_buffer *bb = c->recv;
	c->recv = NULL;
	if (c->finished || !success) {
		grpc_byte_buffer_destroy(bb);
		ent_rpc_call_kill(c);
		return;
	}
	if (!bb) {
		/* The client half-closed: OK once the last response is out. */
		if (c->send_busy)
			c->half_closed = true;
		else
			ent_rpc_call_stream_end(c, GRPC_STATUS_OK, NULL);
		return;
	}
	if (c->send_busy)
		c->held = bb;
	else
		stream_process(c, bb);
}

void ent_rpc_stream_on_sent(struct ent_call *c)
{
	if (c->held) {
		grpc_byte_buffer *bb = c->held;
		c->held = NULL;
		stream_process(c, bb);
	} else if (c->half_closed) {
		ent_rpc_call_stream_end(c, GRPC_STATUS_OK, NULL);
	}
}
