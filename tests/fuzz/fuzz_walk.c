/*
 * libFuzzer target for the batched B-tree walk (src/store/walk.c, walk_cache.c), which reads
 * LMDB's page format directly from the map: it must stay inside the map whatever a damaged page
 * holds, and never call a key found that is not there.
 *
 * Each input builds a sound B-tree image in LMDB 0.9's layout (512-byte pages, so a few hundred
 * keys make three or four levels and the branch-page cache is used), then damages it:
 *   byte 0      number of keys (16 + 2 * b), byte 1: value length, byte 2: bit 0 use the cache,
 *               bit 1 cache the lowest branch level too;
 *   then        mutations of 3 bytes each: u16 offset into the image (modulo its size), u8 XOR.
 * Every inserted key and some absent ones are walked, in groups of WALK_GROUP. Checks: with no
 * mutation, every inserted key is found with its value and no absent key is; always, a found
 * key's node key equals the key byte for byte and its value lies inside the image (the image is
 * a heap block of exactly its size, so ASan sees any read past it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/walk.h"

#define PSIZE 512
#define MAXK  400

struct img {
	uint8_t *p;
	size_t npages, cap;
};

static uint8_t *new_page(struct img *m, unsigned flags, uint64_t *pgno)
{
	if (m->npages == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->p = realloc(m->p, m->cap * PSIZE);
	}
	*pgno = m->npages++;
	uint8_t *p = m->p + *pgno * PSIZE;
	memset(p, 0, PSIZE);
	memcpy(p, pgno, 8);
	uint16_t f = (uint16_t)flags, lower = WALK_PAGEHDR, upper = PSIZE;
	memcpy(p + 10, &f, 2);
	memcpy(p + 12, &lower, 2);
	memcpy(p + 14, &upper, 2);
	return p;
}

/* Append a node of \a len bytes (header included) if it fits; returns it or NULL. */
static uint8_t *add_node(uint8_t *p, size_t len)
{
	uint16_t lower = rd16(p + 12), upper = rd16(p + 14);
	size_t even = (len + 1) & ~(size_t)1;
	if ((size_t)lower + 2 + even > upper)
		return NULL;
	upper = (uint16_t)(upper - even);
	memcpy(p + lower, &upper, 2);
	lower = (uint16_t)(lower + 2);
	memcpy(p + 12, &lower, 2);
	memcpy(p + 14, &upper, 2);
	return p + upper;
}

static void node_hdr(uint8_t *n, uint64_t lohi, unsigned ksize)
{
	uint16_t a = (uint16_t)lohi, b = (uint16_t)(lohi >> 16), c = (uint16_t)(lohi >> 32),
		 k = (uint16_t)ksize;
	memcpy(n, &a, 2);
	memcpy(n + 2, &b, 2);
	memcpy(n + 4, &c, 2);
	memcpy(n + 6, &k, 2);
}

static size_t make_key(char *b, unsigned i)
{
	return (size_t)snprintf(b, 64, "cust%05u", i * 7) + 1 +
	       (size_t)snprintf(b + 10, 54, "f%u", i % 13);
}

struct level {
	uint64_t pgno[MAXK];
	char first[MAXK][64];
	size_t first_len[MAXK];
	size_t n;
};

/* Build the tree of keys 0..nk-1 (already in order); returns the depth, sets the root. */
static unsigned build(struct img *m, unsigned nk, unsigned vlen, uint64_t *root)
{
	static struct level a, b;
	struct level *cur = &a, *up = &b;
	cur->n = 0;
	uint64_t pg;
	uint8_t *p = NULL;
	for (unsigned i = 0; i < nk; i++) {
		char k[64];
		size_t kl = make_key(k, i);
		size_t len = WALK_NODEHDR + kl + vlen;
		uint8_t *n = p ? add_node(p, len) : NULL;
		if (!n) {
			p = new_page(m, WALK_P_LEAF, &pg);
			n = add_node(p, len);
			cur->pgno[cur->n] = pg;
			memcpy(cur->first[cur->n], k, kl);
			cur->first_len[cur->n++] = kl;
		}
		node_hdr(n, vlen, (unsigned)kl);
		memcpy(n + WALK_NODEHDR, k, kl);
		memset(n + WALK_NODEHDR + kl, (int)(i & 0xff), vlen);
	}
	unsigned depth = 1;
	while (cur->n > 1) {
		up->n = 0;
		p = NULL;
		for (size_t i = 0; i < cur->n; i++) {
			size_t kl = up->n == 0 || !p ? 0 : cur->first_len[i];
			uint8_t *n = p ? add_node(p, WALK_NODEHDR + cur->first_len[i]) : NULL;
			if (!n) {
				p = new_page(m, WALK_P_BRANCH, &pg);
				n = add_node(p, WALK_NODEHDR); /* node 0: no key */
				kl = 0;
				up->pgno[up->n] = pg;
				memcpy(up->first[up->n], cur->first[i], cur->first_len[i]);
				up->first_len[up->n++] = cur->first_len[i];
			} else {
				kl = cur->first_len[i];
			}
			node_hdr(n, cur->pgno[i], (unsigned)kl);
			memcpy(n + WALK_NODEHDR, cur->first[i], kl);
		}
		struct level *t = cur;
		cur = up;
		up = t;
		depth++;
	}
	*root = cur->pgno[0];
	return depth;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ent_view view; /* only its walk cache fields are used */
	static uint64_t txnid;
	if (size < 3)
		return 0;
	unsigned nk = 16 + 2u * data[0], vlen = data[1] % 48;
	if (nk > MAXK)
		nk = MAXK;
	struct img m = {0};
	uint64_t pg;
	new_page(&m, 0, &pg); /* pages 0 and 1: the meta pages, never walked */
	new_page(&m, 0, &pg);
	uint64_t root;
	unsigned depth = build(&m, nk, vlen, &root);
	/* An exact-size heap copy: ASan flags any read past the map. */
	size_t len = m.npages * PSIZE;
	uint8_t *image = malloc(len);
	memcpy(image, m.p, len);
	free(m.p);
	bool mutated = false;
	for (size_t i = 3; i + 3 <= size; i += 3) {
		size_t off = ((size_t)data[i] | (size_t)data[i + 1] << 8) % len;
		image[off] ^= data[i + 2];
		mutated |= data[i + 2] != 0;
	}
	struct ent_walk_tree t = {.base = image,
				  .psize = PSIZE,
				  .root = root,
				  .last_pgno = m.npages - 1,
				  .txnid = ++txnid,
				  .depth = depth};
	if (data[2] & 1) {
		view.walk_low_after = data[2] & 2 ? 0 : UINT64_MAX;
		ent_store_walk_cache_begin(&view, &t, nk);
	}
	/* The inserted keys, then as many absent ones (ids between the inserted ones). */
	for (unsigned first = 0; first < 2 * nk; first += WALK_GROUP) {
		struct walk_key w[WALK_GROUP];
		size_t n = 0;
		for (unsigned i = first; i < 2 * nk && n < WALK_GROUP; i++, n++) {
			char k[64];
			size_t kl = i < nk ? make_key(k, i)
					   : (size_t)snprintf(k, sizeof(k), "cust%05u",
							      (i - nk) * 7 + 3) +
						     1;
			memset(&w[n], 0, sizeof(w[n]));
			memcpy(w[n].key.b, k, kl);
			w[n].key.len = (uint32_t)kl;
			w[n].state = 1;
		}
		ent_store_walk_descend(&t, w, n);
		for (size_t j = 0; j < n; j++) {
			unsigned i = first + (unsigned)j;
			if (w[j].state == 1) {
				const uint8_t *v = w[j].val.mv_data;
				if (v < image || v + w[j].val.mv_size > image + len)
					abort(); /* a value outside the map */
				const uint8_t *node = w[j].node;
				if (rd16(node + 6) != w[j].key.len ||
				    memcmp(node + WALK_NODEHDR, w[j].key.b, w[j].key.len))
					abort(); /* found a key that is not ours */
			}
			if (!mutated) {
				bool want = i < nk;
				if ((w[j].state == 1) != want)
					abort(); /* a sound tree walked wrong */
				if (want && (w[j].val.mv_size != vlen ||
					     (vlen && ((const uint8_t *)w[j].val.mv_data)[0] !=
							      (uint8_t)(i & 0xff))))
					abort();
			}
		}
	}
	free(image);
	return 0;
}
