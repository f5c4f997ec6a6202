/* queue: see queue.h. Every statement that changes a claimed job names its lease holder in the
 * WHERE clause, so a worker that lost its lease (expired and taken over, or the job cancelled)
 * changes nothing and learns it from the row count. */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"

#define JOB_COLUMNS                                                                                               \
    "id, type, queue, priority, status, payload, result, error, progress, message, attempts, max_attempts, "    \
    "run_at, lease_holder, lease_expires_at, idempotency_key, created_by, created_at, updated_at, started_at, " \
    "finished_at"

/* The same, qualified: for statements that join jobs with another relation that has an id */
#define JOB_COLUMNS_JOBS                                                                                          \
    "jobs.id, jobs.type, jobs.queue, jobs.priority, jobs.status, jobs.payload, jobs.result, jobs.error, "        \
    "jobs.progress, jobs.message, jobs.attempts, jobs.max_attempts, jobs.run_at, jobs.lease_holder, "           \
    "jobs.lease_expires_at, jobs.idempotency_key, jobs.created_by, jobs.created_at, jobs.updated_at, "           \
    "jobs.started_at, jobs.finished_at"

#define BACKOFF_BASE_US 1000000LL    /* the first retry waits up to 1 s */
#define BACKOFF_CAP_US 3600000000LL  /* no retry waits more than an hour */

const char *const queue_names[QUEUE_NAMES] = {"high", "default", "low"};

static int queue_rank(const char *q)
{
    for (int i = 0; i < QUEUE_NAMES; i++)
        if (strcmp(q, queue_names[i]) == 0)
            return i;
    return -1;
}

bool queue_name_valid(const char *q) { return q && queue_rank(q) >= 0; }




static void job_read(const store_rows_t *r, int row, job_t *j)
{
    j->id = store_cell_i64(r, row, 0);
    j->type = store_cell(r, row, 1);
    j->queue = store_cell(r, row, 2);
    j->priority = (int)store_cell_i64(r, row, 3);
    j->status = store_cell(r, row, 4);
    j->payload = store_cell(r, row, 5);
    j->result = store_cell(r, row, 6);
    j->error = store_cell(r, row, 7);
    j->progress = (int)store_cell_i64(r, row, 8);
    j->message = store_cell(r, row, 9);
    j->attempts = (int)store_cell_i64(r, row, 10);
    j->max_attempts = (int)store_cell_i64(r, row, 11);
    j->run_at = store_cell_i64(r, row, 12);
    j->lease_holder = store_cell(r, row, 13);
    j->lease_expires_at = store_cell_i64(r, row, 14);
    j->idempotency_key = store_cell(r, row, 15);
    j->created_by = store_cell_i64(r, row, 16);
    j->created_at = store_cell_i64(r, row, 17);
    j->updated_at = store_cell_i64(r, row, 18);
    j->started_at = store_cell_i64(r, row, 19);
    j->finished_at = store_cell_i64(r, row, 20);
}

static bool is_postgres(store_conn_t *c) { return strcmp(c->store->ops->name, "postgres") == 0; }

static bool job_event(store_conn_t *c, const job_t *j, const char *type, arena_t *a, err_t *e);
static bool job_events(store_conn_t *c, const job_t *jobs, int n, const char *type, arena_t *a, err_t *e);

/* Tells the workers of other processes (PostgreSQL: delivered when the transaction commits). */
static bool wake_others(store_conn_t *c, err_t *e)
{
    return !c->store->ops->notify || c->store->ops->notify(c, QUEUE_CHANNEL, e);
}

bool queue_get(store_conn_t *c, int64_t id, arena_t *a, job_t *out, err_t *e)
{
    const char *v[] = {store_num(a, id)};
    store_rows_t r;
    if (!store_query(c, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = CAST($1 AS BIGINT)", 1, v, a, &r, e))
        return false;
    if (r.nrows == 0)
        return err_set(e, ERR_NOT_FOUND, "no job with id %lld", (long long)id);
    job_read(&r, 0, out);
    return true;
}

bool queue_by_key(store_conn_t *c, const char *key, arena_t *a, job_t *out, bool *found, err_t *e)
{
    const char *k[] = {key};
    store_rows_t r;
    *found = false;
    if (!store_query(c, "SELECT " JOB_COLUMNS " FROM jobs WHERE idempotency_key = $1", 1, k, a, &r, e))
        return false;
    if (r.nrows == 1) {
        job_read(&r, 0, out);
        *found = true;
    }
    return true;
}

bool queue_enqueue(store_conn_t *c, const job_spec_t *s, arena_t *a, job_t *out, bool *existed, err_t *e)
{
    *existed = false;
    const char *queue = s->queue ? s->queue : "default";
    int rank = queue_rank(queue);
    if (rank < 0)
        return err_set(e, ERR_VALIDATION, "queue must be one of high, default, low");
    if (s->idempotency_key && (!queue_by_key(c, s->idempotency_key, a, out, existed, e) || *existed))
        return *existed; /* false: the lookup failed */
    int64_t now = time_now_us();
    const char *v[] = {s->type,
                       queue,
                       store_num(a, rank),
                       store_num(a, s->priority),
                       s->payload ? s->payload : "{}",
                       store_num(a, s->max_attempts > 0 ? s->max_attempts : 5),
                       store_num(a, s->run_at ? s->run_at : now),
                       s->idempotency_key,
                       s->created_by ? store_num(a, s->created_by) : NULL,
                       store_num(a, now)};
    store_rows_t r;
    if (!store_query(c,
           "INSERT INTO jobs (type, queue, queue_rank, priority, status, payload, max_attempts, run_at,"
           " idempotency_key, created_by, created_at, updated_at) VALUES ($1, $2, CAST($3 AS INTEGER),"
           " CAST($4 AS INTEGER), 'queued', $5, CAST($6 AS INTEGER), CAST($7 AS BIGINT), $8, CAST($9 AS BIGINT),"
           " CAST($10 AS BIGINT), CAST($10 AS BIGINT)) RETURNING " JOB_COLUMNS,
           10, v, a, &r, e)) {
        if (e->code == ERR_CONFLICT)
            err_set(e, ERR_CONFLICT, "a job with this idempotency key exists");
        return false;
    }
    job_read(&r, 0, out);
    return job_event(c, out, "job_queued", a, e) && wake_others(c, e);
}

static int by_id(const void *pa, const void *pb)
{
    const job_t *a = pa, *b = pb;
    return a->id < b->id ? -1 : a->id > b->id;
}

bool queue_enqueue_many(store_conn_t *c, const job_spec_t *specs, int n, arena_t *a, job_t *out, bool *existed,
                        err_t *e)
{
    bool keyed = false;
    for (int i = 0; i < n; i++) {
        existed[i] = false;
        keyed |= specs[i].idempotency_key != NULL;
        if (!queue_name_valid(specs[i].queue ? specs[i].queue : "default"))
            return err_set(e, ERR_VALIDATION, "queue must be one of high, default, low");
    }
    if (keyed || n == 1) { /* each key looked up first */
        for (int i = 0; i < n; i++)
            if (!queue_enqueue(c, &specs[i], a, &out[i], &existed[i], e))
                return false;
        return true;
    }
    int64_t now = time_now_us();
    const char *at = store_num(a, now);
    buf_t sql;
    buf_init(&sql);
    bool ok = true;
    for (int done = 0; ok && done < n;) {
        int rows = store_batch_rows(n - done);
        const char **v = arena_alloc(a, sizeof *v * 10 * (size_t)rows);
        for (int i = 0; i < rows; i++) {
            const job_spec_t *s = &specs[done + i];
            const char *queue = s->queue ? s->queue : "default";
            const char **r = &v[10 * i];
            r[0] = s->type;
            r[1] = queue;
            r[2] = store_num(a, queue_rank(queue));
            r[3] = store_num(a, s->priority);
            r[4] = s->payload ? s->payload : "{}";
            r[5] = store_num(a, s->max_attempts > 0 ? s->max_attempts : 5);
            r[6] = s->run_at ? store_num(a, s->run_at) : at;
            r[7] = s->created_by ? store_num(a, s->created_by) : NULL;
            r[8] = at;
            r[9] = at;
        }
        buf_reset(&sql);
        buf_puts(&sql, "INSERT INTO jobs (type, queue, queue_rank, priority, status, payload, max_attempts, run_at,"
                       " created_by, created_at, updated_at) VALUES ");
        store_sql_rows(&sql,
                       "(?, ?, CAST(? AS INTEGER), CAST(? AS INTEGER), 'queued', ?, CAST(? AS INTEGER),"
                       " CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))",
                       rows, 1);
        buf_puts(&sql, " RETURNING " JOB_COLUMNS);
        store_rows_t r;
        ok = store_query(c, buf_cstr(&sql), 10 * rows, v, a, &r, e);
        if (ok && r.nrows != rows)
            ok = err_set(e, ERR_INTERNAL, "inserted %d jobs, expected %d", r.nrows, rows);
        for (int i = 0; ok && i < rows; i++)
            job_read(&r, i, &out[done + i]);
        /* one statement numbers its rows in VALUES order; RETURNING promises no order */
        if (ok)
            qsort(&out[done], (size_t)rows, sizeof *out, by_id);
        done += rows;
    }
    buf_free(&sql);
    return ok && job_events(c, out, n, "job_queued", a, e) && wake_others(c, e);
}

/* Claim order: high before default before low, then priority (higher first), run_at, id. */
static int claim_order(const void *pa, const void *pb)
{
    const job_t *a = pa, *b = pb;
    int ra = queue_rank(a->queue), rb = queue_rank(b->queue);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    if (a->run_at != b->run_at)
        return a->run_at < b->run_at ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

bool queue_claim_many(store_conn_t *c, const char *const *queues, int nqueues, const char *holder, int lease_ms,
                      int max, arena_t *a, job_t *out, int *got, err_t *e)
{
    *got = 0;
    int64_t now = time_now_us();
    if (!queues || nqueues <= 0) { /* every queue */
        queues = queue_names;
        nqueues = QUEUE_NAMES;
    }
    if (max < 1)
        max = 1;
    const char *v[] = {holder,
                       store_num(a, now + (int64_t)lease_ms * 1000),
                       store_num(a, now),
                       nqueues > 0 ? queues[0] : "",
                       nqueues > 1 ? queues[1] : "",
                       nqueues > 2 ? queues[2] : "",
                       store_num(a, max)};
    /* one statement: pick the first runnable jobs and take their leases. The walk follows
     * jobs_claim (live jobs in claim order) and stops after `max` runnable ones; SQLite is told to,
     * as without statistics it may pick another index and sort every live job to take a few */
#define CLAIM_SET                                                                                              \
    "UPDATE jobs SET status = 'running', lease_holder = $1, lease_expires_at = CAST($2 AS BIGINT),"            \
    " attempts = attempts + 1, started_at = COALESCE(started_at, CAST($3 AS BIGINT)),"                         \
    " updated_at = CAST($3 AS BIGINT) WHERE id IN (SELECT id FROM jobs "
#define CLAIM_SET_PG                                                                                           \
    "UPDATE jobs SET status = 'running', lease_holder = $1, lease_expires_at = CAST($2 AS BIGINT),"            \
    " attempts = jobs.attempts + 1, started_at = COALESCE(jobs.started_at, CAST($3 AS BIGINT)),"               \
    " updated_at = CAST($3 AS BIGINT)"
#define CLAIM_WHERE                                                                                            \
    " WHERE status IN ('queued', 'failed', 'running') AND queue IN ($4, $5, $6)"                               \
    " AND ((status <> 'running' AND run_at <= CAST($3 AS BIGINT))"                                             \
    " OR (status = 'running' AND lease_expires_at < CAST($3 AS BIGINT)))"                                      \
    " ORDER BY queue_rank, priority DESC, run_at, id LIMIT CAST($7 AS INTEGER)"
    /* PostgreSQL: the locked rows in a materialized CTE, so that the subquery runs exactly once
     * (an IN (subquery) may be run again by the plan and lease more than `max`) */
    const char *sql = is_postgres(c)
                          ? "WITH picked AS MATERIALIZED (SELECT id FROM jobs" CLAIM_WHERE " FOR UPDATE SKIP LOCKED) "
                            CLAIM_SET_PG " FROM picked WHERE jobs.id = picked.id RETURNING " JOB_COLUMNS_JOBS
                          : CLAIM_SET "INDEXED BY jobs_claim" CLAIM_WHERE ") RETURNING " JOB_COLUMNS;
#undef CLAIM_SET
#undef CLAIM_SET_PG
#undef CLAIM_WHERE
    /* PostgreSQL plans with statistics that a queue outruns: taken when few jobs waited, they make
     * a bitmap scan and a sort of every waiting job look cheaper than walking jobs_claim in order,
     * and each claim then reads the whole queue. Without sorts the walk is the only plan. */
    store_rows_t r;
    if (is_postgres(c) && !store_query(c, "SET LOCAL enable_sort = off", 0, NULL, a, &r, e))
        return false;
    if (!store_query(c, sql, 7, v, a, &r, e))
        return false;
    store_rows_t reset;
    if (is_postgres(c) && !store_query(c, "SET LOCAL enable_sort TO DEFAULT", 0, NULL, a, &reset, e))
        return false;
    int n = r.nrows < max ? r.nrows : max;
    for (int i = 0; i < n; i++)
        job_read(&r, i, &out[i]);
    qsort(out, (size_t)n, sizeof *out, claim_order); /* RETURNING promises no order */
    *got = n;
    return job_events(c, out, n, "job_started", a, e);
}

bool queue_claim(store_conn_t *c, const char *const *queues, int nqueues, const char *holder, int lease_ms,
                 arena_t *a, job_t *out, bool *got, err_t *e)
{
    int n = 0;
    bool ok = queue_claim_many(c, queues, nqueues, holder, lease_ms, 1, a, out, &n, e);
    *got = n == 1;
    return ok;
}

bool queue_next_due(store_conn_t *c, const char *const *queues, int nqueues, arena_t *a, int64_t *at, err_t *e)
{
    const char *v[] = {nqueues > 0 ? queues[0] : "", nqueues > 1 ? queues[1] : "", nqueues > 2 ? queues[2] : ""};
    store_rows_t r;
    if (!store_query(c,
           "SELECT min(CASE WHEN status = 'running' THEN lease_expires_at ELSE run_at END) FROM jobs"
           " WHERE status IN ('queued', 'failed', 'running') AND queue IN ($1, $2, $3)",
           3, v, a, &r, e))
        return false;
    *at = r.nrows ? store_cell_i64(&r, 0, 0) : 0;
    return true;
}

/* The outbox events of jobs' changes of state, each on channel job:ID for its creator (and admins). */
static bool job_events(store_conn_t *c, const job_t *jobs, int n, const char *type, arena_t *a, err_t *e)
{
    store_event_t *evs = arena_alloc(a, sizeof *evs * (size_t)(n > 0 ? n : 1));
    buf_t d;
    buf_init(&d);
    for (int i = 0; i < n; i++) {
        const job_t *j = &jobs[i];
        jw_t w;
        buf_reset(&d);
        jw_init(&w, &d);
        jw_obj_begin(&w);
        jw_kint(&w, "id", j->id);
        jw_kstr(&w, "type", j->type);
        jw_kstr(&w, "status", j->status);
        jw_kint(&w, "attempts", j->attempts);
        jw_kint(&w, "progress", j->progress);
        jw_kstr(&w, "message", j->message);
        jw_kstr(&w, "error", j->error);
        jw_key(&w, "result");
        if (j->result)
            jw_raw(&w, j->result, strlen(j->result));
        else
            jw_null(&w);
        jw_obj_end(&w);
        evs[i] = (store_event_t){.channel = arena_printf(a, "job:%lld", (long long)j->id), .type = type,
                                 .data = arena_strndup(a, d.data, d.len), .owner_id = j->created_by};
    }
    buf_free(&d);
    return store_events_write(c, evs, n, e);
}

static bool job_event(store_conn_t *c, const job_t *j, const char *type, arena_t *a, err_t *e)
{
    return job_events(c, j, 1, type, a, e);
}

/* Runs an UPDATE ... RETURNING JOB_COLUMNS of a job held by `holder` and announces the change as
 * `event`; ERR_CONFLICT when no row matched (the lease is gone). */
static bool held_update(store_conn_t *c, const char *sql, int n, const char *const *v, arena_t *a, const char *event,
                        err_t *e)
{
    store_rows_t r;
    if (!store_query(c, sql, n, v, a, &r, e))
        return false;
    if (r.nrows != 1)
        return err_set(e, ERR_CONFLICT, "the job's lease was lost (taken over or cancelled)");
    if (!event)
        return true;
    job_t j;
    job_read(&r, 0, &j);
    return job_event(c, &j, event, a, e);
}

bool queue_heartbeat(store_conn_t *c, int64_t id, const char *holder, int lease_ms, err_t *e)
{
    arena_t a;
    arena_init(&a);
    int64_t now = time_now_us();
    const char *v[] = {store_num(&a, id), holder, store_num(&a, now + (int64_t)lease_ms * 1000), store_num(&a, now)};
    bool ok = held_update(c,
                          "UPDATE jobs SET lease_expires_at = CAST($3 AS BIGINT), updated_at = CAST($4 AS BIGINT)"
                          " WHERE id = CAST($1 AS BIGINT) AND status = 'running' AND lease_holder = $2 RETURNING " JOB_COLUMNS,
                          4, v, &a, NULL, e);
    arena_free(&a);
    return ok;
}

bool queue_progress(store_conn_t *c, int64_t id, const char *holder, int pct, const char *message, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {store_num(&a, id), holder, store_num(&a, pct < 0 ? 0 : pct > 100 ? 100 : pct), message,
                       store_num(&a, time_now_us())};
    bool ok = held_update(c,
                          "UPDATE jobs SET progress = CAST($3 AS INTEGER), message = $4, updated_at = CAST($5 AS BIGINT)"
                          " WHERE id = CAST($1 AS BIGINT) AND status = 'running' AND lease_holder = $2 RETURNING " JOB_COLUMNS,
                          5, v, &a, "progress", e);
    arena_free(&a);
    return ok;
}

bool queue_succeed(store_conn_t *c, int64_t id, const char *holder, const char *result, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {store_num(&a, id), holder, result, store_num(&a, time_now_us())};
    bool ok = held_update(c,
                          "UPDATE jobs SET status = 'succeeded', result = $3, progress = 100, error = NULL,"
                          " lease_holder = NULL, lease_expires_at = NULL, finished_at = CAST($4 AS BIGINT),"
                          " updated_at = CAST($4 AS BIGINT)"
                          " WHERE id = CAST($1 AS BIGINT) AND status = 'running' AND lease_holder = $2 RETURNING " JOB_COLUMNS,
                          4, v, &a, "job_complete", e);
    arena_free(&a);
    return ok;
}

bool queue_succeed_many(store_conn_t *c, const char *holder, const int64_t *ids, const char *const *results, int n,
                        arena_t *a, bool *recorded, err_t *e)
{
    const char *now = store_num(a, time_now_us());
    buf_t sql;
    buf_init(&sql);
    bool ok = true;
    for (int i = 0; i < n; i++)
        recorded[i] = false;
    for (int done = 0; ok && done < n;) {
        int rows = store_batch_rows(n - done);
        const char **v = arena_alloc(a, sizeof *v * (2 + 2 * (size_t)rows));
        v[0] = holder;
        v[1] = now;
        for (int i = 0; i < rows; i++) {
            v[2 + 2 * i] = store_num(a, ids[done + i]);
            v[3 + 2 * i] = results[done + i];
        }
        buf_reset(&sql);
        buf_puts(&sql, "UPDATE jobs SET status = 'succeeded', result = v.column2, progress = 100, error = NULL,"
                       " lease_holder = NULL, lease_expires_at = NULL, finished_at = CAST($2 AS BIGINT),"
                       " updated_at = CAST($2 AS BIGINT) FROM (VALUES ");
        store_sql_rows(&sql, "(CAST(? AS BIGINT), ?)", rows, 3);
        buf_puts(&sql, ") AS v WHERE jobs.id = v.column1 AND jobs.status = 'running' AND jobs.lease_holder = $1"
                       " RETURNING " JOB_COLUMNS);
        store_rows_t r;
        ok = store_query(c, buf_cstr(&sql), 2 + 2 * rows, v, a, &r, e);
        if (ok) {
            job_t *jobs = arena_alloc(a, sizeof *jobs * (size_t)(r.nrows > 0 ? r.nrows : 1));
            for (int i = 0; i < r.nrows; i++) {
                job_read(&r, i, &jobs[i]);
                for (int k = done; k < done + rows; k++)
                    if (ids[k] == jobs[i].id)
                        recorded[k] = true;
            }
            qsort(jobs, (size_t)r.nrows, sizeof *jobs, by_id);
            ok = job_events(c, jobs, r.nrows, "job_complete", a, e);
        }
        done += rows;
    }
    buf_free(&sql);
    return ok;
}

/* Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
static int64_t backoff_us(int attempt)
{
    int64_t ceiling = BACKOFF_BASE_US;
    for (int i = 1; i < attempt && ceiling < BACKOFF_CAP_US; i++)
        ceiling *= 2;
    if (ceiling > BACKOFF_CAP_US)
        ceiling = BACKOFF_CAP_US;
    return (int64_t)(rand_fast() % (uint64_t)(ceiling + 1));
}

bool queue_fail(store_conn_t *c, const job_t *job, const char *holder, const char *error, bool permanent,
                int64_t *retry_at, err_t *e)
{
    arena_t a;
    arena_init(&a);
    int64_t now = time_now_us();
    bool dead = permanent || job->attempts >= job->max_attempts;
    *retry_at = dead ? 0 : now + backoff_us(job->attempts);
    const char *v[] = {store_num(&a, job->id), holder, error ? error : "failed", store_num(&a, now), store_num(&a, *retry_at)};
    bool ok = dead ? held_update(c,
                                 "UPDATE jobs SET status = 'dead', error = $3, lease_holder = NULL, lease_expires_at = NULL,"
                                 " finished_at = CAST($4 AS BIGINT), updated_at = CAST($4 AS BIGINT)"
                                 " WHERE id = CAST($1 AS BIGINT) AND status = 'running' AND lease_holder = $2 RETURNING " JOB_COLUMNS,
                                 4, v, &a, "job_failed", e)
                   : held_update(c,
                                 "UPDATE jobs SET status = 'failed', error = $3, lease_holder = NULL, lease_expires_at = NULL,"
                                 " run_at = CAST($5 AS BIGINT), updated_at = CAST($4 AS BIGINT)"
                                 " WHERE id = CAST($1 AS BIGINT) AND status = 'running' AND lease_holder = $2 RETURNING " JOB_COLUMNS,
                                 5, v, &a, "job_retry", e);
    arena_free(&a);
    return ok;
}

bool queue_release(store_conn_t *c, int64_t id, const char *holder, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {store_num(&a, id), holder, store_num(&a, time_now_us())};
    bool ok = held_update(c,
                          "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_holder = NULL,"
                          " lease_expires_at = NULL, run_at = CAST($3 AS BIGINT), updated_at = CAST($3 AS BIGINT)"
                          " WHERE id = CAST($1 AS BIGINT) AND status = 'running' AND lease_holder = $2 RETURNING " JOB_COLUMNS,
                          3, v, &a, "job_released", e) &&
              wake_others(c, e);
    arena_free(&a);
    return ok;
}

/* A change of state allowed only from `from` (a SQL list); ERR_CONFLICT naming the status otherwise. */
static bool transition(store_conn_t *c, int64_t id, const char *sql, const char *verb, const char *event, arena_t *a,
                       job_t *out, err_t *e)
{
    const char *v[] = {store_num(a, id), store_num(a, time_now_us())};
    store_rows_t r;
    if (!store_query(c, sql, 2, v, a, &r, e))
        return false;
    if (r.nrows == 1) {
        job_read(&r, 0, out);
        return job_event(c, out, event, a, e) && wake_others(c, e);
    }
    if (!queue_get(c, id, a, out, e))
        return false;
    return err_set(e, ERR_CONFLICT, "a %s job cannot be %s", out->status, verb);
}

bool queue_cancel(store_conn_t *c, int64_t id, arena_t *a, job_t *out, err_t *e)
{
    return transition(c, id,
                      "UPDATE jobs SET status = 'cancelled', finished_at = CAST($2 AS BIGINT), updated_at = CAST($2 AS BIGINT)"
                      " WHERE id = CAST($1 AS BIGINT) AND status IN ('queued', 'failed') RETURNING " JOB_COLUMNS,
                      "cancelled", "job_cancelled", a, out, e);
}

bool queue_retry(store_conn_t *c, int64_t id, arena_t *a, job_t *out, err_t *e)
{
    return transition(c, id,
                      "UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, progress = 0, message = NULL,"
                      " run_at = CAST($2 AS BIGINT), finished_at = NULL, updated_at = CAST($2 AS BIGINT)"
                      " WHERE id = CAST($1 AS BIGINT) AND status IN ('dead', 'failed', 'cancelled') RETURNING " JOB_COLUMNS,
                      "retried", "job_queued", a, out, e);
}

bool queue_list(store_conn_t *c, const job_query_t *jq, arena_t *a, job_page_t *out, err_t *e)
{
    /* only the filters given, so that the plan can use them (an "x IS NULL OR" filter cannot
     * bound an index scan, and every page would walk the newest jobs again) */
    const char *v[5];
    int n = 0;
    buf_t sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT " JOB_COLUMNS " FROM jobs WHERE 1 = 1");
    if (jq->status) {
        v[n++] = jq->status;
        buf_printf(&sql, " AND status = $%d", n);
    }
    if (jq->type) {
        v[n++] = jq->type;
        buf_printf(&sql, " AND type = $%d", n);
    }
    if (jq->created_by) {
        v[n++] = store_num(a, jq->created_by);
        buf_printf(&sql, " AND created_by = CAST($%d AS BIGINT)", n);
    }
    if (jq->before_id) {
        v[n++] = store_num(a, jq->before_id);
        buf_printf(&sql, " AND id < CAST($%d AS BIGINT)", n);
    }
    v[n++] = store_num(a, jq->limit + 1);
    buf_printf(&sql, " ORDER BY id DESC LIMIT CAST($%d AS BIGINT)", n);
    store_rows_t r;
    bool ok = store_query(c, buf_cstr(&sql), n, v, a, &r, e);
    buf_free(&sql);
    if (!ok)
        return false;
    out->more = r.nrows > jq->limit;
    out->n = out->more ? jq->limit : r.nrows;
    out->items = arena_zalloc(a, (size_t)(out->n + 1) * sizeof *out->items);
    for (int i = 0; i < out->n; i++)
        job_read(&r, i, &out->items[i]);
    return true;
}

bool queue_stats(store_conn_t *c, arena_t *a, queue_stats_t *out, err_t *e)
{
    memset(out, 0, sizeof *out);
    store_rows_t r;
    if (!store_query(c,
           "SELECT queue, status, count(*), min(CASE WHEN status IN ('queued', 'failed') THEN run_at END)"
           " FROM jobs WHERE status IN ('queued', 'failed', 'running', 'dead') GROUP BY queue, status",
           0, NULL, a, &r, e))
        return false;
    int64_t now = time_now_us();
    for (int i = 0; i < r.nrows; i++) {
        int k = queue_rank(store_cell(&r, i, 0) ? store_cell(&r, i, 0) : "");
        const char *st = store_cell(&r, i, 1);
        if (k < 0 || !st)
            continue;
        int64_t n = store_cell_i64(&r, i, 2);
        if (strcmp(st, "running") == 0) {
            out->running[k] += n;
        } else if (strcmp(st, "dead") == 0) {
            out->dead[k] += n;
        } else {
            out->waiting[k] += n;
            if (strcmp(st, "failed") == 0)
                out->failed[k] += n;
            int64_t oldest = store_cell_i64(&r, i, 3);
            double age = oldest && oldest < now ? (double)(now - oldest) / 1e6 : 0;
            if (age > out->oldest_s[k])
                out->oldest_s[k] = age;
        }
    }
    return true;
}

static void kraw_or_null(jw_t *w, const char *key, const char *json)
{
    jw_key(w, key);
    if (json)
        jw_raw(w, json, strlen(json)); /* stored by hearth as JSON */
    else
        jw_null(w);
}

static void ktime_or_null(jw_t *w, const char *key, int64_t us)
{
    jw_key(w, key);
    if (us)
        jw_time(w, us);
    else
        jw_null(w);
}

void job_write_json(jw_t *w, const job_t *j)
{
    jw_obj_begin(w);
    jw_kint(w, "id", j->id);
    jw_kstr(w, "type", j->type);
    jw_kstr(w, "queue", j->queue);
    jw_kint(w, "priority", j->priority);
    jw_kstr(w, "status", j->status);
    jw_kint(w, "progress", j->progress);
    jw_kstr(w, "message", j->message);
    jw_kint(w, "attempts", j->attempts);
    jw_kint(w, "max_attempts", j->max_attempts);
    kraw_or_null(w, "payload", j->payload);
    kraw_or_null(w, "result", j->result);
    jw_kstr(w, "error", j->error);
    jw_kstr(w, "idempotency_key", j->idempotency_key);
    jw_key(w, "created_by");
    if (j->created_by)
        jw_int(w, j->created_by);
    else
        jw_null(w);
    ktime_or_null(w, "run_at", j->run_at);
    ktime_or_null(w, "created_at", j->created_at);
    ktime_or_null(w, "updated_at", j->updated_at);
    ktime_or_null(w, "started_at", j->started_at);
    ktime_or_null(w, "finished_at", j->finished_at);
    jw_obj_end(w);
}
