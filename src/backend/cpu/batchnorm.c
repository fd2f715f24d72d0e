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
 * second. Groups of channels are split over OpenMP threads, each channel is computed by one thread in a
 * fixed order, so results do not depend on the thread count.
 * Cost: forward 2 reads of x and 1 write of y; backward 3 reads (x, y for the mask, dy) twice, and a
 * read-modify-write of dx. */
#include <assert.h>
#include <math.h>
#include <omp.h>

#include "cpu.h"

/* Channels are processed in groups of G consecutive ones, image by image: for image n the group's rows
 * are one contiguous run of G * hw floats. Walking one channel at a time instead reads rows of hw floats
 * strided c * hw apart, and at 7x7 (hw = 49: 196 bytes) most of the time went to starting rows. G keeps a
 * group's data near 2^16 floats per tensor so that the second pass (normalise, dx) finds it in L2.
 * Within a channel the order of every sum is the same as one channel at a time (rows in image order), so
 * results do not depend on G or on the thread count. */
enum { BN_GROUP_FLOATS = 1 << 16, BN_GROUP_MAX = 64 };

/* The channels of the calling OpenMP thread: its share of c by the backend's one rule
 * (hsc_cpu_block_range), walked in groups (a group per thread-loop iteration would leave a thread idle
 * when the groups are few: 3 groups of 10 channels on 2 threads). */
static void thread_channels(int c, int *lo, int *hi) {
  hsc_cpu_block_range(c, omp_get_num_threads(), omp_get_thread_num(), lo, hi);
}

static int bn_group(const hsc_bn_desc *d) {
  const long per = (long)d->n * d->hw;
  const long g = per >= BN_GROUP_FLOATS ? 1 : BN_GROUP_FLOATS / per;
  return g > BN_GROUP_MAX ? BN_GROUP_MAX : (int)g;
}

/* Row sums of xp[0..hw) - x0 and of its square, in float (16 lanes; a row is at most a few thousand terms,
 * shifted by a sample x0 of its channel so that the square does not cancel); the caller adds rows in
 * double. Summing every term in double ran at half the vector width and made BN the largest cost of a
 * training step. */
static void row_stats(const float *xp, size_t hw, float x0, double *s, double *s2) {
  float rs = 0.0f, rs2 = 0.0f;
#pragma omp simd reduction(+ : rs, rs2)
  for (size_t i = 0; i < hw; i++) {
    const float v = xp[i] - x0;
    rs += v;
    rs2 += v * v;
  }
  *s += rs;
  *s2 += rs2;
}

/* Mean and biased variance of channels [c0, c1) of x [n, c, hw] into mean, var [c1 - c0]. */
static void group_stats(const hsc_bn_desc *d, const float *x, int c0, int c1, double *mean, double *var) {
  const size_t hw = (size_t)d->hw;
  const int g = c1 - c0;
  float x0[BN_GROUP_MAX];
  double s[BN_GROUP_MAX] = {0}, s2[BN_GROUP_MAX] = {0};
  for (int j = 0; j < g; j++) x0[j] = x[(size_t)(c0 + j) * hw];
  for (int n = 0; n < d->n; n++) {
    const float *xp = x + ((size_t)n * d->c + c0) * hw;
    for (int j = 0; j < g; j++) row_stats(xp + (size_t)j * hw, hw, x0[j], &s[j], &s2[j]);
  }
  const double m = (double)d->n * d->hw;
  for (int j = 0; j < g; j++) {
    const double ms = s[j] / m;
    mean[j] = x0[j] + ms;
    var[j] = fmax(s2[j] / m - ms * ms, 0.0);
  }
}

/* y = relu?((x - mean) * scale + beta) over channels [c0, c1) (per-channel values indexed from c0); y may
 * alias x. */
static void group_apply(const hsc_bn_desc *d, const float *x, int c0, int c1, const float *mean,
                        const float *scale, const float *beta, float *y) {
  const size_t hw = (size_t)d->hw;
  for (int n = 0; n < d->n; n++)
    for (int j = 0; j < c1 - c0; j++) {
      const size_t off = ((size_t)n * d->c + c0 + j) * hw;
      const float *xp = x + off, mu = mean[j], sc = scale[j], be = beta[j];
      float *yp = y + off;
      if (d->relu) {
#pragma omp simd
        for (size_t i = 0; i < hw; i++) {
          const float v = (xp[i] - mu) * sc + be;
          yp[i] = v > 0.0f ? v : 0.0f;
        }
      } else {
#pragma omp simd
        for (size_t i = 0; i < hw; i++) yp[i] = (xp[i] - mu) * sc + be;
      }
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
  const int gs = bn_group(d);
#pragma omp parallel num_threads(threads)
  {
    int lo, end;
    thread_channels(d->c, &lo, &end);
    for (int c0 = lo; c0 < end; c0 += gs) {
      const int c1 = c0 + gs < end ? c0 + gs : end;
      double mean[BN_GROUP_MAX], var[BN_GROUP_MAX];
      float fm[BN_GROUP_MAX], fs[BN_GROUP_MAX], fb[BN_GROUP_MAX];
      group_stats(d, x, c0, c1, mean, var);
      for (int j = 0; j < c1 - c0; j++) {
        const int ci = c0 + j;
        const double invstd = 1.0 / sqrt(var[j] + (double)d->eps);
        save_mean[ci] = (float)mean[j];
        save_invstd[ci] = (float)invstd;
        const double mom = d->momentum;
        if (running_mean) running_mean[ci] = (float)((1.0 - mom) * running_mean[ci] + mom * mean[j]);
        if (running_var)
          running_var[ci] = (float)((1.0 - mom) * running_var[ci] + mom * var[j] * m / (m - 1.0));
        fm[j] = (float)mean[j];
        fs[j] = (float)(gamma ? gamma[ci] * invstd : invstd);
        fb[j] = beta ? beta[ci] : 0.0f;
      }
      group_apply(d, x, c0, c1, fm, fs, fb, y);
    }
  }
}

/* x, y [n, c, hw]; gamma, beta [c] or NULL; running_mean, running_var [c]. */
void hsc_cpu_bn_forward_infer(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *gamma,
                              const float *beta, const float *running_mean, const float *running_var,
                              float *y) {
  const int threads = hsc_cpu(ctx)->threads;
  const int gs = bn_group(d);
#pragma omp parallel num_threads(threads)
  {
    int lo, end;
    thread_channels(d->c, &lo, &end);
    for (int c0 = lo; c0 < end; c0 += gs) {
      const int c1 = c0 + gs < end ? c0 + gs : end;
      float fm[BN_GROUP_MAX], fs[BN_GROUP_MAX], fb[BN_GROUP_MAX];
      for (int j = 0; j < c1 - c0; j++) {
        const int ci = c0 + j;
        const double invstd = 1.0 / sqrt((double)running_var[ci] + (double)d->eps);
        fm[j] = running_mean[ci];
        fs[j] = (float)(gamma ? gamma[ci] * invstd : invstd);
        fb[j] = beta ? beta[ci] : 0.0f;
      }
      group_apply(d, x, c0, c1, fm, fs, fb, y);
    }
  }
}

/* Where the backward takes the fused ReLU's mask from. Without affine parameters (gamma NULL, and then
 * beta NULL too: backend.h) the forward computed y = relu((x - mean) * invstd) with invstd > 0, so y > 0
 * exactly where x - mean > 0, and the mask comes from x, which the backward reads anyway: one stream of
 * three fewer in the reduction, one of four in dx. With affine parameters it comes from y. */
enum { RELU_NONE = 0, RELU_FROM_Y = 1, RELU_FROM_X = 2 };

static int mask_mode(const hsc_bn_desc *d, const float *gamma) {
  return !d->relu ? RELU_NONE : gamma ? RELU_FROM_Y : RELU_FROM_X;
}

/* Row sums of g and g (x - mean), g = dy zeroed where the fused ReLU cut; added to *sg, *sgx. */
static void row_reduce(const float *xp, const float *yp, const float *dyp, size_t hw, int relu, float mean,
                       double *sg, double *sgx) {
  float rs = 0.0f, rsx = 0.0f; /* float per row, double across rows: see row_stats */
  if (relu == RELU_FROM_X) {
#pragma omp simd reduction(+ : rs, rsx)
    for (size_t i = 0; i < hw; i++) {
      const float dyv = dyp[i], xc = xp[i] - mean;
      const float g = xc > 0.0f ? dyv : 0.0f;
      rs += g;
      rsx += g * xc;
    }
  } else if (relu) {
    /* dy is loaded before the select, unconditionally (`y > 0 ? dy[i] : 0` is a conditional load the
     * compiler may not speculate): with it gcc's vector loop ran at scalar speed. */
#pragma omp simd reduction(+ : rs, rsx)
    for (size_t i = 0; i < hw; i++) {
      const float dyv = dyp[i];
      const float g = yp[i] > 0.0f ? dyv : 0.0f;
      rs += g;
      rsx += g * (xp[i] - mean);
    }
  } else {
#pragma omp simd reduction(+ : rs, rsx)
    for (size_t i = 0; i < hw; i++) {
      rs += dyp[i];
      rsx += dyp[i] * (xp[i] - mean);
    }
  }
  *sg += rs;
  *sgx += rsx;
}

/* Sums over channels [c0, c1): sg[j] = sum g, sgx[j] = sum g (x - mean). */
static void group_reduce(const hsc_bn_desc *d, int relu, const float *x, const float *y, const float *dy,
                         int c0, int c1, const float *mean, double *sg, double *sgx) {
  const size_t hw = (size_t)d->hw;
  for (int j = 0; j < c1 - c0; j++) sg[j] = sgx[j] = 0.0;
  for (int n = 0; n < d->n; n++)
    for (int j = 0; j < c1 - c0; j++) {
      const size_t off = ((size_t)n * d->c + c0 + j) * hw;
      row_reduce(x + off, relu == RELU_FROM_Y ? y + off : NULL, dy + off, hw, relu, mean[c0 + j], &sg[j],
                 &sgx[j]);
    }
}

/* One row of dx = [dx +] k g + a (x - mean) + b; `assign` is a constant at each call, so the inlined copies
 * neither read dx nor branch per element. */
static inline void dx_row(int relu, int assign, const float *xp, const float *yp, const float *dyp, size_t hw,
                          float mu, float kf, float af, float bf, float *dxp) {
  if (relu == RELU_FROM_X) {
#pragma omp simd
    for (size_t i = 0; i < hw; i++) {
      const float dyv = dyp[i], xc = xp[i] - mu;
      const float v = kf * (xc > 0.0f ? dyv : 0.0f) + af * xc + bf;
      dxp[i] = assign ? v : dxp[i] + v;
    }
  } else if (relu) {
#pragma omp simd
    for (size_t i = 0; i < hw; i++) {
      const float dyv = dyp[i]; /* unconditional load: see row_reduce */
      const float v = kf * (yp[i] > 0.0f ? dyv : 0.0f) + af * (xp[i] - mu) + bf;
      dxp[i] = assign ? v : dxp[i] + v;
    }
  } else {
#pragma omp simd
    for (size_t i = 0; i < hw; i++) {
      const float v = kf * dyp[i] + af * (xp[i] - mu) + bf;
      dxp[i] = assign ? v : dxp[i] + v;
    }
  }
}

/* dx (+)= k g + a (x - mean) + b over channels [c0, c1) (k, a, b indexed from c0); = when d->dx_assign. */
static void group_dx(const hsc_bn_desc *d, int relu, const float *x, const float *y, const float *dy, int c0,
                     int c1, const float *mean, const float *k, const float *a, const float *b, float *dx) {
  const size_t hw = (size_t)d->hw;
  for (int n = 0; n < d->n; n++)
    for (int j = 0; j < c1 - c0; j++) {
      const size_t off = ((size_t)n * d->c + c0 + j) * hw;
      const float *yp = relu == RELU_FROM_Y ? y + off : NULL;
      if (d->dx_assign)
        dx_row(relu, 1, x + off, yp, dy + off, hw, mean[c0 + j], k[j], a[j], b[j], dx + off);
      else
        dx_row(relu, 0, x + off, yp, dy + off, hw, mean[c0 + j], k[j], a[j], b[j], dx + off);
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
  const int gs = bn_group(d);
#pragma omp parallel num_threads(threads)
  {
    int lo, end;
    thread_channels(d->c, &lo, &end);
    for (int c0 = lo; c0 < end; c0 += gs) {
      const int c1 = c0 + gs < end ? c0 + gs : end;
      double sg[BN_GROUP_MAX], sgx[BN_GROUP_MAX];
      float k[BN_GROUP_MAX], a[BN_GROUP_MAX], b[BN_GROUP_MAX];
      group_reduce(d, mask_mode(d, gamma), x, y, dy, c0, c1, save_mean, sg, sgx);
      for (int j = 0; j < c1 - c0; j++) {
        const int ci = c0 + j;
        const double invstd = save_invstd[ci], sgxhat = sgx[j] * invstd; /* sum g xhat */
        if (dbeta) dbeta[ci] += (float)sg[j];
        if (dgamma) dgamma[ci] += (float)sgxhat;
        /* dx = k * (g - mean(g) - (x - mean) * invstd * mean(g xhat)) = k * g + a * (x - mean) + b. */
        const double kk = (gamma ? gamma[ci] : 1.0) * invstd;
        k[j] = (float)kk;
        a[j] = (float)(-kk * invstd * sgxhat / m);
        b[j] = (float)(-kk * sg[j] / m);
      }
      if (dx) group_dx(d, mask_mode(d, gamma), x, y, dy, c0, c1, save_mean, k, a, b, dx);
    }
  }
}

/* Sync BN pieces (backend.h). x [n, c, hw]; mean, var [c] written. */
void hsc_cpu_bn_stats(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, float *mean, float *var) {
  const int threads = hsc_cpu(ctx)->threads;
  const int gs = bn_group(d);
#pragma omp parallel num_threads(threads)
  {
    int lo, end;
    thread_channels(d->c, &lo, &end);
    for (int c0 = lo; c0 < end; c0 += gs) {
      const int c1 = c0 + gs < end ? c0 + gs : end;
      double mu[BN_GROUP_MAX], v[BN_GROUP_MAX];
      group_stats(d, x, c0, c1, mu, v);
      for (int j = 0; j < c1 - c0; j++) {
        mean[c0 + j] = (float)mu[j];
        var[c0 + j] = (float)v[j];
      }
    }
  }
}

/* x, y, dy [n, c, hw]; mean, invstd [c]; sum_g, sum_gxhat [c] written; dgamma, dbeta [c] or NULL (+=). */
void hsc_cpu_bn_backward_reduce(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                                const float *mean, const float *invstd, const float *dy, float *sum_g,
                                float *sum_gxhat, float *dgamma, float *dbeta) {
  assert(!d->relu || y);
  const int threads = hsc_cpu(ctx)->threads;
  const int gs = bn_group(d);
#pragma omp parallel num_threads(threads)
  {
    int lo, end;
    thread_channels(d->c, &lo, &end);
    for (int c0 = lo; c0 < end; c0 += gs) {
      const int c1 = c0 + gs < end ? c0 + gs : end;
      double sg[BN_GROUP_MAX], sgx[BN_GROUP_MAX];
      group_reduce(d, d->relu ? RELU_FROM_Y : RELU_NONE, x, y, dy, c0, c1, mean, sg, sgx);
      for (int j = 0; j < c1 - c0; j++) {
        const int ci = c0 + j;
        const double sgxhat = sgx[j] * (double)invstd[ci];
        sum_g[ci] = (float)sg[j];
        sum_gxhat[ci] = (float)sgxhat;
        if (dbeta) dbeta[ci] += (float)sg[j];
        if (dgamma) dgamma[ci] += (float)sgxhat;
      }
    }
  }
}

/* x, y, dy, dx [n, c, hw]; gamma [c] or NULL; mean, invstd, mean_g, mean_gxhat [c]. */
void hsc_cpu_bn_backward_elemt(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *x, const float *y,
                               const float *gamma, const float *mean, const float *invstd, const float *dy,
                               const float *mean_g, const float *mean_gxhat, float *dx) {
  assert(!d->relu || y);
  const int threads = hsc_cpu(ctx)->threads;
  const int gs = bn_group(d);
#pragma omp parallel num_threads(threads)
  {
    int lo, end;
    thread_channels(d->c, &lo, &end);
    for (int c0 = lo; c0 < end; c0 += gs) {
      const int c1 = c0 + gs < end ? c0 + gs : end;
      float k[BN_GROUP_MAX], a[BN_GROUP_MAX], b[BN_GROUP_MAX];
      for (int j = 0; j < c1 - c0; j++) {
        const int ci = c0 + j;
        const double is = invstd[ci], kk = (gamma ? gamma[ci] : 1.0) * is;
        k[j] = (float)kk;
        a[j] = (float)(-kk * is * mean_gxhat[ci]);
        b[j] = (float)(-kk * mean_g[ci]);
      }
      group_dx(d, d->relu ? RELU_FROM_Y : RELU_NONE, x, y, dy, c0, c1, mean, k, a, b, dx);
    }
  }
}

/* rows x cols: y = scale[row] * x. */
void hsc_cpu_scale_rows(hsc_backend_ctx *ctx, int rows, int cols, const float *scale, const float *x,
                        float *y) {
  (void)ctx;
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < cols; j++) y[(size_t)r * cols + j] = scale[r] * x[(size_t)r * cols + j];
}

/* gamma, beta, running_mean, running_var, bias [c] (gamma, beta, bias may be NULL); scale, shift [c]
 * written. */
void hsc_cpu_bn_fold(hsc_backend_ctx *ctx, const hsc_bn_desc *d, const float *gamma, const float *beta,
                     const float *running_mean, const float *running_var, const float *bias, float *scale,
                     float *shift) {
  (void)ctx;
  for (int ci = 0; ci < d->c; ci++) {
    const double invstd = 1.0 / sqrt((double)running_var[ci] + (double)d->eps);
    const double a = gamma ? gamma[ci] * invstd : invstd;
    scale[ci] = (float)a;
    shift[ci] = (float)((beta ? beta[ci] : 0.0) + ((bias ? bias[ci] : 0.0) - running_mean[ci]) * a);
  }
}
