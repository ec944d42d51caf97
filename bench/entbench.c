/*
 * entbench: a load generator for entd on the gRPC C core.
 *
 *   entbench --target 127.0.0.1:50051 --mode unary --connections 4 --inflight 16 \
 *            --duration 10 --warmup 2 --customers 1000000 --dist zipf --features api_calls
 *
 * Closed loop by default (--connections x --inflight calls always in flight); --rate R makes it
 * open loop. Prints a table, appends one JSON object per run to --json FILE ("-": stdout) and
 * exits 0 only if every call answered OK (1: FAILED, 2: usage or set-up error).
 *
 * --write-body FILE writes one CheckEntitlementRequest framed for gRPC (the 5-byte prefix and
 * the message) for h2load/nghttp, and exits.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "entbench.h"

static int usage(FILE *out)
{
	fputs("usage: entbench [options]\n"
	      "  --target ADDR          host:port or unix:/path (default 127.0.0.1:50051)\n"
	      "  --mode M               unary|batch|stream|consume|report|mixed|\n"
	      "                         report-batch (default unary)\n"
	      "  --connections C        separate channels/connections (default 4)\n"
	      "  --inflight K           closed loop: calls (streams) in flight per connection "
	      "(default 16)\n"
	      "  --threads T            client completion-queue threads (default 1, <= C)\n"
	      "  --rate R               open loop: R calls/s on a fixed schedule, latency from the\n"
	      "                         scheduled send (default 0: closed loop)\n"
	      "  --max-inflight N       open loop: calls in flight per thread (default 10000)\n"
	      "  --batch-size N         checks per batch call (default 100)\n"
	      "  --stream-window W      messages in flight per stream (default 16)\n"
	      "  --write-ratio X        mixed: fraction of Consume/Report calls (default 0.1)\n"
	      "  --duration S           measured seconds (default 10)\n"
	      "  --warmup S             seconds of load before measuring (default 2)\n"
	      "  --customers N          customers <prefix>0..<prefix>N-1 (default 1000)\n"
	      "  --customer-prefix P    (default cus_)\n"
	      "  --dist uniform|zipf    customer choice (default uniform)\n"
	      "  --zipf-s S             Zipf exponent (default 1.0)\n"
	      "  --features A,B,...     feature codes, chosen uniformly (default api_calls)\n"
	      "  --feature-prefix P     with --feature-count M: features P0..P(M-1)\n"
	      "  --quantity N           units per check/consume/report (default 0: one)\n"
	      "  --seed N               PRNG seed (default 1)\n"
	      "  --strict               answers naming an unknown customer/feature fail the run\n"
	      "  --json FILE            append one JSON object per run ('-': stdout)\n"
	      "  --label TEXT           name of the run in the JSON\n"
	      "  --quiet                no table\n"
	      "  --write-body FILE      write a gRPC-framed CheckEntitlementRequest for\n"
	      "                         --body-customer ID --body-feature CODE and exit\n",
	      out);
	return 2;
}

static int parse_mode(const char *s, enum bench_mode *m)
{
	static const enum bench_mode all[] = {MODE_UNARY,	MODE_BATCH,  MODE_STREAM,
					      MODE_CONSUME,	MODE_REPORT, MODE_MIXED,
					      MODE_REPORT_BATCH};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!strcmp(s, bench_mode_name(all[i]))) {
			*m = all[i];
			return 0;
		}
	}
	return -1;
}

static int num(const char *opt, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "entbench: %s: expected a number in [%g, %g], got '%s'\n", opt, lo,
			hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

static size_t put_string_field(uint8_t *out, unsigned field, const char *s)
{
	size_t len = strlen(s), n = 0;

	out[n++] = (uint8_t)((field << 3) | 2);
	n += bench_put_varint(out + n, len);
	memcpy(out + n, s, len);
	return n + len;
}

/* Write the 5-byte gRPC message prefix (uncompressed, big-endian length) and the message. */
static int write_body(const char *path, const char *customer, const char *feature)
{
	uint8_t msg[BENCH_REQ_MAX], prefix[5];
	size_t n = 0;
	FILE *f;

	if (!*customer || !*feature || strlen(customer) > 255 || strlen(feature) > 255 ||
	    strchr(feature, ',')) {
		fputs("entbench: --write-body needs one customer and one feature code\n", stderr);
		return 2;
	}
	n += put_string_field(msg + n, 1, customer);
	n += put_string_field(msg + n, 2, feature);
	prefix[0] = 0;
	prefix[1] = (uint8_t)(n >> 24);
	prefix[2] = (uint8_t)(n >> 16);
	prefix[3] = (uint8_t)(n >> 8);
	prefix[4] = (uint8_t)n;
	f = fopen(path, "wb");
	if (!f || fwrite(prefix, 1, 5, f) != 5 || fwrite(msg, 1, n, f) != n || fclose(f)) {
		fprintf(stderr, "entbench: cannot write %s: %s\n", path, strerror(errno));
		return 2;
	}
	return 0;
}

/*
 * Numeric options: one row each (name, range, where the value goes in struct bench_config and
 * as what). customers and feature-count stay in struct cli's num[]. Getopt codes: O_NUM + row.
 */
enum num_opt {
	N_CONNS,
	N_INFLIGHT,
	N_THREADS,
	N_RATE,
	N_MAXINF,
	N_BATCH,
	N_WINDOW,
	N_WRATIO,
	N_DURATION,
	N_WARMUP,
	N_CUSTOMERS,
	N_ZIPFS,
	N_FCOUNT,
	N_QUANTITY,
	N_SEED,
	N__COUNT
};
enum num_kind {
	K_CLI,
	K_UNSIGNED,
	K_DOUBLE,
	K_INT64,
	K_UINT64
};

#define CFG(f) offsetof(struct bench_config, f)
static const struct {
	const char *name;
	double lo, hi;
	uint8_t kind;
	size_t off;
} num_opts[N__COUNT] = {
	[N_CONNS] = {"connections", 1, 4096, K_UNSIGNED, CFG(connections)},
	[N_INFLIGHT] = {"inflight", 1, 100000, K_UNSIGNED, CFG(inflight)},
	[N_THREADS] = {"threads", 1, 256, K_UNSIGNED, CFG(threads)},
	[N_RATE] = {"rate", 0, 1e9, K_DOUBLE, CFG(rate)},
	[N_MAXINF] = {"max-inflight", 1, 1e6, K_UNSIGNED, CFG(max_inflight)},
	[N_BATCH] = {"batch-size", 1, 10000, K_UNSIGNED, CFG(batch_size)},
	[N_WINDOW] = {"stream-window", 1, 100000, K_UNSIGNED, CFG(stream_window)},
	[N_WRATIO] = {"write-ratio", 0, 1, K_DOUBLE, CFG(write_ratio)},
	[N_DURATION] = {"duration", 0.01, 86400, K_DOUBLE, CFG(duration_s)},
	[N_WARMUP] = {"warmup", 0, 86400, K_DOUBLE, CFG(warmup_s)},
	[N_CUSTOMERS] = {"customers", 1, 4e9, K_CLI, 0},
	[N_ZIPFS] = {"zipf-s", 0.01, 10, K_DOUBLE, CFG(zipf_s)},
	[N_FCOUNT] = {"feature-count", 1, 10000, K_CLI, 0},
	[N_QUANTITY] = {"quantity", 0, 1e15, K_INT64, CFG(quantity)},
	[N_SEED] = {"seed", 0, 1.8e19, K_UINT64, CFG(seed)},
};

/* Store numeric option \a i's value \a v where its row says. */
static void set_number(struct bench_config *cfg, int i, double v)
{
	char *p = (char *)cfg + num_opts[i].off;

	switch (num_opts[i].kind) {
	case K_UNSIGNED:
		*(unsigned *)p = (unsigned)v;
		break;
	case K_DOUBLE:
		*(double *)p = v;
		break;
	case K_INT64:
		*(int64_t *)p = (int64_t)v;
		break;
	case K_UINT64:
		*(uint64_t *)p = (uint64_t)v;
		break;
	case K_CLI:
		break; /* read from cli->num */
	}
}

enum {
	O_TARGET = 256,
	O_MODE,
	O_CPREFIX,
	O_DIST,
	O_FEATURES,
	O_FPREFIX,
	O_STRICT,
	O_JSON,
	O_LABEL,
	O_QUIET,
	O_BODY,
	O_BODY_CUST,
	O_BODY_FEAT,
	O_HELP,
	O_NUM = 512,
};

/* What the command line asks besides struct bench_config. */
struct cli {
	const char *features, *fprefix, *cprefix;
	const char *json, *body, *body_cust, *body_feat;
	bool quiet;
	double num[N__COUNT]; /**< numeric options as given (K_CLI rows are read from here) */
};

/* One non-numeric option. \return -1 to go on, else the exit status. */
static int parse_one(int c, struct bench_config *cfg, struct cli *cli)
{
	switch (c) {
	case O_TARGET:
		cfg->target = optarg;
		return -1;
	case O_MODE:
		if (parse_mode(optarg, &cfg->mode)) {
			fprintf(stderr, "entbench: unknown --mode '%s'\n", optarg);
			return 2;
		}
		return -1;
	case O_CPREFIX:
		cli->cprefix = optarg;
		return -1;
	case O_DIST:
		if (strcmp(optarg, "uniform") && strcmp(optarg, "zipf")) {
			fprintf(stderr, "entbench: --dist is uniform or zipf\n");
			return 2;
		}
		cfg->dist = optarg;
		return -1;
	case O_FEATURES:
		cli->features = optarg;
		return -1;
	case O_FPREFIX:
		cli->fprefix = optarg;
		return -1;
	case O_STRICT:
		cfg->strict = true;
		return -1;
	case O_JSON:
		cli->json = optarg;
		return -1;
	case O_LABEL:
		cfg->label = optarg;
		return -1;
	case O_QUIET:
		cli->quiet = true;
		return -1;
	case O_BODY:
		cli->body = optarg;
		return -1;
	case O_BODY_CUST:
		cli->body_cust = optarg;
		return -1;
	case O_BODY_FEAT:
		cli->body_feat = optarg;
		return -1;
	case O_HELP:
	case 'h':
		usage(stdout);
		return 0;
	default:
		return usage(stderr);
	}
}

/* The command line into \a cfg and \a cli. \return -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct bench_config *cfg, struct cli *cli)
{
	static const struct option named[] = {
		{"target", required_argument, NULL, O_TARGET},
		{"mode", required_argument, NULL, O_MODE},
		{"customer-prefix", required_argument, NULL, O_CPREFIX},
		{"dist", required_argument, NULL, O_DIST},
		{"features", required_argument, NULL, O_FEATURES},
		{"feature-prefix", required_argument, NULL, O_FPREFIX},
		{"strict", no_argument, NULL, O_STRICT},
		{"json", required_argument, NULL, O_JSON},
		{"label", required_argument, NULL, O_LABEL},
		{"quiet", no_argument, NULL, O_QUIET},
		{"write-body", required_argument, NULL, O_BODY},
		{"body-customer", required_argument, NULL, O_BODY_CUST},
		{"body-feature", required_argument, NULL, O_BODY_FEAT},
		{"help", no_argument, NULL, O_HELP},
	};
	enum {
		N_NAMED = sizeof(named) / sizeof(named[0])
	};
	struct option opts[N_NAMED + N__COUNT + 1];
	char flag[32];
	int c, rc;

	memcpy(opts, named, sizeof(named));
	for (int i = 0; i < N__COUNT; i++)
		opts[N_NAMED + i] =
			(struct option){num_opts[i].name, required_argument, NULL, O_NUM + i};
	opts[N_NAMED + N__COUNT] = (struct option){NULL, 0, NULL, 0};

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c >= O_NUM && c < O_NUM + N__COUNT) {
			int i = c - O_NUM;

			snprintf(flag, sizeof(flag), "--%s", num_opts[i].name);
			if (num(flag, optarg, num_opts[i].lo, num_opts[i].hi, &cli->num[i]))
				return 2;
			set_number(cfg, i, cli->num[i]);
			continue;
		}
		if ((rc = parse_one(c, cfg, cli)) >= 0)
			return rc;
	}
	if (optind != argc)
		return usage(stderr);
	return -1;
}

/* The checks the run can make sense of: \return 0, or 2 with the reason printed. */
static int check_shape(const struct bench_config *cfg)
{
	if (cfg->threads > cfg->connections) {
		fputs("entbench: --threads must not exceed --connections\n", stderr);
		return 2;
	}
	if (cfg->rate > 0 && cfg->mode == MODE_STREAM) {
		fputs("entbench: --rate (open loop) applies to unary-call modes, not stream\n",
		      stderr);
		return 2;
	}
	return 0;
}

/* --feature-prefix P with --feature-count M: "P0,P1,...,P(M-1)" (the caller frees it). */
static char *feature_list(const char *prefix, double count)
{
	unsigned m = (unsigned)(count ? count : 1);
	size_t cap = (size_t)m * (strlen(prefix) + 8), n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	for (unsigned i = 0; i < m; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s%u", i ? "," : "", prefix, i);
	return buf;
}

/* Keys set up, the run, the report. \return the exit status (0 OK, 1 FAILED, 2 set-up). */
static int run(struct bench_config *cfg, const struct cli *cli, const char *features)
{
	struct bench_keys keys;
	struct bench_zipf zipf;
	struct bench_result *res;
	char err[160];
	int rc;

	if (bench_keys_init(&keys, cli->cprefix, (uint32_t)cli->num[N_CUSTOMERS], features, err,
			    sizeof(err))) {
		fprintf(stderr, "entbench: %s\n", err);
		return 2;
	}
	cfg->keys = &keys;
	if (!strcmp(cfg->dist, "zipf")) {
		if (bench_zipf_init(&zipf, keys.customers, cfg->zipf_s)) {
			fputs("entbench: cannot build the Zipf table\n", stderr);
			bench_keys_deinit(&keys);
			return 2;
		}
		cfg->zipf = &zipf;
	}
	/* A server closing a connection must not kill the client with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	res = malloc(sizeof(*res));
	if (!res) {
		rc = 2;
		goto out;
	}
	grpc_init();
	rc = bench_run(cfg, res);
	if (rc == 0) {
		if (!cli->quiet)
			bench_report_table(cfg, res);
		if (cli->json && bench_report_json(cfg, res, cli->json))
			rc = -1;
	}
	rc = rc ? 2 : bench_result_errors(cfg, res) ? 1 : 0;
	grpc_shutdown();
	free(res);
out:
	if (cfg->zipf)
		bench_zipf_deinit(&zipf);
	bench_keys_deinit(&keys);
	return rc;
}

int main(int argc, char **argv)
{
	struct bench_config cfg = {
		.target = "127.0.0.1:50051",
		.mode = MODE_UNARY,
		.connections = 4,
		.inflight = 16,
		.threads = 1,
		.batch_size = 100,
		.stream_window = 16,
		.write_ratio = 0.1,
		.max_inflight = 10000,
		.duration_s = 10,
		.warmup_s = 2,
		.seed = 1,
		.dist = "uniform",
		.zipf_s = 1.0,
	};
	struct cli cli = {
		.features = "api_calls",
		.cprefix = "cus_",
		.body_cust = "cus_0",
		.num = {[N_CUSTOMERS] = 1000},
	};
	char *fbuf = NULL;
	int rc;

	if ((rc = parse_args(argc, argv, &cfg, &cli)) >= 0)
		return rc;
	if (cli.body)
		return write_body(cli.body, cli.body_cust,
				  cli.body_feat ? cli.body_feat : cli.features);
	if ((rc = check_shape(&cfg)) != 0)
		return rc;
	if (cli.fprefix && !(fbuf = feature_list(cli.fprefix, cli.num[N_FCOUNT])))
		return 2;
	rc = run(&cfg, &cli, fbuf ? fbuf : cli.features);
	free(fbuf);
	return rc;
}
