/* The parameter table: (name, shape, offset) entries over one flat buffer (STYLE.md §5). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

int hsc_param_find(const hsc_param_table *t, const char *name) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->v[i].name, name)) return i;
  return -1;
}

int hsc_table_add(hsc_param_table *t, float decay, int ndim, const int64_t *dims, const char *fmt, ...) {
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    hsc_param *v = realloc(t->v, (size_t)cap * sizeof *v);
    if (!v) hsc_fatal("out of memory growing the parameter table to %d entries", cap);
    t->v = v;
    t->cap = cap;
  }
  hsc_param *p = &t->v[t->n];
  memset(p, 0, sizeof *p);
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(p->name, sizeof p->name, fmt, ap);
  va_end(ap);
  if (len < 0 || (size_t)len >= sizeof p->name) hsc_fatal("parameter name too long (%d characters)", len);
  p->ndim = ndim;
  p->count = 1;
  for (int i = 0; i < ndim; i++) {
    p->dims[i] = dims[i];
    p->count *= (size_t)dims[i];
  }
  /* Each entry starts on a 64-byte boundary so that every slice a kernel walks is aligned. */
  p->offset = (t->total + 15) & ~(size_t)15;
  p->decay = decay;
  t->total = p->offset + p->count;
  return t->n++;
}

void hsc_table_free(hsc_param_table *t) {
  free(t->v);
  memset(t, 0, sizeof *t);
}
