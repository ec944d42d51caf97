/*
 * libFuzzer target for the aggregated record decoder: records are read in place from the map,
 * so the decoder must reject any byte string it did not write without reading out of bounds.
 * Decodes at fixed instants and at every segment start the header claims, twice: the input as
 * it is, and the input sealed with a valid checksum trailer (version bit 7 set, CRC32C
 * appended), so the structural checks behind the checksum are fuzzed too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ent/store.h"
#include "store/impl.h"

static void decode_at(const uint8_t *data, size_t size, int64_t t)
{
	struct ent_usage_state u;
	struct ent_agg a;
	if (ent_store_record_decode(data, size, t, &u, &a) != 0)
		return;
	/* A successful decode must describe a sane segment: touch every string it returned. */
	volatile uint8_t sink = 0;
	if (a.n_static > ENT_MAX_STATIC || a.n_privs > ENT_MAX_PRIVS || a.from > t ||
	    (t >= a.to && a.to != ENT_T_MAX))
		abort();
	for (uint32_t i = 0; i < a.n_static; i++)
		for (uint32_t k = 0; k < a.statics[i].len; k++)
			sink ^= (uint8_t)a.statics[i].p[k];
	for (uint32_t i = 0; i < a.n_privs; i++) {
		for (uint32_t k = 0; k < a.privs[i].code.len; k++)
			sink ^= (uint8_t)a.privs[i].code.p[k];
		for (uint32_t k = 0; k < a.privs[i].s.len; k++)
			sink ^= (uint8_t)a.privs[i].s.p[k];
	}
	for (uint32_t k = 0; k < a.override_reason.len; k++)
		sink ^= (uint8_t)a.override_reason.p[k];
	(void)sink;
}

static void run(uint8_t *p, size_t size)
{
	const int64_t fixed[] = {ENT_T_MIN, -1, 0, 1, 1700000000000LL, ENT_T_MAX};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		decode_at(p, size, fixed[i]);
	int n = ent_store_record_header(p, size, NULL);
	for (int i = 0; i < n; i++) {
		int64_t from, to;
		ent_store_record_seg_window(p, i, &from, &to);
		decode_at(p, size, from);
		decode_at(p, size, to - 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A private copy of exactly \a size bytes, so ASan/valgrind see any overread. */
	uint8_t *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	if (size)
		memcpy(p, data, size);
	run(p, size);
	free(p);
	if (size == 0 || size > ENT_RECORD_MAX - 4)
		return 0;
	uint8_t *q = malloc(size + 4);
	if (!q)
		return 0;
	memcpy(q, data, size);
	q[0] |= 0x80;
	uint32_t c = ent_crc32c(0, q, size);
	q[size] = (uint8_t)c;
	q[size + 1] = (uint8_t)(c >> 8);
	q[size + 2] = (uint8_t)(c >> 16);
	q[size + 3] = (uint8_t)(c >> 24);
	run(q, size + 4);
	free(q);
	return 0;
}
