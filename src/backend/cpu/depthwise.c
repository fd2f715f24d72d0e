/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_depthwise_forward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x, const float *w, float *y) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)w;
  (void)y;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_depthwise_backward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x, const float *w, const float *dy, float *dx, float *dw) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)w;
  (void)dy;
  (void)dx;
  (void)dw;
  hsc_fatal("PLACEHOLDER not implemented");
}
