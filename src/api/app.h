/* app: what handlers share for the life of the process: the configuration and the store.
 * Owned by `hearth serve` (cmd/serve.c), set before the server starts, read-only afterwards. */
#ifndef HEARTH_APP_H
#define HEARTH_APP_H

#include <stdint.h>

#include "../base/config.h"
#include "../infra/store.h"
#include "../net/http.h"

typedef struct app {
    const config_t *cfg;
    store_t *store;
    struct redis_pool *redis; /* NULL without REDIS_URL */
    int64_t started_at_us;
} app_t;

extern app_t g_app;

/* Acquires a store connection for the request; on failure writes the error response. */
store_conn_t *app_store(http_request_t *req, http_response_t *res);
void app_store_done(store_conn_t *c);

/* Reads the query of GET /api/properties: false with `e` set (a 400), or true with details in `e`
 * when values read but are not allowed (a 422). */
bool properties_read_query(http_request_t *req, property_query_t *pq, err_t *e);

/* Handlers, one group per file */
void health_live(http_request_t *req, http_response_t *res);
void health_ready(http_request_t *req, http_response_t *res);
void health_api(http_request_t *req, http_response_t *res);
void metrics_get(http_request_t *req, http_response_t *res);
void openapi_get(http_request_t *req, http_response_t *res);
void properties_list(http_request_t *req, http_response_t *res);
void properties_create(http_request_t *req, http_response_t *res);
void properties_get(http_request_t *req, http_response_t *res);
void properties_patch(http_request_t *req, http_response_t *res);
void properties_delete(http_request_t *req, http_response_t *res);

#endif
