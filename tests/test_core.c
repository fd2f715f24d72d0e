/* Core: Philox known answers, stream properties, error values. */
#include <math.h>
#include <string.h>

#include "harness.h"
#include "hsconas/rng.h"

/* Known-answer vectors of Random123 (kat_vectors, philox4x32 10): counter, key, expected output. */
static void t_philox_kat(hsc_test *t) {
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
       0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
       0x5001e420, 0x24126ea1},
  };
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    hsc_philox4x32(kat[i], kat[i] + 4, out);
    for (int j = 0; j < 4; j++) T_EQ_INT(t, out[j], kat[i][6 + j]);
  }
}

/* Streams are pure functions of (seed, purpose, index): equal inputs give equal draws, any change gives
 * different ones. */
static void t_rng_streams(hsc_test *t) {
  hsc_rng a, b, c, d;
  hsc_rng_init(&a, 42, HSC_RNG_PATH, 7);
  hsc_rng_init(&b, 42, HSC_RNG_PATH, 7);
  hsc_rng_init(&c, 42, HSC_RNG_DATA, 7);
  hsc_rng_init(&d, 42, HSC_RNG_PATH, 8);
  int same_ab = 1, same_ac = 1, same_ad = 1;
  for (int i = 0; i < 100; i++) {
    uint32_t va = hsc_rng_u32(&a), vb = hsc_rng_u32(&b), vc = hsc_rng_u32(&c), vd = hsc_rng_u32(&d);
    same_ab &= va == vb;
    same_ac &= va == vc;
    same_ad &= va == vd;
  }
  T_CHECK(t, same_ab);
  T_CHECK(t, !same_ac);
  T_CHECK(t, !same_ad);
}

/* Moments of the uniform and normal draws over 200k samples: mean and variance within 5 standard errors. */
static void t_rng_moments(hsc_test *t) {
  enum { N = 200000 };
  hsc_rng r;
  hsc_rng_init(&r, 1, HSC_RNG_TEST, 0);
  double s = 0, s2 = 0, n1 = 0, n2 = 0;
  for (int i = 0; i < N; i++) {
    double u = hsc_rng_uniform(&r);
    T_REQUIRE(t, u >= 0.0 && u < 1.0);
    s += u;
    s2 += u * u;
    double z = hsc_rng_normal(&r);
    n1 += z;
    n2 += z * z;
  }
  T_NEAR(t, s / N, 0.5, 5 * sqrt(1.0 / 12 / N));
  T_NEAR(t, s2 / N - (s / N) * (s / N), 1.0 / 12, 5 * sqrt(1.0 / 180 / N));
  T_NEAR(t, n1 / N, 0.0, 5 * sqrt(1.0 / N));
  T_NEAR(t, n2 / N, 1.0, 5 * sqrt(2.0 / N));
  /* hsc_rng_below: every bucket of 7 hit about N/7 times. */
  int hist[7] = {0};
  for (int i = 0; i < N; i++) hist[hsc_rng_below(&r, 7)]++;
  for (int i = 0; i < 7; i++) T_NEAR(t, hist[i], N / 7.0, 5 * sqrt(N / 7.0));
}

static void t_error_values(hsc_test *t) {
  hsc_error err = {0};
  hsc_status s = hsc_error_set(&err, HSC_ERR_INPUT, "%s:%d: bad key '%s'", "x.yaml", 3, "a.b");
  T_EQ_INT(t, s, HSC_ERR_INPUT);
  T_EQ_INT(t, err.code, HSC_ERR_INPUT);
  T_CHECK(t, !strcmp(err.msg, "x.yaml:3: bad key 'a.b'"));
  T_CHECK(t, !strcmp(hsc_status_name(HSC_ERR_STOPPED), "stopped by a signal"));
  T_EQ_INT(t, hsc_error_set(NULL, HSC_ERR_IO, "ignored"), HSC_ERR_IO);
}

static void t_backend_registry(hsc_test *t) {
  hsc_error err = {0};
  T_CHECK(t, hsc_backend_find("cpu", &err) != NULL);
  T_CHECK(t, hsc_backend_find("tpu", &err) == NULL);
  T_EQ_INT(t, err.code, HSC_ERR_INPUT);
  T_CHECK(t, strstr(err.msg, "tpu") != NULL);
  hsc_region r[2] = {{.offset = 0, .rows = 3, .cols = 4, .ld = 8},
                     {.offset = 40, .rows = 1, .cols = 5, .ld = 5}};
  T_EQ_INT(t, hsc_regions_count(r, 2), 17);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"philox_kat", t_philox_kat},
      {"rng_streams", t_rng_streams},
      {"rng_moments", t_rng_moments},
      {"error_values", t_error_values},
      {"backend_registry", t_backend_registry},
  };
  return hsc_test_main("test_core", argc, argv, cases, (int)ARRAY_LEN(cases));
}
