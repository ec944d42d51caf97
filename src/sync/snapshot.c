/*
 * Snapshots of a replica's LMDB database as objects in a NATS object-store bucket. The stream
 * position is read from the compact copy itself, not from the live store, so the headers and
 * the bytes uploaded can never disagree, whatever the writer commits meanwhile.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/objstore.h"
#include "sync/snapshot.h"

#define HDR_SEQ	   "Ent-Stream-Seq"
#define HDR_STREAM "Ent-Stream"
#define HDR_SCHEMA "Ent-Schema"

static uint64_t le_get(const char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | (uint8_t)p[i];
	return v;
}

/* Meta "seq", "fleet_stream" and "schema" of the database at \a dir (opened read-only). */
static int read_copy_meta(const char *dir, uint64_t *seq, char *stream, size_t cap,
			  uint64_t *schema, struct ent_err *err)
{
	struct ent_store *st;
	struct ent_view *v;
	struct ent_store_opts so = {.path = dir, .read_only = true};
	int r = ent_store_open(&so, &st, err);
	if (r)
		return r;
	*seq = 0;
	*schema = 0;
	stream[0] = '\0';
	if (!(r = ent_view_new(st, &v))) {
		if (!(r = ent_view_begin(v))) {
			struct ent_str val;
			if (!ent_view_get(v, ENT_T_META, ENT_STR_LIT("seq"), &val)) {
				if (val.len == 8)
					*seq = le_get(val.p, 8);
				else
					r = ent_err_set(err, ENT_ECORRUPT,
							"%s: meta 'seq' is %u bytes, not 8", dir,
							val.len);
			}
			if (!r && !ent_view_get(v, ENT_T_META, ENT_STR_LIT("fleet_stream"), &val)) {
				if (val.len >= cap)
					r = ent_err_set(err, ENT_ECORRUPT,
							"%s: meta 'fleet_stream' longer than %zu "
							"bytes",
							dir, cap - 1);
				else
					snprintf(stream, cap, "%.*s", (int)val.len, val.p);
			}
			if (!r && !ent_view_get(v, ENT_T_META, ENT_STR_LIT("schema"), &val) &&
			    (val.len == 4 || val.len == 8))
				*schema = le_get(val.p, val.len);
			ent_view_end(v);
		}
		ent_view_free(v);
	}
	ent_store_close(st);
	return r;
}

static void remove_copy(const char *dir)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
}

int ent_snapshot_publish_opts(jsCtx *js, const char *bucket, struct ent_store *s,
			      const struct ent_snapshot_opts *o, uint64_t *seq_out,
			      struct ent_err *err)
{
	struct ent_snapshot_opts def = {0};
	struct ent_err local;
	if (!err)
		err = &local;
	if (!o)
		o = &def;
	if (!bucket || !*bucket)
		bucket = ENT_SNAPSHOT_DEFAULT_BUCKET;
	if (!ent_objstore_bucket_valid(bucket))
		return ent_err_set(err, ENT_EINVAL, "bucket: must be 1..64 of A-Z a-z 0-9 _ -");
	const char *tmp = o->tmp_dir;
	if (!tmp || !*tmp)
		tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof(dir), "%s/entd-snapshot-XXXXXX", tmp) >= (int)sizeof(dir))
		return ent_err_set(err, ENT_EINVAL, "tmp dir: path too long");
	if (!mkdtemp(dir))
		return ent_err_set(err, ENT_EIO, "%s: cannot create a temporary directory: %s", tmp,
				   strerror(errno));

	int r = ent_store_copy(s, dir, err);
	uint64_t seq = 0, schema = 0;
	char stream[256];
	if (!r)
		r = read_copy_meta(dir, &seq, stream, sizeof(stream), &schema, err);
	if (!r && !stream[0] && !o->allow_no_stream)
		r = ent_err_set(err, ENT_EPRECOND,
				"the database follows no stream (meta 'fleet_stream' is empty): "
				"only a fleet replica's database can be a snapshot");
	if (!r)
		r = ent_objstore_ensure(js, bucket, o->replicas, err);
	if (!r) {
		char path[PATH_MAX + 16], num[32];
		snprintf(path, sizeof(path), "%s/data.mdb", dir);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = ent_err_set(err, ENT_EIO, "%s: %s", path, strerror(errno));
		} else {
			struct ent_obj_info info;
			memset(&info, 0, sizeof(info));
			snprintf(info.name, sizeof(info.name), "%s",
				 o->name && *o->name ? o->name : ENT_SNAPSHOT_DEFAULT_NAME);
			snprintf(info.description, sizeof(info.description),
				 "entd database snapshot (LMDB data.mdb, compacted)");
			snprintf(num, sizeof(num), "%" PRIu64, seq);
			ent_objstore_header_set(&info, HDR_SEQ, num);
			ent_objstore_header_set(&info, HDR_STREAM, stream);
			snprintf(num, sizeof(num), "%" PRIu64, schema);
			ent_objstore_header_set(&info, HDR_SCHEMA, num);
			r = ent_objstore_put_fd(js, bucket, fd,
						o->chunk_size ? o->chunk_size : ENT_SNAPSHOT_CHUNK,
						&info, err);
			close(fd);
		}
	}
	remove_copy(dir);
	if (!r && seq_out)
		*seq_out = seq;
	return r;
}

int ent_snapshot_publish(jsCtx *js, const char *bucket, struct ent_store *s, uint64_t *seq_out,
			 struct ent_err *err)
{
	return ent_snapshot_publish_opts(js, bucket, s, NULL, seq_out, err);
}

static int info_from_obj(const struct ent_obj_info *oi, struct ent_snapshot_info *out,
			 struct ent_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *seq = ent_objstore_header(oi, HDR_SEQ);
	const char *stream = ent_objstore_header(oi, HDR_STREAM);
	char *end;
	if (!seq || !*seq)
		return ent_err_set(err, ENT_ECORRUPT,
				   "object '%s' has no %s header: not an entd snapshot", oi->name,
				   HDR_SEQ);
	errno = 0;
	unsigned long long v = strtoull(seq, &end, 10);
	if (errno || *end || *seq == '-')
		return ent_err_set(err, ENT_ECORRUPT, "object '%s': %s '%.40s' is not a number",
				   oi->name, HDR_SEQ, seq);
	out->seq = v;
	snprintf(out->stream, sizeof(out->stream), "%s", stream ? stream : "");
	out->size = oi->size;
	out->mtime_ms = oi->mtime_ms;
	snprintf(out->digest, sizeof(out->digest), "%s", oi->digest);
	return 0;
}

int ent_snapshot_info(jsCtx *js, const char *bucket, const char *name,
		      struct ent_snapshot_info *out, struct ent_err *err)
{
	struct ent_obj_info oi;
	int r = ent_objstore_info(js, bucket && *bucket ? bucket : ENT_SNAPSHOT_DEFAULT_BUCKET,
				  name && *name ? name : ENT_SNAPSHOT_DEFAULT_NAME, &oi, err);
	return r ? r : info_from_obj(&oi, out, err);
}

/* 0 when \a dir is empty (created if missing), -ENT_EEXIST when it holds anything. */
static int empty_dir(const char *dir, struct ent_err *err)
{
	char buf[PATH_MAX];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(buf))
		return ent_err_set(err, ENT_EINVAL, "directory: required");
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return ent_err_set(err, ENT_EIO, "%s: cannot create: %s", buf,
					   strerror(errno));
		buf[i] = c;
	}
	DIR *d = opendir(dir);
	if (!d)
		return ent_err_set(err, ENT_EIO, "%s: %s", dir, strerror(errno));
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			r = ent_err_set(err, ENT_EEXIST,
					"%s: not empty (holds '%s'); a snapshot is only fetched "
					"into an empty directory",
					dir, e->d_name);
			break;
		}
	closedir(d);
	return r;
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int ent_snapshot_fetch_opts(jsCtx *js, const char *bucket, const char *dir,
			    const struct ent_snapshot_opts *o, struct ent_snapshot_info *info_out,
			    struct ent_err *err)
{
	struct ent_snapshot_opts def = {0};
	struct ent_err local;
	if (!err)
		err = &local;
	if (!o)
		o = &def;
	if (!bucket || !*bucket)
		bucket = ENT_SNAPSHOT_DEFAULT_BUCKET;
	const char *name = o->name && *o->name ? o->name : ENT_SNAPSHOT_DEFAULT_NAME;
	if (!dir)
		return ent_err_set(err, ENT_EINVAL, "directory: required");
	int r = empty_dir(dir, err);
	if (r)
		return r;
	char tmp[PATH_MAX + 64], final[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s/data.mdb.fetch-%ld", dir, (long)getpid());
	snprintf(final, sizeof(final), "%s/data.mdb", dir);

	struct ent_obj_info oi;
	struct ent_snapshot_info si;
	/*
	 * A publisher that replaces the snapshot purges the old chunks right after its new meta
	 * is in, so a download that started just before can lose its chunks: it then fails with
	 * -ENT_EUNAVAIL and starts over on the new version. Three tries are plenty; a digest
	 * mismatch is never retried.
	 */
	for (int attempt = 0; attempt < 3; attempt++) {
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return ent_err_set(err, ENT_EIO, "%s: %s", tmp, strerror(errno));
		r = ent_objstore_get_fd(js, bucket, name, fd, o->idle_ms, &oi, err);
		if (!r)
			r = info_from_obj(&oi, &si, err);
		if (!r && fsync(fd) != 0)
			r = ent_err_set(err, ENT_EIO, "%s: fsync: %s", tmp, strerror(errno));
		if (close(fd) != 0 && !r)
			r = ent_err_set(err, ENT_EIO, "%s: close: %s", tmp, strerror(errno));
		if (r != -ENT_EUNAVAIL)
			break;
		ent_log(ENT_LOG_WARN, "snapshot fetch: retrying", "error", err->msg, NULL);
	}
	if (r) {
		unlink(tmp);
		return r;
	}
	if (rename(tmp, final) != 0) {
		r = ent_err_set(err, ENT_EIO, "%s: rename: %s", final, strerror(errno));
		unlink(tmp);
		return r;
	}
	/* The rename is durable only once the directory is synced. */
	if (fsync_path(dir, O_RDONLY | O_DIRECTORY) != 0) {
		r = ent_err_set(err, ENT_EIO, "%s: fsync: %s", dir, strerror(errno));
		goto fail;
	}
	uint64_t seq, schema;
	char stream[256];
	struct ent_err oerr = {0};
	r = read_copy_meta(dir, &seq, stream, sizeof(stream), &schema, &oerr);
	if (r) {
		r = ent_err_set(err, ENT_ECORRUPT, "snapshot '%s' does not open as a database: %s",
				name, oerr.msg);
		goto fail;
	}
	if (seq != si.seq || strcmp(stream, si.stream)) {
		r = ent_err_set(err, ENT_ECORRUPT,
				"snapshot '%s': its headers say seq %" PRIu64
				" stream '%.80s', the database says seq %" PRIu64 " stream '%.80s'",
				name, si.seq, si.stream, seq, stream);
		goto fail;
	}
	if (info_out)
		*info_out = si;
	return 0;
fail:
	unlink(final);
	snprintf(final, sizeof(final), "%s/lock.mdb", dir);
	unlink(final);
	return r;
}

int ent_snapshot_fetch(jsCtx *js, const char *bucket, const char *dir, uint64_t *seq_out,
		       struct ent_err *err)
{
	struct ent_snapshot_info si;
	int r = ent_snapshot_fetch_opts(js, bucket, dir, NULL, &si, err);
	if (!r && seq_out)
		*seq_out = si.seq;
	return r;
}
