/* Fully connected layer: y [n, out] = x [n, in] w [out, in]^T + b, and its backward
 *   dx [n, in]   += dy [n, out] w [out, in]
 *   dw [out, in] += dy^T [out, n] x [n, in]
 *   db [out]     += sum over n of dy.
 * Each product is one GEMM (2 * n * in * out flops) whose output is cut into one block per thread
 * (OpenBLAS itself runs single-threaded, see cpu_init): rows when the output is taller than wide, else
 * columns, so that every block reduces over the whole inner dimension and no partial sums are needed. */
#include <assert.h>

#include "cpu.h"

/* Range [lo, hi) of block b of nb over `len`; interior boundaries on multiples of 16 when the blocks are
 * wide enough, so that column blocks start on cache lines. */
static void block_range(int len, int nb, int b, int *lo, int *hi) {
  long l = (long)len * b / nb, h = (long)len * (b + 1) / nb;
  if (len / nb >= 64) {
    l = b == 0 ? 0 : (l + 8) / 16 * 16;
    h = b == nb - 1 ? len : (h + 8) / 16 * 16;
  }
  *lo = (int)l;
  *hi = (int)h;
}

/* C [m x n] = op(A) op(B) + beta C with C cut into up to `threads` blocks of at least 8 rows or 16
 * columns. When bias is non-NULL, C's rows are first set to bias [n] and beta is taken as 1. */
static void gemm_par(int threads, int ta, int tb, int m, int n, int k, const float *a, int lda,
                     const float *b, int ldb, float beta, const float *bias, float *c, int ldc) {
  const int by_rows = m >= n;
  const int len = by_rows ? m : n, most = by_rows ? len / 8 : len / 16;
  int nb = threads < most ? threads : most;
  if (nb < 1) nb = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < nb; t++) {
    int lo, hi;
    block_range(len, nb, t, &lo, &hi);
    int r0 = by_rows ? lo : 0, r1 = by_rows ? hi : m, c0 = by_rows ? 0 : lo, c1 = by_rows ? n : hi;
    const float *at = ta ? a + r0 : a + (size_t)r0 * lda;
    const float *bt = tb ? b + (size_t)c0 * ldb : b + c0;
    float *ct = c + (size_t)r0 * ldc + c0;
    float bt_beta = beta;
    if (bias) {
      for (int i = 0; i < r1 - r0; i++)
        for (int j = 0; j < c1 - c0; j++) ct[(size_t)i * ldc + j] = bias[c0 + j];
      bt_beta = 1.0f;
    }
    hsc_cpu_sgemm(ta, tb, r1 - r0, c1 - c0, k, 1.0f, at, lda, bt, ldb, bt_beta, ct, ldc);
  }
}

/* x [n, in], w [out, in], b [out] or NULL -> y [n, out]. */
void hsc_cpu_linear_forward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                            const float *b, float *y) {
  assert(d->n >= 0 && d->in > 0 && d->out > 0);
  if (d->n == 0) return;
  gemm_par(hsc_cpu(ctx)->threads, 0, 1, d->n, d->out, d->in, x, d->in, w, d->in, 0.0f, b, y, d->out);
}

/* x [n, in], w [out, in], dy [n, out]; dx [n, in], dw [out, in], db [out] accumulate (+=); a NULL
 * gradient is skipped. */
void hsc_cpu_linear_backward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, float *db) {
  assert(d->n >= 0 && d->in > 0 && d->out > 0);
  const int threads = hsc_cpu(ctx)->threads, n = d->n, in = d->in, out = d->out;
  if (n == 0) return;
  if (dx) gemm_par(threads, 0, 0, n, in, out, dy, out, w, in, 1.0f, NULL, dx, in);
  if (dw) gemm_par(threads, 1, 0, out, in, n, dy, out, x, in, 1.0f, NULL, dw, in);
  if (db) {
    /* Columns of dy summed in double: n can be a whole batch and each sum is only n adds. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int o = 0; o < out; o++) {
      double s = 0.0;
      for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
      db[o] += (float)s;
    }
  }
}
