/* The weight-sharing supernet (DESIGN.md §1, the network of space.h) on one backend.
 *
 * Parameters live in ONE backend buffer described by a table of (name, shape, offset); gradients and
 * momentum mirror it (STYLE.md §5). BN running statistics live in a second table and buffer ("state").
 * Every block holds all of the space's operators at the largest channel scale; a path (an hsc_arch) uses
 * one operator per block and the leading channels of its weights. A stand-alone network (retrain) is the
 * same code built for one fixed architecture, with affine BN.
 *
 * Parameter names (also the HDF5 dataset names under /params, and what tests/ref/spos.py loads):
 *   stem.conv [stem_c, in_c, 3, 3], BN stem.bn
 *   blocks.L.OP.pw1 / dw / pw2 (+ bn1..bn3) for shuffleK; dw1, pw1, dw2, pw2, dw3, pw3 (+ bn1..bn6) for
 *   xception; blocks.L.OP.proj.dw / proj.pw (+ proj.bn1, proj.bn2) on the first block of a stage;
 *   head.conv [head_c, last], BN head.bn; classifier [classes, head_c].
 *   Pointwise weights are [out, in], depthwise [c, k, k]. A BN named X has state X.mean and X.var and,
 *   with affine BN, parameters X.gamma and X.beta.
 * Initialisation as SPOS (megvii's OneShot code): the stem conv N(0, 0.01), other convs N(0, 1 / fan-in per
 * group) (so a depthwise kernel is N(0, 1)), the classifier N(0, 0.01); BN gamma 1, beta 1e-4, running mean
 * 0, running variance 1. Each parameter draws from its own stream (seed, HSC_RNG_INIT, table index). */
#ifndef HSCONAS_SUPERNET_H
#define HSCONAS_SUPERNET_H

#include <stddef.h>
#include <stdint.h>

#include "hsconas/backend.h"
#include "hsconas/core.h"
#include "hsconas/space.h"

typedef struct {
  char name[64];
  int ndim;
  int64_t dims[4];
  size_t offset, count; /* in floats */
  float decay;          /* 1: conv/linear weight (weight decay applies); 0: BN parameter or statistic */
} hsc_param;

typedef struct {
  hsc_param *v;
  int n, cap;
  size_t total; /* floats */
} hsc_param_table;

/* Index of a name, or -1. */
int hsc_param_find(const hsc_param_table *t, const char *name);

typedef enum {
  HSC_BN_TRAIN, /* batch statistics; running statistics updated with supernet.bn_momentum */
  HSC_BN_RECAL, /* batch statistics; running statistics = exact average over the recalibration batches */
  HSC_BN_EVAL,  /* running statistics */
} hsc_bn_mode;

typedef struct hsc_supernet hsc_supernet;

/* Builds the network on a backend context (not owned) for batches of up to max_batch images. fixed NULL:
 * the supernet of the whole space (BN without affine, as SPOS); else the stand-alone network of that one
 * architecture (affine BN). Buffers are allocated once here. Weights are zero until init_weights. */
hsc_status hsc_supernet_create(hsc_supernet **net, const hsc_space *s, const hsc_arch *fixed,
                               const hsc_backend *be, hsc_backend_ctx *ctx, int max_batch, hsc_error *err);
void hsc_supernet_free(hsc_supernet *net);

const hsc_space *hsc_supernet_space(const hsc_supernet *net);
const hsc_param_table *hsc_supernet_params(const hsc_supernet *net);
const hsc_param_table *hsc_supernet_state(const hsc_supernet *net);
/* Backend buffers: weights, gradients, momentum [params.total]; BN statistics [state.total]. */
float *hsc_supernet_weights(hsc_supernet *net);
float *hsc_supernet_grads(hsc_supernet *net);
float *hsc_supernet_momentum(hsc_supernet *net);
float *hsc_supernet_stats(hsc_supernet *net);

void hsc_supernet_init_weights(hsc_supernet *net, uint64_t seed);
void hsc_supernet_set_bn(hsc_supernet *net, float momentum, float eps);
/* Sync BN: batch statistics (forward) and the backward's reductions are all-reduced over comm, whose
 * ranks must all run the same path on equal batch sizes. MPI_COMM_NULL (the default) turns it off. */
void hsc_supernet_set_sync(hsc_supernet *net, MPI_Comm comm);
/* Backends with device collectives (backend.h allreduce_mean: NCCL on the GPU backend) average the
 * gradients during the backward, in buckets of at least `floats` floats (default 2^20), each started as
 * soon as the backward has finished it. Smaller buckets overlap more and cost more calls. */
void hsc_supernet_set_bucket(hsc_supernet *net, size_t floats);
/* Starts a recalibration: the next HSC_BN_RECAL forwards average their batch statistics exactly. */
void hsc_supernet_recal_begin(hsc_supernet *net);

/* Copies a host batch in: x [n, c, h, w], y [n] (y may be NULL for a forward without loss). */
void hsc_supernet_load_batch(hsc_supernet *net, int n, const float *x, const int32_t *y);
/* Forward of path a on the loaded batch. Returns the logits [n, classes] (backend memory). */
const float *hsc_supernet_forward(hsc_supernet *net, const hsc_arch *a, hsc_bn_mode mode);

/* One part of that forward, on the buffers the whole forward uses (its input is what the part before it
 * left there): part -1 is the stem, 0 .. nblocks-1 the blocks, nblocks the head with the pool and the
 * classifier. hsc_supernet_forward is the parts in order; the latency profiler times them one by one. */
void hsc_supernet_forward_part(hsc_supernet *net, const hsc_arch *a, int part, hsc_bn_mode mode);

typedef struct {
  double loss; /* mean over the batch (label-smoothed) */
  int top1, top5;
} hsc_batch_result;

/* Loss and accuracy of the last forward against the loaded labels. With backward set, also the gradient of
 * the mean loss with respect to the logits (ready for hsc_supernet_backward). */
hsc_batch_result hsc_supernet_loss(hsc_supernet *net, float smoothing, int backward);
/* Backward of the last training forward (same path): ACCUMULATES parameter gradients of the touched
 * parameters into the gradient buffer. */
void hsc_supernet_backward(hsc_supernet *net, const hsc_arch *a);

/* The parameter regions path a touches (weights at its widths, affine BN parameters), each with the weight
 * decay factor `wd` applied where the parameter decays. Returns the count (<= hsc_supernet_max_regions). */
int hsc_supernet_regions(const hsc_supernet *net, const hsc_arch *a, float wd, hsc_region *r);
int hsc_supernet_max_regions(const hsc_supernet *net);

typedef struct {
  float lr, momentum, weight_decay, smoothing;
  int nesterov;
} hsc_step_opts;

/* One data-parallel training step on the loaded batch (every rank of comm calls it with the same path and
 * its own shard): forward, loss, backward, gradients of the touched parameters summed over comm and divided
 * by its size (no communication on a 1-rank comm), SGD on the touched parameters, their gradients zeroed.
 * Returns this rank's batch loss and hits. */
hsc_batch_result hsc_supernet_train_step(hsc_supernet *net, const hsc_arch *a, MPI_Comm comm,
                                         const hsc_step_opts *o);

#endif
