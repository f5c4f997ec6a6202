/* recommendations: POST /api/preferences (a stored preference session), GET /api/recommendations
 * (a session's best homes) and POST /api/recommendations (preferences inline). The rules live in
 * domain/recommend.c; this file finds the candidates, prices them and keeps the best.
 *
 * The one idea: rank by bounds first, price later. A scan over every listing that meets the hard
 * constraints (keyset pages by price, list columns only, no per-row allocation that outlives its
 * page) keeps each candidate's id, price and the best score it could reach whatever the model says.
 * Then the candidates are read whole in the order of those bounds, best first, priced and scored,
 * and the search stops at the first one whose bound cannot beat the N-th best found: so only the
 * few homes that could make the list are priced or have their `features` (the model's input) read,
 * and the estimate is the one the model gives for the full listing. The answer is exact: the same
 * top N as pricing every candidate. Answers are cached per canonical preference set and limit,
 * under the response cache's generation (bumped by every listing write, here or on another
 * instance) and the active model version. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../domain/pricing.h"
#include "../domain/recommend.h"
#include "../infra/cache.h"
#include "../net/respcache.h"
#include "app.h"

#define PAGE_FIRST 100
#define PAGE_MAX 1600
#define SESSION_ID_BYTES 16 /* 32 hex digits */
#define CACHE_MAX_MB 16
#define ESTIMATES_MB 16
#define ESTIMATE_TTL_MS 86400000 /* a day: entries are never stale, only perhaps unused */

/* Two caches, in process, made on first use and kept for the life of the process:
 * - answers: whole response bodies, per canonical preference set and limit, under the response
 *   cache's generation (shared through Redis when there is one) and the model version; off when
 *   HEARTH_CACHE_MB or HEARTH_CACHE_TTL_MS is 0.
 * - estimates: the model's estimate per (listing id, listing version, model version). A listing's
 *   row and a model version never change under the same numbers, so an entry is never stale (it is
 *   dropped a day after it was made, or when evicted); a prediction costs a few hundred
 *   microseconds, a lookup well under one. */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static cache_t *answers, *estimates;
static int answers_ttl_ms;

static void cache_init(void)
{
    estimates = cache_memory_open((size_t)ESTIMATES_MB * 1024 * 1024);
    const config_t *cfg = g_app.cfg;
    if (!cfg || cfg->cache_mb <= 0 || cfg->cache_ttl_ms <= 0)
        return;
    int mb = cfg->cache_mb < CACHE_MAX_MB ? cfg->cache_mb : CACHE_MAX_MB;
    answers = cache_memory_open((size_t)mb * 1024 * 1024);
    answers_ttl_ms = cfg->cache_ttl_ms;
}

/* The active model version (0: no model; -1: unknown, so nothing is cached). pricing.h has no call
 * for it: a prediction reports the version that made it, so one market's model is asked about a
 * typical home. */
static int model_version(void)
{
    if (!pricing_ready())
        return 0;
    for (int m = 0; m < MARKET__COUNT; m++) {
        property_t p;
        property_init(&p);
        p.set = PF_BIT(PF_PRICE) | PF_BIT(PF_BEDROOMS) | PF_BIT(PF_BATHROOMS) | PF_BIT(PF_SIZE_SQFT) |
                PF_BIT(PF_YEAR_BUILT) | PF_BIT(PF_SOURCE);
        p.price_cents = 20000000;
        p.bedrooms = 3;
        p.bathrooms = 2;
        p.size_sqft = 1500;
        p.year_built = 1990;
        p.source = market_names[m];
        price_estimate_t est;
        err_t e;
        err_clear(&e);
        if (pricing_predict(&p, &est, &e))
            return est.version > 0 ? est.version : -1;
    }
    return -1;
}

/* The best N ------------------------------------------------------------------------------------- */

typedef struct pick {
    property_t p; /* a copy in the list's arena, without features */
    rec_score_t s;
} pick_t;

typedef struct best {
    pick_t *items;
    int n, cap;
    arena_t arena; /* the copies; remade when the dropped ones pile up */
    int copies;
} best_t;

static const char *dup_str(arena_t *a, const char *s) { return s ? arena_strdup(a, s) : NULL; }

static const char **dup_list(arena_t *a, const char *const *l, int n)
{
    if (!l || n <= 0)
        return NULL;
    const char **out = arena_alloc(a, (size_t)n * sizeof *out);
    for (int i = 0; i < n; i++)
        out[i] = dup_str(a, l[i]);
    return out;
}

static void property_copy(property_t *d, const property_t *s, arena_t *a)
{
    *d = *s;
    d->title = dup_str(a, s->title);
    d->description = dup_str(a, s->description);
    d->location = dup_str(a, s->location);
    d->city = dup_str(a, s->city);
    d->state = dup_str(a, s->state);
    d->zip = dup_str(a, s->zip);
    d->amenities = dup_list(a, s->amenities, s->namenities);
    d->image_urls = dup_list(a, s->image_urls, s->nimage_urls);
    d->property_type = dup_str(a, s->property_type);
    d->status = dup_str(a, s->status);
    d->features = NULL;
    d->set &= ~PF_BIT(PF_FEATURES);
    d->source = dup_str(a, s->source);
    d->external_id = dup_str(a, s->external_id);
}

static void best_offer(best_t *b, const property_t *h, const rec_score_t *s)
{
    if (b->n == b->cap && rec_compare(s, h, &b->items[b->n - 1].s, &b->items[b->n - 1].p) >= 0)
        return;
    int at = b->n < b->cap ? b->n : b->cap - 1;
    while (at > 0 && rec_compare(s, h, &b->items[at - 1].s, &b->items[at - 1].p) < 0) {
        b->items[at] = b->items[at - 1];
        at--;
    }
    property_copy(&b->items[at].p, h, &b->arena);
    b->items[at].s = *s;
    if (b->n < b->cap)
        b->n++;
    if (++b->copies > 4 * b->cap + 32) { /* keep only the copies still listed */
        arena_t fresh;
        arena_init(&fresh);
        for (int i = 0; i < b->n; i++)
            property_copy(&b->items[i].p, &b->items[i].p, &fresh);
        arena_free(&b->arena);
        b->arena = fresh;
        b->copies = b->n;
    }
}

/* Candidates ------------------------------------------------------------------------------------- */

/* A candidate as the scan leaves it: enough to order it and to read it again. */
typedef struct cand {
    int64_t id, price_cents;
    int bound; /* the best score it can reach (with a model: at the best value; without: its score) */
} cand_t;

typedef struct cands {
    cand_t *v; /* malloc'd; the caller frees it */
    int n, cap;
} cands_t;

static void cands_push(cands_t *cs, const property_t *h, int bound)
{
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 1024;
        cand_t *v = realloc(cs->v, (size_t)cs->cap * sizeof *v);
        if (!v)
            abort(); /* as buf and arena do on out-of-memory */
        cs->v = v;
    }
    cs->v[cs->n++] = (cand_t){h->id, h->price_cents, bound};
}

static void estimate_key(const property_t *h, int model, char *key, size_t *klen)
{
    *klen = (size_t)snprintf(key, 64, "%lld|%lld|%d", (long long)h->id, (long long)h->version, model);
}

/* The estimate of `h` under model version `model` (> 0) when it is in the cache. */
static bool estimate_known(const property_t *h, int model, int64_t *cents)
{
    if (model <= 0)
        return false;
    char key[64];
    size_t klen;
    estimate_key(h, model, key, &klen);
    buf_t v;
    buf_init(&v);
    bool hit = estimates->ops->get(estimates, key, klen, &v) && v.len == sizeof *cents;
    if (hit)
        memcpy(cents, v.data, sizeof *cents);
    buf_free(&v);
    return hit;
}

/* The model's estimate for `h` in cents; 0 when it has none (no model, or none for its market).
 * `model`: the version (> 0: cached under it), -1 a model of unknown version (not cached). */
static int64_t estimate_cents(const property_t *h, int model)
{
    int64_t cents = 0;
    if (estimate_known(h, model, &cents))
        return cents;
    price_estimate_t est;
    err_t e;
    err_clear(&e);
    if (pricing_predict(h, &est, &e) && isfinite(est.price) && est.price > 0 &&
        est.price <= (double)(MONEY_MAX_CENTS / 100))
        cents = llround(est.price * 100.0);
    else if (e.code != ERR_NONE && e.code != ERR_UNAVAILABLE)
        return 0; /* a failure for this listing alone: not remembered */
    bool same = cents == 0 || est.version == model; /* the model may have changed meanwhile */
    if (model > 0 && same) {
        char key[64];
        size_t klen;
        estimate_key(h, model, key, &klen);
        estimates->ops->put(estimates, key, klen, &cents, sizeof cents, ESTIMATE_TTL_MS);
    }
    return cents;
}

/* Phase one: every active listing that meets the hard constraints, in (price, id) order, with the
 * bound of its score. Only the list columns are read, a page at a time (pages grow from 100 to
 * 1,600 rows: each page of a location search looks the text up in the trigram index again). */
static bool scan(store_conn_t *c, const rec_prefs_t *p, int model, cands_t *cs, err_t *e)
{
    property_query_t q;
    memset(&q, 0, sizeof q);
    q.set = QF_BIT(QF_STATUS);
    q.status = "active";
    if (p->set & RP_BIT(RP_BUDGET))
        q.set |= QF_BIT(QF_MAX_PRICE), q.max_price = p->budget_cents;
    if (p->set & RP_BIT(RP_MIN_BEDROOMS))
        q.set |= QF_BIT(QF_MIN_BEDROOMS), q.min_bedrooms = p->min_bedrooms;
    if (p->set & RP_BIT(RP_LOCATION))
        q.set |= QF_BIT(QF_LOCATION), q.location = p->location;
    q.sort = SORT_PRICE; /* the ranking's tie-break order: an equal score never displaces an earlier row */
    q.desc = false;
    q.limit = PAGE_FIRST;
    arena_t page;
    arena_init(&page);
    bool ok = true;
    for (;;) {
        property_page_t pg;
        if (!(ok = c->store->ops->property_search(c, &q, &page, &pg, e)))
            break;
        for (int i = 0; i < pg.n; i++) {
            const property_t *h = &pg.items[i];
            if (!rec_passes(p, h))
                continue;
            rec_score_t s;
            int64_t est;
            if (!model || estimate_known(h, model, &est)) { /* the score itself is known */
                rec_score(p, h, model ? est : 0, &s);
                cands_push(cs, h, s.score);
            } else {
                cands_push(cs, h, rec_score_bound(p, h));
            }
        }
        if (!pg.has_more || pg.n == 0)
            break;
        const property_t *last = &pg.items[pg.n - 1];
        q.has_cursor = true;
        q.cursor_value = property_sort_value(last, SORT_PRICE, false);
        q.cursor_id = last->id;
        q.limit = q.limit * 2 > PAGE_MAX ? PAGE_MAX : q.limit * 2;
        arena_reset(&page);
    }
    arena_free(&page);
    return ok;
}

/* Whether a candidate at its best could still enter the list (ties: the cheaper, then the lower id). */
static bool may_enter(const best_t *b, const cand_t *k)
{
    if (b->n < b->cap)
        return true;
    const pick_t *w = &b->items[b->n - 1];
    if (k->bound != w->s.score)
        return k->bound > w->s.score;
    if (k->price_cents != w->p.price_cents)
        return k->price_cents < w->p.price_cents;
    return k->id < w->p.id;
}

/* The best b->cap homes for `p`. Phase one scans (above); phase two reads the candidates again in
 * the order of their bounds, best first, whole (with features: the model's input), prices and
 * scores each, and stops at the first whose bound cannot enter the list: none after it can. */
static bool find_best(store_conn_t *c, const rec_prefs_t *p, int model, best_t *b, err_t *e)
{
    cands_t cs = {0};
    if (!scan(c, p, model, &cs, e)) {
        free(cs.v);
        return false;
    }
    /* a stable counting sort by bound, descending: each bound's candidates stay in (price, id) order */
    int start[1002] = {0};
    for (int i = 0; i < cs.n; i++)
        start[1000 - cs.v[i].bound + 1]++;
    for (int k = 1; k <= 1001; k++)
        start[k] += start[k - 1];
    cand_t *order = malloc((size_t)(cs.n ? cs.n : 1) * sizeof *order);
    if (!order)
        abort();
    for (int i = 0; i < cs.n; i++)
        order[start[1000 - cs.v[i].bound]++] = cs.v[i];
    free(cs.v);
    arena_t one;
    arena_init(&one);
    bool ok = true;
    for (int i = 0; i < cs.n && may_enter(b, &order[i]); i++) {
        property_t h;
        err_t ge;
        err_clear(&ge);
        if (!c->store->ops->property_get(c, order[i].id, &one, &h, &ge)) {
            if (ge.code == ERR_NOT_FOUND)
                continue; /* deleted since the scan */
            *e = ge;
            ok = false;
            break;
        }
        if (rec_passes(p, &h)) { /* else changed since the scan */
            rec_score_t s;
            rec_score(p, &h, model ? estimate_cents(&h, model) : 0, &s);
            best_offer(b, &h, &s);
        }
        arena_reset(&one);
    }
    arena_free(&one);
    free(order);
    return ok;
}

static void write_answer(jw_t *w, const rec_prefs_t *p, const best_t *b, arena_t *a)
{
    jw_obj_begin(w);
    jw_key(w, "items");
    jw_arr_begin(w);
    for (int i = 0; i < b->n; i++) {
        const pick_t *k = &b->items[i];
        jw_obj_begin(w);
        jw_key(w, "property");
        property_write_json(w, &k->p, false);
        jw_key(w, "score");
        jw_double(w, k->s.score / 1000.0);
        jw_key(w, "breakdown");
        jw_obj_begin(w);
        for (int cr = 0; cr < RC__COUNT; cr++)
            if (k->s.applies & (1u << cr)) {
                jw_key(w, rec_criterion_names[cr]);
                jw_double(w, k->s.milli[cr] / 1000.0);
            }
        jw_obj_end(w);
        jw_key(w, "predicted_price");
        if (k->s.predicted_cents > 0)
            jw_money(w, k->s.predicted_cents);
        else
            jw_null(w);
        jw_key(w, "reasons");
        jw_arr_begin(w);
        const char *reasons[RC__COUNT];
        int nr = rec_reasons(p, &k->p, &k->s, a, reasons);
        for (int r = 0; r < nr; r++)
            jw_str(w, reasons[r]);
        jw_arr_end(w);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_obj_end(w);
}

/* Answers with the best `limit` homes for `p`, from the cache when it can; releases `c`. */
static void answer(http_request_t *req, http_response_t *res, store_conn_t *c, const rec_prefs_t *p, int limit)
{
    pthread_once(&cache_once, cache_init);
    buf_t key;
    buf_init(&key);
    int version = model_version();
    if (answers) {
        uint64_t gen = respcache_generation();
        if (gen && version >= 0) {
            jw_t kw;
            buf_printf(&key, "rec|%llu|%d|%d|", (unsigned long long)gen, version, limit);
            jw_init(&kw, &key);
            rec_prefs_write_json(&kw, p);
        }
    }
    jw_t w;
    if (key.len) {
        buf_t hit;
        buf_init(&hit);
        if (answers->ops->get(answers, key.data, key.len, &hit)) {
            app_store_done(c);
            http_res_json(res, 200, &w);
            buf_append(&res->body, hit.data, hit.len);
            buf_free(&hit);
            buf_free(&key);
            return;
        }
        buf_free(&hit);
    }
    err_t e;
    err_clear(&e);
    best_t b = {.cap = limit};
    b.items = arena_alloc(req->arena, (size_t)limit * sizeof *b.items);
    arena_init(&b.arena);
    bool ok = find_best(c, p, version, &b, &e);
    app_store_done(c);
    if (ok) {
        http_res_json(res, 200, &w);
        buf_reserve(&res->body, (size_t)b.n * 2000);
        write_answer(&w, p, &b, req->arena);
        if (key.len)
            answers->ops->put(answers, key.data, key.len, res->body.data, res->body.len, answers_ttl_ms);
    } else {
        http_res_error(req, res, &e);
    }
    arena_free(&b.arena);
    buf_free(&key);
}

/* Sessions --------------------------------------------------------------------------------------- */

static bool session_id_valid(const char *s)
{
    if (strlen(s) != 2 * SESSION_ID_BYTES)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* The body of POST /api/preferences or /api/recommendations as preferences (and a limit when
 * `limit` is given); false with the error written. */
static bool read_body(http_request_t *req, http_response_t *res, rec_prefs_t *p, int *limit)
{
    err_t e;
    err_clear(&e);
    json_t *body = http_json_body(req, &e);
    if (!body) {
        http_res_error(req, res, &e);
        return false;
    }
    bool ok = rec_prefs_from_json(body, p, limit, req->arena, &e);
    json_decref(body);
    if (!ok) {
        if (e.code == ERR_NONE)
            e.code = ERR_VALIDATION;
        http_res_error(req, res, &e);
    }
    return ok;
}

void preferences_create(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor); /* anyone; a token, when sent, must be valid */
    if (!c)
        return;
    rec_prefs_t p;
    if (!read_body(req, res, &p, NULL)) {
        app_store_done(c);
        return;
    }
    buf_t canon;
    buf_init(&canon);
    jw_t cw;
    jw_init(&cw, &canon);
    rec_prefs_write_json(&cw, &p);
    err_t e;
    err_clear(&e);
    char id[2 * SESSION_ID_BYTES + 1];
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) { /* a taken id: 2^-128; still, draw again */
        unsigned char raw[SESSION_ID_BYTES];
        rand_bytes(raw, sizeof raw);
        for (int i = 0; i < SESSION_ID_BYTES; i++)
            snprintf(id + 2 * i, 3, "%02x", raw[i]);
        const char *vals[4] = {id, buf_cstr(&canon), actor.known ? store_num(req->arena, actor.user.id) : NULL,
                               store_num(req->arena, time_now_us())};
        store_rows_t rows;
        err_clear(&e);
        ok = store_query(c,
                         "INSERT INTO preference_sessions (id, preferences, user_id, created_at)"
                         " VALUES ($1, $2, CAST($3 AS BIGINT), CAST($4 AS BIGINT))",
                         4, vals, req->arena, &rows, &e);
        if (!ok && e.code != ERR_CONFLICT)
            break;
    }
    app_store_done(c);
    if (!ok) {
        buf_free(&canon);
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 201, &w);
    jw_obj_begin(&w);
    jw_kstr(&w, "session_id", id);
    jw_key(&w, "preferences");
    jw_raw(&w, canon.data, canon.len);
    jw_obj_end(&w);
    buf_free(&canon);
    http_res_header(res, "Location", "/api/recommendations?session_id=%s", id);
}

void recommendations_get(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    http_query_t q;
    if (!http_query_parse(req, &q, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    int limit = REC_LIMIT_DEFAULT;
    const char *v = http_query_get(&q, "limit");
    if (v) {
        int64_t x;
        if (!parse_i64(v, &x)) {
            http_res_errorf(req, res, ERR_BAD_REQUEST, "limit must be an integer, got \"%.40s\"", v);
            return;
        }
        if (x < 1 || x > REC_LIMIT_MAX)
            err_field(&e, "limit", "must be from 1 to %d", REC_LIMIT_MAX);
        else
            limit = (int)x;
    }
    const char *sid = http_query_get(&q, "session_id");
    if (!sid || !*sid)
        err_field(&e, "session_id", "is required: the session_id POST /api/preferences returned");
    if (e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    store_rows_t rows = {0};
    if (session_id_valid(sid)) {
        const char *vals[1] = {sid};
        if (!store_query(c, "SELECT preferences, user_id FROM preference_sessions WHERE id = $1", 1, vals,
                         req->arena, &rows, &e)) {
            app_store_done(c);
            http_res_error(req, res, &e);
            return;
        }
    }
    if (rows.nrows == 0) {
        app_store_done(c);
        http_res_errorf(req, res, ERR_NOT_FOUND, "no such preference session");
        return;
    }
    int64_t owner = store_cell_i64(&rows, 0, 1);
    if (owner && !(actor.known && (actor.user.id == owner || actor.user.role == ROLE_ADMIN))) {
        app_store_done(c);
        if (actor.known) {
            http_res_errorf(req, res, ERR_FORBIDDEN, "this preference session belongs to another user");
        } else {
            http_res_errorf(req, res, ERR_UNAUTHORIZED,
                            "this preference session belongs to a user: send their access token");
            http_res_header(res, "WWW-Authenticate", "Bearer");
        }
        return;
    }
    const char *stored = store_cell(&rows, 0, 0);
    json_t *doc = stored ? json_loads(stored, 0, NULL) : NULL;
    rec_prefs_t p;
    bool ok = doc && rec_prefs_from_json(doc, &p, NULL, req->arena, &e);
    json_decref(doc);
    if (!ok) {
        app_store_done(c);
        log_error("recommendations: preference session %s holds preferences that no longer read: %s", sid,
                  e.ndetails ? e.details[0].message : "not JSON");
        http_res_errorf(req, res, ERR_INTERNAL, "internal error");
        return;
    }
    answer(req, res, c, &p, limit);
}

void recommendations_post(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    rec_prefs_t p;
    int limit = REC_LIMIT_DEFAULT;
    if (!read_body(req, res, &p, &limit)) {
        app_store_done(c);
        return;
    }
    answer(req, res, c, &p, limit);
}
