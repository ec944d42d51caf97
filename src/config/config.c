/*
 * The settings table and everything driven by it: defaults, the environment, the flags, the
 * sequence of ent_config_build(), the reload diff, the dump and the usage text.
 *
 * Precedence is simply the order of application: each source overwrites what the previous one
 * set, so "flags win over env, env over file" needs no bookkeeping. The two exceptions are lists
 * and alternatives: a source that names listeners replaces the whole list, and admin.token and
 * admin.token_file exclude each other, so setting one clears the other.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/impl.h"

#define OFF(f) offsetof(struct ent_config, f)
#define KIB    1024ULL
#define MIB    (1024ULL * KIB)
#define GIB    (1024ULL * MIB)
#define TIB    (1024ULL * GIB)
#define SEC    1000ULL
#define DAY    (86400ULL * SEC)

/* Order matters: the dump and the usage text follow it, grouped by section. */
const struct setting ent_config_settings[] = {
	{"db.path", "ENTD_DB", "db", K_STR, false, OFF(db_path), 0, 0,
	 "LMDB database directory (created if missing)"},
	{"db.map_size", "ENTD_MAP_SIZE", "map-size", K_SIZE, false, OFF(map_size), MIB, 16 * TIB,
	 "LMDB map size: the largest the database may grow"},
	{"db.batched_walk", "ENTD_BATCHED_WALK", "batched-walk", K_BOOL, false, OFF(batched_walk),
	 0, 0, "look up grouped checks with the batched B-tree walk (off: one mdb_get each)"},
	{"db.verify_below", "ENTD_VERIFY_BELOW", "verify-below", K_SIZE, false, OFF(verify_below),
	 0, 16 * TIB,
	 "check every page and record at start (entctl verify) when data.mdb is at most this "
	 "big (0: never)"},
	{"threads", "ENTD_THREADS", "threads", K_THREADS, false, OFF(threads), 1, 256,
	 "gRPC completion-queue threads, or auto (one per online CPU)"},
	{"listeners", "ENTD_LISTEN", "listen", K_LISTEN, false, OFF(listeners), 0, 0,
	 "gRPC listeners: host:port or unix:/path (env: comma-separated; flag: repeat)"},
	{"admin.token", "ENTD_ADMIN_TOKEN", "admin-token", K_SECRET, true, OFF(admin_token), 0, 0,
	 "admin credential (Bearer token or x-api-key); prefer admin.token_file"},
	{"admin.token_file", "ENTD_ADMIN_TOKEN_FILE", "admin-token-file", K_STR, true,
	 OFF(admin_token_file), 0, 0, "file holding the admin credential (re-read on SIGHUP)"},
	{"admin.protect_checks", "ENTD_PROTECT_CHECKS", "protect-checks", K_BOOL, false,
	 OFF(protect_checks), 0, 0, "the check service needs the admin credential too"},
	{"limits.max_message_bytes", "ENTD_MAX_MESSAGE_BYTES", "max-message-bytes", K_SIZE, false,
	 OFF(max_message_bytes), KIB, INT_MAX, "largest request or response message"},
	{"limits.max_concurrent_streams", "ENTD_MAX_CONCURRENT_STREAMS", "max-concurrent-streams",
	 K_UINT, false, OFF(max_concurrent_streams), 0, INT_MAX,
	 "concurrent calls per HTTP/2 connection (0: no limit)"},
	{"limits.keepalive_time_ms", "ENTD_KEEPALIVE_TIME_MS", "keepalive-time-ms", K_DURATION,
	 false, OFF(keepalive_time_ms), SEC, INT_MAX, "server keepalive ping interval"},
	{"limits.keepalive_timeout_ms", "ENTD_KEEPALIVE_TIMEOUT_MS", "keepalive-timeout-ms",
	 K_DURATION, false, OFF(keepalive_timeout_ms), SEC, INT_MAX,
	 "close a connection whose ping is not answered within this"},
	{"limits.keepalive_permit_without_calls", "ENTD_KEEPALIVE_PERMIT_WITHOUT_CALLS",
	 "keepalive-permit-without-calls", K_BOOL, false, OFF(keepalive_permit_without_calls), 0, 0,
	 "accept client keepalive pings on connections without calls"},
	{"limits.min_ping_interval_ms", "ENTD_MIN_PING_INTERVAL_MS", "min-ping-interval-ms",
	 K_DURATION, false, OFF(min_ping_interval_ms), 0, INT_MAX,
	 "client pings more often than this are bad pings (connection closed after a few)"},
	{"limits.max_metadata_bytes", "ENTD_MAX_METADATA_BYTES", "max-metadata-bytes", K_SIZE,
	 false, OFF(max_metadata_bytes), KIB, 1 * MIB,
	 "largest header list (metadata) of a request"},
	{"limits.memory", "ENTD_MEMORY", "memory", K_SIZE, false, OFF(memory_bytes), 16 * MIB,
	 1 * TIB, "gRPC resource quota: memory all connections' buffers may take together"},
	{"limits.compression", "ENTD_COMPRESSION", "compression", K_BOOL, false, OFF(compression),
	 0, 0,
	 "accept gzip/deflate-compressed messages (off: identity only; a compressed request is "
	 "refused before it is inflated)"},
	{"limits.max_connection_idle_ms", "ENTD_MAX_CONNECTION_IDLE_MS", "max-connection-idle-ms",
	 K_DURATION, false, OFF(max_connection_idle_ms), 0, INT_MAX,
	 "close a connection without calls for this long (GOAWAY; 0: never)"},
	{"limits.max_connection_age_ms", "ENTD_MAX_CONNECTION_AGE_MS", "max-connection-age-ms",
	 K_DURATION, false, OFF(max_connection_age_ms), 0, INT_MAX,
	 "close any connection after this long (GOAWAY, calls finish; 0: never)"},
	{"check.min_sequence_wait_ms", "ENTD_MIN_SEQUENCE_WAIT_MS", "min-sequence-wait-ms",
	 K_DURATION, false, OFF(check_min_seq_wait_ms), 0, 600 * SEC,
	 "a check whose min_sequence is not applied yet waits this long for it, then answers "
	 "UNAVAILABLE (0: at once)"},
	{"check.min_sequence_wait_max", "ENTD_MIN_SEQUENCE_WAIT_MAX", "min-sequence-wait-max",
	 K_UINT, false, OFF(check_min_seq_wait_max), 1, 1000000,
	 "checks waiting for their min_sequence at once at most (more answer UNAVAILABLE at "
	 "once)"},
	{"shutdown.grace_ms", "ENTD_GRACE_MS", "grace-ms", K_DURATION, false, OFF(grace_ms), 0,
	 3600 * SEC, "on SIGTERM, in-flight calls get this long before they are cancelled"},
	{"log.level", "ENTD_LOG_LEVEL", "log-level", K_LEVEL, true, OFF(log_level), 0, 0,
	 "debug, info, warn or error"},
	{"log.format", "ENTD_LOG_FORMAT", "log-format", K_FORMAT, true, OFF(log_format), 0, 0,
	 "logfmt or json"},
	{"decision_log.sample_rate", "ENTD_DECISION_LOG_SAMPLE_RATE", "decision-log-sample-rate",
	 K_RATE, true, OFF(decision_log_sample_rate), 0, 0,
	 "fraction of checks written to the decision log (0: off, 1: all)"},
	{"decision_log.path", "ENTD_DECISION_LOG_PATH", "decision-log-path", K_STR, false,
	 OFF(decision_log_path), 0, 0, "stderr, or a file the decision log is appended to"},
	{"metrics.listen", "ENTD_METRICS_LISTEN", "metrics-listen", K_STR, false,
	 OFF(metrics_listen), 0, 0, "host:port of /metrics, /livez, /readyz (empty: off)"},
	{"metrics.max_connections", "ENTD_METRICS_MAX_CONNECTIONS", "metrics-max-connections",
	 K_UINT, false, OFF(metrics_max_connections), 4, 1000,
	 "open connections to the metrics port at most (more are refused at accept)"},
	{"metrics.connection_timeout_ms", "ENTD_METRICS_TIMEOUT_MS", "metrics-timeout-ms",
	 K_DURATION, false, OFF(metrics_timeout_ms), SEC, 3600 * SEC,
	 "close a metrics connection idle (or sending its request) this long"},
	{"writer.max_group", "ENTD_WRITER_MAX_GROUP", "writer-max-group", K_UINT, false,
	 OFF(writer_max_group), 1, 65536, "events committed in one transaction at most"},
	{"writer.nice", "ENTD_WRITER_NICE", "writer-nice", K_UINT, false, OFF(writer_nice), 0, 19,
	 "nice increment of the writer thread, so checks get the CPU first (0: same priority)"},
	{"writer.idem_retention_ms", "ENTD_IDEM_RETENTION_MS", "idem-retention-ms", K_DURATION,
	 false, OFF(writer_idem_retention_ms), 60 * SEC, 3660 * DAY,
	 "how long usage idempotency keys are remembered"},
	{"fleet.nats", "ENTD_FLEET_NATS", "fleet-nats", K_STR, false, OFF(fleet_nats), 0, 0,
	 "fleet mode: NATS servers, comma-separated nats:// URLs (empty: embedded mode)"},
	{"fleet.stream", "ENTD_FLEET_STREAM", "fleet-stream", K_STR, false, OFF(fleet_stream), 0, 0,
	 "fleet mode: the JetStream stream of events (created if missing)"},
	{"fleet.subject", "ENTD_FLEET_SUBJECT", "fleet-subject", K_STR, false, OFF(fleet_subject),
	 0, 0, "fleet mode: the subject events are published on"},
	{"fleet.replicas", "ENTD_FLEET_REPLICAS", "fleet-replicas", K_UINT, false,
	 OFF(fleet_replicas), 1, 5, "fleet mode: stream replicas (1 single server, 3 cluster)"},
	{"fleet.creds_file", "ENTD_FLEET_CREDS_FILE", "fleet-creds-file", K_STR, false,
	 OFF(fleet_creds_file), 0, 0, "fleet mode: NATS credentials file (JWT + nkey seed)"},
	{"fleet.tls_ca_file", "ENTD_FLEET_TLS_CA_FILE", "fleet-tls-ca-file", K_STR, false,
	 OFF(fleet_tls_ca_file), 0, 0, "fleet mode: CA bundle to verify the NATS servers (TLS)"},
	{"fleet.tls_cert_file", "ENTD_FLEET_TLS_CERT_FILE", "fleet-tls-cert-file", K_STR, false,
	 OFF(fleet_tls_cert_file), 0, 0, "fleet mode: client certificate for NATS (mTLS)"},
	{"fleet.tls_key_file", "ENTD_FLEET_TLS_KEY_FILE", "fleet-tls-key-file", K_STR, false,
	 OFF(fleet_tls_key_file), 0, 0, "fleet mode: key of the client certificate"},
	{"fleet.connect_timeout_ms", "ENTD_FLEET_CONNECT_TIMEOUT_MS", "fleet-connect-timeout-ms",
	 K_DURATION, false, OFF(fleet_connect_timeout_ms), 100, 3600 * SEC,
	 "fleet mode: give up starting when NATS cannot be reached for this long"},
	{"fleet.publish_timeout_ms", "ENTD_FLEET_PUBLISH_TIMEOUT_MS", "fleet-publish-timeout-ms",
	 K_DURATION, false, OFF(fleet_publish_timeout_ms), 100, 600 * SEC,
	 "fleet mode: a write the stream does not acknowledge within this answers UNAVAILABLE"},
	{"fleet.max_age_ms", "ENTD_FLEET_MAX_AGE_MS", "fleet-max-age-ms", K_DURATION, false,
	 OFF(fleet_max_age_ms), 0, 3660 * DAY,
	 "fleet mode: retention of the stream entd creates (0: keep every event)"},
	{"fleet.max_msgs", "ENTD_FLEET_MAX_MSGS", "fleet-max-msgs", K_UINT, false,
	 OFF(fleet_max_msgs), 0, 2000000000,
	 "fleet mode: the stream entd creates keeps at most this many events (0: no limit)"},
	{"fleet.ready_wait_ms", "ENTD_FLEET_READY_WAIT_MS", "fleet-ready-wait-ms", K_DURATION,
	 false, OFF(fleet_ready_wait_ms), 0, 3600 * SEC,
	 "fleet mode: with serve_stale, become ready after this even if not caught up"},
	{"fleet.serve_stale", "ENTD_FLEET_SERVE_STALE", "fleet-serve-stale", K_BOOL, false,
	 OFF(fleet_serve_stale), 0, 0,
	 "fleet mode: after ready_wait_ms, serve before the first catch-up (flagged)"},
	{"fleet.full_sync", "ENTD_FLEET_FULL_SYNC", "fleet-full-sync", K_BOOL, false,
	 OFF(fleet_full_sync), 0, 0,
	 "fleet mode: fsync every commit fully (default: MDB_NOMETASYNC, the stream is durable)"},
	{"fleet.snapshot_bucket", "ENTD_FLEET_SNAPSHOT_BUCKET", "fleet-snapshot-bucket", K_STR,
	 false, OFF(fleet_snapshot_bucket), 0, 0,
	 "fleet mode: NATS object-store bucket of snapshots (bootstrap from it; publish to it)"},
	{"fleet.snapshot_interval_ms", "ENTD_FLEET_SNAPSHOT_INTERVAL_MS",
	 "fleet-snapshot-interval-ms", K_DURATION, false, OFF(fleet_snapshot_interval_ms), 0,
	 3660 * DAY,
	 "fleet mode: publish a snapshot this often (one replica per period; 0: never)"},
};
const size_t ent_config_n_settings = sizeof(ent_config_settings) / sizeof(ent_config_settings[0]);

const struct setting *ent_config_setting(const char *key)
{
	for (size_t i = 0; i < ent_config_n_settings; i++)
		if (!strcmp(ent_config_settings[i].key, key))
			return &ent_config_settings[i];
	return NULL;
}

static const struct setting *setting_by_flag(const char *flag, size_t len)
{
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const char *f = ent_config_settings[i].flag;
		if (f && strlen(f) == len && !strncmp(f, flag, len))
			return &ent_config_settings[i];
	}
	return NULL;
}

#define FIELD(cfg, s, type) ((type *)((char *)(cfg) + (s)->off))

void ent_config_err_append(struct ent_err *err, const char *fmt, ...)
{
	if (!err)
		return;
	size_t at = strnlen(err->msg, sizeof(err->msg));
	if (at + 1 >= sizeof(err->msg))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg + at, sizeof(err->msg) - at, fmt, ap);
	va_end(ap);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > 256 ? 256 : (unsigned)n;
}

void ent_config_listener_init(struct ent_config_listener *l)
{
	memset(l, 0, sizeof(*l));
	l->mode = -1;
	l->services = ENT_SVC_ALL;
}

void ent_config_listener_free(struct ent_config_listener *l)
{
	free(l->address);
	free(l->owner);
	free(l->group);
	free(l->cert_file);
	free(l->key_file);
	free(l->client_ca_file);
	ent_config_listener_init(l);
}

void ent_config_clear_listeners(struct ent_config *cfg)
{
	for (size_t i = 0; i < cfg->n_listeners; i++)
		ent_config_listener_free(&cfg->listeners[i]);
	free(cfg->listeners);
	cfg->listeners = NULL;
	cfg->n_listeners = 0;
}

int ent_config_add_listener(struct ent_config *cfg, const char *address, unsigned services)
{
	struct ent_config_listener *ls =
		realloc(cfg->listeners, (cfg->n_listeners + 1) * sizeof(*ls));
	if (!ls)
		return -ENT_ENOMEM;
	cfg->listeners = ls;
	struct ent_config_listener *l = &ls[cfg->n_listeners];
	ent_config_listener_init(l);
	l->services = services | ENT_SVC_HEALTH;
	if (!(l->address = strdup(address)))
		return -ENT_ENOMEM;
	cfg->n_listeners++;
	return 0;
}

int ent_config_set_str(char **dst, const char *src, bool empty_null)
{
	char *copy = NULL;
	if (src && (*src || !empty_null) && !(copy = strdup(src)))
		return -ENT_ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

void ent_config_defaults(struct ent_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* Allocation failures here leave NULLs that validate reports; nothing to unwind. */
	cfg->db_path = strdup("entd-data");
	cfg->map_size = 16 * GIB; /* address space only: LMDB grows the file as it fills */
	cfg->batched_walk = true;
	cfg->threads = online_cpus();
	ent_config_add_listener(cfg, "127.0.0.1:50051", ENT_SVC_ALL);
	cfg->max_message_bytes = 4 * MIB;
	/* A finite stream limit: gRPC's default is unbounded, and 20k never-ended streams on one
	   connection took 256 MB (docs/security.md). */
	cfg->max_concurrent_streams = 100;
	cfg->max_metadata_bytes = 16 * KIB;
	cfg->memory_bytes = 256 * MIB;
	cfg->compression = false;
	cfg->max_connection_idle_ms = 0;
	cfg->max_connection_age_ms = 0;
	cfg->verify_below = 1 * GIB;
	cfg->metrics_max_connections = 32;
	cfg->metrics_timeout_ms = 10 * SEC;
	/* gRPC's own server defaults, so that an empty config behaves like a plain gRPC server. */
	cfg->keepalive_time_ms = 2 * 3600 * 1000;
	cfg->keepalive_timeout_ms = 20 * 1000;
	cfg->keepalive_permit_without_calls = false;
	cfg->min_ping_interval_ms = 5 * 60 * 1000;
	cfg->grace_ms = 5 * 1000;
	cfg->log_level = ENT_LOG_INFO;
	cfg->log_format = ENT_LOG_LOGFMT;
	cfg->decision_log_sample_rate = 0;
	cfg->decision_log_path = strdup("stderr");
	cfg->metrics_listen = NULL;
	cfg->check_min_seq_wait_ms = 2 * 1000;
	cfg->check_min_seq_wait_max = 1024;
	cfg->writer_max_group = 1024;
	cfg->writer_nice = 10;
	cfg->writer_idem_retention_ms = 7 * 24 * 3600 * 1000LL;
	cfg->fleet_stream = strdup("ENTD_EVENTS");
	cfg->fleet_subject = strdup("entd.events");
	cfg->fleet_replicas = 1;
	cfg->fleet_connect_timeout_ms = 10 * 1000;
	cfg->fleet_publish_timeout_ms = 5 * 1000;
	cfg->fleet_ready_wait_ms = 60 * 1000;
	cfg->fleet_snapshot_bucket = strdup("entd_snapshots");
	cfg->fleet_snapshot_interval_ms = 0;
}

void ent_config_free(struct ent_config *cfg)
{
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		if (s->kind == K_STR || s->kind == K_SECRET) {
			char **p = FIELD(cfg, s, char *);
			if (s->kind == K_SECRET && *p)
				explicit_bzero(*p, strlen(*p));
			free(*p);
			*p = NULL;
		}
	}
	ent_config_clear_listeners(cfg);
	free(cfg->config_file);
	cfg->config_file = NULL;
}

static int dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	return src && !(*dst = strdup(src)) ? -ENT_ENOMEM : 0;
}

int ent_config_copy(struct ent_config *dst, const struct ent_config *src)
{
	*dst = *src;
	/* Detach every pointer first so a failure half-way leaves only owned ones to free. */
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		if (s->kind == K_STR || s->kind == K_SECRET)
			*FIELD(dst, s, char *) = NULL;
	}
	dst->config_file = NULL;
	dst->listeners = NULL;
	dst->n_listeners = 0;
	int rc = dup_opt(&dst->config_file, src->config_file);
	for (size_t i = 0; !rc && i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		if (s->kind == K_STR || s->kind == K_SECRET)
			rc = dup_opt(FIELD(dst, s, char *), *FIELD(src, s, char *const));
	}
	if (!rc && src->n_listeners) {
		dst->listeners = calloc(src->n_listeners, sizeof(*dst->listeners));
		rc = dst->listeners ? 0 : -ENT_ENOMEM;
	}
	for (size_t i = 0; !rc && i < src->n_listeners; i++) {
		const struct ent_config_listener *a = &src->listeners[i];
		struct ent_config_listener *b = &dst->listeners[i];
		*b = *a;
		b->address = b->owner = b->group = b->cert_file = b->key_file = b->client_ca_file =
			NULL;
		dst->n_listeners = i + 1;
		rc = dup_opt(&b->address, a->address) ?: dup_opt(&b->owner, a->owner)
			?: dup_opt(&b->group, a->group) ?: dup_opt(&b->cert_file, a->cert_file)
			?: dup_opt(&b->key_file, a->key_file)
			?: dup_opt(&b->client_ca_file, a->client_ca_file);
	}
	if (rc) {
		ent_config_free(dst);
		return rc;
	}
	return 0;
}

/* ---- values ----------------------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out)
{
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -ENT_EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -ENT_EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -ENT_EINVAL;
}

int ent_config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *sfx;
		uint64_t mul;
	} units[] = {
		/* Single letters and IEC names are binary, as in entd's first flags and LMDB
		 * practice ("64G" is 64 GiB); only the explicit SI names are decimal. */
		{"", 1},
		{"B", 1},
		{"K", KIB},
		{"k", KIB},
		{"Ki", KIB},
		{"KiB", KIB},
		{"M", MIB},
		{"m", MIB},
		{"Mi", MIB},
		{"MiB", MIB},
		{"G", GIB},
		{"g", GIB},
		{"Gi", GIB},
		{"GiB", GIB},
		{"T", TIB},
		{"t", TIB},
		{"Ti", TIB},
		{"TiB", TIB},
		{"kB", 1000},
		{"KB", 1000},
		{"MB", 1000000},
		{"GB", 1000000000},
		{"TB", 1000000000000},
	};

	if (!s || *s < '0' || *s > '9')
		return -ENT_EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -ENT_EINVAL;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].sfx))
			continue;
		if (v > UINT64_MAX / units[i].mul)
			return -ENT_EINVAL;
		*out = v * units[i].mul;
		return 0;
	}
	return -ENT_EINVAL;
}

int ent_config_parse_duration_ms(const char *s, int64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -ENT_EINVAL;
	uint64_t total = 0;
	const char *p = s;
	bool unitless = true;
	while (*p) {
		if (*p < '0' || *p > '9')
			return -ENT_EINVAL;
		char *end;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (errno)
			return -ENT_EINVAL;
		uint64_t mul;
		if (!*end) {
			/* A bare number is milliseconds, and only alone ("1h30" is a typo). */
			if (!unitless)
				return -ENT_EINVAL;
			mul = 1;
		} else if (!strncmp(end, "ms", 2)) {
			mul = 1;
			end += 2;
		} else if (*end == 's') {
			mul = SEC;
			end++;
		} else if (*end == 'm') {
			mul = 60 * SEC;
			end++;
		} else if (*end == 'h') {
			mul = 3600 * SEC;
			end++;
		} else if (*end == 'd') {
			mul = DAY;
			end++;
		} else {
			return -ENT_EINVAL;
		}
		unitless = false;
		if (v > (uint64_t)INT64_MAX / mul || total > (uint64_t)INT64_MAX - v * mul)
			return -ENT_EINVAL;
		total += v * mul;
		p = end;
	}
	*out = (int64_t)total;
	return 0;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int parse_level(const char *s, enum ent_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum ent_log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*out = ENT_LOG_WARN;
		return 0;
	}
	return -ENT_EINVAL;
}

int ent_config_parse_services(const char *s, unsigned *out)
{
	unsigned bits = 0;
	const char *p = s;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t n = strcspn(p, ", ");
		if (!n)
			break;
		if (n == 3 && !strncasecmp(p, "all", 3))
			bits |= ENT_SVC_ALL;
		else if (n == 6 && !strncasecmp(p, "checks", 6))
			bits |= ENT_SVC_CHECKS;
		else if (n == 5 && !strncasecmp(p, "admin", 5))
			bits |= ENT_SVC_ADMIN;
		else if (n == 6 && !strncasecmp(p, "health", 6))
			bits |= ENT_SVC_HEALTH;
		else
			return -ENT_EINVAL;
		p += n;
	}
	if (!bits)
		return -ENT_EINVAL;
	*out = bits | ENT_SVC_HEALTH;
	return 0;
}

const char *ent_config_services_name(unsigned services)
{
	switch (services | ENT_SVC_HEALTH) {
	case ENT_SVC_ALL:
		return "all";
	case ENT_SVC_HEALTH | ENT_SVC_CHECKS:
		return "checks";
	case ENT_SVC_HEALTH | ENT_SVC_ADMIN:
		return "admin";
	default:
		return "health";
	}
}

/* Split a comma-separated list of addresses into fresh listeners serving everything. */
static int set_listeners_text(struct ent_config *cfg, const char *text, const char *label,
			      const char *where, struct ent_err *err)
{
	ent_config_clear_listeners(cfg);
	const char *p = text;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t n = strcspn(p, ",");
		while (n && p[n - 1] == ' ')
			n--;
		if (!n)
			break;
		char *addr = strndup(p, n);
		int rc = addr ? ent_config_add_listener(cfg, addr, ENT_SVC_ALL) : -ENT_ENOMEM;
		free(addr);
		if (rc)
			return ent_err_set(err, ENT_ENOMEM, "%s: out of memory", label);
		p += n;
	}
	if (!cfg->n_listeners)
		return ent_err_set(err, ENT_EINVAL, "%s: no address given%s", label, where);
	return 0;
}

static void fmt_size(uint64_t v, char *buf, size_t len)
{
	static const struct {
		const char *sfx;
		uint64_t mul;
	} u[] = {{"TiB", TIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}};
	for (size_t i = 0; i < 4; i++) {
		if (v && v % u[i].mul == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(v / u[i].mul), u[i].sfx);
			return;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)v);
}

static void fmt_duration(int64_t v, char *buf, size_t len)
{
	static const struct {
		const char *sfx;
		int64_t mul;
	} u[] = {{"d", DAY}, {"h", 3600 * SEC}, {"m", 60 * SEC}, {"s", SEC}};
	for (size_t i = 0; i < 4; i++) {
		if (v && v % u[i].mul == 0) {
			snprintf(buf, len, "%lld%s", (long long)(v / u[i].mul), u[i].sfx);
			return;
		}
	}
	snprintf(buf, len, "%lldms", (long long)v);
}

static int range_err(const struct setting *s, const char *label, const char *text,
		     const char *where, struct ent_err *err)
{
	char lo[32], hi[32];
	if (s->kind == K_SIZE) {
		fmt_size(s->min, lo, sizeof(lo));
		fmt_size(s->max, hi, sizeof(hi));
	} else if (s->kind == K_DURATION) {
		fmt_duration((int64_t)s->min, lo, sizeof(lo));
		fmt_duration((int64_t)s->max, hi, sizeof(hi));
	} else {
		snprintf(lo, sizeof(lo), "%llu", (unsigned long long)s->min);
		snprintf(hi, sizeof(hi), "%llu", (unsigned long long)s->max);
	}
	return ent_err_set(err, ENT_EINVAL, "%s: %s is not in %s..%s%s", label, text, lo, hi,
			   where);
}

int ent_config_set_text(struct ent_config *cfg, const struct setting *s, const char *text,
			const char *label, const char *where, struct ent_err *err)
{
	uint64_t u;
	int64_t d;
	bool b;
	switch (s->kind) {
	case K_STR:
	case K_SECRET:
		if (ent_config_set_str(FIELD(cfg, s, char *), text, true))
			return ent_err_set(err, ENT_ENOMEM, "%s: out of memory", label);
		/* The credential has two spellings; the later source's choice wins. */
		if (*text && s->off == OFF(admin_token))
			ent_config_set_str(&cfg->admin_token_file, NULL, true);
		if (*text && s->off == OFF(admin_token_file))
			ent_config_set_str(&cfg->admin_token, NULL, true);
		return 0;
	case K_SIZE:
		if (ent_config_parse_size(text, &u))
			return ent_err_set(err, ENT_EINVAL,
					   "%s: '%s' is not a size (bytes, or a number with a "
					   "suffix such as 4MiB)%s",
					   label, text, where);
		if (u < s->min || u > s->max)
			return range_err(s, label, text, where, err);
		*FIELD(cfg, s, uint64_t) = u;
		return 0;
	case K_DURATION:
		if (ent_config_parse_duration_ms(text, &d))
			return ent_err_set(
				err, ENT_EINVAL,
				"%s: '%s' is not a duration (milliseconds, or with units "
				"such as 500ms, 10s, 5m, 2h, 7d)%s",
				label, text, where);
		if ((uint64_t)d < s->min || (uint64_t)d > s->max)
			return range_err(s, label, text, where, err);
		*FIELD(cfg, s, int64_t) = d;
		return 0;
	case K_UINT:
	case K_THREADS:
		if (s->kind == K_THREADS && !strcasecmp(text, "auto")) {
			*FIELD(cfg, s, unsigned) = online_cpus();
			return 0;
		}
		if (parse_u64(text, &u))
			return ent_err_set(
				err, ENT_EINVAL, "%s: '%s' is not %s%s", label, text,
				s->kind == K_THREADS ? "an integer or auto" : "an integer", where);
		if (u < s->min || u > s->max)
			return range_err(s, label, text, where, err);
		*FIELD(cfg, s, unsigned) = (unsigned)u;
		return 0;
	case K_BOOL:
		if (parse_bool(text, &b))
			return ent_err_set(err, ENT_EINVAL, "%s: '%s' is not true or false%s",
					   label, text, where);
		*FIELD(cfg, s, bool) = b;
		return 0;
	case K_RATE: {
		char *end;
		errno = 0;
		double r = strtod(text, &end);
		if (!*text || *end || errno || !(r >= 0.0 && r <= 1.0))
			return ent_err_set(err, ENT_EINVAL, "%s: '%s' is not a number in 0..1%s",
					   label, text, where);
		*FIELD(cfg, s, double) = r;
		return 0;
	}
	case K_LEVEL:
		if (parse_level(text, FIELD(cfg, s, enum ent_log_level)))
			return ent_err_set(err, ENT_EINVAL,
					   "%s: '%s' is not debug, info, warn or error%s", label,
					   text, where);
		return 0;
	case K_FORMAT:
		if (!strcasecmp(text, "logfmt") || !strcasecmp(text, "text"))
			*FIELD(cfg, s, enum ent_config_log_format) = ENT_LOG_LOGFMT;
		else if (!strcasecmp(text, "json"))
			*FIELD(cfg, s, enum ent_config_log_format) = ENT_LOG_JSON;
		else
			return ent_err_set(err, ENT_EINVAL, "%s: '%s' is not logfmt or json%s",
					   label, text, where);
		return 0;
	case K_LISTEN:
		return set_listeners_text(cfg, text, label, where, err);
	}
	return ent_err_set(err, ENT_EINVAL, "%s: unsupported setting", label);
}

/* ---- environment ------------------------------------------------------------------------ */

static const char *real_getenv(void *ctx, const char *name)
{
	(void)ctx;
	return getenv(name);
}

int ent_config_apply_env(struct ent_config *cfg, ent_config_getenv_fn get, void *ctx,
			 struct ent_err *err)
{
	if (!get)
		get = real_getenv;
	const char *tok = get(ctx, "ENTD_ADMIN_TOKEN"),
		   *tok_file = get(ctx, "ENTD_ADMIN_TOKEN_FILE");
	if (tok && *tok && tok_file && *tok_file)
		return ent_err_set(err, ENT_EINVAL,
				   "admin.token: ENTD_ADMIN_TOKEN and ENTD_ADMIN_TOKEN_FILE are "
				   "both set; use one");
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		const char *v = s->env ? get(ctx, s->env) : NULL;
		if (!v)
			continue;
		char where[64];
		snprintf(where, sizeof(where), " (from %s)", s->env);
		int rc = ent_config_set_text(cfg, s, v, s->key, where, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- flags ------------------------------------------------------------------------------ */

/* Flags that are not settings. */
enum {
	F_CONFIG = 1,
	F_CHECK,
	F_PRINT,
	F_HELP,
	F_VERSION,
	F_LOG_JSON
};

static int special_flag(const char *name, size_t len)
{
	static const struct {
		const char *name;
		int id;
	} f[] = {{"config", F_CONFIG}, {"check-config", F_CHECK}, {"print-config", F_PRINT},
		 {"help", F_HELP},     {"version", F_VERSION},	  {"log-json", F_LOG_JSON}};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strlen(f[i].name) == len && !strncmp(f[i].name, name, len))
			return f[i].id;
	return 0;
}

int ent_config_apply_flags(struct ent_config *cfg, int argc, char *const *argv, struct ent_err *err)
{
	bool listen_seen = false, token_seen = false, token_file_seen = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h")) {
			cfg->action = ENT_CONFIG_HELP;
			continue;
		}
		if (!strcmp(a, "-V")) {
			cfg->action = ENT_CONFIG_VERSION;
			continue;
		}
		if (!strcmp(a, "-c")) {
			if (++i >= argc)
				return ent_err_set(err, ENT_EINVAL, "-c: needs a file name");
			continue;
		}
		if (strncmp(a, "--", 2) || !a[2])
			return ent_err_set(err, ENT_EINVAL,
					   "'%s': unexpected argument (flags are --name value or "
					   "--name=value; see --help)",
					   a);
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const char *value = eq ? eq + 1 : NULL;

		int special = special_flag(name, len);
		if (special == F_HELP || special == F_VERSION || special == F_PRINT) {
			if (value)
				return ent_err_set(err, ENT_EINVAL, "--%.*s: takes no value",
						   (int)len, name);
			cfg->action = special == F_HELP	     ? ENT_CONFIG_HELP
				      : special == F_VERSION ? ENT_CONFIG_VERSION
							     : ENT_CONFIG_PRINT;
			continue;
		}

		if (special == F_LOG_JSON) {
			/* Kept from entd's first command line: the same as --log-format json. */
			if (value)
				return ent_err_set(err, ENT_EINVAL, "--log-json: takes no value");
			cfg->log_format = ENT_LOG_JSON;
			continue;
		}
		const struct setting *s = special ? NULL : setting_by_flag(name, len);
		bool negated = false;
		if (!special && !s && len > 3 && !strncmp(name, "no-", 3)) {
			s = setting_by_flag(name + 3, len - 3);
			if (s && s->kind != K_BOOL)
				s = NULL;
			negated = s != NULL;
		}
		if (!special && !s)
			return ent_err_set(err, ENT_EINVAL, "--%.*s: unknown flag (see --help)",
					   (int)len, name);
		if (negated) {
			if (value)
				return ent_err_set(err, ENT_EINVAL, "--%.*s: takes no value",
						   (int)len, name);
			*FIELD(cfg, s, bool) = false;
			continue;
		}
		if (!value && s && s->kind == K_BOOL) {
			*FIELD(cfg, s, bool) = true;
			continue;
		}
		if (!value) {
			if (++i >= argc)
				return ent_err_set(err, ENT_EINVAL, "--%.*s: needs a value",
						   (int)len, name);
			value = argv[i];
		}
		if (special == F_CONFIG)
			continue; /* read by ent_config_build before the other sources */
		if (special == F_CHECK) {
			cfg->action = ENT_CONFIG_CHECK;
			continue;
		}

		char where[80];
		snprintf(where, sizeof(where), " (from --%s)", s->flag);
		int rc;
		if (s->kind == K_LISTEN) {
			/* The first --listen replaces the list from the file and the environment;
			 * the following ones add to it. */
			if (!listen_seen)
				ent_config_clear_listeners(cfg);
			listen_seen = true;
			rc = ent_config_add_listener(cfg, value, ENT_SVC_ALL);
			if (rc)
				return ent_err_set(err, ENT_ENOMEM, "--listen: out of memory");
			if (!*value)
				return ent_err_set(err, ENT_EINVAL, "listeners: no address given%s",
						   where);
			continue;
		}
		token_seen |= s->off == OFF(admin_token) && *value;
		token_file_seen |= s->off == OFF(admin_token_file) && *value;
		if (token_seen && token_file_seen)
			return ent_err_set(err, ENT_EINVAL,
					   "admin.token: --admin-token and --admin-token-file are "
					   "both given; use one");
		rc = ent_config_set_text(cfg, s, value, s->key, where, err);
		if (rc)
			return rc;
	}
	return 0;
}

const char *ent_config_find_file(int argc, char *const *argv, ent_config_getenv_fn get, void *ctx)
{
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "--check-config")) {
			if (i + 1 < argc)
				file = argv[++i];
		} else if (!strncmp(a, "--config=", 9)) {
			file = a + 9;
		} else if (!strncmp(a, "--check-config=", 15)) {
			file = a + 15;
		} else if (!strncmp(a, "--", 2) && !strchr(a, '=')) {
			/* Skip the value of a valued flag so "--db --config" is not misread. */
			const struct setting *s = setting_by_flag(a + 2, strlen(a + 2));
			if (s && s->kind != K_BOOL)
				i++;
		}
	}
	if (file)
		return file;
	const char *env = (get ? get : real_getenv)(ctx, "ENTD_CONFIG");
	return env && *env ? env : NULL;
}

int ent_config_build(struct ent_config *cfg, int argc, char *const *argv, ent_config_getenv_fn get,
		     void *ctx, struct ent_err *err)
{
	ent_config_defaults(cfg);
	const char *file = ent_config_find_file(argc, argv, get, ctx);
	int rc = 0;
	if (file) {
		rc = ent_config_load_file(cfg, file, err);
		if (!rc && ent_config_set_str(&cfg->config_file, file, true))
			rc = ent_err_set(err, ENT_ENOMEM, "out of memory");
	}
	if (!rc)
		rc = ent_config_apply_env(cfg, get, ctx, err);
	if (!rc)
		rc = ent_config_apply_flags(cfg, argc, argv, err);
	if (!rc && cfg->action != ENT_CONFIG_HELP && cfg->action != ENT_CONFIG_VERSION)
		rc = ent_config_validate(cfg, err);
	if (rc)
		ent_config_free(cfg);
	return rc;
}

/* ---- reload ----------------------------------------------------------------------------- */

static bool str_differs(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

static bool listeners_differ(const struct ent_config *a, const struct ent_config *b)
{
	if (a->n_listeners != b->n_listeners)
		return true;
	for (size_t i = 0; i < a->n_listeners; i++) {
		const struct ent_config_listener *x = &a->listeners[i], *y = &b->listeners[i];
		/* TLS file paths are not compared: certificates are re-read on SIGHUP. */
		if (str_differs(x->address, y->address) || x->services != y->services ||
		    x->mode != y->mode || str_differs(x->owner, y->owner) ||
		    str_differs(x->group, y->group) || x->tls != y->tls ||
		    x->require_client_cert != y->require_client_cert ||
		    (!x->client_ca_file) != (!y->client_ca_file))
			return true;
	}
	return false;
}

size_t ent_config_reloadable_diff(const struct ent_config *old, const struct ent_config *cur,
				  const char **keys, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		if (s->reloadable)
			continue;
		bool differs;
		switch (s->kind) {
		case K_STR:
		case K_SECRET:
			differs = str_differs(*FIELD(old, s, char *const),
					      *FIELD(cur, s, char *const));
			break;
		case K_SIZE:
			differs = *FIELD(old, s, const uint64_t) != *FIELD(cur, s, const uint64_t);
			break;
		case K_DURATION:
			differs = *FIELD(old, s, const int64_t) != *FIELD(cur, s, const int64_t);
			break;
		case K_UINT:
		case K_THREADS:
			differs = *FIELD(old, s, const unsigned) != *FIELD(cur, s, const unsigned);
			break;
		case K_BOOL:
			differs = *FIELD(old, s, const bool) != *FIELD(cur, s, const bool);
			break;
		case K_RATE:
			differs = *FIELD(old, s, const double) != *FIELD(cur, s, const double);
			break;
		case K_LISTEN:
			differs = listeners_differ(old, cur);
			break;
		default:
			differs = false; /* enums here are all reloadable */
			break;
		}
		if (differs) {
			if (n < cap)
				keys[n] = s->key;
			n++;
		}
	}
	return n;
}

/* ---- dump and usage --------------------------------------------------------------------- */

/* A YAML double-quoted scalar. */
static void put_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void dump_listener(const struct ent_config_listener *l, FILE *out)
{
	fprintf(out, "  - address: ");
	put_quoted(out, l->address);
	fprintf(out, "\n    services: %s\n", ent_config_services_name(l->services));
	if (l->mode >= 0)
		fprintf(out, "    mode: \"%04o\"\n", (unsigned)l->mode);
	if (l->owner) {
		fprintf(out, "    owner: ");
		put_quoted(out, l->owner);
		fputc('\n', out);
	}
	if (l->group) {
		fprintf(out, "    group: ");
		put_quoted(out, l->group);
		fputc('\n', out);
	}
	if (l->tls) {
		fprintf(out, "    tls:\n      cert_file: ");
		put_quoted(out, l->cert_file);
		fprintf(out, "\n      key_file: ");
		put_quoted(out, l->key_file);
		fputc('\n', out);
		if (l->client_ca_file) {
			fprintf(out, "      client_ca_file: ");
			put_quoted(out, l->client_ca_file);
			fputc('\n', out);
		}
		fprintf(out, "      require_client_cert: %s\n",
			l->require_client_cert ? "true" : "false");
	}
}

void ent_config_dump(const struct ent_config *cfg, FILE *out)
{
	char section[32] = "";
	if (cfg->config_file)
		fprintf(out, "# effective entd configuration (file %s)\n", cfg->config_file);
	else
		fprintf(out, "# effective entd configuration\n");
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		const char *dot = strchr(s->key, '.');
		const char *leaf = dot ? dot + 1 : s->key;
		const char *indent = dot ? "  " : "";
		if (dot) {
			size_t n = (size_t)(dot - s->key);
			if (strlen(section) != n || strncmp(section, s->key, n)) {
				snprintf(section, sizeof(section), "%.*s", (int)n, s->key);
				fprintf(out, "%s:\n", section);
			}
		} else {
			section[0] = 0;
		}
		char buf[64];
		switch (s->kind) {
		case K_STR: {
			const char *v = *FIELD(cfg, s, char *const);
			/* A token read from its file is shown by the file's name only. */
			if (s->off == OFF(admin_token_file) && !v)
				continue;
			fprintf(out, "%s%s: ", indent, leaf);
			put_quoted(out, v ? v : "");
			fputc('\n', out);
			break;
		}
		case K_SECRET: {
			const char *v = *FIELD(cfg, s, char *const);
			if (cfg->admin_token_file)
				continue;
			fprintf(out, "%s%s: \"%s\"\n", indent, leaf, v && *v ? "<set>" : "");
			break;
		}
		case K_SIZE:
			fmt_size(*FIELD(cfg, s, const uint64_t), buf, sizeof(buf));
			fprintf(out, "%s%s: %s\n", indent, leaf, buf);
			break;
		case K_DURATION:
			fmt_duration(*FIELD(cfg, s, const int64_t), buf, sizeof(buf));
			fprintf(out, "%s%s: %s\n", indent, leaf, buf);
			break;
		case K_UINT:
		case K_THREADS:
			fprintf(out, "%s%s: %u\n", indent, leaf, *FIELD(cfg, s, const unsigned));
			break;
		case K_BOOL:
			fprintf(out, "%s%s: %s\n", indent, leaf,
				*FIELD(cfg, s, const bool) ? "true" : "false");
			break;
		case K_RATE:
			fprintf(out, "%s%s: %g\n", indent, leaf, *FIELD(cfg, s, const double));
			break;
		case K_LEVEL:
			fprintf(out, "%s%s: %s\n", indent, leaf,
				level_names[*FIELD(cfg, s, const enum ent_log_level) & 3]);
			break;
		case K_FORMAT:
			fprintf(out, "%s%s: %s\n", indent, leaf,
				*FIELD(cfg, s, const enum ent_config_log_format) == ENT_LOG_JSON
					? "json"
					: "logfmt");
			break;
		case K_LISTEN:
			fprintf(out, "listeners:%s\n", cfg->n_listeners ? "" : " []");
			for (size_t j = 0; j < cfg->n_listeners; j++)
				dump_listener(&cfg->listeners[j], out);
			break;
		}
	}
}

void ent_config_usage(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [--config FILE] [flags]\n"
		"       %s --check-config FILE\n\n"
		"Settings come from the defaults, then the YAML file (--config FILE or ENTD_CONFIG),\n"
		"then ENTD_* variables, then flags: a later source wins. docs/configuration.md has\n"
		"the details.\n\n"
		"  -c, --config FILE            the YAML config file\n"
		"      --check-config FILE      validate FILE (with env and flags) and exit\n"
		"      --print-config           print the effective config (secrets hidden) and exit\n"
		"      --log-json               the same as --log-format json\n"
		"  -h, --help                   this text\n"
		"  -V, --version                print the version\n\n",
		prog, prog);
	for (size_t i = 0; i < ent_config_n_settings; i++) {
		const struct setting *s = &ent_config_settings[i];
		char flag[64];
		snprintf(flag, sizeof(flag), "--%s%s", s->flag, s->kind == K_BOOL ? "" : " V");
		fprintf(out, "      %-36s %s\n          %s (%s)\n", flag, s->env ? s->env : "",
			s->help, s->key);
	}
}
