/* What checkpoint.c knows about an open checkpoint and shares with ckpt_inspect.c; not part of the API.
 * The lists are filled when a checkpoint is opened (and verified), so these readers do no HDF5 calls. */
#ifndef HSCONAS_IO_CKPT_INTERNAL_H
#define HSCONAS_IO_CKPT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "hsconas/checkpoint.h"

#define CKPT_MAX_DIMS 4

/* The dataset element types a checkpoint holds (file types H5T_IEEE_F32LE, H5T_STD_I64LE, H5T_STD_U8LE,
 * H5T_IEEE_F64LE). */
typedef enum { CKPT_F32, CKPT_I64, CKPT_U8, CKPT_F64, CKPT_TYPE_COUNT } ckpt_type;

typedef struct {
  char *name; /* absolute: "/params/stem.conv" */
  ckpt_type type;
  int ndim;
  int64_t dims[CKPT_MAX_DIMS];
  size_t count; /* product of dims */
  uint32_t crc; /* the stored "crc32" attribute */
} ckpt_dset;

/* Kinds of /meta attributes, by HDF5 type class. */
typedef enum { CKPT_META_INT, CKPT_META_DOUBLE, CKPT_META_STR, CKPT_META_OTHER } ckpt_meta_kind;

typedef struct {
  char *key;
  ckpt_meta_kind kind;
} ckpt_meta;

const char *ckpt_type_name(ckpt_type t);
size_t ckpt_type_size(ckpt_type t);

/* Datasets sorted by name (after hsc_ckpt_open; in write order while writing). */
size_t ckpt_dset_count(const hsc_ckpt *ck);
const ckpt_dset *ckpt_dset_at(const hsc_ckpt *ck, size_t i);
/* /meta attributes sorted by key (after hsc_ckpt_open; none while writing). */
size_t ckpt_meta_count(const hsc_ckpt *ck);
const ckpt_meta *ckpt_meta_at(const hsc_ckpt *ck, size_t i);

#endif
