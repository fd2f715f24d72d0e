/* A run directory's checkpoints: DIR/<phase>-<step, 10 digits>.h5, the newest usable one, pruning. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsconas/checkpoint.h"

void hsc_ckpt_name(const char *dir, const char *phase, int64_t step, char *buf, size_t len) {
  int n = snprintf(buf, len, "%s/%s-%010lld.h5", dir, phase, (long long)step);
  assert(n >= 0 && (size_t)n < len && "checkpoint name buffer too small");
  (void)n;
}

typedef struct {
  int64_t step;
  char *path;
} ckpt_entry;

/* Step of a directory entry named "<phase>-<10 or more digits>" followed by exactly `suffix`, or -1. */
static int64_t entry_step(const char *name, const char *phase, const char *suffix) {
  size_t np = strlen(phase);
  if (strncmp(name, phase, np) != 0 || name[np] != '-') return -1;
  const char *p = name + np + 1;
  size_t digits = strspn(p, "0123456789");
  if (digits < 10 || strcmp(p + digits, suffix) != 0) return -1;
  int64_t step = 0;
  for (size_t i = 0; i < digits; i++) {
    if (step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (p[i] - '0');
  }
  return step;
}

static int cmp_newest_first(const void *a, const void *b) {
  int64_t x = ((const ckpt_entry *)a)->step, y = ((const ckpt_entry *)b)->step;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void entries_free(ckpt_entry *e, size_t n) {
  for (size_t i = 0; i < n; i++) free(e[i].path);
  free(e);
}

/* The entries of dir named <phase>-<step><suffix>, newest first. A missing dir holds none. */
static hsc_status list_phase(const char *dir, const char *phase, const char *suffix, ckpt_entry **out,
                             size_t *count, hsc_error *err) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return HSC_OK;
    return hsc_error_set(err, HSC_ERR_IO, "%s: cannot list checkpoints: %s", dir, strerror(errno));
  }
  ckpt_entry *e = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) break;
    int64_t step = entry_step(de->d_name, phase, suffix);
    if (step < 0) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      ckpt_entry *p = realloc(e, cap * sizeof *p);
      if (!p) hsc_fatal("out of memory listing %s", dir);
      e = p;
    }
    size_t len = strlen(dir) + strlen(de->d_name) + 2;
    e[n].path = hsc_xmalloc(len);
    snprintf(e[n].path, len, "%s/%s", dir, de->d_name);
    e[n].step = step;
    n++;
  }
  int read_errno = errno;
  closedir(d);
  if (read_errno != 0) {
    entries_free(e, n);
    return hsc_error_set(err, HSC_ERR_IO, "%s: cannot list checkpoints: %s", dir, strerror(read_errno));
  }
  if (n > 1) qsort(e, n, sizeof *e, cmp_newest_first);
  *out = e;
  *count = n;
  return HSC_OK;
}

hsc_status hsc_ckpt_open_latest(const char *dir, const char *phase, hsc_ckpt **ck, hsc_error *err) {
  *ck = NULL;
  ckpt_entry *e;
  size_t n;
  hsc_status rc = list_phase(dir, phase, ".h5", &e, &n, err);
  if (rc != HSC_OK || n == 0) return rc;
  char why[sizeof err->msg] = "";
  size_t used = 0;
  rc = HSC_ERR_INPUT;
  for (size_t i = 0; i < n; i++) {
    hsc_error e1 = {0};
    if (hsc_ckpt_open(ck, e[i].path, &e1) == HSC_OK) {
      rc = HSC_OK;
      break;
    }
    /* e1.msg starts with the path. */
    hsc_log(HSC_LOG_WARN, "skipping checkpoint: %s", e1.msg);
    if (used < sizeof why) {
      int k = snprintf(why + used, sizeof why - used, "%s%s", used ? "; " : "", e1.msg);
      used += k > 0 ? (size_t)k : 0;
    }
  }
  if (rc != HSC_OK)
    hsc_error_set(err, rc, "%s: none of the %zu '%s' checkpoints is usable: %s", dir, n, phase, why);
  entries_free(e, n);
  return rc;
}

hsc_status hsc_ckpt_prune(const char *dir, const char *phase, int keep, hsc_error *err) {
  if (keep < 0) return hsc_error_set(err, HSC_ERR_INPUT, "checkpoint.keep is %d (expected >= 0)", keep);
  ckpt_entry *done = NULL, *tmp = NULL;
  size_t ndone = 0, ntmp = 0;
  hsc_status rc = list_phase(dir, phase, ".h5", &done, &ndone, err);
  if (rc == HSC_OK) rc = list_phase(dir, phase, ".h5.tmp", &tmp, &ntmp, err);
  /* Removal goes on after a failure, so one undeletable file does not keep the rest; the first failure is
   * reported. Temporary files are leftovers of writes that never committed (the writer commits before it
   * prunes). */
  int listed = rc == HSC_OK;
  for (size_t i = 0; listed && i < ndone + ntmp; i++) {
    if (i < ndone && i < (size_t)keep) continue;
    const char *p = i < ndone ? done[i].path : tmp[i - ndone].path;
    if (unlink(p) == 0)
      hsc_log(HSC_LOG_DEBUG, "removed %s", p);
    else if (errno != ENOENT && rc == HSC_OK)
      rc = hsc_error_set(err, HSC_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
  }
  entries_free(done, ndone);
  entries_free(tmp, ntmp);
  return rc;
}
