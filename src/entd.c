/*
 * entd: the entitlement check daemon. Wiring and start/stop order only.
 *
 * Start: parse flags, block SIGINT/SIGTERM/SIGHUP (every thread started later, gRPC's and the
 * writer's included, inherits the mask, so only sigwait below sees them), open the store,
 * start the writer, start the RPC server, wait for a signal.
 * Stop: NOT_SERVING (health watchers and load balancers learn first), stop RPC within the
 * grace period (in-flight writes still reach the running writer), stop the writer (it
 * finishes its queue), close the store.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "ent/rpc.h"
#include "ent/store.h"
#include "ent/util.h"
#include "ent/writer.h"

#define MAX_LISTEN 16

struct config {
	const char *db;
	const char *listen[MAX_LISTEN];
	size_t n_listen;
	unsigned threads;
	size_t map_size;
	const char *admin_token;
	bool protect_checks;
	enum ent_log_level log_level;
	bool log_json;
	int64_t grace_ms;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: entd [OPTIONS]\n"
		"\n"
		"  --db DIR             LMDB directory, created if missing (default ./entd-data)\n"
		"  --listen ADDR        host:port or unix:/path; repeatable (default "
		"127.0.0.1:50051)\n"
		"  --threads N          completion-queue threads (default: one per core)\n"
		"  --map-size BYTES     LMDB map size; K, M, G, T suffixes (default 1G)\n"
		"  --admin-token TOKEN  credential for the admin service (or $ENTD_ADMIN_TOKEN);\n"
		"                       without one, admin RPCs are refused\n"
		"  --protect-checks     the check service needs the credential too\n"
		"  --log-level LEVEL    debug, info, warn or error (default info)\n"
		"  --log-json           JSON lines instead of logfmt\n"
		"  --grace-ms MS        how long in-flight calls may finish at shutdown "
		"(default 5000)\n"
		"  --version            print the version and exit\n"
		"  --help               this text\n");
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "1073741824", "512M", "1G", ... */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	unsigned shift = 0;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -1;
	}
	if (*end && end[1] && !((end[1] == 'B' || end[1] == 'b') && !end[2]))
		return -1;
	if (shift && v > (SIZE_MAX >> shift))
		return -1;
	*out = (size_t)(v << shift);
	return 0;
}

static int parse_level(const char *s, enum ent_log_level *out)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum ent_log_level)i;
			return 0;
		}
	}
	return -1;
}

static int bad_flag(const char *flag, const char *value, const char *why)
{
	fprintf(stderr, "entd: %s %s: %s (see entd --help)\n", flag, value ? value : "", why);
	return 2;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	enum {
		O_DB = 1,
		O_LISTEN,
		O_THREADS,
		O_MAP_SIZE,
		O_TOKEN,
		O_PROTECT,
		O_LOG_LEVEL,
		O_LOG_JSON,
		O_GRACE,
		O_VERSION,
		O_HELP
	};
	static const struct option longopts[] = {
		{"db", required_argument, NULL, O_DB},
		{"listen", required_argument, NULL, O_LISTEN},
		{"threads", required_argument, NULL, O_THREADS},
		{"map-size", required_argument, NULL, O_MAP_SIZE},
		{"admin-token", required_argument, NULL, O_TOKEN},
		{"protect-checks", no_argument, NULL, O_PROTECT},
		{"log-level", required_argument, NULL, O_LOG_LEVEL},
		{"log-json", no_argument, NULL, O_LOG_JSON},
		{"grace-ms", required_argument, NULL, O_GRACE},
		{"version", no_argument, NULL, O_VERSION},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	uint64_t v;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_DB:
			if (!*optarg)
				return bad_flag("--db", optarg, "empty path");
			cfg->db = optarg;
			break;
		case O_LISTEN:
			if (!*optarg)
				return bad_flag("--listen", optarg, "empty address");
			if (cfg->n_listen == MAX_LISTEN)
				return bad_flag("--listen", optarg, "too many listeners");
			cfg->listen[cfg->n_listen++] = optarg;
			break;
		case O_THREADS:
			if (parse_uint(optarg, 256, &v) || v == 0)
				return bad_flag("--threads", optarg, "expected 1..256");
			cfg->threads = (unsigned)v;
			break;
		case O_MAP_SIZE:
			if (parse_size(optarg, &cfg->map_size) || cfg->map_size < (1u << 20))
				return bad_flag("--map-size", optarg,
						"expected a size of at least 1M (e.g. 4G)");
			break;
		case O_TOKEN:
			cfg->admin_token = strdup(optarg);
			if (!cfg->admin_token)
				return bad_flag("--admin-token", "", "out of memory");
			/* Keep the token out of ps(1) and /proc/PID/cmdline. */
			memset(optarg, 'x', strlen(optarg));
			break;
		case O_PROTECT:
			cfg->protect_checks = true;
			break;
		case O_LOG_LEVEL:
			if (parse_level(optarg, &cfg->log_level))
				return bad_flag("--log-level", optarg,
						"expected debug, info, warn or error");
			break;
		case O_LOG_JSON:
			cfg->log_json = true;
			break;
		case O_GRACE:
			if (parse_uint(optarg, 3600000, &v))
				return bad_flag("--grace-ms", optarg, "expected 0..3600000");
			cfg->grace_ms = (int64_t)v;
			break;
		case O_VERSION:
			printf("entd %s (gRPC %s)\n", ENT_VERSION, grpc_version_string());
			return 0;
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			if (optopt)
				fprintf(stderr, "entd: option needs a value or is unknown: %s\n",
					argv[optind - 1]);
			else
				fprintf(stderr, "entd: unknown option %s\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "entd: unexpected argument '%s' (see entd --help)\n", argv[optind]);
		return 2;
	}
	if (!cfg->admin_token) {
		const char *env = getenv("ENTD_ADMIN_TOKEN");
		if (env && *env && !(cfg->admin_token = strdup(env)))
			return bad_flag("ENTD_ADMIN_TOKEN", "", "out of memory");
	}
	if (cfg->n_listen == 0)
		cfg->listen[cfg->n_listen++] = "127.0.0.1:50051";
	return -1;
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
	struct config cfg = {
		.db = "./entd-data",
		.log_level = ENT_LOG_INFO,
		.grace_ms = 5000,
	};
	int rc = parse_args(argc, argv, &cfg);
	if (rc >= 0)
		return rc;
	ent_log_setup(cfg.log_level, cfg.log_json);

	/* Before any thread exists: everyone inherits the mask and only sigwait sees these. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct ent_err err = {0};
	struct ent_store *store = NULL;
	struct ent_writer *writer = NULL;
	struct ent_rpc *rpc = NULL;
	int status = 1;

	struct ent_store_opts so = {.path = cfg.db, .map_size = cfg.map_size};
	if (ent_store_open(&so, &store, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot open the store", "db", cfg.db, "error", err.msg,
			NULL);
		goto out;
	}
	struct ent_writer_opts wo = {.store = store};
	if ((rc = ent_writer_start(&wo, &writer)) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot start the writer", "error", ent_strerror(rc), NULL);
		goto fail_writer;
	}
	struct ent_rpc_opts ro = {
		.store = store,
		.writer = writer,
		.listen = cfg.listen,
		.n_listen = cfg.n_listen,
		.threads = cfg.threads,
		.admin_token = cfg.admin_token,
		.protect_checks = cfg.protect_checks,
	};
	if (ent_rpc_start(&ro, &rpc, &err) != 0) {
		ent_log(ENT_LOG_ERROR, "cannot start the server", "error", err.msg, NULL);
		goto fail_rpc;
	}

	char addrs[1024] = "", seq[24], threads[16];
	for (size_t i = 0; i < cfg.n_listen; i++) {
		size_t at = strlen(addrs);
		snprintf(addrs + at, sizeof(addrs) - at, "%s%s", i ? "," : "", cfg.listen[i]);
	}
	snprintf(seq, sizeof(seq), "%" PRIu64, ent_writer_seq(writer));
	if (cfg.threads)
		snprintf(threads, sizeof(threads), "%u", cfg.threads);
	else
		snprintf(threads, sizeof(threads), "auto");
	ent_log(ENT_LOG_INFO, "entd listening", "listen", addrs, "db", cfg.db, "sequence", seq,
		"threads", threads, "admin", cfg.admin_token ? "enabled" : "disabled", "version",
		ENT_VERSION, NULL);

	for (;;) {
		int sig = 0;
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			ent_log(ENT_LOG_WARN, "reload not supported yet", "signal", "SIGHUP", NULL);
			continue;
		}
		ent_log(ENT_LOG_INFO, "entd stopping", "signal", signal_name(sig), NULL);
		break;
	}
	status = 0;
	ent_rpc_set_serving(rpc, false);
	ent_rpc_stop(rpc, cfg.grace_ms);
fail_rpc:
	ent_writer_stop(writer);
fail_writer:
	ent_store_close(store);
out:
	if (status == 0)
		ent_log(ENT_LOG_INFO, "entd stopped", NULL);
	free((char *)cfg.admin_token);
	return status;
}
