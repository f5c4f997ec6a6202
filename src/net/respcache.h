/* respcache: whole responses of GET routes marked ROUTE_CACHE, kept in the cache (infra/cache.h).
 * With the in-process cache a hit is served straight from the event loop, with no worker hop and
 * no store access; with Redis the lookup waits on the network, so it runs on the worker.
 *
 * Freshness: every key carries a generation that each write through the API bumps before its
 * response is sent, so a client never reads a listing older than its own write. With Redis the
 * generation is shared, so that holds across instances too; without it, writes made by other
 * processes (another instance, `hearth import`) show within the TTL. Requests that carry
 * credentials or conditional headers are never answered from the cache. */
#ifndef HEARTH_RESPCACHE_H
#define HEARTH_RESPCACHE_H

#include <stdbool.h>

#include "../infra/cache.h"
#include "../infra/redis.h"
#include "http.h"

/* cache NULL: off. `shared` (may be NULL) keeps the generation in Redis for every instance;
 * `database_url` names the key space. */
void respcache_setup(cache_t *cache, int ttl_ms, redis_pool_t *shared, const char *database_url);
/* The cache waits on the network: lookups happen on the worker, in respcache_run. */
bool respcache_blocking(void);
/* On a worker: answers from the cache, or runs `handler` once per key at a time (single flight)
 * and keeps its response. */
void respcache_run(http_request_t *req, http_response_t *res, void (*handler)(http_request_t *, http_response_t *));
/* On a hit fills `res` and returns true; on a miss records the generation in `req`. */
bool respcache_lookup(http_request_t *req, http_response_t *res);
/* Keeps a 200 response for the request looked up before. */
void respcache_store(const http_request_t *req, const http_response_t *res);
/* Everything cached so far is stale. false when the shared generation in Redis could not be bumped
 * (it is bumped at the next chance; meanwhile other instances may serve for up to the TTL). */
bool respcache_invalidate(void);
void respcache_render_metrics(buf_t *out);

#endif
