/**
 * \file json.h
 * The JSON document of the whole state (docs/data-format.md): features, plans, add-ons,
 * subscriptions, overrides and usage. Import turns it into ent.v1.Event messages applied in one
 * write transaction; export scans the tables back into the same shape, so that
 * export -> import into an empty database -> export gives byte-identical text.
 *
 * Also the deterministic synthetic data set `entctl generate` builds for benchmarks.
 *
 * Errors name the JSON path of the offending value, e.g.
 * "plans.startup.entitlements.seats.privileges.max: expected integer"; errors found by
 * ent_store_apply are its message prefixed with the path of the object the event came from.
 */
#ifndef ENT_JSON_H
#define ENT_JSON_H

#include "ent/store.h"
#include "ent/util.h"

struct Ent__V1__Event;
struct Ent__V1__Feature;
struct json_t;

/**
 * Convert a JSON document into events, in import order: features, plans, add-ons,
 * subscriptions, overrides, usage. Every event has at = 0 (the importer stamps the time of the
 * import); created_at/updated_at given in the document are copied into the objects.
 * Syntax and shape are checked here (types, unknown keys, times, reset periods, privilege value
 * types when the feature is declared in the same document); references and select options are
 * checked by ent_store_apply.
 * \param arena holds the events and everything they point to.
 * \param events out: array of \a *n event pointers, in \a arena.
 * \return 0, or -ENT_EINVAL with \a err naming the JSON path, or -ENT_ENOMEM.
 * \note the events stay valid until \a arena is reset; \a text is not referenced afterwards.
 */
ENT_API int ent_json_to_events(const char *text, size_t len, struct ent_arena *arena,
			       struct Ent__V1__Event ***events, size_t *n, struct ent_err *err);

/**
 * Like ent_json_to_events, and also gives for each event the JSON path of the object it came
 * from ("plans.startup", "subscriptions[3]"), to prefix ent_store_apply's errors with.
 * \param paths out: array of \a *n NUL-terminated strings in \a arena.
 */
ENT_API int ent_json_to_events_paths(const char *text, size_t len, struct ent_arena *arena,
				     struct Ent__V1__Event ***events, const char ***paths,
				     size_t *n, struct ent_err *err);

/** What an import did. */
struct ent_json_stats {
	uint32_t changes; /**< events applied (including the wipe of a replace) */
	uint64_t seq;	  /**< the store's sequence after the import */
};

/**
 * Apply a document inside the caller's write transaction \a w, without committing: a Wipe first
 * when \a replace, then every event of the document with at = \a now (0: the current time).
 * For the writer thread, which owns the transaction. On error the caller must abort \a w: some
 * events may already be applied.
 * \param arena scratch for the events and apply results; reset by the caller afterwards.
 * \return 0, or -ENT_E* with \a err naming the JSON path.
 */
ENT_API int ent_json_apply(struct ent_wtxn *w, const char *text, size_t len, bool replace,
			   int64_t now, struct ent_arena *arena, struct ent_err *err,
			   struct ent_json_stats *stats);

/**
 * Import a document into \a store all or nothing: one write transaction (begun and committed
 * here) holding an optional Wipe (\a replace) and every event of the document.
 * Must not run while another thread writes (offline, or on the writer thread).
 * \param stats (may be NULL) filled on success.
 * \return 0, or -ENT_E* with \a err naming the JSON path; nothing is written on error.
 */
ENT_API int ent_json_import(struct ent_store *store, const char *text, size_t len, bool replace,
			    struct ent_err *err, struct ent_json_stats *stats);

/**
 * Export the state seen by \a view as a JSON document (features, plans, add-ons,
 * subscriptions, overrides, usage counters, cleanup tombstones) that imports back identically.
 * \note the caller brackets the call with ent_store_view_begin/ent_store_view_end, so the document
 * is one snapshot (ent_store_view_seq gives its sequence). \a *out is malloc'ed, NUL-terminated,
 * and freed by the caller with free(). \return 0, or -ENT_ECORRUPT (a stored record does not
 * decode), -ENT_ENOMEM, -ENT_EIO.
 */
ENT_API int ent_json_export(struct ent_view *view, char **out, struct ent_err *err);

/**
 * \a f as the document's "features" section writes it (what export prints), for a client that
 * builds document objects (entctl admin declares the features a body grants with it).
 * \return a new jansson object (caller owns the reference), or NULL when out of memory.
 */
ENT_API struct json_t *ent_json_feature_doc(const struct Ent__V1__Feature *f);

/* ---- synthetic data (generate.c) ------------------------------------------------------- */

/** Shape of a synthetic data set; see docs/data-format.md for the codes it creates. */
struct ent_gen_opts {
	uint64_t customers; /**< cus_0 .. cus_{N-1} */
	uint32_t features;  /**< 0: 20 (at least 4: one of each kind) */
	uint32_t plans;	    /**< 0: 4 */
	uint64_t seed;	    /**< varies grant sizes and usage; same seed, same data */
	uint32_t batch;	    /**< events per write transaction; 0: 10000 */
	int64_t now;	    /**< the generation instant (event time, usage periods); 0: now */
	/** Progress callback after each committed batch (may be NULL). */
	void (*progress)(void *ctx, uint64_t customers_done);
	void *progress_ctx;
};

struct ent_gen_stats {
	uint64_t events; /**< events applied */
	uint64_t seq;	 /**< store sequence at the end */
};

/**
 * Build the synthetic data set into \a store, committing every opts->batch events. For speed
 * open the store with no_sync and fsync its data file once afterwards (entctl generate does).
 * \return 0, or -ENT_E* with \a err (ent_store_apply's message naming the object). On error the
 * batches committed so far stay.
 */
ENT_API int ent_json_generate(struct ent_store *store, const struct ent_gen_opts *opts,
			      struct ent_gen_stats *stats, struct ent_err *err);

/** Code of the \a k-th generated feature of \a type (enum ent_feature_type) into \a buf. */
ENT_API const char *ent_json_gen_feature_code(uint8_t type, uint32_t k, char *buf, size_t len);

/** How many features of each type a set of \a features features has. */
ENT_API void ent_json_gen_feature_counts(uint32_t features, uint32_t *metered, uint32_t *boolean,
					 uint32_t *statics);

#endif
