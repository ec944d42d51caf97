/* metrics internals shared by the registry (metrics.c) and the HTTP endpoint (http.c). */
#ifndef ENT_METRICS_IMPL_H
#define ENT_METRICS_IMPL_H

#include <pthread.h>

#include "ent/metrics.h"

struct MHD_Daemon;

/*
 * Invariants: `blocks` only grows (under `lock`) until ent_metrics_free, and a block is fully
 * initialised before it is linked, so the scraper may walk the list under the lock while the
 * owning threads keep counting without it. The gauge callback and readiness callback are set
 * before the HTTP thread starts and never change while it runs.
 */
struct ent_metrics {
	pthread_mutex_t lock;
	struct ent_metrics_block *blocks;
	size_t n_methods;
	char **method_names;
	ent_metrics_gauge_cb gauge_cb;
	void *gauge_ctx;
	ent_metrics_ready_cb ready_cb;
	void *ready_ctx;
	struct MHD_Daemon *httpd;
	unsigned port;
	unsigned max_connections, timeout_s; /**< ent_metrics_set_limits; 0: defaults */
	uint64_t seed;
	char last_http_error[160]; /**< MHD's last log line, for start-up failures */
};

#endif
