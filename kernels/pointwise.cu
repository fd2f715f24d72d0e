/* Helpers of the cuBLAS pointwise convolution (src/backend/cuda/gemm.c): the forward epilogue (inference
 * BN folded in, optional ReLU) and the NCHW -> [c, n * hw] transpose that lets dw's sum over images run
 * inside one GEMM. Both are memory bound: one read and one write per element. */
#include "kernels.h"
#include "launch.cuh"

/* y [n, c, hw] = relu?(scale[ch] * y + shift[ch]) in place. */
template <typename I>
static __global__ void channel_affine(I count, I c, I hw, const float *__restrict__ scale,
                                      const float *__restrict__ shift, int relu, float *__restrict__ y) {
  HSC_K_FOR_T(I, i, count) {
    const I ch = i / hw % c;
    const float v = scale[ch] * y[i] + shift[ch];
    y[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
  }
}

/* out [c, n * hw] (channel-major) from x [n, c, hw]: out[ch * n * hw + img * hw + p] = x[(img * c + ch) * hw
 * + p]. Threads walk the output, so writes are coalesced and reads are runs of hw floats. */
template <typename I>
static __global__ void nchw_to_cn(I count, I n, I c, I hw, const float *__restrict__ x,
                                  float *__restrict__ out) {
  const I per_c = n * hw;
  HSC_K_FOR_T(I, i, count) {
    const I ch = i / per_c, r = i - ch * per_c, img = r / hw, p = r - img * hw;
    out[i] = x[(img * c + ch) * hw + p];
  }
}

extern "C" cudaError_t hsc_k_channel_affine(cudaStream_t stream, int n, int c, int hw, const float *scale,
                                            const float *shift, int relu, float *y) {
  const size_t count = (size_t)n * c * hw;
  if (count == 0) return cudaSuccess;
  if (hsc_k_fits32(count))
    channel_affine<unsigned><<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(
        (unsigned)count, (unsigned)c, (unsigned)hw, scale, shift, relu, y);
  else
    channel_affine<size_t><<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, (size_t)c, (size_t)hw,
                                                                              scale, shift, relu, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_nchw_to_cn(cudaStream_t stream, int n, int c, int hw, const float *x,
                                        float *out) {
  const size_t count = (size_t)n * c * hw;
  if (count == 0) return cudaSuccess;
  if (hsc_k_fits32(count))
    nchw_to_cn<unsigned><<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(
        (unsigned)count, (unsigned)n, (unsigned)c, (unsigned)hw, x, out);
  else
    nchw_to_cn<size_t>
        <<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, (size_t)n, (size_t)c, (size_t)hw, x, out);
  return cudaGetLastError();
}
