/* The SPOS ShuffleNetV2 block's channel split and the concatenation that closes it. Pure data movement:
 * rows of hw floats are copied (forward) or added (backward), parallel over rows. */
#include <assert.h>
#include <string.h>

#include "cpu.h"

/* Below this many floats moved the copy runs on the calling thread (an OpenMP fork costs about as much
 * as copying 32k floats). */
enum { SHUFFLE_PARALLEL_MIN = 1 << 15 };

/* dst [len] += src [len]. */
static void add_row(float *restrict dst, const float *restrict src, int len) {
#pragma omp simd
  for (int i = 0; i < len; i++) dst[i] += src[i];
}

/* x [n, c, hw] -> even [n, c/2, hw], odd [n, c/2, hw]. This is megvii SPOS's channel_shuffle:
 *   x.reshape(n * c/2, 2, hw).permute(1, 0, 2).reshape(2, -1, c/2, h, w) -> (x[0], x[1]).
 * Seen as n * c rows of hw floats, row 2r of x is row r of even and row 2r + 1 is row r of odd, for
 * r in [0, n * c/2): image b, channel 2j is row 2 (b c/2 + j). */
void hsc_cpu_split_forward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *x, float *even,
                           float *odd) {
  assert(n >= 0 && c >= 0 && c % 2 == 0 && hw >= 0);
  hsc_cpu_ctx *cc = hsc_cpu(ctx);
  long rows = (long)n * (c / 2);
  size_t bytes = (size_t)hw * sizeof(float);
#pragma omp parallel for num_threads(cc->threads) if (rows * hw > SHUFFLE_PARALLEL_MIN) schedule(static)
  for (long r = 0; r < rows; r++) {
    memcpy(even + (size_t)r * hw, x + (size_t)(2 * r) * hw, bytes);
    memcpy(odd + (size_t)r * hw, x + (size_t)(2 * r + 1) * hw, bytes);
  }
}

/* deven, dodd [n, c/2, hw], dx [n, c, hw]: dx[even channels] += deven, dx[odd channels] += dodd. A NULL
 * deven or dodd is a zero gradient (that half was not used); a NULL dx skips everything. */
void hsc_cpu_split_backward(hsc_backend_ctx *ctx, int n, int c, int hw, const float *deven, const float *dodd,
                            float *dx) {
  assert(n >= 0 && c >= 0 && c % 2 == 0 && hw >= 0);
  if (!dx || (!deven && !dodd)) return;
  hsc_cpu_ctx *cc = hsc_cpu(ctx);
  long rows = (long)n * (c / 2);
#pragma omp parallel for num_threads(cc->threads) if (rows * hw > SHUFFLE_PARALLEL_MIN) schedule(static)
  for (long r = 0; r < rows; r++) {
    if (deven) add_row(dx + (size_t)(2 * r) * hw, deven + (size_t)r * hw, hw);
    if (dodd) add_row(dx + (size_t)(2 * r + 1) * hw, dodd + (size_t)r * hw, hw);
  }
}

/* a [n, ca, hw], b [n, cb, hw] -> y [n, ca + cb, hw]. Parallel over the n (ca + cb) output rows, so
 * that a small batch still spreads over the threads. */
void hsc_cpu_concat_forward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *a,
                            const float *b, float *y) {
  assert(n >= 0 && ca >= 0 && cb >= 0 && hw >= 0);
  hsc_cpu_ctx *cc = hsc_cpu(ctx);
  int cy = ca + cb;
  long rows = (long)n * cy;
  size_t bytes = (size_t)hw * sizeof(float);
#pragma omp parallel for num_threads(cc->threads) if (rows * hw > SHUFFLE_PARALLEL_MIN) schedule(static)
  for (long r = 0; r < rows; r++) {
    long img = r / cy;
    int ch = (int)(r % cy);
    const float *src = ch < ca ? a + (size_t)(img * ca + ch) * hw : b + (size_t)(img * cb + ch - ca) * hw;
    memcpy(y + (size_t)r * hw, src, bytes);
  }
}

/* dy [n, ca + cb, hw] -> da [n, ca, hw] += dy[:, :ca], db [n, cb, hw] += dy[:, ca:]; either may be
 * NULL (not needed). Parallel over the n (ca + cb) rows of dy, each read once. */
void hsc_cpu_concat_backward(hsc_backend_ctx *ctx, int n, int ca, int cb, int hw, const float *dy, float *da,
                             float *db) {
  assert(n >= 0 && ca >= 0 && cb >= 0 && hw >= 0);
  if (!da && !db) return;
  hsc_cpu_ctx *cc = hsc_cpu(ctx);
  int cy = ca + cb;
  long rows = (long)n * cy;
#pragma omp parallel for num_threads(cc->threads) if (rows * hw > SHUFFLE_PARALLEL_MIN) schedule(static)
  for (long r = 0; r < rows; r++) {
    long img = r / cy;
    int ch = (int)(r % cy);
    float *dst = ch < ca ? (da ? da + (size_t)(img * ca + ch) * hw : NULL)
                         : (db ? db + (size_t)(img * cb + ch - ca) * hw : NULL);
    if (dst) add_row(dst, dy + (size_t)r * hw, hw);
  }
}
