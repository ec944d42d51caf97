/*
 * Wire-level string checks (see pbcheck.h). The walk follows the protobuf encoding: a varint
 * tag (field number << 3 | wire type), then the value by wire type. Only length-delimited
 * fields can be strings or sub-messages; everything else is skipped. The path of the field
 * being looked at is kept in a small stack buffer so an error can name it.
 */
#include <stdio.h>
#include <string.h>

#include "ent/pbcheck.h"

#define MAX_DEPTH 32 /* deeper than any entd message; hostile nesting stops here */

struct walk {
	char path[192];
	size_t path_len;
	struct ent_err *err;
};

bool ent_pb_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false; /* a continuation byte, or 0xf8..0xff */
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -1;
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* Append ".name" or "[i]" to the path; returns the old length to restore. */
static size_t path_push(struct walk *w, const char *name, int index)
{
	size_t old = w->path_len;
	int n;
	if (name)
		n = snprintf(w->path + old, sizeof(w->path) - old, "%s%s", old ? "." : "", name);
	else
		n = snprintf(w->path + old, sizeof(w->path) - old, "[%d]", index);
	if (n > 0)
		w->path_len =
			old + (size_t)n < sizeof(w->path) ? old + (size_t)n : sizeof(w->path) - 1;
	return old;
}

static void path_pop(struct walk *w, size_t old)
{
	w->path_len = old;
	w->path[old] = '\0';
}

static int malformed(struct walk *w)
{
	return ent_err_set(w->err, ENT_EINVAL, "malformed request");
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *desc, const uint8_t *p,
			const uint8_t *end, int depth)
{
	/* Occurrence counters give repeated fields their index in the path. */
	uint32_t seen[64] = {0};
	if (depth > MAX_DEPTH)
		return malformed(w);
	while (p < end) {
		uint64_t tag, len;
		if (read_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
			return malformed(w);
		switch (tag & 7) {
		case 0:
			if (read_varint(&p, end, &len))
				return malformed(w);
			continue;
		case 1:
			if (end - p < 8)
				return malformed(w);
			p += 8;
			continue;
		case 5:
			if (end - p < 4)
				return malformed(w);
			p += 4;
			continue;
		case 2:
			break;
		default:
			return malformed(
				w); /* groups (3, 4) are not used by proto3; 6, 7 invalid */
		}
		if (read_varint(&p, end, &len) || len > (uint64_t)(end - p))
			return malformed(w);
		const uint8_t *val = p;
		p += len;
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
		if (!f || (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE))
			continue;
		size_t at = (size_t)(f - desc->fields);
		size_t old = path_push(w, f->name, 0);
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			path_push(w, NULL, at < 64 ? (int)seen[at]++ : 0);
		int rc = 0;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			rc = walk_message(w, f->descriptor, val, val + len, depth + 1);
		} else if (memchr(val, 0, len)) {
			rc = ent_err_set(w->err, ENT_EINVAL, "%s: contains a NUL byte", w->path);
		} else if (!ent_pb_utf8_valid(val, len)) {
			rc = ent_err_set(w->err, ENT_EINVAL, "%s: not valid UTF-8", w->path);
		}
		if (rc)
			return rc;
		path_pop(w, old);
	}
	return p == end ? 0 : malformed(w);
}

int ent_pb_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
			 struct ent_err *err)
{
	struct walk w = {.err = err};
	w.path[0] = '\0';
	return walk_message(&w, desc, buf, buf + len, 0);
}

void ent_pb_drop_unknown(ProtobufCMessage *m)
{
	if (!m)
		return;
	m->n_unknown_fields = 0;
	m->unknown_fields = NULL;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	char *base = (char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(size_t *)(base + f->quantifier_offset);
			ProtobufCMessage **v = *(ProtobufCMessage ***)(base + f->offset);
			for (size_t j = 0; j < n && v; j++)
				ent_pb_drop_unknown(v[j]);
			continue;
		}
		/* A oneof member is only there when the case names it. */
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		ent_pb_drop_unknown(*(ProtobufCMessage **)(base + f->offset));
	}
}
