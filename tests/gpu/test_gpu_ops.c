/* The CUDA backend against the CPU backend, on a machine with a GPU (`make test-gpu`, tests/gpu/run.sh).
 *
 * Every operator of the backend interface runs on the same random inputs on both backends and the results
 * are compared, backward passes accumulating into non-zero gradients (and writing them, with dx_assign).
 * Each backward gets the CPU's forward outputs as its inputs, so a comparison measures one operator. Then
 * the supernet: one training step (logits, loss, every gradient, updated weights, momentum and BN
 * statistics), with per-rank and with sync BN, and inference with folded BN; a short training run whose
 * loss must fall; and, under `mpirun -np 2` with two GPUs, data-parallel steps whose NCCL all-reduce must
 * agree with the host MPI path of the CPU backend.
 *
 * Unlike tests/test_cuda.c (compiled and run everywhere, skipping without a device), this program exists
 * for GPU machines: without a usable device it fails with "no CUDA device: ...". HSC_TEST_GPU_BACKEND=cpu
 * runs every case with the CPU backend in the GPU's place: a check of the test program itself (its
 * shapes, bookkeeping and the training run's threshold) on a machine without a GPU, not of the GPU.
 *
 * Tolerances. The GPU sums in other orders (cuDNN and cuBLAS tiles, block reductions) and contracts
 * multiply-adds, so results differ from the CPU's by float rounding that grows with the number of terms
 * summed: an element that sums `terms` products of N(0, 1) values is held to
 *   |gpu - cpu| <= RTOL * |cpu| + ATOL_PER_TERM * terms + ATOL,  RTOL 1e-4, ATOL_PER_TERM 1e-6, ATOL 1e-5,
 * (float rounding of such a sum is about 6e-8 * sqrt(terms) * sqrt(terms); the bound leaves a factor of
 * 10 or more). Data movement (the slice of dw that must stay untouched) is compared exactly. Batch norm
 * divides by the batch's standard deviation, so its outputs are held to RTOL 1e-4 and 1e-4 absolute.
 * Whole-network comparisons (supernet) are per tensor: |gpu - cpu| <= 2e-3 * max|cpu of the tensor| +
 * 1e-6: a training step goes through some 20 BN layers, each of which rescales the float differences
 * of its input by its 1/std. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "harness.h"
#include "hsconas/config.h"
#include "hsconas/rng.h"
#include "hsconas/space.h"
#include "hsconas/supernet.h"

#define RTOL 1e-4
#define ATOL 1e-5
#define ATOL_PER_TERM 1e-6
#define BN_TOL 1e-4
#define NET_RTOL 2e-3

static double tol_terms(double terms) { return ATOL + ATOL_PER_TERM * terms; }

typedef struct {
  const hsc_backend *be;
  hsc_backend_ctx *ctx;
} gpu;

/* The backend under test: "cuda", or HSC_TEST_GPU_BACKEND (see the top of the file). */
static const char *backend_name(void) {
  const char *e = getenv("HSC_TEST_GPU_BACKEND");
  return e && *e ? e : "cuda";
}

/* Opens the backend under test; every case needs it. */
static int gpu_open(hsc_test *t, gpu *g) {
  hsc_error err = {0};
  g->be = hsc_backend_find(backend_name(), &err);
  g->ctx = NULL;
  if (!g->be) {
    T_FAIL(t, "no CUDA device: %s", err.msg);
    return 0;
  }
  hsc_backend_opts opts = {.threads = 0, .device = -1};
  if (g->be->init(&g->ctx, &opts, &err) != HSC_OK) {
    T_FAIL(t, "no CUDA device: %s", err.msg);
    return 0;
  }
  return 1;
}

#define GPU_OPEN(t, g)               \
  do {                               \
    if (!gpu_open((t), (g))) return; \
  } while (0)

static void *dev_from(gpu *g, const void *host, size_t bytes) {
  return tu_dev_from(g->be, g->ctx, host, bytes);
}
static float *host_from(gpu *g, const float *d, size_t n) { return tu_host_from(g->be, g->ctx, d, n); }
#define check_dev(t, g, what, d, want, n, rtol, atol) \
  tu_check_dev_at((t), __FILE__, __LINE__, (g)->be, (g)->ctx, (what), (d), (want), (n), (rtol), (atol))

/* ---- general convolution (cuDNN) ---- */

static void conv_case(hsc_test *t, gpu *g, hsc_conv2d_desc d, int bias, uint64_t seed) {
  const int ho = hsc_conv2d_out_h(&d), wo = hsc_conv2d_out_w(&d);
  const size_t nx = (size_t)d.n * d.cin * d.h * d.w, nw = (size_t)d.cout * (d.cin / d.groups) * d.kh * d.kw,
               ny = (size_t)d.n * d.cout * ho * wo;
  float *x = tu_randn(seed, nx, 1.0f), *w = tu_randn(seed + 1, nw, 1.0f),
        *b = tu_randn(seed + 2, d.cout, 1.0f);
  float *dy = tu_randn(seed + 3, ny, 1.0f), *dx = tu_randn(seed + 4, nx, 1.0f),
        *dw = tu_randn(seed + 5, nw, 1.0f), *db = tu_randn(seed + 6, d.cout, 1.0f);
  float *xg = dev_from(g, x, nx * 4), *wg = dev_from(g, w, nw * 4), *bg = dev_from(g, b, d.cout * 4),
        *yg = g->be->alloc(g->ctx, ny * 4), *dyg = dev_from(g, dy, ny * 4), *dxg = dev_from(g, dx, nx * 4),
        *dwg = dev_from(g, dw, nw * 4), *dbg = dev_from(g, db, d.cout * 4);
  float *y = hsc_xaligned(ny * 4 + 64);
  t->be->conv2d_forward(t->ctx, &d, x, w, bias ? b : NULL, y);
  g->be->conv2d_forward(g->ctx, &d, xg, wg, bias ? bg : NULL, yg);
  const double kterms = (double)(d.cin / d.groups) * d.kh * d.kw;
  check_dev(t, g, "conv2d forward", yg, y, ny, RTOL, tol_terms(kterms));
  t->be->conv2d_backward(t->ctx, &d, x, w, dy, dx, dw, bias ? db : NULL);
  g->be->conv2d_backward(g->ctx, &d, xg, wg, dyg, dxg, dwg, bias ? dbg : NULL);
  check_dev(t, g, "conv2d dx (accumulated)", dxg, dx, nx, RTOL,
            tol_terms((double)d.cout / d.groups * d.kh * d.kw));
  check_dev(t, g, "conv2d dw (accumulated)", dwg, dw, nw, RTOL, tol_terms((double)d.n * ho * wo));
  if (bias)
    check_dev(t, g, "conv2d db (accumulated)", dbg, db, d.cout, RTOL, tol_terms((double)d.n * ho * wo));
  /* A second call with the same shape takes the cached algorithms. */
  g->be->conv2d_forward(g->ctx, &d, xg, wg, bias ? bg : NULL, yg);
  check_dev(t, g, "conv2d forward (cached plan)", yg, y, ny, RTOL, tol_terms(kterms));
  void *bufs[] = {xg, wg, bg, yg, dyg, dxg, dwg, dbg};
  for (size_t i = 0; i < ARRAY_LEN(bufs); i++) g->be->release(g->ctx, bufs[i]);
  float *hs[] = {x, w, b, dy, dx, dw, db, y};
  for (size_t i = 0; i < ARRAY_LEN(hs); i++) free(hs[i]);
}

static void t_conv2d(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  /* the stem (3 -> 16, 3x3 stride 2), stride 1 with a bias, grouped, and a 5x5 on an odd size */
  conv_case(t, &g,
            (hsc_conv2d_desc){.n = 4,
                              .cin = 3,
                              .h = 17,
                              .w = 17,
                              .cout = 16,
                              .kh = 3,
                              .kw = 3,
                              .stride = 2,
                              .pad = 1,
                              .groups = 1},
            0, 10);
  conv_case(
      t, &g,
      (hsc_conv2d_desc){
          .n = 2, .cin = 8, .h = 9, .w = 9, .cout = 12, .kh = 3, .kw = 3, .stride = 1, .pad = 1, .groups = 1},
      1, 20);
  conv_case(t, &g,
            (hsc_conv2d_desc){.n = 3,
                              .cin = 6,
                              .h = 10,
                              .w = 11,
                              .cout = 4,
                              .kh = 5,
                              .kw = 5,
                              .stride = 1,
                              .pad = 2,
                              .groups = 2},
            1, 30);
  conv_case(
      t, &g,
      (hsc_conv2d_desc){
          .n = 2, .cin = 8, .h = 7, .w = 7, .cout = 8, .kh = 3, .kw = 3, .stride = 2, .pad = 1, .groups = 8},
      0, 40);
  g.be->free(g.ctx);
}

/* ---- pointwise (cuBLAS on a weight slice) ---- */

static void pointwise_case(hsc_test *t, gpu *g, int n, int cin, int cout, int hw, int ldw, int epi, int relu,
                           uint64_t seed) {
  const int rows = cout + 3; /* the weight has more rows than the slice uses */
  const size_t nx = (size_t)n * cin * hw, ny = (size_t)n * cout * hw, nw = (size_t)rows * ldw;
  float *x = tu_randn(seed, nx, 1.0f), *w = tu_randn(seed + 1, nw, 1.0f), *dy = tu_randn(seed + 2, ny, 1.0f);
  float *dx = tu_randn(seed + 3, nx, 1.0f), *dw = tu_randn(seed + 4, nw, 1.0f);
  float *scale = tu_randu(seed + 5, cout, 0.5f, 1.5f), *shift = tu_randn(seed + 6, cout, 0.5f);
  float *xg = dev_from(g, x, nx * 4), *wg = dev_from(g, w, nw * 4), *dyg = dev_from(g, dy, ny * 4),
        *dxg = dev_from(g, dx, nx * 4), *dwg = dev_from(g, dw, nw * 4), *yg = g->be->alloc(g->ctx, ny * 4),
        *sg = dev_from(g, scale, cout * 4), *shg = dev_from(g, shift, cout * 4);
  float *y = hsc_xaligned(ny * 4 + 64);
  hsc_pointwise_desc d = {.n = n, .cin = cin, .cout = cout, .hw = hw, .ldw = ldw};
  hsc_pointwise_desc dg = d;
  if (epi) {
    d.scale = scale;
    d.shift = shift;
    d.relu = relu;
    dg.scale = sg;
    dg.shift = shg;
    dg.relu = relu;
  }
  t->be->pointwise_forward(t->ctx, &d, x, w, y);
  g->be->pointwise_forward(g->ctx, &dg, xg, wg, yg);
  check_dev(t, g, epi ? "pointwise forward (epilogue)" : "pointwise forward", yg, y, ny, RTOL,
            2 * tol_terms(cin));
  /* backward, accumulating */
  t->be->pointwise_backward(t->ctx, &d, x, w, dy, dx, dw);
  g->be->pointwise_backward(g->ctx, &dg, xg, wg, dyg, dxg, dwg);
  check_dev(t, g, "pointwise dx (accumulated)", dxg, dx, nx, RTOL, tol_terms(cout));
  /* the whole weight buffer: the slice accumulated, every other element exactly as it was */
  float *got = host_from(g, dwg, nw);
  T_CLOSE(t, "pointwise dw (accumulated)", got, dw, nw, RTOL, tol_terms((double)n * hw));
  int outside = 0;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < ldw; i++)
      if ((r >= cout || i >= cin) && got[(size_t)r * ldw + i] != dw[(size_t)r * ldw + i]) outside++;
  T_EQ_INT(t, outside, 0);
  free(got);
  /* dx_assign writes dx; dw NULL is skipped */
  d.dx_assign = dg.dx_assign = 1;
  t->be->pointwise_backward(t->ctx, &d, x, w, dy, dx, NULL);
  g->be->pointwise_backward(g->ctx, &dg, xg, wg, dyg, dxg, NULL);
  check_dev(t, g, "pointwise dx (assigned)", dxg, dx, nx, RTOL, tol_terms(cout));
  void *bufs[] = {xg, wg, dyg, dxg, dwg, yg, sg, shg};
  for (size_t i = 0; i < ARRAY_LEN(bufs); i++) g->be->release(g->ctx, bufs[i]);
  float *hs[] = {x, w, dy, dx, dw, scale, shift, y};
  for (size_t i = 0; i < ARRAY_LEN(hs); i++) free(hs[i]);
}

static void t_pointwise(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  pointwise_case(t, &g, 3, 5, 7, 49, 9, 0, 0, 100);
  pointwise_case(t, &g, 1, 16, 24, 196, 32, 1, 1, 110); /* one image: dw without the transpose */
  pointwise_case(t, &g, 8, 64, 48, 7, 64, 1, 0, 120);
  pointwise_case(t, &g, 4, 40, 100, 784, 48, 1, 1, 130);
  pointwise_case(t, &g, 5, 3, 2, 1, 3, 0, 0, 140); /* hw 1 */
  g.be->free(g.ctx);
}

/* ---- depthwise (own kernels) ---- */

static void depthwise_case(hsc_test *t, gpu *g, int n, int c, int cmax, int h, int w, int k, int s,
                           uint64_t seed) {
  const hsc_depthwise_desc d = {.n = n, .c = c, .h = h, .w = w, .k = k, .stride = s};
  const int ho = hsc_depthwise_out(h, k, s), wo = hsc_depthwise_out(w, k, s);
  const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * ho * wo, nw = (size_t)cmax * k * k;
  float *x = tu_randn(seed, nx, 1.0f), *wt = tu_randn(seed + 1, nw, 1.0f), *dy = tu_randn(seed + 2, ny, 1.0f);
  float *dx = tu_randn(seed + 3, nx, 1.0f), *dw = tu_randn(seed + 4, nw, 1.0f),
        *y = hsc_xaligned(ny * 4 + 64);
  float *xg = dev_from(g, x, nx * 4), *wg = dev_from(g, wt, nw * 4), *dyg = dev_from(g, dy, ny * 4),
        *dxg = dev_from(g, dx, nx * 4), *dwg = dev_from(g, dw, nw * 4), *yg = g->be->alloc(g->ctx, ny * 4);
  char what[96];
  t->be->depthwise_forward(t->ctx, &d, x, wt, y);
  g->be->depthwise_forward(g->ctx, &d, xg, wg, yg);
  snprintf(what, sizeof what, "depthwise %dx%d/%d forward", k, k, s);
  check_dev(t, g, what, yg, y, ny, RTOL, tol_terms(k * k));
  t->be->depthwise_backward(t->ctx, &d, x, wt, dy, dx, dw);
  g->be->depthwise_backward(g->ctx, &d, xg, wg, dyg, dxg, dwg);
  snprintf(what, sizeof what, "depthwise %dx%d/%d dx (accumulated)", k, k, s);
  check_dev(t, g, what, dxg, dx, nx, RTOL, tol_terms(k * k));
  snprintf(what, sizeof what, "depthwise %dx%d/%d dw (accumulated; channels >= c untouched)", k, k, s);
  check_dev(t, g, what, dwg, dw, nw, RTOL, tol_terms((double)n * ho * wo));
  void *bufs[] = {xg, wg, dyg, dxg, dwg, yg};
  for (size_t i = 0; i < ARRAY_LEN(bufs); i++) g->be->release(g->ctx, bufs[i]);
  float *hs[] = {x, wt, dy, dx, dw, y};
  for (size_t i = 0; i < ARRAY_LEN(hs); i++) free(hs[i]);
}

static void t_depthwise(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  uint64_t seed = 200;
  for (int k = 3; k <= 7; k += 2)
    for (int s = 1; s <= 2; s++) {
      depthwise_case(t, &g, 3, 5, 8, 14, 14, k, s, seed += 10);
      depthwise_case(t, &g, 2, 7, 7, 9, 11, k, s, seed += 10); /* odd sizes */
      depthwise_case(t, &g, 4, 3, 6, 7, 7, k, s, seed += 10);
    }
  depthwise_case(t, &g, 64, 2, 4, 28, 28, 3, 1, seed += 10); /* dw split over several blocks (atomics) */
  g.be->free(g.ctx);
}

/* ---- batch norm (own kernels) ---- */

static void bn_case(hsc_test *t, gpu *g, int n, int c, int hw, int affine, int relu, uint64_t seed) {
  const hsc_bn_desc d = {.n = n, .c = c, .hw = hw, .eps = 1e-5f, .momentum = 0.1f, .relu = relu};
  const size_t nx = (size_t)n * c * hw;
  float *x = tu_randn(seed, nx, 2.0f), *dy = tu_randn(seed + 1, nx, 1.0f), *dx = tu_randn(seed + 2, nx, 1.0f);
  for (size_t i = 0; i < nx; i++) x[i] += 3.0f; /* a mean far from 0, as activations after ReLU */
  float *gamma = tu_randu(seed + 3, c, 0.5f, 1.5f), *beta = tu_randn(seed + 4, c, 0.5f);
  float *rm = tu_randn(seed + 5, c, 1.0f), *rv = tu_randu(seed + 6, c, 0.5f, 2.0f);
  float *dgamma = tu_randn(seed + 7, c, 1.0f), *dbeta = tu_randn(seed + 8, c, 1.0f);
  float *y = hsc_xaligned(nx * 4 + 64), *sm = hsc_xaligned(c * 4 + 64), *si = hsc_xaligned(c * 4 + 64);
  float *xg = dev_from(g, x, nx * 4), *dyg = dev_from(g, dy, nx * 4), *dxg = dev_from(g, dx, nx * 4),
        *gg = dev_from(g, gamma, c * 4), *bg = dev_from(g, beta, c * 4), *rmg = dev_from(g, rm, c * 4),
        *rvg = dev_from(g, rv, c * 4), *dgg = dev_from(g, dgamma, c * 4), *dbg = dev_from(g, dbeta, c * 4),
        *yg = g->be->alloc(g->ctx, nx * 4), *smg = g->be->alloc(g->ctx, c * 4),
        *sig = g->be->alloc(g->ctx, c * 4);
  const float *ga = affine ? gamma : NULL, *be = affine ? beta : NULL;
  const float *gga = affine ? gg : NULL, *bga = affine ? bg : NULL;
  char what[128];
#define BN_WHAT(s)                                                                           \
  (snprintf(what, sizeof what, "bn n%d c%d hw%d%s%s: %s", n, c, hw, affine ? " affine" : "", \
            relu ? " relu" : "", s),                                                         \
   what)

  /* training forward */
  t->be->bn_forward_train(t->ctx, &d, x, ga, be, rm, rv, y, sm, si);
  g->be->bn_forward_train(g->ctx, &d, xg, gga, bga, rmg, rvg, yg, smg, sig);
  check_dev(t, g, BN_WHAT("train y"), yg, y, nx, BN_TOL, BN_TOL);
  check_dev(t, g, BN_WHAT("save_mean"), smg, sm, c, BN_TOL, BN_TOL);
  check_dev(t, g, BN_WHAT("save_invstd"), sig, si, c, BN_TOL, BN_TOL);
  check_dev(t, g, BN_WHAT("running_mean"), rmg, rm, c, BN_TOL, BN_TOL);
  check_dev(t, g, BN_WHAT("running_var (unbiased)"), rvg, rv, c, BN_TOL, BN_TOL);

  /* backward (mask from x without affine, from y with), accumulating and assigning */
  hsc_bn_desc db = d;
  float *ygc = dev_from(g, y, nx * 4), *smc = dev_from(g, sm, c * 4), *sic = dev_from(g, si, c * 4);
  t->be->bn_backward(t->ctx, &db, x, y, ga, sm, si, dy, dx, affine ? dgamma : NULL, affine ? dbeta : NULL);
  g->be->bn_backward(g->ctx, &db, xg, ygc, gga, smc, sic, dyg, dxg, affine ? dgg : NULL, affine ? dbg : NULL);
  check_dev(t, g, BN_WHAT("dx (accumulated)"), dxg, dx, nx, BN_TOL, BN_TOL);
  if (affine) {
    check_dev(t, g, BN_WHAT("dgamma"), dgg, dgamma, c, RTOL, tol_terms((double)n * hw));
    check_dev(t, g, BN_WHAT("dbeta"), dbg, dbeta, c, RTOL, tol_terms((double)n * hw));
  }
  db.dx_assign = 1;
  t->be->bn_backward(t->ctx, &db, x, y, ga, sm, si, dy, dx, NULL, NULL);
  g->be->bn_backward(g->ctx, &db, xg, ygc, gga, smc, sic, dyg, dxg, NULL, NULL);
  check_dev(t, g, BN_WHAT("dx (assigned)"), dxg, dx, nx, BN_TOL, BN_TOL);

  /* inference, in place on the GPU */
  t->be->bn_forward_infer(t->ctx, &d, x, ga, be, rm, rv, y);
  float *xin = dev_from(g, x, nx * 4), *rmc = dev_from(g, rm, c * 4), *rvc = dev_from(g, rv, c * 4);
  g->be->bn_forward_infer(g->ctx, &d, xin, gga, bga, rmc, rvc, xin);
  check_dev(t, g, BN_WHAT("infer y (in place)"), xin, y, nx, BN_TOL, BN_TOL);

  /* sync BN pieces */
  float *mean = hsc_xaligned(c * 4 + 64), *var = hsc_xaligned(c * 4 + 64);
  float *mg = g->be->alloc(g->ctx, c * 4), *vg = g->be->alloc(g->ctx, c * 4);
  t->be->bn_stats(t->ctx, &d, x, mean, var);
  g->be->bn_stats(g->ctx, &d, xg, mg, vg);
  check_dev(t, g, BN_WHAT("bn_stats mean"), mg, mean, c, BN_TOL, BN_TOL);
  check_dev(t, g, BN_WHAT("bn_stats var (biased)"), vg, var, c, BN_TOL, BN_TOL);
  float *sg = hsc_xaligned(c * 4 + 64), *sgx = hsc_xaligned(c * 4 + 64);
  float *sgg = g->be->alloc(g->ctx, c * 4), *sgxg = g->be->alloc(g->ctx, c * 4);
  t->be->bn_backward_reduce(t->ctx, &d, x, y, sm, si, dy, sg, sgx, affine ? dgamma : NULL,
                            affine ? dbeta : NULL);
  float *ynew = dev_from(g, y, nx * 4);
  g->be->bn_backward_reduce(g->ctx, &d, xg, ynew, smc, sic, dyg, sgg, sgxg, affine ? dgg : NULL,
                            affine ? dbg : NULL);
  check_dev(t, g, BN_WHAT("reduce sum_g"), sgg, sg, c, RTOL, tol_terms((double)n * hw));
  check_dev(t, g, BN_WHAT("reduce sum_gxhat"), sgxg, sgx, c, RTOL, tol_terms((double)n * hw));
  if (affine) check_dev(t, g, BN_WHAT("reduce dgamma"), dgg, dgamma, c, RTOL, tol_terms(2.0 * n * hw));
  for (int i = 0; i < c; i++) {
    sg[i] /= (float)(n * hw);
    sgx[i] /= (float)(n * hw);
  }
  float *mgc = dev_from(g, sg, c * 4), *mgxc = dev_from(g, sgx, c * 4);
  hsc_bn_desc de = d;
  t->be->bn_backward_elemt(t->ctx, &de, x, y, ga, sm, si, dy, sg, sgx, dx);
  g->be->bn_backward_elemt(g->ctx, &de, xg, ynew, gga, smc, sic, dyg, mgc, mgxc, dxg);
  check_dev(t, g, BN_WHAT("elemt dx (accumulated)"), dxg, dx, nx, BN_TOL, BN_TOL);

  /* fold (with a carried bias) and scale_rows */
  float *bias = tu_randn(seed + 9, c, 1.0f), *scale = hsc_xaligned(c * 4 + 64),
        *shift = hsc_xaligned(c * 4 + 64);
  float *biasg = dev_from(g, bias, c * 4), *scg = g->be->alloc(g->ctx, c * 4),
        *shg = g->be->alloc(g->ctx, c * 4);
  t->be->bn_fold(t->ctx, &d, ga, be, rm, rv, affine ? bias : NULL, scale, shift);
  g->be->bn_fold(g->ctx, &d, gga, bga, rmc, rvc, affine ? biasg : NULL, scg, shg);
  check_dev(t, g, BN_WHAT("fold scale"), scg, scale, c, 1e-6, 0);
  check_dev(t, g, BN_WHAT("fold shift"), shg, shift, c, 1e-6, 1e-6);
  float *rowsx = tu_randn(seed + 10, (size_t)c * 9, 1.0f), *rowsy = hsc_xaligned((size_t)c * 9 * 4 + 64);
  float *rxg = dev_from(g, rowsx, (size_t)c * 9 * 4);
  t->be->scale_rows(t->ctx, c, 9, scale, rowsx, rowsy);
  g->be->scale_rows(g->ctx, c, 9, scg, rxg, rxg);
  check_dev(t, g, BN_WHAT("scale_rows (in place)"), rxg, rowsy, (size_t)c * 9, 1e-6, 0);
#undef BN_WHAT

  void *bufs[] = {xg,  dyg, dxg, gg, bg, rmg, rvg,  dgg,  dbg, yg,   smg,   sig, ygc, smc, sic,
                  xin, rmc, rvc, mg, vg, sgg, sgxg, ynew, mgc, mgxc, biasg, scg, shg, rxg};
  for (size_t i = 0; i < ARRAY_LEN(bufs); i++) g->be->release(g->ctx, bufs[i]);
  float *hs[] = {x,  dy,   dx,  gamma, beta, rm,   rv,    dgamma, dbeta, y,    sm,
                 si, mean, var, sg,    sgx,  bias, scale, shift,  rowsx, rowsy};
  for (size_t i = 0; i < ARRAY_LEN(hs); i++) free(hs[i]);
}

static void t_batchnorm(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  uint64_t seed = 400;
  for (int affine = 0; affine <= 1; affine++)
    for (int relu = 0; relu <= 1; relu++) {
      bn_case(t, &g, 4, 6, 49, affine, relu, seed += 20);
      bn_case(t, &g, 2, 3, 3000, affine, relu, seed += 20);   /* a channel split over several blocks */
      bn_case(t, &g, 16, 2, 12544, affine, relu, seed += 20); /* many splits: the ImageNet stem's shape */
      bn_case(t, &g, 1, 5, 2, affine, relu, seed += 20);      /* two values per channel */
    }
  g.be->free(g.ctx);
}

/* ---- classifier (cuBLAS) ---- */

static void linear_case(hsc_test *t, gpu *g, int n, int in, int out, int bias, uint64_t seed) {
  const hsc_linear_desc d = {.n = n, .in = in, .out = out};
  const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
  float *x = tu_randn(seed, nx, 1.0f), *w = tu_randn(seed + 1, nw, 1.0f), *b = tu_randn(seed + 2, out, 1.0f);
  float *dy = tu_randn(seed + 3, ny, 1.0f), *dx = tu_randn(seed + 4, nx, 1.0f),
        *dw = tu_randn(seed + 5, nw, 1.0f), *db = tu_randn(seed + 6, out, 1.0f),
        *y = hsc_xaligned(ny * 4 + 64);
  float *xg = dev_from(g, x, nx * 4), *wg = dev_from(g, w, nw * 4), *bg = dev_from(g, b, out * 4),
        *dyg = dev_from(g, dy, ny * 4), *dxg = dev_from(g, dx, nx * 4), *dwg = dev_from(g, dw, nw * 4),
        *dbg = dev_from(g, db, out * 4), *yg = g->be->alloc(g->ctx, ny * 4);
  t->be->linear_forward(t->ctx, &d, x, w, bias ? b : NULL, y);
  g->be->linear_forward(g->ctx, &d, xg, wg, bias ? bg : NULL, yg);
  check_dev(t, g, "linear forward", yg, y, ny, RTOL, tol_terms(in));
  t->be->linear_backward(t->ctx, &d, x, w, dy, dx, dw, bias ? db : NULL);
  g->be->linear_backward(g->ctx, &d, xg, wg, dyg, dxg, dwg, bias ? dbg : NULL);
  check_dev(t, g, "linear dx (accumulated)", dxg, dx, nx, RTOL, tol_terms(out));
  check_dev(t, g, "linear dw (accumulated)", dwg, dw, nw, RTOL, tol_terms(n));
  if (bias) check_dev(t, g, "linear db (accumulated)", dbg, db, out, RTOL, tol_terms(n));
  void *bufs[] = {xg, wg, bg, dyg, dxg, dwg, dbg, yg};
  for (size_t i = 0; i < ARRAY_LEN(bufs); i++) g->be->release(g->ctx, bufs[i]);
  float *hs[] = {x, w, b, dy, dx, dw, db, y};
  for (size_t i = 0; i < ARRAY_LEN(hs); i++) free(hs[i]);
}

static void t_linear(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  linear_case(t, &g, 5, 24, 10, 1, 600);
  linear_case(t, &g, 128, 1024, 1000, 0, 610); /* the ImageNet classifier */
  linear_case(t, &g, 1, 7, 3, 1, 620);
  g.be->free(g.ctx);
}

/* ---- the supernet on both backends ---- */

typedef struct {
  hsc_config cfg;
  hsc_space space;
  hsc_arch arch;
} small_space;

/* The small space of tests/test_train.c, with three stages so that every operator kind and stride appears. */
static int small_space_init(hsc_test *t, small_space *s, const char *arch) {
  static const char *const sets[] = {"space.input_size=16",          "space.stem_channels=8",
                                     "space.stage_channels=[16,32]", "space.stage_blocks=[2,2]",
                                     "space.stage_strides=[2,2]",    "space.head_channels=32",
                                     "space.scales=[0.5,1.0,1.5]"};
  if (!tu_space(t, &s->cfg, &s->space, sets, (int)ARRAY_LEN(sets))) return 0;
  hsc_error err = {0};
  if (hsc_arch_parse(&s->space, arch, &s->arch, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return 0;
  }
  return 1;
}

/* Compares a backend buffer of the GPU net with the CPU net's, tensor by tensor of a table. */
static void compare_table(hsc_test *t, gpu *g, const char *what, const hsc_param_table *tab,
                          const float *gpu_buf, const float *cpu_buf) {
  float *got = host_from(g, gpu_buf, tab->total);
  for (int i = 0; i < tab->n; i++) {
    const hsc_param *p = &tab->v[i];
    double big = 0.0;
    for (size_t j = 0; j < p->count; j++) big = fmax(big, fabs(cpu_buf[p->offset + j]));
    char name[160];
    snprintf(name, sizeof name, "%s %s", what, p->name);
    T_CLOSE(t, name, got + p->offset, cpu_buf + p->offset, p->count, 0.0, NET_RTOL * big + 1e-6);
  }
  free(got);
}

static void supernet_case(hsc_test *t, gpu *g, int sync) {
  small_space s;
  if (!small_space_init(t, &s, "xception:1.0,shuffle5:0.5,shuffle7:1.5,shuffle3:1.0")) return;
  enum { N = 8 };
  hsc_error err = {0};
  hsc_supernet *cn = NULL, *gn = NULL;
  if (hsc_supernet_create(&cn, &s.space, NULL, t->be, t->ctx, N, &err) != HSC_OK ||
      hsc_supernet_create(&gn, &s.space, NULL, g->be, g->ctx, N, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    hsc_supernet_free(cn);
    return;
  }
  hsc_supernet_init_weights(cn, 11);
  hsc_supernet_init_weights(gn, 11);
  if (sync) {
    hsc_supernet_set_sync(cn, MPI_COMM_SELF);
    hsc_supernet_set_sync(gn, MPI_COMM_SELF);
  }
  float *x = tu_randn(700, (size_t)N * 16 * 16, 1.0f);
  int32_t y[N];
  for (int i = 0; i < N; i++) y[i] = (i * 7 + 3) % 10;
  hsc_supernet_load_batch(cn, N, x, y);
  hsc_supernet_load_batch(gn, N, x, y);

  /* forward, loss, backward */
  const float *lc = hsc_supernet_forward(cn, &s.arch, HSC_BN_TRAIN);
  const float *lg = hsc_supernet_forward(gn, &s.arch, HSC_BN_TRAIN);
  float big = 0.0f;
  for (int i = 0; i < N * 10; i++) big = fmaxf(big, fabsf(lc[i]));
  check_dev(t, g, sync ? "logits (sync BN)" : "logits", lg, lc, (size_t)N * 10, 0.0, NET_RTOL * big + 1e-6);
  const hsc_batch_result rc = hsc_supernet_loss(cn, 0.1f, 1), rg = hsc_supernet_loss(gn, 0.1f, 1);
  T_NEAR(t, rg.loss, rc.loss, 1e-4 * fabs(rc.loss));
  T_EQ_INT(t, rg.top1, rc.top1);
  hsc_supernet_backward(cn, &s.arch);
  hsc_supernet_backward(gn, &s.arch);
  compare_table(t, g, "grad", hsc_supernet_params(cn), hsc_supernet_grads(gn), hsc_supernet_grads(cn));
  compare_table(t, g, "bn state", hsc_supernet_state(cn), hsc_supernet_stats(gn), hsc_supernet_stats(cn));

  /* a whole step (the gradients above are zeroed first: train_step accumulates into zeroed ones) */
  const hsc_param_table *pt = hsc_supernet_params(cn);
  memset(hsc_supernet_grads(cn), 0, pt->total * sizeof(float));
  g->be->zero(g->ctx, hsc_supernet_grads(gn), pt->total * sizeof(float));
  const hsc_step_opts o = {
      .lr = 0.1f, .momentum = 0.9f, .weight_decay = 4e-5f, .smoothing = 0.1f, .nesterov = 0};
  for (int step = 0; step < 2; step++) {
    const hsc_batch_result a = hsc_supernet_train_step(cn, &s.arch, MPI_COMM_SELF, &o);
    const hsc_batch_result b = hsc_supernet_train_step(gn, &s.arch, MPI_COMM_SELF, &o);
    T_NEAR(t, b.loss, a.loss, 1e-3 * fabs(a.loss));
  }
  compare_table(t, g, "weights after 2 steps", pt, hsc_supernet_weights(gn), hsc_supernet_weights(cn));
  compare_table(t, g, "momentum after 2 steps", pt, hsc_supernet_momentum(gn), hsc_supernet_momentum(cn));

  /* inference with BN folded into the convolutions (bn_fold, scale_rows, the pointwise epilogue) */
  lc = hsc_supernet_forward(cn, &s.arch, HSC_BN_EVAL);
  lg = hsc_supernet_forward(gn, &s.arch, HSC_BN_EVAL);
  big = 0.0f;
  for (int i = 0; i < N * 10; i++) big = fmaxf(big, fabsf(lc[i]));
  check_dev(t, g, "logits (eval, folded BN)", lg, lc, (size_t)N * 10, 0.0, NET_RTOL * big + 1e-6);
  free(x);
  hsc_supernet_free(cn);
  hsc_supernet_free(gn);
}

static void t_supernet_step(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  supernet_case(t, &g, 0);
  g.be->free(g.ctx);
}

static void t_supernet_step_sync_bn(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  supernet_case(t, &g, 1);
  g.be->free(g.ctx);
}

/* A short run: uniformly sampled paths on one fixed batch of 32 images with learnable labels (the class
 * is the sign pattern of two image quadrants' means). The mean loss of the last 20 of 150 steps must be
 * below 60% of the first 20's (the network fits the batch; a wrong gradient anywhere stalls it). */
static void t_training_loss_falls(hsc_test *t) {
  gpu g;
  GPU_OPEN(t, &g);
  small_space s;
  if (!small_space_init(t, &s, "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0")) return;
  enum { N = 32, STEPS = 150, WINDOW = 20 };
  hsc_error err = {0};
  hsc_supernet *net = NULL;
  if (hsc_supernet_create(&net, &s.space, NULL, g.be, g.ctx, N, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    g.be->free(g.ctx);
    return;
  }
  hsc_supernet_init_weights(net, 5);
  float *x = tu_randn(800, (size_t)N * 256, 1.0f);
  int32_t y[N];
  for (int i = 0; i < N; i++) {
    double q[2] = {0, 0};
    for (int r = 0; r < 8; r++)
      for (int c = 0; c < 8; c++) {
        q[0] += x[(size_t)i * 256 + r * 16 + c];
        q[1] += x[(size_t)i * 256 + (r + 8) * 16 + c + 8];
      }
    y[i] = (q[0] > 0) * 2 + (q[1] > 0);
  }
  hsc_supernet_load_batch(net, N, x, y);
  hsc_space_mask mask;
  hsc_space_mask_full(&s.space, &mask);
  const hsc_step_opts o = {
      .lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.0f, .smoothing = 0.0f, .nesterov = 0};
  double first = 0.0, last = 0.0;
  for (int step = 0; step < STEPS; step++) {
    hsc_rng r;
    hsc_rng_init(&r, 1, HSC_RNG_PATH, (uint64_t)step);
    hsc_arch a;
    hsc_arch_sample(&s.space, &mask, &r, &a);
    const hsc_batch_result b = hsc_supernet_train_step(net, &a, MPI_COMM_SELF, &o);
    T_REQUIRE(t, isfinite(b.loss));
    if (step < WINDOW) first += b.loss / WINDOW;
    if (step >= STEPS - WINDOW) last += b.loss / WINDOW;
  }
  printf("  training: mean loss of the first %d steps %.4f, of the last %d %.4f\n", WINDOW, first, WINDOW,
         last);
  T_CHECK(t, last < 0.6 * first);
  free(x);
  hsc_supernet_free(net);
  g.be->free(g.ctx);
}

/* ---- data-parallel steps over NCCL (mpirun -np 2, two GPUs) ---- */

/* Each rank trains its half of a batch for 3 steps on the GPU (gradients averaged by NCCL in small buckets
 * during the backward) and on the CPU (host MPI_Allreduce after it). The two must agree (NET_RTOL per
 * tensor), and the GPU weights must be bitwise equal on both ranks (NCCL gives every rank the same sum). */
static void t_nccl_data_parallel(hsc_test *t) {
  int size = 1, rank = 0, devices = 0;
  if (hsc_proc()->mpi) {
    HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
    HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  }
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  int fewest = devices;
  if (hsc_proc()->mpi) HSC_CHECK_MPI(MPI_Allreduce(&devices, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (size < 2) T_SKIP(t, "needs 2 ranks: run under mpirun -np 2 (tests/gpu/run.sh does when 2 GPUs exist)");
  if (!strcmp(backend_name(), "cuda") && fewest < 2 && hsc_proc()->local_size > 1)
    T_SKIP(t,
           "needs a GPU per rank: %d visible to the ranks of one node; NCCL cannot put two ranks on one GPU",
           fewest);
  gpu g;
  GPU_OPEN(t, &g);
  small_space s;
  if (!small_space_init(t, &s, "xception:1.0,shuffle5:0.5,shuffle7:1.5,shuffle3:1.0")) return;
  enum { PER = 4, STEPS = 3 };
  hsc_error err = {0};
  hsc_supernet *cn = NULL, *gn = NULL;
  if (hsc_supernet_create(&cn, &s.space, NULL, t->be, t->ctx, PER, &err) != HSC_OK ||
      hsc_supernet_create(&gn, &s.space, NULL, g.be, g.ctx, PER, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return;
  }
  hsc_supernet_init_weights(cn, 21);
  hsc_supernet_init_weights(gn, 21);
  hsc_supernet_set_bucket(gn, 256); /* several all-reduces per step, overlapping the backward */
  float *x = tu_randn(900 + (uint64_t)rank, (size_t)PER * 256, 1.0f);
  int32_t y[PER];
  for (int i = 0; i < PER; i++) y[i] = (rank * PER + i) % 10;
  hsc_supernet_load_batch(cn, PER, x, y);
  hsc_supernet_load_batch(gn, PER, x, y);
  const hsc_step_opts o = {
      .lr = 0.1f, .momentum = 0.9f, .weight_decay = 4e-5f, .smoothing = 0.1f, .nesterov = 0};
  for (int step = 0; step < STEPS; step++) {
    hsc_supernet_train_step(cn, &s.arch, MPI_COMM_WORLD, &o);
    hsc_supernet_train_step(gn, &s.arch, MPI_COMM_WORLD, &o);
  }
  const hsc_param_table *pt = hsc_supernet_params(cn);
  compare_table(t, &g, "NCCL vs MPI weights", pt, hsc_supernet_weights(gn), hsc_supernet_weights(cn));
  float *mine = host_from(&g, hsc_supernet_weights(gn), pt->total);
  float *r0 = hsc_xmalloc(pt->total * sizeof(float));
  memcpy(r0, mine, pt->total * sizeof(float));
  HSC_CHECK_MPI(MPI_Bcast(r0, (int)pt->total, MPI_FLOAT, 0, MPI_COMM_WORLD));
  T_CHECK(t, memcmp(r0, mine, pt->total * sizeof(float)) == 0);
  free(r0);
  free(mine);
  free(x);
  hsc_supernet_free(cn);
  hsc_supernet_free(gn);
  g.be->free(g.ctx);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv);
  /* One clear line before anything else when there is no device to test. */
  hsc_error err = {0};
  const hsc_backend *be = hsc_backend_find(backend_name(), &err);
  hsc_backend_ctx *ctx = NULL;
  if (!be || be->init(&ctx, &(hsc_backend_opts){.threads = 0, .device = -1}, &err) != HSC_OK) {
    fprintf(stderr, "test_gpu_ops: no CUDA device: %s\n", err.msg);
    printf("test_gpu_ops: 0 passed, 1 failed\n");
    hsc_proc_finalize();
    return 1;
  }
  if (hsc_proc()->rank == 0) {
    char desc[512];
    be->describe(ctx, desc, sizeof desc);
    printf("%s\n", desc);
  }
  be->free(ctx);
  static const hsc_test_case cases[] = {
      {"gpu_conv2d", t_conv2d},
      {"gpu_pointwise", t_pointwise},
      {"gpu_depthwise", t_depthwise},
      {"gpu_batchnorm", t_batchnorm},
      {"gpu_linear", t_linear},
      {"gpu_supernet_step", t_supernet_step},
      {"gpu_supernet_step_sync_bn", t_supernet_step_sync_bn},
      {"gpu_training_loss_falls", t_training_loss_falls},
      {"gpu_nccl_data_parallel", t_nccl_data_parallel},
  };
  const int rc = hsc_test_main("test_gpu_ops", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
