/**
 * \file sync.h
 * Fleet mode: every entd is a replica of one NATS JetStream stream (docs/fleet.md).
 *
 * The writer's submit publishes each Event to the stream (stamped once with `at`, a message id
 * of this node) and parks the request; an ordered consumer hands the stream's messages, in
 * order, to the writer thread (ent_writer_feed), which applies them in group commit and stores
 * the stream sequence and identity in the same transaction; the apply result of a message this
 * node published answers the parked request. So every replica applies the same events in the
 * same order, and consume decisions are made in stream order.
 *
 * Start-up sequence of a main():
 *
 *     ent_sync_fleet_open(&opts, &f, &err);          // connect, create or verify the stream
 *     ent_sync_fleet_check_store(f, store, &err);     // the directory follows this stream, no hole
 *     ent_writer_start(&wo with .fleet = ent_sync_fleet_hooks(f), &w);
 *     ent_sync_fleet_start(f, w, store, &err);        // consume from the applied sequence + 1
 *     ... ent_fleet_caught_up(f) for readiness ...
 *     ent_sync_fleet_close(f);                        // before ent_writer_stop
 *
 * Threads: nats.c's own threads deliver messages and publish acknowledgements; they only hand
 * work to the writer (a mutex-guarded queue and uv_async_send). A poller thread refreshes the
 * stream head for the lag figures; a re-bootstrap thread (with db_path set) re-bootstraps a
 * replica behind the stream's retention in place (docs/fleet.md).
 */
#ifndef ENT_SYNC_H
#define ENT_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "ent/store.h"
#include "ent/util.h"
#include "ent/writer.h"

struct ent_fleet;

struct ent_fleet_opts {
	const char *urls;	    /**< fleet.nats: comma-separated nats:// URLs */
	const char *stream;	    /**< fleet.stream */
	const char *subject;	    /**< fleet.subject */
	unsigned replicas;	    /**< fleet.replicas: 1..5 */
	const char *creds_file;	    /**< fleet.creds_file or NULL */
	const char *tls_ca_file;    /**< fleet.tls_ca_file or NULL */
	const char *tls_cert_file;  /**< fleet.tls_cert_file or NULL */
	const char *tls_key_file;   /**< fleet.tls_key_file or NULL */
	int64_t connect_timeout_ms; /**< fleet.connect_timeout_ms: give up at start after this */
	int64_t max_age_ms;	    /**< fleet.max_age_ms: stream retention when created; 0: none */
	int64_t publish_timeout_ms; /**< fleet.publish_timeout_ms: PubAck wait */
	int64_t max_msgs; /**< fleet.max_msgs: stream retention (messages) when created; 0: none */
	/** fleet.snapshot_bucket: where a re-bootstrap in place fetches from; NULL: default */
	const char *snapshot_bucket;
	/** db.path: a running replica behind the stream's retention re-bootstraps in place,
	    fetching the snapshot into <db_path>/.rebootstrap; NULL: it stops on the hole until
	    restarted (tools, tests of the writer) */
	const char *db_path;
};

/** What GetStatus, the metrics and readiness show. */
struct ent_fleet_stats {
	bool connected;		     /**< the NATS connection is up */
	bool caught_up;		     /**< the first catch-up reached the head seen at start */
	bool hole;		     /**< the stream no longer holds the next sequence */
	bool stream_changed;	     /**< the stream was deleted and re-created */
	bool rebootstrapping;	     /**< fetching a snapshot or swapping it in (in place) */
	uint64_t rebootstraps;	     /**< re-bootstraps in place completed */
	uint64_t rebootstrap_failed; /**< tries that did not complete (no snapshot fits yet, a
					fetch or swap failed): retried every 2 s */
	uint64_t applied_seq;	     /**< last stream sequence applied here */
	uint64_t head_seq;	     /**< newest stream sequence known */
	uint64_t start_head;	     /**< the head seen at start */
	uint64_t lag;		     /**< head_seq - applied_seq (0 when ahead) */
	int64_t last_heard_ms;	     /**< ms since the stream was last heard from (-1: never) */
	uint64_t published;	     /**< events this node published and the stream acknowledged */
	uint64_t publish_failed;     /**< publishes answered UNAVAILABLE */
	uint64_t skipped;	     /**< undecodable messages skipped */
	uint64_t reconnects;
	uint64_t disconnects;
	char identity[160]; /**< "<stream>/<created ns>" */
};

/**
 * Connect (waiting up to opts->connect_timeout_ms), then find the stream; create it with
 * opts' settings if missing, or refuse one whose settings differ (replicas, subjects, storage,
 * retention) with an error naming the key.
 * \return 0, or -ENT_EUNAVAIL / -ENT_EINVAL / -ENT_EPRECOND with \a err filled.
 * \note the handle is freed by ent_sync_fleet_close.
 */
ENT_API int ent_sync_fleet_open(const struct ent_fleet_opts *opts, struct ent_fleet **out,
				struct ent_err *err);

/**
 * Check that \a store can follow the stream: an empty store, or one whose meta
 * "fleet_stream" is this stream's identity and whose next sequence the stream still holds.
 * \param behind_first set to the stream's first sequence when the stream no longer holds
 *        the store's next one (retention: the caller re-bootstraps from a snapshot), else
 *        left alone (may be NULL).
 * \return 0, or -ENT_EPRECOND with \a err explaining (behind retention, embedded-mode data,
 *         another stream, ahead of the stream).
 */
ENT_API int ent_sync_fleet_check_store(struct ent_fleet *f, struct ent_store *store,
				       uint64_t *behind_first, struct ent_err *err);

/** The writer hooks of this fleet (valid until ent_sync_fleet_close). */
ENT_API const struct ent_writer_fleet *ent_sync_fleet_hooks(struct ent_fleet *f);

/**
 * Start consuming the stream into \a w from the store's applied sequence + 1.
 * \return 0 or -ENT_E* with \a err.
 */
ENT_API int ent_sync_fleet_start(struct ent_fleet *f, struct ent_writer *w, struct ent_store *store,
				 struct ent_err *err);

/** Fill \a out (any thread). */
ENT_API void ent_sync_fleet_get_stats(struct ent_fleet *f, struct ent_fleet_stats *out);

/** "ok", "catching_up", "disconnected", "stopped_hole", "rebootstrapping" or
    "stream_changed" (static). */
ENT_API const char *ent_sync_fleet_state_name(const struct ent_fleet_stats *s);

/** The JetStream context (for the snapshot functions), valid until ent_sync_fleet_close. */
ENT_API void *ent_sync_fleet_js(struct ent_fleet *f);

/**
 * Stop consuming, answer every parked request UNAVAILABLE (through the writer), close the
 * connection, free \a f. Call before ent_writer_stop.
 */
ENT_API void ent_sync_fleet_close(struct ent_fleet *f);

#endif
