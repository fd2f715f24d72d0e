/* The backend interface: memory and the supernet's operators, forward and backward, on one device.
 *
 * A backend is a table of function pointers (filled with designated initialisers in its own file) plus an
 * opaque context. Which backends exist is known only to src/backend/registry.c.
 *
 * Conventions for every operator:
 *   - tensors are float32, NCHW, contiguous over the channels that are active; pointers are backend memory
 *     (host memory for "cpu", device memory for "cuda");
 *   - weights live at maximum width and an operator uses the leading slice (the first cout rows, the first
 *     cin columns), never a copy;
 *   - backward functions ACCUMULATE (+=) into every gradient they write (dx, dw, ...); a NULL gradient
 *     pointer means "not needed" and skips that work;
 *   - outputs of forward functions are overwritten, never accumulated;
 *   - a context is used by one host thread at a time; operators may use scratch memory owned by it.
 * Shapes are given in a comment on every tensor argument; [c] of a max-width tensor means its leading c
 * entries. */
#ifndef HSCONAS_BACKEND_H
#define HSCONAS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "hsconas/core.h"

/* General 2-D convolution (the stem, and the reference for the specialised convs).
 * x [n, cin, h, w], w [cout, cin/groups, kh, kw], b [cout] or NULL, y [n, cout, ho, wo]. */
typedef struct {
  int n, cin, h, w;
  int cout, kh, kw;
  int stride, pad, groups;
} hsc_conv2d_desc;

/* Output size of a convolution; 0 when the kernel does not fit in the padded input (C division would
 * round the negative span toward zero and claim one output). */
static inline int hsc_conv_out_size(int size, int k, int stride, int pad) {
  int span = size + 2 * pad - k;
  return span < 0 ? 0 : span / stride + 1;
}
static inline int hsc_conv2d_out_h(const hsc_conv2d_desc *d) {
  return hsc_conv_out_size(d->h, d->kh, d->stride, d->pad);
}
static inline int hsc_conv2d_out_w(const hsc_conv2d_desc *d) {
  return hsc_conv_out_size(d->w, d->kw, d->stride, d->pad);
}

/* Pointwise (1x1, stride 1) convolution on the leading cout x cin slice of a max-width weight.
 * x [n, cin, hw], w [cout rows of ldw floats] (element (o, i) at w[o * ldw + i]), y [n, cout, hw]. */
typedef struct {
  int n, cin, cout, hw;
  int ldw; /* >= cin: the maximum input width the weight was allocated for */
  /* Optional forward epilogue (inference BN folded in): when scale is not NULL, the forward writes
   * y = relu?(scale[o] * (W x)[o] + shift[o]) with scale, shift [cout] (backend memory), while each tile
   * is still in cache. The backward ignores these fields. */
  const float *scale, *shift;
  int relu;
  /* Backward: write dx (=) instead of adding to it, so that the caller need not zero it first. */
  int dx_assign;
} hsc_pointwise_desc;

/* Depthwise k x k convolution, padding k/2, on the leading c channels.
 * x [n, c, h, w], w [c, k, k], y [n, c, ho, wo]. */
typedef struct {
  int n, c, h, w;
  int k;      /* 3, 5 or 7 */
  int stride; /* 1 or 2 */
} hsc_depthwise_desc;

static inline int hsc_depthwise_out(int size, int k, int stride) {
  return hsc_conv_out_size(size, k, stride, k / 2);
}

/* Batch normalisation over (n, hw) per channel, on the leading c channels, optionally followed by ReLU.
 * PyTorch semantics: y = (x - mean) / sqrt(var + eps) * gamma + beta with the biased batch variance;
 * running = (1 - momentum) * running + momentum * batch_stat, with the unbiased variance (n*hw/(n*hw-1)).
 * gamma and beta are NULL for BN without affine parameters (the supernet, as SPOS). */
typedef struct {
  int n, c, hw;
  float eps;
  float momentum;
  int relu;
  /* Backward (bn_backward, bn_backward_elemt): write dx (=) instead of adding to it. */
  int dx_assign;
} hsc_bn_desc;

/* Fully connected layer. x [n, in], w [out, in], b [out] or NULL, y [n, out]. */
typedef struct {
  int n, in, out;
} hsc_linear_desc;

/* A region of a parameter buffer that one training step touched: the leading rows x cols slice of a
 * matrix whose rows are ld floats apart (ld >= cols), starting at `offset`. A 1-D parameter is rows = 1.
 * The regions passed to one call must not overlap (each element is updated once). */
typedef struct {
  size_t offset;
  int rows, cols, ld;
  float weight_decay; /* per parameter: conv/linear weights decay, BN and biases do not */
} hsc_region;

/* SGD with momentum over a zero-initialised momentum buffer (mom must not be NULL):
 *   g = grad + wd * p;  m = momentum * m + (1 - dampening) * g;  g = nesterov ? g + momentum * m : m;
 *   p -= lr * g.
 * This equals torch.optim.SGD when dampening = 0 (SPOS's setting): torch starts its buffer at g on the first
 * step, which is what m = momentum * 0 + g gives. With dampening > 0 torch skips the damping on the first
 * step and this does not. */
typedef struct {
  float lr;
  float momentum;
  float dampening;
  int nesterov;
} hsc_sgd_desc;

typedef struct {
  int threads;       /* CPU threads for operators; <= 0: OMP_NUM_THREADS, else all cores */
  int device;        /* device index for GPU backends; < 0: the node-local rank modulo the node's devices */
  int gpus_per_node; /* GPU backends with device < 0: spread a node's ranks over its first gpus_per_node
                      * devices (dist.gpus_per_node); <= 0: over all visible ones */
  int pin; /* CPU: bind operator thread i to the i-th allowed core after this rank's node-local share */
} hsc_backend_opts;

typedef struct hsc_backend_ctx hsc_backend_ctx;

typedef struct hsc_backend {
  const char *name;

  /* Lifecycle. init returns HSC_ERR_DEVICE with a message when the device cannot be used. */
  hsc_status (*init)(hsc_backend_ctx **ctx, const hsc_backend_opts *opts, hsc_error *err);
  void (*free)(hsc_backend_ctx *ctx);
  /* One line describing the device and library versions (for logs and latency models). */
  void (*describe)(const hsc_backend_ctx *ctx, char *buf, size_t len);
  int (*threads)(const hsc_backend_ctx *ctx);

  /* Memory. alloc returns zeroed, 64-byte aligned backend memory; failure is fatal. */
  void *(*alloc)(hsc_backend_ctx *ctx, size_t bytes);
  void (*release)(hsc_backend_ctx *ctx, void *p);
  void (*upload)(hsc_backend_ctx *ctx, void *dst, const void *host_src, size_t bytes);
  void (*download)(hsc_backend_ctx *ctx, void *host_dst, const void *src, size_t bytes);
  void (*copy)(hsc_backend_ctx *ctx, void *dst, const void *src, size_t bytes);
  void (*zero)(hsc_backend_ctx *ctx, void *p, size_t bytes);
  void (*sync)(hsc_backend_ctx *ctx); /* wait for all queued work */

  /* General convolution. */
  void (*conv2d_forward)(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                         const float *b, float *y);
  void (*conv2d_backward)(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db);

  /* Pointwise convolution on a weight slice (a GEMM per image; no copy of the slice). */
  void (*pointwise_forward)(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x, const float *w,
                            float *y);
  void (*pointwise_backward)(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                             const float *w, const float *dy, float *dx, float *dw);

  /* Depthwise convolution. */
  void (*depthwise_forward)(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x, const float *w,
                            float *y);
  void (*depthwise_backward)(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                             const float *w, const float *dy, float *dx, float *dw);

  /* Batch norm, training mode: normalises with the batch statistics, writes save_mean [c] and
   * save_invstd [c] = 1/sqrt(var + eps) for the backward, and updates running_mean/var [c] unless NULL.
   * x, y [n, c, hw]; gamma, beta [c] or NULL. y may alias x only when no backward follows (bn_backward
   * needs the input), e.g. BN recalibration. */
  void (*bn_forward_train)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                           const float *beta, float *running_mean, float *running_var, float *y,
                           float *save_mean, float *save_invstd);
  /* Inference mode: normalises with running_mean/var. */
  void (*bn_forward_infer)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                           const float *beta, const float *running_mean, const float *running_var, float *y);
  /* Backward of the training-mode forward. x is the forward input; y its output (used only for the
   * ReLU mask when d->relu, else may be NULL; an implementation may take the mask from x > mean instead
   * when gamma is NULL, since gamma and beta are both NULL or both set). dgamma, dbeta [c] or NULL. */
  void (*bn_backward)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                      const float *gamma, const float *save_mean, const float *save_invstd, const float *dy,
                      float *dx, float *dgamma, float *dbeta);
  /* Batch norm with statistics shared over several processes (sync BN); the caller combines the
   * per-process numbers between the calls (an all-reduce) and forwards with bn_forward_infer, passing the
   * combined mean and biased variance as running_mean/var.
   * bn_stats: mean [c] and biased variance [c] of this process's x [n, c, hw] (written).
   * bn_backward_reduce: sum_g [c] = sum of g and sum_gxhat [c] = sum of g * (x - mean) * invstd over this
   *   process's batch (written; g = dy masked by y > 0 when d->relu); dgamma, dbeta [c] or NULL
   *   accumulate the same sums.
   * bn_backward_elemt: dx += gamma * invstd * (g - mean_g - (x - mean) * invstd * mean_gxhat), with
   *   mean_g, mean_gxhat [c] the sums over all processes divided by the total count (gamma NULL = 1). */
  void (*bn_stats)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, float *mean, float *var);
  void (*bn_backward_reduce)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                             const float *mean, const float *invstd, const float *dy, float *sum_g,
                             float *sum_gxhat, float *dgamma, float *dbeta);
  void (*bn_backward_elemt)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                            const float *gamma, const float *mean, const float *invstd, const float *dy,
                            const float *mean_g, const float *mean_gxhat, float *dx);

  /* Inference BN as a per-channel affine map: scale [c] = gamma / sqrt(var + eps), shift [c] = beta +
   * (bias - mean) * scale (gamma NULL = 1, beta NULL = 0, bias NULL = 0; bias [c] is a constant the BN's
   * input carries, e.g. a folded shift from an earlier layer), for a pointwise epilogue. */
  void (*bn_fold)(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *gamma, const float *beta,
                  const float *running_mean, const float *running_var, const float *bias, float *scale,
                  float *shift);
  /* y [rows, cols] = scale [rows] (per row) * x [rows, cols] (contiguous; y may alias x). */
  void (*scale_rows)(hsc_backend_ctx *ctx, int rows, int cols, const float *scale, const float *x, float *y);

  /* ReLU over `count` elements; y may alias x. backward uses y > 0 as the mask. */
  void (*relu_forward)(hsc_backend_ctx *ctx, size_t count, const float *x, float *y);
  void (*relu_backward)(hsc_backend_ctx *ctx, size_t count, const float *y, const float *dy, float *dx);

  /* SPOS channel split: x [n, c, hw] -> even [n, c/2, hw] (channels 0, 2, 4, ...: the pass-through half)
   * and odd [n, c/2, hw] (channels 1, 3, 5, ...: the main-branch half). c is even. */
  void (*split_forward)(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *even, float *odd);
  void (*split_backward)(hsc_backend_ctx *ctx, int n, int c, int hw, const float *deven, const float *dodd,
                         float *dx);
  /* Channel concatenation: a [n, ca, hw], b [n, cb, hw] -> y [n, ca + cb, hw]. */
  void (*concat_forward)(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *a, const float *b,
                         float *y);
  void (*concat_backward)(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *dy, float *da,
                          float *db);

  /* Global average pool: x [n, c, hw] -> y [n, c]. */
  void (*avgpool_forward)(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *y);
  void (*avgpool_backward)(hsc_backend_ctx *ctx, int n, int c, int hw, const float *dy, float *dx);

  /* Fully connected. */
  void (*linear_forward)(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                         const float *b, float *y);
  void (*linear_backward)(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db);

  /* Softmax cross-entropy with label smoothing (PyTorch's definition: target q = (1 - s) * onehot + s/k).
   * logits [n, k], labels [n] (int32, in [0, k)), probs [n, k] = softmax(logits), losses [n] per sample. */
  void (*xent_forward)(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                       float smoothing, float *probs, float *losses);
  /* dlogits [n, k] += scale * (probs - q); the mean loss over the batch is scale = 1/n. */
  void (*xent_backward)(hsc_backend_ctx *ctx, int n, int k, const float *probs, const int32_t *labels,
                        float smoothing, float scale, float *dlogits);
  /* counts [2] (int32, backend memory) = {top-1 hits, top-5 hits} over the batch; a label is within the
   * top k when fewer than k logits are strictly greater than its own (top-min(5, k) when k < 5; a NaN
   * label logit is a miss). */
  void (*accuracy)(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                   int32_t *counts);

  /* Optimizer, over the touched regions only (regions are host memory). */
  void (*sgd_update)(hsc_backend_ctx *ctx, const hsc_sgd_desc *o, const hsc_region *r, int nr, float *param,
                     const float *grad, float *mom);
  void (*zero_regions)(hsc_backend_ctx *ctx, const hsc_region *r, int nr, float *buf);
  /* Gather the regions of buf into one contiguous buffer (for all-reduce) and scatter back. */
  void (*pack_regions)(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *buf, float *packed);
  void (*unpack_regions)(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *packed, float *buf);

  /* Data-parallel collectives on backend memory. OPTIONAL: all three NULL in a backend without them (the
   * CPU one), and callers then go through host memory and MPI. comm_attach binds the context to comm
   * (collective: every rank of comm calls it; a later call replaces the binding); HSC_ERR_DEVICE with a
   * message when the device library cannot connect the ranks. allreduce_mean starts replacing buf [count]
   * by the mean over comm's ranks of their buf (the sum divided by the rank count), after the work already
   * queued; work queued after it runs alongside (the point: the all-reduce of the last layers' gradients
   * overlaps the backward of the first ones) and must not touch buf until comm_wait, after which queued work
   * sees every started mean. */
  hsc_status (*comm_attach)(hsc_backend_ctx *ctx, MPI_Comm comm, hsc_error *err);
  void (*allreduce_mean)(hsc_backend_ctx *ctx, float *buf, size_t count);
  void (*comm_wait)(hsc_backend_ctx *ctx);
} hsc_backend;

/* Number of floats the regions hold in total. */
size_t hsc_regions_count(const hsc_region *r, int nr);

/* The registry (src/backend/registry.c): the only place that knows which backends were built. */
const hsc_backend *hsc_backend_find(const char *name, hsc_error *err);
/* Comma-separated names of the backends in this build, e.g. "cpu,cuda". */
const char *hsc_backend_list(void);

#endif
