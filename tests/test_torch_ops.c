/* Every backend operator against PyTorch on the same inputs.
 *
 * tests/ref/ops_ref.py writes $HSC_REF_DIR/ops.h5: one group per case (attribute `op`, integer and float
 * attributes for the shapes, datasets for the inputs and the expected outputs, computed by torch in float64
 * from the float32 inputs). This program runs each case forward and backward through the backend interface
 * and compares every output element-wise. Each backward runs twice into gradients that start at zero, and
 * the second result must be twice the first: backward operators accumulate.
 * Forward outputs start as NaN, so an output that is not overwritten everywhere fails.
 * Max-width tensors are compared whole: outside the slice an operator uses, gradients must stay zero and
 * parameters and running statistics unchanged, bit for bit. */
#include <assert.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define REF_FILE "ops.h5"

/* Tolerance: |got - want| <= rtol * |want| + floor * max|want| over the tensor. */
typedef struct {
  double rtol, floor;
} ref_tol;

/* Data movement and max(x, 0) are exact in float32. */
static const ref_tol TOL_EXACT = {0.0, 0.0};
/* Results of float32 sums (GEMMs, convolutions, reductions, BN statistics): exact up to summation order, so
 * rtol 1e-4. The floor is for elements that cancel to near zero: they carry the absolute rounding error of
 * the terms they were summed from, which scales with the tensor's magnitude rather than their own (1e-5 of
 * the largest element is still > 100 float32 ulps of it). */
static const ref_tol TOL_SUM = {1e-4, 1e-5};

typedef struct {
  hsc_test *t;
  hid_t g;          /* the case's group */
  const char *name; /* the group's name (or the file's path), for messages */
  void *host[32];   /* host buffers to free */
  int nhost;
  void *dev[32]; /* backend buffers to release */
  int ndev;
} refcase;

/* --- HDF5 access, every call checked --- */

typedef struct {
  char *buf;
  size_t len;
} h5_msg;

/* Walking upward, entry 0 is where HDF5 detected the error: its description is the useful one. */
static herr_t h5_msg_walk(unsigned n, const H5E_error2_t *e, void *data) {
  h5_msg *m = data;
  if (n == 0) snprintf(m->buf, m->len, "%s (in %s)", e->desc ? e->desc : "no description", e->func_name);
  return 0;
}

static void h5_fail_at(refcase *c, const char *file, int line, const char *call, const char *what) {
  char msg[512] = "HDF5 reported no error";
  h5_msg m = {msg, sizeof msg};
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_msg_walk, &m) < 0)
    snprintf(msg, sizeof msg, "the HDF5 error stack could not be read");
  hsc_test_fail_at(c->t, file, line, "%s/%s: %s failed: %s", c->name, what, call, msg);
}

/* Evaluates `call` once; a negative result (HDF5's error value for ids, herr_t and htri_t alike) fails the
 * case with HDF5's own message and the object concerned, and jumps to the function's `done` label. */
#define H5_CHECK(c, call, what)                           \
  do {                                                    \
    if ((call) < 0) {                                     \
      h5_fail_at((c), __FILE__, __LINE__, #call, (what)); \
      goto done;                                          \
    }                                                     \
  } while (0)

/* Closes an id that may be invalid (< 0: nothing to close). Returns 1 when closed or nothing to do. */
#define H5_CLOSE(c, close, id, what) h5_close_at((c), __FILE__, __LINE__, (close), #close, (id), (what))
static int h5_close_at(refcase *c, const char *file, int line, herr_t (*close)(hid_t), const char *call,
                       hid_t id, const char *what) {
  if (id < 0) return 1;
  if (close(id) < 0) {
    h5_fail_at(c, file, line, call, what);
    return 0;
  }
  return 1;
}

/* Reads the scalar attribute `key` of the case's group, converted to memtype. Returns 1 on success. */
static int attr_read(refcase *c, const char *key, hid_t memtype, void *value) {
  hid_t a = H5I_INVALID_HID, s = H5I_INVALID_HID;
  hssize_t points;
  int ok = 0;
  H5_CHECK(c, a = H5Aopen(c->g, key, H5P_DEFAULT), key);
  H5_CHECK(c, s = H5Aget_space(a), key);
  H5_CHECK(c, points = H5Sget_simple_extent_npoints(s), key);
  if (points != 1) {
    T_FAIL(c->t, "%s/%s: attribute has %lld values, expected a scalar", c->name, key, (long long)points);
    goto done;
  }
  H5_CHECK(c, H5Aread(a, memtype, value), key);
  ok = 1;
done:
  ok &= H5_CLOSE(c, H5Sclose, s, key);
  ok &= H5_CLOSE(c, H5Aclose, a, key);
  return ok;
}

/* A variable-length string attribute (what h5py writes for a Python str) into out[len]. */
static int attr_string(refcase *c, const char *key, char *out, size_t len) {
  hid_t a = H5I_INVALID_HID, ft = H5I_INVALID_HID, mt = H5I_INVALID_HID;
  htri_t variable;
  H5T_cset_t cset;
  char *s = NULL;
  int ok = 0;
  H5_CHECK(c, a = H5Aopen(c->g, key, H5P_DEFAULT), key);
  H5_CHECK(c, ft = H5Aget_type(a), key);
  H5_CHECK(c, variable = H5Tis_variable_str(ft), key);
  if (!variable) {
    T_FAIL(c->t, "%s/%s: expected a variable-length string attribute", c->name, key);
    goto done;
  }
  H5_CHECK(c, cset = H5Tget_cset(ft), key);
  H5_CHECK(c, mt = H5Tcopy(H5T_C_S1), key);
  H5_CHECK(c, H5Tset_size(mt, H5T_VARIABLE), key);
  H5_CHECK(c, H5Tset_cset(mt, cset), key);
  H5_CHECK(c, H5Aread(a, mt, &s), key);
  snprintf(out, len, "%s", s ? s : "");
  ok = 1;
done:
  if (s && H5free_memory(s) < 0) {
    h5_fail_at(c, __FILE__, __LINE__, "H5free_memory", key);
    ok = 0;
  }
  ok &= H5_CLOSE(c, H5Tclose, mt, key);
  ok &= H5_CLOSE(c, H5Tclose, ft, key);
  ok &= H5_CLOSE(c, H5Aclose, a, key);
  return ok;
}

typedef struct {
  const char *key;
  int *value;
} int_attr;

/* Reads integer attributes; each must be >= 0 (sizes and flags). Returns 1 when all were read. */
static int read_ints(refcase *c, const int_attr *a, int count) {
  for (int i = 0; i < count; i++) {
    if (!attr_read(c, a[i].key, H5T_NATIVE_INT, a[i].value)) return 0;
    if (*a[i].value < 0) {
      T_FAIL(c->t, "%s/%s: %d, expected >= 0", c->name, a[i].key, *a[i].value);
      return 0;
    }
  }
  return 1;
}
#define READ_INTS(c, ...) \
  read_ints((c), (const int_attr[]){__VA_ARGS__}, (int)(sizeof((int_attr[]){__VA_ARGS__}) / sizeof(int_attr)))

/* A consistency condition on a case's attributes (guards the slices and divisions below). */
#define VALID(c, cond) \
  ((cond)              \
       ? 1             \
       : (hsc_test_fail_at((c)->t, __FILE__, __LINE__, "%s: attributes violate %s", (c)->name, #cond), 0))

static int attr_float(refcase *c, const char *key, float *v) {
  return attr_read(c, key, H5T_NATIVE_FLOAT, v);
}

/* Reads dataset `ds` of exactly `count` elements converted to memtype (elem bytes each) into a new host
 * buffer (caller frees), or fails the case and returns NULL. */
static void *read_data(refcase *c, const char *ds, hid_t memtype, size_t elem, size_t count) {
  hid_t d = H5I_INVALID_HID, s = H5I_INVALID_HID;
  hssize_t points;
  void *buf = NULL;
  int ok = 0;
  H5_CHECK(c, d = H5Dopen2(c->g, ds, H5P_DEFAULT), ds);
  H5_CHECK(c, s = H5Dget_space(d), ds);
  H5_CHECK(c, points = H5Sget_simple_extent_npoints(s), ds);
  if ((size_t)points != count) {
    T_FAIL(c->t, "%s/%s: %lld elements, the case's attributes imply %zu", c->name, ds, (long long)points,
           count);
    goto done;
  }
  buf = hsc_xaligned(count * elem + 64);
  H5_CHECK(c, H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), ds);
  ok = 1;
done:
  ok &= H5_CLOSE(c, H5Sclose, s, ds);
  ok &= H5_CLOSE(c, H5Dclose, d, ds);
  if (!ok) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* --- buffers owned by the case --- */

static void *keep_host(refcase *c, void *p) {
  assert(c->nhost < (int)ARRAY_LEN(c->host));
  if (p) c->host[c->nhost++] = p;
  return p;
}

static void *dev_alloc(refcase *c, size_t bytes) {
  assert(c->ndev < (int)ARRAY_LEN(c->dev));
  void *p = c->t->be->alloc(c->t->ctx, bytes + 64);
  c->dev[c->ndev++] = p;
  return p;
}

static float *host_f32(refcase *c, const char *ds, size_t count) {
  return keep_host(c, read_data(c, ds, H5T_NATIVE_FLOAT, sizeof(float), count));
}

static int32_t *host_i32(refcase *c, const char *ds, size_t count) {
  return keep_host(c, read_data(c, ds, H5T_NATIVE_INT32, sizeof(int32_t), count));
}

/* Dataset `ds` uploaded to backend memory. */
static void *input(refcase *c, const char *ds, hid_t memtype, size_t elem, size_t count) {
  void *h = read_data(c, ds, memtype, elem, count);
  if (!h) return NULL;
  void *d = dev_alloc(c, count * elem);
  c->t->be->upload(c->t->ctx, d, h, count * elem);
  free(h);
  return d;
}
static float *input_f32(refcase *c, const char *ds, size_t count) {
  return input(c, ds, H5T_NATIVE_FLOAT, sizeof(float), count);
}

/* A forward output, filled with NaN: every element must be overwritten. */
static float *output(refcase *c, size_t count) {
  float *h = hsc_xaligned(count * sizeof(float) + 64);
  for (size_t i = 0; i < count; i++) h[i] = NAN;
  float *d = dev_alloc(c, count * sizeof(float));
  c->t->be->upload(c->t->ctx, d, h, count * sizeof(float));
  free(h);
  return d;
}

/* A gradient: zeroed, since backward accumulates. */
static float *grad(refcase *c, size_t count) {
  float *d = dev_alloc(c, count * sizeof(float));
  c->t->be->zero(c->t->ctx, d, count * sizeof(float));
  return d;
}

static void case_free(refcase *c) {
  for (int i = 0; i < c->nhost; i++) free(c->host[i]);
  for (int i = 0; i < c->ndev; i++) c->t->be->release(c->t->ctx, c->dev[i]);
  c->nhost = c->ndev = 0;
}

/* --- comparison --- */

/* Compares `count` floats of backend memory with dataset `ds` times `factor` (2 after a second backward
 * pass). When `slice` is given, elements outside its regions (the part of a max-width tensor the operator
 * does not use) must equal the reference exactly: zero for gradients, the input for parameters. */
static void expect(refcase *c, const char *ds, const float *dev, size_t count, ref_tol tol, float factor,
                   const hsc_region *slice, int nslice) {
  float *want = read_data(c, ds, H5T_NATIVE_FLOAT, sizeof(float), count);
  if (!want) return;
  float *got = hsc_xaligned(count * sizeof(float) + 64);
  c->t->be->sync(c->t->ctx);
  c->t->be->download(c->t->ctx, got, dev, count * sizeof(float));
  double max_abs = 0.0;
  for (size_t i = 0; i < count; i++) {
    want[i] *= factor;
    if (fabs(want[i]) > max_abs) max_abs = fabs(want[i]);
  }
  char what[160];
  snprintf(what, sizeof what, "%s/%s%s", c->name, ds, factor != 1.0f ? " after two backward passes" : "");
  T_CLOSE(c->t, what, got, want, count, tol.rtol, tol.floor * max_abs);
  if (slice) {
    unsigned char *inside = hsc_xcalloc(count, 1);
    for (int r = 0; r < nslice; r++)
      for (int i = 0; i < slice[r].rows; i++)
        for (int j = 0; j < slice[r].cols; j++) inside[slice[r].offset + (size_t)i * slice[r].ld + j] = 1;
    size_t changed = 0, first = 0;
    for (size_t i = 0; i < count; i++)
      if (!inside[i] && !(got[i] == want[i])) {
        if (!changed) first = i;
        changed++;
      }
    if (changed)
      T_FAIL(c->t, "%s: %zu elements outside the used slice changed; first [%zu]: %.9g, expected %.9g", what,
             changed, first, (double)got[first], (double)want[first]);
    free(inside);
  }
  free(got);
  free(want);
}

/* --- the operators --- */

static void run_conv2d(refcase *c) {
  const hsc_backend *be = c->t->be;
  hsc_conv2d_desc d = {0};
  int bias, need_dx;
  if (!READ_INTS(c, {"n", &d.n}, {"cin", &d.cin}, {"h", &d.h}, {"w", &d.w}, {"cout", &d.cout}, {"kh", &d.kh},
                 {"kw", &d.kw}, {"stride", &d.stride}, {"pad", &d.pad}, {"groups", &d.groups},
                 {"bias", &bias}, {"need_dx", &need_dx}) ||
      !VALID(c, d.groups > 0 && d.stride > 0 && d.cin % d.groups == 0 && d.cout % d.groups == 0))
    return;
  size_t nx = (size_t)d.n * d.cin * d.h * d.w, nw = (size_t)d.cout * (d.cin / d.groups) * d.kh * d.kw;
  size_t ny = (size_t)d.n * d.cout * hsc_conv2d_out_h(&d) * hsc_conv2d_out_w(&d);
  float *x = input_f32(c, "x", nx), *w = input_f32(c, "w", nw), *dy = input_f32(c, "dy", ny);
  float *b = bias ? input_f32(c, "b", d.cout) : NULL;
  if (!x || !w || !dy || (bias && !b)) return;
  float *y = output(c, ny);
  be->conv2d_forward(c->t->ctx, &d, x, w, b, y);
  expect(c, "y", y, ny, TOL_SUM, 1, NULL, 0);
  /* need_dx = 0 is the stem: dx is NULL and must be skipped. */
  float *dx = need_dx ? grad(c, nx) : NULL, *dw = grad(c, nw), *db = bias ? grad(c, d.cout) : NULL;
  for (int pass = 1; pass <= 2; pass++) {
    be->conv2d_backward(c->t->ctx, &d, x, w, dy, dx, dw, db);
    if (dx) expect(c, "dx", dx, nx, TOL_SUM, pass, NULL, 0);
    expect(c, "dw", dw, nw, TOL_SUM, pass, NULL, 0);
    if (db) expect(c, "db", db, d.cout, TOL_SUM, pass, NULL, 0);
  }
}

static void run_pointwise(refcase *c) {
  const hsc_backend *be = c->t->be;
  hsc_pointwise_desc d = {0};
  int cout_max;
  if (!READ_INTS(c, {"n", &d.n}, {"cin", &d.cin}, {"cout", &d.cout}, {"hw", &d.hw}, {"ldw", &d.ldw},
                 {"cout_max", &cout_max}) ||
      !VALID(c, d.cin <= d.ldw && d.cout <= cout_max))
    return;
  size_t nx = (size_t)d.n * d.cin * d.hw, ny = (size_t)d.n * d.cout * d.hw, nw = (size_t)cout_max * d.ldw;
  float *x = input_f32(c, "x", nx), *w = input_f32(c, "w", nw), *dy = input_f32(c, "dy", ny);
  if (!x || !w || !dy) return;
  float *y = output(c, ny);
  be->pointwise_forward(c->t->ctx, &d, x, w, y);
  expect(c, "y", y, ny, TOL_SUM, 1, NULL, 0);
  const hsc_region slice = {.offset = 0, .rows = d.cout, .cols = d.cin, .ld = d.ldw};
  float *dx = grad(c, nx), *dw = grad(c, nw);
  for (int pass = 1; pass <= 2; pass++) {
    be->pointwise_backward(c->t->ctx, &d, x, w, dy, dx, dw);
    expect(c, "dx", dx, nx, TOL_SUM, pass, NULL, 0);
    expect(c, "dw", dw, nw, TOL_SUM, pass, &slice, 1);
  }
}

static void run_depthwise(refcase *c) {
  const hsc_backend *be = c->t->be;
  hsc_depthwise_desc d = {0};
  int c_max;
  if (!READ_INTS(c, {"n", &d.n}, {"c", &d.c}, {"c_max", &c_max}, {"h", &d.h}, {"w", &d.w}, {"k", &d.k},
                 {"stride", &d.stride}) ||
      !VALID(c, d.c <= c_max && d.stride > 0))
    return;
  size_t nx = (size_t)d.n * d.c * d.h * d.w, nw = (size_t)c_max * d.k * d.k;
  size_t ny =
      (size_t)d.n * d.c * hsc_depthwise_out(d.h, d.k, d.stride) * hsc_depthwise_out(d.w, d.k, d.stride);
  float *x = input_f32(c, "x", nx), *w = input_f32(c, "w", nw), *dy = input_f32(c, "dy", ny);
  if (!x || !w || !dy) return;
  float *y = output(c, ny);
  be->depthwise_forward(c->t->ctx, &d, x, w, y);
  expect(c, "y", y, ny, TOL_SUM, 1, NULL, 0);
  const hsc_region slice = {.offset = 0, .rows = 1, .cols = d.c * d.k * d.k, .ld = (int)nw};
  float *dx = grad(c, nx), *dw = grad(c, nw);
  for (int pass = 1; pass <= 2; pass++) {
    be->depthwise_backward(c->t->ctx, &d, x, w, dy, dx, dw);
    expect(c, "dx", dx, nx, TOL_SUM, pass, NULL, 0);
    expect(c, "dw", dw, nw, TOL_SUM, pass, &slice, 1);
  }
}

/* Reads the BN descriptor and the max-width parameters shared by the training and inference cases. */
static int bn_setup(refcase *c, hsc_bn_desc *d, int *c_max, int *affine, float **x, float **gamma,
                    float **beta, float **running_mean, float **running_var) {
  if (!READ_INTS(c, {"n", &d->n}, {"c", &d->c}, {"c_max", c_max}, {"hw", &d->hw}, {"affine", affine},
                 {"relu", &d->relu}) ||
      !attr_float(c, "eps", &d->eps) || !attr_float(c, "momentum", &d->momentum) || !VALID(c, d->c <= *c_max))
    return 0;
  *x = input_f32(c, "x", (size_t)d->n * d->c * d->hw);
  *gamma = *affine ? input_f32(c, "gamma", *c_max) : NULL;
  *beta = *affine ? input_f32(c, "beta", *c_max) : NULL;
  *running_mean = input_f32(c, "running_mean", *c_max);
  *running_var = input_f32(c, "running_var", *c_max);
  return *x && *running_mean && *running_var && (!*affine || (*gamma && *beta));
}

static void run_bn_train(refcase *c) {
  const hsc_backend *be = c->t->be;
  hsc_bn_desc d = {0};
  int c_max, affine;
  float *x, *gamma, *beta, *rmean, *rvar;
  if (!bn_setup(c, &d, &c_max, &affine, &x, &gamma, &beta, &rmean, &rvar)) return;
  size_t nx = (size_t)d.n * d.c * d.hw;
  float *dy = input_f32(c, "dy", nx);
  if (!dy) return;
  float *y = output(c, nx), *mean = output(c, d.c), *invstd = output(c, d.c);
  be->bn_forward_train(c->t->ctx, &d, x, gamma, beta, rmean, rvar, y, mean, invstd);
  const hsc_region slice = {.offset = 0, .rows = 1, .cols = d.c, .ld = c_max};
  expect(c, "y", y, nx, TOL_SUM, 1, NULL, 0);
  expect(c, "save_mean", mean, d.c, TOL_SUM, 1, NULL, 0);
  expect(c, "save_invstd", invstd, d.c, TOL_SUM, 1, NULL, 0);
  expect(c, "running_mean_out", rmean, c_max, TOL_SUM, 1, &slice, 1);
  expect(c, "running_var_out", rvar, c_max, TOL_SUM, 1, &slice, 1);
  /* Without running statistics (NULL) the normalisation is the same. */
  float *y2 = output(c, nx), *mean2 = output(c, d.c), *invstd2 = output(c, d.c);
  be->bn_forward_train(c->t->ctx, &d, x, gamma, beta, NULL, NULL, y2, mean2, invstd2);
  expect(c, "y", y2, nx, TOL_SUM, 1, NULL, 0);
  float *dx = grad(c, nx), *dgamma = affine ? grad(c, c_max) : NULL, *dbeta = affine ? grad(c, c_max) : NULL;
  for (int pass = 1; pass <= 2; pass++) {
    be->bn_backward(c->t->ctx, &d, x, y, gamma, mean, invstd, dy, dx, dgamma, dbeta);
    expect(c, "dx", dx, nx, TOL_SUM, pass, NULL, 0);
    if (affine) {
      expect(c, "dgamma", dgamma, c_max, TOL_SUM, pass, &slice, 1);
      expect(c, "dbeta", dbeta, c_max, TOL_SUM, pass, &slice, 1);
    }
  }
}

static void run_bn_infer(refcase *c) {
  hsc_bn_desc d = {0};
  int c_max, affine, inplace;
  float *x, *gamma, *beta, *rmean, *rvar;
  if (!bn_setup(c, &d, &c_max, &affine, &x, &gamma, &beta, &rmean, &rvar) ||
      !READ_INTS(c, {"inplace", &inplace}))
    return;
  size_t nx = (size_t)d.n * d.c * d.hw;
  float *y = inplace ? x : output(c, nx);
  c->t->be->bn_forward_infer(c->t->ctx, &d, x, gamma, beta, rmean, rvar, y);
  expect(c, "y", y, nx, TOL_SUM, 1, NULL, 0);
}

static void run_relu(refcase *c) {
  const hsc_backend *be = c->t->be;
  int count, inplace;
  if (!READ_INTS(c, {"count", &count}, {"inplace", &inplace})) return;
  float *x = input_f32(c, "x", count), *dy = input_f32(c, "dy", count);
  if (!x || !dy) return;
  float *y = inplace ? x : output(c, count);
  be->relu_forward(c->t->ctx, count, x, y);
  expect(c, "y", y, count, TOL_EXACT, 1, NULL, 0);
  float *dx = grad(c, count);
  for (int pass = 1; pass <= 2; pass++) {
    be->relu_backward(c->t->ctx, count, y, dy, dx);
    expect(c, "dx", dx, count, TOL_EXACT, pass, NULL, 0);
  }
}

static void run_split(refcase *c) {
  const hsc_backend *be = c->t->be;
  int n, ch, hw;
  if (!READ_INTS(c, {"n", &n}, {"c", &ch}, {"hw", &hw}) || !VALID(c, ch % 2 == 0)) return;
  size_t nx = (size_t)n * ch * hw, nh = nx / 2;
  float *x = input_f32(c, "x", nx), *deven = input_f32(c, "deven", nh), *dodd = input_f32(c, "dodd", nh);
  if (!x || !deven || !dodd) return;
  float *even = output(c, nh), *odd = output(c, nh);
  be->split_forward(c->t->ctx, n, ch, hw, x, even, odd);
  expect(c, "even", even, nh, TOL_EXACT, 1, NULL, 0);
  expect(c, "odd", odd, nh, TOL_EXACT, 1, NULL, 0);
  float *dx = grad(c, nx);
  for (int pass = 1; pass <= 2; pass++) {
    be->split_backward(c->t->ctx, n, ch, hw, deven, dodd, dx);
    expect(c, "dx", dx, nx, TOL_EXACT, pass, NULL, 0);
  }
}

static void run_concat(refcase *c) {
  const hsc_backend *be = c->t->be;
  int n, ca, cb, hw;
  if (!READ_INTS(c, {"n", &n}, {"ca", &ca}, {"cb", &cb}, {"hw", &hw})) return;
  size_t na = (size_t)n * ca * hw, nb = (size_t)n * cb * hw, ny = na + nb;
  float *a = input_f32(c, "a", na), *b = input_f32(c, "b", nb), *dy = input_f32(c, "dy", ny);
  if (!a || !b || !dy) return;
  float *y = output(c, ny);
  be->concat_forward(c->t->ctx, n, ca, cb, hw, a, b, y);
  expect(c, "y", y, ny, TOL_EXACT, 1, NULL, 0);
  float *da = grad(c, na), *db = grad(c, nb);
  for (int pass = 1; pass <= 2; pass++) {
    be->concat_backward(c->t->ctx, n, ca, cb, hw, dy, da, db);
    expect(c, "da", da, na, TOL_EXACT, pass, NULL, 0);
    expect(c, "db", db, nb, TOL_EXACT, pass, NULL, 0);
  }
}

static void run_avgpool(refcase *c) {
  const hsc_backend *be = c->t->be;
  int n, ch, hw;
  if (!READ_INTS(c, {"n", &n}, {"c", &ch}, {"hw", &hw})) return;
  size_t nx = (size_t)n * ch * hw, ny = (size_t)n * ch;
  float *x = input_f32(c, "x", nx), *dy = input_f32(c, "dy", ny);
  if (!x || !dy) return;
  float *y = output(c, ny);
  be->avgpool_forward(c->t->ctx, n, ch, hw, x, y);
  expect(c, "y", y, ny, TOL_SUM, 1, NULL, 0);
  float *dx = grad(c, nx);
  /* dy / hw and dy * (1 / hw) differ in the last bit: TOL_SUM, not exact. */
  for (int pass = 1; pass <= 2; pass++) {
    be->avgpool_backward(c->t->ctx, n, ch, hw, dy, dx);
    expect(c, "dx", dx, nx, TOL_SUM, pass, NULL, 0);
  }
}

static void run_linear(refcase *c) {
  const hsc_backend *be = c->t->be;
  hsc_linear_desc d = {0};
  int bias;
  if (!READ_INTS(c, {"n", &d.n}, {"d_in", &d.in}, {"d_out", &d.out}, {"bias", &bias})) return;
  size_t nx = (size_t)d.n * d.in, nw = (size_t)d.out * d.in, ny = (size_t)d.n * d.out;
  float *x = input_f32(c, "x", nx), *w = input_f32(c, "w", nw), *dy = input_f32(c, "dy", ny);
  float *b = bias ? input_f32(c, "b", d.out) : NULL;
  if (!x || !w || !dy || (bias && !b)) return;
  float *y = output(c, ny);
  be->linear_forward(c->t->ctx, &d, x, w, b, y);
  expect(c, "y", y, ny, TOL_SUM, 1, NULL, 0);
  float *dx = grad(c, nx), *dw = grad(c, nw), *db = bias ? grad(c, d.out) : NULL;
  for (int pass = 1; pass <= 2; pass++) {
    be->linear_backward(c->t->ctx, &d, x, w, dy, dx, dw, db);
    expect(c, "dx", dx, nx, TOL_SUM, pass, NULL, 0);
    expect(c, "dw", dw, nw, TOL_SUM, pass, NULL, 0);
    if (db) expect(c, "db", db, d.out, TOL_SUM, pass, NULL, 0);
  }
}

/* Losses and probabilities are sums of exponentials and logarithms: TOL_SUM. A confident sample's loss is
 * a small difference of two logit-sized numbers (log-sum-exp and the label's logit), so its error is
 * relative to the logits; the floor (relative to the largest loss) covers it. */
static void run_xent(refcase *c) {
  const hsc_backend *be = c->t->be;
  int n, k;
  float smoothing;
  if (!READ_INTS(c, {"n", &n}, {"k", &k}) || !attr_float(c, "smoothing", &smoothing)) return;
  size_t nl = (size_t)n * k;
  float *logits = input_f32(c, "logits", nl);
  int32_t *labels = input(c, "labels", H5T_NATIVE_INT32, sizeof(int32_t), n);
  float *mean_want = host_f32(c, "loss", 1);
  if (!logits || !labels || !mean_want) return;
  float *probs = output(c, nl), *losses = output(c, n);
  be->xent_forward(c->t->ctx, n, k, logits, labels, smoothing, probs, losses);
  expect(c, "probs", probs, nl, TOL_SUM, 1, NULL, 0);
  expect(c, "losses", losses, n, TOL_SUM, 1, NULL, 0);
  /* The batch loss (reduction 'mean'), from the per-sample losses. */
  float *h = keep_host(c, hsc_xaligned(n * sizeof(float)));
  be->download(c->t->ctx, h, losses, n * sizeof(float));
  double sum = 0.0;
  for (int i = 0; i < n; i++) sum += h[i];
  float mean = (float)(sum / n);
  char what[160];
  snprintf(what, sizeof what, "%s/loss (mean of losses)", c->name);
  T_CLOSE(c->t, what, &mean, mean_want, 1, TOL_SUM.rtol, 0.0);
  float *dlogits = grad(c, nl);
  for (int pass = 1; pass <= 2; pass++) {
    be->xent_backward(c->t->ctx, n, k, probs, labels, smoothing, 1.0f / n, dlogits);
    expect(c, "dlogits", dlogits, nl, TOL_SUM, pass, NULL, 0);
  }
}

static void run_accuracy(refcase *c) {
  int n, k, ties;
  if (!READ_INTS(c, {"n", &n}, {"k", &k}, {"ties", &ties})) return;
  float *logits = input_f32(c, "logits", (size_t)n * k);
  int32_t *labels = input(c, "labels", H5T_NATIVE_INT32, sizeof(int32_t), n);
  int32_t *want = host_i32(c, "counts", 2);
  if (!logits || !labels || !want) return;
  int32_t init[2] = {-1, -1}, got[2];
  int32_t *counts = dev_alloc(c, sizeof init);
  c->t->be->upload(c->t->ctx, counts, init, sizeof init);
  c->t->be->accuracy(c->t->ctx, n, k, logits, labels, counts);
  c->t->be->download(c->t->ctx, got, counts, sizeof got);
  if (got[0] != want[0] || got[1] != want[1])
    T_FAIL(c->t, "%s/counts (n %d, k %d%s): top-1 %d, top-5 %d; expected %d, %d", c->name, n, k,
           ties ? ", tied logits" : "", got[0], got[1], want[0], want[1]);
}

/* Three steps of torch.optim.SGD on one buffer holding several parameters (regions), each with its own
 * weight decay; elements outside the regions must stay as they were. Element-wise arithmetic in a
 * possibly different order (or fused): TOL_SUM. */
static void run_sgd(refcase *c) {
  int size, steps, nr, nesterov;
  hsc_sgd_desc o;
  if (!READ_INTS(c, {"size", &size}, {"steps", &steps}, {"nregions", &nr}, {"nesterov", &nesterov}) ||
      !attr_float(c, "momentum", &o.momentum) || !attr_float(c, "dampening", &o.dampening))
    return;
  o.nesterov = nesterov;
  float *param = input_f32(c, "param0", size), *grads = input_f32(c, "grads", (size_t)steps * size);
  float *lr = host_f32(c, "lr", steps), *wd = host_f32(c, "region_wd", nr);
  int32_t *spec = host_i32(c, "regions", (size_t)nr * 4);
  if (!param || !grads || !lr || !wd || !spec) return;
  hsc_region *r = keep_host(c, hsc_xcalloc(nr, sizeof *r));
  for (int i = 0; i < nr; i++) {
    const int32_t *s = spec + 4 * i; /* offset, rows, cols, ld */
    if (s[0] < 0 || s[1] < 1 || s[2] < 1 || s[2] > s[3] ||
        (size_t)s[0] + (size_t)(s[1] - 1) * s[3] + s[2] > (size_t)size) {
      T_FAIL(c->t, "%s/regions[%d]: {%d, %d, %d, %d} does not fit a buffer of %d", c->name, i, s[0], s[1],
             s[2], s[3], size);
      return;
    }
    r[i] =
        (hsc_region){.offset = (size_t)s[0], .rows = s[1], .cols = s[2], .ld = s[3], .weight_decay = wd[i]};
  }
  float *mom = grad(c, size);
  for (int s = 0; s < steps; s++) {
    o.lr = lr[s];
    c->t->be->sgd_update(c->t->ctx, &o, r, nr, param, grads + (size_t)s * size, mom);
  }
  expect(c, "param", param, size, TOL_SUM, 1, r, nr);
  expect(c, "mom", mom, size, TOL_SUM, 1, r, nr);
}

/* The op kinds: the `op` attribute, the case that runs them (named torch_<op>). */
#define REF_OPS(X) \
  X(conv2d)        \
  X(pointwise)     \
  X(depthwise)     \
  X(bn_train)      \
  X(bn_infer)      \
  X(relu)          \
  X(split)         \
  X(concat)        \
  X(avgpool)       \
  X(linear)        \
  X(xent)          \
  X(accuracy)      \
  X(sgd)

static const char *const ref_op_names[] = {
#define X(op) #op,
    REF_OPS(X)
#undef X
};

/* --- the file --- */

typedef struct {
  hid_t f;
  char path[4096];
  char **names; /* the root's groups, in name order */
  size_t n, cap;
} ref_file;

static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g;
  (void)info;
  ref_file *rf = data;
  if (rf->n == rf->cap) {
    size_t cap = rf->cap ? 2 * rf->cap : 64;
    char **names = hsc_xmalloc(cap * sizeof *names);
    if (rf->n) memcpy(names, rf->names, rf->n * sizeof *names);
    free(rf->names);
    rf->names = names;
    rf->cap = cap;
  }
  size_t len = strlen(name) + 1;
  rf->names[rf->n] = hsc_xmalloc(len);
  memcpy(rf->names[rf->n++], name, len);
  return 0;
}

static void ref_close(hsc_test *t, ref_file *rf) {
  refcase c = {.t = t, .name = rf->path};
  H5_CLOSE(&c, H5Fclose, rf->f, "file");
  for (size_t i = 0; i < rf->n; i++) free(rf->names[i]);
  free(rf->names);
}

/* Opens $HSC_REF_DIR/ops.h5 and lists its groups. Returns 0 when the case cannot go on: skipped (no
 * reference) or failed. */
static int ref_open(hsc_test *t, ref_file *rf) {
  memset(rf, 0, sizeof *rf);
  rf->f = H5I_INVALID_HID;
  const char *dir = getenv("HSC_REF_DIR");
  if (!dir || !*dir) {
    hsc_test_skip(t, "HSC_REF_DIR is unset; `make test` generates build/ref/" REF_FILE
                     " with tests/ref/ops_ref.py (torch) and sets it");
    return 0;
  }
  snprintf(rf->path, sizeof rf->path, "%s/%s", dir, REF_FILE);
  if (access(rf->path, F_OK) != 0) {
    hsc_test_skip(t, "%s is missing; `make test` generates it (/usr/bin/python3 tests/ref/ops_ref.py %s)",
                  rf->path, rf->path);
    return 0;
  }
  refcase c = {.t = t, .name = rf->path};
  hsize_t idx = 0;
  /* Errors are reported through the checks below, with HDF5's message, not printed by HDF5 itself. */
  H5_CHECK(&c, H5Eset_auto2(H5E_DEFAULT, NULL, NULL), "error printing");
  H5_CHECK(&c, rf->f = H5Fopen(rf->path, H5F_ACC_RDONLY, H5P_DEFAULT), "file");
  H5_CHECK(&c, H5Literate(rf->f, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, rf), "groups");
  return 1;
done:
  ref_close(t, rf);
  return 0;
}

/* Opens group `name` and reads its op into op[len]. */
static int case_open(refcase *c, hid_t f, char *op, size_t len) {
  H5_CHECK(c, c->g = H5Gopen2(f, c->name, H5P_DEFAULT), "group");
  return attr_string(c, "op", op, len);
done:
  return 0;
}

static void case_close(refcase *c) {
  case_free(c);
  H5_CLOSE(c, H5Gclose, c->g, "group");
}

/* Runs every group whose op is `op`; a file without one fails (the script and this test must agree). */
static void run_op(hsc_test *t, const char *op, void (*run)(refcase *)) {
  ref_file rf;
  if (!ref_open(t, &rf)) return;
  int found = 0;
  for (size_t i = 0; i < rf.n; i++) {
    refcase c = {.t = t, .g = H5I_INVALID_HID, .name = rf.names[i]};
    char kind[64];
    if (case_open(&c, rf.f, kind, sizeof kind) && !strcmp(kind, op)) {
      found++;
      run(&c);
    }
    case_close(&c);
  }
  if (!found) T_FAIL(t, "%s: no '%s' cases (tests/ref/ops_ref.py writes them)", rf.path, op);
  ref_close(t, &rf);
}

/* Every group's op is one this test runs. */
static void t_torch_file(hsc_test *t) {
  ref_file rf;
  if (!ref_open(t, &rf)) return;
  for (size_t i = 0; i < rf.n; i++) {
    refcase c = {.t = t, .g = H5I_INVALID_HID, .name = rf.names[i]};
    char kind[64];
    if (case_open(&c, rf.f, kind, sizeof kind)) {
      size_t j = 0;
      while (j < ARRAY_LEN(ref_op_names) && strcmp(kind, ref_op_names[j])) j++;
      if (j == ARRAY_LEN(ref_op_names))
        T_FAIL(t, "%s/%s: unknown op '%s' (tests/ref/ops_ref.py and this test must agree)", rf.path,
               rf.names[i], kind);
    }
    case_close(&c);
  }
  if (!rf.n) T_FAIL(t, "%s: no cases", rf.path);
  ref_close(t, &rf);
}

#define X(op) \
  static void t_torch_##op(hsc_test *t) { run_op(t, #op, run_##op); }
REF_OPS(X)
#undef X

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {{"torch_file", t_torch_file},
#define X(op) {"torch_" #op, t_torch_##op},
                                        REF_OPS(X)
#undef X
  };
  return hsc_test_main("test_torch_ops", argc, argv, cases, (int)ARRAY_LEN(cases));
}
