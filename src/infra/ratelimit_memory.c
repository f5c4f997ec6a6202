/* ratelimit_memory: the in-process rate limit backend, and the GCRA step every backend shares.
 * Sixteen shards, each a chained hash table of keys under its own mutex, so loops on different
 * threads rarely meet on a lock. The one idea: a key is only its TAT, and a key whose TAT has
 * passed carries no information (its budget is full), so each shard also keeps its keys in a
 * min-heap by TAT: expired keys are dropped from the top of the heap as calls pass, and when a
 * shard is full the key with the oldest TAT (the one nearest a full budget) makes room. Memory is
 * therefore bounded by max_keys whatever clients send. Time is the monotonic clock. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"
#include "ratelimit.h"

#define SHARDS 16
#define EXPIRE_PER_CALL 32 /* expired keys dropped per call at most, to bound the time under the lock */

typedef struct entry {
    struct entry *hnext; /* hash chain */
    uint64_t hash;
    uint64_t tat_ns;
    size_t heap_idx;
    size_t klen;
    char key[];
} entry_t;

typedef struct shard {
    pthread_mutex_t mu;
    entry_t **table;
    size_t nbuckets, count, max_keys;
    entry_t **heap; /* min-heap by tat_ns; `count` entries */
    size_t heap_cap;
} shard_t;

typedef struct mem_ratelimit {
    ratelimit_t base;
    shard_t shards[SHARDS];
    size_t max_keys;
    _Atomic uint64_t evictions;
} mem_ratelimit_t;

static const ratelimit_ops_t memory_ops;

#define BUCKET(h, nbuckets) (((h) >> 4) & ((nbuckets)-1))

/* GCRA ------------------------------------------------------------------------------------------*/

static int64_t ns_to_ms_up(uint64_t ns) { return (int64_t)((ns + 999999u) / 1000000u); }

uint64_t ratelimit_gcra(uint64_t tat_ns, uint64_t now_ns, const ratelimit_rule_t *rule, ratelimit_result_t *out)
{
    uint64_t t = (uint64_t)rule->period_ms * 1000000u / (uint64_t)rule->limit; /* emission interval */
    if (t == 0)
        t = 1;
    uint64_t tau = t * (uint64_t)rule->burst; /* config bounds this well below overflow */
    uint64_t base = tat_ns > now_ns ? tat_ns : now_ns;
    uint64_t diff = base + t - now_ns; /* how far ahead the TAT would be after this request */
    out->limit = rule->burst;
    if (diff > tau) {
        out->allowed = false;
        out->remaining = 0;
        out->retry_after_ms = ns_to_ms_up(diff - tau);
        out->reset_after_ms = ns_to_ms_up(base - now_ns);
        return tat_ns;
    }
    out->allowed = true;
    out->remaining = (int64_t)((tau - diff) / t);
    out->retry_after_ms = 0;
    out->reset_after_ms = ns_to_ms_up(diff);
    return base + t;
}

/* The table -------------------------------------------------------------------------------------*/

static void heap_set(shard_t *s, size_t i, entry_t *e)
{
    s->heap[i] = e;
    e->heap_idx = i;
}

static void heap_up(shard_t *s, size_t i)
{
    entry_t *e = s->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p]->tat_ns <= e->tat_ns)
            break;
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, e);
}

static void heap_down(shard_t *s, size_t i)
{
    entry_t *e = s->heap[i];
    size_t n = s->count;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = e->tat_ns;
        if (l < n && s->heap[l]->tat_ns < best)
            m = l, best = s->heap[l]->tat_ns;
        if (l + 1 < n && s->heap[l + 1]->tat_ns < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(s, i, s->heap[m]);
        i = m;
    }
    heap_set(s, i, e);
}

static void remove_entry(shard_t *s, entry_t *e)
{
    entry_t **pp = &s->table[BUCKET(e->hash, s->nbuckets)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    size_t i = e->heap_idx;
    s->count--;
    if (i != s->count) { /* the last entry fills the hole, then moves to its place */
        entry_t *moved = s->heap[s->count];
        heap_set(s, i, moved);
        heap_up(s, i);
        heap_down(s, moved->heap_idx);
    }
    free(e);
}

static entry_t *find(shard_t *s, uint64_t h, const char *key, size_t klen)
{
    for (entry_t *e = s->table[BUCKET(h, s->nbuckets)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
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

/* Makes room for one key: false when memory for it cannot be had. Called with the lock held. */
static bool make_room(mem_ratelimit_t *rl, shard_t *s, uint64_t now_ns)
{
    if (s->count >= s->max_keys) {
        entry_t *oldest = s->heap[0];
        if (oldest->tat_ns > now_ns)
            atomic_fetch_add_explicit(&rl->evictions, 1, memory_order_relaxed);
        remove_entry(s, oldest);
    }
    if (s->count == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        if (cap > s->max_keys)
            cap = s->max_keys;
        entry_t **h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return false;
        s->heap = h;
        s->heap_cap = cap;
    }
    if (s->count + 1 > s->nbuckets)
        grow(s);
    return true;
}

bool ratelimit_memory_take_at(ratelimit_t *base, const char *key, size_t klen, const ratelimit_rule_t *rule,
                              uint64_t now_ns, ratelimit_result_t *out)
{
    mem_ratelimit_t *rl = (mem_ratelimit_t *)base;
    uint64_t h = hash_fnv1a(key, klen);
    shard_t *s = &rl->shards[h & (SHARDS - 1)];
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < EXPIRE_PER_CALL && s->count && s->heap[0]->tat_ns <= now_ns; i++)
        remove_entry(s, s->heap[0]);
    entry_t *e = find(s, h, key, klen);
    uint64_t tat = ratelimit_gcra(e ? e->tat_ns : 0, now_ns, rule, out);
    if (out->allowed) {
        if (e) {
            e->tat_ns = tat; /* only ever grows: move it down the heap */
            heap_down(s, e->heap_idx);
        } else if (make_room(rl, s, now_ns) && (e = malloc(sizeof *e + klen)) != NULL) {
            e->hash = h;
            e->tat_ns = tat;
            e->klen = klen;
            memcpy(e->key, key, klen);
            entry_t **slot = &s->table[BUCKET(h, s->nbuckets)];
            e->hnext = *slot;
            *slot = e;
            heap_set(s, s->count, e);
            s->count++;
            heap_up(s, e->heap_idx);
        }
        /* out of memory: the request is allowed and not remembered (fail open) */
    }
    pthread_mutex_unlock(&s->mu);
    return out->allowed;
}

static bool mem_take(ratelimit_t *base, const char *key, size_t klen, const ratelimit_rule_t *rule, ratelimit_result_t *out)
{
    return ratelimit_memory_take_at(base, key, klen, rule, time_mono_ns(), out);
}

static void mem_stats(ratelimit_t *base, ratelimit_stats_t *out)
{
    mem_ratelimit_t *rl = (mem_ratelimit_t *)base;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].mu);
        out->keys += rl->shards[i].count;
        pthread_mutex_unlock(&rl->shards[i].mu);
    }
    out->max_keys = rl->max_keys;
    out->evictions = atomic_load(&rl->evictions);
}

static void mem_close(ratelimit_t *base)
{
    mem_ratelimit_t *rl = (mem_ratelimit_t *)base;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *s = &rl->shards[i];
        for (size_t j = 0; j < s->count; j++)
            free(s->heap[j]);
        free(s->heap);
        free(s->table);
        pthread_mutex_destroy(&s->mu);
    }
    free(rl);
}

ratelimit_t *ratelimit_memory_open(size_t max_keys)
{
    mem_ratelimit_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->base.ops = &memory_ops;
    size_t per = max_keys / SHARDS;
    if (per < 1)
        per = 1;
    rl->max_keys = per * SHARDS;
    bool ok = true;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *s = &rl->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 64;
        s->table = calloc(s->nbuckets, sizeof *s->table);
        s->max_keys = per;
        ok = ok && s->table;
    }
    if (!ok) {
        mem_close(&rl->base);
        return NULL;
    }
    return &rl->base;
}

static const ratelimit_ops_t memory_ops = {
    .name = "memory",
    .take = mem_take,
    .stats = mem_stats,
    .close = mem_close,
};
