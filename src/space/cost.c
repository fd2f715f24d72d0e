/* FLOPs (multiply-accumulates) and parameter counts of an architecture, layer by layer as the network in
 * include/hsconas/space.h is built. Checked against PyTorch's forward hooks on the same network
 * (tests/ref/space_ref.py).
 *
 * A convolution costs cout * ho * wo * (cin / groups) * kh * kw MACs per image and has
 * cout * (cin / groups) * kh * kw weights (no bias); its BN adds gamma and beta, 2 per channel. The linear
 * classifier costs and weighs in * out. */
#include <assert.h>

#include "hsconas/space.h"

typedef struct {
  int64_t flops, params;
} cost;

/* Convolution (groups 1 or depthwise) followed by BN, output ho x wo. */
static void conv_bn(cost *c, int64_t cin, int64_t cout, int64_t k, int64_t groups, int64_t ho, int64_t wo) {
  int64_t weights = cout * (cin / groups) * k * k;
  c->flops += weights * ho * wo;
  c->params += weights + 2 * cout;
}

static void pw_bn(cost *c, int64_t cin, int64_t cout, int64_t ho, int64_t wo) {
  conv_bn(c, cin, cout, 1, 1, ho, wo);
}

static void dw_bn(cost *c, int64_t ch, int64_t k, int64_t ho, int64_t wo) {
  conv_bn(c, ch, ch, k, ch, ho, wo);
}

static void block_cost(cost *c, const hsc_block_shape *b, hsc_op op, int64_t m) {
  const int64_t hi = b->h_in, wi = b->w_in, ho = b->h_out, wo = b->w_out;
  const int k = hsc_op_kernel(op);
  if (op == HSC_OP_XCEPTION) {
    dw_bn(c, b->main_in, 3, ho, wo); /* the stride is in the first depthwise conv */
    pw_bn(c, b->main_in, m, ho, wo);
    dw_bn(c, m, 3, ho, wo);
    pw_bn(c, m, m, ho, wo);
    dw_bn(c, m, 3, ho, wo);
    pw_bn(c, m, b->main_out, ho, wo);
  } else {
    pw_bn(c, b->main_in, m, hi, wi); /* before the strided depthwise conv: input resolution */
    dw_bn(c, m, k, ho, wo);
    pw_bn(c, m, b->main_out, ho, wo);
  }
  if (b->has_proj) {
    dw_bn(c, b->cin, k, ho, wo);
    pw_bn(c, b->cin, b->cin, ho, wo);
  }
}

static cost arch_cost(const hsc_space *s, const hsc_arch *a) {
  assert(hsc_arch_valid(s, NULL, a));
  cost c = {0, 0};
  conv_bn(&c, s->in_c, s->stem_c, 3, 1, s->stem_h, s->stem_w);
  for (int l = 0; l < s->nblocks; l++)
    block_cost(&c, &s->blocks[l], (hsc_op)a->op[l], s->mid[l][a->scale[l]]);
  const hsc_block_shape *last = &s->blocks[s->nblocks - 1];
  pw_bn(&c, last->cout, s->head_c, last->h_out, last->w_out);
  c.flops += (int64_t)s->head_c * s->classes;
  c.params += (int64_t)s->head_c * s->classes;
  return c;
}

int64_t hsc_arch_flops(const hsc_space *s, const hsc_arch *a) { return arch_cost(s, a).flops; }

int64_t hsc_arch_params(const hsc_space *s, const hsc_arch *a) { return arch_cost(s, a).params; }
