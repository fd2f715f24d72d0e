/* Sample index lists: the whole dataset, and the fixed train/validation split of the training set. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

void hsc_subset_all(int n, hsc_subset *all) {
  assert(n >= 0);
  all->n = n;
  all->index = hsc_xmalloc((size_t)n * sizeof(int32_t));
  for (int i = 0; i < n; i++) all->index[i] = i;
}

/* The first n_val entries of the permutation (seed split_seed, HSC_RNG_SPLIT, 0) go to val. A mark per
 * sample instead of sorting keeps both lists in increasing order in O(n). */
void hsc_subset_split(int n, int n_val, uint64_t split_seed, hsc_subset *train, hsc_subset *val) {
  assert(n >= 0 && n_val >= 0 && n_val <= n);
  int32_t *perm = hsc_xmalloc((size_t)n * sizeof(int32_t));
  hsc_rng_permute(perm, n, split_seed, HSC_RNG_SPLIT, 0);
  unsigned char *in_val = hsc_xcalloc((size_t)n, 1);
  for (int k = 0; k < n_val; k++) in_val[perm[k]] = 1;
  free(perm);
  train->n = n - n_val;
  train->index = hsc_xmalloc((size_t)train->n * sizeof(int32_t));
  val->n = n_val;
  val->index = hsc_xmalloc((size_t)n_val * sizeof(int32_t));
  int nt = 0, nv = 0;
  for (int i = 0; i < n; i++) {
    if (in_val[i])
      val->index[nv++] = i;
    else
      train->index[nt++] = i;
  }
  assert(nt == train->n && nv == val->n);
  free(in_val);
}

void hsc_subset_free(hsc_subset *s) {
  if (!s) return;
  free(s->index);
  s->index = NULL;
  s->n = 0;
}
