/* Pointwise (1x1, stride 1) convolution on the leading cout x cin slice of a max-width weight.
 *
 * Per image n the op is a GEMM on a strided slice of the weight, never a copy of it:
 *   forward   y_n [cout x hw]  = W [cout x cin, ld ldw] * x_n [cin x hw]
 *   backward  dx_n [cin x hw] += W^T dy_n
 *             dw [cout x cin, ld ldw] += sum_n dy_n x_n^T
 * Cost: 2 * n * cout * cin * hw flops per product.
 *
 * OpenBLAS runs single-threaded (cpu_init), so this file does the threading: the products are cut into
 * tiles, each one hsc_cpu_sgemm call, spread over OpenMP threads with a static schedule (a given thread
 * count always gives the same bits). Three tilings, by shape:
 *   - hw == 1 (a 1x1 conv on pooled features): x [n, cin] and y [n, cout] are row-major matrices, so
 *     each product is one GEMM over the whole batch, cut into a block per thread.
 *   - hw small against the channels (the 7x7 stage at 640 channels) or a tiny product per image: a GEMM
 *     per image would pack the whole weight slice again for only hw columns, or be mostly call overhead.
 *     Consecutive images are gathered into a [channels x (images * hw)] panel in the thread's scratch,
 *     one GEMM runs on the panel, and its result is scattered back (added, for dx). The copies move
 *     (cin + cout) * hw floats per image; the packing they save is cout * cin per image.
 *   - otherwise a GEMM per image, on the strided tensors in place. Whole images are the tiles when the
 *     batch balances the threads; else each image's output is cut into blocks so that batch 1 (latency
 *     profiling) still uses every thread. Blocks cut the larger GEMM operand (rows of W when the output
 *     has more rows than columns, else columns of x), so that it is partitioned rather than packed again
 *     by every thread.
 * dw sums over images, so tiles over images cannot write it without races. Two ways, by shape:
 *   - private sums: each thread accumulates its tiles (image panels or column blocks of images, as
 *     above) into a cout x cin buffer in the scratch; the buffers are then added to the slice in thread
 *     order. Extra cost: threads * cout * cin adds.
 *   - rows: the rows of dw are cut among threads and each thread runs over every image, writing the slice
 *     directly. Extra cost: every thread packs every x_n, (threads - 1) * n * cin * hw.
 *   Rows win when the batch holds few columns against dw's rows (n * hw <= 2 * cout: batch 1, small hw);
 *   measured at 1 x 640->1024 x 7x7 on 2 threads, rows reach 114% of one sgemm, private sums 49%. */
#include <assert.h>
#include <omp.h>
#include <string.h>

#include "cpu.h"

/* A gathered panel holds about PANEL_COLS columns: W is packed once per panel, so that packing is
 * 1 / (2 * PANEL_COLS) of the flops. Products under TINY_FLOPS per image are gathered whatever their
 * shape: OpenBLAS's call overhead (~1 us) would dominate them. */
enum { PANEL_COLS = 768, TINY_FLOPS = 1 << 16 };

static int imin(int a, int b) { return a < b ? a : b; }

/* Number of image panels for gathering (images k*n/p .. (k+1)*n/p - 1 form panel k), or 0 when images
 * are better used in place. Gathering copies (cin + cout) * hw floats per image and saves a packing of
 * the cout x cin weight slice per image: it pays when the slice is the larger (hw < cin*cout/(cin+cout),
 * e.g. hw < c/2 for square weights) or the per-image product is tiny. It also needs enough images to give
 * every thread a panel of two or more. Measured, one thread, against one sgemm of the same size:
 * 32 x 640ch x 7x7 forward 58% in place, 88% gathered; 64 x 48ch x 7x7 101% in place, 67% gathered. */
static int gather_panels(int n, int hw, int cin, int cout, int threads) {
  const double flops = 2.0 * cin * cout * hw;
  if ((double)cin * cout < (double)(cin + cout) * hw && flops >= TINY_FLOPS) return 0;
  long per_thread = ((long)n * hw + (long)threads * PANEL_COLS - 1) / ((long)threads * PANEL_COLS);
  long panels = (long)threads * per_thread;
  if (panels * 2 > n) return 0;
  return (int)panels;
}

/* dst [rows x (nimg * hw)] = the rows x hw matrices of nimg consecutive images side by side, src holding
 * image i's matrix at src + i * img. */
static void gather(const float *src, size_t img, int nimg, int rows, int hw, float *dst) {
  const size_t ld = (size_t)nimg * hw;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < nimg; i++)
      memcpy(dst + r * ld + (size_t)i * hw, src + i * img + (size_t)r * hw, (size_t)hw * sizeof(float));
}

/* The inverse of gather; adds into dst when `add`, else overwrites. */
static void scatter(const float *src, int nimg, int rows, int hw, int add, float *dst, size_t img) {
  const size_t ld = (size_t)nimg * hw;
  for (int i = 0; i < nimg; i++)
    for (int r = 0; r < rows; r++) {
      const float *s = src + r * ld + (size_t)i * hw;
      float *d = dst + i * img + (size_t)r * hw;
      if (add)
        for (int q = 0; q < hw; q++) d[q] += s[q];
      else
        memcpy(d, s, (size_t)hw * sizeof(float));
    }
}

/* The forward epilogue on rows [r0, r1) x columns [q0, q1) of one image's output c [rows x hw]. */
static void epilogue(const hsc_pointwise_desc *e, float *c, int hw, int r0, int r1, int q0, int q1) {
  for (int r = r0; r < r1; r++) {
    const float a = e->scale[r], b = e->shift[r];
    float *row = c + (size_t)r * hw;
    if (e->relu) {
#pragma omp simd
      for (int q = q0; q < q1; q++) {
        const float v = a * row[q] + b;
        row[q] = v > 0.0f ? v : 0.0f;
      }
    } else {
#pragma omp simd
      for (int q = q0; q < q1; q++) row[q] = a * row[q] + b;
    }
  }
}

/* Per image: C_n [rows x hw] = op(A) [rows x k] * B_n [k x hw] (+ C_n when `add`), with A a slice of W
 * shared by all images (transposed when ta), B_n = b + n * k * hw and C_n = c + n * rows * hw. */
static void per_image_gemm(hsc_cpu_ctx *cx, int nimg, int rows, int hw, int k, int ta, const float *a,
                           int lda, const float *b, int add, float *c, const hsc_pointwise_desc *epi) {
  const int threads = cx->threads;
  const size_t b_img = (size_t)k * hw, c_img = (size_t)rows * hw;
  const int panels = gather_panels(nimg, hw, rows, k, threads);
  if (panels) {
    const int most = (nimg + panels - 1) / panels; /* images in the largest panel */
    const size_t bsz = ((size_t)k * most * hw + 15) / 16 * 16,
                 csz = ((size_t)rows * most * hw + 15) / 16 * 16;
    float *scratch = hsc_cpu_scratch(cx, (bsz + csz) * (size_t)threads);
#pragma omp parallel num_threads(threads)
    {
      float *bp = scratch + (bsz + csz) * (size_t)omp_get_thread_num(), *cp = bp + bsz;
#pragma omp for schedule(static)
      for (int p = 0; p < panels; p++) {
        int i0 = (int)((long)nimg * p / panels), i1 = (int)((long)nimg * (p + 1) / panels), ni = i1 - i0;
        const int cols = ni * hw;
        gather(b + i0 * b_img, b_img, ni, k, hw, bp);
        hsc_cpu_sgemm(ta, 0, rows, cols, k, 1.0f, a, lda, bp, cols, 0.0f, cp, cols);
        scatter(cp, ni, rows, hw, add, c + i0 * c_img, c_img);
        if (epi)
          for (int i = i0; i < i1; i++) epilogue(epi, c + i * c_img, hw, 0, rows, 0, hw);
      }
    }
    return;
  }
  /* Tiles per image: 1 when the batch balances the threads (a multiple of them, or at least 8 tiles per
   * thread: at most 1/8 imbalance); else the fewest blocks that do, at least 8 rows or 16 columns wide. */
  const int by_rows = rows > hw;
  const int most = by_rows ? rows / 8 : hw / 16;
  int blocks = 1;
  while (blocks < most && (long)nimg * blocks % threads != 0 && (long)nimg * blocks < 8L * threads) blocks++;
  const long tiles = (long)nimg * blocks;
  const float beta = add ? 1.0f : 0.0f;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long t = 0; t < tiles; t++) {
    int img = (int)(t / blocks), blk = (int)(t % blocks), lo, hi;
    const float *bn = b + img * b_img;
    float *cn = c + img * c_img;
    if (by_rows) {
      hsc_cpu_block_range(rows, blocks, blk, &lo, &hi);
      const float *at = ta ? a + lo : a + (size_t)lo * lda;
      hsc_cpu_sgemm(ta, 0, hi - lo, hw, k, 1.0f, at, lda, bn, hw, beta, cn + (size_t)lo * hw, hw);
      if (epi) epilogue(epi, cn, hw, lo, hi, 0, hw);
    } else {
      hsc_cpu_block_range(hw, blocks, blk, &lo, &hi);
      hsc_cpu_sgemm(ta, 0, rows, hi - lo, k, 1.0f, a, lda, bn + lo, hw, beta, cn + lo, hw);
      if (epi) epilogue(epi, cn, hw, 0, rows, lo, hi);
    }
  }
}

/* x [n, cin, hw], w [cout rows of ldw floats; the leading cin used] -> y [n, cout, hw]. */
void hsc_cpu_pointwise_forward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                               const float *w, float *y) {
  assert(d->n >= 0 && d->cin > 0 && d->cout > 0 && d->hw > 0 && d->ldw >= d->cin);
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  if (d->n == 0) return;
  const hsc_pointwise_desc *epi = d->scale ? d : NULL;
  if (d->hw == 1) { /* y [n x cout] = x [n x cin] W^T */
    hsc_cpu_gemm_par(c->threads, 0, 1, d->n, d->cout, d->cin, x, d->cin, w, d->ldw, 0.0f, NULL, y, d->cout);
    if (epi) /* y is [n x cout] here: the channel is the column */
      for (int i = 0; i < d->n; i++)
        for (int o = 0; o < d->cout; o++) {
          const float v = d->scale[o] * y[(size_t)i * d->cout + o] + d->shift[o];
          y[(size_t)i * d->cout + o] = d->relu && v < 0.0f ? 0.0f : v;
        }
  } else {
    per_image_gemm(c, d->n, d->cout, d->hw, d->cin, 0, w, d->ldw, x, 0, y, epi);
  }
}

/* dw [cout x cin slice, ld ldw] += sum_n dy_n x_n^T with rows of dw cut among threads. */
static void dw_by_rows(int threads, const hsc_pointwise_desc *d, const float *x, const float *dy, float *dw) {
  const int cin = d->cin, cout = d->cout, hw = d->hw;
  int nb = imin(threads, cout / 8);
  if (nb < 1) nb = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < nb; t++) {
    int lo, hi;
    hsc_cpu_block_range(cout, nb, t, &lo, &hi);
    for (int img = 0; img < d->n; img++) {
      const size_t o = (size_t)img * hw;
      hsc_cpu_sgemm(0, 1, hi - lo, cin, hw, 1.0f, dy + (o * cout + (size_t)lo * hw), hw, x + o * cin, hw,
                    1.0f, dw + (size_t)lo * d->ldw, d->ldw);
    }
  }
}

/* dw [cout x cin slice, ld ldw] += sum_n dy_n x_n^T with private per-thread cout x cin sums over tiles
 * (image panels, or column blocks of images), reduced in thread order. */
static void dw_by_partials(hsc_cpu_ctx *c, const hsc_pointwise_desc *d, const float *x, const float *dy,
                           float *dw) {
  const int n = d->n, cin = d->cin, cout = d->cout, hw = d->hw, threads = c->threads;
  const size_t part = ((size_t)cout * cin + 15) / 16 * 16;
  const int panels = gather_panels(n, hw, cin, cout, threads);
  /* Gathered panels [cin x cols] and [cout x cols], or, in place, column blocks per image so that
   * every thread has tiles (the output is the whole cout x cin sum, so blocks can only cut hw). */
  int blocks = 1;
  size_t xsz = 0, dsz = 0;
  if (panels) {
    const size_t cols = (size_t)((n + panels - 1) / panels) * hw;
    xsz = ((size_t)cin * cols + 15) / 16 * 16;
    dsz = ((size_t)cout * cols + 15) / 16 * 16;
  } else {
    while (blocks < hw / 16 && (long)n * blocks % threads != 0 && (long)n * blocks < 8L * threads) blocks++;
  }
  const size_t per_thread = part + xsz + dsz;
  float *scratch = hsc_cpu_scratch(c, per_thread * (size_t)threads);
  const long tiles = panels ? panels : (long)n * blocks;
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads();
    float *mine = scratch + per_thread * (size_t)omp_get_thread_num(), *xp = mine + part, *dp = xp + xsz;
    int first = 1; /* the first tile of this thread overwrites its buffer (beta 0) */
#pragma omp for schedule(static)
    for (long t = 0; t < tiles; t++) {
      const float beta = first ? 0.0f : 1.0f;
      first = 0;
      if (panels) {
        int i0 = (int)((long)n * t / panels), i1 = (int)((long)n * (t + 1) / panels), cols = (i1 - i0) * hw;
        gather(x + (size_t)i0 * cin * hw, (size_t)cin * hw, i1 - i0, cin, hw, xp);
        gather(dy + (size_t)i0 * cout * hw, (size_t)cout * hw, i1 - i0, cout, hw, dp);
        hsc_cpu_sgemm(0, 1, cout, cin, cols, 1.0f, dp, cols, xp, cols, beta, mine, cin);
      } else {
        int img = (int)(t / blocks), lo, hi;
        hsc_cpu_block_range(hw, blocks, (int)(t % blocks), &lo, &hi);
        const size_t o = (size_t)img * hw;
        hsc_cpu_sgemm(0, 1, cout, cin, hi - lo, 1.0f, dy + o * cout + lo, hw, x + o * cin + lo, hw, beta,
                      mine, cin);
      }
    }
    if (first) memset(mine, 0, (size_t)cout * cin * sizeof(float)); /* a thread with no tile */
#pragma omp barrier
#pragma omp for schedule(static)
    for (int r = 0; r < cout; r++) {
      float *dst = dw + (size_t)r * d->ldw;
      for (int u = 0; u < nt; u++) {
        const float *src = scratch + per_thread * (size_t)u + (size_t)r * cin;
        for (int i = 0; i < cin; i++) dst[i] += src[i];
      }
    }
  }
}

/* x [n, cin, hw], w [cout rows of ldw], dy [n, cout, hw]; dx [n, cin, hw] and dw [cout rows of ldw, the
 * leading cin written] accumulate (+=); a NULL gradient is skipped. Rows >= cout and columns >= cin of
 * dw are never touched. */
void hsc_cpu_pointwise_backward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                                const float *w, const float *dy, float *dx, float *dw) {
  assert(d->n >= 0 && d->cin > 0 && d->cout > 0 && d->hw > 0 && d->ldw >= d->cin);
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  if (d->n == 0) return;
  if (dx) {
    if (d->hw == 1) /* dx [n x cin] += dy [n x cout] W */
      hsc_cpu_gemm_par(c->threads, 0, 0, d->n, d->cin, d->cout, dy, d->cout, w, d->ldw,
                       d->dx_assign ? 0.0f : 1.0f, NULL, dx, d->cin);
    else
      per_image_gemm(c, d->n, d->cin, d->hw, d->cout, 1, w, d->ldw, dy, !d->dx_assign, dx, NULL);
  }
  if (dw) {
    if (d->hw == 1) /* dw [cout x cin] += dy^T [cout x n] x [n x cin] */
      hsc_cpu_gemm_par(c->threads, 1, 0, d->cout, d->cin, d->n, dy, d->cout, x, d->cin, 1.0f, NULL, dw,
                       d->ldw);
    else if ((long)d->n * d->hw <= 2L * d->cout && d->cout >= 16)
      dw_by_rows(c->threads, d, x, dy, dw);
    else
      dw_by_partials(c, d, x, dy, dw);
  }
}
