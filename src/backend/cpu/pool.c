/* Global average pool (the supernet's head, before the classifier). Cost n c hw adds; memory-bound. */
#include <assert.h>

#include "cpu.h"

/* Below this many input floats the loop runs on the calling thread (an OpenMP fork costs about as much
 * as summing 32k floats). */
enum { POOL_PARALLEL_MIN = 1 << 15 };

/* x [n, c, hw] -> y [n, c]: y = sum over hw / hw. The sum is float with a vector reduction (8 or 16
 * partial sums), which keeps the rounding error far below the gradient noise for the 7x7 maps pooled
 * here; the division (not a multiply by 1/hw) matches torch.mean. */
void hsc_cpu_avgpool_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *y) {
  assert(n >= 0 && c >= 0 && hw > 0);
  hsc_cpu_ctx *cc = hsc_cpu(ctx);
  long rows = (long)n * c;
#pragma omp parallel for num_threads(cc->threads) if (rows * hw > POOL_PARALLEL_MIN) schedule(static)
  for (long r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * hw;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < hw; i++) s += xr[i];
    y[r] = s / (float)hw;
  }
}

/* dy [n, c] -> dx [n, c, hw] += dy / hw broadcast over the map. dx NULL: nothing to do. */
void hsc_cpu_avgpool_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *dy, float *dx) {
  assert(n >= 0 && c >= 0 && hw > 0);
  if (!dx) return;
  hsc_cpu_ctx *cc = hsc_cpu(ctx);
  long rows = (long)n * c;
#pragma omp parallel for num_threads(cc->threads) if (rows * hw > POOL_PARALLEL_MIN) schedule(static)
  for (long r = 0; r < rows; r++) {
    float *dxr = dx + (size_t)r * hw;
    float g = dy[r] / (float)hw;
#pragma omp simd
    for (int i = 0; i < hw; i++) dxr[i] += g;
  }
}
