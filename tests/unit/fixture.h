/*
 * The store fixture the unit tests share: a real LMDB store in a fresh directory under /tmp,
 * one read view, an arena for ent_store_apply, and events applied one per write transaction.
 * Linked into every unit test executable (tests/CMakeLists.txt); not a test itself.
 */
#ifndef ENT_TESTS_FIXTURE_H
#define ENT_TESTS_FIXTURE_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "ent/store.h"
#include "ent/v1/event.pb-c.h"

struct store_fx {
	char dir[64];
	struct ent_store *s;
	struct ent_view *v;
	struct ent_arena arena;
	struct ent_apply_result res;
};

/** Remove \a dir and everything below it (the test's temporary database). */
void fx_rm_rf(const char *dir);

/** Open the store at o->path and a read view on it; fails the test on error. */
void fx_store_open(const struct ent_store_opts *o, struct ent_store **s, struct ent_view **v);

/** Open f->dir with map size \a map_size (0: the default) and a read view. */
void fx_open(struct store_fx *f, size_t map_size);
/** Close the view and the store (the directory stays). */
void fx_close(struct store_fx *f);

/**
 * cmocka setup: a new fixture in a new /tmp/entd-test-<name>-XXXXXX directory, store open
 * with map size \a map_size (0: the default).
 * \return 0, or -1 when the directory cannot be made.
 */
int fx_setup(void **state, const char *name, size_t map_size);
/** cmocka teardown: close, remove the directory, free. */
int fx_teardown(void **state);

/**
 * Apply \a ev in its own write transaction and commit it. A full map, in ent_store_apply or at the
 * commit (the last pages are written then), is returned as -ENT_EFULL with f->res.err set;
 * any other commit failure fails the test. \return ent_store_apply's result otherwise.
 */
int fx_apply(struct store_fx *f, Ent__V1__Event *ev);
/** fx_apply, and fail the test unless the event was applied. */
void fx_apply_ok(struct store_fx *f, Ent__V1__Event *ev);

/* ---- for the tests that talk gRPC to an in-process server ---- */

/** The realtime clock \a s seconds from now (a call's deadline). */
gpr_timespec fx_in_seconds(int s);
/** \a m packed into a new byte buffer (the caller destroys it). */
grpc_byte_buffer *fx_pack(const ProtobufCMessage *m);

#endif
