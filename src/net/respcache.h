/* respcache: whole responses of GET routes marked ROUTE_CACHE, kept in the cache (infra/cache.h).
 * With the in-process cache a hit is served straight from the event loop, with no worker hop and
 * no store access. With Redis the entries are shared by every instance and a lookup there waits on
 * the network, so it runs on a worker; in front of it each instance keeps a near cache (in process,
 * answered on the loop) of the entries it has read or written recently.
 *
 * Freshness: every key carries a generation that each write through the API bumps before its
 * response is sent, so a client never reads a listing older than its own write. With Redis the
 * generation is shared: a bump is published on a channel every instance subscribes to, and the
 * write waits (up to 150 ms) until each subscriber has confirmed it, so a write through one
 * instance is read back through any other at once. An instance whose subscription is down serves
 * nothing from its near cache. Without Redis, writes made by other processes (another instance,
 * `hearth import`) show within the TTL. Requests that carry credentials or conditional headers are
 * never answered from the cache. */
#ifndef HEARTH_RESPCACHE_H
#define HEARTH_RESPCACHE_H

#include <stdbool.h>

#include "../infra/cache.h"
#include "../infra/redis.h"
#include "http.h"

/* cache NULL: off. `shared` (may be NULL) keeps the generation in Redis for every instance, with
 * `near` (in process; may be NULL) in front of `cache`; `database_url` names the key space. Called
 * again with NULLs, it stops the subscription. */
void respcache_setup(cache_t *cache, cache_t *near, int ttl_ms, redis_pool_t *shared, const char *database_url);
/* The cache waits on the network: lookups happen on the worker, in respcache_run. */
bool respcache_blocking(void);
/* On a worker: answers from the cache, or runs `handler` once per key at a time (single flight)
 * and keeps its response. */
void respcache_run(http_request_t *req, http_response_t *res, void (*handler)(http_request_t *, http_response_t *));
/* On the event loop: answers from the in-process cache (or the near cache) when it can. On a miss
 * with the in-process cache, records the generation in `req` for respcache_run. */
bool respcache_lookup_loop(http_request_t *req, http_response_t *res);
/* Everything cached so far is stale. false when the shared generation in Redis could not be bumped
 * (it is bumped at the next chance; meanwhile other instances may serve for up to the TTL). */
bool respcache_invalidate(void);
/* The generation that entries are made under now (0: unknown, while Redis is unavailable: cache
 * nothing), for caches of answers derived from the listings that are kept outside this module
 * (api/recommendations.c): a key carrying it goes stale with every respcache_invalidate. May wait
 * on Redis: workers only. */
uint64_t respcache_generation(void);
void respcache_render_metrics(buf_t *out);
/* The near cache: -1 none (no Redis, or the cache is off), 1 live (subscribed, answering), 0 off
 * (the subscription is down: everything goes to Redis). */
int respcache_near_state(void);

#endif
