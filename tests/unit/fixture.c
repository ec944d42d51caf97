/* The shared store fixture of the unit tests (fixture.h). */
#define _GNU_SOURCE
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "fixture.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

void fx_rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void fx_store_open(const struct ent_store_opts *o, struct ent_store **s, struct ent_view **v)
{
	struct ent_err err = {0};
	if (ent_store_open(o, s, &err))
		fail_msg("open %s: %s", o->path, err.msg);
	assert_int_equal(ent_store_view_new(*s, v), 0);
}

void fx_open(struct store_fx *f, size_t map_size)
{
	struct ent_store_opts o = {.path = f->dir, .map_size = map_size};
	fx_store_open(&o, &f->s, &f->v);
}

void fx_close(struct store_fx *f)
{
	ent_store_view_free(f->v);
	ent_store_close(f->s);
	f->v = NULL;
	f->s = NULL;
}

int fx_setup(void **state, const char *name, size_t map_size)
{
	struct store_fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/entd-test-%s-XXXXXX", name);
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	ent_arena_init(&f->arena, 0);
	fx_open(f, map_size);
	*state = f;
	return 0;
}

int fx_teardown(void **state)
{
	struct store_fx *f = *state;
	fx_close(f);
	ent_arena_deinit(&f->arena);
	fx_rm_rf(f->dir);
	free(f);
	return 0;
}

int fx_apply(struct store_fx *f, Ent__V1__Event *ev)
{
	struct ent_wtxn *w;
	ent_arena_reset(&f->arena);
	assert_int_equal(ent_store_wtxn_begin(f->s, &w), 0);
	int r = ent_store_apply(w, ev, &f->arena, &f->res);
	if (r == -ENT_EFULL) {
		ent_store_wtxn_abort(w);
		return r;
	}
	/* A commit can hit a full map too (the last pages are written then): same answer. */
	struct ent_err err = {0};
	int c = ent_store_wtxn_commit(w, &err);
	if (c == -ENT_EFULL) {
		f->res.err = err;
		return c;
	}
	if (c)
		fail_msg("commit: %s", err.msg);
	return r;
}

void fx_apply_ok(struct store_fx *f, Ent__V1__Event *ev)
{
	int r = fx_apply(f, ev);
	if (r)
		fail_msg("event kind %d failed: %s", (int)ev->kind_case, f->res.err.msg);
}

gpr_timespec fx_in_seconds(int s)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(s, GPR_TIMESPAN));
}

grpc_byte_buffer *fx_pack(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}
