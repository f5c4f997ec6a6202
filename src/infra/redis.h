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
/* The same with the command as an argument vector (argvlen: each argument's length). */
redisReply *redis_cmd_argv(redis_pool_t *p, int argc, const char **argv, const size_t *argvlen);
/* Round trip of a PING, in ms; false when unavailable. */
bool redis_ping(redis_pool_t *p, double *ms, err_t *e);
bool redis_available(redis_pool_t *p);
/* How many times Redis has come back after being seen down (writes may have missed it meanwhile). */
uint64_t redis_recoveries(redis_pool_t *p);

/* A subscription to one channel, on a connection and a thread of its own. The thread connects
 * (again and again, while Redis is away), subscribes and then calls `up`; every message calls
 * `message`; `tick` runs about every 250 ms while subscribed. A connection that says nothing for
 * 500 ms is sent a PING, and one that does not answer within a second is taken for dead: `down`
 * is called (messages may be missed from then on) and the thread reconnects. Callbacks run on the
 * subscription's thread and may use the pool. */
typedef struct redis_sub_handler {
    void (*up)(void *arg, bool again); /* again: after a lost connection, not the first time */
    void (*down)(void *arg);
    void (*message)(void *arg, const char *msg, size_t len);
    void (*tick)(void *arg);
    void *arg;
} redis_sub_handler_t;

typedef struct redis_sub redis_sub_t;

redis_sub_t *redis_subscribe(redis_pool_t *p, const char *channel, const redis_sub_handler_t *h);
/* Ends the subscription and joins its thread (within about 250 ms plus a connect timeout). */
void redis_sub_stop(redis_sub_t *s);

#endif
