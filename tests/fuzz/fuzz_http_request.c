/* fuzz_http_request: the bytes of one client connection, through reqparse (llhttp + limits) and
 * the router, exactly as server.c's conn_process/respond/reset_request drive them.
 *
 * The one idea: the input arrives in reads whose sizes the first byte chooses, and the harness
 * keeps a receive buffer the way the server does, so llhttp callbacks see headers, URLs and chunked
 * bodies cut at every possible place, and pipelined requests are taken one at a time from what is
 * left over after each RP_DONE. A feed that uses nothing without finishing or failing would make
 * the server spin, so it traps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "base/arena.h"
#include "base/util.h"
#include "net/http.h"
#include "net/reqparse.h"
#include "net/router.h"

#define FUZZ_MAX_BODY 4096 /* small, so the 413 path is reachable from small inputs */

static void clear_request(http_request_t *req, arena_t *arena)
{
    memset(req, 0, sizeof *req);
    req->arena = arena;
    memcpy(req->peer, "127.0.0.1", 10);
    req->peer_loopback = true;
}

/* the server's reset_request, minus the connection's output buffers */
static void reset_request(reqparse_t *rp, http_request_t *req, arena_t *arena)
{
    reqparse_reset(rp);
    arena_reset(arena);
    clear_request(req, arena);
}

/* What respond() does with a complete request before it reaches a handler, plus the request
 * readers the handlers start with (they need no store). */
static void handle(reqparse_t *rp, http_request_t *req)
{
    if (rp->err != ERR_NONE || !reqparse_request(rp))
        return; /* a 400; the connection stays open when the state is RP_DONE */
    if (!req->path || req->path[0] != '/' || !req->query || !req->body)
        __builtin_trap();
    if (strlen(req->path) > strlen(req->target))
        __builtin_trap(); /* decoding never lengthens */
    (void)http_header(req, "X-Request-ID");
    (void)http_header(req, "If-Match");

    char allow[128];
    route_match_t m = router_match(req, allow, sizeof allow);
    if (m == ROUTE_NO_METHOD && strlen(allow) >= sizeof allow)
        __builtin_trap();
    if (m != ROUTE_FOUND)
        return;
    if (!req->route || req->nparams < 0 || req->nparams > HTTP_MAX_PARAMS)
        __builtin_trap();

    err_t e;
    err_clear(&e);
    int64_t id;
    if (http_param(req, "id") && http_param_id(req, "id", &id, &e) && id <= 0)
        __builtin_trap();
    err_clear(&e);
    if (req->route->handler == properties_list) {
        property_query_t pq;
        (void)properties_read_query(req, &pq, &e);
    } else if (req->route->handler == properties_create || req->route->handler == properties_patch) {
        json_t *body = http_json_body(req, &e);
        if (body) {
            property_t p;
            property_init(&p);
            uint64_t present;
            err_clear(&e);
            (void)property_from_json(body, &p, &present, req->arena, &e);
            json_decref(body);
        }
    } else {
        http_query_t q;
        (void)http_query_parse(req, &q, &e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* byte 0: bits 0-6 the read size (0: everything in one read), bit 7 varies it per read */
    unsigned mode = data[0];
    data++, size--;
    size_t step = mode & 0x7f;
    uint32_t rng = 0x9e3779b9u ^ mode;

    arena_t arena;
    arena_init(&arena);
    http_request_t req;
    reqparse_t rp;
    clear_request(&req, &arena);
    reqparse_init(&rp, &req, FUZZ_MAX_BODY);

    size_t pos = 0;   /* start of the unconsumed input (the server's c->in) */
    size_t avail = 0; /* end of what has been "read" so far */
    int requests = 0;
    bool open = true;
    while (open && avail < size) {
        /* one read */
        size_t n = step ? step : size;
        if (step && (mode & 0x80)) {
            rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
            n = 1 + rng % (2 * step);
        }
        avail = n > size - avail ? size : avail + n;
        /* conn_process: parse what is buffered, one request at a time */
        while (open && pos < avail) {
            reqparse_state_t before = rp.state;
            size_t used = reqparse_feed(&rp, (const char *)data + pos, avail - pos);
            if (used > avail - pos)
                __builtin_trap();
            pos += used;
            if (rp.state == RP_ERROR) {
                if (rp.err == ERR_NONE)
                    __builtin_trap();
                open = false; /* respond with the error and close */
                break;
            }
            if (rp.state == RP_DONE) {
                requests++;
                handle(&rp, &req);
                if (!rp.keep_alive) {
                    open = false; /* Connection: close (or HTTP/1.0) */
                    break;
                }
                reset_request(&rp, &req, &arena);
                continue;
            }
            if (used == 0 && rp.state == before)
                __builtin_trap(); /* no progress: the server's read loop would spin */
        }
    }
    (void)requests;
    reqparse_free(&rp);
    arena_free(&arena);
    return 0;
}
