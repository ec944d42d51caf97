/* Wire-level string checks: NUL bytes and invalid UTF-8 are refused with the field's path. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ent/pbcheck.h"
#include "ent/v1/admin.pb-c.h"

/* Pack a feature whose second privilege's second select option is \a opt, into \a buf. */
static size_t pack_feature(const char *code, const char *opt, uint8_t *buf)
{
	Ent__V1__PrivilegeDef p0 = ENT__V1__PRIVILEGE_DEF__INIT, p1 = ENT__V1__PRIVILEGE_DEF__INIT;
	char *opts[] = {"google", (char *)opt};
	p0.code = "max";
	p0.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_INTEGER;
	p1.code = "provider";
	p1.value_type = ENT__V1__PRIVILEGE_TYPE__PRIVILEGE_TYPE_SELECT;
	p1.n_select_options = 2;
	p1.select_options = opts;
	Ent__V1__PrivilegeDef *privs[] = {&p0, &p1};
	Ent__V1__Feature f = ENT__V1__FEATURE__INIT;
	f.code = (char *)code;
	f.name = "Seats é 😀"; /* multi-byte UTF-8 is fine */
	f.type = ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED;
	f.n_privileges = 2;
	f.privileges = privs;
	Ent__V1__UpsertFeatureRequest req = ENT__V1__UPSERT_FEATURE_REQUEST__INIT;
	req.feature = &f;
	return ent__v1__upsert_feature_request__pack(&req, buf);
}

/* Replace the first occurrence of \a from in buf with the same number of bytes \a to. */
static void patch(uint8_t *buf, size_t len, const char *from, const char *to, size_t n)
{
	uint8_t *at = memmem(buf, len, from, n);
	assert_non_null(at);
	memcpy(at, to, n);
}

static int check(const uint8_t *buf, size_t len, struct ent_err *err)
{
	memset(err, 0, sizeof(*err));
	return ent_pb_check_strings(&ent__v1__upsert_feature_request__descriptor, buf, len, err);
}

static void test_valid_message_passes(void **state)
{
	uint8_t buf[512];
	size_t n = pack_feature("seats", "okta", buf);
	struct ent_err err;
	assert_int_equal(check(buf, n, &err), 0);
	assert_int_equal(err.code, 0);
}

static void test_nul_named_with_path(void **state)
{
	uint8_t buf[512];
	struct ent_err err;
	size_t n = pack_feature("wb_nulXx", "okta", buf);
	patch(buf, n, "wb_nulX", "wb_nul\0", 7);
	assert_int_equal(check(buf, n, &err), -ENT_EINVAL);
	assert_string_equal(err.msg, "feature.code: contains a NUL byte");

	n = pack_feature("seats", "okXa", buf);
	patch(buf, n, "okX", "ok\0", 3);
	assert_int_equal(check(buf, n, &err), -ENT_EINVAL);
	assert_string_equal(err.msg,
			    "feature.privileges[1].select_options[1]: contains a NUL byte");
}

static void test_invalid_utf8_refused(void **state)
{
	/* Each replaces the 3 bytes "XYZ" inside a select option. */
	static const char *const bad[] = {
		"\xff\xfe!",	/* bytes that never occur in UTF-8 */
		"\x80!!",	/* a lone continuation byte */
		"\xc0\x80!",	/* overlong NUL */
		"\xed\xa0\x80", /* a UTF-16 surrogate */
		"!\xe2\x82",	/* truncated three-byte sequence at the end */
	};
	uint8_t buf[512];
	struct ent_err err;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = pack_feature("seats", "XYZ", buf);
		patch(buf, n, "XYZ", bad[i], 3);
		assert_int_equal(check(buf, n, &err), -ENT_EINVAL);
		assert_string_equal(err.msg,
				    "feature.privileges[1].select_options[1]: not valid UTF-8");
	}
	/* Four-byte sequences beyond U+10FFFF are refused too; U+10FFFF itself passes. */
	assert_false(ent_pb_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));
	assert_true(ent_pb_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));
	assert_true(ent_pb_utf8_valid((const uint8_t *)"caf\xc3\xa9", 5));
}

static void test_malformed_wire_refused(void **state)
{
	uint8_t buf[512];
	struct ent_err err;
	size_t n = pack_feature("seats", "okta", buf);
	/* Every strict prefix that cuts a field in the middle is malformed, never a crash. */
	int refused = 0;
	for (size_t cut = 1; cut < n; cut++)
		refused += check(buf, cut, &err) != 0;
	assert_true(refused > 0);
	const uint8_t group[] = {0x0b}; /* field 1, wire type 3 (start group) */
	assert_int_equal(check(group, sizeof(group), &err), -ENT_EINVAL);
	assert_string_equal(err.msg, "malformed request");
	const uint8_t too_long[] = {0x0a, 0x7f, 0x01}; /* length 127, 1 byte present */
	assert_int_equal(check(too_long, sizeof(too_long), &err), -ENT_EINVAL);
	const uint8_t empty[] = {0};
	assert_int_equal(check(empty, 0, &err), 0);
}

static void test_unknown_fields_skipped(void **state)
{
	/* Field 99 (unknown) as a string with a NUL: not ours to judge, protobuf-c skips it. */
	const uint8_t unknown[] = {0x9a, 0x06, 0x02, 'a', 0x00};
	struct ent_err err;
	assert_int_equal(check(unknown, sizeof(unknown), &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_message_passes),
		cmocka_unit_test(test_nul_named_with_path),
		cmocka_unit_test(test_invalid_utf8_refused),
		cmocka_unit_test(test_malformed_wire_refused),
		cmocka_unit_test(test_unknown_fields_skipped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
