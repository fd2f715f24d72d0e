/* Architectures of a space: sampling, the text and YAML forms, hash, equality and validity. */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/hash.h"
#include "hsconas/space.h"

/* Index of op in s->ops, or -1. */
static int space_op_index(const hsc_space *s, int op) {
  for (int i = 0; i < s->nops; i++)
    if ((int)s->ops[i] == op) return i;
  return -1;
}

void hsc_arch_sample(const hsc_space *s, const hsc_space_mask *m, hsc_rng *r, hsc_arch *a) {
  memset(a, 0, sizeof *a);
  a->nblocks = s->nblocks;
  for (int l = 0; l < s->nblocks; l++) {
    hsc_op ops[HSC_OP_COUNT];
    int nops = 0, scales[HSC_MAX_SCALES], nscales = 0;
    for (int i = 0; i < s->nops; i++)
      if (!m || m->op[l][s->ops[i]]) ops[nops++] = s->ops[i];
    for (int j = 0; j < s->nscales; j++)
      if (!m || m->scale[l][j]) scales[nscales++] = j;
    assert(nops > 0 && nscales > 0); /* shrinking never removes the last choice of a block */
    a->op[l] = (uint8_t)ops[hsc_rng_below(r, (uint32_t)nops)];
    a->scale[l] = (uint8_t)scales[hsc_rng_below(r, (uint32_t)nscales)];
  }
}

void hsc_arch_uniform(const hsc_space *s, hsc_op op, int scale_index, hsc_arch *a) {
  assert(space_op_index(s, (int)op) >= 0 && scale_index >= 0 && scale_index < s->nscales);
  memset(a, 0, sizeof *a);
  a->nblocks = s->nblocks;
  for (int l = 0; l < s->nblocks; l++) {
    a->op[l] = (uint8_t)op;
    a->scale[l] = (uint8_t)scale_index;
  }
}

/* "%.1f" when it reads back as v, else the shortest "%.Ng" that does. */
static void scale_text(double v, char *buf, size_t len) {
  snprintf(buf, len, "%.1f", v);
  if (strtod(buf, NULL) == v) return;
  for (int p = 1; p <= 17; p++) {
    snprintf(buf, len, "%.*g", p, v);
    if (strtod(buf, NULL) == v) return;
  }
}

int hsc_arch_format(const hsc_space *s, const hsc_arch *a, char *buf, size_t len) {
  size_t total = 0;
  if (len) buf[0] = '\0';
  for (int l = 0; l < a->nblocks; l++) {
    assert(a->op[l] < HSC_OP_COUNT && a->scale[l] < s->nscales);
    char scale[32];
    scale_text(s->scales[a->scale[l]], scale, sizeof scale);
    size_t room = total < len ? len - total : 0;
    int n = snprintf(room ? buf + total : NULL, room, "%s%s:%s", l ? "," : "", hsc_op_name((hsc_op)a->op[l]),
                     scale);
    assert(n >= 0);
    total += (size_t)n;
  }
  return (int)total;
}

/* --- parsing --- */

static char *trim(char *p) {
  while (*p && isspace((unsigned char)*p)) p++;
  char *e = p + strlen(p);
  while (e > p && isspace((unsigned char)e[-1])) *--e = '\0';
  return p;
}

/* "shuffle3, shuffle5, shuffle7, xception" (all known operators, or those of the space). */
static void list_ops(const hsc_space *s, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  int n = s ? s->nops : HSC_OP_COUNT;
  for (int i = 0; i < n && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                             hsc_op_name(s ? s->ops[i] : (hsc_op)i));
}

static void list_scales(const hsc_space *s, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int j = 0; j < s->nscales && used < len; j++) {
    char v[32];
    scale_text(s->scales[j], v, sizeof v);
    used += (size_t)snprintf(buf + used, len - used, "%s%s", j ? ", " : "", v);
  }
}

/* One gene "OP:SCALE" (already trimmed) into a->op[l], a->scale[l]. */
static hsc_status parse_gene(const hsc_space *s, int l, char *gene, hsc_arch *a, hsc_error *err) {
  char text[96];
  snprintf(text, sizeof text, "%.80s%s", gene, strlen(gene) > 80 ? "..." : "");
  char *colon = strchr(gene, ':');
  if (!colon)
    return hsc_error_set(err, HSC_ERR_INPUT, "gene %d '%s': expected OPERATOR:SCALE (e.g. shuffle3:1.0)", l,
                         text);
  *colon = '\0';
  char *name = trim(gene), *value = trim(colon + 1);
  int op = -1;
  for (int o = 0; o < HSC_OP_COUNT; o++)
    if (!strcmp(name, hsc_op_name((hsc_op)o))) op = o;
  char list[256];
  if (op < 0) {
    list_ops(NULL, list, sizeof list);
    return hsc_error_set(err, HSC_ERR_INPUT, "gene %d '%s': unknown operator '%.40s' (expected %s)", l, text,
                         name, list);
  }
  if (space_op_index(s, op) < 0) {
    list_ops(s, list, sizeof list);
    return hsc_error_set(err, HSC_ERR_INPUT, "gene %d '%s': operator '%s' is not in space.ops (%s)", l, text,
                         name, list);
  }
  char *end;
  double v = strtod(value, &end);
  if (!*value || *end || !isfinite(v))
    return hsc_error_set(err, HSC_ERR_INPUT, "gene %d '%s': scale '%.40s' is not a number", l, text, value);
  /* Decimal text against the list's doubles: equal up to rounding ("1" and "1.00" name 1.0). */
  int scale = -1;
  for (int j = 0; j < s->nscales; j++)
    if (fabs(v - s->scales[j]) <= 1e-9 * fmax(1.0, fabs(s->scales[j]))) scale = j;
  if (scale < 0) {
    list_scales(s, list, sizeof list);
    return hsc_error_set(err, HSC_ERR_INPUT, "gene %d: scale %.40s is not in space.scales (%s)", l, value,
                         list);
  }
  a->op[l] = (uint8_t)op;
  a->scale[l] = (uint8_t)scale;
  return HSC_OK;
}

/* Accepted forms, after "# ..." comments are dropped:
 *   shuffle3:1.0,xception:0.6,...        (spaces and line breaks around the commas are fine)
 *   [shuffle3:1.0, xception:0.6, ...]    (YAML flow sequence)
 *   - shuffle3:1.0 (one per line)        (YAML block sequence)
 * each optionally after an "arch:" key (what hsc_arch_write_yaml writes), genes optionally quoted. */
hsc_status hsc_arch_parse(const hsc_space *s, const char *text, hsc_arch *a, hsc_error *err) {
  hsc_status st = HSC_OK;
  size_t len = strlen(text);
  char *buf = hsc_xmalloc(len + 1);
  memcpy(buf, text, len + 1);
  for (char *c = strchr(buf, '#'); c; c = strchr(c, '#')) /* comments to the end of the line */
    while (*c && *c != '\n') *c++ = ' ';
  char *p = trim(buf);
  if (!strncmp(p, "arch:", 5)) p = trim(p + 5);
  if (*p == '[') {
    size_t n = strlen(p);
    if (p[n - 1] != ']') {
      st = hsc_error_set(err, HSC_ERR_INPUT, "architecture: '[' without a closing ']'");
      goto done;
    }
    p[n - 1] = '\0';
    p++;
  }
  hsc_arch parsed;
  memset(&parsed, 0, sizeof parsed);
  int ngenes = 0;
  char *genes[HSC_MAX_BLOCKS];
  while (p) {
    char *sep = strpbrk(p, ",\n");
    if (sep) *sep = '\0';
    char *g = trim(p);
    p = sep ? sep + 1 : NULL;
    if (g[0] == '-' && (g[1] == '\0' || isspace((unsigned char)g[1]))) g = trim(g + 1);
    size_t n = strlen(g);
    if (n >= 2 && (g[0] == '\'' || g[0] == '"') && g[n - 1] == g[0]) {
      g[n - 1] = '\0';
      g = trim(g + 1);
    }
    if (!*g) continue; /* a blank line, or a trailing comma */
    if (ngenes < HSC_MAX_BLOCKS) genes[ngenes] = g;
    ngenes++;
  }
  if (ngenes != s->nblocks) {
    st = hsc_error_set(err, HSC_ERR_INPUT, "architecture has %d genes, the space has %d blocks", ngenes,
                       s->nblocks);
    goto done;
  }
  parsed.nblocks = ngenes;
  for (int l = 0; l < ngenes; l++)
    if ((st = parse_gene(s, l, genes[l], &parsed, err)) != HSC_OK) goto done;
  *a = parsed;
done:
  free(buf);
  return st;
}

void hsc_arch_write_yaml(const hsc_space *s, const hsc_arch *a, FILE *out) {
  fprintf(out, "# hash: %016" PRIx64 "\n", hsc_arch_hash(s, a));
  fprintf(out, "# flops: %" PRId64 " (multiply-accumulates of one image)\n", hsc_arch_flops(s, a));
  fprintf(out, "# params: %" PRId64 "\n", hsc_arch_params(s, a));
  fprintf(out, "arch:\n");
  for (int l = 0; l < a->nblocks; l++) {
    char scale[32];
    scale_text(s->scales[a->scale[l]], scale, sizeof scale);
    fprintf(out, "  - %s:%s\n", hsc_op_name((hsc_op)a->op[l]), scale);
  }
}

uint64_t hsc_arch_hash(const hsc_space *s, const hsc_arch *a) {
  uint64_t h = HSC_FNV1A_BASIS;
  for (int l = 0; l < a->nblocks; l++) {
    assert(a->scale[l] < s->nscales);
    h = hsc_fnv1a_u64(h, a->op[l]);
    h = hsc_fnv1a_double(h, s->scales[a->scale[l]]);
  }
  return h;
}

int hsc_arch_equal(const hsc_arch *a, const hsc_arch *b) {
  if (a->nblocks != b->nblocks) return 0;
  for (int l = 0; l < a->nblocks; l++)
    if (a->op[l] != b->op[l] || a->scale[l] != b->scale[l]) return 0;
  return 1;
}

int hsc_arch_valid(const hsc_space *s, const hsc_space_mask *m, const hsc_arch *a) {
  if (a->nblocks != s->nblocks) return 0;
  for (int l = 0; l < a->nblocks; l++) {
    if (a->op[l] >= HSC_OP_COUNT || space_op_index(s, a->op[l]) < 0) return 0;
    if (a->scale[l] >= s->nscales) return 0;
    if (m && (!m->op[l][a->op[l]] || !m->scale[l][a->scale[l]])) return 0;
  }
  return 1;
}
