/* reqparse: turns the bytes of one connection into requests, with every limit enforced while
 * parsing (URL length, header bytes and count, body size, NUL bytes), and no I/O: the server feeds
 * it what it read and acts on what it reports. That keeps the parsing glue free of libuv, so the
 * fuzzer drives exactly the code the server runs. llhttp pauses at the end of each message, so one
 * call never consumes more than one request and pipelined requests wait in the caller's buffer. */
#ifndef HEARTH_REQPARSE_H
#define HEARTH_REQPARSE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

#include "../base/buf.h"
#include "http.h"

typedef enum {
    RP_IDLE, /* between requests */
    RP_HEAD, /* a request has begun; headers are arriving */
    RP_BODY, /* headers done; body arriving */
    RP_DONE, /* a whole request is ready (reqparse_request) */
    RP_ERROR /* the input is rejected: `err`/`msg` say why; the connection must close */
} reqparse_state_t;

typedef struct reqparse {
    llhttp_t parser;
    reqparse_state_t state;
    size_t max_body;
    http_request_t *req; /* headers are written here as they arrive */
    buf_t url, hname, hvalue, body;
    size_t header_bytes;
    bool in_value;
    bool want_continue; /* the client sent Expect: 100-continue; the server answers it once */
    bool keep_alive;    /* valid in RP_DONE */
    bool http10;        /* the request is HTTP/1.0 */
    err_code_t err;
    char msg[256];
    /* Called when the headers are complete, before any body byte: the caller may set max_body
     * and a body sink for this request (an upload route). Cleared by neither reset nor the
     * parse: set once. */
    void (*on_head)(struct reqparse *rp, void *arg);
    void *on_head_arg;
    /* With `sink` set, body bytes go to it instead of `body` (req->body is then empty and
     * req->body_len counts them); a sink that fails rejects the request with its error. Reset
     * between requests, with max_body back to default_max_body. */
    bool (*sink)(void *arg, const char *p, size_t n, err_t *e);
    void *sink_arg;
    size_t body_seen, default_max_body;
} reqparse_t;

void reqparse_init(reqparse_t *rp, http_request_t *req, size_t max_body);
void reqparse_free(reqparse_t *rp);
/* Parses from data[0..len); returns how many bytes it used. Stops after one whole request
 * (state RP_DONE) or on an error (RP_ERROR). */
size_t reqparse_feed(reqparse_t *rp, const char *data, size_t len);
/* Completes req from a RP_DONE parse: method, target, decoded path, query and body. false (with
 * err/msg set to a 400) when the target is not a valid origin-form path. */
bool reqparse_request(reqparse_t *rp);
/* The target, decoded path and query alone, once the headers are complete (on_head); the same
 * check as reqparse_request. */
bool reqparse_target(reqparse_t *rp);
/* Ready for the next request on the same connection; keeps buffers' memory unless large. */
void reqparse_reset(reqparse_t *rp);

#endif
