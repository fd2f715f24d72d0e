/* GEMM helpers shared by the GEMM-based operators (pointwise, linear): the single-threaded sgemm call
 * and the cut of one product into per-thread blocks. */
#include <cblas.h>

#include "cpu.h"

void hsc_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { /* C = beta * C, as BLAS defines it for an empty inner dimension */
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++)
        c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n,
              k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Range [lo, hi) of block b of nb over `len`; interior boundaries on multiples of 16 when the blocks are
 * wide enough, so that column blocks start on cache lines. */
void hsc_cpu_block_range(int len, int nb, int b, int *lo, int *hi) {
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
void hsc_cpu_gemm_par(int threads, int ta, int tb, int m, int n, int k, const float *a, int lda,
                      const float *b, int ldb, float beta, const float *bias, float *c, int ldc) {
  const int by_rows = m >= n;
  const int len = by_rows ? m : n, most = by_rows ? len / 8 : len / 16;
  int nb = threads < most ? threads : most;
  if (nb < 1) nb = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < nb; t++) {
    int lo, hi;
    hsc_cpu_block_range(len, nb, t, &lo, &hi);
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
