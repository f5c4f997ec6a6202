/* ratelimit_mw: the rate limit step of the request path. Each route is in a class (router.h);
 * HEARTH_RATE_LIMITS gives classes their rules, and a request takes one unit from the budget of
 * its (class, client address) key before its handler runs or the response cache is consulted.
 * With the memory backend the check runs on the event loop; with Redis (shared budgets) it runs on
 * the worker before the handler, after an in-process first pass on the loop with the same rules
 * (which also limits the routes answered on the loop). */
#ifndef HEARTH_RATELIMIT_MW_H
#define HEARTH_RATELIMIT_MW_H

#include <stdbool.h>

#include "../base/buf.h"
#include "../base/config.h"
#include "../base/error.h"
#include "../infra/ratelimit.h"
#include "http.h"

#define RATELIMIT_MAX_KEYS 100000 /* keys the memory backend remembers at most */

/* Opens the backend the configuration asks for; with no rules, rate limiting stays off. The
 * backend is owned here until ratelimit_mw_stop. */
bool ratelimit_mw_start(const config_t *cfg, struct redis_pool *redis, err_t *e);
/* The backend waits on the network (Redis): the check runs on the worker, not the loop. */
bool ratelimit_mw_blocking(void);
void ratelimit_mw_stop(void);

/* Takes one request from the budget of req's route class and client (req->peer). Returns false
 * when the request is over the limit; `out` then holds the figures for the 429. out->limit is 0
 * when no limit applies (rate limiting off, an exempt route or a class without a rule). */
bool ratelimit_mw_check(const http_request_t *req, ratelimit_result_t *out);
/* With Redis: the in-process first pass on the loop (true, with out->limit 0, when there is none). */
bool ratelimit_mw_check_local(const http_request_t *req, ratelimit_result_t *out);
/* The 429 body (error code rate_limited) for a refused request. */
void ratelimit_mw_reject(const http_request_t *req, http_response_t *res, const ratelimit_result_t *r);
/* Appends the header lines "RateLimit-Limit/-Remaining/-Reset" (and Retry-After when refused). */
void ratelimit_mw_headers(buf_t *out, const ratelimit_result_t *r);
/* Prometheus text: requests allowed and limited by class, and the backend's keys. */
void ratelimit_mw_render_metrics(buf_t *out);

#endif
