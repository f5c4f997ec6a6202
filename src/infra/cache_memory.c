/* cache_memory: the in-process cache backend. Sixteen shards, each a chained hash table under its
 * own mutex, so loops on different threads rarely meet on a lock. Each shard holds a sixteenth of
 * the byte budget.
 *
 * Eviction is segmented LRU: a new entry enters a probation list; a hit moves it to a protected
 * list (at most 80% of the shard), whose overflow falls back to probation. Evictions take the
 * probation tail first, so a burst of one-off keys (a scan, a crawler) cannot flush the entries
 * that are asked for again and again, which a plain LRU lets happen. Expired entries are dropped
 * when met. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"
#include "cache.h"

#define SHARDS 16

typedef struct entry {
    struct entry *hnext;        /* hash chain */
    struct entry *prev, *next;  /* its segment's LRU list: head is most recent */
    int seg;                    /* PROBATION or PROTECTED */
    uint64_t hash;
    uint64_t expires_ns;
    size_t klen, vlen;
    char data[];                /* key then value */
} entry_t;

typedef struct shard {
    pthread_mutex_t mu;
    entry_t **table;
    size_t nbuckets, count, bytes, max_bytes;
    entry_t *head[2], *tail[2];
    size_t seg_bytes[2];
} shard_t;

enum { PROBATION, PROTECTED };
#define PROTECTED_SHARE 0.8

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

static size_t entry_size(const entry_t *e) { return sizeof *e + e->klen + e->vlen; }

static void lru_unlink(shard_t *s, entry_t *e)
{
    int g = e->seg;
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head[g] = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail[g] = e->prev;
    e->prev = e->next = NULL;
    s->seg_bytes[g] -= entry_size(e);
}

static void lru_push(shard_t *s, entry_t *e, int g)
{
    e->seg = g;
    e->prev = NULL;
    e->next = s->head[g];
    if (s->head[g])
        s->head[g]->prev = e;
    s->head[g] = e;
    if (!s->tail[g])
        s->tail[g] = e;
    s->seg_bytes[g] += entry_size(e);
}

/* A hit: to the head of the protected list, whose overflow goes back to probation. */
static void promote(shard_t *s, entry_t *e)
{
    lru_unlink(s, e);
    lru_push(s, e, PROTECTED);
    size_t cap = (size_t)((double)s->max_bytes * PROTECTED_SHARE);
    while (s->seg_bytes[PROTECTED] > cap && s->tail[PROTECTED] != e) {
        entry_t *old = s->tail[PROTECTED];
        lru_unlink(s, old);
        lru_push(s, old, PROBATION);
    }
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
    uint64_t h = hash_fnv1a(key, klen);
    shard_t *s = &c->shards[h & (SHARDS - 1)];
    pthread_mutex_lock(&s->mu);
    entry_t *e = find(s, h, key, klen);
    if (e && e->expires_ns <= time_mono_ns()) {
        remove_entry(s, e);
        e = NULL;
    }
    if (e) {
        promote(s, e);
        buf_append(out, e->data + e->klen, e->vlen);
    }
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add_explicit(e ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return e != NULL;
}

static void mem_put(cache_t *base, const char *key, size_t klen, const void *val, size_t vlen, int ttl_ms)
{
    mem_cache_t *c = (mem_cache_t *)base;
    uint64_t h = hash_fnv1a(key, klen);
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
    while ((s->tail[PROBATION] || s->tail[PROTECTED]) && s->bytes + need > s->max_bytes) {
        remove_entry(s, s->tail[PROBATION] ? s->tail[PROBATION] : s->tail[PROTECTED]);
        evicted++;
    }
    if (s->count + 1 > s->nbuckets)
        grow(s);
    entry_t **slot = &s->table[BUCKET(h, s->nbuckets)];
    n->hnext = *slot;
    *slot = n;
    lru_push(s, n, PROBATION);
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
        for (int g = 0; g < 2; g++)
            for (entry_t *e = s->head[g], *next; e; e = next) {
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
