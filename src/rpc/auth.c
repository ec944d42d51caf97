/*
 * The admin credential: `authorization: Bearer <token>` (Hyperline, Lago) or `x-api-key: <token>`
 * (Zenskar, Flexprice), compared with the configured token in constant time.
 *
 * What the timing of this code may depend on: the lengths of the strings (the presented token's
 * length is the caller's own knowledge; the expected token's length only shows when the presented
 * one is shorter, and a caller learns nothing from sending a long token) and which header was
 * sent. It never depends on the content of either token: no early exit on the first differing
 * byte, and a length mismatch is folded into the same accumulator instead of returning early.
 * Tokens are never logged, not even on failure.
 */
#include <string.h>

#include "rpc/impl.h"

/*
 * 1 when a[0..la) equals b[0..lb). Runs over max(la, lb) bytes, reading a zero pad past the end
 * of the shorter string, so equal prefixes and length differences cost the same as any other
 * mismatch. The accumulator is volatile so the compiler cannot turn the loop into an early-exit
 * memcmp.
 */
static int ct_equal(const unsigned char *a, size_t la, const unsigned char *b, size_t lb)
{
	volatile unsigned diff = (unsigned)(la != lb);
	size_t n = la > lb ? la : lb;

	for (size_t i = 0; i < n; i++) {
		unsigned char x = i < la ? a[i] : 0;
		unsigned char y = i < lb ? b[i] : 0;
		diff |= (unsigned)(x ^ y);
	}
	return diff == 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Split "Bearer <token>" (RFC 6750: the scheme is case-insensitive, one or more spaces follow).
 * Surrounding blanks are dropped: some proxies pad header values. Anything else yields an empty
 * token, which never matches.
 */
static struct ent_str bearer_token(struct ent_str h)
{
	static const char scheme[] = "bearer";
	const size_t sl = sizeof(scheme) - 1;
	uint32_t i = 0, end = h.len;

	while (i < end && is_space(h.p[i]))
		i++;
	if (end - i <= sl)
		return (struct ent_str){"", 0};
	for (size_t k = 0; k < sl; k++) {
		char c = h.p[i + k];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != scheme[k])
			return (struct ent_str){"", 0};
	}
	i += sl;
	if (!is_space(h.p[i]))
		return (struct ent_str){"", 0};
	while (i < end && is_space(h.p[i]))
		i++;
	while (end > i && is_space(h.p[end - 1]))
		end--;
	return (struct ent_str){h.p + i, end - i};
}

int ent_rpc_auth_check(const char *expected, struct ent_str authorization, struct ent_str api_key)
{
	/* No configured token means the admin service is closed, not open. */
	if (!expected || !*expected)
		return -ENT_EAUTH;

	const unsigned char *e = (const unsigned char *)expected;
	size_t el = strlen(expected);
	struct ent_str bearer = authorization.len ? bearer_token(authorization) : authorization;

	/*
	 * Both candidates are compared whatever the first one gave, so the time taken does not tell
	 * which one matched; an empty candidate is a miss (checked on the length, not the content).
	 */
	int ok_bearer = ct_equal(e, el, (const unsigned char *)bearer.p, bearer.len);
	int ok_key = ct_equal(e, el, (const unsigned char *)api_key.p, api_key.len);
	ok_bearer &= bearer.len > 0;
	ok_key &= api_key.len > 0;

	return (ok_bearer | ok_key) ? 0 : -ENT_EAUTH;
}
