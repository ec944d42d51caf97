/*
 * entctl usage import FILE and entctl usage report (docs/entctl.md).
 *
 * `import` reads JSON lines, one ReportUsageRequest a line (proto field names, times as Unix
 * ms or RFC 3339), and sends them as BatchReportUsage calls of up to --batch-size records, one
 * call at a time, in file order. Every record's result is mapped back to its line: the summary
 * counts counted / duplicate / not counted / refused and names the lines of each; a refused
 * line also gets its reason. A line that is not JSON or not a record is refused here and never
 * sent. Because every record carries its idempotency key, importing a file again (after a
 * failure half-way, say) counts nothing twice.
 *
 * Exit status: 0 when every line was accepted (counted, duplicate or not counted), 1 when a
 * line was refused or a call failed (the lines not sent are named), 2 for usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "client/ctl.h"
#include "ent/client.h"
#include "ent/store.h"
#include "ent/v1/entitlement.pb-c.h"
#include "json/pbjson.h"

#define DEFAULT_ADDR	   "127.0.0.1:50051"
#define DEFAULT_TIMEOUT_MS 10000
/* An import call carries up to 1000 records and waits for their commit: more room. */
#define IMPORT_TIMEOUT_MS 30000
#define EXIT_FAIL	  1
#define EXIT_USAGE	  2
#define BATCH_PATH	  "/ent.v1.EntitlementService/BatchReportUsage"
#define REPORT_PATH	  "/ent.v1.EntitlementService/ReportUsage"

enum {
	OPT_JSON = 0x100,
	OPT_TOKEN,
	OPT_TIMEOUT,
	OPT_AT,
	OPT_KEY,
	OPT_BATCH,
	OPT_QUIET,
	OPT_HELP,
};

static const char import_use[] = "usage import [-a ADDR] [--json] [--batch-size N] [--quiet] "
				 "[--token T] [--timeout MS] FILE|-";
static const char report_use[] = "usage report [-a ADDR] [--json] [--at TIME] [--token T] "
				 "[--timeout MS] --key KEY CUSTOMER FEATURE QUANTITY";

struct opts {
	const char *addr, *token, *key;
	bool json, quiet;
	int64_t timeout_ms, at;
	long batch;
};

static int usage_error(const char *use, const char *msg, const char *arg)
{
	fprintf(stderr, "entctl: %s%s%s\nusage: entctl %s\n", msg, arg ? " " : "", arg ? arg : "",
		use);
	return EXIT_USAGE;
}

static int parse_opts(int argc, char **argv, const char *use, bool import, struct opts *o)
{
	static const struct option longopts[] = {
		{"addr", required_argument, NULL, 'a'},
		{"json", no_argument, NULL, OPT_JSON},
		{"token", required_argument, NULL, OPT_TOKEN},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"at", required_argument, NULL, OPT_AT},
		{"key", required_argument, NULL, OPT_KEY},
		{"batch-size", required_argument, NULL, OPT_BATCH},
		{"quiet", no_argument, NULL, OPT_QUIET},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *addr = getenv("ENTD_ADDR");
	memset(o, 0, sizeof(*o));
	o->addr = addr && *addr ? addr : DEFAULT_ADDR;
	o->token = getenv("ENTD_TOKEN");
	o->timeout_ms = import ? IMPORT_TIMEOUT_MS : DEFAULT_TIMEOUT_MS;
	o->batch = ENT_MAX_USAGE_BATCH;
	char *end;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "a:", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->addr = optarg;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_TOKEN:
			o->token = optarg;
			break;
		case OPT_TIMEOUT:
			errno = 0;
			o->timeout_ms = strtoll(optarg, &end, 10);
			if (errno || *end || o->timeout_ms <= 0)
				return usage_error(use, "bad --timeout", optarg);
			break;
		case OPT_AT:
			if (import || ent_json_parse_time(optarg, &o->at))
				return usage_error(use, "bad --at", optarg);
			break;
		case OPT_KEY:
			if (import)
				return usage_error(use, "unknown option", "--key");
			o->key = optarg;
			break;
		case OPT_BATCH:
			errno = 0;
			o->batch = strtol(optarg, &end, 10);
			if (!import || errno || *end || o->batch < 1 ||
			    o->batch > ENT_MAX_USAGE_BATCH)
				return usage_error(use, "bad --batch-size (1..1000)", optarg);
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_HELP:
			printf("usage: entctl %s\n", use);
			return -1;
		default:
			return usage_error(use, "unknown option", NULL);
		}
	}
	return 0;
}

static int open_client(const struct opts *o, ent_client **cl)
{
	int rc = ent_client_new(o->addr, o->token, cl);
	if (rc) {
		fprintf(stderr, "entctl: cannot open a channel to '%s': %s\n", o->addr,
			ent_err_strerror(rc));
		return EXIT_FAIL;
	}
	return 0;
}

static void print_json_msg(const ProtobufCMessage *m)
{
	json_t *j = ent_json_pbjson_encode(m, 0);
	if (j) {
		json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		fputc('\n', stdout);
	}
	json_decref(j);
}

/* ---- report ----------------------------------------------------------------------------- */

int ent_client_ctl_usage_report(int argc, char **argv)
{
	struct opts o;
	int r = parse_opts(argc, argv, report_use, false, &o);
	if (r)
		return r < 0 ? 0 : r;
	if (argc - optind != 3)
		return usage_error(report_use, "expected CUSTOMER FEATURE QUANTITY", NULL);
	if (!o.key)
		return usage_error(report_use, "--key is required (reports are idempotent by key)",
				   NULL);
	char *end;
	errno = 0;
	long long q = strtoll(argv[optind + 2], &end, 10);
	if (errno || end == argv[optind + 2] || *end)
		return usage_error(report_use, "bad QUANTITY", argv[optind + 2]);
	Ent__V1__ReportUsageRequest req = ENT__V1__REPORT_USAGE_REQUEST__INIT;
	req.customer_id = argv[optind];
	req.feature_code = argv[optind + 1];
	req.quantity = q;
	req.timestamp = o.at;
	req.idempotency_key = (char *)o.key;
	ent_client *cl;
	if ((r = open_client(&o, &cl)))
		return r;
	ProtobufCMessage *resp;
	grpc_status_code st;
	char details[1024];
	r = ent_client_call(cl, REPORT_PATH, &req.base, &ent__v1__report_usage_response__descriptor,
			    o.timeout_ms, &resp, &st, details, sizeof(details));
	if (r) {
		fprintf(stderr, "entctl: %s: %s\n", ent_client_status_name(st),
			details[0] ? details : ent_err_strerror(r));
		ent_client_free(cl);
		return EXIT_FAIL;
	}
	const Ent__V1__ReportUsageResponse *ur = (const Ent__V1__ReportUsageResponse *)resp;
	if (o.json) {
		print_json_msg(resp);
	} else {
		printf("%-12s %s\n", "duplicate", ur->duplicate ? "yes" : "no");
		if (ur->usage) {
			const Ent__V1__Usage *u = ur->usage;
			if (u->unlimited)
				printf("%-12s unlimited\n", "limit");
			else
				printf("%-12s %" PRId64 "%s\n", "limit", u->limit,
				       u->is_soft_limit ? " (soft)" : "");
			printf("%-12s %" PRId64 "\n", "used", u->used);
			if (!u->unlimited)
				printf("%-12s %" PRId64 "\n", "remaining", u->remaining);
		}
		printf("%-12s %" PRIu64 "\n", "sequence", ur->sequence);
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	ent_client_free(cl);
	return 0;
}

/* ---- import ----------------------------------------------------------------------------- */

/* A growing list of line numbers, printed as ranges ("4, 6-8"). */
struct lines {
	uint64_t *v;
	size_t n, cap;
};

static int lines_add(struct lines *l, uint64_t line)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = line;
	return 0;
}

static void lines_print(FILE *f, const struct lines *l)
{
	for (size_t i = 0; i < l->n;) {
		size_t j = i;
		while (j + 1 < l->n && l->v[j + 1] == l->v[j] + 1)
			j++;
		fprintf(f, "%s%" PRIu64, i ? ", " : "", l->v[i]);
		if (j > i)
			fprintf(f, "-%" PRIu64, l->v[j]);
		i = j + 1;
	}
}

static json_t *lines_json(const struct lines *l)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < l->n; i++)
		json_array_append_new(a, json_integer((json_int_t)l->v[i]));
	return a;
}

struct refusal {
	uint64_t line;
	char *code; /* gRPC status name, or "JSON" / "RECORD" for lines never sent */
	char *msg;
};

struct import {
	struct opts o;
	ent_client *cl;
	/* the batch being filled: records and the line each came from */
	Ent__V1__ReportUsageRequest **recs;
	uint64_t *rec_line;
	size_t n;
	/* totals */
	uint64_t lines, total_lines, calls, counted, not_counted;
	struct lines dup, nc;
	struct refusal *ref;
	size_t n_ref, cap_ref;
	bool progress, failed;
	char fail_msg[1200];
};

static int refuse(struct import *im, uint64_t line, const char *code, const char *msg)
{
	if (im->n_ref == im->cap_ref) {
		size_t cap = im->cap_ref ? 2 * im->cap_ref : 16;
		struct refusal *v = realloc(im->ref, cap * sizeof(*v));
		if (!v)
			return -1;
		im->ref = v;
		im->cap_ref = cap;
	}
	struct refusal *f = &im->ref[im->n_ref];
	f->line = line;
	f->code = strdup(code);
	f->msg = strdup(msg);
	if (!f->code || !f->msg) {
		free(f->code);
		free(f->msg);
		return -1;
	}
	im->n_ref++;
	return 0;
}

static void show_progress(struct import *im, bool last)
{
	if (!im->progress)
		return;
	if (im->total_lines)
		fprintf(stderr, "\rentctl: %" PRIu64 "/%" PRIu64 " lines", im->lines,
			im->total_lines);
	else
		fprintf(stderr, "\rentctl: %" PRIu64 " lines", im->lines);
	fprintf(stderr, ", %" PRIu64 " counted, %zu duplicate, %zu refused%s", im->counted,
		im->dup.n, im->n_ref, last ? "\n" : "");
	fflush(stderr);
}

static void free_batch(struct import *im)
{
	for (size_t i = 0; i < im->n; i++)
		protobuf_c_message_free_unpacked(&im->recs[i]->base, NULL);
	im->n = 0;
}

/* The record's own message: the server names it "records[i].field: ..."; the line says which. */
static const char *strip_index(const char *msg)
{
	if (strncmp(msg, "records[", 8) == 0) {
		const char *p = strstr(msg, "].");
		if (p)
			return p + 2;
	}
	return msg;
}

/* Send the batch being filled; map each result back to its line. */
static int flush(struct import *im)
{
	if (im->n == 0 || im->failed)
		return 0;
	Ent__V1__BatchReportUsageRequest req = ENT__V1__BATCH_REPORT_USAGE_REQUEST__INIT;
	req.n_records = im->n;
	req.records = im->recs;
	ProtobufCMessage *resp;
	grpc_status_code st;
	char details[1024];
	int r = ent_client_call(im->cl, BATCH_PATH, &req.base,
				&ent__v1__batch_report_usage_response__descriptor, im->o.timeout_ms,
				&resp, &st, details, sizeof(details));
	im->calls++;
	if (r) {
		snprintf(im->fail_msg, sizeof(im->fail_msg),
			 "lines %" PRIu64 "-%" PRIu64 " and the rest were not imported: %s: %s",
			 im->rec_line[0], im->rec_line[im->n - 1], ent_client_status_name(st),
			 details[0] ? details : ent_err_strerror(r));
		im->failed = true;
		free_batch(im);
		return -1;
	}
	const Ent__V1__BatchReportUsageResponse *br =
		(const Ent__V1__BatchReportUsageResponse *)resp;
	int rc = 0;
	if (br->n_results != im->n) {
		snprintf(im->fail_msg, sizeof(im->fail_msg),
			 "lines %" PRIu64 "-%" PRIu64 ": the server answered %zu results for %zu "
			 "records",
			 im->rec_line[0], im->rec_line[im->n - 1], br->n_results, im->n);
		im->failed = true;
		rc = -1;
	}
	for (size_t i = 0; !rc && i < br->n_results; i++) {
		const Ent__V1__ReportUsageResult *x = br->results[i];
		uint64_t line = im->rec_line[i];
		switch (x->outcome) {
		case ENT__V1__USAGE_OUTCOME__USAGE_OUTCOME_COUNTED:
			im->counted++;
			break;
		case ENT__V1__USAGE_OUTCOME__USAGE_OUTCOME_DUPLICATE:
			rc = lines_add(&im->dup, line);
			break;
		case ENT__V1__USAGE_OUTCOME__USAGE_OUTCOME_NOT_COUNTED:
			im->not_counted++;
			rc = lines_add(&im->nc, line);
			break;
		default:
			rc = refuse(im, line, ent_client_status_name((grpc_status_code)x->code),
				    strip_index(x->error));
			break;
		}
	}
	protobuf_c_message_free_unpacked(resp, NULL);
	free_batch(im);
	show_progress(im, false);
	return rc;
}

/* Lines of a regular file, for "N/TOTAL lines" (0: unknown, e.g. a pipe). */
static uint64_t count_lines(FILE *f)
{
	struct stat st;
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode))
		return 0;
	char buf[65536];
	uint64_t n = 0;
	size_t got, last = 0;
	char lastc = '\n';
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
		for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + got - p))); p++)
			n++;
		last = got;
		lastc = buf[got - 1];
	}
	if (last && lastc != '\n')
		n++; /* a last line without its newline */
	rewind(f);
	return n;
}

static bool blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
			return false;
	return true;
}

static int by_line(const void *a, const void *b)
{
	uint64_t x = ((const struct refusal *)a)->line, y = ((const struct refusal *)b)->line;
	return x < y ? -1 : x > y;
}

static void print_summary(struct import *im)
{
	/* Lines refused here and by the server interleave: report them in file order. */
	if (im->n_ref > 1)
		qsort(im->ref, im->n_ref, sizeof(*im->ref), by_line);
	if (im->o.json) {
		json_t *j = json_object();
		json_t *ref = json_array();
		for (size_t i = 0; i < im->n_ref; i++)
			json_array_append_new(
				ref, json_pack("{s:I,s:s,s:s}", "line", (json_int_t)im->ref[i].line,
					       "code", im->ref[i].code, "error", im->ref[i].msg));
		json_object_set_new(j, "lines", json_integer((json_int_t)im->lines));
		json_object_set_new(j, "calls", json_integer((json_int_t)im->calls));
		json_object_set_new(j, "counted", json_integer((json_int_t)im->counted));
		json_object_set_new(j, "duplicate", json_integer((json_int_t)im->dup.n));
		json_object_set_new(j, "not_counted", json_integer((json_int_t)im->not_counted));
		json_object_set_new(j, "refused", json_integer((json_int_t)im->n_ref));
		json_object_set_new(j, "duplicate_lines", lines_json(&im->dup));
		json_object_set_new(j, "not_counted_lines", lines_json(&im->nc));
		json_object_set_new(j, "refused_lines", ref);
		if (im->failed)
			json_object_set_new(j, "failed", json_string(im->fail_msg));
		json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
		fputc('\n', stdout);
		json_decref(j);
		return;
	}
	printf("%-12s %" PRIu64 "\n", "counted", im->counted);
	printf("%-12s %zu", "duplicate", im->dup.n);
	if (im->dup.n) {
		printf("   lines ");
		lines_print(stdout, &im->dup);
	}
	printf("\n%-12s %" PRIu64, "not counted", im->not_counted);
	if (im->nc.n) {
		printf("   lines ");
		lines_print(stdout, &im->nc);
		printf("   (their period had closed)");
	}
	printf("\n%-12s %zu", "refused", im->n_ref);
	if (im->n_ref) {
		struct lines l = {0};
		for (size_t i = 0; i < im->n_ref; i++)
			lines_add(&l, im->ref[i].line);
		printf("   lines ");
		lines_print(stdout, &l);
		free(l.v);
	}
	printf("\n");
	for (size_t i = 0; i < im->n_ref; i++)
		printf("line %" PRIu64 ": %s: %s\n", im->ref[i].line, im->ref[i].code,
		       im->ref[i].msg);
	printf("%" PRIu64 " lines in %" PRIu64 " call%s\n", im->lines, im->calls,
	       im->calls == 1 ? "" : "s");
	if (im->failed)
		printf("FAILED: %s\n", im->fail_msg);
}

int ent_client_ctl_usage_import(int argc, char **argv)
{
	struct import im;
	memset(&im, 0, sizeof(im));
	int r = parse_opts(argc, argv, import_use, true, &im.o);
	if (r)
		return r < 0 ? 0 : r;
	if (argc - optind != 1)
		return usage_error(import_use, "expected one FILE (- for standard input)", NULL);
	const char *path = argv[optind];
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!f) {
		fprintf(stderr, "entctl: cannot open '%s': %s\n", path, strerror(errno));
		return EXIT_FAIL;
	}
	im.progress = !im.o.quiet && isatty(STDERR_FILENO);
	if (im.progress)
		im.total_lines = count_lines(f);
	im.recs = calloc((size_t)im.o.batch, sizeof(*im.recs));
	im.rec_line = calloc((size_t)im.o.batch, sizeof(*im.rec_line));
	if (!im.recs || !im.rec_line || open_client(&im.o, &im.cl)) {
		if (f != stdin)
			fclose(f);
		free(im.recs);
		free(im.rec_line);
		return EXIT_FAIL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	while (!rc && !im.failed && (len = getline(&line, &cap, f)) >= 0) {
		im.lines++;
		if (blank(line))
			continue;
		json_error_t jerr;
		json_t *j = json_loadb(line, (size_t)len, 0, &jerr);
		if (!j) {
			char msg[300];
			snprintf(msg, sizeof(msg), "column %d: %s", jerr.column, jerr.text);
			rc = refuse(&im, im.lines, "JSON", msg);
			continue;
		}
		ProtobufCMessage *m;
		struct ent_err err = {0};
		if (ent_json_pbjson_decode(j, &ent__v1__report_usage_request__descriptor, &m,
					   &err)) {
			rc = refuse(&im, im.lines, "RECORD", err.msg);
			json_decref(j);
			continue;
		}
		json_decref(j);
		im.recs[im.n] = (Ent__V1__ReportUsageRequest *)m;
		im.rec_line[im.n++] = im.lines;
		if (im.n == (size_t)im.o.batch && flush(&im) && !im.failed)
			rc = -1;
	}
	if (!rc && !im.failed && flush(&im) && !im.failed)
		rc = -1;
	if (!im.failed && ferror(f)) {
		snprintf(im.fail_msg, sizeof(im.fail_msg),
			 "reading '%s' stopped after line %" PRIu64 ": %s", path, im.lines,
			 strerror(errno));
		im.failed = true;
	}
	if (rc && !im.failed) {
		snprintf(im.fail_msg, sizeof(im.fail_msg), "out of memory after line %" PRIu64,
			 im.lines);
		im.failed = true;
	}
	free_batch(&im);
	show_progress(&im, true);
	print_summary(&im);
	if (im.failed)
		fprintf(stderr, "entctl: %s\n", im.fail_msg);
	int status = im.failed || im.n_ref ? EXIT_FAIL : 0;
	free(line);
	for (size_t i = 0; i < im.n_ref; i++) {
		free(im.ref[i].code);
		free(im.ref[i].msg);
	}
	free(im.ref);
	free(im.dup.v);
	free(im.nc.v);
	free(im.recs);
	free(im.rec_line);
	ent_client_free(im.cl);
	if (f != stdin)
		fclose(f);
	return status;
}
