/*
 * The registry of per-thread counter blocks and the Prometheus text rendering.
 *
 * Rendering happens on the HTTP thread at scrape time and may allocate freely; counting happens
 * on the RPC threads and never does (see metrics.h). Series that are zero are mostly left out
 * to keep scrapes small, except the ones a dashboard needs to exist from the start: every
 * method's OK count and every known decision reason.
 */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ent/model.h"
#include "metrics/impl.h"

static const char *const status_names[ENT_METRICS_N_STATUS] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

int ent_metrics_new(const char *const *method_names, size_t n_methods, struct ent_metrics **out)
{
	if (n_methods > 4096 || (n_methods && !method_names))
		return -ENT_EINVAL;
	struct ent_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENT_ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->n_methods = n_methods;
	m->method_names = calloc(n_methods ? n_methods : 1, sizeof(char *));
	if (!m->method_names)
		goto fail;
	for (size_t i = 0; i < n_methods; i++)
		if (!(m->method_names[i] = strdup(method_names[i] ? method_names[i] : "")))
			goto fail;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	m->seed = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
		  ((uint64_t)getpid() << 32);
	*out = m;
	return 0;
fail:
	ent_metrics_free(m);
	return -ENT_ENOMEM;
}

struct ent_metrics_block *ent_metrics_thread_block(struct ent_metrics *m)
{
	size_t n = m->n_methods;
	size_t head = (sizeof(struct ent_metrics_block) + 63) & ~(size_t)63;
	size_t cells = n * ENT_METRICS_N_STATUS + n * ENT_METRICS_N_BUCKETS + n;
	/* Rounded up to whole cache lines so the next allocation cannot share our last line. */
	size_t size = (head + cells * sizeof(uint64_t) + 63) & ~(size_t)63;
	struct ent_metrics_block *b = aligned_alloc(64, size);
	if (!b)
		return NULL;
	memset(b, 0, size);
	_Atomic uint64_t *cell = (_Atomic uint64_t *)((char *)b + head);
	b->n_methods = (uint32_t)n;
	b->calls = cell;
	b->buckets = cell + n * ENT_METRICS_N_STATUS;
	b->sum_us = b->buckets + n * ENT_METRICS_N_BUCKETS;
	pthread_mutex_lock(&m->lock);
	/* splitmix64 of a counter: distinct, well-mixed non-zero seeds per block. */
	uint64_t z = (m->seed += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	b->rng = (z ^ (z >> 31)) | 1;
	b->next = m->blocks;
	m->blocks = b;
	pthread_mutex_unlock(&m->lock);
	return b;
}

void ent_metrics_set_gauge_cb(struct ent_metrics *m, ent_metrics_gauge_cb cb, void *ctx)
{
	m->gauge_cb = cb;
	m->gauge_ctx = ctx;
}

unsigned ent_metrics_port(const struct ent_metrics *m)
{
	return m->httpd ? m->port : 0;
}

void ent_metrics_free(struct ent_metrics *m)
{
	if (!m)
		return;
	ent_metrics_stop(m);
	struct ent_metrics_block *b = m->blocks;
	while (b) {
		struct ent_metrics_block *next = b->next;
		free(b);
		b = next;
	}
	if (m->method_names)
		for (size_t i = 0; i < m->n_methods; i++)
			free(m->method_names[i]);
	free(m->method_names);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void ent_metrics_fill_store(struct ent_metrics_gauges *g, const struct ent_store_stats *st,
			    int64_t now_ms)
{
	g->have_store = true;
	g->snapshot_seq = (double)st->seq;
	g->snapshot_age_seconds =
		st->last_commit_at > 0 ? (double)(now_ms - st->last_commit_at) / 1000.0 : NAN;
	g->lmdb_map_size_bytes = (double)st->map_size_bytes;
	g->lmdb_used_bytes = (double)st->db_size_bytes;
	const uint64_t objs[7] = {st->features,	 st->plans,	st->addons,    st->subscriptions,
				  st->overrides, st->customers, st->aggregates};
	for (int i = 0; i < 7; i++)
		g->objects[i] = (double)objs[i];
	g->boundaries = (double)st->boundaries;
	g->walk_enabled = st->walk_enabled ? 1 : 0;
	g->walk_fallbacks = (double)st->walk_fallbacks;
	g->corrupt_reads = (double)st->corrupt_reads;
}

void ent_metrics_fill_writer(struct ent_metrics_gauges *g, const struct ent_writer_stats *ws)
{
	g->have_writer = true;
	g->writer_queue_depth = (double)ws->queue_depth;
	g->writer_commits_total = (double)ws->commits;
	g->writer_events_total = (double)ws->events;
	g->writer_failed_total = (double)ws->failed;
	g->writer_last_commit_seconds = (double)ws->last_commit_us / 1e6;
	g->writer_boundary_lag_seconds = (double)ws->boundary_lag_ms / 1000.0;
	g->writer_next_boundary_timestamp_seconds = (double)ws->next_boundary_at / 1000.0;
	g->checks_waiting = (double)ws->waiting;
}

/* ---- rendering -------------------------------------------------------------------------- */

/* A growing text buffer; a failed allocation sticks and is reported once at the end. */
struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void bputf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bputf(struct buf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* A label value per the exposition format: backslash, double quote and newline escaped. */
static void bput_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			bputf(b, "\\\\");
		else if (*s == '"')
			bputf(b, "\\\"");
		else if (*s == '\n')
			bputf(b, "\\n");
		else
			bputf(b, "%c", *s);
	}
}

static void header(struct buf *b, const char *name, const char *type, const char *help)
{
	bputf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(struct buf *b, const char *name, const char *type, const char *help, double v)
{
	if (isnan(v))
		return;
	header(b, name, type, help);
	bputf(b, "%s %.17g\n", name, v);
}

/* Fields of /proc/self/status in bytes (kB in the file); NAN when absent. */
static void read_proc_status(double *rss, double *anon, double *vsize, double *threads)
{
	*rss = *anon = *vsize = *threads = NAN;
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
			*rss = (double)v * 1024;
		else if (sscanf(line, "RssAnon: %llu kB", &v) == 1)
			*anon = (double)v * 1024;
		else if (sscanf(line, "VmSize: %llu kB", &v) == 1)
			*vsize = (double)v * 1024;
		else if (sscanf(line, "Threads: %llu", &v) == 1)
			*threads = (double)v;
	}
	fclose(f);
}

/* CPU seconds and start time (Unix seconds) from /proc/self/stat and /proc/stat. */
static void read_proc_stat(double *cpu, double *start)
{
	*cpu = *start = NAN;
	FILE *f = fopen("/proc/self/stat", "re");
	if (!f)
		return;
	char line[1024];
	bool ok = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	if (!ok)
		return;
	/* The command name may hold spaces and parentheses: fields start after the last ')'. */
	char *p = strrchr(line, ')');
	if (!p)
		return;
	unsigned long long utime, stime, starttime;
	if (sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
		   "%llu",
		   &utime, &stime, &starttime) != 3)
		return;
	long tck = sysconf(_SC_CLK_TCK);
	if (tck <= 0)
		return;
	*cpu = (double)(utime + stime) / (double)tck;
	f = fopen("/proc/stat", "re");
	if (!f)
		return;
	unsigned long long btime;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "btime %llu", &btime) == 1) {
			*start = (double)btime + (double)starttime / (double)tck;
			break;
		}
	}
	fclose(f);
}

static double count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return NAN;
	double n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

static void render_process(struct buf *b)
{
	double rss, anon, vsize, threads, cpu, start;
	read_proc_status(&rss, &anon, &vsize, &threads);
	read_proc_stat(&cpu, &start);
	gauge(b, "entd_process_resident_memory_bytes", "gauge", "Resident set size (VmRSS).", rss);
	gauge(b, "entd_process_anon_memory_bytes", "gauge",
	      "Anonymous resident memory (RssAnon): the heap, without the LMDB map's file pages.",
	      anon);
	gauge(b, "entd_process_virtual_memory_bytes", "gauge",
	      "Virtual memory size (VmSize), including the whole LMDB map.", vsize);
	gauge(b, "entd_process_threads", "gauge", "Threads of the process.", threads);
	gauge(b, "entd_process_cpu_seconds_total", "counter", "User and system CPU time.", cpu);
	gauge(b, "entd_process_start_time_seconds", "gauge", "Start time, Unix seconds.", start);
	gauge(b, "entd_process_open_fds", "gauge", "Open file descriptors.", count_open_fds());
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
		gauge(b, "entd_process_max_fds", "gauge", "Limit of open file descriptors.",
		      (double)rl.rlim_cur);
}

static void render_gauges(struct buf *b, const struct ent_metrics_gauges *g)
{
	if (g->have_store) {
		gauge(b, "entd_snapshot_sequence", "gauge",
		      "Events applied in the newest snapshot.", g->snapshot_seq);
		gauge(b, "entd_snapshot_age_seconds", "gauge",
		      "Seconds since the newest snapshot was committed.", g->snapshot_age_seconds);
		gauge(b, "entd_lmdb_map_size_bytes", "gauge", "Size of the LMDB memory map.",
		      g->lmdb_map_size_bytes);
		gauge(b, "entd_lmdb_used_bytes", "gauge", "LMDB pages in use times the page size.",
		      g->lmdb_used_bytes);
		static const char *const kinds[7] = {"features",      "plans",	   "addons",
						     "subscriptions", "overrides", "customers",
						     "aggregates"};
		header(b, "entd_store_objects", "gauge", "Objects in the store by kind.");
		for (int i = 0; i < 7; i++)
			if (!isnan(g->objects[i]))
				bputf(b, "entd_store_objects{kind=\"%s\"} %.17g\n", kinds[i],
				      g->objects[i]);
		gauge(b, "entd_store_boundaries", "gauge",
		      "Pending time boundaries (override expiry/activation, period ends).",
		      g->boundaries);
		gauge(b, "entd_store_walk_enabled", "gauge",
		      "1 while batched checks use the B-tree walk; 0: off by configuration or "
		      "refused by its checks of LMDB (the start log says why).",
		      g->walk_enabled);
		gauge(b, "entd_store_walk_fallbacks_total", "counter",
		      "Lookups the B-tree walk handed to mdb_get (a snapshot or page it does not "
		      "read, a value on overflow pages).",
		      g->walk_fallbacks);
		gauge(b, "entd_store_corrupt_reads_total", "counter",
		      "Reads that met a stored record failing its checksum or structure "
		      "(answered DATA_LOSS).",
		      g->corrupt_reads);
	}
	if (g->have_writer) {
		gauge(b, "entd_writer_queue_depth", "gauge", "Events waiting for the writer.",
		      g->writer_queue_depth);
		gauge(b, "entd_writer_commits_total", "counter", "Write transactions committed.",
		      g->writer_commits_total);
		gauge(b, "entd_writer_events_total", "counter", "Events applied by the writer.",
		      g->writer_events_total);
		gauge(b, "entd_writer_failed_events_total", "counter",
		      "Events the writer refused or failed to apply.", g->writer_failed_total);
		gauge(b, "entd_writer_last_commit_seconds", "gauge",
		      "Duration of the last write transaction, including the durable commit.",
		      g->writer_last_commit_seconds);
		gauge(b, "entd_writer_boundary_lag_seconds", "gauge",
		      "How late the last boundary timer ran after its due time.",
		      g->writer_boundary_lag_seconds);
		gauge(b, "entd_writer_next_boundary_timestamp_seconds", "gauge",
		      "When the next boundary is due, Unix seconds (0: none).",
		      g->writer_next_boundary_timestamp_seconds);
		gauge(b, "entd_checks_waiting_min_sequence", "gauge",
		      "Checks parked until this node applies their min_sequence.",
		      g->checks_waiting);
	}
	gauge(b, "entd_rpc_open_calls", "gauge", "Calls in flight.", g->open_calls);
	gauge(b, "entd_sync_lag_events", "gauge", "Fleet mode: events not yet applied.",
	      g->sync_lag);
	gauge(b, "entd_sync_last_heard_seconds", "gauge",
	      "Fleet mode: seconds since the stream was last heard from.",
	      g->sync_last_heard_seconds);
	gauge(b, "entd_sync_connected", "gauge", "Fleet mode: 1 while the NATS connection is up.",
	      g->sync_connected);
	gauge(b, "entd_sync_degraded", "gauge",
	      "Fleet mode: 1 while disconnected, stopped on a hole, re-bootstrapping or following a "
	      "re-created stream (answers are stale).",
	      g->sync_degraded);
	gauge(b, "entd_sync_caught_up", "gauge",
	      "Fleet mode: 1 once the first catch-up reached the head seen at start.",
	      g->sync_caught_up);
	gauge(b, "entd_sync_applied_sequence", "gauge",
	      "Fleet mode: stream sequence of the last applied message.", g->sync_applied_seq);
	gauge(b, "entd_sync_skipped_total", "counter",
	      "Fleet mode: undecodable stream messages skipped (same on every replica).",
	      g->sync_skipped_total);
	gauge(b, "entd_sync_published_total", "counter",
	      "Fleet mode: events this node published and the stream acknowledged.",
	      g->sync_published_total);
	gauge(b, "entd_sync_publish_failed_total", "counter",
	      "Fleet mode: writes answered UNAVAILABLE because the stream did not take them.",
	      g->sync_publish_failed_total);
	gauge(b, "entd_sync_reconnects_total", "counter", "Fleet mode: NATS reconnections.",
	      g->sync_reconnects_total);
	gauge(b, "entd_sync_rebootstraps_total", "counter",
	      "Fleet mode: re-bootstraps in place from a snapshot (behind the stream's retention).",
	      g->sync_rebootstraps_total);
	gauge(b, "entd_sync_rebootstrap_failed_total", "counter",
	      "Fleet mode: re-bootstrap tries that did not complete (no snapshot fits yet, a fetch "
	      "or swap failed); retried.",
	      g->sync_rebootstrap_failed_total);
	gauge(b, "entd_sync_snapshots_published_total", "counter",
	      "Fleet mode: snapshots this replica published (fleet.snapshot_interval_ms).",
	      g->sync_snapshots_published_total);
	gauge(b, "entd_sync_snapshot_failed_total", "counter",
	      "Fleet mode: snapshot publishes that failed (the reason is logged).",
	      g->sync_snapshot_failed_total);
	gauge(b, "entd_sync_snapshot_last_timestamp_seconds", "gauge",
	      "Fleet mode: when this replica last published a snapshot, Unix seconds (0: never).",
	      g->sync_snapshot_last_timestamp_seconds);
	gauge(b, "entd_serving", "gauge", "1 while the health status is SERVING.", g->serving);
}

int ent_metrics_render(struct ent_metrics *m, char **out, size_t *len)
{
	size_t n = m->n_methods;
	uint64_t *calls = calloc(n * ENT_METRICS_N_STATUS + 1, sizeof(uint64_t));
	uint64_t *bk = calloc(n * ENT_METRICS_N_BUCKETS + 1, sizeof(uint64_t));
	uint64_t *sum = calloc(n + 1, sizeof(uint64_t));
	uint64_t reasons[ENT_METRICS_N_REASONS] = {0}, logged = 0, ahead = 0;
	struct buf b = {.cap = 16384};
	b.p = malloc(b.cap);
	if (!calls || !bk || !sum || !b.p) {
		free(calls), free(bk), free(sum), free(b.p);
		return -ENT_ENOMEM;
	}

	pthread_mutex_lock(&m->lock);
	for (const struct ent_metrics_block *blk = m->blocks; blk; blk = blk->next) {
		for (size_t i = 0; i < n * ENT_METRICS_N_STATUS; i++)
			calls[i] += atomic_load_explicit(&blk->calls[i], memory_order_relaxed);
		for (size_t i = 0; i < n * ENT_METRICS_N_BUCKETS; i++)
			bk[i] += atomic_load_explicit(&blk->buckets[i], memory_order_relaxed);
		for (size_t i = 0; i < n; i++)
			sum[i] += atomic_load_explicit(&blk->sum_us[i], memory_order_relaxed);
		for (size_t i = 0; i < ENT_METRICS_N_REASONS; i++)
			reasons[i] += atomic_load_explicit(&blk->reasons[i], memory_order_relaxed);
		logged += atomic_load_explicit(&blk->decisions_logged, memory_order_relaxed);
		ahead += atomic_load_explicit(&blk->checks_ahead, memory_order_relaxed);
	}
	pthread_mutex_unlock(&m->lock);

	header(&b, "entd_build_info", "gauge", "Version of the running entd.");
#ifdef ENT_VERSION
	bputf(&b, "entd_build_info{version=\"%s\"} 1\n", ENT_VERSION);
#else
	bputf(&b, "entd_build_info{version=\"unknown\"} 1\n");
#endif

	header(&b, "entd_rpc_calls_total", "counter",
	       "Finished gRPC calls by method and status code.");
	for (size_t i = 0; i < n; i++) {
		for (size_t s = 0; s < ENT_METRICS_N_STATUS; s++) {
			uint64_t v = calls[i * ENT_METRICS_N_STATUS + s];
			if (!v && s)
				continue;
			bputf(&b, "entd_rpc_calls_total{method=\"");
			bput_label(&b, m->method_names[i]);
			bputf(&b, "\",code=\"%s\"} %llu\n", status_names[s], (unsigned long long)v);
		}
	}

	header(&b, "entd_rpc_duration_seconds", "histogram",
	       "Call latency from arrival to the final batch, by method.");
	for (size_t i = 0; i < n; i++) {
		const uint64_t *row = &bk[i * ENT_METRICS_N_BUCKETS];
		uint64_t count = 0;
		for (size_t k = 0; k < ENT_METRICS_N_BUCKETS; k++)
			count += row[k];
		if (!count)
			continue;
		uint64_t cum = 0;
		for (size_t k = 0; k < ENT_METRICS_N_BUCKETS; k++) {
			cum += row[k];
			bputf(&b, "entd_rpc_duration_seconds_bucket{method=\"");
			bput_label(&b, m->method_names[i]);
			if (k < ENT_METRICS_N_FINITE)
				bputf(&b, "\",le=\"%.6f\"} %llu\n",
				      (double)(1ULL << (k + ENT_METRICS_BUCKET_MIN_LOG2)) / 1e6,
				      (unsigned long long)cum);
			else
				bputf(&b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		}
		bputf(&b, "entd_rpc_duration_seconds_sum{method=\"");
		bput_label(&b, m->method_names[i]);
		bputf(&b, "\"} %.6f\n", (double)sum[i] / 1e6);
		bputf(&b, "entd_rpc_duration_seconds_count{method=\"");
		bput_label(&b, m->method_names[i]);
		bputf(&b, "\"} %llu\n", (unsigned long long)count);
	}

	header(&b, "entd_check_decisions_total", "counter", "Check decisions by reason.");
	for (unsigned r = 0; r < ENT_METRICS_N_REASONS; r++) {
		/* Every known reason is always present; unknown ones only when counted. */
		bool known = r >= ENT_R_ENTITLED && r <= ENT_R_EXPIRED;
		if (!known && !reasons[r])
			continue;
		if (known || r == 0)
			bputf(&b, "entd_check_decisions_total{reason=\"%s\"} %llu\n",
			      ent_model_reason_name((uint8_t)r), (unsigned long long)reasons[r]);
		else
			bputf(&b, "entd_check_decisions_total{reason=\"%u\"} %llu\n", r,
			      (unsigned long long)reasons[r]);
	}
	header(&b, "entd_decision_log_lines_total", "counter",
	       "Decisions written to the sampled decision log.");
	bputf(&b, "entd_decision_log_lines_total %llu\n", (unsigned long long)logged);
	header(&b, "entd_checks_answered_ahead_total", "counter",
	       "Unary checks and stream messages decided together in one batched lookup with "
	       "others that arrived at the same time.");
	bputf(&b, "entd_checks_answered_ahead_total %llu\n", (unsigned long long)ahead);

	struct ent_metrics_gauges g;
	memset(&g, 0, sizeof(g));
	/* Every double member is NaN ("not supplied") until the callback fills it. */
	g.snapshot_seq = g.snapshot_age_seconds = g.lmdb_map_size_bytes = g.lmdb_used_bytes = NAN;
	for (int i = 0; i < 7; i++)
		g.objects[i] = NAN;
	g.corrupt_reads = NAN;
	g.boundaries = g.walk_enabled = g.walk_fallbacks = g.writer_queue_depth =
		g.writer_commits_total = g.writer_events_total = g.writer_failed_total =
			g.writer_last_commit_seconds = g.writer_boundary_lag_seconds =
				g.writer_next_boundary_timestamp_seconds = g.checks_waiting =
					g.open_calls = g.sync_lag = g.serving = NAN;
	g.sync_last_heard_seconds = g.sync_connected = g.sync_degraded = g.sync_caught_up =
		g.sync_applied_seq = g.sync_skipped_total = g.sync_published_total =
			g.sync_publish_failed_total = g.sync_reconnects_total =
				g.sync_rebootstraps_total = g.sync_rebootstrap_failed_total = NAN;
	g.sync_snapshots_published_total = g.sync_snapshot_failed_total =
		g.sync_snapshot_last_timestamp_seconds = NAN;
	if (m->gauge_cb)
		m->gauge_cb(m->gauge_ctx, &g);
	render_gauges(&b, &g);
	render_process(&b);

	free(calls);
	free(bk);
	free(sum);
	if (b.oom) {
		free(b.p);
		return -ENT_ENOMEM;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}
