/* events: live events from the transactional outbox to event-stream clients.
 *
 * Changes write their events into `outbox_events` in their own transactions (store.h's
 * store_event_write: property changes, job state changes and progress), so an event exists if and
 * only if its change committed. The relay (a thread of `serve`) reads unpublished rows in id order,
 * publishes each and then marks them published, in one transaction; a relay that dies in between
 * publishes them again, and streams drop what they have seen by event id. Publishing means: with
 * Redis, PUBLISH on hearth:ev:SPACE (and XADD to the stream hearth:events:SPACE), which every
 * instance's subscription hands to its own streams; without Redis, straight to this process's
 * streams (server_publish). Old events, jobs and uploads are pruned by the `prune` job (jobs.c),
 * which a schedule runs every hour.
 *
 * GET /api/events?channel= streams them (text/event-stream): property:ID to anyone, job:ID to the
 * job's creator and admins, jobs (every job) to admins; Last-Event-ID (the header, or
 * ?last_event_id=) replays what was published after it from the outbox table first. */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../infra/redis.h"
#include "../net/server.h"
#include "app.h"

#define RELAY_BATCH 100
/* The relay reads on from near where it left off (relay.floor): the rows it marked published leave
 * dead entries at the start of outbox_unpublished on PostgreSQL until vacuum, and a read from the
 * first id walks them all. An event may commit after others with higher ids (its transaction
 * took its id first): the floor stays RELAY_LOOKBACK_IDS behind the last id read, which catches
 * the writers racing each other at once, and every RELAY_FULL_EVERY_US one read starts from the
 * first id again, for a transaction that took longer. */
#define RELAY_LOOKBACK_IDS 1000
#define RELAY_FULL_EVERY_US 2000000
#define RELAY_POLL_MS 50          /* without NOTIFY (SQLite) */
#define RELAY_IDLE_MS 1000        /* with NOTIFY: a safety net */
#define RELAY_RETRY_MS 1000       /* after a failed publish */
#define REPLAY_MAX 1000
#define STREAM_MAXLEN 100000

static struct {
    store_t *store;
    redis_pool_t *redis;
    char space[17];
    pthread_t thread;
    bool running;
    _Atomic bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken;
    struct store_listener *listener;
    redis_sub_t *sub;
    int64_t floor, full_at_us; /* the relay thread's own */
} relay = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* The event as clients see it (seed 002's WSEvent) and its event-stream frame. */
static void event_json(buf_t *out, int64_t id, const char *type, const char *channel, const char *data, int64_t at_us)
{
    jw_t w;
    jw_init(&w, out);
    jw_obj_begin(&w);
    jw_kint(&w, "id", id);
    jw_kstr(&w, "type", type);
    jw_kstr(&w, "channel", channel);
    jw_key(&w, "data");
    jw_raw(&w, data, strlen(data)); /* written by hearth as a JSON object */
    jw_key(&w, "timestamp");
    jw_time(&w, at_us);
    jw_obj_end(&w);
}

static void frame_of(buf_t *out, int64_t id, const char *type, const char *json, size_t len)
{
    buf_printf(out, "id: %lld\nevent: %s\ndata: ", (long long)id, type);
    buf_append(out, json, len);
    buf_puts(out, "\n\n");
}

/* Redis: every instance's subscription hands what any relay published to its own streams. A
 * message is "OWNER_ID\n" and the event document. */
static void sub_message(void *arg, const char *msg, size_t len)
{
    (void)arg;
    const char *nl = memchr(msg, '\n', len);
    if (!nl)
        return;
    int64_t owner = strtoll(msg, NULL, 10);
    const char *doc = nl + 1;
    size_t n = len - (size_t)(doc - msg);
    json_t *j = json_loadb(doc, n, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type")), *channel = json_string_value(json_object_get(j, "channel"));
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    if (type && channel && id > 0)
        server_publish(channel, id, type, doc, n, owner);
    json_decref(j);
}

static void sub_noop(void *arg) { (void)arg; }

/* Back after a gap in which events may have been missed: every stream is closed, so that its client
 * comes back (EventSource does by itself, with Last-Event-ID) and catches up from the outbox. */
static void sub_up(void *arg, bool again)
{
    (void)arg;
    if (again)
        server_close_streams();
}

/* Publishes rows r[0..n) of the relay's query (id, channel, type, data, created_at, owner_id). With
 * Redis, one script does every PUBLISH and XADD of the batch in one round trip, in order. A
 * script is not a transaction: when it fails part way, what it published stays published, the
 * batch is published again, and consumers drop what they saw by event id. */
#define PUBLISH_SCRIPT                                                                              \
    "for i = 2, #ARGV, 2 do"                                                                        \
    " redis.call('PUBLISH', KEYS[1], ARGV[i])"                                                      \
    " redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[i + 1]) end return 1"

static bool publish(const store_rows_t *r, int n, arena_t *a)
{
    int argc = 0;
    const char **argv = arena_alloc(a, sizeof *argv * (size_t)(6 + 2 * n));
    size_t *len = arena_alloc(a, sizeof *len * (size_t)(6 + 2 * n));
#define ARG(s, l) (argv[argc] = (s), len[argc++] = (l))
    if (relay.redis) {
        const char *chan = arena_printf(a, "hearth:ev:%s", relay.space), *stream = arena_printf(a, "hearth:events:%s", relay.space),
                   *max = arena_printf(a, "%d", STREAM_MAXLEN);
        ARG("EVAL", 4);
        ARG(PUBLISH_SCRIPT, strlen(PUBLISH_SCRIPT));
        ARG("2", 1);
        ARG(chan, strlen(chan));
        ARG(stream, strlen(stream));
        ARG(max, strlen(max));
    }
    buf_t j, m;
    buf_init(&j);
    buf_init(&m);
    for (int i = 0; i < n; i++) {
        int64_t id = strtoll(store_cell(r, i, 0), NULL, 10);
        const char *channel = store_cell(r, i, 1), *type = store_cell(r, i, 2), *owner = store_cell(r, i, 5);
        int64_t owner_id = owner ? strtoll(owner, NULL, 10) : 0;
        buf_reset(&j);
        event_json(&j, id, type, channel, store_cell(r, i, 3), strtoll(store_cell(r, i, 4), NULL, 10));
        if (!relay.redis) {
            server_publish(channel, id, type, j.data, j.len, owner_id);
            continue;
        }
        buf_reset(&m);
        buf_printf(&m, "%lld\n", (long long)owner_id);
        buf_append(&m, j.data, j.len);
        ARG(arena_strndup(a, m.data, m.len), m.len);
        ARG(arena_strndup(a, j.data, j.len), j.len);
    }
#undef ARG
    buf_free(&j);
    buf_free(&m);
    if (!relay.redis)
        return true;
    redisReply *rep = redis_cmd_argv(relay.redis, argc, argv, len);
    if (rep)
        freeReplyObject(rep);
    return rep != NULL;
}

static bool is_postgres(store_conn_t *c) { return strcmp(c->store->ops->name, "postgres") == 0; }

/* One batch: publish the oldest unpublished events, then mark them. Returns how many, -1 on error. */
static int relay_batch(void)
{
    store_t *s = relay.store;
    err_t e;
    err_clear(&e);
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    if (!c)
        return -1;
    arena_t a;
    arena_init(&a);
    int n = -1;
    store_rows_t r;
    /* SQLite: a read first, so that an idle relay never takes the write lock */
    if (!is_postgres(c) &&
        (!s->ops->query(c, "SELECT 1 FROM outbox_events WHERE published_at IS NULL LIMIT 1", 0, NULL, &a, &r, &e) ||
         r.nrows == 0)) {
        arena_free(&a);
        s->ops->release(s, c);
        return e.code == ERR_NONE ? 0 : -1;
    }
    /* one relay at a time, so events go out in id order: on PostgreSQL a transaction-scoped
     * advisory lock, taken in the same statement (another instance's relay has it: no rows, nothing
     * to do now); on SQLite the write lock BEGIN IMMEDIATE takes. The published marks need not be
     * durable at once: a mark a database crash takes back means the event goes out again, and
     * consumers drop it by its id */
    int64_t now = time_now_us();
    bool full = now - relay.full_at_us >= RELAY_FULL_EVERY_US;
    const char *from = arena_printf(&a, "%lld", full ? 0LL : (long long)relay.floor);
    if (store_begin(c, true, &e) &&
        s->ops->query(c,
                      is_postgres(c)
                          ? "WITH relay AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(7236100302) AS mine)"
                            " SELECT id, channel, type, data, created_at, owner_id FROM outbox_events, relay"
                            " WHERE relay.mine AND published_at IS NULL AND id >= CAST($1 AS BIGINT) ORDER BY id LIMIT 100"
                          : "SELECT id, channel, type, data, created_at, owner_id FROM outbox_events WHERE published_at IS NULL"
                            " AND id >= CAST($1 AS BIGINT) ORDER BY id LIMIT 100",
                      1, &from, &a, &r, &e)) {
        if (full)
            relay.full_at_us = now;
        int published = r.nrows > 0 && publish(&r, r.nrows, &a) ? r.nrows : 0;
        bool ok = true;
        if (published > 0) { /* exactly the rows published (not a range: a row may commit in between) */
            const char *v[RELAY_BATCH + 1];
            buf_t sql;
            buf_init(&sql);
            buf_puts(&sql, "UPDATE outbox_events SET published_at = CAST($1 AS BIGINT) WHERE id IN (");
            v[0] = arena_printf(&a, "%lld", (long long)time_now_us());
            for (int i = 0; i < published; i++) {
                buf_printf(&sql, "%sCAST($%d AS BIGINT)", i ? ", " : "", i + 2);
                v[i + 1] = store_cell(&r, i, 0);
            }
            buf_puts(&sql, ")");
            store_rows_t u;
            ok = s->ops->query(c, buf_cstr(&sql), published + 1, v, &a, &u, &e);
            buf_free(&sql);
        }
        ok = store_finish(c, ok, &e);
        n = ok && published == r.nrows ? published : -1;
        if (n > 0) { /* every visible row below the last one read was read */
            int64_t last = strtoll(store_cell(&r, r.nrows - 1, 0), NULL, 10);
            if (last + 1 - RELAY_LOOKBACK_IDS > relay.floor)
                relay.floor = last + 1 - RELAY_LOOKBACK_IDS;
        }
    } else {
        store_finish(c, false, &e);
    }
    arena_free(&a);
    s->ops->release(s, c);
    return n;
}

static void relay_wake(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&relay.mu);
    relay.woken = true;
    pthread_cond_signal(&relay.cv);
    pthread_mutex_unlock(&relay.mu);
}

static void relay_wait(int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&relay.mu);
    while (!relay.woken && !atomic_load(&relay.stop))
        if (pthread_cond_timedwait(&relay.cv, &relay.mu, &until) != 0)
            break;
    relay.woken = false;
    pthread_mutex_unlock(&relay.mu);
}

static void *relay_main(void *arg)
{
    (void)arg;
    bool failing = false;
    while (!atomic_load(&relay.stop)) {
        int n = relay_batch();
        if (n < 0) {
            if (!failing)
                log_warn("relay: publishing outbox events failed; retrying every %d ms", RELAY_RETRY_MS);
            failing = true;
            relay_wait(RELAY_RETRY_MS);
            continue;
        }
        if (failing)
            log_info("relay: publishing again");
        failing = false;
        if (n < RELAY_BATCH)
            relay_wait(relay.listener ? RELAY_IDLE_MS : RELAY_POLL_MS);
    }
    return NULL;
}

bool events_start(store_t *s, redis_pool_t *redis, const char *database_url, err_t *e)
{
    relay.store = s;
    relay.redis = redis;
    redis_keyspace(database_url, relay.space);
    atomic_store(&relay.stop, false);
    if (s->ops->listen && !(relay.listener = s->ops->listen(s, STORE_OUTBOX_CHANNEL, relay_wake, NULL, e)))
        log_warn("relay: %s; polling every %d ms instead", e->message, RELAY_POLL_MS);
    if (redis) {
        char channel[64];
        snprintf(channel, sizeof channel, "hearth:ev:%s", relay.space);
        relay.sub = redis_subscribe(redis, channel,
                                    &(redis_sub_handler_t){.up = sub_up, .down = sub_noop, .message = sub_message, .tick = sub_noop});
    }
    if (pthread_create(&relay.thread, NULL, relay_main, NULL) != 0)
        return err_set(e, ERR_INTERNAL, "could not start the outbox relay");
    relay.running = true;
    return true;
}

void events_stop(void)
{
    if (!relay.running)
        return;
    atomic_store(&relay.stop, true);
    relay_wake(NULL);
    pthread_join(relay.thread, NULL);
    relay.running = false;
    if (relay.listener)
        relay.store->ops->unlisten(relay.listener);
    relay.listener = NULL;
    redis_sub_stop(relay.sub);
    relay.sub = NULL;
}


/* The highest event id published so far (0 when none or unknown). */
static int64_t published_high(store_conn_t *c, arena_t *a)
{
    err_t e;
    err_clear(&e);
    store_rows_t r;
    if (!c->store->ops->query(c, "SELECT max(id) FROM outbox_events WHERE published_at IS NOT NULL", 0, NULL, a, &r, &e) ||
        r.nrows != 1 || !store_cell(&r, 0, 0))
        return 0;
    return strtoll(store_cell(&r, 0, 0), NULL, 10);
}

/* GET /api/events ------------------------------------------------------------------------------- */

/* A channel a client may name: property:ID, job:ID or jobs. */
static bool channel_parse(const char *ch, char *kind, int64_t *id)
{
    if (strcmp(ch, "jobs") == 0) {
        *kind = 'J';
        return true;
    }
    const char *colon = strchr(ch, ':');
    if (!colon || !parse_i64(colon + 1, id) || *id <= 0)
        return false;
    char canonical[32];
    snprintf(canonical, sizeof canonical, "%lld", (long long)*id);
    if (strcmp(canonical, colon + 1) != 0)
        return false; /* property:07 names no channel an event goes to */
    size_t n = (size_t)(colon - ch);
    if (n == 8 && memcmp(ch, "property", 8) == 0)
        *kind = 'p';
    else if (n == 3 && memcmp(ch, "job", 3) == 0)
        *kind = 'j';
    else
        return false;
    return true;
}

void events_stream(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    http_query_t q;
    if (!http_query_parse(req, &q, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    const char *channel = http_query_get(&q, "channel"), *last = http_header(req, "Last-Event-ID");
    if (!last)
        last = http_query_get(&q, "last_event_id");
    char kind = 0;
    int64_t id = 0, last_id = 0;
    if (!channel || !*channel)
        err_field(&e, "channel", "is required: property:ID, job:ID or jobs");
    else if (strlen(channel) > 100 || !channel_parse(channel, &kind, &id))
        err_field(&e, "channel", "must be property:ID, job:ID or jobs");
    if (last && *last && (!parse_i64(last, &last_id) || last_id < 0))
        err_set(&e, ERR_BAD_REQUEST, "Last-Event-ID must be an event id (a non-negative integer)");
    if (!auth_query_token(req, res, &q))
        return;
    if (e.code != ERR_NONE && e.code != ERR_VALIDATION) {
        http_res_error(req, res, &e);
        return;
    }
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    actor_t actor;
    int roles = kind == 'J' ? ROLE_ADMIN : kind == 'j' ? ROLE_ANY : 0;
    if (!auth_actor(req, res, c, roles, &actor)) {
        app_store_done(c);
        return;
    }
    job_t job;
    if (e.code == ERR_NONE && kind == 'j' && queue_get(c, id, req->arena, &job, &e) && actor.user.role != ROLE_ADMIN &&
        job.created_by != actor.user.id)
        err_set(&e, ERR_FORBIDDEN, "only the job's creator or an admin may follow it");
    store_rows_t r = {0};
    if (e.code == ERR_NONE && last_id == 0) /* from now on: older events (a relay's repeats) are not for it */
        last_id = published_high(c, req->arena);
    else if (e.code == ERR_NONE) { /* what was published after Last-Event-ID */
        const char *v[] = {channel, arena_printf(req->arena, "%lld", (long long)last_id),
                           arena_printf(req->arena, "%d", REPLAY_MAX)};
        c->store->ops->query(c,
                             "SELECT id, channel, type, data, created_at FROM outbox_events WHERE published_at IS NOT NULL"
                             " AND id > CAST($2 AS BIGINT) AND (channel = $1 OR ($1 = 'jobs' AND channel LIKE 'job:%'))"
                             " ORDER BY id LIMIT CAST($3 AS BIGINT)",
                             3, v, req->arena, &r, &e);
    }
    app_store_done(c);
    if (e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    res->status = 200;
    res->content_type = "text/event-stream";
    http_res_header(res, "Cache-Control", "no-cache");
    http_res_header(res, "X-Accel-Buffering", "no");
    buf_puts(&res->body, "retry: 2000\n\n");
    int64_t high = last_id;
    for (int i = 0; i < r.nrows; i++) {
        int64_t eid = strtoll(store_cell(&r, i, 0), NULL, 10);
        buf_t j;
        buf_init(&j);
        event_json(&j, eid, store_cell(&r, i, 2), store_cell(&r, i, 1), store_cell(&r, i, 3),
                   strtoll(store_cell(&r, i, 4), NULL, 10));
        frame_of(&res->body, eid, store_cell(&r, i, 2), j.data, j.len);
        buf_free(&j);
        high = eid;
    }
    res->stream = req->method != METHOD_HEAD; /* HEAD: the head only */
    res->stream_channel = arena_strdup(req->arena, channel);
    res->stream_last_id = high;
}

/* GET /ws ------------------------------------------------------------------------------------------ */

static bool header_has_token(const char *v, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == n && str_nieq(p, n, token))
            return true;
        p += len;
    }
    return false;
}

void ws_upgrade(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    const char *upgrade = http_header(req, "Upgrade"), *connection = http_header(req, "Connection"),
               *version = http_header(req, "Sec-WebSocket-Version"), *key = http_header(req, "Sec-WebSocket-Key");
    if (!upgrade || !header_has_token(upgrade, "websocket") || !connection || !header_has_token(connection, "upgrade")) {
        http_res_errorf(req, res, ERR_BAD_REQUEST, "GET /ws is a WebSocket: send Upgrade: websocket and Connection: Upgrade");
        return;
    }
    if (!version || strcmp(version, "13") != 0) {
        http_res_errorf(req, res, ERR_BAD_REQUEST, "Sec-WebSocket-Version must be 13");
        http_res_header(res, "Sec-WebSocket-Version", "13");
        res->status = 426;
        return;
    }
    unsigned char nonce[32];
    if (!key || strlen(key) != 24 || EVP_DecodeBlock(nonce, (const unsigned char *)key, 24) != 18) {
        http_res_errorf(req, res, ERR_BAD_REQUEST, "Sec-WebSocket-Key must be 16 bytes in base64");
        return;
    }
    http_query_t q;
    if (!http_query_parse(req, &q, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    if (!auth_query_token(req, res, &q))
        return;
    actor_t actor = {0};
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    if (req->auth_present && !auth_actor(req, res, c, 0, &actor)) {
        app_store_done(c);
        return;
    }
    int64_t high = published_high(c, req->arena);
    app_store_done(c);
    /* Sec-WebSocket-Accept: base64(SHA-1(key + the RFC 6455 GUID)) */
    char concat[64];
    snprintf(concat, sizeof concat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char digest[SHA_DIGEST_LENGTH], accept[32];
    SHA1((const unsigned char *)concat, strlen(concat), digest);
    EVP_EncodeBlock(accept, digest, SHA_DIGEST_LENGTH);
    res->status = 101;
    res->content_type = NULL;
    http_res_header(res, "Upgrade", "websocket");
    http_res_header(res, "Connection", "Upgrade");
    http_res_header(res, "Sec-WebSocket-Accept", "%s", accept);
    res->websocket = true;
    res->stream_last_id = high; /* events from now on */
    res->stream_user_id = actor.known ? actor.user.id : 0;
    res->stream_admin = actor.known && actor.user.role == ROLE_ADMIN;
}
