/*
 * Canonical names of the model's enums, as they appear in JSON, logs and entctl, and their
 * parsers. Matching is ASCII case-insensitive by hand so that it never depends on the locale.
 */
#include <stddef.h>

#include "ent/model.h"

static const char *const reset_names[] = {
	[ENT_RESET_UNSPECIFIED] = "NEVER",   [ENT_RESET_DAILY] = "DAILY",
	[ENT_RESET_WEEKLY] = "WEEKLY",	     [ENT_RESET_MONTHLY] = "MONTHLY",
	[ENT_RESET_QUARTERLY] = "QUARTERLY", [ENT_RESET_HALF_YEARLY] = "HALF_YEARLY",
	[ENT_RESET_ANNUAL] = "ANNUAL",	     [ENT_RESET_NEVER] = "NEVER",
};

static const char *const feature_type_names[] = {
	[ENT_FT_UNSPECIFIED] = "unspecified",
	[ENT_FT_BOOLEAN] = "boolean",
	[ENT_FT_METERED] = "metered",
	[ENT_FT_STATIC] = "static",
};

static const char *const priv_type_names[] = {
	[ENT_PT_UNSPECIFIED] = "unspecified", [ENT_PT_INTEGER] = "integer",
	[ENT_PT_BOOLEAN] = "boolean",	      [ENT_PT_STRING] = "string",
	[ENT_PT_SELECT] = "select",
};

static const char *const reason_names[] = {
	[ENT_R_UNSPECIFIED] = "UNSPECIFIED",
	[ENT_R_ENTITLED] = "ENTITLED",
	[ENT_R_NOT_ENTITLED] = "NOT_ENTITLED",
	[ENT_R_UNKNOWN_CUSTOMER] = "UNKNOWN_CUSTOMER",
	[ENT_R_UNKNOWN_FEATURE] = "UNKNOWN_FEATURE",
	[ENT_R_LIMIT_EXCEEDED] = "LIMIT_EXCEEDED",
	[ENT_R_ALLOWED_OVER_SOFT_LIMIT] = "ALLOWED_OVER_SOFT_LIMIT",
	[ENT_R_DISABLED_BY_OVERRIDE] = "DISABLED_BY_OVERRIDE",
	[ENT_R_NOT_YET_ACTIVE] = "NOT_YET_ACTIVE",
	[ENT_R_EXPIRED] = "EXPIRED",
};

static const char *const source_type_names[] = {
	[ENT_SRC_UNSPECIFIED] = "unspecified",
	[ENT_SRC_PLAN] = "plan",
	[ENT_SRC_ADDON] = "addon",
	[ENT_SRC_SUBSCRIPTION] = "subscription",
	[ENT_SRC_OVERRIDE] = "override",
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *names, size_t n, unsigned v)
{
	/* Out-of-range values read as the enum's UNSPECIFIED (index 0). */
	return v < n ? names[v] : names[0];
}

static bool ascii_case_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
		if (!x)
			return true;
	}
}

/* Index of \a s among \a names[first..n), or -ENT_EINVAL. */
static int parse_in(const char *const *names, size_t n, size_t first, const char *s, uint8_t *out)
{
	if (!s)
		return -ENT_EINVAL;
	for (size_t i = first; i < n; i++) {
		if (ascii_case_eq(s, names[i])) {
			*out = (uint8_t)i;
			return 0;
		}
	}
	return -ENT_EINVAL;
}

const char *ent_model_reset_name(uint8_t r)
{
	return name_of(reset_names, N_OF(reset_names), r);
}

int ent_model_reset_parse(const char *s, uint8_t *out)
{
	/* Flexprice also spells the enum QUARTER / HALF_YEAR (its
	 * ENTITLEMENT_USAGE_RESET_PERIOD_*). */
	if (s && ascii_case_eq(s, "QUARTER")) {
		*out = ENT_RESET_QUARTERLY;
		return 0;
	}
	if (s && ascii_case_eq(s, "HALF_YEAR")) {
		*out = ENT_RESET_HALF_YEARLY;
		return 0;
	}
	/* Index 0 is UNSPECIFIED's display name "NEVER": start at 1 so NEVER parses as NEVER. */
	return parse_in(reset_names, N_OF(reset_names), 1, s, out);
}

const char *ent_model_feature_type_name(uint8_t t)
{
	return name_of(feature_type_names, N_OF(feature_type_names), t);
}

int ent_model_feature_type_parse(const char *s, uint8_t *out)
{
	return parse_in(feature_type_names, N_OF(feature_type_names), 1, s, out);
}

const char *ent_model_priv_type_name(uint8_t t)
{
	return name_of(priv_type_names, N_OF(priv_type_names), t);
}

int ent_model_priv_type_parse(const char *s, uint8_t *out)
{
	return parse_in(priv_type_names, N_OF(priv_type_names), 1, s, out);
}

const char *ent_model_reason_name(uint8_t r)
{
	return name_of(reason_names, N_OF(reason_names), r);
}

const char *ent_model_source_type_name(uint8_t t)
{
	return name_of(source_type_names, N_OF(source_type_names), t);
}
