/*
 * The hot-path protobuf codec (see wire.h for the contract with protobuf-c).
 *
 * Decoding mirrors protobuf_c_message_unpack's rules for the two request messages: tags of at
 * most 5 bytes whose first byte is not 0..7, varints of at most 10 bytes (bits beyond 64
 * dropped), length prefixes of at most 5 bytes that must fit in what is left. Every read is
 * bounded by the end pointer, so any byte string is safe (fuzzed).
 *
 * Encoding writes fields in number order with proto3 presence: scalars and strings only when
 * not zero or empty, oneof members and sub-messages whenever set. Sizes are computed by
 * functions that follow the writers line by line; the unit test checks both against protobuf-c.
 */
#include <string.h>

#include "rpc/wire.h"

enum {
	WT_VARINT = 0,
	WT_64BIT = 1,
	WT_LEN = 2,
	WT_32BIT = 5,
};

/* CheckEntitlementRequest */
enum {
	REQ_CUSTOMER_ID = 1,
	REQ_FEATURE_CODE = 2,
	REQ_QUANTITY = 3,
	REQ_AT = 4,
	REQ_MIN_SEQUENCE = 5,
};

/* CheckEntitlementResponse */
enum {
	RESP_ALLOWED = 1,
	RESP_REASON = 2,
	RESP_FEATURE_TYPE = 3,
	RESP_BOOL_VALUE = 4,
	RESP_NUMBER_VALUE = 5,
	RESP_STRING_VALUE = 6,
	RESP_STATIC_VALUES = 7,
	RESP_PRIVILEGES = 8,
	RESP_USAGE = 9,
	RESP_OVERRIDE_APPLIED = 10,
	RESP_OVERRIDE_REASON = 11,
	RESP_OVERRIDE_EXPIRES_AT = 12,
	RESP_NEXT_CHANGE_AT = 13,
	RESP_SEQUENCE = 14,
};

/* PrivilegeValue */
enum {
	PV_CODE = 1,
	PV_VALUE_TYPE = 2,
	PV_INT_VALUE = 3,
	PV_BOOL_VALUE = 4,
	PV_STRING_VALUE = 5,
};

/* Usage */
enum {
	U_LIMIT = 1,
	U_UNLIMITED = 2,
	U_USED = 3,
	U_REMAINING = 4,
	U_IS_SOFT_LIMIT = 5,
	U_RESET_PERIOD = 6,
	U_PERIOD_START = 7,
	U_PERIOD_END = 8,
};

/* ---- decoding ------------------------------------------------------------------------ */

/* A tag: protobuf-c reads at most 5 bytes and refuses a first byte that says field 0. */
static const uint8_t *get_tag(const uint8_t *p, const uint8_t *end, uint32_t *field, unsigned *wt)
{
	size_t max = (size_t)(end - p) > 5 ? 5 : (size_t)(end - p);
	if ((p[0] & 0xf8) == 0)
		return NULL;
	*wt = p[0] & 7;
	uint32_t tag = (uint32_t)(p[0] & 0x7f) >> 3;
	if (!(p[0] & 0x80)) {
		*field = tag;
		return p + 1;
	}
	unsigned shift = 4;
	for (size_t i = 1; i < max; i++) {
		if (p[i] & 0x80) {
			tag |= (uint32_t)(p[i] & 0x7f) << shift;
			shift += 7;
		} else {
			tag |= (uint32_t)p[i] << shift;
			*field = tag;
			return p + i + 1;
		}
	}
	return NULL;
}

/* A varint value: at most 10 bytes, the low 64 bits kept. */
static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	size_t max = (size_t)(end - p) > 10 ? 10 : (size_t)(end - p);
	for (size_t i = 0; i < max; i++) {
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = r;
			return p + i + 1;
		}
	}
	return NULL;
}

/* A length prefix: at most 5 bytes, and the data must fit in what is left. */
static const uint8_t *get_len(const uint8_t *p, const uint8_t *end, size_t *len)
{
	uint64_t r = 0;
	size_t max = (size_t)(end - p) > 5 ? 5 : (size_t)(end - p);
	for (size_t i = 0; i < max; i++) {
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			if (r > (uint64_t)(end - (p + i + 1)))
				return NULL;
			*len = (size_t)r;
			return p + i + 1;
		}
	}
	return NULL;
}

/* Skip the value of an unknown field. */
static const uint8_t *skip_value(const uint8_t *p, const uint8_t *end, unsigned wt)
{
	uint64_t v;
	size_t len;
	switch (wt) {
	case WT_VARINT:
		return get_varint(p, end, &v);
	case WT_64BIT:
		return end - p >= 8 ? p + 8 : NULL;
	case WT_LEN:
		p = get_len(p, end, &len);
		return p ? p + len : NULL;
	case WT_32BIT:
		return end - p >= 4 ? p + 4 : NULL;
	default:
		/* Groups (3, 4) and the undefined types 6, 7: protobuf-c refuses them. */
		return NULL;
	}
}

int ent_rpc_wire_check_decode(const uint8_t *p, size_t n, struct ent_wire_check *out)
{
	const uint8_t *end = p + n;
	out->customer_id = (struct ent_str){"", 0};
	out->feature_code = (struct ent_str){"", 0};
	out->quantity = 0;
	out->at = 0;
	out->min_sequence = 0;
	while (p < end) {
		uint32_t field;
		unsigned wt;
		size_t len;
		uint64_t v;
		if (!(p = get_tag(p, end, &field, &wt)))
			return -ENT_EINVAL;
		switch (field) {
		case REQ_CUSTOMER_ID:
		case REQ_FEATURE_CODE:
			if (wt != WT_LEN || !(p = get_len(p, end, &len)) || len > UINT32_MAX)
				return -ENT_EINVAL;
			/* A repeated field replaces the earlier value, as in protobuf-c. */
			*(field == REQ_CUSTOMER_ID ? &out->customer_id : &out->feature_code) =
				(struct ent_str){(const char *)p, (uint32_t)len};
			p += len;
			break;
		case REQ_QUANTITY:
		case REQ_AT:
		case REQ_MIN_SEQUENCE:
			if (wt != WT_VARINT || !(p = get_varint(p, end, &v)))
				return -ENT_EINVAL;
			if (field == REQ_QUANTITY)
				out->quantity = (int64_t)v;
			else if (field == REQ_AT)
				out->at = (int64_t)v;
			else
				out->min_sequence = v;
			break;
		default:
			if (!(p = skip_value(p, end, wt)))
				return -ENT_EINVAL;
			break;
		}
	}
	return 0;
}

/* The next checks item (field 1) of a batch request at it->p; 1, 0 at the end, or error. */
static int batch_item(struct ent_wire_iter *it, const uint8_t **item, size_t *len)
{
	while (it->p < it->end) {
		uint32_t field;
		unsigned wt;
		const uint8_t *p = get_tag(it->p, it->end, &field, &wt);
		if (!p)
			return -ENT_EINVAL;
		if (field == 1) {
			/* A message is never packed: any other wire type is malformed. */
			if (wt != WT_LEN || !(p = get_len(p, it->end, len)))
				return -ENT_EINVAL;
			*item = p;
			it->p = p + *len;
			return 1;
		}
		if (!(it->p = skip_value(p, it->end, wt)))
			return -ENT_EINVAL;
	}
	return 0;
}

int ent_rpc_wire_batch_next(struct ent_wire_iter *it, struct ent_wire_check *out)
{
	const uint8_t *item;
	size_t len;
	int rc = batch_item(it, &item, &len);
	if (rc <= 0)
		return rc;
	return ent_rpc_wire_check_decode(item, len, out) ? -ENT_EINVAL : 1;
}

int ent_rpc_wire_batch_items(const uint8_t *p, size_t n, size_t *count)
{
	struct ent_wire_iter it;
	const uint8_t *item;
	size_t len, k = 0;
	int rc;
	ent_rpc_wire_iter_init(&it, p, n);
	while ((rc = batch_item(&it, &item, &len)) == 1)
		k++;
	if (rc < 0)
		return rc;
	*count = k;
	return 0;
}

int ent_rpc_wire_batch_count(const uint8_t *p, size_t n, size_t *count)
{
	struct ent_wire_iter it;
	struct ent_wire_check c;
	size_t k = 0;
	int rc;
	ent_rpc_wire_iter_init(&it, p, n);
	while ((rc = ent_rpc_wire_batch_next(&it, &c)) == 1)
		k++;
	if (rc < 0)
		return rc;
	*count = k;
	return 0;
}

/* ---- encoding ------------------------------------------------------------------------ */

static inline size_t vsize(uint64_t v)
{
	/* 1 + floor(log2(v)) / 7 for v > 0. */
	return (size_t)(63 - __builtin_clzll(v | 1)) / 7 + 1;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Every field number here is below 16, so a tag is one byte. */
static inline uint8_t *put_tag(uint8_t *p, uint32_t field, unsigned wt)
{
	return put_varint(p, (uint64_t)field << 3 | wt);
}

static inline size_t tag_size(uint32_t field)
{
	return vsize((uint64_t)field << 3);
}

/* proto3 scalars: nothing when zero. int64 and enums go out as 64-bit varints. */
static inline size_t sz_u64(uint32_t field, uint64_t v)
{
	return v ? tag_size(field) + vsize(v) : 0;
}

static inline uint8_t *put_u64(uint8_t *p, uint32_t field, uint64_t v)
{
	if (!v)
		return p;
	p = put_tag(p, field, WT_VARINT);
	return put_varint(p, v);
}

static inline size_t sz_bool(uint32_t field, bool b)
{
	return b ? tag_size(field) + 1 : 0;
}

static inline uint8_t *put_bool(uint8_t *p, uint32_t field, bool b)
{
	if (!b)
		return p;
	p = put_tag(p, field, WT_VARINT);
	*p++ = 1;
	return p;
}

/* A length-delimited field that is present whatever its length (oneof, repeated). */
static inline size_t sz_bytes(uint32_t field, size_t len)
{
	return tag_size(field) + vsize(len) + len;
}

static inline uint8_t *put_bytes(uint8_t *p, uint32_t field, const void *data, size_t len)
{
	p = put_tag(p, field, WT_LEN);
	p = put_varint(p, len);
	if (len)
		memcpy(p, data, len);
	return p + len;
}

/* A proto3 string field: nothing when empty. */
static inline size_t sz_str(uint32_t field, struct ent_str s)
{
	return s.len ? sz_bytes(field, s.len) : 0;
}

static inline uint8_t *put_str(uint8_t *p, uint32_t field, struct ent_str s)
{
	return s.len ? put_bytes(p, field, s.p, s.len) : p;
}

size_t ent_rpc_wire_len_header_size(uint32_t field, size_t len)
{
	return tag_size(field) + vsize(len);
}

uint8_t *ent_rpc_wire_len_header_write(uint8_t *out, uint32_t field, size_t len)
{
	out = put_tag(out, field, WT_LEN);
	return put_varint(out, len);
}

size_t ent_rpc_wire_u64_field_size(uint32_t field, uint64_t v)
{
	return sz_u64(field, v);
}

uint8_t *ent_rpc_wire_u64_field_write(uint8_t *out, uint32_t field, uint64_t v)
{
	return put_u64(out, field, v);
}

/*
 * PrivilegeValue: the oneof member follows the type, as check.c's protobuf-c builder set it.
 * A oneof member is sent even when empty: "" is a value (a privilege granted as ""), and a
 * missing member would say there is none.
 */
static size_t priv_size(const struct ent_priv *v)
{
	size_t n = sz_str(PV_CODE, v->code) + sz_u64(PV_VALUE_TYPE, v->type);
	switch (v->type) {
	case ENT_PT_INTEGER:
		n += tag_size(PV_INT_VALUE) + vsize((uint64_t)v->i);
		break;
	case ENT_PT_BOOLEAN:
		n += tag_size(PV_BOOL_VALUE) + 1;
		break;
	case ENT_PT_STRING:
	case ENT_PT_SELECT:
		n += sz_bytes(PV_STRING_VALUE, v->s.len);
		break;
	}
	return n;
}

static uint8_t *priv_write(uint8_t *p, const struct ent_priv *v)
{
	p = put_str(p, PV_CODE, v->code);
	p = put_u64(p, PV_VALUE_TYPE, v->type);
	switch (v->type) {
	case ENT_PT_INTEGER:
		p = put_tag(p, PV_INT_VALUE, WT_VARINT);
		p = put_varint(p, (uint64_t)v->i);
		break;
	case ENT_PT_BOOLEAN:
		p = put_tag(p, PV_BOOL_VALUE, WT_VARINT);
		*p++ = v->b ? 1 : 0;
		break;
	case ENT_PT_STRING:
	case ENT_PT_SELECT:
		p = put_bytes(p, PV_STRING_VALUE, v->s.p, v->s.len);
		break;
	}
	return p;
}

static size_t usage_size(const struct ent_decision *d)
{
	return sz_u64(U_LIMIT, (uint64_t)d->limit) + sz_bool(U_UNLIMITED, d->unlimited) +
	       sz_u64(U_USED, (uint64_t)d->used) + sz_u64(U_REMAINING, (uint64_t)d->remaining) +
	       sz_bool(U_IS_SOFT_LIMIT, d->soft) + sz_u64(U_RESET_PERIOD, d->reset) +
	       sz_u64(U_PERIOD_START, (uint64_t)d->period_start) +
	       sz_u64(U_PERIOD_END, (uint64_t)d->period_end);
}

static uint8_t *usage_write(uint8_t *p, const struct ent_decision *d)
{
	p = put_u64(p, U_LIMIT, (uint64_t)d->limit);
	p = put_bool(p, U_UNLIMITED, d->unlimited);
	p = put_u64(p, U_USED, (uint64_t)d->used);
	p = put_u64(p, U_REMAINING, (uint64_t)d->remaining);
	p = put_bool(p, U_IS_SOFT_LIMIT, d->soft);
	p = put_u64(p, U_RESET_PERIOD, d->reset);
	p = put_u64(p, U_PERIOD_START, (uint64_t)d->period_start);
	return put_u64(p, U_PERIOD_END, (uint64_t)d->period_end);
}

/* Which member of the value oneof the answer carries (0: none). A first static value of ""
   is sent as string_value "" (see priv_size). */
static uint32_t value_field(const struct ent_decision *d)
{
	const struct ent_agg *g = d->agg;
	switch (d->feature_type) {
	case ENT_FT_BOOLEAN:
		return RESP_BOOL_VALUE;
	case ENT_FT_METERED:
		/* An unlimited feature has no number to give. */
		return g && !d->unlimited ? RESP_NUMBER_VALUE : 0;
	case ENT_FT_STATIC:
		return g && g->n_static ? RESP_STRING_VALUE : 0;
	default:
		return 0;
	}
}

size_t ent_rpc_wire_check_resp_bound(const struct ent_decision *d)
{
	/* Fixed fields: 3 small ones, the value, usage (2 + 61), override flag and time, next
	   change and sequence: under 160 bytes. Strings add their length and a 3-byte header
	   (lengths here are below 2^21), privileges also their fixed fields. */
	size_t n = 160;
	const struct ent_agg *g = d->agg;
	if (g) {
		n += g->override_reason.len + 3;
		for (uint32_t i = 0; i < g->n_static; i++)
			n += 2 * ((size_t)g->statics[i].len + 3); /* string_value repeats one */
		for (uint32_t i = 0; i < g->n_privs; i++)
			n += g->privs[i].code.len + g->privs[i].s.len + 32;
	}
	return n;
}

size_t ent_rpc_wire_check_resp_size(const struct ent_decision *d, uint64_t seq)
{
	const struct ent_agg *g = d->agg;
	size_t n = sz_bool(RESP_ALLOWED, d->allowed) + sz_u64(RESP_REASON, d->reason) +
		   sz_u64(RESP_FEATURE_TYPE, d->feature_type);
	switch (value_field(d)) {
	case RESP_BOOL_VALUE:
		n += tag_size(RESP_BOOL_VALUE) + 1;
		break;
	case RESP_NUMBER_VALUE:
		n += tag_size(RESP_NUMBER_VALUE) + 8;
		break;
	case RESP_STRING_VALUE:
		n += sz_bytes(RESP_STRING_VALUE, g->statics[0].len);
		break;
	}
	if (g) {
		for (uint32_t i = 0; i < g->n_static; i++)
			n += sz_bytes(RESP_STATIC_VALUES, g->statics[i].len);
		for (uint32_t i = 0; i < g->n_privs; i++)
			n += sz_bytes(RESP_PRIVILEGES, priv_size(&g->privs[i]));
	}
	if (d->metered)
		n += sz_bytes(RESP_USAGE, usage_size(d));
	if (g && g->override_applied)
		n += sz_bool(RESP_OVERRIDE_APPLIED, true) +
		     sz_str(RESP_OVERRIDE_REASON, g->override_reason) +
		     sz_u64(RESP_OVERRIDE_EXPIRES_AT, (uint64_t)g->override_expires_at);
	return n + sz_u64(RESP_NEXT_CHANGE_AT, (uint64_t)d->next_change_at) +
	       sz_u64(RESP_SEQUENCE, seq);
}

uint8_t *ent_rpc_wire_check_resp_write(uint8_t *p, const struct ent_decision *d, uint64_t seq)
{
	const struct ent_agg *g = d->agg;
	p = put_bool(p, RESP_ALLOWED, d->allowed);
	p = put_u64(p, RESP_REASON, d->reason);
	p = put_u64(p, RESP_FEATURE_TYPE, d->feature_type);
	switch (value_field(d)) {
	case RESP_BOOL_VALUE:
		p = put_tag(p, RESP_BOOL_VALUE, WT_VARINT);
		*p++ = (g ? g->enabled : d->allowed) ? 1 : 0;
		break;
	case RESP_NUMBER_VALUE: {
		double v = (double)d->limit;
		uint64_t bits;
		memcpy(&bits, &v, 8);
		p = put_tag(p, RESP_NUMBER_VALUE, WT_64BIT);
		for (int i = 0; i < 8; i++)
			*p++ = (uint8_t)(bits >> (8 * i));
		break;
	}
	case RESP_STRING_VALUE:
		p = put_bytes(p, RESP_STRING_VALUE, g->statics[0].p, g->statics[0].len);
		break;
	}
	if (g) {
		for (uint32_t i = 0; i < g->n_static; i++)
			p = put_bytes(p, RESP_STATIC_VALUES, g->statics[i].p, g->statics[i].len);
		for (uint32_t i = 0; i < g->n_privs; i++) {
			p = ent_rpc_wire_len_header_write(p, RESP_PRIVILEGES,
							  priv_size(&g->privs[i]));
			p = priv_write(p, &g->privs[i]);
		}
	}
	if (d->metered) {
		/* A Usage is at most 61 bytes (8 fields, none longer than 11), so its length is
		   one byte, written once the fields are. */
		p = put_tag(p, RESP_USAGE, WT_LEN);
		uint8_t *len = p++;
		p = usage_write(p, d);
		*len = (uint8_t)(p - len - 1);
	}
	if (g && g->override_applied) {
		p = put_bool(p, RESP_OVERRIDE_APPLIED, true);
		p = put_str(p, RESP_OVERRIDE_REASON, g->override_reason);
		p = put_u64(p, RESP_OVERRIDE_EXPIRES_AT, (uint64_t)g->override_expires_at);
	}
	p = put_u64(p, RESP_NEXT_CHANGE_AT, (uint64_t)d->next_change_at);
	return put_u64(p, RESP_SEQUENCE, seq);
}

/* ---- batch responses ------------------------------------------------------------------ */

/* Room for \a need more bytes, growing by doubling. */
static int batch_room(struct ent_wire_batch *b, size_t need)
{
	if (b->cap - b->used >= need)
		return 0;
	size_t cap = b->cap * 2 > b->used + need ? b->cap * 2 : b->used + need;
	return b->grow(b, cap);
}

int ent_rpc_wire_batch_add(struct ent_wire_batch *b, const struct ent_decision *d)
{
	/*
	 * The fast way writes the result first, two bytes after where it starts (the tag and a
	 * one-byte length: a result is usually under 128 bytes), measures it, and moves a longer
	 * one up to make room for its longer length. ent_rpc_wire_check_resp_bound guarantees the
	 * room (plus up to 4 length bytes: results are below 2^28 bytes), so no field is sized
	 * twice. Near the size limit, where the bound could refuse what fits, the exact size
	 * decides.
	 */
	size_t room = 5 + ent_rpc_wire_check_resp_bound(d);
	if (b->used + room > b->max) {
		size_t n = ent_rpc_wire_check_resp_size(d, b->seq);
		size_t need = ent_rpc_wire_len_header_size(ENT_WIRE_BATCH_RESULTS, n) + n;
		if (b->used + need > b->max)
			return -ENT_EFULL;
		int rc = batch_room(b, need);
		if (rc)
			return rc;
		uint8_t *at =
			ent_rpc_wire_len_header_write(b->p + b->used, ENT_WIRE_BATCH_RESULTS, n);
		b->used = (size_t)(ent_rpc_wire_check_resp_write(at, d, b->seq) - b->p);
		return 0;
	}
	int rc = batch_room(b, room);
	if (rc)
		return rc;
	uint8_t *at = b->p + b->used, *start = at + 2;
	size_t n = (size_t)(ent_rpc_wire_check_resp_write(start, d, b->seq) - start);
	size_t hdr = ent_rpc_wire_len_header_size(ENT_WIRE_BATCH_RESULTS, n);
	if (hdr != 2)
		memmove(at + hdr, start, n);
	ent_rpc_wire_len_header_write(at, ENT_WIRE_BATCH_RESULTS, n);
	b->used += hdr + n;
	return 0;
}

int ent_rpc_wire_batch_finish(struct ent_wire_batch *b)
{
	size_t n = sz_u64(ENT_WIRE_BATCH_SEQUENCE, b->seq);
	if (b->used + n > b->max)
		return -ENT_EFULL;
	int rc = batch_room(b, n);
	if (rc)
		return rc;
	b->used = (size_t)(put_u64(b->p + b->used, ENT_WIRE_BATCH_SEQUENCE, b->seq) - b->p);
	return 0;
}
