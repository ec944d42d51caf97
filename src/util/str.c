/* Borrowed byte strings, and the check every identifier of the API passes. */
#include <string.h>

#include "ent/util.h"

struct ent_str ent_str_c(const char *s)
{
	return (struct ent_str){s ? s : "", s ? (uint32_t)strlen(s) : 0};
}

bool ent_str_eq(struct ent_str a, struct ent_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

int ent_str_cmp(struct ent_str a, struct ent_str b)
{
	uint32_t n = a.len < b.len ? a.len : b.len;
	int c = n ? memcmp(a.p, b.p, n) : 0;
	if (c)
		return c;
	return a.len < b.len ? -1 : a.len > b.len;
}

int ent_str_check_id(struct ent_str s, size_t max, const char *field, struct ent_err *err)
{
	if (s.len == 0)
		return ent_err_set(err, ENT_EINVAL, "%s: required", field);
	if (s.len > max)
		return ent_err_set(err, ENT_EINVAL, "%s: longer than %zu bytes", field, max);
	for (uint32_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		/* Printable ASCII only: ids are keys joined with NUL and shown in logs and tables.
		 */
		if (c <= ' ' || c >= 0x7f)
			return ent_err_set(err, ENT_EINVAL,
					   "%s: byte %u is not printable ASCII (0x%02x)", field, i,
					   c);
	}
	return 0;
}
