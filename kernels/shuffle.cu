/* SPOS channel split (even channels pass through, odd ones enter the main branch) and channel concat,
 * forward and backward (backend.h split_* / concat_*). Pure data movement: each thread owns one element
 * of the larger tensor, so every write is race-free and the accumulating backward needs no atomics. */
#include "kernels.h"
#include "launch.cuh"

/* x [n, c, hw] -> even, odd [n, c/2, hw]. Thread i owns element (b, j, p) of both halves. */
static __global__ void split_forward(size_t count, int half, int hw, const float *__restrict__ x,
                                     float *__restrict__ even, float *__restrict__ odd) {
  HSC_K_FOR(i, count) {
    size_t p = i % (size_t)hw, bj = i / (size_t)hw;
    size_t j = bj % (size_t)half, b = bj / (size_t)half;
    size_t src = (b * 2 * half + 2 * j) * (size_t)hw + p;
    even[i] = x[src];
    odd[i] = x[src + (size_t)hw];
  }
}

/* dx [n, c, hw] += interleave(deven, dodd [n, c/2, hw]); a NULL half contributes nothing. */
static __global__ void split_backward(size_t count, int c, int hw, const float *__restrict__ deven,
                                      const float *__restrict__ dodd, float *__restrict__ dx) {
  int half = c / 2;
  HSC_K_FOR(i, count) {
    size_t p = i % (size_t)hw, bch = i / (size_t)hw;
    size_t ch = bch % (size_t)c, b = bch / (size_t)c;
    const float *src = (ch & 1) ? dodd : deven;
    if (src) dx[i] += src[(b * half + ch / 2) * (size_t)hw + p];
  }
}

/* a [n, ca, hw], b [n, cb, hw] -> y [n, ca + cb, hw]. */
static __global__ void concat_forward(size_t count, int ca, int cb, int hw, const float *__restrict__ a,
                                      const float *__restrict__ bsrc, float *__restrict__ y) {
  int c = ca + cb;
  HSC_K_FOR(i, count) {
    size_t p = i % (size_t)hw, bch = i / (size_t)hw;
    size_t ch = bch % (size_t)c, b = bch / (size_t)c;
    y[i] = ch < (size_t)ca ? a[(b * ca + ch) * (size_t)hw + p] : bsrc[(b * cb + (ch - ca)) * (size_t)hw + p];
  }
}

/* da [n, ca, hw] += dy[:, :ca], db [n, cb, hw] += dy[:, ca:]; a NULL destination is skipped. */
static __global__ void concat_backward(size_t count, int ca, int cb, int hw, const float *__restrict__ dy,
                                       float *__restrict__ da, float *__restrict__ db) {
  int c = ca + cb;
  HSC_K_FOR(i, count) {
    size_t p = i % (size_t)hw, bch = i / (size_t)hw;
    size_t ch = bch % (size_t)c, b = bch / (size_t)c;
    if (ch < (size_t)ca) {
      if (da) da[(b * ca + ch) * (size_t)hw + p] += dy[i];
    } else if (db) {
      db[(b * cb + (ch - ca)) * (size_t)hw + p] += dy[i];
    }
  }
}

extern "C" cudaError_t hsc_k_split_forward(cudaStream_t stream, int n, int c, int hw, const float *x,
                                           float *even, float *odd) {
  size_t count = (size_t)n * (size_t)(c / 2) * (size_t)hw;
  if (count == 0) return cudaSuccess;
  split_forward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, c / 2, hw, x, even, odd);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_split_backward(cudaStream_t stream, int n, int c, int hw, const float *deven,
                                            const float *dodd, float *dx) {
  size_t count = (size_t)n * (size_t)c * (size_t)hw;
  if (count == 0 || (!deven && !dodd)) return cudaSuccess;
  split_backward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, c, hw, deven, dodd, dx);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_concat_forward(cudaStream_t stream, int n, int ca, int cb, int hw,
                                            const float *a, const float *b, float *y) {
  size_t count = (size_t)n * (size_t)(ca + cb) * (size_t)hw;
  if (count == 0) return cudaSuccess;
  concat_forward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, ca, cb, hw, a, b, y);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_concat_backward(cudaStream_t stream, int n, int ca, int cb, int hw,
                                             const float *dy, float *da, float *db) {
  size_t count = (size_t)n * (size_t)(ca + cb) * (size_t)hw;
  if (count == 0 || (!da && !db)) return cudaSuccess;
  concat_backward<<<hsc_k_blocks(count), HSC_K_THREADS, 0, stream>>>(count, ca, cb, hw, dy, da, db);
  return cudaGetLastError();
}
