/*
 * NATS object-store layout on plain JetStream calls (objstore.h has the layout). Everything here
 * is synchronous: chunks are published one by one with js_Publish, which costs one loopback
 * round trip per chunk (docs/fleet.md has the figures) but never mixes our acknowledgements
 * with those of another publisher sharing the jsCtx.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sync/objstore.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int ent_sync_objstore_b64url_encode(const void *in, size_t len, char *out, size_t cap)
{
	const uint8_t *p = in;
	size_t need = (len + 2) / 3 * 4;
	if (cap < need + 1)
		return -ENT_EINVAL;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64url[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64url[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

static int b64url_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int ent_sync_objstore_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	/* Padding is optional on input: strip it, then the remainder length must be valid. */
	while (len > 0 && in[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -ENT_EINVAL;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_val(in[i]);
		if (v < 0)
			return -ENT_EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -ENT_EINVAL;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover bits must be zero: otherwise two encodings would decode to the same bytes. */
	if (bits && (acc & ((1u << bits) - 1)))
		return -ENT_EINVAL;
	return (int)o;
}

bool ent_sync_objstore_bucket_valid(const char *bucket)
{
	size_t n = bucket ? strlen(bucket) : 0;
	if (n == 0 || n > ENT_OBJ_MAX_BUCKET)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)bucket[i]) && bucket[i] != '_' && bucket[i] != '-')
			return false;
	return true;
}

/* snprintf that fails instead of truncating. */
#define FMT(buf, cap, ...)                                                                         \
	({                                                                                         \
		int n_ = snprintf(buf, cap, __VA_ARGS__);                                          \
		n_ < 0 || (size_t)n_ >= (cap) ? -ENT_EINVAL : 0;                                   \
	})

int ent_sync_objstore_stream_name(const char *bucket, char *buf, size_t cap)
{
	if (!ent_sync_objstore_bucket_valid(bucket))
		return -ENT_EINVAL;
	return FMT(buf, cap, "OBJ_%s", bucket);
}

int ent_sync_objstore_meta_subject(const char *bucket, const char *name, char *buf, size_t cap)
{
	char enc[(ENT_OBJ_MAX_NAME + 2) / 3 * 4 + 1];
	if (!ent_sync_objstore_bucket_valid(bucket) || !name || !*name ||
	    strlen(name) > ENT_OBJ_MAX_NAME)
		return -ENT_EINVAL;
	if (ent_sync_objstore_b64url_encode(name, strlen(name), enc, sizeof(enc)) < 0)
		return -ENT_EINVAL;
	return FMT(buf, cap, "$O.%s.M.%s", bucket, enc);
}

int ent_sync_objstore_chunk_subject(const char *bucket, const char *nuid, char *buf, size_t cap)
{
	if (!ent_sync_objstore_bucket_valid(bucket) || !nuid || !*nuid || strpbrk(nuid, ". *>"))
		return -ENT_EINVAL;
	return FMT(buf, cap, "$O.%s.C.%s", bucket, nuid);
}

void ent_sync_objstore_digest_fmt(const uint8_t sha[32], char *out, size_t cap)
{
	size_t p = strlen(ENT_OBJ_DIGEST_PREFIX);
	if (cap < p + 45) {
		if (cap)
			*out = '\0';
		return;
	}
	memcpy(out, ENT_OBJ_DIGEST_PREFIX, p);
	ent_sync_objstore_b64url_encode(sha, 32, out + p, cap - p);
}

int ent_sync_objstore_digest_parse(const char *s, uint8_t sha[32])
{
	size_t p = strlen(ENT_OBJ_DIGEST_PREFIX);
	/* The algorithm name is matched case-insensitively: some clients write "sha-256=". */
	if (!s || strncasecmp(s, ENT_OBJ_DIGEST_PREFIX, p) != 0)
		return -ENT_EINVAL;
	uint8_t buf[48];
	int n = ent_sync_objstore_b64url_decode(s + p, strlen(s + p), buf, sizeof(buf));
	if (n != 32)
		return -ENT_EINVAL;
	memcpy(sha, buf, 32);
	return 0;
}

const char *ent_sync_objstore_header(const struct ent_obj_info *info, const char *key)
{
	for (int i = 0; i < info->n_headers; i++)
		if (!strcasecmp(info->headers[i].key, key))
			return info->headers[i].value;
	return NULL;
}

int ent_sync_objstore_header_set(struct ent_obj_info *info, const char *key, const char *value)
{
	if (!key || !*key || strlen(key) >= sizeof(info->headers[0].key) || !value ||
	    strlen(value) >= sizeof(info->headers[0].value))
		return -ENT_EINVAL;
	int i = 0;
	while (i < info->n_headers && strcasecmp(info->headers[i].key, key))
		i++;
	if (i == info->n_headers) {
		if (i == ENT_OBJ_MAX_HEADERS)
			return -ENT_EINVAL;
		info->n_headers++;
		/* A replaced header keeps the spelling it was first written with. */
		snprintf(info->headers[i].key, sizeof(info->headers[i].key), "%s", key);
	}
	snprintf(info->headers[i].value, sizeof(info->headers[i].value), "%s", value);
	return 0;
}

/* ---- ObjectInfo JSON --------------------------------------------------------------------------
 */

char *ent_sync_objstore_meta_encode(const struct ent_obj_info *info)
{
	char mtime[40];
	json_t *o = json_object();
	if (!o)
		return NULL;
	/* Field names and shapes are the layout's: Go clients unmarshal exactly these. */
	json_object_set_new(o, "name", json_string(info->name));
	if (info->description[0])
		json_object_set_new(o, "description", json_string(info->description));
	if (info->n_headers) {
		json_t *h = json_object();
		for (int i = 0; i < info->n_headers; i++) {
			json_t *vals = json_array();
			json_array_append_new(vals, json_string(info->headers[i].value));
			json_object_set_new(h, info->headers[i].key, vals);
		}
		json_object_set_new(o, "headers", h);
	}
	if (info->chunk_size) {
		json_t *opts = json_object();
		json_object_set_new(opts, "max_chunk_size", json_integer(info->chunk_size));
		json_object_set_new(o, "options", opts);
	}
	json_object_set_new(o, "bucket", json_string(info->bucket));
	json_object_set_new(o, "nuid", json_string(info->nuid));
	json_object_set_new(o, "size", json_integer((json_int_t)info->size));
	/* A Go reader rejects an mtime that is not RFC 3339, so one is always written. */
	json_object_set_new(o, "mtime",
			    json_string(ent_time_fmt(info->mtime_ms, mtime, sizeof(mtime))));
	json_object_set_new(o, "chunks", json_integer(info->chunks));
	if (info->digest[0])
		json_object_set_new(o, "digest", json_string(info->digest));
	if (info->deleted)
		json_object_set_new(o, "deleted", json_true());
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

static int copy_str(json_t *o, const char *key, char *dst, size_t cap, bool required,
		    struct ent_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		if (required)
			return ent_err_set(err, ENT_ECORRUPT, "object meta: '%s' missing", key);
		dst[0] = '\0';
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return ent_err_set(err, ENT_ECORRUPT,
				   "object meta: '%s' is not a string of < %zu "
				   "bytes",
				   key, cap);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *out, struct ent_err *err)
{
	json_t *v = json_object_get(o, key);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return ent_err_set(err, ENT_ECORRUPT,
				   "object meta: '%s' is not an integer in 0..%llu", key,
				   (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int ent_sync_objstore_meta_decode(const char *json, size_t len, struct ent_obj_info *info,
				  struct ent_err *err)
{
	memset(info, 0, sizeof(*info));
	json_error_t jerr;
	json_t *o = json_loadb(json, len, 0, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return ent_err_set(err, ENT_ECORRUPT, "object meta: not a JSON object (%s)",
				   o ? "other JSON type" : jerr.text);
	}
	uint64_t size, chunks, chunk_size = 0;
	int r = copy_str(o, "name", info->name, sizeof(info->name), true, err);
	if (!r)
		r = copy_str(o, "description", info->description, sizeof(info->description), false,
			     err);
	if (!r)
		r = copy_str(o, "bucket", info->bucket, sizeof(info->bucket), false, err);
	if (!r)
		r = copy_str(o, "nuid", info->nuid, sizeof(info->nuid), false, err);
	if (!r)
		r = copy_str(o, "digest", info->digest, sizeof(info->digest), false, err);
	if (!r)
		r = get_uint(o, "size", INT64_MAX, &size, err);
	if (!r)
		r = get_uint(o, "chunks", UINT32_MAX, &chunks, err);
	json_t *opts = json_object_get(o, "options");
	if (!r && opts && json_is_object(opts))
		r = get_uint(opts, "max_chunk_size", UINT32_MAX, &chunk_size, err);
	if (!r) {
		info->size = size;
		info->chunks = (uint32_t)chunks;
		info->chunk_size = (uint32_t)chunk_size;
		info->deleted = json_is_true(json_object_get(o, "deleted"));
		json_t *mt = json_object_get(o, "mtime");
		int64_t ms;
		if (json_is_string(mt) && !ent_time_parse(json_string_value(mt), &ms))
			info->mtime_ms = ms;
	}
	json_t *h = json_object_get(o, "headers");
	if (!r && h && json_is_object(h)) {
		const char *k;
		json_t *vals;
		json_object_foreach(h, k, vals)
		{
			json_t *v = json_is_array(vals) ? json_array_get(vals, 0) : vals;
			if (!json_is_string(v))
				continue;
			if (ent_sync_objstore_header_set(info, k, json_string_value(v))) {
				r = ent_err_set(err, ENT_ECORRUPT,
						"object meta: header '%.60s' too long or too many "
						"headers",
						k);
				break;
			}
		}
	}
	json_decref(o);
	return r;
}

/* ---- chunking ---------------------------------------------------------------------------------
 */

int ent_sync_objstore_chunk_fd(int fd, uint32_t chunk_size, ent_objstore_chunk_cb cb, void *ctx,
			       uint8_t sha[32], uint64_t *size, uint32_t *chunks,
			       struct ent_err *err)
{
	if (chunk_size == 0 || chunk_size > ENT_OBJ_MAX_CHUNK)
		return ent_err_set(err, ENT_EINVAL, "chunk size: must be 1..%d bytes",
				   ENT_OBJ_MAX_CHUNK);
	uint8_t *buf = malloc(chunk_size);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int r = 0;
	*size = 0;
	*chunks = 0;
	if (!buf || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		r = ent_err_set(err, ENT_ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		/* Fill a whole chunk before sending it: short reads must not shrink chunks. */
		size_t n = 0;
		while (n < chunk_size) {
			ssize_t got = pread(fd, buf + n, chunk_size - n, (off_t)*size + (off_t)n);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				r = ent_err_set(err, ENT_EIO, "reading the object: %s",
						strerror(errno));
				goto out;
			}
			if (got == 0)
				break;
			n += (size_t)got;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(md, buf, n);
		if ((r = cb(ctx, buf, n)))
			goto out;
		*size += n;
		if (++*chunks == UINT32_MAX) {
			r = ent_err_set(err, ENT_EINVAL, "object too large for its chunk size");
			goto out;
		}
		if (n < chunk_size)
			break;
	}
	unsigned int dl = 32;
	EVP_DigestFinal_ex(md, sha, &dl);
out:
	EVP_MD_CTX_free(md);
	free(buf);
	return r;
}

int ent_sync_objstore_nuid(char out[ENT_OBJ_NUID_LEN + 1])
{
	static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	uint8_t rnd[ENT_OBJ_NUID_LEN * 2];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -ENT_EIO;
	/* Rejection sampling keeps the characters uniform (248 = 4 * 62). */
	int o = 0;
	for (size_t i = 0; i < sizeof(rnd) && o < ENT_OBJ_NUID_LEN; i++)
		if (rnd[i] < 248)
			out[o++] = b62[rnd[i] % 62];
	while (o < ENT_OBJ_NUID_LEN) {
		uint8_t b;
		if (RAND_bytes(&b, 1) != 1)
			return -ENT_EIO;
		if (b < 248)
			out[o++] = b62[b % 62];
	}
	out[o] = '\0';
	return 0;
}

/* ---- JetStream --------------------------------------------------------------------------------
 */

int ent_sync_objstore_nats_err(natsStatus s, jsErrCode jerr, struct ent_err *err, const char *what)
{
	if (jerr == JSStreamNotFoundErr)
		return ent_err_set(err, ENT_ENOTFOUND, "%s: no such stream on the NATS server",
				   what);
	if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND)
		return ent_err_set(err, ENT_ENOTFOUND, "%s: not found", what);
	const char *last = nats_GetLastError(NULL);
	switch (s) {
	case NATS_TIMEOUT:
	case NATS_NO_RESPONDERS:
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NO_SERVER:
	case NATS_STALE_CONNECTION:
	case NATS_NOT_YET_CONNECTED:
		return ent_err_set(err, ENT_EUNAVAIL, "%s: NATS JetStream unavailable: %s%s%s",
				   what, natsStatus_GetText(s),
				   s == NATS_NO_RESPONDERS ? " (is JetStream enabled?)" : "", "");
	case NATS_NOT_PERMITTED:
		return ent_err_set(err, ENT_EAUTH, "%s: not permitted: %s", what,
				   last ? last : natsStatus_GetText(s));
	default:
		return ent_err_set(err, ENT_EUNAVAIL, "%s: %s (JetStream error %d)%s%s", what,
				   natsStatus_GetText(s), (int)jerr, last ? ": " : "",
				   last ? last : "");
	}
}

int ent_sync_objstore_ensure(jsCtx *js, const char *bucket, int replicas, struct ent_err *err)
{
	char stream[96], chunks[96], meta[96];
	if (!ent_sync_objstore_bucket_valid(bucket))
		return ent_err_set(err, ENT_EINVAL, "bucket: must be 1..64 of A-Z a-z 0-9 _ -");
	ent_sync_objstore_stream_name(bucket, stream, sizeof(stream));
	snprintf(chunks, sizeof(chunks), "$O.%s.C.>", bucket);
	snprintf(meta, sizeof(meta), "$O.%s.M.>", bucket);
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s == NATS_OK) {
		/* An existing bucket (ours or made by `nats object add`) is fine if it has the
		 * layout's subjects; its limits and replicas are the operator's business. */
		int found = 0;
		for (int i = 0; i < si->Config->SubjectsLen; i++)
			found += !strcmp(si->Config->Subjects[i], chunks) ||
				 !strcmp(si->Config->Subjects[i], meta);
		bool rollup = si->Config->AllowRollup;
		jsStreamInfo_Destroy(si);
		if (found != 2)
			return ent_err_set(err, ENT_EPRECOND,
					   "stream %s exists but its subjects are not the object "
					   "store's (%s, %s)",
					   stream, chunks, meta);
		if (!rollup)
			return ent_err_set(err, ENT_EPRECOND,
					   "stream %s exists but does not allow rollup (an object "
					   "store bucket must)",
					   stream);
		return 0;
	}
	if (jerr != JSStreamNotFoundErr && s != NATS_NOT_FOUND)
		return ent_sync_objstore_nats_err(s, jerr, err, stream);
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	const char *subjects[] = {chunks, meta};
	cfg.Name = stream;
	cfg.Description = "entd snapshots (NATS object store)";
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 2;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = replicas > 0 ? replicas : 1;
	cfg.MaxBytes = -1;
	cfg.Discard = js_DiscardNew;
	cfg.AllowRollup = true;
	cfg.AllowDirect = true;
	jerr = 0;
	s = js_AddStream(&si, js, &cfg, NULL, &jerr);
	if (si)
		jsStreamInfo_Destroy(si);
	/* Two publishers may race to create it: "already in use" with our config is success. */
	if (s != NATS_OK && jerr == JSStreamNameExistErr)
		return 0;
	if (s != NATS_OK)
		return ent_sync_objstore_nats_err(s, jerr, err, stream);
	return 0;
}

/*
 * Decode the newest meta message of \a name. -ENT_ENOTFOUND sets *no_bucket when the bucket's
 * stream itself is missing (a put must not create an object in a bucket nobody made).
 */
static int get_meta(jsCtx *js, const char *bucket, const char *name, struct ent_obj_info *info,
		    bool *no_bucket, struct ent_err *err)
{
	if (no_bucket)
		*no_bucket = false;
	char stream[96], subj[512];
	if (ent_sync_objstore_stream_name(bucket, stream, sizeof(stream)))
		return ent_err_set(err, ENT_EINVAL, "bucket: must be 1..64 of A-Z a-z 0-9 _ -");
	if (ent_sync_objstore_meta_subject(bucket, name, subj, sizeof(subj)))
		return ent_err_set(err, ENT_EINVAL, "object name: must be 1..%d bytes",
				   ENT_OBJ_MAX_NAME);
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetLastMsg(&m, js, stream, subj, NULL, &jerr);
	if (s != NATS_OK) {
		if (jerr == JSStreamNotFoundErr && no_bucket)
			*no_bucket = true;
		if (jerr == JSStreamNotFoundErr)
			return ent_err_set(err, ENT_ENOTFOUND,
					   "bucket '%s' does not exist (no stream %s on the NATS "
					   "server)",
					   bucket, stream);
		if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND)
			return ent_err_set(err, ENT_ENOTFOUND, "bucket '%s' has no object '%s'",
					   bucket, name);
		return ent_sync_objstore_nats_err(s, jerr, err, stream);
	}
	int r = ent_sync_objstore_meta_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
					      info, err);
	int64_t t = natsMsg_GetTime(m);
	if (!r && t > 0)
		info->mtime_ms = t / 1000000;
	natsMsg_Destroy(m);
	return r;
}

int ent_sync_objstore_info(jsCtx *js, const char *bucket, const char *name,
			   struct ent_obj_info *info, struct ent_err *err)
{
	int r = get_meta(js, bucket, name, info, NULL, err);
	if (!r && info->deleted)
		return ent_err_set(err, ENT_ENOTFOUND, "object '%s' in bucket '%s' is deleted",
				   name, bucket);
	return r;
}

static int purge_subject(jsCtx *js, const char *stream, const char *subject, struct ent_err *err)
{
	jsOptions o;
	jsOptions_Init(&o);
	o.Stream.Purge.Subject = subject;
	jsErrCode jerr = 0;
	natsStatus s = js_PurgeStream(js, stream, &o, &jerr);
	return s == NATS_OK ? 0 : ent_sync_objstore_nats_err(s, jerr, err, subject);
}

struct put_ctx {
	jsCtx *js;
	const char *subject;
	const char *stream;
	struct ent_err *err;
};

static int put_chunk(void *ctx, const uint8_t *data, size_t len)
{
	struct put_ctx *p = ctx;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	/* ExpectStream makes a chunk that would land in some other stream fail instead. */
	po.ExpectStream = p->stream;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_Publish(&ack, p->js, p->subject, data, (int)len, &po, &jerr);
	jsPubAck_Destroy(ack);
	return s == NATS_OK ? 0 : ent_sync_objstore_nats_err(s, jerr, p->err, "publishing a chunk");
}

int ent_sync_objstore_put_fd(jsCtx *js, const char *bucket, int fd, uint32_t chunk_size,
			     struct ent_obj_info *info, struct ent_err *err)
{
	char stream[96], csubj[128], msubj[512];
	if (!chunk_size)
		chunk_size = ENT_OBJ_DEFAULT_CHUNK;
	if (chunk_size > ENT_OBJ_MAX_CHUNK)
		return ent_err_set(err, ENT_EINVAL, "chunk size: at most %d bytes",
				   ENT_OBJ_MAX_CHUNK);
	if (ent_sync_objstore_stream_name(bucket, stream, sizeof(stream)))
		return ent_err_set(err, ENT_EINVAL, "bucket: must be 1..64 of A-Z a-z 0-9 _ -");
	if (ent_sync_objstore_meta_subject(bucket, info->name, msubj, sizeof(msubj)))
		return ent_err_set(err, ENT_EINVAL, "object name: must be 1..%d bytes",
				   ENT_OBJ_MAX_NAME);

	/* The version being replaced, whose chunks are purged once the new meta is in. */
	struct ent_obj_info old;
	struct ent_err gerr = {0};
	bool no_bucket;
	int r = get_meta(js, bucket, info->name, &old, &no_bucket, &gerr);
	bool have_old = r == 0 && !old.deleted && old.nuid[0];
	if ((r && r != -ENT_ENOTFOUND && r != -ENT_ECORRUPT) || no_bucket) {
		*err = gerr;
		return r;
	}

	if (ent_sync_objstore_nuid(info->nuid))
		return ent_err_set(err, ENT_EIO, "no random bytes for the object's nuid");
	snprintf(info->bucket, sizeof(info->bucket), "%s", bucket);
	ent_sync_objstore_chunk_subject(bucket, info->nuid, csubj, sizeof(csubj));
	struct put_ctx pc = {js, csubj, stream, err};
	uint8_t sha[32];
	uint64_t size;
	uint32_t chunks;
	r = ent_sync_objstore_chunk_fd(fd, chunk_size, put_chunk, &pc, sha, &size, &chunks, err);
	if (r) {
		struct ent_err ignored;
		purge_subject(js, stream, csubj, &ignored);
		return r;
	}
	info->size = size;
	info->chunks = chunks;
	info->chunk_size = chunk_size;
	info->deleted = false;
	info->mtime_ms = ent_time_now_ms();
	ent_sync_objstore_digest_fmt(sha, info->digest, sizeof(info->digest));

	char *json = ent_sync_objstore_meta_encode(info);
	natsMsg *m = NULL;
	if (!json || natsMsg_Create(&m, msubj, NULL, json, (int)strlen(json)) != NATS_OK ||
	    natsMsgHeader_Set(m, "Nats-Rollup", "sub") != NATS_OK) {
		free(json);
		natsMsg_Destroy(m);
		struct ent_err ignored;
		purge_subject(js, stream, csubj, &ignored);
		return ent_err_set(err, ENT_ENOMEM, "out of memory");
	}
	free(json);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.ExpectStream = stream;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_PublishMsg(&ack, js, m, &po, &jerr);
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	if (s != NATS_OK) {
		r = ent_sync_objstore_nats_err(s, jerr, err, "publishing the object's meta");
		struct ent_err ignored;
		purge_subject(js, stream, csubj, &ignored);
		return r;
	}
	/* The new version is visible; the old chunks are garbage now. A failed purge leaves
	 * them behind (reported, not fatal: the object itself is complete). */
	if (have_old && strcmp(old.nuid, info->nuid)) {
		char osubj[128];
		if (!ent_sync_objstore_chunk_subject(bucket, old.nuid, osubj, sizeof(osubj))) {
			struct ent_err perr = {0};
			if (purge_subject(js, stream, osubj, &perr))
				ent_log(ENT_LOG_WARN, "object store: old chunks not purged",
					"subject", osubj, "error", perr.msg, NULL);
		}
	}
	return 0;
}

/* Is this message a JetStream control message (heartbeat, flow control)? */
static bool is_control(natsMsg *m)
{
	const char *st = NULL;
	return natsMsgHeader_Get(m, "Status", &st) == NATS_OK && st;
}

int ent_sync_objstore_get_fd(jsCtx *js, const char *bucket, const char *name, int fd, int idle_ms,
			     struct ent_obj_info *info, struct ent_err *err)
{
	int r = ent_sync_objstore_info(js, bucket, name, info, err);
	if (r)
		return r;
	uint8_t want[32], got[32];
	if (ent_sync_objstore_digest_parse(info->digest, want))
		return ent_err_set(err, ENT_ECORRUPT, "object '%s': digest '%.60s' is not SHA-256",
				   name, info->digest);
	char stream[96], csubj[128];
	ent_sync_objstore_stream_name(bucket, stream, sizeof(stream));
	if (ent_sync_objstore_chunk_subject(bucket, info->nuid, csubj, sizeof(csubj)))
		return ent_err_set(err, ENT_ECORRUPT, "object '%s': bad nuid '%.60s'", name,
				   info->nuid);
	if (idle_ms <= 0)
		idle_ms = 30000;

	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return ent_err_set(err, ENT_ENOMEM, "out of memory");
	}
	natsSubscription *sub = NULL;
	uint64_t total = 0;
	uint32_t n = 0;
	if (info->chunks > 0) {
		/* An ordered consumer: an ephemeral, flow-controlled push consumer that the client
		 * recreates from the last sequence seen if a message goes missing. */
		jsSubOptions so;
		jsSubOptions_Init(&so);
		so.Stream = stream;
		so.Ordered = true;
		jsErrCode jerr = 0;
		natsStatus s = js_SubscribeSync(&sub, js, csubj, NULL, &so, &jerr);
		if (s != NATS_OK) {
			r = ent_sync_objstore_nats_err(s, jerr, err, csubj);
			goto out;
		}
		/* The library queues whole chunks: allow a good number in flight. */
		natsSubscription_SetPendingLimits(sub, 4096, 512 * 1024 * 1024);
	}
	while (n < info->chunks) {
		natsMsg *m = NULL;
		natsStatus s = natsSubscription_NextMsg(&m, sub, idle_ms);
		if (s == NATS_TIMEOUT) {
			r = ent_err_set(err, ENT_EUNAVAIL,
					"object '%s': chunk %u of %u did not arrive within %d ms "
					"(purged by a newer version, or the server is unreachable)",
					name, n + 1, info->chunks, idle_ms);
			goto out;
		}
		if (s != NATS_OK) {
			r = ent_sync_objstore_nats_err(s, 0, err, csubj);
			goto out;
		}
		if (is_control(m)) {
			natsMsg_Destroy(m);
			continue;
		}
		int len = natsMsg_GetDataLength(m);
		const char *data = natsMsg_GetData(m);
		if (strcmp(natsMsg_GetSubject(m), csubj) || total + (uint64_t)len > info->size) {
			natsMsg_Destroy(m);
			r = ent_err_set(err, ENT_ECORRUPT,
					"object '%s': chunk %u does not fit the meta (subject or "
					"size)",
					name, n + 1);
			goto out;
		}
		EVP_DigestUpdate(md, data, (size_t)len);
		for (int off = 0; off < len;) {
			ssize_t w = write(fd, data + off, (size_t)(len - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				r = ent_err_set(err, ENT_EIO, "writing object '%s': %s", name,
						strerror(errno));
				natsMsg_Destroy(m);
				goto out;
			}
			off += (int)w;
		}
		total += (uint64_t)len;
		n++;
		natsMsg_Destroy(m);
	}
	unsigned int dl = 32;
	EVP_DigestFinal_ex(md, got, &dl);
	if (total != info->size)
		r = ent_err_set(err, ENT_ECORRUPT,
				"object '%s': %llu bytes received, meta says %llu", name,
				(unsigned long long)total, (unsigned long long)info->size);
	else if (memcmp(got, want, 32))
		r = ent_err_set(err, ENT_ECORRUPT,
				"object '%s': SHA-256 digest mismatch (the bytes received are not "
				"the object's; refused)",
				name);
out:
	if (sub) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	EVP_MD_CTX_free(md);
	return r;
}

int ent_sync_objstore_delete(jsCtx *js, const char *bucket, const char *name, struct ent_err *err)
{
	struct ent_obj_info info;
	int r = ent_sync_objstore_info(js, bucket, name, &info, err);
	if (r)
		return r;
	char stream[96], msubj[512], csubj[128];
	ent_sync_objstore_stream_name(bucket, stream, sizeof(stream));
	ent_sync_objstore_meta_subject(bucket, name, msubj, sizeof(msubj));
	char old_nuid[64];
	snprintf(old_nuid, sizeof(old_nuid), "%s", info.nuid);
	info.deleted = true;
	info.size = 0;
	info.chunks = 0;
	info.digest[0] = '\0';
	info.mtime_ms = ent_time_now_ms();
	char *json = ent_sync_objstore_meta_encode(&info);
	natsMsg *m = NULL;
	if (!json || natsMsg_Create(&m, msubj, NULL, json, (int)strlen(json)) != NATS_OK ||
	    natsMsgHeader_Set(m, "Nats-Rollup", "sub") != NATS_OK) {
		free(json);
		natsMsg_Destroy(m);
		return ent_err_set(err, ENT_ENOMEM, "out of memory");
	}
	free(json);
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_PublishMsg(&ack, js, m, NULL, &jerr);
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	if (s != NATS_OK)
		return ent_sync_objstore_nats_err(s, jerr, err, "publishing the delete marker");
	if (!ent_sync_objstore_chunk_subject(bucket, old_nuid, csubj, sizeof(csubj)))
		return purge_subject(js, stream, csubj, err);
	return 0;
}
