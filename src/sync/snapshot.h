/**
 * \file snapshot.h
 * Fleet snapshots: a compact LMDB copy (mdb_env_copy2 with MDB_CP_COMPACT) of a replica's
 * database, stored as one object in a NATS object-store bucket (src/sync/objstore.h), so a new
 * replica needs nothing but the NATS address to start (docs/fleet.md, "Bootstrap").
 *
 * The object (default name "snapshot") is the copy's data.mdb, byte for byte. Its meta carries
 * headers that say where in the stream the copy stands, read from the copy's own meta table
 * (so they describe exactly the bytes uploaded):
 *   Ent-Stream-Seq  meta "seq": the stream sequence of the last message applied in the copy
 *   Ent-Stream      meta "fleet_stream": the identity of the stream the copy follows
 *   Ent-Schema      meta "schema": the database schema of the copy
 * A fetcher catches up from Ent-Stream-Seq + 1.
 */
#ifndef ENT_SYNC_SNAPSHOT_H
#define ENT_SYNC_SNAPSHOT_H

#include <nats/nats.h>
#include <stdint.h>

#include "ent/store.h"
#include "ent/util.h"

#define ENT_SNAPSHOT_DEFAULT_BUCKET "entd_snapshots"
#define ENT_SNAPSHOT_DEFAULT_NAME   "snapshot"
#define ENT_SNAPSHOT_CHUNK	    (256 * 1024)

/** Options of publish/fetch; zero-initialised means every default. */
struct ent_snapshot_opts {
	const char *name;     /**< object name; NULL: ENT_SNAPSHOT_DEFAULT_NAME */
	const char *tmp_dir;  /**< publish: where the compact copy is written; NULL: $TMPDIR or
				 /tmp (it needs as much free space as the compacted database) */
	int replicas;	      /**< publish: replicas of the bucket's stream if it has to be
				 created; 0: 1 */
	uint32_t chunk_size;  /**< publish: 0: ENT_SNAPSHOT_CHUNK */
	int idle_ms;	      /**< fetch: wait for a chunk at most this long; 0: 30 s */
	bool allow_no_stream; /**< publish: accept a database with no meta "fleet_stream" (tests
				 and seeding only; the snapshot then says Ent-Stream "") */
	/** publish: seed a new fleet with this database: the copy (never the source) is
	    stamped with meta "fleet_stream" = seed_identity and "seq" = 0 before upload, so
	    replicas start from it and apply the stream from sequence 1. Only valid while the
	    stream is empty (ent_sync_snapshot_stream_identity says). NULL: no seeding. */
	const char *seed_identity;
};

/** What a snapshot object says about itself (its meta, not its bytes). */
struct ent_sync_snapshot_info {
	uint64_t seq;	  /**< Ent-Stream-Seq */
	char stream[256]; /**< Ent-Stream ("" when the copy followed no stream) */
	uint64_t size;	  /**< bytes of data.mdb */
	int64_t mtime_ms; /**< when the object was stored (server time) */
	char digest[128]; /**< "SHA-256=..." */
};

/**
 * The identity of \a stream as fleet mode records it in meta "fleet_stream"
 * ("<name>/<created ns>", src/sync/fleet.c), its first sequence still held and its last
 * sequence (0: nothing ever published); \a first_seq may be NULL.
 * \return 0, -ENT_ENOTFOUND (no such stream), -ENT_EUNAVAIL.
 */
int ent_sync_snapshot_stream_identity(jsCtx *js, const char *stream, char *buf, size_t cap,
				      uint64_t *first_seq, uint64_t *last_seq, struct ent_err *err);

/**
 * Publish a snapshot of \a s: compact copy to a temporary directory, read the copy's meta
 * "seq" and "fleet_stream", upload data.mdb as the newest snapshot object (creating the bucket
 * with one replica if it does not exist), purge the previous version, remove the copy.
 * \param seq_out the stream sequence the snapshot carries (may be NULL).
 * \return 0, -ENT_EPRECOND (the database follows no stream: not a fleet replica's), -ENT_EIO
 *         (copy), -ENT_EUNAVAIL (NATS), ... with \a err set.
 * \note any thread; takes one LMDB read transaction for the duration of the copy only.
 */
int ent_sync_snapshot_publish(jsCtx *js, const char *bucket, struct ent_store *s, uint64_t *seq_out,
			      struct ent_err *err);
/** ent_sync_snapshot_publish with options (\a o may be NULL). */
int ent_sync_snapshot_publish_opts(jsCtx *js, const char *bucket, struct ent_store *s,
				   const struct ent_snapshot_opts *o, uint64_t *seq_out,
				   struct ent_err *err);

/**
 * Fetch the newest snapshot into \a dir, which must be empty or missing: data.mdb is written
 * to a temporary name, its SHA-256 digest checked, fsynced, renamed to data.mdb (and the
 * directory fsynced), then opened once read-only to check it is an entd database whose meta
 * "seq" matches the object's Ent-Stream-Seq.
 * \param seq_out the stream sequence of the snapshot (catch up from *seq_out + 1).
 * \return 0, -ENT_ENOTFOUND (no bucket, or no snapshot in it: \a err says which),
 *         -ENT_ECORRUPT (digest mismatch or not a database: nothing is left in \a dir),
 *         -ENT_EEXIST (\a dir is not empty), -ENT_EUNAVAIL (NATS; retrying may help).
 */
int ent_sync_snapshot_fetch(jsCtx *js, const char *bucket, const char *dir, uint64_t *seq_out,
			    struct ent_err *err);
/** ent_sync_snapshot_fetch with options (\a o may be NULL); \a info_out may be NULL. */
int ent_sync_snapshot_fetch_opts(jsCtx *js, const char *bucket, const char *dir,
				 const struct ent_snapshot_opts *o,
				 struct ent_sync_snapshot_info *info_out, struct ent_err *err);

/**
 * Read only the meta of the newest snapshot (no download): enough to decide whether it is
 * new enough to re-bootstrap from. \return 0, -ENT_ENOTFOUND, -ENT_ECORRUPT, -ENT_EUNAVAIL.
 */
int ent_sync_snapshot_info(jsCtx *js, const char *bucket, const char *name,
			   struct ent_sync_snapshot_info *out, struct ent_err *err);

/**
 * Replace the database in \a dir (closed by the caller: no environment may be open on it)
 * with the newest snapshot: fetched into "<dir>/.bootstrap" first (inside \a dir, so on the
 * same file system even when \a dir is a mount point), so a failed download leaves the
 * database as it was; then data.mdb and lock.mdb of \a dir are replaced and the directory
 * fsynced. A crash in between leaves \a dir empty or whole, never mixed: an
 * empty directory bootstraps again at the next start.
 * \param min_seq refuse (-ENT_EPRECOND, \a dir untouched) a snapshot older than this: a
 *        replica behind the stream's retention needs one at or past the stream's first
 *        sequence - 1 (0: any).
 * \return as ent_sync_snapshot_fetch_opts, or -ENT_EPRECOND.
 */
int ent_sync_snapshot_restore(jsCtx *js, const char *bucket, const char *dir, uint64_t min_seq,
			      const struct ent_snapshot_opts *o,
			      struct ent_sync_snapshot_info *info_out, struct ent_err *err);

/** Answers whether this replica may publish now (e.g. caught up, not degraded). */
typedef bool (*ent_snapshot_ready_fn)(void *ctx);

struct ent_snapshotter;

/**
 * Start a thread that keeps the bucket's snapshot fresh: every \a interval_ms (with up to 20%
 * random jitter, so replicas sharing the job rarely collide) it reads the newest snapshot's
 * meta and publishes a new one only when that one is older than \a interval_ms and behind
 * this replica's applied sequence, and \a ready says yes. Several replicas may run it; one of
 * them does the work each period (docs/fleet.md, "Snapshots").
 * \param o copied (its strings must outlive the snapshotter).
 * \return 0 or -ENT_ENOMEM / -ENT_EINVAL. Free with ent_sync_snapshotter_stop.
 */
int ent_sync_snapshotter_start(jsCtx *js, const char *bucket, struct ent_store *s,
			       int64_t interval_ms, const struct ent_snapshot_opts *o,
			       ent_snapshot_ready_fn ready, void *ready_ctx,
			       struct ent_snapshotter **out);
/** Stop and join the thread (waits for a publish in progress), free \a sn. NULL is a no-op. */
void ent_sync_snapshotter_stop(struct ent_snapshotter *sn);

/** Counters of a snapshotter (any thread). */
struct ent_snapshotter_stats {
	uint64_t published;  /**< snapshots this replica published */
	uint64_t failed;     /**< publish attempts that failed (logged with the reason) */
	uint64_t last_seq;   /**< sequence of the last snapshot this replica published */
	int64_t last_ms;     /**< when (wall clock ms), 0: never */
	double last_seconds; /**< how long the last publish took */
};
void ent_sync_snapshotter_get_stats(struct ent_snapshotter *sn, struct ent_snapshotter_stats *out);

#endif
