/* app: what handlers share for the life of the process: the configuration and the store.
 * Owned by `hearth serve` (cmd/serve.c), set before the server starts, read-only afterwards. */
#ifndef HEARTH_APP_H
#define HEARTH_APP_H

#include <stdint.h>

#include "../base/config.h"
#include "../domain/account.h"
#include "../domain/queue.h"
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
void auth_register(http_request_t *req, http_response_t *res);
void auth_login(http_request_t *req, http_response_t *res);
void auth_refresh(http_request_t *req, http_response_t *res);
void auth_logout(http_request_t *req, http_response_t *res);
void me_get(http_request_t *req, http_response_t *res);
void users_list(http_request_t *req, http_response_t *res);
void users_get(http_request_t *req, http_response_t *res);
void users_patch(http_request_t *req, http_response_t *res);
void audit_list(http_request_t *req, http_response_t *res);
void imports_create(http_request_t *req, http_response_t *res);
void jobs_get(http_request_t *req, http_response_t *res);
void jobs_list(http_request_t *req, http_response_t *res);
void jobs_create(http_request_t *req, http_response_t *res);
void jobs_retry(http_request_t *req, http_response_t *res);
void jobs_cancel(http_request_t *req, http_response_t *res);
void events_stream(http_request_t *req, http_response_t *res);
void ws_upgrade(http_request_t *req, http_response_t *res);
void ml_predict_price(http_request_t *req, http_response_t *res);     /* ml.c */
void ml_model_info(http_request_t *req, http_response_t *res);        /* ml.c */
void ml_extract_features(http_request_t *req, http_response_t *res);  /* model.c */
void preferences_create(http_request_t *req, http_response_t *res);   /* recommendations.c */
void recommendations_get(http_request_t *req, http_response_t *res);  /* recommendations.c */
void recommendations_post(http_request_t *req, http_response_t *res); /* recommendations.c */
void images_upload(http_request_t *req, http_response_t *res);        /* images.c */
void images_list(http_request_t *req, http_response_t *res);          /* images.c */
void images_get(http_request_t *req, http_response_t *res);           /* images.c */
void images_content(http_request_t *req, http_response_t *res);       /* images.c */
void images_similar(http_request_t *req, http_response_t *res);       /* images.c */
void images_delete(http_request_t *req, http_response_t *res);        /* images.c */
void images_search(http_request_t *req, http_response_t *res);        /* images.c */

/* The outbox relay and, with Redis, the subscription that feeds this instance's event streams
 * (events.c); started by serve, stopped after the server. */
bool events_start(store_t *s, struct redis_pool *redis, const char *database_url, err_t *e);
void events_stop(void);

/* Accounts (auth.c) ------------------------------------------------------------------------------ */

/* On the loop: a request with an Authorization header must carry a well-formed bearer token with a
 * good signature and times (401 otherwise); its user and session are noted in the request. */
bool auth_precheck(http_request_t *req, http_response_t *res);
/* A token sent as ?access_token= (browsers cannot set headers on EventSource or WebSocket), checked as
 * auth_precheck checks a header (when no header came); false with a 401 written. */
bool auth_query_token(http_request_t *req, http_response_t *res, const http_query_t *q);
/* On a worker, for a request that passed auth_precheck with a token: its session is live and its
 * user active (401 otherwise); who it is is kept in the request for auth_actor. */
bool auth_session_check(http_request_t *req, http_response_t *res);

typedef struct actor {
    bool known; /* a valid token came with the request */
    user_t user;
    int64_t session_id;
} actor_t;

/* On a worker, with the request's store connection: who sent the request. With a token, its
 * session must be live and its user active (401). `roles`: who may call the route (0: anyone,
 * anonymous included); without a token that is 401, with the wrong role 403. On false the answer
 * is written. */
bool auth_actor(http_request_t *req, http_response_t *res, store_conn_t *c, int roles, actor_t *out);
/* app_store and auth_actor together: the request's connection when its caller may call the route
 * (`roles` as for auth_actor), or NULL with the answer written. */
store_conn_t *app_store_as(http_request_t *req, http_response_t *res, int roles, actor_t *actor);
/* An audit entry for this request, by `actor` (may be anonymous). */
store_audit_t auth_audit_entry(const http_request_t *req, const actor_t *actor, const char *action,
                               const char *resource_type, const char *resource_id);
/* Paging of the list routes (paging.c): `limit` 1..100 (default 20; 400 unreadable, 422 out of
 * range), and cursors naming the last id of a page of `kind`. */
bool api_read_limit(const http_query_t *q, int *limit, err_t *e);
bool api_read_cursor(const char *s, const char *kind, int64_t *id, err_t *e);
void api_write_cursor(jw_t *w, const char *kind, bool more, int64_t id);

/* Start-up: token secret, password cost, login limits. */
bool auth_setup(const config_t *cfg, struct redis_pool *redis, err_t *e);
void auth_shutdown(void);

#endif
