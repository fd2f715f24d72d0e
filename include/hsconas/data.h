/* Datasets and the batch loader.
 *
 * A dataset is held in memory as uint8 images [n, c, h, w] and int32 labels. Fashion-MNIST comes from the
 * IDX files of Debian's dataset-fashion-mnist package (gzip, read through zlib). The 60k training images
 * are split once, deterministically from data.split_seed, into the supernet-training part and the
 * search-validation part (data.val_size images); the 10k test set is kept for final reporting.
 *
 * Batches are float32 [n, c, h, w], normalised as (x / 255 - mean[c]) / std[c]. Randomness is counter-based
 * (DESIGN.md §5): the order of epoch e is a permutation drawn from (seed, HSC_RNG_DATA, e); the crop and
 * flip of the sample at position p of epoch e come from (seed, HSC_RNG_AUGMENT, e * n + p). A sample's
 * treatment therefore depends only on (seed, epoch, position), never on the rank count: rank r of R takes
 * rows [r * B / R, (r + 1) * B / R) of every global batch of B. */
#ifndef HSCONAS_DATA_H
#define HSCONAS_DATA_H

#include <stdint.h>

#include "hsconas/config.h"
#include "hsconas/core.h"

typedef struct {
  int n, c, h, w, classes;
  uint8_t *images;           /* [n, c, h, w] */
  int32_t *labels;           /* [n] in [0, classes) */
  char source[HSC_CFG_PATH]; /* the images file, for messages */
} hsc_dataset;

/* Reads an IDX image file and its label file (gzip or plain). Validates magic numbers, dimensions, the
 * item counts of both files, file sizes and label range; errors name the file and what was wrong.
 * classes is 10 (the MNIST family); a label >= 10 is an error. A file that cannot be opened or read is
 * HSC_ERR_IO; anything wrong with the contents (bad magic, dimensions, truncation, trailing bytes, count
 * mismatch, label range, corrupt gzip) is HSC_ERR_INPUT. On error *ds is empty (safe to free). */
hsc_status hsc_idx_load(hsc_dataset *ds, const char *images_path, const char *labels_path, hsc_error *err);
/* Fashion-MNIST from a directory: train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz),
 * t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz); NAME.gz is preferred to NAME. test may be
 * NULL. A missing file is HSC_ERR_IO naming both paths tried. On error both datasets are empty. */
hsc_status hsc_fmnist_load(const char *dir, hsc_dataset *train, hsc_dataset *test, hsc_error *err);
void hsc_dataset_free(hsc_dataset *ds);

/* A list of sample indices into a dataset. */
typedef struct {
  int n;
  int32_t *index;
} hsc_subset;

/* The whole dataset in order. */
void hsc_subset_all(int n, hsc_subset *all);
/* Deterministic split of n samples: val gets n_val of them (chosen by a permutation from split_seed),
 * train the rest; both in increasing index order. */
void hsc_subset_split(int n, int n_val, uint64_t split_seed, hsc_subset *train, hsc_subset *val);
void hsc_subset_free(hsc_subset *s);

/* How samples become a batch. */
typedef struct {
  int augment, crop_pad, flip;
  float mean[4], std[4]; /* per channel (c <= 4) */
} hsc_transform;

/* From cfg->data (mean/std lists must match the dataset's channels; checked by the caller). */
void hsc_transform_from_config(const hsc_config *cfg, hsc_transform *t);

/* Fills x [count, c, h, w] and y [count] with samples sub->index[first .. first + count) in order, no
 * augmentation (evaluation, BN recalibration). */
void hsc_data_fill(const hsc_dataset *ds, const hsc_subset *sub, int first, int count, const hsc_transform *t,
                   float *x, int32_t *y);

/* The training loader: shuffled epochs, drop-last global batches, this rank's shard, augmentation, and a
 * prefetch thread preparing the next shard while the caller trains on the current one.
 *
 * Augmentation (transform.augment): random crop with crop_pad pixels of zero padding (the padded pixels are
 * the normalised value of a 0 byte, as torchvision's RandomCrop(padding) before Normalize), offsets dy, dx
 * uniform in [0, 2 * crop_pad], then a horizontal flip with probability 1/2 when transform.flip. The draws
 * for position p of epoch e are, in this order, hsc_rng_below(2 * crop_pad + 1) for dy and for dx and
 * hsc_rng_below(2) for the flip, from hsc_rng_init(seed, HSC_RNG_AUGMENT, e * sub->n + p); all three are
 * drawn even when the flip is off. Output pixel (i, j) before the flip is source pixel
 * (i + dy - crop_pad, j + dx - crop_pad). Epoch order: Fisher-Yates from the top (i = n-1 .. 1 swaps with
 * hsc_rng_below(i + 1)) on hsc_rng_init(seed, HSC_RNG_DATA, e); positions in order when shuffle is 0.
 * Results are bit-identical with prefetch on and off. */
typedef struct {
  const hsc_dataset *ds;
  const hsc_subset *sub;
  int global_batch; /* B: must be divisible by nranks */
  int rank, nranks;
  int shuffle;
  hsc_transform transform;
  uint64_t seed;
  int prefetch; /* 0: prepare batches in the caller's thread */
} hsc_loader_opts;

typedef struct hsc_loader hsc_loader;

/* The loader's position: the next batch to be returned is batch `batch` of epoch `epoch`. */
typedef struct {
  int64_t epoch, batch;
} hsc_data_cursor;

/* Starts at cursor {0, 0}. Does not copy opts->ds or opts->sub: they must outlive the loader. Asserts what
 * config validation guarantees: global_batch divisible by nranks and sub->n >= global_batch. With
 * prefetch, starts the thread (which begins on batch {0, 0} at once); one loader is used by one thread. */
hsc_loader *hsc_loader_create(const hsc_loader_opts *opts);
void hsc_loader_free(hsc_loader *l);
/* Global batches per epoch: sub->n / global_batch. */
int64_t hsc_loader_batches_per_epoch(const hsc_loader *l);
/* Moves to a position (resume); 0 <= c.batch < batches per epoch. Cancels any prefetched batch (one in
 * flight finishes in the background and is discarded). */
void hsc_loader_seek(hsc_loader *l, hsc_data_cursor c);
hsc_data_cursor hsc_loader_cursor(const hsc_loader *l);
/* Writes this rank's shard of the batch at the cursor: x [B / R, c, h, w], y [B / R]; returns where it came
 * from (*at, may be NULL) and advances the cursor (to the next epoch after the last batch). */
void hsc_loader_next(hsc_loader *l, float *x, int32_t *y, hsc_data_cursor *at);

#endif
