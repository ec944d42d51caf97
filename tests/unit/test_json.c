/*
 * The JSON document: conversion to events (shapes, paths in errors, Lago plain map vs extended
 * grants), import into a real store in a temporary LMDB directory (all or nothing, errors from
 * apply prefixed with the path), export -> import -> export byte-identity on deploy/demo, and the
 * synthetic generator checked through ent_store_view_check.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ent/json.h"
#include "ent/model.h"
#include "ent/store.h"
#include "ent/util.h"
#include "ent/v1/event.pb-c.h"

/* ---- fixtures --------------------------------------------------------------------------- */

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

struct db {
	char dir[64];
	struct ent_store *store;
};

static void db_open(struct db *d)
{
	strcpy(d->dir, "/tmp/ent_json_XXXXXX");
	assert_non_null(mkdtemp(d->dir));
	struct ent_store_opts o = {.path = d->dir, .map_size = (size_t)256 << 20};
	struct ent_err err = {0};
	int rc = ent_store_open(&o, &d->store, &err);
	if (rc)
		fprintf(stderr, "ent_store_open: %s\n", err.msg);
	assert_int_equal(rc, 0);
}

static void db_close(struct db *d)
{
	ent_store_close(d->store);
	rm_dir(d->dir);
}

static int import_str(struct db *d, const char *json, bool replace, struct ent_err *err,
		      struct ent_json_stats *st)
{
	memset(err, 0, sizeof(*err));
	return ent_json_import(d->store, json, strlen(json), replace, err, st);
}

static void must_import(struct db *d, const char *json, bool replace)
{
	struct ent_err err;
	struct ent_json_stats st;
	int rc = import_str(d, json, replace, &err, &st);
	if (rc)
		fprintf(stderr, "import: %s\n", err.msg);
	assert_int_equal(rc, 0);
}

static char *export_db(struct db *d)
{
	struct ent_view *v;
	struct ent_err err = {0};
	char *out = NULL;
	assert_int_equal(ent_store_view_new(d->store, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);
	int rc = ent_json_export(v, &out, &err);
	if (rc)
		fprintf(stderr, "export: %s\n", err.msg);
	ent_store_view_end(v);
	ent_store_view_free(v);
	assert_int_equal(rc, 0);
	assert_non_null(out);
	return out;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* deploy/demo/demo.json, found from this file's own path (CMake compiles it by absolute path). */
static char *read_demo(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s", __FILE__);
	char *p = strstr(path, "tests/unit/test_json.c");
	assert_non_null(p);
	strcpy(p, "deploy/demo/demo.json");
	return read_file(path);
}

/* A file under tests/unit/data/, found like read_demo(). */
static char *read_data(const char *name)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s", __FILE__);
	char *p = strstr(path, "test_json.c");
	assert_non_null(p);
	snprintf(p, sizeof(path) - (size_t)(p - path), "data/%s", name);
	return read_file(path);
}

/* Convert only; return the error message (or "" on success) in a static buffer. */
static const char *convert_err(const char *json)
{
	static struct ent_err err;
	struct ent_arena a;
	Ent__V1__Event **ev;
	size_t n;
	ent_arena_init(&a, 0);
	memset(&err, 0, sizeof(err));
	int rc = ent_json_to_events(json, strlen(json), &a, &ev, &n, &err);
	ent_arena_deinit(&a);
	if (rc == 0)
		return "";
	assert_int_equal(rc, -ENT_EINVAL);
	assert_int_equal(err.code, ENT_EINVAL);
	return err.msg;
}

#define assert_has(hay, needle)                                                                    \
	do {                                                                                       \
		if (!strstr((hay), (needle)))                                                      \
			fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));               \
	} while (0)

static const char *const seats_feature =
	"\"features\": [{\"code\": \"seats\", \"type\": \"boolean\", \"privileges\": ["
	"{\"code\": \"max\", \"value_type\": \"integer\"},"
	"{\"code\": \"root\", \"value_type\": \"boolean\"},"
	"{\"code\": \"provider\", \"value_type\": \"select\","
	" \"config\": {\"select_options\": [\"google\", \"okta\"]}}]}]";

/* ---- conversion ---------------------------------------------------------------------------- */

static void test_error_paths(void **state)
{
	char doc[2048];

	/* Wrong type for a declared integer privilege, extended form. */
	snprintf(doc, sizeof(doc),
		 "{%s, \"plans\": {\"startup\": {\"entitlements\": {\"seats\": "
		 "{\"privileges\": {\"max\": \"twenty\"}}}}}}",
		 seats_feature);
	assert_string_equal(convert_err(doc),
			    "plans.startup.entitlements.seats.privileges.max: expected integer");
	/* ... and in Lago's plain map the privilege sits right under the feature. */
	snprintf(doc, sizeof(doc),
		 "{%s, \"plans\": {\"startup\": {\"entitlements\": {\"seats\": {\"root\": 1}}}}}",
		 seats_feature);
	assert_string_equal(convert_err(doc),
			    "plans.startup.entitlements.seats.root: expected true or false");
	/* A privilege the feature in the document does not declare. */
	snprintf(doc, sizeof(doc),
		 "{%s, \"addons\": {\"a\": {\"entitlements\": {\"seats\": {\"maxx\": 3}}}}}",
		 seats_feature);
	assert_has(convert_err(doc), "addons.a.entitlements.seats.maxx: feature seats declares no");

	/* Unknown keys, at every level. */
	assert_string_equal(convert_err("{\"featuers\": []}"), "featuers: unknown key");
	assert_string_equal(
		convert_err(
			"{\"features\": [{\"code\": \"a\", \"type\": \"boolean\", \"nmae\": 1}]}"),
		"features[0].nmae: unknown key");
	assert_string_equal(convert_err("{\"plans\": {\"p\": {\"entitlements\": {\"f\": "
					"{\"usage_limit\": 5, \"reset\": \"DAILY\"}}}}}"),
			    "plans.p.entitlements.f.reset: unknown key");
	assert_string_equal(
		convert_err("{\"subscriptions\": [{\"id\": \"s\", \"customer_id\": "
			    "\"c\", \"addons\": [{\"addon_code\": \"x\", \"qty\": 2}]}]}"),
		"subscriptions[0].addons[0].qty: unknown key");

	/* Times. */
	assert_has(convert_err("{\"subscriptions\": [{\"id\": \"s\", \"customer_id\": \"c\", "
			       "\"active_from\": \"2024-13-01T00:00:00Z\"}]}"),
		   "subscriptions[0].active_from: bad time \"2024-13-01T00:00:00Z\"");
	assert_has(convert_err("{\"overrides\": [{\"customer_id\": \"c\", \"feature_code\": \"f\", "
			       "\"value\": true, \"expires_at\": \"2035-01-01T00:00:00\"}]}"),
		   "overrides[0].expires_at: bad time");
	assert_has(convert_err("{\"overrides\": [{\"customer_id\": \"c\", \"feature_code\": \"f\", "
			       "\"value\": true, \"expires_at\": true}]}"),
		   "overrides[0].expires_at: expected RFC 3339 time or Unix ms");

	/* Enum names. */
	assert_has(
		convert_err("{\"plans\": {\"p\": {\"entitlements\": {\"f\": "
			    "{\"usage_limit\": 5, \"usage_reset_period\": \"FORTNIGHTLY\"}}}}}"),
		"plans.p.entitlements.f.usage_reset_period: unknown reset period \"FORTNIGHTLY\"");
	assert_has(convert_err("{\"features\": [{\"code\": \"a\", \"type\": \"gauge\"}]}"),
		   "features[0].type: unknown feature type \"gauge\"");
	assert_has(convert_err("{\"features\": [{\"code\": \"a\", \"type\": \"boolean\", "
			       "\"privileges\": [{\"code\": \"p\", \"value_type\": \"float\"}]}]}"),
		   "features[0].privileges[0].value_type: unknown value type");

	/* Required members, wrong shapes, values. */
	assert_string_equal(convert_err("{\"features\": [{\"type\": \"boolean\"}]}"),
			    "features[0].code: required");
	assert_string_equal(convert_err("{\"plans\": []}"), "plans: expected object");
	assert_string_equal(convert_err("{\"usage\": {}}"), "usage: expected array");
	assert_string_equal(convert_err("[1]"), "document: expected object");
	assert_string_equal(convert_err("{\"overrides\": [{\"customer_id\": \"c\", "
					"\"feature_code\": \"f\", \"value\": \"yes\"}]}"),
			    "overrides[0].value: expected true, false or a number");
	assert_string_equal(convert_err("{\"usage\": [{\"customer_id\": \"c\", \"feature_code\": "
					"\"f\", \"quantity\": 1}]}"),
			    "usage[0].idempotency_key: required");
	assert_string_equal(convert_err("{\"usage\": [{\"customer_id\": \"c\", \"feature_code\": "
					"\"f\", \"used\": 1, \"quantity\": 1}]}"),
			    "usage[0].quantity: unknown key");
	assert_string_equal(convert_err("{\"subscriptions\": [{\"id\": \"s\", \"customer_id\": "
					"\"c\", \"quantity\": 1.5}]}"),
			    "subscriptions[0].quantity: expected integer");

	/* Syntax errors and duplicate keys name the place in the text. */
	assert_has(convert_err("{\"features\": [}"), "line 1 column");
	assert_has(convert_err("{\"plans\": {}, \"plans\": {}}"), "duplicate");
	/* The empty document is valid and makes no events. */
	assert_string_equal(convert_err("{}"), "");
}

static void test_grant_forms(void **state)
{
	/* Plans listed before features still convert after them (import order). */
	const char *doc =
		"{\"plans\": {\"p\": {\"name\": \"P\", \"entitlements\": {"
		"  \"seats\": {\"max\": 20, \"root\": false, \"provider\": \"okta\"},"
		"  \"calls\": {\"usage_limit\": null, \"usage_reset_period\": \"monthly\","
		"              \"privileges\": {\"burst\": 5}},"
		"  \"beta\": {\"enabled\": false},"
		"  \"tier\": {\"static_values\": [\"gold\"], \"usage_limit\": 7, \"is_soft_limit\": true},"
		"  \"empty\": {}}}},"
		" \"features\": [{\"code\": \"seats\", \"type\": \"boolean\"}]}";
	struct ent_arena a;
	Ent__V1__Event **ev;
	const char **paths;
	size_t n;
	struct ent_err err = {0};
	ent_arena_init(&a, 0);
	/* seats is declared without privileges: its plain map must be refused... */
	assert_int_equal(ent_json_to_events_paths(doc, strlen(doc), &a, &ev, &paths, &n, &err),
			 -ENT_EINVAL);
	assert_has(err.msg, "plans.p.entitlements.seats.max: feature seats declares no");
	/* ...so convert it without the declaration: types then follow the JSON values. */
	const char *no_decl = strstr(doc, ", \"features\"");
	char doc2[1024];
	snprintf(doc2, sizeof(doc2), "%.*s}", (int)(no_decl - doc), doc);
	memset(&err, 0, sizeof(err));
	int rc = ent_json_to_events_paths(doc2, strlen(doc2), &a, &ev, &paths, &n, &err);
	if (rc)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0]->kind_case, ENT__V1__EVENT__KIND_SET_PLAN);
	assert_int_equal(ev[0]->at, 0);
	assert_string_equal(paths[0], "plans.p");
	const Ent__V1__SetEntitlementsRequest *p = ev[0]->set_plan;
	assert_string_equal(p->code, "p");
	assert_string_equal(p->name, "P");
	assert_int_equal(p->n_entitlements, 5);

	/* Lago's plain map: every key is a privilege, the grant itself is a default one. */
	const Ent__V1__Grant *g = p->entitlements[0];
	assert_string_equal(g->feature_code, "seats");
	assert_null(g->enabled);
	assert_int_equal(g->usage_limit, 0);
	assert_false(g->unlimited);
	assert_int_equal(g->n_privileges, 3);
	assert_string_equal(g->privileges[0]->code, "max");
	assert_int_equal(g->privileges[0]->value_case, ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE);
	assert_int_equal(g->privileges[0]->int_value, 20);
	assert_int_equal(g->privileges[1]->value_case, ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE);
	assert_false(g->privileges[1]->bool_value);
	assert_int_equal(g->privileges[2]->value_case,
			 ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE);
	assert_string_equal(g->privileges[2]->string_value, "okta");

	/* Extended: usage_limit null is Flexprice's unlimited; reset names ignore case. */
	g = p->entitlements[1];
	assert_true(g->unlimited);
	assert_int_equal(g->usage_reset_period, ENT__V1__RESET_PERIOD__RESET_PERIOD_MONTHLY);
	assert_int_equal(g->n_privileges, 1);
	assert_int_equal(g->privileges[0]->int_value, 5);

	g = p->entitlements[2];
	assert_non_null(g->enabled);
	assert_false(g->enabled->value);
	assert_int_equal(g->n_privileges, 0);

	g = p->entitlements[3];
	assert_int_equal(g->usage_limit, 7);
	assert_true(g->is_soft_limit);
	assert_false(g->unlimited);
	assert_int_equal(g->n_static_values, 1);
	assert_string_equal(g->static_values[0], "gold");

	g = p->entitlements[4];
	assert_string_equal(g->feature_code, "empty");
	assert_null(g->enabled);
	assert_int_equal(g->n_privileges, 0);
	ent_arena_deinit(&a);
}

static void test_event_order_and_times(void **state)
{
	const char *doc =
		"{\"usage\": [{\"customer_id\": \"c\", \"feature_code\": \"f\", \"quantity\": 2,"
		"              \"idempotency_key\": \"k\", \"timestamp\": 1700000000000},"
		"             {\"customer_id\": \"c\", \"feature_code\": \"f\","
		"              \"period_start\": \"2024-01-01T00:00:00Z\", \"used\": 9}],"
		" \"overrides\": [{\"customer_id\": \"c\", \"feature_code\": \"f\", \"value\": 2.5,"
		"                  \"quantity\": 40, \"created_at\": \"2024-12-20T16:04:11Z\","
		"                  \"updated_at\": \"2024-12-21T00:00:00+02:00\"}],"
		" \"subscriptions\": [{\"id\": \"s\", \"customer_id\": \"c\", \"plan_code\": \"p\","
		"                      \"ends_at\": null, \"active_from\": 1704067200000}],"
		" \"addons\": {\"a\": {}},"
		" \"features\": [{\"code\": \"f\", \"type\": \"metered\", \"metadata\": {\"k\": \"v\"},"
		"                 \"created_at\": \"2024-01-01T00:00:00.250Z\"}]}";
	struct ent_arena a;
	Ent__V1__Event **ev;
	const char **paths;
	size_t n;
	struct ent_err err = {0};
	ent_arena_init(&a, 0);
	int rc = ent_json_to_events_paths(doc, strlen(doc), &a, &ev, &paths, &n, &err);
	if (rc)
		fail_msg("%s", err.msg);
	static const int kinds[] = {ENT__V1__EVENT__KIND_UPSERT_FEATURE,
				    ENT__V1__EVENT__KIND_SET_ADDON,
				    ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION,
				    ENT__V1__EVENT__KIND_SET_OVERRIDE,
				    ENT__V1__EVENT__KIND_UPDATE_OVERRIDE,
				    ENT__V1__EVENT__KIND_REPORT_USAGE,
				    ENT__V1__EVENT__KIND_SET_USAGE};
	assert_int_equal(n, sizeof(kinds) / sizeof(kinds[0]));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ev[i]->kind_case, kinds[i]);
	assert_string_equal(paths[0], "features[0]");
	assert_string_equal(paths[2], "subscriptions[0]");
	assert_string_equal(paths[6], "usage[1]");

	assert_int_equal(ev[0]->upsert_feature->created_at, 1704067200250LL);
	assert_int_equal(ev[0]->upsert_feature->n_metadata, 1);
	assert_string_equal(ev[0]->upsert_feature->metadata[0]->value, "v");
	assert_int_equal(ev[2]->upsert_subscription->active_from, 1704067200000LL);
	assert_int_equal(ev[2]->upsert_subscription->ends_at, 0);
	const Ent__V1__SetCustomerEntitlementRequest *o = ev[3]->set_override;
	assert_int_equal(o->value->kind_case, ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE);
	assert_true(o->value->number_value == 2.5);
	/* Override stamps travel as event times (the applier stamps from ev->at). */
	assert_int_equal(ev[3]->at, 1734710651000LL);
	assert_int_equal(ev[4]->at, 1734732000000LL);
	assert_int_equal(ev[4]->update_override->quantity->value, 40);
	assert_int_equal(ev[5]->report_usage->timestamp, 1700000000000LL);
	assert_int_equal(ev[5]->report_usage->quantity, 2);
	assert_int_equal(ev[6]->set_usage->period_start, 1704067200000LL);
	assert_int_equal(ev[6]->set_usage->used, 9);
	ent_arena_deinit(&a);
}

/* ---- import / export ---------------------------------------------------------------------- */

static void test_export_empty(void **state)
{
	struct db d;
	db_open(&d);
	char *e = export_db(&d);
	assert_string_equal(e, "{\n  \"features\": [],\n  \"plans\": {},\n  \"addons\": {},\n"
			       "  \"subscriptions\": [],\n  \"overrides\": [],\n  \"usage\": [],\n"
			       "  \"ended\": []\n}\n");
	struct ent_err err;
	struct ent_json_stats st;
	assert_int_equal(import_str(&d, e, false, &err, &st), 0);
	assert_int_equal(st.changes, 0);
	free(e);
	db_close(&d);
}

static void test_roundtrip_demo(void **state)
{
	char *demo = read_demo();
	struct db d1, d2;
	db_open(&d1);
	db_open(&d2);

	struct ent_err err;
	struct ent_json_stats st;
	int rc = import_str(&d1, demo, false, &err, &st);
	if (rc)
		fail_msg("demo.json: %s", err.msg);
	assert_true(st.changes > 30);
	assert_int_equal(st.seq, st.changes);
	char *e1 = export_db(&d1);
	/* The document says what the demo has (spot checks of the canonical form). */
	assert_has(e1, "\"code\": \"api_calls\"");
	assert_has(e1, "\"api_calls\": {\"unlimited\": true, \"usage_reset_period\": \"MONTHLY\"}");
	assert_has(e1, "\"seats\": {\"max\": 20, \"max_admins\": 5, \"root\": false}");
	assert_has(e1, "\"reason\": \"Q4 promotion\"");
	assert_has(e1, "\"quantity\": 250000");
	assert_has(e1, "\"used\": 1234");

	rc = import_str(&d2, e1, false, &err, &st);
	if (rc)
		fail_msg("re-import: %s", err.msg);
	char *e2 = export_db(&d2);
	assert_string_equal(e1, e2);

	/* Replace: importing the export over the same database changes nothing either. */
	rc = import_str(&d1, e1, true, &err, &st);
	if (rc)
		fail_msg("replace: %s", err.msg);
	char *e3 = export_db(&d1);
	assert_string_equal(e1, e3);

	/* The demo answers what docs/data-format.md says. */
	struct ent_view *v;
	struct ent_check_result r;
	assert_int_equal(ent_store_view_new(d2.store, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);
	struct ent_check c = {ent_str_c("cus_acme"), ent_str_c("api_calls"), 1, ent_time_now_ms()};
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	assert_true(r.d.allowed);
	assert_int_equal(r.d.limit, 100000);
	assert_int_equal(r.d.used, 1234);
	assert_int_equal(r.d.remaining, 100000 - 1234);
	c.customer = ent_str_c("cus_umbrella");
	c.feature = ent_str_c("sso");
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	assert_false(r.d.allowed);
	assert_int_equal(r.d.reason, ENT_R_DISABLED_BY_OVERRIDE);
	c.customer = ent_str_c("cus_initech");
	c.feature = ent_str_c("api_calls");
	c.quantity = 2;
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	assert_false(r.d.allowed);
	assert_int_equal(r.d.reason, ENT_R_LIMIT_EXCEEDED);
	assert_int_equal(r.d.limit, 1000);
	c.customer = ent_str_c("cus_nobody");
	c.quantity = 1;
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	assert_int_equal(r.d.reason, ENT_R_UNKNOWN_CUSTOMER);
	ent_store_view_end(v);
	ent_store_view_free(v);

	free(e1);
	free(e2);
	free(e3);
	free(demo);
	db_close(&d1);
	db_close(&d2);
}

/*
 * Exports written by main before the conversion became descriptor-driven (7e38457) still
 * import, and export again to the same document: the same members with the same values
 * (json_equal ignores member order, the one intended difference: members now come in proto
 * field order, docs/data-format.md). An export is the whole stored state, so the same document
 * means the same answers; the demo's are spot-checked in test_roundtrip_demo.
 */
static void test_old_exports(void **state)
{
	static const char *const files[] = {"export-7e38457-demo.json",
					    "export-7e38457-every-member.json"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *old = read_data(files[i]);
		struct db d;
		struct ent_err err;
		struct ent_json_stats st;
		db_open(&d);
		int rc = import_str(&d, old, false, &err, &st);
		if (rc)
			fail_msg("%s: %s", files[i], err.msg);
		char *now = export_db(&d);
		json_error_t je;
		json_t *a = json_loads(old, 0, &je), *b = json_loads(now, 0, &je);
		assert_non_null(a);
		assert_non_null(b);
		if (!json_equal(a, b))
			fail_msg("%s: the export differs:\n%s", files[i], now);
		/* And the new canonical form is a fixed point. */
		struct db d2;
		db_open(&d2);
		rc = import_str(&d2, now, false, &err, &st);
		if (rc)
			fail_msg("%s re-import: %s", files[i], err.msg);
		char *again = export_db(&d2);
		assert_string_equal(now, again);
		json_decref(a);
		json_decref(b);
		free(again);
		free(now);
		free(old);
		db_close(&d2);
		db_close(&d);
	}
}

static void test_import_all_or_nothing(void **state)
{
	struct db d;
	db_open(&d);
	char *before = export_db(&d);
	char doc[2048];
	struct ent_err err;
	struct ent_json_stats st;

	/* A select value outside the options: found by apply, named by the plan's path. */
	snprintf(doc, sizeof(doc),
		 "{%s, \"plans\": {\"startup\": {\"entitlements\": {\"seats\": "
		 "{\"max\": 5, \"provider\": \"github\"}}}}}",
		 seats_feature);
	assert_true(import_str(&d, doc, false, &err, &st) < 0);
	assert_int_equal(err.code, ENT_EINVAL);
	/* apply's "entitlements[0].privileges.provider" is placed at the document's path. */
	assert_has(err.msg, "plans.startup.entitlements.seats.privileges.provider: ");
	assert_has(err.msg, "github");
	char *after = export_db(&d);
	assert_string_equal(before, after); /* the feature before it was not kept either */
	free(after);

	/* A plan naming a feature that does not exist. */
	assert_true(import_str(&d,
			       "{\"features\": [{\"code\": \"a\", \"type\": \"boolean\"}],"
			       " \"plans\": {\"p\": {\"entitlements\": {\"a\": {}, \"b\": {}}}}}",
			       false, &err, &st) < 0);
	assert_has(err.msg, "plans.p.entitlements.b: ");
	after = export_db(&d);
	assert_string_equal(before, after);
	free(after);

	/* apply's field names join the object's path. */
	assert_true(import_str(&d,
			       "{\"subscriptions\": [{\"id\": \"s\", \"customer_id\": \"c\","
			       " \"plan_code\": \"nope\"}]}",
			       false, &err, &st) < 0);
	assert_has(err.msg, "subscriptions[0].plan_code: ");
	assert_has(err.msg, "nope");

	/* A shape error writes nothing and names its path. */
	assert_true(import_str(&d,
			       "{\"features\": [{\"code\": \"a\", \"type\": \"boolean\"}], "
			       "\"usage\": [{\"customer_id\": 5}]}",
			       false, &err, &st) < 0);
	assert_string_equal(err.msg, "usage[0].customer_id: expected string");
	after = export_db(&d);
	assert_string_equal(before, after);
	free(after);

	/* The same import without the error goes through, and a replace wipes it again. */
	must_import(&d, "{\"features\": [{\"code\": \"a\", \"type\": \"boolean\"}]}", false);
	after = export_db(&d);
	assert_has(after, "{\"code\": \"a\", \"type\": \"boolean\"");
	free(after);
	assert_int_equal(import_str(&d, "{}", true, &err, &st), 0);
	assert_int_equal(st.changes, 1); /* the wipe */
	after = export_db(&d);
	assert_string_equal(before, after);
	free(after);
	free(before);
	db_close(&d);
}

static void test_override_forms(void **state)
{
	/* Without a value an override is a Zenskar assignment; with fields only Hyperline's PUT
	 * carries, the value is required. */
	assert_has(convert_err("{\"overrides\": [{\"customer_id\": \"c\", \"feature_code\": "
			       "\"f\", \"quantity\": 5, \"reason\": \"r\"}]}"),
		   "overrides[0].value: required with reason");

	struct db d;
	db_open(&d);
	const char *base =
		"{\"features\": [{\"code\": \"api\", \"type\": \"metered\"}],"
		" \"plans\": {\"p\": {\"entitlements\": {\"api\": {\"usage_limit\": 10}}}},"
		" \"subscriptions\": [{\"id\": \"s\", \"customer_id\": \"c\", \"plan_code\": \"p\"}],"
		" \"overrides\": [{\"customer_id\": \"c\", \"feature_code\": \"api\", \"quantity\": 50,"
		"   \"active_from\": \"2020-01-01T00:00:00Z\", \"expires_at\": \"2036-01-01T00:00:00Z\","
		"   \"created_at\": \"2024-01-01T00:00:00Z\", \"updated_at\": 1706745600000}]}";
	must_import(&d, base, false);
	char *e1 = export_db(&d);
	/* Into an empty store the document's stamps are kept (updated_at given as Unix ms). */
	assert_has(e1, "{\"customer_id\": \"c\", \"feature_code\": \"api\", \"quantity\": 50, "
		       "\"active_from\": \"2020-01-01T00:00:00.000Z\", "
		       "\"expires_at\": \"2036-01-01T00:00:00.000Z\", "
		       "\"created_at\": \"2024-01-01T00:00:00.000Z\", "
		       "\"updated_at\": \"2024-02-01T00:00:00.000Z\"}");
	struct ent_view *v;
	struct ent_check_result r;
	assert_int_equal(ent_store_view_new(d.store, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);
	struct ent_check c = {ent_str_c("c"), ent_str_c("api"), 1, ent_time_now_ms()};
	assert_int_equal(ent_store_view_check(v, &c, &r), 0);
	assert_true(r.d.allowed);
	assert_int_equal(r.d.limit, 50); /* Zenskar's quantity is the limit of a metered feature */
	ent_store_view_end(v);
	ent_store_view_free(v);

	/* Merged into a store with state, events happen now: old stamps would recompute usage
	 * "in the past". */
	must_import(&d,
		    "{\"overrides\": [{\"customer_id\": \"c\", \"feature_code\": \"api\", "
		    "\"value\": 70, \"created_at\": \"2023-03-01T00:00:00Z\"}]}",
		    false);
	char *e2 = export_db(&d);
	assert_has(e2, "\"value\": 70");
	assert_null(strstr(e2, "2023-03-01"));
	assert_has(e2, "\"created_at\": \"2024-01-01T00:00:00.000Z\""); /* PUT keeps creation */
	free(e1);
	free(e2);
	db_close(&d);
}

/* ---- generate ---------------------------------------------------------------------------- */

static void check(struct ent_view *v, const char *cus, const char *feat, int64_t now,
		  struct ent_check_result *r)
{
	struct ent_check c = {ent_str_c(cus), ent_str_c(feat), 1, now};
	assert_int_equal(ent_store_view_check(v, &c, r), 0);
}

static void test_generate(void **state)
{
	struct db d1, d2;
	db_open(&d1);
	db_open(&d2);
	int64_t now = ent_time_now_ms();
	struct ent_gen_opts o = {.customers = 1000, .seed = 42, .batch = 300, .now = now};
	struct ent_gen_stats gs;
	struct ent_err err = {0};
	int rc = ent_json_generate(d1.store, &o, &gs, &err);
	if (rc)
		fail_msg("generate: %s", err.msg);
	/* 20 features + 4 plans + 2 add-ons, 1000 subscriptions, 50 overrides, 250 counters. */
	assert_int_equal(gs.events, 26 + 1000 + 50 + 250);
	assert_int_equal(gs.seq, gs.events);

	struct ent_store_stats ss;
	assert_int_equal(ent_store_stats(d1.store, &ss), 0);
	assert_int_equal(ss.features, 20);
	assert_int_equal(ss.plans, 4);
	assert_int_equal(ss.addons, 2);
	assert_int_equal(ss.subscriptions, 1000);
	assert_int_equal(ss.overrides, 50);
	assert_int_equal(ss.customers, 1000);

	struct ent_view *v;
	struct ent_check_result r;
	assert_int_equal(ent_store_view_new(d1.store, &v), 0);
	assert_int_equal(ent_store_view_begin(v), 0);

	/* cus_7: an override raises f_metered_0 to 1000000. */
	check(v, "cus_7", "f_metered_0", now, &r);
	assert_true(r.d.allowed);
	assert_int_equal(r.d.limit, 1000000);
	assert_true(r.d.agg->override_applied);
	/* cus_27: f_boolean_0 switched off by an override. */
	check(v, "cus_27", "f_boolean_0", now, &r);
	assert_false(r.d.allowed);
	assert_int_equal(r.d.reason, ENT_R_DISABLED_BY_OVERRIDE);
	/* cus_1 is on plan_1 with addon_0 x1, cus_5 on plan_1 without: 500 apart. */
	struct ent_check_result r5;
	check(v, "cus_1", "f_metered_0", now, &r);
	check(v, "cus_5", "f_metered_0", now, &r5);
	assert_int_equal(r.d.limit - r5.d.limit, 500);
	assert_true(r5.d.soft); /* odd plans have soft limits */
	/* Higher plans grant more: f_boolean_4 on plan_3 only, with its privileges. */
	check(v, "cus_3", "f_boolean_4", now, &r);
	assert_true(r.d.allowed);
	assert_int_equal(r.d.agg->n_privs, 4);
	check(v, "cus_0", "f_boolean_4", now, &r);
	assert_false(r.d.allowed);
	assert_int_equal(r.d.reason, ENT_R_NOT_ENTITLED);
	/* Static values of plan_2 on f_static_0 (cus_6); addon_1 adds "premium" (cus_2). */
	check(v, "cus_6", "f_static_0", now, &r);
	assert_true(r.d.allowed);
	assert_int_equal(r.d.agg->n_static, 2);
	assert_true(ent_str_eq(r.d.agg->statics[0], ent_str_c("tier-2")) ||
		    ent_str_eq(r.d.agg->statics[1], ent_str_c("tier-2")));
	check(v, "cus_2", "f_static_0", now, &r);
	assert_int_equal(r.d.agg->n_static, 3);
	/* Unknown names. */
	check(v, "cus_1000", "f_metered_0", now, &r);
	assert_int_equal(r.d.reason, ENT_R_UNKNOWN_CUSTOMER);
	check(v, "cus_1", "f_metered_99", now, &r);
	assert_int_equal(r.d.reason, ENT_R_UNKNOWN_FEATURE);
	/* Usage counters were written in the current period: a check sees them as used. */
	int counted = 0;
	for (int i = 0; i < 1000; i += 4) {
		char cus[16];
		snprintf(cus, sizeof(cus), "cus_%d", i);
		check(v, cus, "f_metered_0", now, &r);
		assert_true(r.d.metered);
		assert_true(r.d.period_start <= now);
		counted += r.d.used > 0;
	}
	assert_true(counted > 200); /* a hash mod 1.5 x limit is rarely 0 */
	ent_store_view_end(v);
	ent_store_view_free(v);

	/* Same options, same data: a second build exports byte-identically. */
	rc = ent_json_generate(d2.store, &o, &gs, &err);
	if (rc)
		fail_msg("generate: %s", err.msg);
	char *e1 = export_db(&d1), *e2 = export_db(&d2);
	assert_string_equal(e1, e2);
	assert_has(e1, "\"customer_id\": \"cus_999\"");
	free(e1);
	free(e2);
	db_close(&d1);
	db_close(&d2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_paths),
		cmocka_unit_test(test_grant_forms),
		cmocka_unit_test(test_event_order_and_times),
		cmocka_unit_test(test_export_empty),
		cmocka_unit_test(test_roundtrip_demo),
		cmocka_unit_test(test_old_exports),
		cmocka_unit_test(test_import_all_or_nothing),
		cmocka_unit_test(test_override_forms),
		cmocka_unit_test(test_generate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
