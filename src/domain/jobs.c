/* jobs: the job types hearth runs (worker.h registers them by type):
 *
 *   noop     does nothing and succeeds: a probe of the queue itself (and the benchmark's job).
 *   import   imports an uploaded file (POST /api/imports): payload {"upload_id", "format",
 *            "source", "owner_id"}; progress by rows written; the result is the import's summary.
 *   prune    deletes old events, finished jobs and their uploads (the hourly `prune` schedule).
 *   train    trains a new price model version (pricing.c): payload {"activate": bool}; the result
 *            is the version and each market's cross-validated metrics (`serve --demo` queues one
 *            when there is no model yet).
 *
 * With HEARTH_TEST_JOBS=1 (tests only, never in production) three more: test.record appends its
 * job id to DATA_DIR/test-jobs.log when it succeeds (exactly-once checks), optionally after
 * sleeping payload.sleep_ms with progress; test.fail always fails; test.sleep sleeps and
 * succeeds. */
#include "jobs.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/jw.h"
#include "../base/util.h"
#include "import.h"
#include "pricing.h"

static char test_log[1100], model_dir[1100];
static void (*changed)(void);

static job_outcome_t job_noop(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    (void)ctx, (void)job, (void)error, (void)errlen;
    buf_puts(result, "{}");
    return JOB_DONE;
}

/* Import ---------------------------------------------------------------------------------------- */

typedef struct import_state {
    job_ctx_t *ctx;
    int64_t estimate; /* rows, from the line count */
} import_state_t;

static bool import_progress_cb(void *arg, int64_t rows)
{
    import_state_t *st = arg;
    int pct = st->estimate > 0 ? (int)(rows * 99 / st->estimate) : 50;
    char msg[96];
    snprintf(msg, sizeof msg, "%lld rows", (long long)rows);
    return job_progress(st->ctx, pct > 99 ? 99 : pct, msg);
}

static job_outcome_t job_import(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    json_t *p = json_loads(job->payload, 0, NULL);
    json_t *upload = p ? json_object_get(p, "upload_id") : NULL, *fmt = p ? json_object_get(p, "format") : NULL;
    import_format_t format;
    if (!json_is_integer(upload) || !json_is_string(fmt) || !import_format_parse(json_string_value(fmt), &format)) {
        json_decref(p);
        snprintf(error, errlen, "payload must have upload_id and format (ames, sacramento or json)");
        return JOB_FAIL;
    }
    const char *source = json_string_value(json_object_get(p, "source"));
    int64_t owner = json_integer_value(json_object_get(p, "owner_id"));
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)json_integer_value(upload));
    store_t *s = job_store(ctx);
    err_t e;
    err_clear(&e);
    arena_t a;
    arena_init(&a);
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    store_rows_t r = {0};
    const char *v[] = {id};
    bool ok = c && s->ops->query(c, "SELECT content FROM uploads WHERE id = CAST($1 AS BIGINT)", 1, v, &a, &r, &e);
    if (c)
        s->ops->release(s, c);
    job_outcome_t out = JOB_DONE;
    if (!ok) {
        snprintf(error, errlen, "reading the upload: %s", e.message);
        out = JOB_RETRY;
    } else if (r.nrows != 1 || !store_cell(&r, 0, 0)) {
        snprintf(error, errlen, "upload %s is gone", id);
        out = JOB_FAIL;
    } else {
        const char *data = store_cell(&r, 0, 0);
        size_t len = strlen(data);
        import_state_t st = {.ctx = ctx};
        for (const char *q = data; (q = memchr(q, '\n', len - (size_t)(q - data))); q++)
            st.estimate++;
        job_progress(ctx, 0, "starting");
        import_progress_t progress = {import_progress_cb, &st};
        import_report_t *rep = malloc(sizeof *rep);
        if (!import_run(s, data, len, format, source && *source ? source : NULL, owner, &progress, rep, &e)) {
            snprintf(error, errlen, "%s", e.message);
            out = job_should_stop(ctx)                                    ? JOB_RELEASE
                  : e.code == ERR_UNAVAILABLE || e.code == ERR_CONFLICT ? JOB_RETRY /* busy, or raced: again */
                                                                        : JOB_FAIL;
        } else {
            jw_t w;
            jw_init(&w, result);
            jw_obj_begin(&w);
            jw_kint(&w, "inserted", rep->inserted);
            jw_kint(&w, "updated", rep->updated);
            jw_kint(&w, "unchanged", rep->unchanged);
            jw_kint(&w, "rejected", rep->rejected);
            jw_key(&w, "rejections");
            jw_arr_begin(&w);
            for (int i = 0; i < rep->nrejections; i++) {
                jw_obj_begin(&w);
                jw_kint(&w, "line", rep->rejections[i].line);
                jw_kstr(&w, "message", rep->rejections[i].message);
                jw_obj_end(&w);
            }
            jw_arr_end(&w);
            jw_obj_end(&w);
            job_progress(ctx, 100, "done");
        }
        if (changed && (rep->inserted || rep->updated))
            changed(); /* also after a failure: the batches written stay written */
        free(rep);
    }
    arena_free(&a);
    json_decref(p);
    return out;
}

/* Pruning ------------------------------------------------------------------------------------------
 * Published events after a day; finished jobs after a week, and the uploads of those jobs. Run
 * hourly by the `prune` schedule (schedule.h); payload {"events_hours": N, "jobs_days": N} to
 * change the periods. */

#define EVENTS_KEEP_H 24
#define JOBS_KEEP_D 7

static job_outcome_t job_prune(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    json_t *p = json_loads(job->payload, 0, NULL);
    json_t *ehj = json_object_get(p, "events_hours"), *jdj = json_object_get(p, "jobs_days");
    json_int_t eh = json_is_integer(ehj) ? json_integer_value(ehj) : EVENTS_KEEP_H;
    json_int_t jd = json_is_integer(jdj) ? json_integer_value(jdj) : JOBS_KEEP_D;
    json_decref(p);
    if (eh < 0 || jd < 0 || eh > 24 * 3650 || jd > 3650) {
        snprintf(error, errlen, "events_hours and jobs_days must be from 0 to ten years");
        return JOB_FAIL;
    }
    int64_t now = time_now_us();
    int64_t events_before = now - eh * 3600LL * 1000000;
    int64_t jobs_before = now - jd * 86400LL * 1000000;
    store_t *s = job_store(ctx);
    err_t e;
    err_clear(&e);
    arena_t a;
    arena_init(&a);
    const char *v1[] = {arena_printf(&a, "%lld", (long long)events_before)};
    const char *v2[] = {arena_printf(&a, "%lld", (long long)jobs_before)};
    store_rows_t r1 = {0}, r2 = {0}, r3 = {0};
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    bool ok = c && s->ops->begin(c, &e);
    if (ok) {
        ok = s->ops->query(c, "DELETE FROM outbox_events WHERE published_at IS NOT NULL AND published_at < CAST($1 AS BIGINT)",
                           1, v1, &a, &r1, &e) &&
             /* an upload goes with its job, once that has finished (or when it never got one) */
             s->ops->query(c,
                           "DELETE FROM uploads WHERE created_at < CAST($1 AS BIGINT) AND (job_id IS NULL OR job_id IN"
                           " (SELECT id FROM jobs WHERE status IN ('succeeded', 'dead', 'cancelled')"
                           " AND finished_at < CAST($1 AS BIGINT)))",
                           1, v2, &a, &r2, &e) &&
             s->ops->query(c,
                           "DELETE FROM jobs WHERE status IN ('succeeded', 'dead', 'cancelled') AND finished_at < CAST($1 AS BIGINT)",
                           1, v2, &a, &r3, &e);
        ok = store_finish(c, ok, &e);
    }
    if (c)
        s->ops->release(s, c);
    arena_free(&a);
    if (!ok) {
        snprintf(error, errlen, "%s", e.message);
        return JOB_RETRY;
    }
    buf_printf(result, "{\"events\":%lld,\"uploads\":%lld,\"jobs\":%lld}", (long long)r1.changes, (long long)r2.changes,
               (long long)r3.changes);
    return JOB_DONE;
}

/* Test handlers --------------------------------------------------------------------------------- */

static bool sleep_with_progress(job_ctx_t *ctx, const job_t *job)
{
    json_t *p = json_loads(job->payload, 0, NULL);
    int64_t ms = json_integer_value(json_object_get(p, "sleep_ms"));
    json_decref(p);
    for (int64_t slept = 0; slept < ms; slept += 50) {
        if (!job_progress(ctx, (int)(slept * 100 / ms), "sleeping"))
            return false;
        usleep(50000);
    }
    return true;
}

static job_outcome_t job_test_record(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    if (!sleep_with_progress(ctx, job))
        return JOB_RELEASE;
    int fd = open(test_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(error, errlen, "cannot open %s", test_log);
        return JOB_RETRY;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%lld\n", (long long)job->id);
    bool ok = write(fd, line, (size_t)n) == n;
    close(fd);
    buf_printf(result, "{\"recorded\":%lld}", (long long)job->id);
    return ok ? JOB_DONE : JOB_RETRY;
}

static job_outcome_t job_test_fail(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    (void)ctx, (void)result;
    snprintf(error, errlen, "always fails (attempt %d)", job->attempts);
    return JOB_RETRY;
}

static job_outcome_t job_test_sleep(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    (void)error, (void)errlen;
    if (!sleep_with_progress(ctx, job))
        return JOB_RELEASE;
    buf_puts(result, "{}");
    return JOB_DONE;
}

static job_outcome_t job_train(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    json_t *p = json_loads(job->payload, 0, NULL);
    train_options_t o = {.folds = 5, .seed = 42, .quiet = true, .activate = json_is_true(json_object_get(p, "activate"))};
    json_decref(p);
    job_progress(ctx, 1, "training");
    err_t e;
    err_clear(&e);
    int version = 0;
    market_metrics_t m[MARKET__COUNT];
    if (!pricing_train(job_store(ctx), model_dir, &o, &version, m, &e)) {
        snprintf(error, errlen, "%s", e.message);
        return e.code == ERR_VALIDATION ? JOB_FAIL : JOB_RETRY;
    }
    jw_t w;
    jw_init(&w, result);
    jw_obj_begin(&w);
    jw_kint(&w, "version", version);
    jw_key(&w, "markets");
    jw_obj_begin(&w);
    for (int k = 0; k < MARKET__COUNT; k++) {
        if (!m[k].rows)
            continue;
        jw_key(&w, market_names[k]);
        jw_obj_begin(&w);
        jw_kint(&w, "rows", m[k].rows);
        jw_key(&w, "rmsle");
        jw_double(&w, m[k].rmsle);
        jw_key(&w, "r2");
        jw_double(&w, m[k].r2);
        jw_obj_end(&w);
    }
    jw_obj_end(&w);
    jw_obj_end(&w);
    return JOB_DONE;
}

void jobs_register(const char *data_dir, bool test_handlers, void (*listings_changed)(void))
{
    changed = listings_changed;
    snprintf(model_dir, sizeof model_dir, "%s", data_dir);
    worker_register("train", job_train);
    worker_register("noop", job_noop);
    worker_register("import", job_import);
    worker_register("prune", job_prune);
    if (test_handlers) {
        snprintf(test_log, sizeof test_log, "%s/test-jobs.log", data_dir);
        worker_register("test.record", job_test_record);
        worker_register("test.fail", job_test_fail);
        worker_register("test.sleep", job_test_sleep);
    }
}
