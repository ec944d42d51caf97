/*
 * What every entctl command against a running entd shares: the common options (address,
 * token, --json, timeout), the channel and one unary call with its error report. The commands
 * are in ctl_check.c (check, get, usage, consume, health) and ctl_admin.c (admin); printing
 * in ctl_output.c (docs/entctl.md). Exit status: 0 when the RPC succeeded, 1 when it failed
 * (the gRPC status name and message go to stderr), 2 for usage errors.
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

void ent_client_ctl_common_init(struct ent_ctl_common *co, const char *token_env)
{
	const char *addr = getenv("ENTD_ADDR");
	co->addr = addr && *addr ? addr : ENT_CTL_DEFAULT_ADDR;
	co->token = token_env ? getenv(token_env) : NULL;
	co->json = false;
	co->timeout_ms = ENT_CTL_DEFAULT_TIMEOUT_MS;
}

int ent_client_ctl_vusage_error(const char *usage, const char *fmt, va_list ap)
{
	fputs("entctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nusage: entctl %s\n", usage);
	return ENT_CTL_EXIT_USAGE;
}

int ent_client_ctl_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = ent_client_ctl_vusage_error(usage, fmt, ap);
	va_end(ap);
	return r;
}

/* Options shared by all commands. \return 1 when \a c was one of them, 0 if not, -1 on error. */
int ent_client_ctl_common_opt(struct ent_ctl_common *co, int c, const char *arg)
{
	char *end;
	switch (c) {
	case 'a':
		co->addr = arg;
		return 1;
	case ENT_CTL_OPT_JSON:
		co->json = true;
		return 1;
	case ENT_CTL_OPT_TOKEN:
		co->token = arg;
		return 1;
	case ENT_CTL_OPT_TIMEOUT:
		errno = 0;
		co->timeout_ms = strtoll(arg, &end, 10);
		if (errno || *end || co->timeout_ms <= 0)
			return -1;
		return 1;
	}
	return 0;
}

int ent_client_ctl_open_client(const struct ent_ctl_common *co, ent_client **c)
{
	int rc = ent_client_new(co->addr, co->token, c);
	if (rc) {
		fprintf(stderr, "entctl: cannot open a channel to '%s': %s\n", co->addr,
			ent_err_strerror(rc));
		return ENT_CTL_EXIT_RPC;
	}
	return 0;
}

/* One unary call; on failure print "entctl: STATUS: message" and return ENT_CTL_EXIT_RPC. */
int ent_client_ctl_call(ent_client *c, const struct ent_ctl_common *co, const char *method,
			const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			ProtobufCMessage **resp)
{
	grpc_status_code st;
	char details[1024];
	int rc = ent_client_call(c, method, req, resp_desc, co->timeout_ms, resp, &st, details,
				 sizeof(details));
	if (rc) {
		fprintf(stderr, "entctl: %s: %s\n", ent_client_status_name(st),
			details[0] ? details : ent_err_strerror(rc));
		return ENT_CTL_EXIT_RPC;
	}
	return 0;
}

int ent_client_ctl_parse_i64(const char *s, int64_t *v)
{
	char *end;
	errno = 0;
	long long n = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*v = n;
	return 0;
}

int ent_client_ctl_call_show(const struct ent_ctl_common *co, const char *method,
			     const ProtobufCMessage *req,
			     const ProtobufCMessageDescriptor *resp_desc,
			     void (*print)(const ProtobufCMessage *))
{
	ent_client *cl;
	ProtobufCMessage *resp;
	int r = ent_client_ctl_open_client(co, &cl);
	if (r)
		return r;
	r = ent_client_ctl_call(cl, co, method, req, resp_desc, &resp);
	if (!r) {
		if (co->json)
			ent_client_ctl_print_msg_json(resp);
		else
			print(resp);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	ent_client_free(cl);
	return r;
}

int ent_client_ctl_getopt(int argc, char **argv, const struct option *longopts,
			  struct ent_ctl_common *co, const char *usage)
{
	int c, r;
	while ((c = getopt_long(argc, argv, "a:", longopts, NULL)) != -1) {
		if ((r = ent_client_ctl_common_opt(co, c, optarg)) > 0)
			continue;
		if (r < 0) {
			ent_client_ctl_usage_error(usage, "bad --timeout '%s'", optarg);
			return ENT_CTL_OPT_BAD;
		}
		return c;
	}
	return -1;
}
