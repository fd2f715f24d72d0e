/* Training and evaluation of the supernet and of stand-alone networks, data-parallel over an MPI
 * communicator (DESIGN.md §2, §5).
 *
 * A training step t: every rank draws the same path from (run.seed, HSC_RNG_PATH, t) with no
 * communication, runs forward and backward on its shard of the global batch, the gradients of the touched
 * parameters are summed over the ranks (MPI_Allreduce) and divided by the rank count, and SGD updates the
 * touched parameters only. Checkpoints go to RUN_DIR/checkpoints/supernet-<step>.h5 (fine-tuning:
 * RUN_DIR/checkpoints/<phase>-<step>.h5; retraining: RUN_DIR/retrain-<arch hash>/retrain-<step>.h5;
 * checkpoint.h), written by rank 0 after the ranks agreed to write; a signal (signals.h) ends the loop at
 * the next step boundary with a checkpoint and HSC_ERR_STOPPED. Resuming continues bit for bit (same rank
 * count, CPU backend). */
#ifndef HSCONAS_TRAIN_H
#define HSCONAS_TRAIN_H

#include <stdint.h>

#include "hsconas/config.h"
#include "hsconas/core.h"
#include "hsconas/space.h"

typedef struct {
  int64_t step, total_steps; /* steps done, steps planned */
  double loss, top1;         /* training loss and top-1 (%) over the last logging window */
  double seconds;            /* wall time of this invocation's training loop */
  double images_per_s;       /* global images per second over this invocation */
} hsc_train_result;

typedef struct {
  double loss, top1, top5; /* mean loss; accuracies in % */
  int images;
} hsc_eval_result;

/* `hsconas train`: trains the supernet of cfg->space on the supernet-training split. resume: continue from
 * the newest valid checkpoint of run.dir (an error when run.dir already holds checkpoints and resume is 0,
 * so that nothing saved is overwritten by accident). Collective over comm. */
hsc_status hsc_train_supernet(const hsc_config *cfg, MPI_Comm comm, int resume, hsc_train_result *res,
                              hsc_error *err);

/* `hsconas eval`: loads the newest supernet checkpoint of run.dir and evaluates each architecture: BN
 * recalibration on eval.recal_batches fixed training batches, then loss and top-1/top-5 on the validation
 * split. Architectures are spread over the ranks; every rank returns all results. */
hsc_status hsc_eval_supernet(const hsc_config *cfg, MPI_Comm comm, const hsc_arch *archs, int narchs,
                             hsc_eval_result *out, hsc_error *err);

/* `hsconas retrain`: trains arch as a stand-alone network (affine BN, retrain.* schedule) on all 60k
 * training images, checkpoints under run.dir/retrain-<hash>/, and evaluates it on the test set. */
hsc_status hsc_retrain(const hsc_config *cfg, MPI_Comm comm, const hsc_arch *arch, int resume,
                       hsc_train_result *res, hsc_eval_result *test, hsc_error *err);

/* ---- search support: evaluation service and fine-tuning on a shrunk space ---- */

/* An evaluator holds what evaluating supernet paths needs on one rank: the dataset (rank 0 of comm reads it
 * and broadcasts it), the fixed validation split and recalibration images, a backend context and a
 * supernet replica sized for data.eval_batch_size. Evaluating is rank-local (no communication), so workers
 * evaluate different architectures at the same time. */
typedef struct hsc_evaluator hsc_evaluator;

/* Collective over comm. with_net 0: this rank takes part in the collective reads but holds no backend
 * context and no network and never evaluates (the search master with workers). An error naming
 * data.val_size when there is no validation split. */
hsc_status hsc_evaluator_open(hsc_evaluator **ev, const hsc_config *cfg, MPI_Comm comm, int with_net,
                              hsc_error *err);
/* Collective: rank 0 reads the newest valid checkpoint of `phase` ("supernet", "stage0", ...) in
 * RUN_DIR/checkpoints and broadcasts its weights and BN statistics into every replica. An error (naming the
 * directory) when there is none. */
hsc_status hsc_evaluator_load(hsc_evaluator *ev, const char *phase, hsc_error *err);
/* BN recalibration on eval.recal_batches fixed training batches, then loss, top-1 and top-5 on the first
 * eval.val_images images of the validation split (all of it when 0): the same numbers on any rank for the
 * same weights and architecture. Rank-local. */
void hsc_evaluator_eval(hsc_evaluator *ev, const hsc_arch *a, hsc_eval_result *out);
void hsc_evaluator_close(hsc_evaluator *ev);

/* Progressive space shrinking's fine-tuning: continues the supernet from the final checkpoint of
 * `from_phase` (weights and BN statistics; momentum restarts at 0) for `epochs` epochs at peak learning rate
 * `lr` (supernet.lr_schedule, no warm-up), every step's path drawn uniformly within `mask` from
 * (run.seed, HSC_RNG_PATH, ((stage + 1) << 40) + t), and checkpoints it as phase `phase` in
 * RUN_DIR/checkpoints (every checkpoint.every_steps, on a signal, and at the end with finished = 1), in the
 * supernet's format plus meta "stage" and the datasets /space/op_mask [nblocks, HSC_OP_COUNT] and
 * /space/scale_mask [nblocks, nscales] (uint8, 1 = allowed). The steps are epochs x batches per epoch,
 * capped by shrink.finetune_max_steps when that is > 0 (supernet.max_steps does not cap them); momentum,
 * Nesterov, weight decay and label smoothing are supernet.*'s. Resumes from that phase's newest checkpoint
 * when there is one (an error when it was written for another stage or mask); returns at once when it is
 * finished. epochs 0: nothing to train, nothing written, HSC_OK with res->step 0 (the caller goes on with
 * from_phase). Errors: from_phase has no checkpoint (naming the directory), or its newest is not finished.
 * Data-parallel and collective over comm, like hsc_train_supernet; HSC_ERR_STOPPED after a checkpoint on a
 * signal (or HSC_STOP_AT_STEP). */
hsc_status hsc_finetune_supernet(const hsc_config *cfg, MPI_Comm comm, const hsc_space_mask *mask, int stage,
                                 const char *from_phase, const char *phase, int epochs, double lr,
                                 hsc_train_result *res, hsc_error *err);

/* Operator threads of one rank: dist.threads, else 0 (the backend reads OMP_NUM_THREADS) when that is set,
 * else the node's cores divided by its ranks. */
int hsc_default_threads(const hsc_config *cfg);

/* Learning rate at step t of total: linear warm-up over `warmup` steps from lr / warmup to lr, then linear
 * decay to 0 or half-cosine decay to 0 at step total. */
double hsc_lr_at(const char *schedule, double lr, int64_t warmup, int64_t t, int64_t total);

#endif
