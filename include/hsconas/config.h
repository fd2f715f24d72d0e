/* The run configuration: a typed struct filled from YAML (libyaml) through one schema table.
 *
 * Every key has a type, a default, a range or a set of choices and a help line in the schema
 * (src/core/config_schema.c). Unknown keys, wrong types and out-of-range values are errors naming
 * file:line:column and the key. `--set key=value` overrides any key after the file is read (the value is
 * parsed as YAML flow text, so `--set space.scales=[0.5,1.0]` works). The effective configuration, with every
 * default, is printed by `hsconas config CONFIG --dump` and stored in checkpoints.
 *
 * In an MPI run rank 0 reads the file and broadcasts its bytes; every rank parses the same bytes and the
 * same overrides, so all ranks hold identical structs (DESIGN.md §2). */
#ifndef HSCONAS_CONFIG_H
#define HSCONAS_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "hsconas/core.h"

#define HSC_CFG_MAX_LIST 32
#define HSC_CFG_PATH 1024
#define HSC_CFG_NAME 32

/* A string list entry (operator names). */
typedef char hsc_cfg_name[HSC_CFG_NAME];

typedef struct {
  struct {
    char dir[HSC_CFG_PATH]; /* run directory: checkpoints, logs, results */
    int64_t seed;           /* every random stream is keyed by it */
  } run;
  struct {
    char dataset[HSC_CFG_NAME];    /* "fmnist" */
    char path[HSC_CFG_PATH];       /* directory with the dataset files */
    int batch_size;                /* GLOBAL batch of one training step, split evenly over the ranks */
    int eval_batch_size;           /* batch for evaluation and BN recalibration (per process) */
    int val_size;                  /* images of the 60k training set held out for search validation */
    int64_t split_seed;            /* seed of that split (independent of run.seed: the split is fixed) */
    int augment;                   /* random crop with padding + horizontal flip on training batches */
    int crop_pad;                  /* padding of the random crop, pixels */
    int flip;                      /* horizontal flip with probability 1/2 */
    double mean[HSC_CFG_MAX_LIST]; /* per input channel normalisation: (x/255 - mean) / std */
    int n_mean;
    double std[HSC_CFG_MAX_LIST];
    int n_std;
    int prefetch; /* background thread that prepares the next batch */
  } data;
  struct {
    int input_channels, input_size; /* square input */
    int stem_channels, stem_stride; /* 3x3 conv, BN, ReLU */
    int stage_channels[HSC_CFG_MAX_LIST];
    int n_stage_channels;
    int stage_blocks[HSC_CFG_MAX_LIST];
    int n_stage_blocks;
    int stage_strides[HSC_CFG_MAX_LIST];
    int n_stage_strides;
    int head_channels; /* 1x1 conv before the pool */
    int classes;
    hsc_cfg_name ops[HSC_CFG_MAX_LIST]; /* shuffle3 | shuffle5 | shuffle7 | xception */
    int n_ops;
    double scales[HSC_CFG_MAX_LIST]; /* channel scales of a block's mid width, increasing */
    int n_scales;
  } space;
  struct {
    int epochs;
    int64_t max_steps;              /* 0: no cap (epochs decide) */
    double lr;                      /* peak learning rate */
    char lr_schedule[HSC_CFG_NAME]; /* linear | cosine (to 0 at the last step) */
    int64_t warmup_steps;           /* linear warm-up from 0 to lr */
    double momentum;
    int nesterov;
    double weight_decay; /* on conv and linear weights only */
    double label_smoothing;
    double bn_momentum;
    double bn_eps;
    int sync_bn; /* BN batch statistics all-reduced over the ranks */
  } supernet;
  struct {
    int recal_batches; /* training batches forwarded for BN recalibration */
    int val_images;    /* validation images evaluated (0: the whole held-out split) */
  } eval;
  struct {
    int epochs;
    int64_t max_steps;
    double lr;
    char lr_schedule[HSC_CFG_NAME];
    int64_t warmup_steps;
    double momentum;
    int nesterov;
    double weight_decay;
    double label_smoothing;
  } retrain;
  struct {
    char model[HSC_CFG_PATH];    /* latency model file; "" = RUN_DIR/latency.yaml */
    double target_ms;            /* latency budget of the search; 0 = the target_quantile of random archs */
    double target_quantile;      /* used when target_ms is 0: this quantile of random architectures */
    int batch;                   /* batch size the model is profiled for and predicts */
    int fit_archs;               /* sampled architectures measured end to end for the fit of k and b */
    int holdout_archs;           /* further architectures measured to validate the model */
    char sampling[HSC_CFG_NAME]; /* spread | uniform: how those architectures are drawn */
    int warmup;                  /* untimed runs of every entry before its first sample */
    int repeats;                 /* samples of every entry (interleaved rounds); the median is kept */
    double min_sample_ms;        /* a sample times enough back-to-back runs to last at least this */
    int pin_threads;             /* bind each operator thread to one core while profiling */
    int parallel;                /* split profiling over ranks (only when each rank owns its device) */
  } latency;
  struct {
    int stages;                 /* shrinking stages before the evolution (0: no shrinking) */
    int samples;                /* feasible architectures evaluated per stage (and for DCS with 0 stages) */
    int drop_ops;               /* operators removed per block and stage */
    int drop_scales;            /* channel scales removed per block and stage */
    double latency_weight;      /* score = mean top1 - weight * choice latency share (percent points per %) */
    int finetune_epochs;        /* supernet fine-tuning on the smaller space after each stage */
    int64_t finetune_max_steps; /* cap on those steps (0: the epochs decide) */
    double finetune_lr;         /* peak learning rate of that fine-tuning */
  } shrink;
  struct {
    int enabled; /* dynamic channel scaling of every candidate to the latency target */
  } dcs;
  struct {
    char mode[HSC_CFG_NAME];      /* generational | steady */
    char objective[HSC_CFG_NAME]; /* single | pareto */
    int population, generations, topk, mutations, crossovers;
    double mutation_prob;    /* per gene (operator and scale separately) */
    double benchmark_eval_s; /* > 0: benchmark mode, a synthetic evaluation of this duration */
  } evolution;
  struct {
    int64_t every_steps; /* 0: only at the end and on a signal */
    int every_evals;     /* search: evaluations between checkpoints (0: only at phase ends and on a signal) */
    int keep;            /* newest checkpoints kept per phase */
  } checkpoint;
  struct {
    char backend[HSC_CFG_NAME]; /* cpu | cuda */
    int threads;                /* CPU threads per rank; 0: OMP_NUM_THREADS, else cores / local ranks */
    int gpus_per_node;          /* cuda: devices a node's ranks are spread over; 0: all visible */
    double eval_timeout_s;      /* search: a worker that takes longer is abandoned, its candidate re-sent */
  } dist;
  struct {
    int every_steps; /* progress line period */
  } log;
} hsc_config;

/* ---- The schema: one entry per key (src/core/config_schema.c), in dump order. ---- */

typedef enum {
  HSC_CFG_INT,        /* int */
  HSC_CFG_INT64,      /* int64_t */
  HSC_CFG_FLOAT,      /* double, finite */
  HSC_CFG_BOOL,       /* int 0/1; true/false, yes/no, on/off */
  HSC_CFG_STRING,     /* char[size], NUL-terminated; longer values are rejected */
  HSC_CFG_ENUM,       /* char[size] holding one of `choices` */
  HSC_CFG_INT_LIST,   /* int[HSC_CFG_MAX_LIST] + int count */
  HSC_CFG_FLOAT_LIST, /* double[HSC_CFG_MAX_LIST] + int count */
  HSC_CFG_ENUM_LIST,  /* hsc_cfg_name[HSC_CFG_MAX_LIST] + int count, each one of `choices` */
  HSC_CFG_TYPE_COUNT
} hsc_cfg_type;

/* Float bounds that are excluded from the range (bit flags of hsc_cfg_key.open). */
enum { HSC_CFG_LO_OPEN = 1, HSC_CFG_HI_OPEN = 2 };

typedef struct {
  const char *key; /* "section.name" */
  hsc_cfg_type type;
  size_t offset;       /* of the value (of the array, for lists) in hsc_config */
  size_t size;         /* bytes of the value: the capacity with the NUL for strings, the array for lists */
  size_t count_offset; /* lists: of the int item count */
  const char *def;     /* the default as YAML flow text, parsed like a --set value */
  int64_t imin, imax;  /* int, int64 and int-list items: inclusive range */
  double fmin, fmax;   /* float and float-list items: range, ends excluded per `open` */
  int open;            /* HSC_CFG_LO_OPEN | HSC_CFG_HI_OPEN */
  const char *const *choices; /* enum and enum-list: the allowed names, NULL-terminated */
  const char *help;           /* one line for --keys and dump comments */
} hsc_cfg_key;

/* The schema table and its length. */
const hsc_cfg_key *hsc_config_schema(size_t *count);
/* The entry of a dotted key, NULL when there is none. */
const hsc_cfg_key *hsc_config_find(const char *key);
/* "int", "float list", ... */
const char *hsc_config_type_name(hsc_cfg_type type);

/* Fills every key with its default. */
void hsc_config_defaults(hsc_config *cfg);

/* Parses YAML text into cfg (which should hold the defaults or an earlier layer). `name` is the file name
 * used in messages. On error cfg may be partly modified. */
hsc_status hsc_config_parse(hsc_config *cfg, const char *text, size_t len, const char *name, hsc_error *err);

/* Applies one "key=value" override (value is YAML flow text). Errors name the override. */
hsc_status hsc_config_set(hsc_config *cfg, const char *assignment, hsc_error *err);

/* Checks relations between keys (list lengths, batch divisible by ranks, ...). world_size 0: skip the
 * rank-dependent checks. */
hsc_status hsc_config_validate(const hsc_config *cfg, int world_size, hsc_error *err);

/* Defaults + file + overrides + validate. Rank 0 of comm reads the file and broadcasts its bytes; every
 * rank returns the same status and message (collective over comm). path NULL: defaults + overrides only.
 * A file that cannot be read is HSC_ERR_IO naming the path; everything else wrong is HSC_ERR_INPUT. */
hsc_status hsc_config_load(hsc_config *cfg, const char *path, const char *const *sets, int nsets,
                           MPI_Comm comm, hsc_error *err);
/* The same, with the checks that depend on the rank count (data.batch_size divisible by it) only when
 * check_ranks is set: the search trains only when it fine-tunes, and checks that itself. */
hsc_status hsc_config_load_ranks(hsc_config *cfg, const char *path, const char *const *sets, int nsets,
                                 MPI_Comm comm, int check_ranks, hsc_error *err);

/* The effective configuration as YAML, every key with its value, in schema order (with help comments when
 * `comments`). Returns a malloc'd string. Parsing it back gives the same struct. */
char *hsc_config_dump(const hsc_config *cfg, int comments);

/* 64-bit FNV-1a hash of the dump without comments (names the configuration in checkpoints). */
uint64_t hsc_config_hash(const hsc_config *cfg);

/* Prints the schema (key, type, default, range, help) for `hsconas config --keys`. */
void hsc_config_print_schema(FILE *out);

#endif
