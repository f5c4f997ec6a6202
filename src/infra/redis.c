/* redis: pool, timeouts and breaker; see redis.h. */
#include "redis.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"

#define BREAKER_NS 1000000000ull /* how long Redis is left alone after a failure */

struct redis_pool {
    char host[256], user[128], password[128];
    int port, db, timeout_ms, size, nfree;
    redisContext **free; /* idle connections */
    pthread_mutex_t mu;
    _Atomic uint64_t down_until; /* monotonic ns; 0 when up */
    _Atomic bool down;
    _Atomic uint64_t recoveries; /* times Redis came back after being seen down */
};

static bool parse_url(redis_pool_t *p, const char *url)
{
    const char *s = url;
    if (strncmp(s, "redis://", 8) != 0)
        return false;
    s += 8;
    const char *at = strrchr(s, '@'); /* the last one: a password may contain '@' */
    if (at) { /* [user]:password@ or password@ */
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *pw = colon ? colon + 1 : s;
        if ((size_t)(at - pw) >= sizeof p->password || (colon && (size_t)(colon - s) >= sizeof p->user))
            return false;
        if (colon)
            snprintf(p->user, sizeof p->user, "%.*s", (int)(colon - s), s);
        snprintf(p->password, sizeof p->password, "%.*s", (int)(at - pw), pw);
        s = at + 1;
    }
    size_t hl = strcspn(s, ":/");
    if (hl == 0 || hl >= sizeof p->host)
        return false;
    snprintf(p->host, sizeof p->host, "%.*s", (int)hl, s);
    s += hl;
    p->port = 6379;
    if (*s == ':') {
        char *end;
        long port = strtol(s + 1, &end, 10);
        if (end == s + 1 || port <= 0 || port > 65535)
            return false;
        p->port = (int)port;
        s = end;
    }
    if (*s == '/' && s[1]) {
        char *end;
        long db = strtol(s + 1, &end, 10);
        if (*end || db < 0 || db > 1000)
            return false;
        p->db = (int)db;
    }
    return true;
}

static void mark_down(redis_pool_t *p, const char *why)
{
    atomic_store(&p->down_until, time_mono_ns() + BREAKER_NS);
    if (!atomic_exchange(&p->down, true))
        log_warn("redis: unavailable (%s); going on without it", why);
}

static bool command_ok(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    return ok;
}

static redisContext *connect_one(redis_pool_t *p)
{
    struct timeval tv = {p->timeout_ms / 1000, (p->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(p->host, p->port, tv);
    if (!c || c->err) {
        mark_down(p, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    bool ok = true;
    if (p->password[0] && p->user[0]) /* Redis 6 ACL user */
        ok = command_ok(c, "AUTH %s %s", p->user, p->password);
    else if (p->password[0])
        ok = command_ok(c, "AUTH %s", p->password);
    if (ok && p->db)
        ok = command_ok(c, "SELECT %d", p->db);
    if (!ok) {
        mark_down(p, c->err ? c->errstr : "AUTH or SELECT refused");
        redisFree(c);
        return NULL;
    }
    return c;
}

redis_pool_t *redis_open(const char *url, int size, int timeout_ms, err_t *e)
{
    redis_pool_t *p = calloc(1, sizeof *p);
    if (!parse_url(p, url)) {
        free(p);
        err_set(e, ERR_INTERNAL, "REDIS_URL: expected redis://[:password@]host[:port][/db]");
        return NULL;
    }
    p->size = size;
    p->timeout_ms = timeout_ms;
    p->free = calloc((size_t)size, sizeof *p->free);
    pthread_mutex_init(&p->mu, NULL);
    redisContext *c = connect_one(p);
    if (c)
        p->free[p->nfree++] = c;
    return p;
}

void redis_close(redis_pool_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nfree; i++)
        redisFree(p->free[i]);
    pthread_mutex_destroy(&p->mu);
    free(p->free);
    free(p);
}

void redis_keyspace(const char *database_url, char *out)
{
    const char *u = database_url ? database_url : "";
    snprintf(out, 17, "%016llx", (unsigned long long)hash_fnv1a(u, strlen(u)));
}

bool redis_available(redis_pool_t *p) { return !atomic_load(&p->down); }

/* Runs the command on a pooled connection. A pooled connection may have died while idle (Redis
 * restarted, its idle timeout, a NAT): an I/O error on a reused connection is retried once on a
 * fresh one before Redis is declared unavailable. */
/* A command as a format and its arguments, or as an argument vector. */
typedef struct call {
    const char *fmt;
    va_list *ap;
    int argc;
    const char **argv;
    const size_t *argvlen;
} call_t;

static redisReply *command(redis_pool_t *p, bool bypass_breaker, const call_t *cl)
{
    uint64_t until = atomic_load(&p->down_until);
    if (!bypass_breaker && until && time_mono_ns() < until)
        return NULL; /* the breaker is open */
    pthread_mutex_lock(&p->mu);
    redisContext *c = p->nfree ? p->free[--p->nfree] : NULL;
    pthread_mutex_unlock(&p->mu);
    bool reused = c != NULL;
    redisReply *r = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!c && !(c = connect_one(p)))
            return NULL;
        if (cl->fmt) {
            va_list aq;
            va_copy(aq, *cl->ap);
            r = redisvCommand(c, cl->fmt, aq);
            va_end(aq);
        } else {
            r = redisCommandArgv(c, cl->argc, cl->argv, cl->argvlen);
        }
        if (r && !c->err)
            break;
        char why[128];
        snprintf(why, sizeof why, "%s", c->err ? c->errstr : "no reply");
        if (r)
            freeReplyObject(r);
        r = NULL;
        redisFree(c);
        c = NULL;
        pthread_mutex_lock(&p->mu); /* its idle siblings are suspect too */
        while (p->nfree)
            redisFree(p->free[--p->nfree]);
        pthread_mutex_unlock(&p->mu);
        if (!reused || attempt == 1) {
            mark_down(p, why);
            return NULL;
        }
    }
    if (atomic_load(&p->down)) {
        atomic_store(&p->down_until, 0);
        if (atomic_exchange(&p->down, false)) {
            atomic_fetch_add(&p->recoveries, 1);
            log_info("redis: available again");
        }
    }
    pthread_mutex_lock(&p->mu);
    if (p->nfree < p->size)
        p->free[p->nfree++] = c, c = NULL;
    pthread_mutex_unlock(&p->mu);
    if (c)
        redisFree(c); /* more connections than the pool keeps */
    if (r->type == REDIS_REPLY_ERROR) {
        static _Atomic uint64_t last_log_ns;
        uint64_t now = time_mono_ns(), last = atomic_load(&last_log_ns);
        if (now - last > 1000000000ull && atomic_compare_exchange_strong(&last_log_ns, &last, now))
            log_warn("redis: %s", r->str); /* at most one line a second (OOM, READONLY, ...) */
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *redis_cmd(redis_pool_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = command(p, false, &(call_t){.fmt = fmt, .ap = &ap});
    va_end(ap);
    return r;
}

redisReply *redis_cmd_argv(redis_pool_t *p, int argc, const char **argv, const size_t *argvlen)
{
    return command(p, false, &(call_t){.argc = argc, .argv = argv, .argvlen = argvlen});
}

static redisReply *probe(redis_pool_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = command(p, true, &(call_t){.fmt = fmt, .ap = &ap});
    va_end(ap);
    return r;
}

bool redis_ping(redis_pool_t *p, double *ms, err_t *e)
{
    uint64_t t0 = time_mono_ns();
    redisReply *r = probe(p, "PING"); /* a readiness probe always tries, past the breaker */
    *ms = (double)(time_mono_ns() - t0) / 1e6;
    if (!r)
        return err_set(e, ERR_UNAVAILABLE, "redis is unavailable");
    freeReplyObject(r);
    return true;
}

uint64_t redis_recoveries(redis_pool_t *p) { return atomic_load(&p->recoveries); }

/* Subscriptions ---------------------------------------------------------------------------------
 * hiredis's blocking API cannot wait for a message with a timeout and still use the connection
 * afterwards (a read timeout leaves the context in error), so the thread polls the socket itself
 * and feeds hiredis's reader with what arrives. */

#define SUB_TICK_MS 250
#define SUB_PING_IDLE_MS 500
#define SUB_DEAD_MS 1000

struct redis_sub {
    redis_pool_t *pool;
    char channel[128];
    redis_sub_handler_t h;
    pthread_t thread;
    _Atomic bool stop;
};

static uint64_t mono_ms(void) { return time_mono_ns() / 1000000u; }

static void sub_sleep(redis_sub_t *s, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&s->stop); slept += 50)
        poll(NULL, 0, 50);
}

/* One reply on the subscribed connection: a message, a pong or a (un)subscribe confirmation. */
static void sub_reply(redis_sub_t *s, redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING)
        s->h.message(s->h.arg, r->element[2]->str, r->element[2]->len);
}

/* Reads until the connection fails, goes quiet past SUB_DEAD_MS or the subscription is stopped. */
static void sub_listen(redis_sub_t *s, redisContext *c)
{
    uint64_t heard = mono_ms(), ping_sent = 0, ticked = heard;
    while (!atomic_load(&s->stop)) {
        void *reply;
        for (;;) {
            if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
                return;
            if (!reply)
                break;
            sub_reply(s, reply);
            freeReplyObject(reply);
        }
        uint64_t now = mono_ms();
        if (now - ticked >= SUB_TICK_MS) {
            s->h.tick(s->h.arg);
            ticked = now;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int n = poll(&pfd, 1, SUB_TICK_MS);
        now = mono_ms();
        if (n > 0) {
            if (redisBufferRead(c) != REDIS_OK)
                return;
            heard = now;
            ping_sent = 0;
        } else if (n < 0 && errno != EINTR) {
            return;
        }
        if (ping_sent && now - ping_sent > SUB_DEAD_MS)
            return;
        if (!ping_sent && now - heard > SUB_PING_IDLE_MS) {
            int done = 0;
            if (redisAppendCommand(c, "PING") != REDIS_OK)
                return;
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                    return;
            ping_sent = now;
        }
    }
}

static void *sub_main(void *arg)
{
    redis_sub_t *s = arg;
    bool was_up = false, refused_logged = false;
    while (!atomic_load(&s->stop)) {
        redisContext *c = connect_one(s->pool);
        if (!c) {
            sub_sleep(s, 500);
            continue;
        }
        redisReply *r = redisCommand(c, "SUBSCRIBE %s", s->channel);
        bool ok = r && r->type == REDIS_REPLY_ARRAY;
        if (r && r->type == REDIS_REPLY_ERROR && !refused_logged) { /* an ACL without the channel */
            log_warn("redis: SUBSCRIBE %s refused (%s); trying again every second", s->channel, r->str);
            refused_logged = true;
        }
        if (r)
            freeReplyObject(r);
        if (ok) {
            s->h.up(s->h.arg, was_up);
            if (was_up)
                log_info("redis: subscribed to %s again", s->channel);
            was_up = true;
            sub_listen(s, c);
            s->h.down(s->h.arg);
            if (!atomic_load(&s->stop))
                log_warn("redis: subscription to %s lost (%s); reconnecting", s->channel,
                         c->err ? c->errstr : "no answer to PING");
        }
        redisFree(c);
        sub_sleep(s, ok ? 100 : 1000);
    }
    return NULL;
}

redis_sub_t *redis_subscribe(redis_pool_t *p, const char *channel, const redis_sub_handler_t *h)
{
    redis_sub_t *s = calloc(1, sizeof *s);
    s->pool = p;
    snprintf(s->channel, sizeof s->channel, "%s", channel);
    s->h = *h;
    if (pthread_create(&s->thread, NULL, sub_main, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void redis_sub_stop(redis_sub_t *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    free(s);
}
