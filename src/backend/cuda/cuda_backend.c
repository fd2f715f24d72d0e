/* The CUDA backend table: device memory, one stream per context, cuDNN and cuBLAS handles bound to it,
 * and the kernels of kernels/ for the operators cuDNN lacks (DESIGN.md §6). Which operator uses what:
 *   conv2d                    cuDNN (conv.c)
 *   pointwise, linear         cuBLAS (gemm.c) + small kernels (kernels/pointwise.cu, linear.cu)
 *   depthwise                 own kernels (kernels/depthwise.cu)
 *   batch norm, fold, scale   own kernels (bn.c, kernels/bn.cu)
 *   relu, split/concat, pool, loss, SGD and regions: own kernels (this file, kernels/)
 *   gradient all-reduce       NCCL (nccl.c)
 *
 * Everything a context queues goes to its own stream, in order, so operators need no synchronisation
 * between them; download() and sync() are the only points where the host waits. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "cuda_internal.h"
#include "kernels.h"

static hsc_cuda_ctx *cuda(hsc_backend_ctx *ctx) { return hsc_cuda(ctx); }

/* Library version codes: major * 10000 + minor * 100 + patch (cuDNN >= 9, cuBLAS, NCCL >= 2.9), or
 * major * 1000 + minor * 100 + patch for the older cuDNN and NCCL releases. */
static void version_string(int code, char *buf, size_t len) {
  if (code >= 10000)
    snprintf(buf, len, "%d.%d.%d", code / 10000, code / 100 % 100, code % 100);
  else
    snprintf(buf, len, "%d.%d.%d", code / 1000, code / 100 % 10, code % 100);
}

/* CUDA driver and runtime versions are major * 1000 + minor * 10. */
static void cuda_version_string(int code, char *buf, size_t len) {
  if (code <= 0)
    snprintf(buf, len, "none");
  else
    snprintf(buf, len, "%d.%d", code / 1000, code % 1000 / 10);
}

static void cuda_free(hsc_backend_ctx *ctx) {
  if (!ctx) return;
  hsc_cuda_ctx *c = cuda(ctx);
  if (c->stream) HSC_CHECK_CUDA(cudaStreamSynchronize(c->stream));
  if (c->copy_stream) HSC_CHECK_CUDA(cudaStreamSynchronize(c->copy_stream));
  hsc_cuda_comm_free(c);
  hsc_cuda_conv_free(c);
  for (int i = 0; i < HSC_CUDA_STAGES; i++) {
    if (c->stage[i]) HSC_CHECK_CUDA(cudaFreeHost(c->stage[i]));
    if (c->staged[i]) HSC_CHECK_CUDA(cudaEventDestroy(c->staged[i]));
  }
  if (c->queued) HSC_CHECK_CUDA(cudaEventDestroy(c->queued));
  if (c->reduced) HSC_CHECK_CUDA(cudaEventDestroy(c->reduced));
  if (c->workspace) HSC_CHECK_CUDA(cudaFree(c->workspace));
  if (c->cublas) HSC_CHECK_CUBLAS(cublasDestroy(c->cublas));
  if (c->cudnn) HSC_CHECK_CUDNN(cudnnDestroy(c->cudnn));
  if (c->comm_stream) HSC_CHECK_CUDA(cudaStreamDestroy(c->comm_stream));
  if (c->copy_stream) HSC_CHECK_CUDA(cudaStreamDestroy(c->copy_stream));
  if (c->stream) HSC_CHECK_CUDA(cudaStreamDestroy(c->stream));
  free(c);
}

/* The device is opts->device when given, else the node-local rank modulo the devices this node uses: the
 * visible ones, or the first opts->gpus_per_node of them (one rank per GPU, DESIGN.md §2). No driver, no
 * device or an unusable one is HSC_ERR_DEVICE, not a fatal error: `hsconas devices` and the tests report it
 * and carry on. */
static hsc_status cuda_init(hsc_backend_ctx **out, const hsc_backend_opts *opts, hsc_error *err) {
  *out = NULL;
  /* cudaGetDeviceCount leaves the count unwritten when it fails (no driver). */
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    int driver = 0, runtime = 0;
    char rv[32];
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = 0;
    cuda_version_string(runtime, rv, sizeof rv);
    if (driver <= 0)
      return hsc_error_set(err, HSC_ERR_DEVICE,
                           "no usable CUDA device: cudaGetDeviceCount failed: %s (%s); no NVIDIA driver is "
                           "loaded on this node (runtime is CUDA %s)",
                           cudaGetErrorString(rc), cudaGetErrorName(rc), rv);
    char dv[32];
    cuda_version_string(driver, dv, sizeof dv);
    return hsc_error_set(
        err, HSC_ERR_DEVICE,
        "no usable CUDA device: cudaGetDeviceCount failed: %s (%s); the driver supports CUDA "
        "%s, the runtime is CUDA %s",
        cudaGetErrorString(rc), cudaGetErrorName(rc), dv, rv);
  }
  const char *visible = getenv("CUDA_VISIBLE_DEVICES");
  if (count <= 0)
    return hsc_error_set(err, HSC_ERR_DEVICE, "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)",
                         visible ? visible : "unset");
  int per_node = opts && opts->gpus_per_node > 0 && opts->gpus_per_node < count ? opts->gpus_per_node : count;
  int device = opts && opts->device >= 0 ? opts->device : hsc_proc()->local_rank % per_node;
  if (device >= count)
    return hsc_error_set(err, HSC_ERR_DEVICE,
                         "CUDA device %d requested but %d visible (CUDA_VISIBLE_DEVICES=%s)", device, count,
                         visible ? visible : "unset");

  hsc_cuda_ctx *c = hsc_xcalloc(1, sizeof *c);
  c->device = device;
  c->device_count = count;
  HSC_TRY_CUDA(err, cudaSetDevice(device));
  HSC_TRY_CUDA(err, cudaGetDeviceProperties(&c->prop, device));
  /* Non-blocking: no implicit ordering with the legacy default stream, which libraries may use. */
  HSC_TRY_CUDA(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  HSC_TRY_CUDNN(err, cudnnCreate(&c->cudnn));
  HSC_TRY_CUDNN(err, cudnnSetStream(c->cudnn, c->stream));
  HSC_TRY_CUBLAS(err, cublasCreate(&c->cublas));
  HSC_TRY_CUBLAS(err, cublasSetStream(c->cublas, c->stream));
  /* Plain float32 GEMMs (no TF32), as the CPU backend and the PyTorch references compute. */
  HSC_TRY_CUBLAS(err, cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
  HSC_TRY_CUDA(err, cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
  HSC_TRY_CUDA(err, cudaStreamCreateWithFlags(&c->comm_stream, cudaStreamNonBlocking));
  HSC_TRY_CUDA(err, cudaEventCreateWithFlags(&c->queued, cudaEventDisableTiming));
  HSC_TRY_CUDA(err, cudaEventCreateWithFlags(&c->reduced, cudaEventDisableTiming));
  for (int i = 0; i < HSC_CUDA_STAGES; i++)
    HSC_TRY_CUDA(err, cudaEventCreateWithFlags(&c->staged[i], cudaEventDisableTiming));
  if (hsc_cuda_conv_init(c, err) != HSC_OK) goto fail;
  *out = (hsc_backend_ctx *)c;
  return HSC_OK;
fail:
  cuda_free((hsc_backend_ctx *)c);
  return HSC_ERR_DEVICE;
}

static void cuda_describe(const hsc_backend_ctx *ctx, char *buf, size_t len) {
  const hsc_cuda_ctx *c = (const hsc_cuda_ctx *)ctx;
  int driver = 0, runtime = 0, cublas = 0, nccl = 0;
  char pci[32] = "?", dv[32], rv[32], dnn[32], blas[32], nc[32];
  HSC_CHECK_CUDA(cudaDriverGetVersion(&driver));
  HSC_CHECK_CUDA(cudaRuntimeGetVersion(&runtime));
  HSC_CHECK_CUDA(cudaDeviceGetPCIBusId(pci, (int)sizeof pci, c->device));
  HSC_CHECK_CUBLAS(cublasGetVersion(c->cublas, &cublas));
  HSC_CHECK_NCCL(ncclGetVersion(&nccl));
  cuda_version_string(driver, dv, sizeof dv);
  cuda_version_string(runtime, rv, sizeof rv);
  version_string((int)cudnnGetVersion(), dnn, sizeof dnn);
  version_string(cublas, blas, sizeof blas);
  version_string(nccl, nc, sizeof nc);
  snprintf(buf, len,
           "cuda: %s (device %d of %d, PCI %s, sm_%d%d, %d SMs, %.1f GiB), driver %s, runtime %s, cuDNN %s, "
           "cuBLAS %s, NCCL %s",
           c->prop.name, c->device, c->device_count, pci, c->prop.major, c->prop.minor,
           c->prop.multiProcessorCount, (double)c->prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), dv, rv,
           dnn, blas, nc);
}

/* Operators run on the device, driven by the one host thread that owns the context. */
static int cuda_threads(const hsc_backend_ctx *ctx) { return 1; }

/* Rounded up to 64 bytes (and at least 64) and zeroed in full, as the CPU backend's alloc; cudaMalloc's
 * own alignment (256 bytes) covers the 64 the interface promises. */
static void *cuda_alloc(hsc_backend_ctx *ctx, size_t bytes) {
  hsc_cuda_ctx *c = cuda(ctx);
  size_t padded = bytes ? (bytes + 63) / 64 * 64 : 64;
  void *p = NULL;
  cudaError_t rc = cudaMalloc(&p, padded);
  if (rc != cudaSuccess) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) free_bytes = total_bytes = 0;
    hsc_fatal("cudaMalloc of %zu bytes on CUDA device %d failed: %s (%s); %zu of %zu MiB free", padded,
              c->device, cudaGetErrorString(rc), cudaGetErrorName(rc), free_bytes >> 20, total_bytes >> 20);
  }
  HSC_CHECK_CUDA(cudaMemsetAsync(p, 0, padded, c->stream));
  return p;
}

/* cudaFree waits for the device, so memory still in use by queued work is never freed under it. */
static void cuda_release(hsc_backend_ctx *ctx, void *p) {
  if (p) HSC_CHECK_CUDA(cudaFree(p));
}

/* Uploads of at least this many bytes (input batches, weights) go through the pinned staging buffers; smaller
 * ones (per-channel statistics, labels) are plain copies from pageable memory. */
#define STAGE_MIN ((size_t)1 << 16)

/* host_src may be reused as soon as this returns. A large upload is copied into the next pinned staging
 * buffer (after that buffer's previous transfer finished) and sent by an asynchronous copy on the copy
 * stream, which waits for the work already queued (it may still read dst) and which the compute stream
 * waits for in turn. The host therefore returns as soon as its memcpy is done and can prepare the next
 * batch while the GPU computes; with two buffers, two uploads can be in flight. */
static void cuda_upload(hsc_backend_ctx *ctx, void *dst, const void *host_src, size_t bytes) {
  hsc_cuda_ctx *c = cuda(ctx);
  if (!bytes) return;
  if (bytes < STAGE_MIN) {
    HSC_CHECK_CUDA(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    return;
  }
  const int s = c->next_stage;
  c->next_stage = (s + 1) % HSC_CUDA_STAGES;
  HSC_CHECK_CUDA(cudaEventSynchronize(c->staged[s])); /* an event never recorded is complete */
  if (c->stage_bytes[s] < bytes) {
    if (c->stage[s]) HSC_CHECK_CUDA(cudaFreeHost(c->stage[s]));
    c->stage[s] = NULL;
    HSC_CHECK_CUDA(cudaMallocHost(&c->stage[s], bytes));
    c->stage_bytes[s] = bytes;
  }
  memcpy(c->stage[s], host_src, bytes);
  HSC_CHECK_CUDA(cudaEventRecord(c->queued, c->stream));
  HSC_CHECK_CUDA(cudaStreamWaitEvent(c->copy_stream, c->queued, 0));
  HSC_CHECK_CUDA(cudaMemcpyAsync(dst, c->stage[s], bytes, cudaMemcpyHostToDevice, c->copy_stream));
  HSC_CHECK_CUDA(cudaEventRecord(c->staged[s], c->copy_stream));
  HSC_CHECK_CUDA(cudaStreamWaitEvent(c->stream, c->staged[s], 0));
}

void *hsc_cuda_workspace(hsc_cuda_ctx *c, size_t bytes) {
  if (bytes <= c->workspace_bytes) return c->workspace;
  /* Grow to the request rounded up to 1 MiB, at least doubling, so that a sequence of slightly larger
   * requests does not reallocate each time. */
  size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
  if (want < 2 * c->workspace_bytes) want = 2 * c->workspace_bytes;
  HSC_CHECK_CUDA(cudaStreamSynchronize(c->stream));
  if (c->workspace) HSC_CHECK_CUDA(cudaFree(c->workspace));
  c->workspace = NULL;
  c->workspace_bytes = 0;
  cudaError_t rc = cudaMalloc(&c->workspace, want);
  if (rc != cudaSuccess && want > bytes) { /* the doubling may be what does not fit */
    want = bytes;
    rc = cudaMalloc(&c->workspace, want);
  }
  if (rc != cudaSuccess)
    hsc_fatal("cuda backend: workspace of %zu bytes on CUDA device %d: cudaMalloc failed: %s (%s)", want,
              c->device, cudaGetErrorString(rc), cudaGetErrorName(rc));
  c->workspace_bytes = want;
  return c->workspace;
}

static void cuda_download(hsc_backend_ctx *ctx, void *host_dst, const void *src, size_t bytes) {
  if (!bytes) return;
  hsc_cuda_ctx *c = cuda(ctx);
  HSC_CHECK_CUDA(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
  HSC_CHECK_CUDA(cudaStreamSynchronize(c->stream));
}

/* Unlike the CPU backend's memmove, the ranges must not overlap (cudaMemcpy's rule). */
static void cuda_copy(hsc_backend_ctx *ctx, void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  assert((uintptr_t)dst + bytes <= (uintptr_t)src || (uintptr_t)src + bytes <= (uintptr_t)dst);
  HSC_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda(ctx)->stream));
}

static void cuda_zero(hsc_backend_ctx *ctx, void *p, size_t bytes) {
  if (bytes) HSC_CHECK_CUDA(cudaMemsetAsync(p, 0, bytes, cuda(ctx)->stream));
}

static void cuda_sync(hsc_backend_ctx *ctx) { HSC_CHECK_CUDA(cudaStreamSynchronize(cuda(ctx)->stream)); }

/* ---- operators on kernels/ ---- */

static void cuda_relu_forward(hsc_backend_ctx *ctx, size_t count, const float *x, float *y) {
  HSC_CHECK_LAUNCH(hsc_k_relu_forward(cuda(ctx)->stream, count, x, y));
}

static void cuda_relu_backward(hsc_backend_ctx *ctx, size_t count, const float *y, const float *dy,
                               float *dx) {
  if (dx) HSC_CHECK_LAUNCH(hsc_k_relu_backward(cuda(ctx)->stream, count, y, dy, dx));
}

static void cuda_split_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *even,
                               float *odd) {
  assert(c % 2 == 0);
  HSC_CHECK_LAUNCH(hsc_k_split_forward(cuda(ctx)->stream, n, c, hw, x, even, odd));
}

static void cuda_split_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *deven,
                                const float *dodd, float *dx) {
  assert(c % 2 == 0);
  if (dx) HSC_CHECK_LAUNCH(hsc_k_split_backward(cuda(ctx)->stream, n, c, hw, deven, dodd, dx));
}

static void cuda_concat_forward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *a,
                                const float *b, float *y) {
  HSC_CHECK_LAUNCH(hsc_k_concat_forward(cuda(ctx)->stream, n, ca, cb, hw, a, b, y));
}

static void cuda_concat_backward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *dy,
                                 float *da, float *db) {
  HSC_CHECK_LAUNCH(hsc_k_concat_backward(cuda(ctx)->stream, n, ca, cb, hw, dy, da, db));
}

static void cuda_avgpool_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *y) {
  HSC_CHECK_LAUNCH(hsc_k_avgpool_forward(cuda(ctx)->stream, n, c, hw, x, y));
}

static void cuda_avgpool_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *dy, float *dx) {
  if (dx) HSC_CHECK_LAUNCH(hsc_k_avgpool_backward(cuda(ctx)->stream, n, c, hw, dy, dx));
}

static void cuda_xent_forward(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                              float smoothing, float *probs, float *losses) {
  HSC_CHECK_LAUNCH(hsc_k_xent_forward(cuda(ctx)->stream, n, k, logits, labels, smoothing, probs, losses));
}

static void cuda_xent_backward(hsc_backend_ctx *ctx, int n, int k, const float *probs, const int32_t *labels,
                               float smoothing, float scale, float *dlogits) {
  if (dlogits)
    HSC_CHECK_LAUNCH(hsc_k_xent_backward(cuda(ctx)->stream, n, k, probs, labels, smoothing, scale, dlogits));
}

static void cuda_accuracy(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          int32_t *counts) {
  HSC_CHECK_LAUNCH(hsc_k_accuracy(cuda(ctx)->stream, n, k, logits, labels, counts));
}

/* Converts regions [first, first + HSC_K_REGION_BATCH) (or fewer at the end) to the kernels' form,
 * placing each in the packed buffer right after the previous one (*packed: the running offset). Returns
 * how many it converted. */
static int region_batch(const hsc_region *r, int nr, int first, size_t *packed, hsc_kregion *out) {
  int m = nr - first < HSC_K_REGION_BATCH ? nr - first : HSC_K_REGION_BATCH;
  for (int i = 0; i < m; i++) {
    const hsc_region *s = &r[first + i];
    assert(s->rows >= 0 && s->cols >= 0 && (s->rows <= 1 || s->cols <= s->ld));
    out[i] = (hsc_kregion){.offset = s->offset,
                           .packed = *packed,
                           .rows = s->rows,
                           .cols = s->cols,
                           .ld = s->ld,
                           .weight_decay = s->weight_decay};
    *packed += (size_t)s->rows * (size_t)s->cols;
  }
  return m;
}

typedef enum { REGIONS_SGD, REGIONS_ZERO, REGIONS_PACK, REGIONS_UNPACK } regions_op;

/* The four region operators share one walk: the host descriptors go to the kernels by value, in batches
 * of HSC_K_REGION_BATCH, with their offsets in the packed buffer. Pointers `op` does not use are NULL. */
static void regions_launch(hsc_backend_ctx *ctx, regions_op op, const hsc_region *r, int nr,
                           const hsc_sgd_desc *o, float *buf, const float *in, float *mom) {
  cudaStream_t stream = cuda(ctx)->stream;
  hsc_kregion kr[HSC_K_REGION_BATCH];
  size_t packed = 0;
  for (int first = 0; first < nr; first += HSC_K_REGION_BATCH) {
    int m = region_batch(r, nr, first, &packed, kr);
    switch (op) {
      case REGIONS_SGD: /* buf = parameters, in = gradients */
        HSC_CHECK_LAUNCH(
            hsc_k_sgd_update(stream, kr, m, o->lr, o->momentum, o->dampening, o->nesterov, buf, in, mom));
        break;
      case REGIONS_ZERO:
        HSC_CHECK_LAUNCH(hsc_k_zero_regions(stream, kr, m, buf));
        break;
      case REGIONS_PACK: /* in = the full buffer, buf = the packed one */
        HSC_CHECK_LAUNCH(hsc_k_pack_regions(stream, kr, m, in, buf));
        break;
      case REGIONS_UNPACK: /* in = the packed buffer, buf = the full one */
        HSC_CHECK_LAUNCH(hsc_k_unpack_regions(stream, kr, m, in, buf));
        break;
    }
  }
}

static void cuda_sgd_update(hsc_backend_ctx *ctx, const hsc_sgd_desc *o, const hsc_region *r, int nr,
                            float *param, const float *grad, float *mom) {
  assert(o && param && grad && mom);
  regions_launch(ctx, REGIONS_SGD, r, nr, o, param, grad, mom);
}

static void cuda_zero_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, float *buf) {
  regions_launch(ctx, REGIONS_ZERO, r, nr, NULL, buf, NULL, NULL);
}

static void cuda_pack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *buf,
                              float *packed_buf) {
  regions_launch(ctx, REGIONS_PACK, r, nr, NULL, packed_buf, buf, NULL);
}

static void cuda_unpack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *packed_buf,
                                float *buf) {
  regions_launch(ctx, REGIONS_UNPACK, r, nr, NULL, buf, packed_buf, NULL);
}

/* Depthwise convolution on the leading c channels: own kernels (kernels/depthwise.cu). */
static void cuda_depthwise_forward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                                   const float *w, float *y) {
  HSC_CHECK_LAUNCH(
      hsc_k_depthwise_forward(cuda(ctx)->stream, d->n, d->c, d->h, d->w, d->k, d->stride, x, w, y));
}

static void cuda_depthwise_backward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                                    const float *w, const float *dy, float *dx, float *dw) {
  if (!dx && !dw) return;
  HSC_CHECK_LAUNCH(
      hsc_k_depthwise_backward(cuda(ctx)->stream, d->n, d->c, d->h, d->w, d->k, d->stride, x, w, dy, dx, dw));
}

const hsc_backend hsc_backend_cuda = {
    .name = "cuda",
    .init = cuda_init,
    .free = cuda_free,
    .describe = cuda_describe,
    .threads = cuda_threads,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .zero = cuda_zero,
    .sync = cuda_sync,
    .conv2d_forward = hsc_cuda_conv2d_forward,
    .conv2d_backward = hsc_cuda_conv2d_backward,
    .pointwise_forward = hsc_cuda_pointwise_forward,
    .pointwise_backward = hsc_cuda_pointwise_backward,
    .depthwise_forward = cuda_depthwise_forward,
    .depthwise_backward = cuda_depthwise_backward,
    .bn_forward_train = hsc_cuda_bn_forward_train,
    .bn_forward_infer = hsc_cuda_bn_forward_infer,
    .bn_backward = hsc_cuda_bn_backward,
    .bn_stats = hsc_cuda_bn_stats,
    .bn_fold = hsc_cuda_bn_fold,
    .scale_rows = hsc_cuda_scale_rows,
    .bn_backward_reduce = hsc_cuda_bn_backward_reduce,
    .bn_backward_elemt = hsc_cuda_bn_backward_elemt,
    .relu_forward = cuda_relu_forward,
    .relu_backward = cuda_relu_backward,
    .split_forward = cuda_split_forward,
    .split_backward = cuda_split_backward,
    .concat_forward = cuda_concat_forward,
    .concat_backward = cuda_concat_backward,
    .avgpool_forward = cuda_avgpool_forward,
    .avgpool_backward = cuda_avgpool_backward,
    .linear_forward = hsc_cuda_linear_forward,
    .linear_backward = hsc_cuda_linear_backward,
    .xent_forward = cuda_xent_forward,
    .xent_backward = cuda_xent_backward,
    .accuracy = cuda_accuracy,
    .sgd_update = cuda_sgd_update,
    .zero_regions = cuda_zero_regions,
    .pack_regions = cuda_pack_regions,
    .unpack_regions = cuda_unpack_regions,
    .comm_attach = hsc_cuda_comm_attach,
    .allreduce_mean = hsc_cuda_allreduce_mean,
    .comm_wait = hsc_cuda_comm_wait,
};
