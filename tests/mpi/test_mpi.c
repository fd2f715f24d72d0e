/* MPI: the process record, MPI_ERRORS_RETURN, and the gradient all-reduce path (pack the touched regions,
 * MPI_Allreduce, unpack) checked against hand-computed sums. Run under mpirun -np 3. */
#include <string.h>

#include "harness.h"

static void t_proc_record(hsc_test *t) {
  const hsc_proc_info *p = hsc_proc();
  int size = 0, rank = -1;
  HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
  HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  T_EQ_INT(t, p->size, size);
  T_EQ_INT(t, p->rank, rank);
  T_CHECK(t, p->mpi);
  /* All ranks of this test run on one host: the node-local ranks are 0..size-1, each exactly once. */
  T_EQ_INT(t, p->local_size, size);
  int sum = 0;
  HSC_CHECK_MPI(MPI_Allreduce(&p->local_rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
  T_EQ_INT(t, sum, size * (size - 1) / 2);
}

/* hsc_proc_init sets MPI_ERRORS_RETURN, so a bad call returns an error code that HSC_CHECK_MPI can see
 * instead of aborting inside MPI. */
static void t_errors_return(hsc_test *t) {
  int value = 1;
  int rc = MPI_Send(&value, 1, MPI_INT, hsc_proc()->size + 5, 0, MPI_COMM_WORLD);
  T_CHECK(t, rc != MPI_SUCCESS);
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  T_EQ_INT(t, MPI_Error_string(rc, msg, &len), MPI_SUCCESS);
  T_CHECK(t, len > 0);
}

/* Each rank's gradient element i of region r holds (rank + 1) * (i + 1) + r (small integers, exact in
 * fp32); after pack, MPI_Allreduce(SUM) and unpack, every touched element must equal
 * sum_rank (rank + 1) * (i + 1) + size * r, and untouched elements must keep their own value. */
static void t_region_allreduce(hsc_test *t) {
  const hsc_proc_info *p = hsc_proc();
  enum { ROWS = 6, COLS = 10, LEN = ROWS * COLS + 7 };
  hsc_region regions[2] = {
      {.offset = 0, .rows = 4, .cols = 7, .ld = COLS, .weight_decay = 0.0f},        /* 4x7 slice of a 6x10 */
      {.offset = ROWS * COLS, .rows = 1, .cols = 5, .ld = 5, .weight_decay = 0.0f}, /* 5 of a 7-vector */
  };
  float *grad = t->be->alloc(t->ctx, LEN * sizeof(float));
  for (int i = 0; i < LEN; i++) grad[i] = -1.0f - (float)p->rank; /* untouched marker, rank-specific */
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < regions[r].rows; i++)
      for (int j = 0; j < regions[r].cols; j++) {
        int e = i * regions[r].cols + j;
        grad[regions[r].offset + (size_t)i * regions[r].ld + j] = (float)((p->rank + 1) * (e + 1) + r);
      }
  size_t count = hsc_regions_count(regions, 2);
  T_EQ_INT(t, count, 4 * 7 + 5);
  float *packed = t->be->alloc(t->ctx, count * sizeof(float));
  t->be->pack_regions(t->ctx, regions, 2, grad, packed);
  HSC_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, packed, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
  t->be->unpack_regions(t->ctx, regions, 2, packed, grad);
  int ranksum = p->size * (p->size + 1) / 2;
  int bad = 0;
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < regions[r].rows; i++)
      for (int j = 0; j < regions[r].cols; j++) {
        int e = i * regions[r].cols + j;
        float want = (float)(ranksum * (e + 1) + p->size * r);
        if (grad[regions[r].offset + (size_t)i * regions[r].ld + j] != want) bad++;
      }
  T_EQ_INT(t, bad, 0);
  /* Outside the regions: row 0..3 columns 7..9, rows 4..5, and the vector's last 2 entries. */
  int touched_outside = 0;
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < COLS; j++)
      if ((i >= 4 || j >= 7) && grad[i * COLS + j] != -1.0f - (float)p->rank) touched_outside++;
  for (int j = 5; j < 7; j++)
    if (grad[ROWS * COLS + j] != -1.0f - (float)p->rank) touched_outside++;
  T_EQ_INT(t, touched_outside, 0);
  t->be->release(t->ctx, packed);
  t->be->release(t->ctx, grad);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv);
  static const hsc_test_case cases[] = {
      {"proc_record", t_proc_record},
      {"errors_return", t_errors_return},
      {"region_allreduce", t_region_allreduce},
  };
  int rc = hsc_test_main("test_mpi", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
