/* Files and directories: mkdir -p, and a whole file read by one rank and broadcast to the others. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hsconas/config.h"
#include "hsconas/core.h"

/* Creates dir and its parents (mkdir -p). */
hsc_status hsc_make_dirs(const char *dir, hsc_error *err) {
  char path[HSC_CFG_PATH + 64];
  if (!dir[0]) return HSC_OK;
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: path too long", dir);
  for (char *p = path + 1;; p++) {
    const int end = *p == '\0';
    if (*p == '/' || end) {
      *p = '\0';
      if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return hsc_error_set(err, HSC_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
      if (end) break;
      *p = '/';
    }
  }
  return HSC_OK;
}

/* Reads the whole file into a malloc'd, NUL-terminated buffer of at most max bytes. */
static hsc_status read_whole(const char *path, const char *what, const char *hint, size_t max, char **out,
                             size_t *len, hsc_error *err) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    const int e = errno;
    return hsc_error_set(err, HSC_ERR_IO, "cannot open %s '%s': %s%s%s", what, path, strerror(e),
                         e == ENOENT && hint ? " " : "", e == ENOENT && hint ? hint : "");
  }
  size_t cap = 4096, n = 0;
  char *buf = hsc_xmalloc(cap);
  hsc_status st = HSC_OK;
  for (;;) {
    if (n + 1 >= cap) {
      if (cap >= max) {
        st = hsc_error_set(err, HSC_ERR_INPUT, "%s '%s' is larger than %zu MiB", what, path, max >> 20);
        goto fail;
      }
      cap *= 2;
      char *b = realloc(buf, cap);
      if (!b) hsc_fatal("out of memory reading '%s'", path);
      buf = b;
    }
    const size_t got = fread(buf + n, 1, cap - 1 - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    st = hsc_error_set(err, HSC_ERR_IO, "cannot read %s '%s': %s", what, path, strerror(errno));
    goto fail;
  }
  if (fclose(f) != 0) {
    f = NULL;
    st = hsc_error_set(err, HSC_ERR_IO, "cannot read %s '%s': %s", what, path, strerror(errno));
    goto fail;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return HSC_OK;
fail:
  if (f) fclose(f); /* already failing: its own status adds nothing */
  free(buf);
  return st;
}

hsc_status hsc_file_bcast(const char *path, const char *what, const char *hint, size_t max, MPI_Comm comm,
                          char **text, size_t *len, hsc_error *err) {
  int rank = 0;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  /* Rank 0 sends {status, length} and then either the file's bytes or its error message. */
  char *buf = NULL;
  size_t n = 0;
  long long head[2] = {HSC_OK, 0};
  if (rank == 0) {
    hsc_error local = {0};
    head[0] = read_whole(path, what, hint, max, &buf, &n, &local);
    if (head[0] != HSC_OK) {
      n = strlen(local.msg);
      buf = hsc_xmalloc(n + 1);
      memcpy(buf, local.msg, n + 1);
    }
    head[1] = (long long)n;
  }
  HSC_CHECK_MPI(MPI_Bcast(head, 2, MPI_LONG_LONG, 0, comm));
  n = (size_t)head[1];
  if (rank != 0) buf = hsc_xmalloc(n + 1);
  /* MPI counts are ints: files are capped far below 2 GiB by `max`. */
  if (n > 0) HSC_CHECK_MPI(MPI_Bcast(buf, (int)n, MPI_CHAR, 0, comm));
  buf[n] = '\0';
  if (head[0] != HSC_OK) {
    const hsc_status st = hsc_error_set(err, (hsc_status)head[0], "%s", buf);
    free(buf);
    *text = NULL;
    *len = 0;
    return st;
  }
  *text = buf;
  *len = n;
  return HSC_OK;
}
