/* The run configuration: YAML text into hsc_config through the schema table (config_schema.c).
 *
 * Parsing walks libyaml's event stream. Nested mappings flatten to dotted keys (`supernet: {lr: 0.1}` and
 * `supernet.lr: 0.1` name the same key), a mapping is only entered when its dotted prefix is a section of
 * the schema, and every value is converted by the type of its schema entry. Defaults and `--set` values
 * go through the same path: the text is parsed as a YAML document whose root is the value of one key. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "hsconas/config.h"
#include "hsconas/hash.h"

/* Longest dotted key we look up; longer ones are reported as unknown. */
#define KEY_MAX 256
/* A configuration file larger than this is certainly not one (and its length must fit an int for
 * MPI_Bcast). */
#define FILE_MAX (16u << 20)
/* Values shown in messages are cut to this many bytes. */
#define SHOW_MAX 60

/* ---- small helpers ---- */

typedef struct {
  char *s;
  size_t len, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) hsc_fatal("vsnprintf failed on format '%s'", fmt);
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap <= b->len + (size_t)n) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) hsc_fatal("out of memory growing a %zu-byte string", cap);
    b->s = s;
    b->cap = cap;
  }
}

static int is_list(hsc_cfg_type t) {
  return t == HSC_CFG_INT_LIST || t == HSC_CFG_FLOAT_LIST || t == HSC_CFG_ENUM_LIST;
}

/* The type of one item of a list (the type itself for scalars). */
static hsc_cfg_type item_type(hsc_cfg_type t) {
  switch (t) {
    case HSC_CFG_INT_LIST:
      return HSC_CFG_INT;
    case HSC_CFG_FLOAT_LIST:
      return HSC_CFG_FLOAT;
    case HSC_CFG_ENUM_LIST:
      return HSC_CFG_ENUM;
    default:
      return t;
  }
}

static size_t item_size(hsc_cfg_type t) {
  switch (t) {
    case HSC_CFG_INT_LIST:
      return sizeof(int);
    case HSC_CFG_FLOAT_LIST:
      return sizeof(double);
    case HSC_CFG_ENUM_LIST:
      return sizeof(hsc_cfg_name);
    default:
      return 0;
  }
}

/* The shortest "%.Ng" that reads back as exactly v, in fixed notation when %g would write an exponent
 * below 15 (100, not 1e+02); with `as_float`, ".0" is added to a bare integer so that it reads as a
 * number with a fraction. */
static void format_double(double v, char out[40], int as_float) {
  int prec = 1;
  for (; prec <= 17; prec++) {
    snprintf(out, 40, "%.*g", prec, v);
    if (strtod(out, NULL) == v) break;
  }
  const char *e = strchr(out, 'e');
  if (e && isfinite(v)) {
    int exp = atoi(e + 1);
    /* %g writes an exponent when exp >= prec; precision exp + 1 > prec keeps every digit. */
    if (exp >= 0 && exp < 15) snprintf(out, 40, "%.*g", exp + 1, v);
  }
  const char *digits = out + (out[0] == '-');
  if (as_float && digits[0] && strspn(digits, "0123456789") == strlen(digits)) strcat(out, ".0");
}

/* 'value' for messages, cut to SHOW_MAX bytes. */
static void show(const char *s, size_t len, char *out, size_t n) {
  if (len > SHOW_MAX)
    snprintf(out, n, "'%.*s...'", SHOW_MAX, s);
  else
    snprintf(out, n, "'%.*s'", (int)len, s);
}

/* " in [1, 65536]", " >= 0", "" for an integer range; the type's own limits count as no bound. */
static void int_range(const hsc_cfg_key *k, hsc_cfg_type t, char *out, size_t n) {
  int64_t tlo = t == HSC_CFG_INT64 ? INT64_MIN : INT_MIN, thi = t == HSC_CFG_INT64 ? INT64_MAX : INT_MAX;
  int lo = k->imin > tlo, hi = k->imax < thi;
  if (lo && hi)
    snprintf(out, n, " in [%" PRId64 ", %" PRId64 "]", k->imin, k->imax);
  else if (lo)
    snprintf(out, n, " >= %" PRId64, k->imin);
  else if (hi)
    snprintf(out, n, " <= %" PRId64, k->imax);
  else
    out[0] = '\0';
}

/* " in [0, 1)", " > 0", "" for a float range. */
static void float_range(const hsc_cfg_key *k, char *out, size_t n) {
  char lo[40], hi[40];
  format_double(k->fmin, lo, 0);
  format_double(k->fmax, hi, 0);
  int has_lo = isfinite(k->fmin), has_hi = isfinite(k->fmax);
  int lo_open = (k->open & HSC_CFG_LO_OPEN) != 0, hi_open = (k->open & HSC_CFG_HI_OPEN) != 0;
  if (has_lo && has_hi)
    snprintf(out, n, " in %c%s, %s%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
  else if (has_lo)
    snprintf(out, n, " %s %s", lo_open ? ">" : ">=", lo);
  else if (has_hi)
    snprintf(out, n, " %s %s", hi_open ? "<" : "<=", hi);
  else
    out[0] = '\0';
}

static void choice_list(const char *const *choices, const char *sep, char *out, size_t n) {
  size_t used = 0;
  out[0] = '\0';
  for (const char *const *c = choices; *c && used < n; c++) {
    int w = snprintf(out + used, n - used, "%s%s", c == choices ? "" : sep, *c);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* What a value of type t (an item type for lists) must look like: "an integer in [1, 65536]". */
static void describe_item(const hsc_cfg_key *k, hsc_cfg_type t, char *out, size_t n) {
  char range[160];
  switch (t) {
    case HSC_CFG_INT:
    case HSC_CFG_INT64:
      int_range(k, t, range, sizeof range);
      snprintf(out, n, "an integer%s", range);
      break;
    case HSC_CFG_FLOAT:
      float_range(k, range, sizeof range);
      snprintf(out, n, "a number%s", range[0] ? range : " (finite)");
      break;
    case HSC_CFG_BOOL:
      snprintf(out, n, "true or false");
      break;
    case HSC_CFG_STRING:
      snprintf(out, n, "a string of at most %zu bytes", k->size - 1);
      break;
    case HSC_CFG_ENUM:
      choice_list(k->choices, ", ", range, sizeof range);
      snprintf(out, n, "one of %s", range);
      break;
    default:
      snprintf(out, n, "a value");
      break;
  }
}

static void describe(const hsc_cfg_key *k, char *out, size_t n) {
  if (!is_list(k->type)) {
    describe_item(k, k->type, out, n);
    return;
  }
  char item[256];
  describe_item(k, item_type(k->type), item, sizeof item);
  snprintf(out, n, "a list of up to %d items, each %s", HSC_CFG_MAX_LIST, item);
}

/* ---- scalar conversion ---- */

/* YAML's null: an empty plain scalar, ~, null. Quoted scalars are never null. */
static int is_null(const char *s, size_t len, int plain) {
  return plain &&
         (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"));
}

/* Converts the scalar s (len bytes, NUL-terminated) to one value of type t into dst. On failure writes
 * "expected ..., got ..." into why and returns -1. */
static int convert_scalar(const hsc_cfg_key *k, hsc_cfg_type t, size_t capacity, const char *s, size_t len,
                          int plain, void *dst, char *why, size_t n) {
  char want[320], got[SHOW_MAX + 8];
  describe_item(k, t, want, sizeof want);
  show(s, len, got, sizeof got);
  if (len == 0 && plain) {
    snprintf(why, n, "expected %s, got nothing", want);
    return -1;
  }
  if (strlen(s) != len) {
    snprintf(why, n, "expected %s, got a value with a NUL byte", want);
    return -1;
  }
  switch (t) {
    case HSC_CFG_INT:
    case HSC_CFG_INT64: {
      /* Decimal digits with an optional sign, nothing else: no "1.5", "1e3", "0x10" or " 5". */
      const char *digits = s + (s[0] == '-' || s[0] == '+');
      if (!digits[0] || strspn(digits, "0123456789") != strlen(digits)) break;
      errno = 0;
      long long v = strtoll(s, NULL, 10);
      if (errno == ERANGE || v < k->imin || v > k->imax) break;
      if (t == HSC_CFG_INT)
        *(int *)dst = (int)v;
      else
        *(int64_t *)dst = (int64_t)v;
      return 0;
    }
    case HSC_CFG_FLOAT: {
      char *end = NULL;
      if (!(s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) break;
      errno = 0;
      double v = strtod(s, &end);
      if (*end || errno == ERANGE || !isfinite(v)) break;
      int lo_ok = (k->open & HSC_CFG_LO_OPEN) ? v > k->fmin : v >= k->fmin;
      int hi_ok = (k->open & HSC_CFG_HI_OPEN) ? v < k->fmax : v <= k->fmax;
      if (!lo_ok || !hi_ok) break;
      *(double *)dst = v;
      return 0;
    }
    case HSC_CFG_BOOL:
      if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
        *(int *)dst = 1;
        return 0;
      }
      if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
        *(int *)dst = 0;
        return 0;
      }
      break;
    case HSC_CFG_STRING:
      if (is_null(s, len, plain)) {
        snprintf(why, n, "expected %s, got null (quote it for the text %s)", want, got);
        return -1;
      }
      if (len >= capacity) {
        snprintf(why, n, "expected %s, got %zu bytes", want, len);
        return -1;
      }
      /* Zero-filled so that equal configurations are equal byte for byte. */
      memset(dst, 0, capacity);
      memcpy(dst, s, len);
      return 0;
    case HSC_CFG_ENUM:
      for (const char *const *c = k->choices; *c; c++)
        if (!strcmp(*c, s)) {
          memset(dst, 0, capacity);
          memcpy(dst, s, len);
          return 0;
        }
      break;
    default:
      break;
  }
  snprintf(why, n, "expected %s, got %s", want, got);
  return -1;
}

/* ---- parsing ---- */

typedef struct {
  const char *key; /* a schema key that starts with the section's prefix */
  size_t len;      /* of the prefix */
  size_t line;     /* 1-based, where it was opened */
} section_seen;

typedef struct {
  hsc_config *cfg;
  const char *file;  /* the file name for messages; NULL for an override */
  const char *label; /* for an override: "--set key=value" */
  const char *root;  /* for an override: its key */
  hsc_error *err;
  yaml_parser_t parser;
  yaml_event_t ev; /* the current event, valid while have_ev */
  int have_ev;
  const hsc_cfg_key *keys;
  size_t nkeys;
  size_t *seen; /* per key: 1-based line where this text set it, 0 if not */
  section_seen *sections;
  size_t nsections, cap_sections;
} parse_ctx;

/* Sets the error "FILE:LINE:COL: key 'K': message" (or "--set K=V: message") and returns HSC_ERR_INPUT.
 * key may be NULL when the message names it itself. */
static hsc_status fail(parse_ctx *c, yaml_mark_t m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static hsc_status fail(parse_ctx *c, yaml_mark_t m, const char *key, const char *fmt, ...) {
  char body[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  if (c->file) {
    if (key)
      return hsc_error_set(c->err, HSC_ERR_INPUT, "%s:%zu:%zu: key '%s': %s", c->file, m.line + 1,
                           m.column + 1, key, body);
    return hsc_error_set(c->err, HSC_ERR_INPUT, "%s:%zu:%zu: %s", c->file, m.line + 1, m.column + 1, body);
  }
  if (key && strcmp(key, c->root))
    return hsc_error_set(c->err, HSC_ERR_INPUT, "%s: key '%s': %s", c->label, key, body);
  return hsc_error_set(c->err, HSC_ERR_INPUT, "%s: %s", c->label, body);
}

/* libyaml's own description of a syntax error, at its position. */
static hsc_status yaml_fail(parse_ctx *c) {
  yaml_parser_t *p = &c->parser;
  if (p->error == YAML_MEMORY_ERROR) hsc_fatal("libyaml: out of memory");
  const char *problem = p->problem ? p->problem : "invalid YAML";
  if (p->error == YAML_READER_ERROR) {
    yaml_mark_t m = {.index = p->problem_offset};
    if (c->file)
      return hsc_error_set(c->err, HSC_ERR_INPUT, "%s: byte %zu: %s", c->file, p->problem_offset, problem);
    return fail(c, m, NULL, "byte %zu: %s", p->problem_offset, problem);
  }
  if (p->context)
    return fail(c, p->problem_mark, NULL, "%s (%s at %zu:%zu)", problem, p->context, p->context_mark.line + 1,
                p->context_mark.column + 1);
  return fail(c, p->problem_mark, NULL, "%s", problem);
}

/* Advances to the next event (the previous one is released). */
static hsc_status next_event(parse_ctx *c) {
  if (c->have_ev) {
    yaml_event_delete(&c->ev);
    c->have_ev = 0;
  }
  if (!yaml_parser_parse(&c->parser, &c->ev)) return yaml_fail(c);
  c->have_ev = 1;
  return HSC_OK;
}

static const char *event_noun(const yaml_event_t *e) {
  switch (e->type) {
    case YAML_MAPPING_START_EVENT:
      return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
      return "a list";
    case YAML_ALIAS_EVENT:
      return "an alias";
    case YAML_SCALAR_EVENT:
      return "a scalar";
    default:
      return "no value";
  }
}

static const char *scalar_text(const parse_ctx *c) { return (const char *)c->ev.data.scalar.value; }
static int scalar_plain(const parse_ctx *c) { return c->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

/* A section is a proper dotted prefix of some key ("supernet" of "supernet.lr"). */
static const hsc_cfg_key *find_section(const parse_ctx *c, const char *prefix) {
  size_t n = strlen(prefix);
  if (!n) return NULL;
  for (size_t i = 0; i < c->nkeys; i++)
    if (!strncmp(c->keys[i].key, prefix, n) && c->keys[i].key[n] == '.') return &c->keys[i];
  return NULL;
}

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), for "did you mean". */
static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb) {
  /* Three rolling rows (i-2, i-1, i) of the DP over the characters of b. */
  size_t *rows = hsc_xmalloc(3 * (nb + 1) * sizeof(size_t));
  size_t *pp = rows, *prev = rows + nb + 1, *cur = rows + 2 * (nb + 1);
  for (size_t j = 0; j <= nb; j++) prev[j] = j;
  for (size_t i = 1; i <= na; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t v = prev[j - 1] + cost;
      if (prev[j] + 1 < v) v = prev[j] + 1;
      if (cur[j - 1] + 1 < v) v = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
        v = pp[j - 2] + 1;
      cur[j] = v;
    }
    size_t *t = pp;
    pp = prev;
    prev = cur;
    cur = t;
  }
  size_t r = prev[nb];
  free(rows);
  return r;
}

/* The schema key or section closest to `key` within an edit distance of 2, NULL when none is. Writes the
 * candidate's length to *len (a section is a prefix of a key string). The distance may be at most a third
 * of the key's length, so that "foo" does not suggest "log". */
static const char *suggest(const parse_ctx *c, const char *key, size_t *len) {
  size_t nkey = strlen(key);
  size_t best = nkey / 3 < 2 ? nkey / 3 + 1 : 3; /* one more than the largest distance accepted */
  const char *found = NULL;
  if (nkey > KEY_MAX) return NULL;
  for (size_t i = 0; i < c->nkeys; i++) {
    const char *k = c->keys[i].key;
    /* The key itself and each of its sections ("a", "a.b" of "a.b.c"). */
    for (const char *end = strchr(k, '.');; end = strchr(end + 1, '.')) {
      size_t n = end ? (size_t)(end - k) : strlen(k);
      size_t d = edit_distance(key, nkey, k, n);
      if (d < best) {
        best = d;
        found = k;
        *len = n;
      }
      if (!end) break;
    }
  }
  return found;
}

static hsc_status unknown_key(parse_ctx *c, yaml_mark_t m, const char *key) {
  size_t n = 0;
  const char *s = suggest(c, key, &n);
  if (s) return fail(c, m, NULL, "unknown key '%s' (did you mean '%.*s'?)", key, (int)n, s);
  return fail(c, m, NULL, "unknown key '%s'", key);
}

static hsc_status parse_mapping(parse_ctx *c, const char *prefix);

/* The current event is a scalar for the list entry k, item i: converts it into place. */
static hsc_status parse_item(parse_ctx *c, const hsc_cfg_key *k, int i) {
  char why[512];
  char *base = (char *)c->cfg + k->offset;
  size_t size = item_size(k->type);
  if (convert_scalar(k, item_type(k->type), size, scalar_text(c), c->ev.data.scalar.length, scalar_plain(c),
                     base + (size_t)i * size, why, sizeof why))
    return fail(c, c->ev.start_mark, k->key, "item %d: %s", i + 1, why);
  return HSC_OK;
}

/* Reads the value of the schema key k (the next event) into cfg. */
static hsc_status parse_value(parse_ctx *c, const hsc_cfg_key *k) {
  hsc_status st = next_event(c);
  if (st) return st;
  char want[400], why[512];
  describe(k, want, sizeof want);
  yaml_mark_t m = c->ev.start_mark;
  switch (c->ev.type) {
    case YAML_SCALAR_EVENT: {
      if (is_list(k->type)) {
        char got[SHOW_MAX + 8];
        show(scalar_text(c), c->ev.data.scalar.length, got, sizeof got);
        return fail(c, m, k->key, "expected %s, got %s (write a list as [a, b])", want, got);
      }
      if (convert_scalar(k, k->type, k->size, scalar_text(c), c->ev.data.scalar.length, scalar_plain(c),
                         (char *)c->cfg + k->offset, why, sizeof why))
        return fail(c, m, k->key, "%s", why);
      return HSC_OK;
    }
    case YAML_SEQUENCE_START_EVENT: {
      if (!is_list(k->type)) return fail(c, m, k->key, "expected %s, got a list", want);
      /* Items past the count stay zero, so that equal configurations are equal byte for byte. */
      memset((char *)c->cfg + k->offset, 0, k->size);
      int n = 0;
      for (;;) {
        if ((st = next_event(c))) return st;
        if (c->ev.type == YAML_SEQUENCE_END_EVENT) break;
        if (c->ev.type != YAML_SCALAR_EVENT)
          return fail(c, c->ev.start_mark, k->key, "item %d: expected a single value, got %s", n + 1,
                      event_noun(&c->ev));
        if (n == HSC_CFG_MAX_LIST)
          return fail(c, c->ev.start_mark, k->key, "more than %d items", HSC_CFG_MAX_LIST);
        if ((st = parse_item(c, k, n))) return st;
        n++;
      }
      *(int *)((char *)c->cfg + k->count_offset) = n;
      return HSC_OK;
    }
    case YAML_ALIAS_EVENT:
      return fail(c, m, k->key, "aliases (*name) are not supported");
    default:
      return fail(c, m, k->key, "expected %s, got %s", want, event_noun(&c->ev));
  }
}

/* Reads the value (the next event) of the dotted key `key`, whose own name starts at key_mark: a schema
 * key's value, or a section's mapping (or null, an empty section). */
static hsc_status parse_keyed(parse_ctx *c, const char *key, yaml_mark_t key_mark) {
  const hsc_cfg_key *k = hsc_config_find(key);
  if (k) {
    size_t i = (size_t)(k - c->keys);
    if (c->seen[i])
      return fail(c, key_mark, NULL, "duplicate key '%s' (first set at line %zu)", key, c->seen[i]);
    c->seen[i] = key_mark.line + 1;
    return parse_value(c, k);
  }
  const hsc_cfg_key *in = find_section(c, key);
  if (!in) return unknown_key(c, key_mark, key);
  size_t n = strlen(key);
  for (size_t i = 0; i < c->nsections; i++)
    if (c->sections[i].len == n && !strncmp(c->sections[i].key, key, n))
      return fail(c, key_mark, NULL, "duplicate key '%s' (first at line %zu)", key, c->sections[i].line);
  if (c->nsections == c->cap_sections) {
    c->cap_sections = c->cap_sections ? 2 * c->cap_sections : 16;
    section_seen *s = realloc(c->sections, c->cap_sections * sizeof *s);
    if (!s) hsc_fatal("out of memory");
    c->sections = s;
  }
  c->sections[c->nsections++] = (section_seen){.key = in->key, .len = n, .line = key_mark.line + 1};
  hsc_status st = next_event(c);
  if (st) return st;
  if (c->ev.type == YAML_MAPPING_START_EVENT) return parse_mapping(c, key);
  if (c->ev.type == YAML_SCALAR_EVENT && is_null(scalar_text(c), c->ev.data.scalar.length, scalar_plain(c)))
    return HSC_OK;
  return fail(c, c->ev.start_mark, key, "expected a mapping of the section's keys, got %s",
              event_noun(&c->ev));
}

/* The current event opened a mapping under `prefix` ("" at the top): reads its keys up to its end. */
static hsc_status parse_mapping(parse_ctx *c, const char *prefix) {
  for (;;) {
    hsc_status st = next_event(c);
    if (st) return st;
    if (c->ev.type == YAML_MAPPING_END_EVENT) return HSC_OK;
    yaml_mark_t m = c->ev.start_mark;
    if (c->ev.type != YAML_SCALAR_EVENT)
      return fail(c, m, NULL, "expected a key name, got %s%s", event_noun(&c->ev),
                  prefix[0] ? "" : " (the top level is a mapping of keys)");
    char key[KEY_MAX + 1];
    size_t plen = strlen(prefix), klen = c->ev.data.scalar.length;
    if (plen + 1 + klen > KEY_MAX) {
      char got[SHOW_MAX + 8];
      show(scalar_text(c), klen, got, sizeof got);
      return fail(c, m, NULL, "unknown key %s (longer than %d bytes)", got, KEY_MAX);
    }
    snprintf(key, sizeof key, "%s%s%s", prefix, plen ? "." : "", scalar_text(c));
    if ((st = parse_keyed(c, key, m))) return st;
  }
}

/* Parses a whole YAML stream: a mapping of keys for a file (root NULL), or the value of the key `root`
 * for an override. */
static hsc_status parse_stream(parse_ctx *c) {
  hsc_status st;
  if ((st = next_event(c))) return st;
  if (c->ev.type != YAML_STREAM_START_EVENT) return fail(c, c->ev.start_mark, NULL, "expected a YAML stream");
  if ((st = next_event(c))) return st;
  if (c->ev.type == YAML_STREAM_END_EVENT) { /* nothing but comments */
    if (!c->root || find_section(c, c->root)) return HSC_OK;
    char want[400];
    describe(hsc_config_find(c->root), want, sizeof want);
    return fail(c, c->ev.start_mark, NULL, "expected %s, got nothing", want);
  }
  if (c->root) {
    if ((st = parse_keyed(c, c->root, c->ev.start_mark))) return st;
  } else {
    if ((st = next_event(c))) return st;
    if (c->ev.type == YAML_MAPPING_START_EVENT) {
      if ((st = parse_mapping(c, ""))) return st;
    } else if (!(c->ev.type == YAML_SCALAR_EVENT &&
                 is_null(scalar_text(c), c->ev.data.scalar.length, scalar_plain(c)))) {
      return fail(c, c->ev.start_mark, NULL, "expected a mapping of keys at the top level, got %s",
                  event_noun(&c->ev));
    }
  }
  if ((st = next_event(c))) return st; /* the document's end */
  if ((st = next_event(c))) return st;
  if (c->ev.type != YAML_STREAM_END_EVENT)
    return fail(c, c->ev.start_mark, NULL, "expected one YAML document, found a second one");
  return HSC_OK;
}

/* Runs parse_stream over text with a fresh parser and releases everything. */
static hsc_status parse_text(hsc_config *cfg, const char *text, size_t len, const char *file,
                             const char *label, const char *root, hsc_error *err) {
  parse_ctx c = {.cfg = cfg, .file = file, .label = label, .root = root, .err = err};
  c.keys = hsc_config_schema(&c.nkeys);
  if (!yaml_parser_initialize(&c.parser)) hsc_fatal("libyaml: cannot initialise a parser (out of memory)");
  yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
  c.seen = hsc_xcalloc(c.nkeys, sizeof *c.seen);
  hsc_status st = parse_stream(&c);
  if (c.have_ev) yaml_event_delete(&c.ev);
  yaml_parser_delete(&c.parser);
  free(c.seen);
  free(c.sections);
  return st;
}

hsc_status hsc_config_parse(hsc_config *cfg, const char *text, size_t len, const char *name, hsc_error *err) {
  return parse_text(cfg, text, len, name ? name : "<config>", NULL, NULL, err);
}

/* Sets `key` from the YAML flow text `value`; messages start with `label`. */
static hsc_status set_key(hsc_config *cfg, const char *key, const char *value, const char *label,
                          hsc_error *err) {
  parse_ctx probe = {.label = label, .root = key, .err = err};
  probe.keys = hsc_config_schema(&probe.nkeys);
  if (!hsc_config_find(key) && !find_section(&probe, key)) {
    yaml_mark_t none = {0};
    return unknown_key(&probe, none, key);
  }
  return parse_text(cfg, value, strlen(value), NULL, label, key, err);
}

hsc_status hsc_config_set(hsc_config *cfg, const char *assignment, hsc_error *err) {
  char label[KEY_MAX + 128];
  snprintf(label, sizeof label, "--set %s%s", assignment, strlen(assignment) > KEY_MAX + 64 ? "..." : "");
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: expected KEY=VALUE, e.g. supernet.lr=0.05", label);
  size_t klen = (size_t)(eq - assignment);
  if (klen > KEY_MAX) return hsc_error_set(err, HSC_ERR_INPUT, "%s: unknown key (too long)", label);
  char key[KEY_MAX + 1];
  memcpy(key, assignment, klen);
  key[klen] = '\0';
  return set_key(cfg, key, eq + 1, label, err);
}

void hsc_config_defaults(hsc_config *cfg) {
  /* Zeroed first, so padding and unused list items are zero and configurations compare with memcmp. */
  memset(cfg, 0, sizeof *cfg);
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  for (size_t i = 0; i < n; i++) {
    char label[KEY_MAX + 64];
    snprintf(label, sizeof label, "default of %s", keys[i].key);
    hsc_error err = {0};
    if (set_key(cfg, keys[i].key, keys[i].def, label, &err) != HSC_OK)
      hsc_fatal("config schema: %s", err.msg);
  }
}

/* ---- validation ---- */

hsc_status hsc_config_validate(const hsc_config *cfg, int world_size, hsc_error *err) {
  const hsc_status bad = HSC_ERR_INPUT;
  if (cfg->space.n_stage_channels < 1)
    return hsc_error_set(err, bad, "space.stage_channels: expected at least one stage, got an empty list");
  if (cfg->space.n_stage_blocks != cfg->space.n_stage_channels ||
      cfg->space.n_stage_strides != cfg->space.n_stage_channels)
    return hsc_error_set(
        err, bad,
        "space.stage_channels, space.stage_blocks and space.stage_strides must have one entry "
        "per stage, got %d, %d and %d entries",
        cfg->space.n_stage_channels, cfg->space.n_stage_blocks, cfg->space.n_stage_strides);
  if (cfg->data.n_mean != cfg->space.input_channels)
    return hsc_error_set(err, bad,
                         "data.mean has %d entries but space.input_channels is %d: give one per channel",
                         cfg->data.n_mean, cfg->space.input_channels);
  if (cfg->data.n_std != cfg->space.input_channels)
    return hsc_error_set(err, bad,
                         "data.std has %d entries but space.input_channels is %d: give one per channel",
                         cfg->data.n_std, cfg->space.input_channels);
  if (cfg->space.n_scales < 1 || cfg->space.n_scales > 16)
    return hsc_error_set(err, bad, "space.scales: expected 1 to 16 scales, got %d", cfg->space.n_scales);
  for (int i = 1; i < cfg->space.n_scales; i++)
    if (!(cfg->space.scales[i] > cfg->space.scales[i - 1])) {
      char a[40], b[40];
      format_double(cfg->space.scales[i - 1], a, 0);
      format_double(cfg->space.scales[i], b, 0);
      return hsc_error_set(err, bad, "space.scales must be strictly increasing, got %s after %s (item %d)", b,
                           a, i + 1);
    }
  if (cfg->space.n_ops < 1)
    return hsc_error_set(err, bad, "space.ops: expected at least one operator, got an empty list");
  for (int i = 0; i < cfg->space.n_ops; i++)
    for (int j = 0; j < i; j++)
      if (!strcmp(cfg->space.ops[i], cfg->space.ops[j]))
        return hsc_error_set(err, bad, "space.ops: '%s' is listed twice (items %d and %d)", cfg->space.ops[i],
                             j + 1, i + 1);
  if (cfg->data.val_size >= 60000)
    return hsc_error_set(err, bad, "data.val_size must be below the 60000 training images, got %d",
                         cfg->data.val_size);
  const int pop = cfg->evolution.population;
  if (cfg->evolution.topk > pop)
    return hsc_error_set(err, bad, "evolution.topk (%d) must not exceed evolution.population (%d)",
                         cfg->evolution.topk, pop);
  if (cfg->evolution.mutations + cfg->evolution.crossovers > pop)
    return hsc_error_set(err, bad,
                         "evolution.mutations + evolution.crossovers (%d + %d) must not exceed "
                         "evolution.population (%d)",
                         cfg->evolution.mutations, cfg->evolution.crossovers, pop);
  if (world_size > 0 && cfg->data.batch_size % world_size != 0)
    return hsc_error_set(
        err, bad,
        "data.batch_size %d is the global batch and must be divisible by the number of ranks "
        "(%d); use a multiple of %d",
        cfg->data.batch_size, world_size, world_size);
  return HSC_OK;
}

/* ---- loading ---- */

hsc_status hsc_config_load(hsc_config *cfg, const char *path, const char *const *sets, int nsets,
                           MPI_Comm comm, hsc_error *err) {
  return hsc_config_load_ranks(cfg, path, sets, nsets, comm, 1, err);
}

hsc_status hsc_config_load_ranks(hsc_config *cfg, const char *path, const char *const *sets, int nsets,
                                 MPI_Comm comm, int check_ranks, hsc_error *err) {
  int size = 1;
  HSC_CHECK_MPI(MPI_Comm_size(comm, &size));
  hsc_config_defaults(cfg);
  hsc_status st = HSC_OK;
  if (path) {
    char *buf = NULL;
    size_t len = 0;
    st = hsc_file_bcast(path, "config file", NULL, FILE_MAX, comm, &buf, &len, err);
    if (st == HSC_OK) st = hsc_config_parse(cfg, buf, len, path, err);
    free(buf);
    if (st) return st;
  }
  for (int i = 0; i < nsets; i++)
    if ((st = hsc_config_set(cfg, sets[i], err))) return st;
  return hsc_config_validate(cfg, check_ranks ? size : 0, err);
}

/* ---- output ---- */

/* A string as a YAML scalar: plain when it cannot be read as anything else, double-quoted otherwise. */
static void put_string(strbuf *b, const char *s) {
  size_t n = strlen(s);
  int plain = n > 0 &&
              strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./+-") == n &&
              s[0] != '-' && !is_null(s, n, 1);
  static const char *const reserved[] = {"true", "false", "yes", "no", "on", "off", "y", "n"};
  for (size_t i = 0; plain && i < ARRAY_LEN(reserved); i++)
    if (!strcasecmp(s, reserved[i])) plain = 0;
  if (plain) {
    char *end = NULL;
    (void)strtod(s, &end);
    if (end != s && !*end) plain = 0; /* would read as a number elsewhere */
  }
  if (plain) {
    sb_printf(b, "%s", s);
    return;
  }
  sb_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      sb_printf(b, "\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      sb_printf(b, "\\x%02x", *p);
    else
      sb_printf(b, "%c", *p);
  }
  sb_printf(b, "\"");
}

static void put_value(strbuf *b, const hsc_cfg_key *k, const hsc_config *cfg) {
  const char *v = (const char *)cfg + k->offset;
  char num[40];
  int count = is_list(k->type) ? *(const int *)((const char *)cfg + k->count_offset) : 0;
  if (count < 0) count = 0;
  if (count > HSC_CFG_MAX_LIST) count = HSC_CFG_MAX_LIST;
  switch (k->type) {
    case HSC_CFG_INT:
      sb_printf(b, "%d", *(const int *)v);
      break;
    case HSC_CFG_INT64:
      sb_printf(b, "%" PRId64, *(const int64_t *)v);
      break;
    case HSC_CFG_FLOAT:
      format_double(*(const double *)v, num, 1);
      sb_printf(b, "%s", num);
      break;
    case HSC_CFG_BOOL:
      sb_printf(b, "%s", *(const int *)v ? "true" : "false");
      break;
    case HSC_CFG_STRING:
    case HSC_CFG_ENUM: {
      char s[HSC_CFG_PATH + 1];
      size_t n = strnlen(v, k->size < sizeof s ? k->size : sizeof s - 1);
      memcpy(s, v, n);
      s[n] = '\0';
      put_string(b, s);
      break;
    }
    case HSC_CFG_INT_LIST:
    case HSC_CFG_FLOAT_LIST:
    case HSC_CFG_ENUM_LIST:
      sb_printf(b, "[");
      for (int i = 0; i < count; i++) {
        if (i) sb_printf(b, ", ");
        if (k->type == HSC_CFG_INT_LIST) {
          sb_printf(b, "%d", ((const int *)v)[i]);
        } else if (k->type == HSC_CFG_FLOAT_LIST) {
          format_double(((const double *)v)[i], num, 1);
          sb_printf(b, "%s", num);
        } else {
          char s[HSC_CFG_NAME + 1];
          size_t n = strnlen(((const hsc_cfg_name *)v)[i], HSC_CFG_NAME);
          memcpy(s, ((const hsc_cfg_name *)v)[i], n);
          s[n] = '\0';
          put_string(b, s);
        }
      }
      sb_printf(b, "]");
      break;
    default:
      break;
  }
}

char *hsc_config_dump(const hsc_config *cfg, int comments) {
  strbuf b = {0};
  sb_printf(&b, "%s", "");
  if (comments)
    sb_printf(&b,
              "# hsconas %s configuration: every key with its value (`hsconas config --keys` lists them)\n",
              HSC_VERSION);
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  const char *section = NULL;
  size_t section_len = 0;
  for (size_t i = 0; i < n; i++) {
    const char *k = keys[i].key, *dot = strchr(k, '.');
    if (!dot) hsc_fatal("config schema: key '%s' has no section", k);
    size_t len = (size_t)(dot - k);
    if (!section || len != section_len || strncmp(section, k, len)) {
      if (section && comments) sb_printf(&b, "\n");
      sb_printf(&b, "%.*s:\n", (int)len, k);
      section = k;
      section_len = len;
    }
    if (comments) sb_printf(&b, "  # %s\n", keys[i].help);
    sb_printf(&b, "  %s: ", dot + 1);
    put_value(&b, &keys[i], cfg);
    sb_printf(&b, "\n");
  }
  return b.s;
}

uint64_t hsc_config_hash(const hsc_config *cfg) {
  char *text = hsc_config_dump(cfg, 0);
  const uint64_t h = hsc_fnv1a_bytes(HSC_FNV1A_BASIS, text, strlen(text));
  free(text);
  return h;
}

void hsc_config_print_schema(FILE *out) {
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  fprintf(out, "%-26s %-46s %s\n", "KEY", "TYPE", "DEFAULT");
  for (size_t i = 0; i < n; i++) {
    const hsc_cfg_key *k = &keys[i];
    char type[320], item[300];
    hsc_cfg_type t = item_type(k->type);
    if (t == HSC_CFG_INT || t == HSC_CFG_INT64)
      int_range(k, t, item, sizeof item);
    else if (t == HSC_CFG_FLOAT)
      float_range(k, item, sizeof item);
    else if (t == HSC_CFG_ENUM) {
      char list[256];
      choice_list(k->choices, " | ", list, sizeof list);
      snprintf(item, sizeof item, " of %s", list);
    } else if (t == HSC_CFG_STRING)
      snprintf(item, sizeof item, " (at most %zu bytes)", k->size - 1);
    else
      item[0] = '\0';
    snprintf(type, sizeof type, "%s%s%s", hsc_config_type_name(k->type),
             is_list(k->type) && item[0] ? ", each" : "", item);
    fprintf(out, "%-26s %-46s %s\n", k->key, type, k->def);
    fprintf(out, "%-26s %s\n", "", k->help);
  }
}
