/* respcache: whole responses of GET routes marked ROUTE_CACHE, kept in the cache (infra/cache.h)
 * and served straight from the event loop on a hit, with no worker hop and no store access.
 *
 * Freshness: every key carries a generation that each write through the API bumps before its
 * response is sent, so a client never reads a listing older than its own write; writes made by
 * other processes (another instance, `hearth import`) show within the TTL. Requests that carry
 * credentials or conditional headers are never answered from the cache. */
#ifndef HEARTH_RESPCACHE_H
#define HEARTH_RESPCACHE_H

#include <stdbool.h>

#include "../infra/cache.h"
#include "http.h"

void respcache_setup(cache_t *cache, int ttl_ms); /* cache NULL: off */
/* On a hit fills `res` and returns true; on a miss records the generation in `req`. */
bool respcache_lookup(http_request_t *req, http_response_t *res);
/* Keeps a 200 response for the request looked up before. */
void respcache_store(const http_request_t *req, const http_response_t *res);
/* Everything cached so far is stale. */
void respcache_invalidate(void);
void respcache_render_metrics(buf_t *out);

#endif
