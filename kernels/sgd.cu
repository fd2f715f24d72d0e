/* The optimizer step and the region copies over the parameters one training step touched (backend.h
 * sgd_update, zero_regions, pack_regions, unpack_regions). A launch covers up to HSC_K_REGION_BATCH
 * regions passed by value: blockIdx.y picks the region, a grid-stride loop over x walks its
 * rows x cols elements, and blocks past a small region's end simply exit. */
#include "kernels.h"
#include "launch.cuh"

typedef struct {
  hsc_kregion r[HSC_K_REGION_BATCH];
} region_batch;

enum region_op { OP_SGD, OP_ZERO, OP_PACK, OP_UNPACK };

typedef struct {
  float lr, momentum, dampening;
  int nesterov;
} sgd_params;

/* Element e of region r: its index in the parameter buffer (row-major, rows ld apart) and in the packed
 * buffer (contiguous, cols apart). */
static __device__ __forceinline__ size_t buf_index(const hsc_kregion &r, size_t e) {
  size_t row = e / (size_t)r.cols, col = e - row * (size_t)r.cols;
  return r.offset + row * (size_t)r.ld + col;
}

/* param, grad, mom: the parameter buffers; torch.optim.SGD per element (see kernels.h). */
static __global__ void sgd_update(region_batch b, sgd_params o, float *__restrict__ param,
                                  const float *__restrict__ grad, float *__restrict__ mom) {
  const hsc_kregion r = b.r[blockIdx.y]; /* 32 bytes into registers */
  size_t count = (size_t)r.rows * (size_t)r.cols;
  HSC_K_FOR(e, count) {
    size_t i = buf_index(r, e);
    float p = param[i], g = grad[i] + r.weight_decay * p;
    float m = o.momentum * mom[i] + (1.0f - o.dampening) * g;
    mom[i] = m;
    param[i] = p - o.lr * (o.nesterov ? g + o.momentum * m : m);
  }
}

/* buf: the parameter buffer; packed: the regions back to back. */
static __global__ void region_copy(region_batch b, enum region_op op, float *__restrict__ buf,
                                   float *__restrict__ packed) {
  const hsc_kregion r = b.r[blockIdx.y]; /* 32 bytes into registers */
  size_t count = (size_t)r.rows * (size_t)r.cols;
  HSC_K_FOR(e, count) {
    size_t i = buf_index(r, e);
    if (op == OP_ZERO)
      buf[i] = 0.0f;
    else if (op == OP_PACK)
      packed[r.packed + e] = buf[i];
    else
      buf[i] = packed[r.packed + e];
  }
}

/* Grid for a batch: x sized for its largest region, y one per region. */
static dim3 batch_grid(const hsc_kregion *r, int nr, region_batch *b) {
  size_t largest = 0;
  for (int i = 0; i < nr; i++) {
    b->r[i] = r[i];
    size_t count = (size_t)r[i].rows * (size_t)r[i].cols;
    if (count > largest) largest = count;
  }
  return dim3(hsc_k_blocks(largest), (unsigned)nr, 1);
}

static cudaError_t launch_copy(cudaStream_t stream, const hsc_kregion *r, int nr, enum region_op op,
                               float *buf, float *packed) {
  if (nr <= 0) return cudaSuccess;
  if (nr > HSC_K_REGION_BATCH) return cudaErrorInvalidValue;
  region_batch b;
  dim3 grid = batch_grid(r, nr, &b);
  region_copy<<<grid, HSC_K_THREADS, 0, stream>>>(b, op, buf, packed);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_sgd_update(cudaStream_t stream, const hsc_kregion *r, int nr, float lr,
                                        float momentum, float dampening, int nesterov, float *param,
                                        const float *grad, float *mom) {
  if (nr <= 0) return cudaSuccess;
  if (nr > HSC_K_REGION_BATCH) return cudaErrorInvalidValue;
  region_batch b;
  dim3 grid = batch_grid(r, nr, &b);
  sgd_params o = {lr, momentum, dampening, nesterov};
  sgd_update<<<grid, HSC_K_THREADS, 0, stream>>>(b, o, param, grad, mom);
  return cudaGetLastError();
}

extern "C" cudaError_t hsc_k_zero_regions(cudaStream_t stream, const hsc_kregion *r, int nr, float *buf) {
  return launch_copy(stream, r, nr, OP_ZERO, buf, NULL);
}

extern "C" cudaError_t hsc_k_pack_regions(cudaStream_t stream, const hsc_kregion *r, int nr, const float *buf,
                                          float *packed) {
  /* The kernel only reads buf when packing; one signature serves all three copies. */
  return launch_copy(stream, r, nr, OP_PACK, (float *)buf, packed);
}

extern "C" cudaError_t hsc_k_unpack_regions(cudaStream_t stream, const hsc_kregion *r, int nr,
                                            const float *packed, float *buf) {
  return launch_copy(stream, r, nr, OP_UNPACK, buf, (float *)packed);
}
