/* Operator benchmark of the CPU backend: times forward and backward of every op instance in a shapes file
 * (bench/shapes.txt, shared with bench/ops_torch.py so both sides time the same instances) and OpenBLAS's
 * own sgemm:
 *
 *   ops SHAPES THREADS [--ops=OP,OP,...]
 *
 * One line per instance: "op=... space=... id=... shape=... impl=c threads=T fwd_ms=... bwd_ms=...
 * fwd_flop=... bwd_flop=... fwd_gflops=... bwd_gflops=..."; pointwise lines add sgemm_ms and sgemm_gflops,
 * cblas_sgemm with T OpenBLAS threads on the same product done as one GEMM (M = cout, K = cin,
 * N = n * hw). One "op=sgemm" line for the 1024^3 reference and "# ..." lines describing the machine and
 * the OpenBLAS kernel. --ops keeps only the listed ops (all by default).
 *
 * Timing protocol (the same in ops_torch.py): one call plus ~30 ms of warm-up; then samples of `inner`
 * calls each (inner chosen so a sample lasts >= 1 ms, above the clock's and the scheduler's noise), as
 * many samples as fit in ~0.2 s (5 to 201); the reported time is the median per call. The median, not
 * the mean, because the VMs this runs on lose a core for milliseconds now and then.
 *
 * FLOP counts (the same formulas in ops_torch.py; bench/report.py checks that both sides agree):
 *   conv       fwd 2 n cout cin k k ho wo; bwd the same per gradient computed (dw, and dx unless dx=0)
 *   pointwise  fwd 2 n cout cin hw;        bwd twice that (dx and dw)
 *   depthwise  fwd 2 n c k k ho wo;        bwd twice that (dx and dw)
 *   linear     fwd 2 n in out + n out;     bwd 4 n in out + n out (dx, dw, db)
 * and nominal counts for the memory-bound ops, so that they get a rate too (their times are what count):
 *   bn         fwd 4 per element (sum, sum of squares, scale, shift), bwd 8 (two reductions with x-hat
 *              recomputed, then the four-term update); ReLU adds 1 each way
 *   avgpool    fwd 1 per input element, bwd 1
 *   xent       fwd 4 n k (max, exp, sum, normalise), bwd 2 n k */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/backend.h"
#include "hsconas/core.h"

#define WARM_S 0.03
#define TARGET_S 0.2
#define MIN_SAMPLE_S 1e-3
#define MIN_SAMPLES 5
#define MAX_SAMPLES 201
#define MAX_KEYS 16
#define MAX_TENSORS 12
#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f
#define XENT_SMOOTHING 0.1f

/* One line of the shapes file. */
typedef struct {
  char space[32], id[64], op[32];
  int nkeys;
  char key[MAX_KEYS][16];
  long val[MAX_KEYS];
  char shape[256]; /* the KEY=VALUE list joined by commas, as printed */
} bench_line;

/* One op instance: the backend, the op's descriptor and the tensors (backend memory) it runs on. Tensor
 * roles: x input, w weight, b bias, y output, dy upstream gradient, dx/dw/db gradients (accumulated by
 * the backward, as the interface says; their growing values do not change the speed), aux op-specific. */
typedef struct {
  const hsc_backend *be;
  hsc_backend_ctx *ctx;
  union {
    hsc_conv2d_desc conv;
    hsc_pointwise_desc pw;
    hsc_depthwise_desc dw;
    hsc_bn_desc bn;
    hsc_linear_desc lin;
    struct {
      int n, c, hw;
    } pool;
    struct {
      int n, k;
    } xent;
  } d;
  float *x, *w, *b, *y, *dy, *dx, *dw, *db, *aux[4];
  int32_t *labels;
  void *owned[MAX_TENSORS];
  int nowned;
  double flop_fwd, flop_bwd;
  unsigned long long rng;
} bench_case;

typedef struct {
  const char *name;
  const char *keys;     /* the keys a line must give, space separated */
  const char *optional; /* the keys it may give */
  /* Extra consistency check of a line whose keys are complete, or NULL; returns -1 with `why`. */
  int (*check)(const bench_line *l, char *why, size_t len);
  /* Allocates the tensors (random inputs, zeroed outputs) and sets the FLOP counts. */
  void (*setup)(bench_case *c, const bench_line *l);
  void (*forward)(bench_case *c);
  void (*backward)(bench_case *c);
} bench_op;

/* ---- shapes file ---- */

static int parse_line(char *text, bench_line *l, char *why, size_t len) {
  memset(l, 0, sizeof *l);
  char *save = NULL;
  char *tok[3 + MAX_KEYS];
  int ntok = 0;
  for (char *s = strtok_r(text, " \t\r\n", &save); s; s = strtok_r(NULL, " \t\r\n", &save)) {
    if (ntok == (int)ARRAY_LEN(tok)) {
      snprintf(why, len, "more than %d keys", MAX_KEYS);
      return -1;
    }
    tok[ntok++] = s;
  }
  if (ntok < 4) {
    snprintf(why, len, "expected 'SPACE ID OP KEY=VALUE ...', got %d fields", ntok);
    return -1;
  }
  if (strlen(tok[0]) >= sizeof l->space || strlen(tok[1]) >= sizeof l->id || strlen(tok[2]) >= sizeof l->op) {
    snprintf(why, len, "SPACE, ID or OP is too long");
    return -1;
  }
  snprintf(l->space, sizeof l->space, "%s", tok[0]);
  snprintf(l->id, sizeof l->id, "%s", tok[1]);
  snprintf(l->op, sizeof l->op, "%s", tok[2]);
  size_t used = 0;
  for (int i = 3; i < ntok; i++) {
    char *eq = strchr(tok[i], '=');
    if (!eq || eq == tok[i] || (size_t)(eq - tok[i]) >= sizeof l->key[0]) {
      snprintf(why, len, "'%s' is not KEY=VALUE", tok[i]);
      return -1;
    }
    *eq = '\0';
    char *end = NULL;
    long v = strtol(eq + 1, &end, 10);
    /* Sizes are positive; only the 0/1 flags (dx, relu) may be 0. */
    long lo = !strcmp(tok[i], "dx") || !strcmp(tok[i], "relu") ? 0 : 1;
    if (*end != '\0' || end == eq + 1 || v < lo || v > (1L << 30)) {
      snprintf(why, len, "key '%s': '%s' is not an integer in [%ld, 2^30]", tok[i], eq + 1, lo);
      return -1;
    }
    snprintf(l->key[l->nkeys], sizeof l->key[0], "%s", tok[i]);
    l->val[l->nkeys++] = v;
    used +=
        (size_t)snprintf(l->shape + used, sizeof l->shape - used, "%s%s=%ld", i > 3 ? "," : "", tok[i], v);
    if (used >= sizeof l->shape) {
      snprintf(why, len, "the KEY=VALUE list is longer than %zu characters", sizeof l->shape - 1);
      return -1;
    }
  }
  return 0;
}

/* Whether `word` is one of the words of `list`, separated by `sep`. */
static int in_list_sep(const char *list, char sep, const char *word) {
  const char set[2] = {sep, '\0'};
  size_t n = strlen(word);
  for (const char *p = list; *p;) {
    size_t w = strcspn(p, set);
    if (w == n && !strncmp(p, word, n)) return 1;
    p += w;
    p += strspn(p, set);
  }
  return 0;
}

static int in_list(const char *list, const char *word) { return in_list_sep(list, ' ', word); }

static int has_key(const bench_line *l, const char *key) {
  for (int i = 0; i < l->nkeys; i++)
    if (!strcmp(l->key[i], key)) return 1;
  return 0;
}

/* The value of `key`, `def` when the line does not give it (only optional keys can be absent). */
static int key(const bench_line *l, const char *name, int def) {
  for (int i = 0; i < l->nkeys; i++)
    if (!strcmp(l->key[i], name)) return (int)l->val[i];
  return def;
}

/* Every required key given, no unknown one, and the op's own check. */
static int check_keys(const bench_op *op, const bench_line *l, char *why, size_t len) {
  char want[64];
  for (const char *p = op->keys; *p;) {
    size_t w = strcspn(p, " ");
    snprintf(want, sizeof want, "%.*s", (int)w, p);
    if (!has_key(l, want)) {
      snprintf(why, len, "op '%s' needs key '%s' (keys: %s; optional: %s)", op->name, want, op->keys,
               op->optional);
      return -1;
    }
    p += w;
    p += strspn(p, " ");
  }
  for (int i = 0; i < l->nkeys; i++)
    if (!in_list(op->keys, l->key[i]) && !in_list(op->optional, l->key[i])) {
      snprintf(why, len, "op '%s' has no key '%s' (keys: %s; optional: %s)", op->name, l->key[i], op->keys,
               op->optional);
      return -1;
    }
  return op->check ? op->check(l, why, len) : 0;
}

/* ---- tensors ---- */

static float uniform(unsigned long long *s) {
  /* 64-bit LCG (Knuth's MMIX constants); the top 24 bits give a float in [-1, 1). The values only need to
   * be ordinary numbers (no denormals, no NaNs); they do not change the speed of any op otherwise. */
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)(*s >> 40) / (float)(1 << 23) - 1.0f;
}

static void *owned(bench_case *c, void *p) {
  if (c->nowned == MAX_TENSORS) hsc_fatal("bench: more than %d tensors in one op instance", MAX_TENSORS);
  c->owned[c->nowned++] = p;
  return p;
}

/* A new backend tensor of `count` floats: uniform [-1, 1) values when `random`, else zeros. */
static float *tensor(bench_case *c, size_t count, int random) {
  float *p = owned(c, c->be->alloc(c->ctx, count * sizeof *p));
  if (random) {
    float *host = hsc_xmalloc(count * sizeof *host);
    for (size_t i = 0; i < count; i++) host[i] = uniform(&c->rng);
    c->be->upload(c->ctx, p, host, count * sizeof *p);
    free(host);
  }
  return p;
}

static void case_release(bench_case *c) {
  for (int i = 0; i < c->nowned; i++) c->be->release(c->ctx, c->owned[i]);
  c->nowned = 0;
}

/* ---- ops: setup, forward, backward ---- */

static void conv_setup(bench_case *c, const bench_line *l) {
  hsc_conv2d_desc *d = &c->d.conv;
  int k = key(l, "k", 0), need_dx = key(l, "dx", 1);
  *d = (hsc_conv2d_desc){.n = key(l, "n", 0),
                         .cin = key(l, "cin", 0),
                         .h = key(l, "h", 0),
                         .w = key(l, "w", 0),
                         .cout = key(l, "cout", 0),
                         .kh = k,
                         .kw = k,
                         .stride = key(l, "stride", 0),
                         .pad = k / 2,
                         .groups = 1};
  int ho = hsc_conv2d_out_h(d), wo = hsc_conv2d_out_w(d);
  size_t xs = (size_t)d->n * d->cin * d->h * d->w, ws = (size_t)d->cout * d->cin * k * k;
  size_t ys = (size_t)d->n * d->cout * ho * wo;
  c->x = tensor(c, xs, 1);
  c->w = tensor(c, ws, 1);
  c->y = tensor(c, ys, 0);
  c->dy = tensor(c, ys, 1);
  c->dx = need_dx ? tensor(c, xs, 0) : NULL;
  c->dw = tensor(c, ws, 0);
  c->flop_fwd = 2.0 * d->n * d->cout * d->cin * k * k * ho * wo;
  c->flop_bwd = c->flop_fwd * (need_dx ? 2 : 1);
}

static void conv_forward(bench_case *c) { c->be->conv2d_forward(c->ctx, &c->d.conv, c->x, c->w, NULL, c->y); }

static void conv_backward(bench_case *c) {
  c->be->conv2d_backward(c->ctx, &c->d.conv, c->x, c->w, c->dy, c->dx, c->dw, NULL);
}

static int pointwise_check(const bench_line *l, char *why, size_t len) {
  if (key(l, "ldw", key(l, "cin", 0)) >= key(l, "cin", 0)) return 0;
  snprintf(why, len, "ldw %d < cin %d: the weight's rows must hold the input width", key(l, "ldw", 0),
           key(l, "cin", 0));
  return -1;
}

static void pointwise_setup(bench_case *c, const bench_line *l) {
  hsc_pointwise_desc *d = &c->d.pw;
  *d = (hsc_pointwise_desc){.n = key(l, "n", 0),
                            .cin = key(l, "cin", 0),
                            .cout = key(l, "cout", 0),
                            .hw = key(l, "hw", 0),
                            .ldw = key(l, "ldw", key(l, "cin", 0))};
  size_t xs = (size_t)d->n * d->cin * d->hw, ys = (size_t)d->n * d->cout * d->hw;
  size_t ws = (size_t)d->cout * d->ldw;
  c->x = tensor(c, xs, 1);
  c->w = tensor(c, ws, 1);
  c->y = tensor(c, ys, 0);
  c->dy = tensor(c, ys, 1);
  c->dx = tensor(c, xs, 0);
  c->dw = tensor(c, ws, 0);
  c->flop_fwd = 2.0 * d->n * d->cout * d->cin * d->hw;
  c->flop_bwd = 2.0 * c->flop_fwd;
}

static void pointwise_forward(bench_case *c) { c->be->pointwise_forward(c->ctx, &c->d.pw, c->x, c->w, c->y); }

static void pointwise_backward(bench_case *c) {
  c->be->pointwise_backward(c->ctx, &c->d.pw, c->x, c->w, c->dy, c->dx, c->dw);
}

static int depthwise_check(const bench_line *l, char *why, size_t len) {
  int k = key(l, "k", 0), s = key(l, "stride", 0);
  if ((k == 3 || k == 5 || k == 7) && (s == 1 || s == 2)) return 0;
  snprintf(why, len, "depthwise needs k in {3, 5, 7} and stride in {1, 2} (got k=%d stride=%d)", k, s);
  return -1;
}

static void depthwise_setup(bench_case *c, const bench_line *l) {
  hsc_depthwise_desc *d = &c->d.dw;
  *d = (hsc_depthwise_desc){.n = key(l, "n", 0),
                            .c = key(l, "c", 0),
                            .h = key(l, "h", 0),
                            .w = key(l, "w", 0),
                            .k = key(l, "k", 0),
                            .stride = key(l, "stride", 0)};
  int ho = hsc_depthwise_out(d->h, d->k, d->stride), wo = hsc_depthwise_out(d->w, d->k, d->stride);
  size_t xs = (size_t)d->n * d->c * d->h * d->w, ys = (size_t)d->n * d->c * ho * wo;
  size_t ws = (size_t)d->c * d->k * d->k;
  c->x = tensor(c, xs, 1);
  c->w = tensor(c, ws, 1);
  c->y = tensor(c, ys, 0);
  c->dy = tensor(c, ys, 1);
  c->dx = tensor(c, xs, 0);
  c->dw = tensor(c, ws, 0);
  c->flop_fwd = 2.0 * d->n * d->c * d->k * d->k * ho * wo;
  c->flop_bwd = 2.0 * c->flop_fwd;
}

static void depthwise_forward(bench_case *c) { c->be->depthwise_forward(c->ctx, &c->d.dw, c->x, c->w, c->y); }

static void depthwise_backward(bench_case *c) {
  c->be->depthwise_backward(c->ctx, &c->d.dw, c->x, c->w, c->dy, c->dx, c->dw);
}

/* aux: running mean [c], running var [c], saved mean [c], saved 1/std [c]. */
static void bn_setup(bench_case *c, const bench_line *l) {
  hsc_bn_desc *d = &c->d.bn;
  *d = (hsc_bn_desc){.n = key(l, "n", 0),
                     .c = key(l, "c", 0),
                     .hw = key(l, "hw", 0),
                     .eps = BN_EPS,
                     .momentum = BN_MOMENTUM,
                     .relu = key(l, "relu", 0) != 0};
  size_t xs = (size_t)d->n * d->c * d->hw;
  c->x = tensor(c, xs, 1);
  c->y = tensor(c, xs, 0);
  c->dy = tensor(c, xs, 1);
  c->dx = tensor(c, xs, 0);
  for (int i = 0; i < 4; i++) c->aux[i] = tensor(c, (size_t)d->c, 0);
  c->flop_fwd = (4.0 + d->relu) * (double)xs;
  c->flop_bwd = (8.0 + d->relu) * (double)xs;
}

static void bn_forward(bench_case *c) {
  c->be->bn_forward_train(c->ctx, &c->d.bn, c->x, NULL, NULL, c->aux[0], c->aux[1], c->y, c->aux[2],
                          c->aux[3]);
}

static void bn_backward(bench_case *c) {
  c->be->bn_backward(c->ctx, &c->d.bn, c->x, c->y, NULL, c->aux[2], c->aux[3], c->dy, c->dx, NULL, NULL);
}

static void avgpool_setup(bench_case *c, const bench_line *l) {
  c->d.pool.n = key(l, "n", 0);
  c->d.pool.c = key(l, "c", 0);
  c->d.pool.hw = key(l, "hw", 0);
  size_t xs = (size_t)c->d.pool.n * c->d.pool.c * c->d.pool.hw, ys = (size_t)c->d.pool.n * c->d.pool.c;
  c->x = tensor(c, xs, 1);
  c->y = tensor(c, ys, 0);
  c->dy = tensor(c, ys, 1);
  c->dx = tensor(c, xs, 0);
  c->flop_fwd = c->flop_bwd = (double)xs;
}

static void avgpool_forward(bench_case *c) {
  c->be->avgpool_forward(c->ctx, c->d.pool.n, c->d.pool.c, c->d.pool.hw, c->x, c->y);
}

static void avgpool_backward(bench_case *c) {
  c->be->avgpool_backward(c->ctx, c->d.pool.n, c->d.pool.c, c->d.pool.hw, c->dy, c->dx);
}

static void linear_setup(bench_case *c, const bench_line *l) {
  hsc_linear_desc *d = &c->d.lin;
  *d = (hsc_linear_desc){.n = key(l, "n", 0), .in = key(l, "in", 0), .out = key(l, "out", 0)};
  size_t xs = (size_t)d->n * d->in, ws = (size_t)d->out * d->in, ys = (size_t)d->n * d->out;
  c->x = tensor(c, xs, 1);
  c->w = tensor(c, ws, 1);
  c->b = tensor(c, (size_t)d->out, 1);
  c->y = tensor(c, ys, 0);
  c->dy = tensor(c, ys, 1);
  c->dx = tensor(c, xs, 0);
  c->dw = tensor(c, ws, 0);
  c->db = tensor(c, (size_t)d->out, 0);
  c->flop_fwd = 2.0 * d->n * d->in * d->out + (double)ys;
  c->flop_bwd = 4.0 * d->n * d->in * d->out + (double)ys;
}

static void linear_forward(bench_case *c) {
  c->be->linear_forward(c->ctx, &c->d.lin, c->x, c->w, c->b, c->y);
}

static void linear_backward(bench_case *c) {
  c->be->linear_backward(c->ctx, &c->d.lin, c->x, c->w, c->dy, c->dx, c->dw, c->db);
}

/* x: logits [n, k]; y: probs [n, k]; aux[0]: per-sample losses [n]; dx: dlogits [n, k]. */
static void xent_setup(bench_case *c, const bench_line *l) {
  int n = c->d.xent.n = key(l, "n", 0);
  int k = c->d.xent.k = key(l, "k", 0);
  c->x = tensor(c, (size_t)n * k, 1);
  c->y = tensor(c, (size_t)n * k, 0);
  c->aux[0] = tensor(c, (size_t)n, 0);
  c->dx = tensor(c, (size_t)n * k, 0);
  int32_t *host = hsc_xmalloc((size_t)n * sizeof *host);
  for (int i = 0; i < n; i++) host[i] = (int32_t)((uniform(&c->rng) + 1.0f) * 0.5f * (float)k) % k;
  c->labels = owned(c, c->be->alloc(c->ctx, (size_t)n * sizeof *host));
  c->be->upload(c->ctx, c->labels, host, (size_t)n * sizeof *host);
  free(host);
  c->flop_fwd = 4.0 * n * k;
  c->flop_bwd = 2.0 * n * k;
}

static void xent_forward(bench_case *c) {
  c->be->xent_forward(c->ctx, c->d.xent.n, c->d.xent.k, c->x, c->labels, XENT_SMOOTHING, c->y, c->aux[0]);
}

static void xent_backward(bench_case *c) {
  c->be->xent_backward(c->ctx, c->d.xent.n, c->d.xent.k, c->y, c->labels, XENT_SMOOTHING,
                       1.0f / (float)c->d.xent.n, c->dx);
}

/* The keys here and in ops_torch.py's KEYS are the same. */
static const bench_op ops[] = {
    {"conv", "n cin cout h w k stride", "dx", NULL, conv_setup, conv_forward, conv_backward},
    {"pointwise", "n cin cout hw", "ldw", pointwise_check, pointwise_setup, pointwise_forward,
     pointwise_backward},
    {"depthwise", "n c h w k stride", "", depthwise_check, depthwise_setup, depthwise_forward,
     depthwise_backward},
    {"bn", "n c hw relu", "", NULL, bn_setup, bn_forward, bn_backward},
    {"avgpool", "n c hw", "", NULL, avgpool_setup, avgpool_forward, avgpool_backward},
    {"linear", "n in out", "", NULL, linear_setup, linear_forward, linear_backward},
    {"xent", "n k", "", NULL, xent_setup, xent_forward, xent_backward},
};

/* ---- timing ---- */

typedef void (*bench_fn)(void *arg);

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median seconds per call of fn(arg), by the protocol in the header comment. `sync` waits for queued
 * work (a GPU backend's), may be NULL. */
static double measure(bench_fn fn, void *arg, void (*sync)(void *arg)) {
  fn(arg);
  if (sync) sync(arg);
  int warm = 0;
  double t0 = hsc_now(), elapsed;
  do {
    fn(arg);
    if (sync) sync(arg);
    warm++;
  } while ((elapsed = hsc_now() - t0) < WARM_S);
  double est = elapsed / warm;
  int inner = est < MIN_SAMPLE_S ? (int)(MIN_SAMPLE_S / est) + 1 : 1;
  int samples = (int)(TARGET_S / (est * inner));
  if (samples < MIN_SAMPLES) samples = MIN_SAMPLES;
  if (samples > MAX_SAMPLES) samples = MAX_SAMPLES;
  samples |= 1; /* odd: the median is one sample */
  double t[MAX_SAMPLES];
  for (int s = 0; s < samples; s++) {
    double start = hsc_now();
    for (int i = 0; i < inner; i++) fn(arg);
    if (sync) sync(arg);
    t[s] = (hsc_now() - start) / inner;
  }
  qsort(t, (size_t)samples, sizeof t[0], cmp_double);
  return t[samples / 2];
}

typedef struct {
  bench_case *c;
  const bench_op *op;
} op_call;

static void call_forward(void *arg) {
  op_call *oc = arg;
  oc->op->forward(oc->c);
}

static void call_backward(void *arg) {
  op_call *oc = arg;
  oc->op->backward(oc->c);
}

static void call_sync(void *arg) {
  op_call *oc = arg;
  oc->c->be->sync(oc->c->ctx);
}

/* Row-major C [m, n] = A [m, k] B [k, n], as one cblas_sgemm. */
typedef struct {
  int m, n, k;
  float *a, *b, *c;
} sgemm_call;

static void call_sgemm(void *arg) {
  sgemm_call *g = arg;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->n, 0.0f,
              g->c, g->n);
}

/* GFLOP/s of cblas_sgemm on m x k times k x n with `threads` OpenBLAS threads; *ms gets the median time.
 * The backend runs OpenBLAS single-threaded inside its own OpenMP loops, so the previous setting is put
 * back afterwards. */
static double sgemm_gflops(int m, int n, int k, int threads, double *ms) {
  unsigned long long rng = 12345;
  sgemm_call g = {.m = m,
                  .n = n,
                  .k = k,
                  .a = hsc_xaligned((size_t)m * k * sizeof(float)),
                  .b = hsc_xaligned((size_t)k * n * sizeof(float)),
                  .c = hsc_xaligned((size_t)m * n * sizeof(float))};
  for (size_t i = 0; i < (size_t)m * k; i++) g.a[i] = uniform(&rng);
  for (size_t i = 0; i < (size_t)k * n; i++) g.b[i] = uniform(&rng);
  int prev = openblas_get_num_threads();
  openblas_set_num_threads(threads);
  double t = measure(call_sgemm, &g, NULL);
  openblas_set_num_threads(prev);
  free(g.a);
  free(g.b);
  free(g.c);
  *ms = t * 1e3;
  return 2.0 * m * n * k / t * 1e-9;
}

/* ---- main ---- */

static void run_line(const bench_op *op, const bench_line *l, int threads, bench_case *c) {
  op_call oc = {c, op};
  double fwd = measure(call_forward, &oc, call_sync);
  double bwd = measure(call_backward, &oc, call_sync);
  printf(
      "op=%s space=%s id=%s shape=%s impl=c threads=%d fwd_ms=%.4f bwd_ms=%.4f fwd_flop=%.0f bwd_flop=%.0f "
      "fwd_gflops=%.2f bwd_gflops=%.2f",
      l->op, l->space, l->id, l->shape, threads, fwd * 1e3, bwd * 1e3, c->flop_fwd, c->flop_bwd,
      c->flop_fwd / fwd * 1e-9, c->flop_bwd / bwd * 1e-9);
  if (!strcmp(op->name, "pointwise")) {
    double ms;
    double gf = sgemm_gflops(c->d.pw.cout, c->d.pw.n * c->d.pw.hw, c->d.pw.cin, threads, &ms);
    printf(" sgemm_ms=%.4f sgemm_gflops=%.2f", ms, gf);
  }
  printf("\n");
  fflush(stdout);
}

/* The shapes file's instances, all checked before anything runs (a typo on the last line should not cost
 * the minutes the lines above it take). Returns -1 after printing FILE:LINE: problem. */
static int read_shapes(const char *path, bench_line **lines, const bench_op ***line_ops, int *count) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "ops: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  int n = 0, cap = 0, lineno = 0, rc = 0;
  bench_line *ls = NULL;
  const bench_op **os = NULL;
  char text[1024], why[256];
  while (fgets(text, sizeof text, f)) {
    lineno++;
    char *s = text + strspn(text, " \t\r\n");
    if (*s == '\0' || *s == '#') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      bench_line *nl = realloc(ls, (size_t)cap * sizeof *ls);
      const bench_op **no = realloc(os, (size_t)cap * sizeof *os);
      if (!nl || !no) hsc_fatal("out of memory reading %s", path);
      ls = nl;
      os = no;
    }
    os[n] = NULL;
    if (parse_line(s, &ls[n], why, sizeof why) == 0) {
      for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        if (!strcmp(ops[i].name, ls[n].op)) os[n] = &ops[i];
      if (!os[n])
        snprintf(why, sizeof why, "unknown op '%s' (known: conv pointwise depthwise bn avgpool linear xent)",
                 ls[n].op);
    }
    for (int i = 0; os[n] && i < n; i++)
      if (!strcmp(ls[i].space, ls[n].space) && !strcmp(ls[i].id, ls[n].id)) {
        snprintf(why, sizeof why, "id '%s' is already used in space '%s'", ls[n].id, ls[n].space);
        os[n] = NULL;
      }
    if (!os[n] || check_keys(os[n], &ls[n], why, sizeof why)) {
      fprintf(stderr, "%s:%d: %s\n", path, lineno, why);
      rc = -1;
      break;
    }
    n++;
  }
  fclose(f);
  if (rc) {
    free(ls);
    free(os);
    return -1;
  }
  *lines = ls;
  *line_ops = os;
  *count = n;
  return 0;
}

int main(int argc, char **argv) {
  const char *only = NULL;
  if (argc == 4 && !strncmp(argv[3], "--ops=", 6)) only = argv[3] + 6;
  if (argc < 3 || argc > 4 || (argc == 4 && !only)) {
    fprintf(stderr, "usage: %s SHAPES THREADS [--ops=OP,OP,...]\n", argv[0]);
    return 2;
  }
  char *end = NULL;
  long threads = strtol(argv[2], &end, 10);
  if (*end || end == argv[2] || threads < 1 || threads > 4096) {
    fprintf(stderr, "ops: THREADS must be an integer in [1, 4096] (got '%s')\n", argv[2]);
    return 2;
  }
  bench_line *lines = NULL;
  const bench_op **line_ops = NULL;
  int nlines = 0;
  if (read_shapes(argv[1], &lines, &line_ops, &nlines)) return 1;

  hsc_error err = {0};
  const hsc_backend *be = hsc_backend_find("cpu", &err);
  hsc_backend_ctx *ctx = NULL;
  if (!be || be->init(&ctx, &(hsc_backend_opts){.threads = (int)threads, .device = -1}, &err) != HSC_OK) {
    fprintf(stderr, "ops: %s\n", err.msg);
    free(lines);
    free(line_ops);
    return 1;
  }
  char desc[512];
  be->describe(ctx, desc, sizeof desc);
  printf("# c backend: %s\n", desc);
  printf("# c openblas: corename=%s config=%s\n", openblas_get_corename(), openblas_get_config());
  double ms;
  double gf = sgemm_gflops(1024, 1024, 1024, (int)threads, &ms);
  printf("op=sgemm space=- id=sgemm.1024 shape=m=1024,n=1024,k=1024 impl=c threads=%ld ms=%.4f gflops=%.2f\n",
         threads, ms, gf);
  fflush(stdout);

  for (int i = 0; i < nlines; i++) {
    if (only && !in_list_sep(only, ',', lines[i].op)) continue;
    bench_case c = {.be = be, .ctx = ctx, .rng = 0x9E3779B97F4A7C15ULL + (unsigned long long)i};
    line_ops[i]->setup(&c, &lines[i]);
    run_line(line_ops[i], &lines[i], (int)threads, &c);
    case_release(&c);
  }
  be->free(ctx);
  free(lines);
  free(line_ops);
  return 0;
}
