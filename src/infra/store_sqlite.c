/* store_sqlite: the embedded store backend (SQLite 3 in WAL mode).
 *
 * A fixed pool of connections, one per concurrent request at most, handed out under a mutex; each
 * connection keeps a small cache of prepared statements keyed by SQL text, because a search builds
 * its SQL from the filters given and the same few shapes recur. Writers take BEGIN IMMEDIATE so a
 * reader never has to upgrade to a writer mid-transaction (the cause of SQLITE_BUSY deadlocks); the
 * busy timeout makes concurrent writers queue rather than fail. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../base/buf.h"
#include "../base/embed.h"
#include "../base/log.h"
#include "../base/util.h"
#include "pool.h"
#include "store.h"
#include "store_sql.h"

#define STMT_CACHE 48
#define BUSY_TIMEOUT_MS 5000

typedef struct stmt_entry {
    char *sql;
    sqlite3_stmt *stmt;
    uint64_t last_used;
} stmt_entry_t;

typedef struct sq_conn {
    store_conn_t base;
    sqlite3 *db;
    stmt_entry_t cache[STMT_CACHE];
    uint64_t tick;
} sq_conn_t;

typedef struct sq_store {
    store_t base;
    char *path;
    int size;
    sq_conn_t *conns;
    pool_t pool; /* lends out conns[] by index */
} sq_store_t;

static const store_ops_t sqlite_ops;

/* Statements ---------------------------------------------------------------------------------- */

static bool db_fail(sq_conn_t *c, err_t *e, const char *what)
{
    int code = sqlite3_extended_errcode(c->db);
    log_error("sqlite: %s: %s (%d)", what, sqlite3_errmsg(c->db), code);
    if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
        return err_set(e, ERR_UNAVAILABLE, "the database is busy, try again");
    return err_set(e, ERR_INTERNAL, "internal error");
}

/* A prepared statement for `sql`, reset and with bindings cleared; owned by the cache. */
static sqlite3_stmt *stmt_get(sq_conn_t *c, const char *sql, err_t *e)
{
    stmt_entry_t *victim = &c->cache[0];
    for (int i = 0; i < STMT_CACHE; i++) {
        stmt_entry_t *s = &c->cache[i];
        if (s->sql && strcmp(s->sql, sql) == 0) {
            s->last_used = ++c->tick;
            sqlite3_reset(s->stmt);
            sqlite3_clear_bindings(s->stmt);
            return s->stmt;
        }
        if (!s->sql || (victim->sql && s->last_used < victim->last_used))
            victim = s;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        db_fail(c, e, "prepare");
        return NULL;
    }
    if (victim->sql) {
        sqlite3_finalize(victim->stmt);
        free(victim->sql);
    }
    victim->sql = strdup(sql);
    victim->stmt = st;
    victim->last_used = ++c->tick;
    return st;
}

static bool exec(sq_conn_t *c, const char *sql, err_t *e)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("sqlite: %s: %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return db_fail(c, e, "exec");
    }
    return true;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static const char *col_text(sqlite3_stmt *st, int i, arena_t *a)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    const unsigned char *t = sqlite3_column_text(st, i);
    return arena_strndup(a, (const char *)t, (size_t)sqlite3_column_bytes(st, i));
}

/* Pool ---------------------------------------------------------------------------------------- */

static bool conn_open(sq_store_t *s, sq_conn_t *c, err_t *e)
{
    memset(c, 0, sizeof *c);
    c->base.store = &s->base;
    int rc = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err_set(e, ERR_UNAVAILABLE, "cannot open the database %s: %s", s->path,
                c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        c->db = NULL;
        return false;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(c->db, 1);
    return exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                   "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16000;",
                e);
}

static void conn_close(sq_conn_t *c)
{
    for (int i = 0; i < STMT_CACHE; i++)
        if (c->cache[i].sql) {
            sqlite3_finalize(c->cache[i].stmt);
            free(c->cache[i].sql);
        }
    sqlite3_close(c->db);
    c->db = NULL;
}

static int mkdir_parents(const char *path)
{
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp)
        return 0;
    *slash = '\0';
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

store_t *store_sqlite_open(const char *path, int pool_size, err_t *e)
{
    if (mkdir_parents(path) != 0) {
        err_set(e, ERR_UNAVAILABLE, "cannot create the directory for %s: %s", path, strerror(errno));
        return NULL;
    }
    sq_store_t *s = calloc(1, sizeof *s);
    s->base.ops = &sqlite_ops;
    s->path = strdup(path);
    s->size = pool_size;
    s->conns = calloc((size_t)pool_size, sizeof *s->conns);
    pool_init(&s->pool, pool_size);
    for (int i = 0; i < pool_size; i++) {
        if (!conn_open(s, &s->conns[i], e)) {
            for (int j = 0; j < i; j++)
                conn_close(&s->conns[j]);
            free(s->conns);
            free(s->path);
            free(s);
            return NULL;
        }
    }
    s->base.group = txgroup_new();
    return &s->base;
}

static void sq_close(store_t *base)
{
    sq_store_t *s = (sq_store_t *)base;
    for (int i = 0; i < s->size; i++)
        conn_close(&s->conns[i]);
    txgroup_free(s->base.group);
    pool_destroy(&s->pool);
    free(s->conns);
    free(s->path);
    free(s);
}

static store_conn_t *sq_acquire(store_t *base, int timeout_ms, err_t *e)
{
    sq_store_t *s = (sq_store_t *)base;
    int slot = pool_acquire(&s->pool, timeout_ms, e);
    return slot < 0 ? NULL : &s->conns[slot].base;
}

static void sq_release(store_t *base, store_conn_t *cb)
{
    sq_store_t *s = (sq_store_t *)base;
    sq_conn_t *c = (sq_conn_t *)cb;
    if (!sqlite3_get_autocommit(c->db)) /* a transaction left open by an error path */
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    cb->audit = NULL;
    cb->event = NULL;
    pool_release(&s->pool, (int)(c - s->conns));
}

static void sq_stats(store_t *base, store_stats_t *out) { pool_stats(&((sq_store_t *)base)->pool, out); }

static bool sq_ping(store_conn_t *cb, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    sqlite3_stmt *st = stmt_get(c, "SELECT 1", e);
    if (!st)
        return false;
    if (sqlite3_step(st) != SQLITE_ROW)
        return db_fail(c, e, "ping");
    sqlite3_reset(st);
    return true;
}

/* Migrations ---------------------------------------------------------------------------------- */

static int cmp_embed(const void *a, const void *b)
{
    return strcmp((*(const embed_file_t *const *)a)->name, (*(const embed_file_t *const *)b)->name);
}

static int sq_migrate(store_t *base, err_t *e)
{
    sq_store_t *s = (sq_store_t *)base;
    store_conn_t *cb = sq_acquire(base, 30000, e);
    if (!cb)
        return -1;
    sq_conn_t *c = (sq_conn_t *)cb;
    int applied = 0;
    const char *prefix = "migrations/sqlite/";
    const embed_file_t *files[256];
    int n = 0;
    for (const embed_file_t *f = embed_table; f->name && n < 256; f++)
        if (strncmp(f->name, prefix, strlen(prefix)) == 0)
            files[n++] = f;
    qsort(files, (size_t)n, sizeof *files, cmp_embed);

    if (!exec(c, "BEGIN IMMEDIATE", e))
        goto fail;
    if (!exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at INTEGER NOT NULL)",
              e))
        goto fail;
    for (int i = 0; i < n; i++) {
        const char *name = files[i]->name + strlen(prefix);
        int64_t version = strtoll(name, NULL, 10);
        sqlite3_stmt *st = stmt_get(c, "SELECT 1 FROM schema_migrations WHERE version = ?", e);
        if (!st)
            goto fail;
        sqlite3_bind_int64(st, 1, version);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW)
            continue;
        if (rc != SQLITE_DONE) {
            db_fail(c, e, "migrate");
            goto fail;
        }
        if (!exec(c, files[i]->start, e)) {
            err_set(e, ERR_INTERNAL, "migration %s failed: %s", name, sqlite3_errmsg(c->db));
            goto fail;
        }
        st = stmt_get(c, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", e);
        if (!st)
            goto fail;
        sqlite3_bind_int64(st, 1, version);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, time_now_us());
        if (sqlite3_step(st) != SQLITE_DONE) {
            db_fail(c, e, "migrate");
            goto fail;
        }
        applied++;
        log_info("applied migration %s", name);
    }
    if (!exec(c, "COMMIT", e))
        goto fail;
    sq_release(base, cb);
    (void)s;
    return applied;
fail:
    sq_release(base, cb);
    return -1;
}

/* Rows ---------------------------------------------------------------------------------------- */

#define PROPERTY_COLUMNS STORE_COLUMNS


static void row_read(sqlite3_stmt *st, property_t *p, arena_t *a)
{
    property_init(p);
    int i = 0;
#define OPT_TEXT(field, f)                                                                                  \
    do {                                                                                                   \
        p->field = col_text(st, i++, a);                                                                   \
        if (p->field)                                                                                      \
            p->set |= PF_BIT(f);                                                                           \
    } while (0)
#define OPT_NUM(field, f, getter)                                                                           \
    do {                                                                                                   \
        if (sqlite3_column_type(st, i) != SQLITE_NULL)                                                     \
            p->field = getter(st, i), p->set |= PF_BIT(f);                                                 \
        i++;                                                                                               \
    } while (0)
    p->id = sqlite3_column_int64(st, i++);
    OPT_TEXT(title, PF_TITLE);
    OPT_TEXT(description, PF_DESCRIPTION);
    OPT_NUM(price_cents, PF_PRICE, sqlite3_column_int64);
    OPT_TEXT(location, PF_LOCATION);
    OPT_TEXT(city, PF_CITY);
    OPT_TEXT(state, PF_STATE);
    OPT_TEXT(zip, PF_ZIP);
    OPT_NUM(latitude, PF_LATITUDE, sqlite3_column_double);
    OPT_NUM(longitude, PF_LONGITUDE, sqlite3_column_double);
    OPT_NUM(bedrooms, PF_BEDROOMS, sqlite3_column_int);
    OPT_NUM(bathrooms, PF_BATHROOMS, sqlite3_column_double);
    OPT_NUM(size_sqft, PF_SIZE_SQFT, sqlite3_column_int);
    OPT_NUM(lot_size_sqft, PF_LOT_SIZE_SQFT, sqlite3_column_int);
    OPT_NUM(year_built, PF_YEAR_BUILT, sqlite3_column_int);
    p->amenities = store_json_list((const char *)sqlite3_column_text(st, i++), &p->namenities, a);
    p->set |= PF_BIT(PF_AMENITIES);
    p->image_urls = store_json_list((const char *)sqlite3_column_text(st, i++), &p->nimage_urls, a);
    p->set |= PF_BIT(PF_IMAGE_URLS);
    OPT_NUM(school_rating, PF_SCHOOL_RATING, sqlite3_column_double);
    OPT_NUM(commute_time, PF_COMMUTE_TIME, sqlite3_column_int);
    OPT_TEXT(property_type, PF_PROPERTY_TYPE);
    OPT_TEXT(status, PF_STATUS);
    OPT_TEXT(features, PF_FEATURES);
    OPT_TEXT(source, PF_SOURCE);
    OPT_TEXT(external_id, PF_EXTERNAL_ID);
    p->owner_id = sqlite3_column_int64(st, i++);
    p->version = sqlite3_column_int64(st, i++);
    p->created_at = sqlite3_column_int64(st, i++);
    p->updated_at = sqlite3_column_int64(st, i++);
#undef OPT_TEXT
#undef OPT_NUM
}

/* Binds every content column of `p` as ?1..?23 in the order of the INSERT/UPDATE statements
 * below. The two JSON strings are returned for the caller to free after the step. */
static void bind_content(sqlite3_stmt *st, const property_t *p, char **amen, char **imgs)
{
#define SET(f) (p->set & PF_BIT(f))
    int i = 1;
    bind_text(st, i++, p->title);
    bind_text(st, i++, SET(PF_DESCRIPTION) ? p->description : NULL);
    sqlite3_bind_int64(st, i++, p->price_cents);
    bind_text(st, i++, p->location);
    bind_text(st, i++, SET(PF_CITY) ? p->city : NULL);
    bind_text(st, i++, SET(PF_STATE) ? p->state : NULL);
    bind_text(st, i++, SET(PF_ZIP) ? p->zip : NULL);
    if (SET(PF_LATITUDE)) sqlite3_bind_double(st, i, p->latitude); else sqlite3_bind_null(st, i);
    i++;
    if (SET(PF_LONGITUDE)) sqlite3_bind_double(st, i, p->longitude); else sqlite3_bind_null(st, i);
    i++;
    sqlite3_bind_int(st, i++, p->bedrooms);
    sqlite3_bind_double(st, i++, p->bathrooms);
    sqlite3_bind_int(st, i++, p->size_sqft);
    if (SET(PF_LOT_SIZE_SQFT)) sqlite3_bind_int(st, i, p->lot_size_sqft); else sqlite3_bind_null(st, i);
    i++;
    if (SET(PF_YEAR_BUILT)) sqlite3_bind_int(st, i, p->year_built); else sqlite3_bind_null(st, i);
    i++;
    *amen = store_list_json(p->amenities, p->namenities);
    *imgs = store_list_json(p->image_urls, p->nimage_urls);
    sqlite3_bind_text(st, i++, *amen, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, i++, *imgs, -1, SQLITE_STATIC);
    if (SET(PF_SCHOOL_RATING)) sqlite3_bind_double(st, i, p->school_rating); else sqlite3_bind_null(st, i);
    i++;
    if (SET(PF_COMMUTE_TIME)) sqlite3_bind_int(st, i, p->commute_time); else sqlite3_bind_null(st, i);
    i++;
    bind_text(st, i++, p->property_type);
    bind_text(st, i++, p->status);
    bind_text(st, i++, SET(PF_FEATURES) ? p->features : NULL);
    bind_text(st, i++, SET(PF_SOURCE) ? p->source : NULL);
    bind_text(st, i++, SET(PF_EXTERNAL_ID) ? p->external_id : NULL);
#undef SET
}

#define CONTENT_COLUMNS                                                                                     \
    "title, description, price_cents, location, city, state, zip, latitude, longitude, bedrooms, "         \
    "bathrooms, size_sqft, lot_size_sqft, year_built, amenities, image_urls, school_rating, "              \
    "commute_time, property_type, status, features, source, external_id"

static bool amenities_write(sq_conn_t *c, int64_t id, const property_t *p, bool replace, err_t *e)
{
    sqlite3_stmt *st;
    if (replace) {
        if (!(st = stmt_get(c, "DELETE FROM property_amenities WHERE property_id = ?", e)))
            return false;
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_fail(c, e, "amenities");
    }
    for (int i = 0; i < p->namenities; i++) {
        if (!(st = stmt_get(c, "INSERT OR IGNORE INTO property_amenities (amenity, property_id) VALUES (?, ?)", e)))
            return false;
        sqlite3_bind_text(st, 1, p->amenities[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        if (sqlite3_step(st) != SQLITE_DONE)
            return db_fail(c, e, "amenities");
    }
    return true;
}

static bool insert_row(sq_conn_t *c, property_t *p, err_t *e)
{
    sqlite3_stmt *st = stmt_get(c,
                                "INSERT INTO properties (" CONTENT_COLUMNS ", owner_id, version, created_at, updated_at)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
                                " ?18, ?19, ?20, ?21, ?22, ?23, ?24, 1, ?25, ?25)",
                                e);
    if (!st)
        return false;
    char *amen, *imgs;
    bind_content(st, p, &amen, &imgs);
    if (p->owner_id)
        sqlite3_bind_int64(st, 24, p->owner_id);
    else
        sqlite3_bind_null(st, 24);
    int64_t now = time_now_us();
    sqlite3_bind_int64(st, 25, now);
    int rc = sqlite3_step(st);
    free(amen);
    free(imgs);
    if (rc != SQLITE_DONE) {
        if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_UNIQUE)
            return err_set(e, ERR_CONFLICT, "a property with this source and external_id already exists");
        return db_fail(c, e, "insert");
    }
    p->id = sqlite3_last_insert_rowid(c->db);
    p->version = 1;
    p->created_at = p->updated_at = now;
    return amenities_write(c, p->id, p, false, e);
}

/* UPDATE guarded by version; 0 rows changed means gone or stale, told apart by the caller. */
static int update_row(sq_conn_t *c, property_t *p, int64_t expect_version, err_t *e)
{
    sqlite3_stmt *st = stmt_get(c,
                                "UPDATE properties SET (" CONTENT_COLUMNS ", version, updated_at) ="
                                " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
                                " ?19, ?20, ?21, ?22, ?23, version + 1, ?24) WHERE id = ?25 AND version = ?26",
                                e);
    if (!st)
        return -1;
    char *amen, *imgs;
    bind_content(st, p, &amen, &imgs);
    int64_t now = time_now_us();
    if (now <= p->updated_at)
        now = p->updated_at + 1;
    sqlite3_bind_int64(st, 24, now);
    sqlite3_bind_int64(st, 25, p->id);
    sqlite3_bind_int64(st, 26, expect_version);
    int rc = sqlite3_step(st);
    free(amen);
    free(imgs);
    if (rc != SQLITE_DONE) {
        if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_UNIQUE) {
            err_set(e, ERR_CONFLICT, "a property with this source and external_id already exists");
            return -1;
        }
        db_fail(c, e, "update");
        return -1;
    }
    if (sqlite3_changes(c->db) == 0)
        return 0;
    p->version = expect_version + 1;
    p->updated_at = now;
    return amenities_write(c, p->id, p, true, e) ? 1 : -1;
}

static bool sq_property_get(store_conn_t *cb, int64_t id, arena_t *a, property_t *out, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    sqlite3_stmt *st = stmt_get(c, "SELECT " PROPERTY_COLUMNS " FROM properties p WHERE p.id = ?", e);
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_read(st, out, a);
        sqlite3_reset(st);
        return true;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return err_set(e, ERR_NOT_FOUND, "no property with id %lld", (long long)id);
    return db_fail(c, e, "get");
}

static bool sq_property_create(store_conn_t *cb, property_t *p, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    if (!exec(c, "BEGIN IMMEDIATE", e))
        return false;
    if (!insert_row(c, p, e) || !store_tx_extras_write(cb, e)) {
        exec(c, "ROLLBACK", e);
        return false;
    }
    return exec(c, "COMMIT", e);
}

static bool exists(sq_conn_t *c, int64_t id, err_t *e)
{
    sqlite3_stmt *st = stmt_get(c, "SELECT 1 FROM properties WHERE id = ?", e);
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, id);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

static bool sq_property_update(store_conn_t *cb, property_t *p, int64_t expect_version, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    if (!exec(c, "BEGIN IMMEDIATE", e))
        return false;
    int r = update_row(c, p, expect_version, e);
    if (r <= 0 || !store_tx_extras_write(cb, e)) {
        if (r == 0) {
            if (exists(c, p->id, e))
                err_set(e, ERR_PRECONDITION, "the property has changed since version %lld", (long long)expect_version);
            else
                err_set(e, ERR_NOT_FOUND, "no property with id %lld", (long long)p->id);
        }
        exec(c, "ROLLBACK", e);
        return false;
    }
    return exec(c, "COMMIT", e);
}

static bool sq_property_delete(store_conn_t *cb, int64_t id, int64_t expect_version, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    if (!exec(c, "BEGIN IMMEDIATE", e))
        return false;
    sqlite3_stmt *st = stmt_get(c, "DELETE FROM properties WHERE id = ?1 AND (?2 = 0 OR version = ?2)", e);
    bool ok = st != NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, expect_version);
        ok = sqlite3_step(st) == SQLITE_DONE || db_fail(c, e, "delete");
    }
    if (ok && sqlite3_changes(c->db) != 1) {
        if (expect_version && exists(c, id, e))
            ok = err_set(e, ERR_PRECONDITION, "the property has changed since version %lld", (long long)expect_version);
        else
            ok = err_set(e, ERR_NOT_FOUND, "no property with id %lld", (long long)id);
    }
    if (!ok || !store_tx_extras_write(cb, e)) {
        exec(c, "ROLLBACK", e);
        return false;
    }
    return exec(c, "COMMIT", e);
}

static bool sq_property_count(store_conn_t *cb, int64_t *out, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    sqlite3_stmt *st = stmt_get(c, "SELECT count(*) FROM properties", e);
    if (!st)
        return false;
    if (sqlite3_step(st) != SQLITE_ROW)
        return db_fail(c, e, "count");
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return true;
}

static int sq_upsert_find(store_conn_t *cb, const property_t *p, arena_t *a, property_t *old, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    sqlite3_stmt *st = stmt_get(c, "SELECT " PROPERTY_COLUMNS " FROM properties p WHERE p.source = ? AND p.external_id = ?", e);
    if (!st)
        return -1;
    bind_text(st, 1, p->source);
    bind_text(st, 2, p->external_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_read(st, old, a);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_fail(c, e, "upsert");
        return -1;
    }
    return rc == SQLITE_ROW;
}

static int sq_upsert_update(store_conn_t *cb, property_t *p, int64_t expect_version, arena_t *a, err_t *e)
{
    (void)a;
    return update_row((sq_conn_t *)cb, p, expect_version, e);
}

static bool sq_upsert_insert(store_conn_t *cb, property_t *p, arena_t *a, err_t *e)
{
    (void)a;
    return insert_row((sq_conn_t *)cb, p, e);
}

static bool sq_property_upsert_batch(store_conn_t *cb, property_t *rows, int n, upsert_result_t *results, err_t *e)
{
    static const upsert_steps_t steps = {sq_upsert_find, sq_upsert_update, sq_upsert_insert};
    sq_conn_t *c = (sq_conn_t *)cb;
    if (!exec(c, "BEGIN IMMEDIATE", e))
        return false;
    if (store_upsert_rows(cb, &steps, rows, n, results, e))
        return exec(c, "COMMIT", e);
    exec(c, "ROLLBACK", &(err_t){0});
    return false;
}

/* Search -------------------------------------------------------------------------------------- */

static bool sq_property_search(store_conn_t *cb, const property_query_t *q, arena_t *a, property_page_t *out, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    buf_t sql;
    buf_init(&sql);
    sql_binds_t *binds = arena_alloc(a, sizeof *binds);
    store_sql_search(SQL_SQLITE, q, a, &sql, binds);
    sqlite3_stmt *st = stmt_get(c, buf_cstr(&sql), e);
    buf_free(&sql);
    if (!st)
        return false;
    for (int i = 0; i < binds->n; i++) {
        if (binds->kind[i] == BIND_INT)
            sqlite3_bind_int64(st, i + 1, binds->i[i]);
        else if (binds->kind[i] == BIND_DOUBLE)
            sqlite3_bind_double(st, i + 1, binds->d[i]);
        else
            sqlite3_bind_text(st, i + 1, binds->t[i], -1, SQLITE_STATIC);
    }
    out->items = arena_alloc(a, sizeof(property_t) * (size_t)(q->limit + 1));
    out->n = 0;
    out->has_more = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == q->limit) {
            out->has_more = true;
            break;
        }
        row_read(st, &out->items[out->n++], a);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(c, e, "search");
    return true;
}

/* Refreshes the planner's statistics after bulk changes (an import). */
static void sq_optimize(store_t *base)
{
    err_t e;
    err_clear(&e);
    store_conn_t *cb = sq_acquire(base, 30000, &e);
    if (!cb)
        return;
    exec((sq_conn_t *)cb, "ANALYZE; PRAGMA optimize;", &e);
    sq_release(base, cb);
}

/* Generic statements ---------------------------------------------------------------------------- */

static bool sq_query(store_conn_t *cb, const char *sql, int n, const char *const *vals, arena_t *a, store_rows_t *out,
                     err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    memset(out, 0, sizeof *out);
    /* $N placeholders read as ?N: the same numbered parameters */
    size_t len = strlen(sql);
    char *q = arena_alloc(a, len + 1);
    for (size_t i = 0; i <= len; i++)
        q[i] = sql[i] == '$' && sql[i + 1] >= '0' && sql[i + 1] <= '9' ? '?' : sql[i];
    sqlite3_stmt *st = stmt_get(c, q, e);
    if (!st)
        return false;
    for (int i = 0; i < n; i++)
        bind_text(st, i + 1, vals[i]);
    out->ncols = sqlite3_column_count(st);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t need = (size_t)(out->nrows + 1) * (size_t)out->ncols;
        if (need > cap) {
            size_t ncap = cap ? cap * 2 : (size_t)out->ncols * 8;
            const char **cells = arena_alloc(a, (ncap ? ncap : 1) * sizeof *cells);
            if (cap)
                memcpy(cells, out->cells, cap * sizeof *cells);
            out->cells = cells;
            cap = ncap;
        }
        for (int col = 0; col < out->ncols; col++)
            out->cells[out->nrows * out->ncols + col] = col_text(st, col, a);
        out->nrows++;
    }
    bool ok = rc == SQLITE_DONE;
    if (!ok) {
        int code = sqlite3_extended_errcode(c->db);
        if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY)
            err_set(e, ERR_CONFLICT, "a unique value is taken");
        else
            db_fail(c, e, "query");
    }
    out->changes = ok ? sqlite3_changes(c->db) : 0;
    sqlite3_reset(st);
    return ok;
}

static bool sq_begin(store_conn_t *cb, err_t *e) { return exec((sq_conn_t *)cb, "BEGIN IMMEDIATE", e); }

static bool sq_end(store_conn_t *cb, bool commit, err_t *e)
{
    sq_conn_t *c = (sq_conn_t *)cb;
    if (sqlite3_get_autocommit(c->db))
        return true; /* nothing open */
    if (commit && exec(c, "COMMIT", e))
        return true;
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL); /* also after a COMMIT that failed */
    return !commit;
}

static const store_ops_t sqlite_ops = {
    .optimize = sq_optimize,
    .name = "sqlite",
    .migrate = sq_migrate,
    .acquire = sq_acquire,
    .release = sq_release,
    .ping = sq_ping,
    .stats = sq_stats,
    .close = sq_close,
    .property_get = sq_property_get,
    .property_search = sq_property_search,
    .property_create = sq_property_create,
    .property_update = sq_property_update,
    .property_delete = sq_property_delete,
    .property_upsert_batch = sq_property_upsert_batch,
    .property_count = sq_property_count,
    .query = sq_query,
    .begin = sq_begin,
    .end = sq_end,
};
