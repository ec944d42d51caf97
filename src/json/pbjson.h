/*
 * JSON <-> protobuf-c messages, driven by the message descriptors so every message of the API
 * converts without per-type code: entctl's bodies and --json output, and each object of the
 * import/export document (src/json/import.c, export.c, which keep by hand only the document's
 * shape: its sections, maps keyed by code, Lago's privilege maps).
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
#ifndef ENT_JSON_PBJSON_H
#define ENT_JSON_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "ent/util.h"

enum {
	ENT_PBJSON_SHORT_ENUMS = 1 << 0,   /**< "ENTITLED" instead of "REASON_ENTITLED" */
	ENT_PBJSON_SKIP_DEFAULTS = 1 << 1, /**< omit zero scalars, empty strings and lists */
	/**
	 * Instants (ent_json_is_time_field) print as RFC 3339 (Unix ms outside years 1..9999)
	 * and read as RFC 3339 or Unix ms only ("now" is entctl's, not the document's).
	 */
	ENT_PBJSON_TIMES = 1 << 2,
	/** Input names must be the proto names exactly; numbers must be JSON integers. */
	ENT_PBJSON_EXACT = 1 << 3,
};

/** How one conversion spells things; NULL hooks mean the defaults above. */
struct ent_pbjson_opts {
	unsigned flags; /**< ENT_PBJSON_* */
	/** decode: where the message is built (NULL: malloc). */
	const ProtobufCAllocator *alloc;
	/** The spelling of enum value \a v; NULL leaves the field out. */
	const char *(*enum_name)(const ProtobufCEnumDescriptor *d, int v);
	/** Read an enum spelling. \return 0, or -1 with \a why (no path) filled. */
	int (*enum_parse)(const ProtobufCEnumDescriptor *d, const char *s, int *v, char *why,
			  size_t why_len);
	/** Fields the JSON does not carry: left out on encode, an unknown key on decode. */
	bool (*omit)(const ProtobufCMessageDescriptor *m, const ProtobufCFieldDescriptor *f);
};

/**
 * Convert \a m to a new JSON object (caller owns the reference), fields in number order.
 * \return the object, or NULL on allocation failure.
 */
json_t *ent_json_pb_encode(const ProtobufCMessage *m, const struct ent_pbjson_opts *o);

/**
 * Build a message of type \a desc from the JSON object \a j.
 * \param path the JSON path of \a j, prefixed to errors ("features[3]"); NULL or "" for none.
 * \param out set to the message: with o->alloc NULL free it with
 *        protobuf_c_message_free_unpacked(m, NULL); with an arena allocator it lives there.
 * \param err receives "path: problem" on failure ("features[3].limit: unknown key").
 * \return 0 or -ENT_EINVAL / -ENT_ENOMEM.
 */
int ent_json_pb_decode(const json_t *j, const ProtobufCMessageDescriptor *desc,
		       const struct ent_pbjson_opts *o, const char *path, ProtobufCMessage **out,
		       struct ent_err *err);

/**
 * Is \a name an instant by the API's naming rule: "at", "*_at", "active_from",
 * "billing_anchor", "period_start", "period_end", "timestamp"? A new time field follows the
 * rule and converts as a time everywhere.
 */
bool ent_json_is_time_name(const char *name);

/** ent_json_pb_encode with only \a flags (entctl). */
json_t *ent_json_pbjson_encode(const ProtobufCMessage *m, unsigned flags);

/** ent_json_pb_decode with default options and malloc (entctl). */
int ent_json_pbjson_decode(const json_t *j, const ProtobufCMessageDescriptor *desc,
			   ProtobufCMessage **out, struct ent_err *err);

/** Parse a time: integer Unix ms, RFC 3339, "now", "now+N[smhd]", "now-N[smhd]". */
int ent_json_parse_time(const char *s, int64_t *ms);

/** The enum value name without the enum's prefix ("REASON_ENTITLED" -> "ENTITLED"). */
const char *ent_json_enum_short(const ProtobufCEnumDescriptor *d, int value);

#endif
