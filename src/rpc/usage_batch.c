/*
 * BatchReportUsage: up to ENT_MAX_USAGE_BATCH usage records in one call, applied by the writer
 * as ONE event (Event.report_usage_batch), so a batch costs one nested transaction, one
 * commit and, in fleet mode, one stream message. Each record gets its own result.
 *
 * The request is unpacked as BatchReportUsageWire (event.proto): the same wire bytes as
 * BatchReportUsageRequest, with each record kept as its serialized ReportUsageRequest. So the
 * wire check for strings (a NUL byte, bad UTF-8) and the unpacking run per record here, and
 * one malformed record is refused alone like an invalid one, instead of failing the call.
 * Everything that depends on stored state is validated by the writer (apply_usage_batch.c).
 *
 * Lifetimes: everything (the records, the event, the writer request, the response arrays)
 * lives in the call's arena. The response arrays are allocated before the event is submitted;
 * once ent_writer_submit succeeded the call belongs to the writer thread until batch_done
 * replies, and only batch_done touches it.
 */
#include <stdio.h>
#include <string.h>

#include "ent/pbarena.h"
#include "ent/pbcheck.h"
#include "ent/v1/entitlement.pb-c.h"
#include "ent/v1/event.pb-c.h"
#include "rpc/core.h"
#include "rpc/usage_batch.h"

struct batch {
	struct ent_call *call;
	size_t n;	    /**< records in the request */
	size_t n_ok;	    /**< records that reached the event */
	uint32_t *idx;	    /**< event record j is request record idx[j] */
	const char **early; /**< request record i refused here: its message, else NULL */
	Ent__V1__Event ev;
	Ent__V1__ReportUsageBatch payload;
	struct ent_writer_req wr;
	/* The response, allocated before the submit. */
	Ent__V1__BatchReportUsageResponse resp;
	Ent__V1__ReportUsageResult *res;
	Ent__V1__ReportUsageResult **resp_ptrs;
	Ent__V1__Usage *usage;
};

static void fill_usage(Ent__V1__Usage *u, const struct ent_decision *d)
{
	ent__v1__usage__init(u);
	u->limit = d->limit;
	u->unlimited = d->unlimited;
	u->used = d->used;
	u->remaining = d->remaining;
	u->is_soft_limit = d->soft;
	u->reset_period = d->reset;
	u->period_start = d->period_start;
	u->period_end = d->period_end;
}

static void refuse(struct batch *b, size_t i, int code, const char *msg)
{
	Ent__V1__ReportUsageResult *r = &b->res[i];
	r->outcome = ENT__V1__USAGE_OUTCOME__USAGE_OUTCOME_REFUSED;
	r->code = (int32_t)ent_rpc_status(code);
	r->error = (char *)msg;
	b->resp.refused++;
}

/* "records[i].<msg>" in the call's arena (msg names the field inside the record). */
static const char *record_msg(struct ent_call *call, size_t i, const char *msg)
{
	char buf[320];
	int len = snprintf(buf, sizeof(buf), "records[%zu].%s", i, msg);
	if (len < 0)
		return "refused";
	if ((size_t)len >= sizeof(buf))
		len = (int)sizeof(buf) - 1;
	const char *m = ent_arena_strndup(ent_rpc_call_arena(call), buf, (size_t)len);
	return m ? m : "refused";
}

/* Answer every record: those refused before the writer, and the writer's results. */
static void answer(struct batch *b, const struct ent_apply_result *res)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->early[i])
			refuse(b, i, ENT_EINVAL, b->early[i]);
	for (size_t j = 0; res && j < b->n_ok; j++) {
		const struct ent_usage_result *u = &res->records[j];
		size_t i = b->idx[j];
		Ent__V1__ReportUsageResult *r = &b->res[i];
		if (u->outcome == ENT_USAGE_REFUSED) {
			refuse(b, i, u->code, record_msg(b->call, i, u->msg));
			continue;
		}
		r->outcome = (Ent__V1__UsageOutcome)u->outcome;
		fill_usage(&b->usage[i], &u->usage);
		r->usage = &b->usage[i];
		if (u->outcome == ENT_USAGE_COUNTED)
			b->resp.counted++;
		else if (u->outcome == ENT_USAGE_DUPLICATE)
			b->resp.duplicates++;
		else
			b->resp.not_counted++;
	}
	b->resp.n_results = b->n;
	b->resp.results = b->resp_ptrs;
	ent_rpc_call_reply(b->call, &b->resp.base);
}

/* Runs on the writer thread after the batch's group committed (or failed as a whole). */
static void batch_done(void *ctx, const struct ent_apply_result *res)
{
	struct batch *b = ctx;
	if (res->err.code) {
		/* The writer names the record by its index in the event; the caller knows it by
		   its index in the request (they differ when records were refused here). */
		unsigned long j;
		int used = 0;
		if (sscanf(res->err.msg, "records[%lu]%n", &j, &used) == 1 && used > 0 &&
		    j < b->n_ok) {
			char msg[sizeof(res->err.msg) + 32];
			snprintf(msg, sizeof(msg), "records[%u]%s", b->idx[j], res->err.msg + used);
			ent_rpc_call_fail(b->call, res->err.code, msg);
			return;
		}
		ent_rpc_call_fail(b->call, res->err.code, res->err.msg);
		return;
	}
	if (res->n_records != b->n_ok) {
		ent_rpc_call_fail(b->call, ENT_EIO,
				  "records: the writer answered a different count");
		return;
	}
	b->resp.sequence = res->seq;
	answer(b, res);
}

static struct batch *batch_new(struct ent_call *call, size_t n)
{
	struct ent_arena *a = ent_rpc_call_arena(call);
	struct batch *b = ent_arena_alloc(a, sizeof(*b));
	if (!b)
		return NULL;
	memset(b, 0, sizeof(*b));
	ent__v1__batch_report_usage_response__init(&b->resp);
	ent__v1__report_usage_batch__init(&b->payload);
	ent__v1__event__init(&b->ev);
	b->call = call;
	b->n = n;
	b->idx = ent_arena_alloc(a, n * sizeof(*b->idx));
	b->early = ent_arena_alloc(a, n * sizeof(*b->early));
	b->payload.records = ent_arena_alloc(a, n * sizeof(*b->payload.records));
	b->res = ent_arena_alloc(a, n * sizeof(*b->res));
	b->resp_ptrs = ent_arena_alloc(a, n * sizeof(*b->resp_ptrs));
	b->usage = ent_arena_alloc(a, n * sizeof(*b->usage));
	if (!b->idx || !b->early || !b->payload.records || !b->res || !b->resp_ptrs || !b->usage)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		ent__v1__report_usage_result__init(&b->res[i]);
		b->resp_ptrs[i] = &b->res[i];
		b->early[i] = NULL;
	}
	return b;
}

void ent_rpc_usage_batch_handler(struct ent_call *call, const ProtobufCMessage *m)
{
	const Ent__V1__BatchReportUsageWire *req = (const Ent__V1__BatchReportUsageWire *)m;
	size_t n = req->n_records;
	char msg[128];
	if (n == 0 || n > ENT_MAX_USAGE_BATCH) {
		snprintf(msg, sizeof(msg), "records: must hold 1..%d records (got %zu)",
			 ENT_MAX_USAGE_BATCH, n);
		ent_rpc_call_fail(call, ENT_EINVAL, msg);
		return;
	}
	struct batch *b = batch_new(call, n);
	if (!b) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "records: out of memory");
		return;
	}
	ProtobufCAllocator alloc;
	ent_pb_allocator(&alloc, ent_rpc_call_arena(call));
	struct ent_err err;
	for (size_t i = 0; i < n; i++) {
		const ProtobufCBinaryData *d = &req->records[i];
		if (ent_pb_check_strings(&ent__v1__report_usage_request__descriptor, d->data,
					 d->len, &err)) {
			b->early[i] = record_msg(call, i, err.msg);
			continue;
		}
		ProtobufCMessage *rec = protobuf_c_message_unpack(
			&ent__v1__report_usage_request__descriptor, &alloc, d->len, d->data);
		if (!rec) {
			b->early[i] = record_msg(call, i, "record: malformed");
			continue;
		}
		b->idx[b->n_ok] = (uint32_t)i;
		b->payload.records[b->n_ok++] = (Ent__V1__ReportUsageRequest *)rec;
	}
	struct ent_writer *w = ent_rpc_call_opts(call)->writer;
	if (b->n_ok == 0) {
		/* Nothing reaches the writer: every record was refused here. */
		b->resp.sequence = w ? ent_writer_seq(w) : 0;
		answer(b, NULL);
		return;
	}
	if (!w) {
		ent_rpc_call_fail(call, ENT_EUNAVAIL, "writes are not available on this server");
		return;
	}
	b->payload.n_records = b->n_ok;
	b->ev.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE_BATCH;
	b->ev.report_usage_batch = &b->payload;
	b->wr.event = &b->ev;
	b->wr.cb = batch_done;
	b->wr.ctx = b;
	if (ent_writer_submit(w, &b->wr))
		ent_rpc_call_fail(call, ENT_EUNAVAIL,
				  "writer: not accepting writes (shutting down)");
	/* On success the call belongs to the writer until batch_done runs: not touched here. */
}
