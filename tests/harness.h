/* A small test harness: each test program lists its cases in a table and calls hsc_test_main.
 * Checks report file:line and the values that differed, and keep going; T_REQUIRE stops the case.
 * Every program prints one line per case and ends with "NAME: N passed, N failed[, N skipped]";
 * tests/run.sh adds those up and prints the total as the suite's last line. */
#ifndef HSCONAS_TEST_HARNESS_H
#define HSCONAS_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "hsconas/backend.h"
#include "hsconas/config.h"
#include "hsconas/space.h"

typedef struct {
  const char *name;      /* current case */
  int failed;            /* checks that failed in this case */
  int skipped;           /* case skipped (T_SKIP) */
  char reason[512];      /* skip reason */
  int verbose;           /* HSC_TEST_VERBOSE=1: print every array comparison */
  const hsc_backend *be; /* the CPU backend with a context, ready for the case */
  hsc_backend_ctx *ctx;
} hsc_test;

typedef struct {
  const char *name;
  void (*fn)(hsc_test *t);
} hsc_test_case;

/* Runs the cases whose name contains argv[1] (all without an argument). With MPI initialised by the
 * caller, a case fails when it failed on any rank and only rank 0 prints. Returns the exit status. */
int hsc_test_main(const char *prog, int argc, char **argv, const hsc_test_case *cases, int ncases);

void hsc_test_fail_at(hsc_test *t, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define T_FAIL(t, ...) hsc_test_fail_at((t), __FILE__, __LINE__, __VA_ARGS__)
#define T_CHECK(t, cond)                                 \
  do {                                                   \
    if (!(cond)) T_FAIL((t), "check failed: %s", #cond); \
  } while (0)
#define T_REQUIRE(t, cond)                          \
  do {                                              \
    if (!(cond)) {                                  \
      T_FAIL((t), "requirement failed: %s", #cond); \
      return;                                       \
    }                                               \
  } while (0)
#define T_EQ_INT(t, a, b)                                                        \
  do {                                                                           \
    long long t_a_ = (long long)(a), t_b_ = (long long)(b);                      \
    if (t_a_ != t_b_) T_FAIL((t), "%s == %s: %lld != %lld", #a, #b, t_a_, t_b_); \
  } while (0)
#define T_NEAR(t, a, b, tol)                                                                  \
  do {                                                                                        \
    double t_a_ = (double)(a), t_b_ = (double)(b);                                            \
    if (!(t_a_ - t_b_ <= (tol) && t_b_ - t_a_ <= (tol)))                                      \
      T_FAIL((t), "%s ~ %s: %.9g vs %.9g (tolerance %g)", #a, #b, t_a_, t_b_, (double)(tol)); \
  } while (0)
#define T_SKIP(t, ...)               \
  do {                               \
    hsc_test_skip((t), __VA_ARGS__); \
    return;                          \
  } while (0)
void hsc_test_skip(hsc_test *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Element-wise |got - want| <= atol + rtol * |want|. On failure reports how many differ, the worst
 * index and both values. Returns 1 when close. NaN anywhere fails. */
int hsc_test_close_at(hsc_test *t, const char *file, int line, const char *what, const float *got,
                      const float *want, size_t n, double rtol, double atol);
#define T_CLOSE(t, what, got, want, n, rtol, atol) \
  hsc_test_close_at((t), __FILE__, __LINE__, (what), (got), (want), (n), (rtol), (atol))

/* --- configurations --- */

/* cfg = the defaults with each "key=value" of sets [nsets] applied, s = its space. On any error the case
 * fails with the message and 0 is returned. */
int tu_space(hsc_test *t, hsc_config *cfg, hsc_space *s, const char *const *sets, int nsets);

/* --- files --- */

/* A fresh directory /tmp/hsc_test_<prefix>_XXXXXX into path [len]; fails the case and returns 0 on error. */
int tu_tmpdir(hsc_test *t, const char *prefix, char *path, size_t len);
/* Removes dir and everything below it (files and directories only); quiet when it is already gone. */
void tu_rmtree(const char *dir);
/* A Fashion-MNIST-like training set in dir (which must exist): train-images-idx3-ubyte, n pseudo-random
 * size x size images drawn from (HSC_RNG_TEST, stream), and train-labels-idx1-ubyte with label i % 10; no
 * test set. For training tests that must not wait for the real 60k images. Fails the case and returns 0 on
 * error. */
int tu_write_tiny_fmnist(hsc_test *t, const char *dir, int n, int size, uint64_t stream);

/* A tiny training run under the directory tmp: cfg = the defaults with run.dir = tmp/run, data.path =
 * tmp/data, 300 images of 12 x 12 of which 60 are held out (10 steps of 24 images per epoch), 20-image
 * evaluation batches, 2 recalibration batches, 40 validation images, a checkpoint every 4 steps, and a
 * 3-block space (2 stages, 3 scales); s = its space. write_data: also create tmp/data with
 * tu_write_tiny_fmnist (one rank of an MPI test). Fails the case and returns 0 on error. */
int tu_tiny_run(hsc_test *t, const char *tmp, int write_data, hsc_config *cfg, hsc_space *s);

/* --- backend memory (device tests) --- */

/* A new backend buffer holding `bytes` of host memory. */
void *tu_dev_from(const hsc_backend *be, hsc_backend_ctx *ctx, const void *host, size_t bytes);
/* n backend floats back in a new 64-byte aligned host array (caller frees). */
float *tu_host_from(const hsc_backend *be, hsc_backend_ctx *ctx, const float *d, size_t n);
/* Compares n backend floats with the host reference, as T_CLOSE. */
void tu_check_dev_at(hsc_test *t, const char *file, int line, const hsc_backend *be, hsc_backend_ctx *ctx,
                     const char *what, const float *d, const float *want, size_t n, double rtol, double atol);

/* --- helpers shared by the operator tests --- */

/* Accumulation check: got [n] == old [n] + fresh [n], where `fresh` is the gradient the same call wrote
 * into a zeroed buffer and `got` what it added into `old`. The same single float addition either way, so
 * equal up to one rounding: rtol 1e-6, atol 1e-7 cover an FMA contraction of the operator's final add. */
int tu_check_accumulated_at(hsc_test *t, const char *file, int line, const char *what, const float *got,
                            const float *old, const float *fresh, size_t n);
#define TU_CHECK_ACCUMULATED(t, what, got, old, fresh, n) \
  tu_check_accumulated_at((t), __FILE__, __LINE__, (what), (got), (old), (fresh), (n))

/* Deterministic test data: N(0, 1) * scale from Philox keyed by (HSC_RNG_TEST, stream). Caller frees.
 * Exactly n floats with malloc's alignment (no slack), so that AddressSanitizer sees a read past the end
 * and operators are tested on tensors that are not 64-byte aligned (arena slices are not). */
float *tu_randn(uint64_t stream, size_t n, float scale);
/* Uniform in [lo, hi). Caller frees. */
float *tu_randu(uint64_t stream, size_t n, float lo, float hi);
float *tu_copy(const float *x, size_t n);
/* sum_i a[i] * b[i] in double. */
double tu_dot(const float *a, const float *b, size_t n);

/* Central finite differences for one input or parameter tensor `var` of `count` floats:
 *   numeric[i] = (L(var + h e_i) - L(var - h e_i)) / 2h, with L evaluated by loss(ctx) in double.
 * Checks every element when count <= max_checks, else max_checks elements picked deterministically
 * (always including the first and the last). Passes when
 *   |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|).
 * Restores var afterwards. Returns 1 when every checked element passed. */
typedef double (*tu_loss_fn)(void *ctx);
int tu_check_grad_at(hsc_test *t, const char *file, int line, const char *what, tu_loss_fn loss, void *ctx,
                     float *var, const float *analytic, size_t count, float h, double rtol, double atol,
                     int max_checks);
#define TU_CHECK_GRAD(t, what, loss, ctx, var, analytic, count, h, rtol, atol, max_checks)                  \
  tu_check_grad_at((t), __FILE__, __LINE__, (what), (loss), (ctx), (var), (analytic), (count), (h), (rtol), \
                   (atol), (max_checks))

#endif
