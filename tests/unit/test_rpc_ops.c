/*
 * rpc operations in process: listeners with different service sets (one grpc_server each,
 * sharing the workers), unix socket permissions, the metrics hooks (calls counted by method
 * and status, decisions by reason, unknown methods as "other"), and the admin token swap.
 * A real store in a temporary directory, the server on two unix sockets, a C-core client.
 * Integration tests against the real entd are in tests/integration/ops/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "ent/metrics.h"
#include "ent/v1/admin.pb-c.h"
#include "ent/v1/entitlement.pb-c.h"
#include "fixture.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/impl.h"

static void test_method_names(void **state)
{
	const char *names[256];
	size_t n = ent_rpc_method_names(names, 256);
	assert_true(n > 10 && n <= 256);
	assert_string_equal(names[n - 1], ENT_RPC_METHOD_OTHER);
	size_t found = 0;
	for (size_t i = 0; i < n; i++) {
		assert_non_null(names[i]);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(names[i], names[j]);
		found += !strcmp(names[i], "/ent.v1.EntitlementService/CheckEntitlement") ||
			 !strcmp(names[i], "/grpc.health.v1.Health/Watch") ||
			 !strcmp(names[i], "/ent.v1.AdminService/GetStatus") ||
			 !strcmp(names[i],
				 "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
	}
	assert_int_equal(found, 4);
	/* A short array is filled as far as it goes; the count is still the whole. */
	assert_int_equal(ent_rpc_method_names(names, 2), n);
}

/* ---- in-process server -------------------------------------------------------------- */

struct fixture {
	char dir[64];
	char health_addr[140], all_addr[140];
	struct ent_store *store;
	struct ent_metrics *metrics;
	struct ent_rpc *rpc;
	grpc_channel *health_ch, *all_ch;
};

static grpc_channel *channel(const char *addr)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(addr, creds, NULL);
	grpc_channel_credentials_release(creds);
	return ch;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/ent-test-rpcops-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->health_addr, sizeof(f->health_addr), "unix:%s/h.sock", f->dir);
	snprintf(f->all_addr, sizeof(f->all_addr), "unix:%s/a.sock", f->dir);

	char db[96];
	snprintf(db, sizeof(db), "%s/db", f->dir);
	struct ent_store_opts so = {.path = db, .map_size = 16u << 20};
	struct ent_err err = {0};
	assert_int_equal(ent_store_open(&so, &f->store, &err), 0);

	const char *names[256];
	size_t n = ent_rpc_method_names(names, 256);
	assert_int_equal(ent_metrics_new(names, n, &f->metrics), 0);

	struct ent_config_listener ls[2] = {
		{.address = f->health_addr, .services = ENT_SVC_HEALTH, .mode = 0600},
		{.address = f->all_addr, .services = ENT_SVC_ALL, .mode = 0640},
	};
	struct ent_rpc_opts ro = {
		.store = f->store,
		.listeners = ls,
		.n_listeners = 2,
		.threads = 2,
		.admin_token = "one",
		.calls_per_queue = 4,
		.max_concurrent_streams = 100,
		.keepalive_time_ms = 60000,
		.keepalive_timeout_ms = 5000,
		.min_ping_interval_ms = 10000,
		.metrics = f->metrics,
	};
	assert_int_equal(ent_rpc_start(&ro, &f->rpc, &err), 0);
	grpc_init();
	f->health_ch = channel(f->health_addr);
	f->all_ch = channel(f->all_addr);
	*state = f;
	return 0;
}

static void stop_server(struct fixture *f)
{
	if (f->rpc)
		ent_rpc_stop(f->rpc, 1000);
	f->rpc = NULL;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	grpc_channel_destroy(f->health_ch);
	grpc_channel_destroy(f->all_ch);
	grpc_shutdown_blocking();
	stop_server(f);
	ent_metrics_free(f->metrics);
	ent_store_close(f->store);
	fx_rm_rf(f->dir);
	free(f);
	return 0;
}

/* One unary call with an optional bearer token; returns the status (the reply is dropped). */
static grpc_status_code call(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
			     const char *token)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_call *c =
		grpc_channel_create_call(ch, NULL, 0, cq, grpc_slice_from_static_string(method),
					 NULL, fx_in_seconds(5), NULL);
	char bearer[64];
	grpc_metadata md;
	memset(&md, 0, sizeof(md));
	if (token) {
		snprintf(bearer, sizeof(bearer), "Bearer %s", token);
		md.key = grpc_slice_from_static_string("authorization");
		md.value = grpc_slice_from_copied_string(bearer);
	}
	grpc_metadata_array imd, tmd;
	grpc_metadata_array_init(&imd);
	grpc_metadata_array_init(&tmd);
	grpc_status_code st;
	grpc_slice det;
	grpc_byte_buffer *resp = NULL, *rq = fx_pack(req);
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	/* gRPC 1.51 can report a good connect as failed (docs/entctl.md): wait, not fail. */
	ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[0].data.send_initial_metadata.count = token ? 1 : 0;
	ops[0].data.send_initial_metadata.metadata = token ? &md : NULL;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = rq;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
	ops[5].data.recv_status_on_client.status = &st;
	ops[5].data.recv_status_on_client.status_details = &det;
	assert_int_equal(grpc_call_start_batch(c, ops, 6, (void *)1, NULL), GRPC_CALL_OK);
	grpc_event ev = grpc_completion_queue_pluck(cq, (void *)1, fx_in_seconds(10), NULL);
	assert_int_equal(ev.type, GRPC_OP_COMPLETE);
	if (token)
		grpc_slice_unref(md.value);
	grpc_slice_unref(det);
	grpc_metadata_array_destroy(&imd);
	grpc_metadata_array_destroy(&tmd);
	grpc_byte_buffer_destroy(rq);
	grpc_byte_buffer_destroy(resp);
	grpc_call_unref(c);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	return st;
}

static const char *CHECK = "/ent.v1.EntitlementService/CheckEntitlement";
static const char *HEALTH = "/grpc.health.v1.Health/Check";
static const char *STATUS = "/ent.v1.AdminService/GetStatus";

static void test_services_and_metrics(void **state)
{
	struct fixture *f = *state;
	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	req.customer_id = "cus_nobody";
	req.feature_code = "sso";
	Grpc__Health__V1__HealthCheckRequest h = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

	/* The health-only listener has its own server: checks are not there. */
	assert_int_equal(call(f->health_ch, HEALTH, &h.base, NULL), GRPC_STATUS_OK);
	assert_int_equal(call(f->health_ch, CHECK, &req.base, NULL), GRPC_STATUS_UNIMPLEMENTED);
	for (int i = 0; i < 3; i++)
		assert_int_equal(call(f->all_ch, CHECK, &req.base, NULL), GRPC_STATUS_OK);
	req.customer_id = "";
	assert_int_equal(call(f->all_ch, CHECK, &req.base, NULL), GRPC_STATUS_INVALID_ARGUMENT);

	struct stat st;
	assert_int_equal(stat(f->health_addr + 5, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(f->all_addr + 5, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);

	/* After the stop every call is recycled, hence counted. */
	stop_server(f);
	char *text;
	size_t len;
	assert_int_equal(ent_metrics_render(f->metrics, &text, &len), 0);
	assert_non_null(strstr(text, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/"
				     "CheckEntitlement\",code=\"OK\"} 3\n"));
	assert_non_null(strstr(text, "entd_rpc_calls_total{method=\"/ent.v1.EntitlementService/"
				     "CheckEntitlement\",code=\"INVALID_ARGUMENT\"} 1\n"));
	assert_non_null(strstr(text, "entd_rpc_calls_total{method=\"other\",code="
				     "\"UNIMPLEMENTED\"} 1\n"));
	assert_non_null(strstr(text, "entd_rpc_duration_seconds_count{method=\"/ent.v1."
				     "EntitlementService/CheckEntitlement\"} 4\n"));
	/* An empty store: the feature is checked first. */
	assert_non_null(strstr(text, "entd_check_decisions_total{reason=\"UNKNOWN_FEATURE\"} 3\n"));
	free(text);
}

static void test_admin_token_swap(void **state)
{
	struct fixture *f = *state;
	Ent__V1__GetStatusRequest req = ENT__V1__GET_STATUS_REQUEST__INIT;
	assert_int_equal(call(f->all_ch, STATUS, &req.base, "one"), GRPC_STATUS_OK);
	assert_int_equal(call(f->all_ch, STATUS, &req.base, "two"), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(ent_rpc_set_admin_token(f->rpc, "two"), 0);
	assert_int_equal(call(f->all_ch, STATUS, &req.base, "one"), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(call(f->all_ch, STATUS, &req.base, "two"), GRPC_STATUS_OK);
	/* No credential at all: admin is closed, not open. */
	assert_int_equal(ent_rpc_set_admin_token(f->rpc, NULL), 0);
	assert_int_equal(call(f->all_ch, STATUS, &req.base, "two"), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(call(f->all_ch, STATUS, &req.base, NULL), GRPC_STATUS_UNAUTHENTICATED);
	/* Without TLS listeners, a TLS reload has nothing to do. */
	struct ent_err err = {0};
	assert_int_equal(ent_rpc_reload_tls(f->rpc, NULL, 0, &err), 0);
	assert_true(ent_rpc_serving(f->rpc));
	ent_rpc_set_serving(f->rpc, false);
	assert_false(ent_rpc_serving(f->rpc));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_method_names),
		cmocka_unit_test_setup_teardown(test_services_and_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_admin_token_swap, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
