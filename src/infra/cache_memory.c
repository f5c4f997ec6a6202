/* cache_memory: the in-process cache backend. Sixteen shards, each a chained hash table with an
 * LRU list under its own mutex, so loops on different threads rarely meet on a lock. Each shard
 * holds a sixteenth of the byte budget and evicts from its LRU tail when a put would pass it;
 * expired entries are dropped when met. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"
#include "cache.h"

#define SHARDS 16

typedef struct entry {
    struct entry *hnext;        /* hash chain */
    struct entry *prev, *next;  /* LRU list: head is most recent */
    uint64_t hash;
    uint64_t expires_ns;
    size_t klen, vlen;
    char data[];                /* key then value */
} entry_t;

typedef struct shard {
    pthread_mutex_t mu;
    entry_t **table;
    size_t nbuckets, count, bytes, max_bytes;
    entry_t *head, *tail;
} shard_t;

typedef struct mem_cache {
    cache_t base;
    shard_t shards[SHARDS];
    size_t max_bytes;
    _Atomic uint64_t hits, misses, puts, evictions;
} mem_cache_t;

static const cache_ops_t memory_ops;

/* The shard is picked from the low 4 bits of the hash and the bucket from the bits above them,
 * so the keys of one shard spread over all of its buckets. */
#define BUCKET(h, nbuckets) (((h) >> 4) & ((nbuckets)-1))

static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static size_t entry_size(const entry_t *e) { return sizeof *e + e->klen + e->vlen; }

static void lru_unlink(shard_t *s, entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(shard_t *s, entry_t *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

static void remove_entry(shard_t *s, entry_t *e)
{
    entry_t **pp = &s->table[BUCKET(e->hash, s->nbuckets)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    s->bytes -= entry_size(e);
    free(e);
}

static entry_t *find(shard_t *s, uint64_t h, const char *key, size_t klen)
{
    for (entry_t *e = s->table[BUCKET(h, s->nbuckets)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
            return e;
    return NULL;
}

static void grow(shard_t *s)
{
    size_t n = s->nbuckets * 2;
    entry_t **t = calloc(n, sizeof *t);
    if (!t)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++)
        for (entry_t *e = s->table[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = t[BUCKET(e->hash, n)];
            t[BUCKET(e->hash, n)] = e;
        }
    free(s->table);
    s->table = t;
    s->nbuckets = n;
}

static bool mem_get(cache_t *base, const char *key, size_t klen, buf_t *out)
{
    mem_cache_t *c = (mem_cache_t *)base;
    uint64_t h = hash_key(key, klen);
    shard_t *s = &c->shards[h & (SHARDS - 1)];
    pthread_mutex_lock(&s->mu);
    entry_t *e = find(s, h, key, klen);
    if (e && e->expires_ns <= time_mono_ns()) {
        remove_entry(s, e);
        e = NULL;
    }
    if (e) {
        lru_unlink(s, e);
        lru_push(s, e);
        buf_append(out, e->data + e->klen, e->vlen);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add_explicit(e ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return e != NULL;
}

static void mem_put(cache_t *base, const char *key, size_t klen, const void *val, size_t vlen, int ttl_ms)
{
    mem_cache_t *c = (mem_cache_t *)base;
    uint64_t h = hash_key(key, klen);
    shard_t *s = &c->shards[h & (SHARDS - 1)];
    size_t need = sizeof(entry_t) + klen + vlen;
    if (need > s->max_bytes / 4 || ttl_ms <= 0)
        return; /* one value may not take over a shard */
    entry_t *n = malloc(need);
    if (!n)
        return;
    n->hash = h;
    n->klen = klen;
    n->vlen = vlen;
    n->expires_ns = time_mono_ns() + (uint64_t)ttl_ms * 1000000u;
    memcpy(n->data, key, klen);
    memcpy(n->data + klen, val, vlen);
    uint64_t evicted = 0;
    pthread_mutex_lock(&s->mu);
    entry_t *old = find(s, h, key, klen);
    if (old)
        remove_entry(s, old);
    while (s->tail && s->bytes + need > s->max_bytes) {
        remove_entry(s, s->tail);
        evicted++;
    }
    if (s->count + 1 > s->nbuckets)
        grow(s);
    entry_t **slot = &s->table[BUCKET(h, s->nbuckets)];
    n->hnext = *slot;
    *slot = n;
    lru_push(s, n);
    s->count++;
    s->bytes += need;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add_explicit(&c->puts, 1, memory_order_relaxed);
    if (evicted)
        atomic_fetch_add_explicit(&c->evictions, evicted, memory_order_relaxed);
}

static void mem_stats(cache_t *base, cache_stats_t *out)
{
    mem_cache_t *c = (mem_cache_t *)base;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        out->bytes += c->shards[i].bytes;
        out->entries += c->shards[i].count;
        pthread_mutex_unlock(&c->shards[i].mu);
    }
    out->max_bytes = c->max_bytes;
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->puts = atomic_load(&c->puts);
    out->evictions = atomic_load(&c->evictions);
}

static void mem_close(cache_t *base)
{
    mem_cache_t *c = (mem_cache_t *)base;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *s = &c->shards[i];
        for (entry_t *e = s->head, *next; e; e = next) {
            next = e->next;
            free(e);
        }
        free(s->table);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}

cache_t *cache_memory_open(size_t max_bytes)
{
    mem_cache_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base.ops = &memory_ops;
    c->max_bytes = max_bytes;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 64;
        s->table = calloc(s->nbuckets, sizeof *s->table);
        s->max_bytes = max_bytes / SHARDS;
    }
    return &c->base;
}

static const cache_ops_t memory_ops = {
    .name = "memory",
    .get = mem_get,
    .put = mem_put,
    .stats = mem_stats,
    .close = mem_close,
};
