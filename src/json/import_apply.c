/*
 * Applying a converted document (import.c): every event through ent_store_apply in the caller's
 * write transaction, apply's errors placed at the JSON path of the object the event came from.
 */
#include <stdio.h>
#include <string.h>

#include "ent/json.h"
#include "ent/model.h"
#include "ent/v1/event.pb-c.h"

/* The grants of an event that has them (plans, add-ons, subscriptions). */
static size_t event_grants(const Ent__V1__Event *ev, Ent__V1__Grant ***g)
{
	switch (ev->kind_case) {
	case ENT__V1__EVENT__KIND_SET_PLAN:
	case ENT__V1__EVENT__KIND_SET_ADDON:
		*g = ev->set_plan->entitlements; /* set_plan and set_addon share the union slot */
		return ev->set_plan->n_entitlements;
	case ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION:
		*g = ev->upsert_subscription->entitlements;
		return ev->upsert_subscription->n_entitlements;
	default:
		return 0;
	}
}

/*
 * Turn apply's message into one that names the JSON path. apply names proto fields
 * ("entitlements[1].privileges.provider: 'github' is not ...", "subscription.plan_code: ..."),
 * which are the document's keys except that grants are a list there and a map here: the index
 * becomes the feature code. A message that does not start with a field ("database full") is
 * just prefixed with the object's path.
 */
static void apply_error(struct ent_err *err, int code, const char *path, const Ent__V1__Event *ev,
			const char *msg)
{
	const char *m = msg;
	if (!strncmp(m, "subscription.", 13) &&
	    ev->kind_case == ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION)
		m += 13;
	size_t field = strspn(m, "abcdefghijklmnopqrstuvwxyz0123456789_.[]");
	if (field == 0 || m[field] != ':') {
		ent_err_set(err, code, "%s: %s", path, msg);
		return;
	}
	Ent__V1__Grant **g;
	size_t n = event_grants(ev, &g);
	unsigned long i;
	int used = 0;
	if (n && sscanf(m, "entitlements[%lu]%n", &i, &used) == 1 && used > 0 && i < n) {
		const char *rest = m + used;
		if (!strncmp(rest, ".feature_code:", 14))
			rest += 13; /* the map key is the feature code */
		ent_err_set(err, code, "%s.entitlements.%s%s", path, g[i]->feature_code, rest);
		return;
	}
	ent_err_set(err, code, "%s.%s", path, m);
}

/* Apply one event; on failure the error is apply's, placed at the object's JSON path. */
static int apply_one(struct ent_wtxn *w, Ent__V1__Event *ev, const char *path,
		     struct ent_arena *scratch, struct ent_err *err)
{
	struct ent_apply_result res;
	memset(&res, 0, sizeof(res));
	int rc = ent_store_apply(w, ev, scratch, &res);
	ent_arena_reset(scratch);
	if (rc == 0 && res.err.code == 0)
		return 0;
	int code = res.err.code ? res.err.code : (rc < 0 ? -rc : ENT_EIO);
	apply_error(err, code, path, ev, res.err.msg[0] ? res.err.msg : ent_err_strerror(code));
	return -code;
}

int ent_json_apply(struct ent_wtxn *w, const char *text, size_t len, bool replace, int64_t now,
		   struct ent_arena *arena, struct ent_err *err, struct ent_json_stats *stats)
{
	Ent__V1__Event **ev;
	const char **paths;
	size_t n;
	int rc = ent_json_to_events_paths(text, len, arena, &ev, &paths, &n, err);
	if (rc)
		return rc;
	if (!now)
		now = ent_time_now_ms();
	/* apply() results (echoed objects) are dropped after each event, so a large document does
	 * not keep one copy of every object it stores. */
	struct ent_arena scratch;
	ent_arena_init(&scratch, 0);
	uint32_t changes = 0;
	/*
	 * Override stamps travel as event times (conv_override). Applying an event "in the past"
	 * recomputes its aggregate as of then, which would roll an existing usage counter of the
	 * current period back to an older one; so document times are kept only when nothing can
	 * be counted yet: after a wipe, or into a store that never applied an event. Otherwise
	 * every event happens now.
	 */
	bool keep_times = replace || ent_store_wtxn_seq(w) == 0;
	if (replace) {
		Ent__V1__Wipe wipe = ENT__V1__WIPE__INIT;
		Ent__V1__Event wev = ENT__V1__EVENT__INIT;
		wev.at = now;
		wev.kind_case = ENT__V1__EVENT__KIND_WIPE;
		wev.wipe = &wipe;
		if ((rc = apply_one(w, &wev, "replace", &scratch, err)))
			goto out;
		changes++;
	}
	for (size_t i = 0; i < n; i++) {
		if (!ev[i]->at || !keep_times)
			ev[i]->at = now;
		if ((rc = apply_one(w, ev[i], paths[i], &scratch, err)))
			goto out;
		changes++;
	}
	if (stats) {
		stats->changes = changes;
		stats->seq = ent_store_wtxn_seq(w);
	}
out:
	ent_arena_deinit(&scratch);
	return rc;
}

int ent_json_import(struct ent_store *store, const char *text, size_t len, bool replace,
		    struct ent_err *err, struct ent_json_stats *stats)
{
	struct ent_wtxn *w;
	struct ent_json_stats st = {0};
	struct ent_arena arena;
	int rc = ent_store_wtxn_begin(store, &w);
	if (rc)
		return ent_err_set(err, rc, "begin write transaction: %s", ent_err_strerror(rc));
	ent_arena_init(&arena, 0);
	rc = ent_json_apply(w, text, len, replace, 0, &arena, err, &st);
	ent_arena_deinit(&arena);
	if (rc) {
		ent_store_wtxn_abort(w);
		return rc;
	}
	if ((rc = ent_store_wtxn_commit(w, err)))
		return rc;
	if (stats)
		*stats = st;
	return 0;
}
