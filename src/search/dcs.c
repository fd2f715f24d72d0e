/* Dynamic channel scaling (DESIGN.md §1): a per-(block, scale) accuracy-gain estimate from evaluated
 * samples, and the greedy adjustment of an architecture's channel scales to its latency budget. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/search.h"

void hsc_dcs_estimate(const hsc_space *s, const hsc_record *rec, int n, hsc_dcs_gain *g) {
  memset(g, 0, sizeof *g);
  g->nblocks = s->nblocks;
  g->nscales = s->nscales;
  /* x [n] the scale value of block l, y [n] top1, over the records with a finite top1 */
  double *x = hsc_xmalloc(sizeof *x * (size_t)(n > 0 ? n : 1));
  double *y = hsc_xmalloc(sizeof *y * (size_t)(n > 0 ? n : 1));
  int used = 0;
  for (int i = 0; i < n; i++)
    if (isfinite(rec[i].top1)) y[used++] = rec[i].top1;
  g->n = used;
  if (used >= 2) {
    for (int l = 0; l < s->nblocks; l++) {
      int u = 0;
      for (int i = 0; i < n; i++) {
        if (!isfinite(rec[i].top1)) continue;
        assert(rec[i].arch.nblocks == s->nblocks && rec[i].arch.scale[l] < s->nscales);
        x[u++] = s->scales[rec[i].arch.scale[l]];
      }
      /* hsc_fit_line gives slope 0 when x is constant: no spread, no gain */
      double slope, icept;
      hsc_fit_line(x, y, used, &slope, &icept);
      for (int j = 0; j < s->nscales; j++) g->gain[l][j] = slope * (s->scales[j] - s->scales[0]);
    }
  }
  free(x);
  free(y);
}

/* The allowed scale of block l whose value is nearest to scale index j (ties: the smaller one). The scale
 * list is strictly increasing (hsc_space_init), so index order is value order. */
static int nearest_allowed(const hsc_space *s, const hsc_space_mask *m, int l, int j) {
  int best = -1;
  double best_d = INFINITY;
  for (int i = 0; i < s->nscales; i++) {
    if (!m->scale[l][i]) continue;
    const double d = fabs(s->scales[i] - s->scales[j]);
    if (d < best_d) best = i, best_d = d;
  }
  assert(best >= 0); /* shrinking never removes the last scale of a block */
  return best;
}

static int next_lower(const hsc_space_mask *m, int l, int j) {
  for (int i = j - 1; i >= 0; i--)
    if (m->scale[l][i]) return i;
  return -1;
}

static int next_higher(const hsc_space *s, const hsc_space_mask *m, int l, int j) {
  for (int i = j + 1; i < s->nscales; i++)
    if (m->scale[l][i]) return i;
  return -1;
}

/* The prediction of a with block l's scale set to j (a is restored). Feasibility is always judged by
 * hsc_latency_predict itself, so that the caller's check of the result agrees bit for bit; it costs
 * O(nblocks) per candidate move, O(nblocks^3 * nscales) per call at worst (a few million additions for the
 * largest space), which is nothing beside one evaluation. */
static double predict_with(const hsc_latency_model *lm, hsc_arch *a, int l, int j) {
  const uint8_t old = a->scale[l];
  a->scale[l] = (uint8_t)j;
  const double p = hsc_latency_predict(lm, a);
  a->scale[l] = old;
  return p;
}

int hsc_dcs_apply(const hsc_space *s, const hsc_space_mask *m, const hsc_latency_model *lm,
                  const hsc_dcs_gain *g, double target_ms, hsc_arch *a) {
  assert(a->nblocks == s->nblocks);
  for (int l = 0; l < s->nblocks; l++) {
    assert(a->scale[l] < s->nscales);
    if (!m->scale[l][a->scale[l]]) a->scale[l] = (uint8_t)nearest_allowed(s, m, l, a->scale[l]);
  }
  /* Every move takes one scale one allowed position down (phase 1) or up (phase 2), so each phase ends
   * after at most nblocks * nscales moves; the bound below is only a guard. */
  const int max_moves = s->nblocks * s->nscales;

  /* 1. Lower while over the target: the smallest gain lost per ms saved among the lowerings that save
   * time; lowerings that save nothing (ms saved <= 0) only when no other is left, the least gain lost
   * first, so that a hopeless target leaves every scale at its lowest allowed value. */
  for (int moves = 0; moves < max_moves && hsc_latency_predict(lm, a) > target_ms; moves++) {
    int best = -1, best_to = -1, best_useful = 0;
    double best_key = INFINITY;
    for (int l = 0; l < s->nblocks; l++) {
      const int from = a->scale[l], to = next_lower(m, l, from);
      if (to < 0) continue;
      const double lost = g->gain[l][from] - g->gain[l][to];
      const double saved = lm->k * (lm->lut[l][a->op[l]][from].median - lm->lut[l][a->op[l]][to].median);
      const int useful = saved > 0;
      const double key = useful ? lost / saved : lost;
      if (best < 0 || (useful && !best_useful) || (useful == best_useful && key < best_key))
        best = l, best_to = to, best_useful = useful, best_key = key;
    }
    if (best < 0) break;
    a->scale[best] = (uint8_t)best_to;
  }

  /* 2. Raise while a raise with a positive gain fits: the largest gain per added ms; a raise that adds no
   * time (ms added <= 0) counts as an infinite ratio. Ties: the lowest block (strict > below). */
  for (int moves = 0; moves < max_moves; moves++) {
    int best = -1, best_to = -1;
    double best_key = -INFINITY;
    for (int l = 0; l < s->nblocks; l++) {
      const int from = a->scale[l], to = next_higher(s, m, l, from);
      if (to < 0) continue;
      const double added = g->gain[l][to] - g->gain[l][from];
      if (!(added > 0)) continue;
      const double cost = lm->k * (lm->lut[l][a->op[l]][to].median - lm->lut[l][a->op[l]][from].median);
      const double key = cost > 0 ? added / cost : INFINITY;
      if (best >= 0 && !(key > best_key)) continue;
      if (!(predict_with(lm, a, l, to) <= target_ms)) continue;
      best = l, best_to = to, best_key = key;
    }
    if (best < 0) break;
    a->scale[best] = (uint8_t)best_to;
  }
  return hsc_latency_predict(lm, a) <= target_ms;
}
