/* Error values, fatal exits and checked allocation. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/core.h"

static const char *const status_names[] = {
    [HSC_OK] = "ok",
    [HSC_ERR_INPUT] = "bad input",
    [HSC_ERR_IO] = "i/o error",
    [HSC_ERR_UNSUPPORTED] = "unsupported",
    [HSC_ERR_DEVICE] = "device error",
    [HSC_ERR_STOPPED] = "stopped by a signal",
};
_Static_assert(ARRAY_LEN(status_names) == HSC_ERR_CODE_COUNT, "one name per hsc_status");

const char *hsc_status_name(hsc_status s) {
  if ((unsigned)s >= ARRAY_LEN(status_names)) return "unknown status";
  return status_names[s];
}

hsc_status hsc_error_set(hsc_error *err, hsc_status code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

_Noreturn void hsc_fatal_at(const char *file, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const hsc_proc_info *p = hsc_proc();
  fprintf(stderr, "hsconas: rank %d: %s:%d: fatal: %s\n", p->rank, file, line, msg);
  fflush(stderr);
  int init = 0, fin = 0;
  if (MPI_Initialized(&init) == MPI_SUCCESS && init && MPI_Finalized(&fin) == MPI_SUCCESS && !fin)
    MPI_Abort(MPI_COMM_WORLD, 1);
  abort();
}

void *hsc_xmalloc_at(const char *file, int line, size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) hsc_fatal_at(file, line, "out of memory allocating %zu bytes", bytes);
  return p;
}

void *hsc_xcalloc_at(const char *file, int line, size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) hsc_fatal_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

void *hsc_xaligned_at(const char *file, int line, size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (!p) hsc_fatal_at(file, line, "out of memory allocating %zu aligned bytes", bytes);
  return p;
}
