/*
 * entctl fleet ...: fleet-mode tools that talk to NATS JetStream directly (docs/entctl.md,
 * docs/fleet.md).
 *
 *   entctl fleet snapshot publish --db DIR --nats URL [...]   upload a compact copy of DIR
 *   entctl fleet snapshot fetch   --db DIR --nats URL [...]   download the newest into DIR
 *   entctl fleet snapshot info    --nats URL [...]            what the newest snapshot says
 *
 * publish opens DIR read-only: LMDB lets it read alongside a running entd (one read
 * transaction for the length of the copy), so it can run on a live replica's directory.
 */
#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/ctl.h"
#include "ent/client.h"
#include "ent/store.h"
#include "ent/v1/admin.pb-c.h"
#include "sync/objstore.h"
#include "sync/snapshot.h"

#define MAX_SERVERS 16

struct fleet_args {
	const char *db;
	const char *servers[MAX_SERVERS];
	int n_servers;
	const char *bucket;
	const char *name;
	const char *creds;
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *tmp;
	int replicas;
	uint32_t chunk_size;
	bool allow_no_stream;
	bool replace;
	bool seed;
	const char *stream;
};

static const char snapshot_usage[] =
	"usage: entctl fleet snapshot publish --db DIR --nats URL [--nats URL...] [--bucket B]\n"
	"                                     [--name N] [--replicas R] [--tmp DIR] [--creds F]\n"
	"                                     [--tls-ca F [--tls-cert F --tls-key F]]\n"
	"                                     [--seed [--stream S]] [--chunk-size BYTES]\n"
	"       entctl fleet snapshot fetch   --db DIR --nats URL [--bucket B] [--name N] [--replace]\n"
	"       entctl fleet snapshot info    --nats URL [--bucket B] [--name N] ...\n"
	"URL may list several servers separated by commas; default bucket " ENT_SNAPSHOT_DEFAULT_BUCKET
	",\nname " ENT_SNAPSHOT_DEFAULT_NAME ". $ENTD_NATS is used when --nats is not given.\n";

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Split a comma-separated URL list into args->servers (pointers into \a s, modified). */
static int add_servers(struct fleet_args *a, char *s)
{
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (a->n_servers == MAX_SERVERS)
			return -1;
		a->servers[a->n_servers++] = tok;
	}
	return 0;
}

static int parse(int argc, char **argv, struct fleet_args *a, const char *cmd)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc; i++) {
		const char *o = argv[i];
		bool has = i + 1 < argc;
		if (!strcmp(o, "--db") && has) {
			a->db = argv[++i];
		} else if (!strcmp(o, "--nats") && has) {
			if (add_servers(a, argv[++i])) {
				fprintf(stderr,
					"entctl fleet snapshot %s: --nats: at most %d servers\n",
					cmd, MAX_SERVERS);
				return 2;
			}
		} else if (!strcmp(o, "--bucket") && has) {
			a->bucket = argv[++i];
		} else if (!strcmp(o, "--name") && has) {
			a->name = argv[++i];
		} else if (!strcmp(o, "--creds") && has) {
			a->creds = argv[++i];
		} else if (!strcmp(o, "--tls-ca") && has) {
			a->tls_ca = argv[++i];
		} else if (!strcmp(o, "--tls-cert") && has) {
			a->tls_cert = argv[++i];
		} else if (!strcmp(o, "--tls-key") && has) {
			a->tls_key = argv[++i];
		} else if (!strcmp(o, "--tmp") && has) {
			a->tmp = argv[++i];
		} else if (!strcmp(o, "--replicas") && has) {
			char *end;
			long r = strtol(argv[++i], &end, 10);
			if (*end || r < 1 || r > 5) {
				fprintf(stderr,
					"entctl fleet snapshot %s: --replicas: must be 1..5\n",
					cmd);
				return 2;
			}
			a->replicas = (int)r;
		} else if (!strcmp(o, "--chunk-size") && has) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1024 || v > ENT_OBJ_MAX_CHUNK) {
				fprintf(stderr,
					"entctl fleet snapshot %s: --chunk-size: must be 1024..%d\n",
					cmd, ENT_OBJ_MAX_CHUNK);
				return 2;
			}
			a->chunk_size = (uint32_t)v;
		} else if (!strcmp(o, "--seed")) {
			a->seed = true;
		} else if (!strcmp(o, "--stream") && has) {
			a->stream = argv[++i];
		} else if (!strcmp(o, "--replace")) {
			a->replace = true;
		} else if (!strcmp(o, "--allow-no-stream")) {
			a->allow_no_stream = true;
		} else {
			fprintf(stderr,
				"entctl fleet snapshot %s: unknown or incomplete option '%s'\n",
				cmd, o);
			fputs(snapshot_usage, stderr);
			return 2;
		}
	}
	if (!a->n_servers) {
		char *env = getenv("ENTD_NATS");
		if (env && *env && add_servers(a, env)) {
			fprintf(stderr,
				"entctl fleet snapshot %s: $ENTD_NATS: at most %d servers\n", cmd,
				MAX_SERVERS);
			return 2;
		}
	}
	if (!a->n_servers) {
		fprintf(stderr, "entctl fleet snapshot %s: --nats URL is required\n", cmd);
		return 2;
	}
	if (!!a->tls_cert != !!a->tls_key) {
		fprintf(stderr, "entctl fleet snapshot %s: --tls-cert and --tls-key go together\n",
			cmd);
		return 2;
	}
	return 0;
}

/* Connect and open a JetStream context; prints the reason and returns non-zero on failure. */
static int connect(const struct fleet_args *a, const char *cmd, natsConnection **nc, jsCtx **js)
{
	natsOptions *no = NULL;
	natsStatus s = natsOptions_Create(&no);
	const char *step = "options";
	if (s == NATS_OK && (step = "--nats"))
		s = natsOptions_SetServers(no, (const char **)a->servers, a->n_servers);
	if (s == NATS_OK)
		s = natsOptions_SetName(no, "entctl");
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(no, 5000);
	if (s == NATS_OK && a->creds && (step = "--creds"))
		s = natsOptions_SetUserCredentialsFromFiles(no, a->creds, NULL);
	if (s == NATS_OK && a->tls_ca && (step = "--tls-ca")) {
		s = natsOptions_SetSecure(no, true);
		if (s == NATS_OK)
			s = natsOptions_LoadCATrustedCertificates(no, a->tls_ca);
	}
	if (s == NATS_OK && a->tls_cert && (step = "--tls-cert/--tls-key")) {
		s = natsOptions_SetSecure(no, true);
		if (s == NATS_OK)
			s = natsOptions_LoadCertificatesChain(no, a->tls_cert, a->tls_key);
	}
	if (s == NATS_OK && (step = "connect"))
		s = natsConnection_Connect(nc, no);
	natsOptions_Destroy(no);
	if (s != NATS_OK) {
		const char *last = nats_GetLastError(NULL);
		fprintf(stderr,
			"entctl fleet snapshot %s: %s: cannot connect to NATS at %s%s: %s\n", cmd,
			step, a->servers[0], a->n_servers > 1 ? " (and others)" : "",
			last && *last ? last : natsStatus_GetText(s));
		return 1;
	}
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	s = natsConnection_JetStream(js, *nc, &jo);
	if (s != NATS_OK) {
		fprintf(stderr, "entctl fleet snapshot %s: JetStream: %s\n", cmd,
			natsStatus_GetText(s));
		natsConnection_Destroy(*nc);
		return 1;
	}
	return 0;
}

static void disconnect(natsConnection *nc, jsCtx *js)
{
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_Close();
}

static int snap_publish(int argc, char **argv)
{
	struct fleet_args a;
	int rc = parse(argc, argv, &a, "publish");
	if (rc)
		return rc;
	if (!a.db) {
		fputs("entctl fleet snapshot publish: --db DIR is required\n", stderr);
		return 2;
	}
	struct ent_err err = {0};
	struct ent_store *st;
	struct ent_store_opts so = {.path = a.db, .read_only = true};
	if (ent_store_open(&so, &st, &err)) {
		fprintf(stderr, "entctl fleet snapshot publish: %s\n", err.msg);
		return 1;
	}
	natsConnection *nc;
	jsCtx *js;
	if (connect(&a, "publish", &nc, &js)) {
		ent_store_close(st);
		return 1;
	}
	struct ent_snapshot_opts o = {.name = a.name,
				      .tmp_dir = a.tmp,
				      .replicas = a.replicas,
				      .chunk_size = a.chunk_size,
				      .allow_no_stream = a.allow_no_stream};
	/*
	 * --seed: DIR (e.g. an embedded-mode database) becomes the starting state of a new fleet.
	 * Only while the stream has never held a message: otherwise the replicas would apply the
	 * stream's history on top of a state that already contains its effects, or lack them.
	 */
	char identity[256];
	if (a.seed) {
		const char *stream = a.stream ? a.stream : "ENTD_EVENTS";
		uint64_t last = 0;
		struct ent_err ierr = {0};
		int ir = ent_sync_snapshot_stream_identity(js, stream, identity, sizeof(identity),
							   NULL, &last, &ierr);
		if (ir == -ENT_ENOTFOUND) {
			fprintf(stderr,
				"entctl fleet snapshot publish: --seed: stream '%s' does not exist: "
				"start one entd in fleet mode first (it creates the stream)\n",
				stream);
		} else if (ir) {
			fprintf(stderr, "entctl fleet snapshot publish: --seed: %s\n", ierr.msg);
		} else if (last != 0) {
			fprintf(stderr,
				"entctl fleet snapshot publish: --seed: stream '%s' already holds "
				"%" PRIu64
				" message(s); a seed is only valid for a stream that never "
				"held one\n",
				stream, last);
			ir = -ENT_EPRECOND;
		}
		if (ir) {
			ent_store_close(st);
			disconnect(nc, js);
			return 1;
		}
		o.seed_identity = identity;
	}
	uint64_t seq = 0;
	double t0 = now_s();
	int r = ent_sync_snapshot_publish_opts(js, a.bucket, st, &o, &seq, &err);
	double dt = now_s() - t0;
	ent_store_close(st);
	struct ent_sync_snapshot_info si = {0};
	if (!r)
		r = ent_sync_snapshot_info(js, a.bucket, a.name, &si, &err);
	disconnect(nc, js);
	if (r) {
		fprintf(stderr, "entctl fleet snapshot publish: %s\n", err.msg);
		return 1;
	}
	printf("published snapshot: bucket %s, object %s, seq %" PRIu64 ", stream '%s', %" PRIu64
	       " bytes, %s, %.2f s\n",
	       a.bucket ? a.bucket : ENT_SNAPSHOT_DEFAULT_BUCKET,
	       a.name ? a.name : ENT_SNAPSHOT_DEFAULT_NAME, seq, si.stream, si.size, si.digest, dt);
	return 0;
}

static int snap_fetch(int argc, char **argv)
{
	struct fleet_args a;
	int rc = parse(argc, argv, &a, "fetch");
	if (rc)
		return rc;
	if (!a.db) {
		fputs("entctl fleet snapshot fetch: --db DIR is required\n", stderr);
		return 2;
	}
	natsConnection *nc;
	jsCtx *js;
	if (connect(&a, "fetch", &nc, &js))
		return 1;
	struct ent_err err = {0};
	struct ent_snapshot_opts o = {.name = a.name};
	struct ent_sync_snapshot_info si;
	double t0 = now_s();
	/* --replace: the directory holds a (stopped) replica's database, e.g. one behind the
	 * stream's retention; it is swapped only once the new copy is complete and checked. */
	int r = a.replace ? ent_sync_snapshot_restore(js, a.bucket, a.db, 0, &o, &si, &err)
			  : ent_sync_snapshot_fetch_opts(js, a.bucket, a.db, &o, &si, &err);
	double dt = now_s() - t0;
	disconnect(nc, js);
	if (r) {
		fprintf(stderr, "entctl fleet snapshot fetch: %s\n", err.msg);
		return r == -ENT_ENOTFOUND ? 3 : 1;
	}
	printf("fetched snapshot: seq %" PRIu64 ", stream '%s', %" PRIu64
	       " bytes, %s, into %s, %.2f s\n",
	       si.seq, si.stream, si.size, si.digest, a.db, dt);
	return 0;
}

static int snap_info(int argc, char **argv)
{
	struct fleet_args a;
	int rc = parse(argc, argv, &a, "info");
	if (rc)
		return rc;
	natsConnection *nc;
	jsCtx *js;
	if (connect(&a, "info", &nc, &js))
		return 1;
	struct ent_err err = {0};
	struct ent_sync_snapshot_info si;
	int r = ent_sync_snapshot_info(js, a.bucket, a.name, &si, &err);
	disconnect(nc, js);
	if (r) {
		fprintf(stderr, "entctl fleet snapshot info: %s\n", err.msg);
		return r == -ENT_ENOTFOUND ? 3 : 1;
	}
	char t[40];
	printf("seq %" PRIu64 "\nstream %s\nsize %" PRIu64 "\ndigest %s\nstored %s\n", si.seq,
	       si.stream, si.size, si.digest, ent_time_fmt(si.mtime_ms, t, sizeof(t)));
	return 0;
}

/* ---- fleet status ------------------------------------------------------------------- */

static const char status_usage[] =
	"usage: entctl fleet status [--token T] [--json] [--timeout MS] -a ADDR [-a ADDR...]\n"
	"One line per node: its applied stream sequence, the stream head it knows, the lag in\n"
	"messages and in ms since it last heard from the stream, and its state. Exit status 0\n"
	"when every node answered, is caught up and in touch; 1 otherwise. The token is --token\n"
	"or $ENTD_ADMIN_TOKEN.\n";

/*
 * GetStatus of every node given, side by side: what an operator needs to see that the fleet
 * follows one stream (same identity), how far each replica is behind, and which is degraded.
 */
static int fleet_status(int argc, char **argv)
{
	const char *addrs[64];
	int n = 0;
	const char *token = getenv("ENTD_ADMIN_TOKEN");
	bool json = false;
	long timeout = 5000;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "-a") || !strcmp(a, "--addr")) && i + 1 < argc && n < 64)
			addrs[n++] = argv[++i];
		else if (!strcmp(a, "--token") && i + 1 < argc)
			token = argv[++i];
		else if (!strcmp(a, "--timeout") && i + 1 < argc)
			timeout = strtol(argv[++i], NULL, 10);
		else if (!strcmp(a, "--json"))
			json = true;
		else {
			fprintf(stderr, "entctl fleet status: unknown option '%s'\n%s", a,
				status_usage);
			return 2;
		}
	}
	if (!n) {
		fputs(status_usage, stderr);
		return 2;
	}
	int bad = 0;
	if (json)
		printf("[");
	else
		printf("%-28s %12s %12s %8s %10s %-14s %s\n", "node", "sequence", "head", "lag",
		       "heard_ms", "state", "stream");
	for (int i = 0; i < n; i++) {
		ent_client *c = NULL;
		Ent__V1__StatusResponse *r = NULL;
		char details[256] = "";
		grpc_status_code st = GRPC_STATUS_UNKNOWN;
		Ent__V1__GetStatusRequest req = ENT__V1__GET_STATUS_REQUEST__INIT;
		int rc = ent_client_new(addrs[i], token, &c);
		if (!rc)
			rc = ent_client_call(c, "/ent.v1.AdminService/GetStatus", &req.base,
					     &ent__v1__status_response__descriptor, timeout,
					     (ProtobufCMessage **)&r, &st, details,
					     sizeof(details));
		if (rc || !r) {
			bad++;
			if (json)
				printf("%s{\"node\": \"%s\", \"error\": \"%s\"}", i ? ", " : "",
				       addrs[i], ent_client_status_name(st));
			else
				printf("%-28s error: %s: %s\n", addrs[i],
				       ent_client_status_name(st), details);
		} else {
			const char *state = r->fleet ? r->fleet_state : "embedded";
			if (!r->fleet || strcmp(state, "ok"))
				bad++;
			if (json)
				printf("%s{\"node\": \"%s\", \"sequence\": %" PRIu64
				       ", \"stream_head\": %" PRIu64 ", \"lag_events\": %" PRIu64
				       ", \"last_heard_ms\": %" PRId64 ", \"state\": \"%s\", "
				       "\"stream\": \"%s\", \"skipped_events\": %" PRIu64 "}",
				       i ? ", " : "", addrs[i], r->sequence, r->stream_head,
				       r->lag_events, r->last_heard_ms, state, r->stream,
				       r->skipped_events);
			else
				printf("%-28s %12" PRIu64 " %12" PRIu64 " %8" PRIu64 " %10" PRId64
				       " %-14s %s\n",
				       addrs[i], r->sequence, r->stream_head, r->lag_events,
				       r->last_heard_ms, state, r->stream);
		}
		if (r)
			protobuf_c_message_free_unpacked(&r->base, NULL);
		ent_client_free(c);
	}
	if (json)
		printf("]\n");
	return bad ? 1 : 0;
}

int ent_client_ctl_fleet(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "status"))
		return fleet_status(argc - 2, argv + 2);
	if (argc >= 3 && !strcmp(argv[1], "snapshot")) {
		if (!strcmp(argv[2], "publish"))
			return snap_publish(argc - 3, argv + 3);
		if (!strcmp(argv[2], "fetch"))
			return snap_fetch(argc - 3, argv + 3);
		if (!strcmp(argv[2], "info"))
			return snap_info(argc - 3, argv + 3);
	}
	if (argc >= 2 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help"))) {
		fputs(status_usage, stdout);
		fputs(snapshot_usage, stdout);
		return 0;
	}
	fputs(status_usage, stderr);
	fputs(snapshot_usage, stderr);
	return 2;
}
