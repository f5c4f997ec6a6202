/* server: connections, parsing, limits, timeouts, dispatch and graceful shutdown.
 *
 * Life of a connection: bytes are appended to `in`; llhttp parses them and pauses at the end of
 * each message, so exactly one request per connection is in flight and pipelined requests wait in
 * `in` (responses therefore go out in order). A finished request is routed, then its handler runs
 * on the loop or on the worker pool; the response is serialised into `out` and written; when the
 * write completes the arena is reset and parsing resumes. One timer per connection enforces, by
 * state: the idle timeout between requests, the header timeout from a request's first byte (a
 * slow-loris client cannot stretch it by trickling), and the body timeout. An error response that
 * must close the connection shuts down the write side and drains what the client still sends for a
 * moment, so the client reads the response instead of a reset. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../base/log.h"
#include "../base/util.h"
#include "http.h"
#include "metrics.h"
#include "router.h"

#define IN_HIGH_WATER (256 * 1024) /* stop reading while this much waits behind a busy request */
#define LINGER_MS 2000

typedef struct loop_ctx loop_ctx_t;

typedef enum { C_IDLE, C_HEAD, C_BODY, C_BUSY, C_CLOSING } conn_state_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    loop_ctx_t *lp;
    struct conn *prev, *next;
    llhttp_t parser;
    conn_state_t state;
    int handles; /* open uv handles (tcp, timer); freed when 0 and no work pending */
    bool work_pending, reading, lingering, close_after, eof;
    buf_t in, out;
    /* the request being parsed or served */
    arena_t arena;
    http_request_t req;
    http_response_t res;
    buf_t url, hname, hvalue, body;
    size_t header_bytes;
    bool in_value;
    err_code_t parse_err; /* set by a callback that rejects the request */
    char parse_msg[128];
    bool expect_continue;
    uv_work_t work;
    uv_write_t wreq;
    uv_shutdown_t sreq;
} conn_t;

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
};

static const config_t *cfg;
static llhttp_settings_t settings;
static _Atomic int total_conns;

static void conn_process(conn_t *c);
static void conn_close(conn_t *c);
static void respond(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* Timers ---------------------------------------------------------------------------------------*/

static void on_timeout(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    if (c->state == C_HEAD || c->state == C_BODY) {
        /* a request that is not arriving fast enough: answer 408 and close */
        c->parse_err = ERR_REQUEST_TIMEOUT;
        snprintf(c->parse_msg, sizeof c->parse_msg, "the request was not received in time");
        c->state = C_BUSY;
        c->close_after = true;
        respond(c);
        return;
    }
    if (c->state == C_IDLE)
        conn_close(c);
}

static void timer_set(conn_t *c, int ms)
{
    if (ms > 0)
        uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
    else
        uv_timer_stop(&c->timer);
}

/* Parser callbacks ----------------------------------------------------------------------------*/

static int reject(conn_t *c, err_code_t code, const char *msg)
{
    c->parse_err = code;
    snprintf(c->parse_msg, sizeof c->parse_msg, "%s", msg);
    return -1;
}

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = p->data;
    c->state = C_HEAD;
    c->req.start_ns = time_mono_ns();
    timer_set(c, cfg->header_timeout_ms);
    return 0;
}

static int count_header_bytes(conn_t *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > HTTP_MAX_HEADER_BYTES)
        return reject(c, ERR_HEADERS_TOO_LARGE, "the request headers are larger than 16 KiB");
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->url.len + n > HTTP_MAX_URL)
        return reject(c, ERR_URI_TOO_LONG, "the request target is longer than 8 KiB");
    buf_append(&c->url, at, n);
    return 0;
}

static int header_done(conn_t *c)
{
    if (!c->in_value)
        return 0;
    c->in_value = false;
    if (c->req.nheaders == HTTP_MAX_HEADERS)
        return reject(c, ERR_HEADERS_TOO_LARGE, "the request has more than 100 headers");
    if (memchr(c->hname.data ? c->hname.data : "", 0, c->hname.len) || memchr(c->hvalue.data ? c->hvalue.data : "", 0, c->hvalue.len))
        return reject(c, ERR_BAD_REQUEST, "a header contains a NUL byte");
    http_header_t *h = &c->req.headers[c->req.nheaders++];
    h->name = arena_strndup(&c->arena, c->hname.data ? c->hname.data : "", c->hname.len);
    h->value = arena_strndup(&c->arena, c->hvalue.data ? c->hvalue.data : "", c->hvalue.len);
    buf_reset(&c->hname);
    buf_reset(&c->hvalue);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (header_done(c) || count_header_bytes(c, n))
        return -1;
    buf_append(&c->hname, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    c->in_value = true;
    if (count_header_bytes(c, n))
        return -1;
    buf_append(&c->hvalue, at, n);
    return 0;
}

static void write_raw(conn_t *c, const char *s, size_t n);

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    if (header_done(c))
        return -1;
    c->state = C_BODY;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->max_body)
        return reject(c, ERR_PAYLOAD_TOO_LARGE, "the request body is larger than the limit");
    const char *expect = http_header(&c->req, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0)
        write_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    timer_set(c, cfg->body_timeout_ms);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->body.len + n > cfg->max_body)
        return reject(c, ERR_PAYLOAD_TOO_LARGE, "the request body is larger than the limit");
    buf_append(&c->body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    c->state = C_BUSY;
    timer_set(c, 0);
    return HPE_PAUSED;
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

static void access_log(conn_t *c, uint64_t dur_ns)
{
    if (!log_enabled(LOG_INFO))
        return;
    buf_t f;
    buf_init(&f);
    buf_puts(&f, "\"method\":");
    json_escape(&f, c->req.method_name ? c->req.method_name : "-", strlen(c->req.method_name ? c->req.method_name : "-"));
    buf_puts(&f, ",\"path\":");
    json_escape(&f, c->url.data ? c->url.data : "", c->url.len);
    buf_printf(&f, ",\"status\":%d,\"duration_ms\":%.3f,\"bytes\":%zu,\"remote\":\"%s\"", c->res.status,
               (double)dur_ns / 1e6, c->res.body.len, c->req.peer);
    if (c->req.route) {
        buf_puts(&f, ",\"route\":");
        json_escape(&f, c->req.route->pattern, strlen(c->req.route->pattern));
    }
    log_line(c->res.status >= 500 ? LOG_ERROR : LOG_INFO, c->req.request_id, "request", buf_cstr(&f));
    buf_free(&f);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    (void)status;
    conn_t *c = s->data;
    /* keep reading (and discarding) for a moment so the client sees the response, not a reset */
    c->lingering = true;
    timer_set(c, LINGER_MS);
    if (!c->reading && !c->eof && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_written(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    uint64_t dur = time_mono_ns() - c->req.start_ns;
    metrics_request(c->req.route ? c->req.route->index : -1, c->req.method, c->res.status, dur);
    metrics_in_flight_add(-1);
    access_log(c, dur);
    bool close = status != 0 || c->close_after || c->lp->stopping;
    reset_request(c);
    if (close) {
        if (status == 0 && !c->eof && !uv_is_closing((uv_handle_t *)&c->tcp)) {
            c->state = C_CLOSING;
            c->sreq.data = c;
            if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0)
                return;
        }
        conn_close(c);
        return;
    }
    c->state = C_IDLE;
    timer_set(c, cfg->idle_timeout_ms);
    if (!c->reading) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    conn_process(c);
}

/* Serialises c->res (status line, headers, body) and writes it. */
static void write_response(conn_t *c)
{
    http_request_t *req = &c->req;
    http_response_t *res = &c->res;
    buf_t *o = &c->out;
    buf_reset(o);
    if (c->lp->stopping)
        res->close = true;
    if (c->close_after)
        res->close = true;
    c->close_after = res->close;
    buf_printf(o, "HTTP/1.1 %d %s\r\n", res->status, http_status_reason(res->status));
    buf_printf(o, "Date: %s\r\nServer: hearth\r\n", http_date(c->lp));
    if (res->content_type)
        buf_printf(o, "Content-Type: %s\r\n", res->content_type);
    if (res->status != 204 && res->status != 304)
        buf_printf(o, "Content-Length: %zu\r\n", res->body.len);
    buf_printf(o, "X-Request-ID: %s\r\n", req->request_id);
    buf_puts(o, "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"
                "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
                "Cross-Origin-Resource-Policy: same-site\r\n");
    const char *origin = http_header(req, "Origin");
    if ((cfg->ncors || cfg->cors_any) && origin_allowed(origin)) {
        buf_printf(o, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                      "Access-Control-Expose-Headers: X-Request-ID, ETag, Location, Retry-After\r\n",
                   cfg->cors_any && !cfg->ncors ? "*" : origin);
    }
    if (res->close)
        buf_puts(o, "Connection: close\r\n");
    buf_append(o, res->headers.data ? res->headers.data : "", res->headers.len);
    buf_puts(o, "\r\n");
    if (req->method != METHOD_HEAD && res->status != 204 && res->status != 304)
        buf_append(o, res->body.data ? res->body.data : "", res->body.len);
    uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        metrics_in_flight_add(-1);
        reset_request(c);
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
    c->req.route->handler(&c->req, &c->res);
}

static void after_handler(uv_work_t *w, int status)
{
    conn_t *c = w->data;
    c->work_pending = false;
    if (status == UV_ECANCELED)
        http_res_errorf(&c->req, &c->res, ERR_UNAVAILABLE, "the server is shutting down");
    if (uv_is_closing((uv_handle_t *)&c->tcp)) {
        metrics_in_flight_add(-1);
        reset_request(c);
        conn_close(c); /* finishes the close that waited for the work */
        return;
    }
    write_response(c);
}

/* Fills the request from the parser state and answers it. */
static void respond(conn_t *c)
{
    http_request_t *req = &c->req;
    http_response_t *res = &c->res;
    metrics_in_flight_add(1);
    res->status = 200;
    const char *rid = http_header(req, "X-Request-ID");
    if (rid && request_id_valid(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        rand_hex_id(req->request_id, 16);
    if (!req->method_name)
        req->method_name = "-";

    if (c->parse_err != ERR_NONE) {
        res->close = true;
        http_res_errorf(req, res, c->parse_err, "%s", c->parse_msg);
        write_response(c);
        return;
    }
    req->target = buf_cstr(&c->url);
    const char *qm = strchr(req->target, '?');
    size_t plen = qm ? (size_t)(qm - req->target) : strlen(req->target);
    req->query = qm ? qm + 1 : "";
    char *path;
    if (plen == 0 || req->target[0] != '/' || !url_decode(req->arena, req->target, plen, false, &path, NULL)) {
        http_res_errorf(req, res, ERR_BAD_REQUEST, "the request path is not a valid absolute path");
        write_response(c);
        return;
    }
    req->path = path;
    req->body = c->body.data ? c->body.data : "";
    req->body_len = c->body.len;

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
            http_res_header(res, "Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, X-Request-ID");
            http_res_header(res, "Access-Control-Max-Age", "600");
        }
    } else if (m == ROUTE_NO_METHOD) {
        http_res_header(res, "Allow", "%s", allow);
        http_res_errorf(req, res, ERR_METHOD_NOT_ALLOWED, "%s is not allowed on %s", req->method_name, req->path);
    } else if (req->route->flags & ROUTE_ON_LOOP) {
        req->route->handler(req, res);
    } else {
        c->work.data = c;
        c->work_pending = true;
        if (uv_queue_work(&c->lp->loop, &c->work, run_handler, after_handler) == 0)
            return;
        c->work_pending = false;
        http_res_errorf(req, res, ERR_UNAVAILABLE, "the server cannot take more work now");
    }
    write_response(c);
}

static void reset_request(conn_t *c)
{
    buf_reset(&c->url);
    buf_reset(&c->hname);
    buf_reset(&c->hvalue);
    buf_reset(&c->body);
    if (c->body.cap > 64 * 1024)
        buf_free(&c->body); /* do not keep a large body's memory on an idle connection */
    if (c->out.cap > 64 * 1024)
        buf_free(&c->out);
    buf_reset(&c->res.body);
    if (c->res.body.cap > 64 * 1024)
        buf_free(&c->res.body);
    buf_reset(&c->res.headers);
    arena_reset(&c->arena);
    char peer[sizeof c->req.peer];
    memcpy(peer, c->req.peer, sizeof peer);
    bool loopback = c->req.peer_loopback;
    memset(&c->req, 0, sizeof c->req);
    c->req.arena = &c->arena;
    memcpy(c->req.peer, peer, sizeof peer);
    c->req.peer_loopback = loopback;
    c->res.status = 200;
    c->res.content_type = NULL;
    c->res.close = false;
    c->header_bytes = 0;
    c->in_value = false;
    c->parse_err = ERR_NONE;
    c->parse_msg[0] = '\0';
}

/* Reading --------------------------------------------------------------------------------------*/

static void conn_process(conn_t *c)
{
    while (c->state != C_BUSY && c->state != C_CLOSING && c->in.len > 0) {
        enum llhttp_errno err = llhttp_execute(&c->parser, c->in.data, c->in.len);
        size_t used = c->in.len;
        if (err == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - c->in.data);
            llhttp_resume(&c->parser);
        } else if (err != HPE_OK) {
            if (c->parse_err == ERR_NONE) {
                c->parse_err = ERR_BAD_REQUEST;
                snprintf(c->parse_msg, sizeof c->parse_msg, "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
            }
            buf_reset(&c->in);
            c->state = C_BUSY;
            c->close_after = true;
            timer_set(c, 0);
            respond(c);
            return;
        }
        buf_consume(&c->in, used);
        if (c->state == C_BUSY) {
            if (!c->req.method_name) {
                const char *mn = llhttp_method_name((llhttp_method_t)llhttp_get_method(&c->parser));
                c->req.method = http_method_from(mn, strlen(mn));
                c->req.method_name = mn;
            }
            if (!llhttp_should_keep_alive(&c->parser))
                c->close_after = true;
            respond(c);
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    conn_t *c = h->data;
    (void)suggested;
    buf_reserve(&c->in, 64 * 1024);
    b->base = c->in.data + c->in.len;
    b->len = c->in.cap - c->in.len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    (void)b;
    if (n < 0) { /* end of stream or error */
        uv_read_stop(s);
        c->reading = false;
        c->eof = true;
        if (c->state == C_BUSY)
            c->close_after = true; /* the answer is still coming; close after it */
        else
            conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (c->lingering || c->state == C_CLOSING)
        return; /* discard */
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
    if (c->state == C_BUSY) {
        if (c->in.len > IN_HIGH_WATER) {
            uv_read_stop(s);
            c->reading = false;
        }
        return;
    }
    conn_process(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles > 0)
        return;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->url);
    buf_free(&c->hname);
    buf_free(&c->hvalue);
    buf_free(&c->body);
    buf_free(&c->res.body);
    buf_free(&c->res.headers);
    arena_free(&c->arena);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp)) {
        if (!c->work_pending && !uv_is_closing((uv_handle_t *)&c->timer))
            uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        return;
    }
    loop_ctx_t *lp = c->lp;
    if (c->prev)
        c->prev->next = c->next;
    else
        lp->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lp->nconns--;
    atomic_fetch_sub(&total_conns, 1);
    metrics_connections_add(-1);
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    if (!c->work_pending)
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    /* else: after_handler calls conn_close again, which closes the timer */
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
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->handles = 1;
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    if (atomic_fetch_add(&total_conns, 1) >= cfg->max_connections) {
        atomic_fetch_sub(&total_conns, 1);
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_init(&lp->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->lp = lp;
    arena_init(&c->arena);
    c->req.arena = &c->arena;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char host[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            c->req.peer_loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            c->req.peer_loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        }
        snprintf(c->req.peer, sizeof c->req.peer, "%s", host);
    }
    c->next = lp->conns;
    if (lp->conns)
        lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    metrics_connections_add(1);
    c->state = C_IDLE;
    c->reading = true;
    timer_set(c, cfg->idle_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Loops, listeners, shutdown ------------------------------------------------------------------*/

static void close_listener_and_idle(loop_ctx_t *lp)
{
    lp->stopping = true;
    if (!uv_is_closing((uv_handle_t *)&lp->listener))
        uv_close((uv_handle_t *)&lp->listener, NULL);
    for (conn_t *c = lp->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_IDLE)
            conn_close(c);
        /* busy ones close after their response (write_response sets Connection: close) */
    }
}

static void on_deadline(uv_timer_t *t)
{
    loop_ctx_t *lp = t->data;
    if (lp->conns && lp->nconns)
        log_warn("shutdown: closing %d connections still open after the grace period", lp->nconns);
    for (conn_t *c = lp->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    uv_close((uv_handle_t *)&lp->deadline, NULL);
}

static void on_check_drained(uv_timer_t *t);

static void on_stop(uv_async_t *a)
{
    loop_ctx_t *lp = a->data;
    close_listener_and_idle(lp);
    uv_close((uv_handle_t *)&lp->stop, NULL);
    lp->deadline.data = lp;
    lp->stop_started = uv_now(&lp->loop);
    uv_timer_start(&lp->deadline, on_check_drained, 20, 20);
}

/* Polls until every connection is gone or the grace period ends. */
static void on_check_drained(uv_timer_t *t)
{
    loop_ctx_t *lp = t->data;
    /* connections that turned idle since the stop are closed now */
    for (conn_t *c = lp->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_IDLE)
            conn_close(c);
    }
    if (!lp->conns) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        return;
    }
    if (uv_now(&lp->loop) - lp->stop_started >= (uint64_t)cfg->shutdown_timeout_ms) {
        uv_timer_stop(t);
        on_deadline(t);
    }
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

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop_requested = 1;
    uv_stop(s->loop);
}

bool server_run(const config_t *config, err_t *e)
{
    cfg = config;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    signal(SIGPIPE, SIG_IGN);

    int n = cfg->threads;
    loop_ctx_t *loops = calloc((size_t)n, sizeof *loops);
    char why[256];
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
        int rc = uv_listen((uv_stream_t *)&lp->listener, 4096, on_connection);
        if (rc != 0)
            return err_set(e, ERR_UNAVAILABLE, "listen: %s", uv_strerror(rc));
    }

    char fields[512];
    snprintf(fields, sizeof fields, "\"address\":\"%s:%d\",\"threads\":%d,\"workers\":%d", cfg->listen_host, port, n,
             cfg->workers);
    log_line(LOG_INFO, NULL, "listening", fields);

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

    for (int i = 0; i < n; i++)
        uv_async_send(&loops[i].stop);
    for (int i = 0; i < n; i++)
        pthread_join(loops[i].thread, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
    free(loops);
    log_line(LOG_INFO, NULL, "stopped", NULL);
    return true;
}
