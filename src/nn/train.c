/* Supernet training and fine-tuning, stand-alone retraining and evaluation over an MPI communicator
 * (train.h).
 *
 * A "session" holds what all of them need: the space, the dataset (read by rank 0 and broadcast), the fixed
 * train/validation split, a backend context and the network (the last two absent on a rank that only takes
 * part in the collective steps: the search master). The training loop is one function, read top to bottom:
 * stop check, path, batch, forward, loss, backward, all-reduce, SGD, log, checkpoint. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsconas/checkpoint.h"
#include "hsconas/data.h"
#include "hsconas/rng.h"
#include "hsconas/signals.h"
#include "hsconas/supernet.h"
#include "hsconas/train.h"
#include "nn_internal.h"

typedef struct {
  const hsc_config *cfg;
  MPI_Comm comm;
  int rank, size;
  hsc_space space;
  hsc_dataset train, test;
  int have_test;
  hsc_subset fit, val, recal; /* supernet-training part, validation split, recalibration images */
  hsc_transform tr;
  const hsc_backend *be;
  hsc_backend_ctx *ctx;                  /* NULL on a rank without a network */
  hsc_supernet *net;                     /* NULL on a rank without a network */
  hsc_param_table own_params, own_state; /* that rank's tables: they name the checkpoint's datasets */
  const hsc_param_table *params, *state; /* the network's tables, or own_* */
  int eval_batch;
} session;

double hsc_lr_at(const char *schedule, double lr, int64_t warmup, int64_t t, int64_t total) {
  if (t < warmup) return lr * (double)(t + 1) / (double)warmup;
  const double span = (double)(total - warmup);
  const double p = span > 0 ? (double)(t - warmup) / span : 1.0;
  if (!strcmp(schedule, "cosine")) return lr * 0.5 * (1.0 + cos(M_PI * p));
  return lr * (1.0 - p);
}

/* Broadcasts a dataset that rank 0 loaded. */
static void bcast_dataset(hsc_dataset *ds, MPI_Comm comm, int rank) {
  int dims[5] = {ds->n, ds->c, ds->h, ds->w, ds->classes};
  HSC_CHECK_MPI(MPI_Bcast(dims, 5, MPI_INT, 0, comm));
  if (rank != 0) {
    memset(ds, 0, sizeof *ds);
    ds->n = dims[0], ds->c = dims[1], ds->h = dims[2], ds->w = dims[3], ds->classes = dims[4];
    ds->images = hsc_xmalloc((size_t)ds->n * ds->c * ds->h * ds->w);
    ds->labels = hsc_xmalloc((size_t)ds->n * sizeof(int32_t));
  }
  const size_t bytes = (size_t)ds->n * ds->c * ds->h * ds->w;
  /* MPI counts are ints: send in pieces of 1 GiB. */
  for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
    const size_t len = bytes - off < ((size_t)1 << 30) ? bytes - off : ((size_t)1 << 30);
    HSC_CHECK_MPI(MPI_Bcast(ds->images + off, (int)len, MPI_BYTE, 0, comm));
  }
  HSC_CHECK_MPI(MPI_Bcast(ds->labels, ds->n, MPI_INT32_T, 0, comm));
  HSC_CHECK_MPI(MPI_Bcast(ds->source, (int)sizeof ds->source, MPI_CHAR, 0, comm));
}

int hsc_default_threads(const hsc_config *cfg) {
  if (cfg->dist.threads > 0) return cfg->dist.threads;
  if (getenv("OMP_NUM_THREADS")) return 0; /* the backend reads it */
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const int local = hsc_proc()->local_size > 0 ? hsc_proc()->local_size : 1;
  const long t = cores > 0 ? cores / local : 1;
  return t < 1 ? 1 : (int)t;
}

/* A fixed set of training images for BN recalibration: the first `count` of a permutation of the
 * supernet-training part drawn from (split_seed, HSC_RNG_SPLIT, 1), the same for every architecture, run
 * and rank count. */
static void recal_subset(const hsc_subset *fit, int count, uint64_t seed, hsc_subset *out) {
  int32_t *perm = hsc_xmalloc((size_t)fit->n * sizeof(int32_t));
  memcpy(perm, fit->index, (size_t)fit->n * sizeof(int32_t));
  hsc_rng r;
  hsc_rng_init(&r, seed, HSC_RNG_SPLIT, 1);
  if (count > fit->n) count = fit->n;
  for (int i = 0; i < count; i++) { /* partial Fisher-Yates: the first `count` positions */
    const int j = i + (int)hsc_rng_below(&r, (uint32_t)(fit->n - i));
    const int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  out->n = count;
  out->index = perm;
}

static void session_close(session *s) {
  hsc_supernet_free(s->net);
  if (s->ctx) s->be->free(s->ctx);
  hsc_table_free(&s->own_params);
  hsc_table_free(&s->own_state);
  hsc_dataset_free(&s->train);
  if (s->have_test) hsc_dataset_free(&s->test);
  hsc_subset_free(&s->fit);
  hsc_subset_free(&s->val);
  hsc_subset_free(&s->recal);
  memset(s, 0, sizeof *s);
}

/* What a session holds; all zero: supernet training. */
typedef struct {
  const hsc_arch *fixed; /* NULL: the supernet; else the stand-alone network of this architecture */
  int need_test;         /* also the test set (retrain) */
  int whole_train;       /* fit on all training images (retrain) instead of the split */
  int evaluating;        /* buffers for data.eval_batch_size instead of the training shard */
  int no_net;            /* no backend context and no network: only the collective steps (search master) */
} session_opts;

static hsc_status session_open(session *s, const hsc_config *cfg, MPI_Comm comm, const session_opts *o,
                               hsc_error *err) {
  const hsc_arch *fixed = o->fixed;
  const int need_test = o->need_test;
  memset(s, 0, sizeof *s);
  s->cfg = cfg;
  s->comm = comm;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &s->rank));
  HSC_CHECK_MPI(MPI_Comm_size(comm, &s->size));
  hsc_status st = hsc_space_init(&s->space, cfg, err);
  if (st != HSC_OK) return st;
  if (fixed && !hsc_arch_valid(&s->space, NULL, fixed))
    return hsc_error_set(err, HSC_ERR_INPUT, "the architecture does not belong to the configured space");

  st = HSC_OK;
  if (s->rank == 0) st = hsc_fmnist_load(cfg->data.path, &s->train, need_test ? &s->test : NULL, err);
  if (hsc_agree(comm, st, err) != HSC_OK) {
    if (s->rank == 0 && st == HSC_OK) hsc_dataset_free(&s->train);
    return err->code;
  }
  bcast_dataset(&s->train, comm, s->rank);
  if (need_test) {
    bcast_dataset(&s->test, comm, s->rank);
    s->have_test = 1;
  }
  const hsc_dataset *d = &s->train;
  const hsc_space *sp = &s->space;
  if (d->c != sp->in_c || d->h != sp->in_h || d->w != sp->in_w || d->classes != sp->classes) {
    hsc_error_set(err, HSC_ERR_INPUT,
                  "%s holds %dx%dx%d images of %d classes, but the space (space.input_channels, "
                  "space.input_size, space.classes) expects %dx%dx%d and %d classes",
                  d->source, d->c, d->h, d->w, d->classes, sp->in_c, sp->in_h, sp->in_w, sp->classes);
    session_close(s);
    return err->code;
  }
  if (cfg->data.n_mean != d->c || cfg->data.n_std != d->c) {
    hsc_error_set(err, HSC_ERR_INPUT, "data.mean and data.std need %d entries (one per input channel)", d->c);
    session_close(s);
    return err->code;
  }
  if (o->whole_train)
    hsc_subset_all(d->n, &s->fit);
  else
    hsc_subset_split(d->n, cfg->data.val_size, (uint64_t)cfg->data.split_seed, &s->fit, &s->val);
  const int64_t recal = (int64_t)cfg->eval.recal_batches * cfg->data.eval_batch_size;
  recal_subset(&s->fit, recal < s->fit.n ? (int)recal : s->fit.n, (uint64_t)cfg->data.split_seed, &s->recal);
  hsc_transform_from_config(cfg, &s->tr);

  s->be = hsc_backend_find(cfg->dist.backend, err);
  if (!s->be) {
    session_close(s);
    return err->code;
  }
  if (o->no_net) {
    hsc_supernet_layout(&s->space, fixed, &s->own_params, &s->own_state);
    s->params = &s->own_params;
    s->state = &s->own_state;
    return HSC_OK;
  }
  hsc_backend_opts bo = {
      .threads = hsc_default_threads(cfg), .device = -1, .gpus_per_node = cfg->dist.gpus_per_node};
  if ((st = s->be->init(&s->ctx, &bo, err)) != HSC_OK) {
    s->ctx = NULL;
    session_close(s);
    return st;
  }
  /* Buffers for the larger of the two batches this session runs: training shards, or evaluation batches
   * (BN recalibration, validation). Activations for the backward cost several MB per image. */
  const int local_batch = cfg->data.batch_size / s->size;
  const int max_batch = o->evaluating ? cfg->data.eval_batch_size : local_batch;
  s->eval_batch = o->evaluating ? cfg->data.eval_batch_size : local_batch;
  if ((st = hsc_supernet_create(&s->net, &s->space, fixed, s->be, s->ctx, max_batch, err)) != HSC_OK) {
    session_close(s);
    return st;
  }
  hsc_supernet_set_bn(s->net, (float)cfg->supernet.bn_momentum, (float)cfg->supernet.bn_eps);
  s->params = hsc_supernet_params(s->net);
  s->state = hsc_supernet_state(s->net);
  return HSC_OK;
}

/* ---- checkpoints ---- */

typedef struct {
  const char *dir, *phase;
  const char *arch_text;      /* retrain: the architecture */
  const hsc_space_mask *mask; /* fine-tuning: the shrunk space (/space/op_mask, /space/scale_mask) */
  int stage;                  /* fine-tuning: the shrinking stage (meta "stage") */
} ckpt_target;

/* Averages the BN running statistics over the ranks (each rank saw its own shard). */
static void average_stats(session *s) {
  if (s->size == 1) return;
  const hsc_param_table *st = hsc_supernet_state(s->net);
  float *h = hsc_xmalloc(st->total * sizeof(float));
  s->be->download(s->ctx, h, hsc_supernet_stats(s->net), st->total * sizeof(float));
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, h, (int)st->total, MPI_FLOAT, MPI_SUM, s->comm));
  const float inv = 1.0f / (float)s->size;
  for (size_t i = 0; i < st->total; i++) h[i] *= inv;
  s->be->upload(s->ctx, hsc_supernet_stats(s->net), h, st->total * sizeof(float));
  free(h);
}

static hsc_status write_table(hsc_ckpt *ck, const char *group, const hsc_param_table *t, const float *host,
                              hsc_error *err) {
  for (int i = 0; i < t->n; i++) {
    char name[128];
    snprintf(name, sizeof name, "/%s/%s", group, t->v[i].name);
    hsc_status st = hsc_ckpt_write_f32(ck, name, t->v[i].ndim, t->v[i].dims, host + t->v[i].offset, err);
    if (st != HSC_OK) return st;
  }
  return HSC_OK;
}

static hsc_status read_table(hsc_ckpt *ck, const char *group, const hsc_param_table *t, float *host,
                             hsc_error *err) {
  for (int i = 0; i < t->n; i++) {
    char name[128];
    snprintf(name, sizeof name, "/%s/%s", group, t->v[i].name);
    hsc_status st = hsc_ckpt_read_f32(ck, name, t->v[i].count, host + t->v[i].offset, err);
    if (st != HSC_OK) return st;
  }
  return HSC_OK;
}

/* A fine-tuning checkpoint's space: op_mask [nblocks, HSC_OP_COUNT] (indexed by hsc_op) and scale_mask
 * [nblocks, nscales], 1 where the choice is allowed. */
static hsc_status write_mask(hsc_ckpt *ck, const hsc_space *sp, const hsc_space_mask *m, hsc_error *err) {
  uint8_t scales[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
  for (int l = 0; l < sp->nblocks; l++) memcpy(scales + l * sp->nscales, m->scale[l], (size_t)sp->nscales);
  const int64_t od[2] = {sp->nblocks, HSC_OP_COUNT}, sd[2] = {sp->nblocks, sp->nscales};
  hsc_status st = hsc_ckpt_write_u8(ck, "/space/op_mask", 2, od, &m->op[0][0], err);
  if (st == HSC_OK) st = hsc_ckpt_write_u8(ck, "/space/scale_mask", 2, sd, scales, err);
  return st;
}

/* Resuming a fine-tuning: the checkpoint must be of the same stage and mask (the paths depend on both). */
static hsc_status check_mask(hsc_ckpt *ck, const hsc_space *sp, const ckpt_target *tg, hsc_error *err) {
  uint8_t ops[HSC_MAX_BLOCKS * HSC_OP_COUNT], scales[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
  int64_t stage = 0;
  hsc_status st;
  if ((st = hsc_ckpt_get_int(ck, "stage", &stage, err)) != HSC_OK ||
      (st = hsc_ckpt_read_u8(ck, "/space/op_mask", (size_t)sp->nblocks * HSC_OP_COUNT, ops, err)) != HSC_OK ||
      (st = hsc_ckpt_read_u8(ck, "/space/scale_mask", (size_t)sp->nblocks * sp->nscales, scales, err)) !=
          HSC_OK)
    return st;
  int same = stage == tg->stage;
  for (int l = 0; l < sp->nblocks; l++) {
    same &= !memcmp(ops + l * HSC_OP_COUNT, tg->mask->op[l], HSC_OP_COUNT);
    same &= !memcmp(scales + l * sp->nscales, tg->mask->scale[l], (size_t)sp->nscales);
  }
  if (!same)
    return hsc_error_set(
        err, HSC_ERR_INPUT,
        "%s fine-tunes another space (stage %lld, /space/op_mask or /space/scale_mask differ "
        "from stage %d's)",
        hsc_ckpt_path(ck), (long long)stage, tg->stage);
  return HSC_OK;
}

/* Collective: rank 0 writes the checkpoint of `step`; every rank returns the outcome. */
static hsc_status save_checkpoint(session *s, const ckpt_target *tg, int64_t step, int64_t total,
                                  hsc_data_cursor cur, int finished, hsc_error *err) {
  average_stats(s);
  hsc_status st = HSC_OK;
  if (s->rank == 0) {
    const hsc_param_table *pt = hsc_supernet_params(s->net), *stt = hsc_supernet_state(s->net);
    float *w = hsc_xmalloc(pt->total * sizeof(float)), *m = hsc_xmalloc(pt->total * sizeof(float));
    float *bn = hsc_xmalloc(stt->total * sizeof(float));
    s->be->download(s->ctx, w, hsc_supernet_weights(s->net), pt->total * sizeof(float));
    s->be->download(s->ctx, m, hsc_supernet_momentum(s->net), pt->total * sizeof(float));
    s->be->download(s->ctx, bn, hsc_supernet_stats(s->net), stt->total * sizeof(float));
    char path[HSC_CFG_PATH + 128];
    hsc_ckpt_name(tg->dir, tg->phase, step, path, sizeof path);
    char *cfg_text = hsc_config_dump(s->cfg, 0);
    hsc_ckpt *ck = NULL;
    /* The generators are counter-based: (seed, step) and the data cursor are their whole state. */
    const int64_t two = 2, three = 3;
    const int64_t rng[3] = {s->cfg->run.seed, step, (int64_t)s->space.hash};
    const int64_t cursor[2] = {cur.epoch, cur.batch};
    if ((st = hsc_ckpt_create(&ck, path, err)) == HSC_OK) {
      if ((st = hsc_ckpt_meta_str(ck, "phase", tg->phase, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "step", step, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "total_steps", total, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "epoch", cur.epoch, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "finished", finished, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "world_size", s->size, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "seed", s->cfg->run.seed, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_str(ck, "config", cfg_text, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "config_hash", (int64_t)hsc_config_hash(s->cfg), err)) == HSC_OK &&
          (st = hsc_ckpt_meta_int(ck, "space_hash", (int64_t)s->space.hash, err)) == HSC_OK &&
          (st = hsc_ckpt_meta_str(ck, "backend", s->be->name, err)) == HSC_OK &&
          (!tg->arch_text || (st = hsc_ckpt_meta_str(ck, "arch", tg->arch_text, err)) == HSC_OK) &&
          (!tg->mask || ((st = hsc_ckpt_meta_int(ck, "stage", tg->stage, err)) == HSC_OK &&
                         (st = write_mask(ck, &s->space, tg->mask, err)) == HSC_OK)) &&
          (st = write_table(ck, "params", pt, w, err)) == HSC_OK &&
          (st = write_table(ck, "optim", pt, m, err)) == HSC_OK &&
          (st = write_table(ck, "state", stt, bn, err)) == HSC_OK &&
          (st = hsc_ckpt_write_i64(ck, "/rng", 1, &three, rng, err)) == HSC_OK &&
          (st = hsc_ckpt_write_i64(ck, "/data", 1, &two, cursor, err)) == HSC_OK) {
        st = hsc_ckpt_commit(ck, err);
      } else {
        hsc_ckpt_abort(ck);
      }
    }
    if (st == HSC_OK) st = hsc_ckpt_prune(tg->dir, tg->phase, s->cfg->checkpoint.keep, err);
    if (st == HSC_OK) hsc_log(HSC_LOG_INFO, "checkpoint %s", path);
    free(cfg_text), free(w), free(m), free(bn);
  }
  return hsc_agree(s->comm, st, err);
}

typedef struct {
  int64_t step;
  hsc_data_cursor cur;
  int finished;
} resume_point;

/* What load_checkpoint restores besides the weights and BN statistics, and what it requires. */
enum {
  LOAD_RESUME = 1, /* the training state too: momentum (/optim) and the loader position (/data) */
  LOAD_FINAL = 2,  /* a finished run only (meta "finished" 1) */
};

/* Collective: rank 0 reads the newest valid checkpoint of the phase and broadcasts it into every rank's
 * network (a rank without one receives it and drops it). *found = 0 when there is none. Without
 * LOAD_RESUME the momentum is left alone and rp->cur is {0, 0}. */
static hsc_status load_checkpoint(session *s, const ckpt_target *tg, int what, resume_point *rp, int *found,
                                  hsc_error *err) {
  const hsc_param_table *pt = s->params, *stt = s->state;
  const int resume = (what & LOAD_RESUME) != 0;
  /* Host copies of the buffers, allocated only where a checkpoint is read or received (m: to resume). */
  float *w = NULL, *m = NULL, *bn = NULL;
  int64_t info[5] = {0, 0, 0, 0, 0}; /* found, step, epoch, batch, finished */
  hsc_status st = HSC_OK;
  *found = 0;
  if (s->rank == 0) {
    hsc_ckpt *ck = NULL;
    st = hsc_ckpt_open_latest(tg->dir, tg->phase, &ck, err);
    if (st == HSC_OK && ck) {
      w = hsc_xmalloc(pt->total * sizeof(float));
      if (resume) m = hsc_xmalloc(pt->total * sizeof(float));
      bn = hsc_xmalloc(stt->total * sizeof(float));
      int64_t space_hash = 0, total = 0, cursor[2] = {0, 0};
      char arch[4096] = "";
      if ((st = hsc_ckpt_get_int(ck, "space_hash", &space_hash, err)) == HSC_OK &&
          (uint64_t)space_hash != s->space.hash)
        st = hsc_error_set(err, HSC_ERR_INPUT,
                           "%s was written for another search space (space hash %016llx, this config's "
                           "%016llx); use the run directory of that configuration",
                           hsc_ckpt_path(ck), (unsigned long long)space_hash,
                           (unsigned long long)s->space.hash);
      if (st == HSC_OK && tg->arch_text &&
          (st = hsc_ckpt_get_str(ck, "arch", arch, sizeof arch, err)) == HSC_OK &&
          strcmp(arch, tg->arch_text) != 0)
        st = hsc_error_set(err, HSC_ERR_INPUT, "%s retrains another architecture (%s)", hsc_ckpt_path(ck),
                           arch);
      if (st == HSC_OK && tg->mask && resume) st = check_mask(ck, &s->space, tg, err);
      if (st == HSC_OK && (st = hsc_ckpt_get_int(ck, "step", &info[1], err)) == HSC_OK &&
          (st = hsc_ckpt_get_int(ck, "finished", &info[4], err)) == HSC_OK && (what & LOAD_FINAL) &&
          !info[4] && (st = hsc_ckpt_get_int(ck, "total_steps", &total, err)) == HSC_OK)
        st = hsc_error_set(err, HSC_ERR_INPUT,
                           "%s is not finished (step %lld of %lld): complete the %s phase first",
                           hsc_ckpt_path(ck), (long long)info[1], (long long)total, tg->phase);
      if (st == HSC_OK && (st = read_table(ck, "params", pt, w, err)) == HSC_OK &&
          (!resume || (st = read_table(ck, "optim", pt, m, err)) == HSC_OK) &&
          (st = read_table(ck, "state", stt, bn, err)) == HSC_OK &&
          (!resume || (st = hsc_ckpt_read_i64(ck, "/data", 2, cursor, err)) == HSC_OK)) {
        info[0] = 1;
        info[2] = cursor[0];
        info[3] = cursor[1];
        hsc_log(HSC_LOG_INFO, "%s %s (step %lld)", resume ? "resuming from" : "loading", hsc_ckpt_path(ck),
                (long long)info[1]);
        int64_t ranks = 0;
        if (resume && hsc_ckpt_get_int(ck, "world_size", &ranks, err) == HSC_OK && ranks != s->size)
          hsc_log(HSC_LOG_INFO,
                  "the checkpoint was written by %lld ranks, this run has %d: the same samples and paths "
                  "follow, the sums run in another order (not bit-identical to continuing on %lld)",
                  (long long)ranks, s->size, (long long)ranks);
      }
      hsc_ckpt_close(ck);
    }
  }
  if ((st = hsc_agree(s->comm, st, err)) == HSC_OK) {
    HSC_CHECK_MPI(MPI_Bcast(info, 5, MPI_INT64_T, 0, s->comm));
    if (info[0]) {
      if (!w) {
        w = hsc_xmalloc(pt->total * sizeof(float));
        if (resume) m = hsc_xmalloc(pt->total * sizeof(float));
        bn = hsc_xmalloc(stt->total * sizeof(float));
      }
      HSC_CHECK_MPI(MPI_Bcast(w, (int)pt->total, MPI_FLOAT, 0, s->comm));
      if (resume) HSC_CHECK_MPI(MPI_Bcast(m, (int)pt->total, MPI_FLOAT, 0, s->comm));
      HSC_CHECK_MPI(MPI_Bcast(bn, (int)stt->total, MPI_FLOAT, 0, s->comm));
      if (s->net) {
        s->be->upload(s->ctx, hsc_supernet_weights(s->net), w, pt->total * sizeof(float));
        if (resume) s->be->upload(s->ctx, hsc_supernet_momentum(s->net), m, pt->total * sizeof(float));
        s->be->upload(s->ctx, hsc_supernet_stats(s->net), bn, stt->total * sizeof(float));
      }
    }
    *found = (int)info[0];
    rp->step = info[1];
    rp->cur = (hsc_data_cursor){info[2], info[3]};
    rp->finished = (int)info[4];
  }
  free(w), free(m), free(bn);
  return st;
}

/* ---- training ---- */

typedef struct {
  int epochs;
  int64_t max_steps, warmup;
  double lr, momentum, weight_decay, smoothing;
  const char *schedule;
  int nesterov;
} schedule_opts;

/* The schedule of a config section with the supernet.* / retrain.* schedule keys (the same names in both). */
#define SCHEDULE_FROM(sec)                             \
  ((schedule_opts){.epochs = (sec).epochs,             \
                   .max_steps = (sec).max_steps,       \
                   .warmup = (sec).warmup_steps,       \
                   .lr = (sec).lr,                     \
                   .momentum = (sec).momentum,         \
                   .weight_decay = (sec).weight_decay, \
                   .smoothing = (sec).label_smoothing, \
                   .schedule = (sec).lr_schedule,      \
                   .nesterov = (sec).nesterov})

/* Which path step t trains, and where a run without a checkpoint of its own phase starts. All zero: supernet
 * training (uniform paths over the whole space, fresh weights). */
typedef struct {
  const hsc_arch *fixed;      /* retrain: always this architecture */
  const hsc_space_mask *mask; /* else a uniform path within it (NULL: the whole space), drawn from */
  uint64_t path_base;         /* (run.seed, HSC_RNG_PATH, path_base + t) */
  const ckpt_target *init;    /* start from this phase's final checkpoint (weights, BN; momentum 0) */
} loop_opts;

/* The loop shared by supernet training, fine-tuning and retraining. */
static hsc_status train_loop(session *s, const ckpt_target *tg, const loop_opts *lp, const schedule_opts *so,
                             int resume, hsc_train_result *res, hsc_error *err) {
  const hsc_config *cfg = s->cfg;
  hsc_status st;
  memset(res, 0, sizeof *res);
  hsc_loader_opts lo = {.ds = &s->train,
                        .sub = &s->fit,
                        .global_batch = cfg->data.batch_size,
                        .rank = s->rank,
                        .nranks = s->size,
                        .shuffle = 1,
                        .transform = s->tr,
                        .seed = (uint64_t)cfg->run.seed,
                        .prefetch = cfg->data.prefetch};
  if (s->fit.n < cfg->data.batch_size)
    return hsc_error_set(err, HSC_ERR_INPUT, "data.batch_size %d is larger than the %d training images",
                         cfg->data.batch_size, s->fit.n);
  hsc_loader *loader = hsc_loader_create(&lo);
  const int64_t bpe = hsc_loader_batches_per_epoch(loader);
  int64_t total = (int64_t)so->epochs * bpe;
  if (so->max_steps > 0 && so->max_steps < total) total = so->max_steps;

  resume_point rp = {0};
  int found = 0;
  if ((st = load_checkpoint(s, tg, LOAD_RESUME, &rp, &found, err)) != HSC_OK) goto done;
  if (found && !resume) {
    st =
        hsc_error_set(err, HSC_ERR_INPUT,
                      "%s already holds %s checkpoints: pass --resume to continue, or choose another run.dir",
                      tg->dir, tg->phase);
    goto done;
  }
  if (!found && lp->init) {
    /* The network is fresh: its momentum is 0. */
    resume_point ip;
    int have = 0;
    if ((st = load_checkpoint(s, lp->init, LOAD_FINAL, &ip, &have, err)) == HSC_OK && !have)
      st = hsc_error_set(err, HSC_ERR_INPUT, "%s holds no %s checkpoint to start %s from", lp->init->dir,
                         lp->init->phase, tg->phase);
    if (st != HSC_OK) goto done;
  } else if (!found) {
    hsc_supernet_init_weights(s->net, (uint64_t)cfg->run.seed);
  }
  int64_t t = found ? rp.step : 0;
  if (found) hsc_loader_seek(loader, rp.cur);
  res->total_steps = total;
  if (found && t >= total) {
    hsc_log(HSC_LOG_INFO, "%s: already trained (%lld of %lld steps)", tg->phase, (long long)t,
            (long long)total);
    res->step = t;
    st = HSC_OK;
    goto done;
  }

  const hsc_space *sp = &s->space;
  const int local_batch = cfg->data.batch_size / s->size;
  const size_t img = (size_t)sp->in_c * sp->in_h * sp->in_w;
  float *x = hsc_xmalloc((size_t)local_batch * img * sizeof(float));
  int32_t *y = hsc_xmalloc((size_t)local_batch * sizeof(int32_t));
  if (cfg->supernet.sync_bn && s->size > 1 && !lp->fixed) hsc_supernet_set_sync(s->net, s->comm);

  FILE *csv = NULL;
  if (s->rank == 0) {
    char path[HSC_CFG_PATH + 64];
    snprintf(path, sizeof path, "%s/%s.csv", tg->dir, tg->phase);
    const int fresh = access(path, F_OK) != 0;
    csv = fopen(path, "a");
    if (!csv) hsc_log(HSC_LOG_WARN, "cannot write %s: %s", path, strerror(errno));
    if (csv && fresh) fprintf(csv, "step,epoch,loss,top1,lr,images_per_s\n");
  }

  /* HSC_STOP_AT_STEP=N behaves as if a signal arrived before step N: a deterministic stop for the resume
   * tests and for debugging. */
  const char *stop_env = getenv("HSC_STOP_AT_STEP");
  char *stop_end = NULL;
  int64_t stop_at = stop_env ? strtoll(stop_env, &stop_end, 10) : -1;
  if (stop_env && (stop_end == stop_env || *stop_end || stop_at < 0)) {
    hsc_log(HSC_LOG_WARN, "ignoring HSC_STOP_AT_STEP='%s': not a step number", stop_env);
    stop_at = -1;
  }
  double win_loss = 0.0, win_hits = 0.0, win_images = 0.0;
  double t0 = hsc_now(), tw = t0;
  const int64_t t_start = t;
  hsc_data_cursor at = {0, 0};
  st = HSC_OK;
  for (; t < total; t++) {
    /* Stop at a step boundary when any rank got a signal; all ranks agree first. */
    int stop = hsc_signals_pending() != 0 || t == stop_at;
    HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, s->comm));
    if (stop) {
      hsc_log(HSC_LOG_INFO, "signal received: checkpointing at step %lld and stopping", (long long)t);
      st = save_checkpoint(s, tg, t, total, hsc_loader_cursor(loader), 0, err);
      if (st == HSC_OK)
        st =
            hsc_error_set(err, HSC_ERR_STOPPED, "stopped by a signal at step %lld (resumable)", (long long)t);
      break;
    }
    hsc_arch a;
    if (lp->fixed) {
      a = *lp->fixed;
    } else {
      hsc_rng r;
      hsc_rng_init(&r, (uint64_t)cfg->run.seed, HSC_RNG_PATH, lp->path_base + (uint64_t)t);
      hsc_arch_sample(sp, lp->mask, &r, &a);
    }
    hsc_loader_next(loader, x, y, &at);
    hsc_supernet_load_batch(s->net, local_batch, x, y);
    const double lr = hsc_lr_at(so->schedule, so->lr, so->warmup, t, total);
    const hsc_step_opts step = {.lr = (float)lr,
                                .momentum = (float)so->momentum,
                                .weight_decay = (float)so->weight_decay,
                                .smoothing = (float)so->smoothing,
                                .nesterov = so->nesterov};
    const hsc_batch_result br = hsc_supernet_train_step(s->net, &a, s->comm, &step);

    win_loss += br.loss * local_batch;
    win_hits += br.top1;
    win_images += local_batch;
    const int64_t done = t + 1;
    if (done % cfg->log.every_steps == 0 || done == total) {
      double sums[3] = {win_loss, win_hits, win_images};
      HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, s->comm));
      const double now = hsc_now();
      const double ips = sums[2] / (now - tw);
      const double eta = (double)(total - done) * (now - t0) / (double)(done - t_start);
      res->loss = sums[0] / sums[2];
      res->top1 = 100.0 * sums[1] / sums[2];
      const int eh = (int)(eta / 3600), em = (int)(fmod(eta, 3600) / 60), es = (int)fmod(eta, 60);
      hsc_log(HSC_LOG_INFO,
              "%s  epoch %lld/%d  step %lld/%lld  loss %.4f  top1 %.2f%%  lr %.4g  %.0f img/s  ETA "
              "%02d:%02d:%02d",
              tg->phase, (long long)at.epoch + 1, so->epochs, (long long)done, (long long)total, res->loss,
              res->top1, lr, ips, eh, em, es);
      if (csv) {
        fprintf(csv, "%lld,%lld,%.6f,%.4f,%.6g,%.1f\n", (long long)done, (long long)at.epoch, res->loss,
                res->top1, lr, ips);
        fflush(csv);
      }
      win_loss = win_hits = win_images = 0.0;
      tw = now;
    }
    if (cfg->checkpoint.every_steps > 0 && done % cfg->checkpoint.every_steps == 0 && done < total) {
      if ((st = save_checkpoint(s, tg, done, total, hsc_loader_cursor(loader), 0, err)) != HSC_OK) break;
    }
  }
  if (st == HSC_OK && t == total)
    st = save_checkpoint(s, tg, total, total, hsc_loader_cursor(loader), 1, err);
  res->step = t;
  res->seconds = hsc_now() - t0;
  res->images_per_s = res->seconds > 0 ? (double)(t - t_start) * cfg->data.batch_size / res->seconds : 0.0;
  if (csv) fclose(csv);
  free(x), free(y);
done:
  hsc_loader_free(loader);
  return st;
}

/* ---- evaluation ---- */

/* BN recalibration on s->recal, then loss and accuracy on sub (all of it, or its first `limit` images). */
static void evaluate(session *s, const hsc_arch *a, const hsc_dataset *ds, const hsc_subset *sub, int limit,
                     int recal, float smoothing, hsc_eval_result *out) {
  const hsc_space *sp = &s->space;
  const int bs = s->eval_batch;
  const size_t img = (size_t)sp->in_c * sp->in_h * sp->in_w;
  float *x = hsc_xmalloc((size_t)bs * img * sizeof(float));
  int32_t *y = hsc_xmalloc((size_t)bs * sizeof(int32_t));
  if (recal) {
    hsc_supernet_recal_begin(s->net);
    for (int first = 0; first + bs <= s->recal.n; first += bs) {
      hsc_data_fill(&s->train, &s->recal, first, bs, &s->tr, x, y);
      hsc_supernet_load_batch(s->net, bs, x, y);
      hsc_supernet_forward(s->net, a, HSC_BN_RECAL);
    }
  }
  const int n = limit > 0 && limit < sub->n ? limit : sub->n;
  double loss = 0.0;
  int64_t top1 = 0, top5 = 0;
  for (int first = 0; first < n; first += bs) {
    const int cnt = n - first < bs ? n - first : bs;
    hsc_data_fill(ds, sub, first, cnt, &s->tr, x, y);
    hsc_supernet_load_batch(s->net, cnt, x, y);
    hsc_supernet_forward(s->net, a, HSC_BN_EVAL);
    hsc_batch_result r = hsc_supernet_loss(s->net, smoothing, 0);
    loss += r.loss * cnt;
    top1 += r.top1;
    top5 += r.top5;
  }
  out->images = n;
  out->loss = loss / n;
  out->top1 = 100.0 * (double)top1 / n;
  out->top5 = 100.0 * (double)top5 / n;
  free(x), free(y);
}

/* The evaluation service of the search: an evaluating session whose network takes checkpoints of any phase
 * of RUN_DIR/checkpoints; hsc_eval_supernet is this with the "supernet" phase. */
struct hsc_evaluator {
  hsc_config cfg; /* a copy: the session points to it */
  session s;
  char dir[HSC_CFG_PATH + 32]; /* RUN_DIR/checkpoints */
};

hsc_status hsc_evaluator_open(hsc_evaluator **ev, const hsc_config *cfg, MPI_Comm comm, int with_net,
                              hsc_error *err) {
  *ev = NULL;
  hsc_evaluator *e = hsc_xcalloc(1, sizeof *e);
  e->cfg = *cfg;
  snprintf(e->dir, sizeof e->dir, "%s/checkpoints", cfg->run.dir);
  const session_opts so = {.evaluating = 1, .no_net = !with_net};
  hsc_status st = session_open(&e->s, &e->cfg, comm, &so, err);
  if (st == HSC_OK && e->s.val.n == 0) {
    session_close(&e->s);
    st = hsc_error_set(err, HSC_ERR_INPUT, "data.val_size is 0: there is no validation split to evaluate on");
  }
  if (st != HSC_OK) {
    free(e);
    return st;
  }
  *ev = e;
  return HSC_OK;
}

hsc_status hsc_evaluator_load(hsc_evaluator *ev, const char *phase, hsc_error *err) {
  const ckpt_target tg = {.dir = ev->dir, .phase = phase};
  resume_point rp;
  int found = 0;
  hsc_status st = load_checkpoint(&ev->s, &tg, 0, &rp, &found, err);
  if (st == HSC_OK && !found)
    st = hsc_error_set(err, HSC_ERR_INPUT, "%s holds no %s checkpoint%s", ev->dir, phase,
                       !strcmp(phase, "supernet") ? ": run 'hsconas train' first" : "");
  return st;
}

void hsc_evaluator_eval(hsc_evaluator *ev, const hsc_arch *a, hsc_eval_result *out) {
  session *s = &ev->s;
  assert(s->net && hsc_arch_valid(&s->space, NULL, a));
  evaluate(s, a, &s->train, &s->val, s->cfg->eval.val_images, 1, (float)s->cfg->supernet.label_smoothing,
           out);
}

void hsc_evaluator_close(hsc_evaluator *ev) {
  if (!ev) return;
  session_close(&ev->s);
  free(ev);
}

/* Creates dir (and its parents) and writes the effective configuration to config_dir/config.yaml. */
static hsc_status run_dir_prepare(const hsc_config *cfg, MPI_Comm comm, const char *dir,
                                  const char *config_dir, hsc_error *err) {
  int rank;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  hsc_status st = HSC_OK;
  if (rank == 0) {
    st = hsc_make_dirs(dir, err);
    if (st == HSC_OK) {
      char path[HSC_CFG_PATH + 64];
      if (snprintf(path, sizeof path, "%s/config.yaml", config_dir) >= (int)sizeof path)
        return hsc_agree(comm, hsc_error_set(err, HSC_ERR_INPUT, "%s: path too long", config_dir), err);
      char *text = hsc_config_dump(cfg, 1);
      FILE *f = fopen(path, "w");
      if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        st = hsc_error_set(err, HSC_ERR_IO, "cannot write %s: %s", path, strerror(errno));
      free(text);
    }
  }
  return hsc_agree(comm, st, err);
}

hsc_status hsc_train_supernet(const hsc_config *cfg, MPI_Comm comm, int resume, hsc_train_result *res,
                              hsc_error *err) {
  char dir[HSC_CFG_PATH + 32];
  snprintf(dir, sizeof dir, "%s/checkpoints", cfg->run.dir);
  hsc_status st = run_dir_prepare(cfg, comm, dir, cfg->run.dir, err);
  if (st != HSC_OK) return st;
  session s;
  if ((st = session_open(&s, cfg, comm, &(session_opts){0}, err)) != HSC_OK) return st;
  hsc_signals_install();
  ckpt_target tg = {.dir = dir, .phase = "supernet"};
  const schedule_opts so = SCHEDULE_FROM(cfg->supernet);
  st = train_loop(&s, &tg, &(loop_opts){0}, &so, resume, res, err);
  session_close(&s);
  return st;
}

/* The phase's schedule is supernet.* with the given epochs and peak learning rate, no warm-up, and no
 * supernet.max_steps cap (the cap belongs to the supernet's own training). */
hsc_status hsc_finetune_supernet(const hsc_config *cfg, MPI_Comm comm, const hsc_space_mask *mask, int stage,
                                 const char *from_phase, const char *phase, int epochs, double lr,
                                 hsc_train_result *res, hsc_error *err) {
  assert(mask && stage >= 0 && epochs >= 0 && lr > 0.0 && strcmp(from_phase, phase) != 0);
  memset(res, 0, sizeof *res);
  if (epochs == 0) return HSC_OK; /* nothing to train: the caller goes on with from_phase */
  char dir[HSC_CFG_PATH + 32];
  snprintf(dir, sizeof dir, "%s/checkpoints", cfg->run.dir);
  session s;
  hsc_status st = session_open(&s, cfg, comm, &(session_opts){0}, err);
  if (st != HSC_OK) return st;
  hsc_signals_install();
  const ckpt_target tg = {.dir = dir, .phase = phase, .mask = mask, .stage = stage};
  const ckpt_target from = {.dir = dir, .phase = from_phase};
  schedule_opts so = SCHEDULE_FROM(cfg->supernet);
  so.epochs = epochs;
  so.max_steps = cfg->shrink.finetune_max_steps;
  so.warmup = 0;
  so.lr = lr;
  const loop_opts lp = {.mask = mask, .path_base = (uint64_t)(stage + 1) << 40, .init = &from};
  st = train_loop(&s, &tg, &lp, &so, 1, res, err);
  session_close(&s);
  return st;
}

hsc_status hsc_eval_supernet(const hsc_config *cfg, MPI_Comm comm, const hsc_arch *archs, int narchs,
                             hsc_eval_result *out, hsc_error *err) {
  hsc_evaluator *ev = NULL;
  hsc_status st = hsc_evaluator_open(&ev, cfg, comm, 1, err);
  if (st != HSC_OK) return st;
  if ((st = hsc_evaluator_load(ev, "supernet", err)) == HSC_OK) {
    /* Architecture i on rank i mod size; results gathered by a sum over zero-initialised slots. */
    const int rank = ev->s.rank, size = ev->s.size;
    double *r = hsc_xcalloc((size_t)narchs * 4, sizeof(double));
    for (int i = rank; i < narchs; i += size) {
      hsc_eval_result e;
      hsc_evaluator_eval(ev, &archs[i], &e);
      r[4 * i] = e.loss, r[4 * i + 1] = e.top1, r[4 * i + 2] = e.top5, r[4 * i + 3] = e.images;
    }
    HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, r, 4 * narchs, MPI_DOUBLE, MPI_SUM, comm));
    for (int i = 0; i < narchs; i++)
      out[i] = (hsc_eval_result){
          .loss = r[4 * i], .top1 = r[4 * i + 1], .top5 = r[4 * i + 2], .images = (int)r[4 * i + 3]};
    free(r);
  }
  hsc_evaluator_close(ev);
  return st;
}

hsc_status hsc_retrain(const hsc_config *cfg, MPI_Comm comm, const hsc_arch *arch, int resume,
                       hsc_train_result *res, hsc_eval_result *test, hsc_error *err) {
  hsc_space space;
  hsc_status st = hsc_space_init(&space, cfg, err);
  if (st != HSC_OK) return st;
  char text[4096];
  hsc_arch_format(&space, arch, text, sizeof text);
  char dir[HSC_CFG_PATH + 64];
  snprintf(dir, sizeof dir, "%s/retrain-%016llx", cfg->run.dir,
           (unsigned long long)hsc_arch_hash(&space, arch));
  if ((st = run_dir_prepare(cfg, comm, dir, dir, err)) != HSC_OK) return st;
  session s;
  const session_opts o = {.fixed = arch, .need_test = 1, .whole_train = 1};
  if ((st = session_open(&s, cfg, comm, &o, err)) != HSC_OK) return st;
  hsc_signals_install();
  ckpt_target tg = {.dir = dir, .phase = "retrain", .arch_text = text};
  const schedule_opts so = SCHEDULE_FROM(cfg->retrain);
  hsc_log(HSC_LOG_INFO, "retrain %s (%lld MFLOPs, %lld params)", text,
          (long long)(hsc_arch_flops(&space, arch) / 1000000), (long long)hsc_arch_params(&space, arch));
  st = train_loop(&s, &tg, &(loop_opts){.fixed = arch}, &so, resume, res, err);
  if (st == HSC_OK) {
    hsc_subset all;
    hsc_subset_all(s.test.n, &all);
    evaluate(&s, arch, &s.test, &all, 0, 0, (float)cfg->retrain.label_smoothing, test);
    hsc_subset_free(&all);
  }
  session_close(&s);
  return st;
}
