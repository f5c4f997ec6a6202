/* jobs: the background-job routes. POST /api/imports stores the uploaded file and queues its
 * import in one transaction (both or neither) and answers 202 at once; the job runs on a worker
 * (in `serve` or a `hearth worker`), and GET /api/jobs/{id} follows it. Admins list, enqueue,
 * retry and cancel jobs. A job is visible to its creator and to admins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"
#include "../domain/import.h"
#include "../domain/worker.h"
#include "../net/multipart.h"
#include "app.h"

static void write_job(http_response_t *res, int status, const job_t *j)
{
    jw_t w;
    http_res_json(res, status, &w);
    job_write_json(&w, j);
}

/* An upload and its job, in one transaction. */
typedef struct import_arg {
    const char *name, *content, *format, *source, *idem;
    int64_t user_id;
    arena_t *arena;
    job_t job;
    bool existed;
} import_arg_t;

static bool enqueue_import(store_conn_t *c, import_arg_t *a, err_t *e)
{
    if (a->idem && (!queue_by_key(c, a->idem, a->arena, &a->job, &a->existed, e) || a->existed))
        return a->existed; /* the same key again: the job it made, nothing new stored */
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time_now_us());
    char by[24];
    snprintf(by, sizeof by, "%lld", (long long)a->user_id);
    const char *v[] = {a->name, a->content, by, now};
    store_rows_t r;
    if (!c->store->ops->query(c,
                              "INSERT INTO uploads (name, content, created_by, created_at)"
                              " VALUES ($1, $2, CAST($3 AS BIGINT), CAST($4 AS BIGINT)) RETURNING id",
                              4, v, a->arena, &r, e))
        return false;
    jw_t w;
    buf_t payload;
    buf_init(&payload);
    jw_init(&w, &payload);
    jw_obj_begin(&w);
    jw_kint(&w, "upload_id", strtoll(store_cell(&r, 0, 0), NULL, 10));
    jw_kstr(&w, "format", a->format);
    jw_kstr(&w, "source", a->source);
    jw_kint(&w, "owner_id", a->user_id);
    jw_kstr(&w, "file", a->name);
    jw_obj_end(&w);
    job_spec_t spec = {.type = "import", .payload = buf_cstr(&payload), .max_attempts = 3, .idempotency_key = a->idem,
                       .created_by = a->user_id};
    bool ok = queue_enqueue(c, &spec, a->arena, &a->job, &a->existed, e);
    buf_free(&payload);
    if (ok) { /* the upload lives as long as its job */
        const char *u[] = {store_cell(&r, 0, 0), arena_printf(a->arena, "%lld", (long long)a->job.id)};
        store_rows_t ur;
        ok = c->store->ops->query(c, "UPDATE uploads SET job_id = CAST($2 AS BIGINT) WHERE id = CAST($1 AS BIGINT)", 2, u,
                                  a->arena, &ur, e);
    }
    return ok;
}

void imports_create(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_AGENT | ROLE_ADMIN, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    multipart_t m;
    const multipart_part_t *file = NULL, *fmt = NULL, *src = NULL;
    import_format_t format;
    char fmtname[16] = "";
    if (multipart_parse(http_header(req, "Content-Type"), req->body, req->body_len, req->arena, &m, &e)) {
        file = multipart_get(&m, "file");
        fmt = multipart_get(&m, "format");
        src = multipart_get(&m, "source");
        if (!file)
            err_field(&e, "file", "is required (a multipart part named file)");
        else if (file->len == 0)
            err_field(&e, "file", "is empty");
        else if (memchr(file->data, '\0', file->len) || !utf8_valid(file->data, file->len))
            err_field(&e, "file", "must be UTF-8 text (CSV or JSON)");
        if (fmt && fmt->len < sizeof fmtname) {
            memcpy(fmtname, fmt->data, fmt->len);
            fmtname[fmt->len] = '\0';
        }
        if (!fmt)
            err_field(&e, "format", "is required: ames, sacramento or json");
        else if (!import_format_parse(fmtname, &format))
            err_field(&e, "format", "must be ames, sacramento or json");
        if (src && (src->len > 100 || !utf8_valid(src->data, src->len) || memchr(src->data, '\0', src->len)))
            err_field(&e, "source", "must be at most 100 bytes of text");
    }
    const char *key = http_header(req, "Idempotency-Key");
    if (e.code == ERR_NONE && key && (strlen(key) == 0 || strlen(key) > 200))
        err_field(&e, "Idempotency-Key", "must be 1 to 200 characters");
    if (e.code != ERR_NONE) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    import_arg_t a = {
        .name = file->filename ? file->filename : "upload",
        .content = arena_strndup(req->arena, file->data, file->len),
        .format = fmtname,
        .source = src && src->len ? arena_strndup(req->arena, src->data, src->len) : NULL,
        .idem = key ? arena_printf(req->arena, "import:%lld:%s", (long long)actor.user.id, key) : NULL,
        .user_id = actor.user.id,
        .arena = req->arena,
    };
    store_audit_t audit = auth_audit_entry(req, &actor, "import.create", "job", NULL);
    audit.resource_ref = &a.job.id;
    bool ok = c->store->ops->begin(c, &e) && store_finish(c, enqueue_import(c, &a, &e) && (a.existed || account_audit(c, &audit, &e)), &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    worker_wake();
    jw_t w;
    http_res_json(res, 202, &w);
    jw_obj_begin(&w);
    jw_key(&w, "job");
    job_write_json(&w, &a.job);
    jw_obj_end(&w);
    http_res_header(res, "Location", "/api/jobs/%lld", (long long)a.job.id);
}

/* A job the caller may see: its creator or an admin (403 otherwise). */
static bool visible(const actor_t *actor, const job_t *j, err_t *e)
{
    if (actor->user.role == ROLE_ADMIN || (j->created_by && j->created_by == actor->user.id))
        return true;
    return err_set(e, ERR_FORBIDDEN, "only the job's creator or an admin may see it");
}

void jobs_get(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_ANY, &actor);
    if (!c)
        return;
    int64_t id;
    job_t j;
    bool ok = http_param_id(req, "id", &id, &e) && queue_get(c, id, req->arena, &j, &e) && visible(&actor, &j, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    write_job(res, 200, &j);
    http_res_header(res, "Cache-Control", "no-store");
}

void jobs_list(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_ADMIN, &actor);
    if (!c)
        return;
    http_query_t q;
    job_query_t jq = {.limit = 20};
    static const char *const statuses[] = {"queued", "running", "succeeded", "failed", "dead", "cancelled"};
    if (http_query_parse(req, &q, &e) && api_read_limit(&q, &jq.limit, &e)) {
        const char *st = http_query_get(&q, "status"), *type = http_query_get(&q, "type"),
                   *cur = http_query_get(&q, "cursor");
        if (st && *st) {
            bool known = false;
            for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
                known |= strcmp(st, statuses[i]) == 0;
            if (!known)
                err_field(&e, "status", "must be one of queued, running, succeeded, failed, dead, cancelled");
            jq.status = st;
        }
        if (type && strlen(type) > 100)
            err_field(&e, "type", "must be at most 100 bytes");
        jq.type = type && *type ? type : NULL;
        if (cur && *cur && e.code == ERR_NONE)
            api_read_cursor(cur, "jobs", &jq.before_id, &e);
    }
    job_page_t page;
    bool ok = e.code == ERR_NONE && queue_list(c, &jq, req->arena, &page, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0; i < page.n; i++)
        job_write_json(&w, &page.items[i]);
    jw_arr_end(&w);
    api_write_cursor(&w, "jobs", page.more, page.n ? page.items[page.n - 1].id : 0);
    jw_obj_end(&w);
}

/* POST /api/jobs: one job {"type", "payload", "queue", "priority", "max_attempts", "delay_ms"} of any
 * registered type, or a batch {"jobs": [{...}, ...]} of up to JOBS_BATCH_MAX in one transaction
 * (admins only). Idempotency-Key names the job once (in a batch: the batch, each job by its index). */
#define JOBS_BATCH_MAX 1000

/* Reads one job's fields from `o` into `spec`; a field's error names it within `at` ("" or "jobs[3]"). */
static void read_spec(json_t *o, const char *at, arena_t *a, job_spec_t *spec, err_t *e)
{
    char f[64];
#define FIELD(name) (snprintf(f, sizeof f, "%s%s%s", at, *at ? "." : "", name), f)
    if (!json_is_object(o)) {
        if (*at)
            err_field(e, at, "must be an object");
        else
            err_set(e, ERR_BAD_REQUEST, "the body must be a JSON object");
        return;
    }
    json_t *type = json_object_get(o, "type"), *payload = json_object_get(o, "payload"),
           *queue = json_object_get(o, "queue"), *prio = json_object_get(o, "priority"),
           *max = json_object_get(o, "max_attempts"), *delay = json_object_get(o, "delay_ms");
    if (!json_is_string(type) || !worker_has_handler(json_string_value(type)))
        err_field(e, FIELD("type"), "must be a registered job type");
    else
        spec->type = arena_strdup(a, json_string_value(type));
    if (payload && !json_is_object(payload))
        err_field(e, FIELD("payload"), "must be an object");
    else if (payload) {
        char *text = json_dumps(payload, JSON_COMPACT);
        spec->payload = text ? arena_strdup(a, text) : "{}";
        free(text);
    }
    if (queue && (!json_is_string(queue) || !queue_name_valid(json_string_value(queue))))
        err_field(e, FIELD("queue"), "must be high, default or low");
    else if (queue)
        spec->queue = arena_strdup(a, json_string_value(queue));
    if (prio && (!json_is_integer(prio) || json_integer_value(prio) < -1000 || json_integer_value(prio) > 1000))
        err_field(e, FIELD("priority"), "must be an integer from -1000 to 1000");
    else if (prio)
        spec->priority = (int)json_integer_value(prio);
    if (max && (!json_is_integer(max) || json_integer_value(max) < 1 || json_integer_value(max) > 100))
        err_field(e, FIELD("max_attempts"), "must be an integer from 1 to 100");
    else if (max)
        spec->max_attempts = (int)json_integer_value(max);
    if (delay && (!json_is_integer(delay) || json_integer_value(delay) < 0 || json_integer_value(delay) > 86400000))
        err_field(e, FIELD("delay_ms"), "must be an integer from 0 to 86400000");
    else if (delay)
        spec->run_at = time_now_us() + json_integer_value(delay) * 1000;
#undef FIELD
}

/* Jobs and their audit entry (one for the request), in a transaction; a single job's shared with
 * other enqueues (store.h: store_tx_group). */
typedef struct create_arg {
    job_spec_t *specs;
    int n;
    bool batch;
    store_audit_t *audit;
    arena_t *arena;
    job_t *jobs;
    bool *existed;
    bool all_existed; /* every job was there already (the same Idempotency-Key again) */
} create_arg_t;

static bool do_create(store_conn_t *c, void *p, err_t *e)
{
    create_arg_t *a = p;
    if (!queue_enqueue_many(c, a->specs, a->n, a->arena, a->jobs, a->existed, e))
        return false;
    a->all_existed = true;
    for (int i = 0; i < a->n; i++)
        a->all_existed &= a->existed[i];
    if (a->all_existed)
        return true;
    if (a->batch) { /* the batch's ids in the entry's detail */
        jw_t w;
        buf_t d;
        buf_init(&d);
        jw_init(&w, &d);
        jw_obj_begin(&w);
        jw_kint(&w, "count", a->n);
        jw_key(&w, "ids");
        jw_arr_begin(&w);
        for (int i = 0; i < a->n; i++)
            jw_int(&w, a->jobs[i].id);
        jw_arr_end(&w);
        jw_obj_end(&w);
        a->audit->detail = arena_strndup(a->arena, d.data, d.len);
        buf_free(&d);
    } else {
        a->audit->resource_ref = &a->jobs[0].id;
    }
    return account_audit(c, a->audit, e);
}

void jobs_create(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_ADMIN, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    json_t *body = http_json_body(req, &e);
    json_t *list = json_is_object(body) ? json_object_get(body, "jobs") : NULL;
    bool batch = list != NULL;
    int n = 1;
    if (batch && (!json_is_array(list) || json_array_size(list) < 1 || json_array_size(list) > JOBS_BATCH_MAX))
        err_field(&e, "jobs", "must be an array of 1 to %d jobs", JOBS_BATCH_MAX);
    else if (batch)
        n = (int)json_array_size(list);
    job_spec_t *specs = arena_alloc(req->arena, sizeof *specs * (size_t)n);
    for (int i = 0; i < n && body && e.code != ERR_BAD_REQUEST && (!batch || json_is_array(list)); i++) {
        specs[i] = (job_spec_t){.created_by = actor.user.id};
        read_spec(batch ? json_array_get(list, (size_t)i) : body, batch ? arena_printf(req->arena, "jobs[%d]", i) : "",
                  req->arena, &specs[i], &e);
    }
    json_decref(body);
    const char *key = http_header(req, "Idempotency-Key");
    if (e.code == ERR_NONE && key && (strlen(key) == 0 || strlen(key) > 200))
        err_field(&e, "Idempotency-Key", "must be 1 to 200 characters");
    for (int i = 0; i < n && e.code == ERR_NONE && key; i++)
        specs[i].idempotency_key = batch ? arena_printf(req->arena, "api:%s#%d", key, i)
                                         : arena_printf(req->arena, "api:%s", key);
    store_audit_t audit = auth_audit_entry(req, &actor, batch ? "job.create_batch" : "job.create", "job", NULL);
    job_t *jobs = arena_alloc(req->arena, sizeof *jobs * (size_t)n);
    bool *existed = arena_alloc(req->arena, sizeof *existed * (size_t)n);
    create_arg_t a = {.specs = specs, .n = n, .batch = batch, .audit = &audit, .arena = req->arena, .jobs = jobs,
                      .existed = existed};
    bool ok = e.code == ERR_NONE;
    if (ok && batch) /* its own transaction: a batch is work enough for one commit */
        ok = c->store->ops->begin(c, &e) && store_finish(c, do_create(c, &a, &e), &e);
    else if (ok) /* group commit: single enqueues arriving together share one transaction (store.h) */
        ok = store_tx_group(c->store, c, do_create, &a, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    worker_wake();
    if (!batch) {
        write_job(res, a.all_existed ? 200 : 202, &jobs[0]);
        http_res_header(res, "Location", "/api/jobs/%lld", (long long)jobs[0].id);
        return;
    }
    jw_t w;
    http_res_json(res, a.all_existed ? 200 : 202, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        job_write_json(&w, &jobs[i]);
    jw_arr_end(&w);
    jw_obj_end(&w);
}

static void admin_transition(http_request_t *req, http_response_t *res,
                             bool (*fn)(store_conn_t *, int64_t, arena_t *, job_t *, err_t *), const char *action)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_ADMIN, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    int64_t id;
    job_t j;
    bool ok = http_param_id(req, "id", &id, &e) && c->store->ops->begin(c, &e);
    if (ok) {
        store_audit_t audit = auth_audit_entry(req, &actor, action, "job", arena_printf(req->arena, "%lld", (long long)id));
        ok = store_finish(c, fn(c, id, req->arena, &j, &e) && account_audit(c, &audit, &e), &e);
    }
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    worker_wake();
    write_job(res, 200, &j);
}

void jobs_retry(http_request_t *req, http_response_t *res) { admin_transition(req, res, queue_retry, "job.retry"); }
void jobs_cancel(http_request_t *req, http_response_t *res) { admin_transition(req, res, queue_cancel, "job.cancel"); }
