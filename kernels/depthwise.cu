/* Depthwise k x k convolution (backend.h depthwise_*): k in {3, 5, 7}, stride 1 or 2, zero padding k/2,
 * on the leading c channels of a max-width weight (channel ci's filter is the k*k floats at w + ci*k*k, so
 * a slice needs no packing). Each (k, stride) pair is its own template instance: the taps unroll and the
 * bounds tests fold.
 *
 *   forward: one thread per output element, k*k multiply-adds over the input window (read through L1;
 *            neighbouring threads share most of their window).
 *   dx:      one thread per input element, gathering the outputs whose window covers it (the transposed
 *            correlation), so no two threads write the same dx element and no atomics are needed.
 *   dw:      blocks of (channel, range of images); each thread accumulates the k*k products of its
 *            output positions in registers, the block reduces them, and the block adds its k*k sums to
 *            dw (atomically when a channel is split over several blocks, so dw's summation order, and its
 *            last bits, may differ between runs; a single block per channel is exact in order).
 * Cost per pass: n * c * ho * wo * k * k multiply-adds; the kernels are bound by L1/L2 traffic. */
#include "kernels.h"
#include "launch.cuh"

/* dw launches aim at about this many blocks (several waves on 132 SMs) before splitting channels further. */
#define DW_TARGET_BLOCKS 1024

/* I: the index type (launch.cuh HSC_K_FOR_T). */
template <typename I, int K, int S>
static __global__ void dw_forward(I count, int c, int h, int w, int ho, int wo, const float *__restrict__ x,
                                  const float *__restrict__ wt, float *__restrict__ y) {
  constexpr int P = K / 2;
  HSC_K_FOR_T(I, i, count) {
    const int ow = (int)(i % (I)wo);
    I t = i / (I)wo;
    const int oh = (int)(t % (I)ho);
    t /= (I)ho; /* plane: image * c + channel */
    const int ci = (int)(t % (I)c);
    const float *xp = x + t * (size_t)h * (size_t)w;
    const float *wp = wt + (size_t)ci * K * K;
    const int ih0 = oh * S - P, iw0 = ow * S - P;
    float acc = 0.0f;
#pragma unroll
    for (int a = 0; a < K; a++) {
      const int ih = ih0 + a;
      if (ih < 0 || ih >= h) continue;
#pragma unroll
      for (int b = 0; b < K; b++) {
        const int iw = iw0 + b;
        if (iw >= 0 && iw < w) acc = fmaf(__ldg(wp + a * K + b), xp[(size_t)ih * w + iw], acc);
      }
    }
    y[i] = acc;
  }
}

/* dx [n, c, h, w] += the transposed correlation of dy [n, c, ho, wo] with the filters. */
template <typename I, int K, int S>
static __global__ void dw_backward_dx(I count, int c, int h, int w, int ho, int wo,
                                      const float *__restrict__ dy, const float *__restrict__ wt,
                                      float *__restrict__ dx) {
  constexpr int P = K / 2;
  HSC_K_FOR_T(I, i, count) {
    const int iw = (int)(i % (I)w);
    I t = i / (I)w;
    const int ih = (int)(t % (I)h);
    t /= (I)h;
    const int ci = (int)(t % (I)c);
    const float *dyp = dy + t * (size_t)ho * (size_t)wo;
    const float *wp = wt + (size_t)ci * K * K;
    float acc = 0.0f;
#pragma unroll
    for (int a = 0; a < K; a++) {
      const int th = ih + P - a; /* = oh * S for the output row whose tap a lands on ih */
      if (th < 0 || th % S != 0 || th / S >= ho) continue;
      const int oh = th / S;
#pragma unroll
      for (int b = 0; b < K; b++) {
        const int tw = iw + P - b;
        if (tw < 0 || tw % S != 0 || tw / S >= wo) continue;
        acc = fmaf(__ldg(wp + a * K + b), dyp[(size_t)oh * wo + tw / S], acc);
      }
    }
    dx[i] += acc;
  }
}

/* dw [c, K, K] += sum over images and output positions of dy * x under each tap. Block (ci, split)
 * covers channel ci of images [split * n / splits, (split + 1) * n / splits). */
template <int K, int S>
static __global__ void dw_backward_w(int n, int c, int h, int w, int ho, int wo, int splits,
                                     const float *__restrict__ x, const float *__restrict__ dy,
                                     float *__restrict__ dw) {
  constexpr int P = K / 2, KK = K * K;
  __shared__ float part[HSC_K_THREADS / 32][KK];
  const int ci = blockIdx.x, split = blockIdx.y;
  const int n0 = (int)((long)n * split / splits), n1 = (int)((long)n * (split + 1) / splits);
  const int plane = ho * wo;
  float acc[KK];
#pragma unroll
  for (int q = 0; q < KK; q++) acc[q] = 0.0f;
  const unsigned total = (unsigned)(n1 - n0) * (unsigned)plane; /* < 2^31: hsc_k_depthwise_backward */
  for (unsigned j = threadIdx.x; j < total; j += blockDim.x) {
    const int img = n0 + (int)(j / (unsigned)plane), f = (int)(j % (unsigned)plane);
    const int oh = f / wo, ow = f % wo;
    const size_t pl = (size_t)img * c + ci;
    const float g = dy[pl * plane + f];
    const float *xp = x + pl * (size_t)h * w;
    const int ih0 = oh * S - P, iw0 = ow * S - P;
#pragma unroll
    for (int a = 0; a < K; a++) {
      const int ih = ih0 + a;
#pragma unroll
      for (int b = 0; b < K; b++) {
        const int iw = iw0 + b;
        if (ih >= 0 && ih < h && iw >= 0 && iw < w)
          acc[a * K + b] = fmaf(g, xp[(size_t)ih * w + iw], acc[a * K + b]);
      }
    }
  }
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
#pragma unroll
  for (int q = 0; q < KK; q++) {
    float v = acc[q];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) part[warp][q] = v;
  }
  __syncthreads();
  for (int q = threadIdx.x; q < KK; q += blockDim.x) {
    float s = 0.0f;
    for (unsigned u = 0; u < blockDim.x / 32; u++) s += part[u][q];
    if (splits == 1)
      dw[(size_t)ci * KK + q] += s;
    else
      atomicAdd(dw + (size_t)ci * KK + q, s);
  }
}

#define DW_DISPATCH(call)           \
  switch (k * 10 + stride) {        \
    case 31:                        \
      call(3, 1);                   \
      break;                        \
    case 32:                        \
      call(3, 2);                   \
      break;                        \
    case 51:                        \
      call(5, 1);                   \
      break;                        \
    case 52:                        \
      call(5, 2);                   \
      break;                        \
    case 71:                        \
      call(7, 1);                   \
      break;                        \
    case 72:                        \
      call(7, 2);                   \
      break;                        \
    default:                        \
      return cudaErrorInvalidValue; \
  }

static int out_size(int size, int k, int stride) {
  const int span = size + 2 * (k / 2) - k;
  return span < 0 ? 0 : span / stride + 1;
}

extern "C" cudaError_t hsc_k_depthwise_forward(cudaStream_t stream, int n, int c, int h, int w, int k,
                                               int stride, const float *x, const float *wt, float *y) {
  const int ho = out_size(h, k, stride), wo = out_size(w, k, stride);
  const size_t count = (size_t)n * c * ho * wo;
  if (count == 0) return cudaSuccess;
  if (hsc_k_fits32(count)) {
#define DW_FWD(K, S)         \
  dw_forward<unsigned, K, S> \
      <<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>((unsigned)count, c, h, w, ho, wo, x, wt, y)
    DW_DISPATCH(DW_FWD)
#undef DW_FWD
  } else {
#define DW_FWD(K, S)       \
  dw_forward<size_t, K, S> \
      <<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, c, h, w, ho, wo, x, wt, y)
    DW_DISPATCH(DW_FWD)
#undef DW_FWD
  }
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_depthwise_backward(cudaStream_t stream, int n, int c, int h, int w, int k,
                                                int stride, const float *x, const float *wt, const float *dy,
                                                float *dx, float *dw) {
  const int ho = out_size(h, k, stride), wo = out_size(w, k, stride);
  if ((size_t)n * c * h * w == 0 || ho == 0 || wo == 0) return cudaSuccess;
  if (dx) {
    const size_t count = (size_t)n * c * h * w;
    if (hsc_k_fits32(count)) {
#define DW_DX(K, S)              \
  dw_backward_dx<unsigned, K, S> \
      <<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>((unsigned)count, c, h, w, ho, wo, dy, wt, dx)
      DW_DISPATCH(DW_DX)
#undef DW_DX
    } else {
#define DW_DX(K, S)            \
  dw_backward_dx<size_t, K, S> \
      <<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, c, h, w, ho, wo, dy, wt, dx)
      DW_DISPATCH(DW_DX)
#undef DW_DX
    }
    cudaError_t rc = cudaGetLastError();
    if (rc != cudaSuccess) return rc;
  }
  if (dw) {
    if ((long long)n * ho * wo > 0x7FFFFFFFLL) return cudaErrorInvalidValue; /* a channel's outputs, 32-bit */
    int splits = DW_TARGET_BLOCKS / c;
    if (splits > n) splits = n;
    if (splits < 1) splits = 1;
    const dim3 grid((unsigned)c, (unsigned)splits, 1);
#define DW_DW(K, S) \
  dw_backward_w<K, S><<<grid, HSC_K_THREADS, 0, stream>>>(n, c, h, w, ho, wo, splits, x, dy, dw)
    DW_DISPATCH(DW_DW)
#undef DW_DW
  }
  return cudaGetLastError();
}
