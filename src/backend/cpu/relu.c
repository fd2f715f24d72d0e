/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_relu_forward(hsc_backend_ctx *ctx, size_t count, const float *x, float *y) {
  (void)ctx;
  (void)count;
  (void)x;
  (void)y;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_relu_backward(hsc_backend_ctx *ctx, size_t count, const float *y, const float *dy, float *dx) {
  (void)ctx;
  (void)count;
  (void)y;
  (void)dy;
  (void)dx;
  hsc_fatal("PLACEHOLDER not implemented");
}
