/*
 * entd: the entitlement check daemon. Wiring and start/stop order only.
 *
 * Config: ent_config_build (defaults < file < environment < flags, then validation);
 * --check-config, --print-config, --help and --version stop there.
 *
 * Start: block SIGINT/SIGTERM/SIGHUP (every thread started later, gRPC's, the writer's and the
 * metrics endpoint's included, inherits the mask, so only sigwait below sees them), open the
 * store, start the writer, start the metrics endpoint (not ready yet), start the RPC server,
 * wait for a signal.
 *
 * SIGHUP: build the config again from the same sources; if it is valid, apply what can change
 * at run time (log level and format, admin credential, TLS certificates, decision log rate and
 * file) and log every other changed setting as needing a restart. An invalid config is logged
 * and the running one stays.
 *
 * Stop: NOT_SERVING first (health watchers, /readyz and load balancers learn before anything
 * closes), stop RPC within the grace period (in-flight writes still reach the running writer),
 * stop the metrics endpoint, stop the writer (it finishes its queue), close the store, exit 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <grpc/grpc.h>

#include "ent/config.h"
#include "ent/metrics.h"
#include "ent/rpc.h"
#include "ent/store.h"
#include "ent/sync.h"
#include "ent/util.h"
#include "ent/writer.h"
#include "sync/snapshot.h"

/*
 * What the metrics endpoint's thread may look at. The gauge and readiness callbacks run on
 * that thread and take mu while they use rpc; main takes mu to set draining before
 * ent_rpc_stop frees the server, so no callback can use it after that.
 */
struct daemon {
	struct ent_config cfg; /**< the running configuration (reloadable parts patched) */
	int argc;
	char **args; /**< a private copy of argv: the real one has its secrets scrubbed */
	struct ent_store *store;
	struct ent_writer *writer;
	struct ent_fleet *fleet;	     /**< fleet mode, or NULL */
	struct ent_snapshotter *snapshotter; /**< fleet mode with snapshot_interval_ms */
	bool fleet_serving;  /**< main thread: health says SERVING on the fleet's account */
	struct ent_rpc *rpc; /**< under mu */
	struct ent_metrics *metrics;
	struct ent_decision_log *dlog;
	pthread_mutex_t mu;
	bool draining; /**< under mu */
};

/* ---- arguments ------------------------------------------------------------------------- */

static char **copy_args(int argc, char **argv)
{
	char **v = calloc((size_t)argc + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (int i = 0; i < argc; i++) {
		if (!(v[i] = strdup(argv[i]))) {
			while (i--)
				free(v[i]);
			free(v);
			return NULL;
		}
	}
	return v;
}

static void free_args(int argc, char **v)
{
	if (!v)
		return;
	for (int i = 0; i < argc; i++) {
		if (v[i])
			explicit_bzero(v[i], strlen(v[i]));
		free(v[i]);
	}
	free(v);
}

/* Keep a token given on the command line out of ps(1) and /proc/PID/cmdline. */
static void scrub_secrets(int argc, char **argv)
{
	static const char flag[] = "--admin-token";
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (!strcmp(a, flag) && i + 1 < argc)
			memset(argv[i + 1], 'x', strlen(argv[i + 1]));
		else if (!strncmp(a, flag, sizeof(flag) - 1) && a[sizeof(flag) - 1] == '=')
			memset(a + sizeof(flag), 'x', strlen(a + sizeof(flag)));
	}
}

/* ---- metrics callbacks (metrics endpoint thread) ---------------------------------------- */

static void fill_gauges(void *ctx, struct ent_metrics_gauges *g)
{
	struct daemon *d = ctx;
	struct ent_store_stats st;
	if (ent_store_stats(d->store, &st) == 0)
		ent_metrics_fill_store(g, &st, ent_time_now_ms());
	struct ent_writer_stats ws;
	ent_writer_get_stats(d->writer, &ws);
	ent_metrics_fill_writer(g, &ws);
	if (d->fleet) {
		struct ent_fleet_stats fs;
		ent_sync_fleet_get_stats(d->fleet, &fs);
		g->sync_lag = (double)fs.lag;
		g->sync_last_heard_seconds = fs.last_heard_ms < 0 ? NAN : fs.last_heard_ms / 1000.0;
		g->sync_connected = fs.connected;
		g->sync_degraded =
			!fs.connected || fs.hole || fs.rebootstrapping || fs.stream_changed;
		g->sync_caught_up = fs.caught_up;
		g->sync_applied_seq = (double)fs.applied_seq;
		g->sync_skipped_total = (double)fs.skipped;
		g->sync_published_total = (double)fs.published;
		g->sync_publish_failed_total = (double)fs.publish_failed;
		g->sync_reconnects_total = (double)fs.reconnects;
		g->sync_rebootstraps_total = (double)fs.rebootstraps;
		g->sync_rebootstrap_failed_total = (double)fs.rebootstrap_failed;
	}
	if (d->snapshotter) {
		struct ent_snapshotter_stats ss;
		ent_sync_snapshotter_get_stats(d->snapshotter, &ss);
		g->sync_snapshots_published_total = (double)ss.published;
		g->sync_snapshot_failed_total = (double)ss.failed;
		g->sync_snapshot_last_timestamp_seconds = (double)ss.last_ms / 1000.0;
	}
	pthread_mutex_lock(&d->mu);
	if (d->rpc && !d->draining) {
		g->open_calls = (double)ent_rpc_open_calls(d->rpc);
		g->serving = ent_rpc_serving(d->rpc) ? 1 : 0;
	} else {
		g->serving = 0;
	}
	pthread_mutex_unlock(&d->mu);
}

static bool is_ready(void *ctx, char *why, size_t len)
{
	struct daemon *d = ctx;
	pthread_mutex_lock(&d->mu);
	bool ready = false;
	if (d->draining)
		snprintf(why, len, "shutting down");
	else if (!d->rpc)
		snprintf(why, len, "starting");
	else if (!(ready = ent_rpc_serving(d->rpc))) {
		struct ent_fleet_stats fs;
		if (d->fleet) {
			ent_sync_fleet_get_stats(d->fleet, &fs);
			snprintf(why, len, "fleet: %s (applied %" PRIu64 " of %" PRIu64 ")",
				 ent_sync_fleet_state_name(&fs), fs.applied_seq, fs.head_seq);
		} else {
			snprintf(why, len, "not serving");
		}
	}
	pthread_mutex_unlock(&d->mu);
	return ready;
}

/* ---- start-up ---------------------------------------------------------------------------- */

/*
 * db.verify_below: a database up to that size is checked page by page and record by record
 * before anything is served (ent_store_verify; ~0.4 s for 20k customers, docs/security.md), so
 * a damaged file is refused at start with the problem named instead of being served or
 * aborting on the first read of a bad page. Bigger ones start at once: run `entctl verify`
 * beside the daemon instead.
 */
static int verify_at_start(struct daemon *d)
{
	/* The file's size, not ent_store_stats: that reads the tables, which may be the damage. */
	char path[4096];
	struct stat fst;
	snprintf(path, sizeof(path), "%s/data.mdb", d->cfg.db_path);
	if (!d->cfg.verify_below || stat(path, &fst) != 0 ||
	    (uint64_t)fst.st_size > d->cfg.verify_below)
		return 0;
	int64_t t0 = ent_time_now_ms();
	struct ent_store_verify_report r;
	int rc = ent_store_verify(d->store, &r);
	char ms[24], recs[24];
	snprintf(ms, sizeof(ms), "%lld", (long long)(ent_time_now_ms() - t0));
	snprintf(recs, sizeof(recs), "%" PRIu64, r.records);
	if (rc == -ENT_ECORRUPT) {
		ent_log(ENT_LOG_ERROR,
			"the database is damaged; refusing to serve it (restore it from a snapshot; "
			"entctl verify names the problem)",
			"db", d->cfg.db_path, "problem", r.first, NULL);
		return rc;
	}
	if (rc) {
		ent_log(ENT_LOG_ERROR, "cannot verify the database", "db", d->cfg.db_path, "error",
			ent_err_strerror(rc), NULL);
		return rc;
	}
	ent_log(ENT_LOG_INFO, "database verified", "records", recs, "ms", ms, NULL);
	return 0;
}

static int start_metrics(struct daemon *d)
{
	const char *names[512];
	size_t n = ent_rpc_method_names(names, 512);
	if (n > 512) {
		ent_log(ENT_LOG_ERROR, "metrics: too many methods", NULL);
		return -ENT_EINVAL;
	}
	int rc = ent_metrics_new(names, n, &d->metrics);
	if (rc) {
		ent_log(ENT_LOG_ERROR, "metrics: cannot start", "error", ent_err_strerror(rc),
			NULL);
		return rc;
	}
	ent_metrics_set_gauge_cb(d->metrics, fill_gauges, d);
	struct ent_err err = {0};
	ent_metrics_set_limits(d->metrics, d->cfg.metrics_max_connections,
			       (unsigned)((d->cfg.metrics_timeout_ms + 999) / 1000));
	if ((rc = ent_metrics_serve(d->metrics, d->cfg.metrics_listen, is_ready, d, &err))) {
		ent_log(ENT_LOG_ERROR, "cannot start the metrics endpoint", "error", err.msg, NULL);
		return rc;
	}
	char port[16];
	snprintf(port, sizeof(port), "%u", ent_metrics_port(d->metrics));
	ent_log(ENT_LOG_INFO, "metrics endpoint listening", "listen", d->cfg.metrics_listen, "port",
		port, NULL);
	return 0;
}

static int open_decision_log(struct daemon *d, double rate)
{
	struct ent_err err = {0};
	int rc = ent_metrics_decision_log_open(d->cfg.decision_log_path, rate,
					       d->cfg.log_format == ENT_LOG_JSON, &d->dlog, &err);
	if (rc)
		ent_log(ENT_LOG_ERROR, "cannot open the decision log", "error", err.msg, NULL);
	return rc;
}

/* "unix:/run/entd/entd.sock(all),0.0.0.0:50443(checks,tls,mtls)" for the start line. */
static void describe_listeners(const struct ent_config *c, char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = 0;
	for (size_t i = 0; i < c->n_listeners && at < len; i++) {
		const struct ent_config_listener *l = &c->listeners[i];
		at += (size_t)snprintf(buf + at, len - at, "%s%s(%s%s%s)", i ? "," : "", l->address,
				       ent_config_services_name(l->services), l->tls ? ",tls" : "",
				       l->require_client_cert ? ",mtls" : "");
	}
}

/* ---- SIGHUP ---------------------------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
	return (!a || !*a) ? (!b || !*b) : (b && !strcmp(a, b));
}

static int set_str(char **dst, const char *src)
{
	char *copy = src ? strdup(src) : NULL;
	if (src && !copy)
		return -ENT_ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

static void reload(struct daemon *d)
{
	struct ent_config nc;
	struct ent_err err = {0};
	ent_log(ENT_LOG_INFO, "reloading the configuration", "signal", "SIGHUP", NULL);
	if (ent_config_build(&nc, d->argc, d->args, NULL, NULL, &err)) {
		ent_log(ENT_LOG_WARN,
			"reload refused: the configuration is invalid; keeping the "
			"running one",
			"error", err.msg, NULL);
		return;
	}
	struct ent_config *c = &d->cfg;
	const char *keys[32];
	size_t n = ent_config_reloadable_diff(c, &nc, keys, 32);
	for (size_t i = 0; i < n && i < 32; i++)
		ent_log(ENT_LOG_WARN, "setting changed; restart to apply", "key", keys[i], NULL);

	char changed[256] = "";
#define CHANGED(k)                                                                                 \
	snprintf(changed + strlen(changed), sizeof(changed) - strlen(changed), "%s%s",             \
		 changed[0] ? "," : "", k)
	if (nc.log_level != c->log_level || nc.log_format != c->log_format) {
		ent_log_setup(nc.log_level, nc.log_format == ENT_LOG_JSON);
		if (nc.log_level != c->log_level)
			CHANGED("log.level");
		if (nc.log_format != c->log_format)
			CHANGED("log.format");
		c->log_level = nc.log_level;
		c->log_format = nc.log_format;
	}

	/* The token is compared here only to say whether it changed; never logged. */
	if (!str_eq(nc.admin_token, c->admin_token)) {
		if (ent_rpc_set_admin_token(d->rpc, nc.admin_token) == 0) {
			if (c->admin_token)
				explicit_bzero(c->admin_token, strlen(c->admin_token));
			free(c->admin_token);
			c->admin_token = nc.admin_token;
			nc.admin_token = NULL;
			CHANGED("admin.token");
			ent_log(ENT_LOG_INFO, "admin credential replaced", "admin",
				c->admin_token ? "enabled" : "disabled", NULL);
		} else {
			ent_log(ENT_LOG_WARN, "admin credential not replaced: out of memory", NULL);
		}
	}

	if (!str_eq(nc.admin_token_file, c->admin_token_file) &&
	    set_str(&c->admin_token_file, nc.admin_token_file) == 0)
		CHANGED("admin.token_file");

	int tls = ent_rpc_reload_tls(d->rpc, nc.listeners, nc.n_listeners, &err);
	if (tls < 0)
		ent_log(ENT_LOG_WARN, "tls certificates not reloaded; the running ones stay",
			"error", err.msg, NULL);
	else if (tls > 0)
		CHANGED("tls");

	double rate = nc.decision_log_sample_rate;
	if (rate != c->decision_log_sample_rate) {
		if (d->dlog) {
			ent_metrics_decision_log_set_rate(d->dlog, rate);
		} else if (open_decision_log(d, rate) == 0) {
			ent_rpc_set_decision_log(d->rpc, d->dlog);
		}
		c->decision_log_sample_rate = rate;
		CHANGED("decision_log.sample_rate");
	}
	if (d->dlog && ent_metrics_decision_log_reopen(d->dlog, &err))
		ent_log(ENT_LOG_WARN, "decision log not re-opened", "error", err.msg, NULL);
#undef CHANGED
	ent_log(ENT_LOG_INFO, "configuration reloaded", "applied", changed[0] ? changed : "nothing",
		"restart_needed", n ? "yes" : "no", NULL);
	ent_config_free(&nc);
}

/* ---- fleet mode ------------------------------------------------------------------------- */

static int open_fleet(struct daemon *d)
{
	struct ent_err err = {0};
	const struct ent_config *c = &d->cfg;
	struct ent_fleet_opts fo = {
		.urls = c->fleet_nats,
		.stream = c->fleet_stream,
		.subject = c->fleet_subject,
		.replicas = c->fleet_replicas,
		.creds_file = c->fleet_creds_file,
		.tls_ca_file = c->fleet_tls_ca_file,
		.tls_cert_file = c->fleet_tls_cert_file,
		.tls_key_file = c->fleet_tls_key_file,
		.connect_timeout_ms = c->fleet_connect_timeout_ms,
		.max_age_ms = c->fleet_max_age_ms,
		.publish_timeout_ms = c->fleet_publish_timeout_ms,
		.max_msgs = c->fleet_max_msgs,
		.snapshot_bucket = c->fleet_snapshot_bucket,
		.db_path = c->db_path,
	};
	if (ent_sync_fleet_open(&fo, &d->fleet, &err)) {
		ent_log(ENT_LOG_ERROR, "fleet: cannot start", "error", err.msg, NULL);
		return -1;
	}
	return 0;
}

static bool has_database(const char *dir)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	return stat(path, &st) == 0 && st.st_size > 0;
}

/*
 * A new replica (no data.mdb yet) starts from the newest snapshot of the bucket, fetched and
 * verified before the database is opened; with none (a new fleet) it starts empty and applies
 * the stream from its first message. A snapshot of another stream is not used.
 */
static int bootstrap(struct daemon *d)
{
	if (has_database(d->cfg.db_path))
		return 0;
	struct ent_err err = {0};
	struct ent_sync_snapshot_info info;
	jsCtx *js = ent_sync_fleet_js(d->fleet);
	int rc = ent_sync_snapshot_info(js, d->cfg.fleet_snapshot_bucket, NULL, &info, &err);
	if (rc == -ENT_ENOTFOUND) {
		ent_log(ENT_LOG_INFO, "fleet: no snapshot yet; starting empty", "bucket",
			d->cfg.fleet_snapshot_bucket, NULL);
		return 0;
	}
	struct ent_fleet_stats fs;
	ent_sync_fleet_get_stats(d->fleet, &fs);
	if (rc == 0 && strcmp(info.stream, fs.identity) != 0) {
		ent_log(ENT_LOG_WARN,
			"fleet: the newest snapshot follows another stream; starting empty",
			"snapshot_stream", info.stream, "stream", fs.identity, NULL);
		return 0;
	}
	mkdir(d->cfg.db_path, 0755);
	int64_t t0 = ent_time_now_ms();
	uint64_t seq = 0;
	if (rc == 0)
		rc = ent_sync_snapshot_fetch(js, d->cfg.fleet_snapshot_bucket, d->cfg.db_path, &seq,
					     &err);
	if (rc) {
		ent_log(ENT_LOG_ERROR, "fleet: cannot bootstrap from the snapshot", "error",
			err.msg, NULL);
		return -1;
	}
	char s[24], secs[24], bytes[24];
	snprintf(s, sizeof(s), "%" PRIu64, seq);
	snprintf(secs, sizeof(secs), "%.2f", (double)(ent_time_now_ms() - t0) / 1000.0);
	snprintf(bytes, sizeof(bytes), "%" PRIu64, info.size);
	ent_log(ENT_LOG_INFO, "fleet: bootstrapped from the snapshot", "bucket",
		d->cfg.fleet_snapshot_bucket, "seq", s, "bytes", bytes, "seconds", secs, NULL);
	return 0;
}

/*
 * The opened database must follow this stream with no hole. Behind the stream's retention it
 * is replaced by a snapshot at or past the stream's first sequence - 1 (ent_sync_snapshot_restore:
 * the old directory stays as it was unless the new copy is complete and verified), then
 * reopened. Anything else (embedded-mode data, another stream) is refused: an operator
 * decides.
 */
static int open_replica(struct daemon *d, const struct ent_store_opts *so)
{
	struct ent_err err = {0};
	if (ent_store_open(so, &d->store, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot open the store", "db", d->cfg.db_path, "error",
			err.msg, NULL);
		return -1;
	}
	uint64_t first = 0;
	int rc = ent_sync_fleet_check_store(d->fleet, d->store, &first, &err);
	if (!rc || !first) {
		if (rc)
			ent_log(ENT_LOG_ERROR, "fleet: the database cannot follow the stream",
				"error", err.msg, NULL);
		return rc ? -1 : 0;
	}
	ent_log(ENT_LOG_WARN,
		"fleet: the stream no longer holds the next sequence; re-bootstrapping from a "
		"snapshot",
		"reason", err.msg, NULL);
	ent_store_close(d->store);
	d->store = NULL;
	struct ent_sync_snapshot_info info;
	memset(&err, 0, sizeof(err));
	rc = ent_sync_snapshot_restore(ent_sync_fleet_js(d->fleet), d->cfg.fleet_snapshot_bucket,
				       d->cfg.db_path, first ? first - 1 : 0, NULL, &info, &err);
	if (rc) {
		ent_log(ENT_LOG_ERROR,
			"fleet: the newest snapshot does not fit; cannot re-bootstrap (the replica "
			"would have a hole)",
			"bucket", d->cfg.fleet_snapshot_bucket, "error", err.msg, NULL);
		return -1;
	}
	char s[24];
	snprintf(s, sizeof(s), "%" PRIu64, info.seq);
	ent_log(ENT_LOG_INFO, "fleet: bootstrapped from the snapshot", "bucket",
		d->cfg.fleet_snapshot_bucket, "seq", s, "reason", "behind retention", NULL);
	if (ent_store_open(so, &d->store, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot open the store", "db", d->cfg.db_path, "error",
			err.msg, NULL);
		return -1;
	}
	if (ent_sync_fleet_check_store(d->fleet, d->store, NULL, &err)) {
		ent_log(ENT_LOG_ERROR, "fleet: the snapshot cannot follow the stream", "error",
			err.msg, NULL);
		return -1;
	}
	return 0;
}

/* The snapshotter publishes only from a replica that is caught up and in touch. */
static bool snapshot_ready(void *ctx)
{
	struct daemon *d = ctx;
	struct ent_fleet_stats fs;
	ent_sync_fleet_get_stats(d->fleet, &fs);
	return fs.connected && fs.caught_up && !fs.hole && !fs.rebootstrapping &&
	       !fs.stream_changed;
}

/*
 * Readiness in fleet mode, re-evaluated by the main thread every 100 ms: NOT_SERVING until the
 * first catch-up reached the head seen at start (or, with fleet.serve_stale, until
 * fleet.ready_wait_ms passed, logged as stale), and again once the replica stopped on a hole
 * (until its re-bootstrap in place caught up again) or follows a re-created stream. A lost
 * connection keeps SERVING: checks go on from the last applied state, with the lag and the state
 * visible (GetStatus, metrics, log).
 */
static void fleet_readiness(struct daemon *d, struct ent_rpc *rpc, int64_t started)
{
	struct ent_fleet_stats fs;
	ent_sync_fleet_get_stats(d->fleet, &fs);
	bool broken = fs.hole || fs.rebootstrapping || fs.stream_changed;
	bool want = !broken && fs.caught_up;
	bool stale = false;
	if (!broken && !fs.caught_up && d->cfg.fleet_serve_stale &&
	    ent_time_now_ms() - started >= d->cfg.fleet_ready_wait_ms) {
		want = true;
		stale = true;
	}
	if (want == d->fleet_serving)
		return;
	d->fleet_serving = want;
	ent_rpc_set_serving(rpc, want);
	char a[24], h[24];
	snprintf(a, sizeof(a), "%" PRIu64, fs.applied_seq);
	snprintf(h, sizeof(h), "%" PRIu64, fs.head_seq);
	if (want)
		ent_log(stale ? ENT_LOG_WARN : ENT_LOG_INFO,
			stale ? "fleet: serving STALE state (fleet.serve_stale: the first catch-up "
				"is not done)"
			      : "fleet: caught up with the stream; serving",
			"applied", a, "head", h, NULL);
	else
		ent_log(ENT_LOG_ERROR, "fleet: not serving", "state",
			ent_sync_fleet_state_name(&fs), "applied", a, "head", h, NULL);
}

static const char *signal_name(int sig)
{
	switch (sig) {
	case SIGINT:
		return "SIGINT";
	case SIGTERM:
		return "SIGTERM";
	case SIGHUP:
		return "SIGHUP";
	}
	return "signal";
}

int main(int argc, char **argv)
{
	struct daemon d = {.argc = argc};
	struct ent_err err = {0};
	if (!(d.args = copy_args(argc, argv))) {
		fprintf(stderr, "entd: out of memory\n");
		return 1;
	}
	scrub_secrets(argc, argv);
	if (ent_config_build(&d.cfg, argc, d.args, NULL, NULL, &err)) {
		fprintf(stderr, "entd: %s\n", err.msg);
		free_args(argc, d.args);
		return 1;
	}
	int status = 0;
	switch (d.cfg.action) {
	case ENT_CONFIG_HELP:
		ent_config_usage(stdout, "entd");
		goto done;
	case ENT_CONFIG_VERSION:
		printf("entd %s (gRPC %s)\n", ENT_VERSION, grpc_version_string());
		goto done;
	case ENT_CONFIG_CHECK:
		printf("ok\n");
		goto done;
	case ENT_CONFIG_PRINT:
		ent_config_dump(&d.cfg, stdout);
		goto done;
	case ENT_CONFIG_RUN:
		break;
	}
	ent_log_setup(d.cfg.log_level, d.cfg.log_format == ENT_LOG_JSON);
	pthread_mutex_init(&d.mu, NULL);

	/* Before any thread exists: everyone inherits the mask and only sigwait sees these. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	status = 1;
	int rc;
	bool fleet = d.cfg.fleet_nats && *d.cfg.fleet_nats;
	struct ent_store_opts so = {.path = d.cfg.db_path,
				    .map_size = d.cfg.map_size,
				    .no_walk = !d.cfg.batched_walk,
				    .no_meta_sync = fleet && !d.cfg.fleet_full_sync};
	if (fleet) {
		/* The engine first: an empty directory starts from its snapshot. */
		if (open_fleet(&d) || bootstrap(&d) || open_replica(&d, &so))
			goto fail_writer;
	} else if (ent_store_open(&so, &d.store, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot open the store", "db", d.cfg.db_path, "error",
			err.msg, NULL);
		goto out;
	}
	/* Said once, at start: a walk that turned itself off costs speed, never answers. */
	const char *walk_why;
	if (ent_store_walk(d.store, &walk_why))
		ent_log(ENT_LOG_INFO, "batched walk: on", "lmdb", ent_store_lmdb_version(), NULL);
	else
		ent_log(d.cfg.batched_walk ? ENT_LOG_WARN : ENT_LOG_INFO, "batched walk: off",
			"reason", walk_why, "lmdb", ent_store_lmdb_version(), NULL);
	if ((rc = verify_at_start(&d)) != 0)
		goto fail_writer;
	struct ent_writer_opts wo = {.store = d.store,
				     .max_group = d.cfg.writer_max_group,
				     .nice = (int)d.cfg.writer_nice,
				     .idem_retention_ms = d.cfg.writer_idem_retention_ms,
				     .fleet = d.fleet ? ent_sync_fleet_hooks(d.fleet) : NULL};
	if ((rc = ent_writer_start(&wo, &d.writer)) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot start the writer", "error", ent_err_strerror(rc),
			NULL);
		goto fail_writer;
	}
	if (d.fleet && ent_sync_fleet_start(d.fleet, d.writer, d.store, &err)) {
		ent_log(ENT_LOG_ERROR, "fleet: cannot consume the stream", "error", err.msg, NULL);
		goto fail_metrics;
	}
	if (d.fleet && d.cfg.fleet_snapshot_interval_ms > 0 &&
	    (rc = ent_sync_snapshotter_start(
		     ent_sync_fleet_js(d.fleet), d.cfg.fleet_snapshot_bucket, d.store,
		     d.cfg.fleet_snapshot_interval_ms, NULL, snapshot_ready, &d, &d.snapshotter))) {
		ent_log(ENT_LOG_ERROR, "fleet: cannot start the snapshotter", "error",
			ent_err_strerror(rc), NULL);
		goto fail_metrics;
	}
	if (d.cfg.metrics_listen && *d.cfg.metrics_listen && start_metrics(&d))
		goto fail_metrics;
	if (d.cfg.decision_log_sample_rate > 0 &&
	    open_decision_log(&d, d.cfg.decision_log_sample_rate))
		goto fail_metrics;

	struct ent_rpc_opts ro = {
		.store = d.store,
		.fleet = d.fleet,
		.start_not_serving = d.fleet != NULL,
		.writer = d.writer,
		.listeners = d.cfg.listeners,
		.n_listeners = d.cfg.n_listeners,
		.threads = d.cfg.threads,
		.admin_token = d.cfg.admin_token,
		.protect_checks = d.cfg.protect_checks,
		.max_message_bytes = d.cfg.max_message_bytes,
		.max_concurrent_streams = d.cfg.max_concurrent_streams,
		.keepalive_time_ms = d.cfg.keepalive_time_ms,
		.keepalive_timeout_ms = d.cfg.keepalive_timeout_ms,
		.keepalive_permit_without_calls = d.cfg.keepalive_permit_without_calls,
		.min_ping_interval_ms = d.cfg.min_ping_interval_ms,
		.max_metadata_bytes = d.cfg.max_metadata_bytes,
		.memory_bytes = d.cfg.memory_bytes,
		.compression = d.cfg.compression,
		.max_connection_idle_ms = d.cfg.max_connection_idle_ms,
		.max_connection_age_ms = d.cfg.max_connection_age_ms,
		.metrics = d.metrics,
		.decision_log = d.dlog,
		.min_seq_wait_ms = d.cfg.check_min_seq_wait_ms,
		.min_seq_wait_max = d.cfg.check_min_seq_wait_max,
	};
	struct ent_rpc *rpc;
	if (ent_rpc_start(&ro, &rpc, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot start the server", "error", err.msg, NULL);
		goto fail_rpc;
	}
	int64_t started = ent_time_now_ms();
	if (d.fleet) {
		/* Not ready before the first catch-up (fleet_readiness). */
		d.fleet_serving = false;
		fleet_readiness(&d, rpc, started);
	}
	pthread_mutex_lock(&d.mu);
	d.rpc = rpc;
	pthread_mutex_unlock(&d.mu);

	char addrs[1024], seq[24], threads[16];
	describe_listeners(&d.cfg, addrs, sizeof(addrs));
	snprintf(seq, sizeof(seq), "%" PRIu64, ent_writer_seq(d.writer));
	snprintf(threads, sizeof(threads), "%u", d.cfg.threads);
	ent_log(ENT_LOG_INFO, "entd listening", "listen", addrs, "db", d.cfg.db_path, "sequence",
		seq, "threads", threads, "admin", d.cfg.admin_token ? "enabled" : "disabled",
		"metrics", d.metrics ? d.cfg.metrics_listen : "off", "config",
		d.cfg.config_file ? d.cfg.config_file : "none", "version", ENT_VERSION, NULL);

	for (;;) {
		int sig = 0;
		if (d.fleet) {
			struct timespec tick = {0, 100 * 1000 * 1000};
			sig = sigtimedwait(&sigs, NULL, &tick);
			fleet_readiness(&d, rpc, started);
			if (sig <= 0)
				continue;
		} else if (sigwait(&sigs, &sig) != 0) {
			continue;
		}
		if (sig == SIGHUP) {
			reload(&d);
			continue;
		}
		ent_log(ENT_LOG_INFO, "entd stopping", "signal", signal_name(sig), NULL);
		break;
	}
	status = 0;
	ent_rpc_set_serving(rpc, false);
	pthread_mutex_lock(&d.mu);
	d.draining = true;
	pthread_mutex_unlock(&d.mu);
	ent_rpc_stop(rpc, d.cfg.grace_ms);
fail_rpc:
fail_metrics:
	/* The HTTP thread may be reading store and writer: it stops before they do. */
	ent_metrics_free(d.metrics);
	/* The fleet first: its parked requests are answered by the still running writer. */
	ent_sync_snapshotter_stop(d.snapshotter);
	ent_sync_fleet_close(d.fleet);
	ent_writer_stop(d.writer);
fail_writer:
	if (!d.writer)
		ent_sync_fleet_close(d.fleet);
	if (d.store)
		ent_store_close(d.store);
out:
	ent_metrics_decision_log_close(d.dlog);
	pthread_mutex_destroy(&d.mu);
	if (status == 0)
		ent_log(ENT_LOG_INFO, "entd stopped", NULL);
done:
	ent_config_free(&d.cfg);
	free_args(argc, d.args);
	return status;
}
