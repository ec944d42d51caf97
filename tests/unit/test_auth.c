/* ent_rpc_auth_check: the admin credential in `authorization: Bearer` or `x-api-key`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rpc/impl.h"

#define TOKEN "s3cr3t-Token_42"

static const struct ent_str none = {"", 0};

static int bearer(const char *expected, const char *header)
{
	return ent_rpc_auth_check(expected, ent_str_c(header), none);
}

static int api_key(const char *expected, const char *key)
{
	return ent_rpc_auth_check(expected, none, ent_str_c(key));
}

static void test_bearer_good(void **state)
{
	assert_int_equal(bearer(TOKEN, "Bearer " TOKEN), 0);
	/* The scheme is case-insensitive (RFC 6750); extra blanks around are tolerated. */
	assert_int_equal(bearer(TOKEN, "bearer " TOKEN), 0);
	assert_int_equal(bearer(TOKEN, "BEARER " TOKEN), 0);
	assert_int_equal(bearer(TOKEN, "BeArEr \t " TOKEN "  "), 0);
	assert_int_equal(bearer(TOKEN, "  Bearer " TOKEN), 0);
}

static void test_api_key_good(void **state)
{
	assert_int_equal(api_key(TOKEN, TOKEN), 0);
}

static void test_bad_token(void **state)
{
	assert_int_equal(bearer(TOKEN, "Bearer s3cr3t-Token_43"), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer S3CR3T-TOKEN_42"), -ENT_EAUTH);
	assert_int_equal(api_key(TOKEN, "s3cr3t-Token_43"), -ENT_EAUTH);
	/* Same first byte wrong as last byte wrong: both refused. */
	assert_int_equal(api_key(TOKEN, "x3cr3t-Token_42"), -ENT_EAUTH);
}

static void test_missing(void **state)
{
	assert_int_equal(ent_rpc_auth_check(TOKEN, none, none), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, ""), -ENT_EAUTH);
	assert_int_equal(api_key(TOKEN, ""), -ENT_EAUTH);
}

static void test_prefix_shorter_longer(void **state)
{
	/* A prefix of the token (shorter) and the token plus more bytes (longer) are refused. */
	assert_int_equal(bearer(TOKEN, "Bearer s3cr3t"), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer s3cr3t-Token_4"), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer " TOKEN "x"), -ENT_EAUTH);
	assert_int_equal(api_key(TOKEN, "s"), -ENT_EAUTH);
	assert_int_equal(api_key(TOKEN, "s3cr3t-Token_4"), -ENT_EAUTH);
	assert_int_equal(api_key(TOKEN, TOKEN "0"), -ENT_EAUTH);
	assert_int_equal(api_key(TOKEN, TOKEN TOKEN), -ENT_EAUTH);
	/* A token that is a zero-padded version of the expected one must not match either. */
	struct ent_str padded = {TOKEN "\0", sizeof(TOKEN)};
	assert_int_equal(ent_rpc_auth_check(TOKEN, none, padded), -ENT_EAUTH);
}

static void test_malformed_authorization(void **state)
{
	/* Other schemes, a missing separator, a missing token: refused. */
	assert_int_equal(bearer(TOKEN, TOKEN), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Basic " TOKEN), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer" TOKEN), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer"), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer "), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearer    "), -ENT_EAUTH);
	assert_int_equal(bearer(TOKEN, "Bearerx " TOKEN), -ENT_EAUTH);
	/* The API key header carries the raw token, not a scheme. */
	assert_int_equal(api_key(TOKEN, "Bearer " TOKEN), -ENT_EAUTH);
}

static void test_both_headers(void **state)
{
	struct ent_str good_auth = ent_str_c("Bearer " TOKEN);
	struct ent_str bad_auth = ent_str_c("Bearer nope");
	struct ent_str good_key = ent_str_c(TOKEN);
	struct ent_str bad_key = ent_str_c("nope");

	/* Either header carrying the right token is enough. */
	assert_int_equal(ent_rpc_auth_check(TOKEN, good_auth, good_key), 0);
	assert_int_equal(ent_rpc_auth_check(TOKEN, good_auth, bad_key), 0);
	assert_int_equal(ent_rpc_auth_check(TOKEN, bad_auth, good_key), 0);
	assert_int_equal(ent_rpc_auth_check(TOKEN, bad_auth, bad_key), -ENT_EAUTH);
}

static void test_empty_expected_refuses_all(void **state)
{
	/* No configured token: the admin service is closed, even to an empty credential. */
	assert_int_equal(bearer("", "Bearer " TOKEN), -ENT_EAUTH);
	assert_int_equal(bearer(NULL, "Bearer " TOKEN), -ENT_EAUTH);
	assert_int_equal(api_key("", ""), -ENT_EAUTH);
	assert_int_equal(api_key(NULL, ""), -ENT_EAUTH);
	assert_int_equal(bearer("", "Bearer "), -ENT_EAUTH);
}

static void test_not_nul_terminated(void **state)
{
	/* Header values are borrowed slices, not C strings: only len bytes count. */
	char buf[] = TOKEN "GARBAGE";
	struct ent_str key = {buf, sizeof(TOKEN) - 1};
	assert_int_equal(ent_rpc_auth_check(TOKEN, none, key), 0);
	char hdr[] = "Bearer " TOKEN "GARBAGE";
	struct ent_str auth = {hdr, sizeof("Bearer " TOKEN) - 1};
	assert_int_equal(ent_rpc_auth_check(TOKEN, auth, none), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bearer_good),
		cmocka_unit_test(test_api_key_good),
		cmocka_unit_test(test_bad_token),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_prefix_shorter_longer),
		cmocka_unit_test(test_malformed_authorization),
		cmocka_unit_test(test_both_headers),
		cmocka_unit_test(test_empty_expected_refuses_all),
		cmocka_unit_test(test_not_nul_terminated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
