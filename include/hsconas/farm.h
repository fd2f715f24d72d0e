/* The master/worker task farm of the search (DESIGN.md §2).
 *
 * Rank 0 of a communicator is the master: it queues tasks (one candidate architecture each) and the farm
 * hands them to the other ranks, the workers, as soon as any is free (one task per worker at a time,
 * non-blocking receives from any worker). A task whose worker has not answered after `timeout_s` is sent
 * to another free worker and the slow worker is never used again (its late answer, if one comes, is
 * received and dropped). With one rank the master evaluates the tasks itself, one per hsc_farm_wait call,
 * through the same calls: no special build, no special path in the caller.
 *
 * Waiting never spins: the master and idle workers test their requests and sleep between tests
 * (nanosleep, growing from 20 us to 1 ms), so that ranks oversubscribing a node's cores leave the cores to
 * the ranks that compute.
 *
 * Workers run hsc_farm_serve until the master releases them (to take part in a collective phase such as
 * supernet fine-tuning, after which they serve again) or shuts them down. A worker that holds a pending
 * signal (signals.h) says so with its next answer or while idle; the master's caller sees it through
 * hsc_farm_stop_requested and decides when to stop.
 *
 * The farm's messages use tags 30571 and 30572 of the communicator, which the caller must not use for
 * anything else while a farm or hsc_farm_serve is active on it.
 *
 * Test hook: HSC_TEST_HANG_RANK=r makes worker rank r sleep HSC_TEST_HANG_S seconds (default 30) before
 * evaluating its (HSC_TEST_HANG_AFTER + 1)-th task (default: its first), as a hung device would. */
#ifndef HSCONAS_FARM_H
#define HSCONAS_FARM_H

#include <stdint.h>

#include "hsconas/core.h"
#include "hsconas/space.h"

typedef struct {
  int64_t id; /* the caller's name for the task (the candidate id); unique among queued/in-flight tasks */
  hsc_arch arch;
} hsc_task;

typedef struct {
  int64_t id;
  double top1, top5, loss; /* accuracies in % */
  int images;
  double seconds; /* the evaluator's wall time */
  int worker;     /* rank that evaluated it (0: the master itself, with one rank) */
} hsc_task_result;

/* Evaluates one task: fills r->top1, top5, loss, images (the farm fills id, seconds and worker). */
typedef void (*hsc_eval_fn)(void *ctx, const hsc_task *t, hsc_task_result *r);

/* Why hsc_farm_serve returned. */
typedef enum {
  HSC_FARM_RELEASED = 1, /* the master needs every rank for a collective step; call serve again after it */
  HSC_FARM_DONE = 2,     /* shut down: the search is over (the shutdown's status says how it ended) */
} hsc_farm_exit;

typedef struct {
  int64_t dispatched;   /* tasks sent (re-sends included) */
  int64_t completed;    /* results returned to the caller */
  int64_t redispatched; /* tasks sent again after a timeout */
  int dead_workers;     /* workers abandoned after a timeout */
  double master_busy_s; /* master CPU time (its thread's) inside farm calls: sleeping and waiting for a
                           core do not count */
  double idle_cpu_s;    /* the part of it spent in polls that found nothing to do (the price of waiting
                           without spinning: about one test per millisecond of waiting) */
  double worker_eval_s; /* sum of the evaluators' wall times over completed tasks */
  double busy_span_s;   /* wall time during which at least one task was in flight or queued */
} hsc_farm_stats;

typedef struct hsc_farm hsc_farm;

/* ---- master (rank 0 of comm) ---- */

/* Creates the master's side. fn/ctx evaluate tasks inline when comm has one rank (they may be NULL
 * otherwise). Not collective. */
hsc_farm *hsc_farm_create(MPI_Comm comm, double timeout_s, hsc_eval_fn fn, void *ctx);
void hsc_farm_free(hsc_farm *f);
/* Queues a task (copied). Tasks go out in the order they were queued, from the next hsc_farm_wait. */
void hsc_farm_submit(hsc_farm *f, const hsc_task *t);
/* Workers (or, with one rank, the master) that can take a task now: live workers with no task, minus the
 * tasks already queued. Steady-state evolution creates exactly this many candidates. */
int hsc_farm_free_slots(const hsc_farm *f);
/* Tasks queued or in flight. */
int hsc_farm_pending(const hsc_farm *f);
/* Sends queued tasks to free workers, then waits until at least one result is in (or nothing is pending:
 * returns 0 at once) and returns up to `max` results in out, in the order they arrived. Re-sends timed-out
 * tasks. HSC_ERR_DEVICE in *st (and 0 returned) when every worker has been abandoned with tasks pending;
 * else *st = HSC_OK. */
int hsc_farm_wait(hsc_farm *f, hsc_task_result *out, int max, hsc_status *st);
/* 1 once a worker has reported a pending signal (or the master has one). */
int hsc_farm_stop_requested(const hsc_farm *f);
/* Drops every queued task (in-flight ones still complete and are dropped when they arrive). */
void hsc_farm_cancel(hsc_farm *f);
/* Ends hsc_farm_serve on every live worker with HSC_FARM_RELEASED. Waits (sleeping) for in-flight tasks
 * first; their results are dropped. Abandoned workers are not waited for, but are sent the release too (one
 * that was only slow then joins the collective step; it is never given a task again). Queued tasks stay
 * queued for the next hsc_farm_wait. */
void hsc_farm_release(hsc_farm *f);
/* Ends hsc_farm_serve on every worker with HSC_FARM_DONE and `status` (rank 0's outcome: HSC_OK,
 * HSC_ERR_STOPPED, or an error) in its *status. Abandoned workers are sent the shutdown too. Drops queued
 * tasks and waits (sleeping, within the timeout) for the live workers' in-flight tasks, whose results are
 * dropped. The farm then takes no more calls but hsc_farm_get_stats and hsc_farm_free. */
void hsc_farm_shutdown(hsc_farm *f, hsc_status status);
void hsc_farm_get_stats(const hsc_farm *f, hsc_farm_stats *s);

/* ---- worker (ranks >= 1 of comm) ---- */

/* Evaluates the tasks the master sends until it releases or shuts the workers down; *status gets the
 * master's status on HSC_FARM_DONE (HSC_OK on release). */
hsc_farm_exit hsc_farm_serve(MPI_Comm comm, hsc_eval_fn fn, void *ctx, hsc_status *status);

#endif
