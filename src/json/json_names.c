/*
 * Names of enum values in the JSON document. Parsing is the model's (one set of accepted
 * spellings, case-insensitive, for the RPCs and the document alike). Printing is our own
 * because the document must tell "not set" (UNSPECIFIED, left out) from NEVER or "unspecified",
 * which the model displays for it: export prints NULL for it and leaves the member out.
 */

#include <stdio.h>
#include <string.h>

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
	return ent_model_feature_type_parse(s, out);
}

const char *ent_json_priv_type_name(uint8_t t)
{
	return name_of(priv_types, N(priv_types), t);
}

int ent_json_priv_type_parse(const char *s, uint8_t *out)
{
	return ent_model_priv_type_parse(s, out);
}

const char *ent_json_reset_name(uint8_t r)
{
	return name_of(resets, N(resets), r);
}

int ent_json_reset_parse(const char *s, uint8_t *out)
{
	return ent_model_reset_parse(s, out);
}

/* ---- the document's options for the descriptor-driven conversion ------------------------ */

static const char *doc_enum_name(const ProtobufCEnumDescriptor *d, int v)
{
	uint8_t u = v >= 0 && v < 256 ? (uint8_t)v : 0;
	if (d == &ent__v1__feature_type__descriptor)
		return ent_json_feature_type_name(u);
	if (d == &ent__v1__privilege_type__descriptor)
		return ent_json_priv_type_name(u);
	if (d == &ent__v1__reset_period__descriptor)
		return ent_json_reset_name(u);
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
	return ev && v ? ev->name : NULL;
}

static int doc_enum_parse(const ProtobufCEnumDescriptor *d, const char *s, int *v, char *why,
			  size_t len)
{
	uint8_t u = 0;
	int rc;
	const char *what, *choices;
	if (d == &ent__v1__feature_type__descriptor) {
		rc = ent_json_feature_type_parse(s, &u);
		what = "feature type";
		choices = "boolean, metered, static";
	} else if (d == &ent__v1__privilege_type__descriptor) {
		rc = ent_json_priv_type_parse(s, &u);
		what = "value type";
		choices = "integer, boolean, string, select";
	} else if (d == &ent__v1__reset_period__descriptor) {
		rc = ent_json_reset_parse(s, &u);
		what = "reset period";
		choices = ENT_JSON_RESET_NAMES;
	} else {
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(d, s);
		if (ev) {
			*v = ev->value;
			return 0;
		}
		snprintf(why, len, "unknown %s value \"%.40s\"", d->name, s);
		return -1;
	}
	if (rc) {
		snprintf(why, len, "unknown %s \"%.40s\" (%s)", what, s, choices);
		return -1;
	}
	*v = u;
	return 0;
}

static bool doc_omit(const ProtobufCMessageDescriptor *m, const ProtobufCFieldDescriptor *f)
{
	if (m == &ent__v1__grant__descriptor)
		return !strcmp(f->name, "feature_code");
	if (m == &ent__v1__set_entitlements_request__descriptor)
		return !strcmp(f->name, "code");
	if (m == &ent__v1__customer_override__descriptor)
		return !strcmp(f->name, "quantity_used");
	return false;
}

const struct ent_pbjson_opts ent_json_doc = {
	.flags = ENT_PBJSON_SKIP_DEFAULTS | ENT_PBJSON_TIMES | ENT_PBJSON_EXACT,
	.enum_name = doc_enum_name,
	.enum_parse = doc_enum_parse,
	.omit = doc_omit,
};
