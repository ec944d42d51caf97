/*
 * ref_noop: the reference server. It answers /ent.v1.EntitlementService/CheckEntitlement with one
 * constant, valid CheckEntitlementResponse and does nothing else, so its throughput and latency
 * are what the gRPC C core itself costs on this machine: the ceiling entd is measured against.
 *
 * It is built the way entd's server is meant to be built (GRPC_C_CORE.md): the method is
 * registered with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER so the request arrives with the call
 * and each call needs exactly one batch; one completion queue per thread, each call bound to the
 * queue that received it, so a call never changes thread and nothing is locked.
 *
 *   ref_noop [--listen ADDR] [--threads N] [--calls N]
 *
 * Any other method gets UNIMPLEMENTED. SIGINT/SIGTERM: stop accepting, cancel what is in flight,
 * drain, exit 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "ent/v1/entitlement.pb-c.h"

#define CHECK_METHOD "/ent.v1.EntitlementService/CheckEntitlement"

/*
 * A slot is one server call from request to recycling. It is first handed to
 * grpc_server_request_registered_call (state REQUESTED); when a call arrives in it, the answer
 * batch is started (state ANSWERING) and a fresh slot is requested in its place, so the number
 * of pre-requested calls per queue stays constant. When the answer batch completes the call is
 * released and the slot goes back to its worker's free list. Only the worker thread owning the
 * queue touches its slots.
 */
struct worker;

enum slot_state {
	SLOT_REQUESTED,
	SLOT_ANSWERING,
};

/* Any other method is answered UNIMPLEMENTED, so a client that asks for one fails fast. */
#define GENERIC_SLOTS 4

struct slot {
	struct worker *w;
	enum slot_state state;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	bool generic; /* requested with grpc_server_request_call: not CheckEntitlement */
	grpc_call_details details;
	grpc_byte_buffer *payload;
	grpc_byte_buffer *reply;
	int cancelled;
	struct slot *next;
};

struct worker {
	grpc_completion_queue *cq;
	pthread_t thread;
	struct slot *free;
	unsigned long answered;
};

static grpc_server *server;
static void *check_method;
static atomic_bool stopping;
/* The packed constant answer. Static storage: every reply references it without a copy. */
static uint8_t reply_bytes[256];
static size_t reply_len;

static void pack_reply(void)
{
	Ent__V1__Usage usage = ENT__V1__USAGE__INIT;
	Ent__V1__CheckEntitlementResponse r = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__INIT;

	/* Metered and filled like a real answer, so the bytes on the wire match entd's size. */
	usage.limit = 100000;
	usage.used = 41234;
	usage.remaining = 58766;
	usage.reset_period = ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY;
	usage.period_start = 1733011200000;
	usage.period_end = 1735689600000;
	r.allowed = 1;
	r.reason = ENT__V1__REASON__REASON_ENTITLED;
	r.feature_type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED;
	r.value_case = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_NUMBER_VALUE;
	r.number_value = 100000;
	r.usage = &usage;
	r.next_change_at = usage.period_end;
	r.sequence = 1234567;
	reply_len = ent__v1__check_entitlement_response__get_packed_size(&r);
	if (reply_len > sizeof(reply_bytes))
		abort(); /* start-up invariant: the constant fits */
	ent__v1__check_entitlement_response__pack(&r, reply_bytes);
}

static void slot_free(struct slot *s)
{
	grpc_metadata_array_destroy(&s->md);
	if (s->generic)
		grpc_call_details_destroy(&s->details);
	free(s);
}

/* Pre-request one call of an unregistered method. Few are needed: nobody should call them. */
static void arm_generic(struct worker *w)
{
	struct slot *s = calloc(1, sizeof(*s));

	if (!s)
		return;
	s->w = w;
	s->generic = true;
	s->state = SLOT_REQUESTED;
	grpc_metadata_array_init(&s->md);
	grpc_call_details_init(&s->details);
	if (grpc_server_request_call(server, &s->call, &s->details, &s->md, w->cq, w->cq, s) !=
	    GRPC_CALL_OK)
		slot_free(s);
}

/* Hand a slot to the server for the next call. A failure only happens during shutdown. */
static void arm(struct worker *w)
{
	struct slot *s = w->free;

	if (s) {
		w->free = s->next;
	} else {
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		s->w = w;
		grpc_metadata_array_init(&s->md);
	}
	s->state = SLOT_REQUESTED;
	s->call = NULL;
	s->payload = NULL;
	s->reply = NULL;
	s->cancelled = 0;
	if (grpc_server_request_registered_call(server, check_method, &s->call, &s->deadline,
						&s->md, &s->payload, w->cq, w->cq,
						s) != GRPC_CALL_OK)
		slot_free(s);
}

static void recycle(struct slot *s)
{
	struct worker *w = s->w;

	if (s->reply)
		grpc_byte_buffer_destroy(s->reply);
	if (s->call)
		grpc_call_unref(s->call);
	/* Metadata keys and values belong to the call: the array is emptied, its storage kept. */
	s->md.count = 0;
	if (s->generic || atomic_load_explicit(&stopping, memory_order_relaxed)) {
		slot_free(s);
		return;
	}
	s->next = w->free;
	w->free = s;
}

static void answer(struct slot *s)
{
	grpc_slice body = grpc_slice_from_static_buffer(reply_bytes, reply_len);
	grpc_op ops[4];

	/* The request is not decoded: the reference measures gRPC alone. */
	if (s->payload) {
		grpc_byte_buffer_destroy(s->payload);
		s->payload = NULL;
	}
	memset(ops, 0, sizeof(ops));
	if (s->generic) {
		ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
		ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
		ops[2].data.recv_close_on_server.cancelled = &s->cancelled;
		s->state = SLOT_ANSWERING;
		if (grpc_call_start_batch(s->call, ops, 3, s, NULL) != GRPC_CALL_OK)
			recycle(s);
		return;
	}
	s->reply = grpc_raw_byte_buffer_create(&body, 1);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = s->reply;
	ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
	ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[3].data.recv_close_on_server.cancelled = &s->cancelled;
	s->state = SLOT_ANSWERING;
	/* If the batch cannot start, no completion will ever come for it: recycle here. */
	if (grpc_call_start_batch(s->call, ops, 4, s, NULL) != GRPC_CALL_OK)
		recycle(s);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		struct slot *s;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		s = ev.tag;
		if (s->state == SLOT_REQUESTED) {
			if (!ev.success) {
				/* A pending request slot released by the server's shutdown. */
				if (s->payload)
					grpc_byte_buffer_destroy(s->payload);
				s->payload = NULL;
				recycle(s);
				continue;
			}
			/* Re-arm first so a slot is waiting while this call is answered. */
			if (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
				if (s->generic)
					arm_generic(w);
				else
					arm(w);
			}
			answer(s);
		} else {
			w->answered += !s->generic;
			recycle(s);
		}
	}
	while (w->free) {
		struct slot *s = w->free;

		w->free = s->next;
		slot_free(s);
	}
	return NULL;
}

static int usage(FILE *out)
{
	fputs("usage: ref_noop [--listen ADDR] [--threads N] [--calls N]\n"
	      "  --listen ADDR  host:port or unix:/path (default 127.0.0.1:50052)\n"
	      "  --threads N    completion-queue threads (default 1)\n"
	      "  --calls N      calls pre-requested per queue (default 256)\n",
	      out);
	return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:50052";
	unsigned threads = 1, calls = 256;
	grpc_completion_queue *shutdown_cq;
	grpc_server_credentials *creds;
	struct worker *workers;
	sigset_t sigs;
	int sig, port;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout);
		if (i + 1 >= argc)
			return usage(stderr);
		if (!strcmp(a, "--listen"))
			listen = argv[++i];
		else if (!strcmp(a, "--threads"))
			threads = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(a, "--calls"))
			calls = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			return usage(stderr);
	}
	if (threads < 1 || threads > 256 || calls < 1 || calls > 100000)
		return usage(stderr);
	pack_reply();

	/* Blocked before grpc_init so every thread gRPC starts inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	grpc_init();
	server = grpc_server_create(NULL, NULL);
	check_method = grpc_server_register_method(server, CHECK_METHOD, NULL,
						   GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	workers = calloc(threads, sizeof(*workers));
	if (!check_method || !workers) {
		fputs("ref_noop: set-up failed\n", stderr);
		return 1;
	}
	for (unsigned i = 0; i < threads; i++) {
		workers[i].cq = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(server, workers[i].cq, NULL);
	}
	/* A queue of its own for the shutdown notification, polled by main. */
	shutdown_cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(server, shutdown_cq, NULL);
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(server, listen, creds);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		fprintf(stderr, "ref_noop: cannot listen on %s\n", listen);
		return 1;
	}
	grpc_server_start(server);
	for (unsigned i = 0; i < threads; i++) {
		for (unsigned k = 0; k < calls; k++)
			arm(&workers[i]);
		for (unsigned k = 0; k < GENERIC_SLOTS; k++)
			arm_generic(&workers[i]);
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
			fputs("ref_noop: cannot start a thread\n", stderr);
			return 1;
		}
	}
	fprintf(stderr, "ref_noop: listening on %s (%u thread%s)\n", listen, threads,
		threads == 1 ? "" : "s");

	while (sigwait(&sigs, &sig) != 0)
		;
	atomic_store(&stopping, true);
	grpc_server_shutdown_and_notify(server, shutdown_cq, NULL);
	grpc_server_cancel_all_calls(server);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			break;
	}
	grpc_server_destroy(server);
	unsigned long total = 0;
	for (unsigned i = 0; i < threads; i++) {
		grpc_completion_queue_shutdown(workers[i].cq);
		pthread_join(workers[i].thread, NULL);
		grpc_completion_queue_destroy(workers[i].cq);
		total += workers[i].answered;
	}
	grpc_completion_queue_shutdown(shutdown_cq);
	while (grpc_completion_queue_next(shutdown_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(shutdown_cq);
	free(workers);
	grpc_shutdown();
	fprintf(stderr, "ref_noop: stopped after %lu calls\n", total);
	return 0;
}
