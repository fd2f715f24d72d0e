/* The supernet: the network of space.h built from "units" (a convolution followed by BN, optionally
 * ReLU) arranged in branches, forward and backward of one path, read top to bottom.
 *
 *   stem:   unit CONV 3x3 (stem_stride) + BN + ReLU
 *   block:  split (even -> pass-through, odd -> main) or, on the first block of a stage, the whole input to
 *           both a projection branch and the main branch; the branch outputs are concatenated
 *   head:   unit PW + BN + ReLU, global average pool, linear classifier
 *
 * Widths inside a branch are symbols resolved from the gene at run time (W_MID is the block's mid width at
 * the gene's scale), so one description serves every path. Activations have one buffer per (block, unit
 * slot) sized for the largest operator and scale, allocated once; the backward uses six network-wide
 * gradient buffers (see backward_block). */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/rng.h"
#include "nn_internal.h"

enum { UNIT_PW, UNIT_DW, UNIT_CONV };
/* Default all-reduce bucket with device collectives (dp_overlap; hsc_supernet_set_bucket): 4 MB messages. */
enum { DP_BUCKET_FLOATS = 1 << 20 };
enum { W_IN, W_MID, W_OUT, W_CIN, W_STEM, W_HEAD, W_LAST, W_INPUT, W_COUNT }; /* width symbols */
enum { MAX_UNITS = 6, MAX_SLOTS = MAX_UNITS + 2 };

typedef struct {
  int kind;
  int k, stride, relu;
  int win, wout;   /* width symbols of input and output */
  int w;           /* weight: index in the parameter table */
  int mean, var;   /* BN statistics: indices in the state table */
  int gamma, beta; /* affine BN parameters, or -1 */
} unit;

typedef struct {
  int n;
  unit u[MAX_UNITS];
} branch;

typedef struct {
  float *a, *b;                /* conv output, BN output [max_batch, c, hw] */
  float *save_mean, *save_inv; /* [c] */
  size_t floats;               /* capacity of a and b */
} slot;

typedef struct {
  int has_op[HSC_OP_COUNT];
  branch main[HSC_OP_COUNT], proj[HSC_OP_COUNT];
  int max_mid;
  slot ms[MAX_UNITS], ps[2]; /* main and projection slots */
  float *even, *odd, *out;
} block;

struct hsc_supernet {
  hsc_space space;
  int fixed; /* stand-alone network of one architecture */
  hsc_arch arch;
  int affine;
  const hsc_backend *be;
  hsc_backend_ctx *ctx;
  int max_batch;
  hsc_param_table params, state;
  float *w, *g, *m, *stats;
  float bn_momentum, bn_eps;
  MPI_Comm sync;
  int recal_count;

  branch stem_br, head_br;
  slot stem_slot, head_slot;
  block blocks[HSC_MAX_BLOCKS];
  int classifier;
  float *x;        /* input [max_batch, in_c, h, w] */
  int32_t *labels; /* [max_batch] */
  float *pooled, *logits, *probs, *losses, *dlogits, *dpooled;
  int32_t *counts; /* [2] */
  size_t gfloats;  /* capacity of each gradient buffer */
  float *gbuf[6];
  float *fold_w, *fold_b; /* inference folding: scaled depthwise weights, carried shift through a pw */
  float *host_losses;     /* [max_batch]: per-sample losses read back by hsc_supernet_loss */
  /* Sync BN scratch, sized for the widest BN: device [2 c], host [2 c] and [2 c * ranks] (allocated on
   * the first synchronised step, when the rank count is known). */
  float *sync_dev, *sync_host, *sync_all;
  int cmax;
  int n; /* rows of the loaded batch */
  int max_regions;
  hsc_region *regions; /* the step's touched regions */
  float *packed;       /* backend [params.total]: gradients packed for the all-reduce */
  float *host;         /* host copy of packed (the same memory role on the CPU backend) */
  MPI_Comm dp_comm;    /* the communicator the backend's collectives are attached to, or MPI_COMM_NULL */
  size_t dp_bucket;    /* floats per all-reduce bucket with device collectives (dp_overlap) */
};

/* ---- widths and shapes ---- */

typedef struct {
  int w[W_COUNT];
} widths;

static widths block_widths(const hsc_supernet *net, int l, int mid) {
  const hsc_space *s = &net->space;
  const hsc_block_shape *b = &s->blocks[l];
  widths wd = {{0}};
  wd.w[W_IN] = b->main_in;
  wd.w[W_MID] = mid;
  wd.w[W_OUT] = b->main_out;
  wd.w[W_CIN] = b->cin;
  return wd;
}

static int block_mid(const hsc_supernet *net, int l, int scale) { return net->space.mid[l][scale]; }

static size_t max_floats(size_t a, size_t b) { return a > b ? a : b; }

/* ---- construction ---- */

static void add_bn(hsc_supernet *net, unit *u, int c, const char *prefix, const char *name) {
  int64_t dims[1] = {c};
  u->mean = hsc_table_add(&net->state, 0.0f, 1, dims, "%s%s.mean", prefix, name);
  u->var = hsc_table_add(&net->state, 0.0f, 1, dims, "%s%s.var", prefix, name);
  u->gamma = u->beta = -1;
  if (net->affine) {
    u->gamma = hsc_table_add(&net->params, 0.0f, 1, dims, "%s%s.gamma", prefix, name);
    u->beta = hsc_table_add(&net->params, 0.0f, 1, dims, "%s%s.beta", prefix, name);
  }
  if (c > net->cmax) net->cmax = c;
}

/* Adds a pointwise unit in -> out (max widths cin_max, cout_max). */
static void add_pw(hsc_supernet *net, branch *br, int win, int wout, int cin_max, int cout_max, int relu,
                   const char *prefix, const char *wname, const char *bnname) {
  unit *u = &br->u[br->n++];
  *u = (unit){.kind = UNIT_PW, .k = 1, .stride = 1, .relu = relu, .win = win, .wout = wout};
  int64_t dims[2] = {cout_max, cin_max};
  u->w = hsc_table_add(&net->params, 1.0f, 2, dims, "%s%s", prefix, wname);
  add_bn(net, u, cout_max, prefix, bnname);
}

static void add_dw(hsc_supernet *net, branch *br, int wc, int c_max, int k, int stride, const char *prefix,
                   const char *wname, const char *bnname) {
  unit *u = &br->u[br->n++];
  *u = (unit){.kind = UNIT_DW, .k = k, .stride = stride, .relu = 0, .win = wc, .wout = wc};
  int64_t dims[3] = {c_max, k, k};
  u->w = hsc_table_add(&net->params, 1.0f, 3, dims, "%s%s", prefix, wname);
  add_bn(net, u, c_max, prefix, bnname);
}

static void build_block(hsc_supernet *net, int l) {
  const hsc_space *s = &net->space;
  const hsc_block_shape *b = &s->blocks[l];
  block *bk = &net->blocks[l];
  bk->max_mid = net->fixed ? s->mid[l][net->arch.scale[l]] : s->max_mid[l];
  const int mm = bk->max_mid;
  for (int i = 0; i < s->nops; i++) {
    const hsc_op op = s->ops[i];
    if (net->fixed && op != (hsc_op)net->arch.op[l]) continue;
    bk->has_op[op] = 1;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "blocks.%d.%s.", l, hsc_op_name(op));
    branch *m = &bk->main[op];
    const int k = hsc_op_kernel(op);
    if (op == HSC_OP_XCEPTION) {
      add_dw(net, m, W_IN, b->main_in, 3, b->stride, prefix, "dw1", "bn1");
      add_pw(net, m, W_IN, W_MID, b->main_in, mm, 1, prefix, "pw1", "bn2");
      add_dw(net, m, W_MID, mm, 3, 1, prefix, "dw2", "bn3");
      add_pw(net, m, W_MID, W_MID, mm, mm, 1, prefix, "pw2", "bn4");
      add_dw(net, m, W_MID, mm, 3, 1, prefix, "dw3", "bn5");
      add_pw(net, m, W_MID, W_OUT, mm, b->main_out, 1, prefix, "pw3", "bn6");
    } else {
      add_pw(net, m, W_IN, W_MID, b->main_in, mm, 1, prefix, "pw1", "bn1");
      add_dw(net, m, W_MID, mm, k, b->stride, prefix, "dw", "bn2");
      add_pw(net, m, W_MID, W_OUT, mm, b->main_out, 1, prefix, "pw2", "bn3");
    }
    if (b->has_proj) {
      branch *p = &bk->proj[op];
      add_dw(net, p, W_CIN, b->cin, k, b->stride, prefix, "proj.dw", "proj.bn1");
      add_pw(net, p, W_CIN, W_CIN, b->cin, b->cin, 1, prefix, "proj.pw", "proj.bn2");
    }
  }
}

/* Output spatial size of a unit with input size h. */
static int unit_out(const unit *u, int h) {
  if (u->kind == UNIT_PW) return h;
  return hsc_conv_out_size(h, u->k, u->stride, u->k / 2);
}

/* Max floats per image of each slot of a branch at the widths wd, input h x w; updates cap[]. */
static void branch_sizes(const branch *br, const widths *wd, int h, int w, size_t *cap) {
  for (int i = 0; i < br->n; i++) {
    h = unit_out(&br->u[i], h);
    w = unit_out(&br->u[i], w);
    cap[i] = max_floats(cap[i], (size_t)wd->w[br->u[i].wout] * h * w);
  }
}

static void slot_alloc(hsc_supernet *net, slot *sl, size_t per_image, int channels) {
  sl->floats = per_image * net->max_batch;
  sl->a = net->be->alloc(net->ctx, sl->floats * sizeof(float));
  sl->b = net->be->alloc(net->ctx, sl->floats * sizeof(float));
  sl->save_mean = net->be->alloc(net->ctx, (size_t)channels * sizeof(float));
  sl->save_inv = net->be->alloc(net->ctx, (size_t)channels * sizeof(float));
  if (sl->floats > net->gfloats) net->gfloats = sl->floats;
}

static void slot_free(hsc_supernet *net, slot *sl) {
  net->be->release(net->ctx, sl->a);
  net->be->release(net->ctx, sl->b);
  net->be->release(net->ctx, sl->save_mean);
  net->be->release(net->ctx, sl->save_inv);
}

static void *zalloc(hsc_supernet *net, size_t bytes) { return net->be->alloc(net->ctx, bytes); }

static void alloc_buffers(hsc_supernet *net) {
  const hsc_space *s = &net->space;
  const int nb = net->max_batch;
  const size_t in_floats = (size_t)s->in_c * s->in_h * s->in_w;
  net->x = zalloc(net, in_floats * nb * sizeof(float));
  net->labels = zalloc(net, (size_t)nb * sizeof(int32_t));
  net->gfloats = in_floats * nb;
  slot_alloc(net, &net->stem_slot, (size_t)s->stem_c * s->stem_h * s->stem_w, s->stem_c);
  for (int l = 0; l < s->nblocks; l++) {
    const hsc_block_shape *b = &s->blocks[l];
    block *bk = &net->blocks[l];
    size_t mcap[MAX_UNITS] = {0}, pcap[2] = {0};
    widths wd = block_widths(net, l, bk->max_mid);
    for (int op = 0; op < HSC_OP_COUNT; op++) {
      if (!bk->has_op[op]) continue;
      branch_sizes(&bk->main[op], &wd, b->h_in, b->w_in, mcap);
      if (b->has_proj) branch_sizes(&bk->proj[op], &wd, b->h_in, b->w_in, pcap);
    }
    const int cmax = bk->max_mid > b->cout ? bk->max_mid : b->cout;
    for (int i = 0; i < MAX_UNITS; i++)
      if (mcap[i]) slot_alloc(net, &bk->ms[i], mcap[i], cmax);
    for (int i = 0; i < 2; i++)
      if (pcap[i]) slot_alloc(net, &bk->ps[i], pcap[i], cmax);
    const size_t in_img = (size_t)b->cin * b->h_in * b->w_in, out_img = (size_t)b->cout * b->h_out * b->w_out;
    if (!b->has_proj) {
      bk->even = zalloc(net, in_img / 2 * nb * sizeof(float));
      bk->odd = zalloc(net, in_img / 2 * nb * sizeof(float));
    }
    bk->out = zalloc(net, out_img * nb * sizeof(float));
    net->gfloats = max_floats(net->gfloats, max_floats(in_img, out_img) * nb);
  }
  const hsc_block_shape *last = &s->blocks[s->nblocks - 1];
  slot_alloc(net, &net->head_slot, (size_t)s->head_c * last->h_out * last->w_out, s->head_c);
  net->pooled = zalloc(net, (size_t)nb * s->head_c * sizeof(float));
  net->dpooled = zalloc(net, (size_t)nb * s->head_c * sizeof(float));
  const size_t nk = (size_t)nb * s->classes;
  net->logits = zalloc(net, nk * sizeof(float));
  net->probs = zalloc(net, nk * sizeof(float));
  net->dlogits = zalloc(net, nk * sizeof(float));
  net->losses = zalloc(net, (size_t)nb * sizeof(float));
  net->counts = zalloc(net, 2 * sizeof(int32_t));
  for (int i = 0; i < 6; i++) net->gbuf[i] = zalloc(net, net->gfloats * sizeof(float));
  size_t dw_max = 0, c_max = 0;
  for (int i = 0; i < net->params.n; i++) {
    const hsc_param *p = &net->params.v[i];
    if (p->ndim == 3 && p->count > dw_max) dw_max = p->count;
    if ((size_t)p->dims[0] > c_max) c_max = (size_t)p->dims[0];
  }
  net->fold_w = zalloc(net, (dw_max ? dw_max : 1) * sizeof(float));
  net->fold_b = zalloc(net, c_max * sizeof(float));
  net->host_losses = hsc_xmalloc((size_t)nb * sizeof(float));
}

/* The network's description: units, branches and the parameter and state tables, no backend buffers. */
static hsc_supernet *describe(const hsc_space *s, const hsc_arch *fixed) {
  hsc_supernet *net = hsc_xcalloc(1, sizeof *net);
  net->space = *s;
  net->fixed = fixed != NULL;
  if (fixed) net->arch = *fixed;
  net->affine = net->fixed;
  /* Parameters in network order: stem, blocks, head, classifier. */
  {
    unit *u = &net->stem_br.u[net->stem_br.n++];
    *u = (unit){
        .kind = UNIT_CONV, .k = 3, .stride = s->stem_stride, .relu = 1, .win = W_INPUT, .wout = W_STEM};
    int64_t dims[4] = {s->stem_c, s->in_c, 3, 3};
    u->w = hsc_table_add(&net->params, 1.0f, 4, dims, "stem.conv");
    add_bn(net, u, s->stem_c, "stem.", "bn");
  }
  for (int l = 0; l < s->nblocks; l++) build_block(net, l);
  const int last_c = s->blocks[s->nblocks - 1].cout;
  add_pw(net, &net->head_br, W_LAST, W_HEAD, last_c, s->head_c, 1, "head.", "conv", "bn");
  {
    int64_t dims[2] = {s->classes, s->head_c};
    net->classifier = hsc_table_add(&net->params, 1.0f, 2, dims, "classifier");
  }
  return net;
}

void hsc_supernet_layout(const hsc_space *s, const hsc_arch *fixed, hsc_param_table *params,
                         hsc_param_table *state) {
  assert(!fixed || hsc_arch_valid(s, NULL, fixed));
  hsc_supernet *net = describe(s, fixed);
  *params = net->params;
  *state = net->state;
  free(net);
}

hsc_status hsc_supernet_create(hsc_supernet **out, const hsc_space *s, const hsc_arch *fixed,
                               const hsc_backend *be, hsc_backend_ctx *ctx, int max_batch, hsc_error *err) {
  *out = NULL;
  if (max_batch < 1) return hsc_error_set(err, HSC_ERR_INPUT, "supernet: batch size %d < 1", max_batch);
  if (fixed && !hsc_arch_valid(s, NULL, fixed))
    return hsc_error_set(err, HSC_ERR_INPUT, "supernet: the fixed architecture is not in the space");
  hsc_supernet *net = describe(s, fixed);
  net->be = be;
  net->ctx = ctx;
  net->max_batch = max_batch;
  net->bn_momentum = 0.1f;
  net->bn_eps = 1e-5f;
  net->sync = MPI_COMM_NULL;
  net->dp_comm = MPI_COMM_NULL;
  net->dp_bucket = DP_BUCKET_FLOATS;
  net->w = zalloc(net, net->params.total * sizeof(float));
  net->g = zalloc(net, net->params.total * sizeof(float));
  net->m = zalloc(net, net->params.total * sizeof(float));
  net->stats = zalloc(net, net->state.total * sizeof(float));
  alloc_buffers(net);
  /* Regions of a path: stem conv, head conv, classifier, and per block at most 8 units; each unit a
   * weight and (affine) two BN parameters. */
  net->max_regions = 3 * (1 + 1 + 8 * s->nblocks) + 1;
  *out = net;
  return HSC_OK;
}

void hsc_supernet_free(hsc_supernet *net) {
  if (!net) return;
  const hsc_backend *be = net->be;
  hsc_backend_ctx *ctx = net->ctx;
  slot_free(net, &net->stem_slot);
  slot_free(net, &net->head_slot);
  for (int l = 0; l < net->space.nblocks; l++) {
    block *bk = &net->blocks[l];
    for (int i = 0; i < MAX_UNITS; i++)
      if (bk->ms[i].a) slot_free(net, &bk->ms[i]);
    for (int i = 0; i < 2; i++)
      if (bk->ps[i].a) slot_free(net, &bk->ps[i]);
    if (bk->even) be->release(ctx, bk->even);
    if (bk->odd) be->release(ctx, bk->odd);
    be->release(ctx, bk->out);
  }
  void *bufs[] = {net->w,       net->g,       net->m,       net->stats,   net->x,       net->labels,
                  net->pooled,  net->dpooled, net->logits,  net->probs,   net->dlogits, net->losses,
                  net->counts,  net->gbuf[0], net->gbuf[1], net->gbuf[2], net->gbuf[3], net->gbuf[4],
                  net->gbuf[5], net->fold_w,  net->fold_b};
  for (size_t i = 0; i < ARRAY_LEN(bufs); i++) be->release(ctx, bufs[i]);
  if (net->packed) be->release(ctx, net->packed);
  if (net->sync_dev) be->release(ctx, net->sync_dev);
  free(net->sync_host);
  free(net->sync_all);
  free(net->host_losses);
  free(net->host);
  free(net->regions);
  hsc_table_free(&net->params);
  hsc_table_free(&net->state);
  free(net);
}

const hsc_space *hsc_supernet_space(const hsc_supernet *net) { return &net->space; }
const hsc_param_table *hsc_supernet_params(const hsc_supernet *net) { return &net->params; }
const hsc_param_table *hsc_supernet_state(const hsc_supernet *net) { return &net->state; }
float *hsc_supernet_weights(hsc_supernet *net) { return net->w; }
float *hsc_supernet_grads(hsc_supernet *net) { return net->g; }
float *hsc_supernet_momentum(hsc_supernet *net) { return net->m; }
float *hsc_supernet_stats(hsc_supernet *net) { return net->stats; }

void hsc_supernet_set_bn(hsc_supernet *net, float momentum, float eps) {
  net->bn_momentum = momentum;
  net->bn_eps = eps;
}
void hsc_supernet_set_sync(hsc_supernet *net, MPI_Comm comm) { net->sync = comm; }
void hsc_supernet_set_bucket(hsc_supernet *net, size_t floats) { net->dp_bucket = floats ? floats : 1; }
void hsc_supernet_recal_begin(hsc_supernet *net) { net->recal_count = 0; }

/* SPOS initialisation (supernet.h). Host-side fill, one upload. */
void hsc_supernet_init_weights(hsc_supernet *net, uint64_t seed) {
  float *w = hsc_xcalloc(net->params.total, sizeof(float));
  for (int i = 0; i < net->params.n; i++) {
    const hsc_param *p = &net->params.v[i];
    float *dst = w + p->offset;
    const size_t len = strlen(p->name);
    if (len > 6 && !strcmp(p->name + len - 6, ".gamma")) {
      for (size_t j = 0; j < p->count; j++) dst[j] = 1.0f;
      continue;
    }
    if (len > 5 && !strcmp(p->name + len - 5, ".beta")) {
      for (size_t j = 0; j < p->count; j++) dst[j] = 1e-4f;
      continue;
    }
    hsc_rng r;
    hsc_rng_init(&r, seed, HSC_RNG_INIT, (uint64_t)i);
    double std;
    if (!strcmp(p->name, "stem.conv") || !strcmp(p->name, "classifier"))
      std = 0.01;
    else if (p->ndim == 3) /* depthwise: one input channel per group */
      std = 1.0;
    else
      std = 1.0 / (double)p->dims[1];
    hsc_rng_fill_normal(&r, dst, p->count, 0.0f, (float)std);
  }
  net->be->upload(net->ctx, net->w, w, net->params.total * sizeof(float));
  free(w);
  /* Running statistics: mean 0, variance 1. */
  float *st = hsc_xcalloc(net->state.total, sizeof(float));
  for (int i = 0; i < net->state.n; i++) {
    const hsc_param *p = &net->state.v[i];
    const size_t len = strlen(p->name);
    if (len > 4 && !strcmp(p->name + len - 4, ".var"))
      for (size_t j = 0; j < p->count; j++) st[p->offset + j] = 1.0f;
  }
  net->be->upload(net->ctx, net->stats, st, net->state.total * sizeof(float));
  free(st);
  net->be->zero(net->ctx, net->g, net->params.total * sizeof(float));
  net->be->zero(net->ctx, net->m, net->params.total * sizeof(float));
}

void hsc_supernet_load_batch(hsc_supernet *net, int n, const float *x, const int32_t *y) {
  assert(n >= 1 && n <= net->max_batch);
  const hsc_space *s = &net->space;
  net->n = n;
  net->be->upload(net->ctx, net->x, x, (size_t)n * s->in_c * s->in_h * s->in_w * sizeof(float));
  if (y) net->be->upload(net->ctx, net->labels, y, (size_t)n * sizeof(int32_t));
}

/* ---- BN ---- */

static float *pw_(hsc_supernet *net, int idx) { return idx < 0 ? NULL : net->w + net->params.v[idx].offset; }
static float *pg_(hsc_supernet *net, int idx) { return idx < 0 ? NULL : net->g + net->params.v[idx].offset; }
static float *st_(hsc_supernet *net, int idx) { return net->stats + net->state.v[idx].offset; }

/* Sync BN forward: this rank's statistics, combined over the communicator (equal counts per rank: the mean
 * of the means, and Chan et al.'s pairwise formula for the variance, var = mean over ranks of
 * (var_r + (mean_r - mean)^2)), then normalisation with them. Running statistics updated as torch's
 * SyncBatchNorm does, with the unbiased variance of the whole batch. */
/* The sync-BN scratch buffers (allocated once, on the first synchronised BN). */
static void sync_scratch(hsc_supernet *net, int nranks) {
  if (net->sync_dev) return;
  net->sync_dev = net->be->alloc(net->ctx, 4 * (size_t)net->cmax * sizeof(float));
  net->sync_host = hsc_xmalloc(6 * (size_t)net->cmax * sizeof(float));
  net->sync_all = hsc_xmalloc(2 * (size_t)net->cmax * nranks * sizeof(float));
}

static void bn_forward_sync(hsc_supernet *net, const hsc_bn_desc *d, const unit *u, const float *a, float *b,
                            slot *sl) {
  const hsc_backend *be = net->be;
  const int c = d->c;
  int nranks;
  HSC_CHECK_MPI(MPI_Comm_size(net->sync, &nranks));
  sync_scratch(net, nranks);
  /* host: this rank's mean, var [2c] | the combined mean, var [2c] | running mean, var [2c] */
  float *loc = net->sync_host, *gm = loc + 2 * c, *gv = gm + c, *hrm = gm + 2 * c, *hrv = hrm + c;
  float *all = net->sync_all, *dev = net->sync_dev, *ginv = net->sync_dev + 2 * c;
  be->bn_stats(net->ctx, d, a, dev, dev + c);
  be->download(net->ctx, loc, dev, 2 * (size_t)c * sizeof(float));
  HSC_CHECK_MPI(MPI_Allgather(loc, 2 * c, MPI_FLOAT, all, 2 * c, MPI_FLOAT, net->sync));
  const double count = (double)d->n * d->hw * nranks;
  float *rm = st_(net, u->mean), *rv = st_(net, u->var);
  be->download(net->ctx, hrm, rm, (size_t)c * sizeof(float));
  be->download(net->ctx, hrv, rv, (size_t)c * sizeof(float));
  float *inv = loc; /* this rank's statistics are consumed: reuse for 1 / sqrt(var + eps) */
  for (int ci = 0; ci < c; ci++) {
    double mu = 0.0;
    for (int r = 0; r < nranks; r++) mu += all[2 * c * r + ci];
    mu /= nranks;
    double var = 0.0;
    for (int r = 0; r < nranks; r++) {
      const double dm = all[2 * c * r + ci] - mu;
      var += all[2 * c * r + c + ci] + dm * dm;
    }
    var /= nranks;
    gm[ci] = (float)mu;
    gv[ci] = (float)var;
    inv[ci] = (float)(1.0 / sqrt(var + (double)d->eps));
    const double mom = d->momentum;
    hrm[ci] = (float)((1.0 - mom) * hrm[ci] + mom * mu);
    hrv[ci] = (float)((1.0 - mom) * hrv[ci] + mom * var * count / (count - 1.0));
  }
  be->upload(net->ctx, rm, hrm, (size_t)c * sizeof(float));
  be->upload(net->ctx, rv, hrv, (size_t)c * sizeof(float));
  be->upload(net->ctx, sl->save_mean, gm, (size_t)c * sizeof(float));
  be->upload(net->ctx, sl->save_inv, inv, (size_t)c * sizeof(float));
  be->upload(net->ctx, ginv, gm, 2 * (size_t)c * sizeof(float)); /* combined mean, var */
  be->bn_forward_infer(net->ctx, d, a, pw_(net, u->gamma), pw_(net, u->beta), ginv, ginv + c, b);
}

static void bn_forward(hsc_supernet *net, const unit *u, hsc_bn_mode mode, int n, int c, int hw,
                       const float *a, float *b, slot *sl) {
  hsc_bn_desc d = {
      .n = n, .c = c, .hw = hw, .eps = net->bn_eps, .momentum = net->bn_momentum, .relu = u->relu};
  const hsc_backend *be = net->be;
  float *rm = st_(net, u->mean), *rv = st_(net, u->var);
  switch (mode) {
    case HSC_BN_TRAIN:
      if (net->sync != MPI_COMM_NULL)
        bn_forward_sync(net, &d, u, a, b, sl);
      else
        be->bn_forward_train(net->ctx, &d, a, pw_(net, u->gamma), pw_(net, u->beta), rm, rv, b, sl->save_mean,
                             sl->save_inv);
      break;
    case HSC_BN_RECAL:
      /* Cumulative average: batch k (from 0) enters with weight 1 / (k + 1), so after K batches the running
       * statistics are the exact mean of the K batch statistics (torch's momentum=None). */
      d.momentum = 1.0f / (float)(net->recal_count + 1);
      be->bn_forward_train(net->ctx, &d, a, pw_(net, u->gamma), pw_(net, u->beta), rm, rv, b, sl->save_mean,
                           sl->save_inv);
      break;
    case HSC_BN_EVAL:
      be->bn_forward_infer(net->ctx, &d, a, pw_(net, u->gamma), pw_(net, u->beta), rm, rv, b);
      break;
  }
}

/* Sync BN backward: local reductions summed over the ranks, then the element-wise part. */
static void bn_backward_sync(hsc_supernet *net, const hsc_bn_desc *d, const unit *u, const float *a,
                             const float *b, const slot *sl, const float *db, float *da) {
  const hsc_backend *be = net->be;
  const int c = d->c;
  int nranks;
  HSC_CHECK_MPI(MPI_Comm_size(net->sync, &nranks));
  sync_scratch(net, nranks);
  float *dev = net->sync_dev, *host = net->sync_host;
  be->bn_backward_reduce(net->ctx, d, a, b, sl->save_mean, sl->save_inv, db, dev, dev + c, pg_(net, u->gamma),
                         pg_(net, u->beta));
  be->download(net->ctx, host, dev, 2 * (size_t)c * sizeof(float));
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, host, 2 * c, MPI_FLOAT, MPI_SUM, net->sync));
  const float inv_count = (float)(1.0 / ((double)d->n * d->hw * nranks));
  for (int i = 0; i < 2 * c; i++) host[i] *= inv_count;
  be->upload(net->ctx, dev, host, 2 * (size_t)c * sizeof(float));
  be->bn_backward_elemt(net->ctx, d, a, b, pw_(net, u->gamma), sl->save_mean, sl->save_inv, db, dev, dev + c,
                        da);
}

/* ---- units and branches ---- */

/* Operator descriptors of a unit at the widths of the path. */
static hsc_pointwise_desc pw_desc(const hsc_supernet *net, const unit *u, int n, int cin, int cout, int hw) {
  return (hsc_pointwise_desc){
      .n = n, .cin = cin, .cout = cout, .hw = hw, .ldw = (int)net->params.v[u->w].dims[1]};
}
static hsc_conv2d_desc stem_desc(const unit *u, int n, int cin, int cout, int h, int w) {
  return (hsc_conv2d_desc){.n = n,
                           .cin = cin,
                           .h = h,
                           .w = w,
                           .cout = cout,
                           .kh = 3,
                           .kw = 3,
                           .stride = u->stride,
                           .pad = 1,
                           .groups = 1};
}

/* Forward of unit u: x [n, cin, h, w] -> sl->a (conv) -> sl->b (BN). Returns the output size in *ho, *wo.
 * Inference (HSC_BN_EVAL) folds BN into the convolutions and writes sl->b directly; there a depthwise unit
 * leaves its BN's shift [cin] in *out_shift for the next unit, which receives it as in_shift. */
static void unit_forward(hsc_supernet *net, const unit *u, const widths *wd, hsc_bn_mode mode, int n, int h,
                         int w, const float *x, const float *in_shift, slot *sl, int *ho, int *wo,
                         const float **out_shift) {
  const hsc_backend *be = net->be;
  const int cin = wd->w[u->win], cout = wd->w[u->wout];
  const float *wt = pw_(net, u->w);
  *ho = unit_out(u, h);
  *wo = unit_out(u, w);
  switch (u->kind) {
    case UNIT_PW: {
      hsc_pointwise_desc d = pw_desc(net, u, n, cin, cout, h * w);
      if (mode == HSC_BN_EVAL) {
        /* Inference BN folded into the GEMM's epilogue: one pass over the output instead of three. A
         * shift the input still carries (from a folded depthwise BN before it) enters as W * shift. */
        const float *bias = NULL;
        if (in_shift) {
          hsc_pointwise_desc v = pw_desc(net, u, 1, cin, cout, 1);
          be->pointwise_forward(net->ctx, &v, in_shift, wt, net->fold_b);
          bias = net->fold_b;
        }
        hsc_bn_desc bd = {.n = n, .c = cout, .hw = h * w, .eps = net->bn_eps};
        be->bn_fold(net->ctx, &bd, pw_(net, u->gamma), pw_(net, u->beta), st_(net, u->mean), st_(net, u->var),
                    bias, sl->save_mean, sl->save_inv);
        d.scale = sl->save_mean;
        d.shift = sl->save_inv;
        d.relu = u->relu;
        be->pointwise_forward(net->ctx, &d, x, wt, sl->b);
        return;
      }
      be->pointwise_forward(net->ctx, &d, x, wt, sl->a);
      break;
    }
    case UNIT_DW: {
      const hsc_depthwise_desc d = {.n = n, .c = cin, .h = h, .w = w, .k = u->k, .stride = u->stride};
      if (mode == HSC_BN_EVAL) {
        /* Inference BN (no ReLU) folded away: its scale into a copy of the weights, its shift carried to
         * the pointwise conv that always follows (*out_shift), where it becomes part of that one's bias. */
        assert(!in_shift && !u->relu);
        hsc_bn_desc bd = {.n = n, .c = cout, .hw = *ho * *wo, .eps = net->bn_eps};
        be->bn_fold(net->ctx, &bd, pw_(net, u->gamma), pw_(net, u->beta), st_(net, u->mean), st_(net, u->var),
                    NULL, sl->save_mean, sl->save_inv);
        be->scale_rows(net->ctx, cin, u->k * u->k, sl->save_mean, wt, net->fold_w);
        be->depthwise_forward(net->ctx, &d, x, net->fold_w, sl->b);
        *out_shift = sl->save_inv;
        return;
      }
      be->depthwise_forward(net->ctx, &d, x, wt, sl->a);
      break;
    }
    case UNIT_CONV: {
      const hsc_conv2d_desc d = stem_desc(u, n, cin, cout, h, w);
      *ho = hsc_conv2d_out_h(&d);
      *wo = hsc_conv2d_out_w(&d);
      be->conv2d_forward(net->ctx, &d, x, wt, NULL, sl->a);
      break;
    }
  }
  bn_forward(net, u, mode, n, cout, *ho * *wo, sl->a, sl->b, sl);
}

/* Backward of unit u given db = dL/d(BN output). da is scratch of the conv output's size. dL/dx is
 * ACCUMULATED into dx (NULL: not needed); with zero_dx, dx is first zeroed, after db was read, so dx may
 * be the same buffer as db. */
static void unit_backward(hsc_supernet *net, const unit *u, const widths *wd, int n, int h, int w,
                          const float *x, const slot *sl, const float *db, float *da, float *dx,
                          int zero_dx) {
  const hsc_backend *be = net->be;
  const int cin = wd->w[u->win], cout = wd->w[u->wout];
  const int ho = unit_out(u, h), wo = unit_out(u, w);
  hsc_bn_desc bd = {
      .n = n, .c = cout, .hw = ho * wo, .eps = net->bn_eps, .momentum = net->bn_momentum, .relu = u->relu};
  bd.dx_assign = 1; /* da is scratch: written, not accumulated (no zeroing pass) */
  if (net->sync != MPI_COMM_NULL)
    bn_backward_sync(net, &bd, u, sl->a, sl->b, sl, db, da);
  else
    be->bn_backward(net->ctx, &bd, sl->a, sl->b, pw_(net, u->gamma), sl->save_mean, sl->save_inv, db, da,
                    pg_(net, u->gamma), pg_(net, u->beta));
  /* A pointwise conv writes dx outright when it is the only contribution (zero_dx); the others add. */
  if (dx && zero_dx && u->kind != UNIT_PW) be->zero(net->ctx, dx, (size_t)n * cin * h * w * sizeof(float));
  const float *wt = pw_(net, u->w);
  float *dw = pg_(net, u->w);
  switch (u->kind) {
    case UNIT_PW: {
      hsc_pointwise_desc d = pw_desc(net, u, n, cin, cout, h * w);
      d.dx_assign = zero_dx;
      be->pointwise_backward(net->ctx, &d, x, wt, da, dx, dw);
      break;
    }
    case UNIT_DW: {
      const hsc_depthwise_desc d = {.n = n, .c = cin, .h = h, .w = w, .k = u->k, .stride = u->stride};
      be->depthwise_backward(net->ctx, &d, x, wt, da, dx, dw);
      break;
    }
    case UNIT_CONV: {
      const hsc_conv2d_desc d = stem_desc(u, n, cin, cout, h, w);
      be->conv2d_backward(net->ctx, &d, x, wt, da, dx, dw, NULL);
      break;
    }
  }
}

/* Forward of a branch from x [n, wd(in), h, w]; returns its last output (the last slot's b) and size. */
static const float *branch_forward(hsc_supernet *net, const branch *br, const widths *wd, hsc_bn_mode mode,
                                   int n, int h, int w, const float *x, slot *slots, int *ho, int *wo) {
  const float *shift = NULL; /* a folded depthwise BN's shift, not yet added (inference only) */
  for (int i = 0; i < br->n; i++) {
    const float *in_shift = shift;
    shift = NULL;
    unit_forward(net, &br->u[i], wd, mode, n, h, w, x, in_shift, &slots[i], &h, &w, &shift);
    x = slots[i].b;
  }
  assert(!shift); /* every depthwise conv is followed by a pointwise one in its branch */
  *ho = h;
  *wo = w;
  return x;
}

/* Backward of a branch whose forward input was x [n, wd(in), h, w]. dtop holds dL/d(branch output); it and
 * tmp are scratch afterwards (each at least the largest activation of the branch). dL/dx is ACCUMULATED
 * into dx (NULL: not needed). */
static void branch_backward(hsc_supernet *net, const branch *br, const widths *wd, int n, int h, int w,
                            const float *x, const slot *slots, float *dtop, float *tmp, float *dx) {
  int hs[MAX_UNITS], ws[MAX_UNITS]; /* input size of each unit */
  for (int i = 0; i < br->n; i++) {
    hs[i] = h;
    ws[i] = w;
    h = unit_out(&br->u[i], h);
    w = unit_out(&br->u[i], w);
  }
  for (int i = br->n - 1; i >= 0; i--) {
    if (i) /* dL/d(previous unit's output) replaces dtop once this unit's BN backward has read it */
      unit_backward(net, &br->u[i], wd, n, hs[i], ws[i], slots[i - 1].b, &slots[i], dtop, tmp, dtop, 1);
    else
      unit_backward(net, &br->u[i], wd, n, hs[i], ws[i], x, &slots[i], dtop, tmp, dx, 0);
  }
}

/* ---- blocks ---- */

static const float *block_forward(hsc_supernet *net, int l, const hsc_arch *a, hsc_bn_mode mode,
                                  const float *x) {
  const hsc_backend *be = net->be;
  const hsc_block_shape *b = &net->space.blocks[l];
  block *bk = &net->blocks[l];
  const hsc_op op = (hsc_op)a->op[l];
  const widths wd = block_widths(net, l, block_mid(net, l, a->scale[l]));
  const int n = net->n, hw_in = b->h_in * b->w_in, hw_out = b->h_out * b->w_out;
  int ho, wo;
  if (b->has_proj) {
    const float *p = branch_forward(net, &bk->proj[op], &wd, mode, n, b->h_in, b->w_in, x, bk->ps, &ho, &wo);
    const float *m = branch_forward(net, &bk->main[op], &wd, mode, n, b->h_in, b->w_in, x, bk->ms, &ho, &wo);
    be->concat_forward(net->ctx, n, b->cin, b->main_out, hw_out, p, m, bk->out);
  } else {
    be->split_forward(net->ctx, n, b->cin, hw_in, x, bk->even, bk->odd);
    const float *m =
        branch_forward(net, &bk->main[op], &wd, mode, n, b->h_in, b->w_in, bk->odd, bk->ms, &ho, &wo);
    be->concat_forward(net->ctx, n, b->cin / 2, b->main_out, hw_out, bk->even, m, bk->out);
  }
  assert(ho == b->h_out && wo == b->w_out);
  return bk->out;
}

/* The six gradient buffers, each of net->gfloats floats. */
enum { G_OUT, G_IN, G_SIDE, G_MAIN, G_TMP, G_ODD };

/* Backward of block l: dL/d(block output) in gbuf[G_OUT]; writes dL/d(block input) into gbuf[G_IN]
 * (zeroed here, then accumulated by the branches). The concat splits the output gradient into the side
 * (pass-through or projection) and main parts; each branch ping-pongs between its top buffer and G_TMP. */
static void block_backward(hsc_supernet *net, int l, const hsc_arch *a, const float *x) {
  const hsc_backend *be = net->be;
  const hsc_block_shape *b = &net->space.blocks[l];
  block *bk = &net->blocks[l];
  const hsc_op op = (hsc_op)a->op[l];
  const widths wd = block_widths(net, l, block_mid(net, l, a->scale[l]));
  const int n = net->n, hw_in = b->h_in * b->w_in, hw_out = b->h_out * b->w_out;
  float **g = net->gbuf;
  const int side_c = b->has_proj ? b->cin : b->cin / 2;
  be->zero(net->ctx, g[G_SIDE], (size_t)n * side_c * hw_out * sizeof(float));
  be->zero(net->ctx, g[G_MAIN], (size_t)n * b->main_out * hw_out * sizeof(float));
  be->concat_backward(net->ctx, n, side_c, b->main_out, hw_out, g[G_OUT], g[G_SIDE], g[G_MAIN]);
  be->zero(net->ctx, g[G_IN], (size_t)n * b->cin * hw_in * sizeof(float));
  if (b->has_proj) {
    branch_backward(net, &bk->proj[op], &wd, n, b->h_in, b->w_in, x, bk->ps, g[G_SIDE], g[G_TMP], g[G_IN]);
    branch_backward(net, &bk->main[op], &wd, n, b->h_in, b->w_in, x, bk->ms, g[G_MAIN], g[G_TMP], g[G_IN]);
  } else {
    be->zero(net->ctx, g[G_ODD], (size_t)n * b->main_in * hw_in * sizeof(float));
    branch_backward(net, &bk->main[op], &wd, n, b->h_in, b->w_in, bk->odd, bk->ms, g[G_MAIN], g[G_TMP],
                    g[G_ODD]);
    be->split_backward(net->ctx, n, b->cin, hw_in, g[G_SIDE], g[G_ODD], g[G_IN]);
  }
}

/* ---- the network ---- */

static widths net_widths(const hsc_supernet *net) {
  const hsc_space *s = &net->space;
  widths wd = {{0}};
  wd.w[W_INPUT] = s->in_c;
  wd.w[W_STEM] = s->stem_c;
  wd.w[W_HEAD] = s->head_c;
  wd.w[W_LAST] = s->blocks[s->nblocks - 1].cout;
  return wd;
}

/* The input of part p: the network input, the stem's output or the previous block's output. */
static const float *part_input(const hsc_supernet *net, int part) {
  if (part < 0) return net->x;
  if (part == 0) return net->stem_slot.b;
  return net->blocks[part - 1].out;
}

void hsc_supernet_forward_part(hsc_supernet *net, const hsc_arch *a, int part, hsc_bn_mode mode) {
  const hsc_backend *be = net->be;
  const hsc_space *s = &net->space;
  assert(a->nblocks == s->nblocks && part >= -1 && part <= s->nblocks);
  assert(!net->fixed || hsc_arch_equal(a, &net->arch));
  const int n = net->n;
  const float *x = part_input(net, part);
  if (part >= 0 && part < s->nblocks) {
    block_forward(net, part, a, mode, x);
    return;
  }
  const widths wd = net_widths(net);
  int h, w;
  if (part < 0) {
    branch_forward(net, &net->stem_br, &wd, mode, n, s->in_h, s->in_w, x, &net->stem_slot, &h, &w);
    return;
  }
  const hsc_block_shape *last = &s->blocks[s->nblocks - 1];
  x = branch_forward(net, &net->head_br, &wd, mode, n, last->h_out, last->w_out, x, &net->head_slot, &h, &w);
  be->avgpool_forward(net->ctx, n, s->head_c, h * w, x, net->pooled);
  hsc_linear_desc ld = {.n = n, .in = s->head_c, .out = s->classes};
  be->linear_forward(net->ctx, &ld, net->pooled, pw_(net, net->classifier), NULL, net->logits);
}

const float *hsc_supernet_forward(hsc_supernet *net, const hsc_arch *a, hsc_bn_mode mode) {
  for (int part = -1; part <= net->space.nblocks; part++) hsc_supernet_forward_part(net, a, part, mode);
  if (mode == HSC_BN_RECAL) net->recal_count++;
  return net->logits;
}

hsc_batch_result hsc_supernet_loss(hsc_supernet *net, float smoothing, int backward) {
  const hsc_backend *be = net->be;
  const int n = net->n, k = net->space.classes;
  be->xent_forward(net->ctx, n, k, net->logits, net->labels, smoothing, net->probs, net->losses);
  be->accuracy(net->ctx, n, k, net->logits, net->labels, net->counts);
  int32_t counts[2];
  be->download(net->ctx, net->host_losses, net->losses, (size_t)n * sizeof(float));
  be->download(net->ctx, counts, net->counts, sizeof counts);
  double sum = 0.0;
  for (int i = 0; i < n; i++) sum += net->host_losses[i];
  if (backward) {
    be->zero(net->ctx, net->dlogits, (size_t)n * k * sizeof(float));
    be->xent_backward(net->ctx, n, k, net->probs, net->labels, smoothing, 1.0f / (float)n, net->dlogits);
  }
  return (hsc_batch_result){.loss = sum / n, .top1 = counts[0], .top5 = counts[1]};
}

/* Gradient all-reduce overlapped with the backward (backends with allreduce_mean, i.e. NCCL): the step's
 * touched regions, in path order (stem, blocks 0..L-1, head and classifier: hsc_supernet_regions), are
 * averaged in buckets, each started on the backend's communication stream as soon as the backward has
 * finished every region in it, while the backward of the earlier blocks goes on. Buckets hold at least
 * net->dp_bucket floats (fewer, larger messages: each NCCL call costs a few microseconds of latency) except
 * the last. The backward runs from the head to the stem, so the started regions are always a suffix
 * [lo, nr) of the list, packed at their offsets in net->packed. */
typedef struct {
  int nr;                      /* regions of the step */
  int seg[HSC_MAX_BLOCKS + 2]; /* first region of: [0] the stem, [1 + l] block l, [L + 1] the head */
  size_t off[HSC_MAX_BLOCKS * 8 * 3 + 8]; /* packed offset of each region, and of the end */
  int lo;                                 /* regions [lo, nr) are packed and their all-reduce started */
} dp_overlap;

/* Regions [first, ov->lo) have their final gradients: pack them and start their mean over the ranks, when
 * they fill a bucket or `last` is set. */
static void dp_ready(hsc_supernet *net, dp_overlap *ov, int first, int last) {
  if (!ov || first >= ov->lo) return;
  const size_t count = ov->off[ov->lo] - ov->off[first];
  if (count < net->dp_bucket && !last) return;
  float *packed = net->packed + ov->off[first];
  net->be->pack_regions(net->ctx, net->regions + first, ov->lo - first, net->g, packed);
  if (count) net->be->allreduce_mean(net->ctx, packed, count);
  ov->lo = first;
}

static void backward_path(hsc_supernet *net, const hsc_arch *a, dp_overlap *ov);

void hsc_supernet_backward(hsc_supernet *net, const hsc_arch *a) { backward_path(net, a, NULL); }

static void backward_path(hsc_supernet *net, const hsc_arch *a, dp_overlap *ov) {
  const hsc_backend *be = net->be;
  const hsc_space *s = &net->space;
  const int n = net->n;
  const widths wd = net_widths(net);
  float **g = net->gbuf;
  const hsc_block_shape *last = &s->blocks[s->nblocks - 1];
  const int hw_last = last->h_out * last->w_out;
  hsc_linear_desc ld = {.n = n, .in = s->head_c, .out = s->classes};
  be->zero(net->ctx, net->dpooled, (size_t)n * s->head_c * sizeof(float));
  be->linear_backward(net->ctx, &ld, net->pooled, pw_(net, net->classifier), net->dlogits, net->dpooled,
                      pg_(net, net->classifier), NULL);
  be->zero(net->ctx, g[G_MAIN], (size_t)n * s->head_c * hw_last * sizeof(float));
  be->avgpool_backward(net->ctx, n, s->head_c, hw_last, net->dpooled, g[G_MAIN]);
  const float *last_out = net->blocks[s->nblocks - 1].out;
  be->zero(net->ctx, g[G_OUT], (size_t)n * last->cout * hw_last * sizeof(float));
  branch_backward(net, &net->head_br, &wd, n, last->h_out, last->w_out, last_out, &net->head_slot, g[G_MAIN],
                  g[G_TMP], g[G_OUT]);
  if (ov) dp_ready(net, ov, ov->seg[s->nblocks + 1], 0); /* the head and the classifier are done */
  for (int l = s->nblocks - 1; l >= 0; l--) {
    const float *x = l ? net->blocks[l - 1].out : net->stem_slot.b;
    block_backward(net, l, a, x);
    if (ov) dp_ready(net, ov, ov->seg[1 + l], 0);
    float *t = g[G_OUT]; /* the input gradient of block l is the output gradient of block l - 1 */
    g[G_OUT] = g[G_IN];
    g[G_IN] = t;
  }
  branch_backward(net, &net->stem_br, &wd, n, s->in_h, s->in_w, net->x, &net->stem_slot, g[G_OUT], g[G_TMP],
                  NULL);
  if (ov) dp_ready(net, ov, 0, 1);
}

/* ---- regions ---- */

static void add_region(const hsc_param *p, int rows, int cols, float wd, hsc_region *r, int *nr) {
  const int ld = p->ndim == 2 ? (int)p->dims[1] : cols;
  r[(*nr)++] =
      (hsc_region){.offset = p->offset, .rows = rows, .cols = cols, .ld = ld, .weight_decay = wd * p->decay};
}

static void unit_regions(const hsc_supernet *net, const unit *u, const widths *wd, float decay, hsc_region *r,
                         int *nr) {
  const hsc_param *p = &net->params.v[u->w];
  const int cin = wd->w[u->win], cout = wd->w[u->wout];
  switch (u->kind) {
    case UNIT_PW:
      add_region(p, cout, cin, decay, r, nr);
      break;
    case UNIT_DW:
      add_region(p, 1, cin * u->k * u->k, decay, r, nr);
      break;
    case UNIT_CONV:
      add_region(p, 1, (int)p->count, decay, r, nr);
      break;
  }
  if (u->gamma >= 0) {
    add_region(&net->params.v[u->gamma], 1, cout, decay, r, nr);
    add_region(&net->params.v[u->beta], 1, cout, decay, r, nr);
  }
}

int hsc_supernet_max_regions(const hsc_supernet *net) { return net->max_regions; }

/* hsc_supernet_regions, also giving (seg not NULL) the index of the first region of the stem (0), of each
 * block l (seg[1 + l]) and of the head and classifier (seg[nblocks + 1]). */
static int path_regions(const hsc_supernet *net, const hsc_arch *a, float decay, hsc_region *r, int *seg) {
  const hsc_space *s = &net->space;
  int nr = 0;
  const widths wn = net_widths(net);
  if (seg) seg[0] = 0;
  unit_regions(net, &net->stem_br.u[0], &wn, decay, r, &nr);
  for (int l = 0; l < s->nblocks; l++) {
    if (seg) seg[1 + l] = nr;
    const hsc_op op = (hsc_op)a->op[l];
    const widths wd = block_widths(net, l, block_mid(net, l, a->scale[l]));
    const block *bk = &net->blocks[l];
    for (int i = 0; i < bk->main[op].n; i++) unit_regions(net, &bk->main[op].u[i], &wd, decay, r, &nr);
    if (s->blocks[l].has_proj)
      for (int i = 0; i < bk->proj[op].n; i++) unit_regions(net, &bk->proj[op].u[i], &wd, decay, r, &nr);
  }
  if (seg) seg[s->nblocks + 1] = nr;
  unit_regions(net, &net->head_br.u[0], &wn, decay, r, &nr);
  add_region(&net->params.v[net->classifier], s->classes, s->head_c, decay, r, &nr);
  assert(nr <= net->max_regions);
  return nr;
}

int hsc_supernet_regions(const hsc_supernet *net, const hsc_arch *a, float decay, hsc_region *r) {
  return path_regions(net, a, decay, r, NULL);
}

/* ---- the training step ---- */

hsc_batch_result hsc_supernet_train_step(hsc_supernet *net, const hsc_arch *a, MPI_Comm comm,
                                         const hsc_step_opts *o) {
  const hsc_backend *be = net->be;
  int size;
  HSC_CHECK_MPI(MPI_Comm_size(comm, &size));
  if (!net->regions) net->regions = hsc_xmalloc((size_t)net->max_regions * sizeof(hsc_region));
  hsc_supernet_forward(net, a, HSC_BN_TRAIN);
  const hsc_batch_result br = hsc_supernet_loss(net, o->smoothing, 1);
  if (size > 1 && !net->packed) net->packed = be->alloc(net->ctx, net->params.total * sizeof(float));
  int nr;
  if (size > 1 && be->allreduce_mean) {
    /* On the device (NCCL on the GPU backend), overlapped with the backward (dp_overlap). Attached on the
     * first step with this communicator. (A communicator is recognised by its handle: one freed and another
     * created at the same address would be taken for it; hsconas keeps its training communicator for the
     * whole run.) */
    if (net->dp_comm != comm) {
      hsc_error err = {0};
      if (be->comm_attach(net->ctx, comm, &err) != HSC_OK)
        hsc_fatal("%s backend: gradient all-reduce: %s", be->name, err.msg);
      net->dp_comm = comm;
    }
    dp_overlap ov = {.nr = 0};
    _Static_assert(ARRAY_LEN(ov.off) > 3 * (1 + 1 + 8 * HSC_MAX_BLOCKS) + 1,
                   "dp_overlap.off holds max_regions + 1");
    nr = ov.nr = path_regions(net, a, o->weight_decay, net->regions, ov.seg);
    ov.off[0] = 0;
    for (int i = 0; i < ov.nr; i++)
      ov.off[i + 1] = ov.off[i] + (size_t)net->regions[i].rows * (size_t)net->regions[i].cols;
    ov.lo = ov.nr;
    backward_path(net, a, &ov);
    be->comm_wait(net->ctx);
    be->unpack_regions(net->ctx, net->regions, nr, net->packed, net->g);
  } else {
    hsc_supernet_backward(net, a);
    nr = hsc_supernet_regions(net, a, o->weight_decay, net->regions);
    if (size > 1) {
      /* Gradients of the path only (a fraction of the supernet), in one message through the host. */
      if (!net->host) net->host = hsc_xmalloc(net->params.total * sizeof(float));
      const size_t count = hsc_regions_count(net->regions, nr);
      be->pack_regions(net->ctx, net->regions, nr, net->g, net->packed);
      be->download(net->ctx, net->host, net->packed, count * sizeof(float));
      HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, net->host, (int)count, MPI_FLOAT, MPI_SUM, comm));
      const float inv = 1.0f / (float)size;
      for (size_t i = 0; i < count; i++) net->host[i] *= inv;
      be->upload(net->ctx, net->packed, net->host, count * sizeof(float));
      be->unpack_regions(net->ctx, net->regions, nr, net->packed, net->g);
    }
  }
  hsc_sgd_desc sgd = {.lr = o->lr, .momentum = o->momentum, .dampening = 0.0f, .nesterov = o->nesterov};
  be->sgd_update(net->ctx, &sgd, net->regions, nr, net->w, net->g, net->m);
  be->zero_regions(net->ctx, net->regions, nr, net->g);
  return br;
}
