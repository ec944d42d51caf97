/* Structured logs to stderr: logfmt or JSON lines, one write(2) per line so lines never mix. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ent/util.h"

/* Set again on SIGHUP by the main thread while workers log: atomics, each line reads the
   format once so it never mixes two. */
static _Atomic int min_level = ENT_LOG_INFO;
static atomic_bool log_json;

void ent_log_setup(enum ent_log_level level, bool json)
{
	atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
	atomic_store_explicit(&log_json, json, memory_order_relaxed);
}

bool ent_log_enabled(enum ent_log_level level)
{
	return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Append \a s quoted for the current format. */
static size_t put_value(char *buf, size_t at, size_t cap, const char *s, bool json)
{
	bool quote = json || !*s || strpbrk(s, " =\"\t\n") != NULL;
	if (quote && at < cap)
		buf[at++] = '"';
	for (; *s && at + 2 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[at++] = '\\';
			buf[at++] = (char)c;
		} else if (c == '\n') {
			buf[at++] = '\\';
			buf[at++] = 'n';
		} else if (c < 0x20) {
			buf[at++] = '?';
		} else {
			buf[at++] = (char)c;
		}
	}
	if (quote && at < cap)
		buf[at++] = '"';
	return at;
}

void ent_log(enum ent_log_level level, const char *msg, ...)
{
	if (!ent_log_enabled(level))
		return;
	bool json = atomic_load_explicit(&log_json, memory_order_relaxed);
	char buf[2048], ts[40];
	size_t at = 0, cap = sizeof(buf) - 2;
	ent_time_fmt(ent_time_now_ms(), ts, sizeof(ts));
	if (json)
		at += (size_t)snprintf(buf, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
				       level_names[level]);
	else
		at += (size_t)snprintf(buf, cap, "ts=%s level=%s msg=", ts, level_names[level]);
	at = put_value(buf, at, cap, msg, json);
	va_list ap;
	va_start(ap, msg);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		if (at + strlen(k) + 4 >= cap)
			break;
		if (json) {
			at += (size_t)snprintf(buf + at, cap - at, ",\"%s\":", k);
		} else {
			at += (size_t)snprintf(buf + at, cap - at, " %s=", k);
		}
		at = put_value(buf, at, cap, v ? v : "", json);
	}
	va_end(ap);
	if (json && at < cap)
		buf[at++] = '}';
	buf[at++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, at);
	(void)w;
}
