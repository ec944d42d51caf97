/*
 * The blocking client on the gRPC C core (include/ent/client.h).
 *
 * Every operation is one batch whose tag is a stack variable of the caller, plucked from the
 * client's completion queue. Because each batch is plucked before the function returns, no
 * batch ever outlives the buffers and metadata arrays it points to, and a call never has more
 * than one batch of a kind in flight.
 */
#include "ent/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "grpc/health/v1/health.pb-c.h"

/* Responses can be large (Export of a whole state); a CLI should not refuse them. */
#define CLIENT_MAX_RECV (256 * 1024 * 1024)
/* Connection attempts that may fail before a call is started anyway (and fails fast, with the
   core's reason), and the reconnect backoff between them. */
#define CONNECT_ATTEMPTS   3
#define RECONNECT_FIRST_MS 100
#define RECONNECT_MAX_MS   1000

struct ent_client {
	grpc_channel *channel;
	grpc_completion_queue *cq;
	char *auth; /* "Bearer <token>", or NULL: no credential sent */
};

/*
 * A streaming call. Invariant: no batch is in flight between API calls, so the arrays below
 * may be reused or destroyed at any time from the owner's thread.
 */
struct ent_client_stream {
	ent_client *c;
	grpc_call *call;
	grpc_metadata_array initial_md; /* received with the first message */
	grpc_metadata auth_md;
	bool got_initial_md;
	bool half_closed;
	bool ended;    /* a receive saw the end of the stream, or a send failed */
	bool finished; /* status received */
};

static const char *const status_names[] = {
	[GRPC_STATUS_OK] = "OK",
	[GRPC_STATUS_CANCELLED] = "CANCELLED",
	[GRPC_STATUS_UNKNOWN] = "UNKNOWN",
	[GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
	[GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
	[GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
	[GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[GRPC_STATUS_ABORTED] = "ABORTED",
	[GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
	[GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
	[GRPC_STATUS_INTERNAL] = "INTERNAL",
	[GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
	[GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
	[GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *ent_client_status_name(grpc_status_code status)
{
	if ((unsigned)status < sizeof(status_names) / sizeof(status_names[0]) &&
	    status_names[status])
		return status_names[status];
	return "UNKNOWN_STATUS";
}

int ent_client_status_err(grpc_status_code status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return 0;
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_OUT_OF_RANGE:
		return -ENT_EINVAL;
	case GRPC_STATUS_NOT_FOUND:
		return -ENT_ENOTFOUND;
	case GRPC_STATUS_FAILED_PRECONDITION:
		return -ENT_EPRECOND;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return -ENT_EFULL;
	case GRPC_STATUS_UNAUTHENTICATED:
	case GRPC_STATUS_PERMISSION_DENIED:
		return -ENT_EAUTH;
	case GRPC_STATUS_UNAVAILABLE:
	case GRPC_STATUS_DEADLINE_EXCEEDED:
	case GRPC_STATUS_CANCELLED:
		return -ENT_EUNAVAIL;
	case GRPC_STATUS_ALREADY_EXISTS:
		return -ENT_EEXIST;
	case GRPC_STATUS_DATA_LOSS:
		return -ENT_ECORRUPT;
	default:
		return -ENT_EIO;
	}
}

static void set_details(char *details, size_t len, const char *p, size_t n)
{
	if (!details || !len)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(details, p, n);
	details[n] = '\0';
}

static void set_text(char *details, size_t len, const char *text)
{
	set_details(details, len, text, strlen(text));
}

static gpr_timespec deadline_of(int64_t deadline_ms)
{
	if (deadline_ms <= 0)
		return gpr_inf_future(GPR_CLOCK_REALTIME);
	return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
			    gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
}

int ent_client_new(const char *target, const char *token, ent_client **out)
{
	*out = NULL;
	if (!target || !*target)
		return -ENT_EINVAL;
	ent_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENT_ENOMEM;
	if (token && *token) {
		size_t n = strlen(token);
		c->auth = malloc(n + sizeof("Bearer "));
		if (!c->auth)
			goto fail_auth;
		memcpy(c->auth, "Bearer ", 7);
		memcpy(c->auth + 7, token, n + 1);
	}
	grpc_init();

	/*
	 * Retries stay off: a test that sends garbage or an oversized message must see the
	 * server's status of that one attempt, and admin writes are not idempotent.
	 */
	grpc_arg args[] = {
		{.type = GRPC_ARG_INTEGER,
		 .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		 .value.integer = CLIENT_MAX_RECV},
		{.type = GRPC_ARG_INTEGER,
		 .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
		 .value.integer = -1},
		{.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0},
		{.type = GRPC_ARG_INTEGER,
		 .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
		 .value.integer = RECONNECT_FIRST_MS},
		{.type = GRPC_ARG_INTEGER,
		 .key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
		 .value.integer = RECONNECT_FIRST_MS},
		{.type = GRPC_ARG_INTEGER,
		 .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
		 .value.integer = RECONNECT_MAX_MS},
	};
	grpc_channel_args chargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	c->channel = grpc_channel_create(target, creds, &chargs);
	grpc_channel_credentials_release(creds);
	if (!c->channel)
		goto fail_channel;
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	if (!c->cq)
		goto fail_cq;
	*out = c;
	return 0;

fail_cq:
	grpc_channel_destroy(c->channel);
fail_channel:
	grpc_shutdown();
	free(c->auth);
fail_auth:
	free(c);
	return -ENT_ENOMEM;
}

void ent_client_free(ent_client *c)
{
	if (!c)
		return;
	/* Nothing is in flight (every batch was plucked), so the queue drains at once. */
	grpc_completion_queue_shutdown(c->cq);
	while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(c->cq);
	grpc_channel_destroy(c->channel);
	grpc_shutdown();
	free(c->auth);
	free(c);
}

/* Start \a ops as one batch and wait for it. \return the batch's success flag. */
static bool run_batch(ent_client *c, grpc_call *call, const grpc_op *ops, size_t n)
{
	int tag;
	grpc_call_error e = grpc_call_start_batch(call, ops, n, &tag, NULL);
	if (e != GRPC_CALL_OK)
		return false;
	grpc_event ev =
		grpc_completion_queue_pluck(c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/*
 * Wait (until \a deadline) for the channel to be READY, through up to CONNECT_ATTEMPTS failed
 * connection attempts. Calls are fail-fast, and gRPC 1.51's TCP connect can report a failure
 * that is not one: it reads errno after other calls that may change it
 * (grpc_tcp_client_create_from_prepared_fd), so an in-progress connect shows up now and then
 * as "No such file or directory", and a first call would fail although entd is up. A new
 * attempt follows 100 ms later; a server that is really down still fails the call, after
 * ~0.6 s, with the core's own reason. Nothing is sent twice: this happens before the call.
 */
static void await_ready(ent_client *c, gpr_timespec deadline)
{
	int failures = 0;
	for (;;) {
		grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->channel, 1);
		if (st == GRPC_CHANNEL_READY || st == GRPC_CHANNEL_SHUTDOWN)
			return;
		gpr_timespec until = deadline;
		if (st == GRPC_CHANNEL_TRANSIENT_FAILURE) {
			/* pick_first stays in TRANSIENT_FAILURE until it is READY: give each
			   reconnect its window instead of waiting for a change. */
			if (++failures > CONNECT_ATTEMPTS)
				return;
			gpr_timespec window = gpr_time_add(
				gpr_now(GPR_CLOCK_REALTIME),
				gpr_time_from_millis(2 * RECONNECT_FIRST_MS, GPR_TIMESPAN));
			if (gpr_time_cmp(window, until) < 0)
				until = window;
		}
		int tag;
		grpc_channel_watch_connectivity_state(c->channel, st, until, c->cq, &tag);
		grpc_event ev = grpc_completion_queue_pluck(
			c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (!ev.success && st != GRPC_CHANNEL_TRANSIENT_FAILURE)
			return; /* the deadline passed: the call will say so */
		if (gpr_time_cmp(gpr_now(GPR_CLOCK_REALTIME), deadline) >= 0)
			return;
	}
}

static grpc_call *create_call(ent_client *c, const char *method, int64_t deadline_ms)
{
	await_ready(c, deadline_of(deadline_ms));
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
						   m, NULL, deadline_of(deadline_ms), NULL);
	grpc_slice_unref(m);
	return call;
}

static void fill_auth(const ent_client *c, grpc_metadata *md, grpc_op *op)
{
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	if (!c->auth)
		return;
	memset(md, 0, sizeof(*md));
	md->key = grpc_slice_from_static_string("authorization");
	md->value = grpc_slice_from_static_string(c->auth);
	op->data.send_initial_metadata.count = 1;
	op->data.send_initial_metadata.metadata = md;
}

/* Copy a received byte buffer into one malloc'ed block (never NULL on success, even empty). */
static int take_buffer(grpc_byte_buffer *bb, void **out, size_t *len)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return -ENT_ECORRUPT;
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	size_t n = GRPC_SLICE_LENGTH(s);
	void *p = malloc(n ? n : 1);
	if (p)
		memcpy(p, GRPC_SLICE_START_PTR(s), n);
	grpc_slice_unref(s);
	if (!p)
		return -ENT_ENOMEM;
	*out = p;
	*len = n;
	return 0;
}

static grpc_byte_buffer *make_buffer(const void *p, size_t n)
{
	grpc_slice s = grpc_slice_from_copied_buffer(p, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* The one-batch unary call: every op of the call in one batch, the status at the end. */
static int unary(ent_client *c, const char *method, grpc_byte_buffer *req, int64_t deadline_ms,
		 void **resp, size_t *resp_len, grpc_status_code *status, char *details,
		 size_t details_len)
{
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	grpc_slice st_details = grpc_empty_slice();
	grpc_metadata_array initial_md, trailing_md;
	grpc_byte_buffer *recv = NULL;
	grpc_metadata auth_md;
	grpc_op ops[6];
	int rc;

	*resp = NULL;
	*resp_len = 0;
	grpc_call *call = create_call(c, method, deadline_ms);
	if (!call) {
		st = GRPC_STATUS_INTERNAL;
		set_text(details, details_len, "cannot create call");
		rc = -ENT_ENOMEM;
		goto out;
	}
	grpc_metadata_array_init(&initial_md);
	grpc_metadata_array_init(&trailing_md);
	memset(ops, 0, sizeof(ops));
	fill_auth(c, &auth_md, &ops[0]);
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
	ops[5].data.recv_status_on_client.status = &st;
	ops[5].data.recv_status_on_client.status_details = &st_details;

	/*
	 * The batch "fails" as a whole when the server ended the call early (e.g. with an error
	 * before reading the message), yet the status op still completed: trust the status.
	 */
	run_batch(c, call, ops, 6);
	set_details(details, details_len, (const char *)GRPC_SLICE_START_PTR(st_details),
		    GRPC_SLICE_LENGTH(st_details));
	rc = ent_client_status_err(st);
	if (st == GRPC_STATUS_OK) {
		if (!recv) {
			st = GRPC_STATUS_INTERNAL;
			set_text(details, details_len, "OK without a response message");
			rc = -ENT_EIO;
		} else if ((rc = take_buffer(recv, resp, resp_len)) != 0) {
			st = GRPC_STATUS_INTERNAL;
			set_text(details, details_len, "cannot read the response message");
		}
	}
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_slice_unref(st_details);
	grpc_metadata_array_destroy(&initial_md);
	grpc_metadata_array_destroy(&trailing_md);
	grpc_call_unref(call);
out:
	if (status)
		*status = st;
	return rc;
}

int ent_client_call_raw(ent_client *c, const char *method_path, const void *req, size_t req_len,
			int64_t deadline_ms, void **resp_out, size_t *resp_len,
			grpc_status_code *status, char *details, size_t details_len)
{
	void *resp;
	size_t n;
	grpc_byte_buffer *bb = make_buffer(req, req_len);
	int rc = unary(c, method_path, bb, deadline_ms, &resp, &n, status, details, details_len);
	grpc_byte_buffer_destroy(bb);
	if (resp_out)
		*resp_out = resp;
	else
		free(resp);
	if (resp_len)
		*resp_len = resp ? n : 0;
	return rc;
}

int ent_client_call(ent_client *c, const char *method_path, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ms,
		    ProtobufCMessage **resp_out, grpc_status_code *status, char *details,
		    size_t details_len)
{
	void *resp;
	size_t n;
	*resp_out = NULL;
	grpc_byte_buffer *bb = pack_message(req);
	int rc = unary(c, method_path, bb, deadline_ms, &resp, &n, status, details, details_len);
	grpc_byte_buffer_destroy(bb);
	if (rc)
		return rc;
	*resp_out = protobuf_c_message_unpack(resp_desc, NULL, n, resp);
	free(resp);
	if (!*resp_out) {
		if (status)
			*status = GRPC_STATUS_INTERNAL;
		set_text(details, details_len, "response does not decode");
		return -ENT_ECORRUPT;
	}
	return 0;
}

/* ---- streams -------------------------------------------------------------------------- */

int ent_client_stream_open(ent_client *c, const char *method_path, int64_t deadline_ms,
			   ent_client_stream **out)
{
	*out = NULL;
	ent_client_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENT_ENOMEM;
	s->c = c;
	s->call = create_call(c, method_path, deadline_ms);
	if (!s->call) {
		free(s);
		return -ENT_ENOMEM;
	}
	grpc_metadata_array_init(&s->initial_md);

	grpc_op op;
	memset(&op, 0, sizeof(op));
	fill_auth(c, &s->auth_md, &op);
	if (!run_batch(c, s->call, &op, 1)) {
		/* The call is already over (no server, deadline): finish() tells why. */
		s->ended = true;
	}
	*out = s;
	return 0;
}

int ent_client_stream_send(ent_client_stream *s, const ProtobufCMessage *msg)
{
	if (s->ended || s->half_closed)
		return -ENT_EUNAVAIL;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = pack_message(msg);
	bool ok = run_batch(s->c, s->call, &op, 1);
	grpc_byte_buffer_destroy(op.data.send_message.send_message);
	if (!ok) {
		s->ended = true;
		return -ENT_EUNAVAIL;
	}
	return 0;
}

int ent_client_stream_close_send(ent_client_stream *s)
{
	if (s->half_closed)
		return 0;
	s->half_closed = true;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	return run_batch(s->c, s->call, &op, 1) ? 0 : -ENT_EUNAVAIL;
}

int ent_client_stream_recv(ent_client_stream *s, const ProtobufCMessageDescriptor *desc,
			   ProtobufCMessage **out)
{
	grpc_byte_buffer *recv = NULL;
	grpc_op ops[2];
	size_t n = 0;

	*out = NULL;
	if (s->finished)
		return 1;
	memset(ops, 0, sizeof(ops));
	/* The server's initial metadata comes before its first message: take both together. */
	if (!s->got_initial_md) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
		n++;
		s->got_initial_md = true;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n].data.recv_message.recv_message = &recv;
	n++;
	run_batch(s->c, s->call, ops, n);
	if (!recv) {
		s->ended = true;
		return 1;
	}
	void *p;
	size_t len;
	int rc = take_buffer(recv, &p, &len);
	grpc_byte_buffer_destroy(recv);
	if (rc)
		return rc;
	*out = protobuf_c_message_unpack(desc, NULL, len, p);
	free(p);
	return *out ? 0 : -ENT_ECORRUPT;
}

int ent_client_stream_exchange(ent_client_stream *s, const ProtobufCMessage *req,
			       const ProtobufCMessageDescriptor *resp_desc,
			       ProtobufCMessage **resp_out)
{
	*resp_out = NULL;
	int rc = ent_client_stream_send(s, req);
	if (rc == -ENT_EUNAVAIL)
		return 1;
	if (rc)
		return rc;
	return ent_client_stream_recv(s, resp_desc, resp_out);
}

int ent_client_stream_finish(ent_client_stream *s, grpc_status_code *status, char *details,
			     size_t details_len)
{
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	grpc_slice st_details = grpc_empty_slice();
	grpc_metadata_array trailing_md;
	grpc_op ops[2];
	size_t n = 0;

	if (s->finished) {
		if (status)
			*status = GRPC_STATUS_FAILED_PRECONDITION;
		set_text(details, details_len, "stream already finished");
		return -ENT_EPRECOND;
	}
	memset(ops, 0, sizeof(ops));
	if (!s->half_closed && !s->ended) {
		ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
		s->half_closed = true;
	}
	grpc_metadata_array_init(&trailing_md);
	ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[n].data.recv_status_on_client.trailing_metadata = &trailing_md;
	ops[n].data.recv_status_on_client.status = &st;
	ops[n].data.recv_status_on_client.status_details = &st_details;
	n++;
	run_batch(s->c, s->call, ops, n);
	s->finished = true;
	set_details(details, details_len, (const char *)GRPC_SLICE_START_PTR(st_details),
		    GRPC_SLICE_LENGTH(st_details));
	grpc_slice_unref(st_details);
	grpc_metadata_array_destroy(&trailing_md);
	if (status)
		*status = st;
	return ent_client_status_err(st);
}

void ent_client_stream_free(ent_client_stream *s)
{
	if (!s)
		return;
	if (!s->finished) {
		/*
		 * Cancel, then collect the status so the call completes before it is released;
		 * unref alone would also cancel, but waiting keeps the queue empty for free().
		 */
		grpc_call_cancel(s->call, NULL);
		s->ended = true;
		ent_client_stream_finish(s, NULL, NULL, 0);
	}
	grpc_metadata_array_destroy(&s->initial_md);
	grpc_call_unref(s->call);
	free(s);
}

/* ---- health --------------------------------------------------------------------------- */

int ent_client_health_check(ent_client *c, const char *service, int64_t deadline_ms,
			    int *serving_status, grpc_status_code *status, char *details,
			    size_t details_len)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp;
	req.service = (char *)(service ? service : "");
	*serving_status = 0;
	int rc = ent_client_call(c, "/grpc.health.v1.Health/Check", &req.base,
				 &grpc__health__v1__health_check_response__descriptor, deadline_ms,
				 &resp, status, details, details_len);
	if (rc)
		return rc;
	*serving_status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

int ent_client_health_watch_first(ent_client *c, const char *service, int64_t deadline_ms,
				  int *serving_status, grpc_status_code *status, char *details,
				  size_t details_len)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	ent_client_stream *s;
	req.service = (char *)(service ? service : "");
	*serving_status = 0;

	int rc = ent_client_stream_open(c, "/grpc.health.v1.Health/Watch", deadline_ms, &s);
	if (rc)
		return rc;
	if (ent_client_stream_send(s, &req.base) == 0)
		ent_client_stream_close_send(s);
	rc = ent_client_stream_recv(s, &grpc__health__v1__health_check_response__descriptor, &resp);
	if (rc == 0) {
		*serving_status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
		protobuf_c_message_free_unpacked(resp, NULL);
		if (status)
			*status = GRPC_STATUS_OK;
		set_text(details, details_len, "");
		/* A watch never ends by itself: cancel it (free does) rather than wait. */
		ent_client_stream_free(s);
		return 0;
	}
	if (rc < 0) {
		if (status)
			*status = GRPC_STATUS_INTERNAL;
		set_text(details, details_len, "response does not decode");
		ent_client_stream_free(s);
		return rc;
	}
	/* The stream ended without a message: its status says why (e.g. NOT_FOUND). */
	rc = ent_client_stream_finish(s, status, details, details_len);
	ent_client_stream_free(s);
	if (rc == 0) {
		if (status)
			*status = GRPC_STATUS_INTERNAL;
		set_text(details, details_len, "stream ended without a message");
		rc = -ENT_EIO;
	}
	return rc;
}
