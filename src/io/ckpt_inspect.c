/* `hsconas inspect`: a verified checkpoint's /meta attributes and datasets, one line each, sorted by name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_internal.h"
#include "hsconas/checkpoint.h"

/* Strings longer than this, or with several lines (the config text), are shown shortened. */
#define SHOWN_CHARS 100
#define STR_BUF (1 << 20)

static void print_str(FILE *out, const char *s) {
  size_t n = strlen(s), lines = 1, shown = 0;
  for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
  fputc('"', out);
  for (size_t i = 0; i < n && shown < SHOWN_CHARS; i++, shown++) {
    if (s[i] == '\n')
      fputs("\\n", out);
    else if (s[i] == '"' || s[i] == '\\')
      fprintf(out, "\\%c", s[i]);
    else
      fputc(s[i], out);
  }
  fputc('"', out);
  if (shown < n) fprintf(out, " ... (%zu%s bytes, %zu lines)", n, n + 1 >= STR_BUF ? "+" : "", lines);
  fputc('\n', out);
}

static hsc_status print_meta(hsc_ckpt *ck, FILE *out, hsc_error *err) {
  size_t width = 0;
  for (size_t i = 0; i < ckpt_meta_count(ck); i++) {
    size_t w = strlen(ckpt_meta_at(ck, i)->key);
    if (w > width) width = w;
  }
  char *buf = hsc_xmalloc(STR_BUF);
  hsc_status rc = HSC_OK;
  fprintf(out, "meta:\n");
  for (size_t i = 0; rc == HSC_OK && i < ckpt_meta_count(ck); i++) {
    const ckpt_meta *m = ckpt_meta_at(ck, i);
    fprintf(out, "  %-*s = ", (int)width, m->key);
    int64_t iv;
    double dv;
    switch (m->kind) {
      case CKPT_META_INT:
        if ((rc = hsc_ckpt_get_int(ck, m->key, &iv, err)) == HSC_OK) {
          /* 64-bit hashes are stored as int64; show them as the 16 hex digits the logs use. */
          const size_t kl = strlen(m->key);
          if (kl >= 5 && !strcmp(m->key + kl - 5, "_hash"))
            fprintf(out, "%016llx\n", (unsigned long long)iv);
          else
            fprintf(out, "%lld\n", (long long)iv);
        }
        break;
      case CKPT_META_DOUBLE:
        if ((rc = hsc_ckpt_get_double(ck, m->key, &dv, err)) == HSC_OK) fprintf(out, "%.17g\n", dv);
        break;
      case CKPT_META_STR:
        if ((rc = hsc_ckpt_get_str(ck, m->key, buf, STR_BUF, err)) == HSC_OK) print_str(out, buf);
        break;
      default:
        fprintf(out, "(not an integer, number or string)\n");
        break;
    }
  }
  free(buf);
  return rc;
}

static void shape_str(const ckpt_dset *d, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < d->ndim && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "", (long long)d->dims[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

/* Summary statistics: float data min / max / mean / L2 norm over the finite values (and how many are not
 * finite); integer data min / max. Sums in double. */
static void print_stats(FILE *out, const ckpt_dset *d, const void *data) {
  if (d->count == 0) {
    fprintf(out, "  empty\n");
    return;
  }
  if (d->type == CKPT_F32 || d->type == CKPT_F64) {
    double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
    size_t bad = 0;
    for (size_t i = 0; i < d->count; i++) {
      double v = d->type == CKPT_F32 ? ((const float *)data)[i] : ((const double *)data)[i];
      if (!isfinite(v)) {
        bad++;
        continue;
      }
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      sum += v;
      sq += v * v;
    }
    size_t good = d->count - bad;
    if (good > 0)
      fprintf(out, "  min %.6g  max %.6g  mean %.6g  l2 %.6g", lo, hi, sum / (double)good, sqrt(sq));
    if (bad > 0) fprintf(out, "  non-finite %zu", bad);
    fputc('\n', out);
    return;
  }
  long long lo = 0, hi = 0;
  for (size_t i = 0; i < d->count; i++) {
    long long v = d->type == CKPT_I64 ? ((const int64_t *)data)[i] : ((const uint8_t *)data)[i];
    if (i == 0 || v < lo) lo = v;
    if (i == 0 || v > hi) hi = v;
  }
  fprintf(out, "  min %lld  max %lld\n", lo, hi);
}

static hsc_status print_datasets(hsc_ckpt *ck, FILE *out, hsc_error *err) {
  size_t n = ckpt_dset_count(ck), wname = 0, wshape = 0, bytes = 0;
  char shape[128];
  for (size_t i = 0; i < n; i++) {
    const ckpt_dset *d = ckpt_dset_at(ck, i);
    shape_str(d, shape, sizeof shape);
    if (strlen(d->name) > wname) wname = strlen(d->name);
    if (strlen(shape) > wshape) wshape = strlen(shape);
    if (d->count * ckpt_type_size(d->type) > bytes) bytes = d->count * ckpt_type_size(d->type);
  }
  void *buf = hsc_xmalloc(bytes);
  hsc_status rc = HSC_OK;
  fprintf(out, "datasets:\n");
  for (size_t i = 0; rc == HSC_OK && i < n; i++) {
    const ckpt_dset *d = ckpt_dset_at(ck, i);
    switch (d->type) {
      case CKPT_F32:
        rc = hsc_ckpt_read_f32(ck, d->name, d->count, buf, err);
        break;
      case CKPT_I64:
        rc = hsc_ckpt_read_i64(ck, d->name, d->count, buf, err);
        break;
      case CKPT_F64:
        rc = hsc_ckpt_read_f64(ck, d->name, d->count, buf, err);
        break;
      default:
        rc = hsc_ckpt_read_u8(ck, d->name, d->count, buf, err);
        break;
    }
    if (rc != HSC_OK) break;
    shape_str(d, shape, sizeof shape);
    fprintf(out, "  %-*s  %-7s  %-*s  crc ok", (int)wname, d->name, ckpt_type_name(d->type), (int)wshape,
            shape);
    print_stats(out, d, buf);
  }
  free(buf);
  return rc;
}

hsc_status hsc_ckpt_inspect(const char *path, FILE *out, hsc_error *err) {
  hsc_ckpt *ck = NULL;
  hsc_status rc = hsc_ckpt_open(&ck, path, err);
  if (rc != HSC_OK) return rc;
  size_t n = ckpt_dset_count(ck), bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += ckpt_dset_at(ck, i)->count * ckpt_type_size(ckpt_dset_at(ck, i)->type);
  char size[32];
  if (bytes < 100000)
    snprintf(size, sizeof size, "%zu bytes", bytes);
  else
    snprintf(size, sizeof size, "%.1f MB", (double)bytes / 1e6);
  fprintf(out, "%s: verified (complete, format %d, %zu datasets, %s of data, every checksum ok)\n", path,
          HSC_CKPT_FORMAT_VERSION, n, size);
  if ((rc = print_meta(ck, out, err)) == HSC_OK) rc = print_datasets(ck, out, err);
  hsc_ckpt_close(ck);
  return rc;
}
