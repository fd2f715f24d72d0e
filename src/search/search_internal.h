/* What the search driver (search.c) shares with the report (report.c); not part of the API. */
#ifndef HSCONAS_SEARCH_INTERNAL_H
#define HSCONAS_SEARCH_INTERNAL_H

#include "hsconas/checkpoint.h"
#include "hsconas/search.h"

/* 1 when a history record is one of the evolution's candidates (the final stage, not a shrinking or DCS
 * calibration sample): the records the top-k, the front and the progress plot are taken from. */
static inline int search_is_evolution(const hsc_record *r, int nstages) {
  return r->stage == nstages && r->kind != HSC_CAND_SAMPLE;
}

/* Reads the n rows of /search/history of a search checkpoint into a malloc'd array *rec (free() it),
 * checking every row's genes against the space and its hash. Errors name the file and the row. */
hsc_status search_read_history(hsc_ckpt *ck, const hsc_space *s, int n, hsc_record **rec, hsc_error *err);

#endif
