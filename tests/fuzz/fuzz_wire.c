/*
 * libFuzzer target for the hand-written request decoders (src/rpc/wire.c): request bytes come
 * straight from the network. Every input is decoded as a CheckEntitlementRequest and as a
 * BatchCheckEntitlementsRequest, by wire.c and by protobuf-c, and the two must agree: same
 * accept/refuse verdict, same fields (strings compared as protobuf-c's C strings). Any
 * disagreement, or a string pointing outside the input, aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ent/pbarena.h"
#include "ent/v1/entitlement.pb-c.h"
#include "rpc/wire.h"

static const uint8_t *lo, *hi;

static void same_str(struct ent_str ours, const char *theirs)
{
	size_t n = strlen(theirs);
	if (ours.len && ((const uint8_t *)ours.p < lo || (const uint8_t *)ours.p + ours.len > hi))
		abort();
	/* Longer only through an embedded NUL, where protobuf-c's C string ends. */
	if (ours.len < n || memcmp(ours.p, theirs, n) != 0 || (ours.len > n && ours.p[n] != '\0'))
		abort();
}

static void same(const struct ent_wire_check *w, const Ent__V1__CheckEntitlementRequest *r)
{
	same_str(w->customer_id, r->customer_id);
	same_str(w->feature_code, r->feature_code);
	if (w->quantity != r->quantity || w->at != r->at || w->min_sequence != r->min_sequence)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A private copy of exactly \a size bytes, so ASan/valgrind see any overread. */
	uint8_t *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	if (size)
		memcpy(p, data, size);
	lo = p;
	hi = p + size;
	struct ent_arena a;
	ProtobufCAllocator alloc;
	ent_arena_init(&a, 64 * 1024);
	ent_pb_allocator(&alloc, &a);

	struct ent_wire_check w;
	int rc = ent_rpc_wire_check_decode(p, size, &w);
	Ent__V1__CheckEntitlementRequest *r =
		ent__v1__check_entitlement_request__unpack(&alloc, size, p);
	if ((rc == 0) != (r != NULL))
		abort();
	if (r)
		same(&w, r);

	size_t count = 0;
	rc = ent_rpc_wire_batch_count(p, size, &count);
	Ent__V1__BatchCheckEntitlementsRequest *b =
		ent__v1__batch_check_entitlements_request__unpack(&alloc, size, p);
	if ((rc == 0) != (b != NULL))
		abort();
	if (b) {
		if (count != b->n_checks)
			abort();
		struct ent_wire_iter it;
		ent_rpc_wire_iter_init(&it, p, size);
		for (size_t i = 0; i < count; i++) {
			if (ent_rpc_wire_batch_next(&it, &w) != 1)
				abort();
			same(&w, b->checks[i]);
		}
		if (ent_rpc_wire_batch_next(&it, &w) != 0)
			abort();
	}
	ent_arena_deinit(&a);
	free(p);
	return 0;
}
