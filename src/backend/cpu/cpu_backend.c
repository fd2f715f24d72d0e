/* The CPU backend table: host memory, OpenMP threads, OpenBLAS for GEMMs (its own threading off: the
 * operators tile their GEMMs over OpenMP threads so that small per-image products still use every core). */
#define _GNU_SOURCE /* sched_getaffinity, pthread_setaffinity_np */
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

float *hsc_cpu_scratch(hsc_cpu_ctx *c, size_t floats) {
  if (floats > c->scratch_floats) {
    free(c->scratch);
    c->scratch = hsc_xaligned(floats * sizeof(float));
    c->scratch_floats = floats;
  }
  return c->scratch;
}

/* Binds OpenMP thread i of the operators' team to allowed core (first + i) mod count, where first is this
 * rank's node-local share (local_rank * threads), so ranks on one node do not share cores. libgomp keeps
 * the same threads for later teams of the same size, so the binding lasts. */
static hsc_status cpu_pin(hsc_cpu_ctx *c, hsc_error *err) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    return hsc_error_set(err, HSC_ERR_DEVICE, "cannot pin threads: sched_getaffinity: %s", strerror(errno));
  int cpus[CPU_SETSIZE], count = 0;
  for (int i = 0; i < CPU_SETSIZE; i++)
    if (CPU_ISSET(i, &allowed)) cpus[count++] = i;
  if (count == 0) return hsc_error_set(err, HSC_ERR_DEVICE, "cannot pin threads: no allowed CPU");
  const int first = hsc_proc()->local_rank * c->threads;
  int failed = 0;
#pragma omp parallel num_threads(c->threads) reduction(+ : failed)
  {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[(first + omp_get_thread_num()) % count], &one);
    failed += pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0;
  }
  if (failed)
    return hsc_error_set(err, HSC_ERR_DEVICE,
                         "cannot pin threads: pthread_setaffinity_np failed for %d of %d", failed,
                         c->threads);
  c->pinned = 1;
  return HSC_OK;
}

static hsc_status cpu_init(hsc_backend_ctx **out, const hsc_backend_opts *opts, hsc_error *err) {
  hsc_cpu_ctx *c = hsc_xcalloc(1, sizeof *c);
  c->threads = opts && opts->threads > 0 ? opts->threads : omp_get_max_threads();
  if (c->threads < 1) c->threads = 1;
  /* Every GEMM is issued from inside an OpenMP tile loop; OpenBLAS threads would oversubscribe. */
  openblas_set_num_threads(1);
  if (opts && opts->pin) {
    hsc_status st = cpu_pin(c, err);
    if (st != HSC_OK) {
      free(c);
      return st;
    }
  }
  *out = (hsc_backend_ctx *)c;
  return HSC_OK;
}

static void cpu_free(hsc_backend_ctx *ctx) {
  if (!ctx) return;
  hsc_cpu_ctx *c = hsc_cpu(ctx);
  free(c->scratch);
  free(c);
}

static void cpu_describe(const hsc_backend_ctx *ctx, char *buf, size_t len) {
  const hsc_cpu_ctx *c = (const hsc_cpu_ctx *)ctx;
  char model[256] = "unknown CPU";
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "model name", 10)) {
        char *colon = strchr(line, ':');
        if (colon) {
          colon += 2;
          colon[strcspn(colon, "\n")] = '\0';
          snprintf(model, sizeof model, "%s", colon);
        }
        break;
      }
    }
    fclose(f);
  }
  const char *core = getenv("OPENBLAS_CORETYPE");
  snprintf(buf, len, "cpu: %s, %d threads%s, %s (kernel %s)", model, c->threads, c->pinned ? " pinned" : "",
           openblas_get_config(), core ? core : openblas_get_corename());
}

static int cpu_threads(const hsc_backend_ctx *ctx) { return ((const hsc_cpu_ctx *)ctx)->threads; }

static void *cpu_alloc(hsc_backend_ctx *ctx, size_t bytes) {
  (void)ctx;
  void *p = hsc_xaligned(bytes);
  memset(p, 0, (bytes + 63) / 64 * 64);
  return p;
}

static void cpu_release(hsc_backend_ctx *ctx, void *p) {
  (void)ctx;
  free(p);
}

/* Large copies and fills are split over the threads: run by one thread, the other spun at the next
 * operator's barrier (about a tenth of a training step went to zeroing gradient buffers). */
enum { CPU_MEM_PARALLEL_MIN = 1 << 18, CPU_MEM_SERIAL_MAX = 1 << 30 };

/* dst = src (src NULL: zeros) over `bytes`, cut into one 64-byte aligned span per thread when large. */
static void cpu_fill(hsc_backend_ctx *ctx, void *dst, const void *src, size_t bytes) {
  const int threads = hsc_cpu(ctx)->threads;
  const char *d = dst, *s = src;
  const int overlap = s && d + bytes > s && s + bytes > d;
  if (bytes < CPU_MEM_PARALLEL_MIN || bytes >= (size_t)CPU_MEM_SERIAL_MAX * 64 || threads < 2 || overlap) {
    if (bytes && s) memmove(dst, src, bytes);
    if (bytes && !s) memset(dst, 0, bytes);
    return;
  }
  /* Whole cache lines per thread by the backend's one splitting rule; the last thread takes the tail. */
  const int lines = (int)(bytes / 64);
#pragma omp parallel num_threads(threads)
  {
    int lo, hi;
    hsc_cpu_block_range(lines, omp_get_num_threads(), omp_get_thread_num(), &lo, &hi);
    const size_t a = (size_t)lo * 64, b = hi == lines ? bytes : (size_t)hi * 64;
    if (s)
      memcpy((char *)dst + a, s + a, b - a);
    else
      memset((char *)dst + a, 0, b - a);
  }
}

static void cpu_memcpy(hsc_backend_ctx *ctx, void *dst, const void *src, size_t bytes) {
  cpu_fill(ctx, dst, src, bytes);
}

static void cpu_zero(hsc_backend_ctx *ctx, void *p, size_t bytes) { cpu_fill(ctx, p, NULL, bytes); }

static void cpu_sync(hsc_backend_ctx *ctx) { (void)ctx; }

const hsc_backend hsc_backend_cpu = {
    .name = "cpu",
    .init = cpu_init,
    .free = cpu_free,
    .describe = cpu_describe,
    .threads = cpu_threads,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .conv2d_forward = hsc_cpu_conv2d_forward,
    .conv2d_backward = hsc_cpu_conv2d_backward,
    .pointwise_forward = hsc_cpu_pointwise_forward,
    .pointwise_backward = hsc_cpu_pointwise_backward,
    .depthwise_forward = hsc_cpu_depthwise_forward,
    .depthwise_backward = hsc_cpu_depthwise_backward,
    .bn_forward_train = hsc_cpu_bn_forward_train,
    .bn_forward_infer = hsc_cpu_bn_forward_infer,
    .bn_backward = hsc_cpu_bn_backward,
    .bn_stats = hsc_cpu_bn_stats,
    .bn_fold = hsc_cpu_bn_fold,
    .scale_rows = hsc_cpu_scale_rows,
    .bn_backward_reduce = hsc_cpu_bn_backward_reduce,
    .bn_backward_elemt = hsc_cpu_bn_backward_elemt,
    .relu_forward = hsc_cpu_relu_forward,
    .relu_backward = hsc_cpu_relu_backward,
    .split_forward = hsc_cpu_split_forward,
    .split_backward = hsc_cpu_split_backward,
    .concat_forward = hsc_cpu_concat_forward,
    .concat_backward = hsc_cpu_concat_backward,
    .avgpool_forward = hsc_cpu_avgpool_forward,
    .avgpool_backward = hsc_cpu_avgpool_backward,
    .linear_forward = hsc_cpu_linear_forward,
    .linear_backward = hsc_cpu_linear_backward,
    .xent_forward = hsc_cpu_xent_forward,
    .xent_backward = hsc_cpu_xent_backward,
    .accuracy = hsc_cpu_accuracy,
    .sgd_update = hsc_cpu_sgd_update,
    .zero_regions = hsc_cpu_zero_regions,
    .pack_regions = hsc_cpu_pack_regions,
    .unpack_regions = hsc_cpu_unpack_regions,
};
