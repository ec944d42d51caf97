/*
 * entctl's data-plane commands against a running entd: check, get, usage, consume and health
 * (docs/entctl.md). Each parses its options, builds the request from its arguments, makes one
 * call and prints the answer as a table or, with --json, as JSON.
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

/* ---- check ---------------------------------------------------------------------------- */

static const char check_usage[] = "check [-a ADDR] [--json] [--at TIME] [--min-seq N] "
				  "[--token T] [--timeout MS] CUSTOMER FEATURE [QUANTITY]";

/* The limit, used, remaining and period rows of a metered answer. */
static void print_usage_row(const Ent__V1__Usage *u)
{
	char t1[40], t2[40];
	if (!u)
		return;
	printf("%-12s ", "limit");
	ent_client_ctl_print_limit(u->limit, u->unlimited, u->is_soft_limit);
	printf("\n%-12s %" PRId64 "\n", "used", u->used);
	if (u->unlimited)
		printf("%-12s %s\n", "remaining", "unlimited");
	else
		printf("%-12s %" PRId64 "\n", "remaining", u->remaining);
	printf("%-12s %s %s .. %s\n", "period",
	       ent_json_enum_short(&ent__v1__reset_period__descriptor, u->reset_period),
	       ent_client_ctl_fmt_time(u->period_start, t1, sizeof(t1)),
	       ent_client_ctl_fmt_time(u->period_end, t2, sizeof(t2)));
}

static void print_check(const ProtobufCMessage *m)
{
	const Ent__V1__CheckEntitlementResponse *r = (const Ent__V1__CheckEntitlementResponse *)m;
	char t1[40];
	printf("%-12s %s\n", "allowed", ent_client_ctl_yesno(r->allowed));
	printf("%-12s %s\n", "reason",
	       ent_json_enum_short(&ent__v1__reason__descriptor, r->reason));
	printf("%-12s %s\n", "type",
	       ent_json_enum_short(&ent__v1__feature_type__descriptor, r->feature_type));
	printf("%-12s ", "value");
	switch (r->value_case) {
	case ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_BOOL_VALUE:
		fputs(r->bool_value ? "true" : "false", stdout);
		break;
	case ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_NUMBER_VALUE:
		printf("%.17g", r->number_value);
		break;
	case ENT__V1__CHECK_ENTITLEMENT_RESPONSE__VALUE_STRING_VALUE:
		fputs(r->string_value, stdout);
		break;
	default:
		fputc('-', stdout);
	}
	fputc('\n', stdout);
	print_usage_row(r->usage);
	printf("%-12s ", "static");
	ent_client_ctl_print_strings(r->static_values, r->n_static_values);
	printf("\n%-12s ", "privileges");
	ent_client_ctl_print_privileges(r->privileges, r->n_privileges);
	printf("\n%-12s ", "override");
	if (r->override_applied) {
		printf("yes, reason \"%s\", expires %s", r->override_reason,
		       r->override_expires_at
			       ? ent_client_ctl_fmt_time(r->override_expires_at, t1, sizeof(t1))
			       : "never");
	} else {
		fputs("no", stdout);
	}
	printf("\n%-12s %s\n", "next change",
	       ent_client_ctl_fmt_time(r->next_change_at, t1, sizeof(t1)));
	printf("%-12s %" PRIu64 "\n", "sequence", r->sequence);
	/* The fields above; any other (a newer proto) still shows. */
	static const char *const shown[] = {
		"allowed",	    "reason",	       "feature_type",
		"bool_value",	    "number_value",    "string_value",
		"static_values",    "privileges",      "usage",
		"override_applied", "override_reason", "override_expires_at",
		"next_change_at",   "sequence",	       NULL};
	ent_client_ctl_print_rest(m, shown);
}

/*
 * Options of the read commands (check, get): the common ones plus --at and --min-seq.
 * \return -1 to go on with the operands at argv[optind..], or the exit status to return now
 * (0 after --help, ENT_CTL_EXIT_USAGE on a bad option).
 */
static int read_command_opts(int argc, char **argv, const char *usage, struct ent_ctl_common *co,
			     int64_t *at, uint64_t *min_seq)
{
	static const struct option longopts[] = {
		ENT_CTL_COMMON_LONG_OPTS,
		{"at", required_argument, NULL, ENT_CTL_OPT_AT},
		{"min-seq", required_argument, NULL, ENT_CTL_OPT_MIN_SEQ},
		{NULL, 0, NULL, 0},
	};
	int64_t v;
	int c;

	ent_client_ctl_common_init(co, "ENTD_TOKEN");
	optind = 0;
	while ((c = ent_client_ctl_getopt(argc, argv, longopts, co, usage)) != -1) {
		switch (c) {
		case ENT_CTL_OPT_BAD:
			return ENT_CTL_EXIT_USAGE;
		case ENT_CTL_OPT_AT:
			if (ent_json_parse_time(optarg, at))
				return ent_client_ctl_usage_error(usage, "bad --at '%s'", optarg);
			break;
		case ENT_CTL_OPT_MIN_SEQ:
			if (ent_client_ctl_parse_i64(optarg, &v) || v < 0)
				return ent_client_ctl_usage_error(usage, "bad --min-seq '%s'",
								  optarg);
			*min_seq = (uint64_t)v;
			break;
		case ENT_CTL_OPT_HELP:
			printf("usage: entctl %s\n", usage);
			return 0;
		default:
			return ent_client_ctl_usage_error(usage, "%s", "unknown option");
		}
	}
	return -1;
}

int ent_client_ctl_check(int argc, char **argv)
{
	Ent__V1__CheckEntitlementRequest req = ENT__V1__CHECK_ENTITLEMENT_REQUEST__INIT;
	struct ent_ctl_common co;
	int r = read_command_opts(argc, argv, check_usage, &co, &req.at, &req.min_sequence);
	if (r >= 0)
		return r;
	if (argc - optind < 2 || argc - optind > 3)
		return ent_client_ctl_usage_error(check_usage, "%s",
						  "expected CUSTOMER FEATURE [QUANTITY]");
	req.customer_id = argv[optind];
	req.feature_code = argv[optind + 1];
	if (argc - optind == 3 && ent_client_ctl_parse_i64(argv[optind + 2], &req.quantity))
		return ent_client_ctl_usage_error(check_usage, "bad QUANTITY '%s'",
						  argv[optind + 2]);

	return ent_client_ctl_call_show(&co, ENT_CTL_SVC_CHECK "CheckEntitlement", &req.base,
					&ent__v1__check_entitlement_response__descriptor,
					print_check);
}

/* ---- get ------------------------------------------------------------------------------ */

static const char get_usage[] = "get [-a ADDR] [--json] [--at TIME] [--min-seq N] [--token T] "
				"[--timeout MS] CUSTOMER [FEATURE...]";

static void print_sources(Ent__V1__EntitlementSource **s, size_t n, bool metered)
{
	char t1[40], t2[40];
	if (!n)
		return;
	printf("    %-12s %-20s %-20s %5s %-7s %-14s %-8s %-6s %s\n", "SOURCE", "ID",
	       "SUBSCRIPTION", "QTY", "ENABLED", "LIMIT", "PERIOD", "ACTIVE", "WINDOW");
	for (size_t i = 0; i < n; i++) {
		char limit[40] = "-";
		const char *period = "-";
		if (metered) {
			if (s[i]->unlimited)
				snprintf(limit, sizeof(limit), "unlimited");
			else
				snprintf(limit, sizeof(limit), "%" PRId64 "%s", s[i]->usage_limit,
					 s[i]->is_soft_limit ? " soft" : "");
			period = ent_json_enum_short(&ent__v1__reset_period__descriptor,
						     s[i]->usage_reset_period);
		}
		printf("    %-12s %-20s %-20s %5" PRId64 " %-7s %-14s %-8s %-6s %s .. %s",
		       ent_json_enum_short(&ent__v1__source_type__descriptor, s[i]->entity_type),
		       s[i]->entity_id, s[i]->subscription_id[0] ? s[i]->subscription_id : "-",
		       s[i]->quantity, ent_client_ctl_yesno(s[i]->is_enabled), limit, period,
		       ent_client_ctl_yesno(s[i]->active),
		       ent_client_ctl_fmt_time(s[i]->active_from, t1, sizeof(t1)),
		       ent_client_ctl_fmt_time(s[i]->expires_at, t2, sizeof(t2)));
		if (s[i]->reason[0])
			printf("  \"%s\"", s[i]->reason);
		fputc('\n', stdout);
		if (s[i]->n_static_values || s[i]->n_privileges) {
			printf("      values: ");
			ent_client_ctl_print_strings(s[i]->static_values, s[i]->n_static_values);
			printf("; privileges: ");
			ent_client_ctl_print_privileges(s[i]->privileges, s[i]->n_privileges);
			fputc('\n', stdout);
		}
	}
}

static void print_get(const ProtobufCMessage *m)
{
	const Ent__V1__GetCustomerEntitlementsResponse *r =
		(const Ent__V1__GetCustomerEntitlementsResponse *)m;
	char t1[40], t2[40];
	printf("customer %s, %zu feature(s), sequence %" PRIu64 "\n\n", r->customer_id,
	       r->n_features, r->sequence);
	printf("%-24s %-8s %-7s %-22s %-14s %10s %10s %s\n", "FEATURE", "TYPE", "ENABLED", "REASON",
	       "LIMIT", "USED", "REMAINING", "PERIOD");
	for (size_t i = 0; i < r->n_features; i++) {
		const Ent__V1__AggregatedFeature *f = r->features[i];
		const Ent__V1__AggregatedEntitlement *e = f->entitlement;
		const char *code = f->feature ? f->feature->code : "?";
		int type = f->feature ? (int)f->feature->type : 0;
		if (!e) {
			printf("%-24s %-8s (no entitlement)\n", code,
			       ent_json_enum_short(&ent__v1__feature_type__descriptor, type));
			continue;
		}
		char limit[40], used[24] = "-", remaining[24] = "-";
		if (type != ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED)
			snprintf(limit, sizeof(limit), "-");
		else if (e->unlimited)
			snprintf(limit, sizeof(limit), "unlimited");
		else
			snprintf(limit, sizeof(limit), "%" PRId64 "%s", e->usage_limit,
				 e->is_soft_limit ? " soft" : "");
		if (e->usage) {
			snprintf(used, sizeof(used), "%" PRId64, e->usage->used);
			if (e->usage->unlimited)
				snprintf(remaining, sizeof(remaining), "-");
			else
				snprintf(remaining, sizeof(remaining), "%" PRId64,
					 e->usage->remaining);
		}
		printf("%-24s %-8s %-7s %-22s %-14s %10s %10s %s\n", code,
		       ent_json_enum_short(&ent__v1__feature_type__descriptor, type),
		       ent_client_ctl_yesno(e->is_enabled),
		       ent_json_enum_short(&ent__v1__reason__descriptor, e->reason), limit, used,
		       remaining,
		       type == ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED
			       ? ent_json_enum_short(&ent__v1__reset_period__descriptor,
						     e->usage_reset_period)
			       : "-");
		if (e->n_static_values || e->n_privileges) {
			printf("    values: ");
			ent_client_ctl_print_strings(e->static_values, e->n_static_values);
			printf("; privileges: ");
			ent_client_ctl_print_privileges(e->privileges, e->n_privileges);
			fputc('\n', stdout);
		}
		if (e->override_reason[0] || e->override_expires_at)
			printf("    override: \"%s\", expires %s\n", e->override_reason,
			       e->override_expires_at
				       ? ent_client_ctl_fmt_time(e->override_expires_at, t1,
								 sizeof(t1))
				       : "never");
		if (e->next_change_at)
			printf("    next change: %s\n",
			       ent_client_ctl_fmt_time(e->next_change_at, t2, sizeof(t2)));
		print_sources(f->sources, f->n_sources,
			      type == ENT__V1__FEATURE_TYPE__FEATURE_TYPE_METERED);
	}
}

int ent_client_ctl_get(int argc, char **argv)
{
	Ent__V1__GetCustomerEntitlementsRequest req =
		ENT__V1__GET_CUSTOMER_ENTITLEMENTS_REQUEST__INIT;
	struct ent_ctl_common co;
	int r = read_command_opts(argc, argv, get_usage, &co, &req.at, &req.min_sequence);
	if (r >= 0)
		return r;
	if (argc - optind < 1)
		return ent_client_ctl_usage_error(get_usage, "%s",
						  "expected CUSTOMER [FEATURE...]");
	req.customer_id = argv[optind];
	req.n_feature_codes = (size_t)(argc - optind - 1);
	req.feature_codes = argv + optind + 1;

	return ent_client_ctl_call_show(&co, ENT_CTL_SVC_CHECK "GetCustomerEntitlements", &req.base,
					&ent__v1__get_customer_entitlements_response__descriptor,
					print_get);
}

/* ---- usage and consume ----------------------------------------------------------------- */

static const char usage_usage[] = "usage [-a ADDR] [--json] [--at TIME] [--token T] [--timeout MS] "
				  "--key KEY CUSTOMER FEATURE QUANTITY";
static const char consume_usage[] = "consume [-a ADDR] [--json] [--key KEY] [--token T] "
				    "[--timeout MS] CUSTOMER FEATURE [QUANTITY]";

/* usage: ReportUsage (usage that already happened) and consume: ConsumeEntitlement. */
static int usage_or_consume(int argc, char **argv, bool consume)
{
	static const struct option longopts[] = {
		ENT_CTL_COMMON_LONG_OPTS,
		{"at", required_argument, NULL, ENT_CTL_OPT_AT},
		{"key", required_argument, NULL, ENT_CTL_OPT_KEY},
		{NULL, 0, NULL, 0},
	};
	const char *use = consume ? consume_usage : usage_usage;
	const char *key = NULL;
	int64_t at = 0, qty = 0;
	struct ent_ctl_common co;
	int c, r;

	ent_client_ctl_common_init(&co, "ENTD_TOKEN");
	optind = 0;
	while ((c = ent_client_ctl_getopt(argc, argv, longopts, &co, use)) != -1) {
		switch (c) {
		case ENT_CTL_OPT_BAD:
			return ENT_CTL_EXIT_USAGE;
		case ENT_CTL_OPT_AT:
			if (consume || ent_json_parse_time(optarg, &at))
				return ent_client_ctl_usage_error(use, "bad --at '%s'", optarg);
			break;
		case ENT_CTL_OPT_KEY:
			key = optarg;
			break;
		case ENT_CTL_OPT_HELP:
			printf("usage: entctl %s\n", use);
			return 0;
		default:
			return ent_client_ctl_usage_error(use, "%s", "unknown option");
		}
	}
	int n = argc - optind;
	if (n < 2 || n > 3 || (!consume && n != 3))
		return ent_client_ctl_usage_error(use, "%s",
						  consume ? "expected CUSTOMER FEATURE [QUANTITY]"
							  : "expected CUSTOMER FEATURE QUANTITY");
	if (n == 3 && ent_client_ctl_parse_i64(argv[optind + 2], &qty))
		return ent_client_ctl_usage_error(use, "bad QUANTITY '%s'", argv[optind + 2]);
	if (!consume && !key)
		return ent_client_ctl_usage_error(
			use, "%s", "--key is required (reports are idempotent by key)");

	ent_client *cl;
	ProtobufCMessage *resp;
	if ((r = ent_client_ctl_open_client(&co, &cl)))
		return r;
	if (consume) {
		Ent__V1__ConsumeEntitlementRequest req = ENT__V1__CONSUME_ENTITLEMENT_REQUEST__INIT;
		req.customer_id = argv[optind];
		req.feature_code = argv[optind + 1];
		req.quantity = qty;
		req.idempotency_key = (char *)(key ? key : "");
		r = ent_client_ctl_call(cl, &co, ENT_CTL_SVC_CHECK "ConsumeEntitlement", &req.base,
					&ent__v1__consume_entitlement_response__descriptor, &resp);
	} else {
		Ent__V1__ReportUsageRequest req = ENT__V1__REPORT_USAGE_REQUEST__INIT;
		req.customer_id = argv[optind];
		req.feature_code = argv[optind + 1];
		req.quantity = qty;
		req.timestamp = at;
		req.idempotency_key = (char *)key;
		r = ent_client_ctl_call(cl, &co, ENT_CTL_SVC_CHECK "ReportUsage", &req.base,
					&ent__v1__report_usage_response__descriptor, &resp);
	}
	if (!r) {
		if (co.json) {
			ent_client_ctl_print_msg_json(resp);
		} else if (consume) {
			const Ent__V1__ConsumeEntitlementResponse *cr =
				(const Ent__V1__ConsumeEntitlementResponse *)resp;
			printf("%-12s %s\n", "allowed", ent_client_ctl_yesno(cr->allowed));
			printf("%-12s %s\n", "reason",
			       ent_json_enum_short(&ent__v1__reason__descriptor, cr->reason));
			printf("%-12s %s\n", "duplicate", ent_client_ctl_yesno(cr->duplicate));
			print_usage_row(cr->usage);
			printf("%-12s %" PRIu64 "\n", "sequence", cr->sequence);
		} else {
			const Ent__V1__ReportUsageResponse *ur =
				(const Ent__V1__ReportUsageResponse *)resp;
			printf("%-12s %s\n", "duplicate", ent_client_ctl_yesno(ur->duplicate));
			print_usage_row(ur->usage);
			printf("%-12s %" PRIu64 "\n", "sequence", ur->sequence);
		}
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	ent_client_free(cl);
	return r;
}

int ent_client_ctl_usage(int argc, char **argv)
{
	/* `usage import` and `usage report` live in ctl_usage.c; without a verb it reports one
	   record as before. */
	if (argc > 1 && !strcmp(argv[1], "import"))
		return ent_client_ctl_usage_import(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "report"))
		return ent_client_ctl_usage_report(argc - 1, argv + 1);
	return usage_or_consume(argc, argv, false);
}

int ent_client_ctl_consume(int argc, char **argv)
{
	return usage_or_consume(argc, argv, true);
}

/* ---- health --------------------------------------------------------------------------- */

static const char health_usage[] =
	"health [-a ADDR] [--json] [--watch] [--wait SECONDS] [--timeout MS] [SERVICE]";

static const char *serving_name(int s)
{
	return ent_json_enum_short(
		&grpc__health__v1__health_check_response__serving_status__descriptor, s);
}

int ent_client_ctl_health(int argc, char **argv)
{
	static const struct option longopts[] = {
		ENT_CTL_COMMON_LONG_OPTS,
		{"wait", required_argument, NULL, ENT_CTL_OPT_WAIT},
		{"watch", no_argument, NULL, ENT_CTL_OPT_WATCH},
		{NULL, 0, NULL, 0},
	};
	struct ent_ctl_common co;
	bool watch = false;
	int64_t wait_s = 0;
	int c, r;

	ent_client_ctl_common_init(&co, "ENTD_TOKEN");
	optind = 0;
	while ((c = ent_client_ctl_getopt(argc, argv, longopts, &co, health_usage)) != -1) {
		switch (c) {
		case ENT_CTL_OPT_BAD:
			return ENT_CTL_EXIT_USAGE;
		case ENT_CTL_OPT_WAIT:
			if (ent_client_ctl_parse_i64(optarg, &wait_s) || wait_s < 0)
				return ent_client_ctl_usage_error(health_usage, "bad --wait '%s'",
								  optarg);
			break;
		case ENT_CTL_OPT_WATCH:
			watch = true;
			break;
		case ENT_CTL_OPT_HELP:
			printf("usage: entctl %s\n", health_usage);
			return 0;
		default:
			return ent_client_ctl_usage_error(health_usage, "%s", "unknown option");
		}
	}
	if (argc - optind > 1)
		return ent_client_ctl_usage_error(health_usage, "%s",
						  "expected at most one SERVICE");
	const char *service = argc - optind == 1 ? argv[optind] : "";

	ent_client *cl;
	if ((r = ent_client_ctl_open_client(&co, &cl)))
		return r;
	/*
	 * --wait polls until SERVING or the time is up: meant for scripts that start entd and
	 * must not race it. Each attempt is bounded by the call timeout.
	 */
	int64_t until = ent_time_now_ms() + wait_s * 1000;
	grpc_status_code st;
	char details[1024];
	int serving;
	for (;;) {
		if (watch)
			r = ent_client_health_watch_first(cl, service, co.timeout_ms, &serving, &st,
							  details, sizeof(details));
		else
			r = ent_client_health_check(cl, service, co.timeout_ms, &serving, &st,
						    details, sizeof(details));
		if ((r == 0 && serving == 1) || ent_time_now_ms() >= until)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	ent_client_free(cl);
	if (r) {
		fprintf(stderr, "entctl: %s: %s\n", ent_client_status_name(st),
			details[0] ? details : ent_err_strerror(r));
		return ENT_CTL_EXIT_RPC;
	}
	if (co.json)
		printf("{\"status\": \"%s\"}\n", serving_name(serving));
	else
		printf("%s\n", serving_name(serving));
	return serving == 1 ? 0 : ENT_CTL_EXIT_RPC;
}
