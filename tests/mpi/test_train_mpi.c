/* Data-parallel training is the single-process computation it claims to be, and the search's evaluation
 * service gives every rank the numbers one process computes. Run under mpirun -np R.
 *
 * With sync BN (statistics all-reduced), R ranks with B / R images each take the same steps as one process
 * with the whole batch B. Without it (per-rank BN, as SPOS trains), the R-rank step equals one process
 * that normalises each rank's share separately, accumulates the R gradients and divides by R.
 * Tolerance: the same fp32 arithmetic summed in another order, 2e-5 of each parameter tensor's largest
 * update plus 1e-6 absolute. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hsconas/config.h"
#include "hsconas/rng.h"
#include "hsconas/space.h"
#include "hsconas/supernet.h"
#include "hsconas/train.h"

enum { PER_RANK = 4, STEPS = 3 };

typedef struct {
  hsc_config cfg;
  hsc_space space;
  int rank, size, batch;
  float *x;   /* [batch, 1, 16, 16] identical on every rank */
  int32_t *y; /* [batch] */
} dp_case;

static int dp_setup(hsc_test *t, dp_case *c) {
  memset(c, 0, sizeof *c);
  static const char *const sets[] = {"space.input_size=16",          "space.stem_channels=8",
                                     "space.stage_channels=[16,32]", "space.stage_blocks=[2,2]",
                                     "space.stage_strides=[2,2]",    "space.head_channels=32",
                                     "space.scales=[0.5,1.0,1.5]"};
  if (!tu_space(t, &c->cfg, &c->space, sets, (int)ARRAY_LEN(sets))) return 0;
  HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
  HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &c->size));
  c->batch = PER_RANK * c->size;
  c->x = tu_randn(31, (size_t)c->batch * 256, 1.0f);
  c->y = malloc((size_t)c->batch * sizeof(int32_t));
  for (int i = 0; i < c->batch; i++) c->y[i] = (i * 3 + 1) % 10;
  return 1;
}

static void dp_free(dp_case *c) {
  free(c->x);
  free(c->y);
}

static hsc_supernet *make_net(hsc_test *t, dp_case *c, int max_batch) {
  hsc_error err = {0};
  hsc_supernet *net = NULL;
  if (hsc_supernet_create(&net, &c->space, NULL, t->be, t->ctx, max_batch, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return NULL;
  }
  hsc_supernet_init_weights(net, 5);
  return net;
}

static void path_of_step(const dp_case *c, int step, hsc_arch *a) {
  hsc_rng r;
  hsc_rng_init(&r, 9, HSC_RNG_PATH, (uint64_t)step);
  hsc_arch_sample(&c->space, NULL, &r, a);
}

static const hsc_step_opts OPTS = {.lr = 0.2f, .momentum = 0.9f, .weight_decay = 1e-3f, .smoothing = 0.1f};

/* Compares two parameter buffers tensor by tensor (tolerance in the file comment). */
static void compare_params(hsc_test *t, const hsc_param_table *pt, const float *got, const float *want,
                           const float *init) {
  for (int i = 0; i < pt->n; i++) {
    const hsc_param *p = &pt->v[i];
    double umax = 0.0;
    for (size_t j = 0; j < p->count; j++)
      umax = fmax(umax, fabs((double)want[p->offset + j] - init[p->offset + j]));
    size_t bad = 0, worst = 0;
    double wd = 0.0;
    for (size_t j = 0; j < p->count; j++) {
      const double d = fabs((double)got[p->offset + j] - want[p->offset + j]);
      if (d > 2e-5 * umax + 1e-6) bad++;
      if (d > wd) wd = d, worst = j;
    }
    if (bad)
      T_FAIL(t, "%s: %zu of %zu differ; worst [%zu] %.9g vs %.9g (largest update %.3g)", p->name, bad,
             p->count, worst, (double)got[p->offset + worst], (double)want[p->offset + worst], umax);
  }
}

/* Sync BN: R ranks x B/R == 1 process x B. */
static void t_sync_bn(hsc_test *t) {
  dp_case c;
  if (!dp_setup(t, &c)) return;
  hsc_supernet *dist = make_net(t, &c, PER_RANK), *ref = make_net(t, &c, c.batch);
  if (dist && ref) {
    const hsc_param_table *pt = hsc_supernet_params(dist);
    float *init = tu_copy(hsc_supernet_weights(dist), pt->total);
    hsc_supernet_set_sync(dist, MPI_COMM_WORLD);
    for (int s = 0; s < STEPS; s++) {
      hsc_arch a;
      path_of_step(&c, s, &a);
      hsc_supernet_load_batch(dist, PER_RANK, c.x + (size_t)c.rank * PER_RANK * 256, c.y + c.rank * PER_RANK);
      hsc_supernet_train_step(dist, &a, MPI_COMM_WORLD, &OPTS);
      hsc_supernet_load_batch(ref, c.batch, c.x, c.y);
      hsc_supernet_train_step(ref, &a, MPI_COMM_SELF, &OPTS);
    }
    compare_params(t, pt, hsc_supernet_weights(dist), hsc_supernet_weights(ref), init);
    /* BN running statistics agree too (sync BN updates them with the whole batch's). */
    const hsc_param_table *st = hsc_supernet_state(dist);
    T_CLOSE(t, "running statistics", hsc_supernet_stats(dist), hsc_supernet_stats(ref), st->total, 1e-4,
            1e-5);
    free(init);
  }
  hsc_supernet_free(dist);
  hsc_supernet_free(ref);
  dp_free(&c);
}

/* Per-rank BN: R ranks == one process normalising each rank's share separately, gradients averaged. */
static void t_per_rank_bn(hsc_test *t) {
  dp_case c;
  if (!dp_setup(t, &c)) return;
  hsc_supernet *dist = make_net(t, &c, PER_RANK), *ref = make_net(t, &c, PER_RANK);
  if (dist && ref) {
    const hsc_param_table *pt = hsc_supernet_params(dist);
    float *init = tu_copy(hsc_supernet_weights(dist), pt->total);
    hsc_region *reg = malloc((size_t)hsc_supernet_max_regions(ref) * sizeof(hsc_region));
    for (int s = 0; s < STEPS; s++) {
      hsc_arch a;
      path_of_step(&c, s, &a);
      hsc_supernet_load_batch(dist, PER_RANK, c.x + (size_t)c.rank * PER_RANK * 256, c.y + c.rank * PER_RANK);
      hsc_supernet_train_step(dist, &a, MPI_COMM_WORLD, &OPTS);
      /* The reference, spelled out: the R shares, each forward/backward on its own batch statistics,
       * gradients accumulated (backward adds), divided by R, one SGD step. */
      for (int r = 0; r < c.size; r++) {
        hsc_supernet_load_batch(ref, PER_RANK, c.x + (size_t)r * PER_RANK * 256, c.y + r * PER_RANK);
        hsc_supernet_forward(ref, &a, HSC_BN_TRAIN);
        hsc_supernet_loss(ref, OPTS.smoothing, 1);
        hsc_supernet_backward(ref, &a);
      }
      float *g = hsc_supernet_grads(ref);
      for (size_t j = 0; j < pt->total; j++) g[j] /= (float)c.size;
      const int nr = hsc_supernet_regions(ref, &a, OPTS.weight_decay, reg);
      hsc_sgd_desc sgd = {.lr = OPTS.lr, .momentum = OPTS.momentum};
      t->be->sgd_update(t->ctx, &sgd, reg, nr, hsc_supernet_weights(ref), g, hsc_supernet_momentum(ref));
      t->be->zero_regions(t->ctx, reg, nr, g);
    }
    compare_params(t, pt, hsc_supernet_weights(dist), hsc_supernet_weights(ref), init);
    /* And the ranks hold identical parameters (the same averaged update everywhere). */
    float *w0 = tu_copy(hsc_supernet_weights(dist), pt->total);
    HSC_CHECK_MPI(MPI_Bcast(w0, (int)pt->total, MPI_FLOAT, 0, MPI_COMM_WORLD));
    T_EQ_INT(t, memcmp(w0, hsc_supernet_weights(dist), pt->total * sizeof(float)), 0);
    free(w0);
    free(reg);
    free(init);
  }
  hsc_supernet_free(dist);
  hsc_supernet_free(ref);
  dp_free(&c);
}

/* A backend with device collectives (backend.h allreduce_mean: NCCL on the GPU backend) takes the other
 * path of hsc_supernet_train_step: gradients packed and averaged in buckets during the backward. Here the
 * CPU backend stands in, with MPI_Allreduce in place of NCCL (its memory is host memory), and one-float
 * buckets so that the head and every block start their own all-reduce. It must give the host path's
 * result (same tolerance: the sums run in another order where Open MPI picks another algorithm for a
 * smaller message). */
static hsc_status shim_attach(hsc_backend_ctx *ctx, MPI_Comm comm, hsc_error *err) {
  int same;
  HSC_CHECK_MPI(MPI_Comm_compare(comm, MPI_COMM_WORLD, &same));
  return same == MPI_IDENT ? HSC_OK : hsc_error_set(err, HSC_ERR_DEVICE, "test shim: MPI_COMM_WORLD only");
}

static void shim_allreduce_mean(hsc_backend_ctx *ctx, float *buf, size_t count) {
  int size;
  HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
  const float inv = 1.0f / (float)size;
  for (size_t i = 0; i < count; i++) buf[i] *= inv;
}

static void shim_comm_wait(hsc_backend_ctx *ctx) {}

static void t_device_collectives(hsc_test *t) {
  dp_case c;
  if (!dp_setup(t, &c)) return;
  hsc_backend shim = *t->be;
  shim.comm_attach = shim_attach;
  shim.allreduce_mean = shim_allreduce_mean;
  shim.comm_wait = shim_comm_wait;
  hsc_error err = {0};
  hsc_supernet *dev = NULL, *host = make_net(t, &c, PER_RANK);
  if (hsc_supernet_create(&dev, &c.space, NULL, &shim, t->ctx, PER_RANK, &err) != HSC_OK)
    T_FAIL(t, "%s", err.msg);
  if (dev && host) {
    hsc_supernet_init_weights(dev, 5);
    hsc_supernet_set_bucket(dev, 1);
    const hsc_param_table *pt = hsc_supernet_params(dev);
    float *init = tu_copy(hsc_supernet_weights(dev), pt->total);
    for (int s = 0; s < STEPS; s++) {
      hsc_arch a;
      path_of_step(&c, s, &a);
      const float *xs = c.x + (size_t)c.rank * PER_RANK * 256;
      const int32_t *ys = c.y + c.rank * PER_RANK;
      hsc_supernet_load_batch(dev, PER_RANK, xs, ys);
      hsc_supernet_train_step(dev, &a, MPI_COMM_WORLD, &OPTS);
      hsc_supernet_load_batch(host, PER_RANK, xs, ys);
      hsc_supernet_train_step(host, &a, MPI_COMM_WORLD, &OPTS);
    }
    compare_params(t, pt, hsc_supernet_weights(dev), hsc_supernet_weights(host), init);
    T_CLOSE(t, "momentum", hsc_supernet_momentum(dev), hsc_supernet_momentum(host), pt->total, 1e-5, 1e-6);
    free(init);
  }
  hsc_supernet_free(dev);
  hsc_supernet_free(host);
  dp_free(&c);
}

/* ---- the evaluation service (tu_tiny_run, trained on all ranks) ---- */

/* One rank's evaluation as 4 doubles (loss, top1, top5, images), gathered from every rank into all [4 R]. */
static void gather_eval(const hsc_eval_result *e, double *all) {
  const double mine[4] = {e->loss, e->top1, e->top5, e->images};
  HSC_CHECK_MPI(MPI_Allgather(mine, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, MPI_COMM_WORLD));
}

/* The search master holds no network (with_net 0 on rank 0) but takes part in the collective reads; the
 * workers evaluating the same architecture get the same numbers, bit for bit, as one process alone, for the
 * supernet and for a fine-tuned phase. */
static void t_evaluator_without_net_on_master(hsc_test *t) {
  int rank, size;
  HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
  T_REQUIRE(t, size >= 3 && size <= 16);
  char tmp[64] = "";
  int ok = rank != 0 || tu_tmpdir(t, "train_mpi", tmp, sizeof tmp);
  HSC_CHECK_MPI(MPI_Bcast(tmp, (int)sizeof tmp, MPI_CHAR, 0, MPI_COMM_WORLD));
  hsc_config cfg;
  hsc_space sp;
  hsc_arch arch;
  hsc_error err = {0};
  ok = ok && tu_tiny_run(t, tmp, rank == 0, &cfg, &sp) &&
       hsc_arch_parse(&sp, "shuffle7:1.0,xception:0.5,shuffle5:1.5", &arch, &err) == HSC_OK;
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (!ok) {
    T_FAIL(t, "setup failed %s", err.msg);
    goto out;
  }
  hsc_train_result res;
  if (hsc_train_supernet(&cfg, MPI_COMM_WORLD, 0, &res, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    goto out;
  }
  hsc_space_mask mask;
  hsc_space_mask_full(&sp, &mask);
  for (int l = 0; l < sp.nblocks; l++) mask.op[l][HSC_OP_SHUFFLE3] = 0, mask.scale[l][0] = 0;
  static const char *const phases[2] = {"supernet", "stage0"};
  double prev_loss = 0.0;
  for (int p = 0; p < 2; p++) {
    if (p == 1 && hsc_finetune_supernet(&cfg, MPI_COMM_WORLD, &mask, 0, "supernet", "stage0", 1, 0.05, &res,
                                        &err) != HSC_OK) {
      T_FAIL(t, "%s", err.msg);
      break;
    }
    hsc_evaluator *ev = NULL, *alone = NULL;
    hsc_eval_result e = {0}, one = {0};
    if (hsc_evaluator_open(&ev, &cfg, MPI_COMM_WORLD, rank != 0, &err) != HSC_OK ||
        hsc_evaluator_load(ev, phases[p], &err) != HSC_OK) {
      T_FAIL(t, "%s: %s", phases[p], err.msg);
      hsc_evaluator_close(ev);
      break;
    }
    if (rank != 0) hsc_evaluator_eval(ev, &arch, &e);
    hsc_evaluator_close(ev);
    /* One process alone: every rank on its own, from the same checkpoint. */
    if (hsc_evaluator_open(&alone, &cfg, MPI_COMM_SELF, 1, &err) != HSC_OK ||
        hsc_evaluator_load(alone, phases[p], &err) != HSC_OK)
      T_FAIL(t, "%s alone: %s", phases[p], err.msg);
    else
      hsc_evaluator_eval(alone, &arch, &one);
    hsc_evaluator_close(alone);
    double all[4 * 16], alone_all[4 * 16];
    gather_eval(&e, all);
    gather_eval(&one, alone_all);
    for (int r = 1; r < size; r++) {
      if (memcmp(all + 4 * r, all + 4, 4 * sizeof(double)))
        T_FAIL(t, "%s: rank %d's loss %.17g, rank 1's %.17g", phases[p], r, all[4 * r], all[4]);
      if (memcmp(all + 4 * r, alone_all + 4 * r, 4 * sizeof(double)))
        T_FAIL(t, "%s: rank %d's loss %.17g, alone %.17g", phases[p], r, all[4 * r], alone_all[4 * r]);
    }
    T_CHECK(t, !memcmp(alone_all, all + 4, 4 * sizeof(double))); /* the master alone: the same */
    T_EQ_INT(t, one.images, 40);
    T_CHECK(t, isfinite(one.loss) && one.loss != prev_loss); /* the fine-tuned phase was loaded */
    prev_loss = one.loss;
  }
out:
  HSC_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
  if (rank == 0 && tmp[0]) tu_rmtree(tmp);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv);
  static const hsc_test_case cases[] = {
      {"sync_bn_equals_whole_batch", t_sync_bn},
      {"per_rank_bn_equals_split_reference", t_per_rank_bn},
      {"device_collectives_equal_host_path", t_device_collectives},
      {"evaluator_without_net_on_master", t_evaluator_without_net_on_master},
  };
  int rc = hsc_test_main("test_train_mpi", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
