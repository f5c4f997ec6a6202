/* redis: the Redis client the other infra modules share (cache, shared cache generation). A small
 * pool of synchronous hiredis connections, used from worker threads only, with a timeout on every
 * connect and command, and a breaker: after a failure Redis is not tried again for a second, so an
 * outage costs one timeout a second rather than one per request, and is logged once when it starts
 * and once when it ends. */
#ifndef HEARTH_REDIS_H
#define HEARTH_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/error.h"

typedef struct redis_pool redis_pool_t;

/* `url` is redis://[:password@]host[:port][/db]. Connects once, so that a wrong URL is reported at
 * start-up; an unreachable server is not fatal (the breaker opens). NULL on a malformed URL. */
redis_pool_t *redis_open(const char *url, int size, int timeout_ms, err_t *e);
void redis_close(redis_pool_t *p);
/* The key space of one deployment in a shared Redis: 16 hex digits naming its database, so that
 * deployments sharing one Redis keep apart. `out` needs 17 bytes. */
void redis_keyspace(const char *database_url, char *out);
/* Runs one command; NULL when Redis is unavailable or answered an error. Free with freeReplyObject. */
redisReply *redis_cmd(redis_pool_t *p, const char *fmt, ...);
/* Round trip of a PING, in ms; false when unavailable. */
bool redis_ping(redis_pool_t *p, double *ms, err_t *e);
bool redis_available(redis_pool_t *p);
/* How many times Redis has come back after being seen down (writes may have missed it meanwhile). */
uint64_t redis_recoveries(redis_pool_t *p);

#endif
