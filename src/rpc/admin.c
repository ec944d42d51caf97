/*
 * The admin service: its method table and the helpers its handlers share.
 *
 * Every row needs the admin credential (the server checks ent_rpc_auth_check before calling the
 * handler). Handlers live by kind: admin_write.c (changes, through the writer), admin_read.c
 * (lookups on the worker's read view), admin_import.c (the whole state as JSON).
 */
#include "rpc/admin.h"
#include "ent/pbarena.h"

/* Every admin row needs the credential and is unpacked by protobuf-c (no raw handler). */
#define ROW(name, req, fn)                                                                         \
	{                                                                                          \
		.path = "/ent.v1.AdminService/" name, .request = &req, .handler = fn,              \
		.admin = true                                                                      \
	}

const struct ent_method ent_rpc_admin_methods[] = {
	ROW("UpsertFeature", ent__v1__upsert_feature_request__descriptor,
	    ent_rpc_admin_upsert_feature),
	ROW("GetFeature", ent__v1__get_feature_request__descriptor, ent_rpc_admin_get_feature),
	ROW("ListFeatures", ent__v1__list_features_request__descriptor,
	    ent_rpc_admin_list_features),
	ROW("DeleteFeature", ent__v1__delete_feature_request__descriptor,
	    ent_rpc_admin_delete_feature),
	ROW("SetPlanEntitlements", ent__v1__set_entitlements_request__descriptor,
	    ent_rpc_admin_set_plan),
	ROW("PatchPlanEntitlements", ent__v1__set_entitlements_request__descriptor,
	    ent_rpc_admin_patch_plan),
	ROW("GetPlanEntitlements", ent__v1__get_entitlements_request__descriptor,
	    ent_rpc_admin_get_plan),
	ROW("DeletePlanEntitlements", ent__v1__get_entitlements_request__descriptor,
	    ent_rpc_admin_delete_plan),
	ROW("SetAddonEntitlements", ent__v1__set_entitlements_request__descriptor,
	    ent_rpc_admin_set_addon),
	ROW("PatchAddonEntitlements", ent__v1__set_entitlements_request__descriptor,
	    ent_rpc_admin_patch_addon),
	ROW("GetAddonEntitlements", ent__v1__get_entitlements_request__descriptor,
	    ent_rpc_admin_get_addon),
	ROW("DeleteAddonEntitlements", ent__v1__get_entitlements_request__descriptor,
	    ent_rpc_admin_delete_addon),
	ROW("UpsertSubscription", ent__v1__upsert_subscription_request__descriptor,
	    ent_rpc_admin_upsert_subscription),
	ROW("CancelSubscription", ent__v1__cancel_subscription_request__descriptor,
	    ent_rpc_admin_cancel_subscription),
	ROW("SetCustomerEntitlement", ent__v1__set_customer_entitlement_request__descriptor,
	    ent_rpc_admin_set_override),
	ROW("UpdateCustomerEntitlement", ent__v1__update_customer_entitlement_request__descriptor,
	    ent_rpc_admin_update_override),
	ROW("DeleteCustomerEntitlement", ent__v1__delete_customer_entitlement_request__descriptor,
	    ent_rpc_admin_delete_override),
	ROW("ListCustomerEntitlements", ent__v1__list_customer_entitlements_request__descriptor,
	    ent_rpc_admin_list_overrides),
	ROW("Import", ent__v1__import_request__descriptor, ent_rpc_admin_import),
	ROW("Export", ent__v1__export_request__descriptor, ent_rpc_admin_export),
	ROW("GetStatus", ent__v1__get_status_request__descriptor, ent_rpc_admin_get_status),
};

const size_t ent_rpc_admin_methods_count =
	sizeof(ent_rpc_admin_methods) / sizeof(ent_rpc_admin_methods[0]);

struct ent_str ent_rpc_admin_str(const char *s)
{
	return ent_str_c(s);
}

bool ent_rpc_admin_check_id(struct ent_call *call, const char *s, size_t max, const char *field)
{
	struct ent_err err = {0};

	if (ent_str_check_id(ent_rpc_admin_str(s), max, field, &err) == 0)
		return true;
	ent_rpc_admin_fail_err(call, &err);
	return false;
}

void ent_rpc_admin_fail_err(struct ent_call *call, const struct ent_err *err)
{
	int code = err->code ? err->code : ENT_EIO;
	ent_rpc_call_fail(call, code, err->msg[0] ? err->msg : ent_err_strerror(code));
}

ProtobufCMessage *ent_rpc_admin_unpack(struct ent_call *call,
				       const ProtobufCMessageDescriptor *desc, const void *data,
				       size_t len, const char *what)
{
	ProtobufCAllocator alloc;
	ProtobufCMessage *m;

	/* The allocator is only used during the unpack; the message then lives in the arena. */
	ent_pb_allocator(&alloc, ent_rpc_call_arena(call));
	m = protobuf_c_message_unpack(desc, &alloc, len, data);
	if (!m) {
		struct ent_err err;
		ent_err_set(&err, ENT_ECORRUPT, "stored %s does not decode", what);
		ent_rpc_admin_fail_err(call, &err);
	}
	return m;
}
