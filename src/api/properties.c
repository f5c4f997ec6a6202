/* properties: the listing routes. Validate the request, call the store, write JSON.
 *
 * Query values that cannot be read at all (limit=abc, bad percent-encoding, a bad cursor) are 400;
 * values that read but are not allowed (limit=500, sort=bogus, more than two decimals) are 422.
 * PATCH reads the row, merges, checks the merged row and writes it guarded by the version it read,
 * so two concurrent PATCHes never lose an update: without If-Match a lost race is retried, with
 * If-Match it is the client's 412. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../domain/images.h"
#include "../net/respcache.h"
#include "app.h"

#define MAX_FILTER_TEXT 200
#define PATCH_ATTEMPTS 16 /* read-merge-write rounds a PATCH without If-Match may lose to others */

static bool q_int(const http_query_t *q, const char *name, int lo, int hi, int *out, bool *given, err_t *e)
{
    const char *v = http_query_get(q, name);
    *given = false;
    if (!v)
        return true;
    int64_t x;
    if (!parse_i64(v, &x))
        return err_set(e, ERR_BAD_REQUEST, "%s must be an integer, got \"%.40s\"", name, v);
    if (x < lo || x > hi) {
        err_field(e, name, "must be from %d to %d", lo, hi);
        return true;
    }
    *out = (int)x;
    *given = true;
    return true;
}

static bool q_num(const http_query_t *q, const char *name, double lo, double hi, double *out, bool *given, err_t *e)
{
    const char *v = http_query_get(q, name);
    *given = false;
    if (!v)
        return true;
    double x;
    if (!parse_f64(v, &x))
        return err_set(e, ERR_BAD_REQUEST, "%s must be a number, got \"%.40s\"", name, v);
    if (x < lo || x > hi) {
        err_field(e, name, "must be from %g to %g", lo, hi);
        return true;
    }
    *out = x;
    *given = true;
    return true;
}

static bool q_money(const http_query_t *q, const char *name, int64_t *out, bool *given, err_t *e)
{
    const char *v = http_query_get(q, name);
    *given = false;
    if (!v)
        return true;
    int r = money_parse(v, out);
    if (r == -1)
        return err_set(e, ERR_BAD_REQUEST, "%s must be a number of dollars, got \"%.40s\"", name, v);
    if (r == -2 || *out < 0) {
        err_field(e, name, "must be a non-negative amount with at most two decimals");
        return true;
    }
    *given = true;
    return true;
}

static const char *q_text(const http_query_t *q, const char *name, err_t *e)
{
    const char *v = http_query_get(q, name);
    if (!v || !*v)
        return NULL;
    if (strlen(v) > MAX_FILTER_TEXT) {
        err_field(e, name, "must be at most %d bytes", MAX_FILTER_TEXT);
        return NULL;
    }
    return v;
}

/* Splits a comma list into arena strings; returns the count or -1 when there are too many. */
static int q_list(http_request_t *req, const char *v, const char **out, int max)
{
    int n = 0;
    while (v && *v) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        while (len && *v == ' ')
            v++, len--;
        while (len && v[len - 1] == ' ')
            len--;
        if (len) {
            if (n == max)
                return -1;
            out[n++] = arena_strndup(req->arena, v, len);
        }
        v = comma ? comma + 1 : NULL;
    }
    return n;
}

bool properties_read_query(http_request_t *req, property_query_t *pq, err_t *e)
{
    http_query_t q;
    if (!http_query_parse(req, &q, e))
        return false;
    memset(pq, 0, sizeof *pq);
    bool g;
#define FLAG(f) (pq->set |= g ? QF_BIT(f) : 0)
    pq->limit = 20;
    if (!q_int(&q, "limit", 1, 100, &pq->limit, &g, e))
        return false;
    if (!q_money(&q, "min_price", &pq->min_price, &g, e))
        return false;
    FLAG(QF_MIN_PRICE);
    if (!q_money(&q, "max_price", &pq->max_price, &g, e))
        return false;
    FLAG(QF_MAX_PRICE);
    if (!q_int(&q, "min_bedrooms", 0, 100, &pq->min_bedrooms, &g, e))
        return false;
    FLAG(QF_MIN_BEDROOMS);
    if (!q_num(&q, "min_bathrooms", 0, 100, &pq->min_bathrooms, &g, e))
        return false;
    FLAG(QF_MIN_BATHROOMS);
    if (!q_int(&q, "min_size_sqft", 0, 1000000, &pq->min_size_sqft, &g, e))
        return false;
    FLAG(QF_MIN_SIZE);
    if (!q_int(&q, "max_size_sqft", 0, 1000000, &pq->max_size_sqft, &g, e))
        return false;
    FLAG(QF_MAX_SIZE);
    if (!q_int(&q, "max_commute_time", 0, 1440, &pq->max_commute_time, &g, e))
        return false;
    FLAG(QF_MAX_COMMUTE);
    if (!q_num(&q, "min_school_rating", 0, 10, &pq->min_school_rating, &g, e))
        return false;
    FLAG(QF_MIN_SCHOOL);
#undef FLAG
    if ((pq->city = q_text(&q, "city", e)))
        pq->set |= QF_BIT(QF_CITY);
    if ((pq->location = q_text(&q, "location", e)))
        pq->set |= QF_BIT(QF_LOCATION);
    if ((pq->q = q_text(&q, "q", e)))
        pq->set |= QF_BIT(QF_Q); /* words only: a q of punctuation alone filters nothing */
    const char *v;
    if ((v = q_text(&q, "status", e))) {
        if (!enum_valid(property_statuses, v))
            err_field(e, "status", "must be one of active, pending, sold, off_market");
        pq->status = v;
        pq->set |= QF_BIT(QF_STATUS);
    }
    if ((v = q_text(&q, "property_type", e))) {
        pq->ntypes = q_list(req, v, pq->types, QUERY_MAX_TYPES);
        if (pq->ntypes < 0)
            err_field(e, "property_type", "may list at most %d types", QUERY_MAX_TYPES), pq->ntypes = 0;
        for (int i = 0; i < pq->ntypes; i++)
            if (!enum_valid(property_types, pq->types[i])) {
                err_field(e, "property_type", "must be one of single_family, condo, townhouse, multi_family, land, other");
                break;
            }
        if (pq->ntypes)
            pq->set |= QF_BIT(QF_TYPE);
    }
    if ((v = q_text(&q, "amenities", e))) {
        const char *raw[QUERY_MAX_AMENITIES];
        int n = q_list(req, v, raw, QUERY_MAX_AMENITIES);
        if (n < 0)
            err_field(e, "amenities", "may list at most %d amenities", QUERY_MAX_AMENITIES), n = 0;
        for (int i = 0; i < n; i++) {
            char slug[64];
            if (strlen(raw[i]) > 60 || !amenity_slug(raw[i], slug, sizeof slug)) {
                err_field(e, "amenities", "items must be names of letters, digits or spaces");
                break;
            }
            pq->amenities[pq->namenities++] = arena_strdup(req->arena, slug);
        }
        if (pq->namenities)
            pq->set |= QF_BIT(QF_AMENITIES);
    }
    pq->sort = SORT_CREATED_AT;
    pq->desc = true;
    if ((v = http_query_get(&q, "sort")) && *v) {
        bool desc = v[0] == '-';
        const char *key = desc ? v + 1 : v;
        int s;
        for (s = 0; s < SORT__COUNT; s++)
            if (strcmp(key, property_sort_names[s]) == 0)
                break;
        if (s == SORT__COUNT) {
            err_field(e, "sort", "must be one of price, size_sqft, bedrooms, year_built, created_at, each optionally with a leading -");
        } else {
            pq->sort = (property_sort_t)s;
            pq->desc = desc;
        }
    }
    if (e->code != ERR_NONE)
        return true; /* 422 with details; the cursor is checked against a valid sort only */
    if ((v = http_query_get(&q, "cursor")) && *v && !property_cursor_decode(pq, v))
        return err_set(e, ERR_BAD_REQUEST, "cursor is not a cursor returned by this search (same sort)");
    return true;
}

void properties_list(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    property_query_t pq;
    if (!properties_read_query(req, &pq, &e) || e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    actor_t actor;
    if (req->auth_present && !auth_actor(req, res, c, 0, &actor)) { /* a token, when sent, must be valid */
        app_store_done(c);
        return;
    }
    property_page_t page;
    bool ok = g_app.store->ops->property_search(c, &pq, req->arena, &page, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    buf_reserve(&res->body, (size_t)page.n * 1500);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0; i < page.n; i++)
        property_write_json(&w, &page.items[i], false);
    jw_arr_end(&w);
    jw_key(&w, "next_cursor");
    if (page.has_more && page.n > 0) {
        char cur[160];
        property_cursor_encode(&pq, &page.items[page.n - 1], cur, sizeof cur);
        jw_str(&w, cur);
    } else {
        jw_null(&w);
    }
    jw_obj_end(&w);
}

static void write_property(http_response_t *res, int status, const property_t *p)
{
    jw_t w;
    http_res_json(res, status, &w);
    property_write_json(&w, p, true);
    http_res_header(res, "ETag", "\"%lld\"", (long long)p->version);
}

void properties_create(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_AGENT | ROLE_ADMIN, &actor);
    if (!c)
        return;
    json_t *body = http_json_body(req, &e);
    if (!body) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    property_t p;
    property_init(&p);
    uint64_t present;
    bool typed = property_from_json(body, &p, &present, req->arena, &e);
    json_decref(body);
    if (typed || e.ndetails > 0)
        property_check(&p, present, true, &e); /* report every problem at once */
    if (e.code != ERR_NONE) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    p.owner_id = actor.user.id;
    store_audit_t audit = auth_audit_entry(req, &actor, "property.create", "property", NULL);
    audit.resource_ref = &p.id;
    c->audit = &audit;
    store_event_t event = {.channel = "property:", .type = "property_created", .ref = &p.id};
    c->event = &event;
    bool ok = g_app.store->ops->property_create(c, &p, &e);
    app_store_done(c);
    if (ok || e.code == ERR_UNAVAILABLE)
        respcache_invalidate(); /* a lost connection may still have committed */
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    write_property(res, 201, &p);
    http_res_header(res, "Location", "/api/properties/%lld", (long long)p.id);
}

/* Whether an If-Match / If-None-Match value names `version`: `*` names any; otherwise a list of
 * entity tags, of which weak ones (W/"N") count only when `weak` (If-None-Match compares weakly,
 * If-Match strongly, RFC 9110 13.1). An absent header names nothing. */
static bool etag_listed(const char *v, int64_t version, bool weak)
{
    if (!v)
        return false;
    char want[32];
    int n = snprintf(want, sizeof want, "\"%lld\"", (long long)version);
    while (*v) {
        while (*v == ' ' || *v == ',' || *v == '\t')
            v++;
        if (*v == '*')
            return true;
        bool is_weak = strncmp(v, "W/", 2) == 0;
        if (is_weak)
            v += 2;
        if ((!is_weak || weak) && strncmp(v, want, (size_t)n) == 0 &&
            (v[n] == '\0' || v[n] == ',' || v[n] == ' ' || v[n] == '\t'))
            return true;
        while (*v && *v != ',')
            v++;
    }
    return false;
}

/* Admins may change any listing; agents only their own. */
static bool may_change(const actor_t *actor, const property_t *p, err_t *e)
{
    if (actor->user.role == ROLE_ADMIN || (actor->user.role == ROLE_AGENT && p->owner_id == actor->user.id))
        return true;
    return err_set(e, ERR_FORBIDDEN, "only the listing's owner or an admin may change it");
}

void properties_get(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    int64_t id;
    if (!http_param_id(req, "id", &id, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    store_conn_t *c = app_store(req, res);
    if (!c)
        return;
    actor_t actor;
    if (req->auth_present && !auth_actor(req, res, c, 0, &actor)) { /* a token, when sent, must be valid */
        app_store_done(c);
        return;
    }
    property_t p;
    bool ok = g_app.store->ops->property_get(c, id, req->arena, &p, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    if (etag_listed(http_header(req, "If-None-Match"), p.version, true)) {
        res->status = 304;
        http_res_header(res, "ETag", "\"%lld\"", (long long)p.version);
        return;
    }
    write_property(res, 200, &p);
}

void properties_patch(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    int64_t id;
    if (!http_param_id(req, "id", &id, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    const char *if_match = http_header(req, "If-Match");
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_AGENT | ROLE_ADMIN, &actor);
    if (!c)
        return;
    json_t *body = http_json_body(req, &e);
    if (!body) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    property_t changes;
    property_init(&changes);
    uint64_t present;
    property_from_json(body, &changes, &present, req->arena, &e);
    json_decref(body);
    if (e.code != ERR_NONE) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    char rid[24];
    snprintf(rid, sizeof rid, "%lld", (long long)id);
    store_audit_t audit = auth_audit_entry(req, &actor, "property.update", "property", rid);
    int64_t event_id = id;
    store_event_t event = {.channel = "property:", .type = "property_updated", .ref = &event_id};
    property_t p;
    bool ok = false;
    for (int attempt = 0; attempt < PATCH_ATTEMPTS; attempt++) {
        err_clear(&e);
        if (!g_app.store->ops->property_get(c, id, req->arena, &p, &e))
            break;
        if (!may_change(&actor, &p, &e))
            break;
        if (if_match && !etag_listed(if_match, p.version, false)) {
            err_set(&e, ERR_PRECONDITION, "If-Match does not name the current version (\"%lld\")", (long long)p.version);
            break;
        }
        int64_t read_version = p.version;
        property_merge(&p, &changes, present);
        if (!property_check(&p, present, false, &e))
            break;
        c->audit = &audit;
        c->event = &event;
        ok = g_app.store->ops->property_update(c, &p, read_version, &e);
        if (ok || e.code != ERR_PRECONDITION || if_match)
            break; /* retry only a race the client did not guard against itself */
        if (attempt == PATCH_ATTEMPTS - 1) {
            err_set(&e, ERR_CONFLICT, "the property is being changed by others; try again");
            break;
        }
        /* every round of a race has a winner; a short random pause spreads the losers out */
        struct timespec pause = {0, (long)(rand_fast() % 2000000) + 200000};
        nanosleep(&pause, NULL);
    }
    app_store_done(c);
    if (ok || e.code == ERR_UNAVAILABLE)
        respcache_invalidate(); /* a lost connection may still have committed */
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    write_property(res, 200, &p);
}

void properties_delete(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    int64_t id;
    if (!http_param_id(req, "id", &id, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    const char *if_match = http_header(req, "If-Match");
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_AGENT | ROLE_ADMIN, &actor);
    if (!c)
        return;
    int64_t expect = 0; /* any version */
    property_t p;
    bool ok = g_app.store->ops->property_get(c, id, req->arena, &p, &e) && may_change(&actor, &p, &e);
    if (ok && if_match) {
        if (!etag_listed(if_match, p.version, false))
            ok = err_set(&e, ERR_PRECONDITION, "If-Match does not name the current version (\"%lld\")", (long long)p.version);
        expect = p.version;
    }
    char rid[24];
    snprintf(rid, sizeof rid, "%lld", (long long)id);
    store_audit_t audit = auth_audit_entry(req, &actor, "property.delete", "property", rid);
    c->audit = &audit;
    store_event_t event = {.channel = "property:", .type = "property_deleted", .ref = &id};
    c->event = &event;
    image_objects_t photos = {0};
    ok = ok && image_listing_objects(c, id, req->arena, &photos, &e);
    if (ok)
        ok = g_app.store->ops->property_delete(c, id, expect, &e);
    if (ok) { /* its photos went with it: their objects are released (or left to `objects gc`) */
        err_t pe;
        err_clear(&pe);
        c->audit = NULL;
        c->event = NULL;
        if (!image_release_objects(c, &photos, &pe))
            log_warn("listing %lld deleted, its photos' objects not released: %s", (long long)id, pe.message);
    }
    app_store_done(c);
    if (ok || e.code == ERR_UNAVAILABLE)
        respcache_invalidate(); /* a lost connection may still have committed */
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    res->status = 204;
}
