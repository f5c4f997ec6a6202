/* store_sql: SQL shared by the SQL store backends. The property search is built here once, from
 * the filters given, for either dialect: the two differ only in placeholders ($n or ?), how a
 * case-insensitive city match, a location substring and a full-text match are spelled. Values
 * are never spliced into the SQL: each becomes a placeholder and a binding. */
#ifndef HEARTH_STORE_SQL_H
#define HEARTH_STORE_SQL_H

#include <stdint.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "../domain/property.h"
#include "store.h"

typedef enum { SQL_SQLITE, SQL_POSTGRES } sql_dialect_t;

typedef enum { BIND_INT, BIND_DOUBLE, BIND_TEXT } bind_kind_t;

#define SQL_MAX_BINDS 64

typedef struct sql_binds {
    int n;
    bind_kind_t kind[SQL_MAX_BINDS];
    int64_t i[SQL_MAX_BINDS];
    double d[SQL_MAX_BINDS];
    const char *t[SQL_MAX_BINDS];
} sql_binds_t;

/* The columns of a property row, in the order both backends read them; the list form reads NULL in
 * place of the source features (list items leave them out). */
#define STORE_COLUMNS_WITH(features)                                                                        \
    "p.id, p.title, p.description, p.price_cents, p.location, p.city, p.state, p.zip, p.latitude, "        \
    "p.longitude, p.bedrooms, p.bathrooms, p.size_sqft, p.lot_size_sqft, p.year_built, p.amenities, "      \
    "p.image_urls, p.school_rating, p.commute_time, p.property_type, p.status, " features ", p.source, "   \
    "p.external_id, p.owner_id, p.version, p.created_at, p.updated_at"
#define STORE_COLUMNS STORE_COLUMNS_WITH("p.features")
#define STORE_LIST_COLUMNS STORE_COLUMNS_WITH("NULL")

/* Builds the search for `q` (LIMIT q->limit + 1, to know whether there is a next page) into `sql`
 * and its values into `b`. Strings made for bindings live in `a`. */
void store_sql_search(sql_dialect_t d, const property_query_t *q, arena_t *a, buf_t *sql, sql_binds_t *b);

/* A JSON array of strings (as stored) into arena strings; NULL and 0 for "[]". */
const char **store_json_list(const char *text, int *n, arena_t *a);
/* Strings as a JSON array; the caller frees the result. */
char *store_list_json(const char **items, int n);
/* The content of a row as JSON without identity, version, owner and times: equal strings mean an
 * import row changes nothing. */
void store_content_key(const property_t *p, buf_t *out);

/* The backend's parts of an import upsert; each runs inside the backend's transaction. */
typedef struct upsert_steps {
    /* the row with p's (source, external_id) into *old: 1 found, 0 none, -1 error */
    int (*find)(store_conn_t *c, const property_t *p, arena_t *a, property_t *old, err_t *e);
    /* write p over the row at expect_version: 1 done, 0 the row moved on meanwhile, -1 error */
    int (*update)(store_conn_t *c, property_t *p, int64_t expect_version, arena_t *a, err_t *e);
    bool (*insert)(store_conn_t *c, property_t *p, arena_t *a, err_t *e);
} upsert_steps_t;

/* Inserts or updates each row by (source, external_id), leaving rows whose content is the same
 * alone (UPSERT_UNCHANGED), and fills results[]. Stops at the first failure, with `e` set. */
bool store_upsert_rows(store_conn_t *c, const upsert_steps_t *steps, property_t *rows, int n,
                       upsert_result_t *results, err_t *e);

#endif
