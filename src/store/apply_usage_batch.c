/*
 * apply() for a batch of usage reports (BatchReportUsage): one event, one nested transaction,
 * one commit for up to ENT_MAX_USAGE_BATCH records, each with its own result.
 *
 * Each record goes through ent_store_apply_report_usage, the single report's code, so every
 * guarantee of a single report holds per record: the same validation and messages, idempotency by
 * (customer, key) across batches, restarts and within this batch (an earlier record's key is
 * already in the transaction when a later one is looked up), and the same period rule. The
 * only clock is the event's `at`: a record without a timestamp counts at it.
 *
 * Why no nested transaction per record: LMDB allocates a dirty list of 2^17 entries for every
 * child transaction and merges it into its parent on commit, which would cost more than the
 * record itself. Instead this relies on an invariant of ent_store_apply_report_usage: every way it
 * refuses a record (-ENT_EINVAL, -ENT_ENOTFOUND: ids, quantity, timestamp, unknown or
 * unmetered feature, unknown customer, a key too long, a counter that would overflow) is
 * decided before its first write. Such a record is refused alone and the batch goes on. Any
 * other error (the map is full, an I/O error, a record that does not decode) may come after a
 * write, so it fails the whole event: the caller's nested transaction is aborted, nothing of
 * the batch is written, and -ENT_EFULL still reaches the writer, which retries the group
 * without the batch (docs/writer.md).
 */
#include "store/impl.h"

/* A refusal's message, kept in the arena until the caller has answered. */
static const char *keep_msg(struct ent_actx *c, const char *msg)
{
	const char *m = ent_arena_strndup(c->arena, msg, strlen(msg));
	return m ? m : "refused";
}

int ent_store_apply_report_usage_batch(struct ent_actx *c, const Ent__V1__ReportUsageBatch *b)
{
	size_t n = b->n_records;
	if (n == 0 || n > ENT_MAX_USAGE_BATCH)
		return ent_err_set(c->err, ENT_EINVAL, "records: must hold 1..%d records (got %zu)",
				   ENT_MAX_USAGE_BATCH, n);
	struct ent_usage_result *out = ent_arena_alloc(c->arena, n * sizeof(*out));
	if (!out)
		return ent_err_set(c->err, ENT_ENOMEM, "records: out of memory");
	/* One record's scratch result: ent_store_apply_report_usage writes its answer into c->res.
	 */
	struct ent_apply_result one;
	struct ent_actx rc = *c;
	rc.res = &one;
	rc.err = &one.err;
	for (size_t i = 0; i < n; i++) {
		const Ent__V1__ReportUsageRequest *rec = b->records[i];
		memset(&one, 0, sizeof(one));
		int r = rec ? ent_store_apply_report_usage(&rc, rec)
			    : ent_err_set(&one.err, ENT_EINVAL, "record: missing");
		struct ent_usage_result *o = &out[i];
		memset(o, 0, sizeof(*o));
		if (r == -ENT_EINVAL || r == -ENT_ENOTFOUND) {
			o->outcome = ENT_USAGE_REFUSED;
			o->code = -r;
			o->msg = keep_msg(c, one.err.code ? one.err.msg : ent_err_strerror(r));
			continue;
		}
		if (r)
			return ent_err_set(c->err, -r, "records[%zu].%s", i,
					   one.err.code ? one.err.msg : ent_err_strerror(r));
		o->outcome = one.duplicate ? ENT_USAGE_DUPLICATE
			     : one.counted ? ENT_USAGE_COUNTED
					   : ENT_USAGE_NOT_COUNTED;
		o->usage = one.usage;
	}
	c->res->records = out;
	c->res->n_records = n;
	return 0;
}
