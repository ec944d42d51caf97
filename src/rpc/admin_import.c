/*
 * Import and Export: the whole state as the JSON document of docs/data-format.md.
 *
 * Import is all or nothing. A document is many events (features, plans, ..., usage) and the
 * writer's groups isolate failures per event, so submitting them one by one would leave half a
 * document behind when, say, its third plan names an unknown feature. So the document goes to
 * the writer as one transaction request (ent_writer_submit_txn): on the writer thread,
 * ent_json_apply applies every event in a transaction of its own, which commits only if all of
 * them succeeded. Checks keep being answered from snapshots meanwhile; other writes wait.
 *
 * Export scans one snapshot of the worker's read view into a malloc'ed document.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/json.h"
#include "rpc/admin.h"

#define DEFAULT_MAX_MESSAGE (4u << 20)

/* Everything the transaction needs, in the call's arena (alive until the call is answered). */
struct admin_import {
	struct ent_writer_txn_req txn;
	struct ent_call *call;
	const Ent__V1__ImportRequest *request;
	struct ent_json_stats stats;
};

/* Writer thread, inside the import's own transaction. */
static int import_apply(void *ctx, struct ent_wtxn *txn, struct ent_arena *arena,
			struct ent_apply_result *res)
{
	struct admin_import *im = ctx;
	const char *json = im->request->json;
	return ent_json_apply(txn, json, strlen(json), im->request->replace, 0, arena, &res->err,
			      &im->stats);
}

/* Writer thread, after the transaction committed (or was abandoned). */
static void import_done(void *ctx, const struct ent_apply_result *res)
{
	struct admin_import *im = ctx;
	Ent__V1__ImportResponse resp = ENT__V1__IMPORT_RESPONSE__INIT;

	if (res->err.code) {
		ent_rpc_admin_fail_err(im->call, &res->err);
		return;
	}
	ent_log(ENT_LOG_INFO, "admin import applied", "replace",
		im->request->replace ? "true" : "false", NULL);
	resp.sequence = res->seq;
	resp.changes = im->stats.changes;
	ent_rpc_call_reply(im->call, &resp.base);
}

void ent_rpc_admin_import(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__ImportRequest *r = (const Ent__V1__ImportRequest *)req;
	const struct ent_rpc_opts *opts = ent_rpc_call_opts(call);
	struct ent_arena *arena = ent_rpc_call_arena(call);
	struct admin_import *im;
	int rc;

	if (!r->json || !*r->json) {
		ent_rpc_call_fail(call, ENT_EINVAL, "json: required");
		return;
	}
	if (!opts->writer) {
		ent_rpc_call_fail(call, ENT_EUNAVAIL, "admin: no writer (read-only daemon)");
		return;
	}
	/*
	 * Shape errors (syntax, unknown keys, wrong types, bad times) are found here, on the call's
	 * thread, before the writer is bothered; the events are thrown away with the call's arena.
	 * The writer parses the document again: parsing is cheap next to applying it.
	 */
	{
		struct ent_err err = {0};
		Ent__V1__Event **events;
		size_t n;
		rc = ent_json_to_events(r->json, strlen(r->json), arena, &events, &n, &err);
		if (rc < 0) {
			if (!err.code)
				ent_err_set(&err, -rc, "json: %s", ent_err_strerror(rc));
			ent_rpc_admin_fail_err(call, &err);
			return;
		}
	}

	im = ent_arena_alloc(arena, sizeof(*im));
	if (!im) {
		ent_rpc_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return;
	}
	*im = (struct admin_import){.call = call, .request = r};
	im->txn.fn = import_apply;
	im->txn.req.cb = import_done;
	im->txn.req.ctx = im;
	rc = ent_writer_submit_txn(opts->writer, &im->txn);
	if (rc < 0)
		ent_rpc_call_fail(call, rc, "admin: writer is stopping");
}

void ent_rpc_admin_export(struct ent_call *call, const ProtobufCMessage *req)
{
	const struct ent_rpc_opts *opts = ent_rpc_call_opts(call);
	Ent__V1__ExportResponse resp = ENT__V1__EXPORT_RESPONSE__INIT;
	size_t max = opts->max_message_bytes ? opts->max_message_bytes : DEFAULT_MAX_MESSAGE;
	struct ent_view *v = ent_rpc_call_worker(call)->view;
	struct ent_err err = {0};
	char *doc = NULL;
	size_t len;
	int rc;

	rc = ent_store_view_begin(v);
	if (rc < 0) {
		ent_rpc_call_fail(call, rc, "admin: cannot open a read snapshot");
		return;
	}
	/* One snapshot for the whole document, so it is consistent with its sequence. */
	rc = ent_json_export(v, &doc, &err);
	resp.sequence = ent_store_view_seq(v);
	ent_store_view_end(v);
	if (rc < 0) {
		free(doc);
		if (!err.code)
			ent_err_set(&err, -rc, "export: %s", ent_err_strerror(rc));
		ent_rpc_admin_fail_err(call, &err);
		return;
	}
	len = strlen(doc);
	/* The peer would refuse a larger message anyway; say why and what to do instead. */
	if (len + 64 > max) {
		free(doc);
		ent_err_set(
			&err, ENT_EFULL,
			"export: the document is %zu bytes, more than the %zu-byte message limit; "
			"use `entctl export --db DIR` on the database directory",
			len, max);
		ent_rpc_admin_fail_err(call, &err);
		return;
	}
	resp.json = doc;
	ent_rpc_call_reply(call, &resp.base);
	free(doc);
}
