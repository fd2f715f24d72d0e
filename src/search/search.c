/* The search driver (search.h, DESIGN.md §1-§2): progressive shrinking stages, then the evolution, over the
 * master/worker farm, with a checkpoint of the whole search state every checkpoint.every_evals
 * evaluations.
 *
 * Rank 0 (the master) owns the state: the history of every evaluated candidate (kept sorted by candidate
 * id, so that everything computed from it is independent of the order in which workers answered), the
 * candidates of the current step, the space mask, the DCS gains and the position (stage, step, generation).
 * All ranks meet between steps: rank 0 broadcasts the next action (evaluate candidates on the weights of a
 * phase, fine-tune the supernet on the shrunk space, or finish), the ranks perform it together, and the
 * workers serve the farm while the master evaluates through it.
 *
 * Candidate ids and random streams (HSC_RNG_SEARCH, index):
 *   stage s samples       (2 << 48) + s
 *   generation g          (3 << 48) + g        (generational: all of g's candidates from one stream)
 *   steady candidate j    (4 << 48) + j
 *   the target's sample   (5 << 48) + i */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsconas/checkpoint.h"
#include "hsconas/farm.h"
#include "hsconas/hash.h"
#include "hsconas/search.h"
#include "hsconas/signals.h"
#include "hsconas/train.h"
#include "search_internal.h"

#define SEARCH_FORMAT 1
#define STREAM(kind, i) (((uint64_t)(kind) << 48) + (uint64_t)(i))

/* Where the search stands within a stage. */
typedef enum {
  STEP_SAMPLE = 0,   /* evaluating the stage's samples */
  STEP_FINETUNE = 1, /* the stage's mask is final: fine-tune the supernet on it */
  STEP_EVOLVE = 2,   /* the evolution (stage == shrink.stages) */
  STEP_DONE = 3,
} search_step;

static const char *const step_names[] = {"sample", "finetune", "evolve", "done"};

typedef struct {
  hsc_record *v;
  int n, cap;
} record_list;

/* The master's state: everything a checkpoint holds. */
typedef struct {
  record_list hist; /* sorted by id */
  record_list todo; /* the current step's candidates not yet in the history */
  hsc_space_mask mask;
  hsc_dcs_gain gain;
  int stage, step, generation;
  int64_t next_id; /* id of the next candidate created */
  int64_t created; /* steady mode: evolution candidates created so far */
  int64_t evals_at_ckpt;
  int resumed_from; /* history rows of the checkpoint this invocation resumed from */
} search_state;

typedef struct {
  const hsc_config *cfg;
  MPI_Comm comm;
  int rank, size;
  hsc_space space;
  hsc_latency_model *lm;
  uint64_t lm_hash;
  double target;
  int nstages;
  char ckdir[HSC_CFG_PATH + 32];
  hsc_evaluator *ev;
  hsc_farm *farm;
  double master_cpu_s; /* CPU time of the master thread inside run_evaluations, this invocation */
  search_state st;
} search_ctx;

/* ---- records ---- */

static void list_push(record_list *l, const hsc_record *r) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 256;
    hsc_record *v = realloc(l->v, (size_t)l->cap * sizeof *v);
    if (!v) hsc_fatal("out of memory growing the search history to %d records", l->cap);
    l->v = v;
  }
  l->v[l->n++] = *r;
}

/* Inserts keeping the list sorted by id. */
static void list_insert_sorted(record_list *l, const hsc_record *r) {
  list_push(l, r);
  int i = l->n - 1;
  while (i > 0 && l->v[i - 1].id > r->id) {
    l->v[i] = l->v[i - 1];
    i--;
  }
  l->v[i] = *r;
}

static void list_free(record_list *l) {
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* A set of architecture hashes (open addressing; 0 marks an empty slot, hash 0 is stored as 1). */
typedef struct {
  uint64_t *slot;
  size_t cap, n;
} hash_set;

static void set_init(hash_set *s, size_t expect) {
  s->cap = 64;
  while (s->cap < 2 * expect + 16) s->cap *= 2;
  s->slot = hsc_xcalloc(s->cap, sizeof *s->slot);
  s->n = 0;
}

/* Adds h; returns 0 when it was already there. */
static int set_add(hash_set *s, uint64_t h) {
  if (2 * (s->n + 1) > s->cap) {
    hash_set bigger;
    set_init(&bigger, s->cap);
    for (size_t i = 0; i < s->cap; i++)
      if (s->slot[i]) set_add(&bigger, s->slot[i]);
    free(s->slot);
    *s = bigger;
  }
  if (!h) h = 1;
  for (size_t i = (size_t)(h * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->slot[i] == h) return 0;
    if (!s->slot[i]) {
      s->slot[i] = h;
      s->n++;
      return 1;
    }
  }
}

static void set_free(hash_set *s) { free(s->slot); }

/* ---- candidates ---- */

static uint64_t model_hash(const hsc_latency_model *m, const hsc_space *s) {
  uint64_t h = HSC_FNV1A_BASIS;
  h = hsc_fnv1a_double(h, m->k);
  h = hsc_fnv1a_double(h, m->b);
  h = hsc_fnv1a_double(h, m->stem.median);
  h = hsc_fnv1a_double(h, m->head.median);
  for (int l = 0; l < s->nblocks; l++)
    for (int o = 0; o < s->nops; o++)
      for (int c = 0; c < s->nscales; c++) h = hsc_fnv1a_double(h, m->lut[l][s->ops[o]][c].median);
  return h;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double hsc_search_target(const hsc_config *cfg, const hsc_space *s, const hsc_latency_model *lm) {
  if (cfg->latency.target_ms > 0) return cfg->latency.target_ms;
  enum { N = 1000 };
  double *p = hsc_xmalloc(N * sizeof *p);
  for (int i = 0; i < N; i++) {
    hsc_rng r;
    hsc_arch a;
    hsc_rng_init(&r, (uint64_t)cfg->run.seed, HSC_RNG_SEARCH, STREAM(5, i));
    hsc_arch_sample(s, NULL, &r, &a);
    p[i] = hsc_latency_predict(lm, &a);
  }
  qsort(p, N, sizeof *p, cmp_double);
  int k = (int)ceil(cfg->latency.target_quantile * N) - 1; /* nearest rank */
  if (k < 0) k = 0;
  const double t = p[k];
  free(p);
  return t;
}

/* A new candidate record (not evaluated yet). */
static hsc_record make_record(search_ctx *c, const hsc_arch *a, int kind, int generation) {
  hsc_record r;
  memset(&r, 0, sizeof r);
  r.id = c->st.next_id++;
  r.arch = *a;
  r.hash = hsc_arch_hash(&c->space, a);
  r.stage = c->st.stage;
  r.generation = generation;
  r.kind = kind;
  r.top1 = r.top5 = r.loss = NAN;
  r.latency_ms = hsc_latency_predict(c->lm, a);
  r.flops = hsc_arch_flops(&c->space, a);
  r.worker = -1;
  return r;
}

/* Makes a within the target: DCS when enabled, else only a check. */
static int fit_target(search_ctx *c, hsc_arch *a) {
  if (c->cfg->dcs.enabled) return hsc_dcs_apply(&c->space, &c->st.mask, c->lm, &c->st.gain, c->target, a);
  return hsc_latency_predict(c->lm, a) <= c->target;
}

/* The stage's samples: shrink.samples distinct feasible architectures uniform in the mask. */
static void create_samples(search_ctx *c) {
  const int want = c->cfg->shrink.samples;
  hsc_rng r;
  hsc_rng_init(&r, (uint64_t)c->cfg->run.seed, HSC_RNG_SEARCH, STREAM(2, c->st.stage));
  hash_set seen;
  set_init(&seen, (size_t)want);
  int got = 0;
  for (int64_t tries = 0; got < want && tries < 1000LL * want; tries++) {
    hsc_arch a;
    hsc_arch_sample(&c->space, &c->st.mask, &r, &a);
    if (hsc_latency_predict(c->lm, &a) > c->target) continue;
    if (!set_add(&seen, hsc_arch_hash(&c->space, &a))) continue;
    const hsc_record rec = make_record(c, &a, HSC_CAND_SAMPLE, -1);
    list_push(&c->st.todo, &rec);
    got++;
  }
  set_free(&seen);
  if (got < want)
    hsc_log(HSC_LOG_WARN,
            "stage %d: only %d of %d samples found within the %.4f ms target after %d draws; "
            "continuing with those",
            c->st.stage, got, want, c->target, 1000 * want);
}

/* The evolution's records: the history rows of the final stage that are not samples. */
static int evo_records(const search_ctx *c, int *idx) {
  int n = 0;
  for (int i = 0; i < c->st.hist.n; i++)
    if (search_is_evolution(&c->st.hist.v[i], c->nstages)) idx[n++] = i;
  return n;
}

/* One evolution candidate of `kind` from stream r (parents: indices into the history). Returns 1 and fills
 * a when it found one within the target whose hash `seen` did not hold (and adds it), within `tries`. */
static int evolve_one(search_ctx *c, int kind, const int *parents, int np, hash_set *seen, hsc_rng *r,
                      hsc_arch *a) {
  const hsc_config *cfg = c->cfg;
  for (int t = 0; t < 100; t++) {
    if (kind == HSC_CAND_MUTATION && np > 0) {
      const hsc_arch *p = &c->st.hist.v[parents[hsc_rng_below(r, (uint32_t)np)]].arch;
      hsc_evo_mutate(&c->space, &c->st.mask, p, cfg->evolution.mutation_prob, r, a);
    } else if (kind == HSC_CAND_CROSSOVER && np > 0) {
      const hsc_arch *p1 = &c->st.hist.v[parents[hsc_rng_below(r, (uint32_t)np)]].arch;
      const hsc_arch *p2 = &c->st.hist.v[parents[hsc_rng_below(r, (uint32_t)np)]].arch;
      hsc_evo_crossover(p1, p2, r, a);
    } else {
      hsc_arch_sample(&c->space, &c->st.mask, r, a);
    }
    if (!fit_target(c, a)) continue;
    if (!set_add(seen, hsc_arch_hash(&c->space, a))) continue;
    return 1;
  }
  return 0;
}

/* Everything the evolution has evaluated or queued, as a hash set. */
static void evo_seen(const search_ctx *c, hash_set *seen) {
  set_init(seen, (size_t)(c->st.hist.n + c->st.todo.n));
  for (int i = 0; i < c->st.hist.n; i++)
    if (search_is_evolution(&c->st.hist.v[i], c->nstages)) set_add(seen, c->st.hist.v[i].hash);
  for (int i = 0; i < c->st.todo.n; i++) set_add(seen, c->st.todo.v[i].hash);
}

/* Generation g of the generational evolution (SPOS): mutations and crossovers of the top-k so far, then
 * random candidates up to the population; generation 0 is all random. */
static void create_generation(search_ctx *c) {
  const hsc_config *cfg = c->cfg;
  const int g = c->st.generation;
  hsc_rng r;
  hsc_rng_init(&r, (uint64_t)cfg->run.seed, HSC_RNG_SEARCH, STREAM(3, g));
  int *idx = hsc_xmalloc((size_t)(c->st.hist.n + 1) * sizeof *idx);
  int *parents = hsc_xmalloc((size_t)cfg->evolution.topk * sizeof *parents);
  const int nevo = evo_records(c, idx);
  const int np = g == 0 ? 0
                        : hsc_select_topk(c->st.hist.v, idx, nevo, cfg->evolution.topk,
                                          !strcmp(cfg->evolution.objective, "pareto"), parents);
  hash_set seen;
  evo_seen(c, &seen);
  const int quota[3] = {np ? cfg->evolution.mutations : 0, np ? cfg->evolution.crossovers : 0, 0};
  const int kinds[3] = {HSC_CAND_MUTATION, HSC_CAND_CROSSOVER, HSC_CAND_RANDOM};
  int made = 0;
  for (int k = 0; k < 3; k++) {
    const int want = k == 2 ? cfg->evolution.population - made : quota[k];
    for (int i = 0; i < want; i++) {
      hsc_arch a;
      if (!evolve_one(c, kinds[k], parents, np, &seen, &r, &a)) break;
      const hsc_record rec = make_record(c, &a, kinds[k], g);
      list_push(&c->st.todo, &rec);
      made++;
    }
  }
  if (made < cfg->evolution.population)
    hsc_log(HSC_LOG_WARN, "generation %d: only %d new candidates within the target (population %d)", g, made,
            cfg->evolution.population);
  set_free(&seen);
  free(idx), free(parents);
}

/* Steady-state evolution: one new candidate (random until a population has been created, then a mutation
 * or a crossover of the current top-k, drawn in the ratio evolution.mutations : evolution.crossovers; random
 * when both are 0). Returns 0 when none was found. */
static int create_steady(search_ctx *c, hsc_record *out) {
  const hsc_config *cfg = c->cfg;
  const int64_t j = c->st.created;
  hsc_rng r;
  hsc_rng_init(&r, (uint64_t)cfg->run.seed, HSC_RNG_SEARCH, STREAM(4, j));
  int *idx = hsc_xmalloc((size_t)(c->st.hist.n + 1) * sizeof *idx);
  int *parents = hsc_xmalloc((size_t)cfg->evolution.topk * sizeof *parents);
  const int nevo = evo_records(c, idx);
  int np = 0, kind = HSC_CAND_RANDOM;
  if (j >= cfg->evolution.population && nevo > 0) {
    np = hsc_select_topk(c->st.hist.v, idx, nevo, cfg->evolution.topk,
                         !strcmp(cfg->evolution.objective, "pareto"), parents);
    /* mutation or crossover in the ratio evolution.mutations : evolution.crossovers */
    const int nm = cfg->evolution.mutations, nc = cfg->evolution.crossovers;
    kind = nm + nc == 0                                       ? HSC_CAND_RANDOM
           : (int)hsc_rng_below(&r, (uint32_t)(nm + nc)) < nm ? HSC_CAND_MUTATION
                                                              : HSC_CAND_CROSSOVER;
  }
  hash_set seen;
  evo_seen(c, &seen);
  hsc_arch a;
  int ok = evolve_one(c, kind, parents, np, &seen, &r, &a);
  if (!ok && kind != HSC_CAND_RANDOM) ok = evolve_one(c, kind = HSC_CAND_RANDOM, parents, 0, &seen, &r, &a);
  c->st.created++;
  if (ok) *out = make_record(c, &a, kind, (int)(j / cfg->evolution.population));
  set_free(&seen);
  free(idx), free(parents);
  return ok;
}

/* ---- checkpoint ---- */

static hsc_status write_records(hsc_ckpt *ck, const char *group, const search_ctx *c, const record_list *l,
                                hsc_error *err) {
  const int n = l->n, L = c->space.nblocks;
  if (n == 0) return HSC_OK;
  int64_t *iv = hsc_xmalloc((size_t)n * sizeof *iv);
  double *dv = hsc_xmalloc((size_t)n * sizeof *dv);
  uint8_t *gv = hsc_xmalloc((size_t)n * L);
  const int64_t d1[1] = {n}, d2[2] = {n, L};
  char name[128];
  hsc_status st = HSC_OK;
#define I64_COL(col, expr)                                       \
  if (st == HSC_OK) {                                            \
    for (int i = 0; i < n; i++) iv[i] = (int64_t)(l->v[i].expr); \
    snprintf(name, sizeof name, "%s/%s", group, col);            \
    st = hsc_ckpt_write_i64(ck, name, 1, d1, iv, err);           \
  }
#define F64_COL(col, expr)                             \
  if (st == HSC_OK) {                                  \
    for (int i = 0; i < n; i++) dv[i] = l->v[i].expr;  \
    snprintf(name, sizeof name, "%s/%s", group, col);  \
    st = hsc_ckpt_write_f64(ck, name, 1, d1, dv, err); \
  }
  I64_COL("id", id)
  I64_COL("hash", hash)
  I64_COL("stage", stage)
  I64_COL("generation", generation)
  I64_COL("kind", kind)
  I64_COL("flops", flops)
  I64_COL("worker", worker)
  F64_COL("top1", top1)
  F64_COL("top5", top5)
  F64_COL("loss", loss)
  F64_COL("latency_ms", latency_ms)
  F64_COL("seconds", seconds)
#undef I64_COL
#undef F64_COL
  for (int pass = 0; pass < 2 && st == HSC_OK; pass++) {
    for (int i = 0; i < n; i++)
      memcpy(gv + (size_t)i * L, pass ? l->v[i].arch.scale : l->v[i].arch.op, (size_t)L);
    snprintf(name, sizeof name, "%s/%s", group, pass ? "scale" : "op");
    st = hsc_ckpt_write_u8(ck, name, 2, d2, gv, err);
  }
  free(iv), free(dv), free(gv);
  return st;
}

static hsc_status read_records(hsc_ckpt *ck, const char *group, const hsc_space *s, int n, record_list *l,
                               hsc_error *err) {
  const int L = s->nblocks;
  l->n = 0;
  if (n == 0) return HSC_OK;
  int64_t *iv = hsc_xmalloc((size_t)n * sizeof *iv);
  double *dv = hsc_xmalloc((size_t)n * sizeof *dv);
  uint8_t *gv = hsc_xmalloc((size_t)n * L);
  hsc_record *v = hsc_xcalloc((size_t)n, sizeof *v);
  char name[128];
  hsc_status st = HSC_OK;
#define I64_COL(col, expr, type)                                          \
  if (st == HSC_OK) {                                                     \
    snprintf(name, sizeof name, "%s/%s", group, col);                     \
    if ((st = hsc_ckpt_read_i64(ck, name, (size_t)n, iv, err)) == HSC_OK) \
      for (int i = 0; i < n; i++) v[i].expr = (type)iv[i];                \
  }
#define F64_COL(col, expr)                                                \
  if (st == HSC_OK) {                                                     \
    snprintf(name, sizeof name, "%s/%s", group, col);                     \
    if ((st = hsc_ckpt_read_f64(ck, name, (size_t)n, dv, err)) == HSC_OK) \
      for (int i = 0; i < n; i++) v[i].expr = dv[i];                      \
  }
  I64_COL("id", id, int64_t)
  I64_COL("hash", hash, uint64_t)
  I64_COL("stage", stage, int)
  I64_COL("generation", generation, int)
  I64_COL("kind", kind, int)
  I64_COL("flops", flops, int64_t)
  I64_COL("worker", worker, int)
  F64_COL("top1", top1)
  F64_COL("top5", top5)
  F64_COL("loss", loss)
  F64_COL("latency_ms", latency_ms)
  F64_COL("seconds", seconds)
#undef I64_COL
#undef F64_COL
  for (int pass = 0; pass < 2 && st == HSC_OK; pass++) {
    snprintf(name, sizeof name, "%s/%s", group, pass ? "scale" : "op");
    if ((st = hsc_ckpt_read_u8(ck, name, (size_t)n * L, gv, err)) == HSC_OK)
      for (int i = 0; i < n; i++) {
        v[i].arch.nblocks = L;
        memcpy(pass ? v[i].arch.scale : v[i].arch.op, gv + (size_t)i * L, (size_t)L);
      }
  }
  for (int i = 0; st == HSC_OK && i < n; i++) {
    if (!hsc_arch_valid(s, NULL, &v[i].arch) || hsc_arch_hash(s, &v[i].arch) != v[i].hash)
      st = hsc_error_set(err, HSC_ERR_INPUT, "%s: %s row %d: the genes do not match the space or the hash",
                         hsc_ckpt_path(ck), group, i);
    if (v[i].kind < 0 || v[i].kind >= HSC_CAND_KIND_COUNT)
      st = hsc_error_set(err, HSC_ERR_INPUT, "%s: %s row %d: unknown candidate kind %d", hsc_ckpt_path(ck),
                         group, i, v[i].kind);
  }
  if (st == HSC_OK)
    for (int i = 0; i < n; i++) list_push(l, &v[i]);
  free(iv), free(dv), free(gv), free(v);
  return st;
}

hsc_status search_read_history(hsc_ckpt *ck, const hsc_space *s, int n, hsc_record **rec, hsc_error *err) {
  record_list l = {0};
  const hsc_status st = read_records(ck, "/search/history", s, n, &l, err);
  if (st != HSC_OK) {
    list_free(&l);
    *rec = NULL;
    return st;
  }
  *rec = l.v ? l.v : hsc_xcalloc(1, sizeof(hsc_record));
  return HSC_OK;
}

typedef struct {
  hsc_farm_stats farm;
  int workers;
  double
      master_cpu_s; /* the master thread's CPU time in the evaluation loops (creation, DCS, results, farm) */
} dispatch_info;

/* Writes the master's state as RUN_DIR/checkpoints/search-<evaluations>.h5 (rank 0 only). */
static hsc_status save_state(search_ctx *c, const dispatch_info *di, hsc_error *err) {
  const search_state *s = &c->st;
  const hsc_space *sp = &c->space;
  const int L = sp->nblocks;
  char path[HSC_CFG_PATH + 96];
  hsc_ckpt_name(c->ckdir, "search", s->hist.n, path, sizeof path);
  char *cfg_text = hsc_config_dump(c->cfg, 0);
  uint8_t opm[HSC_MAX_BLOCKS * HSC_OP_COUNT], scm[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
  double gain[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
  for (int l = 0; l < L; l++) {
    for (int o = 0; o < HSC_OP_COUNT; o++) opm[l * HSC_OP_COUNT + o] = s->mask.op[l][o];
    for (int k = 0; k < sp->nscales; k++) {
      scm[l * sp->nscales + k] = s->mask.scale[l][k];
      gain[l * sp->nscales + k] = s->gain.gain[l][k];
    }
  }
  const int64_t dop[2] = {L, HSC_OP_COUNT}, dsc[2] = {L, sp->nscales}, four = 4;
  const int64_t rng[4] = {c->cfg->run.seed, s->stage, s->generation, s->next_id};
  hsc_ckpt *ck = NULL;
  hsc_status st = hsc_ckpt_create(&ck, path, err);
  if (st == HSC_OK) {
    if ((st = hsc_ckpt_meta_str(ck, "phase", "search", err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "search_format", SEARCH_FORMAT, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "step", s->hist.n, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "stage", s->stage, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_str(ck, "search_step", step_names[s->step], err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "generation", s->generation, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "next_id", s->next_id, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "evo_created", s->created, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "history_rows", s->hist.n, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "population_rows", s->todo.n, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "dcs_records", s->gain.n, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_double(ck, "target_ms", c->target, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "latency_model_hash", (int64_t)c->lm_hash, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "space_hash", (int64_t)sp->hash, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "seed", c->cfg->run.seed, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "world_size", c->size, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_str(ck, "config", cfg_text, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "config_hash", (int64_t)hsc_config_hash(c->cfg), err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "dispatch_workers", di->workers, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "dispatch_completed", di->farm.completed, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "dispatch_redispatched", di->farm.redispatched, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_int(ck, "dispatch_dead_workers", di->farm.dead_workers, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_double(ck, "dispatch_master_busy_s", di->farm.master_busy_s, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_double(ck, "dispatch_worker_eval_s", di->farm.worker_eval_s, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_double(ck, "dispatch_busy_span_s", di->farm.busy_span_s, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_double(ck, "dispatch_master_cpu_s", di->master_cpu_s, err)) == HSC_OK &&
        (st = hsc_ckpt_meta_double(ck, "dispatch_idle_cpu_s", di->farm.idle_cpu_s, err)) == HSC_OK &&
        (st = write_records(ck, "/search/history", c, &s->hist, err)) == HSC_OK &&
        (st = write_records(ck, "/search/population", c, &s->todo, err)) == HSC_OK &&
        (st = hsc_ckpt_write_u8(ck, "/space/op_mask", 2, dop, opm, err)) == HSC_OK &&
        (st = hsc_ckpt_write_u8(ck, "/space/scale_mask", 2, dsc, scm, err)) == HSC_OK &&
        (st = hsc_ckpt_write_f64(ck, "/search/dcs_gain", 2, dsc, gain, err)) == HSC_OK &&
        (st = hsc_ckpt_write_i64(ck, "/rng", 1, &four, rng, err)) == HSC_OK)
      st = hsc_ckpt_commit(ck, err);
    else
      hsc_ckpt_abort(ck);
  }
  free(cfg_text);
  if (st == HSC_OK) st = hsc_ckpt_prune(c->ckdir, "search", c->cfg->checkpoint.keep, err);
  if (st == HSC_OK) c->st.evals_at_ckpt = s->hist.n;
  return st;
}

/* Reads the search state of a checkpoint whose config text is already checked. */
static hsc_status load_state(hsc_ckpt *ck, const hsc_space *sp, search_state *s, hsc_error *err) {
  int64_t v[8] = {0};
  char step[32] = "";
  hsc_status st;
  if ((st = hsc_ckpt_get_int(ck, "stage", &v[0], err)) != HSC_OK ||
      (st = hsc_ckpt_get_str(ck, "search_step", step, sizeof step, err)) != HSC_OK ||
      (st = hsc_ckpt_get_int(ck, "generation", &v[1], err)) != HSC_OK ||
      (st = hsc_ckpt_get_int(ck, "next_id", &v[2], err)) != HSC_OK ||
      (st = hsc_ckpt_get_int(ck, "evo_created", &v[3], err)) != HSC_OK ||
      (st = hsc_ckpt_get_int(ck, "history_rows", &v[4], err)) != HSC_OK ||
      (st = hsc_ckpt_get_int(ck, "population_rows", &v[5], err)) != HSC_OK ||
      (st = hsc_ckpt_get_int(ck, "dcs_records", &v[6], err)) != HSC_OK)
    return st;
  s->step = -1;
  for (int i = 0; i < (int)ARRAY_LEN(step_names); i++)
    if (!strcmp(step, step_names[i])) s->step = i;
  if (s->step < 0 || v[4] < 0 || v[4] > INT32_MAX / 2 || v[5] < 0 || v[5] > INT32_MAX / 2)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: unreadable search position (step '%s')", hsc_ckpt_path(ck),
                         step);
  s->stage = (int)v[0], s->generation = (int)v[1], s->next_id = v[2], s->created = v[3];
  const int L = sp->nblocks;
  uint8_t opm[HSC_MAX_BLOCKS * HSC_OP_COUNT], scm[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
  double gain[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
  if ((st = read_records(ck, "/search/history", sp, (int)v[4], &s->hist, err)) != HSC_OK ||
      (st = read_records(ck, "/search/population", sp, (int)v[5], &s->todo, err)) != HSC_OK ||
      (st = hsc_ckpt_read_u8(ck, "/space/op_mask", (size_t)L * HSC_OP_COUNT, opm, err)) != HSC_OK ||
      (st = hsc_ckpt_read_u8(ck, "/space/scale_mask", (size_t)L * sp->nscales, scm, err)) != HSC_OK ||
      (st = hsc_ckpt_read_f64(ck, "/search/dcs_gain", (size_t)L * sp->nscales, gain, err)) != HSC_OK)
    return st;
  memset(&s->mask, 0, sizeof s->mask);
  memset(&s->gain, 0, sizeof s->gain);
  s->gain.nblocks = L, s->gain.nscales = sp->nscales, s->gain.n = (int)v[6];
  for (int l = 0; l < L; l++) {
    for (int o = 0; o < HSC_OP_COUNT; o++) s->mask.op[l][o] = opm[l * HSC_OP_COUNT + o] != 0;
    for (int k = 0; k < sp->nscales; k++) {
      s->mask.scale[l][k] = scm[l * sp->nscales + k] != 0;
      s->gain.gain[l][k] = gain[l * sp->nscales + k];
    }
  }
  s->evals_at_ckpt = s->hist.n;
  return HSC_OK;
}

/* The config keys a resumed search must share with the one that wrote the checkpoint. */
static const char *const fixed_keys[] = {
    "run.seed",
    "space.",
    "latency.target_ms",
    "latency.target_quantile",
    "shrink.",
    "dcs.",
    "evolution.mode",
    "evolution.objective",
    "evolution.population",
    "evolution.topk",
    "evolution.mutations",
    "evolution.crossovers",
    "evolution.mutation_prob",
    "eval.",
    "data.val_size",
    "data.split_seed",
    "evolution.benchmark_eval_s",
    "data.eval_batch_size",
    "data.mean",
    "data.std",
};

/* 1 when a key named `prefix` (or every key under it, when it ends in '.') differs between a and b; the
 * first such key goes to which. */
static int dump_differs(const hsc_config *a, const hsc_config *b, const char *prefix, char *which,
                        size_t len) {
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  for (size_t i = 0; i < n; i++) {
    if (strncmp(keys[i].key, prefix, strlen(prefix)) != 0) continue;
    if (prefix[strlen(prefix) - 1] != '.' && strcmp(keys[i].key, prefix) != 0) continue;
    const char *pa = (const char *)a + keys[i].offset, *pb = (const char *)b + keys[i].offset;
    int differ = memcmp(pa, pb, keys[i].size) != 0;
    if (keys[i].count_offset)
      differ |= memcmp((const char *)a + keys[i].count_offset, (const char *)b + keys[i].count_offset,
                       sizeof(int)) != 0;
    if (keys[i].type == HSC_CFG_STRING || keys[i].type == HSC_CFG_ENUM) differ = strcmp(pa, pb) != 0;
    if (differ) {
      snprintf(which, len, "%s", keys[i].key);
      return 1;
    }
  }
  return 0;
}

/* Rank 0: the newest search checkpoint of run.dir into c->st (*found 0 when there is none). */
static hsc_status resume_state(search_ctx *c, int *found, hsc_error *err) {
  hsc_ckpt *ck = NULL;
  *found = 0;
  hsc_status st = hsc_ckpt_open_latest(c->ckdir, "search", &ck, err);
  if (st != HSC_OK || !ck) return st;
  char *text = hsc_xmalloc(1 << 20);
  int64_t space_hash = 0, lm_hash = 0;
  double target = 0;
  hsc_config old;
  hsc_config_defaults(&old);
  if ((st = hsc_ckpt_get_int(ck, "space_hash", &space_hash, err)) == HSC_OK &&
      (st = hsc_ckpt_get_int(ck, "latency_model_hash", &lm_hash, err)) == HSC_OK &&
      (st = hsc_ckpt_get_double(ck, "target_ms", &target, err)) == HSC_OK &&
      (st = hsc_ckpt_get_str(ck, "config", text, 1 << 20, err)) == HSC_OK) {
    char what[256];
    snprintf(what, sizeof what, "%s (meta config)", hsc_ckpt_path(ck));
    st = hsc_config_parse(&old, text, strlen(text), what, err);
  }
  if (st == HSC_OK && (uint64_t)space_hash != c->space.hash)
    st = hsc_error_set(err, HSC_ERR_INPUT, "%s was written for another search space; use its run directory",
                       hsc_ckpt_path(ck));
  if (st == HSC_OK && (uint64_t)lm_hash != c->lm_hash)
    st = hsc_error_set(err, HSC_ERR_INPUT,
                       "%s was searched with another latency model than the current one; restore that model "
                       "or start the search in a new run.dir",
                       hsc_ckpt_path(ck));
  for (size_t i = 0; st == HSC_OK && i < ARRAY_LEN(fixed_keys); i++) {
    char which[128];
    if (dump_differs(&old, c->cfg, fixed_keys[i], which, sizeof which))
      st = hsc_error_set(err, HSC_ERR_INPUT,
                         "%s: the search there used another %s; a search resumes with the settings it began "
                         "with (use another run.dir for new ones)",
                         hsc_ckpt_path(ck), which);
  }
  if (st == HSC_OK && (st = load_state(ck, &c->space, &c->st, err)) == HSC_OK) {
    *found = 1;
    c->st.resumed_from = c->st.hist.n;
    hsc_log(HSC_LOG_INFO, "resuming the search from %s: %d evaluations, stage %d, %s, generation %d",
            hsc_ckpt_path(ck), c->st.hist.n, c->st.stage, step_names[c->st.step], c->st.generation);
  }
  free(text);
  hsc_ckpt_close(ck);
  return st;
}

/* ---- evaluation ---- */

typedef struct {
  search_ctx *c;
  double synthetic_s; /* benchmark mode */
} eval_ctx;

/* Benchmark mode: a fixed-duration evaluation whose accuracy is a smooth function of the FLOPs plus a
 * per-architecture offset from its hash, so that the evolution has something to climb. */
static void eval_synthetic(const eval_ctx *e, const hsc_task *t, hsc_task_result *r) {
  const double d = e->synthetic_s;
  struct timespec ts = {(time_t)d, (long)((d - floor(d)) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  const hsc_space *s = &e->c->space;
  const double mflops = (double)hsc_arch_flops(s, &t->arch) / 1e6;
  const uint64_t h = hsc_arch_hash(s, &t->arch);
  r->top1 = 70.0 + 20.0 * (1.0 - exp(-mflops / 10.0)) + (double)(h % 1000) / 1000.0;
  r->top5 = 99.0;
  r->loss = 1.0 - r->top1 / 100.0;
  r->images = 0;
}

static void eval_task(void *ctx, const hsc_task *t, hsc_task_result *r) {
  const eval_ctx *e = ctx;
  if (e->synthetic_s > 0) {
    eval_synthetic(e, t, r);
    return;
  }
  hsc_eval_result er;
  hsc_evaluator_eval(e->c->ev, &t->arch, &er);
  r->top1 = er.top1, r->top5 = er.top5, r->loss = er.loss, r->images = er.images;
}

/* ---- the master's steps ---- */

static void dispatch_now(const search_ctx *c, dispatch_info *di) {
  memset(di, 0, sizeof *di);
  di->workers = c->size > 1 ? c->size - 1 : 1;
  di->master_cpu_s = c->master_cpu_s;
  if (c->farm) hsc_farm_get_stats(c->farm, &di->farm);
}

static hsc_status checkpoint_now(search_ctx *c, hsc_error *err) {
  dispatch_info di;
  dispatch_now(c, &di);
  return save_state(c, &di, err);
}

/* A result into the history (dropped when its candidate is not pending: a late duplicate). */
static int take_result(search_ctx *c, const hsc_task_result *res) {
  record_list *todo = &c->st.todo;
  for (int i = 0; i < todo->n; i++)
    if (todo->v[i].id == res->id) {
      hsc_record r = todo->v[i];
      r.top1 = res->top1, r.top5 = res->top5, r.loss = res->loss;
      r.worker = res->worker, r.seconds = res->seconds;
      list_insert_sorted(&c->st.hist, &r);
      todo->v[i] = todo->v[--todo->n];
      return 1;
    }
  return 0;
}

/* Sorts the pending candidates by id (take_result moves the last into the hole). */
static int cmp_record_id(const void *a, const void *b) {
  const hsc_record *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

static void submit_todo(search_ctx *c) {
  qsort(c->st.todo.v, (size_t)c->st.todo.n, sizeof(hsc_record), cmp_record_id);
  for (int i = 0; i < c->st.todo.n; i++) {
    const hsc_task t = {.id = c->st.todo.v[i].id, .arch = c->st.todo.v[i].arch};
    hsc_farm_submit(c->farm, &t);
  }
}

/* Evaluates every pending candidate (steady: keeps creating until the budget is spent). Checkpoints every
 * checkpoint.every_evals results; returns HSC_ERR_STOPPED after a checkpoint when a signal came. */
static hsc_status run_evaluations_(search_ctx *c, int steady, hsc_error *err);

/* The evaluation loop, its CPU time counted as the master's dispatch overhead. */
static hsc_status run_evaluations(search_ctx *c, int steady, hsc_error *err) {
  const double cpu0 = hsc_thread_cpu();
  const hsc_status st = run_evaluations_(c, steady, err);
  c->master_cpu_s += hsc_thread_cpu() - cpu0;
  return st;
}

static hsc_status run_evaluations_(search_ctx *c, int steady, hsc_error *err) {
  const hsc_config *cfg = c->cfg;
  const int64_t budget = (int64_t)cfg->evolution.population * cfg->evolution.generations;
  enum { MAXR = 256 };
  hsc_task_result res[MAXR];
  submit_todo(c);
  double last_log = hsc_now();
  for (;;) {
    if (steady)
      for (int free_slots = hsc_farm_free_slots(c->farm); free_slots > 0 && c->st.created < budget;
           free_slots--) {
        hsc_record r;
        if (!create_steady(c, &r)) continue;
        list_push(&c->st.todo, &r);
        const hsc_task t = {.id = r.id, .arch = r.arch};
        hsc_farm_submit(c->farm, &t);
      }
    if (hsc_farm_stop_requested(c->farm) || hsc_signals_pending()) {
      hsc_log(HSC_LOG_INFO, "signal received: checkpointing the search (%d evaluations) and stopping",
              c->st.hist.n);
      hsc_status st = checkpoint_now(c, err);
      return st == HSC_OK ? hsc_error_set(err, HSC_ERR_STOPPED,
                                          "search stopped by a signal after %d evaluations "
                                          "(resumable)",
                                          c->st.hist.n)
                          : st;
    }
    if (hsc_farm_pending(c->farm) == 0) break;
    hsc_status fst;
    const int n = hsc_farm_wait(c->farm, res, MAXR, &fst);
    if (fst != HSC_OK) {
      hsc_status cst = checkpoint_now(c, err);
      if (cst != HSC_OK) return cst;
      return hsc_error_set(
          err, fst,
          "every worker exceeded dist.eval_timeout_s (%g s) and was abandoned; %d candidates "
          "left unevaluated (the search checkpoint holds every finished one)",
          cfg->dist.eval_timeout_s, hsc_farm_pending(c->farm));
    }
    for (int i = 0; i < n; i++) take_result(c, &res[i]);
    if (cfg->checkpoint.every_evals > 0 &&
        c->st.hist.n - c->st.evals_at_ckpt >= cfg->checkpoint.every_evals) {
      hsc_status st = checkpoint_now(c, err);
      if (st != HSC_OK) return st;
    }
    if (hsc_now() - last_log > 10.0) {
      last_log = hsc_now();
      hsc_log(HSC_LOG_INFO, "stage %d %s: %d evaluations done, %d pending", c->st.stage,
              step_names[c->st.step], c->st.hist.n, hsc_farm_pending(c->farm));
    }
  }
  return HSC_OK;
}

static const hsc_record *best_of(const search_ctx *c, const int *idx, int n) {
  int top = -1;
  if (hsc_select_topk(c->st.hist.v, idx, n, 1, 0, &top) < 1) return NULL;
  return &c->st.hist.v[top];
}

/* The stage's samples are in: shrink the mask (not for the DCS-only calibration stage) and refresh the
 * DCS gains. */
static void finish_sampling(search_ctx *c) {
  const hsc_config *cfg = c->cfg;
  const int s = c->st.stage;
  record_list samples = {0};
  for (int i = 0; i < c->st.hist.n; i++)
    if (c->st.hist.v[i].stage == s && c->st.hist.v[i].kind == HSC_CAND_SAMPLE)
      list_push(&samples, &c->st.hist.v[i]);
  hsc_dcs_estimate(&c->space, samples.v, samples.n, &c->st.gain);
  double mean = 0;
  for (int i = 0; i < samples.n; i++) mean += samples.v[i].top1;
  hsc_log(HSC_LOG_INFO, "stage %d: %d samples, mean top1 %.2f%%", s, samples.n,
          samples.n ? mean / samples.n : 0.0);
  if (s < c->nstages) {
    hsc_shrink_report rep;
    hsc_shrink_step(&c->space, c->lm, c->target, samples.v, samples.n, cfg->shrink.drop_ops,
                    cfg->shrink.drop_scales, cfg->shrink.latency_weight, &c->st.mask, &rep);
    for (int l = 0; l < c->space.nblocks; l++) {
      char line[512];
      int len = snprintf(line, sizeof line, "block %d keeps", l);
      for (int o = 0; o < c->space.nops; o++)
        if (c->st.mask.op[l][c->space.ops[o]])
          len += snprintf(line + len, sizeof line - (size_t)len, " %s", hsc_op_name(c->space.ops[o]));
      len += snprintf(line + len, sizeof line - (size_t)len, " |");
      for (int k = 0; k < c->space.nscales && len < (int)sizeof line; k++)
        if (c->st.mask.scale[l][k])
          len += snprintf(line + len, sizeof line - (size_t)len, " %g", c->space.scales[k]);
      hsc_log(HSC_LOG_INFO, "stage %d: %s", s, line);
    }
    c->st.step = STEP_FINETUNE;
  } else {
    c->st.step = STEP_EVOLVE;
  }
  list_free(&samples);
}

/* Name of the checkpoint phase holding the weights that stage s evaluates on. */
static void weights_phase(const search_ctx *c, int stage, char *buf, size_t len) {
  if (stage == 0 || c->cfg->shrink.finetune_epochs == 0)
    snprintf(buf, len, "supernet");
  else
    snprintf(buf, len, "stage%d", stage - 1);
}

/* ---- the collective loop ---- */

typedef enum { ACT_EVAL = 1, ACT_FINETUNE = 2, ACT_DONE = 3 } action_kind;

typedef struct {
  int kind, stage;
  char phase[32];
  hsc_space_mask mask;
} action;

/* Rank 0: what the ranks do next. */
static action next_action(search_ctx *c) {
  action a;
  memset(&a, 0, sizeof a);
  a.stage = c->st.stage;
  a.mask = c->st.mask;
  if (c->st.step == STEP_DONE)
    a.kind = ACT_DONE;
  else if (c->st.step == STEP_FINETUNE)
    a.kind = ACT_FINETUNE;
  else
    a.kind = ACT_EVAL;
  weights_phase(c, c->st.stage, a.phase, sizeof a.phase);
  return a;
}

/* 1 when the history already holds candidates of the current stage made as samples (kind HSC_CAND_SAMPLE)
 * or of evolution generation `generation`: after a resume, such a step was created before the stop and
 * must not be created again. */
static int created_already(const search_ctx *c, int kind, int generation) {
  for (int i = 0; i < c->st.hist.n; i++) {
    const hsc_record *r = &c->st.hist.v[i];
    if (r->stage != c->st.stage) continue;
    if (kind == HSC_CAND_SAMPLE && r->kind == HSC_CAND_SAMPLE) return 1;
    if (kind < 0 && r->kind != HSC_CAND_SAMPLE && r->generation == generation) return 1;
  }
  return 0;
}

/* Rank 0 within ACT_EVAL: runs the current step's evaluations and advances the state (one step). */
static hsc_status master_step(search_ctx *c, hsc_error *err) {
  const hsc_config *cfg = c->cfg;
  const int steady = !strcmp(cfg->evolution.mode, "steady");
  hsc_status st;
  if (c->st.step == STEP_SAMPLE) {
    /* A resumed stage continues with the samples of its checkpoint (pending ones in todo). */
    if (c->st.todo.n == 0 && !created_already(c, HSC_CAND_SAMPLE, -1)) create_samples(c);
    if ((st = run_evaluations(c, 0, err)) != HSC_OK) return st;
    finish_sampling(c);
    return checkpoint_now(c, err);
  }
  /* STEP_EVOLVE */
  if (steady) {
    if ((st = run_evaluations(c, 1, err)) != HSC_OK) return st;
    c->st.step = STEP_DONE;
    return checkpoint_now(c, err);
  }
  while (c->st.generation < cfg->evolution.generations) {
    if (c->st.todo.n == 0 && !created_already(c, -1, c->st.generation)) create_generation(c);
    if ((st = run_evaluations(c, 0, err)) != HSC_OK) return st;
    int *idx = hsc_xmalloc((size_t)(c->st.hist.n + 1) * sizeof *idx);
    const int n = evo_records(c, idx);
    const hsc_record *b = best_of(c, idx, n);
    if (b)
      hsc_log(HSC_LOG_INFO,
              "generation %d/%d: %d evaluated so far, best top1 %.2f%% at %.4f ms (target %.4f)",
              c->st.generation + 1, cfg->evolution.generations, n, b->top1, b->latency_ms, c->target);
    free(idx);
    c->st.generation++;
    if ((st = checkpoint_now(c, err)) != HSC_OK) return st;
  }
  c->st.step = STEP_DONE;
  return checkpoint_now(c, err);
}

/* Collective set-up of everything every rank needs. */
static hsc_status ctx_open(search_ctx *c, const hsc_config *cfg, MPI_Comm comm, hsc_error *err) {
  memset(c, 0, sizeof *c);
  c->cfg = cfg;
  c->comm = comm;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &c->rank));
  HSC_CHECK_MPI(MPI_Comm_size(comm, &c->size));
  hsc_status st = hsc_space_init(&c->space, cfg, err);
  if (st != HSC_OK) return st;
  snprintf(c->ckdir, sizeof c->ckdir, "%s/checkpoints", cfg->run.dir);
  char path[HSC_CFG_PATH + 16];
  hsc_latency_model_path(cfg, path, sizeof path);
  c->lm = hsc_xcalloc(1, sizeof *c->lm);
  /* The loader's message names the file and, when there is none, says to run 'hsconas profile'. */
  if ((st = hsc_latency_load(c->lm, path, &c->space, cfg->latency.batch, NULL, comm, err)) != HSC_OK)
    return st;
  c->lm_hash = model_hash(c->lm, &c->space);
  c->target = hsc_search_target(cfg, &c->space, c->lm);
  c->nstages = cfg->shrink.stages;
  if (c->nstages > 0 && cfg->shrink.finetune_epochs > 0 && cfg->data.batch_size % c->size != 0)
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "data.batch_size %d must be divisible by the %d ranks for the fine-tuning between "
                         "shrinking stages (shrink.finetune_epochs %d); use a multiple of %d, or "
                         "shrink.finetune_epochs 0",
                         cfg->data.batch_size, c->size, cfg->shrink.finetune_epochs, c->size);
  hsc_space_mask full;
  hsc_space_mask_full(&c->space, &full);
  const double floor_ms = hsc_mask_min_latency(&c->space, &full, c->lm);
  if (c->target < floor_ms)
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "latency.target_ms %.4f ms is below the fastest architecture of the space (%.4f ms "
                         "predicted by %s)",
                         c->target, floor_ms, path);
  if (cfg->evolution.benchmark_eval_s <= 0) {
    const int with_net = c->size == 1 || c->rank > 0;
    if ((st = hsc_evaluator_open(&c->ev, cfg, comm, with_net, err)) != HSC_OK) return st;
  }
  return HSC_OK;
}

static void ctx_close(search_ctx *c) {
  if (c->ev) hsc_evaluator_close(c->ev);
  if (c->farm) hsc_farm_free(c->farm);
  free(c->lm);
  list_free(&c->st.hist);
  list_free(&c->st.todo);
}

hsc_status hsc_search(const hsc_config *cfg, MPI_Comm comm, hsc_search_result *res, hsc_error *err) {
  const double t0 = hsc_now();
  memset(res, 0, sizeof *res);
  search_ctx c;
  hsc_status st = ctx_open(&c, cfg, comm, err);
  if (st != HSC_OK) {
    ctx_close(&c);
    return st;
  }
  hsc_signals_install();
  const int benchmark = cfg->evolution.benchmark_eval_s > 0;
  if (benchmark)
    hsc_log(HSC_LOG_INFO, "benchmark mode: synthetic evaluations of %g s, no supernet",
            cfg->evolution.benchmark_eval_s);
  hsc_log(HSC_LOG_INFO, "search: target %.4f ms%s, %d shrinking stages, DCS %s, %s %s evolution, %d ranks",
          c.target, cfg->latency.target_ms > 0 ? "" : " (latency.target_quantile of random architectures)",
          c.nstages, cfg->dcs.enabled ? "on" : "off", cfg->evolution.mode, cfg->evolution.objective, c.size);

  /* rank 0: the state, fresh or resumed */
  if (c.rank == 0) {
    st = hsc_make_dirs(c.ckdir, err);
    int found = 0;
    if (st == HSC_OK) st = resume_state(&c, &found, err);
    if (st == HSC_OK && !found) {
      hsc_space_mask_full(&c.space, &c.st.mask);
      c.st.gain.nblocks = c.space.nblocks, c.st.gain.nscales = c.space.nscales;
      const int calibrate = c.nstages > 0 || cfg->dcs.enabled;
      c.st.step = calibrate ? STEP_SAMPLE : STEP_EVOLVE;
    }
  }
  if ((st = hsc_agree(comm, st, err)) != HSC_OK) {
    ctx_close(&c);
    return st;
  }
  eval_ctx ectx = {.c = &c, .synthetic_s = cfg->evolution.benchmark_eval_s};
  if (c.rank == 0) c.farm = hsc_farm_create(comm, cfg->dist.eval_timeout_s, eval_task, &ectx);

  for (;;) {
    action a;
    if (c.rank == 0) a = next_action(&c);
    HSC_CHECK_MPI(MPI_Bcast(&a, (int)sizeof a, MPI_BYTE, 0, comm));
    if (a.kind == ACT_DONE) break; /* the workers are out of hsc_farm_serve since the last release */
    if (a.kind == ACT_FINETUNE) {
      char from[32], phase[32];
      weights_phase(&c, a.stage, from, sizeof from);
      snprintf(phase, sizeof phase, "stage%d", a.stage);
      hsc_log(HSC_LOG_INFO, "stage %d: fine-tuning the supernet on the shrunk space for %d epochs", a.stage,
              cfg->shrink.finetune_epochs);
      hsc_train_result tr;
      st = hsc_finetune_supernet(cfg, comm, &a.mask, a.stage, from, phase, cfg->shrink.finetune_epochs,
                                 cfg->shrink.finetune_lr, &tr, err);
      if (st != HSC_OK) break; /* every rank has the same status */
      if (c.rank == 0) {
        c.st.stage++;
        c.st.step = c.st.stage < c.nstages ? STEP_SAMPLE : STEP_EVOLVE;
        st = checkpoint_now(&c, err);
      }
      if ((st = hsc_agree(comm, st, err)) != HSC_OK) break;
      continue;
    }
    /* ACT_EVAL */
    if (!benchmark && (st = hsc_evaluator_load(c.ev, a.phase, err)) != HSC_OK) break;
    if (c.rank == 0) {
      hsc_log(HSC_LOG_INFO, "stage %d: %s on the weights of %s/%s-*.h5", a.stage, step_names[c.st.step],
              c.ckdir, a.phase);
      st = master_step(&c, err);
      if (st == HSC_OK)
        hsc_farm_release(c.farm);
      else
        hsc_farm_shutdown(c.farm, st == HSC_ERR_STOPPED ? HSC_ERR_STOPPED : HSC_ERR_INPUT);
      if (st != HSC_OK) break;
    } else {
      hsc_status mst = HSC_OK;
      if (hsc_farm_serve(comm, eval_task, &ectx, &mst) == HSC_FARM_DONE) {
        st = mst;
        if (st == HSC_ERR_STOPPED)
          hsc_error_set(err, st, "search stopped by a signal (resumable; rank 0 wrote the checkpoint)");
        else if (st != HSC_OK)
          hsc_error_set(err, st, "the search master stopped with an error (rank 0 reports it)");
        break;
      }
    }
  }
  if (st == HSC_OK && c.rank == 0) {
    char dir[HSC_CFG_PATH];
    snprintf(dir, sizeof dir, "%s", cfg->run.dir);
    st = hsc_search_report(dir, res, err);
  }
  if (st == HSC_OK) st = hsc_agree(comm, st, err);
  res->evaluated = c.rank == 0 ? c.st.hist.n - c.st.resumed_from : 0;
  res->resumed_from = c.st.resumed_from;
  res->target_ms = c.target;
  res->seconds = hsc_now() - t0;
  ctx_close(&c);
  return st;
}
