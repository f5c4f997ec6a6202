/* routes: the application's route table. `hearth routes` prints it, and a test checks that
 * docs/openapi.json (served at /openapi.json) describes exactly these routes. */
#include "../net/router.h"
#include "app.h"

route_t app_routes[] = {
    {METHOD_GET, "/health/live", health_live, ROUTE_ON_LOOP, 0},
    {METHOD_GET, "/health/ready", health_ready, 0, 1},
    {METHOD_GET, "/api/health", health_api, 0, 2},
    {METHOD_GET, "/metrics", metrics_get, 0, 3},
    {METHOD_GET, "/openapi.json", openapi_get, ROUTE_ON_LOOP, 4},
    {METHOD_GET, "/api/properties", properties_list, ROUTE_CACHE, 5},
    {METHOD_POST, "/api/properties", properties_create, 0, 6},
    {METHOD_GET, "/api/properties/{id}", properties_get, ROUTE_CACHE, 7},
    {METHOD_PATCH, "/api/properties/{id}", properties_patch, 0, 8},
    {METHOD_DELETE, "/api/properties/{id}", properties_delete, 0, 9},
    {0, NULL, NULL, 0, 0},
};
