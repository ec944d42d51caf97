/*
 * BatchReportUsage (usage_batch.c): the handler the check service's method table names.
 */
#ifndef ENT_RPC_USAGE_BATCH_H
#define ENT_RPC_USAGE_BATCH_H

#include "rpc/impl.h"

/** The request is an Ent__V1__BatchReportUsageWire; answers once, now or from the writer. */
void ent_rpc_usage_batch_handler(struct ent_call *call, const ProtobufCMessage *m);

#endif
