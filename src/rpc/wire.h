/*
 * Hand-written protobuf codec for the hot path only: CheckEntitlementRequest and
 * BatchCheckEntitlementsRequest in, CheckEntitlementResponse (alone or as the items of a
 * BatchCheckEntitlementsResponse) out. Everything else goes through protobuf-c.
 *
 * Why: protobuf-c unpacks into a tree of arena allocations, copies every string to add a NUL,
 * and packs through a descriptor walk; on a check those were about a fifth of our own CPU
 * (docs/performance.md). Here a request is read in place (strings point into the received
 * bytes) and a response is written straight from the decision into the output buffer.
 *
 * Equivalence with protobuf-c is the contract, tested byte for byte and field for field on
 * random messages (tests/unit/test_wire.c) and fuzzed (tests/fuzz/fuzz_wire.c):
 *  - decode accepts exactly what protobuf_c_message_unpack accepts for these messages: unknown
 *    fields of wire types 0, 1, 2 and 5 are skipped, groups (3, 4) and types 6, 7 are refused,
 *    a known field with the wrong wire type is refused, a repeated scalar keeps the last value;
 *  - encode writes the bytes protobuf_c_message_pack writes for the message check.c used to
 *    build from the same decision: proto3 defaults omitted, oneof members written when set,
 *    fields in number order.
 * One deliberate difference: a string with an embedded NUL keeps its full length here
 * (protobuf-c's C string would end at the NUL), so such an id is refused by validation
 * instead of being silently truncated.
 */
#ifndef ENT_RPC_WIRE_H
#define ENT_RPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "ent/model.h"

/** A decoded CheckEntitlementRequest; the strings borrow the request bytes. */
struct ent_wire_check {
	struct ent_str customer_id;
	struct ent_str feature_code;
	int64_t quantity;
	int64_t at;
	uint64_t min_sequence;
};

/**
 * Decode one CheckEntitlementRequest from \a p (\a n bytes).
 * \return 0, or -ENT_EINVAL when protobuf-c would refuse the bytes.
 * \note out's strings point into \a p: valid as long as the bytes are.
 */
int ent_rpc_wire_check_decode(const uint8_t *p, size_t n, struct ent_wire_check *out);

/**
 * Validate a BatchCheckEntitlementsRequest and count its checks (field 1), decoding each.
 * \return 0 with *count set, or -ENT_EINVAL when protobuf-c would refuse the bytes.
 */
int ent_rpc_wire_batch_count(const uint8_t *p, size_t n, size_t *count);

/**
 * Count the checks of a BatchCheckEntitlementsRequest checking only its own fields, not the
 * checks inside (ent_rpc_wire_batch_next decodes and refuses those): one pass for a handler that
 * decodes every check anyway. \return 0 with *count set, or -ENT_EINVAL.
 */
int ent_rpc_wire_batch_items(const uint8_t *p, size_t n, size_t *count);

/** Walks the checks of a batch request that ent_rpc_wire_batch_count accepted. */
struct ent_wire_iter {
	const uint8_t *p, *end;
};

static inline void ent_rpc_wire_iter_init(struct ent_wire_iter *it, const uint8_t *p, size_t n)
{
	it->p = p;
	it->end = p + n;
}

/**
 * The next check of the batch into \a out.
 * \return 1 (one decoded), 0 (no more), or -ENT_EINVAL (malformed: not after a successful
 * ent_rpc_wire_batch_count of the same bytes).
 */
int ent_rpc_wire_batch_next(struct ent_wire_iter *it, struct ent_wire_check *out);

/**
 * Encoded size of the CheckEntitlementResponse for decision \a d read at snapshot sequence
 * \a seq. The value, static values, privileges and override details come from d->agg when it
 * is set (a decision without an aggregate answers only allowed, reason and type).
 */
size_t ent_rpc_wire_check_resp_size(const struct ent_decision *d, uint64_t seq);

/**
 * Write that response at \a out, which has ent_rpc_wire_check_resp_size() bytes.
 * \return the end of what was written.
 */
uint8_t *ent_rpc_wire_check_resp_write(uint8_t *out, const struct ent_decision *d, uint64_t seq);

/**
 * An upper bound of ent_rpc_wire_check_resp_size(d, any seq), cheaper to compute: a writer with
 * this much room can write first and measure after.
 */
size_t ent_rpc_wire_check_resp_bound(const struct ent_decision *d);

/** Bytes of a length-delimited field header (tag and length) for field \a field. */
size_t ent_rpc_wire_len_header_size(uint32_t field, size_t len);
/** Write a length-delimited field header; \return the end. */
uint8_t *ent_rpc_wire_len_header_write(uint8_t *out, uint32_t field, size_t len);
/** Bytes of an unsigned varint field (0 when \a v is 0: proto3 omits it). */
size_t ent_rpc_wire_u64_field_size(uint32_t field, uint64_t v);
/** Write an unsigned varint field unless \a v is 0; \return the end. */
uint8_t *ent_rpc_wire_u64_field_write(uint8_t *out, uint32_t field, uint64_t v);

/** BatchCheckEntitlementsResponse field numbers. */
#define ENT_WIRE_BATCH_RESULTS	1
#define ENT_WIRE_BATCH_SEQUENCE 2

/**
 * A BatchCheckEntitlementsResponse written result by result into one growing buffer: the
 * results (field 1) in order, then the sequence (field 2), so the answers of a batch are
 * encoded as they are decided, without a message tree or a second pass.
 *
 * The caller owns the buffer: p/cap describe it, and grow() replaces it by one of at least
 * \a cap bytes holding the first \a used bytes (check.c: a gRPC slice). The message never
 * exceeds \a max bytes: a result or sequence that would not fit is refused with -ENT_EFULL,
 * exactly when protobuf-c's packed size of the whole response would exceed \a max.
 */
struct ent_wire_batch {
	uint8_t *p;
	size_t used, cap, max;
	uint64_t seq; /**< the snapshot sequence, written in every result and at the end */
	/** Make the buffer at least \a cap bytes; 0, or -ENT_E* (the batch fails with it). */
	int (*grow)(struct ent_wire_batch *b, size_t cap);
};

/** Append the result of decision \a d. \return 0, -ENT_EFULL, or grow()'s error. */
int ent_rpc_wire_batch_add(struct ent_wire_batch *b, const struct ent_decision *d);
/** Append the sequence. \return 0 (b->used is the message length), -ENT_EFULL, or grow's error. */
int ent_rpc_wire_batch_finish(struct ent_wire_batch *b);

#endif
