/* PLACEHOLDER: replaced by the real implementation. */
#include "cpu.h"

void hsc_cpu_xent_forward(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels, float smoothing, float *probs, float *losses) {
  (void)ctx;
  (void)n;
  (void)k;
  (void)logits;
  (void)labels;
  (void)smoothing;
  (void)probs;
  (void)losses;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_xent_backward(hsc_backend_ctx *ctx, int n, int k, const float *probs, const int32_t *labels, float smoothing, float scale, float *dlogits) {
  (void)ctx;
  (void)n;
  (void)k;
  (void)probs;
  (void)labels;
  (void)smoothing;
  (void)scale;
  (void)dlogits;
  hsc_fatal("PLACEHOLDER not implemented");
}

void hsc_cpu_accuracy(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels, int32_t *counts) {
  (void)ctx;
  (void)n;
  (void)k;
  (void)logits;
  (void)labels;
  (void)counts;
  hsc_fatal("PLACEHOLDER not implemented");
}
