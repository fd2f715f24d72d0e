/* Directories: mkdir -p. */
#include <errno.h>
#include <stdio.h>
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
