/* account: see account.h. Every statement goes through store->ops->query with $n placeholders and
 * text values; a multi-statement change runs between begin and end so it commits whole. */
#include "account.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"

#define USER_COLUMNS "id, email, full_name, password_hash, role, status, created_at, updated_at"

static unsigned long long pw_ops = 2;
static size_t pw_mem = 64u * 1024 * 1024;
static char dummy_hash[crypto_pwhash_STRBYTES]; /* verified against for unknown emails */

const char *role_name(role_t r) { return r == ROLE_ADMIN ? "admin" : r == ROLE_AGENT ? "agent" : "buyer"; }

role_t role_parse(const char *s)
{
    if (!s)
        return 0;
    if (strcmp(s, "buyer") == 0)
        return ROLE_BUYER;
    if (strcmp(s, "agent") == 0)
        return ROLE_AGENT;
    if (strcmp(s, "admin") == 0)
        return ROLE_ADMIN;
    return 0;
}

bool account_setup(int argon2_ops, int argon2_mem_kb)
{
    if (sodium_init() < 0)
        return false;
    pw_ops = (unsigned long long)argon2_ops;
    pw_mem = (size_t)argon2_mem_kb * 1024;
    unsigned char raw[16];
    char random_pw[33];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(random_pw, sizeof random_pw, raw, sizeof raw);
    return crypto_pwhash_str(dummy_hash, random_pw, strlen(random_pw), pw_ops, pw_mem) == 0;
}

/* Validation ------------------------------------------------------------------------------------ */

static bool plain_text(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

bool account_check_email(const char *email, const char **lower, arena_t *a, err_t *e)
{
    size_t n = email ? strlen(email) : 0;
    const char *at = email ? strchr(email, '@') : NULL;
    if (n < 3 || n > 254 || !at || at == email || !at[1] || strchr(at + 1, '@') || strchr(email, ' ') ||
        !plain_text(email) || !utf8_valid(email, n)) {
        err_field(e, "email", "must be an email address (name@domain, at most 254 bytes)");
        return false;
    }
    char *l = arena_strndup(a, email, n);
    for (char *p = l; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    *lower = l;
    return true;
}

bool account_check_password(const char *password, err_t *e)
{
    size_t n = password ? strlen(password) : 0;
    if (n < 8 || n > 128 || !utf8_valid(password, n)) {
        err_field(e, "password", "must be 8 to 128 bytes of UTF-8");
        return false;
    }
    return true;
}

bool account_check_name(const char *name, err_t *e)
{
    size_t n = strlen(name);
    if (n < 1 || n > 200 || !plain_text(name) || !utf8_valid(name, n)) {
        err_field(e, "full_name", "must be 1 to 200 bytes, without control characters");
        return false;
    }
    return true;
}

/* A string member: NULL when absent (*given false); a detail when present but not a string (null
 * included: no field may be set to null). */
static const char *member_str(json_t *body, const char *name, bool *given, err_t *e)
{
    json_t *v = json_object_get(body, name);
    *given = v != NULL;
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        err_field(e, name, "must be a string");
        return NULL;
    }
    return json_string_value(v);
}

static bool body_object(json_t *body, err_t *e)
{
    if (!json_is_object(body))
        return err_set(e, ERR_BAD_REQUEST, "the body must be a JSON object");
    return true;
}

bool account_read_register(json_t *body, user_input_t *in, arena_t *a, err_t *e)
{
    memset(in, 0, sizeof *in);
    in->active = 1;
    in->role = ROLE_BUYER;
    if (!body_object(body, e))
        return false;
    bool has_email, has_pw, has_name;
    const char *email = member_str(body, "email", &has_email, e), *pw = member_str(body, "password", &has_pw, e),
               *name = member_str(body, "full_name", &has_name, e);
    if (!has_email)
        err_field(e, "email", "is required");
    else if (email)
        account_check_email(email, &in->email, a, e);
    if (!has_pw)
        err_field(e, "password", "is required");
    else if (pw && account_check_password(pw, e))
        in->password = arena_strdup(a, pw);
    if (!has_name)
        err_field(e, "full_name", "is required");
    else if (name && account_check_name(name, e))
        in->full_name = arena_strdup(a, name);
    return e->code == ERR_NONE;
}

bool account_read_patch(json_t *body, user_input_t *in, arena_t *a, err_t *e)
{
    memset(in, 0, sizeof *in);
    in->active = -1;
    if (!body_object(body, e))
        return false;
    bool given;
    const char *role = member_str(body, "role", &given, e), *status = member_str(body, "status", &given, e),
               *name = member_str(body, "full_name", &given, e);
    if (role && !(in->role = role_parse(role)))
        err_field(e, "role", "must be one of buyer, agent, admin");
    if (status) {
        if (strcmp(status, "active") == 0)
            in->active = 1;
        else if (strcmp(status, "disabled") == 0)
            in->active = 0;
        else
            err_field(e, "status", "must be active or disabled");
    }
    if (name && account_check_name(name, e))
        in->full_name = arena_strdup(a, name);
    return e->code == ERR_NONE;
}

void user_write_json(jw_t *w, const user_t *u)
{
    jw_obj_begin(w);
    jw_kint(w, "id", u->id);
    jw_kstr(w, "email", u->email);
    jw_kstr(w, "full_name", u->full_name);
    jw_kstr(w, "role", role_name(u->role));
    jw_kstr(w, "status", u->active ? "active" : "disabled");
    jw_key(w, "created_at");
    jw_time(w, u->created_at);
    jw_key(w, "updated_at");
    jw_time(w, u->updated_at);
    jw_obj_end(w);
}

/* Statements ------------------------------------------------------------------------------------ */



static void user_read(const store_rows_t *r, int row, user_t *u)
{
    u->id = store_cell_i64(r, row, 0);
    u->email = store_cell(r, row, 1);
    u->full_name = store_cell(r, row, 2);
    u->password_hash = store_cell(r, row, 3);
    u->role = role_parse(store_cell(r, row, 4));
    const char *st = store_cell(r, row, 5);
    u->active = st && strcmp(st, "active") == 0;
    u->created_at = store_cell_i64(r, row, 6);
    u->updated_at = store_cell_i64(r, row, 7);
}


bool account_system_id(store_t *s, int64_t *id, err_t *e)
{
    store_conn_t *c = s->ops->acquire(s, 5000, e);
    if (!c)
        return false;
    arena_t a;
    arena_init(&a);
    store_rows_t r;
    bool ok = store_query(c, "SELECT id FROM users WHERE email = 'system@hearth.local'", 0, NULL, &a, &r, e);
    if (ok && r.nrows != 1)
        ok = err_set(e, ERR_INTERNAL, "the system account is missing (migrations not applied?)");
    if (ok)
        *id = store_cell_i64(&r, 0, 0);
    arena_free(&a);
    s->ops->release(s, c);
    return ok;
}

bool account_audit(store_conn_t *c, const store_audit_t *audit, err_t *e)
{
    const store_audit_t *saved = c->audit;
    const store_event_t *saved_event = c->event;
    c->audit = audit;
    c->event = NULL;
    bool ok = store_tx_extras_write(c, e);
    c->audit = saved;
    c->event = saved_event;
    return ok;
}

bool account_get(store_conn_t *c, int64_t id, arena_t *a, user_t *out, err_t *e)
{
    const char *v[] = {store_num(a, id)};
    store_rows_t r;
    if (!store_query(c, "SELECT " USER_COLUMNS " FROM users WHERE id = CAST($1 AS BIGINT)", 1, v, a, &r, e))
        return false;
    if (r.nrows == 0)
        return err_set(e, ERR_NOT_FOUND, "no user with id %lld", (long long)id);
    user_read(&r, 0, out);
    return true;
}

bool account_create(store_t *s, const user_input_t *in, const store_audit_t *audit, arena_t *a, user_t *out,
                    err_t *e)
{
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, in->password, strlen(in->password), pw_ops, pw_mem) != 0)
        return err_set(e, ERR_UNAVAILABLE, "out of memory for password hashing, try again");
    int64_t now = time_now_us();
    const char *v[] = {in->email, hash, in->full_name, role_name(in->role ? in->role : ROLE_BUYER),
                       in->active == 0 ? "disabled" : "active", store_num(a, now)};
    store_conn_t *c = s->ops->acquire(s, 5000, e);
    if (!c) {
        sodium_memzero(hash, sizeof hash);
        return false;
    }
    if (!c->store->ops->begin(c, e)) {
        s->ops->release(s, c);
        sodium_memzero(hash, sizeof hash);
        return false;
    }
    store_rows_t r;
    bool ok = store_query(c,
                "INSERT INTO users (email, password_hash, full_name, role, status, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, CAST($6 AS BIGINT), CAST($6 AS BIGINT)) RETURNING " USER_COLUMNS,
                6, v, a, &r, e);
    if (!ok && e->code == ERR_CONFLICT)
        err_set(e, ERR_CONFLICT, "email is already registered");
    if (ok) {
        user_read(&r, 0, out);
        if (audit) {
            store_audit_t entry = *audit;
            entry.resource_type = "user";
            entry.resource_id = store_num(a, out->id);
            ok = account_audit(c, &entry, e);
        }
    }
    sodium_memzero(hash, sizeof hash);
    ok = store_finish(c, ok, e);
    s->ops->release(s, c);
    return ok;
}

bool account_list(store_conn_t *c, role_t role, int active, int64_t after_id, int limit, arena_t *a, user_page_t *out,
                  err_t *e)
{
    const char *v[] = {role ? role_name(role) : NULL, active < 0 ? NULL : active ? "active" : "disabled",
                       store_num(a, after_id), store_num(a, limit + 1)};
    store_rows_t r;
    if (!store_query(c,
           "SELECT " USER_COLUMNS " FROM users WHERE (CAST($1 AS TEXT) IS NULL OR role = $1)"
           " AND (CAST($2 AS TEXT) IS NULL OR status = $2) AND id > CAST($3 AS BIGINT)"
           " ORDER BY id LIMIT CAST($4 AS BIGINT)",
           4, v, a, &r, e))
        return false;
    out->more = r.nrows > limit;
    out->n = out->more ? limit : r.nrows;
    out->items = arena_zalloc(a, (size_t)(out->n + 1) * sizeof *out->items);
    for (int i = 0; i < out->n; i++)
        user_read(&r, i, &out->items[i]);
    return true;
}

static bool revoke_sessions_of(store_conn_t *c, int64_t user_id, const char *why, arena_t *a, err_t *e)
{
    const char *v[] = {store_num(a, user_id), store_num(a, time_now_us()), why};
    store_rows_t r;
    return store_query(c,
             "UPDATE sessions SET revoked_at = CAST($2 AS BIGINT), revoked_why = $3"
             " WHERE user_id = CAST($1 AS BIGINT) AND revoked_at IS NULL",
             3, v, a, &r, e);
}

bool account_update(store_conn_t *c, int64_t id, const user_input_t *in, const store_audit_t *audit, arena_t *a,
                    user_t *out, err_t *e)
{
    if (!c->store->ops->begin(c, e))
        return false;
    const char *v[] = {store_num(a, id), in->role ? role_name(in->role) : NULL,
                       in->active < 0 ? NULL : in->active ? "active" : "disabled", in->full_name,
                       store_num(a, time_now_us())};
    store_rows_t r;
    bool ok = store_query(c,
                "UPDATE users SET role = COALESCE($2, role), status = COALESCE($3, status),"
                " full_name = COALESCE($4, full_name), updated_at = CAST($5 AS BIGINT)"
                " WHERE id = CAST($1 AS BIGINT) AND email <> 'system@hearth.local' RETURNING " USER_COLUMNS,
                5, v, a, &r, e);
    if (ok && r.nrows == 0) {
        user_t exists;
        err_t ignore;
        err_clear(&ignore);
        if (account_get(c, id, a, &exists, &ignore))
            ok = err_set(e, ERR_CONFLICT, "the system account (owner of imported listings) cannot be changed");
        else
            ok = err_set(e, ERR_NOT_FOUND, "no user with id %lld", (long long)id);
    }
    if (ok) {
        user_read(&r, 0, out);
        if (in->active == 0)
            ok = revoke_sessions_of(c, id, "disabled", a, e);
    }
    if (ok && audit)
        ok = account_audit(c, audit, e);
    return store_finish(c, ok, e);
}

/* Sessions -------------------------------------------------------------------------------------- */

static bool find_by_email(store_conn_t *c, const char *email, arena_t *a, user_t *out, bool *found, err_t *e)
{
    const char *v[] = {email};
    store_rows_t r;
    if (!store_query(c, "SELECT " USER_COLUMNS " FROM users WHERE email = $1", 1, v, a, &r, e))
        return false;
    *found = r.nrows == 1;
    if (*found)
        user_read(&r, 0, out);
    return true;
}

bool account_login(store_t *s, const char *email, const char *password, const char *refresh_hash,
                   int64_t session_ttl_s, store_audit_t *audit, arena_t *a, user_t *out, int64_t *session_id,
                   err_t *e)
{
    const char *lower = email;
    err_t ignore;
    err_clear(&ignore);
    bool found = false, plausible = account_check_email(email, &lower, a, &ignore);
    if (plausible) {
        store_conn_t *c = s->ops->acquire(s, 5000, e);
        bool ok = c && find_by_email(c, lower, a, out, &found, e);
        if (c)
            s->ops->release(s, c);
        if (!ok)
            return false;
    }
    /* the same work whatever the reason: a hash is always verified */
    const char *hash = found && out->password_hash && out->password_hash[0] ? out->password_hash : dummy_hash;
    bool match = password && crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
    bool ok = found && hash != dummy_hash && match && out->active;
    audit->resource_type = "user";
    audit->resource_id = found ? store_num(a, out->id) : NULL;
    audit->actor_id = ok ? out->id : 0; /* a failed attempt is nobody's: it names its target only */
    /* the hashing cost changed since this hash was made: make a new one now (before a connection
     * is taken), so that its login time matches everyone else's again */
    char fresh[crypto_pwhash_STRBYTES];
    bool rehash = ok && crypto_pwhash_str_needs_rehash(hash, pw_ops, pw_mem) != 0 &&
                  crypto_pwhash_str(fresh, password, strlen(password), pw_ops, pw_mem) == 0;
    store_conn_t *c = s->ops->acquire(s, 5000, e);
    if (!c)
        return false;
    if (!ok) {
        audit->action = "auth.login_failed";
        jw_t w;
        buf_t d;
        buf_init(&d);
        jw_init(&w, &d);
        jw_obj_begin(&w);
        jw_key(&w, "email"); /* not what was typed when it is no email: it may be a password */
        if (plausible)
            jw_str(&w, lower);
        else
            jw_null(&w);
        jw_kstr(&w, "reason", !found ? "unknown email" : !match ? "wrong password" : "account disabled");
        jw_obj_end(&w);
        audit->detail = arena_strndup(a, d.data, d.len);
        buf_free(&d);
        if (!account_audit(c, audit, &ignore))
            log_error("audit: a failed login could not be recorded: %s", ignore.message);
        s->ops->release(s, c);
        return err_set(e, ERR_UNAUTHORIZED, "invalid email or password");
    }
    audit->action = "auth.login";
    if (rehash) {
        const char *v[] = {store_num(a, out->id), fresh};
        store_rows_t r;
        err_t quiet;
        err_clear(&quiet);
        store_query(c, "UPDATE users SET password_hash = $2 WHERE id = CAST($1 AS BIGINT)", 2, v, a, &r, &quiet);
        sodium_memzero(fresh, sizeof fresh);
    }
    int64_t now = time_now_us();
    const char *v[] = {store_num(a, out->id), store_num(a, now), store_num(a, now + session_ttl_s * 1000000)};
    if (!c->store->ops->begin(c, e)) {
        s->ops->release(s, c);
        return false;
    }
    store_rows_t r;
    bool done = store_query(c,
                  "INSERT INTO sessions (user_id, created_at, expires_at) VALUES (CAST($1 AS BIGINT),"
                  " CAST($2 AS BIGINT), CAST($3 AS BIGINT)) RETURNING id",
                  3, v, a, &r, e);
    if (done) {
        *session_id = store_cell_i64(&r, 0, 0);
        const char *t[] = {store_num(a, *session_id), refresh_hash, store_num(a, now)};
        done = store_query(c,
                 "INSERT INTO refresh_tokens (session_id, token_hash, created_at)"
                 " VALUES (CAST($1 AS BIGINT), $2, CAST($3 AS BIGINT))",
                 3, t, a, &r, e) &&
               account_audit(c, audit, e);
    }
    done = store_finish(c, done, e);
    s->ops->release(s, c);
    return done;
}

/* The token's row with its session and user: token id, used_at, session id, revoked_at,
 * expires_at, then the user's columns. */
static bool find_refresh(store_conn_t *c, const char *hash, arena_t *a, store_rows_t *r, err_t *e)
{
    const char *v[] = {hash};
    return store_query(c,
             "SELECT t.id, t.used_at, s.id, s.revoked_at, s.expires_at, u.id, u.email, u.full_name, u.password_hash,"
             " u.role, u.status, u.created_at, u.updated_at FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id"
             " JOIN users u ON u.id = s.user_id WHERE t.token_hash = $1",
             1, v, a, r, e);
}

static void user_read_at(const store_rows_t *r, int row, int col0, user_t *u)
{
    store_rows_t shifted = *r;
    shifted.cells = r->cells + col0;
    user_read(&shifted, row, u);
}

static bool revoke_session(store_conn_t *c, int64_t session_id, const char *why, arena_t *a, err_t *e)
{
    const char *v[] = {store_num(a, session_id), store_num(a, time_now_us()), why};
    store_rows_t r;
    return store_query(c,
             "UPDATE sessions SET revoked_at = CAST($2 AS BIGINT), revoked_why = $3"
             " WHERE id = CAST($1 AS BIGINT) AND revoked_at IS NULL",
             3, v, a, &r, e);
}

bool account_refresh(store_conn_t *c, const char *old_hash, const char *new_hash, store_audit_t *audit, arena_t *a,
                     user_t *out, int64_t *session_id, err_t *e)
{
    if (!c->store->ops->begin(c, e))
        return false;
    store_rows_t r;
    if (!find_refresh(c, old_hash, a, &r, e))
        return store_finish(c, false, e);
    if (r.nrows == 0) {
        store_finish(c, false, e);
        return err_set(e, ERR_UNAUTHORIZED, "the refresh token is not valid");
    }
    int64_t token_id = store_cell_i64(&r, 0, 0), now = time_now_us();
    *session_id = store_cell_i64(&r, 0, 2);
    user_read_at(&r, 0, 5, out);
    audit->actor_id = out->id;
    audit->resource_type = "session";
    audit->resource_id = store_num(a, *session_id);
    bool used = store_cell(&r, 0, 1) != NULL, revoked = store_cell(&r, 0, 3) != NULL;
    bool expired = store_cell_i64(&r, 0, 4) <= now;
    if (!used) { /* claim it; a concurrent refresh with the same token loses here and counts as reuse */
        const char *v[] = {store_num(a, token_id), store_num(a, now)};
        store_rows_t u;
        if (!store_query(c, "UPDATE refresh_tokens SET used_at = CAST($2 AS BIGINT) WHERE id = CAST($1 AS BIGINT) AND used_at IS NULL",
               2, v, a, &u, e))
            return store_finish(c, false, e);
        used = u.changes != 1;
    }
    if (used) {
        audit->action = "auth.refresh_reused";
        audit->actor_id = 0; /* whoever presented it, not (necessarily) the user */
        bool ok = (revoked || revoke_session(c, *session_id, "refresh token reused", a, e)) && account_audit(c, audit, e);
        if (!store_finish(c, ok, e))
            return false;
        return err_set(e, ERR_UNAUTHORIZED, "the refresh token is not valid");
    }
    if (revoked || expired || !out->active) {
        store_finish(c, false, e);
        return err_set(e, ERR_UNAUTHORIZED, "the refresh token is not valid");
    }
    audit->action = "auth.refresh";
    const char *v[] = {store_num(a, *session_id), new_hash, store_num(a, now)};
    store_rows_t ins;
    bool ok = store_query(c,
                "INSERT INTO refresh_tokens (session_id, token_hash, created_at)"
                " VALUES (CAST($1 AS BIGINT), $2, CAST($3 AS BIGINT))",
                3, v, a, &ins, e) &&
              account_audit(c, audit, e);
    return store_finish(c, ok, e);
}

bool account_logout(store_conn_t *c, const char *hash, store_audit_t *audit, arena_t *a, err_t *e)
{
    if (!c->store->ops->begin(c, e))
        return false;
    store_rows_t r;
    if (!find_refresh(c, hash, a, &r, e))
        return store_finish(c, false, e);
    if (r.nrows == 0)
        return store_finish(c, true, e);
    int64_t session_id = store_cell_i64(&r, 0, 2);
    audit->action = "auth.logout";
    audit->actor_id = store_cell_i64(&r, 0, 5);
    audit->resource_type = "session";
    audit->resource_id = store_num(a, session_id);
    bool ok = revoke_session(c, session_id, "logout", a, e) && account_audit(c, audit, e);
    return store_finish(c, ok, e);
}

bool account_identify(store_conn_t *c, int64_t user_id, int64_t session_id, arena_t *a, user_t *out, err_t *e)
{
    const char *v[] = {store_num(a, user_id), store_num(a, session_id), store_num(a, time_now_us())};
    store_rows_t r;
    if (!store_query(c,
           "SELECT u.id, u.email, u.full_name, u.password_hash, u.role, u.status, u.created_at, u.updated_at"
           " FROM users u JOIN sessions s ON s.user_id = u.id WHERE u.id = CAST($1 AS BIGINT)"
           " AND s.id = CAST($2 AS BIGINT) AND s.revoked_at IS NULL AND s.expires_at > CAST($3 AS BIGINT)",
           3, v, a, &r, e))
        return false;
    if (r.nrows == 0)
        return err_set(e, ERR_UNAUTHORIZED, "the access token is not valid (signed out or expired)");
    user_read(&r, 0, out);
    if (!out->active)
        return err_set(e, ERR_UNAUTHORIZED, "the account is disabled");
    return true;
}

bool account_audit_list(store_conn_t *c, const audit_query_t *aq, arena_t *a, jw_t *w, int64_t *last_id, bool *more,
                        err_t *e)
{
    const char *v[] = {aq->actor_id ? store_num(a, aq->actor_id) : NULL,
                       aq->action,
                       aq->resource_type,
                       aq->resource_id,
                       aq->since_us ? store_num(a, aq->since_us) : NULL,
                       aq->until_us ? store_num(a, aq->until_us) : NULL,
                       aq->before_id ? store_num(a, aq->before_id) : NULL,
                       store_num(a, aq->limit + 1)};
    store_rows_t r;
    if (!store_query(c,
           "SELECT id, at, actor_id, action, resource_type, resource_id, ip, request_id, detail FROM audit_log"
           " WHERE (CAST($1 AS BIGINT) IS NULL OR actor_id = CAST($1 AS BIGINT))"
           " AND (CAST($2 AS TEXT) IS NULL OR action = $2) AND (CAST($3 AS TEXT) IS NULL OR resource_type = $3)"
           " AND (CAST($4 AS TEXT) IS NULL OR resource_id = $4)"
           " AND (CAST($5 AS BIGINT) IS NULL OR at >= CAST($5 AS BIGINT))"
           " AND (CAST($6 AS BIGINT) IS NULL OR at < CAST($6 AS BIGINT))"
           " AND (CAST($7 AS BIGINT) IS NULL OR id < CAST($7 AS BIGINT)) ORDER BY id DESC LIMIT CAST($8 AS BIGINT)",
           8, v, a, &r, e))
        return false;
    *more = r.nrows > aq->limit;
    int n = *more ? aq->limit : r.nrows;
    jw_arr_begin(w);
    for (int i = 0; i < n; i++) {
        jw_obj_begin(w);
        jw_kint(w, "id", store_cell_i64(&r, i, 0));
        jw_key(w, "at");
        jw_time(w, store_cell_i64(&r, i, 1));
        jw_key(w, "actor_id");
        if (store_cell(&r, i, 2))
            jw_int(w, store_cell_i64(&r, i, 2));
        else
            jw_null(w);
        jw_kstr(w, "action", store_cell(&r, i, 3));
        jw_kstr(w, "resource_type", store_cell(&r, i, 4));
        jw_kstr(w, "resource_id", store_cell(&r, i, 5));
        jw_kstr(w, "ip", store_cell(&r, i, 6));
        jw_kstr(w, "request_id", store_cell(&r, i, 7));
        jw_key(w, "detail");
        const char *d = store_cell(&r, i, 8);
        if (d) /* written by hearth as a JSON object */
            jw_raw(w, d, strlen(d));
        else
            jw_null(w);
        jw_obj_end(w);
        *last_id = store_cell_i64(&r, i, 0);
    }
    jw_arr_end(w);
    return true;
}
