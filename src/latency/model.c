/* The latency model: prediction, the YAML file (write, parse with libyaml's document loader, check against
 * a space) and its broadcast load. The format is in docs/formats.md. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "hsconas/latency.h"

enum { MODEL_FILE_MAX = 64 << 20 };

double hsc_latency_lut_sum(const hsc_latency_model *m, const hsc_arch *a) {
  double t = m->stem.median;
  for (int l = 0; l < a->nblocks; l++) t += m->lut[l][a->op[l]][a->scale[l]].median;
  return t + m->head.median;
}

double hsc_latency_predict(const hsc_latency_model *m, const hsc_arch *a) {
  return m->k * hsc_latency_lut_sum(m, a) + m->b;
}

void hsc_latency_model_path(const hsc_config *cfg, char *buf, size_t len) {
  if (cfg->latency.model[0])
    snprintf(buf, len, "%s", cfg->latency.model);
  else
    snprintf(buf, len, "%s/latency.yaml", cfg->run.dir);
}

/* ---- checks ---- */

static void describe_space(uint64_t hash, int nblocks, const hsc_op *ops, int nops, const double *scales,
                           int nscales, char *buf, size_t len) {
  int n = snprintf(buf, len, "hash 0x%016" PRIx64 ", %d blocks, ops", hash, nblocks);
  for (int i = 0; i < nops && n > 0 && (size_t)n < len; i++)
    n += snprintf(buf + n, len - (size_t)n, "%s%s", i ? "," : " ", hsc_op_name(ops[i]));
  for (int i = 0; i < nscales && n > 0 && (size_t)n < len; i++)
    n += snprintf(buf + n, len - (size_t)n, "%s%g", i ? "," : ", scales ", scales[i]);
}

hsc_status hsc_latency_check(const hsc_latency_model *m, const hsc_space *s, int batch, const char *backend,
                             const char *path, hsc_error *err) {
  if (m->space_hash != s->hash || m->nblocks != s->nblocks || m->nscales != s->nscales ||
      m->nops != s->nops) {
    char have[400], want[400];
    describe_space(m->space_hash, m->nblocks, m->ops, m->nops, m->scales, m->nscales, have, sizeof have);
    describe_space(s->hash, s->nblocks, s->ops, s->nops, s->scales, s->nscales, want, sizeof want);
    return hsc_error_set(
        err, HSC_ERR_INPUT,
        "%s: latency model built for another search space (%s) than this configuration's (%s): "
        "profile this space with `hsconas profile`",
        path, have, want);
  }
  if (m->batch != batch)
    return hsc_error_set(
        err, HSC_ERR_INPUT,
        "%s: latency model profiled at batch %d, but latency.batch is %d: profile again with "
        "this batch, or set latency.batch=%d",
        path, m->batch, batch, m->batch);
  if (backend && strcmp(m->backend, backend) != 0)
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "%s: latency model profiled on the '%s' backend, but dist.backend is '%s': profile "
                         "on this backend",
                         path, m->backend, backend);
  return HSC_OK;
}

/* ---- writing ---- */

/* The shortest of %.15g, %.16g, %.17g that reads back to v exactly. */
static void put_double(FILE *out, double v) {
  char buf[40];
  if (!isfinite(v)) {
    fputs(isnan(v) ? ".nan" : v > 0 ? ".inf" : "-.inf", out);
    return;
  }
  for (int p = 15; p <= 17; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, v);
    if (strtod(buf, NULL) == v) break;
  }
  fputs(buf, out);
}

/* A double-quoted YAML scalar. */
static void put_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      fprintf(out, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      fprintf(out, "\\x%02x", (unsigned char)*s);
    else
      fputc(*s, out);
  }
  fputc('"', out);
}

static void put_entry(FILE *out, const char *key, const hsc_lat_entry *e) {
  fprintf(out, "%s: {median: ", key);
  put_double(out, e->median);
  fputs(", iqr: ", out);
  put_double(out, e->iqr);
  fputs("}\n", out);
}

static void put_quality(FILE *out, const char *indent, const char *key, const hsc_lat_quality *q) {
  const struct {
    const char *name;
    double v;
  } f[] = {{"rmse_ms", q->rmse_ms},   {"mape", q->mape},          {"max_ape", q->max_ape},
           {"within_5", q->within5},  {"within_10", q->within10}, {"pearson", q->pearson},
           {"spearman", q->spearman}, {"kendall", q->kendall}};
  fprintf(out, "%s%s: {archs: %d", indent, key, q->n);
  for (size_t i = 0; i < ARRAY_LEN(f); i++) {
    fprintf(out, ", %s: ", f[i].name);
    put_double(out, f[i].v);
  }
  fputs("}\n", out);
}

void hsc_latency_write(const hsc_latency_model *m, FILE *out) {
  fprintf(out,
          "# hsconas latency model (docs/formats.md, docs/latency.md). Times in ms.\n"
          "# LAT(arch) = k * (stem + sum over blocks of lut[block][op].median[scale index] + head) + b\n");
  fprintf(out, "format: %d\nprogram: ", m->format);
  put_str(out, m->program);
  fputs("\ncreated: ", out);
  put_str(out, m->created);
  fprintf(out, "\ndevice:\n  backend: %s\n  description: ", m->backend);
  put_str(out, m->device);
  fputs("\n  host: ", out);
  put_str(out, m->host);
  fprintf(out, "\n  cores: %d\n  threads: %d\n  pinned: %s\n", m->cores, m->threads,
          m->pinned ? "true" : "false");
  fprintf(out, "batch: %d\ninput: [%d, %d, %d]\n", m->batch, m->in_c, m->in_h, m->in_w);
  fprintf(out, "space:\n  hash: \"0x%016" PRIx64 "\"\n  blocks: %d\n  ops: [", m->space_hash, m->nblocks);
  for (int i = 0; i < m->nops; i++) fprintf(out, "%s%s", i ? ", " : "", hsc_op_name(m->ops[i]));
  fputs("]\n  scales: [", out);
  for (int i = 0; i < m->nscales; i++) {
    if (i) fputs(", ", out);
    put_double(out, m->scales[i]);
  }
  fprintf(out, "]\nprotocol:\n  warmup: %d\n  repeats: %d\n  min_sample_ms: ", m->warmup, m->repeats);
  put_double(out, m->min_sample_ms);
  fprintf(out, "\n  sampling: %s\n  seed: %" PRId64 "\n", m->sampling, m->seed);
  put_entry(out, "stem", &m->stem);
  put_entry(out, "head", &m->head);
  fputs(
      "# one entry per block and operator; median and interquartile range at each scale of "
      "space.scales\nlut:\n",
      out);
  for (int l = 0; l < m->nblocks; l++)
    for (int i = 0; i < m->nops; i++) {
      const hsc_op op = m->ops[i];
      fprintf(out, "  - {block: %d, op: %s,\n     median: [", l, hsc_op_name(op));
      for (int s = 0; s < m->nscales; s++) {
        if (s) fputs(", ", out);
        put_double(out, m->lut[l][op][s].median);
      }
      fputs("],\n     iqr: [", out);
      for (int s = 0; s < m->nscales; s++) {
        if (s) fputs(", ", out);
        put_double(out, m->lut[l][op][s].iqr);
      }
      fputs("]}\n", out);
    }
  fputs("fit:\n  k: ", out);
  put_double(out, m->k);
  fputs("\n  b: ", out);
  put_double(out, m->b);
  fputs("\n", out);
  put_quality(out, "  ", "quality", &m->fit);
  fputs("# the model on architectures it was not fitted on: errors of the prediction, rank correlations\n",
        out);
  put_quality(out, "", "holdout", &m->holdout);
  fputs(
      "# the FLOPs proxy (latency = k * MACs + b, fitted on the same architectures) on the hold-out set\n"
      "flops_proxy:\n  k: ",
      out);
  put_double(out, m->flops_k);
  fputs("\n  b: ", out);
  put_double(out, m->flops_b);
  fputs("\n", out);
  put_quality(out, "  ", "holdout", &m->flops);
  fputs("complete: true\n", out);
}

hsc_status hsc_latency_save(const hsc_latency_model *m, const char *path, hsc_error *err) {
  char tmp[HSC_CFG_PATH + 32];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: path too long", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return hsc_error_set(err, HSC_ERR_IO, "cannot write latency model %s: %s", tmp, strerror(errno));
  hsc_latency_write(m, f);
  int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    return hsc_error_set(err, HSC_ERR_IO, "cannot write latency model %s: %s", path, strerror(e));
  }
  return HSC_OK;
}

/* ---- parsing ---- */

typedef struct {
  yaml_document_t doc;
  const char *name;
  hsc_error *err;
} doc_ctx;

static hsc_status node_fail(doc_ctx *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static hsc_status node_fail(doc_ctx *c, const yaml_node_t *n, const char *key, const char *fmt, ...) {
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (n)
    return hsc_error_set(c->err, HSC_ERR_INPUT, "%s:%zu:%zu: key '%s': %s", c->name, n->start_mark.line + 1,
                         n->start_mark.column + 1, key, what);
  return hsc_error_set(c->err, HSC_ERR_INPUT, "%s: key '%s': %s", c->name, key, what);
}

/* The value of key in mapping node map, or NULL. */
static yaml_node_t *map_get(doc_ctx *c, yaml_node_t *map, const char *key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(&c->doc, p->key);
    if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
      return yaml_document_get_node(&c->doc, p->value);
  }
  return NULL;
}

/* The scalar text of map[key] (path names it in messages); an error when missing or not a scalar. */
static hsc_status get_scalar(doc_ctx *c, yaml_node_t *map, const char *key, const char *path,
                             const char **out) {
  yaml_node_t *n = map_get(c, map, key);
  if (!n) return node_fail(c, map, path, "missing (the file is incomplete or not a latency model)");
  if (n->type != YAML_SCALAR_NODE) return node_fail(c, n, path, "expected a single value");
  *out = (const char *)n->data.scalar.value;
  return HSC_OK;
}

static hsc_status parse_double_text(doc_ctx *c, yaml_node_t *n, const char *path, const char *s, double *v) {
  if (!strcmp(s, ".nan")) return *v = NAN, HSC_OK;
  if (!strcmp(s, ".inf")) return *v = INFINITY, HSC_OK;
  if (!strcmp(s, "-.inf")) return *v = -INFINITY, HSC_OK;
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  if (end == s || *end || errno == ERANGE) return node_fail(c, n, path, "expected a number, got '%s'", s);
  return HSC_OK;
}

static hsc_status get_double(doc_ctx *c, yaml_node_t *map, const char *key, const char *path, double *v) {
  const char *s = NULL;
  hsc_status st = get_scalar(c, map, key, path, &s);
  if (st != HSC_OK) return st;
  return parse_double_text(c, map_get(c, map, key), path, s, v);
}

static hsc_status get_int(doc_ctx *c, yaml_node_t *map, const char *key, const char *path, long lo, long hi,
                          int *v) {
  const char *s = NULL;
  hsc_status st = get_scalar(c, map, key, path, &s);
  if (st != HSC_OK) return st;
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (end == s || *end || errno == ERANGE || x < lo || x > hi)
    return node_fail(c, map_get(c, map, key), path, "expected an integer in [%ld, %ld], got '%s'", lo, hi, s);
  *v = (int)x;
  return HSC_OK;
}

static hsc_status get_i64(doc_ctx *c, yaml_node_t *map, const char *key, const char *path, int64_t *v) {
  const char *s = NULL;
  hsc_status st = get_scalar(c, map, key, path, &s);
  if (st != HSC_OK) return st;
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end || errno == ERANGE || x < 0)
    return node_fail(c, map_get(c, map, key), path, "expected a non-negative integer, got '%s'", s);
  *v = (int64_t)x;
  return HSC_OK;
}

static hsc_status get_string(doc_ctx *c, yaml_node_t *map, const char *key, const char *path, char *buf,
                             size_t len) {
  const char *s = NULL;
  hsc_status st = get_scalar(c, map, key, path, &s);
  if (st != HSC_OK) return st;
  if (strlen(s) >= len)
    return node_fail(c, map_get(c, map, key), path, "longer than %zu characters", len - 1);
  snprintf(buf, len, "%s", s);
  return HSC_OK;
}

static hsc_status get_bool(doc_ctx *c, yaml_node_t *map, const char *key, const char *path, int *v) {
  const char *s = NULL;
  hsc_status st = get_scalar(c, map, key, path, &s);
  if (st != HSC_OK) return st;
  if (!strcmp(s, "true")) return *v = 1, HSC_OK;
  if (!strcmp(s, "false")) return *v = 0, HSC_OK;
  return node_fail(c, map_get(c, map, key), path, "expected true or false, got '%s'", s);
}

/* A mapping (or sequence) child that must exist. */
static hsc_status get_node(doc_ctx *c, yaml_node_t *map, const char *key, const char *path,
                           yaml_node_type_t type, yaml_node_t **out) {
  yaml_node_t *n = map_get(c, map, key);
  if (!n) return node_fail(c, map, path, "missing (the file is incomplete or not a latency model)");
  if (n->type != type)
    return node_fail(c, n, path, "expected a %s", type == YAML_MAPPING_NODE ? "mapping" : "list");
  *out = n;
  return HSC_OK;
}

/* A list of numbers of exactly `want` items (want < 0: any count up to cap; the count in *got). */
static hsc_status get_numbers(doc_ctx *c, yaml_node_t *map, const char *key, const char *path, double *v,
                              int want, int cap, int *got) {
  yaml_node_t *n = NULL;
  hsc_status st = get_node(c, map, key, path, YAML_SEQUENCE_NODE, &n);
  if (st != HSC_OK) return st;
  const int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
  if ((want >= 0 && count != want) || count > cap)
    return node_fail(c, n, path, "expected %d values, got %d", want >= 0 ? want : cap, count);
  for (int i = 0; i < count; i++) {
    yaml_node_t *it = yaml_document_get_node(&c->doc, n->data.sequence.items.start[i]);
    if (!it || it->type != YAML_SCALAR_NODE) return node_fail(c, it, path, "item %d is not a number", i);
    if ((st = parse_double_text(c, it, path, (const char *)it->data.scalar.value, &v[i])) != HSC_OK)
      return st;
  }
  if (got) *got = count;
  return HSC_OK;
}

static hsc_status get_entry(doc_ctx *c, yaml_node_t *map, const char *key, hsc_lat_entry *e) {
  yaml_node_t *n = NULL;
  char path[64];
  hsc_status st = get_node(c, map, key, key, YAML_MAPPING_NODE, &n);
  if (st != HSC_OK) return st;
  snprintf(path, sizeof path, "%s.median", key);
  if ((st = get_double(c, n, "median", path, &e->median)) != HSC_OK) return st;
  snprintf(path, sizeof path, "%s.iqr", key);
  return get_double(c, n, "iqr", path, &e->iqr);
}

static hsc_status get_quality(doc_ctx *c, yaml_node_t *map, const char *key, const char *path,
                              hsc_lat_quality *q) {
  yaml_node_t *n = NULL;
  hsc_status st = get_node(c, map, key, path, YAML_MAPPING_NODE, &n);
  if (st != HSC_OK) return st;
  char p[96];
  snprintf(p, sizeof p, "%s.archs", path);
  if ((st = get_int(c, n, "archs", p, 0, 100000000, &q->n)) != HSC_OK) return st;
  const struct {
    const char *name;
    double *v;
  } f[] = {{"rmse_ms", &q->rmse_ms},   {"mape", &q->mape},          {"max_ape", &q->max_ape},
           {"within_5", &q->within5},  {"within_10", &q->within10}, {"pearson", &q->pearson},
           {"spearman", &q->spearman}, {"kendall", &q->kendall}};
  for (size_t i = 0; i < ARRAY_LEN(f); i++) {
    snprintf(p, sizeof p, "%s.%s", path, f[i].name);
    if ((st = get_double(c, n, f[i].name, p, f[i].v)) != HSC_OK) return st;
  }
  return HSC_OK;
}

static hsc_status parse_op(doc_ctx *c, yaml_node_t *n, const char *path, const char *s, hsc_op *op) {
  for (int o = 0; o < HSC_OP_COUNT; o++)
    if (!strcmp(s, hsc_op_name((hsc_op)o))) return *op = (hsc_op)o, HSC_OK;
  return node_fail(c, n, path, "unknown operator '%s'", s);
}

static hsc_status parse_space(doc_ctx *c, yaml_node_t *root, hsc_latency_model *m) {
  yaml_node_t *sp = NULL, *ops = NULL;
  const char *hash = NULL;
  hsc_status st;
  if ((st = get_node(c, root, "space", "space", YAML_MAPPING_NODE, &sp)) != HSC_OK ||
      (st = get_scalar(c, sp, "hash", "space.hash", &hash)) != HSC_OK ||
      (st = get_int(c, sp, "blocks", "space.blocks", 1, HSC_MAX_BLOCKS, &m->nblocks)) != HSC_OK ||
      (st = get_node(c, sp, "ops", "space.ops", YAML_SEQUENCE_NODE, &ops)) != HSC_OK ||
      (st = get_numbers(c, sp, "scales", "space.scales", m->scales, -1, HSC_MAX_SCALES, &m->nscales)) !=
          HSC_OK)
    return st;
  char *end;
  errno = 0;
  m->space_hash = strtoull(hash, &end, 16);
  if (strncmp(hash, "0x", 2) != 0 || *end || errno == ERANGE)
    return node_fail(c, map_get(c, sp, "hash"), "space.hash", "expected a hexadecimal hash 0x..., got '%s'",
                     hash);
  m->nops = (int)(ops->data.sequence.items.top - ops->data.sequence.items.start);
  if (m->nops < 1 || m->nops > HSC_OP_COUNT)
    return node_fail(c, ops, "space.ops", "expected 1 to %d operators, got %d", HSC_OP_COUNT, m->nops);
  for (int i = 0; i < m->nops; i++) {
    yaml_node_t *it = yaml_document_get_node(&c->doc, ops->data.sequence.items.start[i]);
    if (!it || it->type != YAML_SCALAR_NODE) return node_fail(c, it, "space.ops", "item %d is not a name", i);
    if ((st = parse_op(c, it, "space.ops", (const char *)it->data.scalar.value, &m->ops[i])) != HSC_OK)
      return st;
  }
  if (m->nscales < 1) return node_fail(c, sp, "space.scales", "expected at least one scale");
  return HSC_OK;
}

/* The LUT: one entry per (block, op) of the declared space, each with one value per scale. */
static hsc_status parse_lut(doc_ctx *c, yaml_node_t *root, hsc_latency_model *m) {
  yaml_node_t *lut = NULL;
  hsc_status st = get_node(c, root, "lut", "lut", YAML_SEQUENCE_NODE, &lut);
  if (st != HSC_OK) return st;
  uint8_t have[HSC_MAX_BLOCKS][HSC_OP_COUNT] = {{0}};
  const int count = (int)(lut->data.sequence.items.top - lut->data.sequence.items.start);
  for (int i = 0; i < count; i++) {
    yaml_node_t *e = yaml_document_get_node(&c->doc, lut->data.sequence.items.start[i]);
    char path[64];
    snprintf(path, sizeof path, "lut[%d]", i);
    if (!e || e->type != YAML_MAPPING_NODE) return node_fail(c, e, path, "expected {block, op, median, iqr}");
    int l = 0;
    const char *opname = NULL;
    hsc_op op = HSC_OP_SHUFFLE3;
    if ((st = get_int(c, e, "block", path, 0, m->nblocks - 1, &l)) != HSC_OK ||
        (st = get_scalar(c, e, "op", path, &opname)) != HSC_OK ||
        (st = parse_op(c, map_get(c, e, "op"), path, opname, &op)) != HSC_OK)
      return st;
    int listed = 0;
    for (int j = 0; j < m->nops; j++) listed |= m->ops[j] == op;
    if (!listed) return node_fail(c, e, path, "operator %s is not in space.ops", opname);
    if (have[l][op]) return node_fail(c, e, path, "a second entry for block %d operator %s", l, opname);
    have[l][op] = 1;
    double med[HSC_MAX_SCALES], iqr[HSC_MAX_SCALES];
    if ((st = get_numbers(c, e, "median", path, med, m->nscales, HSC_MAX_SCALES, NULL)) != HSC_OK ||
        (st = get_numbers(c, e, "iqr", path, iqr, m->nscales, HSC_MAX_SCALES, NULL)) != HSC_OK)
      return st;
    for (int s = 0; s < m->nscales; s++) {
      if (!(med[s] >= 0) || !(iqr[s] >= 0))
        return node_fail(c, e, path, "latency %g (spread %g) at scale index %d is not a time", med[s], iqr[s],
                         s);
      m->lut[l][op][s] = (hsc_lat_entry){med[s], iqr[s]};
    }
  }
  for (int l = 0; l < m->nblocks; l++)
    for (int j = 0; j < m->nops; j++)
      if (!have[l][m->ops[j]])
        return node_fail(c, lut, "lut",
                         "no entry for block %d operator %s (the table needs one per block and "
                         "operator of the space): the file is incomplete; profile again",
                         l, hsc_op_name(m->ops[j]));
  return HSC_OK;
}

static hsc_status parse_doc(doc_ctx *c, hsc_latency_model *m) {
  yaml_node_t *root = yaml_document_get_root_node(&c->doc);
  if (!root || root->type != YAML_MAPPING_NODE)
    return hsc_error_set(c->err, HSC_ERR_INPUT, "%s: not a latency model (expected a YAML mapping)", c->name);
  yaml_node_t *dev = NULL, *proto = NULL, *fit = NULL, *fp = NULL;
  double input[3];
  hsc_status st;
  if ((st = get_int(c, root, "format", "format", 0, 1000000, &m->format)) != HSC_OK) return st;
  if (m->format != HSC_LATENCY_FORMAT)
    return node_fail(c, map_get(c, root, "format"), "format",
                     "format version %d, this hsconas reads version %d: profile again", m->format,
                     HSC_LATENCY_FORMAT);
  if ((st = get_string(c, root, "program", "program", m->program, sizeof m->program)) != HSC_OK ||
      (st = get_string(c, root, "created", "created", m->created, sizeof m->created)) != HSC_OK ||
      (st = get_node(c, root, "device", "device", YAML_MAPPING_NODE, &dev)) != HSC_OK ||
      (st = get_string(c, dev, "backend", "device.backend", m->backend, sizeof m->backend)) != HSC_OK ||
      (st = get_string(c, dev, "description", "device.description", m->device, sizeof m->device)) != HSC_OK ||
      (st = get_string(c, dev, "host", "device.host", m->host, sizeof m->host)) != HSC_OK ||
      (st = get_int(c, dev, "cores", "device.cores", 0, 1 << 20, &m->cores)) != HSC_OK ||
      (st = get_int(c, dev, "threads", "device.threads", 0, 1 << 20, &m->threads)) != HSC_OK ||
      (st = get_bool(c, dev, "pinned", "device.pinned", &m->pinned)) != HSC_OK ||
      (st = get_int(c, root, "batch", "batch", 1, 1 << 20, &m->batch)) != HSC_OK ||
      (st = get_numbers(c, root, "input", "input", input, 3, 3, NULL)) != HSC_OK ||
      (st = parse_space(c, root, m)) != HSC_OK ||
      (st = get_node(c, root, "protocol", "protocol", YAML_MAPPING_NODE, &proto)) != HSC_OK ||
      (st = get_int(c, proto, "warmup", "protocol.warmup", 0, 1 << 30, &m->warmup)) != HSC_OK ||
      (st = get_int(c, proto, "repeats", "protocol.repeats", 1, 1 << 30, &m->repeats)) != HSC_OK ||
      (st = get_double(c, proto, "min_sample_ms", "protocol.min_sample_ms", &m->min_sample_ms)) != HSC_OK ||
      (st = get_string(c, proto, "sampling", "protocol.sampling", m->sampling, sizeof m->sampling)) !=
          HSC_OK ||
      (st = get_i64(c, proto, "seed", "protocol.seed", &m->seed)) != HSC_OK ||
      (st = get_entry(c, root, "stem", &m->stem)) != HSC_OK ||
      (st = get_entry(c, root, "head", &m->head)) != HSC_OK || (st = parse_lut(c, root, m)) != HSC_OK ||
      (st = get_node(c, root, "fit", "fit", YAML_MAPPING_NODE, &fit)) != HSC_OK ||
      (st = get_double(c, fit, "k", "fit.k", &m->k)) != HSC_OK ||
      (st = get_double(c, fit, "b", "fit.b", &m->b)) != HSC_OK ||
      (st = get_quality(c, fit, "quality", "fit.quality", &m->fit)) != HSC_OK ||
      (st = get_quality(c, root, "holdout", "holdout", &m->holdout)) != HSC_OK ||
      (st = get_node(c, root, "flops_proxy", "flops_proxy", YAML_MAPPING_NODE, &fp)) != HSC_OK ||
      (st = get_double(c, fp, "k", "flops_proxy.k", &m->flops_k)) != HSC_OK ||
      (st = get_double(c, fp, "b", "flops_proxy.b", &m->flops_b)) != HSC_OK ||
      (st = get_quality(c, fp, "holdout", "flops_proxy.holdout", &m->flops)) != HSC_OK)
    return st;
  m->in_c = (int)input[0], m->in_h = (int)input[1], m->in_w = (int)input[2];
  int complete = 0;
  if ((st = get_bool(c, root, "complete", "complete", &complete)) != HSC_OK) return st;
  if (!complete) return node_fail(c, root, "complete", "the model is marked incomplete");
  if (!isfinite(m->k) || !isfinite(m->b))
    return node_fail(c, fit, "fit", "k = %g and b = %g must be finite", m->k, m->b);
  return HSC_OK;
}

hsc_status hsc_latency_parse(hsc_latency_model *m, const char *text, size_t len, const char *name,
                             hsc_error *err) {
  memset(m, 0, sizeof *m);
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) hsc_fatal("libyaml: cannot initialise a parser (out of memory)");
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  doc_ctx c = {.name = name, .err = err};
  hsc_status st = HSC_OK;
  if (!yaml_parser_load(&parser, &c.doc)) {
    st = hsc_error_set(err, HSC_ERR_INPUT, "%s:%zu:%zu: not valid YAML: %s%s%s (the file may be truncated)",
                       name, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                       parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                       parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    return st;
  }
  st = parse_doc(&c, m);
  yaml_document_delete(&c.doc);
  yaml_parser_delete(&parser);
  return st;
}

/* ---- loading ---- */

hsc_status hsc_latency_load(hsc_latency_model *m, const char *path, const hsc_space *s, int batch,
                            const char *backend, MPI_Comm comm, hsc_error *err) {
  char *buf = NULL;
  size_t len = 0;
  hsc_status st = hsc_file_bcast(path, "latency model", "(build one with `hsconas profile CONFIG`)",
                                 MODEL_FILE_MAX, comm, &buf, &len, err);
  if (st == HSC_OK) st = hsc_latency_parse(m, buf, len, path, err);
  if (st == HSC_OK && s) st = hsc_latency_check(m, s, batch, backend, path, err);
  free(buf);
  return st;
}
