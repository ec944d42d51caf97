/*
 * How entctl prints answers: pretty JSON for --json (the descriptor-driven conversion, so
 * every field of every answer prints without per-type code), an indented tree for answers
 * without a table of their own, and the small helpers the tables of ctl_check.c and
 * ctl_admin.c share.
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

const char *ent_client_ctl_fmt_time(int64_t ms, char *buf, size_t len)
{
	if (!ms)
		return "-";
	return ent_time_fmt(ms, buf, len);
}

const char *ent_client_ctl_yesno(bool b)
{
	return b ? "yes" : "no";
}

void ent_client_ctl_print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	fputc('\n', stdout);
}

/* Print \a m as pretty JSON (full enum names, ms times): the --json output of every command. */
void ent_client_ctl_print_msg_json(const ProtobufCMessage *m)
{
	json_t *j = ent_json_pbjson_encode(m, 0);
	if (j)
		ent_client_ctl_print_json(j);
	json_decref(j);
}

/* One value and the end of its line: an instant (by its key) as RFC 3339, a string bare. */
static void print_scalar(const json_t *j, const char *key)
{
	char tbuf[40];
	if (json_is_integer(j) && key && ent_json_is_time_name(key))
		fputs(ent_client_ctl_fmt_time(json_integer_value(j), tbuf, sizeof(tbuf)), stdout);
	else if (json_is_string(j))
		fputs(json_string_value(j), stdout);
	else
		json_dumpf(j, stdout, JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

/*
 * The readable form of any message: indented "key: value" lines, times in RFC 3339, short
 * enum names, defaults left out. Used for admin answers that have no table of their own.
 */
static void print_tree(const json_t *j, const char *key, int indent)
{
	if (json_is_object(j)) {
		if (key)
			printf("%*s%s:\n", indent, "", key);
		const char *k;
		const json_t *v;
		json_object_foreach((json_t *)j, k, v) print_tree(v, k, key ? indent + 2 : indent);
		return;
	}
	if (json_is_array(j)) {
		size_t i;
		const json_t *v;
		bool scalars = true;
		json_array_foreach(j, i, v) scalars =
			scalars && !json_is_object(v) && !json_is_array(v);
		if (scalars) {
			printf("%*s%s: ", indent, "", key ? key : "");
			json_array_foreach(j, i, v)
			{
				if (i)
					fputs(", ", stdout);
				if (json_is_string(v))
					fputs(json_string_value(v), stdout);
				else
					json_dumpf(v, stdout, JSON_ENCODE_ANY);
			}
			fputc('\n', stdout);
			return;
		}
		json_array_foreach(j, i, v)
		{
			char label[96];
			snprintf(label, sizeof(label), "%s[%zu]", key ? key : "", i);
			print_tree(v, label, indent);
		}
		return;
	}
	printf("%*s%s: ", indent, "", key ? key : "");
	print_scalar(j, key);
}

void ent_client_ctl_print_msg_tree(const ProtobufCMessage *m)
{
	json_t *j = ent_json_pbjson_encode(m, ENT_PBJSON_SHORT_ENUMS | ENT_PBJSON_SKIP_DEFAULTS);
	if (j)
		print_tree(j, NULL, 0);
	json_decref(j);
}

/* "max_seats=10 sso=true tier=gold" */
void ent_client_ctl_print_privileges(Ent__V1__PrivilegeValue **p, size_t n)
{
	if (!n) {
		fputc('-', stdout);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		printf("%s%s=", i ? " " : "", p[i]->code);
		switch (p[i]->value_case) {
		case ENT__V1__PRIVILEGE_VALUE__VALUE_INT_VALUE:
			printf("%" PRId64, p[i]->int_value);
			break;
		case ENT__V1__PRIVILEGE_VALUE__VALUE_BOOL_VALUE:
			fputs(p[i]->bool_value ? "true" : "false", stdout);
			break;
		case ENT__V1__PRIVILEGE_VALUE__VALUE_STRING_VALUE:
			fputs(p[i]->string_value, stdout);
			break;
		default:
			fputs("(unset)", stdout);
		}
	}
}

void ent_client_ctl_print_strings(char **s, size_t n)
{
	if (!n) {
		fputc('-', stdout);
		return;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? ", " : "", s[i]);
}

void ent_client_ctl_print_limit(int64_t limit, bool unlimited, bool soft)
{
	if (unlimited)
		fputs("unlimited", stdout);
	else
		printf("%" PRId64 "%s", limit, soft ? " (soft)" : "");
}

void ent_client_ctl_print_rest(const ProtobufCMessage *m, const char *const *shown)
{
	json_t *j = ent_json_pbjson_encode(m, ENT_PBJSON_SHORT_ENUMS | ENT_PBJSON_SKIP_DEFAULTS);
	for (const char *const *k = shown; j && *k; k++)
		json_object_del(j, *k);
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v)
	{
		/* "name         value" like the table's rows; lists and objects as a tree. */
		if (json_is_object(v) || json_is_array(v)) {
			print_tree(v, key, 0);
			continue;
		}
		printf("%-12s ", key);
		print_scalar(v, key);
	}
	json_decref(j);
}
