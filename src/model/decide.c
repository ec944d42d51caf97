/*
 * The check decision: one aggregate segment plus the record's usage counter give the answer.
 * This is the hot path of every check: no allocation, no lock, no string work.
 */
#include <string.h>

#include "ent/model.h"

void ent_model_decide(const struct ent_usage_state *u, const struct ent_agg *seg, int64_t quantity,
		      int64_t t, struct ent_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->agg = seg;
	out->feature_type = u->feature_type;
	out->limit = seg->limit > 0 ? seg->limit : 0;
	out->unlimited = seg->unlimited;
	out->soft = seg->soft;
	/* The rpc layer already reads 0 as 1; be as forgiving here for direct callers. */
	int64_t q = quantity > 1 ? quantity : 1;

	int64_t used = 0;
	if (u->feature_type == ENT_FT_METERED) {
		int64_t ps, pe;
		/* The period of t is the one of t's segment: the shape can change at an edge
		 * (a monthly plan ending, a daily one starting), and an answer about t must not
		 * depend on which segment held the instant the record was written. */
		ent_model_period(seg->reset, seg->anchor, t, &ps, &pe);
		/*
		 * The counter belongs to the period starting at u->period_start. A later period
		 * starts from zero even before the writer's reset timer has run. An instant in an
		 * earlier period still reads the current counter: per-period history is not kept.
		 */
		used = ps > u->period_start ? 0 : (u->used > 0 ? u->used : 0);
		out->metered = true;
		out->reset = seg->reset >= ENT_RESET_DAILY && seg->reset <= ENT_RESET_NEVER
				     ? seg->reset
				     : ENT_RESET_NEVER;
		/* A NEVER period has no start (ENT_T_MIN): the API says 0, "not set". */
		out->period_start = ent_model_wire_time(ps);
		out->period_end = ent_model_wire_time(pe);
		out->used = used;
		out->remaining = out->unlimited || used >= out->limit ? 0 : out->limit - used;
		if (pe != 0)
			out->next_change_at = pe;
	}
	if (seg->to != ENT_T_MAX && (out->next_change_at == 0 || seg->to < out->next_change_at))
		out->next_change_at = seg->to;
	out->next_change_at = ent_model_wire_time(out->next_change_at);

	if (!seg->enabled) {
		out->allowed = false;
		/* A disabled segment always carries why; a malformed one reads as NOT_ENTITLED. */
		out->reason = seg->state != ENT_R_UNSPECIFIED && seg->state != ENT_R_ENTITLED
				      ? seg->state
				      : ENT_R_NOT_ENTITLED;
	} else if (u->feature_type != ENT_FT_METERED || out->unlimited) {
		out->allowed = true;
		out->reason = ENT_R_ENTITLED;
	} else if (used <= out->limit && q <= out->limit - used) {
		/* Written as a subtraction: used + q could overflow, limit - used cannot. */
		out->allowed = true;
		out->reason = ENT_R_ENTITLED;
	} else if (out->soft) {
		out->allowed = true;
		out->reason = ENT_R_ALLOWED_OVER_SOFT_LIMIT;
	} else {
		out->allowed = false;
		out->reason = ENT_R_LIMIT_EXCEEDED;
	}
}

void ent_model_decide_missing(uint8_t reason, uint8_t feature_type, struct ent_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->allowed = false;
	out->reason = reason;
	out->feature_type = feature_type;
}
