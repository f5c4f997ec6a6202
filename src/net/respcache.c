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

#include "../base/log.h"
#include "../base/util.h"
#include "router.h"

static cache_t *store;      /* the cache: in process, or Redis */
static cache_t *near;       /* with Redis: an in-process copy of recent entries, read on the loop */
static redis_pool_t *redis; /* the shared generation, when set */
static redis_sub_t *sub;    /* bumps announced by every instance, for the near copy */
static char space[32];      /* key namespace: one per database, so deployments can share a Redis */
static int ttl;
static _Atomic uint64_t generation = 1;
static _Atomic bool bump_pending;
static _Atomic bool near_live;     /* subscribed, and near_gen follows every bump */
static _Atomic uint64_t near_gen;  /* the shared generation as the subscription last heard it */
static _Atomic uint64_t acks_missed_log_ns;

#define ACK_WAIT_MS 150 /* how long a write waits for the other instances to confirm a bump */

static void near_raise(uint64_t g)
{
    uint64_t cur = atomic_load(&near_gen);
    while (cur < g && !atomic_compare_exchange_weak(&near_gen, &cur, g))
        ;
}

/* The near copy may answer: its generation is current and no bump of ours is waiting to be made. */
static bool near_usable(void) { return near && atomic_load(&near_live) && !atomic_load(&bump_pending); }

/* gen := max(gen + 1, Redis's clock in microseconds), then announced on the channel; answers the
 * new value and how many subscribers heard it. Starting from the clock means a counter that was
 * lost (evicted, a Redis restarted without its data) never comes back to numbers that entries
 * still carry. */
static const char BUMP_LUA[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
    "local v = redis.call('INCR', KEYS[1]) "
    "if v < now then v = now redis.call('SET', KEYS[1], string.format('%d', v)) end "
    "local s = string.format('%d', v) "
    "return {s, redis.call('PUBLISH', KEYS[2], s)}";

static const char ACK_LUA[] = "redis.call('RPUSH', KEYS[1], '1') redis.call('PEXPIRE', KEYS[1], 10000)";

/* Waits (bounded) until every subscriber has confirmed bump `v`: then no instance can answer from
 * a near copy older than the write that made it. */
static void wait_acks(const char *v, long long subscribers)
{
    uint64_t deadline = time_mono_ns() + ACK_WAIT_MS * 1000000ull;
    long long got = 0;
    while (got < subscribers) {
        uint64_t now = time_mono_ns();
        if (now >= deadline)
            break;
        double left = (double)(deadline - now) / 1e9;
        redisReply *r = redis_cmd(redis, "BLPOP hearth:ack:%s:%s %.3f", space, v, left < 0.001 ? 0.001 : left);
        bool acked = r && r->type == REDIS_REPLY_ARRAY;
        if (r)
            freeReplyObject(r);
        if (!acked)
            break;
        got++;
    }
    if (got < subscribers) {
        uint64_t now = time_mono_ns(), last = atomic_load(&acks_missed_log_ns);
        if (now - last > 1000000000ull && atomic_compare_exchange_strong(&acks_missed_log_ns, &last, now))
            log_warn("cache: %lld of %lld subscribers confirmed invalidation %s within %d ms; a slow one may "
                     "answer from its near cache until its subscription is found dead (about 1.5 s)",
                     got, subscribers, v, ACK_WAIT_MS);
    }
}

/* `wait`: for the other instances' confirmations (not from the subscription's own thread, which
 * is the one that would confirm ours). */
static void redis_bump(bool wait)
{
    redisReply *r = redis_cmd(redis, "EVAL %s 2 hearth:gen:%s hearth:inv:%s", BUMP_LUA, space, space);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
              r->element[1]->type == REDIS_REPLY_INTEGER;
    atomic_store(&bump_pending, !ok);
    if (ok) {
        near_raise(strtoull(r->element[0]->str, NULL, 10) + 1);
        if (wait)
            wait_acks(r->element[0]->str, r->element[1]->integer);
    }
    if (r)
        freeReplyObject(r);
}

bool respcache_invalidate(void)
{
    atomic_fetch_add(&generation, 1);
    if (redis)
        redis_bump(true);
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
            redis_bump(false);
            if (atomic_load(&bump_pending))
                return 0;
        }
        redisReply *r = redis_cmd(redis, "GET hearth:gen:%s", space);
        if (r && r->type != REDIS_REPLY_STRING) { /* no generation yet, or it was lost */
            freeReplyObject(r);
            redis_bump(false);
            r = redis_cmd(redis, "GET hearth:gen:%s", space);
        }
        if (!r || r->type != REDIS_REPLY_STRING) {
            if (r)
                freeReplyObject(r);
            return 0;
        }
        uint64_t g = strtoull(r->str, NULL, 10) + 1;
        freeReplyObject(r);
        if (redis_recoveries(redis) == rec)
            return g; /* no recovery happened during this call */
    }
    return 0;
}

/* The generation a worker uses with Redis: the subscription's when it is live (no round trip). */
static uint64_t shared_generation(void) { return near_usable() ? atomic_load(&near_gen) : current_generation(); }

uint64_t respcache_generation(void) { return redis ? shared_generation() : atomic_load(&generation); }

/* The subscription keeps near_gen current. Subscribed again after losing the connection, it bumps
 * the generation first: writes made meanwhile may not have reached Redis. */
static void sub_up(void *arg, bool again)
{
    (void)arg;
    if (again)
        redis_bump(false);
    uint64_t g = current_generation();
    if (g) {
        near_raise(g);
        atomic_store(&near_live, true);
    }
}

static void sub_down(void *arg)
{
    (void)arg;
    atomic_store(&near_live, false);
}

static void sub_message(void *arg, const char *msg, size_t len)
{
    (void)arg;
    char v[32];
    if (len == 0 || len >= sizeof v)
        return;
    memcpy(v, msg, len);
    v[len] = '\0';
    near_raise(strtoull(v, NULL, 10) + 1);
    redisReply *r = redis_cmd(redis, "EVAL %s 1 hearth:ack:%s:%s", ACK_LUA, space, v);
    if (r)
        freeReplyObject(r);
}

/* A bump that failed is made again here rather than only at the next cache miss; a subscription
 * that could not read the generation when it came up tries again. */
static void sub_tick(void *arg)
{
    (void)arg;
    if (atomic_load(&bump_pending))
        redis_bump(false);
    if (!atomic_load(&near_live)) {
        uint64_t g = current_generation();
        if (g) {
            near_raise(g);
            atomic_store(&near_live, true);
        }
    }
}

void respcache_setup(cache_t *cache, cache_t *near_cache, int ttl_ms, redis_pool_t *shared, const char *database_url)
{
    redis_sub_stop(sub);
    sub = NULL;
    atomic_store(&near_live, false);
    store = cache;
    near = shared ? near_cache : NULL;
    ttl = ttl_ms;
    redis = shared;
    redis_keyspace(database_url, space);
    if (near && cache && ttl > 0) {
        char channel[64];
        snprintf(channel, sizeof channel, "hearth:inv:%s", space);
        sub = redis_subscribe(redis, channel,
                              &(redis_sub_handler_t){.up = sub_up, .down = sub_down, .message = sub_message, .tick = sub_tick});
    }
}

bool respcache_blocking(void) { return store && store->blocking; }

int respcache_near_state(void) { return !sub ? -1 : near_usable() ? 1 : 0; }

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

/* Fills `res` from a stored value; false when the value is not one (then `res` is untouched). */
static bool decode(const buf_t *v, http_request_t *req, http_response_t *res)
{
    const char *p = v->data, *end = v->data + v->len;
    uint32_t status, ctlen, hlen, blen;
    if (!get_u32(&p, end, &status) || !get_u32(&p, end, &ctlen) || (size_t)(end - p) < ctlen)
        return false;
    const char *ct = p;
    p += ctlen;
    if (!get_u32(&p, end, &hlen) || (size_t)(end - p) < hlen)
        return false;
    const char *hdrs = p;
    p += hlen;
    if (!get_u32(&p, end, &blen) || (size_t)(end - p) != blen)
        return false;
    res->status = (int)status;
    res->content_type = ctlen ? arena_strndup(req->arena, ct, ctlen) : NULL;
    buf_append(&res->headers, hdrs, hlen);
    buf_append(&res->body, p, blen);
    return true;
}

static void encode(const http_response_t *res, buf_t *v)
{
    const char *ct = res->content_type ? res->content_type : "";
    put_u32(v, (uint32_t)res->status);
    put_u32(v, (uint32_t)strlen(ct));
    buf_puts(v, ct);
    put_u32(v, (uint32_t)res->headers.len);
    buf_append(v, res->headers.data ? res->headers.data : "", res->headers.len);
    put_u32(v, (uint32_t)res->body.len);
    buf_append(v, res->body.data ? res->body.data : "", res->body.len);
}

/* Looks the request up in `c` at generation `gen` (recorded in the request; 0 when the request has
 * no key). On a hit the stored value is left in `v` too. */
static bool fetch(cache_t *c, uint64_t gen, http_request_t *req, http_response_t *res, buf_t *v)
{
    req->cache_gen = gen;
    if (!gen)
        return false;
    char key[HTTP_MAX_URL + 64];
    size_t klen = make_key(req, key, sizeof key);
    if (!klen) {
        req->cache_gen = 0; /* no key: this request is not cached at all */
        return false;
    }
    return c->ops->get(c, key, klen, v) && decode(v, req, res);
}

static void put(cache_t *c, const http_request_t *req, const buf_t *v)
{
    char key[HTTP_MAX_URL + 64];
    size_t klen = make_key(req, key, sizeof key);
    if (klen)
        c->ops->put(c, key, klen, v->data, v->len, ttl);
}

bool respcache_lookup_loop(http_request_t *req, http_response_t *res)
{
    if (!cacheable(req))
        return false;
    buf_t v;
    buf_init(&v);
    bool hit = false;
    if (near) {
        if (near_usable()) {
            hit = fetch(near, atomic_load(&near_gen), req, res, &v);
            req->cache_near_tried = true;
        }
        req->cache_gen = 0; /* the worker looks it up in Redis */
    } else if (!store->blocking) {
        hit = fetch(store, atomic_load(&generation), req, res, &v);
    }
    buf_free(&v);
    return hit;
}

/* On a worker, with Redis: the near cache first (the loop skips it when a shared rate limit has to
 * be asked on the worker first), then Redis; a hit there is copied to the near cache. */
static bool lookup_worker(http_request_t *req, http_response_t *res)
{
    buf_t v;
    buf_init(&v);
    bool hit = false;
    if (!req->cache_near_tried && near_usable())
        hit = fetch(near, atomic_load(&near_gen), req, res, &v);
    if (!hit) {
        hit = fetch(store, shared_generation(), req, res, &v);
        if (hit && near)
            put(near, req, &v);
    }
    buf_free(&v);
    return hit;
}

static void keep(const http_request_t *req, const http_response_t *res)
{
    if (!req->cache_gen || res->status != 200 || res->close)
        return;
    buf_t v;
    buf_init(&v);
    encode(res, &v);
    put(store, req, &v);
    if (near)
        put(near, req, &v);
    buf_free(&v);
}

void respcache_render_metrics(buf_t *out)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"hearth_cache_hits_total", "counter", "Responses answered from the cache."},
        {"hearth_cache_misses_total", "counter", "Cacheable requests not in the cache."},
        {"hearth_cache_evictions_total", "counter", "Entries evicted to stay within the byte budget."},
        {"hearth_cache_bytes", "gauge", "Bytes held by the cache."},
        {"hearth_cache_entries", "gauge", "Entries held by the cache."},
    };
    if (!store)
        return;
    cache_t *tiers[2] = {store, near};
    const char *names[2] = {store->ops->name, "near"};
    cache_stats_t st[2];
    for (int t = 0; t < 2; t++)
        if (tiers[t])
            tiers[t]->ops->stats(tiers[t], &st[t]);
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name, m[i].type);
        for (int t = 0; t < 2; t++) {
            if (!tiers[t])
                continue;
            unsigned long long v[] = {st[t].hits, st[t].misses, st[t].evictions, st[t].bytes, st[t].entries};
            buf_printf(out, "%s{backend=\"%s\"} %llu\n", m[i].name, names[t], v[i]);
        }
    }
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
    if (!cacheable(req)) {
        handler(req, res);
        return;
    }
    if (store->blocking && lookup_worker(req, res))
        return;
    if (!req->cache_gen) { /* no key, or the generation is unknown (Redis unavailable) */
        handler(req, res);
        return;
    }
    int slot = -1;
    if (!flight_begin(key_hash(req), &slot)) {
        buf_reset(&res->headers);
        buf_reset(&res->body);
        buf_t v;
        buf_init(&v);
        bool hit = fetch(store, req->cache_gen, req, res, &v);
        buf_free(&v);
        if (hit)
            return; /* the one we waited for stored it */
    }
    handler(req, res);
    keep(req, res);
    flight_end(slot);
}
