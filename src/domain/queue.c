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

bool queue_claim(store_conn_t *c, const char *const *queues, int nqueues, const char *holder, int lease_ms,
                 arena_t *a, job_t *out, bool *got, err_t *e)
{
    *got = false;
    int64_t now = time_now_us();
    if (!queues || nqueues <= 0) { /* every queue */
        queues = queue_names;
        nqueues = QUEUE_NAMES;
    }
    const char *v[] = {holder,
                       store_num(a, now + (int64_t)lease_ms * 1000),
                       store_num(a, now),
                       nqueues > 0 ? queues[0] : "",
                       nqueues > 1 ? queues[1] : "",
                       nqueues > 2 ? queues[2] : ""};
    /* one statement: pick the first runnable job and take its lease. The walk follows jobs_claim
     * (live jobs in claim order) and stops at the first runnable one; SQLite is told to, as
     * without statistics it may pick another index and sort every live job to take one */
    const char *sql = is_postgres(c)
                          ? "UPDATE jobs SET status = 'running', lease_holder = $1, lease_expires_at = CAST($2 AS BIGINT),"
                            " attempts = attempts + 1, started_at = COALESCE(started_at, CAST($3 AS BIGINT)),"
                            " updated_at = CAST($3 AS BIGINT) WHERE id = (SELECT id FROM jobs"
                            " WHERE status IN ('queued', 'failed', 'running') AND queue IN ($4, $5, $6)"
                            " AND ((status <> 'running' AND run_at <= CAST($3 AS BIGINT))"
                            " OR (status = 'running' AND lease_expires_at < CAST($3 AS BIGINT)))"
                            " ORDER BY queue_rank, priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                            " RETURNING " JOB_COLUMNS
                          : "UPDATE jobs SET status = 'running', lease_holder = $1, lease_expires_at = CAST($2 AS BIGINT),"
                            " attempts = attempts + 1, started_at = COALESCE(started_at, CAST($3 AS BIGINT)),"
                            " updated_at = CAST($3 AS BIGINT) WHERE id = (SELECT id FROM jobs INDEXED BY jobs_claim"
                            " WHERE status IN ('queued', 'failed', 'running') AND queue IN ($4, $5, $6)"
                            " AND ((status <> 'running' AND run_at <= CAST($3 AS BIGINT))"
                            " OR (status = 'running' AND lease_expires_at < CAST($3 AS BIGINT)))"
                            " ORDER BY queue_rank, priority DESC, run_at, id LIMIT 1)"
                            " RETURNING " JOB_COLUMNS;
    store_rows_t r;
    if (!store_query(c, sql, 6, v, a, &r, e))
        return false;
    if (r.nrows == 1) {
        job_read(&r, 0, out);
        *got = true;
        return job_event(c, out, "job_started", a, e);
    }
    return true;
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

/* The outbox event of a job's change of state, on channel job:ID for its creator (and admins). */
static bool job_event(store_conn_t *c, const job_t *j, const char *type, arena_t *a, err_t *e)
{
    jw_t w;
    buf_t d;
    buf_init(&d);
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
    store_event_t ev = {.channel = arena_printf(a, "job:%lld", (long long)j->id), .type = type,
                        .data = arena_strndup(a, d.data, d.len), .owner_id = j->created_by};
    buf_free(&d);
    return store_event_write(c, &ev, e);
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
    const char *v[] = {jq->status, jq->type, jq->created_by ? store_num(a, jq->created_by) : NULL,
                       jq->before_id ? store_num(a, jq->before_id) : NULL, store_num(a, jq->limit + 1)};
    store_rows_t r;
    if (!store_query(c,
           "SELECT " JOB_COLUMNS " FROM jobs WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)"
           " AND (CAST($2 AS TEXT) IS NULL OR type = $2) AND (CAST($3 AS BIGINT) IS NULL OR created_by = CAST($3 AS BIGINT))"
           " AND (CAST($4 AS BIGINT) IS NULL OR id < CAST($4 AS BIGINT)) ORDER BY id DESC LIMIT CAST($5 AS BIGINT)",
           5, v, a, &r, e))
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
