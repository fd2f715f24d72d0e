/* The training loader: epoch order, this rank's shard of each global batch, augmentation, and a prefetch
 * thread.
 *
 * A batch is a pure function of its cursor (epoch, batch) and the options, computed by one routine
 * (loader_produce) whichever thread runs it, so prefetching, seeking and the rank count never change a
 * value. With prefetch on, all batches are produced by the loader's own thread into one buffer and copied
 * out by hsc_loader_next; with it off, hsc_loader_next produces straight into the caller's arrays. Either
 * way exactly one thread produces, so the cached epoch permutation needs no lock.
 *
 * Prefetch handshake (all under `mu`):
 *   pending/req  a batch the thread should produce next (one slot; a newer request replaces it);
 *   busy/job     the thread is producing `job` into the buffer, without the lock;
 *   ready/at     the buffer holds batch `at` and the thread is idle with respect to it.
 * The caller reads the buffer only when ready, which implies not busy. A seek just retargets the request;
 * a batch in flight for an old position finishes and is never handed out (its cursor does not match). */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"

#define CHECK_PTHREAD(call)                                                     \
  do {                                                                          \
    int check_rc_ = (call);                                                     \
    if (check_rc_ != 0) hsc_fatal("%s failed: %s", #call, strerror(check_rc_)); \
  } while (0)

struct hsc_loader {
  hsc_loader_opts o;
  int64_t batches_per_epoch;
  int local;     /* rows of this rank: B / R */
  size_t sample; /* floats per sample: c * h * w */
  hsc_data_norm norm;
  hsc_data_cursor cursor; /* the caller's position; touched by the caller only */

  /* Producer state: the thread's when prefetching, else the caller's. */
  int32_t *order; /* [sub->n] positions of epoch order_epoch; NULL without shuffle */
  int64_t order_epoch;

  int threaded;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t work; /* the thread waits for a request or quit */
  pthread_cond_t done; /* the caller waits for a finished batch */
  float *buf_x;        /* [local, c, h, w] */
  int32_t *buf_y;      /* [local] */
  int pending, busy, ready, quit;
  hsc_data_cursor req, job, at;
};

static int same(hsc_data_cursor a, hsc_data_cursor b) { return a.epoch == b.epoch && a.batch == b.batch; }

/* x [local, c, h, w], y [local]: rows [rank * local, (rank + 1) * local) of global batch c.batch of epoch
 * c.epoch, i.e. epoch positions p = c.batch * B + rank * local + i. */
static void loader_produce(hsc_loader *l, hsc_data_cursor c, float *x, int32_t *y) {
  const hsc_loader_opts *o = &l->o;
  const int n = o->sub->n;
  if (o->shuffle && l->order_epoch != c.epoch) {
    hsc_rng_permute(l->order, n, o->seed, HSC_RNG_DATA, (uint64_t)c.epoch);
    l->order_epoch = c.epoch;
  }
  int64_t first = c.batch * o->global_batch + (int64_t)o->rank * l->local;
  for (int i = 0; i < l->local; i++) {
    int64_t p = first + i;
    int32_t s = o->sub->index[o->shuffle ? l->order[p] : p];
    hsc_data_aug aug;
    hsc_data_aug_draw(&o->transform, o->seed, c.epoch, n, p, &aug);
    hsc_data_write_sample(o->ds, s, &l->norm, o->transform.augment ? &aug : NULL, x + (size_t)i * l->sample);
    y[i] = o->ds->labels[s];
  }
}

static void *loader_thread(void *arg) {
  hsc_loader *l = arg;
  CHECK_PTHREAD(pthread_mutex_lock(&l->mu));
  for (;;) {
    while (!l->pending && !l->quit) CHECK_PTHREAD(pthread_cond_wait(&l->work, &l->mu));
    if (l->quit) break;
    l->job = l->req;
    l->pending = 0;
    l->busy = 1;
    l->ready = 0; /* the buffer is about to be overwritten */
    hsc_data_cursor job = l->job;
    CHECK_PTHREAD(pthread_mutex_unlock(&l->mu));
    loader_produce(l, job, l->buf_x, l->buf_y);
    CHECK_PTHREAD(pthread_mutex_lock(&l->mu));
    l->busy = 0;
    l->ready = 1;
    l->at = job;
    CHECK_PTHREAD(pthread_cond_broadcast(&l->done));
  }
  CHECK_PTHREAD(pthread_mutex_unlock(&l->mu));
  return NULL;
}

/* Under mu: make sure the batch at the cursor is in the buffer, in flight or requested. */
static void request_locked(hsc_loader *l) {
  if (l->ready && same(l->at, l->cursor)) return;
  if (l->busy && same(l->job, l->cursor)) return;
  l->pending = 1;
  l->req = l->cursor;
  CHECK_PTHREAD(pthread_cond_signal(&l->work));
}

hsc_loader *hsc_loader_create(const hsc_loader_opts *opts) {
  /* Invariants the caller's config validation guarantees (batch divisible by the ranks, a subset of at
   * least one batch). */
  assert(opts->ds && opts->sub && opts->ds->images && opts->ds->labels);
  assert(opts->nranks >= 1 && opts->rank >= 0 && opts->rank < opts->nranks);
  assert(opts->global_batch > 0 && opts->global_batch % opts->nranks == 0);
  assert(opts->sub->n >= opts->global_batch);
  assert(opts->ds->c >= 1 && opts->ds->c <= 4);
  hsc_loader *l = hsc_xcalloc(1, sizeof *l);
  l->o = *opts;
  l->batches_per_epoch = opts->sub->n / opts->global_batch;
  l->local = opts->global_batch / opts->nranks;
  l->sample = (size_t)opts->ds->c * (size_t)opts->ds->h * (size_t)opts->ds->w;
  hsc_data_norm_init(&l->norm, &opts->transform, opts->ds->c);
  l->order_epoch = -1;
  if (opts->shuffle) l->order = hsc_xmalloc((size_t)opts->sub->n * sizeof(int32_t));
  if (opts->prefetch) {
    l->threaded = 1;
    l->buf_x = hsc_xmalloc((size_t)l->local * l->sample * sizeof(float));
    l->buf_y = hsc_xmalloc((size_t)l->local * sizeof(int32_t));
    CHECK_PTHREAD(pthread_mutex_init(&l->mu, NULL));
    CHECK_PTHREAD(pthread_cond_init(&l->work, NULL));
    CHECK_PTHREAD(pthread_cond_init(&l->done, NULL));
    CHECK_PTHREAD(pthread_create(&l->thread, NULL, loader_thread, l));
    /* Start on batch {0, 0} right away: the caller is usually still building the model. */
    CHECK_PTHREAD(pthread_mutex_lock(&l->mu));
    request_locked(l);
    CHECK_PTHREAD(pthread_mutex_unlock(&l->mu));
  }
  return l;
}

void hsc_loader_free(hsc_loader *l) {
  if (!l) return;
  if (l->threaded) {
    /* A batch in flight is finished first (a few milliseconds), then the thread sees quit. */
    CHECK_PTHREAD(pthread_mutex_lock(&l->mu));
    l->quit = 1;
    CHECK_PTHREAD(pthread_cond_signal(&l->work));
    CHECK_PTHREAD(pthread_mutex_unlock(&l->mu));
    CHECK_PTHREAD(pthread_join(l->thread, NULL));
    CHECK_PTHREAD(pthread_cond_destroy(&l->done));
    CHECK_PTHREAD(pthread_cond_destroy(&l->work));
    CHECK_PTHREAD(pthread_mutex_destroy(&l->mu));
    free(l->buf_x);
    free(l->buf_y);
  }
  free(l->order);
  free(l);
}

int64_t hsc_loader_batches_per_epoch(const hsc_loader *l) { return l->batches_per_epoch; }

hsc_data_cursor hsc_loader_cursor(const hsc_loader *l) { return l->cursor; }

void hsc_loader_seek(hsc_loader *l, hsc_data_cursor c) {
  assert(c.epoch >= 0 && c.batch >= 0 && c.batch < l->batches_per_epoch);
  if (!l->threaded) {
    l->cursor = c;
    return;
  }
  CHECK_PTHREAD(pthread_mutex_lock(&l->mu));
  l->cursor = c;
  request_locked(l);
  CHECK_PTHREAD(pthread_mutex_unlock(&l->mu));
}

static hsc_data_cursor advance(const hsc_loader *l, hsc_data_cursor c) {
  if (++c.batch == l->batches_per_epoch) {
    c.epoch++;
    c.batch = 0;
  }
  return c;
}

void hsc_loader_next(hsc_loader *l, float *x, int32_t *y, hsc_data_cursor *at) {
  if (at) *at = l->cursor;
  if (!l->threaded) {
    loader_produce(l, l->cursor, x, y);
    l->cursor = advance(l, l->cursor);
    return;
  }
  CHECK_PTHREAD(pthread_mutex_lock(&l->mu));
  request_locked(l);
  while (!(l->ready && same(l->at, l->cursor))) CHECK_PTHREAD(pthread_cond_wait(&l->done, &l->mu));
  memcpy(x, l->buf_x, (size_t)l->local * l->sample * sizeof(float));
  memcpy(y, l->buf_y, (size_t)l->local * sizeof(int32_t));
  l->cursor = advance(l, l->cursor);
  request_locked(l); /* the next batch is prepared while the caller trains on this one */
  CHECK_PTHREAD(pthread_mutex_unlock(&l->mu));
}
