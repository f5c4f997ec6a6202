/* cache: a bounded key-value cache with expiry, behind the same kind of interface as the store:
 * a struct of function pointers with a backend per file (cache_memory.c: an in-process sharded LRU).
 * Values are copied in and out, so nothing a caller holds can be freed under it. Every call is
 * thread-safe. The memory backend never blocks, so the event loops may call it; the Redis backend
 * waits for a round trip and says so in `blocking`. */
#ifndef HEARTH_CACHE_H
#define HEARTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/buf.h"

typedef struct cache cache_t;

typedef struct cache_stats {
    uint64_t hits, misses, puts, evictions;
    size_t bytes, max_bytes;
    size_t entries;
} cache_stats_t;

typedef struct cache_ops {
    const char *name;
    /* Appends the value to `out` and returns true on a live hit. */
    bool (*get)(cache_t *c, const char *key, size_t klen, buf_t *out);
    void (*put)(cache_t *c, const char *key, size_t klen, const void *val, size_t vlen, int ttl_ms);
    void (*stats)(cache_t *c, cache_stats_t *out);
    void (*close)(cache_t *c);
} cache_ops_t;

struct cache {
    const cache_ops_t *ops;
    bool blocking; /* calls wait on the network: use from worker threads only */
};

/* An in-process LRU holding at most max_bytes of keys and values. */
cache_t *cache_memory_open(size_t max_bytes);
/* Redis, shared by every instance (see redis.h); blocking. */
struct redis_pool;
cache_t *cache_redis_open(struct redis_pool *redis);

#endif
