/* Batch norm on the CUDA backend (backend.h bn_*): own kernels (kernels/bn.cu), not cuDNN's BN. The
 * supernet's BN has no affine parameters and cuDNN's needs a scale and bias tensor; its running variance
 * update and fused ReLU mask also differ from the CPU backend's PyTorch semantics, which these kernels
 * follow exactly (sums in double, the same shift, the same coefficients). This file maps the descriptor
 * and hands the kernels their scratch from the workspace arena. */
#include "cuda_internal.h"
#include "kernels.h"

static hsc_kbn kbn(const hsc_bn_desc *d) {
  return (hsc_kbn){.n = d->n,
                   .c = d->c,
                   .hw = d->hw,
                   .eps = d->eps,
                   .momentum = d->momentum,
                   .relu = d->relu,
                   .dx_assign = d->dx_assign};
}

static void *scratch(hsc_cuda_ctx *c, const hsc_bn_desc *d) {
  return hsc_cuda_workspace(c, hsc_k_bn_scratch_bytes(d->n, d->c, d->hw));
}

void hsc_cuda_bn_forward_train(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                               const float *beta, float *running_mean, float *running_var, float *y,
                               float *save_mean, float *save_invstd) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  const hsc_kbn k = kbn(d);
  HSC_CHECK_LAUNCH(hsc_k_bn_forward_train(c->stream, &k, x, gamma, beta, running_mean, running_var, y,
                                          save_mean, save_invstd, scratch(c, d)));
}

void hsc_cuda_bn_forward_infer(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                               const float *beta, const float *running_mean, const float *running_var,
                               float *y) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  const hsc_kbn k = kbn(d);
  HSC_CHECK_LAUNCH(
      hsc_k_bn_forward_infer(c->stream, &k, x, gamma, beta, running_mean, running_var, y, scratch(c, d)));
}

void hsc_cuda_bn_backward(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                          const float *gamma, const float *save_mean, const float *save_invstd,
                          const float *dy, float *dx, float *dgamma, float *dbeta) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (!dx && !dgamma && !dbeta) return;
  const hsc_kbn k = kbn(d);
  HSC_CHECK_LAUNCH(hsc_k_bn_backward(c->stream, &k, x, y, gamma, save_mean, save_invstd, dy, dx, dgamma,
                                     dbeta, scratch(c, d)));
}

void hsc_cuda_bn_stats(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, float *mean, float *var) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  const hsc_kbn k = kbn(d);
  HSC_CHECK_LAUNCH(hsc_k_bn_stats(c->stream, &k, x, mean, var, scratch(c, d)));
}

void hsc_cuda_bn_backward_reduce(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                 const float *mean, const float *invstd, const float *dy, float *sum_g,
                                 float *sum_gxhat, float *dgamma, float *dbeta) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  const hsc_kbn k = kbn(d);
  HSC_CHECK_LAUNCH(hsc_k_bn_backward_reduce(c->stream, &k, x, y, mean, invstd, dy, sum_g, sum_gxhat, dgamma,
                                            dbeta, scratch(c, d)));
}

void hsc_cuda_bn_backward_elemt(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                const float *gamma, const float *mean, const float *invstd, const float *dy,
                                const float *mean_g, const float *mean_gxhat, float *dx) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (!dx) return;
  const hsc_kbn k = kbn(d);
  HSC_CHECK_LAUNCH(hsc_k_bn_backward_elemt(c->stream, &k, x, y, gamma, mean, invstd, dy, mean_g, mean_gxhat,
                                           dx, scratch(c, d)));
}

void hsc_cuda_bn_fold(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *gamma, const float *beta,
                      const float *running_mean, const float *running_var, const float *bias, float *scale,
                      float *shift) {
  HSC_CHECK_LAUNCH(hsc_k_bn_fold(hsc_cuda(ctx)->stream, d->c, d->eps, gamma, beta, running_mean, running_var,
                                 bias, scale, shift));
}

void hsc_cuda_scale_rows(hsc_backend_ctx *ctx, int rows, int cols, const float *scale, const float *x,
                         float *y) {
  HSC_CHECK_LAUNCH(hsc_k_scale_rows(hsc_cuda(ctx)->stream, rows, cols, scale, x, y));
}
