/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the aggregated record
 * (docs/storage.md). Chosen because x86-64 computes it in hardware (SSE4.2 `crc32`, 8 bytes per
 * instruction): a ~100-byte record costs a few dozen cycles on the check path. Elsewhere, and
 * on a CPU without SSE4.2, a byte-at-a-time table gives the same values, only slower.
 *
 * The choice between the two is made once, before main (a constructor), so the hot path reads
 * a constant and takes no lock.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ent/util.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static uint32_t table[256];
static bool have_hw;

__attribute__((constructor)) static void crc32c_setup(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n)
{
	while (n--)
		c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
	uint64_t c64 = c;
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;
		memcpy(&w, p, 8); /* unaligned: records sit anywhere in a page */
		c64 = _mm_crc32_u64(c64, w);
	}
	c = (uint32_t)c64;
	for (; n; n--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}
#endif

uint32_t ent_crc32c(uint32_t crc, const void *data, size_t n)
{
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (have_hw)
		return ~crc_hw(c, data, n);
#endif
	return ~crc_sw(c, data, n);
}
