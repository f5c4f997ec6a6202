/* test_queue: the job queue and the outbox on a temporary SQLite store, below the HTTP layer:
 * an event written in a transaction that rolls back leaves nothing to publish; a job enqueued in a
 * rolled-back transaction never runs; a claim takes the lease exactly once, in queue order; a job
 * whose lease was lost cannot be finished by its old holder; batches enqueue, claim and finish in
 * order, a lost lease in a batch leaving the rest to succeed; failures back off and end dead; group
 * commit (store_tx_group) from many threads keeps every caller's outcome its own. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/util.h"
#include "domain/queue.h"
#include "infra/store.h"

typedef struct fixture {
    char dir[64], path[128];
    store_t *s;
    store_conn_t *c;
    arena_t a;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/hearth-test-queue-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/db.sqlite", f->dir);
    err_t e;
    err_clear(&e);
    if (!(f->s = store_sqlite_open(f->path, 2, &e)) || f->s->ops->migrate(f->s, &e) < 0 ||
        !(f->c = f->s->ops->acquire(f->s, 1000, &e))) {
        fprintf(stderr, "store: %s\n", e.message);
        return -1;
    }
    arena_init(&f->a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    f->s->ops->release(f->s, f->c);
    f->s->ops->close(f->s);
    arena_free(&f->a);
    char p[160];
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int64_t count(fixture_t *f, const char *sql)
{
    err_t e;
    err_clear(&e);
    store_rows_t r;
    assert_true(f->s->ops->query(f->c, sql, 0, NULL, &f->a, &r, &e));
    return strtoll(store_cell(&r, 0, 0), NULL, 10);
}

static void rolled_back_event_is_not_there(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    store_event_t ev = {.channel = "property:1", .type = "property_updated", .data = "{\"id\":1}"};
    assert_true(f->s->ops->begin(f->c, &e));
    assert_true(store_event_write(f->c, &ev, &e));
    assert_true(f->s->ops->end(f->c, false, &e)); /* rolled back */
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events"), 0);
    assert_true(f->s->ops->begin(f->c, &e));
    assert_true(store_event_write(f->c, &ev, &e));
    assert_true(f->s->ops->end(f->c, true, &e));
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"), 1);
}

static void rolled_back_job_never_runs(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    job_t j;
    bool existed, got;
    job_spec_t spec = {.type = "noop"};
    assert_true(f->s->ops->begin(f->c, &e));
    assert_true(queue_enqueue(f->c, &spec, &f->a, &j, &existed, &e));
    assert_true(f->s->ops->end(f->c, false, &e));
    assert_true(queue_claim(f->c, NULL, 0, "w1", 30000, &f->a, &j, &got, &e));
    assert_false(got);
    assert_int_equal(count(f, "SELECT count(*) FROM jobs"), 0);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events"), 0); /* nor its job_queued event */
}

static void claims_follow_queue_order_and_leases(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    job_t low, high, j;
    bool existed, got;
    const char *all[] = {"high", "default", "low"};
    assert_true(queue_enqueue(f->c, &(job_spec_t){.type = "noop", .queue = "low"}, &f->a, &low, &existed, &e));
    assert_true(queue_enqueue(f->c, &(job_spec_t){.type = "noop", .queue = "high"}, &f->a, &high, &existed, &e));
    assert_true(queue_claim(f->c, all, 3, "w1", 30000, &f->a, &j, &got, &e));
    assert_true(got);
    assert_int_equal(j.id, high.id); /* high before low, whatever the order of arrival */
    assert_int_equal(j.attempts, 1);
    assert_true(queue_claim(f->c, all, 3, "w2", 30000, &f->a, &j, &got, &e));
    assert_int_equal(j.id, low.id);
    assert_true(queue_claim(f->c, all, 3, "w3", 30000, &f->a, &j, &got, &e));
    assert_false(got); /* both leased */
    /* w1's lease is taken over once it has expired: then w1 can no longer finish the job */
    assert_true(queue_claim(f->c, all, 3, "w4", -1, &f->a, &j, &got, &e)); /* nothing: leases still live */
    assert_false(got);
    err_clear(&e);
    assert_true(queue_heartbeat(f->c, high.id, "w1", -1000, &e)); /* make w1's lease expire */
    assert_true(queue_claim(f->c, all, 3, "w5", 30000, &f->a, &j, &got, &e));
    assert_true(got);
    assert_int_equal(j.id, high.id);
    assert_int_equal(j.attempts, 2);
    assert_false(queue_succeed(f->c, high.id, "w1", "{}", &e));
    assert_int_equal(e.code, ERR_CONFLICT);
    err_clear(&e);
    assert_true(queue_succeed(f->c, high.id, "w5", "{}", &e));
}

/* Batches: enqueued in order with their events; claimed in queue order, at most as many as asked;
 * finished together, a job whose lease is gone left as it is while the others succeed. */
static void batches_keep_order_and_leases(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    enum { N = 100 };
    job_spec_t specs[N];
    job_t jobs[N], claimed[N];
    bool existed[N];
    for (int i = 0; i < N; i++)
        specs[i] = (job_spec_t){.type = "noop", .queue = i % 10 == 3 ? "high" : "default", .priority = i % 7 == 0};
    assert_true(queue_enqueue_many(f->c, specs, N, &f->a, jobs, existed, &e));
    for (int i = 0; i < N; i++) {
        assert_false(existed[i]);
        assert_string_equal(jobs[i].queue, specs[i].queue);
        if (i)
            assert_true(jobs[i].id > jobs[i - 1].id); /* out[i] is specs[i]'s job */
    }
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events WHERE type = 'job_queued'"), N);
    int got = 0;
    assert_true(queue_claim_many(f->c, NULL, 0, "w1", 30000, 25, &f->a, claimed, &got, &e));
    assert_int_equal(got, 25);
    for (int i = 0; i < got; i++) { /* the 10 high first, then default by priority, then id */
        assert_string_equal(claimed[i].status, "running");
        assert_string_equal(claimed[i].queue, i < 10 ? "high" : "default");
        if (i && strcmp(claimed[i].queue, claimed[i - 1].queue) == 0)
            assert_true(claimed[i].priority < claimed[i - 1].priority ||
                        (claimed[i].priority == claimed[i - 1].priority && claimed[i].id > claimed[i - 1].id));
    }
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events WHERE type = 'job_started'"), 25);
    /* the lease of claimed[5] is taken over by w2; w1 then finishes all 25 */
    assert_true(queue_heartbeat(f->c, claimed[5].id, "w1", -1000, &e));
    job_t taken;
    bool one;
    assert_true(queue_claim(f->c, NULL, 0, "w2", 30000, &f->a, &taken, &one, &e));
    assert_true(one);
    assert_int_equal(taken.id, claimed[5].id);
    int64_t ids[25];
    const char *results[25];
    bool recorded[25];
    for (int i = 0; i < 25; i++) {
        ids[i] = claimed[i].id;
        results[i] = i % 2 ? "{\"n\":1}" : NULL;
    }
    assert_true(queue_succeed_many(f->c, "w1", ids, results, 25, &f->a, recorded, &e));
    for (int i = 0; i < 25; i++)
        assert_int_equal(recorded[i], i != 5);
    assert_int_equal(count(f, "SELECT count(*) FROM jobs WHERE status = 'succeeded'"), 24);
    assert_int_equal(count(f, "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND result = '{\"n\":1}'"), 11); /* odd ones but 5 */
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events WHERE type = 'job_complete'"), 24);
    job_t j;
    assert_true(queue_get(f->c, claimed[5].id, &f->a, &j, &e));
    assert_string_equal(j.status, "running");
    assert_string_equal(j.lease_holder, "w2");
}

static void failures_back_off_then_die(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    job_t j;
    bool existed, got;
    assert_true(queue_enqueue(f->c, &(job_spec_t){.type = "noop", .max_attempts = 2}, &f->a, &j, &existed, &e));
    assert_true(queue_claim(f->c, NULL, 0, "w1", 30000, &f->a, &j, &got, &e));
    int64_t before = time_now_us(), retry_at = 0;
    assert_true(queue_fail(f->c, &j, "w1", "boom", false, &retry_at, &e));
    assert_true(retry_at >= before && retry_at <= before + 1000000 + 100000); /* full jitter in [0, 1 s] */
    job_t now;
    assert_true(queue_get(f->c, j.id, &f->a, &now, &e));
    assert_string_equal(now.status, "failed");
    assert_int_equal(now.run_at, retry_at);
    while (time_now_us() < retry_at)
        usleep(10000);
    assert_true(queue_claim(f->c, NULL, 0, "w1", 30000, &f->a, &j, &got, &e));
    assert_true(got);
    assert_int_equal(j.attempts, 2);
    assert_true(queue_fail(f->c, &j, "w1", "boom again", false, &retry_at, &e));
    assert_int_equal(retry_at, 0);
    assert_true(queue_get(f->c, j.id, &f->a, &now, &e));
    assert_string_equal(now.status, "dead");
    assert_string_equal(now.error, "boom again");
}

/* Group commit: 8 threads enqueue 50 jobs each through store_tx_group; every 5th call of thread 0
 * enqueues and then fails. The failing calls leave nothing, every other call's job is there once. */
#define GROUP_THREADS 8
#define GROUP_CALLS 50

typedef struct group_call {
    bool fail;
    arena_t *a;
    job_t job;
} group_call_t;

static bool group_enqueue(store_conn_t *c, void *p, err_t *e)
{
    group_call_t *g = p;
    bool existed;
    if (!queue_enqueue(c, &(job_spec_t){.type = "noop"}, g->a, &g->job, &existed, e))
        return false;
    return !g->fail || err_set(e, ERR_VALIDATION, "this call fails after its insert");
}

typedef struct group_thread {
    store_t *s;
    int index, ok, failed;
    int64_t ids[GROUP_CALLS];
} group_thread_t;

static void *group_main(void *p)
{
    group_thread_t *t = p;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < GROUP_CALLS; i++) {
        err_t e;
        err_clear(&e);
        store_conn_t *c = t->s->ops->acquire(t->s, 10000, &e);
        if (!c)
            break;
        group_call_t g = {.fail = t->index == 0 && i % 5 == 0, .a = &a};
        if (store_tx_group(t->s, c, group_enqueue, &g, &e))
            t->ids[t->ok++] = g.job.id;
        else if (e.code == ERR_VALIDATION && g.fail)
            t->failed++;
        t->s->ops->release(t->s, c);
    }
    arena_free(&a);
    return NULL;
}

static void group_commit_keeps_outcomes_apart(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    store_t *s = store_sqlite_open(f->path, GROUP_THREADS, &e);
    assert_non_null(s);
    group_thread_t t[GROUP_THREADS];
    pthread_t th[GROUP_THREADS];
    for (int i = 0; i < GROUP_THREADS; i++) {
        t[i] = (group_thread_t){.s = s, .index = i};
        assert_int_equal(pthread_create(&th[i], NULL, group_main, &t[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < GROUP_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += t[i].ok;
    }
    assert_int_equal(t[0].failed, GROUP_CALLS / 5);
    assert_int_equal(ok, GROUP_THREADS * GROUP_CALLS - GROUP_CALLS / 5);
    assert_int_equal(count(f, "SELECT count(*) FROM jobs"), ok);
    assert_int_equal(count(f, "SELECT count(*) FROM outbox_events"), ok); /* one job_queued each */
    for (int i = 0; i < GROUP_THREADS; i++)
        for (int k = 0; k < t[i].ok; k++) {
            job_t j;
            assert_true(queue_get(f->c, t[i].ids[k], &f->a, &j, &e));
        }
    s->ops->close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(rolled_back_event_is_not_there, setup, teardown),
        cmocka_unit_test_setup_teardown(rolled_back_job_never_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(claims_follow_queue_order_and_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(batches_keep_order_and_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(failures_back_off_then_die, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_keeps_outcomes_apart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
