/* hsconas core: error values, check macros, the read-only process record, logging.
 *
 * Three tiers of failure (STYLE.md §9):
 *   - a broken invariant is an assert();
 *   - a fatal runtime failure on one rank (a library call that must not fail) ends the job through
 *     hsc_fatal(), which prints file:line and the library's own message and calls MPI_Abort;
 *   - bad input (config, checkpoint, dataset, flag) is an hsc_error returned to the caller, naming the
 *     file / key / offset and what was expected. */
#ifndef HSCONAS_CORE_H
#define HSCONAS_CORE_H

#include <mpi.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define HSC_VERSION "0.1.0"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Status codes returned by fallible library functions (0 = success). */
typedef enum {
  HSC_OK = 0,
  HSC_ERR_INPUT = 1,       /* bad user input: config, flag, dataset, checkpoint */
  HSC_ERR_IO = 2,          /* a file could not be read or written */
  HSC_ERR_UNSUPPORTED = 3, /* the backend or build lacks the feature */
  HSC_ERR_DEVICE = 4,      /* no usable device / driver */
  HSC_ERR_STOPPED = 5,     /* stopped by a signal after a checkpoint (exit status 3) */
  HSC_ERR_CODE_COUNT
} hsc_status;

/* One clear message for the user; filled by the function that detected the problem. */
typedef struct {
  hsc_status code;
  char msg[1024];
} hsc_error;

const char *hsc_status_name(hsc_status s);

/* Sets err (when non-NULL) and returns code, so `return hsc_error_set(err, ...)` reads naturally. */
hsc_status hsc_error_set(hsc_error *err, hsc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints "hsconas: rank R: FILE:LINE: message" to stderr and ends the whole job (MPI_Abort when MPI is
 * initialised, abort() otherwise). For failures that no caller can handle. */
_Noreturn void hsc_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define hsc_fatal(...) hsc_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* Every MPI call goes through this: evaluates `call` once, prints MPI's own error string. Requires
 * MPI_ERRORS_RETURN on the communicator (hsc_proc_init sets it on MPI_COMM_WORLD). */
#define HSC_CHECK_MPI(call)                                                                            \
  do {                                                                                                 \
    int hsc_mpi_rc_ = (call);                                                                          \
    if (hsc_mpi_rc_ != MPI_SUCCESS) {                                                                  \
      char hsc_mpi_msg_[MPI_MAX_ERROR_STRING];                                                         \
      int hsc_mpi_len_ = 0;                                                                            \
      if (MPI_Error_string(hsc_mpi_rc_, hsc_mpi_msg_, &hsc_mpi_len_) != MPI_SUCCESS) hsc_mpi_len_ = 0; \
      hsc_mpi_msg_[hsc_mpi_len_] = '\0';                                                               \
      hsc_fatal_at(__FILE__, __LINE__, "%s failed: %s", #call, hsc_mpi_msg_);                          \
    }                                                                                                  \
  } while (0)

/* Allocation that cannot fail quietly: a failed allocation is fatal (out of memory on one rank). */
void *hsc_xmalloc_at(const char *file, int line, size_t bytes);
void *hsc_xcalloc_at(const char *file, int line, size_t count, size_t size);
/* 64-byte aligned, for SIMD loops and BLAS; release with free(). */
void *hsc_xaligned_at(const char *file, int line, size_t bytes);
#define hsc_xmalloc(bytes) hsc_xmalloc_at(__FILE__, __LINE__, (bytes))
#define hsc_xcalloc(count, size) hsc_xcalloc_at(__FILE__, __LINE__, (count), (size))
#define hsc_xaligned(bytes) hsc_xaligned_at(__FILE__, __LINE__, (bytes))

/* The read-only process record (STYLE.md §7): set once by hsc_proc_init, read everywhere. */
typedef struct {
  int rank;       /* in MPI_COMM_WORLD; 0 without MPI */
  int size;       /* world size; 1 without MPI */
  int local_rank; /* rank among the ranks of this node (MPI_COMM_TYPE_SHARED) */
  int local_size;
  int mpi; /* 1 when MPI was initialised by hsc_proc_init */
} hsc_proc_info;

/* Initialises MPI (thread level FUNNELED), sets MPI_ERRORS_RETURN on MPI_COMM_WORLD and fills the process
 * record. Call once from main, before any other hsconas call. */
void hsc_proc_init(int *argc, char ***argv);
/* Every rank of comm returns rank 0's status and message: after a step that only rank 0 performed (a file
 * written, a directory made), the others learn its outcome. Collective. */
hsc_status hsc_agree(MPI_Comm comm, hsc_status st, hsc_error *err);

/* Finalises MPI if hsc_proc_init initialised it. */
void hsc_proc_finalize(void);
const hsc_proc_info *hsc_proc(void);

/* Logging: "[hsconas r0 12.345s] message". Levels below the threshold (HSC_LOG env: error, warn, info,
 * debug; default info) are dropped. Only rank 0 prints info unless `all_ranks` is set. */
typedef enum { HSC_LOG_ERROR, HSC_LOG_WARN, HSC_LOG_INFO, HSC_LOG_DEBUG } hsc_log_level;
void hsc_log(hsc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hsc_log_all(hsc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Creates dir and its parents (mkdir -p); errors name the directory. */
hsc_status hsc_make_dirs(const char *dir, hsc_error *err);

/* Rank 0 of comm reads the whole file at `path` (at most `max` bytes) and broadcasts it: every rank gets a
 * malloc'd, NUL-terminated copy in *text (its length in *len), or the same error, which names `what` and the
 * path ("cannot open config file 'x.yaml': No such file or directory"), with `hint` (or NULL) appended when
 * the file does not exist. Collective over comm. Large read-only inputs are read once, never by every rank
 * (DESIGN.md §2). */
hsc_status hsc_file_bcast(const char *path, const char *what, const char *hint, size_t max, MPI_Comm comm,
                          char **text, size_t *len, hsc_error *err);

/* Monotonic wall clock in seconds. */
double hsc_now(void);
/* CPU time consumed by the calling thread, in seconds (not advanced while it sleeps or waits for a core). */
double hsc_thread_cpu(void);

#endif
