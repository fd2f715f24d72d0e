/* Softmax cross-entropy with label smoothing, and top-1 / top-5 accuracy. Cost O(n k) with an exp per
 * logit; small next to the network, so the point here is numerical care, not speed. */
#include <assert.h>
#include <math.h>

#include "cpu.h"

/* Below this many logits the loops run on the calling thread. Each logit costs an exp (tens of ns), so
 * the break-even with an OpenMP fork is lower than for the copy operators. */
enum { LOSS_PARALLEL_MIN = 1 << 12 };

/* logits [n, k], labels [n] (int32, in [0, k)) -> probs [n, k] = softmax(logits), losses [n].
 * PyTorch's CrossEntropyLoss(label_smoothing = s): target q = (1 - s) onehot(label) + s / k, loss
 * -sum_j q_j log p_j = -(1 - s) log p_label - (s / k) sum_j log p_j. log p_j = z_j - max - lse with
 * lse = log sum_j exp(z_j - max): subtracting the row maximum keeps every exp in (0, 1], and the sums
 * are double so that a 1000-way softmax loses nothing to float accumulation. */
void hsc_cpu_xent_forward(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          float smoothing, float *probs, float *losses) {
  assert(n >= 0 && k > 0);
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  const double s = smoothing;
#pragma omp parallel for num_threads(c->threads) if ((long)n * k > LOSS_PARALLEL_MIN) schedule(static)
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * k;
    float *p = probs + (size_t)i * k;
    int32_t label = labels[i];
    assert(label >= 0 && label < k);
    float zmax = z[0];
    for (int j = 1; j < k; j++) zmax = z[j] > zmax ? z[j] : zmax;
    double sum_exp = 0.0, sum_shift = 0.0; /* sum_shift = sum_j (z_j - max) */
    for (int j = 0; j < k; j++) {
      double d = (double)z[j] - zmax;
      sum_exp += exp(d);
      sum_shift += d;
    }
    double lse = log(sum_exp);
    double inv = 1.0 / sum_exp;
    for (int j = 0; j < k; j++) p[j] = (float)(exp((double)z[j] - zmax) * inv);
    double logp_label = (double)z[label] - zmax - lse;
    double sum_logp = sum_shift - (double)k * lse;
    losses[i] = (float)(-(1.0 - s) * logp_label - s / k * sum_logp);
  }
}

/* probs [n, k] (from xent_forward), labels [n] -> dlogits [n, k] += scale (probs - q), the gradient of
 * scale * sum_i loss_i (scale = 1/n for the batch mean). dlogits NULL: nothing to do. */
void hsc_cpu_xent_backward(hsc_backend_ctx *ctx, int n, int k, const float *probs, const int32_t *labels,
                           float smoothing, float scale, float *dlogits) {
  assert(n >= 0 && k > 0);
  if (!dlogits) return;
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  const float q_other = smoothing / (float)k, q_label = 1.0f - smoothing + q_other;
#pragma omp parallel for num_threads(c->threads) if ((long)n * k > LOSS_PARALLEL_MIN) schedule(static)
  for (int i = 0; i < n; i++) {
    const float *p = probs + (size_t)i * k;
    float *d = dlogits + (size_t)i * k;
    int32_t label = labels[i];
    assert(label >= 0 && label < k);
#pragma omp simd
    for (int j = 0; j < k; j++) d[j] += scale * (p[j] - (j == label ? q_label : q_other));
  }
}

/* logits [n, k], labels [n] -> counts [2] = {top-1 hits, top-5 hits} (overwritten). The label is within
 * the top m (m = min(5, k): with fewer than 5 classes every label is) when fewer than m logits are
 * strictly greater than its own, so a tie counts in the label's favour. A NaN label logit is a miss (no
 * comparison with NaN is true, so it would otherwise count as top-1): a diverged network must not score. */
void hsc_cpu_accuracy(hsc_backend_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      int32_t *counts) {
  assert(n >= 0 && k > 0);
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  const int m5 = k < 5 ? k : 5;
  int32_t top1 = 0, top5 = 0;
#pragma omp parallel for num_threads(c->threads) if ((long)n * k > LOSS_PARALLEL_MIN) schedule(static) \
    reduction(+ : top1, top5)
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * k;
    int32_t label = labels[i];
    assert(label >= 0 && label < k);
    float zl = z[label];
    if (isnan(zl)) continue;
    int greater = 0;
#pragma omp simd reduction(+ : greater)
    for (int j = 0; j < k; j++) greater += z[j] > zl;
    top1 += greater < 1;
    top5 += greater < m5;
  }
  counts[0] = top1;
  counts[1] = top5;
}
