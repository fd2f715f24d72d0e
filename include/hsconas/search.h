/* The search (DESIGN.md §1): evolution under a latency target, dynamic channel scaling (DCS), progressive
 * space shrinking (PSS), and the driver that runs them over the master/worker farm with checkpoints.
 *
 * The operators below are pure functions of their inputs and of the random stream they are given, so the
 * search's result depends only on the seed, the supernet weights and the latency model — never on the
 * number of workers (generational mode) or on where a resumed run restarted. */
#ifndef HSCONAS_SEARCH_H
#define HSCONAS_SEARCH_H

#include <stdint.h>
#include <stdio.h>

#include "hsconas/config.h"
#include "hsconas/core.h"
#include "hsconas/latency.h"
#include "hsconas/rng.h"
#include "hsconas/space.h"

/* How a candidate was made. */
typedef enum {
  HSC_CAND_SAMPLE = 0,    /* shrinking / DCS calibration sample: uniform in the space mask */
  HSC_CAND_RANDOM = 1,    /* evolution: random (initial population and refill) */
  HSC_CAND_MUTATION = 2,  /* evolution: mutation of a parent */
  HSC_CAND_CROSSOVER = 3, /* evolution: uniform crossover of two parents */
  HSC_CAND_KIND_COUNT
} hsc_cand_kind;

/* "sample", "random", "mutation", "crossover"; NULL for an invalid value (as hsc_op_name). */
const char *hsc_cand_kind_name(int kind);

/* One evaluated candidate: a row of the history table (checkpoint /search/history, history.csv). */
typedef struct {
  int64_t id; /* candidate number, in order of creation: the same for every rank count */
  hsc_arch arch;
  uint64_t hash;
  int stage;               /* shrinking stage 0 .. shrink.stages - 1, or shrink.stages for the evolution */
  int generation;          /* evolution generation (steady mode: id / population), -1 for samples */
  int kind;                /* hsc_cand_kind */
  double top1, top5, loss; /* validation accuracies in %, mean loss */
  double latency_ms;       /* predicted by the latency model */
  int64_t flops;           /* multiply-accumulates (hsc_arch_flops) */
  int worker;              /* rank that evaluated it */
  double seconds;          /* evaluation wall time */
} hsc_record;

/* ---- dynamic channel scaling (src/search/dcs.c) ---- */

/* Estimated accuracy gain of each (block, scale index), in top-1 percent points, relative to the block's
 * smallest scale: for block l, the least-squares slope of top1 against the scale value over the records
 * (every block's scales are drawn independently in the samples, so each slope estimates that block's
 * marginal effect), times (scale value - smallest scale value, i.e. scales[0]: the list is increasing).
 * A block with no spread in the records gets gain 0. Records whose top1 is not finite (a failed
 * evaluation) are left out; with fewer than 2 records left every gain is 0. O(n * nblocks). */
typedef struct {
  int nblocks, nscales;
  double gain[HSC_MAX_BLOCKS][HSC_MAX_SCALES];
  int n; /* records it was estimated from (0: no estimate yet, all gains 0; 1: all gains 0) */
} hsc_dcs_gain;

void hsc_dcs_estimate(const hsc_space *s, const hsc_record *rec, int n, hsc_dcs_gain *g);

/* Adjusts a's channel scales (its operators are kept) to use the latency budget, within the mask:
 *   1. while the prediction exceeds target_ms: lower the one scale (to the next smaller allowed one) that
 *      loses the least gain per millisecond saved (ties: the lowest block index); a lowering that saves
 *      no time (ms saved <= 0) is taken only when no other is left, the least gain lost first; when no
 *      scale can be lowered, stop;
 *   2. then repeatedly raise the one scale (to the next larger allowed one) with the largest positive gain
 *      per added millisecond among the raises that keep the prediction <= target_ms (ties: lowest block);
 *      stop when none is left. A raise with a positive gain that adds no time (ms added <= 0) counts as an
 *      infinite ratio.
 * Milliseconds are the model's k * LUT differences (at the block's own operator); whether a raise keeps
 * the prediction <= target_ms is decided by hsc_latency_predict itself. Returns 1 when
 * hsc_latency_predict(lm, a) <= target_ms at the end, else 0 (a is then as low as the mask allows). Scales
 * outside the mask are first moved to the allowed scale nearest in value (ties: the smaller); operators
 * are never changed, even when the mask does not allow them. Deterministic; draws no random numbers. */
int hsc_dcs_apply(const hsc_space *s, const hsc_space_mask *m, const hsc_latency_model *lm,
                  const hsc_dcs_gain *g, double target_ms, hsc_arch *a);

/* ---- evolution operators (src/search/evolve.c) ---- */

/* child = parent with, for every block independently, the operator redrawn uniformly among the mask's
 * allowed operators with probability prob, and then the scale redrawn uniformly among the allowed scales
 * with probability prob. Draw order per block: uniform() for the op decision, below() for the op when it
 * fires, uniform() for the scale decision, below() for the scale when it fires. The decision fires when
 * uniform() < prob (so prob 0 never and prob 1 always fires; both uniforms are drawn either way). The
 * allowed choices are listed as hsc_arch_sample lists them: operators in the space's order (s->ops),
 * scales by index; below(count of allowed) picks one, and the redraw may give back the parent's value. A
 * gene that is not redrawn is copied even when the mask does not allow it. */
void hsc_evo_mutate(const hsc_space *s, const hsc_space_mask *m, const hsc_arch *parent, double prob,
                    hsc_rng *r, hsc_arch *child);
/* child takes each block's whole gene (operator and scale) from p1 or p2 with probability 1/2 each
 * (one below(2) per block: 0 -> p1). */
void hsc_evo_crossover(const hsc_arch *p1, const hsc_arch *p2, hsc_rng *r, hsc_arch *child);

/* 1 when a dominates b: top1 >= and latency <=, one of them strictly. */
int hsc_dominates(const hsc_record *a, const hsc_record *b);
/* The non-dominated records among rec[idx[0..n)] (idx NULL: all n records), written to out as indices
 * into rec, sorted by increasing latency (ties: by id, then by index). Records with equal top1 and latency
 * do not dominate each other: both are on the front. O(n^2). */
int hsc_pareto_front(const hsc_record *rec, const int *idx, int n, int *out);
/* Parent selection: the k best of rec[idx[0..n)] (idx NULL: all), written to out as indices into rec.
 * single: by top1 descending, then latency ascending, then id ascending. pareto: by non-dominated front
 * (first front first: the front of peeling non-dominated sets off one by one), within a front by top1
 * descending, then latency, then id. The index into rec breaks any remaining tie. Returns min(k, n)
 * (0 when k <= 0). O(n^2). */
int hsc_select_topk(const hsc_record *rec, const int *idx, int n, int k, int pareto, int *out);

/* ---- progressive space shrinking (src/search/shrink.c) ---- */

typedef struct {
  int op_removed[HSC_MAX_BLOCKS][HSC_OP_COUNT]; /* 1: removed at this step */
  int scale_removed[HSC_MAX_BLOCKS][HSC_MAX_SCALES];
  double op_score[HSC_MAX_BLOCKS][HSC_OP_COUNT]; /* NAN: no sample used it, or not allowed */
  double scale_score[HSC_MAX_BLOCKS][HSC_MAX_SCALES];
} hsc_shrink_report;

/* One shrinking step on the stage's evaluated feasible samples rec[0..n). For every block, each allowed
 * operator and each allowed scale is scored: the mean top1 of the samples that use it at that block minus
 * latency_weight * the mean share (in %) of that block's LUT entry in those samples' table sums (a sample's
 * share: LUT[l][op][scale] / hsc_latency_lut_sum * 100). A choice no sample used scores -infinity (the
 * report shows NAN). Per block, the drop_ops lowest-scoring operators and the drop_scales
 * lowest-scoring scales are removed (ties: the slower choice, i.e. the larger LUT entry at the block's
 * largest allowed scale / the larger scale, goes first; then the larger hsc_op value), except that at
 * least one operator and one scale always stays and a removal is skipped when the fastest architecture
 * left in the mask would exceed target_ms (target_ms <= 0: no such check). A skipped removal is not
 * replaced by the next-worst choice: only the drop_ops (drop_scales) worst are candidates. All scores are
 * computed first, on the mask as given; then the blocks are visited in order, each block's operators
 * before its scales, and every feasibility check (hsc_mask_min_latency) sees the removals made before it.
 * The mask is updated in place; rep (may be NULL) gets the scores and the removals. */
void hsc_shrink_step(const hsc_space *s, const hsc_latency_model *lm, double target_ms, const hsc_record *rec,
                     int n, int drop_ops, int drop_scales, double latency_weight, hsc_space_mask *m,
                     hsc_shrink_report *rep);
/* The smallest prediction of any architecture the mask allows (each block at its fastest allowed
 * (operator, scale) entry; its slowest when k < 0), computed with hsc_latency_predict. */
double hsc_mask_min_latency(const hsc_space *s, const hsc_space_mask *m, const hsc_latency_model *lm);

/* ---- the driver (src/search/search.c) ---- */

typedef struct {
  hsc_record best;      /* single: the best feasible record; pareto: the best top1 on the front */
  char best_text[2048]; /* its genes in text form ("" when nothing was evaluated) */
  int nhistory;         /* records in the history */
  int evaluated;        /* evaluations completed by this invocation (hsc_search) */
  int resumed_from;     /* records in the checkpoint it resumed from (0: a fresh search) */
  int nfront;           /* records on the final front (pareto) */
  double target_ms;     /* the latency target used */
  double seconds;       /* wall time of this invocation */
} hsc_search_result;

/* `hsconas search`: shrinking stages and evolution on the trained supernet of run.dir, with every rank of
 * comm (rank 0 the master, the others workers). Resumes from the newest search checkpoint of run.dir when
 * there is one. Writes the outputs of hsc_search_report at the end. Collective. HSC_ERR_STOPPED after a
 * signal (checkpoint written). */
hsc_status hsc_search(const hsc_config *cfg, MPI_Comm comm, hsc_search_result *res, hsc_error *err);

/* `hsconas report RUN_DIR`: from the newest search checkpoint of RUN_DIR (its config and history), writes
 * RUN_DIR/history.csv, best.yaml (removed when nothing was evaluated), front.csv, summary.json, pareto.svg
 * and progress.svg. Not collective (call it on
 * one rank). */
hsc_status hsc_search_report(const char *run_dir, hsc_search_result *res, hsc_error *err);

/* The latency target of a configuration: latency.target_ms, or when that is 0, the latency.target_quantile
 * of the predictions of 1000 architectures drawn uniformly from (run.seed). */
double hsc_search_target(const hsc_config *cfg, const hsc_space *s, const hsc_latency_model *lm);

#endif
