/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_conv2d_forward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w, const float *b, float *y) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)w;
  (void)b;
  (void)y;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_conv2d_backward(hsc_backend_ctx *ctx, const hsc_conv2d_desc *d, const float *x, const float *w, const float *dy, float *dx, float *dw, float *db) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)w;
  (void)dy;
  (void)dx;
  (void)dw;
  (void)db;
  hsc_fatal("PLACEHOLDER not implemented");
}
