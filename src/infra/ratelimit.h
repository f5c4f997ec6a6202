/* ratelimit: per-key request budgets with GCRA (the generic cell rate algorithm), behind the same
 * kind of interface as the cache: a struct of function pointers with a backend per file
 * (ratelimit_memory.c: an in-process sharded table; a Redis backend runs the same arithmetic as
 * one Lua script, so both answer identically).
 *
 * GCRA keeps one number per key, the theoretical arrival time (TAT): the moment the key's budget
 * is full again. With the emission interval T = period / limit and the tolerance tau = burst * T,
 * a request at `now` is allowed when max(TAT, now) + T - now <= tau, and then TAT becomes
 * max(TAT, now) + T. So `burst` requests may arrive at once, after which one more is allowed
 * every T; a key whose TAT has passed is the same as an absent key (a full budget), which is what
 * lets a backend forget it. Every call is thread-safe; the memory backend never blocks on I/O. */
#ifndef HEARTH_RATELIMIT_H
#define HEARTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit_t;

/* `limit` requests per `period_ms`, at most `burst` at once (burst >= 1; usually = limit). */
typedef struct ratelimit_rule {
    int64_t limit;
    int64_t period_ms;
    int64_t burst;
} ratelimit_rule_t;

/* The decision for one request and the figures for the RateLimit-* and Retry-After headers. */
typedef struct ratelimit_result {
    bool allowed;
    int64_t limit;          /* the burst: requests a full budget allows at once */
    int64_t remaining;      /* requests still allowed at once after this one (0 when refused) */
    int64_t reset_after_ms; /* until the budget is full again */
    int64_t retry_after_ms; /* until one request would be allowed (0 when allowed) */
} ratelimit_result_t;

typedef struct ratelimit_stats {
    size_t keys, max_keys;
    uint64_t evictions; /* keys dropped before their TAT passed, to stay within max_keys */
} ratelimit_stats_t;

typedef struct ratelimit_ops {
    const char *name;
    /* Takes one request from the key's budget; fills `out` and returns out->allowed. */
    bool (*take)(ratelimit_t *rl, const char *key, size_t klen, const ratelimit_rule_t *rule, ratelimit_result_t *out);
    void (*stats)(ratelimit_t *rl, ratelimit_stats_t *out);
    void (*close)(ratelimit_t *rl);
} ratelimit_ops_t;

struct ratelimit {
    const ratelimit_ops_t *ops;
    bool blocking; /* waits on the network: check on worker threads only */
};

/* An in-process table of at most max_keys keys (oldest TAT evicted first beyond that). */
ratelimit_t *ratelimit_memory_open(size_t max_keys);
/* The memory backend's take at an explicit monotonic time, for tests of the arithmetic. */
bool ratelimit_memory_take_at(ratelimit_t *rl, const char *key, size_t klen, const ratelimit_rule_t *rule,
                              uint64_t now_ns, ratelimit_result_t *out);

/* Redis, one budget per key for every instance; `space` separates deployments sharing a Redis.
 * deny_when_down: refuse (Retry-After 1 s) rather than allow while Redis is unavailable. */
struct redis_pool;
ratelimit_t *ratelimit_redis_open(struct redis_pool *redis, bool deny_when_down, const char *space);

/* The GCRA step itself, shared by backends that keep TATs in nanoseconds: given the stored TAT
 * (0: none), fills `out` and returns the TAT to store (unchanged when refused). */
uint64_t ratelimit_gcra(uint64_t tat_ns, uint64_t now_ns, const ratelimit_rule_t *rule, ratelimit_result_t *out);

#endif
