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

int store_batch_rows(int left)
{
    int n = STORE_BATCH_MAX;
    while (n > left && n > 1)
        n /= 2;
    return n;
}

void store_sql_rows(buf_t *sql, const char *tmpl, int rows, int first)
{
    for (int r = 0; r < rows; r++) {
        if (r)
            buf_putc(sql, ',');
        for (const char *p = tmpl; *p; p++) {
            if (*p == '?')
                buf_printf(sql, "$%d", first++);
            else
                buf_putc(sql, *p);
        }
    }
}

bool store_events_write(store_conn_t *c, const store_event_t *evs, int n, err_t *e)
{
    arena_t scratch;
    arena_init(&scratch);
    buf_t sql;
    buf_init(&sql);
    const char *at = store_num(&scratch, time_now_us());
    bool ok = true;
    for (int done = 0; ok && done < n;) {
        int rows = store_batch_rows(n - done);
        const char **vals = arena_alloc(&scratch, sizeof *vals * 5 * (size_t)rows);
        for (int i = 0; i < rows; i++) {
            const store_event_t *ev = &evs[done + i];
            const char *ch = ev->channel, *d = ev->data ? ev->data : "{}";
            if (ev->ref) {
                ch = arena_printf(&scratch, "%s%lld", ev->channel, (long long)*ev->ref);
                if (!ev->data)
                    d = arena_printf(&scratch, "{\"id\":%lld}", (long long)*ev->ref);
            }
            const char **v = &vals[5 * i];
            v[0] = ch;
            v[1] = ev->type;
            v[2] = d;
            v[3] = ev->owner_id ? store_num(&scratch, ev->owner_id) : NULL;
            v[4] = at;
        }
        buf_reset(&sql);
        buf_puts(&sql, "INSERT INTO outbox_events (channel, type, data, owner_id, created_at) VALUES ");
        store_sql_rows(&sql, "(?, ?, ?, CAST(? AS BIGINT), CAST(? AS BIGINT))", rows, 1);
        store_rows_t r;
        ok = c->store->ops->query(c, buf_cstr(&sql), 5 * rows, vals, &scratch, &r, e);
        done += rows;
    }
    ok = ok && (n == 0 || !c->store->ops->notify || c->store->ops->notify(c, STORE_OUTBOX_CHANNEL, e));
    buf_free(&sql);
    arena_free(&scratch);
    return ok;
}

bool store_event_write(store_conn_t *c, const store_event_t *ev, err_t *e) { return store_events_write(c, ev, 1, e); }

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
