/*
 * Names of enum values in the JSON document. Parsing is the model's (one set of accepted
 * spellings, case-insensitive, for the RPCs and the document alike). Printing is our own
 * because the document must tell "not set" (UNSPECIFIED, left out) from NEVER or "unspecified",
 * which the model displays for it: export prints NULL for it and leaves the member out.
 */

#include "ent/model.h"
#include "json/impl.h"

static const char *const feature_types[] = {
	[ENT_FT_BOOLEAN] = "boolean",
	[ENT_FT_METERED] = "metered",
	[ENT_FT_STATIC] = "static",
};

static const char *const priv_types[] = {
	[ENT_PT_INTEGER] = "integer",
	[ENT_PT_BOOLEAN] = "boolean",
	[ENT_PT_STRING] = "string",
	[ENT_PT_SELECT] = "select",
};

static const char *const resets[] = {
	[ENT_RESET_DAILY] = "DAILY",
	[ENT_RESET_WEEKLY] = "WEEKLY",
	[ENT_RESET_MONTHLY] = "MONTHLY",
	[ENT_RESET_QUARTERLY] = "QUARTERLY",
	[ENT_RESET_HALF_YEARLY] = "HALF_YEARLY",
	[ENT_RESET_ANNUAL] = "ANNUAL",
	[ENT_RESET_NEVER] = "NEVER",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *t, size_t n, uint8_t v)
{
	return v < n && t[v] ? t[v] : NULL;
}

const char *ent_json_feature_type_name(uint8_t t)
{
	return name_of(feature_types, N(feature_types), t);
}

int ent_json_feature_type_parse(const char *s, uint8_t *out)
{
	return ent_feature_type_parse(s, out);
}

const char *ent_json_priv_type_name(uint8_t t)
{
	return name_of(priv_types, N(priv_types), t);
}

int ent_json_priv_type_parse(const char *s, uint8_t *out)
{
	return ent_priv_type_parse(s, out);
}

const char *ent_json_reset_name(uint8_t r)
{
	return name_of(resets, N(resets), r);
}

int ent_json_reset_parse(const char *s, uint8_t *out)
{
	return ent_reset_parse(s, out);
}
