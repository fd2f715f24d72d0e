/* Internals shared by the files of src/nn/. */
#ifndef HSCONAS_NN_INTERNAL_H
#define HSCONAS_NN_INTERNAL_H

#include "hsconas/supernet.h"

/* Appends an entry (64-byte aligned offset) and returns its index. */
int hsc_table_add(hsc_param_table *t, float decay, int ndim, const int64_t *dims, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void hsc_table_free(hsc_param_table *t);

#endif
