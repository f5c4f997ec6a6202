/* store: picks the backend that DATABASE_URL names. */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include "../base/util.h"

store_t *store_open(const config_t *cfg, err_t *e)
{
    if (config_is_sqlite(cfg))
        return store_sqlite_open(config_sqlite_path(cfg), cfg->db_pool, e);
    return store_postgres_open(cfg->database_url, cfg->db_pool, e);
}

bool store_audit_write(store_conn_t *c, err_t *e)
{
    const store_audit_t *a = c->audit;
    if (!a)
        return true;
    char at[24], actor[24], ref[24];
    snprintf(at, sizeof at, "%lld", (long long)time_now_us());
    snprintf(actor, sizeof actor, "%lld", (long long)a->actor_id);
    const char *rid = a->resource_id;
    if (!rid && a->resource_ref) {
        snprintf(ref, sizeof ref, "%lld", (long long)*a->resource_ref);
        rid = ref;
    }
    const char *vals[] = {at, a->actor_id ? actor : NULL, a->action, a->resource_type, rid, a->ip,
                          a->request_id, a->detail};
    arena_t scratch;
    arena_init(&scratch);
    store_rows_t rows;
    bool ok = c->store->ops->query(c,
                                   "INSERT INTO audit_log (at, actor_id, action, resource_type, resource_id, ip, "
                                   "request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                   8, vals, &scratch, &rows, e);
    arena_free(&scratch);
    return ok;
}
