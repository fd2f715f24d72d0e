/* CPU backend internals: the context and the operator entry points that cpu_backend.c puts in the
 * backend table. One operator = one file pair of forward and backward (STYLE.md §3). */
#ifndef HSCONAS_CPU_H
#define HSCONAS_CPU_H

#include "hsconas/backend.h"

/* The CPU context behind hsc_backend_ctx. Scratch memory grows on demand and is reused across calls;
 * a context serves one host thread at a time. */
typedef struct {
  int threads;
  int pinned; /* operator threads bound to cores (hsc_backend_opts.pin) */
  float *scratch;
  size_t scratch_floats;
} hsc_cpu_ctx;

static inline hsc_cpu_ctx *hsc_cpu(hsc_backend_ctx *ctx) { return (hsc_cpu_ctx *)ctx; }

/* Returns scratch memory of at least `floats` floats (64-byte aligned), contents undefined. */
float *hsc_cpu_scratch(hsc_cpu_ctx *c, size_t floats);

/* Single-threaded sgemm on row-major matrices, C = alpha * op(A) op(B) + beta * C (cblas_sgemm with
 * OpenBLAS's own threads off: the operators parallelise over tiles with OpenMP themselves). */
void hsc_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc);

/* Range [lo, hi) of block b of nb over `len`; interior boundaries on multiples of 16 when the blocks are
 * wide enough (len / nb >= 64), so that tiles start on cache lines. */
void hsc_cpu_block_range(int len, int nb, int b, int *lo, int *hi);
/* C [m x n] = op(A) op(B) + beta C as one parallel product: C cut into up to `threads` blocks of at least
 * 8 rows (when m >= n) or 16 columns, one hsc_cpu_sgemm each. When bias [n] is non-NULL, C's rows are
 * first set to bias and beta is taken as 1. */
void hsc_cpu_gemm_par(int threads, int ta, int tb, int m, int n, int k, const float *a, int lda,
                      const float *b, int ldb, float beta, const float *bias, float *c, int ldc);

/* conv2d.c */
void hsc_cpu_conv2d_forward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                            const float *b, float *y);
void hsc_cpu_conv2d_backward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, float *db);
/* pointwise.c */
void hsc_cpu_pointwise_forward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                               const float *w, float *y);
void hsc_cpu_pointwise_backward(hsc_backend_ctx *ctx, const hsc_pointwise_desc *d, const float *x,
                                const float *w, const float *dy, float *dx, float *dw);
/* depthwise.c */
void hsc_cpu_depthwise_forward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                               const float *w, float *y);
void hsc_cpu_depthwise_backward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                                const float *w, const float *dy, float *dx, float *dw);
/* batchnorm.c */
void hsc_cpu_bn_forward_train(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                              const float *beta, float *running_mean, float *running_var, float *y,
                              float *save_mean, float *save_invstd);
void hsc_cpu_bn_forward_infer(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                              const float *beta, const float *running_mean, const float *running_var,
                              float *y);
void hsc_cpu_bn_backward(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                         const float *gamma, const float *save_mean, const float *save_invstd,
                         const float *dy, float *dx, float *dgamma, float *dbeta);
void hsc_cpu_bn_stats(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, float *mean, float *var);
void hsc_cpu_bn_backward_reduce(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                const float *mean, const float *invstd, const float *dy, float *sum_g,
                                float *sum_gxhat, float *dgamma, float *dbeta);
void hsc_cpu_bn_backward_elemt(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                               const float *gamma, const float *mean, const float *invstd, const float *dy,
                               const float *mean_g, const float *mean_gxhat, float *dx);
void hsc_cpu_bn_fold(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, const float *bias, float *scale,
                     float *shift);
void hsc_cpu_scale_rows(hsc_backend_ctx *ctx, int rows, int cols, const float *scale, const float *x,
                        float *y);
/* relu.c */
void hsc_cpu_relu_forward(hsc_backend_ctx *ctx, size_t count, const float *x, float *y);
void hsc_cpu_relu_backward(hsc_backend_ctx *ctx, size_t count, const float *y, const float *dy, float *dx);
/* shuffle.c: SPOS channel split and concat */
void hsc_cpu_split_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *even,
                           float *odd);
void hsc_cpu_split_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *deven, const float *dodd,
                            float *dx);
void hsc_cpu_concat_forward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *a,
                            const float *b, float *y);
void hsc_cpu_concat_backward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *dy, float *da,
                             float *db);
/* pool.c */
void hsc_cpu_avgpool_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *y);
void hsc_cpu_avgpool_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *dy, float *dx);
/* linear.c */
void hsc_cpu_linear_forward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                            const float *b, float *y);
void hsc_cpu_linear_backward(hsc_backend_ctx *ctx, const hsc_linear_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, float *dw, float *db);
/* loss.c */
void hsc_cpu_xent_forward(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          float smoothing, float *probs, float *losses);
void hsc_cpu_xent_backward(hsc_backend_ctx *ctx, int n, int k, const float *probs, const int32_t *labels,
                           float smoothing, float scale, float *dlogits);
void hsc_cpu_accuracy(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      int32_t *counts);
/* sgd.c */
void hsc_cpu_sgd_update(hsc_backend_ctx *ctx, const hsc_sgd_desc *o, const hsc_region *r, int nr,
                        float *param, const float *grad, float *mom);
void hsc_cpu_zero_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, float *buf);
void hsc_cpu_pack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *buf, float *packed);
void hsc_cpu_unpack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *packed,
                            float *buf);

#endif
