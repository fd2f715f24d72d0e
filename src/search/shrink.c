/* Progressive space shrinking (DESIGN.md §1): score every allowed (block, operator) and (block, scale) on
 * the evaluated feasible samples of a stage, and remove the worst choices of each block. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "hsconas/search.h"

double hsc_mask_min_latency(const hsc_space *s, const hsc_space_mask *m, const hsc_latency_model *lm) {
  /* The prediction is k * (table sum) + b with independent blocks, so its minimum takes each block's
   * smallest entry (its largest when k < 0). The first entry in (op choice, scale) order wins a tie. */
  hsc_arch a;
  memset(&a, 0, sizeof a);
  a.nblocks = s->nblocks;
  for (int l = 0; l < s->nblocks; l++) {
    int found = 0;
    double best = 0;
    for (int i = 0; i < s->nops; i++) {
      const hsc_op op = s->ops[i];
      if (!m->op[l][op]) continue;
      for (int j = 0; j < s->nscales; j++) {
        if (!m->scale[l][j]) continue;
        const double v = lm->lut[l][op][j].median;
        if (!found || (lm->k >= 0 ? v < best : v > best)) {
          found = 1, best = v;
          a.op[l] = (uint8_t)op;
          a.scale[l] = (uint8_t)j;
        }
      }
    }
    assert(found); /* shrinking never removes the last operator or scale of a block */
  }
  return hsc_latency_predict(lm, &a);
}

/* Scores of block l (DESIGN.md §1): mean top1 of the samples using the choice minus latency_weight times
 * the mean share (%) of their block-l table entry in their table sum. op_score [HSC_OP_COUNT],
 * scale_score [nscales]: NAN for a choice no sample used or the mask does not allow. */
static void block_scores(const hsc_space *s, const hsc_latency_model *lm, const hsc_record *rec, int n,
                         double latency_weight, const hsc_space_mask *m, int l, double *op_score,
                         double *scale_score) {
  double op_top1[HSC_OP_COUNT] = {0}, op_share[HSC_OP_COUNT] = {0};
  double sc_top1[HSC_MAX_SCALES] = {0}, sc_share[HSC_MAX_SCALES] = {0};
  int op_n[HSC_OP_COUNT] = {0}, sc_n[HSC_MAX_SCALES] = {0};
  for (int i = 0; i < n; i++) {
    const hsc_arch *a = &rec[i].arch;
    assert(a->nblocks == s->nblocks && a->op[l] < HSC_OP_COUNT && a->scale[l] < s->nscales);
    const int op = a->op[l], sc = a->scale[l];
    const double share = lm->lut[l][op][sc].median / hsc_latency_lut_sum(lm, a) * 100.0;
    op_top1[op] += rec[i].top1, op_share[op] += share, op_n[op]++;
    sc_top1[sc] += rec[i].top1, sc_share[sc] += share, sc_n[sc]++;
  }
  for (int o = 0; o < HSC_OP_COUNT; o++)
    op_score[o] =
        m->op[l][o] && op_n[o] ? op_top1[o] / op_n[o] - latency_weight * (op_share[o] / op_n[o]) : NAN;
  for (int j = 0; j < s->nscales; j++)
    scale_score[j] =
        m->scale[l][j] && sc_n[j] ? sc_top1[j] / sc_n[j] - latency_weight * (sc_share[j] / sc_n[j]) : NAN;
}

/* A choice to remove: its score (-inf when no sample used it) and its tie key (larger goes first). */
typedef struct {
  int index; /* hsc_op value or scale index */
  double score, slowness;
} choice;

/* Worst first: lowest score, then the larger slowness, then the later choice. Insertion sort: n <= 16. */
static void sort_worst_first(choice *c, int n) {
  for (int i = 1; i < n; i++) {
    const choice x = c[i];
    int j = i - 1;
    for (; j >= 0; j--) {
      const choice *y = &c[j];
      const int after = y->score > x.score || (y->score == x.score && y->slowness < x.slowness) ||
                        (y->score == x.score && y->slowness == x.slowness && y->index < x.index);
      if (!after) break;
      c[j + 1] = c[j];
    }
    c[j + 1] = x;
  }
}

/* Removes up to `drop` of the first choices of c (worst first) from flags [HSC_OP_COUNT or nscales],
 * keeping at least one allowed and skipping a removal that makes the mask's fastest architecture exceed
 * target_ms (> 0). removed [same] gets 1 for each removal. */
static void drop_worst(const hsc_space *s, const hsc_latency_model *lm, double target_ms, hsc_space_mask *m,
                       uint8_t *flags, const choice *c, int nc, int drop, int *removed) {
  int left = nc;
  for (int i = 0; i < nc && i < drop && left > 1; i++) {
    flags[c[i].index] = 0;
    if (target_ms > 0 && hsc_mask_min_latency(s, m, lm) > target_ms) {
      flags[c[i].index] = 1;
      continue;
    }
    removed[c[i].index] = 1;
    left--;
  }
}

void hsc_shrink_step(const hsc_space *s, const hsc_latency_model *lm, double target_ms, const hsc_record *rec,
                     int n, int drop_ops, int drop_scales, double latency_weight, hsc_space_mask *m,
                     hsc_shrink_report *rep) {
  hsc_shrink_report local;
  if (!rep) rep = &local;
  memset(rep, 0, sizeof *rep);
  for (int l = 0; l < HSC_MAX_BLOCKS; l++) {
    for (int o = 0; o < HSC_OP_COUNT; o++) rep->op_score[l][o] = NAN;
    for (int j = 0; j < HSC_MAX_SCALES; j++) rep->scale_score[l][j] = NAN;
  }
  /* Every score first, on the mask as given: the samples were drawn from it. */
  for (int l = 0; l < s->nblocks; l++)
    block_scores(s, lm, rec, n, latency_weight, m, l, rep->op_score[l], rep->scale_score[l]);

  /* Blocks in order, each block's operators before its scales; every feasibility check sees the removals
   * made before it. */
  for (int l = 0; l < s->nblocks; l++) {
    int top = -1; /* the block's largest allowed scale: the operators' tie key */
    for (int j = 0; j < s->nscales; j++)
      if (m->scale[l][j]) top = j;
    assert(top >= 0);

    choice c[HSC_MAX_SCALES > HSC_OP_COUNT ? HSC_MAX_SCALES : HSC_OP_COUNT];
    int nc = 0;
    for (int i = 0; i < s->nops; i++) {
      const hsc_op op = s->ops[i];
      if (!m->op[l][op]) continue;
      const double sc = rep->op_score[l][op];
      c[nc++] = (choice){(int)op, isnan(sc) ? -INFINITY : sc, lm->lut[l][op][top].median};
    }
    sort_worst_first(c, nc);
    drop_worst(s, lm, target_ms, m, m->op[l], c, nc, drop_ops, rep->op_removed[l]);

    nc = 0;
    for (int j = 0; j < s->nscales; j++) {
      if (!m->scale[l][j]) continue;
      const double sc = rep->scale_score[l][j];
      c[nc++] = (choice){j, isnan(sc) ? -INFINITY : sc, (double)j};
    }
    sort_worst_first(c, nc);
    drop_worst(s, lm, target_ms, m, m->scale[l], c, nc, drop_scales, rep->scale_removed[l]);
  }
}
