/**
 * \file objstore.h
 * A minimal client of NATS's object-store layout on JetStream, written against the plain
 * JetStream calls of nats.c 3.4.1 (which has no object-store API). The layout is the one every
 * NATS client and the `nats` CLI read (docs/fleet.md, "Snapshot objects"):
 *
 *   stream   OBJ_<bucket>, subjects "$O.<bucket>.C.>" and "$O.<bucket>.M.>", rollup allowed,
 *            discard new, direct get allowed
 *   chunks   "$O.<bucket>.C.<nuid>": the object's bytes in order, one message per chunk
 *   meta     "$O.<bucket>.M.<base64url(name)>": JSON ObjectInfo (name, headers, options,
 *            bucket, nuid, size, mtime, chunks, digest "SHA-256=<base64url>", deleted),
 *            published with "Nats-Rollup: sub" so only the newest meta of a name is kept
 *
 * A put uploads the chunks under a fresh nuid, then the meta (which replaces the old one
 * atomically), then purges the chunks of every older version. A get reads the meta with
 * js_GetLastMsg and the chunks with an ordered consumer, checking the SHA-256 digest.
 *
 * Threads: each call uses the caller's jsCtx synchronously (no async publish, so a jsCtx
 * shared with other publishers sees no foreign acknowledgements).
 */
#ifndef ENT_SYNC_OBJSTORE_H
#define ENT_SYNC_OBJSTORE_H

#include <nats/nats.h>
#include <stdint.h>

#include "ent/util.h"

#define ENT_OBJ_MAX_NAME      255
#define ENT_OBJ_MAX_BUCKET    64
#define ENT_OBJ_MAX_HEADERS   8
#define ENT_OBJ_DEFAULT_CHUNK (128 * 1024)	   /**< the layout's default */
#define ENT_OBJ_MAX_CHUNK     (1024 * 1024 - 4096) /**< stays under nats-server's max_payload */
#define ENT_OBJ_DIGEST_PREFIX "SHA-256="
#define ENT_OBJ_NUID_LEN      22

/** One object header (ObjectMeta.headers: a name with one value here). */
struct ent_obj_header {
	char key[64];
	char value[256];
};

/** ObjectInfo: what the meta message of an object says. Fixed-size, no allocation. */
struct ent_obj_info {
	char name[ENT_OBJ_MAX_NAME + 1];
	char description[256];
	char bucket[ENT_OBJ_MAX_BUCKET + 1];
	char nuid[64];
	uint64_t size;
	uint32_t chunks;
	uint32_t chunk_size; /**< options.max_chunk_size (0 when absent) */
	char digest[128];    /**< "SHA-256=<base64url with padding>", empty for deleted objects */
	bool deleted;
	int64_t mtime_ms; /**< from the meta message's stream timestamp on read; "now" on write */
	int n_headers;
	struct ent_obj_header headers[ENT_OBJ_MAX_HEADERS];
};

/* ---- pure helpers (no NATS; unit-tested in tests/unit/test_objstore.c) -------------------- */

/**
 * Base64 with the URL-safe alphabet and '=' padding (Go's base64.URLEncoding, which the
 * layout uses for names and digests).
 * \return the length written (NUL-terminated), or -ENT_EINVAL if \a cap is too small.
 */
int ent_sync_objstore_b64url_encode(const void *in, size_t len, char *out, size_t cap);
/**
 * Decode base64url, padded or not. \return bytes written, or -ENT_EINVAL on a bad character,
 * bad length or too small \a cap.
 */
int ent_sync_objstore_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/** Is \a bucket a valid bucket name (1..64 of [A-Za-z0-9_-], as the layout requires)? */
bool ent_sync_objstore_bucket_valid(const char *bucket);

/**
 * The subjects and the stream name of the layout into \a buf.
 * \return 0, or -ENT_EINVAL when they do not fit or the name is empty.
 */
int ent_sync_objstore_stream_name(const char *bucket, char *buf, size_t cap);
int ent_sync_objstore_meta_subject(const char *bucket, const char *name, char *buf, size_t cap);
int ent_sync_objstore_chunk_subject(const char *bucket, const char *nuid, char *buf, size_t cap);

/** "SHA-256=" + base64url of a 32-byte digest, into \a out (>= 54 bytes). */
void ent_sync_objstore_digest_fmt(const uint8_t sha[32], char *out, size_t cap);
/** Parse a "SHA-256=..." digest. \return 0 or -ENT_EINVAL (unknown algorithm, bad length). */
int ent_sync_objstore_digest_parse(const char *s, uint8_t sha[32]);

/**
 * Encode \a info as the ObjectInfo JSON of the layout (mtime as RFC 3339 UTC).
 * \return a malloc'ed NUL-terminated string (caller frees), or NULL when out of memory.
 */
char *ent_sync_objstore_meta_encode(const struct ent_obj_info *info);
/**
 * Decode ObjectInfo JSON written by us or by any NATS client. Unknown fields are ignored;
 * a header with several values keeps the first.
 * \return 0, or -ENT_ECORRUPT with \a err naming the field.
 */
int ent_sync_objstore_meta_decode(const char *json, size_t len, struct ent_obj_info *info,
				  struct ent_err *err);

/** The value of header \a key (case-insensitive, as NATS headers are), or NULL. */
const char *ent_sync_objstore_header(const struct ent_obj_info *info, const char *key);
/** Add or replace a header. \return 0 or -ENT_EINVAL when full or too long. */
int ent_sync_objstore_header_set(struct ent_obj_info *info, const char *key, const char *value);

/** Receives each chunk of a file, in order. Non-zero stops the chunking with that value. */
typedef int (*ent_objstore_chunk_cb)(void *ctx, const uint8_t *data, size_t len);

/**
 * Read \a fd from its start in \a chunk_size pieces (the last one shorter, none for an empty
 * file), hand each to \a cb and compute the SHA-256 of the whole.
 * \return 0, the callback's non-zero value, or -ENT_EIO with \a err set.
 */
int ent_sync_objstore_chunk_fd(int fd, uint32_t chunk_size, ent_objstore_chunk_cb cb, void *ctx,
			       uint8_t sha[32], uint64_t *size, uint32_t *chunks,
			       struct ent_err *err);

/** A fresh 22-character base62 identifier (the layout's NUID shape), from OpenSSL's RNG. */
int ent_sync_objstore_nuid(char out[ENT_OBJ_NUID_LEN + 1]);

/* ---- JetStream calls ----------------------------------------------------------------------- */

/**
 * Create the bucket's stream if it does not exist (\a replicas copies, unlimited size). An
 * existing stream is accepted when its subjects are the layout's; anything else is refused
 * with -ENT_EPRECOND naming the difference.
 */
int ent_sync_objstore_ensure(jsCtx *js, const char *bucket, int replicas, struct ent_err *err);

/**
 * Upload the whole of \a fd as object info->name (info->headers/description are kept; the
 * other fields are filled in) and purge every older version's chunks.
 * \param chunk_size 0: ENT_OBJ_DEFAULT_CHUNK; at most ENT_OBJ_MAX_CHUNK.
 * \return 0, -ENT_ENOTFOUND (no bucket), -ENT_EUNAVAIL (NATS/JetStream unreachable or timed
 *         out), -ENT_EIO (reading the file) with \a err set. A failed upload leaves the
 *         previous version in place and purges its own partial chunks when it can.
 */
int ent_sync_objstore_put_fd(jsCtx *js, const char *bucket, int fd, uint32_t chunk_size,
			     struct ent_obj_info *info, struct ent_err *err);

/**
 * Read the newest meta of \a name. \return 0, -ENT_ENOTFOUND (no bucket, no object, or the
 * object is deleted; \a err says which), -ENT_ECORRUPT (meta does not decode), -ENT_EUNAVAIL.
 */
int ent_sync_objstore_info(jsCtx *js, const char *bucket, const char *name,
			   struct ent_obj_info *info, struct ent_err *err);

/**
 * Download object \a name into \a fd (written from its current offset; not synced), checking
 * every chunk's subject, the size and the SHA-256 digest against the meta.
 * \param idle_ms how long to wait for the next chunk before giving up (0: 30 s).
 * \return 0, -ENT_ENOTFOUND, -ENT_ECORRUPT (digest or size mismatch: the bytes must not be
 *         used), -ENT_EUNAVAIL (a chunk did not arrive, e.g. a newer version purged this one
 *         meanwhile: the caller may retry), -ENT_EIO (writing \a fd).
 */
int ent_sync_objstore_get_fd(jsCtx *js, const char *bucket, const char *name, int fd, int idle_ms,
			     struct ent_obj_info *info, struct ent_err *err);

/**
 * Delete object \a name the way the layout does: a meta with deleted=true (rollup), then a
 * purge of its chunks. \return 0 or -ENT_ENOTFOUND / -ENT_EUNAVAIL.
 */
int ent_sync_objstore_delete(jsCtx *js, const char *bucket, const char *name, struct ent_err *err);

/** Map a nats.c status (and JetStream error code) to an ENT_E* code and a message. */
int ent_sync_objstore_nats_err(natsStatus s, jsErrCode jerr, struct ent_err *err, const char *what);

#endif
