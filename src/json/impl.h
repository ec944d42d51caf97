/*
 * Private helpers of the json module: the names the document uses for enum values, shared by
 * import (parse) and export (print) so both sides agree by construction.
 */
#ifndef ENT_JSON_IMPL_H
#define ENT_JSON_IMPL_H

#include <stdint.h>

#include "ent/v1/event.pb-c.h"
#include "json/pbjson.h"

/* Feature types as Flexprice writes them: "boolean", "metered", "static". */
const char *ent_json_feature_type_name(uint8_t t);
int ent_json_feature_type_parse(const char *s, uint8_t *out);

/* Lago privilege value types: "integer", "boolean", "string", "select". */
const char *ent_json_priv_type_name(uint8_t t);
int ent_json_priv_type_parse(const char *s, uint8_t *out);

/* Flexprice reset periods: "DAILY" .. "ANNUAL", "NEVER". Parsers ignore case. */
const char *ent_json_reset_name(uint8_t r);
int ent_json_reset_parse(const char *s, uint8_t *out);

/* The list of accepted reset period names, for error messages. */
#define ENT_JSON_RESET_NAMES "DAILY, WEEKLY, MONTHLY, QUARTERLY, HALF_YEARLY, ANNUAL, NEVER"

/*
 * The document's conversion of one message (json_names.c): exact proto names, RFC 3339 times,
 * defaults left out, the enum spellings above, and the fields the document carries elsewhere
 * left out (map keys: Grant.feature_code, SetEntitlementsRequest.code; read-only:
 * CustomerOverride.quantity_used). Decoding copies it and sets its allocator.
 */
extern const struct ent_pbjson_opts ent_json_doc;

#endif
