/* cache_redis: the cache interface on Redis (REDIS_URL), shared by every instance. GET and SET
 * with PX expiry under a key prefix; a Redis that is down is a miss, never an error. The calls
 * block for a round trip, so this backend is used from worker threads (cache_t.blocking). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "redis.h"

typedef struct redis_cache {
    cache_t base;
    redis_pool_t *redis;
    _Atomic uint64_t hits, misses, puts;
} redis_cache_t;

static const cache_ops_t redis_ops;

static bool rc_get(cache_t *base, const char *key, size_t klen, buf_t *out)
{
    redis_cache_t *c = (redis_cache_t *)base;
    redisReply *r = redis_cmd(c->redis, "GET hearth:c:%b", key, klen);
    bool hit = r && r->type == REDIS_REPLY_STRING;
    if (hit)
        buf_append(out, r->str, r->len);
    if (r)
        freeReplyObject(r);
    atomic_fetch_add_explicit(hit ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return hit;
}

static void rc_put(cache_t *base, const char *key, size_t klen, const void *val, size_t vlen, int ttl_ms)
{
    redis_cache_t *c = (redis_cache_t *)base;
    if (ttl_ms <= 0)
        return;
    redisReply *r = redis_cmd(c->redis, "SET hearth:c:%b %b PX %d", key, klen, val, vlen, ttl_ms);
    if (r) {
        freeReplyObject(r);
        atomic_fetch_add_explicit(&c->puts, 1, memory_order_relaxed);
    }
}

static void rc_stats(cache_t *base, cache_stats_t *out)
{
    redis_cache_t *c = (redis_cache_t *)base;
    memset(out, 0, sizeof *out);
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->puts = atomic_load(&c->puts);
    /* size and evictions are Redis's own (INFO memory, evicted_keys) */
}

static void rc_close(cache_t *base) { free(base); }

cache_t *cache_redis_open(redis_pool_t *redis)
{
    redis_cache_t *c = calloc(1, sizeof *c);
    c->base.ops = &redis_ops;
    c->base.blocking = true;
    c->redis = redis;
    return &c->base;
}

static const cache_ops_t redis_ops = {
    .name = "redis",
    .get = rc_get,
    .put = rc_put,
    .stats = rc_stats,
    .close = rc_close,
};
