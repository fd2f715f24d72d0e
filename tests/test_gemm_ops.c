/* The GEMM-based CPU operators: conv2d (im2col + GEMM), pointwise (1x1 conv on a weight slice) and linear.
 *
 * Every case builds one problem (an operator, its descriptor and random data) and checks it the same way:
 *   - forward against a naive direct loop in double;
 *   - every backward output (dx, dw, db) against central finite differences of L = sum(y * r) for a fixed
 *     random r, so that dy = r;
 *   - backward accumulates: buffers pre-filled with known values end as old + gradient;
 *   - a NULL gradient is skipped and the others are unchanged by its absence;
 *   - a context with 1 thread and one with 3 threads give the same forward and backward.
 * Pointwise cases on a slice of a larger weight also check that rows >= cout and columns >= cin of w and
 * dw are never read (their finite difference is 0) nor written. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef enum { OP_CONV, OP_POINTWISE, OP_LINEAR } op_kind;

typedef struct {
  op_kind op;
  hsc_conv2d_desc conv;
  hsc_pointwise_desc pw;
  int pw_rows; /* pointwise: rows the weight was allocated with (>= cout) */
  hsc_linear_desc lin;
  int bias;
} problem_spec;

/* One problem: inputs, the loss weights r (= dy) and a forward output buffer. */
typedef struct {
  problem_spec s;
  const hsc_backend *be;
  hsc_backend_ctx *ctx; /* the context the loss is evaluated with (1 thread, see check_problem) */
  float *x, *w, *b, *r, *y;
  size_t nx, nw, nb, ny;
  int terms; /* products summed per output (with the bias), for the forward error bound */
} problem;

static void problem_init(problem *p, const problem_spec *s, const hsc_backend *be, hsc_backend_ctx *ctx,
                         uint64_t seed) {
  memset(p, 0, sizeof *p);
  p->s = *s;
  p->be = be;
  p->ctx = ctx;
  switch (s->op) {
    case OP_CONV: {
      const hsc_conv2d_desc *d = &s->conv;
      p->nx = (size_t)d->n * d->cin * d->h * d->w;
      p->nw = (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
      p->nb = s->bias ? (size_t)d->cout : 0;
      p->ny = (size_t)d->n * d->cout * hsc_conv2d_out_h(d) * hsc_conv2d_out_w(d);
      p->terms = d->cin / d->groups * d->kh * d->kw + 1;
      break;
    }
    case OP_POINTWISE: {
      const hsc_pointwise_desc *d = &s->pw;
      p->nx = (size_t)d->n * d->cin * d->hw;
      p->nw = (size_t)(s->pw_rows > d->cout ? s->pw_rows : d->cout) * d->ldw;
      p->ny = (size_t)d->n * d->cout * d->hw;
      p->terms = d->cin;
      break;
    }
    case OP_LINEAR: {
      const hsc_linear_desc *d = &s->lin;
      p->nx = (size_t)d->n * d->in;
      p->nw = (size_t)d->out * d->in;
      p->nb = s->bias ? (size_t)d->out : 0;
      p->ny = (size_t)d->n * d->out;
      p->terms = d->in + 1;
      break;
    }
  }
  p->x = tu_randn(seed, p->nx, 1.0f);
  p->w = tu_randn(seed + 1, p->nw, 0.5f);
  p->b = p->nb ? tu_randn(seed + 2, p->nb, 1.0f) : NULL;
  p->r = tu_randu(seed + 3, p->ny, -1.0f, 1.0f);
  p->y = hsc_xcalloc(p->ny, sizeof(float));
}

static void problem_free(problem *p) {
  free(p->x);
  free(p->w);
  free(p->b);
  free(p->r);
  free(p->y);
}

static void problem_forward(const problem *p, hsc_backend_ctx *ctx, float *y) {
  switch (p->s.op) {
    case OP_CONV:
      p->be->conv2d_forward(ctx, &p->s.conv, p->x, p->w, p->b, y);
      break;
    case OP_POINTWISE:
      p->be->pointwise_forward(ctx, &p->s.pw, p->x, p->w, y);
      break;
    case OP_LINEAR:
      p->be->linear_forward(ctx, &p->s.lin, p->x, p->w, p->b, y);
      break;
  }
}

/* Backward with dy = r. */
static void problem_backward(const problem *p, hsc_backend_ctx *ctx, float *dx, float *dw, float *db) {
  switch (p->s.op) {
    case OP_CONV:
      p->be->conv2d_backward(ctx, &p->s.conv, p->x, p->w, p->r, dx, dw, db);
      break;
    case OP_POINTWISE:
      p->be->pointwise_backward(ctx, &p->s.pw, p->x, p->w, p->r, dx, dw);
      break;
    case OP_LINEAR:
      p->be->linear_backward(ctx, &p->s.lin, p->x, p->w, p->r, dx, dw, db);
      break;
  }
}

/* L = sum(y * r), accumulated in double. */
static double problem_loss(void *vp) {
  problem *p = vp;
  problem_forward(p, p->ctx, p->y);
  return tu_dot(p->y, p->r, p->ny);
}

/* Naive forward in double: want [ny], and the largest sum of |terms| over outputs (for the error bound). */
static double problem_reference(const problem *p, float *want) {
  double worst = 0.0;
  if (p->s.op == OP_CONV) {
    const hsc_conv2d_desc *d = &p->s.conv;
    const int ho = hsc_conv2d_out_h(d), wo = hsc_conv2d_out_w(d);
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    for (int n = 0; n < d->n; n++)
      for (int o = 0; o < d->cout; o++)
        for (int oh = 0; oh < ho; oh++)
          for (int ow = 0; ow < wo; ow++) {
            double s = p->b ? p->b[o] : 0.0, a = fabs(s);
            for (int c = 0; c < cg; c++)
              for (int ki = 0; ki < d->kh; ki++)
                for (int kj = 0; kj < d->kw; kj++) {
                  int ih = oh * d->stride - d->pad + ki, iw = ow * d->stride - d->pad + kj;
                  if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                  int ci = o / og * cg + c;
                  double v = (double)p->w[((size_t)(o * cg + c) * d->kh + ki) * d->kw + kj] *
                             p->x[(((size_t)n * d->cin + ci) * d->h + ih) * d->w + iw];
                  s += v;
                  a += fabs(v);
                }
            want[(((size_t)n * d->cout + o) * ho + oh) * wo + ow] = (float)s;
            if (a > worst) worst = a;
          }
  } else if (p->s.op == OP_POINTWISE) {
    const hsc_pointwise_desc *d = &p->s.pw;
    for (int n = 0; n < d->n; n++)
      for (int o = 0; o < d->cout; o++)
        for (int q = 0; q < d->hw; q++) {
          double s = 0.0, a = 0.0;
          for (int i = 0; i < d->cin; i++) {
            double v = (double)p->w[(size_t)o * d->ldw + i] * p->x[((size_t)n * d->cin + i) * d->hw + q];
            s += v;
            a += fabs(v);
          }
          want[((size_t)n * d->cout + o) * d->hw + q] = (float)s;
          if (a > worst) worst = a;
        }
  } else {
    const hsc_linear_desc *d = &p->s.lin;
    for (int n = 0; n < d->n; n++)
      for (int o = 0; o < d->out; o++) {
        double s = p->b ? p->b[o] : 0.0, a = fabs(s);
        for (int i = 0; i < d->in; i++) {
          double v = (double)p->x[(size_t)n * d->in + i] * p->w[(size_t)o * d->in + i];
          s += v;
          a += fabs(v);
        }
        want[(size_t)n * d->out + o] = (float)s;
        if (a > worst) worst = a;
      }
  }
  return worst;
}

static float max_abs(const float *a, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i]));
  return m;
}

/* Two results of the same computation that may differ only in summation order: equal within 1e-5
 * relative, plus 1e-6 of the array's largest magnitude for elements that are small by cancellation
 * (there a reordered sum changes the absolute, not the relative, error). */
static int close_reordered(hsc_test *t, const char *what, const float *got, const float *want, size_t n) {
  if (!n) return 1;
  return T_CLOSE(t, what, got, want, n, 1e-5, 1e-6 * max_abs(want, n) + 1e-30);
}

static hsc_backend_ctx *make_ctx(hsc_test *t, int threads) {
  hsc_backend_opts opts = {.threads = threads, .device = -1};
  hsc_error err = {0};
  hsc_backend_ctx *ctx = NULL;
  if (t->be->init(&ctx, &opts, &err) != HSC_OK) {
    T_FAIL(t, "cannot create a %d-thread cpu context: %s", threads, err.msg);
    return NULL;
  }
  return ctx;
}

/* Fills n floats with a value that no gradient computes, to see what was written. */
static float *filled(size_t n, float v) {
  float *a = hsc_xmalloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) a[i] = v;
  return a;
}

static void check_problem(hsc_test *t, const problem_spec *s, uint64_t seed) {
  /* Finite differences evaluate the loss hundreds of times: on one thread, so that they cost no OpenMP
   * barriers (slow when other processes share the cores and the threads spin). The analytic gradients
   * come from the case's context with every core. */
  hsc_backend_ctx *c1 = make_ctx(t, 1), *c3 = make_ctx(t, 3);
  if (!c1 || !c3) {
    t->be->free(c1);
    t->be->free(c3);
    return;
  }
  problem p;
  problem_init(&p, s, t->be, c1, seed);
  float *want = hsc_xcalloc(p.ny, sizeof(float));
  float *dx = hsc_xcalloc(p.nx, sizeof(float)), *dw = hsc_xcalloc(p.nw, sizeof(float));
  float *db = p.nb ? hsc_xcalloc(p.nb, sizeof(float)) : NULL;

  /* Forward against the naive loop. A K-term float dot product in any order is within
   * gamma_K * sum|w x| of the exact value (Higham, Accuracy and Stability, eq. 3.5), gamma_K ~ K u,
   * u = 2^-24; the double reference adds nothing at this scale. */
  double worst = problem_reference(&p, want);
  for (size_t i = 0; i < p.ny; i++) p.y[i] = NAN; /* forward overwrites, never reads y */
  problem_forward(&p, t->ctx, p.y);
  T_CLOSE(t, "forward vs naive loop", p.y, want, p.ny, 0.0, (p.terms + 1) * ldexp(1.0, -24) * worst);

  /* Gradients against central finite differences. L is linear in each of x, w and b, so the central
   * difference has no truncation error for any h; what is left is the float rounding of the m outputs
   * that one element touches (~u |y| each, u = 6e-8, weighted by |r| <= 1): ~u |y| sqrt(m) in L, against
   * a gradient of ~sqrt(m), i.e. a relative error of ~u |y| / 2h ~ 1e-5 with |y| ~ 10 and 2h = 0.1.
   * rtol 1e-3 leaves a factor 100 for the tails; atol 1e-4 covers gradients near zero by cancellation
   * (largest error seen over these cases: 7e-5, on a dw summing 3136 terms). */
  const float h = 0.05f;
  const double rtol = 1e-3, atol = 1e-4;
  const int max_checks = 1000;
  problem_backward(&p, t->ctx, dx, dw, db);
  TU_CHECK_GRAD(t, "dx", problem_loss, &p, p.x, dx, p.nx, h, rtol, atol, max_checks);
  TU_CHECK_GRAD(t, "dw", problem_loss, &p, p.w, dw, p.nw, h, rtol, atol, max_checks);
  if (p.nb) TU_CHECK_GRAD(t, "db", problem_loss, &p, p.b, db, p.nb, h, rtol, atol, max_checks);

  /* Accumulation: old + gradient. One extra rounding of the sum, or a GEMM that folds the old value in
   * with beta = 1 (a different but equally exact order): within the reordering tolerance. */
  {
    float *ox = tu_randu(seed + 10, p.nx, -2.0f, 2.0f), *ow = tu_randu(seed + 11, p.nw, -2.0f, 2.0f);
    float *ob = p.nb ? tu_randu(seed + 12, p.nb, -2.0f, 2.0f) : NULL;
    float *ax = tu_copy(ox, p.nx), *aw = tu_copy(ow, p.nw), *ab = p.nb ? tu_copy(ob, p.nb) : NULL;
    problem_backward(&p, t->ctx, ax, aw, ab);
    for (size_t i = 0; i < p.nx; i++) ox[i] += dx[i];
    for (size_t i = 0; i < p.nw; i++) ow[i] += dw[i];
    for (size_t i = 0; i < p.nb; i++) ob[i] += db[i];
    close_reordered(t, "dx accumulates", ax, ox, p.nx);
    close_reordered(t, "dw accumulates", aw, ow, p.nw);
    if (p.nb) close_reordered(t, "db accumulates", ab, ob, p.nb);
    free(ox), free(ow), free(ob), free(ax), free(aw), free(ab);
  }

  /* NULL gradients are skipped: each gradient alone equals the one from the full call. */
  {
    float *gx = hsc_xcalloc(p.nx, sizeof(float)), *gw = hsc_xcalloc(p.nw, sizeof(float));
    float *gb = p.nb ? hsc_xcalloc(p.nb, sizeof(float)) : NULL;
    problem_backward(&p, t->ctx, gx, NULL, NULL);
    problem_backward(&p, t->ctx, NULL, gw, NULL);
    if (p.nb) problem_backward(&p, t->ctx, NULL, NULL, gb);
    problem_backward(&p, t->ctx, NULL, NULL, NULL);
    close_reordered(t, "dx alone", gx, dx, p.nx);
    close_reordered(t, "dw alone", gw, dw, p.nw);
    if (p.nb) close_reordered(t, "db alone", gb, db, p.nb);
    free(gx), free(gw), free(gb);
  }

  /* 1 thread and 3 threads (more threads than this machine's cores: uneven tiles, blocks per image). */
  {
    float *y1 = hsc_xcalloc(p.ny, sizeof(float)), *y3 = hsc_xcalloc(p.ny, sizeof(float));
    float *x1 = hsc_xcalloc(p.nx, sizeof(float)), *x3 = hsc_xcalloc(p.nx, sizeof(float));
    float *w1 = hsc_xcalloc(p.nw, sizeof(float)), *w3 = hsc_xcalloc(p.nw, sizeof(float));
    float *b1 = p.nb ? hsc_xcalloc(p.nb, sizeof(float)) : NULL,
          *b3 = p.nb ? hsc_xcalloc(p.nb, sizeof(float)) : NULL;
    problem_forward(&p, c1, y1);
    problem_forward(&p, c3, y3);
    problem_backward(&p, c1, x1, w1, b1);
    problem_backward(&p, c3, x3, w3, b3);
    close_reordered(t, "forward, 3 threads vs 1", y3, y1, p.ny);
    close_reordered(t, "dx, 3 threads vs 1", x3, x1, p.nx);
    close_reordered(t, "dw, 3 threads vs 1", w3, w1, p.nw);
    if (p.nb) close_reordered(t, "db, 3 threads vs 1", b3, b1, p.nb);
    free(y1), free(y3), free(x1), free(x3), free(w1), free(w3), free(b1), free(b3);
  }

  /* Pointwise on a slice: w is not written, and dw outside the cout x cin slice keeps its old value. */
  if (s->op == OP_POINTWISE) {
    const hsc_pointwise_desc *d = &s->pw;
    float *w0 = tu_copy(p.w, p.nw), *g = filled(p.nw, 42.0f);
    float *gx = hsc_xcalloc(p.nx, sizeof(float));
    problem_backward(&p, t->ctx, gx, g, NULL);
    T_CHECK(t, memcmp(w0, p.w, p.nw * sizeof(float)) == 0);
    size_t outside = 0, changed = 0;
    for (size_t i = 0; i < p.nw; i++) {
      int o = (int)(i / (size_t)d->ldw), c = (int)(i % (size_t)d->ldw);
      if (o < d->cout && c < d->cin) continue;
      outside++;
      changed += g[i] != 42.0f;
    }
    T_EQ_INT(t, changed, 0);
    T_CHECK(t, outside > 0 || (d->ldw == d->cin && s->pw_rows <= d->cout));
    free(w0), free(g), free(gx);
  }

  free(want), free(dx), free(dw), free(db);
  problem_free(&p);
  t->be->free(c1);
  t->be->free(c3);
}

#define CONV(N, CIN, H, W, COUT, KH, KW, S, P, G, B) \
  {                                                  \
    .op = OP_CONV,                                   \
    .conv = {.n = N,                                 \
             .cin = CIN,                             \
             .h = H,                                 \
             .w = W,                                 \
             .cout = COUT,                           \
             .kh = KH,                               \
             .kw = KW,                               \
             .stride = S,                            \
             .pad = P,                               \
             .groups = G},                           \
    .bias = B                                        \
  }
#define PW(N, CIN, COUT, HW, LDW, ROWS) \
  { .op = OP_POINTWISE, .pw = {.n = N, .cin = CIN, .cout = COUT, .hw = HW, .ldw = LDW}, .pw_rows = ROWS }
#define LIN(N, IN, OUT, B) \
  { .op = OP_LINEAR, .lin = {.n = N, .in = IN, .out = OUT}, .bias = B }

static void run_specs(hsc_test *t, const problem_spec *specs, int count) {
  for (int i = 0; i < count; i++) check_problem(t, &specs[i], 100 + 20 * (uint64_t)i);
}

/* Odd image sizes, padding 0 and 1, stride 1 and 2, with and without bias, batch 1 and 2. */
static void t_conv_basic(hsc_test *t) {
  const problem_spec specs[] = {
      CONV(2, 3, 5, 7, 5, 3, 3, 1, 1, 1, 1),
      CONV(2, 3, 5, 7, 5, 3, 3, 2, 0, 1, 0),
      CONV(1, 3, 7, 6, 4, 3, 3, 2, 1, 1, 1),
      CONV(2, 1, 6, 5, 3, 3, 3, 1, 0, 1, 0),
  };
  run_specs(t, specs, (int)ARRAY_LEN(specs));
}

/* Groups: 2 groups, depthwise (groups == cin), depthwise with channel multiplier 2. */
static void t_conv_groups(hsc_test *t) {
  const problem_spec specs[] = {
      CONV(1, 4, 7, 6, 6, 3, 3, 2, 1, 2, 1),
      CONV(2, 4, 6, 5, 4, 3, 3, 1, 1, 4, 0),
      CONV(2, 3, 5, 5, 6, 3, 3, 2, 1, 3, 1),
  };
  run_specs(t, specs, (int)ARRAY_LEN(specs));
}

/* Unusual geometry: kh != kw, padding >= kernel (output rows that see only padding), a kernel larger
 * than the image, 1x1 stride 1 unpadded (the path without im2col), 1x1 with stride 2. */
static void t_conv_geometry(hsc_test *t) {
  const problem_spec specs[] = {
      CONV(2, 2, 5, 6, 3, 2, 3, 2, 2, 1, 1),
      CONV(2, 2, 2, 3, 3, 5, 5, 1, 2, 1, 0),
      CONV(2, 4, 5, 3, 6, 1, 1, 1, 0, 2, 1),
      CONV(1, 3, 5, 7, 4, 1, 1, 2, 0, 1, 0),
  };
  run_specs(t, specs, (int)ARRAY_LEN(specs));
}

/* The stem's shape at a small image, batch 1: several column blocks and input-channel blocks per image
 * with 3 threads, block boundaries rounded to 16 columns. */
static void t_conv_stem(hsc_test *t) {
  const problem_spec specs[] = {CONV(1, 3, 32, 32, 8, 3, 3, 2, 1, 1, 1),
                                CONV(2, 1, 28, 28, 4, 3, 3, 1, 1, 1, 0)};
  run_specs(t, specs, (int)ARRAY_LEN(specs));
}

/* Pointwise: full weights and slices (ldw > cin, rows beyond cout), covering each tiling of pointwise.c:
 * batch 1 in place cut by columns (196 over 3 threads: blocks of ~65 on 16-column boundaries) and by
 * rows (cout > hw, with dw cut by rows), images in place, image panels of uneven sizes (tiny products,
 * 7 and 20 images), and hw == 1. */
static void t_pointwise(hsc_test *t) {
  const problem_spec specs[] = {
      PW(2, 3, 5, 35, 3, 5),  PW(3, 6, 5, 12, 10, 8), PW(1, 16, 24, 196, 20, 32), PW(1, 8, 40, 9, 8, 40),
      PW(5, 7, 9, 1, 11, 12), PW(7, 5, 4, 49, 9, 6),  PW(20, 4, 6, 49, 7, 9),     PW(4, 12, 10, 784, 16, 12),
  };
  run_specs(t, specs, (int)ARRAY_LEN(specs));
}

/* Linear: with and without bias, batch 1, tall (cut by rows) and wide (cut by columns). */
static void t_linear(hsc_test *t) {
  const problem_spec specs[] = {LIN(4, 7, 5, 1), LIN(1, 33, 10, 0), LIN(37, 20, 3, 1), LIN(2, 16, 70, 1)};
  run_specs(t, specs, (int)ARRAY_LEN(specs));
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"conv2d_basic", t_conv_basic}, {"conv2d_groups", t_conv_groups}, {"conv2d_geometry", t_conv_geometry},
      {"conv2d_stem", t_conv_stem},   {"pointwise", t_pointwise},       {"linear", t_linear},
  };
  return hsc_test_main("test_gemm_ops", argc, argv, cases, (int)ARRAY_LEN(cases));
}
