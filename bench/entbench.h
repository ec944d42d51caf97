/*
 * entbench internals shared by its three files: entbench.c (options, main), entbench_grpc.c
 * (the load: channels, completion-queue threads, the per-call state machines) and
 * entbench_report.c (the table and the JSON line).
 */
#ifndef ENTBENCH_H
#define ENTBENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "hist.h"
#include "keys.h"

enum bench_mode {
	MODE_UNARY,   /**< CheckEntitlement */
	MODE_BATCH,   /**< BatchCheckEntitlements of --batch-size checks */
	MODE_STREAM,  /**< StreamCheckEntitlements, --stream-window messages in flight per stream */
	MODE_CONSUME, /**< ConsumeEntitlement */
	MODE_REPORT,  /**< ReportUsage */
	MODE_MIXED,   /**< CheckEntitlement, with --write-ratio of Consume/Report */
	MODE_REPORT_BATCH, /**< BatchReportUsage of --batch-size records */
};

/** The operations entbench times separately. */
enum bench_op {
	OP_CHECK,
	OP_BATCH,
	OP_STREAM,
	OP_CONSUME,
	OP_REPORT,
	OP_REPORT_BATCH,
	OP__COUNT
};

#define BENCH_STATUS_CODES 17 /* gRPC status codes 0..16 */

struct bench_config {
	const char *target;
	enum bench_mode mode;
	unsigned connections;	/**< separate channels, each its own TCP connection */
	unsigned inflight;	/**< closed loop: calls (streams) in flight per connection */
	unsigned threads;	/**< client completion-queue threads */
	unsigned batch_size;	/**< checks per BatchCheckEntitlements call */
	unsigned stream_window; /**< messages in flight per stream */
	double write_ratio;	/**< mixed: fraction of writes */
	double rate;		/**< > 0: open loop at this many calls per second */
	unsigned max_inflight;	/**< open loop: calls in flight per thread before sends queue */
	double duration_s;
	double warmup_s;
	int64_t quantity; /**< units per check/consume/report (0: omitted, read as 1) */
	uint64_t seed;
	const struct bench_keys *keys;
	const struct bench_zipf *zipf; /**< NULL: uniform customers */
	const char *dist;	       /**< "uniform" or "zipf", for the report */
	double zipf_s;
	const char *label;
	bool strict; /**< answers naming an unknown customer/feature fail the run */
};

/** What one run measured, merged over the client threads. */
struct bench_result {
	struct bench_hist hist[OP__COUNT]; /**< per operation, requests started in the window */
	struct bench_hist all;		   /**< every timed operation together */
	struct bench_hist sched_lag;	   /**< open loop: actual send - scheduled send */
	uint64_t done[OP__COUNT];	   /**< completed OK inside the window (throughput) */
	uint64_t checks;		   /**< checks answered inside the window (batch: items) */
	uint64_t total_calls;		   /**< every finished call, warm-up included */
	uint64_t total_checks;		   /**< checks of the OK calls among them */
	uint64_t errors[BENCH_STATUS_CODES]; /**< non-OK statuses by code, warm-up included */
	uint64_t failed_batches;	     /**< batches that completed with success == 0 */
	uint64_t bad_answers;		     /**< OK status but an undecodable or missing message */
	uint64_t answers;		     /**< answers scanned (window and warm-up) */
	uint64_t allowed;		     /**< of them, allowed */
	uint64_t reasons[16];		     /**< of them, by Reason */
	uint64_t backlog_max;		     /**< open loop: most sends waiting for a free slot */
	uint64_t unsent; /**< open loop: scheduled sends dropped at the drain deadline (errors) */
	double window_s; /**< the measurement window actually used */
};

/** Run the load described by \a cfg. \return 0, or -1 if it could not start (message printed). */
int bench_run(const struct bench_config *cfg, struct bench_result *res);

/** Total errors of any kind in \a res (statuses, failed batches, bad answers). */
uint64_t bench_result_errors(const struct bench_config *cfg, const struct bench_result *res);
/** Print the readable table to stdout. */
void bench_report_table(const struct bench_config *cfg, const struct bench_result *res);
/** Append one JSON object (one line) to \a path ("-": stdout). \return 0 or -1. */
int bench_report_json(const struct bench_config *cfg, const struct bench_result *res,
		      const char *path);

const char *bench_mode_name(enum bench_mode m);
const char *bench_op_name(enum bench_op op);
const char *bench_status_name(unsigned code);
const char *bench_reason_name(unsigned reason);
/** CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

#endif
