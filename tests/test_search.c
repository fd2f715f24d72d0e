/* The search operators (include/hsconas/search.h): mutation and crossover replayed draw by draw, dominance,
 * the Pareto front and parent selection against brute force and hand-ordered examples, the DCS gain
 * estimate on exactly linear data, DCS against brute force over every scale assignment of small spaces,
 * and space shrinking on hand-made records (worst choice removed, the last kept, the latency target
 * respected, the latency weight at work) and the mask's fastest architecture against brute force.
 * Latency models are built in memory; no file or backend is needed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hsconas/latency.h"
#include "hsconas/rng.h"
#include "hsconas/search.h"

/* ---- helpers ---- */

/* One stage of nblocks blocks with the given scale and operator lists. */
static int small_space(hsc_test *t, hsc_space *s, int nblocks, const char *scales, const char *ops) {
  hsc_config cfg;
  char blocks[64], sc[128], op[128];
  snprintf(blocks, sizeof blocks, "space.stage_blocks=[%d]", nblocks);
  snprintf(sc, sizeof sc, "space.scales=%s", scales);
  snprintf(op, sizeof op, "space.ops=%s", ops);
  const char *sets[] = {"space.stem_channels=8",
                        "space.stage_channels=[16]",
                        blocks,
                        "space.stage_strides=[2]",
                        "space.head_channels=32",
                        sc,
                        op};
  return tu_space(t, &cfg, s, sets, (int)ARRAY_LEN(sets));
}

static const char *const ALL_OPS = "[shuffle3,shuffle5,shuffle7,xception]";

/* A model of s with stem = head = 1 ms, the given fit and every LUT entry 0 (callers fill them). */
static void empty_model(const hsc_space *s, hsc_latency_model *m, double k, double b) {
  memset(m, 0, sizeof *m);
  m->nblocks = s->nblocks, m->nops = s->nops, m->nscales = s->nscales;
  memcpy(m->ops, s->ops, sizeof m->ops);
  memcpy(m->scales, s->scales, sizeof m->scales);
  m->stem.median = 1.0;
  m->head.median = 1.0;
  m->k = k;
  m->b = b;
}

/* A mask with each choice of each block kept with probability 1/2, at least one of each kept. */
static void random_mask(const hsc_space *s, hsc_rng *r, hsc_space_mask *m) {
  hsc_space_mask_full(s, m);
  for (int l = 0; l < s->nblocks; l++) {
    for (int i = 0; i < s->nops; i++) m->op[l][s->ops[i]] = (uint8_t)hsc_rng_below(r, 2);
    for (int j = 0; j < s->nscales; j++) m->scale[l][j] = (uint8_t)hsc_rng_below(r, 2);
    m->op[l][s->ops[hsc_rng_below(r, (uint32_t)s->nops)]] = 1;
    m->scale[l][hsc_rng_below(r, (uint32_t)s->nscales)] = 1;
  }
}

/* Every architecture the mask allows (ops in the space's order, scales by index; block 0 varies slowest).
 * Returns the count; at most max are written. */
static int enum_archs(const hsc_space *s, const hsc_space_mask *m, hsc_arch *out, int max) {
  int nops[HSC_MAX_BLOCKS], nsc[HSC_MAX_BLOCKS], ops[HSC_MAX_BLOCKS][HSC_OP_COUNT];
  int sc[HSC_MAX_BLOCKS][HSC_MAX_SCALES], pos[HSC_MAX_BLOCKS] = {0};
  for (int l = 0; l < s->nblocks; l++) {
    nops[l] = nsc[l] = 0;
    for (int i = 0; i < s->nops; i++)
      if (m->op[l][s->ops[i]]) ops[l][nops[l]++] = (int)s->ops[i];
    for (int j = 0; j < s->nscales; j++)
      if (m->scale[l][j]) sc[l][nsc[l]++] = j;
  }
  int n = 0;
  for (;;) {
    if (n < max) {
      hsc_arch *a = &out[n];
      memset(a, 0, sizeof *a);
      a->nblocks = s->nblocks;
      for (int l = 0; l < s->nblocks; l++) {
        a->op[l] = (uint8_t)ops[l][pos[l] / nsc[l]];
        a->scale[l] = (uint8_t)sc[l][pos[l] % nsc[l]];
      }
    }
    n++;
    int l = s->nblocks - 1;
    for (; l >= 0; l--) {
      if (++pos[l] < nops[l] * nsc[l]) break;
      pos[l] = 0;
    }
    if (l < 0) return n;
  }
}

static hsc_record make_record(const hsc_space *s, const hsc_latency_model *lm, const hsc_arch *a, int64_t id,
                              double top1) {
  hsc_record r;
  memset(&r, 0, sizeof r);
  r.id = id;
  r.arch = *a;
  r.hash = hsc_arch_hash(s, a);
  r.generation = -1;
  r.kind = HSC_CAND_SAMPLE;
  r.top1 = top1;
  r.latency_ms = lm ? hsc_latency_predict(lm, a) : 0;
  return r;
}

static int in_mask(const hsc_space_mask *m, const hsc_arch *a) {
  for (int l = 0; l < a->nblocks; l++)
    if (!m->op[l][a->op[l]] || !m->scale[l][a->scale[l]]) return 0;
  return 1;
}

/* ---- names ---- */

static void t_kind_names(hsc_test *t) {
  static const char *const want[] = {"sample", "random", "mutation", "crossover"};
  _Static_assert(ARRAY_LEN(want) == HSC_CAND_KIND_COUNT, "one name per kind");
  for (int k = 0; k < HSC_CAND_KIND_COUNT; k++) {
    const char *got = hsc_cand_kind_name(k);
    if (!got || strcmp(got, want[k]))
      T_FAIL(t, "kind %d: '%s', expected '%s'", k, got ? got : "(null)", want[k]);
  }
  T_CHECK(t, hsc_cand_kind_name(-1) == NULL);
  T_CHECK(t, hsc_cand_kind_name(HSC_CAND_KIND_COUNT) == NULL);
}

/* ---- mutation and crossover ---- */

/* prob 0 copies the parent and still draws exactly two uniforms per block. */
static void t_mutate_identity(hsc_test *t) {
  hsc_config cfg;
  hsc_space s;
  if (!tu_space(t, &cfg, &s, NULL, 0)) return;
  hsc_space_mask m;
  hsc_space_mask_full(&s, &m);
  for (int i = 0; i < 100; i++) {
    hsc_rng r, replay;
    hsc_rng_init(&r, 1, HSC_RNG_TEST, (uint64_t)i);
    hsc_arch parent, child;
    hsc_arch_sample(&s, &m, &r, &parent);
    replay = r;
    hsc_evo_mutate(&s, &m, &parent, 0.0, &r, &child);
    if (!hsc_arch_equal(&parent, &child)) T_FAIL(t, "parent %d changed with prob 0", i);
    for (int k = 0; k < 2 * s.nblocks; k++) hsc_rng_uniform(&replay);
    T_EQ_INT(t, hsc_rng_u32(&r), hsc_rng_u32(&replay));
  }
}

/* prob 1 redraws every gene within the mask; over many draws every allowed choice appears. */
static void t_mutate_full(hsc_test *t) {
  hsc_config cfg;
  hsc_space s;
  if (!tu_space(t, &cfg, &s, NULL, 0)) return;
  hsc_rng r;
  hsc_rng_init(&r, 2, HSC_RNG_TEST, 0);
  hsc_space_mask m;
  random_mask(&s, &r, &m);
  hsc_arch parent;
  hsc_arch_sample(&s, NULL, &r, &parent); /* outside the mask: every gene must still end inside it */
  int seen_op[HSC_MAX_BLOCKS][HSC_OP_COUNT] = {{0}}, seen_sc[HSC_MAX_BLOCKS][HSC_MAX_SCALES] = {{0}};
  int outside = 0;
  for (int i = 0; i < 4000; i++) {
    hsc_arch child;
    hsc_evo_mutate(&s, &m, &parent, 1.0, &r, &child);
    T_EQ_INT(t, child.nblocks, s.nblocks);
    if (!in_mask(&m, &child)) outside++;
    for (int l = 0; l < s.nblocks; l++) {
      if (child.op[l] < HSC_OP_COUNT) seen_op[l][child.op[l]]++;
      if (child.scale[l] < HSC_MAX_SCALES) seen_sc[l][child.scale[l]]++;
    }
  }
  T_EQ_INT(t, outside, 0);
  for (int l = 0; l < s.nblocks; l++) {
    for (int o = 0; o < HSC_OP_COUNT; o++)
      if (!!m.op[l][o] != !!seen_op[l][o])
        T_FAIL(t, "block %d op %d: allowed %d, drawn %d times", l, o, m.op[l][o], seen_op[l][o]);
    for (int j = 0; j < s.nscales; j++)
      if (!!m.scale[l][j] != !!seen_sc[l][j])
        T_FAIL(t, "block %d scale %d: allowed %d, drawn %d times", l, j, m.scale[l][j], seen_sc[l][j]);
  }
}

/* prob 0.5 on a masked space: the child equals the replayed draws uniform, [below], uniform, [below]. */
static void t_mutate_replay(hsc_test *t) {
  hsc_space s;
  /* operators listed out of hsc_op order: the allowed ones are counted in the space's order */
  if (!small_space(t, &s, 4, "[0.5,1.0,1.5,2.0,2.5]", "[xception,shuffle3,shuffle7,shuffle5]")) return;
  int fired = 0, kept = 0;
  for (int trial = 0; trial < 50; trial++) {
    hsc_rng r, replay;
    hsc_rng_init(&r, 3, HSC_RNG_TEST, (uint64_t)trial);
    hsc_space_mask m;
    random_mask(&s, &r, &m);
    hsc_arch parent, child, want;
    hsc_arch_sample(&s, &m, &r, &parent);
    replay = r;
    hsc_evo_mutate(&s, &m, &parent, 0.5, &r, &child);
    want = parent;
    for (int l = 0; l < s.nblocks; l++) {
      int ops[HSC_OP_COUNT], nops = 0, sc[HSC_MAX_SCALES], nsc = 0;
      for (int i = 0; i < s.nops; i++)
        if (m.op[l][s.ops[i]]) ops[nops++] = (int)s.ops[i];
      for (int j = 0; j < s.nscales; j++)
        if (m.scale[l][j]) sc[nsc++] = j;
      if (hsc_rng_uniform(&replay) < 0.5f) {
        want.op[l] = (uint8_t)ops[hsc_rng_below(&replay, (uint32_t)nops)];
        fired++;
      } else {
        kept++;
      }
      if (hsc_rng_uniform(&replay) < 0.5f) {
        want.scale[l] = (uint8_t)sc[hsc_rng_below(&replay, (uint32_t)nsc)];
        fired++;
      } else {
        kept++;
      }
    }
    if (!hsc_arch_equal(&child, &want))
      T_FAIL(t, "trial %d: the child differs from the replayed draws", trial);
    T_EQ_INT(t, hsc_rng_u32(&r), hsc_rng_u32(&replay));
  }
  T_CHECK(t, fired > 50 && kept > 50); /* both branches were exercised */
}

static void t_crossover(hsc_test *t) {
  hsc_config cfg;
  hsc_space s;
  if (!tu_space(t, &cfg, &s, NULL, 0)) return;
  int from1 = 0, from2 = 0;
  for (int trial = 0; trial < 50; trial++) {
    hsc_rng r, replay;
    hsc_rng_init(&r, 4, HSC_RNG_TEST, (uint64_t)trial);
    hsc_arch p1, p2, child;
    hsc_arch_sample(&s, NULL, &r, &p1);
    hsc_arch_sample(&s, NULL, &r, &p2);
    replay = r;
    hsc_evo_crossover(&p1, &p2, &r, &child);
    T_EQ_INT(t, child.nblocks, s.nblocks);
    for (int l = 0; l < s.nblocks; l++) {
      const hsc_arch *want = hsc_rng_below(&replay, 2) == 0 ? &p1 : &p2;
      *(want == &p1 ? &from1 : &from2) += 1;
      if (child.op[l] != want->op[l] || child.scale[l] != want->scale[l])
        T_FAIL(t, "trial %d block %d: gene not from parent %d", trial, l, want == &p1 ? 1 : 2);
    }
    T_EQ_INT(t, hsc_rng_u32(&r), hsc_rng_u32(&replay));
  }
  T_CHECK(t, from1 > 50 && from2 > 50);
}

/* ---- dominance, front, selection ---- */

static hsc_record rec_tl(int64_t id, double top1, double lat) {
  hsc_record r;
  memset(&r, 0, sizeof r);
  r.id = id, r.top1 = top1, r.latency_ms = lat;
  return r;
}

static void t_dominates_hand(hsc_test *t) {
  const hsc_record a = rec_tl(0, 70, 10), same = rec_tl(1, 70, 10), better = rec_tl(2, 71, 10),
                   faster = rec_tl(3, 70, 9), trade = rec_tl(4, 72, 11), both = rec_tl(5, 71, 9);
  T_EQ_INT(t, hsc_dominates(&a, &same), 0);
  T_EQ_INT(t, hsc_dominates(&same, &a), 0);
  T_EQ_INT(t, hsc_dominates(&better, &a), 1);
  T_EQ_INT(t, hsc_dominates(&a, &better), 0);
  T_EQ_INT(t, hsc_dominates(&faster, &a), 1);
  T_EQ_INT(t, hsc_dominates(&a, &faster), 0);
  T_EQ_INT(t, hsc_dominates(&trade, &a), 0);
  T_EQ_INT(t, hsc_dominates(&a, &trade), 0);
  T_EQ_INT(t, hsc_dominates(&both, &a), 1);
  T_EQ_INT(t, hsc_dominates(&both, &trade), 0);
}

/* 200 records on a coarse grid (many ties and duplicates), ids shuffled. */
static void grid_records(hsc_record *rec, int n, uint64_t stream) {
  int32_t perm[1024];
  hsc_rng_permute(perm, n, 9, HSC_RNG_TEST, stream);
  hsc_rng r;
  hsc_rng_init(&r, 9, HSC_RNG_TEST, stream + 1000);
  for (int i = 0; i < n; i++)
    rec[i] = rec_tl(perm[i], 50 + (double)hsc_rng_below(&r, 20), 1 + 0.5 * hsc_rng_below(&r, 20));
}

static int brute_dominates(const hsc_record *a, const hsc_record *b) {
  if (a->top1 < b->top1 || a->latency_ms > b->latency_ms) return 0;
  return a->top1 != b->top1 || a->latency_ms != b->latency_ms;
}

static void t_pareto_brute(hsc_test *t) {
  enum { N = 200 };
  static hsc_record rec[N];
  int ndom = 0, bigger = 0;
  for (int trial = 0; trial < 5; trial++) {
    grid_records(rec, N, (uint64_t)trial);
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) {
        const int want = brute_dominates(&rec[i], &rec[j]);
        ndom += want;
        if (hsc_dominates(&rec[i], &rec[j]) != want) T_FAIL(t, "dominates(%d, %d) != %d", i, j, want);
      }
    /* all records, then every third one in reverse order through idx */
    int idx[N], nidx = 0;
    for (int i = N - 1; i >= 0; i -= 3) idx[nidx++] = i;
    for (int pass = 0; pass < 2; pass++) {
      const int *set = pass ? idx : NULL;
      const int n = pass ? nidx : N;
      int out[N], want[N], nwant = 0;
      const int nout = hsc_pareto_front(rec, set, n, out);
      /* brute force: the undominated members, then ordered by (latency, id) with a selection sort */
      for (int a = 0; a < n; a++) {
        const int i = set ? set[a] : a;
        int dom = 0;
        for (int b = 0; b < n; b++) dom |= brute_dominates(&rec[set ? set[b] : b], &rec[i]);
        if (!dom) want[nwant++] = i;
      }
      for (int a = 0; a < nwant; a++)
        for (int b = a + 1; b < nwant; b++) {
          const hsc_record *x = &rec[want[a]], *y = &rec[want[b]];
          if (y->latency_ms < x->latency_ms || (y->latency_ms == x->latency_ms && y->id < x->id)) {
            const int tmp = want[a];
            want[a] = want[b];
            want[b] = tmp;
          }
        }
      T_EQ_INT(t, nout, nwant);
      for (int a = 0; a < nout && a < nwant; a++)
        if (out[a] != want[a]) {
          T_FAIL(t, "trial %d pass %d: front[%d] = %d, expected %d", trial, pass, a, out[a], want[a]);
          break;
        }
      bigger += nwant >= 2;
    }
  }
  T_CHECK(t, ndom > 0);
  if (bigger < 3) T_FAIL(t, "only %d of 10 fronts have two members or more: a weak test", bigger);
}

static void t_topk_single(hsc_test *t) {
  const hsc_record rec[] = {rec_tl(5, 70, 10), rec_tl(3, 80, 12), rec_tl(4, 70, 9), rec_tl(1, 70, 9),
                            rec_tl(2, 80, 12)};
  /* top1 80: ids 2 and 3 at equal latency -> id 2 first; top1 70: latency 9 (ids 1, 4) before 10 */
  const int want[] = {4, 1, 3, 2, 0};
  int out[8];
  T_EQ_INT(t, hsc_select_topk(rec, NULL, 5, 10, 0, out), 5);
  for (int i = 0; i < 5; i++) T_EQ_INT(t, out[i], want[i]);
  T_EQ_INT(t, hsc_select_topk(rec, NULL, 5, 3, 0, out), 3);
  for (int i = 0; i < 3; i++) T_EQ_INT(t, out[i], want[i]);
  const int idx[] = {0, 2, 3};
  T_EQ_INT(t, hsc_select_topk(rec, idx, 3, 2, 0, out), 2);
  T_EQ_INT(t, out[0], 3);
  T_EQ_INT(t, out[1], 2);
  T_EQ_INT(t, hsc_select_topk(rec, NULL, 5, 0, 0, out), 0);
}

/* Front number of every record by peeling (brute force). */
static void peel_fronts(const hsc_record *rec, int n, int *front) {
  for (int i = 0; i < n; i++) front[i] = -1;
  for (int f = 0, left = n; left > 0; f++) {
    int now[1024], nnow = 0;
    for (int i = 0; i < n; i++) {
      if (front[i] >= 0) continue;
      int dom = 0;
      for (int j = 0; j < n && !dom; j++) dom = front[j] < 0 && brute_dominates(&rec[j], &rec[i]);
      if (!dom) now[nnow++] = i;
    }
    for (int a = 0; a < nnow; a++) front[now[a]] = f;
    left -= nnow;
  }
}

static void t_topk_pareto(hsc_test *t) {
  /* fronts: {a 80/20, c 75/15, b 70/10}, {e 78/25, d 72/18, g 65/12}, {f 60/30} */
  const hsc_record rec[] = {rec_tl(0, 80, 20), rec_tl(1, 70, 10), rec_tl(2, 75, 15), rec_tl(3, 72, 18),
                            rec_tl(4, 78, 25), rec_tl(5, 60, 30), rec_tl(6, 65, 12)};
  const int want_pareto[] = {0, 2, 1, 4, 3, 6, 5}, want_single[] = {0, 4, 2, 3, 1, 6, 5};
  int out[8];
  T_EQ_INT(t, hsc_select_topk(rec, NULL, 7, 7, 1, out), 7);
  for (int i = 0; i < 7; i++) T_EQ_INT(t, out[i], want_pareto[i]);
  T_EQ_INT(t, hsc_select_topk(rec, NULL, 7, 7, 0, out), 7);
  for (int i = 0; i < 7; i++) T_EQ_INT(t, out[i], want_single[i]);
  T_EQ_INT(t, hsc_select_topk(rec, NULL, 7, 4, 1, out), 4);
  for (int i = 0; i < 4; i++) T_EQ_INT(t, out[i], want_pareto[i]);
  const int front_want[] = {1, 2, 0};
  T_EQ_INT(t, hsc_pareto_front(rec, NULL, 7, out), 3);
  for (int i = 0; i < 3; i++) T_EQ_INT(t, out[i], front_want[i]);

  /* random grids: the order is (peeled front, top1 desc, latency, id), checked pairwise */
  enum { N = 200 };
  static hsc_record g[N];
  for (int trial = 0; trial < 3; trial++) {
    grid_records(g, N, 100 + (uint64_t)trial);
    int front[N], sel[N];
    peel_fronts(g, N, front);
    T_EQ_INT(t, hsc_select_topk(g, NULL, N, N, 1, sel), N);
    int seen[N] = {0}, bad = 0, maxf = 0;
    for (int a = 0; a < N; a++) {
      seen[sel[a]]++;
      if (front[sel[a]] > maxf) maxf = front[sel[a]];
      if (a == 0) continue;
      const hsc_record *x = &g[sel[a - 1]], *y = &g[sel[a]];
      const int fx = front[sel[a - 1]], fy = front[sel[a]];
      const int ok =
          fx < fy ||
          (fx == fy && (x->top1 > y->top1 ||
                        (x->top1 == y->top1 && (x->latency_ms < y->latency_ms ||
                                                (x->latency_ms == y->latency_ms && x->id < y->id)))));
      if (!ok) bad++;
    }
    for (int i = 0; i < N; i++)
      if (seen[i] != 1) bad++;
    T_EQ_INT(t, bad, 0);
    T_CHECK(t, maxf >= 3);
  }
}

/* ---- DCS ---- */

/* A full factorial over blocks 0-2 (block 3 held at one scale): the blocks' scale values are exactly
 * uncorrelated, so each slope is exactly that block's coefficient. */
static void t_dcs_estimate(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 4, "[0.5,1.0,1.5]", ALL_OPS)) return;
  const double beta[4] = {4.0, -2.0, 10.0, 3.0};
  hsc_record rec[28];
  int n = 0;
  for (int i = 0; i < 27; i++) {
    hsc_arch a;
    hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 1, &a);
    a.scale[0] = (uint8_t)(i % 3), a.scale[1] = (uint8_t)(i / 3 % 3), a.scale[2] = (uint8_t)(i / 9);
    a.op[1] = (uint8_t)s.ops[i % s.nops]; /* operators play no part */
    double top1 = 50;
    for (int l = 0; l < 4; l++) top1 += beta[l] * s.scales[a.scale[l]];
    rec[n++] = make_record(&s, NULL, &a, i, top1);
  }
  rec[n] = rec[5];
  rec[n++].top1 = NAN; /* a failed evaluation: left out */
  hsc_dcs_gain g;
  hsc_dcs_estimate(&s, rec, n, &g);
  T_EQ_INT(t, g.n, 27);
  T_EQ_INT(t, g.nblocks, 4);
  T_EQ_INT(t, g.nscales, 3);
  for (int l = 0; l < 4; l++)
    for (int j = 0; j < 3; j++) {
      const double want = l == 3 ? 0.0 : beta[l] * (s.scales[j] - s.scales[0]);
      if (fabs(g.gain[l][j] - want) > 1e-9)
        T_FAIL(t, "gain[%d][%d] = %.12g, expected %.12g", l, j, g.gain[l][j], want);
    }
  hsc_dcs_estimate(&s, rec, 0, &g);
  T_EQ_INT(t, g.n, 0);
  for (int l = 0; l < 4; l++)
    for (int j = 0; j < 3; j++) T_CHECK(t, g.gain[l][j] == 0.0);
}

static double gain_of(const hsc_dcs_gain *g, const hsc_arch *a) {
  double v = 0;
  for (int l = 0; l < a->nblocks; l++) v += g->gain[l][a->scale[l]];
  return v;
}

/* Equal cost per step everywhere and gains linear in the step: the best assignment takes the steps of the
 * largest slopes first, which is what the greedy does from the lowest and from the highest scales. */
static void t_dcs_optimal(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 3, "[0.5,1.0,1.5,2.0]", ALL_OPS)) return;
  hsc_latency_model lm;
  empty_model(&s, &lm, 0.5, 0.25);
  for (int l = 0; l < 3; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++)
      for (int j = 0; j < 4; j++) lm.lut[l][o][j].median = 1 + 2 * j + 0.25 * o; /* 1 ms per step */
  hsc_dcs_gain g;
  memset(&g, 0, sizeof g);
  g.nblocks = 3, g.nscales = 4, g.n = 100;
  const double beta[3] = {3, 1, 2};
  for (int l = 0; l < 3; l++)
    for (int j = 0; j < 4; j++) g.gain[l][j] = beta[l] * j;
  hsc_space_mask m;
  hsc_space_mask_full(&s, &m);

  hsc_arch base;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 0, &base);
  base.op[1] = HSC_OP_XCEPTION;
  hsc_space_mask fixed; /* the mask of base's operators: the brute force varies the scales only */
  hsc_space_mask_full(&s, &fixed);
  for (int l = 0; l < 3; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++) fixed.op[l][o] = o == base.op[l];
  hsc_arch all[64];
  T_REQUIRE(t, enum_archs(&s, &fixed, all, 64) == 64);
  const double p0 = hsc_latency_predict(&lm, &base);
  for (int steps = 0; steps <= 9; steps++) {
    const double target = p0 + steps + 0.5;
    double best = -1;
    for (int i = 0; i < 64; i++)
      if (hsc_latency_predict(&lm, &all[i]) <= target && gain_of(&g, &all[i]) > best)
        best = gain_of(&g, &all[i]);
    for (int start = 0; start < 2; start++) {
      hsc_arch a = base;
      for (int l = 0; l < 3; l++) a.scale[l] = (uint8_t)(start ? 3 : 0);
      const int ok = hsc_dcs_apply(&s, &m, &lm, &g, target, &a);
      T_EQ_INT(t, ok, 1);
      T_CHECK(t, hsc_latency_predict(&lm, &a) <= target);
      for (int l = 0; l < 3; l++) T_EQ_INT(t, a.op[l], base.op[l]);
      if (gain_of(&g, &a) != best)
        T_FAIL(t, "%d steps from the %s: gain %g, brute force %g", steps, start ? "top" : "bottom",
               gain_of(&g, &a), best);
    }
  }
  /* a target below the fastest assignment: 0, every scale at its lowest */
  hsc_arch a = base;
  a.scale[0] = 3, a.scale[1] = 2, a.scale[2] = 1;
  T_EQ_INT(t, hsc_dcs_apply(&s, &m, &lm, &g, p0 - 0.1, &a), 0);
  for (int l = 0; l < 3; l++) T_EQ_INT(t, a.scale[l], 0);
}

/* Random increasing LUTs, random gains (some falling), random masks and targets, against brute force over
 * every allowed scale assignment of the architecture's operators. */
static void t_dcs_brute(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 3, "[0.5,1.0,1.5,2.0]", ALL_OPS)) return;
  int feasible = 0, infeasible = 0, raised = 0;
  for (int trial = 0; trial < 300; trial++) {
    hsc_rng r;
    hsc_rng_init(&r, 6, HSC_RNG_TEST, (uint64_t)trial);
    hsc_latency_model lm;
    empty_model(&s, &lm, 0.5 + hsc_rng_uniform(&r), hsc_rng_uniform(&r));
    hsc_dcs_gain g;
    memset(&g, 0, sizeof g);
    g.nblocks = 3, g.nscales = 4, g.n = 10;
    for (int l = 0; l < 3; l++) {
      for (int o = 0; o < HSC_OP_COUNT; o++) {
        double v = 0.1 + hsc_rng_uniform(&r);
        for (int j = 0; j < 4; j++) lm.lut[l][o][j].median = v, v += 0.05 + hsc_rng_uniform(&r);
      }
      for (int j = 1; j < 4; j++) g.gain[l][j] = g.gain[l][j - 1] + 2 * hsc_rng_uniform(&r) - 0.5;
    }
    hsc_space_mask m;
    random_mask(&s, &r, &m);
    hsc_arch a, start;
    hsc_arch_sample(&s, NULL, &r, &a); /* ops and scales may lie outside the mask */
    start = a;
    hsc_space_mask fixed = m; /* a's operators, the mask's scales */
    for (int l = 0; l < 3; l++)
      for (int o = 0; o < HSC_OP_COUNT; o++) fixed.op[l][o] = o == a.op[l];
    hsc_arch all[64];
    const int nall = enum_archs(&s, &fixed, all, 64);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < nall; i++) {
      const double p = hsc_latency_predict(&lm, &all[i]);
      lo = fmin(lo, p), hi = fmax(hi, p);
    }
    const double target = lo - 0.2 + (hi - lo + 0.4) * hsc_rng_uniform(&r);
    double best = -INFINITY;
    for (int i = 0; i < nall; i++)
      if (hsc_latency_predict(&lm, &all[i]) <= target) best = fmax(best, gain_of(&g, &all[i]));

    const int ok = hsc_dcs_apply(&s, &m, &lm, &g, target, &a);
    const double p = hsc_latency_predict(&lm, &a);
    T_EQ_INT(t, ok, p <= target);
    T_EQ_INT(t, ok, best > -INFINITY); /* increasing LUTs: feasible iff the lowest scales are */
    for (int l = 0; l < 3; l++) {
      T_EQ_INT(t, a.op[l], start.op[l]);
      if (!m.scale[l][a.scale[l]])
        T_FAIL(t, "trial %d block %d: scale %d outside the mask", trial, l, a.scale[l]);
    }
    if (!ok) {
      infeasible++;
      for (int l = 0; l < 3; l++) {
        int lowest = 0;
        while (!m.scale[l][lowest]) lowest++;
        T_EQ_INT(t, a.scale[l], lowest);
      }
      continue;
    }
    feasible++;
    T_CHECK(t, gain_of(&g, &a) <= best + 1e-12);
    /* stopped for a reason: no single raise with a positive gain fits */
    for (int l = 0; l < 3; l++) {
      int up = a.scale[l] + 1;
      while (up < 4 && !m.scale[l][up]) up++;
      if (up >= 4 || !(g.gain[l][up] > g.gain[l][a.scale[l]])) continue;
      hsc_arch b = a;
      b.scale[l] = (uint8_t)up;
      if (hsc_latency_predict(&lm, &b) <= target)
        T_FAIL(t, "trial %d: block %d could still be raised", trial, l);
    }
    int any = 0;
    for (int l = 0; l < 3; l++) any |= a.scale[l] > start.scale[l] && m.scale[l][start.scale[l]];
    raised += any;
  }
  T_CHECK(t, feasible > 50 && infeasible > 10 && raised > 10);
}

/* Scales outside the mask move to the nearest allowed one; a raise that costs nothing is always taken;
 * with a hopeless target even the lowerings that save nothing are made. */
static void t_dcs_mask_and_free(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 3, "[0.5,1.0,1.5,2.0]", ALL_OPS)) return;
  hsc_latency_model lm;
  empty_model(&s, &lm, 1.0, 0.0);
  for (int l = 0; l < 3; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++)
      for (int j = 0; j < 4; j++) lm.lut[l][o][j].median = l == 2 ? 2.0 : 1 + j; /* block 2: flat */
  hsc_dcs_gain zero;
  memset(&zero, 0, sizeof zero);
  zero.nblocks = 3, zero.nscales = 4;
  hsc_space_mask m;
  hsc_space_mask_full(&s, &m);
  m.scale[0][1] = m.scale[0][2] = 0; /* block 0: {0.5, 2.0} */
  m.scale[1][1] = m.scale[1][3] = 0; /* block 1: {0.5, 1.5} */
  m.scale[2][0] = m.scale[2][1] = 0; /* block 2: {1.5, 2.0} */
  const int starts[][3] = {{1, 1, 0}, {2, 3, 1}};
  /* block 0: 1.0 -> 0.5 (0.5 away, 2.0 is 1.0 away), 1.5 -> 2.0; block 1: 1.0 is 0.5 from both 0.5 and
   * 1.5 -> the smaller, 2.0 -> 1.5; block 2: 0.5 and 1.0 -> 1.5 */
  const int want[][3] = {{0, 0, 2}, {3, 2, 2}};
  for (int c = 0; c < 2; c++) {
    hsc_arch a;
    hsc_arch_uniform(&s, HSC_OP_SHUFFLE5, 0, &a);
    for (int l = 0; l < 3; l++) a.scale[l] = (uint8_t)starts[c][l];
    T_EQ_INT(t, hsc_dcs_apply(&s, &m, &lm, &zero, 1000.0, &a), 1);
    for (int l = 0; l < 3; l++)
      if (a.scale[l] != want[c][l])
        T_FAIL(t, "case %d block %d: scale %d, expected %d", c, l, a.scale[l], want[c][l]);
  }

  /* free raise: the tightest target still raises block 2 (flat LUT) all the way */
  hsc_dcs_gain g = zero;
  for (int l = 0; l < 3; l++)
    for (int j = 0; j < 4; j++) g.gain[l][j] = (l + 1) * j;
  hsc_space_mask full;
  hsc_space_mask_full(&s, &full);
  hsc_arch a;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 0, &a);
  const double p0 = hsc_latency_predict(&lm, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &g, p0, &a), 1);
  T_EQ_INT(t, a.scale[0], 0);
  T_EQ_INT(t, a.scale[1], 0);
  T_EQ_INT(t, a.scale[2], 3);
  /* one ms more: the raise of block 1 (gain 2 per ms) beats that of block 0 (1 per ms) */
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 0, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &g, p0 + 1, &a), 1);
  T_EQ_INT(t, a.scale[0], 0);
  T_EQ_INT(t, a.scale[1], 1);
  T_EQ_INT(t, a.scale[2], 3);
  /* hopeless: everything down, block 2 too although lowering it saves nothing */
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 3, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &g, p0 - 0.5, &a), 0);
  for (int l = 0; l < 3; l++) T_EQ_INT(t, a.scale[l], 0);
  /* over the target by one step: the lowering of block 0 (gain 1 per ms) goes before block 1's (2 per ms) */
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 3, &a);
  const double ptop = hsc_latency_predict(&lm, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &g, ptop - 1, &a), 1);
  T_EQ_INT(t, a.scale[0], 2);
  T_EQ_INT(t, a.scale[1], 3);
  T_EQ_INT(t, a.scale[2], 3);

  /* equal ratios at blocks 0 and 1 (block 2 gains nothing): the lowest block moves first, both ways */
  hsc_dcs_gain tie = zero;
  for (int l = 0; l < 2; l++)
    for (int j = 0; j < 4; j++) tie.gain[l][j] = j;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 0, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &tie, p0 + 1, &a), 1);
  T_EQ_INT(t, a.scale[0], 1);
  T_EQ_INT(t, a.scale[1], 0);
  T_EQ_INT(t, a.scale[2], 0);
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE3, 3, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &tie, ptop - 1, &a), 1);
  T_EQ_INT(t, a.scale[0], 2);
  T_EQ_INT(t, a.scale[1], 3);
  T_EQ_INT(t, a.scale[2], 3);
}

/* Unequal costs: the order is by gain per ms, not by gain. Steps cost 2, 1 and 4 ms and gain 3, 2 and 5
 * at blocks 0, 1 and 2 (1.5, 2 and 1.25 per ms). */
static void t_dcs_ratio(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 3, "[0.5,1.0,1.5,2.0]", ALL_OPS)) return;
  hsc_latency_model lm;
  empty_model(&s, &lm, 1.0, 0.0);
  const double cost[3] = {2, 1, 4}, gain[3] = {3, 2, 5};
  hsc_dcs_gain g;
  memset(&g, 0, sizeof g);
  g.nblocks = 3, g.nscales = 4;
  for (int l = 0; l < 3; l++)
    for (int j = 0; j < 4; j++) {
      g.gain[l][j] = gain[l] * j;
      for (int o = 0; o < HSC_OP_COUNT; o++) lm.lut[l][o][j].median = 1 + cost[l] * j;
    }
  hsc_space_mask full;
  hsc_space_mask_full(&s, &full);
  /* from the bottom with 2 ms to spend: block 1 twice (by gain alone it would be block 0 once) */
  hsc_arch a;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE7, 0, &a);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &g, hsc_latency_predict(&lm, &a) + 2, &a), 1);
  T_EQ_INT(t, a.scale[0], 0);
  T_EQ_INT(t, a.scale[1], 2);
  T_EQ_INT(t, a.scale[2], 0);
  /* from the top (26 ms) to 22 ms: one step of block 2 (by gain lost alone: block 1 three times, block 0
   * once, then block 1 back up once) */
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE7, 3, &a);
  T_NEAR(t, hsc_latency_predict(&lm, &a), 26.0, 0);
  T_EQ_INT(t, hsc_dcs_apply(&s, &full, &lm, &g, 22.0, &a), 1);
  T_EQ_INT(t, a.scale[0], 3);
  T_EQ_INT(t, a.scale[1], 3);
  T_EQ_INT(t, a.scale[2], 2);
}

/* ---- shrinking ---- */

/* Two blocks, 4 ops, 2 scales; LUT: op o at scale j = 1 + o + 2 j (xception slowest), k = 1, b = 0. */
static int shrink_setup(hsc_test *t, hsc_space *s, hsc_latency_model *lm) {
  if (!small_space(t, s, 2, "[0.5,1.0]", ALL_OPS)) return 0;
  empty_model(s, lm, 1.0, 0.0);
  for (int l = 0; l < 2; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++)
      for (int j = 0; j < 2; j++) lm->lut[l][o][j].median = 1 + o + 2 * j;
  return 1;
}

static void t_shrink_worst(hsc_test *t) {
  hsc_space s;
  hsc_latency_model lm;
  if (!shrink_setup(t, &s, &lm)) return;
  hsc_space_mask m;
  hsc_space_mask_full(&s, &m);
  static hsc_arch all[64];
  const int n = enum_archs(&s, &m, all, 64);
  T_REQUIRE(t, n == 64);
  hsc_record rec[64];
  for (int i = 0; i < n; i++) {
    const hsc_arch *a = &all[i];
    const double top1 = 70 - 20 * (a->op[0] == HSC_OP_SHUFFLE7) + 4 * (a->scale[1] == 1) +
                        2 * (a->op[1] == HSC_OP_SHUFFLE3) - 1 * (a->scale[0] == 1);
    rec[i] = make_record(&s, &lm, a, i, top1);
  }
  hsc_shrink_report rep;
  hsc_shrink_step(&s, &lm, 0, rec, n, 1, 1, 0.0, &m, &rep);
  /* block 0: shuffle7 averages 70 - 20 + 2 + 0.5 - 0.5 = 52, the others 72 */
  for (int o = 0; o < HSC_OP_COUNT; o++) T_NEAR(t, rep.op_score[0][o], o == HSC_OP_SHUFFLE7 ? 52 : 72, 1e-12);
  T_NEAR(t, rep.scale_score[0][0], 67.5, 1e-12); /* 70 - 20/4 + 4/2 + 2/4 */
  T_NEAR(t, rep.scale_score[0][1], 66.5, 1e-12); /* the same - 1 */
  T_NEAR(t, rep.op_score[1][HSC_OP_SHUFFLE3], 68.5, 1e-12);
  T_NEAR(t, rep.op_score[1][HSC_OP_XCEPTION], 66.5, 1e-12);
  T_NEAR(t, rep.scale_score[1][0], 65.0, 1e-12);
  T_NEAR(t, rep.scale_score[1][1], 69.0, 1e-12);
  for (int o = 0; o < HSC_OP_COUNT; o++) {
    T_EQ_INT(t, m.op[0][o], o != HSC_OP_SHUFFLE7);
    T_EQ_INT(t, rep.op_removed[0][o], o == HSC_OP_SHUFFLE7);
    /* block 1: shuffle3 best, the rest tied: xception (the slowest at scale 1.0) goes */
    T_EQ_INT(t, m.op[1][o], o != HSC_OP_XCEPTION);
    T_EQ_INT(t, rep.op_removed[1][o], o == HSC_OP_XCEPTION);
  }
  T_EQ_INT(t, m.scale[0][0], 1);
  T_EQ_INT(t, m.scale[0][1], 0);
  T_EQ_INT(t, m.scale[1][0], 0);
  T_EQ_INT(t, m.scale[1][1], 1);
  T_EQ_INT(t, rep.scale_removed[1][0], 1);
  T_EQ_INT(t, rep.scale_removed[1][1], 0);
  for (int j = 2; j < HSC_MAX_SCALES; j++) T_CHECK(t, isnan(rep.scale_score[0][j]));

  /* the same without a report, and with nothing to drop */
  hsc_space_mask m2;
  hsc_space_mask_full(&s, &m2);
  hsc_shrink_step(&s, &lm, 0, rec, n, 1, 1, 0.0, &m2, NULL);
  T_CHECK(t, memcmp(&m, &m2, sizeof m) == 0);
  hsc_space_mask_full(&s, &m2);
  hsc_shrink_step(&s, &lm, 0, rec, n, 0, 0, 0.0, &m2, &rep);
  hsc_space_mask_full(&s, &m);
  T_CHECK(t, memcmp(&m, &m2, sizeof m) == 0);
}

static void t_shrink_keep_last(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 3, "[0.5,1.0,1.5,2.0]", ALL_OPS)) return;
  hsc_latency_model lm;
  empty_model(&s, &lm, 1.0, 0.0);
  for (int l = 0; l < 3; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++)
      for (int j = 0; j < 4; j++) lm.lut[l][o][j].median = 1 + o + j;
  hsc_space_mask m;
  hsc_space_mask_full(&s, &m);
  m.op[0][HSC_OP_SHUFFLE3] = m.op[0][HSC_OP_SHUFFLE5] = 0; /* block 0: shuffle7, xception */
  m.op[1][HSC_OP_SHUFFLE3] = m.op[1][HSC_OP_SHUFFLE5] = m.op[1][HSC_OP_XCEPTION] = 0; /* block 1: shuffle7 */
  static hsc_arch all[1024];
  const int n = enum_archs(&s, &m, all, 1024);
  T_REQUIRE(t, n == 2 * 4 * 1 * 4 * 4 * 4);
  static hsc_record rec[1024];
  int nrec = 0;
  for (int i = 0; i < n; i++) {
    const hsc_arch *a = &all[i];
    if (a->op[2] == HSC_OP_SHUFFLE5) continue; /* no sample uses shuffle5 at block 2 */
    /* block 0: xception and larger scales better; block 1: scales tied; block 2: shuffle3 worst */
    const double top1 =
        60 + 3 * (a->op[0] == HSC_OP_XCEPTION) + a->scale[0] - 5 * (a->op[2] == HSC_OP_SHUFFLE3);
    rec[nrec] = make_record(&s, &lm, a, nrec, top1);
    nrec++;
  }
  hsc_shrink_report rep;
  hsc_shrink_step(&s, &lm, 0, rec, nrec, 3, 15, 0.0, &m, &rep);
  /* block 0: shuffle7 removed, xception kept; scales 0-2 removed, 2.0 kept */
  T_EQ_INT(t, m.op[0][HSC_OP_SHUFFLE7], 0);
  T_EQ_INT(t, m.op[0][HSC_OP_XCEPTION], 1);
  for (int j = 0; j < 4; j++) T_EQ_INT(t, m.scale[0][j], j == 3);
  /* block 1: the only op stays; tied scales go larger first, so 0.5 stays */
  T_EQ_INT(t, m.op[1][HSC_OP_SHUFFLE7], 1);
  for (int o = 0; o < HSC_OP_COUNT; o++) T_EQ_INT(t, rep.op_removed[1][o], 0);
  for (int j = 0; j < 4; j++) T_EQ_INT(t, m.scale[1][j], j == 0);
  /* block 2: shuffle5 (unused: score -inf, reported NAN) and shuffle3 go, then the slower of the tied
   * shuffle7 / xception; shuffle7 stays */
  T_CHECK(t, isnan(rep.op_score[2][HSC_OP_SHUFFLE5]));
  T_CHECK(t, isfinite(rep.op_score[2][HSC_OP_SHUFFLE3]));
  for (int o = 0; o < HSC_OP_COUNT; o++) T_EQ_INT(t, m.op[2][o], o == HSC_OP_SHUFFLE7);
  int left_ops = 0, left_scales = 0;
  for (int l = 0; l < 3; l++) {
    for (int o = 0; o < HSC_OP_COUNT; o++) left_ops += m.op[l][o];
    for (int j = 0; j < 4; j++) left_scales += m.scale[l][j];
  }
  T_EQ_INT(t, left_ops, 3);
  T_EQ_INT(t, left_scales, 3);
  /* a second step on the shrunk mask removes nothing */
  hsc_space_mask before = m;
  hsc_shrink_step(&s, &lm, 0, rec, nrec, 3, 15, 0.0, &m, &rep);
  T_CHECK(t, memcmp(&before, &m, sizeof m) == 0);
}

static void t_shrink_target(hsc_test *t) {
  hsc_space s;
  hsc_latency_model lm;
  if (!shrink_setup(t, &s, &lm)) return;
  hsc_space_mask full;
  hsc_space_mask_full(&s, &full);
  static hsc_arch all[64];
  const int n = enum_archs(&s, &full, all, 64);
  hsc_record rec[64];
  for (int i = 0; i < n; i++) /* shuffle3, the fastest op, scores worst at both blocks */
    rec[i] =
        make_record(&s, &lm, &all[i], i,
                    70 - 10 * (all[i].op[0] == HSC_OP_SHUFFLE3) - 10 * (all[i].op[1] == HSC_OP_SHUFFLE3));
  /* fastest: stem 1 + 1 + 1 + head 1 = 4 ms; without shuffle3 at one block 5 ms, at both 6 ms */
  hsc_space_mask m = full;
  T_NEAR(t, hsc_mask_min_latency(&s, &m, &lm), 4.0, 0);
  const double targets[] = {0, 4.5, 5.5, 6.0};
  const int removed0[] = {1, 0, 1, 1}, removed1[] = {1, 0, 0, 1};
  for (int c = 0; c < 4; c++) {
    m = full;
    hsc_shrink_report rep;
    hsc_shrink_step(&s, &lm, targets[c], rec, n, 1, 0, 0.0, &m, &rep);
    T_EQ_INT(t, rep.op_removed[0][HSC_OP_SHUFFLE3], removed0[c]);
    T_EQ_INT(t, rep.op_removed[1][HSC_OP_SHUFFLE3], removed1[c]);
    int nremoved = 0;
    for (int l = 0; l < 2; l++)
      for (int o = 0; o < HSC_OP_COUNT; o++) nremoved += !m.op[l][o];
    T_EQ_INT(t, nremoved, removed0[c] + removed1[c]); /* a skipped removal is not replaced */
    if (targets[c] > 0) T_CHECK(t, hsc_mask_min_latency(&s, &m, &lm) <= targets[c]);
  }
}

/* Two architectures: op A (xception, LUT 5) scores 71, op B (shuffle3, LUT 1) 70; block 1 fixed (LUT 3),
 * stem = head = 1. Shares: A 5/10 = 50%, B 1/6 = 16.67%. */
static void t_shrink_latency_weight(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 2, "[0.5,1.0]", ALL_OPS)) return;
  hsc_latency_model lm;
  empty_model(&s, &lm, 1.0, 0.0);
  for (int l = 0; l < 2; l++)
    for (int o = 0; o < HSC_OP_COUNT; o++)
      for (int j = 0; j < 2; j++) lm.lut[l][o][j].median = 3.0;
  lm.lut[0][HSC_OP_XCEPTION][0].median = 5.0;
  lm.lut[0][HSC_OP_SHUFFLE3][0].median = 1.0;
  hsc_space_mask m0;
  hsc_space_mask_full(&s, &m0);
  for (int o = 0; o < HSC_OP_COUNT; o++) m0.op[0][o] = o == HSC_OP_XCEPTION || o == HSC_OP_SHUFFLE3;
  for (int o = 0; o < HSC_OP_COUNT; o++) m0.op[1][o] = o == HSC_OP_SHUFFLE5;
  m0.scale[0][1] = m0.scale[1][1] = 0;
  hsc_arch a, b;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE5, 0, &a);
  b = a;
  a.op[0] = HSC_OP_XCEPTION, b.op[0] = HSC_OP_SHUFFLE3;
  const hsc_record rec[] = {make_record(&s, &lm, &a, 0, 71), make_record(&s, &lm, &b, 1, 70),
                            make_record(&s, &lm, &a, 2, 71), make_record(&s, &lm, &b, 3, 70)};
  const double weights[] = {0.0, 0.1};
  for (int c = 0; c < 2; c++) {
    hsc_space_mask m = m0;
    hsc_shrink_report rep;
    hsc_shrink_step(&s, &lm, 0, rec, 4, 1, 1, weights[c], &m, &rep);
    T_NEAR(t, rep.op_score[0][HSC_OP_XCEPTION], 71 - weights[c] * 50.0, 1e-12);
    T_NEAR(t, rep.op_score[0][HSC_OP_SHUFFLE3], 70 - weights[c] * 100.0 / 6.0, 1e-12);
    T_NEAR(t, rep.scale_score[0][0], 70.5 - weights[c] * (50.0 + 100.0 / 6.0) / 2, 1e-12);
    T_NEAR(t, rep.op_score[1][HSC_OP_SHUFFLE5], 70.5 - weights[c] * (30.0 + 50.0) / 2, 1e-12);
    /* weight 0: shuffle3 (70) goes; weight 0.1: xception (66) below shuffle3 (68.33) goes */
    T_EQ_INT(t, m.op[0][HSC_OP_SHUFFLE3], c == 1);
    T_EQ_INT(t, m.op[0][HSC_OP_XCEPTION], c == 0);
    /* the single choices left stay */
    T_EQ_INT(t, m.op[1][HSC_OP_SHUFFLE5], 1);
    T_EQ_INT(t, m.scale[0][0], 1);
    T_EQ_INT(t, m.scale[1][0], 1);
  }
}

static void t_min_latency_brute(hsc_test *t) {
  hsc_space s;
  if (!small_space(t, &s, 3, "[0.5,1.0,1.5]", ALL_OPS)) return;
  static hsc_arch all[2048];
  for (int trial = 0; trial < 40; trial++) {
    hsc_rng r;
    hsc_rng_init(&r, 8, HSC_RNG_TEST, (uint64_t)trial);
    hsc_latency_model lm;
    empty_model(&s, &lm, trial % 5 == 4 ? -0.5 : 0.2 + hsc_rng_uniform(&r), hsc_rng_uniform(&r));
    for (int l = 0; l < 3; l++)
      for (int o = 0; o < HSC_OP_COUNT; o++)
        for (int j = 0; j < 3; j++) lm.lut[l][o][j].median = 0.1 + 5 * hsc_rng_uniform(&r); /* not monotone */
    hsc_space_mask m;
    if (trial % 2)
      random_mask(&s, &r, &m);
    else
      hsc_space_mask_full(&s, &m);
    const int n = enum_archs(&s, &m, all, 2048);
    T_REQUIRE(t, n <= 2048);
    double best = INFINITY;
    for (int i = 0; i < n; i++) best = fmin(best, hsc_latency_predict(&lm, &all[i]));
    const double got = hsc_mask_min_latency(&s, &m, &lm);
    if (got != best) T_FAIL(t, "trial %d: min latency %.17g, brute force %.17g", trial, got, best);
  }
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"kind_names", t_kind_names},
      {"mutate_identity", t_mutate_identity},
      {"mutate_full", t_mutate_full},
      {"mutate_replay", t_mutate_replay},
      {"crossover", t_crossover},
      {"dominates_hand", t_dominates_hand},
      {"pareto_brute", t_pareto_brute},
      {"topk_single", t_topk_single},
      {"topk_pareto", t_topk_pareto},
      {"dcs_estimate", t_dcs_estimate},
      {"dcs_optimal", t_dcs_optimal},
      {"dcs_brute", t_dcs_brute},
      {"dcs_mask_and_free", t_dcs_mask_and_free},
      {"dcs_ratio", t_dcs_ratio},
      {"shrink_worst", t_shrink_worst},
      {"shrink_keep_last", t_shrink_keep_last},
      {"shrink_target", t_shrink_target},
      {"shrink_latency_weight", t_shrink_latency_weight},
      {"min_latency_brute", t_min_latency_brute},
  };
  return hsc_test_main("test_search", argc, argv, cases, (int)ARRAY_LEN(cases));
}
