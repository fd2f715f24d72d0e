/* The latency model: the least-squares fit recovers known k and b, the statistics equal hand-computed
 * values, the model file round-trips every number exactly, and a model for another space or batch, a
 * truncated file and a file with a LUT entry missing are each refused with a message naming the problem. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hsconas/latency.h"
#include "hsconas/rng.h"

static void t_fit_exact(hsc_test *t) {
  /* y = 1.7 x + 0.3 on 50 points spread over three decades: k and b to rounding. */
  enum { N = 50 };
  double x[N], y[N];
  for (int i = 0; i < N; i++) {
    x[i] = 0.05 + 0.37 * i + 0.001 * i * i * i;
    y[i] = 1.7 * x[i] + 0.3;
  }
  double k, b;
  hsc_fit_line(x, y, N, &k, &b);
  T_NEAR(t, k, 1.7, 1e-12);
  T_NEAR(t, b, 0.3, 1e-10);
  /* Symmetric residuals (+e, -e at the same x) leave the line unchanged. */
  double x2[2 * N], y2[2 * N];
  for (int i = 0; i < N; i++) {
    x2[2 * i] = x2[2 * i + 1] = x[i];
    y2[2 * i] = y[i] + 0.01 * (i % 7);
    y2[2 * i + 1] = y[i] - 0.01 * (i % 7);
  }
  hsc_fit_line(x2, y2, 2 * N, &k, &b);
  T_NEAR(t, k, 1.7, 1e-12);
  T_NEAR(t, b, 0.3, 1e-10);
  /* A negative slope and offset, two points: the line through them. */
  const double px[2] = {2.0, 6.0}, py[2] = {1.0, -7.0};
  hsc_fit_line(px, py, 2, &k, &b);
  T_NEAR(t, k, -2.0, 1e-15);
  T_NEAR(t, b, 5.0, 1e-14);
}

static void t_statistics(hsc_test *t) {
  /* y swaps two adjacent pairs of x = 1..5: 8 concordant and 2 discordant pairs of 10, tau = 0.6; the
   * rank differences are 1,1,1,1,0, rho = 1 - 6 * 4 / (5 * 24) = 0.8 = Pearson (the values are ranks). */
  const double x[5] = {1, 2, 3, 4, 5}, y[5] = {2, 1, 4, 3, 5};
  T_NEAR(t, hsc_kendall(x, y, 5), 0.6, 1e-15);
  T_NEAR(t, hsc_spearman(x, y, 5), 0.8, 1e-15);
  T_NEAR(t, hsc_pearson(x, y, 5), 0.8, 1e-15);
  /* A tie in x: tau-b = 5 / sqrt((6 - 1) * 6); Spearman with average ranks (1, 2.5, 2.5, 4) against
   * (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5). */
  const double tx[4] = {1, 2, 2, 3}, ty[4] = {1, 2, 3, 4};
  T_NEAR(t, hsc_kendall(tx, ty, 4), 5.0 / sqrt(30.0), 1e-15);
  T_NEAR(t, hsc_spearman(tx, ty, 4), 4.5 / sqrt(22.5), 1e-15);
  /* Spearman is rank-only: a monotone transform of y changes nothing. */
  double ey[5];
  for (int i = 0; i < 5; i++) ey[i] = exp(y[i]);
  T_NEAR(t, hsc_spearman(x, ey, 5), 0.8, 1e-15);
  /* Errors: measured 10, 20, 40, 50; predicted 10.4 (+4%), 17 (-15%), 44 (+10%), 50 (0%). */
  const double m[4] = {10, 20, 40, 50}, p[4] = {10.4, 17, 44, 50};
  hsc_lat_quality q;
  hsc_lat_quality_compute(m, p, 4, &q);
  T_EQ_INT(t, q.n, 4);
  T_NEAR(t, q.mape, (4 + 15 + 10 + 0) / 4.0, 1e-12);
  T_NEAR(t, q.max_ape, 15.0, 1e-12);
  T_NEAR(t, q.within5, 50.0, 1e-12);
  T_NEAR(t, q.within10, 75.0, 1e-12);
  T_NEAR(t, q.rmse_ms, sqrt((0.16 + 9 + 16 + 0) / 4.0), 1e-12);
  T_NEAR(t, q.spearman, 1.0, 1e-15);
}

/* ---- model files ---- */

static int tiny_space(hsc_test *t, hsc_space *s, const char *scales) {
  hsc_config cfg;
  char set[128];
  snprintf(set, sizeof set, "space.scales=%s", scales);
  const char *sets[] = {"space.stem_channels=8",    "space.stage_channels=[16,32]",
                        "space.stage_blocks=[1,2]", "space.stage_strides=[2,2]",
                        "space.head_channels=64",   set};
  return tu_space(t, &cfg, s, sets, (int)ARRAY_LEN(sets));
}

/* A model of space s with random (awkward) numbers in every field. */
static void random_model(const hsc_space *s, hsc_latency_model *m) {
  memset(m, 0, sizeof *m);
  hsc_rng r;
  hsc_rng_init(&r, 5, HSC_RNG_TEST, 17);
  m->format = HSC_LATENCY_FORMAT;
  snprintf(m->program, sizeof m->program, "hsconas test");
  snprintf(m->created, sizeof m->created, "2026-11-29T00:00:00Z");
  snprintf(m->backend, sizeof m->backend, "cpu");
  snprintf(m->device, sizeof m->device, "cpu: a \"quoted\" model \\ with: colons, 2 threads");
  snprintf(m->host, sizeof m->host, "node-1");
  m->cores = 16;
  m->threads = 2;
  m->pinned = 1;
  m->batch = 8;
  m->in_c = s->in_c, m->in_h = s->in_h, m->in_w = s->in_w;
  m->space_hash = s->hash;
  m->nblocks = s->nblocks, m->nops = s->nops, m->nscales = s->nscales;
  memcpy(m->ops, s->ops, sizeof m->ops);
  memcpy(m->scales, s->scales, sizeof m->scales);
  m->warmup = 3, m->repeats = 15, m->min_sample_ms = 2.0;
  snprintf(m->sampling, sizeof m->sampling, "spread");
  m->seed = 123456789012345LL;
  m->stem = (hsc_lat_entry){hsc_rng_uniform(&r) / 3.0, hsc_rng_uniform(&r) / 7.0};
  m->head = (hsc_lat_entry){hsc_rng_uniform(&r) * M_PI, 1e-9};
  for (int l = 0; l < s->nblocks; l++)
    for (int o = 0; o < s->nops; o++)
      for (int c = 0; c < s->nscales; c++)
        m->lut[l][s->ops[o]][c] =
            (hsc_lat_entry){(1 + hsc_rng_uniform(&r)) / 3.0, hsc_rng_uniform(&r) / 11.0};
  m->k = 1.0 + 1.0 / 3.0;
  m->b = -0.1 / 7.0;
  hsc_lat_quality q = {100, 0.1 / 3, 2.0 / 3, 9.5, 97, 100, 0.99, 0.98, 0.9};
  m->fit = m->holdout = m->flops = q;
  m->flops.spearman = NAN;
  m->flops_k = 1e-7 / 3;
  m->flops_b = 0.25;
}

/* The YAML text of m (malloc'd, NUL-terminated), through a temporary file as a user's file would be. */
static char *model_text(const hsc_latency_model *m, size_t *len) {
  FILE *f = tmpfile();
  if (!f) abort();
  hsc_latency_write(m, f);
  const long n = ftell(f);
  char *text = malloc((size_t)n + 1);
  if (n < 0 || !text || fseek(f, 0, SEEK_SET) != 0 || fread(text, 1, (size_t)n, f) != (size_t)n) abort();
  fclose(f);
  text[n] = '\0';
  *len = (size_t)n;
  return text;
}

static int same_double(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

static void t_roundtrip(hsc_test *t) {
  hsc_space s;
  if (!tiny_space(t, &s, "[0.5,1.0,1.5]")) return;
  hsc_latency_model *m = calloc(2, sizeof *m), *back = m + 1;
  random_model(&s, m);
  size_t len;
  char *text = model_text(m, &len);
  hsc_error err = {0};
  T_REQUIRE(t,
            hsc_latency_parse(back, text, len, "mem.yaml", &err) == HSC_OK || (T_FAIL(t, "%s", err.msg), 0));
  T_CHECK(t, hsc_latency_check(back, &s, 8, "cpu", "mem.yaml", &err) == HSC_OK);
  T_CHECK(t,
          !strcmp(back->device, m->device) && !strcmp(back->host, m->host) && !strcmp(back->backend, "cpu"));
  T_CHECK(t, back->cores == 16 && back->threads == 2 && back->pinned == 1 && back->batch == 8 &&
                 back->seed == m->seed);
  T_CHECK(t, back->space_hash == s.hash && back->nblocks == s.nblocks && back->nscales == s.nscales);
  T_CHECK(t, same_double(back->stem.median, m->stem.median) && same_double(back->head.iqr, m->head.iqr));
  T_CHECK(t, same_double(back->k, m->k) && same_double(back->b, m->b));
  T_CHECK(t, same_double(back->flops_k, m->flops_k) && same_double(back->flops.spearman, m->flops.spearman));
  T_CHECK(t, same_double(back->holdout.kendall, m->holdout.kendall) && back->holdout.n == 100);
  int bad = 0;
  for (int l = 0; l < s.nblocks; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++)
      for (int c = 0; c < s.nscales; c++)
        bad += !same_double(back->lut[l][o][c].median, m->lut[l][o][c].median) ||
               !same_double(back->lut[l][o][c].iqr, m->lut[l][o][c].iqr);
  T_EQ_INT(t, bad, 0);
  /* The prediction is k * (stem + sum + head) + b, by hand, and equal bit for bit after the round trip. */
  hsc_rng r;
  hsc_rng_init(&r, 1, HSC_RNG_TEST, 3);
  for (int i = 0; i < 20; i++) {
    hsc_arch a;
    hsc_arch_sample(&s, NULL, &r, &a);
    double sum = m->stem.median;
    for (int l = 0; l < s.nblocks; l++) sum += m->lut[l][a.op[l]][a.scale[l]].median;
    sum += m->head.median;
    T_NEAR(t, hsc_latency_predict(m, &a), m->k * sum + m->b, 1e-12);
    const double p = hsc_latency_predict(m, &a), q = hsc_latency_predict(back, &a);
    T_CHECK(t, same_double(p, q));
  }
  free(text);
  free(m);
}

/* parse + check of text; returns the status and leaves the message in err. */
static hsc_status load_text(const char *text, size_t len, const hsc_space *s, int batch, hsc_error *err) {
  hsc_latency_model *m = malloc(sizeof *m);
  hsc_status st = hsc_latency_parse(m, text, len, "model.yaml", err);
  if (st == HSC_OK) st = hsc_latency_check(m, s, batch, "cpu", "model.yaml", err);
  free(m);
  return st;
}

static void expect_refused(hsc_test *t, const char *what, hsc_status st, const hsc_error *err,
                           const char *pattern) {
  if (st == HSC_OK)
    T_FAIL(t, "%s: accepted", what);
  else if (!strstr(err->msg, pattern))
    T_FAIL(t, "%s: message lacks '%s': %s", what, pattern, err->msg);
  else if (!strstr(err->msg, "model.yaml"))
    T_FAIL(t, "%s: message does not name the file: %s", what, err->msg);
  else if (t->verbose)
    printf("    %s: %s\n", what, err->msg);
}

static void t_rejects(hsc_test *t) {
  hsc_space s, other;
  if (!tiny_space(t, &s, "[0.5,1.0,1.5]") || !tiny_space(t, &other, "[0.5,1.0]")) return;
  hsc_latency_model *m = malloc(sizeof *m);
  random_model(&s, m);
  size_t len;
  char *text = model_text(m, &len);
  hsc_error err = {0};
  T_CHECK(t, load_text(text, len, &s, 8, &err) == HSC_OK);
  expect_refused(t, "another space", load_text(text, len, &other, 8, &err), &err, "another search space");
  expect_refused(t, "another batch", load_text(text, len, &s, 32, &err), &err, "batch 8");
  /* Truncated mid-line (inside a flow mapping): a YAML error; at a line boundary: a missing key. */
  expect_refused(t, "truncated mid-line", load_text(text, len * 2 / 3, &s, 8, &err), &err, "not valid YAML");
  const char *hold = strstr(text, "\nholdout:");
  T_REQUIRE(t, hold);
  const size_t cut = (size_t)(hold - text) + 1;
  expect_refused(t, "truncated at a line", load_text(text, cut, &s, 8, &err), &err, "key 'holdout': missing");
  expect_refused(t, "empty file", load_text("", 0, &s, 8, &err), &err, "not a latency model");
  /* One LUT entry (block 1, shuffle5: three lines) removed. */
  char *gap = strdup(text);
  char *e = strstr(gap, "  - {block: 1, op: shuffle5,");
  T_REQUIRE(t, e);
  char *next = strstr(e + 1, "  - {block:");
  memmove(e, next, strlen(next) + 1);
  expect_refused(t, "missing LUT entry", load_text(gap, strlen(gap), &s, 8, &err), &err,
                 "no entry for block 1 operator shuffle5");
  /* A LUT entry with a value short. */
  free(gap);
  gap = strdup(text);
  e = strstr(strstr(gap, "  - {block: 2, op: xception,"), "median: [");
  char *close = strchr(e, ']'), *comma = close;
  while (*comma != ',') comma--;
  memmove(comma, close, strlen(close) + 1);
  expect_refused(t, "short LUT entry", load_text(gap, strlen(gap), &s, 8, &err), &err,
                 "expected 3 values, got 2");
  free(gap);
  /* Backend. */
  hsc_latency_model *back = malloc(sizeof *back);
  T_REQUIRE(t, hsc_latency_parse(back, text, len, "model.yaml", &err) == HSC_OK);
  expect_refused(t, "another backend", hsc_latency_check(back, &s, 8, "cuda", "model.yaml", &err), &err,
                 "'cpu' backend");
  free(back);
  free(text);
  free(m);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"fit_recovers_k_and_b", t_fit_exact},
      {"statistics_hand_values", t_statistics},
      {"model_file_roundtrip", t_roundtrip},
      {"model_file_rejects", t_rejects},
  };
  return hsc_test_main("test_latency", argc, argv, cases, (int)ARRAY_LEN(cases));
}
