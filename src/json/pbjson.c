/*
 * Descriptor-driven JSON <-> protobuf-c conversion (src/json/pbjson.h).
 *
 * Decoded messages are built with malloc in exactly the shape protobuf_c_message_unpack()
 * produces, so protobuf_c_message_free_unpacked(m, NULL) frees them: every string, array and
 * sub-message is its own allocation, and untouched string fields keep their static default.
 */
#include "json/pbjson.h"

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

const char *ent_json_enum_short(const ProtobufCEnumDescriptor *d, int value)
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

bool ent_json_is_time_name(const char *k)
{
	size_t n = strlen(k);
	return (n >= 3 && !strcmp(k + n - 3, "_at")) || !strcmp(k, "at") ||
	       !strcmp(k, "active_from") || !strcmp(k, "billing_anchor") ||
	       !strcmp(k, "period_start") || !strcmp(k, "period_end") || !strcmp(k, "timestamp");
}

static bool is_time_field(const struct ent_pbjson_opts *o, const ProtobufCFieldDescriptor *f)
{
	return (o->flags & ENT_PBJSON_TIMES) && f->type == PROTOBUF_C_TYPE_INT64 &&
	       ent_json_is_time_name(f->name);
}

/* Years 1..9999 print as RFC 3339 (what ent_time_parse reads back); others as Unix ms. */
static json_t *encode_time(int64_t ms)
{
	if (ms >= -62135596800000LL && ms <= 253402300799999LL) {
		char buf[40];
		return json_string(ent_time_fmt(ms, buf, sizeof(buf)));
	}
	return json_integer(ms);
}

int ent_json_parse_time(const char *s, int64_t *ms)
{
	char *end;
	if (!s || !*s)
		return -ENT_EINVAL;
	if (!strncasecmp(s, "now", 3)) {
		int64_t t = ent_time_now_ms();
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

static json_t *encode_value(const ProtobufCFieldDescriptor *f, const void *p,
			    const struct ent_pbjson_opts *o);

/* Is the scalar of field \a f at \a p zero, false or ""? (proto3's "not set") */
static bool scalar_is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *str = *(const char *const *)p;
		return !str || !*str;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return !((const ProtobufCBinaryData *)p)->len;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_MESSAGE:
		return !*(const void *const *)p;
	default:
		return elem_size(f->type) == 8 ? !*(const uint64_t *)p : !*(const uint32_t *)p;
	}
}

/* An Int64Value wrapper in a field named as an instant ("expiry_at") is an instant too. */
static bool is_time_wrapper(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *md = f->descriptor;
	return f->type == PROTOBUF_C_TYPE_MESSAGE && is_wrapper(md) &&
	       md->fields[0].type == PROTOBUF_C_TYPE_INT64 && ent_json_is_time_name(f->name);
}

static json_t *encode_message(const ProtobufCMessage *m, const struct ent_pbjson_opts *o)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (is_wrapper(d))
		return encode_value(&d->fields[0], (const char *)m + d->fields[0].offset, o);
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void *p = (const char *)m + f->offset;
		json_t *v = NULL;
		if (o->omit && o->omit(d, f))
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    CMEMBER(uint32_t, m, f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = CMEMBER(size_t, m, f->quantifier_offset);
			const char *arr = CMEMBER(const char *, m, f->offset);
			size_t sz = elem_size(f->type);
			if (!n && (o->flags & ENT_PBJSON_SKIP_DEFAULTS))
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
					if (json_object_set_new(
						    v, key ? key : "",
						    encode_value(&ed->fields[1],
								 (const char *)e +
									 ed->fields[1].offset,
								 o))) {
						json_decref(v);
						v = NULL;
					}
				}
			} else {
				v = json_array();
				for (size_t k = 0; v && k < n; k++)
					if (json_array_append_new(
						    v, encode_value(f, arr + k * sz, o))) {
						json_decref(v);
						v = NULL;
					}
			}
		} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
			if (!sub)
				continue;
			if ((o->flags & ENT_PBJSON_TIMES) && is_time_wrapper(f))
				v = encode_time(
					CMEMBER(int64_t, sub, sub->descriptor->fields[0].offset));
			else
				v = encode_message(sub, o);
		} else {
			if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
			    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    !CMEMBER(protobuf_c_boolean, m, f->quantifier_offset))
				continue;
			if ((o->flags & ENT_PBJSON_SKIP_DEFAULTS) &&
			    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && scalar_is_zero(f, p))
				continue;
			/* A value the caller's enum spelling has no name for is "not set". */
			if (f->type == PROTOBUF_C_TYPE_ENUM && o->enum_name &&
			    !o->enum_name(f->descriptor, *(const int *)p))
				continue;
			v = encode_value(f, p, o);
		}
		if (!v || json_object_set_new(obj, f->name, v)) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

/* One value of field \a f stored at \a p (an element for repeated fields). */
static json_t *encode_value(const ProtobufCFieldDescriptor *f, const void *p,
			    const struct ent_pbjson_opts *o)
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
		if (is_time_field(o, f))
			return encode_time(*(const int64_t *)p);
		return json_integer(*(const int64_t *)p);
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
		const char *name = o->enum_name ? o->enum_name(d, v) : NULL;
		if (name)
			return json_string(name);
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
		if (!ev)
			return json_integer(v);
		return json_string((o->flags & ENT_PBJSON_SHORT_ENUMS) ? ent_json_enum_short(d, v)
								       : ev->name);
	}
	case PROTOBUF_C_TYPE_STRING:
		return encode_string(*(const char *const *)p);
	case PROTOBUF_C_TYPE_BYTES:
		return encode_bytes((const ProtobufCBinaryData *)p);
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
		return m ? encode_message(m, o) : json_null();
	}
	}
	return json_null();
}

json_t *ent_json_pb_encode(const ProtobufCMessage *m, const struct ent_pbjson_opts *o)
{
	return encode_message(m, o);
}

json_t *ent_json_pbjson_encode(const ProtobufCMessage *m, unsigned flags)
{
	struct ent_pbjson_opts o = {.flags = flags};
	return encode_message(m, &o);
}

/* ---- decode --------------------------------------------------------------------------- */

struct dec {
	const struct ent_pbjson_opts *o;
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

static int dec_oom(struct dec *x)
{
	return ent_err_set(x->err, ENT_ENOMEM, "out of memory");
}

/* Append ".key" (or "key" at the top) to the path; \return the old length to pop back to. */
static size_t path_key(struct dec *x, const char *key)
{
	size_t plen = strlen(x->path);
	snprintf(x->path + plen, sizeof(x->path) - plen, "%s%s", plen ? "." : "", key);
	return plen;
}

/* Zeroed memory from the caller's allocator, freeable by protobuf_c_message_free_unpacked. */
static void *dalloc(struct dec *x, size_t n)
{
	const ProtobufCAllocator *a = x->o->alloc;
	void *p = a ? a->alloc(a->allocator_data, n ? n : 1) : malloc(n ? n : 1);
	if (p)
		memset(p, 0, n ? n : 1);
	return p;
}

static int decode_message(struct dec *x, const json_t *j, const ProtobufCMessageDescriptor *d,
			  ProtobufCMessage **out);

static bool get_int(const json_t *j, bool exact, int64_t *v)
{
	if (json_is_integer(j)) {
		*v = json_integer_value(j);
		return true;
	}
	if (exact)
		return false;
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
	}
	return false;
}

/* An instant: Unix ms, or RFC 3339 (and entctl's "now+1d" unless ENT_PBJSON_TIMES). */
static int decode_time(struct dec *x, const json_t *j, int64_t *v)
{
	bool doc = x->o->flags & ENT_PBJSON_TIMES;
	if (get_int(j, doc, v))
		return 0;
	if (!json_is_string(j))
		return dec_fail(x, "%s",
				doc ? "expected RFC 3339 time or Unix ms"
				    : "expected integer or time");
	const char *s = json_string_value(j);
	if (doc ? ent_time_parse(s, v) : ent_json_parse_time(s, v))
		return dec_fail(
			x, "bad time \"%.40s\" (expected RFC 3339, e.g. 2030-01-01T00:00:00Z)", s);
	return 0;
}

/* Store one JSON value into the slot \a p of field \a f (an element for repeated fields). */
static int decode_value(struct dec *x, const ProtobufCFieldDescriptor *f, const json_t *j, void *p)
{
	bool exact = x->o->flags & ENT_PBJSON_EXACT;
	int64_t iv;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (!get_int(j, exact, &iv) || iv < INT32_MIN || iv > INT32_MAX)
			return dec_fail(x, "expected 32-bit integer");
		*(int32_t *)p = (int32_t)iv;
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (!get_int(j, exact, &iv) || iv < 0 || iv > UINT32_MAX)
			return dec_fail(x, "expected unsigned 32-bit integer");
		*(uint32_t *)p = (uint32_t)iv;
		return 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (f->type == PROTOBUF_C_TYPE_INT64 && ent_json_is_time_name(f->name))
			return decode_time(x, j, (int64_t *)p);
		if (!get_int(j, exact, &iv))
			return dec_fail(x, "expected integer");
		*(int64_t *)p = iv;
		return 0;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (!get_int(j, exact, &iv) || iv < 0)
			return dec_fail(x, "expected unsigned integer");
		*(uint64_t *)p = (uint64_t)iv;
		return 0;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		double r;
		if (json_is_number(j))
			r = json_number_value(j);
		else if (!exact && json_is_string(j) && *json_string_value(j)) {
			char *end;
			r = strtod(json_string_value(j), &end);
			if (*end)
				return dec_fail(x, "expected number");
		} else
			return dec_fail(x, "expected number");
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
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		if (x->o->enum_parse) {
			char why[160];
			if (!json_is_string(j))
				return dec_fail(x, "expected string");
			if (x->o->enum_parse(ed, json_string_value(j), &v, why, sizeof(why)))
				return dec_fail(x, "%s", why);
		} else if (!enum_parse(ed, j, &v)) {
			return dec_fail(x, "unknown %s value", ed->name);
		}
		*(int *)p = v;
		return 0;
	}
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_is_string(j))
			return dec_fail(x, "expected string");
		size_t n = json_string_length(j);
		char *s = dalloc(x, n + 1);
		if (!s)
			return dec_oom(x);
		memcpy(s, json_string_value(j), n);
		*(char **)p = s;
		return 0;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		/* No API field is bytes; take the string's bytes as they are. */
		if (!json_is_string(j))
			return dec_fail(x, "expected string");
		ProtobufCBinaryData *b = p;
		b->len = json_string_length(j);
		b->data = dalloc(x, b->len);
		if (!b->data)
			return dec_oom(x);
		memcpy(b->data, json_string_value(j), b->len);
		return 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		if (is_time_wrapper(f)) {
			const ProtobufCMessageDescriptor *md = f->descriptor;
			ProtobufCMessage *w = dalloc(x, md->sizeof_message);
			if (!w)
				return dec_oom(x);
			md->message_init(w);
			*(ProtobufCMessage **)p = w;
			return decode_time(x, j, &MEMBER(int64_t, w, md->fields[0].offset));
		}
		return decode_message(x, j, f->descriptor, (ProtobufCMessage **)p);
	}
	return dec_fail(x, "unsupported field type");
}

static int decode_field(struct dec *x, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
			const json_t *j)
{
	size_t plen = path_key(x, f->name);
	int rc = 0;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t sz = elem_size(f->type);
		const ProtobufCMessageDescriptor *md = f->descriptor;
		bool map = f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(md);
		size_t n = map ? json_object_size(j) : json_array_size(j);
		if (map ? !json_is_object(j) : !json_is_array(j)) {
			rc = dec_fail(x, "%s", map ? "expected object" : "expected array");
			goto out;
		}
		/*
		 * The array is attached before its elements are filled, so a failure half-way
		 * leaves a message that free_unpacked can still free (elements are zeroed).
		 */
		void *arr = dalloc(x, n * sz);
		if (!arr) {
			rc = dec_oom(x);
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
				ProtobufCMessage *e = dalloc(x, md->sizeof_message);
				if (!e) {
					rc = dec_oom(x);
					MEMBER(size_t, m, f->quantifier_offset) = k;
					goto out;
				}
				md->message_init(e);
				((ProtobufCMessage **)arr)[k++] = e;
				size_t pk = path_key(x, key);
				json_t *jk = json_string(key);
				rc = jk ? decode_value(x, &md->fields[0], jk,
						       (char *)e + md->fields[0].offset)
					: dec_oom(x);
				json_decref(jk);
				if (!rc)
					rc = decode_value(x, &md->fields[1], val,
							  (char *)e + md->fields[1].offset);
				if (rc) {
					MEMBER(size_t, m, f->quantifier_offset) = k;
					goto out;
				}
				x->path[pk] = '\0';
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
	ProtobufCMessage *m = dalloc(x, d->sizeof_message);
	if (!m)
		return dec_oom(x);
	d->message_init(m);
	*out = m;
	if (is_wrapper(d))
		return decode_value(x, &d->fields[0], j, (char *)m + d->fields[0].offset);
	if (!json_is_object(j))
		return dec_fail(x, "expected object");

	/* "feature_code" and "featureCode" name the same field: refuse both at once. */
	uint64_t seen[4] = {0};
	bool exact = x->o->flags & ENT_PBJSON_EXACT;
	const char *key;
	const json_t *val;
	json_object_foreach((json_t *)j, key, val)
	{
		unsigned i = 0;
		while (i < d->n_fields &&
		       !(exact ? !strcmp(d->fields[i].name, key) : name_eq(d->fields[i].name, key)))
			i++;
		if (i == d->n_fields || (x->o->omit && x->o->omit(d, &d->fields[i]))) {
			path_key(x, key);
			return dec_fail(x, "unknown key");
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

int ent_json_pb_decode(const json_t *j, const ProtobufCMessageDescriptor *desc,
		       const struct ent_pbjson_opts *o, const char *path, ProtobufCMessage **out,
		       struct ent_err *err)
{
	struct dec x = {.o = o, .err = err};
	snprintf(x.path, sizeof(x.path), "%s", path ? path : "");
	*out = NULL;
	int rc = decode_message(&x, j, desc, out);
	if (rc) {
		/* Partially built, but always in a shape free_unpacked understands. */
		if (*out)
			protobuf_c_message_free_unpacked(*out, (ProtobufCAllocator *)o->alloc);
		*out = NULL;
	}
	return rc;
}

int ent_json_pbjson_decode(const json_t *j, const ProtobufCMessageDescriptor *desc,
			   ProtobufCMessage **out, struct ent_err *err)
{
	static const struct ent_pbjson_opts o = {0};
	return ent_json_pb_decode(j, desc, &o, NULL, out, err);
}
