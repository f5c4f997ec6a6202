/* routes: the application's route table. `hearth routes` prints it, and a test checks that
 * docs/openapi.json (served at /openapi.json) describes exactly these routes. Every route is in a
 * rate limit class (HEARTH_RATE_LIMITS): "read" for GET, "write" for the other methods, and later
 * classes such as "auth" for the routes that need a budget of their own; health and metrics are
 * marked ROUTE_NO_RATELIMIT and are never limited. */
#include "../domain/images.h"
#include "../net/router.h"
#include "app.h"

route_t app_routes[] = {
    {METHOD_GET, "/health/live", health_live, ROUTE_ON_LOOP | ROUTE_NO_RATELIMIT, 0, NULL},
    {METHOD_GET, "/health/ready", health_ready, ROUTE_NO_RATELIMIT, 1, NULL},
    {METHOD_GET, "/api/health", health_api, ROUTE_NO_RATELIMIT, 2, NULL},
    {METHOD_GET, "/metrics", metrics_get, ROUTE_NO_RATELIMIT, 3, NULL},
    {METHOD_GET, "/openapi.json", openapi_get, ROUTE_ON_LOOP, 4, "read"},
    {METHOD_GET, "/api/properties", properties_list, ROUTE_CACHE, 5, "read"},
    {METHOD_POST, "/api/properties", properties_create, 0, 6, "write"},
    {METHOD_GET, "/api/properties/{id}", properties_get, ROUTE_CACHE, 7, "read"},
    {METHOD_PATCH, "/api/properties/{id}", properties_patch, 0, 8, "write"},
    {METHOD_DELETE, "/api/properties/{id}", properties_delete, 0, 9, "write"},
    {METHOD_POST, "/api/auth/register", auth_register, 0, 10, "auth"},
    {METHOD_POST, "/api/auth/login", auth_login, 0, 11, "auth"},
    {METHOD_POST, "/api/auth/refresh", auth_refresh, 0, 12, "auth"},
    {METHOD_POST, "/api/auth/logout", auth_logout, 0, 13, "auth"},
    {METHOD_GET, "/api/me", me_get, 0, 14, "read"},
    {METHOD_GET, "/api/users", users_list, 0, 15, "read"},
    {METHOD_GET, "/api/users/{id}", users_get, 0, 16, "read"},
    {METHOD_PATCH, "/api/users/{id}", users_patch, 0, 17, "write"},
    {METHOD_GET, "/api/audit", audit_list, 0, 18, "read"},
    {METHOD_POST, "/api/imports", imports_create, 0, 19, "write"},
    {METHOD_GET, "/api/jobs", jobs_list, 0, 20, "read"},
    {METHOD_POST, "/api/jobs", jobs_create, 0, 21, "write"},
    {METHOD_GET, "/api/jobs/{id}", jobs_get, 0, 22, "read"},
    {METHOD_DELETE, "/api/jobs/{id}", jobs_cancel, 0, 23, "write"},
    {METHOD_POST, "/api/jobs/{id}/retry", jobs_retry, 0, 24, "write"},
    {METHOD_GET, "/api/events", events_stream, 0, 25, "read"},
    {METHOD_GET, "/ws", ws_upgrade, 0, 26, "read"},
    {METHOD_POST, "/api/ml/predict-price", ml_predict_price, 0, 27, "read"},
    {METHOD_GET, "/api/ml/model-info", ml_model_info, 0, 28, "read"},
    {METHOD_POST, "/api/preferences", preferences_create, 0, 29, "write"},
    {METHOD_GET, "/api/recommendations", recommendations_get, 0, 30, "read"},
    {METHOD_POST, "/api/recommendations", recommendations_post, 0, 31, "read"},
    {METHOD_POST, "/api/ml/extract-features", ml_extract_features, 0, 32, "write"},
    {METHOD_POST, "/api/properties/{id}/images", images_upload, ROUTE_UPLOAD | ROUTE_TOKEN, 33, "write"},
    {METHOD_GET, "/api/properties/{id}/images", images_list, 0, 34, "read"},
    {METHOD_GET, "/api/images/{id}", images_get, 0, 35, "read"},
    {METHOD_GET, "/api/images/{id}/content", images_content, 0, 36, "read"},
    {METHOD_GET, "/api/images/{id}/similar", images_similar, 0, 37, "read"},
    {METHOD_DELETE, "/api/images/{id}", images_delete, 0, 38, "write"},
    {METHOD_POST, "/api/search/images", images_search, ROUTE_UPLOAD, 39, "read"},
    {0, NULL, NULL, 0, 0, NULL},
};

int64_t app_upload_max = IMAGE_MAX_BYTES; /* a listing photo, or a query photo */

bool (*app_precheck)(http_request_t *req, http_response_t *res) = auth_precheck;
bool (*app_worker_check)(http_request_t *req, http_response_t *res) = auth_session_check;
