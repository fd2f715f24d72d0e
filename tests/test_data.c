/* Data: the IDX reader (on the real Fashion-MNIST and on broken files written here), the split, the
 * transform, and the loader's contract: coverage, sharding, prefetch, seek and augmentation, each checked
 * against a recomputation from the documented RNG keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"
#include "hsconas/data.h"
#include "hsconas/rng.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* ---- helpers ---- */

static void put_be32(unsigned char *b, uint32_t v) {
  b[0] = (unsigned char)(v >> 24);
  b[1] = (unsigned char)(v >> 16);
  b[2] = (unsigned char)(v >> 8);
  b[3] = (unsigned char)v;
}

/* An IDX file image in memory: magic, dims, then `data` bytes (pseudo-random when data is NULL, which
 * also keeps gzip from shrinking it to nothing). Caller frees. */
static unsigned char *idx_blob(uint32_t magic, int ndim, const uint32_t *dims, size_t data_len,
                               const unsigned char *data, size_t *len) {
  size_t header = 4 + 4 * (size_t)ndim;
  unsigned char *b = hsc_xmalloc(header + data_len);
  put_be32(b, magic);
  for (int d = 0; d < ndim; d++) put_be32(b + 4 + 4 * d, dims[d]);
  hsc_rng r;
  hsc_rng_init(&r, 99, HSC_RNG_TEST, data_len);
  for (size_t i = 0; i < data_len; i++) b[header + i] = data ? data[i] : (unsigned char)hsc_rng_u32(&r);
  *len = header + data_len;
  return b;
}

/* A fresh file under /tmp; path [64]. */
static int tmp_file(hsc_test *t, char *path) {
  snprintf(path, 64, "/tmp/hsc_test_data_XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) {
    T_FAIL(t, "mkstemp failed");
    return 0;
  }
  close(fd);
  return 1;
}

static int write_bytes(hsc_test *t, const char *path, const unsigned char *b, size_t len, int gz) {
  if (gz) {
    gzFile f = gzopen(path, "wb");
    if (!f || gzwrite(f, b, (unsigned)len) != (int)len || gzclose(f) != Z_OK) {
      T_FAIL(t, "cannot write %s", path);
      return 0;
    }
    return 1;
  }
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b, 1, len, f) != len || fclose(f) != 0) {
    T_FAIL(t, "cannot write %s", path);
    return 0;
  }
  return 1;
}

/* Writes an image file [n, rows, cols] of random bytes and a label file [nl] with labels i % 10 to fresh
 * temp paths ip, lp [64] (new files: a caller writing a second pair removes the first). */
static int write_pair(hsc_test *t, char *ip, char *lp, uint32_t n, uint32_t rows, uint32_t cols, uint32_t nl,
                      int gz) {
  if (!tmp_file(t, ip) || !tmp_file(t, lp)) return 0;
  size_t len;
  uint32_t dims[3] = {n, rows, cols};
  unsigned char *img = idx_blob(0x00000803, 3, dims, (size_t)n * rows * cols, NULL, &len);
  int ok = write_bytes(t, ip, img, len, gz);
  free(img);
  unsigned char *labels = hsc_xmalloc(nl + 1);
  for (uint32_t i = 0; i < nl; i++) labels[i] = (unsigned char)(i % 10);
  unsigned char *lab = idx_blob(0x00000801, 1, &nl, nl, labels, &len);
  ok = ok && write_bytes(t, lp, lab, len, gz);
  free(lab);
  free(labels);
  return ok;
}

/* Loads (ip, lp), expects failure with `code` and a message holding `path` and every one of `words`. */
static void expect_error(hsc_test *t, const char *ip, const char *lp, hsc_status code, const char *path,
                         const char *const *words, int nwords) {
  hsc_dataset ds;
  hsc_error err = {0};
  hsc_status st = hsc_idx_load(&ds, ip, lp, &err);
  T_EQ_INT(t, st, code);
  T_EQ_INT(t, err.code, code);
  if (!strstr(err.msg, path)) T_FAIL(t, "message does not name %s: %s", path, err.msg);
  for (int i = 0; i < nwords; i++)
    if (!strstr(err.msg, words[i])) T_FAIL(t, "message lacks '%s': %s", words[i], err.msg);
  T_CHECK(t, ds.images == NULL && ds.labels == NULL && ds.n == 0);
  if (t->verbose) fprintf(stderr, "  message: %s\n", err.msg);
  hsc_dataset_free(&ds);
}

/* A dataset with random bytes and labels[i] = i, so a loader's y names the sample it returned. */
static void synth(hsc_dataset *ds, int n, int c, int h, int w) {
  memset(ds, 0, sizeof *ds);
  ds->n = n;
  ds->c = c;
  ds->h = h;
  ds->w = w;
  ds->classes = n;
  size_t bytes = (size_t)n * c * h * w;
  ds->images = hsc_xmalloc(bytes);
  ds->labels = hsc_xmalloc((size_t)n * sizeof(int32_t));
  hsc_rng r;
  hsc_rng_init(&r, 5, HSC_RNG_TEST, (uint64_t)n);
  for (size_t i = 0; i < bytes; i++) ds->images[i] = (uint8_t)hsc_rng_u32(&r);
  for (int i = 0; i < n; i++) ds->labels[i] = i;
  snprintf(ds->source, sizeof ds->source, "synthetic");
}

static hsc_transform transform(int augment, int pad, int flip, int c) {
  hsc_transform tr = {.augment = augment, .crop_pad = pad, .flip = flip};
  for (int ch = 0; ch < 4; ch++) {
    tr.mean[ch] = ch < c ? 0.25f + 0.1f * (float)ch : 0.0f;
    tr.std[ch] = ch < c ? 0.35f + 0.05f * (float)ch : 1.0f;
  }
  return tr;
}

/* The documented epoch order, written out independently of the library. */
static void fisher_yates(int32_t *perm, int n, uint64_t seed, hsc_rng_purpose purpose, uint64_t index) {
  hsc_rng r;
  hsc_rng_init(&r, seed, purpose, index);
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)hsc_rng_below(&r, (uint32_t)(i + 1));
    int32_t tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
}

/* ---- IDX ---- */

static void t_fmnist_real(hsc_test *t) {
  hsc_dataset train, test;
  hsc_error err = {0};
  double t0 = hsc_now();
  hsc_status st = hsc_fmnist_load(FMNIST_DIR, &train, &test, &err);
  double dt = hsc_now() - t0;
  if (st != HSC_OK) T_FAIL(t, "%s", err.msg);
  T_REQUIRE(t, st == HSC_OK);
  if (t->verbose) fprintf(stderr, "  Fashion-MNIST loaded in %.3f s\n", dt);
  const hsc_dataset *sets[2] = {&train, &test};
  const int sizes[2] = {60000, 10000};
  for (int k = 0; k < 2; k++) {
    const hsc_dataset *ds = sets[k];
    T_EQ_INT(t, ds->n, sizes[k]);
    T_EQ_INT(t, ds->c, 1);
    T_EQ_INT(t, ds->h, 28);
    T_EQ_INT(t, ds->w, 28);
    T_EQ_INT(t, ds->classes, 10);
    T_CHECK(t, strstr(ds->source, k == 0 ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte") != NULL);
    int hist[10] = {0}, bad = 0;
    for (int i = 0; i < ds->n; i++) {
      if (ds->labels[i] < 0 || ds->labels[i] >= 10)
        bad++;
      else
        hist[ds->labels[i]]++;
    }
    T_EQ_INT(t, bad, 0);
    for (int c = 0; c < 10; c++) T_EQ_INT(t, hist[c], sizes[k] / 10);
    T_EQ_INT(t, ds->labels[0], 9); /* an ankle boot opens both files */
    /* Not all black: some pixel of the first image is lit. */
    int lit = 0;
    for (int i = 0; i < 28 * 28; i++) lit |= ds->images[i] != 0;
    T_CHECK(t, lit);
  }
  hsc_dataset_free(&train);
  hsc_dataset_free(&test);
  /* test == NULL loads the training set only. */
  st = hsc_fmnist_load(FMNIST_DIR, &train, NULL, &err);
  T_EQ_INT(t, st, HSC_OK);
  T_EQ_INT(t, train.n, 60000);
  hsc_dataset_free(&train);
}

/* A small valid pair, plain and gzip, reads back exactly what was written. */
static void t_idx_roundtrip(hsc_test *t) {
  for (int gz = 0; gz < 2; gz++) {
    char ip[64], lp[64];
    T_REQUIRE(t, write_pair(t, ip, lp, 7, 5, 3, 7, gz));
    size_t len;
    uint32_t dims[3] = {7, 5, 3};
    unsigned char *img = idx_blob(0x00000803, 3, dims, 7 * 5 * 3, NULL, &len);
    hsc_dataset ds;
    hsc_error err = {0};
    hsc_status st = hsc_idx_load(&ds, ip, lp, &err);
    if (st != HSC_OK) T_FAIL(t, "%s", err.msg);
    if (st == HSC_OK) {
      T_EQ_INT(t, ds.n, 7);
      T_EQ_INT(t, ds.c, 1);
      T_EQ_INT(t, ds.h, 5);
      T_EQ_INT(t, ds.w, 3);
      T_CHECK(t, memcmp(ds.images, img + 16, 7 * 5 * 3) == 0);
      for (int i = 0; i < 7; i++) T_EQ_INT(t, ds.labels[i], i % 10);
      T_CHECK(t, !strcmp(ds.source, ip));
    }
    hsc_dataset_free(&ds);
    free(img);
    unlink(ip);
    unlink(lp);
  }
}

static void t_idx_bad_magic(hsc_test *t) {
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 4, 3, 3, 4, 1));
  size_t len;
  uint32_t dims[3] = {4, 3, 3};
  unsigned char *b = idx_blob(0x12345678, 3, dims, 36, NULL, &len);
  T_REQUIRE(t, write_bytes(t, ip, b, len, 1));
  free(b);
  const char *w1[] = {"bad magic", "0x12345678", "0x00000803"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w1, 3);
  /* A label file given as the image file. */
  unlink(ip);
  unlink(lp);
  T_REQUIRE(t, write_pair(t, ip, lp, 4, 3, 3, 4, 0));
  const char *w2[] = {"0x00000801", "1 dimension", "has 3"};
  expect_error(t, lp, lp, HSC_ERR_INPUT, lp, w2, 3);
  /* Bad magic in the label file. */
  b = idx_blob(0x00000901, 1, dims, 4, NULL, &len);
  T_REQUIRE(t, write_bytes(t, lp, b, len, 0));
  free(b);
  const char *w3[] = {"bad magic", "0x00000901"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, lp, w3, 2);
  unlink(ip);
  unlink(lp);
}

static void t_idx_wrong_ndim(hsc_test *t) {
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 4, 3, 3, 4, 1));
  size_t len;
  uint32_t dims[4] = {4, 1, 3, 3};
  unsigned char *b = idx_blob(0x00000804, 4, dims, 36, NULL, &len);
  T_REQUIRE(t, write_bytes(t, ip, b, len, 1));
  free(b);
  const char *w[] = {"4 dimensions", "has 3"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w, 2);
  /* Zero rows is a dimension out of range. */
  uint32_t zero[3] = {4, 0, 3};
  b = idx_blob(0x00000803, 3, zero, 0, NULL, &len);
  T_REQUIRE(t, write_bytes(t, ip, b, len, 0));
  free(b);
  const char *w2[] = {"[4, 0, 3]", "out of range"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w2, 2);
  unlink(ip);
  unlink(lp);
}

static void t_idx_count_mismatch(hsc_test *t) {
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 5, 4, 4, 4, 1));
  const char *w[] = {"mismatch", "4 labels", "5 images", ip};
  expect_error(t, ip, lp, HSC_ERR_INPUT, lp, w, 4);
  unlink(ip);
  unlink(lp);
}

static void t_idx_truncated(hsc_test *t) {
  /* gzip: a valid stream of 200 random 28x28 images cut in the middle. */
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 200, 28, 28, 200, 1));
  FILE *f = fopen(ip, "rb");
  T_REQUIRE(t, f && fseek(f, 0, SEEK_END) == 0);
  long size = ftell(f);
  fclose(f);
  T_REQUIRE(t, size > 1000 && truncate(ip, size / 2) == 0);
  const char *w[] = {"truncated", "200 images of 28x28", "156800 bytes", "cut off"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w, 4);
  /* Plain: the exact byte count is reported. */
  size_t len;
  uint32_t dims[3] = {5, 4, 3};
  unsigned char *b = idx_blob(0x00000803, 3, dims, 60, NULL, &len);
  T_REQUIRE(t, write_bytes(t, ip, b, len - 10, 0));
  free(b);
  const char *w2[] = {"truncated", "5 images of 4x3 (60 bytes after the 16-byte header)",
                      "ends after 66 bytes"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w2, 3);
  /* Inside the header. */
  b = idx_blob(0x00000803, 3, dims, 0, NULL, &len);
  T_REQUIRE(t, write_bytes(t, ip, b, 10, 1));
  free(b);
  const char *w3[] = {"truncated", "header"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w3, 2);
  /* A truncated label file. */
  unlink(ip);
  unlink(lp);
  T_REQUIRE(t, write_pair(t, ip, lp, 5, 4, 4, 5, 0));
  b = idx_blob(0x00000801, 1, dims, 5, NULL, &len);
  T_REQUIRE(t, write_bytes(t, lp, b, len - 1, 0));
  free(b);
  const char *w4[] = {"truncated", "5 labels"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, lp, w4, 2);
  unlink(ip);
  unlink(lp);
}

static void t_idx_corrupt_gzip(hsc_test *t) {
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 200, 28, 28, 200, 1));
  FILE *f = fopen(ip, "r+b");
  T_REQUIRE(t, f != NULL);
  unsigned char junk[64];
  memset(junk, 0xA5, sizeof junk);
  T_REQUIRE(t, fseek(f, 5000, SEEK_SET) == 0 && fwrite(junk, 1, sizeof junk, f) == sizeof junk);
  T_REQUIRE(t, fclose(f) == 0);
  const char *w[] = {"corrupt gzip data: incorrect data check"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w, 1);
  unlink(ip);
  unlink(lp);
}

static void t_idx_trailing(hsc_test *t) {
  for (int gz = 0; gz < 2; gz++) {
    char ip[64], lp[64];
    T_REQUIRE(t, write_pair(t, ip, lp, 5, 4, 3, 5, gz));
    size_t len;
    uint32_t dims[3] = {5, 4, 3};
    unsigned char *b = idx_blob(0x00000803, 3, dims, 60 + 7, NULL, &len); /* header promises 60 bytes */
    T_REQUIRE(t, write_bytes(t, ip, b, len, gz));
    free(b);
    const char *w[] = {"7 bytes of trailing data", "5 images of 4x3", "holds 83 bytes"};
    expect_error(t, ip, lp, HSC_ERR_INPUT, ip, w, 3);
    /* Trailing bytes after the labels. */
    unlink(ip);
    unlink(lp);
    T_REQUIRE(t, write_pair(t, ip, lp, 5, 4, 3, 5, gz));
    b = idx_blob(0x00000801, 1, dims, 6, NULL, &len);
    T_REQUIRE(t, write_bytes(t, lp, b, len, gz));
    free(b);
    const char *w2[] = {"1 byte of trailing data", "5 labels"};
    expect_error(t, ip, lp, HSC_ERR_INPUT, lp, w2, 2);
    unlink(ip);
    unlink(lp);
  }
}

static void t_idx_label_range(hsc_test *t) {
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 5, 4, 3, 5, 1));
  unsigned char labels[5] = {0, 1, 10, 3, 4};
  uint32_t n = 5;
  size_t len;
  unsigned char *b = idx_blob(0x00000801, 1, &n, 5, labels, &len);
  T_REQUIRE(t, write_bytes(t, lp, b, len, 1));
  free(b);
  const char *w[] = {"label 10 of item 2", "out of range", "0..9"};
  expect_error(t, ip, lp, HSC_ERR_INPUT, lp, w, 3);
  unlink(ip);
  unlink(lp);
}

static void t_idx_missing(hsc_test *t) {
  char ip[64], lp[64];
  T_REQUIRE(t, write_pair(t, ip, lp, 5, 4, 3, 5, 0));
  const char *missing = "/tmp/hsc_test_data_no_such_file";
  const char *w[] = {"cannot open", "No such file"};
  expect_error(t, missing, lp, HSC_ERR_IO, missing, w, 2);
  expect_error(t, ip, missing, HSC_ERR_IO, missing, w, 2);
  unlink(ip);
  unlink(lp);
  /* A directory without the files: both tried paths and the package are named. */
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/hsc_test_data_XXXXXX");
  T_REQUIRE(t, mkdtemp(dir) != NULL);
  hsc_dataset train, test;
  hsc_error err = {0};
  T_EQ_INT(t, hsc_fmnist_load(dir, &train, &test, &err), HSC_ERR_IO);
  char want[256];
  snprintf(want, sizeof want, "tried %s/train-images-idx3-ubyte.gz and %s/train-images-idx3-ubyte", dir, dir);
  if (!strstr(err.msg, want)) T_FAIL(t, "message lacks '%s': %s", want, err.msg);
  T_CHECK(t, strstr(err.msg, "dataset-fashion-mnist") != NULL);
  T_CHECK(t, train.images == NULL && test.images == NULL);
  rmdir(dir);
}

/* NAME.gz is used when present, NAME otherwise; a broken test file fails the whole load cleanly. */
static void t_fmnist_dir(hsc_test *t) {
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/hsc_test_data_XXXXXX");
  T_REQUIRE(t, mkdtemp(dir) != NULL);
  const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte.gz"};
  char paths[4][128];
  for (int k = 0; k < 4; k++) {
    snprintf(paths[k], sizeof paths[k], "%s/%s", dir, names[k]);
    uint32_t n = k < 2 ? 12 : 6, dims[3] = {n, 6, 5};
    size_t len;
    unsigned char *b;
    if (k % 2 == 0) {
      b = idx_blob(0x00000803, 3, dims, (size_t)n * 30, NULL, &len);
    } else {
      unsigned char labels[12] = {0};
      for (uint32_t i = 0; i < n; i++) labels[i] = (unsigned char)((i * 7) % 10);
      b = idx_blob(0x00000801, 1, &n, n, labels, &len);
    }
    T_REQUIRE(t, write_bytes(t, paths[k], b, len, strstr(names[k], ".gz") != NULL));
    free(b);
  }
  hsc_dataset train, test;
  hsc_error err = {0};
  hsc_status st = hsc_fmnist_load(dir, &train, &test, &err);
  if (st != HSC_OK) T_FAIL(t, "%s", err.msg);
  T_EQ_INT(t, train.n, 12);
  T_EQ_INT(t, test.n, 6);
  T_EQ_INT(t, train.labels[3], 1);
  T_CHECK(t, !strcmp(train.source, paths[0]));
  hsc_dataset_free(&train);
  hsc_dataset_free(&test);
  /* Break the test labels: the error names them and the training set is released. */
  T_REQUIRE(t, truncate(paths[3], 10) == 0);
  st = hsc_fmnist_load(dir, &train, &test, &err);
  T_EQ_INT(t, st, HSC_ERR_INPUT);
  T_CHECK(t, strstr(err.msg, paths[3]) != NULL);
  T_CHECK(t, train.images == NULL && test.images == NULL);
  for (int k = 0; k < 4; k++) unlink(paths[k]);
  rmdir(dir);
}

/* ---- split and transform ---- */

static void t_split(hsc_test *t) {
  enum { N = 60000, NV = 5000 };
  hsc_subset tr, va, tr2, va2, tr3, va3, all;
  hsc_subset_split(N, NV, 42, &tr, &va);
  T_EQ_INT(t, tr.n, N - NV);
  T_EQ_INT(t, va.n, NV);
  unsigned char *seen = hsc_xcalloc(N, 1);
  int sorted = 1, dup = 0;
  for (int i = 0; i < tr.n; i++) {
    if (i > 0 && tr.index[i] <= tr.index[i - 1]) sorted = 0;
    dup += seen[tr.index[i]]++ != 0;
  }
  for (int i = 0; i < va.n; i++) {
    if (i > 0 && va.index[i] <= va.index[i - 1]) sorted = 0;
    dup += seen[va.index[i]]++ != 0;
  }
  int missing = 0;
  for (int i = 0; i < N; i++) missing += seen[i] == 0;
  T_CHECK(t, sorted);
  T_EQ_INT(t, dup, 0);
  T_EQ_INT(t, missing, 0);
  /* The documented rule: val = the first NV entries of the Fisher-Yates permutation, sorted. */
  int32_t *perm = hsc_xmalloc(N * sizeof(int32_t));
  fisher_yates(perm, N, 42, HSC_RNG_SPLIT, 0);
  unsigned char *in_val = hsc_xcalloc(N, 1);
  for (int k = 0; k < NV; k++) in_val[perm[k]] = 1;
  int wrong = 0;
  for (int i = 0; i < va.n; i++) wrong += !in_val[va.index[i]];
  T_EQ_INT(t, wrong, 0);
  /* Deterministic; another seed gives another split. */
  hsc_subset_split(N, NV, 42, &tr2, &va2);
  T_CHECK(t, va2.n == va.n && !memcmp(va2.index, va.index, NV * sizeof(int32_t)));
  T_CHECK(t, tr2.n == tr.n && !memcmp(tr2.index, tr.index, (size_t)tr.n * sizeof(int32_t)));
  hsc_subset_split(N, NV, 43, &tr3, &va3);
  T_CHECK(t, memcmp(va3.index, va.index, NV * sizeof(int32_t)) != 0);
  /* Edge cases. */
  hsc_subset e1, e2;
  hsc_subset_split(10, 0, 1, &e1, &e2);
  T_EQ_INT(t, e1.n, 10);
  T_EQ_INT(t, e2.n, 0);
  for (int i = 0; i < 10; i++) T_EQ_INT(t, e1.index[i], i);
  hsc_subset_free(&e1);
  hsc_subset_free(&e2);
  hsc_subset_all(5, &all);
  T_EQ_INT(t, all.n, 5);
  for (int i = 0; i < 5; i++) T_EQ_INT(t, all.index[i], i);
  hsc_subset_free(&all);
  T_CHECK(t, all.index == NULL && all.n == 0);
  free(seen);
  free(perm);
  free(in_val);
  hsc_subset_free(&tr);
  hsc_subset_free(&va);
  hsc_subset_free(&tr2);
  hsc_subset_free(&va2);
  hsc_subset_free(&tr3);
  hsc_subset_free(&va3);
}

static void t_transform_config(hsc_test *t) {
  hsc_config *cfg = hsc_xcalloc(1, sizeof *cfg);
  cfg->data.augment = 1;
  cfg->data.crop_pad = 3;
  cfg->data.flip = 0;
  cfg->data.n_mean = 2;
  cfg->data.mean[0] = 0.286;
  cfg->data.mean[1] = 0.5;
  cfg->data.n_std = 2;
  cfg->data.std[0] = 0.353;
  cfg->data.std[1] = 0.25;
  hsc_transform tr;
  hsc_transform_from_config(cfg, &tr);
  T_EQ_INT(t, tr.augment, 1);
  T_EQ_INT(t, tr.crop_pad, 3);
  T_EQ_INT(t, tr.flip, 0);
  T_CHECK(t, tr.mean[0] == 0.286f && tr.mean[1] == 0.5f && tr.std[0] == 0.353f && tr.std[1] == 0.25f);
  T_CHECK(t, tr.mean[2] == 0.0f && tr.std[3] == 1.0f);
  free(cfg);
}

/* (x / 255 - mean[c]) / std[c] per channel, against a double-precision hand computation. */
static void t_data_fill(hsc_test *t) {
  enum { N = 40, C = 3, H = 5, W = 4 };
  hsc_dataset ds;
  synth(&ds, N, C, H, W);
  ds.images[0] = 0;
  ds.images[1] = 255;
  hsc_transform tr = transform(1, 2, 1, C); /* augment is ignored by hsc_data_fill */
  hsc_subset sub = {.n = 6, .index = (int32_t[]){0, 3, 7, 8, 20, 39}};
  float x[4 * C * H * W];
  int32_t y[4];
  hsc_data_fill(&ds, &sub, 2, 4, &tr, x, y);
  float want[4 * C * H * W];
  for (int k = 0; k < 4; k++) {
    int s = sub.index[2 + k];
    T_EQ_INT(t, y[k], s);
    for (int c = 0; c < C; c++)
      for (int i = 0; i < H * W; i++) {
        double v = ds.images[((size_t)s * C + c) * H * W + i];
        want[(k * C + c) * H * W + i] = (float)((v / 255.0 - tr.mean[c]) / tr.std[c]);
      }
  }
  T_CLOSE(t, "normalised", x, want, 4 * C * H * W, 1e-6, 1e-6);
  /* Bytes 0 and 255 of channel 0 of sample 0. */
  hsc_data_fill(&ds, &sub, 0, 1, &tr, x, y);
  T_NEAR(t, x[0], -0.25 / 0.35, 1e-6);
  T_NEAR(t, x[1], 0.75 / 0.35, 1e-6);
  hsc_dataset_free(&ds);
}

/* ---- loader ---- */

/* Expected augmented sample: the un-augmented one shifted by (dy - pad, dx - pad), the normalised 0 byte
 * outside, then flipped; draws recomputed from (seed, HSC_RNG_AUGMENT, e * n + p) in the order dy, dx,
 * flip. Returns the flip bit (for the statistics). */
static int expected_aug(const hsc_dataset *ds, int32_t s, const hsc_transform *tr, uint64_t seed, int64_t e,
                        int n, int64_t p, float *out) {
  const int C = ds->c, H = ds->h, W = ds->w, pad = tr->crop_pad;
  hsc_rng r;
  hsc_rng_init(&r, seed, HSC_RNG_AUGMENT, (uint64_t)e * (uint64_t)n + (uint64_t)p);
  int dy = (int)hsc_rng_below(&r, 2 * pad + 1);
  int dx = (int)hsc_rng_below(&r, 2 * pad + 1);
  int flip = (int)hsc_rng_below(&r, 2) && tr->flip;
  float *plain = hsc_xmalloc((size_t)C * H * W * sizeof(float));
  int32_t y;
  hsc_subset one = {.n = 1, .index = &s};
  hsc_data_fill(ds, &one, 0, 1, tr, plain, &y);
  for (int c = 0; c < C; c++) {
    float pad_value = (0.0f / 255.0f - tr->mean[c]) / tr->std[c];
    for (int i = 0; i < H; i++)
      for (int j = 0; j < W; j++) {
        int jj = flip ? W - 1 - j : j;
        int sy = i + dy - pad, sx = jj + dx - pad;
        out[(c * H + i) * W + j] =
            sy >= 0 && sy < H && sx >= 0 && sx < W ? plain[(c * H + sy) * W + sx] : pad_value;
      }
  }
  free(plain);
  return flip;
}

/* Every row of two shuffled, augmented epochs: the sample is the documented epoch order's, and its pixels
 * are the recomputed crop and flip of it. Also exercises flip off and pad 0. */
static void t_loader_augment(hsc_test *t) {
  enum { N = 203, C = 2, H = 7, W = 5, B = 8 };
  hsc_dataset ds;
  synth(&ds, N, C, H, W);
  hsc_subset sub, val;
  hsc_subset_split(N, 3, 9, &sub, &val);
  const struct { int pad, flip; } variants[3] = {{2, 1}, {3, 0}, {0, 1}};
  const size_t S = (size_t)C * H * W;
  float *x = hsc_xmalloc(B * S * sizeof(float)), *want = hsc_xmalloc(S * sizeof(float));
  int32_t *order = hsc_xmalloc(N * sizeof(int32_t));
  for (int v = 0; v < 3; v++) {
    hsc_loader_opts o = {.ds = &ds,
                         .sub = &sub,
                         .global_batch = B,
                         .rank = 0,
                         .nranks = 1,
                         .shuffle = 1,
                         .transform = transform(1, variants[v].pad, variants[v].flip, C),
                         .seed = 77,
                         .prefetch = v == 1};
    hsc_loader *l = hsc_loader_create(&o);
    int64_t bpe = hsc_loader_batches_per_epoch(l);
    T_EQ_INT(t, bpe, sub.n / B);
    int flips = 0, rows = 0, bad_sample = 0, bad_pixels = 0;
    for (int64_t e = 0; e < 2; e++) {
      fisher_yates(order, sub.n, 77, HSC_RNG_DATA, (uint64_t)e);
      for (int64_t b = 0; b < bpe; b++) {
        int32_t y[B];
        hsc_data_cursor at;
        hsc_loader_next(l, x, y, &at);
        T_CHECK(t, at.epoch == e && at.batch == b);
        for (int i = 0; i < B; i++) {
          int64_t p = b * B + i;
          int32_t s = sub.index[order[p]];
          bad_sample += y[i] != s;
          flips += expected_aug(&ds, s, &o.transform, 77, e, sub.n, p, want);
          bad_pixels += memcmp(x + i * S, want, S * sizeof(float)) != 0;
          rows++;
        }
      }
    }
    T_EQ_INT(t, bad_sample, 0);
    T_EQ_INT(t, bad_pixels, 0);
    if (variants[v].flip)
      T_CHECK(t, flips > rows / 4 && flips < 3 * rows / 4);
    else
      T_EQ_INT(t, flips, 0);
    hsc_loader_free(l);
  }
  /* No augmentation: a training row equals hsc_data_fill of the same sample bit for bit. */
  hsc_loader_opts o = {.ds = &ds,
                       .sub = &sub,
                       .global_batch = B,
                       .rank = 0,
                       .nranks = 1,
                       .shuffle = 0,
                       .transform = transform(0, 2, 1, C),
                       .seed = 77};
  hsc_loader *l = hsc_loader_create(&o);
  int32_t y[B], yf[B];
  float *xf = hsc_xmalloc(B * S * sizeof(float));
  hsc_loader_seek(l, (hsc_data_cursor){3, 2});
  hsc_loader_next(l, x, y, NULL);
  hsc_data_fill(&ds, &sub, 2 * B, B, &o.transform, xf, yf);
  T_CHECK(t, !memcmp(x, xf, B * S * sizeof(float)) && !memcmp(y, yf, sizeof y));
  hsc_loader_free(l);
  free(xf);
  free(x);
  free(want);
  free(order);
  hsc_subset_free(&sub);
  hsc_subset_free(&val);
  hsc_dataset_free(&ds);
}

/* Each sample of the subset once per epoch, except the n mod B dropped ones; epochs differ in order. */
static void t_loader_coverage(hsc_test *t) {
  enum { N = 1003, B = 16 };
  hsc_dataset ds;
  synth(&ds, N, 1, 3, 3);
  hsc_subset sub;
  hsc_subset_all(N, &sub);
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    hsc_loader_opts o = {.ds = &ds,
                         .sub = &sub,
                         .global_batch = B,
                         .nranks = 1,
                         .shuffle = shuffle,
                         .transform = transform(1, 1, 1, 1),
                         .seed = 3,
                         .prefetch = shuffle};
    hsc_loader *l = hsc_loader_create(&o);
    int64_t bpe = hsc_loader_batches_per_epoch(l);
    T_EQ_INT(t, bpe, N / B);
    int32_t first[2][B];
    for (int e = 0; e < 3; e++) {
      int count[N] = {0};
      for (int64_t b = 0; b < bpe; b++) {
        float x[B * 9];
        int32_t y[B];
        hsc_loader_next(l, x, y, NULL);
        if (b == 0 && e < 2) memcpy(first[e], y, sizeof y);
        for (int i = 0; i < B; i++) count[y[i]]++;
      }
      int once = 0, twice = 0;
      for (int i = 0; i < N; i++) {
        once += count[i] == 1;
        twice += count[i] > 1;
      }
      T_EQ_INT(t, once, bpe * B);
      T_EQ_INT(t, twice, 0);
      if (!shuffle) T_EQ_INT(t, count[N - 1], 0); /* in order: the tail is the dropped part */
      hsc_data_cursor c = hsc_loader_cursor(l);
      T_CHECK(t, c.epoch == e + 1 && c.batch == 0);
    }
    if (shuffle)
      T_CHECK(t, memcmp(first[0], first[1], sizeof first[0]) != 0);
    else
      T_CHECK(t, first[0][0] == 0 && first[0][B - 1] == B - 1 && first[1][0] == 0);
    hsc_loader_free(l);
  }
  hsc_subset_free(&sub);
  hsc_dataset_free(&ds);
}

/* All batches of `epochs` epochs from a loader: x [epochs * bpe * local * S], y likewise. */
static void collect(hsc_loader *l, int64_t batches, size_t local, size_t S, float *x, int32_t *y) {
  for (int64_t k = 0; k < batches; k++)
    hsc_loader_next(l, x + (size_t)k * local * S, y + (size_t)k * local, NULL);
}

/* R ranks' shards, concatenated in rank order, are the 1-rank batch bit for bit. */
static void t_loader_shards(hsc_test *t) {
  enum { N = 300, C = 1, H = 6, W = 6, B = 24, EPOCHS = 2 };
  const size_t S = C * H * W;
  hsc_dataset ds;
  synth(&ds, N, C, H, W);
  hsc_subset sub, val;
  hsc_subset_split(N, 50, 4, &sub, &val);
  hsc_loader_opts o = {.ds = &ds,
                       .sub = &sub,
                       .global_batch = B,
                       .rank = 0,
                       .nranks = 1,
                       .shuffle = 1,
                       .transform = transform(1, 2, 1, C),
                       .seed = 11};
  hsc_loader *ref = hsc_loader_create(&o);
  int64_t batches = EPOCHS * hsc_loader_batches_per_epoch(ref);
  float *xr = hsc_xmalloc((size_t)batches * B * S * sizeof(float));
  int32_t *yr = hsc_xmalloc((size_t)batches * B * sizeof(int32_t));
  collect(ref, batches, B, S, xr, yr);
  hsc_loader_free(ref);
  const int ranks[2] = {2, 4};
  for (int k = 0; k < 2; k++) {
    int R = ranks[k];
    size_t local = B / R;
    hsc_loader *l[4];
    for (int r = 0; r < R; r++) {
      hsc_loader_opts or = o;
      or.rank = r;
      or.nranks = R;
      or.prefetch = r % 2; /* mix both modes: neither may change a value */
      l[r] = hsc_loader_create(& or);
    }
    int bad = 0;
    float *x = hsc_xmalloc(local * S * sizeof(float));
    int32_t *y = hsc_xmalloc(local * sizeof(int32_t));
    for (int64_t b = 0; b < batches; b++)
      for (int r = 0; r < R; r++) {
        hsc_loader_next(l[r], x, y, NULL);
        size_t row = (size_t)b * B + (size_t)r * local;
        bad += memcmp(x, xr + row * S, local * S * sizeof(float)) != 0;
        bad += memcmp(y, yr + row, local * sizeof(int32_t)) != 0;
      }
    if (bad) T_FAIL(t, "%d ranks: %d shards differ from the 1-rank batches", R, bad);
    for (int r = 0; r < R; r++) hsc_loader_free(l[r]);
    free(x);
    free(y);
  }
  free(xr);
  free(yr);
  hsc_subset_free(&sub);
  hsc_subset_free(&val);
  hsc_dataset_free(&ds);
}

static void t_loader_prefetch(hsc_test *t) {
  enum { N = 500, C = 1, H = 8, W = 8, B = 32, EPOCHS = 3 };
  const size_t S = C * H * W;
  hsc_dataset ds;
  synth(&ds, N, C, H, W);
  hsc_subset sub;
  hsc_subset_all(N, &sub);
  hsc_loader_opts o = {.ds = &ds,
                       .sub = &sub,
                       .global_batch = B,
                       .nranks = 1,
                       .shuffle = 1,
                       .transform = transform(1, 3, 1, C),
                       .seed = 123};
  hsc_loader *a = hsc_loader_create(&o);
  o.prefetch = 1;
  hsc_loader *p = hsc_loader_create(&o);
  int64_t bpe = hsc_loader_batches_per_epoch(a);
  int bad = 0, bad_at = 0;
  float xa[B * S], xp[B * S];
  int32_t ya[B], yp[B];
  for (int64_t k = 0; k < EPOCHS * bpe; k++) {
    hsc_data_cursor ca, cp;
    hsc_loader_next(a, xa, ya, &ca);
    hsc_loader_next(p, xp, yp, &cp);
    bad += memcmp(xa, xp, sizeof xa) != 0 || memcmp(ya, yp, sizeof ya) != 0;
    bad_at += ca.epoch != k / bpe || ca.batch != k % bpe || cp.epoch != ca.epoch || cp.batch != ca.batch;
  }
  T_EQ_INT(t, bad, 0);
  T_EQ_INT(t, bad_at, 0);
  hsc_data_cursor c = hsc_loader_cursor(p);
  T_CHECK(t, c.epoch == EPOCHS && c.batch == 0);
  hsc_loader_free(a);
  hsc_loader_free(p);
  hsc_subset_free(&sub);
  hsc_dataset_free(&ds);
}

/* seek(e, b) then next gives what iteration reaches at (e, b), and iteration continues from there;
 * seeks land while a prefetched batch is ready, in flight or requested. */
static void t_loader_seek(hsc_test *t) {
  enum { N = 130, C = 1, H = 5, W = 5, B = 16, EPOCHS = 3 };
  const size_t S = C * H * W;
  hsc_dataset ds;
  synth(&ds, N, C, H, W);
  hsc_subset sub;
  hsc_subset_all(N, &sub);
  hsc_loader_opts o = {.ds = &ds,
                       .sub = &sub,
                       .global_batch = B,
                       .nranks = 1,
                       .shuffle = 1,
                       .transform = transform(1, 2, 1, C),
                       .seed = 5};
  hsc_loader *ref = hsc_loader_create(&o);
  int64_t bpe = hsc_loader_batches_per_epoch(ref);
  float *xr = hsc_xmalloc((size_t)EPOCHS * bpe * B * S * sizeof(float));
  int32_t *yr = hsc_xmalloc((size_t)EPOCHS * bpe * B * sizeof(int32_t));
  collect(ref, EPOCHS * bpe, B, S, xr, yr);
  hsc_loader_free(ref);
  static const int64_t targets[][2] = {{2, 3}, {0, 0}, {0, 0}, {1, 7}, {1, 6}, {0, 7}, {2, 0}, {1, 1}};
  for (int prefetch = 0; prefetch < 2; prefetch++) {
    o.prefetch = prefetch;
    hsc_loader *l = hsc_loader_create(&o);
    int bad = 0;
    float x[B * S];
    int32_t y[B];
    for (size_t k = 0; k < ARRAY_LEN(targets); k++) {
      hsc_data_cursor c = {targets[k][0], targets[k][1]};
      hsc_loader_seek(l, c);
      T_CHECK(t, hsc_loader_cursor(l).epoch == c.epoch && hsc_loader_cursor(l).batch == c.batch);
      /* Two batches from there (the second one crosses into the next epoch after batch 7). */
      for (int step = 0; step < 2; step++) {
        int64_t g = c.epoch * bpe + c.batch + step;
        if (g >= EPOCHS * bpe) break;
        hsc_data_cursor at;
        hsc_loader_next(l, x, y, &at);
        bad += at.epoch != g / bpe || at.batch != g % bpe;
        bad +=
            memcmp(x, xr + (size_t)g * B * S, sizeof x) != 0 || memcmp(y, yr + (size_t)g * B, sizeof y) != 0;
      }
    }
    T_EQ_INT(t, bad, 0);
    hsc_loader_free(l);
  }
  free(xr);
  free(yr);
  hsc_subset_free(&sub);
  hsc_dataset_free(&ds);
}

/* Freed right after creation, with a batch in flight, after a seek, or with a batch ready: no hang (the
 * test would time out), no leak (the sanitizer build). */
static void t_loader_free_inflight(hsc_test *t) {
  enum { N = 4096, C = 1, H = 28, W = 28, B = 1024 };
  hsc_dataset ds;
  synth(&ds, N, C, H, W);
  hsc_subset sub;
  hsc_subset_all(N, &sub);
  hsc_loader_opts o = {.ds = &ds,
                       .sub = &sub,
                       .global_batch = B,
                       .nranks = 1,
                       .shuffle = 1,
                       .transform = transform(1, 2, 1, C),
                       .seed = 1,
                       .prefetch = 1};
  float *x = hsc_xmalloc((size_t)B * H * W * sizeof(float));
  int32_t y[B];
  for (int k = 0; k < 20; k++) {
    hsc_loader *l = hsc_loader_create(&o);
    if (k % 4 >= 1) hsc_loader_next(l, x, y, NULL);
    if (k % 4 == 2) hsc_loader_seek(l, (hsc_data_cursor){5, 3});
    if (k % 4 == 3) {
      hsc_loader_next(l, x, y, NULL);
      hsc_loader_seek(l, (hsc_data_cursor){0, 0});
      hsc_loader_seek(l, (hsc_data_cursor){1, 2});
    }
    hsc_loader_free(l);
  }
  hsc_loader_free(NULL);
  T_CHECK(t, 1); /* reaching here is the check */
  free(x);
  hsc_subset_free(&sub);
  hsc_dataset_free(&ds);
}

/* The real split and one augmented epoch of 128 through the prefetching loader: labels of the epoch
 * match the subset's, values are finite and inside the normalised range. */
static void t_fmnist_epoch(hsc_test *t) {
  enum { B = 128 };
  hsc_dataset train;
  hsc_error err = {0};
  double t0 = hsc_now();
  hsc_status st = hsc_fmnist_load(FMNIST_DIR, &train, NULL, &err);
  double t_load = hsc_now() - t0;
  if (st != HSC_OK) T_FAIL(t, "%s", err.msg);
  T_REQUIRE(t, st == HSC_OK);
  hsc_subset tr, va;
  hsc_subset_split(train.n, 5000, 0, &tr, &va);
  hsc_loader_opts o = {
      .ds = &train,
      .sub = &tr,
      .global_batch = B,
      .nranks = 1,
      .shuffle = 1,
      .transform = {.augment = 1, .crop_pad = 2, .flip = 1, .mean = {0.2860f}, .std = {0.3530f}},
      .seed = 1,
      .prefetch = 1};
  hsc_loader *l = hsc_loader_create(&o);
  int64_t bpe = hsc_loader_batches_per_epoch(l);
  T_EQ_INT(t, bpe, 55000 / B);
  float *x = hsc_xmalloc((size_t)B * 784 * sizeof(float));
  int32_t y[B];
  int hist[10] = {0}, out_of_range = 0;
  float lo = -0.2860f / 0.3530f, hi = (1.0f - 0.2860f) / 0.3530f;
  t0 = hsc_now();
  for (int64_t b = 0; b < bpe; b++) {
    hsc_loader_next(l, x, y, NULL);
    for (int i = 0; i < B; i++) hist[y[i]]++;
    for (int i = 0; i < B * 784; i++) out_of_range += !(x[i] >= lo && x[i] <= hi);
  }
  double t_epoch = hsc_now() - t0;
  if (t->verbose)
    fprintf(stderr, "  load %.3f s, one augmented epoch of %lld batches of %d: %.3f s\n", t_load,
            (long long)bpe, B, t_epoch);
  T_EQ_INT(t, out_of_range, 0);
  int want[10] = {0}, total = 0;
  for (int i = 0; i < tr.n; i++) want[train.labels[tr.index[i]]]++;
  for (int c = 0; c < 10; c++) {
    T_CHECK(t, hist[c] <= want[c] && hist[c] >= want[c] - (tr.n - bpe * B));
    total += hist[c];
  }
  T_EQ_INT(t, total, bpe * B);
  hsc_loader_free(l);
  free(x);
  hsc_subset_free(&tr);
  hsc_subset_free(&va);
  hsc_dataset_free(&train);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"fmnist_real", t_fmnist_real},
      {"idx_roundtrip", t_idx_roundtrip},
      {"idx_bad_magic", t_idx_bad_magic},
      {"idx_wrong_ndim", t_idx_wrong_ndim},
      {"idx_count_mismatch", t_idx_count_mismatch},
      {"idx_truncated", t_idx_truncated},
      {"idx_corrupt_gzip", t_idx_corrupt_gzip},
      {"idx_trailing", t_idx_trailing},
      {"idx_label_range", t_idx_label_range},
      {"idx_missing", t_idx_missing},
      {"fmnist_dir", t_fmnist_dir},
      {"split", t_split},
      {"transform_config", t_transform_config},
      {"data_fill", t_data_fill},
      {"loader_augment", t_loader_augment},
      {"loader_coverage", t_loader_coverage},
      {"loader_shards", t_loader_shards},
      {"loader_prefetch", t_loader_prefetch},
      {"loader_seek", t_loader_seek},
      {"loader_free_inflight", t_loader_free_inflight},
      {"fmnist_epoch", t_fmnist_epoch},
  };
  return hsc_test_main("test_data", argc, argv, cases, (int)ARRAY_LEN(cases));
}
