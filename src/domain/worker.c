/* worker: see worker.h. Threads: `concurrency` runners and one heartbeat thread. The pool owns its
 * slots (one per runner: the job it runs, if any, under the pool mutex) and the wake-up condition
 * variable shared with worker_wake. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/util.h"

#define MAX_HANDLERS 32
#define PROGRESS_EVERY_US 250000
#define ACQUIRE_MS 5000

static struct {
    const char *type;
    job_handler_t fn;
} handlers[MAX_HANDLERS];
static int nhandlers;

void worker_register(const char *type, job_handler_t fn)
{
    for (int i = 0; i < nhandlers; i++)
        if (strcmp(handlers[i].type, type) == 0) {
            handlers[i].fn = fn;
            return;
        }
    if (nhandlers < MAX_HANDLERS)
        handlers[nhandlers++] = (typeof(handlers[0])){type, fn};
}

static job_handler_t handler_for(const char *type)
{
    for (int i = 0; i < nhandlers; i++)
        if (strcmp(handlers[i].type, type) == 0)
            return handlers[i].fn;
    return NULL;
}

bool worker_has_handler(const char *type) { return type && handler_for(type) != NULL; }

static _Atomic uint64_t n_succeeded, n_retried, n_dead, n_released, n_lost;

void worker_counts(worker_counts_t *out)
{
    out->succeeded = atomic_load(&n_succeeded);
    out->retried = atomic_load(&n_retried);
    out->dead = atomic_load(&n_dead);
    out->released = atomic_load(&n_released);
    out->lost = atomic_load(&n_lost);
}

/* Wake-ups: one process-wide condition variable; every pool waits on it. */
static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static uint64_t wake_seq;
static int wake_waiters; /* runners asleep in wait_for_work; under wake_mu */

static void wake_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake_cv, &attr);
    pthread_condattr_destroy(&attr);
}

void worker_wake(void)
{
    pthread_once(&wake_once, wake_init);
    pthread_mutex_lock(&wake_mu);
    wake_seq++;
    if (wake_waiters > 0) /* busy runners look again before they sleep (wake_seq) */
        pthread_cond_broadcast(&wake_cv);
    pthread_mutex_unlock(&wake_mu);
}

typedef struct slot {
    struct worker_pool *pool;
    int64_t job_id; /* 0: idle; under the pool's mutex */
    char holder[96];
} slot_t;

struct worker_pool {
    store_t *store;
    worker_config_t cfg;
    int nqueues;
    pthread_t *runners, heartbeat;
    slot_t *slots;
    pthread_mutex_t mu; /* slots */
    _Atomic bool stopping;     /* claim no more */
    _Atomic bool stop_running; /* grace over: handlers should stop */
    struct store_listener *listener; /* PostgreSQL: NOTIFY wakes us; then no polling */
    char host[64];
};

struct job_ctx {
    worker_pool_t *pool;
    slot_t *slot;
    const job_t *job;
    int64_t last_progress_us;
    bool lost;
};

store_t *job_store(job_ctx_t *ctx) { return ctx->pool->store; }

bool job_should_stop(job_ctx_t *ctx) { return ctx->lost || atomic_load(&ctx->pool->stop_running); }

typedef struct progress_arg {
    int64_t id;
    const char *holder;
    int pct;
    const char *message;
} progress_arg_t;

static bool in_tx(store_t *s, bool lazy, bool (*fn)(store_conn_t *, void *, err_t *), void *arg, err_t *e);

static bool do_progress(store_conn_t *c, void *arg, err_t *e)
{
    progress_arg_t *p = arg;
    return queue_progress(c, p->id, p->holder, p->pct, p->message, e);
}

bool job_progress(job_ctx_t *ctx, int pct, const char *message)
{
    if (job_should_stop(ctx))
        return false;
    int64_t now = time_now_us();
    if (pct < 100 && now - ctx->last_progress_us < PROGRESS_EVERY_US)
        return true;
    ctx->last_progress_us = now;
    err_t e;
    err_clear(&e);
    progress_arg_t p = {ctx->job->id, ctx->slot->holder, pct, message};
    /* the row and its progress event commit together (or, the database busy, not at all: progress
     * is best effort and the job goes on) */
    if (!in_tx(ctx->pool->store, true, do_progress, &p, &e) && e.code == ERR_CONFLICT)
        ctx->lost = true;
    return !job_should_stop(ctx);
}

/* One transaction on a pooled connection: fn(c, arg) between begin and end. `lazy`: its commit
 * need not be durable at once (store.h: begin_lazy), for a claim, progress or a heartbeat, which
 * a crash of the database server may take back (the job is claimed and run again). */
static bool in_tx(store_t *s, bool lazy, bool (*fn)(store_conn_t *, void *, err_t *), void *arg, err_t *e)
{
    store_conn_t *c = s->ops->acquire(s, ACQUIRE_MS, e);
    if (!c)
        return false;
    bool ok = store_begin(c, lazy, e) && store_finish(c, fn(c, arg, e), e);
    s->ops->release(s, c);
    return ok;
}

typedef struct claim_arg {
    worker_pool_t *pool;
    const char *holder;
    arena_t *arena;
    job_t *jobs; /* room for `max` */
    int max, got;
} claim_arg_t;

static bool do_claim(store_conn_t *c, void *p, err_t *e)
{
    claim_arg_t *a = p;
    return queue_claim_many(c, a->pool->cfg.queues, a->pool->nqueues, a->holder, a->pool->cfg.lease_ms, a->max,
                            a->arena, a->jobs, &a->got, e);
}

/* A job run and not yet recorded. */
typedef struct outcome {
    const job_t *job;
    job_outcome_t outcome;
    const char *result, *error;
    int64_t retry_at;
    bool lost; /* its lease was gone when recorded (cancelled, or taken over) */
} outcome_t;

typedef struct finish_arg {
    outcome_t *o;
    int n;
    const char *holder;
    claim_arg_t *next; /* non-NULL: claim the runner's next jobs in the same transaction */
} finish_arg_t;

static bool do_finish(store_conn_t *c, void *p, err_t *e)
{
    finish_arg_t *f = p;
    arena_t a;
    arena_init(&a);
    int64_t *ids = arena_alloc(&a, sizeof *ids * (size_t)(f->n + 1));
    const char **results = arena_alloc(&a, sizeof *results * (size_t)(f->n + 1));
    bool *recorded = arena_alloc(&a, sizeof *recorded * (size_t)(f->n + 1));
    int nd = 0;
    bool ok = true;
    for (int i = 0; ok && i < f->n; i++) {
        outcome_t *o = &f->o[i];
        o->lost = false;
        if (o->outcome == JOB_DONE) { /* together, below */
            ids[nd] = o->job->id;
            results[nd++] = o->result;
            continue;
        }
        ok = o->outcome == JOB_RELEASE
                 ? queue_release(c, o->job->id, f->holder, e)
                 : queue_fail(c, o->job, f->holder, o->error, o->outcome == JOB_FAIL, &o->retry_at, e);
        /* a lost lease changed no row (queue.h): the others' outcomes still count */
        o->lost = !ok && e->code == ERR_CONFLICT;
        if (o->lost) {
            err_clear(e);
            ok = true;
        }
    }
    ok = ok && (nd == 0 || queue_succeed_many(c, f->holder, ids, results, nd, &a, recorded, e));
    for (int i = 0, k = 0; ok && i < f->n; i++)
        if (f->o[i].outcome == JOB_DONE)
            f->o[i].lost = !recorded[k++];
    arena_free(&a);
    return ok && (!f->next || do_claim(c, f->next, e));
}

static void count_outcome(const outcome_t *o)
{
    const job_t *job = o->job;
    if (o->lost) {
        atomic_fetch_add(&n_lost, 1);
        log_warn("job %lld (%s): its lease was lost before its outcome was recorded", (long long)job->id, job->type);
    } else if (o->outcome == JOB_DONE) {
        atomic_fetch_add(&n_succeeded, 1);
    } else if (o->outcome == JOB_RELEASE) {
        atomic_fetch_add(&n_released, 1);
    } else if (o->retry_at) {
        atomic_fetch_add(&n_retried, 1);
        log_info("job %lld (%s): attempt %d failed (%s); retry in %.1f s", (long long)job->id, job->type,
                 job->attempts, o->error, (double)(o->retry_at - time_now_us()) / 1e6);
    } else {
        atomic_fetch_add(&n_dead, 1);
        log_warn("job %lld (%s): dead after %d attempt(s): %s", (long long)job->id, job->type, job->attempts, o->error);
    }
}

/* Records the outcomes o[0..n), and with `next` claims the runner's next jobs in the same
 * transaction: one commit a batch while there is work, shared with the other runners' (store.h:
 * store_tx_group). A commit that fails is tried again (a busy or restarting database), the last
 * tries without the claim. */
static void finish_jobs(worker_pool_t *w, const char *holder, outcome_t *o, int n, claim_arg_t *next)
{
    finish_arg_t f = {.o = o, .n = n, .holder = holder};
    err_t e;
    err_clear(&e);
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) {
        err_clear(&e);
        f.next = attempt == 0 ? next : NULL;
        if (next)
            next->got = 0;
        store_conn_t *c = w->store->ops->acquire(w->store, ACQUIRE_MS, &e);
        ok = c && store_tx_group(w->store, c, do_finish, &f, &e);
        if (c)
            w->store->ops->release(w->store, c);
        if (!ok && e.code != ERR_UNAVAILABLE && !f.next)
            break;
        if (!ok && e.code == ERR_UNAVAILABLE)
            usleep(200000);
    }
    for (int i = 0; i < n; i++) {
        if (ok) {
            count_outcome(&o[i]);
        } else {
            atomic_fetch_add(&n_lost, 1);
            log_warn("job %lld (%s): could not record its outcome: %s", (long long)o[i].job->id, o[i].job->type,
                     e.message);
        }
    }
}

/* Runs a claimed job; its outcome, with result and error copied into `arena`, goes to *o. */
static void run_job(worker_pool_t *w, slot_t *slot, const job_t *job, arena_t *arena, outcome_t *o)
{
    job_ctx_t ctx = {.pool = w, .slot = slot, .job = job};
    buf_t result;
    buf_init(&result);
    char error[512] = "";
    job_handler_t fn = handler_for(job->type);
    job_outcome_t outcome;
    if (job->attempts > job->max_attempts) {
        /* taken over after its lease expired once too often: its runners keep dying on it */
        snprintf(error, sizeof error, "its runner stopped (lease expired) on every attempt");
        outcome = JOB_FAIL;
    } else if (!fn) {
        snprintf(error, sizeof error, "no handler for job type \"%s\"", job->type);
        outcome = JOB_FAIL;
    } else {
        pthread_mutex_lock(&w->mu);
        slot->job_id = job->id;
        pthread_mutex_unlock(&w->mu);
        outcome = fn(&ctx, job, &result, error, sizeof error);
        pthread_mutex_lock(&w->mu);
        slot->job_id = 0;
        pthread_mutex_unlock(&w->mu);
    }
    if (outcome == JOB_RETRY && !error[0])
        snprintf(error, sizeof error, "failed");
    *o = (outcome_t){.job = job, .outcome = outcome,
                     .result = outcome == JOB_DONE && result.len ? arena_strndup(arena, result.data, result.len) : NULL,
                     .error = arena_strdup(arena, error)};
    buf_free(&result);
}

#define LISTEN_MAX_SLEEP_MS 5000 /* with NOTIFY: a safety net (a LISTEN connection being re-made) */

/* How long an idle runner sleeps: the poll interval, or with NOTIFY wake-ups until the next job
 * falls due by the clock (a delayed job, a retry, an expired lease). */
static int64_t idle_ms(worker_pool_t *w, arena_t *arena)
{
    if (!w->listener)
        return w->cfg.poll_ms;
    err_t e;
    err_clear(&e);
    int64_t due = 0;
    store_conn_t *c = w->store->ops->acquire(w->store, ACQUIRE_MS, &e);
    bool ok = c && queue_next_due(c, w->cfg.queues, w->nqueues, arena, &due, &e);
    if (c)
        w->store->ops->release(w->store, c);
    if (!ok)
        return w->cfg.poll_ms;
    if (!due)
        return LISTEN_MAX_SLEEP_MS;
    int64_t ms = (due - time_now_us()) / 1000 + 1;
    return ms < 1 ? 1 : ms > LISTEN_MAX_SLEEP_MS ? LISTEN_MAX_SLEEP_MS : ms;
}

static void notified(void *arg)
{
    (void)arg;
    worker_wake();
}

static void wait_for_work(worker_pool_t *w, uint64_t seen, arena_t *arena)
{
    int64_t ms = idle_ms(w, arena);
    pthread_mutex_lock(&wake_mu);
    if (wake_seq == seen && !atomic_load(&w->stopping)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        wake_waiters++;
        pthread_cond_timedwait(&wake_cv, &wake_mu, &until);
        wake_waiters--;
    }
    pthread_mutex_unlock(&wake_mu);
}

typedef struct heartbeat_arg {
    int64_t id;
    const char *holder;
    int lease_ms;
} heartbeat_arg_t;

static bool do_heartbeat(store_conn_t *c, void *p, err_t *e)
{
    heartbeat_arg_t *h = p;
    return queue_heartbeat(c, h->id, h->holder, h->lease_ms, e);
}

/* A runner: claims jobs (lazily durable: a lost claim is claimed again), runs them, and records
 * their outcomes together with the claim of its next jobs. While jobs are quick it takes them in
 * growing batches (up to BATCH_MAX), one transaction a batch; a slow job drops it back to one at a
 * time, outcomes waiting longer than FLUSH_US are recorded before the next job starts, and once
 * a batch has run for SLOW_US the jobs it has not started go back to the queue. A claimed job
 * whose lease is half gone before it starts has it extended first. Two arenas: the
 * batch being run lives in one while the next is claimed into the other. */
#define BATCH_MAX 128
#define QUICK_US 2000  /* a full batch whose jobs took less than this each: the next is twice as big */
#define FLUSH_US 20000
#define SLOW_US 100000 /* a batch running longer than this gives back the jobs it has not started */

static bool extend_lease(worker_pool_t *w, slot_t *slot, job_t *job)
{
    if (time_now_us() < job->lease_expires_at - (int64_t)w->cfg.lease_ms * 500)
        return true;
    err_t e;
    err_clear(&e);
    heartbeat_arg_t h = {job->id, slot->holder, w->cfg.lease_ms};
    if (in_tx(w->store, true, do_heartbeat, &h, &e))
        return true;
    if (e.code == ERR_CONFLICT) {
        atomic_fetch_add(&n_lost, 1);
        log_warn("job %lld (%s): its lease was lost before it started", (long long)job->id, job->type);
        return false;
    }
    return true; /* the database busy: run it; recording the outcome will tell */
}

static void *runner_main(void *arg)
{
    slot_t *slot = arg;
    worker_pool_t *w = slot->pool;
    arena_t arenas[2];
    arena_init(&arenas[0]);
    arena_init(&arenas[1]);
    job_t *jobs[2] = {calloc(BATCH_MAX, sizeof(job_t)), calloc(BATCH_MAX, sizeof(job_t))};
    outcome_t out[BATCH_MAX];
    int cur = 0, have = 0, want = 1; /* jobs[cur][0..have) are claimed and not yet run */
    while (!atomic_load(&w->stopping) || have) {
        if (!have) {
            pthread_mutex_lock(&wake_mu);
            uint64_t seen = wake_seq;
            pthread_mutex_unlock(&wake_mu);
            arena_reset(&arenas[cur]);
            claim_arg_t a = {.pool = w, .holder = slot->holder, .arena = &arenas[cur], .jobs = jobs[cur], .max = want};
            err_t e;
            err_clear(&e);
            if (!in_tx(w->store, true, do_claim, &a, &e))
                log_warn("worker: claiming a job failed: %s", e.message);
            if (!a.got) {
                wait_for_work(w, seen, &arenas[cur]);
                continue;
            }
            have = a.got;
        }
        int64_t start = time_now_us(), flushed = start;
        int n = 0;
        for (int i = 0; i < have; i++) {
            job_t *job = &jobs[cur][i];
            /* shutting down, or the batch turned slow: the jobs not started go back to the queue,
             * for other runners to take rather than wait behind this one */
            if (atomic_load(&w->stopping) || (i > 0 && time_now_us() - start > SLOW_US)) {
                out[n++] = (outcome_t){.job = job, .outcome = JOB_RELEASE};
                continue;
            }
            if (!extend_lease(w, slot, job))
                continue;
            run_job(w, slot, job, &arenas[cur], &out[n++]);
            if (i + 1 < have && time_now_us() - flushed > FLUSH_US) {
                finish_jobs(w, slot->holder, out, n, NULL);
                n = 0;
                flushed = time_now_us();
            }
        }
        if (have == want && (time_now_us() - start) / have < QUICK_US)
            want = want * 2 > BATCH_MAX ? BATCH_MAX : want * 2;
        else if (have == want)
            want = 1;
        int nxt = cur ^ 1;
        arena_reset(&arenas[nxt]);
        claim_arg_t next = {.pool = w, .holder = slot->holder, .arena = &arenas[nxt], .jobs = jobs[nxt], .max = want};
        have = 0;
        if (n > 0) {
            finish_jobs(w, slot->holder, out, n, atomic_load(&w->stopping) ? NULL : &next);
            have = next.got;
        }
        cur = nxt;
    }
    free(jobs[0]);
    free(jobs[1]);
    arena_free(&arenas[0]);
    arena_free(&arenas[1]);
    return NULL;
}

static void *heartbeat_main(void *arg)
{
    worker_pool_t *w = arg;
    int every_ms = w->cfg.lease_ms / 3;
    for (;;) {
        for (int slept = 0; slept < every_ms; slept += 50) {
            usleep(50000);
            pthread_mutex_lock(&w->mu);
            bool busy = false;
            for (int i = 0; i < w->cfg.concurrency; i++)
                busy |= w->slots[i].job_id != 0;
            pthread_mutex_unlock(&w->mu);
            if (atomic_load(&w->stopping) && !busy)
                return NULL;
        }
        for (int i = 0; i < w->cfg.concurrency; i++) {
            pthread_mutex_lock(&w->mu);
            int64_t id = w->slots[i].job_id;
            pthread_mutex_unlock(&w->mu);
            if (!id)
                continue;
            err_t e;
            err_clear(&e);
            heartbeat_arg_t h = {id, w->slots[i].holder, w->cfg.lease_ms};
            if (!in_tx(w->store, true, do_heartbeat, &h, &e) && e.code != ERR_CONFLICT)
                log_warn("worker: heartbeat of job %lld failed: %s", (long long)id, e.message);
        }
    }
    return NULL;
}

worker_pool_t *worker_start(store_t *s, const worker_config_t *cfg, err_t *e)
{
    pthread_once(&wake_once, wake_init);
    worker_pool_t *w = calloc(1, sizeof *w);
    w->store = s;
    w->cfg = *cfg;
    if (w->cfg.lease_ms <= 0)
        w->cfg.lease_ms = 30000;
    if (w->cfg.poll_ms <= 0)
        w->cfg.poll_ms = 250;
    if (w->cfg.concurrency <= 0)
        w->cfg.concurrency = 1;
    while (w->nqueues < QUEUE_NAMES && w->cfg.queues[w->nqueues])
        w->nqueues++;
    if (w->nqueues == 0) {
        for (int i = 0; i < QUEUE_NAMES; i++)
            w->cfg.queues[i] = queue_names[i];
        w->nqueues = QUEUE_NAMES;
    }
    if (gethostname(w->host, sizeof w->host) != 0)
        snprintf(w->host, sizeof w->host, "host");
    w->host[sizeof w->host - 1] = '\0';
    pthread_mutex_init(&w->mu, NULL);
    if (s->ops->listen && !(w->listener = s->ops->listen(s, QUEUE_CHANNEL, notified, NULL, e)))
        log_warn("worker: %s; polling every %d ms instead", e->message, w->cfg.poll_ms);
    w->slots = calloc((size_t)w->cfg.concurrency, sizeof *w->slots);
    w->runners = calloc((size_t)w->cfg.concurrency, sizeof *w->runners);
    char id[9];
    rand_hex_id(id, 4); /* two processes on one host never share a holder name */
    int started = 0;
    for (int i = 0; i < w->cfg.concurrency; i++) {
        w->slots[i].pool = w;
        snprintf(w->slots[i].holder, sizeof w->slots[i].holder, "%s@%.40s:%d:%s:%d", cfg->name ? cfg->name : "worker",
                 w->host, (int)getpid(), id, i);
        if (pthread_create(&w->runners[i], NULL, runner_main, &w->slots[i]) != 0)
            break;
        started++;
    }
    if (started < w->cfg.concurrency || pthread_create(&w->heartbeat, NULL, heartbeat_main, w) != 0) {
        w->cfg.concurrency = started;
        atomic_store(&w->stopping, true);
        worker_wake();
        for (int i = 0; i < started; i++)
            pthread_join(w->runners[i], NULL);
        if (w->listener)
            s->ops->unlisten(w->listener);
        pthread_mutex_destroy(&w->mu);
        free(w->slots);
        free(w->runners);
        free(w);
        err_set(e, ERR_INTERNAL, "could not start the job worker threads");
        return NULL;
    }
    return w;
}

void worker_quiesce(worker_pool_t *w)
{
    if (!w)
        return;
    atomic_store(&w->stopping, true);
    worker_wake();
}

void worker_stop(worker_pool_t *w, int grace_ms)
{
    if (!w)
        return;
    atomic_store(&w->stopping, true);
    worker_wake();
    /* running jobs may finish within the grace period; then they are asked to stop */
    for (int waited = 0;; waited += 50) {
        pthread_mutex_lock(&w->mu);
        bool busy = false;
        for (int i = 0; i < w->cfg.concurrency; i++)
            busy |= w->slots[i].job_id != 0;
        pthread_mutex_unlock(&w->mu);
        if (!busy)
            break;
        if (waited >= grace_ms)
            atomic_store(&w->stop_running, true);
        if (waited < grace_ms + 5000 && waited + 50 >= grace_ms + 5000) /* a handler that does not look */
            log_warn("worker: a job is still running %d ms after it was asked to stop; waiting for it", 5000);
        usleep(50000);
    }
    for (int i = 0; i < w->cfg.concurrency; i++)
        pthread_join(w->runners[i], NULL);
    pthread_join(w->heartbeat, NULL);
    if (w->listener)
        w->store->ops->unlisten(w->listener);
    pthread_mutex_destroy(&w->mu);
    free(w->slots);
    free(w->runners);
    free(w);
}
