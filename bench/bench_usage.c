/*
 * bench_usage: where the time of one usage record goes in the store, without gRPC
 * (docs/performance.md, "Usage reports"). On a copy of a generated data set (it writes), for
 * batches of --batch records over --report-customers customers drawn uniformly, three metered
 * features, unique idempotency keys, it times per record (thread CPU time, so a shared host
 * steals less of it):
 *
 *   decode    what the RPC thread does with a BatchReportUsageRequest: unpack it as
 *             BatchReportUsageWire, check each record's strings on the wire, unpack each record
 *   apply     ent_store_apply of the ReportUsageBatch event (validation, idempotency lookup,
 * counter read and write, key insert, the answer), inside the group's write transaction commit
 * ent_store_wtxn_commit of a group of --group batches, divided by its records (the write of the
 * dirty pages and the fsync) dup       ent_store_apply of the same batches again: every record a
 * duplicate, so validation, lookups and the answer without any write; apply - dup is what the
 * writes cost single    the same number of records as single ReportUsage events, 64 per transaction
 *             (what the writer does with 64 calls in flight): apply and commit per record
 *
 *   bench_usage --db COPY --report-customers M [--batch 1000] [--batches 50] [--group 2]
 *               [--features f_metered_0,f_metered_1,f_metered_2] [--seed 1]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ent/pbarena.h"
#include "ent/pbcheck.h"
#include "ent/store.h"
#include "ent/v1/event.pb-c.h"
#include "keys.h"

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_usage: %s: %s\n", what, msg);
	exit(1);
}

int main(int argc, char **argv)
{
	const char *db = NULL, *features = "f_metered_0,f_metered_1,f_metered_2";
	unsigned customers = 100000, batch = 1000, batches = 50, group = 2, seed = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--db"))
			db = argv[i + 1];
		else if (!strcmp(argv[i], "--report-customers"))
			customers = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch"))
			batch = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batches"))
			batches = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--group"))
			group = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--features"))
			features = argv[i + 1];
		else if (!strcmp(argv[i], "--seed"))
			seed = (unsigned)atoi(argv[i + 1]);
		else
			die(argv[i], "unknown option");
	}
	if (!db || !customers || !batch || batch > ENT_MAX_USAGE_BATCH || !batches || !group)
		die("usage", "bench_usage --db COPY --report-customers M [--batch N] [--batches K] "
			     "[--group G]");
	/* Feature codes. */
	char *fl = strdup(features), *save = NULL;
	char *feat[16];
	unsigned nf = 0;
	for (char *t = strtok_r(fl, ",", &save); t && nf < 16; t = strtok_r(NULL, ",", &save))
		feat[nf++] = t;

	/* The records, serialized as the client sends them. */
	size_t n = (size_t)batch * batches;
	Ent__V1__ReportUsageRequest *recs = calloc(n, sizeof(*recs));
	char(*cus)[24] = calloc(n, 24), (*key)[32] = calloc(n, 32);
	uint8_t **wire = calloc(batches, sizeof(*wire));
	size_t *wire_len = calloc(batches, sizeof(*wire_len));
	if (!recs || !cus || !key || !wire || !wire_len)
		die("memory", "out of memory");
	srand(seed);
	for (size_t i = 0; i < n; i++) {
		ent__v1__report_usage_request__init(&recs[i]);
		snprintf(cus[i], 24, "cus_%u", (unsigned)rand() % customers);
		snprintf(key[i], 32, "bu-%u-%zu", seed, i);
		recs[i].customer_id = cus[i];
		recs[i].feature_code = feat[(unsigned)rand() % nf];
		recs[i].quantity = 1 + (int64_t)(i % 5);
		recs[i].idempotency_key = key[i];
	}
	Ent__V1__ReportUsageRequest **ptrs = calloc(n, sizeof(*ptrs));
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &recs[i];
	for (unsigned b = 0; b < batches; b++) {
		Ent__V1__BatchReportUsageRequest req = ENT__V1__BATCH_REPORT_USAGE_REQUEST__INIT;
		req.n_records = batch;
		req.records = ptrs + (size_t)b * batch;
		wire_len[b] = ent__v1__batch_report_usage_request__get_packed_size(&req);
		wire[b] = malloc(wire_len[b]);
		ent__v1__batch_report_usage_request__pack(&req, wire[b]);
	}

	/* decode: as src/rpc/usage_batch.c does it, into an arena reset per call. */
	struct ent_arena arena;
	ent_arena_init(&arena, 0);
	ProtobufCAllocator alloc;
	ent_pb_allocator(&alloc, &arena);
	uint64_t t0 = cpu_ns();
	size_t decoded = 0;
	for (unsigned b = 0; b < batches; b++) {
		ent_arena_reset(&arena);
		Ent__V1__BatchReportUsageWire *w =
			ent__v1__batch_report_usage_wire__unpack(&alloc, wire_len[b], wire[b]);
		if (!w)
			die("decode", "unpack failed");
		for (size_t i = 0; i < w->n_records; i++) {
			struct ent_err err;
			if (ent_pb_check_strings(&ent__v1__report_usage_request__descriptor,
						 w->records[i].data, w->records[i].len, &err))
				die("decode", err.msg);
			if (protobuf_c_message_unpack(&ent__v1__report_usage_request__descriptor,
						      &alloc, w->records[i].len,
						      w->records[i].data))
				decoded++;
		}
	}
	double decode_ns = (double)(cpu_ns() - t0) / (double)n;
	if (decoded != n)
		die("decode", "records lost");

	/* The event clock: now, so records count in the data set's current periods. */
	int64_t now_ms = (int64_t)time(NULL) * 1000;
	struct ent_store_opts o = {.path = db, .map_size = (size_t)64 << 30};
	struct ent_store *s;
	struct ent_err err = {0};
	if (ent_store_open(&o, &s, &err))
		die(db, err.msg);
	Ent__V1__ReportUsageBatch *pl = calloc(batches, sizeof(*pl));
	Ent__V1__Event *ev = calloc(batches, sizeof(*ev));
	for (unsigned b = 0; b < batches; b++) {
		ent__v1__report_usage_batch__init(&pl[b]);
		pl[b].n_records = batch;
		pl[b].records = ptrs + (size_t)b * batch;
		ent__v1__event__init(&ev[b]);
		ev[b].at = now_ms;
		ev[b].kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE_BATCH;
		ev[b].report_usage_batch = &pl[b];
	}
	struct ent_apply_result res;
	double apply_ns[2] = {0, 0}, commit_ns[2] = {0, 0};
	uint64_t counted[2] = {0, 0};
	/* Pass 0: new keys; pass 1: the same batches again, all duplicates. */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned b = 0; b < batches; b += group) {
			struct ent_wtxn *w;
			ent_arena_reset(&arena);
			if (ent_store_wtxn_begin(s, &w))
				die("begin", "failed");
			uint64_t a0 = cpu_ns();
			for (unsigned g = b; g < b + group && g < batches; g++) {
				if (ent_store_apply(w, &ev[g], &arena, &res))
					die("apply", res.err.msg);
				for (size_t i = 0; i < res.n_records; i++)
					counted[pass] +=
						res.records[i].outcome ==
						(pass ? ENT_USAGE_DUPLICATE : ENT_USAGE_COUNTED);
			}
			uint64_t a1 = cpu_ns();
			if (ent_store_wtxn_commit(w, &err))
				die("commit", err.msg);
			apply_ns[pass] += (double)(a1 - a0);
			commit_ns[pass] += (double)(cpu_ns() - a1);
		}
	}
	if (counted[0] != n || counted[1] != n) {
		fprintf(stderr, "counted %llu, duplicates %llu of %zu\n",
			(unsigned long long)counted[0], (unsigned long long)counted[1], n);
		die("apply", "not every record counted once, then duplicate");
	}

	/* single: new keys, one event per record, 64 events per transaction. */
	for (size_t i = 0; i < n; i++) {
		snprintf(key[i], 32, "bs-%u-%zu", seed, i);
		recs[i].idempotency_key = key[i];
	}
	double single_apply = 0, single_commit = 0;
	for (size_t i = 0; i < n; i += 64) {
		struct ent_wtxn *w;
		ent_arena_reset(&arena);
		if (ent_store_wtxn_begin(s, &w))
			die("begin", "failed");
		uint64_t a0 = cpu_ns();
		for (size_t j = i; j < i + 64 && j < n; j++) {
			Ent__V1__Event e = ENT__V1__EVENT__INIT;
			e.at = now_ms;
			e.kind_case = ENT__V1__EVENT__KIND_REPORT_USAGE;
			e.report_usage = &recs[j];
			if (ent_store_apply(w, &e, &arena, &res))
				die("single", res.err.msg);
		}
		uint64_t a1 = cpu_ns();
		if (ent_store_wtxn_commit(w, &err))
			die("commit", err.msg);
		single_apply += (double)(a1 - a0);
		single_commit += (double)(cpu_ns() - a1);
	}
	/* The lookups a record makes, one by one, in a read snapshot after the writes: the
	   customer row, the feature row, the idempotency key, the aggregate (+ record decode). */
	double look[4] = {0, 0, 0, 0};
	struct ent_view *v;
	if (ent_store_view_new(s, &v))
		die("view", "failed");
	for (int kind = 0; kind < 4; kind++) {
		uint64_t l0 = cpu_ns();
		for (size_t i = 0; i < n; i += 100) {
			if (ent_store_view_begin(v))
				die("view", "begin failed");
			for (size_t j = i; j < i + 100 && j < n; j++) {
				char k[128];
				struct ent_str c = ent_str_c(recs[j].customer_id), val;
				struct ent_str f = ent_str_c(recs[j].feature_code);
				struct ent_str x = ent_str_c(recs[j].idempotency_key);
				memcpy(k, c.p, c.len);
				k[c.len] = '\0';
				enum ent_table t = ENT_T_CUSTOMERS;
				struct ent_str lk = c;
				if (kind == 1) {
					t = ENT_T_FEATURES;
					lk = f;
				} else if (kind >= 2) {
					const struct ent_str *second = kind == 2 ? &x : &f;
					memcpy(k + c.len + 1, second->p, second->len);
					lk = (struct ent_str){k, c.len + 1 + second->len};
					t = kind == 2 ? ENT_T_IDEM : ENT_T_AGG;
				}
				if (kind == 3) {
					static struct ent_check_result cr;
					struct ent_check ck = {c, f, 1, now_ms};
					if (ent_store_view_check(v, &ck, &cr))
						die("check", "failed");
				} else if (ent_store_view_get(v, t, lk, &val) && kind != 2) {
					die("lookup", "a row is missing");
				}
			}
			ent_store_view_end(v);
		}
		look[kind] = (double)(cpu_ns() - l0);
	}
	ent_store_view_free(v);
	ent_store_close(s);

	double dn = (double)n;
	printf("%zu records: %u batches of %u over %u customers, %u batch(es) per commit\n", n,
	       batches, batch, customers, group);
	printf("CPU ns per record     decode %7.0f\n", decode_ns);
	printf("batch, new keys       apply  %7.0f   commit %7.0f   total %7.0f\n",
	       apply_ns[0] / dn, commit_ns[0] / dn, decode_ns + (apply_ns[0] + commit_ns[0]) / dn);
	printf("batch, duplicates     apply  %7.0f   commit %7.0f\n", apply_ns[1] / dn,
	       commit_ns[1] / dn);
	printf("writes (new - dup)    apply  %7.0f\n", (apply_ns[0] - apply_ns[1]) / dn);
	printf("lookups (read view)   customer %5.0f   feature %5.0f   idempotency key %5.0f   "
	       "aggregate+decide %5.0f\n",
	       look[0] / dn, look[1] / dn, look[2] / dn, look[3] / dn);
	printf("single, 64 per txn    apply  %7.0f   commit %7.0f   total %7.0f\n",
	       single_apply / dn, single_commit / dn, (single_apply + single_commit) / dn);
	ent_arena_deinit(&arena);
	return 0;
}
