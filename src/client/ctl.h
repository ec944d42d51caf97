/*
 * entctl subcommands. Each takes the arguments after its name and returns the process exit
 * status (0 ok, 1 failed, 2 usage).
 */
#ifndef ENT_CTL_H
#define ENT_CTL_H

/* Offline, straight on an LMDB directory (src/client/ctl_offline.c). */
int ent_client_ctl_import(int argc, char **argv);   /* import --db DIR [--replace] FILE.json */
int ent_client_ctl_export(int argc, char **argv);   /* export --db DIR [FILE.json] */
int ent_client_ctl_generate(int argc, char **argv); /* generate --db DIR --customers N [--seed S] */
int ent_client_ctl_verify(int argc, char **argv);   /* verify --db DIR (src/client/ctl_verify.c) */

/* Against a running entd (src/client/ctl_check.c; admin in src/client/ctl_admin.c). */
int ent_client_ctl_check(int argc, char **argv); /* check [-a ADDR] [--json] CUSTOMER FEATURE [N] */
int ent_client_ctl_get(int argc, char **argv);	 /* get [-a ADDR] [--json] CUSTOMER [FEATURE...] */
int ent_client_ctl_health(int argc, char **argv); /* health [-a ADDR] [SERVICE] */
int ent_client_ctl_admin(int argc, char **argv);  /* every admin RPC: see `entctl help` */

/* ReportUsage and ConsumeEntitlement (src/client/ctl_check.c). */
int ent_client_ctl_usage(int argc, char **argv); /* usage [-a ADDR] --key K CUSTOMER FEATURE N */
int ent_client_ctl_consume(int argc,
			   char **argv); /* consume [-a ADDR] [--key K] CUSTOMER FEATURE [N] */

/* usage import FILE (JSON lines, BatchReportUsage) and usage report (src/client/ctl_usage.c);
 * `entctl usage` dispatches to them on its first word. */
int ent_client_ctl_usage_import(int argc, char **argv); /* usage import [-a ADDR] FILE|- */
int ent_client_ctl_usage_report(int argc, char **argv); /* usage report [-a ADDR] --key K C F N */
/* Fleet mode tools on NATS JetStream (src/client/ctl_fleet.c). */
int ent_client_ctl_fleet(int argc, char **argv); /* fleet snapshot publish|fetch|info ... */

/* ---- shared by the commands against a running entd ------------------------------------ */

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "ent/client.h"
#include "ent/v1/types.pb-c.h"

#define ENT_CTL_DEFAULT_ADDR	   "127.0.0.1:50051"
#define ENT_CTL_DEFAULT_TIMEOUT_MS 10000

#define ENT_CTL_EXIT_RPC   1
#define ENT_CTL_EXIT_USAGE 2

#define ENT_CTL_SVC_CHECK "/ent.v1.EntitlementService/"
#define ENT_CTL_SVC_ADMIN "/ent.v1.AdminService/"

/* Options every remote command understands. */
struct ent_ctl_common {
	const char *addr;
	const char *token;
	bool json;
	int64_t timeout_ms;
};

enum {
	ENT_CTL_OPT_BAD = -2, /* ent_client_ctl_getopt: a bad common option (reported) */
	ENT_CTL_OPT_JSON = 0x100,
	ENT_CTL_OPT_TOKEN,
	ENT_CTL_OPT_TIMEOUT,
	ENT_CTL_OPT_AT,
	ENT_CTL_OPT_MIN_SEQ,
	ENT_CTL_OPT_WAIT,
	ENT_CTL_OPT_WATCH,
	ENT_CTL_OPT_REPLACE,
	ENT_CTL_OPT_PAGE_SIZE,
	ENT_CTL_OPT_PAGE_TOKEN,
	ENT_CTL_OPT_KEY,
	ENT_CTL_OPT_HELP,
};

#define ENT_CTL_COMMON_LONG_OPTS                                                                   \
	{"addr", required_argument, NULL, 'a'}, {"json", no_argument, NULL, ENT_CTL_OPT_JSON},     \
		{"token", required_argument, NULL, ENT_CTL_OPT_TOKEN},                             \
		{"timeout", required_argument, NULL, ENT_CTL_OPT_TIMEOUT},                         \
	{                                                                                          \
		"help", no_argument, NULL, ENT_CTL_OPT_HELP                                        \
	}

/* Options, channel and one call (src/client/ctl_remote.c). */

/** Defaults: $ENTD_ADDR or 127.0.0.1:50051, the token from $\a token_env, 10 s timeout. */
void ent_client_ctl_common_init(struct ent_ctl_common *co, const char *token_env);
/** Options shared by all commands. \return 1 when \a c was one, 0 if not, -1 on error. */
int ent_client_ctl_common_opt(struct ent_ctl_common *co, int c, const char *arg);
/** Print "entctl: MESSAGE" and the usage line. \return ENT_CTL_EXIT_USAGE. */
int ent_client_ctl_vusage_error(const char *usage, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/** As ent_client_ctl_vusage_error. */
int ent_client_ctl_usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/**
 * getopt_long (short option -a only) that takes the common options itself.
 * \return the next other option, -1 at the end, or ENT_CTL_OPT_BAD after printing a usage
 *         error for a bad common option.
 */
int ent_client_ctl_getopt(int argc, char **argv, const struct option *longopts,
			  struct ent_ctl_common *co, const char *usage);
/** Open the channel of \a co. \return 0, or ENT_CTL_EXIT_RPC after printing why. */
int ent_client_ctl_open_client(const struct ent_ctl_common *co, ent_client **c);
/**
 * One unary call; on failure print "entctl: STATUS: message".
 * \return 0 (caller frees *resp with protobuf_c_message_free_unpacked) or ENT_CTL_EXIT_RPC.
 */
int ent_client_ctl_call(ent_client *c, const struct ent_ctl_common *co, const char *method,
			const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			ProtobufCMessage **resp);
/**
 * Open a channel, make one call and show the answer: JSON with --json, else \a print.
 * \return 0, or ENT_CTL_EXIT_RPC after printing why.
 */
int ent_client_ctl_call_show(const struct ent_ctl_common *co, const char *method,
			     const ProtobufCMessage *req,
			     const ProtobufCMessageDescriptor *resp_desc,
			     void (*print)(const ProtobufCMessage *));
/** A whole decimal int64. \return 0 or -1. */
int ent_client_ctl_parse_i64(const char *s, int64_t *v);

/* Printing answers (src/client/ctl_output.c). */

/** RFC 3339 of \a ms in \a buf, or "-" for 0. */
const char *ent_client_ctl_fmt_time(int64_t ms, char *buf, size_t len);
/** "yes" or "no". */
const char *ent_client_ctl_yesno(bool b);
/** Pretty-print \a j to stdout (2-space indent, ASCII). */
void ent_client_ctl_print_json(json_t *j);
/** \a m as pretty JSON (full enum names, ms times): the --json output of every command. */
void ent_client_ctl_print_msg_json(const ProtobufCMessage *m);
/** \a m as indented "key: value" lines: times RFC 3339, short enum names, no defaults. */
void ent_client_ctl_print_msg_tree(const ProtobufCMessage *m);
/**
 * After a hand-made table: every field of \a m set and not named in \a shown (NULL-terminated),
 * one row each, so a field added to the .proto shows before anyone formats it.
 */
void ent_client_ctl_print_rest(const ProtobufCMessage *m, const char *const *shown);
/** "max_seats=10 sso=true tier=gold", or "-". */
void ent_client_ctl_print_privileges(Ent__V1__PrivilegeValue **p, size_t n);
/** "a, b, c", or "-". */
void ent_client_ctl_print_strings(char **s, size_t n);
/** "unlimited", "N" or "N (soft)". */
void ent_client_ctl_print_limit(int64_t limit, bool unlimited, bool soft);

#endif
