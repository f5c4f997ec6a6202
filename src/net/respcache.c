/* respcache: see respcache.h. A value is status, content type, extra header lines and body, each
 * behind its length, in one blob. */
#include "respcache.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "router.h"

static cache_t *store;
static int ttl;
static _Atomic uint64_t generation = 1;

void respcache_setup(cache_t *cache, int ttl_ms)
{
    store = cache;
    ttl = ttl_ms;
}

void respcache_invalidate(void) { atomic_fetch_add(&generation, 1); }

static bool cacheable(const http_request_t *req)
{
    return store && ttl > 0 && (req->method == METHOD_GET || req->method == METHOD_HEAD) &&
           !http_header(req, "Authorization") && !http_header(req, "Cookie") &&
           !http_header(req, "If-None-Match") && !http_header(req, "If-Match");
}

static size_t make_key(const http_request_t *req, char *key, size_t size)
{
    int n = snprintf(key, size, "%llu|%d|%s", (unsigned long long)req->cache_gen, req->route->index, req->target);
    return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
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
    req->cache_gen = atomic_load(&generation);
    char key[HTTP_MAX_URL + 64];
    size_t klen = make_key(req, key, sizeof key);
    if (!klen)
        return false;
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
