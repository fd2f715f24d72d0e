/* The process record (rank, size, node-local rank), set once at start-up, and logging. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsconas/core.h"

/* The one piece of process-wide state (STYLE.md §7): written by hsc_proc_init only, before any other
 * hsconas call, and read-only afterwards. */
static struct {
  hsc_proc_info info;
  hsc_log_level threshold;
  double t0;
} proc = {.info = {.rank = 0, .size = 1, .local_rank = 0, .local_size = 1, .mpi = 0},
          .threshold = HSC_LOG_INFO};

double hsc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double hsc_thread_cpu(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
    hsc_fatal("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static hsc_log_level parse_level(const char *s) {
  if (!s) return HSC_LOG_INFO;
  if (!strcmp(s, "error")) return HSC_LOG_ERROR;
  if (!strcmp(s, "warn")) return HSC_LOG_WARN;
  if (!strcmp(s, "debug")) return HSC_LOG_DEBUG;
  return HSC_LOG_INFO;
}

void hsc_proc_init(int *argc, char ***argv) {
  proc.t0 = hsc_now();
  proc.threshold = parse_level(getenv("HSC_LOG"));
  int provided = 0;
  HSC_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  proc.info.mpi = 1;
  HSC_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &proc.info.rank));
  HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &proc.info.size));
  MPI_Comm node;
  HSC_CHECK_MPI(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, proc.info.rank, MPI_INFO_NULL, &node));
  HSC_CHECK_MPI(MPI_Comm_rank(node, &proc.info.local_rank));
  HSC_CHECK_MPI(MPI_Comm_size(node, &proc.info.local_size));
  HSC_CHECK_MPI(MPI_Comm_free(&node));
}

void hsc_proc_finalize(void) {
  int fin = 0;
  if (proc.info.mpi && MPI_Finalized(&fin) == MPI_SUCCESS && !fin) HSC_CHECK_MPI(MPI_Finalize());
}

const hsc_proc_info *hsc_proc(void) { return &proc.info; }

static void vlog(int all, hsc_log_level level, const char *fmt, va_list ap) {
  if (level > proc.threshold) return;
  if (!all && proc.info.rank != 0 && level > HSC_LOG_WARN) return;
  static const char *const tags[] = {"error: ", "warning: ", "", ""};
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  double t = proc.t0 > 0 ? hsc_now() - proc.t0 : 0.0;
  FILE *out = level <= HSC_LOG_WARN ? stderr : stdout;
  fprintf(out, "[hsconas r%d %8.3fs] %s%s\n", proc.info.rank, t, tags[level], msg);
  fflush(out);
}

void hsc_log(hsc_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(0, level, fmt, ap);
  va_end(ap);
}

void hsc_log_all(hsc_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(1, level, fmt, ap);
  va_end(ap);
}

/* Every rank returns rank 0's status and message (after a step only rank 0 performed). */
hsc_status hsc_agree(MPI_Comm comm, hsc_status st, hsc_error *err) {
  int code = (int)st;
  HSC_CHECK_MPI(MPI_Bcast(&code, 1, MPI_INT, 0, comm));
  if (code != HSC_OK) {
    HSC_CHECK_MPI(MPI_Bcast(err->msg, (int)sizeof err->msg, MPI_CHAR, 0, comm));
    err->code = (hsc_status)code;
  }
  return (hsc_status)code;
}
