/*
 * Private to the admin service (admin.c, admin_read.c, admin_write.c, admin_import.c).
 *
 * Every handler runs on the call's completion-queue thread with the request unpacked into the
 * call's arena, and answers exactly once: a validation failure or a read answers before the
 * handler returns; a write answers from the writer thread, in the callback that follows the
 * commit of the group holding it. Everything a write needs until that callback (the event, the
 * writer request, copies of request objects) lives in the call's arena, which the server keeps
 * until the call's final batch completes, so nothing here is freed by hand.
 */
#ifndef ENT_RPC_ADMIN_H
#define ENT_RPC_ADMIN_H

#include "ent/v1/admin.pb-c.h"
#include "ent/v1/event.pb-c.h"
#include "rpc/impl.h"

/* ---- shared helpers (admin.c) ----------------------------------------------------------- */

/** A proto3 string field as a borrowed ent_str (protobuf-c leaves absent strings non-NULL,
    but a hand-built message may carry NULL). */
struct ent_str ent_rpc_admin_str(const char *s);

/**
 * Validate an identifier field with ent_str_check_id(); on failure answer the call with
 * INVALID_ARGUMENT naming \a field. \return true when valid (the call is still unanswered).
 */
bool ent_rpc_admin_check_id(struct ent_call *call, const char *s, size_t max, const char *field);

/** Answer the call with \a err (code and message), falling back to the code's name. */
void ent_rpc_admin_fail_err(struct ent_call *call, const struct ent_err *err);

/**
 * Unpack a stored protobuf value into the call's arena. Stored bytes that do not decode are
 * corruption, not a client error. \return the message, or NULL after answering DATA_LOSS.
 */
ProtobufCMessage *ent_rpc_admin_unpack(struct ent_call *call,
				       const ProtobufCMessageDescriptor *desc, const void *data,
				       size_t len, const char *what);

/* ---- handlers ----------------------------------------------------------------------------- */

/* Writes (admin_write.c): validated here, applied by the writer, answered after the commit. */
void ent_rpc_admin_upsert_feature(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_delete_feature(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_set_plan(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_patch_plan(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_delete_plan(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_set_addon(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_patch_addon(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_delete_addon(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_upsert_subscription(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_cancel_subscription(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_set_override(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_update_override(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_delete_override(struct ent_call *call, const ProtobufCMessage *req);

/* Reads (admin_read.c): answered from the worker thread's read view. */
void ent_rpc_admin_get_feature(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_list_features(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_get_plan(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_get_addon(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_list_overrides(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_get_status(struct ent_call *call, const ProtobufCMessage *req);

/* The whole state as JSON (admin_import.c). */
void ent_rpc_admin_import(struct ent_call *call, const ProtobufCMessage *req);
void ent_rpc_admin_export(struct ent_call *call, const ProtobufCMessage *req);

#endif
