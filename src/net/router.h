/* router: the table of routes and the match from (method, path) to a handler. Patterns are literal
 * segments and {name} parameters. A path that matches some pattern but not the method is a 405
 * with the Allow header built from the patterns that matched. */
#ifndef HEARTH_ROUTER_H
#define HEARTH_ROUTER_H

#include <stdint.h>

#include "http.h"

typedef void (*http_handler_t)(http_request_t *req, http_response_t *res);

enum {
    ROUTE_ON_LOOP = 1, /* cannot block: runs on the event loop; otherwise on the worker pool */
    ROUTE_CACHE = 2,   /* GET whose 200 responses may be served from the response cache */
    ROUTE_NO_RATELIMIT = 4, /* never rate limited (health checks, metrics) */
    ROUTE_UPLOAD = 8,  /* a multipart/form-data body taken in as it arrives (net/upload.h): files go
                        * to temporary files, req->upload; a file may be up to app_upload_max */
    ROUTE_TOKEN = 16,  /* with ROUTE_UPLOAD: a request without a token is refused (401) before its
                        * body is taken in */
};

struct route {
    http_method_t method;
    const char *pattern;
    http_handler_t handler;
    int flags;
    int index; /* position in the table, for metrics */
    const char *rate_class; /* HEARTH_RATE_LIMITS class; NULL: "read" for GET, "write" otherwise */
};

/* The application's routes (api/routes.c); the table ends with a NULL pattern. */
extern route_t app_routes[];
/* Runs on the loop for every matched request before anything else is done with it (api/auth.c's
 * bearer-token check); false when it has written the answer itself. NULL: none. */
extern bool (*app_precheck)(http_request_t *req, http_response_t *res);
/* Runs on a worker before the handler of every request that carried a token (api/auth.c: its
 * session must be live and its user active); false when it has written the answer. Routes marked
 * ROUTE_ON_LOOP go to a worker when a token came with them, so that this check runs. */
extern bool (*app_worker_check)(http_request_t *req, http_response_t *res);
int router_count(void);
/* The table router_match uses: app_routes unless a command that serves something else (`hearth
 * model-serve`) sets its own before the server starts. */
void router_use(route_t *table);
const route_t *router_table(void);
/* ROUTE_UPLOAD: the largest file part a request may carry, bytes (413 beyond). */
extern int64_t app_upload_max;

typedef enum { ROUTE_FOUND, ROUTE_NO_PATH, ROUTE_NO_METHOD } route_match_t;

/* Matches req->method/path; on ROUTE_FOUND sets req->route and its params. HEAD matches GET.
 * On ROUTE_NO_METHOD, `allow` receives the Allow header value. */
route_match_t router_match(http_request_t *req, char *allow, size_t allowlen);

#endif
