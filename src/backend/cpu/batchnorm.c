/* Batch normalisation over (n, hw) per channel, on the leading c channels, with an optional ReLU after
 * the affine transform (PyTorch's BatchNorm2d followed by ReLU):
 *   training:  y = relu((x - mean) * invstd * gamma + beta), mean and the biased variance over the
 *              n * hw values of the channel, invstd = 1 / sqrt(var + eps); saves mean and invstd for the
 *              backward and updates running = (1 - momentum) * running + momentum * batch, with the
 *              unbiased variance var * m / (m - 1), m = n * hw (torch.nn.functional.batch_norm);
 *   inference: the same with running_mean and running_var in place of the batch statistics;
 *   backward:  with g = dy masked by y > 0 when fused with ReLU and xhat = (x - mean) * invstd,
 *              dbeta += sum g, dgamma += sum g xhat,
 *              dx += gamma * invstd * (g - mean(g) - xhat * mean(g xhat))   (gamma = 1 without affine).
 * The per-channel sums are accumulated in double: a channel holds 128 * 784 values in the supernet, where
 * float sums lose about log2(m) bits. The statistics take one pass (sums of x - x0 and its square, x0 a
 * sample of the channel, so the subtraction does not cancel); normalising and the backward's dx take a
 * second. Channels are split over OpenMP threads, each channel is computed by one thread in a fixed order,
 * so results do not depend on the thread count.
 * Cost: forward 2 reads of x and 1 write of y; backward 3 reads (x, y for the mask, dy) twice, and a
 * read-modify-write of dx. */
#include <assert.h>
#include <math.h>

#include "cpu.h"

/* Mean and biased variance of channel ci of x [n, c, hw]. Each row of hw values is summed in float (16
 * lanes wide; a row is at most a few thousand terms, shifted by x0 so that the square does not cancel) and
 * the rows are added in double: summing every term in double ran at half the vector width and made BN the
 * largest cost of a training step. */
static void bn_channel_stats(const hsc_bn_desc *d, const float *x, int ci, double *mean, double *var) {
  const size_t hw = (size_t)d->hw;
  const float x0 = x[(size_t)ci * hw];
  double s = 0.0, s2 = 0.0;
  for (int n = 0; n < d->n; n++) {
    const float *xp = x + ((size_t)n * d->c + ci) * hw;
    float rs = 0.0f, rs2 = 0.0f;
#pragma omp simd reduction(+ : rs, rs2)
    for (size_t i = 0; i < hw; i++) {
      const float v = xp[i] - x0;
      rs += v;
      rs2 += v * v;
    }
    s += rs;
    s2 += rs2;
  }
  const double m = (double)d->n * d->hw, ms = s / m;
  *mean = x0 + ms;
  *var = fmax(s2 / m - ms * ms, 0.0);
}

/* y = relu?((x - mean) * scale + beta) over channel ci; y may alias x. */
static void bn_channel_apply(const hsc_bn_desc *d, const float *x, int ci, float mean, float scale,
                             float beta, float *y) {
  const size_t hw = (size_t)d->hw;
  for (int n = 0; n < d->n; n++) {
    const size_t off = ((size_t)n * d->c + ci) * hw;
    const float *xp = x + off;
    float *yp = y + off;
    if (d->relu)
      for (size_t i = 0; i < hw; i++) {
        const float v = (xp[i] - mean) * scale + beta;
        yp[i] = v > 0.0f ? v : 0.0f;
      }
    else
      for (size_t i = 0; i < hw; i++) yp[i] = (xp[i] - mean) * scale + beta;
  }
}

/* x, y [n, c, hw]; gamma, beta, running_mean, running_var [c] or NULL; save_mean, save_invstd [c]. */
void hsc_cpu_bn_forward_train(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                              const float *beta, float *running_mean, float *running_var, float *y,
                              float *save_mean, float *save_invstd) {
  const int threads = hsc_cpu(ctx)->threads;
  const double m = (double)d->n * d->hw;
  /* The unbiased variance needs two values per channel (PyTorch refuses to train on fewer). */
  assert(m > 1.0 || !running_var);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int ci = 0; ci < d->c; ci++) {
    double mean, var;
    bn_channel_stats(d, x, ci, &mean, &var);
    const double invstd = 1.0 / sqrt(var + (double)d->eps);
    save_mean[ci] = (float)mean;
    save_invstd[ci] = (float)invstd;
    const double mom = d->momentum;
    if (running_mean) running_mean[ci] = (float)((1.0 - mom) * running_mean[ci] + mom * mean);
    if (running_var) running_var[ci] = (float)((1.0 - mom) * running_var[ci] + mom * var * m / (m - 1.0));
    const double scale = gamma ? gamma[ci] * invstd : invstd;
    bn_channel_apply(d, x, ci, (float)mean, (float)scale, beta ? beta[ci] : 0.0f, y);
  }
}

/* x, y [n, c, hw]; gamma, beta [c] or NULL; running_mean, running_var [c]. */
void hsc_cpu_bn_forward_infer(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                              const float *beta, const float *running_mean, const float *running_var,
                              float *y) {
  const int threads = hsc_cpu(ctx)->threads;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int ci = 0; ci < d->c; ci++) {
    const double invstd = 1.0 / sqrt((double)running_var[ci] + (double)d->eps);
    const double scale = gamma ? gamma[ci] * invstd : invstd;
    bn_channel_apply(d, x, ci, running_mean[ci], (float)scale, beta ? beta[ci] : 0.0f, y);
  }
}

/* Sums over channel ci: *sg = sum g, *sgx = sum g (x - mean), g = dy zeroed where the fused ReLU cut. */
static void bn_channel_reduce(const hsc_bn_desc *d, const float *x, const float *y, const float *dy, int ci,
                              float mean, double *sg_out, double *sgx_out) {
  const size_t hw = (size_t)d->hw;
  double sg = 0.0, sgx = 0.0;
  for (int n = 0; n < d->n; n++) {
    const size_t off = ((size_t)n * d->c + ci) * hw;
    const float *xp = x + off, *dyp = dy + off;
    if (d->relu) {
      const float *yp = y + off;
      /* dy is loaded before the select, unconditionally (`y > 0 ? dy[i] : 0` is a conditional load
       * the compiler may not speculate), and summed in float per row, added to the double totals
       * once per row: with a double accumulator behind the select gcc's vector loop ran at scalar
       * speed, 7x slower than without ReLU. A row is at most a few thousand terms over the lanes. */
      float rs = 0.0f, rsx = 0.0f;
#pragma omp simd reduction(+ : rs, rsx)
      for (size_t i = 0; i < hw; i++) {
        const float dyv = dyp[i];
        const float g = yp[i] > 0.0f ? dyv : 0.0f;
        rs += g;
        rsx += g * (xp[i] - mean);
      }
      sg += rs;
      sgx += rsx;
    } else {
      float rs = 0.0f, rsx = 0.0f; /* float per row, double across rows: see bn_channel_stats */
#pragma omp simd reduction(+ : rs, rsx)
      for (size_t i = 0; i < hw; i++) {
        rs += dyp[i];
        rsx += dyp[i] * (xp[i] - mean);
      }
      sg += rs;
      sgx += rsx;
    }
  }
  *sg_out = sg;
  *sgx_out = sgx;
}

/* dx += k g + a (x - mean) + b over channel ci. */
static void bn_channel_dx(const hsc_bn_desc *d, const float *x, const float *y, const float *dy, int ci,
                          float mean, float kf, float a, float b, float *dx) {
  const size_t hw = (size_t)d->hw;
  for (int n = 0; n < d->n; n++) {
    const size_t off = ((size_t)n * d->c + ci) * hw;
    const float *xp = x + off, *dyp = dy + off, *yp = d->relu ? y + off : NULL;
    float *dxp = dx + off;
    if (d->relu)
      for (size_t i = 0; i < hw; i++) {
        const float dyv = dyp[i]; /* unconditional load: see bn_channel_reduce */
        const float g = yp[i] > 0.0f ? dyv : 0.0f;
        dxp[i] += kf * g + a * (xp[i] - mean) + b;
      }
    else
      for (size_t i = 0; i < hw; i++) dxp[i] += kf * dyp[i] + a * (xp[i] - mean) + b;
  }
}

/* x, dy, dx [n, c, hw]; y [n, c, hw] (read only with d->relu); gamma [c] or NULL; save_mean,
 * save_invstd [c] from the training forward; dgamma, dbeta [c] or NULL. */
void hsc_cpu_bn_backward(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                         const float *gamma, const float *save_mean, const float *save_invstd,
                         const float *dy, float *dx, float *dgamma, float *dbeta) {
  assert(!d->relu || y);
  if (!dx && !dgamma && !dbeta) return;
  const int threads = hsc_cpu(ctx)->threads;
  const double m = (double)d->n * d->hw;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int ci = 0; ci < d->c; ci++) {
    const float mean = save_mean[ci];
    const double invstd = save_invstd[ci];
    double sg, sgx;
    bn_channel_reduce(d, x, y, dy, ci, mean, &sg, &sgx);
    const double sgxhat = sgx * invstd; /* sum g xhat */
    if (dbeta) dbeta[ci] += (float)sg;
    if (dgamma) dgamma[ci] += (float)sgxhat;
    if (!dx) continue;
    /* dx = k * (g - mean(g) - (x - mean) * invstd * mean(g xhat)) = k * g + a * (x - mean) + b. */
    const double k = (gamma ? gamma[ci] : 1.0) * invstd;
    bn_channel_dx(d, x, y, dy, ci, mean, (float)k, (float)(-k * invstd * sgxhat / m), (float)(-k * sg / m),
                  dx);
  }
}

/* Sync BN pieces (backend.h). x [n, c, hw]; mean, var [c] written. */
void hsc_cpu_bn_stats(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, float *mean, float *var) {
  const int threads = hsc_cpu(ctx)->threads;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int ci = 0; ci < d->c; ci++) {
    double mu, v;
    bn_channel_stats(d, x, ci, &mu, &v);
    mean[ci] = (float)mu;
    var[ci] = (float)v;
  }
}

/* x, y, dy [n, c, hw]; mean, invstd [c]; sum_g, sum_gxhat [c] written; dgamma, dbeta [c] or NULL (+=). */
void hsc_cpu_bn_backward_reduce(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                const float *mean, const float *invstd, const float *dy, float *sum_g,
                                float *sum_gxhat, float *dgamma, float *dbeta) {
  assert(!d->relu || y);
  const int threads = hsc_cpu(ctx)->threads;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int ci = 0; ci < d->c; ci++) {
    double sg, sgx;
    bn_channel_reduce(d, x, y, dy, ci, mean[ci], &sg, &sgx);
    const double sgxhat = sgx * (double)invstd[ci];
    sum_g[ci] = (float)sg;
    sum_gxhat[ci] = (float)sgxhat;
    if (dbeta) dbeta[ci] += (float)sg;
    if (dgamma) dgamma[ci] += (float)sgxhat;
  }
}

/* x, y, dy, dx [n, c, hw]; gamma [c] or NULL; mean, invstd, mean_g, mean_gxhat [c]. */
void hsc_cpu_bn_backward_elemt(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                               const float *gamma, const float *mean, const float *invstd, const float *dy,
                               const float *mean_g, const float *mean_gxhat, float *dx) {
  assert(!d->relu || y);
  const int threads = hsc_cpu(ctx)->threads;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int ci = 0; ci < d->c; ci++) {
    const double is = invstd[ci], k = (gamma ? gamma[ci] : 1.0) * is;
    bn_channel_dx(d, x, y, dy, ci, mean[ci], (float)k, (float)(-k * is * mean_gxhat[ci]),
                  (float)(-k * mean_g[ci]), dx);
  }
}

/* gamma, beta, running_mean, running_var [c] (gamma, beta may be NULL); scale, shift [c] written. */
void hsc_cpu_bn_fold(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, float *scale, float *shift) {
  (void)ctx;
  for (int ci = 0; ci < d->c; ci++) {
    const double invstd = 1.0 / sqrt((double)running_var[ci] + (double)d->eps);
    const double a = gamma ? gamma[ci] * invstd : invstd;
    scale[ci] = (float)a;
    shift[ci] = (float)((beta ? beta[ci] : 0.0) - running_mean[ci] * a);
  }
}
