/* Helpers of the cuBLAS pointwise convolution (src/backend/cuda/gemm.c): the forward epilogue (inference
 * BN folded in, optional ReLU) and the NCHW -> [c, n * hw] transpose that lets dw's sum over images run
 * inside one GEMM. Both are memory bound: one read and one write per element. */
#include "kernels.h"
#include "launch.cuh"

/* y [n, c, hw] = relu?(scale[ch] * y + shift[ch]) in place. */
static __global__ void channel_affine(size_t count, int c, int hw, const float *__restrict__ scale,
                                      const float *__restrict__ shift, int relu, float *__restrict__ y) {
  HSC_K_FOR(i, count) {
    const int ch = (int)(i / (size_t)hw % (size_t)c);
    const float v = scale[ch] * y[i] + shift[ch];
    y[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
  }
}

/* out [c, n * hw] (channel-major) from x [n, c, hw]: out[ch * n * hw + img * hw + p] = x[(img * c + ch) * hw
 * + p]. Threads walk the output, so writes are coalesced and reads are runs of hw floats. */
static __global__ void nchw_to_cn(size_t count, int n, int c, int hw, const float *__restrict__ x,
                                  float *__restrict__ out) {
  const size_t per_c = (size_t)n * hw;
  HSC_K_FOR(i, count) {
    const size_t ch = i / per_c, r = i - ch * per_c, img = r / (size_t)hw, p = r - img * (size_t)hw;
    out[i] = x[(img * (size_t)c + ch) * (size_t)hw + p];
  }
}

extern "C" cudaError_t hsc_k_channel_affine(cudaStream_t stream, int n, int c, int hw, const float *scale,
                                            const float *shift, int relu, float *y) {
  const size_t count = (size_t)n * c * hw;
  if (count == 0) return cudaSuccess;
  channel_affine<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, c, hw, scale, shift, relu, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_nchw_to_cn(cudaStream_t stream, int n, int c, int hw, const float *x,
                                        float *out) {
  const size_t count = (size_t)n * c * hw;
  if (count == 0) return cudaSuccess;
  nchw_to_cn<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, n, c, hw, x, out);
  return cudaGetLastError();
}
