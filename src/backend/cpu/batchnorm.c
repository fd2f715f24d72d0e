/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_bn_forward_train(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma, const float *beta, float *running_mean, float *running_var, float *y, float *save_mean, float *save_invstd) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)gamma;
  (void)beta;
  (void)running_mean;
  (void)running_var;
  (void)y;
  (void)save_mean;
  (void)save_invstd;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_bn_forward_infer(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma, const float *beta, const float *running_mean, const float *running_var, float *y) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)gamma;
  (void)beta;
  (void)running_mean;
  (void)running_var;
  (void)y;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_bn_backward(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y, const float *gamma, const float *save_mean, const float *save_invstd, const float *dy, float *dx, float *dgamma, float *dbeta) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)y;
  (void)gamma;
  (void)save_mean;
  (void)save_invstd;
  (void)dy;
  (void)dx;
  (void)dgamma;
  (void)dbeta;
  hsc_fatal("PLACEHOLDER not implemented");
}
