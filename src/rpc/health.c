/*
 * grpc.health.v1.Health (grpc/grpc doc/health-checking.md). One status for the whole server,
 * flipped by ent_rpc_set_serving (NOT_SERVING as shutdown begins). Check answers NOT_FOUND for
 * a service this server does not have; Watch answers SERVICE_UNKNOWN and stays open, as the
 * protocol asks.
 *
 * Watch is a server stream kept on its worker's list. It has an early RECV_CLOSE_ON_SERVER in
 * flight to learn when the client leaves, and at most one SEND_MESSAGE: when the status
 * changes while a send is in flight, the send's completion sends the newer status. A status
 * change made on another thread reaches the workers as a notification (core.h).
 */
#include <stdio.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "rpc/core.h"

#define ST(x) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##x

static bool known_service(const char *s)
{
	static const char *const names[] = {"", "ent.v1.EntitlementService", "ent.v1.AdminService",
					    "grpc.health.v1.Health"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

static int current_status(struct ent_rpc *r)
{
	return atomic_load(&r->serving) ? ST(SERVING) : ST(NOT_SERVING);
}

static void h_check(struct ent_call *call, const ProtobufCMessage *m)
{
	const Grpc__Health__V1__HealthCheckRequest *req =
		(const Grpc__Health__V1__HealthCheckRequest *)m;
	if (!known_service(req->service)) {
		char msg[300];
		snprintf(msg, sizeof(msg), "unknown service '%.200s'", req->service);
		ent_rpc_call_fail_status(call, GRPC_STATUS_NOT_FOUND, msg);
		return;
	}
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = current_status(call->ws->w.rpc);
	ent_rpc_call_reply(call, &resp.base);
}

const struct ent_method ent_rpc_health_methods[] = {
	{.path = "/grpc.health.v1.Health/Check",
	 .request = &grpc__health__v1__health_check_request__descriptor,
	 .handler = h_check},
};
const size_t ent_rpc_health_methods_count =
	sizeof(ent_rpc_health_methods) / sizeof(ent_rpc_health_methods[0]);

/* ---- Watch ----------------------------------------------------------------------------- */

static void unlist(struct ent_call *c)
{
	if (!c->watch_listed)
		return;
	for (struct ent_call **pp = &c->ws->watches; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->next = NULL;
	c->watch_listed = false;
}

/* Send the status if it differs from the last one sent (no send may be in flight). */
static void send_current(struct ent_call *c)
{
	int st = c->watch_unknown ? ST(SERVICE_UNKNOWN) : current_status(c->ws->w.rpc);
	if (st == c->watch_sent)
		return;
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = st;
	if (ent_rpc_call_stream_send(c, &resp.base) == 0)
		c->watch_sent = st;
}

/*
 * Bring one watch up to date: send the current status if it changed, and at shutdown end the
 * stream after it (NOT_SERVING goes out before UNAVAILABLE ends the stream).
 */
static void watch_step(struct ent_call *c)
{
	if (c->finished || c->send_busy)
		return;
	send_current(c);
	if (atomic_load(&c->ws->w.rpc->stopping))
		ent_rpc_call_stream_end(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
}

void ent_rpc_health_watch_start(struct ent_call *c)
{
	if (!c->payload) {
		ent_rpc_call_stream_end(c, GRPC_STATUS_INVALID_ARGUMENT, "missing request message");
		return;
	}
	const Grpc__Health__V1__HealthCheckRequest *req =
		(const Grpc__Health__V1__HealthCheckRequest *)ent_rpc_call_unpack(
			c, &grpc__health__v1__health_check_request__descriptor, c->payload);
	grpc_byte_buffer_destroy(c->payload);
	c->payload = NULL;
	if (!req) {
		ent_rpc_call_stream_end(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request");
		return;
	}
	c->watch_unknown = !known_service(req->service);
	c->watch_sent = -1;

	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	c->pending++;
	if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) {
		c->pending--;
		grpc_call_cancel(c->call, NULL);
		c->finished = true;
		return;
	}
	c->close_armed = true;
	c->next = c->ws->watches;
	c->ws->watches = c;
	c->watch_listed = true;
	watch_step(c);
}

void ent_rpc_health_watch_sent(struct ent_call *c)
{
	watch_step(c);
}

void ent_rpc_health_watch_closed(struct ent_call *c)
{
	unlist(c);
	/* The client left (or our status went out): nothing more will be sent. A send still in
	   flight completes on its own and keeps the call until then. */
	c->finished = true;
}

void ent_rpc_health_watch_update(struct ent_wstate *ws)
{
	/* The list only changes on close completions, never inside watch_step. */
	for (struct ent_call *c = ws->watches; c; c = c->next)
		watch_step(c);
}
