/* IDX files (the MNIST format, LeCun et al.; Fashion-MNIST uses it unchanged), plain or gzip, read through
 * zlib: gzread passes a plain file through untouched, so one path handles both.
 *
 * Layout, all integers big-endian: magic 0x000008NN (0x08 = unsigned byte data, NN = number of dimensions),
 * then NN uint32 sizes, then the bytes. Images: 0x00000803, [n, rows, cols]; labels: 0x00000801, [n].
 * Everything the header promises is checked against what the file holds, since a truncated download or a
 * file written by another tool would otherwise train on garbage without a word. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "hsconas/data.h"

enum {
  IDX_MAGIC_IMAGES = 0x00000803,
  IDX_MAGIC_LABELS = 0x00000801,
  IDX_CLASSES = 10,          /* MNIST and Fashion-MNIST: labels 0..9 */
  IDX_MAX_SIDE = 1 << 16,    /* rows and cols; keeps n * rows * cols within 64 bits */
  IDX_FIRST_CHUNK = 1 << 20, /* the buffer grows from here, so a lying header costs no memory */
  IDX_READ_CHUNK = 1 << 24,  /* bytes per gzread call (its length is an unsigned int) */
  IDX_GZ_BUFFER = 1 << 17,   /* zlib's input buffer; its 8 KiB default costs many small read() calls */
};

typedef struct {
  const char *path;
  gzFile f;
  uint64_t offset; /* uncompressed bytes read so far */
  int cut;         /* the gzip stream ended before its trailer (zlib: "unexpected end of file") */
} idx_reader;

static hsc_status idx_open(idx_reader *r, const char *path, hsc_error *err) {
  memset(r, 0, sizeof *r);
  r->path = path;
  errno = 0;
  r->f = gzopen(path, "rb");
  if (!r->f)
    return hsc_error_set(err, HSC_ERR_IO, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
  if (gzbuffer(r->f, IDX_GZ_BUFFER) != 0) {
    gzclose(r->f);
    r->f = NULL;
    return hsc_error_set(err, HSC_ERR_IO, "%s: cannot set the zlib buffer size", path);
  }
  return HSC_OK;
}

static void idx_close(idx_reader *r) {
  /* Reading only: every byte was checked through gzerror before, so a close error has nothing to add. */
  if (r->f) (void)gzclose(r->f);
  r->f = NULL;
}

/* Reads up to len bytes into buf; *got < len only at the end of the data. A read error or corrupt gzip
 * data is an error; a gzip stream cut short just ends the data (r->cut says so). */
static hsc_status idx_read(idx_reader *r, void *buf, size_t len, size_t *got, hsc_error *err) {
  *got = 0;
  while (*got < len) {
    size_t chunk = len - *got < IDX_READ_CHUNK ? len - *got : IDX_READ_CHUNK;
    int n = gzread(r->f, (unsigned char *)buf + *got, (unsigned)chunk);
    if (n > 0) {
      *got += (size_t)n;
      r->offset += (uint64_t)n;
      continue;
    }
    int errnum = Z_OK;
    const char *msg = gzerror(r->f, &errnum);
    if (errnum == Z_ERRNO)
      return hsc_error_set(err, HSC_ERR_IO, "%s: read error after %llu bytes: %s", r->path,
                           (unsigned long long)r->offset, strerror(errno));
    if (errnum == Z_BUF_ERROR) {
      r->cut = 1;
      break;
    }
    if (errnum != Z_OK) {
      /* zlib's message already starts with "PATH: ". */
      size_t plen = strlen(r->path);
      if (!strncmp(msg, r->path, plen) && !strncmp(msg + plen, ": ", 2)) msg += plen + 2;
      return hsc_error_set(err, HSC_ERR_INPUT, "%s: corrupt gzip data: %s", r->path, msg);
    }
    break; /* n == 0, no error: end of file */
  }
  return HSC_OK;
}

static uint32_t be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static const char *gz_note(const idx_reader *r) { return r->cut ? " (the gzip stream is cut off)" : ""; }

/* Reads and checks the magic and the ndim sizes into dims. kind: "image" or "label". */
static hsc_status idx_header(idx_reader *r, uint32_t magic, int ndim, const char *kind, uint32_t *dims,
                             hsc_error *err) {
  unsigned char b[4 * 4];
  size_t want = 4 + 4 * (size_t)ndim, got = 0;
  hsc_status st = idx_read(r, b, 4, &got, err);
  if (st != HSC_OK) return st;
  if (got < 4)
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "%s: truncated: the file ends after %zu bytes, inside the %zu-byte IDX header%s",
                         r->path, got, want, gz_note(r));
  uint32_t m = be32(b);
  if ((m & 0xffffff00u) != 0x00000800u)
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "%s: bad magic number 0x%08x: an IDX %s file starts with 0x%08x (unsigned bytes, %d "
                         "dimension%s)",
                         r->path, m, kind, magic, ndim, ndim == 1 ? "" : "s");
  if (m != magic)
    return hsc_error_set(
        err, HSC_ERR_INPUT, "%s: magic number 0x%08x says %u dimension%s but an IDX %s file has %d (%s)",
        r->path, m, m & 0xffu, (m & 0xffu) == 1 ? "" : "s", kind, ndim, ndim == 3 ? "n, rows, cols" : "n");
  st = idx_read(r, b + 4, want - 4, &got, err);
  if (st != HSC_OK) return st;
  if (got < want - 4)
    return hsc_error_set(err, HSC_ERR_INPUT,
                         "%s: truncated: the file ends after %zu bytes, inside the %zu-byte IDX header%s",
                         r->path, 4 + got, want, gz_note(r));
  for (int d = 0; d < ndim; d++) dims[d] = be32(b + 4 + 4 * d);
  return HSC_OK;
}

/* Reads exactly `bytes` data bytes after a `header`-byte header into a new buffer, then checks that
 * nothing follows. promise: what the header said, for messages ("60000 images of 28x28"). The buffer
 * grows as data arrives, so a header promising terabytes fails on the truncation, not on malloc. */
static hsc_status idx_body(idx_reader *r, uint64_t bytes, int header, const char *promise, uint8_t **out,
                           hsc_error *err) {
  *out = NULL;
  size_t cap = bytes < IDX_FIRST_CHUNK ? (size_t)bytes : IDX_FIRST_CHUNK, have = 0;
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) hsc_fatal("out of memory allocating %zu bytes for %s", cap, r->path);
  hsc_status st = HSC_OK;
  for (;;) {
    size_t got = 0;
    st = idx_read(r, buf + have, cap - have, &got, err);
    if (st != HSC_OK) goto fail;
    have += got;
    if (have < cap) {
      st = hsc_error_set(
          err, HSC_ERR_INPUT,
          "%s: truncated: the header promises %s (%llu bytes after the %d-byte header) but the "
          "%s ends after %llu bytes%s",
          r->path, promise, (unsigned long long)bytes, header, gzdirect(r->f) ? "file" : "uncompressed data",
          (unsigned long long)(header + have), gz_note(r));
      goto fail;
    }
    if (have == bytes) break;
    size_t next = (uint64_t)cap * 2 < bytes ? cap * 2 : (size_t)bytes;
    uint8_t *grown = realloc(buf, next);
    if (!grown) hsc_fatal("out of memory allocating %zu bytes for %s", next, r->path);
    buf = grown;
    cap = next;
  }
  /* Anything after the promised bytes means the header and the data disagree. */
  uint64_t extra = 0;
  unsigned char scratch[1 << 14];
  for (;;) {
    size_t got = 0;
    st = idx_read(r, scratch, sizeof scratch, &got, err);
    if (st != HSC_OK) goto fail;
    extra += got;
    if (got < sizeof scratch) break;
  }
  if (extra > 0) {
    st = hsc_error_set(
        err, HSC_ERR_INPUT,
        "%s: %llu byte%s of trailing data: the header promises %s (%llu bytes after the %d-byte "
        "header) but the %s holds %llu bytes",
        r->path, (unsigned long long)extra, extra == 1 ? "" : "s", promise, (unsigned long long)bytes, header,
        gzdirect(r->f) ? "file" : "uncompressed data", (unsigned long long)(header + bytes + extra));
    goto fail;
  }
  if (r->cut) {
    st = hsc_error_set(
        err, HSC_ERR_INPUT,
        "%s: truncated: the data is complete but the gzip stream is cut off before its checksum", r->path);
    goto fail;
  }
  *out = buf;
  return HSC_OK;
fail:
  free(buf);
  return st;
}

static hsc_status load_images(hsc_dataset *ds, const char *path, hsc_error *err) {
  idx_reader r;
  hsc_status st = idx_open(&r, path, err);
  if (st != HSC_OK) return st;
  uint32_t dims[3];
  st = idx_header(&r, IDX_MAGIC_IMAGES, 3, "image", dims, err);
  if (st != HSC_OK) goto done;
  if (dims[0] == 0 || dims[0] > INT_MAX || dims[1] == 0 || dims[1] > IDX_MAX_SIDE || dims[2] == 0 ||
      dims[2] > IDX_MAX_SIDE) {
    st = hsc_error_set(err, HSC_ERR_INPUT,
                       "%s: the header's sizes [%u, %u, %u] are out of range: expected 1..%d images of 1..%d "
                       "x 1..%d pixels",
                       path, dims[0], dims[1], dims[2], INT_MAX, IDX_MAX_SIDE, IDX_MAX_SIDE);
    goto done;
  }
  char promise[128];
  snprintf(promise, sizeof promise, "%u images of %ux%u", dims[0], dims[1], dims[2]);
  st = idx_body(&r, (uint64_t)dims[0] * dims[1] * dims[2], 16, promise, &ds->images, err);
  if (st != HSC_OK) goto done;
  ds->n = (int)dims[0];
  ds->c = 1;
  ds->h = (int)dims[1];
  ds->w = (int)dims[2];
done:
  idx_close(&r);
  return st;
}

/* Labels as bytes into *out [*n]. */
static hsc_status load_labels(const char *path, uint8_t **out, uint32_t *n, hsc_error *err) {
  idx_reader r;
  hsc_status st = idx_open(&r, path, err);
  if (st != HSC_OK) return st;
  st = idx_header(&r, IDX_MAGIC_LABELS, 1, "label", n, err);
  if (st != HSC_OK) goto done;
  char promise[64];
  snprintf(promise, sizeof promise, "%u labels", *n);
  st = idx_body(&r, *n, 8, promise, out, err);
done:
  idx_close(&r);
  return st;
}

hsc_status hsc_idx_load(hsc_dataset *ds, const char *images_path, const char *labels_path, hsc_error *err) {
  memset(ds, 0, sizeof *ds);
  uint8_t *raw = NULL;
  uint32_t nlabels = 0;
  hsc_status st = load_images(ds, images_path, err);
  if (st != HSC_OK) goto fail;
  st = load_labels(labels_path, &raw, &nlabels, err);
  if (st != HSC_OK) goto fail;
  if (nlabels != (uint32_t)ds->n) {
    st = hsc_error_set(err, HSC_ERR_INPUT, "%s: item count mismatch: %u labels, but %s holds %d images",
                       labels_path, nlabels, images_path, ds->n);
    goto fail;
  }
  ds->classes = IDX_CLASSES;
  ds->labels = hsc_xmalloc((size_t)ds->n * sizeof(int32_t));
  for (int i = 0; i < ds->n; i++) {
    if (raw[i] >= IDX_CLASSES) {
      st = hsc_error_set(err, HSC_ERR_INPUT, "%s: label %u of item %d is out of range: expected 0..%d",
                         labels_path, raw[i], i, IDX_CLASSES - 1);
      goto fail;
    }
    ds->labels[i] = raw[i];
  }
  free(raw);
  snprintf(ds->source, sizeof ds->source, "%s", images_path);
  return HSC_OK;
fail:
  free(raw);
  hsc_dataset_free(ds);
  return st;
}

void hsc_dataset_free(hsc_dataset *ds) {
  if (!ds) return;
  free(ds->images);
  free(ds->labels);
  memset(ds, 0, sizeof *ds);
}

/* DIR/NAME.gz if it exists, else DIR/NAME; neither: an error naming both. */
static hsc_status fmnist_find(const char *dir, const char *name, char *path, size_t size, hsc_error *err) {
  char gz[HSC_CFG_PATH], plain[HSC_CFG_PATH];
  int a = snprintf(gz, sizeof gz, "%s/%s.gz", dir, name);
  int b = snprintf(plain, sizeof plain, "%s/%s", dir, name);
  if (a < 0 || b < 0 || (size_t)a >= sizeof gz || (size_t)a >= size)
    return hsc_error_set(err, HSC_ERR_INPUT, "data.path '%s': the path is too long (at most %d bytes)", dir,
                         HSC_CFG_PATH - 16);
  if (access(gz, F_OK) == 0) {
    snprintf(path, size, "%s", gz);
    return HSC_OK;
  }
  if (access(plain, F_OK) == 0) {
    snprintf(path, size, "%s", plain);
    return HSC_OK;
  }
  return hsc_error_set(err, HSC_ERR_IO,
                       "Fashion-MNIST file %s not found: tried %s and %s (install the Debian package "
                       "dataset-fashion-mnist, or point data.path at a directory holding the IDX files)",
                       name, gz, plain);
}

static hsc_status fmnist_pair(const char *dir, const char *images, const char *labels, hsc_dataset *ds,
                              hsc_error *err) {
  char ip[HSC_CFG_PATH], lp[HSC_CFG_PATH];
  hsc_status st = fmnist_find(dir, images, ip, sizeof ip, err);
  if (st == HSC_OK) st = fmnist_find(dir, labels, lp, sizeof lp, err);
  if (st == HSC_OK) st = hsc_idx_load(ds, ip, lp, err);
  return st;
}

hsc_status hsc_fmnist_load(const char *dir, hsc_dataset *train, hsc_dataset *test, hsc_error *err) {
  memset(train, 0, sizeof *train);
  if (test) memset(test, 0, sizeof *test);
  hsc_status st = fmnist_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", train, err);
  if (st != HSC_OK) return st;
  if (test) {
    st = fmnist_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test, err);
    if (st != HSC_OK) {
      hsc_dataset_free(train);
      return st;
    }
  }
  return HSC_OK;
}
