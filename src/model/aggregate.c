/*
 * Aggregation: every source of one (customer, feature) folded into the value valid at one
 * instant, and the short list of time segments of constant value that the store keeps.
 * Each rule is a row of docs/semantics.md with the test that pins it down.
 *
 * Nothing here allocates: all results go into caller-provided, fixed-capacity structs, and
 * every string in them is borrowed from the sources.
 */
#include <string.h>

#include "ent/model.h"

/* Window [active_from, expires_at) with 0 meaning open at that end. */
static bool src_active(const struct ent_source *src, int64_t t)
{
	return (src->active_from == 0 || src->active_from <= t) &&
	       (src->expires_at == 0 || t < src->expires_at);
}

/*
 * Would this source grant the feature if it were active? Only used to explain a "no"
 * (NOT_YET_ACTIVE / EXPIRED). An override that explicitly sets ENABLED says so itself; one that
 * only sets a quota grants the feature implicitly (rule 5).
 */
static bool src_grants(const struct ent_source *src)
{
	if (src->type != ENT_SRC_OVERRIDE)
		return src->enabled;
	if (src->sets & ENT_SETS_ENABLED)
		return src->enabled;
	return (src->sets & (ENT_SETS_LIMIT | ENT_SETS_UNLIMITED)) != 0;
}

/* Both operands >= 0: limits saturate at INT64_MAX instead of wrapping. */
static int64_t sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* a >= 0, b >= 1. */
static int64_t sat_mul(int64_t a, int64_t b)
{
	if (a == 0)
		return 0;
	return a > INT64_MAX / b ? INT64_MAX : a * b;
}

/* Set union in order of first appearance; silently capped (admin input is capped earlier). */
static void add_static(struct ent_agg *out, struct ent_str v)
{
	for (uint32_t i = 0; i < out->n_static; i++)
		if (ent_str_eq(out->statics[i], v))
			return;
	if (out->n_static < ENT_MAX_STATIC)
		out->statics[out->n_static++] = v;
}

static const struct ent_priv *find_priv(const struct ent_source *src, struct ent_str code)
{
	for (uint32_t i = 0; i < src->n_privs; i++)
		if (ent_str_eq(src->privs[i].code, code))
			return &src->privs[i];
	return NULL;
}

/*
 * Copy the value of \a p into \a dst as the declared \a type. Only the field of that type is
 * kept, so two aggregates compare equal exactly when their visible values are equal. A type
 * outside the enum (never on validated input) keeps all three fields.
 */
static void priv_set(struct ent_priv *dst, struct ent_str code, uint8_t type,
		     const struct ent_priv *p)
{
	memset(dst, 0, sizeof(*dst));
	dst->code = code;
	dst->type = type;
	switch (type) {
	case ENT_PT_INTEGER:
		dst->i = p->i;
		break;
	case ENT_PT_BOOLEAN:
		dst->b = p->b;
		break;
	case ENT_PT_STRING:
	case ENT_PT_SELECT:
		dst->s = p->s;
		break;
	default:
		dst->i = p->i;
		dst->b = p->b;
		dst->s = p->s;
		break;
	}
}

static int validate(const struct ent_sources *s)
{
	if (!s || s->n > ENT_MAX_SOURCES || s->feature.n_privs > ENT_MAX_PRIVS)
		return -ENT_EINVAL;
	for (uint32_t i = 0; i < s->n; i++) {
		const struct ent_source *src = &s->src[i];
		if ((src->n_static && !src->statics) || (src->n_privs && !src->privs))
			return -ENT_EINVAL;
	}
	return 0;
}

/*
 * Rule 4: privileges in declaration order. out->privs is used as scratch indexed by the
 * declaration, then compacted, so the output keeps declaration order without a second array.
 */
static void fold_privs(const struct ent_sources *s, int64_t t, const struct ent_source *ovr,
		       struct ent_agg *out)
{
	const struct ent_feature_def *f = &s->feature;
	bool have[ENT_MAX_PRIVS] = {false};
	uint8_t prec[ENT_MAX_PRIVS] = {0};

	for (uint32_t i = 0; i < f->n_privs; i++) {
		struct ent_priv *o = &out->privs[i];
		uint8_t type = f->privs[i].type;
		for (uint32_t k = 0; k < s->n; k++) {
			const struct ent_source *src = &s->src[k];
			if (src->type == ENT_SRC_OVERRIDE || !src->enabled || !src_active(src, t))
				continue;
			const struct ent_priv *p = find_priv(src, f->privs[i].code);
			if (!p)
				continue;
			if (!have[i]) {
				priv_set(o, f->privs[i].code, type, p);
				prec[i] = src->type;
				have[i] = true;
				continue;
			}
			switch (type) {
			case ENT_PT_INTEGER:
				if (p->i > o->i)
					o->i = p->i;
				break;
			case ENT_PT_BOOLEAN:
				o->b = o->b || p->b;
				break;
			default:
				/* Strictly higher only: on a tie the earlier source keeps it. */
				if (src->type > prec[i]) {
					priv_set(o, f->privs[i].code, type, p);
					prec[i] = src->type;
				}
				break;
			}
		}
		/* An override carrying the privilege replaces it whatever the type rule says. */
		if (ovr && (ovr->sets & ENT_SETS_PRIVS)) {
			const struct ent_priv *p = find_priv(ovr, f->privs[i].code);
			if (p) {
				priv_set(o, f->privs[i].code, type, p);
				have[i] = true;
			}
		}
	}

	uint32_t n = 0;
	for (uint32_t i = 0; i < f->n_privs; i++)
		if (have[i])
			out->privs[n++] = out->privs[i];
	out->n_privs = n;
}

/* Rule 6: why a disabled result is disabled, in the order a user would want to hear it. */
static uint8_t disabled_state(const struct ent_sources *s, int64_t t, const struct ent_source *ovr)
{
	if (ovr && (ovr->sets & ENT_SETS_ENABLED) && !ovr->enabled)
		return ENT_R_DISABLED_BY_OVERRIDE;
	for (uint32_t i = 0; i < s->n; i++) {
		const struct ent_source *src = &s->src[i];
		if (src_grants(src) && src->active_from != 0 && src->active_from > t)
			return ENT_R_NOT_YET_ACTIVE;
	}
	for (uint32_t i = 0; i < s->n; i++) {
		const struct ent_source *src = &s->src[i];
		if (src_grants(src) && src->expires_at != 0 && src->expires_at <= t)
			return ENT_R_EXPIRED;
	}
	/* A granting source that ended and was cleaned up still explains the "no": the answer
	 * must not depend on whether the writer's timer has deleted it yet. */
	if (s->ended_at != 0 && s->ended_at <= t)
		return ENT_R_EXPIRED;
	return ENT_R_NOT_ENTITLED;
}

/*
 * Rule 9: the usage shape at t. Only contributing sources that specify a period take part (an
 * UNSPECIFIED reset says nothing, it does not mean NEVER); among them the highest precedence
 * wins, ties to the first. Overrides carry no period. NEVER has no anchor: one period for ever.
 */
static void shape_at(const struct ent_sources *s, int64_t t, uint8_t *reset, int64_t *anchor)
{
	*reset = ENT_RESET_NEVER;
	*anchor = 0;
	if (s->feature.type != ENT_FT_METERED)
		return;
	const struct ent_source *best = NULL;
	for (uint32_t i = 0; i < s->n; i++) {
		const struct ent_source *src = &s->src[i];
		if (src->type == ENT_SRC_OVERRIDE || !src->enabled || !src_active(src, t) ||
		    src->reset < ENT_RESET_DAILY || src->reset > ENT_RESET_NEVER)
			continue;
		if (!best || src->type > best->type)
			best = src;
	}
	if (!best || best->reset == ENT_RESET_NEVER)
		return;
	*reset = best->reset;
	*anchor = best->billing_anchor ? best->billing_anchor : best->active_from;
}

int ent_model_aggregate(const struct ent_sources *s, int64_t t, struct ent_agg *out)
{
	int rc = validate(s);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));

	/* Rule 5: the first active override wins; the others are ignored. */
	const struct ent_source *ovr = NULL;
	for (uint32_t i = 0; i < s->n && !ovr; i++)
		if (s->src[i].type == ENT_SRC_OVERRIDE && src_active(&s->src[i], t))
			ovr = &s->src[i];

	/* Rules 1-3 over the base sources (active, not overrides). */
	for (uint32_t i = 0; i < s->n; i++) {
		const struct ent_source *src = &s->src[i];
		if (src->type == ENT_SRC_OVERRIDE || !src_active(src, t) || !src->enabled)
			continue;
		out->enabled = true;
		out->unlimited = out->unlimited || src->unlimited;
		out->soft = out->soft || src->soft;
		int64_t lim = src->usage_limit > 0 ? src->usage_limit : 0;
		int64_t qty = src->quantity > 1 ? src->quantity : 1;
		out->limit = sat_add(out->limit, sat_mul(lim, qty));
		for (uint32_t k = 0; k < src->n_static; k++)
			add_static(out, src->statics[k]);
	}
	fold_privs(s, t, ovr, out);

	if (ovr) {
		if (ovr->sets & ENT_SETS_ENABLED)
			out->enabled = ovr->enabled;
		else if (ovr->sets & (ENT_SETS_LIMIT | ENT_SETS_UNLIMITED))
			out->enabled = true;
		if (ovr->sets & ENT_SETS_LIMIT) {
			out->limit = ovr->usage_limit > 0 ? ovr->usage_limit : 0;
			out->unlimited = false;
		}
		if (ovr->sets & ENT_SETS_UNLIMITED)
			out->unlimited = true;
		if (ovr->sets & ENT_SETS_STATIC) {
			out->n_static = 0;
			for (uint32_t k = 0; k < ovr->n_static; k++)
				add_static(out, ovr->statics[k]);
		}
		out->override_applied = true;
		out->override_reason = ovr->reason;
		out->override_expires_at = ovr->expires_at;
	}

	if (out->enabled) {
		out->state = ENT_R_ENTITLED;
	} else {
		/* Values are only given for enabled features. */
		out->limit = 0;
		out->unlimited = false;
		out->soft = false;
		out->n_static = 0;
		out->n_privs = 0;
		out->state = disabled_state(s, t, ovr);
	}
	shape_at(s, t, &out->reset, &out->anchor);

	/* Rule 7: the nearest window edges around t bound the segment of constant value. */
	out->from = ENT_T_MIN;
	out->to = ENT_T_MAX;
	for (uint32_t i = 0; i <= s->n; i++) {
		/* The last round is the cleanup tombstone: the state changes there too. */
		int64_t e[2] = {0, 0};
		if (i < s->n) {
			e[0] = s->src[i].active_from;
			e[1] = s->src[i].expires_at;
		} else {
			e[0] = s->ended_at;
		}
		for (int k = 0; k < 2; k++) {
			if (e[k] == 0)
				continue;
			if (e[k] <= t && e[k] > out->from)
				out->from = e[k];
			else if (e[k] > t && e[k] < out->to)
				out->to = e[k];
		}
	}
	return 0;
}

static bool priv_same(const struct ent_priv *a, const struct ent_priv *b)
{
	return ent_str_eq(a->code, b->code) && a->type == b->type && a->b == b->b && a->i == b->i &&
	       ent_str_eq(a->s, b->s);
}

/* Every field a check can observe, strings by content; from/to are not compared. */
static bool agg_same(const struct ent_agg *a, const struct ent_agg *b)
{
	if (a->state != b->state || a->enabled != b->enabled || a->unlimited != b->unlimited ||
	    a->soft != b->soft || a->limit != b->limit || a->n_static != b->n_static ||
	    a->n_privs != b->n_privs || a->override_applied != b->override_applied ||
	    a->override_expires_at != b->override_expires_at || a->reset != b->reset ||
	    a->anchor != b->anchor || !ent_str_eq(a->override_reason, b->override_reason))
		return false;
	for (uint32_t i = 0; i < a->n_static; i++)
		if (!ent_str_eq(a->statics[i], b->statics[i]))
			return false;
	for (uint32_t i = 0; i < a->n_privs; i++)
		if (!priv_same(&a->privs[i], &b->privs[i]))
			return false;
	return true;
}

static bool has_edge(const int64_t *edges, uint32_t n, int64_t e)
{
	for (uint32_t i = 0; i < n; i++)
		if (edges[i] == e)
			return true;
	return false;
}

int ent_model_segments(const struct ent_sources *s, int64_t now, struct ent_agg *out)
{
	int rc = validate(s);
	if (rc)
		return rc;

	/* All window edges, sorted and unique (insertion sort: at most 129 of them, with the
	 * tombstone). */
	int64_t edges[2 * ENT_MAX_SOURCES + 1];
	uint32_t n = 0;
	for (uint32_t i = 0; i <= s->n; i++) {
		/* The last round is the cleanup tombstone (rule 6b): an edge like a window's. */
		int64_t e[2] = {0, 0};
		if (i < s->n) {
			e[0] = s->src[i].active_from;
			e[1] = s->src[i].expires_at;
		} else {
			e[0] = s->ended_at;
		}
		for (int k = 0; k < 2; k++) {
			if (e[k] == 0 || has_edge(edges, n, e[k]))
				continue;
			uint32_t j = n++;
			for (; j > 0 && edges[j - 1] > e[k]; j--)
				edges[j] = edges[j - 1];
			edges[j] = e[k];
		}
	}

	/*
	 * Interval i is [edges[i-1], edges[i]) with open ends at ENT_T_MIN/ENT_T_MAX. Intervals
	 * that end by \a now are skipped before they are even aggregated: dropping them first and
	 * then merging gives the same list as merging first, because the first kept segment is
	 * widened back to ENT_T_MIN anyway. Each kept interval is aggregated straight into the next
	 * free output slot and given back if it equals its neighbour. Past the cap, intervals are
	 * folded into the last segment without being evaluated: its values then stand for the whole
	 * tail, which is only exact until its first interval ends. The writer re-runs this at the
	 * next edge with a later \a now, so the list rolls forward (docs/semantics.md).
	 */
	int count = 0;
	for (uint32_t i = 0; i <= n; i++) {
		int64_t from = i == 0 ? ENT_T_MIN : edges[i - 1];
		int64_t to = i == n ? ENT_T_MAX : edges[i];
		if (from >= to || to <= now)
			continue;
		if (count == ENT_MAX_SEGMENTS) {
			out[count - 1].to = to;
			continue;
		}
		struct ent_agg *slot = &out[count];
		rc = ent_model_aggregate(s, i == 0 ? to - 1 : from, slot);
		if (rc)
			return rc;
		if (count > 0 && agg_same(&out[count - 1], slot)) {
			out[count - 1].to = to;
			continue;
		}
		slot->from = count == 0 ? ENT_T_MIN : from;
		slot->to = to;
		count++;
	}
	return count;
}

void ent_model_usage_shape(const struct ent_sources *s, int64_t now, uint8_t *reset,
			   int64_t *anchor)
{
	*reset = ENT_RESET_NEVER;
	*anchor = 0;
	if (!s || validate(s))
		return;
	shape_at(s, now, reset, anchor);
}
