/*
 * The aggregated record codec: a versioned little-endian binary read in place from the map.
 * The layout is documented byte by byte in docs/storage.md; keep the two in step.
 *
 * Records come from our own encoder, but decode treats them as untrusted bytes (it is fuzzed):
 * every count, length and offset is checked against the buffer and the ENT_MAX_* caps before
 * it is used, and multi-byte values are assembled byte by byte (never read through a cast
 * pointer), so unaligned values and short buffers are harmless.
 */
#include <string.h>

#include "store/impl.h"

/* Version 2 added the usage shape (reset, anchor) to every segment's payload; version 1
 * records (one shape in the header) still decode, each segment taking the header's shape. */
#define REC_VERSION	   2
#define REC_VERSION_OLDEST 1
/*
 * The envelope around the format above: bit 7 of the version byte says that the record ends
 * with a 4-byte CRC32C (LE) of everything before it. Every record written since carries it;
 * records written before it (bit 7 clear) still decode, unprotected, so an existing database
 * keeps working and each record gains the trailer at its next rewrite. One flipped bit cannot
 * turn a sealed record into a plain one that decodes: the trailer would then be padding, which
 * the exact-length check refuses.
 */
#define REC_SEALED  0x80
#define REC_TRAILER 4

enum {
	F_ENABLED = 1 << 0,
	F_UNLIMITED = 1 << 1,
	F_SOFT = 1 << 2,
	F_OVERRIDE = 1 << 3,
	F_ALL = F_ENABLED | F_UNLIMITED | F_SOFT | F_OVERRIDE,
};

/* ---- encode --------------------------------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool overflow;
};

static void w_bytes(struct wbuf *w, const void *src, size_t n)
{
	if (w->overflow || w->cap - w->len < n) {
		w->overflow = true;
		return;
	}
	if (n)
		memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void w_u8(struct wbuf *w, uint8_t v)
{
	w_bytes(w, &v, 1);
}

static void w_u16(struct wbuf *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	w_bytes(w, b, 2);
}

static void w_u32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	w_bytes(w, b, 4);
}

static void w_i64(struct wbuf *w, int64_t v)
{
	uint8_t b[8];
	ent_store_le64_put(b, (uint64_t)v);
	w_bytes(w, b, 8);
}

static bool w_str(struct wbuf *w, struct ent_str s, uint32_t max)
{
	if (s.len > max)
		return false;
	w_u16(w, (uint16_t)s.len);
	w_bytes(w, s.p, s.len);
	return true;
}

static bool encode_payload(struct wbuf *w, const struct ent_agg *a)
{
	if (a->n_static > ENT_MAX_STATIC || a->n_privs > ENT_MAX_PRIVS ||
	    a->state > ENT_R_EXPIRED || a->reset > ENT_RESET_NEVER)
		return false;
	uint8_t flags = (a->enabled ? F_ENABLED : 0) | (a->unlimited ? F_UNLIMITED : 0) |
			(a->soft ? F_SOFT : 0) | (a->override_applied ? F_OVERRIDE : 0);
	w_u8(w, flags);
	w_u8(w, a->state);
	w_u8(w, a->reset);
	w_i64(w, a->anchor);
	w_i64(w, a->limit);
	w_i64(w, a->override_expires_at);
	if (!w_str(w, a->override_reason, ENT_MAX_TEXT))
		return false;
	w_u8(w, (uint8_t)a->n_static);
	for (uint32_t i = 0; i < a->n_static; i++)
		if (!w_str(w, a->statics[i], ENT_MAX_TEXT))
			return false;
	w_u8(w, (uint8_t)a->n_privs);
	for (uint32_t i = 0; i < a->n_privs; i++) {
		const struct ent_priv *p = &a->privs[i];
		if (!w_str(w, p->code, ENT_MAX_CODE))
			return false;
		w_u8(w, p->type);
		switch (p->type) {
		case ENT_PT_INTEGER:
			w_i64(w, p->i);
			break;
		case ENT_PT_BOOLEAN:
			w_u8(w, p->b ? 1 : 0);
			break;
		case ENT_PT_STRING:
		case ENT_PT_SELECT:
			if (!w_str(w, p->s, ENT_MAX_TEXT))
				return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

int ent_store_record_encode(const struct ent_usage_state *u, const struct ent_agg *segs, int n,
			    uint8_t *buf, size_t cap)
{
	if (n < 1 || n > ENT_MAX_SEGMENTS || u->feature_type > ENT_FT_STATIC ||
	    u->reset > ENT_RESET_NEVER)
		return -ENT_EINVAL;
	for (int i = 0; i < n; i++) {
		if (segs[i].from >= segs[i].to || (i > 0 && segs[i].from < segs[i - 1].to))
			return -ENT_EINVAL;
	}
	struct wbuf w = {buf, 0, cap < ENT_RECORD_MAX ? cap : ENT_RECORD_MAX, false};
	w_u8(&w, REC_VERSION | REC_SEALED);
	w_u8(&w, u->feature_type);
	w_u8(&w, u->reset);
	w_u8(&w, (uint8_t)n);
	w_i64(&w, u->anchor);
	w_i64(&w, u->period_start);
	w_i64(&w, u->used);
	/* The table is written with placeholder offsets and patched once each payload lands. */
	size_t table = w.len;
	for (int i = 0; i < n; i++) {
		w_i64(&w, segs[i].from);
		w_i64(&w, segs[i].to);
		w_u32(&w, 0);
	}
	for (int i = 0; i < n; i++) {
		if (w.overflow)
			break;
		size_t off = w.len;
		size_t slot = table + (size_t)i * ENT_REC_SEG + 16;
		buf[slot] = (uint8_t)off;
		buf[slot + 1] = (uint8_t)(off >> 8);
		buf[slot + 2] = (uint8_t)(off >> 16);
		buf[slot + 3] = (uint8_t)(off >> 24);
		if (!encode_payload(&w, &segs[i]))
			return -ENT_EINVAL;
	}
	if (w.overflow)
		return -ENT_EINVAL;
	w_u32(&w, ent_crc32c(0, buf, w.len));
	if (w.overflow)
		return -ENT_EINVAL;
	return (int)w.len;
}

void ent_store_record_reseal(uint8_t *rec, size_t len)
{
	if (len > REC_TRAILER && (rec[0] & REC_SEALED)) {
		uint32_t c = ent_crc32c(0, rec, len - REC_TRAILER);
		uint8_t *t = rec + len - REC_TRAILER;
		t[0] = (uint8_t)c;
		t[1] = (uint8_t)(c >> 8);
		t[2] = (uint8_t)(c >> 16);
		t[3] = (uint8_t)(c >> 24);
	}
}

/* ---- decode --------------------------------------------------------------------------- */

struct rbuf {
	const uint8_t *p;
	size_t len, at;
};

static bool r_need(struct rbuf *r, size_t n)
{
	return r->len - r->at >= n;
}

static bool r_u8(struct rbuf *r, uint8_t *v)
{
	if (!r_need(r, 1))
		return false;
	*v = r->p[r->at++];
	return true;
}

static bool r_u16(struct rbuf *r, uint16_t *v)
{
	if (!r_need(r, 2))
		return false;
	*v = (uint16_t)(r->p[r->at] | r->p[r->at + 1] << 8);
	r->at += 2;
	return true;
}

static bool r_i64(struct rbuf *r, int64_t *v)
{
	if (!r_need(r, 8))
		return false;
	*v = (int64_t)ent_store_le64_get(r->p + r->at);
	r->at += 8;
	return true;
}

static bool r_str(struct rbuf *r, struct ent_str *s, uint32_t max)
{
	uint16_t n;
	if (!r_u16(r, &n) || n > max || !r_need(r, n))
		return false;
	s->p = (const char *)r->p + r->at;
	s->len = n;
	r->at += n;
	return true;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t get_i64(const uint8_t *p)
{
	return (int64_t)ent_store_le64_get(p);
}

/*
 * Open the envelope: check a sealed record's trailer and shorten \a len to the body before it.
 * This is the whole cost of the checksum on the check path: one CRC32C of the record.
 */
static int envelope_open(const uint8_t *rec, size_t *len)
{
	if (!rec || *len < 1 || (rec[0] & ~REC_SEALED) < REC_VERSION_OLDEST ||
	    (rec[0] & ~REC_SEALED) > REC_VERSION)
		return -ENT_ECORRUPT;
	if (!(rec[0] & REC_SEALED))
		return 0;
	if (*len <= REC_TRAILER)
		return -ENT_ECORRUPT;
	size_t body = *len - REC_TRAILER;
	if (ent_crc32c(0, rec, body) != get_u32(rec + body))
		return -ENT_ECORRUPT;
	*len = body;
	return 0;
}

int ent_store_record_header(const uint8_t *rec, size_t len, struct ent_usage_state *u)
{
	if (envelope_open(rec, &len) || len < ENT_REC_HDR)
		return -ENT_ECORRUPT;
	uint8_t type = rec[1], reset = rec[2], n = rec[3];
	if (type > ENT_FT_STATIC || reset > ENT_RESET_NEVER || n < 1 || n > ENT_MAX_SEGMENTS)
		return -ENT_ECORRUPT;
	size_t table_end = ENT_REC_HDR + (size_t)n * ENT_REC_SEG;
	if (len < table_end)
		return -ENT_ECORRUPT;
	int64_t prev_to = 0;
	uint32_t prev_off = 0;
	for (int i = 0; i < n; i++) {
		const uint8_t *e = rec + ENT_REC_HDR + (size_t)i * ENT_REC_SEG;
		int64_t from = get_i64(e), to = get_i64(e + 8);
		uint32_t off = get_u32(e + 16);
		/* Payloads follow the table in segment order, back to back. */
		if (from >= to || (i > 0 && (from < prev_to || off <= prev_off)) ||
		    (i == 0 && off != table_end) || off >= len)
			return -ENT_ECORRUPT;
		prev_to = to;
		prev_off = off;
	}
	if (u) {
		u->feature_type = type;
		u->reset = reset;
		u->anchor = get_i64(rec + 4);
		u->period_start = get_i64(rec + 12);
		u->used = get_i64(rec + 20);
	}
	return n;
}

void ent_store_record_seg_window(const uint8_t *rec, int i, int64_t *from, int64_t *to)
{
	const uint8_t *e = rec + ENT_REC_HDR + (size_t)i * ENT_REC_SEG;
	*from = get_i64(e);
	*to = get_i64(e + 8);
}

void ent_store_record_set_usage(uint8_t *rec, int64_t period_start, int64_t used)
{
	ent_store_le64_put(rec + 12, (uint64_t)period_start);
	ent_store_le64_put(rec + 20, (uint64_t)used);
}

static size_t seg_offset(const uint8_t *rec, int i)
{
	return get_u32(rec + ENT_REC_HDR + (size_t)i * ENT_REC_SEG + 16);
}

static bool skip_str(struct rbuf *r, uint32_t max)
{
	struct ent_str s;
	return r_str(r, &s, max);
}

/* Validate one payload without keeping anything: the same checks as decode_payload. */
static bool skip_payload(struct rbuf *r, uint8_t version)
{
	uint8_t flags, state, n, type, b, reset;
	int64_t i64;
	if (!r_u8(r, &flags) || (flags & ~F_ALL) || !r_u8(r, &state) || state > ENT_R_EXPIRED)
		return false;
	if (version >= 2 && (!r_u8(r, &reset) || reset > ENT_RESET_NEVER || !r_i64(r, &i64)))
		return false;
	if (!r_i64(r, &i64) || !r_i64(r, &i64) || !skip_str(r, ENT_MAX_TEXT))
		return false;
	if (!r_u8(r, &n) || n > ENT_MAX_STATIC)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (!skip_str(r, ENT_MAX_TEXT))
			return false;
	if (!r_u8(r, &n) || n > ENT_MAX_PRIVS)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (!skip_str(r, ENT_MAX_CODE) || !r_u8(r, &type))
			return false;
		switch (type) {
		case ENT_PT_INTEGER:
			if (!r_i64(r, &i64))
				return false;
			break;
		case ENT_PT_BOOLEAN:
			if (!r_u8(r, &b) || b > 1)
				return false;
			break;
		case ENT_PT_STRING:
		case ENT_PT_SELECT:
			if (!skip_str(r, ENT_MAX_TEXT))
				return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

static int decode_payload(struct rbuf *r, struct ent_agg *a, uint8_t version)
{
	uint8_t flags, n;
	if (!r_u8(r, &flags) || (flags & ~F_ALL) || !r_u8(r, &a->state) || a->state > ENT_R_EXPIRED)
		return -ENT_ECORRUPT;
	/* Version 1 has no shape per segment: the caller gave the header's. */
	if (version >= 2 &&
	    (!r_u8(r, &a->reset) || a->reset > ENT_RESET_NEVER || !r_i64(r, &a->anchor)))
		return -ENT_ECORRUPT;
	if (!r_i64(r, &a->limit) || !r_i64(r, &a->override_expires_at) ||
	    !r_str(r, &a->override_reason, ENT_MAX_TEXT))
		return -ENT_ECORRUPT;
	a->enabled = flags & F_ENABLED;
	a->unlimited = flags & F_UNLIMITED;
	a->soft = flags & F_SOFT;
	a->override_applied = flags & F_OVERRIDE;
	if (!r_u8(r, &n) || n > ENT_MAX_STATIC)
		return -ENT_ECORRUPT;
	a->n_static = n;
	for (uint32_t i = 0; i < n; i++)
		if (!r_str(r, &a->statics[i], ENT_MAX_TEXT))
			return -ENT_ECORRUPT;
	if (!r_u8(r, &n) || n > ENT_MAX_PRIVS)
		return -ENT_ECORRUPT;
	a->n_privs = n;
	for (uint32_t i = 0; i < n; i++) {
		struct ent_priv *p = &a->privs[i];
		uint8_t b;
		p->b = false;
		p->i = 0;
		p->s = (struct ent_str){"", 0};
		if (!r_str(r, &p->code, ENT_MAX_CODE) || !r_u8(r, &p->type))
			return -ENT_ECORRUPT;
		switch (p->type) {
		case ENT_PT_INTEGER:
			if (!r_i64(r, &p->i))
				return -ENT_ECORRUPT;
			break;
		case ENT_PT_BOOLEAN:
			if (!r_u8(r, &b) || b > 1)
				return -ENT_ECORRUPT;
			p->b = b;
			break;
		case ENT_PT_STRING:
		case ENT_PT_SELECT:
			if (!r_str(r, &p->s, ENT_MAX_TEXT))
				return -ENT_ECORRUPT;
			break;
		default:
			return -ENT_ECORRUPT;
		}
	}
	return 0;
}

int ent_store_record_decode(const uint8_t *rec, size_t len, int64_t t, struct ent_usage_state *u,
			    struct ent_agg *seg)
{
	int n = ent_store_record_header(rec, len, u);
	if (n < 0)
		return n;
	if (rec[0] & REC_SEALED)
		len -= REC_TRAILER; /* checked by ent_store_record_header */
	/* Last segment with from <= t: segments are sorted and disjoint (checked above). */
	int lo = 0, hi = n - 1, found = -1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int64_t from, to;
		ent_store_record_seg_window(rec, mid, &from, &to);
		if (from <= t) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	if (found < 0)
		return -ENT_ECORRUPT;
	int64_t from, to;
	ent_store_record_seg_window(rec, found, &from, &to);
	/* [from, to) except that an open end (ENT_T_MAX) also holds ENT_T_MAX itself. */
	if (t >= to && to != ENT_T_MAX)
		return -ENT_ECORRUPT;
	seg->from = from;
	seg->to = to;
	seg->reset = rec[2];
	seg->anchor = get_i64(rec + 4);
	/*
	 * The payload must end exactly where the next one starts (or the record ends), and the
	 * last payload must end exactly at the end: a truncated or padded record never decodes,
	 * whichever segment is asked for. Walking the last payload only reads lengths.
	 */
	size_t end = found + 1 < n ? seg_offset(rec, found + 1) : len;
	struct rbuf r = {rec, end, seg_offset(rec, found)};
	int rc = decode_payload(&r, seg, rec[0] & ~REC_SEALED);
	if (rc || r.at != end)
		return -ENT_ECORRUPT;
	if (found + 1 < n) {
		struct rbuf last = {rec, len, seg_offset(rec, n - 1)};
		if (!skip_payload(&last, rec[0] & ~REC_SEALED) || last.at != len)
			return -ENT_ECORRUPT;
	}
	return 0;
}
