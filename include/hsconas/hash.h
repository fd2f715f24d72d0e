/* 64-bit FNV-1a (Fowler, Noll, Vo; offset basis 0xcbf29ce484222325, prime 0x100000001b3): the hash of
 * architectures, spaces and configurations. Integers are fed as 8 bytes, least significant first, so a hash
 * does not depend on the machine's byte order; doubles as their IEEE-754 bit patterns. */
#ifndef HSCONAS_HASH_H
#define HSCONAS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HSC_FNV1A_BASIS 0xcbf29ce484222325ULL
#define HSC_FNV1A_PRIME 0x100000001b3ULL

static inline uint64_t hsc_fnv1a_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= HSC_FNV1A_PRIME;
  }
  return h;
}

static inline uint64_t hsc_fnv1a_u64(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= HSC_FNV1A_PRIME;
  }
  return h;
}

static inline uint64_t hsc_fnv1a_double(uint64_t h, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  return hsc_fnv1a_u64(h, bits);
}

#endif
