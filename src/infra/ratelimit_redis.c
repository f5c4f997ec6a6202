/* ratelimit_redis: the rate limit interface on Redis, so that every instance draws on one budget
 * per key. The GCRA step of ratelimit.h runs as one Lua script, atomically, on Redis's clock
 * (microseconds), so instances with skewed clocks still agree. The script returns the decision and
 * how far the stored TAT is ahead of now; the figures for the headers are derived from that here,
 * by the same formulas as the memory backend. When Redis is unavailable the configuration decides:
 * allow (no limit applies) or deny (refuse with Retry-After: 1). Blocking: used from workers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "redis.h"

typedef struct redis_rl {
    ratelimit_t base;
    redis_pool_t *redis;
    bool deny_when_down;
    char space[40];
} redis_rl_t;

static const ratelimit_ops_t redis_rl_ops;

static const char script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "local base = math.max(tat, now)\n"
    "local diff = base + T - now\n"
    "if diff > tau then return {0, base - now} end\n"
    "redis.call('SET', KEYS[1], string.format('%d', base + T), 'PX', math.ceil(diff / 1000) + 1000)\n"
    "return {1, base - now}\n";

static int64_t us_to_ms_up(int64_t us) { return us <= 0 ? 0 : (us + 999) / 1000; }

static bool rr_take(ratelimit_t *rl, const char *key, size_t klen, const ratelimit_rule_t *rule, ratelimit_result_t *out)
{
    redis_rl_t *r = (redis_rl_t *)rl;
    int64_t t = rule->period_ms * 1000 / rule->limit; /* emission interval, us */
    if (t < 1)
        t = 1;
    int64_t tau = t * rule->burst;
    memset(out, 0, sizeof *out);
    redisReply *rep = redis_cmd(r->redis, "EVAL %s 1 hearth:rl:%s:%b %lld %lld", script, r->space, key, klen,
                                (long long)t, (long long)tau);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER) {
        if (rep)
            freeReplyObject(rep);
        if (!r->deny_when_down)
            return out->allowed = true; /* limit 0: no headers, as if no rule applied */
        out->limit = rule->burst;
        out->retry_after_ms = 1000;
        return out->allowed = false;
    }
    bool allowed = rep->element[0]->integer == 1;
    int64_t rel = rep->element[1]->integer; /* stored TAT (or now) minus now, us */
    freeReplyObject(rep);
    int64_t diff = rel + t;
    out->limit = rule->burst;
    out->allowed = allowed;
    if (allowed) {
        out->remaining = (tau - diff) / t;
        out->reset_after_ms = us_to_ms_up(diff);
    } else {
        out->retry_after_ms = us_to_ms_up(diff - tau);
        out->reset_after_ms = us_to_ms_up(rel);
    }
    return allowed;
}

static void rr_stats(ratelimit_t *rl, ratelimit_stats_t *out)
{
    (void)rl;
    memset(out, 0, sizeof *out); /* the keys live in Redis, which expires them itself */
}

static void rr_close(ratelimit_t *rl) { free(rl); }

ratelimit_t *ratelimit_redis_open(redis_pool_t *redis, bool deny_when_down, const char *space)
{
    redis_rl_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base.ops = &redis_rl_ops;
    r->base.blocking = true;
    r->redis = redis;
    r->deny_when_down = deny_when_down;
    snprintf(r->space, sizeof r->space, "%s", space ? space : "");
    return &r->base;
}

static const ratelimit_ops_t redis_rl_ops = {
    .name = "redis",
    .take = rr_take,
    .stats = rr_stats,
    .close = rr_close,
};
