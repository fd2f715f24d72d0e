/* Launchers of the CUDA kernels that cuDNN and cuBLAS lack (DESIGN.md §6), callable from C and CUDA.
 *
 * Each launcher queues its kernel(s) on `stream` and returns cudaGetLastError(), so a bad launch
 * configuration is reported at the call site (src/backend/cuda/ wraps every call in HSC_CHECK_LAUNCH).
 * Semantics are exactly those of the operator with the same name in include/hsconas/backend.h and the CPU
 * backend: forward outputs are overwritten, backward gradients are accumulated (+=). Pointers are device
 * memory; NULL handling is the caller's (the backend skips a NULL gradient before launching).
 *
 * This header must stay self-contained (no hsconas headers): nvcc is not given the MPI include path. */
#ifndef HSCONAS_KERNELS_H
#define HSCONAS_KERNELS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* elementwise.cu: ReLU over `count` elements; y may alias x. dx += dy where y > 0. */
cudaError_t hsc_k_relu_forward(cudaStream_t stream, size_t count, const float *x, float *y);
cudaError_t hsc_k_relu_backward(cudaStream_t stream, size_t count, const float *y, const float *dy,
                                float *dx);

/* shuffle.cu: SPOS channel split and channel concat.
 * split: x [n, c, hw] -> even [n, c/2, hw] (channels 0, 2, ...), odd [n, c/2, hw] (channels 1, 3, ...).
 * split backward: dx [n, c, hw] += interleave(deven, dodd); deven or dodd may be NULL (no contribution).
 * concat: a [n, ca, hw], b [n, cb, hw] -> y [n, ca + cb, hw]; backward: da += dy[:, :ca],
 * db += dy[:, ca:], either may be NULL (skipped), not both. */
cudaError_t hsc_k_split_forward(cudaStream_t stream, int n, int c, int hw, const float *x, float *even,
                                float *odd);
cudaError_t hsc_k_split_backward(cudaStream_t stream, int n, int c, int hw, const float *deven,
                                 const float *dodd, float *dx);
cudaError_t hsc_k_concat_forward(cudaStream_t stream, int n, int ca, int cb, int hw, const float *a,
                                 const float *b, float *y);
cudaError_t hsc_k_concat_backward(cudaStream_t stream, int n, int ca, int cb, int hw, const float *dy,
                                  float *da, float *db);

/* pool.cu: global average pool, x [n, c, hw] -> y [n, c]; backward dx [n, c, hw] += dy [n, c] / hw. */
cudaError_t hsc_k_avgpool_forward(cudaStream_t stream, int n, int c, int hw, const float *x, float *y);
cudaError_t hsc_k_avgpool_backward(cudaStream_t stream, int n, int c, int hw, const float *dy, float *dx);

/* loss.cu: softmax cross-entropy with label smoothing s (target q = (1 - s) onehot + s/k).
 * logits [n, k], labels [n] int32, probs [n, k], losses [n]; dlogits [n, k] += scale * (probs - q).
 * accuracy: counts [2] int32 (device) = {top-1 hits, top-5 hits}, a hit when fewer than 1 (5) logits
 * are strictly greater than the label's. A label outside [0, k) gives a NaN loss and never a hit. */
cudaError_t hsc_k_xent_forward(cudaStream_t stream, int n, int k, const float *logits, const int32_t *labels,
                               float smoothing, float *probs, float *losses);
cudaError_t hsc_k_xent_backward(cudaStream_t stream, int n, int k, const float *probs, const int32_t *labels,
                                float smoothing, float scale, float *dlogits);
cudaError_t hsc_k_accuracy(cudaStream_t stream, int n, int k, const float *logits, const int32_t *labels,
                           int32_t *counts);

/* sgd.cu: operations over regions of a parameter buffer (hsc_region in backend.h), plus each region's
 * offset in the packed buffer. Regions travel by value as kernel parameters, at most
 * HSC_K_REGION_BATCH per launch (32 bytes each, well under the 4 KiB parameter limit), so no device
 * copy of the descriptors is needed and the host array may be reused as soon as the launcher returns. */
#define HSC_K_REGION_BATCH 64
typedef struct {
  size_t offset; /* first element in the parameter buffer */
  size_t packed; /* first element in the packed buffer */
  int rows, cols, ld;
  float weight_decay;
} hsc_kregion;

/* torch.optim.SGD with a zero-initialised momentum buffer (backend.h hsc_sgd_desc):
 *   g = grad + wd * p;  m = momentum * m + (1 - dampening) * g;  g = nesterov ? g + momentum * m : m;
 *   p -= lr * g.   nr <= HSC_K_REGION_BATCH. */
cudaError_t hsc_k_sgd_update(cudaStream_t stream, const hsc_kregion *r, int nr, float lr, float momentum,
                             float dampening, int nesterov, float *param, const float *grad, float *mom);
cudaError_t hsc_k_zero_regions(cudaStream_t stream, const hsc_kregion *r, int nr, float *buf);
/* packed[r.packed + i * cols + j] = buf[r.offset + i * ld + j], and the reverse. */
cudaError_t hsc_k_pack_regions(cudaStream_t stream, const hsc_kregion *r, int nr, const float *buf,
                               float *packed);
cudaError_t hsc_k_unpack_regions(cudaStream_t stream, const hsc_kregion *r, int nr, const float *packed,
                                 float *buf);

/* depthwise.cu: depthwise k x k convolution (k 3, 5, 7; stride 1, 2; padding k/2) on the leading c
 * channels. x [n, c, h, w], w [c, k, k] (a contiguous slice of the max-width weight), y [n, c, ho, wo].
 * Backward: dx [n, c, h, w] += and dw [c, k, k] += (either may be NULL). An unsupported k or stride is
 * cudaErrorInvalidValue. */
cudaError_t hsc_k_depthwise_forward(cudaStream_t stream, int n, int c, int h, int w, int k, int stride,
                                    const float *x, const float *wt, float *y);
cudaError_t hsc_k_depthwise_backward(cudaStream_t stream, int n, int c, int h, int w, int k, int stride,
                                     const float *x, const float *wt, const float *dy, float *dx, float *dw);

/* bn.cu: batch norm with the semantics of backend.h (hsc_bn_desc mirrored here, this header being
 * self-contained). gamma and beta NULL = BN without affine parameters. Every op but bn_fold and scale_rows
 * takes a device scratch of hsc_k_bn_scratch_bytes(n, c, hw) bytes, 256-byte aligned. */
typedef struct {
  int n, c, hw;
  float eps, momentum;
  int relu, dx_assign;
} hsc_kbn;
size_t hsc_k_bn_scratch_bytes(int n, int c, int hw);
cudaError_t hsc_k_bn_forward_train(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *gamma,
                                   const float *beta, float *running_mean, float *running_var, float *y,
                                   float *save_mean, float *save_invstd, void *scratch);
cudaError_t hsc_k_bn_forward_infer(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *gamma,
                                   const float *beta, const float *running_mean, const float *running_var,
                                   float *y, void *scratch);
cudaError_t hsc_k_bn_backward(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *y,
                              const float *gamma, const float *save_mean, const float *save_invstd,
                              const float *dy, float *dx, float *dgamma, float *dbeta, void *scratch);
cudaError_t hsc_k_bn_stats(cudaStream_t stream, const hsc_kbn *d, const float *x, float *mean, float *var,
                           void *scratch);
cudaError_t hsc_k_bn_backward_reduce(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *y,
                                     const float *mean, const float *invstd, const float *dy, float *sum_g,
                                     float *sum_gxhat, float *dgamma, float *dbeta, void *scratch);
cudaError_t hsc_k_bn_backward_elemt(cudaStream_t stream, const hsc_kbn *d, const float *x, const float *y,
                                    const float *gamma, const float *mean, const float *invstd,
                                    const float *dy, const float *mean_g, const float *mean_gxhat, float *dx,
                                    void *scratch);
cudaError_t hsc_k_bn_fold(cudaStream_t stream, int c, float eps, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, const float *bias,
                          float *scale, float *shift);
/* y [rows, cols] = scale [rows] * x; y may alias x. */
cudaError_t hsc_k_scale_rows(cudaStream_t stream, int rows, int cols, const float *scale, const float *x,
                             float *y);

/* pointwise.cu: y [n, c, hw] = relu?(scale[ch] * y + shift[ch]) in place (the pointwise epilogue), and
 * out [c, n * hw] = x [n, c, hw] transposed to channel-major (for dw's GEMM over all images at once). */
cudaError_t hsc_k_channel_affine(cudaStream_t stream, int n, int c, int hw, const float *scale,
                                 const float *shift, int relu, float *y);
cudaError_t hsc_k_nchw_to_cn(cudaStream_t stream, int n, int c, int hw, const float *x, float *out);

/* linear.cu: y [rows, cols] = b [cols] on every row; db [cols] += column sums of dy [rows, cols]. */
cudaError_t hsc_k_rows_set(cudaStream_t stream, int rows, int cols, const float *b, float *y);
cudaError_t hsc_k_colsum_add(cudaStream_t stream, int rows, int cols, const float *dy, float *db);

#ifdef __cplusplus
}
#endif

#endif
