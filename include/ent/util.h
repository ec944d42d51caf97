/**
 * \file util.h
 * Shared small things: error codes, borrowed strings, time, logging, arenas.
 *
 * Error convention: functions return 0 or a negative ENT_E* code. Foreign codes (MDB_*, errno,
 * grpc_status_code) are translated once, at the module edge.
 */
#ifndef ENT_UTIL_H
#define ENT_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENT_API __attribute__((visibility("default")))

/** Error codes (negative when returned). */
enum {
	ENT_OK = 0,
	ENT_EINVAL = 1,	   /**< invalid argument: gRPC INVALID_ARGUMENT */
	ENT_ENOTFOUND = 2, /**< no such object: gRPC NOT_FOUND */
	ENT_EPRECOND = 3,  /**< refused by state (e.g. still referenced): FAILED_PRECONDITION */
	ENT_EFULL = 4,	   /**< database map or disk full: RESOURCE_EXHAUSTED */
	ENT_EIO = 5,	   /**< storage failure: INTERNAL */
	ENT_ENOMEM = 6,	   /**< allocation failed: RESOURCE_EXHAUSTED */
	ENT_EAUTH = 7,	   /**< missing or wrong credential: UNAUTHENTICATED */
	ENT_EUNAVAIL =
		8, /**< not ready, shutting down, or snapshot not yet new enough: UNAVAILABLE */
	ENT_EEXIST = 9,	   /**< already exists: ALREADY_EXISTS */
	ENT_ECORRUPT = 10, /**< a stored record does not decode: DATA_LOSS */
};

/** Human-readable name of an ENT_E* code (positive or negative). Static storage. */
ENT_API const char *ent_err_strerror(int code);

/**
 * An error with a message naming the offending field, e.g. code ENT_EINVAL and
 * "feature_code: must be 1..255 bytes". Filled by validators, mapped to a gRPC status by rpc.
 */
struct ent_err {
	int code; /**< 0 or a positive ENT_E* code */
	char msg[256];
};

/** Set \a err (if not NULL) and return -code. printf-style message. */
ENT_API int ent_err_set(struct ent_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** A borrowed byte string, not NUL-terminated. Lifetime is the owner's (see each API). */
struct ent_str {
	const char *p;
	uint32_t len;
};

#define ENT_STR_LIT(s) ((struct ent_str){(s), sizeof(s) - 1})
/** ent_str from a NUL-terminated string (NULL gives the empty string). */
ENT_API struct ent_str ent_str_c(const char *s);
ENT_API bool ent_str_eq(struct ent_str a, struct ent_str b);
ENT_API int ent_str_cmp(struct ent_str a, struct ent_str b);

/**
 * Times are int64 Unix epoch milliseconds (UTC), as in the proto. In windows, 0 means open:
 * an active_from of 0 is "since ever", an expires_at of 0 is "never".
 */
#define ENT_T_MIN INT64_MIN
#define ENT_T_MAX INT64_MAX
/** Wall clock now, in ms (CLOCK_REALTIME; vDSO, no syscall on Linux). */
ENT_API int64_t ent_time_now_ms(void);
/** Monotonic clock now, in ns (CLOCK_MONOTONIC; for durations, never for instants). */
ENT_API int64_t ent_time_mono_ns(void);
/** Days since 1970-01-01 of a proleptic Gregorian date (month 1..12, day 1..31). */
ENT_API int64_t ent_time_days_from_civil(int64_t y, unsigned m, unsigned d);
/** The proleptic Gregorian date of a day number (inverse of ent_time_days_from_civil). */
ENT_API void ent_time_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
/** Format \a ms as RFC 3339 UTC ("2024-12-20T16:04:11.000Z") into \a buf (>= 32 bytes). */
ENT_API char *ent_time_fmt(int64_t ms, char *buf, size_t len);
/** Parse RFC 3339 ("2024-12-20T16:04:11Z", fractional seconds and offsets allowed). */
ENT_API int ent_time_parse(const char *s, int64_t *ms);

/** Limits of identifiers (bytes). Keys are customer_id \0 feature_code and must fit LMDB's 511. */
#define ENT_MAX_CUSTOMER_ID 200
#define ENT_MAX_CODE	    255
#define ENT_MAX_IDEM_KEY    255
#define ENT_MAX_TEXT	    1024 /**< names, descriptions, reasons, string values */

/**
 * Validate an identifier: 1..max bytes, printable ASCII without spaces or NUL.
 * On failure fills \a err naming \a field and returns -ENT_EINVAL.
 */
ENT_API int ent_str_check_id(struct ent_str s, size_t max, const char *field, struct ent_err *err);

/* ---- logging -------------------------------------------------------------------------- */

enum ent_log_level {
	ENT_LOG_DEBUG,
	ENT_LOG_INFO,
	ENT_LOG_WARN,
	ENT_LOG_ERROR
};

/** Set the minimum level and the format (false: logfmt, true: JSON lines). Not thread-safe. */
ENT_API void ent_log_setup(enum ent_log_level level, bool json);
ENT_API bool ent_log_enabled(enum ent_log_level level);
/**
 * Log one structured line to stderr: msg plus key/value pairs given as a NULL-terminated list
 * of const char * (key, value, key, value, ..., NULL). Never pass secrets.
 * The compiler checks the terminating NULL (sentinel): a list without it would read past the
 * arguments.
 */
ENT_API void ent_log(enum ent_log_level level, const char *msg, ...) __attribute__((sentinel));

/* ---- checksum ------------------------------------------------------------------------- */

/**
 * CRC32C (Castagnoli) of \a n bytes at \a data, continuing from \a crc (0 to start): the
 * standard check value of "123456789" is 0xE3069283. Hardware-accelerated where the CPU has
 * SSE4.2; allocates nothing, thread-safe.
 */
ENT_API uint32_t ent_crc32c(uint32_t crc, const void *data, size_t n);

/* ---- arena ---------------------------------------------------------------------------- */

/**
 * A bump allocator reset per call instead of malloc/free per field. Blocks are kept across
 * resets, so in steady state it allocates nothing. Not thread-safe: one per thread.
 */
struct ent_arena {
	struct ent_arena_block *head; /**< current block */
	struct ent_arena_block *free; /**< blocks kept for reuse */
	size_t block_size;
};

ENT_API void ent_arena_init(struct ent_arena *a, size_t block_size);
ENT_API void ent_arena_deinit(struct ent_arena *a);
/** 16-byte aligned memory valid until the next reset; NULL on allocation failure. */
ENT_API void *ent_arena_alloc(struct ent_arena *a, size_t n);
ENT_API char *ent_arena_strndup(struct ent_arena *a, const char *s, size_t n);
/** Forget every allocation, keeping the blocks. */
ENT_API void ent_arena_reset(struct ent_arena *a);

#endif
