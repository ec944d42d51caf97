/*
 * entctl admin: every admin RPC (docs/entctl.md). A body is the object as the import document
 * writes it (src/json) or, failing that, the proto3 JSON of the request (the descriptor-driven
 * conversion); the answer prints as a table, a tree or JSON.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client/ctl.h"
#include "ent/client.h"
#include "ent/json.h"
#include "ent/v1/admin.pb-c.h"
#include "ent/v1/entitlement.pb-c.h"
#include "ent/v1/event.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "json/pbjson.h"

/* ---- admin ---------------------------------------------------------------------------- */

static const char admin_usage[] =
	"admin [-a ADDR] [--token T] [--json] [--timeout MS] COMMAND ...  (entctl admin help)";

static const char admin_help[] =
	"usage: entctl admin [-a ADDR] [--token T] [--json] [--timeout MS] COMMAND ...\n"
	"\n"
	"The token is --token or $ENTD_ADMIN_TOKEN. BODY is inline JSON ('{...}'), a file\n"
	"path, @path, or - for stdin. Times in bodies: Unix ms, RFC 3339, \"now\", \"now+1d\".\n"
	"\n"
	"  feature upsert BODY                    Feature object (code, name, type, privileges...)\n"
	"  feature get CODE\n"
	"  feature list [--page-size N] [--page-token T]   all pages unless --page-token\n"
	"  feature delete CODE\n"
	"  plan set CODE BODY                     replace all grants: {\"name\", \"entitlements\"}\n"
	"                                         or a list of grants\n"
	"  plan patch CODE BODY                   merge grants by feature_code\n"
	"  plan get CODE\n"
	"  plan delete CODE\n"
	"  addon set|patch|get|delete ...         as plan\n"
	"  subscription upsert BODY               Subscription object\n"
	"  subscription cancel CUSTOMER SUBSCRIPTION_ID [--at TIME]\n"
	"  override set CUSTOMER FEATURE BODY     {\"value\": true|N, \"reason\", \"expires_at\", ...}\n"
	"                                         or just true, false or a number\n"
	"  override update CUSTOMER FEATURE BODY  {\"quantity\", \"quantity_used\", \"active_from\",\n"
	"                                         \"expiry_at\"}: only the fields given change\n"
	"  override delete CUSTOMER FEATURE\n"
	"  override list CUSTOMER\n"
	"  import FILE [--replace]                send a JSON state document\n"
	"  export [FILE]                          the whole state as JSON (stdout or FILE)\n"
	"  status\n";

/* Everything an admin subcommand needs after option parsing. */
struct admin_ctx {
	struct ent_ctl_common co;
	ent_client *cl;
	int argc; /* positional arguments after COMMAND SUBCOMMAND */
	char **argv;
	int64_t at;
	bool at_set;
	bool replace;
	int64_t page_size;
	const char *page_token;
};

static int admin_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int admin_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = ent_client_ctl_vusage_error(admin_usage, fmt, ap);
	va_end(ap);
	return r;
}

static char *read_stream(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (n + 1 < cap)
			break;
		char *nb = realloc(buf, cap * 2);
		if (!nb) {
			free(buf);
			return NULL;
		}
		buf = nb;
		cap *= 2;
	}
	if (!buf || ferror(f)) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The text of a body argument: inline JSON, "-" (stdin), "@path" or a path. */
static char *body_text(const char *arg, size_t *len)
{
	const char *p = arg;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p == '{' || *p == '[' || *p == '"' || !strcmp(p, "true") || !strcmp(p, "false") ||
	    ((*p == '-' || (*p >= '0' && *p <= '9')) && strcmp(p, "-") &&
	     strspn(p, "-+.0123456789eE") == strlen(p))) {
		*len = strlen(arg);
		return strdup(arg);
	}
	if (!strcmp(arg, "-"))
		return read_stream(stdin, len);
	if (*arg == '@')
		arg++;
	FILE *f = fopen(arg, "rb");
	if (!f) {
		fprintf(stderr, "entctl: cannot read '%s': %s\n", arg, strerror(errno));
		return NULL;
	}
	char *s = read_stream(f, len);
	fclose(f);
	return s;
}

/* Parse a body argument as JSON (any value). NULL after printing why. */
static void resolve_now(json_t *j);

static json_t *load_body(const char *arg)
{
	size_t len;
	char *text = body_text(arg, &len);
	if (!text)
		return NULL;
	json_error_t e;
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &e);
	free(text);
	if (!j)
		fprintf(stderr, "entctl: body is not JSON: line %d column %d: %s\n", e.line,
			e.column, e.text);
	resolve_now(j);
	return j;
}

/*
 * Build request \a desc from a JSON object; prints the path of a bad field, and \a doc_err (why
 * the import-document reading failed too) when there is one.
 */
static ProtobufCMessage *decode_body(json_t *j, const ProtobufCMessageDescriptor *desc,
				     const char *doc_err)
{
	ProtobufCMessage *m;
	struct ent_err err = {0};
	if (ent_json_pbjson_decode(j, desc, &m, &err)) {
		fprintf(stderr, "entctl: bad body: %s\n", err.msg);
		if (doc_err && doc_err[0])
			fprintf(stderr, "entctl: read as an import-document object: %s\n", doc_err);
		return NULL;
	}
	return m;
}

/* Call, print the answer (tree or JSON), free it. */
static int admin_call(struct admin_ctx *x, const char *method, const ProtobufCMessage *req,
		      const ProtobufCMessageDescriptor *resp_desc,
		      void (*print)(const ProtobufCMessage *))
{
	ProtobufCMessage *resp;
	int r = ent_client_ctl_call(x->cl, &x->co, method, req, resp_desc, &resp);
	if (r)
		return r;
	if (x->co.json)
		ent_client_ctl_print_msg_json(resp);
	else
		(print ? print : ent_client_ctl_print_msg_tree)(resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	return 0;
}

/* Call with a request built from a JSON object, then free the request. */
static int admin_call_json(struct admin_ctx *x, const char *method, json_t *body,
			   const ProtobufCMessageDescriptor *req_desc,
			   const ProtobufCMessageDescriptor *resp_desc,
			   void (*print)(const ProtobufCMessage *), const char *doc_err)
{
	ProtobufCMessage *req = decode_body(body, req_desc, doc_err);
	json_decref(body);
	if (!req)
		return ENT_CTL_EXIT_USAGE;
	int r = admin_call(x, method, req, resp_desc, print);
	protobuf_c_message_free_unpacked(req, NULL);
	return r;
}

static void print_grants(const ProtobufCMessage *m);

/*
 * The document reader types a privilege value from the feature declared in the same document
 * (a string could be STRING or SELECT). A body alone declares nothing, so declare the features
 * it grants, as stored now: fetched with GetFeature; unknown ones are left to the server.
 */
static void add_declarations(struct admin_ctx *x, json_t *doc, json_t *body)
{
	json_t *codes = json_array();
	json_t *ents = json_object_get(body, "entitlements");
	const char *k;
	json_t *v;
	if (json_is_object(ents))
		json_object_foreach(ents, k, v) json_array_append_new(codes, json_string(k));
	json_t *fc = json_object_get(body, "feature_code");
	if (json_is_string(fc))
		json_array_append(codes, fc);
	json_t *decls = json_array();
	size_t i;
	json_array_foreach(codes, i, v)
	{
		Ent__V1__GetFeatureRequest req = ENT__V1__GET_FEATURE_REQUEST__INIT;
		ProtobufCMessage *resp;
		req.code = (char *)json_string_value(v);
		if (ent_client_call(x->cl, ENT_CTL_SVC_ADMIN "GetFeature", &req.base,
				    &ent__v1__feature_response__descriptor, x->co.timeout_ms, &resp,
				    NULL, NULL, 0))
			continue;
		const Ent__V1__FeatureResponse *fr = (const Ent__V1__FeatureResponse *)resp;
		if (fr->feature && fr->feature->n_privileges)
			json_array_append_new(decls, ent_json_feature_doc(fr->feature));
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	if (json_array_size(decls))
		json_object_set(doc, "features", decls);
	json_decref(decls);
	json_decref(codes);
}

/* Times given as "now+1d" become RFC 3339 for the document reader (which takes only that). */
static void resolve_now(json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;
	if (json_is_array(j)) {
		json_array_foreach(j, i, v) resolve_now(v);
		return;
	}
	if (!json_is_object(j))
		return;
	json_object_foreach(j, k, v)
	{
		int64_t ms;
		char buf[40];
		if (json_is_string(v) && !strncasecmp(json_string_value(v), "now", 3) &&
		    ent_json_parse_time(json_string_value(v), &ms) == 0)
			json_object_set_new(j, k, json_string(ent_time_fmt(ms, buf, sizeof(buf))));
		else
			resolve_now(v);
	}
}

/*
 * Send the admin RPCs for one object given in the shape of the import document
 * (docs/data-format.md): the json module converts `{"<section>": [body]}` (or
 * `{"<section>": {key: body}}` for plans and add-ons) into events, and each event becomes its
 * RPC. So `plan set` takes exactly what a document's "plans" entry holds, with privileges
 * inline. An override with a value and a quantity is two events: Set, then Update.
 * \return -1 when the body is not a valid document object (\a err says why; the caller then
 *         tries the proto3 JSON of the request), else the command's exit status.
 */
static int try_document(struct admin_ctx *x, const char *section, const char *key, json_t *body,
			bool patch, struct ent_err *err)
{
	json_t *doc = key ? json_pack("{s:{s:O}}", section, key, body)
			  : json_pack("{s:[O]}", section, body);
	if (doc && strcmp(section, "features"))
		add_declarations(x, doc, body);
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!text) {
		ent_err_set(err, ENT_ENOMEM, "out of memory");
		return -1;
	}
	struct ent_arena arena;
	Ent__V1__Event **ev;
	size_t n;
	ent_arena_init(&arena, 16384);
	int rc = ent_json_to_events(text, strlen(text), &arena, &ev, &n, err);
	free(text);
	if (rc || n == 0) {
		if (!rc)
			ent_err_set(err, ENT_EINVAL, "no object");
		ent_arena_deinit(&arena);
		return -1;
	}
	/* The declarations added above are context, not changes: they are not sent. */
	bool declared = strcmp(section, "features") != 0;
	size_t last = n;
	for (size_t i = 0; i < n; i++)
		if (!declared || ev[i]->kind_case != ENT__V1__EVENT__KIND_UPSERT_FEATURE)
			last = i;
	if (last == n) {
		ent_err_set(err, ENT_EINVAL, "no object");
		ent_arena_deinit(&arena);
		return -1;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		/* Several events (override value + quantity): only the last answer is shown. */
		bool show = i == last;
		ProtobufCMessage *resp = NULL;
		if (declared && ev[i]->kind_case == ENT__V1__EVENT__KIND_UPSERT_FEATURE)
			continue;
		const ProtobufCMessage *req;
		const ProtobufCMessageDescriptor *rd;
		const char *method;
		void (*print)(const ProtobufCMessage *) = NULL;
		Ent__V1__UpsertFeatureRequest uf = ENT__V1__UPSERT_FEATURE_REQUEST__INIT;
		Ent__V1__UpsertSubscriptionRequest us = ENT__V1__UPSERT_SUBSCRIPTION_REQUEST__INIT;
		switch (ev[i]->kind_case) {
		case ENT__V1__EVENT__KIND_UPSERT_FEATURE:
			uf.feature = ev[i]->upsert_feature;
			req = &uf.base;
			method = ENT_CTL_SVC_ADMIN "UpsertFeature";
			rd = &ent__v1__feature_response__descriptor;
			break;
		case ENT__V1__EVENT__KIND_SET_PLAN:
			req = &ev[i]->set_plan->base;
			method = patch ? ENT_CTL_SVC_ADMIN "PatchPlanEntitlements"
				       : ENT_CTL_SVC_ADMIN "SetPlanEntitlements";
			rd = &ent__v1__entitlements_response__descriptor;
			print = print_grants;
			break;
		case ENT__V1__EVENT__KIND_SET_ADDON:
			req = &ev[i]->set_addon->base;
			method = patch ? ENT_CTL_SVC_ADMIN "PatchAddonEntitlements"
				       : ENT_CTL_SVC_ADMIN "SetAddonEntitlements";
			rd = &ent__v1__entitlements_response__descriptor;
			print = print_grants;
			break;
		case ENT__V1__EVENT__KIND_UPSERT_SUBSCRIPTION:
			us.subscription = ev[i]->upsert_subscription;
			req = &us.base;
			method = ENT_CTL_SVC_ADMIN "UpsertSubscription";
			rd = &ent__v1__subscription_response__descriptor;
			break;
		case ENT__V1__EVENT__KIND_SET_OVERRIDE:
			req = &ev[i]->set_override->base;
			method = ENT_CTL_SVC_ADMIN "SetCustomerEntitlement";
			rd = &ent__v1__customer_entitlement_response__descriptor;
			break;
		case ENT__V1__EVENT__KIND_UPDATE_OVERRIDE:
			req = &ev[i]->update_override->base;
			method = ENT_CTL_SVC_ADMIN "UpdateCustomerEntitlement";
			rd = &ent__v1__customer_entitlement_response__descriptor;
			break;
		default:
			fprintf(stderr, "entctl: the body holds more than one object\n");
			rc = ENT_CTL_EXIT_USAGE;
			continue;
		}
		rc = ent_client_ctl_call(x->cl, &x->co, method, req, rd, &resp);
		if (rc == 0 && show) {
			if (x->co.json)
				ent_client_ctl_print_msg_json(resp);
			else
				(print ? print : ent_client_ctl_print_msg_tree)(resp);
		}
		if (resp)
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	ent_arena_deinit(&arena);
	return rc;
}

static void print_feature_row(const Ent__V1__Feature *f)
{
	printf("%-28s %-8s %-28s ", f->code,
	       ent_json_enum_short(&ent__v1__feature_type__descriptor, f->type),
	       f->name[0] ? f->name : "-");
	for (size_t i = 0; i < f->n_privileges; i++)
		printf("%s%s:%s", i ? "," : "", f->privileges[i]->code,
		       ent_json_enum_short(&ent__v1__privilege_type__descriptor,
					   f->privileges[i]->value_type));
	if (!f->n_privileges)
		fputc('-', stdout);
	fputc('\n', stdout);
}

static void print_grants(const ProtobufCMessage *m)
{
	const Ent__V1__EntitlementsResponse *r = (const Ent__V1__EntitlementsResponse *)m;
	printf("%s%s%s%s, %zu grant(s), sequence %" PRIu64 "\n", r->code, r->name[0] ? " (" : "",
	       r->name, r->name[0] ? ")" : "", r->n_entitlements, r->sequence);
	if (!r->n_entitlements)
		return;
	printf("%-28s %-7s %-16s %-11s %-20s %s\n", "FEATURE", "ENABLED", "LIMIT", "PERIOD",
	       "STATIC", "PRIVILEGES");
	for (size_t i = 0; i < r->n_entitlements; i++) {
		const Ent__V1__Grant *g = r->entitlements[i];
		bool enabled = g->enabled ? g->enabled->value : true;
		printf("%-28s %-7s ", g->feature_code, ent_client_ctl_yesno(enabled));
		char limit[40];
		if (g->unlimited)
			snprintf(limit, sizeof(limit), "unlimited");
		else if (g->usage_limit || g->is_soft_limit)
			snprintf(limit, sizeof(limit), "%" PRId64 "%s", g->usage_limit,
				 g->is_soft_limit ? " soft" : "");
		else
			snprintf(limit, sizeof(limit), "-");
		printf("%-16s %-11s ", limit,
		       g->usage_reset_period
			       ? ent_json_enum_short(&ent__v1__reset_period__descriptor,
						     g->usage_reset_period)
			       : "-");
		char statics[256] = "";
		size_t n = 0;
		for (size_t k = 0; k < g->n_static_values && n < sizeof(statics); k++)
			n += (size_t)snprintf(statics + n, sizeof(statics) - n, "%s%s",
					      k ? "," : "", g->static_values[k]);
		printf("%-20s ", statics[0] ? statics : "-");
		ent_client_ctl_print_privileges(g->privileges, g->n_privileges);
		fputc('\n', stdout);
	}
}

static void print_override_row(const Ent__V1__CustomerOverride *o)
{
	char t1[40], t2[40];
	char value[64] = "-";
	if (o->value && o->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_BOOL_VALUE)
		snprintf(value, sizeof(value), "%s", o->value->bool_value ? "true" : "false");
	else if (o->value && o->value->kind_case == ENT__V1__OVERRIDE_VALUE__KIND_NUMBER_VALUE)
		snprintf(value, sizeof(value), "%.17g", o->value->number_value);
	else if (o->unlimited)
		snprintf(value, sizeof(value), "unlimited");
	char qty[48] = "-";
	if (o->quantity)
		snprintf(qty, sizeof(qty), "%" PRId64, o->quantity->value);
	printf("%-20s %-24s %-10s %-8s %8" PRId64 " %-24s %-24s %s\n", o->customer_id,
	       o->feature_code, value, qty, o->quantity_used,
	       ent_client_ctl_fmt_time(o->active_from, t1, sizeof(t1)),
	       ent_client_ctl_fmt_time(o->expires_at, t2, sizeof(t2)), o->reason);
}

static void print_override_header(void)
{
	printf("%-20s %-24s %-10s %-8s %8s %-24s %-24s %s\n", "CUSTOMER", "FEATURE", "VALUE",
	       "QUANTITY", "USED", "ACTIVE_FROM", "EXPIRES_AT", "REASON");
}

static void print_override_list(const ProtobufCMessage *m)
{
	const Ent__V1__ListCustomerEntitlementsResponse *r =
		(const Ent__V1__ListCustomerEntitlementsResponse *)m;
	print_override_header();
	for (size_t i = 0; i < r->n_entitlements; i++)
		print_override_row(r->entitlements[i]);
}

static int cmd_feature(struct admin_ctx *x, const char *sub)
{
	if (!strcmp(sub, "upsert")) {
		if (x->argc != 1)
			return admin_usage_error("%s", "feature upsert BODY");
		json_t *b = load_body(x->argv[0]);
		if (!b)
			return ENT_CTL_EXIT_USAGE;
		struct ent_err derr = {0};
		int r = try_document(x, "features", NULL, b, false, &derr);
		if (r >= 0) {
			json_decref(b);
			return r;
		}
		json_t *req = json_pack("{s:o}", "feature", b);
		return admin_call_json(x, ENT_CTL_SVC_ADMIN "UpsertFeature", req,
				       &ent__v1__upsert_feature_request__descriptor,
				       &ent__v1__feature_response__descriptor, NULL, derr.msg);
	}
	if (!strcmp(sub, "get") || !strcmp(sub, "delete")) {
		if (x->argc != 1)
			return admin_usage_error("feature %s CODE", sub);
		if (!strcmp(sub, "get")) {
			Ent__V1__GetFeatureRequest req = ENT__V1__GET_FEATURE_REQUEST__INIT;
			req.code = x->argv[0];
			return admin_call(x, ENT_CTL_SVC_ADMIN "GetFeature", &req.base,
					  &ent__v1__feature_response__descriptor, NULL);
		}
		Ent__V1__DeleteFeatureRequest req = ENT__V1__DELETE_FEATURE_REQUEST__INIT;
		req.code = x->argv[0];
		return admin_call(x, ENT_CTL_SVC_ADMIN "DeleteFeature", &req.base,
				  &ent__v1__delete_response__descriptor, NULL);
	}
	if (!strcmp(sub, "list")) {
		if (x->argc != 0)
			return admin_usage_error("%s", "feature list takes no arguments");
		Ent__V1__ListFeaturesRequest req = ENT__V1__LIST_FEATURES_REQUEST__INIT;
		req.page_size = (uint32_t)x->page_size;
		req.page_token = (char *)(x->page_token ? x->page_token : "");
		bool all = !x->page_token;
		json_t *acc = x->co.json ? json_array() : NULL;
		char *token = NULL;
		int r = 0;
		if (!x->co.json)
			printf("%-28s %-8s %-28s %s\n", "CODE", "TYPE", "NAME", "PRIVILEGES");
		/* Follow next_page_token to the end unless the caller asked for one page. */
		for (;;) {
			ProtobufCMessage *m;
			r = ent_client_ctl_call(x->cl, &x->co, ENT_CTL_SVC_ADMIN "ListFeatures",
						&req.base,
						&ent__v1__list_features_response__descriptor, &m);
			if (r)
				break;
			Ent__V1__ListFeaturesResponse *resp = (Ent__V1__ListFeaturesResponse *)m;
			for (size_t i = 0; i < resp->n_features; i++) {
				if (acc)
					json_array_append_new(acc,
							      ent_json_pbjson_encode(
								      &resp->features[i]->base, 0));
				else
					print_feature_row(resp->features[i]);
			}
			free(token);
			token = resp->next_page_token[0] ? strdup(resp->next_page_token) : NULL;
			if (!all && !x->co.json && token)
				printf("next page: --page-token %s\n", token);
			protobuf_c_message_free_unpacked(m, NULL);
			if (!all || !token)
				break;
			req.page_token = token;
		}
		if (acc && !r) {
			json_t *out = json_pack("{s:o}", "features", acc);
			if (!all && token)
				json_object_set_new(out, "next_page_token", json_string(token));
			ent_client_ctl_print_json(out);
			json_decref(out);
		} else {
			json_decref(acc);
		}
		free(token);
		return r;
	}
	return admin_usage_error("unknown feature command '%s'", sub);
}

/* plan/addon set|patch|get|delete */
static int cmd_grants(struct admin_ctx *x, const char *kind, const char *sub)
{
	bool plan = !strcmp(kind, "plan");
	char method[128];
	const char *verb;
	if (!strcmp(sub, "set"))
		verb = "Set";
	else if (!strcmp(sub, "patch"))
		verb = "Patch";
	else if (!strcmp(sub, "get"))
		verb = "Get";
	else if (!strcmp(sub, "delete"))
		verb = "Delete";
	else
		return admin_usage_error("unknown command '%s'", sub);
	snprintf(method, sizeof(method), ENT_CTL_SVC_ADMIN "%s%sEntitlements", verb,
		 plan ? "Plan" : "Addon");

	if (*verb == 'G' || *verb == 'D') {
		if (x->argc != 1)
			return admin_usage_error("expected %s CODE", kind);
		Ent__V1__GetEntitlementsRequest req = ENT__V1__GET_ENTITLEMENTS_REQUEST__INIT;
		req.code = x->argv[0];
		return admin_call(x, method, &req.base,
				  *verb == 'G' ? &ent__v1__entitlements_response__descriptor
					       : &ent__v1__delete_response__descriptor,
				  *verb == 'G' ? print_grants : NULL);
	}
	if (x->argc != 2)
		return admin_usage_error("expected %s CODE BODY", kind);
	json_t *b = load_body(x->argv[1]);
	if (!b)
		return ENT_CTL_EXIT_USAGE;
	struct ent_err derr = {0};
	json_t *bcode = json_object_get(b, "code");
	if (json_is_object(b) &&
	    (!bcode || (json_is_string(bcode) && !strcmp(json_string_value(bcode), x->argv[0])))) {
		/* The document keys plans by code: the body itself has none. */
		json_t *copy = json_copy(b);
		json_object_del(copy, "code");
		int r = try_document(x, plan ? "plans" : "addons", x->argv[0], copy, *verb == 'P',
				     &derr);
		json_decref(copy);
		if (r >= 0) {
			json_decref(b);
			return r;
		}
	}
	/* Proto3 JSON: a bare list is the grants; an object carries name and entitlements. */
	json_t *req;
	if (json_is_array(b)) {
		req = json_pack("{s:o}", "entitlements", b);
	} else if (json_is_object(b)) {
		req = b;
	} else {
		json_decref(b);
		return admin_usage_error("%s", "BODY must be an object or a list of grants");
	}
	json_t *code = json_object_get(req, "code");
	if (code && (!json_is_string(code) || strcmp(json_string_value(code), x->argv[0]))) {
		json_decref(req);
		return admin_usage_error("body code differs from CODE '%s'", x->argv[0]);
	}
	json_object_set_new(req, "code", json_string(x->argv[0]));
	return admin_call_json(x, method, req, &ent__v1__set_entitlements_request__descriptor,
			       &ent__v1__entitlements_response__descriptor, print_grants, derr.msg);
}

static int cmd_subscription(struct admin_ctx *x, const char *sub)
{
	if (!strcmp(sub, "upsert")) {
		if (x->argc != 1)
			return admin_usage_error("%s", "subscription upsert BODY");
		json_t *b = load_body(x->argv[0]);
		if (!b)
			return ENT_CTL_EXIT_USAGE;
		struct ent_err derr = {0};
		int r = try_document(x, "subscriptions", NULL, b, false, &derr);
		if (r >= 0) {
			json_decref(b);
			return r;
		}
		return admin_call_json(x, ENT_CTL_SVC_ADMIN "UpsertSubscription",
				       json_pack("{s:o}", "subscription", b),
				       &ent__v1__upsert_subscription_request__descriptor,
				       &ent__v1__subscription_response__descriptor, NULL, derr.msg);
	}
	if (!strcmp(sub, "cancel")) {
		if (x->argc != 2)
			return admin_usage_error("%s",
						 "subscription cancel CUSTOMER SUBSCRIPTION_ID");
		Ent__V1__CancelSubscriptionRequest req = ENT__V1__CANCEL_SUBSCRIPTION_REQUEST__INIT;
		req.customer_id = x->argv[0];
		req.subscription_id = x->argv[1];
		req.at = x->at_set ? x->at : 0;
		return admin_call(x, ENT_CTL_SVC_ADMIN "CancelSubscription", &req.base,
				  &ent__v1__subscription_response__descriptor, NULL);
	}
	return admin_usage_error("unknown subscription command '%s'", sub);
}

/* Hyperline's `"value": true | 12` is OverrideValue's oneof: rewrite it in place. */
static int sugar_override_value(json_t *body)
{
	json_t *v = json_object_get(body, "value");
	if (!v || json_is_object(v) || json_is_null(v))
		return 0;
	json_t *nv;
	if (json_is_boolean(v))
		nv = json_pack("{s:b}", "bool_value", json_is_true(v));
	else if (json_is_number(v))
		nv = json_pack("{s:f}", "number_value", json_number_value(v));
	else
		return -1;
	json_object_set_new(body, "value", nv);
	return 0;
}

static int cmd_override(struct admin_ctx *x, const char *sub)
{
	if (!strcmp(sub, "set") || !strcmp(sub, "update")) {
		bool set = !strcmp(sub, "set");
		if (x->argc != 3)
			return admin_usage_error("expected override %s CUSTOMER FEATURE BODY", sub);
		json_t *b = load_body(x->argv[2]);
		if (!b)
			return ENT_CTL_EXIT_USAGE;
		if (set && (json_is_boolean(b) || json_is_number(b)))
			b = json_pack("{s:o}", "value", b);
		if (!json_is_object(b)) {
			json_decref(b);
			return admin_usage_error("%s", "BODY must be a JSON object");
		}
		json_object_set_new(b, "customer_id", json_string(x->argv[0]));
		json_object_set_new(b, "feature_code", json_string(x->argv[1]));
		struct ent_err derr = {0};
		if (set) {
			/* The document's override: Hyperline's value plus Zenskar's quantity. */
			int r = try_document(x, "overrides", NULL, b, false, &derr);
			if (r >= 0) {
				json_decref(b);
				return r;
			}
			if (sugar_override_value(b)) {
				json_decref(b);
				return admin_usage_error("%s",
							 "value must be true, false or a number");
			}
			return admin_call_json(
				x, ENT_CTL_SVC_ADMIN "SetCustomerEntitlement", b,
				&ent__v1__set_customer_entitlement_request__descriptor,
				&ent__v1__customer_entitlement_response__descriptor,
				ent_client_ctl_print_msg_tree, derr.msg);
		}
		/* Zenskar's PATCH body is the request itself: only the fields given change. */
		return admin_call_json(x, ENT_CTL_SVC_ADMIN "UpdateCustomerEntitlement", b,
				       &ent__v1__update_customer_entitlement_request__descriptor,
				       &ent__v1__customer_entitlement_response__descriptor,
				       ent_client_ctl_print_msg_tree, NULL);
	}
	if (!strcmp(sub, "delete")) {
		if (x->argc != 2)
			return admin_usage_error("%s", "override delete CUSTOMER FEATURE");
		Ent__V1__DeleteCustomerEntitlementRequest req =
			ENT__V1__DELETE_CUSTOMER_ENTITLEMENT_REQUEST__INIT;
		req.customer_id = x->argv[0];
		req.feature_code = x->argv[1];
		return admin_call(x, ENT_CTL_SVC_ADMIN "DeleteCustomerEntitlement", &req.base,
				  &ent__v1__delete_response__descriptor, NULL);
	}
	if (!strcmp(sub, "list")) {
		if (x->argc != 1)
			return admin_usage_error("%s", "override list CUSTOMER");
		Ent__V1__ListCustomerEntitlementsRequest req =
			ENT__V1__LIST_CUSTOMER_ENTITLEMENTS_REQUEST__INIT;
		req.customer_id = x->argv[0];
		return admin_call(x, ENT_CTL_SVC_ADMIN "ListCustomerEntitlements", &req.base,
				  &ent__v1__list_customer_entitlements_response__descriptor,
				  print_override_list);
	}
	return admin_usage_error("unknown override command '%s'", sub);
}

static int cmd_import(struct admin_ctx *x)
{
	if (x->argc != 1)
		return admin_usage_error("%s", "import FILE [--replace]");
	FILE *f = strcmp(x->argv[0], "-") ? fopen(x->argv[0], "rb") : stdin;
	if (!f) {
		fprintf(stderr, "entctl: cannot read '%s': %s\n", x->argv[0], strerror(errno));
		return ENT_CTL_EXIT_RPC;
	}
	size_t len;
	char *text = read_stream(f, &len);
	if (f != stdin)
		fclose(f);
	if (!text) {
		fprintf(stderr, "entctl: cannot read '%s'\n", x->argv[0]);
		return ENT_CTL_EXIT_RPC;
	}
	Ent__V1__ImportRequest req = ENT__V1__IMPORT_REQUEST__INIT;
	req.json = text;
	req.replace = x->replace;
	int r = admin_call(x, ENT_CTL_SVC_ADMIN "Import", &req.base,
			   &ent__v1__import_response__descriptor, NULL);
	free(text);
	return r;
}

static int cmd_export(struct admin_ctx *x)
{
	if (x->argc > 1)
		return admin_usage_error("%s", "export [FILE]");
	Ent__V1__ExportRequest req = ENT__V1__EXPORT_REQUEST__INIT;
	ProtobufCMessage *m;
	int r = ent_client_ctl_call(x->cl, &x->co, ENT_CTL_SVC_ADMIN "Export", &req.base,
				    &ent__v1__export_response__descriptor, &m);
	if (r)
		return r;
	const Ent__V1__ExportResponse *resp = (const Ent__V1__ExportResponse *)m;
	FILE *out = stdout;
	if (x->argc == 1 && strcmp(x->argv[0], "-")) {
		out = fopen(x->argv[0], "wb");
		if (!out) {
			fprintf(stderr, "entctl: cannot write '%s': %s\n", x->argv[0],
				strerror(errno));
			protobuf_c_message_free_unpacked(m, NULL);
			return ENT_CTL_EXIT_RPC;
		}
	}
	/* The document is JSON already: --json changes nothing but is accepted. */
	size_t n = strlen(resp->json);
	bool ok = fwrite(resp->json, 1, n, out) == n;
	if (n && resp->json[n - 1] != '\n')
		ok = ok && fputc('\n', out) != EOF;
	if (out != stdout) {
		ok = fclose(out) == 0 && ok;
		if (ok)
			fprintf(stderr, "entctl: exported sequence %" PRIu64 " to %s\n",
				resp->sequence, x->argv[0]);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	if (!ok) {
		fprintf(stderr, "entctl: write failed: %s\n", strerror(errno));
		return ENT_CTL_EXIT_RPC;
	}
	return 0;
}

int ent_client_ctl_admin(int argc, char **argv)
{
	static const struct option longopts[] = {
		ENT_CTL_COMMON_LONG_OPTS,
		{"at", required_argument, NULL, ENT_CTL_OPT_AT},
		{"replace", no_argument, NULL, ENT_CTL_OPT_REPLACE},
		{"page-size", required_argument, NULL, ENT_CTL_OPT_PAGE_SIZE},
		{"page-token", required_argument, NULL, ENT_CTL_OPT_PAGE_TOKEN},
		{NULL, 0, NULL, 0},
	};
	struct admin_ctx x = {0};
	int c, r;

	ent_client_ctl_common_init(&x.co, "ENTD_ADMIN_TOKEN");
	optind = 0;
	/* Options may come anywhere (GNU permutation): "admin plan get pro --json" works. */
	while ((c = ent_client_ctl_getopt(argc, argv, longopts, &x.co, admin_usage)) != -1) {
		switch (c) {
		case ENT_CTL_OPT_BAD:
			return ENT_CTL_EXIT_USAGE;
		case ENT_CTL_OPT_AT:
			if (ent_json_parse_time(optarg, &x.at))
				return admin_usage_error("bad --at '%s'", optarg);
			x.at_set = true;
			break;
		case ENT_CTL_OPT_REPLACE:
			x.replace = true;
			break;
		case ENT_CTL_OPT_PAGE_SIZE:
			if (ent_client_ctl_parse_i64(optarg, &x.page_size) || x.page_size < 0 ||
			    x.page_size > UINT32_MAX)
				return admin_usage_error("bad --page-size '%s'", optarg);
			break;
		case ENT_CTL_OPT_PAGE_TOKEN:
			x.page_token = optarg;
			break;
		case ENT_CTL_OPT_HELP:
			fputs(admin_help, stdout);
			return 0;
		default:
			return admin_usage_error("%s", "unknown option");
		}
	}
	int n = argc - optind;
	char **a = argv + optind;
	if (n < 1)
		return admin_usage_error("%s", "expected a COMMAND");
	if (!strcmp(a[0], "help")) {
		fputs(admin_help, stdout);
		return 0;
	}
	const char *cmd = a[0];
	bool has_sub = !strcmp(cmd, "feature") || !strcmp(cmd, "plan") || !strcmp(cmd, "addon") ||
		       !strcmp(cmd, "subscription") || !strcmp(cmd, "override");
	if (!has_sub && strcmp(cmd, "import") && strcmp(cmd, "export") && strcmp(cmd, "status"))
		return admin_usage_error("unknown admin command '%s'", cmd);
	if (has_sub && n < 2)
		return admin_usage_error("'%s' needs a subcommand", cmd);
	const char *sub = has_sub ? a[1] : NULL;
	x.argc = n - (has_sub ? 2 : 1);
	x.argv = a + (has_sub ? 2 : 1);

	if ((r = ent_client_ctl_open_client(&x.co, &x.cl)))
		return r;
	if (!strcmp(cmd, "feature"))
		r = cmd_feature(&x, sub);
	else if (!strcmp(cmd, "plan") || !strcmp(cmd, "addon"))
		r = cmd_grants(&x, cmd, sub);
	else if (!strcmp(cmd, "subscription"))
		r = cmd_subscription(&x, sub);
	else if (!strcmp(cmd, "override"))
		r = cmd_override(&x, sub);
	else if (!strcmp(cmd, "import"))
		r = cmd_import(&x);
	else if (!strcmp(cmd, "export"))
		r = cmd_export(&x);
	else if (x.argc)
		r = admin_usage_error("%s", "status takes no arguments");
	else {
		Ent__V1__GetStatusRequest req = ENT__V1__GET_STATUS_REQUEST__INIT;
		r = admin_call(&x, ENT_CTL_SVC_ADMIN "GetStatus", &req.base,
			       &ent__v1__status_response__descriptor, NULL);
	}
	ent_client_free(x.cl);
	return r;
}
