/* The small CPU operators: ReLU, the SPOS channel split and concat, global average pool, softmax
 * cross-entropy with label smoothing, accuracy, and SGD over parameter regions.
 *
 * Gradients are checked against central finite differences of L = sum(y * r) with a fixed random r
 * (L in double), or of the mean loss for cross-entropy. Every backward is also run into a pre-filled
 * gradient buffer (it must add, not overwrite) and with NULL gradients (it must skip them). Each case
 * also runs a tensor large enough to take the operator's OpenMP path and compares it with a plain
 * serial loop written here. All called through the backend table, as the training code does. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static float *zeros(size_t n) { return hsc_xcalloc(n + 16, sizeof(float)); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Counts the elements of a [n] and b [n] whose bits differ. */
static size_t bits_differ(const float *a, const float *b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += !same_bits(a[i], b[i]);
  return d;
}

/* ---------------------------------------------------------------------------------------------------- */
/* ReLU */

typedef struct {
  hsc_test *t;
  size_t count;
  const float *x, *r;
  float *y;
} relu_case;

static double relu_loss(void *p) {
  relu_case *c = p;
  c->t->be->relu_forward(c->t->ctx, c->count, c->x, c->y);
  return tu_dot(c->y, c->r, c->count);
}

static void t_relu(hsc_test *t) {
  enum { N = 96 };
  /* Inputs at least 0.1 away from the kink, so that x +- h (h = 0.05) stays on one side. */
  float *x = tu_randu(1, N, -1.0f, 1.0f);
  for (size_t i = 0; i < N; i++)
    if (fabsf(x[i]) < 0.1f) x[i] = x[i] < 0 ? x[i] - 0.1f : x[i] + 0.1f;
  float *r = tu_randn(2, N, 1.0f), *y = zeros(N), *dx = zeros(N);

  t->be->relu_forward(t->ctx, N, x, y);
  size_t wrong = 0;
  for (size_t i = 0; i < N; i++) wrong += !same_bits(y[i], x[i] > 0 ? x[i] : 0.0f);
  T_EQ_INT(t, wrong, 0);
  /* In place (y aliases x): same bits. */
  float *z = tu_copy(x, N);
  t->be->relu_forward(t->ctx, N, z, z);
  T_EQ_INT(t, bits_differ(z, y, N), 0);

  /* L is linear in x within h of every input: the difference quotient is exact up to double rounding of
   * the sum (~1e-15), so 1e-6 relative leaves room for nothing but rounding; a wrong mask element is off
   * by |r| ~ 1. */
  t->be->relu_backward(t->ctx, N, y, r, dx);
  relu_case c = {.t = t, .count = N, .x = x, .r = r, .y = y};
  TU_CHECK_GRAD(t, "relu dx", relu_loss, &c, x, dx, N, 0.05f, 1e-6, 1e-9, N);

  float *old = tu_randn(3, N, 1.0f), *acc = tu_copy(old, N);
  t->be->relu_forward(t->ctx, N, x, y);
  t->be->relu_backward(t->ctx, N, y, r, acc);
  TU_CHECK_ACCUMULATED(t, "relu dx accumulated", acc, old, dx, N);
  t->be->relu_backward(t->ctx, N, y, r, NULL);

  /* Parallel path, with a tail that is not a multiple of the vector width; -0 and NaN inputs pass as in
   * PyTorch (relu(-0) = -0 compares equal to 0; NaN propagates). */
  size_t big = (1u << 17) + 7;
  float *bx = tu_randn(4, big, 1.0f), *by = zeros(big), *bdy = tu_randn(5, big, 1.0f);
  bx[0] = -0.0f;
  bx[1] = NAN;
  float *bold = tu_randn(6, big, 1.0f), *bdx = tu_copy(bold, big);
  t->be->relu_forward(t->ctx, big, bx, by);
  t->be->relu_backward(t->ctx, big, by, bdy, bdx);
  T_CHECK(t, isnan(by[1]));
  size_t bad_y = 0, bad_dx = 0;
  for (size_t i = 2; i < big; i++) {
    bad_y += !same_bits(by[i], bx[i] > 0 ? bx[i] : 0.0f);
    bad_dx += !same_bits(bdx[i], bold[i] + (bx[i] > 0 ? bdy[i] : 0.0f));
  }
  T_CHECK(t, by[0] == 0.0f && same_bits(bdx[0], bold[0]));
  T_EQ_INT(t, bad_y, 0);
  T_EQ_INT(t, bad_dx, 0);

  free(x), free(r), free(y), free(dx), free(z), free(old), free(acc);
  free(bx), free(by), free(bdy), free(bold), free(bdx);
}

/* ---------------------------------------------------------------------------------------------------- */
/* SPOS channel split and concat */

/* megvii SPOS channel_shuffle written out literally: x viewed as [n c/2, 2, hw], permuted to
 * [2, n c/2, hw]; out[0] is `even`, out[1] is `odd`. */
static void split_reference(int n, int c, int hw, const float *x, float *even, float *odd) {
  size_t rows = (size_t)n * c / 2;
  for (size_t r = 0; r < rows; r++)
    for (int t2 = 0; t2 < 2; t2++)
      for (int s = 0; s < hw; s++) (t2 ? odd : even)[r * hw + s] = x[(r * 2 + t2) * hw + s];
}

typedef struct {
  hsc_test *t;
  int n, c, hw;
  const float *x, *re, *ro;
  float *even, *odd;
} split_case;

static double split_loss(void *p) {
  split_case *s = p;
  size_t half = (size_t)s->n * s->c / 2 * s->hw;
  s->t->be->split_forward(s->t->ctx, s->n, s->c, s->hw, s->x, s->even, s->odd);
  return tu_dot(s->even, s->re, half) + tu_dot(s->odd, s->ro, half);
}

static void t_split_tiny(hsc_test *t) {
  /* n = 2, c = 4, hw = 3, x = index: channel ch of image b holds 12 b + 3 ch + {0, 1, 2}. */
  float x[24], even[12], odd[12];
  for (int i = 0; i < 24; i++) x[i] = (float)i;
  static const float want_even[12] = {0, 1, 2, 6, 7, 8, 12, 13, 14, 18, 19, 20};
  static const float want_odd[12] = {3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23};
  t->be->split_forward(t->ctx, 2, 4, 3, x, even, odd);
  for (int i = 0; i < 12; i++) {
    if (even[i] != want_even[i]) T_FAIL(t, "even[%d] = %g, want %g", i, even[i], want_even[i]);
    if (odd[i] != want_odd[i]) T_FAIL(t, "odd[%d] = %g, want %g", i, odd[i], want_odd[i]);
  }
  /* The backward puts every value back where it came from. */
  float dx[24] = {0};
  t->be->split_backward(t->ctx, 2, 4, 3, even, odd, dx);
  for (int i = 0; i < 24; i++)
    if (dx[i] != x[i]) T_FAIL(t, "dx[%d] = %g, want %g", i, dx[i], x[i]);
}

static void t_split(hsc_test *t) {
  enum { N = 2, C = 6, HW = 5, X = N * C * HW, H = X / 2 };
  float *x = tu_randn(10, X, 1.0f), *re = tu_randn(11, H, 1.0f), *ro = tu_randn(12, H, 1.0f);
  float *even = zeros(H), *odd = zeros(H), *dx = zeros(X);
  t->be->split_backward(t->ctx, N, C, HW, re, ro, dx);
  split_case s = {.t = t, .n = N, .c = C, .hw = HW, .x = x, .re = re, .ro = ro, .even = even, .odd = odd};
  /* Linear: the difference quotient is exact up to double rounding; see t_relu. */
  TU_CHECK_GRAD(t, "split dx", split_loss, &s, x, dx, X, 0.25f, 1e-6, 1e-9, X);

  /* Accumulation, and each half alone: a NULL half leaves its channels untouched. */
  float *old = tu_randn(13, X, 1.0f), *acc = tu_copy(old, X);
  t->be->split_backward(t->ctx, N, C, HW, re, ro, acc);
  TU_CHECK_ACCUMULATED(t, "split dx accumulated", acc, old, dx, X);
  float *only_odd = tu_copy(old, X), *only_even = tu_copy(old, X), *none = tu_copy(old, X);
  t->be->split_backward(t->ctx, N, C, HW, NULL, ro, only_odd);
  t->be->split_backward(t->ctx, N, C, HW, re, NULL, only_even);
  t->be->split_backward(t->ctx, N, C, HW, NULL, NULL, none);
  t->be->split_backward(t->ctx, N, C, HW, re, ro, NULL);
  float *want_odd = tu_copy(old, X), *want_even = tu_copy(old, X);
  for (int i = 0; i < X; i++) ((i / HW) % 2 ? want_odd : want_even)[i] += dx[i];
  T_EQ_INT(t, bits_differ(only_odd, want_odd, X), 0);
  T_EQ_INT(t, bits_differ(only_even, want_even, X), 0);
  T_EQ_INT(t, bits_differ(none, old, X), 0);

  /* Parallel path at a SPOS shape: 116 channels of 28 x 28. */
  int bn = 4, bc = 116, bhw = 784;
  size_t bx_n = (size_t)bn * bc * bhw, bh = bx_n / 2;
  float *bx = tu_randn(14, bx_n, 1.0f), *beven = zeros(bh), *bodd = zeros(bh), *we = zeros(bh),
        *wo = zeros(bh);
  t->be->split_forward(t->ctx, bn, bc, bhw, bx, beven, bodd);
  split_reference(bn, bc, bhw, bx, we, wo);
  T_EQ_INT(t, bits_differ(beven, we, bh), 0);
  T_EQ_INT(t, bits_differ(bodd, wo, bh), 0);
  float *bold = tu_randn(15, bx_n, 1.0f), *bdx = tu_copy(bold, bx_n);
  t->be->split_backward(t->ctx, bn, bc, bhw, we, wo, bdx);
  size_t bad = 0;
  for (size_t i = 0; i < bx_n; i++) bad += !same_bits(bdx[i], bold[i] + bx[i]);
  T_EQ_INT(t, bad, 0);

  free(x), free(re), free(ro), free(even), free(odd), free(dx), free(old), free(acc);
  free(only_odd), free(only_even), free(none), free(want_odd), free(want_even);
  free(bx), free(beven), free(bodd), free(we), free(wo), free(bold), free(bdx);
}

typedef struct {
  hsc_test *t;
  int n, ca, cb, hw;
  const float *a, *b, *r;
  float *y;
} concat_case;

static double concat_loss(void *p) {
  concat_case *c = p;
  c->t->be->concat_forward(c->t->ctx, c->n, c->ca, c->cb, c->hw, c->a, c->b, c->y);
  return tu_dot(c->y, c->r, (size_t)c->n * (c->ca + c->cb) * c->hw);
}

/* y [n, ca + cb, hw] from a [n, ca, hw] and b [n, cb, hw], written out. */
static void concat_reference(int n, int ca, int cb, int hw, const float *a, const float *b, float *y) {
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < ca + cb; ch++)
      for (int s = 0; s < hw; s++)
        y[((size_t)i * (ca + cb) + ch) * hw + s] =
            ch < ca ? a[((size_t)i * ca + ch) * hw + s] : b[((size_t)i * cb + ch - ca) * hw + s];
}

static void t_concat(hsc_test *t) {
  enum { N = 2, CA = 3, CB = 5, HW = 4, NA = N * CA * HW, NB = N * CB * HW, NY = NA + NB };
  float *a = tu_randn(20, NA, 1.0f), *b = tu_randn(21, NB, 1.0f), *r = tu_randn(22, NY, 1.0f);
  float *y = zeros(NY), *wy = zeros(NY), *da = zeros(NA), *db = zeros(NB);
  t->be->concat_forward(t->ctx, N, CA, CB, HW, a, b, y);
  concat_reference(N, CA, CB, HW, a, b, wy);
  T_EQ_INT(t, bits_differ(y, wy, NY), 0);

  t->be->concat_backward(t->ctx, N, CA, CB, HW, r, da, db);
  concat_case c = {.t = t, .n = N, .ca = CA, .cb = CB, .hw = HW, .a = a, .b = b, .r = r, .y = y};
  /* Linear: exact up to double rounding; see t_relu. */
  TU_CHECK_GRAD(t, "concat da", concat_loss, &c, a, da, NA, 0.25f, 1e-6, 1e-9, NA);
  TU_CHECK_GRAD(t, "concat db", concat_loss, &c, b, db, NB, 0.25f, 1e-6, 1e-9, NB);

  float *olda = tu_randn(23, NA, 1.0f), *oldb = tu_randn(24, NB, 1.0f);
  float *acca = tu_copy(olda, NA), *accb = tu_copy(oldb, NB);
  t->be->concat_backward(t->ctx, N, CA, CB, HW, r, acca, accb);
  TU_CHECK_ACCUMULATED(t, "concat da accumulated", acca, olda, da, NA);
  TU_CHECK_ACCUMULATED(t, "concat db accumulated", accb, oldb, db, NB);
  float *onlya = tu_copy(olda, NA), *onlyb = tu_copy(oldb, NB);
  t->be->concat_backward(t->ctx, N, CA, CB, HW, r, onlya, NULL);
  t->be->concat_backward(t->ctx, N, CA, CB, HW, r, NULL, onlyb);
  t->be->concat_backward(t->ctx, N, CA, CB, HW, r, NULL, NULL);
  T_EQ_INT(t, bits_differ(onlya, acca, NA), 0);
  T_EQ_INT(t, bits_differ(onlyb, accb, NB), 0);

  /* Parallel path, unequal halves. */
  int bn = 4, bca = 58, bcb = 174, bhw = 196;
  size_t bna = (size_t)bn * bca * bhw, bnb = (size_t)bn * bcb * bhw, bny = bna + bnb;
  float *ba = tu_randn(25, bna, 1.0f), *bb = tu_randn(26, bnb, 1.0f), *by = zeros(bny), *bwy = zeros(bny);
  t->be->concat_forward(t->ctx, bn, bca, bcb, bhw, ba, bb, by);
  concat_reference(bn, bca, bcb, bhw, ba, bb, bwy);
  T_EQ_INT(t, bits_differ(by, bwy, bny), 0);
  float *bda = zeros(bna), *bdb = zeros(bnb);
  t->be->concat_backward(t->ctx, bn, bca, bcb, bhw, bwy, bda, bdb);
  T_EQ_INT(t, bits_differ(bda, ba, bna), 0);
  T_EQ_INT(t, bits_differ(bdb, bb, bnb), 0);

  free(a), free(b), free(r), free(y), free(wy), free(da), free(db), free(olda), free(oldb), free(acca);
  free(accb), free(onlya), free(onlyb), free(ba), free(bb), free(by), free(bwy), free(bda), free(bdb);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Global average pool */

typedef struct {
  hsc_test *t;
  int n, c, hw;
  const float *x, *r;
  float *y;
} pool_case;

static double pool_loss(void *p) {
  pool_case *c = p;
  c->t->be->avgpool_forward(c->t->ctx, c->n, c->c, c->hw, c->x, c->y);
  return tu_dot(c->y, c->r, (size_t)c->n * c->c);
}

static void t_avgpool(hsc_test *t) {
  enum { N = 2, C = 3, HW = 5, X = N * C * HW, Y = N * C };
  float *x = tu_randn(30, X, 1.0f), *r = tu_randn(31, Y, 1.0f), *y = zeros(Y), *dx = zeros(X);
  t->be->avgpool_backward(t->ctx, N, C, HW, r, dx);
  pool_case c = {.t = t, .n = N, .c = C, .hw = HW, .x = x, .r = r, .y = y};
  /* L is linear in x, so only the float rounding of the two perturbed means y (|y| <~ 2, half an ulp
   * ~1e-7 each, plus the float sum of 5 terms) enters, divided by 2h = 0.5: ~1e-6 at most. The gradient
   * itself is r / 5 ~ 0.2. */
  TU_CHECK_GRAD(t, "avgpool dx", pool_loss, &c, x, dx, X, 0.25f, 1e-5, 2e-6, X);

  float *old = tu_randn(32, X, 1.0f), *acc = tu_copy(old, X);
  t->be->avgpool_backward(t->ctx, N, C, HW, r, acc);
  TU_CHECK_ACCUMULATED(t, "avgpool dx accumulated", acc, old, dx, X);
  t->be->avgpool_backward(t->ctx, N, C, HW, r, NULL);

  /* Parallel path at the SPOS head (1024 channels of 7 x 7), against a double sum. Inputs are
   * nonnegative, as after the last ReLU, so the float sum of hw terms in any order is within
   * (hw - 1) 2^-24 relative and the division adds 2^-24: rtol hw 2^-24. */
  int bn = 32, bc = 1024, bhw = 49;
  size_t bx_n = (size_t)bn * bc * bhw, by_n = (size_t)bn * bc;
  float *bx = tu_randu(33, bx_n, 0.0f, 1.0f), *by = zeros(by_n), *bw = zeros(by_n);
  t->be->avgpool_forward(t->ctx, bn, bc, bhw, bx, by);
  for (size_t i = 0; i < by_n; i++) {
    double s = 0;
    for (int k = 0; k < bhw; k++) s += bx[i * bhw + k];
    bw[i] = (float)(s / bhw);
  }
  T_CLOSE(t, "avgpool y (parallel)", by, bw, by_n, bhw * ldexp(1.0, -24), 0.0);
  float *bdy = tu_randn(34, by_n, 1.0f), *bold = tu_randn(35, bx_n, 1.0f), *bdx = tu_copy(bold, bx_n);
  t->be->avgpool_backward(t->ctx, bn, bc, bhw, bdy, bdx);
  size_t bad = 0;
  for (size_t i = 0; i < bx_n; i++) bad += !same_bits(bdx[i], bold[i] + bdy[i / bhw] / (float)bhw);
  T_EQ_INT(t, bad, 0);

  free(x), free(r), free(y), free(dx), free(old), free(acc);
  free(bx), free(by), free(bw), free(bdy), free(bold), free(bdx);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Softmax cross-entropy and accuracy */

/* Softmax cross-entropy from its definition, in double: p = exp(z) / sum exp(z) (after subtracting the
 * row maximum, which cancels), loss = -sum_j q_j log p_j with q = (1 - s) onehot + s / k. */
static void xent_reference(int n, int k, const float *logits, const int32_t *labels, double s, double *probs,
                           double *losses) {
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * k;
    double m = z[0], se = 0, loss = 0;
    for (int j = 1; j < k; j++) m = fmax(m, z[j]);
    for (int j = 0; j < k; j++) se += exp(z[j] - m);
    for (int j = 0; j < k; j++) {
      double p = exp(z[j] - m) / se, q = (j == labels[i] ? 1 - s : 0) + s / k;
      probs[(size_t)i * k + j] = p;
      loss -= q * log(p);
    }
    losses[i] = loss;
  }
}

static void t_xent_hand(hsc_test *t) {
  /* Two samples of three classes, then the same two shifted by +1000: the shift must change nothing
   * (a naive exp(1000) overflows). */
  static const float logits[4 * 3] = {1.0f,    2.0f,    3.0f,    0.5f,    -1.0f,  2.0f,
                                      1001.0f, 1002.0f, 1003.0f, 1000.5f, 999.0f, 1002.0f};
  static const int32_t labels[4] = {2, 0, 2, 0};
  for (int si = 0; si < 2; si++) {
    const double s = si ? 0.1 : 0.0;
    /* By hand, straight from the definitions. */
    double want_p[2][3], want_loss[2];
    for (int i = 0; i < 2; i++) {
      const float *z = logits + 3 * i;
      double se = exp(z[0]) + exp(z[1]) + exp(z[2]);
      want_loss[i] = 0;
      for (int j = 0; j < 3; j++) {
        want_p[i][j] = exp(z[j]) / se;
        double q = (j == labels[i] ? 1 - s : 0) + s / 3;
        want_loss[i] -= q * log(want_p[i][j]);
      }
    }
    float probs[12], losses[4], dlogits[12] = {0};
    t->be->xent_forward(t->ctx, 4, 3, logits, labels, (float)s, probs, losses);
    t->be->xent_backward(t->ctx, 4, 3, probs, labels, (float)s, 0.25f, dlogits);
    /* The operator rounds double results to float once: 1e-6 relative is ~16 ulp, while any slip in the
     * formula (s / (k - 1), a missing s / k term) moves the loss by ~1e-2. dlogits = 0.25 (p - q) from
     * float p and q: three roundings of values below 1, times 0.25, stay under 3e-8; 1e-7 absolute. */
    for (int i = 0; i < 4; i++) {
      T_NEAR(t, losses[i], want_loss[i % 2], 1e-6 * want_loss[i % 2]);
      for (int j = 0; j < 3; j++) {
        double q = (j == labels[i] ? 1 - s : 0) + s / 3;
        T_NEAR(t, probs[3 * i + j], want_p[i % 2][j], 1e-6 * want_p[i % 2][j]);
        T_NEAR(t, dlogits[3 * i + j], 0.25 * (want_p[i % 2][j] - q), 1e-7);
      }
    }
  }
}

typedef struct {
  hsc_test *t;
  int n, k;
  const float *logits;
  const int32_t *labels;
  float s;
  float *probs, *losses;
} xent_case;

static double xent_loss(void *p) {
  xent_case *c = p;
  c->t->be->xent_forward(c->t->ctx, c->n, c->k, c->logits, c->labels, c->s, c->probs, c->losses);
  double sum = 0;
  for (int i = 0; i < c->n; i++) sum += c->losses[i];
  return sum / c->n;
}

static void t_xent(hsc_test *t) {
  enum { N = 4, K = 7 };
  static const int32_t labels[N] = {0, 6, 3, 3};
  float *logits = tu_randn(40, N * K, 2.0f), *probs = zeros(N * K), *losses = zeros(N);
  for (int si = 0; si < 2; si++) {
    float s = si ? 0.1f : 0.0f;
    float *dl = zeros(N * K);
    t->be->xent_forward(t->ctx, N, K, logits, labels, s, probs, losses);
    t->be->xent_backward(t->ctx, N, K, probs, labels, s, 1.0f / N, dl);
    xent_case c = {
        .t = t, .n = N, .k = K, .logits = logits, .labels = labels, .s = s, .probs = probs, .losses = losses};
    /* h = 0.02: truncation h^2/6 |d3 lse| / n <= 4e-4 / 6 * 0.1 / 4 ~ 2e-6; rounding of the perturbed
     * sample's float loss (|loss| <~ 5, half an ulp ~2.4e-7, twice, / n / 2h) ~ 3e-6. atol 3e-5 is five
     * times their sum; gradients are ~1e-2..0.2 and the smoothing term alone is s/k/n ~ 3.6e-3. */
    TU_CHECK_GRAD(t, si ? "xent dlogits (s = 0.1)" : "xent dlogits (s = 0)", xent_loss, &c, logits, dl, N * K,
                  0.02f, 1e-3, 3e-5, N * K);
    t->be->xent_forward(t->ctx, N, K, logits, labels, s, probs, losses);
    float *old = tu_randn(41, N * K, 1.0f), *acc = tu_copy(old, N * K);
    t->be->xent_backward(t->ctx, N, K, probs, labels, s, 1.0f / N, acc);
    TU_CHECK_ACCUMULATED(t, "xent dlogits accumulated", acc, old, dl, N * K);
    t->be->xent_backward(t->ctx, N, K, probs, labels, s, 1.0f / N, NULL);
    free(dl), free(old), free(acc);
  }

  /* Parallel path at ImageNet size against the double reference. probs and losses are computed in double
   * and rounded once: 1e-6 relative is ~16 ulp. */
  int bn = 256, bk = 1000;
  size_t bz = (size_t)bn * bk;
  float *bl = tu_randn(42, bz, 3.0f), *bp = zeros(bz), *bloss = zeros(bn), *wpf = zeros(bz), *wlf = zeros(bn);
  int32_t *blab = hsc_xmalloc((size_t)bn * sizeof(int32_t));
  for (int i = 0; i < bn; i++) blab[i] = (int32_t)((i * 7919) % bk);
  double *wp = hsc_xmalloc(bz * sizeof(double)), *wl = hsc_xmalloc((size_t)bn * sizeof(double));
  t->be->xent_forward(t->ctx, bn, bk, bl, blab, 0.1f, bp, bloss);
  xent_reference(bn, bk, bl, blab, 0.1f, wp, wl);
  for (size_t i = 0; i < bz; i++) wpf[i] = (float)wp[i];
  for (int i = 0; i < bn; i++) wlf[i] = (float)wl[i];
  T_CLOSE(t, "xent probs (parallel)", bp, wpf, bz, 1e-6, 0.0);
  T_CLOSE(t, "xent losses (parallel)", bloss, wlf, bn, 1e-6, 0.0);
  float *bd = zeros(bz), *wd = zeros(bz);
  t->be->xent_backward(t->ctx, bn, bk, bp, blab, 0.1f, 1.0f / bn, bd);
  for (int i = 0; i < bn; i++)
    for (int j = 0; j < bk; j++) {
      size_t e = (size_t)i * bk + j;
      wd[e] = (float)(((double)bp[e] - ((j == blab[i] ? 0.9 : 0.0) + 0.1 / bk)) / bn);
    }
  /* (p - q) / n from the same float probs, in double: the operator's float q, subtraction and product
   * each round by 2^-24 of values <= 1 (times 1/n), so <= ~1e-9 absolute; p - q cancels for the label
   * and for tiny p, hence the absolute term. */
  T_CLOSE(t, "xent dlogits (parallel)", bd, wd, bz, 1e-5, 1e-9);

  free(logits), free(probs), free(losses), free(bl), free(bp), free(bloss), free(wpf), free(wlf);
  free(blab), free(wp), free(wl), free(bd), free(wd);
}

static void t_accuracy(hsc_test *t) {
  /* Row 0: label is the maximum (top-1 and top-5). Row 1: label 4 has exactly four larger logits, so it
   * is 5th: top-5 only. Row 2: label 5 has five larger: neither. Row 3: label 1 ties the maximum: no
   * logit is strictly greater, so top-1. */
  static const float logits[4 * 6] = {
      0.1f, 0.9f, 0.3f, 0.2f, 0.5f, 0.4f,  //
      0.6f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f,  //
      0.6f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f,  //
      0.7f, 0.7f, 0.1f, 0.2f, 0.3f, 0.0f,  //
  };
  static const int32_t labels[4] = {1, 4, 5, 1};
  int32_t counts[2] = {-7, -7};
  t->be->accuracy(t->ctx, 4, 6, logits, labels, counts);
  T_EQ_INT(t, counts[0], 2);
  T_EQ_INT(t, counts[1], 3);

  /* Three classes: every label is within the top 5, even the smallest logit. */
  static const float small[2 * 3] = {3.0f, 2.0f, 1.0f, 0.0f, 5.0f, 1.0f};
  static const int32_t small_labels[2] = {2, 1};
  t->be->accuracy(t->ctx, 2, 3, small, small_labels, counts);
  T_EQ_INT(t, counts[0], 1);
  T_EQ_INT(t, counts[1], 2);

  /* A NaN logit on the label is a miss, not a hit. */
  const float nan_row[3] = {NAN, 1.0f, 2.0f};
  const int32_t nan_label[1] = {0};
  t->be->accuracy(t->ctx, 1, 3, nan_row, nan_label, counts);
  T_EQ_INT(t, counts[0], 0);
  T_EQ_INT(t, counts[1], 0);

  /* Parallel path against a direct count; logits rounded to a coarse grid so that ties occur. */
  int bn = 512, bk = 100;
  float *bl = tu_randn(50, (size_t)bn * bk, 1.0f);
  for (size_t i = 0; i < (size_t)bn * bk; i++) bl[i] = roundf(bl[i] * 4.0f) / 4.0f;
  int32_t *blab = hsc_xmalloc((size_t)bn * sizeof(int32_t));
  int want1 = 0, want5 = 0;
  for (int i = 0; i < bn; i++) {
    blab[i] = (int32_t)((i * 31) % bk);
    int greater = 0;
    for (int j = 0; j < bk; j++) greater += bl[(size_t)i * bk + j] > bl[(size_t)i * bk + blab[i]];
    want1 += greater == 0;
    want5 += greater < 5;
  }
  t->be->accuracy(t->ctx, bn, bk, bl, blab, counts);
  T_EQ_INT(t, counts[0], want1);
  T_EQ_INT(t, counts[1], want5);
  T_CHECK(t, want5 > want1 && want1 > 0); /* the data exercises both counts */
  free(bl), free(blab);
}

/* ---------------------------------------------------------------------------------------------------- */
/* SGD over regions */

/* inside [len] = 1 for the elements the regions cover (from their definition), else 0. */
static unsigned char *region_mask(const hsc_region *r, int nr, size_t len) {
  unsigned char *m = hsc_xcalloc(len, 1);
  for (int i = 0; i < nr; i++)
    for (int row = 0; row < r[i].rows; row++)
      for (int col = 0; col < r[i].cols; col++) m[r[i].offset + (size_t)row * r[i].ld + col] = 1;
  return m;
}

/* One step of the SGD formulas of backend.h in double, over the regions. */
static void sgd_reference(const hsc_sgd_desc *o, const hsc_region *r, int nr, double *p, const float *grad,
                          double *m) {
  for (int i = 0; i < nr; i++)
    for (int row = 0; row < r[i].rows; row++)
      for (int col = 0; col < r[i].cols; col++) {
        size_t e = r[i].offset + (size_t)row * r[i].ld + col;
        double g = grad[e] + (double)r[i].weight_decay * p[e];
        m[e] = (double)o->momentum * m[e] + (1.0 - (double)o->dampening) * g;
        g = o->nesterov ? g + (double)o->momentum * m[e] : m[e];
        p[e] -= (double)o->lr * g;
      }
}

/* Runs `steps` SGD steps on param/mom [len] with fresh gradients each step and checks them against
 * sgd_reference inside the regions and bit for bit outside. Momentum starts at zero inside the regions
 * and at random values outside, which must survive. */
static void check_sgd(hsc_test *t, const char *what, const hsc_sgd_desc *o, const hsc_region *r, int nr,
                      size_t len, int steps, uint64_t stream) {
  unsigned char *inside = region_mask(r, nr, len);
  float *p = tu_randn(stream, len, 1.0f), *m = tu_randn(stream + 1, len, 1.0f);
  for (size_t e = 0; e < len; e++)
    if (inside[e]) m[e] = 0.0f;
  float *p0 = tu_copy(p, len), *m0 = tu_copy(m, len);
  double *pd = hsc_xmalloc(len * sizeof(double)), *md = hsc_xmalloc(len * sizeof(double));
  for (size_t e = 0; e < len; e++) pd[e] = p[e], md[e] = m[e];
  for (int s = 0; s < steps; s++) {
    float *g = tu_randn(stream + 2 + (uint64_t)s, len, 1.0f);
    t->be->sgd_update(t->ctx, o, r, nr, p, g, m);
    sgd_reference(o, r, nr, pd, g, md);
    free(g);
  }
  /* Float evaluation of the same formulas: a few roundings of 2^-24 relative per step on values of
   * order 1 (|m| <= ~3 after three steps of momentum 0.9), so a few 1e-7 after 3 steps; 2e-6 is several
   * times that, while each term of the update (weight decay lr wd p ~ 5e-3, dampening, the nesterov
   * term) is at least 1e-3. */
  size_t bad_in = 0, bad_out = 0, worst = 0;
  double worst_err = 0;
  for (size_t e = 0; e < len; e++) {
    if (inside[e]) {
      double ep = fabs(p[e] - pd[e]) - 2e-6 * (1 + fabs(pd[e]));
      double em = fabs(m[e] - md[e]) - 2e-6 * (1 + fabs(md[e]));
      if (ep > 0 || em > 0 || isnan(p[e]) || isnan(m[e])) {
        bad_in++;
        if (fmax(ep, em) >= worst_err) worst_err = fmax(ep, em), worst = e;
      }
    } else {
      bad_out += !same_bits(p[e], p0[e]) || !same_bits(m[e], m0[e]);
    }
  }
  if (bad_in)
    T_FAIL(t, "%s: %zu elements differ from the reference; worst [%zu]: p %.9g vs %.9g, m %.9g vs %.9g", what,
           bad_in, worst, p[worst], pd[worst], m[worst], md[worst]);
  if (bad_out) T_FAIL(t, "%s: %zu elements outside the regions changed", what, bad_out);
  free(inside), free(p), free(m), free(p0), free(m0), free(pd), free(md);
}

/* zero_regions, pack_regions and unpack_regions on buffers of len floats: inside the regions zero,
 * gathered in order and scattered back; outside untouched, bit for bit. */
static void check_region_copies(hsc_test *t, const char *what, const hsc_region *r, int nr, size_t len,
                                uint64_t stream) {
  unsigned char *inside = region_mask(r, nr, len);
  size_t count = hsc_regions_count(r, nr);
  float *buf = tu_randn(stream, len, 1.0f), *z = tu_copy(buf, len);
  t->be->zero_regions(t->ctx, r, nr, z);
  size_t bad = 0;
  for (size_t e = 0; e < len; e++) bad += inside[e] ? !same_bits(z[e], 0.0f) : !same_bits(z[e], buf[e]);
  if (bad) T_FAIL(t, "%s: zero_regions: %zu elements wrong", what, bad);

  float *packed = zeros(count), *want = zeros(count);
  size_t k = 0;
  for (int i = 0; i < nr; i++)
    for (int row = 0; row < r[i].rows; row++)
      for (int col = 0; col < r[i].cols; col++) want[k++] = buf[r[i].offset + (size_t)row * r[i].ld + col];
  T_REQUIRE(t, k == count);
  t->be->pack_regions(t->ctx, r, nr, buf, packed);
  if (bits_differ(packed, want, count)) T_FAIL(t, "%s: pack_regions out of order", what);

  float *other = tu_randn(stream + 1, len, 1.0f), *other0 = tu_copy(other, len);
  t->be->unpack_regions(t->ctx, r, nr, packed, other);
  bad = 0;
  for (size_t e = 0; e < len; e++) bad += !same_bits(other[e], inside[e] ? buf[e] : other0[e]);
  if (bad) T_FAIL(t, "%s: unpack_regions: %zu elements wrong", what, bad);
  free(inside), free(buf), free(z), free(packed), free(want), free(other), free(other0);
}

static void t_sgd_small(hsc_test *t) {
  /* In a 4 x 5 matrix (ld 5), the 2 x 3 slice at row 1, column 1 (offset 6), and a 1-D region of two
   * floats at offset 17 (row 3) without weight decay. */
  const hsc_region r[2] = {{.offset = 6, .rows = 2, .cols = 3, .ld = 5, .weight_decay = 0.05f},
                           {.offset = 17, .rows = 1, .cols = 2, .ld = 2, .weight_decay = 0.0f}};
  const hsc_sgd_desc opts[4] = {
      {.lr = 0.1f, .momentum = 0.9f},
      {.lr = 0.1f, .momentum = 0.9f, .nesterov = 1},
      {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.3f},
      {.lr = 0.2f},
  };
  static const char *names[4] = {"momentum", "nesterov", "dampening", "plain"};
  for (int i = 0; i < 4; i++) check_sgd(t, names[i], &opts[i], r, 2, 20, 3, 60 + 10 * (uint64_t)i);
  check_region_copies(t, "small", r, 2, 20, 100);
}

static void t_sgd_large(hsc_test *t) {
  /* Enough floats for the parallel path, with every tiling case: a wide slice of a matrix, a row longer
   * than a tile, an empty region, and many tiny regions (BN-sized) between them. */
  enum { TINY = 40 };
  hsc_region r[3 + TINY];
  size_t off = 0;
  r[0] = (hsc_region){.offset = off, .rows = 300, .cols = 200, .ld = 256, .weight_decay = 4e-5f};
  off += 300 * 256;
  r[1] = (hsc_region){.offset = off + 3, .rows = 1, .cols = 40000, .ld = 40000, .weight_decay = 4e-5f};
  off += 40003;
  r[2] = (hsc_region){.offset = off, .rows = 0, .cols = 10, .ld = 10};
  for (int i = 0; i < TINY; i++) {
    r[3 + i] = (hsc_region){.offset = off + 1, .rows = 1 + i % 3, .cols = 37, .ld = 41};
    off += (size_t)(1 + i % 3) * 41 + 2;
  }
  const hsc_sgd_desc o = {.lr = 0.05f, .momentum = 0.9f, .nesterov = 1};
  check_sgd(t, "large", &o, r, 3 + TINY, off, 2, 200);
  check_region_copies(t, "large", r, 3 + TINY, off, 210);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"relu", t_relu},           {"split_tiny", t_split_tiny}, {"split", t_split}, {"concat", t_concat},
      {"avgpool", t_avgpool},     {"xent_hand", t_xent_hand},   {"xent", t_xent},   {"accuracy", t_accuracy},
      {"sgd_small", t_sgd_small}, {"sgd_large", t_sgd_large},
  };
  return hsc_test_main("test_misc_ops", argc, argv, cases, (int)ARRAY_LEN(cases));
}
