/*
 * libFuzzer target for server reflection: a ServerReflectionRequest comes straight from any
 * client that can open a stream, so every byte string must produce a response that decodes,
 * carries exactly one answer, and never reads outside the input or the embedded set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ent/pbarena.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "rpc/reflection.h"

#define RESP(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* Set up once per process, as entd does at start; the arena is reset per input. */
static struct ent_arena arena;

static void check_response(const uint8_t *out, size_t n)
{
	ProtobufCAllocator alloc;
	ent_pb_allocator(&alloc, &arena);
	Grpc__Reflection__V1alpha__ServerReflectionResponse *r =
		grpc__reflection__v1alpha__server_reflection_response__unpack(&alloc, n, out);
	if (!r)
		abort();
	switch (r->message_response_case) {
	case RESP(FILE_DESCRIPTOR_RESPONSE): {
		const Grpc__Reflection__V1alpha__FileDescriptorResponse *fr =
			r->file_descriptor_response;
		if (fr->n_file_descriptor_proto == 0)
			abort();
		for (size_t i = 0; i < fr->n_file_descriptor_proto; i++) {
			const ProtobufCBinaryData *b = &fr->file_descriptor_proto[i];
			if (!google__protobuf__file_descriptor_proto__unpack(&alloc, b->len,
									     b->data))
				abort();
		}
		break;
	}
	case RESP(ERROR_RESPONSE):
		/* Error messages quote client input: only printable ASCII may come back. */
		for (const char *p = r->error_response->error_message; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort();
		if (r->error_response->error_code != 3 && r->error_response->error_code != 5)
			abort();
		break;
	case RESP(LIST_SERVICES_RESPONSE):
	case RESP(ALL_EXTENSION_NUMBERS_RESPONSE):
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		if (ent_rpc_reflection_init() != 0)
			abort();
		ent_arena_init(&arena, 4096);
		ready = 1;
	}
	/* A private copy of exactly \a size bytes, so ASan/valgrind see any overread. */
	uint8_t *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	if (size)
		memcpy(p, data, size);
	ent_arena_reset(&arena);
	uint8_t *out;
	size_t n;
	if (ent_rpc_reflection_answer(p, size, &arena, &out, &n) != 0)
		abort();
	check_response(out, n);
	free(p);
	return 0;
}
