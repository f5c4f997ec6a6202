/* store: picks the backend that DATABASE_URL names. */
#include "store.h"

#include <string.h>

store_t *store_open(const config_t *cfg, err_t *e)
{
    if (config_is_sqlite(cfg))
        return store_sqlite_open(config_sqlite_path(cfg), cfg->db_pool, e);
    return store_postgres_open(cfg->database_url, cfg->db_pool, e);
}
