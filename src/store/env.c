/*
 * The LMDB environment: open and close, the table handles, the schema check, statistics and
 * compact copies. The only place LMDB return codes become ENT_E* codes (ent_store_mdb_err).
 */
#define _GNU_SOURCE /* program_invocation_short_name */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "store/impl.h"

/* What the last "full" of this thread was: the map (MDB_MAP_FULL and kin) or the disk
   (ENOSPC). Per thread, because the writer thread asks about its own last commit. */
static _Thread_local bool last_full_disk;

bool ent_store_full_is_disk(void)
{
	return last_full_disk;
}

int ent_store_mdb_err(int rc)
{
	if (rc == ENOSPC || rc == EDQUOT)
		last_full_disk = true;
	else if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL || rc == MDB_PAGE_FULL)
		last_full_disk = false;
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENT_ENOTFOUND;
	case MDB_KEYEXIST:
		return -ENT_EEXIST;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_PAGE_FULL:
	case ENOSPC:
	case EDQUOT:
		/* All are "this transaction does not fit": the caller aborts and may grow. */
		return -ENT_EFULL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
	case MDB_INCOMPATIBLE:
		return -ENT_ECORRUPT;
	case MDB_READERS_FULL:
		return -ENT_EUNAVAIL;
	case MDB_BAD_VALSIZE:
		return -ENT_EINVAL;
	case ENOMEM:
		return -ENT_ENOMEM;
	default:
		return -ENT_EIO;
	}
}

static const char *const table_names[ENT_T__COUNT] = {
	[ENT_T_META] = "meta",
	[ENT_T_FEATURES] = "features",
	[ENT_T_PLANS] = "plans",
	[ENT_T_ADDONS] = "addons",
	[ENT_T_SUBS] = "subs",
	[ENT_T_OVERRIDES] = "overrides",
	[ENT_T_USAGE] = "usage",
	[ENT_T_IDEM] = "idem",
	[ENT_T_CUSTOMERS] = "customers",
	[ENT_T_PLAN_SUBS] = "plan_subs",
	[ENT_T_ADDON_SUBS] = "addon_subs",
	[ENT_T_BOUNDS] = "bounds",
	[ENT_T_AGG] = "agg",
	[ENT_T_ENDED] = "ended",
};

const char *ent_store_table_name(enum ent_table t)
{
	return t < ENT_T__COUNT ? table_names[t] : "?";
}

/* Tables added after schema 1 was stamped: a read-only open of an older database goes on
 * without them (nothing in them yet); a read-write open creates them. */
static bool table_optional(enum ent_table t)
{
	return t == ENT_T_ENDED;
}

static unsigned table_flags(enum ent_table t)
{
	switch (t) {
	case ENT_T_PLAN_SUBS:
	case ENT_T_ADDON_SUBS:
	case ENT_T_BOUNDS:
		return MDB_DUPSORT;
	default:
		return 0;
	}
}

/* mkdir -p: every missing component of \a path, mode 0755. */
static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		buf[i] = c;
	}
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int ent_store_meta_u64(struct ent_store *s, MDB_txn *txn, const char *name, uint64_t *out)
{
	MDB_val k = {strlen(name), (void *)name}, v;
	int rc = mdb_get(txn, s->dbi[ENT_T_META], &k, &v);
	*out = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return ent_store_mdb_err(rc);
	if (v.mv_size == 8)
		*out = ent_store_le64_get(v.mv_data);
	else if (v.mv_size == 4)
		*out = (uint64_t)((const uint8_t *)v.mv_data)[0] |
		       (uint64_t)((const uint8_t *)v.mv_data)[1] << 8 |
		       (uint64_t)((const uint8_t *)v.mv_data)[2] << 16 |
		       (uint64_t)((const uint8_t *)v.mv_data)[3] << 24;
	else
		return -ENT_ECORRUPT;
	return 0;
}

/*
 * Open every table (creating them unless read-only) and check or stamp the schema, in one
 * transaction: a read-only open uses a read txn, which is enough for mdb_dbi_open of existing
 * tables.
 */
static int open_tables(struct ent_store *s, const char *path, bool existed, struct ent_err *err)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
	if (rc)
		return ent_err_set(err, -ent_store_mdb_err(rc),
				   "%s: cannot begin a transaction: %s", path, mdb_strerror(rc));
	for (int t = 0; t < ENT_T__COUNT; t++) {
		unsigned flags = table_flags(t) | (s->read_only ? 0 : MDB_CREATE);
		rc = mdb_dbi_open(txn, table_names[t], flags, &s->dbi[t]);
		if (rc == MDB_NOTFOUND && table_optional(t)) {
			s->absent |= 1u << t;
			continue;
		}
		if (rc == MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			return ent_err_set(err, ENT_ENOTFOUND,
					   "%s: not an entd database (no table '%s')", path,
					   table_names[t]);
		}
		if (rc) {
			mdb_txn_abort(txn);
			return ent_err_set(err, -ent_store_mdb_err(rc), "%s: table '%s': %s", path,
					   table_names[t], mdb_strerror(rc));
		}
	}
	uint64_t schema;
	int r = ent_store_meta_u64(s, txn, "schema", &schema);
	if (r) {
		mdb_txn_abort(txn);
		return ent_err_set(err, -r, "%s: meta 'schema' unreadable", path);
	}
	if (schema == 0 && existed) {
		/* An existing file without a schema is damaged (or not ours): never stamp it. */
		mdb_txn_abort(txn);
		return ent_err_set(
			err, ENT_ECORRUPT,
			"%s: data.mdb exists but holds no entd schema: damaged, or not an "
			"entd database",
			path);
	} else if (schema == 0 && !s->read_only) {
		uint8_t b[4] = {ENT_SCHEMA, 0, 0, 0};
		MDB_val k = {6, "schema"}, v = {4, b};
		rc = mdb_put(txn, s->dbi[ENT_T_META], &k, &v, 0);
		if (rc) {
			mdb_txn_abort(txn);
			return ent_err_set(err, -ent_store_mdb_err(rc), "%s: writing schema: %s",
					   path, mdb_strerror(rc));
		}
	} else if (schema == 0) {
		mdb_txn_abort(txn);
		return ent_err_set(err, ENT_ENOTFOUND, "%s: not an entd database (no schema)",
				   path);
	} else if (schema != ENT_SCHEMA) {
		mdb_txn_abort(txn);
		return ent_err_set(err, ENT_EPRECOND,
				   "%s: database schema %llu is not supported (this entd reads "
				   "schema %d)",
				   path, (unsigned long long)schema, ENT_SCHEMA);
	}
	/* Commit even the read-only txn: table handles opened in an aborted txn are closed. */
	rc = mdb_txn_commit(txn);
	if (rc)
		return ent_err_set(err, -ent_store_mdb_err(rc), "%s: cannot commit: %s", path,
				   mdb_strerror(rc));
	return 0;
}

/*
 * The directory's lock: an exclusive flock on <dir>/entd.lock, held while the store is open
 * read-write, so a second entd or an offline `entctl import/generate` on the same directory is
 * refused instead of writing next to the first (LMDB itself allows several writers' processes
 * and serialises them, which would let two daemons each believe they own the database). The
 * file holds the holder's PID and program name for the refusal message. flock locks belong to
 * the open file, so they go away with the process, even after kill -9.
 */
static int lock_dir(struct ent_store *s, const char *path, struct ent_err *err)
{
	char lp[4096];
	if ((size_t)snprintf(lp, sizeof(lp), "%s/entd.lock", path) >= sizeof(lp))
		return ent_err_set(err, ENT_EINVAL, "%s: path too long", path);
	int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return ent_err_set(err, ENT_EIO, "%s: cannot open the lock file: %s", lp,
				   strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		char who[96] = "";
		ssize_t n = pread(fd, who, sizeof(who) - 1, 0);
		who[n > 0 ? n : 0] = 0;
		who[strcspn(who, "\n")] = 0;
		close(fd);
		if (e == EWOULDBLOCK)
			return ent_err_set(err, ENT_EUNAVAIL,
					   "%s: the database is in use by %s; stop it first "
					   "(lock file %s)",
					   path, who[0] ? who : "another process", lp);
		return ent_err_set(err, ENT_EIO, "%s: cannot lock: %s", lp, strerror(e));
	}
	char who[96];
	int len = snprintf(who, sizeof(who), "pid %ld (%s)\n", (long)getpid(),
			   program_invocation_short_name);
	if (ftruncate(fd, 0) != 0 || pwrite(fd, who, (size_t)len, 0) != len) {
		/* Only the message suffers; the lock holds. */
	}
	s->lock_fd = fd;
	return 0;
}

/*
 * Refuse a data.mdb that cannot be the database it claims to be, before LMDB maps it: an empty
 * file (LMDB would silently start a new, empty database in it, and entd would answer every
 * check "not entitled"), or a file shorter than the last page its newest meta page names (a
 * read of the missing part is a SIGBUS, not an error). Two meta pages at the start of the file
 * carry the last page number and the transaction id; the newer one is LMDB's view
 * (mdb.c: MDB_meta after the 16-byte page header: magic, version, address, mapsize, two
 * 48-byte MDB_db, last_pg, txnid).
 */
#define META_MAGIC  0xBEEFC0DEu
#define META_LASTPG (16 + 4 + 4 + 8 + 8 + 2 * 48)
#define META_TXNID  (META_LASTPG + 8)
#define META_PSIZE  (16 + 4 + 4 + 8 + 8) /* FREE_DBI's md_pad: the page size */

static int check_data_file(const char *path, bool *existed, struct ent_err *err)
{
	char dp[4096];
	if ((size_t)snprintf(dp, sizeof(dp), "%s/data.mdb", path) >= sizeof(dp))
		return ent_err_set(err, ENT_EINVAL, "%s: path too long", path);
	int fd = open(dp, O_RDONLY | O_CLOEXEC);
	*existed = fd >= 0;
	if (fd < 0)
		return errno == ENOENT ? 0
				       : ent_err_set(err, ENT_EIO, "%s: %s", dp, strerror(errno));
	struct stat st;
	int rc = 0;
	uint8_t m[META_TXNID + 8];
	if (fstat(fd, &st) != 0) {
		rc = ent_err_set(err, ENT_EIO, "%s: %s", dp, strerror(errno));
	} else if (st.st_size == 0) {
		rc = ent_err_set(
			err, ENT_ECORRUPT,
			"%s is empty (0 bytes): a damaged or truncated database, not a new "
			"one; restore it from a snapshot, or remove it to start empty",
			dp);
	} else if (pread(fd, m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
		   (uint32_t)(m[16] | m[17] << 8 | m[18] << 16 | (uint32_t)m[19] << 24) !=
			   META_MAGIC) {
		rc = ent_err_set(err, ENT_ECORRUPT,
				 "%s (%lld bytes) does not start with an LMDB meta page: not a "
				 "database, or damaged",
				 dp, (long long)st.st_size);
	} else {
		uint32_t psize;
		memcpy(&psize, m + META_PSIZE, 4);
		uint64_t last = ent_store_le64_get(m + META_LASTPG),
			 txn = ent_store_le64_get(m + META_TXNID);
		uint8_t m2[META_TXNID + 8];
		if (psize >= 512 && psize <= 65536 && !(psize & (psize - 1)) &&
		    pread(fd, m2, sizeof(m2), psize) == (ssize_t)sizeof(m2) &&
		    ent_store_le64_get(m2 + META_TXNID) > txn)
			last = ent_store_le64_get(m2 + META_LASTPG);
		if (psize < 512 || psize > 65536 || last > (uint64_t)st.st_size / psize ||
		    (last + 1) * psize > (uint64_t)st.st_size)
			rc = ent_err_set(
				err, ENT_ECORRUPT,
				"%s is %lld bytes but its last page (%llu of %u bytes) ends "
				"at %llu: the file was truncated; restore it from a snapshot",
				dp, (long long)st.st_size, (unsigned long long)last, psize,
				(unsigned long long)((last + 1) * psize));
	}
	close(fd);
	return rc;
}

/*
 * LMDB trusts its pages: a cursor stepping onto a damaged one fails an assertion, and LMDB
 * then aborts the process (mdb_assert_fail calls this first, then abort()). Returning is all
 * a callback may do, so it says why the daemon is about to die and what to do; the verify at
 * start (db.verify_below) and `entctl verify` find such pages without LMDB (verify.c).
 */
static void on_lmdb_assert(MDB_env *env, const char *msg)
{
	const char *path = "";
	mdb_env_get_path(env, &path);
	ent_log(ENT_LOG_ERROR,
		"store: LMDB met a damaged page and aborts the process; run entctl verify and "
		"restore the database from a snapshot",
		"db", path, "assertion", msg, NULL);
}

int ent_store_open(const struct ent_store_opts *opts, struct ent_store **out, struct ent_err *err)
{
	struct ent_err local;
	if (!err)
		err = &local;
	if (!opts || !opts->path || !*opts->path)
		return ent_err_set(err, ENT_EINVAL, "store path: required");
	const char *path = opts->path;
	if (!opts->read_only) {
		int r = mkdir_p(path);
		if (r)
			return ent_err_set(err, ENT_EIO, "%s: cannot create directory: %s", path,
					   strerror(-r));
	}
	struct ent_store *s = calloc(1, sizeof(*s));
	if (!s)
		return ent_err_set(err, ENT_ENOMEM, "out of memory");
	s->read_only = opts->read_only;
	s->walk_off = opts->no_walk;
	s->w.s = s;
	s->lock_fd = -1;
	if (!opts->read_only && lock_dir(s, path, err))
		goto fail_lock;
	bool existed = false;
	if (check_data_file(path, &existed, err))
		goto fail_create;

	int rc = mdb_env_create(&s->env);
	if (rc) {
		ent_err_set(err, -ent_store_mdb_err(rc), "mdb_env_create: %s", mdb_strerror(rc));
		goto fail_create;
	}
	mdb_env_set_assert(s->env, on_lmdb_assert);
	size_t map_size = opts->map_size ? opts->map_size : (size_t)16 << 30;
	unsigned readers = opts->max_readers ? opts->max_readers : 256;
	if ((rc = mdb_env_set_maxdbs(s->env, 16)) || (rc = mdb_env_set_mapsize(s->env, map_size)) ||
	    (rc = mdb_env_set_maxreaders(s->env, readers))) {
		ent_err_set(err, -ent_store_mdb_err(rc), "%s: %s", path, mdb_strerror(rc));
		goto fail_env;
	}
	/*
	 * MDB_NOTLS: read views are tied to our view objects, not to threads, and a thread may
	 * hold one view per store. MDB_NOSYNC only on request (bulk offline builds): the daemon
	 * acknowledges a write only after it is durable.
	 */
	unsigned flags = MDB_NOTLS;
	if (opts->read_only)
		flags |= MDB_RDONLY;
	if (opts->no_sync)
		flags |= MDB_NOSYNC;
	else if (opts->no_meta_sync)
		flags |= MDB_NOMETASYNC;
	rc = mdb_env_open(s->env, path, flags, 0644);
	if (rc) {
		int code = -ent_store_mdb_err(rc);
		if (rc == ENOENT)
			code = ENT_ENOTFOUND;
		ent_err_set(err, code, "%s: cannot open: %s", path, mdb_strerror(rc));
		goto fail_env;
	}
	int r = open_tables(s, path, existed, err);
	if (r)
		goto fail_env;
	ent_store_walk_probe(s);
	*out = s;
	return 0;

fail_env:
	mdb_env_close(s->env);
fail_create:
	if (s->lock_fd >= 0)
		close(s->lock_fd);
fail_lock:
	free(s);
	return -err->code;
}

void ent_store_close(struct ent_store *s)
{
	if (!s)
		return;
	if (s->w.txn)
		mdb_txn_abort(s->w.txn);
	if (s->ws) {
		ent_arena_deinit(&s->ws->rc);
		ent_arena_deinit(&s->ws->tmp);
		free(s->ws);
	}
	mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the directory's lock */
	free(s);
}

static int first_boundary(struct ent_store *s, MDB_txn *txn, int64_t *at)
{
	MDB_cursor *cur;
	*at = 0;
	int rc = mdb_cursor_open(txn, s->dbi[ENT_T_BOUNDS], &cur);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	if (rc == 0 && k.mv_size == 8)
		*at = ent_store_bound_time(k.mv_data);
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : ent_store_mdb_err(rc);
}

int ent_store_next_boundary(struct ent_store *s, int64_t *at)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return ent_store_mdb_err(rc);
	int r = first_boundary(s, txn, at);
	mdb_txn_abort(txn);
	return r;
}

int ent_store_stats(struct ent_store *s, struct ent_store_stats *out)
{
	memset(out, 0, sizeof(*out));
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return ent_store_mdb_err(rc);
	static const struct {
		enum ent_table t;
		size_t off;
	} counts[] = {
		{ENT_T_FEATURES, offsetof(struct ent_store_stats, features)},
		{ENT_T_PLANS, offsetof(struct ent_store_stats, plans)},
		{ENT_T_ADDONS, offsetof(struct ent_store_stats, addons)},
		{ENT_T_SUBS, offsetof(struct ent_store_stats, subscriptions)},
		{ENT_T_OVERRIDES, offsetof(struct ent_store_stats, overrides)},
		{ENT_T_CUSTOMERS, offsetof(struct ent_store_stats, customers)},
		{ENT_T_AGG, offsetof(struct ent_store_stats, aggregates)},
		{ENT_T_BOUNDS, offsetof(struct ent_store_stats, boundaries)},
		{ENT_T_ENDED, offsetof(struct ent_store_stats, tombstones)},
	};
	int r = 0;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]) && !r; i++) {
		if (!ent_store_has(s, counts[i].t))
			continue;
		MDB_stat st;
		rc = mdb_stat(txn, s->dbi[counts[i].t], &st);
		if (rc)
			r = ent_store_mdb_err(rc);
		else
			*(uint64_t *)((char *)out + counts[i].off) = st.ms_entries;
	}
	uint64_t last = 0;
	if (!r)
		r = ent_store_meta_u64(s, txn, "seq", &out->seq);
	if (!r)
		r = ent_store_meta_u64(s, txn, "last_commit", &last);
	out->last_commit_at = (int64_t)last;
	if (!r)
		r = first_boundary(s, txn, &out->next_boundary_at);
	mdb_txn_abort(txn);
	out->walk_enabled = ent_store_walk(s, NULL);
	out->walk_fallbacks = atomic_load_explicit(&s->walk_fallbacks, memory_order_relaxed);
	MDB_envinfo info;
	MDB_stat est;
	out->corrupt_reads = atomic_load_explicit(&s->corrupt_reads, memory_order_relaxed);
	if (!r && !(rc = mdb_env_info(s->env, &info)) && !(rc = mdb_env_stat(s->env, &est))) {
		out->db_size_bytes = ((uint64_t)info.me_last_pgno + 1) * est.ms_psize;
		out->map_size_bytes = info.me_mapsize;
	} else if (!r) {
		r = ent_store_mdb_err(rc);
	}
	return r;
}

int ent_store_copy(struct ent_store *s, const char *path, struct ent_err *err)
{
	if (!path || !*path)
		return ent_err_set(err, ENT_EINVAL, "snapshot path: required");
	int r = mkdir_p(path);
	if (r)
		return ent_err_set(err, ENT_EIO, "%s: cannot create directory: %s", path,
				   strerror(-r));
	/* LMDB refuses to overwrite an existing data.mdb (O_EXCL): a snapshot never clobbers. */
	int rc = mdb_env_copy2(s->env, path, MDB_CP_COMPACT);
	if (rc)
		return ent_err_set(err, -ent_store_mdb_err(rc), "%s: copy failed: %s", path,
				   mdb_strerror(rc));
	return 0;
}

int ent_store_get_meta(struct ent_store *s, const char *name, char *buf, size_t cap)
{
	MDB_txn *txn;
	if (!cap)
		return -ENT_EINVAL;
	buf[0] = 0;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return ent_store_mdb_err(rc);
	MDB_val k = {strlen(name), (void *)name}, v;
	rc = mdb_get(txn, s->dbi[ENT_T_META], &k, &v);
	if (rc == 0) {
		size_t n = v.mv_size < cap - 1 ? v.mv_size : cap - 1;
		memcpy(buf, v.mv_data, n);
		buf[n] = 0;
	}
	mdb_txn_abort(txn);
	return ent_store_mdb_err(rc);
}
