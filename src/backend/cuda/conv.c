/* General 2-D convolution on cuDNN (backend.h conv2d_*): the stem, and any shape the descriptor allows.
 *
 * The algorithms of a shape are chosen once, by timing them (cudnnFind*, which uses its own buffers), and
 * cached per context (cuda_internal.h); the workspace comes from the context's one arena. The math type
 * is CUDNN_FMA_MATH: plain float32, no TF32 tensor cores, so the results stay within float rounding of
 * the CPU backend (the tests hold them to it) and the gradients match PyTorch's float32 reference.
 * Backward accumulates (beta = 1) into dx, dw and db, as every backward in this project. */
#include <string.h>

#include "cuda_internal.h"

/* Algorithms that need more workspace than this are passed over (cuDNN lists them by time; a faster one
 * that wants gigabytes would crowd out activations at batch 256). */
#define CONV_WORKSPACE_MAX ((size_t)1 << 30)

static const float one = 1.0f, zero = 0.0f;

hsc_status hsc_cuda_conv_init(hsc_cuda_ctx *c, hsc_error *err) {
  HSC_TRY_CUDNN(err, cudnnCreateTensorDescriptor(&c->xdesc));
  HSC_TRY_CUDNN(err, cudnnCreateTensorDescriptor(&c->ydesc));
  HSC_TRY_CUDNN(err, cudnnCreateTensorDescriptor(&c->bdesc));
  HSC_TRY_CUDNN(err, cudnnCreateFilterDescriptor(&c->wdesc));
  HSC_TRY_CUDNN(err, cudnnCreateConvolutionDescriptor(&c->cdesc));
  return HSC_OK;
fail:
  return HSC_ERR_DEVICE;
}

void hsc_cuda_conv_free(hsc_cuda_ctx *c) {
  if (c->cdesc) HSC_CHECK_CUDNN(cudnnDestroyConvolutionDescriptor(c->cdesc));
  if (c->wdesc) HSC_CHECK_CUDNN(cudnnDestroyFilterDescriptor(c->wdesc));
  if (c->bdesc) HSC_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->bdesc));
  if (c->ydesc) HSC_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->ydesc));
  if (c->xdesc) HSC_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->xdesc));
}

/* Sets the context's descriptors to d's shape: x [n, cin, h, w], w [cout, cin/groups, kh, kw],
 * y [n, cout, ho, wo], b [1, cout, 1, 1]. */
static void set_descs(hsc_cuda_ctx *c, const hsc_conv2d_desc *d) {
  const int ho = hsc_conv2d_out_h(d), wo = hsc_conv2d_out_w(d);
  HSC_CHECK_CUDNN(
      cudnnSetTensor4dDescriptor(c->xdesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cin, d->h, d->w));
  HSC_CHECK_CUDNN(
      cudnnSetTensor4dDescriptor(c->ydesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cout, ho, wo));
  HSC_CHECK_CUDNN(
      cudnnSetTensor4dDescriptor(c->bdesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d->cout, 1, 1));
  HSC_CHECK_CUDNN(cudnnSetFilter4dDescriptor(c->wdesc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->cout,
                                             d->cin / d->groups, d->kh, d->kw));
  HSC_CHECK_CUDNN(cudnnSetConvolution2dDescriptor(c->cdesc, d->pad, d->pad, d->stride, d->stride, 1, 1,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  HSC_CHECK_CUDNN(cudnnSetConvolutionGroupCount(c->cdesc, d->groups));
  HSC_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cdesc, CUDNN_FMA_MATH));
}

static int same_shape(const hsc_conv2d_desc *a, const hsc_conv2d_desc *b) {
  return a->n == b->n && a->cin == b->cin && a->h == b->h && a->w == b->w && a->cout == b->cout &&
         a->kh == b->kh && a->kw == b->kw && a->stride == b->stride && a->pad == b->pad &&
         a->groups == b->groups;
}

/* Picks the fastest algorithm of a Find result that ran and fits CONV_WORKSPACE_MAX. Returns its index or
 * -1. (The three perf structs share these two fields' layout but not a type, hence the macro.) */
#define PICK(perf, count, out)                                                                              \
  do {                                                                                                      \
    (out) = -1;                                                                                             \
    for (int pick_i_ = 0; pick_i_ < (count); pick_i_++)                                                     \
      if ((perf)[pick_i_].status == CUDNN_STATUS_SUCCESS && (perf)[pick_i_].memory <= CONV_WORKSPACE_MAX) { \
        (out) = pick_i_;                                                                                    \
        break;                                                                                              \
      }                                                                                                     \
  } while (0)

/* The plan of the shape the descriptors are set to, with the forward (and, for `backward`, the backward)
 * algorithms chosen. */
static hsc_cuda_conv_plan *plan_for(hsc_cuda_ctx *c, const hsc_conv2d_desc *d, int backward) {
  hsc_cuda_conv_plan *p = NULL;
  for (int i = 0; i < c->nplans; i++)
    if (same_shape(&c->plans[i].d, d)) p = &c->plans[i];
  if (!p) {
    if (c->nplans < HSC_CUDA_CONV_PLANS) {
      p = &c->plans[c->nplans++];
    } else {
      p = &c->plans[c->next_plan];
      c->next_plan = (c->next_plan + 1) % HSC_CUDA_CONV_PLANS;
    }
    *p = (hsc_cuda_conv_plan){.d = *d};
  }
  if (!p->have_fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0, k;
    HSC_CHECK_CUDNN(cudnnFindConvolutionForwardAlgorithm(c->cudnn, c->xdesc, c->wdesc, c->cdesc, c->ydesc,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
    PICK(perf, got, k);
    if (k < 0)
      hsc_fatal("cuDNN found no forward algorithm for conv %dx%d, %d -> %d channels", d->kh, d->kw, d->cin,
                d->cout);
    p->fwd = perf[k].algo;
    p->fwd_bytes = perf[k].memory;
    p->have_fwd = 1;
  }
  if (backward && !p->have_bwd) {
    cudnnConvolutionBwdDataAlgoPerf_t dperf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnConvolutionBwdFilterAlgoPerf_t fperf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0, k;
    HSC_CHECK_CUDNN(cudnnFindConvolutionBackwardDataAlgorithm(c->cudnn, c->wdesc, c->ydesc, c->cdesc,
                                                              c->xdesc, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                              &got, dperf));
    PICK(dperf, got, k);
    if (k < 0) hsc_fatal("cuDNN found no backward-data algorithm for conv %dx%d", d->kh, d->kw);
    p->bwd_data = dperf[k].algo;
    p->data_bytes = dperf[k].memory;
    HSC_CHECK_CUDNN(
        cudnnFindConvolutionBackwardFilterAlgorithm(c->cudnn, c->xdesc, c->ydesc, c->cdesc, c->wdesc,
                                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, fperf));
    PICK(fperf, got, k);
    if (k < 0) hsc_fatal("cuDNN found no backward-filter algorithm for conv %dx%d", d->kh, d->kw);
    p->bwd_filter = fperf[k].algo;
    p->filter_bytes = fperf[k].memory;
    p->have_bwd = 1;
  }
  return p;
}

/* x [n, cin, h, w], w [cout, cin/groups, kh, kw], b [cout] or NULL -> y [n, cout, ho, wo]. */
void hsc_cuda_conv2d_forward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                             const float *b, float *y) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (d->n == 0) return;
  set_descs(c, d);
  const hsc_cuda_conv_plan *p = plan_for(c, d, 0);
  void *ws = p->fwd_bytes ? hsc_cuda_workspace(c, p->fwd_bytes) : NULL;
  HSC_CHECK_CUDNN(cudnnConvolutionForward(c->cudnn, &one, c->xdesc, x, c->wdesc, w, c->cdesc, p->fwd, ws,
                                          p->fwd_bytes, &zero, c->ydesc, y));
  if (b) HSC_CHECK_CUDNN(cudnnAddTensor(c->cudnn, &one, c->bdesc, b, &one, c->ydesc, y));
}

/* dy [n, cout, ho, wo]; dx like x, dw like w, db [cout] accumulate (+=); NULL ones are skipped. */
void hsc_cuda_conv2d_backward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *db) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (d->n == 0 || (!dx && !dw && !db)) return;
  set_descs(c, d);
  const hsc_cuda_conv_plan *p = plan_for(c, d, 1);
  if (dx) {
    void *ws = p->data_bytes ? hsc_cuda_workspace(c, p->data_bytes) : NULL;
    HSC_CHECK_CUDNN(cudnnConvolutionBackwardData(c->cudnn, &one, c->wdesc, w, c->ydesc, dy, c->cdesc,
                                                 p->bwd_data, ws, p->data_bytes, &one, c->xdesc, dx));
  }
  if (dw) {
    void *ws = p->filter_bytes ? hsc_cuda_workspace(c, p->filter_bytes) : NULL;
    HSC_CHECK_CUDNN(cudnnConvolutionBackwardFilter(c->cudnn, &one, c->xdesc, x, c->ydesc, dy, c->cdesc,
                                                   p->bwd_filter, ws, p->filter_bytes, &one, c->wdesc, dw));
  }
  if (db) HSC_CHECK_CUDNN(cudnnConvolutionBackwardBias(c->cudnn, &one, c->ydesc, dy, &one, c->bdesc, db));
}
