/* Error codes and the helpers that name the offending field. */
#include <stdio.h>

#include "ent/util.h"

const char *ent_err_strerror(int code)
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
