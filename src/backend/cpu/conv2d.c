/* General 2-D convolution (kh x kw, stride, zero padding, groups, optional bias) by im2col + GEMM.
 *
 * Used for the network stem (cin 1 or 3, 3x3, stride 1 or 2) and as the reference the specialised convs
 * (pointwise.c, depthwise.c) and the CUDA backend are tested against, so it favours generality over speed:
 * every shape the descriptor allows is handled, including groups == cin.
 *
 * Notation: G groups, cg = cin/G input and og = cout/G output channels per group, K = cg*kh*kw the GEMM
 * inner dimension, P = ho*wo output pixels. Weights w [cout, cg, kh, kw] are, per group, a row-major
 * og x K matrix; the im2col buffer of one group of one image is K x P (row (c, ki, kj), column
 * (oh, ow)), so y_g [og x P] = W_g [og x K] * col [K x P] (Caffe's formulation).
 *
 * Parallelism: OpenBLAS runs single-threaded (cpu_init); each operator splits its work into tiles that
 * are one hsc_cpu_sgemm each and spreads them over OpenMP threads with a static schedule, so that a
 * given thread count always gives the same result:
 *   forward     tiles (image, group, column block of P); im2col of the block into the thread's scratch;
 *   backward dx tiles (image, group, block of input channels): dcol = W_g[:, block]^T dy_g, then col2im
 *               of those channels only, so no two tiles write the same dx element;
 *   backward dw tiles (image, group, column block) accumulate into per-thread partial dw and db buffers
 *               that are summed in a fixed thread order at the end (no atomics, deterministic).
 * Column blocks exist so that batch 1 (latency profiling) still uses every thread. A 1x1, stride 1,
 * unpadded conv needs no im2col: x_n itself is the K x P matrix.
 * Cost: 2 * n * cout * cg * kh * kw * P flops per pass; im2col/col2im move n * G * K * P floats. */
#include <assert.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "cpu.h"

/* Scratch budgets per thread, in floats: an im2col tile (1 MiB, so it stays in L2 next to the GEMM's
 * packed panels) and a dcol tile for col2im (2 MiB). */
enum { COL_BUDGET = 1 << 18, DCOL_BUDGET = 1 << 19 };

typedef struct {
  int cin, h, w, cout, kh, kw, stride, pad, groups;
  int ho, wo, cg, og, khw, k; /* k = cg * kh * kw */
  size_t p;                   /* ho * wo */
} geom;

static geom geom_of(const hsc_conv2d_desc *d) {
  assert(d->n >= 0 && d->cin > 0 && d->cout > 0 && d->kh > 0 && d->kw > 0);
  assert(d->stride > 0 && d->pad >= 0 && d->groups > 0);
  assert(d->cin % d->groups == 0 && d->cout % d->groups == 0);
  /* hsc_conv2d_out_h/w divide a negative numerator toward zero, so a kernel larger than the padded input
   * would give 1 instead of 0 output rows: reject it here. */
  assert(d->h + 2 * d->pad >= d->kh && d->w + 2 * d->pad >= d->kw);
  geom g = {.cin = d->cin,
            .h = d->h,
            .w = d->w,
            .cout = d->cout,
            .kh = d->kh,
            .kw = d->kw,
            .stride = d->stride,
            .pad = d->pad,
            .groups = d->groups};
  g.ho = hsc_conv2d_out_h(d);
  g.wo = hsc_conv2d_out_w(d);
  assert(g.ho > 0 && g.wo > 0);
  g.cg = d->cin / d->groups;
  g.og = d->cout / d->groups;
  g.khw = d->kh * d->kw;
  g.k = g.cg * g.khw;
  g.p = (size_t)g.ho * g.wo;
  return g;
}

/* x_n is already the K x P matrix: no im2col, no col2im. */
static int is_identity_im2col(const geom *g) {
  return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
}

static size_t round16(size_t v) { return (v + 15) / 16 * 16; }
static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* Number of column blocks per (image, group): each block's im2col buffer within COL_BUDGET floats, and
 * enough tiles to balance the threads (a multiple of them, or at least 8 per thread: at most 1/8
 * imbalance), blocks at least 16 columns wide. */
static int col_blocks(const geom *g, int n, int threads) {
  size_t max_cols = COL_BUDGET / (size_t)g->k;
  if (max_cols < 16) max_cols = 16;
  const size_t outer = (size_t)n * g->groups, most = (g->p + 15) / 16;
  size_t b = (g->p + max_cols - 1) / max_cols;
  while (b < most && outer * b % (size_t)threads != 0 && outer * b < 8 * (size_t)threads) b++;
  return b < 1 ? 1 : (int)b;
}

/* Column range [j0, j1) of block `b` of `nb` over the P output columns (hsc_cpu_block_range's cut, so
 * that GEMM tiles start on cache lines). */
static void block_range(size_t p, int nb, int b, size_t *j0, size_t *j1) {
  assert(p <= INT_MAX);
  int lo, hi;
  hsc_cpu_block_range((int)p, nb, b, &lo, &hi);
  *j0 = (size_t)lo;
  *j1 = (size_t)hi;
}

/* Output columns ow in [lo, hi) whose input column ow*stride - pad + kj lies inside [0, w). */
static void valid_ow(const geom *g, int kj, int *lo, int *hi) {
  int a = g->pad - kj; /* ow*s >= a */
  *lo = a <= 0 ? 0 : (a + g->stride - 1) / g->stride;
  int b = g->w - 1 + g->pad - kj; /* ow*s <= b */
  *hi = b < 0 ? 0 : b / g->stride + 1;
  if (*hi > g->wo) *hi = g->wo;
  if (*lo > *hi) *lo = *hi;
}

/* col [K, j1 - j0] = the columns [j0, j1) of the im2col matrix of one group of one image,
 * x [cg, h, w] (that group's channels). Padding reads as zero. */
static void im2col(const geom *g, const float *x, size_t j0, size_t j1, float *col) {
  size_t nj = j1 - j0;
  for (int c = 0; c < g->cg; c++) {
    const float *xc = x + (size_t)c * g->h * g->w;
    for (int ki = 0; ki < g->kh; ki++) {
      for (int kj = 0; kj < g->kw; kj++) {
        float *row = col + ((size_t)(c * g->kh + ki) * g->kw + kj) * nj;
        int vlo, vhi;
        valid_ow(g, kj, &vlo, &vhi);
        for (size_t j = j0; j < j1;) {
          int oh = (int)(j / (size_t)g->wo), ow0 = (int)(j - (size_t)oh * g->wo);
          int ow1 = j1 - j < (size_t)(g->wo - ow0) ? ow0 + (int)(j1 - j) : g->wo;
          float *dst = row + (j - j0); /* dst[ow - ow0] for ow in [ow0, ow1) */
          int ih = oh * g->stride - g->pad + ki;
          if (ih < 0 || ih >= g->h) {
            memset(dst, 0, (size_t)(ow1 - ow0) * sizeof(float));
          } else {
            const float *xr = xc + (size_t)ih * g->w; /* input column of ow: ow*s - pad + kj */
            const int off = kj - g->pad;
            int lo = imax(ow0, imin(vlo, ow1)), hi = imax(lo, imin(vhi, ow1));
            for (int ow = ow0; ow < lo; ow++) dst[ow - ow0] = 0.0f;
            if (g->stride == 1)
              memcpy(dst + (lo - ow0), xr + (lo + off), (size_t)(hi - lo) * sizeof(float));
            else
              for (int ow = lo; ow < hi; ow++) dst[ow - ow0] = xr[ow * g->stride + off];
            for (int ow = hi; ow < ow1; ow++) dst[ow - ow0] = 0.0f;
          }
          j += (size_t)(ow1 - ow0);
        }
      }
    }
  }
}

/* dx [nc, h, w] += col2im(dcol [nc * kh * kw, P]): the adjoint of im2col over all P columns, for nc
 * consecutive input channels. Padding positions are dropped. */
static void col2im_add(const geom *g, const float *dcol, int nc, float *dx) {
  for (int c = 0; c < nc; c++) {
    float *xc = dx + (size_t)c * g->h * g->w;
    for (int ki = 0; ki < g->kh; ki++) {
      for (int kj = 0; kj < g->kw; kj++) {
        const float *row = dcol + ((size_t)(c * g->kh + ki) * g->kw + kj) * g->p;
        int lo, hi;
        valid_ow(g, kj, &lo, &hi);
        for (int oh = 0; oh < g->ho; oh++) {
          int ih = oh * g->stride - g->pad + ki;
          if (ih < 0 || ih >= g->h) continue;
          float *xr = xc + (size_t)ih * g->w; /* input column of ow: ow*s - pad + kj */
          const int off = kj - g->pad;
          const float *src = row + (size_t)oh * g->wo;
          if (g->stride == 1)
            for (int ow = lo; ow < hi; ow++) xr[ow + off] += src[ow];
          else
            for (int ow = lo; ow < hi; ow++) xr[ow * g->stride + off] += src[ow];
        }
      }
    }
  }
}

/* x [n, cin, h, w], w [cout, cin/groups, kh, kw], b [cout] or NULL -> y [n, cout, ho, wo]. */
void hsc_cpu_conv2d_forward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                            const float *b, float *y) {
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  if (d->n <= 0) return;
  const geom g = geom_of(d);
  const int ident = is_identity_im2col(&g);
  const int nb = col_blocks(&g, d->n, c->threads);
  size_t max_cols = 0;
  for (int bb = 0; bb < nb; bb++) {
    size_t j0, j1;
    block_range(g.p, nb, bb, &j0, &j1);
    if (j1 - j0 > max_cols) max_cols = j1 - j0;
  }
  const size_t per_thread = ident ? 0 : round16((size_t)g.k * max_cols);
  float *scratch = per_thread ? hsc_cpu_scratch(c, per_thread * (size_t)c->threads) : NULL;
  const long tiles = (long)d->n * g.groups * nb;
#pragma omp parallel num_threads(c->threads)
  {
    float *col = scratch ? scratch + per_thread * (size_t)omp_get_thread_num() : NULL;
#pragma omp for schedule(static)
    for (long t = 0; t < tiles; t++) {
      int bb = (int)(t % nb), grp = (int)(t / nb % g.groups), img = (int)(t / nb / g.groups);
      size_t j0, j1;
      block_range(g.p, nb, bb, &j0, &j1);
      const int nj = (int)(j1 - j0);
      const float *xg = x + ((size_t)img * g.cin + (size_t)grp * g.cg) * g.h * g.w;
      float *yt = y + ((size_t)img * g.cout + (size_t)grp * g.og) * g.p + j0;
      const float *bmat = xg + j0;
      int ldb = (int)g.p;
      if (!ident) {
        im2col(&g, xg, j0, j1, col);
        bmat = col;
        ldb = nj;
      }
      float beta = 0.0f;
      if (b) {
        for (int o = 0; o < g.og; o++) {
          float bo = b[grp * g.og + o];
          float *yr = yt + (size_t)o * g.p;
          for (int j = 0; j < nj; j++) yr[j] = bo;
        }
        beta = 1.0f;
      }
      hsc_cpu_sgemm(0, 0, g.og, nj, g.k, 1.0f, w + (size_t)grp * g.og * g.k, g.k, bmat, ldb, beta, yt,
                    (int)g.p);
    }
  }
}

/* dx [n, cin, h, w] += dL/dx over the input channel blocks; w [cout, cg, kh, kw], dy [n, cout, ho, wo]. */
static void backward_dx(hsc_cpu_ctx *c, const geom *g, int n, const float *w, const float *dy, float *dx) {
  const int ident = is_identity_im2col(g);
  /* Channels per tile: the dcol buffer (cb * kh * kw x P) within DCOL_BUDGET, and enough tiles. */
  size_t per_ch = (size_t)g->khw * g->p;
  int cb = ident ? g->cg : (int)(DCOL_BUDGET / per_ch < 1 ? 1 : DCOL_BUDGET / per_ch);
  if (cb > g->cg) cb = g->cg;
  long outer = (long)n * g->groups;
  if (outer < c->threads) {
    int want = (int)((c->threads + outer - 1) / outer); /* blocks per (image, group) */
    int cb_t = (g->cg + want - 1) / want;
    if (cb_t < cb) cb = cb_t;
  }
  if (cb < 1) cb = 1;
  const int nblk = (g->cg + cb - 1) / cb;
  const size_t per_thread = ident ? 0 : round16((size_t)cb * per_ch);
  float *scratch = per_thread ? hsc_cpu_scratch(c, per_thread * (size_t)c->threads) : NULL;
  const long tiles = outer * nblk;
#pragma omp parallel num_threads(c->threads)
  {
    float *dcol = scratch ? scratch + per_thread * (size_t)omp_get_thread_num() : NULL;
#pragma omp for schedule(static)
    for (long t = 0; t < tiles; t++) {
      int blk = (int)(t % nblk), grp = (int)(t / nblk % g->groups), img = (int)(t / nblk / g->groups);
      int c0 = blk * cb, nc = imin(cb, g->cg - c0);
      const float *wg = w + (size_t)grp * g->og * g->k + (size_t)c0 * g->khw; /* og x (nc*khw), ld k */
      const float *dyg = dy + ((size_t)img * g->cout + (size_t)grp * g->og) * g->p;
      float *dxc = dx + ((size_t)img * g->cin + (size_t)grp * g->cg + c0) * g->h * g->w;
      if (ident) {
        hsc_cpu_sgemm(1, 0, nc, (int)g->p, g->og, 1.0f, wg, g->k, dyg, (int)g->p, 1.0f, dxc, (int)g->p);
      } else {
        hsc_cpu_sgemm(1, 0, nc * g->khw, (int)g->p, g->og, 1.0f, wg, g->k, dyg, (int)g->p, 0.0f, dcol,
                      (int)g->p);
        col2im_add(g, dcol, nc, dxc);
      }
    }
  }
}

/* dw [cout, cg, kh, kw] += sum_n dy_n col_n^T, db [cout] += sum over n and P of dy (either may be NULL). */
static void backward_dw(hsc_cpu_ctx *c, const geom *g, int n, const float *x, const float *dy, float *dw,
                        float *db) {
  const int ident = is_identity_im2col(g);
  const int nb = col_blocks(g, n, c->threads);
  size_t max_cols = 0;
  for (int bb = 0; bb < nb; bb++) {
    size_t j0, j1;
    block_range(g->p, nb, bb, &j0, &j1);
    if (j1 - j0 > max_cols) max_cols = j1 - j0;
  }
  const size_t wsize = (size_t)g->cout * g->k;
  const size_t col_floats = ident || !dw ? 0 : round16((size_t)g->k * max_cols);
  const size_t dw_floats = dw ? round16(wsize) : 0, db_floats = db ? round16((size_t)g->cout) : 0;
  const size_t per_thread = col_floats + dw_floats + db_floats;
  float *scratch = hsc_cpu_scratch(c, per_thread * (size_t)c->threads);
  const long tiles = (long)n * g->groups * nb;
#pragma omp parallel num_threads(c->threads)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    float *mine = scratch + per_thread * (size_t)tid;
    float *col = col_floats ? mine : NULL;
    float *pdw = dw ? mine + col_floats : NULL;
    float *pdb = db ? mine + col_floats + dw_floats : NULL;
    if (pdw) memset(pdw, 0, wsize * sizeof(float));
    if (pdb) memset(pdb, 0, (size_t)g->cout * sizeof(float));
#pragma omp for schedule(static)
    for (long t = 0; t < tiles; t++) {
      int bb = (int)(t % nb), grp = (int)(t / nb % g->groups), img = (int)(t / nb / g->groups);
      size_t j0, j1;
      block_range(g->p, nb, bb, &j0, &j1);
      const int nj = (int)(j1 - j0);
      const float *dyt = dy + ((size_t)img * g->cout + (size_t)grp * g->og) * g->p + j0; /* og x nj */
      if (pdw) {
        const float *xg = x + ((size_t)img * g->cin + (size_t)grp * g->cg) * g->h * g->w;
        const float *bmat = xg + j0; /* K x nj */
        int ldb = (int)g->p;
        if (!ident) {
          im2col(g, xg, j0, j1, col);
          bmat = col;
          ldb = nj;
        }
        hsc_cpu_sgemm(0, 1, g->og, g->k, nj, 1.0f, dyt, (int)g->p, bmat, ldb, 1.0f,
                      pdw + (size_t)grp * g->og * g->k, g->k);
      }
      if (pdb) {
        for (int o = 0; o < g->og; o++) {
          const float *r = dyt + (size_t)o * g->p;
          double s = 0.0; /* up to COL_BUDGET / K columns: sum in double, it costs nothing here */
          for (int j = 0; j < nj; j++) s += r[j];
          pdb[grp * g->og + o] += (float)s;
        }
      }
    }
    /* Implicit barrier above; sum the partials in thread order 0..nt-1. */
    if (dw) {
#pragma omp for schedule(static)
      for (size_t i = 0; i < wsize; i++) {
        float s = 0.0f;
        for (int u = 0; u < nt; u++) s += scratch[per_thread * (size_t)u + col_floats + i];
        dw[i] += s;
      }
    }
    if (db) {
#pragma omp for schedule(static)
      for (int o = 0; o < g->cout; o++) {
        float s = 0.0f;
        for (int u = 0; u < nt; u++) s += scratch[per_thread * (size_t)u + col_floats + dw_floats + o];
        db[o] += s;
      }
    }
  }
}

/* x [n, cin, h, w], w [cout, cin/groups, kh, kw], dy [n, cout, ho, wo]; dx [n, cin, h, w],
 * dw [cout, cin/groups, kh, kw], db [cout] accumulate (+=); a NULL gradient is skipped. */
void hsc_cpu_conv2d_backward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, float *db) {
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  if (d->n <= 0) return;
  const geom g = geom_of(d);
  if (dx) backward_dx(c, &g, d->n, w, dy, dx);
  if (dw || db) backward_dw(c, &g, d->n, x, dy, dw, db);
}
