/* Fully connected layer: y [n, out] = x [n, in] w [out, in]^T + b, and its backward
 *   dx [n, in]   += dy [n, out] w [out, in]
 *   dw [out, in] += dy^T [out, n] x [n, in]
 *   db [out]     += sum over n of dy.
 * Each product is one GEMM (2 * n * in * out flops) whose output is cut into one block per thread
 * (OpenBLAS itself runs single-threaded, see cpu_init): rows when the output is taller than wide, else
 * columns, so that every block reduces over the whole inner dimension and no partial sums are needed. */
#include <assert.h>

#include "cpu.h"

/* x [n, in], w [out, in], b [out] or NULL -> y [n, out]. */
void hsc_cpu_linear_forward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                            const float *b, float *y) {
  assert(d->n >= 0 && d->in > 0 && d->out > 0);
  if (d->n == 0) return;
  hsc_cpu_gemm_par(hsc_cpu(ctx)->threads, 0, 1, d->n, d->out, d->in, x, d->in, w, d->in, 0.0f, b, y, d->out);
}

/* x [n, in], w [out, in], dy [n, out]; dx [n, in], dw [out, in], db [out] accumulate (+=); a NULL
 * gradient is skipped. */
void hsc_cpu_linear_backward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, float *db) {
  assert(d->n >= 0 && d->in > 0 && d->out > 0);
  const int threads = hsc_cpu(ctx)->threads, n = d->n, in = d->in, out = d->out;
  if (n == 0) return;
  if (dx) hsc_cpu_gemm_par(threads, 0, 0, n, in, out, dy, out, w, in, 1.0f, NULL, dx, in);
  if (dw) hsc_cpu_gemm_par(threads, 1, 0, out, in, n, dy, out, x, in, 1.0f, NULL, dw, in);
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
