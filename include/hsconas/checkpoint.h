/* HDF5 checkpoints (DESIGN.md §4), readable with h5py and h5dump.
 *
 * Layout: /meta attributes (format_version, program_version, phase, step, ... any the caller adds), and
 * datasets at caller-chosen paths (/params/<name>, /optim/<name>, /state/<name>, /rng, /data, /space/...).
 * Every dataset carries a "crc32" attribute (zlib CRC-32 of its raw little-endian bytes), checked on load.
 *
 * Writing is done by one process (rank 0, after the ranks agree): the file is written as PATH.tmp, flushed,
 * fsync'd, then renamed to PATH, so a reader never sees a half-written checkpoint under its final name.
 * A checkpoint whose file is truncated, whose checksums do not match, or that lacks the attribute
 * "complete" (written last) is refused with a message naming the file and the dataset. */
#ifndef HSCONAS_CHECKPOINT_H
#define HSCONAS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hsconas/core.h"

#define HSC_CKPT_FORMAT_VERSION 1

typedef struct hsc_ckpt hsc_ckpt;

/* ---- writing ---- */

/* Creates PATH.tmp and /meta with format_version and program_version. */
hsc_status hsc_ckpt_create(hsc_ckpt **ck, const char *path, hsc_error *err);
/* /meta attributes. */
hsc_status hsc_ckpt_meta_int(hsc_ckpt *ck, const char *key, int64_t v, hsc_error *err);
hsc_status hsc_ckpt_meta_double(hsc_ckpt *ck, const char *key, double v, hsc_error *err);
hsc_status hsc_ckpt_meta_str(hsc_ckpt *ck, const char *key, const char *v, hsc_error *err);
/* Datasets; intermediate groups are created as needed. dims[ndim] (ndim 1..4). */
hsc_status hsc_ckpt_write_f32(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                              const float *data, hsc_error *err);
hsc_status hsc_ckpt_write_i64(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                              const int64_t *data, hsc_error *err);
hsc_status hsc_ckpt_write_u8(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                             const uint8_t *data, hsc_error *err);
hsc_status hsc_ckpt_write_f64(hsc_ckpt *ck, const char *name, int ndim, const int64_t *dims,
                              const double *data, hsc_error *err);
/* Marks the file complete, closes, fsyncs and renames PATH.tmp to PATH (and fsyncs the directory).
 * Frees ck in every case; on failure PATH.tmp is removed and an existing PATH is untouched. After any failed
 * meta_* or write_* on ck, commit refuses (the file would lack data). The one failure reported after the
 * rename is a failed fsync of the directory: PATH is then already the new checkpoint. */
hsc_status hsc_ckpt_commit(hsc_ckpt *ck, hsc_error *err);
/* Abandons a checkpoint being written: closes and removes PATH.tmp, frees ck. */
void hsc_ckpt_abort(hsc_ckpt *ck);

/* ---- reading ---- */

/* Opens PATH and verifies it: "complete" present, format_version supported, every dataset's checksum.
 * Errors name the file (and the dataset). */
hsc_status hsc_ckpt_open(hsc_ckpt **ck, const char *path, hsc_error *err);
void hsc_ckpt_close(hsc_ckpt *ck);
const char *hsc_ckpt_path(const hsc_ckpt *ck);
int hsc_ckpt_has(const hsc_ckpt *ck, const char *name);
/* Missing attribute or wrong type: HSC_ERR_INPUT naming the file and key. get_str copies at most len-1. */
hsc_status hsc_ckpt_get_int(hsc_ckpt *ck, const char *key, int64_t *v, hsc_error *err);
hsc_status hsc_ckpt_get_double(hsc_ckpt *ck, const char *key, double *v, hsc_error *err);
hsc_status hsc_ckpt_get_str(hsc_ckpt *ck, const char *key, char *buf, size_t len, hsc_error *err);
/* Reads a dataset whose total element count must equal `count` (else an error naming file, dataset, both
 * counts). dims_out[4] and *ndim_out may be NULL. */
hsc_status hsc_ckpt_read_f32(hsc_ckpt *ck, const char *name, size_t count, float *data, hsc_error *err);
hsc_status hsc_ckpt_read_i64(hsc_ckpt *ck, const char *name, size_t count, int64_t *data, hsc_error *err);
hsc_status hsc_ckpt_read_u8(hsc_ckpt *ck, const char *name, size_t count, uint8_t *data, hsc_error *err);
hsc_status hsc_ckpt_read_f64(hsc_ckpt *ck, const char *name, size_t count, double *data, hsc_error *err);
/* Element count of a dataset (0 when missing). */
size_t hsc_ckpt_count(hsc_ckpt *ck, const char *name);

/* ---- a run directory's checkpoints: DIR/<phase>-<step, 10 digits>.h5 ---- */

/* Writes the file name of (phase, step) into buf. */
void hsc_ckpt_name(const char *dir, const char *phase, int64_t step, char *buf, size_t len);
/* Opens the newest checkpoint of `phase` in dir that verifies; each newer one that does not is reported
 * with hsc_log(WARN, ...) naming it and why, and skipped. *ck = NULL with HSC_OK when dir holds none of
 * that phase; HSC_ERR_INPUT (listing them) when some exist but none verifies. */
hsc_status hsc_ckpt_open_latest(const char *dir, const char *phase, hsc_ckpt **ck, hsc_error *err);
/* Deletes all but the newest `keep` checkpoints of `phase` (and stale PATH.tmp files). */
hsc_status hsc_ckpt_prune(const char *dir, const char *phase, int keep, hsc_error *err);

/* `hsconas inspect`: prints the meta attributes, every dataset with shape, type, checksum status and
 * (float data) min / max / mean / L2 norm. */
hsc_status hsc_ckpt_inspect(const char *path, FILE *out, hsc_error *err);

#endif
