/* The task farm (farm.h) over MPI, run under mpirun -np 3: every task comes back once with its evaluator's
 * values; release and serve again; a hung worker (the HSC_TEST_HANG_* hook) is abandoned and its task
 * re-sent; one rank evaluates inline; a worker's pending signal reaches the master. Each case works on its
 * own duplicate of MPI_COMM_WORLD, so no message of one case can reach another. With one rank only the
 * inline case runs; the others are skipped. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "hsconas/farm.h"
#include "hsconas/signals.h"

enum { MAX_ID = 256, MAX_RANKS = 64, SLEEP_US = 3000 };

/* Ids of the hung-worker case. Its tasks 151 and 152 take 0.9 s each, so that the 1.35 s timeout falls in
 * the middle of 152's evaluation (0.45 s either side) while tasks are still queued; each stays 0.45 s under
 * the timeout. */
enum { HANG_FIRST = 150, HANG_NTASKS = 10 };
static const double hang_timeout_s = 1.35;

/* The synthetic evaluator's sleep per task. */
typedef struct {
  long sleep_us;
} synth_ctx;

static void make_task(int64_t id, hsc_task *t) {
  memset(t, 0, sizeof *t);
  t->id = id;
  t->arch.nblocks = 1 + (int)(id % 20);
  for (int b = 0; b < t->arch.nblocks; b++) {
    t->arch.op[b] = (uint8_t)((id * 7 + b) % 5);
    t->arch.scale[b] = (uint8_t)((id + 3 * b) % 4);
  }
}

/* The values a task must come back with: functions of its architecture only (FNV-1a over the genes). */
static void synth_values(const hsc_task *t, hsc_task_result *r) {
  uint64_t h = 1469598103934665603ULL;
  const uint8_t n = (uint8_t)t->arch.nblocks;
  h = (h ^ n) * 1099511628211ULL;
  for (int b = 0; b < t->arch.nblocks; b++) {
    h = (h ^ t->arch.op[b]) * 1099511628211ULL;
    h = (h ^ t->arch.scale[b]) * 1099511628211ULL;
  }
  r->top1 = (double)(h % 10000) / 100.0;
  r->top5 = r->top1 + (double)((h >> 16) % 1000) / 100.0;
  r->loss = (double)((h >> 32) % 5000) / 1000.0;
  r->images = 100 + (int)((h >> 48) % 900);
}

static void synth_eval(void *ctx, const hsc_task *t, hsc_task_result *r) {
  const synth_ctx *c = ctx;
  synth_values(t, r);
  /* Task 51 is still in flight when the release case releases. */
  long us = c->sleep_us;
  if (t->id == 51) us = 300 * 1000;
  if (t->id == HANG_FIRST + 1 || t->id == HANG_FIRST + 2) us = 900 * 1000;
  struct timespec left = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
  while (nanosleep(&left, &left) != 0)
    if (errno != EINTR) hsc_fatal("nanosleep failed");
}

/* Waits for every rank of comm without spinning (a blocking barrier would busy-poll for the seconds a hung
 * worker sleeps). */
static void sleepy_barrier(MPI_Comm comm) {
  MPI_Request req;
  HSC_CHECK_MPI(MPI_Ibarrier(comm, &req));
  for (;;) {
    int done = 0;
    HSC_CHECK_MPI(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
  }
}

/* The results seen by the master. */
typedef struct {
  int count[MAX_ID];           /* per id */
  int64_t order[MAX_ID];       /* ids in arrival order (the first MAX_ID) */
  int by_worker[MAX_RANKS];    /* tasks per worker rank */
  double secs[MAX_RANKS];      /* evaluator seconds per worker rank */
  double seconds, max_seconds; /* over all results */
  int n;
} tally;

/* Checks one result against the synthetic evaluator and records it; `worker_lo..hi`: the allowed ranks. */
static void check_result(hsc_test *t, const hsc_task_result *r, int worker_lo, int worker_hi, tally *y) {
  if (r->id < 0 || r->id >= MAX_ID) {
    T_FAIL(t, "result with id %lld", (long long)r->id);
    return;
  }
  hsc_task task;
  make_task(r->id, &task);
  hsc_task_result want = {0};
  synth_values(&task, &want);
  if (r->top1 != want.top1 || r->top5 != want.top5 || r->loss != want.loss || r->images != want.images)
    T_FAIL(t, "task %lld: got (%g, %g, %g, %d), want (%g, %g, %g, %d)", (long long)r->id, r->top1, r->top5,
           r->loss, r->images, want.top1, want.top5, want.loss, want.images);
  if (r->worker < worker_lo || r->worker > worker_hi || r->worker >= MAX_RANKS) {
    T_FAIL(t, "task %lld: worker %d, not in %d..%d", (long long)r->id, r->worker, worker_lo, worker_hi);
    return;
  }
  /* The evaluator sleeps at least SLEEP_US (nanosleep never returns early but for a signal). */
  if (!(r->seconds >= SLEEP_US * 1e-6 && r->seconds < 60.0))
    T_FAIL(t, "task %lld: %g s of evaluation", (long long)r->id, r->seconds);
  y->count[r->id]++;
  if (y->n < MAX_ID) y->order[y->n] = r->id;
  y->by_worker[r->worker]++;
  y->secs[r->worker] += r->seconds;
  y->seconds += r->seconds;
  if (r->seconds > y->max_seconds) y->max_seconds = r->seconds;
  y->n++;
}

/* Waits until nothing is pending, `max` results per call, checking each. */
static void drain(hsc_test *t, hsc_farm *f, int max, int worker_lo, int worker_hi, tally *y) {
  hsc_task_result out[8];
  T_REQUIRE(t, max >= 1 && max <= (int)ARRAY_LEN(out));
  while (hsc_farm_pending(f) > 0) {
    hsc_status st = HSC_ERR_IO;
    const int n = hsc_farm_wait(f, out, max, &st);
    T_EQ_INT(t, st, HSC_OK);
    if (n < 1 || n > max || st != HSC_OK) {
      T_FAIL(t, "hsc_farm_wait returned %d results (max %d) with %d pending", n, max, hsc_farm_pending(f));
      return;
    }
    for (int i = 0; i < n; i++) check_result(t, &out[i], worker_lo, worker_hi, y);
  }
}

static void submit_range(hsc_farm *f, int64_t first, int64_t n) {
  for (int64_t id = first; id < first + n; id++) {
    hsc_task task;
    make_task(id, &task);
    hsc_farm_submit(f, &task);
  }
}

/* Ids first..first+n-1 each came back exactly `times` times. */
static void check_ids(hsc_test *t, const tally *y, int64_t first, int64_t n, int times) {
  for (int64_t id = first; id < first + n; id++)
    if (y->count[id] != times)
      T_FAIL(t, "task %lld came back %d times, not %d", (long long)id, y->count[id], times);
}

/* A worker's part: serve until `want_exit`, which must carry `want_status`. */
static void serve_expect(hsc_test *t, MPI_Comm comm, hsc_farm_exit want_exit, hsc_status want_status) {
  synth_ctx ctx = {.sleep_us = SLEEP_US};
  hsc_status st = HSC_ERR_IO;
  const hsc_farm_exit e = hsc_farm_serve(comm, synth_eval, &ctx, &st);
  T_EQ_INT(t, e, want_exit);
  T_EQ_INT(t, st, want_status);
}

static MPI_Comm case_begin(hsc_test *t, int *rank, int *size) {
  MPI_Comm comm;
  HSC_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  HSC_CHECK_MPI(MPI_Comm_rank(comm, rank));
  HSC_CHECK_MPI(MPI_Comm_size(comm, size));
  if (*size > MAX_RANKS) T_FAIL(t, "the test handles at most %d ranks", MAX_RANKS);
  return comm;
}

static void case_end(MPI_Comm *comm) {
  sleepy_barrier(*comm);
  HSC_CHECK_MPI(MPI_Comm_free(comm));
}

static void t_forty_tasks(hsc_test *t) {
  int rank, size;
  MPI_Comm comm = case_begin(t, &rank, &size);
  if (size < 2 || size > MAX_RANKS) {
    HSC_CHECK_MPI(MPI_Comm_free(&comm));
    T_SKIP(t, "needs 2..%d ranks", MAX_RANKS);
  }
  if (rank > 0) {
    serve_expect(t, comm, HSC_FARM_DONE, HSC_OK);
    case_end(&comm);
    return;
  }
  const double t0 = hsc_now();
  hsc_farm *f = hsc_farm_create(comm, 30.0, NULL, NULL);
  T_EQ_INT(t, hsc_farm_free_slots(f), size - 1);
  hsc_task_result out[4];
  hsc_status st = HSC_ERR_IO;
  T_EQ_INT(t, hsc_farm_wait(f, out, 4, &st), 0); /* nothing pending: at once */
  T_EQ_INT(t, st, HSC_OK);
  submit_range(f, 0, 40);
  T_EQ_INT(t, hsc_farm_pending(f), 40);
  T_EQ_INT(t, hsc_farm_free_slots(f), 0);
  tally *y = hsc_xcalloc(1, sizeof *y);
  drain(t, f, 3, 1, size - 1, y);
  check_ids(t, y, 0, 40, 1);
  T_EQ_INT(t, y->n, 40);
  /* The first dispatch gives every worker a task. */
  double max_worker_secs = 0.0;
  for (int w = 1; w < size; w++) {
    if (y->by_worker[w] < 1) T_FAIL(t, "worker %d evaluated no task", w);
    if (y->secs[w] > max_worker_secs) max_worker_secs = y->secs[w];
  }
  T_EQ_INT(t, hsc_farm_pending(f), 0);
  T_EQ_INT(t, hsc_farm_free_slots(f), size - 1);
  T_EQ_INT(t, hsc_farm_stop_requested(f), 0);
  hsc_farm_stats s;
  hsc_farm_get_stats(f, &s);
  T_EQ_INT(t, s.dispatched, 40);
  T_EQ_INT(t, s.completed, 40);
  T_EQ_INT(t, s.redispatched, 0);
  T_EQ_INT(t, s.dead_workers, 0);
  T_NEAR(t, s.worker_eval_s, y->seconds, 1e-9);
  T_CHECK(t, s.worker_eval_s >= 40 * SLEEP_US * 1e-6);
  /* One worker's evaluations are disjoint and all fall within the busy span (1% for the two clocks). */
  T_CHECK(t, s.busy_span_s >= 0.99 * max_worker_secs);
  T_CHECK(t, s.master_busy_s >= 0.0 && s.master_busy_s <= hsc_now() - t0);
  hsc_farm_shutdown(f, HSC_OK);
  hsc_farm_free(f);
  free(y);
  case_end(&comm);
}

/* The collective step between two serve calls: every rank's rank + 1, summed. */
static void collective_step(hsc_test *t, MPI_Comm comm, int rank, int size) {
  int one = rank + 1, sum = 0;
  HSC_CHECK_MPI(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, comm));
  T_EQ_INT(t, sum, size * (size + 1) / 2);
}

/* Release with a task in flight (dropped), a collective step, serve again; release with tasks queued (kept),
 * a collective step, serve again; then a shutdown with HSC_ERR_STOPPED. */
static void t_release_and_serve_again(hsc_test *t) {
  int rank, size;
  MPI_Comm comm = case_begin(t, &rank, &size);
  if (size < 2 || size > MAX_RANKS) {
    HSC_CHECK_MPI(MPI_Comm_free(&comm));
    T_SKIP(t, "needs 2..%d ranks", MAX_RANKS);
  }
  if (rank > 0) {
    serve_expect(t, comm, HSC_FARM_RELEASED, HSC_OK);
    collective_step(t, comm, rank, size);
    serve_expect(t, comm, HSC_FARM_RELEASED, HSC_OK);
    collective_step(t, comm, rank, size);
    serve_expect(t, comm, HSC_FARM_DONE, HSC_ERR_STOPPED);
    case_end(&comm);
    return;
  }
  hsc_farm *f = hsc_farm_create(comm, 30.0, NULL, NULL);
  tally *y = hsc_xcalloc(1, sizeof *y);
  submit_range(f, 0, 10);
  drain(t, f, 4, 1, size - 1, y);
  check_ids(t, y, 0, 10, 1);
  /* Two tasks in flight; one wait returns one or both (task 51 is slow: nearly always one); the release
   * waits for the other and drops its result. */
  submit_range(f, 50, 2);
  hsc_task_result out[4];
  hsc_status st = HSC_ERR_IO;
  const int first = hsc_farm_wait(f, out, 4, &st);
  T_EQ_INT(t, st, HSC_OK);
  T_CHECK(t, first >= 1 && first <= 2);
  for (int i = 0; i < first; i++) check_result(t, &out[i], 1, size - 1, y);
  hsc_farm_release(f);
  T_EQ_INT(t, hsc_farm_pending(f), 0);
  T_EQ_INT(t, hsc_farm_free_slots(f), size - 1); /* no task left in flight */
  hsc_farm_stats s;
  hsc_farm_get_stats(f, &s);
  T_EQ_INT(t, s.dispatched, 12);
  T_EQ_INT(t, s.completed, 10 + first);
  collective_step(t, comm, rank, size);
  /* Queued before a release, sent after it. */
  submit_range(f, 60, 3);
  hsc_farm_release(f);
  T_EQ_INT(t, hsc_farm_pending(f), 3);
  collective_step(t, comm, rank, size);
  submit_range(f, 100, 10);
  T_EQ_INT(t, hsc_farm_pending(f), 13);
  drain(t, f, 2, 1, size - 1, y);
  check_ids(t, y, 60, 3, 1);
  check_ids(t, y, 100, 10, 1);
  /* The dropped task never came back. */
  T_EQ_INT(t, y->count[50] + y->count[51], first);
  T_EQ_INT(t, y->n, 10 + first + 13);
  hsc_farm_get_stats(f, &s);
  T_EQ_INT(t, s.dispatched, 25);
  T_EQ_INT(t, s.completed, 23 + first);
  T_EQ_INT(t, s.redispatched, 0);
  T_EQ_INT(t, s.dead_workers, 0);
  T_NEAR(t, s.worker_eval_s, y->seconds, 1e-9);
  hsc_farm_shutdown(f, HSC_ERR_STOPPED);
  hsc_farm_free(f);
  free(y);
  case_end(&comm);
}

/* Rank 0 alone: a farm on MPI_COMM_SELF evaluates one task per wait, in submission order. */
static void t_inline_one_rank(hsc_test *t) {
  int rank;
  HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  if (rank != 0) return;
  synth_ctx ctx = {.sleep_us = SLEEP_US};
  hsc_farm *f = hsc_farm_create(MPI_COMM_SELF, 0.5, synth_eval, &ctx);
  T_EQ_INT(t, hsc_farm_free_slots(f), 1);
  submit_range(f, 10, 5);
  T_EQ_INT(t, hsc_farm_pending(f), 5);
  T_EQ_INT(t, hsc_farm_free_slots(f), 0);
  tally *y = hsc_xcalloc(1, sizeof *y);
  double sum = 0.0;
  for (int i = 0; i < 5; i++) {
    hsc_task_result out[4];
    hsc_status st = HSC_ERR_IO;
    const int n = hsc_farm_wait(f, out, 4, &st);
    T_EQ_INT(t, st, HSC_OK);
    T_EQ_INT(t, n, 1);
    if (n != 1) break;
    T_EQ_INT(t, out[0].id, 10 + i);
    check_result(t, &out[0], 0, 0, y);
    sum += out[0].seconds;
    T_EQ_INT(t, hsc_farm_pending(f), 4 - i);
  }
  check_ids(t, y, 10, 5, 1);
  hsc_task_result out[1];
  hsc_status st = HSC_ERR_IO;
  T_EQ_INT(t, hsc_farm_wait(f, out, 1, &st), 0);
  T_EQ_INT(t, st, HSC_OK);
  T_EQ_INT(t, hsc_farm_free_slots(f), 1);
  /* Cancelled tasks are never evaluated. */
  submit_range(f, 20, 2);
  T_EQ_INT(t, hsc_farm_free_slots(f), 0);
  hsc_farm_cancel(f);
  T_EQ_INT(t, hsc_farm_pending(f), 0);
  T_EQ_INT(t, hsc_farm_wait(f, out, 1, &st), 0);
  hsc_farm_stats s;
  hsc_farm_get_stats(f, &s);
  T_EQ_INT(t, s.dispatched, 5);
  T_EQ_INT(t, s.completed, 5);
  T_EQ_INT(t, s.redispatched, 0);
  T_EQ_INT(t, s.dead_workers, 0);
  T_NEAR(t, s.worker_eval_s, sum, 1e-12);
  /* The evaluations ran inside hsc_farm_wait, while tasks were queued. (master_busy_s is CPU time: the
   * synthetic evaluation sleeps, so it need not cover them.) */
  T_CHECK(t, s.master_busy_s >= 0.0 && s.idle_cpu_s <= s.master_busy_s + 1e-9);
  T_CHECK(t, s.busy_span_s >= s.worker_eval_s);
  hsc_farm_shutdown(f, HSC_OK);
  hsc_farm_free(f);
  free(y);
}

/* Worker 1 sleeps 3 s before its first task; after the timeout it is abandoned and that task goes to the
 * front of the queue, for the next free worker. With 3 ranks, worker 2 then hangs 2 s before its 11th task:
 * with every worker abandoned, hsc_farm_wait fails with HSC_ERR_DEVICE. The shutdown reaches the hung
 * workers when they wake. (The hook's variables are per process: each worker names itself.) */
static void t_timeout_redispatch(hsc_test *t) {
  int rank, size;
  MPI_Comm comm = case_begin(t, &rank, &size);
  if (size < 3 || size > MAX_RANKS) {
    HSC_CHECK_MPI(MPI_Comm_free(&comm));
    T_SKIP(t, "needs 3..%d ranks", MAX_RANKS);
  }
  const int all_hang = size == 3;
  /* Read by hsc_farm_serve when it starts. */
  int env = 0;
  if (rank == 2 && all_hang)
    env = setenv("HSC_TEST_HANG_RANK", "2", 1) | setenv("HSC_TEST_HANG_AFTER", "10", 1) |
          setenv("HSC_TEST_HANG_S", "2", 1);
  else
    env = setenv("HSC_TEST_HANG_RANK", "1", 1) | setenv("HSC_TEST_HANG_S", "3", 1);
  T_CHECK(t, env == 0);
  if (rank > 0) {
    serve_expect(t, comm, HSC_FARM_DONE, HSC_OK);
  } else {
    hsc_farm *f = hsc_farm_create(comm, hang_timeout_s, NULL, NULL);
    tally *y = hsc_xcalloc(1, sizeof *y);
    submit_range(f, HANG_FIRST, HANG_NTASKS);
    drain(t, f, 4, 2, size - 1, y); /* never worker 1 */
    check_ids(t, y, HANG_FIRST, HANG_NTASKS, 1);
    T_EQ_INT(t, y->by_worker[1], 0);
    hsc_farm_stats s;
    hsc_farm_get_stats(f, &s);
    T_EQ_INT(t, s.completed, HANG_NTASKS);
    T_EQ_INT(t, s.dispatched, HANG_NTASKS + 1);
    T_EQ_INT(t, s.redispatched, 1);
    T_EQ_INT(t, s.dead_workers, 1);
    T_NEAR(t, s.worker_eval_s, y->seconds, 1e-9);
    T_EQ_INT(t, hsc_farm_free_slots(f), size - 2);
    if (all_hang) {
      /* Worker 2 alone, in queue order: 151, then 152 (during which 150 is re-queued), then 150 ahead of
       * the rest. */
      static const int64_t want[HANG_NTASKS] = {151, 152, 150, 153, 154, 155, 156, 157, 158, 159};
      T_EQ_INT(t, y->by_worker[2], HANG_NTASKS);
      for (int i = 0; i < HANG_NTASKS && i < y->n; i++)
        if (y->order[i] != want[i])
          T_FAIL(t, "result %d was task %lld, not %lld", i, (long long)y->order[i], (long long)want[i]);
      hsc_task task;
      make_task(200, &task);
      hsc_farm_submit(f, &task);
      hsc_task_result out[4];
      hsc_status st = HSC_OK;
      T_EQ_INT(t, hsc_farm_wait(f, out, 4, &st), 0);
      T_EQ_INT(t, st, HSC_ERR_DEVICE);
      T_EQ_INT(t, hsc_farm_pending(f), 1); /* back in the queue */
      T_EQ_INT(t, hsc_farm_free_slots(f), 0);
      hsc_farm_get_stats(f, &s);
      T_EQ_INT(t, s.dispatched, HANG_NTASKS + 2);
      T_EQ_INT(t, s.completed, HANG_NTASKS);
      T_EQ_INT(t, s.redispatched, 1);
      T_EQ_INT(t, s.dead_workers, 2);
    }
    hsc_farm_shutdown(f, HSC_OK);
    hsc_farm_get_stats(f, &s);
    T_EQ_INT(t, s.dead_workers, all_hang ? 2 : 1);
    hsc_farm_free(f);
    free(y);
  }
  unsetenv("HSC_TEST_HANG_RANK");
  unsetenv("HSC_TEST_HANG_AFTER");
  unsetenv("HSC_TEST_HANG_S");
  case_end(&comm);
}

/* The last worker holds a signal: while idle it tells the master, which then reports a stop request.
 * Last case: the signal stays pending in that process. */
static void t_stop_notice(hsc_test *t) {
  int rank, size;
  MPI_Comm comm = case_begin(t, &rank, &size);
  if (size < 2 || size > MAX_RANKS) {
    HSC_CHECK_MPI(MPI_Comm_free(&comm));
    T_SKIP(t, "needs 2..%d ranks", MAX_RANKS);
  }
  if (rank == size - 1) {
    hsc_signals_install();
    T_CHECK(t, raise(SIGUSR1) == 0);
    T_CHECK(t, hsc_signals_pending() == SIGUSR1);
  }
  if (rank > 0) {
    serve_expect(t, comm, HSC_FARM_DONE, HSC_ERR_STOPPED);
    case_end(&comm);
    return;
  }
  hsc_farm *f = hsc_farm_create(comm, 30.0, NULL, NULL);
  T_EQ_INT(t, hsc_farm_stop_requested(f), 0);
  /* Nothing pending: each wait only takes what has arrived. */
  const double t0 = hsc_now();
  while (!hsc_farm_stop_requested(f) && hsc_now() - t0 < 10.0) {
    hsc_task_result out[1];
    hsc_status st = HSC_ERR_IO;
    T_EQ_INT(t, hsc_farm_wait(f, out, 1, &st), 0);
    T_EQ_INT(t, st, HSC_OK);
    nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
  }
  T_EQ_INT(t, hsc_farm_stop_requested(f), 1);
  /* The farm keeps working; the caller decides when to stop. */
  tally *y = hsc_xcalloc(1, sizeof *y);
  submit_range(f, 0, 4);
  drain(t, f, 4, 1, size - 1, y);
  check_ids(t, y, 0, 4, 1);
  hsc_farm_shutdown(f, HSC_ERR_STOPPED);
  hsc_farm_free(f);
  free(y);
  case_end(&comm);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv);
  /* The hang case runs late (its hung worker wakes seconds later) and the signal case last (the signal
   * stays pending). */
  static const hsc_test_case cases[] = {
      {"forty_tasks_each_once_on_every_worker", t_forty_tasks},
      {"release_then_serve_again_then_shutdown", t_release_and_serve_again},
      {"one_rank_evaluates_inline", t_inline_one_rank},
      {"hung_workers_abandoned_tasks_redispatched", t_timeout_redispatch},
      {"idle_worker_signal_reaches_master", t_stop_notice},
  };
  int rc = hsc_test_main("test_farm", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
