/* auth: accounts over HTTP — register, login, refresh, logout, /api/me, user administration and
 * the audit log — and the two checks every request passes: auth_precheck on the loop (a bearer
 * token, when sent, is well formed, signed by us and within its times) and auth_actor on the worker
 * (its session is live, its user active, and the user's role — read from the database, never
 * trusted from the token — may call the route).
 *
 * Login is limited per account and per client address through the rate limiter (Redis when
 * configured, so instances share the budgets), before any password is hashed. */
#include <stdio.h>
#include <string.h>

#include "../base/util.h"
#include "../domain/token.h"
#include "../infra/ratelimit.h"
#include "../infra/redis.h"
#include "../net/ratelimit_mw.h"
#include "app.h"

static ratelimit_t *login_limiter;

static bool address_allowed(http_request_t *req, http_response_t *res);

bool auth_setup(const config_t *cfg, redis_pool_t *redis, err_t *e)
{
    if (!token_setup(cfg->jwt_secret, cfg->data_dir, e))
        return false;
    if (!account_setup(cfg->argon2_ops, cfg->argon2_mem_kb))
        return err_set(e, ERR_INTERNAL, "password hashing does not work at HEARTH_ARGON2_MEM_KB=%d (out of memory?)",
                       cfg->argon2_mem_kb);
    if (redis) {
        char space[17];
        redis_keyspace(cfg->database_url, space);
        login_limiter = ratelimit_redis_open(redis, cfg->rate_limit_redis_down_deny, space);
    } else {
        login_limiter = ratelimit_memory_open(RATELIMIT_MAX_KEYS);
    }
    if (!login_limiter)
        return err_set(e, ERR_INTERNAL, "out of memory for the login limiter");
    return true;
}

void auth_shutdown(void)
{
    if (login_limiter)
        login_limiter->ops->close(login_limiter);
    login_limiter = NULL;
}

/* Writes `e` as the answer; a 401 also says how to authenticate (RFC 6750). */
static void auth_error(const http_request_t *req, http_response_t *res, const err_t *e, bool token_sent)
{
    http_res_error(req, res, e);
    if (e->code != ERR_UNAUTHORIZED)
        return;
    if (token_sent)
        http_res_header(res, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    else
        http_res_header(res, "WWW-Authenticate", "Bearer");
}

bool auth_precheck(http_request_t *req, http_response_t *res)
{
    const char *h = http_header(req, "Authorization");
    if (!h)
        return true;
    err_t e;
    err_clear(&e);
    size_t n = strlen(h);
    if (n < 7 || !str_nieq(h, 7, "Bearer ") || n - 7 > TOKEN_MAX_LEN) {
        err_set(&e, ERR_UNAUTHORIZED, "the Authorization header must be \"Bearer <access token>\"");
        auth_error(req, res, &e, true);
        return false;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    token_claims_t claims;
    if (!token_verify(tok, strlen(tok), time_now_us() / 1000000, req->arena, &claims, &e)) {
        auth_error(req, res, &e, true);
        return false;
    }
    req->auth_present = true;
    req->auth_user_id = claims.user_id;
    req->auth_session_id = claims.session_id;
    return true;
}

bool auth_session_check(http_request_t *req, http_response_t *res)
{
    store_conn_t *c = app_store(req, res);
    if (!c)
        return false;
    actor_t *actor = arena_alloc(req->arena, sizeof *actor);
    bool ok = auth_actor(req, res, c, 0, actor);
    app_store_done(c);
    if (ok)
        req->auth_actor = actor;
    return ok;
}

bool auth_query_token(http_request_t *req, http_response_t *res, const http_query_t *q)
{
    const char *token = http_query_get(q, "access_token");
    if (!token || !*token || req->auth_present)
        return true;
    err_t e;
    err_clear(&e);
    token_claims_t claims;
    if (!token_verify(token, strlen(token), time_now_us() / 1000000, req->arena, &claims, &e)) {
        auth_error(req, res, &e, true);
        return false;
    }
    req->auth_present = true;
    req->auth_user_id = claims.user_id;
    req->auth_session_id = claims.session_id;
    return true;
}

bool auth_actor(http_request_t *req, http_response_t *res, store_conn_t *c, int roles, actor_t *out)
{
    memset(out, 0, sizeof *out);
    err_t e;
    err_clear(&e);
    if (req->auth_actor) {
        *out = *(const actor_t *)req->auth_actor; /* checked on this request already */
    } else if (req->auth_present) {
        if (!account_identify(c, req->auth_user_id, req->auth_session_id, req->arena, &out->user, &e)) {
            auth_error(req, res, &e, true);
            return false;
        }
        out->known = true;
        out->session_id = req->auth_session_id;
    }
    if (!roles)
        return true;
    if (!out->known) {
        err_set(&e, ERR_UNAUTHORIZED, "this route needs an access token (Authorization: Bearer ...)");
        auth_error(req, res, &e, false);
        return false;
    }
    if (!(out->user.role & roles)) {
        http_res_errorf(req, res, ERR_FORBIDDEN, "a%s %s may not do this", out->user.role == ROLE_ADMIN || out->user.role == ROLE_AGENT ? "n" : "",
                        role_name(out->user.role));
        return false;
    }
    return true;
}

store_audit_t auth_audit_entry(const http_request_t *req, const actor_t *actor, const char *action,
                               const char *resource_type, const char *resource_id)
{
    return (store_audit_t){
        .actor_id = actor && actor->known ? actor->user.id : 0,
        .action = action,
        .resource_type = resource_type,
        .resource_id = resource_id,
        .ip = req->peer,
        .request_id = req->request_id,
    };
}

/* Handlers -------------------------------------------------------------------------------------- */

static void write_user(http_response_t *res, int status, const user_t *u)
{
    jw_t w;
    http_res_json(res, status, &w);
    user_write_json(&w, u);
}

/* Reads the JSON body and the string members named (all required); false with the answer written. */
static json_t *read_body(http_request_t *req, http_response_t *res, const char **names, const char **values, int n)
{
    err_t e;
    err_clear(&e);
    json_t *body = http_json_body(req, &e);
    if (body && !json_is_object(body))
        err_set(&e, ERR_BAD_REQUEST, "the body must be a JSON object");
    for (int i = 0; body && e.code != ERR_BAD_REQUEST && i < n; i++) {
        json_t *v = json_object_get(body, names[i]);
        values[i] = json_is_string(v) ? json_string_value(v) : NULL;
        if (!v)
            err_field(&e, names[i], "is required");
        else if (!values[i])
            err_field(&e, names[i], "must be a string");
        else if (strlen(values[i]) > 4096)
            err_field(&e, names[i], "is too long");
    }
    if (e.code != ERR_NONE) {
        json_decref(body);
        http_res_error(req, res, &e);
        return NULL;
    }
    return body;
}

void auth_register(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    json_t *body = http_json_body(req, &e);
    user_input_t in;
    if (body)
        account_read_register(body, &in, req->arena, &e);
    json_decref(body);
    if (e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    if (!address_allowed(req, res))
        return; /* every registration costs a password hash: the address budget of logins applies */
    actor_t anonymous = {0};
    store_audit_t audit = auth_audit_entry(req, req->auth_actor ? req->auth_actor : &anonymous, "user.register", "user", NULL);
    user_t u;
    bool ok = account_create(g_app.store, &in, &audit, req->arena, &u, &e);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    write_user(res, 201, &u);
    http_res_header(res, "Location", "/api/users/%lld", (long long)u.id);
}

static void write_tokens(http_request_t *req, http_response_t *res, const user_t *u, int64_t session_id,
                         const char *refresh)
{
    err_t e;
    err_clear(&e);
    int64_t now = time_now_us() / 1000000;
    token_claims_t claims = {.user_id = u->id,
                             .session_id = session_id,
                             .role = role_name(u->role),
                             .issued_at = now,
                             .expires_at = now + g_app.cfg->access_token_ttl_s};
    char *access = token_issue(&claims, req->arena, &e);
    if (!access) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_kstr(&w, "access_token", access);
    jw_kstr(&w, "refresh_token", refresh);
    jw_kstr(&w, "token_type", "bearer");
    jw_kint(&w, "expires_in", g_app.cfg->access_token_ttl_s);
    jw_obj_end(&w);
    http_res_header(res, "Cache-Control", "no-store");
}

/* Takes one login attempt from the budgets of this email and this address (email NULL: the address
 * only); false with a 429. */
static bool login_allowed(http_request_t *req, http_response_t *res, const char *email)
{
    const config_t *cfg = g_app.cfg;
    for (int i = 0; i < cfg->nlogin_rules; i++) {
        const config_rate_rule_t *r = &cfg->login_rules[i];
        bool account = strcmp(r->cls, "account") == 0;
        if (account && !email)
            continue;
        char key[400];
        int n = snprintf(key, sizeof key, "login-%s %.300s", r->cls, account ? email : req->peer);
        if (account) /* one budget per email whatever its case */
            for (char *p = key; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
        ratelimit_rule_t rule = {.limit = r->limit, .period_ms = r->period_ms, .burst = r->burst};
        ratelimit_result_t out;
        if (!login_limiter->ops->take(login_limiter, key, (size_t)(n < (int)sizeof key ? n : (int)sizeof key - 1), &rule,
                                      &out)) {
            int64_t retry = (out.retry_after_ms + 999) / 1000;
            http_res_errorf(req, res, ERR_RATE_LIMITED, "too many login attempts for this %s; retry in %lld s",
                            account ? "account" : "address", (long long)(retry < 1 ? 1 : retry));
            buf_reset(&res->headers);
            http_res_header(res, "Retry-After", "%lld", (long long)(retry < 1 ? 1 : retry));
            return false;
        }
    }
    return true;
}

static bool address_allowed(http_request_t *req, http_response_t *res) { return login_allowed(req, res, NULL); }

void auth_login(http_request_t *req, http_response_t *res)
{
    static const char *names[] = {"email", "password"};
    const char *v[2];
    json_t *body = read_body(req, res, names, v, 2);
    if (!body)
        return;
    if (!login_allowed(req, res, v[0])) {
        json_decref(body);
        return;
    }
    err_t e;
    err_clear(&e);
    char refresh[REFRESH_TOKEN_LEN + 1], hash[REFRESH_HASH_LEN + 1];
    token_refresh_new(refresh, hash);
    store_audit_t audit = auth_audit_entry(req, NULL, "auth.login", "user", NULL);
    user_t u;
    int64_t session_id = 0;
    bool ok = account_login(g_app.store, v[0], v[1], hash, g_app.cfg->refresh_token_ttl_s, &audit, req->arena, &u,
                            &session_id, &e);
    json_decref(body);
    if (!ok) {
        auth_error(req, res, &e, false);
        return;
    }
    write_tokens(req, res, &u, session_id, refresh);
}

void auth_refresh(http_request_t *req, http_response_t *res)
{
    static const char *names[] = {"refresh_token"};
    const char *v[1];
    json_t *body = read_body(req, res, names, v, 1);
    if (!body)
        return;
    char old_hash[REFRESH_HASH_LEN + 1], refresh[REFRESH_TOKEN_LEN + 1], hash[REFRESH_HASH_LEN + 1];
    token_refresh_hash(v[0], old_hash);
    json_decref(body);
    token_refresh_new(refresh, hash);
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    store_audit_t audit = auth_audit_entry(req, NULL, "auth.refresh", "session", NULL);
    user_t u;
    int64_t session_id = 0;
    bool ok = account_refresh(c, old_hash, hash, &audit, req->arena, &u, &session_id, &e);
    app_store_done(c);
    if (!ok) {
        auth_error(req, res, &e, false);
        return;
    }
    write_tokens(req, res, &u, session_id, refresh);
}

void auth_logout(http_request_t *req, http_response_t *res)
{
    static const char *names[] = {"refresh_token"};
    const char *v[1];
    json_t *body = read_body(req, res, names, v, 1);
    if (!body)
        return;
    char hash[REFRESH_HASH_LEN + 1];
    token_refresh_hash(v[0], hash);
    json_decref(body);
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    store_audit_t audit = auth_audit_entry(req, NULL, "auth.logout", "session", NULL);
    bool ok = account_logout(c, hash, &audit, req->arena, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    res->status = 204;
}

void me_get(http_request_t *req, http_response_t *res)
{
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    actor_t actor;
    bool ok = auth_actor(req, res, c, ROLE_ANY, &actor);
    app_store_done(c);
    if (ok)
        write_user(res, 200, &actor.user);
}

store_conn_t *app_store_as(http_request_t *req, http_response_t *res, int roles, actor_t *actor)
{
    store_conn_t *c = app_store(req, res);
    if (c && !auth_actor(req, res, c, roles, actor)) {
        app_store_done(c);
        return NULL;
    }
    return c;
}

static store_conn_t *admin_conn(http_request_t *req, http_response_t *res, actor_t *actor)
{
    return app_store_as(req, res, ROLE_ADMIN, actor);
}

void users_list(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    http_query_t q;
    int limit = 20;
    role_t role = 0;
    int active = -1;
    int64_t after = 0;
    if (http_query_parse(req, &q, &e) && api_read_limit(&q, &limit, &e)) {
        const char *r = http_query_get(&q, "role"), *st = http_query_get(&q, "status"), *cur = http_query_get(&q, "cursor");
        if (r && *r && !(role = role_parse(r)))
            err_field(&e, "role", "must be one of buyer, agent, admin");
        if (st && *st) {
            if (strcmp(st, "active") == 0 || strcmp(st, "disabled") == 0)
                active = strcmp(st, "active") == 0;
            else
                err_field(&e, "status", "must be active or disabled");
        }
        if (cur && *cur && e.code == ERR_NONE)
            api_read_cursor(cur, "users", &after, &e);
    }
    actor_t actor;
    store_conn_t *c = admin_conn(req, res, &actor); /* 401/403 before any 4xx about the query */
    if (!c)
        return;
    if (e.code != ERR_NONE) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    user_page_t page;
    bool ok = account_list(c, role, active, after, limit, req->arena, &page, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0; i < page.n; i++)
        user_write_json(&w, &page.items[i]);
    jw_arr_end(&w);
    api_write_cursor(&w, "users", page.more, page.n ? page.items[page.n - 1].id : 0);
    jw_obj_end(&w);
}

void users_get(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    int64_t id = 0;
    bool id_ok = http_param_id(req, "id", &id, &e);
    actor_t actor;
    store_conn_t *c = admin_conn(req, res, &actor);
    if (!c)
        return;
    user_t u;
    bool ok = id_ok && account_get(c, id, req->arena, &u, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    write_user(res, 200, &u);
}

void users_patch(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    int64_t id = 0;
    actor_t actor;
    store_conn_t *c = admin_conn(req, res, &actor);
    if (!c)
        return;
    user_input_t in;
    json_t *body = NULL;
    if (http_param_id(req, "id", &id, &e) && (body = http_json_body(req, &e)))
        account_read_patch(body, &in, req->arena, &e);
    json_decref(body);
    if (e.code == ERR_NONE && id == actor.user.id && ((in.role && in.role != actor.user.role) || in.active == 0))
        err_set(&e, ERR_CONFLICT, "an admin cannot change their own role or status; ask another admin");
    user_t u;
    bool ok = e.code == ERR_NONE;
    if (ok) {
        char rid[24];
        snprintf(rid, sizeof rid, "%lld", (long long)id);
        store_audit_t audit = auth_audit_entry(req, &actor, "user.update", "user", rid);
        jw_t w;
        buf_t d;
        buf_init(&d);
        jw_init(&w, &d);
        jw_obj_begin(&w);
        if (in.role)
            jw_kstr(&w, "role", role_name(in.role));
        if (in.active >= 0)
            jw_kstr(&w, "status", in.active ? "active" : "disabled");
        if (in.full_name)
            jw_kstr(&w, "full_name", in.full_name);
        jw_obj_end(&w);
        audit.detail = arena_strndup(req->arena, d.data, d.len);
        buf_free(&d);
        ok = account_update(c, id, &in, &audit, req->arena, &u, &e);
    }
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    write_user(res, 200, &u);
}

/* An RFC 3339 time (2026-11-22T10:00:00Z, optionally with fractional seconds) to unix microseconds. */
static bool read_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    const char *p = s + 19;
    int64_t frac = 0, scale = 1000000;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        for (; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strcmp(p, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60 ||
        y < 1970)
        return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return false;
    /* days from civil (Howard Hinnant's algorithm) */
    int yy = y - (mo <= 2);
    int era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    *out = ((days * 86400) + h * 3600 + mi * 60 + sec) * 1000000 + frac;
    return true;
}

void audit_list(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    http_query_t q;
    audit_query_t aq = {0};
    if (http_query_parse(req, &q, &e) && api_read_limit(&q, &aq.limit, &e)) {
        const char *actor = http_query_get(&q, "actor_id"), *since = http_query_get(&q, "since"),
                   *until = http_query_get(&q, "until"), *cur = http_query_get(&q, "cursor");
        if (actor && *actor && (!parse_i64(actor, &aq.actor_id) || aq.actor_id < 1))
            err_set(&e, ERR_BAD_REQUEST, "actor_id must be a positive integer");
        if (since && *since && !read_time(since, &aq.since_us))
            err_field(&e, "since", "must be an RFC 3339 UTC time such as 2026-11-22T10:00:00Z");
        if (until && *until && !read_time(until, &aq.until_us))
            err_field(&e, "until", "must be an RFC 3339 UTC time such as 2026-11-22T10:00:00Z");
        const char *names[] = {"action", "resource_type", "resource_id"};
        const char **dest[] = {&aq.action, &aq.resource_type, &aq.resource_id};
        for (int i = 0; i < 3; i++) {
            const char *v = http_query_get(&q, names[i]);
            if (v && strlen(v) > 200)
                err_field(&e, names[i], "must be at most 200 bytes");
            *dest[i] = v && *v ? v : NULL;
        }
        if (cur && *cur && e.code == ERR_NONE)
            api_read_cursor(cur, "audit", &aq.before_id, &e);
    }
    actor_t actor;
    store_conn_t *c = admin_conn(req, res, &actor);
    if (!c)
        return;
    if (e.code != ERR_NONE) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    int64_t last = 0;
    bool more = false;
    bool ok = account_audit_list(c, &aq, req->arena, &w, &last, &more, &e);
    app_store_done(c);
    if (!ok) {
        buf_reset(&res->body);
        http_res_error(req, res, &e);
        return;
    }
    api_write_cursor(&w, "audit", more, last);
    jw_obj_end(&w);
}
