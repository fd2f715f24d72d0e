/* Evolution operators (DESIGN.md §1): mutation and uniform crossover of genes, Pareto dominance and the
 * non-dominated front, and parent selection. Pure functions of their inputs and the stream they are given.
 * The sorts are O(n^2) insertion sorts over index arrays: n is a search history (a few thousand records),
 * they are stable, and they need no context pointer (qsort has none in C11). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/search.h"

static const char *const kind_names[] = {"sample", "random", "mutation", "crossover"};
_Static_assert(ARRAY_LEN(kind_names) == HSC_CAND_KIND_COUNT, "one name per hsc_cand_kind");

const char *hsc_cand_kind_name(int kind) {
  if (kind < 0 || kind >= HSC_CAND_KIND_COUNT) return NULL;
  return kind_names[kind];
}

void hsc_evo_mutate(const hsc_space *s, const hsc_space_mask *m, const hsc_arch *parent, double prob,
                    hsc_rng *r, hsc_arch *child) {
  assert(parent->nblocks == s->nblocks);
  *child = *parent;
  for (int l = 0; l < s->nblocks; l++) {
    /* the allowed choices in the space's order, as hsc_arch_sample lists them */
    hsc_op ops[HSC_OP_COUNT];
    int nops = 0, scales[HSC_MAX_SCALES], nscales = 0;
    for (int i = 0; i < s->nops; i++)
      if (m->op[l][s->ops[i]]) ops[nops++] = s->ops[i];
    for (int j = 0; j < s->nscales; j++)
      if (m->scale[l][j]) scales[nscales++] = j;
    assert(nops > 0 && nscales > 0); /* shrinking never removes the last choice of a block */
    if ((double)hsc_rng_uniform(r) < prob) child->op[l] = (uint8_t)ops[hsc_rng_below(r, (uint32_t)nops)];
    if ((double)hsc_rng_uniform(r) < prob)
      child->scale[l] = (uint8_t)scales[hsc_rng_below(r, (uint32_t)nscales)];
  }
}

void hsc_evo_crossover(const hsc_arch *p1, const hsc_arch *p2, hsc_rng *r, hsc_arch *child) {
  assert(p1->nblocks == p2->nblocks);
  *child = *p1;
  for (int l = 0; l < p1->nblocks; l++) {
    const hsc_arch *from = hsc_rng_below(r, 2) == 0 ? p1 : p2;
    child->op[l] = from->op[l];
    child->scale[l] = from->scale[l];
  }
}

int hsc_dominates(const hsc_record *a, const hsc_record *b) {
  return a->top1 >= b->top1 && a->latency_ms <= b->latency_ms &&
         (a->top1 > b->top1 || a->latency_ms < b->latency_ms);
}

/* Orders of index arrays into rec: negative when rec[i] goes before rec[j]. The index itself breaks the
 * last tie, so every order is total. */
typedef int (*order_fn)(const hsc_record *rec, const int *rank, int i, int j);

static int cmp_int(int64_t a, int64_t b) { return (a > b) - (a < b); }
static int cmp_double(double a, double b) { return (a > b) - (a < b); }

/* latency ascending, id, index */
static int order_latency(const hsc_record *rec, const int *rank, int i, int j) {
  int c = cmp_double(rec[i].latency_ms, rec[j].latency_ms);
  if (!c) c = cmp_int(rec[i].id, rec[j].id);
  return c ? c : cmp_int(i, j);
}

/* front rank (when given), top1 descending, latency ascending, id, index */
static int order_fitness(const hsc_record *rec, const int *rank, int i, int j) {
  int c = rank ? cmp_int(rank[i], rank[j]) : 0;
  if (!c) c = cmp_double(rec[j].top1, rec[i].top1);
  if (!c) c = cmp_double(rec[i].latency_ms, rec[j].latency_ms);
  if (!c) c = cmp_int(rec[i].id, rec[j].id);
  return c ? c : cmp_int(i, j);
}

static void sort_indices(int *v, int n, const hsc_record *rec, const int *rank, order_fn order) {
  for (int i = 1; i < n; i++) {
    const int x = v[i];
    int j = i - 1;
    while (j >= 0 && order(rec, rank, v[j], x) > 0) {
      v[j + 1] = v[j];
      j--;
    }
    v[j + 1] = x;
  }
}

/* set [n] = the indices into rec that idx names (idx NULL: 0 .. n-1). Caller frees. */
static int *index_set(const int *idx, int n) {
  int *set = hsc_xmalloc(sizeof *set * (size_t)(n > 0 ? n : 1));
  for (int i = 0; i < n; i++) set[i] = idx ? idx[i] : i;
  return set;
}

int hsc_pareto_front(const hsc_record *rec, const int *idx, int n, int *out) {
  int nout = 0;
  for (int a = 0; a < n; a++) {
    const int i = idx ? idx[a] : a;
    int dominated = 0;
    for (int b = 0; b < n && !dominated; b++) dominated = hsc_dominates(&rec[idx ? idx[b] : b], &rec[i]);
    if (!dominated) out[nout++] = i;
  }
  sort_indices(out, nout, rec, NULL, order_latency);
  return nout;
}

int hsc_select_topk(const hsc_record *rec, const int *idx, int n, int k, int pareto, int *out) {
  if (k > n) k = n;
  if (k <= 0) return 0;
  int *set = index_set(idx, n);
  int *rank = NULL;
  if (pareto) {
    /* The front of a record (0: non-dominated) is the length of the longest chain of records dominating
     * it, which is what peeling fronts off one by one gives. Anything that dominates rec[i] comes before it
     * in the order (top1 descending, latency ascending), so one pass in that order sees every dominator's
     * final front first: O(n^2) time, O(n) memory. rank is indexed by record index. */
    int maxi = 0;
    for (int a = 0; a < n; a++)
      if (set[a] > maxi) maxi = set[a];
    rank = hsc_xcalloc((size_t)maxi + 1, sizeof *rank);
    sort_indices(set, n, rec, NULL, order_fitness);
    for (int a = 0; a < n; a++) {
      int r = 0;
      for (int b = 0; b < a; b++)
        if (rank[set[b]] + 1 > r && hsc_dominates(&rec[set[b]], &rec[set[a]])) r = rank[set[b]] + 1;
      rank[set[a]] = r;
    }
  }
  sort_indices(set, n, rec, rank, order_fitness);
  memcpy(out, set, sizeof *out * (size_t)k);
  free(rank);
  free(set);
  return k;
}
