/* Untrusted request bytes through the wire-level string check: must never crash or over-read. */
#include <stddef.h>
#include <stdint.h>

#include "ent/pbcheck.h"
#include "ent/v1/admin.pb-c.h"
#include "ent/v1/entitlement.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ent_err err;
	ent_pb_check_strings(&ent__v1__upsert_feature_request__descriptor, data, size, &err);
	ent_pb_check_strings(&ent__v1__set_entitlements_request__descriptor, data, size, &err);
	ent_pb_check_strings(&ent__v1__batch_check_entitlements_request__descriptor, data, size,
			     &err);
	return 0;
}
