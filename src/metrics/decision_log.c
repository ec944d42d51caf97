/*
 * The sampled decision log: an audit trail of (customer, feature, decision, reason) lines.
 *
 * It sits on the check path, so: the sampling decision is a xorshift step on the caller's own
 * metrics block; the threshold is one relaxed atomic load (SIGHUP may change it); a line is
 * built in a stack buffer and written with a single write(2) on an O_APPEND descriptor, which
 * the kernel appends atomically, so no lock is needed between threads. Rotation swaps the
 * file under the same descriptor number with dup2(), so a writer never sees a closed fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/metrics.h"
#include "ent/model.h"

struct ent_decision_log {
	int fd;
	bool owns_fd; /**< false for stderr */
	bool json;
	_Atomic uint64_t threshold; /**< sample when rng < threshold; UINT64_MAX: always */
	char *path;
};

static uint64_t rate_threshold(double rate)
{
	if (!(rate > 0.0))
		return 0;
	if (rate >= 1.0)
		return UINT64_MAX;
	return (uint64_t)(rate * 18446744073709551616.0);
}

static bool is_stderr(const char *path)
{
	return !path || !*path || !strcmp(path, "stderr") || !strcmp(path, "-");
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
}

int ent_metrics_decision_log_open(const char *path, double sample_rate, bool json,
				  struct ent_decision_log **out, struct ent_err *err)
{
	struct ent_decision_log *l = calloc(1, sizeof(*l));
	if (!l)
		return ent_err_set(err, ENT_ENOMEM, "decision_log: out of memory");
	l->json = json;
	atomic_init(&l->threshold, rate_threshold(sample_rate));
	if (is_stderr(path)) {
		l->fd = STDERR_FILENO;
	} else {
		l->path = strdup(path);
		l->fd = l->path ? open_file(path) : -1;
		if (l->fd < 0) {
			int e = errno;
			free(l->path);
			free(l);
			return ent_err_set(err, ENT_EIO, "decision_log.path: cannot open '%s': %s",
					   path, strerror(e));
		}
		l->owns_fd = true;
	}
	*out = l;
	return 0;
}

void ent_metrics_decision_log_set_rate(struct ent_decision_log *l, double sample_rate)
{
	atomic_store_explicit(&l->threshold, rate_threshold(sample_rate), memory_order_relaxed);
}

int ent_metrics_decision_log_reopen(struct ent_decision_log *l, struct ent_err *err)
{
	if (!l->owns_fd)
		return 0;
	int fd = open_file(l->path);
	if (fd < 0)
		return ent_err_set(err, ENT_EIO, "decision_log.path: cannot reopen '%s': %s",
				   l->path, strerror(errno));
	/* dup2 replaces the descriptor atomically: concurrent writes go to the old or new file. */
	int rc = dup2(fd, l->fd) < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return ent_err_set(err, ENT_EIO, "decision_log.path: dup2: %s", strerror(-rc));
	/* dup2 drops O_CLOEXEC on the target; put it back. */
	fcntl(l->fd, F_SETFD, FD_CLOEXEC);
	return 0;
}

void ent_metrics_decision_log_close(struct ent_decision_log *l)
{
	if (!l)
		return;
	if (l->owns_fd)
		close(l->fd);
	free(l->path);
	free(l);
}

bool ent_metrics_decision_log_sample(struct ent_decision_log *l, struct ent_metrics_block *b)
{
	static _Thread_local uint64_t fallback = 0x2545f4914f6cdd1dULL;
	if (!l)
		return false;
	uint64_t t = atomic_load_explicit(&l->threshold, memory_order_relaxed);
	if (!t)
		return false;
	if (t == UINT64_MAX)
		return true;
	uint64_t *s = b ? &b->rng : &fallback;
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL < t;
}

/* Append \a s (len bytes), escaped for JSON or quoted for logfmt when needed. */
static size_t put_str(char *buf, size_t at, size_t cap, const char *s, size_t len, bool json)
{
	bool quote =
		json || !len || memchr(s, ' ', len) || memchr(s, '=', len) || memchr(s, '"', len);
	if (quote && at < cap)
		buf[at++] = '"';
	for (size_t i = 0; i < len && at + 6 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			buf[at++] = '\\';
			buf[at++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			at += (size_t)snprintf(buf + at, cap - at, "\\u%04x", c);
		} else {
			buf[at++] = (char)c;
		}
	}
	if (quote && at < cap)
		buf[at++] = '"';
	return at;
}

void ent_metrics_decision_log_write(struct ent_decision_log *l, struct ent_metrics_block *b,
				    const struct ent_decision_record *r)
{
	if (!l)
		return;
	char buf[1024], ts[40], at_s[40];
	const size_t cap = sizeof(buf) - 2;
	ent_time_fmt(ent_time_now_ms(), ts, sizeof(ts));
	ent_time_fmt(r->at, at_s, sizeof(at_s));
	const char *reason = ent_model_reason_name(r->reason);
	size_t at;
	if (l->json) {
		at = (size_t)snprintf(buf, cap,
				      "{\"ts\":\"%s\",\"msg\":\"decision\",\"customer\":", ts);
		at = put_str(buf, at, cap, r->customer.p, r->customer.len, true);
		at += (size_t)snprintf(buf + at, cap - at, ",\"feature\":");
		at = put_str(buf, at, cap, r->feature.p, r->feature.len, true);
		at += (size_t)snprintf(buf + at, cap - at,
				       ",\"quantity\":%lld,\"allowed\":%s,\"reason\":\"%s\","
				       "\"seq\":%llu,\"at\":\"%s\"}",
				       (long long)r->quantity, r->allowed ? "true" : "false",
				       reason, (unsigned long long)r->seq, at_s);
	} else {
		at = (size_t)snprintf(buf, cap, "ts=%s msg=decision customer=", ts);
		at = put_str(buf, at, cap, r->customer.p, r->customer.len, false);
		at += (size_t)snprintf(buf + at, cap - at, " feature=");
		at = put_str(buf, at, cap, r->feature.p, r->feature.len, false);
		at += (size_t)snprintf(buf + at, cap - at,
				       " quantity=%lld allowed=%s reason=%s seq=%llu at=%s",
				       (long long)r->quantity, r->allowed ? "true" : "false",
				       reason, (unsigned long long)r->seq, at_s);
	}
	if (at > cap)
		at = cap;
	buf[at++] = '\n';
	ssize_t w = write(l->fd, buf, at);
	if (w == (ssize_t)at && b)
		ent_metrics_add_(&b->decisions_logged, 1);
}
