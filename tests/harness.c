#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsconas/rng.h"

void hsc_test_fail_at(hsc_test *t, const char *file, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const hsc_proc_info *p = hsc_proc();
  if (p->size > 1)
    fprintf(stderr, "  [%s] rank %d: %s:%d: %s\n", t->name, p->rank, file, line, msg);
  else
    fprintf(stderr, "  [%s] %s:%d: %s\n", t->name, file, line, msg);
  t->failed++;
}

void hsc_test_skip(hsc_test *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->reason, sizeof t->reason, fmt, ap);
  va_end(ap);
  t->skipped = 1;
}

int hsc_test_close_at(hsc_test *t, const char *file, int line, const char *what, const float *got,
                      const float *want, size_t n, double rtol, double atol) {
  size_t bad = 0, worst = 0;
  double worst_excess = -1.0, max_abs = 0.0, max_rel = 0.0;
  for (size_t i = 0; i < n; i++) {
    double g = got[i], w = want[i], diff = fabs(g - w);
    double allowed = atol + rtol * fabs(w);
    if (!(diff <= allowed)) { /* also catches NaN */
      bad++;
      double excess = isnan(diff) ? INFINITY : diff - allowed;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
    if (diff > max_abs) max_abs = diff;
    if (fabs(w) > 0 && diff / fabs(w) > max_rel) max_rel = diff / fabs(w);
  }
  if (bad) {
    hsc_test_fail_at(t, file, line,
                     "%s: %zu of %zu elements differ (rtol %g, atol %g); worst [%zu]: got %.9g, want "
                     "%.9g; max abs err %.3g",
                     what, bad, n, rtol, atol, worst, (double)got[worst], (double)want[worst], max_abs);
    return 0;
  }
  if (t->verbose)
    fprintf(stderr, "  [%s] %s: %zu elements, max abs err %.3g, max rel err %.3g\n", t->name, what, n,
            max_abs, max_rel);
  return 1;
}

float *tu_randn(uint64_t stream, size_t n, float scale) {
  float *x = hsc_xmalloc(n * sizeof(float));
  hsc_rng r;
  hsc_rng_init(&r, 12345, HSC_RNG_TEST, stream);
  hsc_rng_fill_normal(&r, x, n, 0.0f, scale);
  return x;
}

float *tu_randu(uint64_t stream, size_t n, float lo, float hi) {
  float *x = hsc_xmalloc(n * sizeof(float));
  hsc_rng r;
  hsc_rng_init(&r, 12345, HSC_RNG_TEST, stream);
  hsc_rng_fill_uniform(&r, x, n, lo, hi);
  return x;
}

float *tu_copy(const float *x, size_t n) {
  float *y = hsc_xmalloc(n * sizeof(float));
  memcpy(y, x, n * sizeof(float));
  return y;
}

int tu_check_accumulated_at(hsc_test *t, const char *file, int line, const char *what, const float *got,
                            const float *old, const float *fresh, size_t n) {
  float *want = hsc_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) want[i] = old[i] + fresh[i];
  int ok = hsc_test_close_at(t, file, line, what, got, want, n, 1e-6, 1e-7);
  free(want);
  return ok;
}

double tu_dot(const float *a, const float *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
  return s;
}

int tu_check_grad_at(hsc_test *t, const char *file, int line, const char *what, tu_loss_fn loss, void *ctx,
                     float *var, const float *analytic, size_t count, float h, double rtol, double atol,
                     int max_checks) {
  size_t checks = count <= (size_t)max_checks ? count : (size_t)max_checks;
  hsc_rng r;
  hsc_rng_init(&r, 777, HSC_RNG_TEST, count);
  int ok = 1, bad = 0;
  double worst_excess = -1.0, worst_num = 0.0, worst_ana = 0.0, max_err = 0.0;
  size_t worst_i = 0;
  for (size_t c = 0; c < checks; c++) {
    size_t i;
    if (checks == count)
      i = c;
    else if (c == 0)
      i = 0;
    else if (c == 1)
      i = count - 1;
    else
      i = (size_t)hsc_rng_u64(&r) % count;
    float saved = var[i];
    /* The perturbed values are the floats actually stored, so divide by their true distance. */
    float plus = saved + h, minus = saved - h;
    var[i] = plus;
    double lp = loss(ctx);
    var[i] = minus;
    double lm = loss(ctx);
    var[i] = saved;
    double num = (lp - lm) / ((double)plus - (double)minus);
    double ana = analytic[i];
    double err = fabs(num - ana);
    double allowed = atol + rtol * fmax(fabs(num), fabs(ana));
    if (err > max_err) max_err = err;
    if (!(err <= allowed)) {
      ok = 0;
      bad++;
      if (err - allowed > worst_excess) {
        worst_excess = err - allowed;
        worst_i = i;
        worst_num = num;
        worst_ana = ana;
      }
    }
  }
  if (!ok)
    hsc_test_fail_at(t, file, line,
                     "%s: gradient check failed at %d of %zu points (h %g, rtol %g, atol %g); worst "
                     "[%zu]: finite difference %.9g, analytic %.9g",
                     what, bad, checks, (double)h, rtol, atol, worst_i, worst_num, worst_ana);
  else if (t->verbose)
    fprintf(stderr, "  [%s] %s: %zu points, max abs err %.3g\n", t->name, what, checks, max_err);
  return ok;
}

int hsc_test_main(const char *prog, int argc, char **argv, const hsc_test_case *cases, int ncases) {
  const hsc_proc_info *p = hsc_proc();
  const char *filter = argc > 1 ? argv[1] : NULL;
  const char *v = getenv("HSC_TEST_VERBOSE");
  hsc_error err = {0};
  const hsc_backend *be = hsc_backend_find("cpu", &err);
  if (!be) {
    fprintf(stderr, "%s: %s\n", prog, err.msg);
    return 1;
  }
  int passed = 0, failed = 0, skipped = 0;
  for (int i = 0; i < ncases; i++) {
    if (filter && !strstr(cases[i].name, filter)) continue;
    hsc_test t = {.name = cases[i].name, .verbose = v && atoi(v) > 0, .be = be};
    hsc_backend_opts opts = {.threads = 0, .device = -1};
    if (be->init(&t.ctx, &opts, &err) != HSC_OK) {
      fprintf(stderr, "%s: cannot start the cpu backend: %s\n", prog, err.msg);
      return 1;
    }
    double t0 = hsc_now();
    cases[i].fn(&t);
    double dt = hsc_now() - t0;
    be->free(t.ctx);
    int f = t.failed > 0, s = t.skipped && !f;
    if (p->mpi) {
      int local[2] = {f, s}, global[2];
      HSC_CHECK_MPI(MPI_Allreduce(local, global, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
      f = global[0];
      s = global[1] && !f;
    }
    if (p->rank == 0) {
      if (f)
        printf("FAIL %s (%.2fs)\n", cases[i].name, dt);
      else if (s)
        printf("skip %s: %s\n", cases[i].name, t.reason);
      else
        printf("ok   %s (%.2fs)\n", cases[i].name, dt);
      fflush(stdout);
    }
    if (f)
      failed++;
    else if (s)
      skipped++;
    else
      passed++;
  }
  if (p->rank == 0) {
    if (skipped)
      printf("%s: %d passed, %d failed, %d skipped\n", prog, passed, failed, skipped);
    else
      printf("%s: %d passed, %d failed\n", prog, passed, failed);
  }
  return failed ? 1 : 0;
}

void *tu_dev_from(const hsc_backend *be, hsc_backend_ctx *ctx, const void *host, size_t bytes) {
  void *d = be->alloc(ctx, bytes);
  be->upload(ctx, d, host, bytes);
  return d;
}

float *tu_host_from(const hsc_backend *be, hsc_backend_ctx *ctx, const float *d, size_t n) {
  float *h = hsc_xaligned(n * sizeof(float) + 64);
  be->download(ctx, h, d, n * sizeof(float));
  return h;
}

void tu_check_dev_at(hsc_test *t, const char *file, int line, const hsc_backend *be, hsc_backend_ctx *ctx,
                     const char *what, const float *d, const float *want, size_t n, double rtol,
                     double atol) {
  float *got = tu_host_from(be, ctx, d, n);
  hsc_test_close_at(t, file, line, what, got, want, n, rtol, atol);
  free(got);
}

int tu_space(hsc_test *t, hsc_config *cfg, hsc_space *s, const char *const *sets, int nsets) {
  hsc_error err = {0};
  hsc_config_defaults(cfg);
  for (int i = 0; i < nsets; i++)
    if (hsc_config_set(cfg, sets[i], &err) != HSC_OK) {
      T_FAIL(t, "%s", err.msg);
      return 0;
    }
  if (hsc_space_init(s, cfg, &err) != HSC_OK) {
    T_FAIL(t, "%s", err.msg);
    return 0;
  }
  return 1;
}

int tu_tmpdir(hsc_test *t, const char *prefix, char *path, size_t len) {
  if (snprintf(path, len, "/tmp/hsc_test_%s_XXXXXX", prefix) >= (int)len || !mkdtemp(path)) {
    T_FAIL(t, "cannot create a directory /tmp/hsc_test_%s_XXXXXX: %s", prefix, strerror(errno));
    return 0;
  }
  return 1;
}

void tu_rmtree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    unlink(dir);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
      tu_rmtree(path);
    else
      unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

/* An IDX file: big-endian magic and dims, then the bytes. */
static int write_idx(hsc_test *t, const char *path, uint32_t magic, int ndim, const uint32_t *dims,
                     const uint8_t *data, size_t len) {
  uint8_t head[16];
  const uint32_t words[4] = {magic, dims[0], ndim > 1 ? dims[1] : 0, ndim > 2 ? dims[2] : 0};
  for (int i = 0; i <= ndim; i++)
    for (int b = 0; b < 4; b++) head[4 * i + b] = (uint8_t)(words[i] >> (24 - 8 * b));
  FILE *f = fopen(path, "wb");
  const size_t hlen = 4 * (size_t)(ndim + 1);
  if (!f || fwrite(head, 1, hlen, f) != hlen || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
    T_FAIL(t, "cannot write %s: %s", path, strerror(errno));
    return 0;
  }
  return 1;
}

int tu_write_tiny_fmnist(hsc_test *t, const char *dir, int n, int size, uint64_t stream) {
  const size_t pixels = (size_t)n * size * size;
  uint8_t *images = hsc_xmalloc(pixels), *labels = hsc_xmalloc((size_t)n);
  hsc_rng r;
  hsc_rng_init(&r, 0, HSC_RNG_TEST, stream);
  for (size_t i = 0; i < pixels; i++) images[i] = (uint8_t)hsc_rng_u32(&r);
  for (int i = 0; i < n; i++) labels[i] = (uint8_t)(i % 10);
  char path[4096];
  const uint32_t idims[3] = {(uint32_t)n, (uint32_t)size, (uint32_t)size}, ldims[1] = {(uint32_t)n};
  snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
  int ok = write_idx(t, path, 0x803, 3, idims, images, pixels);
  snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
  ok = ok && write_idx(t, path, 0x801, 1, ldims, labels, (size_t)n);
  free(images);
  free(labels);
  return ok;
}

int tu_tiny_run(hsc_test *t, const char *tmp, int write_data, hsc_config *cfg, hsc_space *s) {
  char run[HSC_CFG_PATH + 16], data[HSC_CFG_PATH + 16], dir[HSC_CFG_PATH];
  snprintf(run, sizeof run, "run.dir=%s/run", tmp);
  snprintf(data, sizeof data, "data.path=%s/data", tmp);
  snprintf(dir, sizeof dir, "%s/data", tmp);
  const char *const sets[] = {run,
                              data,
                              "run.seed=5",
                              "data.batch_size=24",
                              "data.eval_batch_size=20",
                              "data.val_size=60",
                              "space.input_size=12",
                              "space.stem_channels=8",
                              "space.stage_channels=[16,32]",
                              "space.stage_blocks=[2,1]",
                              "space.stage_strides=[2,1]",
                              "space.head_channels=24",
                              "space.scales=[0.5,1.0,1.5]",
                              "supernet.epochs=1",
                              "supernet.warmup_steps=2",
                              "supernet.lr=0.1",
                              "eval.recal_batches=2",
                              "eval.val_images=40",
                              "checkpoint.every_steps=4",
                              "checkpoint.keep=2",
                              "log.every_steps=5"};
  if (!tu_space(t, cfg, s, sets, (int)ARRAY_LEN(sets))) return 0;
  if (!write_data) return 1;
  if (mkdir(dir, 0755) != 0) {
    T_FAIL(t, "cannot create %s: %s", dir, strerror(errno));
    return 0;
  }
  return tu_write_tiny_fmnist(t, dir, 300, 12, 1);
}
