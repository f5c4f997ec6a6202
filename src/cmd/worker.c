/* worker: `hearth worker [--queues high,default,low] [--concurrency N]`: runs queued jobs until
 * SIGTERM or SIGINT, then lets running jobs finish within HEARTH_SHUTDOWN_TIMEOUT_MS and gives
 * back (releases) the ones that have not. Any number of workers, on any hosts, may share one
 * database: claims never hand one job to two of them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"
#include "../domain/images.h"
#include "../domain/jobs.h"
#include "../infra/modelclient.h"
#include "../infra/redis.h"
#include "../net/respcache.h"
#include "commands.h"

static void listings_changed(void) { respcache_invalidate(); }

static int usage(void)
{
    fprintf(stderr, "usage: hearth worker [--queues high,default,low] [--concurrency N]\n");
    return 2;
}

/* "high,default" into cfg->queues (each a known queue, none twice) */
static bool parse_queues(const char *s, worker_config_t *cfg)
{
    static char copy[64];
    if (strlen(s) >= sizeof copy)
        return false;
    snprintf(copy, sizeof copy, "%s", s);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == QUEUE_NAMES || !queue_name_valid(t))
            return false;
        for (int i = 0; i < n; i++)
            if (strcmp(cfg->queues[i], t) == 0)
                return false;
        cfg->queues[n++] = t;
    }
    return n > 0;
}

int cmd_worker(int argc, char **argv)
{
    worker_config_t wc = {.name = "worker", .concurrency = 4};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--queues") == 0 && i + 1 < argc) {
            if (!parse_queues(argv[++i], &wc)) {
                fprintf(stderr, "hearth worker: --queues %s: expected a comma-separated list of high, default, low\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "hearth worker: --concurrency %s: expected 1 to 256\n", argv[i]);
                return 2;
            }
            wc.concurrency = (int)n;
        } else {
            return usage();
        }
    }
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg))
        return 2;
    if (cfg->db_pool < wc.concurrency + 2)
        cfg->db_pool = wc.concurrency + 2; /* runners, the heartbeat and progress writes */
    store_t *s = cmd_open_store(cfg);
    if (!s)
        return 1;
    /* with Redis, listings a job changes are dropped from every instance's response cache */
    redis_pool_t *redis = NULL;
    if (cfg->redis_url) {
        err_t re;
        err_clear(&re);
        if ((redis = redis_open(cfg->redis_url, 2, 250, &re)))
            respcache_setup(NULL, NULL, 0, redis, cfg->database_url);
        else
            log_warn("worker: REDIS_URL: %s; imports will not clear the response caches", re.message);
    }
    jobs_register(cfg->data_dir, cfg->test_jobs, redis ? listings_changed : NULL);
    err_t ie;
    err_clear(&ie);
    if (!images_setup(cfg, s, redis ? listings_changed : NULL, &ie)) {
        fprintf(stderr, "hearth worker: %s\n", ie.message);
        redis_close(redis);
        s->ops->close(s);
        return 1;
    }
    err_t me;
    err_clear(&me);
    if (!(g_model = modelclient_open(cfg, &me))) /* no client: features are computed in-process */
        log_warn("model: %s; features are computed in-process", me.message);
    wc.lease_ms = cfg->job_lease_ms;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the threads started below inherit the mask */
    err_t e;
    err_clear(&e);
    worker_pool_t *w = worker_start(s, &wc, &e);
    if (!w) {
        fprintf(stderr, "hearth worker: %s\n", e.message);
        modelclient_close(g_model);
        g_model = NULL;
        respcache_setup(NULL, NULL, 0, NULL, NULL);
        redis_close(redis);
        s->ops->close(s);
        return 1;
    }
    log_info("worker: running %d job runner(s) on queues %s%s%s%s%s (%s)", wc.concurrency, wc.queues[0] ? wc.queues[0] : "high,default,low",
             wc.queues[1] ? "," : "", wc.queues[1] ? wc.queues[1] : "", wc.queues[2] ? "," : "", wc.queues[2] ? wc.queues[2] : "",
             s->ops->name);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("worker: %s received; finishing running jobs (at most %d ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             cfg->shutdown_timeout_ms);
    worker_stop(w, cfg->shutdown_timeout_ms);
    images_shutdown();
    modelclient_close(g_model); /* after the runners, its users */
    g_model = NULL;
    respcache_setup(NULL, NULL, 0, NULL, NULL);
    redis_close(redis);
    s->ops->close(s);
    log_info("worker: stopped");
    return 0;
}
