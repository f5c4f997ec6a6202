/* account: users, their sessions and refresh tokens, and the audit log, on the store's generic
 * statements (the SQL reads the same on SQLite and PostgreSQL). Passwords are argon2id through
 * libsodium; refresh tokens are stored as SHA-256 hashes only.
 *
 * A session is one login. Its refresh tokens form a family: each refresh marks the presented token
 * used and issues the next one. Presenting a used token again means it was stolen (or replayed), so
 * the whole session is revoked; so does logout. Access tokens name their session, and every
 * authenticated request checks that the session is live and the user active (account_identify). */
#ifndef HEARTH_ACCOUNT_H
#define HEARTH_ACCOUNT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/error.h"
#include "../base/jw.h"
#include "../infra/store.h"

typedef enum { ROLE_BUYER = 1, ROLE_AGENT = 2, ROLE_ADMIN = 4 } role_t;
#define ROLE_ANY (ROLE_BUYER | ROLE_AGENT | ROLE_ADMIN)

typedef struct user {
    int64_t id;
    const char *email, *full_name, *password_hash;
    role_t role;
    bool active;
    int64_t created_at, updated_at;
} user_t;

typedef struct user_page {
    user_t *items;
    int n;
    bool more;
} user_page_t;

/* The fields a client may set. */
typedef struct user_input {
    const char *email, *password, *full_name;
    role_t role;  /* 0: not given */
    int active;   /* -1: not given */
} user_input_t;

const char *role_name(role_t r);
role_t role_parse(const char *s); /* 0 when unknown */

/* Password hashing cost (argon2id opslimit and memlimit in KiB); set once at start-up. False when
 * hashing does not work at this cost (out of memory): then logins could not take equal time. */
bool account_setup(int argon2_ops, int argon2_mem_kb);

/* Reads a register (need = email, password, full_name) or user PATCH body (role, status,
 * full_name); per-field problems as 422 details in `e`, an unreadable body as 400. The email comes
 * back lower-cased, in `a`. */
bool account_read_register(json_t *body, user_input_t *in, arena_t *a, err_t *e);
bool account_read_patch(json_t *body, user_input_t *in, arena_t *a, err_t *e);
/* Checks an email (and lower-cases it into `a`), for the command line too. */
bool account_check_email(const char *email, const char **lower, arena_t *a, err_t *e);
bool account_check_password(const char *password, err_t *e);
bool account_check_name(const char *full_name, err_t *e);

void user_write_json(jw_t *w, const user_t *u);

/* Creates a user with `in`'s email, password (hashed here, before a connection is taken), full
 * name and role (active). ERR_CONFLICT when the email is taken. The audit entry (may be NULL)
 * commits with it; its resource is the new user. */
bool account_create(store_t *s, const user_input_t *in, const store_audit_t *audit, arena_t *a, user_t *out,
                    err_t *e);
bool account_get(store_conn_t *c, int64_t id, arena_t *a, user_t *out, err_t *e);
bool account_list(store_conn_t *c, role_t role, int active, int64_t after_id, int limit, arena_t *a, user_page_t *out,
                  err_t *e);
/* Applies `in`'s role, status and full name; disabling revokes every session of the user. */
bool account_update(store_conn_t *c, int64_t id, const user_input_t *in, const store_audit_t *audit, arena_t *a,
                    user_t *out, err_t *e);

/* Login: the user with this email when the password matches and the account is active, else
 * ERR_UNAUTHORIZED with one message for every reason, after the same work (a hash is verified even
 * for an unknown email). On success a session is opened with `refresh_hash` as its first token.
 * No connection is held while the password is verified. */
bool account_login(store_t *s, const char *email, const char *password, const char *refresh_hash,
                   int64_t session_ttl_s, store_audit_t *audit, arena_t *a, user_t *out, int64_t *session_id,
                   err_t *e);
/* Rotates the refresh token `old_hash` to `new_hash`; reuse of a used token revokes its session. */
bool account_refresh(store_conn_t *c, const char *old_hash, const char *new_hash, store_audit_t *audit, arena_t *a,
                     user_t *out, int64_t *session_id, err_t *e);
/* Revokes the session of this refresh token (nothing when unknown). */
bool account_logout(store_conn_t *c, const char *hash, store_audit_t *audit, arena_t *a, err_t *e);
/* The user of an access token's (user, session), when the user is active and the session live;
 * ERR_UNAUTHORIZED otherwise. Its role is the stored one, not the token's. */
bool account_identify(store_conn_t *c, int64_t user_id, int64_t session_id, arena_t *a, user_t *out, err_t *e);

/* The id of the system account that owns imported rows (made by a migration). */
bool account_system_id(store_t *s, int64_t *id, err_t *e);

/* An audit entry on its own (a failed login, an update refused); see store_tx_extras_write. */
bool account_audit(store_conn_t *c, const store_audit_t *audit, err_t *e);

typedef struct audit_query {
    int64_t actor_id; /* 0: any */
    const char *action, *resource_type, *resource_id;
    int64_t since_us, until_us; /* 0: open */
    int64_t before_id;          /* keyset cursor: entries with smaller ids; 0: from the newest */
    int limit;
} audit_query_t;

/* Newest first: writes the entries as a JSON array; *last_id is the last one's id and *more says
 * whether older ones follow. */
bool account_audit_list(store_conn_t *c, const audit_query_t *q, arena_t *a, jw_t *w, int64_t *last_id, bool *more,
                        err_t *e);

#endif
