/* Depthwise k x k convolution (k in {3, 5, 7}, stride 1 or 2, zero padding p = k/2) on the leading c
 * channels of a weight allocated for more: channel ci uses the k x k filter at w + ci * k * k.
 * x [n, c, h, w], w [c.., k, k], y and dy [n, c, ho, wo], dx like x, dw like w.
 *
 * The supernet's planes are small (28x28 down to 7x7), so loops along one image row would be a fraction
 * of a vector long, with bounds checks at both ends. Instead each plane is one flat array of gh * gw
 * pixels f ("the grid"):
 *   - it is copied into a per-thread buffer between `lead` zeros (`reach` rows plus `reach` floats), so a
 *     tap that moves up or down out of the image reads zeros;
 *   - a tap that moves left or right by db wraps into the neighbouring row instead, so its contribution
 *     is multiplied by a 0/1 column mask, mask_db[f] = 1 iff 0 <= f % gw + db < gw;
 *   - output f is then a fixed list of (weight, flat offset) terms: one branch-free loop over f, with the
 *     taps unrolled (k and the stride are compile-time constants in each specialisation), that the
 *     compiler vectorises over f.
 * Stride 2 takes the same form on the output grid by splitting the input into its four phases (even/odd
 * rows x even/odd columns), phase (r, s)[i][j] = x[2i + r][2j + s], zero where a phase is shorter: tap
 * (a, b) reads phase ((a - p) mod 2, (b - p) mod 2) shifted by (floor((a - p) / 2), floor((b - p) / 2)),
 * so the reach is ceil(p / 2).
 *
 * Backward:
 *   dx: the transposed correlation on the same grid. Stride 1: dx[f] += sum of mask_-db[f] w[a][b]
 *       dy[f - da gw - db]. Stride 2: each input phase collects its taps on the output grid, and the
 *       phases are interleaved back into the plane.
 *   dw: dot products of padded buffers (see dw_taps), accumulated per channel over all images in LANES
 *       float lanes per tap (no horizontal sum per image), summed and added to dw once per channel.
 * Parallelism: the forward gives each OpenMP thread a contiguous range of (image, channel) planes; the
 * backward gives each thread a block of channels, walked image by image (so that it streams through
 * contiguous memory), and makes it the only writer of those dw rows. Every output, dx element and dw
 * entry is computed by one thread in a fixed order, so results do not depend on the thread count.
 * Memory: each plane is read through the per-thread buffers; copies past a row's end (whole vectors)
 * stay inside those buffers or read, never write, further into the caller's tensors, and only as far as
 * the tensor goes.
 * Cost per pass: n * c * ho * wo * k * k multiply-adds, (k - 1) mask multiply-adds per output, and one
 * copy of each plane of x and dy into the padded buffers.
 * With AVX-512, planes of 49..64 pixels at stride 1 (7x7) skip the grid and its copies: see the sp_
 * functions before the entry points. */
#include <assert.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu.h"

/* GCC only (the build's compiler is mpicc over GCC): with AVX-512, use 512-bit vectors (GCC's default
 * tuning stops at 256; the planes here are short, so fewer, wider iterations matter), and keep the short
 * copy loops as inline vector moves instead of turning them into memcpy/memset calls, which cost more
 * than the copy at these lengths. Neither changes a result. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

/* Lanes of the per-tap dw accumulators; also the rounding of the grid length so that the dw loop runs
 * on whole vectors (mask and dy are zero beyond the grid). 16 floats = one 64-byte line. */
enum { LANES = 16 };

/* Stride 2 moves rows of wo floats between buffers; wo is short (7 or 14 in the supernet), so each row is
 * moved as a whole number of ROW_CHUNK floats (whole vectors, no scalar remainder), and the floats
 * written past the row's end are overwritten by the next row or zeroed again. */
enum { ROW_CHUNK = 8 };

/* Geometry of the per-thread buffers for one call. */
typedef struct {
  int k, s, p;
  int h, w;     /* input plane */
  int ho, wo;   /* output plane */
  int gh, gw;   /* the grid: h x w at stride 1, ho x wo at stride 2 */
  int nf;       /* gh * gw */
  int len;      /* nf rounded up to LANES */
  int reach;    /* how far a tap moves on the grid, in rows and in columns */
  int lead;     /* zeros before (and after) the grid in a padded buffer: >= reach rows + reach floats */
  size_t pitch; /* floats per padded buffer: lead + len + lead + ROW_CHUNK, rounded to 16 */
  int nphase;   /* padded input buffers: 1 (stride 1) or 4 (stride 2) */
  int nmask;    /* column masks, one per column shift -reach..reach */
  int row_up;   /* stride 2: wo rounded up to ROW_CHUNK, the length of one over-long row copy */
} dw_geom;

static size_t round16(size_t v) { return (v + 15) / 16 * 16; }

static int floor_div(int v, int s) { return v >= 0 ? v / s : -((-v + s - 1) / s); }

static dw_geom dw_geom_make(const hsc_depthwise_desc *d) {
  assert(d->k == 3 || d->k == 5 || d->k == 7);
  assert(d->stride == 1 || d->stride == 2);
  dw_geom g = {.k = d->k, .s = d->stride, .p = d->k / 2, .h = d->h, .w = d->w};
  g.ho = hsc_depthwise_out(d->h, d->k, d->stride);
  g.wo = hsc_depthwise_out(d->w, d->k, d->stride);
  g.gh = g.s == 1 ? g.h : g.ho;
  g.gw = g.s == 1 ? g.w : g.wo;
  g.nf = g.gh * g.gw;
  g.len = (int)round16((size_t)g.nf);
  g.reach = g.s == 1 ? g.p : (g.p + 1) / 2;
  g.lead = g.reach * g.gw + g.reach;
  /* At stride 2 the grids start on a 64-byte line: the plane's rows are written there in pieces (so the
   * first ones are whole aligned vectors), which measured 10-25% faster; at stride 1 it made no
   * difference. */
  if (g.s == 2) g.lead = (int)round16((size_t)g.lead);
  g.pitch = round16((size_t)(2 * g.lead + g.len) + ROW_CHUNK); /* + room for an over-long last row */
  g.nphase = g.s == 1 ? 1 : 4;
  g.nmask = 2 * g.reach + 1;
  g.row_up = (g.wo + ROW_CHUNK - 1) / ROW_CHUNK * ROW_CHUNK;
  return g;
}

/* mask [nmask, len]: mask[(db + reach) * len + f] = 1 where column f % gw + db is inside the grid and
 * f < nf, else 0. */
static void dw_fill_masks(const dw_geom *g, float *mask) {
  for (int m = 0; m < g->nmask; m++) {
    int db = m - g->reach;
    for (int f = 0; f < g->len; f++) {
      int j = f % g->gw + db;
      mask[(size_t)m * g->len + f] = f < g->nf && j >= 0 && j < g->gw ? 1.0f : 0.0f;
    }
  }
}

/* dst [n] = src [n] (inline: see the pragma above). */
static inline __attribute__((always_inline)) void dw_copy_n(const int n, const float *restrict src,
                                                            float *restrict dst) {
  for (int i = 0; i < n; i++) dst[i] = src[i];
}

/* The supernet's plane sizes get a constant length: straight-line vector moves, without the loop set-up
 * and scalar remainder that cost as much as the copy at these lengths. */
static void dw_copy(int n, const float *restrict src, float *restrict dst) {
  switch (n) {
    case 49:
      dw_copy_n(49, src, dst);
      break;
    case 196:
      dw_copy_n(196, src, dst);
      break;
    case 784:
      dw_copy_n(784, src, dst);
      break;
    default:
      dw_copy_n(n, src, dst);
      break;
  }
}

/* even [n] = xr[0, 2, ..., 2n - 2], odd [n] = xr[1, 3, ..., 2n - 1]. */
static inline __attribute__((always_inline)) void dw_split_row(const int n, const float *restrict xr,
                                                               float *restrict even, float *restrict odd) {
  for (int j = 0; j < n; j++) {
    even[j] = xr[2 * j];
    odd[j] = xr[2 * j + 1];
  }
}

/* Rows [0, rows) of dw_load_plane at stride 2, each split as RU pairs. */
static inline __attribute__((always_inline)) void dw_split_rows(const int RU, const dw_geom *g,
                                                                const float *restrict x, float *restrict buf,
                                                                int rows) {
  const int wo = g->wo, odd_n = g->w / 2;
  for (int i = 0; i < rows; i++) {
    const float *xr = x + (size_t)i * g->w;
    float *even = buf + (size_t)(2 * (i & 1)) * g->pitch + g->lead + (size_t)(i / 2) * wo;
    float *odd = even + g->pitch;
    dw_split_row(RU, xr, even, odd);
    if (odd_n < wo) odd[odd_n] = 0.0f;
  }
}

/* Copies one input plane x [h, w] into the grid(s) of buf [nphase, pitch]: the plane itself at stride 1,
 * its four phases at stride 2, where x row i goes, split into its even and odd columns, to row i / 2 of
 * phases (i % 2, 0) and (i % 2, 1). Each such row is written row_up floats long (whole vectors); what
 * lands past the row is overwritten by the next row of that phase, and after the last row it is zeroed
 * again, so every grid cell that is not in x stays zero (padding, zeroed once per thread). The long rows
 * read past x's row; that stays within the `avail` floats the caller's tensor holds from x on, else the
 * row is split exactly. Cost: about 2 h w float moves. */
static void dw_load_plane(const dw_geom *g, const float *restrict x, float *restrict buf, size_t avail) {
  if (g->s == 1) {
    dw_copy(g->nf, x, buf + g->lead);
    return;
  }
  const int wo = g->wo, odd_n = g->w / 2; /* even columns: wo; odd columns: odd_n (wo - 1 for odd w) */
  /* Rows [0, fast) may read row_up pairs; the supernet's row lengths become constants (a few
   * straight-line vector moves per row). */
  const size_t span = 2 * (size_t)g->row_up, ok = avail < span ? 0 : (avail - span) / (size_t)g->w + 1;
  const int fast = ok < (size_t)g->h ? (int)ok : g->h;
  switch (g->row_up) {
    case 8:
      dw_split_rows(8, g, x, buf, fast);
      break;
    case 16:
      dw_split_rows(16, g, x, buf, fast);
      break;
    default:
      dw_split_rows(g->row_up, g, x, buf, fast);
      break;
  }
  for (int i = fast; i < g->h; i++) {
    const float *xr = x + (size_t)i * g->w;
    float *even = buf + (size_t)(2 * (i & 1)) * g->pitch + g->lead + (size_t)(i / 2) * wo;
    float *odd = even + g->pitch;
    for (int j = 0; j < odd_n; j++) {
      even[j] = xr[2 * j];
      odd[j] = xr[2 * j + 1];
    }
    if (odd_n < wo) {
      even[odd_n] = xr[g->w - 1];
      odd[odd_n] = 0.0f;
    }
  }
  for (int ph = 0; ph < 4; ph++) {
    const int rows = (g->h - ph / 2 + 1) / 2;
    float *grid = buf + (size_t)ph * g->pitch + g->lead;
    for (int j = rows * wo; j < (rows - 1) * wo + g->row_up; j++) grid[j] = 0.0f;
  }
}

/* One output of the correlation on the grid, for compile-time K and S (the callers pass literals;
 * always_inline makes them constants, so the tap loops unroll and every offset but the row pitch folds).
 *   bwd = 0: forward, sum over taps of mask_db[f] * w[a][b] * in[phase(a, b)][f + da gw + db], with
 *            base = the grid start of padded input buffer 0 (buffers [nphase, pitch]);
 *   bwd = 1: dx, the transpose: sum over the taps of input phase (r0, s0) (all taps at stride 1) of
 *            mask_-db[f] * w[a][b] * dy[f - da gw - db], base = the grid start of the padded dy.
 * mask [nmask, len]. */
static inline __attribute__((always_inline)) float dw_tap_sum(const int K, const int S, const int bwd,
                                                              const int r0, const int s0, const dw_geom *g,
                                                              const float *base, const float *mask,
                                                              const float *w, int f) {
  const int p = K / 2;
  float acc = 0.0f;
#pragma GCC unroll 8
  for (int b = 0; b < K; b++) {
    const int db = floor_div(b - p, S), sb = b - p - S * db;
    if (bwd && sb != s0) continue;
    float part = 0.0f;
#pragma GCC unroll 8
    for (int a = 0; a < K; a++) {
      const int da = floor_div(a - p, S), ra = a - p - S * da;
      if (bwd && ra != r0) continue;
      const float *sp = bwd ? base - (ptrdiff_t)da * g->gw - db
                            : base + (size_t)(ra * 2 + sb) * g->pitch + (ptrdiff_t)da * g->gw + db;
      part = fmaf(w[a * K + b], sp[f], part);
    }
    if (db == 0)
      acc += part;
    else
      acc = fmaf(mask[(size_t)((bwd ? -db : db) + g->reach) * g->len + f], part, acc);
  }
  return acc;
}

/* out [nout] = dw_tap_sum for f < nout (nf <= nout <= len). Runs in blocks of LANES outputs, the last one
 * moved back to end at nout (recomputing a few outputs, with the same values): whole vectors and no
 * scalar remainder, which at 49 or 196 outputs per plane would cost as much as the vectors. */
static inline __attribute__((always_inline)) void dw_corr(const int K, const int S, const int bwd,
                                                          const int r0, const int s0, const dw_geom *g,
                                                          const float *restrict src,
                                                          const float *restrict mask, const float *restrict w,
                                                          float *restrict out, int nout) {
  const float *base = src + g->lead;
  if (nout < LANES) {
    for (int f = 0; f < nout; f++) out[f] = dw_tap_sum(K, S, bwd, r0, s0, g, base, mask, w, f);
    return;
  }
  const int whole = nout / LANES * LANES;
  for (int f = 0; f < whole; f++) out[f] = dw_tap_sum(K, S, bwd, r0, s0, g, base, mask, w, f);
  if (whole == nout) return;
  const int fb = nout - LANES;
  for (int l = 0; l < LANES; l++) out[fb + l] = dw_tap_sum(K, S, bwd, r0, s0, g, base, mask, w, fb + l);
}

/* Forward of one plane: buf [nphase, pitch] the padded input, w [k, k], y [ho * wo]. */
static void dw_forward_plane(const dw_geom *g, const float *buf, const float *mask, const float *w,
                             float *y) {
  switch (g->k * 10 + g->s) {
    case 31:
      dw_corr(3, 1, 0, 0, 0, g, buf, mask, w, y, g->nf);
      break;
    case 32:
      dw_corr(3, 2, 0, 0, 0, g, buf, mask, w, y, g->nf);
      break;
    case 51:
      dw_corr(5, 1, 0, 0, 0, g, buf, mask, w, y, g->nf);
      break;
    case 52:
      dw_corr(5, 2, 0, 0, 0, g, buf, mask, w, y, g->nf);
      break;
    case 71:
      dw_corr(7, 1, 0, 0, 0, g, buf, mask, w, y, g->nf);
      break;
    case 72:
      dw_corr(7, 2, 0, 0, 0, g, buf, mask, w, y, g->nf);
      break;
    default:
      assert(0);
  }
}

/* dx of one plane at stride 1: dyp [pitch] the padded dy, out [len] scratch, dx [h * w] accumulated. */
static void dw_dx_plane_s1(const dw_geom *g, const float *dyp, const float *mask, const float *w,
                           float *restrict out, float *restrict dx) {
  switch (g->k) {
    case 3:
      dw_corr(3, 1, 1, 0, 0, g, dyp, mask, w, out, g->len);
      break;
    case 5:
      dw_corr(5, 1, 1, 0, 0, g, dyp, mask, w, out, g->len);
      break;
    case 7:
      dw_corr(7, 1, 1, 0, 0, g, dyp, mask, w, out, g->len);
      break;
    default:
      assert(0);
  }
  for (int f = 0; f < g->nf; f++) dx[f] += out[f];
}

/* dx of one input phase (r, s) at stride 2 on the ho x wo grid: dyp [pitch], out [nf] overwritten. */
#define DW_DX_PHASES(K)                                                \
  do {                                                                 \
    dw_corr(K, 2, 1, 0, 0, g, dyp, mask, w, out, g->len);              \
    dw_corr(K, 2, 1, 0, 1, g, dyp, mask, w, out + g->len, g->len);     \
    dw_corr(K, 2, 1, 1, 0, g, dyp, mask, w, out + 2 * g->len, g->len); \
    dw_corr(K, 2, 1, 1, 1, g, dyp, mask, w, out + 3 * g->len, g->len); \
  } while (0)

/* dx of one plane at stride 2: the four phases into out [4, len] + slack, then added to the even/odd
 * pixels of dx [h, w] through dense [h * w + 2 row_up]. */
static void dw_dx_plane_s2(const dw_geom *g, const float *dyp, const float *mask, const float *w,
                           float *restrict out, float *restrict dense, float *restrict dx) {
  switch (g->k) {
    case 3:
      DW_DX_PHASES(3);
      break;
    case 5:
      DW_DX_PHASES(5);
      break;
    case 7:
      DW_DX_PHASES(7);
      break;
    default:
      assert(0);
  }
  /* Row i of dx is row i / 2 of phases (i % 2, 0) and (i % 2, 1), interleaved: written 2 row_up floats
   * long into the dense scratch (what lands past the row is overwritten by the next), then added to dx
   * in one pass of exactly h * w. */
  for (int i = 0; i < g->h; i++) {
    const float *even = out + (size_t)(2 * (i & 1)) * g->len + (size_t)(i / 2) * g->wo;
    const float *odd = even + g->len;
    float *row = dense + (size_t)i * g->w;
    for (int j = 0; j < g->row_up; j++) {
      row[2 * j] = even[j];
      row[2 * j + 1] = odd[j];
    }
  }
  const int n = g->h * g->w;
  for (int f = 0; f < n; f++) dx[f] += dense[f];
}

#undef DW_DX_PHASES

/* The dw sums as dot products of two padded buffers: dw[t] gets sum over f < len of A[a_off[t] + f] *
 * B[b_off[t] + f].
 *   Stride 1: A = x selected by the mask of column shift -db [nmask, len], B = the padded dy: dw[a][b] =
 *     sum over input pixels f of x[f] * mask_-db[f] * dy[f - da w - db] (the zero rows of the padded dy
 *     stand for outputs above and below the plane, the mask for those wrapped into the next row).
 *   Stride 2: A = dy masked for column shift db [nmask, len], B = the x phases [4, pitch]: dw[a][b] =
 *     sum over output pixels f of dy[f] * mask_db[f] * phase(a, b)[f + da wo + db]. */
static void dw_taps(const dw_geom *g, size_t *a_off, ptrdiff_t *b_off) {
  for (int a = 0; a < g->k; a++)
    for (int b = 0; b < g->k; b++) {
      const int t = a * g->k + b;
      if (g->s == 1) {
        const int da = a - g->p, db = b - g->p;
        a_off[t] = (size_t)(g->p - db) * g->len;
        b_off[t] = g->lead - (ptrdiff_t)da * g->gw - db;
      } else {
        const int da = floor_div(a - g->p, 2), ra = a - g->p - 2 * da;
        const int db = floor_div(b - g->p, 2), sb = b - g->p - 2 * db;
        a_off[t] = (size_t)(db + g->reach) * g->len;
        b_off[t] = (ptrdiff_t)((size_t)(ra * 2 + sb) * g->pitch) + g->lead + (ptrdiff_t)da * g->gw + db;
      }
    }
}

/* lanes [LANES] += the products a[f] * b[f], f < len (a multiple of LANES), summed lane-wise: a dot
 * product without its horizontal sum, which is left to the caller once per channel. */
static void dw_dot_lanes(int len, const float *restrict a, const float *restrict b, float *restrict lanes) {
  for (int f0 = 0; f0 < len; f0 += LANES)
    for (int l = 0; l < LANES; l++) lanes[l] = fmaf(a[f0 + l], b[f0 + l], lanes[l]);
}

/* tmp [nmask, len] = x where mask is 1, else 0 (stride-1 dw). When the caller's tensor holds len floats
 * from x on (`avail`), whole blocks are read past the plane; a select, not a product, keeps those values
 * (and any inf or NaN among them) out. */
static void dw_select_x(const dw_geom *g, const float *restrict x, const float *restrict mask,
                        float *restrict tmp, size_t avail) {
  const int len = g->len, n = avail >= (size_t)len ? len : g->nf;
  for (int m = 0; m < g->nmask; m++) {
    const float *restrict mk = mask + (size_t)m * len;
    float *restrict tm = tmp + (size_t)m * len;
    for (int f = 0; f < n; f++) {
      const float v = x[f];
      tm[f] = mk[f] != 0.0f ? v : 0.0f;
    }
  }
}

/* tmp [nmask, len] = dy [len] * mask: dy masked for each column shift, zero beyond the grid so that the
 * dw sums can run over whole LANES blocks. */
static void dw_mask_dy(const dw_geom *g, const float *restrict dy, const float *restrict mask,
                       float *restrict tmp) {
  const size_t len = (size_t)g->len;
  for (int m = 0; m < g->nmask; m++)
    for (size_t f = 0; f < len; f++) tmp[m * len + f] = dy[f] * mask[m * len + f];
}

/* Planes ahead of the current one whose memory is prefetched. */
enum { DW_AHEAD = 4 };

/* Prefetches the n floats at p into the cache (GCC/Clang builtin; a hint, no effect on results). */
static void dw_prefetch(const float *p, size_t n) {
  for (size_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 3);
}

/* One thread's buffers, carved from the context's scratch memory (each a multiple of 16 floats, so all
 * start on 64-byte lines). */
typedef struct {
  float *in;    /* [nphase, pitch] the padded input plane or its four phases; two of them in the forward */
  float *dyp;   /* [pitch] backward: the padded dy plane */
  float *dense; /* [h * w + 2 row_up] stride-2 dx: the plane's dx before it is added */
  float *tmp;   /* [nmask, len] dw: x or dy selected by each column mask */
  float *out;   /* [1 or 4, len] + ROW_CHUNK: dx of the plane, or of each input phase at stride 2 */
} dw_work;

/* Floats of one thread's buffers; with `take`, also carves them from base. */
static size_t dw_work_floats(const dw_geom *g, int backward, float *base, dw_work *take) {
  /* The forward double-buffers its input plane. */
  const size_t in = (backward ? 1 : 2) * (size_t)g->nphase * g->pitch;
  const size_t dense = backward && g->s == 2 ? round16((size_t)g->h * g->w + 2 * (size_t)g->row_up) : 0;
  const size_t dyp = backward ? g->pitch : 0, tmp = backward ? (size_t)g->nmask * g->len : 0;
  const size_t out = backward ? round16((size_t)(g->s == 2 ? 4 : 1) * g->len + ROW_CHUNK) : 0;
  if (take) {
    take->in = base;
    take->dyp = base + in;
    take->dense = take->dyp + dyp;
    take->tmp = take->dense + dense;
    take->out = take->tmp + tmp;
  }
  return in + dyp + dense + tmp + out;
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* Small planes (48 < h * w <= 64: the supernet's 7x7) at stride 1. The whole plane is 4 vectors of the
 * flat layout, and 441 (k = 3) multiply-adds per plane are too few to pay for the padded copy, the mask
 * rows and the loop set-up of the grid path. Here every tap reads its shifted plane straight from the
 * caller's tensor with a masked load, whose 16-bit mask is the tap's padding (rows and columns) and the
 * plane's end, computed once per call: no copy, no mask multiply. Masked-off lanes are not read (AVX-512
 * suppresses their faults), so loads before or after a plane never touch memory outside the tensor. */
enum { SP_NV = 4 };

/* The per-call masks: fwd[t][v] selects the lanes f = 16 v + l whose input f + off[t] is inside the plane
 * (forward, and the x side of dw), bwd[t][v] those whose dy pixel f - off[t] is (dx); valid[v] = f < nf. */
typedef struct {
  __mmask16 fwd[49][SP_NV], bwd[49][SP_NV], valid[SP_NV];
  int off[49];
} sp_masks;

static __attribute__((section(".text.hsc_dw_small"))) int sp_eligible(const hsc_depthwise_desc *d) {
  return d->stride == 1 && d->h * d->w > 48 && d->h * d->w <= 16 * SP_NV;
}

static __attribute__((section(".text.hsc_dw_small"))) void sp_masks_make(const hsc_depthwise_desc *d,
                                                                         sp_masks *m) {
  const int k = d->k, p = k / 2, h = d->h, w = d->w, nf = h * w;
  for (int v = 0; v < SP_NV; v++) {
    unsigned bits = 0;
    for (int l = 0; l < 16; l++)
      if (16 * v + l < nf) bits |= 1u << l;
    m->valid[v] = (__mmask16)bits;
  }
  for (int a = 0; a < k; a++)
    for (int b = 0; b < k; b++) {
      const int t = a * k + b, da = a - p, db = b - p;
      m->off[t] = da * w + db;
      for (int v = 0; v < SP_NV; v++) {
        unsigned fb = 0, bb = 0;
        for (int l = 0; l < 16; l++) {
          const int f = 16 * v + l, i = f / w, j = f % w;
          if (f >= nf) continue;
          if (i + da >= 0 && i + da < h && j + db >= 0 && j + db < w) fb |= 1u << l;
          if (i - da >= 0 && i - da < h && j - db >= 0 && j - db < w) bb |= 1u << l;
        }
        m->fwd[t][v] = (__mmask16)fb;
        m->bwd[t][v] = (__mmask16)bb;
      }
    }
}

/* y [nf] of one plane x [nf], filter w [K * K]: K * K * 4 masked loads and multiply-adds. */
static inline __attribute__((always_inline)) void sp_forward_plane(const int K, const sp_masks *m,
                                                                   const float *x, const float *w, float *y) {
  __m512 acc[SP_NV];
  for (int v = 0; v < SP_NV; v++) acc[v] = _mm512_setzero_ps();
#pragma GCC unroll 49
  for (int t = 0; t < K * K; t++) {
    const __m512 wt = _mm512_set1_ps(w[t]);
#pragma GCC unroll 4
    for (int v = 0; v < SP_NV; v++)
      acc[v] = _mm512_fmadd_ps(wt, _mm512_maskz_loadu_ps(m->fwd[t][v], x + 16 * v + m->off[t]), acc[v]);
  }
  for (int v = 0; v < SP_NV; v++) _mm512_mask_storeu_ps(y + 16 * v, m->valid[v], acc[v]);
}

/* A call's fixed operands (x and w: backward only), passed to its parallel region as one pointer. */
typedef struct {
  const hsc_depthwise_desc *d;
  const sp_masks *m;
  const float *x, *w;
} sp_args;

/* The forward over all planes, a contiguous range per thread (called inside the parallel region); k is
 * a literal in each branch. */
static __attribute__((section(".text.hsc_dw_small"), noinline)) void sp_forward_part(const sp_args *a,
                                                                                     const float *x,
                                                                                     const float *w,
                                                                                     float *y) {
  const hsc_depthwise_desc *d = a->d;
  const sp_masks *m = a->m;
  const long planes = (long)d->n * d->c;
  const size_t nf = (size_t)d->h * d->w;
  const int k = d->k;
#pragma omp for schedule(static)
  for (long pl = 0; pl < planes; pl++) {
    if (pl + DW_AHEAD < planes) dw_prefetch(x + (size_t)(pl + DW_AHEAD) * nf, nf);
    const float *xp = x + (size_t)pl * nf, *wc = w + (size_t)(pl % d->c) * k * k;
    float *yp = y + (size_t)pl * nf;
    switch (k) {
      case 3:
        sp_forward_plane(3, m, xp, wc, yp);
        break;
      case 5:
        sp_forward_plane(5, m, xp, wc, yp);
        break;
      default:
        sp_forward_plane(7, m, xp, wc, yp);
        break;
    }
  }
}

/* The small-plane code lives in a section of its own, and its parallel regions only call into it: the
 * grid path's code then keeps its placement, which its timings measured sensitive to (5-8%). */
static __attribute__((section(".text.hsc_dw_small"))) void sp_forward(const hsc_depthwise_desc *d,
                                                                      int threads, const float *x,
                                                                      const float *w, float *y) {
  sp_masks m;
  sp_masks_make(d, &m);
  const sp_args a = {.d = d, .m = &m};
#pragma omp parallel num_threads(threads)
  sp_forward_part(&a, x, w, y);
}

/* Channels per group of the backward walk. */
enum { SP_G = 4 };

/* Backward of the channels [c0, c1) (at most SP_G) over all n images, image by image (SP_G planes of
 * contiguous memory at a time, which the prefetchers can follow, where a walk down one channel would jump
 * c planes per image): dx += the transposed correlation of each plane, and dw [K * K] += the sum over the
 * images of x shifted by each tap times dy, kept in one vector per tap and channel across the images (one
 * horizontal sum per tap and channel; acc is SP_G * 49 vectors, 12.5 KB, in L1). */
static inline __attribute__((always_inline)) void sp_backward_group(const int K, const sp_masks *m,
                                                                    const hsc_depthwise_desc *d, int c0,
                                                                    int c1, const float *x, const float *w,
                                                                    const float *dy, float *dx, float *dw) {
  const size_t nf = (size_t)d->h * d->w, step = (size_t)d->c * nf;
  __m512 acc[SP_G][49];
  for (int ci = c0; ci < c1; ci++)
    for (int t = 0; t < K * K; t++) acc[ci - c0][t] = _mm512_setzero_ps();
  for (int n = 0; n < d->n; n++)
    for (int ci = c0; ci < c1; ci++) {
      const size_t pl = (size_t)n * step + (size_t)ci * nf;
      const float *wc = w + (size_t)ci * K * K;
      if (n + 1 < d->n) {
        const size_t pa = pl + step;
        dw_prefetch(dy + pa, nf);
        if (dw) dw_prefetch(x + pa, nf);
        if (dx) dw_prefetch(dx + pa, nf);
      }
      const float *dyp = dy + pl;
      if (dx) {
        float *dxp = dx + pl;
        __m512 g[SP_NV];
        for (int v = 0; v < SP_NV; v++) g[v] = _mm512_maskz_loadu_ps(m->valid[v], dxp + 16 * v);
#pragma GCC unroll 49
        for (int t = 0; t < K * K; t++)
#pragma GCC unroll 4
          for (int v = 0; v < SP_NV; v++)
            g[v] = _mm512_fmadd_ps(_mm512_set1_ps(wc[t]),
                                   _mm512_maskz_loadu_ps(m->bwd[t][v], dyp + 16 * v - m->off[t]), g[v]);
        for (int v = 0; v < SP_NV; v++) _mm512_mask_storeu_ps(dxp + 16 * v, m->valid[v], g[v]);
      }
      if (dw) {
        const float *xp = x + pl;
        __m512 *ac = acc[ci - c0];
        __m512 e[SP_NV];
        for (int v = 0; v < SP_NV; v++) e[v] = _mm512_maskz_loadu_ps(m->valid[v], dyp + 16 * v);
#pragma GCC unroll 49
        for (int t = 0; t < K * K; t++) {
          __m512 at = ac[t];
#pragma GCC unroll 4
          for (int v = 0; v < SP_NV; v++)
            at = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m->fwd[t][v], xp + 16 * v + m->off[t]), e[v], at);
          ac[t] = at;
        }
      }
    }
  if (dw)
    for (int ci = c0; ci < c1; ci++)
      for (int t = 0; t < K * K; t++) dw[(size_t)ci * K * K + t] += _mm512_reduce_add_ps(acc[ci - c0][t]);
}

/* The backward, groups of SP_G channels split between the threads (called inside the parallel region;
 * each thread is the only writer of its dw rows, summed in a fixed order). */
static __attribute__((section(".text.hsc_dw_small"), noinline)) void sp_backward_part(const sp_args *a,
                                                                                      const float *dy,
                                                                                      float *dx, float *dw) {
  const hsc_depthwise_desc *d = a->d;
  const sp_masks *m = a->m;
  const float *x = a->x, *w = a->w;
  const int groups = (d->c + SP_G - 1) / SP_G;
#pragma omp for schedule(static)
  for (int gi = 0; gi < groups; gi++) {
    const int c0 = gi * SP_G, c1 = c0 + SP_G < d->c ? c0 + SP_G : d->c;
    switch (d->k) {
      case 3:
        sp_backward_group(3, m, d, c0, c1, x, w, dy, dx, dw);
        break;
      case 5:
        sp_backward_group(5, m, d, c0, c1, x, w, dy, dx, dw);
        break;
      default:
        sp_backward_group(7, m, d, c0, c1, x, w, dy, dx, dw);
        break;
    }
  }
}

static __attribute__((section(".text.hsc_dw_small"))) void sp_backward(const hsc_depthwise_desc *d,
                                                                       int threads, const float *x,
                                                                       const float *w, const float *dy,
                                                                       float *dx, float *dw) {
  sp_masks m;
  sp_masks_make(d, &m);
  const sp_args a = {.d = d, .m = &m, .x = x, .w = w};
#pragma omp parallel num_threads(threads)
  sp_backward_part(&a, dy, dx, dw);
}
#endif

void hsc_cpu_depthwise_forward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                               const float *w, float *y) {
  hsc_cpu_ctx *c = hsc_cpu(ctx);
#if defined(__AVX512F__)
  if (sp_eligible(d)) {
    sp_forward(d, c->threads, x, w, y);
    return;
  }
#endif
  const dw_geom g = dw_geom_make(d);
  const int threads = c->threads, kk = g.k * g.k;
  const size_t mask_floats = round16((size_t)g.nmask * g.len);
  /* Each thread's buffers start on a 64-byte line of their own. */
  const size_t per_thread = round16(dw_work_floats(&g, 0, NULL, NULL));
  float *scratch = hsc_cpu_scratch(c, mask_floats + (size_t)threads * per_thread);
  float *mask = scratch;
  dw_fill_masks(&g, mask);
  const long planes = (long)d->n * d->c;
  const size_t in_plane = (size_t)g.h * g.w, out_plane = (size_t)g.ho * g.wo;
#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    const size_t in_floats = (size_t)g.nphase * g.pitch;
    dw_work wk;
    dw_work_floats(&g, 0, scratch + mask_floats + (size_t)tid * per_thread, &wk);
    memset(wk.in, 0, 2 * in_floats * sizeof(float));
    /* A contiguous range of planes per thread, double-buffered: plane pl + 1 is copied into the other
     * buffer before plane pl is computed, so that the kernel's unaligned loads do not wait for the copy's
     * stores to reach the cache (a load that spans two pending stores is not forwarded from them). The
     * plane DW_AHEAD on is prefetched. */
    const long p0 = planes * tid / nt, p1 = planes * (tid + 1) / nt;
    if (p0 < p1) dw_load_plane(&g, x + (size_t)p0 * in_plane, wk.in, (size_t)(planes - p0) * in_plane);
    for (long pl = p0, ci = p0 % d->c; pl < p1; pl++, ci = ci + 1 == d->c ? 0 : ci + 1) {
      const float *cur = wk.in + (size_t)((pl - p0) & 1) * in_floats;
      float *next = wk.in + (size_t)((pl - p0 + 1) & 1) * in_floats;
      if (pl + DW_AHEAD < p1) dw_prefetch(x + (size_t)(pl + DW_AHEAD) * in_plane, in_plane);
      if (pl + 1 < p1)
        dw_load_plane(&g, x + (size_t)(pl + 1) * in_plane, next, (size_t)(planes - pl - 1) * in_plane);
      dw_forward_plane(&g, cur, mask, w + (size_t)ci * kk, y + (size_t)pl * out_plane);
    }
  }
}

void hsc_cpu_depthwise_backward(hsc_backend_ctx *ctx, const hsc_depthwise_desc *d, const float *x,
                                const float *w, const float *dy, float *dx, float *dw) {
  if (!dx && !dw) return;
  hsc_cpu_ctx *c = hsc_cpu(ctx);
#if defined(__AVX512F__)
  if (sp_eligible(d)) {
    sp_backward(d, c->threads, x, w, dy, dx, dw);
    return;
  }
#endif
  const dw_geom g = dw_geom_make(d);
  const int threads = c->threads, kk = g.k * g.k;
  /* Channels are cut into one block per thread; a block is walked image by image, so each thread streams
   * through contiguous memory (a channel-major walk would jump n times per channel and defeat the
   * prefetchers), and keeps dw lanes [block channels, k * k, LANES] for its channels only. */
  const int blocks = threads < d->c ? threads : d->c, block_max = (d->c + blocks - 1) / blocks;
  const size_t mask_floats = round16((size_t)g.nmask * g.len);
  /* Each thread's buffers start on a 64-byte line of their own. */
  const size_t per_thread = round16(dw_work_floats(&g, 1, NULL, NULL));
  const size_t lane_floats = dw ? (size_t)block_max * kk * LANES : 0;
  float *scratch =
      hsc_cpu_scratch(c, mask_floats + (size_t)threads * per_thread + (size_t)blocks * lane_floats);
  float *mask = scratch, *all_lanes = scratch + mask_floats + (size_t)threads * per_thread;
  dw_fill_masks(&g, mask);
  size_t a_off[49];
  ptrdiff_t b_off[49];
  dw_taps(&g, a_off, b_off);
  const size_t in_plane = (size_t)g.h * g.w, out_plane = (size_t)g.ho * g.wo;
#pragma omp parallel num_threads(threads)
  {
    dw_work wk;
    dw_work_floats(&g, 1, scratch + mask_floats + (size_t)omp_get_thread_num() * per_thread, &wk);
    memset(wk.in, 0, per_thread * sizeof(float)); /* the padding of in and dyp, the tail of tmp */
#pragma omp for schedule(static)
    for (int blk = 0; blk < blocks; blk++) {
      const int c0 = (int)((long)d->c * blk / blocks), c1 = (int)((long)d->c * (blk + 1) / blocks);
      float *lanes = all_lanes + (size_t)blk * lane_floats;
      if (dw) memset(lanes, 0, lane_floats * sizeof(float));
      for (int n = 0; n < d->n; n++)
        for (int ci = c0; ci < c1; ci++) {
          const float *wc = w + (size_t)ci * kk;
          const size_t pl = (size_t)n * d->c + ci;
          {
            /* The planes are a few cache lines each, too short for the hardware prefetcher to run
             * ahead of: fetch those of the plane DW_AHEAD steps on in this walk. */
            const int ca = ci + DW_AHEAD < c1 ? ci + DW_AHEAD : c0 + (ci + DW_AHEAD - c1) % (c1 - c0);
            const int na = ci + DW_AHEAD < c1 ? n : n + 1 + (ci + DW_AHEAD - c1) / (c1 - c0);
            if (na < d->n) {
              const size_t pa = (size_t)na * d->c + ca;
              dw_prefetch(dy + pa * out_plane, out_plane);
              if (dw) dw_prefetch(x + pa * in_plane, in_plane);
              if (dx) dw_prefetch(dx + pa * in_plane, in_plane);
            }
          }
          dw_copy(g.nf, dy + pl * out_plane, wk.dyp + g.lead);
          if (dx) {
            if (g.s == 1)
              dw_dx_plane_s1(&g, wk.dyp, mask, wc, wk.out, dx + pl * in_plane);
            else
              dw_dx_plane_s2(&g, wk.dyp, mask, wc, wk.out, wk.dense, dx + pl * in_plane);
          }
          if (!dw) continue;
          const size_t avail = ((size_t)d->n * d->c - pl) * in_plane;
          const float *bsrc = wk.dyp;
          if (g.s == 1) {
            dw_select_x(&g, x + pl * in_plane, mask, wk.tmp, avail);
          } else {
            dw_load_plane(&g, x + pl * in_plane, wk.in, avail);
            dw_mask_dy(&g, wk.dyp + g.lead, mask, wk.tmp);
            bsrc = wk.in;
          }
          float *lc = lanes + (size_t)(ci - c0) * kk * LANES;
          for (int t = 0; t < kk; t++)
            dw_dot_lanes(g.len, wk.tmp + a_off[t], bsrc + b_off[t], lc + (size_t)t * LANES);
        }
      if (dw)
        for (int ci = c0; ci < c1; ci++) {
          const float *lc = lanes + (size_t)(ci - c0) * kk * LANES;
          float *dwc = dw + (size_t)ci * kk;
          for (int t = 0; t < kk; t++) {
            float s = 0.0f;
            for (int l = 0; l < LANES; l++) s += lc[(size_t)t * LANES + l];
            dwc[t] += s;
          }
        }
    }
  }
}
