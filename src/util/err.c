/* Error codes and the helpers that name the offending field. */
#include <stdio.h>

#include "ent/util.h"

const char *ent_strerror(int code)
{
	static const char *const names[] = {
		[ENT_OK] = "ok",
		[ENT_EINVAL] = "invalid argument",
		[ENT_ENOTFOUND] = "not found",
		[ENT_EPRECOND] = "failed precondition",
		[ENT_EFULL] = "database full",
		[ENT_EIO] = "storage error",
		[ENT_ENOMEM] = "out of memory",
		[ENT_EAUTH] = "unauthenticated",
		[ENT_EUNAVAIL] = "unavailable",
		[ENT_EEXIST] = "already exists",
		[ENT_ECORRUPT] = "corrupt record",
	};
	if (code < 0)
		code = -code;
	if ((size_t)code >= sizeof(names) / sizeof(names[0]) || !names[code])
		return "unknown error";
	return names[code];
}

int ent_err_set(struct ent_err *err, int code, const char *fmt, ...)
{
	if (code < 0)
		code = -code;
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -code;
}

int ent_check_id(struct ent_str s, size_t max, const char *field, struct ent_err *err)
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
