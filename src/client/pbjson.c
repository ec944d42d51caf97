/*
 * Descriptor-driven JSON <-> protobuf-c conversion (src/client/pbjson.h).
 *
 * Decoded messages are built with malloc in exactly the shape protobuf_c_message_unpack()
 * produces, so protobuf_c_message_free_unpacked(m, NULL) frees them: every string, array and
 * sub-message is its own allocation, and untouched string fields keep their static default.
 */
#include "client/pbjson.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMBER(type, msg, off)	(*(type *)((char *)(msg) + (off)))
#define CMEMBER(type, msg, off) (*(const type *)((const char *)(msg) + (off)))

/* ---- names ---------------------------------------------------------------------------- */

/* Compare ignoring case and '_' so "feature_code", "featureCode" and "FEATURECODE" match. */
static bool name_eq(const char *a, const char *b)
{
	for (;;) {
		while (*a == '_')
			a++;
		while (*b == '_')
			b++;
		if (!*a || !*b)
			return !*a && !*b;
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return false;
		a++;
		b++;
	}
}

/* "FeatureType" -> "FEATURE_TYPE_": the prefix protoc style puts on every value name. */
static size_t enum_prefix(const ProtobufCEnumDescriptor *d, char *buf, size_t len)
{
	size_t n = 0;
	for (const char *p = d->short_name; *p && n + 2 < len; p++) {
		if (isupper((unsigned char)*p) && p != d->short_name)
			buf[n++] = '_';
		buf[n++] = (char)toupper((unsigned char)*p);
	}
	buf[n++] = '_';
	buf[n] = '\0';
	return n;
}

const char *ent_client_enum_short(const ProtobufCEnumDescriptor *d, int value)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
	if (!v)
		return "?";
	char prefix[128];
	size_t n = enum_prefix(d, prefix, sizeof(prefix));
	if (!strncmp(v->name, prefix, n) && v->name[n])
		return v->name + n;
	return v->name;
}

static bool enum_parse(const ProtobufCEnumDescriptor *d, const json_t *j, int *out)
{
	if (json_is_integer(j)) {
		*out = (int)json_integer_value(j);
		return protobuf_c_enum_descriptor_get_value(d, *out) != NULL;
	}
	if (!json_is_string(j))
		return false;
	const char *s = json_string_value(j);
	char prefix[128];
	size_t n = enum_prefix(d, prefix, sizeof(prefix));
	for (unsigned i = 0; i < d->n_values; i++) {
		const char *name = d->values[i].name;
		if (!strcasecmp(name, s) ||
		    (!strncmp(name, prefix, n) && !strcasecmp(name + n, s))) {
			*out = d->values[i].value;
			return true;
		}
	}
	return false;
}

/* ---- time ----------------------------------------------------------------------------- */

int ent_client_parse_time(const char *s, int64_t *ms)
{
	char *end;
	if (!s || !*s)
		return -ENT_EINVAL;
	if (!strncasecmp(s, "now", 3)) {
		int64_t t = ent_now_ms();
		s += 3;
		if (!*s) {
			*ms = t;
			return 0;
		}
		if (*s != '+' && *s != '-')
			return -ENT_EINVAL;
		int sign = *s == '-' ? -1 : 1;
		errno = 0;
		long long n = strtoll(s + 1, &end, 10);
		if (errno || end == s + 1 || n < 0)
			return -ENT_EINVAL;
		int64_t unit;
		switch (*end) {
		case 's':
			unit = 1000;
			break;
		case 'm':
			unit = 60 * 1000;
			break;
		case 'h':
			unit = 3600 * 1000;
			break;
		case 'd':
			unit = 86400 * 1000;
			break;
		default:
			return -ENT_EINVAL;
		}
		if (end[1])
			return -ENT_EINVAL;
		*ms = t + sign * n * unit;
		return 0;
	}
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!errno && end != s && !*end) {
		*ms = v;
		return 0;
	}
	return ent_time_parse(s, ms);
}

/* ---- encode --------------------------------------------------------------------------- */

static bool is_wrapper(const ProtobufCMessageDescriptor *d)
{
	return d->package_name && !strcmp(d->package_name, "google.protobuf") &&
	       strstr(d->short_name, "Value") && d->n_fields == 1 &&
	       !strcmp(d->fields[0].name, "value");
}

/* protoc-c turns map<K, V> into a repeated nested "<Field>Entry" message of key and value. */
static bool is_map_entry(const ProtobufCMessageDescriptor *d)
{
	size_t n = strlen(d->short_name);
	return n > 5 && !strcmp(d->short_name + n - 5, "Entry") && d->n_fields == 2 &&
	       !strcmp(d->fields[0].name, "key") && !strcmp(d->fields[1].name, "value");
}

static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static json_t *encode_string(const char *s)
{
	json_t *j = json_string(s ? s : "");
	/* Not UTF-8: show the bytes anyway rather than drop the field. */
	return j ? j : json_string_nocheck(s);
}

static json_t *encode_bytes(const ProtobufCBinaryData *b)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = (b->len + 2) / 3 * 4;
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < b->len; i += 3) {
		uint32_t v = (uint32_t)b->data[i] << 16;
		if (i + 1 < b->len)
			v |= (uint32_t)b->data[i + 1] << 8;
		if (i + 2 < b->len)
			v |= b->data[i + 2];
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < b->len ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < b->len ? tab[v & 63] : '=';
	}
	*o = '\0';
	json_t *j = json_string(out);
	free(out);
	return j;
}

static json_t *encode_value(const ProtobufCFieldDescriptor *f, const void *p, unsigned flags);

static json_t *encode_message(const ProtobufCMessage *m, unsigned flags)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (is_wrapper(d))
		return encode_value(&d->fields[0], (const char *)m + d->fields[0].offset, flags);
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		json_t *v = NULL;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    CMEMBER(uint32_t, m, f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = CMEMBER(size_t, m, f->quantifier_offset);
			const char *arr = CMEMBER(const char *, m, f->offset);
			size_t sz = elem_size(f->type);
			if (!n && (flags & ENT_PBJSON_SKIP_DEFAULTS))
				continue;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    is_map_entry((const ProtobufCMessageDescriptor *)f->descriptor)) {
				v = json_object();
				for (size_t k = 0; v && k < n; k++) {
					const ProtobufCMessage *e =
						((const ProtobufCMessage *const *)arr)[k];
					const ProtobufCMessageDescriptor *ed = e->descriptor;
					const char *key =
						CMEMBER(const char *, e, ed->fields[0].offset);
					json_object_set_new(
						v, key ? key : "",
						encode_value(&ed->fields[1],
							     (const char *)e + ed->fields[1].offset,
							     flags));
				}
			} else {
				v = json_array();
				for (size_t k = 0; v && k < n; k++)
					json_array_append_new(v,
							      encode_value(f, arr + k * sz, flags));
			}
		} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			const ProtobufCMessage *sub =
				CMEMBER(const ProtobufCMessage *, m, f->offset);
			if (!sub)
				continue;
			v = encode_message(sub, flags);
		} else {
			if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
			    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    !CMEMBER(protobuf_c_boolean, m, f->quantifier_offset))
				continue;
			v = encode_value(f, (const char *)m + f->offset, flags);
			if ((flags & ENT_PBJSON_SKIP_DEFAULTS) &&
			    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    ((json_is_integer(v) && !json_integer_value(v)) ||
			     (json_is_real(v) && json_real_value(v) == 0) || json_is_false(v) ||
			     (json_is_string(v) && !json_string_length(v)))) {
				json_decref(v);
				continue;
			}
		}
		if (!v) {
			json_decref(obj);
			return NULL;
		}
		json_object_set_new(obj, f->name, v);
	}
	return obj;
}

/* One value of field \a f stored at \a p (an element for repeated fields). */
static json_t *encode_value(const ProtobufCFieldDescriptor *f, const void *p, unsigned flags)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_integer(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return json_integer((json_int_t) * (const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return json_real(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return json_real(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *d = f->descriptor;
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
		if (!ev)
			return json_integer(v);
		return json_string((flags & ENT_PBJSON_SHORT_ENUMS) ? ent_client_enum_short(d, v)
								    : ev->name);
	}
	case PROTOBUF_C_TYPE_STRING:
		return encode_string(*(const char *const *)p);
	case PROTOBUF_C_TYPE_BYTES:
		return encode_bytes((const ProtobufCBinaryData *)p);
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
		return m ? encode_message(m, flags) : json_null();
	}
	}
	return json_null();
}

json_t *ent_client_pbjson_encode(const ProtobufCMessage *m, unsigned flags)
{
	return encode_message(m, flags);
}

/* ---- decode --------------------------------------------------------------------------- */

struct dec {
	struct ent_err *err;
	char path[512];
};

static int dec_fail(struct dec *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dec_fail(struct dec *x, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ent_err_set(x->err, ENT_EINVAL, "%s: %s", x->path[0] ? x->path : "(top)", msg);
}

static int decode_message(struct dec *x, const json_t *j, const ProtobufCMessageDescriptor *d,
			  ProtobufCMessage **out);

static bool get_int(const json_t *j, bool time_ok, int64_t *v)
{
	if (json_is_integer(j)) {
		*v = json_integer_value(j);
		return true;
	}
	if (json_is_real(j)) {
		double r = json_real_value(j);
		if (r != floor(r) || fabs(r) > 9.2e18)
			return false;
		*v = (int64_t)r;
		return true;
	}
	if (json_is_string(j)) {
		/* proto3 JSON writes int64 as strings; times may be RFC 3339 or "now+1d". */
		const char *s = json_string_value(j);
		char *end;
		errno = 0;
		long long n = strtoll(s, &end, 10);
		if (!errno && end != s && !*end) {
			*v = n;
			return true;
		}
		return time_ok && ent_client_parse_time(s, v) == 0;
	}
	return false;
}

/* Store one JSON value into the slot \a p of field \a f (an element for repeated fields). */
static int decode_value(struct dec *x, const ProtobufCFieldDescriptor *f, const json_t *j, void *p)
{
	int64_t iv;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (!get_int(j, false, &iv) || iv < INT32_MIN || iv > INT32_MAX)
			return dec_fail(x, "expected a 32-bit integer");
		*(int32_t *)p = (int32_t)iv;
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (!get_int(j, false, &iv) || iv < 0 || iv > UINT32_MAX)
			return dec_fail(x, "expected an unsigned 32-bit integer");
		*(uint32_t *)p = (uint32_t)iv;
		return 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (!get_int(j, true, &iv))
			return dec_fail(x, "expected an integer or a time");
		*(int64_t *)p = iv;
		return 0;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (!get_int(j, false, &iv) || iv < 0)
			return dec_fail(x, "expected an unsigned integer");
		*(uint64_t *)p = (uint64_t)iv;
		return 0;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		double r;
		if (json_is_number(j))
			r = json_number_value(j);
		else if (json_is_string(j) && *json_string_value(j)) {
			char *end;
			r = strtod(json_string_value(j), &end);
			if (*end)
				return dec_fail(x, "expected a number");
		} else
			return dec_fail(x, "expected a number");
		if (f->type == PROTOBUF_C_TYPE_FLOAT)
			*(float *)p = (float)r;
		else
			*(double *)p = r;
		return 0;
	}
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(j))
			return dec_fail(x, "expected true or false");
		*(protobuf_c_boolean *)p = json_is_true(j);
		return 0;
	case PROTOBUF_C_TYPE_ENUM: {
		int v;
		if (!enum_parse(f->descriptor, j, &v))
			return dec_fail(x, "unknown %s value",
					((const ProtobufCEnumDescriptor *)f->descriptor)->name);
		*(int *)p = v;
		return 0;
	}
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_is_string(j))
			return dec_fail(x, "expected a string");
		char *s = strdup(json_string_value(j));
		if (!s)
			return ent_err_set(x->err, ENT_ENOMEM, "out of memory");
		*(char **)p = s;
		return 0;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		/* No API field is bytes; take the string's bytes as they are. */
		if (!json_is_string(j))
			return dec_fail(x, "expected a string");
		ProtobufCBinaryData *b = p;
		b->len = json_string_length(j);
		b->data = malloc(b->len ? b->len : 1);
		if (!b->data)
			return ent_err_set(x->err, ENT_ENOMEM, "out of memory");
		memcpy(b->data, json_string_value(j), b->len);
		return 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		return decode_message(x, j, f->descriptor, (ProtobufCMessage **)p);
	}
	return dec_fail(x, "unsupported field type");
}

static int decode_field(struct dec *x, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
			const json_t *j)
{
	size_t plen = strlen(x->path);
	int rc = 0;
	snprintf(x->path + plen, sizeof(x->path) - plen, "%s%s", plen ? "." : "", f->name);

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t sz = elem_size(f->type);
		const ProtobufCMessageDescriptor *md = f->descriptor;
		bool map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(md);
		size_t n = map ? json_object_size(j) : json_array_size(j);
		if (map ? !json_is_object(j) : !json_is_array(j)) {
			rc = dec_fail(x, "%s", map ? "expected an object" : "expected a list");
			goto out;
		}
		/*
		 * The array is attached before its elements are filled, so a failure half-way
		 * leaves a message that free_unpacked can still free (elements are zeroed).
		 */
		void *arr = calloc(n ? n : 1, sz);
		if (!arr) {
			rc = ent_err_set(x->err, ENT_ENOMEM, "out of memory");
			goto out;
		}
		MEMBER(void *, m, f->offset) = arr;
		MEMBER(size_t, m, f->quantifier_offset) = n;
		if (map) {
			const char *key;
			const json_t *val;
			size_t k = 0;
			json_object_foreach((json_t *)j, key, val)
			{
				ProtobufCMessage *e = calloc(1, md->sizeof_message);
				if (!e) {
					rc = ent_err_set(x->err, ENT_ENOMEM, "out of memory");
					MEMBER(size_t, m, f->quantifier_offset) = k;
					goto out;
				}
				md->message_init(e);
				((ProtobufCMessage **)arr)[k++] = e;
				json_t *jk = json_string(key);
				rc = decode_value(x, &md->fields[0], jk,
						  (char *)e + md->fields[0].offset);
				json_decref(jk);
				if (!rc)
					rc = decode_value(x, &md->fields[1], val,
							  (char *)e + md->fields[1].offset);
				if (rc) {
					MEMBER(size_t, m, f->quantifier_offset) = k;
					goto out;
				}
			}
		} else {
			size_t plen2 = strlen(x->path);
			for (size_t k = 0; k < n; k++) {
				snprintf(x->path + plen2, sizeof(x->path) - plen2, "[%zu]", k);
				rc = decode_value(x, f, json_array_get(j, k), (char *)arr + k * sz);
				if (rc) {
					/* Only elements 0..k may hold allocations. */
					MEMBER(size_t, m, f->quantifier_offset) = k + 1;
					goto out;
				}
			}
			x->path[plen2] = '\0';
		}
		goto out;
	}
	if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	    MEMBER(uint32_t, m, f->quantifier_offset) != 0) {
		rc = dec_fail(x, "only one field of its oneof may be set");
		goto out;
	}
	/* A oneof member counts as selected as soon as its slot may hold an allocation. */
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		MEMBER(uint32_t, m, f->quantifier_offset) = f->id;
	rc = decode_value(x, f, j, (char *)m + f->offset);
	if (rc)
		goto out;
	if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
	    f->quantifier_offset && f->type != PROTOBUF_C_TYPE_MESSAGE)
		MEMBER(protobuf_c_boolean, m, f->quantifier_offset) = 1;
out:
	if (!rc)
		x->path[plen] = '\0';
	return rc;
}

static int decode_message(struct dec *x, const json_t *j, const ProtobufCMessageDescriptor *d,
			  ProtobufCMessage **out)
{
	ProtobufCMessage *m = calloc(1, d->sizeof_message);
	if (!m)
		return ent_err_set(x->err, ENT_ENOMEM, "out of memory");
	d->message_init(m);
	*out = m;
	if (is_wrapper(d))
		return decode_value(x, &d->fields[0], j, (char *)m + d->fields[0].offset);
	if (!json_is_object(j))
		return dec_fail(x, "expected an object (%s)", d->name);

	/* "feature_code" and "featureCode" name the same field: refuse both at once. */
	uint64_t seen[4] = {0};
	const char *key;
	const json_t *val;
	json_object_foreach((json_t *)j, key, val)
	{
		unsigned i = 0;
		while (i < d->n_fields && !name_eq(d->fields[i].name, key))
			i++;
		if (i == d->n_fields) {
			char what[200];
			snprintf(what, sizeof(what), "unknown field '%.64s' of %.80s", key,
				 d->name);
			return dec_fail(x, "%s", what);
		}
		if (i < 256) {
			if (seen[i / 64] & (1ull << (i % 64)))
				return dec_fail(x, "field '%s' given twice", d->fields[i].name);
			seen[i / 64] |= 1ull << (i % 64);
		}
		if (json_is_null(val))
			continue; /* "not set", as in the seed APIs' nullable fields */
		int rc = decode_field(x, m, &d->fields[i], val);
		if (rc)
			return rc;
	}
	return 0;
}

int ent_client_pbjson_decode(const json_t *j, const ProtobufCMessageDescriptor *desc,
			     ProtobufCMessage **out, struct ent_err *err)
{
	struct dec x = {.err = err};
	*out = NULL;
	int rc = decode_message(&x, j, desc, out);
	if (rc) {
		/* Partially built, but always in a shape free_unpacked understands. */
		protobuf_c_message_free_unpacked(*out, NULL);
		*out = NULL;
	}
	return rc;
}
