/* The only file that knows which backends this build has (STYLE.md §4). */
#include <string.h>

#include "hsconas/backend.h"

extern const hsc_backend hsc_backend_cpu;
#ifdef HSC_HAVE_CUDA
extern const hsc_backend hsc_backend_cuda;
#endif

static const hsc_backend *const backends[] = {
    &hsc_backend_cpu,
#ifdef HSC_HAVE_CUDA
    &hsc_backend_cuda,
#endif
};

#ifdef HSC_HAVE_CUDA
#define BACKEND_LIST "cpu,cuda"
#else
#define BACKEND_LIST "cpu"
#endif

const char *hsc_backend_list(void) { return BACKEND_LIST; }

const hsc_backend *hsc_backend_find(const char *name, hsc_error *err) {
  for (size_t i = 0; i < ARRAY_LEN(backends); i++)
    if (!strcmp(backends[i]->name, name)) return backends[i];
  if (!strcmp(name, "cuda"))
    hsc_error_set(err, HSC_ERR_UNSUPPORTED,
                  "backend 'cuda' is not in this build (rebuild with CUDA=1; needs nvcc, cuDNN and NCCL)");
  else
    hsc_error_set(err, HSC_ERR_INPUT, "unknown backend '%s' (this build has: %s)", name, BACKEND_LIST);
  return NULL;
}

size_t hsc_regions_count(const hsc_region *r, int nr) {
  size_t total = 0;
  for (int i = 0; i < nr; i++) total += (size_t)r[i].rows * (size_t)r[i].cols;
  return total;
}
