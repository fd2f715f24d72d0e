/* The one schema table of hsc_config: every key with its type, place in the struct, default, range or
 * choices, and help line. The parser, the defaults, the dump and `--keys` all walk this table; the order
 * here is the order of the dump. tests/test_config.c checks that the entries cover every byte of
 * hsc_config that is not padding, so a field added to the struct without an entry fails the tests. */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "hsconas/config.h"

#define MEMBER_SIZE(f) sizeof(((hsc_config *)0)->f)
#define AT(f) .offset = offsetof(hsc_config, f), .size = MEMBER_SIZE(f)

/* Integers: inclusive [lo, hi]. */
#define KEY_INT(k, f, d, lo, hi, h) \
  { .key = k, .type = HSC_CFG_INT, AT(f), .def = d, .imin = (lo), .imax = (hi), .help = h }
#define KEY_INT64(k, f, d, lo, hi, h) \
  { .key = k, .type = HSC_CFG_INT64, AT(f), .def = d, .imin = (lo), .imax = (hi), .help = h }
/* Floats: [lo, hi] with the ends named in `open` excluded; +-INFINITY for no bound. */
#define KEY_FLOAT(k, f, d, lo, hi, op, h) \
  { .key = k, .type = HSC_CFG_FLOAT, AT(f), .def = d, .fmin = (lo), .fmax = (hi), .open = (op), .help = h }
#define KEY_BOOL(k, f, d, h) \
  { .key = k, .type = HSC_CFG_BOOL, AT(f), .def = d, .help = h }
#define KEY_STRING(k, f, d, h) \
  { .key = k, .type = HSC_CFG_STRING, AT(f), .def = d, .help = h }
#define KEY_ENUM(k, f, d, ch, h) \
  { .key = k, .type = HSC_CFG_ENUM, AT(f), .def = d, .choices = ch, .help = h }
/* Lists: the range or choices apply to each item; the item count is checked by hsc_config_validate. */
#define KEY_INT_LIST(k, f, n, d, lo, hi, h)                                                       \
  {                                                                                               \
    .key = k, .type = HSC_CFG_INT_LIST, AT(f), .count_offset = offsetof(hsc_config, n), .def = d, \
    .imin = (lo), .imax = (hi), .help = h                                                         \
  }
#define KEY_FLOAT_LIST(k, f, n, d, lo, hi, op, h)                                                   \
  {                                                                                                 \
    .key = k, .type = HSC_CFG_FLOAT_LIST, AT(f), .count_offset = offsetof(hsc_config, n), .def = d, \
    .fmin = (lo), .fmax = (hi), .open = (op), .help = h                                             \
  }
#define KEY_ENUM_LIST(k, f, n, d, ch, h)                                                           \
  {                                                                                                \
    .key = k, .type = HSC_CFG_ENUM_LIST, AT(f), .count_offset = offsetof(hsc_config, n), .def = d, \
    .choices = ch, .help = h                                                                       \
  }

#define NO_LIMIT64 INT64_MAX
#define CLOSED 0
#define LO_OPEN HSC_CFG_LO_OPEN
#define HI_OPEN HSC_CFG_HI_OPEN

static const char *const datasets[] = {"fmnist", NULL};
/* The names of hsc_op (space.h), in its order. */
static const char *const ops[] = {"shuffle3", "shuffle5", "shuffle7", "xception", NULL};
static const char *const schedules[] = {"linear", "cosine", NULL};
static const char *const samplings[] = {"spread", "uniform", NULL};
static const char *const backends[] = {"cpu", "cuda", NULL};
static const char *const evo_modes[] = {"generational", "steady", NULL};
static const char *const objectives[] = {"single", "pareto", NULL};

static const hsc_cfg_key schema[] = {
    KEY_STRING("run.dir", run.dir, "runs/fmnist",
               "run directory: effective config, checkpoints and progress tables go here"),
    KEY_INT64("run.seed", run.seed, "1", 0, NO_LIMIT64, "seed of every random stream of the run"),

    KEY_ENUM("data.dataset", data.dataset, "fmnist", datasets, "dataset to train and search on"),
    KEY_STRING("data.path", data.path, "/usr/share/datasets/fashion-mnist",
               "directory with the dataset files"),
    KEY_INT("data.batch_size", data.batch_size, "128", 1, 65536,
            "global batch of one training step, split evenly over the ranks"),
    KEY_INT("data.eval_batch_size", data.eval_batch_size, "500", 1, 65536,
            "batch per process for evaluation and BN recalibration"),
    KEY_INT("data.val_size", data.val_size, "5000", 0, 59999,
            "images of the 60k training set held out for search validation"),
    KEY_INT64("data.split_seed", data.split_seed, "0", 0, NO_LIMIT64,
              "seed of the train/validation split (independent of run.seed)"),
    KEY_BOOL("data.augment", data.augment, "true", "augment training batches (random crop, flip)"),
    KEY_INT("data.crop_pad", data.crop_pad, "2", 0, 64, "zero padding of the random crop, pixels"),
    KEY_BOOL("data.flip", data.flip, "true", "horizontal flip of training images with probability 1/2"),
    KEY_FLOAT_LIST("data.mean", data.mean, data.n_mean, "[0.2860]", -INFINITY, INFINITY, CLOSED,
                   "per-channel mean of x/255, subtracted before dividing by std"),
    KEY_FLOAT_LIST("data.std", data.std, data.n_std, "[0.3530]", 0.0, INFINITY, LO_OPEN,
                   "per-channel standard deviation of x/255"),
    KEY_BOOL("data.prefetch", data.prefetch, "true", "prepare the next batch on a background thread"),

    KEY_INT("space.input_channels", space.input_channels, "1", 1, 4, "channels of the input images"),
    KEY_INT("space.input_size", space.input_size, "28", 8, 1024, "height and width of the (square) input"),
    KEY_INT("space.stem_channels", space.stem_channels, "16", 1, 8192,
            "output channels of the 3x3 stem conv"),
    KEY_INT("space.stem_stride", space.stem_stride, "1", 1, 2, "stride of the stem conv"),
    KEY_INT_LIST("space.stage_channels", space.stage_channels, space.n_stage_channels, "[48, 96, 192]", 2,
                 8192, "output channels of each stage"),
    KEY_INT_LIST("space.stage_blocks", space.stage_blocks, space.n_stage_blocks, "[2, 4, 2]", 1, 64,
                 "choice blocks in each stage"),
    KEY_INT_LIST("space.stage_strides", space.stage_strides, space.n_stage_strides, "[2, 2, 1]", 1, 2,
                 "stride of the first block of each stage"),
    KEY_INT("space.head_channels", space.head_channels, "512", 1, 65536,
            "output channels of the 1x1 head conv before the pool"),
    KEY_INT("space.classes", space.classes, "10", 2, 100000, "classes of the linear classifier"),
    KEY_ENUM_LIST("space.ops", space.ops, space.n_ops, "[shuffle3, shuffle5, shuffle7, xception]", ops,
                  "operators a choice block can take"),
    KEY_FLOAT_LIST("space.scales", space.scales, space.n_scales,
                   "[0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]", 0.0, 4.0, LO_OPEN,
                   "channel scales of a block's mid width, strictly increasing"),

    KEY_INT("supernet.epochs", supernet.epochs, "30", 0, 100000, "supernet training epochs"),
    KEY_INT64("supernet.max_steps", supernet.max_steps, "0", 0, NO_LIMIT64,
              "cap on supernet training steps (0: the epochs decide)"),
    KEY_FLOAT("supernet.lr", supernet.lr, "0.1", 0.0, 100.0, CLOSED, "peak learning rate of the supernet"),
    KEY_ENUM("supernet.lr_schedule", supernet.lr_schedule, "linear", schedules,
             "decay of the learning rate to 0 at the last step"),
    KEY_INT64("supernet.warmup_steps", supernet.warmup_steps, "0", 0, NO_LIMIT64,
              "steps of linear warm-up from 0 to the peak learning rate"),
    KEY_FLOAT("supernet.momentum", supernet.momentum, "0.9", 0.0, 1.0, HI_OPEN, "SGD momentum"),
    KEY_BOOL("supernet.nesterov", supernet.nesterov, "false", "Nesterov momentum"),
    KEY_FLOAT("supernet.weight_decay", supernet.weight_decay, "4e-5", 0.0, 1.0, CLOSED,
              "L2 weight decay on conv and linear weights"),
    KEY_FLOAT("supernet.label_smoothing", supernet.label_smoothing, "0.1", 0.0, 1.0, HI_OPEN,
              "label smoothing of the cross-entropy loss"),
    KEY_FLOAT("supernet.bn_momentum", supernet.bn_momentum, "0.1", 0.0, 1.0, LO_OPEN,
              "weight of the batch in the BN running statistics"),
    KEY_FLOAT("supernet.bn_eps", supernet.bn_eps, "1e-5", 0.0, 1.0, LO_OPEN,
              "epsilon added to the BN variance"),
    KEY_BOOL("supernet.sync_bn", supernet.sync_bn, "false", "all-reduce BN batch statistics over the ranks"),

    KEY_INT("eval.recal_batches", eval.recal_batches, "20", 0, 100000,
            "training batches forwarded to recalibrate BN before evaluating a path"),
    KEY_INT("eval.val_images", eval.val_images, "0", 0, INT_MAX,
            "validation images evaluated per path (0: the whole held-out split)"),

    KEY_INT("retrain.epochs", retrain.epochs, "20", 0, 100000,
            "retraining epochs of the chosen architecture"),
    KEY_INT64("retrain.max_steps", retrain.max_steps, "0", 0, NO_LIMIT64,
              "cap on retraining steps (0: the epochs decide)"),
    KEY_FLOAT("retrain.lr", retrain.lr, "0.1", 0.0, 100.0, CLOSED, "peak learning rate of the retraining"),
    KEY_ENUM("retrain.lr_schedule", retrain.lr_schedule, "cosine", schedules,
             "decay of the learning rate to 0 at the last step"),
    KEY_INT64("retrain.warmup_steps", retrain.warmup_steps, "200", 0, NO_LIMIT64,
              "steps of linear warm-up from 0 to the peak learning rate"),
    KEY_FLOAT("retrain.momentum", retrain.momentum, "0.9", 0.0, 1.0, HI_OPEN, "SGD momentum"),
    KEY_BOOL("retrain.nesterov", retrain.nesterov, "true", "Nesterov momentum"),
    KEY_FLOAT("retrain.weight_decay", retrain.weight_decay, "5e-4", 0.0, 1.0, CLOSED,
              "L2 weight decay on conv and linear weights"),
    KEY_FLOAT("retrain.label_smoothing", retrain.label_smoothing, "0.1", 0.0, 1.0, HI_OPEN,
              "label smoothing of the cross-entropy loss"),

    KEY_STRING("latency.model", latency.model, "\"\"",
               "latency model file (\"\": RUN_DIR/latency.yaml), written by profile, read by latency/search"),
    KEY_FLOAT("latency.target_ms", latency.target_ms, "0", 0.0, INFINITY, CLOSED,
              "latency budget of the search in ms (0: latency.target_quantile of random architectures)"),
    KEY_FLOAT("latency.target_quantile", latency.target_quantile, "0.5", 0.0, 1.0, LO_OPEN,
              "with target_ms 0: the target is this quantile of the predicted latency of 1000 random "
              "architectures (0.5: the median)"),
    KEY_INT("latency.batch", latency.batch, "1", 1, 65536, "batch size the latency model is profiled for"),
    KEY_INT("latency.fit_archs", latency.fit_archs, "100", 2, 100000,
            "sampled architectures measured end to end to fit k and b"),
    KEY_INT("latency.holdout_archs", latency.holdout_archs, "100", 0, 100000,
            "further sampled architectures measured to validate the model"),
    KEY_ENUM("latency.sampling", latency.sampling, "spread", samplings,
             "spread: each architecture's scales drawn from a random sub-range (small to large networks); "
             "uniform: every gene uniform"),
    KEY_INT("latency.warmup", latency.warmup, "3", 0, 100000,
            "untimed runs of every LUT entry and architecture before its first sample"),
    KEY_INT("latency.repeats", latency.repeats, "15", 1, 100000,
            "samples per entry, taken in interleaved rounds; the median is kept"),
    KEY_FLOAT("latency.min_sample_ms", latency.min_sample_ms, "2", 0.0, 10000.0, CLOSED,
              "a sample times enough back-to-back runs to last at least this long"),
    KEY_BOOL("latency.pin_threads", latency.pin_threads, "false",
             "bind each operator thread to its own core while profiling"),
    KEY_BOOL("latency.parallel", latency.parallel, "false",
             "split profiling over the ranks (only when every rank owns its own device)"),

    KEY_INT("shrink.stages", shrink.stages, "2", 0, 100,
            "progressive space shrinking: stages before the evolution (0: no shrinking)"),
    KEY_INT("shrink.samples", shrink.samples, "100", 1, 1000000,
            "feasible architectures evaluated per stage (with 0 stages: once, to calibrate DCS)"),
    KEY_INT("shrink.drop_ops", shrink.drop_ops, "1", 0, 3, "operators removed per block and stage"),
    KEY_INT("shrink.drop_scales", shrink.drop_scales, "2", 0, 15,
            "channel scales removed per block and stage"),
    KEY_FLOAT("shrink.latency_weight", shrink.latency_weight, "0", 0.0, INFINITY, CLOSED,
              "choice score = mean top1 of the feasible samples with it - weight * its share of their "
              "latency in %"),
    KEY_INT("shrink.finetune_epochs", shrink.finetune_epochs, "1", 0, 10000,
            "supernet fine-tuning epochs on the smaller space after each stage"),
    KEY_INT64("shrink.finetune_max_steps", shrink.finetune_max_steps, "0", 0, NO_LIMIT64,
              "cap on the fine-tuning steps of a stage (0: the epochs decide)"),
    KEY_FLOAT("shrink.finetune_lr", shrink.finetune_lr, "0.01", 0.0, INFINITY, LO_OPEN,
              "peak learning rate of that fine-tuning (supernet.lr_schedule, no warm-up)"),

    KEY_BOOL("dcs.enabled", dcs.enabled, "true",
             "dynamic channel scaling: fit every candidate's channel scales to the latency target"),

    KEY_ENUM("evolution.mode", evolution.mode, "generational", evo_modes,
             "generational (the paper's, reproducible for any rank count) or steady (asynchronous)"),
    KEY_ENUM("evolution.objective", evolution.objective, "single", objectives,
             "single: best top1 under the target; pareto: the front of top1 vs predicted latency"),
    KEY_INT("evolution.population", evolution.population, "50", 2, 100000, "candidates per generation"),
    KEY_INT("evolution.generations", evolution.generations, "20", 1, 100000, "generations"),
    KEY_INT("evolution.topk", evolution.topk, "10", 1, 100000, "parents: the best candidates so far"),
    KEY_INT("evolution.mutations", evolution.mutations, "25", 0, 100000, "mutated children per generation"),
    KEY_INT("evolution.crossovers", evolution.crossovers, "25", 0, 100000,
            "uniform crossover children per generation (the rest of the population is random)"),
    KEY_FLOAT("evolution.mutation_prob", evolution.mutation_prob, "0.1", 0.0, 1.0, CLOSED,
              "probability that a mutation redraws a block's operator (and, separately, its scale)"),
    KEY_FLOAT("evolution.benchmark_eval_s", evolution.benchmark_eval_s, "0", 0.0, 86400.0, CLOSED,
              "benchmark mode (bench/dispatch): > 0 replaces the evaluation by a synthetic one lasting "
              "this long; no supernet is read"),

    KEY_INT64("checkpoint.every_steps", checkpoint.every_steps, "500", 0, NO_LIMIT64,
              "steps between checkpoints (0: only at the end and on a signal)"),
    KEY_INT("checkpoint.every_evals", checkpoint.every_evals, "1", 0, INT_MAX,
            "search: evaluations between checkpoints (0: only at phase ends and on a signal)"),
    KEY_INT("checkpoint.keep", checkpoint.keep, "3", 1, 1000, "newest checkpoints kept per phase"),

    KEY_ENUM("dist.backend", dist.backend, "cpu", backends, "compute backend of every rank"),
    KEY_INT("dist.threads", dist.threads, "0", 0, 1024,
            "CPU threads per rank (0: OMP_NUM_THREADS, else the node's cores / its ranks)"),
    KEY_INT("dist.gpus_per_node", dist.gpus_per_node, "0", 0, 1024,
            "cuda: GPUs per node; node-local rank r uses device r mod this (0: all visible devices)"),
    KEY_FLOAT("dist.eval_timeout_s", dist.eval_timeout_s, "600", 0.0, INFINITY, LO_OPEN,
              "search: a worker whose evaluation takes longer is no longer used; its candidate is sent "
              "to another"),

    KEY_INT("log.every_steps", log.every_steps, "50", 1, INT_MAX, "steps between progress lines"),
};

const hsc_cfg_key *hsc_config_schema(size_t *count) {
  *count = ARRAY_LEN(schema);
  return schema;
}

const hsc_cfg_key *hsc_config_find(const char *key) {
  for (size_t i = 0; i < ARRAY_LEN(schema); i++)
    if (!strcmp(schema[i].key, key)) return &schema[i];
  return NULL;
}

static const char *const type_names[] = {
    [HSC_CFG_INT] = "int",           [HSC_CFG_INT64] = "int64",           [HSC_CFG_FLOAT] = "float",
    [HSC_CFG_BOOL] = "bool",         [HSC_CFG_STRING] = "string",         [HSC_CFG_ENUM] = "enum",
    [HSC_CFG_INT_LIST] = "int list", [HSC_CFG_FLOAT_LIST] = "float list", [HSC_CFG_ENUM_LIST] = "enum list",
};
_Static_assert(ARRAY_LEN(type_names) == HSC_CFG_TYPE_COUNT, "one name per hsc_cfg_type");

const char *hsc_config_type_name(hsc_cfg_type type) {
  if ((unsigned)type >= ARRAY_LEN(type_names)) return "unknown type";
  return type_names[type];
}
