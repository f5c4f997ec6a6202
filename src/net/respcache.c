/* respcache: see respcache.h. A value is status, content type, extra header lines and body, each
 * behind its length, in one blob.
 *
 * The generation lives in this process (an atomic) or, with Redis, in Redis under a key of this
 * database, so that a write through any instance makes every instance's entries stale at once. A
 * bump that cannot reach Redis is remembered and made as soon as Redis answers again, so entries
 * written before an outage are never served after it. */
#include "respcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/util.h"
#include "router.h"

static cache_t *store;
static redis_pool_t *redis; /* the shared generation, when set */
static char space[32];      /* key namespace: one per database, so deployments can share a Redis */
static int ttl;
static _Atomic uint64_t generation = 1;
static _Atomic bool bump_pending;

void respcache_setup(cache_t *cache, int ttl_ms, redis_pool_t *shared, const char *database_url)
{
    store = cache;
    ttl = ttl_ms;
    redis = shared;
    redis_keyspace(database_url, space);
}

bool respcache_blocking(void) { return store && store->blocking; }

static void redis_bump(void)
{
    redisReply *r = redis_cmd(redis, "INCR hearth:gen:%s", space);
    atomic_store(&bump_pending, r == NULL);
    if (r)
        freeReplyObject(r);
}

bool respcache_invalidate(void)
{
    atomic_fetch_add(&generation, 1);
    if (redis)
        redis_bump();
    return !atomic_load(&bump_pending);
}

/* The current generation; 0 when it cannot be known (Redis unavailable): then nothing is cached.
 * When Redis has come back from an outage that this instance saw, the generation is bumped first:
 * a write made meanwhile (here or elsewhere) may have failed to bump it. */
static _Atomic uint64_t seen_recoveries;

static uint64_t current_generation(void)
{
    if (!redis)
        return atomic_load(&generation);
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t rec = redis_recoveries(redis);
        if (atomic_exchange(&seen_recoveries, rec) != rec)
            atomic_store(&bump_pending, true);
        if (atomic_load(&bump_pending)) {
            redis_bump();
            if (atomic_load(&bump_pending))
                return 0;
        }
        redisReply *r = redis_cmd(redis, "GET hearth:gen:%s", space);
        if (!r)
            return 0;
        if (r->type != REDIS_REPLY_STRING) {
            /* no generation yet (or it was lost: eviction, a restore): start from the clock, so a
             * lost counter never comes back to numbers that old entries still carry */
            freeReplyObject(r);
            r = redis_cmd(redis, "SET hearth:gen:%s %lld NX", space, (long long)time_now_us());
            if (r)
                freeReplyObject(r);
            r = redis_cmd(redis, "GET hearth:gen:%s", space);
            if (!r || r->type != REDIS_REPLY_STRING) {
                if (r)
                    freeReplyObject(r);
                return 0;
            }
        }
        uint64_t g = strtoull(r->str, NULL, 10) + 1;
        freeReplyObject(r);
        if (redis_recoveries(redis) == rec)
            return g; /* no recovery happened during this call */
    }
    return 0;
}

static bool cacheable(const http_request_t *req)
{
    return store && ttl > 0 && (req->method == METHOD_GET || req->method == METHOD_HEAD) &&
           !http_header(req, "Authorization") && !http_header(req, "Cookie") &&
           !http_header(req, "If-None-Match") && !http_header(req, "If-Match");
}

typedef struct qpart {
    const char *s;
    size_t len, name_len;
    int pos;
} qpart_t;

static int qpart_cmp(const void *a, const void *b)
{
    const qpart_t *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->s, y->s, n);
    if (c == 0 && x->name_len != y->name_len)
        c = x->name_len < y->name_len ? -1 : 1;
    return c ? c : x->pos - y->pos; /* equal names keep their order: the last one still wins */
}

/* The key: namespace, generation, route and the path with its query parameters in a canonical
 * order (by name; empty pieces dropped), so ?a=1&b=2 and ?b=2&a=1 share one entry. */
static size_t make_key(const http_request_t *req, char *key, size_t size)
{
    const char *target = req->target, *qm = strchr(target, '?');
    int n = snprintf(key, size, "%s|%llu|%d|%.*s", space, (unsigned long long)req->cache_gen, req->route->index,
                     (int)(qm ? qm - target : (long)strlen(target)), target);
    if (n < 0 || (size_t)n >= size)
        return 0;
    if (!qm)
        return (size_t)n;
    qpart_t parts[64];
    int np = 0;
    for (const char *p = qm + 1; *p;) {
        size_t len = strcspn(p, "&");
        if (len) {
            if (np == 64)
                return 0; /* too many to order: not cached */
            const char *eq = memchr(p, '=', len);
            size_t name_len = eq ? (size_t)(eq - p) : len;
            if (memchr(p, '%', name_len) || memchr(p, '+', name_len))
                return 0; /* an encoded name could equal another once decoded: not cached */
            parts[np] = (qpart_t){p, len, name_len, np};
            np++;
        }
        p += len + (p[len] == '&');
    }
    qsort(parts, (size_t)np, sizeof parts[0], qpart_cmp);
    size_t used = (size_t)n;
    for (int i = 0; i < np; i++) {
        if (used + parts[i].len + 2 >= size)
            return 0;
        key[used++] = i ? '&' : '?';
        memcpy(key + used, parts[i].s, parts[i].len);
        used += parts[i].len;
    }
    key[used] = '\0';
    return used;
}

static void put_u32(buf_t *b, uint32_t v) { buf_append(b, &v, sizeof v); }

static bool get_u32(const char **p, const char *end, uint32_t *v)
{
    if ((size_t)(end - *p) < sizeof *v)
        return false;
    memcpy(v, *p, sizeof *v);
    *p += sizeof *v;
    return true;
}

bool respcache_lookup(http_request_t *req, http_response_t *res)
{
    if (!cacheable(req))
        return false;
    if (!(req->cache_gen = current_generation()))
        return false;
    char key[HTTP_MAX_URL + 64];
    size_t klen = make_key(req, key, sizeof key);
    if (!klen) {
        req->cache_gen = 0; /* no key: this request is not cached at all */
        return false;
    }
    buf_t v;
    buf_init(&v);
    bool hit = store->ops->get(store, key, klen, &v);
    if (hit) {
        const char *p = v.data, *end = v.data + v.len;
        uint32_t status, ctlen, hlen, blen;
        hit = get_u32(&p, end, &status) && get_u32(&p, end, &ctlen) && (size_t)(end - p) >= ctlen;
        const char *ct = p;
        p += hit ? ctlen : 0;
        hit = hit && get_u32(&p, end, &hlen) && (size_t)(end - p) >= hlen;
        const char *hdrs = p;
        p += hit ? hlen : 0;
        hit = hit && get_u32(&p, end, &blen) && (size_t)(end - p) == blen;
        if (hit) {
            res->status = (int)status;
            res->content_type = ctlen ? arena_strndup(req->arena, ct, ctlen) : NULL;
            buf_append(&res->headers, hdrs, hlen);
            buf_append(&res->body, p, blen);
        }
    }
    buf_free(&v);
    return hit;
}

void respcache_store(const http_request_t *req, const http_response_t *res)
{
    if (!req->cache_gen || res->status != 200 || res->close)
        return;
    char key[HTTP_MAX_URL + 64];
    size_t klen = make_key(req, key, sizeof key);
    if (!klen)
        return;
    buf_t v;
    buf_init(&v);
    const char *ct = res->content_type ? res->content_type : "";
    put_u32(&v, (uint32_t)res->status);
    put_u32(&v, (uint32_t)strlen(ct));
    buf_puts(&v, ct);
    put_u32(&v, (uint32_t)res->headers.len);
    buf_append(&v, res->headers.data ? res->headers.data : "", res->headers.len);
    put_u32(&v, (uint32_t)res->body.len);
    buf_append(&v, res->body.data ? res->body.data : "", res->body.len);
    store->ops->put(store, key, klen, v.data, v.len, ttl);
    buf_free(&v);
}

void respcache_render_metrics(buf_t *out)
{
    if (!store)
        return;
    cache_stats_t st;
    store->ops->stats(store, &st);
    buf_printf(out,
               "# HELP hearth_cache_hits_total Responses answered from the cache.\n# TYPE hearth_cache_hits_total counter\n"
               "hearth_cache_hits_total{backend=\"%s\"} %llu\n"
               "# HELP hearth_cache_misses_total Cacheable requests not in the cache.\n# TYPE hearth_cache_misses_total counter\n"
               "hearth_cache_misses_total{backend=\"%s\"} %llu\n"
               "# HELP hearth_cache_evictions_total Entries evicted to stay within the byte budget.\n# TYPE hearth_cache_evictions_total counter\n"
               "hearth_cache_evictions_total{backend=\"%s\"} %llu\n"
               "# HELP hearth_cache_bytes Bytes held by the cache.\n# TYPE hearth_cache_bytes gauge\n"
               "hearth_cache_bytes{backend=\"%s\"} %zu\n"
               "# HELP hearth_cache_entries Entries held by the cache.\n# TYPE hearth_cache_entries gauge\n"
               "hearth_cache_entries{backend=\"%s\"} %zu\n",
               store->ops->name, (unsigned long long)st.hits, store->ops->name, (unsigned long long)st.misses,
               store->ops->name, (unsigned long long)st.evictions, store->ops->name, st.bytes, store->ops->name,
               st.entries);
}

/* Single flight: while one worker computes a response, others asking for the same key wait for
 * it (up to a bound) instead of running the same query; then they read what it stored. Keys are
 * told apart by hash; a rare collision only costs a wait. */
#define FLIGHTS 64
#define FLIGHT_WAIT_MS 2000

static pthread_mutex_t flight_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flight_cv = PTHREAD_COND_INITIALIZER;
static uint64_t flights[FLIGHTS]; /* hashes in flight; 0 = free slot */

static uint64_t key_hash(const http_request_t *req)
{
    char key[HTTP_MAX_URL + 64];
    size_t n = make_key(req, key, sizeof key);
    uint64_t h = hash_fnv1a(key, n);
    return h ? h : 1;
}

/* true: the caller computes (and must call flight_end); false: it waited for another */
static bool flight_begin(uint64_t h, int *slot)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += FLIGHT_WAIT_MS / 1000;
    pthread_mutex_lock(&flight_mu);
    bool waited = false;
    for (;;) {
        int busy = -1, free_slot = -1;
        for (int i = 0; i < FLIGHTS; i++) {
            if (flights[i] == h)
                busy = i;
            else if (!flights[i] && free_slot < 0)
                free_slot = i;
        }
        if (busy < 0) {
            if (waited) {
                pthread_mutex_unlock(&flight_mu);
                return false;
            }
            *slot = free_slot; /* -1 when the table is full: compute without a slot */
            if (free_slot >= 0)
                flights[free_slot] = h;
            pthread_mutex_unlock(&flight_mu);
            return true;
        }
        waited = true;
        if (pthread_cond_timedwait(&flight_cv, &flight_mu, &deadline) != 0) {
            pthread_mutex_unlock(&flight_mu);
            *slot = -1;
            return true; /* waited long enough: compute anyway */
        }
    }
}

static void flight_end(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&flight_mu);
    flights[slot] = 0;
    pthread_cond_broadcast(&flight_cv);
    pthread_mutex_unlock(&flight_mu);
}

void respcache_run(http_request_t *req, http_response_t *res, void (*handler)(http_request_t *, http_response_t *))
{
    if (respcache_blocking() && respcache_lookup(req, res))
        return;
    if (!req->cache_gen) { /* not cacheable */
        handler(req, res);
        return;
    }
    int slot = -1;
    if (!flight_begin(key_hash(req), &slot)) {
        buf_reset(&res->headers);
        buf_reset(&res->body);
        if (respcache_lookup(req, res))
            return; /* the one we waited for stored it */
    }
    handler(req, res);
    respcache_store(req, res);
    flight_end(slot);
}
