/* HDF5 checkpoints: round trip, h5py compatibility, refusal of corrupt / truncated / incomplete files with
 * messages naming them, the run-directory helpers (newest usable, pruning) and atomic replacement.
 * Every case works in its own mkdtemp directory under /tmp and removes it. */
#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "hsconas/checkpoint.h"

#define PYTHON "/usr/bin/python3"

/* ---- helpers ---- */

typedef struct {
  char path[256];
} tmpdir;

static int tmpdir_make(hsc_test *t, tmpdir *d) {
  snprintf(d->path, sizeof d->path, "/tmp/hsc_ckpt_XXXXXX");
  if (!mkdtemp(d->path)) {
    T_FAIL(t, "mkdtemp failed");
    return 0;
  }
  return 1;
}

static void rm_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *dir = opendir(path);
    if (dir) {
      struct dirent *de;
      while ((de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        rm_tree(sub);
      }
      closedir(dir);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void join(char *buf, size_t len, const char *dir, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

/* Number of entries in dir other than . and .. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
  closedir(d);
  return n;
}

#define T_OK(t, call, err)                                                 \
  do {                                                                     \
    hsc_status t_rc_ = (call);                                             \
    if (t_rc_ != HSC_OK) {                                                 \
      T_FAIL((t), "%s: %s: %s", #call, hsc_status_name(t_rc_), (err).msg); \
      return;                                                              \
    }                                                                      \
  } while (0)

/* Checks that msg contains needle. */
#define T_HAS(t, msg, needle)                                                                  \
  do {                                                                                         \
    if (!strstr((msg), (needle))) T_FAIL((t), "message \"%s\" lacks \"%s\"", (msg), (needle)); \
  } while (0)

static float sample_value(int64_t step, size_t i) { return (float)step + 0.25f * (float)i - 3.0f; }

/* A small checkpoint: meta step, /params/w (f32 [4, 6]) and /rng (i64 [4]), values depending on step. */
static hsc_status write_sample(const char *path, int64_t step, hsc_error *err) {
  hsc_ckpt *ck;
  hsc_status rc = hsc_ckpt_create(&ck, path, err);
  if (rc != HSC_OK) return rc;
  float w[24];
  for (size_t i = 0; i < 24; i++) w[i] = sample_value(step, i);
  int64_t rng[4] = {step, step * 2, -step, 7};
  const int64_t dw[2] = {4, 6}, dr[1] = {4};
  if ((rc = hsc_ckpt_meta_int(ck, "step", step, err)) != HSC_OK ||
      (rc = hsc_ckpt_write_f32(ck, "/params/w", 2, dw, w, err)) != HSC_OK ||
      (rc = hsc_ckpt_write_i64(ck, "/rng", 1, dr, rng, err)) != HSC_OK) {
    hsc_ckpt_abort(ck);
    return rc;
  }
  return hsc_ckpt_commit(ck, err);
}

static int64_t step_of(hsc_test *t, hsc_ckpt *ck) {
  hsc_error err = {0};
  int64_t step = -1;
  if (hsc_ckpt_get_int(ck, "step", &step, &err) != HSC_OK) T_FAIL(t, "get step: %s", err.msg);
  return step;
}

/* File offset of a contiguous dataset's data (HDF5's own answer, read-only). */
static long long data_offset(hsc_test *t, const char *path, const char *name) {
  long long off = -1;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    T_FAIL(t, "H5Fopen(%s) failed", path);
    return -1;
  }
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d >= 0) {
    haddr_t a = H5Dget_offset(d);
    if (a != HADDR_UNDEF) off = (long long)a;
    if (H5Dclose(d) < 0) T_FAIL(t, "H5Dclose failed");
  }
  if (H5Fclose(f) < 0) T_FAIL(t, "H5Fclose failed");
  if (off < 0) T_FAIL(t, "%s: no data offset for %s", path, name);
  return off;
}

/* Flips the bits of one byte at offset. */
static int flip_byte(hsc_test *t, const char *path, long long offset) {
  int fd = open(path, O_RDWR);
  unsigned char b;
  int ok = fd >= 0 && pread(fd, &b, 1, offset) == 1;
  b ^= 0xff;
  ok = ok && pwrite(fd, &b, 1, offset) == 1;
  if (fd >= 0) close(fd);
  if (!ok) T_FAIL(t, "%s: cannot flip byte %lld", path, offset);
  return ok;
}

static int truncate_half(hsc_test *t, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0 || truncate(path, st.st_size / 2) != 0) {
    T_FAIL(t, "%s: cannot truncate", path);
    return 0;
  }
  return 1;
}

/* Runs fn with stderr sent to a file and returns what was written there (caller frees). */
static char *capture_stderr(const char *file, void (*fn)(void *), void *arg) {
  fflush(stderr);
  int saved = dup(2), fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (saved < 0 || fd < 0) return NULL;
  dup2(fd, 2);
  close(fd);
  fn(arg);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  FILE *f = fopen(file, "r");
  if (!f) return NULL;
  char *buf = calloc(1, 65536);
  size_t n = fread(buf, 1, 65535, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* A raw HDF5 file that looks like a checkpoint but is missing pieces: /meta with format_version (and
 * complete when >= 0), one dataset /x with a correct crc32. Returns 1 when written. */
static int write_raw(hsc_test *t, const char *path, int64_t format_version, int64_t complete) {
  int ok = 1;
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = f >= 0 ? H5Gcreate2(f, "/meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  hid_t s = H5Screate(H5S_SCALAR);
  ok &= f >= 0 && g >= 0 && s >= 0;
  if (ok) {
    hid_t a = H5Acreate2(g, "format_version", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    ok &= a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &format_version) >= 0 && H5Aclose(a) >= 0;
    if (complete >= 0) {
      a = H5Acreate2(g, "complete", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
      ok &= a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &complete) >= 0 && H5Aclose(a) >= 0;
    }
    hsize_t n = 3;
    float x[3] = {1, 2, 3};
    uint32_t crc = 0xb20e96b1u; /* zlib.crc32 of the 12 bytes of float32 [1, 2, 3] */
    hid_t ds = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "/x", H5T_IEEE_F32LE, ds, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ok &= ds >= 0 && d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0;
    a = H5Acreate2(d, "crc32", H5T_STD_U32LE, s, H5P_DEFAULT, H5P_DEFAULT);
    ok &= a >= 0 && H5Awrite(a, H5T_NATIVE_UINT32, &crc) >= 0 && H5Aclose(a) >= 0;
    ok &= H5Dclose(d) >= 0 && H5Sclose(ds) >= 0;
  }
  if (s >= 0) ok &= H5Sclose(s) >= 0;
  if (g >= 0) ok &= H5Gclose(g) >= 0;
  if (f >= 0) ok &= H5Fclose(f) >= 0;
  if (!ok) T_FAIL(t, "%s: writing the raw HDF5 file failed", path);
  return ok;
}

/* ---- cases ---- */

static void t_name(hsc_test *t) {
  char buf[256];
  hsc_ckpt_name("/runs/a", "supernet", 1234, buf, sizeof buf);
  T_CHECK(t, !strcmp(buf, "/runs/a/supernet-0000001234.h5"));
}

static void t_round_trip(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "rt.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  /* 1-4 dimensional float32, int64 and uint8 data. */
  const int64_t d1[1] = {7}, d2[2] = {3, 5}, d3[3] = {2, 3, 4}, d4[4] = {2, 3, 4, 5};
  float f1[7], f4[120];
  int64_t i2[15], i3[24];
  uint8_t u1[7], u4[120];
  for (int i = 0; i < 7; i++) f1[i] = 1.5f * (float)i - 2.0f, u1[i] = (uint8_t)(250 + i);
  for (int i = 0; i < 120; i++) f4[i] = (float)i / 7.0f, u4[i] = (uint8_t)(i * 3);
  for (int i = 0; i < 15; i++) i2[i] = (int64_t)i * 1000000000000LL - 5;
  for (int i = 0; i < 24; i++) i3[i] = -(int64_t)i;
  char *big = malloc(100001);
  for (int i = 0; i < 100000; i++) big[i] = (char)('a' + i % 26);
  big[100000] = '\0';
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_CHECK(t, exists(d.path) && count_entries(d.path) == 1); /* only rt.h5.tmp */
  T_OK(t, hsc_ckpt_meta_int(ck, "step", 123456789012LL, &err), err);
  T_OK(t, hsc_ckpt_meta_double(ck, "lr", 0.125, &err), err);
  T_OK(t, hsc_ckpt_meta_str(ck, "phase", "supernet", &err), err);
  T_OK(t, hsc_ckpt_meta_str(ck, "unit", "\xc2\xb5s", &err), err); /* "µs" */
  T_OK(t, hsc_ckpt_meta_str(ck, "config", big, &err), err);
  T_OK(t, hsc_ckpt_meta_int(ck, "epoch", 1, &err), err);
  T_OK(t, hsc_ckpt_meta_int(ck, "epoch", 2, &err), err); /* replaced */
  T_OK(t, hsc_ckpt_write_f32(ck, "/params/stem.conv", 4, d4, f4, &err), err);
  T_OK(t, hsc_ckpt_write_f32(ck, "params/bias", 1, d1, f1, &err), err);
  T_OK(t, hsc_ckpt_write_i64(ck, "/optim/a/b/c", 2, d2, i2, &err), err);
  T_OK(t, hsc_ckpt_write_i64(ck, "/i3", 3, d3, i3, &err), err);
  T_OK(t, hsc_ckpt_write_u8(ck, "/space/mask", 1, d1, u1, &err), err);
  T_OK(t, hsc_ckpt_write_u8(ck, "/space/mask4", 4, d4, u4, &err), err);
  /* float64: values that float32 would round (1/3, 0.1) and ones at the ends of the range */
  const double f64[5] = {1.0 / 3.0, 0.1, -1e300, 4.9e-324, 86.71999999999999};
  const int64_t d64[1] = {5};
  T_OK(t, hsc_ckpt_write_f64(ck, "/search/history/top1", 1, d64, f64, &err), err);
  T_OK(t, hsc_ckpt_commit(ck, &err), err);
  T_CHECK(t, count_entries(d.path) == 1); /* rt.h5, no tmp */

  T_OK(t, hsc_ckpt_open(&ck, path, &err), err);
  T_CHECK(t, !strcmp(hsc_ckpt_path(ck), path));
  T_CHECK(t, hsc_ckpt_has(ck, "/params/stem.conv") && hsc_ckpt_has(ck, "params/stem.conv"));
  T_CHECK(t, !hsc_ckpt_has(ck, "/params/stem") && !hsc_ckpt_has(ck, "/params"));
  T_EQ_INT(t, hsc_ckpt_count(ck, "/params/stem.conv"), 120);
  T_EQ_INT(t, hsc_ckpt_count(ck, "/optim/a/b/c"), 15);
  T_EQ_INT(t, hsc_ckpt_count(ck, "/missing"), 0);
  float gf4[120], gf1[7];
  int64_t gi2[15], gi3[24];
  uint8_t gu1[7], gu4[120];
  T_OK(t, hsc_ckpt_read_f32(ck, "/params/stem.conv", 120, gf4, &err), err);
  T_OK(t, hsc_ckpt_read_f32(ck, "/params/bias", 7, gf1, &err), err);
  T_OK(t, hsc_ckpt_read_i64(ck, "optim/a/b/c", 15, gi2, &err), err);
  T_OK(t, hsc_ckpt_read_i64(ck, "/i3", 24, gi3, &err), err);
  T_OK(t, hsc_ckpt_read_u8(ck, "/space/mask", 7, gu1, &err), err);
  T_OK(t, hsc_ckpt_read_u8(ck, "/space/mask4", 120, gu4, &err), err);
  T_CHECK(t, !memcmp(gf4, f4, sizeof f4) && !memcmp(gf1, f1, sizeof f1));
  T_CHECK(t, !memcmp(gi2, i2, sizeof i2) && !memcmp(gi3, i3, sizeof i3));
  T_CHECK(t, !memcmp(gu1, u1, sizeof u1) && !memcmp(gu4, u4, sizeof u4));
  double g64[5];
  T_OK(t, hsc_ckpt_read_f64(ck, "/search/history/top1", 5, g64, &err), err);
  T_CHECK(t, !memcmp(g64, f64, sizeof f64));
  T_CHECK(t, hsc_ckpt_read_f32(ck, "/search/history/top1", 5, gf1, &err) == HSC_ERR_INPUT);
  int64_t iv = 0;
  double dv = 0;
  char sv[64];
  T_OK(t, hsc_ckpt_get_int(ck, "step", &iv, &err), err);
  T_EQ_INT(t, iv, 123456789012LL);
  T_OK(t, hsc_ckpt_get_int(ck, "epoch", &iv, &err), err);
  T_EQ_INT(t, iv, 2);
  T_OK(t, hsc_ckpt_get_int(ck, "format_version", &iv, &err), err);
  T_EQ_INT(t, iv, HSC_CKPT_FORMAT_VERSION);
  T_OK(t, hsc_ckpt_get_double(ck, "lr", &dv, &err), err);
  T_CHECK(t, dv == 0.125);
  T_OK(t, hsc_ckpt_get_str(ck, "phase", sv, sizeof sv, &err), err);
  T_CHECK(t, !strcmp(sv, "supernet"));
  T_OK(t, hsc_ckpt_get_str(ck, "unit", sv, sizeof sv, &err), err);
  T_CHECK(t, !strcmp(sv, "\xc2\xb5s"));
  T_OK(t, hsc_ckpt_get_str(ck, "program_version", sv, sizeof sv, &err), err);
  T_CHECK(t, !strcmp(sv, HSC_VERSION));
  T_OK(t, hsc_ckpt_get_str(ck, "created", sv, sizeof sv, &err), err);
  T_CHECK(t, strlen(sv) == 20 && sv[4] == '-' && sv[10] == 'T' && sv[19] == 'Z');
  T_OK(t, hsc_ckpt_get_str(ck, "phase", sv, 4, &err), err); /* truncated to len - 1 */
  T_CHECK(t, !strcmp(sv, "sup"));
  char *gbig = malloc(100001);
  T_OK(t, hsc_ckpt_get_str(ck, "config", gbig, 100001, &err), err);
  T_CHECK(t, !strcmp(gbig, big));
  free(gbig);
  free(big);
  hsc_ckpt_close(ck);
  rm_tree(d.path);
}

/* Reading errors name the file, the dataset or key, and both counts. */
static void t_read_errors(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "r.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  T_OK(t, write_sample(path, 5, &err), err);
  T_OK(t, hsc_ckpt_open(&ck, path, &err), err);
  float w[25];
  int64_t iv;
  double dv;
  char sv[16];
  T_EQ_INT(t, hsc_ckpt_read_f32(ck, "/params/w", 25, w, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, "dataset /params/w has 24 elements, expected 25");
  T_EQ_INT(t, hsc_ckpt_read_f32(ck, "/params/nope", 24, w, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, "no dataset /params/nope");
  T_EQ_INT(t, hsc_ckpt_read_i64(ck, "/params/w", 24, (int64_t *)w, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, "holds float32, not int64");
  T_EQ_INT(t, hsc_ckpt_get_int(ck, "nokey", &iv, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, "no /meta attribute 'nokey'");
  T_EQ_INT(t, hsc_ckpt_get_double(ck, "step", &dv, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, "'step' is not a single floating-point number");
  T_EQ_INT(t, hsc_ckpt_get_str(ck, "step", sv, sizeof sv, &err), HSC_ERR_INPUT);
  T_EQ_INT(t, hsc_ckpt_get_int(ck, "program_version", &iv, &err), HSC_ERR_INPUT);
  hsc_ckpt_close(ck);
  char missing[512];
  join(missing, sizeof missing, d.path, "absent.h5");
  T_EQ_INT(t, hsc_ckpt_open(&ck, missing, &err), HSC_ERR_IO);
  T_CHECK(t, ck == NULL);
  T_HAS(t, err.msg, missing);
  /* Not HDF5 at all. */
  char junk[512];
  join(junk, sizeof junk, d.path, "junk.h5");
  FILE *f = fopen(junk, "w");
  fputs("not a checkpoint\n", f);
  fclose(f);
  T_EQ_INT(t, hsc_ckpt_open(&ck, junk, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, junk);
  T_HAS(t, err.msg, "not a readable HDF5 checkpoint");
  rm_tree(d.path);
}

static void t_write_errors(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "w.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_EQ_INT(t, hsc_ckpt_meta_int(ck, "complete", 1, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, "'complete' is written by the checkpoint itself");
  hsc_ckpt_abort(ck);
  T_EQ_INT(t, count_entries(d.path), 0);
  /* The directory does not exist. */
  char nodir[512];
  join(nodir, sizeof nodir, d.path, "no/such/dir.h5");
  T_EQ_INT(t, hsc_ckpt_create(&ck, nodir, &err), HSC_ERR_IO);
  T_CHECK(t, ck == NULL);
  T_HAS(t, err.msg, "no/such/dir.h5.tmp: cannot create");
  rm_tree(d.path);
}

/* h5py (the system Python's) reads the names, values, and string attributes as str, and its zlib.crc32 of
 * each dataset's bytes equals the stored attribute. */
static void t_h5py(hsc_test *t) {
  if (access(PYTHON, X_OK) != 0) T_SKIP(t, "%s not found", PYTHON);
  if (system(PYTHON " -c 'import h5py, numpy' >/dev/null 2>&1") != 0)
    T_SKIP(t, "h5py or numpy is not installed for %s", PYTHON);
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512], script[512], cmd[1200];
  join(path, sizeof path, d.path, "py.h5");
  join(script, sizeof script, d.path, "check.py");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  float w[120];
  for (int i = 0; i < 120; i++) w[i] = 0.5f * (float)i;
  int64_t r[3] = {-1, 0, 1LL << 40};
  uint8_t m[6] = {0, 1, 2, 253, 254, 255};
  const int64_t dw[4] = {2, 3, 4, 5}, dr[1] = {3}, dm[2] = {2, 3};
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_OK(t, hsc_ckpt_meta_int(ck, "step", 42, &err), err);
  T_OK(t, hsc_ckpt_meta_double(ck, "lr", 0.125, &err), err);
  T_OK(t, hsc_ckpt_meta_str(ck, "phase", "search", &err), err);
  T_OK(t, hsc_ckpt_write_f32(ck, "/params/stem.conv", 4, dw, w, &err), err);
  T_OK(t, hsc_ckpt_write_i64(ck, "/rng", 1, dr, r, &err), err);
  T_OK(t, hsc_ckpt_write_u8(ck, "/space/mask", 2, dm, m, &err), err);
  T_OK(t, hsc_ckpt_commit(ck, &err), err);
  FILE *f = fopen(script, "w");
  T_REQUIRE(t, f != NULL);
  fputs(
      "import sys, zlib, h5py, numpy as np\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "m = f['meta'].attrs\n"
      "for k in ('phase', 'program_version', 'created'):\n"
      "    assert isinstance(m[k], str), (k, type(m[k]))\n"
      "assert m['phase'] == 'search'\n"
      "assert m['program_version'] == '" HSC_VERSION
      "'\n"
      "assert m['step'] == 42 and m['format_version'] == 1 and m['complete'] == 1\n"
      "assert m['lr'] == 0.125\n"
      "names = []\n"
      "f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)\n"
      "assert sorted(names) == ['params/stem.conv', 'rng', 'space/mask'], names\n"
      "w = f['params/stem.conv'][...]\n"
      "assert w.dtype == np.float32 and w.shape == (2, 3, 4, 5)\n"
      "assert np.array_equal(w.ravel(), np.arange(120, dtype=np.float32) * 0.5)\n"
      "assert f['params/stem.conv'].chunks is None\n"
      "r = f['rng'][...]\n"
      "assert r.dtype == np.int64 and list(r) == [-1, 0, 1 << 40]\n"
      "s = f['space/mask'][...]\n"
      "assert s.dtype == np.uint8 and s.shape == (2, 3) and list(s.ravel()) == [0, 1, 2, 253, 254, 255]\n"
      "for n in names:\n"
      "    x = f[n][...]\n"
      "    assert f[n].attrs['crc32'] == zlib.crc32(x.astype(x.dtype.newbyteorder('<')).tobytes()), n\n",
      f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s %s %s 2>&1", PYTHON, script, path);
  int st = system(cmd);
  T_CHECK(t, st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  rm_tree(d.path);
}

/* A flipped byte in one dataset's data: refused, naming the file and the dataset. */
static void t_corrupt_byte(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "c.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  T_OK(t, write_sample(path, 3, &err), err);
  long long off = data_offset(t, path, "/rng");
  T_REQUIRE(t, off > 0);
  T_REQUIRE(t, flip_byte(t, path, off + 9));
  T_EQ_INT(t, hsc_ckpt_open(&ck, path, &err), HSC_ERR_INPUT);
  T_CHECK(t, ck == NULL);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, "dataset /rng: checksum mismatch (stored 0x");
  T_HAS(t, err.msg, ", computed 0x");
  /* Flipped back, it verifies again. */
  T_REQUIRE(t, flip_byte(t, path, off + 9));
  T_OK(t, hsc_ckpt_open(&ck, path, &err), err);
  hsc_ckpt_close(ck);
  rm_tree(d.path);
}

static void t_truncated(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "t.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  T_OK(t, write_sample(path, 3, &err), err);
  T_REQUIRE(t, truncate_half(t, path));
  T_EQ_INT(t, hsc_ckpt_open(&ck, path, &err), HSC_ERR_INPUT);
  T_CHECK(t, ck == NULL);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, "not a readable HDF5 checkpoint (truncated or corrupt?)");
  if (t->verbose) fprintf(stderr, "  %s\n", err.msg);
  rm_tree(d.path);
}

/* A file without "complete": a hand-made one, and a copy of a real PATH.tmp taken before commit. */
static void t_incomplete(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512], tmp[600], copy[512], cmd[1400];
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  join(path, sizeof path, d.path, "raw.h5");
  T_REQUIRE(t, write_raw(t, path, HSC_CKPT_FORMAT_VERSION, -1));
  T_EQ_INT(t, hsc_ckpt_open(&ck, path, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, ": incomplete checkpoint (no 'complete' attribute)");
  /* The same file with complete = 1 verifies (so the refusal above was for the attribute alone). */
  T_REQUIRE(t, write_raw(t, path, HSC_CKPT_FORMAT_VERSION, 1));
  T_OK(t, hsc_ckpt_open(&ck, path, &err), err);
  hsc_ckpt_close(ck);

  join(path, sizeof path, d.path, "real.h5");
  join(copy, sizeof copy, d.path, "copy.h5");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  float w[1000] = {0};
  const int64_t dw[1] = {1000};
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  hsc_status rc = hsc_ckpt_write_f32(ck, "/params/w", 1, dw, w, &err);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tmp, copy);
  int st = system(cmd);
  hsc_ckpt_abort(ck);
  T_EQ_INT(t, rc, HSC_OK);
  T_REQUIRE(t, st == 0);
  hsc_error err2 = {0};
  T_CHECK(t, hsc_ckpt_open(&ck, copy, &err2) == HSC_ERR_INPUT);
  T_HAS(t, err2.msg, copy);
  T_CHECK(t, strstr(err2.msg, "incomplete checkpoint") || strstr(err2.msg, "not a readable HDF5 checkpoint"));
  if (t->verbose) fprintf(stderr, "  %s\n", err2.msg);
  rm_tree(d.path);
}

static void t_format_version(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  join(path, sizeof path, d.path, "v99.h5");
  T_REQUIRE(t, write_raw(t, path, 99, 1));
  T_EQ_INT(t, hsc_ckpt_open(&ck, path, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, path);
  T_HAS(t, err.msg, "unsupported format_version 99");
  rm_tree(d.path);
}

/* A second commit to the same name replaces the file only at commit; the old one stays readable while the
 * new one is written. */
static void t_commit_replaces(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "s.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL, *old = NULL;
  T_OK(t, write_sample(path, 1, &err), err);
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_OK(t, hsc_ckpt_meta_int(ck, "step", 2, &err), err);
  T_OK(t, hsc_ckpt_open(&old, path, &err), err);
  T_EQ_INT(t, step_of(t, old), 1);
  hsc_ckpt_close(old);
  T_OK(t, hsc_ckpt_commit(ck, &err), err);
  T_EQ_INT(t, count_entries(d.path), 1);
  T_OK(t, hsc_ckpt_open(&ck, path, &err), err);
  T_EQ_INT(t, step_of(t, ck), 2);
  T_CHECK(t, !hsc_ckpt_has(ck, "/params/w"));
  hsc_ckpt_close(ck);
  rm_tree(d.path);
}

/* A failed write makes commit refuse; a failed rename too; either way PATH.tmp goes and PATH stays. */
static void t_commit_failure(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "f.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  T_OK(t, write_sample(path, 1, &err), err);
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_OK(t, hsc_ckpt_meta_int(ck, "step", 2, &err), err);
  float x[4] = {0};
  const int64_t bad[5] = {1, 1, 1, 1, 4};
  T_EQ_INT(t, hsc_ckpt_write_f32(ck, "/x", 5, bad, x, &err), HSC_ERR_INPUT);
  T_HAS(t, err.msg, "dataset /x: rank 5");
  T_EQ_INT(t, hsc_ckpt_commit(ck, &err), HSC_ERR_IO);
  T_HAS(t, err.msg, "not committed");
  T_EQ_INT(t, count_entries(d.path), 1);
  T_OK(t, hsc_ckpt_open(&ck, path, &err), err);
  T_EQ_INT(t, step_of(t, ck), 1);
  hsc_ckpt_close(ck);

  /* PATH is a non-empty directory: the rename fails. */
  char dirpath[512], inner[600];
  join(dirpath, sizeof dirpath, d.path, "dir.h5");
  T_REQUIRE(t, mkdir(dirpath, 0700) == 0);
  snprintf(inner, sizeof inner, "%s/keep", dirpath);
  FILE *f = fopen(inner, "w");
  T_REQUIRE(t, f != NULL);
  fclose(f);
  T_OK(t, hsc_ckpt_create(&ck, dirpath, &err), err);
  T_EQ_INT(t, hsc_ckpt_commit(ck, &err), HSC_ERR_IO);
  T_HAS(t, err.msg, "cannot rename");
  T_EQ_INT(t, count_entries(d.path), 2); /* f.h5 and dir.h5, no tmp */
  T_CHECK(t, exists(inner));
  rm_tree(d.path);
}

static void t_abort(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "a.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  float w[10] = {0};
  const int64_t dw[1] = {10};
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_OK(t, hsc_ckpt_write_f32(ck, "/w", 1, dw, w, &err), err);
  T_EQ_INT(t, count_entries(d.path), 1);
  hsc_ckpt_abort(ck);
  T_EQ_INT(t, count_entries(d.path), 0);
  hsc_ckpt_abort(NULL);
  hsc_ckpt_close(NULL);
  rm_tree(d.path);
}

typedef struct {
  const char *dir;
  hsc_ckpt *ck;
  hsc_status rc;
  hsc_error err;
} latest_call;

static void call_open_latest(void *arg) {
  latest_call *c = arg;
  c->rc = hsc_ckpt_open_latest(c->dir, "supernet", &c->ck, &c->err);
}

/* Three checkpoints, the newest corrupt: the second is opened and the newest reported. */
static void t_latest_skips_corrupt(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  hsc_error err = {0};
  char p[3][512], other[512], log[512];
  for (int i = 0; i < 3; i++) {
    hsc_ckpt_name(d.path, "supernet", 10 * (i + 1), p[i], sizeof p[i]);
    T_OK(t, write_sample(p[i], 10 * (i + 1), &err), err);
  }
  /* Another phase's newer checkpoint and a temporary file are not candidates. */
  hsc_ckpt_name(d.path, "search", 99, other, sizeof other);
  T_OK(t, write_sample(other, 99, &err), err);
  char stale[600];
  snprintf(stale, sizeof stale, "%s/supernet-0000000040.h5.tmp", d.path);
  FILE *f = fopen(stale, "w");
  T_REQUIRE(t, f != NULL);
  fclose(f);
  long long off = data_offset(t, p[2], "/params/w");
  T_REQUIRE(t, off > 0 && flip_byte(t, p[2], off));
  join(log, sizeof log, d.path, "stderr.txt");
  latest_call c = {.dir = d.path};
  char *out = capture_stderr(log, call_open_latest, &c);
  T_REQUIRE(t, out != NULL);
  if (t->verbose) fprintf(stderr, "%s", out);
  T_EQ_INT(t, c.rc, HSC_OK);
  T_REQUIRE(t, c.ck != NULL);
  T_CHECK(t, !strcmp(hsc_ckpt_path(c.ck), p[1]));
  T_EQ_INT(t, step_of(t, c.ck), 20);
  float w[24];
  T_OK(t, hsc_ckpt_read_f32(c.ck, "/params/w", 24, w, &err), err);
  T_CHECK(t, w[5] == sample_value(20, 5));
  hsc_ckpt_close(c.ck);
  T_HAS(t, out, "warning");
  T_HAS(t, out, p[2]);
  T_HAS(t, out, "checksum mismatch");
  T_CHECK(t, !strstr(out, p[1]));
  free(out);
  rm_tree(d.path);
}

static void t_latest_all_bad(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  hsc_error err = {0};
  char p[3][512], log[512];
  for (int i = 0; i < 3; i++) {
    hsc_ckpt_name(d.path, "supernet", i + 1, p[i], sizeof p[i]);
    T_OK(t, write_sample(p[i], i + 1, &err), err);
    T_REQUIRE(t, truncate_half(t, p[i]));
  }
  join(log, sizeof log, d.path, "stderr.txt");
  latest_call c = {.dir = d.path};
  char *out = capture_stderr(log, call_open_latest, &c);
  T_REQUIRE(t, out != NULL);
  T_EQ_INT(t, c.rc, HSC_ERR_INPUT);
  T_CHECK(t, c.ck == NULL);
  for (int i = 0; i < 3; i++) {
    T_HAS(t, c.err.msg, p[i]);
    T_HAS(t, out, p[i]);
  }
  T_HAS(t, c.err.msg, "none of the 3 'supernet' checkpoints is usable");
  if (t->verbose) fprintf(stderr, "  %s\n", c.err.msg);
  free(out);
  rm_tree(d.path);
}

static void t_latest_none(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  hsc_error err = {0};
  hsc_ckpt *ck = (hsc_ckpt *)&err; /* must be overwritten with NULL */
  T_OK(t, hsc_ckpt_open_latest(d.path, "supernet", &ck, &err), err);
  T_CHECK(t, ck == NULL);
  char other[512], missing[512];
  hsc_ckpt_name(d.path, "search", 1, other, sizeof other);
  T_OK(t, write_sample(other, 1, &err), err);
  T_OK(t, hsc_ckpt_open_latest(d.path, "supernet", &ck, &err), err);
  T_CHECK(t, ck == NULL);
  join(missing, sizeof missing, d.path, "missing");
  T_OK(t, hsc_ckpt_open_latest(missing, "supernet", &ck, &err), err);
  T_CHECK(t, ck == NULL);
  T_OK(t, hsc_ckpt_prune(missing, "supernet", 2, &err), err);
  rm_tree(d.path);
}

static void t_prune(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  hsc_error err = {0};
  char p[5][512], s[2][512], buf[600];
  const int64_t steps[5] = {300, 5, 1000, 40, 2000000}; /* not in order */
  for (int i = 0; i < 5; i++) {
    hsc_ckpt_name(d.path, "supernet", steps[i], p[i], sizeof p[i]);
    T_OK(t, write_sample(p[i], steps[i], &err), err);
  }
  for (int i = 0; i < 2; i++) {
    hsc_ckpt_name(d.path, "search", i, s[i], sizeof s[i]);
    T_OK(t, write_sample(s[i], i, &err), err);
  }
  const char *extra[] = {"supernet-0000000001.h5.tmp", "supernet-0000999999.h5.tmp",
                         "search-0000000007.h5.tmp", "supernet-notes.txt"};
  for (size_t i = 0; i < ARRAY_LEN(extra); i++) {
    join(buf, sizeof buf, d.path, extra[i]);
    FILE *f = fopen(buf, "w");
    T_REQUIRE(t, f != NULL);
    fclose(f);
  }
  T_OK(t, hsc_ckpt_prune(d.path, "supernet", 2, &err), err);
  T_CHECK(t, exists(p[4]) && exists(p[2])); /* 2000000 and 1000 */
  T_CHECK(t, !exists(p[0]) && !exists(p[1]) && !exists(p[3]));
  T_CHECK(t, exists(s[0]) && exists(s[1]));
  /* search's tmp and the unrelated file stay; supernet's tmp files go. */
  T_EQ_INT(t, count_entries(d.path), 2 + 2 + 2);
  join(buf, sizeof buf, d.path, "search-0000000007.h5.tmp");
  T_CHECK(t, exists(buf));
  T_OK(t, hsc_ckpt_prune(d.path, "supernet", 5, &err), err);
  T_EQ_INT(t, count_entries(d.path), 6);
  T_OK(t, hsc_ckpt_prune(d.path, "supernet", 0, &err), err);
  T_EQ_INT(t, count_entries(d.path), 4);
  T_EQ_INT(t, hsc_ckpt_prune(d.path, "supernet", -1, &err), HSC_ERR_INPUT);
  rm_tree(d.path);
}

static void t_inspect(hsc_test *t) {
  tmpdir d;
  if (!tmpdir_make(t, &d)) return;
  char path[512];
  join(path, sizeof path, d.path, "i.h5");
  hsc_error err = {0};
  hsc_ckpt *ck = NULL;
  float w[4] = {-2.0f, 0.0f, 1.0f, 3.0f};
  uint8_t m[3] = {7, 0, 200};
  const int64_t dw[2] = {2, 2}, dm[1] = {3};
  T_OK(t, hsc_ckpt_create(&ck, path, &err), err);
  T_OK(t, hsc_ckpt_meta_str(ck, "config", "a: 1\nb: 2\n", &err), err);
  T_OK(t, hsc_ckpt_meta_double(ck, "lr", 0.5, &err), err);
  T_OK(t, hsc_ckpt_write_u8(ck, "/space/mask", 1, dm, m, &err), err);
  T_OK(t, hsc_ckpt_write_f32(ck, "/params/w", 2, dw, w, &err), err);
  T_OK(t, hsc_ckpt_commit(ck, &err), err);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  T_REQUIRE(t, out != NULL);
  hsc_status rc = hsc_ckpt_inspect(path, out, &err);
  fclose(out);
  if (t->verbose || rc != HSC_OK) fprintf(stderr, "%s", text);
  T_EQ_INT(t, rc, HSC_OK);
  T_HAS(t, text, "format_version  = 1");
  T_HAS(t, text, "lr              = 0.5");
  T_HAS(t, text, "config          = \"a: 1\\nb: 2\\n\"");
  T_HAS(t, text, "/params/w    float32  [2, 2]  crc ok  min -2  max 3  mean 0.5  l2 3.74166");
  T_HAS(t, text, "/space/mask  uint8    [3]     crc ok  min 0  max 200");
  T_CHECK(t, strstr(text, "/params/w") < strstr(text, "/space/mask"));
  T_CHECK(t, strstr(text, "complete") < strstr(text, "config"));
  free(text);
  /* A corrupt file: the error names it, nothing is listed. */
  long long off = data_offset(t, path, "/params/w");
  T_REQUIRE(t, off > 0 && flip_byte(t, path, off + 3));
  text = NULL;
  out = open_memstream(&text, &len);
  T_REQUIRE(t, out != NULL);
  T_EQ_INT(t, hsc_ckpt_inspect(path, out, &err), HSC_ERR_INPUT);
  fclose(out);
  T_HAS(t, err.msg, "dataset /params/w: checksum mismatch");
  free(text);
  rm_tree(d.path);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"name", t_name},
      {"round_trip", t_round_trip},
      {"read_errors", t_read_errors},
      {"write_errors", t_write_errors},
      {"h5py", t_h5py},
      {"corrupt_byte", t_corrupt_byte},
      {"truncated", t_truncated},
      {"incomplete", t_incomplete},
      {"format_version", t_format_version},
      {"commit_replaces", t_commit_replaces},
      {"commit_failure", t_commit_failure},
      {"abort", t_abort},
      {"latest_skips_corrupt", t_latest_skips_corrupt},
      {"latest_all_bad", t_latest_all_bad},
      {"latest_none", t_latest_none},
      {"prune", t_prune},
      {"inspect", t_inspect},
  };
  return hsc_test_main("test_checkpoint", argc, argv, cases, (int)ARRAY_LEN(cases));
}
