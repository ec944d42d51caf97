/*
 * libFuzzer target: untrusted bytes -> ent_json_to_events (the Import RPC runs it on every
 * document before anything is written). It must never crash, leak or read out of bounds, and a
 * success must hand back events that all have a kind and a path.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ent/json.h"
#include "ent/v1/event.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ent_arena arena;
	struct ent_err err = {0};
	Ent__V1__Event **events;
	const char **paths;
	size_t n = 0;
	ent_arena_init(&arena, 0);
	int rc = ent_json_to_events_paths((const char *)data, size, &arena, &events, &paths, &n,
					  &err);
	if (rc == 0) {
		for (size_t i = 0; i < n; i++) {
			if (!events[i] || events[i]->kind_case == ENT__V1__EVENT__KIND__NOT_SET ||
			    !paths[i])
				abort();
		}
	} else if (err.code == 0 || err.msg[0] == '\0') {
		abort(); /* every failure explains itself */
	}
	ent_arena_deinit(&arena);
	return 0;
}
