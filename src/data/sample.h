/* Internal to src/data/: the pieces shared by the split, hsc_data_fill and the loader, so that a sample
 * evaluated through hsc_data_fill and the same sample in an un-augmented training batch are the same floats
 * bit for bit, and the split and the epoch order shuffle the same way (hsc_rng_permute). */
#ifndef HSCONAS_DATA_SAMPLE_H
#define HSCONAS_DATA_SAMPLE_H

#include <stdint.h>

#include "hsconas/data.h"
#include "hsconas/rng.h"

/* The normalised value of every byte per channel: v[c][b] = (b / 255 - mean[c]) / std[c], computed in
 * float. v[c][0] is also the padding value of the random crop (torchvision pads before Normalize). */
typedef struct {
  float v[4][256];
} hsc_data_norm;
void hsc_data_norm_init(hsc_data_norm *norm, const hsc_transform *t, int c);

/* One sample's augmentation: crop offsets dy, dx in [0, 2 * pad] into the zero-padded image, and a
 * horizontal flip. {0, 0, 0, 0} is the identity. */
typedef struct {
  int pad, dy, dx, flip;
} hsc_data_aug;
/* The draws for the sample at position `position` of epoch `epoch` of a subset of n samples, from
 * (seed, HSC_RNG_AUGMENT, epoch * n + position): always three draws in the order dy, dx, flip
 * (hsc_rng_below(2 * pad + 1) twice, then hsc_rng_below(2)), whatever t->flip says, so that switching the
 * flip off does not move the crops. Identity when t->augment is 0. */
void hsc_data_aug_draw(const hsc_transform *t, uint64_t seed, int64_t epoch, int n, int64_t position,
                       hsc_data_aug *aug);

/* out [c, h, w] = sample s of ds, cropped and flipped per aug (NULL: none), normalised. */
void hsc_data_write_sample(const hsc_dataset *ds, int32_t s, const hsc_data_norm *norm,
                           const hsc_data_aug *aug, float *out);

#endif
