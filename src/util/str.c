/* Borrowed byte strings. */
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
