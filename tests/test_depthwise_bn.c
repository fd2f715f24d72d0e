/* Depthwise convolution and batch normalisation on the CPU backend, called through the backend table as
 * the training code does.
 *
 * Forward results are compared with plain loops written here in double (depthwise) or with the formulas
 * (batch norm: zero mean and unit variance without affine parameters, hand-computed running statistics).
 * Every gradient is checked against central finite differences of L = sum(y * r) for a fixed random r
 * (L in double; dy = r). Every backward also runs into pre-filled gradient buffers (it must add) and with
 * NULL gradients (it must skip them), and contexts with 1 and 3 threads must give the same bits. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static float *zeros(size_t n) { return hsc_xcalloc(n + 16, sizeof(float)); }

static float *filled(size_t n, float v) {
  float *p = zeros(n);
  for (size_t i = 0; i < n; i++) p[i] = v;
  return p;
}

/* A copy of p [n] in a buffer of exactly n floats (the harness's allocations have slack at the end), so
 * that the sanitizer build catches a read past the tensor. */
static float *exact_copy(const float *p, size_t n) {
  float *q = hsc_xmalloc(n * sizeof(float));
  memcpy(q, p, n * sizeof(float));
  return q;
}

static size_t bits_differ(const float *a, const float *b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return d;
}

/* Counts the elements of p [n] that are not v (a region an operator must leave alone). */
static size_t count_not(const float *p, size_t n, float v) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += p[i] != v;
  return d;
}

static hsc_backend_ctx *ctx_with_threads(hsc_test *t, int threads) {
  hsc_backend_ctx *ctx = NULL;
  hsc_error err = {0};
  hsc_backend_opts opts = {.threads = threads, .device = -1};
  if (t->be->init(&ctx, &opts, &err) != HSC_OK) {
    T_FAIL(t, "cannot start a %d-thread cpu context: %s", threads, err.msg);
    return NULL;
  }
  return ctx;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Depthwise convolution */

/* Channels used (c) and allocated in the weight (CMAX): the leading-slice convention. */
enum { DW_C = 3, DW_CMAX = 5, DW_N = 2 };

typedef struct {
  int h, w;
} size2;

/* Odd and even sizes, sizes below k, a 1x1 plane, a single row; large enough (>= 16 grid cells) to take
 * the vector blocks, small enough to take the short path. The last plane of each tensor takes the exact
 * (no read past the tensor) copies; 1x10 is a plane shorter than one over-long stride-2 row read. */
static const size2 dw_sizes[] = {{7, 9}, {5, 5}, {1, 1}, {2, 3}, {9, 10}, {10, 12}, {1, 10}};

static size_t dw_xcount(const hsc_depthwise_desc *d) { return (size_t)d->n * d->c * d->h * d->w; }
static size_t dw_ycount(const hsc_depthwise_desc *d) {
  return (size_t)d->n * d->c * hsc_depthwise_out(d->h, d->k, d->stride) *
         hsc_depthwise_out(d->w, d->k, d->stride);
}

/* Plain loops in double: y [n, c, ho, wo] = x [n, c, h, w] correlated with w [c.., k, k], padding k/2. */
static void dw_ref_forward(const hsc_depthwise_desc *d, const float *x, const float *w, double *y) {
  const int k = d->k, p = k / 2, s = d->stride;
  const int ho = hsc_depthwise_out(d->h, k, s), wo = hsc_depthwise_out(d->w, k, s);
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->c; c++)
      for (int i = 0; i < ho; i++)
        for (int j = 0; j < wo; j++) {
          double acc = 0.0;
          for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) {
              const int ii = i * s + a - p, jj = j * s + b - p;
              if (ii < 0 || ii >= d->h || jj < 0 || jj >= d->w) continue;
              acc += (double)x[(((size_t)n * d->c + c) * d->h + ii) * d->w + jj] * w[(c * k + a) * k + b];
            }
          y[(((size_t)n * d->c + c) * ho + i) * wo + j] = acc;
        }
}

/* The transpose of dw_ref_forward in double: dx [n, c, h, w] and dw [c, k, k] from dy [n, c, ho, wo]. */
static void dw_ref_backward(const hsc_depthwise_desc *d, const float *x, const float *w, const float *dy,
                            double *dx, double *dw) {
  const int k = d->k, p = k / 2, s = d->stride;
  const int ho = hsc_depthwise_out(d->h, k, s), wo = hsc_depthwise_out(d->w, k, s);
  memset(dx, 0, dw_xcount(d) * sizeof(double));
  memset(dw, 0, (size_t)d->c * k * k * sizeof(double));
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->c; c++)
      for (int i = 0; i < ho; i++)
        for (int j = 0; j < wo; j++) {
          const double g = dy[(((size_t)n * d->c + c) * ho + i) * wo + j];
          for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) {
              const int ii = i * s + a - p, jj = j * s + b - p;
              if (ii < 0 || ii >= d->h || jj < 0 || jj >= d->w) continue;
              const size_t xi = (((size_t)n * d->c + c) * d->h + ii) * d->w + jj;
              dx[xi] += g * w[(c * k + a) * k + b];
              dw[(c * k + a) * k + b] += g * x[xi];
            }
        }
}

static float *to_float(const double *v, size_t n) {
  float *f = zeros(n);
  for (size_t i = 0; i < n; i++) f[i] = (float)v[i];
  return f;
}

/* Forward against dw_ref_forward, for every k and stride, the odd sizes above and supernet-sized planes
 * (28x28, 14x14, 7x7), where the vector blocks and the whole-plane stride-2 split run. Tolerance: float
 * sums of at most 49 products of N(0, 1) values; the rounding error is below 49 * 2^-24 * sum |terms|
 * ~ 2e-4 in the worst case and ~1e-6 in practice, so rtol 1e-5 + atol 1e-4 fails any wrong tap (which is
 * off by ~1). */
static void t_dw_forward(hsc_test *t) {
  static const size2 big[] = {{28, 28}, {14, 14}, {7, 7}};
  for (int k = 3; k <= 7; k += 2)
    for (int s = 1; s <= 2; s++)
      for (size_t si = 0; si < ARRAY_LEN(dw_sizes) + ARRAY_LEN(big); si++) {
        const size2 sz = si < ARRAY_LEN(dw_sizes) ? dw_sizes[si] : big[si - ARRAY_LEN(dw_sizes)];
        hsc_depthwise_desc d = {.n = DW_N, .c = DW_C, .h = sz.h, .w = sz.w, .k = k, .stride = s};
        const size_t nx = dw_xcount(&d), ny = dw_ycount(&d);
        float *x0 = tu_randn(100 + si, nx, 1.0f), *x = exact_copy(x0, nx);
        float *w = tu_randn(200 + k, (size_t)DW_CMAX * k * k, 1.0f);
        free(x0);
        float *y = filled(ny, NAN);
        double *yd = hsc_xcalloc(ny, sizeof(double));
        t->be->depthwise_forward(t->ctx, &d, x, w, y);
        dw_ref_forward(&d, x, w, yd);
        float *want = to_float(yd, ny);
        char what[96];
        snprintf(what, sizeof what, "depthwise forward k %d stride %d %dx%d", k, s, sz.h, sz.w);
        T_CLOSE(t, what, y, want, ny, 1e-5, 1e-4);
        free(x), free(w), free(y), free(yd), free(want);
      }
}

typedef struct {
  hsc_test *t;
  hsc_depthwise_desc d;
  float *x, *w, *y;
  const float *r;
  size_t ny;
} dw_problem;

static double dw_loss(void *p) {
  dw_problem *q = p;
  q->t->be->depthwise_forward(q->t->ctx, &q->d, q->x, q->w, q->y);
  return tu_dot(q->y, q->r, q->ny);
}

/* dx and dw against central differences, for every k, stride and size above, on a weight allocated for
 * DW_CMAX channels of which DW_C are used: the unused rows of dw must keep their contents. Up to 48
 * elements per tensor (always the first and the last; all of them for the small sizes), to keep the
 * sanitizer build quick: t_dw_backward_large compares every element with the double reference. x and dy
 * sit in buffers of exactly their size, so that a read past the tensor shows in the sanitizer build.
 * L is linear in each x and each w, so the difference quotient has no truncation error; its error is the
 * forward's float rounding in the outputs the perturbed value reaches (at most n * ho * wo ~ 300 outputs
 * of ~2^-24 * 10 each, ~1e-5 in L) divided by 2h = 0.1: ~1e-4. atol 1e-3 + rtol 1e-4 fails a wrong
 * gradient element, which is off by ~|r| ~ 1. */
static void t_dw_grad(hsc_test *t) {
  for (int k = 3; k <= 7; k += 2)
    for (int s = 1; s <= 2; s++)
      for (size_t si = 0; si < ARRAY_LEN(dw_sizes); si++) {
        dw_problem q = {
            .t = t,
            .d = {.n = DW_N, .c = DW_C, .h = dw_sizes[si].h, .w = dw_sizes[si].w, .k = k, .stride = s}};
        const size_t nx = dw_xcount(&q.d), nw = (size_t)DW_CMAX * k * k, used = (size_t)DW_C * k * k;
        q.ny = dw_ycount(&q.d);
        float *x0 = tu_randn(300 + si, nx, 1.0f), *r0 = tu_randn(500 + si, q.ny, 1.0f);
        q.x = exact_copy(x0, nx);
        q.w = tu_randn(400 + k, nw, 1.0f);
        q.y = zeros(q.ny);
        float *r = exact_copy(r0, q.ny), *dx = zeros(nx), *dw = zeros(nw);
        free(x0), free(r0);
        q.r = r;
        for (size_t i = used; i < nw; i++) dw[i] = 7.0f;
        t->be->depthwise_backward(t->ctx, &q.d, q.x, q.w, r, dx, dw);
        char what[96];
        snprintf(what, sizeof what, "depthwise dx k %d stride %d %dx%d", k, s, q.d.h, q.d.w);
        TU_CHECK_GRAD(t, what, dw_loss, &q, q.x, dx, nx, 0.05f, 1e-4, 1e-3, 48);
        snprintf(what, sizeof what, "depthwise dw k %d stride %d %dx%d", k, s, q.d.h, q.d.w);
        TU_CHECK_GRAD(t, what, dw_loss, &q, q.w, dw, used, 0.05f, 1e-4, 1e-3, 48);
        T_EQ_INT(t, count_not(dw + used, nw - used, 7.0f), 0);
        free(q.x), free(q.w), free(q.y), free(r), free(dx), free(dw);
      }
}

/* Supernet-sized planes (the vector blocks, the whole-plane stride-2 split and its scatter back) against
 * dw_ref_backward. dx sums at most 49 products (as the forward: rtol 1e-5 + atol 1e-4); dw sums
 * n * ho * wo <= 1568 products of N(0, 1) values, rounding below 1568 * 2^-24 * 1568 ~ 0.15 in the worst
 * case and ~1e-4 in practice (lane-wise partial sums): rtol 1e-4 + atol 2e-3 against dw entries of
 * size ~40. */
static void t_dw_backward_large(hsc_test *t) {
  static const size2 big[] = {{28, 28}, {14, 14}, {7, 7}, {13, 13}};
  for (int k = 3; k <= 7; k += 2)
    for (int s = 1; s <= 2; s++)
      for (size_t si = 0; si < ARRAY_LEN(big); si++) {
        hsc_depthwise_desc d = {.n = DW_N, .c = DW_C, .h = big[si].h, .w = big[si].w, .k = k, .stride = s};
        const size_t nx = dw_xcount(&d), ny = dw_ycount(&d), nw = (size_t)DW_CMAX * k * k;
        float *x = tu_randn(600 + si, nx, 1.0f), *w = tu_randn(700 + k, nw, 1.0f);
        float *dy = tu_randn(800 + si, ny, 1.0f), *dx = zeros(nx), *dw = zeros(nw);
        double *dxd = hsc_xcalloc(nx, sizeof(double)), *dwd = hsc_xcalloc(nw, sizeof(double));
        t->be->depthwise_backward(t->ctx, &d, x, w, dy, dx, dw);
        dw_ref_backward(&d, x, w, dy, dxd, dwd);
        float *wx = to_float(dxd, nx), *ww = to_float(dwd, (size_t)DW_C * k * k);
        char what[96];
        snprintf(what, sizeof what, "depthwise dx k %d stride %d %dx%d", k, s, d.h, d.w);
        T_CLOSE(t, what, dx, wx, nx, 1e-5, 1e-4);
        snprintf(what, sizeof what, "depthwise dw k %d stride %d %dx%d", k, s, d.h, d.w);
        T_CLOSE(t, what, dw, ww, (size_t)DW_C * k * k, 1e-4, 2e-3);
        free(x), free(w), free(dy), free(dx), free(dw), free(dxd), free(dwd), free(wx), free(ww);
      }
}

/* Backward into pre-filled dx and dw adds; NULL dx or dw skips that gradient and leaves the other
 * unchanged; both NULL does nothing. */
static void t_dw_accumulate(hsc_test *t) {
  for (int s = 1; s <= 2; s++) {
    hsc_depthwise_desc d = {.n = DW_N, .c = DW_C, .h = 14, .w = 14, .k = 5, .stride = s};
    const size_t nx = dw_xcount(&d), ny = dw_ycount(&d), nw = (size_t)DW_CMAX * 25;
    float *x = tu_randn(900, nx, 1.0f), *w = tu_randn(901, nw, 1.0f), *dy = tu_randn(902, ny, 1.0f);
    float *dx0 = zeros(nx), *dw0 = zeros(nw);
    t->be->depthwise_backward(t->ctx, &d, x, w, dy, dx0, dw0);
    float *oldx = tu_randn(903, nx, 1.0f), *oldw = tu_randn(904, nw, 1.0f);
    float *dx = tu_copy(oldx, nx), *dw = tu_copy(oldw, nw);
    t->be->depthwise_backward(t->ctx, &d, x, w, dy, dx, dw);
    TU_CHECK_ACCUMULATED(t, "depthwise dx += ", dx, oldx, dx0, nx);
    TU_CHECK_ACCUMULATED(t, "depthwise dw += ", dw, oldw, dw0, nw);
    T_EQ_INT(t, bits_differ(dw + DW_C * 25, oldw + DW_C * 25, nw - DW_C * 25), 0);

    float *only_dx = zeros(nx), *only_dw = zeros(nw);
    t->be->depthwise_backward(t->ctx, &d, x, w, dy, only_dx, NULL);
    t->be->depthwise_backward(t->ctx, &d, x, w, dy, NULL, only_dw);
    T_EQ_INT(t, bits_differ(only_dx, dx0, nx), 0);
    T_EQ_INT(t, bits_differ(only_dw, dw0, nw), 0);
    t->be->depthwise_backward(t->ctx, &d, x, w, dy, NULL, NULL);
    free(x), free(w), free(dy), free(dx0), free(dw0), free(oldx), free(oldw), free(dx), free(dw);
    free(only_dx), free(only_dw);
  }
}

/* Contexts with 1 and 3 threads give the same bits: every output, dx element and dw entry is computed by
 * one thread in an order that does not depend on the thread count. 5 channels over 3 threads also
 * gives uneven channel blocks. */
static void t_dw_threads(hsc_test *t) {
  hsc_backend_ctx *c1 = ctx_with_threads(t, 1), *c3 = ctx_with_threads(t, 3);
  if (!c1 || !c3) goto done;
  for (int k = 3; k <= 7; k += 2)
    for (int s = 1; s <= 2; s++) {
      hsc_depthwise_desc d = {.n = 3, .c = DW_CMAX, .h = 14, .w = 14, .k = k, .stride = s};
      const size_t nx = dw_xcount(&d), ny = dw_ycount(&d), nw = (size_t)DW_CMAX * k * k;
      float *x = tu_randn(1000, nx, 1.0f), *w = tu_randn(1001, nw, 1.0f), *dy = tu_randn(1002, ny, 1.0f);
      float *y1 = zeros(ny), *y3 = zeros(ny), *dx1 = zeros(nx), *dx3 = zeros(nx), *dw1 = zeros(nw),
            *dw3 = zeros(nw);
      t->be->depthwise_forward(c1, &d, x, w, y1);
      t->be->depthwise_forward(c3, &d, x, w, y3);
      t->be->depthwise_backward(c1, &d, x, w, dy, dx1, dw1);
      t->be->depthwise_backward(c3, &d, x, w, dy, dx3, dw3);
      T_EQ_INT(t, bits_differ(y1, y3, ny), 0);
      T_EQ_INT(t, bits_differ(dx1, dx3, nx), 0);
      T_EQ_INT(t, bits_differ(dw1, dw3, nw), 0);
      free(x), free(w), free(dy), free(y1), free(y3), free(dx1), free(dx3), free(dw1), free(dw3);
    }
done:
  t->be->free(c1);
  t->be->free(c3);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Batch normalisation */

enum { BN_CMAX = 5 };

/* Per-channel mean and biased variance of x [n, c, hw] in double. */
static void bn_ref_stats(const hsc_bn_desc *d, const float *x, int c, double *mean, double *var) {
  const double m = (double)d->n * d->hw;
  double s = 0.0, s2 = 0.0;
  for (int n = 0; n < d->n; n++)
    for (int i = 0; i < d->hw; i++) s += x[((size_t)n * d->c + c) * d->hw + i];
  *mean = s / m;
  for (int n = 0; n < d->n; n++)
    for (int i = 0; i < d->hw; i++) {
      const double v = x[((size_t)n * d->c + c) * d->hw + i] - *mean;
      s2 += v * v;
    }
  *var = s2 / m;
}

/* The training forward in double: y = relu?((x - mean) / sqrt(var + eps) * gamma + beta). */
static void bn_ref_train(const hsc_bn_desc *d, const float *x, const float *gamma, const float *beta,
                         double *y) {
  for (int c = 0; c < d->c; c++) {
    double mean, var;
    bn_ref_stats(d, x, c, &mean, &var);
    const double invstd = 1.0 / sqrt(var + d->eps);
    for (int n = 0; n < d->n; n++)
      for (int i = 0; i < d->hw; i++) {
        const size_t o = ((size_t)n * d->c + c) * d->hw + i;
        double v = (x[o] - mean) * invstd * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0);
        y[o] = d->relu && v < 0 ? 0.0 : v;
      }
  }
}

/* Training forward, n * hw = 15 (odd) and 196, with and without affine and ReLU: y against the double
 * formula (normalised values are O(3); float rounding in mean, invstd and the affine ~1e-6: rtol 1e-5 +
 * atol 2e-5); save_mean and save_invstd against the double statistics (rtol 1e-5); without affine and
 * ReLU, each channel of y has mean 0 (|mean| <= 1e-5) and variance var / (var + eps) (to 1e-4); y in
 * place of x gives the same bits; entries past c of the max-width gamma/beta/stats are not read or
 * written. */
static void t_bn_forward(hsc_test *t) {
  static const int shapes[][2] = {{3, 5}, {4, 49}}; /* n, hw */
  for (size_t si = 0; si < ARRAY_LEN(shapes); si++)
    for (int affine = 0; affine <= 1; affine++)
      for (int relu = 0; relu <= 1; relu++) {
        hsc_bn_desc d = {
            .n = shapes[si][0], .c = 3, .hw = shapes[si][1], .eps = 1e-5f, .momentum = 0.1f, .relu = relu};
        const size_t nx = (size_t)d.n * d.c * d.hw;
        float *x = tu_randn(1100 + si, nx, 2.0f);
        for (size_t i = 0; i < nx; i++) x[i] += 0.5f; /* a non-zero mean */
        float *gamma = affine ? tu_randu(1101, BN_CMAX, 0.5f, 1.5f) : NULL;
        float *beta = affine ? tu_randn(1102, BN_CMAX, 1.0f) : NULL;
        float *y = zeros(nx), *sm = filled(BN_CMAX, 9.0f), *si_ = filled(BN_CMAX, 9.0f);
        t->be->bn_forward_train(t->ctx, &d, x, gamma, beta, NULL, NULL, y, sm, si_);
        double *yd = hsc_xcalloc(nx, sizeof(double));
        bn_ref_train(&d, x, gamma, beta, yd);
        float *want = to_float(yd, nx);
        char what[96];
        snprintf(what, sizeof what, "bn train n %d hw %d affine %d relu %d", d.n, d.hw, affine, relu);
        T_CLOSE(t, what, y, want, nx, 1e-5, 2e-5);
        for (int c = 0; c < d.c; c++) {
          double mean, var;
          bn_ref_stats(&d, x, c, &mean, &var);
          T_NEAR(t, sm[c], mean, 1e-5 * fabs(mean) + 1e-6);
          T_NEAR(t, si_[c], 1.0 / sqrt(var + d.eps), 1e-5 / sqrt(var + d.eps));
          if (affine || relu) continue;
          double ym = 0.0, yv = 0.0;
          for (int n = 0; n < d.n; n++)
            for (int i = 0; i < d.hw; i++) ym += y[((size_t)n * d.c + c) * d.hw + i];
          ym /= (double)d.n * d.hw;
          for (int n = 0; n < d.n; n++)
            for (int i = 0; i < d.hw; i++) {
              const double v = y[((size_t)n * d.c + c) * d.hw + i] - ym;
              yv += v * v;
            }
          yv /= (double)d.n * d.hw;
          T_NEAR(t, ym, 0.0, 1e-5);
          T_NEAR(t, yv, var / (var + d.eps), 1e-4);
        }
        T_EQ_INT(t, count_not(sm + d.c, BN_CMAX - d.c, 9.0f) + count_not(si_ + d.c, BN_CMAX - d.c, 9.0f), 0);
        float *z = tu_copy(x, nx);
        t->be->bn_forward_train(t->ctx, &d, z, gamma, beta, NULL, NULL, z, sm, si_);
        T_EQ_INT(t, bits_differ(z, y, nx), 0);
        free(x), free(gamma), free(beta), free(y), free(sm), free(si_), free(yd), free(want), free(z);
      }
}

/* Running statistics on a hand-computed example: one channel of n = 2, hw = 2 holding 1, 2 | 3, 6:
 * mean 3, biased variance (4 + 1 + 0 + 9) / 4 = 3.5, unbiased 14 / 3. From running (0.5, 2) with
 * momentum 0.1: mean 0.9 * 0.5 + 0.1 * 3 = 0.75, var 0.9 * 2 + 0.1 * 14 / 3 = 2.2666...; the second entry
 * of the max-width buffers (c = 1 of 2) stays as it was. y = (x - 3) / sqrt(3.5 + eps). Float rounding
 * of these O(1) values: 1e-6. */
static void t_bn_running(hsc_test *t) {
  hsc_bn_desc d = {.n = 2, .c = 1, .hw = 2, .eps = 1e-5f, .momentum = 0.1f, .relu = 0};
  float x[4] = {1, 2, 3, 6}, y[4], rm[2] = {0.5f, -4.0f}, rv[2] = {2.0f, 8.0f}, sm[1], sv[1];
  t->be->bn_forward_train(t->ctx, &d, x, NULL, NULL, rm, rv, y, sm, sv);
  T_NEAR(t, rm[0], 0.75, 1e-6);
  T_NEAR(t, rv[0], 0.9 * 2.0 + 0.1 * 14.0 / 3.0, 1e-6);
  T_CHECK(t, rm[1] == -4.0f && rv[1] == 8.0f);
  T_NEAR(t, sm[0], 3.0, 1e-6);
  T_NEAR(t, sv[0], 1.0 / sqrt(3.5 + 1e-5), 1e-6);
  for (int i = 0; i < 4; i++) T_NEAR(t, y[i], (x[i] - 3.0) / sqrt(3.5 + 1e-5), 1e-6);
}

/* Inference: y = relu?((x - rm) / sqrt(rv + eps) * gamma + beta) with the running statistics, with and
 * without affine and ReLU, against the formula in double (rtol 1e-5 + atol 1e-5: a few float roundings of
 * O(3) values). */
static void t_bn_infer(hsc_test *t) {
  for (int affine = 0; affine <= 1; affine++)
    for (int relu = 0; relu <= 1; relu++) {
      hsc_bn_desc d = {.n = 3, .c = 4, .hw = 7, .eps = 1e-3f, .momentum = 0.1f, .relu = relu};
      const size_t nx = (size_t)d.n * d.c * d.hw;
      float *x = tu_randn(1200, nx, 2.0f), *rm = tu_randn(1201, BN_CMAX, 1.0f);
      float *rv = tu_randu(1202, BN_CMAX, 0.5f, 3.0f);
      float *gamma = affine ? tu_randu(1203, BN_CMAX, 0.5f, 1.5f) : NULL;
      float *beta = affine ? tu_randn(1204, BN_CMAX, 1.0f) : NULL;
      float *y = zeros(nx), *want = zeros(nx);
      t->be->bn_forward_infer(t->ctx, &d, x, gamma, beta, rm, rv, y);
      for (int n = 0; n < d.n; n++)
        for (int c = 0; c < d.c; c++)
          for (int i = 0; i < d.hw; i++) {
            const size_t o = ((size_t)n * d.c + c) * d.hw + i;
            double v = (x[o] - (double)rm[c]) / sqrt((double)rv[c] + d.eps) * (gamma ? gamma[c] : 1.0) +
                       (beta ? beta[c] : 0.0);
            want[o] = (float)(relu && v < 0 ? 0.0 : v);
          }
      char what[64];
      snprintf(what, sizeof what, "bn infer affine %d relu %d", affine, relu);
      T_CLOSE(t, what, y, want, nx, 1e-5, 1e-5);
      float *z = tu_copy(x, nx);
      t->be->bn_forward_infer(t->ctx, &d, z, gamma, beta, rm, rv, z);
      T_EQ_INT(t, bits_differ(z, y, nx), 0);
      free(x), free(rm), free(rv), free(gamma), free(beta), free(y), free(want), free(z);
    }
}

typedef struct {
  hsc_test *t;
  hsc_bn_desc d;
  float *x, *gamma, *beta, *y, *sm, *si;
  const float *r;
  size_t nx;
} bn_problem;

static double bn_loss(void *p) {
  bn_problem *q = p;
  q->t->be->bn_forward_train(q->t->ctx, &q->d, q->x, q->gamma, q->beta, NULL, NULL, q->y, q->sm, q->si);
  return tu_dot(q->y, q->r, q->nx);
}

/* Smallest |pre-activation| over the problem, in double: how far the inputs are from the ReLU kink. */
static double bn_min_preact(const bn_problem *q) {
  hsc_bn_desc d = q->d;
  d.relu = 0;
  double *z = hsc_xcalloc(q->nx, sizeof(double)), m = INFINITY;
  bn_ref_train(&d, q->x, q->gamma, q->beta, z);
  for (size_t i = 0; i < q->nx; i++) m = fmin(m, fabs(z[i]));
  free(z);
  return m;
}

/* dx, dgamma, dbeta against central differences with and without affine and fused ReLU, n * hw = 15
 * (odd). With ReLU the inputs are re-drawn until every pre-activation is at least 0.1 from 0: a step of
 * h = 0.01 in one input or parameter moves a pre-activation by at most ~h * 3 (|xhat| <= 3, gamma <= 1.5,
 * invstd ~ 0.5), so L stays smooth within h. Error budget: truncation h^2 / 6 * L''' ~ 1e-5 and the
 * forward's float rounding over the 15 outputs of the channel (~1e-6 in L) / 2h ~ 1e-4; atol 1e-3 +
 * rtol 1e-2, against gradients of O(1) that a wrong term changes by O(0.1..1). */
static void t_bn_grad(hsc_test *t) {
  for (int affine = 0; affine <= 1; affine++)
    for (int relu = 0; relu <= 1; relu++) {
      bn_problem q = {.t = t, .d = {.n = 3, .c = 3, .hw = 5, .eps = 1e-5f, .momentum = 0.1f, .relu = relu}};
      q.nx = (size_t)q.d.n * q.d.c * q.d.hw;
      q.gamma = affine ? tu_randu(1301, BN_CMAX, 0.5f, 1.5f) : NULL;
      q.beta = affine ? tu_randn(1302, BN_CMAX, 0.5f) : NULL;
      for (uint64_t stream = 1400;; stream++) {
        q.x = tu_randn(stream, q.nx, 2.0f);
        if (!relu || bn_min_preact(&q) >= 0.1) break;
        free(q.x);
        if (stream == 1400 + 999) {
          q.x = NULL;
          break;
        }
      }
      if (!q.x) {
        T_FAIL(t, "no input draw keeps 0.1 from the ReLU kink");
        return;
      }
      q.y = zeros(q.nx);
      q.sm = zeros(BN_CMAX);
      q.si = zeros(BN_CMAX);
      float *r = tu_randn(1303, q.nx, 1.0f), *dx = zeros(q.nx), *dg = zeros(BN_CMAX), *db = zeros(BN_CMAX);
      q.r = r;
      bn_loss(&q); /* y, save_mean, save_invstd at the unperturbed point */
      t->be->bn_backward(t->ctx, &q.d, q.x, q.y, q.gamma, q.sm, q.si, r, dx, affine ? dg : NULL,
                         affine ? db : NULL);
      char what[96];
      snprintf(what, sizeof what, "bn dx affine %d relu %d", affine, relu);
      TU_CHECK_GRAD(t, what, bn_loss, &q, q.x, dx, q.nx, 0.01f, 1e-2, 1e-3, (int)q.nx);
      if (affine) {
        snprintf(what, sizeof what, "bn dgamma relu %d", relu);
        TU_CHECK_GRAD(t, what, bn_loss, &q, q.gamma, dg, (size_t)q.d.c, 0.01f, 1e-2, 1e-3, q.d.c);
        snprintf(what, sizeof what, "bn dbeta relu %d", relu);
        TU_CHECK_GRAD(t, what, bn_loss, &q, q.beta, db, (size_t)q.d.c, 0.01f, 1e-2, 1e-3, q.d.c);
      }
      T_EQ_INT(t, count_not(dg + q.d.c, BN_CMAX - q.d.c, 0.0f) + count_not(db + q.d.c, BN_CMAX - q.d.c, 0.0f),
               0);
      free(q.x), free(q.gamma), free(q.beta), free(q.y), free(q.sm), free(q.si), free(r), free(dx), free(dg);
      free(db);
    }
}

/* Backward into pre-filled dx, dgamma, dbeta adds; NULL gradients are skipped and leave the others
 * unchanged; the supernet's large channels (n * hw = 8 * 196) use the same code. */
static void t_bn_accumulate(hsc_test *t) {
  hsc_bn_desc d = {.n = 8, .c = 4, .hw = 196, .eps = 1e-5f, .momentum = 0.1f, .relu = 1};
  const size_t nx = (size_t)d.n * d.c * d.hw;
  float *x = tu_randn(1500, nx, 1.0f), *gamma = tu_randu(1501, BN_CMAX, 0.5f, 1.5f);
  float *beta = tu_randn(1502, BN_CMAX, 0.5f), *dy = tu_randn(1503, nx, 1.0f);
  float *y = zeros(nx), *sm = zeros(BN_CMAX), *si = zeros(BN_CMAX);
  t->be->bn_forward_train(t->ctx, &d, x, gamma, beta, NULL, NULL, y, sm, si);
  float *dx0 = zeros(nx), *dg0 = zeros(BN_CMAX), *db0 = zeros(BN_CMAX);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, dx0, dg0, db0);
  float *oldx = tu_randn(1504, nx, 1.0f), *oldg = tu_randn(1505, BN_CMAX, 1.0f);
  float *oldb = tu_randn(1506, BN_CMAX, 1.0f);
  float *dx = tu_copy(oldx, nx), *dg = tu_copy(oldg, BN_CMAX), *db = tu_copy(oldb, BN_CMAX);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, dx, dg, db);
  TU_CHECK_ACCUMULATED(t, "bn dx += ", dx, oldx, dx0, nx);
  TU_CHECK_ACCUMULATED(t, "bn dgamma += ", dg, oldg, dg0, (size_t)d.c);
  TU_CHECK_ACCUMULATED(t, "bn dbeta += ", db, oldb, db0, (size_t)d.c);
  T_EQ_INT(
      t, bits_differ(dg + d.c, oldg + d.c, BN_CMAX - d.c) + bits_differ(db + d.c, oldb + d.c, BN_CMAX - d.c),
      0);

  float *only_dx = zeros(nx), *only_dg = zeros(BN_CMAX), *only_db = zeros(BN_CMAX);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, only_dx, NULL, NULL);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, NULL, only_dg, NULL);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, NULL, NULL, only_db);
  T_EQ_INT(t, bits_differ(only_dx, dx0, nx), 0);
  T_EQ_INT(t, bits_differ(only_dg, dg0, BN_CMAX), 0);
  T_EQ_INT(t, bits_differ(only_db, db0, BN_CMAX), 0);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, NULL, NULL, NULL);
  free(x), free(gamma), free(beta), free(dy), free(y), free(sm), free(si), free(dx0), free(dg0), free(db0);
  free(oldx), free(oldg), free(oldb), free(dx), free(dg), free(db), free(only_dx), free(only_dg);
  free(only_db);
}

/* The sync-BN pieces on two halves of a batch, combined as the supernet combines ranks (mean of the
 * means, Chan's formula for the variance; sums of the backward reductions), reproduce the single-batch
 * forward and backward: the data-parallel identity behind supernet.sync_bn. Tolerances: fp32 rounding of
 * differently ordered double sums, rtol 1e-5 forward, 1e-4 backward. */
static void t_bn_sync_pieces(hsc_test *t) {
  hsc_bn_desc d = {.n = 8, .c = 5, .hw = 30, .eps = 1e-5f, .momentum = 0.1f, .relu = 1};
  hsc_bn_desc h = d;
  h.n = d.n / 2;
  const size_t nx = (size_t)d.n * d.c * d.hw, nh = nx / 2;
  float *x = tu_randn(1600, nx, 2.0f), *gamma = tu_randu(1601, BN_CMAX, 0.5f, 1.5f);
  float *beta = tu_randn(1602, BN_CMAX, 0.5f), *dy = tu_randn(1603, nx, 1.0f);
  for (size_t i = 0; i < nx; i++) x[i] += 3.0f; /* a mean far from 0 */
  float *y = zeros(nx), *sm = zeros(BN_CMAX), *si = zeros(BN_CMAX);
  float *dx = zeros(nx), *dg = zeros(BN_CMAX), *db = zeros(BN_CMAX);
  t->be->bn_forward_train(t->ctx, &d, x, gamma, beta, NULL, NULL, y, sm, si);
  t->be->bn_backward(t->ctx, &d, x, y, gamma, sm, si, dy, dx, dg, db);

  float mean[2][BN_CMAX], var[2][BN_CMAX], gm[BN_CMAX], gv[BN_CMAX], ginv[BN_CMAX];
  for (int r = 0; r < 2; r++) t->be->bn_stats(t->ctx, &h, x + r * nh, mean[r], var[r]);
  for (int c = 0; c < d.c; c++) {
    const double mu = 0.5 * ((double)mean[0][c] + mean[1][c]);
    double m2 = 0.0;
    for (int r = 0; r < 2; r++)
      m2 += (double)var[r][c] + ((double)mean[r][c] - mu) * ((double)mean[r][c] - mu);
    gm[c] = (float)mu;
    gv[c] = (float)(m2 / 2.0);
    ginv[c] = (float)(1.0 / sqrt((double)gv[c] + d.eps));
  }
  T_CLOSE(t, "sync mean", gm, sm, (size_t)d.c, 1e-5, 1e-6);
  T_CLOSE(t, "sync invstd", ginv, si, (size_t)d.c, 1e-5, 1e-6);
  float *ys = zeros(nx), *dxs = zeros(nx), *dgs = zeros(BN_CMAX), *dbs = zeros(BN_CMAX);
  for (int r = 0; r < 2; r++)
    t->be->bn_forward_infer(t->ctx, &h, x + r * nh, gamma, beta, gm, gv, ys + r * nh);
  T_CLOSE(t, "sync forward", ys, y, nx, 1e-5, 1e-5);
  float sg[2][BN_CMAX], sgx[2][BN_CMAX], mg[BN_CMAX], mgx[BN_CMAX];
  for (int r = 0; r < 2; r++)
    t->be->bn_backward_reduce(t->ctx, &h, x + r * nh, ys + r * nh, gm, ginv, dy + r * nh, sg[r], sgx[r], dgs,
                              dbs);
  const double count = (double)d.n * d.hw;
  for (int c = 0; c < d.c; c++) {
    mg[c] = (float)(((double)sg[0][c] + sg[1][c]) / count);
    mgx[c] = (float)(((double)sgx[0][c] + sgx[1][c]) / count);
  }
  for (int r = 0; r < 2; r++)
    t->be->bn_backward_elemt(t->ctx, &h, x + r * nh, ys + r * nh, gamma, gm, ginv, dy + r * nh, mg, mgx,
                             dxs + r * nh);
  T_CLOSE(t, "sync dx", dxs, dx, nx, 1e-4, 1e-5);
  T_CLOSE(t, "sync dgamma", dgs, dg, (size_t)d.c, 1e-4, 1e-5);
  T_CLOSE(t, "sync dbeta", dbs, db, (size_t)d.c, 1e-4, 1e-5);
  free(x), free(gamma), free(beta), free(dy), free(y), free(sm), free(si), free(dx), free(dg), free(db);
  free(ys), free(dxs), free(dgs), free(dbs);
}

/* 1 and 3 threads give the same bits in every BN output (each channel is one thread's, in a fixed order). */
static void t_bn_threads(hsc_test *t) {
  hsc_backend_ctx *c1 = ctx_with_threads(t, 1), *c3 = ctx_with_threads(t, 3);
  if (!c1 || !c3) goto done;
  hsc_bn_desc d = {.n = 6, .c = BN_CMAX, .hw = 49, .eps = 1e-5f, .momentum = 0.1f, .relu = 1};
  const size_t nx = (size_t)d.n * d.c * d.hw;
  float *x = tu_randn(1600, nx, 1.0f), *gamma = tu_randu(1601, BN_CMAX, 0.5f, 1.5f);
  float *beta = tu_randn(1602, BN_CMAX, 0.5f), *dy = tu_randn(1603, nx, 1.0f);
  float *buf[2][8];
  hsc_backend_ctx *ctxs[2] = {c1, c3};
  for (int v = 0; v < 2; v++) {
    float *y = zeros(nx), *rm = filled(BN_CMAX, 0.0f), *rv = filled(BN_CMAX, 1.0f), *sm = zeros(BN_CMAX);
    float *si = zeros(BN_CMAX), *dx = zeros(nx), *dg = zeros(BN_CMAX), *db = zeros(BN_CMAX);
    t->be->bn_forward_train(ctxs[v], &d, x, gamma, beta, rm, rv, y, sm, si);
    t->be->bn_backward(ctxs[v], &d, x, y, gamma, sm, si, dy, dx, dg, db);
    float *bufs[8] = {y, rm, rv, sm, si, dx, dg, db};
    memcpy(buf[v], bufs, sizeof bufs);
  }
  const size_t counts[8] = {nx, BN_CMAX, BN_CMAX, BN_CMAX, BN_CMAX, nx, BN_CMAX, BN_CMAX};
  for (int i = 0; i < 8; i++) {
    T_EQ_INT(t, bits_differ(buf[0][i], buf[1][i], counts[i]), 0);
    free(buf[0][i]), free(buf[1][i]);
  }
  free(x), free(gamma), free(beta), free(dy);
done:
  t->be->free(c1);
  t->be->free(c3);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"dw_forward", t_dw_forward},
      {"dw_grad", t_dw_grad},
      {"dw_backward_large", t_dw_backward_large},
      {"dw_accumulate", t_dw_accumulate},
      {"dw_threads", t_dw_threads},
      {"bn_forward", t_bn_forward},
      {"bn_running", t_bn_running},
      {"bn_infer", t_bn_infer},
      {"bn_grad", t_bn_grad},
      {"bn_accumulate", t_bn_accumulate},
      {"bn_threads", t_bn_threads},
      {"bn_sync_pieces", t_bn_sync_pieces},
  };
  return hsc_test_main("test_depthwise_bn", argc, argv, cases, (int)ARRAY_LEN(cases));
}
