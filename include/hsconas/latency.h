/* The hardware performance model (DESIGN.md §1, docs/latency.md): a per-block latency lookup table
 * profiled on one device, backend and batch size, and a fitted correction
 *
 *   LAT(a) = k * (stem + sum_l LUT[l][op_l][scale_l] + head) + b        (milliseconds)
 *
 * The model is a YAML file (docs/formats.md) that names the space it was built for by hash; loading it for
 * another space, batch or backend is refused. In an MPI run rank 0 reads the file and broadcasts its bytes,
 * every rank parses the same bytes, and hsc_latency_predict is one fixed-order sum in double precision, so
 * all ranks predict the same value bit for bit. */
#ifndef HSCONAS_LATENCY_H
#define HSCONAS_LATENCY_H

#include <stdint.h>
#include <stdio.h>

#include "hsconas/config.h"
#include "hsconas/core.h"
#include "hsconas/space.h"

#define HSC_LATENCY_FORMAT 1

/* One measured quantity: the median of the samples and their interquartile range, in ms. */
typedef struct {
  double median, iqr;
} hsc_lat_entry;

/* Quality of a predictor on a set of architectures (measured m_i, predicted p_i). */
typedef struct {
  int n;
  double rmse_ms;           /* sqrt(mean (p - m)^2) */
  double mape;              /* mean |p - m| / m, in % */
  double max_ape;           /* largest |p - m| / m, in % */
  double within5, within10; /* share of |p - m| / m <= 5% and <= 10%, in % */
  double pearson, spearman, kendall;
} hsc_lat_quality;

typedef struct {
  int format;
  char program[32]; /* hsconas version that wrote it */
  char created[32]; /* UTC, ISO 8601 */
  char backend[32]; /* cpu | cuda */
  char device[512]; /* the backend's describe() line: CPU model or GPU name, library versions */
  char host[128];
  int cores;   /* online CPU cores of the host */
  int threads; /* operator threads (CPU) */
  int pinned;
  int batch;
  int in_c, in_h, in_w;
  uint64_t space_hash;
  int nblocks, nops, nscales;
  hsc_op ops[HSC_OP_COUNT]; /* op of each choice index, as the space lists them */
  double scales[HSC_MAX_SCALES];
  /* protocol */
  int warmup, repeats;
  double min_sample_ms;
  char sampling[HSC_CFG_NAME]; /* latency.sampling of the fit and hold-out architectures */
  int64_t seed;                /* run.seed they were drawn from */
  /* the table */
  hsc_lat_entry stem, head;
  hsc_lat_entry lut[HSC_MAX_BLOCKS][HSC_OP_COUNT][HSC_MAX_SCALES]; /* [block][op (hsc_op)][scale index] */
  /* the fit and its quality */
  double k, b;
  hsc_lat_quality fit;     /* of the model on the architectures it was fitted on */
  hsc_lat_quality holdout; /* of the model on the hold-out architectures (n = 0: none) */
  hsc_lat_quality flops;   /* the FLOPs proxy on the hold-out set: latency = kf * MACs + bf fitted on
                              the fit set; rank correlations are those of MACs against latency */
  double flops_k, flops_b; /* ms per MAC, ms */
} hsc_latency_model;

/* The table sum stem + sum LUT + head of an architecture (ms, before the fit). */
double hsc_latency_lut_sum(const hsc_latency_model *m, const hsc_arch *a);
/* The model's prediction k * lut_sum + b (ms). */
double hsc_latency_predict(const hsc_latency_model *m, const hsc_arch *a);

/* Checks that the model fits this space and batch (and backend, when not NULL); the error names the
 * file and what differs. */
hsc_status hsc_latency_check(const hsc_latency_model *m, const hsc_space *s, int batch, const char *backend,
                             const char *path, hsc_error *err);

/* Parses a model from YAML text; `name` is used in messages. Every LUT entry of the space must be present. */
hsc_status hsc_latency_parse(hsc_latency_model *m, const char *text, size_t len, const char *name,
                             hsc_error *err);
/* Writes the YAML form (docs/formats.md). Parsing it back gives the same model, every double exactly. */
void hsc_latency_write(const hsc_latency_model *m, FILE *out);
/* Writes to path through a temporary file and a rename (a crash leaves the old file or the new one). */
hsc_status hsc_latency_save(const hsc_latency_model *m, const char *path, hsc_error *err);

/* Rank 0 of comm reads `path` and broadcasts its bytes; every rank parses them and checks them against
 * the space, batch and backend (backend NULL: any; s NULL: no check at all). Collective; every rank
 * returns the same status. */
hsc_status hsc_latency_load(hsc_latency_model *m, const char *path, const hsc_space *s, int batch,
                            const char *backend, MPI_Comm comm, hsc_error *err);

/* The model path of a configuration: latency.model, or RUN_DIR/latency.yaml when that is empty. */
void hsc_latency_model_path(const hsc_config *cfg, char *buf, size_t len);

/* ---- statistics (src/latency/stats.c) ---- */

/* Least squares y = k x + b over n >= 2 points (centred sums in double). A constant x gives k = 0 and
 * b = mean y. */
void hsc_fit_line(const double *x, const double *y, int n, double *k, double *b);
double hsc_pearson(const double *x, const double *y, int n);
/* Pearson correlation of the ranks (ties get their average rank). */
double hsc_spearman(const double *x, const double *y, int n);
/* Kendall's tau-b (ties in either variable handled as tau-b does). */
double hsc_kendall(const double *x, const double *y, int n);
/* Fills q from measured and predicted values. */
void hsc_lat_quality_compute(const double *measured, const double *predicted, int n, hsc_lat_quality *q);

/* ---- profiling (src/latency/profile.c) ---- */

typedef struct {
  int force; /* profile even when a valid model for this space and batch exists */
  int quiet; /* no progress output */
} hsc_profile_opts;

/* `hsconas profile`: measures the LUT and the fit and hold-out architectures on the configured backend
 * (docs/latency.md has the protocol), fits k and b, and writes the model to hsc_latency_model_path and the
 * measured architectures to MODEL.csv beside it. Collective over comm: with latency.parallel the work is
 * split over the ranks (each must own its device), else rank 0 measures while the others wait. When the
 * model file already holds a valid model for this space, batch and backend, nothing is measured (unless
 * opts->force) and *m is that model. */
hsc_status hsc_latency_profile(const hsc_config *cfg, MPI_Comm comm, const hsc_profile_opts *opts,
                               hsc_latency_model *m, hsc_error *err);

/* Measures architectures end to end with the profiling protocol (rank 0 of comm; the result is broadcast):
 * out_ms [n] medians. For `hsconas latency --measure`. */
hsc_status hsc_latency_measure(const hsc_config *cfg, MPI_Comm comm, const hsc_arch *archs, int n,
                               hsc_lat_entry *out, hsc_error *err);

#endif
