/* The CUDA backend's context and what its files share (src/backend/cuda/ only).
 *
 * One context = one device, one compute stream (every operator queues there, in order) plus two side
 * streams: `copy` for host -> device input through pinned staging buffers, `comm` for NCCL. The side
 * streams are ordered against the compute stream with events, so callers never see them. */
#ifndef HSCONAS_CUDA_INTERNAL_H
#define HSCONAS_CUDA_INTERNAL_H

#include "cuda_check.h"
#include "hsconas/backend.h"

/* cuDNN algorithms of one convolution shape, chosen once (cudnnFind*, which times them) and cached. */
typedef struct {
  hsc_conv2d_desc d; /* the key */
  int have_fwd, have_bwd;
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  size_t fwd_bytes, data_bytes, filter_bytes; /* workspace each needs */
} hsc_cuda_conv_plan;

/* The supernet has one general convolution (the stem) and a few shapes per batch size (training, eval,
 * profiling at batch 1); when more appear, the oldest plan is replaced. */
enum { HSC_CUDA_CONV_PLANS = 16, HSC_CUDA_STAGES = 2 };

typedef struct {
  int device;
  int device_count;
  struct cudaDeviceProp prop;
  cudaStream_t stream;
  cudnnHandle_t cudnn;
  cublasHandle_t cublas;
  /* The one workspace arena (DESIGN.md §6): cuDNN workspaces, BN partial sums, the pointwise backward's
   * transposed activations. Grown on demand, never shrunk; one operator uses it at a time (the stream
   * orders them). */
  void *workspace;
  size_t workspace_bytes;
  /* cuDNN descriptors, re-set for each call's shape. */
  cudnnTensorDescriptor_t xdesc, ydesc, bdesc;
  cudnnFilterDescriptor_t wdesc;
  cudnnConvolutionDescriptor_t cdesc;
  hsc_cuda_conv_plan plans[HSC_CUDA_CONV_PLANS];
  int nplans, next_plan;
  /* Input pipeline: pinned staging buffers used in turn, each with the event of its last copy out. */
  cudaStream_t copy_stream;
  void *stage[HSC_CUDA_STAGES];
  size_t stage_bytes[HSC_CUDA_STAGES];
  cudaEvent_t staged[HSC_CUDA_STAGES];
  int next_stage;
  cudaEvent_t queued; /* recorded on the compute stream when a side stream must wait for it */
  /* NCCL data parallelism (nccl.c): the communicator of the attached MPI communicator, on its stream. */
  cudaStream_t comm_stream;
  cudaEvent_t reduced;
  ncclComm_t nccl;
  int nccl_size;
} hsc_cuda_ctx;

static inline hsc_cuda_ctx *hsc_cuda(hsc_backend_ctx *ctx) { return (hsc_cuda_ctx *)ctx; }

/* At least `bytes` of the workspace arena (256-byte aligned). Growing it waits for the stream (queued work
 * may still use the old arena) and is fatal when the device is out of memory. */
void *hsc_cuda_workspace(hsc_cuda_ctx *c, size_t bytes);

/* conv.c */
void hsc_cuda_conv_free(hsc_cuda_ctx *c);
hsc_status hsc_cuda_conv_init(hsc_cuda_ctx *c, hsc_error *err);
void hsc_cuda_conv2d_forward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                             const float *b, float *y);
void hsc_cuda_conv2d_backward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *db);

/* gemm.c */
void hsc_cuda_pointwise_forward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                                const float *w, float *y);
void hsc_cuda_pointwise_backward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                                 const float *w, const float *dy, float *dx, float *dw);
void hsc_cuda_linear_forward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                             const float *b, float *y);
void hsc_cuda_linear_backward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *db);

/* bn.c */
void hsc_cuda_bn_forward_train(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                               const float *beta, float *running_mean, float *running_var, float *y,
                               float *save_mean, float *save_invstd);
void hsc_cuda_bn_forward_infer(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                               const float *beta, const float *running_mean, const float *running_var,
                               float *y);
void hsc_cuda_bn_backward(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                          const float *gamma, const float *save_mean, const float *save_invstd,
                          const float *dy, float *dx, float *dgamma, float *dbeta);
void hsc_cuda_bn_stats(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, float *mean, float *var);
void hsc_cuda_bn_backward_reduce(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                 const float *mean, const float *invstd, const float *dy, float *sum_g,
                                 float *sum_gxhat, float *dgamma, float *dbeta);
void hsc_cuda_bn_backward_elemt(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                const float *gamma, const float *mean, const float *invstd, const float *dy,
                                const float *mean_g, const float *mean_gxhat, float *dx);
void hsc_cuda_bn_fold(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *gamma, const float *beta,
                      const float *running_mean, const float *running_var, const float *bias, float *scale,
                      float *shift);
void hsc_cuda_scale_rows(hsc_backend_ctx *ctx, int rows, int cols, const float *scale, const float *x,
                         float *y);

/* nccl.c */
hsc_status hsc_cuda_comm_attach(hsc_backend_ctx *ctx, MPI_Comm comm, hsc_error *err);
void hsc_cuda_allreduce_mean(hsc_backend_ctx *ctx, float *buf, size_t count);
void hsc_cuda_comm_wait(hsc_backend_ctx *ctx);
void hsc_cuda_comm_free(hsc_cuda_ctx *c);

#endif
