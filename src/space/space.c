/* The search space: operator table, block shapes derived from cfg->space, the mid-width table, the mask of
 * allowed choices and the space hash. The network it describes is in include/hsconas/space.h. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hsconas/hash.h"
#include "hsconas/space.h"

static const char *const op_names[] = {
    [HSC_OP_SHUFFLE3] = "shuffle3",
    [HSC_OP_SHUFFLE5] = "shuffle5",
    [HSC_OP_SHUFFLE7] = "shuffle7",
    [HSC_OP_XCEPTION] = "xception",
};
_Static_assert(ARRAY_LEN(op_names) == HSC_OP_COUNT, "one name per hsc_op");

static const int op_kernels[] = {
    [HSC_OP_SHUFFLE3] = 3,
    [HSC_OP_SHUFFLE5] = 5,
    [HSC_OP_SHUFFLE7] = 7,
    [HSC_OP_XCEPTION] = 3,
};
_Static_assert(ARRAY_LEN(op_kernels) == HSC_OP_COUNT, "one kernel size per hsc_op");

const char *hsc_op_name(hsc_op op) {
  if ((unsigned)op >= HSC_OP_COUNT) return NULL;
  return op_names[op];
}

int hsc_op_kernel(hsc_op op) {
  assert((unsigned)op < HSC_OP_COUNT);
  return op_kernels[op];
}

/* Output size of a convolution (floor division; a negative numerator means no output at all). */
static int conv_out(int in, int k, int stride, int pad) {
  int num = in + 2 * pad - k;
  return num < 0 ? 0 : num / stride + 1;
}

/* "shuffle3, shuffle5, shuffle7, xception" into buf. */
static void list_op_names(char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < HSC_OP_COUNT && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", op_names[i]);
}

/* Checks one list length against its key. */
static hsc_status check_list_len(const char *key, int n, int want, const char *want_key, hsc_error *err) {
  if (n < 1 || n > HSC_CFG_MAX_LIST)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: %d entries, expected 1 to %d", key, n, HSC_CFG_MAX_LIST);
  if (want >= 0 && n != want)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s has %d entries, %s has %d: one per stage expected", key, n,
                         want_key, want);
  return HSC_OK;
}

static hsc_status parse_ops(hsc_space *s, const hsc_config *cfg, hsc_error *err) {
  int n = cfg->space.n_ops;
  if (n < 1 || n > HSC_OP_COUNT)
    return hsc_error_set(err, HSC_ERR_INPUT, "space.ops: %d entries, expected 1 to %d", n, HSC_OP_COUNT);
  s->nops = n;
  for (int i = 0; i < n; i++) {
    const char *name = cfg->space.ops[i];
    int found = -1;
    for (int o = 0; o < HSC_OP_COUNT; o++)
      if (!strcmp(name, op_names[o])) found = o;
    if (found < 0) {
      char valid[128];
      list_op_names(valid, sizeof valid);
      return hsc_error_set(err, HSC_ERR_INPUT, "space.ops[%d]: unknown operator '%.*s' (expected %s)", i,
                           HSC_CFG_NAME, name, valid);
    }
    for (int j = 0; j < i; j++)
      if (s->ops[j] == (hsc_op)found)
        return hsc_error_set(err, HSC_ERR_INPUT, "space.ops[%d]: operator '%s' is listed twice", i, name);
    s->ops[i] = (hsc_op)found;
  }
  return HSC_OK;
}

static hsc_status parse_scales(hsc_space *s, const hsc_config *cfg, hsc_error *err) {
  int n = cfg->space.n_scales;
  if (n < 1 || n > HSC_MAX_SCALES)
    return hsc_error_set(err, HSC_ERR_INPUT, "space.scales: %d entries, expected 1 to %d", n, HSC_MAX_SCALES);
  s->nscales = n;
  for (int i = 0; i < n; i++) {
    double v = cfg->space.scales[i];
    if (!isfinite(v) || v <= 0)
      return hsc_error_set(err, HSC_ERR_INPUT, "space.scales[%d]: %g, expected a positive number", i, v);
    if (i > 0 && !(v > s->scales[i - 1]))
      return hsc_error_set(err, HSC_ERR_INPUT, "space.scales[%d]: %g after %g, expected increasing values", i,
                           v, s->scales[i - 1]);
    s->scales[i] = v;
  }
  return HSC_OK;
}

/* Every number above `hash` in hsc_space, the operator names and the scale bit patterns. */
static uint64_t space_hash(const hsc_space *s) {
  uint64_t h = HSC_FNV1A_BASIS;
  const int64_t head[] = {s->in_c,   s->in_h,    s->in_w,   s->stem_c,  s->stem_stride, s->stem_h,
                          s->stem_w, s->nblocks, s->head_c, s->classes, s->nops,        s->nscales};
  for (size_t i = 0; i < ARRAY_LEN(head); i++) h = hsc_fnv1a_u64(h, (uint64_t)head[i]);
  for (int l = 0; l < s->nblocks; l++) {
    const hsc_block_shape *b = &s->blocks[l];
    const int64_t v[] = {b->stage, b->cin,   b->cout,     b->stride,  b->h_in,     b->w_in,
                         b->h_out, b->w_out, b->has_proj, b->main_in, b->main_out, s->max_mid[l]};
    for (size_t i = 0; i < ARRAY_LEN(v); i++) h = hsc_fnv1a_u64(h, (uint64_t)v[i]);
    for (int j = 0; j < s->nscales; j++) h = hsc_fnv1a_u64(h, (uint64_t)s->mid[l][j]);
  }
  for (int i = 0; i < s->nops; i++) {
    const char *name = op_names[s->ops[i]];
    h = hsc_fnv1a_bytes(h, name, strlen(name) + 1); /* with the terminator: names stay separated */
  }
  for (int j = 0; j < s->nscales; j++) h = hsc_fnv1a_double(h, s->scales[j]);
  return h;
}

hsc_status hsc_space_init(hsc_space *s, const hsc_config *cfg, hsc_error *err) {
  memset(s, 0, sizeof *s);
  hsc_status st;
  const int in_c = cfg->space.input_channels, in_size = cfg->space.input_size;
  if (in_c < 1) return hsc_error_set(err, HSC_ERR_INPUT, "space.input_channels: %d, expected >= 1", in_c);
  if (in_size < 1) return hsc_error_set(err, HSC_ERR_INPUT, "space.input_size: %d, expected >= 1", in_size);
  if (cfg->space.stem_channels < 1)
    return hsc_error_set(err, HSC_ERR_INPUT, "space.stem_channels: %d, expected >= 1",
                         cfg->space.stem_channels);
  if (cfg->space.stem_stride < 1 || cfg->space.stem_stride > 2)
    return hsc_error_set(err, HSC_ERR_INPUT, "space.stem_stride: %d, expected 1 or 2",
                         cfg->space.stem_stride);
  if (cfg->space.head_channels < 1)
    return hsc_error_set(err, HSC_ERR_INPUT, "space.head_channels: %d, expected >= 1",
                         cfg->space.head_channels);
  if (cfg->space.classes < 1)
    return hsc_error_set(err, HSC_ERR_INPUT, "space.classes: %d, expected >= 1", cfg->space.classes);
  const int nstages = cfg->space.n_stage_channels;
  if ((st = check_list_len("space.stage_channels", nstages, -1, NULL, err)) != HSC_OK) return st;
  if ((st = check_list_len("space.stage_blocks", cfg->space.n_stage_blocks, nstages, "space.stage_channels",
                           err)) != HSC_OK)
    return st;
  if ((st = check_list_len("space.stage_strides", cfg->space.n_stage_strides, nstages, "space.stage_channels",
                           err)) != HSC_OK)
    return st;
  if ((st = parse_ops(s, cfg, err)) != HSC_OK) return st;
  if ((st = parse_scales(s, cfg, err)) != HSC_OK) return st;

  s->in_c = in_c;
  s->in_h = s->in_w = in_size;
  s->stem_c = cfg->space.stem_channels;
  s->stem_stride = cfg->space.stem_stride;
  s->stem_h = conv_out(s->in_h, 3, s->stem_stride, 1);
  s->stem_w = conv_out(s->in_w, 3, s->stem_stride, 1);
  s->head_c = cfg->space.head_channels;
  s->classes = cfg->space.classes;

  int width = s->stem_c, h = s->stem_h, w = s->stem_w, l = 0;
  for (int i = 0; i < nstages; i++) {
    const int c = cfg->space.stage_channels[i], nb = cfg->space.stage_blocks[i];
    const int stride = cfg->space.stage_strides[i];
    if (c < 2 || c % 2)
      return hsc_error_set(err, HSC_ERR_INPUT,
                           "space.stage_channels[%d]: %d, expected an even width >= 2 (the blocks after the "
                           "first split their input into two halves)",
                           i, c);
    if (c <= width)
      return hsc_error_set(err, HSC_ERR_INPUT,
                           "space.stage_channels[%d]: %d, expected more than the stage's input width %d (the "
                           "first block concatenates its %d projected input channels with %d - %d = %d "
                           "channels of its main branch)",
                           i, c, width, width, c, width, c - width);
    if (nb < 1) return hsc_error_set(err, HSC_ERR_INPUT, "space.stage_blocks[%d]: %d, expected >= 1", i, nb);
    if (stride != 1 && stride != 2)
      return hsc_error_set(err, HSC_ERR_INPUT, "space.stage_strides[%d]: %d, expected 1 or 2", i, stride);
    if (nb > HSC_MAX_BLOCKS - l)
      return hsc_error_set(err, HSC_ERR_INPUT, "space.stage_blocks: more than %d blocks in all (the limit)",
                           HSC_MAX_BLOCKS);
    for (int j = 0; j < nb; j++, l++) {
      hsc_block_shape *b = &s->blocks[l];
      b->stage = i;
      b->cin = j == 0 ? width : c;
      b->cout = c;
      b->stride = j == 0 ? stride : 1;
      b->h_in = h;
      b->w_in = w;
      /* The depthwise rule with padding k/2; the same size for k = 3, 5 and 7. */
      b->h_out = conv_out(h, 3, b->stride, 1);
      b->w_out = conv_out(w, 3, b->stride, 1);
      if (b->h_out < 1 || b->w_out < 1)
        return hsc_error_set(err, HSC_ERR_INPUT,
                             "space.input_size: %d gives a spatial size of 0 at block %d (stage %d)", in_size,
                             l, i);
      b->has_proj = j == 0;
      b->main_in = j == 0 ? b->cin : c / 2;
      b->main_out = j == 0 ? c - b->cin : c / 2;
      h = b->h_out;
      w = b->w_out;
      s->max_mid[l] = 0;
      for (int k = 0; k < s->nscales; k++) {
        /* mid = max(1, floor(C/2 * scale + 1e-6)): the 1e-6 absorbs the decimal scale's binary error. */
        int m = (int)floor((double)(c / 2) * s->scales[k] + 1e-6);
        s->mid[l][k] = m < 1 ? 1 : m;
        if (s->mid[l][k] > s->max_mid[l]) s->max_mid[l] = s->mid[l][k];
      }
    }
    width = c;
  }
  s->nblocks = l;
  s->hash = space_hash(s);
  return HSC_OK;
}

void hsc_space_mask_full(const hsc_space *s, hsc_space_mask *m) {
  memset(m, 0, sizeof *m);
  for (int l = 0; l < s->nblocks; l++) {
    for (int i = 0; i < s->nops; i++) m->op[l][s->ops[i]] = 1;
    for (int j = 0; j < s->nscales; j++) m->scale[l][j] = 1;
  }
}
