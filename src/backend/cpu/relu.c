/* ReLU, forward and backward. Memory-bound: one read and one write per element (two reads and a
 * read-modify-write backward), so threads only pay off on large tensors. */
#include "cpu.h"

/* Below this many elements the loop runs on the calling thread: an OpenMP fork costs a few
 * microseconds, about what one thread needs for 32k elements. */
enum { RELU_PARALLEL_MIN = 1 << 15 };

/* x, y [count]; y may alias x (every element is read before it is written, at the same index).
 * `x < 0 ? 0 : x` rather than `x > 0 ? x : 0` so that a NaN passes through as in PyTorch, and a
 * diverged network shows up in the loss instead of being masked here. */
void hsc_cpu_relu_forward(hsc_backend_ctx *ctx, size_t count, const float *x, float *y) {
  hsc_cpu_ctx *c = hsc_cpu(ctx);
#pragma omp parallel for simd num_threads(c->threads) if (count > RELU_PARALLEL_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

/* y, dy, dx [count]: dx += dy where the forward output y > 0 (the mask PyTorch uses: the gradient at
 * x = 0 is 0). dx NULL: nothing to do. */
void hsc_cpu_relu_backward(hsc_backend_ctx *ctx, size_t count, const float *y, const float *dy, float *dx) {
  if (!dx) return;
  hsc_cpu_ctx *c = hsc_cpu(ctx);
#pragma omp parallel for simd num_threads(c->threads) if (count > RELU_PARALLEL_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}
