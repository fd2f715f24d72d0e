/* Helpers of the cuBLAS classifier (src/backend/cuda/gemm.c linear_*): the bias broadcast before the GEMM
 * (y = b, then y += x W^T, as the CPU backend) and the bias gradient, a column sum of dy. */
#include "kernels.h"
#include "launch.cuh"

/* y [rows, cols] = b [cols] per row. */
static __global__ void rows_set(size_t count, int cols, const float *__restrict__ b, float *__restrict__ y) {
  HSC_K_FOR(i, count) y[i] = b[i % (size_t)cols];
}

/* db [cols] += sum over rows of dy [rows, cols], one thread per column (coalesced across the row), summed
 * in double as the CPU backend: rows is a batch, each sum only rows adds. */
static __global__ void colsum_add(int rows, int cols, const float *__restrict__ dy, float *__restrict__ db) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  double s = 0.0;
  for (int r = 0; r < rows; r++) s += dy[(size_t)r * cols + j];
  db[j] += (float)s;
}

extern "C" cudaError_t hsc_k_rows_set(cudaStream_t stream, int rows, int cols, const float *b, float *y) {
  const size_t count = (size_t)rows * cols;
  if (count == 0) return cudaSuccess;
  rows_set<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, cols, b, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_colsum_add(cudaStream_t stream, int rows, int cols, const float *dy, float *db) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  colsum_add<<<(unsigned)((cols + HSC_K_THREADS - 1) / HSC_K_THREADS), HSC_K_THREADS, 0, stream>>>(rows, cols,
                                                                                                   dy, db);
  return cudaGetLastError();
}
