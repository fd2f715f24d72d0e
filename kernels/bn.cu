/* Batch normalisation on the leading c channels (backend.h bn_*), with the CPU backend's semantics
 * (src/backend/cpu/batchnorm.c): PyTorch's formulas, BN with or without affine parameters (the supernet
 * has none, which cuDNN's BN cannot express without a ones/zeros pair per call, and cuDNN's running
 * variance update would still differ), an optional fused ReLU, dx written or accumulated.
 *
 * Every per-channel reduction runs in two kernels, both deterministic:
 *   1. partial sums: grid (c, splits), block (ci, s) sums its share of the channel's n * hw values
 *      (element j of the channel is x[(j / hw) * c * hw + ci * hw + j % hw]) in double per thread, reduces
 *      over the block and writes one pair to partials [c, splits, 2];
 *   2. a per-channel kernel adds the splits in order and derives what the op needs (statistics, the
 *      gradient coefficients k, a, b of dx = k g + a (x - mean) + b).
 * Splitting channels keeps every SM busy when c is small and n * hw large (the ImageNet stem: 16 channels
 * of 128 * 112 * 112 values). The statistics sum x - x0 with x0 = x[ci][0] of image 0, as the CPU
 * backend, so that the variance does not cancel.
 * Element-wise passes (normalise, dx) are one thread per element.
 * Scratch (caller's, device memory, hsc_k_bn_scratch_bytes): the partials, then 4 floats per channel. */
#include <math.h>

#include "kernels.h"
#include "launch.cuh"

#define BN_TARGET_BLOCKS 1024 /* several waves on the largest GPUs */
#define BN_MIN_PER_BLOCK 4096 /* values per block below which splitting a channel further stops paying */

enum { MASK_NONE = 0, MASK_X = 1, MASK_Y = 2 };
enum { PART_STATS = 0, PART_GRAD = 1 };

static int bn_splits(int n, int c, int hw) {
  const long m = (long)n * hw;
  long s = (BN_TARGET_BLOCKS + c - 1) / c;
  const long most = (m + BN_MIN_PER_BLOCK - 1) / BN_MIN_PER_BLOCK;
  if (s > most) s = most;
  if (s < 1) s = 1;
  return (int)s;
}

extern "C" size_t hsc_k_bn_scratch_bytes(int n, int c, int hw) {
  const size_t parts = (size_t)c * (size_t)bn_splits(n, c, hw) * 2 * sizeof(double);
  return (parts + 255) / 256 * 256 + 4 * (size_t)c * sizeof(float);
}

/* The per-channel float arrays after the partials in the scratch. */
static float *scratch_floats(void *scratch, int n, int c, int hw) {
  const size_t parts = (size_t)c * (size_t)bn_splits(n, c, hw) * 2 * sizeof(double);
  return (float *)((char *)scratch + (parts + 255) / 256 * 256);
}

static __device__ __forceinline__ double warp_sum(double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

/* Partial sums of channel blockIdx.x over split blockIdx.y.
 *   PART_STATS: s1 = sum (x - x0), s2 = sum (x - x0)^2;
 *   PART_GRAD:  s1 = sum g, s2 = sum g (x - mean), g = dy masked by the fused ReLU (mask from x > mean or
 *               from y > 0). */
template <int PART, int MASK>
static __global__ void bn_partials(int n, int c, int hw, int splits, const float *__restrict__ x,
                                   const float *__restrict__ y, const float *__restrict__ dy,
                                   const float *__restrict__ mean, double *__restrict__ partials) {
  __shared__ double sh[2][HSC_K_THREADS / 32];
  const int ci = blockIdx.x, s = blockIdx.y;
  /* A channel's values: j in [0, n * hw); 32-bit (hsc_k_bn_* reject larger channels). */
  const unsigned m = (unsigned)n * (unsigned)hw;
  const unsigned j0 = (unsigned)((unsigned long long)m * s / splits),
                 j1 = (unsigned)((unsigned long long)m * (s + 1) / splits);
  const float ref = PART == PART_STATS ? x[(size_t)ci * hw] : mean[ci];
  double a1 = 0.0, a2 = 0.0;
  for (unsigned j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const unsigned img = j / (unsigned)hw;
    const size_t off = ((size_t)img * c + ci) * (size_t)hw + (j - img * (unsigned)hw);
    const float v = x[off] - ref;
    if (PART == PART_STATS) {
      a1 += v;
      a2 += (double)v * v;
    } else {
      const float d = dy[off];
      const float g = MASK == MASK_NONE ? d
                      : MASK == MASK_X  ? (v > 0.0f ? d : 0.0f)
                                        : (y[off] > 0.0f ? d : 0.0f);
      a1 += g;
      a2 += (double)g * v;
    }
  }
  a1 = warp_sum(a1);
  a2 = warp_sum(a2);
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sh[0][warp] = a1;
    sh[1][warp] = a2;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double t1 = 0.0, t2 = 0.0;
    for (unsigned u = 0; u < blockDim.x / 32; u++) {
      t1 += sh[0][u];
      t2 += sh[1][u];
    }
    partials[((size_t)ci * splits + s) * 2] = t1;
    partials[((size_t)ci * splits + s) * 2 + 1] = t2;
  }
}

static __device__ void add_splits(const double *partials, int ci, int splits, double *s1, double *s2) {
  double t1 = 0.0, t2 = 0.0;
  for (int s = 0; s < splits; s++) {
    t1 += partials[((size_t)ci * splits + s) * 2];
    t2 += partials[((size_t)ci * splits + s) * 2 + 1];
  }
  *s1 = t1;
  *s2 = t2;
}

/* Statistics of each channel from the partials: mean and biased var (written when not NULL), save_mean
 * and save_invstd, the running statistics update (unbiased variance), and scale = gamma * invstd for the
 * normalising pass. */
static __global__ void bn_finish_stats(int n, int c, int hw, int splits, float eps, float momentum,
                                       const float *__restrict__ x, const double *__restrict__ partials,
                                       const float *__restrict__ gamma, float *mean_out, float *var_out,
                                       float *save_mean, float *save_invstd, float *running_mean,
                                       float *running_var, float *scale) {
  const int ci = blockIdx.x * blockDim.x + threadIdx.x;
  if (ci >= c) return;
  double s1, s2;
  add_splits(partials, ci, splits, &s1, &s2);
  const double m = (double)n * hw, ms = s1 / m;
  const double mean = (double)x[(size_t)ci * hw] + ms, var = fmax(s2 / m - ms * ms, 0.0);
  if (mean_out) mean_out[ci] = (float)mean;
  if (var_out) var_out[ci] = (float)var;
  if (!save_mean) return;
  const double invstd = 1.0 / sqrt(var + (double)eps), mom = momentum;
  save_mean[ci] = (float)mean;
  save_invstd[ci] = (float)invstd;
  if (running_mean) running_mean[ci] = (float)((1.0 - mom) * running_mean[ci] + mom * mean);
  if (running_var) running_var[ci] = (float)((1.0 - mom) * running_var[ci] + mom * var * m / (m - 1.0));
  scale[ci] = (float)(gamma ? gamma[ci] * invstd : invstd);
}

/* scale [c] = gamma * invstd of the running variance (inference). */
static __global__ void bn_infer_scale(int c, float eps, const float *__restrict__ gamma,
                                      const float *__restrict__ running_var, float *__restrict__ scale) {
  const int ci = blockIdx.x * blockDim.x + threadIdx.x;
  if (ci >= c) return;
  const double invstd = 1.0 / sqrt((double)running_var[ci] + (double)eps);
  scale[ci] = (float)(gamma ? gamma[ci] * invstd : invstd);
}

/* y = relu?((x - mean) * scale + beta) per channel (beta NULL = 0); y may alias x. */
template <typename I>
static __global__ void bn_apply(I count, I c, I hw, int relu, const float *x, const float *__restrict__ mean,
                                const float *__restrict__ scale, const float *__restrict__ beta, float *y) {
  HSC_K_FOR_T(I, i, count) {
    const I ci = i / hw % c;
    const float v = (x[i] - mean[ci]) * scale[ci] + (beta ? beta[ci] : 0.0f);
    y[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
  }
}

static void launch_apply(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *mean,
                         const float *scale, const float *beta, float *y) {
  const size_t count = (size_t)d->n * d->c * d->hw;
  const unsigned blocks = hsc_k_blocks(count);
  if (hsc_k_fits32(count))
    bn_apply<unsigned><<<blocks, HSC_K_THREADS, 0, stream>>>((unsigned)count, (unsigned)d->c, (unsigned)d->hw,
                                                             d->relu, x, mean, scale, beta, y);
  else
    bn_apply<size_t><<<blocks, HSC_K_THREADS, 0, stream>>>(count, (size_t)d->c, (size_t)d->hw, d->relu, x,
                                                           mean, scale, beta, y);
}

/* Gradient coefficients from the partials (sum g, sum g (x - mean)), as the CPU backend:
 *   sgxhat = sum g xhat; dbeta += sum g; dgamma += sgxhat; k = gamma * invstd;
 *   a = -k * invstd * sgxhat / m; b = -k * sum g / m.
 * With sum_g / sum_gxhat set (sync BN) the sums are written out instead and k, a, b are not made. */
static __global__ void bn_finish_grad(int n, int c, int hw, int splits, const double *__restrict__ partials,
                                      const float *__restrict__ gamma, const float *__restrict__ invstd,
                                      float *dgamma, float *dbeta, float *sum_g, float *sum_gxhat,
                                      float *__restrict__ k, float *__restrict__ a, float *__restrict__ b) {
  const int ci = blockIdx.x * blockDim.x + threadIdx.x;
  if (ci >= c) return;
  double sg, sgx;
  add_splits(partials, ci, splits, &sg, &sgx);
  const double is = invstd[ci], sgxhat = sgx * is, m = (double)n * hw;
  if (dbeta) dbeta[ci] += (float)sg;
  if (dgamma) dgamma[ci] += (float)sgxhat;
  if (sum_g) {
    sum_g[ci] = (float)sg;
    sum_gxhat[ci] = (float)sgxhat;
    return;
  }
  const double kk = (gamma ? gamma[ci] : 1.0) * is;
  k[ci] = (float)kk;
  a[ci] = (float)(-kk * is * sgxhat / m);
  b[ci] = (float)(-kk * sg / m);
}

/* Sync BN: k, a, b from the combined means (bn_backward_elemt). */
static __global__ void bn_elemt_coef(int c, const float *__restrict__ gamma, const float *__restrict__ invstd,
                                     const float *__restrict__ mean_g, const float *__restrict__ mean_gxhat,
                                     float *__restrict__ k, float *__restrict__ a, float *__restrict__ b) {
  const int ci = blockIdx.x * blockDim.x + threadIdx.x;
  if (ci >= c) return;
  const double is = invstd[ci], kk = (gamma ? gamma[ci] : 1.0) * is;
  k[ci] = (float)kk;
  a[ci] = (float)(-kk * is * mean_gxhat[ci]);
  b[ci] = (float)(-kk * mean_g[ci]);
}

/* dx (+)= k g + a (x - mean) + b, g = dy masked as in bn_partials. */
template <typename I, int MASK>
static __global__ void bn_dx(I count, I c, I hw, int assign, const float *__restrict__ x,
                             const float *__restrict__ y, const float *__restrict__ dy,
                             const float *__restrict__ mean, const float *__restrict__ k,
                             const float *__restrict__ a, const float *__restrict__ b,
                             float *__restrict__ dx) {
  HSC_K_FOR_T(I, i, count) {
    const I ci = i / hw % c;
    const float xc = x[i] - mean[ci], d = dy[i];
    const float g = MASK == MASK_NONE ? d
                    : MASK == MASK_X  ? (xc > 0.0f ? d : 0.0f)
                                      : (y[i] > 0.0f ? d : 0.0f);
    const float v = k[ci] * g + a[ci] * xc + b[ci];
    dx[i] = assign ? v : dx[i] + v;
  }
}

static __global__ void bn_fold(int c, float eps, const float *__restrict__ gamma,
                               const float *__restrict__ beta, const float *__restrict__ running_mean,
                               const float *__restrict__ running_var, const float *__restrict__ bias,
                               float *__restrict__ scale, float *__restrict__ shift) {
  const int ci = blockIdx.x * blockDim.x + threadIdx.x;
  if (ci >= c) return;
  const double invstd = 1.0 / sqrt((double)running_var[ci] + (double)eps);
  const double a = gamma ? gamma[ci] * invstd : invstd;
  scale[ci] = (float)a;
  shift[ci] = (float)((beta ? beta[ci] : 0.0) + ((bias ? bias[ci] : 0.0) - running_mean[ci]) * a);
}

static __global__ void scale_rows(size_t count, int cols, const float *__restrict__ scale, const float *x,
                                  float *y) {
  HSC_K_FOR(i, count) y[i] = scale[i / (size_t)cols] * x[i];
}

static unsigned channel_blocks(int c) { return (unsigned)((c + HSC_K_THREADS - 1) / HSC_K_THREADS); }

/* Launches the partial sums for `part` with the mask mode. */
static void launch_partials(cudaStream_t stream, const hsc_kbn *d, int part, int mask, const float *x,
                            const float *y, const float *dy, const float *mean, double *partials) {
  const int splits = bn_splits(d->n, d->c, d->hw);
  const dim3 grid((unsigned)d->c, (unsigned)splits, 1);
  if (part == PART_STATS)
    bn_partials<PART_STATS, MASK_NONE>
        <<<grid, HSC_K_THREADS, 0, stream>>>(d->n, d->c, d->hw, splits, x, y, dy, mean, partials);
  else if (mask == MASK_X)
    bn_partials<PART_GRAD, MASK_X>
        <<<grid, HSC_K_THREADS, 0, stream>>>(d->n, d->c, d->hw, splits, x, y, dy, mean, partials);
  else if (mask == MASK_Y)
    bn_partials<PART_GRAD, MASK_Y>
        <<<grid, HSC_K_THREADS, 0, stream>>>(d->n, d->c, d->hw, splits, x, y, dy, mean, partials);
  else
    bn_partials<PART_GRAD, MASK_NONE>
        <<<grid, HSC_K_THREADS, 0, stream>>>(d->n, d->c, d->hw, splits, x, y, dy, mean, partials);
}

template <int MASK>
static void launch_dx_mask(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *y,
                           const float *dy, const float *mean, const float *k, const float *a, const float *b,
                           float *dx) {
  const size_t count = (size_t)d->n * d->c * d->hw;
  const unsigned blocks = hsc_k_blocks(count);
  if (hsc_k_fits32(count))
    bn_dx<unsigned, MASK><<<blocks, HSC_K_THREADS, 0, stream>>>(
        (unsigned)count, (unsigned)d->c, (unsigned)d->hw, d->dx_assign, x, y, dy, mean, k, a, b, dx);
  else
    bn_dx<size_t, MASK><<<blocks, HSC_K_THREADS, 0, stream>>>(count, (size_t)d->c, (size_t)d->hw,
                                                              d->dx_assign, x, y, dy, mean, k, a, b, dx);
}

static void launch_dx(cudaStream_t stream, const hsc_kbn *d, int mask, const float *x, const float *y,
                      const float *dy, const float *mean, const float *k, const float *a, const float *b,
                      float *dx) {
  if (mask == MASK_X)
    launch_dx_mask<MASK_X>(stream, d, x, y, dy, mean, k, a, b, dx);
  else if (mask == MASK_Y)
    launch_dx_mask<MASK_Y>(stream, d, x, y, dy, mean, k, a, b, dx);
  else
    launch_dx_mask<MASK_NONE>(stream, d, x, y, dy, mean, k, a, b, dx);
}

static int empty(const hsc_kbn *d) { return d->n <= 0 || d->c <= 0 || d->hw <= 0; }

/* The partial sums index a channel's n * hw values in 32 bits (2^31: 8 GiB per channel, far beyond any
 * batch this engine runs). */
static int too_large(const hsc_kbn *d) { return (long long)d->n * d->hw > 0x7FFFFFFFLL; }

extern "C" cudaError_t hsc_k_bn_forward_train(cudaStream_t stream, const hsc_kbn *d, const float *x,
                                              const float *gamma, const float *beta, float *running_mean,
                                              float *running_var, float *y, float *save_mean,
                                              float *save_invstd, void *scratch) {
  if (empty(d)) return cudaSuccess;
  if (too_large(d)) return cudaErrorInvalidValue;
  double *partials = (double *)scratch;
  float *scale = scratch_floats(scratch, d->n, d->c, d->hw);
  launch_partials(stream, d, PART_STATS, MASK_NONE, x, NULL, NULL, NULL, partials);
  bn_finish_stats<<<channel_blocks(d->c), HSC_K_THREADS, 0, stream>>>(
      d->n, d->c, d->hw, bn_splits(d->n, d->c, d->hw), d->eps, d->momentum, x, partials, gamma, NULL, NULL,
      save_mean, save_invstd, running_mean, running_var, scale);
  launch_apply(stream, d, x, save_mean, scale, beta, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_bn_forward_infer(cudaStream_t stream, const hsc_kbn *d, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *running_mean, const float *running_var, float *y,
                                              void *scratch) {
  if (empty(d)) return cudaSuccess;
  float *scale = scratch_floats(scratch, d->n, d->c, d->hw);
  bn_infer_scale<<<channel_blocks(d->c), HSC_K_THREADS, 0, stream>>>(d->c, d->eps, gamma, running_var, scale);
  launch_apply(stream, d, x, running_mean, scale, beta, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_bn_backward(cudaStream_t stream, const hsc_kbn *d, const float *x,
                                         const float *y, const float *gamma, const float *save_mean,
                                         const float *save_invstd, const float *dy, float *dx, float *dgamma,
                                         float *dbeta, void *scratch) {
  if (empty(d) || (!dx && !dgamma && !dbeta)) return cudaSuccess;
  if (too_large(d)) return cudaErrorInvalidValue;
  /* Without affine parameters y > 0 exactly where x > mean (invstd > 0): the mask comes from x, which the
   * kernels read anyway (the CPU backend's RELU_FROM_X). */
  const int mask = !d->relu ? MASK_NONE : gamma ? MASK_Y : MASK_X;
  double *partials = (double *)scratch;
  float *k = scratch_floats(scratch, d->n, d->c, d->hw), *a = k + d->c, *b = a + d->c;
  launch_partials(stream, d, PART_GRAD, mask, x, y, dy, save_mean, partials);
  bn_finish_grad<<<channel_blocks(d->c), HSC_K_THREADS, 0, stream>>>(
      d->n, d->c, d->hw, bn_splits(d->n, d->c, d->hw), partials, gamma, save_invstd, dgamma, dbeta, NULL,
      NULL, k, a, b);
  if (dx) launch_dx(stream, d, mask, x, y, dy, save_mean, k, a, b, dx);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_bn_stats(cudaStream_t stream, const hsc_kbn *d, const float *x, float *mean,
                                      float *var, void *scratch) {
  if (empty(d)) return cudaSuccess;
  if (too_large(d)) return cudaErrorInvalidValue;
  double *partials = (double *)scratch;
  launch_partials(stream, d, PART_STATS, MASK_NONE, x, NULL, NULL, NULL, partials);
  bn_finish_stats<<<channel_blocks(d->c), HSC_K_THREADS, 0, stream>>>(
      d->n, d->c, d->hw, bn_splits(d->n, d->c, d->hw), d->eps, d->momentum, x, partials, NULL, mean, var,
      NULL, NULL, NULL, NULL, NULL);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_bn_backward_reduce(cudaStream_t stream, const hsc_kbn *d, const float *x,
                                                const float *y, const float *mean, const float *invstd,
                                                const float *dy, float *sum_g, float *sum_gxhat,
                                                float *dgamma, float *dbeta, void *scratch) {
  if (empty(d)) return cudaSuccess;
  if (too_large(d)) return cudaErrorInvalidValue;
  double *partials = (double *)scratch;
  launch_partials(stream, d, PART_GRAD, d->relu ? MASK_Y : MASK_NONE, x, y, dy, mean, partials);
  bn_finish_grad<<<channel_blocks(d->c), HSC_K_THREADS, 0, stream>>>(
      d->n, d->c, d->hw, bn_splits(d->n, d->c, d->hw), partials, NULL, invstd, dgamma, dbeta, sum_g,
      sum_gxhat, NULL, NULL, NULL);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_bn_backward_elemt(cudaStream_t stream, const hsc_kbn *d, const float *x,
                                               const float *y, const float *gamma, const float *mean,
                                               const float *invstd, const float *dy, const float *mean_g,
                                               const float *mean_gxhat, float *dx, void *scratch) {
  if (empty(d)) return cudaSuccess;
  float *k = scratch_floats(scratch, d->n, d->c, d->hw), *a = k + d->c, *b = a + d->c;
  bn_elemt_coef<<<channel_blocks(d->c), HSC_K_THREADS, 0, stream>>>(d->c, gamma, invstd, mean_g, mean_gxhat,
                                                                    k, a, b);
  launch_dx(stream, d, d->relu ? MASK_Y : MASK_NONE, x, y, dy, mean, k, a, b, dx);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_bn_fold(cudaStream_t stream, int c, float eps, const float *gamma,
                                     const float *beta, const float *running_mean, const float *running_var,
                                     const float *bias, float *scale, float *shift) {
  if (c <= 0) return cudaSuccess;
  bn_fold<<<channel_blocks(c), HSC_K_THREADS, 0, stream>>>(c, eps, gamma, beta, running_mean, running_var,
                                                           bias, scale, shift);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_scale_rows(cudaStream_t stream, int rows, int cols, const float *scale,
                                        const float *x, float *y) {
  const size_t count = (size_t)rows * (size_t)cols;
  if (count == 0) return cudaSuccess;
  scale_rows<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, cols, scale, x, y);
  return cudaGetLastError();
}
