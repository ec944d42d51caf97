/**
 * \file model.h
 * Aggregation and the check decision: pure C over plain structs, no gRPC, LMDB or libuv.
 *
 * The writer gathers every source of one (customer, feature) -- plan and add-on grants through
 * the customer's subscriptions, subscription-level grants, and the customer override -- into
 * struct ent_sources, and ent_model_segments() turns them into a short list of time segments,
 * each the aggregate valid over [from, to). The store encodes that list; a check decodes the one
 * segment containing its instant and calls ent_model_decide(). So an answer is exact at any
 * instant whatever the timers have done: a window boundary is a segment boundary.
 *
 * Enum values are the proto's numbers, so codecs copy them without tables.
 * Every rule here is a row of docs/semantics.md and a test in tests/unit/test_model.c.
 */
#ifndef ENT_MODEL_H
#define ENT_MODEL_H

#include "ent/util.h"

enum ent_feature_type {
	ENT_FT_UNSPECIFIED = 0,
	ENT_FT_BOOLEAN = 1,
	ENT_FT_METERED = 2,
	ENT_FT_STATIC = 3,
};

enum ent_priv_type {
	ENT_PT_UNSPECIFIED = 0,
	ENT_PT_INTEGER = 1,
	ENT_PT_BOOLEAN = 2,
	ENT_PT_STRING = 3,
	ENT_PT_SELECT = 4,
};

enum ent_reset {
	ENT_RESET_UNSPECIFIED = 0, /**< read as NEVER */
	ENT_RESET_DAILY = 1,
	ENT_RESET_WEEKLY = 2,
	ENT_RESET_MONTHLY = 3,
	ENT_RESET_QUARTERLY = 4,
	ENT_RESET_HALF_YEARLY = 5,
	ENT_RESET_ANNUAL = 6,
	ENT_RESET_NEVER = 7,
};

enum ent_reason {
	ENT_R_UNSPECIFIED = 0,
	ENT_R_ENTITLED = 1,
	ENT_R_NOT_ENTITLED = 2,
	ENT_R_UNKNOWN_CUSTOMER = 3,
	ENT_R_UNKNOWN_FEATURE = 4,
	ENT_R_LIMIT_EXCEEDED = 5,
	ENT_R_ALLOWED_OVER_SOFT_LIMIT = 6,
	ENT_R_DISABLED_BY_OVERRIDE = 7,
	ENT_R_NOT_YET_ACTIVE = 8,
	ENT_R_EXPIRED = 9,
};

/** Source precedence is the numeric order: OVERRIDE > SUBSCRIPTION > ADDON > PLAN. */
enum ent_source_type {
	ENT_SRC_UNSPECIFIED = 0,
	ENT_SRC_PLAN = 1,
	ENT_SRC_ADDON = 2,
	ENT_SRC_SUBSCRIPTION = 3,
	ENT_SRC_OVERRIDE = 4,
};

/** Fixed capacities; admin input beyond them is refused with INVALID_ARGUMENT. */
#define ENT_MAX_PRIVS	32 /**< privileges per feature */
#define ENT_MAX_STATIC	32 /**< static values per aggregate */
#define ENT_MAX_SOURCES 64 /**< sources of one (customer, feature) */
/** Time segments of one aggregate: every interval the sources' edges can make (two edges per
    source and the tombstone give at most 2 x 64 + 1 edges, so 130 intervals). No tail is ever
    folded, so a record is exact at every instant from its recompute on. */
#define ENT_MAX_SEGMENTS (2 * ENT_MAX_SOURCES + 2)
#define ENT_MAX_SELECT	 64 /**< select options per privilege */

/** A typed privilege value. Strings are borrowed from the owner of the containing struct. */
struct ent_priv {
	struct ent_str code;
	uint8_t type;	  /**< enum ent_priv_type */
	bool b;		  /**< BOOLEAN */
	int64_t i;	  /**< INTEGER */
	struct ent_str s; /**< STRING, SELECT */
};

/** Which parts of an aggregate an override replaces (bit set in ent_source.sets). */
enum ent_override_sets {
	ENT_SETS_ENABLED = 1 << 0, /**< enabled (Hyperline bool value, or number != 0 on boolean) */
	ENT_SETS_LIMIT = 1 << 1,   /**< usage_limit (number value or Zenskar quantity on metered) */
	ENT_SETS_UNLIMITED = 1 << 2,
	ENT_SETS_STATIC = 1 << 3, /**< static values */
	ENT_SETS_PRIVS = 1 << 4,  /**< the privileges it lists (by code) */
};

/**
 * One grant of one feature from one source, with its window [active_from, expires_at).
 * 0 means open at that end. Strings and arrays are borrowed (caller-owned).
 */
struct ent_source {
	uint8_t type;	     /**< enum ent_source_type */
	struct ent_str id;   /**< plan/add-on code, subscription id, or feature code */
	struct ent_str name; /**< plan/add-on name (may be empty) */
	struct ent_str
		subscription_id; /**< the subscription it came through (empty for overrides) */
	int64_t quantity;	 /**< multiplies usage_limit; >= 1 */
	int64_t active_from;	 /**< 0: open */
	int64_t expires_at;	 /**< 0: never */
	bool enabled;
	int64_t usage_limit; /**< per reset period, before the quantity multiplier */
	bool unlimited;
	bool soft;		/**< is_soft_limit */
	uint8_t reset;		/**< enum ent_reset; UNSPECIFIED: this source names no period */
	int64_t billing_anchor; /**< where its periods start: the subscription's anchor, else its
				     active_from, else its creation instant */
	uint32_t n_static;
	const struct ent_str *statics;
	uint32_t n_privs;
	const struct ent_priv *privs;
	struct ent_str reason; /**< override reason */
	uint32_t sets;	       /**< overrides only: enum ent_override_sets bits */
};

/** The declaration of a feature that aggregation needs. */
struct ent_feature_def {
	struct ent_str code;
	uint8_t type; /**< enum ent_feature_type */
	uint32_t n_privs;
	struct {
		struct ent_str code;
		uint8_t type; /**< enum ent_priv_type */
	} privs[ENT_MAX_PRIVS];
};

struct ent_sources {
	struct ent_feature_def feature;
	uint32_t n;
	struct ent_source src[ENT_MAX_SOURCES];
	/** The latest end of a granting source that cleanup already removed (the store's
	    `ended` table), 0: none. Explains a "no" as EXPIRED from that instant on (rule 6b),
	    so the answer does not change when the writer's timer deletes what ended. */
	int64_t ended_at;
	/** The store keeps the record of this pair even with no source: cleanup removed sources
	    that granted nothing (ignored by the model). */
	bool keep;
};

/**
 * The aggregate over one time segment [from, to). ENT_T_MIN/ENT_T_MAX for open ends.
 * Strings are borrowed: from the sources when built, from the mapped record when decoded.
 */
struct ent_agg {
	int64_t from, to;
	uint8_t state; /**< ENTITLED if enabled, else NOT_ENTITLED, DISABLED_BY_OVERRIDE,
			    NOT_YET_ACTIVE or EXPIRED: what a check of 0 units would answer */
	bool enabled;
	bool unlimited;
	bool soft;
	int64_t limit; /**< sum of usage_limit x quantity over enabled active sources */
	uint32_t n_static;
	struct ent_str statics[ENT_MAX_STATIC];
	uint32_t n_privs;
	struct ent_priv privs[ENT_MAX_PRIVS];
	bool override_applied;
	struct ent_str override_reason;
	int64_t override_expires_at; /**< 0: never */
	/** The usage shape over this segment (rule 9): the reset period and billing anchor of
	    the highest-precedence contributing source that specifies a period. NEVER with
	    anchor 0 when none does or the feature is not metered. */
	uint8_t reset;
	int64_t anchor;
};

/**
 * Record-level facts shared by all segments: the feature type and the usage counter.
 * used counts units in the period starting at period_start. Each segment carries its own usage
 * shape (struct ent_agg.reset/anchor); reset and anchor here are the shape of the segment that
 * held the instant of the last recompute (they place the period-end boundary entry).
 */
struct ent_usage_state {
	uint8_t feature_type;
	uint8_t reset;	      /**< enum ent_reset at the last recompute */
	int64_t anchor;	      /**< billing anchor at the last recompute */
	int64_t period_start; /**< the period \a used belongs to */
	int64_t used;
};

/** The answer of one check. Strings borrowed from the ent_agg it was decided from. */
struct ent_decision {
	bool allowed;
	uint8_t reason;	      /**< enum ent_reason */
	uint8_t feature_type; /**< enum ent_feature_type */
	bool metered;	      /**< usage below is meaningful */
	int64_t limit;
	bool unlimited;
	bool soft;
	int64_t used;	   /**< in the period containing the instant */
	int64_t remaining; /**< max(limit - used, 0); 0 when unlimited */
	uint8_t reset;
	/** Wire-ready instants (ent_model_wire_time): period_start 0 for NEVER (no start),
	    period_end 0 for NEVER. */
	int64_t period_start, period_end;
	int64_t next_change_at;	   /**< min(segment end, period end); 0 if none */
	const struct ent_agg *agg; /**< values, privileges, override details */
};

/**
 * The largest instant the API takes or gives: 2^53 - 1 ms. JavaScript numbers and JSON
 * decoders that read numbers as doubles hold every integer up to it exactly.
 */
#define ENT_WIRE_TIME_MAX INT64_C(9007199254740991)

/** \a t as the API shows an instant: 0 ("not set") when it lies outside +-ENT_WIRE_TIME_MAX,
    which is how the open ends ENT_T_MIN/ENT_T_MAX and a NEVER period's start come out. */
static inline int64_t ent_model_wire_time(int64_t t)
{
	return t < -ENT_WIRE_TIME_MAX || t > ENT_WIRE_TIME_MAX ? 0 : t;
}

/**
 * Compute the aggregate of \a s at instant \a t into \a out (from/to are set to the segment of
 * constant value containing t, bounded by the sources' window edges and s->ended_at).
 * \return 0, or -ENT_EINVAL if capacities are exceeded (never on validated input).
 */
ENT_API int ent_model_aggregate(const struct ent_sources *s, int64_t t, struct ent_agg *out);

/**
 * Split time into segments of constant aggregate: one per interval between consecutive window
 * edges of the sources, merged where neighbours are equal, covering [ENT_T_MIN, ENT_T_MAX).
 * Segments entirely before \a now are dropped (the first kept one starts at ENT_T_MIN) so the
 * list stays short; at most ENT_MAX_SEGMENTS (the tail beyond is merged into the last).
 * \param out array of ENT_MAX_SEGMENTS.
 * \return number of segments (>= 1), or negative ENT_E*.
 */
ENT_API int ent_model_segments(const struct ent_sources *s, int64_t now, struct ent_agg *out);

/**
 * The usage shape at \a now (rule 9): the reset period and anchor of the highest-precedence
 * contributing source that specifies a period (ties: first), or NEVER/0. The same as the
 * reset/anchor of ent_model_aggregate(s, now).
 */
ENT_API void ent_model_usage_shape(const struct ent_sources *s, int64_t now, uint8_t *reset,
				   int64_t *anchor);

/**
 * Bounds of the reset period containing \a t for a period anchored at \a anchor.
 * Calendar periods (MONTHLY, QUARTERLY, HALF_YEARLY, ANNUAL) step by months from the anchor's
 * day-of-month, clamped to the month's last day; DAILY and WEEKLY by fixed lengths.
 * NEVER (and UNSPECIFIED): one period for ever, whatever the anchor: *start = ENT_T_MIN,
 * *end = 0.
 */
ENT_API void ent_model_period(uint8_t reset, int64_t anchor, int64_t t, int64_t *start,
			      int64_t *end);

/**
 * Decide a check of \a quantity (>= 1) units at instant \a t from the segment containing t.
 * The period of t comes from the segment's usage shape. The counter (u->period_start,
 * u->used) reads as 0 when t's period starts after u->period_start (a new period starts from
 * zero), and as u->used otherwise.
 */
ENT_API void ent_model_decide(const struct ent_usage_state *u, const struct ent_agg *seg,
			      int64_t quantity, int64_t t, struct ent_decision *out);

/** The answer for a (customer, feature) with no aggregate record. */
ENT_API void ent_model_decide_missing(uint8_t reason, uint8_t feature_type,
				      struct ent_decision *out);

/** Canonical upper-case names ("MONTHLY", "metered", "ENTITLED", ...) and their parsers. */
ENT_API const char *ent_model_reset_name(uint8_t r);
ENT_API int ent_model_reset_parse(const char *s, uint8_t *out);
ENT_API const char *ent_model_feature_type_name(uint8_t t);
ENT_API int ent_model_feature_type_parse(const char *s, uint8_t *out);
ENT_API const char *ent_model_priv_type_name(uint8_t t);
ENT_API int ent_model_priv_type_parse(const char *s, uint8_t *out);
ENT_API const char *ent_model_reason_name(uint8_t r);
ENT_API const char *ent_model_source_type_name(uint8_t t);

#endif
