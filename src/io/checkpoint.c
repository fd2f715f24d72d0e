/* HDF5 checkpoints (checkpoint.h): writing through PATH.tmp, verification on open, typed reads.
 *
 * The serial HDF5 API of the parallel library with the default (sec2) driver: one process writes. Datasets
 * are contiguous and little-endian, each with a uint32 attribute "crc32" = zlib crc32 of its raw bytes, so
 * h5py can check them too: zlib.crc32(f[name][...].tobytes()).
 *
 * Errors. Every H5* call is checked. Failures that only a bug or a broken system explains (creating a
 * dataspace or a property list) are fatal; failures the file explains (cannot create, cannot read, bad
 * content) are returned as hsc_error naming the path, the dataset or key, and HDF5's own description of the
 * innermost failure. HDF5's automatic printing of its error stack is switched off inside this module's
 * calls (and restored on return), so a truncated file produces one clear message, not a stack dump. */
#include "hsconas/checkpoint.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt_internal.h"

/* The checksums are defined over the little-endian bytes of the values; on a little-endian host those are
 * the bytes of the native arrays, which is what is summed below. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c computes checksums over native bytes and requires a little-endian host"
#endif

#define NOT_READABLE "not a readable HDF5 checkpoint (truncated or corrupt?)"

/* Attributes of /meta that this module writes; callers cannot set them. */
static const char *const reserved_keys[] = {"format_version", "program_version", "created", "complete"};

static const struct {
  const char *name;
  size_t size;
} type_info[] = {
    [CKPT_F32] = {"float32", sizeof(float)},
    [CKPT_I64] = {"int64", sizeof(int64_t)},
    [CKPT_U8] = {"uint8", sizeof(uint8_t)},
    [CKPT_F64] = {"float64", sizeof(double)},
};
_Static_assert(ARRAY_LEN(type_info) == CKPT_TYPE_COUNT, "one entry per ckpt_type");

const char *ckpt_type_name(ckpt_type t) { return type_info[t].name; }
size_t ckpt_type_size(ckpt_type t) { return type_info[t].size; }

/* HDF5's predefined type ids are run-time values (H5open initialises them), hence switches, not tables. */
static hid_t type_mem(ckpt_type t) {
  switch (t) {
    case CKPT_F32:
      return H5T_NATIVE_FLOAT;
    case CKPT_I64:
      return H5T_NATIVE_INT64;
    case CKPT_U8:
      return H5T_NATIVE_UINT8;
    case CKPT_F64:
      return H5T_NATIVE_DOUBLE;
    default:
      break;
  }
  assert(0 && "unknown ckpt_type");
  return H5I_INVALID_HID;
}

static hid_t type_file(ckpt_type t) {
  switch (t) {
    case CKPT_F32:
      return H5T_IEEE_F32LE;
    case CKPT_I64:
      return H5T_STD_I64LE;
    case CKPT_U8:
      return H5T_STD_U8LE;
    case CKPT_F64:
      return H5T_IEEE_F64LE;
    default:
      break;
  }
  assert(0 && "unknown ckpt_type");
  return H5I_INVALID_HID;
}

struct hsc_ckpt {
  char *path; /* the final name */
  char *tmp;  /* writing: PATH.tmp; NULL for a checkpoint opened for reading */
  hid_t file; /* H5I_INVALID_HID when closed */
  hid_t meta; /* the /meta group */
  hid_t lcpl; /* writing: link creation with intermediate groups */
  int failed; /* writing: a write failed, so commit must not publish the file */
  ckpt_dset *dsets;
  size_t ndsets, cap_dsets;
  ckpt_meta *metas;
  size_t nmetas, cap_metas;
};

size_t ckpt_dset_count(const hsc_ckpt *ck) { return ck->ndsets; }
const ckpt_dset *ckpt_dset_at(const hsc_ckpt *ck, size_t i) {
  assert(i < ck->ndsets);
  return &ck->dsets[i];
}
size_t ckpt_meta_count(const hsc_ckpt *ck) { return ck->nmetas; }
const ckpt_meta *ckpt_meta_at(const hsc_ckpt *ck, size_t i) {
  assert(i < ck->nmetas);
  return &ck->metas[i];
}

/* ---- HDF5 error handling ---- */

typedef struct {
  char text[512];
} h5_desc;

/* Walking upward, entry 0 is where HDF5 detected the failure: its description is the informative one (the
 * outer entries only say which API call failed). */
static herr_t h5_innermost(unsigned n, const H5E_error2_t *e, void *data) {
  h5_desc *d = data;
  if (n == 0)
    snprintf(d->text, sizeof d->text, "%s (in %s)", e->desc ? e->desc : "no description", e->func_name);
  return 0;
}

static void h5_describe(h5_desc *d) {
  snprintf(d->text, sizeof d->text, "HDF5 reported no error");
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_innermost, d) < 0)
    snprintf(d->text, sizeof d->text, "the HDF5 error stack could not be read");
}

static _Noreturn void h5_fatal_at(const char *file, int line, const char *call) {
  h5_desc d;
  h5_describe(&d);
  hsc_fatal_at(file, line, "%s failed: %s", call, d.text);
}

/* For calls that fail only through a bug or a broken system. Evaluates `call` once. */
#define H5_FATAL(call)                                      \
  do {                                                      \
    if ((call) < 0) h5_fatal_at(__FILE__, __LINE__, #call); \
  } while (0)

/* Fills err with the formatted message followed by HDF5's description; returns code. */
static hsc_status h5_error(hsc_error *err, hsc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static hsc_status h5_error(hsc_error *err, hsc_status code, const char *fmt, ...) {
  h5_desc d;
  h5_describe(&d);
  char msg[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return hsc_error_set(err, code, "%s: %s", msg, d.text);
}

/* For calls that the file can make fail. Evaluates `call` once; a negative result (HDF5's failure value for
 * hid_t, herr_t and htri_t alike) sets the caller's locals `rc` and `err` through h5_error and jumps to the
 * caller's `fail` label. */
#define H5_TRY(call, code, ...)                \
  do {                                         \
    if ((call) < 0) {                          \
      rc = h5_error(err, (code), __VA_ARGS__); \
      goto fail;                               \
    }                                          \
  } while (0)

/* HDF5 prints its whole error stack on every failure unless told not to; this module reports failures
 * itself. Saved and restored around each public call, so callers' settings are untouched. */
typedef struct {
  H5E_auto2_t func;
  void *data;
} h5_quiet;

static h5_quiet h5_quiet_begin(void) {
  h5_quiet q = {0};
  H5_FATAL(H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data));
  H5_FATAL(H5Eset_auto2(H5E_DEFAULT, NULL, NULL));
  return q;
}

static void h5_quiet_end(h5_quiet q) { H5_FATAL(H5Eset_auto2(H5E_DEFAULT, q.func, q.data)); }

/* Closes an id on a cleanup path (invalid ids are skipped). A failure there cannot change the outcome the
 * caller reports, so it is logged. Returns 0 when the close failed. */
static int h5_close(herr_t (*close_fn)(hid_t), hid_t *id, const char *path, const char *what) {
  if (*id < 0) return 1;
  herr_t r = close_fn(*id);
  *id = H5I_INVALID_HID;
  if (r < 0) {
    h5_desc d;
    h5_describe(&d);
    hsc_log(HSC_LOG_WARN, "%s: closing %s failed: %s", path, what, d.text);
    return 0;
  }
  return 1;
}

/* File access: close everything with the file (so the bytes are on disk when H5Fclose returns), and use
 * file locking where the file system has it but do not fail where it does not (NFS, Lustre). */
static hid_t file_access_plist(void) {
  hid_t fapl;
  H5_FATAL(fapl = H5Pcreate(H5P_FILE_ACCESS));
  H5_FATAL(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG));
  H5_FATAL(H5Pset_file_locking(fapl, 1, 1));
  return fapl;
}

/* ---- small helpers ---- */

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = hsc_xmalloc(n);
  memcpy(p, s, n);
  return p;
}

static char *xconcat(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  char *p = hsc_xmalloc(na + nb + 1);
  memcpy(p, a, na);
  memcpy(p + na, b, nb + 1);
  return p;
}

/* zlib's crc32 takes a 32-bit length; larger buffers are summed in pieces. */
static uint32_t crc_bytes(const void *data, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  const Bytef *p = data;
  while (n > 0) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}

/* Names are kept absolute; callers may pass "params/x" or "/params/x". */
static const char *strip_slashes(const char *name) {
  while (*name == '/') name++;
  return name;
}

static ckpt_dset *find_dset(const hsc_ckpt *ck, const char *name) {
  const char *key = strip_slashes(name);
  for (size_t i = 0; i < ck->ndsets; i++)
    if (!strcmp(strip_slashes(ck->dsets[i].name), key)) return &ck->dsets[i];
  return NULL;
}

static ckpt_dset *push_dset(hsc_ckpt *ck, const char *name) {
  if (ck->ndsets == ck->cap_dsets) {
    size_t cap = ck->cap_dsets ? 2 * ck->cap_dsets : 16;
    ckpt_dset *p = realloc(ck->dsets, cap * sizeof *p);
    if (!p) hsc_fatal("out of memory growing the dataset list to %zu entries", cap);
    ck->dsets = p;
    ck->cap_dsets = cap;
  }
  ckpt_dset *d = &ck->dsets[ck->ndsets++];
  memset(d, 0, sizeof *d);
  d->name = xconcat("/", strip_slashes(name));
  return d;
}

static void push_meta(hsc_ckpt *ck, const char *key, ckpt_meta_kind kind) {
  if (ck->nmetas == ck->cap_metas) {
    size_t cap = ck->cap_metas ? 2 * ck->cap_metas : 16;
    ckpt_meta *p = realloc(ck->metas, cap * sizeof *p);
    if (!p) hsc_fatal("out of memory growing the attribute list to %zu entries", cap);
    ck->metas = p;
    ck->cap_metas = cap;
  }
  ck->metas[ck->nmetas++] = (ckpt_meta){.key = xstrdup(key), .kind = kind};
}

static hsc_ckpt *ckpt_new(const char *path) {
  hsc_ckpt *ck = hsc_xcalloc(1, sizeof *ck);
  ck->path = xstrdup(path);
  ck->file = ck->meta = ck->lcpl = H5I_INVALID_HID;
  return ck;
}

/* Closes what is open (failures logged), removes PATH.tmp when writing, frees ck. */
static void ckpt_discard(hsc_ckpt *ck) {
  if (!ck) return;
  const char *shown = ck->tmp ? ck->tmp : ck->path;
  h5_close(H5Gclose, &ck->meta, shown, "group /meta");
  h5_close(H5Pclose, &ck->lcpl, shown, "a property list");
  h5_close(H5Fclose, &ck->file, shown, "the file");
  if (ck->tmp && unlink(ck->tmp) != 0 && errno != ENOENT)
    hsc_log(HSC_LOG_WARN, "%s: cannot remove: %s", ck->tmp, strerror(errno));
  for (size_t i = 0; i < ck->ndsets; i++) free(ck->dsets[i].name);
  for (size_t i = 0; i < ck->nmetas; i++) free(ck->metas[i].key);
  free(ck->dsets);
  free(ck->metas);
  free(ck->tmp);
  free(ck->path);
  free(ck);
}

/* ---- writing ---- */

/* Writes the scalar attribute key (replacing one of that name) on obj. */
static hsc_status attr_write(hsc_ckpt *ck, hid_t obj, const char *key, hid_t ftype, hid_t mtype,
                             const void *v, hsc_error *err) {
  hsc_status rc = HSC_OK;
  hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
  htri_t exists;
  H5_FATAL(space = H5Screate(H5S_SCALAR));
  H5_TRY(exists = H5Aexists(obj, key), HSC_ERR_IO, "%s: attribute '%s'", ck->tmp, key);
  if (exists) H5_TRY(H5Adelete(obj, key), HSC_ERR_IO, "%s: replacing attribute '%s'", ck->tmp, key);
  H5_TRY(attr = H5Acreate2(obj, key, ftype, space, H5P_DEFAULT, H5P_DEFAULT), HSC_ERR_IO,
         "%s: creating attribute '%s'", ck->tmp, key);
  H5_TRY(H5Awrite(attr, mtype, v), HSC_ERR_IO, "%s: writing attribute '%s'", ck->tmp, key);
fail:
  if (!h5_close(H5Aclose, &attr, ck->tmp, key) && rc == HSC_OK)
    rc = hsc_error_set(err, HSC_ERR_IO, "%s: closing attribute '%s' failed", ck->tmp, key);
  h5_close(H5Sclose, &space, ck->tmp, "a dataspace");
  return rc;
}

/* A variable-length UTF-8 string type: h5py reads such attributes as str, and their length is not limited
 * by the 64 KiB attribute header (the text lives in the global heap). Caller closes. */
static hid_t str_type(void) {
  hid_t t;
  H5_FATAL(t = H5Tcopy(H5T_C_S1));
  H5_FATAL(H5Tset_size(t, H5T_VARIABLE));
  H5_FATAL(H5Tset_cset(t, H5T_CSET_UTF8));
  return t;
}

static hsc_status meta_write_int(hsc_ckpt *ck, const char *key, int64_t v, hsc_error *err) {
  return attr_write(ck, ck->meta, key, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err);
}

static hsc_status meta_write_str(hsc_ckpt *ck, const char *key, const char *v, hsc_error *err) {
  hid_t t = str_type();
  hsc_status rc = attr_write(ck, ck->meta, key, t, t, &v, err);
  H5_FATAL(H5Tclose(t));
  return rc;
}

hsc_status hsc_ckpt_create(hsc_ckpt **out, const char *path, hsc_error *err) {
  *out = NULL;
  hsc_ckpt *ck = ckpt_new(path);
  ck->tmp = xconcat(path, ".tmp");
  hsc_status rc = HSC_OK;
  h5_quiet q = h5_quiet_begin();
  hid_t fapl = file_access_plist();
  H5_TRY(ck->file = H5Fcreate(ck->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), HSC_ERR_IO, "%s: cannot create",
         ck->tmp);
  H5_FATAL(ck->lcpl = H5Pcreate(H5P_LINK_CREATE));
  H5_FATAL(H5Pset_create_intermediate_group(ck->lcpl, 1));
  H5_FATAL(H5Pset_char_encoding(ck->lcpl, H5T_CSET_UTF8));
  H5_TRY(ck->meta = H5Gcreate2(ck->file, "/meta", ck->lcpl, H5P_DEFAULT, H5P_DEFAULT), HSC_ERR_IO,
         "%s: creating group /meta", ck->tmp);
  char created[32];
  time_t now = time(NULL);
  struct tm utc;
  if (now == (time_t)-1 || !gmtime_r(&now, &utc) ||
      !strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &utc))
    hsc_fatal("cannot read the system clock");
  if ((rc = meta_write_int(ck, "format_version", HSC_CKPT_FORMAT_VERSION, err)) != HSC_OK) goto fail;
  if ((rc = meta_write_str(ck, "program_version", HSC_VERSION, err)) != HSC_OK) goto fail;
  if ((rc = meta_write_str(ck, "created", created, err)) != HSC_OK) goto fail;
  H5_FATAL(H5Pclose(fapl));
  h5_quiet_end(q);
  *out = ck;
  return HSC_OK;
fail:
  H5_FATAL(H5Pclose(fapl));
  ckpt_discard(ck);
  h5_quiet_end(q);
  return rc;
}

static hsc_status check_meta_key(hsc_ckpt *ck, const char *key, hsc_error *err) {
  assert(ck && ck->tmp && "meta_* on a checkpoint opened for reading");
  if (!key[0] || strchr(key, '/'))
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: invalid /meta attribute name '%s'", ck->tmp, key);
  for (size_t i = 0; i < ARRAY_LEN(reserved_keys); i++)
    if (!strcmp(key, reserved_keys[i]))
      return hsc_error_set(err, HSC_ERR_INPUT, "%s: /meta attribute '%s' is written by the checkpoint itself",
                           ck->tmp, key);
  return HSC_OK;
}

hsc_status hsc_ckpt_meta_int(hsc_ckpt *ck, const char *key, int64_t v, hsc_error *err) {
  hsc_status rc = check_meta_key(ck, key, err);
  if (rc == HSC_OK) {
    h5_quiet q = h5_quiet_begin();
    rc = meta_write_int(ck, key, v, err);
    h5_quiet_end(q);
  }
  if (rc != HSC_OK) ck->failed = 1;
  return rc;
}

hsc_status hsc_ckpt_meta_double(hsc_ckpt *ck, const char *key, double v, hsc_error *err) {
  hsc_status rc = check_meta_key(ck, key, err);
  if (rc == HSC_OK) {
    h5_quiet q = h5_quiet_begin();
    rc = attr_write(ck, ck->meta, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
    h5_quiet_end(q);
  }
  if (rc != HSC_OK) ck->failed = 1;
  return rc;
}

hsc_status hsc_ckpt_meta_str(hsc_ckpt *ck, const char *key, const char *v, hsc_error *err) {
  hsc_status rc = check_meta_key(ck, key, err);
  if (rc == HSC_OK) {
    h5_quiet q = h5_quiet_begin();
    rc = meta_write_str(ck, key, v, err);
    h5_quiet_end(q);
  }
  if (rc != HSC_OK) ck->failed = 1;
  return rc;
}

/* Element count of dims[ndim], or an error when the shape is invalid or its byte size overflows. */
static hsc_status shape_count(const char *path, const char *name, int ndim, const int64_t *dims, size_t elem,
                              size_t *count, hsc_error *err) {
  if (ndim < 1 || ndim > CKPT_MAX_DIMS)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s: rank %d (expected 1..%d)", path, name, ndim,
                         CKPT_MAX_DIMS);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (dims[i] < 0)
      return hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s: negative dimension %lld", path, name,
                           (long long)dims[i]);
    if (dims[i] > 0 && n > SIZE_MAX / elem / (uint64_t)dims[i])
      return hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s: shape too large", path, name);
    n *= (size_t)dims[i];
  }
  *count = n;
  return HSC_OK;
}

static hsc_status write_dset(hsc_ckpt *ck, const char *name, ckpt_type type, int ndim, const int64_t *dims,
                             const void *data, hsc_error *err) {
  assert(ck && ck->tmp && "write_* on a checkpoint opened for reading");
  size_t count = 0;
  hsc_status rc = shape_count(ck->tmp, name, ndim, dims, ckpt_type_size(type), &count, err);
  if (rc != HSC_OK) {
    ck->failed = 1;
    return rc;
  }
  if (!strip_slashes(name)[0]) {
    ck->failed = 1;
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: empty dataset name", ck->tmp);
  }
  h5_quiet q = h5_quiet_begin();
  hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
  hsize_t hd[CKPT_MAX_DIMS];
  for (int i = 0; i < ndim; i++) hd[i] = (hsize_t)dims[i];
  H5_FATAL(space = H5Screate_simple(ndim, hd, NULL));
  /* Contiguous, allocated at creation: the data sit at one offset that h5py, h5dump and the corruption
   * tests can find with H5Dget_offset. */
  H5_FATAL(dcpl = H5Pcreate(H5P_DATASET_CREATE));
  H5_FATAL(H5Pset_layout(dcpl, H5D_CONTIGUOUS));
  H5_FATAL(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY));
  H5_TRY(dset = H5Dcreate2(ck->file, name, type_file(type), space, ck->lcpl, dcpl, H5P_DEFAULT), HSC_ERR_IO,
         "%s: creating dataset %s", ck->tmp, name);
  if (count > 0)
    H5_TRY(H5Dwrite(dset, type_mem(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data), HSC_ERR_IO,
           "%s: writing dataset %s", ck->tmp, name);
  uint32_t crc = crc_bytes(data, count * ckpt_type_size(type));
  if ((rc = attr_write(ck, dset, "crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc, err)) != HSC_OK) goto fail;
  ckpt_dset *d = push_dset(ck, name);
  d->type = type;
  d->ndim = ndim;
  for (int i = 0; i < ndim; i++) d->dims[i] = dims[i];
  d->count = count;
  d->crc = crc;
fail:
  if (!h5_close(H5Dclose, &dset, ck->tmp, name) && rc == HSC_OK)
    rc = hsc_error_set(err, HSC_ERR_IO, "%s: closing dataset %s failed", ck->tmp, name);
  h5_close(H5Pclose, &dcpl, ck->tmp, "a property list");
  h5_close(H5Sclose, &space, ck->tmp, "a dataspace");
  h5_quiet_end(q);
  if (rc != HSC_OK) ck->failed = 1;
  return rc;
}

hsc_status hsc_ckpt_write_f32(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                              const float *data, hsc_error *err) {
  return write_dset(ck, name, CKPT_F32, ndim, dims, data, err);
}

hsc_status hsc_ckpt_write_i64(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                              const int64_t *data, hsc_error *err) {
  return write_dset(ck, name, CKPT_I64, ndim, dims, data, err);
}

hsc_status hsc_ckpt_write_u8(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                             const uint8_t *data, hsc_error *err) {
  return write_dset(ck, name, CKPT_U8, ndim, dims, data, err);
}

hsc_status hsc_ckpt_write_f64(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                              const double *data, hsc_error *err) {
  return write_dset(ck, name, CKPT_F64, ndim, dims, data, err);
}

/* fsync of a file or directory by name. EINVAL from a directory means the file system does not sync
 * directories (the rename is then as durable as it gets). */
static hsc_status fsync_path(const char *p, int dir, hsc_error *err) {
  int fd = open(p, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
  if (fd < 0) return hsc_error_set(err, HSC_ERR_IO, "%s: cannot open for fsync: %s", p, strerror(errno));
  int rc = fsync(fd);
  int saved = errno;
  if (close(fd) != 0 && rc == 0) {
    rc = -1;
    saved = errno;
  }
  if (rc != 0 && !(dir && saved == EINVAL))
    return hsc_error_set(err, HSC_ERR_IO, "%s: fsync failed: %s", p, strerror(saved));
  return HSC_OK;
}

/* The directory holding path ("." for a bare name). Caller frees. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return xstrdup(".");
  if (slash == path) return xstrdup("/");
  size_t n = (size_t)(slash - path);
  char *d = hsc_xmalloc(n + 1);
  memcpy(d, path, n);
  d[n] = '\0';
  return d;
}

hsc_status hsc_ckpt_commit(hsc_ckpt *ck, hsc_error *err) {
  assert(ck && ck->tmp && "commit of a checkpoint opened for reading");
  hsc_status rc = HSC_OK;
  char *dir = NULL;
  h5_quiet q = h5_quiet_begin();
  if (ck->failed) {
    rc = hsc_error_set(err, HSC_ERR_IO, "%s: not committed: an earlier write to it failed", ck->path);
    goto fail;
  }
  /* "complete" goes last: a file that has it was written through to the end. */
  if ((rc = meta_write_int(ck, "complete", 1, err)) != HSC_OK) goto fail;
  H5_TRY(H5Gclose(ck->meta), HSC_ERR_IO, "%s: closing group /meta", ck->tmp);
  ck->meta = H5I_INVALID_HID;
  H5_FATAL(H5Pclose(ck->lcpl));
  ck->lcpl = H5I_INVALID_HID;
  H5_TRY(H5Fflush(ck->file, H5F_SCOPE_GLOBAL), HSC_ERR_IO, "%s: flush", ck->tmp);
  hid_t file = ck->file;
  ck->file = H5I_INVALID_HID; /* closed or not, it is not closed again */
  H5_TRY(H5Fclose(file), HSC_ERR_IO, "%s: close", ck->tmp);
  if ((rc = fsync_path(ck->tmp, 0, err)) != HSC_OK) goto fail;
  if (rename(ck->tmp, ck->path) != 0) {
    rc = hsc_error_set(err, HSC_ERR_IO, "%s: cannot rename to %s: %s", ck->tmp, ck->path, strerror(errno));
    goto fail;
  }
  /* From here PATH is the new checkpoint; only the directory entry's durability is left. */
  dir = dir_of(ck->path);
  free(ck->tmp);
  ck->tmp = NULL;
  rc = fsync_path(dir, 1, err);
  free(dir);
fail:
  ckpt_discard(ck);
  h5_quiet_end(q);
  return rc;
}

void hsc_ckpt_abort(hsc_ckpt *ck) {
  if (!ck) return;
  assert(ck->tmp && "abort of a checkpoint opened for reading");
  h5_quiet q = h5_quiet_begin();
  ckpt_discard(ck);
  h5_quiet_end(q);
}

/* ---- reading ---- */

/* Opens the scalar /meta attribute key after checking it exists and has the type class `want`. */
static hsc_status meta_open(hsc_ckpt *ck, const char *key, H5T_class_t want, const char *want_name,
                            hid_t *attr, hsc_error *err) {
  assert(ck && !ck->tmp && "get_* on a checkpoint being written");
  hsc_status rc = HSC_OK;
  hid_t a = H5I_INVALID_HID, t = H5I_INVALID_HID, s = H5I_INVALID_HID;
  htri_t exists;
  H5T_class_t cls;
  hssize_t npoints;
  H5_TRY(exists = H5Aexists(ck->meta, key), HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta attribute '%s'",
         ck->path, key);
  if (!exists) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: no /meta attribute '%s'", ck->path, key);
    goto fail;
  }
  H5_TRY(a = H5Aopen(ck->meta, key, H5P_DEFAULT), HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta attribute '%s'",
         ck->path, key);
  H5_TRY(t = H5Aget_type(a), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  H5_TRY(cls = H5Tget_class(t), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  H5_TRY(s = H5Aget_space(a), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  H5_TRY(npoints = H5Sget_simple_extent_npoints(s), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  if (cls != want || npoints != 1) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: /meta attribute '%s' is not a single %s", ck->path, key,
                       want_name);
    goto fail;
  }
  *attr = a;
  a = H5I_INVALID_HID;
fail:
  h5_close(H5Sclose, &s, ck->path, "a dataspace");
  h5_close(H5Tclose, &t, ck->path, "a datatype");
  h5_close(H5Aclose, &a, ck->path, key);
  return rc;
}

static hsc_status meta_read(hsc_ckpt *ck, const char *key, H5T_class_t cls, const char *cls_name, hid_t mtype,
                            void *v, hsc_error *err) {
  h5_quiet q = h5_quiet_begin();
  hid_t a = H5I_INVALID_HID;
  hsc_status rc = meta_open(ck, key, cls, cls_name, &a, err);
  if (rc == HSC_OK)
    H5_TRY(H5Aread(a, mtype, v), HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta attribute '%s'", ck->path, key);
fail:
  h5_close(H5Aclose, &a, ck->path, key);
  h5_quiet_end(q);
  return rc;
}

hsc_status hsc_ckpt_get_int(hsc_ckpt *ck, const char *key, int64_t *v, hsc_error *err) {
  return meta_read(ck, key, H5T_INTEGER, "integer", H5T_NATIVE_INT64, v, err);
}

hsc_status hsc_ckpt_get_double(hsc_ckpt *ck, const char *key, double *v, hsc_error *err) {
  return meta_read(ck, key, H5T_FLOAT, "floating-point number", H5T_NATIVE_DOUBLE, v, err);
}

hsc_status hsc_ckpt_get_str(hsc_ckpt *ck, const char *key, char *buf, size_t len, hsc_error *err) {
  assert(len > 0);
  h5_quiet q = h5_quiet_begin();
  hid_t a = H5I_INVALID_HID, ft = H5I_INVALID_HID, mt = H5I_INVALID_HID;
  char *text = NULL;
  hsc_status rc = meta_open(ck, key, H5T_STRING, "string", &a, err);
  if (rc != HSC_OK) goto fail;
  htri_t variable;
  H5T_cset_t cset;
  H5_TRY(ft = H5Aget_type(a), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  H5_TRY(variable = H5Tis_variable_str(ft), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  H5_TRY(cset = H5Tget_cset(ft), HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
  H5_FATAL(mt = H5Tcopy(H5T_C_S1));
  H5_FATAL(H5Tset_cset(mt, cset));
  if (variable) {
    H5_FATAL(H5Tset_size(mt, H5T_VARIABLE));
    H5_TRY(H5Aread(a, mt, &text), HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta attribute '%s'", ck->path, key);
    snprintf(buf, len, "%s", text ? text : "");
  } else {
    /* Fixed length: read n bytes into an (n+1)-byte buffer, NUL-terminated whatever the padding. */
    size_t n = H5Tget_size(ft);
    if (n == 0) {
      rc = h5_error(err, HSC_ERR_INPUT, "%s: /meta attribute '%s'", ck->path, key);
      goto fail;
    }
    H5_FATAL(H5Tset_size(mt, n + 1));
    H5_FATAL(H5Tset_strpad(mt, H5T_STR_NULLTERM));
    char *fixed = hsc_xcalloc(n + 1, 1);
    herr_t r = H5Aread(a, mt, fixed);
    if (r >= 0) snprintf(buf, len, "%s", fixed);
    free(fixed);
    H5_TRY(r, HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta attribute '%s'", ck->path, key);
  }
fail:
  if (text && H5free_memory(text) < 0) h5_fatal_at(__FILE__, __LINE__, "H5free_memory(text)");
  h5_close(H5Tclose, &mt, ck->path, "a datatype");
  h5_close(H5Tclose, &ft, ck->path, "a datatype");
  h5_close(H5Aclose, &a, ck->path, key);
  h5_quiet_end(q);
  return rc;
}

/* Reads a dataset's type, shape and stored checksum into d (name already set), without its data. */
static hsc_status dset_probe(hsc_ckpt *ck, ckpt_dset *d, hsc_error *err) {
  hsc_status rc = HSC_OK;
  hid_t dset = H5I_INVALID_HID, t = H5I_INVALID_HID, s = H5I_INVALID_HID, a = H5I_INVALID_HID;
  H5T_class_t cls;
  size_t size;
  H5T_sign_t sign = H5T_SGN_NONE;
  int ndim;
  htri_t has_crc;
  H5_TRY(dset = H5Dopen2(ck->file, d->name, H5P_DEFAULT), HSC_ERR_INPUT, "%s: " NOT_READABLE ": dataset %s",
         ck->path, d->name);
  H5_TRY(t = H5Dget_type(dset), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  H5_TRY(cls = H5Tget_class(t), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  if ((size = H5Tget_size(t)) == 0) {
    rc = h5_error(err, HSC_ERR_INPUT, "%s: dataset %s: element size", ck->path, d->name);
    goto fail;
  }
  if (cls == H5T_INTEGER) H5_TRY(sign = H5Tget_sign(t), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  if (cls == H5T_FLOAT && size == 4)
    d->type = CKPT_F32;
  else if (cls == H5T_FLOAT && size == 8)
    d->type = CKPT_F64;
  else if (cls == H5T_INTEGER && size == 8 && sign == H5T_SGN_2)
    d->type = CKPT_I64;
  else if (cls == H5T_INTEGER && size == 1 && sign == H5T_SGN_NONE)
    d->type = CKPT_U8;
  else {
    rc = hsc_error_set(err, HSC_ERR_INPUT,
                       "%s: dataset %s: unsupported element type (expected float32, float64, int64 "
                       "or uint8)",
                       ck->path, d->name);
    goto fail;
  }
  H5_TRY(s = H5Dget_space(dset), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  H5_TRY(ndim = H5Sget_simple_extent_ndims(s), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  if (ndim < 1 || ndim > CKPT_MAX_DIMS) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s: rank %d (expected 1..%d)", ck->path, d->name,
                       ndim, CKPT_MAX_DIMS);
    goto fail;
  }
  hsize_t hd[CKPT_MAX_DIMS];
  H5_TRY(H5Sget_simple_extent_dims(s, hd, NULL), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  d->ndim = ndim;
  for (int i = 0; i < ndim; i++) d->dims[i] = hd[i] > INT64_MAX ? -1 : (int64_t)hd[i];
  if ((rc = shape_count(ck->path, d->name, ndim, d->dims, ckpt_type_size(d->type), &d->count, err)) != HSC_OK)
    goto fail;
  H5_TRY(has_crc = H5Aexists(dset, "crc32"), HSC_ERR_INPUT, "%s: dataset %s", ck->path, d->name);
  if (!has_crc) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s: no 'crc32' attribute", ck->path, d->name);
    goto fail;
  }
  H5_TRY(a = H5Aopen(dset, "crc32", H5P_DEFAULT), HSC_ERR_INPUT, "%s: dataset %s: attribute 'crc32'",
         ck->path, d->name);
  H5_TRY(H5Aread(a, H5T_NATIVE_UINT32, &d->crc), HSC_ERR_INPUT, "%s: dataset %s: attribute 'crc32'", ck->path,
         d->name);
fail:
  h5_close(H5Aclose, &a, ck->path, "attribute crc32");
  h5_close(H5Sclose, &s, ck->path, "a dataspace");
  h5_close(H5Tclose, &t, ck->path, "a datatype");
  h5_close(H5Dclose, &dset, ck->path, d->name);
  return rc;
}

/* Reads all of d (d->count elements of d->type) into buf and checks the checksum. */
static hsc_status dset_load(hsc_ckpt *ck, const ckpt_dset *d, void *buf, hsc_error *err) {
  hsc_status rc = HSC_OK;
  hid_t dset = H5I_INVALID_HID;
  H5_TRY(dset = H5Dopen2(ck->file, d->name, H5P_DEFAULT), HSC_ERR_INPUT, "%s: " NOT_READABLE ": dataset %s",
         ck->path, d->name);
  if (d->count > 0)
    H5_TRY(H5Dread(dset, type_mem(d->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), HSC_ERR_INPUT,
           "%s: " NOT_READABLE ": dataset %s", ck->path, d->name);
  uint32_t crc = crc_bytes(buf, d->count * ckpt_type_size(d->type));
  if (crc != d->crc)
    rc = hsc_error_set(err, HSC_ERR_INPUT,
                       "%s: dataset %s: checksum mismatch (stored 0x%08x, computed 0x%08x)", ck->path,
                       d->name, (unsigned)d->crc, (unsigned)crc);
fail:
  h5_close(H5Dclose, &dset, ck->path, d->name);
  return rc;
}

static herr_t visit_dataset(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
  (void)obj;
  if (info->type == H5O_TYPE_DATASET) push_dset(data, name);
  return 0;
}

static herr_t visit_meta(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  H5T_class_t cls = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
  herr_t rc = t < 0 || cls < 0 ? -1 : 0;
  if (t >= 0 && H5Tclose(t) < 0) rc = -1;
  if (H5Aclose(a) < 0) rc = -1;
  if (rc < 0) return rc;
  push_meta(data, name,
            cls == H5T_INTEGER  ? CKPT_META_INT
            : cls == H5T_FLOAT  ? CKPT_META_DOUBLE
            : cls == H5T_STRING ? CKPT_META_STR
                                : CKPT_META_OTHER);
  return 0;
}

static int cmp_dset(const void *a, const void *b) {
  return strcmp(((const ckpt_dset *)a)->name, ((const ckpt_dset *)b)->name);
}

hsc_status hsc_ckpt_open(hsc_ckpt **out, const char *path, hsc_error *err) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0)
    return hsc_error_set(err, HSC_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return hsc_error_set(err, HSC_ERR_INPUT, "%s: not a regular file", path);
  hsc_ckpt *ck = ckpt_new(path);
  hsc_status rc = HSC_OK;
  void *buf = NULL;
  size_t buf_bytes = 0;
  h5_quiet q = h5_quiet_begin();
  hid_t fapl = file_access_plist();
  htri_t has_meta, complete;
  H5_TRY(ck->file = H5Fopen(path, H5F_ACC_RDONLY, fapl), HSC_ERR_INPUT, "%s: " NOT_READABLE, path);
  H5_TRY(has_meta = H5Lexists(ck->file, "meta", H5P_DEFAULT), HSC_ERR_INPUT, "%s: " NOT_READABLE, path);
  if (!has_meta) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: no /meta group (not an hsconas checkpoint?)", path);
    goto fail;
  }
  H5_TRY(ck->meta = H5Gopen2(ck->file, "meta", H5P_DEFAULT), HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta",
         path);
  H5_TRY(complete = H5Aexists(ck->meta, "complete"), HSC_ERR_INPUT, "%s: " NOT_READABLE ": /meta", path);
  if (!complete) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: incomplete checkpoint (no 'complete' attribute)", path);
    goto fail;
  }
  int64_t v = 0;
  if ((rc = hsc_ckpt_get_int(ck, "complete", &v, err)) != HSC_OK) goto fail;
  if (v != 1) {
    rc = hsc_error_set(err, HSC_ERR_INPUT, "%s: incomplete checkpoint ('complete' is %lld, not 1)", path,
                       (long long)v);
    goto fail;
  }
  if ((rc = hsc_ckpt_get_int(ck, "format_version", &v, err)) != HSC_OK) goto fail;
  if (v != HSC_CKPT_FORMAT_VERSION) {
    rc =
        hsc_error_set(err, HSC_ERR_INPUT, "%s: unsupported format_version %lld (this build reads version %d)",
                      path, (long long)v, HSC_CKPT_FORMAT_VERSION);
    goto fail;
  }
  H5_TRY(H5Aiterate2(ck->meta, H5_INDEX_NAME, H5_ITER_INC, NULL, visit_meta, ck), HSC_ERR_INPUT,
         "%s: " NOT_READABLE ": /meta attributes", path);
  H5_TRY(H5Ovisit2(ck->file, H5_INDEX_NAME, H5_ITER_INC, visit_dataset, ck, H5O_INFO_BASIC), HSC_ERR_INPUT,
         "%s: " NOT_READABLE ": listing datasets", path);
  if (ck->ndsets > 1) qsort(ck->dsets, ck->ndsets, sizeof *ck->dsets, cmp_dset);
  /* Verification reads every dataset once (checkpoints are tens of MB); one buffer, grown as needed. */
  for (size_t i = 0; i < ck->ndsets; i++) {
    ckpt_dset *d = &ck->dsets[i];
    if ((rc = dset_probe(ck, d, err)) != HSC_OK) goto fail;
    size_t bytes = d->count * ckpt_type_size(d->type);
    if (bytes > buf_bytes) {
      free(buf);
      buf = hsc_xmalloc(bytes);
      buf_bytes = bytes;
    }
    if ((rc = dset_load(ck, d, buf, err)) != HSC_OK) goto fail;
  }
  free(buf);
  H5_FATAL(H5Pclose(fapl));
  h5_quiet_end(q);
  *out = ck;
  return HSC_OK;
fail:
  free(buf);
  H5_FATAL(H5Pclose(fapl));
  ckpt_discard(ck);
  h5_quiet_end(q);
  return rc;
}

void hsc_ckpt_close(hsc_ckpt *ck) {
  if (!ck) return;
  assert(!ck->tmp && "close of a checkpoint being written (commit or abort it)");
  h5_quiet q = h5_quiet_begin();
  ckpt_discard(ck);
  h5_quiet_end(q);
}

const char *hsc_ckpt_path(const hsc_ckpt *ck) { return ck->path; }

int hsc_ckpt_has(const hsc_ckpt *ck, const char *name) { return find_dset(ck, name) != NULL; }

size_t hsc_ckpt_count(hsc_ckpt *ck, const char *name) {
  const ckpt_dset *d = find_dset(ck, name);
  return d ? d->count : 0;
}

/* Reads dataset name into data after checking its type and size; the checksum is checked again, so the data
 * returned are the data that were verified. */
static hsc_status read_dset(hsc_ckpt *ck, const char *name, ckpt_type type, size_t count, void *data,
                            hsc_error *err) {
  assert(ck && !ck->tmp && "read_* on a checkpoint being written");
  const ckpt_dset *d = find_dset(ck, name);
  if (!d) return hsc_error_set(err, HSC_ERR_INPUT, "%s: no dataset %s", ck->path, name);
  if (d->type != type)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s holds %s, not %s", ck->path, d->name,
                         ckpt_type_name(d->type), ckpt_type_name(type));
  if (d->count != count)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: dataset %s has %zu elements, expected %zu", ck->path,
                         d->name, d->count, count);
  h5_quiet q = h5_quiet_begin();
  hsc_status rc = dset_load(ck, d, data, err);
  h5_quiet_end(q);
  return rc;
}

hsc_status hsc_ckpt_read_f32(hsc_ckpt *ck, const char *name, size_t count, float *data, hsc_error *err) {
  return read_dset(ck, name, CKPT_F32, count, data, err);
}

hsc_status hsc_ckpt_read_i64(hsc_ckpt *ck, const char *name, size_t count, int64_t *data, hsc_error *err) {
  return read_dset(ck, name, CKPT_I64, count, data, err);
}

hsc_status hsc_ckpt_read_u8(hsc_ckpt *ck, const char *name, size_t count, uint8_t *data, hsc_error *err) {
  return read_dset(ck, name, CKPT_U8, count, data, err);
}

hsc_status hsc_ckpt_read_f64(hsc_ckpt *ck, const char *name, size_t count, double *data, hsc_error *err) {
  return read_dset(ck, name, CKPT_F64, count, data, err);
}
