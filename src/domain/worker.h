/* worker: the runtime that runs queued jobs (queue.h): a pool of threads that claim jobs of their
 * queues, run the handler registered for each job's type, and record the outcome; used by
 * `hearth worker` and, in process, by `hearth serve` (HEARTH_JOB_WORKERS).
 *
 * The one idea: a thread claims a job, runs it with no database connection held, and finishes it
 * in one short transaction that succeeds only while it still holds the lease. While jobs are quick
 * a thread claims them in growing batches and records a batch's outcomes in one transaction with
 * the claim of its next batch (worker.c: runner_main). A heartbeat thread
 * extends the leases of running jobs every third of the lease; a process that dies stops
 * heartbeating and its jobs are taken over when their leases expire. Idle threads sleep on a
 * condition variable: an enqueue in this process wakes them at once (worker_wake); otherwise they
 * look again every poll interval (250 ms), which covers jobs enqueued by other processes. */
#ifndef HEARTH_WORKER_H
#define HEARTH_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/buf.h"
#include "../infra/store.h"
#include "queue.h"

typedef struct job_ctx job_ctx_t;

typedef enum {
    JOB_DONE,      /* succeeded; `result` holds a JSON value (or nothing) */
    JOB_RETRY,     /* this attempt failed; retried with backoff until max_attempts */
    JOB_FAIL,      /* failed for good (bad payload): dead at once */
    JOB_RELEASE,   /* stopped unfinished (shutdown): queued again, the attempt not counted */
} job_outcome_t;

/* A handler runs on a worker thread. It writes its result (JSON) into `result`, or a one-line reason
 * into `error` (errlen bytes). */
typedef job_outcome_t (*job_handler_t)(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen);

/* Registers the handler of `type`; call before worker_start. */
void worker_register(const char *type, job_handler_t fn);
bool worker_has_handler(const char *type);

/* Records progress (0-100) and a message; written at most every 250 ms unless it reaches 100.
 * Returns false when the job should stop: its lease was lost (cancelled, taken over) or the pool
 * is shutting down and its grace period has passed; the handler then returns JOB_RELEASE. */
bool job_progress(job_ctx_t *ctx, int pct, const char *message);
/* Whether the handler should stop now (see job_progress). */
bool job_should_stop(job_ctx_t *ctx);
store_t *job_store(job_ctx_t *ctx);

typedef struct worker_pool worker_pool_t;

typedef struct worker_config {
    const char *queues[QUEUE_NAMES]; /* the queues to take jobs from (always high before default
                                      * before low); NULL-terminated when fewer */
    int concurrency;
    int lease_ms;   /* 0: 30000 */
    int poll_ms;    /* 0: 250 */
    const char *name; /* lease holder prefix, e.g. "serve" or "worker" */
} worker_config_t;

worker_pool_t *worker_start(store_t *s, const worker_config_t *cfg, err_t *e);
/* A job was enqueued in this process: idle threads look at once. Safe from any thread. */
void worker_wake(void);
/* Stops claiming new jobs now; running ones go on (worker_stop waits for them). Any thread. */
void worker_quiesce(worker_pool_t *w);
/* Stops claiming; running jobs may finish within grace_ms, then they are asked to stop (job_progress
 * returns false) and released. Joins every thread. */
void worker_stop(worker_pool_t *w, int grace_ms);

/* Counters for /metrics (this process): jobs finished by outcome. */
typedef struct worker_counts {
    uint64_t succeeded, retried, dead, released, lost;
} worker_counts_t;
void worker_counts(worker_counts_t *out);

#endif
