/* store: the persistence interface. One struct of function pointers with a backend per file
 * (store_sqlite.c today; store_postgres.c later), chosen by DATABASE_URL alone. Code above infra/
 * never knows which backend it has.
 *
 * A store owns a bounded pool of connections. A caller acquires one for the span of one request
 * (on a worker thread, never on an event loop), calls the operations, and releases it. When the pool
 * stays exhausted past the acquire timeout, acquire fails with ERR_UNAVAILABLE (a 503). */
#ifndef HEARTH_STORE_H
#define HEARTH_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "../base/config.h"
#include "../base/error.h"
#include "../domain/property.h"

typedef struct store store_t;
typedef struct store_conn store_conn_t;

typedef struct store_stats {
    int pool_size, in_use;
    uint64_t acquires, waits, timeouts;
} store_stats_t;

/* The rows of a generic statement: ncols cells per row, row after row, as text (NULL for SQL
 * NULL), in the caller's arena; `changes`: rows the statement inserted, updated or deleted. */
typedef struct store_rows {
    int nrows, ncols;
    const char **cells;
    int64_t changes;
} store_rows_t;

static inline const char *store_cell(const store_rows_t *r, int row, int col) { return r->cells[row * r->ncols + col]; }

/* One audit log entry (see domain/account.h), written in the transaction of the change it records. */
typedef struct store_audit {
    int64_t actor_id; /* 0: none (an anonymous attempt, the command line) */
    const char *action, *resource_type, *resource_id; /* resource_id may be NULL */
    const int64_t *resource_ref; /* without resource_id: read when written (a row's new id) */
    const char *ip, *request_id; /* may be NULL */
    const char *detail;          /* a JSON object or NULL */
} store_audit_t;

/* One outbox event (see domain/outbox.h), written in the transaction of the change it announces.
 * With `ref` set, the channel is `channel` followed by *ref and the data {"id": *ref} (a row's new id
 * is known only after the insert). */
#define STORE_OUTBOX_CHANNEL "hearth_outbox" /* NOTIFY channel of new outbox rows (PostgreSQL) */

typedef struct store_event {
    const char *channel, *type, *data; /* data: a JSON object */
    int64_t owner_id;                  /* who may see it besides admins; 0: everyone */
    const int64_t *ref;
} store_event_t;

/* The outcome of one row of an import batch. */
/* UPSERT_FOREIGN: the (source, external_id) belongs to a listing of another owner, which an import
 * never changes (the row is refused). */
typedef enum { UPSERT_INSERTED, UPSERT_UPDATED, UPSERT_UNCHANGED, UPSERT_FOREIGN } upsert_result_t;

typedef struct store_ops {
    const char *name; /* "sqlite", "postgres" */
    int (*migrate)(store_t *s, err_t *e); /* applies pending migrations; returns how many, -1 on error */
    store_conn_t *(*acquire)(store_t *s, int timeout_ms, err_t *e);
    void (*release)(store_t *s, store_conn_t *c);
    bool (*ping)(store_conn_t *c, err_t *e);
    void (*stats)(store_t *s, store_stats_t *out);
    void (*close)(store_t *s);
    void (*optimize)(store_t *s); /* refresh planner statistics after bulk writes */

    /* ERR_NOT_FOUND when there is no such id */
    bool (*property_get)(store_conn_t *c, int64_t id, arena_t *a, property_t *out, err_t *e);
    bool (*property_search)(store_conn_t *c, const property_query_t *q, arena_t *a, property_page_t *out, err_t *e);
    /* Inserts `p` and fills its id, version and timestamps. ERR_CONFLICT on a taken (source, external_id). */
    bool (*property_create)(store_conn_t *c, property_t *p, err_t *e);
    /* Replaces the row with `p` (already merged by the caller) when its version is still
     * `expect_version`: ERR_PRECONDITION otherwise, ERR_NOT_FOUND when gone. Bumps p->version. */
    bool (*property_update)(store_conn_t *c, property_t *p, int64_t expect_version, err_t *e);
    /* expect_version 0: any version */
    bool (*property_delete)(store_conn_t *c, int64_t id, int64_t expect_version, err_t *e);
    /* Inserts or updates each row by (source, external_id), all in one transaction. */
    bool (*property_upsert_batch)(store_conn_t *c, property_t *rows, int n, upsert_result_t *results, err_t *e);
    bool (*property_count)(store_conn_t *c, int64_t *out, err_t *e);

    /* Generic statements, for modules whose SQL reads the same in both dialects (accounts, audit):
     * `sql` uses $1..$n placeholders (SQLite reads them as ?1..?n), values are text (NULL for SQL
     * NULL) and so are the cells read back. ERR_CONFLICT on a unique violation, with a generic
     * message the caller rewords. Outside a transaction each statement commits on its own. */
    bool (*query)(store_conn_t *c, const char *sql, int n, const char *const *vals, arena_t *a, store_rows_t *out,
                  err_t *e);
    bool (*begin)(store_conn_t *c, err_t *e);             /* a write transaction */
    /* A write transaction whose commit need not be durable when it returns (PostgreSQL:
     * synchronous_commit off for it; it is durable once any later durable commit is, as the log is
     * written in order). Only for what a crash of the database server may take back because it is
     * derived again: a job's lease and heartbeat, its progress, the relay's published marks. NULL:
     * begin is used. */
    bool (*begin_lazy)(store_conn_t *c, err_t *e);
    bool (*end)(store_conn_t *c, bool commit, err_t *e); /* commit (when `commit`) or roll back */

    /* Cross-process wake-ups (PostgreSQL LISTEN/NOTIFY; NULL on SQLite, whose processes poll).
     * notify queues a notification on `channel` inside the caller's transaction, delivered when
     * it commits; listen starts a thread with a connection of its own that calls fn(arg) for every
     * notification, and once after each reconnect (notifications may have been missed). */
    bool (*notify)(store_conn_t *c, const char *channel, err_t *e);
    struct store_listener *(*listen)(store_t *s, const char *channel, void (*fn)(void *arg), void *arg, err_t *e);
    void (*unlisten)(struct store_listener *l);
} store_ops_t;

typedef struct txgroup txgroup_t;

struct store {
    const store_ops_t *ops;
    txgroup_t *group; /* store_tx_group's queue (txgroup.c); made and freed by the backend */
};

struct store_conn {
    store_t *store;
    /* Set by the caller before a property write (create, update, delete): the backend writes it in
     * the same transaction, so the change and its audit entry commit together. Cleared on release. */
    const store_audit_t *audit;
    const store_event_t *event; /* likewise: an outbox event to commit with the change */
};

/* Writes c->audit and c->event (those set) with the generic query; the backends call it inside
 * their write transactions, just before they commit. */
bool store_tx_extras_write(store_conn_t *c, err_t *e);
/* Writes one outbox event in the caller's transaction (and NOTIFYs the relays on PostgreSQL). */
bool store_event_write(store_conn_t *c, const store_event_t *ev, err_t *e);
/* The same for evs[0..n), in that order, with multi-row statements. */
bool store_events_write(store_conn_t *c, const store_event_t *evs, int n, err_t *e);

/* Multi-row statements. A batch of n rows is written STORE_BATCH_MAX or fewer at a time, in
 * chunks of store_batch_rows(rows left): powers of two, so that a statement kind has few distinct
 * texts (SQLite keeps prepared statements by their text). store_sql_rows appends `rows` copies
 * of `tmpl`, comma separated, its '?'s numbered $first, $first+1, ... */
#define STORE_BATCH_MAX 64
int store_batch_rows(int left);
void store_sql_rows(buf_t *sql, const char *tmpl, int rows, int first);

/* Ends the transaction begun on `c`: commits when `ok` (false with `e` set when the commit fails),
 * otherwise rolls back and returns false, keeping in `e` the error that made `ok` false. */
bool store_finish(store_conn_t *c, bool ok, err_t *e);

/* Shorthands for the generic statements: run one, bind a number, read a cell as a number (0 for
 * SQL NULL). */
static inline bool store_query(store_conn_t *c, const char *sql, int n, const char *const *vals, arena_t *a,
                               store_rows_t *out, err_t *e)
{
    return c->store->ops->query(c, sql, n, vals, a, out, e);
}
static inline bool store_begin(store_conn_t *c, bool lazy, err_t *e)
{
    return lazy && c->store->ops->begin_lazy ? c->store->ops->begin_lazy(c, e) : c->store->ops->begin(c, e);
}
const char *store_num(arena_t *a, int64_t v);
int64_t store_cell_i64(const store_rows_t *r, int row, int col);

/* Group commit (txgroup.c): runs fn(c, arg, e) in a write transaction shared with the calls of
 * other threads that arrive meanwhile, committed once for all. fn may run on another caller's
 * thread and must touch nothing but the database (through c) and its own arg. Each caller gets
 * the outcome it would have had alone: when a call fails the group is rolled back and every call
 * runs again by itself. `held`: a connection the caller holds, used if it leads (a leader that
 * waited for the pool while its members hold connections could wait for ever). */
typedef bool (*store_tx_fn)(store_conn_t *c, void *arg, err_t *e);
bool store_tx_group(store_t *s, store_conn_t *held, store_tx_fn fn, void *arg, err_t *e);
txgroup_t *txgroup_new(void);
void txgroup_free(txgroup_t *g);

/* Opens the backend that cfg->database_url names. */
store_t *store_open(const config_t *cfg, err_t *e);
store_t *store_sqlite_open(const char *path, int pool_size, err_t *e);
/* `url` is a libpq connection URI (postgres://user@host:port/db?...) */
store_t *store_postgres_open(const char *url, int pool_size, err_t *e);

#endif
