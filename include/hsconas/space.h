/* The search space and its architectures (DESIGN.md §1).
 *
 * Network: stem (3x3 conv stride stem_stride, BN, ReLU) -> choice blocks in stages -> head (1x1 conv, BN,
 * ReLU) -> global average pool -> linear classifier without bias.
 *
 * Block l of a stage with output width C: the first block of a stage (index 0 in its stage) has
 * cin = previous width, stride = the stage's stride, and a projection branch (depthwise k x k with the
 * block's stride + BN, pointwise cin->cin + BN + ReLU; k = 3 for xception) that sees the whole input; its
 * main branch also sees the whole input (main_in = cin) and outputs main_out = C - cin channels. The other
 * blocks have stride 1, split their input (even channels pass through, odd ones enter the main branch):
 * main_in = C / 2, main_out = C / 2, no projection.
 *
 * Main branch at mid width m = mid[l][scale]:
 *   shuffleK: pw main_in->m, BN, ReLU; dw KxK (stride), BN; pw m->main_out, BN, ReLU
 *   xception: dw 3x3 (stride) on main_in, BN; pw main_in->m, BN, ReLU; dw 3x3, BN; pw m->m, BN, ReLU;
 *             dw 3x3, BN; pw m->main_out, BN, ReLU
 * mid[l][s] = max(1, floor(C / 2 * scales[s] + 1e-6)) (the 1e-6 absorbs the decimal scale's binary error).
 * The supernet allocates every block at its largest scale; a path uses the leading channels. */
#ifndef HSCONAS_SPACE_H
#define HSCONAS_SPACE_H

#include <stdint.h>
#include <stdio.h>

#include "hsconas/config.h"
#include "hsconas/core.h"
#include "hsconas/rng.h"

#define HSC_MAX_BLOCKS 64
#define HSC_MAX_SCALES 16

typedef enum { HSC_OP_SHUFFLE3, HSC_OP_SHUFFLE5, HSC_OP_SHUFFLE7, HSC_OP_XCEPTION, HSC_OP_COUNT } hsc_op;

/* "shuffle3", ...; NULL for an invalid value. */
const char *hsc_op_name(hsc_op op);
/* The depthwise kernel size of the main branch (3, 5, 7; 3 for xception). */
int hsc_op_kernel(hsc_op op);

typedef struct {
  int stage;             /* index of its stage */
  int cin, cout, stride; /* block input/output widths */
  int h_in, w_in, h_out, w_out;
  int has_proj;          /* first block of a stage */
  int main_in, main_out; /* main branch widths */
} hsc_block_shape;

typedef struct {
  int in_c, in_h, in_w;
  int stem_c, stem_stride, stem_h, stem_w; /* stem output */
  int nblocks;
  hsc_block_shape blocks[HSC_MAX_BLOCKS];
  int head_c, classes;
  int nops;
  hsc_op ops[HSC_OP_COUNT]; /* the operators of this space, in config order: choice index -> op */
  int nscales;
  double scales[HSC_MAX_SCALES];
  int mid[HSC_MAX_BLOCKS][HSC_MAX_SCALES]; /* mid width per block and scale index */
  int max_mid[HSC_MAX_BLOCKS];             /* mid at the largest scale */
  uint64_t hash;                           /* of everything above: names the space in model files */
} hsc_space;

/* One gene per block: op is an hsc_op value (one of space->ops), scale an index into space->scales. */
typedef struct {
  int nblocks;
  uint8_t op[HSC_MAX_BLOCKS];
  uint8_t scale[HSC_MAX_BLOCKS];
} hsc_arch;

/* Allowed choices per block (progressive space shrinking removes some). Ops are indexed by hsc_op. */
typedef struct {
  uint8_t op[HSC_MAX_BLOCKS][HSC_OP_COUNT];
  uint8_t scale[HSC_MAX_BLOCKS][HSC_MAX_SCALES];
} hsc_space_mask;

/* Builds the space from cfg->space; errors name the key (e.g. an unknown operator, a stage width that is
 * odd or not wider than the stage's input, more than HSC_MAX_BLOCKS blocks or HSC_MAX_SCALES scales, a
 * spatial size that drops to 0). */
hsc_status hsc_space_init(hsc_space *s, const hsc_config *cfg, hsc_error *err);

/* Every choice the space has allowed. */
void hsc_space_mask_full(const hsc_space *s, hsc_space_mask *m);

/* Uniform sample: each block's op uniformly among the allowed ops, its scale uniformly among the allowed
 * scales (mask NULL: all). Draws from r only. */
void hsc_arch_sample(const hsc_space *s, const hsc_space_mask *m, hsc_rng *r, hsc_arch *a);

/* The architecture with every block at op `op` and scale index `scale_index` (for tests and profiling). */
void hsc_arch_uniform(const hsc_space *s, hsc_op op, int scale_index, hsc_arch *a);

/* Text form "shuffle3:1.0,xception:0.6,..." (one gene per block). Scales print with at least one decimal
 * ("%.1f" when that is exact for the list value, else the shortest "%g" that parses back). Returns the
 * length written (snprintf semantics). */
int hsc_arch_format(const hsc_space *s, const hsc_arch *a, char *buf, size_t len);
/* Parses the text form, or the YAML list form ("[shuffle3:1.0, ...]" or a block sequence "- shuffle3:1.0"
 * one per line), optionally after an "arch:" key and with "#" comments, so hsc_arch_write_yaml's output
 * reads back. Errors say which gene is wrong (numbered from 0, like the blocks) and why (unknown op, op
 * not in this space, scale not in the list, wrong number of blocks); `a` is left alone on error. */
hsc_status hsc_arch_parse(const hsc_space *s, const char *text, hsc_arch *a, hsc_error *err);
/* Writes the YAML form: "arch:\n  - shuffle3:1.0\n ..." plus hash, flops and params as comments. */
void hsc_arch_write_yaml(const hsc_space *s, const hsc_arch *a, FILE *out);

/* 64-bit hash of the genes (FNV-1a over (op, scale value) pairs, not indices: stable when the list grows). */
uint64_t hsc_arch_hash(const hsc_space *s, const hsc_arch *a);
int hsc_arch_equal(const hsc_arch *a, const hsc_arch *b);
/* 1 when every gene is allowed by the space (and the mask, when not NULL). */
int hsc_arch_valid(const hsc_space *s, const hsc_space_mask *m, const hsc_arch *a);

/* Multiply-accumulates of one image's forward pass through conv and linear layers (what SPOS and the
 * ShuffleNet papers call FLOPs; BN, ReLU, pool and the shuffle are not counted). */
int64_t hsc_arch_flops(const hsc_space *s, const hsc_arch *a);
/* Parameters of the architecture as a stand-alone network: conv and linear weights plus the affine BN
 * gamma and beta (2 per channel of every BN). */
int64_t hsc_arch_params(const hsc_space *s, const hsc_arch *a);

#endif
