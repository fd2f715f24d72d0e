/* What the search driver (search.c) shares with the report (report.c); not part of the API. */
#ifndef HSCONAS_SEARCH_INTERNAL_H
#define HSCONAS_SEARCH_INTERNAL_H

#include "hsconas/checkpoint.h"
#include "hsconas/search.h"

/* Reads the n rows of /search/history of a search checkpoint into a malloc'd array *rec (free() it),
 * checking every row's genes against the space and its hash. Errors name the file and the row. */
hsc_status search_read_history(hsc_ckpt *ck, const hsc_space *s, int n, hsc_record **rec, hsc_error *err);

#endif
