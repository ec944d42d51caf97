/*
 * The one place where ent error codes become gRPC status codes (STYLE.md: foreign codes are
 * translated once, at the module edge).
 */
#include "rpc/impl.h"

static const grpc_status_code status_of[] = {
	[ENT_OK] = GRPC_STATUS_OK,
	[ENT_EINVAL] = GRPC_STATUS_INVALID_ARGUMENT,
	[ENT_ENOTFOUND] = GRPC_STATUS_NOT_FOUND,
	[ENT_EPRECOND] = GRPC_STATUS_FAILED_PRECONDITION,
	[ENT_EFULL] = GRPC_STATUS_RESOURCE_EXHAUSTED,
	[ENT_EIO] = GRPC_STATUS_INTERNAL,
	[ENT_ENOMEM] = GRPC_STATUS_RESOURCE_EXHAUSTED,
	[ENT_EAUTH] = GRPC_STATUS_UNAUTHENTICATED,
	[ENT_EUNAVAIL] = GRPC_STATUS_UNAVAILABLE,
	[ENT_EEXIST] = GRPC_STATUS_ALREADY_EXISTS,
	[ENT_ECORRUPT] = GRPC_STATUS_DATA_LOSS,
};

grpc_status_code ent_rpc_status(int ent_code)
{
	if (ent_code < 0)
		ent_code = -ent_code;
	/* A code this table does not know is a bug somewhere else; INTERNAL says so without
	   pretending to be the caller's fault. */
	if ((size_t)ent_code >= sizeof(status_of) / sizeof(status_of[0]))
		return GRPC_STATUS_INTERNAL;
	return status_of[ent_code];
}
