/* Pieces of training and evaluation that the PyTorch step test does not reach: the learning-rate schedule,
 * BN recalibration's exact average, the stand-alone network being the supernet's path, and, on a tiny run
 * in a temporary directory, the search's evaluation service and the fine-tuning on a shrunk space. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hsconas/checkpoint.h"
#include "hsconas/config.h"
#include "hsconas/rng.h"
#include "hsconas/space.h"
#include "hsconas/supernet.h"
#include "hsconas/train.h"

/* Hand-computed values: warm-up over 10 steps to 0.1, then linear or half-cosine decay over 90 steps. */
static void t_lr_schedule(hsc_test *t) {
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 0, 100), 0.01, 1e-12);  /* (0 + 1) / 10 of the peak */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 9, 100), 0.1, 1e-12);   /* last warm-up step: the peak */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 10, 100), 0.1, 1e-12);  /* decay starts at the peak */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 55, 100), 0.05, 1e-12); /* half way through 90 steps */
  T_NEAR(t, hsc_lr_at("linear", 0.1, 10, 99, 100), 0.1 / 90, 1e-12);
  T_NEAR(t, hsc_lr_at("cosine", 0.1, 10, 55, 100), 0.05, 1e-12); /* cos(pi/2) = 0 */
  T_NEAR(t, hsc_lr_at("cosine", 0.1, 10, 25, 100), 0.05 * (1 + cos(M_PI / 6)), 1e-12);
  T_NEAR(t, hsc_lr_at("cosine", 0.1, 0, 0, 100), 0.1, 1e-12); /* no warm-up */
  /* Monotone non-increasing after the warm-up, positive before the end. */
  for (const char *s = "linear";; s = "cosine") {
    double prev = 1e9;
    for (int64_t i = 10; i < 100; i++) {
      const double lr = hsc_lr_at(s, 0.1, 10, i, 100);
      T_CHECK(t, lr <= prev && lr > 0.0);
      prev = lr;
    }
    if (!strcmp(s, "cosine")) break;
  }
}

typedef struct {
  hsc_config cfg;
  hsc_space space;
  hsc_arch arch;
} small_space;

static int small_space_init(hsc_test *t, small_space *s) {
  static const char *const sets[] = {"space.input_size=12",          "space.stem_channels=8",
                                     "space.stage_channels=[16,32]", "space.stage_blocks=[2,1]",
                                     "space.stage_strides=[2,1]",    "space.head_channels=24",
                                     "space.scales=[0.5,1.0,1.5]"};
  if (!tu_space(t, &s->cfg, &s->space, sets, (int)ARRAY_LEN(sets))) return 0;
  hsc_error err = {0};
  if (hsc_arch_parse(&s->space, "xception:1.0,shuffle5:0.5,shuffle7:1.5", &s->arch, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return 0;
  }
  return 1;
}

/* After recalibration on K batches, a BN's running mean is the mean of its K batch means and its running
 * variance the mean of the K unbiased batch variances (torch's momentum=None). Checked on the stem BN,
 * whose input does not depend on other BN statistics; each batch's own statistics come from a one-batch
 * recalibration (momentum 1: running = that batch's statistics). */
static void t_recal_average(hsc_test *t) {
  small_space s;
  if (!small_space_init(t, &s)) return;
  hsc_error err = {0};
  hsc_supernet *net = NULL;
  enum { N = 5, K = 3 };
  if (hsc_supernet_create(&net, &s.space, NULL, t->be, t->ctx, N, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return;
  }
  hsc_supernet_init_weights(net, 3);
  const hsc_param_table *st = hsc_supernet_state(net);
  const int im = hsc_param_find(st, "stem.bn.mean"), iv = hsc_param_find(st, "stem.bn.var");
  T_REQUIRE(t, im >= 0 && iv >= 0);
  const int c = (int)st->v[im].count, hw = 12 * 12;
  double want_mean[16] = {0}, want_var[16] = {0};
  /* Each batch's statistics alone. */
  float *xs[K];
  for (int k = 0; k < K; k++) {
    xs[k] = tu_randn(500 + (uint64_t)k, (size_t)N * hw, 1.0f + 0.5f * (float)k);
    hsc_supernet_load_batch(net, N, xs[k], NULL);
    hsc_supernet_recal_begin(net); /* one-batch recalibration: running = this batch's statistics */
    hsc_supernet_forward(net, &s.arch, HSC_BN_RECAL);
    for (int ci = 0; ci < c; ci++) {
      want_mean[ci] += hsc_supernet_stats(net)[st->v[im].offset + ci] / K;
      want_var[ci] += hsc_supernet_stats(net)[st->v[iv].offset + ci] / K;
    }
  }
  /* One K-batch recalibration. */
  hsc_supernet_recal_begin(net);
  for (int k = 0; k < K; k++) {
    hsc_supernet_load_batch(net, N, xs[k], NULL);
    hsc_supernet_forward(net, &s.arch, HSC_BN_RECAL);
  }
  for (int ci = 0; ci < c; ci++) {
    T_NEAR(t, hsc_supernet_stats(net)[st->v[im].offset + ci], want_mean[ci],
           1e-5 * (1 + fabs(want_mean[ci])));
    T_NEAR(t, hsc_supernet_stats(net)[st->v[iv].offset + ci], want_var[ci], 1e-5 * (1 + fabs(want_var[ci])));
  }
  for (int ci = 0; ci < c; ci++) T_CHECK(t, want_var[ci] > 0 && isfinite(want_var[ci]));
  for (int k = 0; k < K; k++) free(xs[k]);
  hsc_supernet_free(net);
}

/* The stand-alone network of an architecture, given the supernet's leading slices, gamma = 1 and beta = 0,
 * computes the supernet's path: same logits in training mode. Checks that `retrain` trains the network
 * the search evaluated. Tolerance: the same operators on differently strided weights (the GEMMs may
 * block differently), rtol 1e-5. */
static void t_standalone_is_path(hsc_test *t) {
  small_space s;
  if (!small_space_init(t, &s)) return;
  hsc_error err = {0};
  hsc_supernet *sup = NULL, *alone = NULL;
  enum { N = 4 };
  if (hsc_supernet_create(&sup, &s.space, NULL, t->be, t->ctx, N, &err) != HSC_OK ||
      hsc_supernet_create(&alone, &s.space, &s.arch, t->be, t->ctx, N, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    hsc_supernet_free(sup);
    return;
  }
  hsc_supernet_init_weights(sup, 8);
  hsc_supernet_init_weights(alone, 9);
  const hsc_param_table *ps = hsc_supernet_params(sup), *pa = hsc_supernet_params(alone);
  float *ws = hsc_supernet_weights(sup), *wa = hsc_supernet_weights(alone);
  int copied = 0;
  for (int i = 0; i < pa->n; i++) {
    const hsc_param *a = &pa->v[i];
    const size_t len = strlen(a->name);
    if (len > 6 && !strcmp(a->name + len - 6, ".gamma")) {
      for (size_t j = 0; j < a->count; j++) wa[a->offset + j] = 1.0f;
      continue;
    }
    if (len > 5 && !strcmp(a->name + len - 5, ".beta")) {
      for (size_t j = 0; j < a->count; j++) wa[a->offset + j] = 0.0f;
      continue;
    }
    const int k = hsc_param_find(ps, a->name);
    T_REQUIRE(t, k >= 0);
    const hsc_param *p = &ps->v[k];
    T_REQUIRE(t, p->ndim == a->ndim);
    /* Leading slice: rows of a->dims[0], each the first a->count / dims[0] of p's row (kernels whole). */
    const size_t rows = (size_t)a->dims[0], arow = a->count / rows, prow = p->count / (size_t)p->dims[0];
    for (size_t r = 0; r < rows; r++)
      for (size_t j = 0; j < arow; j++) {
        /* For 2-D [out, in] the row holds `in` values; for [c, k, k] and the stem whole rows match. */
        wa[a->offset + r * arow + j] = ws[p->offset + r * prow + j];
      }
    copied++;
  }
  T_CHECK(t, copied > 10);
  float *x = tu_randn(77, (size_t)N * 12 * 12, 1.0f);
  hsc_supernet_load_batch(sup, N, x, NULL);
  hsc_supernet_load_batch(alone, N, x, NULL);
  const float *ls = hsc_supernet_forward(sup, &s.arch, HSC_BN_TRAIN);
  float *keep = tu_copy(ls, (size_t)N * 10);
  const float *la = hsc_supernet_forward(alone, &s.arch, HSC_BN_TRAIN);
  T_CLOSE(t, "stand-alone logits", la, keep, (size_t)N * 10, 1e-5, 1e-6);
  free(keep);
  free(x);
  hsc_supernet_free(sup);
  hsc_supernet_free(alone);
}

/* ---- the evaluation service and fine-tuning, on a tiny run (tu_tiny_run: 10 steps per epoch) ---- */

enum { TINY_STEPS = 10 };

static int train_tiny(hsc_test *t, const hsc_config *cfg) {
  hsc_error err = {0};
  hsc_train_result res;
  if (hsc_train_supernet(cfg, MPI_COMM_SELF, 0, &res, &err) != HSC_OK) {
    T_FAIL(t, "training the tiny supernet: %s", err.msg);
    return 0;
  }
  T_EQ_INT(t, res.step, TINY_STEPS);
  return 1;
}

/* Bitwise equality of two evaluation results. */
static int same_eval(const hsc_eval_result *a, const hsc_eval_result *b) {
  return !memcmp(&a->loss, &b->loss, sizeof a->loss) && !memcmp(&a->top1, &b->top1, sizeof a->top1) &&
         !memcmp(&a->top5, &b->top5, sizeof a->top5) && a->images == b->images;
}

static const char *const ARCHS[3] = {"xception:1.0,shuffle5:0.5,shuffle7:1.5",
                                     "shuffle3:0.5,shuffle3:1.0,xception:0.5",
                                     "shuffle7:1.5,xception:1.5,shuffle5:1.0"};

/* The evaluator computes what `hsconas eval` computes, bit for bit, whatever it evaluated before. */
static void t_evaluator_equals_eval(hsc_test *t) {
  char tmp[64];
  if (!tu_tmpdir(t, "train", tmp, sizeof tmp)) return;
  hsc_config cfg;
  hsc_space sp;
  hsc_error err = {0};
  hsc_arch archs[3];
  if (!tu_tiny_run(t, tmp, 1, &cfg, &sp) || !train_tiny(t, &cfg)) goto out;
  for (int i = 0; i < 3; i++)
    if (hsc_arch_parse(&sp, ARCHS[i], &archs[i], &err) != HSC_OK) {
      T_FAIL(t, "%s", err.msg);
      goto out;
    }
  hsc_eval_result want[3], got[3], again[3];
  if (hsc_eval_supernet(&cfg, MPI_COMM_SELF, archs, 3, want, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    goto out;
  }
  hsc_evaluator *ev = NULL;
  if (hsc_evaluator_open(&ev, &cfg, MPI_COMM_SELF, 1, &err) != HSC_OK ||
      hsc_evaluator_load(ev, "supernet", &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    hsc_evaluator_close(ev);
    goto out;
  }
  for (int i = 0; i < 3; i++) hsc_evaluator_eval(ev, &archs[i], &got[i]);
  for (int i = 2; i >= 0; i--) hsc_evaluator_eval(ev, &archs[i], &again[i]); /* another history */
  hsc_evaluator_close(ev);
  for (int i = 0; i < 3; i++) {
    if (!same_eval(&got[i], &want[i]) || !same_eval(&again[i], &want[i]))
      T_FAIL(t, "%s: evaluator loss %.17g top1 %.17g (again %.17g), eval loss %.17g top1 %.17g", ARCHS[i],
             got[i].loss, got[i].top1, again[i].loss, want[i].loss, want[i].top1);
    T_EQ_INT(t, want[i].images, 40); /* eval.val_images of the 60 held out */
    T_CHECK(t, isfinite(want[i].loss) && want[i].loss > 0);
    T_CHECK(t, want[i].top1 >= 0 && want[i].top1 <= want[i].top5 && want[i].top5 <= 100);
  }
  /* Not one number for every path: the architectures are evaluated, not the same network three times. */
  T_CHECK(t, want[0].loss != want[1].loss && want[1].loss != want[2].loss);
out:
  tu_rmtree(tmp);
}

/* Parameter-table-sized host copy of one group ("params", "optim", "state") of the newest checkpoint of
 * phase in dir (padding between entries zero); NULL with the case failed when it cannot be read. */
static float *ckpt_group(hsc_test *t, const char *dir, const char *phase, const char *group,
                         const hsc_param_table *tb) {
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  if (hsc_ckpt_open_latest(dir, phase, &ck, &err) != HSC_OK || !ck) {
    T_FAIL(t, "%s: no usable %s checkpoint %s", dir, phase, err.msg);
    return NULL;
  }
  float *h = hsc_xcalloc(tb->total, sizeof(float));
  for (int i = 0; i < tb->n && h; i++) {
    char name[128];
    snprintf(name, sizeof name, "/%s/%s", group, tb->v[i].name);
    if (hsc_ckpt_read_f32(ck, name, tb->v[i].count, h + tb->v[i].offset, &err) != HSC_OK) {
      T_FAIL(t, "%s", err.msg);
      free(h);
      h = NULL;
    }
  }
  hsc_ckpt_close(ck);
  return h;
}

/* An integer attribute of the newest checkpoint of phase in dir (-1 with the case failed when missing). */
static int64_t ckpt_int(hsc_test *t, const char *dir, const char *phase, const char *key) {
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  int64_t v = -1;
  if (hsc_ckpt_open_latest(dir, phase, &ck, &err) != HSC_OK || !ck ||
      hsc_ckpt_get_int(ck, key, &v, &err) != HSC_OK)
    T_FAIL(t, "%s: %s of the newest %s checkpoint: %s", dir, key, phase, err.msg);
  hsc_ckpt_close(ck);
  return v;
}

static int ckpt_exists(const char *dir, const char *phase) {
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  hsc_status st = hsc_ckpt_open_latest(dir, phase, &ck, &err);
  hsc_ckpt_close(ck);
  return st != HSC_OK || ck != NULL;
}

/* Block l allows only shuffle5 at scale index 0 (0.5): every other operator, and channels beyond the
 * half-scale mid width, are outside the shrunk space. */
static void narrow_mask(const hsc_space *sp, hsc_space_mask *m) {
  memset(m, 0, sizeof *m);
  for (int l = 0; l < sp->nblocks; l++) {
    m->op[l][HSC_OP_SHUFFLE5] = 1;
    m->scale[l][0] = 1;
  }
}

/* Fine-tuning within a mask trains what the mask allows and nothing else: parameters of removed operators
 * and the channels of removed scales keep the from-phase's values bit for bit; the rest moves. */
static void t_finetune_mask(hsc_test *t) {
  char tmp[64], dir[128];
  if (!tu_tmpdir(t, "train", tmp, sizeof tmp)) return;
  snprintf(dir, sizeof dir, "%s/run/checkpoints", tmp);
  hsc_config cfg;
  hsc_space sp;
  hsc_error err = {0};
  hsc_supernet *net = NULL;
  float *before = NULL, *after = NULL;
  if (!tu_tiny_run(t, tmp, 1, &cfg, &sp) || !train_tiny(t, &cfg)) goto out;
  hsc_space_mask mask;
  narrow_mask(&sp, &mask);
  /* Every path of the stage's stream is within the mask (and the stream is not the supernet's). */
  int outside_unmasked = 0;
  for (int s = 0; s < TINY_STEPS; s++) {
    hsc_rng r;
    hsc_arch a, b;
    hsc_rng_init(&r, (uint64_t)cfg.run.seed, HSC_RNG_PATH, ((uint64_t)1 << 40) + (uint64_t)s);
    hsc_arch_sample(&sp, &mask, &r, &a);
    T_CHECK(t, hsc_arch_valid(&sp, &mask, &a));
    hsc_rng_init(&r, (uint64_t)cfg.run.seed, HSC_RNG_PATH, ((uint64_t)1 << 40) + (uint64_t)s);
    hsc_arch_sample(&sp, NULL, &r, &b);
    outside_unmasked += !hsc_arch_valid(&sp, &mask, &b);
  }
  T_CHECK(t, outside_unmasked > 0);

  hsc_train_result res;
  if (hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 0, "supernet", "stage0", 1, 0.05, &res, &err) !=
      HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    goto out;
  }
  T_EQ_INT(t, res.step, TINY_STEPS);
  T_EQ_INT(t, res.total_steps, TINY_STEPS);
  T_EQ_INT(t, ckpt_int(t, dir, "stage0", "finished"), 1);
  T_EQ_INT(t, ckpt_int(t, dir, "stage0", "stage"), 0);
  T_EQ_INT(t, ckpt_int(t, dir, "stage0", "step"), TINY_STEPS);
  if (hsc_supernet_create(&net, &sp, NULL, t->be, t->ctx, 1, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    goto out;
  }
  const hsc_param_table *pt = hsc_supernet_params(net);
  before = ckpt_group(t, dir, "supernet", "params", pt);
  after = ckpt_group(t, dir, "stage0", "params", pt);
  if (!before || !after) goto out;
  int removed = 0, moved = 0;
  for (int i = 0; i < pt->n; i++) {
    const hsc_param *p = &pt->v[i];
    const float *b = before + p->offset, *a = after + p->offset;
    if (strncmp(p->name, "blocks.", 7) != 0) { /* stem, head, classifier: on every path */
      if (!memcmp(a, b, p->count * sizeof(float))) T_FAIL(t, "%s did not change", p->name);
      continue;
    }
    if (!strstr(p->name, ".shuffle5.")) {
      if (memcmp(a, b, p->count * sizeof(float))) T_FAIL(t, "%s (a removed operator) changed", p->name);
      removed++;
      continue;
    }
    /* The allowed operator's first pointwise [max mid, main_in]: rows below the half-scale mid move, the
     * rows above it belong to the removed scales. */
    int l = -1;
    char unit[16] = "";
    if (sscanf(p->name, "blocks.%d.shuffle5.%15s", &l, unit) != 2 || strcmp(unit, "pw1") != 0) continue;
    const size_t row = p->count / (size_t)p->dims[0], mid = (size_t)sp.mid[l][0];
    T_CHECK(t, mid < (size_t)p->dims[0]);
    if (!memcmp(a, b, mid * row * sizeof(float))) T_FAIL(t, "%s: the allowed rows did not change", p->name);
    if (memcmp(a + mid * row, b + mid * row, (p->count - mid * row) * sizeof(float)))
      T_FAIL(t, "%s: rows of removed scales changed", p->name);
    moved++;
  }
  T_CHECK(t, removed > 0);
  T_EQ_INT(t, moved, sp.nblocks);
  /* Momentum restarted at 0: a removed operator's buffer is still 0 (it was not in the supernet's). */
  free(before);
  before = ckpt_group(t, dir, "stage0", "optim", pt);
  const int k = hsc_param_find(pt, "blocks.0.shuffle3.pw1");
  float *sup_m = ckpt_group(t, dir, "supernet", "optim", pt);
  T_CHECK(t, k >= 0);
  if (before && sup_m && k >= 0) {
    int zero = 1, sup_zero = 1;
    for (size_t j = 0; j < pt->v[k].count; j++) {
      zero &= before[pt->v[k].offset + j] == 0.0f;
      sup_zero &= sup_m[pt->v[k].offset + j] == 0.0f;
    }
    T_CHECK(t, zero && !sup_zero);
  }
  free(sup_m);

  /* Finished: a second call returns at once and writes nothing new. */
  free(after);
  after = NULL;
  if (hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 0, "supernet", "stage0", 1, 0.05, &res, &err) !=
      HSC_OK)
    T_FAIL(t, "%s", err.msg);
  T_EQ_INT(t, res.step, TINY_STEPS);
  /* The phase belongs to its stage and mask: resuming it for another stage is refused. */
  hsc_status st =
      hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 1, "supernet", "stage0", 1, 0.05, &res, &err);
  T_EQ_INT(t, st, HSC_ERR_INPUT);
  if (st != HSC_OK && !strstr(err.msg, "fine-tunes another space")) T_FAIL(t, "message: %s", err.msg);
  /* No epochs: nothing to train, nothing written. */
  T_EQ_INT(t, hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 1, "stage0", "stage1", 0, 0.05, &res, &err),
           HSC_OK);
  T_EQ_INT(t, res.step, 0);
  T_CHECK(t, !ckpt_exists(dir, "stage1"));
out:
  free(before);
  free(after);
  hsc_supernet_free(net);
  tu_rmtree(tmp);
}

/* A fine-tuning stopped at a step boundary and resumed ends bit for bit where an uninterrupted one ends:
 * weights, momentum, BN statistics and loader position. */
static void t_finetune_resume(hsc_test *t) {
  char tmp[64], dir[128];
  if (!tu_tmpdir(t, "train", tmp, sizeof tmp)) return;
  snprintf(dir, sizeof dir, "%s/run/checkpoints", tmp);
  hsc_config cfg;
  hsc_space sp;
  hsc_error err = {0};
  hsc_supernet *net = NULL;
  if (!tu_tiny_run(t, tmp, 1, &cfg, &sp) || !train_tiny(t, &cfg)) goto out;
  hsc_space_mask mask;
  hsc_space_mask_full(&sp, &mask);
  for (int l = 0; l < sp.nblocks; l++) mask.op[l][HSC_OP_XCEPTION] = 0, mask.scale[l][2] = 0;
  hsc_train_result res;
  if (hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 2, "supernet", "whole", 1, 0.05, &res, &err) !=
      HSC_OK)
    T_FAIL(t, "%s", err.msg);
  setenv("HSC_STOP_AT_STEP", "6", 1); /* between two periodic checkpoints (every 4 steps) */
  hsc_status st =
      hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 2, "supernet", "split", 1, 0.05, &res, &err);
  unsetenv("HSC_STOP_AT_STEP");
  T_EQ_INT(t, st, HSC_ERR_STOPPED);
  T_EQ_INT(t, res.step, 6);
  T_EQ_INT(t, ckpt_int(t, dir, "split", "finished"), 0);
  if (hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 2, "supernet", "split", 1, 0.05, &res, &err) !=
      HSC_OK)
    T_FAIL(t, "%s", err.msg);
  T_EQ_INT(t, res.step, TINY_STEPS);
  T_EQ_INT(t, ckpt_int(t, dir, "split", "finished"), 1);
  if (hsc_supernet_create(&net, &sp, NULL, t->be, t->ctx, 1, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    goto out;
  }
  static const char *const groups[3] = {"params", "optim", "state"};
  for (int g = 0; g < 3; g++) {
    const hsc_param_table *tb = g < 2 ? hsc_supernet_params(net) : hsc_supernet_state(net);
    float *whole = ckpt_group(t, dir, "whole", groups[g], tb),
          *split = ckpt_group(t, dir, "split", groups[g], tb);
    if (whole && split && memcmp(whole, split, tb->total * sizeof(float)))
      T_FAIL(t, "/%s differs between the uninterrupted and the resumed fine-tuning", groups[g]);
    free(whole);
    free(split);
  }
  T_EQ_INT(t, ckpt_int(t, dir, "split", "epoch"), ckpt_int(t, dir, "whole", "epoch"));
out:
  hsc_supernet_free(net);
  tu_rmtree(tmp);
}

/* Bad starts are errors naming what is wrong, and nothing is written: no validation split, no checkpoint
 * of the phase to load or to start from, a from-phase that did not finish. */
static void t_finetune_errors(hsc_test *t) {
  char tmp[64], dir[128];
  if (!tu_tmpdir(t, "train", tmp, sizeof tmp)) return;
  snprintf(dir, sizeof dir, "%s/run/checkpoints", tmp);
  hsc_config cfg;
  hsc_space sp;
  hsc_error err = {0};
  hsc_train_result res;
  hsc_evaluator *ev = NULL;
  if (!tu_tiny_run(t, tmp, 1, &cfg, &sp)) goto out;
  hsc_space_mask mask;
  narrow_mask(&sp, &mask);
  /* Nothing trained yet. */
  T_EQ_INT(t, hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 0, "supernet", "stage0", 1, 0.05, &res, &err),
           HSC_ERR_INPUT);
  if (!strstr(err.msg, dir) || !strstr(err.msg, "holds no supernet checkpoint"))
    T_FAIL(t, "message: %s", err.msg);
  T_CHECK(t, !ckpt_exists(dir, "stage0"));
  if (hsc_evaluator_open(&ev, &cfg, MPI_COMM_SELF, 1, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
  } else {
    T_EQ_INT(t, hsc_evaluator_load(ev, "stage3", &err), HSC_ERR_INPUT);
    if (!strstr(err.msg, dir) || !strstr(err.msg, "holds no stage3 checkpoint"))
      T_FAIL(t, "message: %s", err.msg);
    hsc_evaluator_close(ev);
  }
  /* A supernet stopped after 3 of its 10 steps. */
  setenv("HSC_STOP_AT_STEP", "3", 1);
  hsc_status st = hsc_train_supernet(&cfg, MPI_COMM_SELF, 0, &res, &err);
  unsetenv("HSC_STOP_AT_STEP");
  T_EQ_INT(t, st, HSC_ERR_STOPPED);
  T_EQ_INT(t, hsc_finetune_supernet(&cfg, MPI_COMM_SELF, &mask, 0, "supernet", "stage0", 1, 0.05, &res, &err),
           HSC_ERR_INPUT);
  if (!strstr(err.msg, "supernet-0000000003.h5 is not finished")) T_FAIL(t, "message: %s", err.msg);
  T_CHECK(t, !ckpt_exists(dir, "stage0"));
  /* No validation split: the evaluator has nothing to evaluate on. */
  hsc_config c0 = cfg;
  if (hsc_config_set(&c0, "data.val_size=0", &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    goto out;
  }
  ev = NULL;
  T_EQ_INT(t, hsc_evaluator_open(&ev, &c0, MPI_COMM_SELF, 1, &err), HSC_ERR_INPUT);
  T_CHECK(t, ev == NULL);
  if (!strstr(err.msg, "data.val_size")) T_FAIL(t, "message: %s", err.msg);
out:
  tu_rmtree(tmp);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv); /* the training functions take a communicator: MPI_COMM_SELF here */
  static const hsc_test_case cases[] = {
      {"lr_schedule", t_lr_schedule},
      {"recal_average", t_recal_average},
      {"standalone_is_path", t_standalone_is_path},
      {"evaluator_equals_eval", t_evaluator_equals_eval},
      {"finetune_mask", t_finetune_mask},
      {"finetune_resume", t_finetune_resume},
      {"finetune_errors", t_finetune_errors},
  };
  int rc = hsc_test_main("test_train", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
