/*
 * The pure parts of the NATS object-store client (src/sync/objstore.c): base64url as the
 * layout uses it (Go's base64.URLEncoding: URL alphabet, padded), subjects and digests, the
 * ObjectInfo JSON both ways (including a meta written by the Go reference client), chunking
 * of a file with its SHA-256, and the nuid shape. No NATS server here: the wire side is proven
 * in tests/integration/fleet/test_snapshot.py against a real nats-server and nats.go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "sync/objstore.h"

static void test_b64url_vectors(void **state)
{
	/* RFC 4648 section 10 vectors; the URL alphabet only differs in '-' and '_'. */
	static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	char buf[64];
	uint8_t dec[64];
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		int n = ent_sync_objstore_b64url_encode(in[i], strlen(in[i]), buf, sizeof(buf));
		assert_int_equal(n, strlen(out[i]));
		assert_string_equal(buf, out[i]);
		n = ent_sync_objstore_b64url_decode(out[i], strlen(out[i]), dec, sizeof(dec));
		assert_int_equal(n, strlen(in[i]));
		assert_memory_equal(dec, in[i], (size_t)n);
	}
	const uint8_t hi[] = {0xfb, 0xff};
	assert_int_equal(ent_sync_objstore_b64url_encode(hi, 2, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "-_8=");
	/* Unpadded input decodes too (some clients strip padding). */
	assert_int_equal(ent_sync_objstore_b64url_decode("-_8", 3, dec, sizeof(dec)), 2);
	assert_memory_equal(dec, hi, 2);
}

static void test_b64url_refuses(void **state)
{
	char buf[8];
	uint8_t dec[8];
	/* Output buffer one byte short of the NUL. */
	assert_int_equal(ent_sync_objstore_b64url_encode("foo", 3, buf, 4), -ENT_EINVAL);
	assert_int_equal(ent_sync_objstore_b64url_encode("foo", 3, buf, 5), 4);
	/* The standard alphabet's '+' and '/' are not the URL alphabet. */
	assert_int_equal(ent_sync_objstore_b64url_decode("+/8=", 4, dec, sizeof(dec)), -ENT_EINVAL);
	/* A length of 4k+1 symbols cannot be base64. */
	assert_int_equal(ent_sync_objstore_b64url_decode("Zm9vY", 5, dec, sizeof(dec)),
			 -ENT_EINVAL);
	/* Non-zero leftover bits: "Zh==" would also decode to "f". */
	assert_int_equal(ent_sync_objstore_b64url_decode("Zh==", 4, dec, sizeof(dec)), -ENT_EINVAL);
	/* Too small an output. */
	assert_int_equal(ent_sync_objstore_b64url_decode("Zm9vYmFy", 8, dec, 5), -ENT_EINVAL);
}

static void test_subjects(void **state)
{
	char buf[256];
	assert_int_equal(ent_sync_objstore_stream_name("entd_snapshots", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "OBJ_entd_snapshots");
	/* base64.URLEncoding.EncodeToString([]byte("snapshot")) in Go. */
	assert_int_equal(ent_sync_objstore_meta_subject("b-1", "snapshot", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "$O.b-1.M.c25hcHNob3Q=");
	/* Names with dots or spaces stay one subject token thanks to the encoding. */
	assert_int_equal(ent_sync_objstore_meta_subject("b", "a.b c", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "$O.b.M.YS5iIGM=");
	assert_int_equal(ent_sync_objstore_chunk_subject("b", "abcDEF123", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "$O.b.C.abcDEF123");

	assert_int_equal(ent_sync_objstore_chunk_subject("b", "a.b", buf, sizeof(buf)),
			 -ENT_EINVAL);
	assert_int_equal(ent_sync_objstore_chunk_subject("b", "*", buf, sizeof(buf)), -ENT_EINVAL);
	assert_int_equal(ent_sync_objstore_meta_subject("b", "", buf, sizeof(buf)), -ENT_EINVAL);
	assert_int_equal(ent_sync_objstore_meta_subject("b", "snapshot", buf, 10), -ENT_EINVAL);
	assert_false(ent_sync_objstore_bucket_valid(""));
	assert_false(ent_sync_objstore_bucket_valid("a.b"));
	assert_false(ent_sync_objstore_bucket_valid("a b"));
	assert_false(ent_sync_objstore_bucket_valid("a>"));
	assert_true(ent_sync_objstore_bucket_valid("Entd_snap-1"));
	char longname[70];
	memset(longname, 'x', 65);
	longname[65] = '\0';
	assert_false(ent_sync_objstore_bucket_valid(longname));
	longname[64] = '\0';
	assert_true(ent_sync_objstore_bucket_valid(longname));
}

static void test_digest(void **state)
{
	uint8_t sha[32], back[32];
	char d[80];
	SHA256((const unsigned char *)"", 0, sha);
	ent_sync_objstore_digest_fmt(sha, d, sizeof(d));
	/* The SHA-256 of nothing, as Go's object store writes it. */
	assert_string_equal(d, "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=");
	assert_int_equal(ent_sync_objstore_digest_parse(d, back), 0);
	assert_memory_equal(sha, back, 32);
	assert_int_equal(ent_sync_objstore_digest_parse(
				 "sha-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU", back),
			 0);
	assert_int_equal(ent_sync_objstore_digest_parse("SHA-1=47DEQpj8HBSa", back), -ENT_EINVAL);
	assert_int_equal(ent_sync_objstore_digest_parse("SHA-256=Zm9v", back), -ENT_EINVAL);
	assert_int_equal(ent_sync_objstore_digest_parse(NULL, back), -ENT_EINVAL);
}

static void test_meta_round_trip(void **state)
{
	struct ent_obj_info in, out;
	memset(&in, 0, sizeof(in));
	strcpy(in.name, "snapshot");
	strcpy(in.description, "entd snapshot");
	strcpy(in.bucket, "entd_snapshots");
	strcpy(in.nuid, "lxxJzVkiMbReOYluL0f7VL");
	in.size = 7798784;
	in.chunks = 30;
	in.chunk_size = 262144;
	in.mtime_ms = 1796652856825;
	strcpy(in.digest, "SHA-256=aSNE5ImhxQu8bpz9n8aHyqTkTs9DH-aI-pCbsOB-g5M=");
	assert_int_equal(ent_sync_objstore_header_set(&in, "Ent-Stream-Seq", "2626"), 0);
	assert_int_equal(ent_sync_objstore_header_set(&in, "Ent-Stream", "ENTD_EVENTS/17"), 0);
	/* Setting again replaces, case-insensitively (NATS header names are). */
	assert_int_equal(ent_sync_objstore_header_set(&in, "ent-stream-seq", "2627"), 0);
	assert_int_equal(in.n_headers, 2);

	char *json = ent_sync_objstore_meta_encode(&in);
	assert_non_null(json);
	/* The layout's field names and shapes, which a Go client unmarshals. */
	assert_non_null(strstr(json, "\"name\":\"snapshot\""));
	assert_non_null(strstr(json, "\"options\":{\"max_chunk_size\":262144}"));
	assert_non_null(strstr(json, "\"nuid\":\"lxxJzVkiMbReOYluL0f7VL\""));
	assert_non_null(strstr(json, "\"size\":7798784"));
	assert_non_null(strstr(json, "\"chunks\":30"));
	assert_non_null(strstr(json, "\"mtime\":\"2026-"));
	assert_non_null(strstr(json, "\"Ent-Stream-Seq\":[\"2627\"]"));
	assert_null(strstr(json, "\"deleted\""));

	struct ent_err err = {0};
	assert_int_equal(ent_sync_objstore_meta_decode(json, strlen(json), &out, &err), 0);
	free(json);
	assert_string_equal(out.name, in.name);
	assert_string_equal(out.description, in.description);
	assert_string_equal(out.bucket, in.bucket);
	assert_string_equal(out.nuid, in.nuid);
	assert_string_equal(out.digest, in.digest);
	assert_int_equal(out.size, in.size);
	assert_int_equal(out.chunks, in.chunks);
	assert_int_equal(out.chunk_size, in.chunk_size);
	assert_int_equal(out.mtime_ms, in.mtime_ms);
	assert_false(out.deleted);
	assert_string_equal(ent_sync_objstore_header(&out, "ENT-STREAM-SEQ"), "2627");
	assert_string_equal(ent_sync_objstore_header(&out, "Ent-Stream"), "ENTD_EVENTS/17");
	assert_null(ent_sync_objstore_header(&out, "Ent-Schema"));

	in.deleted = true;
	json = ent_sync_objstore_meta_encode(&in);
	assert_non_null(strstr(json, "\"deleted\":true"));
	assert_int_equal(ent_sync_objstore_meta_decode(json, strlen(json), &out, &err), 0);
	assert_true(out.deleted);
	free(json);
}

static void test_meta_from_go(void **state)
{
	/* What nats.go 1.22 (ObjectStore.Put) stores: nanosecond mtime, several header values,
	 * an unknown field from a newer client. */
	const char *go = "{\"name\":\"blob\",\"headers\":{\"Ent-Stream-Seq\":[\"7\",\"8\"],"
			 "\"Ent-Stream\":[\"x/1\"]},\"options\":{\"max_chunk_size\":131072},"
			 "\"bucket\":\"gob\",\"nuid\":\"wY2tJUFqK5yZfSb4ZiW1dC\",\"size\":3000000,"
			 "\"mtime\":\"2026-12-07T14:14:16.825795371Z\",\"chunks\":23,"
			 "\"digest\":\"SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=\","
			 "\"metadata\":{\"k\":\"v\"}}";
	struct ent_obj_info o;
	struct ent_err err = {0};
	assert_int_equal(ent_sync_objstore_meta_decode(go, strlen(go), &o, &err), 0);
	assert_string_equal(o.name, "blob");
	assert_int_equal(o.size, 3000000);
	assert_int_equal(o.chunks, 23);
	assert_int_equal(o.chunk_size, 131072);
	assert_string_equal(ent_sync_objstore_header(&o, "Ent-Stream-Seq"), "7");
	assert_int_equal(o.mtime_ms % 1000, 825);
	uint8_t sha[32];
	assert_int_equal(ent_sync_objstore_digest_parse(o.digest, sha), 0);
}

static void test_meta_hostile(void **state)
{
	static const char *bad[] = {
		"",
		"[]",
		"{",
		"{\"size\":1}",				  /* no name */
		"{\"name\":7}",				  /* name not a string */
		"{\"name\":\"a\",\"size\":-1}",		  /* negative size */
		"{\"name\":\"a\",\"size\":1.5}",	  /* not an integer */
		"{\"name\":\"a\",\"chunks\":4294967296}", /* chunks > u32 */
		"{\"name\":\"a\",\"nuid\":{}}",		  /* nuid not a string */
		"{\"name\":\"a\",\"options\":{\"max_chunk_size\":-5}}",
	};
	struct ent_obj_info o;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ent_err err = {0};
		assert_int_equal(ent_sync_objstore_meta_decode(bad[i], strlen(bad[i]), &o, &err),
				 -ENT_ECORRUPT);
		assert_int_equal(err.code, ENT_ECORRUPT);
		assert_true(strlen(err.msg) > 0);
	}
	/* More headers than fit are refused, not silently dropped. */
	char many[1024] = "{\"name\":\"a\",\"headers\":{";
	for (int i = 0; i < ENT_OBJ_MAX_HEADERS + 1; i++)
		sprintf(many + strlen(many), "%s\"H%d\":[\"v\"]", i ? "," : "", i);
	strcat(many, "}}");
	struct ent_err err = {0};
	assert_int_equal(ent_sync_objstore_meta_decode(many, strlen(many), &o, &err),
			 -ENT_ECORRUPT);
	/* A name longer than the limit is refused (it cannot be a subject token we made). */
	char longname[400] = "{\"name\":\"";
	memset(longname + strlen(longname), 'n', 300);
	strcat(longname, "\"}");
	assert_int_equal(ent_sync_objstore_meta_decode(longname, strlen(longname), &o, &err),
			 -ENT_ECORRUPT);
}

struct collect {
	uint8_t *buf;
	size_t len;
	uint32_t calls;
	size_t sizes[16];
	uint32_t fail_at; /* 0: never */
};

static int collect_cb(void *ctx, const uint8_t *data, size_t len)
{
	struct collect *c = ctx;
	if (c->fail_at && c->calls + 1 == c->fail_at)
		return -ENT_EUNAVAIL;
	memcpy(c->buf + c->len, data, len);
	c->len += len;
	if (c->calls < 16)
		c->sizes[c->calls] = len;
	c->calls++;
	return 0;
}

static void test_chunking(void **state)
{
	const uint32_t cs = 1000;
	static const size_t sizes[] = {0, 1, 999, 1000, 1001, 3007};
	uint8_t *data = malloc(4000), *got = malloc(4000);
	for (int i = 0; i < 4000; i++)
		data[i] = (uint8_t)(i * 131 + 7);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		char path[] = "/tmp/test_objstore_XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(write(fd, data, sizes[k]), (ssize_t)sizes[k]);
		struct collect c = {.buf = got};
		uint8_t sha[32], want[32];
		uint64_t size;
		uint32_t chunks;
		struct ent_err err = {0};
		assert_int_equal(ent_sync_objstore_chunk_fd(fd, cs, collect_cb, &c, sha, &size,
							    &chunks, &err),
				 0);
		assert_int_equal(size, sizes[k]);
		assert_int_equal(chunks, (sizes[k] + cs - 1) / cs);
		assert_int_equal(c.calls, chunks);
		for (uint32_t i = 0; i + 1 < chunks; i++)
			assert_int_equal(c.sizes[i], cs);
		if (chunks)
			assert_int_equal(c.sizes[chunks - 1], sizes[k] - (size_t)(chunks - 1) * cs);
		assert_int_equal(c.len, sizes[k]);
		if (sizes[k])
			assert_memory_equal(got, data, sizes[k]);
		SHA256(data, sizes[k], want);
		assert_memory_equal(sha, want, 32);

		/* A callback error stops the chunking and comes back unchanged. */
		if (chunks >= 2) {
			struct collect f = {.buf = got, .fail_at = 2};
			assert_int_equal(ent_sync_objstore_chunk_fd(fd, cs, collect_cb, &f, sha,
								    &size, &chunks, &err),
					 -ENT_EUNAVAIL);
			assert_int_equal(f.calls, 1);
		}
		close(fd);
	}
	struct ent_err err = {0};
	uint8_t sha[32];
	uint64_t size;
	uint32_t chunks;
	assert_int_equal(
		ent_sync_objstore_chunk_fd(0, 0, collect_cb, NULL, sha, &size, &chunks, &err),
		-ENT_EINVAL);
	assert_int_equal(
		ent_sync_objstore_chunk_fd(-1, cs, collect_cb, NULL, sha, &size, &chunks, &err),
		-ENT_EIO);
	free(data);
	free(got);
}

static void test_nuid(void **state)
{
	char a[ENT_OBJ_NUID_LEN + 1], b[ENT_OBJ_NUID_LEN + 1];
	assert_int_equal(ent_sync_objstore_nuid(a), 0);
	assert_int_equal(ent_sync_objstore_nuid(b), 0);
	assert_int_equal(strlen(a), ENT_OBJ_NUID_LEN);
	assert_string_not_equal(a, b);
	for (int i = 0; i < ENT_OBJ_NUID_LEN; i++)
		assert_true((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'A' && a[i] <= 'Z') ||
			    (a[i] >= 'a' && a[i] <= 'z'));
	char subj[128];
	assert_int_equal(ent_sync_objstore_chunk_subject("b", a, subj, sizeof(subj)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64url_vectors),
		cmocka_unit_test(test_b64url_refuses),
		cmocka_unit_test(test_subjects),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_meta_round_trip),
		cmocka_unit_test(test_meta_from_go),
		cmocka_unit_test(test_meta_hostile),
		cmocka_unit_test(test_chunking),
		cmocka_unit_test(test_nuid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
