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

enum {
	O_TARGET = 256,
	O_MODE,
	O_CONNS,
	O_INFLIGHT,
	O_THREADS,
	O_RATE,
	O_MAXINF,
	O_BATCH,
	O_WINDOW,
	O_WRATIO,
	O_DURATION,
	O_WARMUP,
	O_CUSTOMERS,
	O_CPREFIX,
	O_DIST,
	O_ZIPFS,
	O_FEATURES,
	O_FPREFIX,
	O_FCOUNT,
	O_QUANTITY,
	O_SEED,
	O_STRICT,
	O_JSON,
	O_LABEL,
	O_QUIET,
	O_BODY,
	O_BODY_CUST,
	O_BODY_FEAT,
	O_HELP,
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"target", required_argument, NULL, O_TARGET},
		{"mode", required_argument, NULL, O_MODE},
		{"connections", required_argument, NULL, O_CONNS},
		{"inflight", required_argument, NULL, O_INFLIGHT},
		{"threads", required_argument, NULL, O_THREADS},
		{"rate", required_argument, NULL, O_RATE},
		{"max-inflight", required_argument, NULL, O_MAXINF},
		{"batch-size", required_argument, NULL, O_BATCH},
		{"stream-window", required_argument, NULL, O_WINDOW},
		{"write-ratio", required_argument, NULL, O_WRATIO},
		{"duration", required_argument, NULL, O_DURATION},
		{"warmup", required_argument, NULL, O_WARMUP},
		{"customers", required_argument, NULL, O_CUSTOMERS},
		{"customer-prefix", required_argument, NULL, O_CPREFIX},
		{"dist", required_argument, NULL, O_DIST},
		{"zipf-s", required_argument, NULL, O_ZIPFS},
		{"features", required_argument, NULL, O_FEATURES},
		{"feature-prefix", required_argument, NULL, O_FPREFIX},
		{"feature-count", required_argument, NULL, O_FCOUNT},
		{"quantity", required_argument, NULL, O_QUANTITY},
		{"seed", required_argument, NULL, O_SEED},
		{"strict", no_argument, NULL, O_STRICT},
		{"json", required_argument, NULL, O_JSON},
		{"label", required_argument, NULL, O_LABEL},
		{"quiet", no_argument, NULL, O_QUIET},
		{"write-body", required_argument, NULL, O_BODY},
		{"body-customer", required_argument, NULL, O_BODY_CUST},
		{"body-feature", required_argument, NULL, O_BODY_FEAT},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
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
	const char *features = "api_calls", *fprefix = NULL, *cprefix = "cus_";
	const char *json = NULL, *body = NULL, *body_cust = "cus_0", *body_feat = NULL;
	double customers = 1000, fcount = 0, v;
	bool quiet = false;
	struct bench_keys keys;
	struct bench_zipf zipf;
	struct bench_result *res;
	char err[160], *fbuf = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_TARGET:
			cfg.target = optarg;
			break;
		case O_MODE:
			if (parse_mode(optarg, &cfg.mode)) {
				fprintf(stderr, "entbench: unknown --mode '%s'\n", optarg);
				return 2;
			}
			break;
		case O_CONNS:
			if (num("--connections", optarg, 1, 4096, &v))
				return 2;
			cfg.connections = (unsigned)v;
			break;
		case O_INFLIGHT:
			if (num("--inflight", optarg, 1, 100000, &v))
				return 2;
			cfg.inflight = (unsigned)v;
			break;
		case O_THREADS:
			if (num("--threads", optarg, 1, 256, &v))
				return 2;
			cfg.threads = (unsigned)v;
			break;
		case O_RATE:
			if (num("--rate", optarg, 0, 1e9, &cfg.rate))
				return 2;
			break;
		case O_MAXINF:
			if (num("--max-inflight", optarg, 1, 1e6, &v))
				return 2;
			cfg.max_inflight = (unsigned)v;
			break;
		case O_BATCH:
			if (num("--batch-size", optarg, 1, 10000, &v))
				return 2;
			cfg.batch_size = (unsigned)v;
			break;
		case O_WINDOW:
			if (num("--stream-window", optarg, 1, 100000, &v))
				return 2;
			cfg.stream_window = (unsigned)v;
			break;
		case O_WRATIO:
			if (num("--write-ratio", optarg, 0, 1, &cfg.write_ratio))
				return 2;
			break;
		case O_DURATION:
			if (num("--duration", optarg, 0.01, 86400, &cfg.duration_s))
				return 2;
			break;
		case O_WARMUP:
			if (num("--warmup", optarg, 0, 86400, &cfg.warmup_s))
				return 2;
			break;
		case O_CUSTOMERS:
			if (num("--customers", optarg, 1, 4e9, &customers))
				return 2;
			break;
		case O_CPREFIX:
			cprefix = optarg;
			break;
		case O_DIST:
			if (strcmp(optarg, "uniform") && strcmp(optarg, "zipf")) {
				fprintf(stderr, "entbench: --dist is uniform or zipf\n");
				return 2;
			}
			cfg.dist = optarg;
			break;
		case O_ZIPFS:
			if (num("--zipf-s", optarg, 0.01, 10, &cfg.zipf_s))
				return 2;
			break;
		case O_FEATURES:
			features = optarg;
			break;
		case O_FPREFIX:
			fprefix = optarg;
			break;
		case O_FCOUNT:
			if (num("--feature-count", optarg, 1, 10000, &fcount))
				return 2;
			break;
		case O_QUANTITY:
			if (num("--quantity", optarg, 0, 1e15, &v))
				return 2;
			cfg.quantity = (int64_t)v;
			break;
		case O_SEED:
			if (num("--seed", optarg, 0, 1.8e19, &v))
				return 2;
			cfg.seed = (uint64_t)v;
			break;
		case O_STRICT:
			cfg.strict = true;
			break;
		case O_JSON:
			json = optarg;
			break;
		case O_LABEL:
			cfg.label = optarg;
			break;
		case O_QUIET:
			quiet = true;
			break;
		case O_BODY:
			body = optarg;
			break;
		case O_BODY_CUST:
			body_cust = optarg;
			break;
		case O_BODY_FEAT:
			body_feat = optarg;
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usage(stderr);
		}
	}
	if (optind != argc)
		return usage(stderr);
	if (body)
		return write_body(body, body_cust, body_feat ? body_feat : features);
	if (cfg.threads > cfg.connections) {
		fputs("entbench: --threads must not exceed --connections\n", stderr);
		return 2;
	}
	if (cfg.rate > 0 && cfg.mode == MODE_STREAM) {
		fputs("entbench: --rate (open loop) applies to unary-call modes, not stream\n",
		      stderr);
		return 2;
	}
	if (fprefix) {
		/* P0,P1,...: built once, then handled like --features. */
		size_t cap = (size_t)(fcount ? fcount : 1) * (strlen(fprefix) + 8);
		size_t n = 0;

		fbuf = malloc(cap);
		if (!fbuf)
			return 2;
		for (unsigned i = 0; i < (unsigned)(fcount ? fcount : 1); i++)
			n += (size_t)snprintf(fbuf + n, cap - n, "%s%s%u", i ? "," : "", fprefix,
					      i);
		features = fbuf;
	}
	if (bench_keys_init(&keys, cprefix, (uint32_t)customers, features, err, sizeof(err))) {
		fprintf(stderr, "entbench: %s\n", err);
		free(fbuf);
		return 2;
	}
	cfg.keys = &keys;
	if (!strcmp(cfg.dist, "zipf")) {
		if (bench_zipf_init(&zipf, keys.customers, cfg.zipf_s)) {
			fputs("entbench: cannot build the Zipf table\n", stderr);
			bench_keys_deinit(&keys);
			free(fbuf);
			return 2;
		}
		cfg.zipf = &zipf;
	}
	/* A server closing a connection must not kill the client with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	res = malloc(sizeof(*res));
	if (!res)
		return 2;
	grpc_init();
	rc = bench_run(&cfg, res);
	if (rc == 0) {
		if (!quiet)
			bench_report_table(&cfg, res);
		if (json && bench_report_json(&cfg, res, json))
			rc = -1;
	}
	rc = rc ? 2 : bench_result_errors(&cfg, res) ? 1 : 0;
	grpc_shutdown();
	free(res);
	if (cfg.zipf)
		bench_zipf_deinit(&zipf);
	bench_keys_deinit(&keys);
	free(fbuf);
	return rc;
}
