/* Pieces of training and evaluation that the PyTorch step test does not reach: the learning-rate schedule,
 * BN recalibration's exact average, and the stand-alone network being the supernet's path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hsconas/config.h"
#include "hsconas/space.h"
#include "hsconas/supernet.h"
#include "hsconas/train.h"

/* Hand-computed values: warm-up over 10 steps to 0.1, then linear or half-cosine decay over 90 steps. */
static void t_lr_schedule(hsc_test *t) {
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 0, 100), 0.01, 1e-12);  /* (0 + 1) / 10 of the peak */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 9, 100), 0.1, 1e-12);   /* last warm-up step: the peak */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 10, 100), 0.1, 1e-12);  /* decay starts at the peak */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 55, 100), 0.05, 1e-12); /* half way through 90 steps */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 99, 100), 0.1 / 90, 1e-12);
  T_NEAR(t, hsc_lr_at("cosine", 0.1, 10, 55, 100), 0.05, 1e-12); /* cos(pi/2) = 0 */
  T_NEAR(t, hsc_lr_at("cosine", 0.1, 10, 25, 100), 0.05 * (1 + cos(M_PI / 6)), 1e-12);
  T_NEAR(t, hsc_lr_at("cosine", 0.1, 0, 0, 100), 0.1, 1e-12); /* no warm-up */
  /* Monotone non-increasing after the warm-up, positive before the end. */
  for (const char *s = "linear";; s = "cosine") {
    double prev = 1e9;
    for (int64_t i = 10; i < 100; i++) {
      const double lr = hsc_lr_at(s, 0.1, 10, i, 100);
      T_CHECK(t, lr <= prev && lr > 0.0);
      prev = lr;
    }
    if (!strcmp(s, "cosine")) break;
  }
}

typedef struct {
  hsc_config cfg;
  hsc_space space;
  hsc_arch arch;
} small_space;

static int small_space_init(hsc_test *t, small_space *s) {
  static const char *const sets[] = {"space.input_size=12",          "space.stem_channels=8",
                                     "space.stage_channels=[16,32]", "space.stage_blocks=[2,1]",
                                     "space.stage_strides=[2,1]",    "space.head_channels=24",
                                     "space.scales=[0.5,1.0,1.5]"};
  if (!tu_space(t, &s->cfg, &s->space, sets, (int)ARRAY_LEN(sets))) return 0;
  hsc_error err = {0};
  if (hsc_arch_parse(&s->space, "xception:1.0,shuffle5:0.5,shuffle7:1.5", &s->arch, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return 0;
  }
  return 1;
}

/* After recalibration on K batches, a BN's running mean is the mean of its K batch means and its running
 * variance the mean of the K unbiased batch variances (torch's momentum=None). Checked on the stem BN,
 * whose input does not depend on other BN statistics; each batch's own statistics come from a one-batch
 * recalibration (momentum 1: running = that batch's statistics). */
static void t_recal_average(hsc_test *t) {
  small_space s;
  if (!small_space_init(t, &s)) return;
  hsc_error err = {0};
  hsc_supernet *net = NULL;
  enum { N = 5, K = 3 };
  if (hsc_supernet_create(&net, &s.space, NULL, t->be, t->ctx, N, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return;
  }
  hsc_supernet_init_weights(net, 3);
  const hsc_param_table *st = hsc_supernet_state(net);
  const int im = hsc_param_find(st, "stem.bn.mean"), iv = hsc_param_find(st, "stem.bn.var");
  T_REQUIRE(t, im >= 0 && iv >= 0);
  const int c = (int)st->v[im].count, hw = 12 * 12;
  double want_mean[16] = {0}, want_var[16] = {0};
  /* Each batch's statistics alone. */
  float *xs[K];
  for (int k = 0; k < K; k++) {
    xs[k] = tu_randn(500 + (uint64_t)k, (size_t)N * hw, 1.0f + 0.5f * (float)k);
    hsc_supernet_load_batch(net, N, xs[k], NULL);
    hsc_supernet_recal_begin(net); /* one-batch recalibration: running = this batch's statistics */
    hsc_supernet_forward(net, &s.arch, HSC_BN_RECAL);
    for (int ci = 0; ci < c; ci++) {
      want_mean[ci] += hsc_supernet_stats(net)[st->v[im].offset + ci] / K;
      want_var[ci] += hsc_supernet_stats(net)[st->v[iv].offset + ci] / K;
    }
  }
  /* One K-batch recalibration. */
  hsc_supernet_recal_begin(net);
  for (int k = 0; k < K; k++) {
    hsc_supernet_load_batch(net, N, xs[k], NULL);
    hsc_supernet_forward(net, &s.arch, HSC_BN_RECAL);
  }
  for (int ci = 0; ci < c; ci++) {
    T_NEAR(t, hsc_supernet_stats(net)[st->v[im].offset + ci], want_mean[ci],
           1e-5 * (1 + fabs(want_mean[ci])));
    T_NEAR(t, hsc_supernet_stats(net)[st->v[iv].offset + ci], want_var[ci], 1e-5 * (1 + fabs(want_var[ci])));
  }
  for (int ci = 0; ci < c; ci++) T_CHECK(t, want_var[ci] > 0 && isfinite(want_var[ci]));
  for (int k = 0; k < K; k++) free(xs[k]);
  hsc_supernet_free(net);
}

/* The stand-alone network of an architecture, given the supernet's leading slices, gamma = 1 and beta = 0,
 * computes the supernet's path: same logits in training mode. Checks that `retrain` trains the network
 * the search evaluated. Tolerance: the same operators on differently strided weights (the GEMMs may
 * block differently), rtol 1e-5. */
static void t_standalone_is_path(hsc_test *t) {
  small_space s;
  if (!small_space_init(t, &s)) return;
  hsc_error err = {0};
  hsc_supernet *sup = NULL, *alone = NULL;
  enum { N = 4 };
  if (hsc_supernet_create(&sup, &s.space, NULL, t->be, t->ctx, N, &err) != HSC_OK ||
      hsc_supernet_create(&alone, &s.space, &s.arch, t->be, t->ctx, N, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    hsc_supernet_free(sup);
    return;
  }
  hsc_supernet_init_weights(sup, 8);
  hsc_supernet_init_weights(alone, 9);
  const hsc_param_table *ps = hsc_supernet_params(sup), *pa = hsc_supernet_params(alone);
  float *ws = hsc_supernet_weights(sup), *wa = hsc_supernet_weights(alone);
  int copied = 0;
  for (int i = 0; i < pa->n; i++) {
    const hsc_param *a = &pa->v[i];
    const size_t len = strlen(a->name);
    if (len > 6 && !strcmp(a->name + len - 6, ".gamma")) {
      for (size_t j = 0; j < a->count; j++) wa[a->offset + j] = 1.0f;
      continue;
    }
    if (len > 5 && !strcmp(a->name + len - 5, ".beta")) {
      for (size_t j = 0; j < a->count; j++) wa[a->offset + j] = 0.0f;
      continue;
    }
    const int k = hsc_param_find(ps, a->name);
    T_REQUIRE(t, k >= 0);
    const hsc_param *p = &ps->v[k];
    T_REQUIRE(t, p->ndim == a->ndim);
    /* Leading slice: rows of a->dims[0], each the first a->count / dims[0] of p's row (kernels whole). */
    const size_t rows = (size_t)a->dims[0], arow = a->count / rows, prow = p->count / (size_t)p->dims[0];
    for (size_t r = 0; r < rows; r++)
      for (size_t j = 0; j < arow; j++) {
        /* For 2-D [out, in] the row holds `in` values; for [c, k, k] and the stem whole rows match. */
        wa[a->offset + r * arow + j] = ws[p->offset + r * prow + j];
      }
    copied++;
  }
  T_CHECK(t, copied > 10);
  float *x = tu_randn(77, (size_t)N * 12 * 12, 1.0f);
  hsc_supernet_load_batch(sup, N, x, NULL);
  hsc_supernet_load_batch(alone, N, x, NULL);
  const float *ls = hsc_supernet_forward(sup, &s.arch, HSC_BN_TRAIN);
  float *keep = tu_copy(ls, (size_t)N * 10);
  const float *la = hsc_supernet_forward(alone, &s.arch, HSC_BN_TRAIN);
  T_CLOSE(t, "stand-alone logits", la, keep, (size_t)N * 10, 1e-5, 1e-6);
  free(keep);
  free(x);
  hsc_supernet_free(sup);
  hsc_supernet_free(alone);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"lr_schedule", t_lr_schedule},
      {"recal_average", t_recal_average},
      {"standalone_is_path", t_standalone_is_path},
  };
  return hsc_test_main("test_train", argc, argv, cases, (int)ARRAY_LEN(cases));
}
