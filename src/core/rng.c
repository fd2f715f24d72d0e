/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11), written from the published round function:
 * each round multiplies two counter words by fixed constants and mixes the 64-bit products with the other
 * words and the key; the key is bumped by the Weyl constants between rounds. Checked against the Random123
 * known-answer vectors in tests/test_core.c. */
#include <assert.h>
#include <math.h>

#include "hsconas/rng.h"

enum {
  PHILOX_M0 = 0xD2511F53u,
  PHILOX_M1 = 0xCD9E8D57u,
  PHILOX_W0 = 0x9E3779B9u,
  PHILOX_W1 = 0xBB67AE85u,
  PHILOX_ROUNDS = 10
};

void hsc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < PHILOX_ROUNDS; r++) {
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

void hsc_rng_init(hsc_rng *r, uint64_t seed, hsc_rng_purpose purpose, uint64_t index) {
  /* key = seed mixed with the purpose; counter = (index, position). The purpose goes into the high key
   * word through an odd multiplier so that (seed, purpose) pairs do not collide for seeds < 2^32. */
  r->key[0] = (uint32_t)seed;
  r->key[1] = (uint32_t)(seed >> 32) ^ ((uint32_t)purpose * 0x9E3779B1u);
  r->ctr[0] = 0; /* position, low */
  r->ctr[1] = 0; /* position, high */
  r->ctr[2] = (uint32_t)index;
  r->ctr[3] = (uint32_t)(index >> 32);
  r->avail = 0;
}

uint32_t hsc_rng_u32(hsc_rng *r) {
  if (r->avail == 0) {
    hsc_philox4x32(r->ctr, r->key, r->buf);
    if (++r->ctr[0] == 0) ++r->ctr[1];
    r->avail = 4;
  }
  return r->buf[4 - r->avail--];
}

uint64_t hsc_rng_u64(hsc_rng *r) {
  uint64_t hi = hsc_rng_u32(r);
  return (hi << 32) | hsc_rng_u32(r);
}

float hsc_rng_uniform(hsc_rng *r) { return (float)(hsc_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

uint32_t hsc_rng_below(hsc_rng *r, uint32_t n) {
  /* Rejection on the top of the range keeps every value equally likely. */
  uint32_t limit = UINT32_MAX - UINT32_MAX % n;
  uint32_t v;
  do v = hsc_rng_u32(r);
  while (v >= limit);
  return v % n;
}

float hsc_rng_normal(hsc_rng *r) {
  /* Box-Muller; u1 in (0, 1] so the log is finite. */
  double u1 = ((double)hsc_rng_u32(r) + 1.0) / 4294967296.0;
  double u2 = (double)hsc_rng_u32(r) / 4294967296.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void hsc_rng_fill_normal(hsc_rng *r, float *x, size_t n, float mean, float std) {
  for (size_t i = 0; i < n; i++) x[i] = mean + std * hsc_rng_normal(r);
}

void hsc_rng_fill_uniform(hsc_rng *r, float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * hsc_rng_uniform(r);
}

void hsc_rng_permute(int32_t *perm, int n, uint64_t seed, hsc_rng_purpose purpose, uint64_t index) {
  assert(n >= 0);
  hsc_rng r;
  hsc_rng_init(&r, seed, purpose, index);
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)hsc_rng_below(&r, (uint32_t)i + 1);
    int32_t tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
}
