/* ReLU forward and backward (backend.h relu_forward / relu_backward). Memory bound: one read and one
 * write per element forward, three reads and one write backward. */
#include "kernels.h"
#include "launch.cuh"

/* x, y [count]; y may alias x. x < 0 ? 0 : x, as the CPU backend: a NaN passes through (as in PyTorch) so
 * that a diverged network shows in the loss. */
static __global__ void relu_forward(size_t count, const float *x, float *y) {
  HSC_K_FOR(i, count) {
    float v = x[i];
    y[i] = v < 0.0f ? 0.0f : v;
  }
}

/* y, dy, dx [count]: dx += dy where the forward output was positive. */
static __global__ void relu_backward(size_t count, const float *__restrict__ y, const float *__restrict__ dy,
                                     float *__restrict__ dx) {
  HSC_K_FOR(i, count) {
    if (y[i] > 0.0f) dx[i] += dy[i];
  }
}

extern "C" cudaError_t hsc_k_relu_forward(cudaStream_t stream, size_t count, const float *x, float *y) {
  if (count == 0) return cudaSuccess;
  relu_forward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, x, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_relu_backward(cudaStream_t stream, size_t count, const float *y, const float *dy,
                                           float *dx) {
  if (count == 0) return cudaSuccess;
  relu_backward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, y, dy, dx);
  return cudaGetLastError();
}
