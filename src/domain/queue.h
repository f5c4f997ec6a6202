/* queue: durable background jobs in the store (the `jobs` table), on the store's generic statements.
 *
 * The one idea: a job is owned by whoever holds its lease. A claim sets the lease (holder, expiry)
 * in the same statement that picks the job; a heartbeat extends it; success, failure and progress
 * are written only while the caller still holds it. A worker that dies leaves a lease that expires,
 * and the next claim takes the job over. Claims walk live jobs in queue order (high, default, low),
 * then priority, then run_at; on PostgreSQL with FOR UPDATE SKIP LOCKED, on SQLite under the write
 * lock that BEGIN IMMEDIATE takes. Enqueueing takes the caller's connection inside the caller's
 * transaction, so a business row and its job commit together or not at all. */
#ifndef HEARTH_QUEUE_H
#define HEARTH_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/error.h"
#include "../base/jw.h"
#include "../infra/store.h"

#define QUEUE_NAMES 3 /* high, default, low */

typedef struct job {
    int64_t id;
    const char *type, *queue, *status, *payload, *result, *error, *message, *idempotency_key, *lease_holder;
    int priority, progress, attempts, max_attempts;
    int64_t run_at, lease_expires_at, created_by, created_at, updated_at, started_at, finished_at;
} job_t;

typedef struct job_spec {
    const char *type;
    const char *queue;           /* NULL: "default" */
    int priority;
    const char *payload;         /* a JSON object; NULL: {} */
    int max_attempts;            /* 0: 5 */
    int64_t run_at;              /* 0: now */
    const char *idempotency_key; /* may be NULL */
    int64_t created_by;          /* 0: nobody (the system) */
} job_spec_t;

bool queue_name_valid(const char *q);

/* In the caller's transaction (begin/end on `c`). With an idempotency key already used, *out is
 * that job and *existed true (nothing new is queued). */
bool queue_enqueue(store_conn_t *c, const job_spec_t *spec, arena_t *a, job_t *out, bool *existed, err_t *e);
/* The same for specs[0..n) into out[0..n) and existed[0..n); without idempotency keys in
 * multi-row statements. */
bool queue_enqueue_many(store_conn_t *c, const job_spec_t *specs, int n, arena_t *a, job_t *out, bool *existed,
                        err_t *e);
bool queue_get(store_conn_t *c, int64_t id, arena_t *a, job_t *out, err_t *e);
/* The job made with this idempotency key; *found false when there is none. */
bool queue_by_key(store_conn_t *c, const char *key, arena_t *a, job_t *out, bool *found, err_t *e);

/* Claims the next runnable job of `queues` (NULL: all) for `holder` for lease_ms; *got false when
 * there is none. */
bool queue_claim(store_conn_t *c, const char *const *queues, int nqueues, const char *holder, int lease_ms,
                 arena_t *a, job_t *out, bool *got, err_t *e);
/* The same for up to `max` jobs at once, into out[0..*got), in claim order. */
bool queue_claim_many(store_conn_t *c, const char *const *queues, int nqueues, const char *holder, int lease_ms,
                      int max, arena_t *a, job_t *out, int *got, err_t *e);
/* When the next job of `queues` becomes runnable without anyone enqueueing (a delayed job, a
 * retry, an expired lease): unix microseconds, 0 when nothing is waiting for a time. */
bool queue_next_due(store_conn_t *c, const char *const *queues, int nqueues, arena_t *a, int64_t *at, err_t *e);
/* The channel that NOTIFY wakes workers on (PostgreSQL). */
#define QUEUE_CHANNEL "hearth_jobs"

/* Extends the lease; ERR_CONFLICT when the holder no longer has it (taken over, or cancelled). */
bool queue_heartbeat(store_conn_t *c, int64_t id, const char *holder, int lease_ms, err_t *e);
bool queue_progress(store_conn_t *c, int64_t id, const char *holder, int pct, const char *message, err_t *e);
/* Finishes a claimed job: succeeded with `result` (JSON, may be NULL), or an attempt failed: retried
 * after a backoff (full jitter, base 1 s doubling, at most 1 h) or, past max_attempts or when
 * `permanent`, dead. ERR_CONFLICT when the lease was lost meanwhile (the result is not kept). */
bool queue_succeed(store_conn_t *c, int64_t id, const char *holder, const char *result, err_t *e);
/* The same for jobs ids[0..n) with results[0..n), in multi-row statements; recorded[i] false where
 * the holder had lost job i's lease (nothing changed for it). */
bool queue_succeed_many(store_conn_t *c, const char *holder, const int64_t *ids, const char *const *results, int n,
                        arena_t *a, bool *recorded, err_t *e);
bool queue_fail(store_conn_t *c, const job_t *job, const char *holder, const char *error, bool permanent,
                int64_t *retry_at, err_t *e);
/* Gives a claimed job back unfinished (shutdown): queued again at once, the attempt not counted. */
bool queue_release(store_conn_t *c, int64_t id, const char *holder, err_t *e);
/* queued or failed → cancelled (ERR_CONFLICT for a running or finished job). */
bool queue_cancel(store_conn_t *c, int64_t id, arena_t *a, job_t *out, err_t *e);
/* dead, failed or cancelled → queued again with its attempts reset (ERR_CONFLICT otherwise). */
bool queue_retry(store_conn_t *c, int64_t id, arena_t *a, job_t *out, err_t *e);

typedef struct job_query {
    const char *status, *type;
    int64_t created_by; /* 0: anyone */
    int64_t before_id;  /* keyset cursor: 0 from the newest */
    int limit;
} job_query_t;

typedef struct job_page {
    job_t *items;
    int n;
    bool more;
} job_page_t;

bool queue_list(store_conn_t *c, const job_query_t *q, arena_t *a, job_page_t *out, err_t *e);

/* Per queue: jobs waiting (queued or failed), running, dead, and the age of the oldest waiting one
 * (seconds; 0 when none). For /metrics. */
typedef struct queue_stats {
    int64_t waiting[QUEUE_NAMES], running[QUEUE_NAMES], failed[QUEUE_NAMES], dead[QUEUE_NAMES];
    double oldest_s[QUEUE_NAMES];
} queue_stats_t;
extern const char *const queue_names[QUEUE_NAMES];
bool queue_stats(store_conn_t *c, arena_t *a, queue_stats_t *out, err_t *e);

void job_write_json(jw_t *w, const job_t *j);

#endif
