/* The optimizer step and the region bookkeeping around it (zeroing gradients, packing them for the
 * all-reduce). All four walk the same list of regions: leading rows x cols slices of matrices with row
 * stride ld, at `offset` in one flat buffer (backend.h). Regions must not overlap: they are updated in
 * parallel and an element listed twice would be stepped twice.
 *
 * Work is split without allocation: the regions' elements are numbered as in the packed buffer (region
 * by region, row-major), cut into tiles of at most REGION_TILE floats that never cross a region (a few
 * rows, or part of one long row), and thread t of T runs the tiles that start in its share
 * [F t / T, F (t + 1) / T) of the F elements. Every thread is within one tile of an equal share, however
 * many tiny regions (BN parameters, biases) sit next to large ones (conv weights), and all of it is one
 * OpenMP fork per call instead of one per region. */
#include <assert.h>
#include <omp.h>
#include <string.h>

#include "cpu.h"

enum {
  REGION_TILE = 1 << 14,         /* floats per tile: 64 KiB, a few microseconds of work */
  REGION_PARALLEL_MIN = 1 << 16, /* below this many floats in all, one thread (an OpenMP fork costs more) */
};

typedef enum { REGION_SGD, REGION_ZERO, REGION_PACK, REGION_UNPACK } region_op;

/* What to do with each contiguous run of a region. Pointers not used by `op` are NULL. */
typedef struct {
  region_op op;
  const hsc_sgd_desc *o;  /* SGD */
  float *buf;             /* SGD: the parameters; ZERO, UNPACK: the buffer written */
  const float *grad;      /* SGD */
  float *mom;             /* SGD */
  const float *src;       /* PACK: the buffer read */
  float *packed;          /* PACK: written */
  const float *packed_in; /* UNPACK: read */
} region_job;

/* p, g, m [len]: one SGD step, torch.optim.SGD's formulas with a zero-initialised momentum buffer
 * (backend.h). torch itself starts the buffer at the first gradient without dampening, which is the same
 * thing when dampening = 0, the only setting SPOS uses. The nesterov test is hoisted out so that both
 * loops vectorise. */
static void sgd_span(const hsc_sgd_desc *o, float wd, size_t len, float *restrict p, const float *restrict g,
                     float *restrict m) {
  const float mu = o->momentum, damp1 = 1.0f - o->dampening, lr = o->lr;
  if (o->nesterov) {
#pragma omp simd
    for (size_t i = 0; i < len; i++) {
      float gi = g[i] + wd * p[i];
      float mi = mu * m[i] + damp1 * gi;
      m[i] = mi;
      p[i] -= lr * (gi + mu * mi);
    }
  } else {
#pragma omp simd
    for (size_t i = 0; i < len; i++) {
      float gi = g[i] + wd * p[i];
      float mi = mu * m[i] + damp1 * gi;
      m[i] = mi;
      p[i] -= lr * mi;
    }
  }
}

/* One contiguous run of len floats at offset `off` of the flat buffers and `poff` of the packed one. */
static void run_span(const region_job *j, float wd, size_t off, size_t poff, size_t len) {
  switch (j->op) {
    case REGION_SGD:
      sgd_span(j->o, wd, len, j->buf + off, j->grad + off, j->mom + off);
      break;
    case REGION_ZERO:
      memset(j->buf + off, 0, len * sizeof(float));
      break;
    case REGION_PACK:
      memcpy(j->packed + poff, j->src + off, len * sizeof(float));
      break;
    case REGION_UNPACK:
      memcpy(j->buf + off, j->packed_in + poff, len * sizeof(float));
      break;
  }
}

/* How region r is tiled: rows_per_tile rows by col_tiles pieces of at most REGION_TILE columns (one of
 * the two is 1). Returns the number of tiles; tile t covers rows from (t / col_tiles) * rows_per_tile and
 * columns from (t % col_tiles) * REGION_TILE. */
static size_t region_tiles(const hsc_region *r, int *rows_per_tile, int *col_tiles) {
  if (r->rows <= 0 || r->cols <= 0) return 0;
  if (r->cols >= REGION_TILE) {
    *rows_per_tile = 1;
    *col_tiles = (r->cols + REGION_TILE - 1) / REGION_TILE;
  } else {
    *rows_per_tile = REGION_TILE / r->cols;
    *col_tiles = 1;
  }
  return (size_t)((r->rows + *rows_per_tile - 1) / *rows_per_tile) * (size_t)*col_tiles;
}

/* Runs the tiles whose first element has a packed index in [lo, hi). */
static void run_share(const region_job *j, const hsc_region *r, int nr, size_t lo, size_t hi) {
  size_t pbase = 0; /* packed index of the region's first element */
  for (int i = 0; i < nr && pbase < hi; i++) {
    const hsc_region *ri = &r[i];
    size_t count = (size_t)ri->rows * (size_t)ri->cols; /* as hsc_regions_count */
    if (pbase + count > lo) {
      int rows_per_tile = 1, col_tiles = 1;
      size_t tiles = region_tiles(ri, &rows_per_tile, &col_tiles);
      for (size_t t = 0; t < tiles; t++) {
        int r0 = (int)(t / (size_t)col_tiles) * rows_per_tile,
            c0 = (int)(t % (size_t)col_tiles) * REGION_TILE;
        size_t start = pbase + (size_t)r0 * (size_t)ri->cols + (size_t)c0;
        if (start < lo) continue;
        if (start >= hi) break;
        int r1 = r0 + rows_per_tile < ri->rows ? r0 + rows_per_tile : ri->rows;
        int c1 = c0 + REGION_TILE < ri->cols ? c0 + REGION_TILE : ri->cols;
        for (int row = r0; row < r1; row++)
          run_span(j, ri->weight_decay, ri->offset + (size_t)row * (size_t)ri->ld + (size_t)c0,
                   pbase + (size_t)row * (size_t)ri->cols + (size_t)c0, (size_t)(c1 - c0));
      }
    }
    pbase += count;
  }
}

static void run_regions(hsc_backend_ctx *ctx, const region_job *j, const hsc_region *r, int nr) {
  assert(nr >= 0 && (nr == 0 || r));
  for (int i = 0; i < nr; i++)
    assert(r[i].rows >= 0 && r[i].cols >= 0 && (r[i].rows <= 1 || r[i].ld >= r[i].cols));
  size_t total = hsc_regions_count(r, nr);
  if (total == 0) return;
  int threads = total > REGION_PARALLEL_MIN ? hsc_cpu(ctx)->threads : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    run_share(j, r, nr, total * t / nt, total * (t + 1) / nt);
  }
}

/* param, grad, mom: flat buffers addressed by the regions (host memory for this backend); only the
 * elements inside the regions are read or written. */
void hsc_cpu_sgd_update(hsc_backend_ctx *ctx, const hsc_sgd_desc *o, const hsc_region *r, int nr,
                        float *param, const float *grad, float *mom) {
  assert(o && param && grad && mom);
  region_job j = {.op = REGION_SGD, .o = o, .buf = param, .grad = grad, .mom = mom};
  run_regions(ctx, &j, r, nr);
}

/* buf: flat buffer; the elements inside the regions are set to 0, the others are left alone. */
void hsc_cpu_zero_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, float *buf) {
  region_job j = {.op = REGION_ZERO, .buf = buf};
  run_regions(ctx, &j, r, nr);
}

/* buf: flat buffer -> packed [hsc_regions_count(r, nr)]: the regions in order, each row-major. */
void hsc_cpu_pack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *buf,
                          float *packed) {
  region_job j = {.op = REGION_PACK, .src = buf, .packed = packed};
  run_regions(ctx, &j, r, nr);
}

/* packed [hsc_regions_count(r, nr)] -> buf: overwrites the elements inside the regions only. */
void hsc_cpu_unpack_regions(hsc_backend_ctx *ctx, const hsc_region *r, int nr, const float *packed,
                            float *buf) {
  region_job j = {.op = REGION_UNPACK, .buf = buf, .packed_in = packed};
  run_regions(ctx, &j, r, nr);
}
