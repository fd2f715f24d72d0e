/* Global average pool (backend.h avgpool_*). Forward: one warp per (image, channel) row sums hw values
 * with coalesced loads and a shuffle reduction (the pooled maps are small, 7x7 at the ImageNet head, so a
 * block per row would leave most threads idle). Backward is a broadcast, one thread per input element. */
#include "kernels.h"
#include "launch.cuh"

#define WARPS_PER_BLOCK (HSC_K_THREADS / 32)

/* x [rows, hw] -> y [rows] = mean of each row. */
static __global__ void avgpool_forward(size_t rows, int hw, const float *__restrict__ x,
                                       float *__restrict__ y) {
  unsigned lane = threadIdx.x & 31u;
  size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  for (size_t r = warp; r < rows; r += warps) {
    const float *row = x + r * (size_t)hw;
    float s = 0.0f;
    for (int p = (int)lane; p < hw; p += 32) s += row[p];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) y[r] = s / (float)hw; /* a division, as torch.mean and the CPU backend */
  }
}

/* dx [rows, hw] += dy [rows] / hw. */
static __global__ void avgpool_backward(size_t count, int hw, const float *__restrict__ dy,
                                        float *__restrict__ dx) {
  HSC_K_FOR(i, count) dx[i] += dy[i / (size_t)hw] / (float)hw;
}

extern "C" cudaError_t hsc_k_avgpool_forward(cudaStream_t stream, int n, int c, int hw, const float *x,
                                             float *y) {
  size_t rows = (size_t)n * (size_t)c;
  if (rows == 0) return cudaSuccess;
  unsigned blocks = hsc_k_blocks((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK * HSC_K_THREADS);
  avgpool_forward<<<blocks, HSC_K_THREADS, 0, stream>>>(rows, hw, x, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_avgpool_backward(cudaStream_t stream, int n, int c, int hw, const float *dy,
                                              float *dx) {
  size_t count = (size_t)n * (size_t)c * (size_t)hw;
  if (count == 0) return cudaSuccess;
  avgpool_backward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, hw, dy, dx);
  return cudaGetLastError();
}
