/* serve: `hearth serve [--listen ADDR] [--demo]`: apply pending migrations, load the demo data
 * set into an empty database when asked, and serve HTTP until SIGTERM/SIGINT. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../api/app.h"
#include "../base/log.h"
#include "../base/util.h"
#include "../domain/import.h"
#include "../domain/images.h"
#include "../domain/jobs.h"
#include "../domain/pricing.h"
#include "../domain/schedule.h"
#include "../infra/cache.h"
#include "../infra/modelclient.h"
#include "../infra/redis.h"
#include "../net/ratelimit_mw.h"
#include "../net/respcache.h"
#include "../net/server.h"
#include "commands.h"

static int usage(void)
{
    fprintf(stderr, "usage: hearth serve [--listen HOST:PORT] [--demo]\n");
    return 2;
}

static bool load_demo(store_t *s)
{
    err_t e;
    err_clear(&e);
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    int64_t n = 0;
    bool ok = c && s->ops->property_count(c, &n, &e);
    if (c)
        s->ops->release(s, c);
    if (!ok) {
        fprintf(stderr, "hearth: %s\n", e.message);
        return false;
    }
    if (n > 0) {
        log_info("demo: the database already has %lld properties; nothing loaded", (long long)n);
        return true;
    }
    int64_t owner = 0;
    if (!account_system_id(s, &owner, &e)) {
        fprintf(stderr, "hearth: %s\n", e.message);
        return false;
    }
    import_report_t *rep = malloc(sizeof *rep);
    uint64_t t0 = time_mono_ns();
    ok = import_demo(s, owner, rep, &e);
    if (ok)
        log_info("demo: loaded %lld properties (%lld rows rejected) in %.0f ms", (long long)rep->inserted,
                 (long long)rep->rejected, (double)(time_mono_ns() - t0) / 1e6);
    else
        fprintf(stderr, "hearth: demo import failed: %s\n", e.message);
    free(rep);
    return ok;
}

static void listings_changed(void) { respcache_invalidate(); }

/* --demo without a price model: queue its training (a `train` job; the model is there within
 * seconds, and predictions answer 503 until then). */
static void demo_train(store_t *s)
{
    err_t e;
    err_clear(&e);
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    job_t j;
    bool existed;
    arena_t a;
    arena_init(&a);
    job_spec_t spec = {.type = "train", .payload = "{\"activate\":false}"};
    bool ok = c && s->ops->begin(c, &e) && store_finish(c, queue_enqueue(c, &spec, &a, &j, &existed, &e), &e);
    if (c)
        s->ops->release(s, c);
    if (ok)
        log_info("demo: no price model yet; training one (job %lld)", (long long)j.id);
    else
        log_warn("demo: could not queue the price model's training: %s", e.message);
    arena_free(&a);
    worker_wake();
}

/* SIGTERM: the job runners stop claiming at once and their running jobs share the grace period with
 * the HTTP drain (worker_stop gets what is left of it). */
static worker_pool_t *stopping_jobs;
static int64_t stop_deadline_us;

static void on_stop(void *arg)
{
    const config_t *cfg = arg;
    stop_deadline_us = time_now_us() + (int64_t)cfg->shutdown_timeout_ms * 1000;
    worker_quiesce(stopping_jobs);
}

int cmd_serve(int argc, char **argv)
{
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg))
        return 2;
    bool demo = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--demo") == 0) {
            demo = true;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            char why[512];
            if (!config_set_listen(cfg, argv[++i], why, sizeof why)) {
                fprintf(stderr, "hearth: --listen: %s\n", why);
                return 2;
            }
        } else {
            return usage();
        }
    }
    static schedule_t schedules[SCHEDULE_MAX];
    int nschedules = 0;
    char why[300];
    if (!schedule_parse_list(cfg->schedules, schedules, &nschedules, why, sizeof why)) {
        fprintf(stderr, "hearth: HEARTH_SCHEDULES: %s\n", why);
        return 2;
    }
    /* the worker pool is libuv's; its size is read once, at first use */
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", cfg->workers);
    setenv("UV_THREADPOOL_SIZE", nthreads, 1);
    /* responses are built in buffers of tens of KiB that come and go with each request: keep freed
     * memory for reuse instead of returning it to the kernel and faulting it back in at once */
    mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);

    store_t *s = cmd_open_store(cfg);
    if (!s)
        return 1;
    if (demo && !load_demo(s)) {
        s->ops->close(s);
        return 1;
    }
    /* with Redis the response cache is Redis, shared by every instance, with an in-process near
     * cache in front; otherwise in-process */
    err_t e;
    err_clear(&e);
    redis_pool_t *redis = NULL;
    cache_t *cache = NULL, *near = NULL;
    if (cfg->redis_url) {
        if (!(redis = redis_open(cfg->redis_url, cfg->workers + cfg->threads, 250, &e))) {
            fprintf(stderr, "hearth: %s\n", e.message);
            s->ops->close(s);
            return 2;
        }
        if (cfg->cache_mb > 0) {
            cache = cache_redis_open(redis);
            if (cfg->cache_near_mb > 0)
                near = cache_memory_open((size_t)cfg->cache_near_mb * 1024 * 1024);
        }
    } else if (cfg->cache_mb > 0) {
        cache = cache_memory_open((size_t)cfg->cache_mb * 1024 * 1024);
    }
    respcache_setup(cache, near, cfg->cache_ttl_ms, redis, cfg->database_url);
    if (!auth_setup(cfg, redis, &e)) {
        fprintf(stderr, "hearth: %s\n", e.message);
        respcache_setup(NULL, NULL, 0, NULL, NULL);
        if (cache)
            cache->ops->close(cache);
        if (near)
            near->ops->close(near);
        redis_close(redis);
        s->ops->close(s);
        return 1;
    }
    g_app.redis = redis;
    g_app.cfg = cfg;
    g_app.store = s;
    g_app.started_at_us = time_now_us();
    jobs_register(cfg->data_dir, cfg->test_jobs, listings_changed);
    if (!images_setup(cfg, s, listings_changed, &e)) {
        fprintf(stderr, "hearth: %s\n", e.message);
        return 1;
    }
    pricing_open(cfg->data_dir, &e);
    err_t me;
    err_clear(&me);
    if (!(g_model = modelclient_open(cfg, &me))) /* no client: features are computed in-process */
        log_warn("model: %s; features are computed in-process", me.message);
    if (demo && !pricing_ready())
        demo_train(s);
    worker_pool_t *jobs = NULL;
    if (cfg->job_workers > 0) {
        worker_config_t wc = {.name = "serve", .concurrency = cfg->job_workers, .lease_ms = cfg->job_lease_ms};
        if (!(jobs = worker_start(s, &wc, &e)))
            fprintf(stderr, "hearth: %s\n", e.message);
    }
    scheduler_t *sched = (cfg->job_workers == 0 || jobs) ? scheduler_start(s, schedules, nschedules, &e) : NULL;
    stopping_jobs = jobs;
    server_on_stop(on_stop, cfg);
    bool ok = sched && events_start(s, redis, cfg->database_url, &e) && ratelimit_mw_start(cfg, redis, &e) &&
              server_run(cfg, &e);
    scheduler_stop(sched);
    int64_t left_ms = stop_deadline_us ? (stop_deadline_us - time_now_us()) / 1000 : cfg->shutdown_timeout_ms;
    worker_stop(jobs, left_ms > 0 ? (int)left_ms : 0); /* running jobs finish or are given back */
    events_stop();
    images_shutdown();
    if (!ok)
        fprintf(stderr, "hearth: %s\n", e.message);
    ratelimit_mw_stop();
    pricing_close();
    modelclient_close(g_model); /* after the server and the job runners, its last users */
    g_model = NULL;
    auth_shutdown();
    respcache_setup(NULL, NULL, 0, NULL, NULL);
    if (cache)
        cache->ops->close(cache);
    if (near)
        near->ops->close(near);
    redis_close(redis);
    s->ops->close(s);
    return ok ? 0 : 1;
}
