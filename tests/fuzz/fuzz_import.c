/*
 * libFuzzer target: an untrusted JSON document through the whole Import path, ent_json_apply:
 * parsed, turned into events and applied to a real LMDB environment (a scratch directory made
 * once per process) inside a write transaction that is aborted after each input, so inputs do
 * not depend on each other. It must never crash, leak or read out of bounds; every refusal
 * names itself. A document that applies is re-read through a view of the same transaction's
 * changes: every aggregated record it wrote must decode (checksum included).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ent/json.h"
#include "ent/store.h"
#include "store/impl.h"

static struct ent_store *store;
static char dir[] = "/tmp/fuzz-import.XXXXXX";

static void cleanup(void)
{
	ent_store_close(store);
	char p[64];
	const char *const files[] = {"data.mdb", "lock.mdb", "entd.lock"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

static int setup(void)
{
	if (!mkdtemp(dir))
		return -1;
	struct ent_store_opts so = {.path = dir, .map_size = (size_t)256 << 20, .no_sync = true};
	struct ent_err err = {0};
	if (ent_store_open(&so, &store, &err))
		return -1;
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!store && setup())
		abort();
	if (size < 1)
		return 0;
	/* The first byte picks Replace (a Wipe first), the rest is the document. */
	bool replace = data[0] & 1;
	struct ent_wtxn *w;
	if (ent_store_wtxn_begin(store, &w))
		abort();
	struct ent_arena arena;
	ent_arena_init(&arena, 0);
	struct ent_err err = {0};
	struct ent_json_stats st;
	int rc = ent_json_apply(w, (const char *)data + 1, size - 1, replace, 1700000000000LL,
				&arena, &err, &st);
	if (rc && (err.code == 0 || err.msg[0] == '\0'))
		abort(); /* every failure explains itself */
	if (rc == 0) {
		MDB_cursor *cur;
		MDB_val k, v;
		if (mdb_cursor_open(w->txn, store->dbi[ENT_T_AGG], &cur))
			abort();
		for (int g = mdb_cursor_get(cur, &k, &v, MDB_FIRST); g == 0;
		     g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct ent_usage_state u;
			struct ent_agg a;
			int n = ent_store_record_header(v.mv_data, v.mv_size, &u);
			if (n < 1 || !(((const uint8_t *)v.mv_data)[0] & 0x80))
				abort(); /* everything written is sealed and sound */
			for (int i = 0; i < n; i++) {
				int64_t from, to;
				ent_store_record_seg_window(v.mv_data, i, &from, &to);
				if (ent_store_record_decode(v.mv_data, v.mv_size, from, &u, &a))
					abort();
			}
		}
		mdb_cursor_close(cur);
	}
	ent_store_wtxn_abort(w);
	ent_arena_deinit(&arena);
	return 0;
}
