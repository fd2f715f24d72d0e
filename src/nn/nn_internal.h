/* Internals shared by the files of src/nn/. */
#ifndef HSCONAS_NN_INTERNAL_H
#define HSCONAS_NN_INTERNAL_H

#include "hsconas/supernet.h"

/* Appends an entry (64-byte aligned offset) and returns its index. */
int hsc_table_add(hsc_param_table *t, float decay, int ndim, const int64_t *dims, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void hsc_table_free(hsc_param_table *t);

/* The parameter and state tables hsc_supernet_create builds for (s, fixed), without a backend or buffers:
 * for a rank that reads checkpoints but runs no network. Free each with hsc_table_free. */
void hsc_supernet_layout(const hsc_space *s, const hsc_arch *fixed, hsc_param_table *params,
                         hsc_param_table *state);

#endif
