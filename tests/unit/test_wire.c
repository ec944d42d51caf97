/*
 * The hand-written hot-path codec (src/rpc/wire.c) against protobuf-c, on many random messages:
 *  - decode: random CheckEntitlementRequest / BatchCheckEntitlementsRequest packed by
 *    protobuf-c, with unknown fields of every wire type and repeated fields spliced in, must
 *    decode to the same fields; random corruptions must be refused exactly when protobuf-c
 *    refuses them;
 *  - encode: random decisions (every feature type, statics, privileges, overrides, usage with
 *    negative and huge numbers) must give the bytes protobuf-c packs for the
 *    CheckEntitlementResponse check.c built before (the builder is copied below as the
 *    reference), alone and framed as BatchCheckEntitlementsResponse items.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/pbarena.h"
#include "ent/v1/entitlement.pb-c.h"
#include "rpc/wire.h"

#define ROUNDS 20000

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static uint32_t below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

/* Values that exercise every varint length, zero and negatives. */
static int64_t rnd_i64(void)
{
	switch (below(6)) {
	case 0:
		return 0;
	case 1:
		return (int64_t)below(128);
	case 2:
		return -(int64_t)below(1000) - 1;
	case 3:
		return (int64_t)(rnd() >> below(64));
	case 4:
		return INT64_MIN + (int64_t)below(3);
	default:
		return (int64_t)rnd();
	}
}

/* A string without NUL (protobuf-c's strings are C strings), sometimes empty. */
static char *rnd_str(struct ent_arena *a, uint32_t max)
{
	uint32_t n = below(4) == 0 ? 0 : below(max + 1);
	char *s = ent_arena_alloc(a, n + 1);
	for (uint32_t i = 0; i < n; i++)
		s[i] = (char)(1 + below(255));
	s[n] = '\0';
	return s;
}

static struct ent_str str_of(const char *s)
{
	return (struct ent_str){s, (uint32_t)strlen(s)};
}

/* ---- decoding ------------------------------------------------------------------------ */

static void rnd_request(struct ent_arena *a, Ent__V1__CheckEntitlementRequest *r)
{
	ent__v1__check_entitlement_request__init(r);
	r->customer_id = rnd_str(a, 40);
	r->feature_code = rnd_str(a, 40);
	r->quantity = rnd_i64();
	r->at = rnd_i64();
	r->min_sequence = (uint64_t)rnd_i64();
}

/* An unknown field (number 6..2^29-1) of a valid wire type, appended at \a p. */
static size_t put_unknown(uint8_t *p)
{
	uint8_t *s = p;
	uint32_t field = 6 + below(1000);
	if (below(8) == 0)
		field = (1u << 29) - 1 - below(10);
	static const unsigned wts[] = {0, 1, 2, 5};
	unsigned wt = wts[below(4)];
	uint64_t tag = (uint64_t)field << 3 | wt;
	while (tag >= 0x80) {
		*p++ = (uint8_t)(tag | 0x80);
		tag >>= 7;
	}
	*p++ = (uint8_t)tag;
	uint64_t v = rnd();
	switch (wt) {
	case 0:
		v >>= below(64);
		while (v >= 0x80) {
			*p++ = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		*p++ = (uint8_t)v;
		break;
	case 1:
		memcpy(p, &v, 8);
		p += 8;
		break;
	case 2: {
		uint32_t n = below(20);
		*p++ = (uint8_t)n;
		for (uint32_t i = 0; i < n; i++)
			*p++ = (uint8_t)rnd();
		break;
	}
	case 5:
		memcpy(p, &v, 4);
		p += 4;
		break;
	}
	return (size_t)(p - s);
}

/* A packed request, sometimes with unknown fields, sometimes a second message appended
   (protobuf's merge: the later scalar wins). Returns the length; *expect gets the merge. */
static size_t rnd_request_bytes(struct ent_arena *a, uint8_t *buf,
				Ent__V1__CheckEntitlementRequest *expect)
{
	Ent__V1__CheckEntitlementRequest r;
	rnd_request(a, &r);
	size_t n = 0;
	if (below(3) == 0)
		n += put_unknown(buf + n);
	n += protobuf_c_message_pack(&r.base, buf + n);
	if (below(3) == 0)
		n += put_unknown(buf + n);
	*expect = r;
	if (below(4) == 0) {
		Ent__V1__CheckEntitlementRequest r2;
		rnd_request(a, &r2);
		n += protobuf_c_message_pack(&r2.base, buf + n);
		/* proto3 omits defaults, so only non-default fields of the second one override. */
		if (*r2.customer_id)
			expect->customer_id = r2.customer_id;
		if (*r2.feature_code)
			expect->feature_code = r2.feature_code;
		if (r2.quantity)
			expect->quantity = r2.quantity;
		if (r2.at)
			expect->at = r2.at;
		if (r2.min_sequence)
			expect->min_sequence = r2.min_sequence;
	}
	return n;
}

/*
 * Our decode of a message protobuf-c accepted. Strings compare as C strings on protobuf-c's
 * side: where our string is longer it must be because of an embedded NUL (documented
 * difference: we keep the full length and validation refuses it).
 */
static void assert_same_str(struct ent_str ours, const char *theirs)
{
	size_t n = strlen(theirs);
	assert_true(ours.len >= n);
	assert_memory_equal(ours.p, theirs, n);
	if (ours.len > n)
		assert_int_equal(ours.p[n], '\0');
}

static void assert_same_request(const struct ent_wire_check *w,
				const Ent__V1__CheckEntitlementRequest *r)
{
	assert_same_str(w->customer_id, r->customer_id);
	assert_same_str(w->feature_code, r->feature_code);
	assert_int_equal(w->quantity, r->quantity);
	assert_int_equal(w->at, r->at);
	assert_int_equal(w->min_sequence, r->min_sequence);
}

static void test_decode_random(void **state)
{
	struct ent_arena a;
	ProtobufCAllocator alloc;
	ent_arena_init(&a, 64 * 1024);
	ent_pb_allocator(&alloc, &a);
	uint8_t buf[1024];
	for (int i = 0; i < ROUNDS; i++) {
		ent_arena_reset(&a);
		Ent__V1__CheckEntitlementRequest expect;
		size_t n = rnd_request_bytes(&a, buf, &expect);
		Ent__V1__CheckEntitlementRequest *pc =
			ent__v1__check_entitlement_request__unpack(&alloc, n, buf);
		assert_non_null(pc);
		struct ent_wire_check w;
		assert_int_equal(ent_wire_check_decode(buf, n, &w), 0);
		assert_same_request(&w, pc);
		/* And both agree with what was packed. */
		assert_string_equal(pc->customer_id, expect.customer_id);
		assert_int_equal(pc->quantity, expect.quantity);
		assert_int_equal(pc->min_sequence, expect.min_sequence);
	}
	ent_arena_deinit(&a);
}

/* Corrupt \a buf in place (or shorten it); returns the new length. */
static size_t mutate(uint8_t *buf, size_t n, size_t cap)
{
	switch (below(5)) {
	case 0:
		return n ? below((uint32_t)n) : 0; /* truncate */
	case 1:
		if (n)
			buf[below((uint32_t)n)] ^= (uint8_t)(1u << below(8));
		return n;
	case 2:
		if (n)
			buf[below((uint32_t)n)] = (uint8_t)rnd();
		return n;
	case 3:
		if (n + 1 < cap) {
			size_t at = below((uint32_t)n + 1);
			memmove(buf + at + 1, buf + at, n - at);
			buf[at] = (uint8_t)rnd();
			return n + 1;
		}
		return n;
	default:
		/* A byte with a tag's shape: wire types 3, 4, 6, 7 or field 0. */
		if (n)
			buf[below((uint32_t)n)] = (uint8_t)(below(4) << 3 | (3 + below(5)));
		return n;
	}
}

static void test_decode_corrupt(void **state)
{
	struct ent_arena a;
	ProtobufCAllocator alloc;
	ent_arena_init(&a, 64 * 1024);
	ent_pb_allocator(&alloc, &a);
	uint8_t buf[1100];
	int refused = 0, accepted = 0;
	for (int i = 0; i < ROUNDS * 2; i++) {
		ent_arena_reset(&a);
		Ent__V1__CheckEntitlementRequest expect;
		size_t n = rnd_request_bytes(&a, buf, &expect);
		for (int k = 1 + below(3); k > 0; k--)
			n = mutate(buf, n, sizeof(buf));
		Ent__V1__CheckEntitlementRequest *pc =
			ent__v1__check_entitlement_request__unpack(&alloc, n, buf);
		struct ent_wire_check w;
		int rc = ent_wire_check_decode(buf, n, &w);
		if (!pc) {
			assert_int_equal(rc, -ENT_EINVAL);
			refused++;
		} else {
			assert_int_equal(rc, 0);
			assert_same_request(&w, pc);
			accepted++;
		}
	}
	/* The corpus must exercise both outcomes. */
	assert_true(refused > ROUNDS / 10);
	assert_true(accepted > ROUNDS / 10);
	ent_arena_deinit(&a);
}

static size_t rnd_batch_bytes(struct ent_arena *a, uint8_t *buf, size_t *items)
{
	size_t n = 0, k = below(20);
	for (size_t i = 0; i < k; i++) {
		uint8_t item[600];
		Ent__V1__CheckEntitlementRequest expect;
		size_t len = rnd_request_bytes(a, item, &expect);
		if (below(5) == 0)
			n += put_unknown(buf + n);
		buf[n++] = 1 << 3 | 2;
		size_t v = len;
		while (v >= 0x80) {
			buf[n++] = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		buf[n++] = (uint8_t)v;
		memcpy(buf + n, item, len);
		n += len;
	}
	*items = k;
	return n;
}

static void test_batch(void **state)
{
	struct ent_arena a;
	ProtobufCAllocator alloc;
	ent_arena_init(&a, 256 * 1024);
	ent_pb_allocator(&alloc, &a);
	static uint8_t buf[20 * 700];
	int refused = 0;
	for (int i = 0; i < ROUNDS / 4; i++) {
		ent_arena_reset(&a);
		size_t k, n = rnd_batch_bytes(&a, buf, &k);
		bool corrupt = below(2) == 0;
		if (corrupt)
			n = mutate(buf, n, sizeof(buf));
		Ent__V1__BatchCheckEntitlementsRequest *pc =
			ent__v1__batch_check_entitlements_request__unpack(&alloc, n, buf);
		size_t count = 0;
		int rc = ent_wire_batch_count(buf, n, &count);
		if (!pc) {
			assert_int_equal(rc, -ENT_EINVAL);
			refused++;
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(count, pc->n_checks);
		if (!corrupt)
			assert_int_equal(count, k);
		struct ent_wire_iter it;
		struct ent_wire_check w;
		ent_wire_iter_init(&it, buf, n);
		for (size_t j = 0; j < count; j++) {
			assert_int_equal(ent_wire_batch_next(&it, &w), 1);
			assert_same_request(&w, pc->checks[j]);
		}
		assert_int_equal(ent_wire_batch_next(&it, &w), 0);
	}
	assert_true(refused > 0);
	ent_arena_deinit(&a);
}

/* ---- encoding ------------------------------------------------------------------------ */

/* The protobuf-c builder check.c used before the hand-written encoder: the reference. */
static char *pb_str(struct ent_arena *a, struct ent_str s)
{
	if (!s.len)
		return (char *)protobuf_c_empty_string;
	return ent_arena_strndup(a, s.p, s.len);
}

/* A oneof member: "" is a value and is sent, so it must not be protobuf-c's shared default. */
static char *pb_oneof_str(struct ent_arena *a, struct ent_str s)
{
	return ent_arena_strndup(a, s.len ? s.p : "", s.len);
}

static void ref_response(struct ent_arena *a, Ent__V1__CheckEntitlementResponse *resp,
			 Ent__V1__Usage *u, const struct ent_decision *d, uint64_t seq)
{
	const struct ent_agg *g = d->agg;
	ent__v1__check_entitlement_response__init(resp);
	resp->allowed = d->allowed;
	resp->reason = d->reason;
	resp->feature_type = d->feature_type;
	switch (d->feature_type) {
	case ENT_FT_BOOLEAN:
		resp->value_case = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_BOOL_VALUE;
		resp->bool_value = g ? g->enabled : d->allowed;
		break;
	case ENT_FT_METERED:
		if (g && !d->unlimited) {
			resp->value_case = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_NUMBER_VALUE;
			resp->number_value = (double)d->limit;
		}
		break;
	case ENT_FT_STATIC:
		if (g && g->n_static) {
			resp->value_case = ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_STRING_VALUE;
			resp->string_value = pb_oneof_str(a, g->statics[0]);
		}
		break;
	}
	if (g) {
		if (g->n_static) {
			resp->n_static_values = g->n_static;
			resp->static_values = ent_arena_alloc(a, g->n_static * sizeof(char *));
			for (uint32_t i = 0; i < g->n_static; i++)
				resp->static_values[i] = pb_str(a, g->statics[i]);
		}
		if (g->n_privs) {
			resp->n_privileges = g->n_privs;
			resp->privileges = ent_arena_alloc(a, g->n_privs * sizeof(void *));
			for (uint32_t i = 0; i < g->n_privs; i++) {
				const struct ent_priv *p = &g->privs[i];
				Ent__V1__PrivilegeValue *pv = ent_arena_alloc(a, sizeof(*pv));
				ent__v1__privilege_value__init(pv);
				pv->code = pb_str(a, p->code);
				pv->value_type = p->type;
				switch (p->type) {
				case ENT_PT_INTEGER:
					pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE;
					pv->int_value = p->i;
					break;
				case ENT_PT_BOOLEAN:
					pv->value_case = ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE;
					pv->bool_value = p->b;
					break;
				case ENT_PT_STRING:
				case ENT_PT_SELECT:
					pv->value_case =
						ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE;
					pv->string_value = pb_oneof_str(a, p->s);
					break;
				}
				resp->privileges[i] = pv;
			}
		}
		if (g->override_applied) {
			resp->override_applied = true;
			resp->override_reason = pb_str(a, g->override_reason);
			resp->override_expires_at = g->override_expires_at;
		}
	}
	if (d->metered) {
		ent__v1__usage__init(u);
		u->limit = d->limit;
		u->unlimited = d->unlimited;
		u->used = d->used;
		u->remaining = d->remaining;
		u->is_soft_limit = d->soft;
		u->reset_period = d->reset;
		u->period_start = d->period_start;
		u->period_end = d->period_end;
		resp->usage = u;
	}
	resp->next_change_at = d->next_change_at;
	resp->sequence = seq;
}

static struct ent_str rnd_estr(struct ent_arena *a, uint32_t max)
{
	return str_of(rnd_str(a, max));
}

static void rnd_decision(struct ent_arena *a, struct ent_decision *d, struct ent_agg *g)
{
	memset(d, 0, sizeof(*d));
	d->allowed = below(2);
	d->reason = (uint8_t)below(10);
	d->feature_type = (uint8_t)below(4);
	d->metered = below(2);
	d->limit = rnd_i64();
	d->unlimited = below(3) == 0;
	d->soft = below(2);
	d->used = rnd_i64();
	d->remaining = rnd_i64();
	d->reset = (uint8_t)below(8);
	d->period_start = rnd_i64();
	d->period_end = rnd_i64();
	d->next_change_at = rnd_i64();
	if (below(5) == 0)
		return; /* no aggregate: a miss */
	memset(g, 0, offsetof(struct ent_agg, statics));
	g->enabled = below(2);
	g->n_static = below(4) == 0 ? below(4) : 0;
	for (uint32_t i = 0; i < g->n_static; i++)
		g->statics[i] = rnd_estr(a, 300); /* lengths past 127: two-byte prefixes */
	g->n_privs = below(3) == 0 ? below(5) : 0;
	for (uint32_t i = 0; i < g->n_privs; i++) {
		struct ent_priv *p = &g->privs[i];
		p->code = rnd_estr(a, 20);
		p->type = (uint8_t)below(5);
		p->b = below(2);
		p->i = rnd_i64();
		p->s = rnd_estr(a, 30);
	}
	g->override_applied = below(3) == 0;
	g->override_reason = rnd_estr(a, 200);
	g->override_expires_at = rnd_i64();
	d->agg = g;
}

static void test_encode_random(void **state)
{
	struct ent_arena a;
	ent_arena_init(&a, 64 * 1024);
	static struct ent_agg g;
	static uint8_t ref[64 * 1024], ours[64 * 1024];
	for (int i = 0; i < ROUNDS; i++) {
		ent_arena_reset(&a);
		struct ent_decision d;
		rnd_decision(&a, &d, &g);
		uint64_t seq = below(3) == 0 ? 0 : (uint64_t)rnd_i64();
		Ent__V1__CheckEntitlementResponse resp;
		Ent__V1__Usage u;
		ref_response(&a, &resp, &u, &d, seq);
		size_t rn = protobuf_c_message_pack(&resp.base, ref);
		assert_int_equal(protobuf_c_message_get_packed_size(&resp.base), rn);
		size_t n = ent_wire_check_resp_size(&d, seq);
		assert_int_equal(n, rn);
		assert_true(n <= ent_wire_check_resp_bound(&d));
		uint8_t *end = ent_wire_check_resp_write(ours, &d, seq);
		assert_int_equal((size_t)(end - ours), n);
		assert_memory_equal(ours, ref, n);
	}
	ent_arena_deinit(&a);
}

static void test_encode_batch(void **state)
{
	struct ent_arena a;
	ent_arena_init(&a, 256 * 1024);
	static struct ent_agg g[8];
	static uint8_t ref[256 * 1024], ours[256 * 1024];
	for (int i = 0; i < ROUNDS / 10; i++) {
		ent_arena_reset(&a);
		size_t k = below(9);
		struct ent_decision d[8];
		Ent__V1__CheckEntitlementResponse resp[8], *rp[8];
		Ent__V1__Usage u[8];
		uint64_t seq = below(4) == 0 ? 0 : rnd();
		uint8_t *p = ours;
		for (size_t j = 0; j < k; j++) {
			rnd_decision(&a, &d[j], &g[j]);
			ref_response(&a, &resp[j], &u[j], &d[j], seq);
			rp[j] = &resp[j];
			size_t len = ent_wire_check_resp_size(&d[j], seq);
			p = ent_wire_len_header_write(p, ENT_WIRE_BATCH_RESULTS, len);
			p = ent_wire_check_resp_write(p, &d[j], seq);
		}
		p = ent_wire_u64_field_write(p, ENT_WIRE_BATCH_SEQUENCE, seq);
		Ent__V1__BatchCheckEntitlementsResponse b =
			ENT__V1__BATCH_CHECK_ENTITLEMENTS_RESPONSE__INIT;
		b.n_results = k;
		b.results = rp;
		b.sequence = seq;
		size_t rn = protobuf_c_message_pack(&b.base, ref);
		assert_int_equal((size_t)(p - ours), rn);
		assert_memory_equal(ours, ref, rn);
	}
	ent_arena_deinit(&a);
}

static int grow_realloc(struct ent_wire_batch *b, size_t cap)
{
	assert_true(cap > b->cap);
	uint8_t *p = realloc(b->p, cap);
	assert_non_null(p);
	b->p = p;
	b->cap = cap;
	return 0;
}

/* The batch writer: byte for byte what protobuf-c packs, refusing exactly what exceeds max. */
static void test_batch_writer(void **state)
{
	struct ent_arena a;
	ent_arena_init(&a, 256 * 1024);
	static struct ent_agg g[8];
	static uint8_t ref[256 * 1024];
	int refused = 0, written = 0;
	for (int i = 0; i < ROUNDS / 4; i++) {
		ent_arena_reset(&a);
		size_t k = 1 + below(8);
		struct ent_decision d[8];
		Ent__V1__CheckEntitlementResponse resp[8], *rp[8];
		Ent__V1__Usage u[8];
		struct ent_wire_batch b = {.p = malloc(1),
					   .cap = 1 + below(64),
					   .max = 40 + below(2500),
					   .grow = grow_realloc};
		b.p = realloc(b.p, b.cap);
		b.seq = below(4) == 0 ? 0 : rnd();
		int rc = 0;
		for (size_t j = 0; j < k; j++) {
			rnd_decision(&a, &d[j], &g[j]);
			ref_response(&a, &resp[j], &u[j], &d[j], b.seq);
			rp[j] = &resp[j];
			if (!rc)
				rc = ent_wire_batch_add(&b, &d[j]);
		}
		if (!rc)
			rc = ent_wire_batch_finish(&b);
		Ent__V1__BatchCheckEntitlementsResponse r =
			ENT__V1__BATCH_CHECK_ENTITLEMENTS_RESPONSE__INIT;
		r.n_results = k;
		r.results = rp;
		r.sequence = b.seq;
		size_t rn = protobuf_c_message_pack(&r.base, ref);
		if (rn > b.max) {
			assert_int_equal(rc, -ENT_EFULL);
			refused++;
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(b.used, rn);
			assert_memory_equal(b.p, ref, rn);
			written++;
		}
		free(b.p);
	}
	assert_true(refused > 100 && written > 100);
	ent_arena_deinit(&a);
}

/* Hand-picked edge cases protobuf-c must agree on. */
static void test_decode_edges(void **state)
{
	struct ent_arena a;
	ProtobufCAllocator alloc;
	ent_arena_init(&a, 4096);
	ent_pb_allocator(&alloc, &a);
	static const struct {
		const char *bytes;
		size_t n;
	} cases[] = {
		{"", 0},
		{"\x0a\x03"
		 "abc",
		 5},
		{"\x0a\x04"
		 "abc",
		 5},							  /* length past the end */
		{"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11},	  /* 10-byte varint */
		{"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* 11 bytes */
		{"\x0b\x0c", 2},					  /* group */
		{"\x0f", 1},						  /* wire type 7 */
		{"\x00\x01", 2},					  /* field 0 */
		{"\x80\x00\x00", 3},			     /* field 0, two-byte tag */
		{"\x08\x01", 2},			     /* string field as varint */
		{"\x1a\x01\x01", 3},			     /* int64 field as bytes */
		{"\xf8\xff\xff\xff\x0f\x01", 6},	     /* 5-byte tag */
		{"\xf8\xff\xff\xff\xff\x0f\x01", 7},	     /* 6-byte tag */
		{"\x0a\x80\x80\x80\x80\x00", 6},	     /* 5-byte length 0 */
		{"\x0a\x80\x80\x80\x80\x80\x00", 7},	     /* 6-byte length */
		{"\x29\x01\x02\x03\x04\x05\x06\x07\x08", 9}, /* unknown 64-bit */
		{"\x29\x01\x02\x03", 4},		     /* short 64-bit */
		{"\x2d\x01\x02\x03\x04", 5},		     /* unknown 32-bit */
		{"\x2d\x01\x02", 3},			     /* short 32-bit */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ent_arena_reset(&a);
		const uint8_t *b = (const uint8_t *)cases[i].bytes;
		Ent__V1__CheckEntitlementRequest *pc =
			ent__v1__check_entitlement_request__unpack(&alloc, cases[i].n, b);
		struct ent_wire_check w;
		int rc = ent_wire_check_decode(b, cases[i].n, &w);
		if (pc) {
			assert_int_equal(rc, 0);
			assert_same_request(&w, pc);
		} else {
			assert_int_equal(rc, -ENT_EINVAL);
		}
	}
	ent_arena_deinit(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_edges),   cmocka_unit_test(test_decode_random),
		cmocka_unit_test(test_decode_corrupt), cmocka_unit_test(test_batch),
		cmocka_unit_test(test_encode_random),  cmocka_unit_test(test_encode_batch),
		cmocka_unit_test(test_batch_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
