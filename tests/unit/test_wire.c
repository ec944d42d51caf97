/*
 * The hand-written hot-path codec (src/rpc/wire.c) against protobuf-c, on many random messages.
 * The reference is protobuf-c itself, walked through the message DESCRIPTORS, so a field added
 * to the .proto and forgotten in wire.c (or here) fails a test instead of going unnoticed:
 *  - decode: random CheckEntitlementRequest / BatchCheckEntitlementsRequest (every field of the
 *    descriptor filled at random) packed by protobuf-c, with unknown fields of every wire type
 *    and repeated fields spliced in, must decode to the same fields; every field of the request
 *    descriptor must have its place in struct ent_wire_check (request_fields[]); random
 *    corruptions must be refused exactly when protobuf-c refuses them;
 *  - encode: random decisions (every feature type, statics, privileges, overrides, usage with
 *    negative and huge numbers) are written by wire.c, unpacked by protobuf-c and compared,
 *    field by field over the descriptors of CheckEntitlementResponse, Usage and
 *    PrivilegeValue, with what the decision says each field holds (expects[]: one line per
 *    proto field; a descriptor field without one fails); protobuf-c packing that expectation
 *    must give wire.c's bytes, alone and framed as BatchCheckEntitlementsResponse items; and
 *    every field must have been seen set at least once over the rounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

#define FIELD(m, f)  ((char *)(m) + (f)->offset)
#define CFIELD(m, f) ((const char *)(m) + (f)->offset)

/* Every field of \a r at random, by its descriptor: a new request field is filled too. */
static void rnd_request(struct ent_arena *a, Ent__V1__CheckEntitlementRequest *r)
{
	const ProtobufCMessageDescriptor *d = &ent__v1__check_entitlement_request__descriptor;
	ent__v1__check_entitlement_request__init(r);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			fail_msg("%s.%s: repeated, rnd_request cannot fill it", d->name, f->name);
		switch (f->type) {
		case PROTOBUF_C_TYPE_STRING:
			*(char **)FIELD(r, f) = rnd_str(a, 40);
			break;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_UINT64:
			*(int64_t *)FIELD(r, f) = rnd_i64();
			break;
		case PROTOBUF_C_TYPE_BOOL:
			*(protobuf_c_boolean *)FIELD(r, f) = below(2);
			break;
		default:
			fail_msg("%s.%s: rnd_request has no random value of its type", d->name,
				 f->name);
		}
	}
}

/* Is field \a f of \a m at its proto3 default (what pack leaves out)? */
static bool is_default(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *p = CFIELD(m, f);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id;
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return *(const size_t *)((const char *)m + f->quantifier_offset) == 0;
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		return !*(const char *const *)p || !**(const char *const *)p;
	case PROTOBUF_C_TYPE_MESSAGE:
		return !*(const void *const *)p;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_ENUM:
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_UINT32:
		return !*(const int32_t *)p;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	default:
		return !*(const int64_t *)p;
	}
}

/* protobuf's merge of a second message: its non-default scalars replace the first's. */
static void merge_request(Ent__V1__CheckEntitlementRequest *into,
			  const Ent__V1__CheckEntitlementRequest *from)
{
	const ProtobufCMessageDescriptor *d = from->base.descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (is_default(&from->base, f))
			continue;
		size_t sz = f->type == PROTOBUF_C_TYPE_STRING ? sizeof(char *)
			    : f->type == PROTOBUF_C_TYPE_BOOL ? sizeof(protobuf_c_boolean)
							      : sizeof(int64_t);
		memcpy(FIELD(into, f), CFIELD(from, f), sz);
	}
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
		merge_request(expect, &r2);
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

/* Where wire.c puts each CheckEntitlementRequest field: one line per proto field. */
static const struct {
	const char *name;
	size_t offset; /* in struct ent_wire_check */
	ProtobufCType type;
} request_fields[] = {
	{"customer_id", offsetof(struct ent_wire_check, customer_id), PROTOBUF_C_TYPE_STRING},
	{"feature_code", offsetof(struct ent_wire_check, feature_code), PROTOBUF_C_TYPE_STRING},
	{"quantity", offsetof(struct ent_wire_check, quantity), PROTOBUF_C_TYPE_INT64},
	{"at", offsetof(struct ent_wire_check, at), PROTOBUF_C_TYPE_INT64},
	{"min_sequence", offsetof(struct ent_wire_check, min_sequence), PROTOBUF_C_TYPE_UINT64},
};

/* Every field of the request's descriptor, compared with its place in our decode. */
static void assert_same_request(const struct ent_wire_check *w,
				const Ent__V1__CheckEntitlementRequest *r)
{
	const ProtobufCMessageDescriptor *d = r->base.descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		size_t k = 0, n = sizeof(request_fields) / sizeof(request_fields[0]);
		while (k < n && strcmp(request_fields[k].name, f->name))
			k++;
		if (k == n || request_fields[k].type != f->type)
			fail_msg("%s.%s: not decoded by wire.c (struct ent_wire_check and "
				 "request_fields[] here need it)",
				 d->name, f->name);
		const char *ours = (const char *)w + request_fields[k].offset;
		if (f->type == PROTOBUF_C_TYPE_STRING)
			assert_same_str(*(const struct ent_str *)ours,
					*(char *const *)CFIELD(r, f));
		else
			assert_int_equal(*(const int64_t *)ours, *(const int64_t *)CFIELD(r, f));
	}
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
		assert_int_equal(ent_rpc_wire_check_decode(buf, n, &w), 0);
		assert_same_request(&w, pc);
		/* And both agree with what was packed (the merge, when two were). */
		assert_same_request(&w, &expect);
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
		int rc = ent_rpc_wire_check_decode(buf, n, &w);
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
		int rc = ent_rpc_wire_batch_count(buf, n, &count);
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
		ent_rpc_wire_iter_init(&it, buf, n);
		for (size_t j = 0; j < count; j++) {
			assert_int_equal(ent_rpc_wire_batch_next(&it, &w), 1);
			assert_same_request(&w, pc->checks[j]);
		}
		assert_int_equal(ent_rpc_wire_batch_next(&it, &w), 0);
	}
	assert_true(refused > 0);
	ent_arena_deinit(&a);
}

/* ---- encoding ------------------------------------------------------------------------ */

/*
 * The expected answer, field by field: what each proto field of the response holds for a
 * decision. build() walks the descriptor and looks each field up in expects[], so a field added
 * to the .proto fails here until it has its line (and wire.c writes it, or the compare fails).
 */
struct want {
	struct ent_arena *a;
	const struct ent_decision *d;
	uint64_t seq;
	const struct ent_priv *priv; /* for PrivilegeValue */
};

static void *build(struct want *w, const ProtobufCMessageDescriptor *desc);

/* Setting one field; a oneof member also selects itself. */
static void *slot(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		*(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
	return FIELD(m, f);
}

static void put_bool(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, bool v)
{
	*(protobuf_c_boolean *)slot(m, f) = v;
}

static void put_int(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int64_t v)
{
	if (f->type == PROTOBUF_C_TYPE_ENUM)
		*(int *)slot(m, f) = (int)v;
	else
		*(int64_t *)slot(m, f) = v;
}

/* A oneof string is sent even when empty, so it must not be protobuf-c's shared default. */
static void put_str(struct want *w, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
		    struct ent_str s)
{
	bool oneof = f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF;
	*(char **)slot(m, f) = !s.len && !oneof ? (char *)protobuf_c_empty_string
						: ent_arena_strndup(w->a, s.len ? s.p : "", s.len);
}

#define SETTER(name)                                                                               \
	static void name(struct want *w, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
#define G (w->d->agg)

SETTER(r_bool_value)
{
	if (w->d->feature_type == ENT_FT_BOOLEAN)
		put_bool(m, f, G ? G->enabled : w->d->allowed);
}
SETTER(r_number_value)
{
	if (w->d->feature_type == ENT_FT_METERED && G && !w->d->unlimited)
		*(double *)slot(m, f) = (double)w->d->limit;
}
SETTER(r_string_value)
{
	if (w->d->feature_type == ENT_FT_STATIC && G && G->n_static)
		put_str(w, m, f, G->statics[0]);
}
SETTER(r_static_values)
{
	uint32_t n = G ? G->n_static : 0;
	char **v = ent_arena_alloc(w->a, (n + 1) * sizeof(char *));
	for (uint32_t i = 0; i < n; i++)
		v[i] = ent_arena_strndup(w->a, G->statics[i].p, G->statics[i].len);
	*(size_t *)((char *)m + f->quantifier_offset) = n;
	*(char ***)FIELD(m, f) = v;
}
SETTER(r_privileges)
{
	uint32_t n = G ? G->n_privs : 0;
	void **v = ent_arena_alloc(w->a, (n + 1) * sizeof(void *));
	for (uint32_t i = 0; i < n; i++) {
		w->priv = &G->privs[i];
		v[i] = build(w, f->descriptor);
	}
	*(size_t *)((char *)m + f->quantifier_offset) = n;
	*(void ***)FIELD(m, f) = v;
}
SETTER(r_usage)
{
	if (w->d->metered)
		*(void **)FIELD(m, f) = build(w, f->descriptor);
}
SETTER(r_override_applied)
{
	put_bool(m, f, G && G->override_applied);
}
SETTER(r_override_reason)
{
	if (G && G->override_applied)
		put_str(w, m, f, G->override_reason);
}
SETTER(r_override_expires_at)
{
	if (G && G->override_applied)
		put_int(m, f, G->override_expires_at);
}
SETTER(r_sequence)
{
	put_int(m, f, (int64_t)w->seq);
}
SETTER(p_int_value)
{
	if (w->priv->type == ENT_PT_INTEGER)
		put_int(m, f, w->priv->i);
}
SETTER(p_bool_value)
{
	if (w->priv->type == ENT_PT_BOOLEAN)
		put_bool(m, f, w->priv->b);
}
SETTER(p_string_value)
{
	if (w->priv->type == ENT_PT_STRING || w->priv->type == ENT_PT_SELECT)
		put_str(w, m, f, w->priv->s);
}

/*
 * One line per proto field of the answer: a member of the decision (DEC) or of the privilege
 * (PRV) copied as is, or a setter (FN) where the field depends on more. seen counts the rounds
 * that had the field set.
 */
enum from {
	FROM_FN,
	FROM_DEC,
	FROM_PRIV
};
enum kind {
	K_BOOL,
	K_U8,
	K_I64,
	K_STR
};
static struct {
	const ProtobufCMessageDescriptor *msg;
	const char *field;
	enum from from;
	size_t off;
	enum kind kind;
	void (*set)(struct want *w, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);
	unsigned long seen;
} expects[] = {
#define DEC(member, k) FROM_DEC, offsetof(struct ent_decision, member), K_##k, NULL
#define PRV(member, k) FROM_PRIV, offsetof(struct ent_priv, member), K_##k, NULL
#define FN(fn)	       FROM_FN, 0, K_BOOL, fn
#define RESP	       &ent__v1__check_entitlement_response__descriptor
#define USAGE	       &ent__v1__usage__descriptor
#define PRIV	       &ent__v1__privilege_value__descriptor
	{RESP, "allowed", DEC(allowed, BOOL)},
	{RESP, "reason", DEC(reason, U8)},
	{RESP, "feature_type", DEC(feature_type, U8)},
	{RESP, "bool_value", FN(r_bool_value)},
	{RESP, "number_value", FN(r_number_value)},
	{RESP, "string_value", FN(r_string_value)},
	{RESP, "static_values", FN(r_static_values)},
	{RESP, "privileges", FN(r_privileges)},
	{RESP, "usage", FN(r_usage)},
	{RESP, "override_applied", FN(r_override_applied)},
	{RESP, "override_reason", FN(r_override_reason)},
	{RESP, "override_expires_at", FN(r_override_expires_at)},
	{RESP, "next_change_at", DEC(next_change_at, I64)},
	{RESP, "sequence", FN(r_sequence)},
	{USAGE, "limit", DEC(limit, I64)},
	{USAGE, "unlimited", DEC(unlimited, BOOL)},
	{USAGE, "used", DEC(used, I64)},
	{USAGE, "remaining", DEC(remaining, I64)},
	{USAGE, "is_soft_limit", DEC(soft, BOOL)},
	{USAGE, "reset_period", DEC(reset, U8)},
	{USAGE, "period_start", DEC(period_start, I64)},
	{USAGE, "period_end", DEC(period_end, I64)},
	{PRIV, "code", PRV(code, STR)},
	{PRIV, "value_type", PRV(type, U8)},
	{PRIV, "int_value", FN(p_int_value)},
	{PRIV, "bool_value", FN(p_bool_value)},
	{PRIV, "string_value", FN(p_string_value)},
#undef RESP
#undef USAGE
#undef PRIV
#undef DEC
#undef PRV
#undef FN
};
#undef G

#define N_EXPECTS (sizeof(expects) / sizeof(expects[0]))

static size_t expect_of(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
	for (size_t k = 0; k < N_EXPECTS; k++)
		if (expects[k].msg == d && !strcmp(expects[k].field, f->name))
			return k;
	fail_msg("%s.%s: test_wire.c says nothing about this field (add its line to expects[]; "
		 "wire.c must write it too)",
		 d->name, f->name);
	return 0;
}

/* A DEC or PRV line: the member as the field's value. */
static void copy_member(struct want *w, size_t k, ProtobufCMessage *m,
			const ProtobufCFieldDescriptor *f)
{
	const char *src =
		(expects[k].from == FROM_DEC ? (const char *)w->d : (const char *)w->priv) +
		expects[k].off;
	switch (expects[k].kind) {
	case K_BOOL:
		put_bool(m, f, *(const bool *)src);
		break;
	case K_U8:
		put_int(m, f, *(const uint8_t *)src);
		break;
	case K_I64:
		put_int(m, f, *(const int64_t *)src);
		break;
	case K_STR:
		put_str(w, m, f, *(const struct ent_str *)src);
		break;
	}
}

static void *build(struct want *w, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = ent_arena_alloc(w->a, desc->sizeof_message);
	desc->message_init(m);
	for (unsigned i = 0; i < desc->n_fields; i++) {
		size_t k = expect_of(desc, &desc->fields[i]);
		if (expects[k].from == FROM_FN)
			expects[k].set(w, m, &desc->fields[i]);
		else
			copy_member(w, k, m, &desc->fields[i]);
	}
	return m;
}

static Ent__V1__CheckEntitlementResponse *want_response(struct ent_arena *a,
							const struct ent_decision *d, uint64_t seq)
{
	struct want w = {.a = a, .d = d, .seq = seq};
	return build(&w, &ent__v1__check_entitlement_response__descriptor);
}

/*
 * protobuf-c's unpack of wire.c's bytes against the expectation, every field of the
 * descriptor, naming the first that differs ("privileges[2].int_value").
 */
static void assert_same_msg(const ProtobufCMessage *want, const ProtobufCMessage *got,
			    const char *path)
{
	const ProtobufCMessageDescriptor *d = want->descriptor;
	assert_ptr_equal(got->descriptor, d);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char at[160];
		snprintf(at, sizeof(at), "%s%s%s", path, *path ? "." : "", f->name);
		bool wd = is_default(want, f), gd = is_default(got, f);
		if (wd != gd)
			fail_msg("%s: expected %s, wire.c %s", at, wd ? "unset" : "set",
				 gd ? "left it out" : "wrote it");
		if (gd)
			continue;
		expects[expect_of(d, f)].seen++;
		const char *wp = CFIELD(want, f), *gp = CFIELD(got, f);
		size_t n = 1;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)((const char *)want + f->quantifier_offset);
			assert_int_equal(
				n, *(const size_t *)((const char *)got + f->quantifier_offset));
			wp = *(const char *const *)wp;
			gp = *(const char *const *)gp;
		}
		for (size_t k = 0; k < n; k++) {
			char ak[180];
			snprintf(ak, sizeof(ak),
				 f->label == PROTOBUF_C_LABEL_REPEATED ? "%s[%zu]" : "%s", at, k);
			switch (f->type) {
			case PROTOBUF_C_TYPE_STRING: {
				const char *ws = ((const char *const *)wp)[k];
				const char *gs = ((const char *const *)gp)[k];
				if (strcmp(ws, gs))
					fail_msg("%s: expected \"%s\", wire.c \"%s\"", ak, ws, gs);
				break;
			}
			case PROTOBUF_C_TYPE_MESSAGE:
				assert_same_msg(((const ProtobufCMessage *const *)wp)[k],
						((const ProtobufCMessage *const *)gp)[k], ak);
				break;
			case PROTOBUF_C_TYPE_BOOL:
				assert_int_equal(((const protobuf_c_boolean *)wp)[k],
						 ((const protobuf_c_boolean *)gp)[k]);
				break;
			case PROTOBUF_C_TYPE_ENUM:
				assert_int_equal(((const int *)wp)[k], ((const int *)gp)[k]);
				break;
			case PROTOBUF_C_TYPE_DOUBLE:
				assert_memory_equal((const double *)wp + k, (const double *)gp + k,
						    sizeof(double));
				break;
			case PROTOBUF_C_TYPE_INT64:
			case PROTOBUF_C_TYPE_UINT64:
				if (((const int64_t *)wp)[k] != ((const int64_t *)gp)[k])
					fail_msg("%s: expected %lld, wire.c %lld", ak,
						 (long long)((const int64_t *)wp)[k],
						 (long long)((const int64_t *)gp)[k]);
				break;
			default:
				fail_msg("%s: assert_same_msg does not compare its type yet", ak);
			}
		}
	}
}

/*
 * wire.c's answer for \a d at \a seq against protobuf-c: unpacked, compared field by field
 * with the expectation, and byte for byte with protobuf-c's packing of it.
 */
static void assert_answer(struct ent_arena *a, const struct ent_decision *d, uint64_t seq,
			  const uint8_t *ours, size_t n, Ent__V1__CheckEntitlementResponse **want)
{
	static uint8_t ref[64 * 1024];
	ProtobufCAllocator alloc;
	ent_pb_allocator(&alloc, a);
	*want = want_response(a, d, seq);
	Ent__V1__CheckEntitlementResponse *got =
		ent__v1__check_entitlement_response__unpack(&alloc, n, ours);
	assert_non_null(got);
	assert_same_msg(&(*want)->base, &got->base, "");
	size_t rn = protobuf_c_message_pack(&(*want)->base, ref);
	assert_int_equal(n, rn);
	assert_memory_equal(ours, ref, n);
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
	static uint8_t ours[64 * 1024];
	for (size_t k = 0; k < N_EXPECTS; k++)
		expects[k].seen = 0;
	for (int i = 0; i < ROUNDS; i++) {
		ent_arena_reset(&a);
		struct ent_decision d;
		rnd_decision(&a, &d, &g);
		uint64_t seq = below(3) == 0 ? 0 : (uint64_t)rnd_i64();
		size_t n = ent_rpc_wire_check_resp_size(&d, seq);
		assert_true(n <= ent_rpc_wire_check_resp_bound(&d));
		uint8_t *end = ent_rpc_wire_check_resp_write(ours, &d, seq);
		assert_int_equal((size_t)(end - ours), n);
		Ent__V1__CheckEntitlementResponse *want;
		assert_answer(&a, &d, seq, ours, n, &want);
	}
	/* Every field of the answer was written (and compared) in some round. */
	for (size_t k = 0; k < N_EXPECTS; k++)
		if (!expects[k].seen)
			fail_msg("%s.%s: never set by wire.c in %d random answers",
				 expects[k].msg->name, expects[k].field, ROUNDS);
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
		Ent__V1__CheckEntitlementResponse *rp[8];
		uint64_t seq = below(4) == 0 ? 0 : rnd();
		uint8_t *p = ours;
		for (size_t j = 0; j < k; j++) {
			rnd_decision(&a, &d[j], &g[j]);
			size_t len = ent_rpc_wire_check_resp_size(&d[j], seq);
			p = ent_rpc_wire_len_header_write(p, ENT_WIRE_BATCH_RESULTS, len);
			uint8_t *item = p;
			p = ent_rpc_wire_check_resp_write(p, &d[j], seq);
			assert_answer(&a, &d[j], seq, item, len, &rp[j]);
		}
		p = ent_rpc_wire_u64_field_write(p, ENT_WIRE_BATCH_SEQUENCE, seq);
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
		Ent__V1__CheckEntitlementResponse *rp[8];
		struct ent_wire_batch b = {.p = malloc(1),
					   .cap = 1 + below(64),
					   .max = 40 + below(2500),
					   .grow = grow_realloc};
		b.p = realloc(b.p, b.cap);
		b.seq = below(4) == 0 ? 0 : rnd();
		int rc = 0;
		for (size_t j = 0; j < k; j++) {
			rnd_decision(&a, &d[j], &g[j]);
			rp[j] = want_response(&a, &d[j], b.seq);
			if (!rc)
				rc = ent_rpc_wire_batch_add(&b, &d[j]);
		}
		if (!rc)
			rc = ent_rpc_wire_batch_finish(&b);
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
		int rc = ent_rpc_wire_check_decode(b, cases[i].n, &w);
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
