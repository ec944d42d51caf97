/*
 * Import and Export: the whole state as the JSON document of docs/data-format.md.
 *
 * Import is all or nothing. A document is many events (features, plans, ..., usage) and the
 * writer's groups isolate failures per event, so submitting them one by one would leave half a
 * document behind when, say, its third plan names an unknown feature. Instead the whole document
 * is applied by ent_json_import in one write transaction of its own, on the writer thread (the
 * only thread that may write): the handler submits a no-op Tick as a carrier, and the carrier's
 * callback, which the writer runs on its thread after the carrier's group committed and before
 * it begins the next transaction, runs the import. The writer then re-arms its boundary timer
 * from the store's index as after every batch, so boundaries the document brings are honoured.
 *
 * Cost of the carrier: one extra event in the sequence (a Tick at the first representable
 * instant, which has nothing to do). The writer's loop is busy for the duration of the import,
 * exactly as it would be for any atomic import; every other write waits for it, checks do not (they
 * read snapshots).
 *
 * Export scans one snapshot of the worker's read view into a malloc'ed document.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/json.h"
#include "rpc/admin.h"

#define DEFAULT_MAX_MESSAGE (4u << 20)

/* Everything the carrier's callback needs, in the call's arena. */
struct admin_import {
	struct ent_writer_req req;
	Ent__V1__Event ev;
	Ent__V1__Tick tick;
	struct ent_call *call;
	const Ent__V1__ImportRequest *request;
	struct ent_store *store;
};

/* Writer thread, between two transactions: apply the document in a transaction of its own. */
static void import_run(void *ctx, const struct ent_apply_result *res)
{
	struct admin_import *im = ctx;
	Ent__V1__ImportResponse resp = ENT__V1__IMPORT_RESPONSE__INIT;
	struct ent_json_stats stats = {0};
	struct ent_err err = {0};
	const char *json = im->request->json ? im->request->json : "";
	int rc;

	/* The carrier did not commit (disk full, stopping): the import would not either. */
	if (res->err.code) {
		ent_admin_fail_err(im->call, &res->err);
		return;
	}
	rc = ent_json_import(im->store, json, strlen(json), im->request->replace, &err, &stats);
	if (rc < 0) {
		if (!err.code)
			ent_err_set(&err, -rc, "import: %s", ent_strerror(rc));
		ent_admin_fail_err(im->call, &err);
		return;
	}
	ent_log(ENT_LOG_INFO, "admin import applied", "replace",
		im->request->replace ? "true" : "false", NULL);
	resp.sequence = stats.seq;
	resp.changes = stats.changes;
	ent_call_reply(im->call, &resp.base);
}

void ent_admin_import(struct ent_call *call, const ProtobufCMessage *req)
{
	const Ent__V1__ImportRequest *r = (const Ent__V1__ImportRequest *)req;
	const struct ent_rpc_opts *opts = ent_call_opts(call);
	struct ent_arena *arena = ent_call_arena(call);
	struct admin_import *im;
	int rc;

	if (!r->json || !*r->json) {
		ent_call_fail(call, ENT_EINVAL, "json: required");
		return;
	}
	if (!opts->writer) {
		ent_call_fail(call, ENT_EUNAVAIL, "admin: no writer (read-only daemon)");
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
				ent_err_set(&err, -rc, "json: %s", ent_strerror(rc));
			ent_admin_fail_err(call, &err);
			return;
		}
	}

	im = ent_arena_alloc(arena, sizeof(*im));
	if (!im) {
		ent_call_fail(call, ENT_ENOMEM, "admin: out of memory");
		return;
	}
	*im = (struct admin_import){.call = call, .request = r, .store = opts->store};
	ent__v1__event__init(&im->ev);
	ent__v1__tick__init(&im->tick);
	/*
	 * A tick at the first representable instant has nothing to do: no boundary is that old
	 * (a tick of 0 would mean "now" and run the timer's work), and idem_before = 0 prunes
	 * nothing.
	 */
	im->tick.now = ENT_T_MIN;
	im->tick.idem_before = 0;
	im->ev.kind_case = ENT__V1__EVENT__KIND_TICK;
	im->ev.tick = &im->tick;
	im->req.event = &im->ev;
	im->req.cb = import_run;
	im->req.ctx = im;
	rc = ent_writer_submit(opts->writer, &im->req);
	if (rc < 0)
		ent_call_fail(call, rc, "admin: writer is stopping");
}

void ent_admin_export(struct ent_call *call, const ProtobufCMessage *req)
{
	const struct ent_rpc_opts *opts = ent_call_opts(call);
	Ent__V1__ExportResponse resp = ENT__V1__EXPORT_RESPONSE__INIT;
	size_t max = opts->max_message_bytes ? opts->max_message_bytes : DEFAULT_MAX_MESSAGE;
	struct ent_view *v = ent_call_worker(call)->view;
	struct ent_err err = {0};
	char *doc = NULL;
	size_t len;
	int rc;

	rc = ent_view_begin(v);
	if (rc < 0) {
		ent_call_fail(call, rc, "admin: cannot open a read snapshot");
		return;
	}
	/* One snapshot for the whole document, so it is consistent with its sequence. */
	rc = ent_json_export(v, &doc, &err);
	resp.sequence = ent_view_seq(v);
	ent_view_end(v);
	if (rc < 0) {
		free(doc);
		if (!err.code)
			ent_err_set(&err, -rc, "export: %s", ent_strerror(rc));
		ent_admin_fail_err(call, &err);
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
		ent_admin_fail_err(call, &err);
		return;
	}
	resp.json = doc;
	ent_call_reply(call, &resp.base);
	free(doc);
}
