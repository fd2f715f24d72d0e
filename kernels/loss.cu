/* Softmax cross-entropy with label smoothing, its gradient, and top-1/top-5 accuracy (backend.h xent_*,
 * accuracy). PyTorch's definition (torch.nn.CrossEntropyLoss(label_smoothing=s)): with
 * log p = log_softmax(z), loss = (1 - s) * (-log p[label]) + s * mean_j(-log p[j]), which is the cross
 * entropy against q = (1 - s) onehot + s/k. One block per sample: k is 10 to 1000, and a block reduction
 * costs three passes over k values that stay in L1. */
#include <math.h>

#include "kernels.h"
#include "launch.cuh"

#define MAX_ROW_BLOCKS 8192

/* Reduces v over the block with op (identity: op's neutral value); every thread gets the result.
 * `scratch` holds one value per warp. Called by all threads of the block together (the row loops keep the
 * block in step); blockDim.x is a multiple of 32. */
template <typename T, typename Op>
static __device__ T block_reduce(T v, T *scratch, Op op, T identity) {
  unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? scratch[lane] : identity;
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  v = scratch[0];
  __syncthreads(); /* before the next reduction overwrites scratch */
  return v;
}

struct op_sum {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct op_max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* logits, probs [n, k]; labels, losses [n]. Log-sum-exp with the row maximum subtracted, so any finite
 * logits are safe. */
static __global__ void xent_forward(int n, int k, const float *__restrict__ logits,
                                    const int32_t *__restrict__ labels, float smoothing,
                                    float *__restrict__ probs, float *__restrict__ losses) {
  __shared__ float scratch[32];
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const float *z = logits + (size_t)r * k;
    float *p = probs + (size_t)r * k;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, z[j]);
    m = block_reduce(m, scratch, op_max(), -INFINITY);
    float s = 0.0f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) s += expf(z[j] - m);
    s = block_reduce(s, scratch, op_sum(), 0.0f);
    float lse = logf(s), inv = 1.0f / s, sum_logp = 0.0f;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      float e = z[j] - m;
      p[j] = expf(e) * inv;
      sum_logp += e - lse;
    }
    sum_logp = block_reduce(sum_logp, scratch, op_sum(), 0.0f);
    if (threadIdx.x == 0) {
      int y = labels[r];
      float logp_y = y >= 0 && y < k ? z[y] - m - lse : NAN;
      losses[r] = -((1.0f - smoothing) * logp_y + smoothing / (float)k * sum_logp);
    }
  }
}

/* dlogits [n, k] += scale * (probs - q), one thread per element. */
static __global__ void xent_backward(size_t count, int k, const float *__restrict__ probs,
                                     const int32_t *__restrict__ labels, float smoothing, float scale,
                                     float *__restrict__ dlogits) {
  float off_target = smoothing / (float)k, on_target = 1.0f - smoothing + off_target;
  HSC_K_FOR(i, count) {
    size_t r = i / (size_t)k;
    int j = (int)(i - r * (size_t)k), y = labels[r];
    float q = y >= 0 && y < k ? (j == y ? on_target : off_target) : NAN;
    dlogits[i] += scale * (probs[i] - q);
  }
}

/* counts [2] += hits of sample r: top-1 when no logit is strictly greater than the label's, top-5 when
 * fewer than five are. A NaN label logit is a miss (every comparison with it is false, so it would
 * otherwise score top-1): a diverged network must not score. counts must be zero before the launch. */
static __global__ void accuracy(int n, int k, const float *__restrict__ logits,
                                const int32_t *__restrict__ labels, int32_t *__restrict__ counts) {
  __shared__ int scratch[32];
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const float *z = logits + (size_t)r * k;
    int y = labels[r];
    float zy = y >= 0 && y < k ? z[y] : NAN;
    int valid = !isnan(zy);
    int greater = 0;
    if (valid)
      for (int j = threadIdx.x; j < k; j += blockDim.x) greater += z[j] > zy;
    greater = block_reduce(greater, scratch, op_sum(), 0);
    if (threadIdx.x == 0 && valid) {
      if (greater < 1) atomicAdd(&counts[0], 1);
      if (greater < 5) atomicAdd(&counts[1], 1);
    }
  }
}

static unsigned row_blocks(int n) { return n < MAX_ROW_BLOCKS ? (unsigned)n : MAX_ROW_BLOCKS; }

extern "C" cudaError_t hsc_k_xent_forward(cudaStream_t stream, int n, int k, const float *logits,
                                          const int32_t *labels, float smoothing, float *probs,
                                          float *losses) {
  if (n <= 0 || k <= 0) return cudaSuccess;
  xent_forward<<<row_blocks(n), HSC_K_THREADS, 0, stream>>>(n, k, logits, labels, smoothing, probs, losses);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_xent_backward(cudaStream_t stream, int n, int k, const float *probs,
                                           const int32_t *labels, float smoothing, float scale,
                                           float *dlogits) {
  if (n <= 0 || k <= 0) return cudaSuccess;
  size_t count = (size_t)n * (size_t)k;
  xent_backward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, k, probs, labels, smoothing, scale,
                                                                   dlogits);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_accuracy(cudaStream_t stream, int n, int k, const float *logits,
                                      const int32_t *labels, int32_t *counts) {
  cudaError_t e = cudaMemsetAsync(counts, 0, 2 * sizeof(int32_t), stream);
  if (e != cudaSuccess || n <= 0 || k <= 0) return e;
  accuracy<<<row_blocks(n), HSC_K_THREADS, 0, stream>>>(n, k, logits, labels, counts);
  return cudaGetLastError();
}
