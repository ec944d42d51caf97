/*
 * The aggregated record codec: round trips of every field kind, segment lookup at the edges,
 * and hostile input (every truncation, bit flips, crafted counts) that must answer
 * -ENT_ECORRUPT without reading out of bounds (run under valgrind / ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/store.h"
#include "store/impl.h"

static struct ent_priv privs3[4];
static struct ent_str statics3[2];

/* Three segments: [MIN, 1000) disabled, [1000, 2000) rich, [2000, MAX) minimal. */
static int make_segments(struct ent_agg *segs)
{
	memset(segs, 0, 3 * sizeof(*segs));
	segs[0].from = ENT_T_MIN;
	segs[0].to = 1000;
	segs[0].state = ENT_R_NOT_YET_ACTIVE;

	struct ent_agg *a = &segs[1];
	a->from = 1000;
	a->to = 2000;
	a->state = ENT_R_ENTITLED;
	a->enabled = true;
	a->soft = true;
	a->limit = 1234567890123LL;
	a->override_applied = true;
	a->override_reason = ENT_STR_LIT("support ticket 42");
	a->override_expires_at = 2000;
	statics3[0] = ENT_STR_LIT("eu-west");
	statics3[1] = ENT_STR_LIT("");
	a->n_static = 2;
	memcpy(a->statics, statics3, sizeof(statics3));
	privs3[0] = (struct ent_priv){ENT_STR_LIT("seats"), ENT_PT_INTEGER, false, -42, {"", 0}};
	privs3[1] = (struct ent_priv){ENT_STR_LIT("sso"), ENT_PT_BOOLEAN, true, 0, {"", 0}};
	privs3[2] = (struct ent_priv){ENT_STR_LIT("tier"), ENT_PT_STRING, false, 0,
				      ENT_STR_LIT("gold")};
	privs3[3] = (struct ent_priv){ENT_STR_LIT("provider"), ENT_PT_SELECT, false, 0,
				      ENT_STR_LIT("okta")};
	a->n_privs = 4;
	memcpy(a->privs, privs3, sizeof(privs3));

	segs[2].from = 2000;
	segs[2].to = ENT_T_MAX;
	segs[2].state = ENT_R_ENTITLED;
	segs[2].enabled = true;
	segs[2].unlimited = true;
	return 3;
}

static const struct ent_usage_state usage = {ENT_FT_METERED, ENT_RESET_MONTHLY, 1700000000000LL,
					     1700000000000LL, 77};

static int encode_sample(uint8_t *buf, size_t cap)
{
	static struct ent_agg segs[3];
	int n = make_segments(segs);
	return ent_store_record_encode(&usage, segs, n, buf, cap);
}

static bool str_is(struct ent_str s, const char *want)
{
	return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static void test_round_trip(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	assert_true(len > ENT_REC_HDR + 3 * ENT_REC_SEG);

	struct ent_usage_state u;
	struct ent_agg a;
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 1500, &u, &a), 0);
	assert_int_equal(u.feature_type, ENT_FT_METERED);
	assert_int_equal(u.reset, ENT_RESET_MONTHLY);
	assert_true(u.anchor == 1700000000000LL);
	assert_true(u.period_start == 1700000000000LL);
	assert_int_equal(u.used, 77);

	assert_int_equal(a.from, 1000);
	assert_int_equal(a.to, 2000);
	assert_int_equal(a.state, ENT_R_ENTITLED);
	assert_true(a.enabled && a.soft && a.override_applied && !a.unlimited);
	assert_true(a.limit == 1234567890123LL);
	assert_int_equal(a.override_expires_at, 2000);
	assert_true(str_is(a.override_reason, "support ticket 42"));
	assert_int_equal(a.n_static, 2);
	assert_true(str_is(a.statics[0], "eu-west"));
	assert_true(str_is(a.statics[1], ""));
	assert_int_equal(a.n_privs, 4);
	assert_true(str_is(a.privs[0].code, "seats"));
	assert_int_equal(a.privs[0].type, ENT_PT_INTEGER);
	assert_int_equal(a.privs[0].i, -42);
	assert_int_equal(a.privs[1].type, ENT_PT_BOOLEAN);
	assert_true(a.privs[1].b);
	assert_true(str_is(a.privs[2].s, "gold"));
	assert_int_equal(a.privs[3].type, ENT_PT_SELECT);
	assert_true(str_is(a.privs[3].s, "okta"));
	/* Strings are read in place: they point into the record. */
	assert_true((const uint8_t *)a.privs[3].s.p > buf &&
		    (const uint8_t *)a.privs[3].s.p < buf + len);
}

static void test_segment_edges(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	struct ent_usage_state u;
	struct ent_agg a;
	const struct {
		int64_t t, from;
	} cases[] = {
		{ENT_T_MIN, ENT_T_MIN}, {0, ENT_T_MIN}, {999, ENT_T_MIN}, {1000, 1000},
		{1999, 1000},		{2000, 2000},	{2001, 2000},	  {ENT_T_MAX, 2000},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ent_store_record_decode(buf, (size_t)len, cases[i].t, &u, &a), 0);
		assert_true(a.from == cases[i].from);
	}
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 999, &u, &a), 0);
	assert_int_equal(a.state, ENT_R_NOT_YET_ACTIVE);
	assert_false(a.enabled);
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 2000, &u, &a), 0);
	assert_true(a.unlimited);
	assert_int_equal(a.n_privs, 0);
}

static void test_single_segment(void **state)
{
	struct ent_agg seg;
	memset(&seg, 0, sizeof(seg));
	seg.from = ENT_T_MIN;
	seg.to = ENT_T_MAX;
	seg.state = ENT_R_ENTITLED;
	seg.enabled = true;
	struct ent_usage_state u0 = {ENT_FT_BOOLEAN, ENT_RESET_NEVER, 0, ENT_T_MIN, 0}, u;
	uint8_t buf[128];
	int len = ent_store_record_encode(&u0, &seg, 1, buf, sizeof(buf));
	/* Header, one table entry, payload of 1+1+1+8+8+8+2+1+1 bytes, the CRC32C trailer. */
	assert_int_equal(len, ENT_REC_HDR + ENT_REC_SEG + 31 + 4);
	assert_int_equal(buf[0], 0x82); /* version 2, sealed */
	struct ent_agg a;
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 12345, &u, &a), 0);
	assert_true(a.enabled);
	assert_true(u.period_start == ENT_T_MIN);
	assert_int_equal(u.feature_type, ENT_FT_BOOLEAN);
}

static void test_encode_refuses(void **state)
{
	struct ent_agg segs[3];
	int n = make_segments(segs);
	uint8_t buf[ENT_RECORD_MAX];
	/* Too small a buffer. */
	assert_int_equal(ent_store_record_encode(&usage, segs, n, buf, 40), -ENT_EINVAL);
	/* Unsorted or empty segments. */
	segs[1].from = 500;
	assert_int_equal(ent_store_record_encode(&usage, segs, n, buf, sizeof(buf)), -ENT_EINVAL);
	make_segments(segs);
	segs[2].from = segs[2].to;
	assert_int_equal(ent_store_record_encode(&usage, segs, n, buf, sizeof(buf)), -ENT_EINVAL);
	make_segments(segs);
	assert_int_equal(ent_store_record_encode(&usage, segs, 0, buf, sizeof(buf)), -ENT_EINVAL);
	/* An untyped privilege has no encoding. */
	segs[1].privs[0].type = ENT_PT_UNSPECIFIED;
	assert_int_equal(ent_store_record_encode(&usage, segs, n, buf, sizeof(buf)), -ENT_EINVAL);
}

static void test_every_truncation(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	const int64_t instants[] = {ENT_T_MIN, 1500, 2500};
	for (int cut = 0; cut < len; cut++) {
		/* A fresh heap copy of exactly \a cut bytes: valgrind sees any read past it. */
		uint8_t *p = malloc(cut ? (size_t)cut : 1);
		memcpy(p, buf, (size_t)cut);
		for (size_t k = 0; k < 3; k++) {
			struct ent_usage_state u;
			struct ent_agg a;
			assert_int_equal(
				ent_store_record_decode(p, (size_t)cut, instants[k], &u, &a),
				-ENT_ECORRUPT);
		}
		free(p);
	}
	/* Padding is as wrong as truncation. */
	struct ent_usage_state u;
	struct ent_agg a;
	buf[len] = 0;
	assert_int_equal(ent_store_record_decode(buf, (size_t)len + 1, 1500, &u, &a),
			 -ENT_ECORRUPT);
	assert_int_equal(ent_store_record_decode(NULL, 0, 0, &u, &a), -ENT_ECORRUPT);
}

/* The standard check value, and the same value whatever the split (hardware and table). */
static void test_crc32c(void **state)
{
	assert_int_equal(ent_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(ent_crc32c(ent_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
	assert_int_equal(ent_crc32c(0, "", 0), 0);
}

/* Version 1 (one usage shape in the header, none per segment) still decodes: each segment
 * takes the header's shape. */
static void test_version1(void **state)
{
	struct ent_agg seg;
	memset(&seg, 0, sizeof(seg));
	seg.from = ENT_T_MIN;
	seg.to = ENT_T_MAX;
	seg.state = ENT_R_ENTITLED;
	seg.enabled = true;
	seg.limit = 7;
	seg.reset = ENT_RESET_DAILY;
	seg.anchor = 4242;
	struct ent_usage_state u0 = {ENT_FT_METERED, ENT_RESET_WEEKLY, 99, 0, 3}, u;
	uint8_t buf[128], v1[128];
	int len = ent_store_record_encode(&u0, &seg, 1, buf, sizeof(buf));
	struct ent_agg a;
	int body = len - 4; /* without the CRC32C trailer: version 1 records had none */
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 5, &u, &a), 0);
	assert_int_equal(a.reset, ENT_RESET_DAILY);
	assert_int_equal(a.anchor, 4242);
	/* The same record as version 1 wrote it: no reset and anchor after the state byte. */
	size_t p0 = ENT_REC_HDR + ENT_REC_SEG;
	memcpy(v1, buf, p0 + 2);
	memcpy(v1 + p0 + 2, buf + p0 + 11, (size_t)body - p0 - 11);
	v1[0] = 1;
	size_t len1 = (size_t)body - 9;
	memset(&a, 0, sizeof(a));
	assert_int_equal(ent_store_record_decode(v1, len1, 5, &u, &a), 0);
	assert_int_equal(a.reset, ENT_RESET_WEEKLY);
	assert_int_equal(a.anchor, 99);
	assert_true(a.enabled && a.limit == 7);
	assert_int_equal(u.used, 3);
	/* A version 1 record is not a version 2 one, nor the reverse. */
	v1[0] = 2;
	assert_int_equal(ent_store_record_decode(v1, len1, 5, &u, &a), -ENT_ECORRUPT);
	buf[0] = 1;
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 5, &u, &a), -ENT_ECORRUPT);
}

static void test_crafted(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	struct ent_usage_state u;
	struct ent_agg a;
	uint8_t copy[ENT_RECORD_MAX];

	/* Unknown version, feature type, reset, zero and too many segments. */
	const struct {
		size_t at;
		uint8_t v;
	} bad[] = {
		{0, 0x83}, {0, 0x80}, {0, 0x03}, {1, 4}, {2, 8}, {3, 0}, {3, ENT_MAX_SEGMENTS + 1}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(copy, buf, (size_t)len);
		copy[bad[i].at] = bad[i].v;
		ent_store_record_reseal(copy, (size_t)len);
		assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a),
				 -ENT_ECORRUPT);
	}
	/* The payload of segment 1 starts right after segment 0's 31 bytes. */
	size_t p1 = ENT_REC_HDR + 3 * ENT_REC_SEG + 31;
	memcpy(copy, buf, (size_t)len);
	copy[p1] = 0x80;			    /* unknown flag bit */
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	memcpy(copy, buf, (size_t)len);
	copy[p1 + 1] = ENT_R_EXPIRED + 1;	    /* state out of range */
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	memcpy(copy, buf, (size_t)len);
	copy[p1 + 2] = ENT_RESET_NEVER + 1;	    /* the segment's reset out of range */
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	/* n_static beyond the cap: after flags, state, reset, anchor, limit, expiry and the
	 * 17-byte reason. */
	size_t nst = p1 + 1 + 1 + 1 + 8 + 8 + 8 + 2 + 17;
	assert_int_equal(buf[nst], 2);
	memcpy(copy, buf, (size_t)len);
	copy[nst] = ENT_MAX_STATIC + 1;
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	/* A string length running past the end. */
	memcpy(copy, buf, (size_t)len);
	copy[nst + 1] = 0xff;
	copy[nst + 2] = 0xff;
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	/* Overlapping segments and an offset outside the record. */
	memcpy(copy, buf, (size_t)len);
	ent_store_le64_put(copy + ENT_REC_HDR + ENT_REC_SEG, 10); /* seg 1 from 10 < seg 0 to */
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	memcpy(copy, buf, (size_t)len);
	copy[ENT_REC_HDR + 2 * ENT_REC_SEG + 16 + 3] = 0x7f;
	ent_store_record_reseal(copy, (size_t)len); /* the structure is judged, not the checksum */
	assert_int_equal(ent_store_record_decode(copy, (size_t)len, 1500, &u, &a), -ENT_ECORRUPT);
	/* The untouched record still decodes (the copies above really were the only change). */
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 1500, &u, &a), 0);
}

/*
 * Random bit flips (one to three): the checksum catches every one, so a flipped record never
 * decodes to anything; only flips that cancel out (the same bit twice) give the record back.
 */
static void test_bit_flips(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	uint32_t x = 2463534242u;
	int ok = 0, bad = 0;
	for (int i = 0; i < 20000; i++) {
		uint8_t *p = malloc((size_t)len);
		memcpy(p, buf, (size_t)len);
		for (int f = 0; f < 3; f++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			p[x % (uint32_t)len] ^= (uint8_t)(1u << (x >> 29));
		}
		struct ent_usage_state u;
		struct ent_agg a;
		int r = ent_store_record_decode(p, (size_t)len, (int64_t)(x % 3000), &u, &a);
		assert_true(r == 0 || r == -ENT_ECORRUPT);
		if (r == 0) {
			ok++;
			assert_memory_equal(p, buf, (size_t)len);
		} else {
			bad++;
		}
		free(p);
	}
	assert_true(bad > 19000);
}

/* Flip every bit of the record, one at a time: each one is DATA_LOSS, never another answer. */
static void test_every_bit(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	for (int i = 0; i < len * 8; i++) {
		uint8_t *p = malloc((size_t)len);
		memcpy(p, buf, (size_t)len);
		p[i / 8] ^= (uint8_t)(1u << (i % 8));
		struct ent_usage_state u;
		struct ent_agg a;
		assert_int_equal(ent_store_record_decode(p, (size_t)len, 1500, &u, &a),
				 -ENT_ECORRUPT);
		free(p);
	}
}

/* A record written before checksums (bit 7 of the version clear, no trailer) still decodes,
   and the structural checks still hold for it: every truncation is refused. */
static void test_legacy(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf)) - 4;
	buf[0] = 2; /* version 2, unsealed */
	struct ent_usage_state u;
	struct ent_agg a;
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 1500, &u, &a), 0);
	assert_int_equal(a.n_privs, 4);
	assert_int_equal(ent_store_record_header(buf, (size_t)len, NULL), 3);
	for (int cut = 0; cut < len; cut++) {
		uint8_t *p = malloc(cut ? (size_t)cut : 1);
		memcpy(p, buf, (size_t)cut);
		assert_int_equal(ent_store_record_decode(p, (size_t)cut, 2500, &u, &a),
				 -ENT_ECORRUPT);
		free(p);
	}
	/* A legacy record patched in place stays legacy: reseal leaves it alone. */
	uint8_t before[ENT_RECORD_MAX];
	memcpy(before, buf, (size_t)len);
	ent_store_record_reseal(buf, (size_t)len);
	assert_memory_equal(before, buf, (size_t)len);
}

static void test_patch_usage(void **state)
{
	uint8_t buf[ENT_RECORD_MAX];
	int len = encode_sample(buf, sizeof(buf));
	ent_store_record_set_usage(buf, 5000, 9);
	struct ent_usage_state u;
	struct ent_agg a;
	/* Patched without resealing, the record no longer matches its checksum. */
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 2500, &u, &a), -ENT_ECORRUPT);
	ent_store_record_reseal(buf, (size_t)len);
	assert_int_equal(ent_store_record_decode(buf, (size_t)len, 2500, &u, &a), 0);
	assert_int_equal(u.period_start, 5000);
	assert_int_equal(u.used, 9);
	assert_int_equal(ent_store_record_header(buf, (size_t)len, NULL), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_segment_edges),
		cmocka_unit_test(test_single_segment), cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_version1),       cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_crafted),	       cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_patch_usage),    cmocka_unit_test(test_every_bit),
		cmocka_unit_test(test_legacy),	       cmocka_unit_test(test_crc32c),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
