/* reqparse: llhttp callbacks and the limits; see reqparse.h. */
#include "reqparse.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../base/util.h"

static llhttp_settings_t settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static int reject(reqparse_t *rp, err_code_t code, const char *msg)
{
    rp->err = code;
    snprintf(rp->msg, sizeof rp->msg, "%s", msg);
    return -1;
}

static int on_message_begin(llhttp_t *p)
{
    reqparse_t *rp = p->data;
    rp->state = RP_HEAD;
    return 0;
}

static int count_header_bytes(reqparse_t *rp, size_t n)
{
    rp->header_bytes += n;
    if (rp->header_bytes > HTTP_MAX_HEADER_BYTES)
        return reject(rp, ERR_HEADERS_TOO_LARGE, "the request headers are larger than 16 KiB");
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    reqparse_t *rp = p->data;
    if (rp->url.len + n > HTTP_MAX_URL)
        return reject(rp, ERR_URI_TOO_LONG, "the request target is longer than 8 KiB");
    buf_append(&rp->url, at, n);
    return 0;
}

/* Stores the header collected so far (called when the next field starts or the head ends). */
static int header_done(reqparse_t *rp)
{
    if (!rp->in_value)
        return 0;
    rp->in_value = false;
    http_request_t *req = rp->req;
    if (req->nheaders == HTTP_MAX_HEADERS)
        return reject(rp, ERR_HEADERS_TOO_LARGE, "the request has more than 100 headers");
    const char *name = rp->hname.len ? rp->hname.data : "";
    const char *value = rp->hvalue.len ? rp->hvalue.data : "";
    if (memchr(name, 0, rp->hname.len) || memchr(value, 0, rp->hvalue.len))
        return reject(rp, ERR_BAD_REQUEST, "a header contains a NUL byte");
    http_header_t *h = &req->headers[req->nheaders++];
    h->name = arena_strndup(req->arena, name, rp->hname.len);
    h->value = arena_strndup(req->arena, value, rp->hvalue.len);
    buf_reset(&rp->hname);
    buf_reset(&rp->hvalue);
    return 0;
}

/* Trailer fields (after a chunked body) are counted against the header limit and dropped: a
 * header that arrives after the head must not change what the head said. */
static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    reqparse_t *rp = p->data;
    if (rp->state == RP_BODY)
        return count_header_bytes(rp, n);
    if (header_done(rp) || count_header_bytes(rp, n))
        return -1;
    buf_append(&rp->hname, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    reqparse_t *rp = p->data;
    if (rp->state == RP_BODY)
        return count_header_bytes(rp, n);
    rp->in_value = true;
    if (count_header_bytes(rp, n))
        return -1;
    buf_append(&rp->hvalue, at, n);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    reqparse_t *rp = p->data;
    if (header_done(rp))
        return -1;
    rp->state = RP_BODY;
    const char *mn = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    rp->req->method = http_method_from(mn, strlen(mn));
    rp->req->method_name = mn;
    if (rp->on_head)
        rp->on_head(rp, rp->on_head_arg);
    if (rp->err != ERR_NONE)
        return -1;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > rp->max_body)
        return reject(rp, ERR_PAYLOAD_TOO_LARGE, "the request body is larger than the limit");
    rp->http10 = llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) == 0;
    if (llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) == 1) {
        int hosts = 0; /* RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host */
        for (int i = 0; i < rp->req->nheaders; i++)
            hosts += strcasecmp(rp->req->headers[i].name, "Host") == 0;
        if (hosts != 1)
            return reject(rp, ERR_BAD_REQUEST, "an HTTP/1.1 request must have exactly one Host header");
    }
    const char *expect = http_header(rp->req, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0)
        rp->want_continue = true;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    reqparse_t *rp = p->data;
    if (rp->body_seen + n > rp->max_body)
        return reject(rp, ERR_PAYLOAD_TOO_LARGE, "the request body is larger than the limit");
    rp->body_seen += n;
    if (!rp->sink) {
        buf_append(&rp->body, at, n);
        return 0;
    }
    err_t e;
    err_clear(&e);
    if (!rp->sink(rp->sink_arg, at, n, &e))
        return reject(rp, e.code, e.message);
    return 0;
}

/* A chunk announces its size before its data: refuse one that would pass the limit now, rather
 * than after reading up to the limit. */
static int on_chunk_header(llhttp_t *p)
{
    reqparse_t *rp = p->data;
    if (p->content_length > rp->max_body - rp->body_seen)
        return reject(rp, ERR_PAYLOAD_TOO_LARGE, "the request body is larger than the limit");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    reqparse_t *rp = p->data;
    rp->state = RP_DONE;
    rp->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static void settings_setup(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_chunk_header = on_chunk_header;
    settings.on_message_complete = on_message_complete;
}

void reqparse_init(reqparse_t *rp, http_request_t *req, size_t max_body)
{
    pthread_once(&settings_once, settings_setup);
    memset(rp, 0, sizeof *rp);
    rp->req = req;
    rp->max_body = rp->default_max_body = max_body;
    llhttp_init(&rp->parser, HTTP_REQUEST, &settings);
    rp->parser.data = rp;
}

void reqparse_free(reqparse_t *rp)
{
    buf_free(&rp->url);
    buf_free(&rp->hname);
    buf_free(&rp->hvalue);
    buf_free(&rp->body);
}

size_t reqparse_feed(reqparse_t *rp, const char *data, size_t len)
{
    if (rp->state == RP_DONE || rp->state == RP_ERROR || len == 0)
        return 0;
    enum llhttp_errno err = llhttp_execute(&rp->parser, data, len);
    if (err == HPE_OK)
        return len;
    if (err == HPE_PAUSED) {
        size_t used = (size_t)(llhttp_get_error_pos(&rp->parser) - data);
        llhttp_resume(&rp->parser);
        return used;
    }
    if (rp->err == ERR_NONE) {
        rp->err = ERR_BAD_REQUEST;
        snprintf(rp->msg, sizeof rp->msg, "malformed HTTP request: %s", llhttp_get_error_reason(&rp->parser));
    }
    rp->state = RP_ERROR;
    return len;
}

bool reqparse_target(reqparse_t *rp)
{
    http_request_t *req = rp->req;
    if (req->path)
        return true;
    req->target = arena_strndup(req->arena, rp->url.len ? rp->url.data : "", rp->url.len);
    const char *qm = strchr(req->target, '?');
    size_t plen = qm ? (size_t)(qm - req->target) : strlen(req->target);
    req->query = qm ? qm + 1 : "";
    char *path;
    if (plen == 0 || req->target[0] != '/' || !url_decode(req->arena, req->target, plen, false, &path, NULL)) {
        rp->err = ERR_BAD_REQUEST;
        snprintf(rp->msg, sizeof rp->msg, "the request target is not a valid absolute path");
        return false;
    }
    req->path = path;
    return true;
}

bool reqparse_request(reqparse_t *rp)
{
    if (!reqparse_target(rp))
        return false;
    rp->req->body = rp->body.len ? rp->body.data : "";
    rp->req->body_len = rp->sink ? rp->body_seen : rp->body.len;
    return true;
}

void reqparse_reset(reqparse_t *rp)
{
    buf_reset(&rp->url);
    buf_reset(&rp->hname);
    buf_reset(&rp->hvalue);
    if (rp->body.cap > 4096)
        buf_free(&rp->body); /* do not keep a large body's memory on an idle connection */
    buf_reset(&rp->body);
    rp->state = RP_IDLE;
    rp->header_bytes = 0;
    rp->in_value = false;
    rp->want_continue = false;
    rp->keep_alive = false;
    rp->http10 = false;
    rp->err = ERR_NONE;
    rp->msg[0] = '\0';
    rp->sink = NULL;
    rp->sink_arg = NULL;
    rp->body_seen = 0;
    rp->max_body = rp->default_max_body;
}
