/* The latency profiler: times every LUT entry and sampled architectures on the configured backend, fits
 * k and b, and writes the model (latency.h; the protocol is written down in docs/latency.md).
 *
 * What is timed is the supernet's inference forward (BN folded, HSC_BN_EVAL) at latency.batch: a LUT entry
 * is one part of it (the stem; one block at one operator and scale, on the exact input shape of its
 * position; the head with pool and classifier), an architecture is the whole forward of its path.
 *
 * Protocol, for a set of "jobs" (LUT entries and architectures together):
 *   1. calibration, in job order: latency.warmup untimed runs, then one timed run t1, from which the job's
 *      `inner` count = ceil(latency.min_sample_ms / t1) (at least 1) is fixed;
 *   2. latency.repeats rounds; each visits every job once in a fresh random order (so that drift of the
 *      machine spreads over all jobs), runs it once untimed (its weights and input back in cache, as in a
 *      steady stream of inferences) and then times `inner` back-to-back runs: one sample = elapsed / inner;
 *   3. a job's value is the median of its samples, its spread the interquartile range.
 * Ranks that do not measure wait in a sleeping poll (MPI_Ibarrier + MPI_Test + nanosleep), never in a
 * spinning MPI call that would take cores from the rank that measures. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hsconas/backend.h"
#include "hsconas/latency.h"
#include "hsconas/plot.h"
#include "hsconas/progress.h"
#include "hsconas/rng.h"
#include "hsconas/signals.h"
#include "hsconas/supernet.h"
#include "hsconas/train.h"

enum { MAX_INNER = 100000 };
/* Stream indices under (run.seed, HSC_RNG_PROFILE): the input batch, the rounds' orders, the architectures.
 */
#define STREAM_INPUT 0ULL
#define STREAM_ROUND (1ULL << 32)
#define STREAM_FIT (2ULL << 32)
#define STREAM_HOLDOUT (3ULL << 32)

typedef struct {
  int part; /* -1 stem, 0..nblocks-1 block, nblocks head; ARCH_JOB: the whole forward */
  hsc_arch arch;
  int inner;
  double *samples; /* [repeats] ms */
  hsc_lat_entry result;
} job;
#define ARCH_JOB (-2)

typedef struct {
  const hsc_config *cfg;
  hsc_space space;
  const hsc_backend *be;
  hsc_backend_ctx *ctx;
  hsc_supernet *net;
} bench;

static void bench_close(bench *b) {
  hsc_supernet_free(b->net);
  if (b->ctx) b->be->free(b->ctx);
  memset(b, 0, sizeof *b);
}

/* The network at latency.batch with initialised weights and a random normal input batch. */
static hsc_status bench_open(bench *b, const hsc_config *cfg, hsc_error *err) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  hsc_status st = hsc_space_init(&b->space, cfg, err);
  if (st != HSC_OK) return st;
  if (!(b->be = hsc_backend_find(cfg->dist.backend, err))) return err->code;
  const hsc_backend_opts bo = {.threads = hsc_default_threads(cfg),
                               .device = -1,
                               .gpus_per_node = cfg->dist.gpus_per_node,
                               .pin = cfg->latency.pin_threads};
  if ((st = b->be->init(&b->ctx, &bo, err)) != HSC_OK) {
    b->ctx = NULL;
    return st;
  }
  const int n = cfg->latency.batch;
  if ((st = hsc_supernet_create(&b->net, &b->space, NULL, b->be, b->ctx, n, err)) != HSC_OK) {
    bench_close(b);
    return st;
  }
  hsc_supernet_init_weights(b->net, (uint64_t)cfg->run.seed);
  hsc_supernet_set_bn(b->net, (float)cfg->supernet.bn_momentum, (float)cfg->supernet.bn_eps);
  const size_t count = (size_t)n * b->space.in_c * b->space.in_h * b->space.in_w;
  float *x = hsc_xmalloc(count * sizeof(float));
  hsc_rng r;
  hsc_rng_init(&r, (uint64_t)cfg->run.seed, HSC_RNG_PROFILE, STREAM_INPUT);
  hsc_rng_fill_normal(&r, x, count, 0.0f, 1.0f);
  hsc_supernet_load_batch(b->net, n, x, NULL);
  free(x);
  return HSC_OK;
}

static void run_job(bench *b, const job *j) {
  if (j->part == ARCH_JOB)
    hsc_supernet_forward(b->net, &j->arch, HSC_BN_EVAL);
  else
    hsc_supernet_forward_part(b->net, &j->arch, j->part, HSC_BN_EVAL);
}

/* Mean time of `inner` back-to-back runs, in ms (the backend's queue drained before the clock stops). */
static double time_job(bench *b, const job *j, int inner) {
  const double t0 = hsc_now();
  for (int i = 0; i < inner; i++) run_job(b, j);
  b->be->sync(b->ctx);
  return (hsc_now() - t0) * 1e3 / inner;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Quantile q of sorted v [n] with linear interpolation between order statistics. */
static double quantile(const double *v, int n, double q) {
  const double pos = q * (n - 1);
  const int i = (int)floor(pos);
  if (i >= n - 1) return v[n - 1];
  return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

static hsc_lat_entry summarise(const double *samples, int n) {
  double *v = hsc_xmalloc((size_t)n * sizeof *v);
  memcpy(v, samples, (size_t)n * sizeof *v);
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  /* Kept to the nanosecond: the clock and the noise allow no more, and the file stays readable. */
  const hsc_lat_entry e = {round(quantile(v, n, 0.5) * 1e6) / 1e6,
                           round((quantile(v, n, 0.75) - quantile(v, n, 0.25)) * 1e6) / 1e6};
  free(v);
  return e;
}

/* The protocol above over jobs [n] (the ones this rank measures). HSC_ERR_STOPPED on a signal. */
static hsc_status measure(bench *b, job *jobs, int n, hsc_progress *pg, hsc_error *err) {
  const hsc_config *cfg = b->cfg;
  const int repeats = cfg->latency.repeats;
  double done = 0;
  for (int i = 0; i < n; i++) {
    for (int w = 0; w < cfg->latency.warmup; w++) run_job(b, &jobs[i]);
    const double t1 = time_job(b, &jobs[i], 1);
    const double want = cfg->latency.min_sample_ms / (t1 > 0 ? t1 : 1e-6);
    jobs[i].inner = want <= 1 ? 1 : want >= MAX_INNER ? MAX_INNER : (int)ceil(want);
    jobs[i].samples = hsc_xmalloc((size_t)repeats * sizeof(double));
    hsc_progress_update(pg, ++done);
    if (hsc_signals_pending()) goto stopped;
  }
  int32_t *order = hsc_xmalloc((size_t)n * sizeof *order);
  for (int r = 0; r < repeats; r++) {
    hsc_rng_permute(order, n, (uint64_t)cfg->run.seed, HSC_RNG_PROFILE, STREAM_ROUND + (uint64_t)r);
    for (int i = 0; i < n; i++) {
      job *j = &jobs[order[i]];
      run_job(b, j);
      j->samples[r] = time_job(b, j, j->inner);
      hsc_progress_update(pg, ++done);
    }
    if (hsc_signals_pending()) {
      free(order);
      goto stopped;
    }
  }
  free(order);
  for (int i = 0; i < n; i++) jobs[i].result = summarise(jobs[i].samples, repeats);
  return HSC_OK;
stopped:
  return hsc_error_set(err, HSC_ERR_STOPPED,
                       "profiling stopped by a signal; nothing was saved (rerun to start over)");
}

/* Waits for every rank of comm without spinning: a rank that measures must keep its cores. */
static void sleepy_barrier(MPI_Comm comm) {
  MPI_Request req;
  HSC_CHECK_MPI(MPI_Ibarrier(comm, &req));
  for (;;) {
    int done = 0;
    HSC_CHECK_MPI(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
  }
}

/* Measures jobs [n] over comm: with `parallel` job i on rank i % size, else all on rank 0. Every rank ends
 * with every job's result. Collective; every rank returns the same status. */
static hsc_status measure_over(bench *b, job *jobs, int n, int parallel, MPI_Comm comm, const char *what,
                               int show, hsc_error *err) {
  int rank, size;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  HSC_CHECK_MPI(MPI_Comm_size(comm, &size));
  const int stride = parallel ? size : 1;
  job *mine = hsc_xcalloc((size_t)n, sizeof *mine);
  int nmine = 0;
  if (parallel || rank == 0)
    for (int i = parallel ? rank : 0; i < n; i += stride) mine[nmine++] = jobs[i];
  hsc_progress pg;
  hsc_progress_begin(&pg, what, (double)nmine * (1 + b->cfg->latency.repeats), show && nmine > 0);
  hsc_error local = {0};
  int code = nmine ? measure(b, mine, nmine, &pg, &local) : HSC_OK;
  hsc_progress_end(&pg);
  sleepy_barrier(comm);
  /* Each result is measured by exactly one rank, the others add zeros: the sum is that rank's value. */
  double *v = hsc_xcalloc(2 * (size_t)n + 1, sizeof *v);
  for (int m = 0, i = parallel ? rank : 0; m < nmine; m++, i += stride) {
    v[2 * i] = mine[m].result.median;
    v[2 * i + 1] = mine[m].result.iqr;
  }
  v[2 * n] = code;
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, 2 * n + 1, MPI_DOUBLE, MPI_SUM, comm));
  for (int i = 0; i < n; i++) jobs[i].result = (hsc_lat_entry){v[2 * i], v[2 * i + 1]};
  const int any_failed = v[2 * n] != 0;
  free(v);
  for (int m = 0; m < nmine; m++) free(mine[m].samples);
  free(mine);
  if (!any_failed) return HSC_OK;
  /* The first failing rank's message, to every rank. */
  int from = code != HSC_OK ? rank : size;
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &from, 1, MPI_INT, MPI_MIN, comm));
  HSC_CHECK_MPI(MPI_Bcast(&local, (int)sizeof local, MPI_BYTE, from, comm));
  *err = local;
  return local.code;
}

/* Architecture i of a set: `spread` draws two scale indices lo <= hi and each block's scale uniformly in
 * [lo, hi] (from small to large networks); `uniform` draws every gene uniformly. Ops are uniform. */
static void sample_arch(const hsc_space *s, const char *sampling, uint64_t seed, uint64_t stream,
                        hsc_arch *a) {
  hsc_rng r;
  hsc_rng_init(&r, seed, HSC_RNG_PROFILE, stream);
  if (strcmp(sampling, "spread") != 0) {
    hsc_arch_sample(s, NULL, &r, a);
    return;
  }
  const int u = (int)hsc_rng_below(&r, (uint32_t)s->nscales),
            v = (int)hsc_rng_below(&r, (uint32_t)s->nscales);
  const int lo = u < v ? u : v, hi = u < v ? v : u;
  hsc_space_mask m;
  hsc_space_mask_full(s, &m);
  for (int l = 0; l < s->nblocks; l++)
    for (int j = 0; j < s->nscales; j++) m.scale[l][j] = j >= lo && j <= hi;
  hsc_arch_sample(s, &m, &r, a);
}

static void describe_model(hsc_latency_model *m, const bench *b) {
  const hsc_config *cfg = b->cfg;
  const hsc_space *s = &b->space;
  m->format = HSC_LATENCY_FORMAT;
  snprintf(m->program, sizeof m->program, "hsconas %s", HSC_VERSION);
  const time_t now = time(NULL);
  struct tm tm;
  if (!gmtime_r(&now, &tm) || !strftime(m->created, sizeof m->created, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(m->created, sizeof m->created, "unknown");
  snprintf(m->backend, sizeof m->backend, "%s", b->be->name);
  b->be->describe(b->ctx, m->device, sizeof m->device);
  if (gethostname(m->host, sizeof m->host) != 0) snprintf(m->host, sizeof m->host, "unknown");
  m->host[sizeof m->host - 1] = '\0';
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  m->cores = cores > 0 ? (int)cores : 0;
  m->threads = b->be->threads(b->ctx);
  m->pinned = cfg->latency.pin_threads;
  m->batch = cfg->latency.batch;
  m->in_c = s->in_c, m->in_h = s->in_h, m->in_w = s->in_w;
  m->space_hash = s->hash;
  m->nblocks = s->nblocks, m->nops = s->nops, m->nscales = s->nscales;
  memcpy(m->ops, s->ops, sizeof m->ops);
  memcpy(m->scales, s->scales, sizeof m->scales);
  m->warmup = cfg->latency.warmup;
  m->repeats = cfg->latency.repeats;
  m->min_sample_ms = cfg->latency.min_sample_ms;
  snprintf(m->sampling, sizeof m->sampling, "%s", cfg->latency.sampling);
  m->seed = cfg->run.seed;
}

/* MODEL.yaml -> MODEL<suffix>: -archs.csv (the measured architectures), -fit.svg (their plot). */
static void sibling_path(const char *model, const char *suffix, char *buf, size_t len) {
  const size_t n = strlen(model);
  const int yaml = n > 5 && !strcmp(model + n - 5, ".yaml");
  snprintf(buf, len, "%.*s%s", (int)(yaml ? n - 5 : n), model, suffix);
}

/* The measured architectures, fit set first: each column computed once, for the fit, the table and the
 * plot. */
typedef struct {
  int nfit, nhold;
  const job *jobs;                          /* [nfit + nhold] */
  double *meas, *lut, *pred, *macs, *fpred; /* [nfit + nhold] */
} arch_table;

/* Fits k, b (and the FLOPs proxy) on the fit set, fills the table's columns and rates both predictors on
 * the hold-out set. */
static void fit_model(hsc_latency_model *m, const hsc_space *s, arch_table *t) {
  const int n = t->nfit + t->nhold;
  double *col = hsc_xmalloc(5 * (size_t)n * sizeof *col);
  t->meas = col, t->lut = col + n, t->pred = col + 2 * n, t->macs = col + 3 * n, t->fpred = col + 4 * n;
  for (int i = 0; i < n; i++) {
    t->meas[i] = t->jobs[i].result.median;
    t->lut[i] = hsc_latency_lut_sum(m, &t->jobs[i].arch);
    t->macs[i] = (double)hsc_arch_flops(s, &t->jobs[i].arch);
  }
  hsc_fit_line(t->lut, t->meas, t->nfit, &m->k, &m->b);
  hsc_fit_line(t->macs, t->meas, t->nfit, &m->flops_k, &m->flops_b);
  for (int i = 0; i < n; i++) {
    t->pred[i] = hsc_latency_predict(m, &t->jobs[i].arch);
    t->fpred[i] = m->flops_k * t->macs[i] + m->flops_b;
  }
  hsc_lat_quality_compute(t->meas, t->pred, t->nfit, &m->fit);
  hsc_lat_quality_compute(t->meas + t->nfit, t->pred + t->nfit, t->nhold, &m->holdout);
  hsc_lat_quality_compute(t->meas + t->nfit, t->fpred + t->nfit, t->nhold, &m->flops);
}

static void arch_table_free(arch_table *t) { free(t->meas); }

static hsc_status write_csv(const char *path, const hsc_space *s, const arch_table *t, hsc_error *err) {
  FILE *f = fopen(path, "w");
  if (!f) return hsc_error_set(err, HSC_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  fprintf(f, "set,index,hash,macs,lut_sum_ms,predicted_ms,flops_predicted_ms,measured_ms,iqr_ms,arch\n");
  char text[HSC_MAX_BLOCKS * 16];
  for (int i = 0; i < t->nfit + t->nhold; i++) {
    const hsc_arch *a = &t->jobs[i].arch;
    hsc_arch_format(s, a, text, sizeof text);
    const int fit = i < t->nfit;
    fprintf(f, "%s,%d,%016llx,%.0f,%.6f,%.6f,%.6f,%.6f,%.6f,\"%s\"\n", fit ? "fit" : "holdout",
            fit ? i : i - t->nfit, (unsigned long long)hsc_arch_hash(s, a), t->macs[i], t->lut[i], t->pred[i],
            t->fpred[i], t->meas[i], t->jobs[i].result.iqr, text);
  }
  const int bad = ferror(f);
  if (fclose(f) != 0 || bad) return hsc_error_set(err, HSC_ERR_IO, "cannot write %s", path);
  return HSC_OK;
}

/* MODEL-fit.svg: predicted against measured latency, the model (fit and hold-out sets) beside the FLOPs
 * proxy (hold-out set), with y = x and the +-10% band. */
static hsc_status write_plot(const char *path, const hsc_latency_model *m, const arch_table *t,
                             hsc_error *err) {
  const int nfit = t->nfit, nhold = t->nhold;
  char title[200], l_fit[64], l_hold[96], l_flops[96];
  snprintf(title, sizeof title, "hsconas latency model: %s backend, batch %d, %d blocks", m->backend,
           m->batch, m->nblocks);
  snprintf(l_fit, sizeof l_fit, "fit set (%d)", nfit);
  snprintf(l_hold, sizeof l_hold, "hold-out (%d): %.0f%% within 10%%, rho %.3f", nhold, m->holdout.within10,
           m->holdout.spearman);
  snprintf(l_flops, sizeof l_flops, "hold-out (%d): %.0f%% within 10%%, rho %.3f", nhold, m->flops.within10,
           m->flops.spearman);
  const hsc_plot_panel panels[2] = {
      {.title = "LUT model: k * (stem + sum LUT + head) + b",
       .xlabel = "measured latency (ms)",
       .ylabel = "predicted latency (ms)",
       .series = {{t->meas, t->pred, nfit, l_fit, "#9e9e9e"},
                  {t->meas + nfit, t->pred + nfit, nhold, l_hold, "#1f77b4"}},
       .nseries = 2,
       .diagonal = 1,
       .band = 0.1},
      {.title = "FLOPs proxy: kf * MACs + bf",
       .xlabel = "measured latency (ms)",
       .ylabel = "predicted latency (ms)",
       .series = {{t->meas + nfit, t->fpred + nfit, nhold, l_flops, "#ff7f0e"}},
       .nseries = 1,
       .diagonal = 1,
       .band = 0.1},
  };
  return hsc_plot_svg(path, title, m->device, panels, 2, err);
}

/* Ranks that share a node's CPU cores must not measure at the same time. */
static hsc_status check_parallel(const hsc_config *cfg, MPI_Comm comm, hsc_error *err) {
  if (!cfg->latency.parallel) return HSC_OK;
  int local = 0;
  MPI_Comm node;
  HSC_CHECK_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  HSC_CHECK_MPI(MPI_Comm_size(node, &local));
  HSC_CHECK_MPI(MPI_Comm_free(&node));
  /* HSC_PROFILE_SHARED_OK=1 lets the tests run the split on one node (the timings then mean nothing). */
  const char *ok = getenv("HSC_PROFILE_SHARED_OK");
  if (local > 1 && !strcmp(cfg->dist.backend, "cpu") && !(ok && !strcmp(ok, "1")))
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "latency.parallel: %d ranks share this node's CPU cores and would disturb each "
                         "other's timings; run one rank per node, or set latency.parallel=false",
                         local);
  return HSC_OK;
}

/* Whether to profile: no model file, or one that does not parse (a warning), or --force. A valid model for
 * another space, batch or backend is kept (an error) unless forced. *have = 1: m holds the existing model. */
static hsc_status existing_model(const hsc_config *cfg, const hsc_space *s, const char *path, int force,
                                 MPI_Comm comm, hsc_latency_model *m, int *have, hsc_error *err) {
  *have = 0;
  int exists = access(path, F_OK) == 0;
  HSC_CHECK_MPI(MPI_Bcast(&exists, 1, MPI_INT, 0, comm));
  if (!exists || force) return HSC_OK;
  hsc_error e = {0};
  if (hsc_latency_load(m, path, NULL, 0, NULL, comm, &e) != HSC_OK) {
    hsc_log(HSC_LOG_WARN, "%s (profiling again)", e.msg);
    return HSC_OK;
  }
  hsc_status st = hsc_latency_check(m, s, cfg->latency.batch, cfg->dist.backend, path, err);
  if (st != HSC_OK) {
    const size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n,
             "; it was kept: remove it, set latency.model, or pass --force");
    return st;
  }
  *have = 1;
  return HSC_OK;
}

hsc_status hsc_latency_profile(const hsc_config *cfg, MPI_Comm comm, const hsc_profile_opts *opts,
                               hsc_latency_model *m, hsc_error *err) {
  int rank;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  hsc_signals_install();
  char path[HSC_CFG_PATH + 16], dir[HSC_CFG_PATH + 16];
  hsc_latency_model_path(cfg, path, sizeof path);
  hsc_space space;
  hsc_status st = hsc_space_init(&space, cfg, err);
  if (st != HSC_OK) return st;
  if ((st = check_parallel(cfg, comm, err)) != HSC_OK) return st;
  int have = 0;
  if ((st = existing_model(cfg, &space, path, opts->force, comm, m, &have, err)) != HSC_OK) return st;
  if (have) {
    hsc_log(HSC_LOG_INFO,
            "%s already holds the latency model of this space, batch %d and backend %s (created "
            "%s); nothing to profile (--force profiles again)",
            path, m->batch, m->backend, m->created);
    return HSC_OK;
  }
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  if ((st = hsc_agree(comm, rank == 0 && slash ? hsc_make_dirs(dir, err) : HSC_OK, err)) != HSC_OK) return st;

  bench b;
  if ((st = bench_open(&b, cfg, err)) != HSC_OK) return st;
  const hsc_space *s = &b.space;
  /* Jobs: stem, head, every (block, op, scale), then the fit and hold-out architectures. */
  const int nfit = cfg->latency.fit_archs, nhold = cfg->latency.holdout_archs;
  const int nlut = 2 + s->nblocks * s->nops * s->nscales, n = nlut + nfit + nhold;
  job *jobs = hsc_xcalloc((size_t)n, sizeof *jobs);
  int j = 0;
  hsc_arch_uniform(s, s->ops[0], 0, &jobs[j].arch);
  jobs[j++].part = -1;
  hsc_arch_uniform(s, s->ops[0], 0, &jobs[j].arch);
  jobs[j++].part = s->nblocks;
  for (int l = 0; l < s->nblocks; l++)
    for (int o = 0; o < s->nops; o++)
      for (int sc = 0; sc < s->nscales; sc++) {
        hsc_arch_uniform(s, s->ops[o], sc, &jobs[j].arch);
        jobs[j++].part = l;
      }
  for (int i = 0; i < nfit + nhold; i++, j++) {
    const uint64_t stream = i < nfit ? STREAM_FIT + (uint64_t)i : STREAM_HOLDOUT + (uint64_t)(i - nfit);
    sample_arch(s, cfg->latency.sampling, (uint64_t)cfg->run.seed, stream, &jobs[j].arch);
    jobs[j].part = ARCH_JOB;
  }
  /* One full forward first: every buffer holds real activations before anything is timed. */
  hsc_supernet_forward(b.net, &jobs[nlut].arch, HSC_BN_EVAL);
  char desc[512];
  b.be->describe(b.ctx, desc, sizeof desc);
  hsc_log(HSC_LOG_INFO,
          "profiling %d LUT entries and %d + %d architectures at batch %d on %s (%s); %d warm-up runs, %d "
          "rounds%s",
          nlut, nfit, nhold, cfg->latency.batch, b.be->name, desc, cfg->latency.warmup, cfg->latency.repeats,
          cfg->latency.parallel ? ", split over the ranks" : "");
  st = measure_over(&b, jobs, n, cfg->latency.parallel, comm, "profile", rank == 0 && !opts->quiet, err);
  if (st == HSC_OK) {
    memset(m, 0, sizeof *m);
    describe_model(m, &b);
    m->stem = jobs[0].result;
    m->head = jobs[1].result;
    for (int i = 2; i < nlut; i++) {
      const int l = jobs[i].part;
      m->lut[l][jobs[i].arch.op[l]][jobs[i].arch.scale[l]] = jobs[i].result;
    }
    arch_table t = {.nfit = nfit, .nhold = nhold, .jobs = jobs + nlut};
    fit_model(m, s, &t);
    hsc_status written = HSC_OK;
    if (rank == 0) {
      char csv[HSC_CFG_PATH + 32], svg[HSC_CFG_PATH + 32];
      sibling_path(path, "-archs.csv", csv, sizeof csv);
      sibling_path(path, "-fit.svg", svg, sizeof svg);
      written = hsc_latency_save(m, path, err);
      if (written == HSC_OK) written = write_csv(csv, s, &t, err);
      if (written == HSC_OK) written = write_plot(svg, m, &t, err);
    }
    arch_table_free(&t);
    st = hsc_agree(comm, written, err);
  }
  free(jobs);
  bench_close(&b);
  return st;
}

hsc_status hsc_latency_measure(const hsc_config *cfg, MPI_Comm comm, const hsc_arch *archs, int n,
                               hsc_lat_entry *out, hsc_error *err) {
  hsc_signals_install();
  bench b;
  hsc_status st = bench_open(&b, cfg, err);
  if (st != HSC_OK) return st;
  job *jobs = hsc_xcalloc((size_t)n, sizeof *jobs);
  for (int i = 0; i < n; i++) jobs[i] = (job){.part = ARCH_JOB, .arch = archs[i]};
  hsc_supernet_forward(b.net, &archs[0], HSC_BN_EVAL);
  st = measure_over(&b, jobs, n, 0, comm, "measure", 0, err);
  for (int i = 0; i < n && st == HSC_OK; i++) out[i] = jobs[i].result;
  free(jobs);
  bench_close(&b);
  return st;
}
