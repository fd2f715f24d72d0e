/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_sgd_update(hsc_backend_ctx *ctx, const hsc_sgd_desc *o, const hsc_region *r, int nr, float *param, const float *grad, float *mom) {
  (void)ctx;
  (void)o;
  (void)r;
  (void)nr;
  (void)param;
  (void)grad;
  (void)mom;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_zero_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, float *buf) {
  (void)ctx;
  (void)r;
  (void)nr;
  (void)buf;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_pack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *buf, float *packed) {
  (void)ctx;
  (void)r;
  (void)nr;
  (void)buf;
  (void)packed;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_unpack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *packed, float *buf) {
  (void)ctx;
  (void)r;
  (void)nr;
  (void)packed;
  (void)buf;
  hsc_fatal("PLACEHOLDER not implemented");
}
