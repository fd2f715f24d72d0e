/* The master/worker task farm (farm.h, DESIGN.md §2).
 *
 * Protocol. Two tags of the caller's communicator belong to the farm (the caller must not use them):
 *   FARM_TAG_CMD    master -> worker  farm_cmd:   TASK (id + architecture), RELEASE, SHUTDOWN (+ status)
 *   FARM_TAG_REPLY  worker -> master  farm_reply: RESULT (id, accuracies, loss, images, seconds, stop
 *                                                 flag), NOTICE (an idle worker holds a signal), BYE (the
 *                                                 answer to SHUTDOWN)
 * Both are fixed-size structs without hidden padding, sent as MPI_BYTE (the ranks of one job share an ABI).
 *
 * The master keeps exactly one receive posted, from MPI_ANY_SOURCE on FARM_TAG_REPLY, from hsc_farm_create
 * to the end of hsc_farm_shutdown (or hsc_farm_free): results are taken in the order they arrived and
 * matched to their worker by the status's MPI_SOURCE. Late answers of abandoned workers are received like
 * any other and dropped. Every command carries the farm's key (a per-farm random-enough value) and the
 * dispatch's serial number, which the worker echoes: a RESULT is accepted only from a live worker that has
 * exactly that dispatch in flight, so a reply left over from an earlier farm on the same communicator, or
 * from before a release, can never be taken for a current one. NOTICE and the stop flag only ever set the
 * (sticky) stop request, so a stale notice is harmless: a signal, once received, stays pending.
 *
 * Timeouts: a live worker whose task has been in flight for more than timeout_s is abandoned (never sent a
 * task again) and its task goes to the front of the queue, for the next free live worker.
 *
 * Release: the master marks in-flight tasks as dropped, waits (sleeping, timeouts still apply) until no live
 * worker has one, then sends RELEASE to every worker, abandoned ones too (one that was merely slow then
 * leaves hsc_farm_serve and can join the caller's collective step; one that is really hung blocks that step
 * either way). Queued tasks stay queued. The master's receive stays posted across the release.
 *
 * Shutdown: queued tasks are dropped, SHUTDOWN (with the status) goes to every worker, and the master waits
 * for the BYE of every live worker (a live worker sends its last result, if it had a task, before its BYE,
 * and every message of one sender on one tag arrives in order), so nothing a live worker sent is left
 * unmatched at MPI_Finalize. Abandoned workers are not waited for. Then the sends are completed and the
 * posted receive is cancelled.
 *
 * Waiting never spins: MPI_Test, then nanosleep growing from 20 us to 1 ms, back to 20 us after progress. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsconas/farm.h"
#include "hsconas/signals.h"

enum { FARM_TAG_CMD = 30571, FARM_TAG_REPLY = 30572 };
enum { NAP_MIN_NS = 20 * 1000, NAP_MAX_NS = 1000 * 1000 };

typedef enum { FARM_CMD_TASK = 1, FARM_CMD_RELEASE = 2, FARM_CMD_SHUTDOWN = 3 } farm_cmd_kind;
typedef enum { FARM_REPLY_RESULT = 1, FARM_REPLY_NOTICE = 2, FARM_REPLY_BYE = 3 } farm_reply_kind;

typedef struct {
  uint64_t key;   /* the farm's identity, echoed in the reply */
  int64_t serial; /* the dispatch's number within the farm, echoed in the reply */
  int64_t id;
  int32_t cmd;    /* farm_cmd_kind */
  int32_t status; /* SHUTDOWN: the master's hsc_status */
  int32_t nblocks;
  uint8_t op[HSC_MAX_BLOCKS];
  uint8_t scale[HSC_MAX_BLOCKS];
  uint8_t pad[4];
} farm_cmd;
_Static_assert(sizeof(farm_cmd) == 3 * 8 + 3 * 4 + 2 * HSC_MAX_BLOCKS + 4, "farm_cmd has no hidden padding");
_Static_assert(sizeof(((hsc_arch *)0)->op) == HSC_MAX_BLOCKS &&
                   sizeof(((hsc_arch *)0)->scale) == HSC_MAX_BLOCKS,
               "farm_cmd carries a whole hsc_arch");

typedef struct {
  uint64_t key;
  int64_t serial;
  int64_t id;
  double top1, top5, loss;
  double seconds; /* wall time of the evaluator, measured by the worker */
  int32_t kind;   /* farm_reply_kind */
  int32_t images;
  int32_t stop; /* the worker holds a pending signal */
  int32_t pad;
} farm_reply;
_Static_assert(sizeof(farm_reply) == 7 * 8 + 4 * 4, "farm_reply has no hidden padding");

/* ---- sleeping waits ---- */

/* Sleeps about ns nanoseconds (less when a signal interrupts). */
static void nap(long ns) {
  const struct timespec ts = {.tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L};
  if (nanosleep(&ts, NULL) != 0 && errno != EINTR) hsc_fatal("nanosleep failed: %s", strerror(errno));
}

/* One sleep of a waiting loop; the next one lasts twice as long (up to NAP_MAX_NS). */
static void nap_grow(long *ns) {
  nap(*ns);
  *ns = *ns * 2 > NAP_MAX_NS ? NAP_MAX_NS : *ns * 2;
}

/* Completes *req (a no-op for MPI_REQUEST_NULL) by testing and sleeping. */
static void complete(MPI_Request *req, MPI_Status *status) {
  long ns = NAP_MIN_NS;
  for (;;) {
    int done = 0;
    HSC_CHECK_MPI(MPI_Test(req, &done, status ? status : MPI_STATUS_IGNORE));
    if (done) return;
    nap_grow(&ns);
  }
}

/* ---- the master's FIFO of tasks (a ring that grows) ---- */

typedef struct {
  hsc_task task;
  int resend; /* re-queued after a timeout: its next dispatch counts as a re-dispatch */
} farm_entry;

typedef struct {
  farm_entry *e;
  int cap, head, len;
} farm_queue;

static void queue_grow(farm_queue *q) {
  if (q->len < q->cap) return;
  const int cap = q->cap ? 2 * q->cap : 16;
  farm_entry *e = hsc_xcalloc((size_t)cap, sizeof *e);
  for (int i = 0; i < q->len; i++) e[i] = q->e[(q->head + i) % q->cap];
  free(q->e);
  q->e = e;
  q->cap = cap;
  q->head = 0;
}

static void queue_push_back(farm_queue *q, const farm_entry *x) {
  queue_grow(q);
  q->e[(q->head + q->len) % q->cap] = *x;
  q->len++;
}

static void queue_push_front(farm_queue *q, const farm_entry *x) {
  queue_grow(q);
  q->head = (q->head + q->cap - 1) % q->cap;
  q->e[q->head] = *x;
  q->len++;
}

static farm_entry queue_pop(farm_queue *q) {
  assert(q->len > 0);
  const farm_entry x = q->e[q->head];
  q->head = (q->head + 1) % q->cap;
  q->len--;
  return x;
}

/* ---- the master ---- */

typedef struct {
  int dead;       /* abandoned after a timeout: never sent a task again */
  int busy;       /* a task is in flight (live workers only) */
  int dropped;    /* the in-flight task's result is not returned (cancel, release, shutdown) */
  int bye;        /* answered SHUTDOWN */
  int64_t serial; /* of the in-flight dispatch */
  double sent_at;
  farm_entry entry; /* the in-flight task (re-queued on timeout) */
  farm_cmd tx;      /* the last command sent; in use until sreq completes */
  MPI_Request sreq;
} farm_worker;

struct hsc_farm {
  MPI_Comm comm;
  int size;
  double timeout_s; /* <= 0: no timeout */
  hsc_eval_fn fn;
  void *ctx;
  uint64_t key;
  int64_t next_serial;
  farm_worker *w; /* [size]; w[0] unused */
  farm_queue q;
  MPI_Request rreq; /* the posted receive of replies, from any worker */
  farm_reply rx;    /* its buffer */
  int stop;         /* a worker reported a pending signal, or the master saw one */
  int shut;
  hsc_farm_stats st;
  double span_since; /* start of the current busy span; < 0 when nothing is queued or in flight */
};

/* The master thread's CPU time inside a public call goes to master_busy_s (sleeping costs none). */
typedef struct {
  double cpu0;
} farm_call;

static int live_busy(const hsc_farm *f) {
  int n = 0;
  for (int r = 1; r < f->size; r++) n += !f->w[r].dead && f->w[r].busy;
  return n;
}

static void span_update(hsc_farm *f) {
  const int active = f->q.len > 0 || live_busy(f) > 0;
  if (active && f->span_since < 0) {
    f->span_since = hsc_now();
  } else if (!active && f->span_since >= 0) {
    f->st.busy_span_s += hsc_now() - f->span_since;
    f->span_since = -1.0;
  }
}

static farm_call call_begin(hsc_farm *f) {
  if (hsc_signals_pending()) f->stop = 1;
  return (farm_call){.cpu0 = hsc_thread_cpu()};
}

static void call_end(hsc_farm *f, farm_call c) {
  span_update(f);
  f->st.master_busy_s += hsc_thread_cpu() - c.cpu0;
}

/* Sends a command to worker r, after completing the previous send to it (whose buffer is reused). */
static void send_cmd(hsc_farm *f, int r, farm_cmd_kind kind, hsc_status status) {
  farm_worker *w = &f->w[r];
  complete(&w->sreq, NULL);
  memset(&w->tx, 0, sizeof w->tx);
  w->tx.key = f->key;
  w->tx.cmd = kind;
  w->tx.status = (int32_t)status;
  if (kind == FARM_CMD_TASK) {
    const hsc_task *t = &w->entry.task;
    w->tx.serial = w->serial;
    w->tx.id = t->id;
    w->tx.nblocks = t->arch.nblocks;
    memcpy(w->tx.op, t->arch.op, sizeof w->tx.op);
    memcpy(w->tx.scale, t->arch.scale, sizeof w->tx.scale);
  }
  HSC_CHECK_MPI(MPI_Isend(&w->tx, (int)sizeof w->tx, MPI_BYTE, r, FARM_TAG_CMD, f->comm, &w->sreq));
}

/* Each free live worker gets the next queued task. Returns the number sent. */
static int dispatch(hsc_farm *f) {
  int sent = 0;
  for (int r = 1; r < f->size && f->q.len > 0; r++) {
    farm_worker *w = &f->w[r];
    if (w->dead || w->busy) continue;
    w->entry = queue_pop(&f->q);
    w->busy = 1;
    w->dropped = 0;
    w->serial = ++f->next_serial;
    send_cmd(f, r, FARM_CMD_TASK, HSC_OK);
    w->sent_at = hsc_now();
    f->st.dispatched++;
    if (w->entry.resend) f->st.redispatched++;
    sent++;
  }
  return sent;
}

/* One reply from rank src (count bytes): results go to out[*n] unless dropped. */
static void take_reply(hsc_farm *f, int src, int count, const farm_reply *m, hsc_task_result *out, int *n) {
  if (src < 1 || src >= f->size || count != (int)sizeof *m) {
    hsc_log(HSC_LOG_WARN, "farm: dropped a reply of %d bytes from rank %d (expected %zu bytes from 1..%d)",
            count, src, sizeof *m, f->size - 1);
    return;
  }
  farm_worker *w = &f->w[src];
  if (m->stop) f->stop = 1;
  switch (m->kind) {
    case FARM_REPLY_NOTICE:
      f->stop = 1;
      return;
    case FARM_REPLY_BYE:
      if (m->key == f->key) w->bye = 1;
      return;
    case FARM_REPLY_RESULT:
      break;
    default:
      hsc_log(HSC_LOG_WARN, "farm: dropped a reply of unknown kind %d from rank %d", (int)m->kind, src);
      return;
  }
  if (w->dead) {
    hsc_log(HSC_LOG_DEBUG, "farm: dropped the late result of task %lld from abandoned worker %d",
            (long long)m->id, src);
    return;
  }
  if (!w->busy || m->key != f->key || m->serial != w->serial) {
    hsc_log(HSC_LOG_WARN, "farm: dropped a stale result (task %lld) from worker %d", (long long)m->id, src);
    return;
  }
  w->busy = 0;
  if (w->dropped) return;
  assert(out && n);
  hsc_task_result *r = &out[(*n)++];
  *r = (hsc_task_result){.id = w->entry.task.id,
                         .top1 = m->top1,
                         .top5 = m->top5,
                         .loss = m->loss,
                         .images = m->images,
                         .seconds = m->seconds,
                         .worker = src};
  f->st.completed++;
  f->st.worker_eval_s += m->seconds;
}

/* Takes every reply that has arrived, without waiting; with out, stops when max results are in out. With
 * out NULL every in-flight task must be marked dropped. Returns the number of replies taken. */
static int poll_replies(hsc_farm *f, hsc_task_result *out, int max, int *n) {
  int taken = 0;
  while (!out || *n < max) {
    int done = 0, count = 0;
    MPI_Status s;
    HSC_CHECK_MPI(MPI_Test(&f->rreq, &done, &s));
    if (!done) break;
    taken++;
    HSC_CHECK_MPI(MPI_Get_count(&s, MPI_BYTE, &count));
    const farm_reply m = f->rx;
    HSC_CHECK_MPI(
        MPI_Irecv(&f->rx, (int)sizeof f->rx, MPI_BYTE, MPI_ANY_SOURCE, FARM_TAG_REPLY, f->comm, &f->rreq));
    take_reply(f, s.MPI_SOURCE, count, &m, out, n);
  }
  return taken;
}

/* Abandons live workers whose task has been in flight longer than the timeout; their tasks (unless
 * dropped) go to the front of the queue, the earliest-sent first. Returns the number abandoned. */
static int check_timeouts(hsc_farm *f) {
  if (!(f->timeout_s > 0)) return 0;
  const double now = hsc_now();
  int n = 0;
  for (;;) {
    /* Latest dispatch first, so that the pushes to the front leave them in dispatch order. */
    int pick = 0;
    for (int r = 1; r < f->size; r++) {
      const farm_worker *w = &f->w[r];
      if (!w->dead && w->busy && now - w->sent_at > f->timeout_s && (!pick || w->serial > f->w[pick].serial))
        pick = r;
    }
    if (!pick) return n;
    farm_worker *w = &f->w[pick];
    w->dead = 1;
    w->busy = 0;
    f->st.dead_workers++;
    n++;
    hsc_log(HSC_LOG_WARN, "farm: worker %d has not answered task %lld for %.3g s (timeout %g s); abandoned%s",
            pick, (long long)w->entry.task.id, now - w->sent_at, f->timeout_s,
            w->dropped ? "" : ", the task goes to another worker");
    if (!w->dropped) {
      farm_entry e = w->entry;
      e.resend = 1;
      queue_push_front(&f->q, &e);
    }
  }
}

static int live_workers(const hsc_farm *f) {
  int n = 0;
  for (int r = 1; r < f->size; r++) n += !f->w[r].dead;
  return n;
}

static void drop_in_flight(hsc_farm *f) {
  for (int r = 1; r < f->size; r++)
    if (f->w[r].busy) f->w[r].dropped = 1;
}

hsc_farm *hsc_farm_create(MPI_Comm comm, double timeout_s, hsc_eval_fn fn, void *ctx) {
  int rank = 0, size = 0;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  HSC_CHECK_MPI(MPI_Comm_size(comm, &size));
  assert(rank == 0);
  assert(size > 1 || fn);
  hsc_farm *f = hsc_xcalloc(1, sizeof *f);
  f->comm = comm;
  f->size = size;
  f->timeout_s = timeout_s;
  f->fn = fn;
  f->ctx = ctx;
  /* Distinct for every farm of this process (the clock in ns, mixed with the object's address). */
  f->key = (uint64_t)(hsc_now() * 1e9) ^ ((uint64_t)(uintptr_t)f * 0x9E3779B97F4A7C15ULL);
  f->span_since = -1.0;
  f->w = hsc_xcalloc((size_t)size, sizeof *f->w);
  for (int r = 0; r < size; r++) f->w[r].sreq = MPI_REQUEST_NULL;
  f->rreq = MPI_REQUEST_NULL;
  if (size > 1)
    HSC_CHECK_MPI(
        MPI_Irecv(&f->rx, (int)sizeof f->rx, MPI_BYTE, MPI_ANY_SOURCE, FARM_TAG_REPLY, comm, &f->rreq));
  return f;
}

/* Cancels the posted receive and completes the sends; what a cancelled receive got anyway is dropped. */
static void release_requests(hsc_farm *f) {
  if (f->rreq != MPI_REQUEST_NULL) {
    HSC_CHECK_MPI(MPI_Cancel(&f->rreq));
    MPI_Status s;
    complete(&f->rreq, &s);
    int cancelled = 0;
    HSC_CHECK_MPI(MPI_Test_cancelled(&s, &cancelled));
    if (!cancelled) {
      int count = 0, n = 0;
      HSC_CHECK_MPI(MPI_Get_count(&s, MPI_BYTE, &count));
      drop_in_flight(f);
      take_reply(f, s.MPI_SOURCE, count, &f->rx, NULL, &n);
    }
  }
  for (int r = 1; r < f->size; r++) complete(&f->w[r].sreq, NULL);
}

void hsc_farm_free(hsc_farm *f) {
  if (!f) return;
  if (f->size > 1) release_requests(f);
  free(f->q.e);
  free(f->w);
  free(f);
}

void hsc_farm_submit(hsc_farm *f, const hsc_task *t) {
  assert(f && !f->shut && t && t->arch.nblocks >= 0 && t->arch.nblocks <= HSC_MAX_BLOCKS);
  const farm_call c = call_begin(f);
  const farm_entry e = {.task = *t, .resend = 0};
  queue_push_back(&f->q, &e);
  call_end(f, c);
}

int hsc_farm_free_slots(const hsc_farm *f) {
  int free_workers = 1;
  if (f->size > 1) {
    free_workers = 0;
    for (int r = 1; r < f->size; r++) free_workers += !f->w[r].dead && !f->w[r].busy;
  }
  return free_workers > f->q.len ? free_workers - f->q.len : 0;
}

int hsc_farm_pending(const hsc_farm *f) {
  int n = f->q.len;
  for (int r = 1; r < f->size; r++) n += !f->w[r].dead && f->w[r].busy && !f->w[r].dropped;
  return n;
}

/* One rank: the master evaluates the next queued task itself. */
static void eval_inline(hsc_farm *f, hsc_task_result *r) {
  const farm_entry e = queue_pop(&f->q);
  *r = (hsc_task_result){.id = e.task.id, .worker = 0};
  const double t0 = hsc_now();
  f->fn(f->ctx, &e.task, r);
  const double seconds = hsc_now() - t0;
  r->id = e.task.id;
  r->worker = 0;
  r->seconds = seconds;
  f->st.dispatched++;
  f->st.completed++;
  f->st.worker_eval_s += seconds;
}

int hsc_farm_wait(hsc_farm *f, hsc_task_result *out, int max, hsc_status *st) {
  assert(f && !f->shut && out && max >= 1 && st);
  const farm_call c = call_begin(f);
  *st = HSC_OK;
  int n = 0;
  if (f->size == 1) {
    span_update(f); /* the span covers the inline evaluation */
    if (f->q.len > 0) {
      eval_inline(f, &out[0]);
      n = 1;
    }
  } else {
    long ns = NAP_MIN_NS;
    for (;;) {
      const double cpu0 = hsc_thread_cpu();
      int progress = dispatch(f);
      progress += poll_replies(f, out, max, &n);
      progress += check_timeouts(f);
      progress += dispatch(f);
      span_update(f);
      if (n > 0 || hsc_farm_pending(f) == 0) break;
      if (live_workers(f) == 0) {
        *st = HSC_ERR_DEVICE;
        break;
      }
      if (hsc_signals_pending()) f->stop = 1;
      if (progress) {
        ns = NAP_MIN_NS;
      } else {
        nap_grow(&ns); /* the nap's system call and wake-up cost CPU too */
        f->st.idle_cpu_s += hsc_thread_cpu() - cpu0;
      }
    }
  }
  call_end(f, c);
  return n;
}

int hsc_farm_stop_requested(const hsc_farm *f) { return f->stop || hsc_signals_pending() != 0; }

void hsc_farm_cancel(hsc_farm *f) {
  assert(f && !f->shut);
  const farm_call c = call_begin(f);
  f->q.len = 0;
  f->q.head = 0;
  drop_in_flight(f);
  call_end(f, c);
}

void hsc_farm_release(hsc_farm *f) {
  assert(f && !f->shut);
  const farm_call c = call_begin(f);
  if (f->size > 1) {
    drop_in_flight(f);
    long ns = NAP_MIN_NS;
    int none = 0;
    while (live_busy(f) > 0) {
      const int progress = poll_replies(f, NULL, 0, &none) + check_timeouts(f);
      span_update(f);
      if (live_busy(f) == 0) break;
      if (progress)
        ns = NAP_MIN_NS;
      else
        nap_grow(&ns);
    }
    for (int r = 1; r < f->size; r++) send_cmd(f, r, FARM_CMD_RELEASE, HSC_OK);
  }
  call_end(f, c);
}

void hsc_farm_shutdown(hsc_farm *f, hsc_status status) {
  assert(f && !f->shut);
  const farm_call c = call_begin(f);
  f->q.len = 0;
  f->q.head = 0;
  if (f->size > 1) {
    drop_in_flight(f);
    for (int r = 1; r < f->size; r++) {
      f->w[r].bye = 0;
      send_cmd(f, r, FARM_CMD_SHUTDOWN, status);
    }
    /* Wait for every live worker's BYE; one that does not answer in time (counted from its task's dispatch,
     * or from now when idle) is abandoned like a timed-out worker. */
    const double t0 = hsc_now();
    long ns = NAP_MIN_NS;
    int none = 0;
    for (;;) {
      const int progress = poll_replies(f, NULL, 0, &none);
      const double now = hsc_now();
      int waiting = 0;
      for (int r = 1; r < f->size; r++) {
        farm_worker *w = &f->w[r];
        if (w->dead || w->bye) continue;
        const double since = w->busy ? w->sent_at : t0;
        if (f->timeout_s > 0 && now - since > f->timeout_s) {
          hsc_log(HSC_LOG_WARN, "farm: worker %d did not answer the shutdown within %g s; abandoned", r,
                  f->timeout_s);
          w->dead = 1;
          w->busy = 0;
          f->st.dead_workers++;
        } else {
          waiting++;
        }
      }
      span_update(f);
      if (!waiting) break;
      if (progress)
        ns = NAP_MIN_NS;
      else
        nap_grow(&ns);
    }
    release_requests(f);
  }
  f->shut = 1;
  call_end(f, c);
}

void hsc_farm_get_stats(const hsc_farm *f, hsc_farm_stats *s) {
  *s = f->st;
  if (f->span_since >= 0) s->busy_span_s += hsc_now() - f->span_since;
}

/* ---- the worker ---- */

/* The test hook (farm.h): which task of this serve call to hang before, and for how long. */
typedef struct {
  long after;   /* hang before the (after + 1)-th task; < 0: never */
  long seconds; /* how long */
} farm_hang;

/* A non-negative integer from the environment; def when unset, empty or malformed (with a warning). */
static long env_long(const char *name, long def) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  char *end = NULL;
  errno = 0;
  const long x = strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < 0) {
    hsc_log(HSC_LOG_WARN, "ignoring %s='%s': expected a non-negative integer", name, v);
    return def;
  }
  return x;
}

static farm_hang hang_read(int rank) {
  farm_hang h = {.after = -1, .seconds = 0};
  if (env_long("HSC_TEST_HANG_RANK", -1) != rank) return h;
  h.after = env_long("HSC_TEST_HANG_AFTER", 0);
  h.seconds = env_long("HSC_TEST_HANG_S", 30);
  return h;
}

/* Sleeps the whole `seconds`, through signals. */
static void sleep_through(long seconds) {
  struct timespec left = {.tv_sec = seconds, .tv_nsec = 0};
  while (nanosleep(&left, &left) != 0)
    if (errno != EINTR) hsc_fatal("nanosleep failed: %s", strerror(errno));
}

static void send_reply(MPI_Comm comm, const farm_reply *m) {
  MPI_Request req;
  HSC_CHECK_MPI(MPI_Isend(m, (int)sizeof *m, MPI_BYTE, 0, FARM_TAG_REPLY, comm, &req));
  complete(&req, NULL);
}

hsc_farm_exit hsc_farm_serve(MPI_Comm comm, hsc_eval_fn fn, void *ctx, hsc_status *status) {
  int rank = 0;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  assert(rank > 0 && fn && status);
  *status = HSC_OK;
  const farm_hang hang = hang_read(rank);
  long ntasks = 0;
  int noticed = 0;  /* this serve call has told the master about a pending signal */
  uint64_t key = 0; /* of the farm that last sent a command (0: none yet) */
  for (;;) {
    farm_cmd cmd;
    MPI_Request req;
    MPI_Status s;
    HSC_CHECK_MPI(MPI_Irecv(&cmd, (int)sizeof cmd, MPI_BYTE, 0, FARM_TAG_CMD, comm, &req));
    long ns = NAP_MIN_NS;
    for (;;) {
      int done = 0;
      HSC_CHECK_MPI(MPI_Test(&req, &done, &s));
      if (done) break;
      if (!noticed && hsc_signals_pending()) {
        send_reply(comm, &(farm_reply){.key = key, .kind = FARM_REPLY_NOTICE, .stop = 1});
        noticed = 1;
        ns = NAP_MIN_NS;
        continue;
      }
      nap_grow(&ns);
    }
    int count = 0;
    HSC_CHECK_MPI(MPI_Get_count(&s, MPI_BYTE, &count));
    if (count != (int)sizeof cmd) hsc_fatal("farm: a command of %d bytes (expected %zu)", count, sizeof cmd);
    key = cmd.key;
    switch (cmd.cmd) {
      case FARM_CMD_TASK:
        break;
      case FARM_CMD_RELEASE:
        return HSC_FARM_RELEASED;
      case FARM_CMD_SHUTDOWN:
        if (cmd.status < 0 || cmd.status >= HSC_ERR_CODE_COUNT)
          hsc_fatal("farm: shutdown with unknown status %d", (int)cmd.status);
        *status = (hsc_status)cmd.status;
        send_reply(comm,
                   &(farm_reply){.key = key, .kind = FARM_REPLY_BYE, .stop = hsc_signals_pending() != 0});
        return HSC_FARM_DONE;
      default:
        hsc_fatal("farm: unknown command %d", (int)cmd.cmd);
    }
    if (cmd.nblocks < 0 || cmd.nblocks > HSC_MAX_BLOCKS)
      hsc_fatal("farm: task %lld with %d blocks", (long long)cmd.id, (int)cmd.nblocks);
    hsc_task t = {.id = cmd.id};
    t.arch.nblocks = cmd.nblocks;
    memcpy(t.arch.op, cmd.op, sizeof t.arch.op);
    memcpy(t.arch.scale, cmd.scale, sizeof t.arch.scale);
    if (ntasks++ == hang.after) {
      hsc_log(HSC_LOG_WARN, "HSC_TEST_HANG_RANK: worker %d sleeps %ld s before task %lld", rank, hang.seconds,
              (long long)t.id);
      sleep_through(hang.seconds);
    }
    hsc_task_result r = {.id = t.id, .worker = rank};
    const double t0 = hsc_now();
    fn(ctx, &t, &r);
    const double seconds = hsc_now() - t0;
    const int stop = hsc_signals_pending() != 0;
    noticed |= stop;
    send_reply(comm, &(farm_reply){.key = cmd.key,
                                   .serial = cmd.serial,
                                   .id = t.id,
                                   .top1 = r.top1,
                                   .top5 = r.top5,
                                   .loss = r.loss,
                                   .seconds = seconds,
                                   .kind = FARM_REPLY_RESULT,
                                   .images = r.images,
                                   .stop = stop});
  }
}
