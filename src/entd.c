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
#include "ent/util.h"
#include "ent/writer.h"

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
		ent_metrics_fill_store(g, &st, ent_now_ms());
	struct ent_writer_stats ws;
	ent_writer_get_stats(d->writer, &ws);
	ent_metrics_fill_writer(g, &ws);
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
	else if (!(ready = ent_rpc_serving(d->rpc)))
		snprintf(why, len, "not serving");
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
	int64_t t0 = ent_now_ms();
	struct ent_store_verify_report r;
	int rc = ent_store_verify(d->store, &r);
	char ms[24], recs[24];
	snprintf(ms, sizeof(ms), "%lld", (long long)(ent_now_ms() - t0));
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
			ent_strerror(rc), NULL);
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
		ent_log(ENT_LOG_ERROR, "metrics: cannot start", "error", ent_strerror(rc), NULL);
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
	int rc = ent_decision_log_open(d->cfg.decision_log_path, rate,
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
			ent_decision_log_set_rate(d->dlog, rate);
		} else if (open_decision_log(d, rate) == 0) {
			ent_rpc_set_decision_log(d->rpc, d->dlog);
		}
		c->decision_log_sample_rate = rate;
		CHANGED("decision_log.sample_rate");
	}
	if (d->dlog && ent_decision_log_reopen(d->dlog, &err))
		ent_log(ENT_LOG_WARN, "decision log not re-opened", "error", err.msg, NULL);
#undef CHANGED
	ent_log(ENT_LOG_INFO, "configuration reloaded", "applied", changed[0] ? changed : "nothing",
		"restart_needed", n ? "yes" : "no", NULL);
	ent_config_free(&nc);
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
	struct ent_store_opts so = {.path = d.cfg.db_path, .map_size = d.cfg.map_size};
	if (ent_store_open(&so, &d.store, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot open the store", "db", d.cfg.db_path, "error",
			err.msg, NULL);
		goto out;
	}
	if ((rc = verify_at_start(&d)) != 0)
		goto fail_writer;
	struct ent_writer_opts wo = {.store = d.store,
				     .max_group = d.cfg.writer_max_group,
				     .idem_retention_ms = d.cfg.writer_idem_retention_ms};
	if ((rc = ent_writer_start(&wo, &d.writer)) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot start the writer", "error", ent_strerror(rc), NULL);
		goto fail_writer;
	}
	if (d.cfg.metrics_listen && *d.cfg.metrics_listen && start_metrics(&d))
		goto fail_metrics;
	if (d.cfg.decision_log_sample_rate > 0 &&
	    open_decision_log(&d, d.cfg.decision_log_sample_rate))
		goto fail_metrics;

	struct ent_rpc_opts ro = {
		.store = d.store,
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
	};
	struct ent_rpc *rpc;
	if (ent_rpc_start(&ro, &rpc, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot start the server", "error", err.msg, NULL);
		goto fail_rpc;
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
		if (sigwait(&sigs, &sig) != 0)
			continue;
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
	ent_writer_stop(d.writer);
fail_writer:
	ent_store_close(d.store);
out:
	ent_decision_log_close(d.dlog);
	pthread_mutex_destroy(&d.mu);
	if (status == 0)
		ent_log(ENT_LOG_INFO, "entd stopped", NULL);
done:
	ent_config_free(&d.cfg);
	free_args(argc, d.args);
	return status;
}
