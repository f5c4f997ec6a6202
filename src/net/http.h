/* http: the request and response a handler sees, and the helpers handlers use to read one and
 * write the other. A request and everything hanging off it lives in the request's arena, freed
 * when the response has been sent; handlers never free what they take from it. */
#ifndef HEARTH_HTTP_H
#define HEARTH_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "../base/error.h"
#include "../base/jw.h"

typedef enum http_method {
    METHOD_GET, METHOD_HEAD, METHOD_POST, METHOD_PUT, METHOD_PATCH, METHOD_DELETE, METHOD_OPTIONS, METHOD_OTHER, METHOD__COUNT
} http_method_t;

extern const char *const http_method_names[METHOD__COUNT];

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_HEADER_BYTES (16 * 1024)
#define HTTP_MAX_URL 8192
#define HTTP_MAX_PARAMS 4

typedef struct http_header {
    const char *name, *value;
} http_header_t;

typedef struct route route_t;

typedef struct http_request {
    arena_t *arena;
    http_method_t method;
    const char *method_name;
    const char *target;   /* as received: path and query */
    const char *path;     /* percent-decoded path */
    const char *query;    /* raw query string (after '?'), or "" */
    http_header_t headers[HTTP_MAX_HEADERS];
    int nheaders;
    const char *body;
    size_t body_len;
    char request_id[132];
    const route_t *route;
    const char *param_names[HTTP_MAX_PARAMS], *param_values[HTTP_MAX_PARAMS];
    int nparams;
    bool peer_loopback;
    char peer[64];
    uint64_t start_ns;
    uint64_t cache_gen; /* respcache: generation read at lookup (0: not cacheable) */
    bool cache_near_tried; /* respcache: the loop already missed in the near cache */
    /* A bearer token whose signature and times were checked on the loop (api/auth.c): */
    bool auth_present;
    int64_t auth_user_id, auth_session_id;
    void *auth_actor; /* set by app_worker_check: who it found (api/auth.c's actor_t, in the arena) */
    struct upload *upload; /* ROUTE_UPLOAD: the body as taken in (net/upload.h); owned by the server */
} http_request_t;

typedef struct http_response {
    int status;
    const char *content_type;
    buf_t body;
    buf_t headers; /* extra header lines, each "Name: value\r\n" */
    bool close;    /* send Connection: close and close after the response */
    /* An event stream (text/event-stream): after the head and the body, the connection stays open
     * and receives the events of `stream_channel` with ids above `stream_last_id` (server.c). */
    bool stream;
    const char *stream_channel;
    int64_t stream_last_id;
    /* A WebSocket (status 101): after the head, RFC 6455 frames (server.c), for this user. */
    bool websocket;
    int64_t stream_user_id; /* 0: anonymous */
    bool stream_admin;
    /* A file as the body (http_res_file): sent in pieces as the client takes them, never read
     * whole; the server closes the descriptor. */
    bool has_file;
    int file_fd;
    int64_t file_size;
} http_response_t;

/* Request helpers */
const char *http_header(const http_request_t *req, const char *name); /* case-insensitive, NULL if absent */
const char *http_param(const http_request_t *req, const char *name);  /* route parameter */
/* Route parameter as a positive 64-bit id; 404 in `e` when it is not one (no such resource). */
bool http_param_id(const http_request_t *req, const char *name, int64_t *out, err_t *e);
/* The body as a JSON value: 415 unless Content-Type is application/json, 400 when malformed.
 * The caller owns the result (json_decref). */
json_t *http_json_body(const http_request_t *req, err_t *e);

/* Query string: decoded name/value pairs. Bad percent-encoding or invalid UTF-8 is a 400. */
typedef struct http_query {
    int n;
    const char *names[64], *values[64];
} http_query_t;
bool http_query_parse(const http_request_t *req, http_query_t *q, err_t *e);
const char *http_query_get(const http_query_t *q, const char *name); /* the last value given */

/* Response helpers */
void http_res_header(http_response_t *res, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Begin a JSON body: sets status and content type, and returns a writer over the body. */
void http_res_json(http_response_t *res, int status, jw_t *w);
void http_res_text(http_response_t *res, int status, const char *content_type, const char *body, size_t len);
/* The file open on `fd` (its first `size` bytes) as the body; the response owns the descriptor. */
void http_res_file(http_response_t *res, int status, const char *content_type, int fd, int64_t size);
/* The documented error body from `e`, with the request id. */
void http_res_error(const http_request_t *req, http_response_t *res, const err_t *e);
void http_res_errorf(const http_request_t *req, http_response_t *res, err_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

const char *http_status_reason(int status);
http_method_t http_method_from(const char *name, size_t len);

#endif
