/* The CUDA backend against the CPU reference: every operator it implements runs on the same random
 * inputs on both backends (upload, run, download) and the results are compared, accumulation into
 * non-zero gradients included. Each backward gets the CPU's forward outputs as its inputs, so a
 * comparison measures one operator only.
 *
 * Uses the backend interface alone (no CUDA headers), so it builds everywhere: without the CUDA backend
 * in the build, or without a usable device, every case is skipped with the reason. HSC_TEST_REQUIRE_CUDA=1
 * (for GPU CI nodes) turns those skips into failures.
 *
 * Tolerances: data movement and element-wise ops that run the same float operations in the same order
 * (ReLU, split/concat, zero/pack/unpack, the pool backward) must match exactly. Reductions summed in
 * another order (pool forward, softmax), and the fused multiply-adds nvcc emits where the CPU build rounds
 * twice (SGD, the cross-entropy gradient), are held to a few float ulps: rtol 1e-5. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct {
  const hsc_backend *be;
  hsc_backend_ctx *ctx;
} gpu;

/* Opens the CUDA backend on the default device. Returns 1 when it is ready, 0 when it is not in this
 * build or finds no usable device (`why` says which), -1 on any other failure (already reported). */
static int gpu_open(hsc_test *t, gpu *g, char *why, size_t len) {
  hsc_error err = {0};
  const char *require = getenv("HSC_TEST_REQUIRE_CUDA");
  int required = require && atoi(require) > 0;
  g->be = hsc_backend_find("cuda", &err);
  g->ctx = NULL;
  if (!g->be) {
    snprintf(why, len, "%s", err.msg);
  } else {
    hsc_backend_opts opts = {.threads = 0, .device = -1};
    hsc_status st = g->be->init(&g->ctx, &opts, &err);
    if (st == HSC_OK) return 1;
    if (st != HSC_ERR_DEVICE) {
      T_FAIL(t, "cuda init returned %s: %s", hsc_status_name(st), err.msg);
      return -1;
    }
    snprintf(why, len, "%s", err.msg);
  }
  if (required) {
    T_FAIL(t, "HSC_TEST_REQUIRE_CUDA is set but %s", why);
    return -1;
  }
  return 0;
}

#define GPU_OPEN_OR_SKIP(t, g)                                   \
  do {                                                           \
    char gpu_why_[1200];                                         \
    int gpu_rc_ = gpu_open((t), (g), gpu_why_, sizeof gpu_why_); \
    if (gpu_rc_ < 0) return;                                     \
    if (gpu_rc_ == 0) T_SKIP((t), "%s", gpu_why_);               \
  } while (0)

static void *dev_from(gpu *g, const void *host, size_t bytes) {
  return tu_dev_from(g->be, g->ctx, host, bytes);
}
#define check_dev(t, g, what, d, want, n, rtol, atol) \
  tu_check_dev_at((t), __FILE__, __LINE__, (g)->be, (g)->ctx, (what), (d), (want), (n), (rtol), (atol))

/* Labels in [0, k), as int32 (caller frees). */
static int32_t *rand_labels(uint64_t stream, int n, int k) {
  float *u = tu_randu(stream, (size_t)n, 0.0f, (float)k);
  int32_t *l = hsc_xmalloc((size_t)n * sizeof(int32_t));
  for (int i = 0; i < n; i++) l[i] = (int32_t)u[i] < k ? (int32_t)u[i] : k - 1;
  free(u);
  return l;
}

static void t_cuda_memory(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  char desc[512] = "";
  g.be->describe(g.ctx, desc, sizeof desc);
  T_CHECK(t, !strncmp(desc, "cuda: ", 6));
  T_CHECK(t, strstr(desc, "cuDNN") != NULL && strstr(desc, "NCCL") != NULL);
  T_CHECK(t, g.be->threads(g.ctx) >= 1);

  /* alloc returns zeroed memory, also for a size that is not a multiple of 64 bytes, and for 0 bytes. */
  enum { N = 100003 };
  float *d = g.be->alloc(g.ctx, N * sizeof(float));
  float *zeros = calloc(N, sizeof(float));
  check_dev(t, &g, "alloc is zeroed", d, zeros, N, 0, 0);
  void *empty = g.be->alloc(g.ctx, 0);
  T_CHECK(t, empty != NULL);
  g.be->release(g.ctx, empty);

  /* upload / download round trip, a device copy, and zero over a sub-range. */
  float *x = tu_randn(1, N, 1.0f);
  g.be->upload(g.ctx, d, x, N * sizeof(float));
  check_dev(t, &g, "upload/download", d, x, N, 0, 0);
  float *e = g.be->alloc(g.ctx, N * sizeof(float));
  g.be->copy(g.ctx, e, d, N * sizeof(float));
  check_dev(t, &g, "copy", e, x, N, 0, 0);
  g.be->zero(g.ctx, e + 10, 1000 * sizeof(float));
  memset(x + 10, 0, 1000 * sizeof(float));
  check_dev(t, &g, "zero", e, x, N, 0, 0);
  g.be->sync(g.ctx);

  g.be->release(g.ctx, d);
  g.be->release(g.ctx, e);
  g.be->release(g.ctx, NULL);
  free(zeros);
  free(x);
  g.be->free(g.ctx);
}

static void t_cuda_relu(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  enum { N = 300007 }; /* several full grids' worth of tail handling */
  size_t bytes = N * sizeof(float);
  float *x = tu_randn(2, N, 1.0f), *dy = tu_randn(3, N, 1.0f), *dx0 = tu_randn(4, N, 1.0f);
  x[0] = 0.0f;
  x[1] = -0.0f;
  float *y = hsc_xaligned(bytes), *dx = tu_copy(dx0, N);
  t->be->relu_forward(t->ctx, N, x, y);
  t->be->relu_backward(t->ctx, N, y, dy, dx);

  float *xg = dev_from(&g, x, bytes), *outg = g.be->alloc(g.ctx, bytes);
  g.be->relu_forward(g.ctx, N, xg, outg);
  check_dev(t, &g, "relu forward", outg, y, N, 0, 0);
  g.be->relu_forward(g.ctx, N, xg, xg); /* in place */
  check_dev(t, &g, "relu forward in place", xg, y, N, 0, 0);

  /* Backward from the CPU's forward output into a non-zero dx; a NULL dx and an empty tensor are no-ops. */
  float *yg = dev_from(&g, y, bytes), *dyg = dev_from(&g, dy, bytes), *dxg = dev_from(&g, dx0, bytes);
  g.be->relu_backward(g.ctx, N, yg, dyg, dxg);
  check_dev(t, &g, "relu backward (accumulated)", dxg, dx, N, 0, 0);
  g.be->relu_backward(g.ctx, N, yg, dyg, NULL);
  g.be->relu_forward(g.ctx, 0, yg, yg);
  g.be->sync(g.ctx);

  float *dev[] = {xg, outg, yg, dyg, dxg};
  for (size_t i = 0; i < ARRAY_LEN(dev); i++) g.be->release(g.ctx, dev[i]);
  free(x);
  free(dy);
  free(dx0);
  free(y);
  free(dx);
  g.be->free(g.ctx);
}

/* One split/concat configuration: x [n, c, hw] splits into halves of c/2; concat joins a [n, ca, hw] and
 * b [n, cb, hw]. */
static void split_concat_case(hsc_test *t, gpu *g, int n, int c, int ca, int cb, int hw) {
  size_t nx = (size_t)n * c * hw, nh = nx / 2, na = (size_t)n * ca * hw, nb = (size_t)n * cb * hw,
         ny = na + nb;
  char what[128];
  float *x = tu_randn(10, nx, 1.0f), *even = hsc_xaligned(nh * 4 + 64), *odd = hsc_xaligned(nh * 4 + 64);
  t->be->split_forward(t->ctx, n, c, hw, x, even, odd);
  float *xg = dev_from(g, x, nx * 4), *eg = g->be->alloc(g->ctx, nh * 4), *og = g->be->alloc(g->ctx, nh * 4);
  g->be->split_forward(g->ctx, n, c, hw, xg, eg, og);
  snprintf(what, sizeof what, "split forward even (n %d c %d hw %d)", n, c, hw);
  check_dev(t, g, what, eg, even, nh, 0, 0);
  snprintf(what, sizeof what, "split forward odd (n %d c %d hw %d)", n, c, hw);
  check_dev(t, g, what, og, odd, nh, 0, 0);

  /* Backward into a non-zero dx: both halves, then the even half alone (dodd NULL). */
  float *de = tu_randn(11, nh, 1.0f), *dodd = tu_randn(12, nh, 1.0f), *dx0 = tu_randn(13, nx, 1.0f);
  float *dx = tu_copy(dx0, nx);
  t->be->split_backward(t->ctx, n, c, hw, de, dodd, dx);
  t->be->split_backward(t->ctx, n, c, hw, de, NULL, dx);
  float *deg = dev_from(g, de, nh * 4), *dog = dev_from(g, dodd, nh * 4), *dxg = dev_from(g, dx0, nx * 4);
  g->be->split_backward(g->ctx, n, c, hw, deg, dog, dxg);
  g->be->split_backward(g->ctx, n, c, hw, deg, NULL, dxg);
  g->be->split_backward(g->ctx, n, c, hw, deg, dog, NULL);
  snprintf(what, sizeof what, "split backward (n %d c %d hw %d)", n, c, hw);
  check_dev(t, g, what, dxg, dx, nx, 0, 0);

  float *a = tu_randn(14, na, 1.0f), *b = tu_randn(15, nb, 1.0f), *y = hsc_xaligned(ny * 4 + 64);
  t->be->concat_forward(t->ctx, n, ca, cb, hw, a, b, y);
  float *ag = dev_from(g, a, na * 4), *bg = dev_from(g, b, nb * 4), *yg = g->be->alloc(g->ctx, ny * 4);
  g->be->concat_forward(g->ctx, n, ca, cb, hw, ag, bg, yg);
  snprintf(what, sizeof what, "concat forward (n %d ca %d cb %d hw %d)", n, ca, cb, hw);
  check_dev(t, g, what, yg, y, ny, 0, 0);

  /* Backward: both, then da alone (db NULL), into non-zero gradients. */
  float *dy = tu_randn(16, ny, 1.0f), *da0 = tu_randn(17, na, 1.0f), *db0 = tu_randn(18, nb, 1.0f);
  float *da = tu_copy(da0, na), *db = tu_copy(db0, nb);
  t->be->concat_backward(t->ctx, n, ca, cb, hw, dy, da, db);
  t->be->concat_backward(t->ctx, n, ca, cb, hw, dy, da, NULL);
  float *dyg = dev_from(g, dy, ny * 4), *dag = dev_from(g, da0, na * 4), *dbg = dev_from(g, db0, nb * 4);
  g->be->concat_backward(g->ctx, n, ca, cb, hw, dyg, dag, dbg);
  g->be->concat_backward(g->ctx, n, ca, cb, hw, dyg, dag, NULL);
  g->be->concat_backward(g->ctx, n, ca, cb, hw, dyg, NULL, NULL);
  snprintf(what, sizeof what, "concat backward da (n %d ca %d cb %d hw %d)", n, ca, cb, hw);
  check_dev(t, g, what, dag, da, na, 0, 0);
  snprintf(what, sizeof what, "concat backward db (n %d ca %d cb %d hw %d)", n, ca, cb, hw);
  check_dev(t, g, what, dbg, db, nb, 0, 0);

  float *dev[] = {xg, eg, og, deg, dog, dxg, ag, bg, yg, dyg, dag, dbg};
  for (size_t i = 0; i < ARRAY_LEN(dev); i++) g->be->release(g->ctx, dev[i]);
  float *host[] = {x, even, odd, de, dodd, dx0, dx, a, b, y, dy, da0, db0, da, db};
  for (size_t i = 0; i < ARRAY_LEN(host); i++) free(host[i]);
}

static void t_cuda_split_concat(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  split_concat_case(t, &g, 3, 10, 6, 10, 49);
  split_concat_case(t, &g, 2, 64, 32, 96, 1);
  split_concat_case(t, &g, 8, 232, 116, 116, 14 * 14);
  g.be->free(g.ctx);
}

static void avgpool_case(hsc_test *t, gpu *g, int n, int c, int hw) {
  size_t nx = (size_t)n * c * hw, ny = (size_t)n * c;
  char what[128];
  float *x = tu_randn(20, nx, 1.0f), *y = hsc_xaligned(ny * 4 + 64);
  t->be->avgpool_forward(t->ctx, n, c, hw, x, y);
  float *xg = dev_from(g, x, nx * 4), *yg = g->be->alloc(g->ctx, ny * 4);
  g->be->avgpool_forward(g->ctx, n, c, hw, xg, yg);
  snprintf(what, sizeof what, "avgpool forward (n %d c %d hw %d)", n, c, hw);
  check_dev(t, g, what, yg, y, ny, 1e-5, 2e-6);

  float *dy = tu_randn(21, ny, 1.0f), *dx0 = tu_randn(22, nx, 1.0f), *dx = tu_copy(dx0, nx);
  t->be->avgpool_backward(t->ctx, n, c, hw, dy, dx);
  float *dyg = dev_from(g, dy, ny * 4), *dxg = dev_from(g, dx0, nx * 4);
  g->be->avgpool_backward(g->ctx, n, c, hw, dyg, dxg);
  g->be->avgpool_backward(g->ctx, n, c, hw, dyg, NULL);
  snprintf(what, sizeof what, "avgpool backward (n %d c %d hw %d)", n, c, hw);
  check_dev(t, g, what, dxg, dx, nx, 0, 0);

  g->be->release(g->ctx, xg);
  g->be->release(g->ctx, yg);
  g->be->release(g->ctx, dyg);
  g->be->release(g->ctx, dxg);
  free(x);
  free(y);
  free(dy);
  free(dx0);
  free(dx);
}

static void t_cuda_avgpool(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  avgpool_case(t, &g, 5, 37, 49);    /* 7x7: more lanes than values per row */
  avgpool_case(t, &g, 3, 11, 1);     /* a 1x1 map */
  avgpool_case(t, &g, 2, 5, 200);    /* several values per lane */
  avgpool_case(t, &g, 64, 1024, 49); /* the imagenet head: many rows per warp on a capped grid */
  g.be->free(g.ctx);
}

static void xent_case(hsc_test *t, gpu *g, int n, int k, float smoothing) {
  size_t nk = (size_t)n * k;
  char what[128];
  float *z = tu_randn(30, nk, 3.0f), *p = hsc_xaligned(nk * 4 + 64), *loss = hsc_xaligned((size_t)n * 4 + 64);
  int32_t *labels = rand_labels(31, n, k);
  t->be->xent_forward(t->ctx, n, k, z, labels, smoothing, p, loss);
  float *zg = dev_from(g, z, nk * 4), *pg = g->be->alloc(g->ctx, nk * 4),
        *lg = g->be->alloc(g->ctx, (size_t)n * 4);
  int32_t *labg = dev_from(g, labels, (size_t)n * sizeof(int32_t));
  g->be->xent_forward(g->ctx, n, k, zg, labg, smoothing, pg, lg);
  snprintf(what, sizeof what, "xent probs (n %d k %d s %g)", n, k, (double)smoothing);
  check_dev(t, g, what, pg, p, nk, 1e-5, 1e-7);
  snprintf(what, sizeof what, "xent losses (n %d k %d s %g)", n, k, (double)smoothing);
  check_dev(t, g, what, lg, loss, (size_t)n, 1e-5, 1e-5);

  /* Backward from the CPU's probabilities into a non-zero gradient, with the batch-mean scale. */
  float *d0 = tu_randn(32, nk, 0.1f), *d = tu_copy(d0, nk), scale = 1.0f / (float)n;
  t->be->xent_backward(t->ctx, n, k, p, labels, smoothing, scale, d);
  float *pcg = dev_from(g, p, nk * 4), *dg = dev_from(g, d0, nk * 4);
  g->be->xent_backward(g->ctx, n, k, pcg, labg, smoothing, scale, dg);
  g->be->xent_backward(g->ctx, n, k, pcg, labg, smoothing, scale, NULL);
  snprintf(what, sizeof what, "xent backward (n %d k %d s %g)", n, k, (double)smoothing);
  check_dev(t, g, what, dg, d, nk, 1e-5, 1e-7);

  /* Accuracy on logits rounded to integers, so that ties with the label's logit are common (a tie counts
   * for the label), and with one NaN label logit (a miss on both). */
  for (size_t i = 0; i < nk; i++) z[i] = roundf(z[i]);
  z[(size_t)(n - 1) * k + labels[n - 1]] = NAN;
  int32_t counts[2] = {-1, -1}, got[2] = {-1, -1};
  t->be->accuracy(t->ctx, n, k, z, labels, counts);
  int32_t *cg = g->be->alloc(g->ctx, sizeof counts);
  g->be->upload(g->ctx, zg, z, nk * 4);
  g->be->accuracy(g->ctx, n, k, zg, labg, cg);
  g->be->download(g->ctx, got, cg, sizeof got);
  T_EQ_INT(t, got[0], counts[0]);
  T_EQ_INT(t, got[1], counts[1]);

  void *dev[] = {zg, pg, lg, labg, pcg, dg, cg};
  for (size_t i = 0; i < ARRAY_LEN(dev); i++) g->be->release(g->ctx, dev[i]);
  free(z);
  free(p);
  free(loss);
  free(labels);
  free(d0);
  free(d);
}

static void t_cuda_xent(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  xent_case(t, &g, 37, 10, 0.1f);
  xent_case(t, &g, 64, 1000, 0.1f);
  xent_case(t, &g, 5, 3, 0.0f);     /* fewer classes than five: every label is top-5 */
  xent_case(t, &g, 9000, 10, 0.2f); /* more rows than the grid's blocks */
  g.be->free(g.ctx);
}

/* 150 regions (more than one launch's batch of 64) of assorted shapes with ld > cols and gaps between
 * them, plus one large region, over a buffer of *floats floats. Caller frees. */
static hsc_region *make_regions(int *nr, size_t *floats) {
  enum { SMALL = 150 };
  hsc_region *r = hsc_xmalloc((SMALL + 1) * sizeof *r);
  size_t cursor = 5;
  for (int i = 0; i < SMALL; i++) {
    int rows = 1 + i % 7, cols = 1 + (i * 13) % 40, ld = cols + i % 5;
    r[i] = (hsc_region){
        .offset = cursor, .rows = rows, .cols = cols, .ld = ld, .weight_decay = i % 3 ? 0.01f : 0.0f};
    cursor += (size_t)rows * (size_t)ld + 3;
  }
  r[SMALL] = (hsc_region){.offset = cursor, .rows = 300, .cols = 700, .ld = 1000, .weight_decay = 5e-4f};
  cursor += 300 * 1000 + 17;
  *nr = SMALL + 1;
  *floats = cursor;
  return r;
}

static void t_cuda_sgd(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  int nr = 0;
  size_t nf = 0;
  hsc_region *r = make_regions(&nr, &nf);
  float *p = tu_randn(40, nf, 1.0f), *m = tu_randn(41, nf, 0.1f);
  float *pg = dev_from(&g, p, nf * 4), *mg = dev_from(&g, m, nf * 4), *gg = g.be->alloc(g.ctx, nf * 4);
  /* Plain momentum, then dampening, then Nesterov: each step with a fresh gradient. */
  const hsc_sgd_desc steps[] = {
      {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.0f, .nesterov = 0},
      {.lr = 0.05f, .momentum = 0.9f, .dampening = 0.1f, .nesterov = 0},
      {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.0f, .nesterov = 1},
      {.lr = 0.2f, .momentum = 0.0f, .dampening = 0.0f, .nesterov = 0},
  };
  for (size_t s = 0; s < ARRAY_LEN(steps); s++) {
    float *grad = tu_randn(42 + s, nf, 1.0f);
    t->be->sgd_update(t->ctx, &steps[s], r, nr, p, grad, m);
    g.be->upload(g.ctx, gg, grad, nf * 4);
    g.be->sgd_update(g.ctx, &steps[s], r, nr, pg, gg, mg);
    free(grad);
  }
  check_dev(t, &g, "sgd params", pg, p, nf, 1e-5, 1e-6);
  check_dev(t, &g, "sgd momentum", mg, m, nf, 1e-5, 1e-6);
  g.be->sgd_update(g.ctx, &steps[0], r, 0, pg, gg, mg);
  check_dev(t, &g, "sgd over no regions", pg, p, nf, 1e-5, 1e-6);

  g.be->release(g.ctx, pg);
  g.be->release(g.ctx, mg);
  g.be->release(g.ctx, gg);
  free(p);
  free(m);
  free(r);
  g.be->free(g.ctx);
}

static void t_cuda_regions(hsc_test *t) {
  gpu g;
  GPU_OPEN_OR_SKIP(t, &g);
  int nr = 0;
  size_t nf = 0;
  hsc_region *r = make_regions(&nr, &nf);
  size_t np = hsc_regions_count(r, nr);
  float *buf = tu_randn(50, nf, 1.0f), *packed = hsc_xaligned(np * 4 + 64);
  float *bg = dev_from(&g, buf, nf * 4), *pkg = g.be->alloc(g.ctx, np * 4);

  t->be->pack_regions(t->ctx, r, nr, buf, packed);
  g.be->pack_regions(g.ctx, r, nr, bg, pkg);
  check_dev(t, &g, "pack", pkg, packed, np, 0, 0);

  float *fresh = tu_randn(51, np, 1.0f);
  t->be->unpack_regions(t->ctx, r, nr, fresh, buf);
  g.be->upload(g.ctx, pkg, fresh, np * 4);
  g.be->unpack_regions(g.ctx, r, nr, pkg, bg);
  check_dev(t, &g, "unpack", bg, buf, nf, 0, 0);

  t->be->zero_regions(t->ctx, r, nr, buf);
  g.be->zero_regions(g.ctx, r, nr, bg);
  check_dev(t, &g, "zero regions", bg, buf, nf, 0, 0);

  g.be->release(g.ctx, bg);
  g.be->release(g.ctx, pkg);
  free(buf);
  free(packed);
  free(fresh);
  free(r);
  g.be->free(g.ctx);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"cuda_memory", t_cuda_memory},
      {"cuda_relu", t_cuda_relu},
      {"cuda_split_concat", t_cuda_split_concat},
      {"cuda_avgpool", t_cuda_avgpool},
      {"cuda_xent", t_cuda_xent},
      {"cuda_sgd", t_cuda_sgd},
      {"cuda_regions", t_cuda_regions},
  };
  return hsc_test_main("test_cuda", argc, argv, cases, (int)ARRAY_LEN(cases));
}
