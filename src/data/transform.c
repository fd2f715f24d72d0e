/* From stored bytes to network input: normalisation, the training augmentation (random crop with zero
 * padding, horizontal flip) and hsc_data_fill for evaluation batches. */
#include <assert.h>
#include <string.h>

#include "sample.h"

void hsc_transform_from_config(const hsc_config *cfg, hsc_transform *t) {
  memset(t, 0, sizeof *t);
  t->augment = cfg->data.augment != 0;
  t->crop_pad = cfg->data.crop_pad;
  t->flip = cfg->data.flip != 0;
  /* Channels the lists do not cover get the identity (mean 0, std 1); the caller checks that the list
   * lengths match the dataset. */
  for (int ch = 0; ch < 4; ch++) {
    t->mean[ch] = ch < cfg->data.n_mean ? (float)cfg->data.mean[ch] : 0.0f;
    t->std[ch] = ch < cfg->data.n_std ? (float)cfg->data.std[ch] : 1.0f;
  }
}

void hsc_data_norm_init(hsc_data_norm *norm, const hsc_transform *t, int c) {
  assert(c >= 1 && c <= 4);
  memset(norm, 0, sizeof *norm);
  for (int ch = 0; ch < c; ch++) {
    assert(t->std[ch] > 0.0f);
    for (int b = 0; b < 256; b++) norm->v[ch][b] = ((float)b / 255.0f - t->mean[ch]) / t->std[ch];
  }
}

void hsc_data_aug_draw(const hsc_transform *t, uint64_t seed, int64_t epoch, int n, int64_t position,
                       hsc_data_aug *aug) {
  memset(aug, 0, sizeof *aug);
  if (!t->augment) return;
  assert(t->crop_pad >= 0 && epoch >= 0 && position >= 0 && position < n);
  hsc_rng r;
  hsc_rng_init(&r, seed, HSC_RNG_AUGMENT, (uint64_t)epoch * (uint64_t)n + (uint64_t)position);
  uint32_t span = 2u * (uint32_t)t->crop_pad + 1u; /* torchvision: top = randint(0, h + 2p - h) */
  aug->pad = t->crop_pad;
  aug->dy = (int)hsc_rng_below(&r, span);
  aug->dx = (int)hsc_rng_below(&r, span);
  int flip = (int)hsc_rng_below(&r, 2);
  aug->flip = t->flip ? flip : 0;
}

/* out(i, j) = padded(i + dy, j + dx) = src(i + dy - pad, j + dx - pad), the normalised 0 byte outside the
 * image; with the flip, out(i, j) takes column w - 1 - j of that crop. 784 pixels for Fashion-MNIST: a
 * branch per pixel costs less than the division it replaces (the table). */
void hsc_data_write_sample(const hsc_dataset *ds, int32_t s, const hsc_data_norm *norm,
                           const hsc_data_aug *aug, float *out) {
  assert(s >= 0 && s < ds->n);
  const int c = ds->c, h = ds->h, w = ds->w;
  const size_t plane = (size_t)h * (size_t)w;
  const uint8_t *src = ds->images + (size_t)s * (size_t)c * plane;
  const int oy = aug ? aug->dy - aug->pad : 0, ox = aug ? aug->dx - aug->pad : 0;
  const int flip = aug ? aug->flip : 0;
  for (int ch = 0; ch < c; ch++) {
    const float *v = norm->v[ch];
    const uint8_t *sp = src + (size_t)ch * plane;
    float *op = out + (size_t)ch * plane;
    for (int i = 0; i < h; i++) {
      int sy = i + oy;
      float *orow = op + (size_t)i * (size_t)w;
      if (sy < 0 || sy >= h) {
        for (int j = 0; j < w; j++) orow[j] = v[0];
        continue;
      }
      const uint8_t *srow = sp + (size_t)sy * (size_t)w;
      for (int j = 0; j < w; j++) {
        int sx = j + ox;
        float val = sx >= 0 && sx < w ? v[srow[sx]] : v[0];
        orow[flip ? w - 1 - j : j] = val;
      }
    }
  }
}

void hsc_data_fill(const hsc_dataset *ds, const hsc_subset *sub, int first, int count, const hsc_transform *t,
                   float *x, int32_t *y) {
  assert(first >= 0 && count >= 0 && first + count <= sub->n);
  hsc_data_norm norm;
  hsc_data_norm_init(&norm, t, ds->c);
  const size_t sample = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
  for (int k = 0; k < count; k++) {
    int32_t s = sub->index[first + k];
    hsc_data_write_sample(ds, s, &norm, NULL, x + (size_t)k * sample);
    y[k] = ds->labels[s];
  }
}
