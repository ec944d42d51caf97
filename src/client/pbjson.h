/*
 * JSON <-> protobuf-c messages for entctl, driven by the message descriptors so every message of
 * the API converts without per-type code.
 *
 * The mapping is proto3 JSON with the proto field names (snake_case, as the seed APIs spell
 * them), with these choices for a command line:
 *  - int64 fields are JSON numbers; on input a time may also be an RFC 3339 string, "now",
 *    or "now+1d" / "now-30m" (units s, m, h, d);
 *  - enums print as their full name ("REASON_ENTITLED", or "ENTITLED" with
 *    ENT_PBJSON_SHORT_ENUMS); input takes either, in any case ("metered"), or the number;
 *  - google.protobuf.*Value wrappers are plain values; map<string, string> is an object;
 *  - input field names match ignoring case and underscores (so lowerCamelCase works too);
 *    unknown fields are an error naming the path.
 */
#ifndef ENT_CLIENT_PBJSON_H
#define ENT_CLIENT_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "ent/util.h"

enum {
	ENT_PBJSON_SHORT_ENUMS = 1 << 0,   /**< "ENTITLED" instead of "REASON_ENTITLED" */
	ENT_PBJSON_SKIP_DEFAULTS = 1 << 1, /**< omit zero scalars, empty strings and lists */
};

/**
 * Convert \a m to a new JSON object (caller owns the reference).
 * \return the object, or NULL on allocation failure.
 */
json_t *ent_client_pbjson_encode(const ProtobufCMessage *m, unsigned flags);

/**
 * Build a message of type \a desc from the JSON object \a j.
 * \param out set to a malloc'ed message; free with protobuf_c_message_free_unpacked(m, NULL).
 * \param err receives "path: problem" on failure.
 * \return 0 or -ENT_EINVAL / -ENT_ENOMEM.
 */
int ent_client_pbjson_decode(const json_t *j, const ProtobufCMessageDescriptor *desc,
			     ProtobufCMessage **out, struct ent_err *err);

/** Parse a time: integer Unix ms, RFC 3339, "now", "now+N[smhd]", "now-N[smhd]". */
int ent_client_parse_time(const char *s, int64_t *ms);

/** The enum value name without the enum's prefix ("REASON_ENTITLED" -> "ENTITLED"). */
const char *ent_client_enum_short(const ProtobufCEnumDescriptor *d, int value);

#endif
