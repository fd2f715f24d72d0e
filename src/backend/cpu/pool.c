/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_avgpool_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *y) {
  (void)ctx;
  (void)n;
  (void)c;
  (void)hw;
  (void)x;
  (void)y;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_avgpool_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *dy, float *dx) {
  (void)ctx;
  (void)n;
  (void)c;
  (void)hw;
  (void)dy;
  (void)dx;
  hsc_fatal("PLACEHOLDER not implemented");
}
