/* Launch geometry shared by the kernels: 256-thread blocks and grid-stride loops, so any element count
 * (64-bit) runs on a grid capped at a few full waves of the largest GPUs. */
#ifndef HSCONAS_KERNELS_LAUNCH_CUH
#define HSCONAS_KERNELS_LAUNCH_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#define HSC_K_THREADS 256

/* 132 SMs (H100/H200) x 2048 threads / 256 = 1056 resident blocks; 8192 covers that several times over,
 * and a grid-stride loop handles whatever is left. */
#define HSC_K_MAX_BLOCKS 8192u

static inline unsigned hsc_k_blocks(size_t count) {
  size_t b = (count + HSC_K_THREADS - 1) / HSC_K_THREADS;
  if (b < 1) b = 1;
  return b > HSC_K_MAX_BLOCKS ? HSC_K_MAX_BLOCKS : (unsigned)b;
}

/* Grid-stride loop over [0, count) with a 64-bit index. */
#define HSC_K_FOR(i, count)                                                           \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(count); \
       i += (size_t)gridDim.x * blockDim.x)

/* The same loop with index type I. Kernels whose index math divides (channel of an element, pixel of an
 * output) use 32-bit indices when the count allows: 64-bit integer division is emulated on the GPU (tens
 * of instructions), enough to make a memory-bound kernel compute-bound. hsc_k_fits32 leaves room for the
 * last stride so that the index cannot wrap. */
#define HSC_K_FOR_T(I, i, count) \
  for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)(count); i += (I)gridDim.x * blockDim.x)

static inline bool hsc_k_fits32(size_t count) {
  return count <= 0xFFFFFFFFu - (size_t)HSC_K_MAX_BLOCKS * HSC_K_THREADS;
}

#endif
