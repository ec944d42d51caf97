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
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
	if (!(r = ent_store_view_new(st, &v))) {
		if (!(r = ent_store_view_begin(v))) {
			struct ent_str val;
			if (!ent_store_view_get(v, ENT_T_META, ENT_STR_LIT("seq"), &val)) {
				if (val.len == 8)
					*seq = le_get(val.p, 8);
				else
					r = ent_err_set(err, ENT_ECORRUPT,
							"%s: meta 'seq' is %u bytes, not 8", dir,
							val.len);
			}
			if (!r &&
			    !ent_store_view_get(v, ENT_T_META, ENT_STR_LIT("fleet_stream"), &val)) {
				if (val.len >= cap)
					r = ent_err_set(err, ENT_ECORRUPT,
							"%s: meta 'fleet_stream' longer than %zu "
							"bytes",
							dir, cap - 1);
				else
					snprintf(stream, cap, "%.*s", (int)val.len, val.p);
			}
			if (!r && !ent_store_view_get(v, ENT_T_META, ENT_STR_LIT("schema"), &val) &&
			    (val.len == 4 || val.len == 8))
				*schema = le_get(val.p, val.len);
			ent_store_view_end(v);
		}
		ent_store_view_free(v);
	}
	ent_store_close(st);
	return r;
}

/*
 * Seeding: the copy becomes the state of stream \a identity before its first message (meta
 * "seq" 0), so replicas bootstrapped from it apply the stream from sequence 1.
 */
static int stamp_seed(const char *dir, const char *identity, struct ent_err *err)
{
	struct ent_store *st;
	struct ent_wtxn *w;
	struct ent_store_opts so = {.path = dir};
	int r = ent_store_open(&so, &st, err);
	if (r)
		return r;
	if ((r = ent_store_wtxn_begin(st, &w))) {
		ent_store_close(st);
		return ent_err_set(err, -r, "%s: cannot write the seed's meta", dir);
	}
	if ((r = ent_store_wtxn_set_seq(w, 0)) ||
	    (r = ent_store_wtxn_put_meta(w, "fleet_stream", identity))) {
		ent_store_wtxn_abort(w);
		ent_store_close(st);
		return ent_err_set(err, -r, "%s: cannot write the seed's meta", dir);
	}
	r = ent_store_wtxn_commit(w, err);
	ent_store_close(st);
	return r;
}

int ent_sync_snapshot_stream_identity(jsCtx *js, const char *stream, char *buf, size_t cap,
				      uint64_t *first_seq, uint64_t *last_seq, struct ent_err *err)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s != NATS_OK)
		return ent_sync_objstore_nats_err(s, jerr, err, stream);
	/* The same format as src/sync/fleet.c writes into every transaction. */
	snprintf(buf, cap, "%s/%" PRId64, stream, si->Created);
	if (first_seq)
		*first_seq = si->State.FirstSeq;
	*last_seq = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return 0;
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

int ent_sync_snapshot_publish_opts(jsCtx *js, const char *bucket, struct ent_store *s,
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
	if (!ent_sync_objstore_bucket_valid(bucket))
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
	if (!r && o->seed_identity)
		r = stamp_seed(dir, o->seed_identity, err);
	if (!r)
		r = read_copy_meta(dir, &seq, stream, sizeof(stream), &schema, err);
	if (!r && !stream[0] && !o->allow_no_stream)
		r = ent_err_set(err, ENT_EPRECOND,
				"the database follows no stream (meta 'fleet_stream' is empty): "
				"only a fleet replica's database can be a snapshot");
	if (!r)
		r = ent_sync_objstore_ensure(js, bucket, o->replicas, err);
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
			ent_sync_objstore_header_set(&info, HDR_SEQ, num);
			ent_sync_objstore_header_set(&info, HDR_STREAM, stream);
			snprintf(num, sizeof(num), "%" PRIu64, schema);
			ent_sync_objstore_header_set(&info, HDR_SCHEMA, num);
			r = ent_sync_objstore_put_fd(
				js, bucket, fd, o->chunk_size ? o->chunk_size : ENT_SNAPSHOT_CHUNK,
				&info, err);
			close(fd);
		}
	}
	remove_copy(dir);
	if (!r && seq_out)
		*seq_out = seq;
	return r;
}

int ent_sync_snapshot_publish(jsCtx *js, const char *bucket, struct ent_store *s, uint64_t *seq_out,
			      struct ent_err *err)
{
	return ent_sync_snapshot_publish_opts(js, bucket, s, NULL, seq_out, err);
}

static int info_from_obj(const struct ent_obj_info *oi, struct ent_sync_snapshot_info *out,
			 struct ent_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *seq = ent_sync_objstore_header(oi, HDR_SEQ);
	const char *stream = ent_sync_objstore_header(oi, HDR_STREAM);
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

int ent_sync_snapshot_info(jsCtx *js, const char *bucket, const char *name,
			   struct ent_sync_snapshot_info *out, struct ent_err *err)
{
	struct ent_obj_info oi;
	int r = ent_sync_objstore_info(js, bucket && *bucket ? bucket : ENT_SNAPSHOT_DEFAULT_BUCKET,
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

int ent_sync_snapshot_fetch_opts(jsCtx *js, const char *bucket, const char *dir,
				 const struct ent_snapshot_opts *o,
				 struct ent_sync_snapshot_info *info_out, struct ent_err *err)
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
	struct ent_sync_snapshot_info si;
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
		r = ent_sync_objstore_get_fd(js, bucket, name, fd, o->idle_ms, &oi, err);
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

int ent_sync_snapshot_fetch(jsCtx *js, const char *bucket, const char *dir, uint64_t *seq_out,
			    struct ent_err *err)
{
	struct ent_sync_snapshot_info si;
	int r = ent_sync_snapshot_fetch_opts(js, bucket, dir, NULL, &si, err);
	if (!r && seq_out)
		*seq_out = si.seq;
	return r;
}

/* ---- restore into an existing directory --------------------------------------------------- */

/*
 * The pid of a process that has the LMDB environment in \a dir open, or 0. Every process with
 * the environment open holds at least a shared fcntl lock on byte 0 of lock.mdb (LMDB's
 * "exclusive lock" check at open), so F_GETLK for a write lock reports one of them.
 */
static pid_t env_user(const char *dir)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	int fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
	pid_t pid = 0;
	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
		pid = fl.l_pid;
	close(fd);
	return pid;
}

int ent_sync_snapshot_restore(jsCtx *js, const char *bucket, const char *dir, uint64_t min_seq,
			      const struct ent_snapshot_opts *o,
			      struct ent_sync_snapshot_info *info_out, struct ent_err *err)
{
	struct ent_err local;
	if (!err)
		err = &local;
	if (!dir || !*dir)
		return ent_err_set(err, ENT_EINVAL, "directory: required");
	char side[PATH_MAX], a[PATH_MAX + 16], b[PATH_MAX + 16];
	if (snprintf(side, sizeof(side), "%s/.bootstrap", dir) >= (int)sizeof(side))
		return ent_err_set(err, ENT_EINVAL, "%s: path too long", dir);
	pid_t user = env_user(dir);
	if (user)
		return ent_err_set(err, ENT_EPRECOND,
				   "%s: the database is open in process %ld: stop it before "
				   "replacing its database",
				   dir, (long)user);
	/* A previous attempt that died half-way left the side directory: start it afresh. */
	DIR *d = opendir(side);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
			    snprintf(a, sizeof(a), "%s/%s", side, e->d_name) < (int)sizeof(a))
				unlink(a);
		closedir(d);
	}
	remove_copy(side);
	struct ent_sync_snapshot_info si;
	int r = ent_sync_snapshot_fetch_opts(js, bucket, side, o, &si, err);
	if (r) {
		remove_copy(side);
		return r;
	}
	if (si.seq < min_seq) {
		remove_copy(side);
		return ent_err_set(err, ENT_EPRECOND,
				   "the newest snapshot is at seq %" PRIu64
				   ", older than the %" PRIu64
				   " needed (publish a newer one: entctl fleet snapshot publish)",
				   si.seq, min_seq);
	}
	/*
	 * Order: drop the old lock file and data first, then move the new data in. A crash after
	 * the unlink and before the rename leaves an empty directory, which bootstraps again.
	 */
	snprintf(a, sizeof(a), "%s/lock.mdb", dir);
	unlink(a);
	snprintf(a, sizeof(a), "%s/data.mdb", dir);
	if (unlink(a) != 0 && errno != ENOENT) {
		r = ent_err_set(err, ENT_EIO, "%s: %s", a, strerror(errno));
		remove_copy(side);
		return r;
	}
	snprintf(b, sizeof(b), "%s/data.mdb", side);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		r = ent_err_set(err, ENT_EIO, "%s: %s", dir, strerror(errno));
		remove_copy(side);
		return r;
	}
	if (rename(b, a) != 0) {
		r = ent_err_set(err, ENT_EIO, "%s -> %s: %s", b, a, strerror(errno));
		remove_copy(side);
		return r;
	}
	if (fsync_path(dir, O_RDONLY | O_DIRECTORY) != 0)
		r = ent_err_set(err, ENT_EIO, "%s: fsync: %s", dir, strerror(errno));
	remove_copy(side);
	if (!r && info_out)
		*info_out = si;
	return r;
}

/* ---- periodic publisher ------------------------------------------------------------------- */

/*
 * Invariants: `stop` and the stats are guarded by `mu`; the thread is the only one calling
 * NATS through this struct; the options' strings are borrowed from the caller.
 */
struct ent_snapshotter {
	jsCtx *js;
	char bucket[ENT_OBJ_MAX_BUCKET + 1];
	struct ent_store *store;
	int64_t interval_ms;
	struct ent_snapshot_opts o;
	ent_snapshot_ready_fn ready;
	void *ready_ctx;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct ent_snapshotter_stats st;
};

/* Publish if the bucket's newest snapshot is stale and behind us. */
static void snapshotter_round(struct ent_snapshotter *sn)
{
	if (sn->ready && !sn->ready(sn->ready_ctx))
		return;
	struct ent_store_stats ss;
	if (ent_store_stats(sn->store, &ss))
		return;
	struct ent_sync_snapshot_info si;
	struct ent_err err = {0};
	int r = ent_sync_snapshot_info(sn->js, sn->bucket, sn->o.name, &si, &err);
	if (r == 0) {
		int64_t age = ent_time_now_ms() - si.mtime_ms;
		if (age < sn->interval_ms || si.seq >= ss.seq)
			return;
	} else if (r != -ENT_ENOTFOUND) {
		ent_log(ENT_LOG_WARN, "snapshot: cannot read the newest snapshot", "error", err.msg,
			NULL);
		return;
	}
	int64_t t0 = ent_time_mono_ns();
	uint64_t seq = 0;
	r = ent_sync_snapshot_publish_opts(sn->js, sn->bucket, sn->store, &sn->o, &seq, &err);
	double secs = (double)(ent_time_mono_ns() - t0) / 1e9;
	pthread_mutex_lock(&sn->mu);
	if (r) {
		sn->st.failed++;
	} else {
		sn->st.published++;
		sn->st.last_seq = seq;
		sn->st.last_ms = ent_time_now_ms();
		sn->st.last_seconds = secs;
	}
	pthread_mutex_unlock(&sn->mu);
	char num[32], dur[32];
	snprintf(num, sizeof(num), "%" PRIu64, seq);
	snprintf(dur, sizeof(dur), "%.2f", secs);
	if (r)
		ent_log(ENT_LOG_WARN, "snapshot: publish failed", "bucket", sn->bucket, "error",
			err.msg, NULL);
	else
		ent_log(ENT_LOG_INFO, "snapshot: published", "bucket", sn->bucket, "seq", num,
			"seconds", dur, NULL);
}

static void *snapshotter_main(void *arg)
{
	struct ent_snapshotter *sn = arg;
	pthread_mutex_lock(&sn->mu);
	while (!sn->stop) {
		/* Up to 20% jitter: replicas started together drift apart. */
		uint32_t rnd = 0;
		RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
		int64_t wait = sn->interval_ms + (int64_t)(rnd % 1000) * sn->interval_ms / 5000;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!sn->stop && pthread_cond_timedwait(&sn->cv, &sn->mu, &ts) != ETIMEDOUT)
			;
		if (sn->stop)
			break;
		pthread_mutex_unlock(&sn->mu);
		snapshotter_round(sn);
		pthread_mutex_lock(&sn->mu);
	}
	pthread_mutex_unlock(&sn->mu);
	return NULL;
}

int ent_sync_snapshotter_start(jsCtx *js, const char *bucket, struct ent_store *s,
			       int64_t interval_ms, const struct ent_snapshot_opts *o,
			       ent_snapshot_ready_fn ready, void *ready_ctx,
			       struct ent_snapshotter **out)
{
	if (!bucket || !*bucket)
		bucket = ENT_SNAPSHOT_DEFAULT_BUCKET;
	if (!js || !s || interval_ms <= 0 || !ent_sync_objstore_bucket_valid(bucket))
		return -ENT_EINVAL;
	struct ent_snapshotter *sn = calloc(1, sizeof(*sn));
	if (!sn)
		return -ENT_ENOMEM;
	sn->js = js;
	snprintf(sn->bucket, sizeof(sn->bucket), "%s", bucket);
	sn->store = s;
	sn->interval_ms = interval_ms;
	if (o)
		sn->o = *o;
	sn->ready = ready;
	sn->ready_ctx = ready_ctx;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&sn->mu, NULL);
	pthread_cond_init(&sn->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&sn->thread, NULL, snapshotter_main, sn) != 0) {
		pthread_cond_destroy(&sn->cv);
		pthread_mutex_destroy(&sn->mu);
		free(sn);
		return -ENT_ENOMEM;
	}
	*out = sn;
	return 0;
}

void ent_sync_snapshotter_stop(struct ent_snapshotter *sn)
{
	if (!sn)
		return;
	pthread_mutex_lock(&sn->mu);
	sn->stop = true;
	pthread_cond_signal(&sn->cv);
	pthread_mutex_unlock(&sn->mu);
	pthread_join(sn->thread, NULL);
	pthread_cond_destroy(&sn->cv);
	pthread_mutex_destroy(&sn->mu);
	free(sn);
}

void ent_sync_snapshotter_get_stats(struct ent_snapshotter *sn, struct ent_snapshotter_stats *out)
{
	pthread_mutex_lock(&sn->mu);
	*out = sn->st;
	pthread_mutex_unlock(&sn->mu);
}
