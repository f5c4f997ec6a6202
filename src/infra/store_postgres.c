/* store_postgres: the PostgreSQL backend of the store (libpq), chosen by DATABASE_URL=postgres://.
 *
 * The same schema and, through store_sql.c, the same search SQL as the SQLite backend, so both
 * behave alike. A fixed pool of connections is handed out under a mutex with a bounded wait; each
 * connection prepares a statement once per SQL text and keeps it (an LRU of names). A connection
 * found broken (the server restarted, the network dropped) is reconnected when it is next acquired;
 * while the server is down, acquire fails at once with ERR_UNAVAILABLE, which clients see as a 503.
 * Every statement runs under a statement timeout and every connect under a connect timeout.
 *
 * Notifications (store_ops.notify) are sent after the commit, not inside the transaction: a
 * transaction that NOTIFYs takes one database-wide lock from its commit until its WAL is flushed,
 * which would line every job and outbox write up behind one another, one flush each. Instead the
 * committing connection marks the channel and one notifier thread per store sends a single NOTIFY
 * for everything committed since its last (a transaction of its own, no WAL flush). A process that
 * dies between a commit and its NOTIFY leaves the listeners to their safety-net polls. */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/buf.h"
#include "../base/embed.h"
#include "../base/log.h"
#include "../base/util.h"
#include "pool.h"
#include "store.h"
#include "store_sql.h"

#define STMT_CACHE 48
#define CONNECT_TIMEOUT_S "2"
#define STATEMENT_TIMEOUT "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=10000"
#define MIGRATION_LOCK 7236100301 /* pg_advisory_lock key: one migrator at a time */

typedef struct pg_stmt {
    char *sql;
    char name[16];
    uint64_t last_used;
} pg_stmt_t;

typedef struct pg_conn {
    store_conn_t base;
    PGconn *db;
    pg_stmt_t cache[STMT_CACHE];
    int next_name;
    uint64_t tick;
    unsigned notify; /* channels (bits of pg_store_t.channel) to NOTIFY once this transaction commits */
} pg_conn_t;

#define NOTIFY_CHANNELS 8

typedef struct notifier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char channel[NOTIFY_CHANNELS][64]; /* names, added on first use; never removed */
    int nchannels;
    unsigned pending; /* under mu */
    bool started, stop;
    pthread_t thread;
} notifier_t;

typedef struct pg_store {
    store_t base;
    char *url;
    int size;
    pg_conn_t *conns;
    pool_t pool; /* lends out conns[] by index */
    notifier_t notifier;
} pg_store_t;

static const store_ops_t postgres_ops;

/* Connections --------------------------------------------------------------------------------- */

static void stmt_cache_clear(pg_conn_t *c)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        free(c->cache[i].sql);
        c->cache[i].sql = NULL;
    }
}

/* NOTICEs ("extension already exists, skipping") are not errors and not for the log. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg, (void)message;
}

/* Connects `c`; on failure `detail` (may be NULL) receives libpq's reason. */
static bool conn_connect(pg_store_t *s, pg_conn_t *c, err_t *e, char *detail, size_t dlen)
{
    if (c->db)
        PQfinish(c->db);
    stmt_cache_clear(c);
    /* keepalives and tcp_user_timeout: a server host that vanishes (failover, partition) is noticed
     * in seconds, not after the kernel's quarter of an hour of retransmissions */
    const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", "keepalives",
                          "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", NULL};
    const char *vals[] = {s->url, CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT, "hearth", "1", "5", "2", "3", "10000", NULL};
    c->db = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c->db) != CONNECTION_OK) {
        const char *msg = c->db ? PQerrorMessage(c->db) : "out of memory";
        char line[256];
        snprintf(line, sizeof line, "%s", msg);
        line[strcspn(line, "\n")] = '\0';
        log_warn("postgres: cannot connect: %s", line);
        /* the reason (host, port, user) is for the log and the command line, not for API clients */
        err_set(e, ERR_UNAVAILABLE, "the database is unavailable, try again");
        if (detail)
            snprintf(detail, dlen, "%s", line);
        PQfinish(c->db);
        c->db = NULL;
        return false;
    }
    PQsetNoticeProcessor(c->db, ignore_notice, NULL);
    return true;
}

store_t *store_postgres_open(const char *url, int pool_size, err_t *e)
{
    pg_store_t *s = calloc(1, sizeof *s);
    s->base.ops = &postgres_ops;
    s->url = strdup(url);
    s->size = pool_size;
    s->conns = calloc((size_t)pool_size, sizeof *s->conns);
    pool_init(&s->pool, pool_size);
    for (int i = 0; i < pool_size; i++)
        s->conns[i].base.store = &s->base;
    pthread_mutex_init(&s->notifier.mu, NULL);
    pthread_cond_init(&s->notifier.cv, NULL);
    /* one connection now, so a wrong URL or a server that is down stops start-up with its reason;
     * the others connect when first used */
    char detail[256] = "";
    if (!conn_connect(s, &s->conns[0], e, detail, sizeof detail)) {
        err_set(e, ERR_UNAVAILABLE, "the database is unavailable: %s", detail);
        free(s->conns);
        free(s->url);
        free(s);
        return NULL;
    }
    s->base.group = txgroup_new();
    return &s->base;
}

static void notifier_stop(pg_store_t *s);

static void pg_close(store_t *base)
{
    pg_store_t *s = (pg_store_t *)base;
    notifier_stop(s);
    txgroup_free(s->base.group);
    for (int i = 0; i < s->size; i++) {
        stmt_cache_clear(&s->conns[i]);
        if (s->conns[i].db)
            PQfinish(s->conns[i].db);
    }
    pool_destroy(&s->pool);
    free(s->conns);
    free(s->url);
    free(s);
}

static store_conn_t *pg_acquire(store_t *base, int timeout_ms, err_t *e)
{
    pg_store_t *s = (pg_store_t *)base;
    int slot = pool_acquire(&s->pool, timeout_ms, e);
    if (slot < 0)
        return NULL;
    pg_conn_t *c = &s->conns[slot];
    if ((!c->db || PQstatus(c->db) != CONNECTION_OK) && !conn_connect(s, c, e, NULL, 0)) {
        pool_release(&s->pool, slot);
        return NULL;
    }
    return &c->base;
}

static void pg_release(store_t *base, store_conn_t *cb)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    if (c->db && PQtransactionStatus(c->db) != PQTRANS_IDLE) { /* left open by an error path */
        PGresult *r = PQexec(c->db, "ROLLBACK");
        PQclear(r);
    }
    cb->audit = NULL;
    cb->event = NULL;
    c->notify = 0;
    pg_store_t *s = (pg_store_t *)base;
    pool_release(&s->pool, (int)(c - s->conns));
}

static void pg_stats(store_t *base, store_stats_t *out) { pool_stats(&((pg_store_t *)base)->pool, out); }

/* Statements ---------------------------------------------------------------------------------- */

/* Turns a failed result into an error value; the connection is dropped when it is broken. */
static bool pg_fail(pg_conn_t *c, PGresult *r, err_t *e, const char *what)
{
    char statebuf[8] = ""; /* copied: the field lives in `r`, which is cleared below */
    const char *field = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (field)
        snprintf(statebuf, sizeof statebuf, "%s", field);
    const char *state = field ? statebuf : NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c->db));
    msg[strcspn(msg, "\n")] = '\0';
    PQclear(r);
    if (PQstatus(c->db) != CONNECTION_OK) {
        log_warn("postgres: %s: connection lost: %s", what, msg);
        PQfinish(c->db);
        c->db = NULL;
        stmt_cache_clear(c);
        return err_set(e, ERR_UNAVAILABLE, "the database is unavailable, try again");
    }
    if (state && strcmp(state, "23505") == 0)
        return err_set(e, ERR_CONFLICT, "a property with this source and external_id already exists");
    if (state && (strcmp(state, "57014") == 0 || strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
                  strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0))
        return err_set(e, ERR_UNAVAILABLE, "the database could not complete the request in time, try again");
    log_error("postgres: %s: %s (%s)", what, msg, state ? state : "?");
    /* the reason reaches the command line (migrate); the API never shows an internal message */
    return err_set(e, ERR_INTERNAL, "%s: %s", what, msg);
}

/* `want` for a statement that may or may not return rows (the generic query) */
#define WANT_ANY_OK ((ExecStatusType)-1)

static PGresult *run_once(pg_conn_t *c, const char *sql, int n, const char *const *vals, ExecStatusType want, err_t *e)
{
    bool retry_prepare = false;
again:;
    pg_stmt_t *hit = NULL, *victim = &c->cache[0];
    for (int i = 0; i < STMT_CACHE && !hit; i++) {
        pg_stmt_t *st = &c->cache[i];
        if (st->sql && strcmp(st->sql, sql) == 0)
            hit = st;
        else if (!st->sql || (victim->sql && st->last_used < victim->last_used))
            victim = st;
    }
    if (!hit) {
        if (victim->sql) {
            char dealloc[48];
            snprintf(dealloc, sizeof dealloc, "DEALLOCATE %s", victim->name);
            PQclear(PQexec(c->db, dealloc));
            free(victim->sql);
            victim->sql = NULL;
        }
        snprintf(victim->name, sizeof victim->name, "h%d", c->next_name++);
        PGresult *r = PQprepare(c->db, victim->name, sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_fail(c, r, e, "prepare");
            return NULL;
        }
        PQclear(r);
        victim->sql = strdup(sql);
        hit = victim;
    }
    hit->last_used = ++c->tick;
    PGresult *r = PQexecPrepared(c->db, hit->name, n, vals, NULL, NULL, 0);
    ExecStatusType got = PQresultStatus(r);
    if (got != want && !(want == WANT_ANY_OK && (got == PGRES_TUPLES_OK || got == PGRES_COMMAND_OK))) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "26000") == 0 && !retry_prepare) {
            /* the server no longer has the statement (a pooler in front switched sessions, or
             * DISCARD ALL): forget it and prepare it again, once */
            PQclear(r);
            free(hit->sql);
            hit->sql = NULL;
            retry_prepare = true;
            goto again;
        }
        pg_fail(c, r, e, "query");
        return NULL;
    }
    return r;
}

/* Runs `sql` with text parameters as a prepared statement (prepared on first use per connection).
 * Returns the result when its status is `want`, else NULL with `e` set. A connection found dead at
 * the first statement outside a transaction (the server restarted since it was last used) is
 * reconnected and the statement tried once more, so a restart costs clients nothing. */
static PGresult *run(pg_conn_t *c, const char *sql, int n, const char *const *vals, ExecStatusType want, err_t *e)
{
    bool idle = c->db && PQtransactionStatus(c->db) == PQTRANS_IDLE;
    PGresult *r = run_once(c, sql, n, vals, want, e);
    if (r || c->db || !idle)
        return r;
    err_t again;
    err_clear(&again);
    if (!conn_connect((pg_store_t *)c->base.store, c, &again, NULL, 0))
        return NULL; /* still down: the first error stands */
    err_clear(e);
    return run_once(c, sql, n, vals, want, e);
}

static bool exec_simple(pg_conn_t *c, const char *sql, err_t *e)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        bool idle = c->db && PQtransactionStatus(c->db) == PQTRANS_IDLE;
        PGresult *r = PQexec(c->db, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) {
            PQclear(r);
            return true;
        }
        pg_fail(c, r, e, "exec");
        err_t again;
        err_clear(&again);
        /* as in run(): a connection that died while idle is reconnected once */
        if (c->db || !idle || attempt || !conn_connect((pg_store_t *)c->base.store, c, &again, NULL, 0))
            return false;
        err_clear(e);
    }
    return false;
}

static bool pg_ping(store_conn_t *cb, err_t *e)
{
    PGresult *r = run((pg_conn_t *)cb, "SELECT 1", 0, NULL, PGRES_TUPLES_OK, e);
    PQclear(r);
    return r != NULL;
}

/* Migrations ---------------------------------------------------------------------------------- */

static int cmp_embed(const void *a, const void *b)
{
    return strcmp((*(const embed_file_t *const *)a)->name, (*(const embed_file_t *const *)b)->name);
}

static int pg_migrate(store_t *base, err_t *e)
{
    store_conn_t *cb = pg_acquire(base, 30000, e);
    if (!cb)
        return -1;
    pg_conn_t *c = (pg_conn_t *)cb;
    const char *prefix = "migrations/postgres/";
    const embed_file_t *files[256];
    int n = 0, applied = 0;
    for (const embed_file_t *f = embed_table; f->name && n < 256; f++)
        if (strncmp(f->name, prefix, strlen(prefix)) == 0)
            files[n++] = f;
    qsort(files, (size_t)n, sizeof *files, cmp_embed);
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%lld)", (long long)MIGRATION_LOCK);
    if (!exec_simple(c, "SET statement_timeout = 0", e) || !exec_simple(c, lock, e) ||
        !exec_simple(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,"
                        " applied_at BIGINT NOT NULL)",
                     e))
        goto fail;
    for (int i = 0; i < n; i++) {
        const char *name = files[i]->name + strlen(prefix);
        char version[24];
        snprintf(version, sizeof version, "%lld", strtoll(name, NULL, 10));
        const char *v1[] = {version};
        PGresult *r = run(c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v1, PGRES_TUPLES_OK, e);
        if (!r)
            goto fail;
        int done = PQntuples(r);
        PQclear(r);
        if (done)
            continue;
        if (!exec_simple(c, "BEGIN", e))
            goto fail;
        if (!exec_simple(c, files[i]->start, e)) {
            char why[sizeof e->message];
            snprintf(why, sizeof why, "%s", e->message);
            err_set(e, ERR_INTERNAL, "migration %s failed: %.200s", name, why);
            goto fail;
        }
        char now[24];
        snprintf(now, sizeof now, "%lld", (long long)time_now_us());
        const char *v3[] = {version, name, now};
        r = run(c, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", 3, v3,
                PGRES_COMMAND_OK, e);
        if (!r)
            goto fail;
        PQclear(r);
        if (!exec_simple(c, "COMMIT", e))
            goto fail;
        applied++;
        log_info("applied migration %s", name);
    }
    /* pgvector serves the vector index when the server has it; without it, the in-process index does */
    PGresult *r = run(c, "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'", 0, NULL,
                      PGRES_TUPLES_OK, e);
    if (!r)
        goto fail;
    if (PQntuples(r) == 1) {
        err_t ignore;
        err_clear(&ignore);
        if (exec_simple(c, "CREATE EXTENSION IF NOT EXISTS vector", &ignore))
            log_info("postgres: pgvector %s is available", PQgetvalue(r, 0, 0));
        else
            log_warn("postgres: pgvector is installed but CREATE EXTENSION vector failed: %s", ignore.message);
    } else {
        log_warn("postgres: pgvector is not installed on the server; vector search will not use it");
    }
    PQclear(r);
    snprintf(lock, sizeof lock, "SELECT pg_advisory_unlock(%lld)", (long long)MIGRATION_LOCK);
    exec_simple(c, lock, e);
    exec_simple(c, "RESET statement_timeout", e);
    pg_release(base, cb);
    return applied;
fail:
    if (c->db) { /* drop the session: its lock and settings go with it */
        PQfinish(c->db);
        c->db = NULL;
        stmt_cache_clear(c);
    }
    pg_release(base, cb);
    return -1;
}

/* Rows ---------------------------------------------------------------------------------------- */

static const char *val(PGresult *r, int row, int col, arena_t *a)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    return arena_strndup(a, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static void row_read(PGresult *r, int row, property_t *p, arena_t *a)
{
    property_init(p);
    int i = 0;
#define NUL() PQgetisnull(r, row, i)
#define TXT(field, f)                                                                                       \
    do {                                                                                                   \
        if ((p->field = val(r, row, i++, a)))                                                              \
            p->set |= PF_BIT(f);                                                                           \
    } while (0)
#define INT(field, f)                                                                                       \
    do {                                                                                                   \
        if (!NUL())                                                                                        \
            p->field = strtoll(PQgetvalue(r, row, i), NULL, 10), p->set |= PF_BIT(f);                      \
        i++;                                                                                               \
    } while (0)
#define DBL(field, f)                                                                                       \
    do {                                                                                                   \
        if (!NUL())                                                                                        \
            p->field = strtod(PQgetvalue(r, row, i), NULL), p->set |= PF_BIT(f);                           \
        i++;                                                                                               \
    } while (0)
    p->id = strtoll(PQgetvalue(r, row, i++), NULL, 10);
    TXT(title, PF_TITLE);
    TXT(description, PF_DESCRIPTION);
    INT(price_cents, PF_PRICE);
    TXT(location, PF_LOCATION);
    TXT(city, PF_CITY);
    TXT(state, PF_STATE);
    TXT(zip, PF_ZIP);
    DBL(latitude, PF_LATITUDE);
    DBL(longitude, PF_LONGITUDE);
    INT(bedrooms, PF_BEDROOMS);
    DBL(bathrooms, PF_BATHROOMS);
    INT(size_sqft, PF_SIZE_SQFT);
    INT(lot_size_sqft, PF_LOT_SIZE_SQFT);
    INT(year_built, PF_YEAR_BUILT);
    p->amenities = store_json_list(PQgetvalue(r, row, i++), &p->namenities, a);
    p->set |= PF_BIT(PF_AMENITIES);
    p->image_urls = store_json_list(PQgetvalue(r, row, i++), &p->nimage_urls, a);
    p->set |= PF_BIT(PF_IMAGE_URLS);
    DBL(school_rating, PF_SCHOOL_RATING);
    INT(commute_time, PF_COMMUTE_TIME);
    TXT(property_type, PF_PROPERTY_TYPE);
    TXT(status, PF_STATUS);
    TXT(features, PF_FEATURES);
    TXT(source, PF_SOURCE);
    TXT(external_id, PF_EXTERNAL_ID);
    p->owner_id = NUL() ? 0 : strtoll(PQgetvalue(r, row, i), NULL, 10);
    i++;
    p->version = strtoll(PQgetvalue(r, row, i++), NULL, 10);
    p->created_at = strtoll(PQgetvalue(r, row, i++), NULL, 10);
    p->updated_at = strtoll(PQgetvalue(r, row, i++), NULL, 10);
#undef NUL
#undef TXT
#undef INT
#undef DBL
}

/* Text parameters for the 23 content columns, in the order of CONTENT_COLUMNS; strings made here
 * live in `a`, the two JSON lists in amen and imgs for the caller to free. */
#define CONTENT_COLUMNS                                                                                     \
    "title, description, price_cents, location, city, state, zip, latitude, longitude, bedrooms, "         \
    "bathrooms, size_sqft, lot_size_sqft, year_built, amenities, image_urls, school_rating, "              \
    "commute_time, property_type, status, features, source, external_id"
#define NCONTENT 23

static const char *num_i(arena_t *a, bool set, int64_t v) { return set ? arena_printf(a, "%lld", (long long)v) : NULL; }
static const char *num_d(arena_t *a, bool set, double v) { return set ? arena_printf(a, "%.17g", v) : NULL; }

static void content_params(const property_t *p, const char **v, arena_t *a, char **amen, char **imgs)
{
#define SET(f) ((p->set & PF_BIT(f)) != 0)
    int i = 0;
    v[i++] = p->title;
    v[i++] = SET(PF_DESCRIPTION) ? p->description : NULL;
    v[i++] = num_i(a, true, p->price_cents);
    v[i++] = p->location;
    v[i++] = SET(PF_CITY) ? p->city : NULL;
    v[i++] = SET(PF_STATE) ? p->state : NULL;
    v[i++] = SET(PF_ZIP) ? p->zip : NULL;
    v[i++] = num_d(a, SET(PF_LATITUDE), p->latitude);
    v[i++] = num_d(a, SET(PF_LONGITUDE), p->longitude);
    v[i++] = num_i(a, true, p->bedrooms);
    v[i++] = num_d(a, true, p->bathrooms);
    v[i++] = num_i(a, true, p->size_sqft);
    v[i++] = num_i(a, SET(PF_LOT_SIZE_SQFT), p->lot_size_sqft);
    v[i++] = num_i(a, SET(PF_YEAR_BUILT), p->year_built);
    v[i++] = *amen = store_list_json(p->amenities, p->namenities);
    v[i++] = *imgs = store_list_json(p->image_urls, p->nimage_urls);
    v[i++] = num_d(a, SET(PF_SCHOOL_RATING), p->school_rating);
    v[i++] = num_i(a, SET(PF_COMMUTE_TIME), p->commute_time);
    v[i++] = p->property_type;
    v[i++] = p->status;
    v[i++] = SET(PF_FEATURES) ? p->features : NULL;
    v[i++] = SET(PF_SOURCE) ? p->source : NULL;
    v[i++] = SET(PF_EXTERNAL_ID) ? p->external_id : NULL;
#undef SET
}

static bool amenities_write(pg_conn_t *c, int64_t id, const property_t *p, bool replace, arena_t *a, err_t *e)
{
    const char *pid = arena_printf(a, "%lld", (long long)id);
    PGresult *r;
    if (replace) {
        const char *v[] = {pid};
        if (!(r = run(c, "DELETE FROM property_amenities WHERE property_id = $1", 1, v, PGRES_COMMAND_OK, e)))
            return false;
        PQclear(r);
    }
    for (int i = 0; i < p->namenities; i++) {
        const char *v[] = {p->amenities[i], pid};
        if (!(r = run(c, "INSERT INTO property_amenities (amenity, property_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                      2, v, PGRES_COMMAND_OK, e)))
            return false;
        PQclear(r);
    }
    return true;
}

static bool insert_row(pg_conn_t *c, property_t *p, arena_t *a, err_t *e)
{
    const char *v[NCONTENT + 2];
    char *amen, *imgs;
    content_params(p, v, a, &amen, &imgs);
    int64_t now = time_now_us();
    v[NCONTENT] = p->owner_id ? arena_printf(a, "%lld", (long long)p->owner_id) : NULL;
    v[NCONTENT + 1] = arena_printf(a, "%lld", (long long)now);
    PGresult *r = run(c,
                      "INSERT INTO properties (" CONTENT_COLUMNS ", owner_id, version, created_at, updated_at)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
                      " $19, $20, $21, $22, $23, $24, 1, $25, $25) RETURNING id",
                      NCONTENT + 2, v, PGRES_TUPLES_OK, e);
    free(amen);
    free(imgs);
    if (!r)
        return false;
    p->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    p->version = 1;
    p->created_at = p->updated_at = now;
    return amenities_write(c, p->id, p, false, a, e);
}

/* UPDATE guarded by version: 1 done, 0 gone or stale, -1 error. */
static int update_row(pg_conn_t *c, property_t *p, int64_t expect_version, arena_t *a, err_t *e)
{
    const char *v[NCONTENT + 3];
    char *amen, *imgs;
    content_params(p, v, a, &amen, &imgs);
    int64_t now = time_now_us();
    if (now <= p->updated_at)
        now = p->updated_at + 1;
    v[NCONTENT] = arena_printf(a, "%lld", (long long)now);
    v[NCONTENT + 1] = arena_printf(a, "%lld", (long long)p->id);
    v[NCONTENT + 2] = arena_printf(a, "%lld", (long long)expect_version);
    PGresult *r = run(c,
                      "UPDATE properties SET (" CONTENT_COLUMNS ", version, updated_at) = ($1, $2, $3, $4, $5, $6, $7,"
                      " $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, version + 1, $24)"
                      " WHERE id = $25 AND version = $26",
                      NCONTENT + 3, v, PGRES_COMMAND_OK, e);
    free(amen);
    free(imgs);
    if (!r)
        return -1;
    int changed = atoi(PQcmdTuples(r));
    PQclear(r);
    if (!changed)
        return 0;
    p->version = expect_version + 1;
    p->updated_at = now;
    return amenities_write(c, p->id, p, true, a, e) ? 1 : -1;
}

static bool pg_property_get(store_conn_t *cb, int64_t id, arena_t *a, property_t *out, err_t *e)
{
    const char *v[] = {arena_printf(a, "%lld", (long long)id)};
    PGresult *r = run((pg_conn_t *)cb, "SELECT " STORE_COLUMNS " FROM properties p WHERE p.id = $1", 1, v,
                      PGRES_TUPLES_OK, e);
    if (!r)
        return false;
    bool found = PQntuples(r) == 1;
    if (found)
        row_read(r, 0, out, a);
    PQclear(r);
    return found ? true : err_set(e, ERR_NOT_FOUND, "no property with id %lld", (long long)id);
}

static void notify_post(pg_store_t *s, unsigned channels);

static bool in_tx(pg_conn_t *c, err_t *e)
{
    c->notify = 0;
    return exec_simple(c, "BEGIN", e);
}

static bool commit_or_rollback(pg_conn_t *c, bool ok, err_t *e)
{
    unsigned notify = c->notify;
    c->notify = 0;
    if (ok) {
        if (!exec_simple(c, "COMMIT", e))
            return false;
        if (notify)
            notify_post((pg_store_t *)c->base.store, notify);
        return true;
    }
    if (c->db) {
        err_t ignore;
        err_clear(&ignore);
        exec_simple(c, "ROLLBACK", &ignore);
    }
    return false;
}

static bool pg_property_create(store_conn_t *cb, property_t *p, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    arena_t a;
    arena_init(&a);
    bool ok = in_tx(c, e) && commit_or_rollback(c, insert_row(c, p, &a, e) && store_tx_extras_write(cb, e), e);
    arena_free(&a);
    return ok;
}

/* 1 the row exists, 0 it does not, -1 the question failed (`e` set). */
static int exists(pg_conn_t *c, int64_t id, arena_t *a, err_t *e)
{
    const char *v[] = {arena_printf(a, "%lld", (long long)id)};
    PGresult *r = run(c, "SELECT 1 FROM properties WHERE id = $1", 1, v, PGRES_TUPLES_OK, e);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    PQclear(r);
    return found;
}

static bool pg_property_update(store_conn_t *cb, property_t *p, int64_t expect_version, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    arena_t a;
    arena_init(&a);
    bool ok = in_tx(c, e);
    if (ok) {
        int rc = update_row(c, p, expect_version, &a, e);
        if (rc == 0) {
            int ex = exists(c, p->id, &a, e);
            if (ex == 1)
                err_set(e, ERR_PRECONDITION, "the property has changed since version %lld", (long long)expect_version);
            else if (ex == 0)
                err_set(e, ERR_NOT_FOUND, "no property with id %lld", (long long)p->id);
        }
        ok = commit_or_rollback(c, rc == 1 && store_tx_extras_write(cb, e), e);
    }
    arena_free(&a);
    return ok;
}

static bool pg_property_delete(store_conn_t *cb, int64_t id, int64_t expect_version, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    arena_t a;
    arena_init(&a);
    const char *v[] = {arena_printf(&a, "%lld", (long long)id), arena_printf(&a, "%lld", (long long)expect_version)};
    if (!in_tx(c, e)) {
        arena_free(&a);
        return false;
    }
    PGresult *r = run(c, "DELETE FROM properties WHERE id = $1 AND ($2::bigint = 0 OR version = $2::bigint)", 2, v,
                      PGRES_COMMAND_OK, e);
    bool ok = false;
    if (r) {
        ok = atoi(PQcmdTuples(r)) == 1;
        PQclear(r);
        if (!ok) {
            int ex = expect_version ? exists(c, id, &a, e) : 0;
            if (ex == 1)
                err_set(e, ERR_PRECONDITION, "the property has changed since version %lld", (long long)expect_version);
            else if (ex == 0)
                err_set(e, ERR_NOT_FOUND, "no property with id %lld", (long long)id);
        }
    }
    ok = commit_or_rollback(c, ok && store_tx_extras_write(cb, e), e);
    arena_free(&a);
    return ok;
}

/* Generic statements ---------------------------------------------------------------------------- */

static bool pg_query(store_conn_t *cb, const char *sql, int n, const char *const *vals, arena_t *a, store_rows_t *out,
                     err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    memset(out, 0, sizeof *out);
    PGresult *r = run(c, sql, n, vals, WANT_ANY_OK, e);
    if (!r) {
        if (e->code == ERR_CONFLICT)
            err_set(e, ERR_CONFLICT, "a unique value is taken");
        return false;
    }
    out->nrows = PQntuples(r);
    out->ncols = PQnfields(r);
    out->cells = arena_alloc(a, (size_t)(out->nrows * out->ncols + 1) * sizeof *out->cells);
    for (int row = 0; row < out->nrows; row++)
        for (int col = 0; col < out->ncols; col++)
            out->cells[row * out->ncols + col] = val(r, row, col, a);
    const char *changed = PQcmdTuples(r);
    out->changes = changed && *changed ? strtoll(changed, NULL, 10) : 0;
    PQclear(r);
    return true;
}

static bool pg_begin(store_conn_t *cb, err_t *e) { return in_tx((pg_conn_t *)cb, e); }

static bool pg_begin_lazy(store_conn_t *cb, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    c->notify = 0;
    return exec_simple(c, "BEGIN; SET LOCAL synchronous_commit = off", e);
}

static bool pg_end(store_conn_t *cb, bool commit, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    if (!c->db) /* the connection died: whatever was open is gone */
        return !commit || err_set(e, ERR_UNAVAILABLE, "the database connection was lost; nothing was saved");
    PGTransactionStatusType st = PQtransactionStatus(c->db);
    if (st == PQTRANS_IDLE)
        return true; /* nothing open */
    if (commit && st == PQTRANS_INERROR) { /* COMMIT would answer ROLLBACK */
        commit_or_rollback(c, false, e);
        return err_set(e, ERR_INTERNAL, "the transaction failed; nothing was saved");
    }
    return commit_or_rollback(c, commit, e) || !commit;
}

static bool pg_property_count(store_conn_t *cb, int64_t *out, err_t *e)
{
    PGresult *r = run((pg_conn_t *)cb, "SELECT count(*) FROM properties", 0, NULL, PGRES_TUPLES_OK, e);
    if (!r)
        return false;
    *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return true;
}

static int pg_upsert_find(store_conn_t *cb, const property_t *p, arena_t *a, property_t *old, err_t *e)
{
    const char *v[] = {p->source, p->external_id};
    PGresult *r = run((pg_conn_t *)cb, "SELECT " STORE_COLUMNS " FROM properties p WHERE p.source = $1 AND p.external_id = $2",
                      2, v, PGRES_TUPLES_OK, e);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found)
        row_read(r, 0, old, a);
    PQclear(r);
    return found;
}

static int pg_upsert_update(store_conn_t *cb, property_t *p, int64_t expect_version, arena_t *a, err_t *e)
{
    return update_row((pg_conn_t *)cb, p, expect_version, a, e);
}

static bool pg_upsert_insert(store_conn_t *cb, property_t *p, arena_t *a, err_t *e)
{
    return insert_row((pg_conn_t *)cb, p, a, e);
}

static bool pg_property_upsert_batch(store_conn_t *cb, property_t *rows, int n, upsert_result_t *results, err_t *e)
{
    static const upsert_steps_t steps = {pg_upsert_find, pg_upsert_update, pg_upsert_insert};
    pg_conn_t *c = (pg_conn_t *)cb;
    if (!in_tx(c, e))
        return false;
    return commit_or_rollback(c, store_upsert_rows(cb, &steps, rows, n, results, e), e);
}

static bool pg_property_search(store_conn_t *cb, const property_query_t *q, arena_t *a, property_page_t *out, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    buf_t sql;
    buf_init(&sql);
    sql_binds_t *b = arena_alloc(a, sizeof *b);
    store_sql_search(SQL_POSTGRES, q, a, &sql, b);
    const char *v[SQL_MAX_BINDS];
    for (int i = 0; i < b->n; i++)
        v[i] = b->kind[i] == BIND_INT ? arena_printf(a, "%lld", (long long)b->i[i])
               : b->kind[i] == BIND_DOUBLE ? arena_printf(a, "%.17g", b->d[i])
                                           : b->t[i];
    PGresult *r = run(c, buf_cstr(&sql), b->n, v, PGRES_TUPLES_OK, e);
    buf_free(&sql);
    if (!r)
        return false;
    int rows = PQntuples(r);
    out->has_more = rows > q->limit;
    out->n = rows > q->limit ? q->limit : rows;
    out->items = arena_alloc(a, sizeof(property_t) * (size_t)(out->n ? out->n : 1));
    for (int i = 0; i < out->n; i++)
        row_read(r, i, &out->items[i], a);
    PQclear(r);
    return true;
}

static void pg_optimize(store_t *base)
{
    err_t e;
    err_clear(&e);
    store_conn_t *cb = pg_acquire(base, 30000, &e);
    if (!cb)
        return;
    exec_simple((pg_conn_t *)cb, "ANALYZE properties; ANALYZE property_amenities", &e);
    pg_release(base, cb);
}

/* Notifications ----------------------------------------------------------------------------------- */

/* The notifier thread: waits for posted channels and NOTIFYs them on a connection of its own. */
static void *notifier_main(void *p)
{
    pg_store_t *s = p;
    notifier_t *n = &s->notifier;
    pg_conn_t conn = {0};
    conn.base.store = &s->base;
    bool warned = false;
    pthread_mutex_lock(&n->mu);
    for (;;) {
        while (!n->pending && !n->stop)
            pthread_cond_wait(&n->cv, &n->mu);
        if (n->stop)
            break;
        unsigned send = n->pending;
        n->pending = 0;
        buf_t sql;
        buf_init(&sql);
        for (int i = 0; i < n->nchannels; i++)
            if (send & (1u << i))
                buf_printf(&sql, "NOTIFY \"%s\";", n->channel[i]);
        pthread_mutex_unlock(&n->mu);
        err_t e;
        err_clear(&e);
        bool ok = (conn.db && PQstatus(conn.db) == CONNECTION_OK) || conn_connect(s, &conn, &e, NULL, 0);
        ok = ok && exec_simple(&conn, buf_cstr(&sql), &e);
        if (!ok && !warned) /* the listeners' safety-net polls find the work meanwhile */
            log_warn("postgres: NOTIFY failed (%s); listeners rely on their polls until it works", e.message);
        warned = !ok;
        buf_free(&sql);
        pthread_mutex_lock(&n->mu);
    }
    pthread_mutex_unlock(&n->mu);
    if (conn.db)
        PQfinish(conn.db);
    stmt_cache_clear(&conn);
    return NULL;
}

static void notify_post(pg_store_t *s, unsigned channels)
{
    notifier_t *n = &s->notifier;
    pthread_mutex_lock(&n->mu);
    if (!n->started && !n->stop)
        n->started = pthread_create(&n->thread, NULL, notifier_main, s) == 0;
    n->pending |= channels;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

static void notifier_stop(pg_store_t *s)
{
    notifier_t *n = &s->notifier;
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    bool started = n->started;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    if (started)
        pthread_join(n->thread, NULL);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
}

/* Marks `channel` for the notifier: at the commit of the open transaction, at once outside one. */
static bool pg_notify(store_conn_t *cb, const char *channel, err_t *e)
{
    pg_conn_t *c = (pg_conn_t *)cb;
    pg_store_t *s = (pg_store_t *)cb->store;
    notifier_t *n = &s->notifier;
    pthread_mutex_lock(&n->mu);
    int i = 0;
    while (i < n->nchannels && strcmp(n->channel[i], channel) != 0)
        i++;
    if (i == n->nchannels && i < NOTIFY_CHANNELS && strlen(channel) < sizeof n->channel[0])
        snprintf(n->channel[n->nchannels++], sizeof n->channel[0], "%s", channel);
    pthread_mutex_unlock(&n->mu);
    if (i == NOTIFY_CHANNELS || strlen(channel) >= sizeof n->channel[0])
        return err_set(e, ERR_INTERNAL, "notification channel \"%s\" not possible", channel);
    if (c->db && PQtransactionStatus(c->db) == PQTRANS_INTRANS)
        c->notify |= 1u << i;
    else
        notify_post(s, 1u << i);
    return true;
}

struct store_listener {
    pg_store_t *store;
    char channel[64];
    void (*fn)(void *);
    void *arg;
    pthread_t thread;
    _Atomic bool stop;
};

static void *listener_main(void *p)
{
    struct store_listener *l = p;
    pg_conn_t conn = {0};
    conn.base.store = &l->store->base;
    bool warned = false;
    while (!atomic_load(&l->stop)) {
        err_t e;
        err_clear(&e);
        if (!conn.db || PQstatus(conn.db) != CONNECTION_OK) {
            char sql[96];
            snprintf(sql, sizeof sql, "LISTEN \"%s\"", l->channel);
            if (!conn_connect(l->store, &conn, &e, NULL, 0) || !exec_simple(&conn, sql, &e)) {
                if (!warned)
                    log_warn("postgres: LISTEN %s failed; workers fall back to polling until it works", l->channel);
                warned = true;
                for (int i = 0; i < 10 && !atomic_load(&l->stop); i++)
                    poll(NULL, 0, 100);
                continue;
            }
            warned = false;
            l->fn(l->arg); /* whatever was sent while not listening */
        }
        struct pollfd pfd = {.fd = PQsocket(conn.db), .events = POLLIN};
        if (poll(&pfd, 1, 250) > 0 && !PQconsumeInput(conn.db)) {
            PQfinish(conn.db);
            conn.db = NULL;
            continue;
        }
        bool any = false;
        PGnotify *n;
        while ((n = PQnotifies(conn.db))) {
            any = true;
            PQfreemem(n);
        }
        if (any)
            l->fn(l->arg);
    }
    if (conn.db)
        PQfinish(conn.db);
    stmt_cache_clear(&conn);
    return NULL;
}

static struct store_listener *pg_listen(store_t *base, const char *channel, void (*fn)(void *), void *arg, err_t *e)
{
    struct store_listener *l = calloc(1, sizeof *l);
    l->store = (pg_store_t *)base;
    snprintf(l->channel, sizeof l->channel, "%s", channel);
    l->fn = fn;
    l->arg = arg;
    if (pthread_create(&l->thread, NULL, listener_main, l) != 0) {
        free(l);
        err_set(e, ERR_INTERNAL, "could not start the LISTEN thread");
        return NULL;
    }
    return l;
}

static void pg_unlisten(struct store_listener *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    free(l);
}

static const store_ops_t postgres_ops = {
    .name = "postgres",
    .migrate = pg_migrate,
    .acquire = pg_acquire,
    .release = pg_release,
    .ping = pg_ping,
    .stats = pg_stats,
    .close = pg_close,
    .optimize = pg_optimize,
    .property_get = pg_property_get,
    .property_search = pg_property_search,
    .property_create = pg_property_create,
    .property_update = pg_property_update,
    .property_delete = pg_property_delete,
    .property_upsert_batch = pg_property_upsert_batch,
    .property_count = pg_property_count,
    .query = pg_query,
    .begin = pg_begin,
    .begin_lazy = pg_begin_lazy,
    .end = pg_end,
    .notify = pg_notify,
    .listen = pg_listen,
    .unlisten = pg_unlisten,
};
