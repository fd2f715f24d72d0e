/* Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3", SC'11). Every random draw in hsconas is a pure function of (seed, purpose, index, position),
 * so a resumed run or a run on another rank count reproduces it without saving generator state beyond
 * the counters (DESIGN.md §5). */
#ifndef HSCONAS_RNG_H
#define HSCONAS_RNG_H

#include <stddef.h>
#include <stdint.h>

/* What a stream is for; part of the key so that streams for different purposes never overlap. */
typedef enum {
  HSC_RNG_TEST = 0, /* test inputs */
  HSC_RNG_INIT = 1, /* parameter initialisation */
  HSC_RNG_PATH = 2, /* training path of step t */
  HSC_RNG_DATA = 3, /* data order of epoch e */
  HSC_RNG_AUGMENT = 4,
  HSC_RNG_SEARCH = 5, /* genes of candidate i */
  HSC_RNG_PROFILE = 6,
  HSC_RNG_SPLIT = 7, /* the fixed train/validation split */
  HSC_RNG_PURPOSE_COUNT
} hsc_rng_purpose;

/* One Philox4x32-10 block: 4 words of output for a 128-bit counter and a 64-bit key. */
void hsc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A stream: key = (seed, purpose), counter = (index, position). Cheap to create; copyable. */
typedef struct {
  uint32_t key[2];
  uint32_t ctr[4];
  uint32_t buf[4];
  int avail; /* unread words left in buf */
} hsc_rng;

void hsc_rng_init(hsc_rng *r, uint64_t seed, hsc_rng_purpose purpose, uint64_t index);
uint32_t hsc_rng_u32(hsc_rng *r);
uint64_t hsc_rng_u64(hsc_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float hsc_rng_uniform(hsc_rng *r);
/* Uniform in [0, n), unbiased (rejection). n > 0. */
uint32_t hsc_rng_below(hsc_rng *r, uint32_t n);
/* Standard normal (Box-Muller on two 32-bit uniforms, double precision internally). */
float hsc_rng_normal(hsc_rng *r);
/* Fills x[0..n) with mean + std * N(0, 1). */
void hsc_rng_fill_normal(hsc_rng *r, float *x, size_t n, float mean, float std);
/* Fills x[0..n) with uniform values in [lo, hi). */
void hsc_rng_fill_uniform(hsc_rng *r, float *x, size_t n, float lo, float hi);

/* perm [n] = a permutation of 0..n-1: Fisher-Yates from the top (for i = n-1 .. 1, swap i with
 * hsc_rng_below(i + 1)) on the stream (seed, purpose, index). n draws at most; O(n). The data split, the
 * epoch order and the profiler's rounds all shuffle this way. */
void hsc_rng_permute(int32_t *perm, int n, uint64_t seed, hsc_rng_purpose purpose, uint64_t index);

#endif
