/* ratelimit_mw: rate limiting in the request path; see ratelimit_mw.h. The one idea: the rule of
 * every route is resolved once at start (route -> class -> rule), so a request costs one key built
 * on the stack and one backend call; the figures of that call travel with the connection to the
 * response writer, which turns them into the RateLimit-* headers of whatever response is sent. */
#include "ratelimit_mw.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../infra/redis.h"
#include "router.h"

typedef struct rate_class {
    const char *name; /* points into the configuration */
    ratelimit_rule_t rule;
    _Atomic uint64_t allowed, limited;
} rate_class_t;

/* Set by ratelimit_mw_start before the server runs, read-only while it runs. */
static ratelimit_t *backend;
/* With Redis, an in-process limiter with the same rules runs first, on the loop: it counts what
 * this instance alone has seen from a client, so it refuses only a client that this instance has
 * already seen use its whole budget. It turns a flood from one client away before it takes a place
 * in the worker queue. It can be stricter than the shared budget for a moment: requests the shared
 * budget refused (or let through while Redis was down) still count here until they refill. */
static ratelimit_t *local;
static rate_class_t classes[CONFIG_MAX_RATE_CLASSES];
static int nclasses;
static int *route_class; /* by position in app_routes: index into classes, or -1 */
static int nroutes;

bool ratelimit_mw_start(const config_t *cfg, struct redis_pool *redis, err_t *e)
{
    ratelimit_mw_stop();
    if (cfg->nrate_rules == 0)
        return true;
    if (redis) {
        char space[17];
        redis_keyspace(cfg->database_url, space); /* the cache's key space too */
        backend = ratelimit_redis_open(redis, cfg->rate_limit_redis_down_deny, space);
        local = ratelimit_memory_open(RATELIMIT_MAX_KEYS);
    } else {
        backend = ratelimit_memory_open(RATELIMIT_MAX_KEYS);
    }
    nroutes = router_count();
    route_class = malloc((size_t)(nroutes ? nroutes : 1) * sizeof *route_class);
    if (!backend || !route_class) {
        ratelimit_mw_stop();
        return err_set(e, ERR_INTERNAL, "out of memory for the rate limiter");
    }
    nclasses = cfg->nrate_rules;
    for (int i = 0; i < nclasses; i++) {
        const config_rate_rule_t *r = &cfg->rate_rules[i];
        classes[i].name = r->cls;
        classes[i].rule = (ratelimit_rule_t){.limit = r->limit, .period_ms = r->period_ms, .burst = r->burst};
        atomic_store(&classes[i].allowed, 0);
        atomic_store(&classes[i].limited, 0);
    }
    for (int i = 0; i < nroutes; i++) {
        const route_t *rt = &app_routes[i];
        route_class[i] = -1;
        if (rt->flags & ROUTE_NO_RATELIMIT)
            continue;
        const char *name = rt->rate_class ? rt->rate_class : rt->method == METHOD_GET ? "read" : "write";
        for (int k = 0; k < nclasses; k++)
            if (strcmp(classes[k].name, name) == 0)
                route_class[i] = k;
    }
    return true;
}

bool ratelimit_mw_blocking(void) { return backend && backend->blocking; }

void ratelimit_mw_stop(void)
{
    if (backend)
        backend->ops->close(backend);
    if (local)
        local->ops->close(local);
    backend = local = NULL;
    free(route_class);
    route_class = NULL;
    nroutes = nclasses = 0;
}

static bool take(ratelimit_t *rl, const http_request_t *req, ratelimit_result_t *out);

bool ratelimit_mw_check(const http_request_t *req, ratelimit_result_t *out) { return take(backend, req, out); }

bool ratelimit_mw_check_local(const http_request_t *req, ratelimit_result_t *out)
{
    if (!local) {
        memset(out, 0, sizeof *out);
        return true;
    }
    return take(local, req, out);
}

static bool take(ratelimit_t *rl, const http_request_t *req, ratelimit_result_t *out)
{
    memset(out, 0, sizeof *out);
    if (!rl || !req->route)
        return true;
    int pos = (int)(req->route - app_routes);
    if (pos < 0 || pos >= nroutes || route_class[pos] < 0)
        return true;
    rate_class_t *k = &classes[route_class[pos]];
    char key[192]; /* class (< 32) and address (< 64) */
    int n = snprintf(key, sizeof key, "%s %s", k->name, req->peer);
    if (n < 0 || (size_t)n >= sizeof key)
        n = (int)sizeof key - 1;
    bool ok = rl->ops->take(rl, key, (size_t)n, &k->rule, out);
    if (rl == backend || !ok) /* the first pass's passes are counted by the backend's decision */
        atomic_fetch_add_explicit(ok ? &k->allowed : &k->limited, 1, memory_order_relaxed);
    return ok;
}

static int64_t ms_to_s_up(int64_t ms) { return ms <= 0 ? 0 : (ms + 999) / 1000; }

void ratelimit_mw_reject(const http_request_t *req, http_response_t *res, const ratelimit_result_t *r)
{
    int pos = (int)(req->route - app_routes);
    const rate_class_t *k = &classes[route_class[pos]];
    int64_t retry = ms_to_s_up(r->retry_after_ms);
    http_res_errorf(req, res, ERR_RATE_LIMITED,
                    "too many %s requests from this client: the limit is %lld per %lld s (at most %lld at once); "
                    "retry in %lld s",
                    k->name, (long long)k->rule.limit, (long long)(k->rule.period_ms / 1000),
                    (long long)k->rule.burst, (long long)(retry < 1 ? 1 : retry));
    /* http_res_error adds a generic Retry-After; the exact one comes with the RateLimit headers.
     * Nothing else has been added to a response refused before routing to its handler. */
    buf_reset(&res->headers);
}

void ratelimit_mw_headers(buf_t *out, const ratelimit_result_t *r)
{
    buf_printf(out, "RateLimit-Limit: %lld\r\nRateLimit-Remaining: %lld\r\nRateLimit-Reset: %lld\r\n",
               (long long)r->limit, (long long)r->remaining, (long long)ms_to_s_up(r->reset_after_ms));
    if (!r->allowed) {
        int64_t retry = ms_to_s_up(r->retry_after_ms);
        buf_printf(out, "Retry-After: %lld\r\n", (long long)(retry < 1 ? 1 : retry));
    }
}

void ratelimit_mw_render_metrics(buf_t *out)
{
    if (!backend)
        return;
    buf_puts(out, "# HELP hearth_ratelimit_allowed_total Requests a rate limit let through, by class.\n"
                  "# TYPE hearth_ratelimit_allowed_total counter\n");
    for (int i = 0; i < nclasses; i++)
        buf_printf(out, "hearth_ratelimit_allowed_total{class=\"%s\"} %llu\n", classes[i].name,
                   (unsigned long long)atomic_load_explicit(&classes[i].allowed, memory_order_relaxed));
    buf_puts(out, "# HELP hearth_ratelimit_limited_total Requests refused with 429 by a rate limit, by class.\n"
                  "# TYPE hearth_ratelimit_limited_total counter\n");
    for (int i = 0; i < nclasses; i++)
        buf_printf(out, "hearth_ratelimit_limited_total{class=\"%s\"} %llu\n", classes[i].name,
                   (unsigned long long)atomic_load_explicit(&classes[i].limited, memory_order_relaxed));
    ratelimit_stats_t st;
    backend->ops->stats(backend, &st);
    const char *b = backend->ops->name;
    buf_printf(out,
               "# HELP hearth_ratelimit_keys Client keys the rate limiter remembers.\n# TYPE hearth_ratelimit_keys gauge\n"
               "hearth_ratelimit_keys{backend=\"%s\"} %zu\n"
               "# HELP hearth_ratelimit_evictions_total Keys forgotten before their budget refilled, to stay within the key cap.\n"
               "# TYPE hearth_ratelimit_evictions_total counter\n"
               "hearth_ratelimit_evictions_total{backend=\"%s\"} %llu\n",
               b, st.keys, b, (unsigned long long)st.evictions);
}
