/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_split_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *even, float *odd) {
  (void)ctx;
  (void)n;
  (void)c;
  (void)hw;
  (void)x;
  (void)even;
  (void)odd;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_split_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *deven, const float *dodd, float *dx) {
  (void)ctx;
  (void)n;
  (void)c;
  (void)hw;
  (void)deven;
  (void)dodd;
  (void)dx;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_concat_forward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *a, const float *b, float *y) {
  (void)ctx;
  (void)n;
  (void)ca;
  (void)cb;
  (void)hw;
  (void)a;
  (void)b;
  (void)y;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_concat_backward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *dy, float *da, float *db) {
  (void)ctx;
  (void)n;
  (void)ca;
  (void)cb;
  (void)hw;
  (void)dy;
  (void)da;
  (void)db;
  hsc_fatal("PLACEHOLDER not implemented");
}
