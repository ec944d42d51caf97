/*
 * rpc: the ENT_E* -> gRPC status table, and the server core in process: a real store in a
 * temporary directory, the server on a unix socket, a C-core client. The in-process part
 * covers what is easy to get wrong in the core itself: health status changes reaching a
 * Watch stream from another thread (the worker notification), unknown methods, malformed
 * requests, and a stop that leaves nothing behind (run under ASan for the leak check).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "ent/v1/entitlement.pb-c.h"
#include "fixture.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/impl.h"

#define HS(x) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##x

static void test_status_table(void **state)
{
	assert_int_equal(ent_rpc_status(0), GRPC_STATUS_OK);
	assert_int_equal(ent_rpc_status(ENT_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(ent_rpc_status(-ENT_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(ent_rpc_status(-ENT_ENOTFOUND), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(ent_rpc_status(-ENT_EPRECOND), GRPC_STATUS_FAILED_PRECONDITION);
	assert_int_equal(ent_rpc_status(-ENT_EFULL), GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_int_equal(ent_rpc_status(-ENT_ENOMEM), GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_int_equal(ent_rpc_status(-ENT_EAUTH), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(ent_rpc_status(-ENT_EUNAVAIL), GRPC_STATUS_UNAVAILABLE);
	assert_int_equal(ent_rpc_status(-ENT_EEXIST), GRPC_STATUS_ALREADY_EXISTS);
	assert_int_equal(ent_rpc_status(-ENT_ECORRUPT), GRPC_STATUS_DATA_LOSS);
	assert_int_equal(ent_rpc_status(-ENT_EIO), GRPC_STATUS_INTERNAL);
	/* Unknown codes are the server's fault, never the caller's. */
	assert_int_equal(ent_rpc_status(999), GRPC_STATUS_INTERNAL);
	assert_int_equal(ent_rpc_status(-999), GRPC_STATUS_INTERNAL);
}

/* ---- in-process server -------------------------------------------------------------- */

struct fixture {
	char dir[64];
	char sock[128];
	char addr[140];
	struct ent_store *store;
	struct ent_rpc *rpc;
	grpc_channel *ch;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/ent-test-rpc-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/s.sock", f->dir);
	snprintf(f->addr, sizeof(f->addr), "unix:%s", f->sock);

	char db[96];
	snprintf(db, sizeof(db), "%s/db", f->dir);
	struct ent_store_opts so = {.path = db, .map_size = 16u << 20};
	struct ent_err err = {0};
	assert_int_equal(ent_store_open(&so, &f->store, &err), 0);

	const char *listen[] = {f->addr};
	struct ent_rpc_opts ro = {
		.store = f->store,
		.listen = listen,
		.n_listen = 1,
		.threads = 2,
		.admin_token = "tok",
		.calls_per_queue = 4,
	};
	assert_int_equal(ent_rpc_start(&ro, &f->rpc, &err), 0);
	/* The server holds its own grpc_init; the client's is separate. */
	grpc_init();
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	f->ch = grpc_channel_create(f->addr, creds, NULL);
	grpc_channel_credentials_release(creds);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	grpc_channel_destroy(f->ch);
	grpc_shutdown_blocking();
	if (f->rpc)
		ent_rpc_stop(f->rpc, 1000);
	ent_store_close(f->store);
	fx_rm_rf(f->dir);
	free(f);
	return 0;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	assert_true(grpc_byte_buffer_reader_init(&r, bb));
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	ProtobufCMessage *m =
		protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

/* One unary call with raw request bytes; returns the status, *resp the reply (or NULL). */
static grpc_status_code call_raw(struct fixture *f, const char *method, grpc_byte_buffer *req,
				 grpc_byte_buffer **resp, char *details, size_t dlen)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_call *call =
		grpc_channel_create_call(f->ch, NULL, 0, cq, grpc_slice_from_static_string(method),
					 NULL, fx_in_seconds(5), NULL);
	grpc_metadata_array imd, tmd;
	grpc_metadata_array_init(&imd);
	grpc_metadata_array_init(&tmd);
	grpc_status_code st;
	grpc_slice det;
	*resp = NULL;
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	/* gRPC 1.51 can report a good connect as failed (docs/entctl.md): wait, not fail. */
	ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
	ops[5].data.recv_status_on_client.status = &st;
	ops[5].data.recv_status_on_client.status_details = &det;
	assert_int_equal(grpc_call_start_batch(call, ops, 6, (void *)1, NULL), GRPC_CALL_OK);
	grpc_event ev = grpc_completion_queue_pluck(cq, (void *)1, fx_in_seconds(10), NULL);
	assert_int_equal(ev.type, GRPC_OP_COMPLETE);
	if (details)
		snprintf(details, dlen, "%.*s", (int)GRPC_SLICE_LENGTH(det),
			 (const char *)GRPC_SLICE_START_PTR(det));
	grpc_slice_unref(det);
	grpc_metadata_array_destroy(&imd);
	grpc_metadata_array_destroy(&tmd);
	grpc_byte_buffer_destroy(req);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	return st;
}

static int health_check(struct fixture *f, const char *service, grpc_status_code *st)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)service;
	grpc_byte_buffer *resp;
	*st = call_raw(f, "/grpc.health.v1.Health/Check", fx_pack(&req.base), &resp, NULL, 0);
	if (!resp)
		return -1;
	Grpc__Health__V1__HealthCheckResponse *r = (Grpc__Health__V1__HealthCheckResponse *)unpack(
		&grpc__health__v1__health_check_response__descriptor, resp);
	grpc_byte_buffer_destroy(resp);
	assert_non_null(r);
	int status = r->status;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return status;
}

static void test_health_check(void **state)
{
	struct fixture *f = *state;
	grpc_status_code st;
	assert_int_equal(health_check(f, "", &st), HS(SERVING));
	assert_int_equal(health_check(f, "ent.v1.EntitlementService", &st), HS(SERVING));
	assert_int_equal(health_check(f, "no.such.Service", &st), -1);
	assert_int_equal(st, GRPC_STATUS_NOT_FOUND);
	ent_rpc_set_serving(f->rpc, false);
	assert_int_equal(health_check(f, "", &st), HS(NOT_SERVING));
	ent_rpc_set_serving(f->rpc, true);
	assert_int_equal(health_check(f, "ent.v1.AdminService", &st), HS(SERVING));
}

/* A Watch sees the current status at once, then every change made from this thread. */
static void test_health_watch(void **state)
{
	struct fixture *f = *state;
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_call *call = grpc_channel_create_call(
		f->ch, NULL, 0, cq, grpc_slice_from_static_string("/grpc.health.v1.Health/Watch"),
		NULL, fx_in_seconds(20), NULL);
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	grpc_metadata_array imd, tmd;
	grpc_metadata_array_init(&imd);
	grpc_metadata_array_init(&tmd);
	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	/* gRPC 1.51 can report a good connect as failed (docs/entctl.md): wait, not fail. */
	ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = fx_pack(&req.base);
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
	assert_int_equal(grpc_call_start_batch(call, ops, 4, (void *)1, NULL), GRPC_CALL_OK);
	assert_true(grpc_completion_queue_pluck(cq, (void *)1, fx_in_seconds(10), NULL).success);
	grpc_byte_buffer_destroy(ops[1].data.send_message.send_message);

	int want[] = {HS(SERVING), HS(NOT_SERVING), HS(SERVING)};
	for (int i = 0; i < 3; i++) {
		if (i == 1)
			ent_rpc_set_serving(f->rpc, false);
		if (i == 2)
			ent_rpc_set_serving(f->rpc, true);
		grpc_byte_buffer *bb = NULL;
		grpc_op op;
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &bb;
		assert_int_equal(grpc_call_start_batch(call, &op, 1, (void *)2, NULL),
				 GRPC_CALL_OK);
		grpc_event ev = grpc_completion_queue_pluck(cq, (void *)2, fx_in_seconds(10), NULL);
		assert_int_equal(ev.type, GRPC_OP_COMPLETE);
		assert_non_null(bb);
		Grpc__Health__V1__HealthCheckResponse *r =
			(Grpc__Health__V1__HealthCheckResponse *)unpack(
				&grpc__health__v1__health_check_response__descriptor, bb);
		grpc_byte_buffer_destroy(bb);
		assert_int_equal(r->status, want[i]);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}

	grpc_call_cancel(call, NULL);
	grpc_status_code st;
	grpc_slice det;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &tmd;
	op.data.recv_status_on_client.status = &st;
	op.data.recv_status_on_client.status_details = &det;
	assert_int_equal(grpc_call_start_batch(call, &op, 1, (void *)3, NULL), GRPC_CALL_OK);
	assert_int_equal(grpc_completion_queue_pluck(cq, (void *)3, fx_in_seconds(10), NULL).type,
			 GRPC_OP_COMPLETE);
	assert_int_equal(st, GRPC_STATUS_CANCELLED);
	grpc_slice_unref(det);
	grpc_metadata_array_destroy(&imd);
	grpc_metadata_array_destroy(&tmd);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	char det[256];
	grpc_byte_buffer *resp;
	grpc_slice junk = grpc_slice_from_static_string("\xff\xff\xff\xff");
	grpc_status_code st =
		call_raw(f, "/ent.v1.EntitlementService/CheckEntitlement",
			 grpc_raw_byte_buffer_create(&junk, 1), &resp, det, sizeof(det));
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(det, "malformed request");
	assert_null(resp);

	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = "c";
	req.feature_code = "f";
	req.quantity = -2;
	st = call_raw(f, "/ent.v1.EntitlementService/CheckEntitlement", fx_pack(&req.base), &resp,
		      det, sizeof(det));
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(det, "quantity: must not be negative");

	st = call_raw(f, "/no.Such/Method", fx_pack(&req.base), &resp, det, sizeof(det));
	assert_int_equal(st, GRPC_STATUS_UNIMPLEMENTED);
	assert_string_equal(det, "unknown method '/no.Such/Method'");

	/* Admin rows need the credential; none was sent. */
	st = call_raw(f, "/ent.v1.AdminService/GetStatus", fx_pack(&req.base), &resp, det,
		      sizeof(det));
	assert_int_equal(st, GRPC_STATUS_UNAUTHENTICATED);

	/* Writes without a writer are refused, not lost. */
	Ent__V1__ReportUsageRequest ru = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	ru.customer_id = "c";
	ru.feature_code = "f";
	ru.quantity = 1;
	ru.idempotency_key = "k";
	st = call_raw(f, "/ent.v1.EntitlementService/ReportUsage", fx_pack(&ru.base), &resp, det,
		      sizeof(det));
	assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
}

/* An empty store: every check answers, with the reason, from sequence 0. */
static void test_check_empty_store(void **state)
{
	struct fixture *f = *state;
	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = "cus_1";
	req.feature_code = "sso";
	grpc_byte_buffer *resp;
	grpc_status_code st = call_raw(f, "/ent.v1.EntitlementService/CheckEntitlement",
				       fx_pack(&req.base), &resp, NULL, 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_non_null(resp);
	Ent__V1__CheckEntitlementResponse *r = (Ent__V1__CheckEntitlementResponse *)unpack(
		&ent__v1__check_entitlement_response__descriptor, resp);
	grpc_byte_buffer_destroy(resp);
	assert_non_null(r);
	assert_false(r->allowed);
	assert_int_not_equal(r->reason, ENT__V1__REASON__REASON_ENTITLED);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	req.min_sequence = 5;
	char det[256];
	st = call_raw(f, "/ent.v1.EntitlementService/CheckEntitlement", fx_pack(&req.base), &resp,
		      det, sizeof(det));
	assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(det, "snapshot sequence 0 is older than min_sequence 5");
}

/* Listener failures name the address and leave nothing running. */
static void test_bad_listener(void **state)
{
	struct fixture *f = *state;
	const char *listen[] = {"unix:/nonexistent-dir/x.sock"};
	struct ent_rpc_opts ro = {.store = f->store, .listen = listen, .n_listen = 1, .threads = 1};
	struct ent_rpc *r = NULL;
	struct ent_err err = {0};
	assert_int_not_equal(ent_rpc_start(&ro, &r, &err), 0);
	assert_null(r);
	assert_non_null(strstr(err.msg, "unix:/nonexistent-dir/x.sock"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_table),
		cmocka_unit_test_setup_teardown(test_health_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health_watch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_empty_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_listener, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
