/* Statistics of the latency model: the least-squares line and the correlations of its report.
 * Everything in double precision; n is small (hundreds), so Kendall's tau is the plain O(n^2) count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/latency.h"

static double mean_of(const double *v, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += v[i];
  return s / n;
}

void hsc_fit_line(const double *x, const double *y, int n, double *k, double *b) {
  const double mx = mean_of(x, n), my = mean_of(y, n);
  double sxx = 0, sxy = 0;
  for (int i = 0; i < n; i++) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  *k = sxx > 0 ? sxy / sxx : 0.0;
  *b = my - *k * mx;
}

double hsc_pearson(const double *x, const double *y, int n) {
  if (n < 2) return NAN;
  const double mx = mean_of(x, n), my = mean_of(y, n);
  double sxx = 0, syy = 0, sxy = 0;
  for (int i = 0; i < n; i++) {
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

typedef struct {
  double v;
  int i;
} ranked;

static int by_value(const void *a, const void *b) {
  const ranked *p = a, *q = b;
  if (p->v != q->v) return p->v < q->v ? -1 : 1;
  return p->i - q->i;
}

/* Ranks 1..n with ties given the average of the ranks they span. */
static void ranks_of(const double *v, int n, double *r) {
  ranked *t = hsc_xmalloc((size_t)n * sizeof *t);
  for (int i = 0; i < n; i++) t[i] = (ranked){v[i], i};
  qsort(t, (size_t)n, sizeof *t, by_value);
  for (int i = 0; i < n;) {
    int j = i;
    while (j + 1 < n && t[j + 1].v == t[i].v) j++;
    const double avg = (i + j) / 2.0 + 1.0;
    for (int m = i; m <= j; m++) r[t[m].i] = avg;
    i = j + 1;
  }
  free(t);
}

double hsc_spearman(const double *x, const double *y, int n) {
  if (n < 2) return NAN;
  double *rx = hsc_xmalloc((size_t)n * sizeof *rx), *ry = hsc_xmalloc((size_t)n * sizeof *ry);
  ranks_of(x, n, rx);
  ranks_of(y, n, ry);
  const double r = hsc_pearson(rx, ry, n);
  free(rx);
  free(ry);
  return r;
}

/* tau-b = (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)), n0 = n(n-1)/2. */
double hsc_kendall(const double *x, const double *y, int n) {
  if (n < 2) return NAN;
  double conc = 0, disc = 0, tx = 0, ty = 0;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0) tx++;
      if (dy == 0) ty++;
      if (dx == 0 || dy == 0) continue;
      if ((dx > 0) == (dy > 0))
        conc++;
      else
        disc++;
    }
  const double n0 = (double)n * (n - 1) / 2.0;
  const double den = sqrt((n0 - tx) * (n0 - ty));
  return den > 0 ? (conc - disc) / den : NAN;
}

void hsc_lat_quality_compute(const double *measured, const double *predicted, int n, hsc_lat_quality *q) {
  memset(q, 0, sizeof *q);
  q->n = n;
  if (n == 0) return;
  double se = 0, ape = 0;
  int in5 = 0, in10 = 0;
  for (int i = 0; i < n; i++) {
    const double d = predicted[i] - measured[i];
    const double rel = fabs(d) / measured[i] * 100.0;
    se += d * d;
    ape += rel;
    if (rel > q->max_ape) q->max_ape = rel;
    in5 += rel <= 5.0;
    in10 += rel <= 10.0;
  }
  q->rmse_ms = sqrt(se / n);
  q->mape = ape / n;
  q->within5 = 100.0 * in5 / n;
  q->within10 = 100.0 * in10 / n;
  q->pearson = hsc_pearson(measured, predicted, n);
  q->spearman = hsc_spearman(measured, predicted, n);
  q->kendall = hsc_kendall(measured, predicted, n);
}
