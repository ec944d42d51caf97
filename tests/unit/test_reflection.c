/*
 * Server reflection: requests in, responses decoded with the generated code of both protocol
 * versions, descriptors decoded with descriptor.proto's generated code, the way grpcurl would
 * see them. Also the start-up failures (a set that does not decode, a missing import) and that
 * nothing a client sends makes the answer fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "rpc/reflection.h"

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest req_t;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse resp_t;

#define REQ(x)	GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

struct fixture {
	struct ent_arena arena;
	uint8_t *out;
	size_t out_len;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f || ent_rpc_reflection_init() != 0)
		return -1;
	ent_arena_init(&f->arena, 4096);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ent_arena_deinit(&f->arena);
	ent_rpc_reflection_deinit();
	free(f);
	return 0;
}

/* Answers raw bytes and decodes the response; the caller frees it. */
static resp_t *ask_raw(struct fixture *f, const uint8_t *buf, size_t len)
{
	ent_arena_reset(&f->arena);
	assert_int_equal(ent_rpc_reflection_answer(buf, len, &f->arena, &f->out, &f->out_len), 0);
	resp_t *r = grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, f->out_len,
										  f->out);
	assert_non_null(r);
	return r;
}

static resp_t *ask(struct fixture *f, const req_t *rq)
{
	size_t n = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(rq);
	uint8_t *buf = malloc(n + 1);
	assert_non_null(buf);
	grpc__reflection__v1alpha__server_reflection_request__pack(rq, buf);
	resp_t *r = ask_raw(f, buf, n);
	free(buf);
	return r;
}

static resp_t *ask_symbol(struct fixture *f, const char *sym)
{
	req_t rq = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
	rq.message_request_case = REQ(FILE_CONTAINING_SYMBOL);
	rq.file_containing_symbol = (char *)sym;
	return ask(f, &rq);
}

static Google__Protobuf__FileDescriptorProto *decode_fd(const ProtobufCBinaryData *b)
{
	Google__Protobuf__FileDescriptorProto *fd =
		google__protobuf__file_descriptor_proto__unpack(NULL, b->len, b->data);
	assert_non_null(fd);
	assert_non_null(fd->name);
	return fd;
}

/* The file names of a file_descriptor_response, in order, joined by spaces; checks that each
 * descriptor decodes and that no file is sent twice. */
static void file_names(const resp_t *r, char *out, size_t cap)
{
	assert_int_equal(r->message_response_case, RESP(FILE_DESCRIPTOR_RESPONSE));
	const Grpc__Reflection__V1alpha__FileDescriptorResponse *fr = r->file_descriptor_response;
	out[0] = '\0';
	for (size_t i = 0; i < fr->n_file_descriptor_proto; i++) {
		Google__Protobuf__FileDescriptorProto *fd =
			decode_fd(&fr->file_descriptor_proto[i]);
		char key[256];
		snprintf(key, sizeof(key), " %s ", fd->name);
		char padded[2048];
		snprintf(padded, sizeof(padded), " %s ", out);
		assert_null(strstr(padded, key));
		if (i)
			strncat(out, " ", cap - strlen(out) - 1);
		strncat(out, fd->name, cap - strlen(out) - 1);
		google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
	}
}

static void test_list_services(void **state)
{
	struct fixture *f = *state;
	req_t rq = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
	rq.host = "localhost:50051";
	rq.message_request_case = REQ(LIST_SERVICES);
	rq.list_services = "*";
	resp_t *r = ask(f, &rq);

	assert_string_equal(r->valid_host, "localhost:50051");
	assert_non_null(r->original_request);
	assert_int_equal(r->original_request->message_request_case, REQ(LIST_SERVICES));
	assert_string_equal(r->original_request->list_services, "*");
	assert_int_equal(r->message_response_case, RESP(LIST_SERVICES_RESPONSE));
	const Grpc__Reflection__V1alpha__ListServiceResponse *ls = r->list_services_response;
	assert_int_equal(ls->n_service, 5);
	assert_string_equal(ls->service[0]->name, "ent.v1.EntitlementService");
	assert_string_equal(ls->service[1]->name, "ent.v1.AdminService");
	assert_string_equal(ls->service[2]->name, "grpc.health.v1.Health");
	assert_string_equal(ls->service[3]->name, "grpc.reflection.v1alpha.ServerReflection");
	assert_string_equal(ls->service[4]->name, "grpc.reflection.v1.ServerReflection");
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

/* grpcurl `describe` with no argument resolves every listed service: each must resolve. */
static void test_every_listed_service_resolves(void **state)
{
	struct fixture *f = *state;
	const char *svcs[] = {"ent.v1.EntitlementService", "ent.v1.AdminService",
			      "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
			      "grpc.reflection.v1.ServerReflection"};
	const char *files[] = {
		"ent/v1/entitlement.proto", "ent/v1/admin.proto", "grpc/health/v1/health.proto",
		"grpc/reflection/v1alpha/reflection.proto", "grpc/reflection/v1/reflection.proto"};
	for (size_t i = 0; i < 5; i++) {
		resp_t *r = ask_symbol(f, svcs[i]);
		char names[1024];
		file_names(r, names, sizeof(names));
		assert_true(strncmp(names, files[i], strlen(files[i])) == 0);
		grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	}
}

static void test_file_by_filename(void **state)
{
	struct fixture *f = *state;
	req_t rq = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
	rq.message_request_case = REQ(FILE_BY_FILENAME);
	rq.file_by_filename = "ent/v1/entitlement.proto";
	resp_t *r = ask(f, &rq);

	char names[1024];
	file_names(r, names, sizeof(names));
	assert_string_equal(names, "ent/v1/entitlement.proto ent/v1/types.proto "
				   "google/protobuf/wrappers.proto");

	/* The asked file comes first, decodes, and names its service and methods. */
	const ProtobufCBinaryData *b = &r->file_descriptor_response->file_descriptor_proto[0];
	Google__Protobuf__FileDescriptorProto *fd = decode_fd(b);
	assert_string_equal(fd->package, "ent.v1");
	assert_int_equal(fd->n_service, 1);
	assert_string_equal(fd->service[0]->name, "EntitlementService");
	bool found = false, found_usage_batch = false;
	for (size_t i = 0; i < fd->service[0]->n_method; i++) {
		found |= strcmp(fd->service[0]->method[i]->name, "CheckEntitlement") == 0;
		found_usage_batch |=
			strcmp(fd->service[0]->method[i]->name, "BatchReportUsage") == 0;
	}
	assert_true(found);
	assert_true(found_usage_batch);
	google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);

	/* Byte for byte what protoc wrote into the set, not a re-encoding. */
	bool inside = false;
	for (size_t off = 0; off + b->len <= ent_rpc_reflection_fds_len && !inside; off++)
		inside = memcmp(ent_rpc_reflection_fds + off, b->data, b->len) == 0;
	assert_true(inside);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	/* A dependency can be asked for by name as well (grpcurl does when it lacks one). */
	rq.file_by_filename = "google/protobuf/wrappers.proto";
	r = ask(f, &rq);
	file_names(r, names, sizeof(names));
	assert_string_equal(names, "google/protobuf/wrappers.proto");
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	rq.file_by_filename = "ent/v1/nope.proto";
	r = ask(f, &rq);
	assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
	assert_int_equal(r->error_response->error_code, 5);
	assert_non_null(strstr(r->error_response->error_message, "ent/v1/nope.proto"));
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

static void test_file_containing_symbol(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *sym, *files;
	} cases[] = {
		{"ent.v1.EntitlementService",
		 "ent/v1/entitlement.proto ent/v1/types.proto google/protobuf/wrappers.proto"},
		{"ent.v1.EntitlementService.CheckEntitlement",
		 "ent/v1/entitlement.proto ent/v1/types.proto google/protobuf/wrappers.proto"},
		{"ent.v1.CheckEntitlementRequest",
		 "ent/v1/entitlement.proto ent/v1/types.proto google/protobuf/wrappers.proto"},
		{".ent.v1.Reason", "ent/v1/types.proto google/protobuf/wrappers.proto"},
		{"ent.v1.Reason", "ent/v1/types.proto google/protobuf/wrappers.proto"},
		/* a field, an enum value (scoped beside its enum), a nested type */
		{"ent.v1.CheckEntitlementRequest.customer_id",
		 "ent/v1/entitlement.proto ent/v1/types.proto google/protobuf/wrappers.proto"},
		{"ent.v1.REASON_ENTITLED", "ent/v1/types.proto google/protobuf/wrappers.proto"},
		{"ent.v1.Feature.MetadataEntry",
		 "ent/v1/types.proto google/protobuf/wrappers.proto"},
		{"google.protobuf.Int64Value", "google/protobuf/wrappers.proto"},
		{"grpc.health.v1.Health.Watch", "grpc/health/v1/health.proto"},
		{"grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
		 "grpc/reflection/v1/reflection.proto"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		resp_t *r = ask_symbol(f, cases[i].sym);
		char names[1024];
		file_names(r, names, sizeof(names));
		assert_string_equal(names, cases[i].files);
		assert_string_equal(r->original_request->file_containing_symbol, cases[i].sym);
		grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	}

	/* Admin imports types (which imports wrappers) and wrappers directly: each sent once. */
	resp_t *r = ask_symbol(f, "ent.v1.AdminService.UpsertFeature");
	char names[1024];
	file_names(r, names, sizeof(names));
	assert_string_equal(names, "ent/v1/admin.proto ent/v1/types.proto "
				   "google/protobuf/wrappers.proto");
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

static void test_unknown_symbol(void **state)
{
	struct fixture *f = *state;
	const char *unknown[] = {"ent.v1.NoSuchThing",
				 "ent.v1",
				 "ent",
				 "",
				 ".",
				 "ent.v1.EntitlementService.NoMethod",
				 "ent.v1.Reason.REASON_ENTITLED",
				 "\xff\xfe bad utf-8"};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		resp_t *r = ask_symbol(f, unknown[i]);
		assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
		assert_int_equal(r->error_response->error_code, 5);
		/* The message is safe to show: printable ASCII only. */
		for (const char *p = r->error_response->error_message; *p; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
		grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	}
}

static void test_extensions(void **state)
{
	struct fixture *f = *state;
	Grpc__Reflection__V1alpha__ExtensionRequest ext =
		GRPC__REFLECTION__V1ALPHA__EXTENSION_REQUEST__INIT;
	ext.containing_type = "ent.v1.CheckEntitlementRequest";
	ext.extension_number = 100;
	req_t rq = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
	rq.message_request_case = REQ(FILE_CONTAINING_EXTENSION);
	rq.file_containing_extension = &ext;
	resp_t *r = ask(f, &rq);
	assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
	assert_int_equal(r->error_response->error_code, 5);
	assert_int_equal(r->original_request->file_containing_extension->extension_number, 100);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	req_t rq2 = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
	rq2.message_request_case = REQ(ALL_EXTENSION_NUMBERS_OF_TYPE);
	rq2.all_extension_numbers_of_type = ".ent.v1.CheckEntitlementRequest";
	r = ask(f, &rq2);
	assert_int_equal(r->message_response_case, RESP(ALL_EXTENSION_NUMBERS_RESPONSE));
	assert_string_equal(r->all_extension_numbers_response->base_type_name,
			    "ent.v1.CheckEntitlementRequest");
	assert_int_equal(r->all_extension_numbers_response->n_extension_number, 0);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	/* Only messages have extensions: a service or an unknown name is NOT_FOUND. */
	const char *bad[] = {"ent.v1.EntitlementService", "ent.v1.Nope"};
	for (size_t i = 0; i < 2; i++) {
		rq2.all_extension_numbers_of_type = (char *)bad[i];
		r = ask(f, &rq2);
		assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
		assert_int_equal(r->error_response->error_code, 5);
		grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	}
}

static void test_malformed(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
		{"\xff\xff\xff", 3},	     /* a tag that never ends */
		{"\x1a\x10short", 7},	     /* file_by_filename longer than the input */
		{"\x2a\x03\x08\xff\xff", 5}, /* extension request with a torn varint */
		{"garbage bytes!", 14},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		resp_t *r = ask_raw(f, (const uint8_t *)bad[i].bytes, bad[i].len);
		assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
		assert_int_equal(r->error_response->error_code, 3);
		assert_null(r->original_request);
		grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	}

	/* Well-formed but asking nothing: an empty message, or only a host. */
	resp_t *r = ask_raw(f, NULL, 0);
	assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
	assert_int_equal(r->error_response->error_code, 3);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	r = ask_raw(f, (const uint8_t *)"\x0a\x01h", 3);
	assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
	assert_int_equal(r->error_response->error_code, 3);
	assert_string_equal(r->valid_host, "h");
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	/* Argument errors are returns, not answers. */
	uint8_t *out;
	size_t n;
	assert_int_equal(ent_rpc_reflection_answer(NULL, 3, &f->arena, &out, &n), -ENT_EINVAL);
	assert_int_equal(ent_rpc_reflection_answer((const uint8_t *)"", 0, NULL, &out, &n),
			 -ENT_EINVAL);
}

/* Unknown fields are answered around, not echoed: protobuf-c accepts a field number 0 that a
 * strict client would reject in the echoed original_request (found by fuzzing). */
static void test_unknown_fields_not_echoed(void **state)
{
	struct fixture *f = *state;
	/* list_services "" + field 15 varint 1 */
	resp_t *r = ask_raw(f, (const uint8_t *)"\x3a\x00\x78\x01", 4);
	assert_int_equal(r->message_response_case, RESP(LIST_SERVICES_RESPONSE));
	assert_int_equal(r->original_request->message_request_case, REQ(LIST_SERVICES));
	assert_int_equal(r->original_request->base.n_unknown_fields, 0);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	/* field 0 (two-byte tag), fixed64: no request set, and the answer still decodes */
	static const uint8_t zero[] = {0x81, 0x00, 0, 0, 0, 0, 0, 0, 0x07, 0x2b};
	r = ask_raw(f, zero, sizeof(zero));
	assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
	assert_int_equal(r->error_response->error_code, 3);
	assert_int_equal(r->original_request->base.n_unknown_fields, 0);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);

	/* the same inside file_containing_extension */
	static const uint8_t ext[] = {0x2a, 0x0a, 0x81, 0x00, 0, 0, 0, 0, 0, 0, 0x07, 0x2b};
	r = ask_raw(f, ext, sizeof(ext));
	assert_int_equal(r->message_response_case, RESP(ERROR_RESPONSE));
	assert_int_equal(r->error_response->error_code, 5);
	assert_int_equal(r->original_request->file_containing_extension->base.n_unknown_fields, 0);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

/* The v1 messages are laid out like v1alpha: v1 clients decode the same bytes. */
static void test_v1_layout(void **state)
{
	struct fixture *f = *state;
	Grpc__Reflection__V1__ServerReflectionRequest rq =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	rq.host = "h1";
	rq.message_request_case =
		GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	rq.file_containing_symbol = "ent.v1.CheckEntitlementResponse";
	uint8_t buf[256];
	size_t len = grpc__reflection__v1__server_reflection_request__pack(&rq, buf);
	ent_arena_reset(&f->arena);
	assert_int_equal(ent_rpc_reflection_answer(buf, len, &f->arena, &f->out, &f->out_len), 0);
	Grpc__Reflection__V1__ServerReflectionResponse *r =
		grpc__reflection__v1__server_reflection_response__unpack(NULL, f->out_len, f->out);
	assert_non_null(r);
	assert_string_equal(r->valid_host, "h1");
	assert_string_equal(r->original_request->file_containing_symbol,
			    "ent.v1.CheckEntitlementResponse");
	assert_int_equal(
		r->message_response_case,
		GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
	assert_int_equal(r->file_descriptor_response->n_file_descriptor_proto, 3);
	grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

/* A set with \a file as its only member (field 1, length-delimited). */
static size_t one_file_set(uint8_t *out, const uint8_t *file, size_t len)
{
	size_t n = 0;
	out[n++] = 0x0a;
	for (size_t v = len;; v >>= 7) {
		out[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		if (v < 0x80)
			break;
	}
	memcpy(out + n, file, len);
	return n + len;
}

static void test_init_failures(void **state)
{
	struct fixture *f = *state;
	ent_rpc_reflection_deinit();
	uint8_t *out;
	size_t n;
	assert_int_equal(ent_rpc_reflection_answer((const uint8_t *)"", 0, &f->arena, &out, &n),
			 -ENT_EUNAVAIL);

	/* Truncated: the last file's length runs past the end. */
	assert_int_equal(
		ent_rpc_reflection_init_set(ent_rpc_reflection_fds, ent_rpc_reflection_fds_len - 1),
		-ENT_ECORRUPT);
	static const uint8_t junk[] = {0x0a, 0x03, 0xff, 0xff, 0xff};
	assert_int_equal(ent_rpc_reflection_init_set(junk, sizeof(junk)), -ENT_ECORRUPT);
	assert_int_equal(ent_rpc_reflection_init_set(NULL, 0), -ENT_EINVAL);

	/* entitlement.proto alone: its imports are missing. Found in the set by its answer. */
	assert_int_equal(ent_rpc_reflection_init(), 0);
	req_t rq = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
	rq.message_request_case = REQ(FILE_BY_FILENAME);
	rq.file_by_filename = "ent/v1/entitlement.proto";
	resp_t *r = ask(f, &rq);
	const ProtobufCBinaryData *b = &r->file_descriptor_response->file_descriptor_proto[0];
	uint8_t *set = malloc(b->len + 16);
	assert_non_null(set);
	size_t set_len = one_file_set(set, b->data, b->len);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	ent_rpc_reflection_deinit();
	assert_int_equal(ent_rpc_reflection_init_set(set, set_len), -ENT_ECORRUPT);

	/* wrappers.proto alone decodes and resolves but lacks the served services. */
	rq.file_by_filename = "google/protobuf/wrappers.proto";
	assert_int_equal(ent_rpc_reflection_init(), 0);
	r = ask(f, &rq);
	b = &r->file_descriptor_response->file_descriptor_proto[0];
	uint8_t *set2 = malloc(b->len + 16);
	assert_non_null(set2);
	size_t set2_len = one_file_set(set2, b->data, b->len);
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	ent_rpc_reflection_deinit();
	assert_int_equal(ent_rpc_reflection_init_set(set2, set2_len), -ENT_ECORRUPT);

	/* After every failure a clean start still works, and a second init is a no-op. */
	assert_int_equal(ent_rpc_reflection_init(), 0);
	assert_int_equal(ent_rpc_reflection_init(), 0);
	r = ask_symbol(f, "ent.v1.Reason");
	assert_int_equal(r->message_response_case, RESP(FILE_DESCRIPTOR_RESPONSE));
	grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
	free(set);
	free(set2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_list_services, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_listed_service_resolves, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_by_filename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_containing_symbol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_symbol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extensions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_fields_not_echoed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_failures, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
