/* server: connections, timeouts, dispatch and graceful shutdown.
 *
 * Life of a connection: bytes are appended to `in`; reqparse (llhttp plus the limits) consumes
 * them one request at a time, so exactly one request per connection is in flight and pipelined
 * requests wait in `in` (responses therefore go out in order). A finished request is routed, then
 * its handler runs on the loop or on the worker pool; the response is serialised into `out` and
 * written; when the write completes the arena is reset and parsing resumes. One timer per
 * connection enforces, by parse state: the idle timeout between requests, the header timeout from
 * a request's first byte (a slow-loris client cannot stretch it by trickling), and the body
 * timeout. An error response that must close the connection shuts down the write side and drains
 * what the client still sends for a moment, so the client reads the response instead of a reset. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "../base/jw.h"
#include "../base/log.h"
#include "../base/util.h"
#include "http.h"
#include "metrics.h"
#include "proxy.h"
#include "ratelimit_mw.h"
#include "respcache.h"
#include "reqparse.h"
#include "router.h"
#include "multipart.h"
#include "upload.h"

#define IN_HIGH_WATER (256 * 1024) /* stop reading while this much waits behind a busy request */
#define LINGER_MS 2000

typedef struct loop_ctx loop_ctx_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    loop_ctx_t *lp;
    struct conn *prev, *next;
    int handles;       /* open uv handles (tcp, timer); freed when both are closed */
    bool busy;         /* a request is being answered */
    bool closing;      /* uv_close called or about to be */
    bool work_pending; /* the handler runs on the worker pool */
    bool reading, lingering, close_after, eof;
    bool reset;        /* close with RST, dropping what the kernel still holds to send */
    buf_t in, out;
    arena_t arena;
    reqparse_t rp;
    http_request_t req;
    http_response_t res;
    uv_work_t work;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char peer[64]; /* the socket's peer address */
    bool peer_loopback;
    ratelimit_result_t rl; /* the request's rate limit figures; rl.limit 0: none applied */
    /* an event stream (SSE) or a WebSocket: after its head the connection carries events */
    bool streaming;        /* the head being written is a stream's: open it when written */
    struct stream_state *st; /* set while open; owned by the connection */
    size_t stream_pending; /* bytes handed to uv_write and not yet written */
    struct conn *snext, *sprev;
    upload_t *upload; /* ROUTE_UPLOAD: the body being taken in; freed with the request */
    int file_fd;      /* a file body being sent (http_res_file), -1: none */
    int64_t file_left, file_off;
} conn_t;

#define WS_MAX_CHANNELS 32
#define WS_MAX_MESSAGE (64 * 1024)
#define SEEN_IDS 128

typedef struct stream_state {
    bool ws;
    wslay_event_context_ptr ctx; /* WebSocket framing (wslay) */
    int64_t user_id;             /* 0: anonymous */
    bool admin;
    int nchannels;
    char channels[WS_MAX_CHANNELS][128];
    int64_t last_id;         /* SSE: the replay went up to here (the client has everything below) */
    uint64_t since_ns;       /* the request's start: ring events from then on are new to it */
    int64_t seen[SEEN_IDS];  /* recent event ids, to drop one published twice */
    int seen_pos;
} stream_state_t;

/* An event on its way to a loop's streams: queued by server_publish, delivered by on_events, then
 * kept in the loop's ring of recent events for streams that start a moment later. */
typedef struct ev_item {
    struct ev_item *next;
    char channel[128], type[32];
    int64_t id, owner_id;
    uint64_t arrived_ns;
    size_t len;        /* of json */
    char *frame;       /* the event-stream frame, made once for every stream: points into json[] */
    size_t frame_len;
    char json[];       /* the event document, then the frame */
} ev_item_t;

#define EV_RING 1024
#define STREAM_MAX_PENDING (1024 * 1024) /* a consumer this far behind is closed, not buffered */
#define STREAM_KEEPALIVE_MS 15000

struct loop_ctx {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop;
    uv_timer_t deadline;
    pthread_t thread;
    conn_t *conns;
    int nconns;
    bool stopping;
    uint64_t stop_started;
    int fd;
    char date[64];
    time_t date_sec;
    char rbuf[64 * 1024]; /* shared read buffer; see on_alloc */
    uv_async_t events;
    pthread_mutex_t ev_mu; /* ev_head/ev_tail: filled by any thread, emptied by the loop */
    ev_item_t *ev_head, *ev_tail;
    conn_t *streams;        /* open event streams of this loop */
    ev_item_t *ring[EV_RING];
    int ring_pos;
};

static const config_t *cfg;
static _Atomic int total_conns;
static _Atomic int queued_work; /* requests handed to the worker pool and not yet back */
#define WORK_PER_WORKER 64      /* beyond workers x this, a request is a 503 rather than a longer queue */

static void conn_process(conn_t *c);
static void conn_close(conn_t *c);
static void respond(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void on_handle_closed(uv_handle_t *h);

/* Timers ---------------------------------------------------------------------------------------*/

static void stream_keepalive(conn_t *c);
static void ws_read(conn_t *c);
static void timer_set(conn_t *c, int ms);
static void start_reading(conn_t *c);

static void on_timeout(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    if (c->st) {
        stream_keepalive(c);
        return;
    }
    if (c->busy) {
        /* a response the client is not reading (the timer runs only while writing): reset the
         * connection, so the kernel drops the unsent bytes too */
        if (!c->work_pending) {
            c->reset = true;
            conn_close(c);
        }
        return;
    }
    if (c->rp.state == RP_HEAD || c->rp.state == RP_BODY) {
        /* a request that is not arriving fast enough: answer 408 and close */
        c->rp.err = ERR_REQUEST_TIMEOUT;
        snprintf(c->rp.msg, sizeof c->rp.msg, "the request was not received in time");
        c->close_after = true;
        respond(c);
        return;
    }
    conn_close(c); /* idle */
}

static void timer_set(conn_t *c, int ms)
{
    if (ms > 0)
        uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
    else
        uv_timer_stop(&c->timer);
}

/* Writing --------------------------------------------------------------------------------------*/

typedef struct raw_write {
    uv_write_t req;
    char data[];
} raw_write_t;

static void on_raw_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void write_raw(conn_t *c, const char *s, size_t n)
{
    raw_write_t *w = malloc(sizeof *w + n);
    if (!w)
        abort();
    memcpy(w->data, s, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_raw_written) != 0)
        free(w);
}

/* Event streams and WebSockets -----------------------------------------------------------------
 * Both are connections whose head has been written and which from then on receive events: an SSE
 * stream follows one channel, a WebSocket any it subscribes to. Events reach a loop through its
 * queue (server_publish, any thread) and are handed to every matching connection; the loop keeps
 * the last EV_RING of them for a stream that opens a moment later. Writes are copies handed to
 * libuv; a connection more than STREAM_MAX_PENDING behind is closed rather than buffered. */

typedef struct stream_write_req {
    uv_write_t req;
    conn_t *c;
    size_t n;
    char data[];
} stream_write_req_t;

static void on_stream_written(uv_write_t *w, int status)
{
    stream_write_req_t *sw = (stream_write_req_t *)w;
    sw->c->stream_pending -= sw->n;
    if (status != 0 && !sw->c->closing)
        conn_close(sw->c);
    free(sw);
}

static bool stream_write(conn_t *c, const char *s, size_t n)
{
    if (c->closing)
        return false;
    if (c->stream_pending + n > STREAM_MAX_PENDING) {
        c->reset = true; /* a consumer that does not keep up is closed, not buffered without bound */
        conn_close(c);
        return false;
    }
    stream_write_req_t *sw = malloc(sizeof *sw + n);
    if (!sw)
        abort();
    sw->c = c;
    sw->n = n;
    memcpy(sw->data, s, n);
    uv_buf_t b = uv_buf_init(sw->data, (unsigned)n);
    c->stream_pending += n;
    if (uv_write(&sw->req, (uv_stream_t *)&c->tcp, &b, 1, on_stream_written) != 0) {
        c->stream_pending -= n;
        free(sw);
        conn_close(c);
        return false;
    }
    return true;
}

static bool channel_matches(const char *sub, const char *channel)
{
    if (strcmp(sub, "jobs") == 0)
        return strncmp(channel, "job:", 4) == 0;
    return strcmp(sub, channel) == 0;
}

/* Whether the stream may see the event: job events go to their owner and admins (the SSE handler
 * checked its one channel already; a WebSocket subscribes first and is filtered here). */
static bool visible_to(const stream_state_t *st, const ev_item_t *ev)
{
    return !st->ws || st->admin || ev->owner_id == 0 || ev->owner_id == st->user_id;
}

static bool seen_before(stream_state_t *st, int64_t id)
{
    for (int i = 0; i < SEEN_IDS; i++)
        if (st->seen[i] == id)
            return true;
    st->seen[st->seen_pos] = id;
    st->seen_pos = (st->seen_pos + 1) % SEEN_IDS;
    return false;
}

static void ws_flush(conn_t *c);

static void stream_deliver(conn_t *c, const ev_item_t *ev, bool from_ring)
{
    stream_state_t *st = c->st;
    bool match = false;
    for (int i = 0; i < st->nchannels && !match; i++)
        match = channel_matches(st->channels[i], ev->channel);
    if (!match || !visible_to(st, ev))
        return;
    if (from_ring && ev->arrived_ns < st->since_ns)
        return; /* older than the request: not for a stream that did not ask for a replay of it */
    if (ev->id > 0 && (ev->id <= st->last_id || seen_before(st, ev->id)))
        return; /* had it already: before Last-Event-ID, in the replay, or published twice */
    if (st->ws) {
        struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)ev->json, ev->len};
        wslay_event_queue_msg(st->ctx, &msg);
        ws_flush(c);
        return;
    }
    stream_write(c, ev->frame, ev->frame_len);
}

static void ws_on_message(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user);

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    conn_t *c = user;
    if (c->in.len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = c->in.len < len ? c->in.len : len;
    memcpy(buf, c->in.data, n);
    buf_consume(&c->in, n);
    return (ssize_t)n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)flags;
    conn_t *c = user;
    if (!stream_write(c, (const char *)data, len)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Sends what wslay has queued; closes the connection once the closing handshake is over. */
static void ws_flush(conn_t *c)
{
    if (c->closing || !c->st)
        return;
    if (wslay_event_send(c->st->ctx) != 0) {
        conn_close(c);
        return;
    }
    if (!wslay_event_want_read(c->st->ctx) && !wslay_event_want_write(c->st->ctx))
        conn_close(c);
}

static void ws_reply(conn_t *c, const char *type, const char *channel, const char *message)
{
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    jw_obj_begin(&w);
    jw_kstr(&w, "type", type);
    if (channel)
        jw_kstr(&w, "channel", channel);
    if (message)
        jw_kstr(&w, "message", message);
    jw_obj_end(&w);
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)b.data, b.len};
    wslay_event_queue_msg(c->st->ctx, &msg); /* wslay copies it */
    buf_free(&b);
}

/* {"action": "subscribe" | "unsubscribe", "channel": "property:ID" | "job:ID" | "jobs"} */
static void ws_on_message(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    conn_t *c = user;
    stream_state_t *st = c->st;
    if (arg->opcode == WSLAY_BINARY_FRAME) {
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, (const uint8_t *)"text frames only", 16);
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return; /* ping, pong and close are wslay's */
    json_t *j = json_loadb((const char *)arg->msg, arg->msg_length, 0, NULL);
    const char *action = json_string_value(json_object_get(j, "action")),
               *channel = json_string_value(json_object_get(j, "channel"));
    const char *problem = NULL;
    int64_t id = 0;
    const char *colon = channel ? strchr(channel, ':') : NULL;
    bool known = channel && strlen(channel) < sizeof st->channels[0] &&
                 (strcmp(channel, "jobs") == 0 ||
                  (colon && parse_i64(colon + 1, &id) && id > 0 &&
                   ((colon - channel == 8 && strncmp(channel, "property", 8) == 0) ||
                    (colon - channel == 3 && strncmp(channel, "job", 3) == 0))));
    if (!j || !action || !channel)
        problem = "expected {\"action\": \"subscribe\" or \"unsubscribe\", \"channel\": ...}";
    else if (!known)
        problem = "channel must be property:ID, job:ID or jobs";
    else if (strcmp(channel, "jobs") == 0 && !st->admin)
        problem = "only admins may follow the jobs channel";
    else if (strncmp(channel, "job:", 4) == 0 && !st->user_id)
        problem = "following a job needs an access token";
    if (problem) {
        ws_reply(c, "error", channel && known ? channel : NULL, problem);
    } else if (strcmp(action, "subscribe") == 0) {
        bool have = false;
        for (int i = 0; i < st->nchannels; i++)
            have |= strcmp(st->channels[i], channel) == 0;
        if (!have && st->nchannels == WS_MAX_CHANNELS) {
            ws_reply(c, "error", channel, "too many subscriptions on one connection (32)");
        } else {
            if (!have)
                snprintf(st->channels[st->nchannels++], sizeof st->channels[0], "%s", channel);
            ws_reply(c, "subscribed", channel, NULL);
        }
    } else if (strcmp(action, "unsubscribe") == 0) {
        for (int i = 0; i < st->nchannels; i++)
            if (strcmp(st->channels[i], channel) == 0) {
                memmove(st->channels[i], st->channels[i + 1], (size_t)(st->nchannels - i - 1) * sizeof st->channels[0]);
                st->nchannels--;
                break;
            }
        ws_reply(c, "unsubscribed", channel, NULL);
    } else {
        ws_reply(c, "error", channel, "action must be subscribe or unsubscribe");
    }
    json_decref(j);
}

/* The head has been written: the connection now carries events. */
static void stream_open(conn_t *c)
{
    loop_ctx_t *lp = c->lp;
    c->streaming = false;
    c->snext = lp->streams;
    if (lp->streams)
        lp->streams->sprev = c;
    lp->streams = c;
    if (c->st->ws) {
        static const struct wslay_event_callbacks callbacks = {
            .recv_callback = ws_recv, .send_callback = ws_send, .on_msg_recv_callback = ws_on_message};
        if (wslay_event_context_server_init(&c->st->ctx, &callbacks, c) != 0) {
            conn_close(c);
            return;
        }
        wslay_event_config_set_max_recv_msg_length(c->st->ctx, WS_MAX_MESSAGE);
    } else {
        for (int i = 0; i < EV_RING; i++) { /* events that arrived while the head was being made */
            const ev_item_t *ev = lp->ring[(lp->ring_pos + i) % EV_RING];
            if (ev)
                stream_deliver(c, ev, true);
        }
    }
    timer_set(c, STREAM_KEEPALIVE_MS);
    start_reading(c); /* SSE: only to see the client go; WebSocket: its frames */
    if (c->st->ws && c->in.len)
        ws_read(c); /* frames that came with the upgrade request */
}

/* Frames from the client (on_read appended them to c->in). */
static void ws_read(conn_t *c)
{
    if (wslay_event_recv(c->st->ctx) != 0) {
        conn_close(c);
        return;
    }
    ws_flush(c);
}

static void stream_keepalive(conn_t *c)
{
    if (c->st->ws) {
        struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"", 0};
        wslay_event_queue_msg(c->st->ctx, &ping);
        ws_flush(c);
    } else {
        stream_write(c, ": keep-alive\n\n", 14);
    }
    if (!c->closing)
        timer_set(c, STREAM_KEEPALIVE_MS);
}

static void stream_unlink(conn_t *c)
{
    if (!c->st)
        return;
    if (c->sprev)
        c->sprev->snext = c->snext;
    else if (c->lp->streams == c)
        c->lp->streams = c->snext;
    if (c->snext)
        c->snext->sprev = c->sprev;
    c->snext = c->sprev = NULL;
}

static void stream_free(conn_t *c)
{
    if (!c->st)
        return;
    if (c->st->ctx)
        wslay_event_context_free(c->st->ctx);
    free(c->st);
    c->st = NULL;
}

static void on_events(uv_async_t *a)
{
    loop_ctx_t *lp = a->data;
    pthread_mutex_lock(&lp->ev_mu);
    ev_item_t *ev = lp->ev_head;
    lp->ev_head = lp->ev_tail = NULL;
    pthread_mutex_unlock(&lp->ev_mu);
    while (ev) {
        ev_item_t *next = ev->next;
        if (!ev->type[0]) { /* server_close_streams */
            for (conn_t *c = lp->streams, *cn; c; c = cn) {
                cn = c->snext;
                conn_close(c);
            }
            free(ev);
            ev = next;
            continue;
        }
        for (conn_t *c = lp->streams, *cn; c; c = cn) {
            cn = c->snext; /* stream_deliver may close c, which unlinks it */
            if (!c->closing)
                stream_deliver(c, ev, false);
        }
        free(lp->ring[lp->ring_pos]);
        lp->ring[lp->ring_pos] = ev;
        lp->ring_pos = (lp->ring_pos + 1) % EV_RING;
        ev = next;
    }
}

static pthread_mutex_t hub_mu = PTHREAD_MUTEX_INITIALIZER;

void server_publish(const char *channel, int64_t id, const char *type, const char *json, size_t len, int64_t owner_id);

void server_close_streams(void) { server_publish("", 0, "", "", 0, 0); }
static loop_ctx_t *hub_loops; /* set while the loops run */
static int hub_n;

void server_publish(const char *channel, int64_t id, const char *type, const char *json, size_t len, int64_t owner_id)
{
    pthread_mutex_lock(&hub_mu);
    char head[96];
    int hn = snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)id, type);
    size_t frame_len = (size_t)hn + len + 2;
    for (int i = 0; i < hub_n && hub_loops; i++) {
        loop_ctx_t *lp = &hub_loops[i];
        ev_item_t *ev = malloc(sizeof *ev + len + 1 + frame_len);
        if (!ev)
            break;
        ev->frame = ev->json + len + 1;
        ev->frame_len = frame_len;
        memcpy(ev->frame, head, (size_t)hn);
        memcpy(ev->frame + hn, json, len);
        memcpy(ev->frame + hn + len, "\n\n", 2);
        ev->next = NULL;
        snprintf(ev->channel, sizeof ev->channel, "%s", channel);
        snprintf(ev->type, sizeof ev->type, "%s", type);
        ev->id = id;
        ev->owner_id = owner_id;
        ev->arrived_ns = time_mono_ns();
        ev->len = len;
        memcpy(ev->json, json, len);
        ev->json[len] = '\0';
        pthread_mutex_lock(&lp->ev_mu);
        if (lp->ev_tail)
            lp->ev_tail->next = ev;
        else
            lp->ev_head = ev;
        lp->ev_tail = ev;
        pthread_mutex_unlock(&lp->ev_mu);
        uv_async_send(&lp->events);
    }
    pthread_mutex_unlock(&hub_mu);
}

static const char *http_date(loop_ctx_t *lp)
{
    time_t now = time(NULL);
    if (now != lp->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(lp->date, sizeof lp->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        lp->date_sec = now;
    }
    return lp->date;
}

static bool origin_allowed(const char *origin)
{
    if (!origin)
        return false;
    if (cfg->cors_any)
        return true;
    for (int i = 0; i < cfg->ncors; i++)
        if (strcmp(cfg->cors_origins[i], origin) == 0)
            return true;
    return false;
}

static void reset_request(conn_t *c);

/* The request target with the values of credential parameters (access_token, refresh_token, as
 * WebSocket and event-stream clients may send them) replaced: logs never hold a token. */
static void redacted_target(const char *t, size_t n, buf_t *out)
{
    const char *q = memchr(t, '?', n);
    if (!q) {
        buf_append(out, t, n);
        return;
    }
    buf_append(out, t, (size_t)(q - t));
    const char *end = t + n;
    for (const char *p = q; p < end;) {
        const char *amp = memchr(p + 1, '&', (size_t)(end - p - 1));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p + 1, '=', (size_t)(stop - p - 1));
        size_t name_len = (size_t)((eq ? eq : stop) - (p + 1));
        bool secret = eq && ((name_len == 12 && memcmp(p + 1, "access_token", 12) == 0) ||
                             (name_len == 13 && memcmp(p + 1, "refresh_token", 13) == 0));
        if (secret) {
            buf_append(out, p, (size_t)(eq + 1 - p));
            buf_puts(out, "REDACTED");
        } else {
            buf_append(out, p, (size_t)(stop - p));
        }
        p = stop;
    }
}

static void access_log(conn_t *c, uint64_t dur_ns)
{
    if (!log_enabled(LOG_INFO))
        return;
    const char *method = c->req.method_name ? c->req.method_name : "-";
    const char *target = c->rp.url.len ? c->rp.url.data : "";
    buf_t f;
    buf_init(&f);
    buf_puts(&f, "\"method\":");
    json_escape(&f, method, strlen(method));
    buf_puts(&f, ",\"path\":");
    buf_t safe;
    buf_init(&safe);
    redacted_target(target, c->rp.url.len, &safe);
    json_escape(&f, safe.data ? safe.data : "", safe.len);
    buf_free(&safe);
    buf_printf(&f, ",\"status\":%d,\"duration_ms\":%.3f,\"bytes\":%zu,\"remote\":\"%s\"", c->res.status,
               (double)dur_ns / 1e6, c->res.body.len, c->req.peer);
    if (c->req.route) {
        buf_puts(&f, ",\"route\":");
        json_escape(&f, c->req.route->pattern, strlen(c->req.route->pattern));
    }
    log_line(c->res.status >= 500 ? LOG_ERROR : LOG_INFO, c->req.request_id, "request", buf_cstr(&f));
    buf_free(&f);
}

static void start_reading(conn_t *c)
{
    if (!c->reading && !c->eof && !c->closing) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    (void)status;
    conn_t *c = s->data;
    if (c->closing)
        return;
    /* keep reading (and discarding) for a moment so the client sees the response, not a reset */
    c->lingering = true;
    timer_set(c, LINGER_MS);
    start_reading(c);
}

#define FILE_CHUNK (64 * 1024)
#define UPLOAD_FILES 1 /* file parts an upload may carry: one photo */

static void on_written(uv_write_t *w, int status);

/* The next piece of a file body; false when there is none to send (done, or a read failed). */
static bool send_file_chunk(conn_t *c)
{
    buf_reset(&c->out);
    buf_reserve(&c->out, FILE_CHUNK);
    size_t want = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
    ssize_t n = pread(c->file_fd, c->out.data, want, c->file_off); /* from the page cache, mostly */
    if (n <= 0) {
        log_warn("a file body ended early after %lld bytes: %s", (long long)c->file_off,
                 n < 0 ? strerror(errno) : "the file is shorter");
        c->close_after = true; /* the Content-Length cannot be kept: the client sees a short body */
        return false;
    }
    c->file_off += n;
    c->file_left -= n;
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)n);
    timer_set(c, cfg->idle_timeout_ms);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) == 0)
        return true;
    c->close_after = true;
    return false;
}

static void on_written(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    if (status == 0 && c->file_left > 0 && !c->closing && !c->lp->stopping && send_file_chunk(c))
        return;
    uint64_t dur = time_mono_ns() - c->req.start_ns;
    metrics_request(c->req.route ? c->req.route->index : -1, c->req.method, c->res.status, dur);
    metrics_in_flight_add(-1);
    access_log(c, dur);
    if (c->streaming && status == 0 && !c->closing && !c->lp->stopping) {
        reset_request(c);
        c->busy = false;
        stream_open(c);
        return;
    }
    bool close = status != 0 || c->close_after || c->lp->stopping;
    reset_request(c);
    c->busy = false;
    if (c->closing)
        return;
    if (close) {
        if (status == 0 && !c->eof) {
            c->sreq.data = c;
            c->lingering = true; /* from now on, input is discarded */
            if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
                return;
        }
        conn_close(c);
        return;
    }
    timer_set(c, cfg->idle_timeout_ms);
    start_reading(c);
    conn_process(c);
    if (c->eof && !c->busy && !c->closing)
        conn_close(c); /* the client has sent everything and had every answer */
}

/* Serialises c->res (status line, headers, body) and writes it. */
static void write_response(conn_t *c)
{
    http_request_t *req = &c->req;
    http_response_t *res = &c->res;
    buf_t *o = &c->out;
    buf_reset(o);
    if (c->lp->stopping || c->close_after)
        res->close = true;
    c->close_after = res->close;
    buf_printf(o, "HTTP/1.1 %d %s\r\n", res->status, http_status_reason(res->status));
    buf_printf(o, "Date: %s\r\nServer: hearth\r\n", http_date(c->lp));
    if (res->content_type)
        buf_printf(o, "Content-Type: %s\r\n", res->content_type);
    if ((res->stream && res->status == 200) || (res->websocket && res->status == 101)) {
        /* an event stream ends when the connection does; a WebSocket is no longer HTTP */
        res->close = res->stream;
        c->streaming = true;
        c->st = calloc(1, sizeof *c->st);
        if (!c->st)
            abort();
        c->st->ws = res->websocket;
        c->st->user_id = res->stream_user_id;
        c->st->admin = res->stream_admin;
        c->st->last_id = res->stream_last_id;
        c->st->since_ns = req->start_ns;
        if (res->stream && res->stream_channel) {
            snprintf(c->st->channels[0], sizeof c->st->channels[0], "%s", res->stream_channel);
            c->st->nchannels = 1;
        }
    } else if (res->has_file) {
        buf_printf(o, "Content-Length: %lld\r\n", (long long)res->file_size);
    } else if (res->status != 204 && res->status != 304) {
        buf_printf(o, "Content-Length: %zu\r\n", res->body.len);
    }
    buf_printf(o, "X-Request-ID: %s\r\n", req->request_id);
    buf_puts(o, "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"
                "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
                "Cross-Origin-Resource-Policy: same-site\r\n");
    const char *origin = http_header(req, "Origin");
    if (origin_allowed(origin))
        buf_printf(o, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                      "Access-Control-Expose-Headers: X-Request-ID, ETag, Location, Retry-After, Allow, "
                      "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset\r\n",
                   origin);
    if (res->close)
        buf_puts(o, "Connection: close\r\n");
    else if (c->rp.http10)
        buf_puts(o, "Connection: keep-alive\r\n"); /* HTTP/1.0 keeps a connection only when told */
    if (c->rl.limit) /* rate limiting: on every response of a limited route, 429 or not */
        ratelimit_mw_headers(o, &c->rl);
    buf_append(o, res->headers.data ? res->headers.data : "", res->headers.len);
    buf_puts(o, "\r\n");
    if (res->has_file) { /* the body follows the head in pieces (on_written) */
        c->file_fd = res->file_fd;
        c->file_left = req->method == METHOD_HEAD ? 0 : res->file_size;
        c->file_off = 0;
        res->has_file = false;
    } else if (req->method != METHOD_HEAD && res->status != 204 && res->status != 304) {
        buf_append(o, res->body.data ? res->body.data : "", res->body.len);
    }
    uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
    c->wreq.data = c;
    timer_set(c, cfg->idle_timeout_ms); /* a client that stops reading is dropped */
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        metrics_in_flight_add(-1);
        reset_request(c);
        c->busy = false;
        conn_close(c);
    }
}

/* Dispatch -------------------------------------------------------------------------------------*/

static bool request_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void run_handler(uv_work_t *w)
{
    conn_t *c = w->data;
    if (ratelimit_mw_blocking() && !ratelimit_mw_check(&c->req, &c->rl)) {
        ratelimit_mw_reject(&c->req, &c->res, &c->rl); /* shared budgets live in Redis: checked here */
        return;
    }
    if (c->req.auth_present && app_worker_check && !app_worker_check(&c->req, &c->res))
        return; /* a token whose session or user is no longer valid: 401 */
    if (c->req.route->flags & ROUTE_CACHE)
        respcache_run(&c->req, &c->res, c->req.route->handler);
    else
        c->req.route->handler(&c->req, &c->res);
}

static void after_handler(uv_work_t *w, int status)
{
    conn_t *c = w->data;
    (void)status; /* work is never cancelled */
    c->work_pending = false;
    atomic_fetch_sub(&queued_work, 1);
    if (c->closing) {
        /* the client went away while the handler ran; finish the close that waited for it */
        metrics_in_flight_add(-1);
        reset_request(c);
        c->busy = false;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    write_response(c);
}

/* Answers the request reqparse has finished (or rejected). */
static void respond(conn_t *c)
{
    http_request_t *req = &c->req;
    http_response_t *res = &c->res;
    c->busy = true;
    timer_set(c, 0);
    metrics_in_flight_add(1);
    res->status = 200;
    if (!req->start_ns) /* a timeout before any byte of the request */
        req->start_ns = time_mono_ns();
    const char *rid = http_header(req, "X-Request-ID");
    if (rid && request_id_valid(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        rand_hex_id(req->request_id, 16);
    if (!req->method_name)
        req->method_name = "-";
    proxy_resolve_client(req, cfg->proxies, cfg->nproxies);

    if (c->rp.state == RP_DONE && !c->rp.keep_alive)
        c->close_after = true;
    if (c->rp.err == ERR_NONE && c->rp.state == RP_DONE)
        reqparse_request(&c->rp);
    if (c->rp.err != ERR_NONE) {
        if (c->rp.state != RP_DONE)
            res->close = true; /* the stream is out of step: nothing after this can be trusted */
        http_res_errorf(req, res, c->rp.err, "%s", c->rp.msg);
        write_response(c);
        return;
    }
    char allow[128];
    route_match_t m = router_match(req, allow, sizeof allow);
    if (m == ROUTE_NO_PATH) {
        http_res_errorf(req, res, ERR_NOT_FOUND, "no route for %s %s", req->method_name, req->path);
    } else if (m == ROUTE_NO_METHOD && req->method == METHOD_OPTIONS) {
        res->status = 204;
        http_res_header(res, "Allow", "%s", allow);
        const char *origin = http_header(req, "Origin");
        if (http_header(req, "Access-Control-Request-Method") && origin_allowed(origin)) {
            http_res_header(res, "Access-Control-Allow-Methods", "%s", allow);
            http_res_header(res, "Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, If-None-Match, X-Request-ID, Idempotency-Key, Last-Event-ID");
            http_res_header(res, "Access-Control-Max-Age", "600");
        }
    } else if (m == ROUTE_NO_METHOD) {
        http_res_header(res, "Allow", "%s", allow);
        http_res_errorf(req, res, ERR_METHOD_NOT_ALLOWED, "%s is not allowed on %s", req->method_name, req->path);
    } else if (ratelimit_mw_blocking() ? !ratelimit_mw_check_local(req, &c->rl) : !ratelimit_mw_check(req, &c->rl)) {
        ratelimit_mw_reject(req, res, &c->rl); /* over its class's rate limit: 429, on the loop */
    } else if (app_precheck && !app_precheck(req, res)) {
        /* refused before its handler (a bad bearer token) */
    } else if ((req->route->flags & ROUTE_CACHE) && !(ratelimit_mw_blocking() && c->rl.limit) &&
               respcache_lookup_loop(req, res)) {
        /* answered from the cache, on the loop (unless a shared budget in Redis must be asked first) */
    } else if ((req->route->flags & ROUTE_ON_LOOP) && !req->auth_present) {
        req->route->handler(req, res);
    } else {
        if (atomic_fetch_add(&queued_work, 1) < cfg->workers * WORK_PER_WORKER) {
            c->work.data = c;
            c->work_pending = true;
            uv_queue_work(&c->lp->loop, &c->work, run_handler, after_handler); /* fails only without a callback */
            return;
        }
        atomic_fetch_sub(&queued_work, 1);
        http_res_errorf(req, res, ERR_UNAVAILABLE, "the server has more work queued than it can take, try again");
    }
    write_response(c);
}

/* A file body not (wholly) sent, or a handler's file never written: closed. */
static void file_done(conn_t *c)
{
    if (c->file_fd >= 0)
        close(c->file_fd);
    c->file_fd = -1;
    c->file_left = c->file_off = 0;
    if (c->res.has_file)
        close(c->res.file_fd);
    c->res.has_file = false;
}

/* Between requests a connection keeps only small buffers: large ones go back to the allocator,
 * and so does the arena, so idle keep-alive connections cost little memory. */
static void reset_request(conn_t *c)
{
    upload_free(c->upload); /* and its temporary files */
    c->upload = NULL;
    file_done(c);
    reqparse_reset(&c->rp);
    if (c->out.cap > 4096)
        buf_free(&c->out);
    buf_reset(&c->out);
    if (c->res.body.cap > 4096)
        buf_free(&c->res.body);
    buf_reset(&c->res.body);
    buf_reset(&c->res.headers);
    arena_free(&c->arena);
    memset(&c->req, 0, sizeof c->req);
    c->req.arena = &c->arena;
    memcpy(c->req.peer, c->peer, sizeof c->peer); /* the socket's peer; proxy_resolve_client may change req's */
    c->req.peer_loopback = c->peer_loopback;
    c->res.status = 200;
    c->res.content_type = NULL;
    c->res.close = false;
    memset(&c->rl, 0, sizeof c->rl);
}

/* Reading --------------------------------------------------------------------------------------*/

/* Uploads ---------------------------------------------------------------------------------------
 * At the end of a request's headers: a route that takes uploads (ROUTE_UPLOAD) gets its body
 * through net/upload.c rather than held in memory, with the uploads' limit (app_upload_max) and
 * one file part. The file is written from the loop (write() to a temporary file under
 * HEARTH_DATA_DIR/tmp: the page cache takes it, though a saturated disk would stall the loop) and
 * removed when the request is done; who may upload is the handler's to decide, once the body is
 * in. HEARTH_BODY_TIMEOUT_MS bounds the silence between pieces of an upload, not its length. */

static bool upload_sink(void *arg, const char *p, size_t n, err_t *e) { return upload_feed(arg, p, n, e); }

static void on_head(reqparse_t *rp, void *arg)
{
    conn_t *c = arg;
    char allow[128];
    if (!reqparse_target(rp)) { /* a bad target: answered as usual, a 400 once the body is in */
        rp->err = ERR_NONE;
        rp->msg[0] = '\0';
        c->req.path = NULL;
        return;
    }
    if (router_match(&c->req, allow, sizeof allow) != ROUTE_FOUND || !(c->req.route->flags & ROUTE_UPLOAD))
        return; /* answered as usual once the body is in */
    if ((c->req.route->flags & ROUTE_TOKEN) && !http_header(&c->req, "Authorization")) {
        rp->err = ERR_UNAUTHORIZED; /* refused before anything is written to disk */
        snprintf(rp->msg, sizeof rp->msg, "this route needs a bearer token (Authorization: Bearer ...)");
        return;
    }
    char dir[sizeof cfg->data_dir + 8];
    snprintf(dir, sizeof dir, "%s/tmp", cfg->data_dir);
    err_t e;
    err_clear(&e);
    c->upload = upload_new(dir, http_header(&c->req, "Content-Type"), app_upload_max, UPLOAD_FILES, &e);
    if (!c->upload) {
        rp->err = e.code;
        snprintf(rp->msg, sizeof rp->msg, "%s", e.message);
        return;
    }
    rp->sink = upload_sink;
    rp->sink_arg = c->upload;
    rp->max_body = (size_t)app_upload_max + UPLOAD_FIELD_MAX * MULTIPART_MAX_PARTS + 65536; /* the rest of the multipart body */
}

/* The body is in: the upload is complete, or the request is answered with why not. */
static void upload_done(conn_t *c)
{
    err_t e;
    err_clear(&e);
    if (!c->upload)
        return;
    if (!upload_finish(c->upload, &e)) {
        c->rp.err = e.code;
        snprintf(c->rp.msg, sizeof c->rp.msg, "%s", e.message);
        return;
    }
    c->req.upload = c->upload;
}

/* Parses what is buffered, one request at a time, while no request is being answered. */
static void conn_process(conn_t *c)
{
    while (!c->busy && !c->closing && !c->lingering && c->in.len > 0) {
        reqparse_state_t before = c->rp.state;
        size_t used = reqparse_feed(&c->rp, c->in.data, c->in.len);
        buf_consume(&c->in, used);
        reqparse_state_t now = c->rp.state;
        if (before == RP_IDLE && now != RP_IDLE) {
            c->req.start_ns = time_mono_ns();
            if (now == RP_HEAD)
                timer_set(c, cfg->header_timeout_ms);
        }
        if (now == RP_BODY && before == RP_BODY && c->upload && used > 0)
            timer_set(c, cfg->body_timeout_ms); /* an upload may take long: the limit is on silence */
        if (now == RP_BODY && before != RP_BODY) {
            timer_set(c, cfg->body_timeout_ms);
            if (c->rp.want_continue) {
                c->rp.want_continue = false;
                write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            }
        }
        if (now == RP_ERROR) {
            buf_reset(&c->in);
            c->close_after = true;
            respond(c);
            return;
        }
        if (now == RP_DONE) {
            upload_done(c);
            respond(c);
        }
    }
}

/* Reads land in the loop's shared buffer whenever the connection has nothing pending, and only
 * what is left unparsed is copied into the connection's own buffer: an idle connection then holds
 * no read buffer at all, which is what lets one process keep tens of thousands of them open. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = h->data;
    (void)suggested;
    if (c->in.len == 0 || c->lingering) {
        b->base = c->lp->rbuf;
        b->len = sizeof c->lp->rbuf;
        return;
    }
    buf_reserve(&c->in, 64 * 1024);
    b->base = c->in.data + c->in.len;
    b->len = c->in.cap - c->in.len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        uv_read_stop(s);
        c->reading = false;
        c->eof = true;
        if (n != UV_EOF && c->busy)
            c->close_after = true; /* a reset: finish the request in hand, answer nothing more */
        else if (!c->busy)
            conn_close(c);
        /* at a clean end of stream while busy, the requests already received are still answered:
         * on_written closes once they are done */
        return;
    }
    if (n == 0 || c->lingering)
        return; /* nothing, or discarded */
    if (c->st && c->st->ws) { /* WebSocket frames */
        if (b->base == c->lp->rbuf)
            buf_append(&c->in, b->base, (size_t)n);
        else
            c->in.len += (size_t)n, c->in.data[c->in.len] = '\0';
        ws_read(c);
        return;
    }
    if (c->st || c->streaming)
        return; /* an event stream's client has nothing more to say: discarded */
    if (b->base == c->lp->rbuf)
        buf_append(&c->in, b->base, (size_t)n);
    else
        c->in.len += (size_t)n, c->in.data[c->in.len] = '\0';
    if (c->busy) {
        if (c->in.len > IN_HIGH_WATER) {
            uv_read_stop(s);
            c->reading = false;
        }
        return;
    }
    conn_process(c);
    if (c->in.len == 0 && c->in.cap > 4096 && !c->closing)
        buf_free(&c->in);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles > 0)
        return;
    stream_free(c);
    upload_free(c->upload);
    file_done(c);
    buf_free(&c->in);
    buf_free(&c->out);
    reqparse_free(&c->rp);
    buf_free(&c->res.body);
    buf_free(&c->res.headers);
    arena_free(&c->arena);
    free(c);
}

/* Unlinks the connection and closes its handles; when its handler is still running on the
 * worker pool, the handles are closed by after_handler instead. */
static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    loop_ctx_t *lp = c->lp;
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lp->nconns--;
    stream_unlink(c);
    atomic_fetch_sub(&total_conns, 1);
    metrics_connections_add(-1);
    if (c->work_pending) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        return;
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (!c->reset || uv_tcp_close_reset(&c->tcp, on_handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    loop_ctx_t *lp = server->data;
    if (status < 0 || lp->stopping)
        return;
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    uv_tcp_init(&lp->loop, &c->tcp);
    c->tcp.data = c;
    /* tcp is the first member, so the close callback's free() releases the whole conn */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    if (atomic_fetch_add(&total_conns, 1) >= cfg->max_connections) {
        atomic_fetch_sub(&total_conns, 1);
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free); /* over the limit: refuse */
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_init(&lp->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    c->lp = lp;
    arena_init(&c->arena);
    c->req.arena = &c->arena;
    c->file_fd = -1;
    reqparse_init(&c->rp, &c->req, cfg->max_body);
    c->rp.on_head = on_head;
    c->rp.on_head_arg = c;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char host[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
            c->peer_loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
            c->peer_loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        }
        snprintf(c->peer, sizeof c->peer, "%s", host);
    }
    memcpy(c->req.peer, c->peer, sizeof c->peer);
    c->req.peer_loopback = c->peer_loopback;
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    metrics_connections_add(1);
    timer_set(c, cfg->idle_timeout_ms);
    start_reading(c);
}

/* Loops, listeners, shutdown ------------------------------------------------------------------*/

/* Shutdown: stop accepting, then every 20 ms close the connections that have gone idle, until none
 * is left or the grace period is over, when the rest are closed as they are. */
static void drain_tick(uv_timer_t *t)
{
    loop_ctx_t *lp = t->data;
    bool deadline = uv_now(&lp->loop) - lp->stop_started >= (uint64_t)cfg->shutdown_timeout_ms;
    if (deadline && lp->nconns)
        log_warn("shutdown: closing %d connections still open after the grace period", lp->nconns);
    for (conn_t *c = lp->conns, *next; c; c = next) {
        next = c->next;
        if (deadline || (!c->busy && c->rp.state == RP_IDLE))
            conn_close(c); /* busy ones get Connection: close on their response (write_response) */
    }
    if (!lp->conns) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void on_stop(uv_async_t *a)
{
    loop_ctx_t *lp = a->data;
    lp->stopping = true;
    uv_close((uv_handle_t *)&lp->listener, NULL);
    uv_close((uv_handle_t *)&lp->stop, NULL);
    uv_close((uv_handle_t *)&lp->events, NULL);
    lp->stop_started = uv_now(&lp->loop);
    drain_tick(&lp->deadline);
    if (!uv_is_closing((uv_handle_t *)&lp->deadline))
        uv_timer_start(&lp->deadline, drain_tick, 20, 20);
}

static int listen_socket(const char *host, int port, bool reuseport, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        snprintf(why, whylen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void *loop_main(void *arg)
{
    loop_ctx_t *lp = arg;
    uv_run(&lp->loop, UV_RUN_DEFAULT);
    uv_loop_close(&lp->loop);
    return NULL;
}

static volatile sig_atomic_t stop_requested;
static void (*stop_hook)(void *);
static void *stop_hook_arg;

void server_on_stop(void (*fn)(void *arg), void *arg)
{
    stop_hook = fn;
    stop_hook_arg = arg;
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop_requested = 1;
    uv_stop(s->loop);
}

bool server_run(const config_t *config, err_t *e)
{
    cfg = config;
    signal(SIGPIPE, SIG_IGN);

    int n = cfg->threads;
    loop_ctx_t *loops = calloc((size_t)n, sizeof *loops);
    char why[1024];
    int port = cfg->listen_port;
    for (int i = 0; i < n; i++) {
        loops[i].fd = listen_socket(cfg->listen_host, port, true, why, sizeof why);
        if (loops[i].fd < 0) {
            for (int j = 0; j < i; j++)
                close(loops[j].fd);
            free(loops);
            return err_set(e, ERR_UNAVAILABLE, "%s", why);
        }
        if (port == 0) { /* an ephemeral port: every loop must share the one the first got */
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            getsockname(loops[i].fd, (struct sockaddr *)&ss, &len);
            port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    for (int i = 0; i < n; i++) {
        loop_ctx_t *lp = &loops[i];
        uv_loop_init(&lp->loop);
        uv_tcp_init(&lp->loop, &lp->listener);
        uv_tcp_open(&lp->listener, lp->fd);
        lp->listener.data = lp;
        uv_async_init(&lp->loop, &lp->stop, on_stop);
        lp->stop.data = lp;
        uv_timer_init(&lp->loop, &lp->deadline);
        lp->deadline.data = lp;
        uv_async_init(&lp->loop, &lp->events, on_events);
        lp->events.data = lp;
        pthread_mutex_init(&lp->ev_mu, NULL);
        int rc = uv_listen((uv_stream_t *)&lp->listener, 4096, on_connection);
        if (rc != 0)
            return err_set(e, ERR_UNAVAILABLE, "listen: %s", uv_strerror(rc));
    }

    char fields[512];
    snprintf(fields, sizeof fields, "\"address\":\"%s:%d\",\"threads\":%d,\"workers\":%d", cfg->listen_host, port, n,
             cfg->workers);
    log_line(LOG_INFO, NULL, "listening", fields);

    pthread_mutex_lock(&hub_mu);
    hub_loops = loops;
    hub_n = n;
    pthread_mutex_unlock(&hub_mu);
    for (int i = 0; i < n; i++)
        pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]);

    /* the main thread waits for a signal */
    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    uv_signal_t sigterm, sigint;
    uv_signal_init(&main_loop, &sigterm);
    uv_signal_init(&main_loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    log_line(LOG_INFO, NULL, "shutting down: no new connections, finishing requests in flight", NULL);
    if (stop_hook)
        stop_hook(stop_hook_arg);

    pthread_mutex_lock(&hub_mu); /* no more events: their async handles close with the loops */
    hub_loops = NULL;
    hub_n = 0;
    pthread_mutex_unlock(&hub_mu);
    for (int i = 0; i < n; i++)
        uv_async_send(&loops[i].stop);
    for (int i = 0; i < n; i++) {
        pthread_join(loops[i].thread, NULL);
        loop_ctx_t *lp = &loops[i];
        for (ev_item_t *ev = lp->ev_head, *next; ev; ev = next) {
            next = ev->next;
            free(ev);
        }
        for (int k = 0; k < EV_RING; k++)
            free(lp->ring[k]);
        pthread_mutex_destroy(&lp->ev_mu);
    }
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
    free(loops);
    log_line(LOG_INFO, NULL, "stopped", NULL);
    return true;
}
