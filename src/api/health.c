/* health: liveness (the process answers), readiness (each dependency answers: 503 when the
 * database does not, "degraded" when only Redis does not), the API summary, the Prometheus metrics
 * and the OpenAPI document. */
#include <string.h>

#include "../base/embed.h"
#include "../base/util.h"
#include "../net/metrics.h"
#include "../net/ratelimit_mw.h"
#include "../infra/modelclient.h"
#include "../infra/redis.h"
#include "../domain/worker.h"
#include "../net/respcache.h"
#include "app.h"

app_t g_app;

store_conn_t *app_store(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    store_conn_t *c = g_app.store->ops->acquire(g_app.store, 2000, &e);
    if (!c)
        http_res_error(req, res, &e);
    return c;
}

void app_store_done(store_conn_t *c)
{
    if (c)
        g_app.store->ops->release(g_app.store, c);
}

void health_live(http_request_t *req, http_response_t *res)
{
    static const char body[] = "{\"status\":\"ok\"}";
    http_res_text(res, 200, "application/json", body, sizeof body - 1);
    http_res_header(res, "Cache-Control", "no-store");
}

/* Readiness: the database must answer (503 otherwise: this instance cannot serve). Redis is
 * checked and reported, but an instance without it still serves every request, uncached, so its
 * absence makes the status "degraded", not unready. So does a model service whose breaker is open
 * (features are computed in-process meanwhile). */
void health_ready(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    uint64_t t0 = time_mono_ns();
    store_conn_t *c = g_app.store->ops->acquire(g_app.store, 1000, &e);
    bool ok = c && g_app.store->ops->ping(c, &e);
    app_store_done(c);
    double ms = (double)(time_mono_ns() - t0) / 1e6;
    bool redis_ok = true;
    double redis_ms = 0;
    err_t re;
    err_clear(&re);
    if (g_app.redis)
        redis_ok = redis_ping(g_app.redis, &redis_ms, &re);
    const char *model = modelclient_state(g_model);
    bool model_ok = strcmp(model, "open") != 0 && strcmp(model, "half_open") != 0;
    jw_t w;
    http_res_json(res, ok ? 200 : 503, &w);
    jw_obj_begin(&w);
    jw_kstr(&w, "status", !ok ? "unavailable" : redis_ok && model_ok ? "ok" : "degraded");
    jw_key(&w, "checks");
    jw_obj_begin(&w);
    jw_key(&w, "database");
    jw_obj_begin(&w);
    jw_kstr(&w, "status", ok ? "ok" : "unavailable");
    jw_kstr(&w, "backend", g_app.store->ops->name);
    jw_key(&w, "latency_ms");
    jw_double(&w, (double)(int64_t)(ms * 1000) / 1000);
    if (!ok)
        jw_kstr(&w, "error", e.message);
    jw_obj_end(&w);
    if (g_app.redis) {
        jw_key(&w, "redis");
        jw_obj_begin(&w);
        jw_kstr(&w, "status", redis_ok ? "ok" : "unavailable");
        jw_key(&w, "latency_ms");
        jw_double(&w, (double)(int64_t)(redis_ms * 1000) / 1000);
        if (!redis_ok)
            jw_kstr(&w, "error", re.message);
        int near = respcache_near_state();
        if (near >= 0)
            jw_kstr(&w, "near_cache", near ? "live" : "off");
        jw_obj_end(&w);
    }
    jw_key(&w, "model_service");
    jw_obj_begin(&w);
    jw_kstr(&w, "status", model);
    jw_obj_end(&w);
    jw_obj_end(&w);
    jw_obj_end(&w);
    http_res_header(res, "Cache-Control", "no-store");
    if (!ok)
        http_res_header(res, "Retry-After", "5");
}

void health_api(http_request_t *req, http_response_t *res)
{
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    int64_t count = 0;
    bool ok = g_app.store->ops->property_count(c, &count, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_kstr(&w, "status", "ok");
    jw_kstr(&w, "version", HEARTH_VERSION);
    jw_kstr(&w, "database", g_app.store->ops->name);
    jw_kint(&w, "uptime_seconds", (time_now_us() - g_app.started_at_us) / 1000000);
    jw_kint(&w, "properties", count);
    jw_obj_end(&w);
}

static void jobs_render_metrics(http_request_t *req, buf_t *out);

void metrics_get(http_request_t *req, http_response_t *res)
{
    if (!g_app.cfg->metrics_public && !req->peer_loopback) { /* elsewhere: admins only */
        if (!req->auth_present) {
            http_res_errorf(req, res, ERR_FORBIDDEN,
                            "metrics are served to loopback clients and admins only (HEARTH_METRICS_PUBLIC)");
            return;
        }
        store_conn_t *c = app_store(req, res);
        if (!c)
            return;
        actor_t actor;
        bool ok = auth_actor(req, res, c, ROLE_ADMIN, &actor);
        app_store_done(c);
        if (!ok)
            return;
    }
    res->status = 200;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    metrics_render(&res->body);
    respcache_render_metrics(&res->body);
    ratelimit_mw_render_metrics(&res->body);
    modelclient_render_metrics(g_model, &res->body);
    store_stats_t st;
    g_app.store->ops->stats(g_app.store, &st);
    buf_printf(&res->body,
               "# HELP hearth_store_pool_size Store connections in the pool.\n# TYPE hearth_store_pool_size gauge\n"
               "hearth_store_pool_size{backend=\"%s\"} %d\n"
               "# HELP hearth_store_pool_in_use Store connections lent out now.\n# TYPE hearth_store_pool_in_use gauge\n"
               "hearth_store_pool_in_use{backend=\"%s\"} %d\n"
               "# HELP hearth_store_pool_waits_total Acquisitions that had to wait.\n# TYPE hearth_store_pool_waits_total counter\n"
               "hearth_store_pool_waits_total{backend=\"%s\"} %llu\n"
               "# HELP hearth_store_pool_timeouts_total Acquisitions that gave up (503).\n# TYPE hearth_store_pool_timeouts_total counter\n"
               "hearth_store_pool_timeouts_total{backend=\"%s\"} %llu\n"
               "# HELP hearth_uptime_seconds Seconds since start.\n# TYPE hearth_uptime_seconds gauge\n"
               "hearth_uptime_seconds %lld\n",
               g_app.store->ops->name, st.pool_size, g_app.store->ops->name, st.in_use, g_app.store->ops->name,
               (unsigned long long)st.waits, g_app.store->ops->name, (unsigned long long)st.timeouts,
               (long long)((time_now_us() - g_app.started_at_us) / 1000000));
    jobs_render_metrics(req, &res->body);
}

/* The queues as the database sees them (every process's jobs), and this process's runners. */
static void jobs_render_metrics(http_request_t *req, buf_t *out)
{
    err_t e;
    err_clear(&e);
    store_conn_t *c = g_app.store->ops->acquire(g_app.store, 1000, &e);
    queue_stats_t qs;
    bool ok = c && queue_stats(c, req->arena, &qs, &e);
    app_store_done(c);
    if (ok) {
        static const struct {
            const char *name, *help;
        } m[] = {
            {"hearth_jobs_waiting", "Jobs queued or waiting for a retry."},
            {"hearth_jobs_running", "Jobs running (leased)."},
            {"hearth_jobs_retrying", "Jobs whose last attempt failed, waiting for their retry."},
            {"hearth_jobs_dead", "Jobs that used up their attempts (the dead-letter queue)."},
            {"hearth_jobs_oldest_waiting_seconds", "Age of the oldest runnable job, by its run_at."},
        };
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
            buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", m[i].name, m[i].help, m[i].name);
            for (int k = 0; k < QUEUE_NAMES; k++) {
                if (i == 4)
                    buf_printf(out, "%s{queue=\"%s\"} %.3f\n", m[i].name, queue_names[k], qs.oldest_s[k]);
                else {
                    int64_t v = i == 0 ? qs.waiting[k] : i == 1 ? qs.running[k] : i == 2 ? qs.failed[k] : qs.dead[k];
                    buf_printf(out, "%s{queue=\"%s\"} %lld\n", m[i].name, queue_names[k], (long long)v);
                }
            }
        }
    }
    worker_counts_t wc;
    worker_counts(&wc);
    buf_printf(out,
               "# HELP hearth_jobs_finished_total Jobs this process's runners finished, by outcome.\n"
               "# TYPE hearth_jobs_finished_total counter\n"
               "hearth_jobs_finished_total{outcome=\"succeeded\"} %llu\n"
               "hearth_jobs_finished_total{outcome=\"retried\"} %llu\n"
               "hearth_jobs_finished_total{outcome=\"dead\"} %llu\n"
               "hearth_jobs_finished_total{outcome=\"released\"} %llu\n"
               "hearth_jobs_finished_total{outcome=\"lost\"} %llu\n",
               (unsigned long long)wc.succeeded, (unsigned long long)wc.retried, (unsigned long long)wc.dead,
               (unsigned long long)wc.released, (unsigned long long)wc.lost);
}

void openapi_get(http_request_t *req, http_response_t *res)
{
    const embed_file_t *f = embed_find("docs/openapi.json");
    http_res_text(res, 200, "application/json", f->start, (size_t)(f->end - f->start));
}
