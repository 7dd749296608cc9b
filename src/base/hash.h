/*
 * FNV-1a, 64 bits: the one hash for ids and file signatures (lock slots,
 * in-memory indexes, caches, review sampling). Not for anything an
 * attacker must not steer: tables keyed by it bound their probing.
 */
#ifndef CSA_BASE_HASH_H
#define CSA_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CSA_FNV_SEED 0xcbf29ce484222325ULL
/* The basis the first modules used (a digit short of FNV's); kept where
 * the values are part of behaviour: lock slots shared with running
 * processes, review sampling that replays repeat exactly. */
#define CSA_FNV_SEED_V1 1469598103934665603ULL

/* Continue hash h over n bytes. */
static inline uint64_t csa_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* Continue hash h over a NUL-terminated string. */
static inline uint64_t csa_fnv1a_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

#endif
