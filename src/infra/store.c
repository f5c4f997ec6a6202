/* store: picks the backend that DATABASE_URL names. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"

store_t *store_open(const config_t *cfg, err_t *e)
{
    if (config_is_sqlite(cfg))
        return store_sqlite_open(config_sqlite_path(cfg), cfg->db_pool, e);
    return store_postgres_open(cfg->database_url, cfg->db_pool, e);
}

bool store_finish(store_conn_t *c, bool ok, err_t *e)
{
    if (ok)
        return c->store->ops->end(c, true, e);
    err_t ignore;
    err_clear(&ignore);
    c->store->ops->end(c, false, &ignore);
    return false;
}

const char *store_num(arena_t *a, int64_t v) { return arena_printf(a, "%lld", (long long)v); }

int64_t store_cell_i64(const store_rows_t *r, int row, int col)
{
    const char *s = store_cell(r, row, col);
    return s ? strtoll(s, NULL, 10) : 0;
}

bool store_event_write(store_conn_t *c, const store_event_t *ev, err_t *e)
{
    char channel[160], data[64], owner[24], at[24];
    const char *ch = ev->channel, *d = ev->data ? ev->data : "{}";
    if (ev->ref) {
        snprintf(channel, sizeof channel, "%s%lld", ev->channel, (long long)*ev->ref);
        snprintf(data, sizeof data, "{\"id\":%lld}", (long long)*ev->ref);
        ch = channel;
        if (!ev->data)
            d = data;
    }
    snprintf(owner, sizeof owner, "%lld", (long long)ev->owner_id);
    snprintf(at, sizeof at, "%lld", (long long)time_now_us());
    const char *vals[] = {ch, ev->type, d, ev->owner_id ? owner : NULL, at};
    arena_t scratch;
    arena_init(&scratch);
    store_rows_t rows;
    bool ok = c->store->ops->query(c,
                                   "INSERT INTO outbox_events (channel, type, data, owner_id, created_at)"
                                   " VALUES ($1, $2, $3, CAST($4 AS BIGINT), CAST($5 AS BIGINT))",
                                   5, vals, &scratch, &rows, e) &&
              (!c->store->ops->notify || c->store->ops->notify(c, STORE_OUTBOX_CHANNEL, e));
    arena_free(&scratch);
    return ok;
}

bool store_tx_extras_write(store_conn_t *c, err_t *e)
{
    if (c->event && !store_event_write(c, c->event, e))
        return false;
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
